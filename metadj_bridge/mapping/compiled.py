"""One profile mapping compiled into a small object the engine steps: source, transforms, and what it gives out.

A mapping gives out either a *value* each step (a signal, LFO or envelope through continuous transforms) or
*hits* (a trigger, or a signal through ``threshold``). Which one the target needs decides the rest:

- a continuous target (a parameter, ``prompt.mix``, ``prompt.weight.N``, ``prompt.select``, ``theme.select``)
  fed by hits *latches* the latest hit's value (a pad sets a parameter and it stays there);
- a trigger target (actions, ``prompt.next``, ``theme.set:x``, ``profile:``) fed by a value gets an implicit
  ``threshold`` with the default levels (fires rising through 0.6, re-arms below 0.4).

``tempo.bpm`` and ``tempo.phase`` come from the step's tempo unless the caller passes them as signals.
After a threshold the hit's value is 1.0; a trigger's value is its MIDI velocity or OSC value (else 1.0).
Transforms after that point work on the hit value; a ``threshold`` there is a gate (hits below ``on`` are
dropped); ``smooth`` there smooths from hit to hit. A ``quantize`` on a value (before any threshold) is a
profile error.

Pure: the engine passes values, times and the tempo in; hits come out in the ``fired`` list it passes.
"""

from __future__ import annotations

import dataclasses
import math
import random
from collections.abc import Mapping as MappingABC
from typing import Final, Literal

from metadj_bridge.errors import ConfigError
from metadj_bridge.mapping.sources import EnvelopeState, LfoState, MotionClock
from metadj_bridge.mapping.transforms import (
    QuantizeStage,
    SmoothStage,
    ThresholdStage,
    ValueStage,
    compile_value_stage,
)
from metadj_bridge.profile.model import (
    Envelope,
    Lfo,
    Mapping,
    Quantize,
    SignalSource,
    Threshold,
    TriggerSource,
)
from metadj_bridge.signals import TempoState, Trigger

__all__ = ["Fired", "MappingRuntime", "compile_mapping", "is_continuous_target", "trigger_value"]

#: What a stage of the hit path does with a hit: reshape its value, drop it below ``on``, or hold it for the beat.
VALUE: Final = 0
GATE: Final = 1
HOLD: Final = 2

#: One stage of the hit path with its kind; the kind is compared per hit (cheaper than isinstance).
Hit = tuple[Literal[0], ValueStage] | tuple[Literal[1], ThresholdStage] | tuple[Literal[2], QuantizeStage]

#: (mapping, value) pairs handed to the engine in firing order.
Fired = list[tuple["MappingRuntime", float]]


def trigger_value(trigger: Trigger) -> float:
    """A trigger's value: its MIDI ``velocity``, else its OSC ``value``, else 1.0."""
    data = trigger.data
    if data:
        for key in ("velocity", "value"):
            value = data.get(key)
            if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
                return float(value)
    return 1.0


def is_continuous_target(mapping: Mapping) -> bool:
    kind, name = mapping.target.kind, mapping.target.name
    return (kind in ("parameter", "prompt_mix", "prompt_weight", "prompt_intensity")
            or (kind in ("prompt", "theme") and name == "select"))


def _unplaced(part: object) -> object:
    """A profile part (a source, a transform, a tuple of them) without where it was written."""
    if isinstance(part, tuple):
        return tuple(_unplaced(p) for p in part)
    if dataclasses.is_dataclass(part) and not isinstance(part, type) and hasattr(part, "where"):
        return dataclasses.replace(part, where="")
    return part


def same_input(old: Mapping, new: Mapping) -> bool:
    """Whether ``new`` reads what ``old`` read, so it takes over its state on a reload or switch: the same source
    wherever it is written (an edit above a mapping moves its lines), and for a signal the same name whatever its
    ``default`` (which only speaks before the control first moves)."""
    a, b = old.source, new.source
    if isinstance(a, SignalSource) and isinstance(b, SignalSource):
        return a.name == b.name
    return _unplaced(a) == _unplaced(b)


class MappingRuntime:
    """The running state of one mapping. Subclasses differ in their source."""

    #: Whether the first value counts as a change (a control moved) or is the starting state (an LFO, a default).
    first_is_a_move = False

    __slots__ = (
        "changed",
        "gate",
        "gates",
        "hits",
        "holds",
        "latch",
        "mapping",
        "name",
        "pre",
        "sel_prev",
        "select",
        "smoothers",
        "value",
    )

    def __init__(self, mapping: Mapping, pre: list[ValueStage], gate: ThresholdStage | None,
                 hits: list[Hit]) -> None:
        self.mapping = mapping
        self.name = mapping.name
        self.pre = tuple(pre)
        self.gate = gate
        self.hits = tuple(hits)
        #: The quantize stages of the hit path, with their positions in it.
        self.holds = tuple((i, hit[1]) for i, hit in enumerate(hits) if hit[0] == HOLD)
        self.latch = is_continuous_target(mapping)
        self.select = mapping.target.name == "select" and mapping.target.kind in ("prompt", "theme")
        #: The latest value (continuous or latched); None before the first.
        self.value: float | None = None
        #: Step of the last change; -1 = unchanged since the start (the first value does not count).
        self.changed = -1
        #: For select targets: the index last selected.
        self.sel_prev: int | None = None
        self.smoothers = [s for s in pre if isinstance(s, SmoothStage)] + [
            hit[1] for hit in hits if hit[0] == VALUE and isinstance(hit[1], SmoothStage)
        ]
        self.gates = ([gate] if gate is not None else []) + [hit[1] for hit in hits if hit[0] == GATE]

    # ------------------------------------------------------------------ continuous path

    def _settle(self, x: float, now: float, tempo: TempoState | None, step: int, fired: Fired) -> None:
        """A new value from the continuous path: through the gate, or straight to the value."""
        gate = self.gate
        if gate is not None:
            if gate(x):
                self._run(0, 1.0, now, step, fired, tempo)
            return
        if x != self.value:
            first = self.value is None and not self.first_is_a_move
            self.value = x
            if not first:
                self.changed = step
                if self.select:
                    fired.append((self, x))

    def update(self, signals: MappingABC[str, float], now: float, clock: MotionClock, tempo: TempoState | None,
               step: int, fired: Fired) -> None:
        """One step of a value source (signal, LFO, envelope). Trigger sources do nothing here."""

    # ------------------------------------------------------------------ hit path

    def hit(self, value: float, now: float, tempo: TempoState | None, step: int, fired: Fired) -> None:
        """A trigger reached this mapping."""
        self._run(0, value, now, step, fired, tempo)

    def _run(self, i: int, value: float, now: float, step: int, fired: Fired, tempo: TempoState | None) -> None:
        hits = self.hits
        n = len(hits)
        while i < n:
            hit = hits[i]
            if hit[0] == VALUE:
                value = hit[1](value, now)
            elif hit[0] == GATE:
                if value < hit[1].on:
                    return
            else:
                hit[1].push(value, now, tempo)
                return
            i += 1
        if self.latch:
            self.value = value
            self.changed = step
            if self.select:
                fired.append((self, value))
        else:
            fired.append((self, value))

    def poll(self, now: float, tempo: TempoState | None, step: int, fired: Fired) -> None:
        """Let held (quantised) hits through when their time has come."""
        for i, stage in self.holds:
            if stage.due is not None:
                released = stage.poll(now)
                if released is not None:
                    self._run(i + 1, released, now, step, fired, tempo)

    @property
    def pending(self) -> bool:
        return any(stage.due is not None for _, stage in self.holds)

    # ------------------------------------------------------------------ profile switch

    def adopt(self, old: MappingRuntime) -> None:
        """Carry over the state of the same mapping (same name and source) from the previous profile."""
        # The transforms may differ: stages carry over in order, as far as both have them.
        for new_s, old_s in zip(self.smoothers, old.smoothers, strict=False):
            new_s.copy_state(old_s)
        for new_g, old_g in zip(self.gates, old.gates, strict=False):
            new_g.armed = old_g.armed
        if _unplaced(self.mapping.transforms) == _unplaced(old.mapping.transforms):
            for (_, new_q), (_, old_q) in zip(self.holds, old.holds, strict=True):  # same source and transforms
                new_q.due, new_q.value = old_q.due, old_q.value
            if self.latch == old.latch:
                self.value, self.changed, self.sel_prev = old.value, old.changed, old.sel_prev
        elif self.latch and old.latch and not self.select and old.changed >= 0:
            # New transforms: the value is worked out afresh from the carried input, but a control that was moved
            # stays moved (a default must not make a held crossfader count as untouched again).
            self.changed = old.changed


class SignalMapping(MappingRuntime):
    __slots__ = ("_pre_smoothers", "_still", "first_is_a_move", "input", "signal")

    def __init__(self, mapping: Mapping, pre: list[ValueStage], gate: ThresholdStage | None,
                 hits: list[Hit]) -> None:
        super().__init__(mapping, pre, gate, hits)
        assert isinstance(mapping.source, SignalSource)
        self.signal = mapping.source.name
        #: The latest input value (the default until the signal is seen; None: no value yet, nothing is produced).
        default = mapping.source.default
        self.input: float | None = None if default is None else float(default)
        #: Without a default, the first value seen is the performer moving the control: it counts as a change.
        self.first_is_a_move = default is None
        self._still = False
        self._pre_smoothers = tuple(s for s in self.pre if isinstance(s, SmoothStage))

    def update(self, signals: MappingABC[str, float], now: float, clock: MotionClock, tempo: TempoState | None,
               step: int, fired: Fired) -> None:
        x = signals.get(self.signal)
        if x is None or x == self.input or x - x != 0.0:  # x - x: NaN or inf from a bad sender is no value
            if self._still or self.input is None:
                return
            x = self.input
            for smoother in self._pre_smoothers:
                if smoother.y != smoother.x:
                    break
            else:
                # Input unchanged and every smoother settled: the value cannot change until the input does.
                self._still = True
        else:
            self.input = x = float(x)
            self._still = False
        for stage in self.pre:
            x = stage(x, now)
        self._settle(x, now, tempo, step, fired)

    def adopt(self, old: MappingRuntime) -> None:
        super().adopt(old)
        if isinstance(old, SignalMapping):
            self.input = old.input


class TempoSignalMapping(SignalMapping):
    """``tempo.bpm`` / ``tempo.phase``: read from the step's tempo when the caller does not pass them as signals."""

    __slots__ = ()

    def update(self, signals: MappingABC[str, float], now: float, clock: MotionClock, tempo: TempoState | None,
               step: int, fired: Fired) -> None:
        if self.signal not in signals and tempo is not None and tempo.playing:
            signals = {self.signal: tempo.bpm if self.signal == "tempo.bpm" else tempo.phase}
        super().update(signals, now, clock, tempo, step, fired)


class LfoMapping(MappingRuntime):
    __slots__ = ("lfo",)

    def __init__(self, mapping: Mapping, pre: list[ValueStage], gate: ThresholdStage | None,
                 hits: list[Hit], rng: random.Random) -> None:
        super().__init__(mapping, pre, gate, hits)
        assert isinstance(mapping.source, Lfo)
        self.lfo = LfoState(mapping.source, rng)

    def update(self, signals: MappingABC[str, float], now: float, clock: MotionClock, tempo: TempoState | None,
               step: int, fired: Fired) -> None:
        x = self.lfo.value(clock.beat)
        for stage in self.pre:
            x = stage(x, now)
        self._settle(x, now, tempo, step, fired)

    def adopt(self, old: MappingRuntime) -> None:
        super().adopt(old)
        if isinstance(old, LfoMapping):
            self.lfo = old.lfo


class EnvelopeMapping(MappingRuntime):
    __slots__ = ("envelope", "trigger")

    def __init__(self, mapping: Mapping, pre: list[ValueStage], gate: ThresholdStage | None,
                 hits: list[Hit]) -> None:
        super().__init__(mapping, pre, gate, hits)
        assert isinstance(mapping.source, Envelope)
        self.envelope = EnvelopeState(mapping.source)
        self.trigger = mapping.source.trigger

    def update(self, signals: MappingABC[str, float], now: float, clock: MotionClock, tempo: TempoState | None,
               step: int, fired: Fired) -> None:
        x = self.envelope.value(now, clock)
        for stage in self.pre:
            x = stage(x, now)
        self._settle(x, now, tempo, step, fired)

    def adopt(self, old: MappingRuntime) -> None:
        super().adopt(old)
        if isinstance(old, EnvelopeMapping):
            self.envelope = old.envelope


class TriggerMapping(MappingRuntime):
    __slots__ = ("trigger",)

    def __init__(self, mapping: Mapping, pre: list[ValueStage], gate: ThresholdStage | None,
                 hits: list[Hit]) -> None:
        super().__init__(mapping, pre, gate, hits)
        assert isinstance(mapping.source, TriggerSource)
        self.trigger = mapping.source.name


def compile_mapping(mapping: Mapping, rng: random.Random) -> MappingRuntime:
    """Compile one profile mapping; ConfigError for a shape that cannot run."""
    where = mapping.where or f"mappings.{mapping.name}"
    source = mapping.source
    in_hits = isinstance(source, TriggerSource)
    pre: list[ValueStage] = []
    gate: ThresholdStage | None = None
    hits: list[Hit] = []
    for t in mapping.transforms:
        if not in_hits:
            if isinstance(t, Threshold):
                gate = ThresholdStage(t)
                in_hits = True
            elif isinstance(t, Quantize):
                raise ConfigError(
                    f"{t.where or where}: quantize holds a trigger until the beat; this mapping gives a value "
                    "here (put a threshold before it, or read a trigger)"
                )
            else:
                pre.append(compile_value_stage(t))
        elif isinstance(t, Threshold):
            hits.append((GATE, ThresholdStage(t)))
        elif isinstance(t, Quantize):
            hits.append((HOLD, QuantizeStage(t)))
        else:
            hits.append((VALUE, compile_value_stage(t)))
    if not in_hits and not is_continuous_target(mapping):
        gate = ThresholdStage(Threshold())
    if isinstance(source, SignalSource):
        if source.name in ("tempo.bpm", "tempo.phase"):
            return TempoSignalMapping(mapping, pre, gate, hits)
        return SignalMapping(mapping, pre, gate, hits)
    if isinstance(source, Lfo):
        return LfoMapping(mapping, pre, gate, hits, rng)
    if isinstance(source, Envelope):
        return EnvelopeMapping(mapping, pre, gate, hits)
    if isinstance(source, TriggerSource):
        return TriggerMapping(mapping, pre, gate, hits)
    raise ConfigError(f"{where}: unknown source {source!r}")
