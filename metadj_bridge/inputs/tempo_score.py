"""Which tempo the first seconds of music are in: a learned score for the beat HMM's tempo evidence (issue 15).

Before its first beat the beat HMM weighs every beat interval by how well the last seconds of music repeat at
it. A hand-made rule (the autocorrelation at the interval, times a prior around 120 BPM) picks the annotated
tempo on fewer than half the development set's excerpts at 3 s: a strummed guitar repeats at the eighths, a
shuffle at three eighths, a half-time beat at two beats. This score reads the same autocorrelations at every
metrical relative of the interval (half, once, one and a half, twice, three and four times), from the summed
activation and from every band group of :mod:`~metadj_bridge.inputs.band_tempo`, and weighs them with a linear
model learned on the GTZAN development set and generated tracks (``scripts/train_tempo.py``, which writes
WEIGHTS below): the softmax of the scores over the intervals is the probability that each is the beat.

Measured on the development set's 228 excerpts (``scripts/train_tempo.py --folds 5 --clock``, every excerpt
scored with weights fitted without its fold): the best interval of 3 s of music is the annotated tempo on 49.8%
of windows against 36.9% for the rule it replaced (59.9% against 48.2% without classical; 53.3% and 63.5% since
the music's entry is capped, beat_hmm.ENTRY_S, with the rule at 39.6% and 50.4%), and in the BeatClock
the tempo is right at the first beat on 43.0% of excerpts against 38.6% (56.9% against 48.9% without
classical), beat F unchanged (0.651); with the beat HMM's lock before the 3 s deadline (then LOCK_EARLY_S), 42.5%
(54.7%) and the first beat within 3 s on 78.1% of excerpts (86.9%) instead of about half. The deadline now always
holds (beat_hmm.LOCK_DEADLINE_S): 37.7% right at the first beat, which comes within 3 s on 99.1%; 39.0% with the
first beats' BPM read from the autocorrelation's peak near the model's tempo (beat_hmm.REFINE_WIDTH). Read after
the first beat too it cost beat F (0.636), so the HMM goes back to the plain autocorrelation from its first beat on.

Tried and not kept (same set, same bench; in-sample weights unless said): the score's evidence with gain 0.6
or 0.15 instead of 0.3 (39.9% and 41.7% right at the first beat against 42.5%); the score setting the HMM's
tempo distribution outright instead of weighing it (41.2-42.1%); the six band groups apart at every multiple
(36 more features: 55.5% of non-classical 3 s windows against 59.9%, cross-validated); after the first beat, an
"octave referee" moving the HMM to twice or half its tempo when the score prefers it for seconds (beat F
0.645-0.649 against 0.648); a floor of probability under every tempo so that a wrong octave is left sooner
(beat F 0.632 at 1e-6, 0.608 at 1e-3); a lock timed so that the first beat always lands within 3 s (94% of
excerpts instead of 51%, but the tempo right at it on 30.3% instead of 42.5%; a 2.5 s deadline: 86% and 39.9%;
kept instead: a beat from 2.5 s whose next one would come after the 3 s deadline locks when this score gives
its tempo at least 15%, 77% and 42.5%, or 81% and 41.7% without that condition; replaced since by a deadline
that always holds, see beat_hmm.LOCK_DEADLINE_S);
no lock before the deadline unless the score gives the tempo at least 0.3 or 0.5 of its
probability (43.4%, but the first beat within 3 s on 40-44% of excerpts); and a score with one hidden layer
(8 tanh units beside the linear terms, cross-validated: 58.6% of all windows against 53.0%, but at 3 s 58.4% of
non-classical excerpts against 59.9%, and it is read only until the first beat, about 3 s in). Later (5 folds, the
weights of then: the best interval right on 52.9% of 3 s windows, 63.5% without classical): the autocorrelation's dip
below zero at the interval as two more features (the summed activation's and the band groups'), which the clipped
ones cannot see: 51.8% (62.8%) at 3 s, though 53.6% of all windows against 53.1% (band_tempo.unpulsed does it by rule).
December 2026 (the weights learned again each time): the autocorrelations smoothed over three lags (0.25, 0.5, 0.25:
the activation's sum of two neighbouring hops), so that where a hop boundary falls weighs less. Cross-validated, the
best interval right on 54.9% of 3 s windows (65.7% without classical) against 54.1% (63.5%), and on 55.4% of all
windows against 53.8%; in the BeatClock the tempo right at the
first beat from the first sample, 256 and 448 samples into a hop, faded in, at 48 kHz and 30 dB down went from 47.4%
to 48.5% on average (68.8% to 70.3% without classical, in range), but downbeat F from 0.355 to 0.350 (0.522 to
0.514), and slow metronomes (``scripts/bench.py audio``) had their first beat at double tempo on 9 of 80 instead of
none (beeps and kicks at 61 BPM). Over five lags (1, 2, 3, 2, 1): 55.7% (65.7%) of 3 s windows, but at the first
beat 50.9%, 46.5% and 47.4% from the first sample, 256 and 448 samples in, against 50.0%, 47.4% and 48.2% unsmoothed.
Also December 2026: the prior's centre moved by what the music sounds like, as three more features, the tempo's
log ``z`` times the low groups' share of the band power (the first two groups), the high groups' share (the last two)
and the activation's variance over the window. Cross-validated the best interval of 3 s is right on 56.1% of windows
(67.2% without classical) against 54.1% (63.5%), and on 56.1% (61.3%) of all windows against 53.8% (58.0%); the
groups' six shares apart, the variance times ``z`` squared, or the tatum's rate or the level times ``z`` gain nothing
more. In the BeatClock the tempo right at the first beat over the seven starts of ``bench_realmusic.py`` went from
47.4% to 47.7% on average (68.5% to 69.8% without classical, in range), beat F 0.656 against 0.655, but downbeat F
0.361 against 0.368 (0.533 against 0.548), and slow metronome clicks (``scripts/bench.py audio``) had their first
beat at two or three times their tempo on 20 of 80 instead of none: a click's activation is all peaks, which the
variance reads as fast music. With those weights the score's own best tempo at the moment of the first beat was right
as often as the BeatClock's (50.4% of excerpts; outside classical, in range, on 7 where the clock was wrong and wrong
on 2 where it was right), and no rule on its probability told them apart (a wrong octave at 94%, right ones at
10-67%). Nor did the first beat's BPM improve when read from this score's probabilities within 6-10% of the model's
tempo (one excerpt fewer right), from a line through the activation's peaks near the last beats of the model's grid
(43.0-46.5% instead of 50.0%), or from the autocorrelation's peaks at one to four beats (47.4-49.6%): the near
misses, 4-10% off at the first beat and right after 8 s, are not the readout's precision.
Later in December 2026, in the beat HMM (``bench_realmusic.py``'s scorer; from the first sample / 256 samples into a
hop after 1 s of silence, against 50.0% / 47.4% right at the first beat, beat F 0.655 / 0.656): this score's evidence,
and the autocorrelation's, as one current weight each instead of a product over every check (the model multiplied by
the new weight over the last one's, raised to a share: a window that has grown by 8 hops says nearly what it said
before, and compounding it counts the first seconds again at every check). Replacing it outright at the same gain:
38.2% right at the first beat; at gains 1, 1.5, 2 and 3: 49.1%, 49.1%, 48.2% and 46.5% (beat F 0.659, 0.659, 0.658,
0.655; downbeat F 0.363-0.350 against 0.368); half of it (the weight over the square root of the last one) at gain
0.6: 51.3% but 46.9% from 256 samples in, 50.0% from 448 in against 49.1%, beat F unchanged. After the first beat
(the autocorrelation's gain 1 or 3, replaced outright): beat F 0.658 and 0.653, downbeat F 0.344 and 0.355, the
tempo right after 8 s on 55.3% and 52.2% against 55.7%. LEARNED_FLOOR 0.02 or 0.12 instead of 0.05: 50.0% / 46.5%
and 48.2% / 46.5%. On the excerpts it gets wrong the evidence is weak or elsewhere, not compounded wrongly: a
strummed country excerpt at 112 BPM, read 104 at its first beat, has an autocorrelation of 0.05-0.07 at every
interval and this score at most 0.35; a metal excerpt at 140 BPM, read 133, repeats most at 133 over its first 2.4 s
(0.40 against under 0.26 at 140), as does a rock excerpt at 112 read 117.5. And begun faded in over 0.2 s instead
of from the first sample, 26 excerpts lose the right tempo at the first beat and 15 gain it: where it is right at
all, it is often right by a narrow margin.

The autocorrelations are unbiased (each lag divided by the samples it overlaps) and relative to lag zero, so a
window of 3 s and one of 5 s give comparable values; a lag beyond 0.8 of the window has too few samples and
counts as zero. numpy only; the HMM calls it every 8 hops until its first beat.
"""

from __future__ import annotations

import numpy as np

#: The metrical relatives of a beat interval whose autocorrelation is read.
MULTIPLES = (0.5, 1.0, 1.5, 2.0, 3.0, 4.0)
#: A lag counts only within this share of the window.
MAX_LAG_SHARE = 0.8
#: The prior's centre, in BPM (its shape is learned: the weights of ``z`` and ``z2``).
PRIOR_BPM = 120.0
#: The tatum rule's bound (beat_hmm.TATUM_MAX_PER_BEAT): the sixteenths of a beat.
TATUM_PER_BEAT = 4.0

FEATURES = (
    *(f"act_x{m:g}" for m in MULTIPLES),
    *(f"bands_x{m:g}" for m in MULTIPLES),
    "bands_max_x1", "bands_low_x1", "bands_max_x2", "bands_low_x2",
    "peak", "z", "z2", "tatum_over", "tatum_dist",
)

# --- learned: python scripts/train_tempo.py --write (do not edit by hand) ---
WEIGHTS = np.array([
    1.0923564237305075,  # act_x0.5
    8.802609438718756,  # act_x1
    2.2474221412867275,  # act_x1.5
    3.558206572757723,  # act_x2
    5.212806673094059,  # act_x3
    2.1090345627519267,  # act_x4
    0.5654191307875139,  # bands_x0.5
    -1.699365532295316,  # bands_x1
    -1.5120279086092423,  # bands_x1.5
    -1.096821715610048,  # bands_x2
    -1.1004242532891597,  # bands_x3
    0.029519375448008898,  # bands_x4
    6.136511168010498,  # bands_max_x1
    0.20001998778156446,  # bands_low_x1
    8.136402398236346,  # bands_max_x2
    -0.9645929038260975,  # bands_low_x2
    -2.0272117545091013,  # peak
    0.597577523521336,  # z
    -1.9200152331138916,  # z2
    -0.1996565583396607,  # tatum_over
    1.2496135547929719,  # tatum_dist
])
# --- end learned ---


def relative_acf(acf: np.ndarray, n: int) -> np.ndarray:
    """The unbiased autocorrelation of an ``n``-sample window (the last axis), relative to its zero lag."""
    lags = np.arange(acf.shape[-1])
    unbiased = acf * n / np.maximum(n - lags, 0.2 * n)
    return unbiased / np.maximum(unbiased[..., :1], 1e-12)


def _at(acf: np.ndarray, lags: np.ndarray) -> np.ndarray:
    """``acf`` at fractional ``lags`` (linear between whole ones)."""
    lags = np.minimum(lags, acf.shape[-1] - 2)
    k = np.floor(lags).astype(int)
    f = lags - k
    return acf[..., k] * (1.0 - f) + acf[..., k + 1] * f


def features(
    act_acf: np.ndarray, band_acfs: np.ndarray, n: int, taus: np.ndarray, fps: float, tatum: float | None
) -> np.ndarray:
    """(len(taus), len(FEATURES)): the features of every beat interval ``taus`` (hops) from the raw
    autocorrelations of the last ``n`` hops of the summed activation and of every band group (rows; a silent
    group all zeros), and the tatum in hops (None: no regular pulse found, or too early to say)."""
    act = relative_acf(act_acf, n)
    live = band_acfs[:, 0] > 0.0
    bands = relative_acf(band_acfs, n) * live[:, None]
    t = taus.astype(float)
    lags = np.outer(MULTIPLES, t)  # (multiples, intervals)
    inside = lags < MAX_LAG_SHARE * n
    act_at = np.where(inside, np.maximum(_at(act, lags), 0.0), 0.0)
    bands_at = np.where(inside, np.maximum(_at(bands, lags), 0.0), 0.0)  # (groups, multiples, intervals)
    once, twice = MULTIPLES.index(1.0), MULTIPLES.index(2.0)
    columns: list[np.ndarray] = [*act_at, *bands_at.sum(axis=0)]
    for m in (once, twice):
        columns.append(bands_at[:, m].max(axis=0))
        columns.append(bands_at[:2, m].sum(axis=0))
    here = np.maximum(_at(act, t), 0.0)
    whole = t.astype(int)
    nearby = np.lib.stride_tricks.sliding_window_view(act[: whole[-1] + 4], 7)[np.maximum(whole - 3, 1)].max(axis=1)
    columns.append(here - nearby)
    z = np.log2(60.0 * fps / t / PRIOR_BPM)
    columns += [z, z * z]
    ratio = t / tatum if tatum else np.zeros_like(t)
    columns.append((ratio > TATUM_PER_BEAT + 0.5).astype(float))
    columns.append(np.where(ratio > 0, np.abs(np.log2(np.maximum(ratio, 1e-9) / TATUM_PER_BEAT)), 0.0))
    return np.stack(columns, axis=1)


def tempo_score(
    act_acf: np.ndarray, band_acfs: np.ndarray, n: int, taus: np.ndarray, fps: float, tatum: float | None,
    weights: np.ndarray | None = None,
) -> np.ndarray:
    """The learned score of every beat interval: its log-probability of being the beat, up to a constant."""
    w = WEIGHTS if weights is None else weights
    return np.asarray(features(act_acf, band_acfs, n, taus, fps, tatum) @ w)
