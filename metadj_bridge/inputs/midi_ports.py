"""MIDI port plumbing shared by controller input and controller feedback: the backend, listing and matching ports.

The backend is mido's (``MIDO_BACKEND`` or the platform default: ALSA, CoreMIDI, WinMM); tests pass
``backend="mido.backends.rtmidi/UNIX_JACK"``. mido and python-rtmidi are imported only when a port is used.
Where python-rtmidi has no wheel (Python 3.13+) the default is our backend on supriya-midi
(:mod:`metadj_bridge.inputs.mido_supriya`). With either, input ports are opened raw (:class:`RawInput`): the
callback gets bytes, no mido ``Message`` per event.

Port patterns: a plain pattern matches every port whose name contains it, ignoring case (``"launch"``
matches ``"Launchpad X:Launchpad X MIDI 1"``); ``re:<regex>`` matches with ``re.search``, ignoring case
(``"re:^DDJ-.*MIDI 1$"``).
"""

from __future__ import annotations

import logging
import os
import re
import time
from collections.abc import Callable, Sequence
from typing import Any

from metadj_bridge.errors import ConfigError

log = logging.getLogger(__name__)


def mido_backend(backend: str | None) -> Any:
    try:
        import mido
    except ImportError as exc:  # pragma: no cover - mido is a dependency
        raise ConfigError("MIDI needs mido and python-rtmidi: pip install mido python-rtmidi") from exc
    if backend is None:
        backend = os.environ.get("MIDO_BACKEND") or None
    if backend is None:
        from metadj_bridge.inputs import mido_supriya

        backend = mido_supriya.default_backend()  # supriya-midi where python-rtmidi has no wheel (3.13+)
    if backend is None:
        return mido.backend
    try:
        return mido.Backend(backend, load=True)
    except (ImportError, ValueError) as exc:
        raise ConfigError(f"MIDI backend {backend!r} cannot be loaded: {exc}") from exc


class PortLister:
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
        if getattr(module, "__name__", "") == "metadj_bridge.inputs.mido_supriya":
            self._rt = backend.module.Client(kind, getattr(backend, "api", None), "metadj-bridge-ports")
        elif getattr(module, "__name__", "") == "mido.backends.rtmidi":
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


def unavailable(backend: Any, exc: BaseException) -> ConfigError:
    name = getattr(backend, "name", backend)
    jack = name if name == "metadj_bridge.inputs.mido_supriya" else "mido.backends.rtmidi"
    return ConfigError(
        f"MIDI backend {name!r} cannot start: {exc}. Pick another one with MIDO_BACKEND, "
        f"e.g. MIDO_BACKEND={jack}/UNIX_JACK where only JACK runs"
    )


def list_midi_ports(backend: str | None = None) -> tuple[list[str], list[str]]:
    """(input names, output names) as the backend sees them now (for ``metadj-bridge devices``)."""
    be = mido_backend(backend)
    try:
        return list(be.get_input_names()), list(be.get_output_names())
    except Exception as exc:
        raise unavailable(be, exc) from exc


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


def no_match(kind: str, pattern: str, available: Sequence[str]) -> ConfigError:
    listed = ", ".join(repr(n) for n in available) if available else "none"
    return ConfigError(f"MIDI {kind} {pattern!r} matches no port; available {kind}s: {listed}")


_ALSA_NUMBERS = re.compile(r"\s+\d+:\d+$")


def device_key(name: str) -> str:
    """A port name without ALSA's client:port numbers, which can change when a device is plugged in again."""
    return _ALSA_NUMBERS.sub("", name)


def rtmidi_api(backend: Any) -> int | None:
    """RtMidi's API number when ``backend`` is mido's rtmidi backend or ours on supriya-midi, else None."""
    module = getattr(backend, "module", None)
    if getattr(module, "__name__", "") == "metadj_bridge.inputs.mido_supriya":
        return int(backend.module.api_number(getattr(backend, "api", None)))
    if getattr(module, "__name__", "") != "mido.backends.rtmidi":
        return None
    import rtmidi

    api = getattr(backend, "api", None)
    return int(getattr(rtmidi, f"API_{api}", rtmidi.API_UNSPECIFIED) if api else rtmidi.API_UNSPECIFIED)


class RawInput:
    """An input port straight from python-rtmidi: its callback gets the raw bytes, with no mido objects made.

    mido's rtmidi backend parses every message into a ``Message`` in rtmidi's thread; at controller rates that
    parse is most of the cost of a message, and the decoder only needs the three bytes.
    """

    def __init__(self, midi_in: Any, name: str) -> None:
        self._in = midi_in
        self.name = name

    @classmethod
    def open(
        cls, backend: Any, name: str, enqueue: Callable[[Sequence[int], float, str], None], client: str
    ) -> RawInput:
        if getattr(backend.module, "__name__", "") == "metadj_bridge.inputs.mido_supriya":
            return cls(backend.module.open_raw_input(backend.api, name, enqueue, client, virtual=False), name)
        import rtmidi

        midi_in = rtmidi.MidiIn(rtapi=rtmidi_api(backend), name=client)
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
    ) -> RawInput:
        if getattr(backend.module, "__name__", "") == "metadj_bridge.inputs.mido_supriya":
            return cls(backend.module.open_raw_input(backend.api, name, enqueue, client, virtual=True), name)
        import rtmidi

        midi_in = rtmidi.MidiIn(rtapi=rtmidi_api(backend), name=client)
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


def close_port(port: Any) -> None:
    """Close a mido port (a worker thread's job: backends may block); a failure is only worth a debug line."""
    try:
        port.close()
    except Exception:
        log.debug("closing MIDI port failed", exc_info=True)
