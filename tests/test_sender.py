"""The ParameterSender's state, pacing and driver, without a network.

The channel here is a recording stand-in for aiortc's RTCDataChannel (the sender only calls ``send`` and
reads ``readyState``); the same sender runs against the emulator over real WebRTC in test_session.py.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

import pytest

from metadj_bridge.errors import ParameterError
from metadj_bridge.scope.pacing import carry_transition
from metadj_bridge.scope.sender import PacerConfig, ParameterSender, ParameterState, SendPacer


class RecordingChannel:
    def __init__(self) -> None:
        self.readyState = "open"
        self.bufferedAmount = 0
        self.messages: list[dict[str, object]] = []

    def send(self, data: str) -> None:
        self.messages.append(json.loads(data))


def clocked_sender(now: list[float], **pacer: Any) -> tuple[ParameterSender, RecordingChannel]:
    """A started sender on the test's own clock ``now[0]``, sending into a RecordingChannel. Unless ``pacer`` says
    otherwise: 12-frame chunks at an assumed 12 fps, one message per second of that clock."""
    config = PacerConfig(**{"min_interval": 0.01, "max_interval": 10.0, "chunk_frames": 12, "assumed_fps": 12, **pacer})
    sender = ParameterSender(pacer=config, clock=lambda: now[0])
    channel = RecordingChannel()
    sender.attach(channel)
    sender.start()
    return sender, channel


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


def test_settle_repeats_each_sent_key_once_riding_along() -> None:
    state = ParameterState()
    state.set("noise_scale", 0.3)
    assert state.take_message(settle=True) == {"noise_scale": 0.3}
    state.set("base_seed", 4)
    # The repeat of noise_scale rides with the next change...
    assert state.take_message(settle=True) == {"base_seed": 4, "noise_scale": 0.3}
    # ...and base_seed's goes alone once changes stop; then nothing.
    assert state.has_settle and not state.has_pending
    assert state.take_message(settle=True) == {"base_seed": 4}
    assert state.take_message(settle=True) is None and not state.has_settle


def test_settle_leaves_out_transitions_and_mouse_moves() -> None:
    state = ParameterState()
    state.set("prompts", [{"text": "a", "weight": 1.0}])
    state.set("ctrl_input", {"button": [], "mouse": [3.0, 0.0]})  # Scope adds mouse moves up: never twice
    state.take_message(settle=True)
    # A transition's target becomes the prompts; repeating them would cut the transition short.
    state.set("transition", {"target_prompts": [{"text": "b", "weight": 1.0}], "num_steps": 8})
    message = state.take_message(settle=True)
    assert message is not None and set(message) == {"transition"}
    assert state.take_message(settle=True) is None


def test_transition_target_becomes_lasting_prompts() -> None:
    state = ParameterState()
    state.set("prompts", [{"text": "a", "weight": 1.0}])
    state.take_message()
    target = [{"text": "b", "weight": 1.0}]
    state.set("transition", {"target_prompts": target, "num_steps": 8, "temporal_interpolation_method": "slerp"})
    message = state.take_message()
    assert message is not None and "prompts" not in message and message["transition"]["num_steps"] == 8
    assert state.snapshot()["prompts"] == target


def test_prompts_retarget_a_pending_transition_instead_of_cancelling_it() -> None:
    """Prompts alone would cancel the morph on Scope's side: the waiting transition heads for them instead."""
    state = ParameterState()
    state.set("transition", {"target_prompts": [{"text": "b", "weight": 1.0}], "num_steps": 8})
    state.set("prompts", [{"text": "c", "weight": 1.0}])
    assert state.take_message() == {"transition": {"target_prompts": [{"text": "c", "weight": 1.0}], "num_steps": 8}}
    assert state.snapshot()["prompts"] == [{"text": "c", "weight": 1.0}]
    state.set("prompts", [{"text": "d", "weight": 1.0}])
    assert state.take_message() == {"prompts": [{"text": "d", "weight": 1.0}]}


def test_prompts_sent_while_a_transition_runs_carry_it_on() -> None:
    """A prompt change during a running morph goes out as a transition over the steps left; after it ends,
    prompts go alone."""
    morph = {"target_prompts": [{"text": "b", "weight": 1.0}], "num_steps": 8, "temporal_interpolation_method": "slerp"}
    message, running = carry_transition({"transition": morph}, None, 10.0, 0.5)
    assert message == {"transition": morph} and running == (14.0, morph)
    calm = [{"text": "b", "weight": 0.7}, {"text": "b, intense", "weight": 0.3}]
    message, running = carry_transition({"prompts": calm, "base_seed": 43}, running, 11.2, 0.5)
    assert message["base_seed"] == 43 and message["prompts"] == calm
    assert message["transition"] == {"target_prompts": calm, "num_steps": 6, "temporal_interpolation_method": "slerp"}
    message, running = carry_transition({"base_seed": 44}, running, 12.0, 0.5)
    assert message == {"base_seed": 44} and running is not None
    message, running = carry_transition({"prompts": calm}, running, 13.9, 0.5)
    assert message["transition"]["num_steps"] == 1
    message, running = carry_transition({"prompts": calm}, running, 14.0, 0.5)
    assert message == {"prompts": calm} and running is None
    assert carry_transition({"transition": {**morph, "num_steps": 0}}, None, 1.0, 0.5)[1] is None


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
    # The next boundary is at 1.8 s; aim 0.2 x 0.6 s and the video delay (0.1 s) before it.
    assert pacer.next_send_at(now, last_send=1.1) == pytest.approx(1.8 - 0.22)
    # Sent just before 1.8 s: the next message waits for the slot before 2.4 s.
    assert pacer.next_send_at(now, last_send=1.45) == pytest.approx(2.4 - 0.22)
    pacer.set_rtt(0.1)  # a remote Scope: send earlier by the round trip
    assert pacer.next_send_at(1.4, last_send=1.1) == pytest.approx(1.8 - 0.32)
    # Without aiming the pacer only spaces messages a chunk apart.
    plain = SendPacer(PacerConfig(chunk_frames=12, align=False))
    for i in range(31):
        plain.on_frame(i / 20)
    assert plain.next_send_at(now, last_send=1.1) == pytest.approx(1.7)


def test_pacer_sends_an_isolated_change_at_once() -> None:
    pacer = SendPacer(PacerConfig(chunk_frames=12))
    for i in range(31):
        pacer.on_frame(i / 20)
    # A chunk had passed since the last message when the change came: no reason to wait for the aimed slot.
    assert pacer.next_send_at(1.5, last_send=0.8, isolated=True) == 1.5
    # Changes that kept coming wait for it (1.68 s), so the message carries the newest values.
    assert pacer.next_send_at(1.5, last_send=0.8) == pytest.approx(1.8 - 0.22)


def test_pacer_takes_the_chunk_size_from_the_offer_over_the_table() -> None:
    pacer = SendPacer(PacerConfig(chunk_frames=4))  # the table says 4
    for i in range(60):
        pacer.on_frame(i / 20)
    assert pacer.interval(59 / 20) == pytest.approx(0.2)
    pacer.set_chunk_frames(12)  # the server says 12
    assert (pacer.chunk_frames, pacer.chunk_source) == (12, "offer")
    assert pacer.interval(59 / 20) == pytest.approx(0.6)
    pacer.set_chunk_frames(None)  # an offer that does not say changes nothing
    assert pacer.chunk_frames == 12
    # Chunks are still counted from the session's first frame: 0.0, 0.6, 1.2, ... so the last boundary is 2.4 s.
    assert pacer.next_send_at(2.7, last_send=2.45) == pytest.approx(3.0 - 0.22)


def test_a_drop_makes_the_pacer_believe_the_chunk_its_sends_imply() -> None:
    """Believing 4 frames where Scope makes 12 (20 fps): sends every 0.2 s fill Scope's queue; when the drop is
    seen, the sends since the queue was empty say how long a chunk is, so the belief goes to 12 or a little
    more in one step (doubling alone would give 8, still too short, and a second round of drops)."""
    pacer = SendPacer(PacerConfig(chunk_frames=4))
    waiting, first_drop = 0, None
    for i in range(400):  # frames at 20 fps; from 10 s on a send every 4th frame; Scope takes one per 12 frames
        t = i / 20
        pacer.on_frame(t)
        if i >= 200 and i % 12 == 6:
            waiting = max(0, waiting - 1)
        if i >= 200 and i % 4 == 0:
            pacer.on_sent(t)
            if waiting == 8:
                first_drop = t if first_drop is None else first_drop
            else:
                waiting += 1
        if first_drop is not None and t >= first_drop + 0.25:  # the next look at Scope's log shows one drop
            break
    pacer.widen(t, dropped=1)
    assert pacer.chunk_source == "drops"
    assert 12 <= pacer.chunk_frames <= 16


def test_a_drop_without_a_run_of_sends_doubles_the_belief() -> None:
    """Another client filled Scope's queue; our few sends say nothing of the chunk: the belief doubles."""
    pacer = SendPacer(PacerConfig(chunk_frames=4))
    for i in range(200):
        pacer.on_frame(i / 20)
    pacer.on_sent(9.0)
    pacer.widen(9.5, dropped=1)
    assert (pacer.chunk_frames, pacer.chunk_source) == (8, "drops")


def test_pacer_counts_chunks_again_after_a_silence() -> None:
    pacer = SendPacer(PacerConfig(chunk_frames=12, restart_gap=1.0))
    for i in range(17):  # 0.0 .. 0.8 s; boundary at 0.0 and (would be) 0.6
        pacer.on_frame(i / 20)
    start = 2.13  # the output ran dry for more than a second: the next frame starts a chunk
    for i in range(40):
        pacer.on_frame(start + i / 20)
    now = start + 39 / 20  # boundaries at start + 0.6 k: the next one at start + 2.4
    assert pacer.next_send_at(now, last_send=now - 0.1) == pytest.approx(start + 2.4 - 0.22)


def test_pacer_forgets_the_session_on_reset() -> None:
    pacer = SendPacer(PacerConfig(chunk_frames=12, assumed_fps=15))
    for i in range(40):
        pacer.on_frame(i / 20)
    pacer.reset()
    assert pacer.fps(2.0) is None and pacer.interval(2.0) == pytest.approx(12 / 15)


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


async def test_sender_budgets_actions_too_and_merges_them(caplog: pytest.LogCaptureFixture) -> None:
    now = [0.0]
    sender, channel = clocked_sender(now)  # one message per 1.0 s of the sender's clock, which we control
    try:
        sender.update(noise_scale=0.1)
        await asyncio.sleep(0.05)
        assert channel.messages == [{"noise_scale": 0.1}]  # an isolated change: nothing to wait for
        for v in (0.2, 0.3, 0.4):
            sender.update(noise_scale=v)
        sender.update(transition={"target_prompts": ["storm"], "num_steps": 8})
        sender.action(reset_cache=True)
        await asyncio.sleep(0.05)
        assert len(channel.messages) == 1  # held, actions too: the sender's clock has not advanced a chunk
        now[0] = 1.1  # a chunk, counted a little slow (the sender's model of Scope's queue)
        with caplog.at_level(logging.DEBUG, logger="metadj_bridge.scope.sender"):
            sender.update(base_seed=3)  # wakes the sender; its slot has come
            await asyncio.sleep(0.05)
        # One message: the merged knob, the transition and the reset.
        assert len(channel.messages) == 2
        last = channel.messages[-1]
        assert last["noise_scale"] == 0.4 and last["base_seed"] == 3 and last["reset_cache"] is True
        assert last["transition"]["target_prompts"] == [{"text": "storm", "weight": 1.0}]
        assert "[Scope] Sending prompt: storm (1.00)" in caplog.text
        now[0] = 2.3
        sender.update(base_seed=6)
        await asyncio.sleep(0.05)
        # The next message repeats the lasting values of the one before (the settle step), not its one-shots.
        assert channel.messages[-1] == {"noise_scale": 0.4, "base_seed": 6}
    finally:
        await sender.aclose()
        await sender.aclose()  # closing twice is harmless


async def test_sender_repeats_a_value_scope_dropped() -> None:
    """A value Scope dropped (here: the stand-in channel loses it) reaches it with the repeat a chunk later."""
    sender = ParameterSender(pacer=PacerConfig(min_interval=0.01, max_interval=0.05, chunk_frames=1, assumed_fps=100))
    lost: list[dict[str, object]] = []
    channel = RecordingChannel()
    applied: dict[str, object] = {}

    def scope_receives(data: str) -> None:
        message = json.loads(data)
        if not lost:
            lost.append(message)  # Scope's queue was full: dropped
            return
        channel.messages.append(message)
        applied.update(message)

    channel.send = scope_receives  # type: ignore[method-assign]
    sender.attach(channel)
    sender.start()
    try:
        sender.update(noise_scale=0.8, base_seed=5)
        async with asyncio.timeout(5):
            while applied != {"noise_scale": 0.8, "base_seed": 5}:  # noqa: ASYNC110 - a poll of the stand-in
                await asyncio.sleep(0.01)
        assert lost == [{"noise_scale": 0.8, "base_seed": 5}]
        await asyncio.sleep(0.2)
        assert len(channel.messages) == 1  # repeated once, not for ever
    finally:
        await sender.aclose()


async def test_aclose_returns_when_update_ran_in_the_same_turn() -> None:
    """Python 3.11's wait_for swallowed the cancellation when the sender woke in the same turn: aclose hung."""
    for _ in range(5):
        sender = ParameterSender(pacer=PacerConfig(chunk_frames=12, assumed_fps=12))
        channel = RecordingChannel()
        sender.attach(channel)
        sender.start()
        sender.update(noise_scale=0.1)
        await asyncio.sleep(0.02)
        sender.update(noise_scale=0.2)
        await asyncio.sleep(0)  # the sender now waits for its slot
        sender.update(noise_scale=0.3)  # wakes it in the turn aclose cancels it
        async with asyncio.timeout(5):
            await sender.aclose()
        assert channel.messages == [{"noise_scale": 0.1}]


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


def test_pacer_skips_a_slot_now_and_then_so_a_waiting_message_drains() -> None:
    """Sending at every boundary keeps whatever waits in Scope's queue there; the model counts chunks 5% slow."""
    pacer = SendPacer(PacerConfig(chunk_frames=12))
    frame = 0
    sends: list[float] = []
    now, last, target = 1.0, -10.0, None
    while now < 30.0:
        while frame / 20 <= now:
            pacer.on_frame(frame / 20)
            frame += 1
        if target is None:  # a knob that keeps moving: something is always pending
            target = pacer.next_send_at(now, last)
        if now >= target:
            pacer.on_sent(now)
            sends.append(now)
            last, target = now, None
        now = round(now + 0.005, 3)
    gaps = [round((b - a) / 0.6) for a, b in zip(sends, sends[1:], strict=False)]
    assert set(gaps) == {1, 2} and 1 <= gaps.count(2) <= len(gaps) // 5  # mostly every chunk, a few skipped
    assert pacer.backlog(now) < 1.0


def test_the_beat_state_goes_whole() -> None:
    """Scope takes a client's beat state only with bpm and beat_phase together: one changed key brings the rest."""
    state = ParameterState()
    beat = {"bpm": 124.0, "beat_phase": 0.5, "bar_position": 1.5, "beat_count": 9, "is_playing": True}
    for key, value in beat.items():
        state.set(key, value)
    assert state.take_message() == beat
    state.set("beat_phase", 0.75)
    state.set("bar_position", 1.75)
    assert state.take_message() == {**beat, "beat_phase": 0.75, "bar_position": 1.75}
    state.set("base_seed", 7)
    assert state.take_message() == {"base_seed": 7}


@pytest.mark.parametrize("gather", [0.0, 0.2])
async def test_a_moment_s_changes_go_together_with_a_gather(gather: float) -> None:
    """A bar's seed step and the drop's reset a few hops later: with a gather they go as one message; without
    one, as two (in Scope's queue the second would wait a chunk behind the first)."""
    now = [0.0]
    sender, channel = clocked_sender(now, gather=gather)
    try:
        sender.update(base_seed=43)
        await asyncio.sleep(0.02)
        now[0] = 0.03
        sender.action(reset_cache=True)
        now[0] = 0.25
        await asyncio.sleep(0.3)
        if gather:
            assert channel.messages == [{"base_seed": 43, "reset_cache": True}]
        else:
            assert channel.messages == [{"base_seed": 43}, {"base_seed": 43, "reset_cache": True}]  # + its repeat
    finally:
        await sender.aclose()


async def test_an_action_does_not_wait_for_the_interval() -> None:
    """Knob changes go once per chunk; a cache reset goes at once (Scope takes it with its next chunk), and the
    changes after it wait for the budget again."""
    now = [0.0]
    sender, channel = clocked_sender(now)
    try:
        sender.update(base_seed=1)
        await asyncio.sleep(0.02)
        now[0] = 0.3
        sender.update(base_seed=2)
        await asyncio.sleep(0.02)
        assert channel.messages == [{"base_seed": 1}]  # a chunk is 1 s here: the knob waits
        now[0] = 0.35
        sender.action(reset_cache=True)
        await asyncio.sleep(0.05)
        assert channel.messages == [{"base_seed": 1}, {"base_seed": 2, "reset_cache": True}]
        now[0] = 0.5
        sender.update(base_seed=3)
        await asyncio.sleep(0.02)
        assert len(channel.messages) == 2
    finally:
        await sender.aclose()


async def test_a_pause_line_just_after_the_shows_own_pause_is_not_taken_for_someone_elses() -> None:
    """Scope's log is read four times a second over the network: the line of the show's own pause can arrive after
    the show's resume went out. It is not undone as a pause from elsewhere (a second paused: false and a warning
    that someone else paused Scope); a pause logged seconds later is."""
    now = [0.0]
    sender, channel = clocked_sender(now)
    try:
        sender.update(paused=False)
        assert sender.send_now() is not None
        now[0] = 5.0
        assert sender.on_paused_elsewhere()  # nobody here paused: undone
        assert sender.send_now() == {"paused": False}
        now[0] = 10.0
        sender.update(paused=True)
        assert sender.send_now() == {"paused": True}
        now[0] = 10.5
        sender.update(paused=False)
        assert sender.send_now() == {"paused": False}
        now[0] = 10.8  # the show's own pause line arrives now
        assert not sender.on_paused_elsewhere()
        now[0] = 14.0  # a pause from elsewhere, later
        assert sender.on_paused_elsewhere()
        assert sender.send_now() == {"paused": False}
        assert [m for m in channel.messages if "paused" in m] == [{"paused": False}, {"paused": False},
                                                                 {"paused": True}, {"paused": False}, {"paused": False}]
    finally:
        await sender.aclose()
