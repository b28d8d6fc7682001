"""The OSC 1.0 wire format in, pure and bounded: datagram bytes into timed messages.

Anyone on the network can send the bridge a packet, so reading one must cost little and end in one clear error.
python-osc's own parser logs a WARNING on the root logger for every unknown type tag (60,000 lines for one packet),
copies the rest of the datagram for every argument it reads (quadratic in the packet's size) and builds nested
bundles recursively. This parser reads the same format with fixed limits on everything a packet can ask of us:
the lengths of the address and of string arguments, the number of type tags and of messages, and how deeply arrays
and bundles nest. Anything outside them, and anything that is not OSC, is one :class:`OscPacketError` whose text
says what was wrong; nothing is logged here (the UDP input logs it, rate-limited, with the sender).

Arguments come out as python-osc gives them: ``i h`` int, ``f d`` float, ``s S c`` str, ``b`` bytes, ``r`` int,
``m`` a 4-tuple, ``t`` (seconds, fraction) since 1900, ``T F`` bool, ``N I`` None, ``[...]`` a list.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Any

from metadj_bridge.errors import MetaDJError

__all__ = [
    "MAX_ADDRESS_CHARS", "MAX_ARGS", "MAX_ARRAY_DEPTH", "MAX_BUNDLE_DEPTH", "MAX_ELEMENTS", "MAX_STRING_CHARS",
    "MAX_TYPE_TAGS", "OscPacketError", "TimedOscMessage", "parse_datagram",
]

#: Longest address, and longest string argument, in characters.
MAX_ADDRESS_CHARS = 512
MAX_STRING_CHARS = 4096
#: Most type tags in one message (array brackets included), and most arguments in one packet.
MAX_TYPE_TAGS = 1024
MAX_ARGS = 2048
#: Most messages and bundles in one packet, and how deeply bundles and arrays may nest.
MAX_ELEMENTS = 64
MAX_BUNDLE_DEPTH = 8
MAX_ARRAY_DEPTH = 8

_BUNDLE = b"#bundle\x00"
_IMMEDIATELY = 1
#: Seconds from the NTP epoch (1900) to the Unix epoch (1970).
_NTP_TO_UNIX = 2_208_988_800
_INT = struct.Struct(">i")
_UINT64 = struct.Struct(">Q")
#: Fixed-size argument types: how to unpack them and their size in bytes.
_FIXED: dict[str, tuple[struct.Struct, int]] = {
    "i": (_INT, 4), "h": (struct.Struct(">q"), 8), "f": (struct.Struct(">f"), 4), "d": (struct.Struct(">d"), 8),
    "r": (struct.Struct(">I"), 4),
}
_NO_DATA: dict[str, Any] = {"T": True, "F": False, "N": None, "I": None}


class OscPacketError(MetaDJError, ValueError):
    """A datagram that is not valid OSC, or asks for more than the bridge reads (the text says which)."""


@dataclass(frozen=True, slots=True)
class TimedOscMessage:
    #: Seconds from now until the message applies (0.0: at once).
    delay: float
    address: str
    args: tuple[Any, ...]


def parse_datagram(data: bytes, wall_now: float) -> list[TimedOscMessage]:
    """Every message in a datagram, earliest first, with how long to wait before applying it.

    ``wall_now`` is ``time.time()`` at arrival (OSC timetags are wall-clock times). Raises
    :class:`OscPacketError` for anything that is not OSC or is beyond the limits above.
    """
    packet = _Packet(data, wall_now)
    if data.startswith(_BUNDLE):
        packet.bundle(0, len(data), 1)
        packet.out.sort(key=lambda m: m.delay)
    elif data.startswith(b"/"):
        packet.message(0, len(data), 0.0)
    else:
        raise OscPacketError(f"neither an OSC message nor a bundle ({len(data)} bytes, starting {data[:8]!r})")
    return packet.out


class _Packet:
    """One datagram being read; counts what it has cost so far against the per-packet limits."""

    __slots__ = ("data", "wall_now", "out", "args_left", "elements_left")

    def __init__(self, data: bytes, wall_now: float) -> None:
        self.data = data
        self.wall_now = wall_now
        self.out: list[TimedOscMessage] = []
        self.args_left = MAX_ARGS
        self.elements_left = MAX_ELEMENTS

    def _element(self) -> None:
        self.elements_left -= 1
        if self.elements_left < 0:
            raise OscPacketError(f"more than {MAX_ELEMENTS} messages and bundles in one packet")

    # bundles --------------------------------------------------------------------------------------

    def bundle(self, start: int, end: int, depth: int) -> None:
        """The bundle in ``data[start:end]`` (which starts with ``#bundle``), its messages appended to ``out``."""
        if depth > MAX_BUNDLE_DEPTH:
            raise OscPacketError(f"bundles nested more than {MAX_BUNDLE_DEPTH} deep")
        self._element()
        if end - start < 16:
            raise OscPacketError("a bundle without its timetag")
        timetag = _UINT64.unpack_from(self.data, start + 8)[0]
        delay = 0.0 if timetag == _IMMEDIATELY else max(0.0, timetag / 2**32 - _NTP_TO_UNIX - self.wall_now)
        i = start + 16
        while i < end:
            if i + 4 > end:
                raise OscPacketError("a bundle element's size is cut off")
            size = _INT.unpack_from(self.data, i)[0]
            i += 4
            if size <= 0 or size % 4 or i + size > end:
                raise OscPacketError(f"a bundle element of {size} bytes does not fit the {end - i} bytes left")
            if self.data.startswith(_BUNDLE, i):
                self.bundle(i, i + size, depth + 1)
            elif self.data.startswith(b"/", i):
                self.message(i, i + size, delay)
            else:
                raise OscPacketError("a bundle element that is neither a message nor a bundle")
            i += size

    # messages -------------------------------------------------------------------------------------

    def message(self, start: int, end: int, delay: float) -> None:
        """The message in ``data[start:end]`` (which starts with ``/``), appended to ``out``."""
        self._element()
        address, i = self.string(start, end, MAX_ADDRESS_CHARS, "address")
        if not address.isprintable():
            raise OscPacketError(f"address {address[:40]!r} holds control characters")
        if i >= end:
            self.out.append(TimedOscMessage(delay, address, ()))
            return
        tag_end = self.data.find(b"\x00", i, end)
        if tag_end < 0:
            raise OscPacketError(f"{address[:80]}: the type tags are not terminated")
        if tag_end - i - 1 > MAX_TYPE_TAGS:
            raise OscPacketError(f"{address[:80]}: {tag_end - i - 1} type tags (at most {MAX_TYPE_TAGS} are read)")
        tags, i = self.string(i, end, MAX_TYPE_TAGS + 1, "type tags")
        if not tags.startswith(","):
            raise OscPacketError(f"{address[:80]}: type tags must start with ',', got {tags[:20]!r}")
        self.out.append(TimedOscMessage(delay, address, self.arguments(address, tags[1:], i, end)))

    def arguments(self, address: str, tags: str, i: int, end: int) -> tuple[Any, ...]:
        """The arguments ``tags`` describe, read from ``data[i:end]``."""
        data = self.data
        top: list[Any] = []
        stack = [top]
        for tag in tags:
            self.args_left -= 1
            if self.args_left < 0:
                raise OscPacketError(f"more than {MAX_ARGS} arguments in one packet")
            value: Any
            if tag in _FIXED:
                fmt, size = _FIXED[tag]
                if i + size > end:
                    raise OscPacketError(f"{address[:80]}: argument {tag!r} runs past the end of the packet")
                value = fmt.unpack_from(data, i)[0]
                i += size
            elif tag in _NO_DATA:
                value = _NO_DATA[tag]
            elif tag == "s" or tag == "S":
                value, i = self.string(i, end, MAX_STRING_CHARS, "string argument")
            elif tag == "b":
                value, i = self.blob(address, i, end)
            elif tag == "[":
                if len(stack) > MAX_ARRAY_DEPTH:
                    raise OscPacketError(f"{address[:80]}: arrays nested more than {MAX_ARRAY_DEPTH} deep")
                inner: list[Any] = []
                stack[-1].append(inner)
                stack.append(inner)
                continue
            elif tag == "]":
                if len(stack) == 1:
                    raise OscPacketError(f"{address[:80]}: ']' without its '['")
                stack.pop()
                continue
            elif tag in "mtc":
                value, i = self.small(address, tag, i, end)
            else:
                raise OscPacketError(f"{address[:80]}: unknown type tag {tag!r}")
            stack[-1].append(value)
        if len(stack) != 1:
            raise OscPacketError(f"{address[:80]}: '[' without its ']'")
        return tuple(top)

    def small(self, address: str, tag: str, i: int, end: int) -> tuple[Any, int]:
        """A MIDI message (``m``), a timetag (``t``) or a character (``c``)."""
        size = 8 if tag == "t" else 4
        if i + size > end:
            raise OscPacketError(f"{address[:80]}: argument {tag!r} runs past the end of the packet")
        raw = self.data[i : i + size]
        if tag == "m":
            return tuple(raw), i + 4
        if tag == "t":
            timetag = _UINT64.unpack(raw)[0]
            return (timetag >> 32, timetag & 0xFFFFFFFF), i + 8
        code = _INT.unpack(raw)[0]
        if not (0 <= code <= 0x10FFFF) or 0xD800 <= code <= 0xDFFF:
            raise OscPacketError(f"{address[:80]}: character argument {code} is not a character")
        return chr(code), i + 4

    def blob(self, address: str, i: int, end: int) -> tuple[bytes, int]:
        if i + 4 > end:
            raise OscPacketError(f"{address[:80]}: a blob's size runs past the end of the packet")
        size = _INT.unpack_from(self.data, i)[0]
        padded = i + 4 + size + (-size % 4)
        if size < 0 or padded > end:
            raise OscPacketError(f"{address[:80]}: a blob of {size} bytes does not fit the {end - i - 4} bytes left")
        return self.data[i + 4 : i + 4 + size], padded

    def string(self, i: int, end: int, limit: int, what: str) -> tuple[str, int]:
        """A NUL-terminated, 4-byte-padded UTF-8 string of at most ``limit`` characters at ``data[i]``."""
        data = self.data
        nul = data.find(b"\x00", i, min(end, i + 4 * limit + 1))  # UTF-8: at most 4 bytes a character
        if nul < 0:
            if data.find(b"\x00", i, end) < 0:
                raise OscPacketError(f"the {what} is not terminated")
            raise OscPacketError(f"the {what} is longer than {limit} characters")
        after = i + ((nul - i) // 4 + 1) * 4
        if after > end:
            raise OscPacketError(f"the {what} lacks its padding")
        try:
            text = data[i:nul].decode("utf-8")  # strict: the bytes of half a surrogate pair (ED A0 80) are refused too
        except UnicodeDecodeError:
            raise OscPacketError(f"the {what} is not UTF-8 text") from None
        if len(text) > limit:
            raise OscPacketError(f"the {what} is longer than {limit} characters ({len(text)})")
        return text, after
