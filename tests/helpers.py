"""Small shared test helpers (no fakes of project code live here)."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Callable
from typing import Any

import av
import numpy as np
from aiortc import VideoStreamTrack


def free_port() -> int:
    """A TCP port that was free a moment ago on 127.0.0.1."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def wait_for(predicate: Callable[[], Any], limit: float, what: str, interval: float = 0.03) -> Any:
    """Poll ``predicate`` (sync or async) until it returns something truthy, for at most ``limit`` seconds."""
    deadline = time.monotonic() + limit
    while True:
        value = predicate()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {limit:g} s waiting for {what}")
        await asyncio.sleep(interval)


class ColourTrack(VideoStreamTrack):
    """A real outgoing video track (a webcam stand-in): one flat colour at 30 fps."""

    def __init__(self, rgb: tuple[int, int, int], size: tuple[int, int] = (256, 144)) -> None:
        super().__init__()
        self._image = np.zeros((size[1], size[0], 3), np.uint8)
        self._image[:] = rgb

    async def recv(self) -> av.VideoFrame:
        pts, time_base = await self.next_timestamp()
        frame = av.VideoFrame.from_ndarray(self._image, format="rgb24")
        frame.pts, frame.time_base = pts, time_base
        return frame


class RecordingSink:
    """An input sink (``metadj_bridge.signals.InputSink``) that keeps what an input delivers, in order."""

    def __init__(self) -> None:
        from metadj_bridge.signals import Signal, TempoReading, Trigger

        self.signals: list[Signal] = []
        self.triggers: list[Trigger] = []
        self.tempos: list[TempoReading] = []
        #: Signals and triggers together, in arrival order.
        self.events: list[Signal | Trigger] = []

    def set(self, signal: Any) -> None:
        self.signals.append(signal)
        self.events.append(signal)

    def fire(self, trigger: Any) -> None:
        self.triggers.append(trigger)
        self.events.append(trigger)

    def tempo(self, reading: Any) -> None:
        self.tempos.append(reading)


def tempo_sink(listener: Callable[[Any], None]) -> Any:
    """A signal board whose tempo readings go to ``listener`` (what a tempo hub does in a running bridge)."""
    from metadj_bridge.signals import SignalBoard

    board = SignalBoard()
    board.on_tempo(listener)
    return board


async def hear(samples: np.ndarray, samplerate: int, events: tuple[str, ...], signal: str,
               analysis: Any = None) -> tuple[list[Any], list[tuple[float, float]]]:
    """Play ``samples`` through the bridge's analysis path (a WAV-array source, the analyzer's worker thread,
    ``deliver`` into a SignalBoard) as fast as it goes. Returns the triggers named in ``events``, in order, and
    ``signal``'s value on the board after every delivery (with the audio time it carried)."""
    from metadj_bridge.inputs.analysis_config import hop_size_for
    from metadj_bridge.inputs.analyzer import AudioAnalyzer, deliver
    from metadj_bridge.inputs.audio import WavFileSource
    from metadj_bridge.signals import SignalBoard

    source = WavFileSource(samples, samplerate, hop_size=hop_size_for(samplerate), realtime=False)
    board = SignalBoard()
    fired: list[Any] = []
    values: list[tuple[float, float]] = []
    board.on_trigger(lambda trigger: fired.append(trigger) if trigger.name in events else None)

    def on_update(update: Any) -> None:
        deliver(update, board)
        values.append((update.features.t, board.get(signal, -1.0)))

    analyzer = AudioAnalyzer(source, analysis=analysis, on_update=on_update)
    await analyzer.start()
    assert analyzer.finished is not None
    await asyncio.wait_for(analyzer.finished, 120)
    await analyzer.aclose()
    assert analyzer.error is None
    return fired, values


def without_bass(samples: np.ndarray, samplerate: int, below_hz: float = 250.0) -> np.ndarray:
    """Audio with nothing under ``below_hz`` (no kick, no bass line): what is left of a track is its hats, snares,
    claps and pads."""
    spectrum = np.fft.rfft(samples.astype(np.float64))
    spectrum[np.fft.rfftfreq(len(samples), 1.0 / samplerate) < below_hz] = 0.0
    return np.fft.irfft(spectrum, len(samples)).astype(np.float32)
