"""What a running bridge's /status says follows reality: a MIDI controller plugged in or pulled out while the show
runs, a Scope session that is lost and comes back. Real parts only: the bridge in this process (``run_bridge``),
real HTTP for /status, real virtual MIDI ports on a private JACK server, the emulator in its own process (killed
like a crashed server and started again)."""

from __future__ import annotations

import asyncio
import contextlib
import io
import logging
import os
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from metadj_bridge.run.bridge import run_bridge
from metadj_bridge.run.plan import RunOptions
from metadj_bridge.status.model import RecentWarnings
from tests.conftest import EmulatorProcess
from tests.helpers import wait_for
from tests.test_midi import JACK_BACKEND, Sender, midi_jack  # noqa: F401 - midi_jack is a fixture

pytestmark = pytest.mark.timeout(180)


@contextlib.asynccontextmanager
async def running_bridge(profile: Path, caplog: pytest.LogCaptureFixture) -> AsyncIterator[httpx.AsyncClient]:
    """The bridge running ``profile`` with its status server; yields an HTTP client on it."""
    options = RunOptions(profile=str(profile), duration=150, output="none", status_port=0, show_log="none")
    bridge = asyncio.create_task(run_bridge(options, status_stream=io.StringIO()))
    try:
        await wait_for(lambda: bridge.done() or "/metrics (Prometheus)" in caplog.text, 30, "the status server")
        assert not bridge.done(), bridge.exception()
        found = re.search(r"status: (http://127\.0\.0\.1:\d+)/status", caplog.text)
        assert found is not None, caplog.text
        async with httpx.AsyncClient(base_url=found.group(1), timeout=5) as http:
            yield http
        assert not bridge.done(), bridge.exception()
    finally:
        bridge.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await bridge


async def status_until(http: httpx.AsyncClient, check: Any, limit: float, what: str) -> dict[str, Any]:
    """Poll GET /status until ``check(status)`` holds (at most ``limit`` s); returns that status."""
    last: dict[str, Any] = {}

    async def poll() -> bool:
        nonlocal last
        last = (await http.get("/status")).json()
        return bool(check(last))

    try:
        await wait_for(poll, limit, what, interval=0.1)
    except AssertionError as exc:
        raise AssertionError(f"{exc}; last status: inputs {last.get('inputs')}, scope {last.get('scope')}, "
                             f"warnings {last.get('warnings')}") from None
    return last


def warned(status: dict[str, Any], words: str) -> bool:
    return any(words in w for w in status.get("warnings") or [])


def test_recent_warnings_keep_events_and_leave_states_to_their_owners() -> None:
    recent = RecentWarnings(keep=2)
    log = logging.getLogger("metadj_bridge.test_status_live")
    log.addHandler(recent)
    try:
        log.warning("MIDI input: the event loop fell behind; %d messages lost", 12)
        log.warning("MIDI input %r disappeared; waiting for it to come back", "x", extra={"problem": "midi input"})
        log.error("profile edit not applied: %s", "bad", extra={"problem": "show profile"})
        assert recent.messages == ["MIDI input: the event loop fell behind; 12 messages lost"]
        log.warning("second")
        log.warning("third")
        assert recent.messages == ["second", "third"]
    finally:
        log.removeHandler(recent)


async def test_a_controller_plugged_in_and_pulled_out_shows_in_the_status(
    midi_jack: Any, make_emulator: Any, tmp_path: Path, caplog: pytest.LogCaptureFixture  # noqa: F811
) -> None:
    caplog.set_level(logging.INFO, logger="metadj_bridge")
    emulator = await make_emulator()
    previous = os.environ.get("MIDO_BACKEND")
    os.environ["MIDO_BACKEND"] = JACK_BACKEND
    controller: Sender | None = None
    profile = tmp_path / "show.yaml"
    profile.write_text(
        f"scope: {{url: {emulator.url}, resolution: [256, 144], denoising: fast}}\n"
        "inputs: {audio: none, midi: {devices: [hotplugged]}}\n"
        "themes: {neon: {prompts: [neon city at night]}}\n",
        encoding="utf-8",
    )
    try:
        async with running_bridge(profile, caplog) as http:
            status = (await http.get("/status")).json()
            assert status["inputs"]["midi"] == [], status["inputs"]
            assert status["inputs"]["midi_waiting"] == ["hotplugged"], status["inputs"]
            assert warned(status, "matches no port"), status["warnings"]

            controller = Sender(midi_jack, port="ctrl", client="hotplugged")  # plugged in while the show runs
            status = await status_until(http, lambda s: s["inputs"]["midi"] == [controller.name], 10,
                                        "the controller in /status")
            # The same snapshot that shows the controller no longer says nothing matches it.
            assert not warned(status, "matches no port"), status["warnings"]
            assert status["inputs"]["midi_waiting"] == []

            controller.close()  # pulled out
            status = await status_until(http, lambda s: s["inputs"]["midi"] == [], 10, "the controller gone")
            assert warned(status, "disappeared"), status["warnings"]
            assert status["inputs"]["midi_waiting"] == ["hotplugged"]

            controller.open()  # back
            status = await status_until(http, lambda s: s["inputs"]["midi"] == [controller.name], 10,
                                        "the controller back")
            assert not warned(status, "disappeared"), status["warnings"]
    finally:
        if controller is not None:
            controller.close()
        if previous is None:
            os.environ.pop("MIDO_BACKEND", None)
        else:
            os.environ["MIDO_BACKEND"] = previous


async def test_a_recovered_scope_session_leaves_no_error_in_the_status(
    emulator_process: Any, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="metadj_bridge")
    proc: EmulatorProcess = emulator_process("--chunk-frames", "4", "--fps", "20", "--load-seconds", "0.1")
    await proc.start()
    profile = tmp_path / "show.yaml"
    profile.write_text(
        f"scope: {{url: {proc.url}, resolution: [256, 144], denoising: fast}}\n"
        "inputs: {audio: none}\n"
        "themes: {neon: {prompts: [neon city at night]}}\n",
        encoding="utf-8",
    )
    async with running_bridge(profile, caplog) as http:
        first = await status_until(http, lambda s: s["scope"]["state"] == "streaming" and s["scope"]["fps_in"] > 0,
                                   30, "the first session streaming")
        assert first["scope"]["last_error"] is None and first["warnings"] == [], first

        proc.kill()  # a crash: no goodbye
        lost = await status_until(http, lambda s: warned(s, "Scope session lost"), 30, "the loss in /status")
        assert lost["scope"]["state"] != "streaming" and lost["scope"]["last_error"], lost["scope"]

        await proc.start()
        await status_until(
            http, lambda s: s["scope"]["state"] == "streaming" and s["scope"]["sessions"] > first["scope"]["sessions"]
            and s["scope"]["frames_in"] > first["scope"]["frames_in"], 40, "the session back")
        # Streaming again: within a second neither the warning nor the error says otherwise.
        healed = await status_until(http, lambda s: not warned(s, "Scope session") and not s["scope"]["last_error"],
                                    3, "the loss cleared from /status")
        assert healed["scope"]["state"] == "streaming", healed["scope"]
        # The error stays available as history, apart from the live state.
        assert healed["scope"]["previous_error"]["text"], healed["scope"]
        assert healed["scope"]["previous_error"]["ago_s"] >= 0


async def test_a_broken_profile_edit_and_a_restart_only_change_show_until_undone(
    make_emulator: Any, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="metadj_bridge")
    emulator = await make_emulator()
    profile = tmp_path / "show.yaml"
    good = (f"scope: {{url: {emulator.url}, resolution: [256, 144], denoising: fast}}\n"
            "inputs: {audio: none}\n"
            "themes: {neon: {prompts: [neon city at night]}}\n")
    profile.write_text(good, encoding="utf-8")
    async with running_bridge(profile, caplog) as http:
        await status_until(http, lambda s: s["scope"]["state"] == "streaming", 30, "the session streaming")

        profile.write_text(good.replace("themes:", "themes: [oops"), encoding="utf-8")  # a broken save
        broken = await status_until(http, lambda s: warned(s, "profile edit not applied"), 10, "the broken edit")
        assert broken["show"]["theme"] == "neon"
        profile.write_text(good.replace("neon city at night", "neon city at dawn"), encoding="utf-8")  # fixed
        fixed = await status_until(http, lambda s: any(p["text"] == "neon city at dawn" for p in s["show"]["prompts"]),
                                   10, "the fixed edit applied")
        assert not warned(fixed, "profile edit not applied"), fixed["warnings"]

        profile.write_text(good.replace("[256, 144]", "[512, 288]"), encoding="utf-8")  # needs a restart
        waiting = await status_until(http, lambda s: warned(s, "apply when the bridge restarts"), 10,
                                     "the restart-only change")
        assert warned(waiting, "scope.resolution"), waiting["warnings"]
        # Undone (with a new prompt, to tell when it is applied): the settings match what runs again.
        profile.write_text(good.replace("neon city at night", "neon city at noon"), encoding="utf-8")
        undone = await status_until(http, lambda s: any(p["text"] == "neon city at noon"
                                                        for p in s["show"]["prompts"]), 10, "the undo applied")
        assert not warned(undone, "apply when the bridge restarts"), undone["warnings"]
