"""Answers of the emulator's read-only endpoints that need no server state of their own."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from metadj_bridge.emulator.config import EmulatorConfig
from metadj_bridge.emulator.records import Counters
from metadj_bridge.emulator.session import EmulatorSession
from metadj_bridge.emulator.validation import RequestRejected


def emulator_metrics(counters: Counters, session: EmulatorSession | None, active: int,
                     config: EmulatorConfig) -> dict[str, Any]:
    """``GET /_emulator/metrics``: totals over the server's life and the newest session's state.

    ``parameters`` are the parameters as the chunk loop *applied* them (one-shots consumed are gone),
    unlike Scope's ``/api/v1/session/parameters``, which shows them as received.
    """
    pipeline = session.pipeline if session else None
    return {
        "messages_received": counters.messages_received,
        "messages_applied": counters.messages_applied,
        "messages_dropped": counters.messages_dropped,
        "frames_sent": counters.frames_sent,
        "sessions": counters.sessions,
        "sessions_total": counters.sessions,
        "active_sessions": active,
        "chunk_index": pipeline.chunk_index if pipeline else 0,
        "fps": pipeline.fps if pipeline else config.fps,
        "chunk_frames": pipeline.chunk_frames if pipeline else config.chunk_frames,
        "parameters": session.parameters if session else {},
        "paused": pipeline.paused if pipeline else False,
    }


def tail_query(query: Mapping[str, str]) -> tuple[int, int | None]:
    """``lines`` (1-1000) and ``since_offset`` of ``GET /api/v1/logs/tail``; 422 as FastAPI answers."""
    try:
        lines = int(query.get("lines", "100"))
        since = query.get("since_offset")
        since_offset = int(since) if since is not None else None
    except ValueError as exc:
        raise RequestRejected(
            422, [{"type": "int_parsing", "loc": ["query"], "msg": str(exc), "input": None}]
        ) from exc
    if not 1 <= lines <= 1000:
        raise RequestRejected(422, [
            {"type": "less_than_equal", "loc": ["query", "lines"], "msg": "Input should be 1-1000", "input": lines}
        ])
    return lines, since_offset
