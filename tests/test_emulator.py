"""The Scope emulator against real HTTP (httpx) and a real aiortc client peer over loopback.

Each behaviour imitated from Scope 0.2.4 (shared/scope-api.md) has a test here: load bodies of both
API generations, the status race and the one-shot error, silent sessions without pipeline_ids,
the 8-message queue that drops the newest, one message per chunk, one-shot keys, pause, and the
fault switches. Pure parts (queue, merge rules, drawing) are tested directly at the end.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from itertools import pairwise
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from metadj_bridge.emulator import EmulatorConfig, ScopeEmulator
from metadj_bridge.emulator.params import ParameterQueue, SessionParameters
from metadj_bridge.emulator.render import FrameRenderer, FrameSpec
from metadj_bridge.errors import ConfigError
from tests.helpers import ColourTrack, wait_for

SMALL = {"width": 256, "height": 144}
TEXT_OFFER = {"pipeline_ids": ["longlive"], "input_mode": "text", "prompts": [{"text": "neon city", "weight": 1.0}]}

EmulatorFactory = Callable[..., Awaitable[ScopeEmulator]]


# ---- helpers -----------------------------------------------------------------------------------


@pytest.fixture
def make_emu(make_emulator: EmulatorFactory) -> EmulatorFactory:
    """In-process emulators (conftest's factory) with two frames per chunk, closed after the test."""

    async def make(**overrides: Any) -> ScopeEmulator:
        return await make_emulator(**{"chunk_frames": 2, "stale_seconds": 0.2, **overrides})

    return make


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=10) as client:
        yield client


async def load(http: httpx.AsyncClient, emu: ScopeEmulator, pipeline: str = "longlive", **params: Any) -> None:
    body = {"pipeline_ids": [pipeline], "load_params": params or dict(SMALL)}
    assert (await http.post(emu.url + "/api/v1/pipeline/load", json=body)).status_code == 200

    async def loaded() -> bool:
        st = (await http.get(emu.url + "/api/v1/pipeline/status")).json()
        return st["status"] == "loaded" and st["pipeline_id"] == pipeline

    await wait_for(loaded, 5, f"{pipeline} to load")


class ClientPeer:
    """A minimal Scope client: sendrecv video (or a real track), a data channel made before the offer."""

    def __init__(self, video_track: MediaStreamTrack | None = None) -> None:
        self.pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        if video_track is None:
            self.pc.addTransceiver("video")
        else:
            self.pc.addTrack(video_track)
        self.channel = self.pc.createDataChannel("parameters", ordered=True)
        self.frames: list[tuple[float, np.ndarray]] = []
        self.session_id = ""
        self._readers: set[asyncio.Task[None]] = set()
        self.pc.on("track", self._on_track)

    def _on_track(self, track: MediaStreamTrack) -> None:
        task = asyncio.create_task(self._read(track), name="test-client-reader")
        self._readers.add(task)

    async def _read(self, track: MediaStreamTrack) -> None:
        while True:
            try:
                frame = await track.recv()
            except MediaStreamError:
                return
            self.frames.append((time.monotonic(), frame.to_ndarray(format="rgb24")))  # type: ignore[union-attr]

    async def connect(self, http: httpx.AsyncClient, url: str, initial: dict[str, Any] | None) -> str:
        await self.pc.setLocalDescription(await self.pc.createOffer())
        body = {"sdp": self.pc.localDescription.sdp, "type": "offer", "initialParameters": initial}
        response = await http.post(url + "/api/v1/webrtc/offer", json=body)
        assert response.status_code == 200, response.text
        answer = response.json()
        await self.pc.setRemoteDescription(RTCSessionDescription(answer["sdp"], answer["type"]))
        self.session_id = answer["sessionId"]
        await wait_for(lambda: self.channel.readyState == "open", 10, "the data channel to open")
        return self.session_id

    def send(self, message: dict[str, Any]) -> None:
        self.channel.send(json.dumps(message))

    async def frames_after(self, n: int, wait_s: float = 10) -> list[np.ndarray]:
        """Wait (at most ``wait_s`` seconds) for ``n`` frames more than now and return them."""
        start = len(self.frames)
        await wait_for(lambda: len(self.frames) >= start + n, wait_s, f"{n} more frames")
        return [image for _, image in self.frames[start : start + n]]

    async def close(self) -> None:
        await self.pc.close()
        for task in list(self._readers):
            task.cancel()
        await asyncio.gather(*self._readers, return_exceptions=True)


@pytest.fixture
async def peers() -> AsyncIterator[Callable[..., ClientPeer]]:
    made: list[ClientPeer] = []

    def make(video_track: MediaStreamTrack | None = None) -> ClientPeer:
        peer = ClientPeer(video_track)
        made.append(peer)
        return peer

    yield make
    for peer in made:
        await peer.close()


async def event_log(http: httpx.AsyncClient, emu: ScopeEmulator) -> dict[str, Any]:
    return (await http.get(emu.url + "/_emulator/log")).json()  # type: ignore[no-any-return]


async def applied_for(http: httpx.AsyncClient, emu: ScopeEmulator, session_id: str) -> list[dict[str, Any]]:
    return [e for e in (await event_log(http, emu))["applied"] if e["session_id"] == session_id]


def mean_diff(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a.astype(np.int16) - b.astype(np.int16)).mean())


# ---- HTTP: health, load, status ------------------------------------------------------------------


async def test_health_has_scopes_shape_and_says_emulator(make_emu: EmulatorFactory, http: httpx.AsyncClient) -> None:
    emu = await make_emu()
    body = (await http.get(emu.url + "/health")).json()
    assert set(body) == {"status", "timestamp", "server_start_time", "version", "git_commit", "emulator"}
    assert (body["status"], body["version"], body["emulator"]) == ("healthy", "0.2.4", True)
    assert isinstance(body["server_start_time"], float) and abs(body["server_start_time"] - time.time()) < 60
    hw = (await http.get(emu.url + "/api/v1/hardware/info")).json()
    assert hw["vram_gb"] == 24.0 and hw["ndi"]["available"] is False  # a GPU server, as it offers longlive
    # Scope without TURN credentials hands out Google's public STUN server (server/webrtc.py).
    stun = {"urls": ["stun:stun.l.google.com:19302"], "username": None, "credential": None}
    assert (await http.get(emu.url + "/api/v1/webrtc/ice-servers")).json() == {"iceServers": [stun]}


async def test_schemas_list_live_and_load_params(make_emu: EmulatorFactory, http: httpx.AsyncClient) -> None:
    emu = await make_emu()
    pipelines = (await http.get(emu.url + "/api/v1/pipelines/schemas")).json()["pipelines"]
    props = pipelines["longlive"]["config_schema"]["properties"]
    assert (props["noise_scale"]["minimum"], props["noise_scale"]["maximum"]) == (0.0, 1.0)
    assert props["noise_scale"]["ui"]["is_load_param"] is False and props["noise_scale"]["ui"]["modes"] == ["video"]
    assert props["vace_context_scale"]["maximum"] == 2.0
    assert props["base_seed"]["type"] == "integer" and props["base_seed"]["minimum"] == 0
    assert props["height"]["ui"]["is_load_param"] is True and props["width"]["ui"]["is_load_param"] is True
    assert pipelines["longlive"]["mode_defaults"]["video"]["noise_scale"] == 0.7
    assert pipelines["passthrough"]["supported_modes"] == ["video"]
    # A GPU server registers all twelve built-in pipelines (core/pipelines/registry.py).
    assert sorted(pipelines) == sorted([
        "streamdiffusionv2", "longlive", "krea-realtime-video", "reward-forcing", "memflow", "passthrough",
        "video-depth-anything", "controller-viz", "rife", "scribble", "gray", "optical-flow"])


async def test_old_single_id_load_body_is_refused_with_400(make_emu: EmulatorFactory, http: httpx.AsyncClient) -> None:
    emu = await make_emu()
    response = await http.post(emu.url + "/api/v1/pipeline/load", json={"pipeline_id": "longlive"})
    assert response.status_code == 400
    assert response.json() == {"detail": "Either 'pipelines' or 'pipeline_ids' must be provided"}
    graph = {"pipelines": [{"node_id": "main", "pipeline_id": "longlive", "load_params": SMALL}]}
    ok = await http.post(emu.url + "/api/v1/pipeline/load", json=graph)
    assert ok.json() == {"message": "Pipeline loading initiated successfully"}


async def test_legacy_server_wants_pipeline_id_and_says_so_with_422(
    make_emu: EmulatorFactory, http: httpx.AsyncClient
) -> None:
    emu = await make_emu(legacy_api=True)
    body = {"pipeline_ids": ["longlive"], "load_params": SMALL}
    response = await http.post(emu.url + "/api/v1/pipeline/load", json=body)
    assert response.status_code == 422
    detail = response.json()["detail"]
    assert detail[0]["type"] == "missing" and detail[0]["loc"] == ["body", "pipeline_id"]
    assert detail[0]["input"] == body
    assert (await http.post(emu.url + "/api/v1/pipeline/load", json={"pipeline_id": "longlive"})).status_code == 200
    await wait_for(
        lambda: _status_is(http, emu, "loaded", "longlive"), 5, "the legacy load to finish"
    )


async def _status_is(http: httpx.AsyncClient, emu: ScopeEmulator, status: str, pipeline_id: str | None) -> bool:
    st = (await http.get(emu.url + "/api/v1/pipeline/status")).json()
    return (st["status"], st["pipeline_id"]) == (status, pipeline_id)


async def test_status_goes_not_loaded_loading_loaded(make_emu: EmulatorFactory, http: httpx.AsyncClient) -> None:
    emu = await make_emu(load_seconds=0.5, stale_seconds=0.0)
    assert (await http.get(emu.url + "/api/v1/pipeline/status")).json()["status"] == "not_loaded"
    await http.post(emu.url + "/api/v1/pipeline/load", json={"pipeline_ids": ["longlive"], "load_params": SMALL})
    loading = await wait_for(
        lambda: _first_status(http, emu, "loading"), 2, "status loading"
    )
    assert loading["pipeline_id"] is None and loading["loading_stage"] == "Initializing pipeline..."
    await wait_for(lambda: _status_is(http, emu, "loaded", "longlive"), 5, "status loaded")
    st = (await http.get(emu.url + "/api/v1/pipeline/status")).json()
    assert st["load_params"] == SMALL and st["loading_stage"] is None and st["error"] is None
    # The same pipeline with identical params is reused: no loading phase at all.
    await http.post(emu.url + "/api/v1/pipeline/load", json={"pipeline_ids": ["longlive"], "load_params": SMALL})
    for _ in range(5):
        assert await _status_is(http, emu, "loaded", "longlive")
        await asyncio.sleep(0.1)


async def _first_status(http: httpx.AsyncClient, emu: ScopeEmulator, status: str) -> dict[str, Any] | None:
    st = (await http.get(emu.url + "/api/v1/pipeline/status")).json()
    return st if st["status"] == status else None  # type: ignore[no-any-return]


async def test_status_stays_stale_right_after_loading_another_pipeline(
    make_emu: EmulatorFactory, http: httpx.AsyncClient
) -> None:
    emu = await make_emu(stale_seconds=0.4)
    await load(http, emu, "longlive", **SMALL)
    await http.post(emu.url + "/api/v1/pipeline/load",
                    json={"pipeline_ids": ["streamdiffusionv2"], "load_params": SMALL})
    stale = (await http.get(emu.url + "/api/v1/pipeline/status")).json()
    assert (stale["status"], stale["pipeline_id"]) == ("loaded", "longlive")
    await wait_for(lambda: _status_is(http, emu, "loaded", "streamdiffusionv2"), 5, "the new pipeline")


async def test_failed_load_shows_error_once_and_the_reason_only_in_the_log(
    make_emu: EmulatorFactory, http: httpx.AsyncClient
) -> None:
    emu = await make_emu(stale_seconds=0.0)
    assert (await http.post(emu.url + "/_emulator/faults", json={"fail_load": True})).status_code == 200
    await http.post(emu.url + "/api/v1/pipeline/load", json={"pipeline_ids": ["longlive"]})
    error = await wait_for(lambda: _first_status(http, emu, "error"), 5, "status error")
    assert error["error"] is None and error["pipeline_id"] is None
    after = (await http.get(emu.url + "/api/v1/pipeline/status")).json()
    assert after["status"] == "not_loaded"
    tail = (await http.get(emu.url + "/api/v1/logs/tail", params={"lines": 50})).json()
    assert tail["offset"] >= len(tail["lines"]) > 0
    reason = "Failed to load pipeline longlive: the emulator's pipeline failed to load: emulated failure"
    assert any(reason in line for line in tail["lines"])
    assert tail["lines"][-1].endswith("Some pipelines failed to load")


async def test_offer_before_load_is_400_and_string_prompts_are_422(
    make_emu: EmulatorFactory, http: httpx.AsyncClient, peers: Callable[..., ClientPeer]
) -> None:
    emu = await make_emu()
    peer = peers()
    await peer.pc.setLocalDescription(await peer.pc.createOffer())
    offer = {"sdp": peer.pc.localDescription.sdp, "type": "offer", "initialParameters": TEXT_OFFER}
    early = await http.post(emu.url + "/api/v1/webrtc/offer", json=offer)
    assert early.status_code == 400
    assert early.json() == {"detail": "Pipeline not loaded. Please load pipeline first."}
    await load(http, emu)
    bad = {**offer, "initialParameters": {"pipeline_ids": ["longlive"], "prompts": ["neon city"]}}
    rejected = await http.post(emu.url + "/api/v1/webrtc/offer", json=bad)
    assert rejected.status_code == 422
    assert rejected.json()["detail"][0]["loc"] == ["body", "initialParameters", "prompts", 0]
    out_of_range = {**offer, "initialParameters": {**TEXT_OFFER, "noise_scale": 1.5}}
    assert (await http.post(emu.url + "/api/v1/webrtc/offer", json=out_of_range)).status_code == 422
    assert (await http.get(emu.url + "/_emulator/metrics")).json()["sessions"] == 0
    assert (await http.get(emu.url + "/api/v1/session/metrics")).json()["sessions"] == {}


# ---- WebRTC sessions ----------------------------------------------------------------------------


async def test_text_mode_streams_frames_at_the_loaded_size(
    make_emu: EmulatorFactory, http: httpx.AsyncClient, peers: Callable[..., ClientPeer]
) -> None:
    emu = await make_emu()
    await load(http, emu)
    peer = peers()
    session_id = await peer.connect(http, emu.url, TEXT_OFFER)
    frames = await peer.frames_after(6)
    assert frames[-1].shape == (144, 256, 3)
    assert mean_diff(frames[-2], frames[-1]) > 1.0  # something moves every frame
    log = await event_log(http, emu)
    assert log["offers"][-1] == {**TEXT_OFFER, "sessionId": session_id}
    metrics = (await http.get(emu.url + "/_emulator/metrics")).json()
    assert metrics["sessions"] == 1 and metrics["active_sessions"] == 1 and metrics["frames_sent"] >= 6
    assert (metrics["chunk_frames"], metrics["fps"]) == (2, 20.0) and metrics["chunk_index"] >= 3
    real_shape = (await http.get(emu.url + "/api/v1/session/metrics")).json()
    assert set(real_shape) == {"sessions", "gpu"} and real_shape["sessions"][session_id]["frames_out"] >= 6
    assert real_shape["gpu"]["vram_total_mb"] == 24.0 * 1024


async def test_without_pipeline_ids_the_session_connects_but_never_sends_a_frame(
    make_emu: EmulatorFactory, http: httpx.AsyncClient, peers: Callable[..., ClientPeer]
) -> None:
    emu = await make_emu()
    await load(http, emu)
    silent, unknown = peers(), peers()
    await silent.connect(http, emu.url, {"prompts": [{"text": "neon city", "weight": 1.0}]})
    await unknown.connect(http, emu.url, {**TEXT_OFFER, "pipeline_ids": ["krea-realtime-video"]})
    silent.send({"noise_scale": 0.3})
    await asyncio.sleep(2.0)
    assert silent.frames == [] and unknown.frames == []
    assert silent.pc.connectionState == "connected" and unknown.pc.connectionState == "connected"
    metrics = (await http.get(emu.url + "/_emulator/metrics")).json()
    assert metrics["messages_received"] == 1 and metrics["messages_applied"] == 0
    assert metrics["frames_sent"] == 0 and metrics["active_sessions"] == 2


async def test_video_mode_returns_the_input_at_its_own_size(
    make_emu: EmulatorFactory, http: httpx.AsyncClient, peers: Callable[..., ClientPeer]
) -> None:
    emu = await make_emu(chunk_frames=None)  # passthrough's own chunk: 4 input frames
    await load(http, emu, "passthrough", width=512, height=512)
    colour = (200, 40, 90)
    peer = peers(ColourTrack(colour, (160, 96)))
    await peer.connect(http, emu.url, {"pipeline_ids": ["passthrough"], "input_mode": "video"})
    frames = await peer.frames_after(8, wait_s=15)
    assert frames[-1].shape == (96, 160, 3)
    mean = frames[-1][32:].reshape(-1, 3).mean(axis=0)  # below the stamp (top left, 32 rows)
    assert np.abs(mean - np.array(colour)).max() < 20, mean
    assert (await http.get(emu.url + "/_emulator/metrics")).json()["chunk_frames"] == 4


async def test_full_queue_drops_the_newest_message(
    make_emu: EmulatorFactory, http: httpx.AsyncClient, peers: Callable[..., ClientPeer]
) -> None:
    emu = await make_emu(chunk_frames=2, fps=20.0)  # 0.1 s per chunk
    await load(http, emu)
    peer = peers()
    session_id = await peer.connect(http, emu.url, TEXT_OFFER)
    for seq in range(20):
        peer.send({"noise_scale": seq / 100, "seq": seq})
    log = await wait_for(lambda: _all_received(http, emu, 20), 5, "20 messages at the emulator")
    dropped = [e["message"]["seq"] for e in log["dropped"]]
    queued = 20 - len(dropped)
    # 8 fit in the queue; the chunk loop may take one off while the burst is still arriving.
    assert queued in (8, 9), dropped
    assert dropped == list(range(queued, 20))  # the newest are the ones lost, the last one included
    applied = await wait_for(
        lambda: _applied_count(http, emu, session_id, queued), 5, "the queued messages to be applied"
    )
    assert [e["message"]["seq"] for e in applied] == list(range(queued))
    params = (await http.get(emu.url + "/_emulator/metrics")).json()["parameters"]  # as applied
    assert params["seq"] == queued - 1 and params["noise_scale"] == (queued - 1) / 100
    # Scope's own answer holds what arrived, dropped messages included (FrameProcessor.parameters).
    received = (await http.get(emu.url + "/api/v1/session/parameters")).json()["parameters"]
    assert received["seq"] == 19 and received["pipeline_ids"] == ["longlive"]
    metrics = (await http.get(emu.url + "/_emulator/metrics")).json()
    counts = (metrics["messages_received"], metrics["messages_dropped"], metrics["messages_applied"])
    assert counts == (20, 20 - queued, queued)


async def _all_received(http: httpx.AsyncClient, emu: ScopeEmulator, n: int) -> dict[str, Any] | None:
    log = await event_log(http, emu)
    return log if len(log["received"]) >= n else None


async def _applied_count(
    http: httpx.AsyncClient, emu: ScopeEmulator, session_id: str, n: int
) -> list[dict[str, Any]] | None:
    applied = await applied_for(http, emu, session_id)
    return applied if len(applied) >= n else None


async def test_one_message_is_applied_per_chunk(
    make_emu: EmulatorFactory, http: httpx.AsyncClient, peers: Callable[..., ClientPeer]
) -> None:
    emu = await make_emu(chunk_frames=2, fps=20.0)
    period = 2 / 20.0
    await load(http, emu)
    peer = peers()
    session_id = await peer.connect(http, emu.url, TEXT_OFFER)
    for seq in range(6):
        peer.send({"base_seed": seq})
    applied = await wait_for(lambda: _applied_count(http, emu, session_id, 6), 5, "6 applied messages")
    chunks = [e["chunk"] for e in applied]
    assert [b - a for a, b in pairwise(chunks)] == [1] * 5, chunks
    times = [e["t"] for e in applied]
    # Chunks are paced by deadlines: a late chunk is followed by a short gap, but the six chunks
    # span at least five periods (a queue applied all at once would span none).
    assert times[-1] - times[0] >= 0.8 * 5 * period, times
    # t is time.monotonic() of the emulator, the same clock as this test's.
    assert applied[0]["t"] <= time.monotonic()


async def test_one_shot_keys_are_applied_once_and_do_not_persist(
    make_emu: EmulatorFactory, http: httpx.AsyncClient, peers: Callable[..., ClientPeer]
) -> None:
    emu = await make_emu()
    await load(http, emu)
    peer = peers()
    session_id = await peer.connect(http, emu.url, TEXT_OFFER)
    await peer.frames_after(2)
    peer.send({"reset_cache": True, "images": ["/tmp/x.png"], "noise_scale": 0.25})
    applied = await wait_for(lambda: _applied_count(http, emu, session_id, 1), 5, "the message to be applied")
    assert applied[0]["message"]["reset_cache"] is True
    await asyncio.sleep(0.3)  # the chunk that consumes the one-shots
    params = (await http.get(emu.url + "/_emulator/metrics")).json()["parameters"]
    assert params["noise_scale"] == 0.25  # ordinary keys persist
    assert "reset_cache" not in params and "images" not in params
    # The cache reset shows as a white flash at the start of its chunk.
    assert any(image.mean() > 200 for _, image in peer.frames), [round(float(i.mean())) for _, i in peer.frames]


async def test_pause_freezes_the_picture_and_resume_moves_it_again(
    make_emu: EmulatorFactory, http: httpx.AsyncClient, peers: Callable[..., ClientPeer]
) -> None:
    emu = await make_emu()
    await load(http, emu)
    peer = peers()
    session_id = await peer.connect(http, emu.url, TEXT_OFFER)
    moving = await peer.frames_after(4)
    assert min(mean_diff(a, b) for a, b in pairwise(moving)) > 1.0
    peer.send({"paused": True})
    await asyncio.sleep(0.4)  # frames already in flight
    chunk_paused = (await http.get(emu.url + "/_emulator/metrics")).json()["chunk_index"]
    frozen = await peer.frames_after(6)  # the last frame is re-sent while paused
    assert max(mean_diff(a, b) for a, b in pairwise(frozen)) < 1.0
    assert (await http.get(emu.url + "/_emulator/metrics")).json()["chunk_index"] == chunk_paused
    peer.send({"paused": False})
    await asyncio.sleep(0.3)
    resumed = await peer.frames_after(4)
    assert min(mean_diff(a, b) for a, b in pairwise(resumed)) > 1.0
    assert "paused" not in (await http.get(emu.url + "/_emulator/metrics")).json()["parameters"]
    # Scope keeps what it received, so its answer says the session is no longer paused.
    assert (await http.get(emu.url + "/api/v1/session/parameters")).json()["parameters"]["paused"] is False
    assert len(await applied_for(http, emu, session_id)) == 2


async def test_restart_fault_closes_sessions_and_changes_start_time(
    make_emu: EmulatorFactory, http: httpx.AsyncClient, peers: Callable[..., ClientPeer]
) -> None:
    emu = await make_emu()
    await load(http, emu)
    before = (await http.get(emu.url + "/health")).json()["server_start_time"]
    peer = peers()
    await peer.connect(http, emu.url, TEXT_OFFER)
    await peer.frames_after(2)
    state = (await http.post(emu.url + "/_emulator/faults", json={"restart": True})).json()
    assert state["active_sessions"] == 0
    after = (await http.get(emu.url + "/health")).json()["server_start_time"]
    assert after > before and state["server_start_time"] == after
    assert (await http.get(emu.url + "/api/v1/pipeline/status")).json()["status"] == "not_loaded"
    await wait_for(lambda: peer.pc.connectionState in ("closed", "failed"), 10, "the client to see the session end")
    count = len(peer.frames)
    await asyncio.sleep(0.3)
    assert len(peer.frames) == count


async def test_stop_video_fault_stops_frames_but_not_the_connection(
    make_emu: EmulatorFactory, http: httpx.AsyncClient, peers: Callable[..., ClientPeer]
) -> None:
    emu = await make_emu()
    await load(http, emu)
    peer = peers()
    await peer.connect(http, emu.url, TEXT_OFFER)
    await peer.frames_after(2)
    assert (await http.post(emu.url + "/_emulator/faults", json={"stop_video": True})).status_code == 200
    await asyncio.sleep(0.3)  # frames already on the wire
    count = len(peer.frames)
    await asyncio.sleep(1.2)
    assert len(peer.frames) == count
    assert peer.pc.connectionState == "connected"
    assert (await http.get(emu.url + "/_emulator/metrics")).json()["active_sessions"] == 1
    # Only sessions that existed at the time are affected: a new one streams.
    fresh = peers()
    await fresh.connect(http, emu.url, TEXT_OFFER)
    await fresh.frames_after(2)


async def test_delete_closes_the_session_and_is_always_204(
    make_emu: EmulatorFactory, http: httpx.AsyncClient, peers: Callable[..., ClientPeer]
) -> None:
    emu = await make_emu()
    await load(http, emu)
    peer, other = peers(), peers()
    session_id = await peer.connect(http, emu.url, TEXT_OFFER)
    await other.connect(http, emu.url, TEXT_OFFER)  # a new offer does not close the old session
    assert (await http.get(emu.url + "/_emulator/metrics")).json()["active_sessions"] == 2
    assert (await http.delete(f"{emu.url}/api/v1/webrtc/offer/{session_id}")).status_code == 204
    assert (await http.get(emu.url + "/_emulator/metrics")).json()["active_sessions"] == 1
    await wait_for(lambda: peer.pc.connectionState in ("closed", "failed"), 10, "the client to see the close")
    assert (await http.delete(f"{emu.url}/api/v1/webrtc/offer/{session_id}")).status_code == 204
    assert (await http.delete(f"{emu.url}/api/v1/webrtc/offer/no-such-session")).status_code == 204
    assert other.pc.connectionState == "connected"


async def test_trickle_patch_answers_204_or_404(
    make_emu: EmulatorFactory, http: httpx.AsyncClient, peers: Callable[..., ClientPeer]
) -> None:
    emu = await make_emu()
    await load(http, emu)
    peer = peers()
    session_id = await peer.connect(http, emu.url, TEXT_OFFER)
    line = next(x for x in peer.pc.localDescription.sdp.splitlines() if x.startswith("a=candidate:"))
    good = {"candidate": line[2:], "sdpMid": "0", "sdpMLineIndex": 0}
    url = f"{emu.url}/api/v1/webrtc/offer/{session_id}"
    assert (await http.patch(url, json={"candidates": [good]})).status_code == 204
    assert (await http.patch(url, json={"candidates": [good]})).status_code == 204  # a duplicate is fine
    assert (await http.patch(url, json={"candidates": [{**good, "candidate": ""}]})).status_code == 404
    assert (await http.patch(url, json={"candidates": [{**good, "candidate": "nonsense"}]})).status_code == 404
    unknown = f"{emu.url}/api/v1/webrtc/offer/no-such-session"
    assert (await http.patch(unknown, json={"candidates": [good]})).status_code == 404
    await http.delete(url)
    assert (await http.patch(url, json={"candidates": [good]})).status_code == 404


async def test_invalid_data_channel_messages_are_dropped_and_logged(
    make_emu: EmulatorFactory, http: httpx.AsyncClient, peers: Callable[..., ClientPeer]
) -> None:
    emu = await make_emu()
    await load(http, emu)
    peer = peers()
    session_id = await peer.connect(http, emu.url, TEXT_OFFER)
    peer.channel.send("{not json")
    peer.channel.send("[1, 2]")
    peer.channel.send("[" * 30_000 + "]" * 30_000)  # deeper than Python's JSON reader goes
    peer.send({"noise_scale": 0.5})
    await wait_for(lambda: _applied_count(http, emu, session_id, 1), 5, "the valid message")
    assert (await http.get(emu.url + "/_emulator/metrics")).json()["messages_received"] == 1
    lines = (await http.get(emu.url + "/api/v1/logs/tail", params={"lines": 100})).json()["lines"]
    assert sum("not JSON" in line for line in lines) == 2 and sum("not a JSON object" in line for line in lines) == 1


async def test_bodies_nested_too_deeply_are_answered_as_scope_answers_them(make_emu: EmulatorFactory,
                                                                          http: httpx.AsyncClient) -> None:
    """Scope 0.2.4 (checked on the real server) answers a body nested 30,000 deep on these routes with 400
    {"detail": "There was an error parsing the body"}, not its 422 for JSON that is merely wrong."""
    emu = await make_emu()
    deep = "[" * 30_000 + "]" * 30_000
    for path in ("/api/v1/pipeline/load", "/api/v1/tempo/enable"):
        answer = await http.post(emu.url + path, content=deep, headers={"Content-Type": "application/json"})
        assert answer.status_code == 400, (path, answer.text)
        assert answer.json() == {"detail": "There was an error parsing the body"}


async def test_garbage_parameter_values_do_not_stop_the_stream(
    make_emu: EmulatorFactory, http: httpx.AsyncClient, peers: Callable[..., ClientPeer]
) -> None:
    """The data channel is not validated (Scope's neither): odd values must not break the chunk loop."""
    emu = await make_emu()
    await load(http, emu)
    peer = peers()
    session_id = await peer.connect(http, emu.url, TEXT_OFFER)
    garbage = {"prompts": 5, "transition": "soon", "base_seed": "abc", "noise_scale": None, "denoising_step_list": "x"}
    peer.send(garbage)
    peer.send({"transition": {"target_prompts": [{"text": 3}], "num_steps": -2}, "ctrl_input": {"mouse": "left"}})
    peer.send({"prompts": [{"text": "neon \ud800 city", "weight": 1.0}]})  # half a character: no UTF-8 for it
    await wait_for(lambda: _applied_count(http, emu, session_id, 3), 5, "the odd messages to be applied")
    await peer.frames_after(4)
    assert (await http.get(emu.url + "/api/v1/session/parameters")).json()["parameters"]["base_seed"] == "abc"


async def test_fault_switches_reject_unknown_keys_and_bad_values(
    make_emu: EmulatorFactory, http: httpx.AsyncClient
) -> None:
    emu = await make_emu()
    url = emu.url + "/_emulator/faults"
    assert (await http.post(url, json={"explode": True})).status_code == 422
    assert (await http.post(url, json={"slow_load": -1, "fail_load": True})).status_code == 422
    too_long = await http.post(url, json={"stale_seconds": 1e300})  # every status poll stale for ever
    assert too_long.status_code == 422 and "0-86400" in too_long.text
    state = (await http.post(url, json={"slow_load": 0.5})).json()
    assert (state["slow_load"], state["fail_load"], state["stale_seconds"]) == (0.5, False, 0.2)

async def test_uploaded_asset_is_stored_and_its_path_returned(
    make_emu: EmulatorFactory, http: httpx.AsyncClient
) -> None:
    emu = await make_emu()
    data = b"\x89PNG fake image bytes"
    response = await http.post(emu.url + "/api/v1/assets", params={"filename": "../ref.png"}, content=data)
    body = response.json()
    assert (body["filename"], body["size_bytes"]) == ("ref.png", len(data))
    assert await asyncio.to_thread(Path(body["path"]).read_bytes) == data
    await emu.aclose()
    assert not os.path.exists(body["path"])  # noqa: ASYNC240 - the temp dir goes with the emulator (a local stat)


# ---- lifecycle and the command line -----------------------------------------------------------


async def test_aclose_twice_is_harmless_and_a_closed_emulator_refuses_to_start(http: httpx.AsyncClient) -> None:
    async with ScopeEmulator(EmulatorConfig(port=0, load_seconds=0.05)) as emu:
        url = emu.url
        assert (await http.get(url + "/health")).status_code == 200
    await emu.aclose()
    with pytest.raises(httpx.TransportError):
        await http.get(url + "/health")
    with pytest.raises(RuntimeError, match="closed"):
        await emu.start()


async def test_bad_settings_and_busy_ports_are_config_errors() -> None:
    with pytest.raises(ConfigError, match="fps"):
        EmulatorConfig(fps=0)
    with pytest.raises(ConfigError, match="slow load: 1e.300 must be 0-86400 seconds"):
        EmulatorConfig(slow_load=1e300)
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        emu = ScopeEmulator(EmulatorConfig(port=busy.getsockname()[1]))
        with pytest.raises(ConfigError, match="cannot listen"):
            await emu.start()
        await emu.aclose()


async def test_module_runs_standalone_and_stops_cleanly_on_sigterm(http: httpx.AsyncClient) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    cmd = [sys.executable, "-m", "metadj_bridge.emulator", "--host", "127.0.0.1", "--port", str(port),
           "--chunk-frames", "4"]
    proc = await asyncio.to_thread(subprocess.Popen, cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:

        async def healthy() -> bool:
            assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
            try:
                return (await http.get(f"http://127.0.0.1:{port}/health")).json()["emulator"] is True
            except httpx.TransportError:
                return False

        await wait_for(healthy, 30, "the emulator process to answer /health")
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.to_thread(proc.wait, 10) == 0
        err = proc.stderr.read().decode() if proc.stderr else ""
        assert f"serving at http://127.0.0.1:{port}" in err and "Traceback" not in err
        assert "imitates Scope 0.2.4 on a GPU server offering streamdiffusionv2, longlive" in err
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if proc.stderr:
            proc.stderr.close()


# ---- pure parts: queue, merge rules, drawing ----------------------------------------------------


def test_parameter_queue_holds_eight_and_refuses_the_ninth() -> None:
    queue = ParameterQueue()
    assert all(queue.offer({"seq": i}) for i in range(8))
    assert queue.offer({"seq": 8}) is False
    assert [queue.take() for _ in range(8)] == [{"seq": i} for i in range(8)]
    assert queue.take() is None


def test_parameters_persist_merge_and_one_shots_are_consumed_by_one_chunk() -> None:
    params = SessionParameters({"prompts": [{"text": "a", "weight": 1.0}], "noise_scale": 0.2, "paused": True})
    assert "paused" not in params.values
    params.apply({"reset_cache": True, "lora_scales": [{"path": "x", "scale": 1.0}], "base_seed": 7})
    first = params.next_chunk()
    assert first.reset_cache and set(first.one_shots) == {"reset_cache", "lora_scales"}
    assert (first.noise_scale, first.base_seed) == (0.2, 7)
    second = params.next_chunk()
    assert not second.reset_cache and second.one_shots == {}
    assert params.values["base_seed"] == 7 and "reset_cache" not in params.values


def test_transition_blends_over_its_steps_then_the_target_becomes_the_prompts() -> None:
    params = SessionParameters({"prompts": [{"text": "a", "weight": 1.0}]})
    params.apply({"transition": {"target_prompts": [{"text": "b", "weight": 1.0}], "num_steps": 4}})
    weights = [dict(params.next_chunk().prompts).get("b", 0.0) for _ in range(4)]
    assert weights == pytest.approx([0.25, 0.5, 0.75, 1.0])
    assert params.values["prompts"] == [{"text": "b", "weight": 1.0}] and "transition" not in params.values
    assert params.next_chunk().prompts == (("b", 1.0),)


def test_prompts_without_transition_cancel_it_and_missing_steps_snap() -> None:
    params = SessionParameters({"prompts": ["a"]})
    params.apply({"transition": {"target_prompts": ["b"], "num_steps": 10}})
    params.next_chunk()
    params.apply({"prompts": ["c"]})  # strings are accepted on the data channel
    assert "transition" not in params.values and params.next_chunk().prompts == (("c", 1.0),)
    params.apply({"transition": {"target_prompts": [{"text": "d", "weight": 3}, {"text": "e", "weight": 1}]}})
    assert dict(params.next_chunk().prompts) == pytest.approx({"d": 0.75, "e": 0.25})


def test_each_prompt_has_its_own_picture_and_weights_blend_them() -> None:
    renderer = FrameRenderer()

    def draw(prompts: tuple[tuple[str, float], ...], **extra: Any) -> np.ndarray:
        fields: dict[str, Any] = {"frame_number": 3, "chunk_index": 1, **extra}
        return renderer.render(FrameSpec(256, 144, prompts, **fields))

    city, forest = draw((("neon city", 1.0),)), draw((("forest at dawn", 1.0),))
    assert mean_diff(city, forest) > 20
    assert np.array_equal(city, FrameRenderer().render(FrameSpec(256, 144, (("neon city", 1.0),), 3, 1)))
    half = draw((("neon city", 0.5), ("forest at dawn", 0.5)))
    assert mean_diff(half, city) < mean_diff(city, forest) and mean_diff(half, forest) < mean_diff(city, forest)
    assert mean_diff(draw((("neon city", 1.0),), noise_scale=0.8), city) > 20  # grain (video mode)
    ignored = draw((("neon city", 1.0),), noise_scale=None)  # text mode: the pipeline never sees it
    assert np.array_equal(ignored[:-20], draw((("neon city", 1.0),), noise_scale=0.0)[:-20])
    assert draw((("neon city", 1.0),), flash=1.0)[:-20].mean() > 250
    assert mean_diff(draw((("neon city", 1.0),), frame_number=4), city) > 1.0  # motion
    assert mean_diff(draw((("neon city", 1.0),), base_seed=43), city) > 1.0


def test_a_prompt_with_half_a_character_is_drawn_as_a_prompt_of_its_own() -> None:
    renderer = FrameRenderer()
    odd, city = ((("neon \ud800 city", 1.0),), (("neon city", 1.0),))
    drawn = renderer.render(FrameSpec(256, 144, odd, 3, 1))
    assert mean_diff(drawn, renderer.render(FrameSpec(256, 144, city, 3, 1))) > 20
    assert np.array_equal(drawn, FrameRenderer().render(FrameSpec(256, 144, odd, 3, 1)))


async def test_a_recvonly_offer_gets_no_video_as_in_scope(
    make_emu: EmulatorFactory, http: httpx.AsyncClient, peers: Callable[..., ClientPeer]
) -> None:
    emu = await make_emu()
    await load(http, emu)
    peer = peers()
    peer.pc.getTransceivers()[0].direction = "recvonly"
    await peer.connect(http, emu.url, TEXT_OFFER)
    await asyncio.sleep(1.0)
    assert peer.frames == [] and peer.pc.connectionState == "connected"
    lines = (await http.get(emu.url + "/api/v1/logs/tail", params={"lines": 50})).json()["lines"]
    assert any("recvonly" in line for line in lines)


_IN_PROCESS_LOGGING = """
import asyncio, json, logging, sys
import httpx
from metadj_bridge.cli import setup_logging
from metadj_bridge.emulator import EmulatorConfig, ScopeEmulator
from metadj_bridge.emulator.records import hide_chatter_from_terminal

setup_logging(int(sys.argv[1]))  # as `run` sets it up: 0 the show's lines, -1 for -q
hide_chatter_from_terminal()     # as `run` and `replay` do without -v


async def main():
    async with ScopeEmulator(EmulatorConfig(host="127.0.0.1", port=0, load_seconds=0.1)) as emulator:
        async with httpx.AsyncClient(base_url=emulator.url) as http:
            await http.post("/api/v1/pipeline/load", json={"pipeline_ids": ["passthrough"]})
            for _ in range(100):
                if (await http.get("/api/v1/pipeline/status")).json()["status"] == "loaded":
                    break
                await asyncio.sleep(0.05)
            logging.getLogger("metadj_bridge.run").warning("the show's own warning")
            print(json.dumps((await http.get("/api/v1/logs/tail", params={"lines": 100})).json()["lines"]))

asyncio.run(main())
"""


@pytest.mark.parametrize("verbosity", [0, -1])
def test_the_in_process_emulators_lines_stay_off_the_terminal_and_in_its_log_tail(verbosity: int) -> None:
    """`run` on the built-in emulator keeps the emulator's INFO lines off the terminal, but its log tail still has
    them: the bridge reads the messages Scope dropped ("Parameter queue full", INFO in Scope's log) and the pauses it
    did not send there. Setting the emulator's logger to WARNING, as `run` did, left the tail without them."""
    out = subprocess.run([sys.executable, "-c", _IN_PROCESS_LOGGING, str(verbosity)], capture_output=True, text=True,
                         timeout=60, check=True)
    tail = json.loads(out.stdout.strip().splitlines()[-1])
    assert any("Pipeline passthrough loaded successfully" in line for line in tail), tail
    assert "Pipeline passthrough" not in out.stderr  # the terminal
    assert "the show's own warning" in out.stderr
