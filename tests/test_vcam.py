"""The virtual webcam: pyvirtualcam's real Camera with the capture backend, fed by the output clock from a real
WebRTC session with the emulator; the advice without a camera backend; a real v4l2loopback device where one exists."""

from __future__ import annotations

import hashlib
import logging
import platform
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import av
import numpy as np
import pytest

from metadj_bridge.emulator import ScopeEmulator
from metadj_bridge.errors import VideoOutputError
from metadj_bridge.profile import load_profile
from metadj_bridge.scope.sender import PacerConfig, ParameterSender
from metadj_bridge.scope.session import Backoff, ScopeSession, SessionConfig
from metadj_bridge.video.capture import CaptureBackend, register_capture_backend
from metadj_bridge.video.clock import OutputClock
from metadj_bridge.video.convert import FrameFitter, i420_planes
from metadj_bridge.video.outputs import FallbackSink
from metadj_bridge.video.preview import PreviewSink
from metadj_bridge.video.slate import (
    RECONNECTING,
    STOPPED,
    WAITING,
    reason_from_session,
    slate_i420,
)
from metadj_bridge.video.vcam import LINUX_HINT, VirtualCameraSink, backend_hint
from tests.conftest import SMALL
from tests.helpers import wait_for

W, H = 320, 180  # the camera: larger than the emulator's 256x144, so every frame is scaled
MODPROBE = "sudo modprobe v4l2loopback devices=1 exclusive_caps=1 card_label=MetaDJ"


@pytest.fixture(scope="module", autouse=True)
def capture_backend() -> type[CaptureBackend]:
    return register_capture_backend("capture", keep_pixels=2000)


def make_session(url: str) -> ScopeSession:
    config = SessionConfig(
        url=url, pipeline_ids=["longlive"], load_params=dict(SMALL), prompts="neon rain over a dancefloor",
        ice_servers=[], backoff=Backoff(base=0.2, cap=1.0), no_frame_timeout=3.0, load_timeout=20.0,
    )
    return ScopeSession(config, ParameterSender(pacer=PacerConfig(chunk_frames=4)))


def digest(data: np.ndarray | None) -> bytes:
    if data is None:
        return b""
    return hashlib.blake2b(np.ascontiguousarray(data).tobytes(), digest_size=16).digest()


class Pushed:
    """The frames the session decoded, in order, and what each one looks like fitted into the camera size."""

    def __init__(self) -> None:
        self.frames: list[av.VideoFrame] = []

    def listener(self, push: Callable[[av.VideoFrame], None]) -> Callable[[av.VideoFrame], None]:
        def on_frame(frame: av.VideoFrame) -> None:
            self.frames.append(frame)
            push(frame)

        return on_frame

    def index_by_picture(self) -> dict[bytes, int]:
        fitter = FrameFitter(W, H)
        found: dict[bytes, int] = {}
        for i, frame in enumerate(self.frames):
            found.setdefault(digest(fitter.fit(frame)), i)
        return found


def classify(camera: CaptureBackend, pushed: Pushed) -> list[tuple[str, Any]]:
    """Each camera frame as ("live", pushed index), ("slate", text) or ("unknown", None)."""
    slates = {digest(slate_i420(text, W, H)): text for text in (WAITING, RECONNECTING, STOPPED)}
    pictures = pushed.index_by_picture()
    out: list[tuple[str, Any]] = []
    for record in camera.frames():
        assert record.data is not None
        key = digest(record.data)
        if key in slates:
            out.append(("slate", slates[key]))
        elif key in pictures:
            out.append(("live", pictures[key]))
        else:
            out.append(("unknown", None))
    return out


async def test_emulator_frames_reach_the_camera_in_order_at_the_set_rate(emulator: ScopeEmulator) -> None:
    sink = VirtualCameraSink(device="cam-order", backend="capture")
    clock = OutputClock(W, H, 25, [sink], slate_after=2.0)
    session = make_session(emulator.url)
    pushed = Pushed()
    session.add_frame_listener(pushed.listener(clock.push))
    await clock.start()
    camera = CaptureBackend.named("cam-order")
    assert sink.pixel_format == "I420" and (camera.width, camera.height, camera.fps) == (W, H, 25)
    await session.start()
    try:
        await wait_for(lambda: len(pushed.frames) >= 30, 20, "30 frames from the emulator")
    finally:
        await clock.aclose()
        await session.aclose()
    seen = classify(camera, pushed)
    assert [r.index for r in camera.frames()] == list(range(len(seen)))
    assert len(seen) == clock.stats().frames_shown  # every tick reached the camera
    assert ("unknown", None) not in seen
    first_live = next(i for i, (kind, _) in enumerate(seen) if kind == "live")
    assert set(seen[:first_live]) <= {("slate", WAITING)}
    shown = [ref for kind, ref in seen[first_live:] if kind == "live"]
    assert shown == sorted(shown)  # order kept; a frame is repeated until the next one arrives
    distinct = sorted(set(shown))
    assert len(distinct) == clock.stats().live
    # the camera runs faster than the emulator's 20 fps, so nearly every frame is shown (two frames decoded
    # within one tick show only the newer one)
    assert len(distinct) >= 0.5 * (distinct[-1] - distinct[0] + 1)
    assert clock.stats().frames_in == len(pushed.frames)


async def test_camera_keeps_ticking_through_a_stop_and_shows_the_slate(emulator: ScopeEmulator) -> None:
    sink = VirtualCameraSink(device="cam-stop", backend="capture")
    session = make_session(emulator.url)
    clock = OutputClock(W, H, 20, [sink], slate_after=0.4, reason=reason_from_session(session))
    pushed = Pushed()
    session.add_frame_listener(pushed.listener(clock.push))
    await clock.start()
    camera = CaptureBackend.named("cam-stop")
    await session.start()
    try:
        await wait_for(lambda: len(pushed.frames) >= 10, 20, "frames from the emulator")
        await emulator.apply_faults({"stop_video": True})
        stopped_at = len(pushed.frames)
        await wait_for(lambda: camera.frames_sent > 0 and digest(camera.frames()[-1].data) == digest(
            slate_i420(STOPPED, W, H)), 10, "the slate")
        await emulator.apply_faults({"stop_video": False})
        await wait_for(lambda: len(pushed.frames) >= stopped_at + 10, 10, "frames again")
    finally:
        await clock.aclose()
        await session.aclose()
    seen = classify(camera, pushed)
    assert [r.index for r in camera.frames()] == list(range(len(seen)))  # no tick missing
    assert ("unknown", None) not in seen
    kinds = [kind for kind, _ in seen]
    first_live = kinds.index("live")
    body = "".join("L" if kind == "live" else "S" for kind in kinds[first_live:])
    # live (with repeats of the same picture) -> the slate -> live again
    assert re.fullmatch("L+S+L+", body), body
    gap_start = body.index("LS") + first_live
    last_before = seen[gap_start][1]
    repeats = 0
    for kind, ref in reversed(seen[:gap_start + 1]):
        if (kind, ref) != ("live", last_before):
            break
        repeats += 1
    assert repeats >= 2  # the last picture held before the slate
    slate_texts = {ref for kind, ref in seen[gap_start + 1:] if kind == "slate"}
    assert STOPPED in slate_texts
    after = [ref for kind, ref in seen[gap_start + 1:] if kind == "live"]
    assert after and min(after) > last_before


async def test_a_scope_restart_shows_reconnecting(emulator: ScopeEmulator) -> None:
    sink = VirtualCameraSink(device="cam-restart", backend="capture")
    session = make_session(emulator.url)
    clock = OutputClock(W, H, 30, [sink], slate_after=0.1, reason=reason_from_session(session))
    pushed = Pushed()
    session.add_frame_listener(pushed.listener(clock.push))
    await clock.start()
    camera = CaptureBackend.named("cam-restart")
    await session.start()
    try:
        await wait_for(lambda: len(pushed.frames) >= 5, 20, "frames from the emulator")
        await emulator.apply_faults({"restart": True})
        reconnecting = digest(slate_i420(RECONNECTING, W, H))
        await wait_for(lambda: any(r.data is not None and digest(r.data) == reconnecting for r in camera.frames()),
                       10, "the reconnecting slate")
        count = len(pushed.frames)
        await wait_for(lambda: len(pushed.frames) >= count + 5, 20, "frames from the new session")
        await wait_for(lambda: clock.stats().live > 0 and digest(camera.frames()[-1].data) != reconnecting, 5, "live")
    finally:
        await clock.aclose()
        await session.aclose()
    assert [r.index for r in camera.frames()] == list(range(camera.frames_sent))
    assert session.sessions_started >= 2


@pytest.mark.parametrize(("fmt", "fourcc"), [("NV12", "NV12"), ("RGB", "raw "), ("I420", "I420")])
async def test_pixel_formats_reach_the_device(fmt: str, fourcc: str) -> None:
    device = f"cam-{fmt}"
    sink = VirtualCameraSink(device=device, backend="capture", fmt=fmt)
    clock = OutputClock(64, 36, 50, [sink], slate_after=10)
    await clock.start()
    try:
        frame = av.VideoFrame(64, 36, "yuv420p")
        for plane, value in zip(frame.planes, (150, 90, 170), strict=True):
            plane.update(bytes([value]) * plane.buffer_size)
        clock.push(frame)
        await wait_for(lambda: clock.stats().live == 1 and clock.stats().frames_shown > clock.stats().slates + 1, 5,
                       "the frame shown")
    finally:
        await clock.aclose()
    camera = CaptureBackend.named(device)
    assert sink.pixel_format == fmt and camera.format == fourcc
    last = camera.frames()[-1].data
    assert last is not None
    if fmt == "RGB":
        assert last.size == 64 * 36 * 3
        rgb = last.reshape(36, 64, 3).astype(float).mean(axis=(0, 1))
        luma, cb, cr = 1.164 * (150 - 16), 90 - 128, 170 - 128  # BT.601, limited range
        expected = (luma + 1.596 * cr, luma - 0.392 * cb - 0.813 * cr, luma + 2.017 * cb)
        assert np.allclose(rgb, expected, atol=4), (rgb, expected)
    else:
        y, u, v = camera.i420_planes(last)
        assert (y == 150).all() and (u == 90).all() and (v == 170).all()
    assert camera.closed


def test_an_auto_camera_prefers_i420_and_a_busy_device_is_refused() -> None:
    sink = VirtualCameraSink(device="cam-busy", backend="capture")
    sink.open(64, 36, 30)
    try:
        assert sink.pixel_format == "I420"
        with pytest.raises(VideoOutputError, match="already in use") as info:
            VirtualCameraSink(device="cam-busy", backend="capture").open(64, 36, 30)
        assert "cam-busy" in str(info.value)
    finally:
        sink.close()
        sink.close()
    again = VirtualCameraSink(device="cam-busy", backend="capture")
    again.open(64, 36, 30)  # free again once closed
    again.close()


def test_a_device_name_with_control_characters_never_reaches_the_log_raw(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A profile's video.device holding a NUL, a terminal escape and a line break (YAML's double-quoted escapes) is
    logged escaped, in one line, whether the camera opens (the capture backend echoes the device) or not."""
    profile = tmp_path / "show.yaml"
    profile.write_text('video: {outputs: vcam, device: "cam\\0one\\e[31m\\nX"}\nthemes: {a: {prompts: [red]}}\n',
                       encoding="utf-8")
    device = load_profile(profile).video.device
    assert device == "cam\x00one\x1b[31m\nX"
    escaped = "cam\\x00one\\x1b[31m\\nX"
    caplog.set_level(logging.INFO, logger="metadj_bridge.video")
    sink = VirtualCameraSink(device=device, backend="capture")
    sink.open(64, 36, 30)
    sink.close()
    backends = ["v4l2loopback"] if platform.system() == "Linux" else []  # the NUL makes it fail, device or not
    for backend in backends:
        FallbackSink(VirtualCameraSink(device=device, backend=backend), PreviewSink()).open(64, 36, 30)
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 1 + len(backends), lines
    assert all(escaped in line for line in lines), lines
    assert not [line for line in lines if not line.isprintable()], lines


def test_an_unknown_backend_names_the_available_ones() -> None:
    with pytest.raises(VideoOutputError, match="'nonesuch' is not available here") as info:
        VirtualCameraSink(backend="nonesuch").open(64, 36, 30)
    assert "capture" in str(info.value)


def test_the_advice_for_each_system() -> None:
    assert MODPROBE in backend_hint("Linux")
    assert "OBS Studio 30+" in backend_hint("Darwin") and "Virtual Camera" in backend_hint("Darwin")
    windows = backend_hint("Windows")
    assert "OBS Studio 30+" in windows and "Unity Capture" in windows
    with pytest.raises(ValueError, match="pixel format"):
        VirtualCameraSink(fmt="YUV444")


def v4l2loopback_devices() -> list[str]:
    """/dev/video* nodes made by the v4l2loopback module (virtual devices, unlike a webcam)."""
    if not Path("/sys/module/v4l2loopback").exists():
        return []
    nodes = Path("/sys/devices/virtual/video4linux").glob("video*")
    return sorted(f"/dev/{node.name}" for node in nodes if Path(f"/dev/{node.name}").exists())


NO_LOOPBACK = f"no v4l2loopback device on this machine (create one with `{MODPROBE}`)"


@pytest.mark.skipif(
    platform.system() != "Linux" or bool(v4l2loopback_devices()), reason="a v4l2loopback device exists here"
)
def test_without_a_camera_device_the_error_says_how_to_get_one() -> None:
    with pytest.raises(VideoOutputError) as info:
        VirtualCameraSink(backend=None).open(320, 180, 30)
    assert MODPROBE in str(info.value) and LINUX_HINT in str(info.value)


@pytest.mark.skipif(not v4l2loopback_devices(), reason=NO_LOOPBACK)
async def test_a_real_v4l2loopback_device_shows_the_frames() -> None:
    device = v4l2loopback_devices()[0]
    sink = VirtualCameraSink(device=device, backend="v4l2loopback")
    clock = OutputClock(W, H, 30, [sink], slate_after=10)
    await clock.start()
    try:
        frame = av.VideoFrame(W, H, "yuv420p")
        for plane, value in zip(frame.planes, (140, 128, 128), strict=True):
            plane.update(bytes([value]) * plane.buffer_size)
        clock.push(frame)
        await wait_for(lambda: clock.stats().live == 1, 5, "the frame shown")
        with av.open(device, format="video4linux2") as container:
            got = next(container.decode(video=0))
        y = i420_planes(got.reformat(format="yuv420p").to_ndarray(), W, H)[0]
        assert abs(int(np.median(y)) - 140) <= 2
    finally:
        await clock.aclose()
