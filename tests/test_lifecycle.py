"""The lifecycle mechanics every part shares: states, a start that fails, named tasks, cancel-and-wait, signals."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys

import pytest

from metadj_bridge.errors import ClosedError
from metadj_bridge.lifecycle import AwayWatch, Lifecycle, State, TaskGroupSet, cancel_and_wait, stop_signals


def test_states_start_once_close_twice_and_refuse_reuse() -> None:
    life = Lifecycle("Widget")
    assert life.begin() is True and life.running
    assert life.begin() is False  # a second start has nothing to do
    assert life.end() is True and life.closed
    assert life.end() is False  # closing twice is harmless
    with pytest.raises(ClosedError, match="this Widget is closed; make a new one"):
        life.begin()


def test_a_start_that_fails_leaves_the_part_new() -> None:
    life = Lifecycle("Widget")
    assert life.begin()
    with pytest.raises(OSError, match="port taken"), life.opening():
        raise OSError("port taken")
    assert life.state is State.NEW
    assert life.begin()  # and it may be tried again
    with life.opening():
        pass
    assert life.running


async def test_cancel_and_wait_stops_a_task_but_not_its_caller() -> None:
    stopped = asyncio.Event()

    async def forever() -> None:
        try:
            await asyncio.sleep(3600)
        finally:
            stopped.set()

    task = asyncio.create_task(forever())
    await asyncio.sleep(0)
    await cancel_and_wait(task)
    assert task.cancelled() and stopped.is_set()
    await cancel_and_wait(None)  # nothing to stop

    async def fails() -> None:
        raise ValueError("boom")

    failed = asyncio.create_task(fails())
    await asyncio.sleep(0)
    await cancel_and_wait(failed)  # its error is not the caller's
    assert isinstance(failed.exception(), ValueError)


async def test_task_set_names_logs_failures_and_cancels_the_rest(caplog: pytest.LogCaptureFixture) -> None:
    tasks = TaskGroupSet("widget")

    async def fails() -> None:
        raise RuntimeError("reader bug")

    sleeper = tasks.spawn(asyncio.sleep(3600), "sleeper")
    with caplog.at_level(logging.ERROR, logger="metadj_bridge.lifecycle"):
        failing = tasks.spawn(fails(), "reader")
        await asyncio.wait({failing})
        await asyncio.sleep(0)
    assert sleeper.get_name() == "widget:sleeper"
    assert [r.exc_info[1] for r in caplog.records if r.exc_info] == [failing.exception()]
    assert "widget: background task widget:reader failed" in caplog.text
    assert len(tasks) == 1  # a finished task is let go
    await tasks.aclose()
    assert sleeper.cancelled() and len(tasks) == 0
    await tasks.aclose()  # twice is harmless


@pytest.mark.skipif(
    sys.platform == "win32", reason="Windows loops take no signal handlers (Ctrl+C is KeyboardInterrupt)"
)
async def test_stop_signals_reach_their_handlers_and_are_removed_after() -> None:
    stops: list[str] = []
    reloads: list[str] = []
    loop = asyncio.get_running_loop()
    with stop_signals(lambda: stops.append("stop"), on_reload=lambda: reloads.append("reload")):
        os.kill(os.getpid(), signal.SIGHUP)
        os.kill(os.getpid(), signal.SIGTERM)
        for _ in range(100):
            if stops and reloads:
                break
            await asyncio.sleep(0.01)
    assert stops == ["stop"] and reloads == ["reload"]
    assert loop.remove_signal_handler(signal.SIGTERM) is False  # no handler of ours is left behind
    assert loop.remove_signal_handler(signal.SIGHUP) is False


def test_away_watch_tells_a_freeze_and_a_sleep_from_a_busy_loop() -> None:
    """Looks every 0.25 s. A busy loop is late by tenths: nothing. SIGSTOP for 30 s: the monotonic clock ran on. A
    closed lid for 30 min: on Linux and macOS the monotonic clock stood still and only the sleep clock saw it. A
    wall clock set back an hour (the sleep clock where there is no other): nothing."""
    mono, asleep = [100.0], [5000.0]
    watch = AwayWatch(0.25, clock=lambda: mono[0], asleep=lambda: asleep[0])

    def after(ran: float, slept: float) -> float | None:
        mono[0] += ran
        asleep[0] += ran + slept
        return watch.look()

    assert watch.look() is None  # the first look has nothing to compare with
    assert after(0.25, 0.0) is None
    assert after(0.9, 0.0) is None  # a busy machine
    assert after(30.0, 0.0) == pytest.approx(30.0)  # frozen
    assert after(0.25, 1800.0) == pytest.approx(1800.25)  # asleep
    assert after(0.25, -3600.0) is None  # the wall clock set back
    assert after(0.25, 0.0) is None
