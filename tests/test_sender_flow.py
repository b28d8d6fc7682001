"""The sender's flow control against the emulator over real loopback WebRTC: one message per chunk with actions
merged in, and the repair of a message Scope dropped (told by Scope's own log)."""

from __future__ import annotations

import asyncio
import json
import logging
import random
import time
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from metadj_bridge.emulator import ScopeEmulator
from metadj_bridge.scope.dropwatch import count_drops
from metadj_bridge.scope.sender import PacerConfig, ParameterSender
from metadj_bridge.scope.session import ScopeSession, SessionConfig
from tests.conftest import SMALL, emulator_get
from tests.helpers import wait_for


def make_session(url: str, chunk_frames: int) -> ScopeSession:
    sender = ParameterSender(pacer=PacerConfig(chunk_frames=chunk_frames))
    config = SessionConfig(url=url, pipeline_ids=["longlive"], load_params=dict(SMALL), prompts="flow",
                           ice_servers=[], no_frame_timeout=5.0, load_timeout=20.0)
    return ScopeSession(config, sender)


async def session_log(url: str, session_id: str | None) -> dict[str, list[dict[str, Any]]]:
    log = await emulator_get(url, "/_emulator/log")
    return {k: [e for e in v if e.get("session_id") == session_id] for k, v in log.items() if k != "offers"}


async def test_sweep_with_resets_on_every_beat_drops_nothing_and_lands_the_final_value(
    make_emulator: Callable[..., Awaitable[ScopeEmulator]],
) -> None:
    """A 60 Hz knob plus reset_cache at 124 BPM on 0.3 s chunks for 4 s (eight beats): the resets ride in the
    budgeted messages."""
    seconds = 4.0
    emulator = await make_emulator(chunk_frames=6, fps=20.0)
    session = make_session(emulator.url, chunk_frames=6)
    await session.start()
    try:
        await session.wait_streaming(timeout=20)
        await wait_for(lambda: session.frames_received >= 12, 20, "two chunks of frames")
        sender = session.sender
        rng = random.Random(3)
        end, next_beat = time.monotonic() + seconds, time.monotonic()
        while time.monotonic() < end:
            sender.update(noise_scale=round(rng.random(), 6))
            if time.monotonic() >= next_beat:
                sender.action(reset_cache=True)
                next_beat += 60 / 124
            await asyncio.sleep(1 / 60)
        final = 0.123457
        sender.update(noise_scale=final)
        sid = session.session_id

        async def final_applied() -> list[dict[str, Any]]:
            applied = (await session_log(emulator.url, sid))["applied"]
            return [e for e in applied if e["message"].get("noise_scale") == final]

        await wait_for(final_applied, 10, "the final knob value to be applied")
        log = await session_log(emulator.url, sid)
        assert log["dropped"] == []
        resets = [e for e in log["received"] if e["message"].get("reset_cache") is True]
        assert resets and all("noise_scale" in e["message"] for e in resets)  # merged, not sent on their own
        assert len(log["received"]) < seconds / 0.3 + 8  # about one message per chunk, repeats included
    finally:
        await session.aclose()


async def test_a_message_scope_dropped_is_repaired_and_the_sender_slows_down(
    make_emulator: Callable[..., Awaitable[ScopeEmulator]], caplog: pytest.LogCaptureFixture,
) -> None:
    """Another client fills Scope's queue: the sender's next message is dropped; Scope's log says so; the sender
    believes longer chunks and sends the value again once the queue has drained."""
    caplog.set_level(logging.INFO, logger="metadj_bridge.emulator")  # Scope's log file keeps INFO lines
    emulator = await make_emulator(chunk_frames=2, fps=20.0)  # 0.1 s chunks: the full queue drains in 0.8 s
    session = make_session(emulator.url, chunk_frames=2)
    await session.start()
    try:
        await session.wait_streaming(timeout=20)
        await wait_for(lambda: session.frames_received >= 6, 20, "a few chunks of frames")
        sender = session.sender
        channel = session.connection._channel
        assert channel is not None
        sid = session.session_id

        async def fate(value: float) -> tuple[bool, bool]:
            """Whether Scope dropped ``value`` (Scope logs a drop as the message arrives), and applied it."""
            log = await session_log(emulator.url, sid)
            return (any(e["message"].get("noise_scale") == value for e in log["dropped"]),
                    any(e["message"].get("noise_scale") == value for e in log["applied"]))

        # On a loaded machine Scope may take a chunk's message off the queue between the last filler and the value,
        # which then gets in: fill it and try again with another value (the claim needs a dropped one).
        for value in (0.77, 0.78, 0.79):
            for _ in range(8):
                channel.send(json.dumps({"base_seed": 42}))  # the queue is full now
            sender.update(noise_scale=value)  # isolated: sent at once, and dropped
            dropped, _ = await wait_for(lambda v=value: _arrived(fate(v)), 15, f"Scope to receive {value}")
            if dropped:
                break
        assert dropped, "Scope never dropped the value sent after filling its queue"

        async def dropped_then_applied() -> bool:
            return all(await fate(value))

        await wait_for(dropped_then_applied, 15, "the dropped value to be sent again and applied")
        await wait_for(lambda: sender.stats().drops_seen >= 1, 5, "Scope's log line about the drop")
        stats = sender.stats()
        assert (stats.chunk_frames, stats.chunk_source) == (4, "drops")
        tail = await emulator_get(emulator.url, "/api/v1/logs/tail?lines=1000")
        assert count_drops(tail["lines"]) >= 1
    finally:
        await session.aclose()


async def _arrived(fate: Awaitable[tuple[bool, bool]]) -> tuple[bool, bool] | None:
    """(dropped, applied) once the value reached Scope (dropped or applied), else None."""
    dropped, applied = await fate
    return (dropped, applied) if dropped or applied else None


async def test_a_pause_from_elsewhere_is_undone_and_said_once(
    make_emulator: Callable[..., Awaitable[ScopeEmulator]], caplog: pytest.LogCaptureFixture,
) -> None:
    """The seed's "connected but no generation: paused": Scope's REST API (or OSC /scope/paused) pauses every session,
    the bridge's too, and tells it nothing; the picture freezes while frames keep coming. The show is not paused,
    so the bridge reads Scope's 'Video track paused' line, sends paused: false again and says so in one warning.
    The show's own pause is left alone."""
    import httpx

    caplog.set_level(logging.INFO)
    emulator = await make_emulator(chunk_frames=2, fps=20.0)
    session = make_session(emulator.url, chunk_frames=2)
    session.sender.update(paused=False)  # the engine's lasting state always holds the show's pause
    await session.start()
    try:
        await session.wait_streaming(timeout=20)
        await wait_for(lambda: session.frames_received >= 6, 20, "a few chunks of frames")

        async def paused_on_scope() -> bool:
            return bool((await emulator_get(emulator.url, "/api/v1/session/parameters"))["parameters"].get("paused"))

        # The watch reads the log from where it ended when the session began streaming; on a loaded machine its
        # first look can come after a pause sent at once, so the pause is sent again until one is seen.
        for attempt in range(3):
            async with httpx.AsyncClient() as http:
                answer = await http.post(emulator.url + "/api/v1/session/parameters", json={"paused": True})
            assert answer.status_code == 200, answer.text
            try:
                await wait_for(lambda: _is(paused_on_scope(), False), 5, "the bridge to send paused: false again")
                break
            except AssertionError:
                if attempt == 2:
                    raise
        warnings = [r.getMessage() for r in caplog.records
                    if r.levelno == logging.WARNING and "paused by something other than this show" in r.getMessage()]
        assert len(warnings) == 1, warnings
        # The show's own pause stays: no warning, nothing undone.
        session.sender.update(paused=True)
        await wait_for(lambda: _is(paused_on_scope(), True), 10, "the show's own pause to reach Scope")
        await asyncio.sleep(1.0)
        assert await paused_on_scope() is True
    finally:
        await session.aclose()


async def _is(value: Awaitable[bool], wanted: bool) -> bool:
    return await value is wanted
