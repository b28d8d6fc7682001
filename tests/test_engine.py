"""The mapping engine: sources, targets, combining, themes, actions and profile switches, stepped directly."""

from __future__ import annotations

import math
import os
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from metadj_bridge.errors import ConfigError
from metadj_bridge.mapping.engine import EngineOutput, MappingEngine
from metadj_bridge.parameters import BUILTIN_SPECS, DENOISING_PRESETS, ParameterSchema
from metadj_bridge.profile.model import (
    CycleSettings,
    Envelope,
    Lfo,
    Mapping,
    PanicSettings,
    ProfileSwitch,
    PromptSpec,
    PulseSettings,
    Quantize,
    Range,
    ScopeSettings,
    ShowProfile,
    SignalSource,
    Smooth,
    Target,
    Theme,
    Threshold,
    TransitionSettings,
    TriggerSource,
)
from metadj_bridge.signals import TempoState, Trigger

NEON = Theme("neon", (PromptSpec("neon city"), PromptSpec("tunnel"), PromptSpec("rain")), pad=("note", 1, 36))
OCEAN = Theme("ocean", (PromptSpec("waves"), PromptSpec("reef")), parameters={"noise_scale": 0.5}, pad=("note", 1, 37))
FOREST = Theme("forest", (PromptSpec("moss", 1.0), PromptSpec("fog", 0.5)), blend=True)


def show(*mappings: Mapping, **kw: Any) -> ShowProfile:
    kw.setdefault("themes", (NEON, OCEAN, FOREST))
    kw.setdefault("path", "/shows/club/night.yaml")
    return ShowProfile(name=kw.pop("name", "night"), mappings=mappings, **kw)


def sig(name: str, target: Target | str, *transforms: Any, combine: str = "last", default: float = 0.0,
        mname: str | None = None) -> Mapping:
    t = Target("parameter", target) if isinstance(target, str) else target
    return Mapping(mname or f"{name}->{t.kind}.{t.name}", SignalSource(name, default), tuple(transforms), t, combine)  # type: ignore[arg-type]


def trig(name: str, target: Target, *transforms: Any, mname: str | None = None) -> Mapping:
    return Mapping(mname or f"{name}->{target.kind}.{target.name}", TriggerSource(name), tuple(transforms), target)


def tempo(now: float, bpm: float = 120.0, playing: bool = True, bpb: int = 4) -> TempoState:
    beat = now * bpm / 60.0
    return TempoState(bpm, beat, beat % 1.0, beat % bpb, bpb, "link", playing)


class Driver:
    """Steps an engine on a clock; inputs default to nothing."""

    def __init__(self, engine: MappingEngine, now: float = 0.0, tempo_bpm: float | None = None) -> None:
        self.engine = engine
        self.now = now
        self.bpm = tempo_bpm

    def step(self, signals: dict[str, float] | None = None, *triggers: str | Trigger, dt: float = 0.01) -> EngineOutput:
        self.now += dt
        trigs = [t if isinstance(t, Trigger) else Trigger(t, self.now) for t in triggers]
        t = tempo(self.now, self.bpm) if self.bpm else None
        return self.engine.step(signals or {}, trigs, self.now, t)


# ------------------------------------------------------------------ lasting state


def test_initial_parameters_hold_the_lasting_state() -> None:
    profile = show(scope=ScopeSettings(denoising=(1000, 500, 250), interpolation="linear",
                                       parameters={"kv_cache_attention_bias": 0.3}), start_theme="ocean")
    params = MappingEngine(profile).initial_parameters()
    assert params == {
        "prompts": [{"text": "waves", "weight": 1.0}],
        "spatial_interpolation_method": "linear",
        "denoising_step_list": [1000, 500, 250],
        "paused": False,
        "kv_cache_attention_bias": 0.3,
        "noise_scale": 0.5,
    }


def test_theme_parameters_override_scope_parameters_and_mappings_override_both() -> None:
    profile = show(sig("midi.cc.1.1", "noise_scale"), scope=ScopeSettings(parameters={"noise_scale": 0.9}),
                   start_theme="ocean")
    d = Driver(MappingEngine(profile))
    assert MappingEngine(show(scope=ScopeSettings(parameters={"noise_scale": 0.9}), start_theme="ocean")
                         ).initial_parameters()["noise_scale"] == 0.5
    assert d.step().parameters["noise_scale"] == 0.0  # the mapping's default until the knob is seen
    assert d.step({"midi.cc.1.1": 0.42}).parameters["noise_scale"] == 0.42


def test_values_are_clamped_into_the_schema_range_and_rounded() -> None:
    profile = show(
        sig("a", "kv_cache_attention_bias"),
        sig("b", "vace_context_scale", Range(0, 1, 0, 5)),
        sig("c", "base_seed", Range(0, 1, 0, 100)),
        sig("d", "noise_controller"),
        sig("e", "spatial_interpolation_method"),
    )
    d = Driver(MappingEngine(profile))
    p = d.step({"a": 0.0, "b": 0.9, "c": 0.123, "d": 0.7, "e": 0.2}).parameters
    assert p["kv_cache_attention_bias"] == 0.01
    assert p["vace_context_scale"] == 2.0
    assert p["base_seed"] == 12 and isinstance(p["base_seed"], int)
    assert p["noise_controller"] is True
    assert p["spatial_interpolation_method"] == "linear"
    assert d.step({"a": 1 / 3}).parameters["kv_cache_attention_bias"] == 0.3333


def test_denoising_steps_picks_a_preset() -> None:
    d = Driver(MappingEngine(show(sig("k", "denoising_steps"))))
    assert d.step({"k": 0.0}).parameters["denoising_step_list"] == DENOISING_PRESETS["fast"]
    assert d.step({"k": 0.5}).parameters["denoising_step_list"] == DENOISING_PRESETS["balanced"]
    assert d.step({"k": 1.0}).parameters["denoising_step_list"] == DENOISING_PRESETS["quality"]


@pytest.mark.parametrize(
    ("combine", "expected"), [("max", [0.6, 0.6, 0.6]), ("sum", [0.9, 0.8, 1.0]), ("last", [0.3, 0.2, 0.4])]
)
def test_combine_rules(combine: str, expected: list[float]) -> None:
    d = Driver(MappingEngine(show(sig("a", "noise_scale", combine=combine), sig("b", "noise_scale", combine=combine))))
    assert d.step({"a": 0.6, "b": 0.3}).parameters["noise_scale"] == pytest.approx(expected[0])
    assert d.step({"b": 0.2}).parameters["noise_scale"] == pytest.approx(expected[1])
    assert d.step({"b": 0.4}).parameters["noise_scale"] == pytest.approx(expected[2])


def test_last_means_the_most_recently_changed_mapping() -> None:
    d = Driver(MappingEngine(show(sig("a", "noise_scale"), sig("b", "noise_scale"))))
    d.step({"a": 0.1, "b": 0.2})
    assert d.step({"a": 0.7}).parameters["noise_scale"] == 0.7
    assert d.step({"a": 0.7, "b": 0.25}).parameters["noise_scale"] == 0.25  # a unchanged, b moved


def test_unchanged_inputs_give_identical_parameters() -> None:
    profile = show(sig("a", "noise_scale", Smooth(0.05, 0.05)), sig("b", Target("prompt_mix")))
    d = Driver(MappingEngine(profile))
    d.step({"a": 0.2, "b": 0.0})
    d.step({"a": 0.9, "b": 0.3})
    outs = [d.step({"a": 0.9, "b": 0.3}, dt=0.05).parameters for _ in range(60)]
    assert outs[-1] == outs[-2]
    assert outs[-1]["noise_scale"] == 0.9


def test_smoothing_through_the_engine_matches_the_closed_form() -> None:
    d = Driver(MappingEngine(show(sig("a", "noise_scale", Smooth(0.2, 0.2)))))
    d.step({"a": 0.0})
    d.step({"a": 1.0})
    start = d.now  # the new value is held from the step that saw it
    for _ in range(5):
        out = d.step({"a": 1.0}, dt=0.03)
        assert out.parameters["noise_scale"] == pytest.approx(1 - math.exp(-(d.now - start) / 0.2), abs=6e-5)


def test_unknown_or_unmappable_parameters_are_config_errors() -> None:
    with pytest.raises(ConfigError, match="noise_scal.*did you mean 'noise_scale'"):
        MappingEngine(show(sig("a", "noise_scal")))
    with pytest.raises(ConfigError, match="output_sinks"):
        MappingEngine(show(sig("a", "output_sinks")))
    with pytest.raises(ConfigError, match="quantize"):
        MappingEngine(show(sig("a", "noise_scale", Quantize())))
    with pytest.raises(ConfigError, match="nowhere"):
        MappingEngine(show(trig("t", Target("theme", "set", ("nowhere",)))))


def test_a_pipeline_schema_from_the_server_adds_parameters() -> None:
    schema = ParameterSchema.from_server("p", {"p": {"config_schema": {"properties": {
        "strength": {"type": "number", "minimum": 0, "maximum": 4}}}}})
    d = Driver(MappingEngine(show(sig("a", "strength", Range(0, 1, 0, 10))), schema))
    assert d.step({"a": 0.7}).parameters["strength"] == 4.0


# ------------------------------------------------------------------ property: ranges


PARAMS = ("noise_scale", "kv_cache_attention_bias", "vace_context_scale", "base_seed", "denoising_steps")
inputs = st.lists(
    st.tuples(
        st.floats(0.0, 0.5),
        st.dictionaries(st.sampled_from(["a", "b", "c"]), st.floats(-5, 5) | st.sampled_from([math.nan, math.inf]),
                        max_size=3),
        st.lists(st.sampled_from(["t.pulse", "t.theme", "t.prompt", "t.panic", "t.env"]), max_size=3),
    ),
    max_size=25,
)


@settings(max_examples=40, deadline=None)
@given(inputs)
def test_outputs_stay_inside_the_schema(steps: list[tuple[float, dict[str, float], list[str]]]) -> None:
    profile = show(
        sig("a", "noise_scale", Range(0, 1, -1, 3, clamp=False), combine="sum"),
        sig("b", "noise_scale", Smooth(0.1, 0.3), combine="sum"),
        sig("a", "kv_cache_attention_bias", mname="a2"),
        sig("c", "vace_context_scale", Range(0, 1, -3, 9)),
        sig("c", "base_seed", Range(0, 1, -50, 50), mname="c2"),
        sig("b", "denoising_steps", mname="b2"),
        sig("a", Target("prompt_mix"), mname="mix"),
        sig("c", Target("prompt_weight", argument=(1,)), mname="w"),
        Mapping("lfo", Lfo("sine", 2.0), (Range(0, 1, -2, 2),), Target("parameter", "kv_cache_attention_bias"), "max"),
        Mapping("env", Envelope("t.env", 0.1, 0.5), (), Target("parameter", "vace_context_scale"), "max"),
        trig("t.pulse", Target("action", "pulse_noise")),
        trig("t.theme", Target("theme", "random")),
        trig("t.prompt", Target("prompt", "next"), Quantize("beat", 50)),
        trig("t.panic", Target("action", "panic")),
        pulse=PulseSettings(amount=0.8, decay=0.5),
    )
    engine = MappingEngine(profile, seed=3)
    d = Driver(engine, tempo_bpm=128)
    schema = ParameterSchema("longlive")
    for dt, values, names in steps:
        out = d.step(values, *names, dt=dt)
        for key, value in out.parameters.items():
            schema.check(key, value)  # raises on anything Scope would not take
            spec = BUILTIN_SPECS[key]
            if spec.kind in ("number", "integer"):
                assert spec.minimum is None or value >= spec.minimum
                assert spec.maximum is None or value <= spec.maximum
        assert out.parameters["prompts"], "always at least one prompt"
        assert all(p["weight"] > 0 for p in out.parameters["prompts"])
        if "transition" in out.actions:
            assert out.actions["transition"]["target_prompts"] == out.parameters["prompts"]


# ------------------------------------------------------------------ triggers and quantize


def test_trigger_latches_its_velocity_into_a_parameter() -> None:
    latch = trig("midi.note.1.40", Target("parameter", "vace_context_scale"), Range(0, 1, 0, 2))
    d = Driver(MappingEngine(show(latch)))
    assert "vace_context_scale" not in d.step().parameters
    assert d.step({}, Trigger("midi.note.1.40", 0.0, {"velocity": 0.25})).parameters["vace_context_scale"] == 0.5
    assert d.step().parameters["vace_context_scale"] == 0.5


def test_threshold_turns_a_signal_into_actions() -> None:
    d = Driver(MappingEngine(show(sig("audio.high", Target("action", "reset_cache"), Threshold(0.6, 0.4)))))
    fired = [bool(d.step({"audio.high": x}).actions) for x in (0.1, 0.7, 0.9, 0.5, 0.61, 0.3, 0.65)]
    assert fired == [False, True, False, False, False, False, True]


def test_a_signal_on_a_trigger_target_gets_the_default_threshold() -> None:
    d = Driver(MappingEngine(show(sig("midi.cc.1.9", Target("theme", "next")))))
    themes = [d.step({"midi.cc.1.9": x}).theme for x in (0.0, 0.5, 0.7, 0.5, 0.3, 0.9)]
    assert themes == ["neon", "neon", "ocean", "ocean", "ocean", "forest"]


@settings(max_examples=40, deadline=None)
@given(
    st.floats(70, 180),
    st.floats(0, 200),
    st.sampled_from(["beat", "bar"]),
    st.floats(0.0, 8.0),
    st.floats(0.002, 0.03),
)
def test_quantised_trigger_fires_at_the_boundary_minus_lookahead(
    bpm: float, lookahead_ms: float, to: str, press: float, dt: float
) -> None:
    profile = show(trig("pad", Target("action", "reset_cache"), Quantize(to, lookahead_ms)))  # type: ignore[arg-type]
    engine = MappingEngine(profile)
    now = press
    out = engine.step({}, [Trigger("pad", now)], now, tempo(now, bpm))
    beats_per_s = bpm / 60
    land_beat = now * beats_per_s + lookahead_ms / 1000 * beats_per_s
    unit = 1 if to == "beat" else 4
    boundary = math.ceil(land_beat / unit - 1e-9) * unit
    due = boundary / beats_per_s - lookahead_ms / 1000
    fired_at = now if out.actions else None
    while fired_at is None:
        now += dt
        if engine.step({}, [], now, tempo(now, bpm)).actions:
            fired_at = now
        assert now < due + 1.0, "never fired"
    assert due - 1e-6 <= fired_at < due + dt + 1e-6


def test_quantize_without_tempo_fires_at_once() -> None:
    d = Driver(MappingEngine(show(trig("pad", Target("action", "reset_cache"), Quantize("bar", 100)))))
    assert d.step({}, "pad").actions == {"reset_cache": True}
    assert d.step().actions == {}


# ------------------------------------------------------------------ themes and prompts


def test_theme_ops_wrap_set_and_transition_with_theme_steps() -> None:
    profile = show(
        trig("n", Target("theme", "next")),
        trig("p", Target("theme", "previous")),
        trig("s", Target("theme", "set", ("forest",))),
        transitions=TransitionSettings(theme_steps=6, prompt_steps=2, method="linear"),
    )
    d = Driver(MappingEngine(profile))
    out = d.step({}, "p")
    assert out.theme == "forest" and out.events == ("theme neon -> forest",)
    assert out.actions["transition"] == {
        "target_prompts": [{"text": "moss", "weight": 1.0}, {"text": "fog", "weight": 0.5}],
        "num_steps": 6,
        "temporal_interpolation_method": "linear",
    }
    assert out.parameters["prompts"] == out.actions["transition"]["target_prompts"]
    assert d.step({}, "n").theme == "neon"
    assert d.step({}, "s").theme == "forest"
    again = d.step({}, "s")
    assert again.actions == {} and again.events == ()


def test_theme_select_switches_only_when_the_selection_changes() -> None:
    d = Driver(MappingEngine(show(sig("f", Target("theme", "select")), start_theme="ocean")))
    assert d.step({"f": 0.0}).theme == "ocean"  # the starting position selects nothing
    assert d.step({"f": 0.1}).theme == "ocean"  # still in the first zone, which was not chosen
    out = d.step({"f": 0.9})
    assert out.theme == "forest" and "transition" in out.actions
    assert d.step({"f": 0.95}).actions == {}
    assert d.step({"f": 0.2}).theme == "neon"


def test_theme_random_never_stays() -> None:
    d = Driver(MappingEngine(show(trig("r", Target("theme", "random"))), seed=5))
    seen = []
    for _ in range(20):
        before = d.engine.theme
        after = d.step({}, "r").theme
        assert after != before
        seen.append(after)
    assert set(seen) == {"neon", "ocean", "forest"}


def test_focus_moves_with_prompt_steps_and_wraps() -> None:
    profile = show(trig("n", Target("prompt", "next")), trig("b", Target("prompt", "previous")),
                   transitions=TransitionSettings(theme_steps=8, prompt_steps=3))
    d = Driver(MappingEngine(profile))
    out = d.step({}, "b")
    assert out.focus == 2
    assert out.parameters["prompts"] == [{"text": "rain", "weight": 1.0}]
    assert out.actions["transition"]["num_steps"] == 3
    assert d.step({}, "n").focus == 0


def test_prompt_mix_takes_over_when_moved_and_yields_to_a_focus_move() -> None:
    profile = show(sig("x", Target("prompt_mix", argument=(1, 2))), trig("n", Target("prompt", "next")))
    d = Driver(MappingEngine(profile))
    assert d.step({"x": 0.0}).parameters["prompts"] == [{"text": "neon city", "weight": 1.0}]
    out = d.step({"x": 0.25})
    assert out.parameters["prompts"] == [{"text": "tunnel", "weight": 0.75}, {"text": "rain", "weight": 0.25}]
    assert "transition" not in out.actions  # a fader moves prompts continuously
    out = d.step({}, "n")
    assert out.parameters["prompts"] == [{"text": "tunnel", "weight": 1.0}]
    assert out.actions["transition"]["num_steps"] == 3
    assert d.step({"x": 1.0}).parameters["prompts"] == [{"text": "rain", "weight": 1.0}]


def test_prompt_weight_moves_a_blend_theme() -> None:
    d = Driver(MappingEngine(show(sig("w", Target("prompt_weight", argument=(1,))), start_theme="forest")))
    assert d.step({"w": 0.0}).parameters["prompts"] == [{"text": "moss", "weight": 1.0}, {"text": "fog", "weight": 0.5}]
    assert d.step({"w": 0.8}).parameters["prompts"] == [{"text": "moss", "weight": 1.0}, {"text": "fog", "weight": 0.8}]
    assert d.step({"w": 0.0}).parameters["prompts"] == [{"text": "moss", "weight": 1.0}]


@settings(max_examples=30, deadline=None)
@given(st.lists(st.sampled_from(["tn", "tp", "tr", "pn", "pr", "x"]), min_size=1, max_size=20),
       st.integers(1, 12), st.integers(1, 12))
def test_every_theme_change_sends_theme_steps_and_focus_moves_prompt_steps(
    presses: list[str], theme_steps: int, prompt_steps: int
) -> None:
    profile = show(
        trig("tn", Target("theme", "next")), trig("tp", Target("theme", "previous")),
        trig("tr", Target("theme", "random")), trig("pn", Target("prompt", "next")),
        trig("pr", Target("prompt", "random")),
        transitions=TransitionSettings(theme_steps=theme_steps, prompt_steps=prompt_steps),
    )
    d = Driver(MappingEngine(profile, seed=1))
    for press in presses:
        before = (d.engine.theme, d.engine.focus)
        out = d.step({}, press)
        if out.theme != before[0]:
            assert out.actions["transition"]["num_steps"] == theme_steps
            assert out.focus == 0
        elif out.focus != before[1] and not d.engine.profile.theme(out.theme).blend:
            assert out.actions["transition"]["num_steps"] == prompt_steps
        else:
            assert "transition" not in out.actions
        if "transition" in out.actions:
            assert out.actions["transition"]["target_prompts"] == out.parameters["prompts"]


def test_cycle_changes_theme_every_n_bars_and_prompt_every_m() -> None:
    profile = show(cycle=CycleSettings(every_bars=2, prompt_every_bars=1, themes=("neon", "ocean")))
    engine = MappingEngine(profile)
    events = []
    for i in range(1, 165):
        now = i / 20  # 120 BPM: a bar every 2 s
        out = engine.step({}, [], now, tempo(now))
        events.extend((now, e) for e in out.events)
    assert events == [
        (2.0, "prompt 1 -> 2 of 3"),
        (4.0, "theme neon -> ocean"),
        (6.0, "prompt 1 -> 2 of 2"),
        (8.0, "theme ocean -> neon"),
    ]


# ------------------------------------------------------------------ actions


def test_pulse_adds_a_decaying_boost_to_noise_scale() -> None:
    profile = show(sig("a", "noise_scale"), trig("beat", Target("action", "pulse_noise")),
                   pulse=PulseSettings(amount=0.25, decay=0.35))
    d = Driver(MappingEngine(profile))
    assert d.step({"a": 0.4}).parameters["noise_scale"] == 0.4
    start = d.now + 0.01
    assert d.step({}, "beat").parameters["noise_scale"] == 0.65
    for _ in range(5):
        out = d.step(dt=0.1)
        expected = 0.4 + 0.25 * math.exp(-(d.now - start) / 0.35)
        assert out.parameters["noise_scale"] == pytest.approx(expected, abs=6e-5)
    level = 0.25 * math.exp(-(d.now + 0.01 - start) / 0.35)
    assert d.step({}, "beat").parameters["noise_scale"] == pytest.approx(0.4 + level + 0.25, abs=6e-5)
    assert "reset_cache" not in d.step().actions
    for _ in range(100):
        out = d.step(dt=0.1)
    assert out.parameters["noise_scale"] == 0.4


def test_pulse_is_clamped_to_the_range() -> None:
    profile = show(trig("beat", Target("action", "pulse_noise")), pulse=PulseSettings(amount=0.5, decay=1.0))
    d = Driver(MappingEngine(profile))
    assert d.step({}, "beat").parameters["noise_scale"] == 1.0  # Scope's 0.7 + 0.5, clamped


def test_pause_resume_toggle() -> None:
    profile = show(trig("p", Target("action", "pause")), trig("r", Target("action", "resume")),
                   trig("t", Target("action", "toggle_pause")))
    d = Driver(MappingEngine(profile))
    out = d.step({}, "p")
    assert out.parameters["paused"] is True and out.events == ("paused",)
    assert d.step({}, "p").events == ()
    assert d.step({}, "t").parameters["paused"] is False
    assert d.step({}, "t").parameters["paused"] is True
    assert d.step({}, "r").parameters["paused"] is False
    assert not d.engine.paused


def test_reset_cache_is_a_one_shot() -> None:
    d = Driver(MappingEngine(show(trig("x", Target("action", "reset_cache")))))
    assert d.step({}, "x").actions == {"reset_cache": True}
    assert d.step().actions == {}
    assert "reset_cache" not in d.step().parameters


def test_panic_latches_a_calm_state_and_releases_it() -> None:
    profile = show(
        sig("a", "noise_scale"),
        trig("panic", Target("action", "panic")), trig("pause", Target("action", "pause")),
        trig("n", Target("theme", "next")), trig("beat", Target("action", "pulse_noise")),
        panic=PanicSettings(parameters={"noise_scale": 0.3, "kv_cache_attention_bias": 0.5}),
    )
    d = Driver(MappingEngine(profile))
    d.step({"a": 0.9}, "n", "pause")
    out = d.step({}, "panic")
    assert d.engine.calm
    assert out.theme == "neon" and out.focus == 0
    assert out.parameters["noise_scale"] == 0.3 and out.parameters["kv_cache_attention_bias"] == 0.5
    assert out.parameters["paused"] is False
    assert out.actions["transition"]["num_steps"] == 8
    assert "panic" in out.events
    assert d.step({"a": 0.8}, "beat").parameters["noise_scale"] == 0.3  # mappings and pulses muted
    out = d.step({}, "panic")
    assert not d.engine.calm and out.events == ("panic released",)
    assert out.parameters["noise_scale"] == 0.8
    assert out.parameters["kv_cache_attention_bias"] == 1.0  # back to Scope's own value


def test_panic_transition_is_sent_even_on_the_start_theme() -> None:
    d = Driver(MappingEngine(show(trig("panic", Target("action", "panic")))))
    assert d.step({}, "panic").actions["transition"]["target_prompts"] == [{"text": "neon city", "weight": 1.0}]


def test_a_mapping_on_paused_sets_the_pause_state() -> None:
    d = Driver(MappingEngine(show(sig("hold", "paused"), trig("r", Target("action", "resume")))))
    assert d.step({"hold": 0.0}).parameters["paused"] is False
    assert d.step({"hold": 1.0}).parameters["paused"] is True
    assert d.step({}, "r").parameters["paused"] is False
    assert d.step({"hold": 0.0}).parameters["paused"] is False


# ------------------------------------------------------------------ LFOs and envelopes in the engine


def test_lfo_follows_the_tempo_and_holds_when_it_stops() -> None:
    profile = show(Mapping("wobble", Lfo("saw", 4.0), (), Target("parameter", "vace_context_scale")))
    engine = MappingEngine(profile)
    assert engine.step({}, [], 1.0, None).parameters["vace_context_scale"] == 0.5  # free-running 120 BPM: beat 2
    out = engine.step({}, [], 2.0, TempoState(100.0, 9.0, 0.0, 1.0, 4, "link", True))
    assert out.parameters["vace_context_scale"] == 0.25
    stopped = TempoState(100.0, 11.0, 0.0, 3.0, 4, None, False)
    assert engine.step({}, [], 3.0, stopped).parameters["vace_context_scale"] == 0.25


def test_envelope_starts_on_its_trigger() -> None:
    profile = show(Mapping("hit", Envelope("pad", 0.0, 1.0, beats=True), (), Target("parameter", "vace_context_scale")))
    d = Driver(MappingEngine(profile), tempo_bpm=120)
    assert d.step().parameters["vace_context_scale"] == 0.0
    assert d.step({}, "pad").parameters["vace_context_scale"] == 1.0
    start = d.now
    out = d.step(dt=0.1)
    assert out.parameters["vace_context_scale"] == pytest.approx(math.exp(-5 * (d.now - start) * 2), abs=6e-5)
    for _ in range(6):
        out = d.step(dt=0.1)
    assert out.parameters["vace_context_scale"] == 0.0


# ------------------------------------------------------------------ profiles and feedback


def test_profile_target_and_switches_resolve_relative_to_the_profile() -> None:
    profile = show(
        trig("go", Target("profile", argument=("../ambient.yaml",))),
        switches=(ProfileSwitch("midi.program.1", "calm.yaml", program=2),
                  ProfileSwitch("osc./metadj/profile/x", "/abs/x.yaml")),
    )
    d = Driver(MappingEngine(profile))
    assert d.step({}, "go").profile_switch == os.path.normpath("/shows/ambient.yaml")
    assert d.step({}, Trigger("midi.program.1", 0.0, {"program": 3})).profile_switch is None
    assert d.step({}, Trigger("midi.program.1", 0.0, {"program": 2})).profile_switch == "/shows/club/calm.yaml"
    assert d.step({}, "osc./metadj/profile/x").profile_switch == "/abs/x.yaml"
    assert d.step().profile_switch is None


def test_switch_profile_keeps_smoothing_and_moves_to_the_new_start_theme() -> None:
    smooth = sig("a", "noise_scale", Smooth(1.0, 1.0), mname="energy")
    first = show(smooth)
    second = show(sig("a", "noise_scale", Smooth(1.0, 1.0), Range(0, 1, 0, 1), mname="energy"),
                  themes=(OCEAN, NEON), name="ambient", transitions=TransitionSettings(theme_steps=12))
    d = Driver(MappingEngine(first))
    d.step({"a": 0.0})
    for _ in range(10):
        before = d.step({"a": 1.0}, dt=0.05).parameters["noise_scale"]
    d.engine.switch_profile(second, d.now)
    out = d.step({"a": 1.0}, dt=0.05)
    assert before < out.parameters["noise_scale"] < before + 0.06  # keeps gliding, no jump
    assert out.theme == "ocean"
    assert out.actions["transition"] == {
        "target_prompts": [{"text": "waves", "weight": 1.0}], "num_steps": 12, "temporal_interpolation_method": "slerp",
    }
    assert "profile night -> ambient" in out.events
    assert d.step({"a": 1.0}).actions == {}


def test_switch_profile_drops_old_mappings_to_scope_values() -> None:
    d = Driver(MappingEngine(show(sig("a", "kv_cache_attention_bias"))))
    assert d.step({"a": 0.2}).parameters["kv_cache_attention_bias"] == 0.2
    d.engine.switch_profile(show(name="plain"), d.now)
    assert d.step({"a": 0.9}).parameters["kv_cache_attention_bias"] == 1.0


def test_feedback_shows_theme_pads_and_control_values() -> None:
    profile = show(sig("midi.cc.1.19", "noise_scale", default=0.5), sig("midi.note.2.40", "vace_context_scale"),
                   trig("midi.note.1.37", Target("theme", "next")))
    d = Driver(MappingEngine(profile))
    assert d.engine.feedback() == {("cc", 1, 19): 0.5, ("note", 2, 40): 0.0, ("note", 1, 36): 1.0, ("note", 1, 37): 0.0}
    d.step({"midi.cc.1.19": 0.8}, "midi.note.1.37")
    assert d.engine.feedback() == {("cc", 1, 19): 0.8, ("note", 2, 40): 0.0, ("note", 1, 36): 0.0, ("note", 1, 37): 1.0}


def test_disabled_mappings_do_nothing() -> None:
    m = Mapping("off", SignalSource("a"), (), Target("parameter", "noise_scale"), enabled=False)
    d = Driver(MappingEngine(show(m)))
    assert "noise_scale" not in d.step({"a": 0.5}).parameters


def test_tempo_signals_come_from_the_tempo() -> None:
    profile = show(sig("tempo.phase", "noise_scale"), sig("tempo.bpm", "vace_context_scale", Range(60, 180, 0, 2)))
    engine = MappingEngine(profile)
    out = engine.step({}, [], 1.0, TempoState(120.0, 8.25, 0.25, 0.25, 4, "link", True))
    assert out.parameters["noise_scale"] == 0.25
    assert out.parameters["vace_context_scale"] == 1.0
    assert engine.step({"tempo.phase": 0.5}, [], 1.1, None).parameters["noise_scale"] == 0.5


def test_a_settled_smoother_still_follows_the_next_change() -> None:
    d = Driver(MappingEngine(show(sig("a", "noise_scale", Smooth(0.05, 0.05)))))
    for _ in range(80):
        settled = d.step({"a": 0.8}, dt=0.05).parameters["noise_scale"]
    assert settled == 0.8
    d.step({"a": 0.2}, dt=0.05)
    start = d.now
    out = d.step({"a": 0.2}, dt=0.05)
    assert out.parameters["noise_scale"] == pytest.approx(0.2 + 0.6 * math.exp(-(d.now - start) / 0.05), abs=6e-5)


def test_an_osc_trigger_value_is_its_hit_value() -> None:
    d = Driver(MappingEngine(show(trig("osc./fx", Target("parameter", "noise_scale")))))
    assert d.step({}, Trigger("osc./fx", 0.0, {"value": 0.3})).parameters["noise_scale"] == 0.3
    assert d.step({}, Trigger("osc./fx", 0.0, {"args": ["x"]})).parameters["noise_scale"] == 1.0


def test_an_untouched_control_leaves_the_theme_value_until_it_moves() -> None:
    # OCEAN sets noise_scale 0.5; a fader mapped to noise_scale that nobody has moved must not pull it to 0.
    fader = Mapping("fader", SignalSource("midi.cc.1.7"), (), Target("parameter", "noise_scale"))
    untouched = Driver(MappingEngine(show(fader, start_theme="ocean")))
    assert untouched.step().parameters["noise_scale"] == 0.5
    assert untouched.step({"midi.cc.1.7": 0.9}).parameters["noise_scale"] == 0.9
    assert untouched.engine.feedback().get(("cc", 1, 7)) == 0.9
    # With an explicit default the mapping speaks from the start.
    preset = Driver(MappingEngine(show(sig("midi.cc.1.7", "noise_scale", default=0.2), start_theme="ocean")))
    assert preset.step().parameters["noise_scale"] == 0.2


def test_the_first_touch_of_a_control_counts_as_a_move() -> None:
    duo = Theme("duo", (PromptSpec("red"), PromptSpec("blue")))
    engine = MappingEngine(show(Mapping("xf", SignalSource("midi.cc.1.19"), (), Target("prompt_mix", "mix", (0, 1))),
                                themes=(duo,)))
    d = Driver(engine)
    assert d.step().parameters["prompts"] == [{"text": "red", "weight": 1.0}]
    assert d.step({"midi.cc.1.19": 1.0}).parameters["prompts"] == [{"text": "blue", "weight": 1.0}]


def test_a_chain_of_transforms_that_overflows_never_sends_inf_or_nan() -> None:
    from metadj_bridge.profile.model import Scale

    huge = (Scale(1e12),) * 30  # 1e12 ** 30 overflows to inf
    profile = show(
        sig("a", "base_seed", *huge, combine="sum"),
        sig("n", "base_seed", *huge, Scale(-1.0), combine="sum", mname="minus"),
        sig("b", "lookahead_ms", *huge),
        sig("c", "noise_scale", *huge),
    )
    d = Driver(MappingEngine(profile))
    p = d.step({"a": 1.0, "b": 1.0, "c": -1.0, "n": 1.0}).parameters
    assert p["base_seed"] == 0 and isinstance(p["base_seed"], int)  # inf + (-inf) is NaN: the value nearest 0
    assert p["lookahead_ms"] == 1e12  # no upper bound: held at 1e12
    assert p["noise_scale"] == 0.0
    p = d.step({"n": 0.0}).parameters  # inf + 0 = inf: held at the top of Scope's seed range
    assert p["base_seed"] == 2**31 - 1
