"""Hear from Scope's own log when it dropped one of our parameter messages (scope-api.md §6, §10).

Scope says nothing on the data channel when its 8-message queue is full; it only logs, at INFO,
``Parameter queue full for <pipeline>, dropping parameter update``. Its log is readable over HTTP
(``GET /api/v1/logs/tail?since_offset=N`` answers the new lines and the offset to ask from next), so while a
session streams this polls it four times a second and tells the sender how many messages were dropped. The
sender then repairs (sends the lasting state again once the queue has drained) and slows down: a drop means a
chunk takes longer than the sender believed.

The same lines tell when something else paused the stream: Scope logs ``Video track paused`` for every pause,
whoever sent it (its REST API and OSC ``/scope/paused`` reach every session, the bridge's too), and says nothing on
the data channel. When the newest pause line says paused and the show is not paused, the sender sends
``paused: false`` again and one warning (rate-limited) says what happened.

A server without the endpoint, or one that fails to answer, simply gives no evidence: the watch goes on quietly.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from metadj_bridge.errors import RateLimitedWarning

if TYPE_CHECKING:
    from metadj_bridge.scope.api import ScopeClient
    from metadj_bridge.scope.sender import ParameterSender

#: What Scope 0.2.4 (``pipeline_processor.py``) and the emulator log when the parameter queue is full.
DROP_LINE = "Parameter queue full"
#: What Scope 0.2.4 (``tracks.py``) and the emulator log on every pause and resume message, from any client.
PAUSE_LINE = "Video track paused"
RESUME_LINE = "Video track resumed"

log = logging.getLogger(__name__)
PAUSED_ELSEWHERE = ("Scope's video was paused by something other than this show (Scope's REST API, OSC /scope/paused "
                    "or another client; its log says 'Video track paused'); the bridge sent paused: false to play on "
                    "(pause from the control page or a mapping instead)")


def count_drops(lines: Any) -> int:
    """How many of ``lines`` (the tail endpoint's ``lines``) report a dropped parameter message."""
    if not isinstance(lines, list):
        return 0
    return sum(1 for line in lines if isinstance(line, str) and DROP_LINE in line)


def paused_last(lines: Any) -> bool | None:
    """What the newest pause or resume line among ``lines`` says: True paused, False resumed, None neither."""
    if not isinstance(lines, list):
        return None
    for line in reversed(lines):
        if isinstance(line, str):
            if PAUSE_LINE in line:
                return True
            if RESUME_LINE in line:
                return False
    return None


def _offset(answer: Any) -> int | None:
    offset = answer.get("offset") if isinstance(answer, Mapping) else None
    return offset if isinstance(offset, int) and not isinstance(offset, bool) and offset >= 0 else None


async def watch_drops(client: ScopeClient, sender: ParameterSender, interval: float = 0.25) -> None:
    """Until cancelled: every ``interval`` seconds, hand the sender the drops Scope logged since the last look.

    Lines from before the session are skipped: the first look only learns where the log ends.
    """
    paused_elsewhere = RateLimitedWarning(log, PAUSED_ELSEWHERE, interval=60.0)
    offset: int | None = None
    while offset is None:
        offset = _offset(await _tail(client, {"lines": 1}))
        if offset is None:
            await asyncio.sleep(10 * interval)  # no log endpoint (yet): look again now and then
    while True:
        await asyncio.sleep(interval)
        answer = await _tail(client, {"lines": 1000, "since_offset": offset})
        new_offset = _offset(answer)
        if new_offset is None:
            continue
        if new_offset < offset:  # the log file was rotated or the server restarted: start from its end
            offset = new_offset
            continue
        offset = new_offset
        assert isinstance(answer, Mapping)
        lines = answer.get("lines")
        dropped = count_drops(lines)
        if dropped:
            sender.on_dropped(dropped)
        if paused_last(lines) and sender.on_paused_elsewhere():
            paused_elsewhere.note("paused: false sent again")


async def _tail(client: ScopeClient, params: Mapping[str, Any]) -> Any:
    """The tail endpoint's answer, or None when there is none (any failure: the watch only looks for evidence)."""
    try:
        return await client.get_json_or_none("/api/v1/logs/tail", params)
    except Exception:  # noqa: BLE001 - a server answering nonsense here must not end the session's tasks
        return None
