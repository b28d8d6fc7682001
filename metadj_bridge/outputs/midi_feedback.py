"""Controller feedback (MIDI out): pads lit for the active theme, LED rings and motor faders following values.

Ports are found and matched as for MIDI in (:mod:`metadj_bridge.inputs.midi_ports`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any, Self

from metadj_bridge.errors import ConfigError, RateLimitedWarning
from metadj_bridge.inputs.midi_ports import PortLister, close_port, mido_backend, no_match, port_matcher, unavailable
from metadj_bridge.lifecycle import Lifecycle, cancel_and_wait

log = logging.getLogger(__name__)

#: A port just opened may not pass its first messages on (a JACK connection takes effect some periods later; a
#: replugged device may still be starting): every value is sent once more this long after the port opens.
SETTLE_S = 0.25


class MidiOutput:
    """Controller feedback: pads lit, LED rings and motor faders following values.

    ``send_cc``/``send_note`` only record the wanted value; a task sends the latest value of each control at
    most ``rate_hz`` times a second, and only values that changed. A missing port is logged once and looked for again
    every ``retry_interval``; the show goes on without feedback meanwhile. When a port opens (again), every value is
    sent at once and once more SETTLE_S later, for a device or a connection that was still starting. A port that fails
    is closed in a worker thread (closing a JACK port can wait a second) and opened again; the failures are logged at
    most once per ten seconds, however often a broken device fails.
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
        self._life = Lifecycle("MidiOutput")
        self._backend: Any = None
        self._port: Any = None
        self._lister: PortLister | None = None
        self._pending: dict[tuple[str, int, int], int] = {}
        self._sent: dict[tuple[str, int, int], int] = {}
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._missing_logged = False
        self._send_failed = RateLimitedWarning(log, "MIDI output failed; looking for it again")
        #: Set when a send failure was only counted: the port opening again then is no INFO line either.
        self._quiet_reopen = False
        self._closing: set[asyncio.Future[None]] = set()
        self._last_flush = -1e9
        #: When every value is sent once more after the port opened (SETTLE_S), or None.
        self._resend_at: float | None = None
        #: Batches flushed and MIDI messages sent.
        self.flushes = 0
        self.messages_sent = 0
        #: Sends that failed (each closes the port, to be opened again).
        self.send_failures = 0

    @property
    def port_name(self) -> str | None:
        return getattr(self._port, "name", None)

    async def start(self) -> None:
        if not self._life.begin():
            return
        self._backend = mido_backend(self.backend_name)
        try:
            self._lister = await asyncio.to_thread(PortLister, self._backend, "output")
        except Exception as exc:  # noqa: BLE001 - no MIDI at all: no feedback, the show goes on
            log.warning("%s; controller feedback is off", unavailable(self._backend, exc))
            return
        await self._try_open()
        self._task = asyncio.create_task(self._run(), name=f"midi-output:{self.pattern}")

    async def aclose(self) -> None:
        self._life.end()
        task, self._task = self._task, None
        await cancel_and_wait(task)
        await self._drop_port()
        if self._closing:
            await asyncio.gather(*self._closing)  # a close the cancelled task had started
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
        if self._life.closed:
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
                    log.warning(
                        "%s; controller feedback is off until it appears", no_match("output", self.pattern, names)
                    )
                return
            self._port = await asyncio.to_thread(self._backend.open_output, name)
            # A (re)attached device shows nothing yet: send every value again, now and once it has settled.
            self._send_all_again()
            self._resend_at = asyncio.get_running_loop().time() + SETTLE_S
            level = logging.DEBUG if self._quiet_reopen else logging.INFO
            if self._missing_logged or self._quiet_reopen:
                log.log(level, "MIDI output %r open; controller feedback is back", name)
            else:
                log.info("MIDI output %r open for controller feedback", name)
            self._missing_logged = self._quiet_reopen = False
        except Exception as exc:  # noqa: BLE001 - any backend failure means: no feedback for now
            if not self._missing_logged:
                self._missing_logged = True
                log.warning("MIDI output %r cannot be opened: %s", self.pattern, exc)

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        last_look = loop.time()
        try:
            while True:
                timeout = self.retry_interval
                if self._resend_at is not None and self._port is not None:
                    timeout = max(0.0, min(timeout, self._resend_at - loop.time()))
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), timeout)
                if loop.time() - last_look >= self.retry_interval:
                    last_look = loop.time()
                    if self._port is None:
                        await self._try_open()
                    else:
                        await self._check_present()
                if self._port is None:
                    self._wake.clear()  # values stay pending until the port is back
                    continue
                if self._resend_at is not None and loop.time() >= self._resend_at:
                    self._resend_at = None
                    self._send_all_again()
                if not self._wake.is_set():
                    continue
                due = self._last_flush + self.interval - loop.time()
                if due > 0:
                    await asyncio.sleep(due)
                self._wake.clear()
                if not self._flush():
                    await self._drop_port()
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
        self._send_all_again()
        await self._drop_port()

    def _send_all_again(self) -> None:
        """Every value sent so far is pending again (the latest wanted value of each wins)."""
        self._pending = {**self._sent, **self._pending}
        self._sent.clear()
        if self._pending:
            self._wake.set()

    async def _drop_port(self) -> None:
        """Forget the port and close it in a worker thread; the close goes on if this task is cancelled, and
        ``aclose`` waits for it."""
        port, self._port = self._port, None
        self._resend_at = None
        if port is None:
            return
        closing = asyncio.ensure_future(asyncio.to_thread(close_port, port))
        self._closing.add(closing)
        closing.add_done_callback(self._closing.discard)
        await asyncio.shield(closing)

    def _flush(self) -> bool:
        """Send the values that changed; False when a send failed (the port is to be dropped)."""
        import mido

        pending, self._pending = self._pending, {}
        messages = []
        for key, value in pending.items():
            if self._sent.get(key) == value:
                continue
            kind, channel, number = key
            if kind == "cc":
                message = mido.Message("control_change", channel=channel - 1, control=number, value=value)
            else:
                message = mido.Message("note_on", channel=channel - 1, note=number, velocity=value)
            messages.append((key, value, message))
        if not messages:
            return True
        self.flushes += 1
        for key, value, message in messages:
            try:
                self._port.send(message)  # queued; RtMidi 6 waits (a second at most) only when JACK takes none
            except Exception as exc:  # noqa: BLE001 - a device gone mid-send raises whatever its backend raises
                self.send_failures += 1
                logged = self._send_failed.logged
                self._send_failed.note(f"{self.port_name!r}: {exc}")
                self._quiet_reopen = self._send_failed.logged == logged
                self._pending.update({k: v for k, v, _ in messages})
                return False
            self._sent[key] = value
            self.messages_sent += 1
        return True
