"""Everything between the bridge and a Scope server.

- ``api.py``: Scope's HTTP API as an async client; ``http_errors.py``: every way a request fails, as a
  ``ScopeError`` a performer can act on.
- ``protocol.py``: Scope's wire messages (load bodies, the offer's ``initialParameters``); pure.
- ``offer.py``: what a server offers (its pipeline schemas) and the one-line refusal of a pipeline or input mode
  it cannot play, checked before every load; ``load_errors.py``: a failed load in Scope's own words (its log's
  specific line) with advice that fits the cause; ``session_end.py``: ending a session without a needless DELETE.
- ``session.py``: the self-healing WebRTC session callers use, made of ``connection.py`` (one connection attempt
  at a time: health, load, offer, peer connection, frames, the silent-video watchdog) and ``reconnect.py`` (the
  retry policy: backoff, rejoining a restarted server, giving up only on fatal start-up errors).
- ``sender.py``: flow-controlled parameter sending over the data channel.

Imports the ground floor (errors, parameters, lifecycle) only: never ``inputs/`` or ``mapping/``.
"""

from metadj_bridge.scope.api import ScopeClient
from metadj_bridge.scope.sender import PacerConfig, ParameterSender
from metadj_bridge.scope.session import Backoff, ScopeSession, SessionConfig, SessionState

__all__ = ["Backoff", "PacerConfig", "ParameterSender", "ScopeClient", "ScopeSession", "SessionConfig", "SessionState"]
