"""``metadj-bridge doctor``'s Scope checks: each one looks at one thing and says what to do about it.

A check returns :class:`Finding` objects (ok / warning / problem / skipped, a one-line summary and the
action to take). The pure parts (URL advice, load params, VACE, the load error in Scope's log) take values
and give findings, so they are tested without a server; the rest talk to Scope through :class:`ScopeClient`,
exactly as ``run`` does. The causes and fixes come from the seed's troubleshooting table and
``shared/scope-api.md``. The short session's video and pause checks are :mod:`.video`; ICE is :mod:`.ice`.
"""

from __future__ import annotations

import asyncio
import enum
import json
import re
import socket
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import httpx

from metadj_bridge import parameters
from metadj_bridge.errors import (
    ConfigError,
    ScopeBadAnswerError,
    ScopeConnectionError,
    ScopeError,
    ScopeNotFoundError,
    ScopeNotScopeError,
    ScopeTLSError,
)
from metadj_bridge.scope.api import (
    STUCK_LOADING_CAUSES,
    HealthInfo,
    PipelineStatus,
    ScopeClient,
    normalise_url,
)
from metadj_bridge.scope.http_errors import exception_chain
from metadj_bridge.scope.urls import endpoint, redact_url

#: Prompts as Scope takes them: one text, or [{"text", "weight"}, ...].
Prompts = str | list[dict[str, Any]]


class Status(enum.StrEnum):
    OK = "ok"
    WARNING = "warning"
    PROBLEM = "problem"
    SKIPPED = "skipped"


@dataclass(frozen=True)
class Finding:
    """What one check found: ``problem`` blocks a show, ``warning`` does not."""

    check: str
    status: Status
    summary: str
    action: str = ""
    details: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {"check": self.check, "status": self.status.value, "summary": self.summary, "action": self.action,
                "details": self.details}


#: Pipelines whose load param ``vace_enabled`` defaults to true on Scope (the Wan family, scope-api.md §2).
VACE_PIPELINES = frozenset({"longlive", "krea-realtime-video", "reward-forcing", "memflow", "streamdiffusionv2"})

_URL_SUFFIXES = ("/api/v1/health", "/health", "/api/v1")


# ------------------------------------------------------------------------------------------------ the URL


def url_root(url: str) -> str | None:
    """The server root a URL with Scope's paths in it meant (``.../api/v1/health`` -> ``...``, a query kept),
    else None."""
    try:
        parts = urlsplit(url.strip())
    except ValueError:
        return None
    path = parts.path.rstrip("/")
    for suffix in _URL_SUFFIXES:
        if parts.scheme and parts.netloc and path.endswith(suffix):
            query = f"?{parts.query}" if parts.query else ""
            return f"{parts.scheme}://{parts.netloc}{path[: -len(suffix)]}{query}"
    return None


def check_url(url: str) -> tuple[Finding | None, str | None]:
    """(a problem with the URL or None, the URL to go on checking with or None)."""
    try:
        return None, normalise_url(url)
    except ConfigError as exc:
        root = url_root(url)
        action = (f"use {root} (Scope's health is at /health on the server's root; the bridge adds /health and "
                  "/api/v1/... itself)" if root else "give the Scope server's root, e.g. http://127.0.0.1:8000")
        return Finding("scope-url", Status.PROBLEM, str(exc), action, {"url": url, "root": root}), root


# ------------------------------------------------------------------------------------------------ health


def health_failure(exc: ScopeError, url: str) -> Finding:
    """The finding for a health check that failed, with the fix for each way it fails."""
    chain = exception_chain(exc)
    kind = type(exc).__name__
    if isinstance(exc, ScopeTLSError):
        kind, action = "tls", ("use http:// when the server has no TLS on that port; otherwise renew or trust its "
                               "certificate (a RunPod proxy URL is https://<pod>-8000.proxy.runpod.net)")
    elif any(isinstance(c, socket.gaierror) for c in chain):
        kind, action = "dns", "the host name does not resolve: check it for typos, and that the pod or machine is up"
    elif any(isinstance(c, ConnectionRefusedError) for c in chain):
        kind, action = "refused", ("nothing listens on that port: start Scope (daydream-scope --host 0.0.0.0 --port "
                                   "8000) or correct the port; on a fresh pod Scope takes 15-30 s to start")
    elif any(isinstance(c, httpx.TimeoutException | TimeoutError) for c in chain):
        kind, action = "timeout", ("no (complete) answer in time: the server is overloaded, starting, stalls half-way "
                                   "or a firewall drops the traffic; check the URL and that Scope is running")
    elif isinstance(exc, ScopeBadAnswerError):
        kind, action = "bad-answer", ("the server, or a proxy in front of it, answers in a way no Scope does: open the "
                                      "URL's /health in a browser, and check the URL and the proxy; `run` keeps "
                                      "retrying such a server")
    elif isinstance(exc, (ScopeNotScopeError, ScopeNotFoundError)):
        kind, action = "not-scope", ("something answers at that address, but it is not a Scope server: check the host "
                                     "and port (Scope's default port is 8000) and any proxy in front of it")
    elif isinstance(exc, ScopeConnectionError):
        kind, action = "unreachable", "check the URL, the network, and that Scope is running"
    else:
        action = "check Scope's log; restart Scope if it keeps answering like this"
    return Finding("scope", Status.PROBLEM, str(exc), action, {"url": url, "kind": kind})


async def check_health(client: ScopeClient) -> tuple[Finding, HealthInfo | None]:
    try:
        health = await client.health()
    except ScopeError as exc:
        return health_failure(exc, client.url), None
    details = {"url": client.url, "version": health.version, "git_commit": health.git_commit,
               "emulator": health.emulator, "server_start_time": health.server_start_time}
    what = "the metadj emulator" if health.emulator else "Scope"
    if health.status != "healthy":
        return Finding("scope", Status.WARNING, f"{what} {health.version} at {client.url} reports {health.status!r}",
                       "look at Scope's log (GET /api/v1/logs/current) and restart it if it stays so", details), health
    return Finding("scope", Status.OK, f"{what} {health.version} healthy at {client.url}", "", details), health


# ------------------------------------------------------------------------------------------------ pipeline


def describe_load(pipeline_id: str | None, load_params: Mapping[str, Any] | None) -> str:
    params = dict(load_params or {})
    text = str(pipeline_id)
    if "width" in params and "height" in params:
        text += f" {params['width']}x{params['height']}"
    vace = vace_loaded(pipeline_id, params)
    return text + (", VACE on" if vace else ", VACE off")


def vace_loaded(pipeline_id: str | None, load_params: Mapping[str, Any] | None) -> bool:
    """Whether Scope loaded VACE: ``vace_enabled`` as given, else Scope's default (true for the Wan pipelines)."""
    params = load_params or {}
    if "vace_enabled" in params:
        return params["vace_enabled"] is True
    return pipeline_id in VACE_PIPELINES


def _load_command(url: str, pipeline_id: str, load_params: Mapping[str, Any]) -> str:
    body = json.dumps({"pipeline_ids": [pipeline_id], "load_params": dict(load_params)})
    address = redact_url(endpoint(url, "/api/v1/pipeline/load"))
    return f"curl -X POST '{address}' -H 'Content-Type: application/json' -d '{body}'"


def stuck_action(url: str, pipeline_id: str, load_params: Mapping[str, Any]) -> str:
    causes = "; ".join(f"({i}) {c}" for i, c in enumerate(STUCK_LOADING_CAUSES, 1))
    return (f"likely causes: {causes}. A Wan pipeline takes 1-3 minutes to load on a GPU, so run doctor again in a "
            "minute; if it still loads, close other Scope tabs and load it by hand: "
            f"{_load_command(url, pipeline_id, load_params)}")


def loaded_finding(status: PipelineStatus, pipeline_id: str, load_params: Mapping[str, Any], url: str) -> Finding:
    """A ``loaded`` status against what the show needs (pure)."""
    details = {"status": status.status, "pipeline_id": status.pipeline_id, "load_params": status.load_params,
               "wanted": {"pipeline_id": pipeline_id, "load_params": dict(load_params)}}
    have = describe_load(status.pipeline_id, status.load_params)
    if status.pipeline_id != pipeline_id:
        return Finding("pipeline", Status.WARNING, f"Scope has {have} loaded; the show uses {pipeline_id}",
                       f"run replaces it with {describe_load(pipeline_id, load_params)} (a reload takes minutes on a "
                       "GPU, and any other client using the loaded pipeline loses it); close other Scope tabs first",
                       details)
    if (status.load_params or {}) != dict(load_params):
        return Finding("pipeline", Status.WARNING,
                       f"{pipeline_id} is loaded with load params {status.load_params}; "
                       f"the show uses {dict(load_params)}",
                       "run reloads it with the show's load params (this takes a while on a GPU); an open Scope UI tab "
                       "with other settings would load it back, so close it", details)
    return Finding("pipeline", Status.OK, f"{have} loaded, as the show needs", "", details)


async def check_pipeline(
    client: ScopeClient,
    pipeline_id: str,
    load_params: Mapping[str, Any],
    *,
    watch: float = 5.0,
    poll: float = 0.5,
) -> tuple[Finding, PipelineStatus | None]:
    """What Scope has loaded; a load under way is watched for ``watch`` seconds to tell slow from stuck."""
    url = client.url
    try:
        status = await client.pipeline_status()
    except ScopeError as exc:
        return Finding("pipeline", Status.PROBLEM, f"cannot read the pipeline status: {exc}",
                       "is the URL Scope's root, and Scope 0.2 or newer?"), None
    watched = status.status == "loading"
    if watched:
        stages = [status.loading_stage]
        deadline = time.monotonic() + watch
        while status.status == "loading" and time.monotonic() < deadline:
            await asyncio.sleep(poll)
            try:
                status = await client.pipeline_status()
            except ScopeError as exc:
                return Finding("pipeline", Status.PROBLEM, f"Scope stopped answering while loading: {exc}",
                               "check that Scope is still running (a load that runs out of GPU memory can "
                               "kill it)"), None
            if status.status == "loading" and status.loading_stage != stages[-1]:
                stages.append(status.loading_stage)
        if status.status == "loading":
            moved = len(stages) > 1
            what = f"stage {status.loading_stage!r}" if status.loading_stage else "no stage"
            summary = (f"a load is still under way after {watch:g} s ({what})" if moved else
                       f"stuck loading: still 'loading' after {watch:g} s with {what} and pipeline_id "
                       f"{status.pipeline_id!r}") + await weights_note(url, pipeline_id)
            return Finding("pipeline", Status.WARNING if moved else Status.PROBLEM, summary,
                           stuck_action(url, pipeline_id, load_params),
                           {"status": "loading", "stages": stages, "watched": watch}), status
    if status.status == "loaded":
        return loaded_finding(status, pipeline_id, load_params, url), status
    if status.status == "error" or (status.status == "not_loaded" and watched):
        # Scope reports "error" once and then "not_loaded"; the reason is only in its log (scope-api.md §2).
        reason, line = await _failure_reason(client, pipeline_id)
        what = "the load that was under way failed" if watched else "Scope reports a failed load"
        return Finding("pipeline", Status.PROBLEM, f"{what}{reason}{await weights_note(url, pipeline_id)}",
                       load_failure_action(line, url), {"status": "error", "log": line}), status
    reason, line = await _failure_reason(client, pipeline_id)
    summary = f"no pipeline loaded; run loads {describe_load(pipeline_id, load_params)}"
    if reason:
        summary += f"; Scope's log shows an earlier failed load{reason}"
    return Finding("pipeline", Status.WARNING, summary,
                   "nothing to do unless the load fails; loading takes 1-3 minutes on a GPU, so start the bridge "
                   "before the doors open", {"status": status.status, "log": line}), status


async def check_offer(client: ScopeClient, pipeline_id: str, mode: str) -> Finding:
    """Whether the server offers the show's pipeline in the show's input mode (GET /api/v1/pipelines/schemas), as
    ``run`` checks before it loads anything; an older server without the list is judged by the bridge's table."""
    from metadj_bridge.scope.offer import check_pipeline as check_offered
    from metadj_bridge.scope.offer import read_offer

    try:
        offer = await read_offer(client)
    except ScopeError as exc:
        return Finding("offer", Status.WARNING, f"cannot read the pipelines Scope offers: {exc}",
                       "the pipeline check below still tries the load; check Scope's log if it fails")
    if offer is None:
        known = parameters.KNOWN_PIPELINES.get(pipeline_id)
        if known is not None and mode not in known.modes:
            return Finding("offer", Status.PROBLEM,
                           f"pipeline {pipeline_id!r} takes only {' and '.join(known.modes)} input, not {mode} mode "
                           "(the bridge's table: this Scope does not list its pipelines)", _mode_action(mode),
                           {"offered": None})
        return Finding("offer", Status.SKIPPED, "this Scope does not list its pipelines (no GET "
                       "/api/v1/pipelines/schemas: an older server); the load below tells whether it has "
                       f"{pipeline_id}", "", {"offered": None})
    offered = {p.pipeline_id: list(p.modes) for p in offer.pipelines.values()}
    try:
        check_offered(offer, pipeline_id, mode)
    except ConfigError as exc:
        found = offer.get(pipeline_id)
        action = (_mode_action(mode) if found is not None else
                  "a typo? Set scope.pipeline in the profile (or --pipeline) to one it offers; a pipeline that needs "
                  "model weights or a GPU is offered only by a Scope that has them")
        return Finding("offer", Status.PROBLEM, str(exc), action, {"offered": offered})
    return Finding("offer", Status.OK, f"{pipeline_id} is offered, with {mode} input (this Scope offers: "
                   f"{offer.summary()})", "", {"offered": offered})


def _mode_action(mode: str) -> str:
    if mode == "text":
        return ("this pipeline transforms input video: set scope.input_mode: video with video.source (a webcam or "
                "file:clip.mp4), or pick a pipeline that generates from prompts (text mode)")
    return "this pipeline generates from prompts alone: set scope.input_mode: text, or pick a video pipeline"


async def _failure_reason(client: ScopeClient, pipeline_id: str) -> tuple[str, str]:
    """(" (Scope's log: LINE)" or "", LINE or ""): the specific line of the last failed load in Scope's log."""
    data = await client.get_json_or_none("/api/v1/logs/tail", {"lines": 80})
    lines = data.get("lines") if isinstance(data, Mapping) else None
    line = load_error_line([str(x) for x in lines] if isinstance(lines, list) else [], pipeline_id)
    return (f" (Scope's log: {line})", line) if line else ("", "")


def load_failure_action(line: str, url: str) -> str:
    """What to do about a failed load, by what Scope's log says (the same advice ``run`` gives) (pure)."""
    from metadj_bridge.scope.load_errors import GENERAL_ADVICE, advice_for

    advice = advice_for(line)
    if advice == GENERAL_ADVICE:
        advice = ("check that the model is downloaded (GET /api/v1/models/status?pipeline_id=...) and that the GPU "
                  "has enough memory (try quantization fp8_e4m3fn or a smaller size)")
    return f"{advice}; Scope's log: {redact_url(endpoint(url, '/api/v1/logs/current'))}"


#: Scope's own summary lines after a failed load: true, and of no help in telling why.
_GENERIC_LOAD_ERRORS = (re.compile(r"some pipelines failed to load", re.I),
                        re.compile(r"failed to load pipeline:?\s*[\w.\-]*\s*$", re.I))
#: The line that starts a load in Scope's log ("Loading 1 pipeline(s): [('main', 'longlive')]").
_LOAD_START = re.compile(r"loading \d+ pipeline\(s\)", re.I)
#: Scope's log prefix ("2026-12-03 03:27:55,874 - scope.server.pipeline_manager - ERROR - ").
_LOG_PREFIX = re.compile(r"^.*? - (?:ERROR|WARNING|CRITICAL|INFO) - ")


def load_error_line(lines: Sequence[str], pipeline_id: str) -> str:
    """The line of Scope's log that says why the latest load failed ("Failed to load pipeline longliv: Invalid
    pipeline ID: longliv", "... No module named 'flash_attn'"), rather than the generic summary Scope adds after
    it ("Some pipelines failed to load"); "" when the log holds no failure (pure).

    Only the lines since the latest "Loading N pipeline(s)" count, whichever pipeline that load was for (Scope's
    status says a load failed, not which: another client's load can be the one), unlike ``run``'s
    :func:`metadj_bridge.scope.load_errors.specific_line`, which looks for its own pipeline. The log prefix and
    Scope's advice about removing the models directory (wrong for a typo) are cut off.
    """
    start = max((i for i, line in enumerate(lines) if _LOAD_START.search(line)), default=0)
    failed = [line.strip() for line in lines[start:]
              if re.search(r"error|fail|exception|no module named", line, re.I)
              and (pipeline_id in line or "pipeline" in line.lower() or "no module named" in line.lower())]
    if not failed:
        return ""
    specific = [line for line in failed if not any(g.search(_LOG_PREFIX.sub("", line)) for g in _GENERIC_LOAD_ERRORS)]
    line = _LOG_PREFIX.sub("", (specific or failed)[0])
    return line.split(" If this error persists")[0].strip()[:300]


async def get_json(url: str, path: str, params: Mapping[str, str] | None = None, wait_s: float = 3.0) -> Any:
    """A GET of one of Scope's read-only endpoints (at most ``wait_s`` seconds all told, the answer size-limited as
    every call to Scope); None when it fails or the server has no such endpoint."""
    try:
        client = ScopeClient(url, timeout=wait_s, deadline=wait_s)
    except ConfigError:
        return None
    async with client:
        return await client.get_json_or_none(path, params)


async def weights_note(url: str, pipeline_id: str) -> str:
    """"; the model weights are not downloaded ..." when Scope says so (GET /api/v1/models/status), else ""."""
    data = await get_json(url, "/api/v1/models/status", {"pipeline_id": pipeline_id})
    if not isinstance(data, Mapping) or data.get("downloaded") is not False:
        return ""
    progress = data.get("progress")
    return (f"; the model weights of {pipeline_id} are not downloaded"
            + (f" (download: {progress})" if progress else "")
            + f": start the download with POST {redact_url(endpoint(url, '/api/v1/models/download'))} "
            f"{{\"pipeline_id\": \"{pipeline_id}\"}}")


# ------------------------------------------------------------------------------------------------ VACE and pause


def check_vace(
    loaded_id: str | None,
    loaded_params: Mapping[str, Any] | None,
    ref_images: Sequence[str],
    show_params: Mapping[str, Any],
) -> Finding:
    """The seed's "VACE enabled without ref images" silent failure, in the profile and on the server (pure)."""
    asks = show_params.get("vace_enabled") is True or bool(show_params.get("vace_ref_images"))
    if asks and not ref_images:
        return Finding("vace", Status.PROBLEM, "the profile turns VACE on (scope.parameters) without reference images",
                       "remove vace_enabled from scope.parameters, or add video.ref_images: VACE without reference "
                       "images generates nothing, silently")
    if loaded_id is not None and vace_loaded(loaded_id, loaded_params) and not ref_images:
        how = ("vace_enabled: true" if (loaded_params or {}).get("vace_enabled") is True
               else "Scope's default vace_enabled")
        return Finding("vace", Status.WARNING,
                       f"{loaded_id} is loaded with VACE on ({how}) and the profile has no video.ref_images",
                       "run reloads it with vace_enabled: false; if another client or a Scope UI tab loaded it, close "
                       "it, or the two will keep reloading the pipeline (VACE without reference images generates "
                       "nothing)",
                       {"load_params": dict(loaded_params or {})})
    if ref_images:
        return Finding("vace", Status.OK, f"VACE on with {len(ref_images)} reference image(s)")
    return Finding("vace", Status.OK, "VACE off (no reference images), as the show loads it")
