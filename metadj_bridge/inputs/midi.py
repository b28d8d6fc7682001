"""MIDI ports: controllers and DAWs in, controller feedback out, devices that come and go.

    rtmidi thread: timestamp + enqueue ──call_soon_threadsafe──► event loop: MidiDecoder, MidiClockTempo ─► on_event

The rtmidi callback only stamps each message with ``time.monotonic()`` and appends it to a queue; one delivery
is pending at a time. The loop decodes everything in arrival order (so no relative-encoder step, note,
program change or clock tick is lost) and then hands over the events, keeping only the newest value of each
continuous signal in a batch (latest wins when the loop is busy).

Port patterns: a plain pattern matches every port whose name contains it, ignoring case (``"launch"``
matches ``"Launchpad X:Launchpad X MIDI 1"``); ``re:<regex>`` matches with ``re.search``, ignoring case
(``"re:^DDJ-.*MIDI 1$"``). Several patterns open several ports; every port is opened once.

Hot-plug: rtmidi does not report a disconnect, so a watcher polls the port list (every ``poll_interval``,
in a worker thread: listing ports opens a short-lived backend client) and reattaches a port when its name
reappears, with the decoder state and mappings untouched. One WARNING when a port is lost, one INFO when it
is back. A device that is unplugged and replugged between two polls keeps its name and is not noticed.
Not verified on macOS: CoreMIDI is reported to refresh its device list only in a process that runs a
CFRunLoop (midir issue #78), which this daemon does not.

The backend is mido's (``MIDO_BACKEND`` or the platform default: ALSA, CoreMIDI, WinMM); tests pass
``backend="mido.backends.rtmidi/UNIX_JACK"``. mido and python-rtmidi are imported only when a port is used.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import os
import re
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Self

from metadj_bridge.errors import ConfigError, RateLimitedWarning
from metadj_bridge.inputs.midi_clock import MidiClockTempo
from metadj_bridge.inputs.midi_decode import Event, MidiControlConfig, MidiDecoder
from metadj_bridge.signals import Signal, SignalBoard, TempoReading

log = logging.getLogger(__name__)

#: MIDI clock, start, continue, stop.
_CLOCK_STATUS = frozenset({0xF8, 0xFA, 0xFB, 0xFC})
#: Messages waiting for the loop; beyond this the oldest go (a loop stalled for seconds under a flood).
_QUEUE_LIMIT = 20000


class _State(enum.Enum):
    NEW = "new"
    RUNNING = "running"
    CLOSED = "closed"


def _mido_backend(backend: str | None) -> Any:
    try:
        import mido
    except ImportError as exc:  # pragma: no cover - mido is a dependency
        raise ConfigError("MIDI needs mido and python-rtmidi: pip install mido python-rtmidi") from exc
    if backend is None:
        backend = os.environ.get("MIDO_BACKEND") or None
    if backend is None:
        return mido.backend
    try:
        return mido.Backend(backend, load=True)
    except (ImportError, ValueError) as exc:
        raise ConfigError(f"MIDI backend {backend!r} cannot be loaded: {exc}") from exc


class _PortLister:
    """Lists port names again and again without making a new backend client each time.

    mido's rtmidi backend opens (and closes) a fresh rtmidi client for every ``get_input_names()``; on JACK that
    is a client joining and leaving the graph, and MIDI events of that cycle can be lost. With rtmidi a
    single client is kept for the polls; other backends are asked the usual way. Blocking: use in a thread.
    """

    def __init__(self, backend: Any, kind: str) -> None:
        self.backend = backend
        self.kind = kind
        self._rt: Any = None
        module = getattr(backend, "module", None)
        if getattr(module, "__name__", "") == "mido.backends.rtmidi":
            import rtmidi

            api = getattr(backend, "api", None)
            api_id = getattr(rtmidi, f"API_{api}", rtmidi.API_UNSPECIFIED) if api else rtmidi.API_UNSPECIFIED
            self._rt = (rtmidi.MidiIn if kind == "input" else rtmidi.MidiOut)(rtapi=api_id, name="metadj-bridge-ports")

    def names(self) -> list[str]:
        if self._rt is not None:
            return list(self._rt.get_ports())
        if self.kind == "input":
            return list(self.backend.get_input_names())
        return list(self.backend.get_output_names())

    def close(self) -> None:
        rt, self._rt = self._rt, None
        if rt is not None:
            rt.delete()


def _unavailable(backend: Any, exc: BaseException) -> ConfigError:
    name = getattr(backend, "name", backend)
    return ConfigError(
        f"MIDI backend {name!r} cannot start: {exc}. Pick another one with MIDO_BACKEND, "
        "e.g. MIDO_BACKEND=mido.backends.rtmidi/UNIX_JACK where only JACK runs"
    )


def list_midi_ports(backend: str | None = None) -> tuple[list[str], list[str]]:
    """(input names, output names) as the backend sees them now (for ``metadj-bridge devices``)."""
    be = _mido_backend(backend)
    try:
        return list(be.get_input_names()), list(be.get_output_names())
    except Exception as exc:
        raise _unavailable(be, exc) from exc


def port_matcher(pattern: str) -> Callable[[str], bool]:
    """A predicate for one port pattern (see the module docstring); a bad regex is a ConfigError."""
    if pattern.startswith("re:"):
        try:
            regex = re.compile(pattern[3:], re.IGNORECASE)
        except re.error as exc:
            raise ConfigError(f"MIDI port pattern {pattern!r}: not a regular expression ({exc})") from exc
        return lambda name: regex.search(name) is not None
    if not pattern:
        raise ConfigError("MIDI port pattern is empty")
    needle = pattern.casefold()
    return lambda name: needle in name.casefold()


def _no_match(kind: str, pattern: str, available: Sequence[str]) -> ConfigError:
    listed = ", ".join(repr(n) for n in available) if available else "none"
    return ConfigError(f"MIDI {kind} {pattern!r} matches no port; available {kind}s: {listed}")


_ALSA_NUMBERS = re.compile(r"\s+\d+:\d+$")


def device_key(name: str) -> str:
    """A port name without ALSA's client:port numbers, which can change when a device is plugged in again."""
    return _ALSA_NUMBERS.sub("", name)


def _rtmidi_api(backend: Any) -> int | None:
    """python-rtmidi's API number when ``backend`` is mido's rtmidi backend, else None."""
    module = getattr(backend, "module", None)
    if getattr(module, "__name__", "") != "mido.backends.rtmidi":
        return None
    import rtmidi

    api = getattr(backend, "api", None)
    return int(getattr(rtmidi, f"API_{api}", rtmidi.API_UNSPECIFIED) if api else rtmidi.API_UNSPECIFIED)


class _RawInput:
    """An input port straight from python-rtmidi: its callback gets the raw bytes, with no mido objects made.

    mido's rtmidi backend parses every message into a ``Message`` in rtmidi's thread; at controller rates that
    parse is most of the cost of a message, and the decoder only needs the three bytes.
    """

    def __init__(self, midi_in: Any, name: str) -> None:
        self._in = midi_in
        self.name = name

    @classmethod
    def open(cls, backend: Any, name: str, enqueue: Callable[[Sequence[int], float, str], None], client: str) -> _RawInput:
        import rtmidi

        midi_in = rtmidi.MidiIn(rtapi=_rtmidi_api(backend), name=client)
        try:
            ports = midi_in.get_ports()
            if name not in ports:
                raise OSError(f"MIDI input {name!r} is not there now")
            cls._listen(midi_in, name, enqueue)
            midi_in.open_port(ports.index(name))
        except BaseException:
            midi_in.delete()
            raise
        return cls(midi_in, name)

    @classmethod
    def open_virtual(
        cls, backend: Any, name: str, enqueue: Callable[[Sequence[int], float, str], None], client: str
    ) -> _RawInput:
        import rtmidi

        midi_in = rtmidi.MidiIn(rtapi=_rtmidi_api(backend), name=client)
        try:
            cls._listen(midi_in, name, enqueue)
            midi_in.open_virtual_port(name)
        except BaseException:
            midi_in.delete()
            raise
        return cls(midi_in, name)

    @staticmethod
    def _listen(midi_in: Any, source: str, enqueue: Callable[[Sequence[int], float, str], None]) -> None:
        monotonic = time.monotonic

        def on_message(event: tuple[list[int], float], _data: object = None) -> None:
            enqueue(event[0], monotonic(), source)

        # SysEx and active sensing are dropped by rtmidi itself; clock and transport come through for the tempo.
        midi_in.ignore_types(sysex=True, timing=False, active_sense=True)
        midi_in.set_callback(on_message)

    def close(self) -> None:
        midi_in, self._in = self._in, None
        if midi_in is not None:
            midi_in.cancel_callback()
            midi_in.close_port()
            midi_in.delete()


def publish_to(board: SignalBoard) -> Callable[[Event], None]:
    """An ``on_event`` that puts MIDI signals on the board and fires its triggers."""

    def publish(event: Event) -> None:
        if isinstance(event, Signal):
            board.set(event)
        else:
            board.fire(event)

    return publish


class MidiInput:
    """Every input port matching ``patterns``, plus an optional virtual input that DAWs can send to.

    ``on_event`` gets Signals and Triggers on the event loop (midi_decode's names); ``on_tempo`` gets a
    :class:`TempoReading` after each batch that carried MIDI clock. ``start()`` raises ConfigError if a
    pattern matches no port, listing the inputs there are.
    """

    def __init__(
        self,
        patterns: Iterable[str] = (),
        *,
        virtual_name: str | None = None,
        on_event: Callable[[Event], None] | None = None,
        on_tempo: Callable[[TempoReading], None] | None = None,
        controls: MidiControlConfig | None = None,
        clock: MidiClockTempo | None = None,
        backend: str | None = None,
        client_name: str = "metadj-bridge",
        poll_interval: float = 0.5,
        wait_for_ports: bool = False,
    ) -> None:
        self.patterns = list(patterns)
        #: A pattern that matches nothing yet: False raises (with the list of ports), True waits for the device.
        self.wait_for_ports = wait_for_ports
        self._matchers = [(p, port_matcher(p)) for p in self.patterns]
        if not self.patterns and virtual_name is None:
            raise ConfigError("MIDI input needs a port pattern or a virtual port name")
        self.virtual_name = virtual_name
        self.on_event = on_event
        self.on_tempo = on_tempo
        self.decoder = MidiDecoder(controls)
        self.clock = clock or MidiClockTempo()
        self.backend_name = backend
        self.client_name = client_name
        self.poll_interval = poll_interval
        self._state = _State.NEW
        self._backend: Any = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._ports: dict[str, Any] = {}  # name -> open mido port
        self._lost: set[str] = set()  # opened once, now gone
        self._virtual: Any = None
        self._lister: _PortLister | None = None
        self._lock = threading.Lock()
        self._queue: deque[tuple[Sequence[int], float, str]] = deque(maxlen=_QUEUE_LIMIT)
        self._scheduled = False
        self._tasks: set[asyncio.Task[None]] = set()
        self._watcher: threading.Thread | None = None
        self._watch_stop = threading.Event()
        #: Set when a port could not be opened yet: the watcher reports the list again even if it did not change.
        self._retry = False
        self._reconciling = False
        self._next_names: frozenset[str] | None = None
        self._listener_errors = 0
        self._listener_warning = RateLimitedWarning(log, "MIDI listener errors")
        #: Messages handed to the loop, and batches in which they arrived.
        self.received = 0
        self.batches = 0
        #: Messages lost because the loop did not take them for a long time (the queue holds _QUEUE_LIMIT).
        self.overflowed = 0
        self._overflow_reported = 0

    # ------------------------------------------------------------------ lifecycle

    @property
    def port_names(self) -> list[str]:
        """Names of the hardware/software ports open now (not the virtual port)."""
        return sorted(self._ports)

    @property
    def lost_ports(self) -> list[str]:
        return sorted(self._lost)

    async def start(self) -> None:
        if self._state is _State.CLOSED:
            raise RuntimeError("this MidiInput is closed; make a new one")
        if self._state is _State.RUNNING:
            return
        self._loop = asyncio.get_running_loop()
        self._backend = _mido_backend(self.backend_name)
        try:
            self._lister = await asyncio.to_thread(_PortLister, self._backend, "input")
            names = await asyncio.to_thread(self._lister.names)
        except Exception as exc:
            await self.aclose()
            if self.wait_for_ports:  # on stage: the show goes on without MIDI (doctor reports it)
                log.warning("%s; the show goes on without MIDI input", _unavailable(self._backend, exc))
                return
            raise _unavailable(self._backend, exc) from exc
        for pattern, matches in self._matchers:
            if not any(matches(n) for n in names):
                if not self.wait_for_ports:
                    await self.aclose()
                    raise _no_match("input", pattern, names)
                # On stage a controller may be plugged in after the show started: say so once, then attach it.
                log.warning("%s; the show starts without it and picks it up when it is plugged in",
                            _no_match("input", pattern, names))
        self._state = _State.RUNNING
        try:
            for name in self._wanted(names):
                await asyncio.to_thread(self._open, name)
            if self.virtual_name is not None:
                self._virtual = await asyncio.to_thread(self._open_virtual)
        except BaseException:
            await self.aclose()
            raise
        if self.patterns:
            self._watcher = threading.Thread(
                target=self._watch, args=(self._loop,), name=f"midi-input-watch:{','.join(self.patterns)}", daemon=True
            )
            self._watcher.start()

    async def aclose(self) -> None:
        """Close every port and stop the watcher; safe to call twice."""
        self._state = _State.CLOSED
        self._watch_stop.set()
        watcher, self._watcher = self._watcher, None
        if watcher is not None:
            await asyncio.to_thread(watcher.join)
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        ports = list(self._ports.values())
        self._ports.clear()
        if self._virtual is not None:
            ports.append(self._virtual)
            self._virtual = None
        for port in ports:
            await asyncio.to_thread(self._close_port, port)
        lister, self._lister = self._lister, None
        if lister is not None:
            await asyncio.to_thread(lister.close)

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    # ------------------------------------------------------------------ ports (worker threads)

    def _wanted(self, names: Iterable[str]) -> list[str]:
        return [n for n in names if any(matches(n) for _, matches in self._matchers)]

    def _callback_for(self, source: str) -> Callable[[Any], None]:
        def on_message(message: Any) -> None:
            self._enqueue(message.bytes(), time.monotonic(), source)

        return on_message

    def _open(self, name: str) -> None:
        if _rtmidi_api(self._backend) is not None:
            self._ports[name] = _RawInput.open(self._backend, name, self._enqueue, self.client_name)
        else:
            self._ports[name] = self._backend.open_input(name, callback=self._callback_for(name))
        log.debug("MIDI input %r open", name)

    def _open_virtual(self) -> Any:
        assert self.virtual_name is not None
        try:
            if _rtmidi_api(self._backend) is not None:
                port = _RawInput.open_virtual(self._backend, self.virtual_name, self._enqueue, self.client_name)
            else:
                port = self._backend.open_input(
                    self.virtual_name, virtual=True, client_name=self.client_name,
                    callback=self._callback_for(self.virtual_name),
                )
        except (OSError, NotImplementedError) as exc:
            raise ConfigError(f"virtual MIDI input {self.virtual_name!r} cannot be made here: {exc} "
                              "(Windows has no virtual ports; use loopMIDI)") from exc
        except Exception as exc:  # noqa: BLE001 - rtmidi raises its own error types
            if type(exc).__module__.startswith("rtmidi"):
                raise ConfigError(f"virtual MIDI input {self.virtual_name!r} cannot be made here: {exc} "
                                  "(Windows has no virtual ports; use loopMIDI)") from exc
            raise
        log.info("virtual MIDI input %r open", self.virtual_name)
        return port

    @staticmethod
    def _close_port(port: Any) -> None:
        try:
            port.close()
        except Exception:
            log.debug("closing MIDI port failed", exc_info=True)

    # ------------------------------------------------------------------ hot-plug

    def _watch(self, loop: asyncio.AbstractEventLoop) -> None:
        """The watcher's own thread: list the ports every ``poll_interval`` and tell the loop only when the list
        changed (or a port still waits to be opened), so a steady setup costs the event loop nothing."""
        last: frozenset[str] | None = None
        while not self._watch_stop.wait(self.poll_interval):
            lister = self._lister
            if lister is None:
                return
            try:
                names = frozenset(lister.names())
            except Exception:  # noqa: BLE001 - the backend may be restarting; try again next time
                log.debug("listing MIDI inputs failed", exc_info=True)
                continue
            if names == last and not self._retry:
                continue
            last, self._retry = names, False
            try:
                loop.call_soon_threadsafe(self._ports_changed, names)
            except RuntimeError:  # the loop is closed
                return

    def _ports_changed(self, names: frozenset[str]) -> None:
        if self._state is not _State.RUNNING:
            return
        if self._reconciling:  # one reconcile at a time; the newest list goes next
            self._next_names = names
            return
        self._reconciling = True
        task = asyncio.get_running_loop().create_task(self._reconcile_all(names), name="midi-input-reconcile")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _reconcile_all(self, names: frozenset[str]) -> None:
        try:
            next_names: frozenset[str] | None = names
            while next_names is not None:
                self._next_names = None
                await self._reconcile(set(next_names))
                next_names = self._next_names
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("MIDI input hot-plug handling failed; it goes on with the next change")
        finally:
            self._reconciling = False

    async def _reconcile(self, present: set[str]) -> None:
        for name in [n for n in self._ports if n not in present]:
            port = self._ports.pop(name)
            self._lost.add(name)
            log.warning("MIDI input %r disappeared; waiting for it to come back", name)
            await asyncio.to_thread(self._close_port, port)
        for name in self._wanted(sorted(present)):
            if name in self._ports or self._state is not _State.RUNNING:
                continue
            try:
                await asyncio.to_thread(self._open, name)
            except Exception as exc:  # noqa: BLE001 - backends raise OSError, RuntimeError or their own types
                log.debug("MIDI input %r not ready: %s", name, exc)
                self._retry = True
                continue
            same = next((lost for lost in sorted(self._lost) if device_key(lost) == device_key(name)), None)
            if same is not None:
                self._lost.discard(same)
                log.info("MIDI input %r is back%s", name, "" if same == name else f" (was {same!r})")
            else:
                log.info("MIDI input %r appeared and is open", name)

    # ------------------------------------------------------------------ hand-off

    def _enqueue(self, data: Sequence[int], t: float, source: str) -> None:
        """rtmidi's thread: queue the raw bytes with their arrival time, and wake the loop if it is not already due."""
        with self._lock:
            if len(self._queue) == _QUEUE_LIMIT:
                self.overflowed += 1  # the oldest message goes; reported on the loop
            self._queue.append((data, t, source))
            if self._scheduled:
                return
            self._scheduled = True
        loop = self._loop
        if loop is None:
            return
        try:
            loop.call_soon_threadsafe(self._deliver)
        except RuntimeError:  # the loop is closed; nobody listens any more
            pass

    def _deliver(self) -> None:
        with self._lock:
            batch = list(self._queue)
            self._queue.clear()
            self._scheduled = False
        if not batch or self._state is _State.CLOSED:
            return
        self.received += len(batch)
        self.batches += 1
        if self.overflowed != self._overflow_reported:
            log.warning("MIDI input: the event loop fell behind; %d messages lost", self.overflowed - self._overflow_reported)
            self._overflow_reported = self.overflowed
        events: list[Event] = []
        clocked = False
        decode = self.decoder.decode_bytes
        for data, t, _source in batch:
            status = data[0] if data else 0
            if status >= 0xF8:
                if status in _CLOCK_STATUS:
                    clocked = True
                    if status == 0xF8:
                        self.clock.tick(t)
                    elif status == 0xFA:
                        self.clock.start(t)
                    elif status == 0xFC:
                        self.clock.stop(t)
                    else:
                        self.clock.continue_(t)
                continue
            events.extend(decode(data, t))
        if len(events) > 1:
            last: dict[str, int] = {}
            for i, event in enumerate(events):
                if isinstance(event, Signal):
                    last[event.name] = i
            events = [e for i, e in enumerate(events) if not isinstance(e, Signal) or last[e.name] == i]
        if self.on_event is not None:
            for event in events:
                self._call(self.on_event, event)
        if clocked and self.on_tempo is not None:
            reading = self.clock.reading()
            if reading is not None:
                self._call(self.on_tempo, reading)

    def _call(self, listener: Callable[[Any], None], value: Any) -> None:
        try:
            listener(value)
        except Exception as exc:  # a broken listener must not stop MIDI input, nor fill the log at controller rate
            self._listener_errors += 1
            self._listener_warning.listener_failed(listener, exc)


class MidiOutput:
    """Controller feedback: pads lit, LED rings and motor faders following values.

    ``send_cc``/``send_note`` only record the wanted value; a task sends the latest value of each control at
    most ``rate_hz`` times a second, and only values that changed. A missing port is logged once and
    looked for again every ``retry_interval``; the show goes on without feedback meanwhile.
    """

    def __init__(
        self, pattern: str, *, backend: str | None = None, rate_hz: float = 30.0, retry_interval: float = 1.0
    ) -> None:
        if not 0.0 < rate_hz <= 1000.0:
            raise ConfigError(f"MIDI output rate {rate_hz} Hz is not in (0, 1000]")
        self.pattern = pattern
        self._matches = port_matcher(pattern)
        self.backend_name = backend
        self.interval = 1.0 / rate_hz
        self.retry_interval = retry_interval
        self._state = _State.NEW
        self._backend: Any = None
        self._port: Any = None
        self._lister: _PortLister | None = None
        self._pending: dict[tuple[str, int, int], int] = {}
        self._sent: dict[tuple[str, int, int], int] = {}
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._missing_logged = False
        self._last_flush = -1e9
        #: Batches flushed and MIDI messages sent.
        self.flushes = 0
        self.messages_sent = 0

    @property
    def port_name(self) -> str | None:
        return getattr(self._port, "name", None)

    async def start(self) -> None:
        if self._state is _State.CLOSED:
            raise RuntimeError("this MidiOutput is closed; make a new one")
        if self._state is _State.RUNNING:
            return
        self._state = _State.RUNNING
        self._backend = _mido_backend(self.backend_name)
        try:
            self._lister = await asyncio.to_thread(_PortLister, self._backend, "output")
        except Exception as exc:  # noqa: BLE001 - no MIDI at all: no feedback, the show goes on
            log.warning("%s; controller feedback is off", _unavailable(self._backend, exc))
            return
        await self._try_open()
        self._task = asyncio.create_task(self._run(), name=f"midi-output:{self.pattern}")

    async def aclose(self) -> None:
        self._state = _State.CLOSED
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        port, self._port = self._port, None
        if port is not None:
            await asyncio.to_thread(MidiInput._close_port, port)
        lister, self._lister = self._lister, None
        if lister is not None:
            await asyncio.to_thread(lister.close)

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    def send_cc(self, channel: int, cc: int, value01: float) -> None:
        """Channel 1-16, controller 0-127, value 0..1 (clamped)."""
        self._set("cc", channel, cc, value01)

    def send_note(self, channel: int, note: int, velocity01: float) -> None:
        """Velocity 0..1; 0 turns the pad off (note-on with velocity 0)."""
        self._set("note", channel, note, velocity01)

    def _set(self, kind: str, channel: int, number: int, value01: float) -> None:
        if self._state is _State.CLOSED:
            return
        if not 1 <= channel <= 16:
            raise ValueError(f"MIDI output: channel {channel} is not a MIDI channel (1-16)")
        if not 0 <= number <= 127:
            raise ValueError(f"MIDI output: {kind} {number} is not in 0-127")
        value = round(min(1.0, max(0.0, float(value01))) * 127)
        self._pending[(kind, channel, number)] = value
        self._wake.set()

    async def _try_open(self) -> None:
        try:
            assert self._lister is not None
            names = await asyncio.to_thread(self._lister.names)
            name = next((n for n in names if self._matches(n)), None)
            if name is None:
                if not self._missing_logged:
                    self._missing_logged = True
                    log.warning("%s; controller feedback is off until it appears", _no_match("output", self.pattern, names))
                return
            self._port = await asyncio.to_thread(self._backend.open_output, name)
            # A (re)attached device shows nothing yet: send every value again.
            resend = dict(self._sent)
            self._sent.clear()
            self._pending = {**resend, **self._pending}
            if self._pending:
                self._wake.set()
            if self._missing_logged:
                log.info("MIDI output %r open; controller feedback is back", name)
            else:
                log.info("MIDI output %r open for controller feedback", name)
            self._missing_logged = False
        except Exception as exc:  # noqa: BLE001 - any backend failure means: no feedback for now
            if not self._missing_logged:
                self._missing_logged = True
                log.warning("MIDI output %r cannot be opened: %s", self.pattern, exc)

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        last_look = loop.time()
        try:
            while True:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), self.retry_interval)
                if loop.time() - last_look >= self.retry_interval:
                    last_look = loop.time()
                    if self._port is None:
                        await self._try_open()
                    else:
                        await self._check_present()
                if self._port is None:
                    self._wake.clear()  # values stay pending until the port is back
                    continue
                if not self._wake.is_set():
                    continue
                due = self._last_flush + self.interval - loop.time()
                if due > 0:
                    await asyncio.sleep(due)
                self._wake.clear()
                self._flush()
                self._last_flush = loop.time()
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("MIDI output task stopped")

    async def _check_present(self) -> None:
        """Sending to an unplugged device does not fail with every backend: look at the port list."""
        assert self._lister is not None
        try:
            names = await asyncio.to_thread(self._lister.names)
        except Exception:
            log.debug("listing MIDI outputs failed", exc_info=True)
            return
        if self.port_name in names:
            return
        log.warning("MIDI output %r disappeared; controller feedback resumes when it is back", self.port_name)
        self._missing_logged = True
        port, self._port = self._port, None
        self._pending = {**self._sent, **self._pending}
        self._sent.clear()
        await asyncio.to_thread(MidiInput._close_port, port)

    def _flush(self) -> None:
        import mido

        pending, self._pending = self._pending, {}
        messages = []
        for key, value in pending.items():
            if self._sent.get(key) == value:
                continue
            kind, channel, number = key
            if kind == "cc":
                messages.append((key, value, mido.Message("control_change", channel=channel - 1, control=number, value=value)))
            else:
                messages.append((key, value, mido.Message("note_on", channel=channel - 1, note=number, velocity=value)))
        if not messages:
            return
        self.flushes += 1
        for key, value, message in messages:
            try:
                self._port.send(message)  # rtmidi queues the bytes; it does not wait for the device
            except Exception as exc:  # noqa: BLE001 - a device gone mid-send raises whatever its backend raises
                log.warning("MIDI output %r failed (%s); looking for it again", self.port_name, exc)
                port, self._port = self._port, None
                MidiInput._close_port(port)
                self._pending.update({k: v for k, v, _ in messages})
                return
            self._sent[key] = value
            self.messages_sent += 1
