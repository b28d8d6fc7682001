"""Scenes: save the lasting state the show plays, recall it at once or morphed over bars on the beat grid.

The engine and the show runner are the real ones (a real ParameterSender holds what would go to Scope); the
profile files are real files written by the round-trip writer; one show runs end to end against the emulator
over real WebRTC, steered by real UDP OSC.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import io
import logging
import os
from pathlib import Path
from typing import Any

import httpx
import pytest
from pythonosc.udp_client import SimpleUDPClient

from metadj_bridge.bundled import bundled_profile
from metadj_bridge.cli import main as cli_main
from metadj_bridge.errors import ConfigError
from metadj_bridge.mapping.engine import MappingEngine
from metadj_bridge.mapping.scenes import blend_prompts, morph_end
from metadj_bridge.profile import ProfileError, load_profile
from metadj_bridge.profile.model import Scene
from metadj_bridge.run.bridge import run_bridge
from metadj_bridge.run.plan import RunOptions
from metadj_bridge.run.show import ShowRunner
from metadj_bridge.scope.sender import ParameterSender
from metadj_bridge.signals import Signal, TempoState, Trigger
from tests.helpers import free_port, wait_for

SHOW = """\
# The club show: this comment stays through every save.
name: club
themes:
  duo:
    prompts: [red desert, blue ice]   # two prompts, crossfaded
  solo:
    prompts: [green forest]
    parameters: {kv_cache_attention_bias: 0.3}

mappings:
  crossfade: {source: midi.cc.1.19, target: prompt.mix}
  noise: {source: midi.cc.1.20, target: noise_scale}
  go_solo: {trigger: midi.note.1.37, target: "theme.set:solo"}
  keep: {trigger: midi.note.1.40, target: "scene.save:keep"}
  back: {trigger: midi.note.1.41, target: "scene.recall:keep", morph_bars: 1}
# the end of the show
"""


def write_show(folder: Path, text: str = SHOW) -> Path:
    path = folder / "show.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def runner_for(path: Path, clock: list[float]) -> tuple[ShowRunner, ParameterSender]:
    sender = ParameterSender()
    runner = ShowRunner(load_profile(path), sender, clock=lambda: clock[0])
    sender.update(runner.initial_parameters())
    sender.state.take_message()
    return runner, sender


def step(runner: ShowRunner, clock: list[float], signals: dict[str, float] | None = None,
         triggers: tuple[str, ...] = ()) -> Any:
    clock[0] += 0.05
    for name, value in (signals or {}).items():
        runner.board.set(Signal(name, value, clock[0]))
    for name in triggers:
        runner.board.fire(Trigger(name, clock[0], {"velocity": 1.0}))
    return runner.step(clock[0])


def grid(beat: float) -> TempoState:
    return TempoState(bpm=120.0, beat=beat, phase=beat % 1.0, bar_position=beat % 4.0, beats_per_bar=4,
                      source="test", playing=True)


def texts(prompts: list[dict[str, Any]]) -> dict[str, float]:
    return {p["text"]: p["weight"] for p in prompts}


# ---------------------------------------------------------------------------------------------- at once


def test_save_then_recall_at_once_restores_prompts_weights_parameters_and_theme(tmp_path: Path) -> None:
    clock = [10.0]
    runner, sender = runner_for(write_show(tmp_path), clock)
    step(runner, clock, {"midi.cc.1.19": 0.3, "midi.cc.1.20": 0.9})
    runner.save_scene("drop")
    assert "drop" in runner.scene_names()
    # The performer moves on: another theme, another noise level.
    step(runner, clock, {"midi.cc.1.20": 0.2}, ("midi.note.1.37",))
    out = step(runner, clock)
    assert out.theme == "solo" and out.parameters["noise_scale"] == 0.2
    assert out.parameters["kv_cache_attention_bias"] == 0.3
    sender.state.take_message()

    runner.recall_scene("drop")
    out = step(runner, clock)
    assert out.theme == "duo" and runner.engine.theme == "duo"
    assert texts(out.parameters["prompts"]) == {"red desert": 0.7, "blue ice": 0.3}
    assert out.parameters["noise_scale"] == 0.9
    assert out.parameters["kv_cache_attention_bias"] == 1.0  # solo's own value is not part of duo's scene
    message = sender.state.take_message()
    assert message is not None and message["noise_scale"] == 0.9
    assert message["transition"]["num_steps"] == 8  # as a theme change: a theme_steps transition
    assert texts(message["transition"]["target_prompts"]) == {"red desert": 0.7, "blue ice": 0.3}
    # The scene holds until a control moves; the knob that moves takes its parameter back.
    out = step(runner, clock)
    assert out.parameters["noise_scale"] == 0.9
    out = step(runner, clock, {"midi.cc.1.20": 0.5})
    assert out.parameters["noise_scale"] == 0.5
    assert texts(out.parameters["prompts"]) == {"red desert": 0.7, "blue ice": 0.3}
    out = step(runner, clock, {"midi.cc.1.19": 1.0})  # the crossfader takes the prompts back
    assert texts(out.parameters["prompts"]) == {"blue ice": 1.0}


def test_a_reload_of_the_profile_keeps_a_recalled_scene_and_a_switch_ends_it(tmp_path: Path) -> None:
    clock = [10.0]
    path = write_show(tmp_path)
    runner, _ = runner_for(path, clock)
    step(runner, clock, {"midi.cc.1.19": 0.8})
    runner.save_scene("blue")  # written: the file now has it, as after a save the watcher reloads
    step(runner, clock, {"midi.cc.1.19": 0.0})
    runner.recall_scene("blue")
    assert texts(step(runner, clock).parameters["prompts"]) == {"red desert": 0.2, "blue ice": 0.8}
    runner.apply(load_profile(path), switch=False)
    assert texts(step(runner, clock).parameters["prompts"]) == {"red desert": 0.2, "blue ice": 0.8}
    assert runner.engine.focus == 1  # the scene's heaviest prompt, kept through the reload
    other = tmp_path / "other.yaml"
    other.write_text(SHOW.replace("name: club", "name: other"), encoding="utf-8")
    runner.apply(load_profile(other), switch=True)
    assert texts(step(runner, clock).parameters["prompts"]) == {"red desert": 1.0}
    assert runner.scene_names() == []  # the other profile's scenes: none


def test_recalling_an_unknown_scene_is_a_clear_error_and_nothing_changes(tmp_path: Path) -> None:
    clock = [10.0]
    runner, sender = runner_for(write_show(tmp_path), clock)
    step(runner, clock, {"midi.cc.1.19": 0.3})
    runner.save_scene("drop")
    step(runner, clock, triggers=("midi.note.1.37",))
    before = step(runner, clock)
    sender.state.take_message()
    with pytest.raises(ConfigError, match=r"no scene 'drp' in profile club \(scenes: drop\)"):
        runner.recall_scene("drp")
    with pytest.raises(ConfigError, match="morph_bars"):
        runner.recall_scene("drop", -1)
    with pytest.raises(ConfigError, match="is not a scene name"):
        runner.save_scene("no/slashes")
    after = step(runner, clock)
    assert after.theme == "solo" and after.parameters == before.parameters and not after.actions
    assert sender.state.take_message() is None  # nothing new for Scope
    assert runner.scene_names() == ["drop"]


# ---------------------------------------------------------------------------------------------- morph


def test_a_morph_over_two_bars_passes_through_the_middle_and_lands_on_a_downbeat(tmp_path: Path) -> None:
    engine = MappingEngine(load_profile(write_show(tmp_path)))
    engine.step({"midi.cc.1.19": 1.0, "midi.cc.1.20": 0.8}, [], 1.0, grid(0.5))
    scene = engine.scenes.capture("far")
    assert texts([{"text": p.text, "weight": p.weight} for p in scene.prompts]) == {"blue ice": 1.0}
    engine.step({"midi.cc.1.19": 0.0, "midi.cc.1.20": 0.2}, [], 1.1, grid(0.7))
    engine.step({}, [], 1.2, grid(1.0))
    engine.scenes.recall(scene, 2, 1.2, grid(1.0))
    assert morph_end(grid(1.0), 2) == 8.0  # the downbeat nearest 2 bars ahead
    noise: list[float] = []
    blue: list[float] = []
    beat = 1.0
    while beat < 9.0:
        beat += 0.25
        out = engine.step({}, [], 1.2 + beat / 2, grid(beat))
        noise.append(out.parameters["noise_scale"])
        weights = texts(out.parameters["prompts"])
        blue.append(weights.get("blue ice", 0.0) / sum(weights.values()))
        if beat < 8.0:
            assert out.parameters["noise_scale"] != 0.8, beat  # not there before the downbeat
        else:
            assert out.parameters["noise_scale"] == 0.8 and weights == {"blue ice": 1.0}, beat
    middle = [n for n in noise if 0.2 < n < 0.8]
    assert len(middle) > 10 and noise == sorted(noise)  # a glide, up all the way
    assert any(0.4 < b < 0.6 for b in blue) and blue == sorted(blue)
    assert not engine.scenes.morphing


def test_a_morph_reaches_the_scene_the_delay_to_the_picture_before_the_downbeat(tmp_path: Path) -> None:
    engine = MappingEngine(load_profile(write_show(tmp_path)))
    engine.step({"midi.cc.1.20": 0.8}, [], 1.0, grid(0.5))
    scene = engine.scenes.capture("far")
    engine.step({"midi.cc.1.20": 0.2}, [], 1.1, grid(1.0))
    engine.scenes.lookahead_s = 0.5  # one beat at 120 BPM
    engine.scenes.recall(scene, 2, 1.1, grid(1.0))
    first = engine.step({}, [], 1.2, grid(1.25)).parameters["noise_scale"]
    assert 0.2 <= first < 0.25  # a glide from where it was, no jump by the lookahead
    assert engine.step({}, [], 3.0, grid(6.75)).parameters["noise_scale"] < 0.8
    assert engine.step({}, [], 3.1, grid(7.0)).parameters["noise_scale"] == 0.8  # sent a beat before bar 8


def test_a_newer_recall_replaces_a_morph_and_a_control_moved_during_it_takes_over(tmp_path: Path) -> None:
    engine = MappingEngine(load_profile(write_show(tmp_path)))
    engine.step({"midi.cc.1.19": 0.0, "midi.cc.1.20": 0.9}, [], 1.0, grid(0.0))
    high = engine.scenes.capture("high")
    engine.step({"midi.cc.1.20": 0.1}, [], 1.1, grid(0.2))
    low = engine.scenes.capture("low")
    engine.scenes.recall(high, 4, 1.1, grid(0.2))
    out = None
    for i in range(1, 9):
        out = engine.step({}, [], 1.1 + i / 4, grid(0.2 + i / 2))
    assert out is not None and 0.1 < out.parameters["noise_scale"] < 0.9
    halfway = out.parameters["noise_scale"]
    engine.scenes.recall(low, 1, 3.1, grid(4.2))  # from where the first morph got to, towards 0.1
    out = engine.step({}, [], 3.2, grid(4.3))
    assert out.parameters["noise_scale"] == pytest.approx(halfway, abs=0.02)
    out = engine.step({}, [], 4.2, grid(6.2))
    assert 0.1 < out.parameters["noise_scale"] < halfway
    out = engine.step({"midi.cc.1.20": 0.6}, [], 4.3, grid(6.4))  # the knob moves mid-morph: it wins
    assert out.parameters["noise_scale"] == 0.6
    out = engine.step({}, [], 5.3, grid(9.0))
    assert out.parameters["noise_scale"] == 0.6


def test_prompt_glide_fades_prompts_in_and_out() -> None:
    start = [{"text": "a", "weight": 1.0}]
    end = [{"text": "b", "weight": 0.5}, {"text": "c", "weight": 0.5}]
    assert blend_prompts(start, end, 0.0) == start
    assert blend_prompts(start, end, 0.5) == [{"text": "b", "weight": 0.25}, {"text": "c", "weight": 0.25},
                                              {"text": "a", "weight": 0.5}]
    assert blend_prompts(start, end, 1.0) == end


# ---------------------------------------------------------------------------------------------- storage


def test_saving_writes_scenes_into_the_profile_keeping_its_comments_and_the_file_loads(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write_show(tmp_path)
    clock = [10.0]
    runner, _ = runner_for(path, clock)
    step(runner, clock, {"midi.cc.1.19": 0.25, "midi.cc.1.20": 0.6})
    runner.save_scene("drop")  # no event loop here: written at once
    text = path.read_text(encoding="utf-8")
    assert text.startswith("# The club show: this comment stays through every save.\n")
    assert "# two prompts, crossfaded" in text and "# the end of the show" in text
    assert "\nscenes:\n  drop:\n" in text
    loaded = load_profile(path)
    assert loaded.scenes == (Scene("drop", "duo", loaded.scenes[0].prompts, {"noise_scale": 0.6},
                                   where=loaded.scenes[0].where),)
    assert [(p.text, p.weight) for p in loaded.scenes[0].prompts] == [("red desert", 0.75), ("blue ice", 0.25)]
    assert loaded.scenes[0].where.startswith(f"{path}:")
    # Saving the same name again replaces the entry where it stands; another name is added after it.
    step(runner, clock, {"midi.cc.1.20": 0.3})
    runner.save_scene("drop")
    runner.save_scene("intro")
    loaded = load_profile(path)
    assert [s.name for s in loaded.scenes] == ["drop", "intro"]
    assert loaded.scenes[0].parameters == {"noise_scale": 0.3}
    assert path.read_text(encoding="utf-8").count("drop:") == 1
    capsys.readouterr()
    assert cli_main(["check", str(path)]) == 0
    assert "themes, 5 mappings, 2 scenes)" in capsys.readouterr().out


def test_a_scenes_section_with_mistakes_names_the_file_line_and_column(tmp_path: Path) -> None:
    base = SHOW.split("\nmappings:")[0] + "\n"
    cases = {
        "scenes:\n  drop:\n    theme: nope\n    prompts: [x]\n":
            r"show\.yaml:12:12: scenes\.drop\.theme: nope: no such",
        "scenes:\n  drop:\n    theme: duo\n    prompts: [x]\n    parameters: {noise_scale: 7}\n":
            r"show\.yaml:14:31: scenes\.drop\.parameters\.noise_scale: 7 is outside",
        "scenes:\n  drop:\n    theme: duo\n    prompts: [x]\n    colour: red\n": r"show\.yaml:14:5: .*unknown key",
        "scenes:\n  drop:\n    theme: duo\n": r"show\.yaml:11:3: scenes\.drop: a scene needs prompts",
        "scenes:\n  a/b:\n    theme: duo\n    prompts: [x]\n": r"show\.yaml:11:3: .*is not a scene name",
        "mappings:\n  m: {trigger: midi.note.1.1, target: noise_scale, morph_bars: 2}\n": r"target",
        "mappings:\n  m: {trigger: midi.note.1.1, target: reset_cache, morph_bars: 2}\n": r"unknown target",
        "mappings:\n  m: {trigger: midi.note.1.1, target: \"action.panic\", morph_bars: 2}\n":
            r"morph_bars: only applies to a scene\.recall",
        "mappings:\n  m: {trigger: midi.note.1.1, target: \"scene.jump:x\"}\n": r"write scene\.save:<name>",
    }
    for extra, pattern in cases.items():
        path = write_show(tmp_path, base + extra)
        with pytest.raises(ProfileError, match=pattern):
            load_profile(path)


def test_the_bundled_profile_is_not_written_the_scene_stays_for_the_run(
        caplog: pytest.LogCaptureFixture) -> None:
    path = bundled_profile("default")
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    clock = [10.0]
    runner, _ = runner_for(path, clock)
    step(runner, clock)
    with caplog.at_level(logging.WARNING, logger="metadj_bridge"):
        runner.save_scene("mine")
    assert hashlib.sha256(path.read_bytes()).hexdigest() == digest
    assert "scene mine is kept for this run only" in caplog.text and "bundled profile" in caplog.text
    assert runner.scene_names() == ["mine"]
    runner.recall_scene("mine")
    step(runner, clock)


def test_a_profile_that_cannot_be_written_warns_and_the_show_goes_on(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = write_show(tmp_path)
    clock = [10.0]
    runner, _ = runner_for(path, clock)
    step(runner, clock, {"midi.cc.1.20": 0.6})
    broken = SHOW.replace("themes:", "themes: [")  # a half-saved edit on disk: the writer must not touch it
    path.write_text(broken, encoding="utf-8")
    with caplog.at_level(logging.WARNING, logger="metadj_bridge"):
        runner.save_scene("drop")
    assert path.read_text(encoding="utf-8") == broken
    assert "scene drop is kept for this run only, not written to show.yaml" in caplog.text
    runner.recall_scene("drop")
    assert step(runner, clock, {"midi.cc.1.20": 0.6}).parameters["noise_scale"] == 0.6


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes through file permissions")
def test_a_read_only_profile_folder_warns_and_the_show_goes_on(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = write_show(tmp_path)
    clock = [10.0]
    runner, _ = runner_for(path, clock)
    step(runner, clock)
    tmp_path.chmod(0o555)
    try:
        with caplog.at_level(logging.WARNING, logger="metadj_bridge"):
            runner.save_scene("drop")
    finally:
        tmp_path.chmod(0o755)
    assert path.read_text(encoding="utf-8") == SHOW and "kept for this run only" in caplog.text
    assert runner.scene_names() == ["drop"]


async def test_a_flood_of_saves_is_refused_past_the_pending_writes_and_the_file_stays_good(tmp_path: Path) -> None:
    path = write_show(tmp_path)
    clock = [10.0]
    runner, _ = runner_for(path, clock)
    step(runner, clock, {"midi.cc.1.20": 0.4})
    refused = 0
    for i in range(40):  # a stuck pad or a hostile sender, faster than files can be written
        try:
            runner.save_scene(f"s{i}")
        except ConfigError as exc:
            assert "faster than the profile can be written" in str(exc)
            refused += 1
    assert refused == 40 - 8
    await wait_for(lambda: len(load_profile(path).scenes) == 8, 20, "the accepted saves written")
    assert runner.scene_names() == [f"s{i}" for i in range(8)]
    assert step(runner, clock).parameters["noise_scale"] == 0.4  # the show went on


# ---------------------------------------------------------------------------------------------- triggers


async def test_mapping_triggers_save_and_recall_in_a_running_show(tmp_path: Path) -> None:
    path = write_show(tmp_path)
    clock = [10.0]
    runner, _ = runner_for(path, clock)
    step(runner, clock, {"midi.cc.1.19": 0.5, "midi.cc.1.20": 0.7})
    step(runner, clock, triggers=("midi.note.1.40",))  # scene.save:keep
    await wait_for(lambda: "keep:" in path.read_text(encoding="utf-8"), 10, "the scene written by a pad")
    step(runner, clock, {"midi.cc.1.20": 0.1}, ("midi.note.1.37",))
    assert step(runner, clock).theme == "solo"
    step(runner, clock, triggers=("midi.note.1.41",))  # scene.recall:keep, morph_bars 1 (no tempo: 2 s at 120)
    out = step(runner, clock)
    assert out.theme == "duo" and 0.1 <= out.parameters["noise_scale"] < 0.7
    for _ in range(60):
        out = step(runner, clock)
    assert out.parameters["noise_scale"] == 0.7
    assert texts(out.parameters["prompts"]) == {"red desert": 0.5, "blue ice": 0.5}


async def test_osc_saves_and_recalls_a_scene_that_the_emulator_applies(
        make_emulator: Any, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="metadj_bridge")
    emulator = await make_emulator()
    osc_port = free_port()
    path = write_show(tmp_path, SHOW.replace(
        "name: club\n",
        f"name: club\nscope: {{url: {emulator.url}, resolution: [256, 144], denoising: fast, "
        "sender: {min_interval: 0.02, max_interval: 1.0}}\n"
        f"inputs: {{audio: none, osc: {{port: {osc_port}}}}}\n",
    ).replace("midi.cc.1.20", "osc./vace").replace("target: noise_scale", "target: vace_context_scale")
                           .replace("midi.note.1.37", "osc./solo"))  # vace_context_scale: longlive reads it
    options = RunOptions(profile=str(path), duration=90, output="none", show_log=str(tmp_path / "show.jsonl"))
    bridge = asyncio.create_task(run_bridge(options, status_stream=io.StringIO()))
    osc = SimpleUDPClient("127.0.0.1", osc_port)

    async def applied() -> list[dict[str, Any]]:
        async with httpx.AsyncClient() as http:
            return [e["message"] for e in (await http.get(emulator.url + "/_emulator/log")).json()["applied"]]

    async def latest(key: str) -> Any:
        for message in reversed(await applied()):
            if key == "prompts" and "transition" in message:  # a theme change moves the prompts with a transition
                return message["transition"]["target_prompts"]
            if key in message:
                return message[key]
        return None

    try:
        await wait_for(lambda: bridge.done() or emulator._records.counters.frames_sent > 0, 20, "video")
        assert not bridge.done(), bridge.exception()

        async def vace_is(value: float) -> bool:
            osc.send_message("/vace", value)  # sent again on each look: UDP may drop one
            return await latest("vace_context_scale") == value

        await wait_for(lambda: vace_is(0.8), 15, "vace 0.8 applied by Scope")
        osc.send_message("/metadj/scene/save", "loud")
        await wait_for(lambda: "loud:" in path.read_text(encoding="utf-8"), 15, "the scene in the profile")
        await wait_for(lambda: vace_is(0.2), 15, "vace 0.2 applied by Scope")

        async def solo() -> bool:
            osc.send_message("/solo", [])
            prompts = await latest("prompts")
            return prompts is not None and texts(prompts) == {"green forest": 1.0}

        await wait_for(solo, 15, "the solo theme applied by Scope")

        async def recalled() -> bool:
            osc.send_message("/metadj/scene/recall", ["loud", 0.0])
            prompts = await latest("prompts")
            return (await latest("vace_context_scale") == 0.8 and prompts is not None
                    and texts(prompts) == {"red desert": 1.0})

        await wait_for(recalled, 15, "the scene applied by Scope")
        osc.send_message("/metadj/scene/recall", "nope")
        await wait_for(lambda: "no scene 'nope'" in caplog.text, 10, "the refusal of an unknown scene")
        assert not bridge.done()
    finally:
        osc._sock.close()
        bridge.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await bridge
