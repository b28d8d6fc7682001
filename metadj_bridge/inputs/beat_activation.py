"""How much each hop sounds like a beat: the onset activation the BeatClock tracks (issue 15).

Per hop, the last ``frame`` samples (four hops: 2048 at 44.1 kHz), Hann-windowed, one ``rfft``; the magnitudes
go through a log-spaced triangular filterbank (12 bands per octave, 30 Hz-17 kHz; low bands narrower than a
bin merge), are compressed (``log(1 + 10 x)``), and the rise of every band since the previous hop (half-wave
rectified) is summed: spectral flux on a perceptual scale, which sees a guitar's strum or a piano's chord as
well as a kick. A causal local mean (0.2 s) is subtracted and a slow peak follower (10 s release) scales the
result into 0..1. The same matrix product gives the low-band (< 200 Hz) part of the flux, which tells a
breakdown from the groove.

The bar tracker reads harmonic change: every HARMONY_EVERY hops, a frame four times as long (8192 samples at
44.1 kHz, 186 ms: bins 5.4 Hz apart, so notes a semitone apart are told apart from about 90 Hz up) gives a 12-bin
chroma (100 Hz-4 kHz) and a 12-bin bass chroma (50-300 Hz, each note weighed alike however many bins it spans) of
the log-compressed magnitudes. The 2048-sample frame's chroma (bins 21.5 Hz apart: a semitone only above ~370 Hz)
and its low bands in place of the bass chroma gave downbeat F 0.319 cross-validated with the BeatClock's beats
(0.560 at the annotated beats); these give 0.349 (0.609; both with downbeats.STICK 0.7, as every figure here).
Within 0.01 of that: the notes of the bass summed by bins (0.352 / 0.614), every note weighed alike in the chroma
too (0.345 / 0.608), a 4096-sample frame (0.345 / 0.572), plain magnitudes (0.343 / 0.602), chroma from 60 Hz
(0.348 / 0.599); a 16384-sample frame 0.329 / 0.578. Updates every 8 hops instead of 4 give 0.353 / 0.583 (the
annotated beats' figure is lower in both variants tried) for half the cost. One 8192-point FFT every 4 hops added
about 15 us a hop to the mean and 3-5 us to the median (side by side: whole set median 116 against 120 us, mean
158 against 180 us on a slow day of this machine). Since December 2026 the frame is heard at a quarter of the rate
(HARMONY_MIN_RATE_HZ: low-passed, every 4th sample kept, a 2048-point FFT with the same bins): a held chord's
chroma and bass within 0.003 of the whole frame's, real excerpts' within 0.005 (the generated tracks' bass within
0.022), downbeat F 0.368 against 0.367, for a quarter less (13 against 17.5 us a hop at the mean, side by side).
Measured again then (``bench_realmusic.py``'s scorer, from the first sample, 256 and 448 samples into a hop after 1 s
of silence), updates every 8 hops: the beats unchanged, downbeat F 0.361, 0.338 and 0.359 against 0.368, 0.341 and
0.355 (without classical, in range, 0.534, 0.499 and 0.521 against 0.548, 0.505 and 0.516) for about 6.5 us a hop
less. The low-pass is computed only at the samples kept (a row of the buffer per kept sample, one product with the
taps) rather than convolved at every sample and thinned: the chroma the same within 3e-7 and the beats and bars the
same, 33 against 45 us a frame (the rows read through a view made once; in four phases with the diagonals summed,
39 against 43).

Measured on the GTZAN development set (``scripts/bench_realmusic.py``): this activation with the beat HMM
scores beat F 0.77 against the old kick-and-snare novelty's 0.58; a 1024-sample frame loses 0.05 and 24 bands
per octave gain nothing. numpy only; no state but the previous hop's bands and two followers.

Tried later on the same set and not kept (with the beat HMM and band tempo of then: beat F 0.598, tempo right
at the first beat 35.8%; without classical 0.811 and 55.0%): SuperFlux's maximum of the last hop over three
neighbouring bands (0.578; jazz 0.60 to 0.50, a walking bass's semitone steps vanish) or the rise from two hops
back (0.593, first tempo 31.1%); every band whitened by its own slow peak (0.52-0.57); the bands weighted to
count each octave alike (0.56-0.58); each band's or group's rise over its own mean (0.59-0.60); GAMMA 3-100,
MEAN_S 0.1-0.4, a 5-20 s peak release, a 4096-sample frame (0.59-0.60 each); the square root of the activation
(0.611, but tempo at the first beat 34.4% and downbeat F 0.43 instead of 0.47 without classical). The rectified
complex-domain rise (Bello et al. 2004, Dixon 2006: in every bin that grew, its distance from last hop's
magnitude at last hop's phase advance, added to the band's last value) scores beat F 0.619 (0.818 without
classical) and downbeat F 0.295 instead of 0.262, but the tempo is right at the first beat on 31.8% (50.0%)
and after 8 s on 49.0% instead of 52.3%; on generated music the first beat comes 0.2-0.4 s later and a
held-out breakdown's F falls to 0.87; it costs 20 us a hop. Used only for the beat HMM's "on the beat" weighting
after the lock (the flux still choosing the tempo): beat F 0.616, downbeat F 0.292, tempo at the first beat 35.8%,
after 8 s 50.3% (on the 228-excerpt set 0.664 / 39.5% / 54.4% against 0.651 / 38.6% / 55.3%, the gain in classical
and jazz, blues, country and reggae a little lower); a generated DJ transition then follows in 4.0 s instead of
1.5 s (the incoming track's attacks move the phase before the midpoint), and it costs 25-35 us a hop.

Tried in December 2026 and not kept: the bands heard at one level, every hop's magnitudes times 0.1 over the music's
RMS (a running mean of its hops' mean squares, then over the last 3-30 s, hops far under it left out). Scored with
``bench_realmusic.py``'s scorer in a two-process copy, without classical, in range, at full level, 10 and 30 dB down
and 6 dB up: the tempo right at the first beat on 71.6-72.4% at every level (with the tempo score learned again, and
the flux's mean and peak scaled with the gain so that a moving gain is no onset; without that scaling 68-70%),
against 73.3%, 69.0%, 63.8% and 71.6% then; downbeat F 0.52-0.54 against 0.50-0.55. But a slow metronome's first
beat came at double tempo on 4 of 80 (as it does without it when the clicks are 3 or 6 dB quieter), and generated
music tuned at its own level failed four tests: a held-out breakdown's BPM 1.2-1.4 off, a crossfade followed 2.1 s
after its midpoint, one into a track without bass called twice, and the grid drifting through a stop (the gain rose
on the noise). Normalising only below 0.05 or above 0.2 RMS kept the full-level figures but gained little 30 dB
down (64.7%), and a riser intro's beat then won 6.8 s after it came in. What did the most of it was
band_tempo.MIN_POWER: 69.0% 30 dB down, 72.4% at full level and 10 dB down, 71.6% 6 dB up.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from metadj_bridge.inputs.beat_net import BeatNetWeights

#: Compression of the band magnitudes before the flux (log(1 + GAMMA x)).
GAMMA = 10.0
BANDS_PER_OCTAVE = 12
FMIN_HZ = 30.0
FMAX_HZ = 17000.0
#: The flux below this frequency is the low band (kicks and bass).
LOW_MAX_HZ = 200.0
#: The local mean subtracted from the flux, and the peak follower's release.
MEAN_S = 0.2
PEAK_RELEASE_S = 10.0
#: The music's entry after silence (the compressed bands summed under ENTRY_QUIET the hop before) is its first
#: ENTRY_HOPS (the frame filling) and, while the bands' sum rises every hop, a fade-in of up to FADE_MAX_S. A hard
#: entry's rise sets the peak follower, which scales the onsets of the next seconds down; a fade's rise is spread
#: over many hops, none as high, and its onsets came out several times stronger. So at the end of a fade the peak is
#: at least FADE_SHARE of the flux summed over it (about what a hard entry's highest hop holds of its total). The
#: beat HMM hears a fade as it hears the entry (beat_hmm.ENTRY_S), and does not weigh its hops as beats: they all
#: stand out, one long onset that beat grids at many tempi fit, and the first beat came at one of them before the
#: learned tempo score could weigh in (0.2 s fade-ins of the development set's 228 excerpts locked before 2.3 s on
#: 54, the tempo right on 8 of those). Faded in over 0.2 s (``scripts/bench_realmusic.py``) the tempo is now right at
#: the first beat on 42.1% instead of 36.4% (65.5% instead of 55.2% without classical, in range), beat F 0.648
#: instead of 0.643 (0.640 with the HMM's part alone); the generated tracks faded in so on 20 of 24 instead of 12
#: (beat F 0.993 instead of 0.971). From the stream's first sample 47.4% instead of 47.8%, beat F 0.654 instead of
#: 0.655 (a few classical and jazz excerpts begin with a crescendo, now heard as a fade); generated tracks unchanged.
ENTRY_QUIET = 0.05
ENTRY_HOPS = 6
FADE_MAX_S = 1.0
FADE_SHARE = 0.25
#: Chroma is read from 100 Hz to 4 kHz, where the notes and their first overtones are; the bass chroma from
#: 50 to 300 Hz.
CHROMA_HZ = (100.0, 4000.0)
BASS_HZ = (50.0, 300.0)
#: The harmony frame is this many onset frames long, read every HARMONY_EVERY hops, its magnitudes compressed
#: as log(1 + HARMONY_GAMMA x) (a full-scale sine is 1).
HARMONY_FRAMES = 4
HARMONY_EVERY = 4
HARMONY_GAMMA = 100.0
#: The harmony frame's bins are needed only up to CHROMA_HZ's top, so it is heard at a lower rate: the samples
#: low-passed (a windowed sinc of HARMONY_TAPS_PER_STEP taps per step, cut at the lower rate's half) and every
#: D-th kept, D the largest of 4, 2 and 1 that leaves at least HARMONY_MIN_RATE_HZ (4 at 44.1 and 48 kHz: an FFT
#: of 2048 points instead of 8192, the same bins). The filter passes 4 kHz within 0.05 dB and holds what would
#: fold back under it 50 dB down.
HARMONY_MIN_RATE_HZ = 11000.0
HARMONY_TAPS_PER_STEP = 16


def frame_size_for(hop: int) -> int:
    """Four hops, or the next size up whose FFT is fast (no prime factor above 7): 2048 at 44.1 kHz's 512-sample hop,
    2240 at 48 kHz's 557. The frame then spans the same 46 ms at every rate, as the learned tempo and downbeat
    weights were trained on. The power of two nearest four hops (2048 at 48 kHz too, 43 ms) had the tempo right at
    the first beat on 46.5% and 46.9% of the development set played at 48 kHz, from its first sample and 256 samples
    into a hop, and downbeat F 0.344 and 0.356; with four hops 49.1% and 46.5%, 0.358 and 0.363, beat F the same
    (0.653 and 0.647), the tempo right after 8 s on 52.6% and 53.5% instead of 53.1% and 53.5%
    (``bench_realmusic.py``)."""
    if hop < 1:
        raise ValueError(f"a hop of {hop} samples: must be at least 1")
    n = 4 * hop
    while True:
        rest = n
        for p in (2, 3, 5, 7):
            while rest % p == 0:
                rest //= p
        if rest == 1:
            return n
        n += 1


def harmony_step(samplerate: int) -> int:
    """How many samples the harmony frame's low-passed signal moves on per sample kept (1, 2 or 4)."""
    step = 4
    while step > 1 and samplerate / step < HARMONY_MIN_RATE_HZ:
        step //= 2
    return step


def harmony_filter(step: int) -> np.ndarray:
    """The low-pass before keeping every ``step``-th sample: a Hamming-windowed sinc cut at half the kept rate, DC
    gain 1 (one tap of 1 for a step of 1)."""
    if step == 1:
        return np.ones(1, np.float32)
    n = HARMONY_TAPS_PER_STEP * step
    t = np.arange(n) - (n - 1) / 2
    taps = np.sinc(t / step) * np.hamming(n)
    return (taps / taps.sum()).astype(np.float32)


def log_filterbank(samplerate: int, frame: int) -> np.ndarray:
    """Triangular filters on log-spaced centres as an (nbins, nbands) matrix, each summing to 1 (a band is the
    mean magnitude in it); filters that would repeat (low bands narrower than a bin) are merged."""
    nbins = frame // 2 + 1
    fmax = min(FMAX_HZ, samplerate / 2 - samplerate / frame)
    n = int(math.floor(math.log2(fmax / FMIN_HZ) * BANDS_PER_OCTAVE)) + 1
    centres = FMIN_HZ * 2.0 ** (np.arange(n) / BANDS_PER_OCTAVE)
    bins = np.unique(np.round(centres * frame / samplerate).astype(int))
    bins = bins[(bins >= 1) & (bins < nbins - 1)]
    filters = []
    for k in range(1, len(bins) - 1):
        lo, c, hi = bins[k - 1], bins[k], bins[k + 1]
        f = np.zeros(nbins)
        f[lo : c + 1] = np.linspace(0, 1, c - lo + 1)
        f[c : hi + 1] = np.linspace(1, 0, hi - c + 1)
        f[c] = 1.0
        filters.append(f / f.sum())
    return np.array(filters).T


def _pitch_classes(freqs: np.ndarray, lo_hz: float, hi_hz: float, per_note: bool = False) -> np.ndarray:
    """An (nbins, 12) matrix giving each bin between the edges to its nearest pitch class (C is 0, A is 9);
    ``per_note``: each note weighs the same, however many bins it spans."""
    notes = (freqs > lo_hz) & (freqs < hi_hz)
    semitones_from_a4 = np.round(12 * np.log2(np.where(notes, freqs, 1.0) / 440.0)).astype(int)
    matrix = np.zeros((len(freqs), 12))
    matrix[np.nonzero(notes)[0], (semitones_from_a4[notes] + 9) % 12] = 1.0
    if per_note:
        _, note_of_bin, bins_per_note = np.unique(semitones_from_a4[notes], return_inverse=True, return_counts=True)
        matrix[np.nonzero(notes)[0]] /= bins_per_note[note_of_bin][:, None]
    return matrix


class OnsetActivation:
    """Hops of mono samples in, (activation 0..1, low-band flux) out; ``bands`` (the compressed filterbank, low
    to high) holds the newest hop's, ``chroma`` and ``bass`` the harmony frame's (each summing to 1, 0 in
    silence). With ``net`` weights the activation is the learned one (:mod:`~metadj_bridge.inputs.beat_net`)
    read from the same bands; the low-band flux and the chroma stay."""

    def __init__(self, samplerate: int, hop: int, net: BeatNetWeights | None = None) -> None:
        self.hop = hop
        frame = frame_size_for(hop)
        self.frame = frame
        nbins = frame // 2 + 1
        freqs = np.arange(nbins) * samplerate / frame
        bank = log_filterbank(samplerate, frame)
        centres = freqs[np.argmax(bank, axis=0)]
        self._nlow = int(np.count_nonzero(centres < LOW_MAX_HZ))
        self._nbands = bank.shape[1]
        # Bins above the last one used are never computed on; GAMMA (the compression's gain) is folded in.
        self._nused = used = int(np.nonzero(bank.any(axis=1))[0].max()) + 1
        self._matrix = np.ascontiguousarray(GAMMA * bank[:used], np.float32)
        self._window = _scaled_hann(frame)
        self._windowed = np.zeros(frame, np.float32)
        # The harmony frame: the newest samples are the onset frame's, kept every ``step``-th after a low-pass
        # (HARMONY_MIN_RATE_HZ); one product gives chroma and bass chroma.
        self._step = step = harmony_step(samplerate)
        self._taps = harmony_filter(step)
        kept = HARMONY_FRAMES * frame // step
        hfreqs = np.arange(kept // 2 + 1) * samplerate / (kept * step)
        pitch = np.hstack([_pitch_classes(hfreqs, *CHROMA_HZ), _pitch_classes(hfreqs, *BASS_HZ, per_note=True)])
        self._hused = hused = int(np.nonzero(pitch.any(axis=1))[0].max()) + 1
        self._hmatrix = np.ascontiguousarray(pitch[:hused], np.float32)
        self._hwindow = _scaled_hann(kept)
        self._hwindowed = np.zeros(kept, np.float32)
        self._kept = np.zeros(kept, np.float32)
        self._hops = 0
        # The onset frame, and the samples the low-pass reads for the last HARMONY_EVERY hops. The low-pass is
        # computed only where a sample is kept: one row of the buffer's samples per kept sample (a view made once,
        # the buffer being shifted in place), copied out and multiplied by the taps.
        self._buffer = np.zeros(max(frame, HARMONY_EVERY * hop + len(self._taps) - 1), np.float32)
        reads = self._buffer[-(HARMONY_EVERY * hop + len(self._taps) - 1) :]
        self._lowpass_view = np.lib.stride_tricks.sliding_window_view(reads, len(self._taps))[step - 1 :: step]
        self._lowpass_rows = np.empty(self._lowpass_view.shape, np.float32)
        self._taps_reversed = np.ascontiguousarray(self._taps[::-1])
        self._previous = np.zeros(self._nbands, np.float32)
        fps = samplerate / hop
        self._mean_alpha = 1.0 / max(1.0, MEAN_S * fps)
        self._release = math.exp(-1.0 / (PEAK_RELEASE_S * fps))
        self._mean = 0.0
        self._peak = 1e-3
        self._fade_max = int(round(FADE_MAX_S * fps))
        self._since_quiet = 10**9
        self._level = 0.0
        self._entering = False
        self._entry_flux = 0.0
        self.chroma: np.ndarray = np.zeros(12)
        self.bass: np.ndarray = np.zeros(12)
        self.bands: np.ndarray = self._previous
        self._net = None
        if net is not None:
            from metadj_bridge.inputs.beat_net import BeatNet, band_centres

            self._net = BeatNet(net, band_centres(samplerate, frame))

    def process(self, hop: np.ndarray) -> tuple[float, float]:
        """One hop of finite samples (the extractor cleans them first) in; (activation, low-band flux) out."""
        n = self.hop
        buf = self._buffer
        buf[:-n] = buf[n:]
        buf[-n:] = hop
        np.multiply(buf[-self.frame :], self._window, out=self._windowed)
        mag = np.abs(np.fft.rfft(self._windowed)[: self._nused])
        bands = np.log1p(mag @ self._matrix)
        rise = bands - self._previous
        np.maximum(rise, 0.0, out=rise)
        self._previous = self.bands = bands
        low = float(rise[: self._nlow].sum())
        flux = float(rise.sum())
        a = flux - self._mean
        self._mean += self._mean_alpha * (flux - self._mean)
        a = a if a > 0.0 else 0.0
        peak = self._peak * self._release
        self._peak = peak = a if a > peak else (peak if peak > 1e-3 else 1e-3)
        self._follow_entry(float(bands.sum()), flux)
        self._hops += 1
        if self._hops % HARMONY_EVERY == 0:
            self._harmony()
        if self._net is not None:
            return self._net.process(bands, a / peak), low
        return a / peak, low

    def _follow_entry(self, level: float, flux: float) -> None:
        """The music's entry after silence; at the end of a fade-in (ENTRY_HOPS or more), the peak it sets."""
        before, self._level = self._level, level
        self._since_quiet = 0 if before < ENTRY_QUIET else self._since_quiet + 1
        was, since = self._entering, self._since_quiet
        self._entering = since < ENTRY_HOPS or (was and since < self._fade_max and level > before)
        if self._entering:
            self._entry_flux = (self._entry_flux if was else 0.0) + flux
        elif was and since > ENTRY_HOPS:
            self._peak = max(self._peak, FADE_SHARE * self._entry_flux)

    def _harmony(self) -> None:
        """The last HARMONY_EVERY hops low-passed into the kept samples; their chroma and bass chroma."""
        np.copyto(self._lowpass_rows, self._lowpass_view)
        new = self._lowpass_rows @ self._taps_reversed  # the last sample kept is the newest one's
        kept, k = self._kept, len(new)
        kept[:-k] = kept[k:]
        kept[-k:] = new
        np.multiply(kept, self._hwindow, out=self._hwindowed)
        mag = np.abs(np.fft.rfft(self._hwindowed)[: self._hused])
        pitch = np.log1p(HARMONY_GAMMA * mag) @ self._hmatrix
        chroma, bass = pitch[:12], pitch[12:]
        self.chroma = chroma / (float(chroma.sum()) + 1e-12)
        self.bass = bass / (float(bass.sum()) + 1e-12)


def _scaled_hann(n: int) -> np.ndarray:
    """A periodic Hann window scaled so that a full-scale sine centred on a bin gives magnitude 1."""
    window = 0.5 - 0.5 * np.cos(2.0 * np.pi * np.arange(n) / n)
    return (window * (2.0 / (n / 2))).astype(np.float32)
