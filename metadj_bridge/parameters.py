"""Scope's parameter vocabulary, shared by every room: pipeline facts, presets, prompts and the parameter schema.

Ground floor: pure, and imports nothing of the project but :mod:`metadj_bridge.errors`. The mapping engine
coerces values with it, the profile loader checks names against it, the Scope client and sender speak it,
and the emulator applies it. Everything here follows ``shared/scope-api.md`` (Scope 0.2.4): §5 for prompts,
§6 for the data-channel keys and their types, §3 for a pipeline's ``config_schema``.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from metadj_bridge.errors import ParameterError

#: Keys Scope removes after one use (§6): they must go out once and never be re-sent.
ONE_SHOT_KEYS = frozenset(
    {"reset_cache", "lora_scales", "vace_ref_images", "images", "first_frame_image", "last_frame_image"}
)

#: Keys that only matter in the offer's ``initialParameters`` (§6).
OFFER_ONLY_KEYS = frozenset({"pipeline_ids", "graph", "vace_enabled", "vace_use_input_video", "recording"})

#: Keys that must never be sent at runtime: Scope writes them into pipeline state and the
#: resolution changes on every call (§6, StreamPage.tsx strips them for this reason).
LOAD_ONLY_KEYS = frozenset({"height", "width"})

#: Denoising presets from the seed ("Generation Configuration").
DENOISING_PRESETS: dict[str, list[int]] = {
    "quality": [1000, 750, 500, 250],
    "balanced": [1000, 500, 250],
    "fast": [1000, 250],
}

#: Aspect presets from the seed ("Pipeline Configuration"): (width, height).
ASPECT_PRESETS: dict[str, tuple[int, int]] = {
    "16:9": (1024, 576),
    "9:16": (480, 832),
}


@dataclass(frozen=True)
class PipelineInfo:
    """What the bridge knows of a pipeline before asking the server (§6 per-pipeline table)."""

    pipeline_id: str
    #: Frames produced per generated chunk: Scope takes one parameter message per chunk.
    chunk_frames: int
    #: Load (width, height) the server uses when none is given.
    default_size: tuple[int, int]
    modes: tuple[str, ...] = ("text", "video")
    default_denoising: tuple[int, ...] | None = (1000, 750, 500, 250)
    supports_prompts: bool = True


KNOWN_PIPELINES: dict[str, PipelineInfo] = {
    p.pipeline_id: p
    for p in (
        PipelineInfo("longlive", 12, (576, 320)),
        PipelineInfo("krea-realtime-video", 12, (512, 512)),
        PipelineInfo("reward-forcing", 12, (576, 320)),
        PipelineInfo("memflow", 12, (576, 320)),
        PipelineInfo("streamdiffusionv2", 4, (512, 512), ("video", "text"), (750, 250)),
        PipelineInfo("passthrough", 4, (512, 512), ("video",), None, False),
        PipelineInfo("gray", 1, (512, 512), ("video",), None, False),
        PipelineInfo("controller-viz", 1, (512, 512), ("text",), None, False),
        # The video filters of Scope 0.2.4: input video only (a text show gets no frame from them).
        PipelineInfo("video-depth-anything", 4, (512, 512), ("video",), None, False),
        PipelineInfo("rife", 12, (512, 512), ("video",), None, False),
        PipelineInfo("scribble", 1, (512, 512), ("video",), None, False),
        PipelineInfo("optical-flow", 2, (512, 512), ("video",), None, False),
    )
}


def pipeline_info(pipeline_id: str) -> PipelineInfo:
    """Facts for ``pipeline_id``; an unknown (plugin) pipeline gets conservative guesses."""
    return KNOWN_PIPELINES.get(pipeline_id, PipelineInfo(pipeline_id, 12, (576, 320)))


# --------------------------------------------------------------------------------------------
# Which runtime keys each pipeline reads, per input mode (Scope 0.2.4's code; §6, §9)

#: Keys Scope's server acts on itself, whatever the pipeline reads: the frame processor (``paused``,
#: ``reset_cache``, ``input_mode``, prompts and transitions), the scheduler, modulation and tempo sync (§9).
SERVER_SIDE_KEYS = frozenset({
    "prompts", "transition", "paused", "reset_cache", "input_mode", "node_id", "output_sinks", "input_source",
    "_quantized", "quantize_mode", "lookahead_ms", "modulations", "beat_cache_reset_rate",
    "bpm", "beat_phase", "bar_position", "beat_count", "is_playing",
})

#: Keys every Wan pipeline reads in text mode: ``wan2_1/blocks`` (embedding blending, set timesteps, setup
#: caches, prepare latents: the block seed is ``base_seed`` + frame index), each pipeline's ``_generate``
#: (``lora_scales``), ``wan2_1/vace`` and ``pipeline_processor.py`` (``reset_cache`` becomes ``init_cache``).
_WAN_TEXT = frozenset({
    "prompts", "transition", "spatial_interpolation_method", "denoising_step_list", "base_seed", "manage_cache",
    "reset_cache", "lora_scales", "vace_ref_images", "vace_context_scale", "first_frame_image", "last_frame_image",
    "images",
})
#: Video mode adds the noise controls, which text mode forces to None (``defaults.py``
#: ``apply_mode_defaults_to_state``).
_WAN_VIDEO = _WAN_TEXT | {"noise_scale", "noise_controller"}
#: Only krea-realtime-video's model implements the KV-cache attention bias (``supports_kv_cache_bias``).
_KV_BIAS = frozenset({"kv_cache_attention_bias"})
_NOTHING = frozenset[str]()

#: pipeline id -> input mode -> the runtime keys it reads there; any other key has no effect on the picture.
PIPELINE_READS: dict[str, dict[str, frozenset[str]]] = {
    "streamdiffusionv2": {"text": _WAN_TEXT, "video": _WAN_VIDEO},
    "longlive": {"text": _WAN_TEXT, "video": _WAN_VIDEO},
    "krea-realtime-video": {"text": _WAN_TEXT | _KV_BIAS, "video": _WAN_VIDEO | _KV_BIAS},
    "reward-forcing": {"text": _WAN_TEXT, "video": _WAN_VIDEO},
    "memflow": {"text": _WAN_TEXT, "video": _WAN_VIDEO},
    "controller-viz": {"text": frozenset({"ctrl_input"})},
    **{pid: {"video": _NOTHING} for pid in (
        "passthrough", "video-depth-anything", "rife", "scribble", "gray", "optical-flow")},
}


def pipeline_reads(pipeline_id: str, mode: str) -> frozenset[str] | None:
    """The runtime keys a built-in pipeline reads in ``mode``; None for a pipeline or mode the table lacks."""
    return PIPELINE_READS.get(pipeline_id, {}).get(mode)


# --------------------------------------------------------------------------------------------
# Prompts and initial parameters (§5)


def normalise_prompts(prompts: Any) -> list[dict[str, Any]]:
    """Prompts as Scope's offer accepts them: ``[{"text": str, "weight": float >= 0}]``.

    Accepts a string, a list of strings, or a list of ``{"text", "weight"}`` mappings.
    """
    if isinstance(prompts, str):
        prompts = [prompts]
    if not isinstance(prompts, (list, tuple)):
        raise ParameterError(f"prompts: expected a string or a list of prompts, got {type(prompts).__name__}")
    out: list[dict[str, Any]] = []
    for i, p in enumerate(prompts):
        if isinstance(p, str):
            out.append({"text": p, "weight": 1.0})
            continue
        if not isinstance(p, Mapping) or not isinstance(p.get("text"), str):
            raise ParameterError(f"prompts[{i}]: expected a string or {{text, weight}}, got {p!r}")
        weight = p.get("weight", 1.0)
        if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not math.isfinite(weight) or weight < 0:
            raise ParameterError(f"prompts[{i}].weight: {weight!r} is not a number >= 0")
        out.append({"text": p["text"], "weight": float(weight)})
    return out


# --------------------------------------------------------------------------------------------
# Parameter checks (§6 and the pipeline's config_schema, §3)


@dataclass(frozen=True)
class ParamSpec:
    """What one runtime key accepts."""

    kind: str  # "number", "integer", "bool", "enum", "prompts", "steps", "object", "list", "string", "any"
    minimum: float | None = None
    maximum: float | None = None
    choices: tuple[Any, ...] = ()


#: Runtime keys every Scope session understands (§6 table).
BUILTIN_SPECS: dict[str, ParamSpec] = {
    "prompts": ParamSpec("prompts"),
    "transition": ParamSpec("object"),
    "spatial_interpolation_method": ParamSpec("enum", choices=("linear", "slerp")),
    "prompt_interpolation_method": ParamSpec("enum", choices=("linear", "slerp")),
    "denoising_step_list": ParamSpec("steps", 0, 1000),
    "noise_scale": ParamSpec("number", 0.0, 1.0),
    "noise_controller": ParamSpec("bool"),
    "manage_cache": ParamSpec("bool"),
    "reset_cache": ParamSpec("bool"),
    "kv_cache_attention_bias": ParamSpec("number", 0.01, 1.0),
    "paused": ParamSpec("bool"),
    "input_mode": ParamSpec("enum", choices=("text", "video")),
    "base_seed": ParamSpec("integer", 0, 2**31 - 1),  # Scope seeds torch with it: 32-bit
    "lora_scales": ParamSpec("list"),
    "vace_ref_images": ParamSpec("list"),
    "vace_context_scale": ParamSpec("number", 0.0, 2.0),
    "first_frame_image": ParamSpec("string"),
    "last_frame_image": ParamSpec("string"),
    "images": ParamSpec("list"),
    "output_sinks": ParamSpec("object"),
    "input_source": ParamSpec("object"),
    "ctrl_input": ParamSpec("object"),
    "node_id": ParamSpec("string"),
    "_quantized": ParamSpec("bool"),
    "quantize_mode": ParamSpec("enum", choices=("none", "beat", "bar", "2_bar", "4_bar")),
    "lookahead_ms": ParamSpec("number", 0.0, None),
    "modulations": ParamSpec("object"),
    "beat_cache_reset_rate": ParamSpec("enum", choices=("none", "beat", "bar", "2_bar", "4_bar")),
    "bpm": ParamSpec("number", 1.0, 999.0),
    "beat_phase": ParamSpec("number", 0.0, 1.0),
    "bar_position": ParamSpec("number", 0.0, None),
    "beat_count": ParamSpec("integer", 0, None),
    "is_playing": ParamSpec("bool"),
}


@dataclass
class ParameterSchema:
    """The runtime keys one pipeline accepts, with their types and ranges.

    Built from the built-in table and, when the server provides it, the pipeline's ``config_schema``
    from ``GET /api/v1/pipelines/schemas``: properties with ``ui.is_load_param: false`` are live keys.
    """

    pipeline_id: str
    specs: dict[str, ParamSpec] = field(default_factory=lambda: dict(BUILTIN_SPECS))

    @classmethod
    def from_server(cls, pipeline_id: str, schemas: Mapping[str, Any] | None) -> ParameterSchema:
        schema = cls(pipeline_id)
        entry = (schemas or {}).get(pipeline_id) if isinstance(schemas, Mapping) else None
        config = entry.get("config_schema") if isinstance(entry, Mapping) else None
        props = config.get("properties") if isinstance(config, Mapping) else None
        if not isinstance(props, Mapping):
            return schema
        for name, prop in props.items():
            if not isinstance(prop, Mapping):
                continue
            ui_raw = prop.get("ui")
            ui: Mapping[str, Any] = ui_raw if isinstance(ui_raw, Mapping) else {}
            if name in LOAD_ONLY_KEYS or ui.get("is_load_param", False):
                continue
            schema.specs[name] = _spec_from_json_schema(prop, schema.specs.get(name))
        return schema

    def check(self, key: str, value: Any) -> Any:
        """Return ``value`` as Scope should receive it, or raise ``ParameterError`` saying why not."""
        if key in LOAD_ONLY_KEYS:
            raise ParameterError(
                f"{key}: is a load parameter; changing it at runtime would resize every chunk. "
                "Set it in the pipeline load (scope.resolution) instead"
            )
        if key in OFFER_ONLY_KEYS:
            raise ParameterError(f"{key}: only takes effect when a session starts; it cannot be changed live")
        spec = self.specs.get(key)
        if spec is None:
            hint = difflib.get_close_matches(key, self.specs, n=1)
            did_you_mean = f"; did you mean {hint[0]!r}?" if hint else ""
            raise ParameterError(f"{key}: not a runtime parameter of pipeline {self.pipeline_id!r}{did_you_mean}")
        return _check_value(key, value, spec)


def _spec_from_json_schema(prop: Mapping[str, Any], fallback: ParamSpec | None) -> ParamSpec:
    if "enum" in prop and isinstance(prop["enum"], list):
        return ParamSpec("enum", choices=tuple(prop["enum"]))
    types = prop.get("type")
    if isinstance(types, list):
        types = next((t for t in types if t != "null"), None)
    if types is None and isinstance(prop.get("anyOf"), list):
        for option in prop["anyOf"]:
            if isinstance(option, Mapping) and option.get("type") not in (None, "null"):
                return _spec_from_json_schema({**prop, **option, "anyOf": None}, fallback)
    lo = _bound(prop.get("minimum", prop.get("exclusiveMinimum")))
    hi = _bound(prop.get("maximum", prop.get("exclusiveMaximum")))
    if types == "number":
        return ParamSpec("number", lo, hi)
    if types == "integer":
        return ParamSpec("integer", lo, hi)
    if types == "boolean":
        return ParamSpec("bool")
    if types == "string":
        return ParamSpec("string")
    if types == "array":
        return fallback if fallback is not None else ParamSpec("list")
    if types == "object":
        return ParamSpec("object")
    return fallback if fallback is not None else ParamSpec("any")


def _is_number(value: Any) -> bool:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    try:
        return math.isfinite(value)
    except OverflowError:  # an integer too large for a float (JSON reads 400 digits as one)
        return False


def _bound(value: Any) -> float | None:
    """A server schema's minimum or maximum when it is a number a value can be compared with, else no bound: a
    bound of text or of an object would make every check of the key fail with a TypeError, not a refusal."""
    return value if _is_number(value) else None


def _range_text(spec: ParamSpec) -> str:
    if spec.minimum is not None and spec.maximum is not None:
        return f"{spec.minimum:g}-{spec.maximum:g}"
    if spec.minimum is not None:
        return f">= {spec.minimum:g}"
    if spec.maximum is not None:
        return f"<= {spec.maximum:g}"
    return "any value"


def _check_range(key: str, value: float, spec: ParamSpec, what: str) -> None:
    if (spec.minimum is not None and value < spec.minimum) or (spec.maximum is not None and value > spec.maximum):
        raise ParameterError(f"{key}: {value!r} is outside the allowed range ({what} {_range_text(spec)})")


def _check_value(key: str, value: Any, spec: ParamSpec) -> Any:
    kind = spec.kind
    if kind == "number":
        if not _is_number(value):
            raise ParameterError(f"{key}: {value!r} is not a number ({_range_text(spec)})")
        _check_range(key, value, spec, "a number")
        return float(value)
    if kind == "integer":
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if not isinstance(value, int) or isinstance(value, bool):
            raise ParameterError(f"{key}: {value!r} is not a whole number ({_range_text(spec)})")
        _check_range(key, value, spec, "a whole number")
        return value
    if kind == "bool":
        if not isinstance(value, bool):
            raise ParameterError(f"{key}: {value!r} is not true or false")
        return value
    if kind == "enum":
        if value not in spec.choices:
            allowed = ", ".join(repr(c) for c in spec.choices)
            raise ParameterError(f"{key}: {value!r} is not one of {allowed}")
        return value
    if kind == "prompts":
        return normalise_prompts(value)
    if kind == "steps":
        if not isinstance(value, (list, tuple)) or not value:
            raise ParameterError(f"{key}: expected a non-empty list of timesteps such as [1000, 750, 500, 250]")
        steps = []
        for step in value:
            if not isinstance(step, int) or isinstance(step, bool) or not 0 <= step <= 1000:
                raise ParameterError(f"{key}: {step!r} is not a timestep between 0 and 1000")
            steps.append(step)
        if any(a <= b for a, b in zip(steps, steps[1:], strict=False)):
            raise ParameterError(f"{key}: {steps} must be strictly descending, e.g. [1000, 750, 500, 250]")
        return steps
    if kind == "object":
        if not isinstance(value, Mapping):
            raise ParameterError(f"{key}: expected a mapping, got {value!r}")
        if key == "transition":
            return _check_transition(value)
        return dict(value)
    if kind == "list":
        if not isinstance(value, (list, tuple)):
            raise ParameterError(f"{key}: expected a list, got {value!r}")
        return list(value)
    if kind == "string":
        if not isinstance(value, str):
            raise ParameterError(f"{key}: expected text, got {value!r}")
        return value
    return value


def _check_transition(value: Mapping[str, Any]) -> dict[str, Any]:
    unknown = set(value) - {"target_prompts", "num_steps", "temporal_interpolation_method"}
    if unknown:
        raise ParameterError(
            f"transition: unknown field(s) {sorted(unknown)}; allowed: target_prompts, num_steps, "
            "temporal_interpolation_method"
        )
    out: dict[str, Any] = {"target_prompts": normalise_prompts(value.get("target_prompts", []))}
    steps = value.get("num_steps", 4)
    if not isinstance(steps, int) or isinstance(steps, bool) or steps < 0:
        raise ParameterError(f"transition.num_steps: {steps!r} is not a whole number >= 0")
    out["num_steps"] = steps
    method = value.get("temporal_interpolation_method", "linear")
    if method not in ("linear", "slerp"):
        raise ParameterError(f"transition.temporal_interpolation_method: {method!r} is not one of 'linear', 'slerp'")
    out["temporal_interpolation_method"] = method
    return out


def describe_prompts(prompts: Iterable[Mapping[str, Any]]) -> str:
    """Short text for logs: ``"neon city (0.70) + forest (0.30)"``."""
    parts = [f"{p.get('text', '')} ({float(p.get('weight', 1.0)):.2f})" for p in prompts]
    return " + ".join(parts) if parts else "(none)"
