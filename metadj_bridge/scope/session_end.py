"""Ending a session on Scope without leaving it behind and without a warning in Scope's log (scope-api.md §5).

Scope 0.2.4 drops a session by itself when its peer connection closes (``on_connectionstatechange`` calls
``remove_session``). Its ``DELETE /api/v1/webrtc/offer/{id}`` calls the same ``remove_session``, which closes the
server's peer, whose "closed" event then calls ``remove_session`` a second time: whatever the order, a DELETE
always makes Scope log "Attempted to remove non-existent session" once. So the bridge closes its peer first,
watches Scope's session metrics until the session is gone, and DELETEs only a session Scope still holds after
that (its peer never heard of the close: a lossy network, a far-away server). A server whose metrics do not list
sessions gets the DELETE as before.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping

from metadj_bridge.scope.api import ScopeClient

#: How long Scope is given to notice the closed peer and drop the session by itself.
DROP_WAIT = 1.0
#: How often its session metrics are read meanwhile.
DROP_POLL = 0.05


async def scope_dropped(client: ScopeClient, session_id: str, within: float = DROP_WAIT) -> bool:
    """True once Scope no longer lists ``session_id`` among its active sessions; False when it still does after
    ``within`` seconds, or when its answer cannot tell (no metrics endpoint, another shape, no answer)."""
    deadline = time.monotonic() + within
    while True:
        try:
            data = await asyncio.wait_for(client.get_json_or_none("/api/v1/session/metrics"), timeout=within)
        except TimeoutError:
            return False
        sessions = data.get("sessions") if isinstance(data, Mapping) else None
        if not isinstance(sessions, Mapping):
            return False
        if session_id not in sessions:
            return True
        if time.monotonic() >= deadline:
            return False
        await asyncio.sleep(DROP_POLL)
