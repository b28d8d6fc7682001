"""A WebRTC session's life on Scope (scope-api.md §5, §9, §12-13): the offer and its answer, trickled candidates,
the session's parameters and metrics while it runs, and its end by DELETE or by closing the peer first."""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

import httpx

from metadj_bridge.scope.sender import ParameterSender
from metadj_bridge.scope.session import ScopeSession, SessionConfig
from tests.conformance.conftest import require
from tests.conformance.peer import OFFER, Peer, ensure_loaded, initial_parameters, session

VIZ_SIZE = {"height": 256, "width": 256}


async def _json(url: str, path: str) -> Any:
    async with httpx.AsyncClient(timeout=15) as http:
        response = await http.get(url + path)
    response.raise_for_status()
    return response.json()


async def _sessions(url: str) -> dict[str, Any]:
    return dict((await _json(url, "/api/v1/session/metrics"))["sessions"])


async def _until_gone(url: str, session_id: str, within: float = 3.0) -> None:
    deadline = time.monotonic() + within
    while session_id in await _sessions(url):
        assert time.monotonic() < deadline, f"session {session_id} still listed {within:g} s after it ended"
        await asyncio.sleep(0.05)


async def test_the_answer_has_sdp_type_and_a_session_id_and_carries_all_candidates(
    scope_url: str, offered: dict[str, Any]
) -> None:
    require(offered, "controller-viz")
    await ensure_loaded(scope_url, "controller-viz", VIZ_SIZE)
    async with session(scope_url, "controller-viz", "text") as peer:
        assert set(peer.answer) == {"sdp", "type", "sessionId"}
        assert peer.answer["type"] == "answer"
        assert uuid.UUID(peer.answer["sessionId"]).version == 4
        sdp = peer.answer["sdp"].splitlines()
        video = [line for line in sdp if line.startswith("m=video")]
        assert len(video) == 1
        at = sdp.index(video[0])
        section = sdp[at: next((i for i in range(at + 1, len(sdp)) if sdp[i].startswith("m=")), len(sdp))]
        assert "a=sendrecv" in section, "Scope answers the bridge's sendrecv video with sendrecv"
        first_codec = next(line for line in section if line.startswith("a=rtpmap:"))
        assert "H264/90000" in first_codec, f"the bridge prefers H264 and Scope keeps that order: {first_codec}"
        assert any(line.startswith("a=group:BUNDLE") for line in sdp)
        assert any(line.startswith("a=candidate:") for line in sdp), "all server candidates are in the answer"
        assert "a=end-of-candidates" in sdp, "the server never trickles: its gathering is complete"


async def test_trickled_candidates_are_204_for_the_session_and_404_when_empty_or_unknown(
    scope_url: str, offered: dict[str, Any]
) -> None:
    require(offered, "controller-viz")
    await ensure_loaded(scope_url, "controller-viz", VIZ_SIZE)
    async with session(scope_url, "controller-viz", "text") as peer:
        own = next(line[2:] for line in peer.pc.localDescription.sdp.splitlines() if line.startswith("a=candidate:"))
        where = f"{scope_url}{OFFER}/{peer.session_id}"
        async with httpx.AsyncClient(timeout=15) as http:
            duplicate = await http.patch(where, json={"candidates": [{"candidate": own, "sdpMid": "0",
                                                                       "sdpMLineIndex": 0}]})
            empty = await http.patch(where, json={"candidates": [{"candidate": "", "sdpMid": "0",
                                                                   "sdpMLineIndex": 0}]})
            unknown = await http.patch(f"{scope_url}{OFFER}/{uuid.uuid4()}",
                                       json={"candidates": [{"candidate": own, "sdpMid": "0", "sdpMLineIndex": 0}]})
        assert duplicate.status_code == 204
        assert empty.status_code == 404, "an empty end-of-candidates string is refused"
        assert unknown.status_code == 404
        await peer.wait_frames(3, within=10)  # the session is unharmed


async def test_session_parameters_are_wrapped_and_follow_the_data_channel_paused_included(
    scope_url: str, offered: dict[str, Any]
) -> None:
    require(offered, "controller-viz")
    await ensure_loaded(scope_url, "controller-viz", VIZ_SIZE)
    initial = initial_parameters("controller-viz", "text")
    async with session(scope_url, "controller-viz", "text") as peer:
        body = await _json(scope_url, "/api/v1/session/parameters")
        assert set(body) == {"parameters"}
        params = body["parameters"]
        for key in ("pipeline_ids", "input_mode", "prompts", "manage_cache"):
            assert params[key] == initial[key], key
        assert params["paused"] is False
        peer.send({"paused": True, "conformance_probe": 1})
        peer.send({"conformance_other": 2})
        deadline = time.monotonic() + 3
        while True:
            params = (await _json(scope_url, "/api/v1/session/parameters"))["parameters"]
            if params.get("paused") is True and params.get("conformance_other") == 2:
                break
            assert time.monotonic() < deadline, f"the sent keys never showed in the session parameters: {params}"
            await asyncio.sleep(0.05)
        assert params["conformance_probe"] == 1, "messages merge into the parameters; earlier keys stay"
        peer.send({"paused": False})


async def test_session_metrics_list_the_running_session_with_its_frame_counts(
    scope_url: str, offered: dict[str, Any]
) -> None:
    require(offered, "controller-viz")
    await ensure_loaded(scope_url, "controller-viz", VIZ_SIZE)
    async with session(scope_url, "controller-viz", "text") as peer:
        await peer.wait_frames(10, within=10)
        metrics = await _json(scope_url, "/api/v1/session/metrics")
        assert set(metrics) == {"sessions", "gpu"}
        assert list(metrics["sessions"]) == [peer.session_id]
        stats = metrics["sessions"][peer.session_id]
        for key in ("frames_in", "frames_out", "fps_in", "fps_out", "pipeline_fps"):
            assert isinstance(stats[key], (int, float)) and not isinstance(stats[key], bool), key
        assert stats["frames_in"] == 0, "text mode: no input frames"
        assert stats["frames_out"] > 0
    await _until_gone(scope_url, str(peer.session_id))


async def test_delete_ends_the_session_and_the_server_closes_the_peer(
    scope_url: str, offered: dict[str, Any]
) -> None:
    require(offered, "controller-viz")
    await ensure_loaded(scope_url, "controller-viz", VIZ_SIZE)
    peer = Peer(scope_url)
    try:
        await peer.open(initial_parameters("controller-viz", "text"))
        await peer.wait_frames(3, within=10)
        async with httpx.AsyncClient(timeout=15) as http:
            response = await http.delete(f"{scope_url}{OFFER}/{peer.session_id}")
        assert response.status_code == 204
        deadline = time.monotonic() + 3
        while peer.pc.connectionState not in ("closed", "failed"):
            assert time.monotonic() < deadline, f"the peer is still {peer.pc.connectionState} after the DELETE"
            await asyncio.sleep(0.02)
        assert await peer.frames_during(0.3) == 0
        await _until_gone(scope_url, str(peer.session_id))
    finally:
        peer.session_id = None  # already deleted
        await peer.close()


async def test_closing_the_peer_first_ends_the_session_and_a_late_delete_is_still_204(
    scope_url: str, offered: dict[str, Any]
) -> None:
    require(offered, "controller-viz")
    await ensure_loaded(scope_url, "controller-viz", VIZ_SIZE)
    peer = Peer(scope_url)
    await peer.open(initial_parameters("controller-viz", "text"))
    await peer.wait_frames(3, within=10)
    session_id = str(peer.session_id)
    assert await peer.close(delete_first=False) == 204
    await _until_gone(scope_url, session_id)
    async with httpx.AsyncClient(timeout=15) as http:
        assert (await http.delete(f"{scope_url}{OFFER}/{uuid.uuid4()}")).status_code == 204, "unknown ids too"


async def test_the_bridges_own_session_streams_and_leaves_no_session_behind(
    scope_url: str, offered: dict[str, Any]
) -> None:
    require(offered, "controller-viz")
    config = SessionConfig(url=scope_url, pipeline_ids=["controller-viz"], load_params=dict(VIZ_SIZE),
                           input_mode="text", denoising_step_list=None, load_timeout=30)
    bridge = ScopeSession(config, ParameterSender())
    session_id = ""
    try:
        await bridge.start()
        await bridge.wait_streaming(timeout=20)
        deadline = time.monotonic() + 10
        while bridge.frames_received < 10:
            assert time.monotonic() < deadline, f"{bridge.frames_received} frames in 10 s"
            await asyncio.sleep(0.05)
        session_id = str(bridge.session_id)
        assert session_id in await _sessions(scope_url)
    finally:
        await bridge.aclose()
    await _until_gone(scope_url, session_id)
