"""Show-log events folded by kind, so that a flood of requests cannot fill the disk.

A show log notes every event (a theme change, a control request, a scene, a switch) next to the parameter messages.
A script or a stuck button can send thousands of control requests a second, and each one is an event (about
0.36 MB/s at 3000 requests a second); the messages themselves are paced by Scope and stay few. So events of one
kind (:func:`event_kind`: ``control: theme``, ``theme``, ``scene``...) that come closer than ``interval`` fold into
one entry: an event after a quiet interval is written at once; those that follow within it are counted, and the
latest is written when the interval ends, with how many it stands for. A show that changes a theme every few
seconds writes every event as it came; a flood writes a few entries a second per kind.

Pure: times in, entries out (``(t, text, count)``); :class:`~metadj_bridge.showlog.log.ShowLog` asks for the entries
that are due from its writer thread, and for the rest when it closes.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["FOLD_INTERVAL", "EventFolder", "event_kind"]

#: Events of one kind closer than this fold into one entry: at most about four entries a second per kind.
FOLD_INTERVAL = 0.25
#: Kinds followed one by one; any further ones share one (the project writes a handful, so this only bounds memory).
MAX_KINDS = 64
_OTHER = "(other)"

#: (t, text, count): an entry to write, the latest of ``count`` events.
Entry = tuple[float, str, int]


def event_kind(text: str) -> str:
    """An event's kind: its first word (``theme neon -> forest``: ``theme``), or its first two when the first says
    where it came from (``control: theme forest (web from 192.168.1.20)``: ``control: theme``)."""
    words = text.split(maxsplit=2)
    if not words:
        return ""
    return f"{words[0]} {words[1]}" if words[0].endswith(":") and len(words) > 1 else words[0]


@dataclass
class _Kind:
    #: From this time on, an event of the kind is written at once (when none is held).
    quiet_until: float = float("-inf")
    held: Entry | None = None


class EventFolder:
    """Folds events of one kind closer than ``interval`` (the module's docstring says how). Not thread-safe: the
    show log calls it under its lock."""

    def __init__(self, interval: float = FOLD_INTERVAL, max_kinds: int = MAX_KINDS) -> None:
        self.interval = interval
        self.max_kinds = max_kinds
        self._kinds: dict[str, _Kind] = {}
        #: Events folded into a later entry so far.
        self.folded = 0

    def add(self, t: float, text: str, kind: str) -> list[Entry]:
        """One event at ``t``: the entries to write now (this one, or one held before whose interval ended)."""
        state = self._kinds.get(kind)
        if state is None:
            if len(self._kinds) >= self.max_kinds:
                kind = _OTHER
            state = self._kinds.setdefault(kind, _Kind())
        out = self._due(state, t)
        if state.held is None and t >= state.quiet_until:
            out.append((t, text, 1))
            state.quiet_until = t + self.interval
        else:
            count = state.held[2] + 1 if state.held is not None else 1
            self.folded += count > 1
            state.held = (t, text, count)
        return out

    def due(self, now: float) -> list[Entry]:
        """The held entries whose interval has ended by ``now``."""
        return [entry for state in self._kinds.values() for entry in self._due(state, now)]

    def drain(self) -> list[Entry]:
        """Every held entry (the show log is closing)."""
        out = [state.held for state in self._kinds.values() if state.held is not None]
        for state in self._kinds.values():
            state.held = None
        return out

    def _due(self, state: _Kind, now: float) -> list[Entry]:
        if state.held is None or now < state.quiet_until:
            return []
        held, state.held = state.held, None
        state.quiet_until += self.interval  # as if written when its interval ended: a flood gets one per interval
        return [held]
