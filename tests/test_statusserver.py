"""GET /status and GET /metrics of the web server over real HTTP; the metrics text checked by a small
exposition-format parser."""

from __future__ import annotations

import asyncio
import copy
import logging
import re
from typing import Any

import httpx
import pytest

from metadj_bridge.errors import ConfigError
from metadj_bridge.status.server import SCOPE_STATES, prometheus_text
from metadj_bridge.web.server import WebServer
from tests.test_statusview import EMPTY, SNAPSHOT

_NAME = r"[a-zA-Z_:][a-zA-Z0-9_:]*"
_SAMPLE = re.compile(rf"^(?P<name>{_NAME})(?:\{{(?P<labels>.*)\}})? (?P<value>\S+)$")
_LABEL = re.compile(r'\s*([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"\s*(,|$)')

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def _unescape(value: str) -> str:
    return re.sub(r"\\(.)", lambda m: "\n" if m.group(1) == "n" else m.group(1), value)


def parse_exposition(text: str) -> tuple[dict[str, str], Samples]:
    """Parse Prometheus text format 0.0.4 strictly enough to catch mistakes: types by family, samples by labels."""
    assert text.endswith("\n")
    types: dict[str, str] = {}
    helps: set[str] = set()
    samples: Samples = {}
    for number, line in enumerate(text.splitlines(), 1):
        where = f"line {number}: {line!r}"
        if line.startswith("# HELP "):
            name = line.split(" ", 3)[2]
            assert re.fullmatch(_NAME, name) and name not in helps, where
            helps.add(name)
        elif line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ")
            assert kind in ("counter", "gauge", "untyped", "summary", "histogram"), where
            assert name not in types, f"{where}: TYPE given twice"
            assert name in helps, f"{where}: TYPE before HELP"
            types[name] = kind
        else:
            assert line and not line.startswith("#"), where
            match = _SAMPLE.match(line)
            assert match, where
            name = match["name"]
            assert name in types, f"{where}: sample without a TYPE"
            labels: list[tuple[str, str]] = []
            rest = match["labels"] or ""
            while rest:
                label = _LABEL.match(rest)
                assert label, where
                labels.append((label[1], _unescape(label[2])))
                rest = rest[label.end():]
            key = (name, frozenset(labels))
            assert key not in samples, f"{where}: duplicate sample"
            samples[key] = float(match["value"])
    for name, kind in types.items():
        assert name.startswith("metadj_"), name
        if kind == "counter":
            assert name.endswith("_total"), name
    return types, samples


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples[(name, frozenset(labels.items()))]


def test_metrics_turn_the_snapshot_into_gauges_and_counters() -> None:
    types, samples = parse_exposition(prometheus_text(SNAPSHOT))
    assert value(samples, "metadj_scope_state", state="streaming") == 1
    assert sum(value(samples, "metadj_scope_state", state=s) for s in SCOPE_STATES) == 1
    assert value(samples, "metadj_tempo_bpm", source="audio") == 124
    assert value(samples, "metadj_scope_fps_in") == pytest.approx(19.6)
    assert value(samples, "metadj_scope_info", server_version="0.2.4", pipeline="longlive", emulator="true") == 1
    assert value(samples, "metadj_show_theme_info", theme="neon_city") == 1
    assert value(samples, "metadj_show_transition_progress") == pytest.approx(0.6)
    assert value(samples, "metadj_audio_feature", feature="low") == pytest.approx(0.6)
    assert value(samples, "metadj_video_output", output="camera") == 1
    assert value(samples, "metadj_video_convert_seconds") == pytest.approx(0.0004)
    assert value(samples, "metadj_inputs_midi_ports") == 1
    assert ("metadj_inputs_midi_waiting", frozenset()) not in samples  # a snapshot without the field: no sample
    waiting = copy.deepcopy(SNAPSHOT)
    waiting["inputs"].update(midi=[], midi_waiting=["launch"])
    assert value(parse_exposition(prometheus_text(waiting))[1], "metadj_inputs_midi_waiting") == 1
    assert value(samples, "metadj_warnings") == 2
    assert value(samples, "metadj_info", version="0.4.0") == 1
    for name, expected in (("metadj_sender_sent_total", 40), ("metadj_sender_merged_total", 1900),
                           ("metadj_scope_frames_received_total", 1234), ("metadj_scope_sessions_total", 2),
                           ("metadj_video_frames_shown_total", 400), ("metadj_video_repeats_total", 41)):
        assert types[name] == "counter"
        assert value(samples, name) == expected
    assert types["metadj_tempo_bpm"] == "gauge"


def test_absent_parts_give_no_samples() -> None:
    types, samples = parse_exposition(prometheus_text(EMPTY))
    assert value(samples, "metadj_scope_state", state="connecting") == 1
    assert value(samples, "metadj_scope_error") == 1
    assert not any(name.startswith(("metadj_tempo", "metadj_audio", "metadj_show", "metadj_video")) for name in types)
    assert value(samples, "metadj_sender_sent_total") == 0


def test_labels_are_escaped_and_unknown_states_still_show() -> None:
    snap = copy.deepcopy(SNAPSHOT)
    snap["show"]["theme"] = 'neon "city"\\2\nnight'
    snap["scope"]["state"] = "warming up"
    _, samples = parse_exposition(prometheus_text(snap))
    assert value(samples, "metadj_show_theme_info", theme='neon "city"\\2\nnight') == 1
    assert value(samples, "metadj_scope_state", state="warming up") == 1
    assert value(samples, "metadj_scope_state", state="streaming") == 0


def test_scope_states_match_the_session() -> None:
    from metadj_bridge.scope.session import SessionState

    assert set(SCOPE_STATES) == {state.value for state in SessionState}


async def test_status_and_metrics_over_http() -> None:
    snap = copy.deepcopy(SNAPSHOT)
    async with WebServer(lambda: snap, port=0) as server:
        assert server.url.startswith("http://127.0.0.1:")
        async with httpx.AsyncClient(base_url=server.url) as client:
            status = await client.get("/status")
            assert status.status_code == 200
            assert status.headers["content-type"].startswith("application/json")
            assert status.json() == snap
            snap["sender"] = {"sent": 41, "merged": 1905}
            metrics = await client.get("/metrics")
            assert metrics.status_code == 200
            assert metrics.headers["content-type"].startswith("text/plain; version=0.0.4")
            _, samples = parse_exposition(metrics.text)
            assert value(samples, "metadj_sender_sent_total") == 41
            assert (await client.get("/nothing")).status_code == 404
        await server.aclose()  # twice is harmless
    with pytest.raises(RuntimeError, match="closed"):
        await server.start()


async def test_an_address_not_of_this_machine_is_a_config_error_naming_it() -> None:
    server = WebServer(lambda: SNAPSHOT, host="192.0.2.1", port=0)  # TEST-NET-1: never this machine's
    with pytest.raises(ConfigError, match="192.0.2.1"):
        await server.start()
    await server.aclose()


async def test_a_failing_snapshot_answers_500_and_the_server_stays_up(caplog: pytest.LogCaptureFixture) -> None:
    failing = True

    def snapshot() -> dict[str, Any]:
        if failing:
            raise RuntimeError("engine gone")
        return SNAPSHOT

    async with WebServer(snapshot, port=0) as server, httpx.AsyncClient(base_url=server.url) as client:
        assert (await client.get("/status")).status_code == 500
        assert (await client.get("/metrics")).status_code == 500
        failing = False
        assert (await client.get("/status")).json()["scope"]["state"] == "streaming"
    assert any("engine gone" in r.getMessage() for r in caplog.records)


#: What a port scanner, a confused client or an attacker sends to the status port.
GARBAGE = [
    b"GARBAGE\r\n\r\n",  # not a request line
    b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03",  # a TLS hello to an http port
    b"GET /status HTTP/1.1\r\nX-Huge: " + b"a" * 100_000 + b"\r\n\r\n",  # a header far beyond the limit
    b"FOO BAR BAZ QUX\r\n\r\n",  # an invalid method and version
    b"GET /status HTTP/9.9\r\n\r\n",
    b"GE\x00T /status HTTP/1.1\r\n\r\n",
    b"GET /status HTTP/1.1\r\nContent-Length: -5\r\n\r\n",
    b"GET /" + b"x" * 20_000 + b" HTTP/1.1\r\n\r\n",  # a request line far beyond the limit
    b"GET /status HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
    b"GET\r\n\r\n",  # no target, no version
]


async def _send_raw(port: int, payload: bytes) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(payload)
        await writer.drain()
        return await asyncio.wait_for(reader.read(), 5.0)
    except ConnectionError:
        return b""
    finally:
        writer.close()


async def test_malformed_requests_give_one_line_naming_the_peer(caplog: pytest.LogCaptureFixture) -> None:
    async with WebServer(lambda: SNAPSHOT, port=0) as server:
        with caplog.at_level(logging.DEBUG):
            answers = [await _send_raw(server.port, payload) for payload in GARBAGE]
        async with httpx.AsyncClient(base_url=server.url) as client:
            assert (await client.get("/status")).status_code == 200  # the server is still up
    assert all(answer.startswith(b"HTTP/1.0 400 Bad Request") for answer in answers), answers
    assert all(r.exc_info is None for r in caplog.records), "a traceback for a request from outside"
    problems = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert 1 <= len(problems) <= 2, [r.getMessage() for r in problems]
    text = problems[0].getMessage()
    assert "malformed HTTP requests" in text and "request from 127.0.0.1" in text and "\n" not in text
