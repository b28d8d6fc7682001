"""What a Scope server offers (scope/offer.py): read over real HTTP, and the one-line refusals."""

from __future__ import annotations

from typing import Any

import pytest

from metadj_bridge.emulator import ScopeEmulator
from metadj_bridge.errors import ConfigError, ScopeConnectionError
from metadj_bridge.scope.api import ScopeClient
from metadj_bridge.scope.offer import (
    ServerOffer,
    check_pipeline,
    check_session,
    parse_offer,
    read_offer,
    read_offer_or_none,
)
from tests.helpers import free_port

#: Entries shaped like the real Scope 0.2.4's answer (trimmed to the fields the offer reads).
REAL_SHAPED = {
    "pipelines": {
        "passthrough": {"id": "passthrough", "supported_modes": ["video"], "default_mode": "video",
                        "config_schema": {"properties": {"height": {"default": 512}}}},
        "gray": {"id": "gray", "supported_modes": ["video"], "default_mode": "video"},
        "longlive": {"id": "longlive", "supported_modes": ["text", "video"], "default_mode": "text"},
        "plugin-x": {"id": "plugin-x", "supported_modes": ["text"], "default_mode": "text",
                     "config_schema": {"properties": {"num_frame_per_block": {"default": 3}}}},
        "broken": "not an object",
    }
}


async def test_read_offer_parses_real_shaped_schemas(schemas_server: list[Any]) -> None:
    schemas_server[0] = REAL_SHAPED
    async with ScopeClient(schemas_server[1]) as scope:
        offer = await read_offer(scope)
    assert offer is not None
    assert sorted(offer.pipelines) == ["gray", "longlive", "passthrough", "plugin-x"]  # "broken" skipped
    passthrough = offer.get("passthrough")
    assert passthrough is not None and passthrough.modes == ("video",) and passthrough.default_mode == "video"
    assert passthrough.chunk_frames is None  # the real schemas do not say
    plugin = offer.get("plugin-x")
    assert plugin is not None and plugin.chunk_frames == 3
    assert offer.get("longlive") is not None and offer.get("nope") is None


async def test_read_offer_is_none_on_an_older_server_without_the_endpoint(schemas_server: list[Any]) -> None:
    schemas_server[0] = None
    async with ScopeClient(schemas_server[1]) as scope:
        assert await read_offer(scope) is None
    check_pipeline(None, "passthrough", "text")  # nothing to refuse on: the caller falls back to its table


async def test_read_offer_raises_when_the_server_is_down() -> None:
    async with ScopeClient(f"http://127.0.0.1:{free_port()}", deadline=3) as scope:
        with pytest.raises(ScopeConnectionError):
            await read_offer(scope)


async def test_read_offer_from_the_emulator(emulator: ScopeEmulator) -> None:
    async with ScopeClient(emulator.url) as scope:
        offer = await read_offer(scope)
    assert offer is not None and "longlive" in offer.pipelines
    check_pipeline(offer, "longlive", "text")


def test_unknown_pipeline_is_refused_in_one_line_naming_the_offer() -> None:
    offer = parse_offer(REAL_SHAPED)
    with pytest.raises(ConfigError) as caught:
        check_pipeline(offer, "longliv", "text")
    message = str(caught.value)
    assert "\n" not in message
    assert "'longliv' is not offered" in message
    assert "passthrough (video)" in message and "longlive (text, video)" in message


def test_video_only_pipeline_is_refused_for_a_text_show() -> None:
    offer = parse_offer(REAL_SHAPED)
    check_pipeline(offer, "passthrough", "video")
    check_pipeline(offer, "longlive", "text")
    with pytest.raises(ConfigError) as caught:
        check_pipeline(offer, "passthrough", "text")
    message = str(caught.value)
    assert "\n" not in message
    assert "'passthrough' supports only video input, not text mode" in message


def test_an_empty_or_strange_answer_offers_nothing() -> None:
    bodies: list[Any] = [{}, {"pipelines": []}, [], None, "x"]
    for body in bodies:
        offer = parse_offer(body)
        assert offer == ServerOffer({})
        with pytest.raises(ConfigError, match="offers: no pipelines at all"):
            check_pipeline(offer, "longlive", "text")


def test_entry_without_modes_refuses_no_mode() -> None:
    offer = parse_offer({"pipelines": {"old": {"id": "old"}}})
    check_pipeline(offer, "old", "text")
    check_pipeline(offer, "old", "video")


def test_long_offers_are_cut_short() -> None:
    offer = parse_offer({"pipelines": {f"p{i}": {"supported_modes": ["text"]} for i in range(20)}})
    with pytest.raises(ConfigError, match="and 8 more"):
        check_pipeline(offer, "missing", "text")


def test_without_an_offer_the_bridges_table_refuses_what_it_knows_cannot_play() -> None:
    with pytest.raises(ConfigError) as caught:
        check_session(None, ["passthrough"], "text")
    assert "supports only video input, not text mode (the bridge's own table" in str(caught.value)
    check_session(None, ["passthrough"], "video")
    check_session(None, ["my-plugin"], "text")  # unknown to the table: let through


def test_every_pipeline_of_a_chain_is_checked() -> None:
    offer = parse_offer(REAL_SHAPED)
    check_session(offer, ["gray", "longlive"], "video")
    with pytest.raises(ConfigError, match="'gray' supports only video input"):
        check_session(offer, ["gray", "longlive"], "text")
    with pytest.raises(ConfigError, match="'nope' is not offered"):
        check_session(offer, ["nope", "longlive"], "video")


async def test_read_offer_or_none_tolerates_an_empty_answer_but_not_an_unreachable_server(
    schemas_server: list[Any],
) -> None:
    for answer in ("not an object", {"pipelines": {}}):  # nothing listed: cannot tell, the table decides
        schemas_server[0] = answer
        async with ScopeClient(schemas_server[1]) as scope:
            assert await read_offer_or_none(scope) is None
    async with ScopeClient(f"http://127.0.0.1:{free_port()}", deadline=3) as scope:
        with pytest.raises(ScopeConnectionError):
            await read_offer_or_none(scope)
