"""A Scope-compatible server: rehearse without a GPU, and the far end of every WebRTC test.

``ScopeEmulator`` serves Daydream Scope 0.2.4's HTTP + WebRTC API with aiortc, offers Scope's own
pipeline catalogue (``catalogue.py``: schemas dumped from Scope's code, chunk sizes, paces and the
runtime keys each pipeline reads per mode), applies data-channel parameters with Scope's queueing
rules (8 messages, newest dropped, one per chunk or one per 10 ms while waiting for input) and draws
frames that show only what the imitated pipeline reads. By default it imitates a GPU server (every
pipeline loads); ``cpu_only`` imitates one without CUDA. Run it with ``python -m metadj_bridge.emulator``
or ``metadj-bridge emulate``; the start line says what it imitates, each session which pipeline.

Endpoints (Scope's, see ``shared/scope-api.md``)::

    GET    /health                        {status, timestamp, server_start_time, version "0.2.4", git_commit,
                                           emulator: true}
    GET    /api/v1/hardware/info          {vram_gb: 24.0 (null if cpu_only), spout|ndi|syphon: {available: false, ...}}
    POST   /api/v1/pipeline/load          {pipeline_ids, load_params}
                                          | {pipelines: [{node_id, pipeline_id, load_params}]}
                                          (legacy_api: {pipeline_id, load_params}); 200 at once, loads in the
                                          background; an id not offered fails ("Invalid pipeline ID: x" in the log)
    GET    /api/v1/pipeline/status        {status, pipeline_id, load_params (as sent), loaded_lora_adapters (null
                                           unless LoRAs), error: null, loading_stage, produces_video, produces_audio}
    GET    /api/v1/pipelines/schemas      {pipelines: {id: Scope's schema entry}}
    GET    /api/v1/models/status?pipeline_id=X   {downloaded: true, progress: null}
    GET    /api/v1/webrtc/ice-servers     {iceServers: config.ice_servers} (Google's STUN server, as Scope)
    POST   /api/v1/webrtc/offer           {sdp, type, initialParameters} -> {sdp, type: "answer", sessionId}
    PATCH  /api/v1/webrtc/offer/{id}      {candidates: [{candidate, sdpMid, sdpMLineIndex}]} -> 204 | 404
    DELETE /api/v1/webrtc/offer/{id}      204 always
    POST   /api/v1/assets?filename=x.png  raw body -> {path, filename, size_bytes}; files live until aclose()
    GET    /api/v1/session/parameters     {parameters: newest session's offer + messages as received, paused too}
    POST   /api/v1/session/parameters     {...} -> {status, applied_parameters}: to every session, paused at once
    GET    /api/v1/session/metrics        {sessions: {id: {frames_in, frames_out, fps_in, fps_out, pipeline_fps, ...}},
                                           gpu: {vram_*_mb} ({} if cpu_only)}
    GET    /api/v1/logs/tail?lines=N[&since_offset=K]   {lines, offset}

Emulator-only::

    POST   /_emulator/faults   any of {restart: bool, stop_video: bool, slow_load: s, fail_load: bool, stale_seconds: s}
                               -> {slow_load, fail_load, stale_seconds, server_start_time, active_sessions};
                               422 if unknown
    GET    /_emulator/log      {offers: [{...initialParameters as sent, sessionId}],
                                received|dropped: [{session_id, index, t, message}],
                                applied: [{session_id, chunk, t, message}]}   (t = time.monotonic(); last 20,000 each)
    GET    /_emulator/metrics  {messages_received, messages_applied, messages_dropped, frames_sent, sessions,
                                active_sessions, chunk_index, fps, chunk_frames, parameters (as applied), paused}

Imports only the ground floor (:mod:`metadj_bridge.parameters`, :mod:`metadj_bridge.errors`,
:mod:`metadj_bridge.lifecycle`): never the running bridge (:mod:`metadj_bridge.run`). ``ScopeEmulator`` and
``EmulatorConfig`` load on first use, so importing :mod:`.config` or :mod:`.params` does not pull in aiortc.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from metadj_bridge.emulator.config import EmulatorConfig
    from metadj_bridge.emulator.server import ScopeEmulator

__all__ = ["EmulatorConfig", "ScopeEmulator"]


def __getattr__(name: str) -> object:
    if name == "EmulatorConfig":
        from metadj_bridge.emulator.config import EmulatorConfig

        return EmulatorConfig
    if name == "ScopeEmulator":
        from metadj_bridge.emulator.server import ScopeEmulator

        return ScopeEmulator
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
