"""One self-healing WebRTC session with a Scope server (scope-api.md §5-7, §12): what callers use.

:class:`ScopeSession` puts two parts together: :class:`~.connection.ScopeConnection` makes one connection
attempt at a time (health, pipeline, ICE servers, offer, frames, the silent-video watchdog) and
:class:`~.reconnect.ReconnectLogic` decides when to make the next (capped exponential backoff, a restarted
server rejoined at once, giving up only on a fatal start-up error). On any loss the session is torn down and
rebuilt, forever while the daemon runs; the last desired parameter state goes into the new session's
``initialParameters``, so a rebuilt session starts where the old one was.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping
from typing import Any

from metadj_bridge.errors import ScopeSessionError
from metadj_bridge.lifecycle import Lifecycle
from metadj_bridge.scope.api import HealthInfo, ScopeClient, redact_url
from metadj_bridge.scope.connection import (
    FrameListener,
    ScopeConnection,
    SessionConfig,
    SessionState,
    initial_parameters_for,
)
from metadj_bridge.scope.reconnect import Backoff, ReconnectLogic
from metadj_bridge.scope.sender import ParameterSender

__all__ = [
    "Backoff",
    "FrameListener",
    "ScopeSession",
    "SessionConfig",
    "SessionState",
    "initial_parameters_for",
]

log = logging.getLogger(__name__)


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
        self.client = client or ScopeClient(config.url, deadline=config.http_deadline)
        self._owns_client = client is None
        self.state = SessionState.IDLE
        self._on_state = on_state
        self._life = Lifecycle("Scope session")
        #: The attempt in hand: its peer connection, frames and counters.
        self.connection = ScopeConnection(config, sender, self.client, on_state=self._set_state)
        #: The retry policy driving ``connection``.
        self.reconnect = ReconnectLogic(
            self.connection,
            backoff=config.backoff,
            probe_interval=config.reconnect_probe_interval,
            fail_fast=config.fail_fast_on_permanent_errors,
            on_waiting=lambda reason: self._set_state(SessionState.RECONNECTING, reason),
            wait_frames=True,
        )
        self.connection.on_first_frame = self.reconnect.frames_flowing

    # ------------------------------------------------------------------ what the attempts found

    @property
    def health(self) -> HealthInfo | None:
        return self.connection.health

    @property
    def session_id(self) -> str | None:
        return self.connection.session_id

    @property
    def frames_received(self) -> int:
        return self.connection.frames_received

    @property
    def sessions_started(self) -> int:
        return self.connection.sessions_started

    @property
    def load_progress(self) -> str | None:
        return self.connection.load_progress

    @property
    def last_error(self) -> str | None:
        """Why the last attempt failed or the last session was lost; None again the moment a session streams with
        frames (the old reason is then :attr:`previous_error`, and stays in the log)."""
        return None if self.reconnect.up else self.reconnect.last_error

    @property
    def previous_error(self) -> tuple[str, float] | None:
        """The reason the session was last lost or refused and its monotonic time, once it streams again (history,
        not the live state); None while it is down (see :attr:`last_error`) or when nothing ever went wrong."""
        reason, at = self.reconnect.last_error, self.reconnect.last_error_at
        if not self.reconnect.up or reason is None or at is None:
            return None
        return reason, at

    def problems(self) -> list[str]:
        """What is wrong with the session now, in a performer's words (the status view); empty while it streams."""
        problem = self.reconnect.problem
        return [problem] if problem else []

    @property
    def supervisor(self) -> asyncio.Task[None] | None:
        """The task that keeps the session alive: ends when closed, raises a fatal start-up error."""
        return self.reconnect.task

    # ------------------------------------------------------------------ public

    def add_frame_listener(self, listener: FrameListener) -> None:
        """``listener(frame)`` runs on the event loop for every decoded frame; keep it quick."""
        self.connection.add_frame_listener(listener)

    async def start(self) -> None:
        """Start the supervisor. Returns at once; use ``wait_streaming()`` to wait for video."""
        if self._life.begin():
            self.sender.start()
            self.reconnect.start()

    async def wait_streaming(self, timeout: float | None = None) -> None:  # noqa: ASYNC109 - a deadline of the API
        """Wait until a session is up with its data channel open; re-raises a fatal startup error."""
        supervisor = self.supervisor
        assert supervisor is not None, "start() first"
        waiter = asyncio.ensure_future(self.connection.streaming.wait())
        try:
            done, _ = await asyncio.wait({waiter, supervisor}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        finally:
            waiter.cancel()
        if supervisor in done:
            supervisor.result()  # raises the fatal error
            raise ScopeSessionError("the Scope session stopped")
        if not done:
            raise ScopeSessionError(f"no Scope session after {timeout:g} s (last error: {self.last_error or 'none'})")

    def add_local_candidate(self, candidate: Mapping[str, Any]) -> None:
        """Trickle a late local ICE candidate: queued until the answer brings a session id, then PATCHed.

        aiortc puts every candidate it gathers into the offer, so with aiortc this only carries candidates
        learnt after the offer (none today); the path exists for clients and networks that trickle.
        """
        self.connection.add_local_candidate(candidate)

    def status(self) -> dict[str, Any]:
        now = time.monotonic()
        stats = self.sender.stats()
        health = self.health
        out: dict[str, Any] = {
            "state": self.state.value,
            "url": redact_url(self.config.url),
            "server_version": health.version if health else None,
            "emulator": health.emulator if health else False,
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
        previous = self.previous_error
        out["previous_error"] = previous[0] if previous else None
        out["previous_error_ago_s"] = round(now - previous[1], 1) if previous else None
        return out

    async def aclose(self) -> None:
        """Stop healing, DELETE the session on the server, close the peer. Safe to call twice."""
        if not self._life.end():
            return
        await self.reconnect.stop()
        await self.sender.aclose()
        if self._owns_client:
            await self.client.aclose()
        self._set_state(SessionState.CLOSED, "closed")

    def _set_state(self, state: SessionState, detail: str) -> None:
        if state is not self.state:
            log.debug("session state: %s (%s)", state.value, detail)
        self.state = state
        if self._on_state is not None:
            self._on_state(state, detail)
