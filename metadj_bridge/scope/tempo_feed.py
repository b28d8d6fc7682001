"""Feeding Scope's own tempo sync with the music's beat (scope-api.md §9).

Scope has no audio analysis: its beat-locked features (``modulations``, ``beat_cache_reset_rate``, changes
quantised with ``quantize_mode``) follow Ableton Link or MIDI clock on the server, or the beat state a client
sends over the data channel (``bpm``, ``beat_phase``, ``bar_position``, ``beat_count``, ``is_playing``). Scope
uses a client's state only while its tempo sync is enabled, keeps it for 2 s, and does not run it on: it takes
the phase as it was when the message arrived.

So, while ``GET /api/v1/tempo/status`` says tempo sync is on, the bridge puts its BeatClock's beat into every
message, projected to when it reaches Scope (half the measured round trip ahead). The messages go once per
chunk (the sender's pacing), which keeps the state fresh. The status is asked at the start and every
``POLL_SECONDS``; a server without the endpoint (older Scope) never gets beat state.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Callable, Mapping
from typing import Any

from metadj_bridge.scope.api import ScopeClient
from metadj_bridge.signals import TempoState

__all__ = ["BPM_RANGE", "POLL_SECONDS", "TempoSyncWatch", "beat_state", "sync_source"]

log = logging.getLogger(__name__)

#: How often Scope's tempo sync status is asked again (a performer may switch it on mid-show).
POLL_SECONDS = 10.0


#: The tempos Scope's schema takes for ``bpm``; a grid outside them (or not finite) is not sent.
BPM_RANGE = (1.0, 999.0)


def beat_state(tempo: TempoState, ahead: float = 0.0) -> dict[str, Any] | None:
    """The data-channel beat state for ``tempo``, ``ahead`` seconds on (the grid runs at ``tempo.bpm``); None
    when the tempo or the beat is not a number Scope takes (a source that says 0 BPM, or 5000)."""
    if not (BPM_RANGE[0] <= tempo.bpm <= BPM_RANGE[1]) or not math.isfinite(tempo.beat):
        return None
    # Counted from the bar's start: Scope quantises to bars by beat_count % beats_per_bar (parameter_scheduler.py).
    beats = tempo.bar_beat + (max(0.0, ahead) * tempo.bpm / 60.0 if tempo.playing else 0.0)
    per_bar = max(1, tempo.beats_per_bar)
    count = math.floor(beats)
    return {
        "bpm": round(float(tempo.bpm), 3),
        "beat_phase": round(beats - count, 4),
        "bar_position": round(beats % per_bar, 4),
        "beat_count": int(count),
        "is_playing": bool(tempo.playing),
    }


def sync_source(status: object) -> str | None:
    """The source of Scope's tempo sync from a ``/api/v1/tempo/status`` answer, None when it is off or unreadable."""
    if not isinstance(status, Mapping) or status.get("enabled") is not True:
        return None
    source = status.get("source")
    kind = source.get("type") if isinstance(source, Mapping) else None
    return str(kind) if isinstance(kind, str) and kind else "on"


class TempoSyncWatch:
    """Asks Scope whether its tempo sync is on, at the start and every ``POLL_SECONDS``.

    ``source`` is the tempo sync's source while it is on (``link``, ``midi_clock``), else None; changes are
    logged once each. ``on_change`` (if given) hears every change.
    """

    def __init__(self, client: ScopeClient, *, poll: float = POLL_SECONDS,
                 on_change: Callable[[str | None], None] | None = None) -> None:
        self.client = client
        self.poll = poll
        self.on_change = on_change
        self.source: str | None = None

    async def check(self) -> str | None:
        """Ask once; the tempo sync source, or None."""
        source = sync_source(await self.client.get_json_or_none("/api/v1/tempo/status"))
        if source != self.source:
            if source is not None:
                log.info("Scope's tempo sync is on (%s): its modulations and quantised changes now follow the "
                         "bridge's beat", source)
            else:
                log.info("Scope's tempo sync is off: the bridge stops sending it the beat")
            self.source = source
            if self.on_change is not None:
                self.on_change(source)
        return source

    async def run(self) -> None:
        while True:
            await self.check()
            await asyncio.sleep(self.poll)
