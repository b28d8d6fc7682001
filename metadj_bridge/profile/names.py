"""Signal, trigger and target names as a profile writes them, checked against the grammar the inputs use.

Signals and triggers (``midi_decode``, ``signals``, ``osc``, the BeatClock):
``audio.<feature>``, ``midi.cc.<ch>.<cc>``, ``midi.note.<ch>.<note>`` (both), ``midi.pitchbend.<ch>``,
``midi.program.<ch>`` (trigger), ``midi.aftertouch.<ch>``, ``midi.polytouch.<ch>.<note>``, ``osc./address``
(both), ``tempo.beat`` / ``tempo.bar`` (triggers), ``tempo.bpm`` / ``tempo.phase`` (signals).
"""

from __future__ import annotations

import math
import re
from typing import Any, Literal

from metadj_bridge.errors import ParameterError
from metadj_bridge.parameters import BUILTIN_SPECS, LOAD_ONLY_KEYS, ONE_SHOT_KEYS, ParameterSchema
from metadj_bridge.profile.fields import fail, fail_value, misread_number, suggest
from metadj_bridge.profile.model import ACTIONS, PROMPT_OPS, THEME_OPS
from metadj_bridge.profile.yamlnodes import YNode
from metadj_bridge.signals import AUDIO_SIGNALS, AUDIO_TRIGGERS

Kind = Literal["signal", "trigger"]

TEMPO_SIGNALS = ("tempo.bpm", "tempo.phase")
TEMPO_TRIGGERS = ("tempo.beat", "tempo.bar")

#: MIDI families: argument names after ``midi.<family>.``, and which kinds each one is.
_MIDI: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "cc": (("channel", "cc"), ("signal",)),
    "note": (("channel", "note"), ("signal", "trigger")),
    "pitchbend": (("channel",), ("signal",)),
    "program": (("channel",), ("trigger",)),
    "aftertouch": (("channel",), ("signal",)),
    "polytouch": (("channel", "note"), ("signal",)),
}
_LIMITS = {"channel": (1, 16, "a MIDI channel"), "cc": (0, 127, "a MIDI CC number"),
           "note": (0, 127, "a MIDI note number")}

GRAMMAR = (
    "audio.<feature>, midi.cc.<ch>.<cc>, midi.note.<ch>.<note>, midi.pitchbend.<ch>, midi.program.<ch>, "
    "midi.aftertouch.<ch>, midi.polytouch.<ch>.<note>, osc./address, tempo.beat, tempo.bar, tempo.bpm, tempo.phase"
)

#: Runtime Scope parameters a mapping may drive (``denoising_steps`` scales the step list).
TARGET_PARAMETERS: tuple[str, ...] = tuple(
    sorted(set(BUILTIN_SPECS) - {"prompts", "transition"} - ONE_SHOT_KEYS - LOAD_ONLY_KEYS) + ["denoising_steps"]
)
#: Parameters a profile may hold at a lasting value (scope.parameters, theme and panic parameters).
LASTING_PARAMETERS: tuple[str, ...] = tuple(p for p in TARGET_PARAMETERS if p != "denoising_steps")
_SCHEMA = ParameterSchema("profile")

_WELL_KNOWN = (*AUDIO_SIGNALS, *AUDIO_TRIGGERS, *TEMPO_SIGNALS, *TEMPO_TRIGGERS,
               "midi.cc.1.0", "midi.note.1.36", "midi.pitchbend.1", "midi.program.1", "midi.aftertouch.1",
               "midi.polytouch.1.36", "osc./address")


def kinds_of(name: str) -> tuple[str, ...]:
    """("signal",), ("trigger",) or both, for a name that follows the grammar; () otherwise (unchecked)."""
    if name in AUDIO_SIGNALS or name in TEMPO_SIGNALS:
        return ("signal",)
    if name in AUDIO_TRIGGERS or name in TEMPO_TRIGGERS:
        return ("trigger",)
    if name.startswith("osc."):
        return ("signal", "trigger")
    parts = name.split(".")
    if len(parts) >= 2 and parts[0] == "midi" and parts[1] in _MIDI:
        return _MIDI[parts[1]][1]
    return ()


def signal_name(node: YNode, path: str, kind: Kind) -> str:
    """A valid signal (``kind="signal"``) or trigger name, or a ProfileError saying what is wrong."""
    if not isinstance(node.value, str):
        fail_value(node, path, f"expected a {kind} name such as audio.energy or midi.cc.1.74")
    name = node.value
    _check_grammar(node, path, name)
    kinds = kinds_of(name)
    if kind not in kinds:
        if kind == "signal":
            fail_value(node, path, f"is a trigger, not a signal; write trigger: {name} (or use an envelope)")
        fail_value(node, path, "is a signal, not a trigger; read it with source: and a threshold transform")
    return name


def _check_grammar(node: YNode, path: str, name: str) -> None:
    if name in AUDIO_SIGNALS or name in AUDIO_TRIGGERS or name in TEMPO_SIGNALS or name in TEMPO_TRIGGERS:
        return
    parts = name.split(".")
    head = parts[0]
    if head in ("audio", "tempo"):
        options = (*AUDIO_SIGNALS, *AUDIO_TRIGGERS) if head == "audio" else (*TEMPO_SIGNALS, *TEMPO_TRIGGERS)
        fail_value(node, path, f"unknown {head} name{suggest(name, options)} (known: {', '.join(options)})")
    if head == "osc" and name.startswith("osc."):
        address = name[4:]
        if not address.startswith("/") or len(address) < 2 or re.search(r"[\s#]", address):
            fail_value(node, path, "an OSC name is osc. followed by an address such as /composition/master "
                       "(starting with /, no spaces)")
        return
    if head == "midi" and len(parts) >= 2:
        family = parts[1]
        if family not in _MIDI:
            fail_value(node, path, f"unknown MIDI message kind {family!r}{suggest(family, _MIDI)} "
                       f"(known: {', '.join(_MIDI)})")
        fields = _MIDI[family][0]
        numbers = parts[2:]
        pattern = "midi." + family + "".join(f".<{f}>" for f in fields)
        if len(numbers) != len(fields):
            fail_value(node, path, f"expected {pattern}")
        for number, field_name in zip(numbers, fields, strict=True):
            if not re.fullmatch(r"[0-9]{1,6}", number):
                fail_value(node, path, f"{number!r} is not a number (expected {pattern})")
            lo, hi, what = _LIMITS[field_name]
            if not lo <= int(number) <= hi:
                fail_value(node, path, f"{int(number)} is not {what} ({lo}-{hi})")
        return
    fail_value(node, path, f"unknown signal{suggest(name, _WELL_KNOWN)} (names: {GRAMMAR})")


#: Profile-side bounds tighter than Scope's schema. ``base_seed``: Scope declares only ``ge=0`` and hands
#: ``base_seed + frame index`` to ``torch.Generator.manual_seed`` (a 64-bit integer; releases before the
#: ``% 2**63`` fix fail every chunk above it), so a 400-digit seed fails every chunk; 0-2**31-1 is what the
#: bundled emulator and common UIs use and leaves the frame index all the room it needs.
PARAMETER_BOUNDS: dict[str, tuple[int, int]] = {"base_seed": (0, 2**31 - 1)}
#: Largest integer anywhere in a free-form parameter value: what JSON numbers (doubles) carry exactly.
LARGEST_INTEGER = 2**53


def parameter_value(node: YNode, path: str, name: str) -> Any:
    """A lasting parameter value, checked against Scope's ranges (and PARAMETER_BOUNDS)."""
    value = node.value
    if name in PARAMETER_BOUNDS and isinstance(value, (int, float)) and not isinstance(value, bool):
        lo, hi = PARAMETER_BOUNDS[name]
        if not lo <= value <= hi:
            fail(node, path, f"out of range (allowed: {lo}-{hi}; Scope seeds its noise with it)", value)
    _check_numbers(node, path, set())
    try:
        return _SCHEMA.check(name, node.plain())
    except ParameterError as exc:
        message = str(exc)
        message = message[len(name) + 2 :] if message.startswith(name + ": ") else message
        fail(node, path, message)
    except (OverflowError, ValueError, TypeError) as exc:
        fail(node, path, f"not a value Scope can take ({exc})")


def _check_numbers(node: YNode, path: str, seen: set[int]) -> None:
    """Every number inside the value is finite and fits a JSON number; aliased parts are walked once."""
    if id(node) in seen:
        return
    seen.add(id(node))
    value = node.value
    if isinstance(value, dict):
        for key, item in value.items():
            _check_numbers(item, f"{path}.{key}", seen)
    elif isinstance(value, list):
        for i, item in enumerate(value):
            _check_numbers(item, f"{path}[{i}]", seen)
    elif node.written is not None and isinstance(value, (int, float)) and not isinstance(value, bool):
        misread_number(node, path)  # a seed written 0755 is not silently 493
    elif isinstance(value, float) and not math.isfinite(value):
        fail(node, path, "must be a finite number (not infinite or NaN)", value)
    elif isinstance(value, int) and not isinstance(value, bool) and abs(value) > LARGEST_INTEGER:
        fail(node, path, f"too large (no parameter takes a number beyond ±2**53 = {LARGEST_INTEGER})", value)


def parameters(node: YNode, path: str) -> dict[str, object]:
    """A ``{parameter: value}`` mapping of lasting runtime parameters."""
    if not node.is_map:
        fail_value(node, path, "expected a mapping of Scope parameters, e.g. {noise_scale: 0.6}")
    out: dict[str, object] = {}
    for key, value in node.value.items():
        key_node = node.keys[key]
        key_path = f"{path}.{key}"
        if key not in LASTING_PARAMETERS:
            fail(key_node, key_path, f"not a runtime Scope parameter{suggest(key, LASTING_PARAMETERS)} "
                 f"(allowed: {', '.join(LASTING_PARAMETERS)})")
        out[key] = parameter_value(value, key_path, key)
    return out


__all__ = [
    "ACTIONS",
    "LASTING_PARAMETERS",
    "PROMPT_OPS",
    "TARGET_PARAMETERS",
    "THEME_OPS",
    "kinds_of",
    "parameter_value",
    "parameters",
    "signal_name",
]
