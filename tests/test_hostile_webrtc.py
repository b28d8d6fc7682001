"""A Scope server (or something pretending to be one) that misbehaves over WebRTC itself: on the data channel, in its
video, in a valid HTTP answer whose SDP the bridge cannot use. The far end is the project's emulator over real aiortc
with its test-only :class:`~metadj_bridge.emulator.hostile.HostileMedia`, or the emulator behind
:class:`tests.hostile_http.HostileServer` rewriting its SDP answer. Each case must end in one sentence in the
project's own words, logged rate-limited, and the show must go on: the same session where it can, a new one where
it cannot.
"""

from __future__ import annotations

import asyncio
import json
import logging
import struct
from collections.abc import Callable
from typing import Any

import pytest
from aiortc import RTCDataChannel
from aiortc.rtcsctptransport import DATA_CHANNEL_OPEN, WEBRTC_DCEP, WEBRTC_STRING

from metadj_bridge.emulator import ScopeEmulator
from metadj_bridge.emulator.hostile import HostileMedia
from metadj_bridge.scope.reconnect import Backoff
from metadj_bridge.scope.sender import PacerConfig, ParameterSender
from metadj_bridge.scope.session import ScopeSession, SessionConfig, SessionState
from tests.conftest import SMALL, emulator_get
from tests.helpers import wait_for

MakeEmulator = Callable[..., Any]


def make_session(url: str, states: list[tuple[SessionState, str]], **overrides: Any) -> ScopeSession:
    fields: dict[str, Any] = {
        "url": url, "pipeline_ids": ["longlive"], "load_params": dict(SMALL), "prompts": "neon rain",
        "ice_servers": [], "backoff": Backoff(base=0.2, cap=1.0), "no_frame_timeout": 3.0, "load_timeout": 20.0,
        "http_deadline": 1.5, "health_interval": 0.5,
    }
    fields.update(overrides)
    sender = ParameterSender(pacer=PacerConfig(chunk_frames=4))
    return ScopeSession(SessionConfig(**fields), sender, on_state=lambda s, d: states.append((s, d)))


def waits(states: list[tuple[SessionState, str]]) -> list[str]:
    return [detail for state, detail in states if state is SessionState.RECONNECTING]


def send_raw(channel: RTCDataChannel, pp_id: int, data: bytes) -> None:
    """What aiortc's own ``send`` never writes: these bytes under this payload protocol, on ``channel``'s stream."""
    transport = channel.transport
    transport._data_channel_queue.append((channel, pp_id, data))
    asyncio.ensure_future(transport._data_channel_flush())


# ---------------------------------------------------------------------------------------------- the data channel


async def test_data_channel_messages_from_scope_cannot_end_the_session(
    make_emulator: MakeEmulator, caplog: pytest.LogCaptureFixture
) -> None:
    """A text message that is not UTF-8, or a second OPEN of the channel, raised inside aiortc's connection reader:
    the DTLS transport ended with an aiortc traceback in the log, the video with it, and a new session had to be
    made ("Scope's video track ended"), for every such message."""
    channels: list[RTCDataChannel] = []
    emulator: ScopeEmulator = await make_emulator(hostile=HostileMedia(on_channel=channels.append))
    states: list[tuple[SessionState, str]] = []
    session = make_session(emulator.url, states)
    with caplog.at_level(logging.WARNING):
        await session.start()
        try:
            await session.wait_streaming(timeout=30)
            await wait_for(lambda: session.frames_received >= 5, 20, "frames")
            channel = channels[-1]
            label = channel.label.encode()
            for _ in range(3):
                send_raw(channel, WEBRTC_STRING, b"\xff\xfe{\"type\": \"stream_stopped\"}")
                send_raw(channel, WEBRTC_DCEP, struct.pack("!BBHLHH", DATA_CHANNEL_OPEN, 0, 0, 0, len(label), 0)
                         + label)
            # What a real Scope sends, and what a hostile one might: the bridge reads none of it.
            channel.send(b"\x00\x01binary")
            channel.send("[" * 50_000 + "]" * 50_000)
            channel.send(json.dumps({"type": "parameters_updated", "parameters": {"x": "y" * 200_000}}))
            for _ in range(200):
                channel.send(json.dumps({"type": "stream_stopped", "error_message": "\x1b[2Jgone"}))
                channel.send(json.dumps({"type": "no such type", "n": 1}))
            frames = session.frames_received
            await wait_for(lambda: session.frames_received >= frames + 20, 20, "frames after the messages")
            session.sender.update(base_seed=4242)
            await wait_for(lambda: _scope_has(emulator.url, "base_seed", 4242), 10, "a parameter sent after them")
        finally:
            await session.aclose()
    assert session.sessions_started == 1 and not waits(states), waits(states)
    ours = [r.getMessage() for r in caplog.records if r.name.startswith("metadj_bridge.scope")]
    assert len(ours) == 1, ours  # six bad messages: one line, the rest counted
    assert f"Scope at {emulator.url} sent a data-channel message the bridge cannot read" in ours[0]
    assert "UnicodeDecodeError" in ours[0] and ours[0].endswith("dropped")
    assert not [r for r in caplog.records if r.name.startswith("aiortc")]


async def _scope_has(url: str, key: str, value: Any) -> bool:
    answer = await emulator_get(url, "/api/v1/session/parameters")
    return bool(answer["parameters"].get(key) == value)
