"""The command line as a performer uses it: help, version, and a short run on the built-in emulator."""

from __future__ import annotations

import re
import subprocess
import sys

from metadj_bridge import __version__


def cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "metadj_bridge", *args], capture_output=True, text=True, timeout=timeout
    )


def test_help_lists_the_commands() -> None:
    proc = cli("--help")
    assert proc.returncode == 0
    for command in ("run", "emulate"):
        assert command in proc.stdout
    run_help = cli("run", "--help")
    assert "--scope" in run_help.stdout and "--duration" in run_help.stdout and "--aspect" in run_help.stdout
    emulate_help = cli("emulate", "--help")
    assert "--chunk-frames" in emulate_help.stdout and "--legacy-api" in emulate_help.stdout


def test_version() -> None:
    proc = cli("--version")
    assert proc.returncode == 0
    assert proc.stdout.strip() == f"metadj-bridge {__version__}"


def test_bad_option_value_is_an_error_line() -> None:
    proc = cli("run", "--duration", "-3")
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines()[-1] == "error: --duration -3: must be more than 0 seconds"


def test_run_on_the_built_in_emulator_streams_and_exits_cleanly() -> None:
    proc = cli("run", "--duration", "6", "--aspect", "9:16", "--emulator-fps", "15")
    assert proc.returncode == 0, proc.stderr
    assert "started the built-in Scope emulator" in proc.stderr
    # Not a terminal: the status arrives as plain log lines, and a summary at the end.
    assert re.search(r"\[streaming\] Scope 0\.2\.4 \(emulator\) longlive \| fps in", proc.stderr), proc.stderr
    summary = re.search(r"stopped after [\d.]+ s: (\d+) frames received", proc.stderr)
    assert summary is not None, proc.stderr
    assert int(summary.group(1)) > 10
    assert "Traceback" not in proc.stderr
