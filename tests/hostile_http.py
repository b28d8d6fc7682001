"""A real HTTP server on loopback that misbehaves on purpose, as a broken proxy in front of a rented GPU would.

:class:`HostileServer` speaks raw HTTP/1.1 over an asyncio socket server, so it can do what no well-behaved
framework lets it: a redirect loop, a corrupt gzip body, an answer that trickles a byte at a time, slow headers, an
endless body, a garbage status line, HTML or huge or deeply nested JSON instead of Scope's answers, and a WebRTC
answer whose SDP is nonsense, or is the upstream's rewritten by :attr:`HostileServer.rewrite_sdp` (``rewrite-sdp``:
valid HTTP, hostile WebRTC), or whose session id is a path of its own (``session-id``: the upstream's answer, or a
made-up one, with :attr:`HostileServer.session_id` in it). In mode ``good`` it forwards every request to a real
upstream (the project's Scope emulator), so a test can turn it good and watch the bridge heal. It records every
request target (path and query) it was sent. One request per connection (``Connection: close``) keeps it simple.
"""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import json
from collections.abc import Callable
from typing import Any

import httpx

#: Every way the server can answer; ``good`` forwards to the upstream.
MODES = (
    "good",
    "healthy",
    "redirect-loop",
    "corrupt-gzip",
    "trickle",
    "slow-headers",
    "endless",
    "garbage-status",
    "html",
    "huge-json",
    "deep-json",
    "bad-sdp",
    "rewrite-sdp",
    "escapes",
    "session-id",
    "ice-servers",
)

HEALTH = {"status": "healthy", "version": "0.2.4", "server_start_time": 1.0, "git_commit": "hostile"}
#: The endless body stops here on its own, whatever the client does (the helper must end by itself).
ENDLESS_LIMIT = 256 * 1024 * 1024


class HostileServer:
    """``mode`` may change while it runs; ``upstream`` is where mode ``good`` forwards (and ``bad-sdp`` forwards
    everything but the offer). With ``only`` (path prefixes), only those paths misbehave; the rest is forwarded."""

    def __init__(self, mode: str = "good", upstream: str | None = None, *, only: tuple[str, ...] = (),
                 trickle_interval: float = 0.2) -> None:
        assert mode in MODES, mode
        self.mode = mode
        self.upstream = upstream
        self.only = only
        self.trickle_interval = trickle_interval
        #: Every request target received ("/health?token=abc"), in order.
        self.targets: list[str] = []
        #: The session id mode ``session-id`` puts into the offer's answer.
        self.session_id: object = "../../hostile/steered"
        #: What mode ``rewrite-sdp`` does to the upstream's SDP answer (valid HTTP, a WebRTC answer that misbehaves).
        self.rewrite_sdp: Callable[[str], str] = lambda sdp: sdp
        #: The ``iceServers`` mode ``ice-servers`` hands out (the rest is forwarded).
        self.ice_servers: object = [{"urls": "foo:bar"}]
        #: Bytes of endless body written, over all connections.
        self.endless_sent = 0
        self._server: asyncio.Server | None = None
        self._handlers: set[asyncio.Task[None]] = set()
        self._http = httpx.AsyncClient(timeout=10)

    @property
    def busy(self) -> int:
        """Connections still being answered."""
        return len(self._handlers)

    @property
    def url(self) -> str:
        assert self._server is not None
        port = self._server.sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}"

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)

    async def aclose(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._handlers):
            task.cancel()
        if self._handlers:
            await asyncio.wait(list(self._handlers))
        if self._server is not None:
            await self._server.wait_closed()
        await self._http.aclose()

    # ------------------------------------------------------------------ one connection

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        try:
            method, target, headers, body = await _read_request(reader)
            self.targets.append(target)
            await self._answer(writer, method, target, headers, body)
        except (ConnectionError, asyncio.IncompleteReadError, ValueError):
            pass  # the client gave up (as it should when the answer never ends)
        except asyncio.CancelledError:
            pass  # aclose() ends an answer still trickling; the task ends quietly
        finally:
            self._handlers.discard(task)
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def _answer(
        self, writer: asyncio.StreamWriter, method: str, target: str, headers: dict[str, str], body: bytes
    ) -> None:
        mode = self.mode
        if self.only and not target.split("?")[0].startswith(self.only):
            mode = "good"
        if mode == "bad-sdp":
            if method == "POST" and target.split("?")[0].endswith("/api/v1/webrtc/offer"):
                answer = {"sdp": "v=0\r\nthis is not an SDP answer\r\n", "type": "answer", "sessionId": "hostile"}
                await _send(writer, 200, json.dumps(answer).encode(), "application/json")
                return
            mode = "good"
        if mode == "ice-servers":
            if target.split("?")[0].endswith("/api/v1/webrtc/ice-servers"):
                body = json.dumps({"iceServers": self.ice_servers}).encode()
                await _send(writer, 200, body, "application/json")
                return
            mode = "good"
        if mode == "rewrite-sdp":
            if method == "POST" and target.split("?")[0].endswith("/api/v1/webrtc/offer"):
                assert self.upstream is not None, "mode rewrite-sdp needs an upstream"
                answer = (await self._http.post(self.upstream + target, content=body,
                                                headers={"content-type": "application/json"})).json()
                answer["sdp"] = self.rewrite_sdp(answer["sdp"])
                await _send(writer, 200, json.dumps(answer).encode(), "application/json")
                return
            mode = "good"
        if mode == "session-id":
            if method == "POST" and target.split("?")[0].endswith("/api/v1/webrtc/offer"):
                answer: dict[str, Any] = {"sdp": "v=0\r\n", "type": "answer"}
                if self.upstream is not None:
                    answer = (await self._http.post(self.upstream + target, content=body,
                                                    headers={"content-type": "application/json"})).json()
                answer["sessionId"] = self.session_id
                await _send(writer, 200, json.dumps(answer).encode(), "application/json")
                return
            mode = "good"
        if mode == "good":
            await self._forward(writer, method, target, headers, body)
        elif mode == "healthy":
            await _send(writer, 200, json.dumps(HEALTH).encode(), "application/json")
        elif mode == "redirect-loop":
            await _send(writer, 302, b"", "text/plain", extra={"Location": target})
        elif mode == "corrupt-gzip":
            corrupt = gzip.compress(json.dumps(HEALTH).encode())[:12] + b"\xff" * 40
            await _send(writer, 200, corrupt, "application/json", extra={"Content-Encoding": "gzip"})
        elif mode == "trickle":
            await self._trickle(writer, json.dumps(HEALTH).encode())
        elif mode == "slow-headers":
            await self._slow_headers(writer)
        elif mode == "endless":
            await self._endless(writer)
        elif mode == "garbage-status":
            writer.write(b"SPAM SPAM SPAM\r\nwhat: ever\r\n\r\n")
            await writer.drain()
        elif mode == "html":
            await _send(writer, 200, b"<html><body>502 Bad Gateway</body></html>", "text/html")
        elif mode == "huge-json":
            await self._huge_json(writer)
        elif mode == "escapes":  # an error whose words would clear the terminal and forge a log line
            detail = {"detail": "\x1b[2J\x1b[31mGPU on fire\r\n12:00:00 INFO all good\x07"}
            await _send(writer, 500, json.dumps(detail).encode(), "application/json")
        elif mode == "deep-json":
            await _send(writer, 200, b"[" * 200_000 + b"]" * 200_000, "application/json")
        else:
            raise AssertionError(f"unknown mode {mode}")

    async def _forward(
        self, writer: asyncio.StreamWriter, method: str, target: str, headers: dict[str, str], body: bytes
    ) -> None:
        assert self.upstream is not None, "mode good needs an upstream"
        wanted = {k: v for k, v in headers.items() if k in ("content-type",)}
        reply = await self._http.request(method, self.upstream + target, content=body, headers=wanted)
        await _send(writer, reply.status_code, reply.content, reply.headers.get("content-type", "application/json"))

    async def _trickle(self, writer: asyncio.StreamWriter, body: bytes) -> None:
        """Headers at once, then the body one byte every ``trickle_interval`` s: never a read timeout, never done."""
        writer.write(_head(200, len(body), "application/json"))
        await writer.drain()
        for byte in body:
            await asyncio.sleep(self.trickle_interval)
            writer.write(bytes([byte]))
            await writer.drain()

    async def _slow_headers(self, writer: asyncio.StreamWriter) -> None:
        for byte in _head(200, 2, "application/json") + b"{}":
            writer.write(bytes([byte]))
            await writer.drain()
            await asyncio.sleep(self.trickle_interval)

    async def _endless(self, writer: asyncio.StreamWriter) -> None:
        """A chunked body that never ends (until the client hangs up, or ENDLESS_LIMIT)."""
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n"
                     b"Connection: close\r\n\r\n")
        chunk = b" " * 65536
        while self.endless_sent < ENDLESS_LIMIT:
            writer.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
            await writer.drain()
            self.endless_sent += len(chunk)

    async def _huge_json(self, writer: asyncio.StreamWriter) -> None:
        """Valid JSON of 16 MB, announced with its length, written piece by piece."""
        item = b'"' + b"x" * 1022 + b'",'
        count = 16 * 1024
        total = 1 + len(item) * count + 4
        writer.write(_head(200, total, "application/json") + b"[")
        for _ in range(count):
            writer.write(item)
            await writer.drain()
        writer.write(b"1.0]")
        await writer.drain()


async def _read_request(reader: asyncio.StreamReader) -> tuple[str, str, dict[str, str], bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    method, target, _ = lines[0].split(" ", 2)
    headers = {}
    for line in lines[1:]:
        if ":" in line:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
    length = int(headers.get("content-length", "0") or 0)
    body = await reader.readexactly(length) if length else b""
    return method, target, headers, body


def _head(status: int, length: int, content_type: str, extra: dict[str, str] | None = None) -> bytes:
    fields: dict[str, Any] = {"Content-Type": content_type, "Content-Length": length, "Connection": "close"}
    fields.update(extra or {})
    lines = [f"HTTP/1.1 {status} Whatever"] + [f"{k}: {v}" for k, v in fields.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


async def _send(writer: asyncio.StreamWriter, status: int, body: bytes, content_type: str,
                extra: dict[str, str] | None = None) -> None:
    writer.write(_head(status, len(body), content_type, extra) + body)
    await writer.drain()
