"""DJ transitions (issue 15, item 3): after a crossfade to a track 10-20 BPM away the BeatClock's BPM and beats
follow the new track, and on steady music the tempo-change detector (inputs/tempo_change.py) never fires.

The crossfades are synth.TRANSITIONS (8 s, equal power) and a few of synth.DEVELOPMENT_TRANSITIONS;
synth.HELDOUT_TRANSITIONS are left to the benchmark.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from metadj_bridge.inputs import synth
from metadj_bridge.inputs.analysis import FeatureExtractor
from metadj_bridge.inputs.beat_hmm import BeatHMM
from metadj_bridge.inputs.evaluation import f_measure
from metadj_bridge.inputs.tempo import NEW_BEAT_MARGIN, NEW_BEAT_SUPPORT, BeatClock, TempoConfig
from metadj_bridge.inputs.tempo_change import TempoChangeDetector
from tests.helpers import without_bass

FPS = 44100 / 512
#: The bound this test holds the tracker to: from this long after the crossfade's midpoint on, the BPM reads the new
#: track's within 2% and the beats score F >= 0.95 (the benchmark prints how soon it gets there).
FOLLOW_S = 2.5


def play(track: synth.Track) -> tuple[BeatClock, np.ndarray, np.ndarray, np.ndarray]:
    """The BeatClock over a track, hop by hop: (the clock, its beats, the hop times, the BPM at each hop)."""
    fx = FeatureExtractor(track.samplerate)
    hop = fx.hop_size
    clock = BeatClock(hop / track.samplerate, TempoConfig(beats_per_bar=track.spec.beats_per_bar))
    beats: list[float] = []
    times, bpms = [], []
    for i in range(0, len(track.samples) - hop, hop):
        f = fx.process(track.samples[i : i + hop])
        beats += [e.t for e in clock.process(f)]
        times.append(f.t)
        bpms.append(clock.bpm)
    return clock, np.array(beats), np.array(times), np.array(bpms)


@pytest.mark.parametrize("which", range(len(synth.TRANSITIONS)))
def test_bpm_and_beats_follow_a_crossfade_to_the_new_track(which: int) -> None:
    track, start, seconds = synth.transitions()[which]
    clock, beats, times, bpms = play(track)
    middle, new = start + seconds / 2, track.spec.bpm
    # To the end of the file, the noise floor after the last beat included: there the flywheel holds the tempo.
    after = times >= middle + FOLLOW_S
    assert np.all(np.abs(bpms[after] / new - 1.0) < 0.02), f"BPM after the crossfade: {np.unique(bpms[after].round(1))}"
    reference = track.beats[track.beats >= middle + FOLLOW_S]
    score = f_measure(reference, beats[beats >= middle + FOLLOW_S], skip=0.0)
    assert score.f_measure >= 0.95
    # Before the crossfade the old track's tempo held, and it took one change to follow the new one.
    old = synth.TRANSITIONS[which][0].bpm
    before = (times > 10.0) & (times < start)
    assert np.all(np.abs(bpms[before] / old - 1.0) < 0.02)
    assert clock.tempo_changes == 1


@pytest.mark.parametrize("which", range(len(synth.TRANSITIONS)))
def test_the_bar_is_the_new_tracks_after_a_crossfade(which: int) -> None:
    """The new track's bars have nothing to do with the old one's: when the clock follows it, it counts the bar
    afresh, and from 4 s after the midpoint its ones are the new track's (on two of these three the old count ran on
    half a bar or a beat off: downbeat F 0.45 and 0.65)."""
    track, start, seconds = synth.transitions()[which]
    fx = FeatureExtractor(track.samplerate)
    clock = BeatClock(fx.hop_size / track.samplerate, TempoConfig(beats_per_bar=track.spec.beats_per_bar))
    ones = []
    for i in range(0, len(track.samples) - fx.hop_size, fx.hop_size):
        ones += [e.t for e in clock.process(fx.process(track.samples[i : i + fx.hop_size])) if e.beat_in_bar == 0]
    settled = start + seconds / 2 + 4.0
    reference = track.downbeats[track.downbeats >= settled]
    assert len(reference) >= 4
    assert f_measure(reference, np.array([t for t in ones if t >= settled]), skip=0.0).f_measure >= 0.85


@pytest.mark.parametrize("name", ["house-124", "broken-132", "swing-92", "ramp-120-128", "breakdown-drop-128"])
def test_steady_music_never_calls_a_tempo_change(name: str) -> None:
    track = next(t for t in synth.fixtures() if t.name == name)
    clock, beats, _, _ = play(track)
    assert clock.tempo_changes == 0
    assert f_measure(track.beats, beats).f_measure >= 0.95


#: Crossfades of synth.DEVELOPMENT_TRANSITIONS whose new beat grows in what the old track's beats leave over for a
#: second or more before it stands out (swing to hip-hop, hip-hop to house, house to swing): the detector calls on
#: that persistence, so the BPM follows within the issue's 2 s of the midpoint (six strong checks in a row took
#: 2.0-2.1 s on two of them).
GROWING_IN = [synth.DEVELOPMENT_TRANSITIONS[i] for i in (2, 3, 10)]


@pytest.mark.parametrize("which", range(len(GROWING_IN)))
def test_a_new_beat_that_grows_steadily_is_followed_within_2_s_of_the_midpoint(which: int) -> None:
    a, b, start, seconds = GROWING_IN[which]
    track = synth.crossfade(synth.render(a), synth.render(b), start, seconds)
    clock, beats, times, bpms = play(track)
    settled = start + seconds / 2 + 2.0
    after = times >= settled
    assert np.all(np.abs(bpms[after] / b.bpm - 1.0) < 0.02), f"BPM: {np.unique(bpms[after].round(1))}"
    assert f_measure(track.beats[track.beats >= settled], beats[beats >= settled], skip=0.0).f_measure >= 0.95
    assert clock.tempo_changes == 1


#: Crossfades the first tempo-change detector missed (synth.DEVELOPMENT_TRANSITIONS): a broken beat coming in, whose
#: kicks repeat at 3/4 of its beat, and outgoing tracks whose beat-level repeat is weak (swing, a broken beat).
BROKEN_IN = synth.DEVELOPMENT_TRANSITIONS[0][:2]
SYNCOPATED_OUT = [synth.DEVELOPMENT_TRANSITIONS[i][:2] for i in (2, 7)]


def mixed(a: synth.TrackSpec, b: synth.TrackSpec) -> tuple[synth.Track, BeatClock, np.ndarray, np.ndarray, np.ndarray]:
    """An 8 s crossfade from 24 s, played: (the mix, the clock, its beats, the hop times, the BPM at each hop)."""
    track = synth.crossfade(synth.render(a), synth.render(b), 24.0, 8.0)
    clock, beats, times, bpms = play(track)
    return track, clock, beats, times, bpms


def test_a_broken_beat_coming_in_is_followed_at_its_own_tempo_not_at_four_thirds() -> None:
    track, clock, beats, times, bpms = mixed(*BROKEN_IN)
    settled = 28.0 + 8.0  # the midpoint and the check after the change (3 s and more after it, on new material)
    after = (times >= settled) & (times <= track.beats[-1])
    assert np.all(np.abs(bpms[after] / BROKEN_IN[1].bpm - 1.0) < 0.02), np.unique(bpms[after].round(1))
    assert f_measure(track.beats[track.beats >= settled], beats[beats >= settled], skip=0.0).f_measure >= 0.95


@pytest.mark.parametrize("which", range(len(SYNCOPATED_OUT)))
def test_a_change_is_heard_when_the_outgoing_beat_is_syncopated(which: int) -> None:
    old, new = SYNCOPATED_OUT[which]
    track, clock, beats, times, bpms = mixed(old, new)
    assert clock.tempo_changes == 1
    after = (times >= 28.0 + FOLLOW_S + 1.0) & (times <= track.beats[-1])
    assert np.all(np.abs(bpms[after] / new.bpm - 1.0) < 0.02), np.unique(bpms[after].round(1))
    before = (times > 10.0) & (times < 24.0)
    assert np.all(np.abs(bpms[before] / old.bpm - 1.0) < 0.02)


#: Crossfades into a track without kick or bass, 14-18 BPM slower: its low band falls away as in a breakdown,
#: where the clock holds the old tempo (BeatClock's flywheel), but what is left repeats at another beat.
LESS_BASS = [
    (synth.TrackSpec("house-124", "house", 124, 24, seed=201),
     synth.TrackSpec("house-106", "house", 106, 16, seed=202)),
    (synth.TrackSpec("offbeat-126", "offbeat_bass", 126, 24, seed=203),
     synth.TrackSpec("hiphop-110", "hiphop", 110, 16, seed=204)),
]


@pytest.mark.parametrize("which", range(len(LESS_BASS)))
def test_a_crossfade_into_a_track_without_bass_is_followed_not_held_as_a_breakdown(which: int) -> None:
    old, new = LESS_BASS[which]
    incoming = synth.render(new)
    incoming = dataclasses.replace(incoming, samples=without_bass(incoming.samples, incoming.samplerate))
    track = synth.crossfade(synth.render(old), incoming, 24.0, 8.0)
    clock, beats, times, bpms = play(track)
    # The new beat is heard when it fills the last seconds: within 4 s of the crossfade's end (32 s).
    settled = 36.0
    after = (times >= settled) & (times <= track.beats[-1])
    assert np.all(np.abs(bpms[after] / new.bpm - 1.0) < 0.02), np.unique(bpms[after].round(1))
    assert f_measure(track.beats[track.beats >= settled], beats[beats >= settled], skip=0.0).f_measure >= 0.95
    assert clock.tempo_changes == 1


@pytest.mark.parametrize(("style", "bpm", "late"), [("techno", 138, 0.0), ("house", 124, 0.25)])
def test_the_next_song_after_a_pause_is_counted_in_its_own_bars(style: str, bpm: int, late: float) -> None:
    """A performer's next song after 3 s of silence (another tempo, or the same tempo a quarter beat off the old
    grid): its bars are counted afresh, so from 4 s in its ones are its own (the old count ran on: downbeat F 0.23
    and 0)."""
    old = synth.render(synth.TrackSpec("house-124", "house", 124, 16, seed=3))
    new = synth.render(synth.TrackSpec(f"{style}-{bpm}", style, bpm, 16, seed=4))
    gap = np.zeros(int((3.0 + late * 60.0 / bpm) * old.samplerate), np.float32)
    x = np.concatenate([old.samples, gap, new.samples])
    start = (len(old.samples) + len(gap)) / old.samplerate
    fx = FeatureExtractor(old.samplerate)
    clock = BeatClock(fx.hop_size / old.samplerate)
    ones = []
    for i in range(0, len(x) - fx.hop_size, fx.hop_size):
        ones += [e.t for e in clock.process(fx.process(x[i : i + fx.hop_size])) if e.beat_in_bar == 0]
    reference = new.downbeats + start
    reference = reference[reference >= start + 4.0]
    assert f_measure(reference, np.array([t for t in ones if t >= start + 4.0]), skip=0.0).f_measure >= 0.85


def clicks(n: int, period: float, start: float = 0.0) -> np.ndarray:
    """An activation of one-hop clicks every ``period`` hops."""
    a = np.zeros(n)
    a[np.round(np.arange(start, n, period)).astype(int)] = 1.0
    return a


def detector_run(a: np.ndarray, period: float) -> list[tuple[int, float]]:
    """The detector over an activation, with the grid locked at ``period`` hops and moved to each called one, as the
    BeatClock does: (hop, new period) of every call."""
    detector = TempoChangeDetector(FPS, 28, 86)
    calls = []
    for i, x in enumerate(a):
        if detector.push(float(x)):
            new = detector.check(period, True)
            if new is not None:
                calls.append((i, new))
                period = new
    return calls


def test_the_detector_hears_a_crossfade_between_click_trains() -> None:
    n, fade_start, fade = 3000, 1200, 600
    old, new = clicks(n, 40.0), clicks(n, 35.0, start=7.0)
    gain = np.clip((np.arange(n) - fade_start) / fade, 0.0, 1.0)
    calls = detector_run(np.maximum(old * np.cos(0.5 * np.pi * gain), new * np.sin(0.5 * np.pi * gain)), 40.0)
    assert len(calls) == 1
    hop, period = calls[0]
    assert fade_start < hop < fade_start + fade and period == pytest.approx(35.0, rel=0.02)


@pytest.mark.parametrize(("new_period", "found"), [(35.0, True), (40.0, False), (20.0, False), (53.3, False)])
def test_other_beat_hears_a_beat_5_to_25_percent_away_and_no_metrical_relative(new_period: float, found: bool) -> None:
    """What the clock reads in a breakdown: the held beat (40 hops) gone, clicks at another period in the last 3 s.
    35 hops is another beat; 40 is the held one, 20 its double and 53.3 its 3/4: none of those is a new beat."""
    detector = TempoChangeDetector(FPS, 28, 86)
    a = np.concatenate([clicks(1000, 40.0), clicks(400, new_period, start=3.0)])
    for x in a:
        detector.push(float(x))
    here, lag, value = detector.other_beat(40.0, 258)
    if found:
        assert lag == pytest.approx(new_period, rel=0.02) and value >= 0.9 and here < 0.3
    else:
        assert value < NEW_BEAT_SUPPORT or value < here + NEW_BEAT_MARGIN


def with_stray_onsets(a: np.ndarray, seed: int) -> np.ndarray:
    """Clicks with about two stray onsets a beat (0.5-0.9): the beat never repeats clearly enough for CLEAR, and what
    its last beats leave over is never quiet: like much real music."""
    rng = np.random.default_rng(seed)
    a = a.copy()
    stray = rng.integers(0, len(a), len(a) // 20)
    a[stray] = np.maximum(a[stray], rng.uniform(0.5, 0.9, len(stray)))
    return a


@pytest.mark.parametrize("seed", [1, 3, 5])
def test_a_new_beat_is_called_after_a_long_hold_when_the_old_one_was_never_clear(seed: int) -> None:
    n, fade_start, fade = 4000, 1600, 600
    old, new = with_stray_onsets(clicks(n, 40.0), seed), with_stray_onsets(clicks(n, 35.0, start=7.0), seed + 100)
    gain = np.clip((np.arange(n) - fade_start) / fade, 0.0, 1.0)
    steady = detector_run(old, 40.0)
    calls = detector_run(np.maximum(old * np.cos(0.5 * np.pi * gain), new * np.sin(0.5 * np.pi * gain)), 40.0)
    assert steady == []
    # One call, at least LONG_CHECKS checks after the new beat starts to show and within 6 s of the midpoint.
    assert len(calls) == 1
    hop, period = calls[0]
    assert fade_start + fade / 2 < hop < fade_start + fade / 2 + 6.0 * FPS and period == pytest.approx(35.0, rel=0.02)


@pytest.mark.parametrize("pattern", ["steady", "fill", "metrical"])
def test_the_detector_ignores_steady_music_fills_and_metrical_relations(pattern: str) -> None:
    n = 3000
    a = clicks(n, 40.0)
    if pattern == "fill":  # a bar of sixteenths now and then
        for bar in range(400, n - 160, 640):
            a[bar : bar + 160 : 10] = 0.8
    if pattern == "metrical":  # the music moves to half time and then to a triplet feel: no DJ's tempo change
        a[1000:2000] = clicks(1000, 80.0)
        a[2000:] = clicks(1000, 40.0 * 2 / 3)
    assert detector_run(a, 40.0) == []


def test_moving_the_hmm_to_a_new_tempo_keeps_it_there_on_the_new_beat() -> None:
    hmm = BeatHMM(FPS, 60.0, 190.0)
    a = clicks(1500, 40.0)
    for x in a[:900]:
        hmm.step(float(x))
    assert hmm.locked and hmm.tempo_bpm() == pytest.approx(60 * FPS / 40.0, rel=0.02)
    b = clicks(900, 35.0, start=3.0)  # the new track has played a few beats already
    for x in b[:300]:
        hmm.step(float(x))
    hmm.move_tempo(35.0)
    beats = [i for i, x in enumerate(b[300:], start=300) if hmm.step(float(x))]
    assert hmm.tempo_bpm() == pytest.approx(60 * FPS / 35.0, rel=0.02)
    assert np.all(np.abs(np.diff(beats) - 35.0) <= 1.5)
    # Every beat within a hop of a click of the new track (a beat is reported at most one hop after it).
    assert all(np.min(np.abs(np.flatnonzero(b) - i)) <= 1 for i in beats)


#: Crossfades into a track without kick or bass that the tempo-change detector calls before the old bass has faded:
#: the new track then plays on as a breakdown, its beats the flywheel's (the benchmark's "Seams of a set").
CALLED_INTO_LESS_BASS = [
    (synth.TrackSpec("offbeat_bass-126", "offbeat_bass", 126, 24, seed=401),
     synth.TrackSpec("hiphop-108", "hiphop", 108, 24, seed=402)),
    (synth.TrackSpec("techno-132", "techno", 132, 24, seed=401),
     synth.TrackSpec("swing-112", "swing", 112, 24, seed=402)),
]


@pytest.mark.parametrize("which", range(len(CALLED_INTO_LESS_BASS)))
def test_the_bars_of_a_track_without_bass_are_learnt_from_the_held_beats(which: int) -> None:
    """A breakdown's held beats give the bar count no evidence (a long one's pads and hats would take it elsewhere),
    but here the bars began with the new track just before the breakdown: they are its, and its ones are counted from
    what it plays (downbeat F 0 on both when no held beat was heard)."""
    old, new = CALLED_INTO_LESS_BASS[which]
    incoming = synth.render(new)
    incoming = dataclasses.replace(incoming, samples=without_bass(incoming.samples, incoming.samplerate))
    track = synth.crossfade(synth.render(old), incoming, 24.0, 8.0)
    fx = FeatureExtractor(track.samplerate)
    clock, hop, x = BeatClock(fx.hop_size / track.samplerate), fx.hop_size, track.samples
    ones = np.array([e.t for i in range(0, len(x) - hop, hop) for e in clock.process(fx.process(x[i : i + hop]))
                     if e.beat_in_bar == 0])
    assert clock.tempo_changes == 1
    settled = 38.0
    truth = track.downbeats[track.downbeats >= settled]
    assert f_measure(truth, ones[ones >= settled], skip=0.0).f_measure >= 0.85
