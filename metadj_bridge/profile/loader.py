"""``load_profile``: a YAML show profile file (and the files it extends) to a checked :class:`ShowProfile`.

Loading happens in three steps: every file is parsed into position-carrying nodes (:mod:`yamlnodes`), the
``extends`` chain is merged at node level (so an error in a base still names the base file's line), and the
merged tree is checked and turned into the model's dataclasses, one section at a time.

Whatever the file holds, the only exception that comes out is :class:`ProfileError`: only regular files are
opened (a FIFO or a device would block or never end), at most MAX_FILE_BYTES are read, an ``extends`` chain
is at most MAX_EXTENDS_DEPTH files deep (and MAX_EXTENDS_FILES files in all), and anything unforeseen still
becomes a ProfileError naming the file. :func:`check_profile` goes on after a mistake and returns them all.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from metadj_bridge.errors import NotRegularFile, open_regular
from metadj_bridge.profile import fields as f
from metadj_bridge.profile import mappings as mapping_section
from metadj_bridge.profile import scenes as scene_section
from metadj_bridge.profile import screens as screen_section
from metadj_bridge.profile import sections, themes
from metadj_bridge.profile import video as video_section
from metadj_bridge.profile.errors import Findings, ProfileError
from metadj_bridge.profile.model import (
    AccentSettings,
    InputSettings,
    PanicSettings,
    PulseSettings,
    ScopeSettings,
    ShowProfile,
    TransitionSettings,
    VideoSettings,
)
from metadj_bridge.profile.yamlnodes import YNode, decode_text, parse

log = logging.getLogger(__name__)

TOP_KEYS = ("name", "extends", "scope", "inputs", "video", "themes", "start_theme", "transitions", "cycle", "pulse",
            "accent", "panic", "mappings", "switches", "scenes", "screens")
#: Sections merged by entry name (a child entry replaces the base's), and sections that append.
BY_NAME = ("themes", "mappings", "scenes", "screens")
APPENDED = ("switches",)
#: Never inherited: a profile's name is its own (the file name when it has none).
OWN = ("name", "extends")
#: A profile is a few kilobytes; the largest bundled one is far below this.
MAX_FILE_BYTES = 1024 * 1024
MAX_EXTENDS_DEPTH = 16
MAX_EXTENDS_FILES = 64


def load_profile(path: str | os.PathLike[str]) -> ShowProfile:
    """Load, merge and check a profile; any problem is one :class:`ProfileError` naming ``file:line:col``."""
    profile = _load(os.fspath(path), Findings())
    log.debug("loaded profile %s: %d themes, %d mappings", profile.path, len(profile.themes), len(profile.mappings))
    return profile


def check_profile(path: str | os.PathLike[str]) -> tuple[ShowProfile | None, list[ProfileError]]:
    """Like :func:`load_profile`, but every mistake found: the profile and the errors.

    After a syntax error or a broken ``extends`` nothing else can be checked (the profile is None); otherwise
    each section, theme, mapping and switch is checked on its own, and the profile holds the parts without a
    mistake (good enough to follow its switches, not to run).
    """
    findings = Findings(keep_going=True)
    try:
        profile = _load(os.fspath(path), findings)
    except ProfileError as exc:
        return None, [*findings.errors, exc]
    return profile, findings.errors


def _load(display: str, findings: Findings) -> ShowProfile:
    try:
        tree, bases = _load_tree(display, (), [0])
        return _build(tree, display, bases, findings)
    except ProfileError:
        raise
    except RecursionError:
        raise ProfileError(f"{display}: nested too deeply to read; a profile needs only a few levels",
                           file=display) from None
    except Exception as exc:  # a gap in the checks: still one line naming the file, never a traceback
        log.debug("unexpected error loading %s", display, exc_info=True)
        raise ProfileError(f"{display}: cannot be read as a profile ({type(exc).__name__}: {exc}); please report "
                           "this with the file, and fix or undo the last edit to go on", file=display) from None


def read_bytes(display: str) -> bytes:
    """At most MAX_FILE_BYTES + 1 bytes of a regular file; anything else is a ProfileError before it is read (a FIFO
    would block the reading thread for ever, a device might never end: ``errors.open_regular``)."""
    try:
        fd = open_regular(display)
    except NotRegularFile as exc:
        if exc.kind == "a folder":
            raise ProfileError(f"{display}: is a folder, not a profile file", file=display) from None
        raise ProfileError(f"{display}: {exc.kind}, not a profile file; a profile is a .yaml text file",
                           file=display) from None
    except (FileNotFoundError, NotADirectoryError):
        raise ProfileError(f"{display}: no such file", file=display) from None
    except OSError as exc:
        raise ProfileError(f"{display}: cannot read: {exc.strerror or exc}", file=display) from None
    except ValueError:
        raise ProfileError(f"{display}: not a usable file name", file=display) from None
    try:
        chunks: list[bytes] = []
        size = 0
        while size <= MAX_FILE_BYTES:
            chunk = os.read(fd, MAX_FILE_BYTES + 1 - size)
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
    except OSError as exc:
        raise ProfileError(f"{display}: cannot read: {exc.strerror or exc}", file=display) from None
    finally:
        os.close(fd)
    return b"".join(chunks)


def read_node(display: str) -> YNode:
    """One file parsed (no extends), its top checked to be a mapping of known sections."""
    data = read_bytes(display)
    if len(data) > MAX_FILE_BYTES:
        raise ProfileError(f"{display}:1:1: larger than {MAX_FILE_BYTES // 1024 // 1024} MB; a profile is a few "
                           "kilobytes of text (is this the right file?)", file=display, line=1, column=1)
    node = parse(decode_text(data, display), display)
    if not node.is_map:
        f.fail(node, "", f"the top of a profile must be a mapping of sections ({', '.join(TOP_KEYS)}), "
               f"got {f.type_name(node.value)}")
    f.mapping(node, "", TOP_KEYS)
    return node


def _load_tree(display: str, stack: tuple[str, ...], reads: list[int]) -> tuple[YNode, list[str]]:
    """The file's nodes with every base merged under them, and the absolute paths of all bases, base first."""
    reads[0] += 1
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
            if len(chain) >= MAX_EXTENDS_DEPTH:
                f.fail(item, item_path, f"more than {MAX_EXTENDS_DEPTH} files deep "
                       f"({' -> '.join(os.path.basename(p) for p in chain[:3])} -> ...); flatten the chain")
            if reads[0] >= MAX_EXTENDS_FILES:
                f.fail(item, item_path, f"extends reads more than {MAX_EXTENDS_FILES} files in all; "
                       "a profile needs a few bases")
            base_tree, base_bases = _load_tree(base_display, chain, reads)
            merged = base_tree if merged is None else merge(merged, base_tree)
            for p in (*base_bases, absolute):
                if p not in bases:
                    bases.append(p)
    return (node if merged is None else merge(merged, node)), bases


def _base_path(item: YNode, path: str, display: str) -> str:
    name = f.text(item, path)
    base = os.path.normpath(os.path.join(os.path.dirname(display), os.path.expanduser(name)))
    if not os.path.lexists(base):
        f.fail(item, path, f"{name}: no such file ({os.path.abspath(base)})")
    if not os.path.isfile(base):
        f.fail(item, path, f"{name}: not a regular file ({os.path.abspath(base)}); extends needs a .yaml file")
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


def _build(tree: YNode, display: str, bases: list[str], findings: Findings) -> ShowProfile:
    m: dict[str, YNode] = tree.value
    name = Path(display).stem
    if "name" in m and m["name"].value is not None:
        name = findings.attempt(f.text, m["name"], "name", default=name)
    themes_node = m.get("themes")
    theme_list = findings.attempt(themes.themes, themes_node, findings, default=())
    # Theme names as written, even of a theme with a mistake, so references to it are not reported as well.
    names = tuple(themes_node.value) if themes_node is not None and themes_node.is_map else ()
    if not names and (themes_node is None or themes_node.value is None or themes_node.is_map):
        findings.attempt(f.fail, m.get("themes", tree), "themes", "a profile needs at least one theme (a file meant "
                         "only as a base for extends: cannot run on its own)", default=None)
    start = findings.attempt(themes.theme_name, m["start_theme"], "start_theme", names,
                             default=None) if "start_theme" in m else None
    complete = bool(theme_list) and len(theme_list) == len(names)
    facts = mapping_section.ThemeFacts(
        names, max(len(t.prompts) for t in theme_list) if complete else 10_000,
        intense=not complete or any(t.intense is not None or any(p.intense for p in t.prompts) for t in theme_list))
    profile = ShowProfile(
        path=os.path.abspath(display),
        name=name,
        scope=findings.attempt(sections.scope_settings, m.get("scope"), findings, default=ScopeSettings()),
        inputs=findings.attempt(sections.input_settings, m.get("inputs"), findings, default=InputSettings()),
        video=findings.attempt(video_section.video_settings, m.get("video"), default=VideoSettings()),
        themes=theme_list,
        start_theme=start,
        transitions=findings.attempt(themes.transitions, m.get("transitions"), default=TransitionSettings()),
        cycle=findings.attempt(themes.cycle, m.get("cycle"), names, default=None),
        pulse=findings.attempt(themes.pulse, m.get("pulse"), default=PulseSettings()),
        accent=findings.attempt(themes.accent, m.get("accent"), default=AccentSettings()),
        panic=findings.attempt(themes.panic, m.get("panic"), default=PanicSettings()),
        mappings=findings.attempt(mapping_section.mappings, m.get("mappings"), facts, findings, default=()),
        switches=findings.attempt(mapping_section.switches, m.get("switches"), findings, default=()),
        scenes=findings.attempt(scene_section.scenes, m.get("scenes"), names, findings, default=()),
        screens=findings.attempt(screen_section.screens, m.get("screens"), m.get("scope"), names, findings,
                                 default=()),
        extends=tuple(bases),
        where=tree.where,
    )
    return profile
