"""``metadj-bridge replay``: drive Scope from a show log with the original timing.

The log's pipeline is loaded with the header's size and denoising steps, and a session opens (on the built-in
emulator when no URL is given, as ``run`` does) in the show's own input mode with the show's initial parameters;
then every logged message goes to the ``ParameterSender`` at its time. The sender paces and merges exactly as in
the live show, so Scope's queue stays short, and one-shot keys (``reset_cache``, a ``transition``) keep their
meaning: each goes out once, in the next message. The replay ends after the last message, or on Ctrl-C.

What cannot play is refused up front, in one line: a video-mode show without ``--video-source`` (its pipeline
makes nothing without input video, and the log does not hold the video), and a pipeline the server does not
offer, or not in the show's mode (``GET /api/v1/pipelines/schemas``). A replay that gets no frame back is an
error, never "replay done".
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import sys
import time
from collections.abc import Awaitable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TextIO

from metadj_bridge import parameters
from metadj_bridge.errors import (
    ConfigError,
    ParameterError,
    RateLimitedWarning,
    ScopeError,
    ScopeSessionError,
    printable,
)
from metadj_bridge.lifecycle import cancel_and_wait, stop_signals
from metadj_bridge.scope.api import ScopeClient, redact_url
from metadj_bridge.scope.sender import DISCRETE_KEYS, PacerConfig, ParameterSender
from metadj_bridge.scope.session import ScopeSession, SessionConfig
from metadj_bridge.showlog.reading import SentMessage, ShowEvent, ShowRecording, read_show_log

if TYPE_CHECKING:
    from metadj_bridge.emulator import ScopeEmulator

__all__ = ["ReplayOptions", "ReplayReport", "replay_show", "run_replay"]

log = logging.getLogger(__name__)

#: Keys of a logged initial state that a session's live state cannot take.
_NOT_LIVE = parameters.OFFER_ONLY_KEYS | parameters.LOAD_ONLY_KEYS | DISCRETE_KEYS


@dataclass
class ReplayOptions:
    show_log: str
    #: Scope server root; None starts the built-in emulator.
    scope_url: str | None = None
    #: 2.0 plays twice as fast as the show was played.
    speed: float = 1.0
    emulator_fps: float | None = None
    #: Frames per generated chunk, for the sender's pacing; None takes the pipeline's known value.
    chunk_frames: int | None = None
    no_frame_timeout: float = 5.0
    #: How long to let the last message land before the session closes.
    settle: float = 0.5
    #: A video-mode show's input: a webcam (``/dev/video0``) or ``file:clip.mp4``, as ``run --video-source``.
    video_source: str | None = None
    #: How long the first frame may take once the session is up (a GPU pipeline warms up on its first chunk).
    first_frame_timeout: float = 20.0
    #: Where the video goes, as ``run --output``: the virtual camera (the browser preview where there is none), the
    #: preview, ``record:FILE.mp4`` to render the set again; () for none.
    outputs: tuple[str, ...] = ("vcam",)
    preview_port: int = 8765

    def __post_init__(self) -> None:
        if not (math.isfinite(self.speed) and self.speed > 0):
            raise ConfigError(f"--speed: {self.speed} must be a number > 0 (1 is the show's own timing)")


@dataclass
class ReplayReport:
    """What a replay did."""

    #: Logged messages handed to the sender, of ``total`` in the log.
    replayed: int
    total: int
    #: Messages the sender put on the data channel (fewer when it merged close ones, as live).
    sent: int
    #: Messages (or keys of them) the pipeline would not accept.
    rejected: int
    #: Seconds from the first message to the end of the replay.
    seconds: float
    interrupted: bool
    #: Frames that came back from Scope during the replay.
    frames: int = 0


class _Rejected:
    """Counts logged parameters the pipeline refuses; logs them rate-limited."""

    def __init__(self) -> None:
        self.count = 0
        self._warning = RateLimitedWarning(log, "logged parameters the pipeline does not accept")

    def note(self, reason: str) -> None:
        self.count += 1
        self._warning.note(reason)


def _live_state(initial: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in initial.items() if k not in _NOT_LIVE}


class _Progress:
    """One refreshed line on a terminal; a log line every few seconds otherwise."""

    def __init__(self, stream: TextIO, total: int, duration: float) -> None:
        self.stream = stream
        self.tty = stream.isatty()
        self.total = total
        self.duration = duration
        self._last = -math.inf

    def show(self, done: int, at: float, sent: int, *, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._last < (0.5 if self.tty else 5.0):
            return
        self._last = now
        line = (
            f"replay {_clock(at)} / {_clock(self.duration)}: {done}/{self.total} messages, {sent} sent"
        )
        if self.tty:
            self.stream.write("\r\x1b[2K" + line)
            self.stream.flush()
        else:
            log.info("%s", line)

    def finish(self) -> None:
        if self.tty:
            self.stream.write("\n")
            self.stream.flush()


def _clock(seconds: float) -> str:
    seconds = max(0.0, seconds)
    return f"{int(seconds // 60):02d}:{seconds % 60:04.1f}"


def refuse_unplayable(rec: ShowRecording, options: ReplayOptions) -> None:
    """ConfigError, in one line, for a log that cannot play as given: a video-mode show without input video."""
    header = rec.header
    if header.input_mode == "video" and not options.video_source:
        raise ConfigError(
            f"{rec.path} was played in video mode ({header.pipeline} transformed the show's input video, which a "
            "show log does not hold): give the replay its input with --video-source (a webcam such as /dev/video0, "
            "or file:clip.mp4)"
        )


async def check_offered(url: str, rec: ShowRecording) -> None:
    """Refuse, before loading, a pipeline the server does not offer or not in the show's input mode (ConfigError);
    a server without the list is judged by the bridge's own table. A server not answering yet is left to the
    session, which waits for it."""
    from metadj_bridge.scope.offer import check_pipeline, read_offer

    header = rec.header
    try:
        async with ScopeClient(url) as client:
            offer = await read_offer(client)
    except ScopeError as exc:
        log.debug("could not read the server's pipelines: %s", exc)
        return
    try:
        if offer is None:
            known = parameters.KNOWN_PIPELINES.get(header.pipeline)
            if known is not None and header.input_mode not in known.modes:
                raise ConfigError(f"pipeline {header.pipeline!r} takes only {' and '.join(known.modes)} input, not "
                                  f"{header.input_mode} mode")
        check_pipeline(offer, header.pipeline, header.input_mode)
    except ConfigError as exc:
        raise ConfigError(f"cannot replay {rec.path} ({header.input_mode} mode on {header.pipeline}): {exc}") from None


async def _open_source(options: ReplayOptions, rec: ShowRecording, url: str) -> Any:
    """Video mode: the show's input (``--video-source``) open and delivering, as ``run`` opens it."""
    from metadj_bridge.video.vace import AvatarSettings, open_avatar

    assert options.video_source is not None
    header = rec.header
    settings = AvatarSettings(source=options.video_source, width=header.width, height=header.height)
    async with ScopeClient(url) as client:
        return await open_avatar(settings, client, base_load_params={"width": header.width, "height": header.height})


async def replay_show(
    options: ReplayOptions, *, recording: ShowRecording | None = None, stop: asyncio.Event | None = None,
    status_stream: TextIO | None = None,
) -> ReplayReport:
    """Replay a show log against Scope; returns what was done. ``stop`` ends it early (Ctrl-C).

    Raises ConfigError for a log that cannot play here, and ScopeSessionError when no frame came back.
    """
    rec = recording if recording is not None else await asyncio.to_thread(read_show_log, options.show_log)
    refuse_unplayable(rec, options)
    header = rec.header
    stop = stop or asyncio.Event()
    info = parameters.pipeline_info(header.pipeline)
    chunk_frames = options.chunk_frames or info.chunk_frames
    emulator: ScopeEmulator | None = None
    avatar: Any = None
    url = options.scope_url
    try:
        if url is None:
            from metadj_bridge.emulator import EmulatorConfig, ScopeEmulator

            emulator = ScopeEmulator(
                EmulatorConfig(host="127.0.0.1", port=0, chunk_frames=options.chunk_frames, fps=options.emulator_fps)
            )
            await emulator.start()
            url = emulator.url
            log.info("no Scope URL given: started the built-in Scope emulator at %s", url)
        await check_offered(url, rec)
        fields: dict[str, Any] = {"input_mode": "text", "load_params": {"width": header.width,
                                                                          "height": header.height,
                                                                          "vace_enabled": False}}
        if header.input_mode == "video":
            avatar = await _open_source(options, rec, url)
            fields = avatar.session_fields()
        return await _replay_session(options, rec, url, fields, chunk_frames, stop, status_stream)
    finally:
        if avatar is not None:
            await avatar.aclose()
        if emulator is not None:
            await emulator.aclose()


async def _replay_session(
    options: ReplayOptions, rec: ShowRecording, url: str, fields: dict[str, Any], chunk_frames: int,
    stop: asyncio.Event, status_stream: TextIO | None,
) -> ReplayReport:
    header = rec.header
    rejected = _Rejected()
    sender = ParameterSender(pacer=PacerConfig(chunk_frames=chunk_frames))
    for key, value in _live_state(header.initial).items():
        try:
            sender.update({key: value})
        except ParameterError as exc:
            rejected.note(str(exc))
    initial_prompts = sender.snapshot().get("prompts") or header.initial.get("prompts") or ""
    steps = header.denoising_step_list or header.initial.get("denoising_step_list")
    config = SessionConfig(
        url=url,
        pipeline_ids=[header.pipeline],
        prompts=initial_prompts,
        denoising_step_list=list(steps) if steps else None,
        no_frame_timeout=options.no_frame_timeout,
        first_frame_timeout=options.first_frame_timeout,
        **fields,
    )
    session = ScopeSession(config, sender)
    video = await _open_video(options, rec, session)
    first_frame = asyncio.Event()
    session.add_frame_listener(lambda frame: first_frame.set())
    progress = _Progress(status_stream or sys.stderr, len(rec.sent), rec.duration)
    replayed = 0
    started = time.monotonic()
    interrupted = False
    try:
        await session.start()
        log.info("replaying %s: %d messages over %s on %s (%s, %s mode)", rec.path, len(rec.sent),
                 _clock(rec.duration), redact_url(url), header.pipeline, header.input_mode)
        if not await _until(session.wait_streaming(), stop) or not await _until(
            _first_frame(first_frame, options.first_frame_timeout, header.pipeline, header.input_mode), stop
        ) or not await _until(_video_flowing(sender), stop):
            interrupted = True
        else:
            replayed, interrupted = await _play(rec, sender, options.speed, stop, progress, rejected)
            if not interrupted:
                await _settle(sender, options.settle, stop)
        progress.show(replayed, rec.sent[replayed - 1].t if replayed else 0.0, sender.sent, force=True)
    finally:
        progress.finish()
        frames = session.frames_received
        await session.aclose()
        if video is not None:
            await video.aclose()
    report = ReplayReport(replayed, len(rec.sent), sender.sent, rejected.count,
                          time.monotonic() - started, interrupted, frames)
    log.info("replay %s: %d of %d logged messages replayed, %d sent, %d frames back", "stopped" if interrupted
             else "done", report.replayed, report.total, report.sent, report.frames)
    return report


async def _open_video(options: ReplayOptions, rec: ShowRecording, session: ScopeSession) -> Any:
    """The output clock with the replay's sinks at the show's size, fed by the session; None without outputs."""
    if not options.outputs:
        return None
    from metadj_bridge.video.clock import OutputClock
    from metadj_bridge.video.outputs import build_sinks
    from metadj_bridge.video.preview import PreviewSink
    from metadj_bridge.video.slate import reason_from_session

    preview = PreviewSink()
    sinks = build_sinks(options.outputs, device=None, backend=None, preview=preview)
    clock = OutputClock(rec.header.width, rec.header.height, 30.0, sinks, reason=reason_from_session(session))
    await clock.start()
    session.add_frame_listener(clock.push)
    if not any(sink is preview or getattr(sink, "active", None) is preview for sink in sinks):
        return clock
    from metadj_bridge.web.server import WebServer

    # The picture on the web server (no controls: a replay plays the log).
    server = WebServer(lambda: {"replay": str(rec.path)}, preview=preview, port=options.preview_port)
    try:
        await server.start()
    except BaseException:
        await clock.aclose()
        raise
    return _ServedVideo(clock, server)


class _ServedVideo:
    """The replay's output clock and the web server showing its picture, closed together."""

    def __init__(self, clock: Any, server: Any) -> None:
        self.clock, self.server = clock, server

    async def aclose(self) -> None:
        try:
            await self.clock.aclose()
        finally:
            await self.server.aclose()


async def _first_frame(arrived: asyncio.Event, limit: float, pipeline: str, mode: str) -> None:
    """Wait for the first frame back; ScopeSessionError when none comes within ``limit`` seconds."""
    try:
        await asyncio.wait_for(arrived.wait(), limit)
    except TimeoutError:
        raise ScopeSessionError(
            f"no frame came back from Scope within {limit:g} s of the session starting ({pipeline}, {mode} mode), "
            "so nothing was replayed: check that the session is not paused and that the pipeline makes video in "
            "this mode (run `metadj-bridge doctor` with the show's profile)"
        ) from None


async def _until(work: Awaitable[object], stop: asyncio.Event) -> bool:
    """Run ``work`` unless ``stop`` is set first; True when ``work`` finished (its error is raised)."""
    task = asyncio.ensure_future(work)
    stopper = asyncio.ensure_future(stop.wait())
    try:
        done, _ = await asyncio.wait({task, stopper}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        await cancel_and_wait(task)
        await cancel_and_wait(stopper)
    if task in done:
        task.result()
        return True
    return False


async def _video_flowing(sender: ParameterSender, limit: float = 10.0) -> None:
    """Wait (at most ``limit`` seconds) until the returning video shows Scope's rate, so the first messages are
    paced like the show's were (until then the sender holds changes up to its longest interval)."""
    deadline = time.monotonic() + limit
    while sender.pacer.fps(time.monotonic()) is None:
        if time.monotonic() > deadline:
            log.warning("no steady video from Scope after %.0f s; replaying anyway", limit)
            return
        await asyncio.sleep(0.05)


async def _play(
    rec: ShowRecording, sender: ParameterSender, speed: float, stop: asyncio.Event, progress: _Progress,
    rejected: _Rejected,
) -> tuple[int, bool]:
    """Hand each logged message (and event) to the sender at its time; returns (messages replayed, interrupted)."""
    loop = asyncio.get_running_loop()
    # At the same time an event (0) comes before a message (1).
    items: list[tuple[float, int, SentMessage | ShowEvent]] = (
        [(s.t, 1, s) for s in rec.sent] + [(e.t, 0, e) for e in rec.events]
    )
    items.sort(key=lambda item: (item[0], item[1]))
    first = rec.sent[0].t if rec.sent else 0.0
    t0 = loop.time()
    replayed = 0
    for t, _, item in items:
        if t < first:
            continue  # events from before the first message (loading, connecting) are not replayed
        due = t0 + (t - first) / speed
        while (wait := due - loop.time()) > 0:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=min(wait, 0.5))
            if stop.is_set():
                return replayed, True
            progress.show(replayed, first + (loop.time() - t0) * speed, sender.sent)
        if isinstance(item, ShowEvent):
            log.info("show event at %s: %s%s", _clock(t), printable(item.text),
                     f" (the latest of {item.count})" if item.count > 1 else "")
            continue
        _hand_over(sender, item.message, rejected)
        replayed += 1
    return replayed, False


def _hand_over(sender: ParameterSender, message: Mapping[str, Any], rejected: _Rejected) -> None:
    try:
        sender.update(message)
    except ParameterError:
        for key, value in message.items():  # keep what the pipeline accepts
            try:
                sender.update({key: value})
            except ParameterError as exc:
                rejected.note(str(exc))


async def _settle(sender: ParameterSender, grace: float, stop: asyncio.Event) -> None:
    """Let the sender send what is pending (at most a few chunk periods), then give it ``grace`` to land."""
    deadline = time.monotonic() + 2 * sender.pacer.config.max_interval + grace
    # A poll: the sender has no event for "nothing pending".
    while sender.state.has_pending and time.monotonic() < deadline and not stop.is_set():  # noqa: ASYNC110 - see above
        await asyncio.sleep(0.02)
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), timeout=grace)


async def run_replay(options: ReplayOptions, *, status_stream: TextIO | None = None) -> int:
    """``metadj-bridge replay``: returns the exit status (0, also after Ctrl-C)."""
    stop = asyncio.Event()
    with stop_signals(stop.set):  # Windows: KeyboardInterrupt instead
        await replay_show(options, stop=stop, status_stream=status_stream)
    return 0
