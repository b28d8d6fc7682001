"""Typed reads of YAML values, each failing with ``file:line:col: key.path: value: what was allowed``."""

from __future__ import annotations

import difflib
import math
from collections.abc import Iterable, Sequence
from typing import Any, NoReturn

from metadj_bridge.profile.errors import ProfileError
from metadj_bridge.profile.yamlnodes import YNode, misread

_NO_VALUE = object()


def join(path: str, key: str | int) -> str:
    if isinstance(key, int):
        return f"{path}[{key}]"
    return f"{path}.{key}" if path else key


def show(value: Any) -> str:
    """A value as the performer wrote it (YAML-like), short.

    Built piece by piece and cut at 80 characters, so a value that aliases share many times over (a "billion
    laughs" document) costs no more to show than a short one.
    """
    parts: list[str] = []
    _show_into(value, parts, [0])
    text = "".join(parts)
    return text if len(text) <= 80 else text[:77] + "..."


def _show_into(value: Any, parts: list[str], size: list[int]) -> None:
    if size[0] > 80:
        return
    if isinstance(value, YNode):
        value = value.value
    if isinstance(value, (dict, list)):
        items = list(value.items()) if isinstance(value, dict) else [(None, v) for v in value]
        parts.append("{" if isinstance(value, dict) else "[")
        for i, (key, item) in enumerate(items):
            if size[0] > 80:
                break
            prefix = (", " if i else "") + (f"{key}: " if key is not None else "")
            parts.append(prefix)
            size[0] += len(prefix)
            _show_into(item, parts, size)
        parts.append("}" if isinstance(value, dict) else "]")
        return
    text = _scalar_text(value)
    parts.append(text)
    size[0] += len(text)


def _scalar_text(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        value = value if len(value) <= 100 else value[:100]
        return value if value.strip() == value and value else repr(value)
    if isinstance(value, int) and abs(value) >= 10**30:
        digits = len(str(abs(value)))
        return f"{str(value)[:12]}... ({digits} digits)"
    return str(value)


def fail(node: YNode, path: str, message: str, value: Any = _NO_VALUE, *, quote: bool = True) -> NoReturn:
    """Raise the ProfileError for ``node``: ``where: path: value: message``.

    When the error is about the value of a YAML 1.1 trap (``16:9``, ``no``, ``0755`` written without quotes, see
    ``misread``), the message says how it was read instead and how to write what was meant: in quotes
    (``quote``), or, where a number is expected, how it was read after the message.
    """
    shown = "" if value is _NO_VALUE else f"{show(value)}: "
    if node.written is not None and quote and shown:
        shown, message = "", f'{misread(node)}; write "{node.written}" in quotes'
    elif node.written is not None and shown:
        shown, message = f"{node.written}: ", f"{message}; {misread(node)}"
    prefix = f"{path}: " if path else ""
    raise ProfileError(
        f"{node.where}: {prefix}{shown}{message}", file=node.file, line=node.line, column=node.column, key_path=path
    )


def fail_value(node: YNode, path: str, message: str) -> NoReturn:
    """An error about the node's own value (shown in the message)."""
    fail(node, path, message, node.value)


def suggest(word: str, options: Iterable[str]) -> str:
    """``"; did you mean 'x'?"`` or nothing."""
    options = list(options)
    close = difflib.get_close_matches(word, options, n=1, cutoff=0.6)
    if not close and len(word) >= 3:
        close = [o for o in options if o.startswith(word)][:1]
    return f"; did you mean {close[0]!r}?" if close else ""


def type_name(value: Any) -> str:
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, bool):
        return "true/false"
    if value is None:
        return "nothing (null)"
    if isinstance(value, str):
        return "text"
    if isinstance(value, (int, float)):
        return "a number"
    return f"a {type(value).__name__}"


def mapping(node: YNode, path: str, allowed: Sequence[str], what: str = "") -> dict[str, YNode]:
    """The node's mapping, after checking every key is one of ``allowed``."""
    if not node.is_map:
        desc = what or "a mapping of " + ", ".join(allowed)
        fail(node, path, f"expected {desc}, got {type_name(node.value)}", node.value)
    for key, key_node in node.keys.items():
        if key not in allowed:
            fail(key_node, join(path, key), f"unknown key{suggest(key, allowed)} (allowed: {', '.join(allowed)})")
    return dict(node.value)


def text(node: YNode, path: str, *, empty: bool = False) -> str:
    if not isinstance(node.value, str):
        quote = " (put it in quotes)" if node.value is not None and not isinstance(node.value, (dict, list)) else ""
        fail(node, path, f"expected text, got {type_name(node.value)}{quote}", node.value)
    if not empty and not node.value.strip():
        fail(node, path, "must not be empty")
    return node.value


def optional_text(node: YNode | None, path: str) -> str | None:
    if node is None or node.value is None:
        return None
    return text(node, path)


def boolean(node: YNode, path: str) -> bool:
    if not isinstance(node.value, bool):
        hint = " (write true or false)" if isinstance(node.value, (str, int, float)) else ""
        fail(node, path, f"expected true or false{hint}", node.value)
    return node.value


def _range_text(lo: float | None, hi: float | None, lo_open: bool, hi_open: bool) -> str:
    parts = []
    if lo is not None:
        parts.append(f"{'>' if lo_open else '>='} {lo:g}")
    if hi is not None:
        parts.append(f"{'<' if hi_open else '<='} {hi:g}")
    return " and ".join(parts)


#: Bound for numbers without a range of their own: large enough for any setting (a seed range, a scale), small
#: enough that the mapping engine's arithmetic on them never overflows to infinity.
LARGEST = 1e12


def as_float(node: YNode, path: str, wanted: str = "a number") -> float:
    """The node's number as a float; too large for one (an integer of 309+ digits), infinite or NaN is an error."""
    value = node.value
    misread_number(node, path)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        fail(node, path, f"expected {wanted}, got {type_name(value)}", value, quote=False)
    try:
        result = float(value)
    except OverflowError:
        fail(node, path, f"too large to be a number the bridge can use (expected {wanted})", value)
    if not math.isfinite(result):
        fail(node, path, f"expected {wanted}, not infinite or NaN", value)
    return result


def number(
    node: YNode,
    path: str,
    lo: float | None = None,
    hi: float | None = None,
    *,
    lo_open: bool = False,
    hi_open: bool = False,
) -> float:
    """A finite number in the range; without a range, within ±LARGEST."""
    allowed = _range_text(lo, hi, lo_open, hi_open)
    wanted = f"a number {allowed}" if allowed else "a number"
    value = as_float(node, path, wanted)
    if (
        (lo is not None and (value < lo or (lo_open and value == lo)))
        or (hi is not None and (value > hi or (hi_open and value == hi)))
    ):
        fail(node, path, f"out of range (allowed: {allowed})", node.value)
    if abs(value) > LARGEST and (lo is None or hi is None):
        fail(node, path, f"too large (allowed: {_range_text(-LARGEST, LARGEST, False, False)})", node.value)
    return value


def misread_number(node: YNode, path: str) -> None:
    """A number YAML 1.1 read in base 8 or 60 (``0755`` is 493, ``1:30`` is 90) is refused: the performer meant
    the digits as written, nearly always, and the show would silently use another number."""
    text = node.written
    if text is None or isinstance(node.value, bool):
        return
    if ":" in text:
        fail(node, path, f"{misread(node)}; write {node.value} if that is what you meant", quote=False)
    sign = text[0] if text[0] in "+-" else ""
    digits = text[len(sign):].replace("_", "").lstrip("0") or "0"
    fail(node, path, f"{misread(node)}; write {sign}{digits} without the leading 0, or {node.value} if you meant "
         "base 8", quote=False)


def integer(node: YNode, path: str, lo: int | None = None, hi: int | None = None, *, what: str = "") -> int:
    value = node.value
    misread_number(node, path)
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        fail(node, path, f"expected a whole number {_range_text(lo, hi, False, False)}".rstrip(), node.value,
             quote=False)
    if (lo is not None and value < lo) or (hi is not None and value > hi):
        if what and lo is not None and hi is not None:
            fail(node, path, f"{value} is not {what} ({lo}-{hi})")
        fail(node, path, f"out of range (allowed: {_range_text(lo, hi, False, False)})", value)
    return value


def choice(node: YNode, path: str, choices: Sequence[str]) -> str:
    value = node.value
    if not isinstance(value, str) or value not in choices:
        hint = suggest(value, choices) if isinstance(value, str) else ""
        fail(node, path, f"not one of {', '.join(choices)}{hint}", value)
    return value


def sequence(node: YNode, path: str, *, single: bool = False, what: str = "a list") -> list[YNode]:
    """The node's items; with ``single`` a lone scalar counts as a list of one."""
    if node.is_list:
        return list(node.value)
    if single and not node.is_map and node.value is not None:
        return [node]
    fail(node, path, f"expected {what}, got {type_name(node.value)}", node.value)


def pair(node: YNode, path: str, lo: float | None = None, hi: float | None = None) -> tuple[float, float]:
    items = sequence(node, path, what="a list of two numbers")
    if len(items) != 2:
        fail(node, path, f"expected two numbers [low, high], got {len(items)}", node.value)
    return number(items[0], join(path, 0), lo, hi), number(items[1], join(path, 1), lo, hi)
