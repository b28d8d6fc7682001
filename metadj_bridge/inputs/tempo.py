"""The BeatClock: the one owner of tempo (design.md).

Today its source is the music itself; Ableton Link, MIDI clock and OSC tempo join later as sources above
audio. From the audio it takes, per analysis hop, the spectral flux in three bands (kick, snare, hats) and
aubio's raw tempo, and gives a beat grid a DJ can trust:

- **tempo**: the autocorrelation of the kick-and-snare novelty over the last seconds, with aubio's BPM as a
  second opinion, folded into a configurable range (default 70-180 BPM);
- **octave**: a backbeat rule: if the snare falls halfway between the slower grid's beats, the real beat
  is twice as fast (drum-and-bass read as 87 is 174), which aubio's raw tracker gets wrong;
- **phase**: the grid is placed where the *kick-and-snare* novelty lines up, so a loud off-beat bass with
  sidechain pumping or off-beat hats cannot drag it onto the off-beat;
- **flywheel**: between estimates, a phase-locked loop nudges the grid toward each measured kick and keeps
  it running through breakdowns without a kick; the BPM comes from a line fitted through the measured
  beats, so it holds still on steady music;
- **re-lock**: a new tempo must win two estimates in a row, and switching never fires two beats closer
  than half a beat.

Pure: feature values and their times in, beats out. No clocks, threads or I/O. The measurements these
decisions rest on (autocorrelation, comb scores, grid phase, backbeat) are in
:mod:`~metadj_bridge.inputs.periodicity`.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from metadj_bridge.errors import ConfigError
from metadj_bridge.inputs.periodicity import (
    autocorrelation,
    backbeat_period,
    best_phase,
    comb_score,
    half_beats_are_beats,
    refine_period,
    strongest_period,
)


class TempoFeatures(Protocol):
    """What the BeatClock reads from each analysis hop (``analysis.HopFeatures`` has these)."""

    @property
    def t(self) -> float: ...
    @property
    def flux_low(self) -> float: ...
    @property
    def flux_mid(self) -> float: ...
    @property
    def flux_high(self) -> float: ...
    @property
    def raw_bpm(self) -> float: ...


#: The tempo estimate weighs the novelty of the last seconds most (a weight falling by e every RECENT_S back), so
#: a DJ's transition to another tempo wins the window sooner.
RECENT_S = 3.0
#: Seconds of music before the first tempo estimate (the first lock waits for a second estimate that agrees).
FIRST_ESTIMATE_S = 3.0


@dataclass
class TempoConfig:
    min_bpm: float = 70.0
    max_bpm: float = 180.0
    beats_per_bar: int = 4
    #: Seconds of novelty the tempo and phase estimates look at.
    window_s: float = 8.0
    #: How often the tempo and phase are re-estimated.
    estimate_every_s: float = 0.5
    #: How much of each measured kick offset the grid follows (0..1); higher reacts faster, jitters more.
    phase_gain: float = 0.25
    #: A fixed delay of the flux peak after the true onset (analysis window), removed from every beat.
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
        if not 0 < self.phase_gain <= 1:
            raise ConfigError(f"phase_gain {self.phase_gain}: must be in (0, 1]")


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
        n = int(round(self.config.window_s / hop_s))
        self._n = n
        self._kick = np.zeros(n, np.float32)  # ring buffers of normalised novelty
        self._snare = np.zeros(n, np.float32)
        self._pos = 0
        self._filled = 0
        self._recent = np.zeros(0)  # the tempo estimate's weights, newest last (RECENT_S)
        self._t = 0.0
        self._means = [1e-9, 1e-9, 1e-9]
        self._long = [1e-9, 1e-9, 1e-9]
        #: Kick-band flux over about a second: tells a breakdown from the groove quickly.
        self._kick_recent = 0.0
        self._backbeat: float | None = None
        self._backbeat_t = 0.0
        self._since_estimate = 0.0
        self._raw_bpm = 0.0
        # grid state
        self.period: float | None = None
        self._next_beat: float | None = None
        self._last_beat: float | None = None
        self.beat_index = -1
        self._candidate: float | None = None
        self._candidate_votes = 0
        self._phase_votes = 0
        self._hits: deque[bool] = deque(maxlen=8)
        self._strength = 0.0
        self.bpm = 0.0
        self.confidence = 0.0

    # ------------------------------------------------------------------ public state

    @property
    def locked(self) -> bool:
        return self.period is not None

    @property
    def kicks_absent(self) -> bool:
        """No kick in the last second or so (a breakdown): the grid then runs on without steering."""
        return self._kick_recent < 0.4 * self._long[0]

    def phase(self, t: float) -> float:
        """Beat phase at ``t``: 0 on the beat, rising to 1 just before the next."""
        if self.period is None or self._last_beat is None:
            return 0.0
        return ((t - self._last_beat) / self.period) % 1.0

    def bar_position(self, t: float) -> float:
        """Beats into the bar at ``t`` (0 <= x < beats_per_bar)."""
        if self.period is None or self._last_beat is None:
            return 0.0
        bpb = self.config.beats_per_bar
        return (max(self.beat_index, 0) % bpb + self.phase(t)) % bpb

    # ------------------------------------------------------------------ per hop

    def process(self, f: TempoFeatures) -> list[BeatEvent]:
        """Feed one hop; returns the beats that fall in it (usually none, sometimes one)."""
        self._t = f.t
        self._push(f)
        if f.raw_bpm > 0:
            self._raw_bpm = f.raw_bpm
        self._since_estimate += self.hop_s
        if self._since_estimate >= self.config.estimate_every_s and self._filled * self.hop_s >= FIRST_ESTIMATE_S:
            self._since_estimate = 0.0
            self._estimate()
        return self._emit_due()

    # ------------------------------------------------------------------ novelty buffers

    def _push(self, f: TempoFeatures) -> None:
        values = (max(f.flux_low, 0.0), max(f.flux_mid, 0.0), max(f.flux_high, 0.0))
        # Each band is normalised by its own average over a few seconds, so a loud bass does not drown
        # the snare; and by a fraction of its long-term level, so a quiet tail or silence stays quiet.
        alpha = self.hop_s / 4.0
        alpha_long = self.hop_s / 30.0
        norm = []
        for i, v in enumerate(values):
            if not math.isfinite(v):
                v = 0.0
            if i == 0:
                self._kick_recent += (self.hop_s / 1.0) * (v - self._kick_recent)
            self._means[i] += alpha * (v - self._means[i])
            self._long[i] += alpha_long * (v - self._long[i])
            norm.append(v / (max(self._means[i], 0.2 * self._long[i]) + 1e-9))
        low, mid, high = norm
        self._kick[self._pos] = min(low, 20.0)
        self._snare[self._pos] = min(mid + 0.05 * high, 20.0)
        self._pos = (self._pos + 1) % self._n
        self._filled = min(self._filled + 1, self._n)

    def _series(self) -> tuple[np.ndarray, np.ndarray, float]:
        """The buffers in time order and the time of their first sample."""
        k = np.roll(self._kick, -self._pos)[-self._filled :]
        s = np.roll(self._snare, -self._pos)[-self._filled :]
        t0 = self._t - (self._filled - 1) * self.hop_s
        return k, s, t0

    # ------------------------------------------------------------------ tempo and phase estimates

    def _estimate(self) -> None:
        kick, snare, t0 = self._series()
        novelty = kick + 1.5 * snare
        if len(self._recent) != len(novelty):  # the weights change only while the window fills
            self._recent = np.exp((np.arange(len(novelty)) - len(novelty)) * self.hop_s / RECENT_S)
        acf = autocorrelation(novelty * self._recent)
        if acf is None:
            return
        period, strength = self._tempo(acf, snare, kick)
        self._strength = strength
        if period is None:
            return
        if self.period is None:
            # The first lock waits for two estimates that agree: early on, a tempo and 4/3 of it can tie.
            if self._candidate is not None and abs(period - self._candidate) / self._candidate < 0.02:
                self._candidate, self._candidate_votes = None, 0
                self._lock(period, kick, snare, t0, acf)
            else:
                self._candidate, self._candidate_votes = period, 1
            return
        if self.kicks_absent:
            # No kick or snare right now (a breakdown): hats and pads must not re-time the grid.
            self._candidate, self._candidate_votes = None, 0
            self.bpm = 60.0 / self.period
            return
        if abs(period - self.period) / self.period < 0.04:
            self._candidate, self._candidate_votes = None, 0
            self._track(acf, kick, snare, t0)
            return
        # A new tempo must beat the current one three estimates in a row (1.5 s): a fill, a break or a
        # breakdown must not move the grid.
        ratio = period / self.period
        octave = abs(ratio - 2) < 0.08 or abs(ratio - 0.5) < 0.04
        # The comb cannot tell octaves apart (it scores multiples); the octave rule in _fold decides those.
        if not octave and float(comb_score(acf, period / self.hop_s)) < 1.05 * float(
            comb_score(acf, self.period / self.hop_s)
        ):
            self._candidate, self._candidate_votes = None, 0
            self._track(acf, kick, snare, t0)
            return
        if self._candidate is not None and abs(period - self._candidate) / self._candidate < 0.04:
            self._candidate_votes += 1
        else:
            self._candidate, self._candidate_votes = period, 1
        # An octave change needs longer (2.5 s): the octave rules can be borderline for a moment.
        if self._candidate_votes >= (5 if octave else 3):
            self._candidate, self._candidate_votes = None, 0
            self._lock(period, kick, snare, t0, acf)
        else:
            self._track(acf, kick, snare, t0)

    def _track(self, acf: np.ndarray, kick: np.ndarray, snare: np.ndarray, t0: float) -> None:
        """Steer the running grid: period from the bar-length ACF peak, phase from all beats in view.

        Fitting the whole window at once (not each beat to its nearest onset) keeps syncopated kicks
        from dragging the grid, and looking only within a quarter beat keeps off-beat hats and bass out.
        Without kicks in view (a breakdown) nothing moves: the flywheel holds tempo and phase.
        """
        assert self.period is not None and self._next_beat is not None
        hop = self.hop_s
        lag = self.period / hop
        measured = refine_period(acf, self.period, hop, self.config.beats_per_bar)
        if measured is not None and abs(measured - self.period) / self.period < 0.01:
            # A nudge only: anything bigger is a tempo change, which goes through the re-lock rules.
            self.period += 0.5 * (measured - self.period)
        novelty = kick + 1.5 * snare
        # If the whole window keeps saying the beat is elsewhere (more than a quarter beat away), move.
        best, _ = best_phase(novelty, self.period, hop)
        since = (self._next_beat + self.config.onset_delay_s - t0) / hop - best
        drift = (since / lag + 0.5) % 1.0 - 0.5
        if abs(drift) > 0.25 and float(kick.mean()) > 0:
            self._phase_votes += 1
            if self._phase_votes >= 3:
                self._phase_votes = 0
                self._move_next_beat(self._next_beat - drift * self.period)
                self.bpm = 60.0 / self.period
                return
        else:
            self._phase_votes = 0
        k_mean = float(kick.mean()) + 1e-9
        # Past beats of the current grid inside the window, as fractional indices into the buffers.
        positions = []
        b = self._next_beat - self.period + self.config.onset_delay_s
        while b > t0 + 0.25 * self.period:
            positions.append((b - t0) / hop)
            b -= self.period
        if len(positions) < 4:
            self.bpm = 60.0 / self.period
            return
        pos = np.array(positions)
        grid = np.arange(len(novelty))
        offsets = np.arange(-0.25 * lag, 0.25 * lag + 0.01, 0.5)
        mass = np.interp(pos[None, :] + offsets[:, None], grid, novelty).mean(axis=1)
        j = int(np.argmax(mass))
        kick_mass = float(np.interp(pos + offsets[j], grid, kick).mean())
        if kick_mass > 1.5 * k_mean and mass[j] > 1.3 * float(novelty.mean()):
            shift = float(offsets[j])
            if 0 < j < len(mass) - 1:
                a, c, m = mass[j - 1], mass[j + 1], mass[j]
                denom = a - 2 * m + c
                if denom < 0:
                    shift += 0.5 * 0.5 * (a - c) / denom
            self._next_beat += self.config.phase_gain * 2 * shift * hop
            self._hits.append(True)
        else:
            self._hits.append(False)
        self.bpm = 60.0 / self.period

    def _tempo(self, acf: np.ndarray, snare: np.ndarray, kick: np.ndarray) -> tuple[float | None, float]:
        cfg = self.config
        period, strength = strongest_period(acf, self.hop_s, cfg.min_bpm, cfg.max_bpm)
        if period is None:
            return None, strength
        return self._fold(period, snare, kick), strength

    def _fold(self, period: float, snare: np.ndarray, kick: np.ndarray) -> float:
        """Choose the octave: into the range, then double when the half-beats carry real beats."""
        cfg = self.config
        lo_p, hi_p = 60.0 / cfg.max_bpm, 60.0 / cfg.min_bpm
        while period > hi_p:
            period /= 2
        while period < lo_p:
            period *= 2
        backbeat = backbeat_period(snare, self.hop_s, cfg.min_bpm, cfg.max_bpm)
        if backbeat is not None:
            self._backbeat, self._backbeat_t = backbeat, self._t
        elif (
            self._backbeat is not None
            and self._t - self._backbeat_t < 4.0
            and self.period is not None
            and abs(self.period - self._backbeat) / self._backbeat < 0.06
        ):
            # A backbeat does not vanish for one estimate, its reading can: a recent one that agrees with
            # the running tempo keeps the octave (it can only hold the current octave, never change it).
            backbeat = self._backbeat
        if backbeat is not None:
            # The snare's own rhythm names the octave: a backbeat falls on every other beat.
            for candidate in (period, period / 2, period * 2):
                if lo_p <= candidate <= hi_p and abs(candidate - backbeat) / backbeat < 0.06:
                    return candidate
        # Otherwise the slowest octave whose half-beats are not beats themselves: four-on-the-floor
        # techno read at half speed has kicks there; hip-hop at its own tempo has only the odd kick.
        for candidate in sorted((c for c in (period / 2, period, period * 2) if lo_p <= c <= hi_p), reverse=True):
            if not half_beats_are_beats(candidate, snare, kick, self.hop_s):
                return candidate
        return period

    def _lock(self, period: float, kick: np.ndarray, snare: np.ndarray, t0: float, acf: np.ndarray) -> None:
        """Set tempo and phase from the novelty; never fire two beats within half a beat."""
        period = refine_period(acf, period, self.hop_s, self.config.beats_per_bar) or period
        phase_hops, _ = best_phase(kick + 1.5 * snare, period, self.hop_s)
        first = t0 + phase_hops * self.hop_s - self.config.onset_delay_s
        k = math.ceil((self._t - first) / period)
        self.period = period
        self._move_next_beat(first + k * period)
        self._phase_votes = 0
        self.bpm = 60.0 / period

    def _move_next_beat(self, next_beat: float) -> None:
        assert self.period is not None
        while next_beat <= self._t - 0.5 * self.period:
            next_beat += self.period
        if self._last_beat is not None:
            while next_beat - self._last_beat < 0.5 * self.period:
                next_beat += self.period
        self._next_beat = next_beat

    # ------------------------------------------------------------------ flywheel

    def _emit_due(self) -> list[BeatEvent]:
        beats: list[BeatEvent] = []
        if self.period is None or self._next_beat is None:
            return beats
        while self._next_beat <= self._t:
            t = self._next_beat
            self.beat_index += 1
            self._last_beat = t
            self._update_confidence()
            beats.append(
                BeatEvent(t, self.beat_index, self.beat_index % self.config.beats_per_bar, self.bpm, self.confidence)
            )
            self._next_beat = t + self.period
        return beats

    def _update_confidence(self) -> None:
        hit_rate = sum(self._hits) / len(self._hits) if self._hits else 0.0
        self.confidence = float(min(1.0, 0.6 * hit_rate + 0.4 * min(1.0, self._strength / 0.5)))
