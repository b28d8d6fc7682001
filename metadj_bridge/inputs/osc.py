"""OSC in: DJ and VJ software (Resolume, Ableton Live through AbletonOSC, TouchOSC) over UDP.

Two halves. The pure half turns datagram bytes into timed messages (:func:`parse_datagram`, python-osc's
parsers with our own error handling) and messages into signals, triggers and tempo readings
(:class:`OscDecoder`, driven by the preset tables in ``osc_presets.py``). The thin edge,
:class:`OscInput`, is an ``asyncio.DatagramProtocol``: every malformed packet is caught and counted,
bundles timed in the future are scheduled with ``loop.call_at`` (python-osc's own async server sleeps on
them), and problems are logged at most once per ``warn_interval`` so a bad sender cannot fill the disk.

Naming: every message becomes ``osc.<address>``; see ``docs/osc.md``.
"""

from __future__ import annotations

import asyncio
import enum
import functools
import logging
import re
import socket
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Self

from pythonosc.osc_bundle import OscBundle
from pythonosc.osc_message import OscMessage
from pythonosc.parsing import osc_types

from metadj_bridge.errors import ConfigError, RateLimitedWarning
from metadj_bridge.inputs.osc_presets import OscAddress, OscPreset, get_preset
from metadj_bridge.signals import Signal, SignalBoard, TempoReading, Trigger

logger = logging.getLogger(__name__)

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 7001


# --------------------------------------------------------------------------------------------- patterns


@functools.lru_cache(maxsize=1024)
def _pattern_regex(pattern: str) -> re.Pattern[str] | None:
    """OSC 1.0 address pattern to a regex; ``None`` when the pattern is malformed."""
    out: list[str] = []
    i, n = 0, len(pattern)
    while i < n:
        c = pattern[i]
        if c == "*":
            out.append("[^/]*")
        elif c == "?":
            out.append("[^/]")
        elif c == "[":
            end = pattern.find("]", i + 1)
            if end < 0:
                return None
            body = pattern[i + 1 : end]
            negate = body.startswith("!")
            if negate:
                body = body[1:]
            if not body:
                return None
            chars = "".join("\\" + ch if ch in "\\^]" else ch for ch in body)
            out.append(f"[^/{chars}]" if negate else f"[{chars}]")
            i = end
        elif c == "{":
            end = pattern.find("}", i + 1)
            if end < 0:
                return None
            out.append("(?:" + "|".join(re.escape(alt) for alt in pattern[i + 1 : end].split(",")) + ")")
            i = end
        else:
            out.append(re.escape(c))
        i += 1
    try:
        return re.compile("".join(out) + r"\Z")
    except re.error:
        return None


def osc_pattern_matches(pattern: str, address: str) -> bool:
    """Whether an OSC address pattern (``*``, ``?``, ``[a-z]``, ``[!abc]``, ``{a,b}``) matches ``address``.

    Wildcards never cross a ``/``, as in OSC 1.0. A malformed pattern matches nothing.
    """
    regex = _pattern_regex(pattern)
    return regex is not None and regex.match(address) is not None


# --------------------------------------------------------------------------------------------- packets


class OscPacketError(ValueError):
    """A datagram that is not valid OSC."""


@dataclass(frozen=True, slots=True)
class TimedOscMessage:
    #: Seconds from now until the message applies (0.0: at once).
    delay: float
    address: str
    args: tuple[Any, ...]


def parse_datagram(data: bytes, wall_now: float, max_depth: int = 8) -> list[TimedOscMessage]:
    """Every message in a datagram, with how long to wait before applying it.

    ``wall_now`` is ``time.time()`` at arrival (OSC timetags are wall-clock times). Raises
    :class:`OscPacketError` for anything python-osc cannot parse, whatever it raised inside.
    """
    try:
        if OscBundle.dgram_is_bundle(data):
            out: list[TimedOscMessage] = []
            _walk_bundle(OscBundle(data), wall_now, out, max_depth)
            out.sort(key=lambda m: m.delay)
            return out
        if OscMessage.dgram_is_message(data):
            msg = OscMessage(data)
            return [TimedOscMessage(0.0, msg.address, tuple(msg.params))]
    except OscPacketError:
        raise
    # python-osc raises ParseError, but also struct, index and Unicode errors on junk
    except Exception as exc:  # noqa: BLE001
        raise OscPacketError(f"{type(exc).__name__}: {exc}") from None
    raise OscPacketError(f"neither an OSC message nor a bundle ({len(data)} bytes)")


def _walk_bundle(bundle: OscBundle, wall_now: float, out: list[TimedOscMessage], depth: int) -> None:
    if depth <= 0:
        raise OscPacketError("bundles nested too deeply")
    ts = bundle.timestamp
    delay = 0.0 if ts == osc_types.IMMEDIATELY else max(0.0, ts - wall_now)
    for content in bundle:
        if isinstance(content, OscBundle):
            _walk_bundle(content, wall_now, out, depth - 1)
        else:
            out.append(TimedOscMessage(delay, content.address, tuple(content.params)))


# --------------------------------------------------------------------------------------------- decoding


@dataclass(frozen=True, slots=True)
class OscEvent:
    """What one OSC message meant."""

    address: str
    args: tuple[Any, ...]
    t: float
    #: The preset entry that matched, or None for an address no preset knows.
    entry: OscAddress | None = None
    signals: tuple[Signal, ...] = ()
    triggers: tuple[Trigger, ...] = ()
    tempo: TempoReading | None = None
    #: The value argument as sent, and scaled to 0..1 when the preset knows its range.
    raw: float | None = None
    normalised: float | None = None
    #: Why the message could not be used (wrong argument types for its preset address).
    error: str | None = None


def _number(value: Any) -> float | None:
    # OSC True/False count as 1/0; strings, blobs, None, MIDI tuples do not count as numbers.
    if isinstance(value, (int, float)):
        return float(value)
    return None


class OscDecoder:
    """Messages in, signals/triggers/tempo out. Pure: no sockets, no clocks (the time comes in)."""

    def __init__(self, presets: Iterable[OscPreset | str] = ("resolume", "ableton"), cache_size: int = 4096) -> None:
        self.presets = tuple(get_preset(p) if isinstance(p, str) else p for p in presets)
        self.entries: tuple[OscAddress, ...] = tuple(e for p in self.presets for e in p.addresses)
        self._cache: dict[str, OscAddress | None] = {}
        self._cache_size = cache_size
        #: Last BPM heard from a tempo address, so beat messages can carry a full TempoReading.
        self.last_bpm: float | None = None
        #: Last transport state heard (AbletonOSC ``is_playing``); carried on every tempo reading.
        self.playing = True

    def entry_for(self, address: str) -> OscAddress | None:
        try:
            return self._cache[address]
        except KeyError:
            pass
        found = next((e for e in self.entries if osc_pattern_matches(e.pattern, address)), None)
        if len(self._cache) >= self._cache_size:
            self._cache.clear()  # a sender inventing addresses must not grow memory without bound
        self._cache[address] = found
        return found

    def decode(self, address: str, args: Sequence[Any], t: float) -> OscEvent:
        args = tuple(args)
        entry = self.entry_for(address)
        if entry is None:
            return self._generic(address, args, t)
        name = "osc." + address
        if entry.index_args:
            if len(args) <= entry.index_args:
                reason = f"{address}: expected {entry.index_args} indices and a value, got {args!r}"
                return OscEvent(address, args, t, entry, error=reason)
            indices = args[: entry.index_args]
            if not all(isinstance(i, int) and not isinstance(i, bool) for i in indices):
                return OscEvent(address, args, t, entry, error=f"{address}: indices must be ints, got {indices!r}")
            name += "".join(f"/{i}" for i in indices)
        value_args = args[entry.index_args :]

        if entry.kind == "trigger":
            if not value_args:
                return OscEvent(address, args, t, entry, triggers=(Trigger(name, t),))
            value = _number(value_args[0])
            if value is None:
                return OscEvent(address, args, t, entry, error=f"{address}: expected a number, got {value_args[0]!r}")
            triggers = (Trigger(name, t, {"value": value}),) if value else ()  # 0 is the button's release
            return OscEvent(address, args, t, entry, triggers=triggers, raw=value)

        value = _number(value_args[0]) if value_args else None
        if value is None:
            got = repr(value_args[0]) if value_args else "no argument"
            return OscEvent(address, args, t, entry, error=f"{address}: expected a number, got {got}")
        normalised = None
        if entry.range is not None:
            lo, hi = entry.range
            normalised = min(1.0, max(0.0, (value - lo) / (hi - lo)))
        signal = Signal(name, value, t)

        if entry.kind == "tempo":
            if entry.bpm_range is not None:
                lo, hi = entry.bpm_range
                bpm = lo + min(1.0, max(0.0, value)) * (hi - lo)
            else:
                bpm = value
            if not bpm > 0.0:
                return OscEvent(address, args, t, entry, error=f"{address}: {value!r} is not a tempo")
            self.last_bpm = bpm
            reading = TempoReading(source="osc", bpm=bpm, t=t, playing=self.playing)
            return OscEvent(address, args, t, entry, signals=(signal,), tempo=reading, raw=value, normalised=normalised)

        if entry.kind == "beat":
            trigger = Trigger(name, t, {"beat": value})
            beat_reading = (
                TempoReading(source="osc", bpm=self.last_bpm, t=t, beat=value, playing=self.playing)
                if self.last_bpm
                else None
            )
            return OscEvent(address, args, t, entry, signals=(signal,), triggers=(trigger,), tempo=beat_reading,
                            raw=value, normalised=normalised)

        if entry.kind == "transport":
            self.playing = bool(value)
            transport_reading = (
                TempoReading(source="osc", bpm=self.last_bpm, t=t, playing=self.playing) if self.last_bpm else None
            )
            return OscEvent(address, args, t, entry, signals=(signal,), tempo=transport_reading,
                            raw=value, normalised=normalised)

        return OscEvent(address, args, t, entry, signals=(signal,), raw=value, normalised=normalised)

    @staticmethod
    def _generic(address: str, args: tuple[Any, ...], t: float) -> OscEvent:
        name = "osc." + address
        if not args:
            return OscEvent(address, args, t, triggers=(Trigger(name, t),))
        value = next((v for v in map(_number, args) if v is not None), None)
        if value is None:  # only strings, blobs and the like: an event carrying them
            return OscEvent(address, args, t, triggers=(Trigger(name, t, {"args": args}),))
        return OscEvent(address, args, t, signals=(Signal(name, value, t),), raw=value)


# --------------------------------------------------------------------------------------------- logging


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

    def as_dict(self) -> dict[str, int]:
        return {name: getattr(self, name) for name in self.__slots__}  # type: ignore[attr-defined]


class _State(enum.Enum):
    NEW = "new"
    RUNNING = "running"
    CLOSED = "closed"


class OscInput(asyncio.DatagramProtocol):
    """Listens for OSC on ``host:port`` (UDP) and hands what it means to listeners on the event loop.

    Listeners: ``on_signal(Signal)``, ``on_trigger(Trigger)``, ``on_tempo(TempoReading)``,
    ``on_event(OscEvent)`` and/or a ``board`` (:class:`SignalBoard`). ``port=0`` picks a free port; read
    :attr:`port` after :meth:`start`.
    """

    def __init__(
        self,
        host: str = DEFAULT_HOST,
        port: int = DEFAULT_PORT,
        presets: Iterable[OscPreset | str] = ("resolume", "ableton"),
        *,
        on_signal: Callable[[Signal], None] | None = None,
        on_trigger: Callable[[Trigger], None] | None = None,
        on_tempo: Callable[[TempoReading], None] | None = None,
        on_event: Callable[[OscEvent], None] | None = None,
        board: SignalBoard | None = None,
        max_pending: int = 10_000,
        max_delay: float = 60.0,
        receive_buffer: int = 4 << 20,
        warn_interval: float = 10.0,
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
        self._on_signal = on_signal
        self._on_trigger = on_trigger
        self._on_tempo = on_tempo
        self._on_event = on_event
        self._board = board
        self._clock = clock
        self._wall_clock = wall_clock
        self._input_warning = RateLimitedWarning(logger, "bad OSC input", warn_interval, clock)
        self._listener_warning = RateLimitedWarning(logger, "OSC listener errors", warn_interval, clock)
        self._state = _State.NEW
        self._transport: asyncio.DatagramTransport | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._pending: dict[int, asyncio.TimerHandle] = {}
        self._next_pending = 0
        self._lost: asyncio.Future[None] | None = None

    # lifecycle ------------------------------------------------------------------------------------

    @property
    def running(self) -> bool:
        return self._state is _State.RUNNING

    async def start(self) -> None:
        if self._state is _State.CLOSED:
            raise RuntimeError("this OscInput is closed; make a new one")
        if self._state is _State.RUNNING:
            return
        self._loop = asyncio.get_running_loop()
        self._lost = self._loop.create_future()
        try:
            transport, _ = await self._loop.create_datagram_endpoint(lambda: self, local_addr=(self.host, self.port))
        except OSError as exc:
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
        self._state = _State.RUNNING
        logger.info("listening for OSC on %s:%d (presets: %s)", self.host, self.port,
                    ", ".join(p.name for p in self.decoder.presets) or "none")

    async def aclose(self) -> None:
        if self._state is _State.CLOSED:
            return
        self._state = _State.CLOSED
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

    def datagram_received(self, data: bytes, addr: tuple[str | Any, int]) -> None:
        if self._state is not _State.RUNNING:
            return
        t = self._clock()
        self.counters.received += 1
        try:
            messages = parse_datagram(data, self._wall_clock())
        except OscPacketError as exc:
            self.counters.malformed += 1
            self._input_warning.note(f"malformed packet from {addr[0]}:{addr[1]}: {exc}")
            return
        for msg in messages:
            self.counters.messages += 1
            if msg.delay > 0.0:
                self._schedule(msg)
            else:
                self._apply(msg.address, msg.args, t)

    def error_received(self, exc: Exception) -> None:
        self._input_warning.note(f"socket error: {exc}")

    def connection_lost(self, exc: Exception | None) -> None:
        if self._lost is not None and not self._lost.done():
            self._lost.set_result(None)
        if exc is not None and self._state is _State.RUNNING:
            logger.warning("OSC socket on %s:%d lost: %s", self.host, self.port, exc)

    # dispatch ---------------------------------------------------------------------------------------

    def _schedule(self, msg: TimedOscMessage) -> None:
        assert self._loop is not None
        if msg.delay > self.max_delay:
            self.counters.dropped += 1
            self._input_warning.note(f"{msg.address} timed {msg.delay:.0f} s ahead (limit {self.max_delay:g} s); dropped")
            return
        if len(self._pending) >= self.max_pending:
            self.counters.dropped += 1
            self._input_warning.note(f"more than {self.max_pending} timed messages waiting; dropped {msg.address}")
            return
        key = self._next_pending
        self._next_pending += 1
        self.counters.scheduled += 1
        self._pending[key] = self._loop.call_at(self._loop.time() + msg.delay, self._apply_scheduled, key, msg)

    def _apply_scheduled(self, key: int, msg: TimedOscMessage) -> None:
        self._pending.pop(key, None)
        if self._state is _State.RUNNING:
            self._apply(msg.address, msg.args, self._clock())

    def _apply(self, address: str, args: tuple[Any, ...], t: float) -> None:
        event = self.decoder.decode(address, args, t)
        if event.entry is None:
            self.counters.unknown += 1
        if event.error is not None:
            self.counters.bad_args += 1
            self._input_warning.note(event.error)
            return
        self._deliver(event)
        self.counters.dispatched += 1

    def _deliver(self, event: OscEvent) -> None:
        board = self._board
        for signal in event.signals:
            if board is not None:
                self._call(board.set, signal)
            if self._on_signal is not None:
                self._call(self._on_signal, signal)
        for trigger in event.triggers:
            if board is not None:
                self._call(board.fire, trigger)
            if self._on_trigger is not None:
                self._call(self._on_trigger, trigger)
        if event.tempo is not None and self._on_tempo is not None:
            self._call(self._on_tempo, event.tempo)
        if self._on_event is not None:
            self._call(self._on_event, event)

    def _call(self, listener: Callable[[Any], None], value: Any) -> None:
        try:
            listener(value)
        except Exception as exc:  # one listener's bug must not starve the others or take the socket down
            self.counters.handler_errors += 1
            self._listener_warning.listener_failed(listener, exc)
