"""The local preview: what the camera shows, as MJPEG over HTTP, viewable in any browser.

:class:`PreviewSink` runs a small ``http.server.ThreadingHTTPServer`` in threads of its own (one to accept,
one per viewer), bound to 127.0.0.1 unless told otherwise, so it never touches the output clock's thread or the
asyncio event loop. It serves

* ``GET /``            an HTML page showing the stream,
* ``GET /stream.mjpg`` ``multipart/x-mixed-replace`` JPEG parts (the MJPEG stream browsers play natively),
* ``GET /frame.jpg``   the newest frame as one JPEG (503 until the first frame).

:meth:`PreviewSink.show` only keeps a reference to the newest frame. JPEG encoding (PyAV's swscale to RGB, then
Pillow) happens in the viewers' threads, only while someone watches, at most ``fps`` times a second whatever
the number of viewers: a JPEG younger than one preview period is shared, and the newest frame always wins.
"""

from __future__ import annotations

import errno
import functools
import io
import logging
import socket
import socketserver
import sys
import threading
import time
from dataclasses import dataclass
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from metadj_bridge.errors import VideoOutputError
from metadj_bridge.video.sink import ShownFrame

logger = logging.getLogger(__name__)

BOUNDARY = "metadj-frame"
JPEG_QUALITY = 80
#: A viewer that stops reading for this long is dropped (its thread would otherwise wait forever).
WRITE_TIMEOUT = 10.0
#: A taken port: try this many ports after it, then any free port.
PORT_TRIES = 20

PAGE = """<!doctype html>
<html lang="en">
<head><meta charset="utf-8"><title>metadj-bridge preview</title>
<style>html,body{{margin:0;height:100%;background:#000;color:#888;font:14px sans-serif}}
body{{display:flex;flex-direction:column;align-items:center;justify-content:center}}
img{{max-width:100%;max-height:calc(100% - 2em);object-fit:contain}} a{{color:#aaa}}</style></head>
<body><img src="/stream.mjpg" alt="metadj-bridge camera output" width="{width}" height="{height}">
<p>{width}x{height}, preview at up to {fps:g} fps &middot; <a href="/frame.jpg">still frame</a></p></body>
</html>
"""


@dataclass(frozen=True, slots=True)
class PreviewStats:
    """What the preview has done so far."""

    #: Browsers watching the stream right now.
    viewers: int
    #: JPEGs encoded since the start.
    jpegs: int
    #: Mean time to encode one JPEG, in milliseconds (0 before the first).
    jpeg_ms: float


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    # SO_REUSEADDR on Windows lets a second server bind a port already in use (no "taken" error, no picture).
    allow_reuse_address = sys.platform != "win32"
    preview: PreviewSink

    def server_bind(self) -> None:
        # HTTPServer.server_bind looks the host name up (socket.getfqdn), which can hang on a broken resolver.
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name, self.server_port = str(host), int(port)

    def handle_error(self, request: Any, client_address: Any) -> None:
        # Called inside socketserver's except block: a viewer that vanished mid-request is not news.
        logger.debug("preview: request from %s failed", client_address, exc_info=sys.exc_info())


class _Server6(_Server):
    address_family = socket.AF_INET6


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    timeout = WRITE_TIMEOUT
    server_version = "metadj-bridge-preview"

    def do_GET(self) -> None:
        preview = self.server.preview
        path = self.path.split("?", 1)[0]
        if path in ("/", "/index.html"):
            self._send(HTTPStatus.OK, "text/html; charset=utf-8", preview.page().encode())
        elif path == "/frame.jpg":
            jpeg = preview.jpeg()
            if jpeg is None:
                self._send(HTTPStatus.SERVICE_UNAVAILABLE, "text/plain; charset=utf-8", b"no frame yet\n")
            else:
                self._send(HTTPStatus.OK, "image/jpeg", jpeg[1])
        elif path == "/stream.mjpg":
            preview.stream_to(self)
        else:
            self._send(HTTPStatus.NOT_FOUND, "text/plain; charset=utf-8", b"not found: try / or /stream.mjpg\n")

    def _send(self, status: HTTPStatus, content_type: str, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        logger.debug("preview %s: " + format, self.client_address[0], *args)


class PreviewSink:
    """A :class:`~metadj_bridge.video.sink.FrameSink` that serves the shown frames to browsers as MJPEG.

    The server starts in :meth:`open` and stops in :meth:`close`, which also ends every open stream and frees
    the port. ``port=0`` picks a free port; a taken port moves the preview to the next free one (a WARNING says
    where): a port clash must not leave the show without a picture. :attr:`url` says which once open.
    """

    name = "preview"

    def __init__(self, host: str = "127.0.0.1", port: int = 0, fps: float = 15.0) -> None:
        if fps <= 0:
            raise VideoOutputError(f"preview: {fps!r} is not a frame rate (frames per second > 0)")
        if not 0 <= port <= 65535:
            raise VideoOutputError(f"preview: {port!r} is not a TCP port (0-65535, 0 picks a free one)")
        self.host, self.port, self.fps = host, port, fps
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._size = (0, 0)
        self._changed = threading.Condition()
        self._latest: ShownFrame | None = None
        self._encode_lock = threading.Lock()
        self._jpeg: tuple[int, bytes] | None = None  # (frame index, JPEG)
        self._jpeg_at = float("-inf")
        self._jpegs = 0
        self._jpeg_seconds = 0.0
        self._viewers: set[socket.socket] = set()
        self._closed = False

    @property
    def url(self) -> str | None:
        """Where to point the browser, once open."""
        if self._server is None:
            return None
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/"

    def stats(self) -> PreviewStats:
        return PreviewStats(
            viewers=len(self._viewers),
            jpegs=self._jpegs,
            jpeg_ms=1000.0 * self._jpeg_seconds / self._jpegs if self._jpegs else 0.0,
        )

    def open(self, width: int, height: int, fps: float) -> None:
        if self._closed:
            raise VideoOutputError("preview is closed and cannot be opened again")
        if self._server is not None:
            raise VideoOutputError(f"preview is already open at {self.url}")
        asked = self.port
        server = self._bind()
        server.preview = self
        self.port = int(server.server_address[1])
        self._size = (width, height)
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.1}, name="preview-http", daemon=True
        )
        self._thread.start()
        if asked and self.port != asked:
            # The show keeps its picture: say loudly where it went, the browser tab on the old port is stale.
            logger.warning("video preview at %s (%d was taken by another program or bridge; set "
                           "video.preview_port or --preview-port to choose one)", self.url, asked)
        else:
            logger.info("preview at %s (%dx%d, up to %g fps)", self.url, width, height, self.fps)

    def _bind(self) -> _Server:
        """A server on the asked port, or on the next free one when it is taken (the show needs its picture).

        Tries ``port``, then the next :data:`PORT_TRIES` ports, then any free port; only errors other than
        "taken" (no such address, not allowed) are a :class:`VideoOutputError`.
        """
        server_class = _Server6 if ":" in self.host else _Server
        first = self.port
        candidates = [first] if first == 0 else [*range(first, min(first + PORT_TRIES, 65535) + 1), 0]
        for port in candidates:
            try:
                return server_class((self.host, port), _Handler)
            except OSError as exc:
                if not _in_use(exc):
                    raise VideoOutputError(
                        f"preview: cannot listen on {self.host} port {port}: {exc.strerror or exc}; "
                        "choose another port (video.preview_port or --preview-port), or 0 for any free one"
                    ) from exc
        raise VideoOutputError(f"preview: no free port on {self.host} (tried from {first} on, then any port)")

    def show(self, shown: ShownFrame) -> None:
        with self._changed:
            if self._closed:
                return
            self._latest = shown
            self._changed.notify_all()

    def close(self) -> None:
        with self._changed:
            if self._closed:
                return
            self._closed = True
            self._latest = None
            self._changed.notify_all()
        server, self._server = self._server, None
        if server is None:
            return
        server.shutdown()
        server.server_close()
        for sock in list(self._viewers):
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        if self._thread is not None:
            self._thread.join()
        with self._changed:
            if not self._changed.wait_for(lambda: not self._viewers, timeout=2.0):
                logger.warning("preview: %d viewers did not leave in time", len(self._viewers))
        logger.info("preview at http://%s:%d/ closed", self.host, self.port)

    # -- used by the HTTP handler threads -------------------------------------------------------------------

    def page(self) -> str:
        width, height = self._size
        return PAGE.format(width=width, height=height, fps=self.fps)

    def jpeg(self) -> tuple[int, bytes] | None:
        """The newest frame as (index, JPEG); a JPEG younger than one preview period is reused."""
        with self._encode_lock:
            latest = self._latest
            if latest is None:
                return None
            cached = self._jpeg
            fresh = cached is not None and time.monotonic() - self._jpeg_at < 1.0 / self.fps
            if cached is not None and (cached[0] == latest.index or fresh):
                return cached
            started = time.perf_counter()
            data = _encode_jpeg(latest)
            self._jpeg_seconds += time.perf_counter() - started
            self._jpegs += 1
            self._jpeg_at = time.monotonic()
            self._jpeg = (latest.index, data)
            return self._jpeg

    def stream_to(self, handler: _Handler) -> None:
        """Send MJPEG parts to one viewer until it leaves or the preview closes."""
        handler.send_response(HTTPStatus.OK)
        handler.send_header("Content-Type", f"multipart/x-mixed-replace; boundary={BOUNDARY}")
        handler.send_header("Cache-Control", "no-store")
        handler.send_header("Connection", "close")
        handler.end_headers()
        handler.close_connection = True
        sock = handler.connection
        with self._changed:
            if self._closed:
                return
            self._viewers.add(sock)
        logger.info("preview: %s is watching", handler.client_address[0])
        sent_index = -1
        period = 1.0 / self.fps
        try:
            while True:
                with self._changed:
                    self._changed.wait_for(functools.partial(self._has_news, sent_index), timeout=1.0)
                    if self._closed:
                        return
                jpeg = self.jpeg()
                if jpeg is None or jpeg[0] == sent_index:
                    time.sleep(period / 4)
                    continue
                started = time.monotonic()
                index, data = jpeg
                handler.wfile.write(
                    f"--{BOUNDARY}\r\nContent-Type: image/jpeg\r\nContent-Length: {len(data)}\r\n\r\n".encode()
                    + data
                    + b"\r\n"
                )
                handler.wfile.flush()
                sent_index = index
                time.sleep(max(0.0, period - (time.monotonic() - started)))
        except OSError:
            pass  # the browser left (broken pipe, reset, timeout) or close() shut the socket
        finally:
            with self._changed:
                self._viewers.discard(sock)
                self._changed.notify_all()
            logger.info("preview: %s stopped watching", handler.client_address[0])


    def _has_news(self, sent_index: int) -> bool:
        """Closed, or a frame this viewer has not had yet (called with ``_changed`` held)."""
        return self._closed or self._latest is not None and self._latest.index != sent_index


def _encode_jpeg(shown: ShownFrame) -> bytes:
    image = shown.frame.to_image()  # swscale I420 -> RGB, then Pillow's JPEG encoder
    out = io.BytesIO()
    image.save(out, format="JPEG", quality=JPEG_QUALITY)
    return out.getvalue()


def _in_use(exc: OSError) -> bool:
    return exc.errno in (errno.EADDRINUSE, getattr(errno, "WSAEADDRINUSE", -1))
