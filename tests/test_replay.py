"""Replay: a show log drives the emulator with its messages, in order, at their times."""

from __future__ import annotations

import asyncio
import contextlib
import io
import logging
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiortc import MediaStreamTrack, RTCPeerConnection, RTCSessionDescription

from metadj_bridge.cli import main
from metadj_bridge.emulator import ScopeEmulator
from metadj_bridge.errors import EXIT_CONFIG, ConfigError, ScopeSessionError
from metadj_bridge.scope.sender import DISCRETE_KEYS
from metadj_bridge.showlog.log import ShowLog, read_show_log, show_log_header
from metadj_bridge.showlog.replay import ReplayOptions, replay_show
from tests.conftest import SMALL, emulator_get
from tests.helpers import free_port
from tests.test_webcam import write_colour_video

#: Far enough apart that the sender never merges two (one chunk is 4 frames at 20 fps: 0.2 s).
SPACING = 0.5

MESSAGES: list[dict[str, Any]] = [
    {"noise_scale": 0.3, "not_a_parameter": 1},
    {"transition": {"target_prompts": [{"text": "forest", "weight": 1.0}], "num_steps": 4,
                    "temporal_interpolation_method": "linear"}},
    {"noise_scale": 0.6, "reset_cache": True},
    {"prompts": [{"text": "forest", "weight": 0.5}, {"text": "neon city", "weight": 0.5}]},
]
#: What Scope should receive: the same, less the key the pipeline does not know (skipped with a warning).
EXPECTED = [{"noise_scale": 0.3}, *MESSAGES[1:]]


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def write_log(path: Path, messages: list[dict[str, Any]], *, first: float = 3.0, pipeline: str = "longlive",
              input_mode: str = "text") -> None:
    clock = FakeClock()
    header = show_log_header(
        profile="show.yaml", pipeline=pipeline, width=SMALL["width"], height=SMALL["height"], input_mode=input_mode,
        initial={"prompts": [{"text": "neon city", "weight": 1.0}], "noise_scale": 0.5},
        denoising_step_list=[1000, 750],
    )
    show = ShowLog(path, header, clock=clock)
    for i, message in enumerate(messages):
        show.record(message, first + i * SPACING)
    show.event("theme 2 (forest)", first + SPACING)
    clock.now = first + len(messages) * SPACING
    show.close()


def without_repairs(received: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """What Scope received, less the sender's repairs: a message whose every value Scope already had (the sender
    sends lasting values again once changes stop, in case Scope dropped one)."""
    state: dict[str, Any] = {}
    out = []
    for record in received:
        message = record["message"]
        if not set(message) & DISCRETE_KEYS and all(k in state and state[k] == v for k, v in message.items()):
            continue
        state.update({k: v for k, v in message.items() if k not in DISCRETE_KEYS})
        out.append(record)
    return out


async def test_replay_sends_the_logged_messages_in_order_at_their_times(
    tmp_path: Path, emulator: ScopeEmulator
) -> None:
    path = tmp_path / "show.jsonl"
    write_log(path, MESSAGES)
    report = await replay_show(ReplayOptions(str(path), scope_url=emulator.url, chunk_frames=4),
                               status_stream=io.StringIO())
    assert report.replayed == report.total == len(MESSAGES)
    assert report.sent >= len(MESSAGES) and report.frames > 0
    assert not report.interrupted and report.rejected == 1

    events = await emulator_get(emulator.url, "/_emulator/log")
    offer = events["offers"][-1]
    assert offer["pipeline_ids"] == ["longlive"]
    assert offer["prompts"] == [{"text": "neon city", "weight": 1.0}]
    assert offer["noise_scale"] == 0.5
    assert offer["denoising_step_list"] == [1000, 750]
    received = without_repairs(events["received"])
    assert [r["message"] for r in received] == EXPECTED
    # Timing, for the report: how far each message's offset from the first drifted from the log's.
    offsets = [r["t"] - received[0]["t"] for r in received]
    drift = [round(got - i * SPACING, 3) for i, got in enumerate(offsets)]
    print(f"replay timing drift per message (s): {drift}")
    # Paced like the show, not sent in one burst (a slow machine only stretches this).
    assert offsets[-1] >= 0.5 * (len(MESSAGES) - 1) * SPACING


async def test_replay_stops_when_asked(tmp_path: Path, emulator: ScopeEmulator) -> None:
    path = tmp_path / "long.jsonl"
    write_log(path, [{"noise_scale": round(0.1 * i, 1)} for i in range(10)])
    stop = asyncio.Event()

    async def press_ctrl_c() -> None:
        while True:
            log = await emulator_get(emulator.url, "/_emulator/log")
            if log["received"]:
                stop.set()
                return
            await asyncio.sleep(0.05)

    presser = asyncio.ensure_future(press_ctrl_c())
    report = await replay_show(ReplayOptions(str(path), scope_url=emulator.url, chunk_frames=4), stop=stop,
                               status_stream=io.StringIO())
    await presser
    assert report.interrupted
    assert 1 <= report.replayed < 10


def test_cli_replays_on_the_built_in_emulator(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "short.jsonl"
    write_log(path, [{"noise_scale": 0.4}], first=0.5)
    assert main(["replay", str(path), "--speed", "4", "--emulator-fps", "30"]) == 0
    assert read_show_log(path).sent[0].message == {"noise_scale": 0.4}


def test_cli_refuses_a_bad_speed(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "short.jsonl"
    write_log(path, [{"noise_scale": 0.4}])
    assert main(["replay", str(path), "--speed", "0"]) == EXIT_CONFIG
    assert "error: --speed: 0.0 must be a number > 0" in capsys.readouterr().err


# ------------------------------------------------------------------------------------------------ what cannot play


CLIP_COLOURS = [(255, 0, 0), (0, 0, 255)]


def test_a_video_mode_log_without_input_video_is_refused_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "avatar.jsonl"
    write_log(path, [{"noise_scale": 0.4}], pipeline="passthrough", input_mode="video")
    assert main(["replay", str(path)]) == EXIT_CONFIG
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"error: {path} was played in video mode")
    assert "--video-source" in err[0]


async def test_a_video_mode_log_replays_in_video_mode_with_its_source(tmp_path: Path, emulator: ScopeEmulator) -> None:
    path = tmp_path / "avatar.jsonl"
    write_log(path, MESSAGES[2:], first=0.5, pipeline="passthrough", input_mode="video")
    clip = write_colour_video(tmp_path / "me.mp4", CLIP_COLOURS, frames_each=10, fps=20)
    report = await replay_show(ReplayOptions(str(path), scope_url=emulator.url, chunk_frames=4,
                                             video_source=f"file:{clip}"), status_stream=io.StringIO())
    assert report.frames > 0 and report.replayed == 2 and not report.interrupted
    events = await emulator_get(emulator.url, "/_emulator/log")
    offer = events["offers"][-1]
    assert offer["input_mode"] == "video" and offer["pipeline_ids"] == ["passthrough"]
    assert [r["message"] for r in without_repairs(events["received"])] == MESSAGES[2:]


async def test_a_mode_the_pipeline_lacks_is_refused_before_loading(tmp_path: Path, emulator: ScopeEmulator) -> None:
    path = tmp_path / "text-on-passthrough.jsonl"
    write_log(path, [{"noise_scale": 0.4}], pipeline="passthrough", input_mode="text")
    with pytest.raises(ConfigError, match=r"cannot replay .* \(text mode on passthrough\): .*only video input"):
        await replay_show(ReplayOptions(str(path), scope_url=emulator.url), status_stream=io.StringIO())
    events = await emulator_get(emulator.url, "/_emulator/log")
    assert not events["offers"]


class _SilentTrack(MediaStreamTrack):
    """Video that never has a frame: a pipeline that makes nothing."""

    kind = "video"

    async def recv(self) -> Any:
        await asyncio.Event().wait()


@pytest.fixture
async def silent_scope() -> AsyncIterator[str]:
    """A Scope far end that connects (real aiortc WebRTC, data channel open) and never sends a frame: what a real
    Scope 0.2.4 does when its pipeline makes nothing (a video-only pipeline without input, a paused session)."""
    loaded: dict[str, Any] = {"status": "not_loaded", "pipeline_id": None, "load_params": None}
    peers: list[RTCPeerConnection] = []

    async def health(request: web.Request) -> web.Response:
        return web.json_response({"status": "healthy", "version": "0.2.4", "server_start_time": time.time() - 60,
                                  "git_commit": "silent"})

    async def load(request: web.Request) -> web.Response:
        body = await request.json()
        loaded.update(status="loaded", pipeline_id=body["pipeline_ids"][0], load_params=body.get("load_params"))
        return web.json_response({"message": "Pipeline loading initiated successfully"})

    async def status(request: web.Request) -> web.Response:
        return web.json_response({**loaded, "error": None, "loading_stage": None})

    async def schemas(request: web.Request) -> web.Response:
        return web.json_response({"pipelines": {"controller-viz": {"supported_modes": ["text"],
                                                                   "default_mode": "text"}}})

    async def ice(request: web.Request) -> web.Response:
        return web.json_response({"iceServers": []})

    async def offer(request: web.Request) -> web.Response:
        body = await request.json()
        pc = RTCPeerConnection()
        peers.append(pc)
        await pc.setRemoteDescription(RTCSessionDescription(sdp=body["sdp"], type=body["type"]))
        pc.addTrack(_SilentTrack())  # Scope's answer always sends video; this video never has a frame
        await pc.setLocalDescription(await pc.createAnswer())
        return web.json_response({"sdp": pc.localDescription.sdp, "type": "answer", "sessionId": str(uuid.uuid4())})

    async def delete(request: web.Request) -> web.Response:
        return web.Response(status=204)

    app = web.Application()
    app.router.add_get("/health", health)
    app.router.add_post("/api/v1/pipeline/load", load)
    app.router.add_get("/api/v1/pipeline/status", status)
    app.router.add_get("/api/v1/pipelines/schemas", schemas)
    app.router.add_get("/api/v1/webrtc/ice-servers", ice)
    app.router.add_post("/api/v1/webrtc/offer", offer)
    app.router.add_delete("/api/v1/webrtc/offer/{session}", delete)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    yield f"http://127.0.0.1:{port}"
    for pc in peers:
        with contextlib.suppress(Exception):
            await pc.close()
    await runner.cleanup()


async def test_no_frame_back_is_an_error_not_replay_done(
    tmp_path: Path, silent_scope: str, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "viz.jsonl"
    write_log(path, [{"noise_scale": 0.4}], first=0.5, pipeline="controller-viz")
    caplog.set_level(logging.INFO, logger="metadj_bridge.showlog")
    with pytest.raises(ScopeSessionError, match=r"no frame came back from Scope within 1\.5 s .*nothing was replayed"):
        await replay_show(ReplayOptions(str(path), scope_url=silent_scope, first_frame_timeout=1.5),
                          status_stream=io.StringIO())
    assert "replay done" not in caplog.text



async def test_replay_shows_its_picture_and_can_render_the_set(tmp_path: Path, emulator: ScopeEmulator) -> None:
    """The video comes out of a replay as out of a show: here into a recording (the camera and the preview are
    the same output clock's other sinks), at the logged show's size."""
    import av

    path = tmp_path / "show.jsonl"
    write_log(path, MESSAGES)
    clip = tmp_path / "again.mp4"
    report = await replay_show(ReplayOptions(str(path), scope_url=emulator.url, chunk_frames=4,
                                             outputs=(f"record:{clip}",)), status_stream=io.StringIO())
    assert report.frames > 0 and not report.interrupted
    with av.open(str(clip)) as container:
        stream = container.streams.video[0]
        frames = sum(1 for _ in container.decode(stream))
        assert (stream.codec_context.width, stream.codec_context.height) == (SMALL["width"], SMALL["height"])
    assert frames >= 10
