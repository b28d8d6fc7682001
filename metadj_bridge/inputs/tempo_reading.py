"""What every tempo source hands to the BeatClock's arbiter: one small immutable reading.

Sources, in the BeatClock's priority order (design.md): Ableton Link, MIDI clock, OSC tempo from Ableton
Live or Resolume, and the audio beat tracker. Each produces ``TempoReading`` values; the arbiter picks the
highest-priority source that is fresh and switches between them without a glitch.
"""

from __future__ import annotations

from dataclasses import dataclass

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
