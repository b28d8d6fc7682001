"""Prompt themes: index picking, prompt lists and the bar cycle."""

from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from metadj_bridge.errors import ConfigError
from metadj_bridge.mapping.themes import ThemeCycle, ThemeDeck, pick_index, select_index
from metadj_bridge.profile.model import CycleSettings, PromptSpec, Theme
from metadj_bridge.signals import TempoState


def theme(name: str, *texts: str, blend: bool = False, weights: tuple[float, ...] = ()) -> Theme:
    ws = weights or (1.0,) * len(texts)
    return Theme(name, tuple(PromptSpec(t, w) for t, w in zip(texts, ws, strict=True)), blend=blend)


def at_beat(beat: float, bpb: int = 4, playing: bool = True) -> TempoState:
    return TempoState(120.0, beat, beat % 1, beat % bpb, bpb, "link", playing)


def test_next_and_previous_wrap_around() -> None:
    rng = random.Random(0)
    assert pick_index("next", 2, 3, rng) == 0
    assert pick_index("previous", 0, 3, rng) == 2
    assert pick_index("next", 0, 1, rng) == 0


@given(st.integers(2, 8), st.data())
def test_random_never_picks_the_current_one(count: int, data: st.DataObject) -> None:
    current = data.draw(st.integers(0, count - 1))
    rng = random.Random(data.draw(st.integers(0, 1000)))
    picks = {pick_index("random", current, count, rng) for _ in range(30)}
    assert current not in picks
    assert picks <= set(range(count))


def test_select_maps_the_travel_to_equal_zones() -> None:
    assert [select_index(v, 3) for v in (0.0, 0.3, 0.34, 0.66, 0.67, 1.0)] == [0, 0, 1, 1, 2, 2]
    assert select_index(-0.5, 3) == 0


def test_focus_prompt_alone_in_a_non_blend_theme() -> None:
    deck = ThemeDeck((theme("neon", "a", "b", "c", weights=(1.0, 0.0, 0.5)),))
    assert deck.prompts() == [{"text": "a", "weight": 1.0}]
    deck.focus = 1
    assert deck.prompts() == [{"text": "b", "weight": 1.0}]  # weight 0 alone would be nothing: weight 1
    deck.focus = 2
    assert deck.prompts() == [{"text": "c", "weight": 0.5}]


def test_mix_replaces_the_focus_by_two_prompts() -> None:
    deck = ThemeDeck((theme("neon", "a", "b", "c"),))
    assert deck.prompts(mix=(0, 2, 0.25)) == [{"text": "a", "weight": 0.75}, {"text": "c", "weight": 0.25}]
    assert deck.prompts(mix=(0, 2, 0.0)) == [{"text": "a", "weight": 1.0}]
    assert deck.prompts(mix=(0, 2, 1.0)) == [{"text": "c", "weight": 1.0}]
    assert deck.prompts(mix=(0, 5, 0.5)) == [{"text": "a", "weight": 1.0}]  # not in this theme: focus


def test_blend_theme_sends_all_weighted_and_leaves_out_zeros() -> None:
    deck = ThemeDeck((theme("mix", "a", "b", "c", blend=True, weights=(1.0, 0.5, 0.0)),))
    assert deck.prompts() == [{"text": "a", "weight": 1.0}, {"text": "b", "weight": 0.5}]
    assert deck.prompts(overrides={2: 0.3, 0: 0.0}) == [{"text": "b", "weight": 0.5}, {"text": "c", "weight": 0.3}]
    assert deck.prompts(overrides={0: 0.0, 1: 0.0}) == [{"text": "a", "weight": 1.0}]  # never empty


def test_deck_rejects_empty_themes_and_unknown_start() -> None:
    with pytest.raises(ConfigError):
        ThemeDeck(())
    with pytest.raises(ConfigError, match="nothing"):
        ThemeDeck((theme("a", "x"),), start_theme="nothing")
    assert ThemeDeck((theme("a", "x"), theme("b", "y")), start_theme="b").name == "b"


def test_cycle_is_due_every_n_bars_from_its_last_change() -> None:
    cycle = ThemeCycle(CycleSettings(every_bars=4, prompt_every_bars=2), ("a", "b", "c"))
    dues = []
    for bar in range(10):
        theme_due, prompt_due = cycle.advance(at_beat(bar * 4 + 0.5))
        dues.append((bar, theme_due, prompt_due))
        if theme_due:
            cycle.restart()
        elif prompt_due:
            cycle.restart(theme=False)
    assert [bar for bar, t, _ in dues if t] == [4, 8]
    assert [bar for bar, t, p in dues if p and not t] == [2, 6]


def test_cycle_waits_without_tempo_and_restarts_on_a_jump_back() -> None:
    cycle = ThemeCycle(CycleSettings(every_bars=2), ("a", "b"))
    assert cycle.advance(None) == (False, False)
    assert cycle.advance(at_beat(40.0, playing=False)) == (False, False)
    cycle.advance(at_beat(40.0))
    assert cycle.advance(at_beat(4.0)) == (False, False)  # the grid jumped back: count from here
    assert cycle.advance(at_beat(12.0)) == (True, False)


def test_cycle_order_over_its_members() -> None:
    names = ("a", "b", "c", "d")
    seq = ThemeCycle(CycleSettings(themes=("b", "d")), names)
    rng = random.Random(1)
    assert seq.next_theme(1, rng) == 3
    assert seq.next_theme(3, rng) == 1
    assert seq.next_theme(0, rng) == 1  # outside the cycle: its first member
    rnd = ThemeCycle(CycleSettings(order="random"), names)
    assert all(rnd.next_theme(2, rng) != 2 for _ in range(30))
    with pytest.raises(ConfigError, match="zzz"):
        ThemeCycle(CycleSettings(themes=("zzz",)), names)
