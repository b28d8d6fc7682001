"""OSC decoding, pure: datagram bytes into timed messages, messages into signals, triggers and tempo readings.

:func:`parse_datagram` (from :mod:`.osc_wire`, our own bounded reader of the wire format) turns bytes into
messages, every malformed packet one :class:`OscPacketError`; :class:`OscDecoder` turns a message into what it
means for the show, driven by the preset tables in ``osc_presets.py``. Numbers that are not finite, and tempos
outside 20-999 BPM, are refused with a reason. No sockets, clocks or threads: times come in.

Naming: every message becomes ``osc.<address>``; see ``docs/osc.md``.
"""

from __future__ import annotations

import functools
import math
import re
import reprlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from metadj_bridge.inputs.osc_presets import OscAddress, OscPreset, get_preset
from metadj_bridge.inputs.osc_wire import OscPacketError, TimedOscMessage, parse_datagram
from metadj_bridge.signals import MIN_BPM, Signal, TempoReading, Trigger, tempo_problem

#: The bridge's scene requests (``/metadj/scene/recall NAME BARS``) are triggers carrying their arguments, even
#: with a number among them.
SCENE_PREFIX = "/metadj/scene/"

__all__ = [
    "OscDecoder", "OscEvent", "OscPacketError", "RepeatGate", "TimedOscMessage", "osc_pattern_matches",
    "parse_datagram",
]

# --------------------------------------------------------------------------------------------- patterns


@functools.lru_cache(maxsize=1024)
def _pattern_regex(pattern: str) -> re.Pattern[str] | None:
    """OSC 1.0 address pattern to a regex; ``None`` when the pattern is malformed."""
    out: list[str] = []
    i, n = 0, len(pattern)
    while i < n:
        c = pattern[i]
        if c == "*":
            out.append("[^/]*")
        elif c == "?":
            out.append("[^/]")
        elif c == "[":
            end = pattern.find("]", i + 1)
            if end < 0:
                return None
            body = pattern[i + 1 : end]
            negate = body.startswith("!")
            if negate:
                body = body[1:]
            if not body:
                return None
            chars = "".join("\\" + ch if ch in "\\^]" else ch for ch in body)
            out.append(f"[^/{chars}]" if negate else f"[{chars}]")
            i = end
        elif c == "{":
            end = pattern.find("}", i + 1)
            if end < 0:
                return None
            out.append("(?:" + "|".join(re.escape(alt) for alt in pattern[i + 1 : end].split(",")) + ")")
            i = end
        else:
            out.append(re.escape(c))
        i += 1
    try:
        return re.compile("".join(out) + r"\Z")
    except re.error:
        return None


def osc_pattern_matches(pattern: str, address: str) -> bool:
    """Whether an OSC address pattern (``*``, ``?``, ``[a-z]``, ``[!abc]``, ``{a,b}``) matches ``address``.

    Wildcards never cross a ``/``, as in OSC 1.0. A malformed pattern matches nothing.
    """
    regex = _pattern_regex(pattern)
    return regex is not None and regex.match(address) is not None


# --------------------------------------------------------------------------------------------- decoding


@dataclass(frozen=True, slots=True)
class OscEvent:
    """What one OSC message meant."""

    address: str
    args: tuple[Any, ...]
    t: float
    #: The preset entry that matched, or None for an address no preset knows.
    entry: OscAddress | None = None
    signals: tuple[Signal, ...] = ()
    triggers: tuple[Trigger, ...] = ()
    tempo: TempoReading | None = None
    #: The value argument as sent, and scaled to 0..1 when the preset knows its range.
    raw: float | None = None
    normalised: float | None = None
    #: Why the message could not be used (wrong argument types for its preset address).
    error: str | None = None


def _number(value: Any) -> float | None:
    # OSC True/False count as 1/0; strings, blobs, None, MIDI tuples do not count as numbers, nor do NaN and inf.
    if isinstance(value, (int, float)):
        number = float(value)
        return number if math.isfinite(number) else None
    return None


_REPR = reprlib.Repr()
_REPR.maxlevel, _REPR.maxtuple, _REPR.maxlist, _REPR.maxstring, _REPR.maxother = 3, 6, 6, 40, 40


def _short(value: Any) -> str:
    """A short ``repr`` of arguments from outside (bounded in length and depth), for reasons in a log line."""
    return _REPR.repr(value)


def _not_finite(args: tuple[Any, ...]) -> Any:
    """The first float argument that is NaN or infinite, or None."""
    return next((v for v in args if isinstance(v, float) and not math.isfinite(v)), None)


def _one_regex(entries: Sequence[OscAddress]) -> re.Pattern[str] | None:
    """All the entries' patterns as one regex (group ``e<i>`` for entry ``i``): one match call finds the first
    entry that matches, as trying them in order would, at a tenth of the cost for an address never seen."""
    parts = [f"(?P<e{i}>{regex.pattern})" for i, e in enumerate(entries) if (regex := _pattern_regex(e.pattern))]
    return re.compile("|".join(parts)) if parts else None


class OscDecoder:
    """Messages in, signals/triggers/tempo out. Pure: no sockets, no clocks (the time comes in)."""

    def __init__(self, presets: Iterable[OscPreset | str] = ("resolume", "ableton"), cache_size: int = 4096) -> None:
        self.presets = tuple(get_preset(p) if isinstance(p, str) else p for p in presets)
        self.entries: tuple[OscAddress, ...] = tuple(e for p in self.presets for e in p.addresses)
        self._cache: dict[str, OscAddress | None] = {}
        self._cache_size = cache_size
        self._any_entry = _one_regex(self.entries)
        #: Last BPM heard from a tempo address, so beat messages can carry a full TempoReading.
        self.last_bpm: float | None = None
        #: Last transport state heard (AbletonOSC ``is_playing``); carried on every tempo reading.
        self.playing = True

    def entry_for(self, address: str) -> OscAddress | None:
        try:
            return self._cache[address]
        except KeyError:
            pass
        match = self._any_entry.match(address) if self._any_entry is not None else None
        found = self.entries[int(match.lastgroup[1:])] if match is not None and match.lastgroup else None
        if len(self._cache) >= self._cache_size:
            self._cache.clear()  # a sender inventing addresses must not grow memory without bound
        self._cache[address] = found
        return found

    def decode(self, address: str, args: Sequence[Any], t: float) -> OscEvent:
        args = tuple(args)
        entry = self.entry_for(address)
        if entry is None:
            return self._generic(address, args, t)
        name = "osc." + address
        if entry.index_args:
            if len(args) <= entry.index_args:
                reason = f"{address}: expected {entry.index_args} indices and a value, got {_short(args)}"
                return OscEvent(address, args, t, entry, error=reason)
            indices = args[: entry.index_args]
            if not all(isinstance(i, int) and not isinstance(i, bool) for i in indices):
                reason = f"{address}: indices must be ints, got {_short(indices)}"
                return OscEvent(address, args, t, entry, error=reason)
            name += "".join(f"/{i}" for i in indices)
        value_args = args[entry.index_args :]

        if entry.kind == "trigger":
            if not value_args:
                return OscEvent(address, args, t, entry, triggers=(Trigger(name, t),))
            value = _number(value_args[0])
            if value is None:
                return OscEvent(address, args, t, entry,
                                error=f"{address}: expected a finite number, got {_short(value_args[0])}")
            triggers = (Trigger(name, t, {"value": value}),) if value else ()  # 0 is the button's release
            return OscEvent(address, args, t, entry, triggers=triggers, raw=value)

        value = _number(value_args[0]) if value_args else None
        if value is None:
            got = _short(value_args[0]) if value_args else "no argument"
            return OscEvent(address, args, t, entry, error=f"{address}: expected a finite number, got {got}")
        normalised = None
        if entry.range is not None:
            lo, hi = entry.range
            normalised = min(1.0, max(0.0, (value - lo) / (hi - lo)))
        signal = Signal(name, value, t)

        if entry.kind == "tempo":
            if entry.bpm_range is not None:
                lo, hi = entry.bpm_range
                bpm = lo + min(1.0, max(0.0, value)) * (hi - lo)
            else:
                bpm = value
            problem = tempo_problem(bpm)
            if problem is not None:
                return OscEvent(address, args, t, entry, error=f"{address}: {problem}; tempo ignored")
            self.last_bpm = bpm
            reading = TempoReading(source="osc", bpm=bpm, t=t, playing=self.playing)
            return OscEvent(address, args, t, entry, signals=(signal,), tempo=reading, raw=value, normalised=normalised)

        if entry.kind == "beat":
            problem = tempo_problem(self.last_bpm or MIN_BPM, value)
            if problem is not None:
                return OscEvent(address, args, t, entry, error=f"{address}: {problem}; ignored")
            trigger = Trigger(name, t, {"beat": value})
            beat_reading = (
                TempoReading(source="osc", bpm=self.last_bpm, t=t, beat=value, playing=self.playing)
                if self.last_bpm
                else None
            )
            return OscEvent(address, args, t, entry, signals=(signal,), triggers=(trigger,), tempo=beat_reading,
                            raw=value, normalised=normalised)

        if entry.kind == "transport":
            self.playing = bool(value)
            transport_reading = (
                TempoReading(source="osc", bpm=self.last_bpm, t=t, playing=self.playing) if self.last_bpm else None
            )
            return OscEvent(address, args, t, entry, signals=(signal,), tempo=transport_reading,
                            raw=value, normalised=normalised)

        return OscEvent(address, args, t, entry, signals=(signal,), raw=value, normalised=normalised)

    @staticmethod
    def _generic(address: str, args: tuple[Any, ...], t: float) -> OscEvent:
        name = "osc." + address
        bad = _not_finite(args)
        if bad is not None:
            return OscEvent(address, args, t, error=f"{address}: {bad} is not a finite number; ignored")
        if not args:
            return OscEvent(address, args, t, triggers=(Trigger(name, t),))
        value = next((v for v in map(_number, args) if v is not None), None)
        # Only strings, blobs and the like: an event carrying them; so is a scene request (NAME and BARS).
        if value is None or address.startswith(SCENE_PREFIX):
            return OscEvent(address, args, t, triggers=(Trigger(name, t, {"args": args}),))
        return OscEvent(address, args, t, signals=(Signal(name, value, t),), raw=value)


class RepeatGate:
    """At most one of the same message (address and arguments) per ``interval`` seconds: for triggers.

    A process that stood still (a laptop lid closed, the machine swapping) finds every OSC packet sent meanwhile
    queued in its socket, and reads them all at once: thirty presses of ``/track/next`` would step the show thirty
    times in one go. Read from a backlog, the packets are microseconds apart; a performer's fastest double press is
    100 ms or more, and passes. ``interval`` 0 lets everything through. At most ``max_keys`` messages are
    remembered, so a sender inventing addresses cannot grow memory.
    """

    def __init__(self, interval: float = 0.05, max_keys: int = 1024) -> None:
        self.interval = interval
        self.max_keys = max_keys
        self._last: dict[Any, float] = {}

    def admit(self, address: str, args: tuple[Any, ...], t: float) -> bool:
        """Whether this message, arriving at ``t``, is let through (and becomes the one the next are timed from)."""
        if self.interval <= 0.0:
            return True
        key: Any = (address, args)
        try:
            hash(key)
        except TypeError:  # an OSC array argument is a list
            key = (address, repr(args))
        last = self._last.get(key)
        if last is not None and 0.0 <= t - last < self.interval:
            return False
        if key not in self._last and len(self._last) >= self.max_keys:
            self._last = {k: v for k, v in self._last.items() if 0.0 <= t - v < self.interval}
            if len(self._last) >= self.max_keys:
                self._last.clear()
        self._last[key] = t
        return True
