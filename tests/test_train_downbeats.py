"""scripts/train_downbeats.py: the pieces that make the downbeat model reproducible (the development set itself
is not shipped, so the full training runs where it is built; ``--write`` reproduces the weights in
``inputs/downbeats.py``)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))

import train_downbeats  # noqa: E402

from metadj_bridge.inputs import downbeats  # noqa: E402


def test_the_learned_block_in_downbeats_py_is_what_constants_writes() -> None:
    block = train_downbeats.constants(downbeats.WEIGHTS, downbeats.GAIN, downbeats.SLIP)
    source = Path(downbeats.__file__).read_text()
    assert block in source
    space: dict[str, object] = {"np": np}
    exec(block, space)  # the block is plain Python: it loads back to the same numbers
    assert np.array_equal(space["WEIGHTS"], downbeats.WEIGHTS)
    assert downbeats.WEIGHTS.shape == (2, 4, 1 + len(downbeats.FEATURES))


def test_softmax_regression_separates_classes_it_can_see() -> None:
    rng = np.random.default_rng(3)
    y = rng.integers(0, 4, 400)
    x = rng.standard_normal((400, 3)) * 0.3
    x[np.arange(400), y % 3] += 2.0 * (y < 3)  # classes 0-2 lift one feature each; class 3 none
    w = train_downbeats.softmax_regression(x, y, l2=1e-3)
    predicted = np.argmax(np.hstack([np.ones((400, 1)), x]) @ w.T, axis=1)
    assert np.mean(predicted == y) > 0.9


def test_training_features_on_a_generated_track_match_the_daemons_tracker() -> None:
    """The training drives the same DownbeatTracker on the same per-hop features the BeatClock feeds it."""
    from metadj_bridge.inputs import synth

    track = synth.render(synth.TrackSpec("waltz", "waltz", 120, 10, beats_per_bar=3, seed=7))
    feats, fps = train_downbeats.hop_features(track.samples, track.samplerate)
    hops = train_downbeats.beat_hops(track.beats, fps, len(feats))
    positions, tracker = train_downbeats.drive(feats, fps, hops, beats_per_bar=3)
    assert len(positions) == len(track.beats)
    assert positions[-6:] == [0, 1, 2, 0, 1, 2] and tracker.beats_per_bar == 3


def test_the_replayed_bar_hmm_gives_the_tracker_s_positions() -> None:
    """Training and --cv replay the HMM on recorded features: the same positions as the tracker fed hop by hop."""
    from metadj_bridge.inputs import synth

    track = synth.render(synth.TrackSpec("four", "house", 124, 12, seed=3))
    feats, fps = train_downbeats.hop_features(track.samples, track.samplerate)
    hops = train_downbeats.beat_hops(track.beats, fps, len(feats))
    positions, _ = train_downbeats.drive(feats, fps, hops)
    d = dict(fps=fps, hops=hops, raw=train_downbeats.record(feats, fps, hops))
    assert train_downbeats.replay(d, downbeats.WEIGHTS, downbeats.GAIN, downbeats.SLIP) == positions
