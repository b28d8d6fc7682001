"""``load_profile``: a YAML show profile file (and the files it extends) to a checked :class:`ShowProfile`.

Loading happens in three steps: every file is parsed into position-carrying nodes (:mod:`yamlnodes`), the
``extends`` chain is merged at node level (so an error in a base still names the base file's line), and the
merged tree is checked and turned into the model's dataclasses, one section at a time.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from metadj_bridge.profile import fields as f
from metadj_bridge.profile import mappings as mapping_section
from metadj_bridge.profile import sections, themes
from metadj_bridge.profile import video as video_section
from metadj_bridge.profile.errors import ProfileError
from metadj_bridge.profile.model import ShowProfile
from metadj_bridge.profile.yamlnodes import YNode, decode_text, parse

log = logging.getLogger(__name__)

TOP_KEYS = ("name", "extends", "scope", "inputs", "video", "themes", "start_theme", "transitions", "cycle", "pulse",
            "panic", "mappings", "switches")
#: Sections merged by entry name (a child entry replaces the base's), and sections that append.
BY_NAME = ("themes", "mappings")
APPENDED = ("switches",)
#: Never inherited: a profile's name is its own (the file name when it has none).
OWN = ("name", "extends")
MAX_FILE_BYTES = 4 * 1024 * 1024


def load_profile(path: str | os.PathLike[str]) -> ShowProfile:
    """Load, merge and check a profile; any problem is one :class:`ProfileError` naming ``file:line:col``."""
    display = os.fspath(path)
    tree, bases = _load_tree(display, ())
    profile = _build(tree, display, bases)
    log.debug("loaded profile %s: %d themes, %d mappings", display, len(profile.themes), len(profile.mappings))
    return profile


def read_node(display: str) -> YNode:
    """One file parsed (no extends), its top checked to be a mapping of known sections."""
    try:
        with open(display, "rb") as fh:
            data = fh.read(MAX_FILE_BYTES + 1)
    except FileNotFoundError:
        raise ProfileError(f"{display}: no such file", file=display) from None
    except IsADirectoryError:
        raise ProfileError(f"{display}: is a folder, not a profile file", file=display) from None
    except OSError as exc:
        raise ProfileError(f"{display}: cannot read: {exc.strerror or exc}", file=display) from None
    if len(data) > MAX_FILE_BYTES:
        raise ProfileError(f"{display}: larger than {MAX_FILE_BYTES // 1024 // 1024} MB; not a profile", file=display)
    node = parse(decode_text(data, display), display)
    if not node.is_map:
        f.fail(node, "", f"the top of a profile must be a mapping of sections ({', '.join(TOP_KEYS)}), "
               f"got {f.type_name(node.value)}")
    f.mapping(node, "", TOP_KEYS)
    return node


def _load_tree(display: str, stack: tuple[str, ...]) -> tuple[YNode, list[str]]:
    """The file's nodes with every base merged under them, and the absolute paths of all bases, base first."""
    node = read_node(display)
    chain = (*stack, display)
    merged: YNode | None = None
    bases: list[str] = []
    extends = node.value.get("extends")
    if extends is not None and extends.value is not None:
        items = f.sequence(extends, "extends", single=True, what="a file name or a list of them")
        for i, item in enumerate(items):
            item_path = f"extends[{i}]" if extends.is_list else "extends"
            base_display = _base_path(item, item_path, display)
            absolute = os.path.abspath(base_display)
            if absolute in (os.path.abspath(p) for p in chain):
                start = [os.path.abspath(p) for p in chain].index(absolute)
                cycle = " -> ".join(os.path.basename(p) for p in (*chain[start:], base_display))
                f.fail(item, item_path, f"circular extends: {cycle}")
            base_tree, base_bases = _load_tree(base_display, chain)
            merged = base_tree if merged is None else merge(merged, base_tree)
            for p in (*base_bases, absolute):
                if p not in bases:
                    bases.append(p)
    return (node if merged is None else merge(merged, node)), bases


def _base_path(item: YNode, path: str, display: str) -> str:
    name = f.text(item, path)
    base = os.path.normpath(os.path.join(os.path.dirname(display), os.path.expanduser(name)))
    if not os.path.isfile(base):
        f.fail(item, path, f"{name}: no such file ({os.path.abspath(base)})")
    return base


def merge(base: YNode, child: YNode) -> YNode:
    """The child's top-level sections over the base's: sections merge by key, themes and mappings by name
    (a child entry replaces the base's in place), switches append; name and extends are never inherited."""
    out = YNode({}, child.file, child.line, child.column)
    for key, value in base.value.items():
        if key not in OWN:
            out.value[key] = value
            out.keys[key] = base.keys[key]
    for key, value in child.value.items():
        old = out.value.get(key)
        if old is not None and old.is_map and value.is_map and (key in BY_NAME or key not in OWN):
            value = _merge_map(old, value, deep=key not in BY_NAME, section=key)
        elif old is not None and old.is_list and value.is_list and key in APPENDED:
            value = YNode([*old.value, *value.value], value.file, value.line, value.column)
        out.value[key] = value
        out.keys[key] = child.keys[key]
    return out


def _merge_map(base: YNode, child: YNode, *, deep: bool, section: str) -> YNode:
    out = YNode({}, child.file, child.line, child.column)
    dropped: set[str] = set()
    if section == "scope" and ({"aspect", "resolution"} & set(child.value)):
        dropped = {"aspect", "resolution"}  # the child picks the size; the base's other choice must not clash
    for key, value in base.value.items():
        if key not in dropped:
            out.value[key] = value
            out.keys[key] = base.keys[key]
    for key, value in child.value.items():
        old = out.value.get(key)
        if deep and old is not None and old.is_map and value.is_map:
            value = _merge_map(old, value, deep=True, section=f"{section}.{key}")
        out.value[key] = value
        out.keys[key] = child.keys[key]
    return out


def _build(tree: YNode, display: str, bases: list[str]) -> ShowProfile:
    m: dict[str, YNode] = tree.value
    name = Path(display).stem
    if "name" in m and m["name"].value is not None:
        name = f.text(m["name"], "name")
    theme_list = themes.themes(m.get("themes"))
    if not theme_list:
        f.fail(m.get("themes", tree), "themes", "a profile needs at least one theme (a file meant only as a base "
               "for extends: cannot run on its own)")
    names = tuple(t.name for t in theme_list)
    start = themes.theme_name(m["start_theme"], "start_theme", names) if "start_theme" in m else None
    facts = mapping_section.ThemeFacts(names, max(len(t.prompts) for t in theme_list))
    return ShowProfile(
        path=os.path.abspath(display),
        name=name,
        scope=sections.scope_settings(m.get("scope")),
        inputs=sections.input_settings(m.get("inputs")),
        video=video_section.video_settings(m.get("video")),
        themes=theme_list,
        start_theme=start,
        transitions=themes.transitions(m.get("transitions")),
        cycle=themes.cycle(m.get("cycle"), names),
        pulse=themes.pulse(m.get("pulse")),
        panic=themes.panic(m.get("panic")),
        mappings=mapping_section.mappings(m.get("mappings"), facts),
        switches=mapping_section.switches(m.get("switches")),
        extends=tuple(bases),
        where=tree.where,
    )
