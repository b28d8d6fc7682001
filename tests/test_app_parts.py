"""The parts of a running bridge: a part that fails is restarted on its own while the others go on."""

from __future__ import annotations

import asyncio
import logging

import pytest

from metadj_bridge.lifecycle import supervised


async def test_a_failing_part_is_restarted_and_the_others_go_on(caplog: pytest.LogCaptureFixture) -> None:
    runs = 0
    ticks = 0

    async def flaky() -> None:
        nonlocal runs
        runs += 1
        await asyncio.sleep(0.01)
        if runs < 3:
            raise RuntimeError(f"broken on run {runs}")

    async def steady() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0.005)

    async with asyncio.TaskGroup() as group:
        other = group.create_task(supervised("steady", steady), name="steady")
        await group.create_task(supervised("flaky", flaky, first_delay=0.02), name="flaky")
        assert runs == 3 and not other.done()
        before = ticks
        await asyncio.sleep(0.05)
        assert ticks > before  # the other part never stopped
        other.cancel()
    restarts = [
        r for r in caplog.records if r.levelno == logging.ERROR and "flaky stopped unexpectedly" in r.getMessage()
    ]
    # The traceback once; the second failure as a one-line warning (later ones rate-limited).
    assert len(restarts) == 1 and "restarting it in" in restarts[0].getMessage() and restarts[0].exc_info
    again = [r for r in caplog.records if r.levelno == logging.WARNING and "flaky keeps failing" in r.getMessage()]
    assert len(again) == 1 and "broken on run 2" in again[0].getMessage() and not again[0].exc_info
