"""A Scope server's pipeline schemas (``GET /api/v1/pipelines/schemas``) of the right shape but with values no
pipeline has: what the bridge believes of them must never stop the parameters from going out.

The schemas are served over real HTTP (``schemas_server``, conftest.py) and read with the bridge's own client;
what the session does with them (``scope/connection.py``: the offer's chunk to the sender, the schema's rules to the
sender's checks) is done here to a real :class:`ParameterSender`."""

from __future__ import annotations

from typing import Any

import pytest

from metadj_bridge.errors import ParameterError
from metadj_bridge.parameters import ParameterSchema
from metadj_bridge.scope.api import ScopeClient
from metadj_bridge.scope.offer import read_offer
from metadj_bridge.scope.pacing import PacerConfig, SendPacer
from metadj_bridge.scope.sender import ParameterSender

PROMPTS = [{"text": "neon city", "weight": 1.0}]


async def offered(served: list[Any], entry: str) -> Any:
    served[0] = '{"pipelines": {"odd": ' + entry + "}}"
    async with ScopeClient(served[1]) as scope:
        offer = await read_offer(scope)
    assert offer is not None
    return offer


def paced(pacer: SendPacer) -> float:
    """Seconds from one message to the next a steady 15 fps session allows, once a chunk's changes keep coming."""
    for i in range(75):
        pacer.on_frame(i / 15)
    pacer.on_sent(5.0)
    return pacer.next_send_at(5.1, 5.0) - 5.0


@pytest.mark.parametrize("claimed", ["1" + "0" * 400, "1000000000", "241", "0", "-3"],
                         ids=["400 digits", "1e9", "241", "0", "-3"])
async def test_a_chunk_no_pipeline_makes_is_not_believed_and_parameters_keep_going_out(
    schemas_server: list[Any], claimed: str
) -> None:
    offer = await offered(schemas_server, '{"supported_modes": ["text"], "chunk_frames": ' + claimed + "}")
    chunk = offer.get("odd").chunk_frames
    assert chunk is None
    sender = ParameterSender(pacer=PacerConfig(chunk_frames=12))
    sender.set_chunk_frames(chunk)
    assert sender.pacer.chunk_frames == 12
    assert paced(sender.pacer) < 2.0


@pytest.mark.parametrize("claimed", [10**400, 10**9, 1001], ids=["400 digits", "1e9", "1001"])
def test_the_pacer_itself_refuses_a_chunk_longer_than_it_ever_believes(claimed: int) -> None:
    pacer = SendPacer(PacerConfig(chunk_frames=12))
    pacer.set_chunk_frames(claimed)
    assert (pacer.chunk_frames, pacer.chunk_source) == (12, "table")
    assert paced(pacer) < 2.0


async def test_a_plausible_chunk_from_the_schema_is_still_believed(schemas_server: list[Any]) -> None:
    offer = await offered(schemas_server, '{"supported_modes": ["text"], "chunk_frames": 24}')
    assert offer.get("odd").chunk_frames == 24


@pytest.mark.parametrize("bound", ['"0"', '{"a": 1}', "[0]", "true", "1" + "0" * 400, "NaN", "-Infinity"],
                         ids=["text", "object", "list", "true", "400 digits", "NaN", "-Infinity"])
async def test_a_bound_that_is_no_number_is_ignored_and_values_are_still_checked(
    schemas_server: list[Any], bound: str
) -> None:
    offer = await offered(schemas_server, '{"config_schema": {"properties": {'
                          '"noise_scale": {"type": "number", "minimum": ' + bound + ', "maximum": 1}, '
                          '"base_seed": {"type": "integer", "minimum": 0, "maximum": ' + bound + "}}}}")
    schema = ParameterSchema.from_server("odd", {k: p.schema for k, p in offer.pipelines.items()})
    assert schema.check("noise_scale", 0.5) == 0.5
    with pytest.raises(ParameterError, match="outside the allowed range"):
        schema.check("noise_scale", 5.0)
    assert schema.check("base_seed", 7) == 7
    with pytest.raises(ParameterError, match="outside the allowed range"):
        schema.check("base_seed", -1)
    sender = ParameterSender()
    sender.set_schema(schema)
    sender.update({"prompts": PROMPTS, "noise_scale": 0.25})  # what the show's engine hands on at each step
    assert sender.snapshot()["noise_scale"] == 0.25


@pytest.mark.parametrize("value", [10**400, -(10**400)], ids=["400 digits", "minus 400 digits"])
def test_a_number_too_large_for_a_float_is_a_parameter_error(value: int) -> None:
    """A show log replays whatever a line holds: an integer of 400 digits is refused like any other bad value."""
    sender = ParameterSender()
    with pytest.raises(ParameterError, match="is not a number"):
        sender.update({"noise_scale": value})
