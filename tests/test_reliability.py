"""A night of trouble, in CI: the bridge keeps the show going through everything that goes wrong on stage.

The far ends are real: the emulator in its own process (killed with SIGKILL like a crashed server and started
again), the demo track played into a JACK server (dummy driver) and captured through PortAudio, a virtual MIDI
controller on the same JACK server, OSC over loopback UDP, a profile file edited while the bridge runs. The bridge
runs in this process (``run_bridge``) and records what its camera showed, so the test can tell that the picture
never stopped.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import logging
import os
import random
import re
import socket
import time
from pathlib import Path
from typing import Any

import av
import httpx
import mido
import pytest
from pythonosc.osc_message_builder import OscMessageBuilder

from metadj_bridge.inputs.synth import demo_track_path
from metadj_bridge.run.bridge import run_bridge
from metadj_bridge.run.plan import RunOptions
from tests.conftest import EmulatorProcess
from tests.helpers import free_port, wait_for
from tests.test_midi import JACK_BACKEND, Sender

pytestmark = pytest.mark.timeout(420)

KILLS = 10
FPS = 20


def write_profile(path: Path, url: str, controller: str, osc_port: int, record: Path, prompt: str) -> None:
    path.write_text(
        f"""name: night of trouble
scope: {{url: {url}, resolution: [256, 144], denoising: fast, sender: {{min_interval: 0.02}}}}
inputs:
  audio: "device:system"
  midi: {{devices: ["{controller}"]}}
  osc: {{port: {osc_port}}}
video: {{outputs: ["record:{record}"], fps: {FPS}, slate_after: 1}}
themes:
  duo:
    prompts: [{prompt}, blue ice cave]
  solo:
    prompts: [green forest in the rain]
mappings:
  crossfade: {{source: midi.cc.1.19, target: prompt.mix}}
  energy: {{source: audio.energy, target: noise_scale}}
  solo: {{trigger: osc./show/solo, target: "theme.set:solo"}}
""",
        encoding="utf-8",
    )


async def emulator_log(url: str) -> dict[str, Any]:
    async with httpx.AsyncClient() as http:
        return dict((await http.get(url + "/_emulator/log", timeout=5)).json())


async def last_prompts(url: str) -> list[dict[str, Any]] | None:
    """The prompts Scope is using now: the last applied message's, else the newest offer's."""
    try:
        log = await emulator_log(url)
    except httpx.HTTPError:
        return None
    for entry in reversed(log["applied"]):
        message = entry["message"]
        if "transition" in message:
            return list(message["transition"]["target_prompts"])
        if "prompts" in message:
            return list(message["prompts"])
    offers = log["offers"]
    return list(offers[-1]["prompts"]) if offers else None


async def wait_async(check: Any, limit: float, what: str, *, poke: Any = None) -> None:
    deadline = time.monotonic() + limit
    while True:
        if poke is not None:
            poke()
        if await check():
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {limit} s waiting for {what}")
        await asyncio.sleep(0.1)


def weight(prompts: list[dict[str, Any]] | None, text: str) -> float:
    if not prompts:
        return -1.0
    total = sum(p["weight"] for p in prompts)
    return sum(p["weight"] for p in prompts if p["text"] == text) / total


async def test_a_night_of_trouble(jack_server: Any, emulator_process: Any, tmp_path: Path,
                                  caplog: pytest.LogCaptureFixture) -> None:
    from tests.jackrig import JackPlayer

    caplog.set_level(logging.INFO, logger="metadj_bridge")
    os.environ["MIDO_BACKEND"] = JACK_BACKEND
    backend = mido.Backend(JACK_BACKEND, load=True)
    proc: EmulatorProcess = emulator_process("--chunk-frames", "4", "--fps", "20", "--load-seconds", "0.1")
    await proc.start()
    controller = Sender(backend)
    osc_port = free_port()
    profile, record = tmp_path / "night.yaml", tmp_path / "night.mkv"
    write_profile(profile, proc.url, controller.name, osc_port, record, "red desert at dusk")
    player = JackPlayer(jack_server)
    reconnects: list[float] = []
    try:
        options = RunOptions(profile=str(profile), duration=400, show_log="none")
        bridge = asyncio.create_task(run_bridge(options, status_stream=io.StringIO()))
        try:
            await wait_for(lambda: bridge.done() or "streaming from" in caplog.text, 30, "the first session")
            assert not bridge.done(), bridge.exception()
            # The bridge captures from JACK now: play the demo track into it.
            await asyncio.to_thread(player.connect_to_captures)
            player.play(str(demo_track_path()))

            # A knob sets a state that every new session must start from.
            def crossfade() -> None:
                controller.send(mido.Message("control_change", channel=0, control=19, value=64))

            async def blended() -> bool:
                return 0.4 < weight(await last_prompts(proc.url), "blue ice cave") < 0.6

            await wait_async(blended, 20, "the crossfade applied", poke=crossfade)

            # 1. The emulator crashes and comes back ten times in about two minutes.
            for _ in range(KILLS):
                proc.kill()
                await asyncio.sleep(random.uniform(1.5, 4.0))
                await proc.start()  # returns once /health answers
                healthy = time.monotonic()

                async def rejoined() -> bool:
                    try:
                        return len((await emulator_log(proc.url))["offers"]) > 0
                    except httpx.HTTPError:
                        return False

                await wait_async(rejoined, 30, "the bridge's new session")
                reconnects.append(time.monotonic() - healthy)
                offer = (await emulator_log(proc.url))["offers"][-1]
                # The last state went out again: the new session starts from the crossfaded prompts.
                assert 0.4 < weight(offer["prompts"], "blue ice cave") < 0.6
                assert not bridge.done()

            # 2. The controller is unplugged and plugged in again; its knob works afterwards.
            controller.close()
            await wait_for(lambda: "disappeared" in caplog.text, 10, "the unplugged controller noticed")
            controller.open()
            await wait_for(lambda: "is back" in caplog.text, 10, "the controller back")

            def knob_end() -> None:
                controller.send(mido.Message("control_change", channel=0, control=19, value=127))

            async def blue() -> bool:
                return weight(await last_prompts(proc.url), "blue ice cave") == 1.0

            await wait_async(blue, 20, "the knob after the replug", poke=knob_end)

            # 3. An OSC flood with malformed packets; the show still answers a good message afterwards.
            rng = random.Random(7)
            good = OscMessageBuilder("/show/solo").build().dgram
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
                for i in range(10_000):
                    if i % 2:
                        packet = bytes(rng.getrandbits(8) for _ in range(rng.randint(1, 64)))
                    else:
                        packet = good[: rng.randint(1, len(good) - 1)]
                    sock.sendto(packet, ("127.0.0.1", osc_port))
                    if i % 500 == 0:
                        await asyncio.sleep(0)  # let the bridge read: a flood, not a denial of the test's own loop

                def solo() -> None:
                    sock.sendto(good, ("127.0.0.1", osc_port))

                async def forest() -> bool:
                    return weight(await last_prompts(proc.url), "green forest in the rain") == 1.0

                await wait_async(forest, 20, "a good OSC message after the flood", poke=solo)
            assert not bridge.done()

            # 4. The profile is broken while running, then fixed.
            text = profile.read_text(encoding="utf-8")
            profile.write_text(text.replace("target: prompt.mix", "target: prompt.mixx"), encoding="utf-8")
            await wait_for(lambda: "profile edit not applied" in caplog.text, 10, "the broken edit reported")
            profile.write_text(text.replace("green forest in the rain", "golden forest at noon"), encoding="utf-8")

            async def golden() -> bool:
                return weight(await last_prompts(proc.url), "golden forest at noon") == 1.0

            await wait_async(golden, 20, "the fixed profile applied")
            assert not bridge.done()
        finally:
            bridge.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await bridge
    finally:
        player.close()
        controller.close()
        os.environ.pop("MIDO_BACKEND", None)

    # The camera never stopped: every tick is in the recording, whatever Scope did; a gap is only where the
    # clock itself said it missed ticks (the machine, not Scope), and the file holds the picture over it.
    with av.open(str(record)) as container:
        stream = container.streams.video[0]
        times = [float(f.pts * f.time_base) for f in container.decode(stream)]
    gaps = [b - a for a, b in zip(times, times[1:], strict=False)]
    # The ticks the camera clock missed because this computer stalled (the test's own JACK MIDI port going away
    # blocks the process for a moment on a loaded machine): the recording holds the last picture over them, so
    # they are the only gaps the file may have. The clock says how many when it closes.
    skipped = int(re.findall(r"video out closed: .* (\d+) ticks missed", caplog.text)[-1])
    missing = sum(round(gap * FPS) - 1 for gap in gaps)
    assert missing <= skipped, (missing, skipped, max(gaps))
    if skipped == 0:
        assert max(gaps) < 1.5 / FPS, max(gaps)
    assert len(times) + skipped >= 0.95 * (times[-1] - times[0]) * FPS
    print(f"\nreconnect after the emulator was healthy: median {sorted(reconnects)[len(reconnects) // 2]:.2f} s, "
          f"max {max(reconnects):.2f} s over {len(reconnects)} restarts; {len(times)} camera frames, largest gap "
          f"{max(gaps) * 1000:.0f} ms")
    # Within 2 s of the emulator answering again (the figure): the median, and nearly every restart. Now and
    # then a WebRTC negotiation right after a restart stalls until the session's 15 s connect timeout and the next
    # attempt succeeds; that bounds the slowest rejoin.
    assert sorted(reconnects)[len(reconnects) // 2] <= 2.0, reconnects
    assert sum(r <= 2.0 for r in reconnects) >= len(reconnects) - 2, reconnects
    assert max(reconnects) <= 20.0, reconnects
