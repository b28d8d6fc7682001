"""``doctor`` checks the show as ``run`` plays it: in the profile's own input mode with its own video source, against
what the server offers, quoting the specific load error, and reading the pause state and the ICE list the way a real
Scope 0.2.4 answers them (the real answers are played by local HTTP servers; the sessions are the emulator's)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from metadj_bridge.doctor.checks import Status, check_offer, check_pipeline, load_error_line
from metadj_bridge.doctor.report import DoctorOptions, Report, format_report, run_doctor
from metadj_bridge.doctor.video import check_paused, session_parameters
from metadj_bridge.emulator import ScopeEmulator
from metadj_bridge.scope.api import ScopeClient
from tests.conftest import emulator_get
from tests.helpers import free_port
from tests.test_webcam import write_colour_video

MakeEmulator = Callable[..., Awaitable[ScopeEmulator]]
FAST = {"listen": 1.0, "first_frame_timeout": 8.0, "watch": 0.6, "load_timeout": 10.0, "connect_timeout": 10.0,
        "ice_timeout": 0.5}

#: Scope 0.2.4's log around two failed loads, as a CPU-only server wrote it (the models path shortened).
LOG_TYPO = [
    "2026-12-03 03:32:11,673 - scope.server.pipeline_manager - INFO - Loading 1 pipeline(s): [('longliv', 'longliv')]",
    "2026-12-03 03:32:11,962 - scope.server.pipeline_manager - INFO - Loading pipeline: longliv (registry: longliv)",
    "2026-12-03 03:32:11,962 - scope.server.pipeline_manager - INFO - Initial load params: {}",
    "2026-12-03 03:32:11,962 - scope.server.pipeline_manager - ERROR - Failed to load pipeline longliv: Invalid "
    "pipeline ID: longliv. If this error persists, consider removing the models directory '/home/.daydream-scope/"
    "models' and re-downloading models.",
    "2026-12-03 03:32:11,962 - scope.server.pipeline_manager - ERROR - Failed to load pipeline: longliv",
    "2026-12-03 03:32:11,962 - scope.server.pipeline_manager - ERROR - Some pipelines failed to load",
]
LOG_FLASH_ATTN = [
    "2026-12-03 03:31:20,113 - scope.server.pipeline_manager - INFO - Loading 1 pipeline(s): [('longlive', "
    "'longlive')]",
    "2026-12-03 03:31:20,114 - scope.server.pipeline_manager - INFO - Initial load params: {}",
    "2026-12-03 03:31:20,135 - scope.server.pipeline_manager - ERROR - Failed to load pipeline longlive: No module "
    "named 'flash_attn'. If this error persists, consider removing the models directory '/home/.daydream-scope/"
    "models' and re-downloading models.",
    "2026-12-03 03:31:20,135 - scope.server.pipeline_manager - ERROR - Failed to load pipeline: longlive",
    "2026-12-03 03:31:20,135 - scope.server.pipeline_manager - ERROR - Some pipelines failed to load",
]
#: What a CPU-only Scope 0.2.4 offers (GET /api/v1/pipelines/schemas, the fields the bridge reads).
CPU_OFFER = {"pipelines": {
    "passthrough": {"id": "passthrough", "supported_modes": ["video"], "default_mode": "video"},
    "controller-viz": {"id": "controller-viz", "supported_modes": ["text"], "default_mode": "text"},
    "rife": {"id": "rife", "supported_modes": ["video"], "default_mode": "video"},
    "gray": {"id": "gray", "supported_modes": ["video"], "default_mode": "video"},
}}


def profile_text(pipeline: str, mode: str, source: str | None = None) -> str:
    video = f"  source: {source}\n" if source else ""
    return (f"name: modes\nscope:\n  pipeline: {pipeline}\n  resolution: [256, 144]\n  input_mode: {mode}\n"
            f"inputs:\n  audio: none\nvideo:\n  outputs: [preview]\n{video}"
            "themes:\n  one:\n    prompts: [a red square]\n")


def write_profile(tmp_path: Path, pipeline: str, mode: str, source: str | None = None) -> str:
    path = tmp_path / f"{pipeline}-{mode}.yaml"
    path.write_text(profile_text(pipeline, mode, source), encoding="utf-8")
    return str(path)


def only(report: Report, check: str) -> Any:
    matching = [f for f in report.findings if f.check == check]
    assert len(matching) == 1, f"expected one {check!r} finding, got {matching}"
    return matching[0]


async def _serve(routes: dict[str, Any]) -> tuple[web.AppRunner, str]:
    app = web.Application()
    for path, answer in routes.items():
        async def handler(request: web.Request, answer: Any = answer) -> web.Response:
            if answer is None:
                raise web.HTTPNotFound()
            return web.json_response(answer)
        app.router.add_get(path, handler)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    return runner, f"http://127.0.0.1:{port}"


@pytest.fixture
async def serve() -> AsyncIterator[Callable[[dict[str, Any]], Awaitable[str]]]:
    runners: list[web.AppRunner] = []

    async def start(routes: dict[str, Any]) -> str:
        runner, url = await _serve(routes)
        runners.append(runner)
        return url

    yield start
    for runner in runners:
        await runner.cleanup()


# ------------------------------------------------------------------------------------------------ D2: the show's mode


async def test_a_video_mode_show_is_checked_in_video_mode_with_its_own_source(
    make_emulator: MakeEmulator, tmp_path: Path
) -> None:
    clip = write_colour_video(tmp_path / "dancer.mp4", [(255, 0, 0), (0, 0, 255)], frames_each=10, fps=20)
    emu = await make_emulator()
    profile = write_profile(tmp_path, "passthrough", "video", f"file:{clip}")
    report = await run_doctor(DoctorOptions(scope_url=emu.url, profile=profile, **FAST))
    video = only(report, "video")
    assert video.status is Status.OK, format_report(report)
    assert "in video mode" in video.summary and video.details["input_mode"] == "video"
    offer = (await emulator_get(emu.url, "/_emulator/log"))["offers"][-1]
    assert offer["input_mode"] == "video" and offer["pipeline_ids"] == ["passthrough"]


async def test_a_text_mode_show_is_checked_in_text_mode(make_emulator: MakeEmulator, tmp_path: Path) -> None:
    emu = await make_emulator()
    report = await run_doctor(DoctorOptions(scope_url=emu.url, profile=write_profile(tmp_path, "longlive", "text"),
                                            **FAST))
    video = only(report, "video")
    assert video.status is Status.OK and "in text mode" in video.summary, format_report(report)
    assert (await emulator_get(emu.url, "/_emulator/log"))["offers"][-1]["input_mode"] == "text"


async def test_a_video_mode_show_without_its_input_says_so(make_emulator: MakeEmulator, tmp_path: Path) -> None:
    emu = await make_emulator()
    profile = write_profile(tmp_path, "passthrough", "video")
    missing = tmp_path / "no-such-clip.mp4"
    report = await run_doctor(DoctorOptions(scope_url=emu.url, profile=profile, video_source=f"file:{missing}",
                                            **FAST))
    video = only(report, "video")
    assert video.status is Status.PROBLEM and "takes video input" in video.summary and str(missing) in video.summary
    assert "--video-source" in video.action and "video.source" in video.action
    assert not report.ok
    assert not (await emulator_get(emu.url, "/_emulator/log"))["offers"]  # no session without its input


# ------------------------------------------------------------------------------------------------ D3: paused, wrapped


async def test_a_paused_session_is_found_in_scopes_wrapped_answer(serve: Any) -> None:
    url = await serve({"/api/v1/session/parameters": {"parameters": {"prompts": "x", "paused": True}}})
    paused = check_paused(await session_parameters(url))
    assert paused.status is Status.PROBLEM and "paused: true" in paused.summary
    url = await serve({"/api/v1/session/parameters": {"parameters": {"paused": False}}})
    assert check_paused(await session_parameters(url)).status is Status.OK
    url = await serve({"/api/v1/session/parameters": None})  # an older Scope: no such endpoint
    assert check_paused(await session_parameters(url)).status is Status.SKIPPED


# ------------------------------------------------------------------------------------------------ D4: the offer


async def test_what_the_server_does_not_offer_is_a_problem_naming_what_it_offers(serve: Any) -> None:
    url = await serve({"/api/v1/pipelines/schemas": CPU_OFFER})
    async with ScopeClient(url) as client:
        typo = await check_offer(client, "longliv", "text")
        text_on_video = await check_offer(client, "passthrough", "text")
        fine = await check_offer(client, "controller-viz", "text")
    assert typo.status is Status.PROBLEM and "'longliv' is not offered" in typo.summary
    assert "passthrough (video), controller-viz (text)" in typo.summary and "typo" in typo.action
    assert text_on_video.status is Status.PROBLEM and "not text mode" in text_on_video.summary
    assert "scope.input_mode: video" in text_on_video.action
    assert fine.status is Status.OK and fine.details["offered"]["controller-viz"] == ["text"]


async def test_an_older_server_without_the_list_falls_back_to_the_bridges_table(serve: Any) -> None:
    url = await serve({"/api/v1/pipelines/schemas": None})
    async with ScopeClient(url) as client:
        unknown = await check_offer(client, "my-plugin", "text")
        video_only = await check_offer(client, "passthrough", "text")
    assert unknown.status is Status.SKIPPED and "does not list its pipelines" in unknown.summary
    assert video_only.status is Status.PROBLEM and "bridge's table" in video_only.summary


async def test_the_doctor_refuses_a_pipeline_the_server_lacks_before_loading_it(
    make_emulator: MakeEmulator, tmp_path: Path
) -> None:
    emu = await make_emulator()
    report = await run_doctor(DoctorOptions(scope_url=emu.url, profile=write_profile(tmp_path, "longliv", "text"),
                                            **FAST))
    offer = only(report, "offer")
    assert offer.status is Status.PROBLEM and "'longliv' is not offered" in offer.summary
    assert only(report, "pipeline").status is Status.SKIPPED and only(report, "video").status is Status.SKIPPED
    assert not report.ok
    log = await emulator_get(emu.url, "/api/v1/logs/tail?lines=1000")
    assert not [line for line in log["lines"] if "longliv" in line]  # no load was tried for it


def test_the_specific_load_error_is_quoted_not_the_generic_last_line() -> None:
    assert load_error_line(LOG_TYPO, "longliv") == "Failed to load pipeline longliv: Invalid pipeline ID: longliv."
    assert load_error_line(LOG_FLASH_ATTN, "longlive") == (
        "Failed to load pipeline longlive: No module named 'flash_attn'.")
    # Only the latest load counts: an older failure followed by a good load is not quoted.
    good = ["2026-12-03 03:33:21,410 - scope.server.pipeline_manager - INFO - Loading 1 pipeline(s): "
            "[('controller-viz', 'controller-viz')]",
            "2026-12-03 03:33:21,420 - scope.server.pipeline_manager - INFO - All 1 pipeline(s) loaded successfully"]
    assert load_error_line(LOG_FLASH_ATTN + good, "controller-viz") == ""
    assert load_error_line(LOG_TYPO[-1:], "longliv") == "Some pipelines failed to load"


async def test_a_failed_load_on_the_server_is_quoted_with_advice_for_its_cause(serve: Any) -> None:
    error = {"status": "error", "pipeline_id": None, "load_params": {}, "error": None, "loading_stage": None}
    url = await serve({"/api/v1/pipeline/status": error, "/api/v1/logs/tail": {"lines": LOG_FLASH_ATTN, "offset": 9},
                       "/api/v1/models/status": None})
    async with ScopeClient(url) as client:
        finding, _ = await check_pipeline(client, "longlive", {"width": 512, "height": 288}, watch=0.2, poll=0.1)
    assert finding.status is Status.PROBLEM
    assert "(Scope's log: Failed to load pipeline longlive: No module named 'flash_attn'.)" in finding.summary
    assert "Some pipelines failed" not in finding.summary and "models directory" not in finding.summary
    assert "Python module" in finding.action and "logs/current" in finding.action
