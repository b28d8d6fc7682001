"""A running bridge answers GET /status and GET /metrics on 127.0.0.1 (real HTTP, the emulator as Scope)."""

from __future__ import annotations

import asyncio
import contextlib
import io
import logging
import re
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
