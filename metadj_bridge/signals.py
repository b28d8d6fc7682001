"""The vocabulary that crosses the middle of the program (design.md).

Inputs produce **signals** (a named continuous value with a time, e.g. ``audio.energy``), **triggers**
(a named event with a time, e.g. ``audio.beat``) and **tempo readings**, and deliver all three through one
small interface (:class:`InputSink`) into one store (:class:`SignalBoard`). The BeatClock's arbiter turns the
readings into one :class:`TempoState`. The mapping engine knows nothing about devices; the inputs know nothing
about Scope.

Ground floor: pure; of the project it imports only the rate-limited warning (``errors``), for the one line a
flood of new names can cause.
"""

from __future__ import annotations

import logging
import math
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

from metadj_bridge.errors import RateLimitedWarning

log = logging.getLogger(__name__)


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
    "audio.section",
    "audio.tension",
)
AUDIO_TRIGGERS = ("audio.onset", "audio.beat", "audio.drop", "audio.breakdown", "audio.buildup")


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
#: How many signal values the board keeps by default; beyond that the oldest one nobody reads goes.
MAX_VALUES = 4096


class SignalBoard:
    """The one store of what the inputs say (event loop only): an :class:`InputSink`.

    - ``values``: the latest value of every signal, by name (what the mapping engine reads each step);
    - the triggers that arrived since the show last took them (``take_triggers``), at most ``max_pending``
      (beyond that the oldest go: a flood while nobody steps the show must not grow memory);
    - tempo readings are passed to the ``on_tempo`` listeners (the tempo hub and its arbiter), and triggers to the
      ``on_trigger`` listeners as they arrive;
    - ``last_control``: the control a performer touched last, for the status view.

    ``values`` holds at most ``max_values`` names, so a sender inventing OSC addresses (20,000 of them) cannot grow
    memory: a new name then pushes out the oldest one that is neither read by the running profile (:meth:`keep`)
    nor the bridge's own (``audio.``, ``tempo.``). ``dropped`` counts them, and a rate-limited line says so.
    """

    def __init__(self, max_pending: int = 4096, max_values: int = MAX_VALUES) -> None:
        self.values: dict[str, float] = {}
        self._pending: deque[Trigger] = deque(maxlen=max_pending)
        self._trigger_listeners: list[Callable[[Trigger], None]] = []
        self._tempo_listeners: list[Callable[[TempoReading], None]] = []
        self.last_control = ""
        self.max_values = max_values
        #: Values pushed out to make room for new names.
        self.dropped = 0
        self._kept: frozenset[str] = frozenset()
        self._drop_warning = RateLimitedWarning(log, "signal values dropped (too many distinct names)")

    def keep(self, names: Iterable[str]) -> None:
        """The names the running profile reads: these are never pushed out (a new profile calls this again)."""
        self._kept = frozenset(names)

    def set(self, signal: Signal) -> None:
        values = self.values
        if signal.name not in values and len(values) >= self.max_values:
            self._make_room(signal.name)
        values[signal.name] = signal.value
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

    def _make_room(self, incoming: str) -> None:
        """Forget the oldest value that is neither kept nor the bridge's own (none such: the board grows)."""
        kept = self._kept
        victim = next((name for name in self.values if name not in kept and not name.startswith(_NOT_CONTROLS)),
                      None)
        if victim is None:
            return
        del self.values[victim]
        self.dropped += 1
        self._drop_warning.note(f"{self.dropped} so far, kept at most {self.max_values}; "
                                f"{incoming[:80]!r} pushed out {victim[:80]!r}")

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
#: The tempos any source may report (Ableton Live's and Link's own range); others are refused where they are read.
MIN_BPM, MAX_BPM = 20.0, 999.0
#: Largest beat position a source may report: far beyond any set, small enough to keep the grid's precision.
MAX_BEAT = 1e9


def tempo_problem(bpm: float, beat: float | None = None) -> str | None:
    """Why a reported tempo (and beat position) cannot be used, or None when it can."""
    if not MIN_BPM <= bpm <= MAX_BPM:  # NaN fails this too
        return f"{bpm:g} BPM is outside {MIN_BPM:g}-{MAX_BPM:g}"
    if beat is not None and not abs(beat) <= MAX_BEAT:
        return f"beat {beat:g} is not a beat position (at most {MAX_BEAT:g})"
    return None


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
    #: The tempo to show and to drive tempo-synced motion: it glides onto a new tempo over the beats' blend.
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

    @property
    def bar_beat(self) -> float:
        """The beat counted so that every bar begins on a multiple of ``beats_per_bar``, where ``bar_position`` says
        (the music's one, as the source hears it). ``beat`` runs on without a jump when a source moves its count (the
        audio tracker hears the bar begin a beat later, a new track, a switch of source), so its own multiples of the
        bar are not the bars: count bars from this."""
        per_bar = max(1, self.beats_per_bar)
        began = round(self.beat - self.bar_position)  # whole: the grid aligns a source's beats to its own
        return per_bar * (began // per_bar) + self.bar_position

    @property
    def bar(self) -> int:
        """Bars counted on the grid, each beginning where ``bar_position`` is 0."""
        return math.floor(self.bar_beat / max(1, self.beats_per_bar))
