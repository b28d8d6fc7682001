# ruff: noqa: FURB136, PLR1730
# (clipping is spelled out in the per-hop path on purpose: min() and max() calls cost ~1 µs per hop)
"""Audio features per hop: samples in, numbers out.

This is where the music turns into numbers. ``FeatureExtractor.process`` takes one hop of mono float32
samples and returns a ``HopFeatures``: loudness, brightness, noisiness, three band energies, per-band spectral
flux (evidence for kicks, snares and hats), onsets, and the beat activation the BeatClock tracks
(:mod:`~metadj_bridge.inputs.beat_activation`). It holds no threads, devices or clocks: the audio source calls
it from its worker thread and time is the number of samples seen, so a file, a live device and a test signal
give the same numbers. Its configuration and the hop and window sizes for a sample rate are in
:mod:`~metadj_bridge.inputs.analysis_config`.

One spectrum per hop: the last ``window_size`` samples, Hann-windowed (periodic Hann, as aubio's "hanningz",
so the magnitudes equal ``aubio.pvoc``'s), feed the centroid, the flatness, the band energies and the band
fluxes, all summed by one matrix product against precomputed columns (no Python loops over bins). The FFT is
numpy's rather than ``aubio.pvoc``: pvoc also computes a phase per bin with scalar ``atan2f``, which on
real (changing) audio made it cost ~18 µs per hop against ~10 µs for ``numpy.fft.rfft`` plus ``abs``, and
no feature here needs the phase. Onsets are picked from our own flux rather than ``aubio.onset``, which
confirms an onset ~2.8 hops after the attack, too late for a trigger that should land on the kick. The beat
activation needs a longer window and a log-frequency scale, so it takes its own FFT (the largest single cost;
:mod:`~metadj_bridge.inputs.analysis_cost` measures it). It replaced ``aubio.tempo``, which cost ~19 µs per
hop and tracked beats far worse than the BeatClock does now; aubio is no longer used.

Scales (what the numbers mean):

- ``energy``: hop RMS / ``energy_max`` (or / the auto-gain follower), clipped to 0..1.
- ``low``, ``mid``, ``high``: the RMS of the part of the signal inside each band (Parseval over the
  Hann-windowed spectrum), on the same scale as ``energy``: divided by ``energy_max`` (or the same
  auto-gain follower) and clipped. Unclipped, low² + mid² + high² ≈ energy² for steady signals, so a
  full-range track shows mostly ``low``; that is the music, not a bug.
- ``flux_low``, ``flux_mid``, ``flux_high``: the sum over the band's bins of the rise in spectral magnitude
  since the previous hop (half-wave rectified), with magnitudes scaled so that a full-scale sine centred on
  a bin peaks at 1.0. Never normalised or clipped: the BeatClock keeps its own adaptive thresholds.
- ``onset_strength``: the total flux (sum of the three bands) over a peak follower that forgets over
  ~2 s, with a floor so that quiet noise is not lifted to 1.

Times: ``t`` is the end of the hop, ``samples_seen / samplerate``, counted from the first sample given to
this extractor (or since ``reset``); ``onset_t`` is half a hop before ``t`` (the attack arrived with the
hop's new samples).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import numpy as np

from metadj_bridge.errors import ConfigError
from metadj_bridge.inputs.analysis_config import (
    ONSET_METHODS,
    AnalysisConfig,
    check_samplerate,
    hop_size_for,
    window_size_for,
)
from metadj_bridge.inputs.beat_activation import OnsetActivation
from metadj_bridge.inputs.beat_net import BeatNetWeights, load_weights

__all__ = ["FeatureExtractor", "HopFeatures"]

logger = logging.getLogger(__name__)

#: The high band never starts above this share of the Nyquist frequency.
HIGH_BAND_MAX_SHARE = 0.75

# The onset trigger: the flux must rise above (1 + _ONSET_GAIN * onset_threshold) times its recent mean
# (which forgets over _ONSET_MEAN_S) and above _ONSET_FLOOR. It fires in the hop in which the attack
# arrives, not after a look-ahead peak picker (aubio's confirms an onset ~2.8 hops, ~31 ms, after it).
_ONSET_GAIN = 5.0
_ONSET_MEAN_S = 0.25
# Onset-strength follower: forgets over a couple of seconds so that a breakdown's softer hits still reach
# the top of the range; the floor (in flux units, ~the flux of -45 dBFS white noise) keeps quiet noise low.
_ONSET_RELEASE_S = 2.0
_ONSET_FLOOR = 0.05

# Auto gain attack: fast enough to catch a drop within a beat, slow enough that one click does not
# set the level for the next ten seconds.
_AUTO_GAIN_ATTACK_S = 0.05

# Hops with an RMS above this (18 dB over full scale), or with NaN/inf (which fail every comparison), are
# cleaned first: non-finite samples become 0 and everything is clipped to +-this, so no follower's state
# can ever overflow or turn to NaN. Ordinary overs (a hot mixer, +-1.5) pass untouched.
_SAMPLE_LIMIT = 8.0

_TINY = 1e-20  # below this a sum of magnitudes or powers is silence
_LOG_EPS = 1e-20  # keeps log() finite on empty bins; far below any real bin power

@dataclass(slots=True)
class HopFeatures:
    """Everything measured in one hop. Normalised values are in 0..1; raw values are finite and >= 0.

    A snapshot: made once per hop and only read after ``process`` returns it. Not a frozen dataclass, whose 21 fields
    cost about 4 us a hop to set (0.5 us here), 3% of the whole listening path."""

    t: float
    """Seconds from the start of the audio to the end of this hop (samples seen / samplerate)."""
    rms: float
    energy: float
    centroid_hz: float
    """Magnitude-weighted spectral centroid in Hz (0 for silence)."""
    centroid: float
    flatness: float
    """Geometric over arithmetic mean of the power spectrum (0 for silence)."""
    flatness_norm: float
    low: float
    mid: float
    high: float
    flux_low: float
    flux_mid: float
    flux_high: float
    onset_strength: float
    onset: bool
    onset_t: float | None
    """When the attack arrived (the middle of this hop's new samples), on the same axis as ``t``."""
    beat_activation: float
    """How much this hop sounds like a beat, 0..1 (``beat_activation``: log-frequency spectral flux)."""
    beat_low: float
    """The low-band (< 200 Hz) part of that flux, raw (>= 0): kicks and bass notes."""
    chroma: np.ndarray
    """The pitch classes sounding, 100 Hz-4 kHz, over about the last 186 ms (12 values summing to 1, C first; all 0 in
    silence), updated every 4 hops."""
    bass: np.ndarray
    """The same for the bass, 50-300 Hz."""
    beat_bands: np.ndarray
    """The activation's compressed log-frequency spectrum (12 bands an octave from 30 Hz; the bar tracker's)."""


class FeatureExtractor:
    """Turns hops of mono float32 audio into ``HopFeatures``; one instance per audio stream.

    Not thread-safe: call ``process`` from one thread (the audio worker). ``reset`` starts a new stream
    (a new file, a reopened device) so times and followers begin again at zero. The config is read
    once, here; to change it, build a new extractor.
    """

    def __init__(
        self, samplerate: int = 44100, config: AnalysisConfig | None = None, *, beat_net: BeatNetWeights | None = None
    ) -> None:
        check_samplerate(samplerate)
        self.samplerate = samplerate
        self.config = config if config is not None else AnalysisConfig()
        # The learned beat activation's weights: given (a benchmark's), else the package's when configured.
        if beat_net is None and self.config.beat_activation == "net":
            beat_net = load_weights()
        self._beat_net = beat_net
        self.hop_size = hop_size_for(samplerate)
        self.window_size = window_size_for(samplerate)
        #: Non-finite input samples replaced with 0 since creation (a broken source or decoder).
        self.nonfinite_samples = 0
        #: Hops whose samples were cleaned (non-finite or absurdly loud).
        self.cleaned_hops = 0

        cfg = self.config
        n = self.window_size
        nbins = n // 2 + 1
        self._nbins = nbins
        nyquist = samplerate / 2
        # A source at a low rate (a headset's 8 kHz microphone, a phone recording) has no room above the
        # configured high band's edge: the band becomes the top quarter of what the source carries.
        self.high_min_hz = cfg.high_min_hz
        if self.high_min_hz > HIGH_BAND_MAX_SHARE * nyquist:
            self.high_min_hz = HIGH_BAND_MAX_SHARE * nyquist
            logger.warning(
                "audio at %d Hz carries nothing above %g Hz: the high band starts at %g Hz instead of "
                "analysis.high_min_hz %g", samplerate, nyquist, self.high_min_hz, cfg.high_min_hz,
            )

        freqs = np.arange(nbins, dtype=np.float64) * samplerate / n
        low = freqs < cfg.low_max_hz
        high = freqs >= self.high_min_hz
        mid = ~low & ~high
        for band, mask in (("low", low), ("mid", mid), ("high", high)):
            if not mask.any():
                raise ConfigError(
                    f"analysis band {band}: no FFT bin between its edges (low_max_hz={cfg.low_max_hz:g}, "
                    f"high_min_hz={self.high_min_hz:g}; bins are {samplerate / n:.1f} Hz apart)"
                )

        # Periodic Hann, the same as aubio's "hanningz", so magnitudes equal aubio.pvoc's.
        window = 0.5 - 0.5 * np.cos(2.0 * np.pi * np.arange(n) / n)
        self._window = window
        win_sum = float(window.sum())
        win_sq_sum = float((window**2).sum())
        # Parseval over a one-sided spectrum: RMS² of the windowed frame's content in a band.
        self._band_scale = 2.0 / (n * win_sq_sum)
        # Magnitudes scaled so a full-scale bin-centred sine peaks at 1.0.
        self._flux_scale = 2.0 / win_sum

        # Per hop, rows of _rows are filled in place (magnitude, power, rectified magnitude rise, log power)
        # and one matrix product against these columns (Hz, 1, low, mid, high) gives every sum needed:
        # one BLAS call instead of a handful, which is most of the cost at 513 bins.
        self._columns = np.ascontiguousarray(np.stack([freqs, np.ones(nbins), low, mid, high], axis=1))
        self._rows = np.zeros((4, nbins))
        self._sums = np.empty((4, 5))
        self._prev = np.zeros(nbins)
        self._zeros = np.zeros(nbins)
        self._spectrum = np.empty(nbins, dtype=np.complex128)
        self._frame = np.zeros(n)
        self._windowed = np.empty(n)
        keep = n - self.hop_size
        # Views made once: slicing per hop costs more than the copies themselves.
        self._frame_older = self._frame[:keep]
        self._frame_old = self._frame[self.hop_size :]
        self._frame_newest = self._frame[keep:]
        self._mag, self._power, self._rise, self._logp = self._rows
        self._hop_shape = (self.hop_size,)
        self._auto_gain = cfg.auto_gain
        self._auto_gain_floor = cfg.auto_gain_floor
        self._centroid_min = cfg.centroid_min_hz

        hop_s = self.hop_size / samplerate
        self._hop_limit = self.hop_size * _SAMPLE_LIMIT**2
        self._gain_attack = 1.0 - math.exp(-hop_s / _AUTO_GAIN_ATTACK_S)
        self._gain_release = math.exp(-hop_s / cfg.auto_gain_seconds)
        self._onset_release = math.exp(-hop_s / _ONSET_RELEASE_S)
        self._onset_band = ONSET_METHODS.index(cfg.onset_method)
        self._onset_ratio = 1.0 + _ONSET_GAIN * cfg.onset_threshold
        self._onset_alpha = 1.0 - math.exp(-hop_s / _ONSET_MEAN_S)
        self._onset_min_samples = round(cfg.onset_min_interval_s * samplerate)
        self._half_hop_s = hop_s / 2
        self._onset_warmup = 2 * self.window_size
        self._inv_energy_max = 1.0 / cfg.energy_max
        self._centroid_span = cfg.centroid_max_hz - cfg.centroid_min_hz
        self._inv_flatness_max = 1.0 / cfg.flatness_max

        self.reset()
        logger.debug(
            "feature extractor: %d Hz, hop %d, window %d, bands <%g | <%g | >=%g Hz, onset %s",
            samplerate,
            self.hop_size,
            self.window_size,
            cfg.low_max_hz,
            self.high_min_hz,
            self.high_min_hz,
            cfg.onset_method,
        )

    def reset(self) -> None:
        """Start a new stream: time back to zero, followers emptied."""
        self._onset_mean = 0.0
        self._onset_quiet_until = 0
        self._activation = OnsetActivation(self.samplerate, self.hop_size, self._beat_net)
        self._samples = 0
        self._prev.fill(0.0)
        self._frame.fill(0.0)
        self._gain = 0.0
        self._onset_peak = 0.0

    def process(self, hop: np.ndarray) -> HopFeatures:
        """Analyse the next hop: exactly ``hop_size`` mono float32 samples, in stream order."""
        # Written for speed (this runs ~86 times a second): attributes read once into locals, views and
        # buffers made in __init__, clipping inlined rather than a function call per value.
        if not isinstance(hop, np.ndarray) or hop.dtype != np.float32 or hop.shape != self._hop_shape:
            raise ValueError(self._describe_bad_hop(hop))
        if not hop.flags.c_contiguous:
            hop = np.ascontiguousarray(hop)

        # The window's newest samples, in float64: numpy's FFT computes in float64 anyway (a float32
        # input costs an extra cast), and no finite float32 input can overflow the sum of squares
        # (numpy would warn). NaN/inf show up in that sum, which sends the hop to be cleaned. Widening a signalling
        # NaN (a damaged float file) makes numpy warn as well: quiet here, as _clean counts and reports it.
        newest = self._frame_newest
        np.copyto(self._frame_older, self._frame_old)
        with np.errstate(invalid="ignore", over="ignore"):
            np.copyto(newest, hop)
        sum_sq = float(np.dot(newest, newest))
        if not sum_sq <= self._hop_limit:  # also true for NaN
            hop, sum_sq = self._clean(hop)
            np.copyto(newest, hop)
        hop_size = self.hop_size
        rms = math.sqrt(sum_sq / hop_size)
        self._samples += hop_size
        t = self._samples / self.samplerate

        # One spectrum for centroid, flatness, bands and flux; one matrix product sums them all.
        mag, power, rise, logp = self._mag, self._power, self._rise, self._logp
        np.multiply(self._frame, self._window, out=self._windowed)
        np.abs(np.fft.rfft(self._windowed, out=self._spectrum), out=mag)
        np.multiply(mag, mag, out=power)
        np.subtract(mag, self._prev, out=rise)
        np.maximum(rise, self._zeros, out=rise)
        np.copyto(self._prev, mag)
        np.add(power, _LOG_EPS, out=logp)
        np.log(logp, out=logp)
        # Rows: magnitude, power, rise, log power; columns: Hz, 1, low, mid, high.
        mag_sums, power_sums, rise_sums, log_sums = np.dot(self._rows, self._columns, out=self._sums).tolist()
        weighted, mag_sum = mag_sums[0], mag_sums[1]
        _, _, low_p, mid_p, high_p = power_sums
        _, _, rise_low, rise_mid, rise_high = rise_sums
        log_sum = log_sums[1]

        nbins = self._nbins
        power_mean = (low_p + mid_p + high_p) / nbins
        if power_mean > _TINY:
            flatness = math.exp(log_sum / nbins) / power_mean
            flatness = (flatness if flatness < 1.0 else 1.0) if flatness > 0.0 else 0.0
        else:
            flatness = 0.0
        centroid_hz = weighted / mag_sum if mag_sum > _TINY else 0.0
        centroid = (centroid_hz - self._centroid_min) / self._centroid_span
        flatness_norm = flatness * self._inv_flatness_max

        # Level: fixed energy_max, or a peak follower (fast attack, slow release, floored).
        if self._auto_gain:
            gain = self._gain
            if rms > gain:
                gain += (rms - gain) * self._gain_attack
            else:
                gain *= self._gain_release
            self._gain = gain
            scale = 1.0 / (gain if gain > self._auto_gain_floor else self._auto_gain_floor)
        else:
            scale = self._inv_energy_max
        energy = rms * scale
        band_scale = self._band_scale
        low = math.sqrt(low_p * band_scale) * scale if low_p > 0.0 else 0.0
        mid = math.sqrt(mid_p * band_scale) * scale if mid_p > 0.0 else 0.0
        high = math.sqrt(high_p * band_scale) * scale if high_p > 0.0 else 0.0

        flux_scale = self._flux_scale
        flux_low = rise_low * flux_scale if rise_low > 0.0 else 0.0
        flux_mid = rise_mid * flux_scale if rise_mid > 0.0 else 0.0
        flux_high = rise_high * flux_scale if rise_high > 0.0 else 0.0
        flux_total = flux_low + flux_mid + flux_high
        peak = self._onset_peak * self._onset_release
        if flux_total > peak:
            peak = flux_total
        self._onset_peak = peak
        onset_strength = flux_total / (peak if peak > _ONSET_FLOOR else _ONSET_FLOOR)

        # Onset: the chosen flux jumps well above its recent mean, outside the refractory interval.
        method = self._onset_band
        novelty = flux_total if method == 0 else (flux_low, flux_mid, flux_high)[method - 1]
        mean = self._onset_mean
        if self._samples <= self._onset_warmup:
            # The first windows fill up from nothing: learn the level, report no event.
            onset = False
            self._onset_mean = mean if mean > novelty else novelty
        else:
            onset = (
                novelty > mean * self._onset_ratio
                and novelty > _ONSET_FLOOR
                and self._samples >= self._onset_quiet_until
            )
            self._onset_mean = mean + (novelty - mean) * self._onset_alpha
        onset_t: float | None = None
        if onset:
            self._onset_quiet_until = self._samples + self._onset_min_samples
            onset_t = t - self._half_hop_s  # the attack arrived with this hop's new samples
        activation, beat_low = self._activation.process(hop)

        # Positional, in field order (keywords cost ~25% more here); clipped to 0..1 inline.
        return HopFeatures(
            t,
            rms,
            (energy if energy < 1.0 else 1.0) if energy > 0.0 else 0.0,
            centroid_hz,
            (centroid if centroid < 1.0 else 1.0) if centroid > 0.0 else 0.0,
            flatness,
            (flatness_norm if flatness_norm < 1.0 else 1.0) if flatness_norm > 0.0 else 0.0,
            (low if low < 1.0 else 1.0) if low > 0.0 else 0.0,
            (mid if mid < 1.0 else 1.0) if mid > 0.0 else 0.0,
            (high if high < 1.0 else 1.0) if high > 0.0 else 0.0,
            flux_low,
            flux_mid,
            flux_high,
            (onset_strength if onset_strength < 1.0 else 1.0) if onset_strength > 0.0 else 0.0,
            bool(onset),
            onset_t,
            activation,
            beat_low,
            self._activation.chroma,
            self._activation.bass,
            self._activation.bands,
        )

    def _clean(self, hop: np.ndarray) -> tuple[np.ndarray, float]:
        """Replace NaN/inf with 0 and clip absurd levels, so one bad buffer cannot poison the followers."""
        finite = np.isfinite(hop)
        bad = hop.size - int(np.count_nonzero(finite))
        cleaned = np.where(finite, hop, np.float32(0.0))
        np.clip(cleaned, -_SAMPLE_LIMIT, _SAMPLE_LIMIT, out=cleaned)
        if bad:
            if self.nonfinite_samples == 0:
                logger.warning(
                    "audio input contains NaN or infinite samples; replacing them with silence "
                    "(counted in nonfinite_samples)"
                )
            self.nonfinite_samples += bad
        elif self.cleaned_hops == 0:
            logger.warning("audio input is far above full scale; clipping it to +-%g", _SAMPLE_LIMIT)
        self.cleaned_hops += 1
        return cleaned, float(np.dot(cleaned, cleaned))

    def _describe_bad_hop(self, hop: object) -> str:
        if not isinstance(hop, np.ndarray):
            return f"a hop must be a numpy array of float32 samples, not {type(hop).__name__}"
        want = f"a mono float32 array of {self.hop_size} samples"
        if hop.ndim != 1:
            return f"a hop must be {want}; got shape {hop.shape} (mix stereo to mono first)"
        if hop.dtype != np.float32:
            return f"a hop must be {want}; got dtype {hop.dtype} (convert with .astype(np.float32))"
        return f"a hop must be {want} ({self.samplerate} Hz); got {hop.shape[0]} samples"
