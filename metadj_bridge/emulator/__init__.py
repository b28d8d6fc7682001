"""A Scope-compatible server: rehearse without a GPU, and the far end of every WebRTC test.

``ScopeEmulator`` serves Daydream Scope 0.2.4's HTTP + WebRTC API with aiortc, applies data-channel
parameters with Scope's queueing rules (8 messages, newest dropped, one per chunk) and draws frames
that visibly follow them. Run it with ``python -m metadj_bridge.emulator`` or ``metadj-bridge emulate``.
"""

from metadj_bridge.emulator.config import EmulatorConfig
from metadj_bridge.emulator.server import ScopeEmulator

__all__ = ["EmulatorConfig", "ScopeEmulator"]
