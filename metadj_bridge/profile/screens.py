"""The ``screens:`` section: more screens driven by the same show, each on its own Scope server.

    screens:
      left:
        scope: {url: http://gpu-2:8000, pipeline: longlive, resolution: [1024, 576]}
        video: {outputs: [ndi:Left]}
        prompts:
          ocean: [deep sea creatures glowing]
      right:
        scope: {url: http://gpu-3:8000}
        video: {outputs: [record:right.mp4]}

The profile's own ``scope:`` and ``video:`` are the main screen. A screen's ``scope:`` takes the same keys and
inherits what it leaves out from the main ``scope:``, except the URL: two sessions cannot share one Scope server
(it runs one pipeline at a time), so a screen without a URL gets a built-in emulator of its own; nor avatar
mode, which is the main screen's (it owns the camera). Its ``video:``
takes the same keys and inherits nothing: with no outputs its picture is in the web page only. ``prompts``
rewords themes for this screen (theme name -> its prompts there); themes it leaves out send their own prompts.
"""

from __future__ import annotations

import dataclasses

from metadj_bridge.profile import fields as f
from metadj_bridge.profile.errors import Findings
from metadj_bridge.profile.model import PromptSpec, ScopeSettings, ScreenSettings, VideoSettings
from metadj_bridge.profile.scenes import SCENE_NAME
from metadj_bridge.profile.sections import scope_settings
from metadj_bridge.profile.themes import MAX_PROMPT_CHARS
from metadj_bridge.profile.video import video_settings
from metadj_bridge.profile.yamlnodes import YNode

__all__ = ["MAIN_SCREEN", "MAX_SCREENS", "SCREEN_KEYS", "screens"]

SCREEN_KEYS = ("scope", "video", "prompts")
#: The name of the screen the profile's own ``scope:`` and ``video:`` describe.
MAIN_SCREEN = "main"
#: More screens than this is more GPUs than one performer rents; the limit keeps a typo from opening hundreds.
MAX_SCREENS = 8
#: A theme's prompts on one screen: as many as a theme may have.
MAX_SCREEN_PROMPTS = 16


def screens(node: YNode | None, scope: YNode | None, theme_names: tuple[str, ...],
            findings: Findings | None = None) -> tuple[ScreenSettings, ...]:
    """The extra screens in order. ``scope`` is the main ``scope:`` node they inherit from; with ``findings`` that
    keep going, a screen with a mistake is left out."""
    if node is None or node.value is None:
        return ()
    if not node.is_map:
        f.fail_value(node, "screens", "expected a mapping of screen name -> {scope, video, prompts}")
    if len(node.value) > MAX_SCREENS - 1:
        f.fail(node, "screens", f"{len(node.value)} more screens; a show drives at most {MAX_SCREENS} in all")
    findings = findings or Findings()
    built = (findings.attempt(_screen, name, value, node.keys[name], scope, theme_names, default=None)
             for name, value in node.value.items())
    return tuple(screen for screen in built if screen is not None)


def _screen(name: str, node: YNode, key: YNode, main_scope: YNode | None,
            theme_names: tuple[str, ...]) -> ScreenSettings:
    path = f"screens.{name}"
    if not isinstance(name, str) or not SCENE_NAME.fullmatch(name):
        f.fail(key, path, f"{f.show(name)} is not a screen name: use 1-64 letters, digits, _ - . and inner spaces")
    if name == MAIN_SCREEN:
        f.fail(key, path, f"{MAIN_SCREEN!r} is the profile's own scope: and video:; give this screen another name")
    m = f.mapping(node, path, SCREEN_KEYS) if node.value is not None else {}
    scope_node = _inherit(main_scope, m.get("scope"))
    scope = scope_settings(scope_node, None, f"{path}.scope")
    if scope.input_mode != "text":
        f.fail(m["scope"].value["input_mode"], f"{path}.scope.input_mode",
               "a screen beyond the main one plays in text mode (avatar mode needs the camera, which the main "
               "screen has)")
    if m.get("scope") is None or m["scope"].value is None or "url" not in m["scope"].value:
        scope = _without_url(scope)
    kw: dict[str, object] = {"name": name, "where": key.where, "scope": scope}
    video = video_settings(m["video"], f"{path}.video") if "video" in m else VideoSettings(outputs=())
    if "video" in m and m["video"].is_map and "outputs" not in m["video"].value:
        video = _with_outputs(video, ())  # no outputs said: the web page's picture only, not a second vcam
    kw["video"] = video
    if "prompts" in m and m["prompts"].value is not None:
        kw["prompts"] = _prompt_bank(m["prompts"], f"{path}.prompts", theme_names)
    return ScreenSettings(**kw)  # type: ignore[arg-type]


def _inherit(main: YNode | None, own: YNode | None) -> YNode | None:
    """The screen's ``scope:`` over the main one's (key by key), the main URL left out."""
    if own is not None and own.value is not None and not own.is_map:
        return own  # scope_settings says what is wrong with it
    out = YNode({}, own.file if own is not None else (main.file if main is not None else ""),
                own.line if own is not None else 0, own.column if own is not None else 0)
    for source in (main, own):
        if source is None or not source.is_map:
            continue
        for k, value in source.value.items():
            if source is main and k in ("url", "input_mode"):
                continue
            if k in ("aspect", "resolution") and source is own:  # the screen picks its size one way only
                for size_key in ("aspect", "resolution"):
                    out.value.pop(size_key, None)
                    out.keys.pop(size_key, None)
            out.value[k] = value
            out.keys[k] = source.keys[k]
    return out


def _without_url(settings: ScopeSettings) -> ScopeSettings:
    return dataclasses.replace(settings, url=None)


def _with_outputs(settings: VideoSettings, outputs: tuple[str, ...]) -> VideoSettings:
    return dataclasses.replace(settings, outputs=outputs)


def _prompt_bank(node: YNode, path: str, theme_names: tuple[str, ...]) -> dict[str, tuple[PromptSpec, ...]]:
    if not node.is_map:
        f.fail_value(node, path, "expected a mapping of theme name -> its prompts on this screen")
    bank: dict[str, tuple[PromptSpec, ...]] = {}
    for theme, value in node.value.items():
        here = f"{path}.{theme}"
        if theme not in theme_names:
            f.fail(node.keys[theme], here, f"{f.show(theme)} is not a theme of this profile"
                   + f.suggest(str(theme), theme_names))
        items = f.sequence(value, here, single=True, what="a prompt or a list of prompts")
        if not items or len(items) > MAX_SCREEN_PROMPTS:
            f.fail(value, here, f"{len(items)} prompts; give 1 to {MAX_SCREEN_PROMPTS}")
        bank[theme] = tuple(_prompt(item, f"{here}[{i}]") for i, item in enumerate(items))
    return bank


def _prompt(node: YNode, path: str) -> PromptSpec:
    text = f.text(node, path)
    if len(text) > MAX_PROMPT_CHARS:
        f.fail(node, path, f"a prompt of {len(text)} characters; Scope reads about the first {MAX_PROMPT_CHARS}")
    return PromptSpec(text=text, where=node.where)
