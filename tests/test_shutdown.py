"""SIGTERM and SIGINT end a show cleanly: the Scope session is DELETEd, the recording is finished and playable."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
from pathlib import Path

import av
import httpx
import pytest

from tests.helpers import wait_for


async def finish(proc: asyncio.subprocess.Process) -> str:
    """Wait (at most 30 s) for the show to end; what it wrote to stderr."""
    _, err = await asyncio.wait_for(proc.communicate(), 30)
    return err.decode()


async def kill_if_running(proc: asyncio.subprocess.Process) -> None:
    if proc.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        await proc.wait()


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
async def test_a_signal_ends_the_show_cleanly(make_emulator: object, tmp_path: Path, sig: signal.Signals) -> None:
    emulator = await make_emulator()  # type: ignore[operator]
    profile = tmp_path / "show.yaml"
    profile.write_text(
        f"scope: {{url: {emulator.url}, resolution: [256, 144], denoising: fast}}\n"
        "inputs: {audio: none}\n"
        "themes: {neon: {prompts: [neon city at night]}}\n",
        encoding="utf-8",
    )
    record = tmp_path / "show.mkv"
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "metadj_bridge", "run", "--profile", str(profile), "--output", f"record:{record}",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    try:
        await wait_for(lambda: emulator._records.counters.frames_sent > 20, 30, "the show streaming")
        async with httpx.AsyncClient() as http:
            assert (await http.get(emulator.url + "/_emulator/metrics")).json()["active_sessions"] == 1
            proc.send_signal(sig)
            err = await finish(proc)
            assert proc.returncode == 0, err
            # The session was closed on Scope's side, not left for Scope to time out.
            assert (await http.get(emulator.url + "/_emulator/metrics")).json()["active_sessions"] == 0
    finally:
        await kill_if_running(proc)
    assert "Traceback" not in err
    with av.open(str(record)) as container:
        frames = list(container.decode(container.streams.video[0]))
    assert len(frames) > 10 and (frames[0].width, frames[0].height) == (256, 144)


async def test_sighup_reloads_the_profile(make_emulator: object, tmp_path: Path) -> None:
    emulator = await make_emulator()  # type: ignore[operator]
    profile = tmp_path / "show.yaml"
    text = (f"scope: {{url: {emulator.url}, resolution: [256, 144], denoising: fast}}\n"
            "inputs: {audio: none}\nthemes: {neon: {prompts: [neon city at night]}}\n")
    profile.write_text(text, encoding="utf-8")
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "metadj_bridge", "run", "--profile", str(profile), "--output", "none", "--no-watch",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    try:
        await wait_for(lambda: emulator._records.counters.frames_sent > 10, 30, "the show streaming")
        profile.write_text(text.replace("neon city at night", "a storm over the sea"), encoding="utf-8")
        proc.send_signal(signal.SIGHUP)  # --no-watch: only the signal can bring the edit in

        def storm() -> bool:
            return any("a storm over the sea" in str(e["message"]) for e in emulator._records.applied)

        await wait_for(storm, 15, "the reloaded prompt applied by Scope")
        proc.send_signal(signal.SIGTERM)
        err = await finish(proc)
    finally:
        await kill_if_running(proc)
    assert proc.returncode == 0 and "profile show.yaml reloaded" in err
