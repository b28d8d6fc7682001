"""AbletonOSC listen requests: which ones a profile needs (pure), and that they reach AbletonOSC's port (real UDP)."""

from __future__ import annotations

import asyncio
import socket

from pythonosc.osc_message import OscMessage

from metadj_bridge.inputs.ableton_osc import (
    SONG_REQUESTS,
    AbletonListenRequests,
    listen_requests,
)
from metadj_bridge.profile.model import (
    Envelope,
    Mapping,
    ProfileSwitch,
    PromptSpec,
    ShowProfile,
    SignalSource,
    Target,
    Theme,
    TriggerSource,
)


def profile() -> ShowProfile:
    return ShowProfile(
        path="/shows/live.yaml",
        name="live",
        themes=(Theme("a", (PromptSpec("a"),)),),
        mappings=(
            Mapping("slot", SignalSource("osc./live/track/get/playing_slot_index/1"), target=Target("theme", "select")),
            Mapping("vol", SignalSource("osc./live/track/get/volume/3"), target=Target("parameter", "noise_scale")),
            Mapping("vol_again", SignalSource("osc./live/track/get/volume/3"), target=Target("parameter", "base_seed")),
            Mapping("clip", TriggerSource("osc./live/clip/get/playing_status/2/5"), target=Target("theme", "next")),
            Mapping("hit", Envelope("osc./live/clip/get/is_playing/4/1"), target=Target("parameter", "noise_scale")),
            Mapping("knob", SignalSource("midi.cc.1.19"), target=Target("prompt_mix", "mix", (0, 1))),
        ),
        switches=(ProfileSwitch("osc./live/track/get/fired_slot_index/8", "/shows/other.yaml"),),
    )


def test_the_profile_decides_what_abletonosc_is_asked_for() -> None:
    assert listen_requests(profile().names_read()) == [
        *SONG_REQUESTS,
        ("/live/track/start_listen/playing_slot_index", (1,)),
        ("/live/track/start_listen/volume", (3,)),
        ("/live/clip/start_listen/playing_status", (2, 5)),
        ("/live/clip/start_listen/is_playing", (4, 1)),
        ("/live/track/start_listen/fired_slot_index", (8,)),
    ]


async def test_requests_reach_abletonosc_at_start_and_again_on_demand() -> None:
    live = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)  # AbletonOSC's listening socket stand-in
    live.bind(("127.0.0.1", 0))
    live.setblocking(False)
    requests = AbletonListenRequests(listen_requests(profile().names_read()), port=live.getsockname()[1], refresh=60.0)
    loop = asyncio.get_running_loop()

    async def receive(n: int) -> list[tuple[str, list[object]]]:
        out = []
        for _ in range(n):
            data = await asyncio.wait_for(loop.sock_recv(live, 4096), 5.0)
            message = OscMessage(data)
            out.append((message.address, list(message.params)))
        return out

    try:
        await requests.start()
        first = await receive(8)
        assert first[0] == ("/live/song/start_listen/tempo", [])
        assert ("/live/clip/start_listen/playing_status", [2, 5]) in first
        requests.again()  # /live/startup: AbletonOSC was reloaded
        assert await receive(8) == first
    finally:
        await requests.aclose()
        live.close()
