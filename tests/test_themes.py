"""Prompt themes: index picking, prompt lists and the bar cycle."""

from __future__ import annotations

import random
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from metadj_bridge.errors import ConfigError
from metadj_bridge.mapping.engine import MappingEngine
from metadj_bridge.mapping.themes import ThemeCycle, ThemeDeck, pick_index, select_index
from metadj_bridge.profile.model import (
    CycleSettings,
    Mapping,
    PromptSpec,
    ShowProfile,
    SignalSource,
    Smooth,
    Target,
    Theme,
)
from metadj_bridge.signals import TempoState
from tests.test_engine import Driver, show, trig


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
    assert cycle.advance(at_beat(8.0)) == (False, False)
    assert cycle.advance(at_beat(12.0)) == (True, False)


def test_bars_that_went_by_while_the_show_stood_still_do_not_move_the_cycle_on() -> None:
    """The bridge frozen or the computer asleep for 20 bars: the next step sees the grid 20 bars on. The theme and
    the prompt stay; the cycle counts on from where it was (1 bar since the last change: the prompt's second bar
    is the next one, the theme's fourth the one after the prompt's next change)."""
    cycle = ThemeCycle(CycleSettings(every_bars=4, prompt_every_bars=2), ("a", "b"))
    steps = [cycle.advance(at_beat(beat)) for beat in (0.5, 2.0, 4.5)]  # bar 0, then bar 1
    assert steps == [(False, False)] * 3
    assert cycle.advance(at_beat(84.5)) == (False, False)  # bar 21, a step after bar 1: frozen in between
    assert cycle.advance(at_beat(88.5)) == (False, True)  # bar 22: the prompt's 2 bars (bar 1, then this one)
    cycle.restart(theme=False)
    assert cycle.advance(at_beat(92.5)) == (False, False)
    assert cycle.advance(at_beat(96.5)) == (True, True)  # bar 24: the theme's 4 bars (and the prompt's 2)


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


# ------------------------------------------------------------------ a control's value across theme changes

DUO = Theme("duo", (PromptSpec("red desert"), PromptSpec("blue ice cave")))
PAIR = Theme("pair", (PromptSpec("green forest"), PromptSpec("golden city")))
BLEND = Theme("blend", (PromptSpec("moss", 1.0), PromptSpec("fog", 0.5)), blend=True)


def crossfade_show(**kw: Any) -> ShowProfile:
    """A crossfade knob on ``midi.cc.1.19`` (no default: nothing counts before it moves), theme and prompt buttons."""
    return show(
        Mapping("crossfade", SignalSource("midi.cc.1.19"), (), Target("prompt_mix", "mix", (0, 1))),
        Mapping("fog", SignalSource("midi.cc.1.20"), (), Target("prompt_weight", "weight", (1,))),
        trig("next", Target("theme", "next")), trig("prompt", Target("prompt", "next")),
        themes=kw.pop("themes", (DUO, PAIR, BLEND)), **kw)


def mixed(a: str, b: str, v: float) -> list[dict[str, Any]]:
    return [{"text": a, "weight": 1.0 - v}, {"text": b, "weight": v}]


def test_a_crossfade_held_through_a_theme_change_mixes_the_new_theme_at_once() -> None:
    d = Driver(MappingEngine(crossfade_show()))
    assert d.step({"midi.cc.1.19": 0.5}).parameters["prompts"] == mixed("red desert", "blue ice cave", 0.5)
    out = d.step({"midi.cc.1.19": 0.5}, "next")  # the knob stays where it is
    assert out.theme == "pair"
    assert out.parameters["prompts"] == mixed("green forest", "golden city", 0.5)
    # The theme's own transition already goes to the mixed prompts: Scope never shows "green forest" alone.
    assert out.actions["transition"]["target_prompts"] == mixed("green forest", "golden city", 0.5)
    assert d.step({"midi.cc.1.19": 0.5}).parameters["prompts"] == mixed("green forest", "golden city", 0.5)
    out = d.step({"midi.cc.1.19": 0.5}, "next", "next", "next")  # blend, duo, pair: and back again
    assert out.theme == "pair" and out.parameters["prompts"] == mixed("green forest", "golden city", 0.5)


def test_a_prompt_weight_held_through_a_theme_change_applies_when_its_theme_comes() -> None:
    d = Driver(MappingEngine(crossfade_show()))
    d.step({"midi.cc.1.20": 0.25})  # moved in "duo" (not a blend theme: no effect there)
    out = d.step({"midi.cc.1.20": 0.25}, "next", "next")
    assert out.theme == "blend"
    assert out.parameters["prompts"] == [{"text": "moss", "weight": 1.0}, {"text": "fog", "weight": 0.25}]


def test_a_focus_move_still_takes_over_from_the_mix_until_the_mix_moves() -> None:
    d = Driver(MappingEngine(crossfade_show()))
    d.step({"midi.cc.1.19": 0.5})
    assert d.step({"midi.cc.1.19": 0.5}, "prompt").parameters["prompts"] == [{"text": "blue ice cave", "weight": 1.0}]
    # The button was pressed after the knob: a theme change does not bring the knob back.
    out = d.step({"midi.cc.1.19": 0.5}, "next")
    assert out.parameters["prompts"] == [{"text": "green forest", "weight": 1.0}]
    assert d.step({"midi.cc.1.19": 0.75}).parameters["prompts"] == mixed("green forest", "golden city", 0.75)


def test_an_untouched_knob_leaves_every_theme_alone() -> None:
    d = Driver(MappingEngine(crossfade_show()))
    assert d.step().parameters["prompts"] == [{"text": "red desert", "weight": 1.0}]
    assert d.step({}, "next").parameters["prompts"] == [{"text": "green forest", "weight": 1.0}]


def knob(default: float | None = None, *transforms: Any, where: str = "") -> Mapping:
    return Mapping("crossfade", SignalSource("midi.cc.1.19", default, where=where), transforms,
                   Target("prompt_mix", "mix", (0, 1)), where=where)


@pytest.mark.parametrize(("before", "after"), [
    (knob(), knob()),  # saved as it was
    (knob(0.2, where="show.yaml:10:5"), knob(0.2, where="show.yaml:12:5")),  # lines added above it
    (knob(0.2), knob(0.2, Smooth(0.01, 0.01))),  # a new transform
    (knob(), knob(0.2)),  # a default added
], ids=["same", "moved", "transforms", "default"])
def test_a_reload_that_keeps_the_mapping_keeps_the_knob(before: Mapping, after: Mapping) -> None:
    d = Driver(MappingEngine(show(before, themes=(DUO, PAIR))))
    d.step({"midi.cc.1.19": 0.0})
    assert d.step({"midi.cc.1.19": 0.5}).parameters["prompts"] == mixed("red desert", "blue ice cave", 0.5)
    d.engine.switch_profile(show(after, themes=(DUO, PAIR), start_theme="duo"), d.now)
    out = d.step({"midi.cc.1.19": 0.5})
    assert out.parameters["prompts"] == mixed("red desert", "blue ice cave", 0.5)
    assert out.actions["transition"]["target_prompts"] == mixed("red desert", "blue ice cave", 0.5)
