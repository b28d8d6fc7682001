"""A DJ's tempo change: the new track's tempo, heard in the last beats of activation (issue 15).

The beat HMM (:mod:`~metadj_bridge.inputs.beat_hmm`) lets the tempo move only in small steps at beats, which holds
the grid still on steady music and through fills, but across a crossfade to a track 10-20 BPM away it keeps the
old tempo until the old track is all but gone. This detector looks at the last WINDOW_BEATS beats of activation
every EVERY hops. The old track repeats itself from beat to beat, so the mean of the activation one and two beats
earlier (PREDICT_BEATS) predicts it; what that prediction leaves over is the rest of the music, where a new
track's beat stands out before it is the louder one. A tempo change is called when all of these hold:

- the current tempo was clear: the activation's autocorrelation at the beat period (scaled to 1 at lag 0 and for
  the overlap, so 1 is a perfect repeat) reached CLEAR within the last CLEAR_MEMORY_S, so music without a steady
  pulse (rubato, a free intro) never calls one; or, for a beat that repeats less from beat to beat (drum and bass,
  broken beats, swing), what the last beats leave over stayed quiet (no peak 5-25% away reached QUIET) for
  seconds before the last QUIET_GAP_S: the old track was still predicted by its own beats; or neither, but the new
  tempo below has held for LONG_CHECKS checks (about 3 s) instead of HOLD_CHECKS: between real tracks the old one
  is seldom that clear, and the model would otherwise walk to the new tempo in its small steps;
- what is left over repeats at another tempo 5-25% away (no metrical relation of the current one: those are 2x,
  1.5x, 4/3 and their inverses, which the HMM's own autocorrelation weighs), with an autocorrelation (on the same
  scale) of at least SUPPORT for HOLD_CHECKS checks in a row (about 0.75 s; the same tempo within HOLD_TOLERANCE),
  of which the last STRONG_CHECKS reach NEW_MIN and DOMINANCE times the current tempo's: a new track's beat grows
  in the left-over for a second or more before it stands out, while on steady music a pattern 5-25% away (a fill,
  a strummed figure) stands out at once and is gone as quickly;
- and the last change was at least REFRACTORY_S ago: DJ transitions are far apart, and a change the music does not
  confirm (the HMM wanders back) must not be called again and again.

A new tempo that jumps to 4/3 or 3/4 of itself from check to check still counts as held: a broken beat's kicks
repeat at three quarters of its beat, and both readings stand out. So after every change, from RECHECK_FROM_S to
RECHECK_UNTIL_S after it (the new track ever louder in the window), the called tempo is weighed against its
metrical relatives by a comb of the activation's autocorrelation (at every multiple of the beat up to
RECHECK_SPAN_S: the true beat repeats at the bar as well, a pulse at 4/3 of it mostly does not), and the HMM is
moved once more when a relative is clearly better.

On steady music the prediction leaves only noise and fills, which do not repeat at a tempo of their own. The caller
moves the HMM's probability to the new tempo (``BeatHMM.move_tempo``) and starts its readout again. Set on the
generated crossfades (``synth.TRANSITIONS``: the BPM follows 0.5-1.5 s after the midpoint) and the GTZAN development
set (it fires on one of its 151 excerpts, a classical one read at a wrong tempo before and after, and on no generated
track without a transition). CLEAR is what keeps it quiet on real music, where the left-over is rarely quiet for long
(QUIET and its gap were set on crossfades of other generated styles and tempi and add no call on the development
set); a crossfade between two drum-and-bass tracks stays under both, and there the HMM follows on its own.

Tried and not kept (21 generated crossfades, and calls on the 228 development excerpts and 24 generated tracks without
a transition, 3 there then and 2 since beat_hmm.ACF_GAIN_BEATING): the activation's own autocorrelation beside what is
left over (9 of 21 within 2 s instead of 10, 9 calls without a transition); a second, lower bar (0.25-0.3) for a new
tempo that beats the current one's autocorrelation outright (a swing-to-hip-hop crossfade called at 0.8 s instead of
2.1 s, but 10-14 calls without a transition); and choosing among the called tempo's metrical relatives at the call, by
a comb on what is left over (a broken beat's 4/3 reading scores 0.34 against its true tempo's 0.25 there, so the later
recheck stays the one that finds it). Later, with the holds below: calling the tempo 3/4 as fast when what is left over
repeats there at 0.6 of the candidate's value or more (techno to broken beat followed after 2.7 s instead of 4.4, no
other crossfade or call changed), but a swing track coming in scores 0.55 there against its true tempo, too close.

The hold asks for persistence more than for strength since it replaced six strong checks in a row (HOLD_CHECKS 6 at
SUPPORT = NEW_MIN): on the generated crossfades of ``synth.DEVELOPMENT_TRANSITIONS`` the BPM follows within 2 s on 6
of 12 instead of 4 (median 1.95 s instead of 2.14), on the held-out ones (never tuned on) on 3 of 6 as before but
after 1.86 s at the median instead of 2.84, between real tracks (below) on 10 of 40 instead of 7; the calls without a
transition stay the same 2 on the 228 development excerpts and none on the generated tracks. Around it: SUPPORT 0.25,
5 of 12; HOLD_CHECKS 6, 5 of 12 and 4 more calls on real excerpts (a blues and a jazz excerpt lose beats to them); 10,
4 of 12; STRONG_CHECKS 1, one more call; NEW_MIN 0.36, two more; a window of 3 beats, 21 calls on 16 excerpts.
Measured again since the beat HMM's floor and the beat's entry (December 2026): HOLD_CHECKS 6 or 4 leave the
development crossfades at 6 of 12 (median 1.9 s) and the real ones at 8 of 40 (4.79 s instead of 4.85), with 5 or 7
calls on the 228 development excerpts instead of 3. On the generated ones the call comes 1.2-2.7 s after the
midpoint, the hold's 0.7 s after what is left over first repeats at the new tempo with SUPPORT (on swing-104>swing-92
its value is 0.1 at the midpoint, 0.2 a second later, 0.32 two seconds later): the wait is for the evidence.

Between real tracks (``scripts/bench_crossfades.py``: 40 crossfades between steady development excerpts 10-20 BPM
apart) CLEAR is rarely met, so the detector seldom calls and the HMM walks to the new tempo in its small steps: the
BPM follows within 2 s on 10 of 40, after 5.7 s at the median. The long hold (LONG_CHECKS, without CLEAR or QUIET)
brings the median to 5.2 s (4.9 s on the 36 whose new track the clock reads right on its own), F after the midpoint
from 0.712 to 0.721, with no call more on the development excerpts or the generated tracks; at 24 checks (2.2 s) it
calls on 3 more excerpts (median 4.8 s), at 16 on 22 more (4.1 s). The trials in the rest of this paragraph were
measured before both holds, against 7 of 40 (6.4 s before beat_hmm.ACF_GAIN_BEATING, 5.6 s after it, with beat F
0.651 on the 228 development excerpts). Tried and not kept: no
CLEAR at all, 13 of 40 (3.6 s) but 72 calls on 64 of the 252 tracks without a transition and beat F 0.639 (CLEAR 0.4:
8 of 40, 0.645); HOLD_CHECKS 4 or 3, 9 of 40 and 12 or 14 of the 21 generated crossfades, beat F unchanged, but a call
on a generated techno track well after its crossfade (the BPM jumps to 148 for a beat); looser tempo steps in the HMM
(LAMBDA 100) while the left-over reaches 0.2, 9 of 40 (4.8 s), beat F 0.658 but steady metal and reggae excerpts lose
beats; a floor of probability under the tempi 5-25% away, 10 of 40 at 1e-8 (beat F 0.647) and 12 at 1e-5 (0.633, slow
blues the most), or only around the left-over's tempo (1e-3), 13 of 40 and 0.646. On the detector's traces none of
these separate a crossfade from a call on steady real music either: the band spectrum's change over the last 2-3 s,
the whole activation's autocorrelation at the new tempo over the last 2-3 s, a fall of the current tempo's, or the
HMM's own confidence in place of CLEAR (about 0.97 on most excerpts).

December 2026, tried and not kept: a second check beside this detector, the learned tempo score (tempo_score, as
beat_entry reads it) of the last 3 s every 16 hops, a tempo 5-25% away from the current one and no metrical relative
of it called when the score gives it DOMINANCE times the current tempo's probability for K checks in a row (none
within 4 s of a change). At 4 and 50: within 2 s on 9 of 40 (median 4.28 s, F after the midpoint 0.762 against
0.743), 10 calls on 9 development excerpts without a transition (6 classical); at 4 and 4, 9 of 40 (median 3.24 s,
0.776) but 63 calls on 54 excerpts and beat F 0.647 against 0.655. The score prefers the new track's tempo 10 times
or more only 1-4 s after the midpoint on most pairs: its 3 s window is still mostly the old track's before that.

On 10 of those 40 the BPM never followed (8 since beat_hmm.TEMPO_FLOOR, 9 since beat_hmm.OBS_K_EARLY, 10 since
beat_hmm.ENTRY_S): the clock kept the old track's tempo long after it was gone (on 7 of them the new track alone is
read right). The new track's own
evidence is ambiguous there: the autocorrelation of the last 5 s, and the learned first-tempo score read on them,
prefer a tempo near the old one or another relative as often as the new track's. Tried and not kept: a challenger (a
copy of the beat HMM moved to a candidate from what is left over, without CLEAR) that takes over when it predicts
the activation better (the likelihood ratio of the two over up to 1.5 s: crossfades and steady music reach the same
ratios, 13 false changes at 8 nats, none of the crossfades at 15); a move when the autocorrelation of the last 5 s
has preferred another tempo 5-30% away for 3 s (never met on these crossfades); the same with the learned score read
every 0.5 s after the first beat (median 5.2 s instead of 5.6, never on 11, no false change, but the bands read all
the time). Measured again since the beat's entry is heard (beat_entry; 8 of 40 within 2 s, 4.85 s at the median,
never on 7, beat F 0.6546 on the development excerpts): LONG_CHECKS 24, 8 of 40 (4.5 s) and beat F 0.6532; 16, 11
of 40 (3.9 s) but calls on 18 more excerpts and beat F 0.650 (a blues excerpt from 0.63 to 0.46). Read on every
3 s window of the mix, neither the learned score's best tempo nor a comb of the activation (its best phase at every
tempo) tells the new track apart from steady music: held for 1.5 s, B's tempo at 1.3 times the old one's comb comes
within 2 s of the midpoint on 4-8 of the 40, while 34 of the 137 steady non-classical excerpts show such a tempo
5-25% from their own (the learned score: 41-65 of them).
"""

from __future__ import annotations

import math
from collections import deque

import numpy as np

from metadj_bridge.inputs.band_tempo import oldest_first

#: Beats of activation the autocorrelations read, how many beats back predict the current one, and how often
#: (in hops) the detector looks.
WINDOW_BEATS = 4.0
PREDICT_BEATS = 2
EVERY = 8
#: The current tempo's autocorrelation must have reached CLEAR within the last CLEAR_MEMORY_S.
CLEAR = 0.7
CLEAR_MEMORY_S = 4.0
#: ... or what the last beats leave over was quiet: its strongest peak 5-25% away stayed under QUIET for at least
#: half of the QUIET_S before the last QUIET_GAP_S (the old track is predicted by its own last beats, even when its
#: beat-level repeat is weak: a broken beat, swing, drum and bass), and a new one now reaches NEW_MIN.
QUIET = 0.2
QUIET_S = 8.0
QUIET_GAP_S = 3.0
#: The new tempo: NEW_MIN_RATIO..NEW_MAX_RATIO away from the current one (relative, either way), with an
#: autocorrelation of what is left over of at least NEW_MIN and DOMINANCE times the current tempo's.
NEW_MIN_RATIO = 1.05
NEW_MAX_RATIO = 1.25
NEW_MIN = 0.4
DOMINANCE = 0.75
#: Checks in a row the new tempo must hold (within HOLD_TOLERANCE, relative) with at least SUPPORT before the change
#: is called, the last STRONG_CHECKS of them with NEW_MIN and DOMINANCE; LONG_CHECKS when the current tempo was not
#: clear and the left-over not quiet.
HOLD_CHECKS = 8
SUPPORT = 0.3
STRONG_CHECKS = 3
LONG_CHECKS = 32
HOLD_TOLERANCE = 0.03
#: No change is called within this long of the last one.
REFRACTORY_S = 8.0
#: Below this mean square of the activation there is nothing to hear (as the HMM's ACF_MIN_POWER).
MIN_POWER = 1e-4
#: After a change the new tempo is checked against its metrical relatives (RELATIVES times it) from RECHECK_FROM_S
#: to RECHECK_UNTIL_S after the call, on the last RECHECK_WINDOW_S of activation: the mean autocorrelation at every
#: multiple of a beat up to RECHECK_SPAN_S (a comb: the true beat repeats at the bar too, a pulse at 4/3 of it
#: mostly not). A relative whose comb beats the new tempo's by RECHECK_MARGIN for RECHECK_CHECKS checks in a row is
#: the tempo instead (a broken beat's kicks can repeat at 3/4 of its beat, which the first call may have heard).
RELATIVES = (4.0 / 3.0, 3.0 / 4.0, 3.0 / 2.0, 2.0 / 3.0)
RECHECK_FROM_S = 1.5
RECHECK_UNTIL_S = 10.0
RECHECK_WINDOW_S = 5.0
RECHECK_SPAN_S = 2.5
RECHECK_MARGIN = 0.1
RECHECK_CHECKS = 3


class TempoChangeDetector:
    """Feed ``push(activation)`` once per hop; when it returns True, ``check(current_period_hops, active)`` returns
    the new tempo's beat period in hops (fractional) when a tempo change is called, else None."""

    def __init__(self, fps: float, min_period: int, max_period: int) -> None:
        self.fps = fps
        self._min_period = max(2, min_period)
        self._max_period = max_period
        self._size = int(math.ceil((WINDOW_BEATS + PREDICT_BEATS) * NEW_MAX_RATIO * max_period)) + 4
        self._ring = np.zeros(self._size)
        self._pos = 0
        self._frames = 0
        #: The current tempo's autocorrelation at the checks of the last CLEAR_MEMORY_S.
        self._clear: deque[float] = deque(maxlen=max(1, int(round(CLEAR_MEMORY_S * fps / EVERY))))
        #: The strongest peak of what is left over at the checks of the last QUIET_S + QUIET_GAP_S.
        self._gap = int(round(QUIET_GAP_S * fps / EVERY))
        self._quiet_checks = int(round(QUIET_S * fps / EVERY))
        self._levels: deque[float] = deque(maxlen=self._quiet_checks + self._gap)
        self._run = 0
        self._strong = 0
        self._long = 0
        self._long_strong = 0
        self._candidate = 0.0
        self._last_change = -(10**9)
        self._refractory = int(round(REFRACTORY_S * fps))
        #: The metrical check after a change: hops from the call it runs between, its window, and its count.
        self._recheck = (int(round(RECHECK_FROM_S * fps)), int(round(RECHECK_UNTIL_S * fps)))
        self._recheck_n = min(self._size - 2, int(round(RECHECK_WINDOW_S * fps)))
        self._recheck_run = 0
        self._rechecked = True
        self._called = 0.0

    def reset(self) -> None:
        """Forget the current tempo's clarity and any candidate (after a change, or when the grid is lost)."""
        self._clear.clear()
        self._levels.clear()
        self._run = 0
        self._strong = 0
        self._long = 0
        self._long_strong = 0
        self._candidate = 0.0

    def push(self, a: float) -> bool:
        """One hop's activation; True when a check is due (every EVERY hops)."""
        self._ring[self._pos] = a
        self._pos = (self._pos + 1) % self._size
        self._frames += 1
        return self._frames % EVERY == 0

    def check(self, period: float, active: bool) -> float | None:
        """``period``: the current beat period in hops; ``active``: the grid is locked and not in a breakdown."""
        n = int(round(WINDOW_BEATS * period))
        since = self._frames - self._last_change
        if not self._rechecked and active and self._recheck[0] <= since <= self._recheck[1]:
            return self._metrical_check()
        if (not active or not self._min_period <= period <= self._max_period * 1.01
                or since < self._refractory):
            self.reset()
            return None
        if self._frames < n + PREDICT_BEATS * period + 2:
            return None
        found = self._evidence(period, n)
        if found is None:
            self._run = self._strong = self._long = self._long_strong = 0
            return None
        current, lag, value = found
        self._clear.append(current)
        before = list(self._levels)[: max(0, len(self._levels) - self._gap)]
        self._levels.append(value)
        quiet = 2 * len(before) >= self._quiet_checks and max(before) < QUIET
        if lag <= 0.0 or value < SUPPORT:
            self._run = self._strong = self._long = self._long_strong = 0
            return None
        held = self._candidate > 0.0 and any(
            abs(lag / self._candidate / r - 1.0) <= HOLD_TOLERANCE for r in (1.0, *RELATIVES[:2]))
        self._candidate = lag
        strong = value >= NEW_MIN and value >= DOMINANCE * current
        self._long, self._long_strong = _extend(self._long, self._long_strong, held, strong)
        if max(self._clear) >= CLEAR or quiet:
            self._run, self._strong = _extend(self._run, self._strong, held, strong)
        else:
            self._run = self._strong = 0
        if not ((self._run >= HOLD_CHECKS and self._strong >= STRONG_CHECKS)
                or (self._long >= LONG_CHECKS and self._long_strong >= STRONG_CHECKS)):
            return None
        self.changed(lag)
        return lag

    def changed(self, lag: float) -> None:
        """The tempo was moved to ``lag`` hops (called here, or a new beat heard in a breakdown): the refractory
        time and the metrical check start from now."""
        self.reset()
        self._last_change = self._frames
        self._rechecked, self._recheck_run, self._called = False, 0, lag

    def _metrical_check(self) -> float | None:
        """After a change: a metrical relative of the called tempo whose comb (see RELATIVES) is clearly the better one,
        held for RECHECK_CHECKS checks, else None."""
        n = self._recheck_n
        x = oldest_first(self._ring, self._pos)[-n:]
        x = x - x.mean()
        power = float(x @ x)
        if power < MIN_POWER * n:
            self._recheck_run = 0
            return None
        nfft = 1 << int(math.ceil(math.log2(2 * n)))
        spectrum = np.fft.rfft(x, nfft)
        acf = np.fft.irfft(spectrum.real**2 + spectrum.imag**2, nfft)[:n] / power * (n / (n - np.arange(n)))
        span = RECHECK_SPAN_S * self.fps

        def comb(lag: float) -> float:
            lags = lag * np.arange(1, max(1, int(span / lag)) + 1)
            return float(np.interp(lags, np.arange(n), acf).mean())

        period = self._called
        here = comb(period)
        best, best_score = 0.0, here + RECHECK_MARGIN
        for ratio in RELATIVES:
            lag = period / ratio
            if self._min_period <= lag <= self._max_period and (score := comb(lag)) >= best_score:
                best, best_score = lag, score
        if best == 0.0:
            self._recheck_run = 0
            return None
        self._recheck_run += 1
        if self._recheck_run < RECHECK_CHECKS:
            return None
        self._rechecked = True
        self._last_change = self._frames
        return best

    def other_beat(self, period: float, n: int) -> tuple[float, float, float]:
        """How well the last ``n`` hops of activation repeat at ``period`` hops, and the strongest repeat 5-25% away
        from it: (at period, that lag refined between whole hops or 0, its value), scaled like ``_evidence``'s."""
        n = min(n, self._frames, self._size)
        x = oldest_first(self._ring, self._pos)[-n:]
        found = self._repeats(x, x, period)
        return found if found is not None else (0.0, 0.0, 0.0)

    def _evidence(self, period: float, n: int) -> tuple[float, float, float] | None:
        """The autocorrelation at ``period`` of the last ``n`` hops, and the strongest peak of what the last beats
        do not predict 5-25% away from it: (current, its lag refined between whole hops or 0, its value)."""
        history = oldest_first(self._ring, self._pos)
        m = len(history)
        x = history[m - n :]
        where = np.arange(m - n, m, dtype=float)
        predicted = np.zeros(n)
        for k in range(1, PREDICT_BEATS + 1):
            back = where - k * period
            i = back.astype(int)
            frac = back - i
            predicted += (1.0 - frac) * history[i] + frac * history[i + 1]
        return self._repeats(x, x - predicted / PREDICT_BEATS, period)

    def _repeats(self, x: np.ndarray, left: np.ndarray, period: float) -> tuple[float, float, float] | None:
        """``x``'s autocorrelation at ``period`` and the strongest peak of ``left``'s 5-25% away; None in silence."""
        n = len(x)
        x = x - x.mean()
        left = left - left.mean()
        power = float(x @ x)
        if power < MIN_POWER * n:
            return None
        top = min(self._max_period, n - 2)
        # The activation's autocorrelation only at the current period (a few dot products), what is left over at
        # every lag (one FFT); both scaled to 1 at lag 0 and for the overlap (1 is a perfect repeat at every lag).
        lo = max(self._min_period, int(math.floor(period)) - 1)
        hi = min(top, int(math.ceil(period)) + 1)
        current = max((float(x[lag:] @ x[:-lag]) * n / (n - lag) / power for lag in range(lo, hi + 1)), default=0.0)
        nfft = 1 << int(math.ceil(math.log2(2 * n)))
        spectrum = np.fft.rfft(left, nfft)
        acf = np.fft.irfft(spectrum.real**2 + spectrum.imag**2, nfft)[: top + 2]
        rest = acf / power * (n / (n - np.arange(top + 2)))
        lags = np.concatenate([
            np.arange(max(self._min_period, int(math.ceil(period * lo_ratio))),
                      min(top, int(math.floor(period * hi_ratio))) + 1)
            for lo_ratio, hi_ratio in ((1.0 / NEW_MAX_RATIO, 1.0 / NEW_MIN_RATIO), (NEW_MIN_RATIO, NEW_MAX_RATIO))
        ])
        if len(lags) == 0:
            return current, 0.0, 0.0
        y0, y1, y2 = rest[lags - 1], rest[lags], rest[lags + 1]
        peaks = np.flatnonzero((y1 >= y0) & (y1 >= y2))
        if len(peaks) == 0:
            return current, 0.0, 0.0
        j = int(peaks[np.argmax(y1[peaks])])
        den = y0[j] - 2 * y1[j] + y2[j]
        lag = float(lags[j]) + (0.5 * (y0[j] - y2[j]) / den if den < 0 else 0.0)
        return current, lag, float(y1[j])


def _extend(run: int, strong_run: int, held: bool, strong: bool) -> tuple[int, int]:
    """One more check of a candidate tempo over SUPPORT: the run of it (1 when it is a new one), and the run of
    strong checks at its end."""
    return (run + 1 if held and run else 1), ((strong_run + 1 if held else 1) if strong else 0)
