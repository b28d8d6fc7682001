"""The emulator imitates what a real Scope 0.2.4 does where the two used to differ (issue 13).

Each test names the real behaviour it imitates; the evidence is Scope's code (cited) or what a real
0.2.4 on a CPU-only machine answered. Real HTTP (httpx) and a real aiortc client over loopback.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
from collections.abc import Callable
from typing import Any

import httpx
import numpy as np
import pytest

from metadj_bridge.emulator import EmulatorConfig, catalogue
from metadj_bridge.emulator.cli import add_arguments, config_from_args, imitation
from metadj_bridge.emulator.encoder import SCOPE_MAX_BITRATE, SCOPE_MIN_BITRATE, ScopeH264Encoder, ScopeVp8Encoder
from metadj_bridge.emulator.pipeline import SessionPipeline
from metadj_bridge.emulator.records import EventRecords
from metadj_bridge.emulator.render import FrameSpec, strip_text
from tests.helpers import ColourTrack, wait_for
from tests.test_emulator import SMALL, TEXT_OFFER, ClientPeer, EmulatorFactory, applied_for, http, peers

__all__ = ["http", "peers"]  # fixtures shared with test_emulator

WEIGHT_FREE = ["passthrough", "controller-viz", "rife", "scribble", "gray", "optical-flow"]


@pytest.fixture
def make_emu(make_emulator: EmulatorFactory) -> EmulatorFactory:
    """Emulators with each pipeline's own chunk size and pace unless a test forces them."""

    async def make(**overrides: Any) -> Any:
        return await make_emulator(**{"chunk_frames": None, "fps": None, "stale_seconds": 0.0, **overrides})

    return make


async def status(http: httpx.AsyncClient, url: str) -> dict[str, Any]:
    return (await http.get(url + "/api/v1/pipeline/status")).json()  # type: ignore[no-any-return]


async def log_lines(http: httpx.AsyncClient, url: str) -> list[str]:
    return (await http.get(url + "/api/v1/logs/tail", params={"lines": 200})).json()["lines"]  # type: ignore[no-any-return]


async def load_and_wait(http: httpx.AsyncClient, url: str, pipeline: str, params: dict[str, Any] | None,
                        want: str) -> dict[str, Any]:
    """POST a load and return the first status that is ``want`` (``error`` is shown only once)."""
    body: dict[str, Any] = {"pipeline_ids": [pipeline]}
    if params is not None:
        body["load_params"] = params
    assert (await http.post(url + "/api/v1/pipeline/load", json=body)).status_code == 200

    async def reached() -> dict[str, Any] | None:
        st = await status(http, url)
        return st if st["status"] == want else None

    return await wait_for(reached, 5, f"{pipeline} status {want}")  # type: ignore[no-any-return]


# ---- what is offered, and what fails to load --------------------------------------------------------


async def test_an_id_the_server_does_not_have_fails_with_scopes_log_line(
    make_emu: EmulatorFactory, http: httpx.AsyncClient
) -> None:
    """pipeline_manager.py: "Failed to load pipeline longliv: Invalid pipeline ID: longliv. If this error persists,
    ..." then "Some pipelines failed to load"; the status keeps the load_params as sent, adapters null."""
    emu = await make_emu()
    error = await load_and_wait(http, emu.url, "longliv", {"height": 320, "width": 576}, "error")
    assert (error["pipeline_id"], error["error"], error["loaded_lora_adapters"]) == (None, None, None)
    assert error["load_params"] == {"height": 320, "width": 576}
    after = await status(http, emu.url)
    assert after["status"] == "not_loaded" and after["load_params"] == {"height": 320, "width": 576}
    lines = await log_lines(http, emu.url)
    assert any("Failed to load pipeline longliv: Invalid pipeline ID: longliv. If this error persists" in line
               for line in lines)
    assert lines[-1].endswith("Some pipelines failed to load")
    # Without load params the real status shows null there, not {}.
    assert (await load_and_wait(http, emu.url, "nope", None, "error"))["load_params"] is None


async def test_a_gpu_server_offers_and_loads_every_built_in_pipeline(
    make_emu: EmulatorFactory, http: httpx.AsyncClient
) -> None:
    emu = await make_emu(load_seconds=0.1)
    schemas = (await http.get(emu.url + "/api/v1/pipelines/schemas")).json()["pipelines"]
    assert len(schemas) == 12 and schemas["longlive"]["estimated_vram_gb"] == 20.0
    loaded = await load_and_wait(http, emu.url, "longlive", None, "loaded")
    assert (loaded["pipeline_id"], loaded["load_params"], loaded["loaded_lora_adapters"]) == ("longlive", {}, None)
    loras = {"loras": [{"path": "/models/style.safetensors", "scale": 0.8}], "lora_merge_mode": "runtime_peft"}
    with_lora = await load_and_wait(http, emu.url, "memflow", loras, "loaded")
    assert with_lora["loaded_lora_adapters"] == [{"path": "/models/style.safetensors", "scale": 0.8}]


async def test_a_cpu_only_server_offers_the_weight_free_pipelines_and_gpu_ones_fail_as_there(
    make_emu: EmulatorFactory, http: httpx.AsyncClient
) -> None:
    """registry.py skips pipelines with estimated_vram_gb without CUDA; loading one anyway fails on import."""
    emu = await make_emu(cpu_only=True)
    schemas = (await http.get(emu.url + "/api/v1/pipelines/schemas")).json()["pipelines"]
    assert list(schemas) == WEIGHT_FREE
    # The real CPU-only 0.2.4's passthrough entry, field by field.
    assert schemas["passthrough"]["supported_modes"] == ["video"] and schemas["passthrough"]["min_dimension"] == 1
    assert schemas["controller-viz"]["config_schema"]["properties"]["ctrl_input"]["default"] is None
    for pipeline, reason in (("longlive", "No module named 'flash_attn'"),
                             ("krea-realtime-video", "Found no NVIDIA driver on your system.")):
        await load_and_wait(http, emu.url, pipeline, {"height": 320, "width": 576}, "error")
        lines = await log_lines(http, emu.url)
        assert any(f"Failed to load pipeline {pipeline}: {reason}" in line for line in lines), lines[-4:]
    assert (await load_and_wait(http, emu.url, "gray", None, "loaded"))["load_params"] == {}


async def test_weight_free_pipelines_load_at_once_gpu_ones_take_load_seconds(
    make_emu: EmulatorFactory, http: httpx.AsyncClient
) -> None:
    emu = await make_emu(load_seconds=60.0)  # a GPU load would outlast the test
    await load_and_wait(http, emu.url, "passthrough", SMALL, "loaded")
    await http.post(emu.url + "/api/v1/pipeline/load", json={"pipeline_ids": ["longlive"]})
    await wait_for(lambda: _status_is(http, emu.url, "loading"), 5, "the GPU load to start")
    await asyncio.sleep(0.3)
    assert await _status_is(http, emu.url, "loading")


async def _status_is(http: httpx.AsyncClient, url: str, want: str) -> bool:
    return (await status(http, url))["status"] == want


async def test_other_endpoints_answer_in_scopes_shapes(make_emu: EmulatorFactory, http: httpx.AsyncClient) -> None:
    emu = await make_emu(cpu_only=True)
    missing = await http.get(emu.url + "/api/v1/models/status")
    assert missing.status_code == 422 and missing.json()["detail"][0]["loc"] == ["query", "pipeline_id"]
    models = await http.get(emu.url + "/api/v1/models/status", params={"pipeline_id": "longlive"})
    assert models.json() == {"downloaded": True, "progress": None}
    assert (await http.get(emu.url + "/api/v1/session/parameters")).json() == {"parameters": {}}
    assert (await http.get(emu.url + "/api/v1/session/metrics")).json() == {"sessions": {}, "gpu": {}}
    hw = (await http.get(emu.url + "/api/v1/hardware/info")).json()
    assert hw["vram_gb"] is None  # cpu_only: no CUDA
    assert hw["syphon"] == {"available": False, "reason": "Syphon is macOS-only",
                            "install_hint": "Run Scope on macOS to use Syphon sources and sinks."}


# ---- sessions ---------------------------------------------------------------------------------------


async def test_a_video_only_pipeline_in_text_mode_sends_nothing_and_takes_messages_while_it_waits(
    make_emu: EmulatorFactory, http: httpx.AsyncClient, peers: Callable[..., ClientPeer]
) -> None:
    """passthrough's prepare() always wants 4 input frames; without input no chunk is made, while
    process_chunk still takes one message per 10 ms iteration (pipeline_processor.py)."""
    emu = await make_emu()
    await load_and_wait(http, emu.url, "passthrough", SMALL, "loaded")
    peer = peers()
    session_id = await peer.connect(http, emu.url, {"pipeline_ids": ["passthrough"], "input_mode": "text"})
    for seq in range(8):
        peer.send({"seq": seq})
    applied = await wait_for(lambda: _applied(http, emu.url, session_id, 8), 5, "8 messages applied")
    assert {e["chunk"] for e in applied} == {0}  # taken while waiting: no chunk was made
    peer.send({"paused": True})
    await asyncio.sleep(1.0)
    assert peer.frames == [] and peer.pc.connectionState == "connected"
    params = (await http.get(emu.url + "/api/v1/session/parameters")).json()["parameters"]
    assert params["paused"] is True and params["seq"] == 7 and params["input_mode"] == "text"
    metrics = (await http.get(emu.url + "/api/v1/session/metrics")).json()["sessions"][session_id]
    assert metrics["frames_out"] == 0 and {"frames_in", "fps_in", "fps_out", "pipeline_fps"} <= set(metrics)


async def _applied(http: httpx.AsyncClient, url: str, session_id: str, n: int) -> list[dict[str, Any]] | None:
    log = (await http.get(url + "/_emulator/log")).json()
    applied = [e for e in log["applied"] if e["session_id"] == session_id]
    return applied if len(applied) >= n else None


async def test_passthrough_returns_every_input_frame_at_the_inputs_pace(
    make_emu: EmulatorFactory, http: httpx.AsyncClient, peers: Callable[..., ClientPeer]
) -> None:
    emu = await make_emu()
    await load_and_wait(http, emu.url, "passthrough", None, "loaded")
    peer = peers(ColourTrack((30, 200, 60), (160, 96)))  # 30 fps in
    session_id = await peer.connect(http, emu.url, {"pipeline_ids": ["passthrough"], "input_mode": "video"})
    await peer.frames_after(30, wait_s=15)
    own = (await http.get(emu.url + "/_emulator/metrics")).json()
    assert own["fps"] is None and own["chunk_frames"] == 4  # no pace of its own; 4 frames per chunk
    stats = (await http.get(emu.url + "/api/v1/session/metrics")).json()["sessions"][session_id]
    # Every input frame comes back (a fixed 20 fps pace would return two of three at 30 fps in).
    assert stats["frames_out"] >= 0.85 * (stats["frames_in"] - 12), stats


async def test_gray_returns_the_input_in_grey(
    make_emu: EmulatorFactory, http: httpx.AsyncClient, peers: Callable[..., ClientPeer]
) -> None:
    emu = await make_emu()
    await load_and_wait(http, emu.url, "gray", None, "loaded")
    peer = peers(ColourTrack((200, 40, 90), (160, 96)))
    await peer.connect(http, emu.url, {"pipeline_ids": ["gray"], "input_mode": "video"})
    frame = (await peer.frames_after(3, wait_s=15))[-1]
    channels = frame.reshape(-1, 3).mean(axis=0)
    assert frame.shape == (96, 160, 3) and channels.max() - channels.min() < 8, channels


async def test_controller_viz_draws_only_ctrl_input_at_its_own_pace(
    make_emu: EmulatorFactory, http: httpx.AsyncClient, peers: Callable[..., ClientPeer]
) -> None:
    emu = await make_emu()
    await load_and_wait(http, emu.url, "controller-viz", {"height": 256, "width": 256}, "loaded")
    peer = peers()
    await peer.connect(http, emu.url, {"pipeline_ids": ["controller-viz"], "input_mode": "text",
                                       "prompts": [{"text": "neon city", "weight": 1.0}]})
    before = (await peer.frames_after(3))[-1]
    assert _red_dot(before) == pytest.approx((128, 128), abs=3)  # starts in the middle
    own = (await http.get(emu.url + "/_emulator/metrics")).json()
    assert (own["fps"], own["chunk_frames"]) == (56.0, 1)
    peer.send({"ctrl_input": {"button": ["KeyW"], "mouse": [60, -40]}, "noise_scale": 0.9, "base_seed": 7})

    async def moved() -> bool:
        return _red_dot(peer.frames[-1][1])[0] > 170

    await wait_for(moved, 5, "the cursor to move")
    after = (await peer.frames_after(2))[-1]
    assert _red_dot(after) == pytest.approx((188, 88), abs=3)
    # Prompts, noise and seed are not read by controller-viz: only keys and cursor differ.
    key_w = after[256 - 20 - 65 : 256 - 20 - 35, 55:85]
    assert key_w.mean() > 180 and before[256 - 20 - 65 + 5 : 256 - 20 - 35 - 5, 60:80].mean() < 60


def _red_dot(frame: np.ndarray) -> tuple[float, float]:
    red = (frame[:, :, 0] > 150) & (frame[:, :, 1] < 90) & (frame[:, :, 2] < 90)
    ys, xs = np.nonzero(red)
    return (float(xs.mean()), float(ys.mean())) if len(xs) else (-1.0, -1.0)


async def test_text_mode_frames_ignore_noise_scale_which_only_video_mode_reads() -> None:
    """defaults.py apply_mode_defaults_to_state: text mode sets noise_scale and noise_controller to None."""
    pipeline = SessionPipeline("s", {"input_mode": "text", "noise_scale": 0.9, "prompts": ["a"]}, size=(64, 48),
                               facts=catalogue.PIPELINES["longlive"], chunk_frames=2, fps=200.0,
                               records=EventRecords(10), emulator_id="t")
    task = asyncio.create_task(pipeline.run())
    try:
        await wait_for(lambda: pipeline.chunk_index > 0, 5, "a chunk")
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    item = pipeline.next_output()
    assert isinstance(item, FrameSpec) and item.noise_scale is None and "noise" not in strip_text(item)
    assert item.denoising_steps == (1000, 750, 500, 250)  # the schema default is used when none is sent
    facts = catalogue.PIPELINES["longlive"]
    assert facts.ignored("text", {"noise_scale", "noise_controller", "prompts"}) == ["noise_controller", "noise_scale"]
    assert facts.ignored("video", {"noise_scale", "prompts"}) == []


async def test_video_mode_shows_noise_scale_over_the_input(
    make_emu: EmulatorFactory, http: httpx.AsyncClient, peers: Callable[..., ClientPeer]
) -> None:
    """In video mode a Wan pipeline reads noise_scale (default 0.7, the schema's mode_defaults): grain on the input."""
    emu = await make_emu(fps=20.0, chunk_frames=4, load_seconds=0.05)
    await load_and_wait(http, emu.url, "longlive", SMALL, "loaded")
    colour = (200, 40, 90)
    peer = peers(ColourTrack(colour, (160, 96)))
    await peer.connect(http, emu.url, {"pipeline_ids": ["longlive"], "input_mode": "video", "noise_scale": 0.0})
    clean = (await peer.frames_after(4, wait_s=15))[-1][32:70]  # below the stamp, above the strip
    peer.send({"noise_scale": 1.0})

    async def grainy() -> bool:
        return float(peer.frames[-1][1][32:70].astype(np.float32).std(axis=(0, 1)).mean()) > 20

    await wait_for(grainy, 10, "grain from noise_scale 1.0")
    assert np.abs(clean.reshape(-1, 3).mean(axis=0) - np.array(colour)).max() < 20  # noise 0: the input itself


async def test_a_session_says_which_pipeline_it_imitates(
    make_emu: EmulatorFactory, http: httpx.AsyncClient, peers: Callable[..., ClientPeer],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="metadj_bridge.emulator")
    emu = await make_emu(fps=20.0, chunk_frames=2, load_seconds=0.05)
    await load_and_wait(http, emu.url, "longlive", SMALL, "loaded")
    session_id = await peers().connect(http, emu.url, TEXT_OFFER)
    lines = await log_lines(http, emu.url)
    said = [line for line in lines if f"Session {session_id} imitates longlive in text mode" in line]
    assert said and "2 frame(s) per chunk at 20 fps" in said[0] and "noise_scale" not in said[0]
    assert await applied_for(http, emu, session_id) == []


# ---- video quality, options ------------------------------------------------------------------------


async def test_the_video_sender_gets_scopes_bitrate(
    make_emu: EmulatorFactory, http: httpx.AsyncClient, peers: Callable[..., ClientPeer]
) -> None:
    """webrtc.py sets aiortc's encoders to 7 Mbit/s, kept within 5-10 Mbit/s."""
    emu = await make_emu(fps=20.0, chunk_frames=2, load_seconds=0.05)
    await load_and_wait(http, emu.url, "longlive", SMALL, "loaded")
    peer = peers()
    await peer.connect(http, emu.url, TEXT_OFFER)
    await peer.frames_after(4)
    (session,) = emu._sessions.values()
    encoders = [getattr(s, "_RTCRtpSender__encoder", None) for s in session.pc.getSenders()]
    video = [e for e in encoders if isinstance(e, (ScopeVp8Encoder, ScopeH264Encoder))]
    assert video and SCOPE_MIN_BITRATE <= video[0].target_bitrate <= SCOPE_MAX_BITRATE
    # A receiver's low estimate (REMB) cannot pull it below Scope's floor.
    encoder = ScopeVp8Encoder()
    encoder.target_bitrate = 300_000
    assert encoder.target_bitrate == SCOPE_MIN_BITRATE


def test_cli_options_reach_the_config_and_the_start_line_names_what_is_imitated() -> None:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    default = config_from_args(parser.parse_args([]))
    assert (default.fps, default.cpu_only, default.chunk_frames) == (None, False, None)
    cpu = config_from_args(parser.parse_args(["--cpu-only", "--fps", "30", "--load-seconds", "2"]))
    assert (cpu.cpu_only, cpu.fps, cpu.load_seconds) == (True, 30.0, 2.0)
    line = imitation(cpu)
    assert "CPU-only server offering passthrough, controller-viz, rife, scribble, gray, optical-flow" in line
    assert "30 fps for every pipeline" in line
    assert "GPU server offering streamdiffusionv2, longlive" in imitation(EmulatorConfig())


async def test_a_session_end_is_logged_in_scopes_words(
    make_emu: EmulatorFactory, http: httpx.AsyncClient, peers: Callable[..., ClientPeer],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """webrtc.py remove_session: the DELETE removes the session, then its own "closed" event warns (every end)."""
    caplog.set_level(logging.INFO, logger="metadj_bridge.emulator")
    emu = await make_emu(fps=20.0, chunk_frames=2, load_seconds=0.05)
    await load_and_wait(http, emu.url, "longlive", SMALL, "loaded")
    session_id = await peers().connect(http, emu.url, TEXT_OFFER)
    assert (await http.delete(emu.url + f"/api/v1/webrtc/offer/{session_id}")).status_code == 204
    removed = f"Removing session: Session({session_id}, state=connected)"
    warned = f"Attempted to remove non-existent session: {session_id}"
    await wait_for(lambda: _logged(http, emu.url, warned), 5, "the warning after the close")
    lines = await log_lines(http, emu.url)
    first_removed = next(i for i, line in enumerate(lines) if removed in line)
    assert first_removed < next(i for i, line in enumerate(lines) if warned in line)


async def _logged(http: httpx.AsyncClient, url: str, text: str) -> bool:
    return any(text in line for line in await log_lines(http, url))
