"""The generated DJ transitions the beat tracking is measured on: the crossfade's audio and its ground truth."""

from __future__ import annotations

import numpy as np
import pytest

from metadj_bridge.inputs import synth

A = synth.TrackSpec("house-124", "house", 124, 8, seed=61)
B = synth.TrackSpec("techno-138", "techno", 138, 8, seed=62)


def test_a_crossfade_hands_the_beats_over_at_its_midpoint() -> None:
    a, b = synth.render(A), synth.render(B)
    mix = synth.crossfade(a, b, 8.0, 4.0)
    assert mix.samplerate == a.samplerate and len(mix.samples) == round(8.0 * a.samplerate) + len(b.samples)
    # a's beats up to the midpoint (10 s), b's (moved by 8 s) from it; one list in time order.
    assert np.array_equal(mix.beats[mix.beats < 10.0], a.beats[a.beats < 10.0])
    assert np.array_equal(mix.beats[mix.beats >= 10.0], b.beats[b.beats + 8.0 >= 10.0] + 8.0)
    assert np.all(np.diff(mix.beats) > 0)
    assert set(np.round(mix.bpms, 6)) == {124.0, 138.0} and mix.bpms[-1] == pytest.approx(138.0)
    assert mix.downbeats[0] == a.downbeats[0] and mix.downbeats[-1] == pytest.approx(b.downbeats[-1] + 8.0)


def test_a_crossfade_is_equal_power_and_keeps_each_side_whole() -> None:
    a, b = synth.render(A), synth.render(B)
    sr = a.samplerate
    mix = synth.crossfade(a, b, 8.0, 4.0)
    before, after = slice(0, 8 * sr), slice(12 * sr, len(mix.samples))
    assert np.array_equal(mix.samples[before], a.samples[before])
    assert np.allclose(mix.samples[after], b.samples[4 * sr :], atol=1e-6)
    # At the midpoint both play at -3 dB.
    i = 10 * sr
    expected = (a.samples[i] + b.samples[2 * sr]) * np.float32(np.sqrt(0.5))
    assert mix.samples[i] == pytest.approx(expected, abs=1e-4)


def test_a_crossfade_that_does_not_fit_is_refused() -> None:
    a, b = synth.render(A), synth.render(B)
    with pytest.raises(ValueError, match="does not fit"):
        synth.crossfade(a, b, a.duration - 1.0, 4.0)
    with pytest.raises(ValueError, match="sample rates"):
        synth.crossfade(a, synth.render(B, 48000), 8.0, 4.0)


@pytest.mark.parametrize("heldout", [False, True])
def test_the_bundled_transitions_are_8_s_between_tempos_10_to_20_bpm_apart(heldout: bool) -> None:
    specs = synth.HELDOUT_TRANSITIONS if heldout else synth.TRANSITIONS
    for (a, b, _, seconds), (mix, _, mixed_seconds) in zip(specs, synth.transitions(heldout=heldout), strict=True):
        assert seconds == mixed_seconds == 8.0 and 10 <= abs(a.bpm - b.bpm) <= 20
        assert mix.bpms[0] == a.bpm and mix.bpms[-1] == b.bpm
