"""What a mapping reads besides named signals: beat-synced LFOs and triggered envelopes, and the beat they run on.

Choices where the profile format says nothing:

- LFOs run on ``MotionClock.beat``: the BeatClock's beat while a tempo is playing; held where it was when the
  tempo stops (an LFO freezes with the music); and, when no tempo has ever played, a free-running 120 BPM
  clock from ``now`` (so a profile without any tempo source still moves).
- LFO shapes over one period (``p`` = position 0..1, 0 on the bar's downbeat when the period divides the bar):
  ``sine`` = ``0.5 - 0.5 cos(2 pi p)`` (0 on the downbeat, 1 half way), ``triangle`` = ``1 - |2p - 1|``,
  ``saw`` = ``p``, ``square`` = 1 for the first half, 0 for the second, ``random`` = a new value from the
  engine's seeded generator each period (sample and hold).
- An envelope starts at the step that sees its trigger. Retriggered while it is still up, it restarts its
  attack from its current level (no drop to zero); with ``attack: 0`` it jumps back to 1.
  In ``beats`` mode time advances by ``dt * bpm / 60`` with the tempo's bpm, or the last one seen (120 before
  any), so a tempo change mid-decay bends the tail instead of jumping.

Pure: values and times in, values out.
"""

from __future__ import annotations

import math
import random

from metadj_bridge.profile.model import Envelope, Lfo
from metadj_bridge.signals import TempoState

__all__ = [
    "DEFAULT_BPM",
    "ENVELOPE_K",
    "EnvelopeState",
    "LfoState",
    "MotionClock",
    "NoisePulse",
    "envelope_value",
    "lfo_value",
]

#: Tempo of the free-running clock before any tempo was seen.
DEFAULT_BPM = 120.0
#: Steepness of the envelope's exponential tail (value at the cut: exp(-5) < 1%).
ENVELOPE_K = 5.0
_TWO_PI = 2.0 * math.pi
#: A decaying pulse below this is over (it no longer shows after rounding to 4 decimals).
_PULSE_FLOOR = 5e-5


class MotionClock:
    """The beat position and tempo LFOs and beat-mode envelopes follow."""

    __slots__ = ("beat", "bpm", "seen_tempo")

    def __init__(self) -> None:
        self.beat = 0.0
        self.bpm = DEFAULT_BPM
        self.seen_tempo = False

    def update(self, now: float, tempo: TempoState | None) -> None:
        if tempo is not None and tempo.playing and tempo.bpm > 0:
            self.beat = tempo.beat
            self.bpm = tempo.bpm
            self.seen_tempo = True
        elif not self.seen_tempo:
            self.beat = now * DEFAULT_BPM / 60.0
        # else: hold the beat where the tempo stopped.


def lfo_value(shape: str, p: float) -> float:
    """The LFO's value at period position ``p`` (0..1) for the deterministic shapes."""
    if shape == "sine":
        return 0.5 - 0.5 * math.cos(_TWO_PI * p)
    if shape == "triangle":
        return 1.0 - abs(2.0 * p - 1.0)
    if shape == "saw":
        return p
    if shape == "square":
        return 1.0 if p < 0.5 else 0.0
    raise ValueError(f"unknown LFO shape {shape!r}")


class LfoState:
    """One LFO: ``value(beat)``."""

    __slots__ = ("_held", "_period_index", "period", "phase", "rng", "shape")

    def __init__(self, lfo: Lfo, rng: random.Random) -> None:
        self.shape = lfo.shape
        self.period = float(lfo.period_beats) if lfo.period_beats > 0 else 1.0
        self.phase = float(lfo.phase)
        self.rng = rng
        self._period_index: int | None = None
        self._held = 0.0
        if self.shape != "random":
            lfo_value(self.shape, 0.0)  # unknown shapes fail here, at compile time

    def value(self, beat: float) -> float:
        u = beat / self.period + self.phase
        if self.shape == "random":
            index = math.floor(u)
            if index != self._period_index:
                self._period_index = index
                self._held = self.rng.random()
            return self._held
        return lfo_value(self.shape, u - math.floor(u))


def envelope_value(t: float, attack: float, decay: float) -> float:
    """The envelope's closed form ``t`` after its start (seconds or beats)."""
    if t < 0:
        return 0.0
    if t < attack:
        return t / attack
    if decay <= 0:
        return 0.0
    tail = t - attack
    if tail >= decay:
        return 0.0
    return math.exp(-ENVELOPE_K * tail / decay)


class EnvelopeState:
    """One envelope: ``start(now)`` on its trigger, ``value(now, clock)`` each step."""

    __slots__ = ("_base", "_level", "_t", "_t0", "attack", "beats", "decay", "elapsed")

    def __init__(self, env: Envelope) -> None:
        self.attack = max(0.0, float(env.attack))
        self.decay = max(0.0, float(env.decay))
        self.beats = bool(env.beats)
        self.elapsed: float | None = None  # seconds or beats since the start; None before the first trigger
        self._t = 0.0  # time of the last update
        self._t0 = 0.0  # time of the start
        self._base = 0.0  # elapsed at the start (a retrigger restarts part way up the attack)
        self._level = 0.0

    def start(self, now: float, clock: MotionClock) -> None:
        level = self.value(now, clock)
        # Restart the attack from the current level so a retrigger never drops.
        self.elapsed = self._base = level * self.attack if self.attack > 0 else 0.0
        self._t = self._t0 = now
        self._level = envelope_value(self.elapsed, self.attack, self.decay)

    def value(self, now: float, clock: MotionClock) -> float:
        elapsed = self.elapsed
        if elapsed is None:
            return 0.0
        dt = now - self._t
        if dt > 0:
            if self.beats:
                elapsed += dt * clock.bpm / 60.0
            else:
                elapsed = self._base + (now - self._t0)  # exact, no accumulated rounding
            self.elapsed = elapsed
            self._t = now
            if elapsed >= self.attack + self.decay:
                self.elapsed = None
                self._level = 0.0
                return 0.0
            self._level = envelope_value(elapsed, self.attack, self.decay)
        return self._level


class NoisePulse:
    """The ``pulse_noise`` action: ``level(now) = L0 * exp(-(now - t0) / decay)``; a hit adds ``amount`` to the
    level it finds (hits in quick succession build up)."""

    __slots__ = ("_decay", "_level", "_t")

    def __init__(self) -> None:
        self._level = 0.0
        self._t = 0.0
        self._decay = 1.0

    def hit(self, now: float, amount: float, decay: float) -> None:
        self._level = self.level(now) + amount
        self._t = now
        self._decay = decay

    def stop(self) -> None:
        self._level = 0.0

    def level(self, now: float) -> float:
        level = self._level
        if level <= 0.0:
            return 0.0
        level = level * math.exp(-(now - self._t) / self._decay) if self._decay > 0 else 0.0
        if level < _PULSE_FLOOR:
            self._level = 0.0
            return 0.0
        return level
