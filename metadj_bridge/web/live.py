"""``GET /ws``: the live state pushed to every page at up to 10 Hz, without letting a slow page cost the show.

One task makes the state's JSON once per tick (only while someone listens, and only sent when it changed or a
second passed). Each client has a writer task that sends the newest JSON when told there is one: while its
previous message is still going out (a client that does not read, a phone on bad Wi-Fi) the newer ones simply
replace each other, so a client costs one message of memory whatever it does, and a client that has not taken a
message for :data:`STALL_TIMEOUT` seconds is dropped. An idle client is one parked task and one socket.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Callable
from typing import Any

from aiohttp import WSMsgType, web

from metadj_bridge.errors import RateLimitedWarning
from metadj_bridge.web.strict_json import dumps

__all__ = ["LiveState"]

log = logging.getLogger(__name__)

RATE_HZ = 10.0
#: With no change, the state goes out anyway this often (a heartbeat the page can show).
HEARTBEAT_S = 1.0
#: A client that has not taken a message for this long is closed.
STALL_TIMEOUT = 10.0
MAX_CLIENTS = 200
PING_S = 20.0


class _Client:
    __slots__ = ("news", "peer", "request", "ws")

    def __init__(self, ws: web.WebSocketResponse, request: web.Request) -> None:
        self.ws = ws
        self.request = request
        self.peer = request.remote or "?"
        self.news = asyncio.Event()


class LiveState:
    """The WebSocket hub: ``state()`` gives the live state (None when it cannot be had just now)."""

    def __init__(self, state: Callable[[], dict[str, Any] | None], rate_hz: float = RATE_HZ) -> None:
        self._state = state
        self.period = 1.0 / rate_hz
        self.stall_timeout = STALL_TIMEOUT
        self.clients: set[_Client] = set()
        self.latest = ""
        self.messages = 0
        self.dropped_slow = 0
        self._task: asyncio.Task[None] | None = None
        self._closed = False
        self._slow = RateLimitedWarning(log, "web: WebSocket clients closed for not reading")

    async def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="web-live-state")

    async def aclose(self) -> None:
        self._closed = True
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for client in list(self.clients):
            _abort(client)

    def _text(self) -> str | None:
        state = self._state()
        return None if state is None else dumps(state, compact=True)

    async def _run(self) -> None:
        sent_at = float("-inf")
        while True:
            await asyncio.sleep(self.period)
            if not self.clients:
                continue
            try:
                text = self._text()
            except Exception as exc:  # noqa: BLE001 - the next tick tries again
                self._slow.listener_failed(self._text, exc)
                continue
            now = time.monotonic()
            if text is None or (text == self.latest and now - sent_at < HEARTBEAT_S):
                continue
            self.latest, sent_at = text, now
            self.messages += 1
            for client in self.clients:
                client.news.set()

    async def handle(self, request: web.Request) -> web.StreamResponse:
        if self._closed or len(self.clients) >= MAX_CLIENTS:
            return web.json_response({"error": f"too many live pages (at most {MAX_CLIENTS})"}, status=503)
        ws = web.WebSocketResponse(heartbeat=PING_S, max_msg_size=4096)
        await ws.prepare(request)
        client = _Client(ws, request)
        if not self.latest:
            text = self._text()
            self.latest = text or ""
        client.news.set()  # the newest state at once
        self.clients.add(client)
        writer = asyncio.get_running_loop().create_task(self._write(client), name=f"web-ws-{client.peer}")
        try:
            async for msg in ws:
                if msg.type == WSMsgType.TEXT and _is_ping(msg.data):
                    # Answered through the writer's turn would wait behind a state: a pong is tiny, send it now.
                    with contextlib.suppress(ConnectionError, RuntimeError):
                        await asyncio.wait_for(ws.send_str('{"type":"pong"}'), STALL_TIMEOUT)
        except (ConnectionError, TimeoutError):
            pass
        finally:
            self.clients.discard(client)
            writer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await writer
        return ws

    async def _write(self, client: _Client) -> None:
        ws = client.ws
        try:
            while not ws.closed:
                await client.news.wait()
                client.news.clear()
                if self.latest:
                    await asyncio.wait_for(ws.send_str(self.latest), self.stall_timeout)
        except TimeoutError:
            self.dropped_slow += 1
            self._slow.note(f"{client.peer} took no message for {self.stall_timeout:g} s")
            _abort(client)
        except (ConnectionError, RuntimeError):
            _abort(client)  # the socket went away under the write


def _abort(client: _Client) -> None:
    """Drop the client now, without a closing handshake it would not read either."""
    transport = client.request.transport
    if transport is not None:
        transport.abort()
    client.news.set()


def _is_ping(data: str) -> bool:
    try:
        message = json.loads(data)
    except (ValueError, RecursionError):  # not JSON, or nested too deeply to read: not a ping either
        return False
    return isinstance(message, dict) and message.get("type") == "ping"

