"""``metadj-bridge doctor``: each check's finding against the real emulator (healthy, stuck or failing loads,
silent video, the older API) and against real local servers for the failures (a closed port, a web server
that is not Scope, STUN and TCP listeners for the ICE servers)."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import struct
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiohttp import web

from metadj_bridge.doctor.checks import (
    Finding,
    Status,
    check_health,
    check_pipeline,
    check_url,
    check_vace,
    url_root,
)
from metadj_bridge.doctor.ice import (
    BINDING_SUCCESS,
    STUN_MAGIC,
    check_ice,
    is_binding_success,
    is_remote_host,
    parse_ice_url,
    stale_turn,
    stun_binding_request,
)
from metadj_bridge.doctor.report import (
    DoctorOptions,
    Report,
    check_audio,
    check_midi,
    check_profile,
    check_vcam,
    format_report,
    run_doctor,
)
from metadj_bridge.doctor.video import VideoNeeds, VideoProbe, check_paused, check_video, video_finding
from metadj_bridge.emulator import ScopeEmulator
from metadj_bridge.errors import ConfigError
from metadj_bridge.scope.api import ScopeClient
from tests.helpers import free_port, wait_for
from tests.jackrig import midi_backend

MakeEmulator = Callable[..., Awaitable[ScopeEmulator]]

PROFILE = """\
name: doctor test
scope:
  pipeline: longlive
  resolution: [256, 144]
inputs:
  audio: none
video:
  outputs: [preview]
themes:
  one:
    prompts: [a red square on black]
"""
SMALL_LOAD = {"width": 256, "height": 144, "vace_enabled": False}
#: Short waits: the emulator loads in 0.1 s and streams at once.
FAST = {"listen": 1.0, "first_frame_timeout": 5.0, "watch": 0.6, "load_timeout": 10.0, "connect_timeout": 10.0,
        "ice_timeout": 0.5}


@pytest.fixture
def profile(tmp_path: Path) -> str:
    path = tmp_path / "show.yaml"
    path.write_text(PROFILE)
    return str(path)


def only(report: Report | list[Finding], check: str) -> Finding:
    findings = report.findings if isinstance(report, Report) else report
    matching = [f for f in findings if f.check == check]
    assert len(matching) == 1, f"expected one {check!r} finding, got {matching}"
    return matching[0]


# ------------------------------------------------------------------------------------------------ a healthy Scope


async def test_a_healthy_emulator_is_ready_for_the_show(make_emulator: MakeEmulator, profile: str) -> None:
    emu = await make_emulator()
    report = await run_doctor(DoctorOptions(scope_url=emu.url, profile=profile, **FAST))
    assert report.ok, format_report(report)
    assert only(report, "profile").status is Status.OK
    scope = only(report, "scope")
    assert scope.status is Status.OK and scope.details["version"] == "0.2.4" and "0.2.4" in scope.summary
    pipeline = only(report, "pipeline")
    assert pipeline.status is Status.WARNING and "no pipeline loaded; run loads longlive 256x144" in pipeline.summary
    video = only(report, "video")
    assert video.status is Status.OK and video.details["frames"] > 0 and video.details["size"] == (256, 144)
    assert only(report, "paused").status is Status.OK
    assert only(report, "vace").status is Status.OK
    ice = [f for f in report.findings if f.check == "ice"]
    assert [f.details["remote"] for f in ice if "remote" in f.details] == [False]
    assert all(f.status is Status.OK for f in ice)
    assert only(report, "audio").status is Status.SKIPPED and only(report, "vcam").status is Status.SKIPPED

    # The doctor's own session is gone from the server afterwards, and its pipeline is the show's.
    async with ScopeClient(emu.url) as client:
        status = await client.pipeline_status()
    assert (status.status, status.load_params) == ("loaded", SMALL_LOAD)
    again = await run_doctor(DoctorOptions(scope_url=emu.url, profile=profile, video=False, **FAST))
    assert only(again, "pipeline").status is Status.OK
    assert only(again, "video").status is Status.SKIPPED


async def test_the_older_load_api_works_and_is_named(make_emulator: MakeEmulator, profile: str) -> None:
    emu = await make_emulator(legacy_api=True)
    report = await run_doctor(DoctorOptions(scope_url=emu.url, profile=profile, **FAST))
    assert report.ok, format_report(report)
    assert only(report, "video").status is Status.OK
    assert "older load API" in only(report, "scope-api").summary


async def test_without_a_scope_url_the_scope_checks_are_skipped_with_the_reason(profile: str) -> None:
    report = await run_doctor(DoctorOptions(profile=profile, **FAST))
    scope = only(report, "scope")
    assert scope.status is Status.SKIPPED and "built-in emulator" in scope.summary
    assert report.ok


async def test_metadj_variables_settle_what_is_checked_as_for_run(make_emulator: MakeEmulator, profile: str) -> None:
    emu = await make_emulator()
    environ = {"METADJ_SCOPE": emu.url, "METADJ_PROFILE": profile, "METADJ_AUDIO_DEVICE": "No Such Interface 9000"}
    report = await run_doctor(DoctorOptions(video=False, environ=environ, **FAST))
    assert only(report, "profile").details["file"] == profile
    assert only(report, "scope").status is Status.OK and only(report, "scope").details["url"] == emu.url
    assert only(report, "audio").status is Status.PROBLEM and "No Such Interface 9000" in only(report, "audio").summary
    rehearsal = await run_doctor(DoctorOptions(environ={**environ, "METADJ_REHEARSE": "1"}, **FAST))
    assert only(rehearsal, "scope").status is Status.SKIPPED
    broken = await run_doctor(DoctorOptions(environ={"METADJ_OSC_PORT": "seven"}, profile=profile, **FAST))
    environment = only(broken, "environment")
    assert environment.status is Status.PROBLEM and "METADJ_OSC_PORT" in environment.summary


async def test_pipeline_flag_checks_the_pipeline_run_would_play(make_emulator: MakeEmulator, profile: str) -> None:
    """doctor's offer finding says "Set scope.pipeline in the profile (or --pipeline)": doctor takes --pipeline as
    run does, so a CPU-only Scope is checked with the pipeline the show will play there."""
    from metadj_bridge.cli import build_parser
    from metadj_bridge.doctor.report import options_from_args

    emu = await make_emulator(cpu_only=True)
    refused = await run_doctor(DoctorOptions(scope_url=emu.url, profile=profile, video=False, **FAST))
    assert only(refused, "offer").status is Status.PROBLEM and "--pipeline" in only(refused, "offer").action
    args = build_parser().parse_args(["doctor", "--scope", emu.url, "--profile", profile, "--pipeline",
                                      "controller-viz"])
    options = dataclasses.replace(options_from_args(args), **FAST)
    report = await run_doctor(options)
    assert only(report, "offer").status is Status.OK and "controller-viz" in only(report, "offer").summary
    assert only(report, "video").status is Status.OK, only(report, "video")


# ------------------------------------------------------------------------------------------------ the URL and health


def test_url_advice_names_the_root() -> None:
    assert url_root("http://h:8000/api/v1/health") == "http://h:8000"
    assert url_root("https://pod-8000.proxy.runpod.net/health/") == "https://pod-8000.proxy.runpod.net"
    assert url_root("http://h:8000") is None
    problem, root = check_url("http://h:8000/api/v1")
    assert problem is not None and problem.status is Status.PROBLEM and root == "http://h:8000"
    assert "use http://h:8000" in problem.action
    assert check_url("http://h:8000/") == (None, "http://h:8000")
    problem, root = check_url("h:8000")
    assert problem is not None and root is None and "no scheme" in problem.summary


async def test_the_wrong_health_path_is_a_problem_and_the_root_is_checked(make_emulator: MakeEmulator,
                                                                          profile: str) -> None:
    emu = await make_emulator()
    report = await run_doctor(DoctorOptions(scope_url=emu.url + "/api/v1/health", profile=profile, video=False, **FAST))
    assert not report.ok
    url = only(report, "scope-url")
    assert url.status is Status.PROBLEM and "/api/v1/health" in url.summary and f"use {emu.url} " in url.action
    assert only(report, "scope").status is Status.OK  # the root it suggests does answer


async def test_a_closed_port_says_start_scope() -> None:
    async with ScopeClient(f"http://127.0.0.1:{free_port()}", timeout=2) as client:
        finding, health = await check_health(client)
    assert health is None and finding.status is Status.PROBLEM
    assert finding.details["kind"] == "refused" and "start Scope" in finding.action


async def test_an_unknown_host_says_check_the_name() -> None:
    async with ScopeClient("http://no-such-scope-host.invalid:8000", timeout=2) as client:
        finding, _ = await check_health(client)
    assert finding.details["kind"] == "dns" and "typos" in finding.action


async def test_https_to_a_plain_http_port_says_use_http(make_emulator: MakeEmulator) -> None:
    emu = await make_emulator()
    async with ScopeClient(emu.url.replace("http://", "https://"), timeout=2) as client:
        finding, _ = await check_health(client)
    assert finding.status is Status.PROBLEM and finding.details["kind"] == "tls" and "use http://" in finding.action


async def _serve(app: web.Application) -> tuple[web.AppRunner, str]:
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    return runner, f"http://127.0.0.1:{port}"


@pytest.fixture
async def html_server() -> AsyncIterator[str]:
    """A web server that is not Scope: HTML everywhere, like a router's page."""

    async def page(request: web.Request) -> web.Response:
        return web.Response(text="<html><body>My Router</body></html>", content_type="text/html")

    app = web.Application()
    app.router.add_get("/{tail:.*}", page)
    runner, url = await _serve(app)
    yield url
    await runner.cleanup()


async def test_a_server_that_is_not_scope_is_named(html_server: str, profile: str) -> None:
    report = await run_doctor(DoctorOptions(scope_url=html_server, profile=profile, **FAST))
    scope = only(report, "scope")
    assert scope.status is Status.PROBLEM and scope.details["kind"] == "not-scope"
    assert "not a Scope server" in scope.action
    assert only(report, "pipeline").status is Status.SKIPPED and not report.ok


async def test_a_server_without_health_says_it_is_not_scope() -> None:
    runner, url = await _serve(web.Application())  # every path is 404
    try:
        async with ScopeClient(url, timeout=2) as client:
            finding, _ = await check_health(client)
    finally:
        await runner.cleanup()
    assert finding.status is Status.PROBLEM and "404" in finding.summary and finding.details["kind"] == "not-scope"


# ------------------------------------------------------------------------------------------------ the pipeline


async def _loading(client: ScopeClient) -> bool:
    return (await client.pipeline_status()).status == "loading"


async def test_a_load_that_does_not_progress_is_stuck(make_emulator: MakeEmulator) -> None:
    emu = await make_emulator(slow_load=30.0)
    async with ScopeClient(emu.url) as client:
        await client.load_pipeline(["longlive"], {})  # another client's load
        await wait_for(lambda: _loading(client), 5, "the load to start")
        finding, status = await check_pipeline(client, "longlive", SMALL_LOAD, watch=0.5, poll=0.1)
    assert status is not None and status.status == "loading"
    assert finding.status is Status.PROBLEM and "stuck loading" in finding.summary
    assert "Scope web UI tab" in finding.action and '"pipeline_ids": ["longlive"]' in finding.action


async def test_a_failed_load_quotes_scopes_log(make_emulator: MakeEmulator) -> None:
    emu = await make_emulator(load_seconds=1.0, fail_load=True)
    async with ScopeClient(emu.url) as client:
        await client.load_pipeline(["longlive"], {})
        await wait_for(lambda: _loading(client), 5, "the load to start")
        finding, _ = await check_pipeline(client, "longlive", SMALL_LOAD, watch=5.0, poll=0.1)
    assert finding.status is Status.PROBLEM and "failed" in finding.summary
    assert "failed to load: emulated failure (fail_load fault switch)" in finding.details["log"]
    assert finding.details["log"] in finding.summary


@pytest.fixture
async def scope_without_weights() -> AsyncIterator[str]:
    """A Scope whose load never ends because the weights are missing (the emulator has no models endpoint)."""

    async def status(request: web.Request) -> web.Response:
        return web.json_response({"status": "loading", "pipeline_id": None, "load_params": None,
                                  "loading_stage": "Initializing pipeline...", "error": None})

    async def models(request: web.Request) -> web.Response:
        assert request.query["pipeline_id"] == "longlive"
        return web.json_response({"downloaded": False, "progress": None})

    app = web.Application()
    app.router.add_get("/api/v1/pipeline/status", status)
    app.router.add_get("/api/v1/models/status", models)
    runner, url = await _serve(app)
    yield url
    await runner.cleanup()


async def test_a_stuck_load_says_when_the_weights_are_missing(scope_without_weights: str) -> None:
    async with ScopeClient(scope_without_weights) as client:
        finding, _ = await check_pipeline(client, "longlive", SMALL_LOAD, watch=0.3, poll=0.1)
    assert finding.status is Status.PROBLEM and "stuck loading" in finding.summary
    assert "weights of longlive are not downloaded" in finding.summary and "/api/v1/models/download" in finding.summary


async def test_the_doctors_own_load_failing_blocks_the_show(make_emulator: MakeEmulator, profile: str) -> None:
    emu = await make_emulator(fail_load=True)
    report = await run_doctor(DoctorOptions(scope_url=emu.url, profile=profile, **FAST))
    video = only(report, "video")
    assert video.status is Status.PROBLEM and "emulated failure" in video.summary and "GPU" in video.summary
    assert "logs/current" in video.action
    assert not report.ok


async def test_another_pipeline_loaded_is_a_warning(make_emulator: MakeEmulator) -> None:
    emu = await make_emulator()
    async with ScopeClient(emu.url) as client:
        await client.ensure_pipeline(["passthrough"], {"width": 256, "height": 144})
        finding, _ = await check_pipeline(client, "longlive", SMALL_LOAD)
        assert finding.status is Status.WARNING and "passthrough 256x144" in finding.summary
        assert "run replaces it" in finding.action
        await client.ensure_pipeline(["longlive"], {"width": 512, "height": 288})
        finding, _ = await check_pipeline(client, "longlive", SMALL_LOAD)
    assert finding.status is Status.WARNING and "load params" in finding.summary


# ------------------------------------------------------------------------------------------------ VACE, pause, video


def test_vace_without_reference_images() -> None:
    assert check_vace("longlive", {"vace_enabled": True}, (), {}).status is Status.WARNING
    default_on = check_vace("longlive", {"width": 576}, (), {})  # Scope's default for the Wan pipelines is on
    assert default_on.status is Status.WARNING and "Scope's default" in default_on.summary
    assert check_vace("passthrough", {}, (), {}).status is Status.OK
    assert check_vace("longlive", {"vace_enabled": True}, ("me.png",), {}).status is Status.OK
    assert check_vace(None, None, (), {}).status is Status.OK
    asked = check_vace(None, None, (), {"vace_enabled": True})
    assert asked.status is Status.PROBLEM and "ref_images" in asked.action


async def test_vace_loaded_on_the_server_without_images(make_emulator: MakeEmulator, profile: str) -> None:
    emu = await make_emulator()
    async with ScopeClient(emu.url) as client:
        await client.ensure_pipeline(["longlive"], {"width": 256, "height": 144, "vace_enabled": True})
    report = await run_doctor(DoctorOptions(scope_url=emu.url, profile=profile, video=False, **FAST))
    vace = only(report, "vace")
    assert vace.status is Status.WARNING
    assert "vace_enabled: true" in vace.summary and "vace_enabled: false" in vace.action


def test_paused_state() -> None:
    # A real Scope 0.2.4 wraps the parameters ({"parameters": {...}}); older servers answered them bare.
    assert check_paused({"parameters": {"paused": True, "noise_scale": 0.5}}).status is Status.PROBLEM
    assert check_paused({"parameters": {"paused": False}}).status is Status.OK
    assert check_paused({"parameters": {}}).status is Status.OK
    assert check_paused({"paused": True, "noise_scale": 0.5}).status is Status.PROBLEM
    assert check_paused({"noise_scale": 0.5}).status is Status.OK
    assert check_paused(None).status is Status.SKIPPED


def test_video_findings() -> None:
    assert video_finding(VideoProbe(0, 2.0, None)).status is Status.PROBLEM
    stopped = video_finding(VideoProbe(5, 2.0, 1.8))
    assert stopped.status is Status.PROBLEM and "stopped" in stopped.summary
    flowing = video_finding(VideoProbe(40, 2.0, 0.05, (256, 144)))
    assert flowing.status is Status.OK and flowing.details["fps"] == 20.0 and "256x144" in flowing.summary


async def test_video_that_stops_is_found(make_emulator: MakeEmulator) -> None:
    emu = await make_emulator()

    async def stop_when_streaming() -> None:
        async def frames_sent() -> bool:
            async with httpx.AsyncClient() as http:
                metrics = (await http.get(emu.url + "/api/v1/session/metrics")).json()
            if "sessions" in metrics:  # Scope 0.2.4's shape: {"sessions": {id: {"frames_out", ...}}, "gpu": ...}
                return any(s.get("frames_out") for s in metrics["sessions"].values())
            return bool(metrics["active_sessions"] and metrics["frames_sent"])

        await wait_for(frames_sent, 10, "the doctor's session to stream")
        await emu.apply_faults({"stop_video": True})

    stopper = asyncio.create_task(stop_when_streaming())
    async with ScopeClient(emu.url) as client:
        findings = await check_video(client, VideoNeeds("longlive", SMALL_LOAD, "a red square"), listen=2.0,
                                     first_frame_timeout=5, load_timeout=10)
    await stopper
    video = only(findings, "video")
    assert video.status is Status.PROBLEM and ("stopped" in video.summary or "silent" in video.summary)
    assert "restart Scope" in video.action


# ------------------------------------------------------------------------------------------------ ICE


def test_ice_urls() -> None:
    assert parse_ice_url("stun:stun.l.google.com:19302") == parse_ice_url("stun:stun.l.google.com:19302?x=1")
    stun = parse_ice_url("stun:stun.l.google.com:19302")
    assert (stun.host, stun.port, stun.transport) == ("stun.l.google.com", 19302, "udp")
    turn = parse_ice_url("turn:turn.example.com?transport=tcp")
    assert (turn.port, turn.transport, str(turn)) == (3478, "tcp", "turn:turn.example.com:3478?transport=tcp")
    assert parse_ice_url("turns:[2001:db8::1]:443").transport == "tcp"
    assert parse_ice_url("turns:[2001:db8::1]:443").host == "2001:db8::1"
    for bad in ("http://x", "stun:", "turn:host:port"):
        with pytest.raises(ConfigError, match="ICE server URL"):
            parse_ice_url(bad)


def test_remote_hosts() -> None:
    assert not is_remote_host("127.0.0.1") and not is_remote_host("localhost") and not is_remote_host("192.168.1.20")
    assert not is_remote_host("gpu-box.local") and not is_remote_host("100.101.1.2")  # a Tailscale address
    assert is_remote_host("abc-8000.proxy.runpod.net") and is_remote_host("8.8.8.8")


def test_stun_packets() -> None:
    txid = bytes(range(12))
    request = stun_binding_request(txid)
    assert len(request) == 20 and struct.unpack("!HHI", request[:8]) == (1, 0, STUN_MAGIC)
    answer = struct.pack("!HHI", BINDING_SUCCESS, 0, STUN_MAGIC) + txid
    assert is_binding_success(answer, txid) and not is_binding_success(answer, bytes(12))
    assert not is_binding_success(answer[:19], txid)


class _StunServer(asyncio.DatagramProtocol):
    """Answers every Binding request with a success carrying the same transaction id (RFC 5389 minimal)."""

    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr: Any) -> None:
        if len(data) >= 20 and data[:2] == b"\x00\x01":
            self.transport.sendto(struct.pack("!HHI", BINDING_SUCCESS, 0, STUN_MAGIC) + data[8:20], addr)


@pytest.fixture
async def ice_far_ends() -> AsyncIterator[tuple[int, int]]:
    """(a STUN server's UDP port, a TURN-over-TCP listener's port) on 127.0.0.1."""
    loop = asyncio.get_running_loop()
    stun, _ = await loop.create_datagram_endpoint(_StunServer, local_addr=("127.0.0.1", 0))
    tcp = await asyncio.start_server(lambda r, w: w.close(), "127.0.0.1", 0)
    yield stun.get_extra_info("sockname")[1], tcp.sockets[0].getsockname()[1]
    stun.close()
    tcp.close()
    await tcp.wait_closed()


async def test_ice_servers_are_probed(make_emulator: MakeEmulator, ice_far_ends: tuple[int, int]) -> None:
    stun_port, tcp_port = ice_far_ends
    silent = free_port()
    emu = await make_emulator(ice_servers=[
        {"urls": [f"stun:127.0.0.1:{stun_port}", f"turn:127.0.0.1:{tcp_port}?transport=tcp"]},
        {"urls": f"stun:127.0.0.1:{silent}", "username": "u", "credential": "c"},
        {"urls": f"turns:127.0.0.1:{free_port()}"},
    ])
    async with ScopeClient(emu.url) as client:
        findings = await check_ice(client, wait_s=0.5)
    by_url = {f.details["url"]: f for f in findings if "url" in f.details}
    assert by_url[f"stun:127.0.0.1:{stun_port}"].status is Status.OK
    assert "STUN binding answered" in by_url[f"stun:127.0.0.1:{stun_port}"].summary
    assert by_url[f"turn:127.0.0.1:{tcp_port}?transport=tcp"].status is Status.OK
    # Unreachable, and not needed: this Scope is on this machine (loopback and LAN need no STUN or TURN).
    quiet = by_url[f"stun:127.0.0.1:{silent}"]
    assert quiet.status is Status.OK and "unreachable" in quiet.summary and "not needed" in quiet.summary
    assert [f.status for f in findings].count(Status.WARNING) == 0


async def test_a_remote_scope_without_turn_warns_about_nat() -> None:
    # A remote server cannot be had in CI: httpx's mock transport plays its ICE answer.
    def scope(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={"iceServers": [{"urls": ["stun:127.0.0.1:9"]}]})

    async with ScopeClient("https://abc-8000.proxy.runpod.net", transport=httpx.MockTransport(scope)) as client:
        findings = await check_ice(client, wait_s=0.3)
    nat = [f for f in findings if f.details.get("remote")]
    assert len(nat) == 1 and nat[0].status is Status.WARNING and "NAT" in nat[0].action and "TURN" in nat[0].summary
    # For a remote Scope an unreachable STUN server still matters.
    stun = [f for f in findings if f.details.get("url") == "stun:127.0.0.1:9"]
    assert len(stun) == 1 and stun[0].status is Status.WARNING and "unreachable" in stun[0].summary


def test_turn_credentials_older_than_their_lifetime() -> None:
    cloudflare = [parse_ice_url("turn:turn.cloudflare.com:3478?transport=udp")]
    stale = stale_turn(cloudflare, 3600.0)
    assert stale is not None and stale.status is Status.WARNING and "restart Scope" in stale.action
    assert stale_turn(cloudflare, 300.0) is None
    assert stale_turn([parse_ice_url("turn:global.turn.twilio.com:3478")], 3600.0) is None
    assert stale_turn(cloudflare, None) is None


# ------------------------------------------------------------------------------------------------ this machine


def test_a_profile_with_an_error_names_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text(PROFILE.replace("resolution: [256, 144]", "resolution: [256, 144]\n  bogus_key: 3"))
    findings, plan = check_profile(str(path))
    assert plan is None and findings[0].status is Status.PROBLEM
    assert f"{path}:5:" in findings[0].summary and "bogus_key" in findings[0].summary
    assert "metadj-bridge check" in findings[0].action


async def test_a_broken_profile_fails_the_doctor(tmp_path: Path) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text("scope: [1, 2\n")
    report = await run_doctor(DoctorOptions(profile=str(path)))
    assert not report.ok and only(report, "profile").status is Status.PROBLEM


def _plan(profile: str, **changes: Any) -> Any:
    _, plan = check_profile(profile)
    return dataclasses.replace(plan, **changes)


def test_audio_findings(profile: str, tmp_path: Path) -> None:
    assert check_audio(_plan(profile)).status is Status.SKIPPED
    assert check_audio(_plan(profile, audio="demo")).status is Status.OK
    missing = check_audio(_plan(profile, audio="file", audio_path=str(tmp_path / "set.wav")))
    assert missing.status is Status.PROBLEM and "does not exist" in missing.summary
    device = check_audio(_plan(profile, audio="device", audio_device="No Such Interface 9000"))
    assert device.status is Status.PROBLEM and "metadj-bridge devices" in device.action


def test_virtual_camera_findings(profile: str) -> None:
    from metadj_bridge.video.capture import register_capture_backend

    assert check_vcam(_plan(profile)).status is Status.SKIPPED
    register_capture_backend("capture")
    assert check_vcam(_plan(profile, video_outputs=("vcam",), video_backend="capture")).status is Status.OK
    # A backend asked for by name that this machine lacks fails the doctor (the show would not be where OBS looks).
    absent = check_vcam(_plan(profile, video_outputs=("vcam",), video_backend="no-such-backend"))
    assert absent.status is Status.PROBLEM and "no-such-backend" in absent.summary
    assert "not available here" in absent.action
    # A device asked for by name is a camera asked for too. (With none named, a machine without a camera falls back
    # to the preview, the default show's case: a warning, and the show goes on.)
    named = check_vcam(_plan(profile, video_outputs=("vcam",), video_backend=None, video_device="/dev/video99"))
    assert named.status is Status.PROBLEM and "/dev/video99" in named.summary
    # A device name with a NUL and a terminal escape (a profile's "\\0", "\\e") is shown escaped, opened or not.
    odd = "/dev/video\x00\x1b[31m"
    for backend in (None, "capture"):
        finding = check_vcam(_plan(profile, video_outputs=("vcam",), video_backend=backend, video_device=odd))
        text = f"{finding.summary} {finding.action}"
        assert "/dev/video\\x00\\x1b[31m" in text and text.isprintable(), finding


@pytest.fixture(scope="module")
def midi_jack() -> Iterator[Any]:
    import mido  # type: ignore[import-untyped]

    from tests.jackrig import jack_for_midi

    with jack_for_midi():
        yield mido.Backend(midi_backend(), load=True)


def test_midi_controllers_present_or_not(profile: str, midi_jack: Any) -> None:
    backend = midi_backend()
    assert check_midi(_plan(profile), backend)[0].status is Status.SKIPPED
    port = midi_jack.open_output("pads", virtual=True, client_name="doctorctl")
    try:
        found = check_midi(_plan(profile, midi=("doctorctl", "NoSuchController")), backend)
    finally:
        port.close()
    assert [f.status for f in found] == [Status.OK, Status.WARNING]
    assert "doctorctl:pads" in found[0].summary
    assert "doctorctl:pads" in found[1].summary and "plug the controller in" in found[1].action


# ------------------------------------------------------------------------------------------------ the command


async def _doctor(*args: str) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "metadj_bridge", "doctor", *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    out, _ = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode is not None
    return proc.returncode, out.decode()


async def test_the_command_exits_0_when_ready(make_emulator: MakeEmulator, profile: str) -> None:
    emu = await make_emulator()
    code, out = await _doctor("--scope", emu.url, "--profile", profile, "--listen", "0.5")
    assert code == 0, out
    assert "ready for the show" in out and "video arriving" in out


async def test_the_command_exits_1_with_a_problem_and_speaks_json(profile: str) -> None:
    code, out = await _doctor("--scope", f"http://dj:secret@127.0.0.1:{free_port()}", "--profile", profile, "--json")
    assert code == 1
    data = json.loads(out)
    assert data["ok"] is False
    scope = next(f for f in data["findings"] if f["check"] == "scope")
    assert scope["status"] == "problem" and scope["details"]["kind"] == "refused"
    assert "secret" not in out
