"""Breakdowns and drops: when the kick goes away for a while, and when it comes back.

A dance track is built from sections with a kick (the groove) and sections without one (the breakdown, the
build-up); the *drop* is the moment the kick and the low end return. :class:`SectionTracker` follows this per
analysis hop from the low band's spectral flux (the rise of the low band's magnitude: a kick is a big, sudden
one; a pad, a vocal, a drone or a held bass hardly rises) and the hop's RMS:

- **kick**: a hop whose low flux reaches half the kick level learnt from the track's own kicks (the loudest
  rise of each 1.5 s that held one), or a *hit* (low flux far above both the music's loudness and its own
  recent mean) of at least 0.3 of that level (-10 dB), so a kick that got quieter under a fader still counts but a
  bassline well below the kick does not. Every comparison is a ratio between the music's own numbers: the
  same audio at any level, with or without the input's auto gain, gives the same sections;
- **breakdown**: no kick for 7 beats at the beat tracker's tempo (2.5 to 5 s; 3.5 s while it has none), so
  about 1.5 to 2 bars after the first missing kick. A fill of one bar without a kick stays shorter than that;
- **drop**: the first strong kick after a breakdown, reported in the hop it arrives in: half the kick level
  learnt before the breakdown, and 1.3 times the breakdown's own loudest low-band rise of the last 2 s (so a
  riser, a pad or a build-up's snare roll, which grows hit by hit, is not a drop). During a breakdown the kick
  level follows the music's own level down (never up): a kick that returns quieter because the DJ turned the
  music down meanwhile is still heard, and a build-up, which gets louder, keeps the whole kick level, so the
  loudest hits of its snare roll over a noise riser are no drop.

Choices where music is ambiguous:

- Nothing is a breakdown until a kick pattern has been heard (two hits within 2.5 s): an intro without a kick
  is the track's start, and its first kick is no drop.
- Silence is not a breakdown: while the music is more than 20 dB below its running level nothing is decided,
  and after 5 s of it the tracker starts again as at a track's start (the section signal goes back to full
  without a trigger; the next track's first kick is no drop). A short silence inside a breakdown, such as the
  beat of silence before many drops, keeps the breakdown, so the drop after it is reported.
- A lone kick inside a breakdown cannot be told from the drop when it lands, so it fires ``drop``; if no
  other kick follows within 2 s, the next kick fires ``drop`` again (the real one is not lost). A kick roll
  leading into the drop reads as the drop at its first kick.
- A full section lasts at least 4 s, and the section signal only changes with a trigger (or a long silence):
  no flapping.

Pure and cheap (a few float operations per hop, no numpy): numbers in, :class:`SectionEvent` out.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass

__all__ = ["SectionEvent", "SectionTracker"]

#: Beats without a kick that make a breakdown, and the limits in seconds (also used when the tempo is unknown).
GAP_BEATS = 7.0
GAP_MIN_S, GAP_MAX_S, GAP_DEFAULT_S = 2.5, 5.0, 3.5
#: A hop is a kick when its low flux reaches this fraction of the learnt kick level.
KICK_FRACTION = 0.5
#: The drop: this fraction of the kick level from before the breakdown, and this many times the breakdown's own
#: loudest low-band rise of the last FLOOR_WINDOW_S.
DROP_FRACTION = 0.5
DROP_CONTRAST = 1.3
#: A low-band *hit*, whatever the level: low flux HIT_RATIO times the music's RMS of the last LOUDNESS_S and
#: HIT_JUMP times its own mean over HIT_MEAN_S (a kick or a bass note; not a pad, a held bass or a riser). A hit
#: keeps the section full too, if it reaches HIT_KICK_FRACTION of the kick level (-10 dB): a kick that got quieter
#: (a fader pulled down) still counts, a bassline far below the kick does not.
HIT_RATIO = 3.0
HIT_KICK_FRACTION = 0.3
HIT_JUMP = 4.0
HIT_MEAN_S = 1.0
#: The first kicks (before any kick level is known): two hits within ARM_WINDOW_S, at least ARM_SPACING_S apart.
ARM_WINDOW_S = 2.5
ARM_SPACING_S = 0.2
#: The kick level follows the loudest low-band rise of each LEVEL_WINDOW_S (long enough to hold a kick in any
#: dance pattern, so a held bass between kicks does not pull it down), by LEVEL_PER_WINDOW of the difference;
#: during a breakdown it follows the music's level (over LEVEL_FOLLOW_S) down, to MIN_LEVEL_SCALE of it at most, so
#: a DJ turning the music down still gets a drop when the kick returns at the lower level.
LEVEL_WINDOW_S = 1.5
LEVEL_PER_WINDOW = 0.5
LEVEL_FOLLOW_S = 1.0
MIN_LEVEL_SCALE = 0.2
#: The breakdown's loudest low-band rise is held this long (a peak hold: the hits of a build-up's snare roll read
#: up to twice apart as they fall across the analysis hops, and the loudest of them sets the bar for the kick).
FLOOR_WINDOW_S = 2.0
#: Loudness: a follower over LOUDNESS_S; the music's running level over MUSIC_LEVEL_S.
LOUDNESS_S = 0.25
MUSIC_LEVEL_S = 10.0
#: Quiet means this far below the music's running level (-20 dB; a breakdown is rarely more than ~12 dB under
#: the groove), or below ABSOLUTE_QUIET RMS (-80 dBFS).
QUIET_RATIO = 10 ** (-20 / 20)
ABSOLUTE_QUIET = 1e-4
#: Seconds of quiet after which the tracker starts again as at a track's start.
RESET_AFTER_QUIET_S = 5.0
#: Shortest full section (from a drop to the next breakdown).
MIN_FULL_S = 4.0
#: After a drop, another kick within this long (the longest gap between kicks in a groove, e.g. hip-hop's two
#: beats at 84 BPM) confirms it. Without one the drop was a lone kick, and the next kick is reported as the drop.
CONFIRM_S = 2.0


@dataclass(frozen=True, slots=True)
class SectionEvent:
    """A section change: ``kind`` is ``"breakdown"`` or ``"drop"``.

    ``t`` is the end of the hop in which it was decided (on the analysis time axis). ``seconds`` is, for a
    drop, how long the music went without a kick (the breakdown's length, from its last kick to this one);
    for a breakdown, how long the kick has been gone when it is declared.
    """

    kind: str
    t: float
    seconds: float


class SectionTracker:
    """Follows full sections and breakdowns, hop by hop. ``section`` is 1.0 (full) or 0.0 (breakdown).

    Call :meth:`process` once per hop, in order, from the analysis thread; it returns the events decided in
    that hop (usually none).
    """

    def __init__(self, hop_s: float) -> None:
        if not hop_s > 0:
            raise ValueError(f"hop duration {hop_s}: must be > 0")
        self.hop_s = hop_s
        self._loud_alpha = 1.0 - math.exp(-hop_s / LOUDNESS_S)
        self._mean_alpha = 1.0 - math.exp(-hop_s / HIT_MEAN_S)
        self._music_alpha = 1.0 - math.exp(-hop_s / MUSIC_LEVEL_S)
        self._follow_alpha = 1.0 - math.exp(-hop_s / LEVEL_FOLLOW_S)
        # Followers of the signal itself; they run on through a reset.
        self._loudness = 0.0
        self._level = 0.0
        self._flux_mean = 0.0
        self._music = 0.0
        self._quiet_since: float | None = None
        self.reset()

    def reset(self) -> None:
        """Back to a track's start: full section, no kick heard yet."""
        self.section = 1.0
        #: A kick pattern has been heard since the start (or the last long silence).
        self.armed = False
        #: The learnt kick level (low flux of a typical kick).
        self.kick_level = 0.0
        self._window_end = -math.inf
        self._window_max = 0.0
        self._window_kick = False
        self._arm_t: float | None = None
        self._arm_flux = 0.0
        self._last_kick = 0.0
        self._since_kick_max = 0.0
        self._floor: deque[tuple[float, float]] = deque()  # (time, rise), falling: the front is the window's max
        self._breakdown_kick = self._breakdown_level = 0.0  # the kick level and the music's level as it began
        self._changed = -math.inf
        #: The last drop while no kick has confirmed it yet; the last kick before the breakdown.
        self._drop_t: float | None = None
        self._kickless_from = 0.0

    def process(self, t: float, flux_low: float, rms: float, bpm: float = 0.0) -> tuple[SectionEvent, ...]:
        """Feed one hop: its end time, low-band flux, RMS and the beat tracker's tempo (0 when unknown)."""
        if not (flux_low >= 0.0 and math.isfinite(flux_low)):
            flux_low = 0.0
        if not (rms >= 0.0 and math.isfinite(rms)):
            rms = 0.0
        loudness, mean = self._loudness, self._flux_mean
        hit = flux_low >= HIT_RATIO * loudness and flux_low >= HIT_JUMP * mean
        self._loudness = loudness + (rms - loudness) * self._loud_alpha
        self._level += (rms - self._level) * self._follow_alpha
        self._flux_mean = mean + (flux_low - mean) * self._mean_alpha
        if self._quiet(t, rms):
            return ()
        if not self.armed:
            if hit:
                self._first_kicks(t, flux_low)
            return ()
        if self.section > 0.5:
            return self._full(t, flux_low, hit, bpm)
        return self._breakdown(t, flux_low)

    # ------------------------------------------------------------------ states

    def _quiet(self, t: float, rms: float) -> bool:
        """True while the music is silent (nothing is decided then); a long silence starts again.

        The running level follows quiet passages too (slowly), so music that simply got much quieter (a fader
        pulled right down) is heard again after a few seconds, as a new start.
        """
        level = rms if rms > self._loudness else self._loudness  # a hit, or the last quarter second
        music = self._music
        quiet = level < ABSOLUTE_QUIET or level < QUIET_RATIO * music
        self._music = music + (level - music) * self._music_alpha
        if not quiet:
            self._quiet_since = None
            return False
        if self._quiet_since is None:
            self._quiet_since = t
        elif t - self._quiet_since >= RESET_AFTER_QUIET_S and (self.armed or self.section < 1.0):
            self.reset()
        return True

    def _first_kicks(self, t: float, flux_low: float) -> None:
        """A hit before any kick is known: the second one close after the first arms the tracker."""
        if self._arm_t is not None and ARM_SPACING_S <= t - self._arm_t <= ARM_WINDOW_S:
            self.armed = True
            self.kick_level = 0.5 * (self._arm_flux + flux_low)
            self._last_kick = t
            self._since_kick_max = 0.0
            self._window_end, self._window_max, self._window_kick = t + LEVEL_WINDOW_S, flux_low, True
            return
        if self._arm_t is None or t - self._arm_t > ARM_WINDOW_S:
            self._arm_t, self._arm_flux = t, flux_low
        elif flux_low > self._arm_flux and t - self._arm_t < ARM_SPACING_S:
            self._arm_flux = flux_low  # the same hit's peak, a hop later

    def _full(self, t: float, flux_low: float, hit: bool, bpm: float) -> tuple[SectionEvent, ...]:
        if flux_low > self._window_max:
            self._window_max = flux_low
        if t >= self._window_end:  # learn the kick level from the window's loudest rise, if it held a kick
            if self._window_kick:
                self.kick_level += (self._window_max - self.kick_level) * LEVEL_PER_WINDOW
            self._window_end, self._window_max, self._window_kick = t + LEVEL_WINDOW_S, 0.0, False
        kick_level = self.kick_level
        if flux_low >= KICK_FRACTION * kick_level or (hit and flux_low >= HIT_KICK_FRACTION * kick_level):
            self._last_kick = t
            self._since_kick_max = 0.0
            self._window_kick = True
            return self._confirm(t)
        if flux_low > self._since_kick_max:
            self._since_kick_max = flux_low
        gone = t - self._last_kick
        if gone < _gap_s(bpm) or t - self._changed < MIN_FULL_S:
            return ()
        self.section = 0.0
        self._changed = t
        self._drop_t = None
        self._floor.clear()
        self._floor.append((t, self._since_kick_max))
        self._breakdown_kick, self._breakdown_level = self.kick_level, self._level
        return (SectionEvent("breakdown", t, gone),)

    def _confirm(self, t: float) -> tuple[SectionEvent, ...]:
        """A kick in a full section: the groove that confirms a drop, or the real drop after a lone kick."""
        drop_t = self._drop_t
        if drop_t is None or t - drop_t < ARM_SPACING_S:  # no drop to confirm, or the drop's own kick
            return ()
        if t - drop_t <= CONFIRM_S:
            self._drop_t = None
            return ()
        self._drop_t = self._changed = t
        return (SectionEvent("drop", t, t - self._kickless_from),)

    def _breakdown(self, t: float, flux_low: float) -> tuple[SectionEvent, ...]:
        if self._breakdown_level > 0:
            scale = self._level / self._breakdown_level
            self.kick_level = self._breakdown_kick * min(1.0, max(MIN_LEVEL_SCALE, scale))
        floor = self._floor
        while floor and floor[0][0] < t - FLOOR_WINDOW_S:
            floor.popleft()
        loudest = floor[0][1] if floor else 0.0
        if flux_low >= DROP_FRACTION * self.kick_level and flux_low >= DROP_CONTRAST * loudest:
            self._kickless_from = self._last_kick
            seconds = t - self._last_kick
            self.section = 1.0
            self._changed = self._drop_t = t
            self._last_kick = t
            self._since_kick_max = 0.0
            self._window_end, self._window_max, self._window_kick = t + LEVEL_WINDOW_S, flux_low, True
            return (SectionEvent("drop", t, seconds),)
        while floor and floor[-1][1] <= flux_low:
            floor.pop()
        floor.append((t, flux_low))
        return ()


def _gap_s(bpm: float) -> float:
    """How long without a kick makes a breakdown: GAP_BEATS at ``bpm``, within limits."""
    if not bpm > 0.0:
        return GAP_DEFAULT_S
    gap = GAP_BEATS * 60.0 / bpm
    return GAP_MIN_S if gap < GAP_MIN_S else GAP_MAX_S if gap > GAP_MAX_S else gap
