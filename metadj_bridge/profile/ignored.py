"""Mappings that drive a key the profile's pipeline ignores in its input mode, said at ``check`` and ``run``.

A real Scope forces ``noise_scale`` to None in text mode (``src/scope/core/pipelines/defaults.py``), and only
krea-realtime-video implements ``kv_cache_attention_bias``: a mapping on such a key moves nothing on the screen.
Each one becomes a warning naming the file:line, the key, the pipeline and mode, and keys that would work.

What a pipeline reads comes from the server's schema when the server answers (``GET /api/v1/pipelines/schemas``:
its capability flags, each field's ``ui.modes`` and the per-mode defaults; :func:`schema_reads`), and from the
bridge's catalogue of Scope 0.2.4 otherwise (:data:`metadj_bridge.parameters.PIPELINE_READS`). Keys the server
acts on itself (:data:`~metadj_bridge.parameters.SERVER_SIDE_KEYS`: prompts, transitions, cache resets, pause,
modulations, quantised changes, beat state) and targets the bridge consumes (prompt and theme moves, actions
other than ``pulse_noise`` and ``seed_step``, profile switches) never warn.

Pure: imports the ground floor and the profile model only.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from metadj_bridge.parameters import BUILTIN_SPECS, SERVER_SIDE_KEYS, pipeline_reads
from metadj_bridge.profile.model import ShowProfile

#: Keys a pipeline reads only when its schema sets the capability flag (``base_schema.py``).
_NEEDS_FLAG = {
    "prompts": "supports_prompts",
    "transition": "supports_prompts",
    "spatial_interpolation_method": "supports_prompts",
    "manage_cache": "supports_cache_management",
    "kv_cache_attention_bias": "supports_kv_cache_bias",
    "lora_scales": "supports_lora",
    **dict.fromkeys(("vace_ref_images", "vace_context_scale", "first_frame_image", "last_frame_image", "images"),
                    "supports_vace"),
}
#: Keys only a denoising pipeline reads: one whose schema has a step list for the mode.
_DENOISING_KEYS = frozenset({"denoising_step_list", "base_seed", "noise_scale", "noise_controller"})

#: What to suggest instead, best first: (the target as a profile writes it, the key it needs the pipeline to read).
#: For a continuous value, the changes that show as much as noise does in video mode: the step list, the prompt
#: weights, the seed; for a beat (``action.pulse_noise``), their triggered forms; for a key no pipeline reads,
#: the one they do read.
_WORKS = (
    ("prompt.intensity (a theme's intense variant)", "prompts"),
    ("denoising_steps", "denoising_step_list"),
    ("prompt.weight.N or prompt.mix", "prompts"),
    ("base_seed", "base_seed"),
    ("kv_cache_attention_bias", "kv_cache_attention_bias"),
    ("noise_scale", "noise_scale"),
    ("vace_context_scale", "vace_context_scale"),
)
_TRIGGER_WORKS = (
    ("action.accent (a beat accent on prompt.intensity)", "prompts"),
    ("action.seed_step", "base_seed"),
    ("an envelope on denoising_steps", "denoising_step_list"),
    ("action.reset_cache (for drops)", "manage_cache"),
)
_OWN_WORKS = {"prompt_interpolation_method": (("spatial_interpolation_method", "spatial_interpolation_method"),)}
#: Why Scope ignores a key, where it is worth saying.
_WHY = {
    ("noise_scale", "text"): "Scope sets it to None there",
    ("noise_controller", "text"): "Scope sets it to None there",
    ("kv_cache_attention_bias", ""): "only krea-realtime-video implements it",
    ("prompt_interpolation_method", ""): "no pipeline reads it",
}
_MAX_WORKS = 3

SCHEMA = "the server's schema"
CATALOGUE = "the bridge's catalogue of Scope 0.2.4"


@dataclass(frozen=True)
class IgnoredKey:
    """One mapping target the pipeline ignores in this mode."""

    where: str
    #: The Scope key that goes out (``noise_scale`` for ``action.pulse_noise``).
    key: str
    #: The target as the profile writes it.
    target: str
    pipeline: str
    mode: str
    #: Targets that would move the picture on this pipeline in this mode.
    works: tuple[str, ...]
    #: Where the facts come from: :data:`SCHEMA` or :data:`CATALOGUE`.
    source: str

    def __str__(self) -> str:
        what = self.key if self.target == self.key else f"{self.target} moves {self.key}, which"
        why = _WHY.get((self.key, self.mode)) or _WHY.get((self.key, ""), "Scope ignores it there")
        if self.source == SCHEMA:
            why += ", says the server's schema"
        works = (f"what works instead: {', '.join(self.works)}" if self.works
                 else f"{self.pipeline} reads no runtime key in {self.mode} mode")
        return f"{self.where}: {what} does nothing on {self.pipeline} in {self.mode} mode ({why}); {works}"


def schema_reads(entry: Mapping[str, Any], mode: str) -> frozenset[str] | None:
    """The runtime keys a pipeline reads in ``mode``, as its schema entry says; None when it lacks the mode.

    A key bound to a capability (prompts, cache management, the KV bias, LoRA, VACE) needs the flag; the step
    list, the seed and the noise controls need a denoising pipeline (a step list for this mode); a field whose
    ``ui.modes`` leaves out this mode is ignored in it (``noise_scale``: video only); any other live field of the
    schema is read. Where the schema says nothing (an older or plugin schema without a flag), the key counts
    as read: a warning only comes from what the server says.
    """
    modes = entry.get("supported_modes")
    if isinstance(modes, (list, tuple)) and modes and mode not in modes:
        return None
    props = _properties(entry)
    denoises = _denoises(entry, props, mode)
    reads: set[str] = set()
    for key in {*BUILTIN_SPECS, *props}:
        prop = props.get(key)
        ui = prop.get("ui") if isinstance(prop, Mapping) else None
        ui = ui if isinstance(ui, Mapping) else {}
        allowed = ui.get("modes")
        if isinstance(allowed, (list, tuple)) and mode not in allowed:
            continue
        if key in _NEEDS_FLAG:
            if entry.get(_NEEDS_FLAG[key], True) is not False:
                reads.add(key)
        elif key in _DENOISING_KEYS:
            if denoises:
                reads.add(key)
        elif key in SERVER_SIDE_KEYS or (prop is not None and not ui.get("is_load_param", False)):
            reads.add(key)
    return frozenset(reads)


def _properties(entry: Mapping[str, Any]) -> Mapping[str, Any]:
    config = entry.get("config_schema")
    props = config.get("properties") if isinstance(config, Mapping) else None
    return props if isinstance(props, Mapping) else {}


def _denoises(entry: Mapping[str, Any], props: Mapping[str, Any], mode: str) -> bool:
    """Does the pipeline denoise in ``mode``? True unless the schema shows a ``denoising_steps`` field without steps."""
    mode_defaults = entry.get("mode_defaults")
    overrides = mode_defaults.get(mode) if isinstance(mode_defaults, Mapping) else None
    if isinstance(overrides, Mapping) and overrides.get("denoising_steps"):
        return True
    field = props.get("denoising_steps")
    if not isinstance(field, Mapping):
        return True
    return bool(field.get("default"))


def driven_keys(profile: ShowProfile) -> Iterator[tuple[str, str, str]]:
    """(Scope key, target as written, where) of each mapping that sends a pipeline key, in profile order.

    A mapping switched off (``enabled: false``) sends nothing and is left out.
    """
    for mapping in profile.mappings:
        if not mapping.enabled:
            continue
        target = mapping.target
        where = target.where or mapping.where
        if target.kind == "parameter":
            key = "denoising_step_list" if target.name == "denoising_steps" else target.name
            yield key, target.name, where
        elif target.kind == "action" and target.name == "pulse_noise":
            yield "noise_scale", "action.pulse_noise", where
        elif target.kind == "action" and target.name == "seed_step":
            yield "base_seed", "action.seed_step", where


def ignored_keys(profile: ShowProfile, pipeline: str, mode: str,
                 schema: Mapping[str, Any] | None = None) -> list[IgnoredKey]:
    """Each mapping target ``pipeline`` ignores in ``mode``, once per key and place.

    ``schema`` is the pipeline's entry from the server's schemas when it answered; without it the catalogue
    decides. Nothing is said for a pipeline or mode neither knows (other checks refuse those).
    """
    if schema is not None:
        reads, source = schema_reads(schema, mode), SCHEMA
    else:
        reads, source = pipeline_reads(pipeline, mode), CATALOGUE
    if reads is None:
        return []
    out: list[IgnoredKey] = []
    seen: set[tuple[str, str]] = set()
    for key, written, where in driven_keys(profile):
        if key in SERVER_SIDE_KEYS or key in reads or (where, key) in seen:
            continue
        seen.add((where, key))
        out.append(IgnoredKey(where, key, written, pipeline, mode, _works_instead(key, written, reads), source))
    return out


def _works_instead(key: str, written: str, reads: frozenset[str]) -> tuple[str, ...]:
    choices = _TRIGGER_WORKS if written.startswith("action.") else (*_OWN_WORKS.get(key, ()), *_WORKS)
    return tuple(label for label, needs in choices if needs in reads and needs != key)[:_MAX_WORKS]


class IgnoredKeyLog:
    """``run``'s warnings: said once, when the run first learns what the server offers (or that it says nothing)."""

    def __init__(self, profile: ShowProfile, pipeline: str, mode: str, log: logging.Logger) -> None:
        self.profile, self.pipeline, self.mode, self.log = profile, pipeline, mode, log
        self.said: list[IgnoredKey] | None = None

    def report(self, schema: Mapping[str, Any] | None) -> None:
        """Warn about each ignored key, from ``schema`` (the pipeline's entry) or else the catalogue; once."""
        if self.said is not None:
            return
        self.said = ignored_keys(self.profile, self.pipeline, self.mode, schema)
        for item in self.said:
            self.log.warning("%s", item)
