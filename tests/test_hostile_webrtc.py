"""A Scope server (or something pretending to be one) that misbehaves over WebRTC itself: on the data channel, in its
video, in a valid HTTP answer whose SDP the bridge cannot use. The far end is the project's emulator over real aiortc
with its test-only :class:`~metadj_bridge.emulator.hostile.HostileMedia`, or the emulator behind
:class:`tests.hostile_http.HostileServer` rewriting its SDP answer. Each case must end in one sentence in the
project's own words, logged rate-limited, and the show must go on: the same session where it can, a new one where
it cannot.
"""

from __future__ import annotations

import asyncio
import io
import json
import logging
import re
import struct
import subprocess
import sys
from collections.abc import Awaitable, Callable
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import numpy as np
import pytest
from aiortc import RTCDataChannel
from aiortc.rtcsctptransport import DATA_CHANNEL_OPEN, WEBRTC_DCEP, WEBRTC_STRING
from PIL import Image

from metadj_bridge.emulator import ScopeEmulator
from metadj_bridge.emulator.hostile import HostileMedia
from metadj_bridge.errors import LibraryLogLimiter
from metadj_bridge.scope.peer_guard import UndecodedVideo
from metadj_bridge.scope.session import SessionState
from metadj_bridge.video.capture import CaptureBackend, register_capture_backend
from metadj_bridge.video.clock import OutputClock
from metadj_bridge.video.preview import PreviewSink
from metadj_bridge.video.record import RecordingSink
from metadj_bridge.video.vcam import VirtualCameraSink
from tests.conftest import emulator_get
from tests.helpers import wait_for
from tests.hostile_http import HostileServer
from tests.test_hostile_scope import make_session, waits

MakeEmulator = Callable[..., Any]
MakeHostile = Callable[..., Awaitable[HostileServer]]




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


async def test_a_peer_connection_that_never_closes_does_not_hold_the_emulator_open(
    make_emulator: MakeEmulator, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """aiortc's close of a peer connection can wait on a transport that never answers; the emulator's shutdown
    (the bundled default's, a test's teardown) waits CLOSE_TIMEOUT_S for it, says so, and goes on. No peer can make
    aiortc's close hang on demand, so that close (the library's, not ours) is the one thing replaced here: by one
    that never returns."""
    from metadj_bridge.emulator.session import CLOSE_TIMEOUT_S

    emulator: ScopeEmulator = await make_emulator()
    states: list[tuple[SessionState, str]] = []
    session = make_session(emulator.url, states)
    await session.start()
    real_close: Callable[[], Awaitable[None]] | None = None
    try:
        await session.wait_streaming(timeout=30)
        hung = asyncio.Event()

        async def never_closes() -> None:
            hung.set()
            await asyncio.Event().wait()

        (peer,) = emulator._sessions.values()
        real_close = peer.pc.close
        monkeypatch.setattr(peer.pc, "close", never_closes)
        with caplog.at_level(logging.WARNING):
            await asyncio.wait_for(emulator.aclose(), CLOSE_TIMEOUT_S + 10)
        assert hung.is_set()
        assert any(f"did not close within {CLOSE_TIMEOUT_S:g} s" in r.getMessage() for r in caplog.records)
    finally:
        await session.aclose()
        if real_close is not None:
            await asyncio.wait_for(real_close(), 10)  # the peer the emulator left, closed for this process's sake


async def _scope_has(url: str, key: str, value: Any) -> bool:
    answer = await emulator_get(url, "/api/v1/session/parameters")
    return bool(answer["parameters"].get(key) == value)


# ---------------------------------------------------------------------------------------------- the SDP answer


def _without_video(sdp: str) -> str:
    sections = re.split(r"(?m)^(?=m=)", sdp)
    return "".join(s for s in sections if not s.startswith("m=video")).replace("BUNDLE 0 1", "BUNDLE 1")


#: case -> (what the answer's SDP becomes, what the reason to try again says).
SDP_ANSWERS: dict[str, tuple[Callable[[str], str], str]] = {
    "no video m-line": (_without_video, "SDP answer that cannot be used (ValueError: Media sections in answer do "
                                        "not match offer)"),
    "a codec aiortc cannot decode": (lambda sdp: re.sub(r"a=rtpmap:(\d+) (VP8|H264)/90000", r"a=rtpmap:\1 AV1/90000",
                                                        sdp), "SDP answer that cannot be used"),
    "video inactive": (lambda sdp: sdp.replace("a=sendrecv", "a=inactive"),
                       "answered the WebRTC offer with its video inactive (it would send no picture)"),
    "video recvonly": (lambda sdp: sdp.replace("a=sendrecv", "a=recvonly"),
                       "answered the WebRTC offer with its video recvonly (it would send no picture)"),
    "no ICE candidates": (lambda sdp: "".join(line for line in sdp.splitlines(keepends=True)
                                              if not line.startswith("a=candidate")),
                          "WebRTC connection failed (ICE found no route to Scope"),
    "a certificate that is not the fingerprint": (
        lambda sdp: re.sub(r"(?m)^a=fingerprint:sha-256 .*$", "a=fingerprint:sha-256 " + ":".join(["AB"] * 32), sdp),
        "WebRTC connection failed (the DTLS handshake with Scope failed: its certificate does not match"),
}


@pytest.mark.parametrize("case", list(SDP_ANSWERS))
async def test_a_webrtc_answer_that_cannot_work_is_one_sentence_and_the_session_keeps_its_state(
    hostile: MakeHostile, emulator: ScopeEmulator, case: str
) -> None:
    """An answer that sends no video waited for a first frame that could not come ("is pipeline_ids right?"); a
    connection that failed said only "WebRTC connection failed", whichever layer failed."""
    rewrite, sentence = SDP_ANSWERS[case]
    proxy = await hostile("rewrite-sdp", emulator.url)
    proxy.rewrite_sdp = rewrite
    states: list[tuple[SessionState, str]] = []
    session = make_session(proxy.url, states, first_frame_timeout=20.0)
    session.sender.update(base_seed=1234)  # the show's state before the session: it must survive the failures
    await session.start()
    try:
        await wait_for(lambda: len(waits(states)) >= 2, 30, "two failed attempts")
        assert session.supervisor is not None and not session.supervisor.done()
        proxy.mode = "good"
        await session.wait_streaming(timeout=30)
        await wait_for(lambda: _scope_has(emulator.url, "base_seed", 1234), 10, "the state in the new session")
    finally:
        await session.aclose()
    reasons = waits(states)
    assert all(sentence in reason and "\n" not in reason for reason in reasons[:2]), reasons


# ---------------------------------------------------------------------------------------------- the video


@pytest.mark.parametrize("when", ["from the first frame", "mid-show"])
async def test_video_that_arrives_but_never_decodes_is_named_as_broken_and_heals(
    make_emulator: MakeEmulator, when: str
) -> None:
    """Packets that decode into no picture were reported as missing video: "no first video frame ... (is
    pipeline_ids right ...?)" or "no video frame for 3 s", sending the performer to the wrong place."""
    hostile = HostileMedia(garble_video=when == "from the first frame")
    emulator: ScopeEmulator = await make_emulator(fps=30.0, hostile=hostile)
    states: list[tuple[SessionState, str]] = []
    # VP8: libavcodec's H264 decoder conceals some garbled pictures and hands them out as frames.
    session = make_session(emulator.url, states, first_frame_timeout=3.0, prefer_codec="video/VP8")
    await session.start()
    try:
        await session.wait_streaming(timeout=30)
        if when == "mid-show":
            await wait_for(lambda: session.frames_received >= 10, 20, "frames")
            hostile.garble_video = True
        await wait_for(lambda: waits(states), 30, "the session given up")
        hostile.garble_video = False
        frames = session.frames_received
        await wait_for(lambda: session.frames_received >= frames + 10, 30, "pictures from a new session")
    finally:
        await session.aclose()
    lost = waits(states)[0]
    seconds = "no first video frame for 3 s" if when == "from the first frame" else "no video frame for 3 s"
    assert lost.startswith(f"connected, but {seconds}: the "), lost
    assert lost.endswith("video packets Scope sent meanwhile decode into no picture (its video is broken, or in a "
                         "form aiortc cannot decode)"), lost


async def test_video_that_stops_is_missing_not_broken(make_emulator: MakeEmulator) -> None:
    """The packets of the last frame before Scope's video stops wait in aiortc's jitter buffer for a next frame that
    never comes: tens of packets that decode into nothing, then silence. That is video gone missing (the reason a
    real Scope 0.2.4 gives when its pipeline stops), not broken video."""
    noise = np.random.default_rng(7)

    def big(frame: av.VideoFrame, index: int) -> av.VideoFrame:  # noise at Scope's bitrate: tens of packets each
        out = av.VideoFrame.from_ndarray(noise.integers(0, 256, (768, 512), np.uint8), format="yuv420p")
        out.pts, out.time_base = frame.pts, frame.time_base
        return out

    emulator: ScopeEmulator = await make_emulator(hostile=HostileMedia(frames=big))
    states: list[tuple[SessionState, str]] = []
    session = make_session(emulator.url, states)
    await session.start()
    try:
        await wait_for(lambda: session.frames_received >= 10, 30, "frames")
        await emulator.apply_faults({"stop_video": True})
        await wait_for(lambda: waits(states), 30, "the session given up")
    finally:
        await session.aclose()
    assert waits(states)[0] == "connected, but no video frame for 3 s"


def test_packets_count_as_undecoded_only_while_they_keep_coming() -> None:
    undecoded = UndecodedVideo()
    assert undecoded.sample(40, 10.0, 10.0) == 0  # a frame at 10 s: its packets are behind it
    assert undecoded.sample(70, 10.0, 10.5) == 30  # the next frame's packets, and no frame from them yet
    assert undecoded.sample(70, 10.0, 12.4) == 30  # nothing new for 1.9 s: still counted
    assert undecoded.sample(70, 10.0, 12.6) == 0  # nothing new for 2.1 s: the video stopped mid-frame, not broken
    assert undecoded.sample(90, 10.0, 13.0) == 50  # coming again, still no picture
    assert undecoded.sample(95, 13.0, 13.1) == 0  # a frame decoded


#: What a misbehaving server's video does, a few frames each: a reload to a square, HD, a frame of 2x2 and of one
#: pixel, odd sizes, absurd aspect ratios.
SIZES = [(512, 512), (1280, 720), (2, 2), (511, 333), (1, 1), (4000, 2), (2, 4000), (64, 36)]


def hostile_frame(frame: av.VideoFrame, index: int) -> av.VideoFrame:
    width, height = SIZES[index // 6 % len(SIZES)]
    out = frame.reformat(width=width, height=height, format="yuv420p")
    # Timestamps in a strange time base that leap ahead by hours: on the 90 kHz RTP clock they wrap around 2**32
    # and land anywhere, behind the last one too. (Only the RTP clock: aiortc's encoder refuses a pts going back.)
    out.pts, out.time_base = index**3 * 10**6 + index, Fraction(1, 1000)
    return out


async def test_frames_of_any_size_and_timestamp_keep_the_camera_recording_and_preview_at_their_size(
    make_emulator: MakeEmulator, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """What OBS sees when Scope's frames change size mid-stream (down to 1x1, odd, 4000x2) with timestamps that jump
    and go backwards: the camera stays open at its size, every tick, the pictures letterboxed into it; the
    recording and the preview keep that size too, and the session is never rebuilt."""
    register_capture_backend("capture-hostile", keep_pixels=400)
    emulator: ScopeEmulator = await make_emulator(fps=30.0, hostile=HostileMedia(frames=hostile_frame))
    states: list[tuple[SessionState, str]] = []
    session = make_session(emulator.url, states, prefer_codec="video/VP8")  # libx264 refuses odd sizes to encode
    recording, preview = RecordingSink(tmp_path / "show.mkv"), PreviewSink()
    camera_sink = VirtualCameraSink(device="hostile-sizes", backend="capture-hostile")
    clock = OutputClock(320, 180, 25, [camera_sink, recording, preview], slate_after=2.0)
    sizes: set[tuple[int, int]] = set()
    session.add_frame_listener(lambda frame: sizes.add((frame.width, frame.height)))
    session.add_frame_listener(clock.push)
    await clock.start()
    with caplog.at_level(logging.WARNING):
        await session.start()
        try:
            await wait_for(lambda: len(sizes) == len(SIZES), 40, "frames of every size")
            jpeg = await asyncio.to_thread(preview.jpeg)
        finally:
            await session.aclose()
            await clock.aclose()
    assert session.sessions_started == 1 and not waits(states), waits(states)
    camera = CaptureBackend.named("hostile-sizes")
    records = camera.frames()
    assert (camera.width, camera.height) == (320, 180)
    assert [r.index for r in records] == list(range(camera.frames_sent))
    assert all(r.data is None or r.data.size == 320 * 180 * 3 // 2 for r in records)
    assert clock.stats().live >= len(SIZES)
    assert jpeg is not None and Image.open(io.BytesIO(jpeg[1])).size == (320, 180)
    with av.open(str(recording.path)) as container:
        pictures = [(f.width, f.height) for f in container.decode(video=0)]
    assert len(pictures) == recording.stats().written > 0 and set(pictures) == {(320, 180)}
    problems = [r.getMessage() for r in caplog.records if r.name.startswith("metadj_bridge.video")
                and "ticks missed" not in r.getMessage()]
    assert not problems, problems


SMALL_SHOW = """\
name: hostile video test
scope:
  pipeline: longlive
  resolution: [256, 144]
inputs:
  audio: none
themes:
  one:
    prompts: [a red square on black]
"""


async def test_video_that_never_decodes_is_a_few_log_lines_not_one_per_frame(
    make_emulator: MakeEmulator, tmp_path: Path
) -> None:
    """aiortc logs "failed to decode VP8 frame" for every frame it cannot decode, from its decoder thread: a server
    sending video that never decodes wrote about 30 lines a second to the performer's log for the whole show."""
    emulator: ScopeEmulator = await make_emulator(fps=30.0, hostile=HostileMedia(garble_video=True))
    show = tmp_path / "show.yaml"
    show.write_text(SMALL_SHOW)
    proc = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "metadj_bridge", "run", "--profile", str(show), "--scope", emulator.url,
         "--duration", "6", "--output", "none", "--no-audio", "--show-log", "none", "--http-port", "0"],
        capture_output=True, text=True, timeout=120,
    )
    out = proc.stderr + proc.stdout
    assert proc.returncode == 0, out[-2000:]
    frames_sent = (await emulator_get(emulator.url, "/_emulator/metrics"))["frames_sent"]
    assert frames_sent >= 60, frames_sent  # seconds of video went out, and none of it decoded
    failures = [line for line in out.splitlines() if "failed to decode" in line]
    assert 1 <= len(failures) <= 2, failures[:5] + [f"... {len(failures)} in all"]
    assert "more like this in the last 10 s" in failures[-1] or len(failures) == 1
    assert "Traceback" not in out


def test_the_library_limiter_shows_the_first_line_then_one_per_interval_with_the_count() -> None:
    now = [0.0]
    limiter = LibraryLogLimiter(interval=10.0, clock=lambda: now[0])
    lines: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            lines.append(record.getMessage())

    handlers = [Keep(), Keep()]  # the CLI puts one limiter on every handler: each record is decided once
    for handler in handlers:
        handler.addFilter(limiter)
    decoder = logging.getLogger("aiortc.test_limiter")
    ours = logging.getLogger("metadj_bridge.test_limiter")
    for logger in (decoder, ours):
        logger.propagate = False
        logger.setLevel(logging.DEBUG)
        for handler in handlers:
            logger.addHandler(handler)
    try:
        for second in range(25):  # 30 frames a second that fail to decode, for 25 s
            now[0] = float(second)
            for _ in range(30):
                decoder.warning("failed to decode %s frame: %s", "VP8", "Invalid data")
            ours.warning("the bridge's own line %d", second)
            decoder.debug("a packet (-vv)")
    finally:
        for logger in (decoder, ours):
            logger.propagate = True
            logger.setLevel(logging.NOTSET)
            for handler in handlers:
                logger.removeHandler(handler)
    failures = [line for line in lines if "failed to decode" in line]
    held = "failed to decode VP8 frame: Invalid data (299 more like this in the last 10 s)"
    assert failures == 2 * ["failed to decode VP8 frame: Invalid data"] + 4 * [held]  # at 0, 10 and 20 s, twice each
    assert len([line for line in lines if "own line" in line]) == 2 * 25
    assert len([line for line in lines if "a packet" in line]) == 2 * 25
