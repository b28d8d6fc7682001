"""The learned beat activation (inputs/beat_net.py): streaming equals batch, shipped weights, peaks on beats."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import numpy as np
import pytest

from metadj_bridge.errors import ConfigError
from metadj_bridge.inputs import synth
from metadj_bridge.inputs.analysis import FeatureExtractor
from metadj_bridge.inputs.analysis_config import AnalysisConfig, hop_size_for
from metadj_bridge.inputs.beat_activation import OnsetActivation
from metadj_bridge.inputs.beat_net import WEIGHTS_NAME, BeatNet, band_centres, load_weights


def _bands(samples: np.ndarray, samplerate: int) -> tuple[np.ndarray, np.ndarray]:
    """Per hop: the compressed bands and the hand-made activation, the network's inputs."""
    hop = hop_size_for(samplerate)
    on = OnsetActivation(samplerate, hop)
    rows, flux = [], []
    for i in range(0, len(samples) - hop, hop):
        flux.append(on.process(samples[i : i + hop])[0])
        rows.append(on.bands.copy())
    return np.array(rows), np.array(flux)


@pytest.fixture(scope="module")
def track() -> synth.Track:
    return synth.render(synth.TrackSpec("net", "house", 124, 6, seed=3))


def test_the_package_ships_weights_that_load() -> None:
    assert resources.files("metadj_bridge.inputs").joinpath(WEIGHTS_NAME).is_file()
    weights = load_weights()
    assert weights.hidden >= 8
    np.testing.assert_allclose(weights.centres, band_centres(44100, 2048))
    assert np.isfinite(weights.w_bands).all() and np.isfinite(weights.w_hidden).all()


def test_streaming_equals_the_batch_computation(track: synth.Track) -> None:
    bands, flux = _bands(track.samples, track.samplerate)
    net = BeatNet(load_weights(), band_centres(track.samplerate, 2048))
    streamed = np.array([net.process(b, a) for b, a in zip(bands, flux, strict=True)])
    batch = net.run(bands, flux)
    np.testing.assert_allclose(streamed, batch, rtol=1e-9, atol=1e-12)
    # reset() starts the stream again from the same state.
    net.reset()
    assert net.process(bands[0], flux[0]) == pytest.approx(batch[0], abs=1e-12)
    # The extractor's activation is the same network on the same inputs.
    fx = FeatureExtractor(track.samplerate, AnalysisConfig(beat_activation="net"))
    hop = fx.hop_size
    live = [fx.process(track.samples[i : i + hop]).beat_activation for i in range(0, len(track.samples) - hop, hop)]
    np.testing.assert_allclose(live, batch, rtol=1e-9, atol=1e-12)


def _peaks_on_beats(activation: np.ndarray, beats: np.ndarray, fps: float) -> tuple[float, float]:
    """Mean of the activation's maximum within a hop of each beat (after the first two), and its median."""
    hops = np.round(beats[2:] * fps).astype(int) - 1
    hops = hops[hops + 1 < len(activation)]
    on = np.array([activation[h - 1 : h + 2].max() for h in hops])
    return float(on.mean()), float(np.median(activation))


def test_the_activation_peaks_on_the_beats_of_a_drum_track(track: synth.Track) -> None:
    fx = FeatureExtractor(track.samplerate, AnalysisConfig(beat_activation="net"))
    hop = fx.hop_size
    act = np.array([fx.process(track.samples[i : i + hop]).beat_activation
                    for i in range(0, len(track.samples) - hop, hop)])
    assert ((act >= 0) & (act <= 1)).all()
    on, typical = _peaks_on_beats(act, track.beats, track.samplerate / hop)
    assert on > 0.4
    assert on > 5 * typical


def test_another_sample_rate_maps_its_bands_onto_the_trained_ones() -> None:
    track = synth.render(synth.TrackSpec("net48", "techno", 128, 4, seed=4), samplerate=48000)
    fx = FeatureExtractor(48000, AnalysisConfig(beat_activation="net"))
    hop = fx.hop_size
    act = np.array([fx.process(track.samples[i : i + hop]).beat_activation
                    for i in range(0, len(track.samples) - hop, hop)])
    on, typical = _peaks_on_beats(act, track.beats, 48000 / hop)
    assert on > 5 * typical


def test_the_flux_activation_stays_the_default(track: synth.Track) -> None:
    hop = hop_size_for(track.samplerate)
    flux, net = FeatureExtractor(track.samplerate), FeatureExtractor(track.samplerate, beat_net=load_weights())
    chunk = track.samples[: 40 * hop]
    a = [flux.process(chunk[i : i + hop]) for i in range(0, 39 * hop, hop)]
    b = [net.process(chunk[i : i + hop]) for i in range(0, 39 * hop, hop)]
    assert [x.beat_low for x in a] == [x.beat_low for x in b]  # the low-band flux and chroma are unchanged
    np.testing.assert_array_equal(a[-1].chroma, b[-1].chroma)
    assert [x.beat_activation for x in a] != [x.beat_activation for x in b]


def test_bad_settings_and_files_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="beat_activation"):
        AnalysisConfig(beat_activation="rnn")
    junk = tmp_path / "junk.npz"
    np.savez(junk, centres=np.arange(3.0))
    with pytest.raises(ConfigError, match="not beat network weights"):
        load_weights(junk)
    broken = tmp_path / "broken.npz"
    weights = load_weights()
    weights.save(broken)
    arrays = dict(np.load(broken))
    arrays["w_hidden"] = arrays["w_hidden"][:, :5]
    np.savez(broken, **arrays)
    with pytest.raises(ConfigError, match="w_hidden"):
        load_weights(broken)
    with pytest.raises(ConfigError, match="cannot be read"):
        load_weights(tmp_path / "missing.npz")
