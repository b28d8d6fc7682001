"""Causal onset activation per hop: log-filtered SuperFlux-like spectral flux (numpy only).

Per hop: the last `frame` samples, Hann-windowed, rfft -> magnitudes -> log-spaced triangular filterbank
(`bands_per_octave`, fmin..fmax; bands that would be narrower than a bin merge) -> log(1 + gamma * x) ->
flux against a frequency-max-filtered (3 bands) copy of the frame `lag` hops ago, half-wave rectified, summed.
Then a short causal local-mean subtraction and a slow peak follower give a 0..1 activation.

Also returns the low-band part of the flux (for downbeats) and a 12-bin chroma (optional, for harmonic change).
"""

from __future__ import annotations

import math

import numpy as np


def log_filterbank(samplerate: int, frame: int, bands_per_octave: int = 12, fmin: float = 30.0,
                   fmax: float = 17000.0) -> tuple[np.ndarray, np.ndarray]:
    """Triangular filters on log-spaced centres, as a (nbins, nbands) float32 matrix, each filter summing
    to 1 (so a band is the mean magnitude in it). Duplicate filters (low bands narrower than a bin) merge."""
    nbins = frame // 2 + 1
    freqs = np.arange(nbins) * samplerate / frame
    fmax = min(fmax, samplerate / 2 - samplerate / frame)
    n = int(math.floor(math.log2(fmax / fmin) * bands_per_octave)) + 1
    centres = fmin * 2.0 ** (np.arange(n) / bands_per_octave)
    bins = np.unique(np.round(centres * frame / samplerate).astype(int))
    bins = bins[(bins >= 1) & (bins < nbins - 1)]
    filters = []
    cents = []
    for k in range(1, len(bins) - 1):
        lo, c, hi = bins[k - 1], bins[k], bins[k + 1]
        f = np.zeros(nbins)
        f[lo : c + 1] = np.linspace(0, 1, c - lo + 1)
        f[c : hi + 1] = np.linspace(1, 0, hi - c + 1)
        if f.sum() <= 0:
            continue
        f[c] = 1.0
        filters.append(f / f.sum())
        cents.append(freqs[c])
    return np.array(filters, np.float32).T.copy(), np.array(cents)


class OnsetActivation:
    def __init__(self, samplerate: int = 44100, hop: int = 512, frame: int = 2048, bands_per_octave: int = 12,
                 fmin: float = 30.0, fmax: float = 17000.0, gamma: float = 1000.0, lag: int = 1,
                 maxfilt: int = 3, mean_s: float = 0.1, mean_weight: float = 1.0, peak_release_s: float = 3.0,
                 low_max_hz: float = 200.0, chroma: bool = False, low_weight: float = 0.0) -> None:
        self.sr, self.hop, self.frame = samplerate, hop, frame
        self.fb, self.centres = log_filterbank(samplerate, frame, bands_per_octave, fmin, fmax)
        # scale: full-scale sine centred on a bin -> magnitude 1 (Hann sum = frame / 2)
        self.win = (np.hanning(frame + 1)[:-1] * (2.0 / (frame / 2))).astype(np.float32)
        self.fb_scaled = self.fb
        self.gamma = gamma
        self.lag = lag
        self.maxfilt = maxfilt
        self.buf = np.zeros(frame, np.float32)
        nb = self.fb.shape[1]
        self.hist = [np.zeros(nb, np.float32) for _ in range(lag)]
        self.hpos = 0
        self.low = self.centres < low_max_hz
        self.low_weight = low_weight
        fps = samplerate / hop
        self.mean_a = 1.0 / max(1.0, mean_s * fps)  # EMA coefficient for the local mean
        self.mean_weight = mean_weight
        self.mean = 0.0
        self.peak = 1e-3
        self.peak_rel = math.exp(-1.0 / (peak_release_s * fps))
        self.chroma = chroma
        if chroma:
            nbins = frame // 2 + 1
            freqs = np.arange(nbins) * samplerate / frame
            cm = np.zeros((nbins, 12), np.float32)
            ok = (freqs > 60) & (freqs < 2000)
            pc = np.round(12 * np.log2(np.where(ok, freqs, 1) / 440.0)).astype(int) % 12
            cm[np.nonzero(ok)[0], pc[ok]] = 1.0
            self.cm = cm
        nzb = np.nonzero(self.fb.any(axis=1) | (self.cm.any(axis=1) if chroma else False))[0]
        self.nb_used = int(nzb.max()) + 1
        nbands = self.fb.shape[1]
        self.nbands = nbands
        m = self.fb[: self.nb_used]
        if chroma:
            m = np.hstack([m, self.cm[: self.nb_used]])
        self.mat = np.ascontiguousarray(m, np.float32)
        self.t = 0.0
        self.n = 0

    def process(self, x: np.ndarray) -> tuple[float, float, float]:
        """One hop of samples in; (activation 0..1, raw flux, low-band flux) out."""
        h = self.hop
        self.buf[:-h] = self.buf[h:]
        self.buf[-h:] = x
        self.n += h
        mag = np.abs(np.fft.rfft(self.buf * self.win)[: self.nb_used])
        prod = mag @ self.mat
        bands = np.log1p(self.gamma * prod[: self.nbands])
        prev = self.hist[self.hpos]
        if self.maxfilt > 1:
            ref = np.maximum(np.maximum(prev[:-2], prev[1:-1]), prev[2:])
            d = bands[1:-1] - ref
        else:
            d = bands - prev
        self.hist[self.hpos] = bands
        self.hpos = (self.hpos + 1) % self.lag
        d = np.maximum(d, 0.0)
        low = float(d[: int(self.low.sum())].sum())
        flux = float(d.sum()) + self.low_weight * low
        # causal local mean subtraction, then a peak follower to 0..1
        a = flux - self.mean_weight * self.mean
        self.mean += self.mean_a * (flux - self.mean)
        if a < 0.0:
            a = 0.0
        self.peak = max(a, self.peak * self.peak_rel, 1e-3)
        if self.chroma:
            c = prod[self.nbands :]
            self.last_chroma = c / (c.sum() + 1e-12)
        return a / self.peak, flux, low
