"""Audio in: a WAV file or a live input device, cut into hops with sample-accurate positions.

Both sources hand out :class:`AudioBlock` objects (mono float32, exactly ``hop_size`` samples, ``start`` counted
from the first sample of the audio) through one blocking, thread-safe interface, meant for the analysis worker
thread::

    source = LiveInputSource("BlackHole", hop_size=512)   # or WavFileSource("set.wav", hop_size=512)
    source.start()                       # opens the device / starts the clock; ConfigError if it cannot
    while (block := source.read(timeout=0.5)) is not None:   # TimeoutError if nothing came in time
        analyse(block)                   # then loop.call_soon_threadsafe(...) to reach the event loop
    source.close()                       # any thread, safe twice; a blocked read() then returns None

``read()`` returns ``None`` at the end of a non-looping file and once the source is closed; ``for block in
source`` does the same loop without timeouts. Counters: ``blocks`` (handed out), ``overflows`` (PortAudio
input overflows), ``dropped`` (samples skipped because the reader fell more than ``max_backlog`` seconds
behind; positions jump over them so they stay true). ``AudioBlock.captured_at`` is the ``time.monotonic()`` at
which the block's last sample arrived (the PortAudio callback for live input, the due time for a file).

Why the file source has no thread: in real-time mode ``read()`` itself waits until ``t0 + (start + hop) /
samplerate``, the moment a live device would have delivered that hop. Scheduling by sample count never drifts,
a slow reader catches up exactly like it would drain a live queue, and there is no thread to leak and no event
loop to tie a file to.

Live input: the PortAudio callback only copies the block and enqueues it; downmixing and re-blocking happen in
``read()``. A watchdog thread notices a device that stops (stream error, stream finished, or no callback for
``loss_timeout`` s), logs one WARNING, and looks for the device by name every ``reopen_interval`` s, logging
one INFO when it is back. While the device is gone ``read()`` makes up silence blocks (``AudioBlock.lost``) at
the hop rate, so downstream signals decay instead of freezing. PortAudio only sees devices plugged in after it
initialised when it is re-initialised, so the search re-initialises PortAudio, unless another stream of this
module is open (re-initialising closes every PortAudio stream in the process).

JACK is the exception. When the JACK server itself stops, PortAudio's JACK client is dead and PortAudio 19.6
can neither stop that stream (``Pa_AbortStream`` waits 10 minutes for a process cycle that never comes) nor
terminate (``pa_jack.c`` asserts that ``jack_client_close`` succeeds, which it does not: the process aborts),
and without terminating it cannot reach a new server. So after a JACK server loss the source sends silence until
it is closed, tells the performer to restart the bridge once JACK is back, leaves that stream alone, and removes
sounddevice's exit handler so that the process can still exit cleanly.
"""

from __future__ import annotations

import atexit
import enum
import logging
import os
import queue
import re
import struct
import threading
import time
import wave
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, BinaryIO, Self

import numpy as np

from metadj_bridge.errors import ConfigError

log = logging.getLogger(__name__)

__all__ = [
    "AudioBlock",
    "AudioFormatError",
    "InputDevice",
    "LiveInputSource",
    "WavFileSource",
    "list_input_devices",
    "read_wav",
]


class AudioFormatError(ConfigError):
    """An audio file that metadj-bridge cannot read (not PCM WAV)."""


# --------------------------------------------------------------------------------------------- WAV files

_SUPPORTED = "PCM WAV (16- or 24-bit; 8- and 32-bit integer work too)"
_FFMPEG = 'ffmpeg -i "{path}" -ar 44100 -ac 2 -c:a pcm_s16le out.wav'
_SOX = 'sox "{path}" -b 16 out.wav'

_PCM, _FLOAT, _EXTENSIBLE = 0x0001, 0x0003, 0xFFFE
_WAV_CODECS = {0x0002: "MS ADPCM", 0x0006: "A-law", 0x0007: "mu-law", 0x0011: "IMA ADPCM", 0x0055: "MP3"}


def _format_error(path: Path, what: str, tool: str = _FFMPEG) -> AudioFormatError:
    return AudioFormatError(
        f"{path}: {what}; metadj-bridge reads {_SUPPORTED}. Convert it with: {tool.format(path=path)}"
    )


def _sniff(path: Path, head: bytes) -> str | None:
    """Name the kind of a file that is not a RIFF WAV, from its first bytes."""
    if head[:3] == b"ID3" or (len(head) > 1 and head[0] == 0xFF and head[1] & 0xE0 == 0xE0):
        return "an MP3 file"
    if head[:4] == b"FORM" and head[8:12] in (b"AIFF", b"AIFC"):
        return "an AIFF file"
    if head[:4] == b"fLaC":
        return "a FLAC file"
    if head[:4] == b"OggS":
        return "an Ogg file"
    if head[4:8] == b"ftyp":
        return "an MP4/M4A file"
    if head[:4] in (b"RF64", b"RIFX"):
        return f"a {head[:4].decode()} WAV"
    return None


@dataclass(frozen=True)
class _WavLayout:
    tag: int  # format tag, with WAVE_FORMAT_EXTENSIBLE resolved to its sub-format
    extensible: bool
    channels: int
    samplerate: int
    bits: int
    data_offset: int
    data_size: int


def _wav_layout(path: Path, f: Any, file_size: int) -> _WavLayout:
    """Walk the RIFF chunks for ``fmt `` and ``data`` (the stdlib reader in 3.11 refuses EXTENSIBLE headers)."""
    f.seek(12)
    fmt: tuple[int, int, int, int, bool] | None = None
    while True:
        header = f.read(8)
        if len(header) < 8:
            raise AudioFormatError(f"{path}: this WAV file has no audio data chunk (truncated or damaged)")
        chunk_id, size = header[:4], struct.unpack("<I", header[4:])[0]
        if chunk_id == b"fmt ":
            body = f.read(size)
            if len(body) < 16:
                raise AudioFormatError(f"{path}: the WAV format chunk is damaged")
            tag, channels, rate, _, _, bits = struct.unpack("<HHIIHH", body[:16])
            extensible = tag == _EXTENSIBLE
            if extensible and len(body) >= 26:
                tag = struct.unpack("<H", body[24:26])[0]  # first two bytes of the sub-format GUID
            fmt = (tag, channels, rate, bits, extensible)
        elif chunk_id == b"data":
            if fmt is None:
                raise AudioFormatError(f"{path}: the WAV data comes before its format chunk (damaged file)")
            tag, channels, rate, bits, extensible = fmt
            offset = f.tell()
            return _WavLayout(tag, extensible, channels, rate, bits, offset, min(size, file_size - offset))
        else:
            f.seek(size + (size & 1), os.SEEK_CUR)


def _decode_pcm(raw: bytes, width: int) -> np.ndarray:
    """Little-endian PCM samples of ``width`` bytes to float32 in [-1, 1)."""
    if width == 1:
        return (np.frombuffer(raw, np.uint8).astype(np.float32) - 128.0) / 128.0
    if width == 2:
        return np.frombuffer(raw, "<i2").astype(np.float32) / 32768.0
    if width == 3:
        # Put each 3-byte sample in the top of an int32, then shift back down: the sign comes along.
        packed = np.frombuffer(raw, np.uint8).reshape(-1, 3)
        wide = np.zeros((len(packed), 4), np.uint8)
        wide[:, 1:] = packed
        return (wide.view("<i4").reshape(-1) >> 8).astype(np.float32) / 8388608.0
    return (np.frombuffer(raw, "<i4").astype(np.float64) / 2147483648.0).astype(np.float32)


def _open_audio_file(path: Path) -> BinaryIO:
    try:
        return path.open("rb")
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such audio file") from None
    except IsADirectoryError:
        raise ConfigError(f"{path}: is a folder, not an audio file") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot open the audio file: {exc.strerror or exc}") from None


def read_wav(path: str | os.PathLike[str]) -> tuple[np.ndarray, int]:
    """Read a PCM WAV file as mono float32 in [-1, 1) (channels averaged) and its sample rate.

    Raises :class:`ConfigError` for a missing file and :class:`AudioFormatError` for anything that is not
    8/16/24/32-bit integer PCM WAV, with a command that converts it.
    """
    path = Path(path)
    with _open_audio_file(path) as f:
        file_size = os.fstat(f.fileno()).st_size
        if file_size == 0:
            raise AudioFormatError(f"{path}: the file is empty (0 bytes)")
        head = f.read(12)
        if head[:4] != b"RIFF" or head[8:12] != b"WAVE":
            kind = _sniff(path, head)
            if kind is None:
                raise _format_error(path, "this is not a WAV file")
            raise _format_error(path, f"this is {kind}", _SOX if kind == "an AIFF file" else _FFMPEG)
        layout = _wav_layout(path, f, file_size)
        if layout.tag == _FLOAT:
            raise _format_error(path, f"this is a {layout.bits}-bit floating-point WAV")
        if layout.tag != _PCM:
            codec = _WAV_CODECS.get(layout.tag, f"format {layout.tag:#06x}")
            raise _format_error(path, f"this WAV holds {codec} audio")
        if layout.bits not in (8, 16, 24, 32) or layout.channels < 1 or layout.samplerate < 1:
            raise _format_error(path, f"this WAV is {layout.bits}-bit with {layout.channels} channels at "
                                f"{layout.samplerate} Hz")
        width = layout.bits // 8
        frame_bytes = width * layout.channels
        frames = layout.data_size // frame_bytes
        if frames == 0:
            raise AudioFormatError(f"{path}: the WAV file holds no audio (0 samples)")
        out = np.empty(frames, np.float32)
        reader = _wave_reader(f, layout)
        step = 1 << 18  # frames per read: keeps the peak memory of a one-hour file near the output itself
        for start in range(0, frames, step):
            n = min(step, frames - start)
            raw = reader(n * frame_bytes)
            n = len(raw) // frame_bytes
            samples = _decode_pcm(raw[: n * frame_bytes], width)
            out[start : start + n] = samples.reshape(n, layout.channels).mean(axis=1) if layout.channels > 1 else samples
            if n < step:
                out = out[: start + n]
                break
        return out, layout.samplerate


def _wave_reader(f: Any, layout: _WavLayout) -> Any:
    """A function that returns the next ``n`` bytes of sample data."""
    if not layout.extensible:
        try:
            f.seek(0)
            reader = wave.open(f, "rb")  # plain PCM headers: the stdlib reader
            frame_bytes = reader.getsampwidth() * reader.getnchannels()
            return lambda n: reader.readframes(n // frame_bytes)
        except (wave.Error, EOFError):
            pass  # WAVE_FORMAT_EXTENSIBLE before Python 3.12: read the data chunk found by _wav_layout
    f.seek(layout.data_offset)
    remaining = [layout.data_size]

    def read(n: int) -> bytes:
        data = f.read(min(n, remaining[0]))
        remaining[0] -= len(data)
        return bytes(data)

    return read


# --------------------------------------------------------------------------------------------- blocks


@dataclass(frozen=True, slots=True)
class AudioBlock:
    """``hop_size`` mono float32 samples starting at sample ``start`` of the audio."""

    samples: np.ndarray
    start: int
    samplerate: int
    #: time.monotonic() at which the block's last sample arrived (None when not known).
    captured_at: float | None = None
    #: True for silence made up while the live device was gone.
    lost: bool = False

    @property
    def time(self) -> float:
        """Seconds from the start of the audio to the block's first sample."""
        return self.start / self.samplerate


class _State(enum.Enum):
    NEW = "new"
    RUNNING = "running"
    CLOSED = "closed"


def _check_hop(hop_size: int) -> int:
    if not isinstance(hop_size, int) or isinstance(hop_size, bool) or hop_size < 1:
        raise ConfigError(f"hop_size: {hop_size!r} is not a positive number of samples (512 is usual)")
    return hop_size


class _SourceBase:
    """Lifecycle and counters shared by both sources."""

    samplerate: int
    hop_size: int

    def __init__(self) -> None:
        self.blocks = 0
        self.overflows = 0
        self.dropped = 0
        self._state = _State.NEW
        self._read_lock = threading.Lock()

    def start(self) -> None:
        if self._state is _State.CLOSED:
            raise RuntimeError(f"{type(self).__name__} is closed; create a new one")
        if self._state is _State.RUNNING:
            raise RuntimeError(f"{type(self).__name__} is already started")
        self._start()
        self._state = _State.RUNNING

    def _start(self) -> None:
        raise NotImplementedError

    def read(self, timeout: float | None = None) -> AudioBlock | None:
        """The next block; None at the end of the audio or once closed; TimeoutError if none came in time."""
        if self._state is _State.NEW:
            raise RuntimeError(f"{type(self).__name__}.read() before start()")
        deadline = None if timeout is None else time.monotonic() + timeout
        if not self._read_lock.acquire(timeout=-1 if timeout is None else max(timeout, 0.0)):
            raise TimeoutError(f"no audio block within {timeout:g} s")
        try:
            if self._state is _State.CLOSED:
                return None
            block = self._read(deadline)
            if block is not None:
                self.blocks += 1
            return block
        finally:
            self._read_lock.release()

    def _read(self, deadline: float | None) -> AudioBlock | None:
        raise NotImplementedError

    def __iter__(self) -> Iterator[AudioBlock]:
        """Blocks until the end of the audio or until closed (from another thread)."""
        while True:
            try:
                block = self.read(timeout=0.5)
            except TimeoutError:
                continue
            if block is None:
                return
            yield block

    def close(self) -> None:
        raise NotImplementedError

    @property
    def closed(self) -> bool:
        return self._state is _State.CLOSED

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.close()


# --------------------------------------------------------------------------------------------- file source


class WavFileSource(_SourceBase):
    """A WAV file (or an array) as an audio source: the seed's "demo track" and "upload" modes.

    ``realtime=True`` releases each hop when a live device would have delivered it; ``realtime=False`` hands
    them out as fast as they are read (``listen --file``, tests, benchmarks).
    """

    def __init__(
        self,
        path_or_array: str | os.PathLike[str] | np.ndarray,
        samplerate: int | None = None,
        *,
        hop_size: int,
        loop: bool = False,
        realtime: bool = True,
        max_backlog: float = 2.0,
    ) -> None:
        super().__init__()
        self.hop_size = _check_hop(hop_size)
        if isinstance(path_or_array, np.ndarray):
            if samplerate is None or samplerate < 1:
                raise ConfigError("an audio array needs its samplerate")
            data = np.asarray(path_or_array, np.float32)
            if data.ndim == 2:
                data = data.mean(axis=1, dtype=np.float32)
            self.name = "<array>"
        else:
            data, rate = read_wav(path_or_array)
            if samplerate is not None and samplerate != rate:
                raise ConfigError(f"{path_or_array}: the file is {rate} Hz, not the {samplerate} Hz asked for")
            samplerate = rate
            self.name = str(path_or_array)
        if data.ndim != 1 or len(data) == 0:
            raise ConfigError(f"{self.name}: no audio samples to play")
        self.samplerate = int(samplerate)
        self.loop = loop
        self.realtime = realtime
        self.max_backlog = max_backlog
        self._data = np.ascontiguousarray(data, np.float32)
        self._pos = 0
        self._t0 = 0.0
        self._closing = threading.Event()

    @property
    def duration(self) -> float:
        return len(self._data) / self.samplerate

    def _start(self) -> None:
        self._t0 = time.monotonic()

    def _read(self, deadline: float | None) -> AudioBlock | None:
        n, hop = len(self._data), self.hop_size
        if not self.loop and self._pos >= n:
            return None
        captured_at = None
        if self.realtime:
            now = time.monotonic()
            due = self._t0 + (self._pos + hop) / self.samplerate
            behind = now - due
            if behind > self.max_backlog:
                # Like a live queue that overflowed: skip to the newest hop a device would have delivered.
                newest = int((now - self._t0) * self.samplerate) // hop * hop - hop
                if not self.loop:
                    newest = min(newest, (n - 1) // hop * hop)
                if newest > self._pos:
                    self.dropped += newest - self._pos
                    self._pos = newest
                    due = self._t0 + (self._pos + hop) / self.samplerate
            if due > now:
                wait = due - now if deadline is None else min(due, deadline) - now
                if self._closing.wait(max(wait, 0.0)):
                    return None
                if deadline is not None and due > deadline:
                    raise TimeoutError(f"no audio block within the timeout (next one due in {due - deadline:.3f} s)")
            captured_at = due
        start = self._pos
        offset = start % n if self.loop else start
        if offset + hop <= n:
            samples = self._data[offset : offset + hop].copy()
        elif self.loop:
            samples = self._data[np.arange(offset, offset + hop) % n]  # positions keep growing as the file repeats
        else:
            samples = np.zeros(hop, np.float32)
            samples[: n - offset] = self._data[offset:]
        self._pos += hop
        return AudioBlock(samples, start, self.samplerate, captured_at if captured_at is not None else time.monotonic())

    def close(self) -> None:
        self._state = _State.CLOSED
        self._closing.set()


# --------------------------------------------------------------------------------------------- devices

#: Serialises every call that can re-initialise PortAudio or open and close its streams.
_portaudio_lock = threading.RLock()
#: Streams this module has open; PortAudio is only re-initialised when none is.
_open_streams: set[Any] = set()
#: Streams whose JACK server vanished: never touched again, kept referenced so nothing frees them.
_abandoned_streams: list[Any] = []
_portaudio_pinned = False


def _sounddevice() -> Any:
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

    def __str__(self) -> str:
        mark = " (default)" if self.is_default else ""
        return (f"[{self.index}] {self.name} - {self.hostapi}, {self.channels} in, "
                f"{self.default_samplerate:g} Hz{mark}")


def list_input_devices() -> list[InputDevice]:
    """Every device with at least one input channel, as PortAudio saw them when it last initialised."""
    sd = _sounddevice()
    with _portaudio_lock:
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


def _is_active(stream: Any) -> bool:
    try:
        return bool(stream.active)
    except _sounddevice().PortAudioError:  # PortAudio no longer knows the stream
        return False


def _is_stopped(stream: Any) -> bool:
    try:
        return bool(stream.stopped)
    except _sounddevice().PortAudioError:
        return True


def _pin_portaudio(stream: Any) -> None:
    """Leave a stream whose JACK server died alone for good (see the module docstring)."""
    global _portaudio_pinned
    _abandoned_streams.append(stream)
    _open_streams.discard(stream)
    if not _portaudio_pinned:
        _portaudio_pinned = True
        exit_handler = getattr(_sounddevice(), "_exit_handler", None)
        if exit_handler is not None:
            atexit.unregister(exit_handler)  # its Pa_Terminate would abort the process


# --------------------------------------------------------------------------------------------- live source

_WAKE = object()  # queue marker: state changed or closing; look again

_Chunk = tuple[int, int, np.ndarray, float]  # (stream generation, first frame in that stream, frames, captured_at)


class LiveInputSource(_SourceBase):
    """A microphone, line input or loopback device (BlackHole, VB-Cable, JACK) as an audio source.

    ``device``: an index, a case-insensitive part of the name, or None for the default input. ``channels``:
    which inputs to mix to mono (1-based, ``"3-4"``; default the first two). ``samplerate``: the device's
    default unless given.
    """

    def __init__(
        self,
        device: str | int | None,
        *,
        hop_size: int,
        samplerate: int | None = None,
        channels: str | int | Sequence[int] | None = None,
        loss_timeout: float = 1.0,
        reopen_interval: float = 1.0,
        max_backlog: float = 2.0,
        warn_interval: float = 60.0,
    ) -> None:
        super().__init__()
        self.hop_size = _check_hop(hop_size)
        sd = _sounddevice()
        self.device = find_input_device(device)
        self._selected = parse_channels(channels, self.device.channels)
        self._stream_channels = max(self._selected) + 1
        self.samplerate = int(samplerate or self.device.default_samplerate)
        with _portaudio_lock:
            try:
                sd.check_input_settings(device=self.device.index, channels=self._stream_channels,
                                        samplerate=self.samplerate, dtype="float32")
            except (sd.PortAudioError, ValueError) as exc:
                raise ConfigError(f"audio input {self.device}: cannot capture {self._stream_channels} channel(s) "
                                  f"at {self.samplerate} Hz: {exc}") from None
        self.loss_timeout = loss_timeout
        self.reopen_interval = reopen_interval
        self.warn_interval = warn_interval
        self._max_backlog_frames = int(max_backlog * self.samplerate)
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        # Owned by the watchdog thread once started:
        self._stream: Any = None
        self._generation = 0
        self._last_callback = 0.0
        self._finished = threading.Event()
        self._jack_died = False
        self._watchdog: threading.Thread | None = None
        self._stop = threading.Event()
        self._last_warning = -float("inf")
        self._quiet_loss = False
        # Shared between the watchdog and the reader, under _lock:
        self._lock = threading.Lock()
        self._lost_since: float | None = None
        self._silence_due = 0.0
        # Owned by the reader:
        self._pending: list[np.ndarray] = []
        self._pending_len = 0
        self._pos = 0
        self._expected: tuple[int, int] = (0, 0)
        self._pending_at = 0.0

    @property
    def connected(self) -> bool:
        """False while the device is gone (the source is making up silence)."""
        with self._lock:
            return self._state is _State.RUNNING and self._lost_since is None

    # -- the PortAudio side (callback thread, watchdog thread)

    def _open_stream(self, device: InputDevice) -> Any:
        sd = _sounddevice()
        self._generation += 1
        generation, frame, queued_end = self._generation, 0, 0
        put, max_backlog = self._queue.put, self._max_backlog_frames

        def callback(indata: np.ndarray, frames: int, time_info: Any, status: Any) -> None:
            # Only copy and enqueue: anything heavier here makes PortAudio overflow (design.md).
            nonlocal frame, queued_end
            now = time.monotonic()
            self._last_callback = now
            if status and status.input_overflow:
                self.overflows += 1
            read_generation, read_frame = self._expected
            if queued_end - (read_frame if read_generation == generation else 0) < max_backlog:
                put((generation, frame, indata.copy(), now))
                queued_end = frame + frames
            frame += frames  # a skipped chunk leaves a gap that the reader sees, counts and jumps over

        finished = threading.Event()
        stream = sd.InputStream(
            device=device.index, channels=self._stream_channels, samplerate=self.samplerate, dtype="float32",
            blocksize=0, latency="low", callback=callback, finished_callback=finished.set,
        )
        self._finished = finished
        self._last_callback = time.monotonic()
        stream.start()
        _open_streams.add(stream)
        return stream

    def _start(self) -> None:
        sd = _sounddevice()
        with _portaudio_lock:
            try:
                self._stream = self._open_stream(self.device)
            except sd.PortAudioError as exc:
                raise ConfigError(f"audio input {self.device}: cannot open it: {exc}") from None
        log.info("listening to %s (%s) at %d Hz, hop %d", self.device.name, self.device.hostapi, self.samplerate,
                 self.hop_size)
        self._watchdog = threading.Thread(target=self._watch, name=f"metadj-audio-watchdog:{self.device.name}",
                                          daemon=True)
        self._watchdog.start()

    def _stream_is_dead(self) -> str | None:
        if self._finished.is_set():
            return "the stream stopped"
        if not _is_active(self._stream):
            return "the stream is no longer active"
        silent_for = time.monotonic() - self._last_callback
        if silent_for > self.loss_timeout:
            return f"no audio for {silent_for:.1f} s"
        return None

    def _watch(self) -> None:
        next_attempt = 0.0
        failed = False
        while not self._stop.wait(0.1):
            try:
                if self._stream is not None:
                    reason = self._stream_is_dead()
                    if reason is not None:
                        self._declare_lost(reason)
                        next_attempt = time.monotonic() + self.reopen_interval
                elif not self._jack_died and time.monotonic() >= next_attempt:
                    next_attempt = time.monotonic() + self.reopen_interval
                    self._try_reopen()
            except Exception:  # keep watching: a silent watchdog would leave the show without audio
                (log.debug if failed else log.exception)("audio input watchdog for %s", self.device.name)
                failed = True
        if self._stream is not None:
            self._dispose(self._stream)
            self._stream = None

    def _declare_lost(self, reason: str) -> None:
        now = time.monotonic()
        with self._lock:
            self._lost_since = now
            self._silence_due = now
        self._queue.put(_WAKE)
        stream, self._stream = self._stream, None
        # PortAudio's JACK stream goes inactive without a "finished" call only when the server shuts down.
        jack_died = self._jack_died = self.device.is_jack and not _is_active(stream) and not self._finished.is_set()
        self._quiet_loss = now - self._last_warning < self.warn_interval
        if self._quiet_loss:
            log.debug("audio input %s lost again (%s)", self.device.name, reason)
        else:
            self._last_warning = now
            if jack_died:
                log.warning("audio input %s lost: the JACK server stopped. Sending silence. PortAudio cannot reach a "
                            "restarted JACK server from a running process: restart metadj-bridge once JACK is back",
                            self.device.name)
            else:
                log.warning("audio input %s lost (%s); sending silence and looking for it every %g s",
                            self.device.name, reason, self.reopen_interval)
        self._dispose(stream)

    def _dispose(self, stream: Any) -> None:
        with _portaudio_lock:
            if self.device.is_jack and not _is_active(stream) and not _is_stopped(stream):
                _pin_portaudio(stream)  # its JACK server is gone: stopping it would hang for 10 minutes
                return
            _open_streams.discard(stream)
            try:
                stream.abort()
                stream.close()
            except _sounddevice().PortAudioError as exc:  # a vanished device may refuse; it is dropped anyway
                log.debug("closing the audio stream of %s: %s", self.device.name, exc)

    def _try_reopen(self) -> None:
        sd = _sounddevice()
        with _portaudio_lock:
            try:
                if not _open_streams and not _portaudio_pinned:
                    sd._terminate()  # PortAudio only discovers devices when it initialises
                    sd._initialize()
                devices = list_input_devices()
                found = [d for d in devices if d.name == self.device.name and d.hostapi == self.device.hostapi]
                found = found or [d for d in devices if d.name == self.device.name]
                if not found:
                    log.debug("audio input %s is still gone", self.device.name)
                    return
                self.device = found[0]
                stream = self._open_stream(self.device)
            except (sd.PortAudioError, ValueError) as exc:
                log.debug("audio input %s cannot be reopened yet: %s", self.device.name, exc)
                return
        self._stream = stream
        with self._lock:
            self._lost_since = None
        self._queue.put(_WAKE)
        (log.debug if self._quiet_loss else log.info)("audio input %s is back", self.device.name)

    # -- the reader side

    def _read(self, deadline: float | None) -> AudioBlock | None:
        hop = self.hop_size
        while True:
            if self._pending_len >= hop:
                return self._take(hop, self._pending_at, lost=False)
            if self._state is _State.CLOSED:
                return None
            with self._lock:
                lost_since, due = self._lost_since, self._silence_due
            now = time.monotonic()
            if lost_since is not None and now >= due:
                with self._lock:
                    self._silence_due = due + (hop - self._pending_len) / self.samplerate
                self._pending.append(np.zeros(hop - self._pending_len, np.float32))
                self._pending_len = hop
                return self._take(hop, due, lost=True)
            wake = due if lost_since is not None else None
            if deadline is not None:
                wake = deadline if wake is None else min(wake, deadline)
            try:
                item = self._queue.get(timeout=None if wake is None else max(wake - now, 0.0))
            except queue.Empty:
                if deadline is not None and time.monotonic() >= deadline:
                    raise TimeoutError("no audio block within the timeout") from None
                continue
            if item is not _WAKE:
                self._add(item)

    def _add(self, chunk: _Chunk) -> None:
        generation, frame, data, captured_at = chunk
        expected_generation, expected_frame = self._expected
        if frame > (expected_frame if generation == expected_generation else 0):
            # The reader fell behind and the callback skipped chunks: jump over them so positions stay true.
            gap = frame - (expected_frame if generation == expected_generation else 0) + self._pending_len
            self.dropped += gap
            self._pos += gap
            self._pending, self._pending_len = [], 0
        self._expected = (generation, frame + len(data))
        if len(self._selected) == 1:
            mono = data[:, self._selected[0]].copy()
        else:
            mono = data[:, self._selected].mean(axis=1, dtype=np.float32)
        self._pending.append(mono)
        self._pending_len += len(mono)
        self._pending_at = captured_at

    def _take(self, hop: int, captured_at: float, lost: bool) -> AudioBlock:
        joined = self._pending[0] if len(self._pending) == 1 else np.concatenate(self._pending)
        samples, rest = joined[:hop], joined[hop:]
        self._pending = [rest] if len(rest) else []
        self._pending_len = len(rest)
        block = AudioBlock(np.ascontiguousarray(samples), self._pos, self.samplerate, captured_at, lost)
        self._pos += hop
        return block

    def close(self) -> None:
        if self._state is _State.CLOSED:
            return
        self._state = _State.CLOSED
        self._stop.set()
        self._queue.put(_WAKE)
        watchdog = self._watchdog
        if watchdog is not None and watchdog is not threading.current_thread():
            watchdog.join(timeout=3.0)
            if watchdog.is_alive():
                log.warning("the audio input %s did not close within 3 s; leaving it to PortAudio", self.device.name)
        elif self._stream is not None:
            self._dispose(self._stream)
            self._stream = None
