"""Scope's wire messages: load bodies (§2) and the offer's ``initialParameters`` (§5).

Pure: no sockets, clocks or threads. The parameter vocabulary they carry is :mod:`metadj_bridge.parameters`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from metadj_bridge.errors import ParameterError
from metadj_bridge.parameters import LOAD_ONLY_KEYS, ONE_SHOT_KEYS, normalise_prompts

# --------------------------------------------------------------------------------------------
# Load bodies (§2)


def load_body(pipeline_ids: Sequence[str], load_params: Mapping[str, Any] | None) -> dict[str, Any]:
    """The current load body: ``{"pipeline_ids": [...], "load_params": {...}}``."""
    return {"pipeline_ids": list(pipeline_ids), "load_params": dict(load_params or {})}


def legacy_load_body(pipeline_ids: Sequence[str], load_params: Mapping[str, Any] | None) -> dict[str, Any]:
    """The body Scope understood before 2026-01-14: a single ``pipeline_id``."""
    return {"pipeline_id": pipeline_ids[0], "load_params": dict(load_params or {})}


def is_legacy_load_rejection(status: int, body: Any) -> bool:
    """True when a load answer says the server wants the old single ``pipeline_id`` body.

    Such a server declares ``pipeline_id`` as a required field, so FastAPI answers 422 with a
    ``detail`` list whose ``loc`` ends in ``pipeline_id``.
    """
    if status != 422 or not isinstance(body, Mapping):
        return False
    detail = body.get("detail")
    if not isinstance(detail, list):
        return False
    for item in detail:
        if isinstance(item, Mapping):
            loc = item.get("loc")
            if isinstance(loc, list) and loc and loc[-1] == "pipeline_id":
                return True
    return False


def build_initial_parameters(
    pipeline_ids: Sequence[str],
    *,
    input_mode: str,
    prompts: Any,
    denoising_step_list: Sequence[int] | None,
    manage_cache: bool = True,
    state: Mapping[str, Any] | None = None,
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The offer's ``initialParameters``.

    Always carries ``pipeline_ids`` (without it Scope never sends a frame and says nothing, §5),
    ``input_mode``, ``prompts``, ``denoising_step_list``, ``manage_cache`` and ``paused: false``.
    ``state`` is the sender's last desired state, so a rebuilt session starts where the old one was;
    ``extra`` holds offer-only keys such as ``vace_enabled``.
    """
    if not pipeline_ids:
        raise ParameterError("pipeline_ids: at least one pipeline id is required; Scope sends no video without it")
    if input_mode not in ("text", "video"):
        raise ParameterError(f"input_mode: {input_mode!r} is not one of 'text', 'video'")
    params: dict[str, Any] = {}
    for key, value in (state or {}).items():
        if key in ONE_SHOT_KEYS or key in LOAD_ONLY_KEYS:
            continue
        params[key] = value
    params.update(extra or {})
    params["pipeline_ids"] = list(pipeline_ids)
    params["input_mode"] = input_mode
    params.setdefault("prompts", normalise_prompts(prompts))
    params["prompts"] = normalise_prompts(params["prompts"])
    if denoising_step_list is not None:
        params.setdefault("denoising_step_list", list(denoising_step_list))
    params.setdefault("manage_cache", manage_cache)
    # A rebuilt session must not start paused, whatever the last state said (seed: "paused: false").
    params["paused"] = False
    return params
