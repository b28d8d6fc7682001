"""Causal beat-pointer HMM (forward filtering only), numpy only.

States: for every beat interval tau (whole hops) in [fps*60/max_bpm, fps*60/min_bpm] (optionally only
`num_tempi` of them, log-spaced), positions 0..tau-1 in the beat. All blocks are concatenated in one vector,
so the deterministic "advance one position" is a shift of the whole vector by one; the block starts are then
overwritten with the tempo transition from the block ends: P(tau_i -> tau_j) ~ exp(-lam * |tau_j / tau_i - 1|)
(times an optional tempo prior). Observation: the first 1/obs_lambda of every beat is "beat" with likelihood
f(a), the rest "non-beat" with g(a), a = the onset activation in 0..1.

A beat is emitted in the hop where the most probable state's phase wraps (crosses the beat boundary).
"""

from __future__ import annotations

import math

import numpy as np


class BeatDBN:
    def __init__(self, fps: float, min_bpm: float = 60.0, max_bpm: float = 190.0, num_tempi: int | None = None,
                 lam: float = 100.0, obs_lambda: float = 16.0, obs: str = "madmom", obs_k: float = 4.0,
                 prior_bpm: float | None = None, prior_sigma: float = 0.6, prior_in_transition: bool = True,
                 min_gap: float = 0.6, wrap_at: float = 0.0, tempo_window: int = 2, lock_conf: float = 0.0,
                 lock_frames: int = 0, lock_tol: float = 0.04, acf_s: float = 0.0, acf_every: int = 8,
                 acf_gain: float = 0.0, acf_prior_bpm: float = 120.0, acf_prior_sigma: float = 1.0,
                 acf_harm: float = 0.5, emit: str = "argmax", lock_acf: float = 0.0, beat_cost: float = 0.0) -> None:
        self.fps = fps
        lo = int(math.floor(60.0 * fps / max_bpm))
        hi = int(math.ceil(60.0 * fps / min_bpm))
        taus = np.arange(lo, hi + 1)
        if num_tempi is not None and num_tempi < len(taus):
            taus = np.unique(np.round(np.exp(np.linspace(np.log(lo), np.log(hi), num_tempi))).astype(int))
        self.taus = taus
        self.starts = np.concatenate([[0], np.cumsum(taus)[:-1]]).astype(int)
        self.ends = self.starts + taus - 1
        n = int(taus.sum())
        self.n = n
        self.block = np.repeat(np.arange(len(taus)), taus)
        self.pos = np.arange(n) - self.starts[self.block]
        self.phase = self.pos / taus[self.block]
        self.beat_mask = self.pos < np.maximum(1, taus[self.block] / obs_lambda)
        self.beat_idx = np.nonzero(self.beat_mask)[0]
        self.emit = emit
        self.beat_cost = math.exp(-obs_k * beat_cost) if obs == "exp" else 1.0
        self.lock_acf = lock_acf
        self.acf_score = None
        self.acf_full = None
        self.acf_refine = False
        self.cosp = np.cos(2 * np.pi * self.phase)
        self.sinp = np.sin(2 * np.pi * self.phase)
        self.obs_lambda = obs_lambda
        self.obs = obs
        self.obs_k = obs_k
        # tempo transition
        ratio = taus[None, :] / taus[:, None]
        A = np.exp(-lam * np.abs(ratio - 1.0))
        if prior_bpm is not None:
            bpm = 60.0 * fps / taus
            prior = np.exp(-0.5 * (np.log2(bpm / prior_bpm) / prior_sigma) ** 2)
        else:
            prior = np.ones(len(taus))
        self.prior = prior
        if prior_in_transition:
            A = A * prior[None, :]
        A /= A.sum(axis=1, keepdims=True)
        self.A = A.astype(np.float64)
        # initial: uniform over states, weighted by the prior per tempo (spread over its positions)
        init = (prior / taus)[self.block]
        self.alpha = init / init.sum()
        self.min_gap = min_gap
        self.wrap_at = wrap_at
        self.tempo_window = tempo_window
        self.prev_phase = None
        self.prev_block = None
        self.frames = 0
        self.last_beat_frame = -10**9
        self.new = np.empty(n)
        self.lock_conf = lock_conf
        self.lock_frames = lock_frames
        self.lock_tol = lock_tol
        self.locked = lock_conf <= 0 and lock_frames <= 0
        self.stable = 0
        self.ref_tau = None
        # tempo evidence from the autocorrelation of the recent activation (every acf_every frames)
        self.acf_gain = acf_gain
        self.acf_every = acf_every
        self.acf_harm = acf_harm
        self.acf_n = int(round(acf_s * fps))
        if self.acf_n > 0:
            self.ring = np.zeros(self.acf_n)
            self.rpos = 0
            bpm = 60.0 * fps / taus
            self.acf_w = np.exp(-0.5 * (np.log2(bpm / acf_prior_bpm) / acf_prior_sigma) ** 2)

    def step(self, a: float) -> bool:
        """One frame of activation in; True when a beat falls in this frame."""
        al = self.alpha
        new = self.new
        new[1:] = al[:-1]
        new[self.starts] = al[self.ends] @ self.A
        if self.beat_cost != 1.0:
            new[self.starts] *= self.beat_cost
        if self.obs == "madmom":
            pb = a
            pn = (1.0 - a) / (self.obs_lambda - 1.0)
            pb = max(pb, 1e-6)
            pn = max(pn, 1e-6)
        elif self.obs == "exp":  # likelihood ratio exp(k a) for beat states
            pb = math.exp(self.obs_k * a)
            pn = 1.0
        else:  # "mix": beat p = eps + a, nonbeat p = eps + (1 - a) ... softened
            pb = 0.1 + a
            pn = 0.1 + (1.0 - a) * 0.5
        if self.acf_n > 0:
            self.ring[self.rpos] = a
            self.rpos = (self.rpos + 1) % self.acf_n
            if self.acf_gain > 0 and self.frames % self.acf_every == 0 and self.frames > 2 * self.taus.max():
                self._acf_update(new)
        if pn != 1.0:
            new *= pn
        new[self.beat_idx] *= pb / pn
        if self.frames % 8 == 0 or self.obs != "exp":
            new /= new.sum()
        self.alpha, self.new = new, al
        self.frames += 1
        best = int(new.argmax())
        ph = self.phase[best]
        blk = self.block[best]
        if self.emit == "circ":
            ph = (math.atan2(float(new @ self.sinp), float(new @ self.cosp)) / (2 * math.pi)) % 1.0
        beat = False
        if self.prev_phase is not None:
            tau = self.taus[blk]
            w = self.wrap_at
            crossed = (self.prev_phase - w) % 1.0 > (ph - w) % 1.0 and ((ph - w) % 1.0) < 0.5
            if not self.locked:
                self._check_lock(blk)
            if crossed and self.locked and self.frames - self.last_beat_frame >= self.min_gap * tau:
                beat = True
                self.last_beat_frame = self.frames
        self.prev_phase = ph
        self.prev_block = blk
        self.best_block = blk
        return beat

    def _acf_update(self, new: np.ndarray) -> None:
        m = self.acf_n
        x = np.roll(self.ring, -self.rpos)
        x = x - x.mean()
        nfft = 1 << int(np.ceil(np.log2(2 * m)))
        spec = np.fft.rfft(x, nfft)
        full = np.fft.irfft(spec.real ** 2 + spec.imag ** 2, nfft)
        self.acf_full = full[: m // 2]
        acf = full[self.taus]
        acf2 = full[np.minimum(2 * self.taus, m - 1)]
        score = np.maximum(acf + self.acf_harm * acf2, 0.0) * self.acf_w
        mx = score.max()
        if mx <= 0:
            return
        self.acf_score = score / mx
        like = (score / mx + 0.05) ** self.acf_gain
        new *= like[self.block]

    def _check_lock(self, blk: int) -> None:
        tau = self.taus[blk]
        if self.ref_tau is not None and abs(tau / self.ref_tau - 1.0) <= self.lock_tol:
            self.stable += 1
        else:
            self.stable = 0
            self.ref_tau = tau
        if self.stable < self.lock_frames:
            return
        if self.lock_conf > 0:
            w = self.tempo_window
            mass = np.add.reduceat(self.alpha, self.starts) / self.alpha.sum()
            lo, hi = max(0, blk - w), min(len(self.taus), blk + w + 1)
            if mass[lo:hi].sum() < self.lock_conf:
                return
        if self.lock_acf > 0:
            if self.acf_score is None or self.acf_score[blk] < self.lock_acf:
                return
        self.locked = True

    def tempo_bpm(self) -> float:
        """Tempo of the best state, refined by the posterior mass of the neighbouring tempi."""
        blk = self.best_block
        w = self.tempo_window
        lo, hi = max(0, blk - w), min(len(self.taus), blk + w + 1)
        mass = np.add.reduceat(self.alpha, self.starts)[lo:hi] / self.alpha.sum()
        tau = float((mass * self.taus[lo:hi]).sum() / max(mass.sum(), 1e-30))
        f = self.acf_full
        if self.acf_refine and f is not None:
            t0 = int(self.taus[blk])
            lo2, hi2 = max(2, t0 - 2), min(len(f) - 2, t0 + 3)
            if hi2 > lo2:
                j = lo2 + int(np.argmax(f[lo2:hi2]))
                y0, y1, y2 = f[j - 1], f[j], f[j + 1]
                den = y0 - 2 * y1 + y2
                if y1 >= y0 and y1 >= y2 and den < 0:
                    tau = j + 0.5 * (y0 - y2) / den
        return 60.0 * self.fps / tau

    def confidence(self) -> float:
        mass = np.add.reduceat(self.alpha, self.starts)
        return float(mass.max() / mass.sum())
