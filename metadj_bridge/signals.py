"""The vocabulary that crosses the middle of the program (design.md).

Inputs produce **signals** (a named continuous value with a time, e.g. ``audio.energy``), **triggers**
(a named event with a time, e.g. ``audio.beat``) and **tempo readings**, and deliver all three through one
small interface (:class:`InputSink`) into one store (:class:`SignalBoard`). The BeatClock's arbiter turns the
readings into one :class:`TempoState`. The mapping engine knows nothing about devices; the inputs know nothing
about Scope.

Ground floor: pure, imports nothing of the project.
"""

from __future__ import annotations

from collections import deque
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


class InputSink(Protocol):
    """The one way in: what every input (MIDI, OSC, Link, MIDI clock, audio) delivers into, on the event loop.

    ``set`` a continuous value (the latest wins), ``fire`` an event, hand over a ``tempo`` reading. A running
    bridge's sink is its :class:`SignalBoard`; ``monitor`` prints instead.
    """

    def set(self, signal: Signal) -> None: ...

    def fire(self, trigger: Trigger) -> None: ...

    def tempo(self, reading: TempoReading) -> None: ...


#: Signals and triggers under these prefixes come from the music, not from a performer's hands.
_NOT_CONTROLS = ("audio.", "tempo.")


class SignalBoard:
    """The one store of what the inputs say (event loop only): an :class:`InputSink`.

    - ``values``: the latest value of every signal, by name (what the mapping engine reads each step);
    - the triggers that arrived since the show last took them (``take_triggers``), at most ``max_pending``
      (beyond that the oldest go: a flood while nobody steps the show must not grow memory);
    - tempo readings are passed to the ``on_tempo`` listeners (the tempo hub and its arbiter), and triggers to the
      ``on_trigger`` listeners as they arrive;
    - ``last_control``: the control a performer touched last, for the status view.
    """

    def __init__(self, max_pending: int = 4096) -> None:
        self.values: dict[str, float] = {}
        self._pending: deque[Trigger] = deque(maxlen=max_pending)
        self._trigger_listeners: list[Callable[[Trigger], None]] = []
        self._tempo_listeners: list[Callable[[TempoReading], None]] = []
        self.last_control = ""

    def set(self, signal: Signal) -> None:
        self.values[signal.name] = signal.value
        if not signal.name.startswith(_NOT_CONTROLS):
            self.last_control = f"{signal.name} {signal.value:.2f}"

    def fire(self, trigger: Trigger) -> None:
        if not trigger.name.startswith(_NOT_CONTROLS):
            self.last_control = trigger.name
        self._pending.append(trigger)
        for listener in self._trigger_listeners:
            listener(trigger)

    def tempo(self, reading: TempoReading) -> None:
        for listener in self._tempo_listeners:
            listener(reading)

    def get(self, name: str, default: float = 0.0) -> float:
        return self.values.get(name, default)

    def take_triggers(self) -> list[Trigger]:
        """The triggers that arrived since the last call, oldest first."""
        taken = list(self._pending)
        self._pending.clear()
        return taken

    def on_trigger(self, listener: Callable[[Trigger], None]) -> None:
        self._trigger_listeners.append(listener)

    def on_tempo(self, listener: Callable[[TempoReading], None]) -> None:
        self._tempo_listeners.append(listener)


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
