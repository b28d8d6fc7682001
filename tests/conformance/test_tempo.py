"""Scope's tempo sync as a client sees it (scope-api.md §9): off until enabled, Ableton Link as a source, and the
beat state a client sends over the data channel taking over from the source while it is fresh.

The bridge feeds this beat state while ``GET /api/v1/tempo/status`` says tempo sync is on. A Scope without
Ableton Link support (no ``aalink`` in its environment) refuses to enable it; the tests that need it skip then.
Each test leaves tempo sync off, as a server starts.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.conformance.conftest import require
from tests.conformance.peer import ensure_loaded, session
from tests.conformance.test_channel import PRESS, _until

VIZ_SIZE = {"height": 256, "width": 256}


def _status(url: str) -> dict[str, Any]:
    response = httpx.get(url + "/api/v1/tempo/status", timeout=10)
    response.raise_for_status()
    body = response.json()
    assert isinstance(body, dict)
    return body


@pytest.fixture
def link_sync(scope_url: str) -> Iterator[dict[str, Any]]:
    """Tempo sync on with Ableton Link at 124 BPM (skips on a Scope without it); off again afterwards."""
    assert _status(scope_url)["enabled"] is False, "tempo sync was left on by someone else"
    response = httpx.post(scope_url + "/api/v1/tempo/enable", json={"source": "link", "bpm": 124}, timeout=15)
    if response.status_code == 400:
        pytest.skip(f"this Scope cannot enable Ableton Link: {response.json().get('detail')}")
    response.raise_for_status()
    try:
        yield response.json()
    finally:
        httpx.post(scope_url + "/api/v1/tempo/disable", timeout=15).raise_for_status()


def test_tempo_sync_is_off_until_enabled(scope_url: str) -> None:
    assert _status(scope_url) == {"enabled": False, "source": None, "beats_per_bar": 4, "beat_state": None}
    sources = httpx.get(scope_url + "/api/v1/tempo/sources", timeout=10).json()["sources"]
    assert set(sources) == {"link", "midi_clock"}


def test_midi_clock_without_its_extra_is_refused(scope_url: str) -> None:
    sources = httpx.get(scope_url + "/api/v1/tempo/sources", timeout=10).json()["sources"]
    if sources["midi_clock"]["available"]:
        pytest.skip("this Scope has its MIDI extra installed")
    response = httpx.post(scope_url + "/api/v1/tempo/enable", json={"source": "midi_clock"}, timeout=15)
    assert response.status_code == 400 and "not installed" in response.json()["detail"]
    assert _status(scope_url)["enabled"] is False


def test_link_runs_at_the_tempo_asked_for(scope_url: str, link_sync: dict[str, Any]) -> None:
    assert link_sync["enabled"] is True and link_sync["source"]["type"] == "link"
    beat = _status(scope_url)["beat_state"]
    assert beat["bpm"] == pytest.approx(124.0) and beat["source"] == "link" and beat["is_playing"] is False


async def test_a_clients_beat_state_takes_over_while_fresh(scope_url: str, offered: dict[str, Any],
                                                           link_sync: dict[str, Any]) -> None:
    """Sent over the data channel, the client's beat replaces Link's (as sent, not run on) and lapses after 2 s."""
    require(offered, "controller-viz")
    await ensure_loaded(scope_url, "controller-viz", VIZ_SIZE)
    async with session(scope_url, "controller-viz", "video") as peer:
        await peer.wait_frames(3, within=20)
        peer.send({"bpm": 131.5, "beat_phase": 0.25, "bar_position": 2.25, "beat_count": 42, "is_playing": True})
        await asyncio.sleep(0.3)
        beat = _status(scope_url)["beat_state"]
        assert beat["source"] == "client" and beat["bpm"] == 131.5 and beat["beat_count"] == 42
        assert beat["beat_phase"] == 0.25 and beat["is_playing"] is True
        peer.send({"bpm": 140.0})  # without beat_phase: not a beat state, nothing changes
        await asyncio.sleep(0.3)
        assert _status(scope_url)["beat_state"]["bpm"] == 131.5
        await asyncio.sleep(2.2)
        assert _status(scope_url)["beat_state"]["source"] == "link"


async def test_a_beat_state_that_cannot_be_converted_loses_its_whole_message(
        scope_url: str, offered: dict[str, Any], link_sync: dict[str, Any]) -> None:
    """``beat_count`` 1e999 (infinity once parsed): Scope logs "Error handling parameter update" and drops the whole
    message, the key press riding with it too; the next message goes through."""
    require(offered, "controller-viz")
    await ensure_loaded(scope_url, "controller-viz", VIZ_SIZE)
    async with session(scope_url, "controller-viz", "text") as peer:
        await peer.wait_frames(3, within=20)
        assert peer.channel is not None
        peer.channel.send('{"bpm": 130, "beat_phase": 0.5, "beat_count": 1e999, "ctrl_input": {"button": ["KeyW"]}}')
        assert not await _until(peer, True, within=1.5), "the message with the broken beat state was applied"
        peer.send(PRESS)
        assert await _until(peer, True, within=5), "the next message was lost too"
