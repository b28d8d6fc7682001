"""``metadj-bridge learn``: move a control, get the YAML mapping for it.

``learn`` waits for one control to move and prints the snippet for it (a mapping with its source and the range
it moved over), or adds it to a profile under ``mappings:`` through :mod:`metadj_bridge.profile.edit` (which
keeps the file's comments and layout and refuses an edit that would not load).

A knob or fader is watched until it rests: its range grows while it moves, and learning ends once it has not
moved for LEARN_REST_S (a slow sweep with short pauses is heard whole), or LEARN_MAX_S after the first move
for a control that never rests (a jittering fader).
"""

from __future__ import annotations

import asyncio
import re
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TextIO

from metadj_bridge.errors import ConfigError
from metadj_bridge.lifecycle import stop_signals
from metadj_bridge.signals import Signal, TempoReading, Trigger
from metadj_bridge.soundcheck.monitor import ControlOptions, close_all, open_control_inputs

#: How far a continuous control must move to count as "the one being moved".
LEARN_MOVE = 0.15
#: Learning ends when the control has not moved for this long ...
LEARN_REST_S = 1.5
#: ... or this long after its first move, whatever it does.
LEARN_MAX_S = 20.0
#: A change smaller than this is jitter (a fader's last bit flickering), not a move: it does not delay the end.
LEARN_JITTER = 1.5 / 127
#: The most controls whose first value a learn keeps (as many as the signal board keeps values). A sender inventing
#: names (OSC addresses by the hundred thousand) pushes out the oldest: memory stays bounded, and the control the
#: performer moves now is still heard.
MAX_CANDIDATES = 4096


#: What a learned control drives until the performer edits the profile.
DEFAULT_CONTINUOUS_TARGET = "noise_scale"
DEFAULT_TRIGGER_TARGET = "theme.next"


@dataclass
class Learned:
    source: str
    kind: str  # "continuous" or "trigger"
    low: float = 0.0
    high: float = 1.0

    def mapping(self, target: str | None = None) -> dict[str, Any]:
        """The mapping as values for a profile's ``mappings:``. A continuous control's travel while learning
        becomes its input range, so the part of the knob that moved covers the whole target range."""
        if self.kind == "continuous":
            return {
                "source": self.source,
                "transforms": [{"range": {"in": [round(self.low, 3), round(self.high, 3)], "out": [0, 1]}}],
                "target": target or DEFAULT_CONTINUOUS_TARGET,
            }
        return {"trigger": self.source, "target": target or DEFAULT_TRIGGER_TARGET}

    def snippet(self, slot: str, target: str | None = None) -> str:
        """The mapping as YAML text, to paste under ``mappings:``."""
        if self.kind == "continuous":
            lines = [
                f"{slot}:",
                f"  source: {self.source}",
                f"  transforms: [{{range: {{in: [{self.low:.3f}, {self.high:.3f}], out: [0, 1]}}}}]",
                f"  target: {target or DEFAULT_CONTINUOUS_TARGET}",
            ]
        else:
            lines = [f"{slot}:", f"  trigger: {self.source}", f"  target: {target or DEFAULT_TRIGGER_TARGET}"]
        return "\n".join(lines) + "\n"


class Learner:
    """An input sink that finds the control being moved: a trigger at once, or a continuous value that travels
    far enough; then that control's range is recorded until it rests."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self._first: dict[str, float] = {}
        self.learned: Learned | None = None
        self._started = 0.0
        self._anchor = 0.0  # the value at the last move
        self._moved = 0.0  # when the control last moved
        self.done = asyncio.Event()

    @property
    def candidates(self) -> int:
        """How many controls' first values are kept (at most MAX_CANDIDATES)."""
        return len(self._first)

    def set(self, item: Signal) -> None:
        self._event(item)

    def fire(self, item: Trigger) -> None:
        self._event(item)

    def tempo(self, reading: TempoReading) -> None:
        """Tempo is not a control: nothing to learn."""

    def _event(self, item: Signal | Trigger) -> None:
        if self.done.is_set():
            return
        if self.learned is not None:
            if isinstance(item, Signal) and item.name == self.learned.source:
                self.learned.low = min(self.learned.low, item.value)
                self.learned.high = max(self.learned.high, item.value)
                if abs(item.value - self._anchor) >= LEARN_JITTER:
                    self._anchor = item.value
                    self._moved = self.clock()
            self.tick()
            return
        if isinstance(item, Trigger):
            # Notes arrive as a trigger and a held-level signal; the trigger names the pad.
            self.learned = Learned(item.name, "trigger")
            self.done.set()
            return
        first = self._first.get(item.name)
        if first is None:
            if len(self._first) >= MAX_CANDIDATES:
                del self._first[next(iter(self._first))]  # the oldest
            first = self._first[item.name] = item.value
        if abs(item.value - first) >= LEARN_MOVE:
            self.learned = Learned(item.name, "continuous", min(first, item.value), max(first, item.value))
            self._started = self._moved = self.clock()
            self._anchor = item.value

    def tick(self) -> None:
        """End learning once the control rests (or has moved for LEARN_MAX_S); called now and then."""
        if self.learned is None or self.done.is_set():
            return
        now = self.clock()
        if now - self._moved >= LEARN_REST_S or now - self._started >= LEARN_MAX_S:
            self.done.set()


async def run_learn(
    options: ControlOptions,
    slot: str = "control",
    write: str | None = None,
    out: TextIO | None = None,
    target: str | None = None,
    err: TextIO | None = None,
) -> int:
    out = out or sys.stdout
    err = err or sys.stderr
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_-]*", slot):
        raise ConfigError(f"--name {slot!r}: use letters, digits, _ and - (a YAML key), e.g. filter_knob")
    if write:
        from metadj_bridge.profile.edit import editable_profile

        editable_profile(write)  # before the performer moves anything
    learner = Learner()
    inputs = await open_control_inputs(options, learner, err)
    stop = asyncio.Event()
    err.write("move the control to learn (a knob from one end to the other, or hit a pad)\n")
    try:
        with stop_signals(stop.set):
            deadline = None if options.duration is None else time.monotonic() + options.duration
            while not learner.done.is_set() and not stop.is_set():
                if deadline is not None and time.monotonic() > deadline:
                    break
                learner.tick()
                await asyncio.sleep(0.05)
    finally:
        await close_all(inputs)
    if learner.learned is None:
        raise ConfigError("no control moved; check `metadj-bridge monitor` to see what arrives")
    if write:
        from metadj_bridge.profile.edit import add_mapping

        used = add_mapping(write, slot, learner.learned.mapping(target))
        if used != slot:
            err.write(f"mappings.{slot} is taken in {write}; named this one {used}\n")
        slot = used
        err.write(f"written to {write} under mappings.{slot}; set its target, then `metadj-bridge check {write}`\n")
    out.write(learner.learned.snippet(slot, target))
    return 0
