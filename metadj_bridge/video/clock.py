"""The output clock: the camera's heartbeat, independent of when (or whether) Scope sends a frame.

Scope's frames arrive when the GPU finishes them, in bursts per chunk, or not at all while a session heals.
OBS and Resolume want a camera that ticks steadily. The clock owns one thread that ticks at ``fps`` from
absolute deadlines (``start + n / fps``, so no drift builds up). A frame pushed from the event loop wakes the
thread, which fits it into the output size at once (:mod:`~metadj_bridge.video.convert`), so the next tick only
hands it over: the added delay is the wait for the tick plus the sinks' work. Frames that arrive faster than
ticks replace each other (the newest wins); with nothing new a tick repeats the last picture, and once nothing
has come for ``slate_after`` seconds it shows a slate with the reason (:mod:`~metadj_bridge.video.slate`).
Every sink gets the same :class:`ShownFrame`.

After a stall (a slow sink, a suspended laptop) the clock skips the ticks it missed instead of sending them in a
burst, and counts them. Tick indices stay gapless: index n is the n-th frame shown.

Sinks: a sink whose ``open()`` raises :class:`VideoError` is logged once with its message and left out (no
camera backend on this machine: the recording and the preview go on). A sink whose ``show()`` raises is
kept, since a camera that an app released or a disk that filled may work again a second later: its first
failure is logged with a traceback, later ones at most once per ten seconds with a count.
"""

from __future__ import annotations

import asyncio
import logging
import statistics
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from fractions import Fraction
from typing import Any, Literal

import av
import numpy as np

from metadj_bridge.errors import RateLimitedWarning, VideoError
from metadj_bridge.lifecycle import AWAY_AFTER, Lifecycle, State
from metadj_bridge.video.convert import FrameFitter, check_output_size, i420_frame
from metadj_bridge.video.sink import FrameSink, ShownFrame
from metadj_bridge.video.slate import STOPPED, WAITING, slate_i420

log = logging.getLogger(__name__)

#: Convert times and delays kept for the medians in ``stats()`` (about ten seconds at 30 fps).
STATS_WINDOW = 300
#: How long ``start()`` waits for the sinks to open (a camera device can take a moment).
OPEN_TIMEOUT = 10.0
#: Highest rate the clock accepts. Cameras run at 30 or 60; the benchmark runs the clock flat out.
MAX_FPS = 1000.0


@dataclass(frozen=True, slots=True)
class ClockStats:
    """Figures for the status line."""

    frames_in: int
    frames_shown: int
    live: int
    repeats: int
    slates: int
    skipped_ticks: int
    #: Median time to fit a new frame into the output size, in ms (None before the first frame).
    convert_ms: float | None
    #: Median and 95th percentile time from a frame's arrival to the sinks, in ms.
    delay_ms: float | None
    delay_p95_ms: float | None
    sinks: tuple[str, ...]

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _percentile(values: Sequence[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


class OutputClock:
    """Shows the newest frame at a fixed rate on every sink, from a thread of its own."""

    def __init__(
        self,
        width: int,
        height: int,
        fps: float,
        sinks: Sequence[FrameSink],
        *,
        slate_after: float = 3.0,
        reason: Callable[[], str | None] | None = None,
    ) -> None:
        check_output_size(width, height)
        if not 0 < fps <= MAX_FPS:
            raise ValueError(f"output fps {fps} is outside the allowed range (more than 0, at most {MAX_FPS:g})")
        if slate_after < 0:
            raise ValueError(f"slate_after {slate_after} must be >= 0 seconds")
        self.width = width
        self.height = height
        self.fps = fps
        self.period = 1.0 / fps
        self.slate_after = slate_after
        self.time_base = 1 / Fraction(fps).limit_denominator(1001)
        self._sinks: list[FrameSink] = list(sinks)
        self._reason = reason
        self._life = Lifecycle("output clock")
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._opened = threading.Event()
        # Handed over by push(): the newest frame, when it came, and a running number.
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)  # push() wakes the clock thread to convert at once
        self._latest: av.VideoFrame | None = None
        self._latest_at = 0.0
        self._latest_seq = 0
        # Counters: written by the clock thread (frames_in by push), read by stats().
        self._frames_shown = 0
        self._live = 0
        self._repeats = 0
        self._slates = 0
        self._skipped = 0
        self._convert_s: deque[float] = deque(maxlen=STATS_WINDOW)
        self._delay_s: deque[float] = deque(maxlen=STATS_WINDOW)
        self._show_warnings: dict[int, RateLimitedWarning] = {}
        self._bad_frames = RateLimitedWarning(log, "frames from Scope that could not be converted")
        self._stalls = RateLimitedWarning(log, "video out: ticks missed while this computer was too busy (the last "
                                               "picture held on, a recording holds it over them)")

    # ------------------------------------------------------------------ event loop side

    @property
    def state(self) -> State:
        return self._life.state

    @property
    def sinks(self) -> tuple[FrameSink, ...]:
        """The sinks in use (after ``start()``: those that opened)."""
        return tuple(self._sinks)

    def push(self, frame: av.VideoFrame) -> None:
        """A new frame from Scope: the clock thread fits it at once and shows it at the next tick, unless a newer
        one replaces it first. Cheap (a lock and a notify) and thread-safe; call it from the frame listener."""
        now = time.monotonic()
        with self._wake:
            self._latest = frame
            self._latest_at = now
            self._latest_seq += 1
            self._wake.notify()

    async def start(self) -> None:
        """Open the sinks (in the clock's thread) and start ticking. Returns once the sinks are open."""
        if not self._life.begin():
            return
        self._thread = threading.Thread(target=self._run, name="video-output-clock", daemon=True)
        self._thread.start()
        await asyncio.to_thread(self._opened.wait, OPEN_TIMEOUT)

    async def aclose(self) -> None:
        """Stop ticking and close every sink (files are finished here). Safe to call twice."""
        if not self._life.end():
            return
        with self._wake:
            self._stop.set()
            self._wake.notify()
        thread, self._thread = self._thread, None
        if thread is not None:
            await asyncio.to_thread(thread.join)
            st = self.stats()
            log.info("video out closed: %d frames shown (%d live, %d repeats, %d slates), %d ticks missed while the "
                     "computer was too busy", st.frames_shown, st.live, st.repeats, st.slates, st.skipped_ticks)

    def stats(self) -> ClockStats:
        with self._lock:
            frames_in = self._latest_seq
        convert = list(self._convert_s)
        delay = list(self._delay_s)
        return ClockStats(
            frames_in=frames_in,
            frames_shown=self._frames_shown,
            live=self._live,
            repeats=self._repeats,
            slates=self._slates,
            skipped_ticks=self._skipped,
            convert_ms=statistics.median(convert) * 1000 if convert else None,
            delay_ms=statistics.median(delay) * 1000 if delay else None,
            delay_p95_ms=None if not delay else 1000 * (_percentile(delay, 0.95) or 0.0),
            sinks=tuple(s.name for s in self._sinks),
        )

    # ------------------------------------------------------------------ clock thread

    def _run(self) -> None:
        try:
            self._open_sinks()
        finally:
            self._opened.set()
        try:
            self._tick_loop()
        except Exception:
            log.exception("video output clock stopped unexpectedly")
        finally:
            self._close_sinks()

    def _open_sinks(self) -> None:
        opened: list[FrameSink] = []
        for sink in self._sinks:
            try:
                sink.open(self.width, self.height, self.fps)
            except VideoError as exc:
                log.warning("video output %s is off: %s", sink.name, exc)
                continue
            except Exception:
                log.exception("video output %s could not be opened", sink.name)
                continue
            opened.append(sink)
            self._show_warnings[id(sink)] = RateLimitedWarning(log, f"video output {sink.name} failed to show frames")
        self._sinks = opened
        log.info("video out at %dx%d, %g fps: %s", self.width, self.height, self.fps,
                 ", ".join(s.name for s in opened) or "no outputs")

    def _close_sinks(self) -> None:
        for sink in self._sinks:
            try:
                sink.close()
            except Exception:
                log.exception("video output %s did not close cleanly", sink.name)

    def _tick_loop(self) -> None:
        fitter = FrameFitter(self.width, self.height)
        picture: np.ndarray | None = None  # the last live picture, fitted (for repeats)
        picture_at = 0.0  # when the frame in it arrived
        fresh: av.VideoFrame | None = None  # converted as it arrived, shown at the next tick
        converted_seq = 0
        start = time.monotonic()
        tick = 0  # deadline number: start + tick * period
        index = 0
        while True:
            deadline = start + tick * self.period
            # Until the deadline, convert each new frame as it arrives: the tick then only has to send it.
            while True:
                with self._wake:
                    while not self._stop.is_set() and self._latest_seq == converted_seq:
                        remaining = deadline - time.monotonic()
                        if remaining <= 0:
                            break
                        self._wake.wait(remaining)
                    if self._stop.is_set():
                        return
                    frame, arrived, seq = self._latest, self._latest_at, self._latest_seq
                    self._latest = None  # the clock holds what it needs; let the decoder's frame go
                if frame is None or seq == converted_seq:
                    break
                t0 = time.perf_counter()
                try:
                    fitted = fitter.fit(frame)
                except Exception as exc:  # noqa: BLE001 - a frame that cannot be shown must not stop the camera
                    self._bad_frames.listener_failed(fitter.fit, exc)
                    converted_seq = seq  # that frame is skipped; the last good picture repeats
                    continue
                picture = fitted
                fresh = i420_frame(picture, self.width, self.height)
                self._convert_s.append(time.perf_counter() - t0)
                picture_at, converted_seq = arrived, seq
                if time.monotonic() >= deadline:
                    break  # frames coming faster than they convert must not hold the tick back
            now = time.monotonic()
            behind = int((now - deadline) / self.period)
            if behind > 0:  # missed whole ticks: skip them rather than burst
                self._skipped += behind
                tick += behind
                if now - deadline < AWAY_AFTER:
                    self._stalls.note(f"{behind} tick(s), {1000 * (now - deadline):.0f} ms late")
                else:  # not a busy computer: the bridge was frozen or asleep, which the run says once
                    log.debug("video out: %d ticks skipped over %.1f s away", behind, now - deadline)
            kind: Literal["live", "repeat", "slate"]
            if fresh is not None:
                shown_frame, kind, fresh = fresh, "live", None
                self._delay_s.append(now - picture_at)
            elif picture is not None and now - picture_at < self.slate_after:
                shown_frame, kind = i420_frame(picture, self.width, self.height), "repeat"
            else:
                slate = slate_i420(self._slate_text(picture is not None), self.width, self.height)
                shown_frame, kind = i420_frame(slate, self.width, self.height), "slate"
            shown_frame.pts = index
            shown_frame.time_base = self.time_base
            self._show(ShownFrame(shown_frame, index, now, kind, None if kind == "slate" else picture_at))
            self._count(kind)
            index += 1
            tick += 1

    def _slate_text(self, had_picture: bool) -> str:
        if self._reason is not None:
            try:
                reason = self._reason()
            except Exception:  # a broken reason must not stop the camera
                log.debug("slate reason failed", exc_info=True)
                reason = None
            if reason:
                return reason
        return STOPPED if had_picture else WAITING

    def _show(self, shown: ShownFrame) -> None:
        for sink in self._sinks:
            try:
                sink.show(shown)
            except Exception as exc:  # noqa: BLE001 - one failing output must not stop the others or the clock
                self._show_warnings[id(sink)].listener_failed(sink, exc)

    def _count(self, kind: str) -> None:
        self._frames_shown += 1
        if kind == "live":
            self._live += 1
        elif kind == "repeat":
            self._repeats += 1
        else:
            self._slates += 1
