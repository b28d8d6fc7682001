"""Request checks with Scope's (FastAPI's) error answers, so clients meet the real error shapes.

Scope validates request bodies with Pydantic: a type or range violation is a **422** whose
``detail`` is a list of ``{"type","loc","msg","input"}``. The client detects the older server
generation from such a 422 on the load body (``loc[-1] == "pipeline_id"``), and must never send
plain-string prompts in an offer (422, ``scope-api.md`` §5). The data channel is *not* validated
(§6), so nothing here applies to data-channel messages.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from metadj_bridge.emulator.loader import LoadEntry, entries_from_ids

#: Fields Scope's ``Parameters`` model fills in even when the offer leaves them out (§5).
OFFER_DEFAULTS: dict[str, Any] = {"prompt_interpolation_method": "linear", "vace_context_scale": 1.0}

#: Numeric offer fields with their (minimum, maximum); None is unbounded.
_RANGES: dict[str, tuple[float | None, float | None]] = {
    "noise_scale": (0.0, 1.0),
    "kv_cache_attention_bias": (0.01, 1.0),
    "vace_context_scale": (0.0, 2.0),
}
_ENUMS: dict[str, tuple[str, ...]] = {
    "input_mode": ("text", "video"),
    "prompt_interpolation_method": ("linear", "slerp"),
    "spatial_interpolation_method": ("linear", "slerp"),
}
_BOOLS = ("noise_controller", "manage_cache", "reset_cache", "vace_enabled", "vace_use_input_video", "recording")


#: Scope's answer (400, Starlette's) to a body it cannot parse at all, such as JSON nested too deeply to decode.
BODY_UNPARSED = "There was an error parsing the body"


class RequestRejected(Exception):
    """An HTTP error answer: ``status`` and the JSON ``detail`` (a string or FastAPI's list)."""

    def __init__(self, status: int, detail: Any) -> None:
        super().__init__(f"{status}: {detail}")
        self.status = status
        self.detail = detail


def problem(kind: str, loc: list[str | int], msg: str, value: Any) -> dict[str, Any]:
    """One item of a FastAPI 422 ``detail`` list."""
    return {"type": kind, "loc": ["body", *loc], "msg": msg, "input": value}


def load_entries(body: Any, *, legacy: bool) -> list[LoadEntry]:
    """The pipelines a load body asks for, or ``RequestRejected`` as Scope would answer."""
    if not isinstance(body, Mapping):
        raise RequestRejected(422, [problem("model_attributes_type", [], "Input should be a valid dictionary", body)])
    if legacy:
        pid = body.get("pipeline_id")
        if pid is None:
            raise RequestRejected(422, [problem("missing", ["pipeline_id"], "Field required", dict(body))])
        if not isinstance(pid, str):
            raise RequestRejected(422, [problem("string_type", ["pipeline_id"], "Input should be a valid string", pid)])
        return entries_from_ids([pid], _load_params(body.get("load_params"), ["load_params"]))

    pipelines = body.get("pipelines")
    if pipelines:
        if not isinstance(pipelines, list):
            raise RequestRejected(422, [problem("list_type", ["pipelines"], "Input should be a valid list", pipelines)])
        entries = []
        for i, node in enumerate(pipelines):
            if not isinstance(node, Mapping):
                raise RequestRejected(
                    422,
                    [problem("model_attributes_type", ["pipelines", i], "Input should be a valid dictionary", node)],
                )
            for name in ("node_id", "pipeline_id"):
                if not isinstance(node.get(name), str):
                    kind, msg = (
                        ("missing", "Field required") if name not in node
                        else ("string_type", "Input should be a valid string")
                    )
                    raise RequestRejected(422, [problem(kind, ["pipelines", i, name], msg, node.get(name, dict(node)))])
            params = _load_params(node.get("load_params"), ["pipelines", i, "load_params"])
            entries.append(LoadEntry(node["node_id"], node["pipeline_id"], params))
        return entries
    ids = body.get("pipeline_ids")
    if ids:
        if not isinstance(ids, list) or not all(isinstance(x, str) for x in ids):
            raise RequestRejected(
                422, [problem("list_type", ["pipeline_ids"], "Input should be a valid list of strings", ids)]
            )
        return entries_from_ids(ids, _load_params(body.get("load_params"), ["load_params"]))
    raise RequestRejected(400, "Either 'pipelines' or 'pipeline_ids' must be provided")


def _load_params(value: Any, loc: list[str | int]) -> dict[str, Any] | None:
    """The load params as sent (None when absent: Scope's status then shows null)."""
    if value is None:
        return None
    if not isinstance(value, Mapping):
        raise RequestRejected(422, [problem("dict_type", loc, "Input should be a valid dictionary", value)])
    return dict(value)


def initial_parameters(value: Any) -> dict[str, Any]:
    """``initialParameters`` as Scope's ``Parameters`` model leaves it: checked, defaults added.

    Unknown keys pass through (``extra="allow"``); ``None`` values are dropped (``exclude_none``).
    """
    if value is None:
        value = {}
    if not isinstance(value, Mapping):
        raise RequestRejected(
            422, [problem("model_attributes_type", ["initialParameters"], "Input should be a valid dictionary", value)]
        )
    params = {k: v for k, v in value.items() if v is not None}
    errors: list[dict[str, Any]] = []
    base = ["initialParameters"]
    ids = params.get("pipeline_ids")
    if ids is not None and not (isinstance(ids, list) and all(isinstance(x, str) for x in ids)):
        errors.append(problem("list_type", [*base, "pipeline_ids"], "Input should be a valid list of strings", ids))
    if "prompts" in params:
        errors += _prompt_problems(params["prompts"], [*base, "prompts"])
    transition = params.get("transition")
    if transition is not None:
        if not isinstance(transition, Mapping):
            errors.append(problem("model_attributes_type", [*base, "transition"], "Input should be a valid dictionary",
                                  transition))
        else:
            errors += _prompt_problems(transition.get("target_prompts", []), [*base, "transition", "target_prompts"])
            steps = transition.get("num_steps", 4)
            if not isinstance(steps, int) or isinstance(steps, bool) or steps < 0:
                errors.append(problem("greater_than_equal", [*base, "transition", "num_steps"], "Input should be >= 0",
                                      steps))
    for key, (lo, hi) in _RANGES.items():
        if key in params:
            errors += _range_problems(params[key], lo, hi, [*base, key])
    for key, choices in _ENUMS.items():
        if key in params and params[key] not in choices:
            allowed = " or ".join(repr(c) for c in choices)
            errors.append(problem("literal_error", [*base, key], f"Input should be {allowed}", params[key]))
    for key in _BOOLS:
        if key in params and not isinstance(params[key], bool):
            errors.append(problem("bool_type", [*base, key], "Input should be a valid boolean", params[key]))
    steps_list = params.get("denoising_step_list")
    if steps_list is not None and not (
        isinstance(steps_list, list) and all(isinstance(s, int) and not isinstance(s, bool) for s in steps_list)
    ):
        errors.append(problem("list_type", [*base, "denoising_step_list"], "Input should be a valid list of integers",
                              steps_list))
    if errors:
        raise RequestRejected(422, errors)
    for key, default in OFFER_DEFAULTS.items():
        params.setdefault(key, default)
    if isinstance(transition, Mapping):
        params["transition"] = {"num_steps": 4, "temporal_interpolation_method": "linear", **transition}
    return params


def _prompt_problems(prompts: Any, loc: list[str | int]) -> list[dict[str, Any]]:
    if not isinstance(prompts, list):
        return [problem("list_type", loc, "Input should be a valid list", prompts)]
    out = []
    for i, item in enumerate(prompts):
        if not isinstance(item, Mapping):
            msg = "Input should be a valid dictionary or object to extract fields from"
            out.append(problem("model_attributes_type", [*loc, i], msg, item))
        elif not isinstance(item.get("text"), str):
            kind = "missing" if "text" not in item else "string_type"
            out.append(problem(kind, [*loc, i, "text"], "Field required", item))
        else:
            weight = item.get("weight", 1.0)
            if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not weight >= 0:
                msg = "Input should be greater than or equal to 0"
                out.append(problem("greater_than_equal", [*loc, i, "weight"], msg, weight))
    return out


def _range_problems(value: Any, lo: float | None, hi: float | None, loc: list[str | int]) -> list[dict[str, Any]]:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return [problem("float_type", loc, "Input should be a valid number", value)]
    if lo is not None and value < lo:
        return [problem("greater_than_equal", loc, f"Input should be greater than or equal to {lo}", value)]
    if hi is not None and value > hi:
        return [problem("less_than_equal", loc, f"Input should be less than or equal to {hi}", value)]
    return []
