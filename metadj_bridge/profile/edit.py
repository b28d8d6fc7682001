"""Edit a show profile in place without losing what the performer wrote: comments, blank lines, indentation,
quotes and flow style stay as they were (ruamel.yaml's round-trip mode does the YAML; this module decides the
layout and the checks).

Every edit goes through :func:`edit_profile`: the file must load as a profile before the edit, the edited text
must load as one after it (with the project's own loader, extends and all), and everything outside the part
that was meant to change must read the same as before. Anything else is a :class:`ProfileError` naming the file
and what is wrong, and the file is left untouched. The new text goes to a temporary file in the same folder,
which replaces the profile in one ``os.replace``: a crash mid-write never leaves half a profile.

ruamel.yaml reads YAML 1.2 and PyYAML (the loader) YAML 1.1; for an edit that only adds entries this does not
matter, because ruamel writes the scalars it did not touch back as they were written (``16:9``, ``0755``, ``no``).
The check after the edit would catch it if it ever did.
"""

from __future__ import annotations

import copy
import io
import os
import stat
import tempfile
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

import yaml

from metadj_bridge.errors import printable
from metadj_bridge.profile.errors import ProfileError
from metadj_bridge.profile.loader import load_profile, read_bytes
from metadj_bridge.profile.model import ShowProfile
from metadj_bridge.profile.yamlnodes import decode_text, parse

T = TypeVar("T")

#: Lines are never wrapped: a long prompt stays on its line.
_WIDTH = 4096


def add_mapping(path: str | os.PathLike[str], slot: str, mapping: Mapping[str, Any]) -> str:
    """Add ``mapping`` under the profile's ``mappings:`` as ``slot`` (or ``slot_2``, ``slot_3`` ... when that name is
    taken, here or in a profile it extends); a missing ``mappings:`` section is added. Returns the name used."""
    return add_entry(path, "mappings", slot, mapping)


def add_entry(path: str | os.PathLike[str], section: str, name: str, entry: Mapping[str, Any]) -> str:
    """Add ``entry`` under the top-level mapping ``section`` (themes, mappings ...) as ``name`` or the first free
    ``name_<n>``; returns the name used. Scalar lists, and mappings of scalars below the entry's top, are written
    in flow style (``in: [0.1, 0.9]``), the rest in the file's block style (or all in flow inside a flow section)."""

    def change(data: Any, before: ShowProfile) -> str:
        taken = set(_taken(before, section))
        existing = data.get(section) if section in data else None
        if existing is not None and not isinstance(existing, dict):
            raise ValueError(f"{section}: is not a mapping of named entries")
        taken |= {str(k) for k in existing or ()}
        used = free_name(name, taken)
        add_entry_into(data, section, used, entry)
        return used

    def expected(old: Any, used: str) -> Any:
        old = dict(old)
        old[section] = {**(old.get(section) or {}), used: _plain(entry)}
        return old

    return edit_profile(path, change, expected)


def set_entry(path: str | os.PathLike[str], section: str, name: str, entry: Mapping[str, Any]) -> None:
    """Write ``entry`` under the top-level mapping ``section`` as ``name``: an entry of that name in this file is
    replaced where it stands (the comments and blank lines around it stay), else it is added as ``add_entry``
    does. An entry of that name in a profile it extends is overridden (sections merge by name)."""

    def change(data: Any, before: ShowProfile) -> None:
        container = data.get(section) if section in data else None
        if container is None or name not in container:
            add_entry_into(data, section, name, entry)
            return
        if not isinstance(container, dict):
            raise ValueError(f"{section}: is not a mapping of named entries")
        trailing = _trailing(_deepest(container, name))  # the blank lines and comments after the old entry
        container[name] = _commented(dict(entry), 0)
        if trailing is not None and not _in_flow(container):
            _set_trailing(_deepest(container, name), trailing)

    def expected(old: Any, _: None) -> Any:
        old = dict(old)
        old[section] = {**(old.get(section) or {}), name: _plain(entry)}
        return old

    edit_profile(path, change, expected)


def add_entry_into(data: Any, section: str, used: str, entry: Mapping[str, Any]) -> None:
    """Add ``entry`` as ``used`` at the end of ``section`` of a round-trip tree, laid out as the entries before."""
    top = [str(k) for k in data]
    if section not in data or data[section] is None:
        data[section] = _commented({}, 0)
    elif not isinstance(data[section], dict):
        raise ValueError(f"{section}: is not a mapping of named entries")
    previous = [str(k) for k in data[section]]
    data[section][used] = _commented(dict(entry), 0)
    if previous:
        _follow_on(data[section], previous, used)
    elif section not in top:  # a new section at the end of the file
        _follow_on(data, top, section)


def free_name(name: str, taken: set[str]) -> str:
    """``name``, or ``name_2``, ``name_3`` ... whichever is first not in ``taken``."""
    if name not in taken:
        return name
    n = 2
    while f"{name}_{n}" in taken:
        n += 1
    return f"{name}_{n}"


def edit_profile(
    path: str | os.PathLike[str],
    change: Callable[[Any, ShowProfile], T],
    expected: Callable[[Any, T], Any],
) -> T:
    """Apply ``change`` to the profile's round-trip tree and write the result back, keeping its layout.

    ``change(data, profile)`` gets ruamel's tree of the file (a dict-like ``CommentedMap``) and the profile as
    loaded before the edit, edits the tree and returns a result. ``expected(old, result)`` gets the file's plain
    values before the edit and returns what they must be afterwards: the file is written only when the edited
    text reads as exactly that and loads as a profile. Raises ProfileError (the file unchanged) otherwise.
    """
    display = os.fspath(path)
    where = printable(display)
    before = editable_profile(display)
    raw = read_bytes(display)
    text = decode_text(raw, display)
    old_plain = parse(text, display).plain()
    yaml_rt = _round_trip(text)
    try:
        data = yaml_rt.load(text)
        result = change(data, before)
        out = io.StringIO()
        yaml_rt.dump(data, out)
    except ProfileError:
        raise
    except Exception as exc:  # noqa: BLE001 - ruamel raises its own error types for what it cannot keep
        raise ProfileError(f"{where}: cannot be edited in place ({exc}); the file is unchanged", file=display) from None
    new_text = out.getvalue()
    if "\r\n" in text:
        new_text = new_text.replace("\r\n", "\n").replace("\n", "\r\n")
    try:
        new_plain = parse(new_text, display).plain()
    except ProfileError as exc:
        raise ProfileError(f"{where}: the edit would not read back as YAML ({exc}); the file is unchanged",
                           file=display) from None
    if new_plain != expected(old_plain, result):
        raise ProfileError(f"{where}: the edit would change more than it should (a YAML construct the round-trip "
                           "writer cannot keep); the file is unchanged, make the change by hand", file=display)
    encoded = ("\ufeff" if raw.startswith(b"\xef\xbb\xbf") else "") + new_text
    _replace_checked(display, encoded.encode("utf-8"))
    return result


def editable_profile(path: str | os.PathLike[str]) -> ShowProfile:
    """The profile at ``path`` as loaded, or a ProfileError saying why it cannot be edited (for a command to
    call before it asks the performer for anything, as the edit itself checks it again)."""
    display = os.fspath(path)
    if not os.path.lexists(display):
        raise ProfileError(f"{printable(display)}: no such file; write into an existing profile (`metadj-bridge "
                           "check` it first)", file=display)
    try:
        return load_profile(display)
    except ProfileError as exc:
        raise ProfileError(f"{exc} (the profile does not load, so it is left unchanged; fix this first)",
                           file=exc.file or display, line=exc.line, column=exc.column) from None


def _replace_checked(display: str, data: bytes) -> None:
    """Write ``data`` next to the profile, load it as the profile it would become, then swap it in.

    A symlinked profile stays a symlink: the file it points to is the one replaced."""
    real = os.path.realpath(display)
    folder = os.path.dirname(real)
    name = Path(real).name
    mode = stat.S_IMODE(os.stat(real).st_mode)
    fd, temp = tempfile.mkstemp(prefix=f".{name}.", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(temp, mode)
        try:
            load_profile(temp)
        except ProfileError as exc:
            message = str(exc).replace(temp, display)
            raise ProfileError(f"{printable(display)}: the edited profile would not load, so it is not written "
                               f"(the file is unchanged): {message}", file=display, line=exc.line,
                               column=exc.column) from None
        os.replace(temp, real)
    except BaseException:
        if os.path.exists(temp):
            os.unlink(temp)
        raise


def _taken(profile: ShowProfile, section: str) -> list[str]:
    if section == "mappings":
        return [m.name for m in profile.mappings]
    if section == "themes":
        return [t.name for t in profile.themes]
    if section == "scenes":
        return [s.name for s in profile.scenes]
    return []


# ---------------------------------------------------------------------------------------------- layout


def _round_trip(text: str) -> Any:
    from ruamel.yaml import YAML

    yaml_rt = YAML(typ="rt", pure=True)
    yaml_rt.preserve_quotes = True
    yaml_rt.width = _WIDTH
    mapping, sequence, offset = detect_indent(text)
    yaml_rt.indent(mapping=mapping, sequence=sequence, offset=offset)
    if text.lstrip().startswith("---"):
        yaml_rt.explicit_start = True
    return yaml_rt


def detect_indent(text: str) -> tuple[int, int, int]:
    """(mapping indent, sequence indent, dash offset) as ruamel.yaml takes them, the most common in the file.

    A mapping's keys sit ``mapping`` columns right of its parent key; a block list's dashes ``offset`` columns
    right of its key and the items ``sequence`` columns right of it (``- a`` under ``key:`` at the same column
    is offset 0, sequence 2). Files without nested blocks get 2, 2, 0.
    """
    maps: Counter[int] = Counter()
    seqs: Counter[tuple[int, int]] = Counter()
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError:
        root = None
    stack = [root] if root is not None else []
    seen: set[int] = set()
    while stack:
        node = stack.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                if isinstance(value, yaml.MappingNode) and not value.flow_style and value.value:
                    maps[value.value[0][0].start_mark.column - key.start_mark.column] += 1
                elif isinstance(value, yaml.SequenceNode) and not value.flow_style and value.value:
                    dash = value.start_mark.column - key.start_mark.column
                    seqs[(value.value[0].start_mark.column - key.start_mark.column, dash)] += 1
                stack.append(value)
        elif isinstance(node, yaml.SequenceNode):
            stack.extend(node.value)
    mapping = next((n for n, _ in maps.most_common() if n > 0), 2)
    sequence, offset = next(((s, o) for (s, o), _ in seqs.most_common() if o >= 0 and s >= o + 2), (2, 0))
    return mapping, sequence, offset


def _follow_on(container: Any, previous: list[str], new: str) -> None:
    """Lay the new last entry out as the ones before it: what followed the old last entry (blank lines, comments
    at or left of the entries' column, such as the next section's gap or an ``# end`` line) moves after the new
    one, and a blank line separates it from the old one when the entries before were separated so.

    ruamel keeps a comment after a value on the deepest last scalar before it, so without this the new entry
    would land after the gap and the next section would follow it with none.
    """
    from ruamel.yaml.error import CommentMark
    from ruamel.yaml.tokens import CommentToken

    if not previous or container.fa.flow_style():
        return
    column = container.lc.key(previous[-1])[1]
    old_holder = _deepest(container, previous[-1])
    token = _trailing(old_holder)
    stay, move = _split_trailing(token.value if token is not None else "\n", column)
    gap = False
    if len(previous) >= 2:
        before = _trailing(_deepest(container, previous[-2]))
        gap = before is not None and _split_trailing(before.value, column)[1].startswith("\n")
    stay += "\n" if gap else ""
    kept = None
    if stay != "\n":
        kept = copy.copy(token) if token is not None else CommentToken(stay, CommentMark(0))
        kept.value = stay  # a copy keeps the column of a comment at the end of the line
    _set_trailing(old_holder, kept)
    if move:
        _set_trailing(_deepest(container, new), CommentToken("\n" + move, CommentMark(0)))


def _in_flow(container: Any) -> bool:
    return bool(container.fa.flow_style())


def _split_trailing(value: str, column: int) -> tuple[str, str]:
    """A post-value comment split in what belongs to its entry (the rest of the value's line, comment lines
    indented right of ``column``) and what follows the entry."""
    own, _, rest = value.partition("\n")
    lines = rest.splitlines(keepends=True)
    keep = 0
    while keep < len(lines) and lines[keep].lstrip().startswith("#") and \
            len(lines[keep]) - len(lines[keep].lstrip()) > column:
        keep += 1
    return own + "\n" + "".join(lines[:keep]), "".join(lines[keep:])


def _deepest(container: Any, key: Any) -> tuple[Any, Any]:
    """The (container, key or index) holding the last scalar of ``container[key]`` in block style."""
    from ruamel.yaml.comments import CommentedMap, CommentedSeq

    while True:
        value = container[key]
        if isinstance(value, (CommentedMap, CommentedSeq)) and len(value) and not value.fa.flow_style():
            container, key = value, (list(value)[-1] if isinstance(value, CommentedMap) else len(value) - 1)
            continue
        return container, key


def _slot(container: Any) -> int:
    from ruamel.yaml.comments import CommentedSeq

    return 0 if isinstance(container, CommentedSeq) else 2


def _trailing(holder: tuple[Any, Any]) -> Any:
    container, key = holder
    items = container.ca.items.get(key)
    return items[_slot(container)] if items else None


def _set_trailing(holder: tuple[Any, Any], token: Any) -> None:
    container, key = holder
    items = container.ca.items.setdefault(key, [None, None, None, None])
    items[_slot(container)] = token


def _is_scalar(value: Any) -> bool:
    return not isinstance(value, (dict, list, tuple))


def _commented(value: Any, depth: int) -> Any:
    """Plain values as ruamel's round-trip containers: scalar lists, and scalar-valued mappings below the top of
    the entry, in flow style."""
    from ruamel.yaml.comments import CommentedMap, CommentedSeq

    if isinstance(value, Mapping):
        out_map = CommentedMap((str(k), _commented(v, depth + 1)) for k, v in value.items())
        if depth >= 2 and all(_is_scalar(v) or _flat_list(v) for v in value.values()):
            out_map.fa.set_flow_style()
        return out_map
    if isinstance(value, (list, tuple)):
        out_seq = CommentedSeq(_commented(v, depth + 1) for v in value)
        if all(_is_scalar(v) for v in value):
            out_seq.fa.set_flow_style()
        return out_seq
    return value


def _flat_list(value: Any) -> bool:
    return isinstance(value, (list, tuple)) and all(_is_scalar(v) for v in value)


def _plain(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, Sequence) and not isinstance(value, str):
        return [_plain(v) for v in value]
    return value
