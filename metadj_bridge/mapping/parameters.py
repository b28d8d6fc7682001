"""Scope parameters as the engine sends them: values coerced into the schema's ranges, mappings combined per key.

- Numbers are clamped to the parameter's range and rounded to 4 decimals, so a smoother settling on its target
  stops producing new values (the sender only sends what changed) instead of creeping for seconds.
- Integers are rounded and clamped; a 0..1 value on a boolean is true from 0.5; on a choice (``enum``) it picks a
  choice by position (equal zones).
- ``denoising_steps`` (or ``denoising_step_list``) turns a 0..1 value into one of the step-list presets:
  fast below 1/3, balanced below 2/3, quality above (equal zones of the knob).
- Several mappings on one key combine by the rule of the first of them (``max``, ``sum``, or ``last`` = the one
  whose value changed most recently; on a tie, the later one in the profile).

Pure.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable
from typing import Any

from metadj_bridge.errors import ConfigError, ParameterError
from metadj_bridge.parameters import (
    DENOISING_PRESETS,
    LOAD_ONLY_KEYS,
    OFFER_ONLY_KEYS,
    ONE_SHOT_KEYS,
    ParameterSchema,
    ParamSpec,
)

__all__ = [
    "DENOISING_CHOICES",
    "SCOPE_DEFAULTS",
    "Slot",
    "coerce_lasting",
    "denoising_choice",
    "value_coercer",
]

#: The step lists a 0..1 ``denoising_steps`` value picks from, low to high.
DENOISING_CHOICES: tuple[tuple[int, ...], ...] = tuple(
    tuple(DENOISING_PRESETS[name]) for name in ("fast", "balanced", "quality")
)

#: Scope's own values for keys a theme set and the next theme leaves alone (scope-api.md §6).
SCOPE_DEFAULTS: dict[str, Any] = {
    "noise_scale": 0.7,
    "noise_controller": True,
    "manage_cache": True,
    "kv_cache_attention_bias": 1.0,
    "base_seed": 42,
    "vace_context_scale": 1.0,
    "spatial_interpolation_method": "linear",
}

_NOT_MAPPABLE = frozenset({"prompts", "transition", "object", "list", "string", "any"})


def denoising_choice(x: float) -> int:
    """Index into DENOISING_CHOICES for a 0..1 value."""
    n = len(DENOISING_CHOICES)
    k = int(x * n) if x > 0 else 0
    return k if k < n else n - 1


def _spec(schema: ParameterSchema, name: str, where: str) -> ParamSpec:
    if name in LOAD_ONLY_KEYS or name in OFFER_ONLY_KEYS or name in ONE_SHOT_KEYS:
        raise ConfigError(f"{where}: {name} cannot be driven at runtime (load, offer-only or one-shot key)")
    spec = schema.specs.get(name)
    if spec is None:
        hint = difflib.get_close_matches(name, list(schema.specs) + ["denoising_steps"], n=1)
        did_you_mean = f"; did you mean {hint[0]!r}?" if hint else ""
        raise ConfigError(
            f"{where}: {name} is not a runtime parameter of pipeline {schema.pipeline_id!r}{did_you_mean}"
        )
    return spec


_FINITE = 1e12  # the largest magnitude a mapping can send where a parameter has no bound


def value_coercer(schema: ParameterSchema, name: str, where: str) -> Callable[[float], Any]:
    """How a mapping's float becomes the value of parameter ``name``."""
    if name in ("denoising_steps", "denoising_step_list"):
        return lambda x: list(DENOISING_CHOICES[denoising_choice(x)])
    spec = _spec(schema, name, where)
    kind = spec.kind
    # A chain of transforms can overflow to inf or make NaN (inf - inf): such a value never reaches Scope. It is
    # held inside the parameter's range, or inside +-1e12 where the parameter has no bound; NaN becomes the value
    # nearest 0 the range allows.
    lo = max(float(spec.minimum), -_FINITE) if spec.minimum is not None else -_FINITE
    hi = min(float(spec.maximum), _FINITE) if spec.maximum is not None else _FINITE
    nan_value = min(max(0.0, lo), hi)
    if kind == "number":

        def number(x: float) -> float:
            x = lo if x < lo else hi if x > hi else x if x == x else nan_value  # noqa: FURB136 - per step: no call
            return round(x, 4) + 0.0  # + 0.0 turns -0.0 into 0.0

        return number
    if kind == "integer":

        def integer(x: float) -> int:
            x = lo if x < lo else hi if x > hi else x if x == x else nan_value  # noqa: FURB136 - per step: no call
            return round(x)

        return integer
    if kind == "bool":
        return lambda x: x >= 0.5
    if kind == "enum" and spec.choices:
        choices = spec.choices
        n = len(choices)
        return lambda x: choices[min(max(int(x * n), 0), n - 1)]
    if kind in _NOT_MAPPABLE or kind == "enum" or kind == "steps":
        raise ConfigError(
            f"{where}: {name} takes {kind} values; a mapping can only drive numbers, switches and choices"
        )
    raise ConfigError(f"{where}: {name} ({kind}) cannot be driven by a mapping")


def coerce_lasting(schema: ParameterSchema, name: str, value: Any, where: str) -> Any:
    """A lasting value from the profile (scope, theme or panic parameters), checked and kept in range."""
    spec = _spec(schema, name, where)
    if spec.kind in ("number", "integer") and isinstance(value, (int, float)) and not isinstance(value, bool):
        lo = spec.minimum if spec.minimum is not None else value
        hi = spec.maximum if spec.maximum is not None else value
        value = min(max(value, lo), hi)
        value = round(value) if spec.kind == "integer" else float(value)
    try:
        return schema.check(name, value)
    except ParameterError as exc:
        raise ConfigError(f"{where}: {exc}") from None


class Slot:
    """One driven key (a parameter, a prompt mix or a prompt weight) and the mappings that drive it."""

    __slots__ = ("changed", "key", "members", "rule", "value")

    def __init__(self, key: Any, rule: str) -> None:
        self.key = key
        self.members: list[Any] = []  # MappingRuntime objects: .value (float | None), .changed (int)
        self.rule = rule
        self.value: float | None = None
        #: Step at which the combined value last changed (-1: never since the start).
        self.changed = -1

    def combine(self, muted: bool = False) -> float | None:
        """The combined value (None while no member has one); updates ``value`` and ``changed``."""
        rule = self.rule
        result: float | None = None
        stamp = -1
        if rule == "last":
            for m in self.members:
                v = m.value
                if v is not None and m.changed >= stamp:
                    result, stamp = v, m.changed
        else:
            for m in self.members:
                v = m.value
                if v is None:
                    continue
                if m.changed > stamp:  # noqa: PLR1730 - per step: no call
                    stamp = m.changed
                if result is None:
                    result = v
                elif rule == "max":
                    result = v if v > result else result  # noqa: FURB136 - per step: no call
                else:
                    result += v
        if stamp > self.changed:  # noqa: PLR1730 - per step: no call
            self.changed = stamp
        self.value = result
        return result

