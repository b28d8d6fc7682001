"""Wiring and lifecycle of one running bridge.

For now: a Scope session (or the built-in emulator when no URL is given), the parameter sender, an
optional prompt cycle, and a live status line. Inputs, the mapping engine and video sinks plug in here
as they arrive.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import sys
import time
from dataclasses import dataclass, field
from typing import Any, TextIO

from metadj_bridge.errors import ConfigError
from metadj_bridge.scope import protocol
from metadj_bridge.scope.api import normalise_url
from metadj_bridge.scope.sender import PacerConfig, ParameterSender
from metadj_bridge.scope.session import ScopeSession, SessionConfig

log = logging.getLogger(__name__)

DEFAULT_PROMPTS = ["a luminous dancefloor of liquid light, neon reflections, cinematic"]

#: The seed's transition lengths: 8 steps on a theme switch.
THEME_TRANSITION_STEPS = 8


@dataclass
class RunOptions:
    scope_url: str | None = None
    pipeline: str = "longlive"
    aspect: str = "16:9"
    denoise: str = "quality"
    prompts: list[str] = field(default_factory=lambda: list(DEFAULT_PROMPTS))
    cycle_seconds: float = 16.0
    duration: float | None = None
    no_frame_timeout: float = 5.0
    min_send_interval: float = 1 / 30
    max_send_interval: float = 2.0
    emulator_fps: float = 20.0
    #: Audio to listen to: the bundled demo track unless a file or device is given, or none.
    audio_file: str | None = None
    audio_device: str | None = None
    no_audio: bool = False
    #: Control inputs: MIDI port patterns, a virtual MIDI input, an OSC port, Ableton Link, OSC out target.
    midi: list[str] = field(default_factory=list)
    midi_virtual: str | None = None
    osc_port: int | None = None
    osc_host: str = "127.0.0.1"
    link: bool = False
    osc_out: str | None = None

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> RunOptions:
        return cls(
            scope_url=args.scope,
            pipeline=args.pipeline,
            aspect=args.aspect,
            denoise=args.denoise,
            prompts=args.prompt or list(DEFAULT_PROMPTS),
            cycle_seconds=args.cycle,
            duration=args.duration,
            no_frame_timeout=args.no_frame_timeout,
            min_send_interval=args.min_send_interval,
            max_send_interval=args.max_send_interval,
            emulator_fps=args.emulator_fps,
            audio_file=args.audio_file,
            audio_device=args.audio_device,
            no_audio=args.no_audio,
            midi=args.midi,
            midi_virtual=args.midi_virtual,
            osc_port=args.osc_port,
            osc_host=args.osc_host,
            link=args.link,
            osc_out=args.osc_out,
        )

    def validate(self) -> None:
        if self.scope_url is not None:
            self.scope_url = normalise_url(self.scope_url)
        if self.duration is not None and self.duration <= 0:
            raise ConfigError(f"--duration {self.duration:g}: must be more than 0 seconds")
        if self.cycle_seconds <= 0:
            raise ConfigError(f"--cycle {self.cycle_seconds:g}: must be more than 0 seconds")
        if not 0 < self.min_send_interval <= self.max_send_interval:
            raise ConfigError(
                f"send interval bounds: --min-send-interval {self.min_send_interval:g} must be > 0 and <= "
                f"--max-send-interval {self.max_send_interval:g}"
            )
        if self.emulator_fps <= 0:
            raise ConfigError(f"--emulator-fps {self.emulator_fps:g}: must be more than 0")
        if self.audio_file and self.audio_device is not None:
            raise ConfigError("give either --audio-file or --audio-device, not both")
        if self.osc_out is not None:
            host, _, port = self.osc_out.rpartition(":")
            if not host or not port.isdigit() or not 0 < int(port) < 65536:
                raise ConfigError(f"--osc-out {self.osc_out!r}: expected HOST:PORT, e.g. 192.168.1.20:9000")


class StatusLine:
    """The performer's one-line view; plain log lines every few seconds when stdout is not a terminal."""

    def __init__(self, session: ScopeSession, stream: TextIO = sys.stderr, *, interval: float | None = None) -> None:
        self.session = session
        #: The newest audio analysis, if the bridge is listening.
        self.audio: Any = None
        self.beat_seen_at = -1.0
        #: The arbitrated tempo (TempoState), when any tempo source is live.
        self.tempo: Any = None
        self.stream = stream
        self.tty = stream.isatty()
        self.interval = interval if interval is not None else (0.5 if self.tty else 5.0)

    def render(self) -> str:
        st = self.session.status()
        server = f"Scope {st['server_version']}" + (" (emulator)" if st["emulator"] else "") if st["server_version"] else "Scope ?"
        state = st["state"]
        if state == "loading pipeline" and st["load_progress"]:
            state = st["load_progress"]
        err = st["last_error"] or "-"
        if len(err) > 80:
            err = err[:77] + "..."
        audio = ""
        if self.audio is not None or self.tempo is not None:
            beat = "*" if time.monotonic() - self.beat_seen_at < 0.12 else " "
            if self.tempo is not None and self.tempo.source is not None:
                bpm = f"{self.tempo.bpm:5.1f} BPM ({self.tempo.source})"
            elif self.audio is not None and self.audio.locked:
                bpm = f"{self.audio.bpm:5.1f} BPM"
            else:
                bpm = "--.- BPM"
            energy = f" energy {self.audio.features.energy:4.2f}" if self.audio is not None else ""
            audio = f" | {beat} {bpm}{energy}"
        return (
            f"[{state}] {server} {st['pipeline']} | fps in {st['fps_in']:4.1f} | frames {st['frames_in']} | "
            f"sent {st['sent']} merged {st['merged']}{audio} | last error: {err}"
        )

    def on_audio(self, update: Any) -> None:
        self.audio = update
        if update.beats:
            self.beat_seen_at = time.monotonic()

    async def run(self) -> None:
        last_state: str | None = None
        last_log = -float("inf")
        while True:
            line = self.render()
            if self.tty:
                self.stream.write("\r\x1b[2K" + line)
                self.stream.flush()
                await asyncio.sleep(self.interval)
                continue
            # Plain logs: a line on every state change, and every ``interval`` seconds.
            state = self.session.state.value
            now = time.monotonic()
            if state != last_state or now - last_log >= self.interval:
                log.info("%s", line)
                last_state, last_log = state, now
            await asyncio.sleep(0.25)

    def finish(self) -> None:
        if self.tty:
            self.stream.write("\n")
            self.stream.flush()


async def _cycle_prompts(sender: ParameterSender, prompts: list[str], seconds: float) -> None:
    """Move through the given prompts, one theme-switch transition each ``seconds``."""
    index = 0
    while True:
        await asyncio.sleep(seconds)
        index = (index + 1) % len(prompts)
        sender.update(
            transition={
                "target_prompts": [{"text": prompts[index], "weight": 1.0}],
                "num_steps": THEME_TRANSITION_STEPS,
                "temporal_interpolation_method": "slerp",
            }
        )


async def _start_listening(options: RunOptions, status: StatusLine, on_update: Any = None) -> Any:
    """Start the audio analysis (demo track by default); None with --no-audio."""
    if options.no_audio:
        return None
    from metadj_bridge.inputs.analysis import hop_size_for
    from metadj_bridge.inputs.analyzer import AudioAnalyzer
    from metadj_bridge.inputs.audio import LiveInputSource, WavFileSource, find_input_device

    source: Any
    if options.audio_device is not None:
        device = find_input_device(options.audio_device)
        rate = int(device.default_samplerate)
        source = LiveInputSource(device.index, hop_size=hop_size_for(rate), samplerate=rate)
        label = f"audio input {device}"
    else:
        if options.audio_file:
            path = options.audio_file
        else:
            from metadj_bridge.inputs.synth import demo_track_path

            path = str(await asyncio.to_thread(demo_track_path))
        from metadj_bridge.inputs.audio import read_wav

        samples, rate = await asyncio.to_thread(read_wav, path)
        source = WavFileSource(samples, rate, hop_size=hop_size_for(rate), loop=True, realtime=True)
        label = f"audio file {path} (looping)" if options.audio_file else "the bundled demo track (looping)"
    analyzer = AudioAnalyzer(source, on_update=on_update or status.on_audio)
    await analyzer.start()
    log.info("listening to %s", label)
    return analyzer


class TempoHub:
    """Every tempo source hands its readings here; the arbiter picks one (Link > MIDI clock > OSC > audio).

    A 20 Hz task publishes the result to the status line and, when asked, to OSC out (BPM and beats).
    """

    def __init__(self, status: StatusLine, osc_out: Any = None) -> None:
        from metadj_bridge.inputs.tempo_sources import TempoArbiter

        self.arbiter = TempoArbiter()
        self.status = status
        self.osc_out = osc_out
        self._last_beat = -1
        self._last_scope_state: str | None = None

    def reading(self, reading: Any) -> None:
        self.arbiter.update(reading)

    def audio(self, update: Any) -> None:
        from metadj_bridge.inputs.tempo_sources import audio_reading

        self.status.on_audio(update)
        reading = audio_reading(update, time.monotonic())
        if reading is not None:
            self.arbiter.update(reading)

    async def run(self) -> None:
        while True:
            now = time.monotonic()
            state = self.arbiter.state(now)
            self.status.tempo = state
            if state.source is not None:
                beat = int(state.beat // 1)
                if beat != self._last_beat:
                    self._last_beat = beat
                    self.status.beat_seen_at = now
                    if self.osc_out is not None:
                        self.osc_out.set_beat(beat, state.bar_position)
                if self.osc_out is not None:
                    self.osc_out.set_bpm(state.bpm)
            scope_state = self.status.session.state.value
            if self.osc_out is not None and scope_state != self._last_scope_state:
                self._last_scope_state = scope_state
                self.osc_out.set_scope_state(scope_state)
            await asyncio.sleep(0.05)


async def _start_controls(options: RunOptions, hub: TempoHub, started: list[Any]) -> None:
    """Start the MIDI, OSC and Link inputs asked for on the command line.

    Each goes into ``started`` before it starts, so the caller closes every one that opened even when a
    later one fails (a MIDI port stays open otherwise when the OSC port is taken).
    """

    def closer(item: Any) -> Any:
        started.append(item)
        return item

    if options.midi or options.midi_virtual:
        from metadj_bridge.inputs.midi import MidiInput

        midi = closer(MidiInput(options.midi, virtual_name=options.midi_virtual, on_tempo=hub.reading))
        await midi.start()
        log.info("MIDI in: %s", ", ".join(midi.port_names) or "(virtual port only)")
    if options.osc_port is not None:
        from metadj_bridge.inputs.osc import OscInput

        osc = closer(OscInput(options.osc_host, options.osc_port, on_tempo=hub.reading))
        await osc.start()
    if options.link:
        from metadj_bridge.inputs.tempo_link import LinkSource

        link = closer(LinkSource(on_reading=hub.reading))
        await link.start()
        log.info("Ableton Link: joined as a follower")


async def run_bridge(options: RunOptions, *, status_stream: TextIO | None = None) -> int:
    """``metadj-bridge run``: returns the exit status."""
    options.validate()
    width, height = protocol.ASPECT_PRESETS[options.aspect]
    info = protocol.pipeline_info(options.pipeline)
    emulator: Any = None
    url = options.scope_url
    if url is None:
        from metadj_bridge.emulator import EmulatorConfig, ScopeEmulator

        emulator = ScopeEmulator(
            EmulatorConfig(host="127.0.0.1", port=0, chunk_frames=info.chunk_frames, fps=options.emulator_fps)
        )
        await emulator.start()
        url = emulator.url
        log.info("no --scope given: started the built-in Scope emulator at %s", url)

    sender = ParameterSender(pacer=PacerConfig(
        min_interval=options.min_send_interval,
        max_interval=options.max_send_interval,
        chunk_frames=info.chunk_frames,
    ))
    config = SessionConfig(
        url=url,
        pipeline_ids=[options.pipeline],
        # vace_enabled false: text mode has no reference images (seed troubleshooting table).
        load_params={"width": width, "height": height, "vace_enabled": False},
        input_mode="text",
        prompts=options.prompts[0],
        denoising_step_list=list(protocol.DENOISING_PRESETS[options.denoise]),
        no_frame_timeout=options.no_frame_timeout,
    )
    session = ScopeSession(config, sender)
    status = StatusLine(session, status_stream or sys.stderr)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    installed: list[signal.Signals] = []
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):  # Windows: KeyboardInterrupt instead
            loop.add_signal_handler(sig, stop.set)
            installed.append(sig)

    started = time.monotonic()
    tasks: list[asyncio.Task[Any]] = []
    analyzer = None
    controls: list[Any] = []
    osc_out = None
    if options.osc_out is not None:
        from metadj_bridge.outputs.osc_out import OscOutput

        host, _, port = options.osc_out.rpartition(":")
        osc_out = OscOutput(host, int(port))
    hub = TempoHub(status, osc_out)
    try:
        if osc_out is not None:
            await osc_out.start()
        analyzer = await _start_listening(options, status, hub.audio)
        await _start_controls(options, hub, controls)
        await session.start()
        tasks.append(loop.create_task(status.run(), name="status-line"))
        tasks.append(loop.create_task(hub.run(), name="tempo-hub"))
        if len(options.prompts) > 1:
            tasks.append(
                loop.create_task(_cycle_prompts(sender, options.prompts, options.cycle_seconds), name="prompt-cycle")
            )
        waiters: set[asyncio.Task[Any]] = {loop.create_task(stop.wait(), name="stop-signal")}
        assert session.supervisor is not None
        waiters.add(session.supervisor)
        done, _ = await asyncio.wait(waiters, timeout=options.duration, return_when=asyncio.FIRST_COMPLETED)
        for waiter in waiters:
            if waiter is not session.supervisor:
                waiter.cancel()
        if session.supervisor in done:
            session.supervisor.result()  # a fatal startup error: raises it for the CLI to print
    finally:
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        status.finish()
        if analyzer is not None:
            await analyzer.aclose()
        for control in controls:
            with contextlib.suppress(Exception):
                await control.aclose()
        if osc_out is not None:
            with contextlib.suppress(Exception):
                await osc_out.aclose()
        await session.aclose()
        if emulator is not None:
            await emulator.aclose()
        for sig in installed:
            loop.remove_signal_handler(sig)
    st = session.status()
    log.info(
        "stopped after %.1f s: %d frames received, %d messages sent (%d changes merged), %d session(s)",
        time.monotonic() - started,
        st["frames_in"],
        st["sent"],
        st["merged"],
        st["sessions_started"],
    )
    return 0
