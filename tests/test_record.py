"""RecordingSink: real files written through PyAV and read back with PyAV."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import av
import numpy as np
import pytest

from metadj_bridge.errors import VideoOutputError
from metadj_bridge.video.clock import OutputClock
from metadj_bridge.video.record import RecordingSink, pick_codec
from metadj_bridge.video.sink import ShownFrame
from tests.helpers import wait_for

ROOT = Path(__file__).resolve().parent.parent

W, H = 160, 96
U, V = 90, 170  # a fixed colour (chroma) under a brightness that says which tick it was


def luma(index: int) -> int:
    return 16 + 7 * index


def tick_frame(index: int, fps: float, width: int = W, height: int = H) -> ShownFrame:
    """An I420 frame whose brightness encodes its tick number, stamped as the clock stamps it."""
    planes = np.empty((height * 3 // 2, width), np.uint8)
    planes[:height] = luma(index)
    planes[height : height + height // 4] = U
    planes[height + height // 4 :] = V
    frame = av.VideoFrame.from_ndarray(planes, format="yuv420p")
    frame.pts = index
    return ShownFrame(frame=frame, index=index, t=time.monotonic(), kind="live", arrived=time.monotonic())


def read_back(path: Path) -> tuple[list[av.VideoFrame], float]:
    with av.open(str(path)) as container:
        frames = list(container.decode(video=0))
        assert container.duration is not None, "the file does not say how long it is"
        duration = container.duration / av.time_base
    return frames, duration


def seconds(frame: av.VideoFrame) -> float:
    assert frame.time is not None
    return frame.time


def mean_yuv(frame: av.VideoFrame) -> tuple[float, float, float]:
    planes = frame.reformat(format="yuv420p").to_ndarray()
    h = frame.height
    return (
        float(planes[:h].mean()),
        float(planes[h : h + h // 4].mean()),
        float(planes[h + h // 4 :].mean()),
    )


@pytest.mark.parametrize("codec", [None, "mpeg4"])
@pytest.mark.parametrize("suffix", [".mp4", ".mkv"])
def test_recording_reads_back_frame_for_frame(tmp_path: Path, suffix: str, codec: str | None) -> None:
    fps, count = 25.0, 30
    # Frames come faster than a clock would send them: room for all of them, so none is dropped.
    sink = RecordingSink(tmp_path / f"show{suffix}", queue_seconds=count / fps, codec=codec)
    sink.open(W, H, fps)
    for i in range(count):
        sink.show(tick_frame(i, fps))
    sink.close()

    stats = sink.stats()
    assert stats.shown == count
    assert stats.written + stats.dropped == count
    assert stats.codec == (codec or pick_codec())
    frames, duration = read_back(sink.path)
    with av.open(str(sink.path)) as container:
        assert container.streams.video[0].codec_context.name == {"libx264": "h264", "mpeg4": "mpeg4"}[stats.codec]
    assert len(frames) == stats.written == count
    assert {(f.width, f.height) for f in frames} == {(W, H)}
    for i, frame in enumerate(frames):
        y, u, v = mean_yuv(frame)
        assert abs(y - luma(i)) < 3, f"frame {i} has brightness {y:.1f}, expected {luma(i)}"
        assert abs(u - U) < 4 and abs(v - V) < 4
        assert seconds(frame) == pytest.approx(i / fps, abs=0.002)
    assert duration == pytest.approx(count / fps, abs=1 / fps)


def test_repeated_frame_object_keeps_each_ticks_place(tmp_path: Path) -> None:
    """The clock may show one frame object on several ticks; each tick is its own frame in the file."""
    fps = 10.0
    sink = RecordingSink(tmp_path / "repeat.mkv")
    sink.open(W, H, fps)
    first = tick_frame(0, fps)
    for i in range(5):
        sink.show(ShownFrame(frame=first.frame, index=i, t=time.monotonic(), kind="repeat", arrived=first.arrived))
    later = tick_frame(9, fps)
    sink.show(ShownFrame(frame=later.frame, index=5, t=time.monotonic(), kind="live", arrived=later.arrived))
    sink.close()

    frames, duration = read_back(sink.path)
    assert [round(mean_yuv(f)[0]) for f in frames] == [luma(0)] * 5 + [luma(9)]
    assert [seconds(f) for f in frames] == pytest.approx([i / fps for i in range(6)], abs=0.002)
    assert duration == pytest.approx(0.6, abs=0.1)


def test_a_frame_of_another_size_is_fitted_to_the_file(tmp_path: Path) -> None:
    sink = RecordingSink(tmp_path / "sizes.mp4", preset="ultrafast")
    sink.open(W, H, 30.0)
    sink.show(tick_frame(0, 30.0))
    sink.show(tick_frame(1, 30.0, width=W * 2, height=H * 2))
    sink.close()
    frames, _ = read_back(sink.path)
    assert [(f.width, f.height) for f in frames] == [(W, H), (W, H)]
    assert abs(mean_yuv(frames[1])[0] - luma(1)) < 3


def test_existing_recording_is_never_overwritten(tmp_path: Path) -> None:
    (tmp_path / "show.mkv").write_bytes(b"last night")
    (tmp_path / "show-1.mkv").write_bytes(b"the night before")
    sink = RecordingSink(tmp_path / "show.mkv")
    sink.open(W, H, 30.0)
    sink.show(tick_frame(0, 30.0))
    sink.close()
    assert sink.path == tmp_path / "show-2.mkv"
    assert (tmp_path / "show.mkv").read_bytes() == b"last night"
    assert (tmp_path / "show-1.mkv").read_bytes() == b"the night before"
    assert len(read_back(sink.path)[0]) == 1


@pytest.mark.parametrize("name", ["show.mov", "show", "show.mp4.txt"])
def test_other_extensions_are_refused_naming_the_allowed_ones(tmp_path: Path, name: str) -> None:
    with pytest.raises(VideoOutputError, match=r"\.mp4 or \.mkv") as err:
        RecordingSink(tmp_path / name)
    assert name in str(err.value)


def test_unknown_codec_is_refused_naming_the_allowed_ones(tmp_path: Path) -> None:
    with pytest.raises(VideoOutputError, match="'vp9' is not one of libx264, mpeg4"):
        RecordingSink(tmp_path / "show.mkv", codec="vp9")


def test_unknown_preset_is_refused_naming_the_allowed_ones(tmp_path: Path) -> None:
    with pytest.raises(VideoOutputError, match="'quick' is not one of ultrafast, superfast, veryfast"):
        RecordingSink(tmp_path / "show.mkv", preset="quick")


def test_upper_case_extension_is_accepted(tmp_path: Path) -> None:
    sink = RecordingSink(tmp_path / "SHOW.MKV")
    sink.open(W, H, 30.0)
    sink.show(tick_frame(0, 30.0))
    sink.close()
    assert len(read_back(sink.path)[0]) == 1


def test_missing_folder_is_an_error_at_open_with_path_and_reason(tmp_path: Path) -> None:
    target = tmp_path / "no-such-folder" / "show.mp4"
    sink = RecordingSink(target)
    with pytest.raises(VideoOutputError) as err:
        sink.open(W, H, 30.0)
    assert str(target) in str(err.value)
    assert "No such file or directory" in str(err.value)
    sink.close()
    assert not target.parent.exists()


def test_folder_that_is_a_file_is_an_error_at_open(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("set list")
    target = tmp_path / "notes.txt" / "show.mkv"
    with pytest.raises(VideoOutputError, match="Not a directory") as err:
        RecordingSink(target).open(W, H, 30.0)
    assert str(target) in str(err.value)


@pytest.mark.parametrize("name", ["x" * 300 + ".mp4", "a\0b.mp4"])
def test_a_name_the_system_refuses_is_an_error_at_open(tmp_path: Path, name: str) -> None:
    """A file name too long for the file system, or with a NUL byte: refused by ``stat`` itself while the free name
    is looked for, it is the recording's own error (the output is off, the show goes on), not an OSError."""
    with pytest.raises(VideoOutputError, match="cannot record to") as err:
        RecordingSink(tmp_path / name).open(W, H, 30.0)
    assert ("File name too long" if "\0" not in name else "embedded null byte") in str(err.value)


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root may write into a read-only folder")
def test_folder_without_permission_is_an_error_at_open(tmp_path: Path) -> None:
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        with pytest.raises(VideoOutputError, match="Permission denied") as err:
            RecordingSink(locked / "show.mp4").open(W, H, 30.0)
        assert str(locked / "show.mp4") in str(err.value)
    finally:
        locked.chmod(0o700)


FULL_DISK = """
import json, logging, resource, sys
import numpy as np
from tests.test_record_audio import H, HOP, RATE, W, click_track, grey_frame, publish_audio
from metadj_bridge.inputs.audio_tap import AudioTap
from metadj_bridge.video.record import RecordingSink

lines = []
class Collect(logging.Handler):
    def emit(self, record):
        lines.append([record.levelname, record.getMessage(), record.exc_info is not None])
logging.getLogger("metadj_bridge").addHandler(Collect())
logging.getLogger("metadj_bridge").setLevel(logging.INFO)

soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
resource.setrlimit(resource.RLIMIT_FSIZE, (30_000, hard))  # the file may grow to 30 KB: a disk that fills up
tap = AudioTap(RATE, HOP)
sink = RecordingSink(sys.argv[1], queue_seconds=20)
sink.attach_audio(tap.subscribe(60.0))
sink.open(W, H, 25.0)
noise = np.random.default_rng(1)
publish_audio(tap, click_track(8.0, [0.5]) + noise.normal(0, 0.1, 8 * RATE).astype(np.float32), 1000.0)
for n in range(200):
    frame = grey_frame(n, 1000.0 + n / 25)
    frame.frame.planes[0].update(noise.integers(0, 255, W * H, dtype=np.uint8).tobytes())  # does not compress
    sink.show(frame)
sink.close()
print(json.dumps({"lines": lines, "written": sink.stats().written, "failure": str(getattr(sink, "failure", None))}))
"""


@pytest.mark.skipif(sys.platform == "win32", reason="RLIMIT_FSIZE (resource) is POSIX only")
@pytest.mark.parametrize("suffix", [".mp4", ".mkv"])
def test_a_disk_that_fills_up_stops_the_recording_with_one_line_and_no_traceback(tmp_path: Path, suffix: str) -> None:
    """In a subprocess that may write files of 30 KB at most (Python ignores SIGXFSZ: writes fail with EFBIG)."""
    path = tmp_path / f"show{suffix}"
    done = subprocess.run([sys.executable, "-c", FULL_DISK, str(path)], cwd=ROOT, capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=120, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "Traceback" not in done.stderr, done.stderr[-2000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    said = [(level, text) for level, text, traceback in result["lines"] if level != "INFO" or traceback]
    expected = f"recording {path} stopped after {result['written']} frames: File too large; the show goes on without it"
    assert said == [("ERROR", expected)], said
    assert result["failure"] == expected and 0 < result["written"] < 200


def test_odd_size_is_refused_at_open(tmp_path: Path) -> None:
    with pytest.raises(VideoOutputError, match="161x96"):
        RecordingSink(tmp_path / "odd.mp4").open(161, 96, 30.0)
    assert list(tmp_path.iterdir()) == []


def test_close_twice_and_no_reuse(tmp_path: Path) -> None:
    sink = RecordingSink(tmp_path / "twice.mkv")
    sink.open(W, H, 30.0)
    sink.show(tick_frame(0, 30.0))
    sink.close()
    sink.close()
    sink.show(tick_frame(1, 30.0))
    assert sink.stats().shown == 1
    with pytest.raises(VideoOutputError, match="closed"):
        sink.open(W, H, 30.0)
    assert len(read_back(sink.path)[0]) == 1


def test_close_without_open_writes_nothing(tmp_path: Path) -> None:
    sink = RecordingSink(tmp_path / "never.mp4")
    sink.close()
    assert list(tmp_path.iterdir()) == []


def test_a_full_queue_counts_every_frame_it_drops(tmp_path: Path) -> None:
    """With room for two frames, a burst at 720p outruns the encoder; nothing goes missing uncounted."""
    sink = RecordingSink(tmp_path / "burst.mkv", queue_seconds=0.0)
    sink.open(1280, 720, 30.0)
    shown = [tick_frame(i % 30, 30.0, 1280, 720) for i in range(60)]
    for i, item in enumerate(shown):
        sink.show(ShownFrame(frame=item.frame, index=i, t=item.t, kind="live", arrived=item.arrived))
    sink.close()
    stats = sink.stats()
    frames, _ = read_back(sink.path)
    assert stats.shown == 60
    assert len(frames) == stats.written
    assert stats.written + stats.dropped == 60
    # Frames that made it keep their tick's time: the file stays in step with the show.
    times = [round(seconds(f) * 30) for f in frames]
    assert times == sorted(set(times))
    assert times[0] == 0


class ShownLog:
    """The camera's view of the same clock: what each tick showed, to compare the file with."""

    name = "log"

    def __init__(self) -> None:
        self.luma: list[float] = []
        self.kinds: list[str] = []

    def open(self, width: int, height: int, fps: float) -> None:
        pass

    def show(self, shown: ShownFrame) -> None:
        self.luma.append(float(shown.frame.to_ndarray()[: shown.frame.height].mean()))
        self.kinds.append(shown.kind)

    def close(self) -> None:
        pass


@pytest.mark.parametrize("suffix", [".mp4", ".mkv"])
async def test_recording_through_the_output_clock_holds_what_the_camera_showed(tmp_path: Path, suffix: str) -> None:
    fps = 50.0
    log = ShownLog()
    sink = RecordingSink(tmp_path / f"clock{suffix}")
    clock = OutputClock(W, H, fps, [log, sink], slate_after=0.2)
    await clock.start()
    try:
        await wait_for(lambda: len(log.kinds) >= 2, 5, "slate ticks before the first frame")
        for i in range(6):
            clock.push(tick_frame(i * 4, fps).frame)
            target = len(log.kinds) + 2
            await wait_for(lambda: len(log.kinds) >= target, 5, "ticks after a push")  # noqa: B023 - awaited here
        await wait_for(lambda: log.kinds[-1] == "slate", 5, "the slate after Scope went quiet")
    finally:
        await clock.aclose()

    stats, shown = sink.stats(), clock.stats().frames_shown
    assert stats.shown == shown == len(log.luma)
    assert stats.dropped == 0
    frames, duration = read_back(sink.path)
    assert len(frames) == shown
    assert {(f.width, f.height) for f in frames} == {(W, H)}
    assert [seconds(f) for f in frames] == pytest.approx([i / fps for i in range(shown)], abs=0.002)
    assert duration == pytest.approx(shown / fps, abs=1 / fps)
    decoded = [mean_yuv(f)[0] for f in frames]
    assert decoded == pytest.approx(log.luma, abs=3)
    assert {"slate", "live", "repeat"} <= set(log.kinds)
