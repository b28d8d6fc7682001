"""Wiring and lifecycle of one running bridge.

``metadj-bridge run``: the show profile (the bundled default unless ``--profile``) settles the settings
(:mod:`metadj_bridge.run.plan`); then the audio analysis, the control inputs, the tempo arbiter, the show runner
(mapping engine) and the Scope session (or the built-in emulator when no URL is given) start, and a status
line shows how it goes. Video sinks plug in here as they arrive.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import sys
import time
from typing import Any, TextIO

from metadj_bridge import parameters
from metadj_bridge.errors import MetaDJError
from metadj_bridge.profile.model import ShowProfile
from metadj_bridge.run.plan import RunOptions, RunPlan, bundled_profile, make_plan
from metadj_bridge.run.show import ShowRunner
from metadj_bridge.scope.sender import PacerConfig, ParameterSender
from metadj_bridge.scope.session import ScopeSession, SessionConfig

__all__ = ["RunOptions", "run_bridge"]

log = logging.getLogger(__name__)


class RecentWarnings(logging.Handler):
    """The last few distinct warnings, for the status view (a performer does not read the log on stage)."""

    def __init__(self, keep: int = 5) -> None:
        super().__init__(logging.WARNING)
        self.keep = keep
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        try:
            text = record.getMessage()
        except Exception:  # noqa: BLE001 - a bad log call must not break the view
            return
        text = text if len(text) <= 160 else text[:157] + "..."
        if text in self.messages:
            self.messages.remove(text)
        self.messages.append(text)
        del self.messages[: -self.keep]


class BridgeStatus:
    """What the performer's views show: one snapshot of the running bridge (statusview, GET /status)."""

    def __init__(self, session: ScopeSession) -> None:
        self.session = session
        #: The newest audio analysis, if the bridge is listening.
        self.audio: Any = None
        self.beat_seen_at = -1.0
        #: The arbitrated tempo (TempoState), when any tempo source is live.
        self.tempo: Any = None
        #: The ShowRunner, for the theme and the latest show event.
        self.show: Any = None
        #: The video output clock, for frames shown and repeats; avatar mode's webcam or file.
        self.video: Any = None
        self.avatar: Any = None
        #: What is open (MIDI ports, OSC address, Link) and the warnings a performer should see.
        self.inputs: dict[str, Any] = {}
        self.warnings = RecentWarnings()
        self.preview_url: str | None = None
        self.started = time.monotonic()

    def snapshot(self) -> dict[str, Any]:
        """Everything the performer's views show, as plain JSON-able data (the status view, ``GET /status``)."""
        from metadj_bridge import __version__

        st = self.session.status()
        snap: dict[str, Any] = {
            "version": __version__,
            "uptime_s": round(time.monotonic() - self.started, 1),
            "profile": self.show.profile.path if self.show is not None else None,
            "scope": {
                "state": st["state"], "url": st["url"], "server_version": st["server_version"], "emulator": st["emulator"],
                "pipeline": st["pipeline"], "load_progress": st["load_progress"], "fps_in": round(st["fps_in"], 2),
                "frames_in": st["frames_in"], "sessions": st["sessions_started"], "last_error": st["last_error"],
            },
            "sender": {"sent": st["sent"], "merged": st["merged"]},
            "tempo": None, "audio": None, "show": None, "video": None,
            "inputs": dict(self.inputs),
            "warnings": list(self.warnings.messages),
        }
        tempo = self.tempo
        if tempo is not None and tempo.source is not None:
            snap["tempo"] = {"bpm": round(tempo.bpm, 2), "source": tempo.source, "beat": round(tempo.beat, 3),
                             "phase": round(tempo.phase, 3), "bar_position": round(tempo.bar_position, 3),
                             "beats_per_bar": tempo.beats_per_bar}
        if self.audio is not None:
            f = self.audio.features
            snap["audio"] = {name: round(float(getattr(f, attr)), 3) for name, attr in (
                ("energy", "energy"), ("low", "low"), ("mid", "mid"), ("high", "high"), ("centroid", "centroid"),
                ("flatness", "flatness_norm"))}
        if self.show is not None:
            engine = self.show.engine
            prompts = self.show.sender.snapshot().get("prompts") or []
            snap["show"] = {"theme": engine.theme, "focus": engine.focus, "prompts": prompts,
                            "transition": self.show.transition_progress(time.monotonic()),
                            "paused": engine.paused, "calm": engine.calm, "last_event": self.show.last_event or None,
                            "last_control": self.show.last_control or None}
        if self.video is not None:
            v = self.video.stats()
            snap["video"] = {"outputs": list(v.sinks), "frames_shown": v.frames_shown, "repeats": v.repeats,
                             "slates": v.slates, "convert_ms": v.convert_ms, "delay_ms": v.delay_ms,
                             "preview_url": self.preview_url}
        return snap

    def on_audio(self, update: Any) -> None:
        self.audio = update
        if update.beats:
            self.beat_seen_at = time.monotonic()



async def _start_listening(plan: RunPlan, on_update: Any) -> Any:
    """Start the audio analysis (the profile's source: the demo track by default); None for no audio."""
    if plan.audio == "none":
        return None
    from metadj_bridge.inputs.analysis import hop_size_for
    from metadj_bridge.inputs.analyzer import AudioAnalyzer
    from metadj_bridge.inputs.audio import (
        LiveInputSource,
        WavFileSource,
        find_input_device,
        read_wav,
    )

    source: Any
    if plan.audio == "device":
        device = find_input_device(plan.audio_device)
        rate = int(device.default_samplerate)
        source = LiveInputSource(device.index, hop_size=hop_size_for(rate), samplerate=rate)
        label = f"audio input {device}"
    else:
        if plan.audio == "file" and plan.audio_path:
            path = plan.audio_path
        else:
            from metadj_bridge.inputs.synth import demo_track_path

            path = str(await asyncio.to_thread(demo_track_path))
        samples, rate = await asyncio.to_thread(read_wav, path)
        source = WavFileSource(samples, rate, hop_size=hop_size_for(rate), loop=True, realtime=True)
        label = f"audio file {path} (looping)" if plan.audio == "file" else "the bundled demo track (looping)"
    from metadj_bridge.inputs.analysis import AnalysisConfig

    # Gain scales the level that reads as full energy (RMS 0.15 at gain 1); normalise follows the room instead.
    analysis = AnalysisConfig(energy_max=min(2.0, AnalysisConfig.energy_max / plan.audio_gain), auto_gain=plan.audio_normalise)
    analyzer = AudioAnalyzer(source, analysis=analysis, on_update=on_update)
    await analyzer.start()
    log.info("listening to %s", label)
    return analyzer


class TempoHub:
    """Every tempo source hands its readings here; the arbiter picks one (Link > MIDI clock > OSC > audio).

    A 20 Hz task publishes the result to the status line and, when asked, to OSC out (BPM and beats).
    """

    def __init__(
        self, status: BridgeStatus, osc_out: Any = None, show: ShowRunner | None = None, config: Any = None
    ) -> None:
        from metadj_bridge.inputs.tempo_sources import TempoArbiter

        self.arbiter = TempoArbiter(config)
        self.status = status
        self.osc_out = osc_out
        self.show = show
        self._last_beat = -1
        self._last_scope_state: str | None = None

    def reading(self, reading: Any) -> None:
        self.arbiter.update(reading)

    def audio(self, update: Any) -> None:
        from metadj_bridge.inputs.analyzer import audio_reading

        self.status.on_audio(update)
        if self.show is not None:
            from metadj_bridge.inputs.analyzer import publish

            publish(update, self.show)
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


async def _start_controls(plan: RunPlan, hub: TempoHub, show: ShowRunner, started: list[Any]) -> dict[str, Any]:
    """Start the MIDI, OSC and Link inputs and the MIDI feedback output the plan names.

    Each goes into ``started`` before it starts, so the caller closes every one that opened even when a
    later one fails (a MIDI port stays open otherwise when the OSC port is taken).
    """
    opened: dict[str, Any] = {}

    def closer(name: str, item: Any) -> Any:
        started.append(item)
        opened[name] = item
        return item

    if plan.midi or plan.midi_virtual:
        from metadj_bridge.inputs.midi import MidiInput

        midi = closer("midi", MidiInput(
            plan.midi, virtual_name=plan.midi_virtual, on_event=show.publish, on_tempo=hub.reading,
            controls=plan.midi_controls, wait_for_ports=True,
        ))
        await midi.start()
        log.info("MIDI in: %s", ", ".join(midi.port_names) or "(virtual port only)")
    if plan.midi_feedback:
        from metadj_bridge.inputs.midi import MidiOutput

        show.midi_out = closer("midi_out", MidiOutput(plan.midi_feedback))
        await show.midi_out.start()
    if plan.osc_port is not None:
        from metadj_bridge.inputs.osc import OscInput

        ableton = None
        if "ableton" in plan.profile.inputs.osc.presets:
            from metadj_bridge.inputs.ableton_osc import AbletonListenRequests

            ableton = closer("ableton", AbletonListenRequests(plan.profile))

        def on_trigger(trigger: Any) -> None:
            if ableton is not None and trigger.name == "osc./live/startup":
                ableton.again()  # Live reloaded AbletonOSC: it forgot what to report
            show.publish(trigger)

        osc = closer("osc", OscInput(
            plan.osc_host, plan.osc_port, plan.osc_presets, on_signal=show.publish, on_trigger=on_trigger,
            on_tempo=hub.reading,
        ))
        await osc.start()
        if ableton is not None:
            await ableton.start()
    if plan.link:
        from metadj_bridge.inputs.tempo_link import LinkSource

        tempo = plan.profile.inputs.tempo
        link = closer("link", LinkSource(
            on_reading=hub.reading, beats_per_bar=tempo.beats_per_bar, allow_tempo_changes=tempo.link_may_set_tempo,
        ))
        await link.start()
        log.info("Ableton Link: joined as a follower")
    return opened


async def _open_avatar(plan: RunPlan, url: str) -> Any:
    """Avatar mode: the webcam or video file open and delivering, reference images uploaded."""
    from metadj_bridge.scope.api import ScopeClient
    from metadj_bridge.video.vace import AvatarSettings, open_avatar

    source: str = plan.video_source if plan.video_source else await asyncio.to_thread(_first_camera)
    settings = AvatarSettings(source=source, width=plan.width, height=plan.height, ref_images=plan.ref_images)
    async with ScopeClient(url) as client:
        return await open_avatar(settings, client, base_load_params={"width": plan.width, "height": plan.height})


def _first_camera() -> str:
    """The first camera that is not a virtual one (our own output must not become our input)."""
    from metadj_bridge.errors import VideoInputError
    from metadj_bridge.video.webcam import list_cameras

    cameras = list_cameras()
    virtual = ("metadj", "loopback", "obs virtual", "unity")
    real = [c for c in cameras if not any(word in str(c).lower() for word in virtual)]
    if not real:
        listed = ", ".join(str(c) for c in cameras) or "none"
        raise VideoInputError(
            f"avatar mode needs a webcam or a video file and none was found (cameras here: {listed}); "
            "give one with video.source in the profile or --video-source (a device, or file:clip.mp4)"
        )
    return real[0].device


def _open_show_log(options: RunOptions, plan: RunPlan, initial: dict[str, Any]) -> Any:
    """Every parameter message sent, with its time, to a JSONL file (``export-timeline``, ``replay``)."""
    if (options.show_log or "").lower() == "none":
        return None
    from metadj_bridge.showlog.log import ShowLog, default_show_log_path, show_log_header

    header = show_log_header(profile=plan.profile.path, pipeline=plan.pipeline, width=plan.width, height=plan.height,
                             input_mode=plan.input_mode, initial=initial, denoising_step_list=list(plan.denoising))
    return ShowLog(options.show_log or default_show_log_path(), header)


class _Stopped(Exception):
    """The run ends: a stop signal, or --duration."""


async def _until_stopped(stop: asyncio.Event, duration: float | None) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), duration)
    raise _Stopped


async def _session_part(supervisor: asyncio.Task[None]) -> None:
    await supervisor  # returns only when the session is closed; raises a fatal startup error


async def supervised(name: str, part: Any, *, first_delay: float = 1.0, max_delay: float = 30.0) -> None:
    """Run ``part()`` and run it again when it fails, with a growing pause; a part that returns is done."""
    delay = first_delay
    loop = asyncio.get_running_loop()
    while True:
        began = loop.time()
        try:
            await part()
            return
        except asyncio.CancelledError:
            raise
        except Exception:
            if loop.time() - began > 60.0:  # it ran well for a while: this is a new problem, start over
                delay = first_delay
            log.exception("%s stopped unexpectedly; restarting it in %.0f s (the rest of the show goes on)", name, delay)
        await asyncio.sleep(delay)
        delay = min(max_delay, delay * 2)


async def _start_video(plan: RunPlan, session: ScopeSession) -> Any:
    """The output clock with the plan's sinks, fed by the session's frames; None without outputs."""
    if not plan.video_outputs:
        return None
    from metadj_bridge.video.clock import OutputClock
    from metadj_bridge.video.outputs import build_sinks
    from metadj_bridge.video.slate import reason_from_session

    sinks = build_sinks(plan.video_outputs, device=plan.video_device, backend=plan.video_backend,
                        preview_port=plan.preview_port)
    width, height = plan.video_size
    clock = OutputClock(width, height, plan.video_fps, sinks, slate_after=plan.slate_after, reason=reason_from_session(session))
    await clock.start()
    session.add_frame_listener(clock.push)
    return clock


async def load_show_profile(path: str | None) -> ShowProfile:
    """The profile to run: the file given, or the bundled default."""
    from metadj_bridge.profile import load_profile

    target = path if path is not None else str(bundled_profile("default"))
    return await asyncio.to_thread(load_profile, target)


async def run_bridge(options: RunOptions, *, status_stream: TextIO | None = None) -> int:
    """``metadj-bridge run``: returns the exit status."""
    plan = make_plan(options, await load_show_profile(options.profile))
    profile = plan.profile
    log.info("show profile: %s (%d themes, %d mappings)", profile.path, len(profile.themes), len(profile.mappings))
    if options.rehearse:
        log.info("rehearsal: the built-in emulator at %s's pace, %s, video to the preview",
                 plan.pipeline, "the demo track" if plan.audio == "demo" else "the audio given")
    info = parameters.pipeline_info(plan.pipeline)
    emulator: Any = None
    url = plan.scope_url
    if url is None:
        from metadj_bridge.emulator import EmulatorConfig, ScopeEmulator

        emulator = ScopeEmulator(
            EmulatorConfig(host="127.0.0.1", port=0, chunk_frames=info.chunk_frames, fps=plan.emulator_fps)
        )
        await emulator.start()
        url = emulator.url
        log.info("no Scope URL given: started the built-in Scope emulator at %s", url)

    sender = ParameterSender(pacer=PacerConfig(
        min_interval=plan.min_send_interval,
        max_interval=plan.max_send_interval,
        chunk_frames=info.chunk_frames,
    ))
    osc_out = None
    if plan.osc_out is not None:
        from metadj_bridge.outputs.osc_out import OscOutput

        host, _, port = plan.osc_out.rpartition(":")
        osc_out = OscOutput(host, int(port))
    hub: TempoHub | None = None
    show = ShowRunner(profile, sender, tempo=lambda now: hub.arbiter.state(now) if hub is not None else None,
                      osc_out=osc_out)
    initial = show.initial_parameters()
    sender.update(initial)
    show_log = _open_show_log(options, plan, initial)
    if show_log is not None:
        sender.on_sent = show_log.record
        show.show_log = show_log
    # vace_enabled false: text mode has no reference images (seed troubleshooting table).
    fields: dict[str, Any] = {
        "input_mode": "text", "load_params": {"width": plan.width, "height": plan.height, "vace_enabled": False},
    }
    avatar = None
    if plan.input_mode == "video":
        try:
            avatar = await _open_avatar(plan, url)
        except BaseException:
            if emulator is not None:
                await emulator.aclose()
            raise
        fields = avatar.session_fields()
    config = SessionConfig(
        url=url,
        pipeline_ids=[plan.pipeline],
        prompts=initial.get("prompts") or "",
        denoising_step_list=list(plan.denoising),
        no_frame_timeout=plan.no_frame_timeout,
        **fields,
    )
    session = ScopeSession(config, sender)
    status = BridgeStatus(session)
    status.show = show
    status.avatar = avatar
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    installed: list[signal.Signals] = []
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):  # Windows: KeyboardInterrupt instead
            loop.add_signal_handler(sig, stop.set)
            installed.append(sig)
    hup = getattr(signal, "SIGHUP", None)  # POSIX only: reload the profile, as daemons do
    if hup is not None:
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(hup, lambda: show.request_reload("SIGHUP"))
            installed.append(hup)

    started = time.monotonic()
    analyzer = None
    controls: list[Any] = []
    from metadj_bridge.inputs.tempo_sources import ArbiterConfig

    tempo = profile.inputs.tempo
    hub = TempoHub(status, osc_out, show, ArbiterConfig(beats_per_bar=tempo.beats_per_bar, priority=tuple(tempo.prefer)))

    def on_profile(new: ShowProfile) -> None:
        ableton = opened.get("ableton")
        if ableton is not None:
            ableton.update(new)
        midi = opened.get("midi")
        if midi is not None:
            from metadj_bridge.inputs.midi_decode import MidiDecoder

            midi.decoder = MidiDecoder(make_plan(options, new).midi_controls)

    opened: dict[str, Any] = {}
    show.on_profile = on_profile
    video = None
    status_server: Any = None
    from metadj_bridge.status.view import StatusView

    view = StatusView(status.snapshot, status_stream or sys.stderr)
    package_log = logging.getLogger("metadj_bridge")
    package_log.addHandler(status.warnings)
    try:
        if osc_out is not None:
            await osc_out.start()
        video = await _start_video(plan, session)
        status.video = video
        if video is not None:
            status.preview_url = next((getattr(getattr(s, "active", s), "url", None) for s in video.sinks
                                       if getattr(getattr(s, "active", s), "url", None)), None)
        analyzer = await _start_listening(plan, hub.audio)
        opened = await _start_controls(plan, hub, show, controls)
        status.inputs = {
            "midi": opened["midi"].port_names if "midi" in opened else [],
            "osc": f"{plan.osc_host}:{opened['osc'].port}" if "osc" in opened else None,
            "link": "link" in opened,
        }
        await session.start()
        if plan.watch:
            await show.watch()
        if plan.status_port is not None:
            from metadj_bridge.status.server import StatusServer

            status_server = StatusServer(status.snapshot, port=plan.status_port)
            await status_server.start()
            log.info("status: %s/status (JSON) and %s/metrics (Prometheus)", status_server.url, status_server.url)
        try:
            # Every long-running part is a named task of one group. A part that fails is restarted on its own
            # (the others go on); the Scope session heals itself and only ends the run on a fatal startup error.
            async with asyncio.TaskGroup() as group:
                group.create_task(supervised("status", view.run), name="status")
                group.create_task(supervised("tempo", hub.run), name="tempo")
                group.create_task(supervised("show", show.run), name="show")
                assert session.supervisor is not None
                group.create_task(_session_part(session.supervisor), name="scope-session")
                group.create_task(_until_stopped(stop, plan.duration), name="stop")
        except* _Stopped:
            pass
        except* MetaDJError as errors:
            raise errors.exceptions[0] from None  # a fatal startup error, for the CLI to print
    finally:
        view.finish()
        if status_server is not None:
            await status_server.aclose()
        if analyzer is not None:
            await analyzer.aclose()
        for control in controls:
            with contextlib.suppress(Exception):
                await control.aclose()
        if osc_out is not None:
            with contextlib.suppress(Exception):
                await osc_out.aclose()
        await session.aclose()
        if video is not None:
            await video.aclose()  # after the session: the recording ends with the last frame shown
        if avatar is not None:
            await avatar.aclose()
        if emulator is not None:
            await emulator.aclose()
        if show_log is not None:
            await show_log.aclose()
            log.info("show log: %s (%d messages)", show_log.path, show_log.messages)
        for sig in installed:
            loop.remove_signal_handler(sig)
        package_log.removeHandler(status.warnings)
    st = session.status()
    log.info(
        "stopped after %.1f s: %d frames received, %d messages sent (%d changes merged), %d session(s), "
        "%d engine steps, %d profile switch(es), %d reload(s)",
        time.monotonic() - started,
        st["frames_in"],
        st["sent"],
        st["merged"],
        st["sessions_started"],
        show.steps,
        show.switches,
        show.reloads,
    )
    return 0
