"""The ``mappings:`` and ``switches:`` sections: sources, transforms and targets.

A mapping's value is a *signal* (continuous) or a *trigger* (an event). ``threshold`` turns a signal into a
trigger and ``quantize`` holds a trigger to the beat; every other transform shapes a signal. Targets take one
or the other: parameters, ``prompt.mix``/``weight`` and ``*.select`` take a signal, everything else a trigger.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

from metadj_bridge.profile import fields as f
from metadj_bridge.profile.errors import Findings
from metadj_bridge.profile.model import (
    ACTIONS,
    PROMPT_OPS,
    THEME_OPS,
    Clamp,
    Curve,
    Deadzone,
    Envelope,
    Invert,
    Lfo,
    Mapping,
    ProfileSwitch,
    Quantize,
    Range,
    Scale,
    SignalSource,
    Smooth,
    Source,
    Steps,
    Target,
    Threshold,
    Transform,
    TriggerSource,
)
from metadj_bridge.profile.names import TARGET_PARAMETERS, signal_name
from metadj_bridge.profile.scenes import scene_name_problem
from metadj_bridge.profile.themes import theme_name
from metadj_bridge.profile.yamlnodes import YNode

MAPPING_KEYS = ("source", "trigger", "lfo", "envelope", "default", "transforms", "target", "combine", "enabled",
                "morph_bars")
#: The longest scene morph (``morph_bars``), in bars.
MAX_MORPH_BARS = 64
SOURCE_KEYS = ("source", "trigger", "lfo", "envelope")
TRANSFORMS = ("range", "curve", "smooth", "deadzone", "invert", "clamp", "steps", "scale", "threshold", "quantize")
LFO_SHAPES = ("sine", "triangle", "saw", "square", "random")
CURVES = ("linear", "exponential", "logarithmic", "s")
SIGNAL_OPS = ("select",)
#: Target kinds that take a continuous value.
SIGNAL_KINDS = ("parameter", "prompt_mix", "prompt_weight", "prompt_intensity")
TARGET_EXAMPLES = (
    *TARGET_PARAMETERS,
    "prompt.mix", "prompt.weight.0", "prompt.intensity",
    *(f"prompt.{op}" for op in PROMPT_OPS),
    *(f"theme.{op}" for op in THEME_OPS if op != "set"), "theme.set:<name>",
    *(f"action.{a}" for a in ACTIONS),
    "profile:<file>", "scene.save:<name>", "scene.recall:<name>",
)


@dataclass(frozen=True)
class ThemeFacts:
    """What targets are checked against: theme names and the largest prompt bank."""

    names: tuple[str, ...]
    max_prompts: int
    #: Whether some theme has an intense variant (for ``prompt.intensity``); True when the themes are unknown.
    intense: bool = True


def mappings(node: YNode | None, facts: ThemeFacts, findings: Findings | None = None) -> tuple[Mapping, ...]:
    """The mappings in order; with ``findings`` that keep going, a mapping with a mistake is left out."""
    if node is None or node.value is None:
        return ()
    if not node.is_map:
        f.fail_value(node, "mappings", "expected a mapping of mapping name -> {source, transforms, target}")
    findings = findings or Findings()
    built = (findings.attempt(_mapping, name, value, node.keys[name], facts, default=None)
             for name, value in node.value.items())
    return tuple(mapping for mapping in built if mapping is not None)


def _mapping(name: str, node: YNode, key: YNode, facts: ThemeFacts) -> Mapping:
    path = f"mappings.{name}"
    m = f.mapping(node, path, MAPPING_KEYS)
    given = [k for k in SOURCE_KEYS if k in m]
    if len(given) != 1:
        what = "none" if not given else " and ".join(given)
        f.fail(key, path, f"a mapping needs exactly one of source, trigger, lfo, envelope (got {what})")
    source, kind = _source(given[0], m[given[0]], f"{path}.{given[0]}", m.get("default"), path)
    transforms: list[Transform] = []
    if "transforms" in m and m["transforms"].value is not None:
        for i, item in enumerate(f.sequence(m["transforms"], f"{path}.transforms", what="a list of transforms")):
            transform, kind = _transform(item, f"{path}.transforms[{i}]", kind)
            transforms.append(transform)
    if "target" not in m:
        f.fail(key, path, "a mapping needs a target: (a Scope parameter, prompt.*, theme.*, action.* or profile:)")
    target = _target(m["target"], f"{path}.target", facts, kind)
    kw: dict[str, object] = {"name": name, "source": source, "transforms": tuple(transforms), "target": target,
                             "where": key.where}
    if "combine" in m:
        kw["combine"] = f.choice(m["combine"], f"{path}.combine", ("max", "sum", "last"))
    if "enabled" in m:
        kw["enabled"] = f.boolean(m["enabled"], f"{path}.enabled")
    if "morph_bars" in m:
        if (target.kind, target.name) != ("scene", "recall"):
            f.fail(m["morph_bars"], f"{path}.morph_bars", "morph_bars: only applies to a scene.recall:<name> target")
        kw["morph_bars"] = f.number(m["morph_bars"], f"{path}.morph_bars", 0, MAX_MORPH_BARS)
    return Mapping(**kw)  # type: ignore[arg-type]


def _source(key: str, node: YNode, path: str, default: YNode | None, mapping_path: str) -> tuple[Source, str]:
    if default is not None and key != "source":
        f.fail(default, f"{mapping_path}.default", f"default: only applies to a source: signal, not to {key}:")
    if key == "source":
        value = f.number(default, f"{mapping_path}.default") if default is not None else None
        return SignalSource(signal_name(node, path, "signal"), default=value, where=node.where), "signal"
    if key == "trigger":
        return TriggerSource(signal_name(node, path, "trigger"), where=node.where), "trigger"
    if key == "lfo":
        m = f.mapping(node, path, ("shape", "period_beats", "phase"))
        kw: dict[str, object] = {"where": node.where}
        if "shape" in m:
            kw["shape"] = f.choice(m["shape"], f"{path}.shape", LFO_SHAPES)
        if "period_beats" in m:
            kw["period_beats"] = f.number(m["period_beats"], f"{path}.period_beats", 0, 4096, lo_open=True)
        if "phase" in m:
            kw["phase"] = f.number(m["phase"], f"{path}.phase", 0, 1)
        return Lfo(**kw), "signal"  # type: ignore[arg-type]
    m = f.mapping(node, path, ("trigger", "attack", "decay", "beats"))
    if "trigger" not in m:
        f.fail(node, path, "an envelope needs a trigger: (what starts it)")
    kw = {"trigger": signal_name(m["trigger"], f"{path}.trigger", "trigger"), "where": node.where}
    if "attack" in m:
        kw["attack"] = f.number(m["attack"], f"{path}.attack", 0, 3600)
    if "decay" in m:
        kw["decay"] = f.number(m["decay"], f"{path}.decay", 0, 3600, lo_open=True)
    if "beats" in m:
        kw["beats"] = f.boolean(m["beats"], f"{path}.beats")
    return Envelope(**kw), "signal"  # type: ignore[arg-type]


def _transform(node: YNode, path: str, kind: str) -> tuple[Transform, str]:
    if isinstance(node.value, str):
        name, arg = node.value, None
        key_node = node
    elif node.is_map and len(node.value) == 1:
        name, arg = next(iter(node.value.items()))
        key_node = node.keys[name]
    else:
        f.fail_value(node, path, f"each transform is one word or one key: value (transforms: {', '.join(TRANSFORMS)})")
    if name not in TRANSFORMS:
        f.fail(key_node, path,
               f"{name}: unknown transform{f.suggest(name, TRANSFORMS)} (allowed: {', '.join(TRANSFORMS)})")
    tpath = f"{path}.{name}"
    wants = "trigger" if name == "quantize" else "signal"
    if kind != wants:
        if wants == "trigger":
            f.fail(key_node, tpath, "quantize holds a trigger, but the value here is a signal; put a threshold first")
        f.fail(key_node, tpath, f"{name} shapes a signal, but the value here is a trigger")
    if arg is None or arg.value is None:
        return _defaults(name, key_node), ("trigger" if name == "threshold" else kind)
    return _with_argument(name, arg, tpath), ("trigger" if name == "threshold" else kind)


def _defaults(name: str, node: YNode) -> Transform:
    classes: dict[str, type] = {"range": Range, "curve": Curve, "smooth": Smooth, "deadzone": Deadzone,
                                "invert": Invert, "clamp": Clamp, "steps": Steps, "scale": Scale,
                                "threshold": Threshold, "quantize": Quantize}
    return classes[name](where=node.where)


def _with_argument(name: str, arg: YNode, path: str) -> Transform:
    where = arg.where
    if name == "invert":
        if arg.value is not True:
            f.fail_value(arg, path, "write invert as a bare word (or invert: true)")
        return Invert(where=where)
    if name == "range":
        m = f.mapping(arg, path, ("in", "out", "clamp"))
        in_lo, in_hi = f.pair(m["in"], f"{path}.in") if "in" in m else (0.0, 1.0)
        out_lo, out_hi = f.pair(m["out"], f"{path}.out") if "out" in m else (0.0, 1.0)
        if in_lo == in_hi:
            f.fail_value(m["in"], f"{path}.in", "the two ends of the input range must differ")
        clamp = f.boolean(m["clamp"], f"{path}.clamp") if "clamp" in m else True
        return Range(in_lo, in_hi, out_lo, out_hi, clamp, where=where)
    if name == "curve":
        if isinstance(arg.value, str):
            return Curve(shape=f.choice(arg, path, CURVES), where=where)  # type: ignore[arg-type]
        m = f.mapping(arg, path, ("shape", "amount"), f"a curve name ({', '.join(CURVES)}) or {{shape, amount}}")
        kw: dict[str, object] = {"where": where}
        if "shape" in m:
            kw["shape"] = f.choice(m["shape"], f"{path}.shape", CURVES)
        if "amount" in m:
            kw["amount"] = f.number(m["amount"], f"{path}.amount", 0, 100, lo_open=True)
        return Curve(**kw)  # type: ignore[arg-type]
    if name == "smooth":
        if not arg.is_map:
            tau = f.number(arg, path, 0, 3600, lo_open=True)
            return Smooth(tau, tau, where=where)
        m = f.mapping(arg, path, ("attack", "release"))
        attack = f.number(m["attack"], f"{path}.attack", 0, 3600) if "attack" in m else Smooth().attack
        release = f.number(m["release"], f"{path}.release", 0, 3600) if "release" in m else Smooth().release
        return Smooth(attack, release, where=where)
    if name == "deadzone":
        if not arg.is_map:
            return Deadzone(width=f.number(arg, path, 0, 1, hi_open=True), where=where)
        m = f.mapping(arg, path, ("width", "centre"))
        width = f.number(m["width"], f"{path}.width", 0, 1, hi_open=True) if "width" in m else Deadzone().width
        centre = f.number(m["centre"], f"{path}.centre", 0, 1) if "centre" in m else Deadzone().centre
        return Deadzone(width, centre, where=where)
    if name == "clamp":
        if arg.is_map:
            m = f.mapping(arg, path, ("lo", "hi"))
            lo = f.number(m["lo"], f"{path}.lo") if "lo" in m else 0.0
            hi = f.number(m["hi"], f"{path}.hi") if "hi" in m else 1.0
        else:
            lo, hi = f.pair(arg, path)
        if lo >= hi:
            f.fail_value(arg, path, f"the low end {lo:g} must be below the high end {hi:g}")
        return Clamp(lo, hi, where=where)
    if name == "steps":
        count_node = f.mapping(arg, path, ("count",)).get("count", arg) if arg.is_map else arg
        return Steps(f.integer(count_node, path, 2, 1000), where=where)
    if name == "scale":
        if not arg.is_map:
            return Scale(factor=f.number(arg, path), where=where)
        m = f.mapping(arg, path, ("factor", "offset"))
        factor = f.number(m["factor"], f"{path}.factor") if "factor" in m else 1.0
        offset = f.number(m["offset"], f"{path}.offset") if "offset" in m else 0.0
        return Scale(factor, offset, where=where)
    if name == "threshold":
        m = f.mapping(arg, path, ("on", "off"), "{on: N, off: M} with off below on")
        on = f.number(m["on"], f"{path}.on") if "on" in m else Threshold().on
        off = f.number(m["off"], f"{path}.off") if "off" in m else Threshold().off
        if off >= on:
            f.fail_value(arg, path, f"off ({off:g}) must be below on ({on:g}), or the trigger never re-arms")
        return Threshold(on, off, where=where)
    # quantize
    if isinstance(arg.value, str):
        return Quantize(to=f.choice(arg, path, ("beat", "bar")), where=where)  # type: ignore[arg-type]
    m = f.mapping(arg, path, ("to", "lookahead_ms"), "beat, bar or {to, lookahead_ms}")
    to = f.choice(m["to"], f"{path}.to", ("beat", "bar")) if "to" in m else "beat"
    lookahead = _lookahead(m["lookahead_ms"], f"{path}.lookahead_ms") if "lookahead_ms" in m else None
    return Quantize(to, lookahead, where=where)  # type: ignore[arg-type]


def _lookahead(node: YNode, path: str) -> float | None:
    """``auto`` (None: the show measures its delay to the picture) or a fixed number of ms (0: none)."""
    if node.value == "auto":
        return None
    if isinstance(node.value, str):
        f.fail_value(node, path, "expected auto (the bridge measures its delay to the picture) or a number of ms "
                     "from 0 to 10000")
    return f.number(node, path, 0, 10_000)


def _target(node: YNode, path: str, facts: ThemeFacts, kind: str) -> Target:
    text = f.text(node, path)
    target = _parse_target(node, path, text, facts)
    takes_signal = target.kind in SIGNAL_KINDS or target.name in SIGNAL_OPS
    wants = "signal" if takes_signal else "trigger"
    if wants != kind:
        if wants == "trigger":
            f.fail_value(node, path, "this target fires on a trigger, but the value here is a signal; "
                         "add a threshold transform (or use trigger:)")
        f.fail_value(node, path, "this target takes a continuous value, but the value here is a trigger; "
                     "use an envelope: source to turn the trigger into a shape")
    return target


def _parse_target(node: YNode, path: str, text: str, facts: ThemeFacts) -> Target:
    where = node.where
    if text.startswith("profile:"):
        return Target("profile", argument=(existing_file(node, path, text[8:].strip()),), where=where)
    if text.startswith("scene."):
        op, sep, name = text[6:].partition(":")
        if op not in ("save", "recall") or not sep:
            f.fail_value(node, path, "write scene.save:<name> or scene.recall:<name>, e.g. scene.recall:drop")
        problem = scene_name_problem(name.strip())
        if problem is not None:
            f.fail(node, path, problem)
        return Target("scene", op, (name.strip(),), where=where)
    if text.startswith("theme.set"):
        _, sep, name = text.partition(":")
        if not sep or not name.strip():
            f.fail_value(node, path, "write theme.set:<name>, e.g. theme.set:neon")
        checked = theme_name(YNode(name.strip(), node.file, node.line, node.column), path, facts.names)
        return Target("theme", "set", (checked,), where=where)
    parts = text.split(".")
    if parts[0] == "prompt" and len(parts) >= 2 and parts[1] == "mix":
        indices = _indices(node, path, parts[2:], "prompt.mix.A.B", 2) if len(parts) > 2 else (0, 1)
        if indices[0] == indices[1]:
            f.fail_value(node, path, "prompt.mix needs two different prompts")
        _check_prompt_index(node, path, max(indices), facts)
        return Target("prompt_mix", "mix", indices, where=where)
    if text == "prompt.intensity":
        if not facts.intense:
            f.fail_value(node, path, "no theme has an intense variant: give a theme `intense: <text>` (or a prompt "
                         "`{text, intense}`), the same scene at full energy")
        return Target("prompt_intensity", "intensity", where=where)
    if parts[0] == "prompt" and len(parts) >= 2 and parts[1] == "weight":
        (index,) = _indices(node, path, parts[2:], "prompt.weight.N", 1)
        _check_prompt_index(node, path, index, facts)
        return Target("prompt_weight", "weight", (index,), where=where)
    if parts[0] in ("prompt", "theme", "action") and len(parts) == 2:
        ops = {"prompt": PROMPT_OPS, "theme": tuple(o for o in THEME_OPS if o != "set"), "action": ACTIONS}[parts[0]]
        if parts[1] in ops:
            return Target(parts[0], parts[1], where=where)  # type: ignore[arg-type]
        kind = "action" if parts[0] == "action" else f"{parts[0]} operation"
        f.fail_value(node, path, f"unknown {kind}{f.suggest(parts[1], ops)} (allowed: {', '.join(ops)})")
    if text in TARGET_PARAMETERS:
        return Target("parameter", text, where=where)
    f.fail_value(node, path, f"unknown target{f.suggest(text, TARGET_EXAMPLES)} (targets: a Scope parameter such as "
                 "noise_scale, prompt.mix, prompt.weight.N, prompt.intensity, prompt.next, theme.next, "
                 "theme.set:<name>, action.<name>, profile:<file>, scene.recall:<name>)")


def _indices(node: YNode, path: str, parts: list[str], pattern: str, count: int) -> tuple[int, ...]:
    if len(parts) != count or not all(re.fullmatch(r"[0-9]{1,4}", p) for p in parts):
        f.fail_value(node, path, f"expected {pattern} with prompt positions counted from 0")
    return tuple(int(p) for p in parts)


def _check_prompt_index(node: YNode, path: str, index: int, facts: ThemeFacts) -> None:
    if index >= facts.max_prompts:
        f.fail_value(node, path, f"prompt {index} (counted from 0) does not exist: the largest theme has "
                     f"{facts.max_prompts} prompt(s)")


PROFILE_SUFFIXES = (".yaml", ".yml")


def existing_file(node: YNode, path: str, name: str) -> str:
    """``name`` relative to the folder of the file it was written in, as an absolute path to an existing regular
    ``.yaml``/``.yml`` file: a profile switch to a folder, a FIFO or a device would fail (or block) mid-show."""
    if not name:
        f.fail_value(node, path, "expected a file name")
    full = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(node.file)), os.path.expanduser(name)))
    if os.path.splitext(full)[1].lower() not in PROFILE_SUFFIXES:
        f.fail(node, path, f"{name}: not a profile file (a profile ends in .yaml or .yml)")
    if not os.path.lexists(full):
        f.fail(node, path, f"{name}: no such file ({full})")
    if not os.path.isfile(full):
        f.fail(node, path, f"{name}: not a regular file ({full}); a profile switch needs a .yaml file")
    return full


def switches(node: YNode | None, findings: Findings | None = None) -> tuple[ProfileSwitch, ...]:
    """The profile switches in order; with ``findings`` that keep going, a switch with a mistake is left out."""
    if node is None or node.value is None:
        return ()
    findings = findings or Findings()
    items = f.sequence(node, "switches", what="a list of {trigger, program, profile}")
    built = (findings.attempt(_switch, item, f"switches[{i}]", default=None) for i, item in enumerate(items))
    return tuple(switch for switch in built if switch is not None)


def _switch(item: YNode, path: str) -> ProfileSwitch:
    m = f.mapping(item, path, ("trigger", "program", "profile"))
    for needed in ("trigger", "profile"):
        if needed not in m:
            f.fail(item, path, f"a switch needs {needed}:")
    trigger = signal_name(m["trigger"], f"{path}.trigger", "trigger")
    program = None
    if "program" in m and m["program"].value is not None:
        if not trigger.startswith("midi.program."):
            f.fail(m["program"], f"{path}.program",
                   f"program: only applies to a midi.program.<ch> trigger, not {trigger}")
        program = f.integer(m["program"], f"{path}.program", 0, 127, what="a MIDI program number")
    target = existing_file(m["profile"], f"{path}.profile", f.text(m["profile"], f"{path}.profile"))
    return ProfileSwitch(trigger=trigger, path=target, program=program, where=item.where)
