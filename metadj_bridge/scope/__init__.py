"""Everything between the bridge and a Scope server: HTTP API, WebRTC session, parameter sending."""

from metadj_bridge.scope.api import ScopeClient
from metadj_bridge.scope.sender import PacerConfig, ParameterSender
from metadj_bridge.scope.session import Backoff, ScopeSession, SessionConfig, SessionState

__all__ = ["Backoff", "PacerConfig", "ParameterSender", "ScopeClient", "ScopeSession", "SessionConfig", "SessionState"]
