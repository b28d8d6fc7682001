"""Show logs: written off the event loop, read back with file:line errors, a crash's cut-off line tolerated."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import sys
from datetime import datetime
from itertools import pairwise
from pathlib import Path

import pytest

from metadj_bridge.scope.sender import ParameterSender
from metadj_bridge.showlog.log import (
    ShowLog,
    ShowLogError,
    default_show_log_path,
    read_show_log,
    show_log_header,
)

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
