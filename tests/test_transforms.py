"""Transforms, LFOs and envelopes against their closed forms."""

from __future__ import annotations

import math
import random

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from metadj_bridge.errors import ConfigError
from metadj_bridge.mapping.sources import (
    DEFAULT_BPM,
    EnvelopeState,
    LfoState,
    MotionClock,
    envelope_value,
    lfo_value,
)
from metadj_bridge.mapping.transforms import (
    QuantizeStage,
    SmoothStage,
    ThresholdStage,
    compile_value_stage,
    curve_function,
    quantize_due,
)
from metadj_bridge.profile.model import (
    Clamp,
    Curve,
    Deadzone,
    Envelope,
    Invert,
    Lfo,
    Quantize,
    Range,
    Scale,
    Smooth,
    Steps,
    Threshold,
)
from metadj_bridge.signals import TempoState

unit = st.floats(0.0, 1.0)


def run(t: object, x: float) -> float:
    return compile_value_stage(t)(x, 0.0)  # type: ignore[arg-type]


def tempo_at(beat: float, bpm: float = 120.0, bar_origin: float = 0.0, bpb: int = 4,
             playing: bool = True) -> TempoState:
    return TempoState(bpm, beat, beat % 1.0, (beat - bar_origin) % bpb, bpb, "link" if playing else None, playing)


# ------------------------------------------------------------------ stateless transforms


def test_range_maps_linearly_and_clamps() -> None:
    r = Range(0.0, 1.0, 0.3, 0.9)
    assert run(r, 0.5) == pytest.approx(0.6)
    assert run(r, 2.0) == pytest.approx(0.9)
    assert run(r, -1.0) == pytest.approx(0.3)
    assert run(Range(0.0, 1.0, 0.3, 0.9, clamp=False), 2.0) == pytest.approx(1.5)


def test_range_reversed_output_and_input() -> None:
    assert run(Range(0.0, 1.0, 1.0, 0.0), 0.25) == pytest.approx(0.75)
    assert run(Range(1.0, 0.0, 0.0, 10.0), 0.25) == pytest.approx(7.5)
    assert run(Range(0.0, 1.0, 1.0, 0.0), 5.0) == pytest.approx(0.0)


def test_range_with_equal_input_ends_is_a_step() -> None:
    r = Range(0.5, 0.5, 0.0, 1.0)
    assert run(r, 0.4) == 0.0
    assert run(r, 0.6) == 1.0


@given(unit)
def test_curves_keep_ends_and_order(x: float) -> None:
    for shape in ("linear", "exponential", "logarithmic", "s"):
        f = curve_function(shape, 3.0)
        assert f(0.0) == pytest.approx(0.0, abs=1e-12)
        assert f(1.0) == pytest.approx(1.0)
        assert 0.0 <= f(x) <= 1.0 + 1e-12
        assert f(min(1.0, x + 0.01)) >= f(x)


def test_curve_closed_forms() -> None:
    a = 3.0
    assert run(Curve("exponential", a), 0.5) == pytest.approx((math.exp(a * 0.5) - 1) / (math.exp(a) - 1))
    # logarithmic is the inverse of exponential
    y = run(Curve("exponential", a), 0.3)
    assert run(Curve("logarithmic", a), y) == pytest.approx(0.3)
    assert run(Curve("s", 4.0), 0.5) == pytest.approx(0.5)
    assert run(Curve("s", 4.0), 0.25) == pytest.approx(1 - run(Curve("s", 4.0), 0.75))
    assert run(Curve("exponential", 3.0), 1.5) == pytest.approx(1.0)  # input clamped to 0..1
    assert run(Curve("exponential", 0.0), 0.3) == pytest.approx(0.3)  # no amount: linear


def test_unknown_curve_shape_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="wobbly"):
        curve_function("wobbly", 2.0)


def test_deadzone_flattens_the_centre_and_stays_continuous() -> None:
    d = Deadzone(width=0.1, centre=0.5)
    assert run(d, 0.45) == 0.5
    assert run(d, 0.55) == 0.5
    assert run(d, 1.0) == pytest.approx(1.0)
    assert run(d, 0.0) == pytest.approx(0.0)
    assert run(d, 0.8) == pytest.approx(0.5 + (0.8 - 0.6) * 0.5 / 0.4)
    assert run(d, 0.6 + 1e-9) == pytest.approx(0.5, abs=1e-6)
    low = Deadzone(width=0.02)  # centre 0: a fader's bottom end
    assert run(low, 0.01) == 0.0
    assert run(low, 0.51) == pytest.approx(0.49 / 0.98)


def test_steps_split_the_travel_into_equal_zones() -> None:
    s = Steps(4)
    assert [run(s, x) for x in (0.0, 0.24, 0.26, 0.49, 0.51, 0.74, 0.76, 1.0)] == pytest.approx(
        [0.0, 0.0, 1 / 3, 1 / 3, 2 / 3, 2 / 3, 1.0, 1.0]
    )
    with pytest.raises(ConfigError):
        compile_value_stage(Steps(1))


def test_clamp_scale_invert() -> None:
    assert run(Clamp(0.2, 0.8), 0.9) == 0.8
    assert run(Clamp(0.2, 0.8), 0.1) == 0.2
    assert run(Clamp(0.2, 0.8), 0.5) == 0.5
    assert run(Scale(2.0, 0.5), 0.25) == pytest.approx(1.0)
    assert run(Invert(), 0.25) == pytest.approx(0.75)


# ------------------------------------------------------------------ smoothing


def test_smooth_first_value_passes_through() -> None:
    s = SmoothStage(0.2, 0.2)
    assert s(0.7, 5.0) == 0.7


@settings(max_examples=60, deadline=None)
@given(
    st.floats(0.01, 2.0),
    st.floats(0.01, 2.0),
    st.lists(st.tuples(unit, st.lists(st.floats(0.001, 0.2), min_size=1, max_size=8)), min_size=1, max_size=6),
)
def test_smooth_matches_its_closed_form_for_held_steps(
    attack: float, release: float, segments: list[tuple[float, list[float]]]
) -> None:
    """Each input is held for a few steps of any length: y = x + (y0 - x) exp(-elapsed / tau)."""
    s = SmoothStage(attack, release)
    now = 0.0
    y = s(0.5, now)
    for x, gaps in segments:
        start, y0 = now, y
        s(x, now)  # the new value is seen at `start`
        for gap in gaps:
            now += gap
            y = s(x, now)
            tau = attack if x > y0 else release
            assert y == pytest.approx(x + (y0 - x) * math.exp(-(now - start) / tau), abs=2e-9)


def test_smooth_uses_attack_rising_and_release_falling() -> None:
    s = SmoothStage(attack=0.1, release=1.0)
    s(0.0, 0.0)
    s(1.0, 0.0)
    assert s(1.0, 0.1) == pytest.approx(1 - math.exp(-1))
    s2 = SmoothStage(attack=0.1, release=1.0)
    s2(1.0, 0.0)
    s2(0.0, 0.0)
    assert s2(0.0, 0.1) == pytest.approx(math.exp(-0.1))


def test_smooth_without_time_constant_follows() -> None:
    s = compile_value_stage(Smooth(0.0, 0.0))
    s(0.0, 0.0)
    s(1.0, 0.1)
    assert s(1.0, 0.2) == 1.0


# ------------------------------------------------------------------ threshold and quantize


def test_threshold_fires_on_rise_and_rearms_below_off() -> None:
    th = ThresholdStage(Threshold(on=0.6, off=0.4))
    seq = [0.0, 0.7, 0.8, 0.5, 0.65, 0.3, 0.61, 0.1]
    assert [th(x) for x in seq] == [False, True, False, False, False, False, True, False]


def test_threshold_first_value_above_on_fires_once() -> None:
    th = ThresholdStage(Threshold(on=0.5, off=0.5))
    assert [th(x) for x in (0.9, 0.9, 0.4, 0.5)] == [True, False, False, True]


def test_quantize_due_next_beat_minus_lookahead() -> None:
    # 120 BPM: a beat every 0.5 s. At beat 10.25 (now=3.0) the next beat is 10.0+1 -> 0.375 s away.
    assert quantize_due(3.0, tempo_at(10.25), "beat", 0.0) == pytest.approx(3.375)
    assert quantize_due(3.0, tempo_at(10.25), "beat", 0.1) == pytest.approx(3.275)
    # landing inside the lookahead: the boundary after that one
    assert quantize_due(3.0, tempo_at(10.9), "beat", 0.1) == pytest.approx(3.0 + 1.1 * 0.5 - 0.1)
    # exactly on a beat: it lands now
    assert quantize_due(3.0, tempo_at(11.0), "beat", 0.0) == pytest.approx(3.0)


def test_quantize_due_bar_follows_bar_position() -> None:
    # bars start at beats 1, 5, 9, ...: at beat 6 the next bar is beat 9
    assert quantize_due(0.0, tempo_at(6.0, bar_origin=1.0), "bar", 0.0) == pytest.approx(1.5)
    assert quantize_due(0.0, tempo_at(6.0, bpm=60.0), "bar", 0.25) == pytest.approx(2.0 - 0.25)


def test_quantize_without_tempo_is_immediate() -> None:
    assert quantize_due(4.2, None, "bar", 0.1) == 4.2
    assert quantize_due(4.2, tempo_at(3.3, playing=False), "beat", 0.1) == 4.2


def test_quantize_stage_merges_hits_waiting_for_one_boundary() -> None:
    q = QuantizeStage(Quantize("beat", 0.0))
    q.push(0.3, 3.0, tempo_at(10.25))
    q.push(0.8, 3.1, tempo_at(10.45))
    assert q.poll(3.2) is None
    assert q.poll(3.375) == 0.8
    assert q.poll(3.5) is None


# ------------------------------------------------------------------ LFOs


def test_lfo_shapes() -> None:
    assert lfo_value("sine", 0.0) == pytest.approx(0.0)
    assert lfo_value("sine", 0.5) == pytest.approx(1.0)
    assert lfo_value("sine", 0.25) == pytest.approx(0.5)
    assert lfo_value("triangle", 0.25) == pytest.approx(0.5)
    assert lfo_value("triangle", 0.5) == pytest.approx(1.0)
    assert lfo_value("saw", 0.3) == pytest.approx(0.3)
    assert lfo_value("square", 0.3) == 1.0
    assert lfo_value("square", 0.7) == 0.0


@given(st.floats(0, 1000), st.sampled_from([1.0, 2.0, 4.0, 8.0]), unit)
def test_lfo_follows_beat_period_and_phase(beat: float, period: float, phase: float) -> None:
    lfo = LfoState(Lfo("saw", period, phase), random.Random(0))
    expected = (beat / period + phase) % 1.0
    value = lfo.value(beat)
    assert min(abs(value - expected), 1 - abs(value - expected)) < 1e-6


def test_random_lfo_holds_each_period_and_is_seeded() -> None:
    a = LfoState(Lfo("random", 2.0), random.Random(7))
    b = LfoState(Lfo("random", 2.0), random.Random(7))
    first = [a.value(x) for x in (0.0, 0.5, 1.9)]
    assert first[0] == first[1] == first[2]
    assert a.value(2.1) != first[0]
    assert [b.value(x) for x in (0.0, 2.1)] == [first[0], a.value(2.2)]


def test_motion_clock_free_runs_then_follows_then_holds() -> None:
    clock = MotionClock()
    clock.update(3.0, None)
    assert clock.beat == pytest.approx(3.0 * DEFAULT_BPM / 60)
    clock.update(4.0, tempo_at(17.5, bpm=128))
    assert (clock.beat, clock.bpm) == (17.5, 128)
    clock.update(9.0, tempo_at(30.0, playing=False))
    assert clock.beat == 17.5


# ------------------------------------------------------------------ envelopes


@settings(max_examples=60, deadline=None)
@given(st.floats(0, 0.5), st.floats(0.05, 2.0), st.lists(st.floats(0.001, 0.3), min_size=1, max_size=20))
@example(0.2957873779706911, 0.21231426685685134, [0.2957873779706911, 0.21231426685685134])  # ends on the end
def test_envelope_seconds_matches_closed_form(attack: float, decay: float, gaps: list[float]) -> None:
    env = EnvelopeState(Envelope("x", attack, decay))
    clock = MotionClock()
    env.start(10.0, clock)
    now = 10.0
    for gap in gaps:
        now += gap
        t = now - 10.0
        expected = envelope_value(t, attack, decay)
        # At a boundary (a gap that ends exactly at the attack's or the decay's end), the state's own time and
        # ``t`` can differ by a rounding: either side's value is right there.
        sides = {round(envelope_value(t + d, attack, decay), 9) for d in (-1e-12, 0.0, 1e-12)}
        assert round(env.value(now, clock), 9) in sides or env.value(now, clock) == pytest.approx(expected, abs=1e-9)
        if t < attack:
            assert expected == pytest.approx(t / attack)
        elif t - attack < decay:  # as the closed form reckons it (t < attack + decay can round the other way)
            assert expected == pytest.approx(math.exp(-5 * (t - attack) / decay))
        else:
            assert expected == 0.0


@settings(max_examples=40, deadline=None)
@given(st.floats(60, 180), st.floats(0.1, 4.0), st.lists(st.floats(0.005, 0.2), min_size=1, max_size=20))
def test_envelope_in_beats_uses_the_tempo(bpm: float, decay_beats: float, gaps: list[float]) -> None:
    env = EnvelopeState(Envelope("x", 0.0, decay_beats, beats=True))
    clock = MotionClock()
    clock.update(0.0, tempo_at(0.0, bpm=bpm))
    env.start(0.0, clock)
    now = 0.0
    for gap in gaps:
        now += gap
        clock.update(now, tempo_at(now * bpm / 60, bpm=bpm))
        expected = envelope_value(now * bpm / 60, 0.0, decay_beats)
        assert env.value(now, clock) == pytest.approx(expected, abs=1e-9)


def test_envelope_retrigger_continues_from_current_level() -> None:
    env = EnvelopeState(Envelope("x", attack=1.0, decay=1.0))
    clock = MotionClock()
    assert env.value(0.0, clock) == 0.0
    env.start(0.0, clock)
    assert env.value(0.4, clock) == pytest.approx(0.4)
    env.start(0.4, clock)  # retrigger half way up: no drop
    assert env.value(0.4, clock) == pytest.approx(0.4)
    assert env.value(0.6, clock) == pytest.approx(0.6)
    assert env.value(5.0, clock) == 0.0
