"""A show log as a Scope workflow file, so a set can be re-rendered later from Scope's timeline.

Scope 0.2.4 imports workflow files (``.scope-workflow.json``; its old version "2.0" timeline import was removed
in March 2026). The rules this file follows are Scope's, at v0.2.4 (commit 68b0f956):
``frontend/src/components/WorkflowImportDialog.tsx`` (``format`` must be ``"scope-workflow"``; ``metadata.name``
a string; ``pipelines`` a non-empty list), ``src/scope/core/workflows/resolve.py`` (each pipeline has a
``pipeline_id`` and a ``source`` with a ``type``; ``loras`` a list), ``frontend/src/lib/workflowApi.ts`` and
``workflowSettings.ts`` (the types, and how ``params``, ``timeline.entries`` and the top-level prompt state
are read back), and ``docs/workflows.md``::

    {"format": "scope-workflow", "format_version": "1.0",
     "metadata": {"name", "created_at": ISO time, "scope_version"},
     "pipelines": [{"pipeline_id", "pipeline_version": null, "source": {"type": "builtin"}, "loras": [],
                    "params": {"width", "height", "input_mode", "denoising_step_list", "noise_scale", ...},
                    "role": "main"}],
     "timeline": {"entries": [{"start_time", "end_time", "prompts": [{"text", "weight"}],
                               "transition_steps"?, "temporal_interpolation_method"?}]},
     "prompts": [{"text", "weight"}], "interpolation_method"?, "transition_steps"?,
     "temporal_interpolation_method"?}

How the show becomes timeline entries:

- the initial prompts start the first entry at 0;
- a ``transition`` (a theme switch) starts a new entry with the transition's target prompts; the entry also
  carries ``transition_steps`` and ``temporal_interpolation_method``;
- ``prompts`` with other prompt texts start a new entry; ``prompts`` with the same texts and other weights
  (a crossfade on a knob) stay in the entry, whose weights are the time-weighted blend over it;
- the last entry ends where the show ended. Weights are written in percent (Scope's timeline uses 100 for a
  single prompt); zero-length entries are left out, as Scope's own export does.

A workflow has one value per setting for the whole set, so live changes of ``noise_scale`` and the like cannot
be kept: ``params`` holds the values the show started with (only those it set, and only the settings Scope's
importer reads, with the types it takes). The pipeline is named as a built-in one: a plugin pipeline shows as
missing in Scope's import dialog until its plugin is installed. Pure: a recording in, a dict out.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from metadj_bridge.errors import MetaDJError
from metadj_bridge.showlog.reading import ShowRecording, read_show_log

__all__ = ["WORKFLOW_FORMAT", "build_workflow", "export_workflow", "workflow_path_for"]

WORKFLOW_FORMAT = "scope-workflow"
WORKFLOW_FORMAT_VERSION = "1.0"
#: The Scope version whose import rules the file follows (a show log does not record the server's version).
SCOPE_VERSION = "0.2.4"
#: Settings Scope's importer reads from ``params``, with the JSON type it keeps (``workflowSettings.ts``
#: PARAM_MAPPINGS; a value of another type is dropped on import), and ``base_seed`` (a schema field).
WORKFLOW_PARAMS: dict[str, tuple[type, ...]] = {
    "noise_scale": (int, float),
    "noise_controller": (bool,),
    "manage_cache": (bool,),
    "kv_cache_attention_bias": (int, float),
    "vace_context_scale": (int, float),
    "base_seed": (int,),
}
_METHODS = ("linear", "slerp")


@dataclass
class _Range:
    start: float
    texts: tuple[str, ...]
    weights: list[float]
    transition: Mapping[str, Any] | None = None
    #: Time-weighted sums of the weights, and the time they cover.
    _sums: list[float] = field(default_factory=list)
    _covered: float = 0.0
    _since: float = 0.0

    def __post_init__(self) -> None:
        self._sums = [0.0] * len(self.weights)
        self._since = self.start

    def reweigh(self, t: float, weights: list[float]) -> None:
        self._accumulate(t)
        self.weights = weights

    def _accumulate(self, t: float) -> None:
        span = max(0.0, t - self._since)
        for i, w in enumerate(self.weights):
            self._sums[i] += w * span
        self._covered += span
        self._since = t

    def blend(self, end: float) -> list[float]:
        self._accumulate(end)
        if self._covered <= 0:
            return list(self.weights)
        return [s / self._covered for s in self._sums]


def _prompt_list(value: Any) -> list[tuple[str, float]] | None:
    """Prompts as (text, weight) pairs, or None for something that is not a prompt list."""
    if isinstance(value, str):
        return [(value, 1.0)]
    if not isinstance(value, Sequence):
        return None
    out = []
    for item in value:
        if isinstance(item, str):
            out.append((item, 1.0))
        elif isinstance(item, Mapping) and isinstance(item.get("text"), str):
            weight = item.get("weight", 1.0)
            ok = isinstance(weight, (int, float)) and not isinstance(weight, bool) and weight >= 0
            out.append((item["text"], float(weight) if ok else 1.0))
        else:
            return None
    return out


def _percent(weights: list[float]) -> list[float]:
    total = sum(weights)
    if total <= 0:
        return [round(100 / len(weights), 2)] * len(weights) if weights else []
    return [round(w / total * 100, 2) for w in weights]


def _round(t: float) -> float | int:
    value = round(t, 4)
    return int(value) if value == int(value) else value


def _entries(recording: ShowRecording) -> list[dict[str, Any]]:
    """The show's prompts as timeline entries (see the module's docstring)."""
    initial = recording.header.initial
    ranges: list[_Range] = []

    def start_range(t: float, prompts: list[tuple[str, float]], transition: Mapping[str, Any] | None) -> None:
        ranges.append(_Range(t, tuple(p[0] for p in prompts), [p[1] for p in prompts], transition))

    first = _prompt_list(initial.get("prompts")) if "prompts" in initial else None
    if first:
        start_range(0.0, first, None)
    for entry in recording.sent:
        message = entry.message
        transition = message.get("transition")
        if isinstance(transition, Mapping):
            target = _prompt_list(transition.get("target_prompts"))
            if target:
                start_range(entry.t, target, transition)
            continue
        prompts = _prompt_list(message.get("prompts")) if "prompts" in message else None
        if not prompts:
            continue
        texts = tuple(p[0] for p in prompts)
        if ranges and ranges[-1].texts == texts:
            ranges[-1].reweigh(entry.t, [p[1] for p in prompts])
        else:
            start_range(entry.t, prompts, None)

    end_of_show = max([recording.duration] + [r.start for r in ranges])
    entries: list[dict[str, Any]] = []
    for i, rng in enumerate(ranges):
        end = ranges[i + 1].start if i + 1 < len(ranges) else end_of_show
        if end <= rng.start:
            continue  # zero-length: Scope's export leaves these out too
        item: dict[str, Any] = {
            "start_time": _round(rng.start),
            "end_time": _round(end),
            "prompts": [
                {"text": text, "weight": weight}
                for text, weight in zip(rng.texts, _percent(rng.blend(end)), strict=True)
            ],
        }
        if rng.transition is not None:
            steps = rng.transition.get("num_steps", 0)
            item["transition_steps"] = int(steps) if isinstance(steps, int | float) and not isinstance(steps, bool) \
                else 0
            method = rng.transition.get("temporal_interpolation_method")
            if method in _METHODS:
                item["temporal_interpolation_method"] = method
        entries.append(item)
    return entries


def _setting(recording: ShowRecording, key: str) -> Any:
    """The value the show started with: the initial state's, else the first one sent; None if never set."""
    if key in recording.header.initial:
        return recording.header.initial[key]
    for entry in recording.sent:
        if key in entry.message:
            return entry.message[key]
    return None


def _params(recording: ShowRecording) -> dict[str, Any]:
    """The main pipeline's ``params``: load size, input mode, denoising steps and the show's start settings."""
    header = recording.header
    params: dict[str, Any] = {"width": header.width, "height": header.height, "input_mode": header.input_mode,
                              "vace_enabled": header.extra.get("vace_enabled") is True}
    steps = header.denoising_step_list or _setting(recording, "denoising_step_list")
    if isinstance(steps, list) and steps and all(isinstance(s, int) and not isinstance(s, bool) for s in steps):
        params["denoising_step_list"] = list(steps)
    for key, kinds in WORKFLOW_PARAMS.items():
        value = _setting(recording, key)
        if isinstance(value, kinds) and (bool in kinds or not isinstance(value, bool)):
            params[key] = value
    return params


def build_workflow(
    recording: ShowRecording, *, name: str | None = None, exported_at: datetime | None = None
) -> dict[str, Any]:
    """The Scope workflow (a JSON-ready dict) for a show recording; ``name`` defaults to the log's file name."""
    header = recording.header
    entries = _entries(recording)
    when = (exported_at or datetime.now(UTC)).astimezone(UTC)
    scope_version = header.extra.get("scope_version")
    workflow: dict[str, Any] = {
        "format": WORKFLOW_FORMAT,
        "format_version": WORKFLOW_FORMAT_VERSION,
        "metadata": {
            "name": name or _show_name(recording.path),
            "created_at": when.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "scope_version": scope_version if isinstance(scope_version, str) else SCOPE_VERSION,
        },
        "pipelines": [{
            "pipeline_id": header.pipeline,
            "pipeline_version": None,
            "source": {"type": "builtin"},
            "loras": [],
            "params": _params(recording),
            "role": "main",
        }],
        "timeline": {"entries": entries} if entries else None,
    }
    if entries:  # the prompt state Scope shows before the timeline plays: the first entry's
        workflow["prompts"] = [dict(p) for p in entries[0]["prompts"]]
    method = _setting(recording, "spatial_interpolation_method")
    if method in _METHODS:
        workflow["interpolation_method"] = method
    transition = next((e for e in entries if "transition_steps" in e), None)
    if transition is not None:
        workflow["transition_steps"] = transition["transition_steps"]
        if "temporal_interpolation_method" in transition:
            workflow["temporal_interpolation_method"] = transition["temporal_interpolation_method"]
    return workflow


def _show_name(path: Path) -> str:
    name = path.name
    return name[: -len(".jsonl")] if name.endswith(".jsonl") else path.stem or "metadj show"

def export_workflow(
    show_log: str | os.PathLike[str], output: str | os.PathLike[str], *, name: str | None = None
) -> dict[str, Any]:
    """``metadj-bridge export-timeline``: read ``show_log``, write its Scope workflow to ``output``; returns it."""
    workflow = build_workflow(read_show_log(show_log), name=name)
    out = Path(output)
    try:
        out.write_text(json.dumps(workflow, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    except OSError as exc:
        raise MetaDJError(f"{out}: cannot write the workflow ({exc.strerror or exc})") from exc
    return workflow


def workflow_path_for(show_log: str | os.PathLike[str]) -> Path:
    """The default output beside a show log: ``show.jsonl`` -> ``show.scope-workflow.json`` (the extension Scope's
    export gives its workflow files)."""
    p = Path(show_log)
    stem = p.name[: -len(".jsonl")] if p.name.endswith(".jsonl") else p.stem
    return p.with_name(stem + ".scope-workflow.json")
