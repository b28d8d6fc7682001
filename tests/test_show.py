"""A show end to end: a profile file, a virtual MIDI controller through JACK, `run`, and the emulator as Scope.

The controller is a virtual MIDI output through a JACK server with the dummy driver; the bridge runs in this
process (``run_bridge``) against an in-process emulator over real WebRTC; what Scope applied is read back from
the emulator's own log.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import logging
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import mido
import pytest

from metadj_bridge.run.bridge import run_bridge
from metadj_bridge.run.plan import RunOptions
from tests.helpers import free_port, wait_for
from tests.test_midi import JACK_BACKEND, Sender

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def jack_midi() -> Iterator[Any]:
    """A private JACK server; the bridge's MIDI ports find it through JACK_DEFAULT_SERVER and MIDO_BACKEND."""
    from tests.jackrig import JackServer

    saved = {k: os.environ.get(k) for k in ("JACK_DEFAULT_SERVER", "MIDO_BACKEND")}
    with JackServer(period=256) as server:
        os.environ["JACK_DEFAULT_SERVER"] = server.name
        os.environ["MIDO_BACKEND"] = JACK_BACKEND
        try:
            yield mido.Backend(JACK_BACKEND, load=True)
        finally:
            for key, value in saved.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value


def write_profiles(
    folder: Path, url: str, controller: str, feedback: str | None = None, osc_port: int | None = None
) -> Path:
    feedback_line = f"    feedback: {feedback}\n" if feedback else ""
    osc_line = f"  osc: {{port: {osc_port}}}\n" if osc_port else ""
    show = folder / "show.yaml"
    show.write_text(
        f"""name: test show
scope:
  url: {url}
  resolution: [256, 144]
  denoising: fast
  sender: {{min_interval: 0.02, max_interval: 1.0}}
inputs:
  audio: none
  midi:
    devices: ["{controller}"]
{feedback_line}{osc_line}themes:
  duo:
    prompts: [red desert at dusk, blue ice cave]
    pad: {{note: 36}}
  solo:
    prompts: [green forest in the rain]
    pad: {{note: 37}}
mappings:
  crossfade: {{source: midi.cc.1.19, target: prompt.mix}}
  go_solo: {{trigger: midi.note.1.37, target: "theme.set:solo"}}
switches:
  - {{trigger: midi.program.1, program: 2, profile: other.yaml}}
""",
        encoding="utf-8",
    )
    (folder / "other.yaml").write_text(
        f"""name: other show
scope: {{url: {url}, resolution: [256, 144], denoising: fast}}
inputs:
  audio: none
  midi: {{devices: ["{controller}"]}}
themes:
  storm:
    prompts: [lightning storm over the sea]
""",
        encoding="utf-8",
    )
    return show


async def applied_prompts(url: str) -> list[list[dict[str, Any]]]:
    """Every prompts value Scope (the emulator) applied, in order, from its message log."""
    async with httpx.AsyncClient() as http:
        log = (await http.get(url + "/_emulator/log")).json()
    out = []
    for entry in log["applied"]:
        message = entry["message"]
        if "prompts" in message:
            out.append(message["prompts"])
        if "transition" in message:
            out.append(message["transition"]["target_prompts"])
    return out


async def metrics(url: str) -> dict[str, Any]:
    async with httpx.AsyncClient() as http:
        return dict((await http.get(url + "/_emulator/metrics")).json())


@contextlib.asynccontextmanager
async def running(profile: Path) -> Any:
    quiet = io.StringIO()  # the status line, unread
    options = RunOptions(profile=str(profile), duration=90, output="none", show_log=str(profile.parent / "show.jsonl"))
    task = asyncio.create_task(run_bridge(options, status_stream=quiet))
    try:
        yield task
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def alone(url: str, text: str) -> bool:
    """Scope's current prompts are ``text`` alone."""
    seen = await applied_prompts(url)
    return bool(seen) and weight_of(seen[-1], text) == 1.0


def weight_of(prompts: list[dict[str, Any]], text: str) -> float:
    total = sum(p["weight"] for p in prompts)
    return sum(p["weight"] for p in prompts if p["text"] == text) / total


async def test_a_knob_sweep_crossfades_the_prompts_scope_applies(
    jack_midi: Any, make_emulator: Any, tmp_path: Path
) -> None:
    emulator = await make_emulator()
    controller = Sender(jack_midi)
    show = write_profiles(tmp_path, emulator.url, controller.name)
    async with running(show) as task:
        await wait_for(
            lambda: task.done() or emulator._records.counters.frames_sent > 0, 20.0, "video from the emulator"
        )
        assert not task.done(), task.exception()
        start = await applied_prompts(emulator.url)
        for value in range(0, 128, 4):  # a knob turned over about 1.5 s
            controller.send(mido.Message("control_change", channel=0, control=19, value=value))
            await asyncio.sleep(0.05)
        async def blue_only() -> bool:
            # The end position is sent again on each look: a non-realtime jackd on a busy machine may drop an event.
            controller.send(mido.Message("control_change", channel=0, control=19, value=127))
            return await alone(emulator.url, "blue ice cave")

        await wait_for_async(blue_only, 15.0, "the knob's end position applied by Scope")
        seen = (await applied_prompts(emulator.url))[len(start):]
        blue = [weight_of(p, "blue ice cave") for p in seen]
        # On the way the two prompts were blended, more blue with each message, and the end is blue alone.
        assert len({round(w, 2) for w in blue if 0.0 < w < 1.0}) >= 2, blue
        assert blue == sorted(blue), blue
        assert (await metrics(emulator.url))["sessions"] == 1


async def test_a_program_change_switches_the_profile_without_a_new_session(
    jack_midi: Any, make_emulator: Any, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="metadj_bridge")
    emulator = await make_emulator()
    controller = Sender(jack_midi)
    show = write_profiles(tmp_path, emulator.url, controller.name)
    async with running(show) as task:
        await wait_for(
            lambda: task.done() or emulator._records.counters.frames_sent > 0, 20.0, "video from the emulator"
        )
        assert not task.done(), task.exception()
        controller.send(mido.Message("program_change", channel=0, program=5))  # not the one the switch names
        await asyncio.sleep(0.5)
        controller.send(mido.Message("program_change", channel=0, program=2))

        await wait_for_async(lambda: alone(emulator.url, "lightning storm over the sea"), 15.0,
                             "the other profile's prompt applied by Scope",
                             poke=lambda: controller.send(mido.Message("program_change", channel=0, program=2)))
        async with httpx.AsyncClient() as http:
            log = (await http.get(emulator.url + "/_emulator/log")).json()
        transitions = [e["message"]["transition"] for e in log["applied"] if "transition" in e["message"]]
        assert transitions[-1]["num_steps"] == 8  # a theme transition carried the switch
        assert (await metrics(emulator.url))["sessions"] == 1
        assert any("profile: show.yaml -> other.yaml" in r.getMessage() for r in caplog.records)
    # The show log has every message Scope was sent, and the switch among its events.
    from metadj_bridge.showlog.log import read_show_log

    recording = read_show_log(tmp_path / "show.jsonl")
    assert recording.header.pipeline == "longlive" and recording.header.width == 256 and not recording.truncated
    assert any("transition" in sent.message for sent in recording.sent)
    assert any("other.yaml" in event.text for event in recording.events)


async def test_the_active_themes_pad_is_lit_on_the_controller(
    jack_midi: Any, make_emulator: Any, tmp_path: Path
) -> None:
    emulator = await make_emulator()
    controller = Sender(jack_midi)
    lights: list[Any] = []
    # The controller's own input: where the bridge's feedback arrives.
    pads = jack_midi.open_input("pads", virtual=True, client_name="padctl", callback=lights.append)
    try:
        show = write_profiles(tmp_path, emulator.url, controller.name, feedback="padctl:pads")
        async with running(show) as task:
            await wait_for(
                lambda: task.done() or any(m.type == "note_on" and m.note == 36 and m.velocity == 127 for m in lights),
                20.0,
                "the start theme's pad lit",
            )
            assert not task.done(), task.exception()
            controller.send(mido.Message("note_on", channel=0, note=37, velocity=100))

            def solo_lit() -> bool:
                notes = {m.note: m.velocity for m in lights if m.type == "note_on"}
                return notes.get(37) == 127 and notes.get(36) == 0

            await wait_for(solo_lit, 10.0, "the solo pad lit and the duo pad dark")
    finally:
        pads.close()


async def test_an_osc_switch_reaches_a_running_bridge(jack_midi: Any, make_emulator: Any, tmp_path: Path) -> None:
    """OSC ``/metadj/profile PATH`` switches (``metadj-bridge switch`` uses the web API: tests/test_web_api.py)."""
    from pythonosc.udp_client import SimpleUDPClient

    emulator = await make_emulator()
    controller = Sender(jack_midi)
    port = free_port()
    show = write_profiles(tmp_path, emulator.url, controller.name, osc_port=port)
    async with running(show) as task:
        await wait_for(
            lambda: task.done() or emulator._records.counters.frames_sent > 0, 20.0, "video from the emulator"
        )
        assert not task.done(), task.exception()
        osc = SimpleUDPClient("127.0.0.1", port)
        try:
            await wait_for_async(lambda: alone(emulator.url, "lightning storm over the sea"), 15.0,
                                 "the other profile's prompt applied by Scope",
                                 poke=lambda: osc.send_message("/metadj/profile", str(tmp_path / "other.yaml")))
        finally:
            osc._sock.close()


async def wait_for_async(check: Any, limit: float, what: str, poke: Any = None) -> None:
    """Wait for ``check``; ``poke`` (if given) is called again every 2 s meanwhile: a loaded machine's JACK can
    lose a MIDI message sent the moment a port connects, and the same message again must do the same."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + limit
    poked = loop.time()
    while not await check():
        if loop.time() > deadline:
            raise AssertionError(f"timed out after {limit} s waiting for {what}")
        if poke is not None and loop.time() - poked >= 2.0:
            poke()
            poked = loop.time()
        await asyncio.sleep(0.1)


async def test_saving_the_profile_applies_it_and_a_broken_save_changes_nothing(
    jack_midi: Any, make_emulator: Any, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="metadj_bridge")
    emulator = await make_emulator()
    controller = Sender(jack_midi)
    show = write_profiles(tmp_path, emulator.url, controller.name)
    async with running(show) as task:
        await wait_for(
            lambda: task.done() or emulator._records.counters.frames_sent > 0, 20.0, "video from the emulator"
        )
        assert not task.done(), task.exception()
        good = show.read_text(encoding="utf-8")
        show.write_text(good.replace("red desert at dusk", "golden dunes at noon"), encoding="utf-8")

        await wait_for_async(
            lambda: alone(emulator.url, "golden dunes at noon"), 15.0, "the edited prompt applied by Scope"
        )
        assert any("profile show.yaml reloaded" in r.getMessage() for r in caplog.records)

        show.write_text(good.replace("target: prompt.mix", "target: prompt.mixx"), encoding="utf-8")
        await wait_for(lambda: any("profile edit not applied" in r.getMessage() for r in caplog.records), 10.0,
                       "the broken edit reported")
        error = next(r.getMessage() for r in caplog.records if "profile edit not applied" in r.getMessage())
        assert "show.yaml:" in error and "prompt.mixx" in error
        # The running profile is untouched: the crossfade knob still works.
        async def ice() -> bool:
            # Sent again on each look: a non-realtime jackd on a busy machine may drop an event before rtmidi sees it.
            controller.send(mido.Message("control_change", channel=0, control=19, value=127))
            return await alone(emulator.url, "blue ice cave")

        await wait_for_async(ice, 15.0, "the knob applied by Scope after the broken save")
        assert not task.done()
