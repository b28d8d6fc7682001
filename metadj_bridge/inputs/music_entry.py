"""Music heard to begin begins on its one: the bar count's first guess (issue 15, item 4).

A song, a loop or a DJ's first track that starts out of silence nearly always starts on the one of its first bar;
the bar tracker (:mod:`~metadj_bridge.inputs.downbeats`) otherwise counts from whichever beat the clock gives first,
about 2 s in, and waits for the music's own bar evidence, which on real music is weak (beat 1 and beat 3 are told
apart slowly). So when the music is heard to begin, its first onset is taken as a downbeat:

- heard to begin: its first onset (activation over ONSET) comes after at least QUIET_S of hops under
  QUIET_RATIO of that onset's level (the onset's own rise, its last RISE_HOPS hops, left out), or after the
  BeatClock's silence of a second (a performer's next song). A stream that starts in the middle of the music
  (a file cut mid-song, the bridge started mid-set) has no such quiet, and nothing changes for it;
- once the clock's grid line is drawn through at least three measured beats of this music (within WINDOW_S of the
  entry), the onset's place on that line, if within TOLERANCE of a beat, says how many beats after the music's first
  one the next beat is; the tracker then believes that beat's place in the bar with downbeats.ENTRY_WEIGHT. The
  music's own evidence still takes over when it disagrees (a pickup before the one).

Measured on the GTZAN development set. ``scripts/bench_realmusic.py`` plays the excerpts as they are, from the
middle of a song: there nothing changes. Each excerpt cut at its first annotated downbeat after 1 s and played after
1 s of silence: downbeat F 0.323 before, 0.407 now (0.473 and 0.603 on the 116 excerpts in the tracker's tempo range
without classical); after 0.1 s of silence 0.331 and 0.423. Cut at a beat that is not a downbeat instead (every
entry a pickup, the rule always wrong): 0.363 and 0.307 (0.533 and 0.440). On the generated seams (``scripts/bench.py
audio``: the next song after a 3 s pause) downbeat F 0.884 before, 0.934 now.

Tried and not kept: the entry counted at the clock's first beat (ENTRY_WEIGHT 0.4 / 0.5 / 0.7: +0.085 / +0.097 /
+0.106 where right, -0.061 / -0.083 / -0.115 where wrong), but after a pause the first beats are still on the last
song's grid (the seams 0.818); on the line, ENTRY_WEIGHT 0.7 (+0.099, -0.086, before the count was freed at the
entry, against +0.074 and -0.047 at 0.5 then).
"""

from __future__ import annotations

from collections.abc import Sequence

#: The music's first onset: the activation reaches ONSET.
ONSET = 0.1
#: Heard to begin: at least QUIET_S before that onset under QUIET_RATIO of its level (tempo.SILENCE_RATIO's
#: share), the onset's own rise (its last RISE_HOPS hops) left out.
QUIET_S = 0.05
QUIET_RATIO = 0.05
RISE_HOPS = 3
#: The onset counts if within TOLERANCE (of a beat) of a beat of the grid line, drawn within WINDOW_S of it.
TOLERANCE = 0.2
WINDOW_S = 16.0
#: The grid line must go through at least this many beats measured since the entry.
MIN_BEATS = 3


class MusicEntry:
    """``hop(t, a, level)`` every hop (True at the music's first onset); ``silence(hops)`` when music comes back
    after the clock's silence; ``restarted()`` when the bar count starts again; ``beats_since(...)`` at each beat."""

    def __init__(self, hop_s: float) -> None:
        self.hop_s = hop_s
        self.t: float | None = None  # when the music was heard to begin
        self._quiet: tuple[int, float, tuple[float, ...]] | None = (0, 0.0, (0.0,) * RISE_HOPS)
        self._placed = False
        self._begun = False

    def silence(self, hops: int) -> None:
        """Music back after ``hops`` of silence: the next onset begins it."""
        self.t, self._quiet, self._begun = None, (hops, 0.0, (0.0,) * RISE_HOPS), False

    def restarted(self) -> None:
        self._placed = False

    def hop(self, t: float, a: float, level: float) -> bool:
        """True at the music's first onset (after the stream's start or a silence). An onset in a quiet lead-in
        (noise, a pad's tail: the activation is relative) is not yet the music's entry, which is still awaited."""
        first, self._begun = a > ONSET and not self._begun, self._begun or a > ONSET
        if self._quiet is not None:
            hops, loudest, rising = self._quiet
            if a > ONSET and hops * self.hop_s >= QUIET_S and loudest < QUIET_RATIO * level:
                self.t, self._quiet, self._placed = t, None, False
            else:
                self._quiet = (hops + 1, max(loudest, rising[0]), (*rising[1:], level))
        return first

    def beats_since(self, t: float, index: int, line: tuple[float, float] | None,
                    measured: Sequence[tuple[int, float, float]]) -> int | None:
        """At the beat ``index`` at ``t``: how many beats after the music's first one it is, once (per bar count)
        the grid ``line`` (intercept, slope over beat indices) goes through MIN_BEATS ``measured`` beats (index,
        time, period) since the entry; None before, or when the entry is not on the line's beats."""
        if self.t is None or self._placed or line is None or sum(w >= self.t for _, w, _ in measured) < MIN_BEATS:
            return None
        self._placed = True
        k = (self.t - line[0]) / line[1]
        if t - self.t > WINDOW_S or abs(k - round(k)) > TOLERANCE:
            return None
        return index - int(round(k))
