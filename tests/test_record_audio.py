"""Recordings with the music: the audio tap, the timeline that places heard audio beside the frames, and real files
written through PyAV and decoded back with PyAV.

The sync test plays a click track through the real analysis (a real-time WAV source), records a real output clock,
and shows a stamped frame (the emulator's stamp) in answer to each click it hears; in the decoded file each
answer must follow its click by what it did live, within one frame period.
"""

from __future__ import annotations

import asyncio
import io
import threading
import wave
from pathlib import Path
from typing import Any

import av
import numpy as np
import pytest

from metadj_bridge.emulator.stamp import draw_stamp, read_stamp
from metadj_bridge.errors import VideoOutputError
from metadj_bridge.inputs.analysis_config import hop_size_for
from metadj_bridge.inputs.analyzer import AudioAnalyzer
from metadj_bridge.inputs.audio import AudioBlock, WavFileSource
from metadj_bridge.inputs.audio_tap import AudioTap, TapQueue
from metadj_bridge.run.bridge import run_bridge
from metadj_bridge.run.plan import RunOptions
from metadj_bridge.video.clock import OutputClock
from metadj_bridge.video.record import RecordingSink, TickGrid
from metadj_bridge.video.record_audio import TRACK_RATE, AudioTimeline, pick_audio_codec
from metadj_bridge.video.sink import ShownFrame

W, H = 256, 144
RATE = 44_100
HOP = 512
CLICK = 0.8 * np.sin(2 * np.pi * 2000 * np.arange(int(0.008 * RATE)) / RATE).astype(np.float32)


# ---------------------------------------------------------------- helpers


def click_track(seconds: float, clicks: list[float], rate: int = RATE) -> np.ndarray:
    audio = np.zeros(int(seconds * rate), np.float32)
    for t in clicks:
        i = round(t * rate)
        audio[i : i + len(CLICK)] += CLICK
    return audio


def find_clicks(samples: np.ndarray, rate: int, threshold: float = 0.3, quiet: float = 0.1) -> list[float]:
    """Seconds at which each click starts: the first loud sample after ``quiet`` seconds below the threshold."""
    loud = np.flatnonzero(np.abs(samples) > threshold)
    if len(loud) == 0:
        return []
    starts = [loud[0]] + [b for a, b in zip(loud, loud[1:], strict=False) if b - a > quiet * rate]
    return [int(s) / rate for s in starts]


def decode_audio(path: Path) -> tuple[np.ndarray, int, str]:
    with av.open(str(path)) as container:
        stream = container.streams.audio[0]
        chunks = [frame.to_ndarray().reshape(-1) for frame in container.decode(stream)]
        return np.concatenate(chunks), stream.sample_rate, stream.codec_context.name


def block(samples: np.ndarray, start: int, heard_at: float, rate: int = RATE) -> AudioBlock:
    """An analysis block whose first sample was heard at ``heard_at`` (a source stamps the last one)."""
    return AudioBlock(samples, start, rate, heard_at + len(samples) / rate)


def publish_audio(tap: AudioTap, audio: np.ndarray, heard_at: float, *, skip: range = range(0)) -> None:
    """Every hop of ``audio`` as heard in real time from ``heard_at``; the hops in ``skip`` never arrive."""
    for n, start in enumerate(range(0, len(audio) - HOP + 1, HOP)):
        if n not in skip:
            tap.publish(block(audio[start : start + HOP], start, heard_at + start / RATE))


def grey_frame(index: int, t: float) -> ShownFrame:
    planes = np.full((H * 3 // 2, W), 128, np.uint8)
    return ShownFrame(av.VideoFrame.from_ndarray(planes, format="yuv420p"), index, t, "live", t)


def stamped(number: int) -> av.VideoFrame:
    rgb = np.full((H, W, 3), 60, np.uint8)
    draw_stamp(rgb, number, number)
    return av.VideoFrame.from_ndarray(rgb, format="rgb24")


def stamp_of(frame: av.VideoFrame) -> int | None:
    found = read_stamp(frame.to_ndarray(format="rgb24"))
    return None if found is None else found[0]


# ---------------------------------------------------------------- the tap


def test_tap_hands_each_block_to_every_subscriber_with_its_first_samples_heard_time() -> None:
    tap = AudioTap(RATE, HOP)
    one, two = tap.subscribe(1.0), tap.subscribe(1.0)
    samples = np.arange(HOP, dtype=np.float32)
    tap.publish(AudioBlock(samples, 2048, RATE, captured_at=100.0))
    for sub in (one, two):
        (got,) = sub.take()
        assert got.start == 2048 and got.samplerate == RATE
        assert got.heard_at == pytest.approx(100.0 - HOP / RATE)
        assert np.array_equal(got.samples, samples)
    assert one.take() == []


def test_a_full_subscriber_drops_and_counts_and_never_blocks_the_worker() -> None:
    tap = AudioTap(RATE, HOP)
    slow = tap.subscribe(10 * HOP / RATE)  # room for ten blocks
    fast = tap.subscribe(1.0)
    for n in range(25):
        tap.publish(block(np.zeros(HOP, np.float32), n * HOP, float(n)))
        fast.take()
    assert (slow.received, slow.dropped) == (10, 15)
    assert [b.start for b in slow.take()] == [n * HOP for n in range(10)]  # the oldest are kept
    assert fast.dropped == 0 and fast.received == 25


def test_a_closed_subscriber_gets_nothing_more_and_close_is_repeatable() -> None:
    tap = AudioTap(RATE, HOP)
    sub = tap.subscribe(1.0)
    sub.close()
    sub.close()
    tap.publish(block(np.zeros(HOP, np.float32), 0, 1.0))
    assert sub.take() == [] and tap.subscribers == 0
    with pytest.raises(ValueError, match="more than 0 seconds"):
        tap.subscribe(0)


# ---------------------------------------------------------------- placing audio and frames (pure)


def test_first_block_lands_at_its_heard_time_and_the_rest_follow_the_count() -> None:
    line = AudioTimeline(origin=10.0, samplerate=1000)
    assert line.place(5000, 100, 10.25) == (250, 0)  # leading silence up to its heard time
    assert line.place(5100, 100, 10.35) == (0, 0)
    assert line.place(5200, 100, 10.452) == (0, 0)  # 2 ms of jitter: within the tolerance, no glitch
    assert line.written == 550 and line.filled == 0 and line.cut == 0


def test_audio_heard_before_the_first_tick_is_dropped() -> None:
    line = AudioTimeline(origin=10.0, samplerate=1000)
    assert line.place(0, 100, 9.75) == (0, 100)  # all before file time 0
    assert line.place(100, 100, 9.85) == (0, 100)
    assert line.place(200, 100, 9.95) == (0, 50)  # its second half is after it
    assert line.written == 50 and line.cut == 0


def test_a_gap_in_the_count_is_filled_with_silence_and_an_overlap_is_cut() -> None:
    line = AudioTimeline(origin=0.0, samplerate=1000)
    line.place(0, 100, 1.0)
    assert line.place(300, 100, 1.3) == (200, 0)  # two blocks never came
    assert line.place(350, 100, 1.35) == (0, 50)  # half of it was already written
    assert (line.written, line.filled, line.cut) == (1450, 200, 50)


@pytest.mark.parametrize("ppm", [-300, 300])
def test_a_drifting_sound_card_is_moved_back_to_its_heard_time(ppm: int) -> None:
    """A card whose clock runs ``ppm`` off, with one-sided callback jitter (a block is never heard early)."""
    rate, hop = 48_000, 480
    line = AudioTimeline(origin=0.0, samplerate=rate)
    rng = np.random.default_rng(3)
    worst = 0.0
    for n in range(60 * rate // hop):  # one minute
        start = n * hop
        true_heard = 1.0 + start / rate * (1 + ppm * 1e-6)
        _, skip = line.place(start, hop, true_heard + rng.uniform(0, 0.004))
        placed = (line.written - hop) / rate  # where this block's first sample went
        if skip < hop and n > 3 * rate // hop:
            worst = max(worst, abs(placed - true_heard))
    assert line.corrections >= 1
    assert worst < 0.015, worst  # never more than the tolerance plus one window's drift off
    assert (line.filled > 0) == (ppm > 0) and (line.cut > 0) == (ppm < 0)


def test_tick_grid_keeps_late_ticks_in_their_place_and_leaves_a_gap_for_skipped_ones() -> None:
    grid = TickGrid(30.0)
    p = 1 / 30
    late = [0.001, 0.0, 0.02, 0.0, 0.03, 0.001]  # up to 0.9 of a period late, never skipped
    assert [grid.place(100 + n * p + late[n]) for n in range(6)] == [0, 1, 2, 3, 4, 5]
    # A stall: the clock skipped ticks 6-9 and showed tick 10 late, with an index that runs on.
    assert grid.place(100 + 10 * p + 0.025) == 10
    assert grid.place(100 + 11 * p) == 11
    # Frames handed over faster than the clock would (tests, a backlog) are never squeezed together.
    fast = TickGrid(30.0)
    assert [fast.place(5.0 + n * 1e-4) for n in range(4)] == [0, 1, 2, 3]


# ---------------------------------------------------------------- real files


@pytest.mark.parametrize("suffix", [".mp4", ".mkv"])
def test_clicks_land_where_they_were_heard_and_gaps_become_silence(tmp_path: Path, suffix: str) -> None:
    fps, seconds, base = 25.0, 4.0, 1000.0
    clicks = [0.3, 1.2, 2.05, 3.3]
    audio = click_track(3.6, clicks)
    tap = AudioTap(RATE, HOP)
    sink = RecordingSink(tmp_path / f"music{suffix}", queue_seconds=seconds)
    sink.attach_audio(tap.subscribe(60.0))
    sink.open(W, H, fps)
    # The music starts 0.5 s into the recording; hops 100-119 (1.16-1.39 s of it) never reach the recording.
    publish_audio(tap, audio, base + 0.5, skip=range(100, 120))
    for n in range(int(seconds * fps)):
        sink.show(grey_frame(n, base + n / fps))
    sink.close()

    stats = sink.stats()
    assert stats.audio_codec == pick_audio_codec() == "aac"
    assert stats.audio_filled == pytest.approx(20 * HOP / RATE, abs=0.001)
    samples, rate, codec = decode_audio(sink.path)
    assert (rate, codec) == (TRACK_RATE, "aac")
    found = find_clicks(samples, rate)
    # The click at 1.2 s of the music fell in the gap: silence there, and the later ones stay in place.
    assert found == pytest.approx([0.5 + t for t in (0.3, 2.05, 3.3)], abs=0.001)
    assert len(samples) / rate == pytest.approx(seconds, abs=0.04)  # the sound ends with the picture


@pytest.mark.parametrize("suffix", [".mp4", ".mkv"])
def test_a_recording_that_expects_audio_but_hears_none_has_a_silent_track_along_the_video(
    tmp_path: Path, suffix: str
) -> None:
    fps, seconds = 10.0, 30.0  # longer than FFmpeg waits for a stream that sends nothing (10 s)
    sink = RecordingSink(tmp_path / f"quiet{suffix}", queue_seconds=seconds)
    sink.expect_audio()
    sink.open(W, H, fps)
    for n in range(int(seconds * fps)):
        sink.show(grey_frame(n, 50.0 + n / fps))
    sink.close()
    samples, rate, _ = decode_audio(sink.path)
    assert len(samples) / rate == pytest.approx(seconds, abs=0.03)
    assert float(np.abs(samples).max()) < 1e-3
    # The silence is written along the picture, not all at the end: the file stays interleaved.
    with av.open(str(sink.path)) as container:
        order = [(p.stream.type, float(p.pts * p.time_base)) for p in container.demux() if p.pts is not None]
    latest_audio = 0.0
    for kind, t in order:
        if kind == "audio":
            latest_audio = t
        else:
            assert t - latest_audio < 3.5, f"video at {t:.1f} s before any audio after {latest_audio:.1f} s"


def test_audio_is_asked_for_before_open_and_a_late_feed_is_refused(tmp_path: Path) -> None:
    tap = AudioTap(RATE, HOP)
    silent = RecordingSink(tmp_path / "silent.mkv")
    silent.open(W, H, 20.0)
    with pytest.raises(VideoOutputError, match="before it opens"):
        silent.expect_audio()
    feed = tap.subscribe(1.0)
    with pytest.raises(VideoOutputError, match="without an audio track"):
        silent.attach_audio(feed)
    assert feed.closed and tap.subscribers == 0  # the refused feed is not left filling up
    silent.show(grey_frame(0, 1.0))
    silent.close()
    with av.open(str(silent.path)) as container:
        assert len(container.streams.audio) == 0


def test_closing_the_recording_closes_its_feed(tmp_path: Path) -> None:
    tap = AudioTap(RATE, HOP)
    sink = RecordingSink(tmp_path / "feed.mkv", audio=True)
    sink.open(W, H, 20.0)
    sink.attach_audio(tap.subscribe(1.0))
    assert tap.subscribers == 1
    sink.show(grey_frame(0, 1.0))
    sink.close()
    assert tap.subscribers == 0
    late = tap.subscribe(1.0)
    sink.attach_audio(late)  # after close: taken and let go at once
    assert late.closed


# ---------------------------------------------------------------- end to end: heard, shown, recorded


class StampLog:
    """Which stamp each tick showed, and when: the camera's side of the recording."""

    name = "stamplog"

    def __init__(self) -> None:
        self.shown: dict[int, float] = {}

    def open(self, width: int, height: int, fps: float) -> None:
        pass

    def show(self, shown: ShownFrame) -> None:
        stamp = stamp_of(shown.frame)
        if stamp is not None:
            self.shown.setdefault(stamp, shown.t)

    def close(self) -> None:
        pass


def answer_clicks(feed: TapQueue, clock: OutputClock, heard: list[float], stop: threading.Event) -> None:
    """Like a visual reacting to the music: a frame stamped with the click's number as soon as it is heard."""
    quiet = 0
    while not stop.is_set():
        got = feed.get(timeout=0.1)
        if got is None:
            continue
        loud = np.flatnonzero(np.abs(got.samples) > 0.5)
        if len(loud) and quiet >= 10:
            heard.append(got.heard_at + int(loud[0]) / got.samplerate)
            clock.push(stamped(len(heard)))
        quiet = 0 if len(loud) else quiet + 1


async def test_each_click_and_the_frame_stamped_for_it_keep_their_live_distance_in_the_file(tmp_path: Path) -> None:
    fps, period = 30.0, 1 / 30.0
    intervals = [0.61, 0.83, 0.97, 0.71, 1.13, 0.77, 0.89]
    clicks = [1.0 + sum(intervals[:n]) for n in range(len(intervals) + 1)]  # each interval once
    source = WavFileSource(click_track(clicks[-1] + 1.0, clicks), RATE, hop_size=hop_size_for(RATE), realtime=True)
    analyzer = AudioAnalyzer(source)
    log = StampLog()
    sink = RecordingSink(tmp_path / "sync.mp4", audio=True, preset="ultrafast")
    clock = OutputClock(W, H, fps, [sink, log], slate_after=5.0)
    await clock.start()
    clock.push(stamped(0))
    heard: list[float] = []
    stop = threading.Event()
    answers = threading.Thread(target=answer_clicks, args=(analyzer.tap.subscribe(2.0), clock, heard, stop))
    try:
        answers.start()
        await asyncio.sleep(0.3)  # the analysis starts after the camera, as in a run
        sink.attach_audio(analyzer.tap.subscribe(2.0))
        await analyzer.start()
        assert analyzer.finished is not None
        await asyncio.wait_for(asyncio.shield(analyzer.finished), clicks[-1] + 15)
        await asyncio.sleep(0.3)
    finally:
        stop.set()
        await asyncio.to_thread(answers.join)
        await analyzer.aclose()
        await clock.aclose()

    assert len(heard) == len(clicks)
    live = [log.shown[k + 1] - heard[k] for k in range(len(clicks))]  # heard -> the camera showed its answer

    samples, rate, _ = decode_audio(sink.path)
    in_file = find_clicks(samples, rate)
    with av.open(str(sink.path)) as container:
        frames = [(frame.time, stamp_of(frame)) for frame in container.decode(video=0)]
    first_frame: dict[int | None, float] = {}
    for t, stamp in frames:
        if t is not None:
            first_frame.setdefault(stamp, t)
    assert len(in_file) == len(clicks)
    errors = [(first_frame[k + 1] - in_file[k]) - live[k] for k in range(len(clicks))]
    assert max(abs(e) for e in errors) <= period, [round(1000 * e, 1) for e in errors]
    # And the clicks are as far apart in the file as in the music.
    assert np.diff(in_file) == pytest.approx(np.diff(clicks), abs=0.002)
    assert sink.stats().audio_filled == 0.0


# ---------------------------------------------------------------- a whole run


def write_wav(path: Path, audio: np.ndarray, rate: int = RATE) -> None:
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes((np.clip(audio, -1, 1) * 32767).astype("<i2").tobytes())


@pytest.mark.parametrize("audio", ["file", "none"])
async def test_a_run_records_the_music_it_hears_and_none_with_no_audio(
    make_emulator: object, tmp_path: Path, audio: str
) -> None:
    emulator = await make_emulator()  # type: ignore[operator]
    clicks = [0.5, 1.7, 2.4]
    write_wav(tmp_path / "clicks.wav", click_track(3.0, clicks))
    source = "{source: file, path: clicks.wav}" if audio == "file" else "none"
    profile = tmp_path / "show.yaml"
    profile.write_text(
        f"scope: {{url: {emulator.url}, resolution: [256, 144], denoising: fast}}\n"
        f"inputs: {{audio: {source}}}\n"
        "video: {fps: 20}\n"
        "themes: {a: {prompts: [red desert]}}\n",
        encoding="utf-8",
    )
    target = tmp_path / "night.mkv"
    # The 3 s of music loop and a click of their second pass is wanted (6 s); with no audio a short run does.
    options = RunOptions(profile=str(profile), duration=6.0 if audio == "file" else 3.0, output=f"record:{target}")
    assert await run_bridge(options, status_stream=io.StringIO()) == 0
    with av.open(str(target)) as container:
        video_seconds = max(f.time or 0.0 for f in container.decode(video=0)) + 1 / 20
        if audio == "none":
            assert len(container.streams.audio) == 0
            return
    samples, rate, _ = decode_audio(target)
    found = find_clicks(samples, rate)
    assert len(found) >= 4  # the file loops: at least the first pass and a click of the second
    spacing = np.diff(found[:4])
    assert spacing == pytest.approx([1.2, 0.7, 1.1], abs=0.002)
    assert len(samples) / rate == pytest.approx(video_seconds, abs=0.06)


# ---------------------------------------------------------------- live input


def keep_pushing(clock: OutputClock, stop: threading.Event) -> None:
    """A new stamped frame every 5 ms, so that each tick shows a frame of its own."""
    n = 0
    while not stop.wait(0.005):
        n += 1
        clock.push(stamped(n))


async def test_a_live_input_is_recorded_where_its_sound_was_played(jack_server: Any, tmp_path: Path) -> None:
    """JACK plays a click track into the capture; each click's place in the file must be the place of the frame
    the camera showed when JACK played it, within one frame period."""
    from metadj_bridge.inputs.live_audio import LiveInputSource
    from tests.jackrig import SAMPLERATE, JackPlayer

    fps = 30.0
    clicks = [0.5 + 0.83 * n + 0.05 * (n % 3) for n in range(8)]
    track = click_track(clicks[-1] + 0.7, clicks, SAMPLERATE)
    source = LiveInputSource("system", hop_size=hop_size_for(SAMPLERATE), samplerate=SAMPLERATE)
    analyzer = AudioAnalyzer(source)
    log = StampLog()
    sink = RecordingSink(tmp_path / "live.mkv", audio=True, preset="ultrafast")
    clock = OutputClock(W, H, fps, [sink, log], slate_after=5.0)
    stop = threading.Event()
    frames = threading.Thread(target=keep_pushing, args=(clock, stop))
    await clock.start()
    frames.start()
    try:
        with JackPlayer(jack_server) as player:
            sink.attach_audio(analyzer.tap.subscribe(2.0))
            await analyzer.start()
            await asyncio.to_thread(player.connect_to_captures)
            await asyncio.sleep(0.3)
            player.play(track)
            await asyncio.to_thread(player.wait, len(track) / SAMPLERATE + 10)
            played = [player.played_time(round(t * SAMPLERATE)) for t in clicks]
            await asyncio.sleep(0.3)
            await analyzer.aclose()
    finally:
        stop.set()
        await asyncio.to_thread(frames.join)
        await analyzer.aclose()
        await clock.aclose()

    samples, rate, _ = decode_audio(sink.path)
    in_file = find_clicks(samples, rate)
    assert len(in_file) == len(clicks)
    with av.open(str(sink.path)) as container:
        decoded = [(frame.time, stamp_of(frame)) for frame in container.decode(video=0)]
    errors = []
    for k, at in enumerate(in_file):
        # The frame the file shows when the click sounds, and when the camera showed that frame live.
        time_in_file, stamp = max((t, s) for t, s in decoded if t is not None and t <= at)
        assert stamp is not None
        errors.append(log.shown[stamp] + (at - time_in_file) - played[k])
    if max(abs(e) for e in errors) > 1 / fps and source.overflows:
        # Starved of CPU, PortAudio lost input (and JACK's dummy clock ran late), so neither the count nor the
        # reference is the truth until the recording catches up: nothing to hold the file to here.
        pytest.skip(f"the machine is too loaded for a live capture: {source.overflows} PortAudio input overflows "
                    f"(errors {[round(1000 * e) for e in errors]} ms)")
    assert max(abs(e) for e in errors) <= 1 / fps, [round(1000 * e, 1) for e in errors]
