"""Answers of the emulator's read-only endpoints that need no server state of their own."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any

from aiohttp import web

from metadj_bridge.emulator.config import EmulatorConfig
from metadj_bridge.emulator.records import Counters
from metadj_bridge.emulator.session import EmulatorSession
from metadj_bridge.emulator.validation import RequestRejected, initial_parameters


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


def add_session_routes(router: web.UrlDispatcher, sessions: Callable[[], Iterable[EmulatorSession]],
                       read_json: Callable[[web.Request], Awaitable[Any]]) -> None:
    """``POST /api/v1/session/parameters`` as Scope answers it (``mcp_router.py``): the body checked as Scope's
    ``Parameters`` model checks it (its defaults added: every call also sends ``vace_context_scale`` 1.0 and
    ``prompt_interpolation_method`` linear), then applied to every open session as a data-channel message would be
    (``paused`` at once)."""

    async def post(request: web.Request) -> web.Response:
        body = await read_json(request)
        params = initial_parameters(body if body is not None else {})
        for session in list(sessions()):
            if not session.closed and session.pc.connectionState not in ("closed", "failed"):
                session.apply(dict(params))
        return web.json_response({"status": "ok", "applied_parameters": params})

    router.add_post("/api/v1/session/parameters", post)
