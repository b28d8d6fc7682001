"""The music's start (issue 15): the clock hears music the same however long the silence before it, and music heard
to begin begins on its one (item 4): the bar count of music that starts out of silence is counted from its first
onset, and the music's own bar evidence can still overrule it (a pickup before the one)."""

from __future__ import annotations

import numpy as np
import pytest

from metadj_bridge.inputs import synth
from metadj_bridge.inputs.analysis import FeatureExtractor
from metadj_bridge.inputs.downbeats import DownbeatTracker
from metadj_bridge.inputs.evaluation import f_measure
from metadj_bridge.inputs.tempo import BeatClock

SR = 44100


def ones(x: np.ndarray) -> np.ndarray:
    """The times of the beats the BeatClock counts as the bar's one."""
    fx = FeatureExtractor(SR)
    hop = fx.hop_size
    clock = BeatClock(hop / SR)
    out: list[float] = []
    for i in range(0, len(x) - hop, hop):
        out += [e.t for e in clock.process(fx.process(x[i : i + hop])) if e.beat_in_bar == 0]
    return np.array(out)


def f_between(reference: np.ndarray, found: np.ndarray, start: float, end: float) -> float:
    ref = reference[(reference >= start) & (reference < end)]
    return f_measure(ref, found[(found >= start) & (found < end)], skip=0.0).f_measure


def kicks(bpm: float, lead: float, seconds: float) -> tuple[np.ndarray, np.ndarray]:
    """A kick on every beat and nothing else (no accent, no harmony: nothing in the music says where its bar
    begins), after ``lead`` seconds of silence: the samples and the kicks' times."""
    kick = synth.kick(SR, np.random.default_rng(1))
    times = lead + np.arange(0.0, seconds, 60.0 / bpm)
    x = np.zeros(int((lead + seconds + 1.0) * SR), np.float32)
    for t in times:
        i = int(round(t * SR))
        x[i : i + len(kick)] += kick[: len(x) - i]
    return x, times


@pytest.mark.parametrize(("style", "bpm"), [("house", 124), ("swing", 100), ("broken", 110), ("dnb", 172)])
def test_the_clock_hears_music_the_same_however_long_the_silence_before_it(style: str, bpm: int) -> None:
    """A tenth of a second or ten seconds of silence before the track (the bridge started before the set): the same
    beats, bar positions and BPM, counted from the music's start. Before, the tempo evidence began 2 s after the
    stream's start, so after a long silence it weighed the music's first second, and the first beat came up to 1.3 s
    earlier on less evidence."""
    track = synth.render(synth.TrackSpec(f"{style}-{bpm}", style, bpm, 6, seed=7))
    hop = FeatureExtractor(SR).hop_size

    def heard(silent_hops: int) -> list[tuple[float, int, float]]:
        x = np.concatenate([np.zeros(silent_hops * hop, np.float32), track.samples])
        fx = FeatureExtractor(SR)
        clock = BeatClock(hop / SR)
        lead = silent_hops * hop / SR
        return [(round(e.t - lead, 6), e.beat_in_bar, round(e.bpm, 3))
                for i in range(0, len(x) - hop, hop) for e in clock.process(fx.process(x[i : i + hop]))]

    short, long = heard(9), heard(861)
    assert len(short) >= 20 and short == long


@pytest.mark.parametrize("bpm", [110, 150, 170])
def test_music_heard_to_begin_is_counted_from_its_first_beat(bpm: int) -> None:
    """Kicks out of half a second of silence: the first bars are counted from the first kick (before, from the
    clock's first beat, about 2 s in: downbeat F 0 over these bars at all three tempi)."""
    x, times = kicks(bpm, 0.5, 12.0)
    assert f_between(times[::4], ones(x), 3.5, 7.5) >= 0.75


def test_the_demo_tracks_bars_are_its_own_after_its_quiet_lead_in() -> None:
    """The bundled demo track begins with a beat of its noise floor only (about -56 dBFS RMS), whose onsets the
    relative activation hears as loud: its first downbeat is still heard as the music's entry, so from its second
    bar the ones are the track's (before: a beat early until the drums came in, 8 s in)."""
    track = synth.render(synth.DEMO_SPEC)
    assert f_between(track.downbeats, ones(track.samples), 3.0, 9.0) == 1.0


@pytest.mark.parametrize(("style", "bpm"), [("house", 124), ("techno", 132), ("hiphop", 92)])
def test_the_musics_bars_overrule_a_pickup_before_the_one(style: str, bpm: int) -> None:
    """A snare one beat before the first bar (a pickup) is the music's first onset, so the count starts a beat
    wrong; the bars the music itself marks take over: from 8 s on the ones are the track's."""
    track = synth.render(synth.TrackSpec(f"{style}-{bpm}", style, bpm, 16, seed=5))
    x = track.samples.copy()
    snare = synth.snare(SR, np.random.default_rng(0))
    x[: len(snare)] += snare  # the track's lead-in is one beat of silence before its first downbeat
    lead = 0.5
    x = np.concatenate([np.zeros(int(lead * SR), np.float32), x])
    assert f_between(track.downbeats + lead, ones(x), 8.0, 99.0) >= 0.85


@pytest.mark.parametrize(("metre", "before", "since", "counted"), [
    (4, 0, 6, [2, 3, 0, 1, 2]),
    (4, 6, 9, [1, 2, 3, 0, 1]),
    (3, 7, 5, [2, 0, 1, 2]),
])
def test_the_entry_sets_the_next_beats_place_in_the_bar(metre: int, before: int, since: int,
                                                        counted: list[int]) -> None:
    """Without bar evidence the count follows the entry, also after beats counted with nothing to go by."""
    tracker = DownbeatTracker(SR / 512, metre)
    for _ in range(before):
        tracker.beat()
    tracker.anchor(since)
    assert [tracker.beat() for _ in counted] == counted
