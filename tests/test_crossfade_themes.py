"""A crossfader held through theme changes and profile reloads keeps mixing, end to end: the bridge in this process
(``run_bridge``), the crossfader and the theme button over real OSC on loopback, the emulator as Scope. What Scope
applies is read from the emulator's own log of applied messages."""

from __future__ import annotations

import asyncio
import contextlib
import io
import logging
import socket
from pathlib import Path
from typing import Any

import pytest
from pythonosc.osc_message_builder import OscMessageBuilder

from metadj_bridge.run.bridge import run_bridge
from metadj_bridge.run.plan import RunOptions
from tests.helpers import free_port, wait_for
from tests.test_reliability import emulator_log, last_prompts, wait_async, weight

pytestmark = pytest.mark.timeout(120)


def osc(port: int, address: str, *args: float) -> None:
    builder = OscMessageBuilder(address)
    for arg in args:
        builder.add_arg(arg)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.sendto(builder.build().dgram, ("127.0.0.1", port))


async def test_a_held_crossfade_mixes_every_new_theme_and_survives_a_reload(
    make_emulator: Any, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="metadj_bridge")
    emulator = await make_emulator()
    port = free_port()
    profile = tmp_path / "show.yaml"
    text = (f"scope: {{url: {emulator.url}, resolution: [256, 144], denoising: fast}}\n"
            f"inputs: {{audio: none, osc: {{port: {port}}}}}\n"
            "themes:\n"
            "  duo: {prompts: [red desert, blue ice cave]}\n"
            "  pair: {prompts: [green forest, golden city]}\n"
            "mappings:\n"
            "  crossfade: {source: osc./xfade, target: prompt.mix}\n"
            "  next: {trigger: osc./theme/next, target: theme.next}\n")
    profile.write_text(text, encoding="utf-8")
    options = RunOptions(profile=str(profile), duration=100, output="none", show_log="none")
    bridge = asyncio.create_task(run_bridge(options, status_stream=io.StringIO()))
    try:
        await wait_for(lambda: bridge.done() or "streaming from" in caplog.text, 30, "the first session")
        assert not bridge.done(), bridge.exception()

        async def half(first: str, second: str) -> bool:
            prompts = await last_prompts(emulator.url)
            return 0.45 < weight(prompts, first) < 0.55 and 0.45 < weight(prompts, second) < 0.55

        await wait_async(lambda: half("red desert", "blue ice cave"), 20, "the crossfade at 0.5",
                         poke=lambda: osc(port, "/xfade", 0.5))

        # The theme button, the fader left where it is: the new theme comes in mixed, not as its first prompt.
        osc(port, "/theme/next")
        await wait_for(lambda: "theme duo -> pair" in caplog.text, 10, "the theme change")
        await wait_async(lambda: half("green forest", "golden city"), 10, "the new theme mixed at 0.5")
        # Not even for a moment: nothing Scope applied gave the new theme's first prompt alone.
        for entry in (await emulator_log(emulator.url))["applied"]:
            message = entry["message"]
            prompts = message["transition"]["target_prompts"] if "transition" in message else message.get("prompts")
            if prompts and any(p["text"] == "green forest" for p in prompts):
                assert weight(prompts, "green forest") < 0.99, message

        # The file saved with a new prompt: the reload keeps the theme and the fader's place.
        profile.write_text(text.replace("golden city", "silver city"), encoding="utf-8")
        await wait_async(lambda: half("green forest", "silver city"), 10, "the reloaded theme mixed at 0.5")
        assert not bridge.done()
    finally:
        bridge.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await bridge
