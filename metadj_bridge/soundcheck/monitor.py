"""``metadj-bridge monitor``: see what the controllers and DJ software send.

``monitor`` prints every incoming MIDI and OSC signal under its mapping name (the name a profile uses), so
a performer knows what to write. The inputs deliver into the printer as they would into a running show's
signal board. ``learn`` (:mod:`.learn`) opens the same inputs.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TextIO

from metadj_bridge.errors import ConfigError
from metadj_bridge.lifecycle import stop_signals
from metadj_bridge.signals import InputSink, Signal, TempoReading, Trigger

#: A continuous value is printed again when it moved this much, or after this long.
PRINT_STEP = 1 / 127
PRINT_EVERY_S = 0.5


@dataclass
class ControlOptions:
    midi: list[str] = field(default_factory=list)
    virtual: str | None = None
    no_midi: bool = False
    osc_host: str = "127.0.0.1"
    osc_port: int = 7001
    no_osc: bool = False
    duration: float | None = None


async def open_control_inputs(options: ControlOptions, sink: InputSink, err: TextIO) -> list[Any]:
    """Start the MIDI and OSC inputs asked for.

    MIDI that cannot start here (no ALSA sequencer, no JACK server, a backend that fails to load) is said once,
    with the reason, and the other inputs go on; only when nothing at all can listen is it an error. A ``--midi``
    pattern that matches no port stays an error: the performer asked for that controller by name.
    """
    opened: list[Any] = []
    midi_off = ""
    if not options.no_midi:
        try:
            midi = await _open_midi(options, sink, err)
        except MidiUnavailable as exc:
            midi_off = str(exc)
        else:
            if midi is not None:
                opened.append(midi)
    if not options.no_osc:
        from metadj_bridge.inputs.osc import OscInput

        osc = OscInput(options.osc_host, options.osc_port, sink=sink)
        try:
            await osc.start()
        except BaseException:
            await close_all(opened)
            raise
        opened.append(osc)
        if midi_off:
            err.write(f"MIDI is off, going on with OSC only: {midi_off}\n")
        err.write(f"OSC: listening on {options.osc_host}:{osc.port} (UDP)\n")
    if not opened:
        why = (f"MIDI cannot start ({midi_off})" if midi_off else "MIDI is off" if options.no_midi
               else "there is no MIDI input port")
        raise ConfigError(f"nothing to listen to: {why} and OSC is off")
    return opened


class MidiUnavailable(Exception):
    """MIDI cannot start on this machine (the message says why); the other inputs can still listen."""


async def _open_midi(options: ControlOptions, sink: InputSink, err: TextIO) -> Any:
    """The started MidiInput, or None when there is nothing to open; MidiUnavailable when MIDI cannot start."""
    from metadj_bridge.inputs.midi import MidiInput
    from metadj_bridge.inputs.midi_ports import list_midi_ports, no_match, port_matcher

    try:
        inputs, _ = await asyncio.to_thread(list_midi_ports)
    except ConfigError as exc:
        raise MidiUnavailable(str(exc)) from exc
    patterns = options.midi
    for pattern in patterns:
        if not any(port_matcher(pattern)(name) for name in inputs):
            raise no_match("input", pattern, inputs)
    if not patterns and options.virtual is None:
        patterns = ["re:."] if inputs else []  # every input port there is
    if not patterns and options.virtual is None:
        err.write("MIDI: no input ports (plug a controller in, or use --virtual NAME)\n")
        return None
    midi = MidiInput(patterns, virtual_name=options.virtual, sink=sink)
    try:
        await midi.start()
    except ConfigError as exc:
        # The ports were there a moment ago: a backend that cannot open a port or make a virtual one here.
        await midi.aclose()
        raise MidiUnavailable(str(exc)) from exc
    ports = ", ".join(midi.port_names) or "(none)"
    err.write(f"MIDI: {ports}" + (f" + virtual port {options.virtual!r}" if options.virtual else "") + "\n")
    return midi


async def close_all(inputs: list[Any]) -> None:
    for item in inputs:
        with contextlib.suppress(Exception):
            await item.aclose()


class MonitorPrinter:
    """An input sink that prints: every trigger, a continuous value when it moved or now and then, the tempo."""

    def __init__(self, out: TextIO, clock: Callable[[], float] = time.monotonic) -> None:
        self.out = out
        self.clock = clock
        self._last: dict[str, tuple[float, float]] = {}
        self._tempo_printed: dict[str, float] = {}

    def fire(self, item: Trigger) -> None:
        details = " ".join(f"{k}={_fmt(v)}" for k, v in item.data.items())
        self.out.write(f"trigger {item.name}" + (f"  {details}" if details else "") + "\n")
        self.out.flush()

    def set(self, item: Signal) -> None:
        now = self.clock()
        last = self._last.get(item.name)
        if last is not None and abs(item.value - last[0]) < PRINT_STEP and now - last[1] < PRINT_EVERY_S:
            return
        self._last[item.name] = (item.value, now)
        self.out.write(f"signal  {item.name}  {item.value:.3f}\n")
        self.out.flush()

    def tempo(self, reading: TempoReading) -> None:
        now = self.clock()
        if now - self._tempo_printed.get(reading.source, -1e9) < 1.0:
            return
        self._tempo_printed[reading.source] = now
        state = "" if reading.playing else " (stopped)"
        self.out.write(f"tempo   {reading.source}  {reading.bpm:.2f} BPM{state}\n")
        self.out.flush()


def _fmt(value: Any) -> str:
    return f"{value:.3f}" if isinstance(value, float) else str(value)


async def run_monitor(options: ControlOptions, out: TextIO | None = None, err: TextIO | None = None) -> int:
    out = out or sys.stdout
    err = err or sys.stderr
    printer = MonitorPrinter(out)
    inputs = await open_control_inputs(options, printer, err)
    stop = asyncio.Event()
    err.write("move a control; Ctrl-C to stop\n")
    try:
        with stop_signals(stop.set), contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=options.duration)
    finally:
        await close_all(inputs)
    return 0
