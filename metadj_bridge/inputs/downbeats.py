"""Where the bar begins: the position of each beat in its bar, from the music (issue 15).

Evidence per beat: the low-band flux at the beat (kicks and bass notes land on the one more than elsewhere) and
the harmonic change across it (chords change on the one): the chroma of the beat just ended against the one
before. Each is z-scored against its own running statistics and added to a score per bar position, which
forgets slowly; the position with the highest score is the downbeat. Causal: a beat's position is decided when
the beat is reported, and a later beat may move the bar.
"""

from __future__ import annotations

import math

import numpy as np

#: How much of each bar position's score survives a beat.
DECAY = 0.97


class _Running:
    """Exponentially weighted mean and variance; ``z(v)`` scores v against them, then learns it."""

    def __init__(self) -> None:
        self.mean, self.var, self.n = 0.0, 1.0, 0

    def z(self, v: float) -> float:
        z = (v - self.mean) / math.sqrt(self.var + 1e-12) if self.n > 2 else 0.0
        self.mean += 0.1 * (v - self.mean)
        self.var += 0.1 * ((v - self.mean) ** 2 - self.var)
        self.n += 1
        return z


class DownbeatTracker:
    """``hop(low, chroma)`` every hop, ``beat()`` at every beat (returns its position in the bar, 0 = downbeat)."""

    def __init__(self, beats_per_bar: int = 4) -> None:
        self.beats_per_bar = beats_per_bar
        self._scores = np.zeros(beats_per_bar)
        self._beats = 0
        self._span = np.zeros(12)
        self._span_hops = 0
        self._previous_span: np.ndarray | None = None
        self._low = _Running()
        self._change = _Running()
        self._low_now = 0.0
        self._low_before = 0.0

    def hop(self, low: float, chroma: np.ndarray) -> None:
        self._low_before, self._low_now = self._low_now, low
        self._span += chroma
        self._span_hops += 1

    def beat(self) -> int:
        bpb = self.beats_per_bar
        i = self._beats % bpb
        self._scores *= DECAY
        self._scores[i] += self._low.z(max(self._low_now, self._low_before))
        if self._span_hops:
            span = self._span / self._span_hops
            if self._previous_span is not None:
                a, b = self._previous_span, span
                change = 1.0 - float(a @ b / (math.sqrt(float(a @ a) * float(b @ b)) + 1e-12))
                self._scores[(i - 1) % bpb] += self._change.z(change)
            self._previous_span = span
        self._span = np.zeros(12)
        self._span_hops = 0
        self._beats += 1
        return (i - int(np.argmax(self._scores))) % bpb
