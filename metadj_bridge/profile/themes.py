"""The ``themes:``, ``start_theme``, ``transitions:``, ``cycle:``, ``pulse:``, ``accent:`` and ``panic:`` sections."""

from __future__ import annotations

from metadj_bridge.profile import fields as f
from metadj_bridge.profile.errors import Findings
from metadj_bridge.profile.model import (
    AccentSettings,
    CycleSettings,
    PanicSettings,
    PromptSpec,
    PulseSettings,
    Theme,
    TransitionSettings,
)
from metadj_bridge.profile.names import parameters
from metadj_bridge.profile.yamlnodes import YNode

THEME_KEYS = ("prompts", "blend", "parameters", "pad", "intense")
#: Longest prompt text. Scope's text encoder (UMT5 for the Wan pipelines) reads at most 512 tokens and cuts the
#: rest; a token is about four characters of English, so 2,000 characters is about all it can ever read (a
#: generous bound: a real prompt is a sentence or two). Longer texts only cost memory and log space.
MAX_PROMPT_CHARS = 2000
#: A theme cycle's length in bars (``cycle.every_bars``, ``cycle.prompt_every_bars``, ``run --cycle``).
MAX_CYCLE_BARS = 10_000


def themes(node: YNode | None, findings: Findings | None = None) -> tuple[Theme, ...]:
    """The themes in order; with ``findings`` that keep going, a theme with a mistake is left out."""
    if node is None or node.value is None:
        return ()
    if not node.is_map:
        f.fail_value(node, "themes", "expected a mapping of theme name -> {prompts, intense, blend, parameters, pad}")
    findings = findings or Findings()
    built = (findings.attempt(_theme, name, value, node.keys[name], default=None) for name, value in node.value.items())
    return tuple(theme for theme in built if theme is not None)


def _theme(name: str, node: YNode, key: YNode) -> Theme:
    path = f"themes.{name}"
    if not name.strip():
        f.fail(key, path, "a theme needs a name")
    m = f.mapping(node, path, THEME_KEYS)
    if "prompts" not in m:
        f.fail(key, path, "a theme needs prompts: (one or more texts)")
    prompts_path = f"{path}.prompts"
    if m["prompts"].value is None:
        f.fail(m["prompts"], prompts_path, "a theme needs at least one prompt")
    prompt_nodes = f.sequence(m["prompts"], prompts_path, single=True, what="a list of prompts")
    if not prompt_nodes:
        f.fail(m["prompts"], prompts_path, "a theme needs at least one prompt")
    prompts = tuple(_prompt(item, f"{prompts_path}[{i}]") for i, item in enumerate(prompt_nodes))
    kw: dict[str, object] = {"name": name, "prompts": prompts, "where": key.where}
    if "blend" in m:
        kw["blend"] = f.boolean(m["blend"], f"{path}.blend")
    if "parameters" in m:
        kw["parameters"] = parameters(m["parameters"], f"{path}.parameters")
    if "pad" in m and m["pad"].value is not None:
        kw["pad"] = _pad(m["pad"], f"{path}.pad")
    if "intense" in m and m["intense"].value is not None:
        kw["intense"] = _prompt_text(m["intense"], f"{path}.intense")
    return Theme(**kw)  # type: ignore[arg-type]


def _prompt(node: YNode, path: str) -> PromptSpec:
    if not node.is_map:
        return PromptSpec(text=_prompt_text(node, path), where=node.where)
    m = f.mapping(node, path, ("text", "weight", "intense"), "a prompt text or {text, weight, intense}")
    if "text" not in m:
        f.fail(node, path, "missing text: (the prompt)")
    text = _prompt_text(m["text"], f"{path}.text")
    weight = f.number(m["weight"], f"{path}.weight", 0, 100) if "weight" in m else 1.0
    intense = None
    if "intense" in m and m["intense"].value is not None:
        intense = _prompt_text(m["intense"], f"{path}.intense")
    return PromptSpec(text=text, weight=weight, intense=intense, where=node.where)


def _prompt_text(node: YNode, path: str) -> str:
    text = f.text(node, path)
    if len(text) > MAX_PROMPT_CHARS:
        f.fail(node, path, f"a prompt of {len(text)} characters; Scope reads about the first {MAX_PROMPT_CHARS} "
               "(512 tokens) and cuts the rest, so keep it shorter")
    return text


def _pad(node: YNode, path: str) -> tuple[str, int, int]:
    m = f.mapping(node, path, ("note", "cc", "channel"), "{note: N} or {cc: N}, with channel: (default 1)")
    channel = f.integer(m["channel"], f"{path}.channel", 1, 16, what="a MIDI channel") if "channel" in m else 1
    if ("note" in m) == ("cc" in m):
        f.fail(node, path, "give exactly one of note: or cc:")
    if "note" in m:
        return ("note", channel, f.integer(m["note"], f"{path}.note", 0, 127, what="a MIDI note number"))
    return ("cc", channel, f.integer(m["cc"], f"{path}.cc", 0, 127, what="a MIDI CC number"))


def theme_name(node: YNode, path: str, names: tuple[str, ...]) -> str:
    if not isinstance(node.value, (str, int)) or isinstance(node.value, bool):
        f.fail_value(node, path, "expected a theme name")
    name = str(node.value)
    if name not in names:
        known = ", ".join(names) if names else "none defined"
        f.fail_value(node, path, f"no such theme{f.suggest(name, names)} (themes: {known})")
    return name


def transitions(node: YNode | None) -> TransitionSettings:
    if node is None:
        return TransitionSettings()
    m = f.mapping(node, "transitions", ("theme_steps", "prompt_steps", "method"))
    kw: dict[str, object] = {"where": node.where}
    for key in ("theme_steps", "prompt_steps"):
        if key in m:
            kw[key] = f.integer(m[key], f"transitions.{key}", 0, 1000)
    if "method" in m:
        kw["method"] = f.choice(m["method"], "transitions.method", ("linear", "slerp"))
    return TransitionSettings(**kw)  # type: ignore[arg-type]


def cycle(node: YNode | None, names: tuple[str, ...]) -> CycleSettings | None:
    if node is None or node.value is None:
        return None
    m = f.mapping(node, "cycle", ("every_bars", "order", "themes", "prompt_every_bars"))
    kw: dict[str, object] = {"where": node.where}
    if "every_bars" in m:
        kw["every_bars"] = f.integer(m["every_bars"], "cycle.every_bars", 1, MAX_CYCLE_BARS)
    if "order" in m:
        kw["order"] = f.choice(m["order"], "cycle.order", ("sequence", "random"))
    if "prompt_every_bars" in m and m["prompt_every_bars"].value is not None:
        kw["prompt_every_bars"] = f.integer(m["prompt_every_bars"], "cycle.prompt_every_bars", 1, MAX_CYCLE_BARS)
    if "themes" in m and m["themes"].value is not None:
        chosen: list[str] = []
        for i, item in enumerate(f.sequence(m["themes"], "cycle.themes", single=True, what="a list of theme names")):
            name = theme_name(item, f"cycle.themes[{i}]", names)
            if name in chosen:
                f.fail_value(item, f"cycle.themes[{i}]", "listed twice")
            chosen.append(name)
        kw["themes"] = tuple(chosen)
    return CycleSettings(**kw)  # type: ignore[arg-type]


def pulse(node: YNode | None) -> PulseSettings:
    return PulseSettings(**_jump(node, "pulse"))  # type: ignore[arg-type]


def accent(node: YNode | None) -> AccentSettings:
    return AccentSettings(**_jump(node, "accent"))  # type: ignore[arg-type]


def _jump(node: YNode | None, section: str) -> dict[str, object]:
    """The ``{amount, decay}`` of a section that jumps up and decays back (``pulse``, ``accent``)."""
    if node is None:
        return {}
    m = f.mapping(node, section, ("amount", "decay"))
    kw: dict[str, object] = {"where": node.where}
    if "amount" in m:
        kw["amount"] = f.number(m["amount"], f"{section}.amount", 0, 1)
    if "decay" in m:
        kw["decay"] = f.number(m["decay"], f"{section}.decay", 0, 60, lo_open=True)
    return kw


def panic(node: YNode | None) -> PanicSettings:
    if node is None:
        return PanicSettings()
    m = f.mapping(node, "panic", ("parameters",))
    if "parameters" not in m:
        return PanicSettings(where=node.where)
    return PanicSettings(parameters=parameters(m["parameters"], "panic.parameters"), where=node.where)
