"""Settings of one emulated Scope server, and the fault switches tests flip while it runs."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from metadj_bridge.errors import ConfigError
from metadj_bridge.profile.options import MAX_SECONDS  # a day: a load, a stale status or a fault's delay at most

if TYPE_CHECKING:
    from metadj_bridge.emulator.hostile import HostileMedia

#: Scope's own default port (``daydream-scope --port``).
DEFAULT_PORT = 8000
#: Frames per second the Wan pipelines make on a 4090, roughly; other pipelines have their own pace.
DEFAULT_FPS = 20.0
#: How long a GPU pipeline's emulated load takes (weight-free pipelines load at once, as on a real server).
DEFAULT_LOAD_SECONDS = 0.5
#: What a real Scope without TURN credentials hands out (``server/webrtc.py`` create_rtc_config).
SCOPE_STUN = {"urls": ["stun:stun.l.google.com:19302"], "username": None, "credential": None}
#: The status race (scope-api.md §2): how long polls keep showing the old pipeline after a load POST.
DEFAULT_STALE_SECONDS = 0.2
#: The longest emulated network delay, in ms.
MAX_DELAY_MS = 5000
#: Entries kept in each of the /_emulator/log lists and in the log tail.
DEFAULT_LOG_LIMIT = 20_000


@dataclass
class EmulatorConfig:
    """How the emulator binds and behaves.

    ``chunk_frames=None`` takes the loaded pipeline's chunk size from Scope's code (``catalogue``:
    12 for the Wan pipelines, 4 for passthrough, 1 for gray and controller-viz); an integer forces
    that size for every pipeline. ``fps=None`` lets each pipeline keep its own pace (20 fps for the
    Wan pipelines, 56 for controller-viz, the input's rate for passthrough and the other video
    filters); a number forces that pace for every pipeline. One data-channel message is applied per
    generated chunk, and one every 10 ms while a pipeline waits for input or is paused.
    """

    host: str = "127.0.0.1"
    #: 0 picks a free port; read ``ScopeEmulator.port`` after ``start()``.
    port: int = DEFAULT_PORT
    chunk_frames: int | None = None
    fps: float | None = None
    #: Imitate a server without CUDA: only the weight-free pipelines are offered, GPU ones fail to load.
    cpu_only: bool = False
    #: Imitate the server generation before 2026-01-14, which wants ``{"pipeline_id": ...}``.
    legacy_api: bool = False
    #: How long a GPU pipeline's load takes once it has started (weight-free pipelines take no time).
    load_seconds: float = DEFAULT_LOAD_SECONDS
    #: Handed out by /api/v1/webrtc/ice-servers and used by the server's own peer connections.
    ice_servers: list[dict[str, Any]] = field(default_factory=lambda: [dict(SCOPE_STUN)])
    stale_seconds: float = DEFAULT_STALE_SECONDS
    #: Fault switches at start-up (also settable at runtime through POST /_emulator/faults).
    slow_load: float = 0.0
    fail_load: bool = False
    log_limit: int = DEFAULT_LOG_LIMIT
    #: An emulated far network: everything the server receives arrives this many ms late (``netdelay``), so the
    #: client's round trip grows by as much.
    delay_ms: float = 0.0
    #: Test-only: what a broken or hostile server sends back (``hostile.py``). None: the emulator as always.
    hostile: HostileMedia | None = None

    def __post_init__(self) -> None:
        if not 0 <= self.port <= 65535:
            raise ConfigError(f"emulator port: {self.port} is not a TCP port (0-65535; 0 picks a free one)")
        if self.fps is not None and not (math.isfinite(self.fps) and 0 < self.fps <= 240):
            raise ConfigError(f"emulator fps: {self.fps} is outside the allowed range (more than 0, at most 240)")
        if self.chunk_frames is not None and not 1 <= self.chunk_frames <= 240:
            raise ConfigError(f"emulator chunk frames: {self.chunk_frames} is outside the allowed range (1-240)")
        for name in ("load_seconds", "stale_seconds", "slow_load"):
            value = getattr(self, name)
            if not (math.isfinite(value) and 0 <= value <= MAX_SECONDS):
                raise ConfigError(f"emulator {name.replace('_', ' ')}: {value} must be 0-{MAX_SECONDS} seconds")
        if not (math.isfinite(self.delay_ms) and 0 <= self.delay_ms <= MAX_DELAY_MS):
            raise ConfigError(f"emulator delay: {self.delay_ms} ms is outside the allowed range (0-{MAX_DELAY_MS})")
        if self.log_limit < 1:
            raise ConfigError(f"emulator log limit: {self.log_limit} must be at least 1")


@dataclass
class Faults:
    """Misbehaviour switched on at runtime to rehearse the client's healing paths."""

    slow_load: float = 0.0
    fail_load: bool = False
    stale_seconds: float = DEFAULT_STALE_SECONDS
    #: The next this many sessions lose every SCTP packet the server receives: their data channel never opens
    #: although the connection does (a data-channel handshake lost on the way).
    lose_channel: int = 0

    def take_lose_channel(self) -> bool:
        """Whether the session now being made loses its data channel (counts one off ``lose_channel``)."""
        if self.lose_channel <= 0:
            return False
        self.lose_channel -= 1
        return True

    def update(self, changes: Mapping[str, Any]) -> None:
        """Apply the switches present in ``changes``; ValueError (and no change) for a bad value."""
        new = self.as_dict()
        for key in ("slow_load", "stale_seconds"):
            if key in changes:
                value = changes[key]
                if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= MAX_SECONDS:
                    raise ValueError(f"{key}: {value!r} is not a number of seconds (0-{MAX_SECONDS})")
                new[key] = float(value)
        if "fail_load" in changes:
            if not isinstance(changes["fail_load"], bool):
                raise ValueError(f"fail_load: {changes['fail_load']!r} is not true or false")
            new["fail_load"] = changes["fail_load"]
        if "lose_channel" in changes:
            count = changes["lose_channel"]
            if isinstance(count, bool) or not isinstance(count, int) or not 0 <= count <= 1000:
                raise ValueError(f"lose_channel: {count!r} is not a number of sessions (0-1000)")
            new["lose_channel"] = count
        self.slow_load, self.fail_load, self.stale_seconds = new["slow_load"], new["fail_load"], new["stale_seconds"]
        self.lose_channel = new["lose_channel"]

    def as_dict(self) -> dict[str, Any]:
        return {"slow_load": self.slow_load, "fail_load": self.fail_load, "stale_seconds": self.stale_seconds,
                "lose_channel": self.lose_channel}
