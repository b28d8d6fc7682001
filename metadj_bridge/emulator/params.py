"""Scope's per-session parameter rules, without clocks: the 8-message queue and the merge.

Imitates ``PipelineProcessor`` of Scope 0.2.4 (``scope-api.md`` §6):

- ``ParameterQueue`` holds at most 8 messages and drops the *newest* when full (``put_nowait`` on a
  full ``queue.Queue``), which is why a client streaming a knob at 30 Hz loses its last value.
- ``SessionParameters`` merges one message at a time into a persistent dict, cancels a pending
  transition when ``prompts`` arrive without one, accumulates ``ctrl_input`` mouse deltas, and on
  each generated chunk removes the one-shot keys and advances a prompt transition by one step.

Each chunk's ``ChunkSettings.digest`` is ``stamp.params_digest`` of the parameter dict as the chunk loop
had merged it when the chunk started: every message applied so far, ``paused`` left out, the one-shot keys
(``reset_cache``, ``lora_scales``, ...) included for the one chunk that consumes them, and a transition
included until the chunk that completes it (after which ``prompts`` is its target). Frames carry it in
their stamp, so a test can tell from a received frame which messages it shows.

The chunk loop (``pipeline.py``) decides *when* these run; this module only says *what* happens.
"""

from __future__ import annotations

import logging
import math
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from metadj_bridge.emulator.stamp import params_digest
from metadj_bridge.parameters import ONE_SHOT_KEYS

logger = logging.getLogger(__name__)

#: Scope's ``parameters_queue = queue.Queue(maxsize=8)``.
QUEUE_CAPACITY = 8

#: A prompt blend: text -> weight, weights summing to 1 (empty: no prompt).
Blend = dict[str, float]


class ParameterQueue:
    """Bounded FIFO of data-channel messages; a message arriving when it is full is dropped."""

    def __init__(self, capacity: int = QUEUE_CAPACITY) -> None:
        self.capacity = capacity
        self._items: deque[dict[str, Any]] = deque()

    def __len__(self) -> int:
        return len(self._items)

    def offer(self, message: dict[str, Any]) -> bool:
        """Queue ``message``; False (and nothing queued) when the queue is already full."""
        if len(self._items) >= self.capacity:
            return False
        self._items.append(message)
        return True

    def take(self) -> dict[str, Any] | None:
        """The oldest message, or None when empty."""
        return self._items.popleft() if self._items else None

    def clear(self) -> None:
        self._items.clear()


@dataclass(frozen=True)
class ChunkSettings:
    """What one generated chunk looks like, captured when the chunk starts."""

    prompts: tuple[tuple[str, float], ...]
    noise_scale: float
    base_seed: int
    denoising_steps: tuple[int, ...] | None
    reset_cache: bool
    #: (step, of) while a transition is in progress for this chunk, else None.
    transition_step: tuple[int, int] | None
    #: The one-shot keys consumed by this chunk, with their values.
    one_shots: dict[str, Any]
    #: ``params_digest`` of the parameters this chunk used (see the module docstring).
    digest: int = 0


def normalise_blend(prompts: Any) -> Blend:
    """Scope's prompt blend from any accepted prompt value.

    Strings and ``{"text","weight"}`` mappings are both accepted (the data channel is not
    validated); anything unusable is ignored. Weights are normalised to sum to 1, as Scope's
    ``blending.py`` does; all-zero weights count as equal.
    """
    if isinstance(prompts, str):
        prompts = [prompts]
    if not isinstance(prompts, (list, tuple)):
        return {}
    blend: Blend = {}
    for item in prompts:
        if isinstance(item, str):
            text, weight = item, 1.0
        elif isinstance(item, Mapping) and isinstance(item.get("text"), str):
            text, raw = item["text"], item.get("weight", 1.0)
            ok = isinstance(raw, (int, float)) and not isinstance(raw, bool) and math.isfinite(raw)
            weight = max(0.0, float(raw)) if ok else 1.0
        else:
            continue
        blend[text] = blend.get(text, 0.0) + weight
    total = sum(blend.values())
    if not blend:
        return {}
    if total <= 0:
        return {text: 1.0 / len(blend) for text in blend}
    return {text: w / total for text, w in blend.items()}


def mix_blends(source: Blend, target: Blend, t: float) -> Blend:
    """Linear interpolation between two blends (``t`` 0 = source, 1 = target)."""
    if not source:
        return dict(target)
    out: Blend = {}
    for text, w in source.items():
        out[text] = out.get(text, 0.0) + w * (1.0 - t)
    for text, w in target.items():
        out[text] = out.get(text, 0.0) + w * t
    return {text: w for text, w in out.items() if w > 1e-6}


class SessionParameters:
    """The parameter dict of one session and the prompt state derived from it."""

    def __init__(self, initial: Mapping[str, Any] | None = None) -> None:
        self.values: dict[str, Any] = dict(initial or {})
        self.values.pop("paused", None)  # the pipeline owns pause; it is never a stored parameter
        self.blend: Blend = normalise_blend(self.values.get("prompts", []))
        self._source: Blend = {}
        self._target: Blend = {}
        self._target_raw: Any = None
        self._steps = 0
        self._step = 0
        self.video_mode = self.values.get("input_mode") == "video"
        if isinstance(self.values.get("transition"), Mapping):
            self._start_transition(self.values["transition"])

    @property
    def in_transition(self) -> bool:
        return self._steps > 0

    def apply(self, message: Mapping[str, Any]) -> None:
        """Merge one queued message, as ``process_chunk`` does when it takes it off the queue."""
        new = dict(message)
        new.pop("paused", None)  # already applied when the message arrived
        if "prompts" in new and "transition" not in new and "transition" in self.values:
            self.values.pop("transition", None)
            self._steps = 0
        if "input_mode" in new:
            self.video_mode = new.get("input_mode") == "video"
        if isinstance(new.get("ctrl_input"), Mapping) and isinstance(self.values.get("ctrl_input"), Mapping):
            old_mouse = _mouse(self.values["ctrl_input"])
            new_mouse = _mouse(new["ctrl_input"])
            new["ctrl_input"] = {
                "button": new["ctrl_input"].get("button", []),
                "mouse": [old_mouse[0] + new_mouse[0], old_mouse[1] + new_mouse[1]],
            }
        self.values.update(new)
        if "transition" in new:
            self._start_transition(new["transition"])
        elif "prompts" in new:
            self._steps = 0
            self.blend = normalise_blend(new["prompts"])

    def next_chunk(self) -> ChunkSettings:
        """Settings for the chunk about to be generated; consumes one-shots and a transition step."""
        digest = params_digest(self.values)
        one_shots = {key: self.values.pop(key) for key in sorted(ONE_SHOT_KEYS) if key in self.values}
        step: tuple[int, int] | None = None
        if self._steps > 0:
            self._step += 1
            step = (self._step, self._steps)
            self.blend = mix_blends(self._source, self._target, self._step / self._steps)
            if self._step >= self._steps:
                self._finish_transition()
        return ChunkSettings(
            prompts=tuple(sorted(self.blend.items(), key=lambda kv: -kv[1])),
            noise_scale=_number(self.values.get("noise_scale"), 0.0, 0.0, 1.0),
            base_seed=int(_number(self.values.get("base_seed"), 42, 0, 2**31 - 1)),
            denoising_steps=_steps(self.values.get("denoising_step_list")),
            reset_cache=bool(one_shots.get("reset_cache")),
            transition_step=step,
            one_shots=one_shots,
            digest=digest,
        )

    def _start_transition(self, transition: Any) -> None:
        if not isinstance(transition, Mapping):
            logger.info("Ignoring transition that is not an object: %r", transition)
            self.values.pop("transition", None)
            return
        target_raw = transition.get("target_prompts", [])
        target = normalise_blend(target_raw)
        steps = transition.get("num_steps", 0)  # the data channel is not validated: missing = snap
        if not isinstance(steps, int) or isinstance(steps, bool) or steps < 0:
            steps = 0
        self._source = dict(self.blend)
        self._target, self._target_raw = target, target_raw
        if steps == 0 or not target:
            self._steps = 0
            if target:
                self._finish_transition()
            else:
                self.values.pop("transition", None)
            return
        self._steps, self._step = steps, 0

    def _finish_transition(self) -> None:
        """The target becomes the current prompts, as Scope's text conditioning does."""
        self.blend = dict(self._target)
        self.values["prompts"] = self._target_raw
        self.values.pop("transition", None)
        self._steps = self._step = 0


def _mouse(ctrl: Mapping[str, Any]) -> tuple[float, float]:
    mouse = ctrl.get("mouse", [0, 0])
    try:
        return float(mouse[0]), float(mouse[1])
    except (TypeError, ValueError, IndexError):
        return 0.0, 0.0


def _number(value: Any, default: float, lo: float, hi: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return default
    return min(hi, max(lo, float(value)))


def _steps(value: Any) -> tuple[int, ...] | None:
    if isinstance(value, (list, tuple)) and all(isinstance(v, int) and not isinstance(v, bool) for v in value):
        return tuple(value)
    return None
