"""The static answers of the emulator: pipeline schemas and hardware info.

Built from ``metadj_bridge.scope.protocol.KNOWN_PIPELINES`` so the emulator and the client agree on
chunk sizes and default sizes. The schema entries carry the fields a client reads (``scope-api.md``
§3): modes, prompt support and a ``config_schema`` whose properties say with ``ui.is_load_param``
which keys may change live.
"""

from __future__ import annotations

from typing import Any

from metadj_bridge.parameters import KNOWN_PIPELINES, PipelineInfo

VERSION = "0.2.4"


def _prop(kind: str, default: Any, *, load: bool, label: str, lo: float | None = None,
          hi: float | None = None) -> dict[str, Any]:
    prop: dict[str, Any] = {"type": kind, "default": default, "title": label}
    if lo is not None:
        prop["minimum"] = lo
    if hi is not None:
        prop["maximum"] = hi
    prop["ui"] = {"category": "configuration" if load else "generation", "is_load_param": load, "label": label}
    return prop


def pipeline_schema(info: PipelineInfo) -> dict[str, Any]:
    """One entry of ``GET /api/v1/pipelines/schemas``."""
    width, height = info.default_size
    properties: dict[str, Any] = {
        "height": _prop("integer", height, load=True, label="Height", lo=16, hi=2048),
        "width": _prop("integer", width, load=True, label="Width", lo=16, hi=2048),
        "base_seed": _prop("integer", 42, load=False, label="Seed", lo=0),
        "noise_scale": _prop("number", 0.7, load=False, label="Noise Scale", lo=0.0, hi=1.0),
        "noise_controller": _prop("boolean", True, load=False, label="Noise Controller"),
        "manage_cache": _prop("boolean", True, load=False, label="Manage Cache"),
        "kv_cache_attention_bias": _prop("number", 1.0, load=False, label="Cache Bias", lo=0.01, hi=1.0),
        "vace_context_scale": _prop("number", 1.0, load=False, label="VACE Scale", lo=0.0, hi=2.0),
    }
    if info.default_denoising is not None:
        properties["denoising_steps"] = {
            "type": "array",
            "items": {"type": "integer", "minimum": 0, "maximum": 1000},
            "default": list(info.default_denoising),
            "ui": {"category": "generation", "is_load_param": False, "label": "Denoising Steps"},
        }
    return {
        "id": info.pipeline_id,
        "name": info.pipeline_id.replace("-", " ").title(),
        "description": "Emulated by metadj-bridge: frames are drawn, not generated",
        "version": "emulated",
        "supported_modes": list(info.modes),
        "default_mode": info.modes[0],
        "supports_prompts": info.supports_prompts,
        "supports_lora": info.supports_prompts,
        "supports_vace": info.supports_prompts,
        "supports_cache_management": True,
        "supports_kv_cache_bias": info.pipeline_id == "krea-realtime-video",
        "produces_video": True,
        "produces_audio": False,
        "min_dimension": 16,
        "default_temporal_interpolation_method": "linear",
        "default_temporal_interpolation_steps": 4,
        "plugin_name": None,
        "config_schema": {"title": f"{info.pipeline_id} config", "type": "object", "properties": properties},
    }


def pipeline_schemas() -> dict[str, Any]:
    """The whole ``GET /api/v1/pipelines/schemas`` answer."""
    return {"pipelines": {pid: pipeline_schema(info) for pid, info in KNOWN_PIPELINES.items()}}


def hardware_info() -> dict[str, Any]:
    """A machine without CUDA and without Spout, NDI or Syphon."""

    def unavailable(reason: str) -> dict[str, Any]:
        return {"available": False, "reason": reason, "install_hint": None}

    return {
        "vram_gb": None,
        "spout": unavailable("Not available in the emulator"),
        "ndi": unavailable("Not available in the emulator"),
        "syphon": unavailable("Not available in the emulator"),
    }
