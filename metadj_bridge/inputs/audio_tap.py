"""The audio the bridge hears, handed on as it is heard: for a recording with the music.

The analysis worker (:class:`~metadj_bridge.inputs.analyzer.AudioAnalyzer`) publishes every block it reads to its
:class:`AudioTap`. Each subscriber has a bounded queue of its own: publishing never blocks the worker, and a
subscriber that falls behind loses the newest blocks (counted in :attr:`TapQueue.dropped`), which shows as a jump
in :attr:`HeardBlock.start` that the reader can fill with silence.

A block's :attr:`HeardBlock.heard_at` is the ``time.monotonic()`` at which its first sample was heard: for a file
or the demo track, when the real-time source released it (when it plays); for a live input, when it was captured
(the PortAudio callback that delivered it, less the block's length).
"""

from __future__ import annotations

import queue
import threading
from dataclasses import dataclass

import numpy as np

from metadj_bridge.inputs.audio import AudioBlock

__all__ = ["AudioTap", "HeardBlock", "TapQueue"]


@dataclass(frozen=True, slots=True)
class HeardBlock:
    """Mono float32 samples starting at sample ``start`` of the source, and when the first of them was heard."""

    samples: np.ndarray
    samplerate: int
    start: int
    heard_at: float
    #: Silence made up while a live input was gone.
    lost: bool = False


class TapQueue:
    """One subscriber's blocks, oldest first. Read from any one thread; :meth:`close` stops the deliveries."""

    def __init__(self, tap: AudioTap, maxsize: int) -> None:
        self._tap = tap
        self._queue: queue.Queue[HeardBlock] = queue.Queue(maxsize=max(1, maxsize))
        #: Blocks lost because this queue was full (the reader fell behind).
        self.dropped = 0
        #: Blocks delivered into the queue.
        self.received = 0
        self.closed = False

    def offer(self, block: HeardBlock) -> None:
        """From the publishing thread: queue ``block``, or count it as dropped when the queue is full."""
        try:
            self._queue.put_nowait(block)
        except queue.Full:
            self.dropped += 1
        else:
            self.received += 1

    def take(self) -> list[HeardBlock]:
        """Every block waiting now (maybe none); never blocks."""
        taken: list[HeardBlock] = []
        while True:
            try:
                taken.append(self._queue.get_nowait())
            except queue.Empty:
                return taken

    def get(self, timeout: float | None = None) -> HeardBlock | None:
        """The next block, waiting up to ``timeout`` seconds; None when none came in time."""
        try:
            return self._queue.get(timeout=timeout)
        except queue.Empty:
            return None

    def close(self) -> None:
        """No more deliveries; safe to call twice."""
        self.closed = True
        self._tap.unsubscribe(self)


class AudioTap:
    """Hands every published block to each subscriber's :class:`TapQueue`, without ever waiting for one."""

    def __init__(self, samplerate: int, hop_size: int) -> None:
        self.samplerate = samplerate
        self.hop_size = hop_size
        self._lock = threading.Lock()
        self._subscribers: tuple[TapQueue, ...] = ()

    @property
    def subscribers(self) -> int:
        return len(self._subscribers)

    def subscribe(self, seconds: float = 2.0) -> TapQueue:
        """A new queue that holds up to ``seconds`` of audio before it drops blocks."""
        if not seconds > 0:
            raise ValueError(f"an audio tap queue must hold more than 0 seconds, not {seconds!r}")
        subscriber = TapQueue(self, round(seconds * self.samplerate / self.hop_size))
        with self._lock:
            self._subscribers = (*self._subscribers, subscriber)
        return subscriber

    def unsubscribe(self, subscriber: TapQueue) -> None:
        with self._lock:
            self._subscribers = tuple(s for s in self._subscribers if s is not subscriber)

    def publish(self, block: AudioBlock) -> None:
        """From the analysis worker: hand ``block`` to every subscriber. Cheap when nobody listens."""
        subscribers = self._subscribers  # a tuple, replaced whole: no lock needed to read it
        if not subscribers:
            return
        captured = block.captured_at
        if captured is None:
            return  # a source that cannot say when it was heard cannot be placed beside the video
        heard = HeardBlock(block.samples, block.samplerate, block.start,
                           captured - len(block.samples) / block.samplerate, block.lost)
        for subscriber in subscribers:
            subscriber.offer(heard)
