"""The web server on its own (real HTTP and WebSocket clients on loopback): where it listens, the token on a LAN
bind, the picture (MJPEG and one JPEG), and the live state's WebSocket with idle, many and never-reading clients."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import io
import itertools
import json
import logging
import socket
import threading
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any, Self

import aiohttp
import av
import httpx
import numpy as np
import pytest
from PIL import Image

from metadj_bridge.errors import ClosedError, VideoOutputError
from metadj_bridge.video.clock import OutputClock
from metadj_bridge.video.preview import PreviewSink
from metadj_bridge.video.sink import ShownFrame
from metadj_bridge.web.picture import BOUNDARY
from metadj_bridge.web.server import PORT_TRIES, WebServer
from tests.helpers import wait_for

W, H = 192, 108
ORANGE = (230, 120, 30)


def shown(index: int, rgb: tuple[int, int, int] = ORANGE) -> ShownFrame:
    """An I420 frame of one colour, as the output clock hands it out."""
    image = np.empty((H, W, 3), np.uint8)
    image[:] = rgb
    frame = av.VideoFrame.from_ndarray(image, format="rgb24").reformat(format="yuv420p")
    frame.pts = index
    return ShownFrame(frame=frame, index=index, t=time.monotonic(), kind="live", arrived=time.monotonic())


def centre_colour(jpeg: bytes) -> tuple[int, int, int]:
    image = Image.open(io.BytesIO(jpeg)).convert("RGB")
    r, g, b = image.getpixel((image.width // 2, image.height // 2))  # type: ignore[misc]
    return int(r), int(g), int(b)


def close_to(a: tuple[int, int, int], b: tuple[int, int, int], tolerance: int = 12) -> bool:
    return all(abs(x - y) <= tolerance for x, y in zip(a, b, strict=True))


class Feeder:
    """Shows frames at 30 fps from a thread, as the output clock does; the colour follows the tick."""

    def __init__(self, sink: PreviewSink) -> None:
        self.sink = sink
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.shown = 0

    @staticmethod
    def colour(index: int) -> tuple[int, int, int]:
        return (40 + (index * 9) % 180, 200, 60)

    def run(self) -> None:
        while not self.stop.wait(1 / 30):
            self.sink.show(shown(self.shown, self.colour(self.shown)))
            self.shown += 1

    def __enter__(self) -> Self:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join()


async def parts_of(stream: AsyncIterator[bytes], count: int) -> list[bytes]:
    """The JPEG bodies of the first ``count`` parts of a multipart/x-mixed-replace stream."""
    buffer = b""
    parts: list[bytes] = []
    async for chunk in stream:
        buffer += chunk
        while True:
            start = buffer.find(f"--{BOUNDARY}\r\n".encode())
            head_end = buffer.find(b"\r\n\r\n", start)
            if start < 0 or head_end < 0:
                break
            fields = dict(line.split(": ", 1) for line in buffer[start:head_end].decode().split("\r\n")[1:])
            assert fields["Content-Type"] == "image/jpeg"
            length = int(fields["Content-Length"])
            body_start = head_end + 4
            if len(buffer) < body_start + length + 2:
                break
            parts.append(buffer[body_start: body_start + length])
            buffer = buffer[body_start + length + 2:]
            if len(parts) == count:
                return parts
    return parts


SNAP = {"version": "test", "scope": {"state": "streaming"}}


@pytest.fixture
def preview() -> Iterator[PreviewSink]:
    sink = PreviewSink(fps=30)
    sink.open(W, H, 30.0)
    yield sink
    sink.close()


@pytest.fixture
async def server(preview: PreviewSink) -> AsyncIterator[WebServer]:
    async with WebServer(lambda: SNAP, preview=preview, port=0) as web:
        yield web


# ------------------------------------------------------------------------------------------ listening


async def test_local_by_default_with_the_page_status_and_no_token(server: WebServer, preview: PreviewSink) -> None:
    assert server.url == f"http://127.0.0.1:{server.port}/" and server.token is None and not server.lan
    assert preview.url == server.url + "stream.mjpg"
    async with httpx.AsyncClient(base_url=server.url, timeout=5) as http:
        page = await http.get("/")
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
        assert "stream.mjpg" in page.text or "app.js" in page.text
        state = (await http.get("/api/state")).json()
        assert state["type"] == "state" and state["scope"] == {"state": "streaming"}
        assert state["control"]["token_required"] is False and state["control"]["stream"] == "/stream.mjpg"
        assert (await http.get("/status")).json() == SNAP
        no_show = await http.post("/api/theme", json={"name": "x"})  # no show to control: the API says so
        assert no_show.status_code == 503 and "error" in no_show.json()
        missing = await http.get("/static/no-such-file.js")
        assert missing.status_code == 404


@pytest.mark.parametrize("name", ["a" * 300, "a" * 300 + "/x.js", "x/" + "b" * 5000, "a%00b.js", "%00",
                                  "..%2f..%2fetc%2fpasswd", "a" * 255 + ".js", "%2e%2e/%2e%2e/", "%ff%fe.js"])
async def test_a_static_name_the_file_system_refuses_is_not_found(server: WebServer, name: str,
                                                                  caplog: pytest.LogCaptureFixture) -> None:
    async with httpx.AsyncClient(base_url=server.url, timeout=5) as http:
        answer = await http.get("/static/" + name)
        assert answer.status_code in (400, 403, 404), answer.text
        assert (await http.get("/static/no-such-file.js")).status_code == 404  # the server goes on
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]


async def test_a_taken_port_moves_to_the_next_free_one_and_says_where(caplog: pytest.LogCaptureFixture) -> None:
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        with caplog.at_level("INFO", logger="metadj_bridge.web"):
            async with WebServer(lambda: SNAP, port=port) as web:
                assert web.port != port
                moved = [r.getMessage() for r in caplog.records if "was taken" in r.getMessage()]
                assert moved == [f"web: control page at {web.url} ({port} was taken by another program or bridge; "
                                 "set --http-port to choose one)"]
                async with httpx.AsyncClient(base_url=web.url, timeout=5) as http:
                    assert (await http.get("/status")).status_code == 200


async def test_every_near_port_taken_still_gives_a_server_on_some_free_port() -> None:
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
        async with WebServer(lambda: SNAP, port=start) as web:
            assert not start <= web.port <= start + PORT_TRIES
            async with httpx.AsyncClient(base_url=web.url, timeout=5) as http:
                assert (await http.get("/status")).status_code == 200
    finally:
        for sock in held:
            sock.close()


async def test_close_ends_streams_frees_the_port_and_refuses_reuse(preview: PreviewSink) -> None:
    web = WebServer(lambda: SNAP, preview=preview, port=0)
    await web.start()
    port = web.port
    with Feeder(preview):
        async with httpx.AsyncClient(timeout=10) as http, http.stream("GET", web.url + "stream.mjpg") as reply:
            chunks = reply.aiter_bytes()
            await parts_of(chunks, 1)
            assert preview.stats().viewers == 1
            await web.aclose()

            async def to_the_end() -> None:  # the stream ends (cleanly or cut) when the server closes
                with contextlib.suppress(httpx.HTTPError):
                    async for _ in chunks:
                        pass

            await asyncio.wait_for(to_the_end(), 10)
    await wait_for(lambda: preview.stats().viewers == 0, 5, "the viewer gone")
    with socket.create_server(("127.0.0.1", port)):
        pass  # the port is free again
    await web.aclose()  # twice is harmless
    with pytest.raises(ClosedError):
        await web.start()


# ------------------------------------------------------------------------------------------ the token


async def test_a_lan_bind_wants_the_token_for_everything_but_the_page() -> None:
    out = io.StringIO()
    async with WebServer(lambda: SNAP, host="0.0.0.0", port=0, out=out) as web:  # LAN: the host setting says so
        assert web.lan and web.token and len(web.token) >= 16
        printed = out.getvalue()
        assert web.page_url in printed and f"?token={web.token}" in web.page_url and "█" in printed  # the QR code
        base = f"http://127.0.0.1:{web.port}"
        async with httpx.AsyncClient(base_url=base, timeout=5) as http:
            assert (await http.get("/")).status_code == 200
            for path in ("/api/state", "/status", "/metrics", "/frame.jpg", "/stream.mjpg", "/ws"):
                refused = await http.get(path)
                assert refused.status_code == 401, path
                assert refused.json()["field"] == "token"
            assert (await http.get("/api/state", headers={"Authorization": "Bearer wrong"})).status_code == 401
            assert (await http.get("/api/state", params={"token": web.token[:-1]})).status_code == 401
            post = await http.post("/api/theme", json={"name": "x"})
            assert post.status_code == 401
            bearer = {"Authorization": f"Bearer {web.token}"}
            state = await http.get("/api/state", headers=bearer)
            assert state.status_code == 200 and state.json()["control"]["token_required"] is True
            assert (await http.get("/status", params={"token": web.token})).status_code == 200
            # Past the token, the request meets the API (no show here: 503, not 401).
            assert (await http.post("/api/theme", json={"name": "x"}, headers=bearer)).status_code == 503
        async with aiohttp.ClientSession() as session:
            with pytest.raises(aiohttp.WSServerHandshakeError) as refused_ws:
                await session.ws_connect(f"{base}/ws")
            assert refused_ws.value.status == 401
            async with session.ws_connect(f"{base}/ws", params={"token": web.token}) as ws:
                message = await ws.receive_json(timeout=5)
                assert message["type"] == "state"


async def test_a_given_token_is_kept_and_a_loopback_bind_needs_none() -> None:
    async with WebServer(lambda: SNAP, host="0.0.0.0", port=0, token="stage-left-42", out=io.StringIO()) as web:
        assert web.token == "stage-left-42"
    async with WebServer(lambda: SNAP, host="127.0.0.1", port=0, token="unused") as local:
        assert not local.lan
        async with httpx.AsyncClient(base_url=local.url, timeout=5) as http:
            assert (await http.get("/api/state")).status_code == 200


async def test_a_websocket_from_another_site_is_refused(server: WebServer) -> None:
    async with aiohttp.ClientSession() as session:
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await session.ws_connect(server.url + "ws", headers={"Origin": "http://evil.example"})
        assert refused.value.status == 403


# ------------------------------------------------------------------------------------------ the picture


async def test_frame_jpg_is_the_newest_frame(server: WebServer, preview: PreviewSink) -> None:
    async with httpx.AsyncClient(base_url=server.url, timeout=5) as http:
        waiting = await http.get("/frame.jpg")
        assert waiting.status_code == 503 and waiting.json()["error"] == "no frame yet"
        preview.show(shown(0, ORANGE))
        reply = await http.get("/frame.jpg")
        assert reply.status_code == 200 and reply.headers["content-type"] == "image/jpeg"
        assert Image.open(io.BytesIO(reply.content)).size == (W, H)
        assert close_to(centre_colour(reply.content), ORANGE)
        await asyncio.sleep(1.5 / preview.fps)  # past the shared JPEG's lifetime
        preview.show(shown(1, (20, 60, 200)))
        assert close_to(centre_colour((await http.get("/frame.jpg")).content), (20, 60, 200))


async def test_the_stream_gives_new_frames_and_viewers_share_the_jpegs(server: WebServer,
                                                                       preview: PreviewSink) -> None:
    assert preview.stats().jpegs == 0
    with Feeder(preview) as feeder:
        for _ in range(20):
            await asyncio.sleep(0.01)
        assert preview.stats().jpegs == 0  # no viewer, no JPEG work
        async with httpx.AsyncClient(base_url=server.url, timeout=10) as http:

            async def watch() -> list[bytes]:
                async with http.stream("GET", "/stream.mjpg") as reply:
                    assert reply.headers["content-type"] == f"multipart/x-mixed-replace; boundary={BOUNDARY}"
                    return await parts_of(reply.aiter_bytes(), 6)

            streams = await asyncio.gather(*(watch() for _ in range(5)))
        shown_frames = feeder.shown
    for parts in streams:
        assert len(parts) == 6
        reds = [centre_colour(part)[0] for part in parts]
        assert all(abs(a - b) > 4 for a, b in itertools.pairwise(reds))  # each part a newer frame
    # Five viewers, one encoder: the JPEGs were made once each and sent to all.
    jpegs = preview.stats().jpegs
    assert jpegs < sum(len(parts) for parts in streams) and jpegs <= shown_frames
    assert len({part for parts in streams for part in parts}) <= jpegs
    await wait_for(lambda: preview.stats().viewers == 0, 5, "the viewers gone")


async def test_the_picture_through_the_output_clock() -> None:
    preview = PreviewSink(fps=20)
    clock = OutputClock(W, H, 30.0, [preview], slate_after=10)
    await clock.start()
    try:
        async with WebServer(lambda: SNAP, preview=preview, port=0) as web, \
                httpx.AsyncClient(base_url=web.url, timeout=5) as http:
            clock.push(shown(0, (30, 90, 210)).frame)

            async def blue_frame() -> bool:
                reply = await http.get("/frame.jpg")
                return reply.status_code == 200 and close_to(centre_colour(reply.content), (30, 90, 210))

            await wait_for(blue_frame, 5, "the pushed frame on /frame.jpg", interval=0.06)
    finally:
        await clock.aclose()
    assert clock.stats().sinks == ("preview",)
    with pytest.raises(VideoOutputError, match="closed"):
        preview.open(W, H, 30.0)


async def test_no_video_output_means_no_picture_with_a_reason() -> None:
    async with WebServer(lambda: SNAP, port=0) as web, httpx.AsyncClient(base_url=web.url, timeout=5) as http:
        for path in ("/frame.jpg", "/stream.mjpg"):
            reply = await http.get(path)
            assert reply.status_code == 503 and "no video output" in reply.json()["error"]


# ------------------------------------------------------------------------------------------ the live state


class CountingState:
    def __init__(self, size: int = 0) -> None:
        self.calls = 0
        self.padding = "x" * size

    def __call__(self) -> dict[str, Any]:
        self.calls += 1
        return {"scope": {"state": "streaming"}, "n": self.calls, "padding": self.padding}


async def test_fifty_idle_websocket_clients_cost_one_state_per_tick() -> None:
    state = CountingState()
    async with WebServer(state, port=0) as web, aiohttp.ClientSession() as session:
        clients = [await session.ws_connect(web.url + "ws") for _ in range(50)]
        try:
            firsts = [await ws.receive_json(timeout=5) for ws in clients]
            assert all(m["type"] == "state" for m in firsts)
            await wait_for(lambda: len(web.live.clients) == 50, 5, "50 clients")
            calls, messages = state.calls, web.live.messages
            seconds = [await ws.receive_json(timeout=5) for ws in clients]
            later = [await ws.receive_json(timeout=5) for ws in clients]
            assert all(b["n"] > a["n"] for a, b in zip(seconds, later, strict=True))
            # The state is made once per tick for all of them, not once per client.
            assert state.calls - calls <= web.live.messages - messages + 2
            ping = clients[0]
            await ping.send_json({"type": "ping"})
            while (answer := await ping.receive_json(timeout=5))["type"] != "pong":
                assert answer["type"] == "state"
        finally:
            for ws in clients:
                await ws.close()
        await wait_for(lambda: not web.live.clients, 5, "the clients gone")


async def test_a_websocket_message_nested_too_deeply_is_no_ping_and_the_client_stays(server: WebServer) -> None:
    async with aiohttp.ClientSession() as session, session.ws_connect(server.url + "ws") as live:
        assert (await live.receive_json(timeout=5))["type"] == "state"
        await live.send_str("[" * 2_000 + "]" * 2_000)  # within the 4 KiB a message may have
        await live.send_json({"type": "ping"})
        while (answer := await live.receive_json(timeout=5))["type"] != "pong":
            assert answer["type"] == "state"


def _raw_websocket(port: int) -> socket.socket:
    """A WebSocket client that shakes hands and then never reads a byte (a small receive buffer, too)."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", port))
    sock.sendall(f"GET /ws HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                 "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n".encode())
    return sock


async def test_a_client_that_never_reads_is_dropped_and_the_others_go_on(caplog: pytest.LogCaptureFixture) -> None:
    state = CountingState(size=200_000)  # big states fill the stuck client's buffers within a second or two
    async with WebServer(state, port=0) as web, aiohttp.ClientSession() as session:
        web.live.stall_timeout = 1.0
        stuck = _raw_websocket(web.port)
        try:
            async with session.ws_connect(web.url + "ws", max_msg_size=0) as good:
                await wait_for(lambda: len(web.live.clients) == 2, 5, "both clients")
                await wait_for(lambda: web.live.dropped_slow == 1, 20, "the stuck client dropped")
                assert len(web.live.clients) == 1
                before = (await good.receive_json(timeout=5))["n"]
                await wait_for(lambda: web.live.messages > 3, 5, "more states")
                after = (await good.receive_json(timeout=5))["n"]
                while after <= before:
                    after = (await good.receive_json(timeout=5))["n"]
        finally:
            stuck.close()
    assert any("not reading" in r.getMessage() for r in caplog.records)


# ------------------------------------------------------------------------------------------ settings


def test_http_flags_their_old_names_and_variables(caplog: pytest.LogCaptureFixture) -> None:
    from metadj_bridge.errors import ConfigError
    from metadj_bridge.run.plan import RunOptions, make_plan
    from tests.test_plan import options, profile

    plan = make_plan(options(), profile())
    assert (plan.http_host, plan.http_port, plan.http_token) == ("127.0.0.1", 8765, None)
    assert not caplog.records
    lan = make_plan(options("--http-host", "0.0.0.0", "--http-port", "9000", "--http-token", "t"), profile())
    assert (lan.http_host, lan.http_port, lan.http_token) == ("0.0.0.0", 9000, "t")
    for flag in ("--status-port", "--preview-port"):
        caplog.clear()
        old = make_plan(options(flag, "8800"), profile())
        assert old.http_port == 8800 and old.preview_port == 8800
        assert [r.getMessage() for r in caplog.records] == [
            f"{flag} is deprecated (one web server serves the preview, /status and /metrics now): use --http-port"]
    assert make_plan(options("--status-port", "8800", "--http-port", "8801"), profile()).http_port == 8801
    with pytest.raises(SystemExit):  # the command line refuses it first (profile.options.port) ...
        options("--preview-port", "70000")
    with pytest.raises(ConfigError, match="--preview-port 70000: must be 0-65535"):  # ... and the plan, from anywhere
        make_plan(dataclasses.replace(options(), preview_port=70000), profile())
    env = RunOptions.from_args(build_parser_args(), {"METADJ_HTTP_PORT": "8123", "METADJ_HTTP_HOST": "::"})
    assert (make_plan(env, profile()).http_port, env.http_host) == (8123, "::")


def build_parser_args() -> Any:
    from metadj_bridge.cli import build_parser

    return build_parser().parse_args(["run"])


async def test_a_frame_that_cannot_be_encoded_costs_that_frame_not_the_picture(
        server: WebServer, preview: PreviewSink, caplog: pytest.LogCaptureFixture) -> None:
    async with httpx.AsyncClient(base_url=server.url, timeout=10) as http:
        async with http.stream("GET", "/stream.mjpg") as reply:
            parts = reply.aiter_bytes()
            preview.show(shown(1))
            assert len(await parts_of(parts, 1)) == 1
            broken = shown(2)
            preview.show(ShownFrame(frame=None, index=2, t=broken.t, kind="live",  # type: ignore[arg-type]
                                    arrived=broken.arrived))
            await wait_for(lambda: "could not be made JPEGs" in caplog.text, 5, "the skipped frame said")
            preview.show(shown(3, (20, 200, 40)))
            (part,) = await parts_of(parts, 1)
    assert centre_colour(part)[1] > 150  # the frame after the broken one: the picture went on


def _no_constants(name: str) -> None:
    raise ValueError(f"{name} is not JSON: a page's JSON.parse throws on it")


async def test_a_state_holding_nan_and_infinity_reaches_every_client_as_strict_json() -> None:
    nan, inf = float("nan"), float("inf")
    snap = {"version": "test", "audio": {"level": nan, "peak": inf, "bands": [0.5, -inf]}, "tempo": (nan, 120.0)}
    async with WebServer(lambda: snap, port=0) as web, aiohttp.ClientSession() as session:
        texts = {}
        for path in ("status", "api/state"):
            async with session.get(web.url + path) as answer:
                assert answer.status == 200
                texts[path] = await answer.text()
        async with session.ws_connect(web.url + "ws") as live:
            texts["ws"] = await live.receive_str(timeout=5)
        for path, text in texts.items():
            state = json.loads(text, parse_constant=_no_constants)  # raises on NaN / Infinity
            assert state["audio"] == {"level": None, "peak": None, "bands": [0.5, None]}, path
            assert state["tempo"] == [None, 120.0] and state["version"] == "test", path
