"""The bridge's OSC address space as OSCQuery describes it: pure data from the running profile, no sockets.

OSCQuery (github.com/Vidvox/OSCQueryProposal) publishes an OSC server's addresses as a JSON tree: each node has a
``FULL_PATH``; a container has ``CONTENTS``; a method has a ``TYPE`` (an OSC type tag string), an ``ACCESS`` mask
(1 readable, 2 writable, 3 both), an optional ``RANGE`` (one ``{MIN, MAX}`` or ``{VALS}`` object per argument),
``VALUE`` and ``DESCRIPTION``. What the bridge understands, and so what the tree holds:

- every address of the OSC presets in use (``inputs/osc_presets.py``) that has no wildcard, typed by its kind:
  ``f`` for values (with the preset's range), ``i`` 0..1 for Resolume-style buttons (1 fires, 0 is the release),
  ``i`` for beat numbers; AbletonOSC getters take their track and clip indices first (``iif``);
- every OSC address the profile's mappings and switches read (``osc./composition/columns/1/connect``), typed by the
  preset entry that matches it, else by how the profile reads it: a signal is ``f``, a trigger takes no argument
  (``N``, OSC's nil: the bridge fires a trigger for a message without a number);
- the bridge's own control addresses (:data:`CONTROL_ADDRESSES`, ``/metadj/...``).

:func:`build_space` makes the tree, :func:`render` turns it into OSCQuery JSON (values looked up at that moment),
:func:`answer` answers one HTTP request (path and query) with a status and a JSON body.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from metadj_bridge.inputs.osc_decode import OscDecoder
from metadj_bridge.inputs.osc_presets import OscAddress, OscPreset
from metadj_bridge.profile.model import (
    Envelope,
    Range,
    Scale,
    ShowProfile,
    SignalSource,
    Threshold,
    TriggerSource,
)

#: ACCESS bits (OSCQuery): the value may be read, written.
READ, WRITE = 1, 2
#: What ``/metadj/action`` accepts: the web API's actions (docs/web.md).
CONTROL_ACTIONS = ("panic", "pause", "resume", "reset_cache", "tap", "nudge_forward", "nudge_back", "downbeat")
#: Attributes this server answers with ``?NAME`` (beside ``HOST_INFO``), and the OSCQuery ones it does not offer.
ATTRIBUTES = ("FULL_PATH", "CONTENTS", "TYPE", "ACCESS", "RANGE", "DESCRIPTION", "OVERLOADS", "VALUE")
UNSUPPORTED = ("TAGS", "EXTENDED_TYPE", "UNIT", "CRITICAL", "CLIPMODE", "HTML", "LISTEN", "IGNORE", "PATH_CHANGED")
_WILDCARD = re.compile(r"[*?\[\]{}]")
#: A method's own address part: printable ASCII without space, ``#`` or the pattern characters.
_PART = re.compile(r"[!-~]+")
#: Targets whose value is 0..1 when no transform rescales it (prompt crossfade, weights, intensity, selectors).
_UNIT_TARGETS = ("prompt_mix", "prompt_weight", "prompt_intensity")


@dataclass(frozen=True, slots=True)
class Arg:
    """One argument of a method: its OSC type tag and its range (``MIN``/``MAX`` or ``VALS``), when known."""

    tag: str
    lo: float | None = None
    hi: float | None = None
    vals: tuple[str | int | float, ...] | None = None

    def range_json(self) -> dict[str, Any] | None:
        if self.vals is not None:
            return {"VALS": list(self.vals)}
        found = {key: value for key, value in (("MIN", self.lo), ("MAX", self.hi)) if value is not None}
        return found or None


@dataclass(slots=True)
class OscNode:
    """A container (``children``) or a method (``args`` set; ``()`` for one that takes no argument)."""

    path: str
    description: str = ""
    args: tuple[Arg, ...] | None = None
    access: int = WRITE
    #: Other argument lists the method also takes (OSCQuery ``OVERLOADS``), e.g. a scene with a morph length.
    overloads: tuple[tuple[Arg, ...], ...] = ()
    #: The signal name whose latest value is this method's ``VALUE`` (``osc.<path>``), for readable methods.
    value_name: str | None = None
    children: dict[str, OscNode] = field(default_factory=dict)

    @property
    def is_method(self) -> bool:
        return self.args is not None


@dataclass(frozen=True, slots=True)
class ControlAddress:
    """An address that steers the bridge itself, as the OSC input's control handlers take it."""

    path: str
    args: tuple[Arg, ...]
    description: str
    overloads: tuple[tuple[Arg, ...], ...] = ()


#: The bridge's own control addresses (``inputs/osc.py`` ``CONTROL_PREFIX``): ``/metadj/profile`` switches
#: profiles (run/show.py); the others mirror the web control API (docs/web.md) and the scenes (docs/profiles.md).
CONTROL_ADDRESSES: tuple[ControlAddress, ...] = (
    ControlAddress("/metadj/profile", (Arg("s"),),
                   "switch to this show profile file (only those the running profile allows)"),
    ControlAddress("/metadj/theme", (Arg("s"),), "switch to this theme, with the theme transition"),
    ControlAddress("/metadj/prompt", (Arg("s"),), "play this prompt now, with the theme's prompt transition"),
    ControlAddress("/metadj/crossfade", (Arg("f", 0.0, 1.0),), "crossfade between the theme's first two prompts"),
    ControlAddress("/metadj/action", (Arg("s", vals=CONTROL_ACTIONS),),
                   "panic (again releases it), pause, resume, reset_cache, tap (tap tempo), nudge_forward and "
                   "nudge_back (the beat grid by 1/16 beat), downbeat (the bar begins on the beat nearest now)"),
    ControlAddress("/metadj/scene/save", (Arg("s"),), "save the lasting state (theme, prompts, parameters) as a scene"),
    ControlAddress("/metadj/scene/recall", (Arg("s"),),
                   "recall a scene at once; with a second argument, morph to it over that many bars (0-64)",
                   overloads=((Arg("s"), Arg("f", 0.0, 64.0)),)),
)


# ------------------------------------------------------------------------------------------ the tree


def _entry_args(entry: OscAddress) -> tuple[Arg, ...]:
    """The arguments a preset address takes: its indices (AbletonOSC track, clip), then its value."""
    lead = tuple(Arg("i", 0) for _ in range(entry.index_args))
    lo, hi = entry.range if entry.range is not None else (None, None)
    if entry.kind in ("trigger", "transport"):  # a button: 1 on, 0 off
        value = Arg("i", 0, 1)
    elif entry.kind == "beat":
        value = Arg("i", 0)
    else:
        value = Arg("f", lo, hi)
    return (*lead, value)


def _entry_description(entry: OscAddress) -> str:
    if entry.kind == "trigger" and "release" not in entry.meaning:
        return f"{entry.meaning} (1 fires, 0 is the button's release)"
    return entry.meaning


def _signal_range(profile: ShowProfile, name: str) -> tuple[float | None, float | None]:
    """The range a profile expects on a signal it reads without a preset: a leading ``range`` transform's input
    range, else 0..1 where the target or a threshold works on 0..1 and nothing rescales first."""
    for mapping in profile.mappings:
        if not isinstance(mapping.source, SignalSource) or mapping.source.name != name:
            continue
        first = mapping.transforms[0] if mapping.transforms else None
        if isinstance(first, Range):
            return min(first.in_lo, first.in_hi), max(first.in_lo, first.in_hi)
        if isinstance(first, Scale):
            continue
        if isinstance(first, Threshold) or mapping.target.kind in _UNIT_TARGETS or \
                mapping.target.name == "select":
            return 0.0, 1.0
    return None, None


def _reads(profile: ShowProfile) -> Iterator[tuple[str, bool, str]]:
    """(OSC address, read as a signal?, who reads it) for every ``osc.`` name the profile's mappings and switches
    read, in profile order."""
    for mapping in profile.mappings:
        source = mapping.source
        if isinstance(source, SignalSource):
            name, signal = source.name, True
        elif isinstance(source, TriggerSource):
            name, signal = source.name, False
        elif isinstance(source, Envelope):
            name, signal = source.trigger, False
        else:
            continue
        if name.startswith("osc."):
            yield name[4:], signal, f"mapping {mapping.name}"
    for switch in profile.switches:
        if switch.trigger.startswith("osc."):
            yield switch.trigger[4:], False, "a profile switch"


def _concrete(address: str) -> bool:
    """Whether ``address`` is one OSC method's address (no wildcard, no empty or odd parts)."""
    if not address.startswith("/") or address == "/" or _WILDCARD.search(address):
        return False
    return all(_PART.fullmatch(part) and "#" not in part for part in address[1:].split("/"))


def _indexed_entry(decoder: OscDecoder, address: str) -> tuple[str, OscAddress, tuple[int, ...]] | None:
    """``/live/track/get/volume/1`` -> (``/live/track/get/volume``, its entry, (1,)): a name with an AbletonOSC
    getter's indices appended (docs/osc.md)."""
    parts = address.split("/")
    for count in (1, 2):
        tail = parts[-count:]
        if len(parts) - count < 2 or not all(p.isdigit() for p in tail):
            continue
        base = "/".join(parts[:-count])
        entry = decoder.entry_for(base)
        if entry is not None and entry.index_args == count:
            return base, entry, tuple(int(p) for p in tail)
    return None


def _methods(profile: ShowProfile, presets: Iterable[OscPreset | str]) -> dict[str, OscNode]:
    decoder = OscDecoder(presets)
    methods: dict[str, OscNode] = {}
    readers: dict[str, list[str]] = {}
    for entry in decoder.entries:
        if _concrete(entry.pattern) and entry.pattern not in methods:
            methods[entry.pattern] = OscNode(entry.pattern, _entry_description(entry), _entry_args(entry),
                                             value_name=None if entry.kind == "trigger" or entry.index_args
                                             else "osc." + entry.pattern)
    for address, signal, reader in _reads(profile):
        if address.startswith("/metadj/") or not _concrete(address):
            continue  # the bridge's own controls are listed apart; a wildcard subscription is no one address
        indexed = _indexed_entry(decoder, address)
        if indexed is not None:
            base, entry, read = indexed
            if base not in methods:
                methods[base] = OscNode(base, _entry_description(entry), _entry_args(entry))
            readers.setdefault(base, []).append(f"{reader} ({'/'.join(map(str, read))})")
            continue
        known = decoder.entry_for(address)
        if known is not None and known.index_args == 0:
            if address not in methods:
                methods[address] = OscNode(address, _entry_description(known), _entry_args(known),
                                           value_name=None if known.kind == "trigger" else "osc." + address)
        elif address not in methods:
            if signal:
                lo, hi = _signal_range(profile, "osc." + address)
                methods[address] = OscNode(address, "a value", (Arg("f", lo, hi),), value_name="osc." + address)
            else:
                methods[address] = OscNode(address, "a trigger: a message without a number fires it", ())
        readers.setdefault(address, []).append(reader)
    for address, who in readers.items():
        node = methods[address]
        node.description = f"{node.description}; read by {', '.join(dict.fromkeys(who))}"
    return methods


def _control_nodes(profile: ShowProfile) -> Iterator[OscNode]:
    """The control addresses, with the profile's theme and scene names as the choices where a name is asked."""
    choices = {"/metadj/theme": tuple(t.name for t in profile.themes),
               "/metadj/scene/recall": tuple(scene.name for scene in profile.scenes)}
    for control in CONTROL_ADDRESSES:
        args, overloads = control.args, control.overloads
        names = choices.get(control.path)
        if names:
            args = (Arg("s", vals=names), *args[1:])
            overloads = tuple((Arg("s", vals=names), *more[1:]) for more in overloads)
        yield OscNode(control.path, control.description, args, overloads=overloads)


def build_space(profile: ShowProfile, presets: Iterable[OscPreset | str]) -> OscNode:
    """The address space of a bridge running ``profile`` with these OSC presets, as a tree rooted at ``/``."""
    root = OscNode("/", f"metadj-bridge: {profile.name}", children={})
    for node in (*_methods(profile, presets).values(), *_control_nodes(profile)):
        parent = root
        parts = node.path[1:].split("/")
        for depth, part in enumerate(parts[:-1]):
            child = parent.children.get(part)
            if child is None:
                child = parent.children[part] = OscNode("/" + "/".join(parts[: depth + 1]))
            elif child.is_method:
                break  # a method cannot hold others (OSCQuery): the deeper address is left out
            parent = child
        else:
            if parts[-1] not in parent.children:
                parent.children[parts[-1]] = node
    return root


# ------------------------------------------------------------------------------------------ JSON


def _args_json(args: tuple[Arg, ...]) -> dict[str, Any]:
    out: dict[str, Any] = {"TYPE": "".join(a.tag for a in args) or "N"}
    ranges = [a.range_json() for a in args]
    if any(r is not None for r in ranges):
        out["RANGE"] = ranges
    return out


def render(node: OscNode, values: Mapping[str, float] | None = None) -> dict[str, Any]:
    """One node (and everything under it) as OSCQuery JSON; ``VALUE`` from ``values`` by signal name."""
    out: dict[str, Any] = {"FULL_PATH": node.path}
    if node.description:
        out["DESCRIPTION"] = node.description
    if not node.is_method:
        out["ACCESS"] = 0
        out["CONTENTS"] = {name: render(child, values) for name, child in node.children.items()}
        return out
    assert node.args is not None
    out.update(_args_json(node.args))
    out["ACCESS"] = node.access
    if values is not None and node.value_name is not None:
        out["ACCESS"] |= READ
        value = values.get(node.value_name)
        if value is not None and math.isfinite(value):  # JSON has no NaN
            out["VALUE"] = [value]
    if node.overloads:
        out["OVERLOADS"] = [_args_json(args) for args in node.overloads]
    return out


def find(root: OscNode, path: str) -> OscNode | None:
    """The node at an OSC path (``/`` is the root; a trailing ``/`` is ignored), or None."""
    node = root
    for part in path.strip("/").split("/") if path.strip("/") else ():
        child = node.children.get(part)
        if child is None:
            return None
        node = child
    return node


def answer(root: OscNode, path: str, query: Iterable[str], host_info: Mapping[str, Any],
           values: Mapping[str, float] | None = None) -> tuple[int, dict[str, Any] | None]:
    """An OSCQuery HTTP request (its path and the names in its query string) -> (status, JSON body or None).

    ``?HOST_INFO`` answers whatever the path; ``?ATTR`` answers that attribute alone (``{}`` when the node has
    none); an unknown path is 404, an unknown or unsupported attribute 400, a write-only ``VALUE`` 204 (no body).
    """
    asked = [name.upper() for name in query]
    if "HOST_INFO" in asked:
        return 200, dict(host_info)
    node = find(root, path)
    if node is None:
        return 404, {"error": f"no OSC address {path!r} in this bridge's address space (GET / lists them all)"}
    for name in asked:
        if name in UNSUPPORTED:
            return 400, {"error": f"?{name}: this server does not offer that OSCQuery attribute"}
        if name not in ATTRIBUTES:
            return 400, {"error": f"?{name}: unknown attribute (known: HOST_INFO, {', '.join(ATTRIBUTES)})"}
    full = render(node, values)
    if not asked:
        return 200, full
    if "VALUE" in asked and not full.get("ACCESS", 0) & READ:
        return 204, None
    return 200, {name: full[name] for name in asked if name in full}
