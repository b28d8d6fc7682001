"""The bridge feeds Scope's tempo sync with the music's beat while that sync is on (``scope/tempo_feed.py``).

End to end: the bridge plays the demo track into the emulator, whose tempo sync (Scope's endpoints, checked on a
real Scope by ``tests/conformance/test_tempo.py``) is on or off; the emulator records the beat state it received.
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from metadj_bridge.emulator.server import ScopeEmulator
from metadj_bridge.scope.tempo_feed import beat_state, sync_source
from metadj_bridge.signals import TempoState

BEAT_KEYS = {"bpm", "beat_phase", "bar_position", "beat_count", "is_playing"}


def test_the_beat_state_is_projected_to_when_it_arrives() -> None:
    tempo = TempoState(120.0, 41.75, 0.75, 1.75, 4, "audio", True)
    assert beat_state(tempo) == {"bpm": 120.0, "beat_phase": 0.75, "bar_position": 1.75, "beat_count": 41,
                                 "is_playing": True}
    ahead = beat_state(tempo, 0.25)  # half a beat at 120 BPM: over the beat line
    assert ahead is not None and ahead["beat_count"] == 42 and ahead["beat_phase"] == pytest.approx(0.25)
    assert ahead["bar_position"] == pytest.approx(2.25)
    stopped = beat_state(TempoState(120.0, 41.75, 0.75, 1.75, 4, None, False), 0.25)
    assert stopped is not None and stopped["beat_count"] == 41 and stopped["is_playing"] is False
    waltz = beat_state(TempoState(90.0, 8.5, 0.5, 2.5, 3, "link", True))
    assert waltz is not None and waltz["bar_position"] == pytest.approx(8.5 % 3)
    # A tempo Scope's schema refuses is not sent at all (a stray OSC tempo of 0 or 5000, a grid gone wrong).
    for bpm, beat in ((0.0, 4.0), (5000.0, 4.0), (float("nan"), 4.0), (120.0, float("inf"))):
        assert beat_state(TempoState(bpm, beat, 0.0, 0.0, 4, "osc", True)) is None


def test_a_beat_state_python_cannot_convert_is_refused_and_the_tempo_sync_goes_on() -> None:
    """``beat_count`` 1e999 is infinity after JSON; a real Scope 0.2.4 logs "Error handling parameter update:
    cannot convert float infinity to integer" and loses the message (the emulator's session does the same)."""
    from metadj_bridge.emulator.tempo import EmulatedTempoSync

    sync = EmulatedTempoSync()
    sync.enable({"source": "link", "bpm": 124})
    assert sync.take_client_state(json.loads('{"bpm": 130, "beat_phase": 0.5, "beat_count": 1e999}')) == (
        "cannot convert float infinity to integer")
    assert sync.take_client_state({"bpm": "fast", "beat_phase": 0.5}) is not None
    assert sync.client_updates == 0 and sync.status()["beat_state"]["source"] == "link"
    assert sync.take_client_state({"bpm": 130, "beat_phase": 0.5, "beat_count": 7}) is None
    assert sync.client_updates == 1 and sync.status()["beat_state"]["bpm"] == 130.0


def test_the_emulated_tempo_sync_ages_the_client_beat_state_on_a_clock_the_wall_clock_cannot_move(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The wall clock set back an hour (NTP, a hand) right after the bridge's last beat state: 2 s on, that state
    is stale all the same and Scope's own Link grid takes over again, as it does on a real Scope."""
    import time

    from metadj_bridge.emulator.tempo import CLIENT_STALE_SECONDS, EmulatedTempoSync

    now = [100.0]
    sync = EmulatedTempoSync(clock=lambda: now[0])
    sync.enable({"source": "link", "bpm": 124})
    assert sync.take_client_state({"bpm": 130, "beat_phase": 0.5}) is None
    assert sync.status()["beat_state"]["source"] == "client"
    wall = time.time()
    monkeypatch.setattr(time, "time", lambda: wall - 3600.0)  # the system's wall clock: no stand-in can move it
    now[0] += CLIENT_STALE_SECONDS - 0.1
    assert sync.status()["beat_state"]["source"] == "client"  # still fresh: the wall clock's step is no age
    now[0] += 0.2
    assert sync.status()["beat_state"]["source"] == "link"


@pytest.mark.parametrize(("answer", "source"), [
    ({"enabled": True, "source": {"type": "link", "num_peers": 0}}, "link"),
    ({"enabled": True, "source": {"type": "midi_clock"}}, "midi_clock"),
    ({"enabled": True, "source": None}, "on"),
    ({"enabled": False, "source": {"type": "link"}}, None),
    ({"enabled": "yes"}, None),
    (["enabled"], None),
    (None, None),
])
def test_only_a_clear_yes_turns_the_feed_on(answer: Any, source: str | None) -> None:
    assert sync_source(answer) == source


async def _run_bridge(url: str, log: Path, seconds: float) -> tuple[list[dict[str, Any]], str]:
    """The messages a run of ``seconds`` sent, and what it logged."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "metadj_bridge", "run", "--scope", url, "--duration", str(seconds), "--output", "none",
        "--no-watch", "--show-log", str(log), stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE)
    _, err = await asyncio.wait_for(proc.communicate(), timeout=seconds + 60)
    said = err.decode(errors="replace")
    assert proc.returncode == 0, said[-2000:]
    text = await asyncio.to_thread(log.read_text, encoding="utf-8")
    events = [json.loads(line) for line in text.splitlines()]
    return [e["message"] for e in events if e.get("type") == "sent"], said


async def test_the_bridge_feeds_the_beat_only_while_scopes_tempo_sync_is_on(
        make_emulator: Callable[..., Awaitable[ScopeEmulator]], tmp_path: Path) -> None:
    emulator = await make_emulator(chunk_frames=12, fps=20.0)
    off, said = await _run_bridge(emulator.url, tmp_path / "off.jsonl", 5)
    # The bridge had the music's beat (the demo track's tempo locked in the run), and kept it from Scope.
    assert "tempo source: none -> audio" in said, said[-2000:]
    assert off and not [m for m in off if BEAT_KEYS & set(m)], "beat state sent to a Scope whose tempo sync is off"
    assert emulator.tempo.client_updates == 0

    async with httpx.AsyncClient() as http:
        (await http.post(emulator.url + "/api/v1/tempo/enable", json={"source": "link", "bpm": 100})).raise_for_status()
    on, _ = await _run_bridge(emulator.url, tmp_path / "on.jsonl", 8)
    beats = [m for m in on if BEAT_KEYS <= set(m)]
    assert len(beats) >= len(on) // 2, f"{len(beats)} of {len(on)} messages carried the beat"
    # The demo track is 124 BPM: once the bridge has its beat, that is what Scope hears (not Link's 100).
    assert beats[-1]["bpm"] == pytest.approx(124, abs=2) and beats[-1]["is_playing"] is True
    counts = [m["beat_count"] for m in beats]
    assert counts == sorted(counts) and counts[-1] > counts[0]
    assert emulator.tempo.client_updates >= len(beats)
