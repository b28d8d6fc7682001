"""Audio features per hop (pure): checked against numpy references on signals generated here."""

from __future__ import annotations

import dataclasses
import logging
import math

import numpy as np
import pytest

from metadj_bridge.errors import ConfigError
from metadj_bridge.inputs import beat_activation
from metadj_bridge.inputs.analysis import FeatureExtractor, HopFeatures
from metadj_bridge.inputs.analysis_config import AnalysisConfig, hop_size_for, window_size_for
from metadj_bridge.inputs.analysis_cost import measure_cost
from metadj_bridge.inputs.beat_activation import OnsetActivation, frame_size_for

SR = 44100
UNIT_FIELDS = ("energy", "centroid", "flatness", "flatness_norm", "low", "mid", "high", "onset_strength")
RAW_FIELDS = ("rms", "centroid_hz", "flux_low", "flux_mid", "flux_high", "beat_low")


def run(extractor: FeatureExtractor, x: np.ndarray) -> list[HopFeatures]:
    """Feed whole hops of ``x`` (any float dtype) in order; a trailing partial hop is dropped."""
    hop = extractor.hop_size
    samples = np.asarray(x, dtype=np.float32)
    return [extractor.process(samples[i * hop : (i + 1) * hop]) for i in range(len(samples) // hop)]


def tone(freq: float, seconds: float, amp: float = 0.1, sr: int = SR) -> np.ndarray:
    return amp * np.sin(2 * np.pi * freq * np.arange(int(seconds * sr)) / sr)


def noise(rms: float, seconds: float, sr: int = SR, seed: int = 0) -> np.ndarray:
    return rms * np.random.default_rng(seed).standard_normal(int(seconds * sr))


def click_train(
    period: float, seconds: float, sr: int = SR, floor: float = 0.01, seed: int = 1
) -> tuple[np.ndarray, np.ndarray]:
    """Short decaying noise bursts every ``period`` seconds over a -40 dBFS noise floor.

    The floor keeps the signal above aubio's silence gate between clicks, as in real music; the click
    times are slightly jittered so that they fall at different places inside a hop.
    """
    rng = np.random.default_rng(seed)
    x = floor * rng.standard_normal(int(seconds * sr))
    times = 0.25 + np.arange(int((seconds - 0.35) / period) + 1) * period
    times = times + rng.uniform(0.0, 0.011, times.size)
    n = int(0.03 * sr)
    envelope = 0.6 * np.exp(-np.arange(n) / (0.004 * sr))
    for t in times:
        i = round(t * sr)
        x[i : i + n] += envelope * rng.standard_normal(n)
    return x, times


def spectrum_ref(x: np.ndarray, end: int, n: int) -> np.ndarray:
    """|rfft| of the ``n`` samples before ``end``, periodic-Hann windowed, in float64."""
    window = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(n) / n)
    return np.abs(np.fft.rfft(np.asarray(x[end - n : end], dtype=np.float64) * window))


def assert_sane(features: list[HopFeatures]) -> None:
    """Every value finite; normalised values in 0..1; raw values >= 0."""
    for f in features:
        for name in UNIT_FIELDS:
            value = getattr(f, name)
            assert math.isfinite(value) and 0.0 <= value <= 1.0, (name, value, f.t)
        for name in RAW_FIELDS:
            value = getattr(f, name)
            assert math.isfinite(value) and value >= 0.0, (name, value, f.t)
        assert f.onset_t is None or (math.isfinite(f.onset_t) and 0.0 <= f.onset_t <= f.t), (f.onset_t, f.t)
        assert math.isfinite(f.beat_activation) and 0.0 <= f.beat_activation <= 1.0, (f.beat_activation, f.t)
        assert f.chroma.shape == (12,) and np.all(np.isfinite(f.chroma)) and np.all(f.chroma >= 0), f.t


# --- framing and time ----------------------------------------------------------------------------


def test_hop_keeps_the_seed_hop_duration_at_every_rate() -> None:
    assert hop_size_for(44100) == 512
    assert hop_size_for(48000) == 557
    assert hop_size_for(22050) == 256
    for sr in (22050, 32000, 44100, 48000, 88200, 96000):
        assert abs(hop_size_for(sr) - 512 * sr / 44100) <= 0.5  # the nearest whole sample
        # aubio's FFT wants a power of two, at least one hop long.
        window = window_size_for(sr)
        assert window & (window - 1) == 0 and window >= hop_size_for(sr)
    assert window_size_for(44100) == 1024


def test_the_onset_frame_is_four_hops_at_every_rate_or_the_next_fast_fft_size() -> None:
    """46 ms at every rate, as the learned weights were trained at 44.1 kHz: 2048 there, 2240 at 48 kHz."""
    assert frame_size_for(512) == 2048 and frame_size_for(256) == 1024
    assert frame_size_for(557) == 2240
    for sr in (8000, 16000, 22050, 32000, 44100, 48000, 88200, 96000, 192000):
        hop = hop_size_for(sr)
        frame = frame_size_for(hop)
        assert 4 * hop <= frame <= 1.05 * 4 * hop, (sr, frame)
        rest = frame
        for p in (2, 3, 5, 7):
            while rest % p == 0:
                rest //= p
        assert rest == 1, (sr, frame)
        assert OnsetActivation(sr, hop).frame == frame
    with pytest.raises(ValueError, match="at least 1"):
        frame_size_for(0)


def test_time_is_the_end_of_each_hop_and_reset_starts_again() -> None:
    fx = FeatureExtractor(48000)
    features = run(fx, tone(440, 0.2, sr=48000))
    assert [f.t for f in features] == [(i + 1) * 557 / 48000 for i in range(len(features))]
    fx.reset()
    first = fx.process(np.zeros(557, dtype=np.float32))
    assert first.t == 557 / 48000
    assert first.energy == 0.0 and first.onset_strength == 0.0


# --- level, brightness, noisiness ----------------------------------------------------------------


def test_rms_equals_numpys_rms_of_the_hop() -> None:
    x = (noise(0.05, 0.5) + tone(300, 0.5)).astype(np.float32)
    fx = FeatureExtractor()
    for i, f in enumerate(run(fx, x)):
        hop = x[i * 512 : (i + 1) * 512].astype(np.float64)
        assert f.rms == pytest.approx(np.sqrt(np.mean(hop**2)), rel=1e-6)
        assert f.energy == pytest.approx(min(f.rms / 0.15, 1.0), rel=1e-6)


def test_a_2khz_sine_has_its_centroid_at_2khz_as_numpy_agrees() -> None:
    x = tone(2000, 1.0, amp=0.3).astype(np.float32)
    fx = FeatureExtractor()
    features = run(fx, x)
    last = features[-1]
    assert last.centroid_hz == pytest.approx(2000, rel=0.02)
    assert last.centroid == pytest.approx((last.centroid_hz - 100) / 5900, rel=1e-6)

    end = len(features) * 512
    mag = spectrum_ref(x, end, 1024)
    freqs = np.arange(mag.size) * SR / 1024
    assert last.centroid_hz == pytest.approx(float((freqs * mag).sum() / mag.sum()), rel=1e-4)


def test_white_noise_is_flat_and_matches_numpys_flatness_of_the_same_window() -> None:
    x = noise(0.1, 1.0).astype(np.float32)
    fx = FeatureExtractor()
    features = run(fx, x)
    for hop_index in (10, 40, len(features) - 1):
        power = spectrum_ref(x, (hop_index + 1) * 512, 1024) ** 2
        expected = np.exp(np.mean(np.log(power))) / np.mean(power)
        assert features[hop_index].flatness == pytest.approx(expected, rel=2e-3)
    # Hann-windowed white noise: exp(-Euler gamma) ~ 0.56 on average.
    mean_flatness = np.mean([f.flatness for f in features[2:]])
    assert 0.5 < mean_flatness < 0.62
    assert all(f.flatness_norm == 1.0 for f in features[2:] if f.flatness >= 0.5)


def test_a_pure_tone_has_low_flatness() -> None:
    features = run(FeatureExtractor(), tone(1000, 0.5, amp=0.5))
    assert max(f.flatness for f in features[2:]) < 0.01


@pytest.mark.parametrize(
    ("freq", "band"),
    [(80, "low"), (1000, "mid"), (8000, "high")],
)
def test_band_energy_lands_in_the_right_band(freq: float, band: str) -> None:
    amp = 0.1
    last = run(FeatureExtractor(), tone(freq, 0.5, amp=amp))[-1]
    bands = {"low": last.low, "mid": last.mid, "high": last.high}
    others = [v for k, v in bands.items() if k != band]
    # Band values are band RMS / energy_max: a sine of amplitude 0.1 has RMS 0.0707 -> 0.471.
    assert bands[band] == pytest.approx(amp / math.sqrt(2) / 0.15, rel=0.03)
    assert max(others) < 0.02 * bands[band]


def test_other_rates_give_the_same_centroid_for_the_same_tone() -> None:
    centroids = {}
    for sr in (22050, 44100, 48000):
        fx = FeatureExtractor(sr)
        centroids[sr] = run(fx, tone(2000, 0.5, amp=0.3, sr=sr))[-1].centroid_hz
    assert centroids[22050] == pytest.approx(centroids[44100], rel=0.01)
    assert centroids[48000] == pytest.approx(centroids[44100], rel=0.01)
    assert centroids[48000] == pytest.approx(2000, rel=0.02)


# --- hostile input -------------------------------------------------------------------------------


def test_silence_is_exactly_zero() -> None:
    features = run(FeatureExtractor(), np.zeros(SR))
    for f in features:
        assert (f.rms, f.energy, f.centroid_hz, f.centroid, f.flatness, f.flatness_norm) == (0, 0, 0, 0, 0, 0)
        assert (f.low, f.mid, f.high, f.flux_low, f.flux_mid, f.flux_high) == (0, 0, 0, 0, 0, 0)
        assert f.onset_strength == 0.0 and not f.onset
        assert (f.beat_activation, f.beat_low, float(f.chroma.sum())) == (0, 0, 0)


def test_silence_after_music_returns_to_zero() -> None:
    fx = FeatureExtractor(config=AnalysisConfig(auto_gain=True))
    run(fx, noise(0.1, 0.5) + tone(200, 0.5))
    last = run(fx, np.zeros(SR // 4))[-1]
    assert (last.energy, last.low, last.mid, last.high, last.onset_strength, last.flatness) == (0, 0, 0, 0, 0, 0)


@pytest.mark.parametrize(
    "signal",
    [
        pytest.param(np.full(SR, 0.5), id="dc-offset"),
        pytest.param(np.sign(tone(100, 1.0)) + 0.0, id="square-at-full-scale"),
        pytest.param(3.0 * np.sign(tone(100, 1.0)), id="beyond-full-scale"),
        pytest.param(1e30 * np.sign(tone(100, 1.0)), id="absurd-level"),
        pytest.param(np.concatenate([noise(0.1, 0.5), np.full(2048, 0.5), np.zeros(2048)]), id="noise-dc-silence"),
    ],
)
def test_hostile_signals_stay_finite_and_in_range(signal: np.ndarray) -> None:
    fx = FeatureExtractor(config=AnalysisConfig(auto_gain=True))
    features = run(fx, signal)
    assert_sane(features)
    assert features[-1].energy <= 1.0


def test_nan_and_inf_are_replaced_with_silence_counted_and_logged_once(caplog: pytest.LogCaptureFixture) -> None:
    x = noise(0.1, 1.0).astype(np.float32)
    x[1000:1100] = np.nan
    x[5000] = np.inf
    x[9000] = -np.inf
    x[20000:20512] = np.nan  # a whole hop
    fx = FeatureExtractor()
    with caplog.at_level(logging.WARNING, logger="metadj_bridge.inputs.analysis"):
        features = run(fx, x)
    assert_sane(features)
    assert fx.nonfinite_samples == 100 + 1 + 1 + 512
    assert len([r for r in caplog.records if "NaN" in r.getMessage()]) == 1
    # The state is not poisoned: a clean tone afterwards reads normally.
    last = run(fx, tone(2000, 0.3, amp=0.3))[-1]
    assert last.centroid_hz == pytest.approx(2000, rel=0.02)


def test_signalling_nan_samples_are_cleaned_without_numpy_warnings(caplog: pytest.LogCaptureFixture) -> None:
    """A damaged float file can hold signalling NaNs (exponent all ones, top mantissa bit clear): widening them makes
    numpy warn, which must not reach the terminal (warnings are errors here); the extractor's own warning says it."""
    x = noise(0.1, 0.5).astype(np.float32)
    x.view(np.uint32)[1000:1010] = 0x7F800001
    assert np.isnan(x[1000])
    fx = FeatureExtractor()
    with caplog.at_level(logging.WARNING, logger="metadj_bridge.inputs.analysis"):
        features = run(fx, x)
    assert_sane(features)
    assert fx.nonfinite_samples == 10
    assert len([r for r in caplog.records if "NaN" in r.getMessage()]) == 1


@pytest.mark.parametrize(
    ("hop", "words"),
    [
        (np.zeros(512, dtype=np.float64), "float32"),
        (np.zeros((512, 2), dtype=np.float32), "mono"),
        (np.zeros(500, dtype=np.float32), "512"),
        ([0.0] * 512, "numpy"),
    ],
)
def test_wrong_hops_are_refused_with_a_clear_error(hop: object, words: str) -> None:
    with pytest.raises(ValueError, match=words):
        FeatureExtractor().process(hop)  # type: ignore[arg-type]


def test_a_strided_float32_view_is_accepted() -> None:
    buffer = tone(2000, 0.1, amp=0.3).astype(np.float32)
    f = FeatureExtractor().process(buffer[: 2 * 512 : 2])
    assert f.rms > 0


# --- auto gain -----------------------------------------------------------------------------------


def test_auto_gain_lifts_a_quiet_steady_signal_to_a_stable_level() -> None:
    quiet = noise(0.01, 3.0)  # -40 dBFS
    fixed = run(FeatureExtractor(), quiet)
    assert np.mean([f.energy for f in fixed[-86:]]) < 0.1

    followed = run(FeatureExtractor(config=AnalysisConfig(auto_gain=True)), quiet)
    last_second = np.array([f.energy for f in followed[-86:]])
    assert last_second.mean() > 0.8
    assert last_second.std() < 0.1
    assert_sane(followed)


def test_auto_gain_forgets_a_loud_passage_over_its_time_constant() -> None:
    fx = FeatureExtractor(config=AnalysisConfig(auto_gain=True, auto_gain_seconds=1.0))
    run(fx, tone(200, 1.0, amp=0.5))
    quiet = run(fx, tone(200, 4.0, amp=0.05))
    assert quiet[0].energy == pytest.approx(0.1, abs=0.03)  # still measured against the loud passage
    assert quiet[-1].energy > 0.9  # ~4 time constants later the quiet level is the new normal


def test_auto_gain_keeps_silence_at_zero_and_does_not_amplify_hiss() -> None:
    config = AnalysisConfig(auto_gain=True)
    assert all(f.energy == 0.0 for f in run(FeatureExtractor(config=config), np.zeros(SR)))
    hiss = run(FeatureExtractor(config=config), noise(1e-4, 2.0))  # -80 dBFS
    assert max(f.energy for f in hiss) < 0.05  # divided by the floor (0.01), not by its own level


# --- onsets and the beat activation ---------------------------------------------------------------


def test_onsets_fire_on_each_click_within_20ms() -> None:
    x, clicks = click_train(0.5, 6.0)
    features = run(FeatureExtractor(), x)
    assert_sane(features)
    onsets = np.array([f.onset_t for f in features if f.onset])
    for click in clicks:
        assert np.min(np.abs(onsets - click)) < 0.020, click
    # A second, weaker detection can follow a click over a quiet floor (~70 ms after it).
    assert len(onsets) <= 1.3 * len(clicks)
    # Detection comes a fixed-ish latency after the onset time it reports.
    latencies = [f.t - f.onset_t for f in features if f.onset and f.onset_t is not None]
    assert all(0.0 < lat < 0.06 for lat in latencies)


def test_no_onsets_in_steady_noise_or_a_steady_tone() -> None:
    for signal in (noise(0.1, 4.0), tone(440, 4.0, amp=0.3) + noise(0.003, 4.0)):
        features = run(FeatureExtractor(), signal)
        assert [f.t for f in features if f.onset] == []


def test_onset_strength_peaks_on_clicks() -> None:
    x, clicks = click_train(0.5, 3.0)
    features = run(FeatureExtractor(), x)
    times = np.array([f.t for f in features])
    strength = np.array([f.onset_strength for f in features])
    for click in clicks[1:]:
        near = (times > click) & (times < click + 0.03)
        assert strength[near].max() > 0.5
    between = (times % 0.5 > 0.3) & (times % 0.5 < 0.45)
    assert np.median(strength[between]) < 0.2


def test_beat_activation_peaks_on_each_click_and_rests_between() -> None:
    x, clicks = click_train(0.5, 6.0)
    features = run(FeatureExtractor(), x)
    times = np.array([f.t for f in features])
    act = np.array([f.beat_activation for f in features])
    for click in clicks[2:]:
        # The attack reaches the middle of the four-hop window within about two hops.
        near = (times > click) & (times < click + 0.035)
        assert act[near].max() > 0.6, click
        between = (times > click + 0.1) & (times < click + 0.4)
        assert np.max(act[between]) < 0.1, click


def test_beat_low_hears_a_kick_and_not_a_hat() -> None:
    rng = np.random.default_rng(5)
    from metadj_bridge.inputs import synth

    kick = np.zeros(SR, np.float32)
    kick[SR // 2 : SR // 2 + int(0.35 * SR)] = synth.kick(SR, rng)
    hat = np.zeros(SR, np.float32)
    hat[SR // 2 : SR // 2 + int(0.045 * SR)] = synth.hat(SR, rng) * 4
    low_kick = max(f.beat_low for f in run(FeatureExtractor(), kick))
    low_hat = max(f.beat_low for f in run(FeatureExtractor(), hat))
    assert low_kick > 10 * max(low_hat, 1e-6)


def test_chroma_names_the_pitch_class_c_first() -> None:
    for freq, pitch_class in ((440.0, 9), (261.63, 0), (392.0, 7)):
        last = run(FeatureExtractor(), tone(freq, 0.5, amp=0.3))[-1]
        assert int(np.argmax(last.chroma)) == pitch_class, freq
        assert float(last.chroma.sum()) == pytest.approx(1.0)


def _chord(sr: int, seconds: float = 0.6) -> np.ndarray:
    """C major over a C2 bass, with some upper partials."""
    freqs_amps = ((65.41, 0.2), (261.63, 0.1), (329.63, 0.08), (392.0, 0.08), (1046.5, 0.03), (2637.0, 0.02))
    return sum(tone(f, seconds, amp=a, sr=sr) for f, a in freqs_amps)


def _whole_frame_harmony(x: np.ndarray, sr: int, hops: int) -> tuple[np.ndarray, np.ndarray]:
    """The chroma and bass chroma of the whole harmony frame at the full rate, ending with hop ``hops``: the Hann-
    windowed last HARMONY_FRAMES onset frames, one FFT, the compressed magnitudes given to their pitch classes."""
    hop = hop_size_for(sr)
    n = beat_activation.HARMONY_FRAMES * beat_activation.frame_size_for(hop)
    frame = np.asarray(x, np.float32)[: hops * hop][-n:]
    mag = np.abs(np.fft.rfft(frame * beat_activation._scaled_hann(n)))
    freqs = np.arange(len(mag)) * sr / n
    compressed = np.log1p(beat_activation.HARMONY_GAMMA * mag)
    chroma = compressed @ beat_activation._pitch_classes(freqs, *beat_activation.CHROMA_HZ)
    bass = compressed @ beat_activation._pitch_classes(freqs, *beat_activation.BASS_HZ, per_note=True)
    return chroma / chroma.sum(), bass / bass.sum()


@pytest.mark.parametrize("samplerate", [44100, 48000, 22050])
def test_the_harmony_frame_heard_at_a_lower_rate_reads_as_at_the_full_rate(samplerate: int) -> None:
    """The harmony frame is low-passed and thinned to every 4th sample at 44.1 and 48 kHz, every 2nd at 22.05 kHz:
    a chord's chroma and bass chroma are what the whole frame at the full rate gives, computed here directly."""
    x = _chord(samplerate)
    hops = run(FeatureExtractor(samplerate), x)
    checked = 0
    for k in range(len(hops) - 20, len(hops) + 1):
        if k % beat_activation.HARMONY_EVERY:  # the harmony frame is read every HARMONY_EVERY hops
            continue
        ours = hops[k - 1]
        chroma, bass = _whole_frame_harmony(x, samplerate, k)
        assert set(np.argsort(ours.chroma)[-3:]) == {0, 4, 7}  # C, E, G
        assert int(np.argmax(ours.bass)) == 0
        np.testing.assert_allclose(ours.chroma, chroma, atol=0.003)
        np.testing.assert_allclose(ours.bass, bass, atol=0.003)
        checked += 1
    assert checked >= 4


def test_treble_above_the_harmony_frames_rate_does_not_fold_into_the_chroma() -> None:
    """At 44.1 kHz the harmony frame keeps 11025 samples a second: a loud 9 kHz tone would fold to 2.0 kHz (B6) and
    a 7.2 kHz one to 3.8 kHz (A#7) without the low-pass before."""
    chord = _chord(SR)
    plain = run(FeatureExtractor(), chord)[-1].chroma
    for treble in (9000.0, 7200.0):
        loud = run(FeatureExtractor(), chord + tone(treble, 0.6, amp=0.5))[-1].chroma
        np.testing.assert_allclose(loud, plain, atol=0.02)


@pytest.mark.parametrize("samplerate", [44100, 48000, 22050])
def test_bass_notes_a_semitone_apart_get_their_own_pitch_class(samplerate: int) -> None:
    """G2 (98 Hz) against G#2 (103.8 Hz): 5.8 Hz apart, closer than the onset frame's bins (21.5 Hz), so the
    bar tracker's bass chroma reads a frame four times as long, each note weighed alike."""
    for freq, pitch_class in ((98.0, 7), (103.83, 8), (65.41, 0), (69.3, 1)):
        last = run(FeatureExtractor(samplerate), tone(freq, 0.5, amp=0.3, sr=samplerate))[-1]
        assert int(np.argmax(last.bass)) == pitch_class, freq
        assert float(last.bass.sum()) == pytest.approx(1.0)


# --- configuration -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("energy_max", 0.0),
        ("energy_max", -0.1),
        ("energy_max", float("nan")),
        ("centroid_max_hz", 50.0),
        ("flatness_max", 1.5),
        ("auto_gain", "yes"),
        ("auto_gain_seconds", 0.0),
        ("auto_gain_floor", 0.0),
        ("low_max_hz", 5000.0),
        ("onset_method", "nope"),
        ("onset_threshold", 0.0),
        ("onset_min_interval_s", -1.0),
    ],
)
def test_bad_config_values_are_named_in_the_error(field: str, value: object) -> None:
    with pytest.raises(ConfigError) as info:
        AnalysisConfig(**{field: value})  # type: ignore[arg-type]
    assert field in str(info.value)
    assert repr(value) in str(info.value)


def test_a_rate_below_the_sample_rate_range_is_refused() -> None:
    with pytest.raises(ConfigError, match="1000"):
        FeatureExtractor(1000)


@pytest.mark.parametrize(("samplerate", "high_min_hz", "expected"), [(8000, 4000.0, 3000.0), (22050, 12000.0, 8268.75)])
def test_a_high_band_above_what_the_source_carries_moves_down_with_a_warning(
    samplerate: int, high_min_hz: float, expected: float, caplog: pytest.LogCaptureFixture
) -> None:
    # A headset microphone at 8 kHz has nothing above 4 kHz: the high band becomes its top quarter.
    with caplog.at_level(logging.WARNING, logger="metadj_bridge.inputs.analysis"):
        fx = FeatureExtractor(samplerate, AnalysisConfig(high_min_hz=high_min_hz))
    assert fx.high_min_hz == pytest.approx(expected)
    assert f"{samplerate} Hz" in caplog.text and f"{expected:g} Hz" in caplog.text
    hop = fx.hop_size
    t = np.arange(hop * 40) / samplerate
    tone = (0.5 * np.sin(2 * np.pi * (expected + 200.0) * t)).astype(np.float32)
    last = [fx.process(tone[i : i + hop]) for i in range(0, len(tone), hop)][-1]
    assert last.high > 10 * max(last.low, last.mid)


def test_a_high_band_that_fits_is_kept_without_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="metadj_bridge.inputs.analysis"):
        fx = FeatureExtractor(16000)
    assert fx.high_min_hz == 4000.0
    assert not caplog.records


def test_config_defaults_are_the_seeds() -> None:
    config = AnalysisConfig()
    assert (config.energy_max, config.centroid_min_hz, config.centroid_max_hz, config.flatness_max) == (
        0.15,
        100.0,
        6000.0,
        0.5,
    )
    with pytest.raises(ConfigError, match="energy_max"):  # a changed copy is checked like a new one
        dataclasses.replace(config, energy_max=0.0)


# --- cost ----------------------------------------------------------------------------------------


def test_measure_cost_reports_per_hop_microseconds() -> None:
    cost = measure_cost(seconds=1.0)
    assert cost["hop_size"] == 512
    assert 0 < cost["median_us"] <= cost["p95_us"]
    assert 0 < cost["activation_median_us"] < cost["median_us"]
    assert cost["core_percent"] == pytest.approx(cost["median_us"] * 44100 / 512 / 1e4)
