"""The performer's status view: the panel and the log line hold the snapshot's values; the view runs and stops."""

from __future__ import annotations

import asyncio
import copy
import io
import logging
from typing import Any

import pytest
from rich.console import Console

from metadj_bridge.status.view import StatusView, beat_lit, meter, plain_line, render
from tests.helpers import wait_for

SNAPSHOT: dict[str, Any] = {
    "version": "0.4.0", "uptime_s": 3723.3, "profile": "/shows/club-night.yaml",
    "scope": {"state": "streaming", "url": "http://127.0.0.1:8000", "server_version": "0.2.4", "emulator": True,
              "pipeline": "longlive", "load_progress": None, "fps_in": 19.6, "frames_in": 1234, "sessions": 2,
              "last_error": None},
    "sender": {"sent": 40, "merged": 1900},
    "tempo": {"bpm": 124.0, "source": "audio", "beat": 123.1, "phase": 0.1, "bar_position": 3.4, "beats_per_bar": 4},
    "audio": {"energy": 0.5, "low": 0.6, "mid": 0.3, "high": 0.2, "centroid": 0.4, "flatness": 0.1},
    "show": {"theme": "neon_city", "focus": 1,
             "prompts": [{"text": "a neon city at night, rain on wet asphalt, reflections, cinematic wide shot, "
                                  "volumetric light, blade runner mood, slow camera drift", "weight": 0.6},
                         {"text": "deep ocean", "weight": 0.4}],
             "transition": 0.6, "paused": False, "calm": False, "last_event": "theme neon_city -> deep_ocean",
             "last_control": "midi.cc.1.19 0.52"},
    "video": {"outputs": ["preview", "camera"], "frames_shown": 400, "repeats": 41, "slates": 3, "convert_ms": 0.4,
              "delay_ms": 17.0, "preview_url": "http://127.0.0.1:8765/"},
    "inputs": {"midi": ["MIDImix:MIDImix MIDI 1"], "osc": "127.0.0.1:7001", "link": False},
    "warnings": ["virtual camera: no v4l2loopback device", "OSC: 12 malformed packets"],
}

EMPTY: dict[str, Any] = {
    "version": "0.4.0", "uptime_s": 0.2, "profile": None,
    "scope": {"state": "connecting", "url": "http://10.0.0.5:8000", "server_version": None, "emulator": False,
              "pipeline": None, "load_progress": None, "fps_in": 0.0, "frames_in": 0, "sessions": 0,
              "last_error": "Scope at http://10.0.0.5:8000 refused the connection"},
    "sender": {"sent": 0, "merged": 0}, "tempo": None, "audio": None, "show": None, "video": None,
    "inputs": {"midi": [], "osc": None, "link": False}, "warnings": [],
}


def text_of(snapshot: dict[str, Any], width: int = 100) -> str:
    console = Console(file=io.StringIO(), width=width, force_terminal=True, color_system=None)
    console.print(render(snapshot, width))
    out = console.file.getvalue()
    assert isinstance(out, str)
    return out


def row(text: str, label: str) -> str:
    return next(line for line in text.splitlines() if line.lstrip("│ ").startswith(label))


def test_panel_holds_every_figure_in_100_columns() -> None:
    text = text_of(SNAPSHOT)
    for expected in ("streaming", "Scope 0.2.4", "(emulator)", "longlive", "in 19.6 fps", "1234 frames",
                     "124.0 BPM", "(audio)", "3.4/4", "neon_city", "60%", "a neon city at night", "(0.60)",
                     "deep ocean", "midi.cc.1.19 0.52", "theme neon_city -> deep_ocean", "sent 40", "merged 1900",
                     "shown 400", "repeats 41", "slates 3", "preview + camera", "delay 17 ms",
                     "MIDImix:MIDImix MIDI 1", "127.0.0.1:7001", "no v4l2loopback device", "12 malformed packets",
                     "club-night.yaml", "up 1:02:03", "0.4.0"):
        assert expected in text, expected
    assert max(len(line) for line in text.splitlines()) <= 100
    # The long prompt is cut to fit rather than wrapped over several rows.
    assert "slow camera drift" not in text


def test_narrow_terminal_keeps_the_essentials_within_its_width() -> None:
    text = text_of(SNAPSHOT, 50)
    assert max(len(line) for line in text.splitlines()) <= 50
    for expected in ("streaming", "124.0 BPM", "neon_city", "sent 40", "midi.cc.1.19 0.52"):
        assert expected in text, expected
    assert "http://127.0.0.1:8000" not in text  # details go first


def test_absent_parts_and_the_last_error_are_shown() -> None:
    text = text_of(EMPTY)
    assert "connecting" in text
    assert "Scope ?" in text
    assert "no tempo source" in text
    assert "refused the connection" in text
    assert "Audio" not in text and "Theme" not in text


def test_loading_shows_the_progress() -> None:
    snap = copy.deepcopy(EMPTY)
    snap["scope"].update(state="loading pipeline", load_progress="loading longlive (3/5)")
    assert "loading longlive (3/5)" in text_of(snap)
    assert "[loading pipeline: loading longlive (3/5)]" in plain_line(snap)


def test_beat_dot_flashes_on_the_beat_and_the_bar_shows_its_position() -> None:
    on_beat = text_of(SNAPSHOT)
    assert "●" in row(on_beat, "Beat")
    assert "□ □ □ ■" in row(on_beat, "Beat")
    late = copy.deepcopy(SNAPSHOT)
    late["tempo"].update(phase=0.6, bar_position=0.6)
    assert "●" not in row(text_of(late), "Beat")
    assert "■ □ □ □" in row(text_of(late), "Beat")
    assert beat_lit({"phase": 0.05}) and not beat_lit({"phase": 0.5}) and not beat_lit(None)


def test_meter_scales_and_clamps() -> None:
    assert meter(0.5, 8) == "████    "
    assert meter(1.7, 4) == "████"
    assert meter(-0.3, 4) == "    "
    assert meter(0.0625, 4) == "▎   "
    assert meter(None, 3) == "···"
    audio = row(text_of(SNAPSHOT), "Audio")
    assert "energy ████ " in audio and "low ████▊" in audio


def test_plain_line_holds_the_figures() -> None:
    line = plain_line(SNAPSHOT)
    for expected in ("[streaming]", "Scope 0.2.4 (emulator) longlive", "fps in 19.6", "frames 1234", "sent 40",
                     "merged 1900", "124.0 BPM (audio)", "energy 0.50", "theme neon_city (60%)", "warnings 2",
                     "out 400 (repeats 41, slates 3)", "last error: -"):
        assert expected in line, expected
    paused = copy.deepcopy(SNAPSHOT)
    paused["show"].update(paused=True, transition=None)
    assert "theme neon_city (paused)" in plain_line(paused)
    broken = copy.deepcopy(EMPTY)
    broken["scope"]["last_error"] = "x" * 300
    assert len(plain_line(broken)) < 200
    assert "\n" not in plain_line(broken)


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_output_frame_rate_comes_from_frames_shown() -> None:
    clock = Clock()
    snap = copy.deepcopy(SNAPSHOT)
    view = StatusView(lambda: snap, io.StringIO(), clock=clock)
    first = view.poll()
    assert first is not None and first["video"]["fps_out"] is None
    clock.now += 2.0
    snap["video"]["frames_shown"] += 60
    second = view.poll()
    assert second is not None and second["video"]["fps_out"] == pytest.approx(30.0)
    assert snap["video"].get("fps_out") is None  # the caller's snapshot is left alone
    assert "out 30.0 fps" in text_of(second)


async def test_plain_mode_logs_on_state_change_and_every_interval(caplog: pytest.LogCaptureFixture) -> None:
    clock = Clock()
    snap = copy.deepcopy(SNAPSHOT)
    polls = 0

    def snapshot() -> dict[str, Any]:
        nonlocal polls
        polls += 1
        return snap

    view = StatusView(snapshot, io.StringIO(), refresh_hz=200, log_interval=5.0, clock=clock)
    assert not view.tty
    caplog.set_level(logging.INFO, logger="metadj_bridge.status.view")

    def lines() -> list[str]:
        return [r.getMessage() for r in caplog.records if r.name == "metadj_bridge.status.view"]

    task = asyncio.create_task(view.run())
    try:
        await wait_for(lambda: len(lines()) == 1, 5, "the first status line")
        seen = polls
        await wait_for(lambda: polls >= seen + 10, 5, "more polls")
        assert len(lines()) == 1  # nothing new, nothing logged
        snap["scope"] = {**snap["scope"], "state": "reconnecting"}
        await wait_for(lambda: len(lines()) == 2, 5, "a line for the state change")
        assert lines()[1].startswith("[reconnecting]")
        clock.now += 5.0
        await wait_for(lambda: len(lines()) == 3, 5, "the periodic line")
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        view.finish()


async def test_live_panel_draws_and_log_lines_pass_above_it() -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    root = logging.getLogger()
    root.addHandler(handler)
    view = StatusView(lambda: SNAPSHOT, stream, refresh_hz=50, tty=True)
    task = asyncio.create_task(view.run())
    try:
        await wait_for(lambda: "124.0 BPM" in stream.getvalue(), 5, "the panel on the terminal")
        assert handler.stream is not stream  # log lines go through the live display while it runs
        logging.getLogger("metadj_bridge.test").warning("a controller was unplugged")
        await wait_for(lambda: "a controller was unplugged" in stream.getvalue(), 5, "the log line")
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        view.finish()
        root.removeHandler(handler)
    assert handler.stream is stream
    assert "neon_city" in stream.getvalue()
    view.finish()  # twice is harmless


async def test_a_failing_snapshot_does_not_end_the_view(caplog: pytest.LogCaptureFixture) -> None:
    calls = 0

    def snapshot() -> dict[str, Any]:
        nonlocal calls
        calls += 1
        if calls < 5:
            raise RuntimeError("sender gone")
        return SNAPSHOT

    stream = io.StringIO()
    view = StatusView(snapshot, stream, refresh_hz=100, tty=True)
    task = asyncio.create_task(view.run())
    try:
        await wait_for(lambda: "124.0 BPM" in stream.getvalue(), 5, "the panel after the snapshot recovers")
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    assert any("sender gone" in r.getMessage() for r in caplog.records)


def test_refresh_rate_must_be_positive() -> None:
    with pytest.raises(ValueError, match="refresh_hz"):
        StatusView(lambda: SNAPSHOT, io.StringIO(), refresh_hz=0)


def test_a_controller_still_awaited_is_named_on_the_inputs_row() -> None:
    snap = copy.deepcopy(SNAPSHOT)
    snap["inputs"].update(midi=[], midi_waiting=["Launch Control XL"])
    assert "MIDI - (waiting for 'Launch Control XL')" in row(text_of(snap), "Inputs")
    assert "waiting" not in row(text_of(SNAPSHOT), "Inputs")
