"""The one way in and the one beat counter: inputs fill a SignalBoard, the tempo hub counts beats onto it, the show
steps the engine from it, and the sender takes the engine's checked values without checking them again."""

from __future__ import annotations

import pytest

from metadj_bridge.errors import ParameterError
from metadj_bridge.parameters import ParameterSchema, ParamSpec
from metadj_bridge.profile.model import Mapping, PromptSpec, ShowProfile, Target, Theme, TriggerSource
from metadj_bridge.run.show import ShowRunner
from metadj_bridge.run.tempo_hub import TempoHub
from metadj_bridge.scope.sender import ParameterSender
from metadj_bridge.signals import Signal, SignalBoard, TempoReading, Trigger


def _reading(t: float, bpm: float = 120.0) -> TempoReading:
    return TempoReading(source="osc", bpm=bpm, t=t, beat=None)


def test_the_hub_counts_each_beat_once_and_puts_it_on_the_board() -> None:
    board = SignalBoard()
    hub = TempoHub(board)
    board.tempo(_reading(0.0))  # an input delivers a reading: the hub's arbiter gets it through the board
    beats: list[int] = []
    bars: list[int] = []
    t = 0.0
    while t < 4.0:  # 120 BPM for 4 s: 8 beats, 2 bars of 4
        board.tempo(_reading(t))
        hub.tick(t)
        for trigger in board.take_triggers():
            (beats if trigger.name == "tempo.beat" else bars).append(trigger.data.get("beat", trigger.data.get("bar")))
        t += 1 / 86
    assert beats == sorted(set(beats)) and len(beats) in (7, 8)  # every whole beat once, in order
    assert len(bars) in (1, 2) and all(b > 0 for b in bars)
    assert board.values["tempo.bpm"] == pytest.approx(120.0, abs=0.5)
    assert 0.0 <= board.values["tempo.phase"] < 1.0
    assert hub.beat == beats[-1] and hub.beat_at > 0


def test_no_live_source_counts_nothing() -> None:
    board = SignalBoard()
    hub = TempoHub(board)
    state = hub.tick(1.0)
    assert state.source is None and board.take_triggers() == [] and "tempo.bpm" not in board.values


def _beat_profile() -> ShowProfile:
    return ShowProfile(
        path="beats.yaml", name="beats",
        themes=(Theme("a", (PromptSpec("red desert"),)), Theme("b", (PromptSpec("blue ice"),))),
        mappings=(Mapping("next", TriggerSource("tempo.beat"), (), Target("theme", "next")),),
    )


def test_the_show_reads_beats_from_the_hub_through_the_board() -> None:
    board = SignalBoard()
    hub = TempoHub(board)
    sender = ParameterSender()
    runner = ShowRunner(_beat_profile(), sender, tempo=hub.tick, board=board)
    sender.update(runner.initial_parameters())
    themes = []
    t = 0.0
    while t < 2.1:  # 120 BPM: about four beats, each one a theme change
        board.tempo(_reading(t))
        runner.step(t)
        themes.append(runner.engine.theme)
        t += 1 / 86
    changes = sum(1 for a, b in zip(themes, themes[1:], strict=False) if a != b)
    assert changes in (3, 4)


def test_a_switch_request_goes_to_the_switcher_not_the_engine() -> None:
    board = SignalBoard()
    runner = ShowRunner(_beat_profile(), ParameterSender(), board=board)
    board.fire(Trigger("osc./metadj/profile", 1.0, {"args": (123,)}))  # not a path: ignored, not an engine trigger
    board.set(Signal("midi.cc.1.1", 0.5, 1.0))
    out = runner.step(1.0)
    assert out.profile_switch is None and board.take_triggers() == []
    assert runner.last_control == "midi.cc.1.1 0.50"


def test_values_checked_against_the_schema_in_force_are_not_checked_again() -> None:
    sender = ParameterSender()
    schema = sender.schema
    sender.apply({"noise_scale": 0.5}, checked_by=schema)
    assert sender.state.desired["noise_scale"] == 0.5
    with pytest.raises(ParameterError):
        sender.apply({"noise_scale": "loud"})  # raw values: checked here
    # A server whose own rules for a key are narrower: values the engine checked against the built-in rules
    # are checked again for that key only.
    narrow = ParameterSchema("longlive", {**schema.specs, "noise_scale": ParamSpec("number", 0.0, 0.4)})
    sender.set_schema(narrow)
    with pytest.raises(ParameterError, match="noise_scale"):
        sender.apply({"noise_scale": 0.5}, checked_by=schema)
    sender.apply({"base_seed": 7}, checked_by=schema)  # same rule on both sides: taken as it is
    assert sender.state.desired["base_seed"] == 7


def test_beats_that_went_by_while_the_show_stood_still_are_not_fired_late() -> None:
    """The bridge frozen (or the computer asleep) for 10.25 s at 120 BPM: the first step after it finds the grid 20.5
    beats on, half-way through a beat. No beat is fired there, off the beat; the next beat comes on its time."""
    board = SignalBoard()
    hub = TempoHub(board)
    fired: list[tuple[float, float]] = []  # (time, phase then) of each tempo.beat

    def step(t: float) -> None:
        state = hub.tick(t)  # the show steps first; the audio's next reading follows
        board.tempo(TempoReading(source="audio", bpm=120.0, t=t, beat=(2 * t) % 4, beats_per_bar=4))
        fired.extend((t, state.phase) for trigger in board.take_triggers() if trigger.name == "tempo.beat")

    t = 0.0
    while t < 3.0:
        step(t)
        t += 1 / 86
    before = len(fired)
    t += 10.25  # frozen: no step, no reading
    woke = t
    while t < woke + 2.0:
        step(t)
        t += 1 / 86
    after = [(round(at - woke, 3), round(phase, 3)) for at, phase in fired[before:]]
    assert after and all(phase < 0.1 for _, phase in after), after  # each on its beat, none half-way through one
    assert len(after) in (3, 4)  # 2 s at 120 BPM: the beats to come, none for the 20 that went by


def test_a_beat_the_source_moves_earlier_is_counted_on_the_sources_time_and_only_once() -> None:
    """The audio tracker hears a beat come a tenth of a beat early (120 BPM: 50 ms) at 2.45 s and goes back to the old
    grid right after it, then moves a tenth of a beat earlier for good from 3.2 s. The output glides onto each grid
    over a beat, but the beat triggers follow the source: each beat it moved earlier on the source's time (within one
    show step, not when the output's phase gets there), and the beat counted early is not counted again when the
    output reaches it a moment later."""
    board = SignalBoard()
    hub = TempoHub(board)
    step_s = 1 / 86
    fired: list[tuple[float, int]] = []
    t = 0.0
    while t < 4.2:
        shift = 0.1 if 2.2 <= t < 2.46 or t >= 3.2 else 0.0
        board.tempo(TempoReading(source="audio", bpm=120.0, t=t, beat=(2 * t + shift) % 4, beats_per_bar=4))
        hub.tick(t)
        fired += [(t, trigger.data["beat"]) for trigger in board.take_triggers() if trigger.name == "tempo.beat"]
        t += step_s
    counts = [beat for _, beat in fired]
    assert counts == list(range(counts[0], counts[0] + len(counts)))  # each beat once, none skipped
    later = [at for at, _ in fired if at > 2.2]
    assert len(later) == 4, later  # 2.45 (early), 3.0 (the old grid again), 3.45 and 3.95 (early for good)
    assert 2.45 <= later[0] < 2.45 + step_s and 2.95 < later[1] < 3.05
    for at, due in zip(later[2:], (3.45, 3.95), strict=True):
        assert due <= at < due + step_s, (at, due)
