"""A live input device (microphone, line input, BlackHole, VB-Cable, JACK) as an audio block source.

The PortAudio callback only copies the block and enqueues it; downmixing and re-blocking happen in
``read()``. A watchdog thread notices a device that stops (stream error, stream finished, or no callback for
``loss_timeout`` s), logs one WARNING, and looks for the device by name every ``reopen_interval`` s, logging
one INFO when it is back. While the device is gone ``read()`` makes up silence blocks (``AudioBlock.lost``) at
the hop rate, so downstream signals decay instead of freezing. PortAudio only sees devices plugged in after it
initialised when it is re-initialised, so the search re-initialises PortAudio, unless another stream of this
process is open (re-initialising closes every PortAudio stream in the process).

JACK is the exception. When the JACK server itself stops, PortAudio's JACK client is dead and PortAudio 19.6
can neither stop that stream (``Pa_AbortStream`` waits 10 minutes for a process cycle that never comes) nor
terminate (``pa_jack.c`` asserts that ``jack_client_close`` succeeds, which it does not: the process aborts),
and without terminating it cannot reach a new server. So after a JACK server loss the source sends silence until
it is closed, tells the performer to restart the bridge once JACK is back, leaves that stream alone, and removes
sounddevice's exit handler so that the process can still exit cleanly.

The reading interface is :mod:`metadj_bridge.inputs.audio`'s; devices are found by
:mod:`metadj_bridge.inputs.audio_devices`.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from metadj_bridge.errors import ConfigError, RateLimitedWarning, printable
from metadj_bridge.inputs.audio import AudioBlock, BlockSourceBase, check_hop_size
from metadj_bridge.inputs.audio_devices import (
    InputDevice,
    abandon_stream,
    find_input_device,
    load_sounddevice,
    parse_channels,
    portaudio_lock,
    rescan_input_devices,
    stream_active,
    stream_closed,
    stream_opened,
    stream_stopped,
)

log = logging.getLogger(__name__)

__all__ = ["LiveInputSource"]

_WAKE = object()  # queue marker: state changed or closing; look again

_Chunk = tuple[int, int, np.ndarray, float]  # (stream generation, first frame in that stream, frames, captured_at)


#: Marks the log lines that describe a lost input: the status shows :meth:`LiveInputSource.problems` instead.
_PROBLEM = {"problem": "audio input lost"}


class LiveInputSource(BlockSourceBase):
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
        self.hop_size = check_hop_size(hop_size)
        sd = load_sounddevice()
        self.device = find_input_device(device)
        self._selected = parse_channels(channels, self.device.channels)
        self._stream_channels = max(self._selected) + 1
        self.samplerate = int(samplerate or self.device.default_samplerate)
        with portaudio_lock:
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
        self._losses_said = (0, 0)  # (overflows, dropped) already counted into _loss_warning
        self._loss_warning = RateLimitedWarning(
            log, f"audio input {self.device.label} is losing audio", interval=warn_interval)

    @property
    def connected(self) -> bool:
        """False while the device is gone (the source is making up silence)."""
        with self._lock:
            return self._life.running and self._lost_since is None

    # -- the PortAudio side (callback thread, watchdog thread)

    def _open_stream(self, device: InputDevice) -> Any:
        sd = load_sounddevice()
        self._generation += 1
        generation, frame, queued_end = self._generation, 0, 0
        put, max_backlog = self._queue.put, self._max_backlog_frames
        channels = self._stream_channels

        def callback(indata: Any, frames: int, time_info: Any, status: Any) -> None:
            # Only copy and enqueue: anything heavier here makes PortAudio overflow (design.md).
            nonlocal frame, queued_end
            now = time.monotonic()
            self._last_callback = now
            if status and status.input_overflow:
                self.overflows += 1
            read_generation, read_frame = self._expected
            if queued_end - (read_frame if read_generation == generation else 0) < max_backlog:
                # A raw stream hands over PortAudio's buffer: copy it into an array of our own (sounddevice's
                # numpy stream sets .shape on its array, which NumPy 2.5 deprecates, at every callback).
                block = np.frombuffer(indata, dtype=np.float32).reshape(frames, channels).copy()
                put((generation, frame, block, now))
                queued_end = frame + frames
            frame += frames  # a skipped chunk leaves a gap that the reader sees, counts and jumps over

        finished = threading.Event()
        stream = sd.RawInputStream(
            device=device.index, channels=self._stream_channels, samplerate=self.samplerate, dtype="float32",
            blocksize=0, latency="low", callback=callback, finished_callback=finished.set,
        )
        self._finished = finished
        self._last_callback = time.monotonic()
        stream.start()
        stream_opened(stream)
        return stream

    def _start(self) -> None:
        sd = load_sounddevice()
        with portaudio_lock:
            try:
                self._stream = self._open_stream(self.device)
            except sd.PortAudioError as exc:
                raise ConfigError(f"audio input {self.device}: cannot open it: {exc}") from None
        log.info("listening to %s (%s) at %d Hz, hop %d", self.device.label, printable(self.device.hostapi),
                 self.samplerate, self.hop_size)
        self._watchdog = threading.Thread(target=self._watch, name=f"metadj-audio-watchdog:{self.device.label}",
                                          daemon=True)
        self._watchdog.start()

    def _stream_is_dead(self) -> str | None:
        if self._finished.is_set():
            return "the stream stopped"
        if not stream_active(self._stream):
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
                (log.debug if failed else log.exception)("audio input watchdog for %s", self.device.label)
                failed = True
        if self._stream is not None:
            self._dispose(self._stream)
            self._stream = None

    def problems(self) -> list[str]:
        """What is wrong now, for the performer's status: the input while it is lost (gone once it is back)."""
        with self._lock:
            lost = self._lost_since is not None
        if not lost or not self._life.running:
            return []
        if self._jack_died:
            return [f"audio input {self.device.label} lost: the JACK server stopped; restart metadj-bridge once it "
                    "is back"]
        return [f"audio input {self.device.label} lost: sending silence, looking for it every "
                f"{self.reopen_interval:g} s"]

    def _declare_lost(self, reason: str) -> None:
        now = time.monotonic()
        with self._lock:
            self._lost_since = now
            self._silence_due = now
        self._queue.put(_WAKE)
        stream, self._stream = self._stream, None
        # PortAudio's JACK stream goes inactive without a "finished" call only when the server shuts down.
        jack_died = self._jack_died = self.device.is_jack and not stream_active(stream) and not self._finished.is_set()
        self._quiet_loss = now - self._last_warning < self.warn_interval
        if self._quiet_loss:
            log.debug("audio input %s lost again (%s)", self.device.label, reason)
        else:
            self._last_warning = now
            if jack_died:
                log.warning("audio input %s lost: the JACK server stopped. Sending silence. PortAudio cannot reach a "
                            "restarted JACK server from a running process: restart metadj-bridge once JACK is back",
                            self.device.label, extra=_PROBLEM)
            else:
                log.warning("audio input %s lost (%s); sending silence and looking for it every %g s",
                            self.device.label, reason, self.reopen_interval, extra=_PROBLEM)
        self._dispose(stream)

    def _dispose(self, stream: Any) -> None:
        with portaudio_lock:
            if self.device.is_jack and not stream_active(stream) and not stream_stopped(stream):
                abandon_stream(stream)  # its JACK server is gone: stopping it would hang for 10 minutes
                return
            stream_closed(stream)
            try:
                stream.abort()
                stream.close()
            except load_sounddevice().PortAudioError as exc:  # a vanished device may refuse; it is dropped anyway
                log.debug("closing the audio stream of %s: %s", self.device.label, exc)

    def _try_reopen(self) -> None:
        sd = load_sounddevice()
        with portaudio_lock:
            try:
                devices = rescan_input_devices()
                found = [d for d in devices if d.name == self.device.name and d.hostapi == self.device.hostapi]
                found = found or [d for d in devices if d.name == self.device.name]
                if not found:
                    log.debug("audio input %s is still gone", self.device.label)
                    return
                self.device = found[0]
                stream = self._open_stream(self.device)
            except (sd.PortAudioError, ValueError) as exc:
                log.debug("audio input %s cannot be reopened yet: %s", self.device.label, exc)
                return
        self._stream = stream
        with self._lock:
            self._lost_since = None
        self._queue.put(_WAKE)
        (log.debug if self._quiet_loss else log.info)("audio input %s is back", self.device.label)

    # -- the reader side

    def _read(self, deadline: float | None) -> AudioBlock | None:
        hop = self.hop_size
        while True:
            if self._pending_len >= hop:
                return self._take(hop, self._pending_at, lost=False)
            if self._life.closed:
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
        if (self.overflows, self.dropped) != self._losses_said:
            self._say_losses()
        if len(self._selected) == 1:
            mono = data[:, self._selected[0]].copy()
        else:
            mono = data[:, self._selected].mean(axis=1, dtype=np.float32)
        self._pending.append(mono)
        self._pending_len += len(mono)
        self._pending_at = captured_at

    def _say_losses(self) -> None:
        """Input overflows (PortAudio or the driver lost audio: an overloaded machine, a buffer too small) and audio
        skipped because the analysis fell behind: one rate-limited WARNING, never a line per block."""
        overflows, dropped = self._losses_said
        if self.overflows != overflows:
            self._loss_warning.note(f"input overflow ({self.overflows} since the start: the system did not keep up)")
        if self.dropped != dropped:
            self._loss_warning.note(f"{(self.dropped - dropped) / self.samplerate:.2f} s skipped (the analysis fell "
                                    "behind)")
        self._losses_said = (self.overflows, self.dropped)

    def _take(self, hop: int, captured_at: float, lost: bool) -> AudioBlock:
        joined = self._pending[0] if len(self._pending) == 1 else np.concatenate(self._pending)
        samples, rest = joined[:hop], joined[hop:]
        self._pending = [rest] if len(rest) else []
        self._pending_len = len(rest)
        block = AudioBlock(np.ascontiguousarray(samples), self._pos, self.samplerate, captured_at, lost)
        self._pos += hop
        return block

    def close(self) -> None:
        if not self._life.end():
            return
        self._stop.set()
        self._queue.put(_WAKE)
        watchdog = self._watchdog
        if watchdog is not None and watchdog is not threading.current_thread():
            watchdog.join(timeout=3.0)
            if watchdog.is_alive():
                log.warning("the audio input %s did not close within 3 s; leaving it to PortAudio", self.device.label)
        elif self._stream is not None:
            self._dispose(self._stream)
            self._stream = None
