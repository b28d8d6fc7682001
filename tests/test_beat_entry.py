"""The beat that comes in after a beatless intro is heard at its own tempo (inputs/beat_entry.py).

The clock locks on a noise intro (it must lock within 3 s of sound); the generated beat that follows is the far
end. Without the entry a hip-hop beat after faded-in noise was read at twice its tempo for 16 s.
"""

from __future__ import annotations

import numpy as np
import pytest

from metadj_bridge.inputs import synth
from metadj_bridge.inputs.analysis import FeatureExtractor
from metadj_bridge.inputs.beat_entry import BeatEntry
from metadj_bridge.inputs.evaluation import f_measure
from metadj_bridge.inputs.tempo import BeatClock, BeatEvent, TempoConfig

INTRO_S = 8.0


def _noise(kind: str) -> np.ndarray:
    sr = synth.SAMPLERATE
    n = int(INTRO_S * sr)
    rng = np.random.default_rng(5)
    t = np.arange(n) / sr
    if kind == "white":
        x = 0.1 * rng.standard_normal(n)
    elif kind == "pad":  # a chord with a singer's vibrato: its activation repeats 5.5 times a second
        vibrato = 1 + 0.003 * np.sin(2 * np.pi * 5.5 * t)
        x = 0.08 * sum(np.sin(2 * np.pi * f * t * vibrato) for f in (220.0, 277.2, 329.6))
    else:  # pink: the spectrum falls 3 dB an octave
        spectrum = np.fft.rfft(rng.standard_normal(n))
        spectrum[1:] /= np.sqrt(np.fft.rfftfreq(n, 1 / sr)[1:])
        spectrum[0] = 0.0
        pink = np.fft.irfft(spectrum, n)
        x = 0.3 * pink / np.abs(pink).max()
    fade = (np.arange(n) / n) ** 2
    return (fade * x).astype(np.float32)


def _play(x: np.ndarray, bpm: float, events: list[BeatEvent] | None = None) -> tuple[BeatClock, np.ndarray, np.ndarray]:
    fx = FeatureExtractor(synth.SAMPLERATE)
    clock = BeatClock(fx.hop_size / synth.SAMPLERATE, TempoConfig())
    times, right = [], []
    for i in range(0, len(x) - fx.hop_size, fx.hop_size):
        f = fx.process(x[i : i + fx.hop_size])
        beats = clock.process(f)
        if events is not None:
            events += beats
        if clock.locked:
            times.append(f.t)
            right.append(abs(clock.bpm / bpm - 1.0) <= 0.04)
    return clock, np.array(times), np.array(right)


@pytest.mark.parametrize("kind", ["white", "pink", "pad"])
def test_a_hip_hop_beat_after_a_beatless_intro_is_read_at_its_own_tempo_within_5_s(kind: str) -> None:
    """8 s of noise or a vibrato pad faded in, then a generated 92 BPM hip-hop beat: the clock locked on the intro
    at 150-190 BPM, and the beat fits twice its tempo. Its rise in rhythm (the noise) or in the onsets' sharpness
    (the pad, whose activation repeats too) is the beat coming in: the learned tempo score decides afresh, and from
    5 s after the entry the BPM is the beat's, and the bar is counted afresh from the new beat."""
    track = synth.render(synth.TrackSpec("hiphop-92", "hiphop", 92, 16, seed=3))
    events: list[BeatEvent] = []
    clock, times, right = _play(np.concatenate([_noise(kind), track.samples]), 92.0, events)
    assert times[0] < INTRO_S  # the noise was locked on
    assert not right[times < INTRO_S].all()  # ... at another tempo
    wrong_after = times[(times >= INTRO_S) & ~right]
    settled = wrong_after.max() - INTRO_S if len(wrong_after) else 0.0
    assert settled <= 5.0, settled
    assert clock._entry.calls >= 1
    # The bars counted in the intro were not the music's: from 4 s after the entry the ones are the beat's.
    ones = np.array([e.t for e in events if e.beat_in_bar == 0 and e.t >= INTRO_S + 4.0])
    reference = track.downbeats + INTRO_S
    assert f_measure(reference[reference >= INTRO_S + 4.0], ones, skip=0.0).f_measure >= 0.9


@pytest.mark.parametrize("name", ["hiphop-84", "swing-92", "breakdown-drop-128", "dnb-halftime-172", "pumping-132"])
def test_steady_music_and_its_breakdowns_are_no_entry(name: str) -> None:
    """A track heard from its start, its breakdown and drop: no tempo decided afresh."""
    spec = next(s for s in (*synth.FIXTURE_SPECS, *synth.HELDOUT_SPECS) if s.name == name)
    track = synth.render(spec)
    clock, times, right = _play(track.samples, track.bpms[0])
    assert clock._entry.calls == 0
    assert clock.tempo_changes == 0
    assert right[times >= 8.0].mean() >= 0.9


def _pulses(seconds: float, bpm: float, fps: float) -> np.ndarray:
    a = np.zeros(int(seconds * fps))
    a[np.round(np.arange(0.0, len(a) - 1, 60.0 * fps / bpm)).astype(int)] = 1.0
    return a


def test_the_rise_is_heard_after_seconds_of_noise_and_never_on_a_steady_beat() -> None:
    """The entry itself, on an activation made by hand: 10 s of noise (random onsets, no period) and then pulses at
    92 BPM are heard as the beat coming in within 3 s; pulses from the start, for a minute, never are. Its memory of
    the earlier windows stays bounded however long the show runs."""
    fps = 44100 / 512
    taus = np.arange(27, 87)
    bands = np.zeros(81)
    noise = np.random.default_rng(1).uniform(0.0, 0.4, int(10 * fps))
    entry = BeatEntry(fps, taus)
    heard = [i for i, a in enumerate(np.concatenate([noise, _pulses(10.0, 92.0, fps)])) if entry.push(a, bands, True)]
    assert heard and len(noise) < heard[0] <= len(noise) + 3 * fps, heard[:1]
    steady = BeatEntry(fps, taus)
    assert not any(steady.push(a, bands, True) for a in _pulses(60.0, 92.0, fps))
    long_show = BeatEntry(fps, taus)
    for a in np.random.default_rng(2).uniform(0.0, 0.4, int(600 * fps)):
        long_show.push(a, bands, True)
    assert long_show._quiet_n == long_show._quiet.shape[1] and len(long_show._recent) <= 3 * fps / 16 + 1


def test_the_quick_median_is_numpys() -> None:
    """The beat's entry reads its medians by partition: the same value as ``np.median`` at every length, odd or even."""
    from metadj_bridge.inputs.beat_entry import _median

    rng = np.random.default_rng(3)
    for n in range(1, 80):
        x = rng.random(n)
        assert _median(x) == float(np.median(x)), n
