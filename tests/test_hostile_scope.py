"""Hostile Scope servers end in one clear line, and the show goes on (issue 12, items 1, 2, 9 and 10).

The far end is real: :class:`tests.hostile_http.HostileServer`, a raw HTTP server on loopback that answers with a
redirect loop, a corrupt gzip body, a trickle, slow headers, an endless body, a garbage status line, HTML, huge
or deeply nested JSON, or an SDP answer that is nonsense, and forwards to the project's emulator once it turns
good. Every client call must raise the project's own error with a sentence, the session must keep retrying and
heal, ``doctor`` must end with a failed check (never hang, never "unexpected"), and the Scope URL's query must
go with every request while staying out of the logs.
"""

from __future__ import annotations

import asyncio
import logging
import subprocess
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from metadj_bridge.doctor.checks import Status
from metadj_bridge.doctor.ice import check_ice
from metadj_bridge.doctor.report import DoctorOptions, Report, format_report, run_doctor
from metadj_bridge.emulator import ScopeEmulator
from metadj_bridge.errors import (
    MetaDJError,
    RedactingFilter,
    ScopeBadAnswerError,
    ScopeConnectionError,
    ScopeError,
    ScopeNotScopeError,
    redact_text,
)
from metadj_bridge.lifecycle import supervised
from metadj_bridge.scope.api import ScopeClient, endpoint, redact_url
from metadj_bridge.scope.reconnect import Backoff, ReconnectLogic, ReconnectState
from metadj_bridge.scope.sender import PacerConfig, ParameterSender
from metadj_bridge.scope.session import ScopeSession, SessionConfig, SessionState
from tests.conftest import SMALL
from tests.helpers import wait_for
from tests.hostile_http import ENDLESS_LIMIT, HostileServer

MakeHostile = Callable[..., Awaitable[HostileServer]]

#: mode -> (the error class, what its sentence says), with a 1 s deadline.
SENTENCES: dict[str, tuple[type[ScopeError], str]] = {
    "redirect-loop": (ScopeBadAnswerError, "answered with a redirect loop"),
    "corrupt-gzip": (ScopeBadAnswerError, "sent a body that cannot be decoded (corrupt gzip"),
    "trickle": (ScopeConnectionError, "no complete answer within 1 s"),
    "slow-headers": (ScopeConnectionError, "no complete answer within 1 s"),
    "endless": (ScopeBadAnswerError, "the answer is larger than 4 MB (it kept coming)"),
    "garbage-status": (ScopeBadAnswerError, "the server broke the HTTP exchange (RemoteProtocolError: illegal status"),
    "html": (ScopeNotScopeError, "expected JSON, got text/html"),
    "huge-json": (ScopeBadAnswerError, "the answer is larger than 4 MB (it announces 16"),
    "deep-json": (ScopeNotScopeError, "expected JSON, got JSON that cannot be read (JSON nested too deeply)"),
}
SECRET = "s3cret-token-value"



# ---------------------------------------------------------------------------------------------- the client alone


@pytest.mark.parametrize("mode", list(SENTENCES))
async def test_every_hostile_answer_is_our_own_error_with_a_sentence(hostile: MakeHostile, mode: str) -> None:
    kind, sentence = SENTENCES[mode]
    server = await hostile(mode)
    async with ScopeClient(f"{server.url}/?token={SECRET}", deadline=1.0) as scope:
        with pytest.raises(kind) as health:
            await scope.health()
        with pytest.raises(kind) as offer:  # a POST with a body, as the WebRTC offer is
            await scope.offer("v=0", "offer", {"prompts": "x"})
    for caught, where in ((health, "GET"), (offer, "POST")):
        message = str(caught.value)
        assert sentence in message
        assert message.startswith(f"{where} {server.url}/")
        assert SECRET not in message and "token=***" in message


async def test_an_error_whose_words_hold_terminal_escapes_is_one_escaped_line(hostile: MakeHostile) -> None:
    """The server's error text could clear the terminal, recolour it, ring its bell or forge a log line of its own:
    the error shows it on one line, every control character escaped as errors.printable does everywhere."""
    server = await hostile("escapes")
    async with ScopeClient(server.url, deadline=1.0) as scope:
        with pytest.raises(ScopeError) as health:
            await scope.health()
        with pytest.raises(ScopeError) as offer:
            await scope.offer("v=0", "offer", {"prompts": "x"})
    for caught in (health, offer):
        message = str(caught.value)
        assert r"HTTP 500: \x1b[2J\x1b[31mGPU on fire 12:00:00 INFO all good\x07" in message
        assert message.isprintable()


async def test_an_endless_body_stops_at_the_cap(hostile: MakeHostile) -> None:
    server = await hostile("endless")
    async with ScopeClient(server.url) as scope:
        for _ in range(3):
            with pytest.raises(ScopeBadAnswerError, match="larger than 4 MB"):
                await scope.pipeline_status()
    await wait_for(lambda: server.busy == 0, 20, "the server to notice the client hung up")
    # The client stopped reading each time: what the server got out is a few buffers past 4 MB, not its 256 MB.
    assert server.endless_sent < 3 * 16 * 1024 * 1024 < ENDLESS_LIMIT


async def test_the_size_limit_and_the_deadline_are_settings(hostile: MakeHostile) -> None:
    server = await hostile("healthy")
    async with ScopeClient(server.url, max_body=16) as scope:
        with pytest.raises(ScopeBadAnswerError, match=r"larger than 16 bytes \(it announces \d+ bytes\)"):
            await scope.health()
    slow = await hostile("trickle", trickle_interval=0.05)
    async with ScopeClient(slow.url, deadline=0.3) as scope:
        with pytest.raises(ScopeConnectionError, match="no complete answer within 0.3 s"):
            await scope.health()


async def test_a_url_with_a_query_or_fragment_keeps_its_query_on_every_request(hostile: MakeHostile) -> None:
    server = await hostile("healthy")
    cases = [
        (f"{server.url}/?token=abc", "/health?token=abc"),
        (f"{server.url}?token=abc", "/health?token=abc"),
        (f"{server.url}/scope?token=x#y", "/scope/health?token=x"),
        (f"{server.url}/scope/?a=1&flag&token=a%2Fb", "/scope/health?a=1&flag&token=a%2Fb"),
    ]
    for url, target in cases:
        async with ScopeClient(url) as scope:
            await scope.health()
        assert server.targets[-1] == target
    async with ScopeClient(f"{server.url}/?token=abc") as scope:
        await scope.get_json_or_none("/api/v1/logs/tail", {"lines": 50})
    assert server.targets[-1] == "/api/v1/logs/tail?token=abc&lines=50"
    assert endpoint("https://gpu.example/scope?token=x#y", "/api/v1/pipeline/status") == (
        "https://gpu.example/scope/api/v1/pipeline/status?token=x"
    )


#: Session ids a server may answer with that would steer the bridge's PATCH and DELETE elsewhere, or are no id.
HOSTILE_SESSION_IDS = ["../../hostile/steered", "..", ".", "x?token=stolen", "a/b", "x#y", "%2e%2e", "", " x",
                       "x" * 129, 42, None, {"id": "x"}, ["x"]]


@pytest.mark.parametrize("session_id", HOSTILE_SESSION_IDS, ids=repr)
async def test_a_session_id_that_is_not_a_plain_token_is_refused_and_never_a_path(
        hostile: MakeHostile, session_id: object) -> None:
    server = await hostile("session-id")
    server.session_id = session_id
    async with ScopeClient(f"{server.url}/?token={SECRET}", deadline=2.0) as scope:
        with pytest.raises(ScopeBadAnswerError, match="which is not a session id") as caught:
            await scope.offer("v=0", "offer", {"prompts": "x"})
        assert str(caught.value).startswith(f"POST {server.url}/api/v1/webrtc/offer")
        assert str(caught.value).isprintable()
        if isinstance(session_id, str):  # an id from elsewhere (a caller, a list of sessions) is refused as well
            with pytest.raises(ScopeBadAnswerError, match="which is not a session id"):
                await scope.delete_session(session_id)
            with pytest.raises(ScopeBadAnswerError, match="which is not a session id"):
                await scope.add_ice_candidates(session_id, [{"candidate": "candidate:1 1 udp 1 127.0.0.1 9 typ host"}])
    assert server.targets == [f"/api/v1/webrtc/offer?token={SECRET}"]


async def test_a_plain_session_id_goes_into_the_path_as_it_is(hostile: MakeHostile) -> None:
    server = await hostile("session-id")
    server.session_id = "3f1c2a4e-9b7d-4c1e-8f00-0123456789ab"
    async with ScopeClient(server.url, deadline=2.0) as scope:
        answer = await scope.offer("v=0", "offer", {"prompts": "x"})
        assert answer.session_id == server.session_id
        server.mode = "healthy"  # 200 to anything
        await scope.delete_session(answer.session_id)
    assert server.targets[-1] == f"/api/v1/webrtc/offer/{server.session_id}"


# ---------------------------------------------------------------------------------------------- the session


def make_session(url: str, states: list[tuple[SessionState, str]], **overrides: Any) -> ScopeSession:
    fields: dict[str, Any] = {
        "url": url, "pipeline_ids": ["longlive"], "load_params": dict(SMALL), "prompts": "neon rain",
        "ice_servers": [], "backoff": Backoff(base=0.2, cap=1.0), "no_frame_timeout": 3.0, "load_timeout": 20.0,
        "http_deadline": 1.5, "health_interval": 0.5,
    }
    fields.update(overrides)
    sender = ParameterSender(pacer=PacerConfig(chunk_frames=4))
    return ScopeSession(SessionConfig(**fields), sender, on_state=lambda s, d: states.append((s, d)))


def waits(states: list[tuple[SessionState, str]]) -> list[str]:
    return [detail for state, detail in states if state is SessionState.RECONNECTING]


def our_log_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name.startswith("metadj_bridge")]


#: mode -> what the reason for waiting says (a 1.5 s deadline in the session).
AT_START_UP = {
    "redirect-loop": "answered with a redirect loop",
    "corrupt-gzip": "cannot be decoded (corrupt gzip",
    "trickle": "no complete answer within 1.5 s",
    "slow-headers": "no complete answer within 1.5 s",
    "endless": "larger than 4 MB",
    "garbage-status": "broke the HTTP exchange",
    "huge-json": "larger than 4 MB",
    "bad-sdp": "answered the WebRTC offer with an SDP answer that cannot be used",
}


@pytest.mark.parametrize("mode", list(AT_START_UP))
async def test_at_start_up_the_session_keeps_trying_and_heals_when_the_server_turns_good(
    hostile: MakeHostile, emulator: ScopeEmulator, caplog: pytest.LogCaptureFixture, mode: str
) -> None:
    proxy = await hostile(mode, emulator.url)
    states: list[tuple[SessionState, str]] = []
    session = make_session(f"{proxy.url}/?token={SECRET}", states)
    with caplog.at_level(logging.DEBUG):
        await session.start()
        try:
            await wait_for(lambda: len(waits(states)) >= 2, 40, "two failed attempts")
            assert session.supervisor is not None and not session.supervisor.done()
            proxy.mode = "good"
            await session.wait_streaming(timeout=40)
        finally:
            await session.aclose()
    reasons = waits(states)
    assert all(AT_START_UP[mode] in reason for reason in reasons[:2]), reasons
    assert all(f"token={SECRET}" in target for target in proxy.targets)  # the query went with every request
    lines = our_log_lines(caplog)
    assert any("Scope session unavailable" in line and AT_START_UP[mode] in line for line in lines)
    assert not any(SECRET in line for line in lines)
    assert not any(r.levelno >= logging.ERROR for r in caplog.records if r.name.startswith("metadj_bridge"))


async def test_a_session_whose_server_names_a_hostile_session_id_keeps_trying_and_heals(
    hostile: MakeHostile, emulator: ScopeEmulator, caplog: pytest.LogCaptureFixture
) -> None:
    proxy = await hostile("session-id", emulator.url)
    states: list[tuple[SessionState, str]] = []
    session = make_session(proxy.url, states)
    await session.start()
    try:
        await wait_for(lambda: len(waits(states)) >= 2, 40, "two refused answers")
        proxy.mode = "good"
        await session.wait_streaming(timeout=40)
    finally:
        await session.aclose()
    assert all("which is not a session id" in reason for reason in waits(states)[:2]), waits(states)
    assert not any("hostile" in target for target in proxy.targets), proxy.targets


async def test_ice_server_urls_aiortc_cannot_use_are_skipped_with_one_warning_and_the_session_streams(
    hostile: MakeHostile, emulator: ScopeEmulator, caplog: pytest.LogCaptureFixture
) -> None:
    """A Scope (or proxy) handing out an ICE URL aiortc cannot parse made every attempt fail with ValueError
    ("malformed uri") for as long as the show ran; the other entries, or none at all on one machine, would do."""
    proxy = await hostile("ice-servers", emulator.url)
    proxy.ice_servers = [{"urls": "foo:bar"}, {"urls": ["stun:", "stun:h:x\x1b[2J"]}, {"urls": "stun:[::1"}]
    states: list[tuple[SessionState, str]] = []
    session = make_session(proxy.url, states, ice_servers=None)  # the ones Scope hands out
    with caplog.at_level(logging.WARNING):
        await session.start()
        try:
            await session.wait_streaming(timeout=30)
        finally:
            await session.aclose()
    assert not waits(states), waits(states)
    warnings = [line for line in our_log_lines(caplog) if "ICE server URL" in line]
    assert len(warnings) == 1, warnings
    assert "'foo:bar'" in warnings[0] and "\\x1b[2J" in warnings[0] and warnings[0].isprintable()
    assert not any(r.levelno >= logging.ERROR for r in caplog.records if r.name.startswith("metadj_bridge"))


#: mode -> what the loss says (a 0.5 s health interval: the health check waits at most 1 s, less than the 1.5 s
#: HTTP deadline).
MID_SHOW = {
    "redirect-loop": "Scope stopped answering (GET",
    "corrupt-gzip": "Scope stopped answering (GET",
    "trickle": "Scope stopped answering (no health answer within 1 s)",
    "html": "Scope stopped answering (GET",
}


@pytest.mark.parametrize("mode", list(MID_SHOW))
async def test_mid_show_a_hostile_server_is_a_lost_session_that_heals(
    hostile: MakeHostile, emulator: ScopeEmulator, mode: str
) -> None:
    proxy = await hostile("good", emulator.url)
    states: list[tuple[SessionState, str]] = []
    session = make_session(f"{proxy.url}/?token={SECRET}", states)
    await session.start()
    try:
        await session.wait_streaming(timeout=30)
        proxy.mode = mode
        await wait_for(lambda: len(waits(states)) >= 2, 40, "the loss and a failed attempt")
        assert session.supervisor is not None and not session.supervisor.done()
        proxy.mode = "good"
        await wait_for(lambda: session.state is SessionState.STREAMING, 40, "the session back")
    finally:
        await session.aclose()
    lost = waits(states)[0]
    assert lost.startswith(MID_SHOW[mode]) and "()" not in lost
    assert session.sessions_started >= 2


async def test_a_run_against_a_redirect_loop_keeps_going_until_its_duration(hostile: MakeHostile) -> None:
    server = await hostile("redirect-loop")
    proc = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "metadj_bridge", "run", "--scope", f"{server.url}/?token={SECRET}", "--duration", "2",
         "--output", "none", "--no-audio"],
        capture_output=True, text=True, timeout=120,
    )
    out = proc.stderr + proc.stdout
    assert proc.returncode == 0, out
    assert "/health?token=***: the server answered with a redirect loop" in out and "retrying" in out
    assert "unexpected" not in out and "Traceback" not in out and SECRET not in out
    assert len(server.targets) > 1


# ---------------------------------------------------------------------------------------------- the retry policy


class SurprisingLink:
    """A link (the policy's far end) whose attempts fail in ways nobody planned for: empty messages, and a
    teardown and a health probe that raise."""

    def __init__(self) -> None:
        self.failures: list[BaseException] = [AssertionError(), KeyError("sdp"), ValueError()]
        self.opened = 0
        self.close_failures = 2

    @property
    def session_id(self) -> str | None:
        return "surprising"

    @property
    def where(self) -> str:
        return "http://surprising"

    @property
    def server_start(self) -> float | None:
        return 1.0

    async def open(self) -> None:
        self.opened += 1
        if self.failures:
            raise self.failures.pop(0)

    async def watch(self) -> str:
        await asyncio.Event().wait()
        return "never"

    async def close(self) -> None:
        if self.close_failures:
            self.close_failures -= 1
            raise RuntimeError("teardown broke")

    async def probe(self, within: float) -> float:
        raise IndexError("the health check broke")


async def test_the_retry_policy_survives_surprises_logging_one_traceback(caplog: pytest.LogCaptureFixture) -> None:
    link, reasons = SurprisingLink(), list[str]()
    policy = ReconnectLogic(link, backoff=Backoff(base=0.01, cap=0.01, jitter=0.0), probe_interval=0.005,
                            fail_fast=True, on_waiting=reasons.append)
    with caplog.at_level(logging.DEBUG, logger="metadj_bridge.scope.reconnect"):
        policy.start()
        try:
            await wait_for(lambda: policy.state is ReconnectState.CONNECTED, 10, "a session after the surprises")
            assert policy.task is not None and not policy.task.done()
        finally:
            await policy.stop()
    assert link.opened == 4
    assert reasons[0] == "AssertionError (no details given)" and reasons[2] == "ValueError (no details given)"
    assert all(reason.strip() and "()" not in reason for reason in reasons)
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1 and errors[0].exc_info is not None  # the traceback once; the rest rate-limited


async def test_supervised_restarts_a_part_logging_one_traceback_then_rate_limited_lines(
    caplog: pytest.LogCaptureFixture,
) -> None:
    runs = 0

    async def part() -> None:
        nonlocal runs
        runs += 1
        if runs <= 6:
            raise ExceptionGroup("a group of surprises", [ValueError(f"bad input {runs}")])

    with caplog.at_level(logging.DEBUG, logger="metadj_bridge.lifecycle"):
        await supervised("flaky part", part, first_delay=0.001, max_delay=0.002)
    assert runs == 7  # ran again after every failure, and returned once it worked
    records = [r for r in caplog.records if "flaky part" in r.getMessage()]
    assert [r.levelno for r in records] == [logging.ERROR, logging.WARNING]
    assert records[0].exc_info is not None and records[1].exc_info is None


# ---------------------------------------------------------------------------------------------- doctor


PROFILE = """\
name: hostile doctor test
scope:
  pipeline: longlive
  resolution: [256, 144]
inputs:
  audio: none
video:
  outputs: [preview]
themes:
  one:
    prompts: [a red square on black]
"""
FAST: dict[str, Any] = {"listen": 1.0, "first_frame_timeout": 5.0, "watch": 0.6, "load_timeout": 10.0,
                         "connect_timeout": 10.0, "ice_timeout": 0.5, "http_deadline": 1.0}


@pytest.fixture
def profile(tmp_path: Path) -> str:
    path = tmp_path / "show.yaml"
    path.write_text(PROFILE)
    return str(path)


def finding(report: Report, check: str) -> Any:
    matching = [f for f in report.findings if f.check == check]
    assert len(matching) == 1, format_report(report)
    return matching[0]


@pytest.mark.parametrize("mode", ["redirect-loop", "corrupt-gzip", "trickle", "slow-headers", "endless",
                                  "garbage-status", "huge-json"])
async def test_doctor_reports_a_hostile_server_as_a_failed_check(
    hostile: MakeHostile, profile: str, mode: str
) -> None:
    server = await hostile(mode)
    report = await run_doctor(DoctorOptions(scope_url=f"{server.url}/?token={SECRET}", profile=profile, **FAST))
    scope = finding(report, "scope")
    assert scope.status is Status.PROBLEM and SENTENCES[mode][1] in scope.summary
    assert not report.ok
    text = format_report(report)
    assert "unexpected" not in text and SECRET not in text


async def test_doctor_with_a_healthy_server_whose_other_answers_trickle_finishes(
    hostile: MakeHostile, emulator: ScopeEmulator, profile: str
) -> None:
    server = await hostile("trickle", emulator.url, only=("/api/v1/",), trickle_interval=0.3)
    report = await run_doctor(DoctorOptions(scope_url=server.url, profile=profile, **FAST))
    assert finding(report, "scope").status is Status.OK
    pipeline = finding(report, "pipeline")
    assert pipeline.status is Status.PROBLEM and "no complete answer within 1 s" in pipeline.summary
    assert not report.ok


async def test_the_doctor_command_prints_a_failed_check_for_a_redirect_loop(
    hostile: MakeHostile, profile: str
) -> None:
    server = await hostile("redirect-loop")
    proc = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "metadj_bridge", "doctor", "--scope", server.url, "--profile", profile, "--no-video"],
        capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 1, proc.stderr
    assert "PROBLEM" in proc.stdout and "redirect loop" in proc.stdout
    assert "unexpected" not in proc.stdout + proc.stderr and "Traceback" not in proc.stderr


# ---------------------------------------------------------------------------------------------- redaction


@pytest.mark.parametrize(
    ("text", "secret"),
    [
        ("https://user:p@ss@gpu.example:8000/", "p@ss"),
        ("https://dj:hunter2@gpu.example/scope?token=abc", "hunter2"),
        ("http://h/?api-key=k3y&x=1", "k3y"),
        ("http://h/?api_key=k3y", "k3y"),
        ("http://h/?x_token=t0k", "t0k"),
        ("http://h/?a=1&auth_token=t0k", "t0k"),
        ("http://h/?access_token=t0k", "t0k"),
        ("http://h/scope#token=t0k", "t0k"),
        ("http://h/?X-Amz-Signature=s1g&X-Amz-Credential=cr3d", "s1g"),
        ("http://h/?X-Amz-Signature=s1g&X-Amz-Credential=cr3d", "cr3d"),
        ("header api-key=k3y in free text", "k3y"),
        ("client_secret='sh' and password=pw", "sh"),
        ("client_secret='sh' and password=pw", "=pw"),
        ("GET http://h/health?Session_Key=sk", "=sk"),
    ],
)
def test_redaction_covers_secrets_in_every_form(text: str, secret: str) -> None:
    clean = redact_text(text)
    assert secret not in clean and "***" in clean


def test_redaction_keeps_the_sentence_around_a_secret() -> None:
    line = "GET http://h/health?token=abc: no answer; x_token=a.b.c. Then sig=s, retry"
    assert redact_text(line) == "GET http://h/health?token=***: no answer; x_token=***. Then sig=***, retry"


def test_redaction_leaves_what_is_not_secret() -> None:
    text = "tempo=128 signal=beat design=3 http://127.0.0.1:8000/api/v1/health?lines=50"
    assert redact_text(text) == text
    assert redact_url("https://pod.example/?token=abc&x=1") == "https://pod.example/?token=***&x=1"
    assert redact_url("https://gpu.example/scope?abc123#frag") == "https://gpu.example/scope?***#***"


def test_the_logging_filter_redacts_arguments_too() -> None:
    record = logging.LogRecord("metadj_bridge.test", logging.INFO, __file__, 1, "Scope at %s answered %s",
                               ("https://u:p@ss@h/?x_token=t0k", "auth_token=t0k"), None)
    assert RedactingFilter().filter(record)
    assert "t0k" not in record.getMessage() and "p@ss" not in record.getMessage()


def test_a_url_that_httpx_cannot_use_is_a_config_error() -> None:
    with pytest.raises(MetaDJError, match="cannot be used|invalid port"):
        ScopeClient("http://[::1:8000/?token=abc")


async def test_doctor_checks_a_few_of_thousands_of_ice_urls_and_prints_their_hosts_escaped(
        hostile: MakeHostile) -> None:
    """A Scope listing 2,000 ICE URLs made doctor open 2,000 sockets at once and print a line for each; a host name
    holding a terminal escape and a line end went to the terminal raw (it cleared the screen and forged a line)."""
    server = await hostile("ice-servers")
    forged = "stun:evil\x1b[2J\r\nOK       ice   all fine:3478"
    server.ice_servers = [{"urls": [forged, *(f"stun:127.0.0.1:{port}" for port in range(20000, 22000))]}]
    async with ScopeClient(server.url) as client:
        findings = await check_ice(client, wait_s=0.3)
    assert len(findings) < 30
    assert any(f.status is Status.WARNING and "hands out 2001 ICE server URLs; the first 16" in f.summary
               for f in findings)
    text = format_report(Report(findings))
    assert all(line.isprintable() for line in text.splitlines())
    assert "evil\\x1b[2J\\r\\nOK" in text
