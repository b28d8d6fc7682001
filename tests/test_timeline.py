"""Timeline export: the structure of Scope's own timeline files, ranges that follow the show."""

from __future__ import annotations

import itertools
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from metadj_bridge.cli import main
from metadj_bridge.showlog.export import build_timeline
from metadj_bridge.showlog.log import ShowLog, read_show_log, show_log_header

FIXTURES = Path(__file__).parent / "fixtures" / "timeline"
PANDA = json.loads((FIXTURES / "timeline-panda.json").read_text())
MELT = json.loads((FIXTURES / "timeline-reward-forcing-melt.json").read_text())


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def neon(weight: float = 1.0) -> dict[str, Any]:
    return {"text": "neon city", "weight": weight}


def forest(weight: float = 1.0) -> dict[str, Any]:
    return {"text": "forest", "weight": weight}


def write_known_show(path: Path) -> None:
    """Neon city from the start; a theme switch to a forest/neon blend at 10 s whose weights move at 15 s;
    a plain prompt change at 20 s; the show ends at 30 s."""
    clock = FakeClock()
    header = show_log_header(
        profile="show.yaml", pipeline="longlive", width=1024, height=576,
        initial={"prompts": [neon()], "noise_scale": 0.55, "manage_cache": True},
        denoising_step_list=[1000, 500, 250],
    )
    show = ShowLog(path, header, clock=clock)
    show.record({"noise_scale": 0.8}, 4.0)
    show.event("theme 2 (forest)", 10.0)
    show.record({"transition": {"target_prompts": [forest(0.5), neon(0.5)], "num_steps": 8,
                                "temporal_interpolation_method": "slerp"}}, 10.0)
    show.record({"prompts": [forest(0.9), neon(0.1)]}, 15.0)
    show.record({"prompts": [{"text": "desert", "weight": 1.0}], "reset_cache": True}, 20.0)
    show.record({"prompts": [{"text": "desert", "weight": 1.0}]}, 20.0)  # same instant: no empty range
    clock.now = 30.0
    show.close()


def shape(value: Any) -> Any:
    """The keys and JSON types of a value, recursively (lists by their first item)."""
    if isinstance(value, dict):
        return {k: shape(v) for k, v in value.items()}
    if isinstance(value, list):
        return [shape(value[0])] if value else []
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, (int, float)):
        return "number"
    return type(value).__name__


def test_export_has_the_keys_and_types_of_scopes_example(tmp_path: Path) -> None:
    log = tmp_path / "show.jsonl"
    write_known_show(log)
    timeline = build_timeline(read_show_log(log))
    assert list(timeline) == list(PANDA)
    assert timeline["version"] == PANDA["version"] == "2.0"
    assert shape(timeline["settings"]) == shape(PANDA["settings"])
    assert list(timeline["settings"]) == list(PANDA["settings"])
    assert shape(timeline["exportedAt"]) == shape(PANDA["exportedAt"])
    datetime.fromisoformat(timeline["exportedAt"])
    panda_range = shape(PANDA["prompts"][0])
    melt_range = shape(MELT["prompts"][0])
    for item in timeline["prompts"]:
        if "transitionSteps" in item:  # the optional fields, as Scope's later exports write them
            assert shape(item) == melt_range
        else:
            assert shape(item) == panda_range


def test_ranges_follow_theme_switches_and_prompt_changes(tmp_path: Path) -> None:
    log = tmp_path / "show.jsonl"
    write_known_show(log)
    timeline = build_timeline(read_show_log(log), exported_at=datetime(2026, 11, 24, 21, 0, tzinfo=UTC))
    ranges = timeline["prompts"]
    assert [(r["startTime"], r["endTime"]) for r in ranges] == [(0, 10), (10, 20), (20, 30)]
    assert ranges[0]["prompts"] == [{"text": "neon city", "weight": 100.0}]
    assert "transitionSteps" not in ranges[0]
    # The theme switch: a transition range, weights as the time-weighted blend (5 s at 50/50, 5 s at 90/10).
    assert ranges[1]["transitionSteps"] == 8
    assert ranges[1]["temporalInterpolationMethod"] == "slerp"
    assert [p["text"] for p in ranges[1]["prompts"]] == ["forest", "neon city"]
    assert [p["weight"] for p in ranges[1]["prompts"]] == pytest.approx([70.0, 30.0])
    assert ranges[2]["prompts"] == [{"text": "desert", "weight": 100.0}]
    # Settings: the show's start values, the load's denoising steps.
    settings = timeline["settings"]
    assert settings["pipelineId"] == "longlive"
    assert settings["resolution"] == {"height": 576, "width": 1024}
    assert settings["denoisingSteps"] == [1000, 500, 250]
    assert settings["noiseScale"] == 0.55
    assert settings["seed"] == 42
    assert timeline["exportedAt"] == "2026-11-24T21:00:00.000Z"


def test_ranges_end_where_every_range_starts_after_the_one_before(tmp_path: Path) -> None:
    """Contiguous, ordered, non-empty ranges: what Scope's editor lays out without overlaps."""
    clock = FakeClock()
    log = tmp_path / "many.jsonl"
    show = ShowLog(log, show_log_header(pipeline="longlive", width=832, height=480, initial={}), clock=clock)
    for i in range(20):
        show.record({"prompts": [{"text": f"theme {i % 3}", "weight": 1.0}]}, 1.0 + i * 0.5)
    clock.now = 12.0
    show.close()
    ranges = build_timeline(read_show_log(log))["prompts"]
    assert ranges[0]["startTime"] == 1
    assert ranges[-1]["endTime"] == 12
    assert all(r["endTime"] > r["startTime"] for r in ranges)
    assert all(a["endTime"] == b["startTime"] for a, b in itertools.pairwise(ranges))
    assert len(ranges) == 20


def test_cli_writes_the_timeline_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    log = tmp_path / "show.jsonl"
    write_known_show(log)
    out = tmp_path / "show.timeline.json"
    assert main(["export-timeline", str(log), "-o", str(out)]) == 0
    written = json.loads(out.read_text())
    assert len(written["prompts"]) == 3
    assert str(out) in capsys.readouterr().out


def test_cli_default_output_sits_beside_the_log(tmp_path: Path) -> None:
    log = tmp_path / "friday.jsonl"
    write_known_show(log)
    assert main(["export-timeline", str(log)]) == 0
    assert json.loads((tmp_path / "friday.timeline.json").read_text())["version"] == "2.0"


def test_cli_reports_a_broken_log_with_its_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    log = tmp_path / "broken.jsonl"
    log.write_text('{"type": "sent", "t": 0, "message": {}}\n')
    assert main(["export-timeline", str(log), "-o", str(tmp_path / "x.json")]) == 1
    assert f"error: {log}:1:" in capsys.readouterr().err
