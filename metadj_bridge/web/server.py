"""The bridge's web server (aiohttp): the control page, the picture, the status, the live state and the control API.

Routes, answers and the token rule are in docs/web.md. Here: where it listens (127.0.0.1:8765 by default; a taken
port moves to the next free one and the log says where), and the guard every request passes first:

- on a LAN bind (a host that is not loopback) every route but the page and its files wants the access token
  (``Authorization: Bearer TOKEN`` or ``?token=TOKEN``), compared in constant time;
- a POST or WebSocket from a page of another site (its ``Origin`` is not the host asked) is refused, and a POST
  must say ``Content-Type: application/json``, so a web page open in the same browser cannot drive the show;
- on a loopback bind, a request for a host that is not this machine (``Host: rebind.example:8765``) is refused: a
  page of another site that points its own name at 127.0.0.1 (DNS rebinding) is "same origin" with itself, so only
  the ``Host`` tells it from the performer's page, and without it that page could read the state and the picture
  and drive the show;
- every refusal and failure is a JSON answer ``{"error": ..., "field": ...}``; what a client can make aiohttp
  log is rate-limited (:mod:`.problems`);
- it holds at most ``connections.MAX_CONNECTIONS`` connections, and closes one that sends no request for
  ``connections.IDLE_TIMEOUT`` seconds (:mod:`.connections`): a client cannot take the descriptors the show needs.
"""

from __future__ import annotations

import asyncio
import errno
import hmac
import logging
import secrets
import socket
import sys
from collections.abc import Awaitable, Callable, Mapping
from importlib import resources
from pathlib import Path
from typing import Any, Protocol, Self, TextIO
from urllib.parse import quote, urlsplit

from aiohttp import web

from metadj_bridge.errors import ConfigError, RateLimitedWarning, printable
from metadj_bridge.lifecycle import Lifecycle
from metadj_bridge.status.server import CONTENT_TYPE, prometheus_text
from metadj_bridge.video.preview import PreviewSink
from metadj_bridge.web import connections
from metadj_bridge.web.problems import RequestProblems, is_loopback, names_this_machine
from metadj_bridge.web.strict_json import dumps

__all__ = ["DEFAULT_PORT", "Control", "WebServer", "json_error"]

log = logging.getLogger(__name__)

DEFAULT_PORT = 8765
#: A taken port: try this many ports after it, then any free port.
PORT_TRIES = 20
#: The largest request body taken (a prompt is at most 1000 characters).
MAX_BODY = 64 * 1024
#: Routes anyone who reaches the server may read: the page must load to pick the token up from its URL.
PUBLIC = ("/", "/index.html", "/favicon.ico")
STATIC_DIR = Path(str(resources.files("metadj_bridge.web") / "static"))

Snapshot = dict[str, Any]
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

FALLBACK_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1">
<title>metadj-bridge</title></head><body style="background:#000;color:#aaa;font:16px sans-serif;text-align:center">
<img id="p" alt="the picture" style="max-width:100%"><p>metadj-bridge &middot; <a href="/status">status</a></p>
<script>const t=new URLSearchParams(location.search).get("token");
document.getElementById("p").src="/stream.mjpg"+(t?"?token="+encodeURIComponent(t):"");</script></body></html>
"""


class Control(Protocol):
    """What the API calls: ``run.control.ShowControl``. A refusal is a ``MetaDJError`` with ``field`` and ``kind``
    (``bad``, ``unknown``, ``forbidden``, ``unavailable``)."""

    def state(self) -> dict[str, Any]: ...
    def set_theme(self, name: object, who: str) -> None: ...
    def action(self, name: object, who: str) -> None: ...
    def set_crossfade(self, value: object, who: str) -> None: ...
    def type_prompt(self, text: object, who: str) -> None: ...
    def switch_profile(self, path: object, who: str) -> str: ...
    def request_switch(self, real: str, who: str) -> None: ...
    def save_scene(self, name: object, who: str) -> None: ...
    def recall_scene(self, name: object, morph_bars: object, who: str) -> None: ...
    async def learn(self, target: object, name: object, who: str) -> None: ...
    async def cancel_learn(self, who: str) -> None: ...


def json_error(status: int, message: str, field: str | None = None) -> web.Response:
    body: dict[str, Any] = {"error": message}
    if field is not None:
        body["field"] = field
    return web.json_response(body, status=status, headers={"Cache-Control": "no-store"}, dumps=dumps)


class WebServer:
    """One aiohttp server on ``host:port`` (``port`` 0: any free one; taken: the next free one).

    ``snapshot`` gives the status snapshot (``BridgeStatus.snapshot``); ``control`` the show's controls (None: the
    API answers 503, e.g. while replaying); ``preview`` the picture. ``token``: the LAN access token (a random one
    when None and the host is not loopback); ``out``: where the LAN URL and its QR code are printed.
    """

    def __init__(self, snapshot: Callable[[], Snapshot], *, control: Control | None = None,
                 preview: PreviewSink | None = None, host: str = "127.0.0.1", port: int = DEFAULT_PORT,
                 token: str | None = None, out: TextIO | None = None,
                 screens: Mapping[str, PreviewSink] | None = None) -> None:
        if not 0 <= port <= 65535:
            raise ConfigError(f"--http-port {port}: not a TCP port (0-65535, 0 picks a free one)")
        self.snapshot = snapshot
        self.control = control
        self.preview = preview
        #: The further screens' pictures, by screen name (``/screens/NAME/stream.mjpg``).
        self.screens = dict(screens or {})
        self.host = host
        self.port = port
        self.lan = not is_loopback(host)
        self.token = (token or secrets.token_urlsafe(16)) if self.lan else token
        self._out = out
        self._runner: web.AppRunner | None = None
        self._life = Lifecycle("WebServer")
        self._failures = RateLimitedWarning(log, "web server: the status snapshot failed")
        self._requests = RequestProblems()
        self._foreign = RateLimitedWarning(log, "web: requests for another host refused (DNS rebinding?)")
        self.live: Any = None  # the WebSocket hub (.live.LiveState), once started

    @property
    def url(self) -> str:
        """The server's root URL (``http://host:port/``), without the token."""
        if self._runner is None:
            raise RuntimeError("the web server is not started")
        host = self.host
        if host in ("0.0.0.0", "::"):
            host = _this_machine() or ("127.0.0.1" if host == "0.0.0.0" else "::1")
        shown = f"[{host}]" if ":" in host else host
        return f"http://{shown}:{self.port}/"

    @property
    def page_url(self) -> str:
        """The page's URL with the token when one is needed (for a phone: the QR code says this)."""
        return self.url + (f"?token={quote(self.token)}" if self.lan and self.token else "")

    async def start(self) -> None:
        if not self._life.begin():  # raises ClosedError once closed
            return
        with self._life.opening():  # nothing served: start() may be tried again
            asked = self.port
            sock = self._bind()
            self.port = sock.getsockname()[1]
            await self._serve(sock)
        if asked and self.port != asked:
            log.warning("web: control page at %s (%d was taken by another program or bridge; set --http-port to "
                        "choose one)", self.url, asked)
        else:
            log.info("web: control page at %s", self.url)
        if self.preview is not None:
            self.preview.url = self.url + "stream.mjpg"
            log.info("preview at %s (and %sframe.jpg)", self.preview.url, self.url)
        for name, sink in self.screens.items():
            sink.url = f"{self.url}screens/{quote(name)}/stream.mjpg"
        if self.lan:
            log.warning("web: open to other machines on %s: requests need the access token (printed on the "
                        "terminal; --http-token to choose one)", self.host)
            self._print_lan_url()

    def _bind(self) -> socket.socket:
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        first = self.port
        candidates = [first] if first == 0 else [*range(first, min(first + PORT_TRIES, 65535) + 1), 0]
        for port in candidates:
            try:
                return socket.create_server((self.host, port), family=family)
            except OSError as exc:
                if exc.errno not in (errno.EADDRINUSE, getattr(errno, "WSAEADDRINUSE", -1)):
                    raise ConfigError(f"web server: cannot listen on {self.host} port {port}: {exc.strerror or exc}"
                                      " (choose another --http-host or --http-port, or 0 for any free port)") from exc
        raise ConfigError(f"web server: no free port on {self.host} (tried from {first} on, then any port)")

    async def _serve(self, sock: socket.socket) -> None:
        from metadj_bridge.web.api import add_api_routes
        from metadj_bridge.web.live import LiveState
        from metadj_bridge.web.picture import add_picture_routes

        app = web.Application(middlewares=[self._guard], client_max_size=MAX_BODY)
        app.router.add_get("/", self._page)
        app.router.add_get("/index.html", self._page)
        if _has_static():
            app.router.add_static("/static/", STATIC_DIR, follow_symlinks=False)
        app.router.add_get("/status", self._status)
        app.router.add_get("/metrics", self._metrics)
        self.live = LiveState(self.state)
        app.router.add_get("/ws", self.live.handle)
        add_picture_routes(app, self.preview)
        for name, sink in self.screens.items():
            add_picture_routes(app, sink, f"/screens/{name}")  # matched decoded: a name may hold spaces
        add_api_routes(app, self)
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0, logger=self._requests,
                               handler_cancellation=True, keepalive_timeout=connections.IDLE_TIMEOUT)
        try:
            await runner.setup()
            await connections.CappedSite(runner, sock).start()
            await self.live.start()
        except BaseException:
            sock.close()
            await self.live.aclose()
            await runner.cleanup()
            raise
        self._runner = runner

    async def aclose(self) -> None:
        """Stop serving (open streams and WebSockets end); harmless when called again."""
        self._life.end()
        runner, self._runner = self._runner, None
        if self.live is not None:
            await self.live.aclose()
        if runner is not None:
            await runner.cleanup()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    # ------------------------------------------------------------------ state

    def take_snapshot(self) -> Snapshot | None:
        try:
            return self.snapshot()
        except Exception as exc:  # noqa: BLE001 - a broken snapshot answers 500, the server stays up
            self._failures.note(f"{type(exc).__name__}: {exc}")
            return None

    def state(self) -> Snapshot | None:
        """The live state (docs/web.md): the snapshot with ``control`` added; None when the snapshot failed."""
        snap = self.take_snapshot()
        if snap is None:
            return None
        control: dict[str, Any] = {}
        if self.control is not None:
            try:
                control = self.control.state()
            except Exception as exc:  # noqa: BLE001 - the state without its control part, and one warning
                self._failures.note(f"control state: {type(exc).__name__}: {exc}")
        control.update(stream="/stream.mjpg", frame="/frame.jpg", token_required=self.lan)
        return {"type": "state", **snap, "control": control}

    # ------------------------------------------------------------------ the guard

    @web.middleware
    async def _guard(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        path = request.path
        host = request.headers.get("Host")
        if not self.lan and host is not None and not names_this_machine(host):
            self._foreign.note(f"{request.remote or '?'} asked for {printable(host[:100])}")
            return json_error(403, f"Host {host[:100]!r}: this bridge serves this machine only (open "
                              f"http://127.0.0.1:{self.port}/, or --http-host for other machines)", "host")
        origin = request.headers.get("Origin")
        if (request.method == "POST" or path == "/ws") and origin and urlsplit(origin).netloc != request.host:
            return json_error(403, f"requests from a page of another site ({origin[:100]}) are refused", "origin")
        if self.lan and path not in PUBLIC and not path.startswith("/static/") and not self._has_token(request):
            return json_error(401, "this bridge wants its access token (Authorization: Bearer TOKEN or "
                              "?token=TOKEN)", "token")
        if request.method == "POST" and request.content_type != "application/json":
            return json_error(415, f"a POST carries JSON (Content-Type: application/json), not "
                              f"{request.content_type or 'nothing'}", "body")
        try:
            return await handler(request)
        except OSError as exc:  # a /static/ name the file system refuses (too long, ...) names no file of ours
            if not path.startswith("/static/"):
                raise
            return json_error(404, f"Not Found: {request.method} {path[:200]} ({exc.strerror or 'no such file'})")
        except web.HTTPException as exc:
            if exc.status < 400 or exc.content_type == "application/json":
                raise
            return json_error(exc.status, f"{exc.reason}: {request.method} {path[:200]}"
                              + (" (see docs/web.md for the routes)" if exc.status in (404, 405) else ""))

    def _has_token(self, request: web.Request) -> bool:
        token = self.token or ""
        given = request.query.get("token", "")
        header = request.headers.get("Authorization", "")
        if header[:7].lower() == "bearer ":
            given = header[7:].strip()
        return bool(token) and hmac.compare_digest(given.encode(), token.encode())

    # ------------------------------------------------------------------ routes

    async def _page(self, request: web.Request) -> web.StreamResponse:
        index = STATIC_DIR / "index.html"
        if await asyncio.to_thread(index.is_file):
            return web.FileResponse(index, headers={"Cache-Control": "no-store"})
        return web.Response(text=FALLBACK_PAGE, content_type="text/html")

    async def _status(self, request: web.Request) -> web.Response:
        snap = self.take_snapshot()
        if snap is None:
            return json_error(500, "the status snapshot failed; see the bridge's log")
        return web.Response(text=dumps(snap), content_type="application/json")

    async def _metrics(self, request: web.Request) -> web.Response:
        snap = self.take_snapshot()
        if snap is None:
            return web.Response(status=500, text="# the status snapshot failed; see the bridge's log\n")
        return web.Response(body=prometheus_text(snap).encode(), headers={"Content-Type": CONTENT_TYPE})

    def _print_lan_url(self) -> None:
        out = self._out or sys.stderr
        lines = [f"\ncontrol page for phones and tablets: {self.page_url}", f"access token: {self.token}"]
        try:
            import segno

            qr = segno.make(self.page_url, error="l")
            from io import StringIO

            buffer = StringIO()
            qr.terminal(out=buffer, compact=True)
            lines.append(buffer.getvalue())
        except Exception as exc:  # noqa: BLE001 - no QR code is no reason to stop the show
            lines.append(f"(no QR code: {type(exc).__name__}: {exc})")
        print("\n".join(lines), file=out, flush=True)


def _this_machine() -> str | None:
    """This machine's address on the LAN (the one a route to the outside would use), without sending anything."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("192.0.2.1", 9))  # TEST-NET-1: connect() on UDP only picks the route
            address = probe.getsockname()[0]
        except OSError:
            return None
    return None if address.startswith("127.") or address == "0.0.0.0" else str(address)


def _has_static() -> bool:
    return STATIC_DIR.is_dir()
