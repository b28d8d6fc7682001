"""What every video output shares: the frame as shown, and the interface of a sink.

The output clock (:mod:`metadj_bridge.video.clock`) ticks at the camera's frame rate in its own thread. On
each tick it takes the newest frame from Scope (or repeats the last one, or draws a slate that says why there
is no picture), converts it once to the output size and format, and hands the same :class:`ShownFrame` to
every sink: the virtual webcam, the recording, the preview. A recording therefore holds exactly what the
camera showed, frame for frame.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Protocol

import av


@dataclass(frozen=True, slots=True)
class ShownFrame:
    """One tick of the output clock."""

    #: I420 (``yuv420p``) at the output size; ``pts`` = ``index``, ``time_base`` = 1/fps.
    frame: av.VideoFrame
    #: Tick number since the clock started: 0, 1, 2, ... with no gaps.
    index: int
    #: ``time.monotonic()`` of the tick.
    t: float
    #: A new frame from Scope, the last one again (Scope late or away), or a slate.
    kind: Literal["live", "repeat", "slate"]
    #: When the Scope frame shown here arrived (``time.monotonic()``); None for a slate.
    arrived: float | None


class FrameSink(Protocol):
    """An output of the clock. All three methods are called from the clock's thread, never the event loop."""

    #: Short name for logs and the status line: "vcam", "record", "preview".
    name: str

    def open(self, width: int, height: int, fps: float) -> None:
        """Before the first frame. Raise :class:`~metadj_bridge.errors.VideoOutputError` to say this output
        cannot work here (the clock logs it once and goes on with the other sinks)."""
        ...

    def show(self, shown: ShownFrame) -> None:
        """Every tick, in order. Must return quickly (well within a frame period): a sink with slow work
        (encoding, JPEG) hands it to a thread of its own. The virtual webcam's send is the exception: it is
        what this thread is for."""
        ...

    def close(self) -> None:
        """After the last frame (finish files here). Safe to call twice."""
        ...
