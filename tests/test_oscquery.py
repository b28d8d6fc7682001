"""OSCQuery (metadj_bridge/web/oscquery.py, web/osc_space.py): the bridge's OSC address space as HTTP JSON and on
mDNS. Real parts only: the service on a loopback port, aiohttp's client, the bundled profiles through the real
loader, a real ShowRunner reload, real OSC over UDP into the bridge's OscInput, and a real python-zeroconf browser.

mDNS runs on the loopback interface: python-zeroconf sends to 224.0.0.251 out of 127.0.0.1 with multicast loopback
on, which Linux delivers even though ``lo`` has no MULTICAST flag, so no packet leaves the machine.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from pythonosc.udp_client import SimpleUDPClient

from metadj_bridge.bundled import bundled_profile
from metadj_bridge.errors import ClosedError
from metadj_bridge.inputs.osc import OscInput
from metadj_bridge.profile import load_profile
from metadj_bridge.profile.model import ShowProfile
from metadj_bridge.run.show import ShowRunner
from metadj_bridge.scope.sender import ParameterSender
from metadj_bridge.web.oscquery import OSC_TYPE, OSCJSON_TYPE, OscQueryService
from tests.helpers import RecordingSink, free_port, wait_for

DECK = """\
name: Deck test
inputs:
  audio: none
  osc: {{port: 7001, presets: [resolume]}}
themes:
  one:
    prompts: [a red room, a blue room]
  two:
    prompts: [a green field]
mappings:
  fader:
    source: osc./deck/{deck}/fader
    transforms: [{{range: {{in: [0, 127]}}}}]
    target: prompt.mix
  next:
    trigger: osc./deck/{deck}/next
    target: prompt.next
  cue_any_deck:
    trigger: osc./deck/*/cue
    target: prompt.previous
"""


@pytest.fixture
async def serve() -> AsyncIterator[Callable[..., Any]]:
    """Start an OscQueryService (HTTP only unless asked) on loopback; closed at the end."""
    services: list[OscQueryService] = []

    async def start(getter: Callable[[], ShowProfile], **kwargs: Any) -> OscQueryService:
        kwargs.setdefault("advertise", False)
        kwargs.setdefault("http_port", 0)
        service = OscQueryService(getter, "127.0.0.1", kwargs.pop("osc_port", 7001), **kwargs)
        services.append(service)
        await service.start()
        return service

    yield start
    for service in services:
        await service.aclose()


async def get(url: str) -> tuple[int, Any]:
    async with aiohttp.ClientSession() as client, client.get(url) as response:
        body = await response.json() if response.status != 204 else None
        if body is not None:
            assert response.content_type == "application/json"
        return response.status, body


def methods(node: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Every method (a node without CONTENTS) under a JSON node."""
    if "CONTENTS" not in node:
        yield node
        return
    for child in node["CONTENTS"].values():
        yield from methods(child)


def bundled(name: str) -> ShowProfile:
    return load_profile(str(bundled_profile(name)))


async def test_the_resolume_profile_lists_its_addresses_with_types_and_ranges(serve: Any) -> None:
    profile = bundled("resolume")
    service = await serve(lambda: profile)
    status, root = await get(f"{service.url}/")
    assert status == 200 and root["FULL_PATH"] == "/" and root["ACCESS"] == 0
    found = {m["FULL_PATH"]: m for m in methods(root)}
    # What the profile reads, each once, typed by the preset entry that matches it (wildcards resolved).
    phase = found["/composition/crossfader/phase"]
    assert phase["TYPE"] == "f" and phase["RANGE"] == [{"MIN": 0.0, "MAX": 1.0}] and phase["ACCESS"] == 2
    assert "crossfader_mix" in phase["DESCRIPTION"]
    for column in (1, 2, 3, 4):
        connect = found[f"/composition/columns/{column}/connect"]
        assert connect["TYPE"] == "i" and connect["RANGE"] == [{"MIN": 0, "MAX": 1}]
    assert found["/composition/layers/1/video/opacity"]["TYPE"] == "f"
    assert found["/composition/tempocontroller/tempo"]["RANGE"] == [{"MIN": 0.0, "MAX": 1.0}]
    assert found["/composition/tempocontroller/resync"]["TYPE"] == "i"
    # Preset addresses without a wildcard are there even when no mapping reads them; patterns never are.
    assert "/composition/master" in found and "/composition/tempocontroller/tempotap" in found
    assert not any(ch in path for path in found for ch in "*?[]{}")
    # The bridge's own control addresses, with the profile's themes as the choices.
    assert found["/metadj/profile"]["TYPE"] == "s"
    assert found["/metadj/theme"]["RANGE"] == [{"VALS": ["neon", "ocean", "cosmos", "chrome"]}]
    assert found["/metadj/prompt"]["TYPE"] == "s"
    assert found["/metadj/crossfade"]["TYPE"] == "f" and found["/metadj/crossfade"]["RANGE"] == [
        {"MIN": 0.0, "MAX": 1.0}]
    assert "panic" in found["/metadj/action"]["RANGE"][0]["VALS"]
    assert found["/metadj/scene/recall"]["OVERLOADS"][0]["TYPE"] == "sf"
    assert found["/metadj/scene/save"]["TYPE"] == "s"
    # The tree's containers hold what they say: a sub-tree is the same JSON as in the whole tree.
    status, columns = await get(f"{service.url}/composition/columns/")
    assert status == 200 and columns == root["CONTENTS"]["composition"]["CONTENTS"]["columns"]


async def test_ableton_getters_take_their_indices_first(serve: Any) -> None:
    profile = bundled("ableton")
    service = await serve(lambda: profile)
    status, volume = await get(f"{service.url}/live/track/get/volume")
    assert status == 200 and volume["TYPE"] == "if" and volume["RANGE"][1] == {"MIN": 0.0, "MAX": 1.0}
    assert "(1)" in volume["DESCRIPTION"]  # the mapping reads track 1
    status, playing = await get(f"{service.url}/live/clip/get/playing_status?TYPE")
    assert (status, playing) == (200, {"TYPE": "iif"})
    status, tempo = await get(f"{service.url}/live/song/get/tempo?RANGE")
    assert (status, tempo) == (200, {"RANGE": [{"MIN": 20.0, "MAX": 999.0}]})


@pytest.mark.parametrize("name", ["resolume", "ableton", "deck"])
async def test_every_advertised_address_is_understood_by_the_osc_input(
        serve: Any, tmp_path: Path, name: str) -> None:
    """A client that sends what the tree says (its TYPE, a value in its RANGE) gets a signal or a trigger."""
    if name == "deck":
        (tmp_path / "deck.yaml").write_text(DECK.format(deck="a"))
        profile = load_profile(tmp_path / "deck.yaml")
    else:
        profile = bundled(name)
    sink = RecordingSink()
    async with OscInput("127.0.0.1", 0, presets=profile.inputs.osc.presets, sink=sink) as osc_in:
        service = await serve(lambda: profile, osc_port=osc_in.port)
        _, root = await get(f"{service.url}/")
        sent = [m for m in methods(root) if not m["FULL_PATH"].startswith("/metadj/")]
        client = SimpleUDPClient("127.0.0.1", osc_in.port)
        try:
            for method in sent:
                ranges = method.get("RANGE") or [None] * len(method["TYPE"])
                args: list[Any] = []
                for tag, limits in zip(method["TYPE"], ranges, strict=True):
                    top = (limits or {}).get("MAX", 1)
                    args.append(int(top) if tag == "i" else float(top) if tag == "f" else None)
                client.send_message(method["FULL_PATH"], args)
            await wait_for(lambda: osc_in.counters.messages == len(sent), 3.0, "every message")
        finally:
            client._sock.close()
    assert osc_in.counters.bad_args == 0 and osc_in.counters.dispatched == len(sent)
    heard = {event.name for event in sink.events}
    for method in sent:  # AbletonOSC getters: the indices sent go into the name (osc./live/track/get/volume/1)
        path = "osc." + method["FULL_PATH"]
        assert any(h == path or h.startswith(path + "/") for h in heard), f"nothing heard for {path}"
    if name == "deck":
        assert {"osc./deck/a/fader", "osc./deck/a/next"} <= heard


async def test_host_info_names_the_osc_port_and_the_extensions(serve: Any) -> None:
    profile = bundled("resolume")
    service = await serve(lambda: profile, osc_port=7123)
    for path in ("/", "/composition/master", "/no/such/path"):  # the path does not matter for HOST_INFO
        status, info = await get(f"{service.url}{path}?HOST_INFO")
        assert status == 200
        assert info["NAME"].endswith(": Resolume")
        assert (info["OSC_IP"], info["OSC_PORT"], info["OSC_TRANSPORT"]) == ("127.0.0.1", 7123, "UDP")
        assert info["EXTENSIONS"]["RANGE"] and info["EXTENSIONS"]["ACCESS"] and not info["EXTENSIONS"]["VALUE"]
        assert not info["EXTENSIONS"]["LISTEN"]


async def test_values_are_offered_when_the_bridge_hands_its_board_over(serve: Any) -> None:
    profile = bundled("resolume")
    values = {"osc./composition/crossfader/phase": 0.25}
    service = await serve(lambda: profile, values=values)
    assert await get(f"{service.url}/composition/crossfader/phase?VALUE") == (200, {"VALUE": [0.25]})
    assert await get(f"{service.url}/composition/master?VALUE") == (200, {})  # readable, nothing heard yet
    assert await get(f"{service.url}/metadj/theme?VALUE") == (204, None)  # write-only
    status, phase = await get(f"{service.url}/composition/crossfader/phase")
    assert phase["ACCESS"] == 3 and phase["VALUE"] == [0.25]
    values["osc./composition/crossfader/phase"] = 0.75  # the board moves on: so does the answer
    assert await get(f"{service.url}/composition/crossfader/phase?VALUE") == (200, {"VALUE": [0.75]})
    status, info = await get(f"{service.url}/?HOST_INFO")
    assert info["EXTENSIONS"]["VALUE"] is True


async def test_unknown_paths_and_attributes_get_json_errors(serve: Any) -> None:
    profile = bundled("resolume")
    service = await serve(lambda: profile)
    status, body = await get(f"{service.url}/composition/nothing")
    assert status == 404 and "/composition/nothing" in body["error"]
    status, body = await get(f"{service.url}/composition/master?GABBAGABBAHEY")
    assert status == 400 and "GABBAGABBAHEY" in body["error"]
    status, body = await get(f"{service.url}/composition/master?LISTEN")
    assert status == 400 and "does not offer" in body["error"]
    assert await get(f"{service.url}/composition?TYPE") == (200, {})  # a container has no TYPE
    async with aiohttp.ClientSession() as client, client.post(f"{service.url}/composition/master", data=b"x") as r:
        assert r.status == 405 and "GET" in (await r.json())["error"]


async def test_the_tree_follows_a_reload_of_the_running_profile(serve: Any, tmp_path: Path) -> None:
    path = tmp_path / "deck.yaml"
    path.write_text(DECK.format(deck="a"))
    show = ShowRunner(load_profile(path), ParameterSender())
    service = await serve(lambda: show.profile)
    status, fader = await get(f"{service.url}/deck/a/fader")
    # No preset knows it: a value, ranged as the profile's range transform reads it; a trigger takes no number.
    assert fader["TYPE"] == "f" and fader["RANGE"] == [{"MIN": 0.0, "MAX": 127.0}]
    assert (await get(f"{service.url}/deck/a/next?TYPE")) == (200, {"TYPE": "N"})
    assert (await get(f"{service.url}/deck"))[1]["CONTENTS"].keys() == {"a"}  # the wildcard cue is no address

    path.write_text(DECK.format(deck="b"))
    show.request_reload("test")
    await wait_for(lambda: "/deck/b/" in show.profile.mappings[0].source.name, 5.0, "the reloaded profile")
    assert (await get(f"{service.url}/deck/b/fader"))[0] == 200
    assert (await get(f"{service.url}/deck/a/fader"))[0] == 404
    tree_before = service.tree()
    assert service.refresh() is not tree_before  # refresh() rebuilds at once (the bridge calls it on a switch)


async def test_the_http_port_is_the_osc_ports_neighbour_or_the_next_free_one(serve: Any) -> None:
    profile = bundled("resolume")
    with socket.socket() as near:
        for _ in range(20):  # an OSC port whose neighbour is free, and then taken by us
            osc_port = free_port()
            try:
                near.bind(("127.0.0.1", osc_port + 1))
                break
            except OSError:
                continue
        near.listen()
        service = await serve(lambda: profile, osc_port=osc_port, http_port=None)
    assert service.http_port is not None and osc_port + 1 < service.http_port <= osc_port + 11
    assert (await get(f"{service.url}/?HOST_INFO"))[0] == 200


async def test_a_port_that_cannot_be_had_is_one_warning_and_nothing_served(
        serve: Any, caplog: pytest.LogCaptureFixture) -> None:
    profile = bundled("resolume")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        with caplog.at_level(logging.WARNING, "metadj_bridge.web.oscquery"):
            service = await serve(lambda: profile, http_port=taken.getsockname()[1])
    assert service.url is None
    assert [r.levelno for r in caplog.records] == [logging.WARNING] and "without OSCQuery" in caplog.text


async def test_a_broken_profile_answers_500_and_the_service_still_closes(serve: Any) -> None:
    profile = bundled("resolume")
    calls = [0]

    def getter() -> ShowProfile:
        calls[0] += 1
        if calls[0] > 1:
            raise RuntimeError("the running profile is gone")
        return profile

    service = await serve(getter)
    status, body = await get(f"{service.url}/")
    assert status == 500 and "log" in body["error"]
    await service.aclose()
    await service.aclose()  # twice is harmless
    with pytest.raises(ClosedError):
        await service.start()


async def test_a_zeroconf_browser_finds_both_services_and_sees_them_withdrawn(serve: Any) -> None:
    from zeroconf import IPVersion, ServiceStateChange
    from zeroconf.asyncio import AsyncServiceBrowser, AsyncZeroconf

    profile = bundled("resolume")
    osc_port = free_port()
    service = await serve(lambda: profile, osc_port=osc_port, advertise=True, name=f"metadj test {osc_port}")
    await asyncio.wait_for(service.advertising_done.wait(), 10)
    assert len(service.advertised) == 2, "advertising failed (see the log)"
    browser_zc = AsyncZeroconf(interfaces=["127.0.0.1"], ip_version=IPVersion.V4Only)
    seen: dict[str, list[tuple[str, ServiceStateChange]]] = {OSCJSON_TYPE: [], OSC_TYPE: []}

    def on_change(zeroconf: Any, service_type: str, name: str, state_change: ServiceStateChange) -> None:
        seen[service_type].append((name, state_change))

    browser = AsyncServiceBrowser(browser_zc.zeroconf, [OSCJSON_TYPE, OSC_TYPE], handlers=[on_change])
    try:
        ours = {kind: f"metadj test {osc_port}.{kind}" for kind in seen}
        await wait_for(lambda: all((ours[k], ServiceStateChange.Added) in seen[k] for k in seen), 10.0, "both")
        http = await browser_zc.async_get_service_info(OSCJSON_TYPE, ours[OSCJSON_TYPE], 3000)
        osc = await browser_zc.async_get_service_info(OSC_TYPE, ours[OSC_TYPE], 3000)
        assert http is not None and osc is not None
        assert (http.port, osc.port) == (service.http_port, osc_port)
        assert http.parsed_addresses() == ["127.0.0.1"]
        # What a client does next: ask the advertised address and port for the tree.
        status, info = await get(f"http://{http.parsed_addresses()[0]}:{http.port}/?HOST_INFO")
        assert status == 200 and info["OSC_PORT"] == osc_port

        await service.aclose()  # withdraws both (mDNS goodbyes)
        await wait_for(lambda: all((ours[k], ServiceStateChange.Removed) in seen[k] for k in seen), 10.0, "goodbye")
    finally:
        await browser.async_cancel()
        await browser_zc.async_close()


async def test_an_osc_input_on_every_interface_is_served_and_advertised_there(serve: Any) -> None:
    """OSC on 0.0.0.0: the tree is served on every interface (reached here on loopback), HOST_INFO names no OSC_IP
    (a client uses the address it reached), and mDNS would go out on every interface with their own addresses.
    Nothing is advertised in this test: a multicast packet on a real interface would leave the machine."""
    from zeroconf import InterfaceChoice

    profile = bundled("resolume")
    service = OscQueryService(lambda: profile, "0.0.0.0", 7001, http_port=0, advertise=False)
    await service.start()
    try:
        status, info = await get(f"http://127.0.0.1:{service.http_port}/?HOST_INFO")
        assert status == 200 and "OSC_IP" not in info and info["OSC_PORT"] == 7001
        interfaces, addresses, _ = service._interfaces()
        assert interfaces is InterfaceChoice.All and addresses
        assert addresses == ["127.0.0.1"] or not any(a.startswith("127.") for a in addresses)
    finally:
        await service.aclose()


async def test_closing_while_still_advertising_is_quick_and_clean(serve: Any) -> None:
    profile = bundled("resolume")
    service = await serve(lambda: profile, osc_port=free_port(), advertise=True)
    await asyncio.sleep(0.05)  # mDNS probing takes a second or two: close in the middle of it
    assert not service.advertising_done.is_set()
    await asyncio.wait_for(service.aclose(), 5.0)
    assert service.url is None and service.advertised == []
