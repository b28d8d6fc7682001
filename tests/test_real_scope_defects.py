"""Issue 13's D1, D4 and D8, as the bridge meets them: what a real Scope 0.2.4 does, here on the emulator that imitates
it (and, for the tests marked so, on a real Scope when ``METADJ_TEST_SCOPE=URL`` is set).

- D4: a pipeline the server does not offer is refused before loading, in one line naming what it offers; a failed
  load quotes Scope's specific log line ("Invalid pipeline ID: longliv", "No module named 'flash_attn'") with
  advice that fits the cause, and a cause no wait can cure ends the start-up.
- D1: a video-only pipeline in a text show is refused up front; a session rebuilt because no video came says so
  as a WARNING, never "restored".
- D8: a session ends without a DELETE of a session Scope already dropped; the old error leaves the status.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from metadj_bridge.emulator import ScopeEmulator
from metadj_bridge.errors import ConfigError, PipelineLoadError
from metadj_bridge.scope.api import ScopeClient
from metadj_bridge.scope.load_errors import advice_for, load_failure, specific_line
from metadj_bridge.scope.offer import read_offer
from metadj_bridge.scope.reconnect import Backoff, ReconnectLogic, ReconnectState
from metadj_bridge.scope.sender import PacerConfig, ParameterSender
from metadj_bridge.scope.session import ScopeSession, SessionConfig
from tests.conftest import SMALL, emulator_get
from tests.helpers import wait_for

REAL_SCOPE = os.environ.get("METADJ_TEST_SCOPE")
needs_real_scope = pytest.mark.skipif(not REAL_SCOPE, reason="needs a real Scope: set METADJ_TEST_SCOPE=URL")

#: What a real Scope 0.2.4 logs for a failed load (its own words, from a CPU-only server).
REAL_FAILED_LOAD = [
    "2026-12-03 03:31:20,113 - scope.server.pipeline_manager - INFO - Loading pipeline: longlive (registry: longlive)",
    "2026-12-03 03:31:20,135 - scope.server.pipeline_manager - ERROR - Failed to load pipeline longlive: No module "
    "named 'flash_attn'. If this error persists, consider removing the models directory '/home/.daydream-scope/"
    "models' and re-downloading models.",
    "2026-12-03 03:31:20,135 - scope.server.pipeline_manager - ERROR - Failed to load pipeline: longlive",
    "2026-12-03 03:31:20,135 - scope.server.pipeline_manager - ERROR - Some pipelines failed to load",
]


def make_session(url: str, **overrides: Any) -> ScopeSession:
    fields: dict[str, Any] = {
        "url": url, "pipeline_ids": ["longlive"], "load_params": dict(SMALL), "prompts": "neon rain",
        "ice_servers": [], "backoff": Backoff(base=0.2, cap=0.5), "no_frame_timeout": 3.0, "load_timeout": 20.0,
    }
    fields.update(overrides)
    return ScopeSession(SessionConfig(**fields), ParameterSender(pacer=PacerConfig(chunk_frames=4)))


async def _started(session: ScopeSession) -> asyncio.Task[None]:
    await session.start()
    assert session.supervisor is not None
    return session.supervisor


# ------------------------------------------------------------------------------------- D4: the load's own words


def test_the_specific_line_is_quoted_not_the_generic_last_one() -> None:
    line = specific_line(REAL_FAILED_LOAD, "longlive")
    assert line == "Failed to load pipeline longlive: No module named 'flash_attn'"
    error = load_failure("longlive", REAL_FAILED_LOAD, "http://scope/api/v1/logs/current")
    message = str(error)
    assert "No module named 'flash_attn'" in message and "Some pipelines failed" not in message
    assert "GPU has enough memory" not in message and "model is downloaded" not in message
    assert error.transient is False  # waiting does not install a module
    assert "\n" not in message


def test_advice_follows_the_cause() -> None:
    assert "no such pipeline" in advice_for("Invalid pipeline ID: longliv")
    assert "weights are missing" in advice_for("[Errno 2] No such file or directory: '/m/netG_A_latest.pth'")
    assert "no internet access" in advice_for("<urlopen error [Errno -2] Name or service not known>")
    assert "GPU's memory" in advice_for("CUDA out of memory. Tried to allocate 2.00 GiB")
    assert "GPU has enough memory" in advice_for("something nobody foresaw")
    weights = load_failure("scribble", ["ERROR - Failed to load pipeline scribble: [Errno 2] No such file"], "u")
    assert weights.transient is True  # a download may still cure it
    nothing = load_failure("gray", [], "http://scope/api/v1/logs/current")
    assert "Check Scope's log (http://scope/api/v1/logs/current)" in str(nothing)


#: What a real CPU-only Scope 0.2.4 logs when RIFE's weights are missing (its own words).
REAL_RIFE_LOAD = (
    "2026-12-07 02:24:46,274 - scope.server.pipeline_manager - ERROR - Failed to load pipeline rife: Failed to load "
    "RIFE model: RIFE HDv3 model weights (flownet.pkl) not found. Please download RIFE HDv3 model from "
    "https://github.com/hzwer/arXiv2020-RIFE and place flownet.pkl in ~/.daydream-scope/models/RIFE/ directory. See "
    "docs/rife.md for installation instructions.. Please ensure RIFE is properly installed. See docs/rife.md for "
    "installation instructions.. If this error persists, consider removing the models directory "
    "'/tmp/realscope/home/.daydream-scope/models' and re-downloading models."
)


def test_missing_rife_weights_are_named_and_the_long_quote_ends_on_a_word() -> None:
    """`run --pipeline rife` on a Scope without RIFE's weights: the advice is the download, not GPU memory, and
    Scope's long line is cut at a word, marked, not in the middle of one ("instructions.. P")."""
    message = str(load_failure("rife", [REAL_RIFE_LOAD], "http://scope/api/v1/logs/current"))
    assert "weights are missing" in message and "GPU has enough memory" not in message
    quote = message.split("(Scope's log: ", 1)[1].split("); ", 1)[0]
    assert quote.startswith("Failed to load pipeline rife: Failed to load RIFE model") and quote.endswith(" ...")
    assert len(quote) <= 304 and not quote.endswith(". P ...")


async def test_an_unknown_pipeline_id_fails_with_scopes_words(emulator: ScopeEmulator) -> None:
    async with ScopeClient(emulator.url) as scope:
        with pytest.raises(PipelineLoadError) as caught:
            await scope.ensure_pipeline(["longliv"], SMALL, timeout=10, poll_interval=0.05)
    message = str(caught.value)
    assert "Invalid pipeline ID: longliv" in message, message
    assert "Some pipelines failed" not in message and "GPU" not in message
    assert caught.value.transient is False


async def test_a_gpu_pipeline_on_a_cpu_server_quotes_the_missing_module(
    make_emulator: Callable[..., Awaitable[ScopeEmulator]],
) -> None:
    emulator = await make_emulator(cpu_only=True)
    async with ScopeClient(emulator.url) as scope:
        with pytest.raises(PipelineLoadError) as caught:
            await scope.ensure_pipeline(["longlive"], SMALL, timeout=10, poll_interval=0.05)
    assert "No module named 'flash_attn'" in str(caught.value), str(caught.value)
    assert "GPU has enough memory" not in str(caught.value)


# ------------------------------------------------------------------------------ D4 + D1: refused before loading


async def test_a_pipeline_the_server_does_not_offer_ends_the_start_up_in_one_line(
    make_emulator: Callable[..., Awaitable[ScopeEmulator]],
) -> None:
    emulator = await make_emulator(cpu_only=True)
    session = make_session(emulator.url)
    try:
        with pytest.raises(ConfigError) as caught:
            await _started(session)
            await session.wait_streaming(timeout=20)
    finally:
        await session.aclose()
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith("pipeline 'longlive' is not offered by this Scope server; it offers: ")
    assert "passthrough (video)" in message
    status = await emulator_get(emulator.url, "/api/v1/pipeline/status")
    assert status["status"] == "not_loaded"  # refused before any load
    assert (await emulator_get(emulator.url, "/_emulator/log"))["offers"] == []


async def test_a_text_show_on_a_video_only_pipeline_is_refused_up_front(emulator: ScopeEmulator) -> None:
    session = make_session(emulator.url, pipeline_ids=["passthrough"])
    try:
        with pytest.raises(ConfigError, match=r"'passthrough' supports only video input, not text mode"):
            await _started(session)
            await session.wait_streaming(timeout=20)
    finally:
        await session.aclose()
    assert (await emulator_get(emulator.url, "/_emulator/log"))["offers"] == []
    assert session.sessions_started == 0


async def test_a_server_restarted_with_another_offer_is_a_lost_session_with_the_refusal(
    make_emulator: Callable[..., Awaitable[ScopeEmulator]], caplog: pytest.LogCaptureFixture,
) -> None:
    first = await make_emulator()
    session = make_session(first.url, reconnect_probe_interval=0.1)
    try:
        with caplog.at_level(logging.DEBUG, logger="metadj_bridge.scope"):
            await _started(session)
            await session.wait_streaming(timeout=20)
            await first.aclose()
            await make_emulator(port=first.port, cpu_only=True)  # the same address, no GPU pipelines any more
            await wait_for(lambda: "not offered" in (session.last_error or ""), 30, "the refusal")
            await asyncio.sleep(1.0)  # more attempts: each at DEBUG, not another WARNING
        assert session.supervisor is not None and not session.supervisor.done()  # mid-show: not fatal
        warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
        refusals = [w for w in warnings if "not offered" in w]
        assert len(refusals) <= 1 and all("\n" not in w for w in warnings)
        assert any("not offered" in r.getMessage() for r in caplog.records)
    finally:
        await session.aclose()


# --------------------------------------------------------------------------- D1: no video is not "restored"


class SilentLink:
    """The policy's far end: every session connects and gives no frame until ``frames`` is set."""

    def __init__(self) -> None:
        self.opened = 0
        self.frames = False
        self.policy: ReconnectLogic | None = None

    @property
    def session_id(self) -> str | None:
        return f"s{self.opened}"

    @property
    def where(self) -> str:
        return "http://silent"

    @property
    def server_start(self) -> float | None:
        return 1.0

    async def open(self) -> None:
        self.opened += 1

    async def watch(self) -> str:
        if self.frames and self.policy is not None:
            self.policy.frames_flowing()
            await asyncio.Event().wait()
        await asyncio.sleep(0.02)
        return "connected, but no first video frame for 15 s"

    async def close(self) -> None:
        pass

    async def probe(self, within: float) -> float:
        return 1.0


async def test_sessions_rebuilt_for_want_of_video_warn_and_are_never_restored(
    caplog: pytest.LogCaptureFixture,
) -> None:
    link = SilentLink()
    policy = ReconnectLogic(link, backoff=Backoff(base=0.01, cap=0.01, jitter=0.0), probe_interval=0.0,
                            fail_fast=True, on_waiting=lambda _: None, wait_frames=True)
    link.policy = policy
    with caplog.at_level(logging.INFO, logger="metadj_bridge.scope.reconnect"):
        policy.start()
        await wait_for(lambda: link.opened >= 5, 5, "five silent sessions")
        link.frames = True
        await wait_for(lambda: any("restored" in r.getMessage() for r in caplog.records), 5, "video at last")
        await policy.stop()
    messages = [(r.levelno, r.getMessage()) for r in caplog.records]
    silent = [m for lvl, m in messages if lvl == logging.WARNING and "no video came" in m]
    assert len(silent) == 1 and "no first video frame" in silent[0]  # the first at once, the rest rate-limited
    assert sum("restored" in m for _, m in messages) == 1  # only once frames came
    assert policy.state is ReconnectState.STOPPED


# ------------------------------------------------------------------------------------------ D8: a clean ending


async def test_a_session_ends_without_deleting_what_scope_already_dropped(
    emulator: ScopeEmulator, caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="metadj_bridge.emulator")  # Scope's log file keeps INFO lines
    session = make_session(emulator.url)
    await _started(session)
    await session.wait_streaming(timeout=20)
    await wait_for(lambda: session.connection.last_frame, 10, "a frame")
    session_id = session.session_id
    assert session.last_error is None
    await session.aclose()
    metrics = await emulator_get(emulator.url, "/api/v1/session/metrics")
    assert session_id not in metrics["sessions"]
    lines = (await emulator_get(emulator.url, "/api/v1/logs/tail?lines=200"))["lines"]
    ours = [line for line in lines if session_id in line]
    assert len([line for line in ours if "Removing session" in line]) == 1, ours
    assert not [line for line in ours if "non-existent session" in line], ours


# -------------------------------------------------------------------------------------- on a real Scope 0.2.4


@needs_real_scope
async def test_real_scope_refuses_a_text_show_on_passthrough_before_loading() -> None:
    assert REAL_SCOPE is not None
    async with ScopeClient(REAL_SCOPE) as scope:
        offer = await read_offer(scope)
    assert offer is not None and offer.get("passthrough") is not None
    assert offer.pipelines["passthrough"].modes == ("video",)
    session = make_session(REAL_SCOPE, pipeline_ids=["passthrough"])
    try:
        with pytest.raises(ConfigError, match="supports only video input, not text mode"):
            await _started(session)
            await session.wait_streaming(timeout=30)
    finally:
        await session.aclose()


@needs_real_scope
async def test_real_scope_session_end_leaves_no_warning_in_its_log() -> None:
    assert REAL_SCOPE is not None
    async with ScopeClient(REAL_SCOPE) as scope:
        before = (await scope.get_json_or_none("/api/v1/logs/tail", params={"lines": 1}) or {}).get("offset", 0)
        session = make_session(REAL_SCOPE, pipeline_ids=["controller-viz"], load_params={})
        try:
            await _started(session)
            await session.wait_streaming(timeout=60)
            await wait_for(lambda: session.connection.last_frame, 20, "a frame")
        finally:
            await session.aclose()
        await asyncio.sleep(0.5)
        after = await scope.get_json_or_none("/api/v1/logs/tail", params={"lines": 1000, "since_offset": before})
    lines = after["lines"] if isinstance(after, dict) else []
    assert any("Removing session" in line for line in lines), "this server's log is not the one served"
    assert not [line for line in lines if "non-existent session" in line]
