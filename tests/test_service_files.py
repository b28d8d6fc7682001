"""The service files shipped in the package parse, start `run` with this install's program and reload with SIGHUP;
`metadj-bridge service` prints them ready to save."""

from __future__ import annotations

import configparser
import io
import plistlib
import subprocess
import sys
from pathlib import Path

from metadj_bridge.bundled import service_file


def test_systemd_unit() -> None:
    unit = configparser.ConfigParser(strict=False, interpolation=None)
    unit.read_string(service_file("systemd"))
    assert unit.sections() == ["Unit", "Service", "Install"]
    exec_start = unit["Service"]["ExecStart"]
    program = exec_start.split()[0]
    assert " run " in exec_start + " " and Path(program).name == "metadj-bridge" and Path(program).is_absolute()
    assert "%h/.venvs" not in exec_start  # this install's program, not the placeholder
    assert unit["Service"]["ExecReload"] == "/bin/kill -HUP $MAINPID"
    assert unit["Service"]["KillSignal"] == "SIGTERM" and unit["Service"]["Restart"] == "on-failure"


def test_launchd_agent() -> None:
    agent = plistlib.load(io.BytesIO(service_file("launchd").encode()))
    assert agent["Label"] == "com.metadj.bridge"
    assert Path(agent["ProgramArguments"][0]).name == "metadj-bridge" and agent["ProgramArguments"][1] == "run"
    assert not agent["ProgramArguments"][0].startswith("/Users/YOU")
    assert agent["KeepAlive"] == {"SuccessfulExit": False} and agent["RunAtLoad"] is True


def test_service_command_prints_the_unit() -> None:
    done = subprocess.run([sys.executable, "-m", "metadj_bridge", "service", "systemd"], capture_output=True,
                          text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    assert "[Service]" in done.stdout and "ExecStart=" in done.stdout
    bad = subprocess.run([sys.executable, "-m", "metadj_bridge", "service", "upstart"], capture_output=True,
                         text=True, timeout=60, check=False)
    assert bad.returncode != 0 and "upstart" in bad.stderr
