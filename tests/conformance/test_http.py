"""Scope's HTTP answers the bridge relies on (scope-api.md §1-4, §12-13): health, pipeline load and status,
the failed-load report, the pipeline schemas, ICE servers, model status, and the session endpoints."""

from __future__ import annotations

import asyncio
import math
import time
import uuid
from typing import Any

import httpx
import pytest

from metadj_bridge.errors import PipelineLoadError
from metadj_bridge.scope import protocol
from metadj_bridge.scope.api import ScopeClient
from metadj_bridge.scope.offer import read_offer
from tests.conformance.conftest import GPU_PIPELINES, require
from tests.conformance.peer import OFFER, ensure_loaded, initial_parameters, log_lines

STATUS_KEYS = {"status", "pipeline_id", "load_params", "loaded_lora_adapters", "error", "loading_stage",
               "produces_video", "produces_audio"}


async def _get(url: str, path: str, **params: Any) -> httpx.Response:
    async with httpx.AsyncClient(timeout=15) as http:
        return await http.get(url + path, params=params or None)


async def _statuses_until_settled(url: str, wanted: str, within: float = 20.0) -> list[dict[str, Any]]:
    """Every distinct status polled after a load of ``wanted`` until it settles: ``wanted`` loaded, or
    not_loaded after an error. Polls that still show the previous state (the race in scope-api.md §2: another
    pipeline ``loaded``) are left out."""
    seen: list[dict[str, Any]] = []
    deadline = time.monotonic() + within
    async with httpx.AsyncClient(timeout=15) as http:
        while time.monotonic() < deadline:
            status = (await http.get(url + "/api/v1/pipeline/status")).json()
            stale = not seen and status["status"] == "loaded" and status["pipeline_id"] != wanted
            if not stale and (not seen or seen[-1] != status):
                seen.append(status)
            names = [s["status"] for s in seen]
            if (status["status"] == "loaded" and status["pipeline_id"] == wanted) or (
                "error" in names and status["status"] == "not_loaded"
            ):
                return seen
            await asyncio.sleep(0.02)
    raise AssertionError(f"the load of {wanted} did not settle within {within:g} s: {[s['status'] for s in seen]}")


async def _load_unknown_pipeline(url: str, load_params: dict[str, Any]) -> tuple[str, list[dict[str, Any]]]:
    pipeline_id = f"conformance-no-such-{uuid.uuid4().hex[:6]}"
    async with httpx.AsyncClient(timeout=15) as http:
        response = await http.post(url + "/api/v1/pipeline/load", json=protocol.load_body([pipeline_id], load_params))
    assert response.status_code == 200, response.text
    return pipeline_id, await _statuses_until_settled(url, pipeline_id)


async def test_health_reports_status_start_time_and_version(scope_url: str) -> None:
    first = (await _get(scope_url, "/health")).json()
    assert first["status"] == "healthy"
    assert isinstance(first["timestamp"], str) and first["timestamp"]
    assert isinstance(first["version"], str) and first["version"]
    assert isinstance(first["git_commit"], str)
    start = first["server_start_time"]
    assert isinstance(start, float) and math.isfinite(start) and 0 < start <= time.time() + 1
    async with ScopeClient(scope_url) as client:
        health = await client.health()
    assert health.server_start_time == start, "server_start_time must stay the same while the server runs"
    assert health.version == first["version"]


async def test_the_old_single_id_load_body_is_refused_with_400(scope_url: str) -> None:
    async with httpx.AsyncClient(timeout=15) as http:
        response = await http.post(scope_url + "/api/v1/pipeline/load", json={"pipeline_id": "passthrough"})
    assert response.status_code == 400
    assert response.json() == {"detail": "Either 'pipelines' or 'pipeline_ids' must be provided"}


async def test_a_load_answers_at_once_and_status_settles_on_loaded_with_what_was_sent(
    scope_url: str, offered: dict[str, Any]
) -> None:
    require(offered, "controller-viz")
    await ensure_loaded(scope_url, "passthrough")  # something else loaded first: the new load must replace it
    params = {"height": 192, "width": 160}
    async with httpx.AsyncClient(timeout=15) as http:
        response = await http.post(
            scope_url + "/api/v1/pipeline/load", json=protocol.load_body(["controller-viz"], params)
        )
    assert response.status_code == 200
    assert response.json() == {"message": "Pipeline loading initiated successfully"}
    seen = await _statuses_until_settled(scope_url, "controller-viz")
    for status in seen:
        assert set(status) == STATUS_KEYS
        assert status["status"] in ("not_loaded", "loading", "loaded")
        assert status["error"] is None
    final = seen[-1]
    assert final["pipeline_id"] == "controller-viz"
    assert final["load_params"] == params
    assert final["loaded_lora_adapters"] is None, "no LoRA loaded: Scope reports null, not an empty list"
    assert final["produces_video"] is True
    async with ScopeClient(scope_url) as client:  # what the bridge makes of it
        reported = await client.pipeline_status()
    assert (reported.status, reported.pipeline_id, reported.load_params) == ("loaded", "controller-viz", params)


async def test_loading_what_is_loaded_with_the_same_params_keeps_it_loaded(
    scope_url: str, offered: dict[str, Any]
) -> None:
    require(offered, "controller-viz")
    params = {"height": 192, "width": 160}
    await ensure_loaded(scope_url, "controller-viz", params)
    async with httpx.AsyncClient(timeout=15) as http:
        response = await http.post(
            scope_url + "/api/v1/pipeline/load", json=protocol.load_body(["controller-viz"], params)
        )
        assert response.status_code == 200
        for _ in range(15):
            status = (await http.get(scope_url + "/api/v1/pipeline/status")).json()
            assert (status["status"], status["pipeline_id"], status["load_params"]) == (
                "loaded", "controller-viz", params), "an identical load is reused, not reloaded"
            await asyncio.sleep(0.02)


async def test_a_failed_load_reports_error_once_then_not_loaded_and_names_the_cause_only_in_the_log(
    scope_url: str,
) -> None:
    await ensure_loaded(scope_url, "passthrough")
    _, offset = await log_lines(scope_url)
    params = {"height": 64, "width": 96}
    pipeline_id, seen = await _load_unknown_pipeline(scope_url, params)
    names = [s["status"] for s in seen]
    assert names.count("error") == 1, f"statuses seen: {names}"
    assert names[-1] == "not_loaded", f"statuses seen: {names}"
    for status in seen[names.index("error"):]:
        assert set(status) == STATUS_KEYS
        assert status["error"] is None, "Scope never puts the error text into the status"
        assert status["pipeline_id"] is None, "a failed load leaves nothing loaded"
        assert status["load_params"] == params, "the failed load's params are reported as sent"
        assert status["loaded_lora_adapters"] is None
    lines, _ = await log_lines(scope_url, offset)
    specific = [i for i, line in enumerate(lines) if f"Invalid pipeline ID: {pipeline_id}" in line]
    generic = [i for i, line in enumerate(lines) if "Some pipelines failed to load" in line]
    assert specific, f"no 'Invalid pipeline ID: {pipeline_id}' line in the log tail"
    assert generic and generic[-1] > specific[0], "the generic 'Some pipelines failed to load' line comes last"


async def test_a_gpu_pipeline_on_a_server_without_it_fails_to_load_and_the_log_says_why(
    scope_url: str, offered: dict[str, Any]
) -> None:
    """Without a GPU, longlive is not offered, yet a load of it is tried and fails (in 0.2.4: flash_attn missing)."""
    if "longlive" in offered:
        pytest.skip("needs a server without GPU pipelines: this one offers longlive")
    _, offset = await log_lines(scope_url)
    async with httpx.AsyncClient(timeout=15) as http:
        response = await http.post(scope_url + "/api/v1/pipeline/load", json=protocol.load_body(["longlive"], {}))
    assert response.status_code == 200
    seen = await _statuses_until_settled(scope_url, "longlive")
    assert [s["status"] for s in seen][-2:] == ["error", "not_loaded"]
    lines, _ = await log_lines(scope_url, offset)
    specific = [i for i, line in enumerate(lines) if "Failed to load pipeline longlive: " in line]
    generic = [i for i, line in enumerate(lines) if "Some pipelines failed to load" in line]
    assert specific, "no 'Failed to load pipeline longlive: <reason>' line in the log tail"
    assert generic and generic[-1] > specific[0]


async def test_the_bridge_client_turns_an_unknown_pipeline_into_a_load_error(scope_url: str) -> None:
    pipeline_id = f"conformance-no-such-{uuid.uuid4().hex[:6]}"
    async with ScopeClient(scope_url) as client:
        with pytest.raises(PipelineLoadError):
            await client.ensure_pipeline([pipeline_id], {}, timeout=20, poll_interval=0.05)


async def test_an_offer_without_a_loaded_pipeline_is_400(scope_url: str) -> None:
    await _load_unknown_pipeline(scope_url, {})  # a failed load unloads what was there
    body = {"sdp": "v=0\r\n", "type": "offer", "initialParameters": initial_parameters("passthrough", "video")}
    async with httpx.AsyncClient(timeout=15) as http:
        response = await http.post(scope_url + OFFER, json=body)
    assert response.status_code == 400
    assert response.json() == {"detail": "Pipeline not loaded. Please load pipeline first."}


async def test_an_offer_with_prompts_as_a_plain_string_is_422(scope_url: str) -> None:
    await ensure_loaded(scope_url, "passthrough")
    initial = {**initial_parameters("passthrough", "video"), "prompts": "a plain string"}
    async with httpx.AsyncClient(timeout=15) as http:
        response = await http.post(scope_url + OFFER, json={"sdp": "v=0\r\n", "type": "offer",
                                                             "initialParameters": initial})
    assert response.status_code == 422


async def test_pipeline_schemas_list_each_pipeline_with_its_modes_and_config(scope_url: str) -> None:
    body = (await _get(scope_url, "/api/v1/pipelines/schemas")).json()
    assert set(body) == {"pipelines"} and body["pipelines"]
    for pipeline_id, entry in body["pipelines"].items():
        assert entry["id"] == pipeline_id
        modes = entry["supported_modes"]
        assert modes and set(modes) <= {"text", "video"}, f"{pipeline_id}: {modes}"
        assert entry["default_mode"] in modes
        for flag in ("supports_prompts", "supports_cache_management", "supports_kv_cache_bias", "supports_lora",
                     "supports_vace", "produces_video", "produces_audio", "requires_models"):
            assert isinstance(entry[flag], bool), f"{pipeline_id}.{flag} = {entry[flag]!r}"
        assert isinstance(entry["inputs"], list) and isinstance(entry["outputs"], list)
        assert isinstance(entry["config_schema"]["properties"], dict)
        assert {"height", "width"} <= set(entry["config_schema"]["properties"])
    async with ScopeClient(scope_url) as client:
        offer = await read_offer(client)
    assert offer is not None
    assert set(offer.pipelines) == set(body["pipelines"])
    for pipeline_id, entry in body["pipelines"].items():
        assert offer.pipelines[pipeline_id].modes == tuple(entry["supported_modes"])


@pytest.mark.parametrize(
    ("pipeline_id", "modes", "supports_prompts"),
    [("passthrough", ["video"], False), ("controller-viz", ["text"], False), ("gray", ["video"], False)],
    ids=["passthrough", "controller-viz", "gray"],
)
async def test_weight_free_pipelines_have_scopes_modes(
    offered: dict[str, Any], pipeline_id: str, modes: list[str], supports_prompts: bool
) -> None:
    entry = require(offered, pipeline_id)
    assert entry["supported_modes"] == modes
    assert entry["default_mode"] == modes[0]
    assert entry["supports_prompts"] is supports_prompts
    assert entry["produces_video"] is True
    assert entry["config_schema"]["properties"]["height"]["default"] == 512
    assert entry["config_schema"]["properties"]["width"]["default"] == 512


@pytest.mark.parametrize(
    ("pipeline_id", "default_mode", "size", "steps"),
    [
        ("longlive", "text", (320, 576), [1000, 750, 500, 250]),
        ("krea-realtime-video", "text", (320, 576), [1000, 750, 500, 250]),
        ("streamdiffusionv2", "video", (512, 512), [750, 250]),
    ],
    ids=["longlive", "krea-realtime-video", "streamdiffusionv2"],
)
async def test_gpu_pipelines_have_scopes_modes_defaults_and_live_keys(
    offered: dict[str, Any], pipeline_id: str, default_mode: str, size: tuple[int, int], steps: list[int]
) -> None:
    entry = require(offered, pipeline_id)
    assert set(entry["supported_modes"]) == {"text", "video"}
    assert entry["default_mode"] == default_mode
    assert entry["supports_prompts"] is True
    assert entry["supports_kv_cache_bias"] is (pipeline_id == "krea-realtime-video")
    props = entry["config_schema"]["properties"]
    assert (props["height"]["default"], props["width"]["default"]) == size
    assert props["denoising_steps"]["default"] == steps
    assert props["noise_scale"]["default"] == 0.7
    assert props["noise_scale"]["ui"]["is_load_param"] is False, "noise_scale is a live key"
    assert props["height"]["ui"]["is_load_param"] is True, "height is a load parameter"
    other = "video" if default_mode == "text" else "text"
    assert "denoising_steps" in entry["mode_defaults"][other]


async def test_gpu_pipelines_are_offered_only_with_a_gpu(offered: dict[str, Any], scope_url: str) -> None:
    """A server lists a GPU pipeline only when it has a GPU (scope-api.md §10), i.e. when it reports VRAM."""
    vram = (await _get(scope_url, "/api/v1/hardware/info")).json()["vram_gb"]
    gpu_offered = sorted(set(offered) & set(GPU_PIPELINES))
    if vram is None:
        assert not gpu_offered, f"no GPU (vram_gb null) but offers {gpu_offered}"
    else:
        assert isinstance(vram, (int, float)) and vram > 0


async def test_ice_servers_list_at_least_one_server_with_urls(scope_url: str) -> None:
    body = (await _get(scope_url, "/api/v1/webrtc/ice-servers")).json()
    assert set(body) == {"iceServers"}
    servers = body["iceServers"]
    assert servers, "Scope always hands out at least its default public STUN server"
    for server in servers:
        assert {"urls", "username", "credential"} <= set(server)
        urls = server["urls"] if isinstance(server["urls"], list) else [server["urls"]]
        assert urls and all(u.startswith(("stun:", "turn:", "turns:")) for u in urls), urls
    async with ScopeClient(scope_url) as client:
        assert len(await client.ice_servers()) == len(servers)


async def test_model_status_answers_downloaded_and_progress(scope_url: str, offered: dict[str, Any]) -> None:
    for pipeline_id in sorted(offered)[:3]:
        response = await _get(scope_url, "/api/v1/models/status", pipeline_id=pipeline_id)
        assert response.status_code == 200
        body = response.json()
        assert set(body) == {"downloaded", "progress"}
        assert isinstance(body["downloaded"], bool)
        assert body["progress"] is None or isinstance(body["progress"], dict)
    assert (await _get(scope_url, "/api/v1/models/status")).status_code == 422, "pipeline_id is required"


async def test_session_parameters_and_metrics_are_empty_without_a_session(scope_url: str) -> None:
    assert (await _get(scope_url, "/api/v1/session/parameters")).json() == {"parameters": {}}
    metrics = (await _get(scope_url, "/api/v1/session/metrics")).json()
    assert set(metrics) == {"sessions", "gpu"}
    assert metrics["sessions"] == {}
    assert isinstance(metrics["gpu"], dict)


async def test_the_log_tail_answers_lines_and_an_offset_to_continue_from(scope_url: str) -> None:
    """The bridge reads a failed load's reason here (the status never carries it)."""
    body = (await _get(scope_url, "/api/v1/logs/tail", lines=5)).json()
    assert set(body) == {"lines", "offset"}
    assert isinstance(body["lines"], list) and len(body["lines"]) <= 5
    assert all(isinstance(line, str) for line in body["lines"])
    assert isinstance(body["offset"], int) and body["offset"] > 0
    later = (await _get(scope_url, "/api/v1/logs/tail", lines=1000, since_offset=body["offset"])).json()
    assert later["offset"] >= body["offset"]
    assert (await _get(scope_url, "/api/v1/logs/tail", lines=0)).status_code == 422, "lines must be 1-1000"
