"""The candidate successor to the BeatClock (scripts/candidate_beats), on generated music with known beats."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from metadj_bridge.inputs import synth
from metadj_bridge.inputs.evaluation import f_measure

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "scripts"))

from candidate_beats.tracker import CausalBeatTracker  # noqa: E402


def track_beats(track: synth.Track) -> tuple[list[float], list[float], CausalBeatTracker]:
    tracker = CausalBeatTracker(track.samplerate, beats_per_bar=track.spec.beats_per_bar)
    hop, beats, bpms = tracker.hop, [], []
    for i in range(0, len(track.samples) - hop, hop):
        for t, _, bpm in tracker.process(track.samples[i : i + hop]):
            beats.append(t)
            bpms.append(bpm)
    return beats, bpms, tracker


@pytest.mark.parametrize("name", ["house-124", "offbeat-bass-126", "dnb-174", "breakdown-drop-128"])
def test_it_finds_the_beats_and_the_tempo_of_generated_tracks(name: str) -> None:
    spec = next(s for s in synth.FIXTURE_SPECS if s.name == name)
    track = synth.render(spec)
    beats, bpms, _ = track_beats(track)
    assert f_measure(track.beats, np.array(beats)).f_measure >= 0.95
    assert beats[0] < 3.5  # the first beat within a few seconds of the music
    assert abs(float(np.median(bpms[len(bpms) // 2 :])) - spec.bpm) <= 1.0


def test_silence_gives_no_beat() -> None:
    tracker = CausalBeatTracker(synth.SAMPLERATE)
    silence = np.zeros(tracker.hop, np.float32)
    assert all(tracker.process(silence) == [] for _ in range(1000))
    assert not tracker.locked
