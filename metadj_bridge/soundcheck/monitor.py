"""``metadj-bridge monitor`` and ``metadj-bridge learn``: see what the controllers and DJ software send.

``monitor`` prints every incoming MIDI and OSC signal under its mapping name (the name a profile uses), so
a performer knows what to write. ``learn`` waits for one control to move and prints the YAML snippet for it
(a mapping with its source and the range it moved over), or inserts it into a profile under ``mappings:``,
keeping the file's comments.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import signal as signals
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import yaml

from metadj_bridge.errors import ConfigError
from metadj_bridge.signals import Signal, TempoReading, Trigger

#: A continuous value is printed again when it moved this much, or after this long.
PRINT_STEP = 1 / 127
PRINT_EVERY_S = 0.5
#: learn: how far a continuous control must move to count as "the one being moved", and how long its
#: range is watched after that.
LEARN_MOVE = 0.15
LEARN_WATCH_S = 1.5


@dataclass
class ControlOptions:
    midi: list[str] = field(default_factory=list)
    virtual: str | None = None
    no_midi: bool = False
    osc_host: str = "127.0.0.1"
    osc_port: int = 7001
    no_osc: bool = False
    duration: float | None = None


async def _open_inputs(
    options: ControlOptions,
    on_event: Callable[[Signal | Trigger], None],
    on_tempo: Callable[[TempoReading], None],
    err: TextIO,
) -> list[Any]:
    """Start the MIDI and OSC inputs asked for; a missing MIDI setup is reported and skipped."""
    opened: list[Any] = []
    if not options.no_midi:
        from metadj_bridge.inputs.midi import MidiInput, list_midi_ports

        patterns = options.midi
        if not patterns and options.virtual is None:
            inputs, _ = await asyncio.to_thread(list_midi_ports)
            patterns = ["re:."] if inputs else []  # every input port there is
        if patterns or options.virtual is not None:
            midi = MidiInput(patterns, virtual_name=options.virtual, on_event=on_event, on_tempo=on_tempo)
            await midi.start()
            opened.append(midi)
            ports = ", ".join(midi.port_names) or "(none)"
            err.write(f"MIDI: {ports}" + (f" + virtual port {options.virtual!r}" if options.virtual else "") + "\n")
        else:
            err.write("MIDI: no input ports (plug a controller in, or use --virtual NAME)\n")
    if not options.no_osc:
        from metadj_bridge.inputs.osc import OscInput

        def osc_event(item: Signal | Trigger) -> None:
            on_event(item)

        osc = OscInput(options.osc_host, options.osc_port, on_signal=osc_event, on_trigger=osc_event, on_tempo=on_tempo)
        await osc.start()
        opened.append(osc)
        err.write(f"OSC: listening on {options.osc_host}:{osc.port} (UDP)\n")
    if not opened:
        raise ConfigError("nothing to listen to: both MIDI and OSC are off")
    return opened


async def _close_all(inputs: list[Any]) -> None:
    for item in inputs:
        with contextlib.suppress(Exception):
            await item.aclose()


async def _wait(stop: asyncio.Event, duration: float | None) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), timeout=duration)


def _stop_on_signals(stop: asyncio.Event) -> list[signals.Signals]:
    loop = asyncio.get_running_loop()
    installed: list[signals.Signals] = []
    for sig in (signals.SIGINT, signals.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
            installed.append(sig)
    return installed


class MonitorPrinter:
    """Decides what to print: every trigger, a continuous value when it moved or now and then."""

    def __init__(self, out: TextIO, clock: Callable[[], float] = time.monotonic) -> None:
        self.out = out
        self.clock = clock
        self._last: dict[str, tuple[float, float]] = {}
        self._tempo_printed: dict[str, float] = {}

    def event(self, item: Signal | Trigger) -> None:
        now = self.clock()
        if isinstance(item, Trigger):
            details = " ".join(f"{k}={_fmt(v)}" for k, v in item.data.items())
            self.out.write(f"trigger {item.name}" + (f"  {details}" if details else "") + "\n")
            return
        last = self._last.get(item.name)
        if last is not None and abs(item.value - last[0]) < PRINT_STEP and now - last[1] < PRINT_EVERY_S:
            return
        self._last[item.name] = (item.value, now)
        self.out.write(f"signal  {item.name}  {item.value:.3f}\n")

    def tempo(self, reading: TempoReading) -> None:
        now = self.clock()
        if now - self._tempo_printed.get(reading.source, -1e9) < 1.0:
            return
        self._tempo_printed[reading.source] = now
        state = "" if reading.playing else " (stopped)"
        self.out.write(f"tempo   {reading.source}  {reading.bpm:.2f} BPM{state}\n")


def _fmt(value: Any) -> str:
    return f"{value:.3f}" if isinstance(value, float) else str(value)


async def run_monitor(options: ControlOptions, out: TextIO | None = None, err: TextIO | None = None) -> int:
    out = out or sys.stdout
    err = err or sys.stderr
    printer = MonitorPrinter(out)

    def on_event(item: Signal | Trigger) -> None:
        printer.event(item)
        out.flush()

    def on_tempo(reading: TempoReading) -> None:
        printer.tempo(reading)
        out.flush()

    inputs = await _open_inputs(options, on_event, on_tempo, err)
    stop = asyncio.Event()
    installed = _stop_on_signals(stop)
    err.write("move a control; Ctrl-C to stop\n")
    try:
        await _wait(stop, options.duration)
    finally:
        await _close_all(inputs)
        for sig in installed:
            asyncio.get_running_loop().remove_signal_handler(sig)
    return 0


# ----------------------------------------------------------------------------------------------- learn


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
    """Finds the control being moved: a trigger at once, or a continuous value that travels far enough."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self._first: dict[str, float] = {}
        self.learned: Learned | None = None
        self._watch_until = 0.0
        self.done = asyncio.Event()

    def event(self, item: Signal | Trigger) -> None:
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
    inputs = await _open_inputs(options, learner.event, lambda _reading: None, err)
    stop = asyncio.Event()
    installed = _stop_on_signals(stop)
    err.write("move the control to learn (a knob from one end to the other, or hit a pad)\n")
    try:
        deadline = None if options.duration is None else time.monotonic() + options.duration
        while not learner.done.is_set() and not stop.is_set():
            if deadline is not None and time.monotonic() > deadline:
                break
            learner.tick()
            await asyncio.sleep(0.05)
    finally:
        await _close_all(inputs)
        for sig in installed:
            asyncio.get_running_loop().remove_signal_handler(sig)
    if learner.learned is None:
        raise ConfigError("no control moved; check `metadj-bridge monitor` to see what arrives")
    snippet = learner.learned.snippet(slot, target)
    if write:
        insert_into_profile(Path(write), slot, snippet)
        err.write(f"written to {write} under mappings.{slot}; set its target, then `metadj-bridge check {write}`\n")
    out.write(snippet)
    return 0
