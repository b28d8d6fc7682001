"""systemd's notify protocol, end to end: `run` under a real notify socket says READY, keeps the watchdog fed from
its event loop, reports the session in STATUS= and says STOPPING; a broken profile exits 78, which the unit keeps
from restarting."""

from __future__ import annotations

import configparser
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from metadj_bridge.bundled import service_file
from metadj_bridge.errors import EXIT_CONFIG
from metadj_bridge.run.service import ServiceNotifier

pytestmark = pytest.mark.skipif(not hasattr(socket, "AF_UNIX"), reason="the notify protocol is a Unix socket")


def notify_socket(tmp_path: Path) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)  # type: ignore[attr-defined,unused-ignore]
    sock.bind(str(tmp_path / "notify"))
    sock.settimeout(0.2)
    return sock


def drain(sock: socket.socket, proc: subprocess.Popen[str]) -> list[str]:
    """Every message until the process has ended and the socket is empty, read as they come (as systemd does)."""
    messages = []
    while True:
        try:
            messages.append(sock.recv(4096).decode())
        except TimeoutError:
            if proc.poll() is not None:
                return messages


def test_run_tells_systemd_ready_watchdog_status_and_stopping(tmp_path: Path) -> None:
    sock = notify_socket(tmp_path)
    env = {"NOTIFY_SOCKET": str(tmp_path / "notify"), "WATCHDOG_USEC": "1000000", "PATH": "/usr/bin:/bin",
           "HOME": str(tmp_path)}
    with subprocess.Popen([sys.executable, "-m", "metadj_bridge", "run", "--duration", "5", "--output", "none",
                           "--no-audio", "--show-log", "none"], stderr=subprocess.PIPE, text=True, env=env) as proc:
        messages = drain(sock, proc)
        _, stderr = proc.communicate(timeout=60)
    sock.close()
    assert proc.returncode == 0, stderr
    assert messages[0].startswith("READY=1\nSTATUS=Scope "), messages[:3]
    assert messages[-1] == "STOPPING=1", messages[-4:]
    assert messages.count("WATCHDOG=1") >= 4  # every half second for 5 s; a frozen loop would send none
    assert any(m.startswith("STATUS=Scope streaming") for m in messages), messages


def test_a_broken_profile_exits_78_and_the_unit_does_not_restart_it(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("themes: {a: {prompts: [x]}}\nmappings: {m: {source: audio.nope, target: noise_scale}}\n")
    proc = subprocess.run([sys.executable, "-m", "metadj_bridge", "run", "--profile", str(bad), "--duration", "3"],
                          capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == EXIT_CONFIG, proc.stderr
    assert "audio.nope" in proc.stderr
    unit = configparser.ConfigParser(strict=False, interpolation=None)
    unit.read_string(service_file("systemd"))
    assert unit["Service"]["Type"] == "notify"
    assert str(EXIT_CONFIG) in unit["Service"]["RestartPreventExitStatus"].split()
    assert unit["Service"]["Restart"] == "on-failure" and unit["Service"]["WatchdogSec"]


def test_a_socket_that_refuses_is_said_once_and_the_notifier_goes_quiet(tmp_path: Path,
                                                                         caplog: pytest.LogCaptureFixture) -> None:
    notifier = ServiceNotifier({"NOTIFY_SOCKET": str(tmp_path / "nobody-listens")})
    assert notifier.active
    notifier.ready("starting")
    notifier.status("streaming")
    assert not notifier.active
    assert len([r for r in caplog.records if "NOTIFY_SOCKET" in r.getMessage()]) == 1
    assert not ServiceNotifier({}).active  # outside systemd: nothing to do
