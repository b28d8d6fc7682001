"""One self-healing WebRTC session with a Scope server (scope-api.md §5-7, §12).

The session runs as a supervisor task: connect (health, pipeline, ICE servers, offer), watch (frames,
connection state, the server's start time), and on any loss tear down and rebuild with capped
exponential backoff, forever while the daemon runs. The last desired parameter state goes into the new
session's ``initialParameters``, so a rebuilt session starts where the old one was.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from aiortc import (
    MediaStreamTrack,
    RTCConfiguration,
    RTCIceServer,
    RTCPeerConnection,
    RTCRtpSender,
    RTCSessionDescription,
)
from aiortc.mediastreams import MediaStreamError

from metadj_bridge import parameters
from metadj_bridge.errors import (
    ConfigError,
    MetaDJError,
    RateLimitedWarning,
    ScopeConnectionError,
    ScopeError,
    ScopeHTTPError,
    ScopeSessionError,
)
from metadj_bridge.parameters import ParameterSchema
from metadj_bridge.scope import protocol
from metadj_bridge.scope.api import HealthInfo, ScopeClient, redact_url
from metadj_bridge.scope.sender import ParameterSender

log = logging.getLogger(__name__)

FrameListener = Callable[[Any], None]


class SessionState(enum.Enum):
    IDLE = "idle"
    CONNECTING = "connecting"
    LOADING = "loading pipeline"
    NEGOTIATING = "negotiating"
    STREAMING = "streaming"
    RECONNECTING = "reconnecting"
    CLOSED = "closed"


@dataclass
class Backoff:
    """Capped exponential backoff with jitter: 2, 4, 8, 16, 30, 30, ... seconds by default.

    The seed's "3 retries, 2 s base" is the start of this schedule, not its end: it never gives up.
    """

    base: float = 2.0
    cap: float = 30.0
    jitter: float = 0.1

    def delay(self, attempt: int, rand: Callable[[], float] = random.random) -> float:
        raw = min(self.cap, self.base * (2 ** min(attempt, 30)))
        return raw * (1 - self.jitter + 2 * self.jitter * rand())


@dataclass
class SessionConfig:
    url: str
    pipeline_ids: list[str] = field(default_factory=lambda: ["longlive"])
    load_params: dict[str, Any] = field(default_factory=dict)
    input_mode: str = "text"
    prompts: Any = "a luminous dancefloor of liquid light"
    denoising_step_list: list[int] | None = field(default_factory=lambda: list(parameters.DENOISING_PRESETS["quality"]))
    manage_cache: bool = True
    #: Offer-only keys such as ``vace_enabled`` (kept consistent with the load params by the caller).
    offer_extra: dict[str, Any] = field(default_factory=dict)
    #: ICE servers to use; None asks the server (GET /api/v1/webrtc/ice-servers).
    ice_servers: list[dict[str, Any]] | None = None
    #: Video mode: makes the outgoing track for each new session.
    video_track_factory: Callable[[], MediaStreamTrack] | None = None
    prefer_codec: str | None = "video/H264"
    no_frame_timeout: float = 5.0
    #: The first frame of a session may take longer (a GPU pipeline warms up on its first chunk).
    first_frame_timeout: float = 15.0
    connect_timeout: float = 15.0
    load_timeout: float = 300.0
    health_interval: float = 2.0
    #: While Scope is unreachable, look at its health this often and reconnect as soon as it answers (0: never).
    reconnect_probe_interval: float = 0.5
    backoff: Backoff = field(default_factory=Backoff)
    #: Give up at once on the first connection when the error cannot heal by waiting (wrong URL,
    #: not a Scope server, TLS). Once a session has worked, everything is retried.
    fail_fast_on_permanent_errors: bool = True

    def __post_init__(self) -> None:
        if self.input_mode not in ("text", "video"):
            raise ConfigError(f"input mode {self.input_mode!r} is not 'text' or 'video'")
        if self.input_mode == "video" and self.video_track_factory is None:
            raise ConfigError("video input mode needs a video source (webcam or file)")
        if not self.pipeline_ids:
            raise ConfigError("no pipeline id given")
        if self.no_frame_timeout <= 0:
            raise ConfigError(f"no-frame timeout {self.no_frame_timeout} must be > 0 seconds")


class _Lost(Exception):
    """Internal: the current session must be rebuilt, for the reason given."""


class ScopeSession:
    """Keeps exactly one working WebRTC session with Scope, rebuilding it whenever it is lost."""

    def __init__(
        self,
        config: SessionConfig,
        sender: ParameterSender,
        *,
        client: ScopeClient | None = None,
        on_state: Callable[[SessionState, str], None] | None = None,
    ) -> None:
        self.config = config
        self.sender = sender
        self.client = client or ScopeClient(config.url)
        self._owns_client = client is None
        self.state = SessionState.IDLE
        self.health: HealthInfo | None = None
        self.session_id: str | None = None
        self.frames_received = 0
        self.sessions_started = 0
        self.last_error: str | None = None
        self.load_progress: str | None = None
        self._on_state = on_state
        self._listeners: list[FrameListener] = []
        self._listener_warning = RateLimitedWarning(log, "frame listener errors")
        self._pc: RTCPeerConnection | None = None
        self._channel: Any = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._supervisor: asyncio.Task[None] | None = None
        self._lost: asyncio.Future[str] | None = None
        self._streaming = asyncio.Event()
        self._last_frame = 0.0
        self._connected_at = 0.0
        self._pending_candidates: list[dict[str, Any]] = []
        self._stale_session_ids: list[str] = []
        self._closed = False

    # ------------------------------------------------------------------ public

    def add_frame_listener(self, listener: FrameListener) -> None:
        """``listener(frame)`` runs on the event loop for every decoded frame; keep it quick."""
        self._listeners.append(listener)

    async def start(self) -> None:
        """Start the supervisor. Returns at once; use ``wait_streaming()`` to wait for video."""
        if self._closed:
            raise RuntimeError("ScopeSession is closed")
        if self._supervisor is None:
            self.sender.start()
            self._supervisor = asyncio.get_running_loop().create_task(self._supervise(), name="scope-session")

    async def wait_streaming(self, timeout: float | None = None) -> None:
        """Wait until a session is up with its data channel open; re-raises a fatal startup error."""
        assert self._supervisor is not None, "start() first"
        waiter = asyncio.ensure_future(self._streaming.wait())
        try:
            done, _ = await asyncio.wait({waiter, self._supervisor}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        finally:
            waiter.cancel()
        if self._supervisor in done:
            self._supervisor.result()  # raises the fatal error
            raise ScopeSessionError("the Scope session stopped")
        if not done:
            raise ScopeSessionError(f"no Scope session after {timeout:g} s (last error: {self.last_error or 'none'})")

    @property
    def supervisor(self) -> asyncio.Task[None] | None:
        return self._supervisor

    def add_local_candidate(self, candidate: Mapping[str, Any]) -> None:
        """Trickle a late local ICE candidate: queued until the answer brings a session id, then PATCHed.

        aiortc puts every candidate it gathers into the offer, so with aiortc this only carries candidates
        learnt after the offer (none today); the path exists for clients and networks that trickle.
        """
        cand = dict(candidate)
        if not cand.get("candidate"):
            return  # Scope answers 404 to an empty end-of-candidates marker (§5)
        self._pending_candidates.append(cand)
        if self.session_id is not None:
            self._spawn(self._flush_candidates(), "scope-trickle")

    def status(self) -> dict[str, Any]:
        now = time.monotonic()
        stats = self.sender.stats()
        return {
            "state": self.state.value,
            "url": redact_url(self.config.url),
            "server_version": self.health.version if self.health else None,
            "emulator": self.health.emulator if self.health else False,
            "pipeline": self.config.pipeline_ids[0],
            "load_progress": self.load_progress,
            "session_id": self.session_id,
            "sessions_started": self.sessions_started,
            "frames_in": self.frames_received,
            "fps_in": self.sender.pacer.fps(now) or 0.0,
            "sent": stats.sent,
            "merged": stats.merged,
            "send_interval": stats.interval,
            "last_error": self.last_error,
        }

    async def aclose(self) -> None:
        """Stop healing, DELETE the session on the server, close the peer. Safe to call twice."""
        if self._closed:
            return
        self._closed = True
        sup, self._supervisor = self._supervisor, None
        if sup is not None:
            sup.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await sup
        await self._teardown()
        await self.sender.aclose()
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if self._owns_client:
            await self.client.aclose()
        self._set_state(SessionState.CLOSED, "closed")

    # ------------------------------------------------------------------ supervisor

    async def _supervise(self) -> None:
        attempt = 0
        ever_streamed = False
        lost_since: float | None = None
        while not self._closed:
            unreachable = True  # a lost session: the server may be restarting; look for it while waiting
            try:
                await self._connect()
                ever_streamed = True
                if lost_since is not None:
                    log.info(
                        "Scope session restored after %.1f s (session %s)", time.monotonic() - lost_since, self.session_id
                    )
                    lost_since = None
                else:
                    log.info("Scope session %s streaming from %s", self.session_id, redact_url(self.config.url))
                attempt = 0
                reason = await self._watch()
            except asyncio.CancelledError:
                raise
            except ScopeError as exc:
                reason = str(exc)
                unreachable = isinstance(exc, ScopeConnectionError)
                if not ever_streamed and self.config.fail_fast_on_permanent_errors and not exc.transient:
                    self.last_error = reason
                    await self._teardown()
                    raise
            except MetaDJError as exc:
                reason = str(exc)
                unreachable = False
                if not ever_streamed:
                    self.last_error = reason
                    await self._teardown()
                    raise
            except Exception as exc:  # an aiortc or network surprise: heal, and keep the traceback
                log.debug("Scope session error", exc_info=True)
                reason = f"{type(exc).__name__}: {exc}"
                unreachable = False
            self.last_error = reason
            await self._teardown()
            if self._closed:
                return
            delay = self.config.backoff.delay(attempt)
            attempt += 1
            if lost_since is None:
                lost_since = time.monotonic()
                verb = "lost" if ever_streamed else "unavailable"
                log.warning("Scope session %s: %s; retrying in %.1f s, and for as long as it takes", verb, reason, delay)
            else:
                log.debug("Scope session attempt %d failed: %s; next in %.1f s", attempt, reason, delay)
            self._set_state(SessionState.RECONNECTING, reason)
            await self._wait_to_retry(delay, probe=unreachable)

    async def _wait_to_retry(self, delay: float, *, probe: bool) -> None:
        """Wait out the backoff, looking at Scope's health meanwhile: retry at once when a Scope that was
        unreachable answers again, or when the server restarted (its start time changed: whatever failed may be
        gone). A restarted server is back in the show within a probe interval, not at the end of a 30 s wait. A
        failed load on a server that did not restart waits out its backoff. A health check costs Scope almost
        nothing."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + delay
        interval = self.config.reconnect_probe_interval
        known_start = self.health.server_start_time if self.health is not None else None
        while not self._closed:
            remaining = deadline - loop.time()
            if remaining <= 0:
                return
            if interval <= 0:
                await asyncio.sleep(remaining)
                return
            await asyncio.sleep(min(interval, remaining))
            try:
                health = await asyncio.wait_for(self.client.health(), timeout=max(0.5, interval))
            except (ScopeError, TimeoutError):
                probe = True  # unreachable now: retry as soon as it answers
                continue
            if probe or health.server_start_time != known_start:
                log.debug("Scope answers again (or restarted); reconnecting now")
                return

    async def _connect(self) -> None:
        cfg = self.config
        self._set_state(SessionState.CONNECTING, "checking Scope's health")
        health = await self.client.health()
        if self.health is not None and health.server_start_time != self.health.server_start_time:
            log.info("Scope restarted (server version %s)", health.version)
        self.health = health

        self._set_state(SessionState.LOADING, f"loading {cfg.pipeline_ids[0]}")
        await self.client.ensure_pipeline(
            cfg.pipeline_ids, cfg.load_params, timeout=cfg.load_timeout, on_progress=self._progress
        )
        self.load_progress = "loaded"
        try:
            schemas = await self.client.pipeline_schemas()
            self.sender.set_schema(ParameterSchema.from_server(cfg.pipeline_ids[-1], schemas))
        except ScopeError as exc:
            log.debug("pipeline schemas unavailable (%s); checking parameters against the built-in table", exc)

        ice = cfg.ice_servers if cfg.ice_servers is not None else await self.client.ice_servers()
        await self._delete_stale_sessions()

        self._set_state(SessionState.NEGOTIATING, "negotiating WebRTC")
        pc = RTCPeerConnection(RTCConfiguration(iceServers=[_ice_server(s) for s in ice]))
        self._pc = pc
        loop = asyncio.get_running_loop()
        self._lost = loop.create_future()

        if cfg.input_mode == "video":
            assert cfg.video_track_factory is not None
            transceiver = pc.addTransceiver(cfg.video_track_factory(), direction="sendrecv")
        else:
            # sendrecv with no track: Scope needs the remote m-line to send video back (§7).
            transceiver = pc.addTransceiver("video", direction="sendrecv")
        if cfg.prefer_codec:
            _prefer_codec(transceiver, cfg.prefer_codec)
        channel = pc.createDataChannel("parameters", ordered=True)  # before the offer (§6)
        self._channel = channel

        @pc.on("track")
        def _on_track(track: MediaStreamTrack) -> None:
            if track.kind == "video":
                self._spawn(self._receive(track), "scope-video-in")

        @pc.on("connectionstatechange")
        def _on_state_change() -> None:
            state = pc.connectionState
            log.debug("peer connection state: %s", state)
            if state in ("failed", "closed") and pc is self._pc:
                self._mark_lost(f"WebRTC connection {state}")

        @channel.on("close")
        def _on_channel_close() -> None:
            if channel is self._channel:
                self._mark_lost("data channel closed")

        offer = await pc.createOffer()
        await pc.setLocalDescription(offer)
        snapshot = self.sender.snapshot()
        initial = initial_parameters_for(cfg, snapshot)
        local = pc.localDescription
        answer = await self.client.offer(local.sdp, local.type, initial)
        self.session_id = answer.session_id
        self.sessions_started += 1
        await pc.setRemoteDescription(RTCSessionDescription(sdp=answer.sdp, type=answer.type))
        if self._pending_candidates:
            await self._flush_candidates()

        await self._wait_connected(pc, channel)
        self._connected_at = time.monotonic()
        self._last_frame = 0.0
        self.sender.attach(channel, snapshot)
        self._set_state(SessionState.STREAMING, "streaming")
        self._streaming.set()

    async def _wait_connected(self, pc: RTCPeerConnection, channel: Any) -> None:
        deadline = time.monotonic() + self.config.connect_timeout
        while not (pc.connectionState == "connected" and channel.readyState == "open"):
            if self._lost is not None and self._lost.done():
                raise ScopeSessionError(f"WebRTC setup failed: {self._lost.result()}")
            if time.monotonic() > deadline:
                raise ScopeSessionError(
                    f"WebRTC did not connect within {self.config.connect_timeout:g} s (connection "
                    f"{pc.connectionState}, ICE {pc.iceConnectionState}, data channel {channel.readyState}); "
                    "for a remote Scope this usually means no usable ICE/TURN route"
                )
            await asyncio.sleep(0.02)

    async def _watch(self) -> str:
        """Return why the session has to be rebuilt."""
        cfg = self.config
        assert self._lost is not None
        next_health = time.monotonic() + cfg.health_interval
        while True:
            with contextlib.suppress(TimeoutError):
                return await asyncio.wait_for(asyncio.shield(self._lost), timeout=0.25)
            now = time.monotonic()
            if self._last_frame:
                if now - self._last_frame > cfg.no_frame_timeout:
                    return f"connected, but no video frame for {cfg.no_frame_timeout:g} s"
            elif now - self._connected_at > max(cfg.no_frame_timeout, cfg.first_frame_timeout):
                limit = max(cfg.no_frame_timeout, cfg.first_frame_timeout)
                return (
                    f"connected, but no first video frame for {limit:g} s (is pipeline_ids right, "
                    "and is the pipeline producing output?)"
                )
            if now >= next_health:
                next_health = now + cfg.health_interval
                asked = time.monotonic()
                try:
                    health = await asyncio.wait_for(self.client.health(), timeout=max(1.0, cfg.health_interval))
                except (ScopeError, TimeoutError) as exc:
                    return f"Scope stopped answering ({exc or 'timeout'})"
                self.sender.pacer.set_rtt(time.monotonic() - asked)
                assert self.health is not None
                if health.server_start_time != self.health.server_start_time:
                    return "Scope restarted (server_start_time changed)"

    async def _receive(self, track: MediaStreamTrack) -> None:
        pc = self._pc
        try:
            while True:
                frame = await track.recv()
                now = time.monotonic()
                self.frames_received += 1
                self._last_frame = now
                self.sender.on_frame(now)
                for listener in self._listeners:
                    try:
                        listener(frame)
                    except Exception as exc:  # a broken sink must not stop the stream, nor log 20 times a second
                        self._listener_warning.listener_failed(listener, exc)
        except MediaStreamError:
            if pc is self._pc:
                self._mark_lost("Scope's video track ended")

    def _mark_lost(self, reason: str) -> None:
        if self._lost is not None and not self._lost.done():
            self._lost.set_result(reason)

    async def _teardown(self) -> None:
        """Close the current peer and DELETE its session on the server (best effort)."""
        self._streaming.clear()
        self.sender.detach()
        pc, self._pc = self._pc, None
        self._channel = None
        for task in [t for t in self._tasks if t.get_name() == "scope-video-in"]:
            task.cancel()
        if pc is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(pc.close(), timeout=5)
        session_id, self.session_id = self.session_id, None
        self._pending_candidates.clear()
        if session_id is not None:
            self._stale_session_ids.append(session_id)
            await self._delete_stale_sessions()

    async def _delete_stale_sessions(self) -> None:
        """DELETE every session we left on the server, so exactly one of ours ever exists there."""
        while self._stale_session_ids:
            session_id = self._stale_session_ids[0]
            try:
                await asyncio.wait_for(self.client.delete_session(session_id), timeout=3)
            except (ScopeError, TimeoutError) as exc:
                # Server gone: it will have dropped the session itself; a restart forgets it anyway.
                log.debug("could not DELETE session %s: %s", session_id, exc or "timeout")
                if not isinstance(exc, ScopeHTTPError):
                    return
            self._stale_session_ids.pop(0)

    async def _flush_candidates(self) -> None:
        session_id = self.session_id
        if session_id is None or not self._pending_candidates:
            return
        batch, self._pending_candidates = self._pending_candidates, []
        try:
            known = await self.client.add_ice_candidates(session_id, batch)
        except ScopeError as exc:
            log.debug("trickle PATCH failed: %s", exc)
            return
        if not known and session_id == self.session_id:
            self._mark_lost("Scope no longer knows this session (candidate PATCH answered 404)")

    async def _progress(self, message: str) -> None:
        self.load_progress = message
        self._set_state(SessionState.LOADING, message)

    def _set_state(self, state: SessionState, detail: str) -> None:
        if state is not self.state:
            log.debug("session state: %s (%s)", state.value, detail)
        self.state = state
        if self._on_state is not None:
            self._on_state(state, detail)

    def _spawn(self, coro: Any, name: str) -> asyncio.Task[Any]:
        task = asyncio.get_running_loop().create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("task %s failed", task.get_name(), exc_info=task.exception())


def _ice_server(spec: Mapping[str, Any]) -> RTCIceServer:
    return RTCIceServer(urls=spec["urls"], username=spec.get("username"), credential=spec.get("credential"))


def _prefer_codec(transceiver: Any, mime_type: str) -> None:
    """Put ``mime_type`` first in the offer; the other codecs stay as fallbacks (§12: H264 survives pause)."""
    caps = RTCRtpSender.getCapabilities("video")
    preferred = [c for c in caps.codecs if c.mimeType.lower() == mime_type.lower()]
    if not preferred:
        return
    others = [c for c in caps.codecs if c.mimeType.lower() != mime_type.lower()]
    transceiver.setCodecPreferences(preferred + others)


def initial_parameters_for(config: SessionConfig, state: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The ``initialParameters`` a session with ``config`` would send (for doctor and tests)."""
    return protocol.build_initial_parameters(
        config.pipeline_ids,
        input_mode=config.input_mode,
        prompts=config.prompts,
        denoising_step_list=config.denoising_step_list,
        manage_cache=config.manage_cache,
        state=state,
        extra=config.offer_extra,
    )
