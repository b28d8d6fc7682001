"""ScopeClient against the emulator: health, pipeline reuse, schemas, ICE servers, assets, sessions."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from metadj_bridge.emulator import ScopeEmulator
from metadj_bridge.errors import ConfigError, ParameterError
from metadj_bridge.parameters import ParameterSchema
from metadj_bridge.scope.api import ScopeClient
from metadj_bridge.scope.sender import ParameterSender
from metadj_bridge.scope.session import ScopeSession, SessionConfig
from tests.conftest import SMALL, emulator_get, wait_for


async def test_health_reports_version_and_start_time(emulator: ScopeEmulator) -> None:
    async with ScopeClient(emulator.url) as scope:
        health = await scope.health()
    assert health.version == "0.2.4"
    assert health.server_start_time == pytest.approx(emulator.server_start_time)
    assert health.emulator is True


async def test_identical_pipeline_is_reused_and_different_params_reload(emulator: ScopeEmulator) -> None:
    async with ScopeClient(emulator.url) as scope:
        await scope.ensure_pipeline(["longlive"], SMALL, timeout=10, poll_interval=0.05)
        progress: list[str] = []
        status = await scope.ensure_pipeline(["longlive"], SMALL, timeout=10, on_progress=progress.append)
        assert status.status == "loaded" and progress == []  # nothing reloaded
        bigger = {"width": 320, "height": 192}
        status = await scope.ensure_pipeline(
            ["longlive"], bigger, timeout=10, poll_interval=0.05, on_progress=progress.append
        )
        assert status.load_params == bigger
        assert progress and progress[0] == "loading pipeline longlive"


async def test_schemas_feed_the_parameter_checks(emulator: ScopeEmulator) -> None:
    async with ScopeClient(emulator.url) as scope:
        schemas = await scope.pipeline_schemas()
    assert "longlive" in schemas
    schema = ParameterSchema.from_server("longlive", schemas)
    assert schema.check("vace_context_scale", 1.5) == 1.5
    with pytest.raises(ParameterError, match="outside the allowed range"):
        schema.check("vace_context_scale", 2.5)
    with pytest.raises(ParameterError, match="load parameter"):
        schema.check("width", 512)


async def test_ice_servers_come_from_the_server_when_not_configured(
    make_emulator: Callable[..., Awaitable[ScopeEmulator]],
) -> None:
    turn = {"urls": ["turn:127.0.0.1:3478"], "username": "dj", "credential": "secret"}
    emulator = await make_emulator(ice_servers=[turn])
    async with ScopeClient(emulator.url) as scope:
        assert await scope.ice_servers() == [turn]
    # With no ICE servers configured the session asks the server; the default emulator hands out none.
    plain = await make_emulator()
    session = ScopeSession(
        SessionConfig(url=plain.url, load_params=dict(SMALL), ice_servers=None, load_timeout=10), ParameterSender()
    )
    await session.start()
    try:
        await session.wait_streaming(timeout=20)
        await wait_for(lambda: session.frames_received > 0, 15, "frames")
    finally:
        await session.aclose()


async def test_asset_upload_returns_a_server_path(emulator: ScopeEmulator, tmp_path: Path) -> None:
    image = tmp_path / "ref.png"
    image.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 64)
    async with ScopeClient(emulator.url) as scope:
        from_file = await scope.upload_asset(image)
        from_bytes = await scope.upload_asset(b"raw bytes", filename="face.jpg")
        with pytest.raises(ConfigError, match="cannot read asset"):
            await scope.upload_asset(tmp_path / "missing.png")
    # The emulator runs on this machine, so its server paths can be read back.
    assert Path(from_file).read_bytes() == image.read_bytes()  # noqa: ASYNC240 - a test reads a small file back
    assert Path(from_bytes).read_bytes() == b"raw bytes"  # noqa: ASYNC240 - a test reads a small file back
    assert Path(from_file).name.endswith("ref.png")


async def test_delete_of_an_unknown_session_is_harmless(emulator: ScopeEmulator) -> None:
    async with ScopeClient(emulator.url) as scope:
        await scope.delete_session("no-such-session")
        metrics = await emulator_get(emulator.url, "/_emulator/metrics")
    assert metrics["active_sessions"] == 0


async def test_offer_before_load_is_reported_as_not_loaded(emulator: ScopeEmulator) -> None:
    async with ScopeClient(emulator.url) as scope:
        with pytest.raises(Exception, match="pipeline is not loaded") as info:
            await scope.offer("v=0\r\n", "offer", {"pipeline_ids": ["longlive"]})
    assert type(info.value).__name__ == "PipelineLoadError"
