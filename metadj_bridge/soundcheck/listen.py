"""``metadj-bridge listen`` and ``metadj-bridge devices``: the sound check before a show.

``listen`` shows live meters, beats and BPM in the terminal, or with ``--json`` prints one JSON object per
line for every beat and onset: ``{"t": <s from the start of the audio>, "event": "beat"|"onset", "bpm",
"confidence"}``; a beat's ``bpm`` and ``confidence`` are the grid's when that beat fell, and it carries its
``beat_in_bar`` (0 = the downbeat). A ``--file`` is analysed faster than real time and the command ends with the file.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from metadj_bridge.errors import ConfigError
from metadj_bridge.inputs.analysis_config import AnalysisConfig, hop_size_for
from metadj_bridge.inputs.analyzer import AudioAnalyzer, AudioUpdate, BlockSource
from metadj_bridge.inputs.tempo import TempoConfig
from metadj_bridge.lifecycle import cancel_and_wait, stop_signals

METER_WIDTH = 12


@dataclass
class ListenOptions:
    file: str | None = None
    device: str | None = None
    demo: bool = False
    json: bool = False
    realtime: bool | None = None  # None: real time for devices and the demo, fast for --file
    loop: bool = False
    duration: float | None = None
    auto_gain: bool = False
    min_bpm: float = 60.0
    max_bpm: float = 190.0
    beats_per_bar: int = 4


@dataclass
class BeatSummary:
    """What a listen heard, said at the end: beats, the first one, the tempo at the last one and the bar (the most
    common length of the last BARS bars: one bar the tracker corrected is not the metre; a length seen once is
    not a metre either, so a short file says the bar is not settled)."""

    BARS = 8

    beats: int = 0
    first: float | None = None
    bpm: float = 0.0
    last_downbeat: int | None = None  # the beat count at the last downbeat
    bars: list[int] = field(default_factory=list)  # the lengths of the last BARS bars, in beats

    def add(self, t: float, bpm: float, beat_in_bar: int) -> None:
        self.beats += 1
        self.first = t if self.first is None else self.first
        self.bpm = bpm
        if beat_in_bar == 0:
            if self.last_downbeat is not None:
                self.bars = [*self.bars[1 - self.BARS :], self.beats - self.last_downbeat]
            self.last_downbeat = self.beats

    def line(self) -> str:
        if self.first is None:
            return "heard no beat"
        bar = ""
        if self.bars:
            common = max(self.bars[::-1], key=self.bars.count)
            bar = f", {common} beats a bar" if self.bars.count(common) >= 2 else ", the bar not settled"
        return f"heard {self.beats} beats from {self.first:.2f} s; {self.bpm:.1f} BPM at the last one{bar}"


def _bar(value: float) -> str:
    filled = int(round(max(0.0, min(1.0, value)) * METER_WIDTH))
    return "#" * filled + "." * (METER_WIDTH - filled)


class Meters:
    """VU-style meters: jump up at once, fall back over ~300 ms, so a kick is seen and not a flicker."""

    FALL_PER_S = 3.0

    def __init__(self) -> None:
        self.levels = {"energy": 0.0, "low": 0.0, "mid": 0.0, "high": 0.0}
        self._t = 0.0

    def update(self, update: AudioUpdate) -> dict[str, float]:
        f = update.features
        fall = max(0.0, f.t - self._t) * self.FALL_PER_S
        self._t = f.t
        for name, value in (("energy", f.energy), ("low", f.low), ("mid", f.mid), ("high", f.high)):
            self.levels[name] = max(value, self.levels[name] - fall)
        return self.levels


def meter_line(update: AudioUpdate, beat_flash: bool, levels: dict[str, float] | None = None) -> str:
    f = update.features
    lv = levels or {"energy": f.energy, "low": f.low, "mid": f.mid, "high": f.high}
    bpm = f"{update.bpm:6.1f} BPM" if update.locked else "  --.- BPM"
    beat = "*" if beat_flash else " "
    return (
        f"{beat} {bpm} conf {update.confidence:4.2f} | energy {_bar(lv['energy'])} | low {_bar(lv['low'])} "
        f"mid {_bar(lv['mid'])} high {_bar(lv['high'])} | centroid {f.centroid_hz:6.0f} Hz"
    )


def _open_source(options: ListenOptions) -> tuple[BlockSource, str]:
    from metadj_bridge.inputs.audio import WavFileSource
    from metadj_bridge.inputs.audio_devices import find_input_device
    from metadj_bridge.inputs.audio_file import read_audio, read_demo_track
    from metadj_bridge.inputs.live_audio import LiveInputSource

    if options.file and options.device is not None:
        raise ConfigError("give either --file or --device, not both")
    if options.file or options.demo:
        if options.demo:
            samples, samplerate = read_demo_track()
            name = "the demo track"
        else:
            path = Path(options.file or "")
            samples, samplerate = read_audio(path)
            name = path.name
        realtime = options.realtime if options.realtime is not None else options.demo
        wav = WavFileSource(samples, samplerate, hop_size=hop_size_for(samplerate), loop=options.loop,
                            realtime=realtime)
        return wav, f"{name} ({len(samples) / samplerate:.1f} s, {samplerate} Hz)"
    device = find_input_device(options.device)
    rate = int(device.default_samplerate)
    live = LiveInputSource(device.index, hop_size=hop_size_for(rate), samplerate=rate)
    return live, f"input {device}"


async def run_listen(options: ListenOptions, out: TextIO | None = None) -> int:
    out = out or sys.stdout
    tempo = TempoConfig(min_bpm=options.min_bpm, max_bpm=options.max_bpm, beats_per_bar=options.beats_per_bar)
    analysis = AnalysisConfig(auto_gain=options.auto_gain)
    source, label = _open_source(options)
    tty = out.isatty() and not options.json
    state = {"flash_until": -1.0, "last_draw": 0.0}
    meters = Meters()
    heard = BeatSummary()
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()

    def on_update(update: AudioUpdate) -> None:
        if stop.is_set():
            return
        try:
            show(update)
        except BrokenPipeError:  # the reader went away (`listen --json | head`): stop quietly
            quiet_broken_stdout(out)
            stop.set()

    def show(update: AudioUpdate) -> None:
        if options.json:
            # A beat carries the grid's own tempo when it fell (several hops may come in one update); an onset
            # the tempo of the update that brought it.
            now_bpm, now_conf = round(update.bpm, 2), round(update.confidence, 3)
            records: list[tuple[float, dict[str, Any]]] = [
                (o.t, {"t": round(o.t, 4), "event": "onset", "bpm": now_bpm, "confidence": now_conf})
                for o in update.onsets]
            records += [(b.t, {"t": round(b.t, 4), "event": "beat", "bpm": round(b.bpm, 2),
                               "confidence": round(b.confidence, 3), "beat_in_bar": b.beat_in_bar})
                        for b in update.beats]
            for _, record in sorted(records, key=lambda r: r[0]):
                out.write(json.dumps(record) + "\n")
            return
        for b in update.beats:
            heard.add(b.t, b.bpm, b.beat_in_bar)
        levels = meters.update(update)
        now = loop.time()
        if update.beats:
            state["flash_until"] = now + 0.1
        if tty and now - state["last_draw"] >= 0.1:  # ~10 Hz, as the seed's UI
            state["last_draw"] = now
            out.write("\r\x1b[2K" + meter_line(update, now < state["flash_until"], levels))
            out.flush()
        elif not tty:
            for b in update.beats:
                out.write(f"beat {b.index:5d} at {b.t:8.3f} s  {b.bpm:6.1f} BPM  bar beat {b.beat_in_bar + 1}  "
                          f"confidence {b.confidence:.2f}\n")

    analyzer = AudioAnalyzer(source, analysis=analysis, tempo=tempo, on_update=on_update)
    with stop_signals(stop.set):
        if not options.json:
            print(f"listening to {label}; Ctrl-C to stop", file=sys.stderr)
        await analyzer.start()
        try:
            assert analyzer.finished is not None
            stopper: asyncio.Future[Any] = asyncio.ensure_future(stop.wait())
            waiters: set[asyncio.Future[Any]] = {analyzer.finished, stopper}
            try:
                done, _ = await asyncio.wait(waiters, timeout=options.duration, return_when=asyncio.FIRST_COMPLETED)
            finally:
                await cancel_and_wait(stopper)
            if analyzer.finished in done:
                analyzer.finished.result()
        finally:
            await analyzer.aclose()
            try:
                if tty:
                    out.write("\n")
                if not options.json:
                    out.write(heard.line() + "\n")
                out.flush()
            except BrokenPipeError:
                quiet_broken_stdout(out)
    return 0


def quiet_broken_stdout(out: TextIO) -> None:
    """After a broken pipe on standard output, point it at the null device, so that Python's own flush at exit
    does not print a traceback either (the recipe in Python's signal documentation)."""
    if out is sys.stdout:
        with contextlib.suppress(OSError, ValueError):
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())


def run_devices(out: TextIO | None = None) -> int:
    from metadj_bridge.inputs.audio_devices import list_input_devices

    out = out or sys.stdout
    devices = list_input_devices()
    out.write("Audio inputs:\n")
    if not devices:
        out.write("  (none found: no sound card, or PortAudio sees no input device)\n")
    for device in devices:
        out.write(f"  {device}\n")
    try:
        from metadj_bridge.inputs.midi_ports import list_midi_ports

        midi_in, midi_out = list_midi_ports()
    except Exception as exc:  # a MIDI backend that cannot start must not hide the audio list
        out.write(f"MIDI: unavailable ({exc})\n")
        return 0
    for title, names in (("MIDI inputs", midi_in), ("MIDI outputs", midi_out)):
        out.write(f"{title}:\n")
        if not names:
            out.write("  (none found)\n")
        for name in names:
            out.write(f"  {name}\n")
    return 0
