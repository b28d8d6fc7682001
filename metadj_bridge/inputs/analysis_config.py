"""How the audio analysis is set up: :class:`AnalysisConfig` (scales, bands, onsets) and the hop and window sizes.

The seed's browser app ran Meyda at ~86 Hz (512-sample hops at 44.1 kHz) with ``energyMax`` 0.15, a centroid
range of 100-6000 Hz and ``flatnessMax`` 0.5; those are the defaults here, and other sample rates keep the
same hop *duration* (:func:`hop_size_for`). Every value is checked on creation, so a bad profile fails at load
time with the value and the allowed range. Pure: no numpy, no aubio.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from metadj_bridge.errors import ConfigError

__all__ = [
    "BEAT_ACTIVATIONS",
    "ONSET_METHODS",
    "REFERENCE_HOP",
    "REFERENCE_SAMPLERATE",
    "SAMPLERATE_RANGE",
    "AnalysisConfig",
    "check_samplerate",
    "hop_size_for",
    "window_size_for",
]

#: The seed's analysis frame: 512 samples at 44.1 kHz (~11.6 ms, ~86 Hz).
REFERENCE_HOP = 512
REFERENCE_SAMPLERATE = 44100

#: What drives the onset trigger: the spectral flux of every band, or of one band only (``low`` for kicks,
#: ``mid`` for snares and claps, ``high`` for hats).
ONSET_METHODS = ("flux", "low", "mid", "high")
#: The beat activations the BeatClock can track (``AnalysisConfig.beat_activation``).
BEAT_ACTIVATIONS = ("flux", "net")
SAMPLERATE_RANGE = (8000, 384000)


@dataclass
class AnalysisConfig:
    """How raw features are scaled to 0..1, where the bands split, and how onsets are picked.

    Defaults are the seed's "Audio Analysis Configuration". Values are checked on creation so that a
    bad profile fails at load time with the value and the allowed range, not as NaN in the visuals.
    """

    energy_max: float = 0.15
    """Hop RMS that maps to energy 1.0 (seed: typical RMS peaks at 0.1-0.2)."""
    centroid_min_hz: float = 100.0
    centroid_max_hz: float = 6000.0
    flatness_max: float = 0.5
    """Raw flatness that maps to 1.0."""
    auto_gain: bool = False
    """Follow the room level: normalise energy and bands by a slow peak follower instead of energy_max."""
    auto_gain_seconds: float = 10.0
    """Time constant with which the follower forgets a loud passage."""
    auto_gain_floor: float = 0.01
    """Smallest RMS the follower divides by (-40 dBFS), so near-silence is not amplified to 1."""
    low_max_hz: float = 250.0
    high_min_hz: float = 4000.0
    onset_method: str = "flux"
    """Which flux drives onsets: ``flux`` (all bands), ``low`` (kicks), ``mid`` (snares), ``high`` (hats)."""
    onset_threshold: float = 0.3
    """How far above its recent mean the flux must jump: x (1 + 5 x threshold); 0.3 -> 2.5 times."""
    onset_min_interval_s: float = 0.05
    beat_activation: str = "flux"
    """What the BeatClock tracks: ``flux`` (log-frequency spectral flux) or ``net`` (the learned activation of
    ``beat_net``, trained on the development set by ``scripts/train_beats.py``)."""

    def __post_init__(self) -> None:
        if self.beat_activation not in BEAT_ACTIVATIONS:
            raise ConfigError(
                f"analysis.beat_activation: {self.beat_activation!r} is not one of {', '.join(BEAT_ACTIVATIONS)}"
            )
        _check_range("energy_max", self.energy_max, 0.0, 2.0, low_open=True)
        _check_range("centroid_min_hz", self.centroid_min_hz, 0.0, 100000.0)
        _check_range("centroid_max_hz", self.centroid_max_hz, 0.0, 100000.0, low_open=True)
        if not self.centroid_max_hz > self.centroid_min_hz:
            raise ConfigError(
                f"analysis.centroid_max_hz: {self.centroid_max_hz!r} must be above "
                f"centroid_min_hz ({self.centroid_min_hz!r})"
            )
        _check_range("flatness_max", self.flatness_max, 0.0, 1.0, low_open=True)
        if not isinstance(self.auto_gain, bool):
            raise ConfigError(f"analysis.auto_gain: {self.auto_gain!r} is not true or false")
        _check_range("auto_gain_seconds", self.auto_gain_seconds, 0.1, 600.0)
        _check_range("auto_gain_floor", self.auto_gain_floor, 1e-6, 1.0)
        _check_range("low_max_hz", self.low_max_hz, 0.0, 100000.0, low_open=True)
        _check_range("high_min_hz", self.high_min_hz, 0.0, 100000.0, low_open=True)
        if not self.high_min_hz > self.low_max_hz:
            raise ConfigError(
                f"analysis.high_min_hz: {self.high_min_hz!r} must be above low_max_hz ({self.low_max_hz!r})"
            )
        if self.onset_method not in ONSET_METHODS:
            raise ConfigError(
                f"analysis.onset_method: {self.onset_method!r} is not one of {', '.join(ONSET_METHODS)}"
            )
        _check_range("onset_threshold", self.onset_threshold, 0.0, 10.0, low_open=True)
        _check_range("onset_min_interval_s", self.onset_min_interval_s, 0.0, 10.0)


def _check_range(name: str, value: object, low: float, high: float, *, low_open: bool = False) -> None:
    """Raise ConfigError unless ``value`` is a real number in the range (NaN fails every comparison)."""
    below = "must be > " if low_open else "must be >= "
    allowed = f"{below}{low:g} and <= {high:g}"
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(f"analysis.{name}: {value!r} is not a number ({allowed})")
    ok = (low < value <= high) if low_open else (low <= value <= high)
    if not ok:
        raise ConfigError(f"analysis.{name}: {value!r} is out of range ({allowed})")


def hop_size_for(samplerate: int) -> int:
    """Hop length in samples with the seed's hop duration (512 at 44.1 kHz, ~11.6 ms, ~86 Hz).

    Rounded to the nearest whole sample (aubio needs whole hops), so the hop rate is off by at most half a
    sample per hop: 0.05% at 48 kHz (557 for 557.28, 86.18 Hz instead of 86.13 Hz), 0.13% at 32 kHz.
    44100 -> 512, 48000 -> 557, 22050 -> 256, 96000 -> 1115. Times stay exact: they count samples.
    """
    check_samplerate(samplerate)
    return max(1, round(REFERENCE_HOP * samplerate / REFERENCE_SAMPLERATE))


def window_size_for(samplerate: int) -> int:
    """Analysis window: the power of two nearest (in octaves) to two hops.

    aubio's built-in FFT (inside the onset and tempo objects, which use this window too) only takes powers
    of two, so "2 x hop" becomes the nearest one: 1024 at 44.1 and 48 kHz, 512 at 22.05 kHz, 2048 at
    96 kHz. It is always longer than one hop (>= 2 hops / sqrt 2), as aubio needs, and stays near ~23 ms.
    """
    hop = hop_size_for(samplerate)
    return int(2 ** round(math.log2(2 * hop)))


def check_samplerate(samplerate: object) -> None:
    """Raise ConfigError unless ``samplerate`` is a whole number of Hz in ``SAMPLERATE_RANGE``."""
    lo, hi = SAMPLERATE_RANGE
    if isinstance(samplerate, bool) or not isinstance(samplerate, int) or not lo <= samplerate <= hi:
        raise ConfigError(f"analysis samplerate: {samplerate!r} is not a sample rate in Hz ({lo}-{hi})")
