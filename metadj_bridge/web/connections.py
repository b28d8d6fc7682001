"""How many connections a client can make the bridge hold: :class:`CappedSite` serves an aiohttp runner on a socket,
as aiohttp's ``SockSite`` does, but holds at most ``limit`` connections at once.

Every connection costs a file descriptor, and the whole bridge shares a few hundred (256 by default on macOS, 1024 on
most Linux desktops): the Scope session, its WebRTC sockets, the show log. aiohttp keeps a connection that never
sends a request for about an hour, so a client on the LAN (a script, a scanner, a page reloading in a loop) that opens
connections by the hundred would leave nothing for the show, and once the process is out of descriptors asyncio's
accept loop logs a traceback for every try, tens of thousands a minute, on the event loop itself.

Here the connection over the limit is answered 503 with a sentence and closed at once, counted in one rate-limited
WARNING naming the peer; and :data:`IDLE_TIMEOUT` (the runner's ``keepalive_timeout``) closes a connection that
has sent no request for that long. Streams and WebSockets are requests in progress: the idle timeout never ends them,
and their own caps (``picture.MAX_VIEWERS``, ``live.MAX_CLIENTS``) still apply inside this one.
"""

from __future__ import annotations

import asyncio
import json
import logging
import socket
from typing import Any

from aiohttp import web

from metadj_bridge.errors import RateLimitedWarning

log = logging.getLogger(__name__)

#: The most connections one server holds: a performer's phone, tablet and laptop with a few crew, each browser with
#: its handful of connections, a picture or two and the live state, fit several times over.
MAX_CONNECTIONS = 64
#: Connections taken from the system per turn of the event loop (and the listen queue): a burst of connections over
#: the limit holds only this many descriptors at a time while they are refused.
ACCEPT_BATCH = 16
#: Seconds a connection may stay open without a request (aiohttp's ``keepalive_timeout``; its default is an hour).
IDLE_TIMEOUT = 15.0


class CappedSite(web.BaseSite):
    """Serves ``runner`` on the listening socket ``sock``; ``what`` names the server in the refusals' line."""

    def __init__(self, runner: web.BaseRunner, sock: socket.socket, *, limit: int = MAX_CONNECTIONS,
                 what: str = "web server") -> None:
        super().__init__(runner)
        self._sock = sock
        host, port = sock.getsockname()[:2]
        self._name = f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"
        self.limit = limit
        #: Connections open now (served), and those refused over the limit so far.
        self.open = 0
        self.refused = 0
        self._refusals = RateLimitedWarning(log, f"{what}: connections refused (at most {limit} at once)")

    @property
    def name(self) -> str:
        return self._name

    async def start(self) -> None:
        await super().start()
        self._server = await asyncio.get_running_loop().create_server(self._protocol, sock=self._sock,
                                                                          backlog=ACCEPT_BATCH)

    def _protocol(self) -> asyncio.Protocol:
        server = self._runner.server
        assert server is not None
        if self.open >= self.limit:
            return _Refused(self)
        self.open += 1
        return _Counted(self, server())

    def _refuse(self, peer: str) -> None:
        self.refused += 1
        self._refusals.note(f"{peer} opened connection {self.limit + 1}")


class _Counted(asyncio.Protocol):
    """aiohttp's own protocol for one connection, with the site's count given back when it ends."""

    __slots__ = ("_inner", "_site")

    def __init__(self, site: CappedSite, inner: asyncio.Protocol) -> None:
        self._site = site
        self._inner = inner

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._inner.connection_made(transport)

    def data_received(self, data: bytes) -> None:
        self._inner.data_received(data)

    def eof_received(self) -> bool | None:
        return self._inner.eof_received()

    def pause_writing(self) -> None:
        self._inner.pause_writing()

    def resume_writing(self) -> None:
        self._inner.resume_writing()

    def connection_lost(self, exc: Exception | None) -> None:
        self._site.open -= 1
        self._inner.connection_lost(exc)


class _Refused(asyncio.Protocol):
    """A connection over the limit: one 503 with a sentence, then closed, whatever the client sends."""

    def __init__(self, site: CappedSite) -> None:
        self._site = site

    def connection_made(self, transport: Any) -> None:
        peer = transport.get_extra_info("peername")
        self._site._refuse(str(peer[0]) if isinstance(peer, tuple) else "?")
        body = json.dumps({"error": f"this server already holds {self._site.limit} connections, the most it takes "
                                    "at once; close pages open elsewhere and try again", "field": "connections"})
        transport.write(f"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\nContent-Length: "
                        f"{len(body)}\r\nRetry-After: {int(IDLE_TIMEOUT)}\r\nConnection: close\r\n\r\n{body}".encode())
        transport.close()
