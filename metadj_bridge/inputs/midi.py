"""MIDI in: controllers and DAWs, devices that come and go.

    rtmidi thread: timestamp + enqueue ──call_soon_threadsafe──► event loop: MidiDecoder, MidiClockTempo ─► sink

The rtmidi callback only stamps each message with ``time.monotonic()`` and appends it to a queue; one delivery
is pending at a time. The loop decodes everything in arrival order (so no relative-encoder step, note,
program change or clock tick is lost), a slice of at most ``_BATCH`` messages per turn so that a flood never holds
it, and then hands over the events, keeping only the newest value of each continuous signal in a batch (latest
wins when the loop is busy).

Port patterns: a plain pattern matches every port whose name contains it, ignoring case (``"launch"``
matches ``"Launchpad X:Launchpad X MIDI 1"``); ``re:<regex>`` matches with ``re.search``, ignoring case
(``"re:^DDJ-.*MIDI 1$"``). Several patterns open several ports; every port is opened once.

Hot-plug: rtmidi does not report a disconnect, so a watcher polls the port list (every ``poll_interval``,
in a worker thread: listing ports opens a short-lived backend client) and reattaches a port when its name
reappears, with the decoder state and mappings untouched. One WARNING when a port is lost, one INFO when it
is back. A device that is unplugged and replugged between two polls keeps its name and is not noticed.
What is open and what is awaited is state (``port_names``, ``waiting``, ``problems()``), read by the performer's
status view on every refresh; the warnings that describe it are tagged ``extra={"problem": ...}`` so the view
shows the state instead of a log line that would outlive it.
Not verified on macOS: CoreMIDI is reported to refresh its device list only in a process that runs a
CFRunLoop (midir issue #78), which this daemon does not.

Ports, patterns and the backend: :mod:`metadj_bridge.inputs.midi_ports`. Controller feedback (MIDI out) is
:mod:`metadj_bridge.outputs.midi_feedback`.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Self

from metadj_bridge.errors import ConfigError, RateLimitedWarning
from metadj_bridge.inputs.midi_clock import MidiClockTempo
from metadj_bridge.inputs.midi_decode import Event, MidiControlConfig, MidiDecoder
from metadj_bridge.inputs.midi_ports import (
    PortLister,
    RawInput,
    close_port,
    device_key,
    mido_backend,
    no_match,
    port_matcher,
    rtmidi_api,
    unavailable,
)
from metadj_bridge.lifecycle import Lifecycle, TaskGroupSet
from metadj_bridge.signals import InputSink, Signal

log = logging.getLogger(__name__)

#: MIDI clock, start, continue, stop.
_CLOCK_STATUS = frozenset({0xF8, 0xFA, 0xFB, 0xFC})
#: Messages waiting for the loop; beyond this the oldest go (a loop stalled for seconds under a flood).
_QUEUE_LIMIT = 20000
#: Messages decoded in one turn of the event loop; the rest wait for the next turn. A flood (MIDI clock from a
#: feedback loop or a DAW gone wild: each tick refits the tempo, ~25 us) must not hold the loop for more than a few
#: milliseconds: a full queue taken at once held it for half a second, again and again.
_BATCH = 512


class MidiInput:
    """Every input port matching ``patterns``, plus an optional virtual input that DAWs can send to.

    Delivers into ``sink`` (an :class:`~metadj_bridge.signals.InputSink`) on the event loop: signals and
    triggers under midi_decode's names, and a :class:`TempoReading` after each batch that carried MIDI clock.
    ``start()`` raises ConfigError if a
    pattern matches no port, listing the inputs there are.
    """

    def __init__(
        self,
        patterns: Iterable[str] = (),
        *,
        virtual_name: str | None = None,
        sink: InputSink | None = None,
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
        self.sink = sink
        self.decoder = MidiDecoder(controls)
        self.clock = clock or MidiClockTempo()
        self.backend_name = backend
        self.client_name = client_name
        self.poll_interval = poll_interval
        self._life = Lifecycle("MidiInput")
        self._backend: Any = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._ports: dict[str, Any] = {}  # name -> open mido port
        self._lost: set[str] = set()  # opened once, now gone
        self._virtual: Any = None
        self._lister: PortLister | None = None
        self._lock = threading.Lock()
        self._queue: deque[tuple[Sequence[int], float, str]] = deque(maxlen=_QUEUE_LIMIT)
        self._scheduled = False
        self._tasks = TaskGroupSet("midi-input", log)
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
        self._overflow_warning = RateLimitedWarning(log, "MIDI input: messages lost, the event loop fell behind")

    # ------------------------------------------------------------------ lifecycle

    @property
    def port_names(self) -> list[str]:
        """Names of the hardware/software ports open now (not the virtual port)."""
        return sorted(self._ports)

    @property
    def lost_ports(self) -> list[str]:
        return sorted(self._lost)

    @property
    def waiting(self) -> list[str]:
        """The patterns no open port matches now: devices not plugged in yet, or unplugged (none once closed, or
        when MIDI could not start: then nothing is waited for)."""
        if not self._life.running:
            return []
        return [p for p, matches in self._matchers if not any(matches(n) for n in self._ports)]

    def problems(self) -> list[str]:
        """What is wrong now, in a performer's words (the status view): controllers that are gone or not there yet.
        Empty once every pattern has its port open again."""
        if not self._life.running:
            return []
        lost = sorted(self._lost)
        out = [f"MIDI input {name!r} disappeared; waiting for it to come back" for name in lost]
        for pattern, matches in self._matchers:
            if not any(matches(n) for n in self._ports) and not any(matches(n) for n in lost):
                out.append(f"MIDI input {pattern!r} matches no port; it is picked up when it is plugged in")
        return out

    async def start(self) -> None:
        if not self._life.begin():
            return
        self._loop = asyncio.get_running_loop()
        self._backend = mido_backend(self.backend_name)
        try:
            self._lister = await asyncio.to_thread(PortLister, self._backend, "input")
            names = await asyncio.to_thread(self._lister.names)
        except Exception as exc:
            await self.aclose()
            if self.wait_for_ports:  # on stage: the show goes on without MIDI (doctor reports it)
                log.warning("%s; the show goes on without MIDI input", unavailable(self._backend, exc))
                return
            raise unavailable(self._backend, exc) from exc
        for pattern, matches in self._matchers:
            if not any(matches(n) for n in names):
                if not self.wait_for_ports:
                    await self.aclose()
                    raise no_match("input", pattern, names)
                # On stage a controller may be plugged in after the show started: say so once, then attach it.
                log.warning("%s; the show starts without it and picks it up when it is plugged in",
                            no_match("input", pattern, names), extra={"problem": "midi input missing"})
        try:
            for name in self._wanted(names):
                self._ports[name] = await asyncio.to_thread(self._open, name)
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
        self._life.end()
        self._watch_stop.set()
        watcher, self._watcher = self._watcher, None
        if watcher is not None:
            await asyncio.to_thread(watcher.join)
        await self._tasks.aclose()
        ports = list(self._ports.values())
        self._ports.clear()
        if self._virtual is not None:
            ports.append(self._virtual)
            self._virtual = None
        for port in ports:
            await asyncio.to_thread(close_port, port)
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

    def _open(self, name: str) -> Any:
        """Open one port (a worker thread: backends may block); the caller files it on the loop, so the status
        view reading ``port_names`` never sees the port table change under it."""
        if rtmidi_api(self._backend) is not None:
            port = RawInput.open(self._backend, name, self._enqueue, self.client_name)
        else:
            port = self._backend.open_input(name, callback=self._callback_for(name))
        log.debug("MIDI input %r open", name)
        return port

    def _open_virtual(self) -> Any:
        assert self.virtual_name is not None
        try:
            if rtmidi_api(self._backend) is not None:
                port = RawInput.open_virtual(self._backend, self.virtual_name, self._enqueue, self.client_name)
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
        if not self._life.running:
            return
        if self._reconciling:  # one reconcile at a time; the newest list goes next
            self._next_names = names
            return
        self._reconciling = True
        self._tasks.spawn(self._reconcile_all(names), "reconcile")

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
            log.warning("MIDI input %r disappeared; waiting for it to come back", name,
                        extra={"problem": "midi input lost"})
            await asyncio.to_thread(close_port, port)
        for name in self._wanted(sorted(present)):
            if name in self._ports or not self._life.running:
                continue
            try:
                port = await asyncio.to_thread(self._open, name)
            except Exception as exc:  # noqa: BLE001 - backends raise OSError, RuntimeError or their own types
                log.debug("MIDI input %r not ready: %s", name, exc)
                self._retry = True
                continue
            if not self._life.running:  # closed while it opened: aclose() has already gone through the table
                await asyncio.to_thread(close_port, port)
                return
            self._ports[name] = port
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
        """The loop: decode at most _BATCH messages, in arrival order; what is left is taken on the next turn."""
        queue = self._queue
        with self._lock:
            batch = [queue.popleft() for _ in range(min(len(queue), _BATCH))]
            more = bool(queue) and self._loop is not None and not self._life.closed
            self._scheduled = more
        if more:
            assert self._loop is not None
            self._loop.call_soon(self._deliver)
        if not batch or self._life.closed:
            return
        self.received += len(batch)
        self.batches += 1
        if self.overflowed != self._overflow_reported:
            self._overflow_warning.note(f"{self.overflowed - self._overflow_reported} messages lost")
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
        sink = self.sink
        if sink is None:
            return
        for event in events:
            self._call(sink.set if isinstance(event, Signal) else sink.fire, event)
        if clocked:
            reading = self.clock.reading()
            if reading is not None:
                self._call(sink.tempo, reading)

    def _call(self, listener: Callable[[Any], None], value: Any) -> None:
        try:
            listener(value)
        except Exception as exc:  # a broken listener must not stop MIDI input, nor fill the log at controller rate
            self._listener_errors += 1
            self._listener_warning.listener_failed(listener, exc)
