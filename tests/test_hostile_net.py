"""Hostile clients of what the bridge serves on the network (round 3 of the hostile-input audit): a page of another
site that rebinds its name to 127.0.0.1, ...

Real parts only: a whole running bridge with the emulator as Scope (``tests/test_web_api.py``'s fixture), httpx and
aiohttp as the clients.
"""

from __future__ import annotations

import logging

import aiohttp
import pytest

from tests.test_web_api import Bridge, bridge, prompts_of  # noqa: F401 - bridge is a fixture

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
    assert refusals == [f"web: requests for another host refused (DNS rebinding?): 1 in the last 0 s; last: "
                        f"127.0.0.1 asked for {REBOUND}:{port}"]
    # The show did not move; this machine's own names still reach it, and the performer's request works.
    assert (await http.get("/api/state")).json()["control"]["theme"] == "neon"
    for host in ("localhost", "LOCALHOST.", "127.0.0.1", "127.1.2.3", "[::1]", "bridge.localhost"):
        assert (await http.get("/api/state", headers={"Host": f"{host}:{port}"})).status_code == 200, host
    assert (await http.post("/api/theme", json={"name": "forest"})).status_code == 200
    await bridge.until_received(lambda m: "a misty forest" in prompts_of(m), "the performer's theme")
