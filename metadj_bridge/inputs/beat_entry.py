"""The beat comes in after a beatless stretch: its tempo decided afresh (issue 15).

The clock must lock within 3 s of sound, so over a beatless intro (noise, wind, a pad) or a long breakdown it
finds a "tempo" in whatever is there. When the beat then comes in, the beat HMM has held that tempo for seconds
and every other one has sunk to its floor (beat_hmm.TEMPO_FLOOR): a beat at a metrical relative of the held tempo
(a hip-hop beat at 92 BPM after an intro read at 170-190) then fits well enough to be read at the relative's tempo
for a dozen seconds before the autocorrelation's small per-check evidence has moved the tempo across.

This watches the last WINDOW_S of activation, every EVERY hops, in two ways: how rhythmic it is (the autocorrelation
at the best beat interval relative to its power, the beat HMM's ``rhythm``) and how sharp its onsets are (the share
of the activation in its loudest tenth of hops: 0.2-0.55 for noise, wind or a pad, 0.9-0.95 for a generated beat; on
the development set a median of 0.70, 0.87 at the 95th percentile). The beat has come in when the window's rhythm
reaches RISE_MIN and the earlier windows of the locked time (up to WINDOW_S before, at least QUIET_MIN_S of them)
were at the median under RISE_SHARE of it, or when its sharpness reaches SHARP_MIN and theirs was at the median at
most SHARP_QUIET (a pad's vibrato or the swell of wind repeat on their own, a rhythm of 0.3-0.6, which hides the
first rise). Then for DECIDE_S the learned tempo score that decides the tempo before the first beat
(:mod:`~metadj_bridge.inputs.tempo_score`) reads the last WINDOW_S of music at every check, and when it gives
another tempo (more than CHANGE away from the held one) at least DOMINANCE times the held tempo's probability, the
caller moves the HMM there (``BeatHMM.move_tempo``); after that only to a metrical relative of the called tempo (the
window, still half intro at the first call, may have heard the new beat at twice its tempo). At a call the BeatClock
also counts the bar afresh (as at every tempo it moves to): the bars it counted in the intro were not the music's.
Then it waits for another beatless stretch.

Measured with ``scripts/bench.py audio`` ("Beatless intros": 8 s of white or pink noise, wind or a vibrato pad,
faded in or not, before a generated house, techno and hip-hop beat; 24 cases): the beat's tempo wins 2.8 s after it
comes in at the median instead of 5.1 s, within 4 s on all 24 instead of 10, beat F from the entry 0.944 instead of
0.896; the hip-hop beat after 2.8 s instead of 16.3 s. Downbeat F from 4 s after the entry: 0.960 instead of 0.781
(0.923 with the tempo decided afresh but the bar counted on). With the rhythm's rise alone: 2.9 s, 16 of 24 (the
wind and pad intros stayed as they were); deciding from 0.5 or 1 s after the rise on, when more of the window is the
new beat: 3.1 s and 3.7 s; further calls at any tempo: the same on the intros, but a classical excerpt's tempo moved
four times in 2 s.

On the 228 excerpts of the GTZAN development set a quarter of the 3 s windows have a rhythm under 0.19, half under
0.28, a tenth over 0.48: the music is rhythmic throughout, and the rise is heard on 7 excerpts (5 classical, 2
jazz). On two classical ones the score moves the tempo: from 150 to 94 BPM (annotated 72; beat F 0 to 0.20) and from
96 to 91 (annotated 93). Beat F 0.6546 instead of 0.6537, every other figure of ``scripts/bench_realmusic.py`` from
the excerpts' first sample unchanged (begun the other ways, beat F within 0.001 and the tempo at the first beat
unchanged); no generated track without an intro calls it. Between real excerpts (``scripts/bench_crossfades.py``)
the BPM follows within 2 s of a crossfade's midpoint on 8 of 40 instead of 7 (4.85 s at the median instead of 4.93).
Looser rhythm rules were tried: RISE_MIN 0.5 and RISE_SHARE 0.5 moved the tempo on 7 excerpts, RISE_SHARE 0.45 on 7
too, to the annotated tempo about as often as away from it (a 66 BPM country excerpt from 132 to 66, a 176 BPM one
from 174 to 88).

Cost: the six band groups' rise every hop and an FFT of the window every EVERY hops (the learned score's six more
only in the DECIDE_S after a rise): about 4 µs a hop at the median on the development machine, 10 µs on average
(``scripts/bench.py audio``, BeatClock 20 µs against 16 at the median, 49 against 40 on average).
"""

from __future__ import annotations

from collections import deque

import numpy as np

from metadj_bridge.inputs.band_tempo import BandTempo, oldest_first, tatum_lag
from metadj_bridge.inputs.beat_hmm import ACF_MIN_POWER, TATUM_MAX_PER_BEAT, TATUM_MIN_LAG
from metadj_bridge.inputs.tempo_score import tempo_score

__all__ = ["BeatEntry"]

#: The window read, in seconds (the learned score was trained on 3 s windows among others).
WINDOW_S = 3.0
#: Checked every this many hops.
EVERY = 16
#: The rise: the window's rhythm at least RISE_MIN, and the earlier windows' since the lock (up to WINDOW_S
#: before) at the median under RISE_SHARE of it.
RISE_MIN = 0.45
RISE_SHARE = 0.35
#: Or the onsets turned sharp: the window's loudest tenth of hops holds at least SHARP_MIN of its activation, and
#: the earlier windows' at the median at most SHARP_QUIET.
SHARP_MIN = 0.85
SHARP_QUIET = 0.6
#: The earlier windows read: at most the last this long.
QUIET_MAX_S = 30.0
#: From the rise on, the tempo is decided at every check for this long (the window is then all new music).
DECIDE_S = 3.0
#: After a call, until DECIDE_S: another only at a metrical relative of the called tempo (the new beat's octave,
#: as more of it fills the window).
RELATIVES = (0.5, 2.0, 2.0 / 3.0, 1.5)
#: The earlier windows must span at least this long.
QUIET_MIN_S = 3.0
#: A tempo this far from the held one is another tempo.
CHANGE = 0.04
#: The learned score's probability of the new tempo against the held one's.
DOMINANCE = 4.0


class BeatEntry:
    """Feed ``push(a, bands, locked)`` once per hop; when it returns True the beat has come in, and ``decide(period)``
    gives the new beat interval (hops) when that is another tempo than the held ``period`` (hops), else None."""

    def __init__(self, fps: float, taus: np.ndarray) -> None:
        self.fps = fps
        self.taus = taus
        self._n = int(round(WINDOW_S * fps))
        self._nfft = 1 << int(np.ceil(np.log2(2 * self._n)))
        self._ring = np.zeros(self._n)
        self._pos = 0
        self._bands = BandTempo(self._n, self._nfft)
        self._hops = 0
        #: The rhythm of the windows since the lock (or the last call) up to WINDOW_S ago, the last QUIET_MAX_S.
        #: (rows: rhythm, sharpness; a ring of columns, ``_quiet_n`` of them filled).
        self._quiet = np.zeros((2, int(QUIET_MAX_S * fps / EVERY)))
        self._quiet_n = 0
        self._quiet_pos = 0
        #: The rhythm and sharpness of the windows of the last WINDOW_S, not yet among the earlier ones (hop, both).
        self._recent: deque[tuple[int, tuple[float, float]]] = deque()
        self._acf = np.zeros(self._nfft)
        #: The tempi given by ``decide`` so far.
        self.calls = 0
        #: After the rise: the hop until which the tempo is decided at every check.
        self._deciding_until = 0
        #: The tempo called since the rise (hops; 0: none yet).
        self._called = 0.0

    def push(self, a: float, bands: np.ndarray | None, locked: bool) -> bool:
        self._ring[self._pos] = a
        self._pos = (self._pos + 1) % self._n
        if bands is not None:
            self._bands.push(bands)
        self._hops += 1
        if not locked:
            self._restart()
            self._deciding_until = 0
            return False
        if self._hops % EVERY or self._hops < self._n:
            return False
        part = oldest_first(self._ring, self._pos)
        spectrum = np.fft.rfft(part - part.mean(), self._nfft)
        acf = np.fft.irfft(spectrum.real**2 + spectrum.imag**2, self._nfft)
        rhythm = float(acf[self.taus].max() / acf[0]) if acf[0] >= ACF_MIN_POWER * self._n else 0.0
        if not np.isfinite(rhythm):  # cannot happen with finite input; no rise rather than a NaN one
            rhythm = 0.0
        top = max(1, self._n // 10)
        total = float(part.sum())
        sharp = float(np.partition(part, self._n - top)[-top:].sum() / total) if total > 0.0 else 0.0
        while self._recent and self._recent[0][0] <= self._hops - self._n:
            self._quiet[:, self._quiet_pos] = self._recent.popleft()[1]
            self._quiet_pos = (self._quiet_pos + 1) % self._quiet.shape[1]
            self._quiet_n = min(self._quiet_n + 1, self._quiet.shape[1])
        self._recent.append((self._hops, (rhythm, sharp)))
        self._acf = acf
        if self._hops <= self._deciding_until:
            return bands is not None
        if bands is None or self._quiet_n * EVERY < QUIET_MIN_S * self.fps:
            return False
        quiet = self._quiet[:, : self._quiet_n]  # (the medians only when this window could be a rise)
        rose = rhythm >= RISE_MIN and _median(quiet[0]) <= RISE_SHARE * rhythm
        sharpened = sharp >= SHARP_MIN and _median(quiet[1]) <= SHARP_QUIET
        if not (rose or sharpened):
            return False
        self._restart()
        self._deciding_until = self._hops + int(round(DECIDE_S * self.fps))
        self._called = 0.0
        return True

    def decide(self, period: float) -> float | None:
        """After ``push`` said the beat came in: the learned score's tempo (hops) of the last WINDOW_S, when it
        is another than ``period`` and DOMINANCE times as probable; else None."""
        acf = self._acf
        tatum = tatum_lag(acf, TATUM_MIN_LAG, int(self.taus[-1] / TATUM_MAX_PER_BEAT) + 1)
        score = tempo_score(acf, self._bands.acfs(self._n), self._n, self.taus, self.fps, tatum)
        p = np.exp(score - score.max())
        if not np.isfinite(p).all():
            return None
        best = int(p.argmax())
        new = float(self.taus[best])
        if abs(new / period - 1.0) <= CHANGE:
            return None
        held = float(np.interp(period, self.taus, p))
        if p[best] < DOMINANCE * held:
            return None
        if self._called and not any(abs(new / self._called / m - 1.0) <= CHANGE for m in RELATIVES):
            return None
        self._called = new
        self.calls += 1
        return new

    def _restart(self) -> None:
        self._quiet_n = self._quiet_pos = 0
        self._recent.clear()


def _median(x: np.ndarray) -> float:
    """``np.median`` of a short row, without its wrapper's cost (a fifth of the time, the same value)."""
    n = len(x)
    k = n // 2
    if n % 2:
        return float(np.partition(x, k)[k])
    part = np.partition(x, (k - 1, k))
    return float((part[k - 1] + part[k]) / 2)
