"""What the emulated server offers: Scope 0.2.4's pipelines, their schemas and their per-pipeline facts.

``scope_schemas.json`` holds ``get_schema_with_metadata()`` of the twelve built-in pipelines, dumped
from Scope 0.2.4's own code (``src/scope/core/pipelines/*/schema.py``); for the six weight-free ones it
is byte-for-byte what a real CPU-only server answers on ``GET /api/v1/pipelines/schemas``.

``PIPELINES`` adds what the schemas do not say, read from Scope's code:

- chunk sizes: ``prepare()`` of each pipeline (``Requirements(input_size=...)``) and, for the Wan
  pipelines, ``num_frame_per_block x 4`` (``src/scope/core/pipelines/defaults.py``);
- the default size the pipeline manager uses when the load has none (``server/pipeline_manager.py``);
- which runtime keys a pipeline reads in each mode (:data:`metadj_bridge.parameters.PIPELINE_READS`, shared with
  the bridge's own checks): in text mode ``noise_scale`` and ``noise_controller`` are forced to None
  (``defaults.py`` ``apply_mode_defaults_to_state``);
- what loading a GPU pipeline raises on a CPU-only server (seen on a real 0.2.4 without CUDA).

A server with CUDA registers all twelve; one without registers only those without ``estimated_vram_gb``
(``core/pipelines/registry.py``), yet still tries to load the others, which then fail.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from metadj_bridge.parameters import PIPELINE_READS

VERSION = "0.2.4"
#: Where a real server keeps its weights; quoted by its load errors.
MODELS_DIR = "~/.daydream-scope/models"

_FLASH_ATTN = "No module named 'flash_attn'"


@dataclass(frozen=True)
class PipelineFacts:
    """How one Scope pipeline behaves, as far as a client can see it."""

    pipeline_id: str
    #: (width, height) the pipeline manager uses when the load params have none.
    default_size: tuple[int, int]
    #: Frames made per call in text mode (None: the pipeline has no text mode).
    text_chunk: int | None
    #: Input frames taken per call in video mode (``Requirements.input_size``; None: no video mode).
    video_chunk: int | None
    #: Runtime keys the pipeline reads, per input mode; any other key has no effect.
    reads: dict[str, frozenset[str]]
    #: "generate" (draws from prompts), "input" (returns the input), "gray" or "controller".
    kind: str = "generate"
    #: Frames per second it makes on its own (generating pipelines); None: it follows its input.
    native_fps: float | None = 20.0
    #: Needs CUDA: not registered, and failing to load, on a CPU-only server.
    gpu: bool = True
    #: The exception text a CPU-only server logs when asked to load it.
    cpu_error: str = _FLASH_ATTN
    default_denoising: tuple[int, ...] | None = (1000, 750, 500, 250)

    @property
    def modes(self) -> tuple[str, ...]:
        return tuple(schema(self.pipeline_id)["supported_modes"])

    @property
    def video_only(self) -> bool:
        return self.text_chunk is None

    def chunk_frames(self, mode: str) -> int:
        """Frames per chunk in ``mode`` (the other mode's size when the pipeline lacks this one)."""
        size = self.video_chunk if mode == "video" else self.text_chunk
        return size or self.video_chunk or self.text_chunk or 1

    @property
    def video_noise_default(self) -> float:
        """``noise_scale`` in video mode when none is sent: the schema's video-mode default (``defaults.py``)."""
        entry = schema(self.pipeline_id)
        value = entry.get("mode_defaults", {}).get("video", {}).get("noise_scale")
        if value is None:
            value = entry["config_schema"]["properties"].get("noise_scale", {}).get("default")
        return float(value) if isinstance(value, (int, float)) else 0.0

    def ignored(self, mode: str, keys: set[str]) -> list[str]:
        """The keys of ``keys`` this pipeline does not read in ``mode``."""
        return sorted(keys - self.reads.get(mode, frozenset()))


def _wan(pid: str, size: tuple[int, int], chunk: int, *, error: str = _FLASH_ATTN,
         denoising: tuple[int, ...] = (1000, 750, 500, 250)) -> PipelineFacts:
    return PipelineFacts(pid, size, chunk, chunk, PIPELINE_READS[pid], cpu_error=error, default_denoising=denoising)


def _video(pid: str, chunk: int, kind: str = "input", *, gpu: bool = False, error: str = "") -> PipelineFacts:
    return PipelineFacts(pid, (512, 512), None, chunk, PIPELINE_READS[pid], kind=kind, native_fps=None, gpu=gpu,
                         cpu_error=error, default_denoising=None)


PIPELINES: dict[str, PipelineFacts] = {
    f.pipeline_id: f
    for f in (
        _wan("streamdiffusionv2", (512, 512), 4, denoising=(750, 250)),
        _wan("longlive", (576, 320), 12),
        _wan("krea-realtime-video", (512, 512), 12,
             error="Found no NVIDIA driver on your system. Please check that you have an NVIDIA GPU and installed "
                   "a driver from http://www.nvidia.com/Download/index.aspx"),
        _wan("reward-forcing", (576, 320), 12),
        _wan("memflow", (576, 320), 12),
        _video("passthrough", 4),
        _video("video-depth-anything", 4, gpu=True, error="[Errno 2] No such file or directory: "
               f"'{MODELS_DIR}/Video-Depth-Anything-Small/video_depth_anything_vits.pth'"),
        PipelineFacts("controller-viz", (512, 512), 1, None, PIPELINE_READS["controller-viz"], kind="controller",
                      native_fps=56.0, gpu=False, cpu_error="", default_denoising=None),
        _video("rife", 12),
        _video("scribble", 1),
        _video("gray", 1, "gray"),
        _video("optical-flow", 2),
    )
}


@cache
def _schemas() -> dict[str, Any]:
    return dict(json.loads((Path(__file__).parent / "scope_schemas.json").read_text(encoding="utf-8")))


def schema(pipeline_id: str) -> dict[str, Any]:
    """The schema entry of a built-in pipeline (KeyError for anything else)."""
    return dict(_schemas()[pipeline_id])


def facts(pipeline_id: str) -> PipelineFacts | None:
    return PIPELINES.get(pipeline_id)


def offered(cpu_only: bool) -> list[str]:
    """The pipeline ids the server registers: all of them with CUDA, the weight-free ones without."""
    return [pid for pid, f in PIPELINES.items() if not (cpu_only and f.gpu)]


def pipeline_schemas(cpu_only: bool = False) -> dict[str, Any]:
    """The whole ``GET /api/v1/pipelines/schemas`` answer."""
    return {"pipelines": {pid: schema(pid) for pid in offered(cpu_only)}}


def load_error(pipeline_id: str, cpu_only: bool) -> str | None:
    """Why loading ``pipeline_id`` fails on this server, in Scope's words; None when it loads."""
    found = PIPELINES.get(pipeline_id)
    if found is None:
        return f"Invalid pipeline ID: {pipeline_id}"
    if cpu_only and found.gpu:
        return found.cpu_error
    return None


def describe(pipeline_id: str, mode: str, chunk_frames: int, fps: float | None) -> str:
    """One line saying what a session imitates: chunk, pace and the keys read."""
    found = PIPELINES[pipeline_id]
    pace = f"{fps:g} fps" if fps else "the input's frame rate"
    reads = ", ".join(sorted(found.reads.get(mode, frozenset()))) or "no runtime keys"
    return f"{pipeline_id} in {mode} mode: {chunk_frames} frame(s) per chunk at {pace}; reads {reads}"


#: ``vram_gb`` of the GPU server the emulator imitates by default (a 24 GB card, e.g. a 4090).
GPU_VRAM_GB = 24.0


def hardware_info(cpu_only: bool = False) -> dict[str, Any]:
    """A Linux machine, answering as a real 0.2.4 does there: ``vram_gb`` is null exactly when CUDA is missing."""
    return {
        "vram_gb": None if cpu_only else GPU_VRAM_GB,
        "spout": {"available": False, "reason": "Spout is Windows-only",
                  "install_hint": "Run Scope on Windows to use Spout sources and sinks."},
        "ndi": {"available": False, "reason": "NDI SDK not found",
                "install_hint": "Install the NDI SDK from https://ndi.video/tools and restart Scope."},
        "syphon": {"available": False, "reason": "Syphon is macOS-only",
                   "install_hint": "Run Scope on macOS to use Syphon sources and sinks."},
    }


def gpu_memory() -> dict[str, Any]:
    """``gpu`` of ``/api/v1/session/metrics`` on a CUDA server (``mcp_router.py``): a quiet emulated card."""
    total = GPU_VRAM_GB * 1024
    return {"vram_allocated_mb": round(total * 0.4, 1), "vram_reserved_mb": round(total * 0.45, 1),
            "vram_total_mb": round(total, 1)}
