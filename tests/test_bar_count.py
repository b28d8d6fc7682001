"""Bars are counted where the source says they begin: the tempo hub's ``tempo.bar``, the theme cycle and the beat
state Scope quantises with all turn over on the music's one, also after the source has moved its count (the audio
tracker hearing the bar begin a beat later than it first thought, a new track, a switch of source)."""

from __future__ import annotations

import math

import pytest

from metadj_bridge.mapping.themes import ThemeCycle
from metadj_bridge.profile.model import CycleSettings
from metadj_bridge.run.tempo_hub import TempoHub
from metadj_bridge.scope.tempo_feed import beat_state
from metadj_bridge.signals import SignalBoard, TempoReading, TempoState

BPM = 120.0
HOP_S = 512 / 44100
#: When the audio tracker moves its count: from then on it hears the bar begin ``SHIFT`` beats later.
MOVED_AT_S = 4.1


def _position(t: float, shift: int) -> float:
    """The tracker's bar position at ``t`` (120 BPM, the beats on whole half-seconds), counted from beat ``shift``."""
    return (t * BPM / 60.0 - shift) % 4


def _tracker_readings(shift: int, seconds: float = 16.0) -> list[tuple[float, TempoReading]]:
    """An audio tracker's readings, hop by hop, as ``analyzer.audio_reading`` makes them: the beat is the position in
    the bar. Until MOVED_AT_S the bar begins on beat 0, 4, 8 ...; then on beat ``shift``, ``shift`` + 4 ..."""
    out = []
    for i in range(int(seconds / HOP_S)):
        t = i * HOP_S
        moved = shift if t >= MOVED_AT_S else 0
        out.append((t, TempoReading("audio", BPM, t, beat=_position(t, moved), beats_per_bar=4)))
    return out


def _off_the_one(position: float) -> float:
    """How far (in beats) a bar position is from the bar's start."""
    return min(position % 4, 4 - position % 4)


@pytest.mark.parametrize("shift", [1, 2, 3])
def test_bars_turn_over_on_the_ones_the_tracker_hears_after_it_moves_its_count(shift: int) -> None:
    board = SignalBoard()
    hub = TempoHub(board)
    cycle = ThemeCycle(CycleSettings(every_bars=1), ("a", "b"))
    bar_triggers: list[tuple[float, TempoState]] = []
    cycle_turns: list[tuple[float, TempoState]] = []
    scope_bars: list[tuple[float, int]] = []
    last_scope_bar: int | None = None
    for t, reading in _tracker_readings(shift):
        board.tempo(reading)
        state = hub.tick(t)
        for trigger in board.take_triggers():
            if trigger.name == "tempo.bar":
                bar_triggers.append((t, state))
        theme_due, _ = cycle.advance(state)
        if theme_due:
            cycle_turns.append((t, state))
            cycle.restart()
        sent = beat_state(state)
        assert sent is not None
        scope_bar = sent["beat_count"] // 4  # how Scope's scheduler counts bars (parameter_scheduler.py)
        if last_scope_bar is not None and scope_bar != last_scope_bar:
            scope_bars.append((t, scope_bar))
        last_scope_bar = scope_bar
        # what Scope is told is where the bar is: its bar position and its beat count agree with the grid's
        assert sent["bar_position"] == pytest.approx(state.bar_position, abs=2e-3) or \
            _off_the_one(sent["bar_position"] - state.bar_position) < 2e-3
        assert (sent["beat_count"] % 4) + sent["beat_phase"] == pytest.approx(sent["bar_position"], abs=2e-3)

    settled = MOVED_AT_S + 2.5  # the grid blends onto the moved count over two beats
    for what, turns in (("tempo.bar", bar_triggers), ("the theme cycle", cycle_turns)):
        late = [(t, s) for t, s in turns if t >= settled]
        assert len(late) >= 4, what
        for t, s in late:
            # each turns over within a hop of the bar's start, which is where the tracker now hears it
            assert _off_the_one(s.bar_position) < 1.5 * HOP_S * BPM / 60.0, (what, t, s.bar_position)
            assert _off_the_one(_position(t, shift)) < 1.5 * HOP_S * BPM / 60.0, (what, t)
    late_scope = [t for t, _ in scope_bars if t >= settled]
    assert len(late_scope) >= 4
    assert all(_off_the_one(_position(t, shift)) < 1.5 * HOP_S * BPM / 60.0 for t in late_scope)


def test_a_bar_turns_over_once_when_the_count_moves() -> None:
    """Moving the count by a beat or two neither skips a bar nor counts one twice in a row."""
    for shift in (1, 2, 3):
        board = SignalBoard()
        hub = TempoHub(board)
        bars: list[int] = []
        for t, reading in _tracker_readings(shift, seconds=12.0):
            board.tempo(reading)
            hub.tick(t)
            bars += [int(trig.data["bar"]) for trig in board.take_triggers() if trig.name == "tempo.bar"]
        assert bars == list(range(bars[0], bars[0] + len(bars))), (shift, bars)
        # 12 s at 120 BPM: 6 bars, one more or less where the count moved
        assert 5 <= len(bars) <= 7, (shift, bars)


def test_the_bar_of_a_state_is_where_its_bar_position_began() -> None:
    state = TempoState(BPM, beat=9.5, phase=0.5, bar_position=2.5, beats_per_bar=4, source="audio", playing=True)
    assert state.bar_beat == pytest.approx(10.5)  # bars on multiples of 4: this one began at 8 on this count
    assert math.floor(state.bar_beat / 4) == state.bar == 2
    later = TempoState(BPM, beat=11.0, phase=0.0, bar_position=0.0, beats_per_bar=4, source="audio", playing=True)
    assert later.bar == 3 and later.bar_beat == pytest.approx(12.0)
    waltz = TempoState(BPM, beat=7.25, phase=0.25, bar_position=1.25, beats_per_bar=3, source="audio", playing=True)
    assert waltz.bar_beat % 3 == pytest.approx(1.25) and waltz.bar == 2
