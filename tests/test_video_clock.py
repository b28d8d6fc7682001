"""The output clock and its pure parts: fitting frames into the camera size (closed forms), the slate, and the
clock's ticks, repeats, slates, skips and broken outputs."""

from __future__ import annotations

import functools
import logging
import threading
import time

import av
import numpy as np
import pytest

from metadj_bridge.errors import VideoOutputError
from metadj_bridge.lifecycle import State
from metadj_bridge.video.clock import OutputClock
from metadj_bridge.video.convert import (
    FrameFitter,
    black_i420,
    fit_geometry,
    i420_planes,
    i420_to_nv12,
    i420_to_rgb,
)
from metadj_bridge.video.sink import ShownFrame
from metadj_bridge.video.slate import (
    RECONNECTING,
    STOPPED,
    WAITING,
    reason_from_session,
    slate_i420,
)
from tests.helpers import wait_for


def flat_yuv(width: int, height: int, y: int, u: int, v: int) -> av.VideoFrame:
    """A yuv420p frame of one colour, any size (odd sizes have rounded-up chroma planes)."""
    frame = av.VideoFrame(width, height, "yuv420p")
    for plane, value in zip(frame.planes, (y, u, v), strict=True):
        plane.update(bytes([value]) * plane.buffer_size)
    return frame


def planes_of(shown: av.VideoFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return i420_planes(shown.to_ndarray(), shown.width, shown.height)


# ---------------------------------------------------------------------------------------------- geometry


@pytest.mark.parametrize(
    ("src", "dst", "expected"),
    [
        ((256, 144), (1024, 576), (0, 0, 1024, 576)),  # same aspect: no bars
        ((1920, 1080), (1024, 576), (0, 0, 1024, 576)),
        ((320, 576), (1024, 576), (352, 0, 320, 576)),  # the seed's portrait avatar size: pillarbox
        ((1920, 1080), (640, 480), (0, 60, 640, 360)),  # 16:9 into 4:3: letterbox
        ((333, 111), (640, 360), (0, 74, 640, 212)),  # odd: 213.3 rows, rounded down to even
        ((101, 99), (64, 36), (14, 0, 36, 36)),  # odd, nearly square
        ((1, 1000), (64, 36), (30, 0, 2, 36)),  # a sliver still gets 2 columns
    ],
)
def test_fit_geometry_closed_forms(
    src: tuple[int, int], dst: tuple[int, int], expected: tuple[int, int, int, int]
) -> None:
    fit = fit_geometry(*src, *dst)
    assert (fit.x, fit.y, fit.w, fit.h) == expected
    assert fit.x % 2 == fit.y % 2 == fit.w % 2 == fit.h % 2 == 0
    # centred: the bars on both sides differ by less than one chroma sample
    assert abs((dst[0] - fit.w - fit.x) - fit.x) <= 2 and abs((dst[1] - fit.h - fit.y) - fit.y) <= 2


def test_fit_geometry_names_the_bars() -> None:
    assert fit_geometry(1920, 1080, 640, 480).bars == "letterbox"
    assert fit_geometry(320, 576, 1024, 576).bars == "pillarbox"
    assert fit_geometry(256, 144, 1024, 576).bars == "none"


@pytest.mark.parametrize("size", [(641, 360), (640, 361), (0, 2)])
def test_odd_output_sizes_are_refused(size: tuple[int, int]) -> None:
    with pytest.raises(ValueError, match="even"):
        FrameFitter(*size)


# ---------------------------------------------------------------------------------------------- pixels


def test_pillarbox_places_a_known_colour_between_black_bars() -> None:
    fitter = FrameFitter(1024, 576)
    out = fitter.fit(flat_yuv(320, 576, 100, 60, 200))
    y, u, v = i420_planes(out, 1024, 576)
    assert (y[:, 352:672] == 100).all() and (u[:, 176:336] == 60).all() and (v[:, 176:336] == 200).all()
    for bar in (np.s_[:, :352], np.s_[:, 672:]):
        assert (y[bar] == 16).all()
    assert (u[:, :176] == 128).all() and (v[:, 336:] == 128).all()


@pytest.mark.parametrize(("src_w", "src_h"), [(255, 143), (333, 111), (97, 200)])
def test_odd_input_sizes_fill_exactly_the_fitted_rectangle(src_w: int, src_h: int) -> None:
    geo = fit_geometry(src_w, src_h, 320, 180)
    out = FrameFitter(320, 180).fit(flat_yuv(src_w, src_h, 180, 90, 160))
    y, u, v = i420_planes(out, 320, 180)
    inside = np.zeros((180, 320), bool)
    inside[geo.y : geo.y + geo.h, geo.x : geo.x + geo.w] = True
    assert (y[inside] == 180).all() and (y[~inside] == 16).all()
    cin = inside[::2, ::2]
    assert (u[cin] == 90).all() and (v[cin] == 160).all()
    assert (u[~cin] == 128).all() and (v[~cin] == 128).all()


def test_a_size_change_repaints_the_bars() -> None:
    fitter = FrameFitter(320, 180)
    fitter.fit(flat_yuv(256, 144, 200, 128, 128))  # fills the whole canvas
    out = fitter.fit(flat_yuv(90, 160, 50, 128, 128)).copy()  # portrait: pillarbox
    geo = fitter.geometry(90, 160)
    y = i420_planes(out, 320, 180)[0]
    assert geo.bars == "pillarbox"
    assert (y[:, : geo.x] == 16).all() and (y[:, geo.x + geo.w :] == 16).all()
    assert (y[:, geo.x : geo.x + geo.w] == 50).all()
    again = fitter.fit(flat_yuv(256, 144, 70, 128, 128))
    assert (i420_planes(again, 320, 180)[0] == 70).all()


def test_rgb_input_is_converted_too() -> None:
    grey = av.VideoFrame.from_ndarray(np.full((36, 64, 3), 128, np.uint8), format="rgb24")
    out = FrameFitter(64, 36).fit(grey)
    y, u, v = i420_planes(out, 64, 36)
    assert abs(int(np.median(y)) - 126) <= 1  # 16 + 128 * 219 / 255
    assert abs(int(np.median(u)) - 128) <= 1 and abs(int(np.median(v)) - 128) <= 1


def test_nv12_interleaves_u_and_v() -> None:
    buf = black_i420(4, 2)
    y, u, v = i420_planes(buf, 4, 2)
    y[:] = np.arange(8).reshape(2, 4)
    u[:] = [[101, 102]]
    v[:] = [[201, 202]]
    assert i420_to_nv12(buf, 4, 2).tolist() == [0, 1, 2, 3, 4, 5, 6, 7, 101, 201, 102, 202]


def test_rgb_from_limited_range_grey_and_black() -> None:
    buf = black_i420(8, 4)
    rgb = i420_to_rgb(buf, 8, 4)
    assert rgb.shape == (4, 8, 3) and int(rgb.max()) <= 1  # limited-range black is RGB 0
    i420_planes(buf, 8, 4)[0][:] = 126
    assert abs(int(np.median(i420_to_rgb(buf, 8, 4))) - 128) <= 1


# ---------------------------------------------------------------------------------------------- slate


def test_slate_is_dark_with_text_and_cached() -> None:
    slate = slate_i420(RECONNECTING, 320, 180)
    y, u, v = i420_planes(slate, 320, 180)
    assert (u == 128).all() and (v == 128).all()
    assert int(np.median(y)) == 16 and int(y.max()) > 150  # dark, with bright text
    rows = np.nonzero((y > 100).any(axis=1))[0]
    assert 60 < rows.mean() < 120  # the text sits in the middle
    assert slate_i420(RECONNECTING, 320, 180) is slate
    assert not np.array_equal(slate_i420(WAITING, 320, 180), slate)
    with pytest.raises(ValueError):
        slate[0, 0] = 1  # shared: read-only


class _SessionState:
    def __init__(self, value: str) -> None:
        self.value = value


class _SessionLike:
    def __init__(self, state: str, frames_received: int) -> None:
        self.state = _SessionState(state)
        self.frames_received = frames_received


@pytest.mark.parametrize(
    ("state", "frames", "expected"),
    [("streaming", 10, None), ("reconnecting", 10, RECONNECTING), ("loading pipeline", 0, WAITING),
     ("connecting", 5, RECONNECTING)],
)
def test_reason_from_session_state(state: str, frames: int, expected: str | None) -> None:
    assert reason_from_session(_SessionLike(state, frames))() == expected


# ---------------------------------------------------------------------------------------------- clock


class ListSink:
    """A FrameSink that keeps what it is shown (the clock's contract: all calls from the clock thread)."""

    def __init__(self, name: str = "list") -> None:
        self.name = name
        self.shown: list[ShownFrame] = []
        self.opened: tuple[int, int, float] | None = None
        self.closed = 0
        self.threads: set[str] = set()
        self.block_once: float = 0.0

    def open(self, width: int, height: int, fps: float) -> None:
        self.threads.add(threading.current_thread().name)
        self.opened = (width, height, fps)

    def show(self, shown: ShownFrame) -> None:
        self.threads.add(threading.current_thread().name)
        self.shown.append(shown)
        if self.block_once:
            time.sleep(self.block_once)
            self.block_once = 0.0

    def close(self) -> None:
        self.closed += 1

    def last_y_is(self, value: int) -> bool:
        return bool(self.shown) and self.y_of(self.shown[-1]) == value

    def y_of(self, shown: ShownFrame) -> int:
        return int(np.median(planes_of(shown.frame)[0]))


async def test_clock_shows_live_then_repeats_then_the_slate_with_its_reason() -> None:
    sink = ListSink()
    reason: list[str | None] = [None]
    clock = OutputClock(64, 36, 50, [sink], slate_after=0.3, reason=lambda: reason[0])
    await clock.start()
    try:
        await wait_for(lambda: len(sink.shown) >= 3, 5, "slate ticks before the first frame")
        assert sink.opened == (64, 36, 50) and sink.threads == {"video-output-clock"}
        for value in (60, 90, 120):
            clock.push(flat_yuv(64, 36, value, 128, 128))
            await wait_for(functools.partial(sink.last_y_is, value), 5, f"frame {value}")
        await wait_for(lambda: sink.shown[-1].kind == "slate", 5, "the slate")
        reason[0] = RECONNECTING
        await wait_for(lambda: sink.y_of(sink.shown[-1]) == 16 and np.array_equal(
            sink.shown[-1].frame.to_ndarray(), slate_i420(RECONNECTING, 64, 36)), 5, "the reconnecting slate")
    finally:
        await clock.aclose()
    shown = list(sink.shown)
    assert [s.index for s in shown] == list(range(len(shown)))
    assert [s.frame.pts for s in shown] == list(range(len(shown)))
    kinds = [s.kind for s in shown]
    first_live = kinds.index("live")
    assert set(kinds[:first_live]) == {"slate"}  # nothing to repeat yet
    assert np.array_equal(shown[0].frame.to_ndarray(), slate_i420(WAITING, 64, 36))
    live_values = [sink.y_of(s) for s in shown if s.kind == "live"]
    assert live_values == [60, 90, 120]
    after = shown[len(kinds) - 1 - kinds[::-1].index("live") + 1 :]
    assert after[0].kind == "repeat" and sink.y_of(after[0]) == 120
    first_slate = next(s for s in after if s.kind == "slate")
    assert first_slate.arrived is None
    assert np.array_equal(first_slate.frame.to_ndarray(), slate_i420(STOPPED, 64, 36))
    repeats = [s for s in after if s.kind == "repeat"]
    assert all(s.arrived == shown[len(kinds) - 1 - kinds[::-1].index("live")].arrived for s in repeats)
    stats = clock.stats()
    assert (stats.frames_in, stats.live, stats.frames_shown) == (3, 3, len(shown))
    assert stats.repeats + stats.slates + stats.live == stats.frames_shown
    assert stats.convert_ms is not None and stats.delay_ms is not None and stats.sinks == ("list",)
    assert sink.closed == 1


async def test_only_the_newest_pushed_frame_is_shown() -> None:
    sink = ListSink()
    clock = OutputClock(64, 36, 5, [sink], slate_after=10)
    await clock.start()
    try:
        await wait_for(lambda: sink.shown, 5, "a first tick")
        for value in range(30, 130, 10):  # all within one 200 ms tick
            clock.push(flat_yuv(64, 36, value, 128, 128))
        await wait_for(lambda: any(s.kind == "live" for s in sink.shown), 5, "a live frame")
    finally:
        await clock.aclose()
    live = [s for s in sink.shown if s.kind == "live"]
    assert sink.y_of(live[-1]) == 120
    assert clock.stats().frames_in == 10 and len(live) < 10


async def test_resolution_change_mid_stream_is_fitted_into_the_fixed_size() -> None:
    sink = ListSink()
    clock = OutputClock(320, 180, 50, [sink], slate_after=10)
    await clock.start()
    try:
        clock.push(flat_yuv(256, 144, 150, 128, 128))
        await wait_for(lambda: any(s.kind == "live" for s in sink.shown), 5, "the wide frame")
        clock.push(flat_yuv(90, 160, 80, 128, 128))  # a pipeline reload to a portrait size
        await wait_for(lambda: sink.y_of(sink.shown[-1]) != 150, 5, "the portrait frame")
    finally:
        await clock.aclose()
    wide = next(s for s in sink.shown if s.kind == "live")
    portrait = [s for s in sink.shown if s.kind == "live"][-1]
    assert (wide.frame.width, wide.frame.height) == (portrait.frame.width, portrait.frame.height) == (320, 180)
    assert (planes_of(wide.frame)[0] == 150).all()
    geo = fit_geometry(90, 160, 320, 180)
    y = planes_of(portrait.frame)[0]
    assert (y[:, geo.x : geo.x + geo.w] == 80).all()
    assert (y[:, : geo.x] == 16).all() and (y[:, geo.x + geo.w :] == 16).all()


async def test_a_stall_skips_ticks_instead_of_bursting() -> None:
    sink = ListSink()
    clock = OutputClock(64, 36, 50, [sink])
    await clock.start()
    try:
        await wait_for(lambda: len(sink.shown) >= 2, 5, "two ticks")
        sink.block_once = 0.25  # about 12 periods
        await wait_for(lambda: clock.stats().skipped_ticks > 0 and len(sink.shown) > 10, 5, "ticks after the stall")
    finally:
        await clock.aclose()
    assert [s.index for s in sink.shown] == list(range(len(sink.shown)))
    assert clock.stats().skipped_ticks >= 5


async def test_frames_pushed_faster_than_they_convert_do_not_hold_the_ticks_back() -> None:
    sink = ListSink()
    clock = OutputClock(64, 36, 50, [sink])
    big = flat_yuv(1920, 1080, 99, 128, 128)  # about a millisecond to scale down
    stop = threading.Event()

    def flood() -> None:
        while not stop.is_set():
            clock.push(big)

    await clock.start()
    flooder = threading.Thread(target=flood, daemon=True)
    flooder.start()
    try:
        await wait_for(lambda: clock.stats().live >= 10, 10, "ten ticks during the flood")
    finally:
        stop.set()
        flooder.join()
        await clock.aclose()
    assert clock.stats().frames_in > clock.stats().live
    assert [s.index for s in sink.shown] == list(range(len(sink.shown)))


class BrokenSink(ListSink):
    def __init__(self, name: str, *, open_error: Exception | None = None, show_error: Exception | None = None) -> None:
        super().__init__(name)
        self.open_error = open_error
        self.show_error = show_error

    def open(self, width: int, height: int, fps: float) -> None:
        if self.open_error is not None:
            raise self.open_error
        super().open(width, height, fps)

    def show(self, shown: ShownFrame) -> None:
        super().show(shown)
        if self.show_error is not None:
            raise self.show_error


async def test_broken_outputs_are_dropped_or_kept_and_the_clock_still_closes(caplog: pytest.LogCaptureFixture) -> None:
    good = ListSink("good")
    no_device = BrokenSink("vcam", open_error=VideoOutputError("no camera here: do this"))
    crashing = BrokenSink("crashy", show_error=RuntimeError("disk full"))
    clock = OutputClock(64, 36, 50, [no_device, crashing, good])
    with caplog.at_level(logging.WARNING, logger="metadj_bridge.video.clock"):
        await clock.start()
        try:
            assert [s.name for s in clock.sinks] == ["crashy", "good"]
            await wait_for(lambda: len(good.shown) >= 10 and len(crashing.shown) >= 10, 5, "ticks on both")
        finally:
            await clock.aclose()
    assert good.closed == crashing.closed == 1 and no_device.closed == 0
    off = [r for r in caplog.records if "no camera here: do this" in r.getMessage()]
    assert len(off) == 1 and off[0].levelno == logging.WARNING
    crash_logs = [r for r in caplog.records if "crashy" in r.getMessage()]
    assert 1 <= len(crash_logs) < len(crashing.shown)  # rate-limited
    assert crash_logs[0].exc_info is not None


async def test_lifecycle_close_twice_and_no_reuse() -> None:
    unused = OutputClock(64, 36, 30, [])
    await unused.aclose()  # never started
    clock = OutputClock(64, 36, 30, [ListSink()])
    await clock.start()
    await clock.start()  # already running: nothing new
    await clock.aclose()
    await clock.aclose()
    assert clock.state is State.CLOSED
    with pytest.raises(RuntimeError, match="closed"):
        await clock.start()
    with pytest.raises(ValueError, match="fps"):
        OutputClock(64, 36, 0, [])


async def test_a_frame_that_cannot_be_converted_does_not_stop_the_camera(caplog: pytest.LogCaptureFixture) -> None:
    sink = ListSink()
    clock = OutputClock(64, 36, 50, [sink], slate_after=10)
    await clock.start()
    try:
        clock.push(flat_yuv(64, 36, 60, 128, 128))
        await wait_for(functools.partial(sink.last_y_is, 60), 5, "the first picture")
        # Something that is not a picture reaches the clock (a decoder or listener gone wrong): it cannot be converted.
        clock.push(av.AudioFrame(format="s16", layout="mono", samples=16))  # type: ignore[arg-type]
        shown_before = len(sink.shown)
        await wait_for(lambda: len(sink.shown) > shown_before + 10, 5, "ticks after the bad frame")
        clock.push(flat_yuv(64, 36, 90, 128, 128))
        await wait_for(functools.partial(sink.last_y_is, 90), 5, "the next good picture")
    finally:
        await clock.aclose()
    after_bad = sink.shown[shown_before:]
    assert all(s.kind in ("repeat", "live") for s in after_bad)  # the last good picture held, no gap, no slate
    assert [s.index for s in sink.shown] == list(range(len(sink.shown)))
    errors = [r for r in caplog.records if "could not be converted" in r.getMessage()]
    assert len(errors) == 1 and errors[0].exc_info is not None
