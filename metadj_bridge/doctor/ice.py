"""``metadj-bridge doctor``'s ICE/TURN checks: can this computer reach the STUN and TURN servers a remote Scope
hands out (a real STUN binding over UDP, a TCP connect for TURN over TCP/TLS), and does a remote Scope have any
TURN server at all (behind NAT, WebRTC needs one)."""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import os
import socket
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlsplit

from metadj_bridge.doctor.checks import Finding, Status
from metadj_bridge.errors import (
    ConfigError,
    ScopeError,
)
from metadj_bridge.scope.api import (
    ScopeClient,
)
from metadj_bridge.scope.http_errors import exception_reason

# ------------------------------------------------------------------------------------------------ ICE / TURN

#: The most ICE server URLs checked: aiortc uses only the first STUN and the first TURN server, and a Scope that lists
#: thousands must not make doctor open thousands of sockets and print thousands of lines.
MAX_ICE_URLS = 16

STUN_MAGIC = 0x2112A442
BINDING_REQUEST, BINDING_SUCCESS = 0x0001, 0x0101


@dataclass(frozen=True)
class IceUrl:
    scheme: str  # stun, stuns, turn, turns
    host: str
    port: int
    transport: str  # udp or tcp

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        query = f"?transport={self.transport}" if self.scheme.startswith("turn") else ""
        return f"{self.scheme}:{host}:{self.port}{query}"


def parse_ice_url(url: str) -> IceUrl:
    """``stun:host:port``, ``turn:host:port?transport=tcp``, ``turns:host`` (RFC 7064/7065) as parts (pure)."""
    scheme, sep, rest = url.strip().partition(":")
    scheme = scheme.lower()
    if not sep or scheme not in ("stun", "stuns", "turn", "turns"):
        raise ConfigError(f"ICE server URL {url!r}: not a stun:, stuns:, turn: or turns: URL")
    rest, _, query = rest.partition("?")
    rest = rest.removeprefix("//")
    if rest.startswith("["):
        host, _, tail = rest[1:].partition("]")
        port_text = tail.removeprefix(":")
    else:
        host, _, port_text = rest.partition(":")
    secure = scheme.endswith("s")
    try:
        port = int(port_text) if port_text else (5349 if secure else 3478)
    except ValueError:
        raise ConfigError(f"ICE server URL {url!r}: port {port_text!r} is not a number") from None
    if not host or not 0 < port < 65536:
        raise ConfigError(f"ICE server URL {url!r}: no host, or a port outside 1-65535")
    transport = parse_qs(query).get("transport", ["tcp" if secure else "udp"])[0].lower()
    return IceUrl(scheme, host, port, "tcp" if secure else transport)


def is_remote_host(host: str | None) -> bool:
    """Whether a Scope at ``host`` is beyond this machine and its local network (where NAT needs TURN) (pure)."""
    if not host:
        return False
    name = host.lower().rstrip(".")
    if name == "localhost" or name.endswith((".localhost", ".local", ".lan", ".home.arpa")):
        return False
    try:
        return ipaddress.ip_address(name.strip("[]")).is_global
    except ValueError:
        return True  # a public name: a rented GPU, a RunPod proxy


def stun_binding_request(transaction_id: bytes) -> bytes:
    """A STUN Binding request (RFC 5389) with no attributes."""
    if len(transaction_id) != 12:
        raise ValueError("a STUN transaction id is 12 bytes")
    return struct.pack("!HHI", BINDING_REQUEST, 0, STUN_MAGIC) + transaction_id


def is_binding_success(data: bytes, transaction_id: bytes) -> bool:
    if len(data) < 20:
        return False
    kind, _, cookie = struct.unpack("!HHI", data[:8])
    return kind == BINDING_SUCCESS and cookie == STUN_MAGIC and data[8:20] == transaction_id


class _StunClient(asyncio.DatagramProtocol):
    def __init__(self, transaction_id: bytes) -> None:
        self.transaction_id = transaction_id
        self.answered: asyncio.Future[bool] = asyncio.get_running_loop().create_future()

    def datagram_received(self, data: bytes, addr: Any) -> None:
        if is_binding_success(data, self.transaction_id) and not self.answered.done():
            self.answered.set_result(True)

    def error_received(self, exc: Exception) -> None:
        if not self.answered.done():
            self.answered.set_exception(exc)


async def probe_ice(ice: IceUrl, wait_s: float = 2.0) -> tuple[bool, str]:
    """(reachable, how): a STUN Binding over UDP, or a TCP connect for TCP and TLS transports, each given
    ``wait_s`` seconds."""
    loop = asyncio.get_running_loop()
    kind = socket.SOCK_DGRAM if ice.transport == "udp" else socket.SOCK_STREAM
    try:
        infos = await asyncio.wait_for(loop.getaddrinfo(ice.host, ice.port, type=kind), wait_s)
    except (OSError, TimeoutError, UnicodeError, ValueError) as exc:  # a host name from Scope may be anything
        return False, f"{ice.host!r} does not resolve ({exception_reason(exc)})"
    family = infos[0][0]
    host, port = str(infos[0][4][0]), int(infos[0][4][1])
    if kind == socket.SOCK_STREAM:
        try:
            _, writer = await asyncio.wait_for(asyncio.open_connection(host, port), wait_s)
        except (OSError, TimeoutError) as exc:
            return False, f"no TCP connection to {host}:{port} ({exception_reason(exc)})"
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
        return True, f"TCP connect to {host}:{port}"
    transaction_id = os.urandom(12)
    try:
        transport, protocol = await loop.create_datagram_endpoint(
            lambda: _StunClient(transaction_id), remote_addr=(host, port), family=family
        )
    except OSError as exc:
        return False, f"UDP to {host}:{port} failed ({exception_reason(exc)})"
    try:
        request = stun_binding_request(transaction_id)
        for _ in range(2):  # UDP may lose one packet
            transport.sendto(request)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(protocol.answered), wait_s / 2)
                return True, f"STUN binding answered by {host}:{port}"
        return False, f"no STUN answer from {host}:{port} over UDP within {wait_s:g} s"
    except OSError as exc:
        return False, f"UDP to {host}:{port} failed ({exc})"
    finally:
        transport.close()


#: TURN credential lifetimes Scope asks for when it starts (scope-api.md §4): it never refreshes them.
TURN_LIFETIMES = {"cloudflare": 600.0, "twilio": 86400.0}


def stale_turn(urls: Sequence[IceUrl], uptime: float | None) -> Finding | None:
    """A warning when Scope has been up longer than its TURN credentials live (pure)."""
    if uptime is None:
        return None
    for ice in urls:
        for provider, lifetime in TURN_LIFETIMES.items():
            if ice.scheme.startswith("turn") and provider in ice.host and uptime > lifetime:
                return Finding("ice", Status.WARNING,
                               f"Scope has been up {uptime / 3600:.1f} h; the {provider} TURN credentials it "
                               f"fetched at start last {lifetime / 60:g} minutes",
                               "restart Scope shortly before the show so its TURN credentials are fresh (Scope never "
                               "renews them)", {"uptime": round(uptime)})
    return None


async def check_ice(client: ScopeClient, *, wait_s: float = 2.0, uptime: float | None = None) -> list[Finding]:
    """The ICE servers Scope hands out, each probed from here (``wait_s`` seconds each); a remote Scope without TURN
    is a warning (NAT).

    ``uptime``: seconds since Scope started (its health's ``server_start_time``), to tell stale TURN credentials.
    """
    try:
        servers = await client.ice_servers()
    except ScopeError as exc:
        return [Finding("ice", Status.WARNING, f"cannot read Scope's ICE servers: {exc}",
                        "the session will try without STUN/TURN; fine on one machine or a LAN")]
    urls: list[str] = []
    for server in servers:
        listed = server.get("urls")
        urls.extend([listed] if isinstance(listed, str) else [str(u) for u in listed or ()])
    parsed: list[IceUrl] = []
    findings: list[Finding] = []
    if len(urls) > MAX_ICE_URLS:
        findings.append(Finding("ice", Status.WARNING, f"Scope hands out {len(urls)} ICE server URLs; the first "
                                f"{MAX_ICE_URLS} are checked", "the bridge uses only the first STUN and the first TURN "
                                "server; check Scope's TURN settings", {"urls": len(urls)}))
        urls = urls[:MAX_ICE_URLS]
    for url in urls:
        try:
            parsed.append(parse_ice_url(url))
        except ConfigError as exc:
            findings.append(Finding("ice", Status.WARNING, str(exc),
                                    "the bridge skips it; check Scope's TURN settings"))
    host = urlsplit(client.url).hostname
    remote = is_remote_host(host)
    results = await asyncio.gather(*(probe_ice(ice, wait_s) for ice in parsed))
    for ice, (ok, how) in zip(parsed, results, strict=True):
        if ok:
            findings.append(Finding("ice", Status.OK, f"{ice} reachable: {how}", "", {"url": str(ice)}))
        elif not remote:
            # Scope lists Google's public STUN server by default, even on loopback; on one machine or a LAN the
            # host candidates connect without it.
            findings.append(Finding("ice", Status.OK, f"{ice} unreachable from here ({how}); not needed: Scope at "
                                    f"{host} is on this machine or network", "", {"url": str(ice), "needed": False}))
        else:
            findings.append(Finding("ice", Status.WARNING, f"{ice} unreachable: {how}",
                                    "a firewall here may block it (UDP 3478, TCP 443/5349); WebRTC falls back to the "
                                    "other servers", {"url": str(ice)}))
    turn = [ice for ice in parsed if ice.scheme.startswith("turn")]
    turn_ok = [ice for ice, (ok, _) in zip(parsed, results, strict=True) if ok and ice.scheme.startswith("turn")]
    if remote:
        if not turn:
            findings.append(Finding(
                "ice", Status.WARNING, f"Scope at {host} is remote and offers no TURN server",
                "behind NAT (most venues, most GPU clouds) WebRTC may not connect without TURN: start Scope with "
                "HF_TOKEN set (Cloudflare TURN) or TWILIO_ACCOUNT_SID and TWILIO_AUTH_TOKEN", {"remote": True}))
        elif not turn_ok:
            findings.append(Finding("ice", Status.WARNING, f"Scope at {host} is remote and none of its TURN servers "
                                    "answers from here", "open UDP 3478 and TCP 443 outwards, or use another network",
                                    {"remote": True}))
        else:
            findings.append(stale_turn(turn_ok, uptime) or Finding(
                "ice", Status.OK, f"Scope at {host} is remote; {len(turn_ok)} TURN server(s) reachable", "",
                {"remote": True}))
    else:
        findings.append(Finding("ice", Status.OK, f"Scope at {host} is on this machine or network: no STUN/TURN "
                                "needed", "", {"remote": False}))
    return findings
