"""YAML text to a tree of :class:`YNode`: every value keeps the ``file:line:column`` it was written at.

PyYAML's safe loader composes the document into nodes (which carry marks); this module turns those nodes into
plain values wrapped in ``YNode`` and refuses what the safe constructor would silently accept: a key written
twice in one mapping (PyYAML keeps the last), keys that are not plain scalars and aliases that contain
themselves. Merge keys (``<<: *base``) work as in YAML 1.1: explicit keys win over merged ones.

Hostile files end in one :class:`ProfileError` too: nesting and the number of values are counted on the parser's
event stream before anything recursive runs (libyaml's composer recurses in C and crashes the process on a
100,000-deep ``[[[[``), and very long numbers are refused before they are converted. Lines and columns count only
``\n`` as a line break, as an editor does: YAML 1.1 also breaks at U+2028, U+2029, U+0085 and a lone ``\r``,
which stand for themselves here (as in YAML 1.2), so one of them in a comment neither breaks the file nor
shifts the line numbers of the errors after it.
"""

from __future__ import annotations

import bisect
import re
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
#: No setting needs a number written with more characters; longer ones are slow to convert (base-60 integers).
MAX_NUMBER_CHARS = 1000
_NUMBER_TAGS = ("tag:yaml.org,2002:int", "tag:yaml.org,2002:float")
#: What ``"\\ud800"`` in a double-quoted string gives: no character, and nothing a UTF-8 message or log can carry.
_SURROGATE = re.compile("[\ud800-\udfff]")

#: Line breaks to YAML 1.1 but not to an editor: parsed as ordinary characters (unassigned noncharacters stand in
#: for them while the parser runs) and put back in every string.
_STAND_INS = {"\u2028": "\ufdd0", "\u2029": "\ufdd1", "\x85": "\ufdd2", "\r": "\ufdd3"}
_RESTORE = str.maketrans({v: k for k, v in _STAND_INS.items()})
_LONE_BREAKS = re.compile("[\u2028\u2029\x85]|\r(?!\n)")


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
    #: The text as written, for a plain scalar that YAML 1.1 reads as something the performer rarely means
    #: (``16:9`` as 969, ``0755`` as 493, ``no`` as false): see :func:`misread`. None for everything else.
    written: str | None = None

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


#: YAML 1.1 readings that surprise: the words read as true/false, and integers with a leading 0 (base 8).
_BOOL_WORDS = frozenset({"yes", "no", "on", "off"})
_OCTAL = re.compile(r"[-+]?0[0-7_]+")


def _trap(node: yaml.ScalarNode, value: Any) -> str | None:
    """The written text when a plain scalar's YAML 1.1 value is a trap (see :func:`misread`), else None."""
    if node.style:  # quoted or a block scalar: the text is the value (plain is None, or "" from libyaml)
        return None
    text = str(node.value)
    if isinstance(value, bool):
        return text if text.lower() in _BOOL_WORDS else None
    if isinstance(value, (int, float)) and (":" in text or _OCTAL.fullmatch(text)):
        return text
    return None


def misread(node: YNode) -> str:
    """How YAML 1.1 read a trapped scalar, in the file's own words: ``16:9 was read as the number 969 (YAML 1.1
    reads a:b as base 60)``; empty for a node that is no trap."""
    text = node.written
    if text is None:
        return ""
    if isinstance(node.value, bool):
        return (f"{text} was read as {'true' if node.value else 'false'} "
                "(YAML 1.1 reads yes/no/on/off as true/false)")
    why = "a:b as base 60" if ":" in text else "a leading 0 as base 8"
    return f"{text} was read as the number {node.value} (YAML 1.1 reads {why})"


class Lines:
    """Character index -> (line, column), both from 1, counting only ``\\n`` as a line break (as editors do)."""

    def __init__(self, text: str) -> None:
        self.starts = [0, *(m.end() for m in re.finditer("\n", text))]

    def at(self, index: int) -> tuple[int, int]:
        row = bisect.bisect_right(self.starts, index) - 1
        return row + 1, index - self.starts[row] + 1


def _error(file: str, lines: Lines | None, mark: Any, message: str) -> ProfileError:
    message = message.translate(_RESTORE)
    index = getattr(mark, "index", None) if mark is not None else None
    if lines is None or not isinstance(index, int) or index < 0:
        return ProfileError(f"{file}: {message}", file=file)
    line, column = lines.at(index)
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


def _yaml_text(text: str) -> str:
    """The text the parser sees: YAML 1.1's extra line breaks swapped for stand-ins of the same length.

    A file with only ``\\r`` line ends (classic Mac) keeps them as line ends, written as ``\\n``.
    """
    if "\n" not in text and "\r" in text:
        return text.replace("\r", "\n")
    if any(stand_in in text for stand_in in _STAND_INS.values()):
        return text  # cannot be put back unambiguously; YAML 1.1's reading it is
    return _LONE_BREAKS.sub(lambda m: _STAND_INS[m.group()], text)


def parse(text: str, file: str) -> YNode:
    """Compose ``text`` and convert it; an empty document is an error (a profile needs at least themes)."""
    if "\x00" in text:
        pos = text.index("\x00")
        line, column = Lines(text).at(pos)
        raise ProfileError(
            f"{file}:{line}:{column}: a NUL character; this is not a text file", file=file, line=line, column=column
        )
    yaml_text = _yaml_text(text)
    lines = Lines(yaml_text)
    try:
        _check_shape(yaml_text, file, lines)
        node = yaml.compose(yaml_text, Loader=_Loader)
    except yaml.MarkedYAMLError as exc:
        raise _syntax_error(exc, yaml_text, file, lines) from None
    except yaml.reader.ReaderError as exc:
        mark = yaml.Mark("", exc.position, 0, 0, "", 0)
        raise _error(file, lines, mark, f"character {chr(exc.character)!r} is not allowed in YAML text; "
                     "remove it or write it as an escape inside double quotes") from None
    except yaml.YAMLError as exc:
        raise _error(file, None, None, f"YAML error: {exc}") from None
    except RecursionError:
        raise _error(file, None, None, "the YAML is nested too deeply") from None
    if node is None:
        raise ProfileError(f"{file}:1:1: the profile is empty; it needs at least a themes: section",
                           file=file, line=1, column=1)
    return _Converter(file, lines).convert(node, 0, "")


def _syntax_error(exc: yaml.MarkedYAMLError, text: str, file: str, lines: Lines) -> ProfileError:
    mark = exc.problem_mark or exc.context_mark
    problem = exc.problem or exc.context or "invalid YAML"
    context = f" ({exc.context})" if exc.context and exc.problem else ""
    start = exc.context_mark
    if start is not None and mark is not None and exc.problem:
        start_line = lines.at(start.index)[0]
        if start_line != lines.at(mark.index)[0]:
            context = f" ({exc.context} that started at line {start_line})"
    if mark is not None and 0 <= mark.index < len(text) and text[mark.index] == "\t":
        problem = "a tab character; YAML indents with spaces only"
        context = ""
    if "maximum nesting depth" in problem:  # newer libyaml (PyYAML 6.0.4 wheels) stops its scanner at 1,000 levels
        return _error(file, lines, mark, f"nested more than {MAX_DEPTH} levels deep; a profile needs only a few levels")
    return _error(file, lines, mark, f"YAML syntax error: {problem}{context}")


def _check_shape(text: str, file: str, lines: Lines) -> None:
    """Refuse documents nested deeper than MAX_DEPTH or with more than MAX_NODES values, from the event stream.

    The parser is iterative, so this is safe on any input; only after it passes does the (recursive) composer run.
    """
    depth = 0
    count = 0
    for event in yaml.parse(text, Loader=_Loader):
        if isinstance(event, yaml.NodeEvent):
            count += 1
            if count > MAX_NODES:
                raise _error(file, lines, event.start_mark, f"more than {MAX_NODES} values; not a show profile")
        if isinstance(event, yaml.CollectionStartEvent):
            depth += 1
            if depth > MAX_DEPTH:
                raise _error(file, lines, event.start_mark,
                             f"nested more than {MAX_DEPTH} levels deep; a profile needs only a few levels")
        elif isinstance(event, yaml.CollectionEndEvent):
            depth -= 1


class _Converter:
    def __init__(self, file: str, lines: Lines) -> None:
        self.file = file
        self.lines = lines
        self.constructor = yaml.SafeLoader("")  # only its scalar constructors are used
        self.done: dict[int, YNode] = {}
        self.active: set[int] = set()
        self.count = 0

    def fail(self, node: yaml.Node, message: str, path: str = "") -> ProfileError:
        error = _error(self.file, self.lines, node.start_mark, f"{path}: {message}" if path else message)
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
        line, column = self.lines.at(node.start_mark.index)
        return YNode(value, self.file, line, column)

    def _convert(self, node: yaml.Node, depth: int, path: str) -> YNode:
        if isinstance(node, yaml.ScalarNode):
            if node.tag in _NUMBER_TAGS and len(node.value) > MAX_NUMBER_CHARS:
                raise self.fail(node, f"a number written with {len(node.value)} characters; no setting needs more "
                                f"than {MAX_NUMBER_CHARS}", path)
            try:
                value = self.constructor.construct_object(node)
            except yaml.YAMLError as exc:
                problem = getattr(exc, "problem", None) or str(exc)
                raise self.fail(node, f"cannot read {node.value[:80]!r}: {problem}", path) from None
            except (ValueError, OverflowError, TypeError) as exc:
                raise self.fail(node, f"cannot read {node.value[:80]!r}: {str(exc)[:200]}", path) from None
            if isinstance(value, str):
                value = value.translate(_RESTORE)
                if half := _SURROGATE.search(value):  # libyaml refuses the escape; the pure-Python loader reads it
                    raise self.fail(node, f"{half.group()!r} is half of a UTF-16 surrogate pair, not a character",
                                    path)
            out = self._here(node, value)
            out.written = _trap(node, value)
            return out
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
        return str(node.value).translate(_RESTORE)

    def _merge_sources(self, node: yaml.Node, depth: int, path: str) -> list[YNode]:
        items = node.value if isinstance(node, yaml.SequenceNode) else [node]
        sources = []
        for item in items:
            converted = self.convert(item, depth + 1, path)
            if not converted.is_map:
                raise self.fail(item, "a merge key (<<) needs a mapping or a list of mappings", path)
            sources.append(converted)
        return sources
