"""How every long-running part starts, runs its background tasks and stops: one set of mechanics for all.

- :class:`Lifecycle`: NEW -> RUNNING -> CLOSED. ``begin()`` says whether ``start()`` has work to do (a second
  start is harmless, a start after close is refused, as httpx's client does); ``end()`` says whether ``aclose()``
  has (closing twice is harmless).
- :class:`TaskGroupSet`: named background tasks kept referenced, a failure logged with its traceback, and one
  ``aclose()`` that cancels and waits for them all.
- :func:`cancel_and_wait`: stop one task and wait until it has stopped, without swallowing the caller's own
  cancellation.
- :func:`supervised`: run a long-running part again when it fails, with a growing pause, while the others go on.
- :func:`stop_signals`: SIGINT and SIGTERM end a command cleanly, SIGHUP reloads (POSIX); on Windows, where the
  loop cannot take signal handlers, Ctrl+C arrives as KeyboardInterrupt instead.
- :class:`AwayWatch`: was the process away between two looks (frozen, or the computer asleep), and for how long.

Ground floor: imports nothing of the project but :mod:`metadj_bridge.errors`.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import signal
import sys
import time
from collections.abc import Awaitable, Callable, Coroutine, Iterator
from typing import Any, TypeVar

from metadj_bridge.errors import ClosedError, RateLimitedWarning

__all__ = ["AwayWatch", "ClosedError", "Lifecycle", "State", "TaskGroupSet", "cancel_and_wait", "sleep_clock",
           "stop_signals", "supervised"]

log = logging.getLogger(__name__)

T = TypeVar("T")


class State(enum.Enum):
    NEW = "new"
    RUNNING = "running"
    CLOSED = "closed"


class Lifecycle:
    """The state of one part. ``what`` names it in the error a start after close raises."""

    __slots__ = ("state", "what")

    def __init__(self, what: str) -> None:
        self.what = what
        self.state = State.NEW

    @property
    def running(self) -> bool:
        return self.state is State.RUNNING

    @property
    def closed(self) -> bool:
        return self.state is State.CLOSED

    def begin(self) -> bool:
        """True when a ``start()`` should open things now; False when already running. Raises once closed."""
        if self.state is State.CLOSED:
            raise ClosedError(f"this {self.what} is closed; make a new one")
        if self.state is State.RUNNING:
            return False
        self.state = State.RUNNING
        return True

    def failed(self) -> None:
        """The start just begun did not open: the part is new again (a later ``start()`` tries again)."""
        if self.state is State.RUNNING:
            self.state = State.NEW

    @contextlib.contextmanager
    def opening(self) -> Iterator[None]:
        """Around a start's opening work: if it raises, the part is new again (:meth:`failed`) and it re-raises."""
        try:
            yield
        except BaseException:
            self.failed()
            raise

    def end(self) -> bool:
        """True the first time (``aclose()`` has work to do), False after."""
        if self.state is State.CLOSED:
            return False
        self.state = State.CLOSED
        return True


async def cancel_and_wait(task: asyncio.Future[Any] | None) -> None:
    """Cancel ``task`` and wait until it has finished; its own exception or cancellation is not raised here.

    If the caller itself is cancelled while waiting, that cancellation propagates (the task is still
    cancelled).
    """
    if task is None or task.done():
        if task is not None and not task.cancelled():
            task.exception()  # retrieved: no "exception was never retrieved" warning
        return
    task.cancel()
    try:
        await asyncio.wait({task})
    finally:
        if task.done() and not task.cancelled():
            task.exception()


class TaskGroupSet:
    """Background tasks of one part: named, referenced until done, failures logged, cancelled together.

    Unlike :class:`asyncio.TaskGroup`, one task failing does not stop the others: a part's helpers (a
    reader, a watchdog, a timer) each end on their own.
    """

    def __init__(self, owner: str, logger: logging.Logger | logging.LoggerAdapter[Any] | None = None) -> None:
        self.owner = owner
        self._log: logging.Logger | logging.LoggerAdapter[Any] = logger or log
        self._tasks: set[asyncio.Task[Any]] = set()

    def __len__(self) -> int:
        return len(self._tasks)

    def __iter__(self) -> Iterator[asyncio.Task[Any]]:
        return iter(list(self._tasks))

    def spawn(self, coro: Coroutine[Any, Any, T], name: str) -> asyncio.Task[T]:
        task = asyncio.get_running_loop().create_task(coro, name=f"{self.owner}:{name}")
        self._tasks.add(task)
        task.add_done_callback(self._done)
        return task

    def _done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if task.cancelled():
            return
        exc = task.exception()
        if exc is not None:
            self._log.error("%s: background task %s failed", self.owner, task.get_name(), exc_info=exc)

    async def aclose(self) -> None:
        """Cancel every task and wait until all have finished. Safe to call twice."""
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks)


async def supervised(
    name: str, part: Callable[[], Awaitable[None]], *, first_delay: float = 1.0, max_delay: float = 30.0,
    quiet_interval: float = 60.0,
) -> None:
    """Run ``part()`` and run it again when it fails, with a growing pause; a part that returns is done.

    Nothing that ``part`` raises ends this (only cancellation does): the first failure is logged with its
    traceback, the next as one line, later ones as one line at most every ``quiet_interval`` seconds with a count,
    so a part that keeps failing on bad input cannot fill the log.
    """
    delay = first_delay
    loop = asyncio.get_running_loop()
    repeats = RateLimitedWarning(log, f"{name} keeps failing (restarted each time; the rest of the show goes on)",
                                 interval=quiet_interval)
    first = True
    while True:
        began = loop.time()
        try:
            await part()
            return
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            if loop.time() - began > 60.0:  # it ran well for a while: this is a new problem, start over
                delay = first_delay
            if first:
                first = False
                log.error("%s stopped unexpectedly; restarting it in %.0f s (the rest of the show goes on; this "
                          "traceback is logged once)", name, delay, exc_info=exc)
            else:
                text = str(exc).strip()
                repeats.note(f"{type(exc).__name__}: {text}" if text else type(exc).__name__)
        await asyncio.sleep(delay)
        delay = min(max_delay, delay * 2)


@contextlib.contextmanager
def stop_signals(on_stop: Callable[[], None], on_reload: Callable[[], None] | None = None) -> Iterator[None]:
    """While inside: SIGINT and SIGTERM call ``on_stop``; SIGHUP calls ``on_reload`` where given (POSIX).

    Must be entered on the running loop's thread. Where the loop cannot take signal handlers (Windows,
    a loop outside the main thread) nothing is installed and Ctrl+C arrives as KeyboardInterrupt.
    """
    loop = asyncio.get_running_loop()
    wanted: list[tuple[signal.Signals, Callable[[], None]]] = [(signal.SIGINT, on_stop), (signal.SIGTERM, on_stop)]
    hup = getattr(signal, "SIGHUP", None)
    if on_reload is not None and hup is not None:
        wanted.append((hup, on_reload))
    installed: list[signal.Signals] = []
    for sig, handler in wanted:
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.add_signal_handler(sig, handler)
            installed.append(sig)
    try:
        yield
    finally:
        for sig in installed:
            with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                loop.remove_signal_handler(sig)


#: A look this much later than expected means the process was away (frozen or asleep), not busy: a loaded 2-core
#: machine holds the event loop up for tenths of a second, not for seconds.
AWAY_AFTER = 2.0


def sleep_clock() -> Callable[[], float]:
    """A clock that also counts the time the computer sleeps, which :func:`time.monotonic` does not on Linux and
    macOS: CLOCK_BOOTTIME on Linux, CLOCK_MONOTONIC on macOS (there it counts sleep; ``time.monotonic`` stops), the
    wall clock elsewhere (a wall-clock step forward then reads as time away too)."""
    if sys.platform.startswith("linux") and hasattr(time, "CLOCK_BOOTTIME"):
        return lambda: time.clock_gettime(time.CLOCK_BOOTTIME)
    if sys.platform == "darwin":
        return lambda: time.clock_gettime(time.CLOCK_MONOTONIC)
    return time.time


class AwayWatch:
    """Says when the process was away between two looks, taken every ``expected`` seconds: frozen (SIGSTOP, a
    debugger: ``time.monotonic`` ran on, every timer is due at once) or asleep (a closed lid: on Linux and macOS
    ``time.monotonic`` stood still, :func:`sleep_clock` did not). ``look()`` returns the seconds since the previous
    look when they exceed ``expected + threshold`` on either clock, else None. The clocks are arguments for tests.
    """

    def __init__(self, expected: float, *, threshold: float = AWAY_AFTER, clock: Callable[[], float] = time.monotonic,
                 asleep: Callable[[], float] | None = None) -> None:
        self.expected = expected
        self.threshold = threshold
        self._clock = clock
        self._asleep = asleep or sleep_clock()
        self._last: tuple[float, float] | None = None

    def look(self) -> float | None:
        now, slept = self._clock(), self._asleep()
        last, self._last = self._last, (now, slept)
        if last is None:
            return None
        ran = now - last[0]
        away = ran + max(0.0, (slept - last[1]) - ran)  # what only the sleep clock saw (a wall step back: nothing)
        return away if away > self.expected + self.threshold else None
