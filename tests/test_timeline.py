"""Timeline export: a Scope workflow with the structure of Scope's own workflow files, entries that follow the show.

Whether Scope 0.2.4 would import it is ``tests/test_workflow_import.py``."""

from __future__ import annotations

import itertools
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from metadj_bridge.cli import main
from metadj_bridge.showlog.export import build_workflow
from metadj_bridge.showlog.log import ShowLog, read_show_log, show_log_header

FIXTURES = Path(__file__).parent / "fixtures" / "timeline"
#: A workflow Scope itself made (its "Mythical Creature" starter), the reference for keys and types.
STARTER = json.loads((FIXTURES / "starter-mythical-creature.scope-workflow.json").read_text())


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


def test_export_has_the_keys_and_types_of_scopes_own_workflows(tmp_path: Path) -> None:
    log = tmp_path / "show.jsonl"
    write_known_show(log)
    workflow = build_workflow(read_show_log(log))
    assert workflow["format"] == STARTER["format"] == "scope-workflow"
    assert workflow["format_version"] == STARTER["format_version"]
    assert shape(workflow["metadata"]) == shape(STARTER["metadata"])
    datetime.fromisoformat(workflow["metadata"]["created_at"])
    main_pipeline, theirs = workflow["pipelines"][0], STARTER["pipelines"][0]
    assert set(theirs) <= set(main_pipeline)
    assert shape(main_pipeline["source"]) == shape(theirs["source"]) and main_pipeline["loras"] == []
    params = main_pipeline["params"]
    for key in set(params) & set(theirs["params"]):
        assert shape(params[key]) == shape(theirs["params"][key]), key
    assert shape(workflow["prompts"]) == shape(STARTER["prompts"])
    for entry in workflow["timeline"]["entries"]:  # Scope's WorkflowTimelineEntry (workflowApi.ts)
        assert {"start_time", "end_time", "prompts"} <= set(entry)
        assert set(entry) <= {"start_time", "end_time", "prompts", "transition_steps", "temporal_interpolation_method"}
        assert shape(entry["prompts"]) == shape(STARTER["prompts"])


def test_entries_follow_theme_switches_and_prompt_changes(tmp_path: Path) -> None:
    log = tmp_path / "show.jsonl"
    write_known_show(log)
    workflow = build_workflow(read_show_log(log), exported_at=datetime(2026, 11, 24, 21, 0, tzinfo=UTC))
    entries = workflow["timeline"]["entries"]
    assert [(r["start_time"], r["end_time"]) for r in entries] == [(0, 10), (10, 20), (20, 30)]
    assert entries[0]["prompts"] == [{"text": "neon city", "weight": 100.0}]
    assert "transition_steps" not in entries[0]
    # The theme switch: a transition entry, weights as the time-weighted blend (5 s at 50/50, 5 s at 90/10).
    assert entries[1]["transition_steps"] == 8
    assert entries[1]["temporal_interpolation_method"] == "slerp"
    assert [p["text"] for p in entries[1]["prompts"]] == ["forest", "neon city"]
    assert [p["weight"] for p in entries[1]["prompts"]] == pytest.approx([70.0, 30.0])
    assert entries[2]["prompts"] == [{"text": "desert", "weight": 100.0}]
    # The first entry's prompts are the prompt state Scope shows before the timeline plays.
    assert workflow["prompts"] == entries[0]["prompts"]
    assert (workflow["transition_steps"], workflow["temporal_interpolation_method"]) == (8, "slerp")
    # Params: the show's start values (only those it set), the load's size and denoising steps.
    pipeline = workflow["pipelines"][0]
    assert (pipeline["pipeline_id"], pipeline["source"], pipeline["role"]) == ("longlive", {"type": "builtin"}, "main")
    assert pipeline["params"] == {"width": 1024, "height": 576, "input_mode": "text", "vace_enabled": False,
                                  "denoising_step_list": [1000, 500, 250], "noise_scale": 0.55,
                                  "manage_cache": True}
    assert workflow["metadata"]["created_at"] == "2026-11-24T21:00:00.000Z"


def test_a_show_without_prompts_has_no_timeline(tmp_path: Path) -> None:
    clock = FakeClock()
    log = tmp_path / "quiet.jsonl"
    show = ShowLog(log, show_log_header(pipeline="passthrough", width=512, height=512, input_mode="video",
                                        initial={}), clock=clock)
    show.record({"noise_scale": 0.4}, 1.0)
    clock.now = 5.0
    show.close()
    workflow = build_workflow(read_show_log(log))
    assert workflow["timeline"] is None and "prompts" not in workflow
    assert workflow["pipelines"][0]["params"]["input_mode"] == "video"


def test_ranges_end_where_every_range_starts_after_the_one_before(tmp_path: Path) -> None:
    """Contiguous, ordered, non-empty entries: what Scope's timeline lays out without overlaps."""
    clock = FakeClock()
    log = tmp_path / "many.jsonl"
    show = ShowLog(log, show_log_header(pipeline="longlive", width=832, height=480, initial={}), clock=clock)
    for i in range(20):
        show.record({"prompts": [{"text": f"theme {i % 3}", "weight": 1.0}]}, 1.0 + i * 0.5)
    clock.now = 12.0
    show.close()
    ranges = build_workflow(read_show_log(log))["timeline"]["entries"]
    assert ranges[0]["start_time"] == 1
    assert ranges[-1]["end_time"] == 12
    assert all(r["end_time"] > r["start_time"] for r in ranges)
    assert all(a["end_time"] == b["start_time"] for a, b in itertools.pairwise(ranges))
    assert len(ranges) == 20


def test_cli_writes_the_workflow_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    log = tmp_path / "show.jsonl"
    write_known_show(log)
    out = tmp_path / "set.scope-workflow.json"
    assert main(["export-timeline", str(log), "-o", str(out), "--name", "Friday set"]) == 0
    written = json.loads(out.read_text())
    assert len(written["timeline"]["entries"]) == 3 and written["metadata"]["name"] == "Friday set"
    assert f"{out}: a Scope workflow for longlive with 3 timeline entries" in capsys.readouterr().out


def test_cli_default_output_sits_beside_the_log(tmp_path: Path) -> None:
    log = tmp_path / "friday.jsonl"
    write_known_show(log)
    assert main(["export-timeline", str(log)]) == 0
    written = json.loads((tmp_path / "friday.scope-workflow.json").read_text())
    assert written["format"] == "scope-workflow" and written["metadata"]["name"] == "friday"


def test_cli_reports_a_broken_log_with_its_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    log = tmp_path / "broken.jsonl"
    log.write_text('{"type": "sent", "t": 0, "message": {}}\n')
    assert main(["export-timeline", str(log), "-o", str(tmp_path / "x.json")]) == 1
    assert f"error: {log}:1:" in capsys.readouterr().err
