"""PreviewSink: real HTTP on 127.0.0.1 with httpx, JPEGs decoded with Pillow."""

from __future__ import annotations

import io
import itertools
import socket
import threading
import time
from collections.abc import Iterator
from typing import Self

import av
import httpx
import numpy as np
import pytest
from PIL import Image

from metadj_bridge.errors import VideoOutputError
from metadj_bridge.video.clock import OutputClock
from metadj_bridge.video.preview import BOUNDARY, PORT_TRIES, PreviewSink
from metadj_bridge.video.sink import ShownFrame
from tests.helpers import wait_for

W, H = 192, 108
ORANGE = (230, 120, 30)


def shown(index: int, rgb: tuple[int, int, int] = ORANGE) -> ShownFrame:
    """An I420 frame of one colour, as the clock hands it out."""
    image = np.empty((H, W, 3), np.uint8)
    image[:] = rgb
    frame = av.VideoFrame.from_ndarray(image, format="rgb24").reformat(format="yuv420p")
    frame.pts = index
    return ShownFrame(frame=frame, index=index, t=time.monotonic(), kind="live", arrived=time.monotonic())


@pytest.fixture
def preview() -> Iterator[PreviewSink]:
    sink = PreviewSink(fps=30)
    sink.open(W, H, 30.0)
    yield sink
    sink.close()


def centre_colour(jpeg: bytes) -> tuple[int, int, int]:
    image = Image.open(io.BytesIO(jpeg)).convert("RGB")
    r, g, b = image.getpixel((image.width // 2, image.height // 2))  # type: ignore[misc]
    return int(r), int(g), int(b)


def close_to(a: tuple[int, int, int], b: tuple[int, int, int], tolerance: int = 12) -> bool:
    return all(abs(x - y) <= tolerance for x, y in zip(a, b, strict=True))


def test_url_is_local_and_known_once_open() -> None:
    sink = PreviewSink()
    assert sink.url is None
    sink.open(W, H, 30.0)
    try:
        assert sink.url == f"http://127.0.0.1:{sink.port}/"
        assert sink.port > 0
    finally:
        sink.close()
    assert sink.url is None


def test_frame_jpg_is_the_newest_frame(preview: PreviewSink) -> None:
    assert preview.url is not None
    with httpx.Client(base_url=preview.url, timeout=5) as client:
        waiting = client.get("/frame.jpg")
        assert waiting.status_code == 503

        preview.show(shown(0, ORANGE))
        reply = client.get("/frame.jpg")
        assert reply.status_code == 200
        assert reply.headers["content-type"] == "image/jpeg"
        image = Image.open(io.BytesIO(reply.content))
        assert image.format == "JPEG"
        assert image.size == (W, H)
        assert close_to(centre_colour(reply.content), ORANGE)

        time.sleep(1.5 / preview.fps)  # past the shared JPEG's lifetime
        preview.show(shown(1, (20, 60, 200)))
        assert close_to(centre_colour(client.get("/frame.jpg").content), (20, 60, 200))


def test_page_shows_the_stream(preview: PreviewSink) -> None:
    assert preview.url is not None
    reply = httpx.get(preview.url, timeout=5)
    assert reply.status_code == 200
    assert reply.headers["content-type"].startswith("text/html")
    assert 'src="/stream.mjpg"' in reply.text
    assert f"{W}x{H}" in reply.text


def test_unknown_path_is_404(preview: PreviewSink) -> None:
    assert preview.url is not None
    assert httpx.get(preview.url + "nothing-here", timeout=5).status_code == 404


def parts_of(stream: Iterator[bytes], count: int) -> list[bytes]:
    """The JPEG bodies of the first ``count`` parts of a multipart/x-mixed-replace stream."""
    buffer = b""
    parts: list[bytes] = []
    for chunk in stream:
        buffer += chunk
        while True:
            start = buffer.find(f"--{BOUNDARY}\r\n".encode())
            head_end = buffer.find(b"\r\n\r\n", start)
            if start < 0 or head_end < 0:
                break
            headers = buffer[start:head_end].decode().split("\r\n")[1:]
            fields = dict(line.split(": ", 1) for line in headers)
            assert fields["Content-Type"] == "image/jpeg"
            length = int(fields["Content-Length"])
            body_start = head_end + 4
            if len(buffer) < body_start + length + 2:
                break
            parts.append(buffer[body_start : body_start + length])
            buffer = buffer[body_start + length + 2 :]
            if len(parts) == count:
                return parts
    return parts


class Feeder:
    """Shows frames at 30 fps from a thread, as the output clock does; the colour follows the tick."""

    def __init__(self, sink: PreviewSink) -> None:
        self.sink = sink
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)

    @staticmethod
    def colour(index: int) -> tuple[int, int, int]:
        return (40 + (index * 9) % 180, 200, 60)

    def run(self) -> None:
        index = 0
        while not self.stop.wait(1 / 30):
            self.sink.show(shown(index, self.colour(index)))
            index += 1

    def __enter__(self) -> Self:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join()


def test_stream_yields_jpeg_parts_of_new_frames(preview: PreviewSink) -> None:
    assert preview.url is not None
    with Feeder(preview), httpx.stream("GET", preview.url + "stream.mjpg", timeout=5) as reply:
        assert reply.status_code == 200
        assert reply.headers["content-type"] == f"multipart/x-mixed-replace; boundary={BOUNDARY}"
        parts = parts_of(reply.iter_bytes(), 4)
        assert preview.stats().viewers == 1
    assert len(parts) == 4
    images = [Image.open(io.BytesIO(part)) for part in parts]
    assert {image.size for image in images} == {(W, H)}
    # Every part is a frame the clock showed, and the stream moves on: no part repeats the one before.
    colours = [centre_colour(part) for part in parts]
    assert all(abs(g - 200) <= 12 and abs(b - 60) <= 12 for _, g, b in colours)
    reds = [r for r, _, _ in colours]
    assert all(abs(a - b) > 4 for a, b in itertools.pairwise(reds))
    assert preview.stats().jpegs >= 4


def test_no_viewer_no_jpeg_work(preview: PreviewSink) -> None:
    for i in range(20):
        preview.show(shown(i))
    assert preview.stats().jpegs == 0


def test_close_ends_open_streams_and_frees_the_port() -> None:
    sink = PreviewSink(fps=30)
    sink.open(W, H, 30.0)
    port, url = sink.port, sink.url
    assert url is not None
    ended = threading.Event()

    def watch() -> None:
        with httpx.stream("GET", url + "stream.mjpg", timeout=5) as reply:
            for _ in reply.iter_bytes():
                pass
        ended.set()

    with Feeder(sink):
        watcher = threading.Thread(target=watch, daemon=True)
        watcher.start()
        deadline = time.monotonic() + 5
        while sink.stats().viewers == 0 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert sink.stats().viewers == 1
        sink.close()
    assert ended.wait(5), "the stream did not end when the preview closed"
    assert sink.stats().viewers == 0
    with pytest.raises(httpx.ConnectError):
        httpx.get(url, timeout=2)
    again = PreviewSink(port=port)
    again.open(W, H, 30.0)
    try:
        assert again.port == port
        assert httpx.get(url, timeout=5).status_code == 200
    finally:
        again.close()
    sink.close()  # twice is harmless
    with pytest.raises(VideoOutputError, match="closed"):
        sink.open(W, H, 30.0)


def test_taken_port_moves_the_preview_to_the_next_free_port_and_says_where(caplog: pytest.LogCaptureFixture) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        sink = PreviewSink(port=port, fps=30)
        with caplog.at_level("WARNING", logger="metadj_bridge.video.preview"):
            sink.open(W, H, 30.0)
        try:
            assert sink.port != port
            assert sink.url == f"http://127.0.0.1:{sink.port}/"
            moved = [r.getMessage() for r in caplog.records if "was taken" in r.getMessage()]
            assert moved == [f"video preview at {sink.url} ({port} was taken by another program or bridge; "
                             "set video.preview_port or --preview-port to choose one)"]
            with httpx.Client(base_url=sink.url, timeout=5) as client:
                page = client.get("/")
                assert page.status_code == 200
                assert 'src="/stream.mjpg"' in page.text
            with Feeder(sink), httpx.stream("GET", sink.url + "stream.mjpg", timeout=5) as reply:
                assert reply.headers["content-type"] == f"multipart/x-mixed-replace; boundary={BOUNDARY}"
                [part] = parts_of(reply.iter_bytes(), 1)
            assert Image.open(io.BytesIO(part)).size == (W, H)
        finally:
            sink.close()


def test_every_near_port_taken_still_gives_a_preview_on_some_free_port() -> None:
    held: list[socket.socket] = []
    try:
        start = None
        while start is None:  # a run of PORT_TRIES + 1 ports all taken, by us
            first = socket.create_server(("127.0.0.1", 0))
            base = first.getsockname()[1]
            if base + PORT_TRIES > 65535:
                first.close()
                continue
            run = [first]
            for port in range(base + 1, base + PORT_TRIES + 1):
                try:
                    run.append(socket.create_server(("127.0.0.1", port)))
                except OSError:
                    break
            held.extend(run)
            if len(run) == PORT_TRIES + 1:
                start = base
        sink = PreviewSink(port=start)
        sink.open(W, H, 30.0)
        try:
            assert not start <= sink.port <= start + PORT_TRIES
            assert httpx.get(f"http://127.0.0.1:{sink.port}/", timeout=5).status_code == 200
        finally:
            sink.close()
    finally:
        for sock in held:
            sock.close()


@pytest.mark.parametrize(("kwargs", "message"), [({"fps": 0}, "frame rate"), ({"port": 70000}, "TCP port")])
def test_bad_settings_are_refused(kwargs: dict[str, float], message: str) -> None:
    with pytest.raises(VideoOutputError, match=message):
        PreviewSink(**kwargs)  # type: ignore[arg-type]


async def test_preview_through_the_output_clock_shows_the_pushed_frame() -> None:
    preview = PreviewSink(fps=20)
    clock = OutputClock(W, H, 30.0, [preview], slate_after=10)
    await clock.start()
    try:
        assert preview.url is not None
        clock.push(shown(0, (30, 90, 210)).frame)
        async with httpx.AsyncClient(base_url=preview.url, timeout=5) as client:

            async def blue_frame() -> bool:
                reply = await client.get("/frame.jpg")
                return reply.status_code == 200 and close_to(centre_colour(reply.content), (30, 90, 210))

            await wait_for(blue_frame, 5, "the pushed frame on /frame.jpg", interval=0.06)
            reply = await client.get("/frame.jpg")
            assert Image.open(io.BytesIO(reply.content)).size == (W, H)
    finally:
        await clock.aclose()
    assert clock.stats().sinks == ("preview",)
    assert preview.url is None
