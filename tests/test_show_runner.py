"""ShowRunner without the network: the engine's output handed to a real ParameterSender (no channel attached)."""

from __future__ import annotations

import dataclasses

import pytest

from metadj_bridge.profile.model import (
    Mapping,
    PromptSpec,
    ScopeSettings,
    ShowProfile,
    SignalSource,
    Target,
    Theme,
    TriggerSource,
)
from metadj_bridge.run.show import ShowRunner, restart_only_changes
from metadj_bridge.scope.sender import ParameterSender
from metadj_bridge.signals import Signal, Trigger


def profile(input_mode: str = "text") -> ShowProfile:
    return ShowProfile(
        path="/shows/night.yaml",
        name="night",
        scope=ScopeSettings(input_mode=input_mode),  # type: ignore[arg-type]
        themes=(
            Theme("duo", (PromptSpec("red desert"), PromptSpec("blue ice"))),
            Theme("solo", (PromptSpec("forest"),)),
        ),
        mappings=(
            Mapping("mix", SignalSource("midi.cc.1.19"), (), Target("prompt_mix", "mix", (0, 1))),
            Mapping("next", TriggerSource("midi.note.1.36"), (), Target("theme", "next")),
        ),
    )


async def test_avatar_mode_resets_the_cache_for_a_new_prompt_but_not_for_a_weight() -> None:
    sender = ParameterSender()
    runner = ShowRunner(profile("video"), sender)
    sender.update(runner.initial_parameters())
    sender.state.take_message()  # what the offer carried
    runner.board.set(Signal("midi.cc.1.19", 0.5, 1.0))
    runner.step(1.0)
    message = sender.state.take_message()
    assert message is not None and "reset_cache" not in message  # a crossfade: weights only
    assert {p["text"] for p in message["prompts"]} == {"red desert", "blue ice"}
    runner.board.fire(Trigger("midi.note.1.36", 1.1, {"velocity": 1.0}))
    runner.step(1.1)
    message = sender.state.take_message()
    assert message is not None and message["reset_cache"] is True
    assert message["transition"]["target_prompts"] == [{"text": "forest", "weight": 1.0}]


async def test_text_mode_never_resets_the_cache_for_prompts() -> None:
    sender = ParameterSender()
    runner = ShowRunner(profile("text"), sender)
    sender.update(runner.initial_parameters())
    sender.state.take_message()
    runner.board.fire(Trigger("midi.note.1.36", 1.0, {"velocity": 1.0}))
    runner.step(1.0)
    message = sender.state.take_message()
    assert message is not None and "transition" in message and "reset_cache" not in message


def test_restart_only_settings_are_named() -> None:
    old = profile()
    new = dataclasses.replace(old, scope=dataclasses.replace(old.scope, pipeline="krea-realtime-video"),
                              video=dataclasses.replace(old.video, fps=60.0))
    assert restart_only_changes(old, new) == ["scope.pipeline", "video.fps"]
    assert restart_only_changes(old, dataclasses.replace(old, themes=old.themes[:1])) == []


def test_the_last_control_touched_is_remembered_but_not_the_music() -> None:
    runner = ShowRunner(profile(), ParameterSender())
    runner.board.set(Signal("midi.cc.1.19", 0.5, 1.0))
    runner.board.set(Signal("audio.energy", 0.9, 1.1))
    runner.board.fire(Trigger("audio.beat", 1.2))
    assert runner.last_control == "midi.cc.1.19 0.50"
    runner.board.fire(Trigger("midi.note.1.36", 1.3, {"velocity": 1.0}))
    assert runner.last_control == "midi.note.1.36"


def test_transition_progress_follows_the_chunks() -> None:
    clock = [10.0]
    sender = ParameterSender()
    runner = ShowRunner(profile(), sender, clock=lambda: clock[0])
    sender.update(runner.initial_parameters())
    assert runner.transition_progress(10.0) is None
    runner.board.fire(Trigger("midi.note.1.36", 10.0, {"velocity": 1.0}))
    runner.step(10.0)  # a theme change: an 8-step transition goes out
    chunk = sender.pacer.interval(10.0)
    assert runner.transition_progress(10.0 + 4 * chunk) == pytest.approx(0.5, abs=0.01)
    assert runner.transition_progress(10.0 + 9 * chunk) is None  # done


async def test_a_reload_keeps_the_prompt_being_played_and_a_switch_starts_afresh() -> None:
    """A save of the running profile (by hand, a scene or a learned mapping written) must not jump the picture back
    to the theme's first prompt."""
    base = profile()
    three = dataclasses.replace(base, mappings=(*base.mappings, Mapping(
        "prompt", TriggerSource("midi.note.1.37"), (), Target("prompt", "next"))), themes=(
        Theme("trio", (PromptSpec("red desert"), PromptSpec("blue ice"), PromptSpec("green moss"))),
        *base.themes))
    sender = ParameterSender()
    runner = ShowRunner(three, sender)
    sender.update(runner.initial_parameters())
    for i in range(2):
        runner.board.fire(Trigger("midi.note.1.37", 1.0 + i, {"velocity": 1.0}))
        runner.step(1.0 + i)
    assert runner.engine.focus == 2
    runner.apply(dataclasses.replace(three, name="night (saved)"), switch=False)
    runner.step(3.0)
    assert runner.engine.theme == "trio" and runner.engine.focus == 2
    assert sender.snapshot()["prompts"] == [{"text": "green moss", "weight": 1.0}]
    runner.apply(three, switch=True)
    runner.step(4.0)
    assert runner.engine.focus == 0
