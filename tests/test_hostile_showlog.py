"""Show logs from outside (a file someone sent, a damaged disk, a log edited by hand): whatever one holds, reading it
for ``replay`` or ``export-timeline`` ends in one ``ShowLogError`` line naming the file and line, never a
traceback, a replay that waits for ever or a command stuck on a pipe."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from metadj_bridge.cli import main
from metadj_bridge.showlog.log import ShowLogError, read_show_log

needs_fifo = pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="os.mkfifo: named pipes are POSIX only")

HEADER = json.dumps({"type": "header", "version": 1, "pipeline": "longlive", "width": 512, "height": 512})
PROMPT = json.dumps({"type": "sent", "t": 1.0, "message": {"prompts": [{"text": "neon", "weight": 1.0}]}})


def refused(path: Path) -> str:
    with pytest.raises(ShowLogError) as caught:
        read_show_log(path)
    message = str(caught.value)
    assert message.startswith(str(path)), message
    assert message.isprintable(), message
    return message


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ('{"type": "sent", "t": 1' + "0" * 400 + ', "message": {}}', ":3: 't' must be a number of seconds"),
        ('{"type": "sent", "t": 1e400, "message": {}}', ":3: 't' must be a number of seconds"),
        ('{"type": "sent", "t": Infinity, "message": {}}', ":3: 't' must be a number of seconds"),
        ('{"type": "event", "t": NaN, "text": "x"}', ":3: 't' must be a number of seconds"),
        ('{"type": "end", "t": 1e300}', ":3: 't' must be a number of seconds"),
        ('{"type": "sent", "t": ' + "1" * 5000 + ', "message": {}}', ":3: not JSON .* digits"),
    ],
)
def test_a_time_that_is_no_usable_number_of_seconds_is_refused_with_its_line(
    tmp_path: Path, line: str, expected: str
) -> None:
    path = tmp_path / "odd.jsonl"
    path.write_text(f"{HEADER}\n{PROMPT}\n{line}\n")
    message = refused(path)
    assert re.search(expected.replace("'", "."), message), message
    assert len(message) < 400


@pytest.mark.parametrize("size", [10**9, 2**63, 100_000])
def test_a_picture_size_no_pipeline_makes_is_refused(tmp_path: Path, size: int) -> None:
    path = tmp_path / "big.jsonl"
    path.write_text(json.dumps({"type": "header", "version": 1, "pipeline": "longlive", "width": size,
                                "height": 512}) + "\n")
    assert f":1: header 'width' must be a whole number of pixels from 1 to 4096, got {size}" in refused(path)


def test_a_huge_or_odd_value_is_shown_short_and_escaped(tmp_path: Path) -> None:
    path = tmp_path / "long.jsonl"
    path.write_text(f"{HEADER}\n" + json.dumps({"type": "sent", "t": 1, "message": "\x1b[2J" + "A" * 500_000}))
    message = refused(path)
    assert ":2: 'message' must be an object" in message
    assert "\\x1b[2J" in message
    assert len(message) < 400


def test_the_export_command_says_one_line_for_an_endless_show(tmp_path: Path,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    log = tmp_path / "endless.jsonl"
    log.write_text(f"{HEADER}\n{PROMPT}\n" + '{"type": "end", "t": Infinity}\n')
    assert main(["export-timeline", str(log), "-o", str(tmp_path / "out.json")]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"error: {log}:3: 't' must be a number of seconds"), err
    assert "unexpected" not in err


@needs_fifo
@pytest.mark.parametrize("command", ["export-timeline", "replay"])
def test_a_fifo_is_refused_before_it_is_opened(tmp_path: Path, command: str) -> None:
    fifo = tmp_path / "show.jsonl"
    os.mkfifo(fifo)
    assert "a named pipe (FIFO), not a show log" in refused(fifo)
    proc = subprocess.run([sys.executable, "-m", "metadj_bridge", command, str(fifo)], capture_output=True,
                          text=True, timeout=30, check=False)
    assert proc.returncode == 1
    assert proc.stderr.strip().endswith(f"error: {fifo}: a named pipe (FIFO), not a show log; give the .jsonl file "
                                        "a show wrote")


def test_a_folder_is_refused(tmp_path: Path) -> None:
    assert "is a folder, not a show log" in refused(tmp_path)


def test_bytes_that_are_not_text_are_not_json_with_their_line(tmp_path: Path) -> None:
    path = tmp_path / "binary.jsonl"
    path.write_bytes(HEADER.encode() + b"\n\x00\xff\xfe\x1b[31m garbage\n" + PROMPT.encode() + b"\n")
    assert ":2: not JSON" in refused(path)


#: The longest line a show log may have (showlog.reading.MAX_LINE_BYTES).
MAX_LINE_BYTES = 1024 * 1024


def test_a_line_longer_than_the_limit_is_refused_with_its_line(tmp_path: Path) -> None:
    path = tmp_path / "long.jsonl"
    prompt = "x" * MAX_LINE_BYTES  # valid JSON, a prompt no show writes
    long = json.dumps({"type": "sent", "t": 1.0, "message": {"prompts": [{"text": prompt, "weight": 1.0}]}})
    path.write_text(f"{HEADER}\n{PROMPT}\n{long}\n{PROMPT}\n", encoding="utf-8")
    message = refused(path)
    assert f"{path}:3: a line longer than 1024 KB" in message and len(message) < 300
    # A line of exactly the limit (its end of line not counted) is read.
    fits = json.dumps({"type": "event", "t": 2.0, "text": ""})
    fits = fits[:-2] + "y" * (MAX_LINE_BYTES - len(fits)) + fits[-2:]
    path.write_text(f"{HEADER}\n{fits}\n", encoding="utf-8")
    assert len(read_show_log(path).events[0].text) == MAX_LINE_BYTES - len(json.dumps({"type": "event", "t": 2.0,
                                                                                           "text": ""}))


@pytest.mark.skipif(sys.platform == "win32", reason="NTFS fills a file extended by truncate with real zeros unless "
                    "it is marked sparse: the test would write 4 GB")
def test_a_line_of_gigabytes_without_an_end_is_refused_after_its_first_megabyte(tmp_path: Path) -> None:
    path = tmp_path / "sparse.jsonl"
    with path.open("wb") as f:
        f.write(HEADER.encode() + b"\n")
        f.truncate(4 * 1024**3)  # 4 GB of NUL bytes on one line, taking no room on the disk
    assert f"{path}:2: a line longer than 1024 KB" in refused(path)
