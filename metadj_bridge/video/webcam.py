"""Avatar mode's picture source: a webcam or a video file, as the outgoing WebRTC track.

A :class:`VideoSource` owns the device (or file) for the whole run. Its own thread does the blocking reads,
scales and centre-crops every frame to the pipeline's size (fill, no bars) in I420, stamps it on a 90 kHz
clock and hands it to the event loop with ``call_soon_threadsafe``. The session builds a new track for every
WebRTC session (:meth:`VideoSource.make_track`); each track's ``recv()`` returns the newest captured frame,
so a slow encoder skips frames instead of falling behind. A video file loops at its own frame rate.

Which cameras exist and how a source setting names one is :mod:`metadj_bridge.video.cameras`.
"""

from __future__ import annotations

import asyncio
import errno
import fractions
import logging
import threading
import time
from dataclasses import dataclass

import av
import numpy as np
from aiortc import VideoStreamTrack
from aiortc.mediastreams import MediaStreamError

from metadj_bridge.errors import ClosedError, ConfigError, VideoInputError
from metadj_bridge.lifecycle import Lifecycle
from metadj_bridge.video.cameras import SourceSpec, describe_cameras, resolve_source

log = logging.getLogger(__name__)

#: The seed's avatar resolution ("Match webcam resolution to pipeline resolution (default: 320x576)").
DEFAULT_WIDTH, DEFAULT_HEIGHT = 320, 576
VIDEO_CLOCK_RATE = 90_000
VIDEO_TIME_BASE = fractions.Fraction(1, VIDEO_CLOCK_RATE)
_OPEN_TIMEOUT = 5.0
_READ_TIMEOUT = 5.0
#: How long ``aclose`` waits for a reader stuck in a blocking read; it exits by itself once the read returns.
_JOIN_TIMEOUT = 1.0


# ------------------------------------------------------------------------------------------------ geometry


@dataclass(frozen=True)
class FillCrop:
    """Scale the source to ``scaled`` (covering the target), then cut ``width`` x ``height`` at ``(x, y)``."""

    scaled_width: int
    scaled_height: int
    x: int
    y: int
    width: int
    height: int


def fill_crop(src_width: int, src_height: int, width: int, height: int) -> FillCrop:
    """The fill-and-centre-crop geometry from a source size to an even target size (I420 needs even offsets).

    1280x720 -> 320x576 scales to 1024x576 and keeps the middle 320 columns (x = 352): the sides go.
    """
    if width <= 0 or height <= 0 or width % 2 or height % 2:
        raise ConfigError(f"video size {width}x{height}: width and height must be even and positive")
    if src_width <= 0 or src_height <= 0:
        raise VideoInputError(f"the video source delivered a {src_width}x{src_height} frame")
    scale = max(width / src_width, height / src_height)
    # Round up to even so the scaled frame always covers the target (never a one-pixel bar).
    scaled_w = max(width, 2 * -(-round(src_width * scale, 6) // 2))
    scaled_h = max(height, 2 * -(-round(src_height * scale, 6) // 2))
    scaled_w, scaled_h = int(scaled_w), int(scaled_h)
    x = (scaled_w - width) // 2 // 2 * 2
    y = (scaled_h - height) // 2 // 2 * 2
    return FillCrop(scaled_w, scaled_h, x, y, width, height)


def fit_frame(frame: av.VideoFrame, width: int, height: int) -> av.VideoFrame:
    """``frame`` as I420 at ``width`` x ``height``: one swscale pass to the covering size, then a plane crop."""
    geo = fill_crop(frame.width, frame.height, width, height)
    scaled = frame.reformat(width=geo.scaled_width, height=geo.scaled_height, format="yuv420p")
    if (geo.scaled_width, geo.scaled_height) == (width, height):
        return scaled
    out = av.VideoFrame(width, height, "yuv420p")
    for i, (src, dst) in enumerate(zip(scaled.planes, out.planes, strict=True)):
        sub = 1 if i == 0 else 2
        w, h, x, y = width // sub, height // sub, geo.x // sub, geo.y // sub
        src_rows = np.frombuffer(memoryview(src), np.uint8).reshape(src.height, src.line_size)
        dst_rows = np.frombuffer(memoryview(dst), np.uint8).reshape(dst.height, dst.line_size)
        dst_rows[:h, :w] = src_rows[y : y + h, x : x + w]
    return out


def _open_error(spec: SourceSpec, exc: BaseException) -> VideoInputError:
    """A message a performer can act on, naming the cameras present."""
    code = getattr(exc, "errno", None)
    if isinstance(exc, av.InvalidDataError):
        why = "is not a video PyAV can read"
    elif code == errno.ENOENT:
        why = "does not exist"
    elif code == errno.EBUSY:
        why = "is busy: another program (OBS, a browser, a video call) is using it"
    elif code == errno.EACCES:
        why = "cannot be opened: permission denied (on Linux, join the 'video' group)"
    else:
        why = f"cannot be opened ({exc})"
    return VideoInputError(f"{spec.label} {why}; {describe_cameras()}")


# ------------------------------------------------------------------------------------------------ capture


@dataclass
class SourceStats:
    frames_captured: int = 0
    frames_sent: int = 0
    #: Median over the last frames, milliseconds: decode (read) and scale/crop/convert.
    decode_ms: float = 0.0
    convert_ms: float = 0.0
    #: Size of the source frames before scaling, e.g. (1280, 720).
    source_size: tuple[int, int] | None = None
    reopens: int = 0


class VideoSource:
    """A webcam or video file, read in a thread, delivered at ``width`` x ``height`` I420 to any number of tracks.

    ``start()`` (on the event loop), then ``await wait_first_frame(timeout)`` before starting a session,
    ``make_track()`` for each session, ``await aclose()`` at the end (safe twice; a closed capture refuses reuse).
    """

    def __init__(
        self,
        source: str | SourceSpec,
        width: int = DEFAULT_WIDTH,
        height: int = DEFAULT_HEIGHT,
        *,
        fps: float | None = 30.0,
        capture_size: tuple[int, int] | None = None,
    ) -> None:
        fill_crop(width, height, width, height)  # validates the size now, not in the thread
        self.spec = (
            source if isinstance(source, SourceSpec) else resolve_source(source, fps=fps, capture_size=capture_size)
        )
        self.width, self.height = width, height
        self.first_frame_at: float | None = None
        self._stats = SourceStats()
        self._decode_ms: list[float] = []
        self._convert_ms: list[float] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._latest: av.VideoFrame | None = None
        self._seq = 0
        self._waiters: set[asyncio.Future[None]] = set()
        self._failure: VideoInputError | None = None
        self._life = Lifecycle("video source")
        self._clock0 = 0.0
        self._last_pts = -1
        #: Frames handed on by the capture thread (its own count; the loop's counters live in ``_stats``).
        self._delivered = 0
        #: Why the source is being reopened, while it is (a webcam unplugged for a moment); None when it delivers.
        self._trouble: str | None = None

    # -------------------------------------------------------------- public

    def problems(self) -> list[str]:
        """What is wrong now, for the performer's status: the source while it is being reopened."""
        trouble = self._trouble
        return [f"{trouble}; trying again"] if trouble and self._life.running else []

    def start(self) -> None:
        """Open the source and start reading, in the capture thread; errors surface in ``wait_first_frame``."""
        if not self._life.begin():
            return
        self._loop = asyncio.get_running_loop()
        self._clock0 = time.monotonic()
        self._thread = threading.Thread(target=self._run, name=f"video-capture {self.spec.url}", daemon=True)
        self._thread.start()

    async def wait_first_frame(self, timeout: float = 5.0) -> None:  # noqa: ASYNC109 - the camera's grace, in the API
        """Return once the source has delivered a frame; VideoInputError (naming the cameras) otherwise."""
        if self._thread is None:
            self.start()
        if self._failure is None and self.first_frame_at is None:
            try:
                await asyncio.wait_for(self._first_or_failure(), timeout)
            except TimeoutError:
                raise VideoInputError(
                    f"no picture from {self.spec.label} within {timeout:g} s: is another program (OBS, a browser, "
                    f"a video call) using it? {describe_cameras()}"
                ) from None
        if self._failure is not None:
            raise self._failure

    def make_track(self) -> SourceTrack:
        """A new outgoing track for a new WebRTC session; the device stays open across sessions."""
        if self._life.closed:
            raise ClosedError("this video source is closed; make a new one")
        return SourceTrack(self)

    def stats(self) -> SourceStats:
        s = self._stats
        decode, convert = list(self._decode_ms), list(self._convert_ms)  # copies: the capture thread appends
        s.decode_ms = float(np.median(decode)) if decode else 0.0
        s.convert_ms = float(np.median(convert)) if convert else 0.0
        return SourceStats(**vars(s))

    async def next_frame(self, after: int) -> tuple[av.VideoFrame, int]:
        """The newest frame newer than sequence number ``after``, and its number; MediaStreamError once closed."""
        while self._seq <= after or self._latest is None:
            if self._life.closed:
                raise MediaStreamError
            fut = asyncio.get_running_loop().create_future()
            self._waiters.add(fut)
            try:
                await fut
            finally:
                self._waiters.discard(fut)
        if self._life.closed:
            raise MediaStreamError
        self._stats.frames_sent += 1
        return self._latest, self._seq

    async def aclose(self) -> None:
        if not self._life.end():
            return
        self._stop.set()
        self._wake_all()
        thread, self._thread = self._thread, None
        if thread is not None:
            await asyncio.to_thread(thread.join, _JOIN_TIMEOUT)
            if thread.is_alive():
                log.debug("%s is still in a blocking read; its reader stops when the read returns", self.spec.label)

    # -------------------------------------------------------------- event loop side

    async def _first_or_failure(self) -> None:
        while self.first_frame_at is None and self._failure is None:
            fut = asyncio.get_running_loop().create_future()
            self._waiters.add(fut)
            try:
                await fut
            finally:
                self._waiters.discard(fut)

    def _publish(self, frame: av.VideoFrame) -> None:
        if self._life.closed:
            return
        self._latest = frame
        self._seq += 1
        self._stats.frames_captured += 1
        if self.first_frame_at is None:
            self.first_frame_at = time.monotonic()
        self._wake_all()

    def _fail(self, exc: VideoInputError) -> None:
        self._failure = exc
        self._wake_all()

    def _wake_all(self) -> None:
        for fut in list(self._waiters):
            if not fut.done():
                fut.set_result(None)

    def _to_loop(self, fn: object, arg: object) -> bool:
        loop = self._loop
        if loop is None or self._stop.is_set():
            return False
        try:
            loop.call_soon_threadsafe(fn, arg)  # type: ignore[arg-type]
        except RuntimeError:  # the loop has closed under us
            self._stop.set()
            return False
        return True

    # -------------------------------------------------------------- capture thread

    def _run(self) -> None:
        delay = 0.5
        while not self._stop.is_set():
            try:
                with av.open(
                    self.spec.url,
                    format=self.spec.format,
                    options=self.spec.options,
                    timeout=(_OPEN_TIMEOUT, _READ_TIMEOUT),
                ) as container:
                    if not container.streams.video:
                        raise VideoInputError(f"{self.spec.label} has no video stream; {describe_cameras()}")
                    self._read(container)
                    delay = 0.5
                    if not self.spec.is_file:
                        raise VideoInputError(f"{self.spec.label} stopped delivering frames")
            except (av.FFmpegError, OSError, VideoInputError) as exc:
                error = exc if isinstance(exc, VideoInputError) else _open_error(self.spec, exc)
                if self._stop.is_set():
                    return
                if self._delivered == 0:  # never worked: the performer has to act (wait_first_frame raises)
                    self._to_loop(self._fail, error)
                    return
                # It worked before: a webcam unplugged for a moment. Keep trying; the track waits meanwhile.
                self._stats.reopens += 1
                self._trouble = str(error)
                log.warning("%s; trying again in %.1f s", error, delay, extra={"problem": "video source"})
                self._stop.wait(delay)
                delay = min(delay * 2, 5.0)
            except Exception:
                log.exception("%s: capture failed", self.spec.label)
                self._to_loop(self._fail, VideoInputError(f"{self.spec.label}: capture failed unexpectedly"))
                return

    def _read(self, container: av.container.InputContainer) -> None:
        """Read and hand on frames until stopped (a file loops at its own rate; a camera paces itself)."""
        stream = container.streams.video[0]
        # Frame threading holds frames back (latency); a live camera decodes slice-threaded only.
        stream.thread_type = "AUTO" if self.spec.is_file else "SLICE"
        rate = stream.average_rate or stream.guessed_rate or 30
        period = 1.0 / float(rate)
        start = time.monotonic()
        offset = 0.0
        while not self._stop.is_set():
            origin: float | None = None
            rel = -period
            got = 0
            frames = container.decode(stream)
            while not self._stop.is_set():
                t_read = time.perf_counter()
                try:
                    frame = next(frames)
                except StopIteration:
                    break
                decode_ms = (time.perf_counter() - t_read) * 1000
                got += 1
                if self.spec.is_file:
                    t = frame.time if frame.time is not None else (origin or 0.0) + got * period
                    origin = t if origin is None else origin
                    rel = t - origin
                    wait = start + offset + rel - time.monotonic()
                    if wait > 0:
                        self._stop.wait(wait)
                    elif wait < -1.0:  # far behind (a stall): restart the cadence instead of rushing
                        start -= wait
                self._deliver(frame, decode_ms)
            if not self.spec.is_file or self._stop.is_set():
                return
            if got == 0:
                raise VideoInputError(f"{self.spec.label} has no frames that can be decoded")
            offset += rel + period
            container.seek(0)

    def _deliver(self, frame: av.VideoFrame, decode_ms: float) -> None:
        t0 = time.perf_counter()
        out = fit_frame(frame, self.width, self.height)
        now = time.monotonic()
        convert_ms = (time.perf_counter() - t0) * 1000
        pts = max(int((now - self._clock0) * VIDEO_CLOCK_RATE), self._last_pts + 1)
        self._last_pts = pts
        out.pts, out.time_base = pts, VIDEO_TIME_BASE
        for samples, value in ((self._decode_ms, decode_ms), (self._convert_ms, convert_ms)):
            samples.append(value)
            if len(samples) > 120:
                del samples[:60]
        self._stats.source_size = (frame.width, frame.height)
        self._delivered += 1
        self._trouble = None
        self._to_loop(self._publish, out)


class SourceTrack(VideoStreamTrack):
    """The outgoing track of one WebRTC session: each ``recv()`` is the newest captured frame, never one twice."""

    def __init__(self, source: VideoSource) -> None:
        super().__init__()
        self._source = source
        self._seq = 0

    async def recv(self) -> av.VideoFrame:
        if self.readyState != "live":
            raise MediaStreamError
        frame, self._seq = await self._source.next_frame(self._seq)
        return frame

