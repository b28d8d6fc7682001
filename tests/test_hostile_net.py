"""Hostile clients of what the bridge serves on the network (round 3 of the hostile-input audit): a page of another
site that rebinds its name to 127.0.0.1, a client that opens connections by the hundred and never asks anything, an
OSC display that answers every message with an ICMP "port unreachable".

Real parts only: a whole running bridge with the emulator as Scope (``tests/test_web_api.py``'s fixture), the web
server and the OSCQuery service on loopback, httpx, aiohttp and raw TCP sockets as the clients.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import socket
from collections.abc import AsyncIterator

import aiohttp
import httpx
import pytest

from metadj_bridge.bundled import bundled_profile
from metadj_bridge.outputs.osc_out import OscOutput
from metadj_bridge.profile import load_profile
from metadj_bridge.web import connections
from metadj_bridge.web.oscquery import OscQueryService
from metadj_bridge.web.server import WebServer
from tests.helpers import wait_for
from tests.test_web_api import Bridge, bridge, prompts_of  # noqa: F401 - bridge is a fixture
from tests.test_web_server import SNAP

REBOUND = "rebind.evil.example"


async def test_a_page_of_another_site_rebound_to_this_machine_can_neither_see_nor_drive_the_show(
        bridge: Bridge) -> None:  # noqa: F811 - the fixture
    """DNS rebinding: evil.example answers 127.0.0.1 once its page is open, so the page's requests reach the bridge
    as same-origin requests of evil.example (``Host`` and ``Origin`` agree). Only the ``Host`` tells them apart."""
    http = bridge.http
    port = http.base_url.port
    rebound = {"Host": f"{REBOUND}:{port}", "Origin": f"http://{REBOUND}:{port}"}
    drive = await http.post("/api/theme", json={"name": "forest"}, headers=rebound)
    assert drive.status_code == 403, drive.text
    assert drive.json() == {"error": f"Host '{REBOUND}:{port}': this bridge serves this machine only (open "
                                     f"http://127.0.0.1:{port}/, or --http-host for other machines)", "field": "host"}
    for path in ("/api/state", "/status", "/frame.jpg", "/"):
        seen = await http.get(path, headers=rebound)
        assert seen.status_code == 403 and seen.json()["field"] == "host", (path, seen.text)
    async with aiohttp.ClientSession() as session:
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await session.ws_connect(f"{http.base_url}ws", headers=rebound)
        assert refused.value.status == 403
    refusals = [r.getMessage() for r in bridge.caplog.records if r.name == "metadj_bridge.web.server"
                and r.levelno == logging.WARNING]
    assert refusals == [f"web: requests for another host refused (DNS rebinding?): "
                        f"127.0.0.1 asked for {REBOUND}:{port}"]
    # The show did not move; this machine's own names still reach it, and the performer's request works.
    assert (await http.get("/api/state")).json()["control"]["theme"] == "neon"
    for host in ("localhost", "LOCALHOST.", "127.0.0.1", "127.1.2.3", "[::1]", "bridge.localhost"):
        assert (await http.get("/api/state", headers={"Host": f"{host}:{port}"})).status_code == 200, host
    assert (await http.post("/api/theme", json={"name": "forest"})).status_code == 200
    await bridge.until_received(lambda m: "a misty forest" in prompts_of(m), "the performer's theme")


# ------------------------------------------------------------------------------------------ connections by the hundred

Connection = tuple[asyncio.StreamReader, asyncio.StreamWriter]


@contextlib.asynccontextmanager
async def idle_connections(port: int, count: int) -> AsyncIterator[list[Connection]]:
    """``count`` TCP connections to ``port`` that send nothing, closed at the end."""
    held: list[Connection] = []
    try:
        for _ in range(count):
            held.append(await asyncio.open_connection("127.0.0.1", port))
        yield held
    finally:
        for _, writer in held:
            writer.close()


async def refused(connection: Connection) -> dict[str, object]:
    """What the server said before it closed a connection over its cap (it reads to the end: the server closes)."""
    answer = await asyncio.wait_for(connection[0].read(), 10)
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 503 "), answer
    return dict(json.loads(body))


def lines_of(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "metadj_bridge.web.connections"]


async def test_connections_over_the_cap_are_refused_and_the_server_answers_again_once_some_close(
        caplog: pytest.LogCaptureFixture) -> None:
    """Each connection is a descriptor of the bridge's own (256 in all by default on macOS): a client that holds them
    by the hundred, asking nothing, must not take the ones the Scope session and the show log need."""
    cap = connections.MAX_CONNECTIONS
    async with WebServer(lambda: SNAP, port=0) as web, idle_connections(web.port, cap + 20) as held:
        for over in held[cap:]:
            assert await refused(over) == {"error": f"this server already holds {cap} connections, the most it "
                                           "takes at once; close pages open elsewhere and try again",
                                           "field": "connections"}
        async with httpx.AsyncClient(base_url=web.url, timeout=10) as http:
            for _, writer in held[:10]:
                writer.close()
            async def served() -> bool:
                with contextlib.suppress(httpx.TransportError):
                    return (await http.get("/status")).status_code == 200
                return False

            await wait_for(served, 10, "the status once ten idle connections closed")
    assert lines_of(caplog) == [f"web server: connections refused (at most {cap} at once): "
                                f"127.0.0.1 opened connection {cap + 1}"]


async def test_a_connection_that_asks_nothing_is_closed_and_a_stream_is_not(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(connections, "IDLE_TIMEOUT", 0.5)
    async with WebServer(lambda: SNAP, port=0) as web, idle_connections(web.port, 2) as (idle, trickle):
        trickle[1].write(b"GET /status HTTP/1.1\r\nHost: 127.0.0.1\r\n")  # a request that never ends its headers
        assert await asyncio.wait_for(idle[0].read(), 10) == b""
        assert await asyncio.wait_for(trickle[0].read(), 10) == b""
        async with aiohttp.ClientSession() as session, session.ws_connect(web.url + "ws") as ws:
            first = await ws.receive_json(timeout=5)
            await asyncio.sleep(1.5)  # three idle timeouts: the live state is a request in progress
            assert first["type"] == "state" and (await ws.receive_json(timeout=5))["type"] == "state"


async def test_the_oscquery_server_refuses_connections_over_its_own_cap(caplog: pytest.LogCaptureFixture) -> None:
    from metadj_bridge.web.oscquery import MAX_CONNECTIONS

    profile = load_profile(str(bundled_profile("resolume")))
    async with OscQueryService(lambda: profile, "127.0.0.1", 7001, http_port=0, advertise=False) as service:
        assert service.http_port is not None
        async with idle_connections(service.http_port, MAX_CONNECTIONS + 5) as held:
            for over in held[MAX_CONNECTIONS:]:
                assert (await refused(over))["field"] == "connections"
        async def served() -> bool:
            async with aiohttp.ClientSession() as client, client.get(f"{service.url}/?HOST_INFO") as answer:
                return answer.status == 200

        await wait_for(served, 10, "HOST_INFO once the connections closed")
    assert lines_of(caplog) == [f"OSCQuery: connections refused (at most {MAX_CONNECTIONS} at once): "
                                f"127.0.0.1 opened connection {MAX_CONNECTIONS + 1}"]


# ------------------------------------------------------------------------------------------ OSC out


async def test_a_port_unreachable_storm_is_counted_in_a_few_lines_and_osc_out_goes_on(
        caplog: pytest.LogCaptureFixture) -> None:
    """Nothing listens where OSC out sends (TouchOSC not started): every message comes back as an ICMP "port
    unreachable". One WARNING says so; the rest are counted, not logged one by one, even in a debug log."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # bound then closed: nobody listens there
    caplog.set_level(logging.DEBUG, logger="metadj_bridge.outputs.osc_out")
    async with OscOutput("127.0.0.1", port, max_rate_hz=1000.0) as out:
        for beat in range(200):
            out.set_beat(beat, beat % 4)
            await wait_for(lambda b=beat: out.errors > b, 5, f"the ICMP answer to beat {beat}", interval=0.001)
        assert out.sent == 200
    lines = [r.getMessage() for r in caplog.records if r.name == "metadj_bridge.outputs.osc_out"]
    assert lines[0].startswith(f"OSC out to 127.0.0.1:{port} failed: ")
    assert lines[0].endswith("(further errors at DEBUG)")
    assert len(lines) <= 2, lines  # the 199 later ones: at most one line with their count
