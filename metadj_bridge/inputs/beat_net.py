"""A learned beat activation: a small recurrent network over the log-frequency bands (issue 15).

The hand-made activation (:mod:`~metadj_bridge.inputs.beat_activation`) sums the rise of every band; this one
reads the same compressed bands, their rise (half-wave rectified) and the hand-made activation itself through
one GRU layer and a logistic output, and says how likely the hop holds a beat (0..1). It is causal: one hop in,
one number out; the state is the GRU's hidden vector and the previous hop's bands. numpy only; the weights are
ours, trained on the development set by ``scripts/train_beats.py`` (GTZAN's blues, classical, country, jazz,
metal, reggae and rock with the gtzan_tempo_beat annotations) and shipped as ``beat_net.npz`` beside this
module. It is used when ``AnalysisConfig.beat_activation`` is ``"net"``; it is not the default: cross-validated
on the development set it tracks worse than the spectral flux (beat F 0.53 against 0.59 on excerpts it never
saw; ``scripts/train_beats.py`` says how that was measured). Measured again on the 228-excerpt set of
``scripts/devset_sources.tsv`` with the beat HMM of then (3 folds, the same settings): 0.605 against 0.653; a
larger network trained longer (64 units, 6000 steps, genres drawn evenly) 0.586 against 0.650 on its first fold;
the mean of the two activations 0.636 against 0.640 on two folds. Later, on the 154 excerpts of two of three folds
(train_beats.py's data, targets and augmentation; two GRU layers of 64, 3000 steps, one-cycle rate up to 3e-3):
0.574 against the flux's 0.641 (0.699 against 0.806 without classical, in range), mixed half and half with the
flux 0.641 (0.786); its output is smeared around the beats (the peak 5 times its median around a beat, the
flux's 6.7). The shipped network (trained on 151 of the 228) scores 0.607 against 0.655 on all 228.

The network was trained at 44.1 kHz (81 bands from 30 Hz). At another sample rate the filterbank merges a few
low bands differently, so the bands are first interpolated (on a log-frequency axis) onto the training bands'
centres; at 44.1 kHz that step is skipped.

Per hop: three products into the three GRU gates (the inputs' scaling to zero mean and unit variance is folded
into them), a handful of vector operations and a dot product: about 15 µs here at 48 hidden units.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from metadj_bridge.errors import ConfigError

__all__ = ["BeatNet", "BeatNetWeights", "band_centres", "load_weights"]

WEIGHTS_NAME = "beat_net.npz"
_ARRAYS = ("centres", "w_bands", "w_rise", "w_flux", "b_in", "w_hidden", "b_hidden", "w_out", "b_out")


@dataclass(frozen=True)
class BeatNetWeights:
    """The network's parameters, input scaling folded in. ``H`` hidden units, ``N`` training bands.

    Gate order in the ``3H`` columns is reset, update, new (as torch's GRU)."""

    centres: np.ndarray  # (N,) the training bands' centre frequencies in Hz
    w_bands: np.ndarray  # (N, 3H) from the bands
    w_rise: np.ndarray  # (N, 3H) from their rise since the previous hop
    w_flux: np.ndarray  # (3H,) from the hand-made activation (the spectral flux, 0..1)
    b_in: np.ndarray  # (3H,)
    w_hidden: np.ndarray  # (H, 3H)
    b_hidden: np.ndarray  # (3H,)
    w_out: np.ndarray  # (H,)
    b_out: float

    @property
    def hidden(self) -> int:
        return int(self.w_hidden.shape[0])

    def check(self, source: str) -> None:
        """Raise ConfigError when the shapes do not fit together (a damaged or foreign file)."""
        n, h = len(self.centres), self.hidden
        want = {
            "w_bands": (n, 3 * h), "w_rise": (n, 3 * h), "w_flux": (3 * h,), "b_in": (3 * h,), "w_hidden": (h, 3 * h),
            "b_hidden": (3 * h,), "w_out": (h,),
        }
        for name, shape in want.items():
            got = getattr(self, name).shape
            if got != shape:
                raise ConfigError(f"{source}: {name} has shape {got}, expected {shape}")
        if n < 2 or not np.all(np.diff(self.centres) > 0):
            raise ConfigError(f"{source}: centres must be at least two rising frequencies")

    def save(self, path: Path) -> None:
        arrays: dict[str, Any] = {name: np.asarray(getattr(self, name), np.float32) for name in _ARRAYS}
        np.savez_compressed(path, **arrays)


def load_weights(path: Path | None = None) -> BeatNetWeights:
    """The weights from ``path``, or the ones shipped with the package."""
    if path is None:
        ref = resources.files("metadj_bridge.inputs").joinpath(WEIGHTS_NAME)
        source = f"package data {WEIGHTS_NAME}"
        try:
            with ref.open("rb") as f:
                data = dict(np.load(f))
        except FileNotFoundError as exc:
            raise ConfigError(f"{source} is missing: reinstall metadj-bridge") from exc
    else:
        source = str(path)
        try:
            data = dict(np.load(path))
        except (OSError, ValueError) as exc:
            raise ConfigError(f"beat network weights {path}: cannot be read ({exc})") from exc
    missing = [name for name in _ARRAYS if name not in data]
    if missing:
        raise ConfigError(f"{source}: not beat network weights (no {', '.join(missing)})")
    arrays = {name: np.asarray(data[name], np.float64) for name in _ARRAYS}
    weights = BeatNetWeights(b_out=float(arrays.pop("b_out")), **arrays)
    weights.check(source)
    return weights


def band_centres(samplerate: int, frame: int) -> np.ndarray:
    """The centre frequency (Hz) of every band of ``beat_activation.log_filterbank``."""
    from metadj_bridge.inputs.beat_activation import log_filterbank

    bank = log_filterbank(samplerate, frame)
    return np.argmax(bank, axis=0) * samplerate / frame


def _interpolation(source_hz: np.ndarray, target_hz: np.ndarray) -> np.ndarray | None:
    """A (len(source), len(target)) matrix that interpolates bands on a log-frequency axis; None if the same."""
    if len(source_hz) == len(target_hz) and np.allclose(source_hz, target_hz, rtol=1e-3):
        return None
    x = np.log2(source_hz)
    m = np.zeros((len(source_hz), len(target_hz)))
    for j, f in enumerate(np.log2(target_hz)):
        k = int(np.clip(np.searchsorted(x, f) - 1, 0, len(x) - 2))
        w = float(np.clip((f - x[k]) / (x[k + 1] - x[k]), 0.0, 1.0))
        m[k, j] += 1.0 - w
        m[k + 1, j] += w
    return m


class BeatNet:
    """Compressed bands in (``OnsetActivation.bands``), one hop at a time; the beat activation (0..1) out."""

    def __init__(self, weights: BeatNetWeights, band_hz: np.ndarray) -> None:
        self.weights = weights
        self._map = _interpolation(np.asarray(band_hz, float), weights.centres)
        self._nin = len(band_hz)
        h = weights.hidden
        self._h2 = 2 * h
        # float64 throughout: the per-hop vectors are tiny, and a float32 path costs casts for nothing.
        # One product per side: the input vector is [bands, rise, flux, 1] and the hidden one [h, 1], so the
        # biases ride along in the last row (fewer numpy calls per hop, which is most of the cost here).
        n = len(weights.centres)
        self._n = n
        self._w_in = np.ascontiguousarray(
            np.vstack([weights.w_bands, weights.w_rise, weights.w_flux[None], weights.b_in[None]])
        )
        self._w_h = np.ascontiguousarray(np.vstack([weights.w_hidden, weights.b_hidden[None]]))
        self._w_out = weights.w_out
        self._b_out = weights.b_out
        self._x = np.zeros(2 * n + 2)
        self._hx = np.zeros(h + 1)
        self._bands_now = self._x[:n]
        self._rise = self._x[n : 2 * n]
        self._hidden_now = self._hx[:h]
        self.reset()

    def reset(self) -> None:
        """Forget the stream: hidden state and previous bands back to zero."""
        self._x[:] = 0.0
        self._x[-1] = 1.0
        self._hx[:] = 0.0
        self._hx[-1] = 1.0

    def process(self, bands: np.ndarray, flux: float) -> float:
        """One hop's compressed bands (as many as ``band_hz`` gave) and hand-made activation in; the learned
        activation out."""
        b = bands @ self._map if self._map is not None else bands
        x, rise = self._x, self._rise
        np.subtract(b, self._bands_now, out=rise)  # _bands_now still holds the previous hop's
        np.maximum(rise, 0.0, out=rise)
        np.copyto(self._bands_now, b)
        x[-2] = flux
        gi = x @ self._w_in
        h = self._hidden_now
        gh = self._hx @ self._w_h
        h2 = self._h2
        # The reset and update gates: sigmoid(x) = (1 + tanh(x / 2)) / 2, which cannot overflow.
        rz = gi[:h2] + gh[:h2]
        rz *= 0.5
        np.tanh(rz, out=rz)
        rz *= 0.5
        rz += 0.5
        n = np.tanh(gi[h2:] + rz[: h2 // 2] * gh[h2:])
        # h' = (1 - z) n + z h
        h = n + rz[h2 // 2 :] * (h - n)
        np.copyto(self._hidden_now, h)
        y = float(h @ self._w_out) + self._b_out
        return 1.0 / (1.0 + math.exp(-y)) if y > -500.0 else 0.0

    def run(self, bands: np.ndarray, flux: np.ndarray) -> np.ndarray:
        """The whole sequence at once, (hops, bands) and (hops,) in, activations out, from a fresh state: the
        training graph's computation, with the input products done for every hop in one go."""
        bands = np.asarray(bands, float)
        if bands.ndim != 2 or bands.shape[1] != self._nin:
            raise ValueError(f"bands must be (hops, {self._nin}); got {bands.shape}")
        w = self.weights
        b = bands @ self._map if self._map is not None else bands
        rise = np.maximum(np.diff(b, axis=0, prepend=np.zeros((1, b.shape[1]))), 0.0)
        gates = b @ w.w_bands + rise @ w.w_rise + np.outer(flux, w.w_flux) + w.b_in
        hsize = w.hidden
        h = np.zeros(hsize)
        hs = np.empty((len(b), hsize))
        for t in range(len(b)):
            gi, gh = gates[t], h @ w.w_hidden + w.b_hidden
            r = 0.5 + 0.5 * np.tanh(0.5 * (gi[:hsize] + gh[:hsize]))
            z = 0.5 + 0.5 * np.tanh(0.5 * (gi[hsize : 2 * hsize] + gh[hsize : 2 * hsize]))
            n = np.tanh(gi[2 * hsize :] + r * gh[2 * hsize :])
            h = (1.0 - z) * n + z * h
            hs[t] = h
        y = hs @ w.w_out + w.b_out
        return 1.0 / (1.0 + np.exp(-np.clip(y, -500.0, 500.0)))
