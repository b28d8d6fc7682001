"""OSCQuery: the bridge's OSC address space over HTTP JSON, advertised on mDNS, so TouchOSC, Chataigne and
TouchDesigner find the bridge and its addresses without anyone typing them.

:class:`OscQueryService` serves the tree that :mod:`.osc_space` builds from the running profile on an HTTP port of
its own (OSCQuery clients ask for ``/``, which the web server keeps for the control page): by default the TCP port
next to the OSC input's UDP port (7002 for OSC on 7001), else the next free one up to ten further, else any free
one. It listens on the OSC input's host, so an OSC input open to the LAN is discoverable there and a local one stays
local. It advertises ``_oscjson._tcp`` (the HTTP port) and ``_osc._udp`` (the OSC port) with python-zeroconf on
the interfaces the OSC input listens on, and withdraws both on close. A failure to advertise is one WARNING: the
show goes on, and clients can still be pointed at :attr:`OscQueryService.url`.

It holds at most :data:`MAX_CONNECTIONS` connections and closes one that sends no request for a while
(:mod:`.connections`): on a LAN, a client opening connections by the hundred cannot take the descriptors the show
needs.

The tree follows the running profile: :meth:`OscQueryService.refresh` rebuilds it now, and every request rebuilds
it first when ``profile_getter()`` returns another profile than the one it was built from (a reload or a switch).
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import json
import logging
import re
import socket
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Self

from aiohttp import web

from metadj_bridge.errors import RateLimitedWarning
from metadj_bridge.inputs.osc_presets import OscPreset
from metadj_bridge.lifecycle import Lifecycle, TaskGroupSet
from metadj_bridge.profile.model import ShowProfile
from metadj_bridge.web import connections
from metadj_bridge.web.osc_space import ATTRIBUTES, OscNode, answer, build_space
from metadj_bridge.web.problems import RequestProblems

log = logging.getLogger(__name__)

OSCJSON_TYPE = "_oscjson._tcp.local."
OSC_TYPE = "_osc._udp.local."
#: How many ports above the OSC port's neighbour to try before taking any free one.
PORT_TRIES = 10
#: The most connections the OSCQuery server holds: its clients are a few OSC programs, each asking now and then.
MAX_CONNECTIONS = 20
#: Longest wait for mDNS goodbyes on close: shutting down never hangs on the network.
CLOSE_TIMEOUT = 3.0
_JSON = "application/json"


def _label(text: str) -> str:
    """A DNS label for our mDNS host name: letters, digits and ``-``."""
    return re.sub(r"[^A-Za-z0-9-]+", "-", text).strip("-")[:40] or "host"


class OscQueryService:
    """OSCQuery for a running bridge: HTTP JSON of its OSC address space, and the mDNS services that point there.

    ``profile_getter`` gives the running profile; ``osc_host``/``osc_port`` are where the OSC input listens (its
    real port, after a port 0 was resolved). ``http_port``: None for the OSC port's neighbour (or the next free
    one), 0 for any free port, or a port of its own. ``presets``: the OSC input's presets (default: the profile's,
    else Resolume and Ableton, as the bridge's run plan does). ``values``: the latest value by signal name (the
    bridge's ``SignalBoard.values``) to answer ``VALUE``; without it no value is offered. ``advertise``: False
    serves HTTP only.
    """

    def __init__(
        self,
        profile_getter: Callable[[], ShowProfile],
        osc_host: str,
        osc_port: int,
        http_port: int | None = None,
        *,
        presets: Iterable[OscPreset | str] | None = None,
        values: Mapping[str, float] | None = None,
        name: str | None = None,
        advertise: bool = True,
    ) -> None:
        self.profile_getter = profile_getter
        self.osc_host = osc_host
        self.osc_port = osc_port
        self.http_port = http_port
        self.presets = tuple(presets) if presets is not None else None
        self.values = values
        self.name = name or f"metadj-bridge on {socket.gethostname().split('.')[0]}"
        self.advertise = advertise
        #: The address the HTTP side listens on (the OSC host, resolved to an IP address at start).
        self.host = osc_host
        #: The mDNS instance names registered (they may carry " (2)" when another bridge had the name).
        self.advertised: list[str] = []
        #: Set when advertising has finished, whether it worked or not.
        self.advertising_done = asyncio.Event()
        self._life = Lifecycle("OscQueryService")
        self._runner: web.AppRunner | None = None
        self._tree: OscNode | None = None
        self._built_from: ShowProfile | None = None
        self._zeroconf: Any = None
        self._tasks = TaskGroupSet("oscquery", log)
        self._errors = RateLimitedWarning(log, "OSCQuery: request errors")
        self._traced = False

    # ------------------------------------------------------------------------------------------ the tree

    @property
    def url(self) -> str | None:
        """``http://host:port`` of the JSON tree, or None while nothing is served."""
        if self._runner is None:
            return None
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.http_port}"

    def refresh(self) -> OscNode:
        """Rebuild the tree from the running profile now (a reload or a switch changed what the bridge reads)."""
        profile = self.profile_getter()
        presets = self.presets if self.presets is not None else (profile.inputs.osc.presets or ("resolume", "ableton"))
        self._tree = build_space(profile, presets)
        self._built_from = profile
        return self._tree

    def tree(self) -> OscNode:
        """The current tree, rebuilt first when the running profile is another than the one it was built from."""
        if self._tree is None or self.profile_getter() is not self._built_from:
            return self.refresh()
        return self._tree

    def host_info(self) -> dict[str, Any]:
        """``?HOST_INFO``: the server's name, where its OSC input is, and which attributes it offers."""
        info: dict[str, Any] = {"NAME": f"{self.name}: {self.profile_getter().name}"}
        if not ipaddress.ip_address(self.host).is_unspecified:
            info["OSC_IP"] = self.host  # on 0.0.0.0 clients use the address they reached us at, as the spec says
        info["OSC_PORT"] = self.osc_port
        info["OSC_TRANSPORT"] = "UDP"
        info["EXTENSIONS"] = {name: name != "VALUE" or self.values is not None for name in ATTRIBUTES
                              if name not in ("FULL_PATH", "CONTENTS")}
        info["EXTENSIONS"].update(LISTEN=False, PATH_CHANGED=False)
        return info

    # ------------------------------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        """Serve the tree and begin advertising it (in the background: start does not wait for mDNS).

        When no port can be bound the service logs one WARNING and serves nothing (:attr:`url` stays None): the
        show goes on without discovery.
        """
        if not self._life.begin():
            return
        with self._life.opening():
            self.host = await self._resolve(self.osc_host)
            self.refresh()
        sock = self._bind()
        if sock is None:
            self.advertising_done.set()
            return
        self.http_port = sock.getsockname()[1]
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0, logger=RequestProblems(),
                               keepalive_timeout=connections.IDLE_TIMEOUT)
        try:
            await runner.setup()
            await connections.CappedSite(runner, sock, limit=MAX_CONNECTIONS, what="OSCQuery").start()
        except BaseException:
            sock.close()
            await runner.cleanup()
            raise
        self._runner = runner
        log.info("OSCQuery: %s (the OSC address space as JSON; OSC on %s:%d UDP)", self.url, self.host, self.osc_port)
        if self.advertise:
            self._tasks.spawn(self._advertise(), "mdns")
        else:
            self.advertising_done.set()

    async def aclose(self) -> None:
        """Withdraw the mDNS services and stop serving; harmless when called again."""
        if not self._life.end():
            return
        await self._tasks.aclose()
        zc, self._zeroconf = self._zeroconf, None
        if zc is not None:
            with contextlib.suppress(Exception):  # goodbyes are a courtesy: shutdown goes on whatever happens
                async with asyncio.timeout(CLOSE_TIMEOUT):
                    await zc.async_unregister_all_services()
            with contextlib.suppress(Exception):
                async with asyncio.timeout(CLOSE_TIMEOUT):
                    await zc.async_close()
        self.advertised.clear()
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    # ------------------------------------------------------------------------------------------ HTTP

    @staticmethod
    async def _resolve(host: str) -> str:
        """The OSC host as an IP address (a host name is looked up off the event loop; fallback 127.0.0.1)."""
        try:
            return str(ipaddress.ip_address(host))
        except ValueError:
            pass
        try:
            found = await asyncio.get_running_loop().getaddrinfo(host, None, type=socket.SOCK_STREAM)
        except OSError as exc:
            log.warning("OSCQuery: cannot resolve the OSC host %r (%s); serving on 127.0.0.1", host, exc)
            return "127.0.0.1"
        return str(found[0][4][0])

    def _candidates(self) -> list[int]:
        if self.http_port is not None:
            return [self.http_port]
        first = self.osc_port + 1 if 0 < self.osc_port < 65535 - PORT_TRIES else 0
        return [*(range(first, first + PORT_TRIES + 1) if first else ()), 0]

    def _bind(self) -> socket.socket | None:
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        problem = ""
        for port in self._candidates():
            try:
                return socket.create_server((self.host, port), family=family)
            except OSError as exc:
                problem = f"{self.host}:{port}: {exc.strerror or exc}"
        log.warning("OSCQuery: cannot listen (%s); the show goes on without OSCQuery discovery", problem)
        return None

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        if request.method not in ("GET", "HEAD"):
            return _json(405, {"error": f"{request.method}: OSCQuery answers GET only"}, Allow="GET, HEAD")
        try:
            status, body = answer(self.tree(), request.path, request.query.keys(), self.host_info(), self.values)
        except Exception as exc:  # noqa: BLE001 - a broken profile or tree answers 500; the show goes on
            if not self._traced:  # the first with its traceback, the rest counted
                self._traced = True
                log.error("OSCQuery: answering %s failed", request.path_qs[:200], exc_info=exc)
            else:
                self._errors.note(f"{type(exc).__name__}: {exc}")
            return _json(500, {"error": "the address space could not be built; see the bridge's log"})
        if body is None:
            return web.Response(status=status, headers=_HEADERS)
        return _json(status, body)

    # ------------------------------------------------------------------------------------------ mDNS

    def _interfaces(self) -> tuple[Any, list[str], Any]:
        """(zeroconf ``interfaces``, the addresses to advertise, the IP version) for the OSC input's host: its own
        address, or every interface and its addresses for 0.0.0.0 (and for ::, IPv6 addresses too)."""
        import ifaddr
        from zeroconf import InterfaceChoice, IPVersion

        ip = ipaddress.ip_address(self.host)
        if not ip.is_unspecified:
            return [self.host], [self.host], IPVersion.V6Only if ip.version == 6 else IPVersion.V4Only
        addresses = []
        for adapter in ifaddr.get_adapters():
            for found in adapter.ips:
                if found.is_IPv4 or ip.version == 6:
                    text = found.ip if isinstance(found.ip, str) else found.ip[0]
                    if not ipaddress.ip_address(text).is_loopback and not ipaddress.ip_address(text).is_link_local:
                        addresses.append(text)
        return InterfaceChoice.All, addresses or ["127.0.0.1"], IPVersion.All if ip.version == 6 else IPVersion.V4Only

    async def _advertise(self) -> None:
        try:
            from zeroconf import ServiceInfo
            from zeroconf.asyncio import AsyncZeroconf

            interfaces, addresses, version = self._interfaces()
            zc = self._zeroconf = AsyncZeroconf(interfaces=interfaces, ip_version=version)
            server = f"metadj-bridge-{_label(socket.gethostname().split('.')[0])}.local."
            instance = self.name.encode()[:63].decode(errors="ignore")  # a DNS label: 63 bytes at most
            infos = [ServiceInfo(kind, f"{instance}.{kind}", port=port, properties={"txtvers": "1"}, server=server,
                                 parsed_addresses=addresses)
                     for kind, port in ((OSCJSON_TYPE, self.http_port), (OSC_TYPE, self.osc_port))]

            async def register(info: ServiceInfo) -> None:
                await (await zc.async_register_service(info, allow_name_change=True))  # probe, then announce

            results = await asyncio.gather(*(register(info) for info in infos), return_exceptions=True)  # both at once
            problem = next((r for r in results if isinstance(r, BaseException)), None)
            if problem is not None:
                raise problem
            self.advertised.extend(info.name for info in infos)
            log.info("OSCQuery: advertised on mDNS as %r (_oscjson._tcp and _osc._udp) at %s", instance,
                     ", ".join(addresses))
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - no multicast here: one warning, the show goes on
            log.warning("OSCQuery: could not advertise on mDNS (%s: %s); clients can still be pointed at %s",
                        type(exc).__name__, exc, self.url)
            zc, self._zeroconf = self._zeroconf, None
            if zc is not None:
                with contextlib.suppress(Exception):
                    await zc.async_close()
        finally:
            self.advertising_done.set()


_HEADERS = {"Access-Control-Allow-Origin": "*", "Cache-Control": "no-store"}


def _json(status: int, body: Mapping[str, Any], **headers: str) -> web.Response:
    return web.Response(status=status, text=json.dumps(body), content_type=_JSON, headers={**_HEADERS, **headers})
