"""The Scope session against the emulator over real loopback WebRTC: handshake, API generations,
flow-controlled parameters, discrete actions and self-healing."""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable
from typing import Any

import av
import numpy as np
import pytest
from aiortc.sdp import SessionDescription

from metadj_bridge.emulator import ScopeEmulator
from metadj_bridge.errors import PipelineLoadError, ScopeConnectionError, ScopeNotFoundError
from metadj_bridge.scope.api import ScopeClient
from metadj_bridge.scope.reconnect import ReconnectLogic, ReconnectState
from metadj_bridge.scope.sender import PacerConfig, ParameterSender
from metadj_bridge.scope.session import Backoff, ScopeSession, SessionConfig
from tests.conftest import SMALL, EmulatorProcess, emulator_fault, emulator_get
from tests.helpers import ColourTrack, wait_for

FAST_BACKOFF = Backoff(base=0.2, cap=1.0)


def make_session(url: str, *, chunk_frames: int = 4, **overrides: Any) -> ScopeSession:
    fields: dict[str, Any] = {
        "url": url,
        "pipeline_ids": ["longlive"],
        "load_params": dict(SMALL),
        "prompts": "neon rain over a dancefloor",
        "ice_servers": [],
        "backoff": FAST_BACKOFF,
        "no_frame_timeout": 3.0,
        "load_timeout": 20.0,
    }
    fields.update(overrides)
    sender = ParameterSender(pacer=PacerConfig(chunk_frames=chunk_frames))
    return ScopeSession(SessionConfig(**fields), sender)


def negotiated_codec(session: ScopeSession) -> str:
    pc = session.connection.pc
    assert pc is not None and pc.remoteDescription is not None
    return SessionDescription.parse(pc.remoteDescription.sdp).media[0].rtp.codecs[0].mimeType


async def test_text_mode_handshake_streams_frames(emulator: ScopeEmulator) -> None:
    session = make_session(emulator.url)
    frames: list[av.VideoFrame] = []
    session.add_frame_listener(frames.append)
    await session.start()
    try:
        await session.wait_streaming(timeout=20)
        await wait_for(lambda: len(frames) >= 10, 15, "10 frames")
        assert (frames[-1].width, frames[-1].height) == (256, 144)
        assert negotiated_codec(session) == "video/H264"
        log = await emulator_get(emulator.url, "/_emulator/log")
        offer = log["offers"][-1]
        assert offer["pipeline_ids"] == ["longlive"]
        assert offer["input_mode"] == "text"
        assert offer["paused"] is False
        assert offer["manage_cache"] is True
        assert offer["denoising_step_list"] == [1000, 750, 500, 250]
        assert offer["prompts"] == [{"text": "neon rain over a dancefloor", "weight": 1.0}]
        status = session.status()
        assert status["state"] == "streaming" and status["server_version"] == "0.2.4"
    finally:
        await session.aclose()
        await session.aclose()
    metrics = await emulator_get(emulator.url, "/_emulator/metrics")
    assert metrics["active_sessions"] == 0  # aclose DELETEd the session


async def test_video_mode_sends_the_webcam_track_and_gets_it_back(emulator: ScopeEmulator) -> None:
    session = make_session(
        emulator.url,
        pipeline_ids=["passthrough"],
        input_mode="video",
        video_track_factory=lambda: ColourTrack((200, 40, 90)),
    )
    frames: list[av.VideoFrame] = []
    session.add_frame_listener(frames.append)
    await session.start()
    try:
        await session.wait_streaming(timeout=20)
        await wait_for(lambda: len(frames) >= 8, 20, "8 echoed frames")
        mean = frames[-1].to_ndarray(format="rgb24").reshape(-1, 3).mean(axis=0)
        assert np.abs(mean - np.array([200, 40, 90])).max() < 20, mean
        offer = (await emulator_get(emulator.url, "/_emulator/log"))["offers"][-1]
        assert offer["pipeline_ids"] == ["passthrough"] and offer["input_mode"] == "video"
    finally:
        await session.aclose()


async def test_legacy_server_gets_the_old_load_body(make_emulator: Callable[..., Awaitable[ScopeEmulator]]) -> None:
    emulator = await make_emulator(legacy_api=True)
    session = make_session(emulator.url)
    await session.start()
    try:
        await session.wait_streaming(timeout=20)
        assert session.client.api_generation == "legacy"
        await wait_for(lambda: session.frames_received >= 3, 15, "frames from a legacy server")
        # Even for the old generation, the offer carries pipeline_ids.
        offer = (await emulator_get(emulator.url, "/_emulator/log"))["offers"][-1]
        assert offer["pipeline_ids"] == ["longlive"]
    finally:
        await session.aclose()


async def test_stale_status_is_not_taken_for_the_new_pipeline(emulator: ScopeEmulator) -> None:
    async with ScopeClient(emulator.url) as scope:
        await scope.ensure_pipeline(["longlive"], SMALL, timeout=10, poll_interval=0.05)
        await scope.load_pipeline(["streamdiffusionv2"], SMALL)
        stale = await scope.pipeline_status()
        # The emulator imitates Scope's race: right after the POST the old pipeline still shows as loaded.
        assert (stale.status, stale.pipeline_id) == ("loaded", "longlive")
        progress: list[str] = []
        status = await scope.wait_until_loaded(
            ["streamdiffusionv2"], timeout=10, poll_interval=0.05, on_progress=progress.append
        )
        assert status.pipeline_id == "streamdiffusionv2"
        assert any("loading streamdiffusionv2" in p for p in progress)
        assert (await scope.pipeline_status()).pipeline_id == "streamdiffusionv2"


async def test_failed_load_is_a_clear_error_with_scopes_reason(emulator: ScopeEmulator) -> None:
    await emulator_fault(emulator.url, fail_load=True)
    async with ScopeClient(emulator.url) as scope:
        with pytest.raises(Exception, match="could not load pipeline 'longlive'.*Scope's log: .*fail") as info:
            await scope.ensure_pipeline(["longlive"], SMALL, timeout=10, poll_interval=0.05)
        assert type(info.value).__name__ == "PipelineLoadError"


async def test_slow_load_times_out_naming_the_likely_causes(emulator: ScopeEmulator) -> None:
    await emulator_fault(emulator.url, slow_load=30)
    async with ScopeClient(emulator.url) as scope:
        with pytest.raises(Exception, match="not loaded after 0.5 s.*another client or an open Scope web UI") as info:
            await scope.ensure_pipeline(["longlive"], SMALL, timeout=0.5, poll_interval=0.05)
        assert type(info.value).__name__ == "PipelineLoadTimeout"


async def test_offer_path_on_a_non_scope_prefix_is_a_404(emulator: ScopeEmulator) -> None:
    async with ScopeClient(emulator.url + "/not-scope") as scope:
        with pytest.raises(ScopeNotFoundError):
            await scope.health()


async def test_sweep_60hz_for_10s_drops_nothing_and_lands_the_final_value(
    make_emulator: Callable[..., Awaitable[ScopeEmulator]],
) -> None:
    """12 frames per chunk at 20 fps (0.6 s chunks, a GPU-like pace), a knob moved at 60 Hz for 10 s."""
    emulator = await make_emulator(chunk_frames=12, fps=20.0)
    session = make_session(emulator.url, chunk_frames=12)
    await session.start()
    try:
        await session.wait_streaming(timeout=20)
        await wait_for(lambda: session.frames_received >= 24, 20, "two chunks of frames")
        sender = session.sender
        rng = random.Random(7)
        end = time.monotonic() + 10.0
        value = 0.0
        while time.monotonic() < end:
            value = round(rng.random(), 6)
            sender.update(noise_scale=value)
            await asyncio.sleep(1 / 60)
        final = 0.123457
        sender.update(noise_scale=final)
        chunk_at_end = (await emulator_get(emulator.url, "/_emulator/metrics"))["chunk_index"]

        async def applied_final() -> list[dict[str, Any]]:
            log = await emulator_get(emulator.url, "/_emulator/log")
            return [e for e in log["applied"] if e["message"].get("noise_scale") == final]

        applied = await wait_for(applied_final, 10, "the final knob value to be applied")
        metrics = await emulator_get(emulator.url, "/_emulator/metrics")
        assert metrics["messages_dropped"] == 0
        assert applied[0]["chunk"] - chunk_at_end <= 2, (applied[0]["chunk"], chunk_at_end)
        stats = sender.stats()
        # 600 changes were merged into about one message per 0.6 s chunk (17 chunks).
        assert stats.changes > 500 and stats.sent < 27, stats
    finally:
        await session.aclose()


async def test_discrete_action_goes_out_in_the_next_message(
    make_emulator: Callable[..., Awaitable[ScopeEmulator]],
) -> None:
    emulator = await make_emulator(chunk_frames=12, fps=20.0)
    session = make_session(emulator.url, chunk_frames=12)
    await session.start()
    try:
        await session.wait_streaming(timeout=20)
        await wait_for(lambda: session.frames_received >= 12, 20, "a chunk of frames")
        sender = session.sender
        for i in range(60):  # a second of 60 Hz knob movement, so a timer would be holding changes
            sender.update(noise_scale=i / 100)
            await asyncio.sleep(1 / 60)
        before = sender.sent
        sender.action(reset_cache=True)
        await wait_for(lambda: sender.sent == before + 1, 2, "the action to be sent")
        sid = session.session_id

        async def received_next() -> list[dict[str, Any]]:
            log = await emulator_get(emulator.url, "/_emulator/log")
            return [e for e in log["received"] if e["session_id"] == sid]

        received = await wait_for(lambda: _longer_than(received_next, before), 10, "the action at the emulator")
        assert received[before]["message"].get("reset_cache") is True
        # One-shot: it is never repeated in a later message or in the lasting state.
        assert "reset_cache" not in sender.snapshot()
    finally:
        await session.aclose()


async def _longer_than(fetch: Callable[[], Awaitable[list[dict[str, Any]]]], n: int) -> list[dict[str, Any]] | None:
    items = await fetch()
    return items if len(items) > n else None


async def _heal_and_check_state(
    emulator_url: str, session: ScopeSession, trigger: Callable[[], Awaitable[None]]
) -> None:
    """Set a state, trigger a fault, and check a new session starts with that state."""
    await session.wait_streaming(timeout=20)
    session.sender.update(noise_scale=0.42, prompts=[{"text": "storm over the crowd", "weight": 1.0}])
    await wait_for(lambda: session.sender.sent >= 1, 5, "the state to be sent")
    await wait_for(lambda: session.frames_received >= 3, 15, "frames before the fault")
    first = session.session_id
    started = session.sessions_started
    await trigger()
    await wait_for(
        lambda: session.sessions_started > started and session.state.value == "streaming", 30, "a healed session"
    )
    assert session.session_id != first
    await wait_for(
        lambda: session.frames_received > 0 and session.connection.last_frame > time.monotonic() - 1, 15, "frames again"
    )
    offer = (await emulator_get(emulator_url, "/_emulator/log"))["offers"][-1]
    assert offer["noise_scale"] == 0.42
    assert offer["prompts"] == [{"text": "storm over the crowd", "weight": 1.0}]
    assert offer["pipeline_ids"] == ["longlive"]
    assert offer["paused"] is False


async def test_heals_after_server_restart(emulator: ScopeEmulator, caplog: pytest.LogCaptureFixture) -> None:
    session = make_session(emulator.url)
    await session.start()
    try:
        with caplog.at_level(logging.INFO, logger="metadj_bridge.scope"):
            await _heal_and_check_state(emulator.url, session, lambda: emulator_fault(emulator.url, restart=True))
        warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
        restored = [r for r in caplog.records if "restored" in r.getMessage()]
        assert len(warnings) == 1  # one WARNING on loss ...
        assert len(restored) == 1  # ... one INFO on recovery
        assert any(r.getMessage().startswith("Scope restarted") for r in caplog.records)
        metrics = await emulator_get(emulator.url, "/_emulator/metrics")
        assert metrics["active_sessions"] == 1  # exactly one session at a time
    finally:
        await session.aclose()


async def test_a_data_channel_that_never_opens_is_given_up_in_seconds(
    emulator: ScopeEmulator, caplog: pytest.LogCaptureFixture
) -> None:
    """The connection comes up but every SCTP packet to Scope is lost: the session is rebuilt once the channel
    has had its few seconds, not after the whole connect timeout (a minute here), and the next one streams."""
    await emulator_fault(emulator.url, lose_channel=1)
    session = make_session(emulator.url, connect_timeout=60.0, channel_open_timeout=2.0)
    await session.start()
    try:
        with caplog.at_level(logging.INFO, logger="metadj_bridge.scope"):
            await session.wait_streaming(timeout=30)
        assert session.sessions_started == 2
        assert any("the data channel did not open within 2.0 s of the WebRTC connection" in r.getMessage()
                   for r in caplog.records)
        assert (await emulator_get(emulator.url, "/_emulator/log"))["offers"][-1]["prompts"]  # the second took
    finally:
        await session.aclose()


async def test_heals_when_video_stops_while_connected(emulator: ScopeEmulator,
                                                     caplog: pytest.LogCaptureFixture) -> None:
    session = make_session(emulator.url, no_frame_timeout=1.0)
    await session.start()
    try:
        with caplog.at_level(logging.INFO, logger="metadj_bridge.scope"):
            await _heal_and_check_state(emulator.url, session, lambda: emulator_fault(emulator.url, stop_video=True))
            await wait_for(lambda: session.connection.last_frame, 10, "a frame of the new session")
        lost = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
        assert len(lost) == 1 and "no video frame" in lost[0]  # the reason stays in the log ...
        assert session.last_error is None  # ... not on the status once frames flow again
        assert session.status()["last_error"] is None
        assert any("restored" in r.getMessage() for r in caplog.records)
        metrics = await emulator_get(emulator.url, "/_emulator/metrics")
        assert metrics["active_sessions"] == 1  # the silent session was DELETEd before the new offer
    finally:
        await session.aclose()


async def test_heals_through_a_slow_then_failed_then_good_load(emulator: ScopeEmulator) -> None:
    session = make_session(emulator.url)
    await session.start()
    try:
        await session.wait_streaming(timeout=20)
        session.sender.update(noise_scale=0.33)
        await wait_for(lambda: session.sender.sent >= 1, 5, "the state to be sent")
        await emulator_fault(emulator.url, fail_load=True)
        await emulator_fault(emulator.url, restart=True)
        await wait_for(lambda: "could not load" in (session.last_error or ""), 20, "the failed load to be reported")
        assert session.state.value == "reconnecting"
        await emulator_fault(emulator.url, fail_load=False, slow_load=1.0)
        await wait_for(lambda: session.state.value == "streaming", 30, "recovery after the slow load")
        offer = (await emulator_get(emulator.url, "/_emulator/log"))["offers"][-1]
        assert offer["noise_scale"] == 0.33
    finally:
        await session.aclose()


async def test_heals_after_the_server_process_is_killed(emulator_process: Callable[..., EmulatorProcess]) -> None:
    proc = emulator_process("--chunk-frames", "4", "--fps", "20", "--load-seconds", "0.1")
    await proc.start()
    session = make_session(proc.url)
    await session.start()

    async def crash_and_restart() -> None:
        proc.kill()
        await wait_for(lambda: session.state.value != "streaming", 15, "the loss to be noticed")
        await asyncio.sleep(1.0)  # a few failed attempts against the dead port
        await proc.start()

    try:
        await _heal_and_check_state(proc.url, session, crash_and_restart)
    finally:
        await session.aclose()


async def test_trickle_patch_reaches_the_session(emulator: ScopeEmulator) -> None:
    session = make_session(emulator.url)
    await session.start()
    try:
        await session.wait_streaming(timeout=20)
        pc = session.connection.pc
        assert pc is not None
        sdp = pc.localDescription.sdp
        line = next(x for x in sdp.splitlines() if x.startswith("a=candidate:"))
        async with ScopeClient(emulator.url) as scope:
            cand = {"candidate": line[2:], "sdpMid": "0", "sdpMLineIndex": 0}
            assert await scope.add_ice_candidates(session.session_id or "", [cand]) is True
            assert await scope.add_ice_candidates("no-such-session", [cand]) is False
        session.add_local_candidate({"candidate": line[2:], "sdpMid": "0", "sdpMLineIndex": 0})
        session.add_local_candidate({"candidate": "", "sdpMid": "0"})  # end-of-candidates is never sent
        await asyncio.sleep(0.3)
        assert session.state.value == "streaming"
    finally:
        await session.aclose()


async def test_a_failing_frame_listener_does_not_stop_the_stream(
    emulator: ScopeEmulator, caplog: pytest.LogCaptureFixture
) -> None:
    session = make_session(emulator.url)
    calls = {"n": 0}

    def broken(frame: av.VideoFrame) -> None:
        calls["n"] += 1
        raise RuntimeError("sink exploded")

    session.add_frame_listener(broken)
    await session.start()
    try:
        await session.wait_streaming(timeout=20)
        with caplog.at_level(logging.WARNING, logger="metadj_bridge.scope"):
            await wait_for(lambda: calls["n"] >= 20, 15, "frames despite the broken listener")
        assert session.state.value == "streaming"
        # One traceback, not one per frame (20 a second on stage would fill a disk).
        failures = [r for r in caplog.records if "frame listener errors" in r.getMessage()]
        assert len(failures) == 1 and failures[0].exc_info is not None
    finally:
        await session.aclose()
    assert session.state.value == "closed"


def test_backoff_starts_at_two_seconds_and_is_capped() -> None:
    backoff = Backoff()
    delays = [backoff.delay(i, rand=lambda: 0.5) for i in range(8)]
    assert delays[:5] == [2.0, 4.0, 8.0, 16.0, 30.0]
    assert delays[5:] == [30.0, 30.0, 30.0]
    jittered = [backoff.delay(0) for _ in range(50)]
    assert min(jittered) >= 1.8 and max(jittered) <= 2.2 and len(set(jittered)) > 1


async def test_a_server_back_from_the_dead_is_rejoined_without_waiting_out_the_backoff(
    emulator_process: Callable[..., EmulatorProcess],
) -> None:
    proc = emulator_process("--chunk-frames", "4", "--fps", "20", "--load-seconds", "0.1")
    await proc.start()
    # A backoff that would wait 60 s before the next attempt: only the health probe can bring the session back.
    session = make_session(proc.url, backoff=Backoff(base=60.0, cap=60.0, jitter=0.0))
    await session.start()
    try:
        await session.wait_streaming(20)
        proc.kill()
        await wait_for(lambda: session.state.value == "reconnecting", 15, "the loss to be noticed")
        await asyncio.sleep(1.0)
        await proc.start()
        await wait_for(lambda: session.state.value == "streaming", 30, "the session back long before the 60 s backoff")
    finally:
        await session.aclose()


# ---------------------------------------------------------------------------------------------- the retry policy alone


class FakeLink:
    """A link whose attempts fail with the given errors (None: that one connects), then connect; a connected
    link stays until ``lose`` is set."""

    def __init__(self, *failures: Exception | None) -> None:
        self.failures = list(failures)
        self.opened = 0
        self.closed = 0
        self.start = 1.0
        self.lose = asyncio.Event()

    @property
    def session_id(self) -> str | None:
        return "fake"

    @property
    def where(self) -> str:
        return "http://fake"

    @property
    def server_start(self) -> float | None:
        return self.start

    async def open(self) -> None:
        self.opened += 1
        failure = self.failures.pop(0) if self.failures else None
        if failure is not None:
            raise failure

    async def watch(self) -> str:
        await self.lose.wait()
        self.lose.clear()
        return "lost on purpose"

    async def close(self) -> None:
        self.closed += 1

    async def probe(self, within: float) -> float:
        return self.start


def make_policy(link: FakeLink, waits: list[str], *, base: float = 0.01, probe: float = 0.0) -> ReconnectLogic:
    return ReconnectLogic(link, backoff=Backoff(base=base, cap=base, jitter=0.0), probe_interval=probe,
                          fail_fast=True, on_waiting=waits.append)


async def test_policy_gives_up_at_once_on_a_fatal_start_up_error() -> None:
    link, waits = FakeLink(ScopeNotFoundError("GET /health: 404")), []
    policy = make_policy(link, waits)
    policy.start()
    assert policy.task is not None
    with pytest.raises(ScopeNotFoundError):
        await policy.task
    assert (link.opened, link.closed, waits, policy.last_error) == (1, 1, [], "GET /health: 404")


async def test_policy_retries_what_can_heal_warning_once_and_saying_when_it_is_back(
    caplog: pytest.LogCaptureFixture,
) -> None:
    link, waits = FakeLink(ScopeConnectionError("refused"), ScopeConnectionError("refused")), []
    policy = make_policy(link, waits)
    with caplog.at_level(logging.DEBUG, logger="metadj_bridge.scope.reconnect"):
        policy.start()
        await wait_for(lambda: policy.state is ReconnectState.CONNECTED, 5, "the third attempt to connect")
        link.lose.set()  # once it has worked, a lost session is retried as well
        await wait_for(lambda: link.opened == 4 and policy.state is ReconnectState.CONNECTED, 5, "a fourth attempt")
        await policy.stop()
        await policy.stop()
    assert policy.stopped and waits == ["refused", "refused", "lost on purpose"]
    levels = [(r.levelno, r.getMessage().split(":")[0]) for r in caplog.records if r.name.endswith("reconnect")]
    assert [lvl for lvl, _ in levels].count(logging.WARNING) == 2  # unavailable at start-up; lost later
    assert sum("restored" in msg for _, msg in levels) == 2


async def test_policy_rejoins_a_restarted_server_without_waiting_out_the_backoff() -> None:
    # A failed load on a server that answers waits out its backoff (60 s here), unless the server restarts.
    link, waits = FakeLink(None, PipelineLoadError("could not load")), []
    policy = make_policy(link, waits, base=60.0, probe=0.02)
    policy.start()
    try:
        await wait_for(lambda: policy.state is ReconnectState.CONNECTED, 5, "the first session")
        link.lose.set()
        await wait_for(lambda: policy.state is ReconnectState.WAITING and link.opened == 2, 5, "the 60 s wait")
        await asyncio.sleep(0.2)
        assert link.opened == 2  # the same server: no new attempt yet
        link.start = 2.0  # the server restarted
        await wait_for(lambda: link.opened == 3, 2, "an attempt long before the 60 s")
    finally:
        await policy.stop()
