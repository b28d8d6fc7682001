"""The ParameterSender's state, pacing and driver, without a network.

The channel here is a recording stand-in for aiortc's RTCDataChannel (the sender only calls ``send`` and
reads ``readyState``); the same sender runs against the emulator over real WebRTC in test_session.py.
"""

from __future__ import annotations

import asyncio
import json
import logging

import pytest

from metadj_bridge.errors import ParameterError
from metadj_bridge.scope.sender import PacerConfig, ParameterSender, ParameterState, SendPacer


class RecordingChannel:
    def __init__(self) -> None:
        self.readyState = "open"
        self.bufferedAmount = 0
        self.messages: list[dict[str, object]] = []

    def send(self, data: str) -> None:
        self.messages.append(json.loads(data))


def test_state_merges_changes_into_one_message() -> None:
    state = ParameterState()
    for i in range(10):
        state.set("noise_scale", i / 10)
    state.set("base_seed", 7)
    assert state.take_message() == {"noise_scale": 0.9, "base_seed": 7}
    assert state.merged == 10  # 11 changes, one message
    assert state.take_message() is None


def test_state_skips_values_scope_already_has() -> None:
    state = ParameterState()
    state.set("noise_scale", 0.5)
    state.take_message()
    state.set("noise_scale", 0.6)
    state.set("noise_scale", 0.5)  # back to what was sent
    assert state.take_message() is None


def test_one_shots_go_once_and_never_into_the_snapshot() -> None:
    state = ParameterState()
    state.set("noise_scale", 0.3)
    state.set("reset_cache", True)
    assert state.take_message() == {"noise_scale": 0.3, "reset_cache": True}
    assert state.take_message() is None
    assert state.snapshot() == {"noise_scale": 0.3}


def test_transition_target_becomes_lasting_prompts() -> None:
    state = ParameterState()
    state.set("prompts", [{"text": "a", "weight": 1.0}])
    state.take_message()
    target = [{"text": "b", "weight": 1.0}]
    state.set("transition", {"target_prompts": target, "num_steps": 8, "temporal_interpolation_method": "slerp"})
    message = state.take_message()
    assert message is not None and "prompts" not in message and message["transition"]["num_steps"] == 8
    assert state.snapshot()["prompts"] == target


def test_prompts_cancel_a_pending_transition() -> None:
    state = ParameterState()
    state.set("transition", {"target_prompts": [{"text": "b", "weight": 1.0}], "num_steps": 8})
    state.set("prompts", [{"text": "c", "weight": 1.0}])
    assert state.take_message() == {"prompts": [{"text": "c", "weight": 1.0}]}


def test_new_session_voids_stale_actions_and_keeps_later_changes() -> None:
    state = ParameterState()
    state.set("noise_scale", 0.3)
    state.set("reset_cache", True)
    initial = state.snapshot()  # goes into the new offer
    state.begin_session(initial)
    assert state.take_message() is None
    assert state.snapshot() == {"noise_scale": 0.3}
    # A change made while the offer was under way is not lost.
    initial = state.snapshot()
    state.set("base_seed", 9)
    state.begin_session(initial)
    assert state.take_message() == {"base_seed": 9}


def test_pacer_follows_returning_frames_within_bounds() -> None:
    pacer = SendPacer(PacerConfig(min_interval=0.05, max_interval=2.0, chunk_frames=12, assumed_fps=15))
    assert pacer.interval(0.0) == pytest.approx(12 / 15)  # nothing measured yet
    for i in range(60):  # 20 fps
        pacer.on_frame(i / 20)
    assert pacer.fps(59 / 20) == pytest.approx(20)
    assert pacer.interval(59 / 20) == pytest.approx(0.6)
    # A fast pipeline is capped at the floor, a slow one at the ceiling.
    fast = SendPacer(PacerConfig(min_interval=0.05, max_interval=2.0, chunk_frames=1))
    for i in range(100):
        fast.on_frame(i / 60)
    assert fast.interval(99 / 60) == 0.05
    slow = SendPacer(PacerConfig(min_interval=0.05, max_interval=1.0, chunk_frames=12))
    for i in range(10):
        slow.on_frame(i / 4)
    assert slow.interval(9 / 4) == 1.0


def test_pacer_falls_back_to_ceiling_when_video_stops() -> None:
    pacer = SendPacer(PacerConfig(min_interval=0.05, max_interval=2.0, chunk_frames=12))
    for i in range(40):
        pacer.on_frame(i / 20)
    assert pacer.interval(2.0) == pytest.approx(0.6)
    assert pacer.interval(10.0) == 2.0  # frames stopped: do not feed a stalled queue


def test_pacer_aims_just_before_the_next_chunk_boundary() -> None:
    pacer = SendPacer(PacerConfig(chunk_frames=12, align_margin=0.2))
    for i in range(31):  # 20 fps: chunks start arriving at 0.0, 0.6 and 1.2 s
        pacer.on_frame(i / 20)
    now = 1.5
    # The next boundary is at 1.8 s; aim 0.2 x 0.6 s before it, unless that is too soon after the last send.
    assert pacer.next_send_at(now, last_send=1.1) == pytest.approx(1.8 - 0.12)
    assert pacer.next_send_at(now, last_send=1.45) == pytest.approx(2.4 - 0.12)
    pacer.set_rtt(0.1)  # a remote Scope: send earlier by the round trip
    assert pacer.next_send_at(now, last_send=1.1) == pytest.approx(1.8 - 0.22)
    # Without aiming the pacer only spaces messages a chunk apart.
    plain = SendPacer(PacerConfig(chunk_frames=12, align=False))
    for i in range(31):
        plain.on_frame(i / 20)
    assert plain.next_send_at(now, last_send=1.45) == pytest.approx(2.05)


def test_pacer_config_rejects_inverted_bounds() -> None:
    with pytest.raises(ValueError, match="min_interval"):
        PacerConfig(min_interval=1.0, max_interval=0.5)


async def test_sender_rejects_invalid_values_and_keeps_state() -> None:
    sender = ParameterSender()
    sender.update(noise_scale=0.4)
    with pytest.raises(ParameterError):
        sender.update(noise_scale=0.5, height=320)
    assert sender.snapshot() == {"noise_scale": 0.4}
    assert sender.stats().rejected == 1


async def test_sender_paces_continuous_changes_and_rushes_actions(caplog: pytest.LogCaptureFixture) -> None:
    now = [0.0]
    sender = ParameterSender(pacer=PacerConfig(min_interval=0.01, max_interval=10.0, chunk_frames=12, assumed_fps=12))
    # assumed 12 fps / 12 frames = one message per 1.0 s of the sender's clock, which we control.
    sender._clock = lambda: now[0]
    channel = RecordingChannel()
    sender.attach(channel)
    sender.start()
    try:
        sender.update(noise_scale=0.1)
        await asyncio.sleep(0.05)
        assert channel.messages == [{"noise_scale": 0.1}]  # first message: nothing to wait for
        for v in (0.2, 0.3, 0.4):
            sender.update(noise_scale=v)
        await asyncio.sleep(0.05)
        assert len(channel.messages) == 1  # held: the sender's clock has not advanced a chunk
        with caplog.at_level(logging.DEBUG, logger="metadj_bridge.scope.sender"):
            sender.update(transition={"target_prompts": ["storm"], "num_steps": 8})
            await asyncio.sleep(0.05)
        # The action went out at once, with the merged continuous change.
        assert channel.messages[-1]["noise_scale"] == 0.4
        assert channel.messages[-1]["transition"]["target_prompts"] == [{"text": "storm", "weight": 1.0}]
        assert "[Scope] Sending prompt: storm (1.00)" in caplog.text
        sender.update(noise_scale=0.9)
        await asyncio.sleep(0.05)
        assert len(channel.messages) == 2
        now[0] = 1.5  # a chunk later the held change goes out
        sender.update(base_seed=3)
        await asyncio.sleep(0.05)
        assert channel.messages[-1] == {"noise_scale": 0.9, "base_seed": 3}
    finally:
        await sender.aclose()
        await sender.aclose()  # closing twice is harmless


async def test_sender_holds_changes_without_an_open_channel() -> None:
    sender = ParameterSender()
    sender.start()
    try:
        sender.update(noise_scale=0.2)
        await asyncio.sleep(0.02)
        channel = RecordingChannel()
        channel.readyState = "connecting"
        sender.attach(channel)
        await asyncio.sleep(0.02)
        assert channel.messages == []
        channel.readyState = "open"
        sender.update(base_seed=1)
        await asyncio.sleep(0.05)
        assert channel.messages == [{"noise_scale": 0.2, "base_seed": 1}]
    finally:
        await sender.aclose()
    with pytest.raises(RuntimeError, match="closed"):
        sender.start()
