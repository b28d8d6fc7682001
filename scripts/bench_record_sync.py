"""A recording with the music, held to sync over a long show: ``python scripts/bench_record_sync.py [--minutes 10]``.

The real parts a run uses: a click track played in real time (``WavFileSource``, as the demo track or a file is)
through the real audio analysis, whose tap feeds a ``RecordingSink`` (MP4, H.264 ``veryfast`` and AAC) on a real
output clock at 1024x576, 30 fps. A stand-in for Scope pushes busy frames at 20 fps (longlive's pace) so the
encoder has real work, and answers each click it hears with a frame carrying the emulator's stamp (the click's
number), the way a visual reacts to the music.

After the recording the file is decoded with PyAV. For each click: its time in the decoded audio, the time of
the first decoded frame stamped for it, and, live, when it was heard and when the camera first showed its frame.
The offset printed is (file: frame - click) - (live: shown - heard): how far the recording moved picture and
sound apart, which must stay within one frame period (33.3 ms) over the whole recording. Also: the recording's
own counters (frames dropped, silence filled, audio cut), the clock's skipped ticks, and the process's CPU.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import av
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from metadj_bridge.emulator.stamp import draw_stamp, read_stamp  # noqa: E402
from metadj_bridge.inputs.analysis_config import hop_size_for  # noqa: E402
from metadj_bridge.inputs.analyzer import AudioAnalyzer  # noqa: E402
from metadj_bridge.inputs.audio import WavFileSource  # noqa: E402
from metadj_bridge.inputs.audio_tap import TapQueue  # noqa: E402
from metadj_bridge.video.clock import OutputClock  # noqa: E402
from metadj_bridge.video.record import RecordingSink  # noqa: E402
from metadj_bridge.video.sink import ShownFrame  # noqa: E402

RATE = 44_100
WIDTH, HEIGHT, FPS = 1024, 576, 30.0
SCOPE_FPS = 20.0
INTERVALS = (0.61, 0.83, 0.97, 0.71, 1.13, 0.77, 0.89)  # irregular: every phase against the frames comes up
CLICK = 0.8 * np.sin(2 * np.pi * 2000 * np.arange(int(0.008 * RATE)) / RATE).astype(np.float32)


def click_times(seconds: float) -> list[float]:
    times, t, n = [], 1.0, 0
    while t < seconds - 1.0:
        times.append(t)
        t += INTERVALS[n % len(INTERVALS)]
        n += 1
    return times


def click_track(seconds: float, clicks: list[float]) -> np.ndarray:
    audio = np.zeros(int(seconds * RATE), np.float32)
    for t in clicks:
        i = round(t * RATE)
        audio[i : i + len(CLICK)] += CLICK
    return audio


class TickLog:
    """When the camera first showed each stamp."""

    name = "ticklog"

    def __init__(self) -> None:
        self.first: dict[int, float] = {}
        self._last: int | None = None

    def open(self, width: int, height: int, fps: float) -> None:
        pass

    def show(self, shown: ShownFrame) -> None:
        found = read_stamp(_corner_rgb(shown.frame))
        stamp = None if found is None else found[0]
        if stamp is not None and stamp != self._last:
            self.first.setdefault(stamp, shown.t)
        self._last = stamp

    def close(self) -> None:
        pass


def _corner_rgb(frame: av.VideoFrame) -> np.ndarray:
    """The stamp's corner of an I420 frame as RGB (converting the whole frame each tick would load the clock)."""
    luma = frame.to_ndarray()[:32, :128]  # I420: the Y plane comes first; the stamp is black and white
    return np.repeat(luma[:, :, None], 3, axis=2)


class ScopeStandIn:
    """Busy frames at Scope's pace, and a stamped answer to every click heard."""

    def __init__(self, clock: OutputClock, feed: TapQueue) -> None:
        self.clock = clock
        self.feed = feed
        self.heard: list[float] = []
        self.stop = threading.Event()
        # Busy but not noise (noise makes gigabytes): coarse random blocks under a gradient, eight of them.
        rng = np.random.default_rng(5)
        ramp = np.linspace(0, 80, WIDTH, dtype=np.float32)[None, :, None]
        self._pictures = [
            np.clip(np.kron(rng.integers(0, 170, (HEIGHT // 16, WIDTH // 16, 3)), np.ones((16, 16, 1))) + ramp,
                    0, 255).astype(np.uint8)
            for _ in range(8)
        ]
        self._threads = [threading.Thread(target=self._frames, daemon=True),
                         threading.Thread(target=self._answers, daemon=True)]
        self._stamp = 0
        self._lock = threading.Lock()

    def start(self) -> None:
        for thread in self._threads:
            thread.start()

    def close(self) -> None:
        self.stop.set()
        for thread in self._threads:
            thread.join()

    def _push(self, n: int) -> None:
        rgb = self._pictures[n % len(self._pictures)].copy()
        with self._lock:
            draw_stamp(rgb, self._stamp, self._stamp)
        self.clock.push(av.VideoFrame.from_ndarray(rgb, format="rgb24"))

    def _frames(self) -> None:
        n, start = 0, time.monotonic()
        while not self.stop.wait(max(0.0, start + n / SCOPE_FPS - time.monotonic())):
            self._push(n)
            n += 1

    def _answers(self) -> None:
        quiet = 0
        while not self.stop.is_set():
            got = self.feed.get(timeout=0.1)
            if got is None:
                continue
            loud = np.flatnonzero(np.abs(got.samples) > 0.5)
            if len(loud) and quiet >= 10:
                self.heard.append(got.heard_at + int(loud[0]) / got.samplerate)
                with self._lock:
                    self._stamp = len(self.heard)
                self._push(len(self.heard))
            quiet = 0 if len(loud) else quiet + 1


def decoded_clicks(path: Path) -> tuple[list[float], float]:
    with av.open(str(path)) as container:
        stream = container.streams.audio[0]
        rate = stream.sample_rate
        samples = np.concatenate([f.to_ndarray().reshape(-1) for f in container.decode(stream)])
    loud = np.flatnonzero(np.abs(samples) > 0.3)
    starts = [loud[0]] + [b for a, b in zip(loud, loud[1:], strict=False) if b - a > 0.1 * rate] if len(loud) else []
    return [int(s) / rate for s in starts], len(samples) / rate


def decoded_stamps(path: Path) -> tuple[dict[int, float], float]:
    first: dict[int, float] = {}
    last = 0.0
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        for frame in container.decode(stream):
            if frame.time is None:
                continue
            last = frame.time
            found = read_stamp(_corner_rgb(frame))
            if found is not None:
                first.setdefault(found[0], frame.time)
    return first, last + 1 / FPS


async def record(minutes: float, folder: Path) -> None:
    seconds = minutes * 60
    clicks = click_times(seconds)
    source = WavFileSource(click_track(seconds, clicks), RATE, hop_size=hop_size_for(RATE), realtime=True)
    analyzer = AudioAnalyzer(source)
    log = TickLog()
    sink = RecordingSink(folder / "sync.mp4", audio=True)
    clock = OutputClock(WIDTH, HEIGHT, FPS, [sink, log], slate_after=5.0)
    cpu0, wall0 = time.process_time(), time.monotonic()
    await clock.start()
    scope = ScopeStandIn(clock, analyzer.tap.subscribe(2.0))
    scope.start()
    await asyncio.sleep(0.5)  # the analysis starts after the camera, as in a run
    sink.attach_audio(analyzer.tap.subscribe(2.0))
    await analyzer.start()
    assert analyzer.finished is not None
    print(f"recording {minutes:g} min at {WIDTH}x{HEIGHT}, {FPS:g} fps, {len(clicks)} clicks ...", flush=True)
    await analyzer.finished
    await asyncio.sleep(0.3)
    scope.close()
    await analyzer.aclose()
    clock_stats = clock.stats()
    await clock.aclose()
    cpu, wall = time.process_time() - cpu0, time.monotonic() - wall0
    stats = sink.stats()

    in_audio, audio_seconds = await asyncio.to_thread(decoded_clicks, sink.path)
    in_video, video_seconds = await asyncio.to_thread(decoded_stamps, sink.path)
    size = await asyncio.to_thread(os.path.getsize, sink.path)
    print(f"file {sink.path.name}: {size / 1e6:.1f} MB, video {video_seconds:.2f} s, "
          f"audio {audio_seconds:.2f} s ({stats.audio_codec})")
    print(f"recording: {stats.written} frames written, {stats.dropped} dropped, encode {stats.encode_ms:.1f} ms/frame; "
          f"audio filled {1000 * stats.audio_filled:.1f} ms, cut {1000 * stats.audio_cut:.1f} ms; "
          f"clock: {clock_stats.skipped_ticks} ticks skipped")
    print(f"process CPU (analysis, clock, encoder, Scope stand-in): {100 * cpu / wall:.0f}% of one core; "
          f"max RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB")
    heard = scope.heard
    if len(heard) != len(clicks) or len(in_audio) != len(clicks):
        print(f"clicks: {len(clicks)} in the track, {len(heard)} heard live, {len(in_audio)} found in the file")
    offsets = []
    print("offset per click, ms ((file: frame - click) - (live: shown - heard)):")
    line = []
    for k in range(min(len(heard), len(in_audio))):
        shown, framed = log.first.get(k + 1), in_video.get(k + 1)
        if shown is None or framed is None:
            line.append("  miss")
            continue
        offset = 1000 * ((framed - in_audio[k]) - (shown - heard[k]))
        offsets.append(offset)
        line.append(f"{offset:+6.1f}")
        if len(line) == 12:
            print(f"  {k - 10:4d}: " + " ".join(line))
            line = []
    if line:
        print("        " + " ".join(line))
    if offsets:
        worst = max(offsets, key=abs)
        first, last = statistics.median(offsets[:30]), statistics.median(offsets[-30:])
        print(f"offset: median {statistics.median(offsets):+.1f} ms, max |offset| {abs(worst):.1f} ms "
              f"({worst:+.1f}), first 30 {first:+.1f} ms, last 30 {last:+.1f} ms; one frame = {1000 / FPS:.1f} ms; "
              f"{sum(abs(o) <= 1000 / FPS for o in offsets)}/{len(offsets)} within one frame")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--minutes", type=float, default=10.0, help="how long to record (default 10)")
    parser.add_argument("--keep", type=Path, default=None, metavar="DIR", help="keep the recording in DIR")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(parser)
    args = parser.parse_args(argv)
    if args.keep is not None:
        args.keep.mkdir(parents=True, exist_ok=True)
        asyncio.run(record(args.minutes, args.keep))
        return 0
    with tempfile.TemporaryDirectory() as folder:
        asyncio.run(record(args.minutes, Path(folder)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
