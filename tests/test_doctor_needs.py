"""doctor checks what a profile needs beyond devices: the Ableton Link package, the OSC port, the web port,
and a virtual camera asked for by name. Real sockets hold the ports; aalink is made unimportable for real."""

from __future__ import annotations

import socket
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from metadj_bridge.bundled import bundled_profile
from metadj_bridge.doctor.checks import Status
from metadj_bridge.doctor.report import DoctorOptions, check_profile, run_doctor
from metadj_bridge.run.plan import RunPlan
from tests.helpers import free_port


def plan_of(path: str, **settings: object) -> RunPlan:
    findings, plan = check_profile(path, settings)
    assert plan is not None, findings
    return plan


@pytest.fixture
def udp_holder() -> Iterator[int]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    yield sock.getsockname()[1]
    sock.close()


@pytest.fixture
def tcp_holder() -> Iterator[int]:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    yield sock.getsockname()[1]
    sock.close()


async def test_link_without_aalink_fails_the_doctor(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "aalink", None)  # import aalink now raises ImportError, as when not installed
    report = await run_doctor(DoctorOptions(scope_url=None, profile=str(bundled_profile("ableton")), video=False,
                                            listen=0.0))
    extras = [f for f in report.findings if f.check == "extras"]
    assert [f.status for f in extras] == [Status.PROBLEM], extras
    assert "aalink" in extras[0].summary and 'pip install "metadj-bridge[link]"' in extras[0].action
    assert not report.ok


async def test_link_with_aalink_is_fine() -> None:
    pytest.importorskip("aalink", reason="aalink (the link extra) is not installed here")
    report = await run_doctor(DoctorOptions(scope_url=None, profile=str(bundled_profile("ableton")), video=False,
                                            listen=0.0))
    assert [f.status for f in report.findings if f.check == "extras"] == [Status.OK]


def test_a_taken_osc_port_is_a_problem(tmp_path: Path, udp_holder: int) -> None:
    from metadj_bridge.doctor.needs import check_ports

    plan = plan_of(str(bundled_profile("resolume")), osc_port=udp_holder, output="none")
    findings = [f for f in check_ports(plan) if "OSC" in f.summary]  # the web port has its own test
    assert [f.status for f in findings] == [Status.PROBLEM]
    assert f"127.0.0.1:{udp_holder}" in findings[0].summary and "taken" in findings[0].summary
    free = plan_of(str(bundled_profile("resolume")), osc_port=free_port(), output="none")
    assert [f.status for f in check_ports(free) if "OSC" in f.summary] == [Status.OK]


def test_a_taken_web_port_is_a_warning_that_says_it_moves(tcp_holder: int) -> None:
    from metadj_bridge.doctor.needs import check_ports

    plan = plan_of(str(bundled_profile("default")), http_port=tcp_holder, output="none")
    findings = check_ports(plan)
    assert [f.status for f in findings] == [Status.WARNING]
    assert f"web port {tcp_holder} (the control page" in findings[0].summary and "next free port" in findings[0].summary
