"""``ScopeEmulator``: an aiohttp + aiortc server that answers like Daydream Scope 0.2.4 (scope-api.md §1-9, §12);
``/_emulator/...`` adds fault switches and an event log for tests. ``start()`` binds, ``aclose()`` closes every
peer connection and the HTTP server (safe twice); a closed emulator cannot be started again (``ClosedError``)."""

from __future__ import annotations

import asyncio
import datetime
import json
import logging
import shutil
import socket
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from types import TracebackType
from typing import Any, cast

from aiohttp import web
from aiortc import RTCConfiguration, RTCIceServer, RTCPeerConnection, RTCSessionDescription
from aiortc.sdp import candidate_from_sdp

from metadj_bridge.emulator import answers, catalogue, validation
from metadj_bridge.emulator.config import EmulatorConfig, Faults
from metadj_bridge.emulator.encoder import use_scope_bitrate
from metadj_bridge.emulator.loader import LoadedPipelines, PipelineLoader
from metadj_bridge.emulator.netdelay import delay_receive
from metadj_bridge.emulator.pipeline import SessionPipeline
from metadj_bridge.emulator.records import PACKAGE_LOGGER, EventRecords, LogTail, emulator_log
from metadj_bridge.emulator.session import EmulatorSession
from metadj_bridge.emulator.tempo import EmulatedTempoSync, add_tempo_routes
from metadj_bridge.emulator.validation import BODY_UNPARSED, RequestRejected, problem
from metadj_bridge.errors import ConfigError
from metadj_bridge.lifecycle import Lifecycle, TaskGroupSet

logger = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
FAULT_KEYS = ("restart", "stop_video", "slow_load", "fail_load", "stale_seconds", "lose_channel")


class ScopeEmulator:
    """A Scope-compatible server for rehearsal without a GPU and as the far end of tests."""

    def __init__(self, config: EmulatorConfig | None = None) -> None:
        self.config = config or EmulatorConfig()
        self._id = uuid.uuid4().hex[:8]
        self._log = emulator_log(logger, self._id)
        self._faults = Faults(self.config.slow_load, self.config.fail_load, self.config.stale_seconds)
        self._records = EventRecords(self.config.log_limit)
        self._log_tail = LogTail(self._id, self.config.log_limit)
        self._loader = PipelineLoader(self._faults, self.config.load_seconds, self._id, cpu_only=self.config.cpu_only)
        self._sessions: dict[str, EmulatorSession] = {}
        self.tempo = EmulatedTempoSync()
        # LoggerAdapter stands in for a Logger: failures keep this emulator's id, so its log tail shows them.
        self._tasks = TaskGroupSet(f"emulator {self._id}", cast(logging.Logger, self._log))
        self._runner: web.AppRunner | None = None
        self._asset_dir: Path | None = None
        self._port: int | None = None
        self._life = Lifecycle("ScopeEmulator")
        self.server_start_time = time.time()

    # ---- lifecycle ---------------------------------------------------------------------------

    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError("ScopeEmulator.port is known only after start()")
        return self._port

    @property
    def url(self) -> str:
        host = self.config.host
        if host in ("0.0.0.0", ""):
            host = "127.0.0.1"
        elif host == "::":
            host = "::1"
        if ":" in host:
            host = f"[{host}]"
        return f"http://{host}:{self.port}"

    async def start(self) -> None:
        """Bind and serve. Raises ``ConfigError`` when the address cannot be used."""
        if not self._life.begin():  # raises ClosedError once closed
            return
        with self._life.opening():  # nothing served: start() may be tried again
            await self._serve()
        logging.getLogger(PACKAGE_LOGGER).addHandler(self._log_tail)
        self._asset_dir = Path(tempfile.mkdtemp(prefix="metadj-emulator-assets-"))
        self.server_start_time = time.time()
        self._log.debug("Scope emulator (Scope %s) listening on %s", catalogue.VERSION, self.url)

    async def _serve(self) -> None:
        """Bind the listening socket and start the HTTP server on it (``ConfigError`` when it cannot bind)."""
        family = socket.AF_INET6 if ":" in self.config.host else socket.AF_INET
        try:
            sock = socket.create_server((self.config.host, self.config.port), family=family)
        except OSError as exc:
            raise ConfigError(
                f"emulator: cannot listen on {self.config.host}:{self.config.port}: {exc.strerror or exc}"
            ) from exc
        self._port = sock.getsockname()[1]
        app = web.Application(middlewares=[self._errors_middleware], client_max_size=64 * 1024 * 1024)
        self._add_routes(app)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        try:
            await self._runner.setup()
            await web.SockSite(self._runner, sock).start()
        except BaseException:
            sock.close()
            await self._runner.cleanup()
            self._runner = None
            raise

    async def aclose(self) -> None:
        """Close every session, stop loading, stop serving; harmless when called again."""
        if not self._life.end():
            return
        if self._runner is not None:
            await self._runner.cleanup()  # first, so no offer arrives while sessions close
        await self._close_all_sessions()
        await self._loader.aclose()
        # These tasks only close sessions; cancelling one that awaits another caller's
        # RTCPeerConnection.close() would cancel aiortc's shared "closed" future, so let them finish.
        await asyncio.gather(*self._tasks, return_exceptions=True)
        logging.getLogger(PACKAGE_LOGGER).removeHandler(self._log_tail)
        if self._asset_dir is not None:
            shutil.rmtree(self._asset_dir, ignore_errors=True)

    async def __aenter__(self) -> ScopeEmulator:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def apply_faults(self, faults: dict[str, Any]) -> dict[str, Any]:
        """Flip fault switches (same keys as ``POST /_emulator/faults``); returns the new state."""
        unknown = sorted(set(faults) - set(FAULT_KEYS))
        if unknown:
            raise ValueError(f"unknown fault(s) {unknown}; allowed: {', '.join(FAULT_KEYS)}")
        for key in ("restart", "stop_video"):
            if key in faults and not isinstance(faults[key], bool):
                raise ValueError(f"{key}: {faults[key]!r} is not true or false")
        self._faults.update(faults)
        if faults.get("restart"):
            await self._restart()
        if "stop_video" in faults:
            for session in self._sessions.values():
                session.set_video_stopped(faults["stop_video"])
            self._log.info("Fault: video %s for %d session(s)", "stopped" if faults["stop_video"] else "resumed",
                           len(self._sessions))
        return {**self._faults.as_dict(), "server_start_time": self.server_start_time,
                "active_sessions": len(self._sessions)}

    async def _restart(self) -> None:
        self._log.info("Fault: emulated server restart")
        await self._close_all_sessions()
        self._loader.unload()
        self.server_start_time = max(time.time(), self.server_start_time + 0.001)

    async def _close_all_sessions(self) -> None:
        sessions = list(self._sessions.values())
        self._sessions.clear()
        await asyncio.gather(*(s.aclose() for s in sessions), return_exceptions=True)

    # ---- HTTP plumbing -----------------------------------------------------------------------

    def _add_routes(self, app: web.Application) -> None:
        r = app.router
        r.add_get("/health", self._health)
        r.add_get("/api/v1/hardware/info", self._hardware)
        r.add_post("/api/v1/pipeline/load", self._load)
        r.add_get("/api/v1/pipeline/status", self._status)
        r.add_get("/api/v1/pipelines/schemas", self._schemas)
        r.add_get("/api/v1/webrtc/ice-servers", self._ice_servers)
        r.add_post("/api/v1/webrtc/offer", self._offer)
        r.add_patch("/api/v1/webrtc/offer/{session_id}", self._patch_offer)
        r.add_delete("/api/v1/webrtc/offer/{session_id}", self._delete_offer)
        r.add_post("/api/v1/assets", self._upload_asset)
        r.add_get("/api/v1/session/parameters", self._session_parameters)
        answers.add_session_routes(r, self._sessions.values, self._json)
        r.add_get("/api/v1/session/metrics", self._session_metrics)
        r.add_get("/api/v1/logs/tail", self._logs_tail)
        r.add_get("/api/v1/models/status", self._models_status)
        add_tempo_routes(r, self.tempo)
        r.add_post("/_emulator/faults", self._post_faults)
        r.add_get("/_emulator/log", self._event_log)
        r.add_get("/_emulator/metrics", self._emulator_metrics)

    @web.middleware
    async def _errors_middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        """FastAPI's error shape: ``{"detail": ...}`` for every refusal and failure."""
        try:
            return await handler(request)
        except RequestRejected as exc:
            return web.json_response({"detail": exc.detail}, status=exc.status)
        except web.HTTPException as exc:
            if exc.status < 400:
                raise
            return web.json_response({"detail": exc.reason}, status=exc.status)
        except Exception as exc:
            self._log.exception("Internal error on %s %s", request.method, request.path)
            return web.json_response({"detail": str(exc)}, status=500)

    @staticmethod
    async def _json(request: web.Request) -> Any:
        raw = await request.read()
        if not raw:
            return None
        try:
            return json.loads(raw)
        except RecursionError:  # Scope's Starlette cannot parse it either, and says so
            raise RequestRejected(400, BODY_UNPARSED) from None
        except ValueError as e:
            raise RequestRejected(422, [problem("json_invalid", [0], "JSON decode error", {"error": str(e)})]) from e

    async def _health(self, request: web.Request) -> web.Response:
        return web.json_response(
            {
                "status": "healthy",
                "timestamp": datetime.datetime.now().isoformat(),
                "server_start_time": self.server_start_time,
                "version": catalogue.VERSION,
                "git_commit": "emulator",
                "emulator": True,
            }
        )

    async def _hardware(self, request: web.Request) -> web.Response:
        return web.json_response(catalogue.hardware_info(self.config.cpu_only))

    async def _load(self, request: web.Request) -> web.Response:
        entries = validation.load_entries(await self._json(request), legacy=self.config.legacy_api)
        self._loader.request(entries)
        return web.json_response({"message": "Pipeline loading initiated successfully"})

    async def _status(self, request: web.Request) -> web.Response:
        return web.json_response(self._loader.status_info())

    async def _schemas(self, request: web.Request) -> web.Response:
        return web.json_response(catalogue.pipeline_schemas(self.config.cpu_only))

    async def _ice_servers(self, request: web.Request) -> web.Response:
        return web.json_response({"iceServers": self.config.ice_servers})

    async def _offer(self, request: web.Request) -> web.Response:
        body = await self._json(request)
        if not isinstance(body, dict):
            raise RequestRejected(
                422, [problem("model_attributes_type", [], "Input should be a valid dictionary", body)]
            )
        for field in ("sdp", "type"):
            if not isinstance(body.get(field), str):
                raise RequestRejected(422, [problem("missing", [field], "Field required", body.get(field))])
        loaded = self._loader.loaded
        if loaded is None:
            raise RequestRejected(400, "Pipeline not loaded. Please load pipeline first.")
        raw_params = body.get("initialParameters")
        params = validation.initial_parameters(raw_params)
        session_id = str(uuid.uuid4())
        pipeline = self._make_pipeline(session_id, params, loaded)
        pc = RTCPeerConnection(RTCConfiguration(iceServers=self._rtc_ice_servers()))
        session = EmulatorSession(session_id, pc, pipeline, initial_parameters=params, records=self._records,
                                  emulator_id=self._id, hostile=self.config.hostile)
        # Added before the offer is applied, so it binds to the client's first video m-line.
        pc.addTrack(session.track)
        pc.on("connectionstatechange", lambda: self._on_connection_state(session))
        session.on_beat_state = self.tempo.take_client_state
        try:
            await pc.setRemoteDescription(RTCSessionDescription(sdp=body["sdp"], type=body["type"]))
            lost = self._faults.take_lose_channel()  # a far server's network, and the fault lose_channel
            session.net_delays = delay_receive(pc, self.config.delay_ms / 1000, lose_sctp=lost)
            answer = await pc.createAnswer()
            await pc.setLocalDescription(answer)
            use_scope_bitrate(pc, session.track, garble=session.video_garbler)
        except asyncio.CancelledError:
            await session.aclose()
            raise
        except Exception as exc:
            await session.aclose()
            self._log.warning("Offer failed: %s", exc)
            raise RequestRejected(500, str(exc)) from exc
        if self._life.closed:
            await session.aclose()
            raise RequestRejected(503, "Server is shutting down")
        self._sessions[session_id] = session
        self._records.offer(session_id, raw_params if isinstance(raw_params, dict) else {})
        session.start()
        self._log.info("Session %s created (%d active)", session_id, len(self._sessions))
        if pipeline is not None:
            self._log.info("Session %s imitates %s", session_id, catalogue.describe(
                pipeline.facts.pipeline_id, pipeline.mode, pipeline.chunk_frames, pipeline.fps))
        local = pc.localDescription
        return web.json_response({"sdp": local.sdp, "type": local.type, "sessionId": session_id})

    def _make_pipeline(self, session_id: str, params: dict[str, Any],
                       loaded: LoadedPipelines) -> SessionPipeline | None:
        """The session's pipeline, or None (silently, as Scope) when the offer names none loaded."""
        ids = params.get("pipeline_ids") or []
        if not ids:
            self._log.warning("Session %s: No pipeline IDs provided, cannot start", session_id)
            return None
        entries = [loaded.find(name) for name in ids]
        missing = [name for name, entry in zip(ids, entries, strict=True) if entry is None]
        if missing:
            self._log.warning("Session %s: pipeline(s) %s not loaded (loaded: %s), cannot start", session_id, missing,
                              loaded.keys)
            return None
        main = entries[-1]
        assert main is not None
        facts = catalogue.facts(main.pipeline_id)
        assert facts is not None  # only catalogued pipelines load
        return SessionPipeline(
            session_id,
            params,
            size=LoadedPipelines.frame_size(main),
            facts=facts,
            chunk_frames=self.config.chunk_frames,
            fps=self.config.fps,
            records=self._records,
            emulator_id=self._id,
        )

    def _rtc_ice_servers(self) -> list[RTCIceServer]:
        servers = []
        for entry in self.config.ice_servers:
            if isinstance(entry, dict) and entry.get("urls"):
                servers.append(RTCIceServer(urls=entry["urls"], username=entry.get("username"),
                                            credential=entry.get("credential")))
        return servers

    def _on_connection_state(self, session: EmulatorSession) -> None:
        """Scope's handler (``webrtc.py``): a closed or failed connection removes its session, once."""
        state = session.pc.connectionState
        self._log.info("Connection state changed to: %s for session %s", state, session.session_id)
        if state not in ("closed", "failed"):
            return
        if self._sessions.get(session.session_id) is session:
            del self._sessions[session.session_id]
            self._log.info("Removing session: Session(%s, state=%s)", session.session_id, state)
            self._tasks.spawn(session.aclose(), f"close-{session.session_id[:8]}")
        elif session.removed_by_delete:  # Scope's own handler runs after the DELETE and warns at every such end
            self._log.warning("Attempted to remove non-existent session: %s", session.session_id)

    async def _patch_offer(self, request: web.Request) -> web.Response:
        session_id = request.match_info["session_id"]
        session = self._sessions.get(session_id)
        if session is None or session.closed or session.pc.connectionState in ("closed", "failed"):
            raise RequestRejected(404, f"Session {session_id} not found")
        body = await self._json(request)
        candidates = body.get("candidates") if isinstance(body, dict) else None
        if not isinstance(candidates, list):
            raise RequestRejected(422, [problem("missing", ["candidates"], "Field required", body)])
        for item in candidates:
            try:
                text = item["candidate"]
                candidate = candidate_from_sdp(text.split(":", 1)[1] if text.startswith("candidate:") else text)
                candidate.sdpMid = item.get("sdpMid")
                candidate.sdpMLineIndex = item.get("sdpMLineIndex")
                await session.pc.addIceCandidate(candidate)
            except Exception as exc:  # aiortc's parser asserts; Scope answers all of these with 404
                raise RequestRejected(404, f"Invalid ICE candidate {item!r}: {exc or type(exc).__name__}") from exc
        return web.Response(status=204)

    async def _delete_offer(self, request: web.Request) -> web.Response:
        session_id = request.match_info["session_id"]
        session = self._sessions.pop(session_id, None)
        if session is None:
            self._log.warning("Attempted to remove non-existent session: %s", session_id)
        else:
            self._log.info("Removing session: Session(%s, state=%s)", session_id, session.pc.connectionState)
            session.removed_by_delete = True
            await session.aclose()
        return web.Response(status=204)

    async def _upload_asset(self, request: web.Request) -> web.Response:
        filename = Path(request.query.get("filename", "")).name
        if not filename:
            raise RequestRejected(
                422, [{"type": "missing", "loc": ["query", "filename"], "msg": "Field required", "input": None}]
            )
        assert self._asset_dir is not None
        data = await request.read()
        path = self._asset_dir / f"{uuid.uuid4().hex[:8]}-{filename}"
        await asyncio.to_thread(path.write_bytes, data)
        self._log.info("Stored asset %s (%d bytes)", path, len(data))
        return web.json_response({"path": str(path), "filename": filename, "size_bytes": len(data)})

    def _newest_session(self) -> EmulatorSession | None:
        for session in reversed(self._sessions.values()):
            if not session.closed:
                return session
        return None

    async def _session_parameters(self, request: web.Request) -> web.Response:
        """Scope's answer: the newest session's parameters as received (``paused`` too, once sent)."""
        session = self._newest_session()
        return web.json_response({"parameters": session.received_parameters if session else {}})

    async def _session_metrics(self, request: web.Request) -> web.Response:
        """Scope's shape, ``{"sessions": {id: stats}, "gpu": {...}}``, for the newest session only.

        The emulator's own counters are at ``GET /_emulator/metrics``, so no client comes to rely on them here.
        """
        session = self._newest_session()
        stats = {session.session_id: session.frame_stats()} if session else {}
        gpu = {} if self.config.cpu_only else catalogue.gpu_memory()
        return web.json_response({"sessions": stats, "gpu": gpu})

    def _metrics(self) -> dict[str, Any]:
        return answers.emulator_metrics(self._records.counters, self._newest_session(), len(self._sessions),
                                        self.config)

    async def _models_status(self, request: web.Request) -> web.Response:
        """``{"downloaded", "progress"}``: the emulator needs no weights, so every pipeline's are "there"."""
        if "pipeline_id" not in request.query:
            raise RequestRejected(
                422, [{"type": "missing", "loc": ["query", "pipeline_id"], "msg": "Field required", "input": None}]
            )
        return web.json_response({"downloaded": True, "progress": None})

    async def _logs_tail(self, request: web.Request) -> web.Response:
        lines, since_offset = answers.tail_query(request.query)
        return web.json_response(self._log_tail.tail(lines, since_offset))

    # ---- emulator-only endpoints -------------------------------------------------------------

    async def _post_faults(self, request: web.Request) -> web.Response:
        body = await self._json(request)
        if not isinstance(body, dict):
            raise RequestRejected(422, "expected a JSON object of fault switches")
        try:
            state = await self.apply_faults(body)
        except ValueError as exc:
            raise RequestRejected(422, str(exc)) from exc
        return web.json_response(state)

    async def _event_log(self, request: web.Request) -> web.Response:
        return web.json_response(self._records.snapshot())

    async def _emulator_metrics(self, request: web.Request) -> web.Response:
        """The emulator's counters and the newest session's parameters as *applied* (one-shots gone)."""
        return web.json_response(self._metrics())
