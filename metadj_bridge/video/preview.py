"""The preview: the output clock's newest frame, kept for the web server's picture (``/stream.mjpg``, ``/frame.jpg``).

:class:`PreviewSink` is a :class:`~metadj_bridge.video.sink.FrameSink` that only keeps a reference to the newest
frame (the clock's thread calls :meth:`~PreviewSink.show`, which costs nothing more). The web server
(``metadj_bridge.web.picture``) turns it into JPEGs with :func:`encode_jpeg` on a worker thread, only while
someone watches, at most the preview rate whatever the number of viewers. It serves nothing itself: the one web
server of the bridge does.
"""

from __future__ import annotations

import io
import threading
import time
from dataclasses import dataclass

from metadj_bridge.errors import VideoOutputError
from metadj_bridge.video.sink import ShownFrame

JPEG_QUALITY = 80


@dataclass(frozen=True, slots=True)
class PreviewStats:
    """What the preview has done so far."""

    #: Browsers watching the stream right now.
    viewers: int
    #: JPEGs encoded since the start.
    jpegs: int
    #: Mean time to encode one JPEG, in milliseconds (0 before the first).
    jpeg_ms: float


class PreviewSink:
    """Keeps the newest shown frame for the web server; :meth:`jpeg` encodes it, one JPEG per frame at most.

    ``fps`` is the most JPEGs a second the web server makes of it. ``url`` is set by whoever serves it (the web
    server's ``/stream.mjpg``), for the status view.
    """

    name = "preview"

    def __init__(self, fps: float = 15.0) -> None:
        if fps <= 0:
            raise VideoOutputError(f"preview: {fps!r} is not a frame rate (frames per second > 0)")
        self.fps = fps
        self.url: str | None = None
        self.size = (0, 0)
        self.viewers = 0
        self._lock = threading.Lock()
        self._encode_lock = threading.Lock()
        self._latest: ShownFrame | None = None
        self._jpeg: tuple[int, bytes] | None = None  # (frame index, JPEG)
        self._jpeg_at = float("-inf")
        self._jpegs = 0
        self._jpeg_seconds = 0.0
        self._closed = False

    def stats(self) -> PreviewStats:
        return PreviewStats(viewers=self.viewers, jpegs=self._jpegs,
                            jpeg_ms=1000.0 * self._jpeg_seconds / self._jpegs if self._jpegs else 0.0)

    def open(self, width: int, height: int, fps: float) -> None:
        if self._closed:
            raise VideoOutputError("preview is closed and cannot be opened again")
        self.size = (width, height)

    def show(self, shown: ShownFrame) -> None:
        with self._lock:
            if not self._closed:
                self._latest = shown

    def close(self) -> None:
        with self._lock:
            self._closed = True
            self._latest = None

    @property
    def latest_index(self) -> int | None:
        """The newest frame's tick number (None before the first or once closed)."""
        latest = self._latest
        return None if latest is None else latest.index

    def cached(self) -> tuple[int, bytes] | None:
        """The JPEG already made of the newest frame, if any (cheap: for the event loop)."""
        cached, latest = self._jpeg, self._latest
        if cached is not None and latest is not None and cached[0] == latest.index:
            return cached
        return None

    def jpeg(self) -> tuple[int, bytes] | None:
        """The newest frame as (index, JPEG), encoding it when needed; a JPEG younger than one preview period is
        reused. Blocking (PyAV's swscale, then Pillow): call it on a worker thread."""
        with self._encode_lock:
            with self._lock:
                latest = self._latest
            if latest is None:
                return None
            cached = self._jpeg
            fresh = cached is not None and time.monotonic() - self._jpeg_at < 1.0 / self.fps
            if cached is not None and (cached[0] == latest.index or fresh):
                return cached
            started = time.perf_counter()
            data = encode_jpeg(latest)
            self._jpeg_seconds += time.perf_counter() - started
            self._jpegs += 1
            self._jpeg_at = time.monotonic()
            self._jpeg = (latest.index, data)
            return self._jpeg


def encode_jpeg(shown: ShownFrame) -> bytes:
    image = shown.frame.to_image()  # swscale I420 -> RGB, then Pillow's JPEG encoder
    out = io.BytesIO()
    image.save(out, format="JPEG", quality=JPEG_QUALITY)
    return out.getvalue()
