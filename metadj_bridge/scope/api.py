"""Scope's HTTP API (``shared/scope-api.md`` §1-5), as an async client.

Every failure becomes a ``ScopeError`` whose message a performer can act on: server down, wrong URL or
path, TLS trouble, a server that is not Scope, a pipeline that fails or never finishes loading, a proxy that
answers with a redirect loop or a corrupt body. Every exchange has an overall deadline (``deadline``, 15 s by
default: connecting, sending, the headers and the whole body) and a size limit on the answer (``max_body``,
4 MB: Scope's largest answer, the pipeline schemas, is some tens of KB). The Scope URL may carry a query (a
proxy's ``?token=...``): paths are joined onto the URL's path and the query goes with every request.
"""

from __future__ import annotations

import asyncio
import logging
import math
import ssl
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from metadj_bridge.errors import (
    ConfigError,
    PipelineLoadError,
    PipelineLoadTimeout,
    ScopeBadAnswerError,
    ScopeError,
    ScopeHTTPError,
    ScopeNotFoundError,
    ScopeNotScopeError,
)
from metadj_bridge.scope import protocol
from metadj_bridge.scope.http_errors import (
    Reply,
    detail,
    exchange,
    ice_entries,
    not_found,
    not_json,
    preview,
    safe_json,
    text_of,
    text_or_none,
)
from metadj_bridge.scope.load_errors import load_failure, log_lines_since, log_offset
from metadj_bridge.scope.urls import endpoint, normalise_url, redact_url, session_path

log = logging.getLogger(__name__)

ProgressCallback = Callable[[str], Awaitable[None] | None]

#: The longest one HTTP exchange with Scope may take, all of it: connecting, sending, the headers and the body.
DEFAULT_DEADLINE = 15.0
#: An upload (a reference image) over a slow uplink may take longer.
UPLOAD_DEADLINE = 120.0
#: The largest answer read from Scope, for every call (Scope's largest, the pipeline schemas, is tens of KB).
MAX_BODY = 4 * 1024 * 1024

#: The seed's "pipeline stuck loading" table, plus what scope-api.md adds.
STUCK_LOADING_CAUSES = (
    "another client or an open Scope web UI tab asked for a different pipeline (close other Scope tabs and sessions)",
    "a previous session did not clean up (restart Scope, or load the pipeline by hand with curl)",
    "the model weights are still downloading or missing (GET /api/v1/models/status?pipeline_id=...)",
    "the pipeline does not fit in the GPU's memory (try quantization: fp8_e4m3fn, or a smaller resolution)",
)


@dataclass(frozen=True)
class HealthInfo:
    status: str
    version: str
    server_start_time: float
    git_commit: str
    emulator: bool = False


@dataclass(frozen=True)
class PipelineStatus:
    status: str
    pipeline_id: str | None
    load_params: dict[str, Any] | None
    loading_stage: str | None
    error: str | None

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> PipelineStatus:
        """Typed at the boundary: a field of the wrong type from the server becomes text or None."""
        params = data.get("load_params")
        return cls(
            status=str(data.get("status", "unknown")),
            pipeline_id=text_or_none(data.get("pipeline_id")),
            load_params=dict(params) if isinstance(params, Mapping) else None,
            loading_stage=text_or_none(data.get("loading_stage")),
            error=text_or_none(data.get("error")),
        )



@dataclass(frozen=True)
class Answer:
    sdp: str
    type: str
    session_id: str


class ScopeClient:
    """Async client for one Scope server.

    ``timeout`` bounds each wait for the network (connect, each read); ``deadline`` bounds a whole exchange and
    ``max_body`` the size of an answer. ``transport`` lets tests plug in httpx's ``MockTransport``; by default it
    talks HTTP for real. Use as ``async with ScopeClient(url) as scope:`` or call ``aclose()``.
    """

    def __init__(
        self,
        url: str,
        *,
        timeout: float = 10.0,
        deadline: float = DEFAULT_DEADLINE,
        max_body: int = MAX_BODY,
        verify: bool | str | ssl.SSLContext = True,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.url = normalise_url(url)
        self.deadline = deadline
        self.max_body = max_body
        self._http = httpx.AsyncClient(
            timeout=httpx.Timeout(timeout, connect=min(timeout, 5.0)),
            verify=verify,
            transport=transport,
            follow_redirects=True,
        )
        #: "current" (pipeline_ids) or "legacy" (pipeline_id); learnt from the first load.
        self.api_generation = "current"
        self._log_mark = 0  # the size of Scope's log before our last load: its failure is in what follows

    async def __aenter__(self) -> ScopeClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    # ------------------------------------------------------------------ plumbing

    def address(self, path: str) -> str:
        """The full address of ``path`` on this server, for messages (secrets removed)."""
        return redact_url(endpoint(self.url, path))

    async def _request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        deadline: float | None = None,
        **kwargs: Any,
    ) -> Reply:
        """One exchange, read whole: within the deadline, up to ``max_body``; any failure is a ScopeError."""
        url = endpoint(self.url, path, params)
        return await exchange(
            self._http, method, url, server=redact_url(self.url), max_body=self.max_body,
            deadline=self.deadline if deadline is None else deadline, **kwargs,
        )

    async def _json(self, method: str, path: str, *, ok: Sequence[int] = (200,), **kwargs: Any) -> Any:
        response = await self._request(method, path, **kwargs)
        where = f"{method} {self.address(path)}"
        if response.status_code == 404:
            raise not_found(where)
        if response.status_code not in ok:
            raise ScopeHTTPError(f"{where}: HTTP {response.status_code}: {detail(response)}", response.status_code)
        if response.status_code == 204 or not response.content:
            return None
        return self._parse(where, response)

    def _parse(self, where: str, response: Reply) -> Any:
        try:
            return response.json()
        except ValueError as exc:  # also a body that is not text, and JSON nested too deeply to read
            raise not_json(where, response, redact_url(self.url), exc) from None

    # ------------------------------------------------------------------ §1 health

    async def health(self) -> HealthInfo:
        data = await self._json("GET", "/health")
        if not isinstance(data, Mapping) or "server_start_time" not in data or "status" not in data:
            raise ScopeNotScopeError(
                f"GET {self.address('/health')} answered {preview(data)!r}, which is not Scope's health "
                "report (status, server_start_time, version); is this URL a Scope server?"
            )
        try:
            start = float(data["server_start_time"])
        except (TypeError, ValueError, OverflowError):
            start = math.nan
        if not math.isfinite(start):  # NaN would look like a restart at every health check
            raise ScopeNotScopeError(
                f"GET {self.address('/health')}: server_start_time {preview(data['server_start_time'])} is not a "
                "number"
            )
        return HealthInfo(
            status=text_of(data.get("status")),
            version=text_of(data.get("version", "unknown")),
            server_start_time=start,
            git_commit=text_of(data.get("git_commit", "unknown")),
            emulator=data.get("emulator") is True,
        )

    # ------------------------------------------------------------------ §2 pipeline

    async def pipeline_status(self) -> PipelineStatus:
        data = await self._json("GET", "/api/v1/pipeline/status")
        if not isinstance(data, Mapping) or "status" not in data:
            raise ScopeNotScopeError(
                f"GET {self.address('/api/v1/pipeline/status')} answered {preview(data)!r}, not a pipeline status"
            )
        return PipelineStatus.from_json(data)

    async def load_pipeline(self, pipeline_ids: Sequence[str], load_params: Mapping[str, Any] | None = None) -> None:
        """Ask Scope to load; falls back to the old single-``pipeline_id`` body on an older server."""
        if not pipeline_ids:
            raise ConfigError("no pipeline id given")
        body = (
            protocol.load_body(pipeline_ids, load_params)
            if self.api_generation == "current"
            else protocol.legacy_load_body(pipeline_ids, load_params)
        )
        response = await self._request("POST", "/api/v1/pipeline/load", json=body)
        if self.api_generation == "current" and protocol.is_legacy_load_rejection(
            response.status_code, safe_json(response)
        ):
            log.info("Scope at %s uses the older load API (pipeline_id); switching to it", redact_url(self.url))
            self.api_generation = "legacy"
            if len(pipeline_ids) > 1:
                raise PipelineLoadError(
                    f"this Scope server only loads one pipeline at a time; cannot load the chain {list(pipeline_ids)}"
                )
            response = await self._request(
                "POST", "/api/v1/pipeline/load", json=protocol.legacy_load_body(pipeline_ids, load_params)
            )
        if response.status_code == 404:
            raise ScopeNotFoundError(
                f"POST {self.address('/api/v1/pipeline/load')}: 404; this server has no pipeline API. "
                "Is the URL the Scope server's root?"
            )
        if response.status_code != 200:
            raise ScopeHTTPError(
                f"Scope refused to load {list(pipeline_ids)}: HTTP {response.status_code}: {detail(response)}",
                response.status_code,
            )

    async def wait_until_loaded(
        self,
        pipeline_ids: Sequence[str],
        load_params: Mapping[str, Any] | None = None,
        *,
        timeout: float = 300.0,  # noqa: ASYNC109 - the load's budget, part of the API
        poll_interval: float = 0.5,
        on_progress: ProgressCallback | None = None,
    ) -> PipelineStatus:
        """Poll until Scope reports our pipeline ``loaded``.

        ``loaded`` counts only when ``pipeline_id`` (and ``load_params``, when Scope reports them) are the
        ones we asked for: a poll right after the POST can still show the previous state (§2 race). Scope reports
        ``error`` once and then ``not_loaded``, so both after ``loading`` are failures.
        """
        wanted = pipeline_ids[0]
        deadline = time.monotonic() + timeout
        seen_loading = False
        last_stage: str | None = None
        last: PipelineStatus | None = None
        while True:
            status = await self.pipeline_status()
            last = status
            if status.status == "loaded" and status.pipeline_id == wanted and (
                load_params is None or status.load_params is None or status.load_params == dict(load_params)
            ):
                return status
            if status.status == "loading":
                seen_loading = True
                stage = status.loading_stage or "loading"
                if stage != last_stage:
                    last_stage = stage
                    await _call(on_progress, f"loading {wanted}: {stage}")
            elif status.status == "error" or (status.status == "not_loaded" and seen_loading):
                lines = await log_lines_since(self, self._log_mark)
                raise load_failure(wanted, lines, self.address("/api/v1/logs/current"))
            if time.monotonic() >= deadline:
                now = f"status {last.status!r}" + (f" with pipeline {last.pipeline_id!r}" if last.pipeline_id else "")
                if last.status == "loaded" and last.pipeline_id == wanted:
                    now += f" but load params {last.load_params} instead of {dict(load_params or {})}"
                causes = "; ".join(f"({i}) {c}" for i, c in enumerate(STUCK_LOADING_CAUSES, 1))
                raise PipelineLoadTimeout(
                    f"pipeline {wanted!r} was not loaded after {timeout:g} s (Scope reports {now}). "
                    f"Likely causes: {causes}"
                )
            await asyncio.sleep(poll_interval)

    async def ensure_pipeline(
        self,
        pipeline_ids: Sequence[str],
        load_params: Mapping[str, Any] | None = None,
        *,
        timeout: float = 300.0,  # noqa: ASYNC109 - the load's budget, part of the API
        poll_interval: float = 0.5,
        on_progress: ProgressCallback | None = None,
    ) -> PipelineStatus:
        """Load the pipeline unless Scope already has exactly it (same id and load params) loaded."""
        status = await self.pipeline_status()
        if (
            status.status == "loaded"
            and status.pipeline_id == pipeline_ids[0]
            and (status.load_params or {}) == dict(load_params or {})
        ):
            return status
        if status.status == "loading":
            # Someone else's load is under way; overlapping loads race on the server (§2), so let it settle.
            other = status.pipeline_id or "unknown"
            await _call(on_progress, f"another load is in progress on Scope ({other}); waiting")
            await self._wait_settled(timeout, poll_interval)
        await _call(on_progress, f"loading pipeline {pipeline_ids[0]}")
        self._log_mark = await log_offset(self)
        await self.load_pipeline(pipeline_ids, load_params)
        return await self.wait_until_loaded(
            pipeline_ids, load_params or {}, timeout=timeout, poll_interval=poll_interval, on_progress=on_progress
        )

    async def _wait_settled(self, within: float, poll_interval: float) -> None:
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            if (await self.pipeline_status()).status != "loading":
                return
            await asyncio.sleep(poll_interval)

    async def pipeline_schemas(self) -> dict[str, Any]:
        data = await self._json("GET", "/api/v1/pipelines/schemas")
        pipelines = data.get("pipelines") if isinstance(data, Mapping) else None
        return dict(pipelines) if isinstance(pipelines, Mapping) else {}

    async def get_json_or_none(self, path: str, params: Mapping[str, Any] | None = None) -> Any:
        """A GET of one of Scope's read-only endpoints; None when it fails or the server has no such endpoint."""
        try:
            return await self._json("GET", path, params=params)
        except ScopeError:
            return None

    # ------------------------------------------------------------------ §4-5 WebRTC

    async def ice_servers(self) -> list[dict[str, Any]]:
        data = await self._json("GET", "/api/v1/webrtc/ice-servers")
        servers = data.get("iceServers") if isinstance(data, Mapping) else None
        if not isinstance(servers, list):
            raise ScopeNotScopeError(f"GET {self.address('/api/v1/webrtc/ice-servers')} answered {preview(data)!r}")
        return ice_entries(servers)

    async def offer(self, sdp: str, sdp_type: str, initial_parameters: Mapping[str, Any]) -> Answer:
        body = {"sdp": sdp, "type": sdp_type, "initialParameters": dict(initial_parameters)}
        response = await self._request("POST", "/api/v1/webrtc/offer", json=body)
        if response.status_code == 400 and "not loaded" in detail(response).lower():
            raise PipelineLoadError(
                "Scope says the pipeline is not loaded (another client may have unloaded or replaced it)"
            )
        if response.status_code != 200:
            raise ScopeHTTPError(
                f"Scope refused the WebRTC offer: HTTP {response.status_code}: {detail(response)}",
                response.status_code,
            )
        where = f"POST {self.address('/api/v1/webrtc/offer')}"
        data = self._parse(where, response)
        if not isinstance(data, Mapping) or not all(k in data for k in ("sdp", "type", "sessionId")):
            raise ScopeNotScopeError(f"{where}: the WebRTC offer's answer is not Scope's ({preview(data)!r})")
        try:
            session_path(data["sessionId"])
        except ScopeBadAnswerError as exc:
            raise ScopeBadAnswerError(f"{where}: {exc}") from None
        return Answer(sdp=str(data["sdp"]), type=str(data["type"]), session_id=data["sessionId"])

    async def add_ice_candidates(self, session_id: str, candidates: Sequence[Mapping[str, Any]]) -> bool:
        """Trickle candidates (PATCH). Returns False when Scope no longer knows the session (404)."""
        cands = [c for c in candidates if c.get("candidate")]  # an empty end-of-candidates marker gets a 404
        if not cands:
            return True
        response = await self._request(
            "PATCH", session_path(session_id), json={"candidates": [dict(c) for c in cands]}
        )
        if response.status_code == 404:
            return False
        if response.status_code not in (200, 204):
            raise ScopeHTTPError(
                f"PATCH candidates: HTTP {response.status_code}: {detail(response)}", response.status_code
            )
        return True

    async def delete_session(self, session_id: str) -> None:
        response = await self._request("DELETE", session_path(session_id))
        if response.status_code not in (200, 204, 404):
            raise ScopeHTTPError(
                f"DELETE session: HTTP {response.status_code}: {detail(response)}", response.status_code
            )

    # ------------------------------------------------------------------ assets (§6 vace_ref_images)

    async def upload_asset(self, source: str | Path | bytes, filename: str | None = None) -> str:
        """Upload a file (e.g. a VACE reference image); returns the server path to put in parameters."""
        if isinstance(source, bytes):
            data, name = source, filename or "asset.bin"
        else:
            path = Path(source)
            try:
                data = await asyncio.to_thread(path.read_bytes)
            except OSError as exc:
                raise ConfigError(f"cannot read asset {str(path)!r}: {exc.strerror or exc}") from exc
            name = filename or path.name
        result = await self._json(
            "POST",
            "/api/v1/assets",
            params={"filename": name},
            content=data,
            headers={"content-type": "application/octet-stream"},
            deadline=max(self.deadline, UPLOAD_DEADLINE),
        )
        server_path = result.get("path") if isinstance(result, Mapping) else None
        if not isinstance(server_path, str):
            raise ScopeNotScopeError(f"asset upload answered {preview(result)!r}, without a server path")
        return server_path


async def _call(callback: ProgressCallback | None, message: str) -> None:
    if callback is None:
        return
    result = callback(message)
    if asyncio.iscoroutine(result):
        await result
