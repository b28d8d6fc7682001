"""Audio input devices through PortAudio: loading it, listing and finding inputs, choosing their channels.

PortAudio is process-wide state, kept here in one place: :data:`portaudio_lock` serialises every call that can
re-initialise it or open and close its streams; the streams open in this process are registered
(:func:`stream_opened`, :func:`stream_closed`) because re-initialising PortAudio closes all of them, so
:func:`rescan_input_devices` only re-initialises (the one way to see a device plugged in later) while none is
open. A stream whose JACK server died is :func:`abandon_stream`-ed: never touched again, and PortAudio is then
never terminated (see :mod:`metadj_bridge.inputs.live_audio`).

sounddevice loads only when first used, and a missing PortAudio library is a :class:`ConfigError` that says
what to install.
"""

from __future__ import annotations

import atexit
import logging
import re
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from metadj_bridge.errors import ConfigError, printable

log = logging.getLogger(__name__)

__all__ = [
    "InputDevice",
    "find_input_device",
    "list_input_devices",
    "parse_channels",
]

#: Serialises every call that can re-initialise PortAudio or open and close its streams.
portaudio_lock = threading.RLock()
#: Streams open in this process; PortAudio is only re-initialised when none is.
_open_streams: set[Any] = set()
#: Streams whose JACK server vanished: never touched again, kept referenced so nothing frees them.
_abandoned_streams: list[Any] = []
_portaudio_pinned = False


def load_sounddevice() -> Any:
    """The sounddevice module, loaded on first use; ConfigError saying what to install when PortAudio is missing."""
    try:
        import sounddevice
    except OSError as exc:  # sounddevice raises OSError when the PortAudio library is missing
        raise ConfigError(
            f"live audio needs the PortAudio library ({exc}); install it: apt-get install libportaudio2 "
            "(Linux) or brew install portaudio (macOS)"
        ) from None
    return sounddevice


@dataclass(frozen=True)
class InputDevice:
    """One PortAudio device that can capture."""

    index: int
    name: str
    hostapi: str
    channels: int
    default_samplerate: float
    is_default: bool = field(default=False, compare=False)

    @property
    def is_jack(self) -> bool:
        return "JACK" in self.hostapi

    @property
    def label(self) -> str:
        """The name for a log or error line: it comes from the system (a USB descriptor, a JACK client) and may hold
        terminal escapes."""
        return printable(self.name)

    def __str__(self) -> str:
        mark = " (default)" if self.is_default else ""
        return (f"[{self.index}] {self.label} - {printable(self.hostapi)}, {self.channels} in, "
                f"{self.default_samplerate:g} Hz{mark}")


def list_input_devices() -> list[InputDevice]:
    """Every device with at least one input channel, as PortAudio saw them when it last initialised."""
    sd = load_sounddevice()
    with portaudio_lock:
        try:
            devices = sd.query_devices()
            hostapis = sd.query_hostapis()
        except sd.PortAudioError as exc:
            log.debug("PortAudio could not list devices: %s", exc)
            return []
        try:
            default = int(sd.query_devices(kind="input")["index"])
        except (sd.PortAudioError, ValueError):
            default = -1
    found = []
    for index, info in enumerate(devices):
        if info["max_input_channels"] < 1:
            continue
        found.append(InputDevice(
            index=index,
            name=info["name"],
            hostapi=hostapis[info["hostapi"]]["name"],
            channels=int(info["max_input_channels"]),
            default_samplerate=float(info["default_samplerate"]),
            is_default=index == default,
        ))
    return found


def rescan_input_devices() -> list[InputDevice]:
    """The inputs as they are now: PortAudio re-initialised first unless a stream is open (that would close it)."""
    sd = load_sounddevice()
    with portaudio_lock:
        if not _open_streams and not _portaudio_pinned:
            sd._terminate()  # PortAudio only discovers devices when it initialises
            sd._initialize()
        return list_input_devices()


def _describe(devices: Sequence[InputDevice]) -> str:
    if not devices:
        return "PortAudio sees no input devices (run `metadj-bridge devices`; is the interface plugged in?)"
    return "available inputs:\n  " + "\n  ".join(str(d) for d in devices)


def find_input_device(device: str | int | None, devices: Sequence[InputDevice] | None = None) -> InputDevice:
    """An input by index, by case-insensitive name substring, or the default one; ConfigError lists the inputs."""
    devices = list_input_devices() if devices is None else list(devices)
    if device is None:
        for d in devices:
            if d.is_default:
                return d
        raise ConfigError(f"there is no default audio input; name one with --device. {_describe(devices)}")
    if isinstance(device, str) and device.strip().isdigit():
        device = int(device)
    if isinstance(device, int):
        for d in devices:
            if d.index == device:
                return d
        raise ConfigError(f"audio input {device}: no input device has that number. {_describe(devices)}")
    wanted = device.strip().casefold()
    exact = [d for d in devices if d.name.casefold() == wanted]
    matches = exact or [d for d in devices if wanted in d.name.casefold()]
    if len(matches) > 1:
        # The same device often appears once per host API (Windows: MME, DirectSound, WASAPI): take the default API's.
        on_default = [d for d in matches if d.hostapi == _default_hostapi(devices)]
        matches = on_default if len(on_default) == 1 else matches
    if len(matches) == 1:
        return matches[0]
    if not matches:
        raise ConfigError(f"audio input {device!r}: no input device name contains it. {_describe(devices)}")
    raise ConfigError(f"audio input {device!r} matches {len(matches)} inputs; give the number instead. "
                      f"{_describe(matches)}")


def _default_hostapi(devices: Sequence[InputDevice]) -> str | None:
    return next((d.hostapi for d in devices if d.is_default), None)


def parse_channels(spec: str | int | Sequence[int] | None, available: int) -> tuple[int, ...]:
    """Which input channels to mix, as 0-based indices, from 1-based ``"1"``, ``"3-4"``, ``"1,2"``, ``"all"``.

    None takes the first two channels (one on a mono device).
    """
    if spec is None:
        return tuple(range(min(2, available)))
    if isinstance(spec, str):
        text = spec.strip().lower()
        if text == "all":
            return tuple(range(available))
        if re.fullmatch(r"\d+\s*-\s*\d+", text):
            low, high = (int(part) for part in text.split("-"))
            numbers: Sequence[int] = range(low, high + 1) if low <= high else []
        elif re.fullmatch(r"\d+(\s*,\s*\d+)*", text):
            numbers = [int(part) for part in text.split(",")]
        else:
            raise ConfigError(f"channels: {spec!r} is not a channel list (examples: 1, 3-4, 1,2, all)")
    elif isinstance(spec, int):
        numbers = [spec]
    else:
        numbers = list(spec)
    if not numbers or any(not isinstance(n, int) or not 1 <= n <= available for n in numbers):
        raise ConfigError(f"channels: {spec!r} is not within this device's inputs (1-{available})")
    return tuple(sorted({n - 1 for n in numbers}))


# -- streams: which are open, which were abandoned, and what PortAudio still says about them


def stream_opened(stream: Any) -> None:
    _open_streams.add(stream)


def stream_closed(stream: Any) -> None:
    _open_streams.discard(stream)


def stream_active(stream: Any) -> bool:
    try:
        return bool(stream.active)
    except load_sounddevice().PortAudioError:  # PortAudio no longer knows the stream
        return False


def stream_stopped(stream: Any) -> bool:
    try:
        return bool(stream.stopped)
    except load_sounddevice().PortAudioError:
        return True


def abandon_stream(stream: Any) -> None:
    """Leave a stream whose JACK server died alone for good, and never terminate PortAudio after it.

    Stopping that stream would wait 10 minutes for a process cycle that never comes, and PortAudio's
    terminate would abort the process, so sounddevice's exit handler is removed too.
    """
    global _portaudio_pinned
    _abandoned_streams.append(stream)
    _open_streams.discard(stream)
    if not _portaudio_pinned:
        _portaudio_pinned = True
        exit_handler = getattr(load_sounddevice(), "_exit_handler", None)
        if exit_handler is not None:
            atexit.unregister(exit_handler)  # its Pa_Terminate would abort the process
