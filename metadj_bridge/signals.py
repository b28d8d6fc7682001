"""The vocabulary that crosses the middle of the program (design.md).

Inputs produce **signals** (a named continuous value with a time, e.g. ``audio.energy``) and **triggers**
(a named event with a time, e.g. ``audio.beat``). The mapping engine knows nothing about devices; the
inputs know nothing about Scope.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol


@dataclass(frozen=True, slots=True)
class Signal:
    """A continuous value: the latest one wins."""

    name: str
    value: float
    t: float


@dataclass(frozen=True, slots=True)
class Trigger:
    """An event; ``data`` carries details such as velocity or the BPM at a beat."""

    name: str
    t: float
    data: dict[str, Any] = field(default_factory=dict)


#: Audio signal and trigger names (issue: listening to the music).
AUDIO_SIGNALS = (
    "audio.energy",
    "audio.centroid",
    "audio.flatness",
    "audio.low",
    "audio.mid",
    "audio.high",
    "audio.bpm",
    "audio.phase",
)
AUDIO_TRIGGERS = ("audio.onset", "audio.beat")


class SignalTarget(Protocol):
    """Anything signals can be published to: a :class:`SignalBoard`, or a running show."""

    def set(self, signal: Signal) -> None: ...

    def fire(self, trigger: Trigger) -> None: ...


class SignalBoard:
    """Latest value of every signal, plus listeners for triggers. Lives on the event loop only."""

    def __init__(self) -> None:
        self.values: dict[str, Signal] = {}
        self._trigger_listeners: list[Callable[[Trigger], None]] = []
        self._signal_listeners: list[Callable[[Signal], None]] = []

    def set(self, signal: Signal) -> None:
        self.values[signal.name] = signal
        for listener in self._signal_listeners:
            listener(signal)

    def fire(self, trigger: Trigger) -> None:
        for listener in self._trigger_listeners:
            listener(trigger)

    def get(self, name: str, default: float = 0.0) -> float:
        signal = self.values.get(name)
        return signal.value if signal is not None else default

    def on_trigger(self, listener: Callable[[Trigger], None]) -> None:
        self._trigger_listeners.append(listener)

    def on_signal(self, listener: Callable[[Signal], None]) -> None:
        self._signal_listeners.append(listener)


# ------------------------------------------------------------------------------------------ tempo
# What every tempo source hands to the BeatClock's arbiter, and what the arbiter gives back. Sources, in the
# BeatClock's priority order (design.md): Ableton Link, MIDI clock, OSC tempo from Ableton Live or Resolume, and
# the audio beat tracker.

#: Highest priority first.
SOURCE_PRIORITY = ("link", "midi_clock", "osc", "audio")


@dataclass(frozen=True, slots=True)
class TempoReading:
    #: One of SOURCE_PRIORITY.
    source: str
    bpm: float
    #: time.monotonic() at which the reading was true.
    t: float
    #: Beat position at ``t`` (beats since the source's own origin; 0.0, 1.0 ... are beats), if known.
    beat: float | None = None
    #: Beats per bar, if the source says (Link quantum, a time signature).
    beats_per_bar: int | None = None
    #: False when the source reports its transport stopped (MIDI stop, Link not playing).
    playing: bool = True


@dataclass(frozen=True, slots=True)
class TempoState:
    #: The tempo to show and to drive tempo-synced motion: it ramps at most ``max_bpm_step_per_beat``.
    #: While a blend makes up phase, the beat position briefly runs a little faster or slower than this.
    bpm: float
    #: Continuous beat position of the output grid (whole numbers are beats).
    beat: float
    #: 0 on the beat, rising to 1 just before the next.
    phase: float
    #: Beats into the bar (0 <= x < beats_per_bar).
    bar_position: float
    beats_per_bar: int
    #: The steering source, or None when no source is live (the grid then runs on at the last tempo).
    source: str | None
    playing: bool
