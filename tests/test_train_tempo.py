"""scripts/train_tempo.py and the learned tempo score it writes (``inputs/tempo_score.py``): the training sees
what the beat HMM sees, the model learns tempi it is shown, and ``--write`` reproduces the shipped block (the
development set itself is not shipped, so the full training runs where it is built)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))

import train_tempo  # noqa: E402

from metadj_bridge.inputs import synth, tempo_score  # noqa: E402
from metadj_bridge.inputs.analysis import FeatureExtractor  # noqa: E402
from metadj_bridge.inputs.beat_hmm import BeatHMM  # noqa: E402


def _clip(style: str, bpm: float, bars: int, seed: int) -> dict[str, object]:
    track = synth.render(synth.TrackSpec(f"{style}-{bpm:g}", style, bpm, bars, seed=seed))
    bands, act = train_tempo.tb.clip_features(track.samples, track.samplerate)
    return {"name": track.name, "genre": "synth", "bands": bands, "act": act, "beats": track.beats,
            "samples": track.samples}


def test_the_learned_block_in_tempo_score_py_is_what_write_gives() -> None:
    block = train_tempo.weights_block(tempo_score.WEIGHTS)
    assert block in Path(tempo_score.__file__).read_text()
    space: dict[str, object] = {"np": np}
    exec(block, space)  # plain Python: it loads back to the same numbers
    assert np.array_equal(space["WEIGHTS"], tempo_score.WEIGHTS)
    assert tempo_score.WEIGHTS.shape == (len(tempo_score.FEATURES),)


def test_training_windows_are_what_the_beat_hmm_scores() -> None:
    """At every hop before its first beat, what the HMM's learned score reads (``learned_inputs``) has the
    features of the training window that ends with the same hop."""
    clip = _clip("house", 124.0, 4, seed=5)
    x = np.asarray(clip["samples"])
    act = np.asarray(clip["act"], float)
    groups = train_tempo.group_rise(np.asarray(clip["bands"], float))
    start = int(np.nonzero(act > 0.1)[0][0])
    fx = FeatureExtractor(44100)
    hop = fx.hop_size
    hmm = BeatHMM(44100 / hop, 60.0, 190.0)
    compared = 0
    for i in range(0, len(x) - hop, hop):
        f = fx.process(x[i : i + hop])
        if hmm.step(f.beat_activation, f.beat_bands):
            break
        inputs = hmm.learned_inputs()
        if inputs is None:
            continue
        trained = train_tempo.window_features(act, groups, start, hmm.frames, train_tempo.entry_hops(len(act), start))
        assert trained is not None
        np.testing.assert_allclose(tempo_score.features(*inputs[:3], hmm.taus, hmm.fps, inputs[3]), trained,
                                   rtol=1e-5, atol=1e-6)
        compared += 1
    assert compared > 30  # from 0.65 s of music to the first beat


def test_the_model_learns_the_tempi_it_is_shown() -> None:
    """Fitted on generated tracks at some tempi, the score picks the tempo of others: from zero weights (every
    interval alike) to the right one on most windows."""
    train = [_clip(s, b, 8, seed=40 + i) for i, (s, b) in enumerate([("house", 122.0), ("hiphop", 92.0),
                                                                    ("techno", 136.0), ("offbeat_bass", 110.0)])]
    test = [_clip(s, b, 8, seed=60 + i) for i, (s, b) in enumerate([("house", 128.0), ("hiphop", 86.0)])]

    def stack(clips: list[dict[str, object]]) -> tuple[np.ndarray, np.ndarray]:
        rows = [w for c in clips for w in train_tempo.windows(c)]
        return np.stack([r[0] for r in rows]), np.stack([r[1] for r in rows])

    x, y = stack(train)
    w = train_tempo.fit(x, y, np.ones(len(x)))
    xt, yt = stack(test)
    right = yt[np.arange(len(yt)), (xt @ w).argmax(axis=1)]
    assert right.mean() > 0.8
    assert yt[np.arange(len(yt)), (xt @ np.zeros_like(w)).argmax(axis=1)].mean() < 0.2
