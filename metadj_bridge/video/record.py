"""Recording: exactly what the camera showed, frame for frame, with the music heard meanwhile, into an MP4 or MKV.

The output clock hands every tick to :meth:`RecordingSink.show`, which only puts the frame on a bounded queue.
An encoder thread of the sink's own takes frames off the queue, encodes them (H.264 through PyAV's
``libx264`` where it exists, MPEG-4 Part 2 otherwise) and muxes them. Each frame's ``pts`` is its tick's place
on the clock's grid since the recording began (:class:`TickGrid`): the tick number, plus the ticks the clock
skipped after a stall, so the file lasts exactly as long as the show did, a frame repeated by the clock is
repeated in the file, and the picture keeps time with the music.

With :meth:`RecordingSink.expect_audio` (before open) the file gets an audio track, and
:meth:`RecordingSink.attach_audio` hands it the audio as it is heard; the same encoder thread places each block
beside the frame shown when it was heard and encodes it (:mod:`~metadj_bridge.video.record_audio`). Without an
attached feed the track is silent.

If the encoder falls so far behind that the queue is full, the newest frame is dropped, counted and logged
(rate-limited); the gap in the ``pts`` keeps the picture in time with the show. :meth:`RecordingSink.close`
waits for the queue to drain, flushes the encoder and closes the file, so it is playable.

A recording never overwrites a file: if ``show.mp4`` exists the recording goes to ``show-1.mp4``, then
``show-2.mp4`` and so on (last night's recording is worth more than a tidy name). The name actually used is
:attr:`RecordingSink.path` once the sink is open, and it is logged.
"""

from __future__ import annotations

import logging
import math
import os
import queue
import threading
import time
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
from av.container import OutputContainer
from av.video.stream import VideoStream

from metadj_bridge.errors import VideoOutputError, reason
from metadj_bridge.video.record_audio import AudioFeed, AudioTrack, open_audio_track
from metadj_bridge.video.sink import ShownFrame

logger = logging.getLogger(__name__)

#: File extension (lower case) -> PyAV/FFmpeg container format.
CONTAINERS: dict[str, str] = {".mp4": "mp4", ".mkv": "matroska"}

#: Encoders a recording may use, best first.
CODECS = ("libx264", "mpeg4")

#: x264's speed presets, fastest first. ``veryfast`` keeps up at 1024x576 on two cores; a 1080p recording on
#: such a machine needs ``superfast`` or ``ultrafast`` (bigger files) to keep up without dropping frames.
PRESETS = ("ultrafast", "superfast", "veryfast", "faster", "fast", "medium")

#: At most one "dropped frames" warning in this many seconds.
DROP_LOG_INTERVAL = 5.0

#: Ends the encoder thread's queue.
_END = object()


@dataclass(frozen=True, slots=True)
class RecordingStats:
    """What the recording has done so far."""

    #: Frames handed to the sink by the clock.
    shown: int
    #: Frames encoded into the file.
    written: int
    #: Frames dropped because the encoder fell behind (the queue was full).
    dropped: int
    #: Frames waiting for the encoder.
    queued: int
    #: Codec in use ("libx264" or "mpeg4"); empty before open.
    codec: str
    #: Mean time to encode one frame, in milliseconds (0 before the first frame).
    encode_ms: float
    #: The audio track's codec ("aac" or "libopus"); empty without one.
    audio_codec: str = ""
    #: Seconds of audio in the file so far.
    audio_seconds: float = 0.0
    #: Seconds of silence written where the audio had gaps, and of audio cut where it overlapped or ran ahead.
    audio_filled: float = 0.0
    audio_cut: float = 0.0


def pick_codec() -> str:
    """H.264 (``libx264``) if this PyAV build has an encoder for it, else MPEG-4 Part 2 (always built in)."""
    try:
        av.codec.Codec("libx264", "w")
    except Exception:  # noqa: BLE001 - PyAV raises different errors per version for a missing codec
        return "mpeg4"
    return "libx264"


def free_path(path: Path) -> Path:
    """``path`` itself if nothing is there, else the first of ``name-1.ext``, ``name-2.ext``, ... that is free."""
    if not path.exists():
        return path
    n = 1
    while True:
        candidate = path.with_name(f"{path.stem}-{n}{path.suffix}")
        if not candidate.exists():
            return candidate
        n += 1


class TickGrid:
    """Each tick's place in the file, in frames, from its ``ShownFrame.t``.

    The clock ticks on a grid (``start + n / fps``) and shows a tick at most one period after its deadline; after
    a stall it skips the ticks it missed, and its indices then run on without a gap while its times jump. The
    grid puts every tick at ``floor((t - origin) * fps)``, never on or before the previous one, with ``origin``
    the earliest grid start the ticks seen so far allow. That slot is never later than the tick's own deadline,
    so a late tick never takes the next one's place, and a skip leaves a gap (the previous frame shows on).
    """

    def __init__(self, fps: float) -> None:
        self.fps = fps
        #: ``time.monotonic()`` of file time 0 (the first tick's time until a tick shows it was earlier).
        self.origin: float | None = None
        self._last = -1

    def place(self, t: float) -> int:
        if self.origin is None:
            self.origin, self._last = t, 0
            return 0
        slot = max(self._last + 1, math.floor((t - self.origin) * self.fps))
        self.origin = min(self.origin, t - slot / self.fps)
        self._last = slot
        return slot


class RecordingSink:
    """A :class:`~metadj_bridge.video.sink.FrameSink` that records every shown frame to an MP4 or MKV file.

    ``path`` must end in ``.mp4`` or ``.mkv`` (otherwise :class:`VideoOutputError`, raised here so a bad
    ``--output record:...`` is refused before anything starts). ``queue_seconds`` is how much the encoder may
    fall behind (in seconds of frames) before frames are dropped. ``codec`` forces one of :data:`CODECS`;
    by default :func:`pick_codec` chooses in :meth:`open`. ``preset`` is x264's speed preset (one of
    :data:`PRESETS`; ignored by ``mpeg4``). ``audio=True`` is :meth:`expect_audio`.
    """

    name = "record"

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        queue_seconds: float = 1.0,
        codec: str | None = None,
        preset: str = "veryfast",
        audio: bool = False,
    ) -> None:
        self._requested = Path(path).expanduser()
        suffix = self._requested.suffix.lower()
        if suffix not in CONTAINERS:
            allowed = " or ".join(CONTAINERS)
            raise VideoOutputError(
                f"recording {str(self._requested)!r}: the file must end in {allowed} (got {suffix or 'no extension'!r})"
            )
        self._format = CONTAINERS[suffix]
        if codec is not None and codec not in CODECS:
            raise VideoOutputError(f"recording codec {codec!r} is not one of {', '.join(CODECS)}")
        self._forced_codec = codec
        if preset not in PRESETS:
            raise VideoOutputError(f"recording preset {preset!r} is not one of {', '.join(PRESETS)}")
        self._preset = preset
        self._queue_seconds = queue_seconds
        self._path: Path | None = None
        self._container: OutputContainer | None = None
        self._stream: VideoStream | None = None
        self._queue: queue.Queue[Any] = queue.Queue()
        self._thread: threading.Thread | None = None
        self._size = (0, 0)
        self._codec = ""
        self._grid: TickGrid | None = None
        self._end_pts = 0
        self._audio_wanted = audio
        self._audio: AudioTrack | None = None
        self._feed: AudioFeed | None = None
        self._shown = 0
        self._written = 0
        self._dropped = 0
        self._dropped_logged = 0
        self._last_drop_log = float("-inf")
        self._encode_seconds = 0.0
        self._failed = False
        #: Why the recording stopped writing (a full disk, a file that cannot grow); None while it writes.
        self.failure: VideoOutputError | None = None
        self._closed = False
        self._lock = threading.Lock()

    @property
    def path(self) -> Path:
        """The file being written: the path asked for, or ``name-N.ext`` if that existed. Known after open."""
        return self._path if self._path is not None else self._requested

    def stats(self) -> RecordingStats:
        return RecordingStats(
            shown=self._shown,
            written=self._written,
            dropped=self._dropped,
            queued=self._queue.qsize(),
            codec=self._codec,
            encode_ms=1000.0 * self._encode_seconds / self._written if self._written else 0.0,
            **(self._audio.stats() if self._audio is not None else {}),
        )

    def expect_audio(self) -> None:
        """Give the file an audio track (call before :meth:`open`): silent until :meth:`attach_audio`."""
        if self._container is not None or self._closed:
            raise VideoOutputError(f"recording {str(self.path)!r}: an audio track must be asked for before it opens")
        self._audio_wanted = True

    def attach_audio(self, feed: AudioFeed) -> None:
        """The music heard from now on goes into the file's audio track (any thread, any time while recording).
        Before :meth:`open` this also asks for the track. The sink closes ``feed`` when it closes."""
        with self._lock:  # close() marks the sink closed under the same lock: no feed is attached after it
            refused = self._closed or (self._container is not None and self._audio is None)
            replaced = None
            if not refused:
                self._audio_wanted = True
                replaced, self._feed = self._feed, feed
        if replaced is not None:
            replaced.close()
        if refused:
            feed.close()
            if not self._closed and not self._audio_wanted:
                raise VideoOutputError(f"recording {str(self.path)!r} was opened without an audio track")

    def open(self, width: int, height: int, fps: float) -> None:
        if self._closed:
            raise VideoOutputError(f"recording {str(self.path)!r} is closed and cannot be opened again")
        if self._container is not None:
            raise VideoOutputError(f"recording {str(self.path)!r} is already open")
        if width <= 0 or height <= 0 or width % 2 or height % 2:
            raise VideoOutputError(f"recording: {width}x{height} is not a size H.264 can hold (even, positive)")
        if fps <= 0:
            raise VideoOutputError(f"recording: {fps!r} is not a frame rate (frames per second > 0)")
        path = self._claim()
        rate = Fraction(fps).limit_denominator(1001)
        codec = self._forced_codec or pick_codec()
        try:
            container = av.open(str(path), mode="w", format=self._format)
        except (OSError, av.FFmpegError) as exc:
            _remove_quietly(path)
            raise VideoOutputError(f"cannot record to {str(path)!r}: {reason(exc)}") from exc
        try:
            options = {"preset": self._preset, "tune": "zerolatency"} if codec == "libx264" else {}
            stream = container.add_stream(codec, rate=rate, options=options)
            assert isinstance(stream, VideoStream)
            stream.width, stream.height = width, height
            stream.pix_fmt = "yuv420p"
            stream.time_base = 1 / rate
            stream.codec_context.time_base = 1 / rate
            if codec == "mpeg4":
                # mpeg4's default 200 kb/s smears a 1080p show; aim for roughly what x264 veryfast gives.
                stream.bit_rate = max(2_000_000, int(width * height * float(rate) * 0.1))
            stream.codec_context.open()
        except (OSError, ValueError, av.FFmpegError) as exc:
            container.close()
            _remove_quietly(path)
            raise VideoOutputError(f"cannot record to {str(path)!r} with {codec}: {reason(exc)}") from exc
        if self._audio_wanted:
            self._audio = open_audio_track(container, path)
        self._path, self._container, self._stream = path, container, stream
        self._size, self._codec = (width, height), codec
        self._queue = queue.Queue(maxsize=max(2, round(float(rate) * self._queue_seconds)))
        self._thread = threading.Thread(
            target=self._run_encoder, args=(container, stream), name=f"record-{path.name}", daemon=True
        )
        self._thread.start()
        logger.info(
            "recording %dx%d at %g fps to %s (%s, %s%s%s)", width, height, float(rate), path, self._format, codec,
            f" {self._preset}" if codec == "libx264" else "",
            f", sound {self._audio.codec}" if self._audio is not None else "",
        )

    def show(self, shown: ShownFrame) -> None:
        if self._container is None or self._closed or self._failed:
            return
        if self._grid is None:
            assert self._stream is not None
            self._grid = TickGrid(float(self._stream.codec_context.framerate or 30))
        pts = self._grid.place(shown.t)
        self._end_pts = pts + 1
        self._shown += 1
        try:
            # The pts goes with the frame: the clock may show the same frame object again with another pts.
            self._queue.put_nowait((shown.frame, pts, self._grid.origin))
        except queue.Full:
            self._dropped += 1
            self._log_drops()

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
        if self._thread is not None:
            self._queue.put(_END)
            self._thread.join()
        if self._dropped > self._dropped_logged:
            self._last_drop_log = float("-inf")
            self._log_drops()
        feed, self._feed = self._feed, None
        container, stream = self._container, self._stream
        if container is None or stream is None:
            if feed is not None:
                feed.close()
            return
        self._container = None
        seconds = self._end_pts / float(stream.codec_context.framerate or 1)
        try:
            if not self._failed:
                for packet in stream.encode(None):
                    container.mux(packet)
            if self._audio is not None:  # the last sound heard, then silence to the end of the picture
                self._audio.finish(feed, self._grid.origin if self._grid else None, seconds, ok=not self._failed)
            elif feed is not None:
                feed.close()
            container.close()
        except (OSError, av.FFmpegError) as exc:  # after a failure already said, the same error again
            (logger.debug if self.failure is not None else logger.error)(
                "recording %s could not be finished: %s", self._path, reason(exc))
        else:
            logger.info(
                "recording %s closed: %d frames (%.1f s), %d dropped%s", self._path, self._written, seconds,
                self._dropped, f", {self._audio.seconds:.1f} s of sound" if self._audio is not None else "",
            )

    def _claim(self) -> Path:
        """Create the file (never an existing one) so that two recordings cannot pick the same free name."""
        while True:
            path = self._requested
            try:
                path = free_path(self._requested)  # (stat itself refuses a name too long, or with a NUL byte)
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            except FileExistsError:
                continue
            except (OSError, ValueError) as exc:
                raise VideoOutputError(f"cannot record to {str(path)!r}: {reason(exc)}") from exc
            os.close(fd)
            if path != self._requested:
                logger.warning("%s exists; recording to %s instead", self._requested, path)
            return path

    def _run_encoder(self, container: OutputContainer, stream: VideoStream) -> None:
        width, height = self._size
        while True:
            item = self._queue.get()
            if item is _END:
                return
            if self._failed:
                continue  # keep draining so show() and close() never wait on a dead encoder
            frame, pts, origin = item
            started = time.perf_counter()
            try:
                own = _own_copy(frame, width, height)
                own.pts = pts
                for packet in stream.encode(own):
                    container.mux(packet)
            except (OSError, av.FFmpegError) as exc:  # a full disk, a file that cannot grow: one line, no traceback
                self._failed = True
                self.failure = VideoOutputError(f"recording {self._path} stopped after {self._written} frames: "
                                                f"{reason(exc)}; the show goes on without it")
                logger.error("%s", self.failure)
                continue
            except Exception:  # a bug must not kill the clock either
                self._failed = True
                logger.exception("recording %s stopped after %d frames", self._path, self._written)
                continue
            self._encode_seconds += time.perf_counter() - started
            self._written += 1
            if self._audio is not None:
                self._audio.pump(self._feed, origin, (pts + 1) / float(stream.codec_context.framerate or 1))

    def _log_drops(self) -> None:
        now = time.monotonic()
        if now - self._last_drop_log < DROP_LOG_INTERVAL:
            return
        self._last_drop_log = now
        logger.warning(
            "recording %s: the encoder is behind; %d frames dropped (%d in all)",
            self._path, self._dropped - self._dropped_logged, self._dropped,
        )
        self._dropped_logged = self._dropped


def _own_copy(frame: av.VideoFrame, width: int, height: int) -> av.VideoFrame:
    """A frame the encoder may keep and stamp: the clock's frame is shared with the other sinks."""
    if frame.format.name != "yuv420p" or frame.width != width or frame.height != height:
        return frame.reformat(width=width, height=height, format="yuv420p")
    return av.VideoFrame.from_ndarray(frame.to_ndarray(), format="yuv420p")


def _remove_quietly(path: Path) -> None:
    try:
        path.unlink()
    except OSError:
        pass
