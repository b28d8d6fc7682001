"""NDI out: the output clock's frames, fed by a real WebRTC session with the emulator, reach a real NDI receiver
(cyndilib's Finder and Receiver, in this process) in order and at the camera's rate, and the source goes on through a
Scope restart without the receiver reconnecting. The receiver reads the emulator's stamp from each frame.

Discovery on loopback only: NDI finds sources by mDNS, which needs multicast on a network card. The test writes an
NDI configuration (``NDI_CONFIG_DIR``) that asks 127.0.0.1 directly ("extra IPs", NDI's unicast discovery on port
5960), keeps NDI on the loopback adapter and turns multicast sending off, so nothing leaves this machine.
"""

from __future__ import annotations

import asyncio
import importlib.util
import io
import json
import os
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import numpy as np
import pytest

from metadj_bridge.emulator import ScopeEmulator
from metadj_bridge.emulator.stamp import read_stamp
from metadj_bridge.errors import ConfigError, VideoOutputError
from metadj_bridge.run.bridge import run_bridge
from metadj_bridge.run.plan import RunOptions
from metadj_bridge.scope.sender import PacerConfig, ParameterSender
from metadj_bridge.scope.session import Backoff, ScopeSession, SessionConfig
from metadj_bridge.video.clock import OutputClock
from metadj_bridge.video.ndi import INSTALL_HINT, NdiSink, unavailable_reason
from metadj_bridge.video.outputs import build_sinks, parse_outputs
from metadj_bridge.video.sink import ShownFrame
from metadj_bridge.video.slate import RECONNECTING, STOPPED, WAITING, reason_from_session, slate_i420
from tests.conftest import SMALL
from tests.helpers import wait_for

HAVE_CYNDILIB = importlib.util.find_spec("cyndilib") is not None
NO_CYNDILIB = ("cyndilib is not installed: it has wheels for CPython 3.11-3.14 on Linux x86_64/aarch64 (glibc 2.28+), "
               "macOS 13+ and 64-bit Windows only (pip install 'metadj-bridge[ndi]')")
needs_ndi = pytest.mark.skipif(not HAVE_CYNDILIB, reason=NO_CYNDILIB)
W, H = SMALL["width"], SMALL["height"]  # the camera at Scope's size, so the emulator's stamp stays readable


@pytest.fixture(scope="module")
def ndi_loopback(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """NDI's configuration for this process: discovery and video on 127.0.0.1 only. NDI reads it when its runtime
    starts, so it is in place before the first NDI object of the test run."""
    folder = tmp_path_factory.mktemp("ndi")
    config = {"ndi": {
        "networks": {"ips": "127.0.0.1", "discovery": ""},
        "adapters": {"allowed": ["127.0.0.1"]},
        "multicast": {"send": {"enable": False}, "recv": {"enable": False}},
    }}
    (folder / "ndi-config.v1.json").write_text(json.dumps(config), encoding="utf-8")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("NDI_CONFIG_DIR", str(folder))
        yield folder
    # NDI's Linux runtime leaves an empty marker file per source name in the temp folder; the names here are unique
    # per run, so take ours away rather than let them pile up.
    for name in USED_NAMES:
        Path(tempfile.gettempdir(), f"NTK_SEND_{name}").unlink(missing_ok=True)
        Path(tempfile.gettempdir(), f"NTK_RECV_{name}-receiver").unlink(missing_ok=True)


USED_NAMES: list[str] = []


def unique_name(what: str) -> str:
    """A source name no other test run on this machine uses (they all see each other's sources on 127.0.0.1)."""
    USED_NAMES.append(f"metadj-{what}-{os.getpid()}-{uuid.uuid4().hex[:6]}")
    return USED_NAMES[-1]


@dataclass
class Received:
    """One frame as the NDI receiver got it."""

    stamp: tuple[int, int] | None
    size: tuple[int, int]
    rate: Fraction
    luma: float  # mean Y of the picture: a slate is dark
    picture: np.ndarray | None = None  # the Y plane of a frame without a stamp (a slate), for comparison


@dataclass
class NdiReceiver:
    """A real NDI receiver on a thread of its own: finds ``source`` on loopback, connects and keeps every frame."""

    source: str
    frames: list[Received] = field(default_factory=list)
    connected_samples: list[bool] = field(default_factory=list)
    ndi_stats: dict[str, Any] = field(default_factory=dict)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None
    _receiver: Any = None

    def find_and_connect(self, timeout: float = 20.0) -> None:
        """Blocking: call it with asyncio.to_thread."""
        from cyndilib.finder import Finder
        from cyndilib.receiver import Receiver
        from cyndilib.video_frame import VideoFrameSync
        from cyndilib.wrapper import RecvBandwidth, RecvColorFormat

        finder = Finder()
        finder.open()
        try:
            deadline = time.monotonic() + timeout
            found = None
            while found is None:
                # cyndilib holds the GIL while NDI waits: never a blocking wait, or the event loop stalls meanwhile
                finder.wait_for_sources(0)
                time.sleep(0.05)
                found = next((s for s in finder.iter_sources() if s.stream_name == self.source), None)
                if found is None and time.monotonic() > deadline:
                    raise AssertionError(f"NDI source {self.source!r} not found on loopback; saw "
                                         f"{finder.get_source_names()}")
            receiver = Receiver(color_format=RecvColorFormat.UYVY_BGRA, bandwidth=RecvBandwidth.highest,
                                recv_name=f"{self.source}-receiver")
            # cyndilib gives every receiver an NDI frame-sync, which takes the video frames itself: read through it
            receiver.frame_sync.set_video_frame(VideoFrameSync())
            receiver.connect_to(found)
        finally:
            finder.close()
        self._receiver = receiver
        self._thread = threading.Thread(target=self._run, name="test-ndi-receiver", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        from cyndilib.wrapper.ndi_structs import FourCC

        receiver = self._receiver
        frame = receiver.frame_sync.video_frame
        last = None
        while not self._stop.is_set():
            # The frame-sync hands back the newest frame (again, until another comes): asked every few ms, it
            # shows each frame of a 20-25 fps source once; a new NDI timestamp marks a new frame.
            receiver.frame_sync.capture_video()
            stamp_time = frame.get_timestamp_posix()
            if frame.xres == 0 or stamp_time == last:
                time.sleep(0.003)
                continue
            last = stamp_time
            self.connected_samples.append(bool(receiver.is_connected()))
            width, height = frame.get_resolution()
            data = frame.get_array()
            stride = frame.get_line_stride()
            if frame.get_fourcc() == FourCC.UYVY:
                luma = data[: stride * height].reshape(height, stride)[:, 1 : width * 2 : 2]
            else:  # BGRA
                bgra = data[: stride * height].reshape(height, stride)[:, : width * 4].reshape(height, width, 4)
                luma = bgra[..., 2] * 0.299 + bgra[..., 1] * 0.587 + bgra[..., 0] * 0.114
            corner = np.repeat(np.asarray(luma[:32, :128], np.uint8)[..., None], 3, axis=2)
            stamp = read_stamp(corner)
            picture = None if stamp is not None else np.asarray(luma, np.float32)
            self.frames.append(Received(stamp, (width, height), frame.get_frame_rate(), float(np.mean(luma)),
                                        picture))

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        if self._receiver is not None:
            self._receiver.get_performance_data()
            self.ndi_stats = dict(self._receiver.video_stats)  # NDI's own count of the frames that arrived
            self._receiver.disconnect()


class Tap:
    """A sink beside the NDI one: what the clock showed on each tick (kind and stamp)."""

    name = "tap"

    def __init__(self) -> None:
        self.ticks: list[tuple[int, str, tuple[int, int] | None]] = []

    def open(self, width: int, height: int, fps: float) -> None:
        pass

    def show(self, shown: ShownFrame) -> None:
        y = shown.frame.to_ndarray()[:32, :128]
        self.ticks.append((shown.index, shown.kind, read_stamp(np.repeat(y[..., None], 3, axis=2))))

    def close(self) -> None:
        pass


def make_session(url: str) -> ScopeSession:
    config = SessionConfig(
        url=url, pipeline_ids=["longlive"], load_params=dict(SMALL), prompts="neon rain over a dancefloor",
        ice_servers=[], backoff=Backoff(base=0.2, cap=1.0), no_frame_timeout=3.0, load_timeout=20.0,
    )
    return ScopeSession(config, ParameterSender(pacer=PacerConfig(chunk_frames=4)))


def runs(values: list[Any]) -> list[Any]:
    """``values`` with repeats next to each other folded: [a, a, b, a] -> [a, b, a]."""
    return [v for i, v in enumerate(values) if i == 0 or v != values[i - 1]]


# ------------------------------------------------------------------ without cyndilib too


def test_ndi_words_in_the_output_list() -> None:
    assert parse_outputs("vcam,ndi:Stage Left,ndi:Stage Left") == ("vcam", "ndi:Stage Left")
    for bad, message in (("ndi", "needs a name"), ("ndi:", "needs a name"), ("ndi: ", "needs a name")):
        with pytest.raises(ConfigError, match=message):
            parse_outputs(bad)
    with pytest.raises(ConfigError, match="1-63 printable characters"):
        parse_outputs("ndi:" + "x" * 64)
    with pytest.raises(ConfigError, match="1-63 printable characters"):
        NdiSink("bad\tname")
    assert NdiSink("  MetaDJ  ").name == "ndi:MetaDJ"
    sinks = build_sinks(("ndi:Stage Left",), device=None, backend=None)
    assert isinstance(sinks[0], NdiSink) and sinks[0].name == "ndi:Stage Left"


@pytest.mark.skipif(HAVE_CYNDILIB, reason="cyndilib is installed here: the error for its absence cannot happen")
def test_without_cyndilib_the_error_says_what_to_install() -> None:
    with pytest.raises(VideoOutputError) as info:
        NdiSink("MetaDJ").open(W, H, 30)
    assert INSTALL_HINT in str(info.value)
    assert INSTALL_HINT in (unavailable_reason() or "")


@needs_ndi
def test_with_cyndilib_doctor_has_nothing_to_say(ndi_loopback: Path) -> None:
    assert unavailable_reason() is None  # loads the NDI runtime without starting it: no socket, no announcement


# ------------------------------------------------------------------ a real NDI receiver


@needs_ndi
async def test_emulator_frames_reach_an_ndi_receiver_in_order_at_the_camera_rate(
    ndi_loopback: Path, emulator: ScopeEmulator
) -> None:
    name = unique_name("order")
    sink, tap = NdiSink(name), Tap()
    clock = OutputClock(W, H, 25, [sink, tap], slate_after=3.0)
    session = make_session(emulator.url)
    session.add_frame_listener(clock.push)
    receiver = NdiReceiver(name)
    await clock.start()
    try:
        assert clock.sinks == (sink, tap)
        await asyncio.to_thread(receiver.find_and_connect)
        await session.start()
        await wait_for(lambda: sum(f.stamp is not None for f in receiver.frames) >= 60, 30,
                       "60 stamped frames at the NDI receiver")
        assert sink.connections() == 1
    finally:
        await session.aclose()
        await clock.aclose()
        receiver.close()
    frames = receiver.frames
    assert {f.size for f in frames} == {(W, H)}
    assert {f.rate for f in frames} == {Fraction(25)}  # the source announces the camera's rate
    stamps = [f.stamp for f in frames if f.stamp is not None]
    chunks = [chunk for chunk, _ in stamps]
    assert chunks == sorted(chunks), chunks  # in order
    # Every picture the clock showed between the first and the last one received reached the receiver, in order.
    shown = runs([stamp for _, kind, stamp in tap.ticks if kind != "slate"])
    first, last = shown.index(stamps[0]), shown.index(stamps[-1])
    assert runs(stamps) == shown[first:last + 1]
    # One frame per tick: every tick reached the sink (sent; or replaced by the next one while NDI was still
    # busy; or shown before the receiver connected), NDI kept up, and NDI's own count at the receiver is what was
    # sent (bar the frames still on their way when the receiver closed). The test's receiver asks NDI for the
    # newest frame every few ms, so on a busy machine it may skip one; NDI's count does not.
    assert abs(sink.sent + sink.dropped + sink.idle - len(tap.ticks)) <= 1, (sink.sent, sink.dropped, sink.idle)
    assert sink.sent >= 60 and sink.dropped <= 0.05 * sink.sent, (sink.sent, sink.dropped)
    assert sink.sent - 3 <= receiver.ndi_stats["frames_total"] <= sink.sent, (receiver.ndi_stats, sink.sent)
    assert receiver.ndi_stats["frames_dropped"] == 0 and sink.sender is None


@needs_ndi
async def test_the_ndi_source_goes_on_through_a_scope_restart(ndi_loopback: Path, emulator: ScopeEmulator) -> None:
    name = unique_name("restart")
    sink, tap = NdiSink(name), Tap()
    session = make_session(emulator.url)
    clock = OutputClock(W, H, 20, [sink, tap], slate_after=0.3, reason=reason_from_session(session))
    session.add_frame_listener(clock.push)
    receiver = NdiReceiver(name)
    await clock.start()
    try:
        await asyncio.to_thread(receiver.find_and_connect)
        await session.start()
        await wait_for(lambda: sum(f.stamp is not None for f in receiver.frames) >= 10, 30, "live frames over NDI")
        await emulator.apply_faults({"restart": True})
        await wait_for(lambda: any(f.stamp is None for f in receiver.frames[-5:]), 15, "the slate over NDI")
        slate_at = len(receiver.frames)
        await wait_for(lambda: sum(f.stamp is not None for f in receiver.frames[slate_at:]) >= 10, 30,
                       "live frames over NDI after the restart")
        assert sink.connections() == 1
        # Read before the sink closes: a frame the receiver still takes after that finds it disconnected.
        connected = list(receiver.connected_samples)
    finally:
        await session.aclose()
        await clock.aclose()
        receiver.close()
    assert session.sessions_started >= 2
    body = "".join("L" if f.stamp is not None else "S" for f in receiver.frames)
    assert "LS" in body and "SL" in body[body.index("LS"):], body  # live, the slate, live again
    # One connection all along: the receiver never had to reconnect (a sample per frame it took, 10 or more).
    assert len(connected) >= 10 and all(connected), [i for i, c in enumerate(connected) if not c]
    # The slate the receiver saw is the one the clock showed: dark, with the reason in it.
    slates = [f for f in receiver.frames if f.stamp is None]
    lives = [f for f in receiver.frames if f.stamp is not None]
    assert max(f.luma for f in slates) < min(f.luma for f in lives)
    known = {text: slate_i420(text, W, H)[:H].astype(np.float32) for text in (WAITING, RECONNECTING, STOPPED)}
    said = {min(known, key=lambda text: float(np.abs(known[text] - f.picture).mean())) for f in slates
            if f.picture is not None}
    assert RECONNECTING in said, said


@needs_ndi
def test_a_closed_ndi_sink_is_done(ndi_loopback: Path) -> None:
    sink = NdiSink(unique_name("closed"))
    sink.open(64, 36, 30)
    assert sink.sender is not None and sink.connections() == 0
    for index in range(3):  # nobody is watching: nothing is copied, compressed or sent
        sink.show(ShownFrame(av.VideoFrame(64, 36, "yuv420p"), index, time.monotonic(), "slate", None))
    assert sink.idle == 3 and sink.sent == 0 and sink.send_ms() is None
    sink.close()
    sink.close()  # twice is harmless
    assert sink.sender is None and sink.connections() == 0
    with pytest.raises(VideoOutputError, match="was closed"):
        sink.open(64, 36, 30)


@needs_ndi
async def test_a_frame_that_cannot_be_sent_costs_that_frame_only(
    ndi_loopback: Path, caplog: pytest.LogCaptureFixture
) -> None:
    name = unique_name("broken")
    sink, tap = NdiSink(name), Tap()
    clock = OutputClock(W, H, 25, [sink, tap], slate_after=10)
    receiver = NdiReceiver(name)
    await clock.start()
    try:
        await asyncio.to_thread(receiver.find_and_connect)
        await wait_for(lambda: sink.sent >= 5, 10, "frames sent")
        # A frame of the wrong size (nothing in the bridge makes one, the clock fits every frame): NDI refuses it.
        sink.show(ShownFrame(av.VideoFrame(W // 2, H // 2, "yuv420p"), 10**6, time.monotonic(), "live", None))
        await wait_for(lambda: any("failed to send frames" in r.getMessage() for r in caplog.records), 10,
                       "the failure logged")
        sent = sink.sent
        await wait_for(lambda: sink.sent >= sent + 5, 10, "frames sent after the bad one")
    finally:
        await clock.aclose()
        receiver.close()
    assert sink.sender is None and clock.sinks == (sink, tap)
    assert len([r for r in caplog.records if "failed to send frames" in r.getMessage()]) == 1


@needs_ndi
async def test_a_run_with_an_ndi_output(ndi_loopback: Path, make_emulator: Any, tmp_path: Path) -> None:
    emulator = await make_emulator()
    name = unique_name("run")
    profile = tmp_path / "show.yaml"
    profile.write_text(
        f"scope: {{url: {emulator.url}, resolution: [{W}, {H}], denoising: fast}}\n"
        "inputs: {audio: none}\n"
        f"video: {{fps: 20, outputs: ['ndi:{name}']}}\n"
        "themes: {a: {prompts: [red desert]}}\n",
        encoding="utf-8",
    )
    receiver = NdiReceiver(name)
    run = asyncio.create_task(run_bridge(RunOptions(profile=str(profile), duration=4.0), status_stream=io.StringIO()))
    try:
        await asyncio.to_thread(receiver.find_and_connect)
        await wait_for(lambda: sum(f.stamp is not None for f in receiver.frames) >= 10, 30, "frames from the run")
        assert await run == 0
    finally:
        receiver.close()
        if not run.done():
            run.cancel()
    assert {f.size for f in receiver.frames} == {(W, H)} and {f.rate for f in receiver.frames} == {Fraction(20)}
