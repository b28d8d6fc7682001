"""Replay: a show log drives the emulator with its messages, in order, at their times."""

from __future__ import annotations

import asyncio
import io
from pathlib import Path
from typing import Any

import pytest

from metadj_bridge.cli import main
from metadj_bridge.emulator import ScopeEmulator
from metadj_bridge.showlog.log import ShowLog, read_show_log, show_log_header
from metadj_bridge.showlog.replay import ReplayOptions, replay_show
from tests.conftest import SMALL, emulator_get

#: Far enough apart that the sender never merges two (one chunk is 4 frames at 20 fps: 0.2 s).
SPACING = 0.5

MESSAGES: list[dict[str, Any]] = [
    {"noise_scale": 0.3, "not_a_parameter": 1},
    {"transition": {"target_prompts": [{"text": "forest", "weight": 1.0}], "num_steps": 4,
                    "temporal_interpolation_method": "linear"}},
    {"noise_scale": 0.6, "reset_cache": True},
    {"prompts": [{"text": "forest", "weight": 0.5}, {"text": "neon city", "weight": 0.5}]},
]
#: What Scope should receive: the same, less the key the pipeline does not know (skipped with a warning).
EXPECTED = [{"noise_scale": 0.3}, *MESSAGES[1:]]


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def write_log(path: Path, messages: list[dict[str, Any]], *, first: float = 3.0) -> None:
    clock = FakeClock()
    header = show_log_header(
        profile="show.yaml", pipeline="longlive", width=SMALL["width"], height=SMALL["height"],
        initial={"prompts": [{"text": "neon city", "weight": 1.0}], "noise_scale": 0.5},
        denoising_step_list=[1000, 750],
    )
    show = ShowLog(path, header, clock=clock)
    for i, message in enumerate(messages):
        show.record(message, first + i * SPACING)
    show.event("theme 2 (forest)", first + SPACING)
    clock.now = first + len(messages) * SPACING
    show.close()


async def test_replay_sends_the_logged_messages_in_order_at_their_times(
    tmp_path: Path, emulator: ScopeEmulator
) -> None:
    path = tmp_path / "show.jsonl"
    write_log(path, MESSAGES)
    report = await replay_show(ReplayOptions(str(path), scope_url=emulator.url, chunk_frames=4),
                               status_stream=io.StringIO())
    assert report.replayed == report.total == len(MESSAGES)
    assert report.sent == len(MESSAGES)
    assert not report.interrupted and report.rejected == 1

    events = await emulator_get(emulator.url, "/_emulator/log")
    offer = events["offers"][-1]
    assert offer["pipeline_ids"] == ["longlive"]
    assert offer["prompts"] == [{"text": "neon city", "weight": 1.0}]
    assert offer["noise_scale"] == 0.5
    assert offer["denoising_step_list"] == [1000, 750]
    received = events["received"]
    assert [r["message"] for r in received] == EXPECTED
    # Timing, for the report: how far each message's offset from the first drifted from the log's.
    offsets = [r["t"] - received[0]["t"] for r in received]
    drift = [round(got - i * SPACING, 3) for i, got in enumerate(offsets)]
    print(f"replay timing drift per message (s): {drift}")
    # Paced like the show, not sent in one burst (a slow machine only stretches this).
    assert offsets[-1] >= 0.5 * (len(MESSAGES) - 1) * SPACING


async def test_replay_stops_when_asked(tmp_path: Path, emulator: ScopeEmulator) -> None:
    path = tmp_path / "long.jsonl"
    write_log(path, [{"noise_scale": round(0.1 * i, 1)} for i in range(10)])
    stop = asyncio.Event()

    async def press_ctrl_c() -> None:
        while True:
            log = await emulator_get(emulator.url, "/_emulator/log")
            if log["received"]:
                stop.set()
                return
            await asyncio.sleep(0.05)

    presser = asyncio.ensure_future(press_ctrl_c())
    report = await replay_show(ReplayOptions(str(path), scope_url=emulator.url, chunk_frames=4), stop=stop,
                               status_stream=io.StringIO())
    await presser
    assert report.interrupted
    assert 1 <= report.replayed < 10


def test_cli_replays_on_the_built_in_emulator(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "short.jsonl"
    write_log(path, [{"noise_scale": 0.4}], first=0.5)
    assert main(["replay", str(path), "--speed", "4", "--emulator-fps", "30"]) == 0
    assert read_show_log(path).sent[0].message == {"noise_scale": 0.4}


def test_cli_refuses_a_bad_speed(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "short.jsonl"
    write_log(path, [{"noise_scale": 0.4}])
    assert main(["replay", str(path), "--speed", "0"]) == 1
    assert "error: --speed: 0.0 must be a number > 0" in capsys.readouterr().err
