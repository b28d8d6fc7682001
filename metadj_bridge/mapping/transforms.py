"""Transforms compiled into small callables: the per-step arithmetic of a mapping.

A profile's transforms (``model.Range``, ``model.Smooth``, ...) are frozen descriptions. ``compile_value_stage``
turns a continuous one into a callable ``stage(x, now) -> float``; the two that change the kind of a value have
their own small classes: ``ThresholdStage`` (a signal becomes a trigger) and ``QuantizeStage`` (a trigger waits
for the next beat or bar).

Choices where the profile format says nothing:

- ``curve`` clamps its input to 0..1 first; ``exponential`` is ``(e^(a x) - 1) / (e^a - 1)``, ``logarithmic`` its
  inverse, ``s`` a logistic curve of steepness ``a`` rescaled to pass through (0, 0) and (1, 1). ``amount <= 0``
  is linear.
- ``steps`` splits 0..1 into ``count`` equal zones (a knob picks 1 of ``count`` with equal travel per zone) and
  gives ``k / (count - 1)``.
- ``deadzone`` works on 0..1: ``[centre - width, centre + width]`` becomes ``centre``; ``[0, centre - width]``
  is stretched onto ``[0, centre]`` and ``[centre + width, 1]`` onto ``[centre, 1]``.
- ``smooth`` holds each input from the step it was seen until the next step (a zero-order hold), so for an input
  that changes at step times the output is exactly ``x + (y0 - x) * exp(-(t - t0) / tau)`` whatever the step
  rate. The first value passes straight through (no ramp up from zero at start); within 1e-9 of its target
  it lands on it exactly (a settled mapping costs nothing until its input moves).

Pure: values and times in, values out.
"""

from __future__ import annotations

import math
from collections.abc import Callable

from metadj_bridge.errors import ConfigError
from metadj_bridge.profile.model import (
    Clamp,
    Curve,
    Deadzone,
    Invert,
    Quantize,
    Range,
    Scale,
    Smooth,
    Steps,
    Threshold,
    Transform,
)
from metadj_bridge.signals import TempoState

ValueStage = Callable[[float, float], float]

__all__ = [
    "QuantizeStage",
    "SmoothStage",
    "ThresholdStage",
    "ValueStage",
    "compile_value_stage",
    "curve_function",
    "quantize_due",
]


def _range(t: Range) -> ValueStage:
    in_lo, out_lo = t.in_lo, t.out_lo
    span_in = t.in_hi - t.in_lo
    span_out = t.out_hi - t.out_lo
    lo, hi = min(t.out_lo, t.out_hi), max(t.out_lo, t.out_hi)
    if span_in == 0:
        # A degenerate input range is a step at in_lo.
        def step(x: float, now: float) -> float:
            return t.out_hi if x >= in_lo else out_lo

        return step
    gain = span_out / span_in
    if t.clamp:

        def ranged(x: float, now: float) -> float:
            y = out_lo + (x - in_lo) * gain
            return lo if y < lo else hi if y > hi else y  # noqa: FURB136 - per step: no call

        return ranged

    def unclamped(x: float, now: float) -> float:
        return out_lo + (x - in_lo) * gain

    return unclamped


def curve_function(shape: str, amount: float) -> Callable[[float], float]:
    """The 0..1 -> 0..1 shaping function of a ``curve`` (input clamped to 0..1)."""
    a = float(amount)
    if shape == "linear" or a <= 0:
        return lambda x: 0.0 if x < 0 else 1.0 if x > 1 else x
    if shape == "exponential":
        denom = math.expm1(a)
        return lambda x: math.expm1(a * (0.0 if x < 0 else 1.0 if x > 1 else x)) / denom
    if shape == "logarithmic":
        k = math.expm1(a)
        return lambda x: math.log1p(k * (0.0 if x < 0 else 1.0 if x > 1 else x)) / a
    if shape == "s":
        s0 = 1.0 / (1.0 + math.exp(a * 0.5))
        s1 = 1.0 / (1.0 + math.exp(-a * 0.5))
        span = s1 - s0
        return lambda x: (1.0 / (1.0 + math.exp(-a * ((0.0 if x < 0 else 1.0 if x > 1 else x) - 0.5))) - s0) / span
    raise ConfigError(f"curve: unknown shape {shape!r} (linear, exponential, logarithmic, s)")


def _curve(t: Curve) -> ValueStage:
    f = curve_function(t.shape, t.amount)
    return lambda x, now: f(x)


def _deadzone(t: Deadzone) -> ValueStage:
    c, w = t.centre, abs(t.width)
    lo_edge, hi_edge = c - w, c + w
    lo_gain = c / lo_edge if lo_edge > 0 else 0.0
    hi_gain = (1.0 - c) / (1.0 - hi_edge) if hi_edge < 1 else 0.0

    def deadzone(x: float, now: float) -> float:
        if x > hi_edge:
            return c + (x - hi_edge) * hi_gain
        if x < lo_edge:
            return c - (lo_edge - x) * lo_gain
        return c

    return deadzone


def _steps(t: Steps) -> ValueStage:
    count = int(t.count)
    if count < 2:
        raise ConfigError(f"{t.where or 'steps'}: count {count} must be at least 2")
    last = count - 1

    def steps(x: float, now: float) -> float:
        k = int(x * count) if x > 0 else 0
        return (k if k < last else last) / last  # noqa: FURB136 - per step: no call

    return steps


def _clamp(t: Clamp) -> ValueStage:
    lo, hi = min(t.lo, t.hi), max(t.lo, t.hi)
    return lambda x, now: lo if x < lo else hi if x > hi else x  # noqa: FURB136 - per step: no call


def _scale(t: Scale) -> ValueStage:
    factor, offset = t.factor, t.offset
    return lambda x, now: x * factor + offset


def _invert(t: Invert) -> ValueStage:
    return lambda x, now: 1.0 - x


class SmoothStage:
    """One-pole smoothing (different time constants up and down) on a zero-order-held input."""

    __slots__ = ("attack", "release", "t", "x", "y")

    def __init__(self, attack: float, release: float) -> None:
        self.attack = max(0.0, float(attack))
        self.release = max(0.0, float(release))
        self.y: float | None = None
        self.x = 0.0
        self.t = 0.0

    def __call__(self, x: float, now: float) -> float:
        y = self.y
        if y is None:
            self.y = self.x = x
            self.t = now
            return x
        held = self.x
        dt = now - self.t
        if dt > 0 and y != held:
            tau = self.attack if held > y else self.release
            y = held + (y - held) * math.exp(-dt / tau) if tau > 0 else held
            if -1e-9 < y - held < 1e-9:
                y = held  # settled: lets an unchanged mapping be skipped
            self.y = y
        if dt > 0:
            self.t = now
        self.x = x
        return y

    def copy_state(self, other: SmoothStage) -> None:
        """Take over another smoother's running state (a profile switch that keeps the mapping)."""
        self.y, self.x, self.t = other.y, other.x, other.t


def compile_value_stage(t: Transform) -> ValueStage:
    """A continuous transform as ``stage(x, now) -> float``; Threshold and Quantize are not continuous."""
    if isinstance(t, Range):
        return _range(t)
    if isinstance(t, Curve):
        return _curve(t)
    if isinstance(t, Deadzone):
        return _deadzone(t)
    if isinstance(t, Steps):
        return _steps(t)
    if isinstance(t, Clamp):
        return _clamp(t)
    if isinstance(t, Scale):
        return _scale(t)
    if isinstance(t, Invert):
        return _invert(t)
    if isinstance(t, Smooth):
        return SmoothStage(t.attack, t.release)
    raise TypeError(f"{type(t).__name__} is not a continuous transform")


class ThresholdStage:
    """A signal becomes a trigger: fires when it reaches ``on`` while armed; re-arms when it falls below ``off``.

    It starts armed, so a signal first seen above ``on`` fires once (it rose from nothing). On trigger values
    (a trigger mapping) it is a gate: only hits of at least ``on`` pass.
    """

    __slots__ = ("armed", "off", "on")

    def __init__(self, t: Threshold) -> None:
        self.on = float(t.on)
        self.off = min(float(t.off), self.on)
        self.armed = True

    def __call__(self, x: float) -> bool:
        if self.armed:
            if x >= self.on:
                self.armed = False
                return True
        elif x < self.off:
            self.armed = True
        return False


def quantize_due(now: float, tempo: TempoState | None, to: str, lookahead_s: float) -> float:
    """When to let a trigger through so it lands on the next beat or bar ``lookahead_s`` later.

    The landing is the first boundary at or after ``now + lookahead_s`` (bars start where ``bar_position`` is 0);
    the answer is the landing minus the lookahead. Without a playing tempo the answer is ``now``.
    """
    if tempo is None or not tempo.playing or not tempo.bpm > 0:
        return now
    beats_per_s = tempo.bpm / 60.0
    land_beat = tempo.beat + lookahead_s * beats_per_s
    eps = 1e-9
    if to == "bar":
        bpb = tempo.beats_per_bar
        origin = tempo.beat - tempo.bar_position
        boundary = origin + math.ceil((land_beat - origin) / bpb - eps) * bpb
    else:
        boundary = float(math.ceil(land_beat - eps))
    return now + (boundary - tempo.beat) / beats_per_s - lookahead_s


class QuantizeStage:
    """Holds trigger hits until their beat or bar boundary (minus the lookahead) is due.

    Hits that wait for the same boundary merge into one (the latest value wins): a performer hammering a pad
    before the downbeat gets one change on the downbeat, not a burst.

    The lookahead is fixed (``lookahead_ms`` a number) or ``auto`` (None): then it is ``auto_s``, the delay the
    running show measured from sending a change to the frame that shows it (``MappingEngine.set_latency``),
    0 until a show says (the engine on its own has no picture to be late for).
    """

    __slots__ = ("auto_s", "due", "fixed_s", "to", "value")

    def __init__(self, t: Quantize) -> None:
        if t.to not in ("beat", "bar"):
            raise ConfigError(f"{t.where or 'quantize'}: to {t.to!r} must be beat or bar")
        self.to = t.to
        self.fixed_s = None if t.lookahead_ms is None else max(0.0, float(t.lookahead_ms)) / 1000.0
        self.auto_s = 0.0
        self.due: float | None = None
        self.value = 0.0

    @property
    def lookahead_s(self) -> float:
        """The lookahead in force, in seconds: the fixed one, else the measured delay."""
        return self.auto_s if self.fixed_s is None else self.fixed_s

    def push(self, value: float, now: float, tempo: TempoState | None) -> None:
        if self.due is None:
            self.due = quantize_due(now, tempo, self.to, self.lookahead_s)
        self.value = value

    def poll(self, now: float) -> float | None:
        """The held hit's value when it is due at ``now``, else None."""
        due = self.due
        if due is not None and now >= due - 1e-9:
            self.due = None
            return self.value
        return None
