"""A show profile compiled for the engine: mapping runtimes sorted by how they are stepped, and target slots.

Checks what only the engine can check (the parameter schema of the pipeline in use, theme names for
``theme.set``) and raises ``ConfigError`` naming the mapping's ``where``.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from metadj_bridge.errors import ConfigError
from metadj_bridge.mapping.compiled import (
    EnvelopeMapping,
    MappingRuntime,
    SignalMapping,
    TriggerMapping,
    compile_mapping,
)
from metadj_bridge.mapping.parameters import Slot, value_coercer
from metadj_bridge.parameters import ParameterSchema
from metadj_bridge.profile.model import (
    ACTIONS,
    PROMPT_OPS,
    THEME_OPS,
    ProfileSwitch,
    ShowProfile,
)

__all__ = ["CompiledProfile", "PromptTarget", "compile_profile", "prompt_controls"]

_FEEDBACK_NAME = re.compile(r"midi\.(cc|note)\.(\d+)\.(\d+)")


@dataclass(frozen=True, slots=True)
class PromptTarget:
    """A prompt mix (two prompts crossfaded) or one prompt's weight, as (index, weight) pairs for a value."""

    mix: tuple[int, int] | None = None
    index: int | None = None

    def __call__(self, value: float | None) -> list[tuple[int, float]]:
        v = 0.0 if value is None else value
        if self.mix is not None:
            v = 0.0 if v < 0 else 1.0 if v > 1 else v
            return [(self.mix[0], 1.0 - v), (self.mix[1], v)]
        assert self.index is not None
        return [(self.index, v)]


@dataclass
class CompiledProfile:
    profile: ShowProfile
    runtimes: list[MappingRuntime] = field(default_factory=list)
    #: Trigger name -> mappings reading that trigger.
    by_trigger: dict[str, list[MappingRuntime]] = field(default_factory=dict)
    envelopes_by_trigger: dict[str, list[EnvelopeMapping]] = field(default_factory=dict)
    switches: dict[str, list[ProfileSwitch]] = field(default_factory=dict)
    #: Mappings stepped every step (signals, LFOs, envelopes), in profile order.
    updating: list[MappingRuntime] = field(default_factory=list)
    #: Mappings with a quantize stage (polled every step).
    holding: list[MappingRuntime] = field(default_factory=list)
    selects: list[MappingRuntime] = field(default_factory=list)
    #: (slot, coercer, parameter name) per driven parameter.
    param_slots: list[tuple[Slot, Callable[[float], Any], str]] = field(default_factory=list)
    #: (slot, target) per prompt mix / prompt weight.
    weight_slots: list[tuple[Slot, PromptTarget]] = field(default_factory=list)
    #: The ``prompt.intensity`` slot (None: no mapping drives it).
    intensity_slot: Slot | None = None
    feedback: list[tuple[tuple[str, int, int], SignalMapping]] = field(default_factory=list)
    noise_coercer: Callable[[float], Any] = float


def _int_arg(value: object, where: str, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ConfigError(f"{where}: {what} {value!r} is not a prompt index (0, 1, ...)")
    return value


def compile_profile(profile: ShowProfile, schema: ParameterSchema, rng: random.Random) -> CompiledProfile:
    out = CompiledProfile(profile)
    theme_names = {t.name for t in profile.themes}
    slots: dict[str | PromptTarget, Slot] = {}
    try:
        out.noise_coercer = value_coercer(schema, "noise_scale", "pulse")
    except ConfigError:
        out.noise_coercer = float
    for mapping in profile.mappings:
        if not mapping.enabled:
            continue
        where = mapping.where or f"mappings.{mapping.name}"
        target = mapping.target
        runtime = compile_mapping(mapping, rng)
        out.runtimes.append(runtime)
        if isinstance(runtime, TriggerMapping):
            out.by_trigger.setdefault(runtime.trigger, []).append(runtime)
        else:
            out.updating.append(runtime)
        if isinstance(runtime, EnvelopeMapping):
            out.envelopes_by_trigger.setdefault(runtime.trigger, []).append(runtime)
        if runtime.holds:
            out.holding.append(runtime)
        if runtime.select:
            out.selects.append(runtime)
        if isinstance(runtime, SignalMapping):
            match = _FEEDBACK_NAME.fullmatch(runtime.signal)
            if match:
                out.feedback.append(((match.group(1), int(match.group(2)), int(match.group(3))), runtime))
        kind = target.kind
        if kind == "parameter":
            name = "denoising_step_list" if target.name == "denoising_steps" else target.name
            slot = slots.get(name)
            if slot is None:
                slot = slots[name] = Slot(name, mapping.combine)
                out.param_slots.append((slot, value_coercer(schema, target.name, where), name))
            slot.members.append(runtime)
        elif kind in ("prompt_mix", "prompt_weight"):
            if kind == "prompt_mix":
                args = target.argument or (0, 1)
                if len(args) != 2:
                    raise ConfigError(f"{where}: prompt.mix takes two prompt indices, got {args!r}")
                prompt = PromptTarget(mix=(_int_arg(args[0], where, "prompt"), _int_arg(args[1], where, "prompt")))
            else:
                if len(target.argument) != 1:
                    raise ConfigError(f"{where}: prompt.weight takes one prompt index, got {target.argument!r}")
                prompt = PromptTarget(index=_int_arg(target.argument[0], where, "prompt"))
            slot = slots.get(prompt)
            if slot is None:
                slot = slots[prompt] = Slot(prompt, mapping.combine)
                out.weight_slots.append((slot, prompt))
            slot.members.append(runtime)
        elif kind == "prompt_intensity":
            if out.intensity_slot is None:
                out.intensity_slot = Slot("prompt.intensity", mapping.combine)
            out.intensity_slot.members.append(runtime)
        elif kind == "prompt":
            if target.name not in PROMPT_OPS:
                raise ConfigError(f"{where}: prompt.{target.name}: not one of {', '.join(PROMPT_OPS)}")
        elif kind == "theme":
            if target.name not in THEME_OPS:
                raise ConfigError(f"{where}: theme.{target.name}: not one of {', '.join(THEME_OPS)}")
            if target.name == "set" and (not target.argument or str(target.argument[0]) not in theme_names):
                names = ", ".join(sorted(theme_names))
                raise ConfigError(f"{where}: theme.set: {target.argument!r} is not a theme (themes: {names})")
        elif kind == "action":
            if target.name not in ACTIONS:
                raise ConfigError(f"{where}: action.{target.name}: not one of {', '.join(ACTIONS)}")
        elif kind == "profile":
            if not target.argument or not isinstance(target.argument[0], str) or not target.argument[0]:
                raise ConfigError(f"{where}: profile target needs a file path")
        elif kind == "scene":  # run by the show (mapping/scenes.py): the engine only lets the hit through
            if target.name not in ("save", "recall") or len(target.argument) != 1:
                raise ConfigError(f"{where}: scene.{target.name}: write scene.save:<name> or scene.recall:<name>")
        else:
            raise ConfigError(f"{where}: unknown target kind {kind!r}")
    for switch in profile.switches:
        out.switches.setdefault(switch.trigger, []).append(switch)
    return out


def prompt_controls(weight_slots: list[tuple[Slot, PromptTarget]], blend: bool,
                    focus_stamp: int) -> tuple[tuple[int, int, float] | None, dict[int, float] | None]:
    """The prompt mix (non-blend theme) or weight overrides (blend theme) in force.

    A slot counts once it changed (a control moved), whatever theme is active: a control's last value applies to
    every theme it is moved in or left at. For a mix in a non-blend theme it counts only if it changed after the
    focus last moved (``focus_stamp``): whatever the performer moved last is what shows. In a blend theme the
    overrides apply oldest change first, so on a prompt two controls share the newer one wins.
    """
    if blend:
        live = [(slot.changed, i, slot) for i, (slot, _) in enumerate(weight_slots)
                if slot.combine() is not None and slot.changed >= 0]
        if not live:
            return None, None
        overrides: dict[int, float] = {}
        for _, i, slot in sorted(live, key=lambda item: (item[0], item[1])):
            for index, weight in weight_slots[i][1](slot.value):
                overrides[index] = weight
        return None, overrides
    best: Slot | None = None
    best_target: PromptTarget | None = None
    for slot, target in weight_slots:
        if target.mix is None:
            continue
        if slot.combine() is not None and slot.changed > focus_stamp and (best is None or slot.changed >= best.changed):
            best, best_target = slot, target
    if best is None or best.value is None or best_target is None or best_target.mix is None:
        return None, None
    a, b = best_target.mix
    return (a, b, best.value), None
