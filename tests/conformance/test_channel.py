"""Data-channel parameter messages on Scope (scope-api.md §6, §12-13): a message applies with the next chunk,
the 8-message queue drops the newest under a flood, a weight-free pipeline waiting for input takes a message
every 10 ms, and a text-mode pipeline ignores ``noise_scale``.

controller-viz shows what it applied: it draws the W key (the "up" square at column 1, row 0 of the key grid in
the lower left, 30 px keys 5 px apart with a 20 px margin) filled when ``ctrl_input.button`` holds ``KeyW``.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import numpy as np

from tests.conformance.conftest import first_gpu_pipeline, require
from tests.conformance.peer import Peer, ensure_loaded, log_lines, mean_rgb, session

SIZE = 256
VIZ_SIZE = {"height": SIZE, "width": SIZE}
#: The inside of the W key's square: x 55-85, y 171-201 for a 256 x 256 picture.
W_KEY = (60, SIZE - 85 + 5, 80, SIZE - 85 + 25)
QUEUE_FULL = "Parameter queue full"
PRESS = {"ctrl_input": {"button": ["KeyW"], "mouse": [0, 0]}}
RELEASE = {"ctrl_input": {"button": [], "mouse": [0, 0]}}
SHORT_PRESS = {"ctrl_input": {"button": ["KeyW"]}}
SHORT_RELEASE = {"ctrl_input": {"button": []}}


def _w_pressed(peer: Peer) -> bool:
    assert peer.received.latest is not None
    return bool(mean_rgb(peer.received.latest, W_KEY).mean() > 150)


async def _until(peer: Peer, pressed: bool, within: float) -> bool:
    """True once the W key shows ``pressed``; False if it did not within ``within`` seconds."""
    deadline = time.monotonic() + within
    while _w_pressed(peer) is not pressed:
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.02)
    return True


async def _dropped_while(url: str, action: Any, settle: float = 0.5) -> int:
    """How many 'Parameter queue full' lines the server logs while ``action()`` runs (and ``settle`` s after)."""
    _, offset = await log_lines(url)
    await action()
    await asyncio.sleep(settle)
    lines, _ = await log_lines(url, offset)
    return sum(QUEUE_FULL in line for line in lines)


async def test_a_ctrl_input_message_is_drawn_by_controller_viz(scope_url: str, offered: dict[str, Any]) -> None:
    require(offered, "controller-viz")
    await ensure_loaded(scope_url, "controller-viz", VIZ_SIZE)
    async with session(scope_url, "controller-viz", "text") as peer:
        await peer.wait_frames(3, within=10)
        assert not _w_pressed(peer), "no key is pressed before any ctrl_input"
        peer.send(PRESS)
        assert await _until(peer, True, within=3), "the W key was not drawn pressed within 3 s"
        peer.send(RELEASE)
        assert await _until(peer, False, within=3), "the W key was not drawn released within 3 s"


async def test_a_flood_overflows_the_queue_of_8_and_a_full_queue_drops_the_newest(
    scope_url: str, offered: dict[str, Any]
) -> None:
    """A full queue refuses new arrivals (it neither blocks, grows, nor drops the oldest).

    controller-viz takes a message per frame, in a thread that runs alongside the data channel, so whether the
    queue is still full when the flood's last message arrives depends on scheduling: on a loaded CPU a real Scope
    lost it in about 3 floods of 4. Up to 6 floods are tried; a server that keeps the newest every time fails.
    """
    require(offered, "controller-viz")
    await ensure_loaded(scope_url, "controller-viz", VIZ_SIZE)
    async with session(scope_url, "controller-viz", "text") as peer:
        await peer.wait_frames(3, within=10)

        async def flood() -> None:
            # Small messages, all within one SCTP congestion window, so that they reach Scope in one burst.
            for _ in range(39):
                peer.send(SHORT_RELEASE)
            peer.send(SHORT_PRESS)  # the newest

        dropped, lost = 0, False
        for _ in range(6):
            dropped += await _dropped_while(scope_url, flood, settle=0.3)
            if not await _until(peer, True, within=1.5):
                lost = True
                break
            peer.send(RELEASE)
            assert await _until(peer, False, within=3), "the W key was not drawn released within 3 s"
        assert dropped >= 10, f"only {dropped} flooded messages were dropped"
        assert lost, "the newest message of 6 floods was applied every time: a full queue must drop new arrivals"
        peer.send(PRESS)  # the same message alone is applied: the flood lost it, not the picture
        assert await _until(peer, True, within=3), "a lone W press was not drawn within 3 s"


async def test_a_pipeline_waiting_for_input_takes_a_message_every_10_ms(
    scope_url: str, offered: dict[str, Any]
) -> None:
    require(offered, "passthrough")
    await ensure_loaded(scope_url, "passthrough")
    async with session(scope_url, "passthrough", "video") as peer:  # no input track: it waits for ever

        async def spaced() -> None:
            for i in range(40):
                peer.send({"conformance_probe": i})
                await asyncio.sleep(0.025)

        async def flood() -> None:
            for i in range(40):
                peer.send({"conformance_probe": i})

        assert await _dropped_while(scope_url, spaced) == 0, "40 messages 25 ms apart overflowed the queue"
        dropped = await _dropped_while(scope_url, flood)
    assert 16 <= dropped <= 32, f"{dropped} of 40 flooded messages dropped: the queue holds 8"


async def test_noise_scale_changes_nothing_in_text_mode(scope_url: str, offered: dict[str, Any]) -> None:
    """noise_scale and noise_controller are video-mode keys: a text-mode picture does not react to them."""
    require(offered, "controller-viz")
    await ensure_loaded(scope_url, "controller-viz", VIZ_SIZE)
    async with session(scope_url, "controller-viz", "text") as peer:
        await peer.wait_frames(3, within=10)
        await asyncio.sleep(0.5)
        assert peer.received.latest is not None
        before = peer.received.latest.astype(np.int16)
        for value in (1.0, 0.0):
            peer.send({"noise_scale": value, "noise_controller": False})
            await asyncio.sleep(0.5)
            count = len(peer.received.times)
            await asyncio.sleep(0.5)
            assert len(peer.received.times) > count, "frames stopped after a noise_scale message"
            # Below the top 32 rows: the emulator stamps each frame's chunk and parameters there (any far end may).
            diff = float(np.abs(peer.received.latest.astype(np.int16) - before)[32:].mean())
            assert diff < 4, f"noise_scale {value} changed the text-mode picture (mean difference {diff:.1f})"


async def test_a_flood_on_a_chunked_gpu_pipeline_drops_all_but_about_8(
    scope_url: str, offered: dict[str, Any]
) -> None:
    pipeline_id = first_gpu_pipeline(offered, "text")
    await ensure_loaded(scope_url, pipeline_id, {"height": 320, "width": 576, "vace_enabled": False})
    async with session(scope_url, pipeline_id, "text") as peer:
        await peer.wait_frames(3, within=60)

        async def flood() -> None:
            for i in range(30):
                peer.send({"base_seed": 42 + i})

        dropped = await _dropped_while(scope_url, flood)
    assert 18 <= dropped <= 22, f"{dropped} of 30 dropped; one message per chunk leaves room for only ~8-9"


async def test_paused_freezes_the_picture_and_a_change_made_while_paused_shows_after_resume(
    scope_url: str, offered: dict[str, Any]
) -> None:
    """While paused the track re-sends the last frame (frames keep coming); the pipeline draws nothing new."""
    require(offered, "controller-viz")
    await ensure_loaded(scope_url, "controller-viz", VIZ_SIZE)
    async with session(scope_url, "controller-viz", "text") as peer:
        await peer.wait_frames(3, within=10)
        peer.send({"paused": True})
        await asyncio.sleep(0.3)
        assert await peer.frames_during(1.0) >= 10, "the last frame is re-sent while paused"
        peer.send(PRESS)
        assert not await _until(peer, True, within=1.5), "a paused pipeline drew the W key"
        peer.send({"paused": False})
        assert await _until(peer, True, within=3), "the W key sent while paused was not drawn within 3 s of resuming"
        assert await peer.frames_during(0.5) >= 5


async def test_a_rest_pause_reaches_every_session_and_is_logged_in_scopes_words(
    scope_url: str, offered: dict[str, Any]
) -> None:
    """``POST /api/v1/session/parameters {"paused": true}`` (another tool, an MCP client) pauses the bridge's session
    too, and says so only in Scope's log ("Video track paused"): the bridge reads that line to notice."""
    import httpx

    require(offered, "controller-viz")
    await ensure_loaded(scope_url, "controller-viz", VIZ_SIZE)
    async with session(scope_url, "controller-viz", "text") as peer, httpx.AsyncClient(timeout=10) as http:
        await peer.wait_frames(3, within=10)
        _, offset = await log_lines(scope_url)
        answer = await http.post(scope_url + "/api/v1/session/parameters", json={"paused": True})
        assert answer.status_code == 200 and answer.json()["applied_parameters"]["paused"] is True, answer.text
        await asyncio.sleep(0.3)
        peer.send(PRESS)
        assert not await _until(peer, True, within=1.5), "a session paused over REST drew the W key"
        lines, offset = await log_lines(scope_url, offset)
        assert any("Video track paused" in line for line in lines), lines[-5:]
        peer.send({"paused": False})
        assert await _until(peer, True, within=3), "the W key was not drawn within 3 s of the client's resume"
        lines, _ = await log_lines(scope_url, offset)
        assert any("Video track resumed" in line for line in lines), lines[-5:]
