"""The emulator's outgoing video track: Scope's ``VideoProcessingTrack`` behaviour (§7, §12).

- Before the first frame, and whenever the pipeline has nothing new, ``recv`` simply waits, so
  no RTP is sent and the client's track is live but silent (as for an offer without
  ``pipeline_ids``).
- A generating pipeline's frames go out at its ``fps``; a filter's (passthrough, gray, ...) keep the
  spacing of the input frames they came from, delayed by the first frame's latency, as Scope paces
  by the input's timestamps.
- Every frame is drawn here from the pipeline's ``FrameSpec`` (a filter's from its input frame), which
  also stamps it with its chunk index and parameter digest (``stamp.py``; frames under 128 x 32 pixels
  carry no stamp).
- While paused it re-sends the last frame at ``fps`` (the picture freezes; the strip says PAUSED).
  Unlike Scope 0.2.4 the timestamps keep increasing, so VP8 survives a pause here.
- With the ``stop_video`` fault it stops sending for good while the connection stays up.
- Without any input track (a ``recvonly`` offer) it ends at the first ``recv``, as Scope's track
  raises "Track stopped" when it has no source.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import replace

import av
import numpy as np
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from metadj_bridge.emulator.pipeline import SessionPipeline
from metadj_bridge.emulator.records import EventRecords, emulator_log
from metadj_bridge.emulator.render import VIDEO_CLOCK_RATE, VIDEO_TIME_BASE, FrameSpec, to_video_frame

logger = logging.getLogger(__name__)

#: Frames at least this large are drawn in a worker thread so the event loop never waits on numpy.
THREAD_RENDER_PIXELS = 640 * 360


class EmulatedVideoTrack(MediaStreamTrack):
    """Sends what the session's pipeline produced, paced like Scope's track, on a 90 kHz clock."""

    kind = "video"

    def __init__(
        self,
        pipeline: SessionPipeline | None,
        *,
        records: EventRecords,
        has_input: Callable[[], bool],
        emulator_id: str,
        rewrite_frame: Callable[[av.VideoFrame, int], av.VideoFrame] | None = None,
    ) -> None:
        super().__init__()
        #: Test-only (``hostile.py``): each frame as drawn and stamped -> the frame actually sent.
        self._rewrite_frame = rewrite_frame
        self._pipeline = pipeline
        #: Fixed spacing of frames (0: a filter, paced by its input frames' arrival times instead).
        self._period = 1.0 / pipeline.fps if pipeline is not None and pipeline.fps else 0.0
        #: Input-to-output delay of a filter, fixed at its first frame.
        self._lag: float | None = None
        #: Frames sent so far (Scope's ``frames_out``).
        self.frames_out = 0
        self._records = records
        self._has_input = has_input
        self._log = emulator_log(logger, emulator_id)
        self._next_due = 0.0
        self._start: float | None = None
        self._last_pts = -1
        self._last_spec: FrameSpec | None = None
        self._frozen_image: np.ndarray | None = None
        #: Never set: what a track without a pipeline waits on until it is stopped.
        self._forever = asyncio.Event()

    async def recv(self) -> av.VideoFrame:
        if self.readyState != "live":
            raise MediaStreamError
        if not self._has_input():
            self._log.warning("Output track stopped: the offer has no sendrecv/sendonly video (recvonly?), as in Scope")
            raise MediaStreamError("Track stopped")
        pipeline = self._pipeline
        if pipeline is None:
            await self._forever.wait()  # no pipeline_ids: silence until the session closes
            raise MediaStreamError
        while True:
            pipeline.changed.clear()
            if pipeline.video_stopped:
                await pipeline.changed.wait()
                continue
            delay = self._next_due - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
                continue
            if pipeline.paused:
                frame = await self._frozen_frame()
                if frame is None:  # paused before the first frame: nothing to repeat
                    await pipeline.changed.wait()
                    continue
                if not self._period:  # a filter has no cadence of its own: repeat at the paused pace
                    self._next_due = time.monotonic() + pipeline.paused_period
                break
            wait = self._input_pace_wait(pipeline.next_arrival())
            if wait > 0:
                await asyncio.sleep(wait)
                continue
            item = pipeline.next_output()
            if item is None:
                await pipeline.changed.wait()
                continue
            frame = await self._draw(item)
            break
        self._stamp(frame)
        sent = frame if self._rewrite_frame is None else self._rewrite_frame(frame, self.frames_out)
        self._records.frame_sent()
        self.frames_out += 1
        return sent

    def _input_pace_wait(self, arrival: float | None) -> float:
        """Seconds until a filter's next frame is due: its input's arrival plus the first frame's lag."""
        if arrival is None or self._period:
            return 0.0
        now = time.monotonic()
        if self._lag is None:
            self._lag = now - arrival
        return arrival + self._lag - now

    async def _draw(self, item: FrameSpec) -> av.VideoFrame:
        self._frozen_image = None
        image = await self._render(item)
        self._last_spec = item
        return to_video_frame(image)

    async def _render(self, spec: FrameSpec) -> np.ndarray:
        """Large frames, and frames that first need a prompt's pattern built, are drawn off the loop."""
        assert self._pipeline is not None
        renderer = self._pipeline.renderer
        if spec.width * spec.height >= THREAD_RENDER_PIXELS or not renderer.has_patterns(spec):
            return await asyncio.to_thread(renderer.render, spec)
        return renderer.render(spec)

    async def _frozen_frame(self) -> av.VideoFrame | None:
        """The last frame again, redrawn once (with PAUSED in the strip where there is one)."""
        if self._last_spec is None:
            return None
        if self._frozen_image is None:
            self._frozen_image = await self._render(replace(self._last_spec, paused=True))
        return to_video_frame(self._frozen_image)

    def _stamp(self, frame: av.VideoFrame) -> None:
        """Timestamps from the wall clock, strictly increasing (libvpx rejects anything else)."""
        now = time.monotonic()
        if self._start is None:
            self._start = now
        pts = max(int((now - self._start) * VIDEO_CLOCK_RATE), self._last_pts + 1)
        frame.pts = pts
        frame.time_base = VIDEO_TIME_BASE
        self._last_pts = pts
        due = self._next_due + self._period
        # Keep the cadence while on time; after a gap, restart it rather than send a burst.
        self._next_due = due if due > now else now + self._period

    def stop(self) -> None:
        super().stop()
        self._forever.set()
