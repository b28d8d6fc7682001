"""The picture on the web server: ``GET /stream.mjpg`` (MJPEG) and ``GET /frame.jpg`` (the newest frame).

One :class:`JpegFeed` per server makes the JPEGs for every viewer: only while someone watches, at most the
preview's rate whatever the number of viewers, always of the newest frame, encoded on a worker thread (never on
the event loop). A viewer that reads slowly gets fewer frames, never older ones: each part written is the newest
JPEG at that moment, and a write that cannot finish within :data:`WRITE_TIMEOUT` ends that viewer's stream.

A client on the LAN may open streams by the hundred (a script, a page reloading in a loop): one server serves at
most :data:`MAX_VIEWERS` streams over all its screens, and answers the next one 503 with a sentence, and viewers
coming, going and refused are rate-limited log lines.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging

from aiohttp import web

from metadj_bridge.errors import RateLimitedWarning, printable
from metadj_bridge.video.preview import PreviewSink

log = logging.getLogger(__name__)

BOUNDARY = "metadj-frame"
#: A viewer whose socket takes no part for this long is dropped.
WRITE_TIMEOUT = 10.0
#: The most streams one web server serves at once, all screens together. Each costs a socket, a task and a copy
#: of every part: at 15 fps a 720p JPEG of ~100 KB is ~1.5 MB/s a viewer, so 8 are ~100 Mbit/s, about what stage
#: Wi-Fi carries beside Scope's own video; enough for the performer's phone, a tablet, a laptop and a few crew.
MAX_VIEWERS = 8
#: What a viewer over the cap is told to wait before trying again (the page tries again every 2 s anyway).
RETRY_AFTER = 10


class Viewers:
    """The streams one web server serves, over all its screens, and the rate-limited lines they make."""

    def __init__(self, limit: int = MAX_VIEWERS) -> None:
        self.limit = limit
        self.count = 0
        self.refused = 0
        self._moves = RateLimitedWarning(log, "preview: viewers coming and going", level=logging.INFO)
        self._refusals = RateLimitedWarning(log, f"preview: viewers refused (at most {limit} at once)")

    def take(self, peer: str | None) -> bool:
        """A viewer asks for a stream: True, and counted, when there is room (no await between the check and
        the count, so a burst of requests never overshoots)."""
        if self.count >= self.limit:
            self.refused += 1
            self._refusals.note(f"{printable(peer or '?')} asked for stream {self.count + 1}")
            return False
        self.count += 1
        self._moves.note(f"{printable(peer or '?')} is watching ({self.count} watching)")
        return True

    def give_back(self, peer: str | None) -> None:
        self.count = max(0, self.count - 1)
        self._moves.note(f"{printable(peer or '?')} stopped watching ({self.count} watching)")


#: The server's one :class:`Viewers`, shared by the main picture's routes and every screen's.
VIEWERS = web.AppKey("preview_viewers", Viewers)


class JpegFeed:
    """The newest JPEG of ``preview`` and a condition viewers wait on for the next one."""

    def __init__(self, preview: PreviewSink) -> None:
        self.preview = preview
        self.changed = asyncio.Condition()
        self.jpeg: tuple[int, bytes] | None = None
        self._task: asyncio.Task[None] | None = None
        self._failures = RateLimitedWarning(log, "preview: frames that could not be made JPEGs (skipped)")

    def watching(self) -> None:
        """A viewer came: start encoding if no one did yet."""
        self.preview.viewers += 1
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run(), name="preview-jpeg")

    def left(self) -> None:
        self.preview.viewers = max(0, self.preview.viewers - 1)

    async def once(self) -> tuple[int, bytes] | None:
        """The newest frame as a JPEG now (``/frame.jpg``): the one made already, else one made on a thread."""
        cached = self.preview.cached()
        return cached if cached is not None else await asyncio.to_thread(self.preview.jpeg)

    async def _run(self) -> None:
        period = 1.0 / self.preview.fps
        loop = asyncio.get_running_loop()
        failed: int | None = None  # a frame that could not be made a JPEG is not tried again
        while self.preview.viewers > 0:
            started = loop.time()
            index = self.preview.latest_index
            if index is not None and index != failed and (self.jpeg is None or self.jpeg[0] != index):
                try:
                    jpeg = await asyncio.to_thread(self.preview.jpeg)
                except Exception as exc:  # noqa: BLE001 - one frame lost; the picture goes on with the next
                    failed = index
                    self._failures.note(f"frame {index}: {type(exc).__name__}: {exc}")
                    jpeg = None
                if jpeg is not None:
                    async with self.changed:
                        self.jpeg = jpeg
                        self.changed.notify_all()
            await asyncio.sleep(max(period / 4, period - (loop.time() - started)))

    async def aclose(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


def add_picture_routes(app: web.Application, preview: PreviewSink | None, prefix: str = "") -> None:
    """``{prefix}/frame.jpg`` and ``{prefix}/stream.mjpg`` of ``preview`` (a further screen's are under
    ``/screens/NAME``)."""
    feed = JpegFeed(preview) if preview is not None else None
    if VIEWERS not in app:
        app[VIEWERS] = Viewers()
    viewers = app[VIEWERS]

    async def frame(request: web.Request) -> web.Response:
        jpeg = await feed.once() if feed is not None else None
        if jpeg is None:
            why = "no frame yet" if feed is not None else "no picture: this run has no video output"
            return web.json_response({"error": why}, status=503, headers={"Cache-Control": "no-store"})
        return web.Response(body=jpeg[1], content_type="image/jpeg", headers={"Cache-Control": "no-store"})

    async def stream(request: web.Request) -> web.StreamResponse:
        if feed is None:
            return web.json_response({"error": "no picture: this run has no video output"}, status=503)
        peer = request.remote
        if not viewers.take(peer):
            return web.json_response(
                {"error": f"the picture already has {viewers.count} viewers, the most this bridge serves at once; "
                          "close a picture open elsewhere, or use /frame.jpg", "field": "viewers"},
                status=503, headers={"Cache-Control": "no-store", "Retry-After": str(RETRY_AFTER)})
        response = web.StreamResponse(headers={
            "Content-Type": f"multipart/x-mixed-replace; boundary={BOUNDARY}", "Cache-Control": "no-store"})
        try:
            await response.prepare(request)
        except BaseException:
            viewers.give_back(peer)
            raise
        feed.watching()
        sent = -1
        try:
            while True:
                async with feed.changed:
                    await feed.changed.wait_for(functools.partial(_news, feed, sent))
                    assert feed.jpeg is not None
                    sent, data = feed.jpeg
                part = (f"--{BOUNDARY}\r\nContent-Type: image/jpeg\r\nContent-Length: {len(data)}\r\n\r\n"
                        .encode() + data + b"\r\n")
                await asyncio.wait_for(response.write(part), WRITE_TIMEOUT)
        except (ConnectionError, TimeoutError):
            pass  # the browser left, or stopped reading
        finally:
            feed.left()
            viewers.give_back(peer)
        return response

    async def close_feed(app: web.Application) -> None:
        if feed is not None:
            await feed.aclose()

    app.router.add_get(prefix + "/frame.jpg", frame)
    app.router.add_get(prefix + "/stream.mjpg", stream)
    app.on_cleanup.append(close_feed)


def _news(feed: JpegFeed, sent: int) -> bool:
    return feed.jpeg is not None and feed.jpeg[0] != sent
