"""The ``scenes:`` section: named lasting states saved from a running show (``ShowRunner.save_scene``) or by hand.

    scenes:
      drop:
        theme: neon
        prompts: [{text: neon city at night, weight: 0.7}, {text: rain on glass, weight: 0.3}]
        parameters: {noise_scale: 0.8}

A scene names a theme of the profile (after ``extends``), one or more prompts (a text, or ``{text, weight}``) and
optionally lasting Scope parameters, checked like a theme's ``parameters``. Scene names are short words a
performer types or sends over OSC (:data:`SCENE_NAME`).
"""

from __future__ import annotations

import re

from metadj_bridge.profile import fields as f
from metadj_bridge.profile.errors import Findings
from metadj_bridge.profile.model import PromptSpec, Scene
from metadj_bridge.profile.names import parameters
from metadj_bridge.profile.themes import MAX_PROMPT_CHARS, theme_name
from metadj_bridge.profile.yamlnodes import YNode

__all__ = ["SCENE_KEYS", "SCENE_NAME", "scene_entry", "scene_name_problem", "scenes"]

SCENE_KEYS = ("theme", "prompts", "parameters")
#: 1-64 letters, digits, ``_``, ``-``, ``.`` and inner spaces: safe as a YAML key, in a target
#: (``scene.recall:drop 2``), an OSC string and a URL's JSON body.
SCENE_NAME = re.compile(r"[\w.\-](?:[\w .\-]{0,62}[\w.\-])?")
#: A scene holds the prompts Scope was sent; far more than any theme sends at once.
MAX_SCENE_PROMPTS = 64
#: Scenes in one profile: far more than a set uses, few enough that a flood of saves cannot bloat the file.
MAX_SCENES = 256


def scene_name_problem(name: object) -> str | None:
    """Why ``name`` cannot be a scene name, or None when it can."""
    if isinstance(name, str) and SCENE_NAME.fullmatch(name):
        return None
    shown = f.show(name) if isinstance(name, str) and name else repr(name)
    return (f"{shown} is not a scene name: use 1-64 letters, digits, _ - . and inner spaces "
            "(e.g. drop, intro_2)")


def scenes(node: YNode | None, theme_names: tuple[str, ...], findings: Findings | None = None) -> tuple[Scene, ...]:
    """The scenes in order; with ``findings`` that keep going, a scene with a mistake is left out."""
    if node is None or node.value is None:
        return ()
    if not node.is_map:
        f.fail_value(node, "scenes", "expected a mapping of scene name -> {theme, prompts, parameters}")
    if len(node.value) > MAX_SCENES:
        f.fail(node, "scenes", f"{len(node.value)} scenes; a profile holds at most {MAX_SCENES}")
    findings = findings or Findings()
    built = (findings.attempt(_scene, name, value, node.keys[name], theme_names, default=None)
             for name, value in node.value.items())
    return tuple(scene for scene in built if scene is not None)


def _scene(name: str, node: YNode, key: YNode, theme_names: tuple[str, ...]) -> Scene:
    path = f"scenes.{name}"
    problem = scene_name_problem(name)
    if problem is not None:
        f.fail(key, path, problem)
    m = f.mapping(node, path, SCENE_KEYS)
    for needed, what in (("theme", "the theme it plays"), ("prompts", "the prompts and their weights")):
        if needed not in m:
            f.fail(key, path, f"a scene needs {needed}: ({what})")
    theme = theme_name(m["theme"], f"{path}.theme", theme_names)
    prompts_path = f"{path}.prompts"
    items = f.sequence(m["prompts"], prompts_path, single=True, what="a list of prompts") \
        if m["prompts"].value is not None else []
    if not items:
        f.fail(m["prompts"], prompts_path, "a scene needs at least one prompt")
    if len(items) > MAX_SCENE_PROMPTS:
        f.fail(m["prompts"], prompts_path, f"{len(items)} prompts; a scene holds at most {MAX_SCENE_PROMPTS}")
    prompts = tuple(_prompt(item, f"{prompts_path}[{i}]") for i, item in enumerate(items))
    if not any(p.weight > 0 for p in prompts):
        f.fail(m["prompts"], prompts_path, "every weight is 0: give at least one prompt a weight above 0")
    kw: dict[str, object] = {"name": name, "theme": theme, "prompts": prompts, "where": key.where}
    if "parameters" in m and m["parameters"].value is not None:
        kw["parameters"] = parameters(m["parameters"], f"{path}.parameters")
    return Scene(**kw)  # type: ignore[arg-type]


def _prompt(node: YNode, path: str) -> PromptSpec:
    m = {"text": node} if not node.is_map else f.mapping(node, path, ("text", "weight"), "a prompt text or "
                                                                                        "{text, weight}")
    if "text" not in m:
        f.fail(node, path, "missing text: (the prompt)")
    text_path = path if not node.is_map else f"{path}.text"
    text = f.text(m["text"], text_path)
    if len(text) > MAX_PROMPT_CHARS:
        f.fail(m["text"], text_path, f"a prompt of {len(text)} characters; Scope reads about the first "
               f"{MAX_PROMPT_CHARS}")
    weight = f.number(m["weight"], f"{path}.weight", 0, 100) if "weight" in m else 1.0
    return PromptSpec(text=text, weight=weight, where=node.where)


def scene_entry(scene: Scene) -> dict[str, object]:
    """The scene as the plain values the ``scenes:`` section holds (for the round-trip writer)."""
    entry: dict[str, object] = {
        "theme": scene.theme,
        "prompts": [{"text": p.text, "weight": p.weight} for p in scene.prompts],
    }
    if scene.parameters:
        entry["parameters"] = {k: list(v) if isinstance(v, tuple) else v for k, v in scene.parameters.items()}
    return entry
