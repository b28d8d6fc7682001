"""OSC in: DJ and VJ software (Resolume, Ableton Live through AbletonOSC, TouchOSC) over UDP.

The pure half is :mod:`.osc_decode` (datagram bytes into timed messages, messages into signals, triggers and
tempo readings). This thin edge, :class:`OscInput`, is an ``asyncio.DatagramProtocol``: every malformed packet is
caught and counted, bundles timed in the future are scheduled with ``loop.call_at`` (python-osc's own async server
sleeps on them), and problems are logged at most once per ``warn_interval``, naming the sender (``ip:port``), so a
bad sender cannot fill the disk. The same trigger message again within ``repeat_interval`` is dropped
(:class:`~.osc_decode.RepeatGate`): a backlog read at once after the process stood still steps the show once,
not once per queued packet. python-osc's parser is not used on input: :mod:`.osc_wire` reads the packets with
limits on what one packet may cost, and logs nothing of its own.

Naming: every message becomes ``osc.<address>``; see ``docs/osc.md``.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import socket
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Self

from metadj_bridge.errors import ConfigError, RateLimitedWarning
from metadj_bridge.inputs.osc_decode import (
    OscDecoder,
    OscEvent,
    OscPacketError,
    RepeatGate,
    TimedOscMessage,
    parse_datagram,
)
from metadj_bridge.inputs.osc_presets import OscPreset
from metadj_bridge.lifecycle import Lifecycle
from metadj_bridge.signals import InputSink

logger = logging.getLogger(__name__)

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 7001
#: Addresses that steer the bridge itself (``/metadj/profile``): their triggers carry ``sender`` (ip:port).
CONTROL_PREFIX = "/metadj/"


# --------------------------------------------------------------------------------------------- transport


@dataclass(slots=True)
class OscCounters:
    #: Datagrams received.
    received: int = 0
    #: Datagrams that were not valid OSC.
    malformed: int = 0
    #: Messages parsed out of valid datagrams (a bundle holds several).
    messages: int = 0
    #: Messages whose address no preset knows (still delivered by the generic rule).
    unknown: int = 0
    #: Messages with the wrong argument types for their preset address (not delivered).
    bad_args: int = 0
    #: Messages delivered as signals/triggers/tempo.
    dispatched: int = 0
    #: Messages held for a future bundle timetag (delivered later, counted in ``dispatched`` then).
    scheduled: int = 0
    #: Future messages shed: too many already waiting, or timed more than ``max_delay`` ahead.
    dropped: int = 0
    #: Exceptions raised by listeners.
    handler_errors: int = 0
    #: Trigger messages dropped as a repeat of the same message within ``repeat_interval`` (a backlog).
    repeats: int = 0

    def as_dict(self) -> dict[str, int]:
        return {name: getattr(self, name) for name in self.__slots__}


class OscInput(asyncio.DatagramProtocol):
    """Listens for OSC on ``host:port`` (UDP) and hands what it means to listeners on the event loop.

    Delivers into ``sink`` (an :class:`~metadj_bridge.signals.InputSink`): signals, triggers and tempo
    readings. ``port=0`` picks a free port; read :attr:`port` after :meth:`start`. ``repeat_interval``: the same
    trigger message again sooner than this is dropped (0: never).
    """

    def __init__(
        self,
        host: str = DEFAULT_HOST,
        port: int = DEFAULT_PORT,
        presets: Iterable[OscPreset | str] = ("resolume", "ableton"),
        *,
        sink: InputSink | None = None,
        max_pending: int = 10_000,
        max_delay: float = 60.0,
        receive_buffer: int = 4 << 20,
        warn_interval: float = 10.0,
        repeat_interval: float = 0.05,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self.host = host
        self.port = port
        self.decoder = OscDecoder(presets)
        self.counters = OscCounters()
        self.max_pending = max_pending
        self.max_delay = max_delay
        self.receive_buffer = receive_buffer
        self.sink = sink
        self._clock = clock
        self._wall_clock = wall_clock
        self._input_warning = RateLimitedWarning(logger, "bad OSC input", warn_interval, clock)
        self._listener_warning = RateLimitedWarning(logger, "OSC listener errors", warn_interval, clock)
        self._repeats = RepeatGate(repeat_interval)
        self._repeat_note = RateLimitedWarning(logger, "OSC: repeated triggers dropped (a backlog after the bridge "
                                               "stood still?)", warn_interval, clock, level=logging.INFO)
        self._life = Lifecycle("OscInput")
        self._transport: asyncio.DatagramTransport | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._pending: dict[int, asyncio.TimerHandle] = {}
        self._next_pending = 0
        self._lost: asyncio.Future[None] | None = None
        self._broken: str | None = None

    # lifecycle ------------------------------------------------------------------------------------

    @property
    def running(self) -> bool:
        return self._life.running

    def problems(self) -> list[str]:
        """What is wrong now, for the performer's status: a socket the system took away (it stays off)."""
        return [self._broken] if self._broken and self._life.running else []

    async def start(self) -> None:
        if not self._life.begin():
            return
        self._loop = asyncio.get_running_loop()
        self._lost = self._loop.create_future()
        try:
            transport, _ = await self._loop.create_datagram_endpoint(lambda: self, local_addr=(self.host, self.port))
        except OSError as exc:
            self._life.failed()
            raise ConfigError(
                f"cannot listen for OSC on {self.host}:{self.port}: {exc.strerror or exc} "
                "(another program, or another bridge, may be using that port; pick another with --osc-port)"
            ) from exc
        self._transport = transport
        self.port = transport.get_extra_info("sockname")[1]
        sock = transport.get_extra_info("socket")
        if sock is not None and self.receive_buffer:
            try:  # room for bursts (a flood, a controller's snapshot) while the loop is busy elsewhere
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, self.receive_buffer)
            except OSError as exc:
                logger.debug("could not enlarge the OSC receive buffer: %s", exc)
        logger.info("listening for OSC on %s:%d (presets: %s)", self.host, self.port,
                    ", ".join(p.name for p in self.decoder.presets) or "none")

    async def aclose(self) -> None:
        if not self._life.end():
            return
        for handle in self._pending.values():
            handle.cancel()
        self._pending.clear()
        if self._transport is not None:
            self._transport.close()
            self._transport = None
            if self._lost is not None:
                await asyncio.wait_for(asyncio.shield(self._lost), 1.0)  # the port is free once this returns

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    # protocol ---------------------------------------------------------------------------------------

    def datagram_received(self, data: bytes, addr: tuple[str | Any, ...]) -> None:
        if not self._life.running:
            return
        t = self._clock()
        self.counters.received += 1
        try:
            messages = parse_datagram(data, self._wall_clock())
        except Exception as exc:  # noqa: BLE001 - OscPacketError, or a bug in the reader: one line, never a traceback
            self.counters.malformed += 1
            reason = str(exc) if isinstance(exc, OscPacketError) else f"{type(exc).__name__}: {exc}"
            self._input_warning.note(f"malformed packet from {_sender(addr)} ({len(data)} bytes): {_cut(reason)}")
            return
        for msg in messages:
            self.counters.messages += 1
            if msg.delay > 0.0:
                self._schedule(msg, addr)
            else:
                self._apply(msg.address, msg.args, t, addr)

    def error_received(self, exc: Exception) -> None:
        self._input_warning.note(f"socket error: {exc}")

    def connection_lost(self, exc: Exception | None) -> None:
        if self._lost is not None and not self._lost.done():
            self._lost.set_result(None)
        if exc is not None and self._life.running:
            self._broken = f"OSC socket on {self.host}:{self.port} lost ({exc}): OSC input is off until a restart"
            logger.warning("%s", self._broken, extra={"problem": "osc socket"})

    # dispatch ---------------------------------------------------------------------------------------

    def _schedule(self, msg: TimedOscMessage, addr: tuple[Any, ...]) -> None:
        assert self._loop is not None
        if msg.delay > self.max_delay:
            self.counters.dropped += 1
            self._input_warning.note(f"{_cut(msg.address)} from {_sender(addr)} timed {msg.delay:.0f} s ahead "
                                     f"(limit {self.max_delay:g} s); dropped")
            return
        if len(self._pending) >= self.max_pending:
            self.counters.dropped += 1
            self._input_warning.note(
                f"more than {self.max_pending} timed messages waiting; dropped {_cut(msg.address)} from {_sender(addr)}"
            )
            return
        key = self._next_pending
        self._next_pending += 1
        self.counters.scheduled += 1
        self._pending[key] = self._loop.call_at(self._loop.time() + msg.delay, self._apply_scheduled, key, msg,
                                                addr)

    def _apply_scheduled(self, key: int, msg: TimedOscMessage, addr: tuple[Any, ...]) -> None:
        self._pending.pop(key, None)
        if self._life.running:
            self._apply(msg.address, msg.args, self._clock(), addr)

    def _apply(self, address: str, args: tuple[Any, ...], t: float, addr: tuple[Any, ...]) -> None:
        """Decode one message and deliver it; ``addr`` is its sender, named (only) in the lines about it."""
        try:
            event = self.decoder.decode(address, args, t)
        except Exception as exc:  # noqa: BLE001 - a decoder bug on odd input: one line naming the sender
            self.counters.bad_args += 1
            reason = f"{type(exc).__name__}: {exc}"
            self._input_warning.note(f"{_cut(address)} from {_sender(addr)} could not be read: {_cut(reason)}")
            return
        if event.entry is None:
            self.counters.unknown += 1
        if event.error is not None:
            self.counters.bad_args += 1
            self._input_warning.note(f"from {_sender(addr)}: {_cut(event.error)}")
            return
        if event.triggers and not self._repeats.admit(address, args, t):
            self.counters.repeats += 1
            self._repeat_note.note(f"{_cut(address)} from {_sender(addr)}")
            if not event.signals and event.tempo is None:
                return
            event = dataclasses.replace(event, triggers=())
        if address.startswith(CONTROL_PREFIX):
            for trigger in event.triggers:  # a control request names its sender in the line that may refuse it
                trigger.data["sender"] = _sender(addr)
        self._deliver(event)
        self.counters.dispatched += 1

    def _deliver(self, event: OscEvent) -> None:
        sink = self.sink
        if sink is None:
            return
        for signal in event.signals:
            self._call(sink.set, signal)
        for trigger in event.triggers:
            self._call(sink.fire, trigger)
        if event.tempo is not None:
            self._call(sink.tempo, event.tempo)

    def _call(self, listener: Callable[[Any], None], value: Any) -> None:
        try:
            listener(value)
        except Exception as exc:  # one listener's bug must not starve the others or take the socket down
            self.counters.handler_errors += 1
            self._listener_warning.listener_failed(listener, exc)


def _sender(addr: tuple[str | Any, ...]) -> str:
    """``ip:port`` of a datagram's sender (``[ip]:port`` for IPv6), for the lines that name it."""
    try:
        host, port = str(addr[0]), addr[1]
    except (IndexError, TypeError):
        return str(addr)
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _cut(text: str, limit: int = 300) -> str:
    """A reason from outside cut to a length that fits one log line."""
    return text if len(text) <= limit else text[: limit - 3] + "..."
