"""The service files in scripts/ parse, start `run` and reload with SIGHUP."""

from __future__ import annotations

import configparser
import plistlib
from pathlib import Path

SCRIPTS = Path(__file__).resolve().parent.parent / "scripts"


def test_systemd_unit() -> None:
    unit = configparser.ConfigParser(strict=False, interpolation=None)
    unit.read(SCRIPTS / "metadj-bridge.service", encoding="utf-8")
    assert unit.sections() == ["Unit", "Service", "Install"]
    exec_start = unit["Service"]["ExecStart"]
    assert " run " in exec_start + " " and exec_start.split()[0].endswith("metadj-bridge")
    assert unit["Service"]["ExecReload"] == "/bin/kill -HUP $MAINPID"
    assert unit["Service"]["KillSignal"] == "SIGTERM" and unit["Service"]["Restart"] == "on-failure"


def test_launchd_agent() -> None:
    with open(SCRIPTS / "com.metadj.bridge.plist", "rb") as f:
        agent = plistlib.load(f)
    assert agent["Label"] == "com.metadj.bridge"
    assert agent["ProgramArguments"][0].endswith("/metadj-bridge") and agent["ProgramArguments"][1] == "run"
    assert agent["KeepAlive"] == {"SuccessfulExit": False} and agent["RunAtLoad"] is True
