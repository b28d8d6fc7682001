"""MIDI clock to tempo: a pure estimator fed with the arrival times of clock bytes.

MIDI clock sends 24 ticks per quarter note (0xF8) plus Start (0xFA), Stop (0xFC) and Continue (0xFB). The
ticks arrive with jitter (USB polling, the sender's own timer, the OS), so single intervals are noisy: at
120 BPM a tick is 20.8 ms and +-1 ms of jitter is +-5% on one interval. Scope's own MIDI clock smooths single
intervals with an EMA of 0.15 (scope-api.md §9), which still wanders by about a BPM. Here the tempo is the
slope of a least-squares line through the last ``window`` tick times (96 ticks = 4 beats): the error of a
slope falls with the cube of the window, so the same jitter gives hundredths of a BPM.

* A late tick (a USB hiccup) is an outlier against the line and is left out of the fit.
* A real tempo change shows as several outliers in a row on the same side of the line: the window is then
  restarted from those ticks, so the estimate follows within a few ticks instead of a whole window.
* A lost tick (a missed JACK cycle, a dropped USB or network packet) shows as ticks a whole tick period late on
  the line: once ``lost_confirm`` ticks in a row are late by the same whole number of periods (at most
  ``lost_max``), the first of them straight after a tick on the line, they are counted that many ticks further on,
  and the tempo and the beat position go on unmoved. (A tempo that changes moves the ticks away from the line a
  little more each tick: it passes a whole period late, but never from the line in one step and stays there.)
  Counted as they came, every tick after the loss looked a period late, and the window restarted on them as a
  tempo change: up to 13 BPM off at 128 BPM while the window filled again, and the beat a tick behind for good.
* A gap of more than ``gap_s`` (the sender stopped its clock) forgets the window.
* A run of ``burst_ticks`` ticks each closer to the last than half a tick at ``max_bpm`` is no tempo but a backlog:
  the ticks a frozen process (or one whose computer slept) finds queued when it wakes, handed over at once. They
  count for the song position; the window starts again with the first tick that comes at a real pace.

No clocks, threads or ports in here: times come in as arguments (``time.monotonic()`` at arrival).
"""

from __future__ import annotations

import itertools
import math
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from metadj_bridge.signals import TempoReading

PPQN = 24


@dataclass(frozen=True, slots=True)
class MidiClockConfig:
    #: Ticks in the regression window (96 = 4 beats).
    window: int = 96
    #: Ticks needed before a tempo is reported.
    min_ticks: int = 6
    #: A tick further than this from the line (and more than ``outlier_sigmas`` residual deviations) is an outlier.
    outlier_s: float = 0.003
    outlier_sigmas: float = 4.0
    #: This many outliers in a row, all on the same side, mean the tempo really changed.
    change_run: int = 6
    #: No tick for this long: the clock stopped; start the estimate afresh.
    gap_s: float = 0.5
    #: Reported tempo is clamped to this range (MIDI clock from 20 to 400 BPM is plausible).
    min_bpm: float = 20.0
    max_bpm: float = 400.0
    #: This many ticks in a row, each within half a tick at ``max_bpm`` of the last, are a backlog, not a tempo (a
    #: USB frame may bring two or three together).
    burst_ticks: int = 4
    #: Ticks lost on the way: this many in a row late by the same whole number of tick periods, at most ``lost_max``.
    lost_confirm: int = 2
    lost_max: int = 3

    def __post_init__(self) -> None:
        if self.window < 8:
            raise ValueError(f"midi clock window: {self.window} ticks is too short (at least 8)")
        if not 2 <= self.min_ticks <= self.window:
            raise ValueError(f"midi clock min_ticks: {self.min_ticks} must be between 2 and the window ({self.window})")
        if self.burst_ticks < 2:
            raise ValueError(f"midi clock burst_ticks: {self.burst_ticks} must be at least 2")
        if self.lost_confirm < 2 or self.lost_max < 1:
            raise ValueError(f"midi clock lost_confirm ({self.lost_confirm}) must be at least 2 and lost_max "
                             f"({self.lost_max}) at least 1")


class MidiClockTempo:
    """Tempo, beat position and transport state from MIDI clock messages."""

    def __init__(self, config: MidiClockConfig | None = None) -> None:
        self.config = config or MidiClockConfig()
        # (tick number, arrival time) of the ticks in the fit; tick numbers never repeat.
        self._ticks: deque[tuple[int, float]] = deque(maxlen=self.config.window)
        self._pending: list[tuple[int, float]] = []  # consecutive outliers, all on one side
        self._pending_sign = 0
        self._lost: list[tuple[int, float]] = []  # consecutive ticks late by ``_lost_k`` whole periods
        self._lost_k = 0
        self._n = 0  # ticks seen since the window began
        self._period: float | None = None  # seconds per tick
        self._anchor: tuple[int, float] | None = None  # (tick number, fitted time) of the newest tick
        self._last_t: float | None = None
        self._bunched = 0  # ticks in a row closer than half a tick at max_bpm
        self._resid_sigma = 0.0
        #: Ticks counted by the transport since Start (a Continue keeps counting); None before any tick.
        self._song_tick: int | None = None
        self._song_anchor_n = 0  # tick number whose song position is ``_song_tick``
        self.playing = True
        self._started = False
        self.ticks = 0
        self.outliers = 0
        self.tempo_changes = 0
        #: Ticks counted as lost on the way (see the module's docstring).
        self.lost_ticks = 0

    # ------------------------------------------------------------------ transport

    def start(self, t: float) -> None:
        """Start: the next tick is the first tick of beat 0."""
        self.playing = True
        self._started = True
        self._song_tick = -1
        self._song_anchor_n = self._n

    def stop(self, t: float) -> None:
        """Stop: ticks may keep coming (the tempo stays known), the beat position holds."""
        self.playing = False

    def continue_(self, t: float) -> None:
        """Continue: the beat position resumes where it stopped."""
        self.playing = True
        if self._song_tick is None:
            self._song_tick = -1
            self._song_anchor_n = self._n

    # ------------------------------------------------------------------ ticks

    def tick(self, t: float) -> None:
        cfg = self.config
        self.ticks += 1
        close = self._last_t is not None and t - self._last_t < 30.0 / (cfg.max_bpm * PPQN)
        self._bunched = self._bunched + 1 if close else 0
        if self._last_t is not None and t - self._last_t > cfg.gap_s and self._ticks:
            self._forget()
        self._last_t = t
        n = self._n
        self._n += 1
        if self._song_tick is None:
            self._song_tick = -1
            self._song_anchor_n = n
        if self.playing:
            self._song_tick += 1
            self._song_anchor_n = n
        # Stopped: the song position stays where it was (the anchor moves with nothing).
        if self._bunched >= cfg.burst_ticks:  # a backlog handed over at once: no tempo in it
            self._forget()
            return

        if self._period is None or len(self._ticks) < cfg.min_ticks:
            self._ticks.append((n, t))
            self._fit()
            return
        assert self._anchor is not None
        predicted = self._anchor[1] + (n - self._anchor[0]) * self._period
        resid = t - predicted
        tolerance = max(cfg.outlier_s, cfg.outlier_sigmas * self._resid_sigma)
        if abs(resid) <= tolerance:
            self._pending.clear()
            self._pending_sign = 0
            self._lost, self._lost_k = [], 0
            self._ticks.append((n, t))
            self._fit()
            return
        self.outliers += 1
        sign = 1 if resid > 0 else -1
        if sign != self._pending_sign:
            self._pending = []
            self._pending_sign = sign
        self._pending.append((n, t))
        if len(self._pending) >= cfg.change_run:
            # A sustained deviation: the tempo changed. Keep only the ticks that show the new tempo, plus
            # the last one before them, which is where the change began.
            self.tempo_changes += 1
            keep = [self._ticks[-1]] if self._ticks else []
            self._ticks.clear()
            self._ticks.extend(keep + self._pending)
            self._pending = []
            self._pending_sign = 0
            self._lost, self._lost_k = [], 0
            self._fit()
            return
        # Not (yet) a tempo change: were ticks lost on the way? Then the grid jumps a whole number of periods at
        # once, from a tick on the line, and stays there (a tempo moves away from the line a little more each tick).
        lost = round(resid / self._period) if math.isfinite(resid) else 0
        fits = 1 <= lost <= cfg.lost_max and abs(resid - lost * self._period) <= tolerance <= self._period / 3.0
        if fits and (lost == self._lost_k or len(self._pending) == 1):
            if lost != self._lost_k:
                self._lost, self._lost_k = [], lost
            self._lost.append((n, t))
            if len(self._lost) >= cfg.lost_confirm:
                self._count_lost(lost)
        else:
            self._lost, self._lost_k = [], 0

    def _count_lost(self, lost: int) -> None:
        """``lost`` ticks went missing before the ones in ``_lost``: they, the ticks after them and the song position
        count that many further on."""
        self.lost_ticks += lost
        self._n += lost
        if self.playing and self._song_tick is not None:
            self._song_tick += lost
            self._song_anchor_n = self._n - 1
        self._ticks.extend((n + lost, t) for n, t in self._lost)
        self._lost, self._lost_k = [], 0
        self._pending = []
        self._pending_sign = 0
        self._fit()

    def _forget(self) -> None:
        self._ticks.clear()
        self._pending = []
        self._pending_sign = 0
        self._lost, self._lost_k = [], 0
        self._period = None
        self._anchor = None
        self._resid_sigma = 0.0

    def _fit(self) -> None:
        ticks = self._ticks
        count = len(ticks)
        if count < 2:
            return
        ns = [float(n) for n, _ in ticks]
        ts = [t for _, t in ticks]
        mean_n = sum(ns) / count
        mean_t = sum(ts) / count
        sxx = sum((x - mean_n) ** 2 for x in ns)
        if sxx <= 0.0:
            return
        sxy = sum((x - mean_n) * (y - mean_t) for x, y in zip(ns, ts, strict=True))
        slope = sxy / sxx
        if slope <= 0.0:
            return
        intercept = mean_t - slope * mean_n
        last_n = ticks[-1][0]
        self._period = slope
        self._anchor = (last_n, intercept + slope * last_n)
        if count >= 3:
            sq = sum((y - (intercept + slope * x)) ** 2 for x, y in zip(ns, ts, strict=True))
            self._resid_sigma = (sq / (count - 2)) ** 0.5

    # ------------------------------------------------------------------ readings

    @property
    def bpm(self) -> float | None:
        """Tempo in BPM, or None until ``min_ticks`` ticks have arrived."""
        if self._period is None or len(self._ticks) < self.config.min_ticks:
            return None
        bpm = 60.0 / (PPQN * self._period)
        return min(self.config.max_bpm, max(self.config.min_bpm, bpm))

    def beat(self, t: float | None = None) -> float | None:
        """Beat position (quarter notes since Start) at ``t`` (default: the newest tick)."""
        if self._song_tick is None or self._song_tick < 0:
            return None
        position = self._song_tick / PPQN
        if t is None or not self.playing or self._period is None or self._anchor is None:
            return position
        # Extrapolate from where the line puts the newest tick; never further than one tick (a clock that
        # stalls must not run the beat away).
        ahead = (t - self._anchor[1]) / self._period
        return position + min(max(ahead, 0.0), 1.0) / PPQN

    def reading(self, t: float | None = None) -> TempoReading | None:
        """What the BeatClock's arbiter gets; None until the tempo is known."""
        bpm = self.bpm
        if bpm is None or self._last_t is None:
            return None
        at = self._last_t if t is None else t
        return TempoReading(source="midi_clock", bpm=bpm, t=at, beat=self.beat(at), playing=self.playing)


def ema_bpm(intervals: Iterable[float], alpha: float = 0.15, ppqn: int = PPQN) -> list[float]:
    """BPM after each tick interval, smoothed like Scope's MIDI clock (an EMA of single intervals).

    For comparison in tests and benchmarks only; :class:`MidiClockTempo` is what the bridge uses.
    """
    out: list[float] = []
    smoothed: float | None = None
    for interval in intervals:
        if interval <= 0.0:
            continue
        smoothed = interval if smoothed is None else alpha * interval + (1.0 - alpha) * smoothed
        out.append(60.0 / (ppqn * smoothed))
    return out


def intervals_of(times: Sequence[float]) -> list[float]:
    return [b - a for a, b in itertools.pairwise(times)]
