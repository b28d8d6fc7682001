"""Early tempo evidence from every band: the beat HMM's autocorrelation before its first beat (issue 15).

The beat HMM weighs every tempo by the autocorrelation of the last seconds of one summed activation. In the
first seconds of a track that sum is ruled by its loudest part: a strummed guitar or a hi-hat can hide the
kick-and-snare pattern that carries the beat. Here the rise of the activation's compressed spectrum
(``HopFeatures.beat_bands``) is summed in six groups (about < 100 Hz, 100-200 Hz, 200-500 Hz, 0.5-1.5 kHz,
1.5-5 kHz and above; kicks, bass, snares and guitars, hats), and ``acfs`` gives each group's autocorrelation,
which the learned tempo score (:mod:`~metadj_bridge.inputs.tempo_score`) reads relative to its power, so a
quiet band with a clear period counts as much as a loud one.

History, measured on the GTZAN development set (``scripts/bench_realmusic.py``): the hand-made rule these groups
first fed (the normalised autocorrelations summed, each lag with half of twice its lag) raised the tempo right
at the first beat from 32.5% to 35.8% of the 151-excerpt set; used all the way through it cost beat F (0.795
against 0.814 without classical), and so does the learned score, so the HMM reads the bands only until its
first beat. numpy only: one column of bands kept a hop, the groups and six FFTs when read.
"""

from __future__ import annotations

import numpy as np

#: The first band index of each group after the first: the bands are 12 an octave from 30 Hz, the low ones
#: merged where they are narrower than an FFT bin, so these are about 100, 200, 500, 1500 and 5000 Hz at 44.1
#: and 48 kHz (within two bands).
GROUP_EDGES = (3, 8, 21, 40, 61)
#: The music's entry (beat_hmm.ENTRY_S) is heard by the autocorrelations at most this share of the highest other
#: hop in the window (``within_entry``).
ENTRY_CAP = 0.5
#: A group's autocorrelation counts when its rise's mean square over the window reaches MIN_POWER: below it is only
#: digital silence or float rounding. The floor was the activation's (beat_hmm.ACF_MIN_POWER, 1e-4), which is
#: scaled to 0..1 while the bands are not: it silenced the groups of quiet input, and the learned score lost them.
#: On the development set's 228 excerpts played 30 dB down (``scripts/bench_realmusic.py``, the tempo score learned
#: again) the tempo was right at the first beat on 43.4% against 49.1% at full level (63.8% and 73.3% without
#: classical, in range); now on 47.4% and 50.0% (69.0% and 72.4%), beat F 0.640 and 0.655 (0.641 and 0.654 before).
MIN_POWER = 1e-12
#: The tatum (``tatum_lag``): the first autocorrelation peak that reaches this share of the zero lag.
TATUM_MIN_ACF = 0.15
#: ``unpulsed``: the autocorrelation at twice a beat interval that marks a clear repeat, as a share of the zero lag.
UNPULSED_MIN = 0.4


class BandTempo:
    """Feed ``push(bands)`` once per hop; ``acfs(n)`` gives every group's autocorrelation over the last ``n``
    (at most ``length``) hops.

    ``push`` only keeps the hop's bands (a row write); the rises and their group sums are made when ``acfs`` is
    read, which the beat HMM does every 8 hops until its first beat and the beat's entry (beat_entry) seldom; summing
    them every hop cost about 5 us a hop on the daemon's whole path. Each group is summed band after band, as a sum
    per hop made it, so the figures are the same to the last bit."""

    def __init__(self, length: int, nfft: int) -> None:
        self.length = length
        self._nfft = nfft
        #: The bands of the last length + 1 hops (a ring of rows; the extra hop is the one the oldest rise is measured
        #: from), allocated at the first push (how many bands depends on the sample rate).
        self._raw: np.ndarray | None = None
        self._entry = np.zeros(length, bool)
        self._pushed = 0
        self._starts: np.ndarray | None = None

    def push(self, bands: np.ndarray, counted: bool = True) -> None:
        """One hop's bands; ``counted`` False: the music's entry (beat_hmm.ENTRY_S), capped in ``acfs``."""
        raw = self._raw
        if raw is None or raw.shape[1] != len(bands):
            self._raw = raw = np.zeros((self.length + 1, len(bands)))
            self._starts = np.array([0, *(e for e in GROUP_EDGES if e < len(bands))])
            self._pushed = 0
        raw[self._pushed % (self.length + 1)] = bands
        self._entry[self._pushed % self.length] = not counted
        self._pushed += 1

    def rises(self, n: int) -> np.ndarray:
        """Every group's summed rise (the compressed bands' increase, half-wave rectified) in the last ``n`` hops
        (rows: groups, oldest hop first; at most ``length``); hops before the first push, and the first, rise by
        nothing."""
        groups, n = len(GROUP_EDGES) + 1, min(n, self.length)
        if self._raw is None or self._starts is None:
            return np.zeros((groups, n))
        size = self.length + 1
        newest = self._pushed % size  # the row after the newest hop's
        order = np.concatenate((np.arange(newest, size), np.arange(newest)))[-(n + 1) :]
        rise = np.diff(self._raw[order], axis=0)
        np.maximum(rise, 0.0, out=rise)
        unheard = n + 1 - self._pushed  # rows never written, and the first hop's (its rise is from itself)
        if unheard > 0:
            rise[: min(unheard, n)] = 0.0
        # Bands on rows, so that each group is summed band after band, as one hop's sum was.
        rise = np.ascontiguousarray(rise.T)
        sums = np.zeros((groups, n))
        sums[: len(self._starts)] = np.add.reduceat(rise, self._starts, axis=0)
        return sums

    def acfs(self, n: int) -> np.ndarray:
        """The autocorrelation of every group over the last ``n`` hops (rows); a silent group's all zeros."""
        x = self.rises(n)
        entry = oldest_first(self._entry, self._pushed % self.length)[-n:]
        x = within_entry(x, entry)
        x = x - x.mean(axis=1, keepdims=True)
        spectrum = np.fft.rfft(x, self._nfft, axis=1)
        full = np.fft.irfft(spectrum.real**2 + spectrum.imag**2, self._nfft, axis=1)
        full[full[:, 0] < MIN_POWER * n] = 0.0
        return full


def oldest_first(ring: np.ndarray, pos: int) -> np.ndarray:
    """A ring buffer's values (the last axis) from the oldest, ``pos`` being where the next one goes: a copy, as
    ``np.roll(ring, -pos, axis=-1)`` makes, in a fifth of its time."""
    return np.concatenate((ring[..., pos:], ring[..., :pos]), axis=-1)


def within_entry(x: np.ndarray, entry: np.ndarray) -> np.ndarray:
    """``x`` (hops on the last axis) with its ``entry`` hops no higher than ENTRY_CAP of the highest of the others
    (per row)."""
    if not entry.any():
        return x
    top = ENTRY_CAP * np.where(entry, 0.0, x).max(axis=-1, keepdims=True)
    return np.where(entry, np.minimum(x, top), x)


def tatum_lag(acf: np.ndarray, lo: int, hi: int) -> float | None:
    """The fastest regular pulse: the first peak of the autocorrelation ``acf`` (zero lag first) between lags
    ``lo`` and ``hi`` that reaches TATUM_MIN_ACF of the zero lag, in hops (between whole hops, from the parabola
    through the peak and its neighbours); None when no pulse is that regular.

    Shorter lags are the width of one onset, not a pulse; a sixteenth note at 172 BPM is 7.5 hops at 44.1 kHz.
    """
    floor = TATUM_MIN_ACF * acf[0]
    for lag in range(max(lo, 1), min(hi, len(acf) - 2) + 1):
        left, mid, right = acf[lag - 1], acf[lag], acf[lag + 1]
        if mid >= floor and mid > left and mid >= right:
            curve = left - 2.0 * mid + right
            return lag + (0.5 * (left - right) / curve if curve < 0.0 else 0.0)
    return None


def unpulsed(acf: np.ndarray, taus: np.ndarray) -> np.ndarray:
    """Which beat intervals ``taus`` (hops) have no repeat of their own while two of them repeat clearly: the
    autocorrelation ``acf`` (zero lag first, the mean removed) is below zero at the interval and at least
    UNPULSED_MIN of the zero lag at twice it. A beat is at least the music's fastest pulse, so that tempo is twice
    the music's (a metronome at 60 BPM, whose clicks also fit every other beat at 120).

    Nothing marks the beat's half there, so the learned tempo score, trained on music that always has one, fell back
    on its prior: of metronomes at 60-70 BPM (clicks, beeps, wood blocks and kicks, begun at once or after 0.5 s, at
    44.1 and 48 kHz; ``scripts/bench.py audio``) 24 in 80 got their first beat at double tempo, now none; kicks,
    whose tail fills the half, never did. At exactly 60 BPM the first beat is now the fourth click's, reported in
    the hop after 3.0 s: before, it came on the third, at 120 BPM (a kick track at 60: 148 ms off its beat). Marked
    tempi weigh UNPULSED_PENALTY (beat_hmm) at every reading until the first beat: no excerpt of the development set
    moves at any of its five starts. At UNPULSED_MIN 0.2 the first beat's tempo moved on 1-3 of the 228 excerpts at each
    start: right on 3 fewer over the five (5 fewer with a repeat under a tenth of twice the interval's as "none"). At
    0.6 clicks at 62 BPM were read at double again."""
    double = acf[np.minimum(2 * taus, len(acf) - 1)]
    return (double >= UNPULSED_MIN * acf[0]) & (acf[taus] < 0.0)
