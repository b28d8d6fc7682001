"""Several screens from one show (issue 18): the ``screens:`` section, the prompt bank, the feed that hands the main
screen's changes to each further screen, and a whole ``run`` against three emulators in their own processes, one of
them killed and restarted while the other two go on."""

from __future__ import annotations

import asyncio
import io
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from PIL import Image

from metadj_bridge.errors import ConfigError
from metadj_bridge.parameters import ASPECT_PRESETS, ParameterSchema
from metadj_bridge.profile import load_profile
from metadj_bridge.profile.errors import ProfileError
from metadj_bridge.run.plan import RunOptions, make_plan
from metadj_bridge.run.screens import PromptBank, ScreenFeed
from metadj_bridge.scope.sender import ParameterSender
from tests.conftest import EmulatorProcess, emulator_get
from tests.helpers import free_port

THEMES = """
themes:
  ocean: {prompts: [blue sea waves, foam]}
  fire: {prompts: [red fire]}
"""


def _profile(tmp_path: Path, text: str, name: str = "show.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_a_screen_inherits_the_main_scope_but_not_its_url(tmp_path: Path) -> None:
    path = _profile(tmp_path, THEMES + """
scope: {url: http://gpu-1:8000, pipeline: streamdiffusionv2, resolution: [512, 512], denoising: [700, 400]}
screens:
  left:
    scope: {url: http://gpu-2:8000, aspect: "9:16"}
    video: {outputs: [record:left.mp4]}
    prompts: {ocean: [deep sea creatures]}
  right: {}
""")
    profile = load_profile(path)
    left, right = profile.screens
    assert (left.name, left.scope.url, left.scope.pipeline) == ("left", "http://gpu-2:8000", "streamdiffusionv2")
    assert left.scope.aspect == "9:16" and left.scope.resolution is None  # its own size replaces the main one's
    assert left.scope.denoising == (700, 400)
    assert left.video.outputs == ("record:" + str(tmp_path / "left.mp4"),)
    assert [p.text for p in left.prompts["ocean"]] == ["deep sea creatures"]
    assert right.scope.url is None and right.scope.resolution == (512, 512)  # no URL: an emulator of its own
    assert right.video.outputs == ()  # its picture is in the web page only; never a second vcam by default

    plan = make_plan(RunOptions(), profile)
    assert [(s.name, s.scope_url, s.width, s.height) for s in plan.screens] == [
        ("left", "http://gpu-2:8000", *ASPECT_PRESETS["9:16"]), ("right", None, 512, 512)]
    assert all(s.scope_url is None for s in make_plan(RunOptions(rehearse=True), profile).screens)


@pytest.mark.parametrize(("body", "where", "says"), [
    ("screens:\n  main: {}\n", ":6:3", "'main' is the profile's own"),
    ("screens:\n  left:\n    prompts: {oecan: [x]}\n", ":7:15", "not a theme of this profile"),
    ("screens:\n  left:\n    scope: {input_mode: video}\n", ":7:25", "plays in text mode"),
    ("screens:\n  left:\n    colour: red\n", ":7:5", "colour"),
    ("screens: [a, b]\n", ":5:10", "mapping of screen name"),
])
def test_screen_mistakes_name_the_file_and_line(tmp_path: Path, body: str, where: str, says: str) -> None:
    path = _profile(tmp_path, THEMES + body)
    with pytest.raises(ProfileError) as caught:
        load_profile(path)
    assert f"{path}{where}" in str(caught.value) and says in str(caught.value)


def test_two_screens_on_one_server_are_refused(tmp_path: Path) -> None:
    path = _profile(tmp_path, THEMES + """
scope: {url: http://gpu-1:8000}
screens:
  left: {scope: {url: "http://gpu-1:8000/"}}
""")
    with pytest.raises(ConfigError, match="screens 'main' and 'left' both use"):
        make_plan(RunOptions(), load_profile(path))


def test_the_prompt_bank_rewords_each_theme_by_position_and_follows_a_new_profile(tmp_path: Path) -> None:
    first = load_profile(_profile(tmp_path, THEMES + "screens:\n  left:\n    prompts: {ocean: [jellyfish]}\n"))
    current = [first]
    bank = PromptBank("left", first.screens[0].prompts, lambda: current[0])
    # Both ocean prompts become the screen's one: merged into one entry with their weights added.
    assert bank.reword([{"text": "blue sea waves", "weight": 0.6}, {"text": "foam", "weight": 0.4},
                        {"text": "red fire", "weight": 0.25}]) == [
        {"text": "jellyfish", "weight": 1.0}, {"text": "red fire", "weight": 0.25}]
    assert bank.reword([{"text": "typed live", "weight": 1.0}]) == [{"text": "typed live", "weight": 1.0}]
    # A reloaded profile with new words for this screen: the bank follows it.
    current[0] = load_profile(_profile(tmp_path, THEMES + "screens:\n  left:\n    prompts: {fire: [embers]}\n",
                                       "other.yaml"))
    assert bank.reword([{"text": "red fire", "weight": 1.0}, {"text": "foam", "weight": 1.0}]) == [
        {"text": "embers", "weight": 1.0}, {"text": "foam", "weight": 1.0}]


async def test_the_feed_hands_on_what_the_screens_pipeline_takes_and_leaves_out_the_rest(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    profile = load_profile(_profile(tmp_path, THEMES + "screens:\n  left:\n    prompts: {ocean: [jellyfish]}\n"))
    main = ParameterSender(ParameterSchema("longlive"))
    schema = ParameterSchema("longlive")
    del schema.specs["noise_scale"]  # a pipeline without it
    screen = ParameterSender(schema)
    feed = ScreenFeed("left", screen, PromptBank("left", profile.screens[0].prompts, lambda: profile))
    main.mirrors.append(feed)
    transition = {"target_prompts": [{"text": "blue sea waves", "weight": 1.0}], "num_steps": 4,
                  "temporal_interpolation_method": "slerp"}
    main.update({"noise_scale": 0.4, "prompts": [{"text": "foam", "weight": 1.0}], "transition": transition})
    main.update({"noise_scale": 0.5})
    assert main.state.desired["noise_scale"] == 0.5
    assert "noise_scale" not in screen.state.desired
    # The transition's target, in the screen's words, is what the screen holds as its lasting prompts.
    assert screen.state.desired["prompts"] == [{"text": "jellyfish", "weight": 1.0}]
    assert main.state.desired["prompts"] == [{"text": "blue sea waves", "weight": 1.0}]
    refusals = [r for r in caplog.records if "screen left" in r.getMessage() and "noise_scale" in r.getMessage()]
    assert len(refusals) == 1  # said once, however often the show moves it
    main.keep_clear(10.0, 11.0)
    assert screen._clear == (10.0, 11.0)


# ------------------------------------------------------------------------------------------ three servers


async def _status(port: int) -> dict[str, Any]:
    async with httpx.AsyncClient() as http:
        response = await http.get(f"http://127.0.0.1:{port}/status", timeout=5)
        return dict(response.json())


async def _until(check: Callable[[dict[str, Any]], bool], port: int, limit: float, what: str) -> dict[str, Any]:
    deadline = time.monotonic() + limit
    last: dict[str, Any] = {}
    while time.monotonic() < deadline:
        try:
            last = await _status(port)
            if check(last):
                return last
        except httpx.TransportError:
            pass
        await asyncio.sleep(0.25)
    raise AssertionError(f"{what} within {limit:.0f} s; last status screens: {last.get('screens')}")


async def _prompt_on(url: str) -> str:
    """The first prompt the server's newest session has: its latest prompts, or the target of its transition."""
    params = (await emulator_get(url, "/api/v1/session/parameters"))["parameters"]
    prompts = params.get("prompts") or (params.get("transition") or {}).get("target_prompts")
    assert prompts, params
    return str(prompts[0]["text"])


def _by_name(status: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {s["name"]: s for s in status.get("screens") or []}


def _all_streaming(status: dict[str, Any]) -> bool:
    screens = _by_name(status)
    return len(screens) == 3 and all(s["state"] == "streaming" and s["frames_in"] > 0 for s in screens.values())


async def test_three_screens_on_three_servers_one_killed_and_restarted(
        tmp_path: Path, emulator_process: Callable[..., EmulatorProcess]) -> None:
    servers = [emulator_process("--fps", "10", "--load-seconds", "0.1") for _ in range(3)]
    await asyncio.gather(*(server.start() for server in servers))
    main, left, right = servers
    path = _profile(tmp_path, THEMES + f"""
scope: {{url: "{main.url}", resolution: [256, 144]}}
video: {{outputs: [preview]}}
screens:
  left:
    scope: {{url: "{left.url}"}}
    prompts: {{ocean: [jellyfish in the deep], fire: [embers]}}
  right:
    scope: {{url: "{right.url}", resolution: [192, 192]}}
""")
    port = free_port()
    err = tempfile.TemporaryFile()
    bridge = await asyncio.to_thread(
        subprocess.Popen,
        [sys.executable, "-m", "metadj_bridge", "run", "--profile", str(path), "--no-audio", "--http-port", str(port),
         "--duration", "120"], stdout=subprocess.DEVNULL, stderr=err)
    try:
        await _until(_all_streaming, port, 60, "all three screens streaming")
        # One show, each screen in its own words: the main server has the theme's prompt, the left one its bank's.
        assert await _prompt_on(main.url) == "blue sea waves"
        assert await _prompt_on(left.url) == "jellyfish in the deep"
        assert await _prompt_on(right.url) == "blue sea waves"
        async with httpx.AsyncClient() as http:  # each screen's picture on the web server
            frame = await http.get(f"http://127.0.0.1:{port}/screens/right/frame.jpg", timeout=5)
        assert frame.status_code == 200 and frame.headers["content-type"] == "image/jpeg"
        with Image.open(io.BytesIO(frame.content)) as picture:
            assert picture.size == (192, 192)  # the right screen's own size, not the main one's

        left.kill()
        down = await _until(lambda s: _by_name(s)["left"]["state"] != "streaming", port, 20, "the left screen down")
        before = {name: s["frames_in"] for name, s in _by_name(down).items()}

        def going_on(status: dict[str, Any]) -> bool:
            screens = _by_name(status)
            return (screens["main"]["frames_in"] - before["main"] >= 20
                    and screens["right"]["frames_in"] - before["right"] >= 20
                    and any("screen left" in w for w in status["warnings"]))

        # The other two go on at their pace while the left server is away (10 fps each: 50 frames in 5 s).
        status = await _until(going_on, port, 5, "the other two screens going on and a warning for the left one")
        during = _by_name(status)
        assert during["main"]["frames_in"] - before["main"] >= 20, during["main"]
        assert during["right"]["frames_in"] - before["right"] >= 20, during["right"]
        assert during["left"]["state"] != "streaming" and during["left"]["frames_shown"] > 0  # its slate goes on
        assert any("screen left" in w for w in status["warnings"])

        await left.start()  # the same port, a fresh server: the screen heals on its own
        healed = await _until(lambda s: _by_name(s)["left"]["state"] == "streaming"
                              and _by_name(s)["left"]["sessions"] >= 2, port, 40, "the left screen back")
        assert healed["screens"][0]["name"] == "main"
        assert await _prompt_on(left.url) == "jellyfish in the deep"  # it starts where the show is
    finally:
        if bridge.poll() is None:
            bridge.send_signal(signal.SIGINT if os.name != "nt" else signal.CTRL_BREAK_EVENT)
        try:
            code = await asyncio.to_thread(bridge.wait, 30)
        except subprocess.TimeoutExpired:
            bridge.kill()
            code = await asyncio.to_thread(bridge.wait)
        err.seek(0)
        log = err.read().decode(errors="replace")
        err.close()
    assert code == 0, log[-3000:]
    assert "screen left:" in log and "screen right:" in log


async def test_doctor_checks_each_screens_server(
        tmp_path: Path, emulator_process: Callable[..., EmulatorProcess]) -> None:
    from metadj_bridge.doctor.report import DoctorOptions, run_doctor

    server = emulator_process("--fps", "10")
    await server.start()
    path = _profile(tmp_path, THEMES + f"""
screens:
  left: {{scope: {{url: "{server.url}"}}}}
  right: {{scope: {{url: "http://127.0.0.1:{free_port()}", pipeline: longlive}}}}
  spare: {{}}
""")
    report = await run_doctor(DoctorOptions(profile=str(path), video=False, environ={}))
    assert {f.check for f in report.findings if f.check.startswith("screen ")} == {
        "screen left", "screen right", "screen spare"}
    left = [f for f in report.findings if f.check == "screen left"]
    assert len(left) == 2 and all(f.status.value == "ok" for f in left), left  # reachable, and it offers longlive
    right = [f for f in report.findings if f.check == "screen right"]
    assert right[0].status.value == "problem" and "screen right" in right[0].summary
    spare = [f for f in report.findings if f.check == "screen spare"]
    assert [f.status.value for f in spare] == ["skipped"] and "built-in emulator" in spare[0].summary
