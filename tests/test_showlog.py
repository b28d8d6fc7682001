"""Show logs: written off the event loop, read back with file:line errors, a crash's cut-off line tolerated."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import subprocess
import sys
from datetime import datetime
from itertools import pairwise
from pathlib import Path

import pytest

from metadj_bridge.scope.sender import ParameterSender
from metadj_bridge.showlog.folding import event_kind
from metadj_bridge.showlog.log import (
    ShowLog,
    ShowLogError,
    default_show_log_path,
    read_show_log,
    show_log_header,
)
from tests.helpers import wait_for

ROOT = Path(__file__).resolve().parent.parent

HEADER = show_log_header(
    profile="mappings/default.yaml", pipeline="longlive", width=1024, height=576,
    initial={"prompts": [{"text": "neon city", "weight": 1.0}], "noise_scale": 0.6},
    denoising_step_list=[1000, 750, 500, 250],
)


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_wall_times_stay_true_after_the_computer_slept(tmp_path: Path) -> None:
    """A closed lid for 30 min: the monotonic clock (``t``, what replay times by) stood still, the time of day did
    not. A message sent 1 s of monotonic time after the wake says the time of day it was sent."""
    clock, wall = FakeClock(), [1_800_000_000.0]
    path = tmp_path / "show.jsonl"
    show = ShowLog(path, HEADER, clock=clock, wall_clock=lambda: wall[0])
    show.record({"noise_scale": 0.7}, 100.0)
    clock.now, wall[0] = 101.0, wall[0] + 1801.0  # 1 s of monotonic time, 30 min and 1 s of day
    show.record({"noise_scale": 0.2}, 101.0)
    show.close()
    sent = [json.loads(line) for line in path.read_text().splitlines() if '"sent"' in line]
    assert [line["t"] for line in sent] == [0.0, 1.0]
    assert [line["wall"] for line in sent] == ["2027-01-15T08:00:00.000Z", "2027-01-15T08:30:01.000Z"]


def test_log_round_trips_header_messages_events_and_end(tmp_path: Path) -> None:
    clock = FakeClock()
    path = tmp_path / "show.jsonl"
    show = ShowLog(path, HEADER, clock=clock)
    show.record({"noise_scale": 0.7}, 101.5)
    clock.now = 102.0
    show.event("theme 2 (forest)")
    show.record({"transition": {"target_prompts": [{"text": "forest", "weight": 1.0}], "num_steps": 8}}, 102.25)
    clock.now = 110.0
    show.close()
    show.close()  # twice is harmless
    show.record({"noise_scale": 0.1}, 111.0)  # after close: ignored

    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert [line["type"] for line in lines] == ["header", "sent", "event", "sent", "end"]
    assert lines[0]["version"] == 1 and lines[0]["pipeline"] == "longlive"
    assert lines[0]["started"].endswith("Z")
    assert lines[1]["t"] == pytest.approx(1.5)
    assert "T" in lines[1]["wall"]

    rec = read_show_log(path)
    assert rec.header.pipeline == "longlive"
    assert (rec.header.width, rec.header.height) == (1024, 576)
    assert rec.header.denoising_step_list == [1000, 750, 500, 250]
    assert rec.header.initial["noise_scale"] == 0.6
    assert rec.sent[0].message == {"noise_scale": 0.7}
    assert [(s.t, list(s.message)) for s in rec.sent] == [(1.5, ["noise_scale"]), (2.25, ["transition"])]
    assert [(e.t, e.text) for e in rec.events] == [(2.0, "theme 2 (forest)")]
    assert rec.duration == pytest.approx(10.0)
    assert not rec.truncated
    assert show.lines_written == 5 and show.lines_lost == 0


async def test_sender_hook_records_every_message_sent(tmp_path: Path) -> None:
    """``record`` is ``ParameterSender.on_sent``: each message the sender puts on the channel is logged."""

    class Channel:
        readyState = "open"
        bufferedAmount = 0

        def __init__(self) -> None:
            self.sent: list[str] = []

        def send(self, data: str) -> None:
            self.sent.append(data)

    path = tmp_path / "show.jsonl"
    show = ShowLog(path, HEADER)
    sender = ParameterSender(on_sent=show.record)
    channel = Channel()
    sender.attach(channel)
    for value in (0.2, 0.4):
        sender.update(noise_scale=value)
        sender.send_now()
    sender.action(reset_cache=True)
    sender.send_now()
    await show.aclose()
    rec = read_show_log(path)
    assert [s.message for s in rec.sent] == [json.loads(d) for d in channel.sent]
    assert len(rec.sent) == 3
    assert all(a.t <= b.t for a, b in pairwise(rec.sent))


def test_an_existing_log_is_kept_and_the_new_show_gets_its_own_file(tmp_path: Path) -> None:
    path = tmp_path / "show.jsonl"
    first = ShowLog(path, HEADER)
    first.close()
    second = ShowLog(path, HEADER)
    second.record({"noise_scale": 0.1}, second.t0 + 1)
    second.close()
    assert second.path == tmp_path / "show-2.jsonl"
    assert read_show_log(path).sent == []
    assert len(read_show_log(second.path).sent) == 1


def test_a_crashed_show_is_read_up_to_its_cut_off_line(tmp_path: Path) -> None:
    path = tmp_path / "crash.jsonl"
    header = json.dumps({"type": "header", "version": 1, **HEADER})
    sent = json.dumps({"type": "sent", "t": 1.0, "wall": "x", "message": {"noise_scale": 0.5}})
    path.write_text(f"{header}\n{sent}\n{sent[:20]}")
    rec = read_show_log(path)
    assert len(rec.sent) == 1
    assert rec.truncated
    assert rec.duration == 1.0


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ("", "empty file"),
        ('{"type": "sent", "t": 1, "message": {}}\n', ":1: a show log starts with a header"),
        ('{"type": "header", "version": 1, "pipeline": "longlive", "width": 0, "height": 576}\n', ":1: header 'width'"),
        ('{"type": "header", "version": 9, "pipeline": "longlive", "width": 1, "height": 1}\n', "newer metadj-bridge"),
        ('HEADER\nnot json\n{"type": "end", "t": 2}\n', ":2: not JSON"),
        ("HEADER\n" + "[" * 100_000 + "]" * 100_000 + '\n{"type": "end", "t": 2}\n', ":2: not JSON .nested too deeply"),
        ('HEADER\n{"type": "sent", "t": -1, "message": {}}\n', ":2: 't' must be a number"),
        ('HEADER\n{"type": "sent", "t": 1, "message": [1]}\n', ":2: 'message' must be an object"),
        ('HEADER\n\nHEADER\n', ":3: a second header"),
    ],
)
def test_bad_logs_name_file_and_line(tmp_path: Path, content: str, expected: str) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text(content.replace("HEADER", json.dumps({"type": "header", "version": 1, **HEADER})))
    with pytest.raises(ShowLogError, match=expected.replace("'", ".")) as err:
        read_show_log(path)
    assert str(path) in str(err.value)


def test_text_that_utf8_cannot_hold_is_written_escaped_and_the_log_goes_on(tmp_path: Path,
                                                                           caplog: pytest.LogCaptureFixture) -> None:
    show = ShowLog(tmp_path / "show.jsonl", HEADER, flush_interval=0.01)
    with caplog.at_level(logging.WARNING, logger="metadj_bridge.showlog.log"):
        show.record({"prompts": [{"text": "neon \ud800 city", "weight": 1.0}]}, show.t0 + 1)
        show.event("prompt '\udfff' (typed)")
        show.record({"noise_scale": 0.5}, show.t0 + 2)
        show.close()
    assert show.lines_written == 5 and show.lines_lost == 0  # header, sent, event, sent, end
    rec = read_show_log(show.path)
    assert [s.message for s in rec.sent] == [{"prompts": [{"text": "neon \ud800 city", "weight": 1.0}]},
                                             {"noise_scale": 0.5}]
    assert rec.events[0].text == "prompt '\udfff' (typed)" and not rec.truncated
    assert "\\ud800" in show.path.read_text(encoding="utf-8")
    warnings = [r.getMessage() for r in caplog.records if "not UTF-8" in r.getMessage()]
    assert len(warnings) == 1 and "a sent entry" in warnings[0]


def test_events_at_a_performers_pace_are_each_an_entry(tmp_path: Path) -> None:
    clock = FakeClock()
    show = ShowLog(tmp_path / "show.jsonl", HEADER, clock=clock)
    texts = ["control: theme forest (web from 10.0.0.2)", "theme neon -> forest", "control: theme neon (web)",
             "theme forest -> neon", "scene drop recalled at once (theme neon)"]
    for i, text in enumerate(texts):  # two kinds a moment apart are two entries; one kind every 2 s, each its own
        clock.now = 100.0 + 2 * (i // 2) + 0.01 * (i % 2)
        show.event(text)
    show.close()
    rec = read_show_log(show.path)
    assert [(e.text, e.count) for e in rec.events] == [(text, 1) for text in texts]
    assert "count" not in show.path.read_text(encoding="utf-8")


def test_a_flood_of_events_folds_into_a_few_entries_a_second_per_kind_each_counted(tmp_path: Path) -> None:
    """3000 control requests a second, half themes and half prompts, and the engine's theme change for each theme:
    each kind writes its first at once and then the latest of each quarter of a second with its count; kinds never
    fold into each other, every event is counted, and the last of each kind is what the log ends with."""
    clock = FakeClock()
    show = ShowLog(tmp_path / "show.jsonl", HEADER, clock=clock)
    for i in range(3000):
        clock.now = 100.0 + i / 3000
        if i % 2:
            show.event(f"control: prompt 'flood {i}' (theme neon) (web from 127.0.0.1)")
        else:
            show.event(f"control: theme {('neon', 'forest')[i % 4 // 2]} (web from 127.0.0.1)")
            show.event(f"theme {('forest', 'neon')[i % 4 // 2]} -> {('neon', 'forest')[i % 4 // 2]}")
    clock.now = 130.0
    show.event("control: theme neon (web from 127.0.0.1)")  # after a quiet spell: at once, on its own
    show.close()
    rec = read_show_log(show.path)
    kinds = {"control: theme": 1501, "control: prompt": 1500, "theme": 1500}
    for kind, total in kinds.items():
        entries = [e for e in rec.events if e.text.startswith(kind + " ")]
        assert sum(e.count for e in entries) == total, kind
        assert len(entries) <= 1 + 4 + 1 + (kind == "control: theme"), [(e.t, e.count) for e in entries]
    prompts = [e for e in rec.events if e.text.startswith("control: prompt")]
    assert prompts[0].count == 1
    assert prompts[-1].text == "control: prompt 'flood 2999' (theme neon) (web from 127.0.0.1)"
    assert [(e.t, e.count) for e in rec.events][-1] == (30.0, 1)
    assert show.folder.folded == sum(e.count - 1 for e in rec.events)
    assert show.path.stat().st_size < 5000  # unfolded: about 400 KB


async def test_a_held_event_is_written_when_its_interval_ends(tmp_path: Path) -> None:
    """The latest of a burst waits for its quarter of a second, then the writer thread writes it, with no further
    event needed; a log that never reaches its end marker still has it."""
    show = ShowLog(tmp_path / "show.jsonl", HEADER, flush_interval=0.05)
    for i in range(5):
        show.event(f"control: theme {i} (web)")
    try:
        def written() -> list[tuple[str, int]]:
            return [(e.text, e.count) for e in read_show_log(show.path).events] if show.path.exists() else []

        await wait_for(lambda: len(written()) == 2, 5, "the held event written")
        assert written() == [("control: theme 0 (web)", 1), ("control: theme 4 (web)", 4)]
    finally:
        await show.aclose()


def test_event_kinds_and_a_count_read_back_leniently(tmp_path: Path) -> None:
    assert event_kind("control: theme forest (web from 10.0.0.2)") == "control: theme"
    assert event_kind("theme neon -> forest") == "theme" and event_kind("panic") == "panic" and event_kind("") == ""
    path = tmp_path / "show.jsonl"
    header = json.dumps({"type": "header", "version": 1, **HEADER})
    lines = [{"type": "event", "t": 1, "text": "a", "count": 7}, {"type": "event", "t": 2, "text": "b", "count": "x"},
             {"type": "event", "t": 3, "text": "c", "count": True}, {"type": "event", "t": 4, "text": "d"}]
    path.write_text(header + "\n" + "\n".join(json.dumps(line) for line in lines) + "\n", encoding="utf-8")
    assert [e.count for e in read_show_log(path).events] == [7, 1, 1, 1]


def test_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ShowLogError, match="cannot read"):
        read_show_log(tmp_path / "nope.jsonl")


async def test_unwritable_path_is_logged_once_and_the_show_goes_on(tmp_path: Path,
                                                                   caplog: pytest.LogCaptureFixture) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    show = ShowLog(blocker / "shows" / "show.jsonl", HEADER, flush_interval=0.01)
    with caplog.at_level(logging.WARNING, logger="metadj_bridge.showlog.log"):
        for i in range(50):
            show.record({"noise_scale": i / 100}, show.t0 + i)
            await asyncio.sleep(0.002)
        await show.aclose()
    warnings = [r for r in caplog.records if "cannot be written" in r.getMessage()]
    assert len(warnings) == 1
    assert show.lines_written == 0 and show.lines_lost == 52  # header + 50 messages + end


def test_a_show_whose_log_could_not_be_written_does_not_end_by_naming_a_file(tmp_path: Path) -> None:
    """The last lines of a show are where a performer looks for the log afterwards: they must not name a file that
    was never written."""
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    target = blocker / "show.jsonl"
    profile = tmp_path / "show.yaml"
    profile.write_text("themes:\n  main:\n    prompts: [neon]\n")
    done = subprocess.run([sys.executable, "-m", "metadj_bridge", "run", "--profile", str(profile), "--no-audio",
                           "--output", "none", "--http-port", "0", "--duration", "1", "--show-log", str(target)],
                          cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True,
                          timeout=120, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    ending = [line for line in done.stderr.splitlines() if "show log" in line][-1]
    assert re.search(rf"INFO no show log: {re.escape(str(target))} could not be written \(\d+ messages not logged\)$",
                     ending), done.stderr[-2000:]
    assert not target.exists()


def test_default_paths_per_os(monkeypatch: pytest.MonkeyPatch) -> None:
    when = datetime(2026, 11, 24, 21, 30, 5)
    monkeypatch.setenv("HOME", "/home/dj")
    monkeypatch.delenv("XDG_STATE_HOME", raising=False)
    linux = default_show_log_path(when, platform="linux")
    assert linux == Path("/home/dj/.local/state/metadj-bridge/shows/show-2026-11-24_21-30-05.jsonl")
    monkeypatch.setenv("XDG_STATE_HOME", "/var/st")
    assert default_show_log_path(when, platform="linux").parent == Path("/var/st/metadj-bridge/shows")
    monkeypatch.setenv("HOME", "/Users/dj")
    mac = default_show_log_path(when, platform="darwin")
    assert mac.parent == Path("/Users/dj/Library/Logs/metadj-bridge/shows")


@pytest.mark.skipif(sys.platform != "win32", reason="platformdirs asks Windows itself for the folder")
def test_default_path_on_windows() -> None:
    win = default_show_log_path(datetime(2026, 11, 24, 21, 30, 5))
    assert win.parent == Path(os.environ["LOCALAPPDATA"]) / "metadj-bridge" / "shows"
    assert win.name == "show-2026-11-24_21-30-05.jsonl"
