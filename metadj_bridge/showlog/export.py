"""A show log as a Scope timeline, so a set can be re-rendered later in Scope's timeline editor.

The format is the one Scope's timeline editor exports and imports (version "2.0", e.g. Scope's
``src/scope/core/pipelines/longlive/docs/examples/timeline-panda.json``; a copy is in
``tests/fixtures/timeline/``)::

    {"prompts": [{"startTime": 0, "endTime": 11.46, "prompts": [{"text": "...", "weight": 100}]}, ...],
     "settings": {"pipelineId", "resolution": {"height", "width"}, "seed", "denoisingSteps", "noiseScale",
                  "noiseController", "manageCache"},
     "version": "2.0", "exportedAt": ISO time}

How the show becomes ranges:

- the initial prompts start the first range at 0;
- a ``transition`` (a theme switch) starts a new range with the transition's target prompts; the range also
  carries ``transitionSteps`` and ``temporalInterpolationMethod``, the optional fields of Scope's
  ``TimelinePrompt`` (its importer keeps them);
- ``prompts`` with other prompt texts start a new range; ``prompts`` with the same texts and other weights
  (a crossfade on a knob) stay in the range, whose weights are the time-weighted blend over it;
- the last range ends where the show ended. Weights are written in percent (Scope's editor uses 100 for a
  single prompt); zero-length ranges are left out, as Scope's own export does.

Scope's timeline has one value per setting for the whole set, so live changes of ``noise_scale`` and the like
cannot be kept: the settings are the values the show started with. Pure: a recording in, a dict out.
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
from metadj_bridge.showlog.log import ShowRecording, read_show_log

__all__ = ["TIMELINE_VERSION", "build_timeline", "export_timeline", "timeline_path_for"]

TIMELINE_VERSION = "2.0"

#: Scope's defaults for settings the show never set (its UI's defaults; the panda example's values).
DEFAULT_SEED = 42
DEFAULT_NOISE_SCALE = 0.7
DEFAULT_DENOISING = [1000, 750, 500, 250]


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


def build_timeline(recording: ShowRecording, *, exported_at: datetime | None = None) -> dict[str, Any]:
    """The Scope timeline (a JSON-ready dict) for a show recording."""
    header = recording.header
    initial = header.initial
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
    out_ranges: list[dict[str, Any]] = []
    for i, rng in enumerate(ranges):
        end = ranges[i + 1].start if i + 1 < len(ranges) else end_of_show
        if end <= rng.start:
            continue  # zero-length: Scope's export leaves these out too
        item: dict[str, Any] = {
            "startTime": _round(rng.start),
            "endTime": _round(end),
            "prompts": [
                {"text": text, "weight": weight}
                for text, weight in zip(rng.texts, _percent(rng.blend(end)), strict=True)
            ],
        }
        if rng.transition is not None:
            item["transitionSteps"] = int(rng.transition.get("num_steps", 0) or 0)
            item["temporalInterpolationMethod"] = str(rng.transition.get("temporal_interpolation_method", "linear"))
        out_ranges.append(item)

    def setting(key: str, default: Any) -> Any:
        if key in initial:
            return initial[key]
        for entry in recording.sent:
            if key in entry.message:
                return entry.message[key]
        return default

    steps = header.denoising_step_list or setting("denoising_step_list", DEFAULT_DENOISING)
    settings = {
        "pipelineId": header.pipeline,
        "resolution": {"height": header.height, "width": header.width},
        "seed": int(setting("base_seed", DEFAULT_SEED)),
        "denoisingSteps": [int(s) for s in steps],
        "noiseScale": float(setting("noise_scale", DEFAULT_NOISE_SCALE)),
        "noiseController": bool(setting("noise_controller", True)),
        "manageCache": bool(setting("manage_cache", True)),
    }
    when = exported_at or datetime.now(UTC)
    return {
        "prompts": out_ranges,
        "settings": settings,
        "version": TIMELINE_VERSION,
        "exportedAt": when.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
    }


def export_timeline(show_log: str | os.PathLike[str], output: str | os.PathLike[str]) -> dict[str, Any]:
    """``metadj-bridge export-timeline``: read ``show_log``, write its timeline to ``output``; returns the timeline."""
    timeline = build_timeline(read_show_log(show_log))
    out = Path(output)
    try:
        out.write_text(json.dumps(timeline, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    except OSError as exc:
        raise MetaDJError(f"{out}: cannot write the timeline ({exc.strerror or exc})") from exc
    return timeline


def timeline_path_for(show_log: str | os.PathLike[str]) -> Path:
    """The default output beside a show log: ``show.jsonl`` -> ``show.timeline.json``."""
    p = Path(show_log)
    stem = p.name[: -len(".jsonl")] if p.name.endswith(".jsonl") else p.stem
    return p.with_name(stem + ".timeline.json")
