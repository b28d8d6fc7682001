"""The metadj-probe pipeline: Scope calls it like a Wan pipeline; it records each call and stamps each frame.

Shaped like Scope's weight-free built-ins (controller-viz): a ``Pipeline`` whose ``__call__`` reads its runtime
parameters from ``kwargs`` and returns ``{"video": (T, H, W, 3)}``. Like a Wan pipeline, ``prepare()`` asks for
no input in text mode (Scope then calls it back to back) and for 12 input frames in video mode. Each call makes 12
frames and then sleeps until 12 / fps seconds have passed since it began, so the stream runs at a GPU-like pace
(``METADJ_PROBE_FPS``, default 20) and Scope's own output pacing sees that rate.

Like a Wan pipeline it also tells Scope when a prompt transition is still running (``state["_transition_active"]``),
so Scope hands it ``transition`` for ``num_steps`` calls, as it does longlive. What is recorded, and how a reset
shows (``init_cache``), is described in ``record.py``.
"""

from __future__ import annotations

import os
import threading
import time
import uuid
from typing import TYPE_CHECKING, Any

import numpy
import torch
from scope.core.pipelines.interface import Pipeline, Requirements

from .record import (
    CHUNK_FRAMES,
    DEFAULT_STEPS,
    FPS_ENV,
    SIZE_ENV,
    ChunkLog,
    input_mode,
    paint,
    split_kwargs,
    used_parameters,
)
from .schema import ProbeConfig
from .stamp import params_digest

if TYPE_CHECKING:
    from scope.core.pipelines.base_schema import BasePipelineConfig


def _fps() -> float:
    try:
        fps = float(os.environ.get(FPS_ENV, "") or 20.0)
    except ValueError:
        fps = 20.0
    return min(max(fps, 0.5), 120.0)


def _size_override() -> tuple[int, int] | None:
    raw = os.environ.get(SIZE_ENV, "").lower().strip()
    try:
        width, height = (int(part) for part in raw.split("x"))
    except ValueError:
        return None
    return width, height


class ProbePipeline(Pipeline):
    """Records what Scope hands each chunk; a plain picture with the frame stamp; about 20 fps on a CPU."""

    @classmethod
    def get_config_class(cls) -> type[BasePipelineConfig]:
        return ProbeConfig

    def __init__(
        self,
        height: int = 192,
        width: int = 320,
        denoising_steps: list[int] | None = None,
        **kwargs: Any,  # the other load params (Scope passes the schema defaults merged with the load request)
    ) -> None:
        # METADJ_PROBE_SIZE=WxH overrides the load's size (a slow CPU: Scope encodes every frame it sends).
        # The stamp needs 128 x 32 pixels; a smaller size is enlarged rather than failing every chunk.
        out_width, out_height = _size_override() or (width, height)
        self.height = max(32, int(out_height))
        self.width = max(128, int(out_width))
        self.default_steps = list(denoising_steps or DEFAULT_STEPS)
        self.fps = _fps()
        self.instance = uuid.uuid4().hex[:8]
        self.log = ChunkLog()
        self._chunk = 0
        self._lock = threading.Lock()
        #: Read by Scope's PipelineProcessor after each call: while ``_transition_active`` is true it keeps passing
        #: ``transition`` (as for a Wan pipeline, whose embedding blender sets it); otherwise it drops it at once.
        self.state: dict[str, Any] = {"_transition_active": False}
        self._transition: Any = None
        self._steps_left = 0
        self._total_steps = 0
        self.log.write({
            "type": "load", "instance": self.instance, "t": time.time(), "pid": os.getpid(),
            "size": [self.width, self.height], "chunk_frames": CHUNK_FRAMES, "fps": self.fps,
            "load_params": {"height": height, "width": width, "denoising_steps": denoising_steps, **kwargs},
        })

    def prepare(self, **kwargs: Any) -> Requirements | None:
        """No input in text mode; a chunk of input frames in video mode (Scope passes ``video=True`` then)."""
        if kwargs.get("video") is not None:
            return Requirements(input_size=CHUNK_FRAMES)
        return None

    def __call__(self, **kwargs: Any) -> dict[str, Any]:
        began = time.time()
        with self._lock:
            index = self._chunk
            self._chunk += 1
        mode = input_mode(kwargs)
        received, inputs = split_kwargs(kwargs)
        used, ignored = used_parameters(received, mode, self.default_steps)
        digest = params_digest(used)
        step = self._transition_step(received.get("transition"))
        frames = paint(index, digest, self.height, self.width, CHUNK_FRAMES, _input_frames(kwargs.get("video")))
        period = CHUNK_FRAMES / self.fps
        self.log.write({
            "type": "chunk", "instance": self.instance, "chunk": index, "t": round(began, 4),
            "t_out": round(max(time.time(), began + period), 4), "mode": mode,
            "reset": bool(received.get("init_cache", False)), "digest": digest, "frames": CHUNK_FRAMES,
            "received": received, "used": used, "ignored": ignored, "inputs": inputs, "transition_step": step,
        })
        remaining = began + period - time.time()
        if remaining > 0:
            time.sleep(remaining)
        return {"video": torch.from_numpy(frames)}

    def _transition_step(self, transition: Any) -> list[int] | None:
        """Imitate a Wan pipeline's prompt transition: ``num_steps`` calls, one blend step each.

        Returns ``[step, num_steps]`` for this call (None outside a transition) and sets ``_transition_active`` the
        way Scope's embedding blender does: true while steps are left after this call.
        """
        if not isinstance(transition, dict):
            self._transition, self._steps_left = None, 0
        elif transition != self._transition:  # a new transition starts (a zero-step one snaps)
            self._transition = transition
            try:
                self._steps_left = max(0, int(transition.get("num_steps", 0)))
            except (TypeError, ValueError):
                self._steps_left = 0
            self._total_steps = self._steps_left
        step = None
        if self._steps_left > 0:
            step = [self._total_steps - self._steps_left + 1, self._total_steps]
            self._steps_left -= 1
        if self._steps_left == 0:
            self._transition = None
        self.state["_transition_active"] = self._steps_left > 0
        return step


def _input_frames(video: Any) -> numpy.ndarray | None:
    """Scope's video input (a list of (1, H, W, C) tensors in 0..255) as one (T, H, W, C) uint8 array."""
    if not video:
        return None
    arrays = [frame.squeeze(0).detach().cpu().numpy() for frame in video]
    return numpy.clip(numpy.stack(arrays), 0, 255).astype(numpy.uint8)
