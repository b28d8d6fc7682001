"""One connection attempt with a Scope server at a time (scope-api.md §5-7, §12).

An attempt (:meth:`ScopeConnection.open`): Scope's health, what it offers (a pipeline it lacks or a mode the
pipeline cannot play is refused in one line before loading, :mod:`.offer`), the pipeline loaded, ICE servers,
the sessions we left on the server DELETEd, then the peer connection with its ``parameters`` data channel, the
offer (its ``initialParameters`` carry the sender's last desired state, so a rebuilt session starts where the old one
was) and the wait until WebRTC connects. :meth:`~ScopeConnection.watch` then receives frames and returns why
the session has to be rebuilt: the peer or the data channel closed, the video track ended, Scope restarted or
stopped answering, the silent-video watchdog (connected, but no frame for a while; or the bridge frozen that long).
:meth:`~ScopeConnection.close` tears it down. When to try again is not decided here: :mod:`.reconnect` does.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, cast

import av
from aiortc import (
    MediaStreamTrack,
    RTCConfiguration,
    RTCDataChannel,
    RTCPeerConnection,
    RTCRtpSender,
    RTCRtpTransceiver,
    RTCSessionDescription,
)
from aiortc.mediastreams import MediaStreamError

from metadj_bridge import parameters
from metadj_bridge.errors import ConfigError, RateLimitedWarning, ScopeError, ScopeHTTPError, ScopeSessionError
from metadj_bridge.lifecycle import AwayWatch, TaskGroupSet
from metadj_bridge.parameters import ParameterSchema
from metadj_bridge.scope import protocol
from metadj_bridge.scope.api import DEFAULT_DEADLINE, HealthInfo, ScopeClient, redact_url
from metadj_bridge.scope.dropwatch import watch_drops
from metadj_bridge.scope.http_errors import exception_reason
from metadj_bridge.scope.ice import usable_ice_servers
from metadj_bridge.scope.offer import ServerOffer, check_session, read_offer_or_none
from metadj_bridge.scope.peer_guard import (
    UndecodedVideo,
    check_answer_sends_video,
    failure_reason,
    guard_data_channel,
    silent_video,
    video_packets,
)
from metadj_bridge.scope.reconnect import Backoff
from metadj_bridge.scope.sender import ParameterSender
from metadj_bridge.scope.session_end import scope_dropped

log = logging.getLogger(__name__)

#: ``listener(frame)`` gets every decoded frame.
FrameListener = Callable[[av.VideoFrame], None]


class SessionState(enum.Enum):
    IDLE = "idle"
    CONNECTING = "connecting"
    LOADING = "loading pipeline"
    NEGOTIATING = "negotiating"
    STREAMING = "streaming"
    RECONNECTING = "reconnecting"
    CLOSED = "closed"


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
    #: Once the peer connection is up, the data channel has this long (plus six round trips) to open. Its SCTP
    #: handshake resends a lost packet only after 3 s, so a handshake lost twice would hold the session for the
    #: whole ``connect_timeout``; a new session is quicker (seen after restarts on a loaded machine).
    channel_open_timeout: float = 4.0
    load_timeout: float = 300.0
    health_interval: float = 2.0
    #: The longest one HTTP exchange with Scope may take (a server that trickles its answer is given up on then).
    http_deadline: float = DEFAULT_DEADLINE
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


class ScopeConnection:
    """Opens, watches and closes one WebRTC session with Scope at a time; the counters span every attempt.

    ``on_state(state, detail)`` hears each step of an attempt. The caller decides when to try again.
    """

    def __init__(
        self,
        config: SessionConfig,
        sender: ParameterSender,
        client: ScopeClient,
        *,
        on_state: Callable[[SessionState, str], None],
    ) -> None:
        self.config = config
        self.sender = sender
        self.client = client
        self.health: HealthInfo | None = None
        self.session_id: str | None = None
        self.frames_received = 0
        self.sessions_started = 0
        self.load_progress: str | None = None
        #: Monotonic time of the newest frame of this session (0.0 before its first).
        self.last_frame = 0.0
        #: Set while a session streams with its data channel open.
        self.streaming = asyncio.Event()
        self._on_state = on_state
        self._listeners: list[FrameListener] = []
        self._listener_warning = RateLimitedWarning(log, "frame listener errors")
        self._ice_warning = RateLimitedWarning(log, "ICE server URLs aiortc cannot read, left out")
        self._message_warning = RateLimitedWarning(log, "data-channel messages from Scope dropped")
        self._tasks = TaskGroupSet("scope-connection", log)
        self._pc: RTCPeerConnection | None = None
        self._channel: RTCDataChannel | None = None
        self._lost: asyncio.Future[str] | None = None
        self._connected_at = 0.0
        self._pending_candidates: list[dict[str, Any]] = []
        self._stale_session_ids: list[str] = []
        #: Told of the first frame of each session (the retry policy counts a session as up only then).
        self.on_first_frame: Callable[[], None] | None = None
        #: Told of what the server offers (None: it does not say) on each attempt, once the offer is checked.
        self.on_offer: Callable[[ServerOffer | None], None] | None = None

    @property
    def pc(self) -> RTCPeerConnection | None:
        """The current peer connection (None between attempts)."""
        return self._pc

    @property
    def where(self) -> str:
        return redact_url(self.config.url)

    @property
    def server_start(self) -> float | None:
        return self.health.server_start_time if self.health is not None else None

    def add_frame_listener(self, listener: FrameListener) -> None:
        self._listeners.append(listener)

    def add_local_candidate(self, candidate: Mapping[str, Any]) -> None:
        """Queue a late local ICE candidate; PATCHed once the answer brings a session id."""
        cand = dict(candidate)
        if not cand.get("candidate"):
            return  # Scope answers 404 to an empty end-of-candidates marker (§5)
        self._pending_candidates.append(cand)
        if self.session_id is not None:
            self._tasks.spawn(self._flush_candidates(), "trickle")

    async def probe(self, within: float) -> float:
        health = await asyncio.wait_for(self.client.health(), timeout=within)
        return health.server_start_time

    # ------------------------------------------------------------------ one attempt

    async def open(self) -> None:
        cfg = self.config
        self._on_state(SessionState.CONNECTING, "checking Scope's health")
        health = await self.client.health()
        if self.health is not None and health.server_start_time != self.health.server_start_time:
            log.info("Scope restarted (server version %s)", health.version)
        self.health = health

        # What the server offers, before loading: a pipeline it lacks or a mode the pipeline cannot play is a
        # one-line ConfigError now, not a load retried for ever or a session without frames.
        offer = await read_offer_or_none(self.client)
        check_session(offer, cfg.pipeline_ids, cfg.input_mode)
        if self.on_offer is not None:
            self.on_offer(offer)

        self._on_state(SessionState.LOADING, f"loading {cfg.pipeline_ids[0]}")
        await self.client.ensure_pipeline(
            cfg.pipeline_ids, cfg.load_params, timeout=cfg.load_timeout, on_progress=self._progress
        )
        self.load_progress = "loaded"
        if offer is not None:
            schemas = {pid: entry.schema for pid, entry in offer.pipelines.items()}
            self.sender.set_schema(ParameterSchema.from_server(cfg.pipeline_ids[-1], schemas))
            offered = offer.get(cfg.pipeline_ids[-1])
            self.sender.set_chunk_frames(offered.chunk_frames if offered is not None else None)  # the server's word

        ice = cfg.ice_servers if cfg.ice_servers is not None else await self.client.ice_servers()
        await self._delete_stale_sessions()

        self._on_state(SessionState.NEGOTIATING, "negotiating WebRTC")
        pc = RTCPeerConnection(RTCConfiguration(iceServers=usable_ice_servers(ice, self._ice_warning)))
        self._pc = pc
        self._lost = asyncio.get_running_loop().create_future()

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
        guard_data_channel(pc, self.where, self._message_warning)

        @pc.on("track")
        def _on_track(track: MediaStreamTrack) -> None:
            if track.kind == "video":
                self._tasks.spawn(self._receive(pc, track), "video-in")

        @pc.on("connectionstatechange")
        def _on_state_change() -> None:
            state = pc.connectionState
            log.debug("peer connection state: %s", state)
            if state in ("failed", "closed") and pc is self._pc:
                self._mark_lost(failure_reason(pc) if state == "failed" else f"WebRTC connection {state}")

        @channel.on("close")
        def _on_channel_close() -> None:
            if channel is self._channel:
                self._mark_lost("data channel closed")

        try:
            await pc.setLocalDescription(await pc.createOffer())
        except Exception as exc:  # an ICE server entry aioice cannot use (it comes from Scope or the profile)
            raise ScopeSessionError(
                f"could not make the WebRTC offer ({exception_reason(exc)}); check the ICE servers "
                f"{[s.get('urls') for s in ice]} that Scope at {self.where} hands out"
            ) from exc
        snapshot = self.sender.snapshot()
        initial = initial_parameters_for(cfg, snapshot)
        local = pc.localDescription
        answer = await self.client.offer(local.sdp, local.type, initial)
        self.session_id = answer.session_id
        self.sessions_started += 1
        await self._take_answer(pc, answer.sdp, answer.type)
        check_answer_sends_video(transceiver, self.where)
        if self._pending_candidates:
            await self._flush_candidates()

        await self._wait_connected(pc, channel)
        self._connected_at = time.monotonic()
        self.last_frame = 0.0
        self.sender.attach(channel, snapshot)
        self._tasks.spawn(watch_drops(self.client, self.sender), "drop-watch")  # Scope's log: messages it dropped
        self._on_state(SessionState.STREAMING, "streaming")
        self.streaming.set()

    async def _take_answer(self, pc: RTCPeerConnection, sdp: str, sdp_type: str) -> None:
        """Scope's SDP answer into the peer connection; an answer aiortc cannot use (its parser raises ValueError,
        AssertionError, ...) is a ScopeSessionError that names what was wrong."""
        try:
            await pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type=sdp_type))
        except Exception as exc:  # the answer is input from outside: any failure to take it means "try again"
            raise ScopeSessionError(
                f"Scope at {self.where} answered the WebRTC offer with an SDP answer that cannot be used "
                f"({exception_reason(exc)}); a new session is tried"
            ) from exc

    async def _wait_connected(self, pc: RTCPeerConnection, channel: RTCDataChannel) -> None:
        deadline = time.monotonic() + self.config.connect_timeout
        channel_limit = self.config.channel_open_timeout + 6 * self.sender.pacer.rtt
        connected_at: float | None = None
        while not (pc.connectionState == "connected" and channel.readyState == "open"):
            if self._lost is not None and self._lost.done():
                raise ScopeSessionError(f"WebRTC setup failed: {self._lost.result()}")
            now = time.monotonic()
            if pc.connectionState == "connected" and connected_at is None:
                connected_at = now
            if connected_at is not None and now - connected_at > channel_limit:
                raise ScopeSessionError(
                    f"the data channel did not open within {channel_limit:.1f} s of the WebRTC connection (its "
                    "SCTP handshake stalled); a new session is tried"
                )
            if now > deadline:
                raise ScopeSessionError(
                    f"WebRTC did not connect within {self.config.connect_timeout:g} s (connection "
                    f"{pc.connectionState}, ICE {pc.iceConnectionState}, data channel {channel.readyState}); "
                    "for a remote Scope this usually means no usable ICE/TURN route"
                )
            await asyncio.sleep(0.02)

    async def watch(self) -> str:
        """Return why the session has to be rebuilt."""
        cfg = self.config
        assert self._lost is not None
        next_health = time.monotonic() + cfg.health_interval
        first_limit = max(cfg.no_frame_timeout, cfg.first_frame_timeout)
        undecoded, away = UndecodedVideo(), AwayWatch(0.25)
        while True:
            with contextlib.suppress(TimeoutError):
                return await asyncio.wait_for(asyncio.shield(self._lost), timeout=0.25)
            now, frozen = time.monotonic(), away.look()
            if frozen is not None and frozen >= cfg.no_frame_timeout:
                return f"the bridge was frozen for {frozen:.0f} s (the computer slept?)"
            if frozen is not None:  # no frame could come meanwhile, whatever Scope did: the timers start again
                self._connected_at, self.last_frame = now, now if self.last_frame else 0.0
            broken = undecoded.sample(await video_packets(self._pc), self.last_frame, now)
            if self.last_frame:
                if now - self.last_frame > cfg.no_frame_timeout:
                    return silent_video(f"no video frame for {cfg.no_frame_timeout:g} s", broken)
            elif now - self._connected_at > first_limit:
                return silent_video(f"no first video frame for {first_limit:g} s", broken,
                                    "(is pipeline_ids right, and is the pipeline producing output?)")
            if now >= next_health:
                next_health = now + cfg.health_interval
                asked = time.monotonic()
                within = max(1.0, cfg.health_interval)
                try:
                    health = await asyncio.wait_for(self.client.health(), timeout=within)
                except TimeoutError:
                    return f"Scope stopped answering (no health answer within {within:g} s)"
                except ScopeError as exc:
                    return f"Scope stopped answering ({exception_reason(exc)})"
                self.sender.pacer.set_rtt(time.monotonic() - asked)
                assert self.health is not None
                if health.server_start_time != self.health.server_start_time:
                    return "Scope restarted (server_start_time changed)"

    async def _receive(self, pc: RTCPeerConnection, track: MediaStreamTrack) -> None:
        try:
            while True:
                frame = cast(av.VideoFrame, await track.recv())  # a video track's frames
                now = time.monotonic()
                self.frames_received += 1
                first, self.last_frame = not self.last_frame, now
                if first and pc is self._pc and self.on_first_frame is not None:
                    self.on_first_frame()
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

    async def close(self) -> None:
        """Close the current peer, then DELETE its session unless Scope dropped it by itself (best effort).

        A DELETE of a live session makes Scope 0.2.4 log "Attempted to remove non-existent session" (see
        :mod:`.session_end`); closing the peer ends it on Scope's side without that.
        """
        self.streaming.clear()
        self.sender.detach()
        pc, self._pc = self._pc, None
        self._channel = None
        await self._tasks.aclose()  # the frame reader and any trickle PATCH of this session
        if pc is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(pc.close(), timeout=5)
        session_id, self.session_id = self.session_id, None
        self._pending_candidates.clear()
        if session_id is not None and not (pc is not None and await scope_dropped(self.client, session_id)):
            self._stale_session_ids.append(session_id)
        await self._delete_stale_sessions()

    # ------------------------------------------------------------------ server housekeeping

    async def _delete_stale_sessions(self) -> None:
        """DELETE every session we left on the server, so exactly one of ours ever exists there."""
        while self._stale_session_ids:
            session_id = self._stale_session_ids[0]
            try:
                await asyncio.wait_for(self.client.delete_session(session_id), timeout=3)
            except (ScopeError, TimeoutError) as exc:
                # Server gone: it will have dropped the session itself; a restart forgets it anyway.
                log.debug("could not DELETE session %s: %s", session_id, exception_reason(exc))
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
        self._on_state(SessionState.LOADING, message)


def _prefer_codec(transceiver: RTCRtpTransceiver, mime_type: str) -> None:
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
