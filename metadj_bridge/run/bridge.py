"""One running bridge: ``metadj-bridge run``.

The show profile (the bundled default unless ``--profile``) settles the settings (:mod:`.plan`). Then, on one
:class:`contextlib.AsyncExitStack` so that everything opened is closed in reverse order whatever fails: the Scope
emulator when no URL is given, the show log, avatar mode's webcam, the video outputs, the Scope session, OSC out,
the audio analysis and the control inputs (all delivering into one :class:`SignalBoard`), the tempo hub and the
show runner, the status endpoints and the status view. The long-running parts then run as named tasks of one
``TaskGroup``; a part that fails is restarted on its own while the others go on.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
import time
from typing import Any, TextIO

from metadj_bridge import parameters
from metadj_bridge.bundled import bundled_profile, resolve_profile
from metadj_bridge.errors import MetaDJError
from metadj_bridge.inputs.analyzer import AudioUpdate, deliver
from metadj_bridge.inputs.tempo_sources import ArbiterConfig
from metadj_bridge.lifecycle import AwayWatch, stop_signals, supervised
from metadj_bridge.profile.ignored import IgnoredKeyLog
from metadj_bridge.profile.model import ShowProfile
from metadj_bridge.run.control import ShowControl
from metadj_bridge.run.parts import (
    Controls,
    connect_recording_audio,
    open_audio,
    open_avatar,
    open_controls,
    open_latency,
    open_show_log,
    open_video,
)
from metadj_bridge.run.plan import RunOptions, RunPlan, make_plan
from metadj_bridge.run.screens import open_screens
from metadj_bridge.run.service import ServiceNotifier
from metadj_bridge.run.show import ShowRunner
from metadj_bridge.run.tempo_hub import TempoHub
from metadj_bridge.scope.offer import ServerOffer
from metadj_bridge.scope.pacing import GATHER
from metadj_bridge.scope.sender import PacerConfig, ParameterSender
from metadj_bridge.scope.session import ScopeSession, SessionConfig, SessionState
from metadj_bridge.scope.tempo_feed import TempoSyncWatch
from metadj_bridge.signals import SignalBoard
from metadj_bridge.status.model import BridgeStatus
from metadj_bridge.video.preview import PreviewSink
from metadj_bridge.web.server import WebServer

__all__ = ["RunOptions", "load_show_profile", "run_bridge"]

log = logging.getLogger(__name__)


class _Stopped(Exception):
    """The run ends: a stop signal, or --duration."""


async def _until_stopped(stop: asyncio.Event, duration: float | None) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), duration)
    raise _Stopped


async def _session_part(supervisor: asyncio.Task[None]) -> None:
    await supervisor  # returns only when the session is closed; raises a fatal startup error


async def _say_freezes(session: ScopeSession, show: ShowRunner, rebuild_after: float) -> None:
    """One line when the bridge was frozen or the computer slept; a streaming session frozen for ``rebuild_after``
    or longer is rebuilt, and its own line says why."""
    away = AwayWatch(0.5)
    while True:
        await asyncio.sleep(0.5)
        frozen = away.look()
        if frozen is None:
            continue
        if show.show_log is not None:
            show.show_log.event(f"the bridge was frozen for {frozen:.0f} s")
        if frozen < rebuild_after or session.state is not SessionState.STREAMING:
            log.info("the bridge was frozen for %.0f s (the computer slept?); the show goes on", frozen)


async def load_show_profile(path: str | None) -> ShowProfile:
    """The profile to run: the file given (or the bundled profile of that name), or the bundled default."""
    from metadj_bridge.profile import load_profile

    target = resolve_profile(path) if path is not None else str(bundled_profile("default"))
    return await asyncio.to_thread(load_profile, target)


async def _open_scope_url(stack: contextlib.AsyncExitStack, plan: RunPlan) -> str:
    """The Scope server's URL: the plan's, or the built-in emulator's (started here) when none is given."""
    if plan.scope_url is not None:
        return plan.scope_url
    from metadj_bridge.emulator import EmulatorConfig, ScopeEmulator

    # Chunk size and pace are the imitated pipeline's own (the emulator's catalogue, from Scope's code).
    emulator = ScopeEmulator(EmulatorConfig(host="127.0.0.1", port=0, fps=plan.emulator_fps,
                                            delay_ms=plan.emulator_delay_ms))
    stack.push_async_callback(emulator.aclose)
    await emulator.start()
    log.info("no Scope URL given: started the built-in Scope emulator at %s", emulator.url)
    return emulator.url


def _follow_profile(options: RunOptions, controls: Controls, profile: ShowProfile, board: SignalBoard) -> None:
    """A profile took over (switch or reload): the inputs that read it follow."""
    board.keep(profile.names_read())  # what it reads is never pushed out of the board by a flood of new names
    if controls.ableton is not None:
        from metadj_bridge.inputs.ableton_osc import listen_requests

        controls.ableton.update(listen_requests(profile.names_read()))
    if controls.midi is not None:
        from metadj_bridge.inputs.midi_decode import MidiDecoder

        controls.midi.decoder = MidiDecoder(make_plan(options, profile).midi_controls)


def _warn_ignored_keys(session: ScopeSession, plan: RunPlan) -> None:
    """Once, when the offer is first read: each mapping on a key the pipeline ignores in this input mode, from the
    server's schema, or from the bridge's catalogue when the server does not list its pipelines."""
    ignored = IgnoredKeyLog(plan.profile, plan.pipeline, plan.input_mode, log)

    def on_offer(offer: ServerOffer | None) -> None:
        found = offer.get(plan.pipeline) if offer is not None else None
        ignored.report(found.schema if found is not None else None)

    session.connection.on_offer = on_offer


async def run_bridge(options: RunOptions, *, status_stream: TextIO | None = None) -> int:
    """``metadj-bridge run``: returns the exit status."""
    plan = make_plan(options, await load_show_profile(options.profile))
    profile = plan.profile
    log.info("show profile: %s (%d themes, %d mappings)", profile.path, len(profile.themes), len(profile.mappings))
    if options.rehearse:
        log.info("rehearsal: the built-in emulator at %s's pace, %s, video to the preview",
                 plan.pipeline, "the demo track" if plan.audio == "demo" else "the audio given")
    info = parameters.pipeline_info(plan.pipeline)
    sender = ParameterSender(pacer=PacerConfig(
        min_interval=plan.min_send_interval,
        max_interval=plan.max_send_interval,
        chunk_frames=info.chunk_frames,
        gather=GATHER,
    ))
    board = SignalBoard()
    board.keep(profile.names_read())  # a flood of new OSC addresses never pushes out what the profile reads
    osc_out = None
    if plan.osc_out is not None:
        from metadj_bridge.outputs.osc_out import OscOutput

        host, _, port = plan.osc_out.rpartition(":")
        osc_out = OscOutput(host, int(port), where=plan.osc_out_where)
    tempo = profile.inputs.tempo
    hub = TempoHub(board, ArbiterConfig(beats_per_bar=tempo.beats_per_bar, priority=tuple(tempo.prefer)),
                   osc_out=osc_out)
    show = ShowRunner(profile, sender, tempo=hub.tick, board=board, osc_out=osc_out, downbeat=hub.pin_downbeat)
    initial = show.initial_parameters()
    sender.update(initial)
    started = time.monotonic()
    stop = asyncio.Event()
    async with contextlib.AsyncExitStack() as stack:
        stack.enter_context(stop_signals(stop.set, on_reload=lambda: show.request_reload("SIGHUP")))
        show_log = open_show_log(stack, options, plan, initial)
        if show_log is not None:
            sender.on_sent = show_log.record
            show.show_log = show_log
        url = await _open_scope_url(stack, plan)
        # vace_enabled false: text mode has no reference images (seed troubleshooting table).
        fields: dict[str, Any] = {
            "input_mode": "text", "load_params": {"width": plan.width, "height": plan.height, "vace_enabled": False},
        }
        avatar = None
        if plan.input_mode == "video":
            avatar = await open_avatar(stack, plan, url)
            fields = avatar.session_fields()
        session = ScopeSession(SessionConfig(
            url=url,
            pipeline_ids=[plan.pipeline],
            prompts=initial.get("prompts") or "",
            denoising_step_list=list(plan.denoising),
            no_frame_timeout=plan.no_frame_timeout,
            **fields,
        ), sender)
        hub.scope_state = lambda: session.state.value
        _warn_ignored_keys(session, plan)
        status = BridgeStatus(session)
        status.show, status.tempo, status.avatar = show, hub, avatar
        package_log = logging.getLogger("metadj_bridge")
        package_log.addHandler(status.warnings)
        stack.callback(package_log.removeHandler, status.warnings)

        # The video clock closes after the session (the recording ends with the last frame shown).
        preview = PreviewSink()  # the web page's picture, whatever the outputs
        video = status.video = await open_video(stack, plan, session, preview)
        show.latency = status.latency = open_latency(sender, session, video)  # quantize's lookahead auto
        stack.push_async_callback(session.aclose)
        if osc_out is not None:
            stack.push_async_callback(osc_out.aclose)
            await osc_out.start()

        def on_audio(update: AudioUpdate) -> None:
            status.on_audio(update)
            deliver(update, board)

        controls = await open_controls(stack, plan, board)
        if controls.osc is not None:  # OSCQuery: TouchOSC, Chataigne, TouchDesigner find the addresses (docs/osc.md)
            from metadj_bridge.web.oscquery import OscQueryService

            oscquery = OscQueryService(lambda: show.profile, controls.osc.host, controls.osc.port,
                                       presets=plan.osc_presets, values=board.values)
            stack.push_async_callback(oscquery.aclose)
            await oscquery.start()
        show.midi_out = controls.midi_out
        show.on_profile = lambda new: _follow_profile(options, controls, new, board)
        status.audio_input = await open_audio(stack, plan, on_audio, tempo.beats_per_bar)
        status.controls = controls  # what is open and awaited, read live by every snapshot
        # More screens, each on its own server, fed what the main screen is sent (run/screens.py).
        status.screens = await open_screens(stack, plan.screens, sender, lambda: show.profile,
                                            emulator_fps=plan.emulator_fps, no_frame_timeout=plan.no_frame_timeout,
                                            audio=plan.audio != "none")
        # Recordings carry the music the analysis hears, on every screen.
        connect_recording_audio([video, *(screen.video for screen in status.screens)], status.audio_input)
        await session.start()
        tempo_sync = TempoSyncWatch(session.client, on_change=lambda source: setattr(show, "feed_beat", bool(source)))
        if plan.watch:
            await show.watch()
        # One web server: the control page, the picture, /status, /metrics, the live state, the API (docs/web.md).
        control = ShowControl(show, board, tempo=lambda: hub.state, downbeat=hub.pin_downbeat)
        stack.push_async_callback(control.learner.aclose)  # a learn still waiting ends with the show
        show.osc_control = control.take_osc  # the same requests over OSC: /metadj/theme, /prompt, /action
        web_server = WebServer(status.snapshot, control=control,
                               preview=preview if video is not None else None, host=plan.http_host,
                               port=plan.http_port, token=plan.http_token,
                               screens={screen.name: screen.preview for screen in status.screens})
        stack.push_async_callback(web_server.aclose)
        await web_server.start()
        status.preview_url = preview.url if video is not None else None
        log.info("status: %sstatus (JSON) and %smetrics (Prometheus)", web_server.url, web_server.url)
        from metadj_bridge.status.view import StatusView

        view = StatusView(status.snapshot, status_stream or sys.stderr)
        stack.callback(view.finish)
        service = ServiceNotifier()
        stack.callback(service.close)
        stack.callback(service.stopping)
        service.ready(_service_status(session.status(), plan.pipeline))
        try:
            # Every long-running part is a named task of one group. A part that fails is restarted on its own
            # (the others go on); the Scope session heals itself and only ends the run on a fatal startup error.
            async with asyncio.TaskGroup() as group:
                group.create_task(supervised("status", view.run), name="status")
                group.create_task(supervised("tempo", hub.run), name="tempo")
                group.create_task(supervised("show", show.run), name="show")
                group.create_task(supervised("tempo sync", tempo_sync.run), name="tempo-sync")
                assert session.supervisor is not None
                group.create_task(_session_part(session.supervisor), name="scope-session")
                group.create_task(_until_stopped(stop, plan.duration), name="stop")
                group.create_task(supervised("freezes", lambda: _say_freezes(session, show, plan.no_frame_timeout)),
                                  name="freezes")
                group.create_task(supervised("service", lambda: service.run(
                    lambda: _service_status(session.status(), plan.pipeline))), name="service")
        except* _Stopped:
            pass
        except* MetaDJError as errors:
            raise errors.exceptions[0] from None  # a fatal startup error, for the CLI to print
    _closing_line(session.status(), show, time.monotonic() - started, session.reconnect.last_error)
    for screen in status.screens:
        st = screen.session.status()
        log.info("screen %s: %d frames received, %d messages sent, %d session(s)%s", screen.name, st["frames_in"],
                 st["sent"], st["sessions_started"], f"; last error: {st['last_error']}" if st["last_error"] else "")
    return 0


def _service_status(st: dict[str, Any], pipeline: str) -> str:
    """One line for ``systemctl status``: the session's state and what comes back."""
    line = f"Scope {st['state']} ({pipeline}), {st['fps_in']:.1f} fps in"
    return line + (f"; last error: {st['last_error']}" if st.get("last_error") else "")


def _closing_line(st: dict[str, Any], show: ShowRunner, elapsed: float, last_error: str | None) -> None:
    """What the run did, in one line; a WARNING saying so when no session was made or no frame ever came."""
    if st["sessions_started"] == 0:
        log.warning("stopped after %.1f s: no Scope session was made (last error: %s)", elapsed, last_error or "none")
        return
    if st["frames_in"] == 0:
        log.warning("stopped after %.1f s: %d session(s) made, but no video frame came from Scope (last error: %s)",
                    elapsed, st["sessions_started"], last_error or "none")
        return
    log.info(
        "stopped after %.1f s: %d frames received, %d messages sent (%d changes merged), %d session(s), "
        "%d engine steps, %d profile switch(es) (%d refused), %d reload(s)",
        elapsed,
        st["frames_in"],
        st["sent"],
        st["merged"],
        st["sessions_started"],
        show.steps,
        show.switches,
        show.switches_refused,
        show.reloads,
    )
