"""A laptop closed between sets, or a bridge frozen: the show comes back by itself, says so in one line, no burst.

The far ends are real: the bridge runs as ``metadj-bridge run`` in its own process, frozen with SIGSTOP and woken
with SIGCONT (what a closed lid does to every process, as far as the process can tell: on Linux and macOS the
monotonic clock stands still through a real sleep, which the sleep-clock side of ``lifecycle.AwayWatch`` covers);
Scope is the emulator in its own process, killed and started again while the bridge is frozen (Scope dropped the
session meanwhile); the beat grid is heard through OSC out on a real UDP socket.
"""

from __future__ import annotations

import asyncio
import signal
import socket
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from pythonosc.osc_message import OscMessage

from tests.conftest import EmulatorProcess
from tests.helpers import free_port, wait_for

pytestmark = pytest.mark.skipif(not hasattr(signal, "SIGSTOP"), reason="SIGSTOP freezes a process (POSIX)")


class BeatEar:
    """Every ``/metadj/beat`` the bridge's OSC out sends, with the (monotonic) time it came."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.setblocking(False)
        self.port = self.sock.getsockname()[1]
        self.beats: list[float] = []
        self._task = asyncio.get_running_loop().create_task(self._listen(), name="beat-ear")

    async def _listen(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            data = await loop.sock_recv(self.sock, 4096)
            if OscMessage(data).address == "/metadj/beat":
                self.beats.append(time.monotonic())

    async def aclose(self) -> None:
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)
        self.sock.close()


async def emulator_log(url: str) -> dict[str, Any]:
    async with httpx.AsyncClient() as http:
        return dict((await http.get(url + "/_emulator/log", timeout=5)).json())


def lines_since(log_path: Path, offset: int) -> list[str]:
    return log_path.read_text(encoding="utf-8", errors="replace")[offset:].splitlines()


async def freeze(proc: asyncio.subprocess.Process, seconds: float, ear: BeatEar, during: Any = None) -> float:
    """SIGSTOP ``proc`` for ``seconds`` (running ``during`` meanwhile), SIGCONT; the monotonic time it woke."""
    proc.send_signal(signal.SIGSTOP)
    frozen_at = time.monotonic()
    if during is not None:
        await during()
    await asyncio.sleep(seconds - (time.monotonic() - frozen_at))
    ear.beats.clear()  # what came before the wake
    woke = time.monotonic()
    proc.send_signal(signal.SIGCONT)
    return woke


async def test_a_frozen_bridge_picks_the_show_up_where_it_was(emulator_process: Any, tmp_path: Path) -> None:
    scope: EmulatorProcess = emulator_process("--chunk-frames", "4", "--fps", "20", "--load-seconds", "0.1")
    await scope.start()
    profile = tmp_path / "show.yaml"
    profile.write_text(
        f"scope: {{url: {scope.url}, resolution: [256, 144], denoising: fast}}\n"
        "inputs: {audio: demo}\n"
        "themes: {neon: {prompts: [neon city at night, rain on glass]}, ocean: {prompts: [deep ocean at night]}}\n"
        "mappings: {energy: {source: audio.energy, target: noise_scale}}\n"
        "cycle: {every_bars: 64, prompt_every_bars: 32}\n",
        encoding="utf-8",
    )
    ear = BeatEar()
    log_path = tmp_path / "bridge.log"
    with log_path.open("wb") as err:
        bridge = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "metadj_bridge", "run", "--profile", str(profile), "--output", "preview",
            "--http-port", str(free_port()), "--osc-out", f"127.0.0.1:{ear.port}", "--show-log", "none",
            stdout=asyncio.subprocess.DEVNULL, stderr=err,
        )
    try:
        async def beating() -> bool:
            return len(ear.beats) >= 4 and len((await emulator_log(scope.url))["applied"]) > 0

        await wait_for(beating, 40, "the show streaming on the beat")

        # 1. Frozen for 3 s, shorter than the watchdog's 5 s: the session is kept, one line says what happened.
        offset = len(log_path.read_text(encoding="utf-8", errors="replace"))
        received_before = len((await emulator_log(scope.url))["received"])
        woke = await freeze(bridge, 3.0, ear)
        await asyncio.sleep(3.0)
        lines = lines_since(log_path, offset)
        said = [line for line in lines if "frozen" in line]
        assert len(said) == 1 and "the bridge was frozen for 3 s" in said[0], lines
        assert not [line for line in lines if "too busy" in line or "Scope session lost" in line], lines
        log = await emulator_log(scope.url)
        assert len(log["offers"]) == 1 and log["dropped"] == []  # the same session, no message lost
        assert len(log["received"]) - received_before <= 8  # about one a chunk at most, no burst
        gaps = [b - a for a, b in zip(ear.beats, ear.beats[1:], strict=False)]
        assert ear.beats and ear.beats[0] - woke < 1.5 and min(gaps, default=1.0) > 0.2, (woke, ear.beats)

        # 2. Frozen for 7 s while Scope restarts (it dropped the session): a new session at once, in the same state.
        offset = len(log_path.read_text(encoding="utf-8", errors="replace"))

        async def restart_scope() -> None:
            await asyncio.sleep(1.0)
            scope.kill()
            await scope.start()

        woke = await freeze(bridge, 7.0, ear, during=restart_scope)

        async def streaming_again() -> bool:
            return len((await emulator_log(scope.url))["applied"]) > 0

        await wait_for(streaming_again, 6, "the show back on the restarted Scope")
        back = time.monotonic() - woke
        await asyncio.sleep(2.0)
        lines = lines_since(log_path, offset)
        lost = [line for line in lines if "Scope session lost" in line]
        assert len(lost) == 1 and "the bridge was frozen for 7 s (the computer slept?)" in lost[0], lines
        assert not [line for line in lines if "too busy" in line or "Traceback" in line], lines
        offer = (await emulator_log(scope.url))["offers"][-1]
        assert "neon city at night" in str(offer["prompts"])  # the show's state, not the profile's start again
        print(f"\nback on the restarted Scope {back:.1f} s after waking")
        assert back < 5.0
    finally:
        if bridge.returncode is None:
            bridge.send_signal(signal.SIGCONT)
            bridge.send_signal(signal.SIGINT)
            try:
                await asyncio.wait_for(bridge.wait(), 30)
            except TimeoutError:
                bridge.kill()
                await bridge.wait()
        await ear.aclose()
    assert "Traceback" not in log_path.read_text(encoding="utf-8", errors="replace")
