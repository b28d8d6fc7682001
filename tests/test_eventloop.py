"""The bridge's event loop: uvloop where installed, asyncio's own on request."""

from __future__ import annotations

import asyncio
import importlib.util

import pytest

from metadj_bridge.run import eventloop


async def _which() -> str:
    return type(asyncio.get_running_loop()).__module__


def test_the_loop_can_be_forced_to_asyncio(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("METADJ_EVENT_LOOP", "asyncio")
    assert eventloop.loop_name() == "asyncio"
    assert eventloop.run(_which()).startswith("asyncio")


@pytest.mark.skipif(importlib.util.find_spec("uvloop") is None, reason="uvloop is not installed (Windows has no build)")
def test_uvloop_runs_the_bridge_where_installed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("METADJ_EVENT_LOOP", raising=False)
    assert eventloop.loop_name() == "uvloop"
    assert eventloop.run(_which()).startswith("uvloop")
