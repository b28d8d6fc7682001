"""A running bridge's web server answers GET /status and GET /metrics on 127.0.0.1 (real HTTP, the emulator as
Scope)."""

from __future__ import annotations

import asyncio
import contextlib
import io
import logging
import re
import socket
from pathlib import Path

import httpx
import pytest

from metadj_bridge.run.bridge import run_bridge
from metadj_bridge.run.plan import RunOptions
from tests.helpers import wait_for


async def test_status_and_metrics_of_a_running_show(make_emulator: object, tmp_path: Path,
                                                    caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="metadj_bridge")
    emulator = await make_emulator()  # type: ignore[operator]
    profile = tmp_path / "show.yaml"
    profile.write_text(
        f"scope: {{url: {emulator.url}, resolution: [256, 144], denoising: fast}}\n"
        "inputs: {audio: demo}\n"
        "themes: {neon: {prompts: [neon city at night]}}\n",
        encoding="utf-8",
    )
    options = RunOptions(profile=str(profile), duration=60, output="none", status_port=0)
    bridge = asyncio.create_task(run_bridge(options, status_stream=io.StringIO()))
    try:
        await wait_for(lambda: bridge.done() or "/metrics (Prometheus)" in caplog.text, 20, "the status server")
        assert not bridge.done(), bridge.exception()
        base = re.search(r"status: (http://127\.0\.0\.1:\d+)/status", caplog.text).group(1)  # type: ignore[union-attr]
        async with httpx.AsyncClient(base_url=base) as http:
            async def streaming() -> bool:
                status = (await http.get("/status")).json()
                return status["scope"]["state"] == "streaming" and status["scope"]["frames_in"] > 0

            deadline = asyncio.get_running_loop().time() + 20
            while not await streaming():
                assert asyncio.get_running_loop().time() < deadline, "never streaming"
                await asyncio.sleep(0.2)
            status = (await http.get("/status")).json()
            assert status["show"]["theme"] == "neon" and status["profile"] == str(profile)
            assert status["scope"]["url"] == emulator.url and status["audio"] is not None
            metrics = (await http.get("/metrics")).text
        assert 'metadj_scope_state{state="streaming"} 1' in metrics
        frames = re.search(r"^metadj_scope_frames_received_total (\d+)", metrics, re.MULTILINE)
        assert frames is not None and int(frames.group(1)) > 0, metrics
    finally:
        bridge.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await bridge


async def test_a_taken_port_moves_the_web_server_and_the_status_says_where(
    make_emulator: object, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="metadj_bridge")
    emulator = await make_emulator()  # type: ignore[operator]
    profile = tmp_path / "show.yaml"
    profile.write_text(
        f"scope: {{url: {emulator.url}, resolution: [256, 144], denoising: fast}}\n"
        "inputs: {audio: none}\n"
        "themes: {neon: {prompts: [neon city at night]}}\n",
        encoding="utf-8",
    )
    with socket.create_server(("127.0.0.1", 0)) as taken:  # another program on the web server's port
        port = taken.getsockname()[1]
        # --preview-port: the deprecated alias of --http-port still works for one release, and says so.
        options = RunOptions(profile=str(profile), duration=60, output="preview", preview_port=port)
        bridge = asyncio.create_task(run_bridge(options, status_stream=io.StringIO()))
        try:
            await wait_for(lambda: bridge.done() or "/metrics (Prometheus)" in caplog.text, 20, "the web server")
            assert not bridge.done(), bridge.exception()
            assert "--preview-port is deprecated" in caplog.text
            moved = re.search(rf"web: control page at (http://127\.0\.0\.1:(\d+)/) \({port} was taken", caplog.text)
            assert moved is not None, caplog.text
            url, new_port = moved.group(1), int(moved.group(2))
            assert new_port != port
            async with httpx.AsyncClient(base_url=url, timeout=10) as http:
                status = (await http.get("/status")).json()
                assert status["video"]["preview_url"] == url + "stream.mjpg"
                assert status["video"]["outputs"] == ["preview"]
                page = await http.get("/")
                assert page.status_code == 200 and "<html" in page.text.lower()

                async def a_frame() -> bool:
                    return (await http.get("/frame.jpg")).status_code == 200

                await wait_for(a_frame, 20, "the picture on /frame.jpg")
        finally:
            bridge.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await bridge
