"""Where the bar begins: the position of each beat in its bar, from the music, causally (issue 15).

    db = DownbeatTracker(fps, beats_per_bar=4, detect_metre=True)
    per hop:   db.hop(activation, low_flux, chroma12, bass12, bands)  # the OnsetActivation's per-hop outputs
    per beat:  pos = db.beat()                                  # 0 = downbeat; db.beats_per_bar = the metre now

Evidence. Span n = the hops from beat n to beat n+1. The evidence about beat j is taken when beat j + DELAY (2)
arrives, so spans j-4 .. j+1 are complete. Per beat, 25 numbers (FEATURES):

- harmonic change: cosine distance of the mean chroma (100 Hz-4 kHz) of span j-1 and span j, and of the 2 and 4
  spans before j against the 2 after it; the same for the bass chroma (50-300 Hz), both read from a 186 ms frame
  (beat_activation: HARMONY_FRAMES);
- the onset at the beat: low-band (< 200 Hz) flux and the onset activation in the hop of the beat and the 3
  after it, also relative to the spans' mean low flux; the low-band energy and broadband spectral change j-1 -> j;
- the onset pattern of span j: the log max flux in 4 parts of the beat centred on its 16th notes, in 3 bands
  (< 300 Hz, 300 Hz-2 kHz, > 2 kHz);
- the half-bar contrast: the chroma / bass change over 2 spans at beat j minus the same at beat j-2 (a
  chord change on beat 1 against none on beat 3). Cross-validated it lifts downbeat F at the annotated beats
  from 0.545 to 0.560 (0.611 to 0.643 where the beats are right) and on the generated held-out tracks from 0.957
  to 0.977; with the BeatClock's beats from 0.315 to 0.319 (0.420 to 0.423 without classical, 0.550 to 0.548
  where the beats are right, the bar phase right after 8 s on 35 of 74 instead of 31).

Each is z-scored against its own running mean / deviation (an exponential window over beats). A multinomial
logistic model per rhythm style (WEIGHTS, learned by train_downbeats.py; style A on GTZAN, style B on GTZAN +
the generated tuning fixtures) gives per class (beat 1, 2, 3, 4 of a 4/4 bar) a logit.

Bar pointer. A forward-filtered HMM over (style, metre M in {3, 4}, position p in 0..M-1), one step per beat: p
advances by the beats since the beat before, as the beat tracker's own period counts them (``beat(interval=)``,
``BeatClock.interval``: 1 while the clock's tempo is moving; a bell of STEP_WIDTH around it, at least the chance
SLIP of staying or skipping one: beats the tracker inserted or dropped unseen), so a beat it left out moves the
count by two and half a beat's move by one or two, as the evidence says; the metre and the style rarely switch, and
the evidence of beat j multiplies each state by exp(GAIN x the logit of its class) (a 3/4 bar's positions are the
classes 1, 2 and 4). When beat n arrives the filter takes beat n-2's evidence, predicts two beats ahead and reports
the most probable position of beat n under the most probable metre (styles summed), with hysteresis: it keeps
counting (last position + 1) unless that position has less than STICK x the best one's probability. So each beat's
position is decided when it happens; later beats may change their mind (a correction shows as a bar that is too
short or too long).

The configured ``beats_per_bar`` is the prior metre (METRE_PRIOR); with ``detect_metre`` the other of 3 / 4
is allowed and may take over. Without ``detect_metre`` (or a metre other than 3 / 4) only the configured one.

The weights are learned from the development set by ``scripts/train_downbeats.py`` (deterministic, numpy only;
``--write`` puts them between the markers below), here from the 224 excerpts with downbeats of the set that
``scripts/devset.py --manifest scripts/devset_sources.tsv`` builds, and the generated tuning fixtures. With the
BeatClock's own beats, as ``scripts/bench_realmusic.py`` scores them, downbeat F on excerpts not trained on
(``train_downbeats.py DIR --cv``, 5 folds) is 0.361, 0.495 without classical and 0.62 where the beats are right
(beat F >= 0.9; the bar phase is right after 8 s on 39 of those 77); with annotated beats 0.59. Counted one step a
beat whatever the beat tracker's intervals, it was 0.354, 0.484 and 0.61 (38 of 77; in-sample 0.358, 0.535 without
classical in range, against 0.369 and 0.548 now; the GAIN and SLIP are chosen at the BeatClock's beats, where the
intervals matter). The loss is in the bar, not the beats: with each of the BeatClock's beats given the annotated
position of the nearest beat, downbeat F would be 0.75 (0.84 without classical, 0.99 where the beats are right).
Most errors take beat 3 for beat 1: a beat's evidence tells them apart weakly (harmonic change the most), and the
drums' accents differ by style (reggae's one drop on beat 3). The 3/4 excerpts (classical, jazz) are heard in 4
(configured 3, 29 of the 30 stay in 3). How the figures moved with earlier changes, and what else was tried, is in
``scripts/train_downbeats.py``.

On the generated tracks 0.98 (tuning) and 0.97 (held out); a waltz configured 3 counts 0 1 2 from its first beat,
and configured 4 it is heard as 3/4 from its 9th-10th beat. Cost: about 2 us a hop (the hop's numbers kept for its
span) and 0.25 ms a beat; the span's sums kept up to date hop by hop instead cost 6.7 us a hop (3% of the whole
listening path, side by side, for the same bars to the last bit).
"""

from __future__ import annotations

import math

import numpy as np

#: Feature names, in order (see DownbeatTracker._features).
FEATURES = ("chroma_chg", "bass_chg", "low_flux_at", "act_at", "low_energy_up", "spec_chg", "low_flux_rel",
            *(f"{b}{i}" for b in ("low", "mid", "high") for i in range(4)),
            "chroma_chg2", "bass_chg2", "chroma_chg4", "bass_chg4",  # 2 / 4 spans before vs DELAY after
            "chroma_chg2_d2", "bass_chg2_d2")  # chroma_chg2 / bass_chg2 minus theirs 2 beats before

#: Learned by train_downbeats.py: per rhythm style (A: GTZAN; B: GTZAN + generated tuning fixtures, x 0.25) and
#: class (beat 1, 2, 3, 4 of a 4/4 bar), bias first then FEATURES (z-scored); GAIN scales the logits in the
#: HMM, SLIP is the chance per beat that the beat tracker inserted or dropped a beat.
# --- learned: python scripts/train_downbeats.py --write (do not edit by hand) ---
WEIGHTS = np.array([
    [  # style A
        [0.0005, 0.0164, 0.0218, 0.0158, -0.0003, 0.0117, 0.0148, 0.0156, 0.0125, 0.0067, -0.0057, -0.0026,
         -0.0095, 0.0014, -0.0026, -0.0008, -0.0131, 0.0044, -0.0029, -0.0001, 0.0165, 0.0187, 0.0132, 0.0161,
         0.0192, 0.0153],
        [-0.0013, -0.0106, -0.0152, -0.0180, -0.0004, -0.0151, -0.0056, -0.0179, -0.0148, -0.0086, 0.0009, 0.0019,
         0.0097, 0.0015, 0.0010, 0.0006, 0.0120, -0.0012, -0.0008, 0.0004, -0.0058, -0.0128, 0.0033, -0.0038,
         0.0002, -0.0022],
        [0.0013, -0.0026, 0.0023, 0.0146, -0.0018, 0.0119, -0.0047, 0.0154, 0.0085, 0.0050, 0.0027, 0.0011,
         -0.0094, -0.0046, -0.0004, -0.0027, -0.0137, -0.0031, 0.0016, -0.0033, -0.0071, -0.0004, -0.0078, -0.0062,
         -0.0198, -0.0169],
        [-0.0004, -0.0031, -0.0088, -0.0125, 0.0024, -0.0085, -0.0046, -0.0131, -0.0062, -0.0031, 0.0021, -0.0004,
         0.0092, 0.0017, 0.0020, 0.0030, 0.0149, -0.0001, 0.0020, 0.0030, -0.0036, -0.0054, -0.0087, -0.0061,
         0.0005, 0.0038],
    ],
    [  # style B
        [-0.0090, 0.0386, 0.0344, 0.0419, -0.0172, 0.0299, 0.0381, 0.0152, 0.0300, 0.0237, -0.0246, -0.0051,
         -0.0154, -0.0251, -0.0007, -0.0048, -0.0675, 0.0256, 0.0061, 0.0047, -0.0025, 0.0102, -0.0095, 0.0152,
         0.0559, 0.0072],
        [-0.0093, -0.0353, -0.0506, -0.0465, 0.0185, -0.0496, -0.0014, -0.0092, -0.0321, -0.0119, 0.0105, 0.0162,
         0.0250, 0.0202, -0.0067, 0.0070, 0.0540, -0.0257, -0.0120, -0.0068, -0.0475, -0.0539, 0.0679, 0.0347,
         0.0075, 0.0276],
        [0.0097, 0.0032, 0.0222, 0.0341, -0.0238, 0.0357, -0.0114, 0.0282, 0.0083, -0.0022, 0.0130, 0.0014,
         -0.0122, -0.0241, 0.0096, -0.0032, -0.0498, 0.0173, 0.0150, -0.0114, 0.0191, 0.0527, -0.0101, -0.0384,
         -0.0711, -0.0637],
        [0.0086, -0.0065, -0.0060, -0.0295, 0.0224, -0.0160, -0.0253, -0.0342, -0.0062, -0.0096, 0.0011, -0.0125,
         0.0026, 0.0290, -0.0021, 0.0009, 0.0634, -0.0173, -0.0091, 0.0135, 0.0309, -0.0090, -0.0483, -0.0116,
         0.0078, 0.0289],
    ],
])
GAIN = 2.0
SLIP = 0.001
# --- end learned ---
STEP_WIDTH = 0.27  # the count's step: a bell this wide (in beats) around the beats between two beats.
#: Prior of the configured metre when detect_metre, and the per-beat chance of a metre switch.
METRE_PRIOR = 0.8
METRE_SWITCH = 0.002
#: Bands of the 12-per-octave filterbank treated as low (centres < ~300 Hz) and mid (< ~2 kHz).
LOW_BANDS = 13
MID_BANDS = 45
CELLS = 4
#: The evidence of a beat is taken this many beats later (its span and the DELAY - 1 after it are complete).
DELAY = 2
#: Hysteresis: the next position in the bar is kept while its probability is at least STICK x the best one's.
STICK = 0.4
#: The chance per beat of a switch between rhythm styles (weight sets), when there are several.
STYLE_SWITCH = 0.01
#: A span keeps at most this many hops (12 s at 44.1 kHz, longer than any beat): without beats the per-hop record
#: would otherwise grow for as long as the music plays without a lock.
MAX_SPAN_HOPS = 1024
#: Music heard to begin (after silence) begins on its one, ENTRY_WEIGHT believes (``anchor``).
ENTRY_WEIGHT = 0.5
#: The z-score's exponential window, per beat.
Z_ALPHA = 0.05


def bar_class(metre: int, position: int) -> int:
    """The evidence class (beat 1, 2, 3 or 4 of a 4/4 bar) that position ``position`` of a ``metre``-beat count
    is heard as. 4/4 is itself; a 3/4 bar is 1, 2 and the last beat (4). A longer count is bars of the music
    counted together (8 or 16: two or four 4/4 bars, a phrase; 6 or 9: 3/4 bars), so its positions repeat the
    bar's classes and the count's one falls on a bar's one; any other (5, 7, ...) is heard as one bar with its
    first beat 1, its last 4 and the others 2 and 3 in turn."""
    if metre % 4 == 0:
        return position % 4
    if metre % 3 == 0:
        return (0, 1, 3)[position % 3]
    if position == 0:
        return 0
    return 3 if position == metre - 1 else 1 + (position - 1) % 2


class DownbeatTracker:
    """``hop(...)`` every hop, ``beat()`` at every beat (its position in the bar, 0 = downbeat).

    The keyword arguments after ``detect_metre`` are for training (``scripts/train_downbeats.py``).
    """

    def __init__(self, fps: float, beats_per_bar: int = 4, detect_metre: bool = True,
                 weights: np.ndarray | None = None, gain: float | None = None, slip: float | None = None,
                 metre_prior: float | None = None, metre_switch: float | None = None, record: bool = False,
                 delay: int | None = None) -> None:
        self.fps = fps
        self.delay = DELAY if delay is None else int(delay)
        self.stick = STICK
        self.configured = int(beats_per_bar)
        w = np.asarray(WEIGHTS if weights is None else weights, float)
        self.w = w[None] if w.ndim == 2 else w  # (styles, classes, 1 + features)
        self.K = self.w.shape[0]
        self.gain = GAIN if gain is None else gain
        slip = SLIP if slip is None else slip
        mp = METRE_PRIOR if metre_prior is None else metre_prior
        ms = METRE_SWITCH if metre_switch is None else metre_switch
        if detect_metre and self.configured in (3, 4):
            metres = [self.configured, 7 - self.configured]
            prior = [mp, 1.0 - mp]
        else:
            metres, prior = [self.configured], [1.0]
        self.metres = metres
        # states: (metre index, position) flattened; block offsets
        self.offs = np.cumsum([0] + metres[:-1])
        n = int(sum(metres))
        self.nstates = n
        self.is_down = np.zeros(n, bool)
        self.midx = np.zeros(n, int)
        self.pos = np.zeros(n, int)
        for i, (M, o) in enumerate(zip(metres, self.offs, strict=True)):
            self.is_down[o] = True
            self.midx[o : o + M] = i
            self.pos[o : o + M] = np.arange(M)
        self.cls = np.array([bar_class(M, p) for M, p in zip(np.array(metres)[self.midx], self.pos, strict=True)])
        # rhythm styles (one weight set each; the style persists, a rare switch): states style x (metre, pos)
        K = self.K
        sw = STYLE_SWITCH if K > 1 else 0.0
        S = np.full((K, K), sw / max(K - 1, 1))
        np.fill_diagonal(S, 1.0 - sw)
        self._S, self._slip, self._metre_switch = S, slip, (ms if len(metres) > 1 else 0.0)
        self._steps_T: dict[int, np.ndarray] = {}
        self.steps: dict[int, float] = {}  # beat index -> its interval from the beat before, in beats
        self.base = n
        self.cls_k = self.cls[None, :] + 4 * np.arange(K)[:, None]  # index into the (K * 4) logits
        self.cls_k = self.cls_k.ravel()
        self.midx_k = np.tile(self.midx, K)
        self._metre_of_state = (self.midx[None, :] == np.arange(len(metres))[:, None]).astype(float)
        alpha = np.zeros(n)
        for i, (M, o) in enumerate(zip(metres, self.offs, strict=True)):
            alpha[o : o + M] = prior[i] / M
        # P(state of the last beat given the evidence so far), before that beat's own evidence
        self.alpha = np.tile(alpha, K) / K
        self.nbeats = 0
        # the current span's hops: rows of s_hops (act, low flux, chroma, bass) and s_bands (the onset bands)
        self.prev_bands: np.ndarray | None = None  # the bands of the hop before the span (its first rise's base)
        self._g3: np.ndarray | None = None
        self.s_hops, self.s_bands = np.zeros((256, 26)), np.zeros((0, 0), np.float32)
        self.s_n = 0
        self.spans: list[dict[str, np.ndarray]] = []  # the last complete spans
        self.prev_hops: list[tuple[float, float]] = []  # (act, low) of the last hops of the previous span
        self.chg2: list[np.ndarray] = []  # chroma_chg2, bass_chg2 of the last 3 beats (the half-bar contrast)
        self.zm: np.ndarray | None = None
        self.zv = np.zeros(0)
        self.zn = 0
        self.record = record
        self.recorded: list[np.ndarray] = []
        self.last_pos = 0
        self.last_metre = self.configured
        self._unheld = False

    def anchor(self, beats_since: int | None) -> None:
        """The next beat is ``beats_since`` beats after the music began on its one (None: not known), as
        ENTRY_WEIGHT believes (the rest spread over the other positions of each metre). Before its ``beat()``."""
        if beats_since is None:
            return
        ahead = self.nbeats - max(self.nbeats - self.delay, 0)  # from the beat alpha is about to the next one
        alpha = self.alpha.reshape(self.K, self.base).copy()
        for M, o in zip(self.metres, self.offs, strict=True):
            block = alpha[:, o : o + M]
            prior = np.full(M, (1.0 - ENTRY_WEIGHT) / max(M - 1, 1))
            prior[(beats_since - ahead) % M] = ENTRY_WEIGHT
            alpha[:, o : o + M] = block * prior
        self.alpha = alpha.ravel() / alpha.sum()
        self._unheld = True  # the count so far had nothing to go by: the next beat is not held to it (STICK)

    def _transition(self, interval: float) -> np.ndarray:
        """The transition from one beat to the next, ``interval`` beats apart (the beat tracker's own period): the
        count advances by the whole number of beats nearest it, with a bell of STEP_WIDTH beats around it and the
        chance SLIP of a beat inserted or dropped unseen; cached per 1/20 of a beat."""
        key = int(round(min(max(interval, 0.0), 3.5) * 20))
        if (T := self._steps_T.get(key)) is not None:
            return T
        r = key / 20
        steps = np.arange(4)
        pr = np.exp(-0.5 * ((steps - r) / STEP_WIDTH) ** 2)
        pr = pr / pr.sum()
        pr[:3] = np.maximum(pr[:3], self._slip)
        pr /= pr.sum()
        metres, n = self.metres, self.nstates
        B = np.zeros((n, n))
        for M, o in zip(metres, self.offs, strict=True):
            for p in range(M):
                for step in steps:
                    B[o + p, o + (p + step) % M] += pr[step]
        if len(metres) > 1:
            B = (1.0 - self._metre_switch) * B + self._metre_switch * self._switch(B, metres)
        B = B / B.sum(axis=1, keepdims=True)
        T = np.kron(self._S, B)
        self._steps_T[key] = T
        return T

    @staticmethod
    def _switch(T: np.ndarray, metres: list[int]) -> np.ndarray:
        """Metre switch: from any position of one metre to the same position (mod) of the other, advanced."""
        n = T.shape[0]
        S = np.zeros((n, n))
        offs = np.cumsum([0] + metres[:-1])
        for i, (M, o) in enumerate(zip(metres, offs, strict=True)):
            for j, (M2, o2) in enumerate(zip(metres, offs, strict=True)):
                if i == j:
                    continue
                for p in range(M):
                    S[o + p, o2 + (p + 1) % M2] = 1.0
        return S

    # ------------------------------------------------------------------ per hop

    def hop(self, act: float, low: float, chroma: np.ndarray, bass: np.ndarray, bands: np.ndarray) -> None:
        """Keeps the hop's numbers; the span's means and band fluxes are made once, when a beat closes it."""
        n = self.s_n
        if self.s_bands.shape[1] != len(bands):
            self.s_bands = np.zeros((len(self.s_hops), len(bands)), np.float32)
            g = self._g3 = np.zeros((len(bands), 3), np.float32)
            g[:LOW_BANDS, 0] = g[LOW_BANDS:MID_BANDS, 1] = g[MID_BANDS:, 2] = 1.0
        if n == len(self.s_hops):
            if n < MAX_SPAN_HOPS:
                self.s_hops = np.vstack([self.s_hops, np.zeros_like(self.s_hops)])
                self.s_bands = np.vstack([self.s_bands, np.zeros_like(self.s_bands)])
            else:  # no beat for a long while (before the lock, a stopped deck): keep the newest hops only
                self.prev_bands = self.s_bands[0].copy()
                self.s_hops[:-1], self.s_bands[:-1] = self.s_hops[1:], self.s_bands[1:]
                n -= 1
        row = self.s_hops[n]
        row[0], row[1], row[2:14], row[14:] = act, low, chroma, bass
        self.s_bands[n] = bands
        self.s_n = n + 1

    # ------------------------------------------------------------------ per beat

    def _close_span(self) -> None:
        n = self.s_n
        if n == 0:
            return
        rows, bands = self.s_hops[:n], self.s_bands[:n]
        # each hop's rise of the bands since the hop before (none for the very first), summed in low, mid and high
        rise = np.diff(np.vstack([bands[:1] if self.prev_bands is None else self.prev_bands, bands]), axis=0)
        np.maximum(rise, 0.0, out=rise)
        self.spans.append(dict(chroma=rows[:, 2:14].sum(axis=0) / n, bass=rows[:, 14:].sum(axis=0) / n,
                               bands=bands.sum(axis=0, dtype=float) / n, act=rows[:, 0].copy(),
                               low=rows[:, 1].copy(), flux=(rise @ self._g3).astype(float)))
        if len(self.spans) > self.delay + 4:
            del self.spans[0]
        self.prev_bands = bands[-1].copy()
        self.s_n = 0

    @staticmethod
    def _cosd(a: np.ndarray, b: np.ndarray) -> float:
        return 1.0 - float(a @ b / (math.sqrt(float(a @ a) * float(b @ b)) + 1e-12))

    def _features(self) -> np.ndarray | None:
        """Features of the beat that starts span -DELAY (the spans closed so far; the last one just closed by
        the new beat): the onset at that beat (the last hop of the span before it and the first three of its
        own), the low-band energy / spectral change across it, its span's onset pattern, and the harmonic
        (chroma) and bass change between 1, 2 and 4 spans before it and the DELAY spans after it."""
        D = self.delay
        if len(self.spans) < D + 1:
            return None
        A, B = self.spans[-D - 1], self.spans[-D]
        after = self.spans[-D:]
        lowA = A["bands"][:LOW_BANDS]
        lowB = B["bands"][:LOW_BANDS]
        near_low = max(float(A["low"][-1]), float(B["low"][:3].max()))
        near_act = max(float(A["act"][-1]), float(B["act"][:3].max()))
        mean_low = 0.5 * (float(A["low"].mean()) + float(B["low"].mean()))
        ca = np.sum([sp["chroma"] for sp in after], axis=0)
        la = np.sum([sp["bass"] for sp in after], axis=0)
        longer = []
        for k in (2, 4):
            prev = self.spans[max(0, len(self.spans) - D - k) : len(self.spans) - D]
            c = np.sum([sp["chroma"] for sp in prev], axis=0)  # (cosine distance: sums as good as means)
            lo = np.sum([sp["bass"] for sp in prev], axis=0)
            longer += [self._cosd(c, ca), self._cosd(lo, la)]
        # the half-bar contrast: the harmonic change over 2 beats here against the same 2 beats before (a chord
        # change on beat 1 against none on beat 3)
        h = self.chg2
        h.append(np.array(longer[:2]))
        if len(h) > 3:
            del h[0]
        contrast = h[-1] - h[0] if len(h) == 3 else np.zeros(2)
        return np.array([
            self._cosd(A["chroma"], B["chroma"]),
            self._cosd(A["bass"], B["bass"]),
            math.log1p(near_low),
            near_act,
            float(lowB.mean() - lowA.mean()),
            float(np.abs(B["bands"] - A["bands"]).mean()),
            math.log(near_low + 1e-3) - math.log(mean_low + 1e-3),
            *self._pattern(A, B),
            *longer,
            *contrast,
        ])

    @staticmethod
    def _pattern(A: dict, B: dict) -> np.ndarray:
        """The onset pattern of span B: per band (low / mid / high) the log max flux in CELLS parts of a beat,
        centred on the beat and its 16th notes (the first takes the end of span A: the beat's onset may fall a
        hop early). Centred, a 16th-note onset stays in its cell when the beat lands a hop earlier or later
        (edges on the 16ths would move it from cell to cell with the hop grid's phase)."""
        w = len(B["flux"]) / CELLS
        k = min(len(A["flux"]), int(round(w / 2)))
        fl = np.vstack([A["flux"][len(A["flux"]) - k :], B["flux"]])
        out = np.empty((CELLS, 3))
        for i in range(CELLS):
            a = min(max(0, int(round(k + (i - 0.5) * w))), len(fl) - 1)
            b = max(a + 1, int(round(k + (i + 0.5) * w)))
            out[i] = fl[a:b].max(axis=0)
        return np.log1p(out).T.ravel()

    def _z(self, f: np.ndarray) -> np.ndarray:
        if self.zm is None:
            self.zm = f.copy()
            self.zv = np.ones_like(f) * 1e-2 + f * f * 0.0
            self.zn = 0
        a = max(Z_ALPHA, 1.0 / (self.zn + 1))
        d = f - self.zm
        self.zm = self.zm + a * d
        self.zv = (1 - a) * (self.zv + a * d * d)
        self.zn += 1
        return (f - self.zm) / np.sqrt(self.zv + 1e-9)

    def beat(self, t: float = 0.0, interval: float = 1.0, heard: bool = True) -> int:
        """A beat now, ``interval`` beats after the one before (the beat tracker's period; 2 when it left one out,
        1.5 when it moved half a beat): closes the span, takes the evidence of the beat DELAY back, returns this
        beat's position. ``heard`` False: a beat the tracker's flywheel kept in a breakdown, whose evidence (pads and
        hats) is not the bar's: the count runs on without it (in a generated 32-bar house breakdown it took the count
        elsewhere, downbeat F 0.35 in the breakdown and 0.55 after the drop).

        alpha is the distribution of the state of the oldest beat without its own evidence yet."""
        self._close_span()
        n = self.nbeats
        self.steps[n] = interval if math.isfinite(interval) else 1.0
        self.steps.pop(n - self.delay - 2, None)
        j = n - self.delay  # the beat the evidence is about
        if j >= 0:
            f = self._features() if heard else None
            if f is not None:
                z = self._z(f)
                if self.record:
                    self.recorded.append(np.concatenate([[j], z]))
                if self.w.shape[2] != len(z) + 1:  # (training: recording features before there are weights)
                    z = np.zeros(self.w.shape[2] - 1)
                logit = (self.w[:, :, 0] + self.w[:, :, 1:] @ z).ravel()  # per style and class (beat 1..4)
                logit = self.gain * (logit - logit.max())
                self.alpha = self.alpha * np.exp(np.maximum(logit, -30.0))[self.cls_k]
                self.alpha /= self.alpha.sum()
            self.alpha = self.alpha @ self._transition(self.steps.get(j + 1, 1.0))  # now about beat j + 1
        pred = self.alpha
        for k in range(max(j + 1, 0) + 1, n + 1):
            pred = pred @ self._transition(self.steps.get(k, 1.0))
        self.nbeats += 1
        pb = pred.reshape(self.K, self.base).sum(axis=0)  # over styles
        mass = self._metre_of_state @ pb
        m = int(np.argmax(mass))
        o, M = self.offs[m], self.metres[m]
        p = int(np.argmax(pb[o : o + M]))
        if self.nbeats > 1 and M == self.last_metre and not self._unheld:  # hysteresis: keep counting unless wrong
            cont = (self.last_pos + 1) % M
            if pb[o + cont] >= self.stick * pb[o + p]:
                p = cont
        self.last_pos, self.last_metre, self._unheld = p, M, False
        return p

    @property
    def beats_per_bar(self) -> int:
        return self.last_metre
