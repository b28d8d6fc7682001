"""How good is a beat track: F-measure against known beats, and BPM error. Pure numpy.

The conventions are the usual ones for beat tracking (as in mir_eval): an estimated beat counts when it
lies within +-70 ms of a true beat not already matched, and beats in the first seconds are ignored
because every causal tracker needs a few beats to lock on. Estimated beats after the last true beat are
not counted either: the BeatClock keeps its grid running when the music stops (a DJ mix does not end
where a test file does), and the annotations simply end there.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

TOLERANCE_S = 0.07
SKIP_S = 5.0


@dataclass(frozen=True)
class BeatScore:
    f_measure: float
    precision: float
    recall: float
    matched: int
    estimated: int
    reference: int


def f_measure(
    reference: np.ndarray, estimated: np.ndarray, *, tolerance: float = TOLERANCE_S, skip: float = SKIP_S
) -> BeatScore:
    """Greedy one-to-one matching in time order (both lists sorted)."""
    ref = np.sort(np.asarray(reference, float))
    est = np.sort(np.asarray(estimated, float))
    ref = ref[ref >= skip]
    est = est[est >= skip]
    if len(ref):
        est = est[est <= ref[-1] + tolerance]
    if len(ref) == 0 and len(est) == 0:
        return BeatScore(1.0, 1.0, 1.0, 0, 0, 0)
    if len(ref) == 0 or len(est) == 0:
        return BeatScore(0.0, 0.0, 0.0, 0, len(est), len(ref))
    matched = 0
    i = j = 0
    while i < len(ref) and j < len(est):
        d = est[j] - ref[i]
        if abs(d) <= tolerance:
            matched += 1
            i += 1
            j += 1
        elif d < 0:
            j += 1
        else:
            i += 1
    precision = matched / len(est)
    recall = matched / len(ref)
    f = 0.0 if matched == 0 else 2 * precision * recall / (precision + recall)
    return BeatScore(f, precision, recall, matched, len(est), len(ref))


def bpm_error(
    times: np.ndarray, bpms: np.ndarray, true_beats: np.ndarray, true_bpms: np.ndarray, *, after: float = 8.0
) -> tuple[float, float]:
    """Median and maximum |reported - true| BPM over the reports made after ``after`` seconds.

    The true tempo at a moment is the tempo of the beat in progress (ramps included).
    """
    times = np.asarray(times, float)
    bpms = np.asarray(bpms, float)
    keep = times >= after
    if not np.any(keep):
        return float("nan"), float("nan")
    idx = np.clip(np.searchsorted(true_beats, times[keep], side="right") - 1, 0, len(true_bpms) - 1)
    err = np.abs(bpms[keep] - np.asarray(true_bpms, float)[idx])
    return float(np.median(err)), float(np.max(err))
