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

Pure: feature values and their times in, beats out. No clocks, threads or I/O.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from metadj_bridge.errors import ConfigError


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
        if self._since_estimate >= self.config.estimate_every_s and self._filled * self.hop_s >= 4.5:
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
        acf = self._acf(novelty)
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
        if not octave and float(self._comb(acf, period / self.hop_s)) < 1.05 * float(
            self._comb(acf, self.period / self.hop_s)
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
        measured = self._refine_period(acf, self.period)
        if measured is not None and abs(measured - self.period) / self.period < 0.01:
            # A nudge only: anything bigger is a tempo change, which goes through the re-lock rules.
            self.period += 0.5 * (measured - self.period)
        novelty = kick + 1.5 * snare
        # If the whole window keeps saying the beat is elsewhere (more than a quarter beat away), move.
        best, _ = self._best_phase(novelty, self.period)
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

    def _acf(self, novelty: np.ndarray) -> np.ndarray | None:
        x = novelty - novelty.mean()
        n = len(x)
        size = 1 << (2 * n - 1).bit_length()
        spec = np.fft.rfft(x, size)
        acf = np.fft.irfft(spec * np.conj(spec), size)[:n]
        if acf[0] <= 0:
            return None
        return acf / acf[0]

    @staticmethod
    def _comb(acf: np.ndarray, lag: float | np.ndarray) -> float | np.ndarray:
        """How well a period of ``lag`` hops explains the novelty: it, and 2, 3 and 4 of it (the bar).

        Lags are fractional: a rounded lag times four misses the narrow peak at the bar.
        """
        grid = np.arange(len(acf))
        lags = np.asarray(lag, float)
        total = sum(np.interp(k * lags, grid, acf, right=0.0) for k in (1, 2, 3, 4))
        return total / 4 if lags.ndim else float(total / 4)

    def _tempo(self, acf: np.ndarray, snare: np.ndarray, kick: np.ndarray) -> tuple[float | None, float]:
        cfg = self.config
        n = len(acf)
        lo = 60.0 / cfg.max_bpm / self.hop_s
        hi = min((n - 2) / 4, 60.0 / cfg.min_bpm / self.hop_s)
        if hi <= lo:
            return None, 0.0
        # Comb over the beat and its multiples up to the bar: the beat is what divides the bar evenly,
        # even when the kicks themselves fall off the grid (broken beats, two-step drum-and-bass).
        smooth = np.convolve(acf, [0.25, 0.5, 0.25], "same")
        lags = np.arange(lo, hi, 0.25)
        score = self._comb(smooth, lags)
        assert isinstance(score, np.ndarray)
        i = int(np.argmax(score))
        strength = float(score[i])
        if strength < 0.05:
            return None, strength
        period = self._fold(float(lags[i]) * self.hop_s, snare, kick)
        return period, strength

    def _fold(self, period: float, snare: np.ndarray, kick: np.ndarray) -> float:
        """Choose the octave: into the range, then double when the half-beats carry real beats."""
        cfg = self.config
        lo_p, hi_p = 60.0 / cfg.max_bpm, 60.0 / cfg.min_bpm
        while period > hi_p:
            period /= 2
        while period < lo_p:
            period *= 2
        backbeat = self._backbeat_period(snare)
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
            if not self._half_beats_are_beats(candidate, snare, kick):
                return candidate
        return period

    def _grid_mass(self, series: np.ndarray, period: float, phase: float) -> float:
        """Mean of ``series`` at phase + k * period (nearest hop)."""
        n = len(series)
        step = period / self.hop_s
        idx = np.arange(phase, n, step)
        idx = np.round(idx).astype(int)
        idx = idx[idx < n]
        return float(series[idx].mean()) if len(idx) else 0.0

    def _best_phase(self, series: np.ndarray, period: float) -> tuple[float, float]:
        """The phase (in hops) where ``series`` lines up best with a grid of ``period``, and its mass."""
        step = period / self.hop_s
        n = len(series)
        phases = np.arange(0, step, 1.0)
        beats = np.arange(int(n / step) + 1)
        idx = np.round(phases[:, None] + beats[None, :] * step).astype(int)  # one row per phase
        valid = idx < n
        values = np.where(valid, series[np.minimum(idx, n - 1)], 0.0)
        masses = values.sum(axis=1) / np.maximum(valid.sum(axis=1), 1)
        # Smooth over neighbouring phases so one stray hop does not win.
        smooth = np.convolve(np.concatenate([masses[-1:], masses, masses[:1]]), [0.25, 0.5, 0.25], "valid")
        i = int(np.argmax(smooth))
        return float(phases[i]), float(smooth[i])

    def _backbeat_period(self, snare: np.ndarray) -> float | None:
        """Half the snare's period when the snare plays a clear backbeat (every other beat), else None."""
        acf = self._acf(snare)
        if acf is None:
            return None
        cfg = self.config
        n = len(acf)
        lo = 2 * 60.0 / cfg.max_bpm / self.hop_s
        hi = min((n - 2) / 2, 2 * 60.0 / cfg.min_bpm / self.hop_s)
        if hi <= lo:
            return None
        smooth = np.convolve(acf, [0.25, 0.5, 0.25], "same")
        lags = np.arange(lo, hi, 0.25)
        grid = np.arange(n)
        score = np.interp(lags, grid, smooth) + 0.5 * np.interp(2 * lags, grid, smooth, right=0.0)
        # The shortest period that explains the snare nearly as well as the best: a two-beat backbeat
        # also repeats every bar, and the bar must not win.
        i = int(np.argmax(score >= 0.85 * score.max()))
        while i + 1 < len(score) and score[i + 1] >= score[i]:
            i += 1  # climb to the top of that peak
        lag = float(lags[i])
        at = float(np.interp(lag, grid, smooth))
        half = float(np.interp(lag / 2, grid, smooth))
        if at < 0.3 or half > 0.5 * at:
            return None  # no clear snare period, or the snare is on every beat (not a backbeat)
        return lag / 2 * self.hop_s

    def _half_beats_are_beats(self, period: float, snare: np.ndarray, kick: np.ndarray) -> bool:
        """On a grid of ``period``, do the half-way points carry kick and snare like the beats do?

        Drum-and-bass read at half speed has its snares exactly there (the backbeat); a hip-hop groove
        or a house track has at most a stray kick, an off-beat bass or hats there.
        """
        both = kick + snare
        phase, _ = self._best_phase(both, period)
        half = phase + 0.5 * period / self.hop_s
        on = self._grid_mass(both, period, phase)
        off = self._grid_mass(both, period, half)
        return off > 0.6 * on

    def _refine_period(self, acf: np.ndarray, period: float) -> float | None:
        """The period near ``period`` where the bar-length ACF peak is highest."""
        lag = period / self.hop_s
        n = len(acf)
        bar = self.config.beats_per_bar if self.config.beats_per_bar > 1 else 4
        if bar * lag * 1.03 >= n - 1:
            return None
        # The bar peak gives a bar's worth of precision; a parabola through its top three samples
        # places it between hops (a linear interpolation would always peak on a whole hop).
        lo = int(math.floor(bar * lag * 0.97))
        hi = int(math.ceil(bar * lag * 1.03))
        i = lo + int(np.argmax(acf[lo : hi + 1]))
        if not lo < i < hi or acf[i] <= 0.05:
            return None
        a, b, c = float(acf[i - 1]), float(acf[i]), float(acf[i + 1])
        denom = a - 2 * b + c
        peak = i + (0.5 * (a - c) / denom if denom < 0 else 0.0)
        return peak / bar * self.hop_s

    def _lock(self, period: float, kick: np.ndarray, snare: np.ndarray, t0: float, acf: np.ndarray) -> None:
        """Set tempo and phase from the novelty; never fire two beats within half a beat."""
        period = self._refine_period(acf, period) or period
        phase_hops, _ = self._best_phase(kick + 1.5 * snare, period)
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
