"""Audio in, cut into hops with sample-accurate positions: the block-source interface and the WAV file source.

Every source hands out :class:`AudioBlock` objects (mono float32, exactly ``hop_size`` samples, ``start`` counted
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

Elsewhere: reading audio files in :mod:`~metadj_bridge.inputs.audio_file`, finding input devices in
:mod:`~metadj_bridge.inputs.audio_devices`, the live device source in :mod:`~metadj_bridge.inputs.live_audio`.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from types import TracebackType
from typing import Self

import numpy as np

from metadj_bridge.errors import ConfigError
from metadj_bridge.inputs.audio_file import read_audio
from metadj_bridge.lifecycle import Lifecycle, State

__all__ = ["AudioBlock", "BlockSourceBase", "WavFileSource", "check_hop_size"]


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


def check_hop_size(hop_size: int) -> int:
    """``hop_size`` itself when it is a whole positive number of samples; ConfigError otherwise."""
    if not isinstance(hop_size, int) or isinstance(hop_size, bool) or hop_size < 1:
        raise ConfigError(f"hop_size: {hop_size!r} is not a positive number of samples (512 is usual)")
    return hop_size


class BlockSourceBase:
    """What every block source shares: start once, ``read()`` from one thread at a time, close from any, counters.

    A subclass opens its audio in ``_start()``, makes the next block in ``_read()`` and ends in ``close()``
    (which must wake a blocked ``_read()``). ``start()`` after ``close()`` raises :class:`ClosedError`.
    """

    samplerate: int
    hop_size: int

    def __init__(self) -> None:
        self.blocks = 0
        self.overflows = 0
        self.dropped = 0
        self._life = Lifecycle(type(self).__name__)
        self._read_lock = threading.Lock()

    def start(self) -> None:
        """Open the audio; RuntimeError when already started, ClosedError after ``close()``."""
        if not self._life.begin():  # ClosedError once closed
            raise RuntimeError(f"{type(self).__name__} is already started")
        with self._life.opening():  # nothing opened: start() may be tried again
            self._start()

    def _start(self) -> None:
        raise NotImplementedError

    def read(self, timeout: float | None = None) -> AudioBlock | None:
        """The next block; None at the end of the audio or once closed; TimeoutError if none came in time."""
        if self._life.state is State.NEW:
            raise RuntimeError(f"{type(self).__name__}.read() before start()")
        deadline = None if timeout is None else time.monotonic() + timeout
        if not self._read_lock.acquire(timeout=-1 if timeout is None else max(timeout, 0.0)):
            raise TimeoutError(f"no audio block within {timeout:g} s")
        try:
            if self._life.closed:
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
        return self._life.closed

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


class WavFileSource(BlockSourceBase):
    """An audio file (or an array) as an audio source: the seed's "demo track" and "upload" modes.

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
        self.hop_size = check_hop_size(hop_size)
        if isinstance(path_or_array, np.ndarray):
            if samplerate is None or samplerate < 1:
                raise ConfigError("an audio array needs its samplerate")
            data = np.asarray(path_or_array, np.float32)
            if data.ndim == 2:
                data = data.mean(axis=1, dtype=np.float32)
            self.name = "<array>"
        else:
            data, rate = read_audio(path_or_array)
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
        self._life.end()
        self._closing.set()
