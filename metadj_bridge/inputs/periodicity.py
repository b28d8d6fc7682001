"""How periodic onset novelty is: the measuring tools the BeatClock decides with.

Autocorrelation, a comb score over a beat and its multiples up to the bar, the grid phase that lines up best
with a novelty series, the snare's backbeat period, the half-beat test that tells a tempo from its double, and
a bar-length refinement of a period. Series are per-hop arrays; ``hop_s`` is one hop in seconds; periods are in
seconds and lags and phases in hops. Pure numpy: arrays in, numbers out. The decisions (which tempo, when to
re-lock, which octave) are :class:`~metadj_bridge.inputs.tempo.BeatClock`'s.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = [
    "autocorrelation",
    "backbeat_period",
    "best_phase",
    "comb_score",
    "grid_mass",
    "half_beats_are_beats",
    "refine_period",
    "strongest_period",
]


def autocorrelation(novelty: np.ndarray) -> np.ndarray | None:
    """The autocorrelation of ``novelty`` (mean removed), normalised to 1 at lag 0; None for a flat series."""
    x = novelty - novelty.mean()
    n = len(x)
    size = 1 << (2 * n - 1).bit_length()
    spec = np.fft.rfft(x, size)
    acf = np.fft.irfft(spec * np.conj(spec), size)[:n]
    if acf[0] <= 0:
        return None
    return acf / acf[0]


def comb_score(acf: np.ndarray, lag: float | np.ndarray) -> float | np.ndarray:
    """How well a period of ``lag`` hops explains the novelty: it, and 2, 3 and 4 of it (the bar).

    Lags are fractional: a rounded lag times four misses the narrow peak at the bar.
    """
    grid = np.arange(len(acf))
    lags = np.asarray(lag, float)
    total = sum(np.interp(k * lags, grid, acf, right=0.0) for k in (1, 2, 3, 4))
    return total / 4 if lags.ndim else float(total / 4)


def strongest_period(acf: np.ndarray, hop_s: float, min_bpm: float, max_bpm: float) -> tuple[float | None, float]:
    """The beat period (s) in the BPM range whose comb scores best, and that score; None when nothing is clear.

    Comb over the beat and its multiples up to the bar: the beat is what divides the bar evenly, even when the
    kicks themselves fall off the grid (broken beats, two-step drum-and-bass). The octave is not decided here.
    """
    n = len(acf)
    lo = 60.0 / max_bpm / hop_s
    hi = min((n - 2) / 4, 60.0 / min_bpm / hop_s)
    if hi <= lo:
        return None, 0.0
    smooth = np.convolve(acf, [0.25, 0.5, 0.25], "same")
    lags = np.arange(lo, hi, 0.25)
    score = comb_score(smooth, lags)
    assert isinstance(score, np.ndarray)
    # A peak, not an edge: a score still rising at the end of the range (the slope of the ACF's central lobe)
    # names no period inside it.
    inner = np.flatnonzero((score[1:-1] >= score[:-2]) & (score[1:-1] >= score[2:])) + 1
    if len(inner) == 0:
        return None, 0.0
    i = int(inner[np.argmax(score[inner])])
    strength = float(score[i])
    if strength < 0.05:
        return None, strength
    return float(lags[i]) * hop_s, strength


def grid_mass(series: np.ndarray, period: float, phase: float, hop_s: float) -> float:
    """Mean of ``series`` at phase + k * period (nearest hop)."""
    n = len(series)
    step = period / hop_s
    idx = np.arange(phase, n, step)
    idx = np.round(idx).astype(int)
    idx = idx[idx < n]
    return float(series[idx].mean()) if len(idx) else 0.0


def best_phase(series: np.ndarray, period: float, hop_s: float) -> tuple[float, float]:
    """The phase (in hops) where ``series`` lines up best with a grid of ``period``, and its mass."""
    step = period / hop_s
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


def backbeat_period(snare: np.ndarray, hop_s: float, min_bpm: float, max_bpm: float) -> float | None:
    """Half the snare's period when the snare plays a clear backbeat (every other beat), else None."""
    acf = autocorrelation(snare)
    if acf is None:
        return None
    n = len(acf)
    lo = 2 * 60.0 / max_bpm / hop_s
    hi = min((n - 2) / 2, 2 * 60.0 / min_bpm / hop_s)
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
    return lag / 2 * hop_s


def half_beats_are_beats(period: float, snare: np.ndarray, kick: np.ndarray, hop_s: float) -> bool:
    """On a grid of ``period``, do the half-way points carry kick and snare like the beats do?

    Drum-and-bass read at half speed has its snares exactly there (the backbeat); a hip-hop groove
    or a house track has at most a stray kick, an off-beat bass or hats there.
    """
    both = kick + snare
    phase, _ = best_phase(both, period, hop_s)
    half = phase + 0.5 * period / hop_s
    on = grid_mass(both, period, phase, hop_s)
    off = grid_mass(both, period, half, hop_s)
    return off > 0.6 * on


def refine_period(acf: np.ndarray, period: float, hop_s: float, beats_per_bar: int) -> float | None:
    """The period near ``period`` where the bar-length ACF peak is highest."""
    lag = period / hop_s
    n = len(acf)
    bar = beats_per_bar if beats_per_bar > 1 else 4
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
    return peak / bar * hop_s
