"""The control API of a whole running bridge (the emulator as Scope, real HTTP): each request reaches the emulator
through the engine, bad requests get a JSON error naming the field, and ``metadj-bridge switch`` uses the API."""

from __future__ import annotations

import asyncio
import contextlib
import io
import logging
import re
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from metadj_bridge.run.bridge import run_bridge
from metadj_bridge.run.plan import RunOptions
from metadj_bridge.showlog.log import ShowEvent, read_show_log
from tests.conftest import emulator_get
from tests.helpers import wait_for

PROFILE = """\
scope: {{url: {url}, resolution: [256, 144], denoising: fast}}
inputs: {{audio: none}}
transitions: {{theme_steps: 4, prompt_steps: 2}}
themes:
  neon: {{prompts: [neon city at night, rain on glass]}}
  forest: {{prompts: [a misty forest]}}
"""


class Bridge:
    def __init__(self, http: httpx.AsyncClient, emulator_url: str, profile: Path, caplog: pytest.LogCaptureFixture):
        self.http, self.emulator_url, self.profile, self.caplog = http, emulator_url, profile, caplog
        #: The run's show log (written about once a second).
        self.show_log: Path | None = None

    async def received(self) -> list[dict[str, Any]]:
        log = await emulator_get(self.emulator_url, "/_emulator/log")
        return [m["message"] for m in log["received"]]

    async def until_received(self, check: Any, what: str, limit: float = 15) -> dict[str, Any]:
        async def found() -> dict[str, Any] | None:
            return next((m for m in await self.received() if check(m)), None)

        return await wait_for(found, limit, what, interval=0.1)  # type: ignore[no-any-return]


def prompts_of(message: dict[str, Any]) -> list[str]:
    transition = message.get("transition") or {}
    prompts = transition.get("target_prompts") or message.get("prompts") or []
    return [p["text"] for p in prompts if isinstance(p, dict)]


@pytest.fixture
async def bridge(make_emulator: Any, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> AsyncIterator[Bridge]:
    caplog.set_level(logging.INFO, logger="metadj_bridge")
    emulator = await make_emulator()
    profile = tmp_path / "show.yaml"
    profile.write_text(PROFILE.format(url=emulator.url), encoding="utf-8")
    (tmp_path / "other.yaml").write_text(PROFILE.format(url=emulator.url).replace("neon", "dusk"), encoding="utf-8")
    show_log = tmp_path / "show.jsonl"
    options = RunOptions(profile=str(profile), duration=90, output="none", http_port=0, show_log=str(show_log))
    task = asyncio.create_task(run_bridge(options, status_stream=io.StringIO()))
    try:
        await wait_for(lambda: task.done() or "/metrics (Prometheus)" in caplog.text, 20, "the web server")
        assert not task.done(), task.exception()
        base = re.search(r"status: (http://127\.0\.0\.1:\d+/)status", caplog.text).group(1)  # type: ignore[union-attr]
        async with httpx.AsyncClient(base_url=base, timeout=10) as http:
            b = Bridge(http, emulator.url, profile, caplog)
            b.show_log = show_log
            await wait_for(lambda: _streaming(http), 20, "the session streaming")
            yield b
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def _streaming(http: httpx.AsyncClient) -> bool:
    state = (await http.get("/api/state")).json()
    return bool(state["scope"]["state"] == "streaming" and state["scope"]["frames_in"] > 0)


async def test_state_has_the_status_and_the_controls(bridge: Bridge) -> None:
    state = (await bridge.http.get("/api/state")).json()
    assert state["type"] == "state" and state["show"]["theme"] == "neon"
    control = state["control"]
    assert control["themes"] == ["neon", "forest"] and control["theme"] == "neon"
    assert control["theme_prompts"] == ["neon city at night", "rain on glass"]

    async def listed() -> list[str]:  # the profile list is read on a worker thread, then kept a few seconds
        return list((await bridge.http.get("/api/state")).json()["control"]["profiles"])

    profiles = await wait_for(listed, 5, "the profile list")
    assert str(bridge.profile) in profiles and str(bridge.profile.parent / "other.yaml") in profiles
    assert "panic" in control["actions"] and control["token_required"] is False
    status = (await bridge.http.get("/status")).json()
    assert status["show"]["theme"] == "neon" and "control" not in status
    assert "metadj_scope_state" in (await bridge.http.get("/metrics")).text


async def test_a_theme_button_reaches_the_emulator_with_the_transition(bridge: Bridge) -> None:
    answer = await bridge.http.post("/api/theme", json={"name": "forest"})
    assert answer.status_code == 200, answer.text
    assert answer.json()["ok"] is True
    message = await bridge.until_received(lambda m: "a misty forest" in prompts_of(m) and "transition" in m,
                                          "the theme's transition at the emulator")
    assert message["transition"]["num_steps"] == 4
    await wait_for(lambda: "control: theme forest (web from 127.0.0.1)" in bridge.caplog.text, 5, "the log line")
    state = (await bridge.http.get("/api/state")).json()
    assert state["show"]["theme"] == "forest"


async def test_a_typed_prompt_reaches_the_emulator_through_the_themes_transition(bridge: Bridge) -> None:
    answer = await bridge.http.post("/api/prompt", json={"text": "  a  golden   desert  "})
    assert answer.status_code == 200, answer.text
    message = await bridge.until_received(lambda m: prompts_of(m) == ["a golden desert"] and "transition" in m,
                                          "the typed prompt at the emulator")
    assert message["transition"]["num_steps"] == 4  # the theme's transition
    state = (await bridge.http.get("/api/state")).json()
    assert state["control"]["typed_prompt"] == "a golden desert" and state["show"]["theme"] == "neon"
    # A theme button afterwards still works, and the typed prompt is no longer what shows.
    await bridge.http.post("/api/theme", json={"name": "forest"})
    await bridge.until_received(lambda m: "a misty forest" in prompts_of(m), "the theme after the typed prompt")
    state = (await bridge.http.get("/api/state")).json()
    assert state["control"]["typed_prompt"] is None


async def test_a_flood_of_requests_is_a_few_log_lines_and_the_last_request_wins(bridge: Bridge) -> None:
    bridge.caplog.clear()
    count = 300
    for i in range(count):
        path, body = [("/api/prompt", {"text": f"flood {i}"}), ("/api/theme", {"name": "neon"}),
                      ("/api/action", {"name": "resume"})][i % 3]
        assert (await bridge.http.post(path, json=body)).status_code == 200
    answer = await bridge.http.post("/api/prompt", json={"text": "the last one"})
    assert answer.status_code == 200
    await wait_for(lambda: "control: prompt 'the last one'" in bridge.caplog.text, 5, "the latest request logged")
    lines = [r.getMessage() for r in bridge.caplog.records if r.levelno >= logging.INFO]
    assert len(lines) < count / 10, lines
    assert not [line for line in lines if "Default" in line or "profile" in line], lines  # no profile changed
    assert "requests in the last 1 s" in bridge.caplog.text
    state = (await bridge.http.get("/api/state")).json()
    assert state["control"]["typed_prompt"] == "the last one" and state["show"]["theme"] == "neon"


async def flood(http: httpx.AsyncClient, requests: list[tuple[str, dict[str, Any]]], workers: int = 8) -> float:
    """``requests`` sent by ``workers`` clients at once, each answered 200; the seconds the flood took."""
    waiting = list(reversed(requests))

    async def worker() -> None:
        while waiting:
            path, body = waiting.pop()
            answer = await http.post(path, json=body)
            assert answer.status_code == 200, answer.text

    began = asyncio.get_running_loop().time()
    await asyncio.gather(*(worker() for _ in range(workers)))
    return asyncio.get_running_loop().time() - began


async def test_a_flood_of_theme_changes_logs_a_show_line_a_second(bridge: Bridge) -> None:
    """Theme buttons flooded between two themes change the theme at nearly every engine step: the show's INFO
    lines ("show: theme ...") come as the control lines do, the first at once and then the latest of each second with
    the count, and the last request still wins."""
    bridge.caplog.clear()
    seconds = await flood(bridge.http, [("/api/theme", {"name": ("forest", "neon")[i % 2]}) for i in range(1500)])
    assert (await bridge.http.post("/api/theme", json={"name": "forest"})).status_code == 200

    def show_lines() -> list[str]:
        return [r.getMessage() for r in bridge.caplog.records if r.getMessage().startswith("show: theme")]

    await wait_for(lambda: any("events in the last 1 s" in line for line in show_lines()), 5, "a counted line")
    await asyncio.sleep(1.5)  # the held line of the last second
    lines = show_lines()
    # The first at once, a line a second while the flood lasts (and a little after: the engine's last steps), the last.
    assert 2 <= len(lines) <= 4 + seconds, (seconds, lines)
    counted = [int(m.group(1)) if (m := re.search(r"; (\d+) events in the last 1 s$", line)) else 1 for line in lines]
    assert sum(counted) > 500, lines  # the lines carry the count of the theme changes they stand for
    assert lines[-1].startswith("show: theme neon -> forest"), lines
    assert (await bridge.http.get("/api/state")).json()["show"]["theme"] == "forest"


async def test_a_flood_of_requests_is_folded_in_the_show_log_and_a_normal_pace_is_not(bridge: Bridge) -> None:
    """A show log took every control request: 3000 a second wrote about 0.36 MB a second. Now requests of one kind
    closer than a quarter of a second fold into one entry with their count, so a flood writes a few entries a second
    (every request still counted), while requests at a performer's pace are each an entry of their own."""
    assert bridge.show_log is not None  # the path the bridge writes its show log to (read below)
    paced = ["forest", "neon", "forest"]
    for name in paced:
        assert (await bridge.http.post("/api/theme", json={"name": name})).status_code == 200
        await asyncio.sleep(0.4)
    count = 2000
    seconds = await flood(bridge.http, [("/api/theme", {"name": ("neon", "forest")[i % 2]}) for i in range(count)])
    controls = "control: theme {} (web from 127.0.0.1)"

    def themes() -> list[ShowEvent]:
        return [e for e in read_show_log(bridge.show_log).events if e.text.startswith("control: theme")]

    await wait_for(lambda: sum(e.count for e in themes()) >= len(paced) + count, 10, "every request in the show log")
    events = themes()
    assert sum(e.count for e in events) == len(paced) + count  # each one counted, none lost
    assert [(e.text, e.count) for e in events[:3]] == [(controls.format(name), 1) for name in paced]
    flooded = events[3:]
    # The first at once, then one entry per quarter of a second of the flood, the last held one after it.
    assert 2 <= len(flooded) <= 3 + 4 * seconds, (seconds, [(e.t, e.count) for e in flooded])
    assert flooded[0].count == 1 and flooded[-1].count > 1  # the first at once; the last held, with its count
    assert max(e.count for e in flooded) > 10
    assert {e.text for e in flooded} <= {controls.format("neon"), controls.format("forest")}
    # The engine's own events ("theme neon -> forest", a change at nearly every step) fold the same way.
    engine = [e for e in read_show_log(bridge.show_log).events if e.text.startswith("theme ")]
    assert len(engine) <= 12 + 4 * seconds and sum(e.count for e in engine) > count / 4, len(engine)
    assert bridge.show_log.stat().st_size < 100_000


async def test_the_crossfade_mixes_the_themes_first_two_prompts(bridge: Bridge) -> None:
    answer = await bridge.http.post("/api/crossfade", json={"value": 0.25})
    assert answer.status_code == 200, answer.text

    def mixed(m: dict[str, Any]) -> bool:
        weights = {p["text"]: p["weight"] for p in m.get("prompts") or [] if isinstance(p, dict)}
        return weights == {"neon city at night": 0.75, "rain on glass": 0.25}

    await bridge.until_received(mixed, "the crossfaded prompts at the emulator")
    assert (await bridge.http.get("/api/state")).json()["control"]["crossfade"] == 0.25


async def test_actions_reach_the_emulator(bridge: Bridge) -> None:
    for name in ("pause", "reset_cache"):
        answer = await bridge.http.post("/api/action", json={"name": name})
        assert answer.status_code == 200, answer.text
    await bridge.until_received(lambda m: m.get("paused") is True, "the pause")
    await bridge.until_received(lambda m: m.get("reset_cache") is True, "the cache reset")
    await bridge.http.post("/api/action", json={"name": "resume"})
    await bridge.until_received(lambda m: m.get("paused") is False, "the resume")
    assert (await bridge.http.post("/api/action", json={"name": "panic"})).status_code == 200
    await wait_for(lambda: "show: panic" in bridge.caplog.text, 5, "the panic in the show's log")


async def test_tap_tempo_sets_the_tempo_and_nudge_moves_the_grid(bridge: Bridge) -> None:
    nudge = await bridge.http.post("/api/action", json={"name": "nudge_forward"})
    assert nudge.status_code == 400 and nudge.json()["field"] == "name"  # no tempo yet (no audio in this show)
    for _ in range(4):
        assert (await bridge.http.post("/api/action", json={"name": "tap"})).status_code == 200
        await asyncio.sleep(0.5)

    async def tapped() -> bool:
        tempo = (await bridge.http.get("/api/state")).json()["tempo"]
        return tempo is not None and tempo["source"] == "osc" and 90 < tempo["bpm"] < 150

    await wait_for(tapped, 5, "the tapped tempo in the state")
    assert (await bridge.http.post("/api/action", json={"name": "nudge_back"})).status_code == 200
    await wait_for(lambda: "control: nudge back" in bridge.caplog.text, 5, "the nudge in the log")


async def test_the_one_pressed_on_a_beat_begins_the_bars_there(bridge: Bridge) -> None:
    one = await bridge.http.post("/api/action", json={"name": "downbeat"})
    assert one.status_code == 400 and one.json()["field"] == "name"  # no beat to count from yet (no audio here)
    for _ in range(4):  # a tapped tempo: a grid whose bars the press can move
        assert (await bridge.http.post("/api/action", json={"name": "tap"})).status_code == 200
        await asyncio.sleep(0.5)
    for delay in (0.0, 0.2, 0.35):  # pressed at different places in the beat: the bar begins on the nearest beat
        await asyncio.sleep(delay)
        t0 = asyncio.get_running_loop().time()
        assert (await bridge.http.post("/api/action", json={"name": "downbeat"})).status_code == 200
        await asyncio.sleep(0.05)  # the state is the grid at the show's latest step: one after the press
        tempo = (await bridge.http.get("/api/state")).json()["tempo"]
        elapsed = (asyncio.get_running_loop().time() - t0) * tempo["bpm"] / 60.0  # beats since the press, at most
        off = min(tempo["bar_position"], tempo["beats_per_bar"] - tempo["bar_position"])
        assert off <= 0.5 + elapsed, tempo
    await wait_for(lambda: "control: downbeat: the bar begins on this beat" in bridge.caplog.text, 5, "the log line")


@pytest.mark.parametrize(("path", "body", "status", "field"), [
    ("/api/theme", {"name": "nowhere"}, 404, "name"),
    ("/api/theme", {"name": 3}, 400, "name"),
    ("/api/theme", {}, 400, "name"),
    ("/api/action", {"name": "explode"}, 404, "name"),
    ("/api/action", {"name": ["panic"]}, 400, "name"),
    ("/api/crossfade", {"value": 1.5}, 400, "value"),
    ("/api/crossfade", {"value": "0.5"}, 400, "value"),
    ("/api/crossfade", {"value": True}, 400, "value"),
    ("/api/prompt", {"text": "   "}, 400, "text"),
    ("/api/prompt", {"text": "x" * 1001}, 400, "text"),
    ("/api/prompt", {"text": None}, 400, "text"),
    ("/api/profile", {"path": "/etc/passwd"}, 403, "path"),
    ("/api/profile", {"path": 7}, 400, "path"),
])
async def test_a_bad_request_gets_a_json_error_naming_the_field(bridge: Bridge, path: str, body: dict[str, Any],
                                                               status: int, field: str) -> None:
    answer = await bridge.http.post(path, json=body)
    assert answer.status_code == status, answer.text
    assert answer.json()["field"] == field and answer.json()["error"]


async def test_malformed_bodies_are_refused_and_the_show_goes_on(bridge: Bridge) -> None:
    http = bridge.http
    not_json = await http.post("/api/theme", content=b"{name: forest", headers={"Content-Type": "application/json"})
    assert not_json.status_code == 400 and not_json.json()["field"] == "body"
    a_list = await http.post("/api/theme", json=["forest"])
    assert a_list.status_code == 400 and a_list.json()["field"] == "body"
    form = await http.post("/api/theme", data={"name": "forest"})
    assert form.status_code == 415 and form.json()["field"] == "body"
    huge = await http.post("/api/prompt", content=b'{"text": "' + b"a" * 200_000 + b'"}',
                           headers={"Content-Type": "application/json"})
    assert huge.status_code == 413 and huge.json()["field"] == "body"
    binary = await http.post("/api/prompt", content=b"\xff\xfe\x00", headers={"Content-Type": "application/json"})
    assert binary.status_code == 400
    foreign = await http.post("/api/theme", json={"name": "forest"}, headers={"Origin": "http://evil.example"})
    assert foreign.status_code == 403 and foreign.json()["field"] == "origin"
    unknown = await http.get("/api/nothing")
    assert unknown.status_code == 404 and "error" in unknown.json()
    wrong_method = await http.get("/api/theme")
    assert wrong_method.status_code == 405 and "error" in wrong_method.json()
    # The show went on: a good request still works.
    assert (await http.post("/api/theme", json={"name": "forest"})).status_code == 200
    await bridge.until_received(lambda m: "a misty forest" in prompts_of(m), "the theme after the garbage")


async def test_text_with_half_a_character_is_refused_and_the_show_goes_on(bridge: Bridge) -> None:
    http, json_type = bridge.http, {"Content-Type": "application/json"}
    for body, field in ((b'{"text": "neon \\ud800 city"}', "text"), (b'{"name": ["x", {"y": "\\udfff"}]}', "name"),
                        (b'{"text": "ok", "\\ud800": 1}', "body")):
        answer = await http.post("/api/prompt", content=body, headers=json_type)
        assert answer.status_code == 400, answer.text
        assert answer.json()["field"] == field and "surrogate" in answer.json()["error"]
    assert (await http.post("/api/prompt", json={"text": "a golden desert"})).status_code == 200
    await bridge.until_received(lambda m: prompts_of(m) == ["a golden desert"], "the next prompt at the emulator")
    assert (await http.get("/api/state")).json()["control"]["typed_prompt"] == "a golden desert"


async def test_a_body_nested_too_deeply_is_not_json_and_the_show_goes_on(bridge: Bridge) -> None:
    deep = b"[" * 30_000 + b"]" * 30_000
    answer = await bridge.http.post("/api/theme", content=deep, headers={"Content-Type": "application/json"})
    assert answer.status_code == 400, answer.text
    assert answer.json() == {"error": "the body is not JSON: nested too deeply", "field": "body"}
    assert "RecursionError" not in bridge.caplog.text
    assert (await bridge.http.post("/api/theme", json={"name": "forest"})).status_code == 200
    await bridge.until_received(lambda m: "a misty forest" in prompts_of(m), "the theme after the deep body")


async def test_a_profile_switch_through_the_api(bridge: Bridge) -> None:
    answer = await bridge.http.post("/api/profile", json={"path": "other.yaml"})
    assert answer.status_code == 202, answer.text
    assert answer.json()["path"] == str((bridge.profile.parent / "other.yaml").resolve())

    async def switched() -> bool:
        return bool((await bridge.http.get("/api/state")).json()["control"]["themes"] == ["dusk", "forest"])

    await wait_for(switched, 10, "the switched profile in the state")
    await bridge.until_received(lambda m: "dusk city at night" in prompts_of(m), "the new profile's prompts")


async def test_scenes_answer_501_or_work(bridge: Bridge) -> None:
    from metadj_bridge.run.show import ShowRunner

    save = await bridge.http.post("/api/scene/save", json={"name": "intro"})
    if not hasattr(ShowRunner, "save_scene"):
        assert save.status_code == 501 and save.json()["field"] == "name"
        recall = await bridge.http.post("/api/scene/recall", json={"name": "intro"})
        assert recall.status_code == 501
        return
    assert save.status_code == 200, save.text
    assert "intro" in save.json()["state"]["control"]["scenes"]
    bad = await bridge.http.post("/api/scene/recall", json={"name": "intro", "morph_bars": "two"})
    assert bad.status_code == 400 and bad.json()["field"] == "morph_bars"
    unknown = await bridge.http.post("/api/scene/recall", json={"name": "nope"})
    assert unknown.status_code == 404 and unknown.json()["field"] == "name"
    assert (await bridge.http.post("/api/scene/recall", json={"name": "intro"})).status_code == 200


async def test_switch_command_uses_the_api(bridge: Bridge) -> None:
    port = bridge.http.base_url.port
    target = str(bridge.profile.parent / "other.yaml")
    done = await asyncio.to_thread(subprocess.run, [sys.executable, "-m", "metadj_bridge", "switch", target, "--to",
                                                    f"127.0.0.1:{port}"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "is switching to" in done.stdout
    elsewhere = bridge.profile.parent.parent / f"{bridge.profile.parent.name}-elsewhere" / "x.yaml"
    elsewhere.parent.mkdir()
    elsewhere.write_text(bridge.profile.read_text(encoding="utf-8"), encoding="utf-8")
    refused = await asyncio.to_thread(subprocess.run, [sys.executable, "-m", "metadj_bridge", "switch", str(elsewhere),
                                                       "--to", f"127.0.0.1:{port}"], capture_output=True, text=True,
                                      timeout=60)
    assert refused.returncode == 1  # a file outside the folders the running profile allows: the bridge's word
    last = refused.stderr.splitlines()[-1]
    assert "refused the switch" in last and "HTTP 403" in last and "outside the folders a switch may open" in last


def test_switch_command_fails_when_no_bridge_answers(tmp_path: Path) -> None:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # bound, not listening: nothing answers there
        done = subprocess.run([sys.executable, "-m", "metadj_bridge", "switch", "default", "--to",
                               f"127.0.0.1:{port}"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 1
    assert f"no bridge answers at 127.0.0.1:{port}" in done.stderr.splitlines()[-1]


async def test_a_page_that_never_reads_does_not_stop_the_show(bridge: Bridge) -> None:
    import aiohttp

    from tests.test_web_server import _raw_websocket

    port = bridge.http.base_url.port
    assert port is not None
    stuck = [_raw_websocket(port) for _ in range(3)]  # shook hands, never read a byte
    try:
        async with aiohttp.ClientSession() as session, session.ws_connect(f"{bridge.http.base_url}ws") as live:
            first = await live.receive_json(timeout=5)
            assert first["type"] == "state"
            for theme, prompt in (("forest", "a misty forest"), ("neon", "neon city at night")):
                assert (await bridge.http.post("/api/theme", json={"name": theme})).status_code == 200
                await bridge.until_received(lambda m, p=prompt: p in prompts_of(m) and "transition" in m,
                                            f"the {theme} theme at the emulator")

                async def shows(name: str = theme) -> bool:
                    return bool((await live.receive_json(timeout=5))["show"]["theme"] == name)

                await wait_for(shows, 10, f"the live page showing {theme}")
            assert (await bridge.http.post("/api/action", json={"name": "pause"})).status_code == 200
            await bridge.until_received(lambda m: m.get("paused") is True, "the pause at the emulator")
    finally:
        for sock in stuck:
            sock.close()



async def test_a_lan_bridge_takes_control_only_with_its_token(make_emulator: Any, tmp_path: Path,
                                                              caplog: pytest.LogCaptureFixture,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    caplog.set_level(logging.INFO, logger="metadj_bridge")
    emulator = await make_emulator()
    profile = tmp_path / "show.yaml"
    profile.write_text(PROFILE.format(url=emulator.url), encoding="utf-8")
    options = RunOptions(profile=str(profile), duration=60, output="none", http_port=0, http_host="0.0.0.0",
                         http_token="stage-left-0123456789", show_log="none")
    task = asyncio.create_task(run_bridge(options, status_stream=io.StringIO()))
    try:
        await wait_for(lambda: task.done() or "/metrics (Prometheus)" in caplog.text, 20, "the web server")
        assert not task.done(), task.exception()
        assert "open to other machines on 0.0.0.0" in caplog.text
        assert "stage-left-0123456789" not in caplog.text  # the token is printed on the terminal, not logged
        assert "?token=stage-left-0123456789" in capsys.readouterr().err
        port = re.search(r"status: http://[^:]+:(\d+)/status", caplog.text).group(1)  # type: ignore[union-attr]
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as http:
            refused = await http.post("/api/theme", json={"name": "forest"})
            assert refused.status_code == 401 and refused.json()["field"] == "token"
            http.headers["Authorization"] = "Bearer stage-left-0123456789"
            await wait_for(lambda: _streaming(http), 20, "the session streaming")
            taken = await http.post("/api/theme", json={"name": "forest"})
            assert taken.status_code == 200, taken.text
        b = Bridge(http, emulator.url, profile, caplog)
        await b.until_received(lambda m: "a misty forest" in prompts_of(m), "the theme taken with the token")
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
