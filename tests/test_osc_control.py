"""The control surface over OSC: ``/metadj/theme s``, ``/metadj/prompt s``, ``/metadj/action s`` and
``/metadj/crossfade f`` (the addresses OSCQuery lists) do what the web API does, through the same engine paths;
a bad request is one warning naming the sender and the show goes on. A whole bridge on the emulator, real UDP."""

from __future__ import annotations

import asyncio
import contextlib
import io
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from pythonosc.udp_client import SimpleUDPClient

from metadj_bridge.run.bridge import run_bridge
from metadj_bridge.run.plan import RunOptions
from tests.conftest import emulator_get
from tests.helpers import free_port, wait_for
from tests.test_web_api import PROFILE, prompts_of


@pytest.fixture
async def osc_bridge(make_emulator: Any, tmp_path: Path,
                     caplog: pytest.LogCaptureFixture) -> AsyncIterator[tuple[SimpleUDPClient, str]]:
    caplog.set_level(logging.INFO, logger="metadj_bridge")
    emulator = await make_emulator()
    port = free_port()
    profile = tmp_path / "show.yaml"
    profile.write_text(PROFILE.format(url=emulator.url).replace("inputs: {audio: none}",
                                                                f"inputs: {{audio: none, osc: {{port: {port}}}}}"),
                       encoding="utf-8")
    options = RunOptions(profile=str(profile), duration=90, output="none", http_port=0, show_log="none")
    task = asyncio.create_task(run_bridge(options, status_stream=io.StringIO()))
    client = SimpleUDPClient("127.0.0.1", port)
    try:
        async def streaming() -> bool:
            log = await emulator_get(emulator.url, "/_emulator/log")
            return bool(log["received"]) or bool(log.get("offers"))

        await wait_for(lambda: task.done() or "listening for OSC" in caplog.text, 20, "the OSC input")
        assert not task.done(), task.exception()
        await wait_for(streaming, 20, "the session")
        yield client, emulator.url
    finally:
        client._sock.close()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def received(url: str) -> list[dict[str, Any]]:
    return [m["message"] for m in (await emulator_get(url, "/_emulator/log"))["received"]]


async def until(url: str, check: Any, what: str, send: Any) -> None:
    """Send (again every 2 s: UDP may lose the first one while the session settles) until the emulator shows it."""
    loop = asyncio.get_running_loop()
    deadline, sent = loop.time() + 20, -1e9
    while not any(check(m) for m in await received(url)):
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        if loop.time() - sent > 2:
            send()
            sent = loop.time()
        await asyncio.sleep(0.1)


async def test_theme_prompt_crossfade_and_action_over_osc(osc_bridge: tuple[SimpleUDPClient, str],
                                                          caplog: pytest.LogCaptureFixture) -> None:
    osc, url = osc_bridge
    await until(url, lambda m: "a misty forest" in prompts_of(m), "the theme from OSC",
                lambda: osc.send_message("/metadj/theme", "forest"))
    await until(url, lambda m: prompts_of(m) == ["a golden desert"], "the typed prompt from OSC",
                lambda: osc.send_message("/metadj/prompt", "a golden desert"))
    await until(url, lambda m: m.get("reset_cache") is True, "the cache reset from OSC",
                lambda: osc.send_message("/metadj/action", "reset_cache"))
    await until(url, lambda m: "neon city at night" in prompts_of(m), "back to the first theme",
                lambda: osc.send_message("/metadj/theme", "neon"))

    def mixed(m: dict[str, Any]) -> bool:
        weights = {p["text"]: p["weight"] for p in m.get("prompts") or [] if isinstance(p, dict)}
        return weights == {"neon city at night": 0.25, "rain on glass": 0.75}

    await until(url, mixed, "the crossfade from OSC", lambda: osc.send_message("/metadj/crossfade", 0.75))
    assert "control: theme forest (OSC from 127.0.0.1" in caplog.text


async def test_a_bad_osc_request_is_one_warning_and_the_show_goes_on(osc_bridge: tuple[SimpleUDPClient, str],
                                                                     caplog: pytest.LogCaptureFixture) -> None:
    osc, url = osc_bridge
    osc.send_message("/metadj/theme", "no-such-theme")
    await wait_for(lambda: "OSC control requests refused" in caplog.text, 10, "the refusal")
    assert "no-such-theme" in caplog.text and "OSC from 127.0.0.1" in caplog.text
    await until(url, lambda m: "a misty forest" in prompts_of(m), "a good request after the bad one",
                lambda: osc.send_message("/metadj/theme", "forest"))
