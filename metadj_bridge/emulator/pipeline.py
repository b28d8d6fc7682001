"""One session's pipeline: the parameter queue, the chunk loop and the frame buffers.

Imitates Scope 0.2.4's ``PipelineProcessor.process_chunk`` (``scope-api.md`` §6, §7) on a clock
instead of a GPU:

- each loop iteration takes **at most one** message off the 8-message queue and merges it;
- while paused, or in video mode while fewer than ``chunk_frames`` input frames are queued, an
  iteration does nothing else and the next one follows 10 ms later (so messages drain at 100/s);
- otherwise it "generates" a chunk: one-shot keys are consumed, a transition advances one step, and
  after ``chunk_frames / fps`` seconds (the generation time) ``chunk_frames`` frames are appended to
  the output buffer that the video track sends, paced at ``fps``.

Text-mode frames are ``FrameSpec``s, drawn only when the track sends them. Video-mode frames are
the client's own input frames, returned at their own size, as passthrough does.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections import deque
from dataclasses import replace
from typing import Any

import av

from metadj_bridge.emulator.params import ChunkSettings, ParameterQueue, SessionParameters
from metadj_bridge.emulator.records import EventRecords, emulator_log
from metadj_bridge.emulator.render import FrameRenderer, FrameSpec

logger = logging.getLogger(__name__)

#: Scope's ``SLEEP_TIME``: the idle iteration period while paused or waiting for input.
IDLE_POLL_SECONDS = 0.01
#: Scope's source queue holds 30 frames and drops new ones when full.
INPUT_QUEUE_FRAMES = 30
#: Scope's output queue holds two chunks (``OUTPUT_QUEUE_MAX_SIZE_FACTOR``); new frames are dropped beyond that.
OUTPUT_QUEUE_CHUNKS = 2

OutputItem = FrameSpec | av.VideoFrame


class SessionPipeline:
    """Parameters in, frames out, for one WebRTC session of one loaded pipeline."""

    def __init__(
        self,
        session_id: str,
        initial_parameters: dict[str, Any],
        *,
        size: tuple[int, int],
        chunk_frames: int,
        fps: float,
        records: EventRecords,
        emulator_id: str,
    ) -> None:
        self.session_id = session_id
        self.width, self.height = size
        self.chunk_frames = chunk_frames
        self.fps = fps
        self.params = SessionParameters(initial_parameters)
        self.queue = ParameterQueue()
        #: ``paused: true`` in the initial parameters starts the session paused (§5).
        self.paused = initial_parameters.get("paused") is True
        #: Fault switch: the track stops sending while the connection stays up (§12).
        self.video_stopped = False
        #: Chunks generated so far; the next chunk's index.
        self.chunk_index = 0
        self.renderer = FrameRenderer()
        #: Set whenever output, pause or stop state changes; the track waits on it.
        self.changed = asyncio.Event()
        self._records = records
        self._log = emulator_log(logger, emulator_id)
        self._frame_number = 0
        self._messages = 0
        self._input: deque[av.VideoFrame] = deque()
        self._output: deque[OutputItem] = deque()
        self._deadline = -math.inf

    # ---- inputs ------------------------------------------------------------------------------

    def receive(self, message: dict[str, Any]) -> bool:
        """A data-channel message: ``paused`` acts at once, the rest waits in the queue.

        Returns False when the queue was full and the message was dropped (Scope logs that at INFO).
        """
        if isinstance(message.get("paused"), bool):
            self.set_paused(message["paused"])
        index = self._messages
        self._messages += 1
        queued = self.queue.offer(message)
        self._records.message_received(self.session_id, index, message, dropped=not queued)
        if not queued:
            self._log.info("Parameter queue full for session %s, dropping parameter update", self.session_id)
        return queued

    def set_paused(self, paused: bool) -> None:
        if paused != self.paused:
            self._log.info("Session %s %s", self.session_id, "paused" if paused else "resumed")
        self.paused = paused
        self.changed.set()

    def set_video_stopped(self, stopped: bool) -> None:
        self.video_stopped = stopped
        self.changed.set()

    def push_input(self, frame: av.VideoFrame) -> None:
        """An input video frame; ignored in text mode, dropped when 30 are already waiting."""
        if self.params.video_mode and len(self._input) < INPUT_QUEUE_FRAMES:
            self._input.append(frame)

    # ---- outputs -----------------------------------------------------------------------------

    def next_output(self) -> OutputItem | None:
        """The next frame for the track to send, or None when nothing is ready."""
        return self._output.popleft() if self._output else None

    @property
    def parameters(self) -> dict[str, Any]:
        """The parameters as applied so far (one-shots already consumed are gone)."""
        return dict(self.params.values)

    # ---- the loop ----------------------------------------------------------------------------

    async def run(self) -> None:
        """The chunk loop; runs until cancelled."""
        period = self.chunk_frames / self.fps
        while True:
            message = self.queue.take()
            if message is not None:
                self.params.apply(message)
                self._records.message_applied(self.session_id, self.chunk_index, message)
            if self.paused:
                await asyncio.sleep(IDLE_POLL_SECONDS)
                continue
            inputs: list[av.VideoFrame] | None = None
            if self.params.video_mode:
                if len(self._input) < self.chunk_frames:
                    await asyncio.sleep(IDLE_POLL_SECONDS)
                    continue
                inputs = self._take_input_chunk()
            settings = self.params.next_chunk()
            now = time.monotonic()
            self._deadline += period
            if self._deadline <= now:  # first chunk, or back from a pause or an input gap
                self._deadline = now + period
            await asyncio.sleep(self._deadline - now)
            self._emit_chunk(settings, inputs)

    def _take_input_chunk(self) -> list[av.VideoFrame]:
        """Sample ``chunk_frames`` evenly from what is queued, consuming up to the last sample.

        Scope's ``prepare_chunk`` does the same, which keeps latency bounded when input arrives
        faster than the pipeline runs.
        """
        step = len(self._input) / self.chunk_frames
        indices = {round(i * step) for i in range(self.chunk_frames)}
        last = max(indices)
        chunk = []
        for i in range(last + 1):
            frame = self._input.popleft()
            if i in indices:
                chunk.append(frame)
        return chunk

    def _emit_chunk(self, settings: ChunkSettings, inputs: list[av.VideoFrame] | None) -> None:
        if settings.reset_cache:
            # Scope empties the output queue on reset_cache, so the flash is seen without delay.
            self._output.clear()
        capacity = OUTPUT_QUEUE_CHUNKS * self.chunk_frames
        items: list[OutputItem]
        if inputs is not None:
            items = list(inputs)
            self._frame_number += len(items)
        else:
            items = list(self._chunk_specs(settings))
        for item in items:
            if len(self._output) < capacity:
                self._output.append(item)
        self.chunk_index += 1
        self.changed.set()

    def _chunk_specs(self, settings: ChunkSettings) -> list[FrameSpec]:
        n = self.chunk_frames
        flash_frames = max(1, math.ceil(n / 2))
        step = settings.transition_step
        transition = f"transition {step[0]}/{step[1]}" if step else ""
        base = FrameSpec(
            width=self.width,
            height=self.height,
            prompts=settings.prompts,
            frame_number=0,
            chunk_index=self.chunk_index,
            noise_scale=settings.noise_scale,
            base_seed=settings.base_seed,
            denoising_steps=settings.denoising_steps,
            transition=transition,
        )
        specs = []
        for j in range(n):
            flash = max(0.0, 1.0 - j / flash_frames) if settings.reset_cache else 0.0
            specs.append(replace(base, frame_number=self._frame_number, flash=flash))
            self._frame_number += 1
        return specs
