"""A mido backend on supriya-midi, for the Pythons python-rtmidi has no wheel for (3.13 and newer).

supriya-midi binds RtMidi 6 (the C++ library python-rtmidi binds) with nanobind and has wheels for CPython
3.11-3.14 on Linux (x86_64, aarch64), macOS (x86_64, arm64) and Windows (amd64, arm64). Use it with
``MIDO_BACKEND=metadj_bridge.inputs.mido_supriya`` or ``.../UNIX_JACK``, ``/LINUX_ALSA``, ``/MACOSX_CORE``,
``/WINDOWS_MM``; it is the default where python-rtmidi is not installed (see :func:`default_backend`).

A failure never ends the process. RtMidi reports every failure to an error callback (and throws a C++
exception only when none is set): ours records it, and the call that caused it then raises :class:`OSError`.
It never raises inside the callback, because an exception out of it leaves RtMidi's "error being reported" flag
set and that client then ignores every later error (supriya-midi's default callback raises). The message
callback never raises either. rtmidi2, which also has 3.13 wheels, declares ``openPort``/``openVirtualPort``
without C++ exception translation: a port that cannot be opened (a JACK server it cannot reach, a Windows port
held by another program, a device unplugged between listing and opening) aborts the whole process.

Linux: the wheel carries its own libjack, which speaks another protocol than Debian's jackd2 ("JACK protocol
mismatch") and than PipeWire's JACK. :func:`_prefer_system_libjack` loads the system's ``libjack.so.0`` into the
global symbol scope before the extension is imported, so the extension's JACK calls go to the system's library.
Without one, JACK ports are simply not there (an OSError when listing), never a crash. The extension binds its
symbols when it is loaded: nothing may import ``supriya_midi`` before :func:`lib` does.
"""

from __future__ import annotations

import ctypes
import logging
import os
import queue
import sys
import threading
import time
from collections.abc import Callable, Sequence
from importlib.util import find_spec
from typing import Any

from mido import ports
from mido.messages import Message

log = logging.getLogger(__name__)

NAME = "metadj_bridge.inputs.mido_supriya"
_INSTALL = "MIDI needs supriya-midi here: pip install 'supriya-midi>=26.10b4'"
_lib: Any = None
_load_lock = threading.Lock()


def default_backend() -> str | None:
    """This backend on Python 3.13+ or wherever python-rtmidi is missing; None means mido's own default."""
    if sys.version_info >= (3, 13) or find_spec("rtmidi") is None:
        return NAME
    return None


def _prefer_system_libjack() -> None:
    if not sys.platform.startswith("linux") or os.environ.get("METADJ_BUNDLED_LIBJACK"):
        return
    try:
        ctypes.CDLL("libjack.so.0", mode=ctypes.RTLD_GLOBAL)
    except OSError:  # no JACK on this machine: the wheel's own library is loaded, and finds no server either
        log.debug("no system libjack.so.0; JACK MIDI uses the one supriya-midi ships")


def lib() -> Any:
    """The supriya_midi module, imported on first use (after the system's libjack, on Linux)."""
    global _lib
    with _load_lock:
        if _lib is None:
            _prefer_system_libjack()
            try:
                import supriya_midi
            except ImportError as exc:  # missing, or (Linux) no libasound.so.2 on the machine
                raise ImportError(f"{_INSTALL} ({exc})") from exc
            _lib = supriya_midi
        return _lib


def api_number(api: str | None) -> int:
    """RtMidi's API number for a mido API name (``UNIX_JACK``); ValueError names the compiled ones."""
    apis = lib().RtMidiAPI
    if api is None:
        return int(apis.UNSPECIFIED)
    compiled = [a.name for a in lib().get_compiled_apis()]
    if api not in compiled:
        raise ValueError(f"MIDI API {api!r} is not available here; supriya-midi has {', '.join(compiled)}")
    return int(apis[api])


class _Errors:
    """RtMidi's error callback: keeps the failures, to be raised as OSError once the call returns."""

    def __init__(self) -> None:
        self.failures: list[str] = []

    def __call__(self, error_type: Any, text: str, _data: object = None) -> None:
        if getattr(error_type, "name", "") == "DEBUG_WARNING":
            return
        self.failures.append(str(text).strip().rstrip("."))

    def check(self) -> None:
        failures, self.failures = self.failures, []
        if failures:
            raise OSError("; ".join(failures))


def _call(errors: _Errors, func: Callable[..., Any], *args: Any) -> Any:
    errors.failures.clear()
    try:
        result = func(*args)
    except (OSError, ValueError, RuntimeError, NotImplementedError):
        raise
    except Exception as exc:  # noqa: BLE001 - supriya's RtMidiError and nanobind's conversions
        raise OSError(str(exc)) from exc
    errors.check()
    return result


class Client:
    """One RtMidi input or output client with errors as OSError; ``get_ports``/``delete`` as python-rtmidi's."""

    def __init__(self, kind: str, api: str | None = None, client_name: str | None = None) -> None:
        sm = lib()
        self.kind = kind
        self.errors = _Errors()
        rtapi = sm.RtMidiAPI(api_number(api))
        name = client_name or "metadj-bridge"
        try:
            self.rt: Any = sm.MidiIn(rtapi, name) if kind == "input" else sm.MidiOut(rtapi, name)
        except Exception as exc:  # noqa: BLE001 - RtMidi could not make the client (no ALSA sequencer, ...)
            raise OSError(f"MIDI {kind} client: {exc}") from exc
        self.rt.set_error_callback(self.errors)
        self.api = str(sm.RtMidiAPI(self.rt.get_current_api()).name)

    def get_ports(self) -> list[str]:
        count = _call(self.errors, self.rt.get_port_count)
        return [_call(self.errors, self.rt.get_port_name, i) for i in range(count)]

    def open(self, name: str) -> None:
        names = self.get_ports()
        if name not in names:
            raise OSError(f"unknown MIDI {self.kind} {name!r}; there are {names}")
        _call(self.errors, self.rt.open_port, names.index(name), "metadj-bridge")

    def open_virtual(self, name: str) -> None:
        if self.api == "WINDOWS_MM":
            raise NotImplementedError("the Windows MultiMedia API has no virtual ports")
        self.get_ports()  # the API answers: a JACK server that is not there fails here, cleanly
        _call(self.errors, self.rt.open_virtual_port, name)

    def listen(self, on_bytes: Callable[[list[int]], None]) -> None:
        """Every message's bytes to ``on_bytes`` (RtMidi's thread); clock and transport kept, SysEx dropped."""

        def on_message(message: list[int], _delta: float, _data: object = None) -> None:
            try:
                on_bytes(message)
            except BaseException:  # noqa: BLE001 - nothing may leave RtMidi's thread
                log.exception("MIDI input callback failed")

        self.rt.ignore_types(True, False, True)
        self.rt.set_callback(on_message)

    def cancel_callback(self) -> None:
        if self.kind == "input":
            self.rt.cancel_callback()

    def close_port(self) -> None:
        try:
            _call(self.errors, self.rt.close_port)
        except OSError:
            log.debug("closing a MIDI %s failed", self.kind, exc_info=True)

    def delete(self) -> None:
        # Our error callback stays: with supriya's raising one, an error in RtMidi's destructor could end the process.
        self.rt.delete()

    def send(self, data: Sequence[int]) -> None:
        _call(self.errors, self.rt.send_message, list(data))


# ---------------------------------------------------------------------- the bridge's raw fast path


def open_raw_input(
    api: str | None, name: str, enqueue: Callable[[Sequence[int], float, str], None], client: str, *, virtual: bool
) -> Client:
    """An input whose bytes go to ``enqueue(data, time.monotonic(), name)`` with no mido objects made (what
    :class:`~metadj_bridge.inputs.midi_ports.RawInput` does with python-rtmidi)."""
    port = Client("input", api, client)
    monotonic = time.monotonic
    try:
        port.listen(lambda data: enqueue(data, monotonic(), name))
        if virtual:
            port.open_virtual(name)
        else:
            port.open(name)
    except BaseException:
        port.delete()
        raise
    return port


# ---------------------------------------------------------------------- mido's backend API


def _names(kind: str, api: str | None) -> list[str]:
    client = Client(kind, api, "metadj-bridge-ports")
    try:
        return client.get_ports()
    finally:
        client.delete()


def get_input_names(api: str | None = None, **_: Any) -> list[str]:
    return _names("input", api)


def get_output_names(api: str | None = None, **_: Any) -> list[str]:
    return _names("output", api)


def get_ioport_names(api: str | None = None, **_: Any) -> list[str]:
    outputs = set(get_output_names(api))
    return [name for name in get_input_names(api) if name in outputs]


def get_devices(api: str | None = None, **_: Any) -> list[dict[str, Any]]:
    inputs, outputs = get_input_names(api), get_output_names(api)
    return [{"name": n, "is_input": n in inputs, "is_output": n in outputs} for n in dict.fromkeys(inputs + outputs)]


class _PortBase:
    _client: Client | None = None
    name: str | None

    def _open_client(self, kind: str, api: str | None, client_name: str | None, virtual: bool) -> Client:
        client = Client(kind, api, client_name)
        try:
            if virtual or client_name is not None:
                if not self.name:
                    raise OSError("a virtual MIDI port needs a name")
                client.open_virtual(self.name)
            else:
                if not self.name:  # mido's "the first port there is"
                    names = client.get_ports()
                    if not names:
                        raise OSError(f"no MIDI {kind}s available")
                    self.name = names[0]
                client.open(self.name)
        except BaseException:
            client.delete()
            raise
        return client

    def _close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            client.cancel_callback()
            client.close_port()
            client.delete()


class Input(_PortBase, ports.BaseInput):
    """A mido input; messages go to ``callback`` if set, else to a queue for ``receive``/``poll``."""

    _locking = False

    def _open(self, client_name: str | None = None, virtual: bool = False, api: str | None = None,
              callback: Callable[[Message], None] | None = None, **_: Any) -> None:
        self._queue: queue.SimpleQueue[Message] = queue.SimpleQueue()
        self._callback = callback
        self._client = self._open_client("input", api, client_name, virtual)
        self._client.listen(self._on_bytes)
        self._device_type = f"supriya-midi/{self._client.api}"

    def _on_bytes(self, data: list[int]) -> None:
        try:
            message = Message.from_bytes(data)
        except ValueError:  # a message mido does not know: dropped, as mido's rtmidi backend does
            return
        callback = self._callback
        if callback is not None:
            callback(message)
        else:
            self._queue.put(message)

    @property
    def callback(self) -> Callable[[Message], None] | None:
        return self._callback

    @callback.setter
    def callback(self, func: Callable[[Message], None] | None) -> None:
        if func is not None:
            while True:
                try:
                    func(self._queue.get_nowait())
                except queue.Empty:
                    break
        self._callback = func

    def receive(self, block: bool = True) -> Message | None:
        if not block:
            return self.poll()
        return self._queue.get()

    def poll(self) -> Message | None:
        try:
            return self._queue.get_nowait()
        except queue.Empty:
            return None


class Output(_PortBase, ports.BaseOutput):
    """A mido output; ``send`` raises OSError when RtMidi reports a failure (a device gone)."""

    _locking = False

    def _open(self, client_name: str | None = None, virtual: bool = False, api: str | None = None, **_: Any) -> None:
        self._send_lock = threading.Lock()
        self._client = self._open_client("output", api, client_name, virtual)
        self._device_type = f"supriya-midi/{self._client.api}"

    def send(self, msg: Message) -> None:
        if self.closed or self._client is None:
            raise ValueError("send() called on closed port")
        with self._send_lock:
            self._client.send(msg.bytes())


class IOPort(ports.IOPort):
    def __init__(self, name: str | None = None, **kwargs: Any) -> None:
        super().__init__(Input(name, **kwargs), Output(name, **kwargs))
