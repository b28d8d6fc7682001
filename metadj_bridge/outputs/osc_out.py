"""OSC out: the bridge's state for a TouchOSC layout (or any OSC display) on a configurable target.

Addresses (``docs/osc.md``): ``/metadj/theme`` (string), ``/metadj/bpm`` (float), ``/metadj/beat``
(int beat index, float bar position), ``/metadj/scope/state`` (string). Continuous values are rate-limited per
address (about 30 Hz by default) and the latest value wins: a value set while its address is waiting replaces
the waiting one and goes out when the interval ends. Sending never blocks (a UDP datagram transport).

The target may be a broadcast address (``192.168.1.255``, ``255.255.255.255``): performers send OSC to every
tablet on a LAN, so the socket may broadcast. A target the system refuses at the start (no route to that network,
a firewall, a name that does not resolve) is a :class:`ConfigError` naming the address and where it was given;
send errors while the show runs are counted and logged once at WARNING, then as a rate-limited DEBUG line with the
count (an ICMP "port unreachable" comes back for every message while nothing listens: a debug log must not fill
with them), and the show goes on.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from typing import Any, Self

from pythonosc.osc_message_builder import OscMessageBuilder

from metadj_bridge.errors import ConfigError, RateLimitedWarning, reason
from metadj_bridge.lifecycle import Lifecycle

logger = logging.getLogger(__name__)

THEME = "/metadj/theme"
BPM = "/metadj/bpm"
BEAT = "/metadj/beat"
SCOPE_STATE = "/metadj/scope/state"


def build_message(address: str, args: tuple[Any, ...]) -> bytes:
    """One OSC message as bytes (pure)."""
    builder = OscMessageBuilder(address)
    for arg in args:
        builder.add_arg(arg)
    return builder.build().dgram


class OscOutput:
    """Sends the bridge's state to ``host:port``; ``start()`` before use, ``aclose()`` when done.

    ``where`` says where the address was given (``--osc-out``, or a profile's ``file:line:column: inputs.osc.out``)
    for the error a target that cannot be used raises at the start.
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 9000, *, max_rate_hz: float = 30.0,
                 where: str = "OSC out") -> None:
        if max_rate_hz <= 0:
            raise ValueError(f"max_rate_hz must be > 0, got {max_rate_hz!r}")
        self.host = host
        self.port = port
        self.where = where
        self.min_interval = 1.0 / max_rate_hz
        self.sent = 0
        self.errors = 0
        self._life = Lifecycle("OscOutput")
        self._loop: asyncio.AbstractEventLoop | None = None
        self._transport: asyncio.DatagramTransport | None = None
        self._last_sent: dict[str, float] = {}
        self._waiting: dict[str, tuple[Any, ...]] = {}
        self._timers: dict[str, asyncio.TimerHandle] = {}
        self._warned = False
        self._later = RateLimitedWarning(logger, f"OSC out to {host}:{port} failed", level=logging.DEBUG)

    async def start(self) -> None:
        if not self._life.begin():  # raises ClosedError once closed
            return
        self._loop = asyncio.get_running_loop()
        with self._life.opening():  # nothing opened: start() may be tried again
            try:
                sock = await self._open_socket()
            except (OSError, UnicodeError) as exc:  # a name that does not resolve, or cannot be a host name
                raise ConfigError(
                    f"{self.where}: cannot send OSC to {self.host}:{self.port}: {reason(exc)} (check the "
                    "address, and that this computer is on that network)"
                ) from None
            try:
                transport, _ = await self._loop.create_datagram_endpoint(lambda: _SendErrors(self), sock=sock)
            except BaseException:
                sock.close()
                raise
        if self._life.closed:  # closed while opening
            transport.close()
            return
        self._transport = transport

    async def _open_socket(self) -> socket.socket:
        """A UDP socket connected to the target, allowed to broadcast: connecting finds out at once whether the
        system can reach the address at all (a network it has no route to, a firewall)."""
        assert self._loop is not None
        infos = await self._loop.getaddrinfo(self.host, self.port, type=socket.SOCK_DGRAM)
        error: OSError = OSError(f"no address found for {self.host}")
        for family, kind, proto, _, address in infos:
            sock = socket.socket(family, kind, proto)
            try:
                if family == socket.AF_INET:
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
                sock.connect(address)  # UDP: no packet goes out, the system only picks the route
                sock.setblocking(False)
            except OSError as exc:
                sock.close()
                error = exc
                continue
            return sock
        raise error

    async def aclose(self) -> None:
        if not self._life.end():
            return
        for timer in self._timers.values():
            timer.cancel()
        self._timers.clear()
        self._waiting.clear()
        if self._transport is not None:
            self._transport.close()
            self._transport = None

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    # what the bridge reports ----------------------------------------------------------------------

    def set_theme(self, theme: str) -> None:
        self.send(THEME, str(theme))

    def set_bpm(self, bpm: float) -> None:
        self.send(BPM, float(bpm))

    def set_beat(self, beat: int, bar_position: float) -> None:
        """``beat``: beat index since the start; ``bar_position``: 0..beats_per_bar within the bar."""
        self.send(BEAT, int(beat), float(bar_position))

    def set_scope_state(self, state: str) -> None:
        self.send(SCOPE_STATE, str(state))

    # mechanism ------------------------------------------------------------------------------------

    def send(self, address: str, *args: Any) -> None:
        """Queue ``address args``; it goes out now, or when the address's interval ends (latest wins)."""
        if self._transport is None or self._loop is None:  # not started yet, or closed
            return
        self._waiting[address] = args
        if address in self._timers:
            return
        now = self._loop.time()
        due = self._last_sent.get(address, -1e9) + self.min_interval
        if now >= due:
            self._flush(address)
        else:
            self._timers[address] = self._loop.call_at(due, self._flush, address)

    def _flush(self, address: str) -> None:
        self._timers.pop(address, None)
        args = self._waiting.pop(address, None)
        if args is None or self._transport is None or self._loop is None:
            return
        self._last_sent[address] = self._loop.time()
        try:
            self._transport.sendto(build_message(address, args))
        except Exception as exc:  # noqa: BLE001 - OSError from the socket, or an argument python-osc cannot encode
            self.note_error(exc)
            return
        self.sent += 1

    def note_error(self, exc: BaseException) -> None:
        self.errors += 1
        if not self._warned:
            self._warned = True
            logger.warning("OSC out to %s:%d failed: %s (further errors at DEBUG)", self.host, self.port, exc)
            self._later.mark()
        else:
            self._later.note(str(exc))


class _SendErrors(asyncio.DatagramProtocol):
    def __init__(self, output: OscOutput) -> None:
        self._output = output

    def error_received(self, exc: Exception) -> None:
        # ICMP port unreachable when nothing listens yet: normal while TouchOSC is not running.
        self._output.note_error(exc)
