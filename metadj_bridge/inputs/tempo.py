"""The BeatClock: the one owner of tempo (design.md).

Its source is the music itself (Ableton Link, MIDI clock and OSC tempo are sources above it, in the arbiter).
Per analysis hop it reads the onset activation (``beat_activation``: spectral flux on a log-frequency scale),
the low-band flux and the chroma, and gives a beat grid a DJ can trust:

- **beats**: a beat-pointer HMM filtered forward (:mod:`~metadj_bridge.inputs.beat_hmm`) says in which hop a
  beat falls, at most one hop after it; tempo and phase come out of the same model, 60-190 BPM, with the
  autocorrelation of the last seconds of activation deciding between octaves;
- **flywheel**: in a breakdown (:mod:`~metadj_bridge.inputs.breakdown`) the activation is damped and the beats and
  bars run on, so pads and risers cannot re-time the grid, nor the model's tempo, which wanders when it hears next to
  nothing (the music stopped); the model takes over again with the drop, from the held tempo if it wandered off (and
  phase, after a long one), never firing two beats closer than half a beat; when the bass fell away because the DJ
  mixed in a track with less of it, the other beat heard is followed instead (NEW_BEAT_*), and music back after a
  second of silence is a new start whose bass and bars are learnt afresh (SILENCE_*: a performer's next song);
- **tempo changes**: a DJ's crossfade to a track 5-25% away is heard in what the last beats do not predict
  (:mod:`~metadj_bridge.inputs.tempo_change`), and a beat that comes in after a beatless stretch the clock had locked
  on is heard at its own tempo (:mod:`~metadj_bridge.inputs.beat_entry`): the model moves to the new tempo, and the
  readout and the bar count start again;
- **BPM readout**: a line fitted through the recent beats (the model's tempo is whole hops), so the reading
  holds still on steady music and each beat carries its own; it starts again when the beats move to another phase;
- **bar**: each beat's position in the bar from the music (:mod:`~metadj_bridge.inputs.downbeats`), counted from
  the music's first onset when it is heard to begin (:mod:`~metadj_bridge.inputs.music_entry`).

Pure: feature values and their times in, beats out. No clocks, threads or I/O.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from metadj_bridge.errors import ConfigError
from metadj_bridge.inputs.beat_entry import BeatEntry
from metadj_bridge.inputs.beat_hmm import BeatHMM
from metadj_bridge.inputs.breakdown import BREAKDOWN_AFTER_S, BreakdownWatch
from metadj_bridge.inputs.downbeats import DownbeatTracker
from metadj_bridge.inputs.music_entry import MusicEntry
from metadj_bridge.inputs.tempo_change import TempoChangeDetector


class TempoFeatures(Protocol):
    """What the BeatClock reads from each analysis hop (``analysis.HopFeatures`` has these)."""

    @property
    def t(self) -> float: ...
    @property
    def beat_activation(self) -> float: ...
    @property
    def beat_low(self) -> float: ...
    @property
    def chroma(self) -> np.ndarray: ...
    @property
    def bass(self) -> np.ndarray: ...
    @property
    def beat_bands(self) -> np.ndarray: ...


#: A breakdown's activation is scaled by BREAKDOWN_DAMPING; after BREAKDOWN_RESEAT_S or more the model takes the held
#: phase at the drop; its held beats give the bars no evidence unless they began BARS_HEARD_S before it or later.
BREAKDOWN_DAMPING = 0.3
BREAKDOWN_RESEAT_S = 4.0
BARS_HEARD_S = 16.0
#: ... unless another beat is heard in it (a DJ's crossfade into a track with less bass, which would otherwise be
#: held at the old tempo for as long as its low band stays low): the activation of the last NEW_BEAT_S repeats at a
#: beat period 5-25% from the held one with at least NEW_BEAT_SUPPORT (1 is a perfect repeat) and NEW_BEAT_MARGIN
#: more than at the held period, at NEW_BEAT_CHECKS checks in a row (one every NEW_BEAT_EVERY hops) within
#: NEW_BEAT_TOLERANCE. The model then moves there as for a called tempo change, the low band heard now is the new
#: normal, and for NEW_BEAT_GRACE_S no breakdown is heard (the old track's bass is still fading from the low band's
#: mean, and the tempo change detector's metrical check runs then). A breakdown of the same track still repeats at
#: its beat (hats, a snare roll), or at none.
NEW_BEAT_S = 3.0
NEW_BEAT_SUPPORT = 0.4
NEW_BEAT_MARGIN = 0.2
NEW_BEAT_CHECKS = 6
NEW_BEAT_EVERY = 8
NEW_BEAT_TOLERANCE = 0.03
NEW_BEAT_GRACE_S = 8.0
#: Music back after a silence (the compressed spectrum's sum under SILENCE_RATIO of its 8 s mean for SILENCE_S) is
#: a new start: a performer's next song, which need not have the last one's bass. The low band's followers start
#: again from it and no breakdown is heard in its first BREAKDOWN_AFTER_S, as at the stream's start: the model, not the
#: flywheel, times the beats (the grid held through the silence).
SILENCE_RATIO = 0.05
SILENCE_S = 1.0
#: Beats the BPM readout fits its line through, and how far (relative) it may stray from the model's tempo.
READOUT_BEATS = 16
READOUT_AGREEMENT = 0.04
#: The line starts again when the model's tempo moves this far (relative), and needs READOUT_MIN_BEATS beats.
READOUT_RESTART = 0.05
READOUT_MIN_BEATS = 3
#: ... and again from the last READOUT_MIN_BEATS beats when they all lie more than READOUT_JUMP of a beat to the same
#: side of the line through the ones before them (the model moved to another phase: a line through both would read
#: a tempo a few percent off for 16 beats).
READOUT_JUMP = 0.12
#: A beat is measured at the activation's peak from MEASURE_BEFORE hops before the model's beat to
#: MEASURE_AFTER of a beat after it (the model's "on the beat" states span its first tenth), once those hops
#: have arrived, if the peak reaches MEASURE_MIN; the model's beats are placed on the line fitted through the
#: measured ones when it is within GRID_SNAP of a beat.
MEASURE_BEFORE = 2
MEASURE_AFTER = 0.12
MEASURE_MIN = 0.2
GRID_SNAP = 0.05


@dataclass
class TempoConfig:
    min_bpm: float = 60.0
    max_bpm: float = 190.0
    beats_per_bar: int = 4
    #: Hear a 3/4 piece in 3 when 4 is configured, and the other way round (the configured metre is preferred).
    detect_metre: bool = True
    #: A delay to take off every beat: an input path that is known to be late.
    onset_delay_s: float = 0.0

    def __post_init__(self) -> None:
        if not 20 <= self.min_bpm < self.max_bpm <= 400:
            raise ConfigError(
                f"tempo range {self.min_bpm:g}-{self.max_bpm:g} BPM: need 20 <= min < max <= 400"
            )
        if self.max_bpm < 1.9 * self.min_bpm:
            raise ConfigError(
                f"tempo range {self.min_bpm:g}-{self.max_bpm:g} BPM must span nearly an octave "
                "(max >= 1.9 x min), or half- and double-tempo readings cannot be folded into it"
            )
        if not 1 <= self.beats_per_bar <= 16:
            raise ConfigError(f"beats_per_bar {self.beats_per_bar}: must be 1-16")
        if not 0 <= self.onset_delay_s < 0.1:
            raise ConfigError(f"onset_delay_s {self.onset_delay_s}: must be in [0, 0.1) seconds")


@dataclass(frozen=True, slots=True)
class BeatEvent:
    """One beat on the grid."""

    t: float
    index: int
    #: Position in the bar, 0 = downbeat.
    beat_in_bar: int
    bpm: float
    confidence: float


class BeatClock:
    """Steady beat grid from per-hop audio features. Call ``process()`` once per hop, in order."""

    def __init__(self, hop_s: float, config: TempoConfig | None = None) -> None:
        if hop_s <= 0:
            raise ConfigError(f"hop duration {hop_s}: must be > 0")
        self.config = config or TempoConfig()
        self.hop_s = hop_s
        fps = 1.0 / hop_s
        self._hmm = BeatHMM(fps, self.config.min_bpm, self.config.max_bpm)
        self._changes = TempoChangeDetector(fps, int(self._hmm.taus[0]), int(self._hmm.taus[-1]))
        self._entry = BeatEntry(fps, self._hmm.taus)
        self._bars = DownbeatTracker(fps, self.config.beats_per_bar, detect_metre=self.config.detect_metre)
        self._music = MusicEntry(hop_s)
        self._hops = self._bars_from = 0
        self._delay = self.config.onset_delay_s
        self._low = BreakdownWatch(hop_s)
        #: The compressed spectrum's sum over about 8 s of music, and the hops in a row under SILENCE_RATIO of it.
        self._level_long = 0.0
        self._silent = 0
        self._long_alpha = hop_s / 8.0
        #: The activation and the time of the last hops, by hop count.
        self._ring = np.zeros(MEASURE_BEFORE + int(MEASURE_AFTER * 60.0 / self.config.min_bpm / hop_s) + 8)
        self._times = np.zeros(len(self._ring))
        #: The beats measured at the activation's peak (beat index, time, the model's beat period then), their line.
        self._measured: deque[tuple[int, float, float]] = deque(maxlen=READOUT_BEATS)
        self._fit: tuple[float, float] | None = None
        #: The first beat index the line may go through (the beats moved to another phase there).
        self._line_from = 0
        #: The newest model beat still to be measured: (beat index, the hops to look for its peak in).
        self._unmeasured: tuple[int, int, int] | None = None
        self._pending: float | None = None
        self._flywheel_next = 0.0
        #: The low band has fallen away (a breakdown): the grid runs on at the held tempo.
        self.breakdown = False
        #: Another beat heard in a breakdown: its period in hops, and the checks in a row it held (NEW_BEAT_CHECKS).
        self._new_beat_lag, self._new_beat_run = 0.0, 0
        self.period: float | None = None
        self._last_beat: float | None = None
        self.beat_index, self._beat_in_bar, self.bpm, self.confidence = -1, 0, 0.0, 0.0
        #: The last beat's distance from the one before, in beats of the grid's tempo (1: held, or the tempo moving).
        self.interval = 1.0
        #: Whether the readout's line has existed yet: until then the BPM is the model's refined one.
        self._lined = False
        #: Tempo changes called by the detector (a DJ's transitions) since the start.
        self.tempo_changes = 0
        #: The tempo the detector last called, read until the new track's beats draw a line of their own (0: none).
        self._called_bpm = 0.0

    # ------------------------------------------------------------------ public state

    @property
    def locked(self) -> bool:
        return self._last_beat is not None

    def phase(self, t: float) -> float:
        """Beat phase at ``t``: 0 on the beat, rising to 1 just before the next."""
        if self.period is None or self._last_beat is None:
            return 0.0
        return ((t - self._last_beat) / self.period) % 1.0

    @property
    def beats_per_bar(self) -> int:
        """The bar the music is heard in: the configured one, or 3 or 4 when ``detect_metre`` hears the other."""
        return self._bars.beats_per_bar

    def bar_position(self, t: float) -> float:
        """Beats into the bar at ``t`` (0 <= x < beats_per_bar), counted on from the last beat: not a beat back while
        the next one is a little late, nor one on while it is reported ahead of its time."""
        if self.period is None or self._last_beat is None:
            return 0.0
        return (self._beat_in_bar + (t - self._last_beat) / self.period) % self.beats_per_bar

    # ------------------------------------------------------------------ per hop

    def process(self, f: TempoFeatures) -> list[BeatEvent]:
        """Feed one hop; returns the beats that fall in it (usually none, sometimes one)."""
        self._hops += 1
        t, a, low = f.t, f.beat_activation, f.beat_low
        if not (math.isfinite(a) and math.isfinite(low)):
            a = low = 0.0
        self._bars.hop(a, low, f.chroma, f.bass, f.beat_bands)
        level = float(f.beat_bands.sum())
        if not math.isfinite(level):
            level = 0.0
        if level < SILENCE_RATIO * self._level_long:
            self._silent += 1
        else:
            if self._silent >= SILENCE_S / self.hop_s:  # a new start: learn its low band and its bars afresh
                self._low.restart()
                self._restart_bars()
                self._music.silence(self._silent)
            self._silent = 0
            self._level_long += self._long_alpha * (level - self._level_long)  # held through a silence
        if self._music.hop(t - self._delay, a, level):  # the music begins: no breakdown in its first seconds
            self._low.hold_off(self._hops + int(round(BREAKDOWN_AFTER_S / self.hop_s)))
        was_breakdown = self.breakdown
        self._low.hop(self._hops, low)
        self.breakdown = self._low.active
        if self.breakdown and self._hops % NEW_BEAT_EVERY == 0 and (new := self._new_beat()) is not None:
            self._low.new_normal(self._hops + int(round(NEW_BEAT_GRACE_S / self.hop_s)))
            self.breakdown = False
            self._changes.changed(new)
            self._move_to(new)
        elif was_breakdown and not self.breakdown:
            self._resume_held_tempo(t)
        hit = self._hmm.step(a * BREAKDOWN_DAMPING if self.breakdown else a, f.beat_bands)
        if self._changes.push(a):
            self._follow_tempo_change()
        if self._entry.push(a, f.beat_bands, self._hmm.locked and not self.breakdown):
            if (new_beat := self._entry.decide(60.0 * self._hmm.fps / self._hmm.tempo_bpm())) is not None:
                self._move_to(new_beat)
        self._ring[self._hops % len(self._ring)] = a
        self._times[self._hops % len(self._ring)] = t
        self._measure()
        now = t - self._delay
        period = self.period
        events: list[BeatEvent] = []
        if self._pending is not None:
            if now >= self._pending - 0.5 * self.hop_s:
                events.append(self._beat(self._pending))
                self._pending = None
            hit = False
        if self.breakdown and period is not None:
            if now >= self._flywheel_next - 0.5 * self.hop_s:
                events.append(self._beat(self._flywheel_next, held=True))
                self._flywheel_next += period
            hit = False
        elif hit and self._last_beat is not None and period is not None and now - self._last_beat < 0.5 * period:
            hit = False
        if hit:
            # The beat's peak is looked for near the grid's beat when the model agrees with the grid, else in the
            # model's own "on the beat" states; the beat is reported on the grid (at its time, not before).
            when = self._on_grid(now)
            if when != now:  # near the grid: its peak is within a hop or two of the grid's beat
                centre = self._hops + int(round((when - now) / self.hop_s))
                first, last = centre - MEASURE_BEFORE, centre + MEASURE_BEFORE
            else:  # the model's "on the beat" states span the first tenth of a beat: its peak is in there
                first = self._hops - MEASURE_BEFORE
                last = self._hops + int(math.ceil(MEASURE_AFTER * 60.0 / self._hmm.tempo_bpm() / self.hop_s))
            self._unmeasured = (self.beat_index + 1, first, last)
            if when > now:
                self._pending = when
            else:
                events.append(self._beat(when))
        if not self.breakdown and self._last_beat is not None and self.period is not None:
            self._flywheel_next = self._last_beat + self.period
        return events

    def _follow_tempo_change(self) -> None:
        """A DJ's transition to another tempo (:mod:`~metadj_bridge.inputs.tempo_change`): the model moves to it, the
        BPM reads it at once (the grid's period at the next beat), the line starts again from the new track's beats."""
        new = self._changes.check(60.0 * self._hmm.fps / self._hmm.tempo_bpm(), self._hmm.locked and not self.breakdown)
        if new is not None:
            self._move_to(new)

    def _move_to(self, period: float) -> None:
        """The model moves to a new tempo (``period`` hops); the readout and the bar count start again from it."""
        self._hmm.move_tempo(period)
        self._restart_bars()
        self._measured.clear()
        self._fit = None
        self.bpm = self._called_bpm = 60.0 * self._hmm.fps / period
        self.tempo_changes += 1

    def _restart_bars(self) -> None:  # another track's (a DJ's next one, a beat after an intro): not the old bars
        self._bars = DownbeatTracker(1.0 / self.hop_s, self.config.beats_per_bar, detect_metre=self.config.detect_metre)
        self._bars_from = self._hops
        self._music.restarted()

    def _new_beat(self) -> float | None:
        """In a breakdown: the beat period (hops) of another beat that has held NEW_BEAT_CHECKS checks, else None."""
        if self.period is None or not self._hmm.locked:
            return None
        here, lag, value = self._changes.other_beat(self.period / self.hop_s, int(round(NEW_BEAT_S / self.hop_s)))
        if lag <= 0.0 or value < NEW_BEAT_SUPPORT or value < here + NEW_BEAT_MARGIN:
            self._new_beat_run = 0
            return None
        held = self._new_beat_run and abs(lag / self._new_beat_lag - 1.0) <= NEW_BEAT_TOLERANCE
        self._new_beat_run = self._new_beat_run + 1 if held else 1
        self._new_beat_lag = lag
        if self._new_beat_run < NEW_BEAT_CHECKS:
            return None
        self._new_beat_run = 0
        return lag

    def _resume_held_tempo(self, t: float) -> None:
        """The music is back after a breakdown (or after it stopped): the model, whose tempo may have wandered while it
        heard next to nothing, starts again from the held tempo if it did. When the low band itself came back (not a new
        start's), the model takes the held grid's phase too: in a long breakdown it heard only pads and hats (off the
        beat, in house) and began the drop half a beat off (generated: beat F after the drop 0.85-0.94, now 0.98-1)."""
        if self.period is None or not self._hmm.locked or self._last_beat is None:
            return
        held = self.period / self.hop_s
        if self._hops >= self._low.not_before and self._low.lasted() >= BREAKDOWN_RESEAT_S:
            ago = np.round((t - self._delay - self._last_beat) / self.hop_s + held * np.arange(8)).astype(int)
            self._hmm.move_tempo(held, ago)
        elif abs(60.0 * self._hmm.fps / self._hmm.tempo_bpm() / held - 1.0) > READOUT_AGREEMENT:
            self._hmm.move_tempo(held)

    # ------------------------------------------------------------------ the fitted grid

    def _on_grid(self, now: float) -> float:
        """When the model's beat falls on the grid fitted through the measured beats, if it is close; else now."""
        fit = self._fit
        if fit is None or self.period is None:
            return now
        intercept, slope = fit
        when = intercept + slope * (self.beat_index + 1)
        return when if abs(when - now) <= GRID_SNAP * self.period else now

    def _measure(self) -> None:
        """The activation's peak near a beat a few hops back, to a fraction of a hop, into the grid's fit."""
        if self._unmeasured is None or self._hops < self._unmeasured[2] + 1:
            return
        index, first, last = self._unmeasured
        self._unmeasured = None
        ring = self._ring
        size = len(ring)
        best, best_a = -1, MEASURE_MIN
        for h in range(max(first, self._hops - size + 2), last + 1):
            y = ring[h % size]
            if y >= best_a and y >= ring[(h - 1) % size] and y > ring[(h + 1) % size]:
                best, best_a = h, y
        if best < 0:  # nothing to measure (a breakdown, the music stopped): the line holds
            return
        y0, y1, y2 = ring[(best - 1) % size], best_a, ring[(best + 1) % size]
        den = y0 - 2 * y1 + y2
        delta = 0.5 * (y0 - y2) / den if den < 0 else 0.0
        when = self._times[best % size] + delta * self.hop_s - self._delay
        self._measured.append((index, when, 60.0 / self._hmm.tempo_bpm()))
        self._refit()

    def _refit(self) -> None:
        points = self._measured
        expected = 60.0 / self._hmm.tempo_bpm()
        # Only the beats measured since the model last changed tempo (a re-lock, a DJ's tempo change), and since
        # the last interval that does not fit its beat.
        start = len(points) - 1
        while start > 0:
            (i0, t0, _), (i1, t1, model) = points[start - 1], points[start]
            if abs(model / expected - 1.0) >= READOUT_RESTART or abs((t1 - t0) / (i1 - i0) / expected - 1.0) >= 0.25:
                break
            start -= 1
        if abs(points[start][2] / expected - 1.0) >= READOUT_RESTART:
            start += 1
        while start < len(points) and points[start][0] < self._line_from:
            start += 1
        if len(points) - start < READOUT_MIN_BEATS:
            self._fit = None
            return
        x = np.array([p[0] for p in list(points)[start:]], float)
        y = np.array([p[1] for p in list(points)[start:]], float)
        fit = _line(x, y)
        # The last beats left the line through the ones before them (the model took another phase): the line starts
        # again from where they are.
        k = READOUT_MIN_BEATS
        if len(x) >= 2 * k:
            before = _line(x[:-k], y[:-k])
            off = y[-k:] - (before[0] + before[1] * x[-k:])
            if np.all(off > READOUT_JUMP * expected) or np.all(off < -READOUT_JUMP * expected):
                fit = _line(x[-k:], y[-k:])
                self._line_from = int(x[-k])
        slope = fit[1]
        if not slope > 0 or abs(slope / expected - 1.0) > READOUT_AGREEMENT:
            self._fit = None
            return
        self._fit = fit

    def _beat(self, t: float, held: bool = False) -> BeatEvent:
        """A beat at ``t``; ``held``: the flywheel's, which keeps the tempo it had (the model hears nothing to go by
        in a breakdown or after the music stops, and its tempo wanders)."""
        last, self._last_beat, model_bpm = self._last_beat, t, self._hmm.tempo_bpm()
        steady = not held and abs(model_bpm * (self.period or 0.0) / 60.0 - 1.0) <= READOUT_AGREEMENT
        self.interval = (t - last) / self.period if last is not None and self.period and steady else 1.0
        self.beat_index += 1
        self._bars.anchor(self._music.beats_since(t, self.beat_index, self._fit, self._measured))
        # (A beat left out: the bars count it. Held beats give no evidence, unless the bars began with the new track.)
        heard = not held or (self._hops - self._bars_from) * self.hop_s < self._low.lasted() + BARS_HEARD_S
        self._beat_in_bar = self._bars.beat(t, self.interval, heard=heard)
        if not held or self.period is None:
            fitted = 60.0 / self._fit[1] if self._fit is not None else 0.0
            # The line speaks for the model's tempo until the model moves away from it (a new tempo, before the
            # line has the beats to follow).
            if self._fit is not None:
                self._lined = True
                self._called_bpm = 0.0
            # Until the line first exists, the model's tempo made precise by the autocorrelation at it; after a called
            # tempo change, until the new track's beats draw a line, the called tempo while the model stays near it
            # (the model, moved there with a bell of MOVE_WIDTH, can rest a few percent off for a second).
            model_bpm = model_bpm if self._lined else self._hmm.refined_bpm()
            if self._called_bpm and abs(model_bpm / self._called_bpm - 1.0) < READOUT_RESTART:
                model_bpm = self._called_bpm
            self.bpm = fitted if abs(fitted / model_bpm - 1.0) <= READOUT_AGREEMENT else model_bpm
            self.period = 60.0 / self.bpm
        self.confidence = self._hmm.confidence()
        return BeatEvent(t, self.beat_index, self._beat_in_bar, self.bpm, self.confidence)


def _line(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """The least-squares line through the points: (intercept, slope)."""
    xm = x.mean()
    slope = float((x - xm) @ (y - y.mean()) / ((x - xm) @ (x - xm)))
    return float(y.mean()) - slope * xm, slope
