"""The candidate tracker as one per-hop object: samples in, beat events out.

    tr = CausalBeatTracker(44100)            # hop 512
    for hop in stream: events = tr.process(hop)   # [(t, beat_in_bar, bpm)], t on the FeatureExtractor's axis

Pieces (see onset.py and dbn.py): log-filtered spectral flux activation -> causal beat-pointer HMM (forward
filtering, ACF tempo evidence every 8 hops) -> beat when the best state's phase wraps; a flywheel for
breakdowns (low-band flux over ~1 s < 0.4 x its ~8 s mean: the activation is damped to 0.3 and the beats
come from the last beat + the mean of the last 8 intervals); a causal downbeat phase from the low-band
flux at the beat and the chroma change across it. numpy only.
"""

from __future__ import annotations

import math

import numpy as np

from candidate_beats.dbn import BeatDBN
from candidate_beats.onset import OnsetActivation

FINAL_ONSET = dict(gamma=10.0, maxfilt=1, mean_s=0.2, peak_release_s=10.0)
FINAL_DBN = dict(min_bpm=60.0, max_bpm=190.0, lam=300.0, obs="exp", obs_k=6.0, obs_lambda=10.0,
                 acf_s=5.0, acf_gain=0.3, acf_harm=0.0, lock_frames=86, lock_conf=0.6)
#: The slower, surer start: lock also needs the DBN's tempo on an ACF peak; tempo refined on the ACF.
FINAL_DBN_B = dict(FINAL_DBN, lock_acf=0.7)


class CausalBeatTracker:
    def __init__(self, samplerate: int = 44100, hop: int = 512, beats_per_bar: int = 4, onset_kw=None,
                 dbn_kw=None, delay_s: float = 0.0, bd_ratio: float = 0.4, bd_scale: float = 0.3,
                 downbeats: bool = True, db_decay: float = 0.97, w_low: float = 1.0, w_chroma: float = 1.0,
                 acf_refine: bool = False):
        self.sr, self.hop = samplerate, hop
        fps = samplerate / hop
        self.fps = fps
        self.onset = OnsetActivation(samplerate, hop, chroma=downbeats, **(onset_kw or FINAL_ONSET))
        self.dbn = BeatDBN(fps, **(dbn_kw or FINAL_DBN))
        self.dbn.acf_refine = acf_refine
        self.delay = delay_s
        self.bd_ratio, self.bd_scale = bd_ratio, bd_scale
        self.kr, self.kl = 0.0, 1e-9
        self.ar, self.al = 1.0 / fps, 1.0 / (8 * fps)
        self.k = 0
        self.beats: list[float] = []
        self.period: float | None = None
        self.fly_next = 0.0
        self.breakdown = False
        self.prev_low = 0.0
        # downbeats
        self.downbeats = downbeats
        self.bpb = beats_per_bar
        self.db_decay, self.w_low, self.w_chroma = db_decay, w_low, w_chroma
        self.scores = np.zeros(beats_per_bar)
        self.nbeats = 0
        self.span_sum = np.zeros(12)
        self.span_n = 0
        self.prev_span: np.ndarray | None = None
        self.stats = {"low": [0.0, 1.0], "chg": [0.0, 1.0]}
        self.bpm = 0.0

    # ------------------------------------------------------------------ downbeat evidence

    def _z(self, name: str, v: float) -> float:
        m, var = self.stats[name]
        z = (v - m) / math.sqrt(var + 1e-12) if self.nbeats > 2 else 0.0
        m += 0.1 * (v - m)
        var += 0.1 * ((v - m) ** 2 - var)
        self.stats[name] = [m, var]
        return z

    def _bar(self, low_at_beat: float) -> int:
        n = self.nbeats
        i = n % self.bpb
        self.scores *= self.db_decay
        self.scores[i] += self.w_low * self._z("low", low_at_beat)
        if self.span_n:
            span = self.span_sum / self.span_n
            if self.prev_span is not None:
                a, b = self.prev_span, span
                chg = 1.0 - float(a @ b / (math.sqrt(float(a @ a) * float(b @ b)) + 1e-12))
                self.scores[(n - 1) % self.bpb] += self.w_chroma * self._z("chg", chg)
            self.prev_span = span
        self.span_sum = np.zeros(12)
        self.span_n = 0
        self.nbeats += 1
        return (i - int(np.argmax(self.scores))) % self.bpb

    # ------------------------------------------------------------------ per hop

    def process(self, x: np.ndarray) -> list[tuple[float, int, float]]:
        a, _flux, low = self.onset.process(x)
        k = self.k
        self.k += 1
        t = self.k * self.hop / self.sr
        if self.downbeats:
            self.span_sum += self.onset.last_chroma
            self.span_n += 1
        self.kr += self.ar * (low - self.kr)
        self.kl += self.al * (low - self.kl)
        self.breakdown = self.kr < self.bd_ratio * self.kl and k > 4 * self.fps
        if self.breakdown:
            a *= self.bd_scale
        hit = self.dbn.step(a)
        period = self.period
        if self.breakdown and period is not None:
            hit = t - self.delay >= self.fly_next - 0.5 * self.hop / self.sr
            if hit:
                self.fly_next += period
        elif hit and self.beats and period is not None and (t - self.delay) - self.beats[-1] < 0.5 * period:
            hit = False
        events = []
        low_at_beat = max(low, self.prev_low)
        self.prev_low = low
        if hit:
            tb = t - self.delay
            self.beats.append(tb)
            if len(self.beats) > 9:
                del self.beats[0]
            if len(self.beats) >= 9:
                iv = np.diff(self.beats)
                p = (self.beats[-1] - self.beats[0]) / 8.0
                med = float(np.median(iv))
                self.period = p if 0.8 < p / med < 1.25 else med
            bib = self._bar(low_at_beat) if self.downbeats else -1
            events.append((tb, bib, self.tempo()))
        if not self.breakdown and self.beats and self.period is not None:
            self.fly_next = self.beats[-1] + self.period
        return events

    def tempo(self) -> float:
        """The DBN's tempo, or 60 / the beat period when the two agree within 4% (finer than the hop grid)."""
        db = self.dbn.tempo_bpm()
        if self.period is not None and abs(60.0 / self.period / db - 1.0) < 0.04:
            return 60.0 / self.period
        return db

    @property
    def locked(self) -> bool:
        return bool(self.beats)
