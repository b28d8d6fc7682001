"""The Scope session's retry policy: when to try again and how long to wait (aioesphomeapi's reconnect logic).

:class:`ReconnectLogic` drives a :class:`Link` (one connection attempt at a time, :mod:`.connection`) from one
named task: open, watch until lost, close, wait, again, forever while the daemon runs.

- The wait is capped exponential backoff with jitter (:class:`Backoff`: 2, 4, 8, 16, 30, 30, ... s).
- While waiting it looks at Scope's health: a Scope that was unreachable and answers again, or a server that
  restarted (its start time changed), is rejoined at once instead of at the end of a 30 s wait.
- It gives up only on a fatal start-up error: before anything has worked, an error that cannot heal by waiting
  (wrong URL, not a Scope server, TLS, a bad setting). Once a session has worked, everything is retried.
- One WARNING when the session is lost (or unavailable at start-up), DEBUG for each failed attempt after that,
  one INFO when it is back. With ``wait_frames`` a session counts as back only once its first video frame came:
  a session that connects and gives no video is rebuilt with a WARNING (rate-limited), never "restored".
- Nothing unexpected ends it: an exception nobody foresaw (a library's surprise on what a server answered, a
  bug) is logged with its traceback once, then as rate-limited one-liners, and the next attempt follows.
- What is wrong now is state, not a log line: :attr:`ReconnectLogic.problem` says it while the session is down or
  gives no video, and is None again the moment the session is up (its warnings are tagged
  ``extra={"problem": ...}`` so the performer's view shows the state instead). ``last_error`` and
  ``last_error_at`` keep the newest reason as history.
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
from typing import Protocol, cast

from metadj_bridge.errors import MetaDJError, RateLimitedWarning, ScopeConnectionError, ScopeError
from metadj_bridge.lifecycle import cancel_and_wait
from metadj_bridge.scope.http_errors import exception_reason

__all__ = ["Backoff", "Link", "ReconnectLogic", "ReconnectState"]

log = logging.getLogger(__name__)

#: Marks a log record as describing the session's state (see :attr:`ReconnectLogic.problem`).
_PROBLEM = {"problem": "scope session"}


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
        wait_frames: bool = False,
    ) -> None:
        self._link = link
        self._backoff = backoff
        self._probe_interval = probe_interval
        self._fail_fast = fail_fast
        self._on_waiting = on_waiting
        self._name = name
        self.state = ReconnectState.IDLE
        self._last_error: str | None = None
        #: Monotonic time at which ``last_error`` was set (None while nothing went wrong).
        self.last_error_at: float | None = None
        self._lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None
        self._tries = 0
        self._ever_connected = False
        self._lost_since: float | None = None
        #: The fatal start-up error the policy ended with (it is raised from the task).
        self._fatal: MetaDJError | None = None
        self._traceback_logged = False
        # Tagged as state: the status view shows ``problem`` while it lasts, not these lines after it.
        tagged = cast(logging.Logger, logging.LoggerAdapter(log, _PROBLEM))
        self._surprises = RateLimitedWarning(tagged, "Scope session: more unexpected errors (retrying)",
                                             interval=60.0)
        #: Whether a session is "up" only once the link reports its first frame (:meth:`frames_flowing`).
        self._wait_frames = wait_frames
        #: Whether the current session has been announced (INFO: streaming, restored).
        self._announced = False
        self._no_video = RateLimitedWarning(tagged, "Scope sessions rebuilt because no video came", interval=60.0)

    @property
    def last_error(self) -> str | None:
        """Why the last attempt failed or the last session was lost (None while nothing went wrong). History: it
        stays after the session is back; :attr:`problem` is what is wrong now."""
        return self._last_error

    @last_error.setter
    def last_error(self, reason: str | None) -> None:
        self._last_error = reason
        self.last_error_at = time.monotonic() if reason is not None else None

    @property
    def up(self) -> bool:
        """A session is connected and announced (with ``wait_frames``: its video flows)."""
        return self.state is ReconnectState.CONNECTED and self._announced

    @property
    def problem(self) -> str | None:
        """What is wrong with the session now, for the performer's status; None while it is up, before anything
        failed, and once stopped."""
        if self.up or self.stopped or self._last_error is None:
            return None
        verb = "lost" if self._ever_connected else "unavailable"
        return f"Scope session {verb}: {self._last_error}; retrying for as long as it takes"

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
        await self._close_link()

    # ------------------------------------------------------------------ the loop

    async def _run(self) -> None:
        """Rounds until stopped. Only a fatal start-up error ends it early; anything unexpected (a bug, a library's
        surprise on a server's answer) is logged with its traceback once and the next round follows a backoff."""
        while not self.stopped:
            try:
                await self._round()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if exc is self._fatal:
                    raise
                self.last_error = self._surprise(exc, "keeping the Scope session")
                self.state = ReconnectState.WAITING
                self._on_waiting(self.last_error)
                await asyncio.sleep(self._backoff.delay(self._tries))
                self._tries += 1

    async def _round(self) -> None:
        """One attempt: open, watch until lost, close; then wait for the next one."""
        unreachable = True  # a lost session: the server may be restarting; look for it while waiting
        self._announced = False
        try:
            async with self._lock:
                self.state = ReconnectState.CONNECTING
                await self._link.open()
            self.state = ReconnectState.CONNECTED
            self._connected()
            reason = await self._link.watch()
        except asyncio.CancelledError:
            raise
        except ScopeError as exc:
            reason = exception_reason(exc)
            unreachable = isinstance(exc, ScopeConnectionError)
            if not self._ever_connected and self._fail_fast and not exc.transient:
                await self._give_up(exc)
        except MetaDJError as exc:  # a setting Scope refuses, say: waiting does not fix it
            reason = exception_reason(exc)
            unreachable = False
            if not self._ever_connected:
                await self._give_up(exc)
        except Exception as exc:  # an aiortc or network surprise: heal, and keep the traceback (once)
            reason = self._surprise(exc, "connecting to Scope")
            unreachable = False
        self.last_error = reason
        # A session that connected but never gave a frame: not a loss that heals at once when Scope answers.
        no_video = self.state is ReconnectState.CONNECTED and not self._announced
        session_id = self._link.session_id
        await self._close_link()
        if self.stopped:
            return
        delay = self._backoff.delay(self._tries)
        self._tries += 1
        if no_video:
            unreachable = False
            self._lost_since = self._lost_since or time.monotonic()
            self._no_video.note(f"session {session_id or '?'}: {reason}; rebuilding it in {delay:.1f} s")
        elif self._lost_since is None:
            self._lost_since = time.monotonic()
            verb = "lost" if self._ever_connected else "unavailable"
            log.warning("Scope session %s: %s; retrying in %.1f s, and for as long as it takes", verb, reason, delay,
                        extra=_PROBLEM)
        else:
            log.debug("Scope session attempt %d failed: %s; next in %.1f s", self._tries, reason, delay)
        self.state = ReconnectState.WAITING
        self._on_waiting(reason)
        await self._wait_to_retry(delay, probe=unreachable)

    def _connected(self) -> None:
        self._ever_connected = True
        if self._wait_frames and not self._announced:
            log.debug("Scope session %s connected; waiting for its first video frame", self._link.session_id)
            return
        self._announce()

    def frames_flowing(self) -> None:
        """The link's current session gave its first video frame: only now is it up (with ``wait_frames``)."""
        if self._wait_frames and not self._announced and self.state is ReconnectState.CONNECTED:
            self._announce()

    def _announce(self) -> None:
        """The session is up: say so once (streaming, or restored after a loss) and start the backoff afresh."""
        self._announced = True
        if self._lost_since is not None:
            log.info("Scope session restored after %.1f s (session %s)", time.monotonic() - self._lost_since,
                     self._link.session_id)
            self._lost_since = None
        else:
            log.info("Scope session %s streaming from %s", self._link.session_id, self._link.where)
        self._tries = 0

    async def _give_up(self, exc: MetaDJError) -> None:
        """A fatal start-up error: tear down and end the policy with it."""
        self.last_error = exception_reason(exc)
        self._fatal = exc
        await self._close_link()
        raise exc

    async def _close_link(self) -> None:
        """Tear the link down; a link that fails at that is logged, never the end of the policy."""
        try:
            async with self._lock:
                await self._link.close()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self._surprise(exc, "closing the Scope session")

    def _surprise(self, exc: BaseException, doing: str) -> str:
        """An exception nobody expected: its traceback the first time, then rate-limited one-liners. Returns it as
        a reason (never empty)."""
        reason = exception_reason(exc)
        if not self._traceback_logged:
            self._traceback_logged = True
            log.error("Scope session: unexpected %s while %s; retrying (the traceback is logged once)", reason, doing,
                      exc_info=exc, extra=_PROBLEM)
            self._surprises.mark()
        else:
            self._surprises.note(f"{reason} while {doing}")
        return reason

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
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # a surprise from the health check: as good as no answer
                self._surprise(exc, "looking at Scope's health")
                probe = True
                continue
            if probe or start != known_start:
                log.debug("Scope answers again (or restarted); reconnecting now")
                return
