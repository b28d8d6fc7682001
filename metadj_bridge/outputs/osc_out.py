"""OSC out: the bridge's state for a TouchOSC layout (or any OSC display) on a configurable target.

Addresses (``docs/osc.md``): ``/metadj/theme`` (string), ``/metadj/bpm`` (float), ``/metadj/beat``
(int beat index, float bar position), ``/metadj/scope/state`` (string). Continuous values are rate-limited per
address (about 30 Hz by default) and the latest value wins: a value set while its address is waiting replaces
the waiting one and goes out when the interval ends. Sending never blocks (a UDP datagram transport);
send errors are counted and logged once at WARNING, then at DEBUG.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Self

from pythonosc.osc_message_builder import OscMessageBuilder

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
    """Sends the bridge's state to ``host:port``; ``start()`` before use, ``aclose()`` when done."""

    def __init__(self, host: str = "127.0.0.1", port: int = 9000, *, max_rate_hz: float = 30.0) -> None:
        if max_rate_hz <= 0:
            raise ValueError(f"max_rate_hz must be > 0, got {max_rate_hz!r}")
        self.host = host
        self.port = port
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

    async def start(self) -> None:
        if not self._life.begin():  # raises ClosedError once closed
            return
        self._loop = asyncio.get_running_loop()
        with self._life.opening():  # nothing opened: start() may be tried again
            transport, _ = await self._loop.create_datagram_endpoint(
                lambda: _SendErrors(self), remote_addr=(self.host, self.port)
            )
        if self._life.closed:  # closed while opening
            transport.close()
            return
        self._transport = transport

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
        else:
            logger.debug("OSC out to %s:%d failed: %s", self.host, self.port, exc)


class _SendErrors(asyncio.DatagramProtocol):
    def __init__(self, output: OscOutput) -> None:
        self._output = output

    def error_received(self, exc: Exception) -> None:
        # ICMP port unreachable when nothing listens yet: normal while TouchOSC is not running.
        self._output.note_error(exc)
