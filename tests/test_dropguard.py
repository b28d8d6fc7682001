"""Keeping Scope's queue clear for the drop: the span (pure), the sender holding changes in it, and a show
that reacts to drops setting it from the breakdown's last kick."""

from __future__ import annotations

import asyncio
import math

import pytest

from metadj_bridge.profile.model import (
    Mapping,
    PromptSpec,
    ShowProfile,
    SignalSource,
    Target,
    Theme,
    TriggerSource,
)
from metadj_bridge.run.dropguard import NO_SPAN, clear_span, reacts_to_drop
from metadj_bridge.run.show import ShowRunner
from metadj_bridge.signals import Signal, TempoState, Trigger
from tests.test_sender import clocked_sender

BEAT = 0.5  # 120 BPM: a bar of 2 s


def grid(bar_position: float, bpm: float = 120.0, playing: bool = True) -> TempoState:
    return TempoState(bpm=bpm, beat=bar_position, phase=bar_position % 1.0, bar_position=bar_position,
                      beats_per_bar=4, source="audio", playing=playing)


def test_no_span_outside_a_breakdown_or_without_a_playing_grid() -> None:
    assert clear_span(10.0, grid(1.0), 1.0, chunk_s=0.6, rtt=0.0) == NO_SPAN
    assert clear_span(10.0, grid(1.0), None, chunk_s=0.6, rtt=0.0) == NO_SPAN
    assert clear_span(10.0, None, 0.0, chunk_s=0.6, rtt=0.0) == NO_SPAN
    assert clear_span(10.0, grid(1.0, playing=False), 0.0, chunk_s=0.6, rtt=0.0) == NO_SPAN
    assert clear_span(10.0, grid(1.0, bpm=math.nan), 0.0, chunk_s=0.6, rtt=0.0) == NO_SPAN


def test_the_span_reaches_a_chunk_and_a_beat_before_the_downbeat_and_a_beat_after() -> None:
    # Bar position 1: the next downbeat is 3 beats (1.5 s) away, at 11.5.
    start, end = clear_span(10.0, grid(1.0), 0.0, chunk_s=0.4, rtt=0.05)
    assert start == pytest.approx(11.5 - BEAT - 0.4 - 0.05 - 0.05)
    assert end == pytest.approx(11.5 + BEAT)
    # Just after a downbeat the span is still the one around it.
    start, end = clear_span(10.0, grid(0.25), 0.0, chunk_s=0.4, rtt=0.0)
    assert (start, end) == pytest.approx((9.875 - BEAT - 0.45, 9.875 + BEAT))
    # Past it by more than a beat: the next one.
    start, end = clear_span(10.0, grid(1.5), 0.0, chunk_s=0.4, rtt=0.0)
    assert end == pytest.approx(11.25 + BEAT)
    # A longer chunk and round trip would take more than three quarters of the bar: the beat after gives way.
    start, end = clear_span(10.0, grid(1.0), 0.0, chunk_s=0.6, rtt=0.1)
    assert start == pytest.approx(11.5 - BEAT - 0.75) and end == pytest.approx(start + 1.5)


def test_a_fast_tempo_and_a_long_chunk_still_leave_a_quarter_of_each_bar() -> None:
    bar = 4 * 60.0 / 174.0
    start, end = clear_span(10.0, grid(2.0, bpm=174.0), 0.0, chunk_s=0.8, rtt=0.1)
    assert end - start == pytest.approx(0.75 * bar)
    downbeat = 10.0 + 2 * 60.0 / 174.0
    assert start == pytest.approx(downbeat - 0.75 * bar) and end == pytest.approx(downbeat)


def test_the_breakdown_s_last_kick_says_where_the_bar_begins() -> None:
    # The grid says bar position 0 at 10.0, but the kick left off at 9.2: downbeats at 9.7, 11.7, ...
    start, end = clear_span(10.0, grid(0.0), 0.0, chunk_s=0.4, rtt=0.0, anchor=9.2)
    assert (start, end) == pytest.approx((9.7 - BEAT - 0.45, 9.7 + BEAT))  # 9.7 is less than a beat ago
    start, end = clear_span(10.3, grid(0.6), 0.0, chunk_s=0.4, rtt=0.0, anchor=9.2)
    assert (start, end) == pytest.approx((11.7 - BEAT - 0.45, 11.7 + BEAT))  # 9.7 + a beat is gone: the next
    start, end = clear_span(12.1, grid(0.2), 0.0, chunk_s=0.4, rtt=0.0, anchor=9.2)
    assert end == pytest.approx(11.7 + BEAT)
    # An anchor that is no time at all leaves the grid's own bar in charge.
    for nonsense in (-math.inf, math.nan):
        assert clear_span(10.0, grid(0.0), 0.0, chunk_s=0.4, rtt=0.0, anchor=nonsense) == clear_span(
            10.0, grid(0.0), 0.0, chunk_s=0.4, rtt=0.0)


def test_only_a_profile_that_reacts_to_drops_is_guarded() -> None:
    assert reacts_to_drop(drop_profile())
    calm = drop_profile()
    calm = ShowProfile(path=calm.path, name=calm.name, themes=calm.themes, mappings=calm.mappings[:1])
    assert not reacts_to_drop(calm)


async def test_the_sender_holds_changes_in_the_span_and_lets_an_action_through() -> None:
    now = [0.0]
    sender, channel = clocked_sender(now, assumed_fps=20, settle=False)
    try:
        sender.keep_clear(1.0, 2.0)
        now[0] = 1.2
        sender.update(base_seed=43)
        await asyncio.sleep(0.05)
        assert channel.messages == []  # held for the span's end
        now[0] = 1.5
        sender.action(reset_cache=True)
        await asyncio.sleep(0.05)
        assert channel.messages == [{"base_seed": 43, "reset_cache": True}]  # the action takes the change along
        now[0] = 2.5
        sender.update(base_seed=44)
        await asyncio.sleep(0.05)
        assert channel.messages[-1] == {"base_seed": 44}  # after the span: as before
    finally:
        await sender.aclose()


def drop_profile() -> ShowProfile:
    return ShowProfile(
        path="/shows/drop.yaml",
        name="drop",
        themes=(Theme("one", (PromptSpec("red desert"), PromptSpec("blue ice"))),),
        mappings=(
            Mapping("mix", SignalSource("midi.cc.1.19"), (), Target("prompt_mix", "mix", (0, 1))),
            Mapping("drop", TriggerSource("audio.drop"), (), Target("action", "reset_cache")),
        ),
    )


async def test_a_show_keeps_the_downbeat_after_a_breakdown_s_last_kick_clear() -> None:
    now = [100.0]
    sender, channel = clocked_sender(now, assumed_fps=20, settle=False)
    # The beat grid's bar is two beats off the music's: its bar position says 0 at 100.0.
    runner = ShowRunner(drop_profile(), sender, lambda t: grid(((t - 100.0) / BEAT) % 4.0), clock=lambda: now[0])
    try:
        runner.board.set(Signal("audio.section", 0.0, 1.0))
        runner.board.fire(Trigger("audio.breakdown", 1.0, {"seconds": 3.6}))  # the last kick at 96.4
        runner.step()
        # Downbeats at 96.9 + 2n: the next is 100.9, kept clear from 100.9 - 0.5 - 0.6 - 0.05 (the chunk is 12
        # frames at the assumed 20 fps) to 100.9 + 0.35 (three quarters of the bar in all).
        now[0] = 99.9
        runner.board.set(Signal("midi.cc.1.19", 0.3, 2.0))
        runner.step()
        await asyncio.sleep(0.05)
        assert channel.messages == []
        now[0] = 100.92
        runner.board.fire(Trigger("audio.drop", 3.0, {"seconds": 4.5}))
        runner.board.set(Signal("audio.section", 1.0, 3.0))
        runner.step()
        await asyncio.sleep(0.05)
        assert len(channel.messages) == 1 and channel.messages[0]["reset_cache"] is True
        assert "prompts" in channel.messages[0]  # the knob's change went with the reset
        # A full section again: nothing held.
        now[0] = 102.0
        runner.board.set(Signal("midi.cc.1.19", 0.6, 4.0))
        runner.step()
        await asyncio.sleep(0.05)
        assert len(channel.messages) == 2
    finally:
        await sender.aclose()
