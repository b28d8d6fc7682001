"""The parts of a running bridge, each opened onto the bridge's exit stack so that it is closed in reverse order.

Every ``open_*`` pushes the part's ``aclose`` before it starts it: a part that fails half-way is closed all the
same, and so is every part opened before it (a MIDI port stays open otherwise when the OSC port is taken).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from metadj_bridge.errors import ConfigError, VideoInputError, printable
from metadj_bridge.signals import SignalBoard, Trigger

if TYPE_CHECKING:
    from metadj_bridge.inputs.ableton_osc import AbletonListenRequests
    from metadj_bridge.inputs.analyzer import AudioAnalyzer, AudioUpdate
    from metadj_bridge.inputs.midi import MidiInput
    from metadj_bridge.inputs.osc import OscInput
    from metadj_bridge.inputs.tempo_link import LinkSource
    from metadj_bridge.outputs.midi_feedback import MidiOutput
    from metadj_bridge.run.plan import RunOptions, RunPlan
    from metadj_bridge.scope.latency import ShowLatency
    from metadj_bridge.scope.sender import ParameterSender
    from metadj_bridge.scope.session import ScopeSession
    from metadj_bridge.showlog.log import ShowLog
    from metadj_bridge.video.clock import OutputClock
    from metadj_bridge.video.sink import FrameSink

log = logging.getLogger(__name__)

#: Camera names that are our own kind of output: never taken as the avatar's input.
_VIRTUAL_CAMERAS = ("metadj", "loopback", "obs virtual", "unity")


async def open_audio(
    stack: contextlib.AsyncExitStack, plan: RunPlan, on_update: Callable[[AudioUpdate], None], beats_per_bar: int = 4
) -> AudioAnalyzer | None:
    """The audio analysis of the profile's source (the demo track by default); None for no audio. The beat grid
    counts ``beats_per_bar`` beats a bar (the profile's ``inputs.tempo.beats_per_bar``)."""
    if plan.audio == "none":
        return None
    from metadj_bridge.inputs.analysis_config import AnalysisConfig, hop_size_for
    from metadj_bridge.inputs.analyzer import AudioAnalyzer
    from metadj_bridge.inputs.audio import WavFileSource
    from metadj_bridge.inputs.audio_devices import find_input_device
    from metadj_bridge.inputs.audio_file import read_audio, read_demo_track
    from metadj_bridge.inputs.live_audio import LiveInputSource
    from metadj_bridge.inputs.tempo import TempoConfig

    source: Any
    if plan.audio == "device":
        device = find_input_device(plan.audio_device)
        rate = int(device.default_samplerate)
        source = LiveInputSource(device.index, hop_size=hop_size_for(rate), samplerate=rate)
        label = f"audio input {device}"
    else:
        path = plan.audio_path if plan.audio == "file" and plan.audio_path else None
        try:
            if path is None:
                samples, rate = await asyncio.to_thread(read_demo_track)
            else:
                samples, rate = await asyncio.to_thread(read_audio, path)
        except ConfigError as exc:
            if plan.audio != "file" or not plan.audio_where:
                raise
            raise ConfigError(printable(f"{plan.audio_where}: {exc}")) from None
        source = WavFileSource(samples, rate, hop_size=hop_size_for(rate), loop=True, realtime=True)
        label = f"audio file {path} (looping)" if path else "the bundled demo track (looping)"
    # Gain scales the level that reads as full energy (RMS 0.15 at gain 1); normalise follows the room instead.
    analysis = AnalysisConfig(energy_max=min(2.0, AnalysisConfig.energy_max / plan.audio_gain),
                              auto_gain=plan.audio_normalise)
    analyzer = AudioAnalyzer(source, analysis=analysis, tempo=TempoConfig(beats_per_bar=beats_per_bar),
                             on_update=on_update)
    stack.push_async_callback(analyzer.aclose)
    await analyzer.start()
    log.info("listening to %s", label)
    return analyzer


@dataclass
class Controls:
    """The control inputs and the controller feedback that are open."""

    midi: MidiInput | None = None
    midi_out: MidiOutput | None = None
    osc: OscInput | None = None
    ableton: AbletonListenRequests | None = None
    link: LinkSource | None = None


async def _quietly_close(part: Any) -> None:
    """Close a control at the end of the run; a failure is logged and the other parts still close."""
    try:
        await part.aclose()
    except Exception:
        log.warning("closing %s failed", type(part).__name__, exc_info=True)


async def open_controls(stack: contextlib.AsyncExitStack, plan: RunPlan, board: SignalBoard) -> Controls:
    """The MIDI, OSC and Link inputs (delivering into ``board``) and the MIDI feedback output the plan names."""
    opened = Controls()
    if plan.midi or plan.midi_virtual:
        from metadj_bridge.inputs.midi import MidiInput

        midi = opened.midi = MidiInput(plan.midi, virtual_name=plan.midi_virtual, sink=board,
                                       controls=plan.midi_controls, wait_for_ports=True)
        stack.push_async_callback(_quietly_close, midi)
        await midi.start()
        opened_now = ", ".join(midi.port_names) or ("none yet" if midi.waiting else "(virtual port only)")
        waiting = ", ".join(repr(p) for p in midi.waiting)
        log.info("MIDI in: %s%s", opened_now, f" (waiting for {waiting})" if waiting else "")
    if plan.midi_feedback:
        from metadj_bridge.outputs.midi_feedback import MidiOutput

        midi_out = opened.midi_out = MidiOutput(plan.midi_feedback)
        stack.push_async_callback(_quietly_close, midi_out)
        await midi_out.start()
    if plan.osc_port is not None:
        from metadj_bridge.inputs.osc import OscInput

        if "ableton" in plan.profile.inputs.osc.presets:
            from metadj_bridge.inputs.ableton_osc import AbletonListenRequests, listen_requests

            ableton = opened.ableton = AbletonListenRequests(listen_requests(plan.profile.names_read()))
            stack.push_async_callback(_quietly_close, ableton)

            def on_trigger(trigger: Trigger) -> None:
                if trigger.name == "osc./live/startup":
                    ableton.again()  # Live reloaded AbletonOSC: it forgot what to report

            board.on_trigger(on_trigger)
        osc = opened.osc = OscInput(plan.osc_host, plan.osc_port, plan.osc_presets, sink=board)
        stack.push_async_callback(_quietly_close, osc)
        await osc.start()
        if opened.ableton is not None:
            await opened.ableton.start()
    if plan.link:
        from metadj_bridge.inputs.tempo_link import LinkSource

        tempo = plan.profile.inputs.tempo
        link = opened.link = LinkSource(board, beats_per_bar=tempo.beats_per_bar,
                                        allow_tempo_changes=tempo.link_may_set_tempo)
        stack.push_async_callback(_quietly_close, link)
        await link.start()
        log.info("Ableton Link: joined as a follower")
    return opened


async def open_avatar(stack: contextlib.AsyncExitStack, plan: RunPlan, url: str) -> Any:
    """Avatar mode: the webcam or video file open and delivering, reference images uploaded."""
    from metadj_bridge.scope.api import ScopeClient
    from metadj_bridge.video.vace import AvatarSettings, open_avatar

    source: str = plan.video_source if plan.video_source else await asyncio.to_thread(first_camera)
    settings = AvatarSettings(source=source, width=plan.width, height=plan.height, ref_images=plan.ref_images)
    async with ScopeClient(url) as client:
        avatar = await open_avatar(settings, client, base_load_params={"width": plan.width, "height": plan.height})
    stack.push_async_callback(avatar.aclose)
    return avatar


def first_camera() -> str:
    """The first camera that is not a virtual one (our own output must not become our input)."""
    from metadj_bridge.video.cameras import list_cameras

    cameras = list_cameras()
    real = [c for c in cameras if not any(word in str(c).lower() for word in _VIRTUAL_CAMERAS)]
    if not real:
        listed = ", ".join(str(c) for c in cameras) or "none"
        raise VideoInputError(
            f"avatar mode needs a webcam or a video file and none was found (cameras here: {listed}); "
            "give one with video.source in the profile or --video-source (a device, or file:clip.mp4)"
        )
    return real[0].device


def open_show_log(
    stack: contextlib.AsyncExitStack, options: RunOptions, plan: RunPlan, initial: dict[str, Any]
) -> ShowLog | None:
    """Every parameter message sent, with its time, to a JSONL file (``export-timeline``, ``replay``)."""
    if (options.show_log or "").lower() == "none":
        return None
    from metadj_bridge.showlog.log import ShowLog, default_show_log_path, show_log_header

    header = show_log_header(profile=plan.profile.path, pipeline=plan.pipeline, width=plan.width, height=plan.height,
                             input_mode=plan.input_mode, initial=initial, denoising_step_list=list(plan.denoising))
    show_log = ShowLog(options.show_log or default_show_log_path(), header)

    async def finish() -> None:
        await show_log.aclose()
        if show_log.lines_written == 0:  # it could not be written (said when it happened): no file to look for
            log.info("no show log: %s could not be written (%d messages not logged)", show_log.path,
                     show_log.messages)
        else:
            log.info("show log: %s (%d messages)", show_log.path, show_log.messages)

    stack.push_async_callback(finish)
    return show_log


async def open_video(stack: contextlib.AsyncExitStack, plan: RunPlan, session: ScopeSession,
                     preview: FrameSink | None = None) -> OutputClock | None:
    """The output clock with the plan's sinks, fed by the session's frames; None without outputs. ``preview``
    (the web server's picture) is always one of the sinks when given."""
    if not plan.video_outputs:
        return None
    return await open_output_clock(
        stack, session, plan.video_outputs, size=plan.video_size, fps=plan.video_fps, slate_after=plan.slate_after,
        device=plan.video_device, backend=plan.video_backend, preview=preview, always_preview=preview is not None,
        audio=plan.audio != "none")


async def open_output_clock(stack: contextlib.AsyncExitStack, session: ScopeSession, outputs: Iterable[str], *,
                            size: tuple[int, int], fps: float, slate_after: float, device: str | None,
                            backend: str | None, preview: FrameSink | None, always_preview: bool,
                            audio: bool) -> OutputClock:
    """One screen's output clock with the sinks of ``outputs``, fed by ``session``'s frames; with ``audio`` its
    recordings get a sound track (the music joins with :func:`connect_recording_audio`)."""
    from metadj_bridge.video.clock import OutputClock
    from metadj_bridge.video.outputs import build_sinks
    from metadj_bridge.video.slate import reason_from_session

    sinks = build_sinks(tuple(outputs), device=device, backend=backend, preview=preview,
                        always_preview=always_preview)
    if audio:
        expect_recording_audio(sinks)
    width, height = size
    clock = OutputClock(width, height, fps, sinks, slate_after=slate_after, reason=reason_from_session(session))
    stack.push_async_callback(clock.aclose)
    await clock.start()
    session.add_frame_listener(clock.push)
    return clock


def expect_recording_audio(sinks: Iterable[FrameSink]) -> None:
    """The recordings among ``sinks`` get an audio track (before their clock opens them); the music comes later,
    from :func:`connect_recording_audio`."""
    from metadj_bridge.video.record import RecordingSink

    for sink in sinks:
        if isinstance(sink, RecordingSink):
            sink.expect_audio()


def connect_recording_audio(clocks: Iterable[OutputClock | None], analyzer: AudioAnalyzer | None) -> None:
    """Every recording on ``clocks`` records the music the analysis hears from now on (its tap)."""
    if analyzer is None:
        return
    from metadj_bridge.video.record import RecordingSink

    for clock in clocks:
        for sink in clock.sinks if clock is not None else ():
            if isinstance(sink, RecordingSink):
                sink.attach_audio(analyzer.tap.subscribe(seconds=2.0))


def open_latency(sender: ParameterSender, session: ScopeSession, video: OutputClock | None) -> ShowLatency:
    """The show's own measure of its delay from a sent change to the frame at the output (``scope/latency.py``),
    the lookahead of every ``quantize`` with ``lookahead_ms: auto``."""
    from metadj_bridge.scope.latency import ShowLatency

    def output_delay() -> float | None:
        ms = video.stats().delay_ms if video is not None else None
        return None if ms is None else ms / 1000.0

    prior = 0.5 * video.period if video is not None else 0.0  # half a tick: the wait for the next one
    return ShowLatency(sender, lambda: session.connection.pc, output_delay, output_prior=prior)


def preview_url(video: OutputClock | None) -> str | None:
    """The preview's address, when one of the video outputs is the preview."""
    if video is None:
        return None
    for sink in video.sinks:
        url = getattr(getattr(sink, "active", sink), "url", None)
        if url:
            return str(url)
    return None
