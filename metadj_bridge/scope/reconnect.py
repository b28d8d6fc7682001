"""The Scope session's retry policy: when to try again and how long to wait (aioesphomeapi's reconnect logic).

:class:`ReconnectLogic` drives a :class:`Link` (one connection attempt at a time, :mod:`.connection`) from one
named task: open, watch until lost, close, wait, again, forever while the daemon runs.

- The wait is capped exponential backoff with jitter (:class:`Backoff`: 2, 4, 8, 16, 30, 30, ... s).
- While waiting it looks at Scope's health: a Scope that was unreachable and answers again, or a server that
  restarted (its start time changed), is rejoined at once instead of at the end of a 30 s wait.
- It gives up only on a fatal start-up error: before anything has worked, an error that cannot heal by waiting
  (wrong URL, not a Scope server, TLS, a bad setting). Once a session has worked, everything is retried.
- One WARNING when the session is lost (or unavailable at start-up), DEBUG for each failed attempt after that,
  one INFO when it is back.
- A lock keeps opening and tearing down one at a time, so ``stop()`` never closes a link half-way through an
  attempt's own teardown.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from metadj_bridge.errors import MetaDJError, ScopeConnectionError, ScopeError
from metadj_bridge.lifecycle import cancel_and_wait

__all__ = ["Backoff", "Link", "ReconnectLogic", "ReconnectState"]

log = logging.getLogger(__name__)


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


class ReconnectState(enum.Enum):
    IDLE = "idle"
    #: An attempt is opening a session.
    CONNECTING = "connecting"
    #: A session works; the link watches it.
    CONNECTED = "connected"
    #: Lost: waiting out the backoff (or for Scope to answer again).
    WAITING = "waiting"
    STOPPED = "stopped"


class Link(Protocol):
    """One connection attempt at a time, as the policy drives it (:class:`~.connection.ScopeConnection`)."""

    @property
    def session_id(self) -> str | None: ...

    @property
    def where(self) -> str:
        """The server, for logs (secrets removed)."""
        ...

    @property
    def server_start(self) -> float | None:
        """The server start time seen last (None before the first health check)."""
        ...

    async def open(self) -> None:
        """Make one attempt; returns once a session streams, raises why it could not."""

    async def watch(self) -> str:
        """Wait until the open session is lost; returns why."""
        ...

    async def close(self) -> None:
        """Tear the current session down (best effort, never raises)."""

    async def probe(self, within: float) -> float:
        """The server's start time now; ScopeError or TimeoutError when it does not answer ``within`` s."""
        ...


class ReconnectLogic:
    """Keeps ``link`` connected: retries with backoff and rejoins a restarted server at once.

    ``on_waiting(reason)`` is told each time the policy starts waiting for the next attempt.
    """

    def __init__(
        self,
        link: Link,
        *,
        backoff: Backoff,
        probe_interval: float,
        fail_fast: bool,
        on_waiting: Callable[[str], None],
        name: str = "scope-session",
    ) -> None:
        self._link = link
        self._backoff = backoff
        self._probe_interval = probe_interval
        self._fail_fast = fail_fast
        self._on_waiting = on_waiting
        self._name = name
        self.state = ReconnectState.IDLE
        #: Why the last attempt failed or the last session was lost (None while nothing went wrong).
        self.last_error: str | None = None
        self._lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None
        self._tries = 0

    @property
    def task(self) -> asyncio.Task[None] | None:
        """The policy's task: ends when stopped; raises a fatal start-up error."""
        return self._task

    @property
    def stopped(self) -> bool:
        return self.state is ReconnectState.STOPPED

    def start(self) -> None:
        if self._task is None and not self.stopped:
            self._task = asyncio.get_running_loop().create_task(self._run(), name=self._name)

    async def stop(self) -> None:
        """Stop retrying and tear the link down. Safe to call twice."""
        self.state = ReconnectState.STOPPED
        await cancel_and_wait(self._task)
        async with self._lock:
            await self._link.close()

    # ------------------------------------------------------------------ the loop

    async def _run(self) -> None:
        ever_connected = False
        lost_since: float | None = None
        while not self.stopped:
            unreachable = True  # a lost session: the server may be restarting; look for it while waiting
            try:
                async with self._lock:
                    self.state = ReconnectState.CONNECTING
                    await self._link.open()
                self.state = ReconnectState.CONNECTED
                ever_connected = True
                if lost_since is not None:
                    log.info(
                        "Scope session restored after %.1f s (session %s)",
                        time.monotonic() - lost_since,
                        self._link.session_id,
                    )
                    lost_since = None
                else:
                    log.info("Scope session %s streaming from %s", self._link.session_id, self._link.where)
                self._tries = 0
                reason = await self._link.watch()
            except asyncio.CancelledError:
                raise
            except ScopeError as exc:
                reason = str(exc)
                unreachable = isinstance(exc, ScopeConnectionError)
                if not ever_connected and self._fail_fast and not exc.transient:
                    await self._give_up(reason)
                    raise
            except MetaDJError as exc:  # a setting Scope refuses, say: waiting does not fix it
                reason = str(exc)
                unreachable = False
                if not ever_connected:
                    await self._give_up(reason)
                    raise
            except Exception as exc:  # an aiortc or network surprise: heal, and keep the traceback
                log.debug("Scope session error", exc_info=True)
                reason = f"{type(exc).__name__}: {exc}"
                unreachable = False
            self.last_error = reason
            async with self._lock:
                await self._link.close()
            if self.stopped:
                return
            delay = self._backoff.delay(self._tries)
            self._tries += 1
            if lost_since is None:
                lost_since = time.monotonic()
                verb = "lost" if ever_connected else "unavailable"
                log.warning(
                    "Scope session %s: %s; retrying in %.1f s, and for as long as it takes", verb, reason, delay
                )
            else:
                log.debug("Scope session attempt %d failed: %s; next in %.1f s", self._tries, reason, delay)
            self.state = ReconnectState.WAITING
            self._on_waiting(reason)
            await self._wait_to_retry(delay, probe=unreachable)

    async def _give_up(self, reason: str) -> None:
        self.last_error = reason
        async with self._lock:
            await self._link.close()

    async def _wait_to_retry(self, delay: float, *, probe: bool) -> None:
        """Wait out the backoff, looking at Scope's health meanwhile: retry at once when a Scope that was
        unreachable answers again, or when the server restarted (its start time changed: whatever failed may be
        gone). A restarted server is back in the show within a probe interval, not at the end of a 30 s wait. A
        failed load on a server that did not restart waits out its backoff. A health check costs Scope almost
        nothing."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + delay
        interval = self._probe_interval
        known_start = self._link.server_start
        while not self.stopped:
            remaining = deadline - loop.time()
            if remaining <= 0:
                return
            if interval <= 0:
                await asyncio.sleep(remaining)
                return
            await asyncio.sleep(min(interval, remaining))
            try:
                start = await self._link.probe(max(0.5, interval))
            except (ScopeError, TimeoutError):
                probe = True  # unreachable now: retry as soon as it answers
                continue
            if probe or start != known_start:
                log.debug("Scope answers again (or restarted); reconnecting now")
                return
