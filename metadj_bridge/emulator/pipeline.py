"""One session's pipeline: the parameter queue, the chunk loop and the frame buffers.

Imitates Scope 0.2.4's ``PipelineProcessor.process_chunk`` (``server/pipeline_processor.py``,
``scope-api.md`` §6, §7) on a clock instead of a GPU, for the pipeline ``catalogue.PIPELINES`` describes:

- each loop iteration takes **at most one** message off the 8-message queue and merges it;
- while paused, or while the pipeline waits for input (video mode, or a video-only pipeline such as
  passthrough in any mode) with fewer than a chunk's frames queued, an iteration does nothing else and
  the next one follows 10 ms later (so messages drain at 100/s). A video-only pipeline in text mode
  gets no input, so it never makes a frame, as on a real server;
- otherwise it makes a chunk: one-shot keys are consumed, a transition advances one step, and a
  generating pipeline takes ``chunk_frames / fps`` seconds for it; a filter (passthrough, gray, ...)
  takes no time and its frames keep the input's pace.

Frames show only what the pipeline reads in its mode (``catalogue.PipelineFacts.reads``): a key the
pipeline ignores there never reaches the picture. Text-mode Wan frames are drawn from prompts, transition,
``base_seed``, ``denoising_step_list`` and ``reset_cache`` (no grain: ``defaults.py`` forces ``noise_scale``
to None in text mode); video-mode frames are the client's input frames, with ``noise_scale`` as grain for
a Wan pipeline (which reads it there, 0.7 unless sent) and untouched for a filter (gray: in grey);
controller-viz draws only ``ctrl_input``. A cache reset also restarts the motion.

Every output item is a ``FrameSpec``, drawn when the track sends it, and every frame of 128 x 32 pixels or
more is stamped (``stamp.py``) with its chunk index and ``ChunkSettings.digest``: the ``params_digest`` of
the parameter dict as this loop had merged it when the chunk started, one-shot keys included for the chunk
that consumed them (``params.py``). The ``chunk`` of an ``applied`` entry in ``/_emulator/log`` is the
index of the first chunk made after that message was merged, so the first frame stamped with that chunk
index shows the message.
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

from metadj_bridge.emulator.catalogue import PipelineFacts
from metadj_bridge.emulator.params import ChunkSettings, ParameterQueue, SessionParameters
from metadj_bridge.emulator.records import EventRecords, emulator_log
from metadj_bridge.emulator.render import DEFAULT_SEED, ControllerState, FrameRenderer, FrameSpec

logger = logging.getLogger(__name__)

#: Scope's ``SLEEP_TIME``: the idle iteration period while paused or waiting for input.
IDLE_POLL_SECONDS = 0.01
#: Scope's source queue holds 30 frames and drops new ones when full.
INPUT_QUEUE_FRAMES = 30
#: Scope's output (sink) queue holds 30 frames (``DEFAULT_INPUT_QUEUE_MAXSIZE``), grown to two chunks
#: (``OUTPUT_QUEUE_MAX_SIZE_FACTOR``) for larger chunks; new frames are dropped beyond that.
OUTPUT_QUEUE_FRAMES = 30
OUTPUT_QUEUE_CHUNKS = 2
#: Pace of the repeated frame while a pipeline that follows its input is paused.
PAUSED_INPUT_FPS = 30.0

OutputItem = FrameSpec


class SessionPipeline:
    """Parameters in, frames out, for one WebRTC session of one loaded pipeline."""

    def __init__(
        self,
        session_id: str,
        initial_parameters: dict[str, Any],
        *,
        size: tuple[int, int],
        facts: PipelineFacts,
        chunk_frames: int | None,
        fps: float | None,
        records: EventRecords,
        emulator_id: str,
    ) -> None:
        self.session_id = session_id
        self.width, self.height = size
        self.facts = facts
        self._chunk_override = chunk_frames
        #: Frames per second it makes; None: it follows its input (a filter such as passthrough).
        self.fps = fps if fps is not None else facts.native_fps
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
        self._input: deque[tuple[av.VideoFrame, float]] = deque()
        #: Frames ready to send, each with the arrival time of the input frame it came from (else None).
        self._output: deque[tuple[OutputItem, float | None]] = deque()
        self._deadline = -math.inf
        self._cursor = (self.width / 2.0, self.height / 2.0)

    @property
    def mode(self) -> str:
        return "video" if self.params.video_mode else "text"

    @property
    def chunk_frames(self) -> int:
        """Frames per chunk in the current mode (the configured size when one is forced)."""
        return self._chunk_override or self.facts.chunk_frames(self.mode)

    @property
    def needs_input(self) -> bool:
        """True when chunks are made from input frames: video mode of a pipeline that takes video (controller-viz
        asked for video mode generates as in text mode, as on a real Scope), or a video-only pipeline."""
        return (self.params.video_mode and self.facts.video_chunk is not None) or self.facts.video_only

    @property
    def paused_period(self) -> float:
        """Seconds between repeats of the frozen frame while paused."""
        return 1.0 / (self.fps or PAUSED_INPUT_FPS)

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
        # Scope's words (tracks.py), on every pause message whether it changes anything or not.
        self._log.info("Video track %s", "paused" if paused else "resumed")
        self.paused = paused
        self.changed.set()

    def set_video_stopped(self, stopped: bool) -> None:
        self.video_stopped = stopped
        self.changed.set()

    def push_input(self, frame: av.VideoFrame) -> None:
        """An input video frame; ignored in text mode, dropped when 30 are already waiting."""
        if self.params.video_mode and len(self._input) < INPUT_QUEUE_FRAMES:
            self._input.append((frame, time.monotonic()))

    # ---- outputs -----------------------------------------------------------------------------

    def next_output(self) -> OutputItem | None:
        """The next frame for the track to send, or None when nothing is ready."""
        return self._output.popleft()[0] if self._output else None

    def next_arrival(self) -> float | None:
        """When the input frame behind the next output frame arrived (None: a drawn frame, or nothing)."""
        return self._output[0][1] if self._output else None

    @property
    def parameters(self) -> dict[str, Any]:
        """The parameters as applied so far (one-shots already consumed are gone)."""
        return dict(self.params.values)

    # ---- the loop ----------------------------------------------------------------------------

    async def run(self) -> None:
        """The chunk loop; runs until cancelled."""
        while True:
            message = self.queue.take()
            if message is not None:
                self.params.apply(message)
                self._records.message_applied(self.session_id, self.chunk_index, message)
            if self.paused:
                await asyncio.sleep(IDLE_POLL_SECONDS)
                continue
            chunk_frames = self.chunk_frames
            inputs: list[tuple[av.VideoFrame, float]] | None = None
            if self.needs_input:
                if not self.params.video_mode or len(self._input) < chunk_frames:
                    await asyncio.sleep(IDLE_POLL_SECONDS)
                    continue
                inputs = self._take_input_chunk(chunk_frames)
            settings = self.params.next_chunk()
            if self.fps is None:
                await asyncio.sleep(0)  # a filter takes no time; its frames keep the input's pace
            else:
                period = chunk_frames / self.fps
                now = time.monotonic()
                self._deadline += period
                if self._deadline <= now:  # first chunk, or back from a pause or an input gap
                    self._deadline = now + period
                await asyncio.sleep(self._deadline - now)
            self._emit_chunk(settings, inputs, chunk_frames)

    def _take_input_chunk(self, chunk_frames: int) -> list[tuple[av.VideoFrame, float]]:
        """Sample ``chunk_frames`` evenly from what is queued, consuming up to the last sample.

        Scope's ``prepare_chunk`` does the same, which keeps latency bounded when input arrives
        faster than the pipeline runs.
        """
        step = len(self._input) / chunk_frames
        indices = {round(i * step) for i in range(chunk_frames)}
        last = max(indices)
        chunk = []
        for i in range(last + 1):
            frame = self._input.popleft()
            if i in indices:
                chunk.append(frame)
        return chunk

    def _emit_chunk(self, settings: ChunkSettings, inputs: list[tuple[av.VideoFrame, float]] | None,
                    chunk_frames: int) -> None:
        if settings.reset_cache:
            # Scope empties the output queue on reset_cache, so the flash is seen without delay.
            self._output.clear()
        capacity = max(OUTPUT_QUEUE_FRAMES, OUTPUT_QUEUE_CHUNKS * chunk_frames)
        items: list[tuple[OutputItem, float | None]]
        if inputs is not None and self.facts.kind == "generate":
            items = self._input_specs(settings, inputs)
        elif inputs is not None:
            kind = "gray" if self.facts.kind == "gray" else "input"
            items = [(self._filter_spec(settings, frame, kind), t) for frame, t in inputs]
        elif self.facts.kind == "controller":
            items = [(spec, None) for spec in self._controller_specs(chunk_frames, settings.digest)]
        else:
            items = [(spec, None) for spec in self._chunk_specs(settings, chunk_frames)]
        for item in items:
            if len(self._output) < capacity:
                self._output.append(item)
        self.chunk_index += 1
        self.changed.set()

    def _input_specs(self, settings: ChunkSettings,
                     inputs: list[tuple[av.VideoFrame, float]]) -> list[tuple[OutputItem, float | None]]:
        """Video mode of a generating pipeline: each input frame with the noise it reads (default 0.7) on top."""
        noise = settings.noise_scale if "noise_scale" in self.params.values else self.facts.video_noise_default
        specs = self._chunk_specs(replace(settings, noise_scale=noise), len(inputs))
        return [(replace(spec, width=frame.width, height=frame.height, source=frame), t)
                for spec, (frame, t) in zip(specs, inputs, strict=True)]

    def _filter_spec(self, settings: ChunkSettings, frame: av.VideoFrame, kind: str) -> FrameSpec:
        """A filter's output frame: the input (in grey for gray), stamped."""
        spec = FrameSpec(width=frame.width, height=frame.height, prompts=(), frame_number=self._frame_number,
                         chunk_index=self.chunk_index, source=frame, filter_kind=kind, digest=settings.digest)
        self._frame_number += 1
        return spec

    def _reads(self, key: str) -> bool:
        """True when the pipeline reads ``key`` in the current mode (the catalogue's facts)."""
        return not self.facts.ignored(self.mode, {key})

    def _controller_specs(self, n: int, digest: int) -> list[FrameSpec]:
        """controller-viz: the keys held and the cursor moved by the mouse deltas since the last call."""
        ctrl = self.params.values.get("ctrl_input")
        buttons: frozenset[str] = frozenset()
        dx = dy = 0.0
        if isinstance(ctrl, dict):
            raw = ctrl.get("button", [])
            buttons = frozenset(b for b in raw if isinstance(b, str)) if isinstance(raw, list) else frozenset()
            dx, dy = _mouse(ctrl)
            # Scope resets the mouse accumulator after each call and keeps the keys.
            self.params.values["ctrl_input"] = {**ctrl, "mouse": [0.0, 0.0]}
        dot = 5
        x = max(dot, min(self.width - dot, self._cursor[0] + dx))
        y = max(dot, min(self.height - dot, self._cursor[1] + dy))
        self._cursor = (x, y)
        state = ControllerState(cursor=(x, y), buttons=buttons)
        specs = []
        for _ in range(n):
            specs.append(FrameSpec(width=self.width, height=self.height, prompts=(), frame_number=self._frame_number,
                                   chunk_index=self.chunk_index, controller=state, digest=digest))
            self._frame_number += 1
        return specs

    def _chunk_specs(self, settings: ChunkSettings, n: int) -> list[FrameSpec]:
        """A generating pipeline's frames for one chunk, from the keys it reads in this mode only."""
        flash_frames = max(1, math.ceil(n / 2))
        reset = settings.reset_cache and self._reads("reset_cache")
        if reset:
            self._frame_number = 0  # the generation starts afresh: so does the motion
        base = FrameSpec(
            width=self.width,
            height=self.height,
            prompts=settings.prompts if self._reads("prompts") else (),
            frame_number=0,
            chunk_index=self.chunk_index,
            # defaults.py: text mode sets noise_scale to None, so the pipeline never sees it there.
            noise_scale=settings.noise_scale if self._reads("noise_scale") else None,
            base_seed=settings.base_seed if self._reads("base_seed") else DEFAULT_SEED,
            denoising_steps=(settings.denoising_steps or self.facts.default_denoising)
            if self._reads("denoising_step_list") else None,
            transition=settings.transition_step if self._reads("transition") else None,
            digest=settings.digest,
        )
        specs = []
        for j in range(n):
            flash = max(0.0, 1.0 - j / flash_frames) if reset else 0.0
            specs.append(replace(base, frame_number=self._frame_number, flash=flash))
            self._frame_number += 1
        return specs


def _mouse(ctrl: dict[str, Any]) -> tuple[float, float]:
    mouse = ctrl.get("mouse", [0, 0])
    try:
        return float(mouse[0]), float(mouse[1])
    except (TypeError, ValueError, IndexError):
        return 0.0, 0.0
