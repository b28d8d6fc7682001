"""``metadj-bridge learn``: move a control, get the YAML mapping for it.

``learn`` waits for one control to move and prints the snippet for it (a mapping with its source and the range
it moved over), or inserts it into a profile under ``mappings:``, keeping the file's comments.
"""

from __future__ import annotations

import asyncio
import re
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

import yaml

from metadj_bridge.errors import ConfigError
from metadj_bridge.lifecycle import stop_signals
from metadj_bridge.signals import Signal, TempoReading, Trigger
from metadj_bridge.soundcheck.monitor import ControlOptions, close_all, open_control_inputs

#: How far a continuous control must move to count as "the one being moved", and how long its range is watched
#: after that.
LEARN_MOVE = 0.15
LEARN_WATCH_S = 1.5


#: What a learned control drives until the performer edits the profile.
DEFAULT_CONTINUOUS_TARGET = "noise_scale"
DEFAULT_TRIGGER_TARGET = "theme.next"


@dataclass
class Learned:
    source: str
    kind: str  # "continuous" or "trigger"
    low: float = 0.0
    high: float = 1.0

    def snippet(self, slot: str, target: str | None = None) -> str:
        """A mapping for a show profile's ``mappings:``. A continuous control's travel while learning becomes its
        input range, so the part of the knob that moved covers the whole target range."""
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
    far enough (then its range is watched a little longer)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self._first: dict[str, float] = {}
        self.learned: Learned | None = None
        self._watch_until = 0.0
        self.done = asyncio.Event()

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
            if self.clock() >= self._watch_until:
                self.done.set()
            return
        if isinstance(item, Trigger):
            # Notes arrive as a trigger and a held-level signal; the trigger names the pad.
            self.learned = Learned(item.name, "trigger")
            self.done.set()
            return
        first = self._first.setdefault(item.name, item.value)
        if abs(item.value - first) >= LEARN_MOVE:
            self.learned = Learned(item.name, "continuous", min(first, item.value), max(first, item.value))
            self._watch_until = self.clock() + LEARN_WATCH_S

    def tick(self) -> None:
        if self.learned is not None and not self.done.is_set() and self.clock() >= self._watch_until:
            self.done.set()


def insert_into_profile(path: Path, slot: str, snippet: str, section: str = "mappings") -> None:
    """Put ``snippet`` under the profile's top-level ``mappings:``, keeping everything else as written."""
    text = path.read_text(encoding="utf-8") if path.exists() else ""
    try:
        data = yaml.safe_load(text) if text.strip() else {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: is not valid YAML ({exc}); fix it before learning into it") from None
    if data is not None and not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of keys, not {type(data).__name__}")
    existing = (data or {}).get(section)
    if existing is not None and not isinstance(existing, dict):
        raise ConfigError(f"{path}: {section}: must be a mapping of named entries")
    if existing and slot in existing:
        raise ConfigError(f"{path}: {section}.{slot} already exists; choose another --name or remove it first")
    block = "".join("  " + line + "\n" for line in snippet.splitlines())
    lines = text.splitlines(keepends=True)
    header = re.compile(rf"^{re.escape(section)}:\s*(#.*)?$")
    for i, line in enumerate(lines):
        if header.match(line.rstrip("\n")):
            lines.insert(i + 1, block)
            break
    else:
        if lines and not lines[-1].endswith("\n"):
            lines[-1] += "\n"
        lines.append(("\n" if lines else "") + f"{section}:\n" + block)
    new_text = "".join(lines)
    check = yaml.safe_load(new_text)
    if not isinstance(check, dict) or slot not in (check.get(section) or {}):
        raise ConfigError(f"{path}: could not insert {section}.{slot} cleanly; add it by hand:\n{snippet}")
    path.write_text(new_text, encoding="utf-8")


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
    snippet = learner.learned.snippet(slot, target)
    if write:
        insert_into_profile(Path(write), slot, snippet)
        err.write(f"written to {write} under mappings.{slot}; set its target, then `metadj-bridge check {write}`\n")
    out.write(snippet)
    return 0
