"""The avatar picture source: fill-and-crop geometry, per-OS device naming and listing, and a generated video
file read through the real capture thread and track."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import av
import numpy as np
import pytest
from aiortc.mediastreams import MediaStreamError

from metadj_bridge.errors import ConfigError, VideoInputError
from metadj_bridge.video.cameras import (
    Camera,
    SourceSpec,
    describe_cameras,
    list_cameras,
    parse_avfoundation_listing,
    parse_dshow_listing,
    resolve_source,
)
from metadj_bridge.video.webcam import VIDEO_TIME_BASE, VideoSource, fill_crop, fit_frame
from tests.helpers import wait_for

RED, GREEN, BLUE = (220, 30, 30), (30, 200, 40), (30, 40, 220)


def write_colour_video(path: Path, colours: list[tuple[int, int, int]], frames_each: int, fps: int = 30,
                       size: tuple[int, int] = (640, 360)) -> Path:
    """A real video file: ``frames_each`` flat frames of each colour in turn."""
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = size[0], size[1], "yuv420p"
        stream.options = {"preset": "ultrafast", "crf": "10"}
        image = np.zeros((size[1], size[0], 3), np.uint8)
        for colour in colours:
            image[:] = colour
            for _ in range(frames_each):
                out.mux(stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")))
        out.mux(stream.encode(None))
    return path


def mean_rgb(frame: av.VideoFrame) -> np.ndarray:
    return frame.to_ndarray(format="rgb24").reshape(-1, 3).mean(axis=0)


def nearest(rgb: np.ndarray, colours: list[tuple[int, int, int]]) -> tuple[int, int, int]:
    return min(colours, key=lambda c: float(np.abs(rgb - np.array(c)).max()))


# ------------------------------------------------------------------------------------------------ geometry


def test_landscape_webcam_into_the_portrait_avatar_crops_the_sides() -> None:
    geo = fill_crop(1280, 720, 320, 576)
    # Scale 576/720 = 0.8 covers the height; 1024 columns, of which the middle 320 stay.
    assert (geo.scaled_width, geo.scaled_height) == (1024, 576)
    assert (geo.x, geo.y) == ((1024 - 320) // 2, 0)


def test_four_by_three_into_sixteen_by_nine_crops_top_and_bottom() -> None:
    geo = fill_crop(640, 480, 1024, 576)
    assert (geo.scaled_width, geo.scaled_height) == (1024, 768)
    assert (geo.x, geo.y) == (0, (768 - 576) // 2)


def test_portrait_source_keeps_even_offsets_and_covers_the_target() -> None:
    geo = fill_crop(720, 1280, 320, 576)  # scale max(320/720, 576/1280) = 0.45 -> 324x576
    assert (geo.scaled_width, geo.scaled_height) == (324, 576)
    assert (geo.x, geo.y) == (2, 0)
    same = fill_crop(320, 576, 320, 576)
    assert (same.scaled_width, same.scaled_height, same.x, same.y) == (320, 576, 0, 0)


@pytest.mark.parametrize("size", [(321, 576), (320, 0), (-2, 4)])
def test_odd_or_empty_target_sizes_are_refused(size: tuple[int, int]) -> None:
    with pytest.raises(ConfigError, match=f"{size[0]}x{size[1]}"):
        fill_crop(1280, 720, *size)


def test_fit_frame_keeps_the_centre_of_a_split_picture() -> None:
    image = np.zeros((720, 1280, 3), np.uint8)
    image[:, :640] = RED
    image[:, 640:] = BLUE
    out = fit_frame(av.VideoFrame.from_ndarray(image, format="rgb24"), 320, 576)
    assert (out.width, out.height, out.format.name) == (320, 576, "yuv420p")
    rgb = out.to_ndarray(format="rgb24")
    # The source's centre line (x=640) lands at the middle of the output: red left of it, blue right.
    assert nearest(rgb[:, :150].reshape(-1, 3).mean(axis=0), [RED, BLUE]) == RED
    assert nearest(rgb[:, 170:].reshape(-1, 3).mean(axis=0), [RED, BLUE]) == BLUE


def test_fit_frame_crops_top_and_bottom_bands_away() -> None:
    image = np.zeros((480, 640, 3), np.uint8)
    image[:] = GREEN
    image[:50] = RED  # the top 50 of 480 rows are inside the 60 rows cut off (96 of 768 after scaling)
    image[-50:] = BLUE
    rgb = fit_frame(av.VideoFrame.from_ndarray(image, format="rgb24"), 1024, 576).to_ndarray(format="rgb24")
    assert nearest(rgb[:4].reshape(-1, 3).mean(axis=0), [RED, GREEN, BLUE]) == GREEN
    assert nearest(rgb[-4:].reshape(-1, 3).mean(axis=0), [RED, GREEN, BLUE]) == GREEN


# ------------------------------------------------------------------------------------------------ naming and listing


def test_sources_are_named_per_os() -> None:
    linux = resolve_source("0", platform="linux")
    assert (linux.url, linux.format, linux.options) == ("/dev/video0", "v4l2", {"framerate": "30"})
    assert resolve_source("/dev/video2", fps=25, capture_size=(1280, 720), platform="linux") == SourceSpec(
        "/dev/video2", "v4l2", {"framerate": "25", "video_size": "1280x720"}
    )
    assert resolve_source("clips/me.mp4", platform="linux").is_file
    mac = resolve_source("FaceTime HD Camera", platform="darwin")
    assert (mac.url, mac.format) == ("FaceTime HD Camera", "avfoundation")
    assert resolve_source("1", platform="darwin").url == "1"
    assert resolve_source("me.mov", platform="darwin").is_file
    win = resolve_source("Integrated Camera", platform="win32")
    assert (win.url, win.format) == ("video=Integrated Camera", "dshow")
    assert resolve_source("video=USB Cam", platform="win32").url == "video=USB Cam"
    assert resolve_source("file:0", platform="win32") == SourceSpec("0", None)


def test_source_settings_that_cannot_work_say_why() -> None:
    with pytest.raises(ConfigError, match="camera's name"):
        resolve_source("0", platform="win32")
    with pytest.raises(ConfigError, match="empty"):
        resolve_source("  ", platform="linux")


def test_names_from_outside_are_shown_escaped() -> None:
    """A source setting or a name a device gives itself can hold a NUL or a terminal escape: every message that
    names them (the label, the camera list) shows them escaped, and what PyAV opens stays as written."""
    spec = resolve_source("/dev/video\x00\x1b[31m", platform="linux")
    assert spec.url == "/dev/video\x00\x1b[31m" and spec.label == "webcam /dev/video\\x00\\x1b[31m"
    assert str(Camera("/dev/video0", "Cam\x1b[2J\n")) == "/dev/video0 (Cam\\x1b[2J\\n)"


def test_linux_cameras_are_the_video_nodes_with_their_sysfs_names(tmp_path: Path) -> None:
    dev, sysfs = tmp_path / "dev", tmp_path / "sys"
    for node in ("video10", "video0", "video2", "vhci"):
        (dev / node).parent.mkdir(parents=True, exist_ok=True)
        (dev / node).touch()
    for node, name in (("video0", "Integrated Camera: Integrated C"), ("video10", "MetaDJ")):
        (sysfs / node).mkdir(parents=True)
        (sysfs / node / "name").write_text(name + "\n")
    cameras = list_cameras("linux", sys_root=sysfs, dev_root=dev)
    assert cameras == [
        Camera(str(dev / "video0"), "Integrated Camera: Integrated C"),
        Camera(str(dev / "video2"), ""),
        Camera(str(dev / "video10"), "MetaDJ"),
    ]
    assert str(cameras[2]) == f"{dev / 'video10'} (MetaDJ)"


def test_ffmpeg_device_listings_are_read_for_macos_and_windows() -> None:
    avfoundation = [
        "AVFoundation video devices:",
        "[0] FaceTime HD Camera",
        "[1] Capture screen 0",
        "AVFoundation audio devices:",
        "[0] MacBook Pro Microphone",
    ]
    assert parse_avfoundation_listing(avfoundation) == [
        Camera("0", "FaceTime HD Camera"),
        Camera("1", "Capture screen 0"),
    ]
    dshow_new = [
        '"Integrated Camera" (video)',
        '  Alternative name "@device_pnp_\\\\?\\usb#vid_04f2"',
        '"OBS Virtual Camera" (none)',
        '"Microphone (Realtek Audio)" (audio)',
    ]
    assert parse_dshow_listing(dshow_new) == [Camera("video=Integrated Camera", "Integrated Camera")]
    dshow_old = ["DirectShow video devices", ' "USB2.0 HD UVC WebCam"', "DirectShow audio devices", ' "Mic"']
    assert parse_dshow_listing(dshow_old) == [Camera("video=USB2.0 HD UVC WebCam", "USB2.0 HD UVC WebCam")]


def test_an_unknown_system_says_it_cannot_list_cameras() -> None:
    with pytest.raises(VideoInputError, match="cannot list cameras"):
        list_cameras("sunos5")
    assert "cannot list cameras" in describe_cameras("sunos5")


# ------------------------------------------------------------------------------------------------ capture


async def test_a_video_file_plays_as_the_track_in_order_and_loops(tmp_path: Path) -> None:
    path = write_colour_video(tmp_path / "colours.mp4", [RED, GREEN, BLUE], frames_each=4)
    source = VideoSource(str(path), 320, 576)
    try:
        await source.wait_first_frame(5)
        track = source.make_track()
        seen: list[tuple[int, int, int]] = []
        pts: list[int] = []
        while len(seen) < 20:  # 12 frames in the file: this crosses the loop point
            frame = await asyncio.wait_for(track.recv(), 5)
            assert (frame.width, frame.height, frame.format.name) == (320, 576, "yuv420p")
            assert frame.time_base == VIDEO_TIME_BASE and frame.pts is not None
            pts.append(frame.pts)
            seen.append(nearest(mean_rgb(frame), [RED, GREEN, BLUE]))
        assert pts == sorted(set(pts))  # strictly increasing: never the same frame twice
        runs = [c for i, c in enumerate(seen) if i == 0 or seen[i - 1] != c]
        cycle = [RED, GREEN, BLUE]
        start = cycle.index(runs[0])
        assert runs == [cycle[(start + i) % 3] for i in range(len(runs))]
        assert len(runs) >= 4  # the file came round again
        stats = source.stats()
        assert stats.frames_captured >= 20 and stats.source_size == (640, 360)
        assert stats.frames_sent == 20
    finally:
        await source.aclose()
        await source.aclose()
    with pytest.raises(MediaStreamError):
        await track.recv()
    with pytest.raises(RuntimeError, match="closed"):
        source.make_track()


async def test_two_tracks_in_turn_share_one_open_file(tmp_path: Path) -> None:
    path = write_colour_video(tmp_path / "green.mp4", [GREEN], frames_each=10)
    source = VideoSource(str(path), 160, 96)
    try:
        await source.wait_first_frame(5)
        first = source.make_track()
        a = await asyncio.wait_for(first.recv(), 5)
        first.stop()
        second = source.make_track()
        b = await asyncio.wait_for(second.recv(), 5)  # the newest frame at once: a new session starts at once
        c = await asyncio.wait_for(second.recv(), 5)
        assert a.pts is not None and b.pts is not None and c.pts is not None
        assert a.pts <= b.pts < c.pts and (c.width, c.height) == (160, 96)
        assert nearest(mean_rgb(c), [RED, GREEN, BLUE]) == GREEN
    finally:
        await source.aclose()


async def test_a_missing_webcam_names_the_cameras_present() -> None:
    source = VideoSource("/dev/video97")
    with pytest.raises(VideoInputError) as info:
        await source.wait_first_frame(5)
    await source.aclose()
    message = str(info.value)
    assert "webcam /dev/video97 does not exist" in message
    assert describe_cameras() in message


async def test_a_file_that_is_not_a_video_is_refused_with_the_cameras_present(tmp_path: Path) -> None:
    notes = tmp_path / "setlist.mp4"
    notes.write_text("1. intro\n2. drop\n")
    source = VideoSource(str(notes))
    with pytest.raises(VideoInputError) as info:
        await source.wait_first_frame(5)
    await source.aclose()
    assert f"video file {notes} is not a video" in str(info.value)
    assert describe_cameras() in str(info.value)


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="named pipes are a POSIX feature")
async def test_a_source_that_gives_no_picture_times_out_with_a_clear_error(tmp_path: Path) -> None:
    fifo = tmp_path / "silent.mkv"
    os.mkfifo(fifo)
    source = VideoSource(str(fifo))
    try:
        with pytest.raises(VideoInputError, match="no picture from video file .* within 0.3 s"):
            await source.wait_first_frame(0.3)
        assert source.stats().frames_captured == 0
    finally:
        # Let the reader out of its blocking open: a writer that closes at once is end of file.
        fd = os.open(fifo, os.O_WRONLY)
        os.close(fd)
        await source.aclose()


REAL_WEBCAM = os.environ.get("METADJ_TEST_WEBCAM")


@pytest.mark.skipif(
    not REAL_WEBCAM,
    reason="no real webcam named: set METADJ_TEST_WEBCAM (e.g. /dev/video0) to test one; "
    f"this machine has {describe_cameras()}",
)
async def test_a_real_webcam_delivers_frames_at_the_avatar_size() -> None:
    assert REAL_WEBCAM is not None
    source = VideoSource(REAL_WEBCAM, 320, 576)
    try:
        await source.wait_first_frame(10)
        frame = await asyncio.wait_for(source.make_track().recv(), 5)
        assert (frame.width, frame.height, frame.format.name) == (320, 576, "yuv420p")
        assert source.stats().source_size is not None
    finally:
        await source.aclose()


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="named pipes are a POSIX feature")
async def test_a_source_that_breaks_after_working_shows_in_the_status_until_it_delivers_again(
    tmp_path: Path,
) -> None:
    """A source that worked and then stops (as a webcam unplugged for a moment; here a named pipe whose writer is
    done, so it cannot loop) says so in ``problems()``, which the live view and /status show, while it retries;
    once frames flow again it is gone."""
    # Larger than FFmpeg's read buffer (a clip that fits in it would loop from memory): a colour a frame.
    colours = [(i * 37 % 256, i * 91 % 256, i * 53 % 256) for i in range(90)]
    clip = write_colour_video(tmp_path / "clip.mkv", colours, frames_each=1).read_bytes()
    fifo = tmp_path / "camera.mkv"
    os.mkfifo(fifo)

    def feed() -> None:
        with open(fifo, "wb") as writer:  # blocks until the source opens the pipe
            writer.write(clip)

    feeding = asyncio.ensure_future(asyncio.to_thread(feed))
    source = VideoSource(str(fifo), 160, 96)
    try:
        await source.wait_first_frame(10)
        await feeding
        await wait_for(lambda: bool(source.problems()), 15, "the stopped source in problems()")
        assert "trying again" in source.problems()[0]
        feeding = asyncio.ensure_future(asyncio.to_thread(feed))  # it is back
        await wait_for(lambda: source.problems() == [], 15, "the problem gone once frames flow again")
        await feeding
    finally:
        if not feeding.done():  # let the source out of a blocking open
            os.close(os.open(fifo, os.O_RDONLY | os.O_NONBLOCK))
        await source.aclose()
