"""Bars are counted where the source says they begin: the tempo hub's ``tempo.bar``, the theme cycle and the beat
state Scope quantises with all turn over on the music's one, also after the source has moved its count (the audio
tracker hearing the bar begin a beat later than it first thought, a new track, a switch of source)."""

from __future__ import annotations

import math

import pytest

from metadj_bridge.inputs import synth
from metadj_bridge.inputs.analysis import FeatureExtractor
from metadj_bridge.inputs.tempo import BeatClock, TempoConfig
from metadj_bridge.inputs.tempo_sources import ArbiterConfig, TempoArbiter
from metadj_bridge.mapping.themes import ThemeCycle
from metadj_bridge.profile.model import CycleSettings, Mapping, PromptSpec, ShowProfile, Target, Theme, TriggerSource
from metadj_bridge.run.show import ShowRunner
from metadj_bridge.run.tempo_hub import TempoHub
from metadj_bridge.scope.sender import ParameterSender
from metadj_bridge.scope.tempo_feed import beat_state
from metadj_bridge.signals import SignalBoard, TempoReading, TempoState, Trigger

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
    assert state.bar_beat == pytest.approx(6.5)  # this bar began on the grid's beat 7: bars at 4 + 3, 8 + 3 ...
    assert math.floor(state.bar_beat / 4) == state.bar == 1
    later = TempoState(BPM, beat=11.0, phase=0.0, bar_position=0.0, beats_per_bar=4, source="audio", playing=True)
    assert later.bar == 2 and later.bar_beat == pytest.approx(8.0)
    waltz = TempoState(BPM, beat=7.25, phase=0.25, bar_position=1.25, beats_per_bar=3, source="audio", playing=True)
    assert waltz.bar_beat == pytest.approx(7.25) and waltz.bar == 2


@pytest.mark.parametrize("origin", [0, 1, 2, 3])
def test_the_bar_count_holds_still_within_a_bar_whatever_its_origin(origin: int) -> None:
    """Half a bar off the grid's count is no tie: the bar does not flicker between two counts from one tick to the
    next (each flicker would be a bar trigger)."""
    bars = set()
    for i in range(1, 400):
        beat = 8.0 + origin + i * 0.01  # within one bar of 4, which began on beat 8 + origin
        for wobble in (-1e-9, 0.0, 1e-9):
            position = (beat + wobble - origin) % 4
            state = TempoState(BPM, beat=beat, phase=beat % 1.0, bar_position=position, beats_per_bar=4,
                               source="audio", playing=True)
            bars.add(state.bar)
    assert len(bars) == 1


def _jumps_between_beats(spec: synth.TrackSpec) -> tuple[int, int]:
    """The BeatClock over a generated track, hop by hop as the daemon reads it (``bar_position`` for the tempo
    reading): how many hops without a beat reported move the bar position by half a beat or more from where the
    last hop's position and the beat period put it, and how many hops there were."""
    track = synth.render(spec)
    fx = FeatureExtractor(track.samplerate)
    hop = fx.hop_size
    clock = BeatClock(hop / track.samplerate, TempoConfig())
    previous: float | None = None
    jumps = hops = 0
    for i in range(0, len(track.samples) - hop, hop):
        features = fx.process(track.samples[i : i + hop])
        beats = clock.process(features)
        if not clock.locked or clock.period is None:
            continue
        position = clock.bar_position(features.t)
        if previous is not None and not beats:
            hops += 1
            moved = (position - previous - hop / track.samplerate / clock.period) % clock.beats_per_bar
            jumps += min(moved, clock.beats_per_bar - moved) >= 0.5
        previous = position
    return jumps, hops


@pytest.mark.parametrize("spec", [synth.TrackSpec("hiphop-84", "hiphop", 84, 16, seed=11),
                                  synth.TrackSpec("house-124", "house", 124, 16, seed=12)], ids=lambda s: s.name)
def test_the_bar_position_runs_on_between_beats_when_a_beat_is_late_or_early(spec: synth.TrackSpec) -> None:
    """The tracker's bar position, read every hop for the tempo reading, moves by whole beats only where a beat is
    reported (a corrected bar count): a beat a few milliseconds later than the grid's period put it once wrapped its
    phase to 0 while the count still said the last beat, a whole beat back for a few hops, and the grid took it as the
    bar moving."""
    jumps, hops = _jumps_between_beats(spec)
    assert hops > 500
    assert jumps == 0


def test_the_beats_are_on_a_new_tempo_after_the_blend_while_the_reported_tempo_still_ramps() -> None:
    """A source's tempo moves a long way at once (an octave corrected, a DJ's next track): the grid's beats are on
    the new line after ``phase_slew_beats``, not after the reported tempo's ramp of ``max_bpm_step_per_beat`` a beat
    (which also smooths the BPM the show reads)."""
    arbiter = TempoArbiter(ArbiterConfig(phase_slew_beats=1.0, max_bpm_step_per_beat=4.0))
    change = 4.0
    for i in range(int(12.0 / 0.01)):
        t = i * 0.01
        if t < change:
            arbiter.update(TempoReading("link", 80.0, t, beat=t * 80.0 / 60.0))
        else:
            arbiter.update(TempoReading("link", 160.0, t, beat=change * 80.0 / 60.0 + (t - change) * 160.0 / 60.0))
        arbiter.state(t)
    after = change + 2 * 60.0 / 160.0  # two beats of the new tempo: the blend (one) is over
    state = arbiter.state(after)
    new_line = change * 80.0 / 60.0 + (after - change) * 160.0 / 60.0
    assert (state.beat - new_line + 0.5) % 1.0 - 0.5 == pytest.approx(0.0, abs=1e-6)
    assert state.bpm < 100.0  # 80 -> 160 at 4 BPM a beat: the reported tempo is still ramping


def _pinned_run(shift_at: float, bpm_after: float = BPM) -> list[tuple[float, TempoState]]:
    """An audio tracker's readings at 120 BPM whose bars begin on beats 0, 4, 8 ... and from ``shift_at`` on beat 1,
    5, 9 ... (at ``bpm_after`` from then on); a performer presses "one" at 3.0 s, on the grid's beat 6."""
    arbiter = TempoArbiter()
    states = []
    for i in range(int(14.0 / HOP_S)):
        t = i * HOP_S
        if t < shift_at:
            reading = TempoReading("audio", BPM, t, beat=_position(t, 0), beats_per_bar=4)
        else:
            beat = (shift_at * BPM / 60.0 + (t - shift_at) * bpm_after / 60.0 - 1) % 4
            reading = TempoReading("audio", bpm_after, t, beat=beat, beats_per_bar=4)
        arbiter.update(reading)
        if abs(t - 3.0) < HOP_S / 2:
            assert arbiter.pin_downbeat(t)
        states.append((t, arbiter.state(t)))
    return states


def test_the_one_pressed_by_hand_holds_against_the_source_moving_its_bars() -> None:
    states = _pinned_run(shift_at=6.0)
    for t, state in states:
        if 3.1 <= t:  # from the press on, bars begin on the grid's beats 6, 10, 14 ... (the press was on beat 6)
            assert (state.beat - 6.0 - state.bar_position + 0.5) % 4 - 0.5 == pytest.approx(0.0, abs=1e-6), t
        elif t < 2.9:  # before it, the source's bars: beats 0, 4, 8
            assert (state.beat - state.bar_position + 0.5) % 4 - 0.5 == pytest.approx(0.0, abs=1e-6), t


def test_the_one_pressed_by_hand_is_let_go_when_the_tempo_moves(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level("INFO", logger="metadj_bridge.inputs.tempo_sources"):
        states = _pinned_run(shift_at=6.0, bpm_after=128.0)  # another track, 1 beat off: the source's bars again
    assert "the downbeat set by hand is let go (the tempo moved to 128.0 BPM)" in caplog.text
    t, last = states[-1]
    source_position = (6.0 * BPM / 60.0 + (t - 6.0) * 128.0 / 60.0 - 1) % 4
    moved = (last.bar_position - source_position) % 4
    assert min(moved, 4 - moved) < 0.05


def test_the_one_pressed_by_hand_is_let_go_when_another_source_steers() -> None:
    arbiter = TempoArbiter()
    arbiter.update(TempoReading("audio", BPM, 0.0, beat=0.0, beats_per_bar=4))
    assert arbiter.pin_downbeat(0.76)  # nearest beat: the grid's 2 (1.5 beats in), a bar begins there
    assert arbiter.state(1.0).bar_position == pytest.approx(0.0)
    assert arbiter.quantize(1.1, "bar") == pytest.approx(3.0)  # bar-quantised changes land on the pressed one
    arbiter.update(TempoReading("link", BPM, 1.2, beat=2.4, beats_per_bar=4))
    assert arbiter.state(1.2).source == "link"
    assert arbiter.state(1.2).bar_position == pytest.approx(2.4)  # Link's bars


def test_there_is_no_one_to_press_before_a_grid() -> None:
    assert not TempoArbiter().pin_downbeat(1.0)


def test_a_pad_mapped_to_the_downbeat_begins_the_bars_where_it_is_pressed() -> None:
    """A controller's pad on ``action.downbeat``: through the show's engine to the beat grid, and into the show's
    events; the bars then begin on the beat nearest the press (the grid's beat 6 here; the tracker said 4, 8 ...)."""
    profile = ShowProfile(path="one.yaml", name="one", themes=(Theme("a", (PromptSpec("red desert"),)),),
                          mappings=(Mapping("one", TriggerSource("midi.note.1.36"), (), Target("action", "downbeat")),))
    board = SignalBoard()
    hub = TempoHub(board)
    runner = ShowRunner(profile, ParameterSender(), tempo=hub.tick, board=board, downbeat=hub.pin_downbeat)
    bars: list[float] = []
    events: list[str] = []
    for t, reading in _tracker_readings(shift=0, seconds=10.0):
        board.tempo(reading)
        if abs(t - 3.02) < HOP_S / 2:
            board.fire(Trigger("midi.note.1.36", t, {"velocity": 100}))
        counted = hub.bar
        out = runner.step(t)  # ticks the hub, whose tempo.bar the engine takes from the board
        events += out.events
        if counted is not None and hub.bar != counted and hub.state is not None:
            bars.append(round(hub.state.beat))
    assert "downbeat: the bar begins on this beat" in events
    assert [b for b in bars if b <= 6] == [4]  # the tracker's bars until the press
    assert [b for b in bars if b > 6] == [10, 14, 18]  # from the pad's one
