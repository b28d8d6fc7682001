"""Build-ups: the part of a breakdown that rises towards the drop.

In a breakdown (``inputs.sections``) the producer builds tension before the kick comes back: a noise riser that
grows louder and brighter, a snare roll that gets denser, a filter opening. :class:`BuildupTracker` follows that
per analysis hop from three measures, each smoothed over about half a second:

- **loudness**: the hop's RMS, in dB;
- **brightness**: the spectral centroid, in octaves;
- **density**: onsets per second (as doublings of one plus that rate).

A build-up is a *sustained* rise: loudness up by at least 2 dB, or brightness by a third of an octave, or the
onsets twice as dense, against two seconds before and against the breakdown's own floor (its quietest, dullest,
sparsest moment so far), for a whole second. Then ``buildup`` is reported once, and ``tension`` (0..1) says how
far the music has risen above the floor, the mean of the three rises with 9 dB, an octave and two doublings of
density each counting as full. Tension only grows during a build-up; it goes back to 0 at the drop (the end of
the breakdown) or when the music falls well back (6 dB) from the build-up's peak without a drop.

Every measure is a ratio between the music's own numbers, so the same music at any level gives the same
build-ups. Pure and cheap (a few float operations per hop): numbers in, an event out.
"""

from __future__ import annotations

import math
from collections import deque

from metadj_bridge.inputs.sections import SectionEvent

__all__ = ["BuildupTracker"]

#: Smoothing of each measure.
SMOOTH_S = 0.5
#: The rise is measured against this long ago, and must hold this long.
LOOKBACK_S = 2.0
HOLD_S = 1.0
#: A rise: this much against LOOKBACK_S ago and against the breakdown's floor (dB, octaves, doublings).
RISE = (2.0, 1.0 / 3.0, 1.0)
#: Full tension: this far above the floor, in each measure.
FULL = (12.0, 1.5, 3.0)
#: A build that falls this far back from its peak loudness without a drop ends.
FALL_DB = 6.0
#: Onset density is counted over this long.
DENSITY_S = 1.0

Measures = tuple[float, float, float]


class BuildupTracker:
    """Follows build-ups inside breakdowns, hop by hop. ``tension`` is 0..1 (0 outside a build-up).

    Call :meth:`process` once per hop, in order, with whether the section tracker is in a breakdown.
    """

    def __init__(self, hop_s: float) -> None:
        if not hop_s > 0:
            raise ValueError(f"hop duration {hop_s}: must be > 0")
        self.hop_s = hop_s
        self._alpha = 1.0 - math.exp(-hop_s / SMOOTH_S)
        self._lookback = max(1, round(LOOKBACK_S / hop_s))
        self._history: deque[Measures] = deque(maxlen=self._lookback + 1)
        self._onsets: deque[float] = deque()
        self._now: Measures | None = None
        self._floor: Measures | None = None
        self._rising_since: float | None = None
        self._peak = -math.inf
        self.building = False
        self.tension = 0.0

    def _end(self) -> None:
        self._floor = None
        self._rising_since = None
        self._peak = -math.inf
        self.building = False
        self.tension = 0.0

    def process(self, t: float, rms: float, centroid_hz: float, onset: bool,
                in_breakdown: bool) -> tuple[SectionEvent, ...]:
        """One hop; returns the build-up decided in it (usually nothing)."""
        if onset:
            self._onsets.append(t)
        while self._onsets and self._onsets[0] < t - DENSITY_S:
            self._onsets.popleft()
        raw: Measures = (20.0 * math.log10(max(rms, 1e-6)) if math.isfinite(rms) else -120.0,
                         math.log2(max(centroid_hz, 20.0)) if math.isfinite(centroid_hz) else math.log2(20.0),
                         math.log2(1.0 + len(self._onsets) / DENSITY_S))
        prev, a = self._now, self._alpha
        level: Measures = raw if prev is None else (prev[0] + a * (raw[0] - prev[0]),
                                                    prev[1] + a * (raw[1] - prev[1]),
                                                    prev[2] + a * (raw[2] - prev[2]))
        self._now = level
        self._history.append(level)
        if not in_breakdown:
            if self._floor is not None:
                self._end()
            return ()
        old = self._floor
        floor: Measures = level if old is None else (min(old[0], level[0]), min(old[1], level[1]),
                                                     min(old[2], level[2]))
        self._floor = floor
        if self.building:
            self._peak = max(self._peak, level[0])
            self.tension = max(self.tension, _tension(level, floor))
            if level[0] < self._peak - FALL_DB:  # it fell back without a drop: not a build-up after all
                self._end()
                self._floor = level
            return ()
        if len(self._history) <= self._lookback:
            return ()
        if not (_rises(level, self._history[0]) and _rises(level, floor)):
            self._rising_since = None
            return ()
        if self._rising_since is None:
            self._rising_since = t
        if t - self._rising_since < HOLD_S:
            return ()
        self.building = True
        self._peak = level[0]
        self.tension = _tension(level, floor)
        return (SectionEvent("buildup", t, t - self._rising_since + LOOKBACK_S),)


def _rises(now: Measures, then: Measures) -> bool:
    return any(n - p >= r for n, p, r in zip(now, then, RISE, strict=True))


def _tension(now: Measures, floor: Measures) -> float:
    return sum(min(1.0, max(0.0, (n - f) / full)) for n, f, full in zip(now, floor, FULL, strict=True)) / 3
