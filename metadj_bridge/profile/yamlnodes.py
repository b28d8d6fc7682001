"""YAML text to a tree of :class:`YNode`: every value keeps the ``file:line:column`` it was written at.

PyYAML's safe loader composes the document into nodes (which carry marks); this module turns those nodes into
plain values wrapped in ``YNode`` and refuses what the safe constructor would silently accept: a key written
twice in one mapping (PyYAML keeps the last), keys that are not plain scalars and aliases that contain
themselves. Merge keys (``<<: *base``) work as in YAML 1.1: explicit keys win over merged ones.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import yaml

from metadj_bridge.profile.errors import ProfileError

#: libyaml is much faster when PyYAML was built with it; the pure-Python loader gives the same nodes and marks.
_Loader: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

_MERGE_TAG = "tag:yaml.org,2002:merge"
#: A profile is a few hundred values; this bounds alias expansion ("billion laughs") and nesting.
MAX_NODES = 200_000
MAX_DEPTH = 60


@dataclass(eq=False)
class YNode:
    """One YAML value and where it was written.

    ``value`` is a ``dict[str, YNode]`` for a mapping (``keys`` then holds the key nodes, for errors about
    a key), a ``list[YNode]`` for a sequence, or a plain scalar (str, int, float, bool, None, date ...).
    """

    value: Any
    file: str
    line: int
    column: int
    keys: dict[str, YNode] = field(default_factory=dict)

    @property
    def where(self) -> str:
        return f"{self.file}:{self.line}:{self.column}"

    @property
    def is_map(self) -> bool:
        return isinstance(self.value, dict)

    @property
    def is_list(self) -> bool:
        return isinstance(self.value, list)

    def plain(self) -> Any:
        """The value without positions (dicts, lists and scalars), for free-form parameter values.

        Aliases are expanded here, so the expansion is bounded (a "billion laughs" document is an error).
        """
        budget = [MAX_NODES]
        return self._plain(budget)

    def _plain(self, budget: list[int]) -> Any:
        budget[0] -= 1
        if budget[0] < 0:
            raise ProfileError(
                f"{self.where}: more than {MAX_NODES} values once aliases are expanded",
                file=self.file, line=self.line, column=self.column,
            )
        if isinstance(self.value, dict):
            return {k: v._plain(budget) for k, v in self.value.items()}
        if isinstance(self.value, list):
            return [v._plain(budget) for v in self.value]
        return self.value


def _error(file: str, mark: Any, message: str) -> ProfileError:
    line = getattr(mark, "line", -1) + 1 if mark is not None else 0
    column = getattr(mark, "column", -1) + 1 if mark is not None else 0
    if line <= 0:
        return ProfileError(f"{file}: {message}", file=file)
    return ProfileError(f"{file}:{line}:{column}: {message}", file=file, line=line, column=column)


def decode_text(data: bytes, file: str) -> str:
    """UTF-8 (a BOM is allowed); anything else is an error that points at the first bad byte."""
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        before = data[: exc.start]
        line = before.count(b"\n") + 1
        column = exc.start - (before.rfind(b"\n") + 1) + 1
        byte = data[exc.start : exc.start + 1].hex()
        raise ProfileError(
            f"{file}:{line}:{column}: byte 0x{byte} is not UTF-8; save the profile as UTF-8 text",
            file=file,
            line=line,
            column=column,
        ) from None


def parse(text: str, file: str) -> YNode:
    """Compose ``text`` and convert it; an empty document is an error (a profile needs at least themes)."""
    if "\x00" in text:
        pos = text.index("\x00")
        line = text.count("\n", 0, pos) + 1
        column = pos - (text.rfind("\n", 0, pos) + 1) + 1
        raise ProfileError(
            f"{file}:{line}:{column}: a NUL character; this is not a text file", file=file, line=line, column=column
        )
    try:
        node = yaml.compose(text, Loader=_Loader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        problem = exc.problem or exc.context or "invalid YAML"
        context = f" ({exc.context})" if exc.context and exc.problem else ""
        start = exc.context_mark
        if start is not None and mark is not None and exc.problem and start.line != mark.line:
            context = f" ({exc.context} that started at line {start.line + 1})"
        if mark is not None and _char_at(text, mark.line, mark.column) == "\t":
            problem = "a tab character; YAML indents with spaces only"
            context = ""
        raise _error(file, mark, f"YAML syntax error: {problem}{context}") from None
    except yaml.YAMLError as exc:
        raise _error(file, None, f"YAML error: {exc}") from None
    except RecursionError:
        raise _error(file, None, "the YAML is nested too deeply") from None
    if node is None:
        raise ProfileError(f"{file}:1:1: the profile is empty; it needs at least a themes: section",
                           file=file, line=1, column=1)
    return _Converter(file).convert(node, 0, "")


def _char_at(text: str, line: int, column: int) -> str:
    lines = text.split("\n")
    if 0 <= line < len(lines) and 0 <= column < len(lines[line]):
        return lines[line][column]
    return ""


class _Converter:
    def __init__(self, file: str) -> None:
        self.file = file
        self.constructor = yaml.SafeLoader("")  # only its scalar constructors are used
        self.done: dict[int, YNode] = {}
        self.active: set[int] = set()
        self.count = 0

    def fail(self, node: yaml.Node, message: str, path: str = "") -> ProfileError:
        error = _error(self.file, node.start_mark, f"{path}: {message}" if path else message)
        error.key_path = path
        return error

    def convert(self, node: yaml.Node, depth: int, path: str) -> YNode:
        key = id(node)
        if key in self.done:  # an alias: the same node again
            return self.done[key]
        if key in self.active:
            raise self.fail(node, "an alias that contains itself (recursive anchor)", path)
        if depth > MAX_DEPTH:
            raise self.fail(node, f"nested more than {MAX_DEPTH} levels deep", path)
        self.count += 1
        if self.count > MAX_NODES:
            raise self.fail(node, f"more than {MAX_NODES} values", path)
        self.active.add(key)
        try:
            out = self._convert(node, depth, path)
        finally:
            self.active.discard(key)
        self.done[key] = out
        return out

    def _here(self, node: yaml.Node, value: Any) -> YNode:
        return YNode(value, self.file, node.start_mark.line + 1, node.start_mark.column + 1)

    def _convert(self, node: yaml.Node, depth: int, path: str) -> YNode:
        if isinstance(node, yaml.ScalarNode):
            try:
                value = self.constructor.construct_object(node)
            except yaml.YAMLError as exc:
                problem = getattr(exc, "problem", None) or str(exc)
                raise self.fail(node, f"cannot read {node.value!r}: {problem}", path) from None
            except (ValueError, OverflowError, TypeError) as exc:
                raise self.fail(node, f"cannot read {node.value!r}: {exc}", path) from None
            return self._here(node, value)
        if isinstance(node, yaml.SequenceNode):
            self._check_tag(node, "tag:yaml.org,2002:seq", path)
            return self._here(node,
                              [self.convert(item, depth + 1, f"{path}[{i}]") for i, item in enumerate(node.value)])
        if isinstance(node, yaml.MappingNode):
            self._check_tag(node, "tag:yaml.org,2002:map", path)
            out = self._here(node, {})
            merged: list[YNode] = []
            for key_node, value_node in node.value:
                if key_node.tag == _MERGE_TAG:
                    merged.extend(self._merge_sources(value_node, depth, path))
                    continue
                name = self._key(key_node, path)
                key_path = f"{path}.{name}" if path else name
                if name in out.value:
                    first = out.keys[name]
                    raise self.fail(
                        key_node, f"duplicate key {name!r} (first written at line {first.line}); YAML keeps only one",
                        key_path,
                    )
                out.keys[name] = self._here(key_node, name)
                out.value[name] = self.convert(value_node, depth + 1, key_path)
            for source in merged:
                for name, value in source.value.items():
                    if name not in out.value:
                        out.keys[name] = source.keys[name]
                        out.value[name] = value
            return out
        raise self.fail(node, "unsupported YAML node")  # pragma: no cover - compose yields only the three

    def _check_tag(self, node: yaml.Node, tag: str, path: str) -> None:
        if node.tag != tag:
            raise self.fail(node, f"unsupported tag {node.tag!r}", path)

    def _key(self, node: yaml.Node, path: str) -> str:
        if not isinstance(node, yaml.ScalarNode):
            raise self.fail(node, "a key must be a plain word or number, not a list or mapping", path)
        if node.tag not in ("tag:yaml.org,2002:str", "tag:yaml.org,2002:int", "tag:yaml.org,2002:float",
                            "tag:yaml.org,2002:bool", "tag:yaml.org,2002:null"):
            raise self.fail(node, f"unsupported key tag {node.tag!r}", path)
        return str(node.value)

    def _merge_sources(self, node: yaml.Node, depth: int, path: str) -> list[YNode]:
        items = node.value if isinstance(node, yaml.SequenceNode) else [node]
        sources = []
        for item in items:
            converted = self.convert(item, depth + 1, path)
            if not converted.is_map:
                raise self.fail(item, "a merge key (<<) needs a mapping or a list of mappings", path)
            sources.append(converted)
        return sources
