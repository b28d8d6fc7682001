"""MIDI learn while the show plays (soundcheck/live_learn.py): a control moved on the running bridge's signal board
is written to the profile file with the round-trip writer, and the profile still loads with it."""

from __future__ import annotations

import asyncio
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path

import pytest

from metadj_bridge.bundled import PROFILES_DIR
from metadj_bridge.profile.loader import load_profile
from metadj_bridge.signals import Signal, SignalBoard, Trigger
from metadj_bridge.soundcheck import learn as learn_module
from metadj_bridge.soundcheck import live_learn as live_learn_module
from metadj_bridge.soundcheck.live_learn import LEARN_TIMEOUT_S, POLL_S, LearnRefused, LiveLearn
from tests.helpers import wait_for

PROFILE = (
    "# the club show\n"
    "inputs: {audio: none}\n"
    "themes:\n"
    "  neon: {prompts: [neon city at night]}   # the opener\n"
    "  storm: {prompts: [a storm over the harbour]}\n"
)


def make_learn(tmp_path: Path, clock: Callable[[], float] = time.monotonic,
               report: Callable[[str], None] | None = None) -> tuple[LiveLearn, SignalBoard, Path]:
    path = tmp_path / "club.yaml"
    path.write_text(PROFILE, encoding="utf-8")
    board = SignalBoard()
    learn = LiveLearn(board, lambda: str(path), lambda: ["neon", "storm"], clock=clock, report=report)
    return learn, board, path


async def test_a_knob_moved_while_the_show_plays_is_written_to_the_profile(tmp_path: Path) -> None:
    reported: list[str] = []
    learn, board, path = make_learn(tmp_path, report=reported.append)
    board.set(Signal("midi.cc.1.20", 0.5, 0.0))  # another knob, resting
    board.set(Signal("audio.energy", 0.0, 0.0))
    await learn.start("noise_scale", "filter_knob")
    assert learn.state()["state"] == "waiting"  # type: ignore[index]
    board.set(Signal("audio.energy", 0.9, 0.0))  # the music is not a control
    await asyncio.sleep(0.2)
    assert learn.state()["state"] == "waiting"  # type: ignore[index]
    for step in range(11):
        board.set(Signal("midi.cc.1.74", 0.2 + step * 0.06, 0.0))
        await asyncio.sleep(0.06)
    await wait_for(lambda: learn.state()["state"] == "written", 10, "the mapping written")  # type: ignore[index]
    state = learn.state()
    assert state is not None and state["source"] == "midi.cc.1.74" and state["name"] == "filter_knob"
    text = path.read_text(encoding="utf-8")
    assert text.startswith(PROFILE.rstrip("\n")) and "# the opener" in text
    mapping = next(m for m in load_profile(str(path)).mappings if m.name == "filter_knob")
    assert mapping.source.name == "midi.cc.1.74"  # type: ignore[union-attr]
    assert "noise_scale" in text
    assert reported == [f"learn: midi.cc.1.74 -> noise_scale (mappings.filter_knob in {path})"]
    await learn.aclose()


async def test_a_pad_learns_a_theme_and_a_taken_name_gets_a_free_one(tmp_path: Path) -> None:
    learn, board, path = make_learn(tmp_path)
    for _ in range(2):
        await learn.start("theme.set:storm", "pad")
        board.fire(Trigger("control.theme.neon", 0.0))  # the page's own buttons are not a control
        board.fire(Trigger("midi.note.1.36", 0.0))
        await wait_for(lambda: learn.state()["state"] == "written", 10, "the pad written")  # type: ignore[index]
    assert learn.state()["name"] == "pad_2"  # type: ignore[index]
    names = {m.name: m for m in load_profile(str(path)).mappings}
    assert {"pad", "pad_2"} <= set(names)
    assert "theme.set:storm" in path.read_text(encoding="utf-8")
    await learn.aclose()


async def test_nothing_moved_ends_the_learn_and_leaves_the_file_alone(tmp_path: Path) -> None:
    now = [100.0]
    learn, board, path = make_learn(tmp_path, clock=lambda: now[0])
    await learn.start("prompt.mix")
    await asyncio.sleep(0.1)
    now[0] += LEARN_TIMEOUT_S + 1
    await wait_for(lambda: learn.state()["state"] == "timeout", 10, "the learn to give up")  # type: ignore[index]
    assert path.read_text(encoding="utf-8") == PROFILE
    await learn.start("prompt.mix")
    await learn.cancel()
    assert learn.state()["state"] == "cancelled"  # type: ignore[index]
    board.set(Signal("midi.cc.1.1", 1.0, 0.0))
    await asyncio.sleep(0.1)
    assert path.read_text(encoding="utf-8") == PROFILE
    await learn.aclose()


async def test_bad_requests_are_refused_with_the_field(tmp_path: Path) -> None:
    learn, _board, path = make_learn(tmp_path)
    with pytest.raises(LearnRefused, match="not a learn target") as bad:
        await learn.start("warp_drive")
    assert bad.value.field == "target" and bad.value.kind == "bad"
    with pytest.raises(LearnRefused) as bad_name:
        await learn.start("noise_scale", "two words")
    assert bad_name.value.field == "name"
    bundled = LiveLearn(SignalBoard(), lambda: str(next(PROFILES_DIR.glob("*.yaml"))), lambda: [])
    with pytest.raises(LearnRefused) as read_only:
        await bundled.start("noise_scale")
    assert read_only.value.kind == "forbidden"
    assert learn.state() is None and path.read_text(encoding="utf-8") == PROFILE


async def test_a_flood_of_invented_names_keeps_memory_bounded_and_the_knob_is_still_learned(tmp_path: Path) -> None:
    """A sender inventing controller names (OSC addresses by the hundred thousand) while a learn waits: the learn
    kept the first value of every name it ever saw (and the values it had read), 65,000 names in 1 s, held until
    the next learn; now it keeps as many as the board does, and the knob moved after the flood is learned."""
    learn, board, path = make_learn(tmp_path)
    await learn.start("noise_scale", "after_flood")
    learner = learn._learner
    assert learner is not None
    files = [tracemalloc.Filter(True, learn_module.__file__), tracemalloc.Filter(True, live_learn_module.__file__)]
    tracemalloc.start()
    try:
        before = tracemalloc.take_snapshot().filter_traces(files)
        for batch in range(16):
            for n in range(board.max_values):
                board.set(Signal(f"osc./flood/{batch}/{n}", 0.5, 0.0))
            await asyncio.sleep(POLL_S * 1.5)
        grown = tracemalloc.take_snapshot().filter_traces(files).compare_to(before, "filename")
    finally:
        tracemalloc.stop()
    assert learn.state()["state"] == "waiting"  # type: ignore[index]
    assert sum(stat.size_diff for stat in grown) < 1_000_000, grown
    assert learner.candidates <= learn_module.MAX_CANDIDATES
    for step in range(11):
        board.set(Signal("midi.cc.1.74", 0.2 + step * 0.06, 0.0))
        await asyncio.sleep(0.06)
    await wait_for(lambda: learn.state()["state"] == "written", 10, "the mapping written")  # type: ignore[index]
    assert learn.state()["source"] == "midi.cc.1.74"  # type: ignore[index]
    assert any(m.name == "after_flood" for m in load_profile(str(path)).mappings)
    await learn.aclose()
