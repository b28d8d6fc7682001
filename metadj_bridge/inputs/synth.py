"""DJ-style music synthesised from scratch, with its beats known exactly.

Two uses: the bundled demo track (no copyrighted audio; ``metadj-bridge run`` and ``listen`` play it by
default) and the test and benchmark fixtures that measure the beat tracking, including the cases where a
raw tracker goes wrong (design.md): off-beat bass with sidechain pumping, 170+ BPM drum-and-bass (also
half-time), broken beats, swing, 3/4, a tempo ramp, and a breakdown without a kick followed by a drop.

Pure numpy and deterministic (a seed per track). Each instrument is rendered once and added at its hits.
"""

from __future__ import annotations

import os
import wave
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

SAMPLERATE = 44100


# ------------------------------------------------------------------------------------- instruments


def _env(n: int, sr: int, decay: float) -> np.ndarray:
    return np.exp(-np.arange(n) / (decay * sr)).astype(np.float32)


def kick(sr: int, rng: np.random.Generator) -> np.ndarray:
    """A sine sweeping 160 -> 48 Hz with a fast decay and a short click: a club kick."""
    n = int(0.35 * sr)
    t = np.arange(n) / sr
    freq = 48 + 112 * np.exp(-t / 0.03)
    phase = 2 * np.pi * np.cumsum(freq) / sr
    body = np.sin(phase) * np.exp(-t / 0.22)
    click = rng.standard_normal(n) * np.exp(-t / 0.002) * 0.3
    return (body + click).astype(np.float32)


def _highpass(x: np.ndarray) -> np.ndarray:
    return np.diff(x, prepend=0.0).astype(np.float32)


def snare(sr: int, rng: np.random.Generator) -> np.ndarray:
    n = int(0.25 * sr)
    t = np.arange(n) / sr
    noise = _highpass(rng.standard_normal(n).astype(np.float32)) * np.exp(-t / 0.09)
    tone = np.sin(2 * np.pi * 190 * t) * np.exp(-t / 0.06)
    return (0.55 * noise + 0.6 * tone).astype(np.float32)


def clap(sr: int, rng: np.random.Generator) -> np.ndarray:
    n = int(0.2 * sr)
    env = np.zeros(n, np.float32)
    for offset in (0.0, 0.011, 0.022):  # a clap is a few quick bursts
        start = int(offset * sr)
        env[start:] += _env(n - start, sr, 0.03 if offset < 0.02 else 0.08)
    noise = _highpass(rng.standard_normal(n).astype(np.float32))
    return (0.45 * noise * env).astype(np.float32)


def hat(sr: int, rng: np.random.Generator, *, open_: bool = False) -> np.ndarray:
    n = int((0.16 if open_ else 0.045) * sr)
    noise = _highpass(_highpass(rng.standard_normal(n).astype(np.float32)))
    return (0.18 * noise * _env(n, sr, 0.06 if open_ else 0.012)).astype(np.float32)


def bass_note(sr: int, seconds: float, freq: float = 55.0, *, attack: float = 0.03) -> np.ndarray:
    """A warm saw-like bass; ``attack`` > 0.02 s gives the soft swell of a sidechained bass."""
    n = int(seconds * sr)
    t = np.arange(n) / sr
    wave_ = sum(np.sin(2 * np.pi * freq * k * t) / k for k in (1, 2, 3))
    env = np.minimum(1.0, t / max(attack, 1e-3)) * np.minimum(1.0, (seconds - t) / 0.02)
    return (0.5 * wave_ * env).astype(np.float32)


def riser(sr: int, seconds: float, rng: np.random.Generator) -> np.ndarray:
    """A build-up's noise sweep: from -24 dB to full level, and from dull (a 2 ms moving average) to bright."""
    n = int(seconds * sr)
    x = rng.standard_normal(n).astype(np.float32)
    width = max(1, int(0.002 * sr))
    dull = np.convolve(x, np.ones(width, np.float32) / width, "same")
    progress = np.linspace(0.0, 1.0, n, dtype=np.float32)
    gain = 0.3 * 10 ** ((-24.0 + 24.0 * progress) / 20.0)
    return (gain * ((1.0 - progress) * dull + progress * x)).astype(np.float32)


def pad(sr: int, seconds: float, freqs: Iterable[float] = (220.0, 261.63, 329.63)) -> np.ndarray:
    n = int(seconds * sr)
    t = np.arange(n) / sr
    out = sum(np.sin(2 * np.pi * f * t + i) for i, f in enumerate(freqs))
    fade = np.minimum(1.0, np.minimum(t / 0.5, (seconds - t) / 0.5))
    lfo = 0.8 + 0.2 * np.sin(2 * np.pi * 0.25 * t)
    return (0.08 * out * fade * lfo).astype(np.float32)


# ------------------------------------------------------------------------------------- patterns

#: Per style: instrument -> [(position in beats within the bar, velocity)]. Bass lengths are in beats.
PATTERNS: dict[str, dict[str, list[tuple[float, float]]]] = {
    # four on the floor, claps on 2 and 4, open hats and bass on the off-beats
    "house": {
        "kick": [(0, 1.0), (1, 1.0), (2, 1.0), (3, 1.0)],
        "clap": [(1, 0.8), (3, 0.8)],
        "open_hat": [(0.5, 0.8), (1.5, 0.8), (2.5, 0.8), (3.5, 0.8)],
        "hat": [(0.25, 0.4), (0.75, 0.4), (1.25, 0.4), (1.75, 0.4), (2.25, 0.4), (2.75, 0.4), (3.25, 0.4), (3.75, 0.4)],
        "bass": [(0.5, 0.7), (1.5, 0.7), (2.5, 0.7), (3.5, 0.7)],
    },
    # the raw tracker's trap: a loud, pumping bass between quieter kicks, open hats on the off-beats too
    "offbeat_bass": {
        "kick": [(0, 0.55), (1, 0.55), (2, 0.55), (3, 0.55)],
        "open_hat": [(0.5, 1.0), (1.5, 1.0), (2.5, 1.0), (3.5, 1.0)],
        "bass": [(0.5, 1.3), (1.5, 1.3), (2.5, 1.3), (3.5, 1.3)],
    },
    "techno": {
        "kick": [(0, 1.0), (1, 1.0), (2, 1.0), (3, 1.0)],
        "hat": [(i / 4, 0.5 if i % 2 else 0.3) for i in range(16)],
        "clap": [(1, 0.5), (3, 0.5)],
        "bass": [
            (0.25, 0.5), (0.75, 0.5), (1.25, 0.5), (1.75, 0.5), (2.25, 0.5), (2.75, 0.5), (3.25, 0.5), (3.75, 0.5),
        ],
    },
    # drum-and-bass two-step: kick on 1 and the and-of-3, snare on 2 and 4
    "dnb": {
        "kick": [(0, 1.0), (2.5, 0.9)],
        "snare": [(1, 1.0), (3, 1.0)],
        "hat": [(i / 2, 0.5) for i in range(8)],
        "bass": [(0, 0.6)],
    },
    # broken beat / breaks: kicks off the grid, snares on the backbeat
    "broken": {
        "kick": [(0, 1.0), (1.75, 0.8), (2.5, 0.9)],
        "snare": [(1, 0.9), (3, 0.9), (3.75, 0.4)],
        "hat": [(i / 4, 0.45) for i in range(16) if i not in (5, 13)],
        "bass": [(0, 0.5), (2.5, 0.5)],
    },
    # boom-bap at a hip-hop tempo
    "hiphop": {
        "kick": [(0, 1.0), (2, 0.8), (2.5, 0.7)],
        "snare": [(1, 1.0), (3, 1.0)],
        "hat": [(i / 2, 0.45) for i in range(8)],
        "bass": [(0, 0.5), (2, 0.5)],
    },
    # swung hats (triplet feel: the off-beat eighth lands two-thirds through the beat)
    "swing": {
        "kick": [(0, 1.0), (2.667, 0.8)],
        "snare": [(1, 1.0), (3, 1.0)],
        "hat": [(b + off, 0.5 if off else 0.35) for b in range(4) for off in (0.0, 0.667)],
        "bass": [(0, 0.5), (2.667, 0.4)],
    },
    # a slow ballad (60-70 BPM): kick on one and three, a soft snare on two and four, eighth-note hats that a
    # tracker can mistake for the beat (reading double tempo)
    "ballad": {
        "kick": [(0, 1.0), (2, 0.7)],
        "snare": [(1, 0.6), (3, 0.6)],
        "hat": [(i / 2, 0.4 if i % 2 else 0.3) for i in range(8)],
        "bass": [(0, 0.6), (2, 0.5)],
    },
    # half-time drum and bass at 170+: on the 172 grid the kick plays on 1 (a ghost kick on the and-of-2) and a
    # single snare on 3, which alone sound like 86 BPM with a backbeat; the sixteenth-note hats, a ride on the
    # beats and ghost snares move at 172's pace, and a sub bass holds under the bar
    "dnb_halftime": {
        "kick": [(0, 1.0), (1.75, 0.5)],
        "snare": [(2, 1.0), (0.75, 0.2), (3.25, 0.2), (3.75, 0.25)],
        "hat": [(i / 4, 0.3 if i % 2 else 0.45) for i in range(16)],
        "open_hat": [(b, 0.35) for b in range(4)],
        "bass": [(0, 0.7), (2.5, 0.4)],
    },
    # 3/4: kick on one, hats on two and three
    "waltz": {
        "kick": [(0, 1.0)],
        "clap": [(1, 0.45), (2, 0.45)],
        "hat": [(i / 2, 0.35) for i in range(6)],
        "bass": [(0, 0.6)],
    },
}


@dataclass(frozen=True)
class TrackSpec:
    name: str
    style: str
    bpm: float
    bars: int
    beats_per_bar: int = 4
    #: A tempo ramp: the BPM moves linearly from ``bpm`` to ``end_bpm`` over the track.
    end_bpm: float | None = None
    #: (first bar, number of bars) with no kick or bass: pads and hats only.
    breakdown: tuple[int, int] | None = None
    #: Bars of intro with kick and hats only.
    intro_bars: int = 0
    #: The last this many bars of the breakdown build up to the drop: a noise riser that grows louder and
    #: brighter, and a snare roll that gets louder and denser (eighths, then sixteenths in the last bar).
    buildup_bars: int = 0
    noise_db: float = -42.0
    seed: int = 1


@dataclass(frozen=True)
class Track:
    spec: TrackSpec
    samples: np.ndarray
    samplerate: int
    #: Ground truth: the time of every beat, in seconds, breakdowns included.
    beats: np.ndarray
    downbeats: np.ndarray
    #: The tempo at each beat.
    bpms: np.ndarray = field(repr=False)

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def duration(self) -> float:
        return len(self.samples) / self.samplerate


def beat_times(spec: TrackSpec) -> tuple[np.ndarray, np.ndarray]:
    """Beat times and the tempo at each beat, with a one-beat lead-in of silence."""
    n = spec.bars * spec.beats_per_bar
    end = spec.end_bpm if spec.end_bpm is not None else spec.bpm
    bpms = np.linspace(spec.bpm, end, n)
    periods = 60.0 / bpms
    start = periods[0]
    times = start + np.concatenate([[0.0], np.cumsum(periods[:-1])])
    return times, bpms


def render(spec: TrackSpec, samplerate: int = SAMPLERATE) -> Track:
    if spec.style not in PATTERNS:
        raise ValueError(f"unknown style {spec.style!r}; known: {', '.join(sorted(PATTERNS))}")
    rng = np.random.default_rng(spec.seed)
    beats, bpms = beat_times(spec)
    bpb = spec.beats_per_bar
    duration = beats[-1] + 60.0 / bpms[-1] + 1.0
    out = np.zeros(int(duration * samplerate) + samplerate, np.float32)
    sounds = {
        "kick": kick(samplerate, rng),
        "snare": snare(samplerate, rng),
        "clap": clap(samplerate, rng),
        "hat": hat(samplerate, rng),
        "open_hat": hat(samplerate, rng, open_=True),
    }
    pattern = PATTERNS[spec.style]
    side = np.ones_like(out)  # sidechain gain: ducks bass and pads after every kick
    bass_layer = np.zeros_like(out)
    pumping = spec.style in ("house", "offbeat_bass", "techno")

    def time_at(bar: int, pos: float) -> float:
        """Beat position -> seconds, interpolating between beats (ramps stay smooth)."""
        b = bar * bpb + pos
        i = min(int(np.floor(b)), len(beats) - 1)
        frac = b - i
        period = 60.0 / bpms[i]
        return float(beats[i] + frac * period)

    def add(layer: np.ndarray, sound: np.ndarray, t: float, gain: float) -> None:
        i = int(round(t * samplerate))
        j = min(len(layer), i + len(sound))
        if 0 <= i < j:
            layer[i:j] += gain * sound[: j - i]

    for bar in range(spec.bars):
        in_breakdown = spec.breakdown is not None and spec.breakdown[0] <= bar < spec.breakdown[0] + spec.breakdown[1]
        in_intro = bar < spec.intro_bars
        period = 60.0 / bpms[min(bar * bpb, len(bpms) - 1)]
        for instrument, hits in pattern.items():
            if in_breakdown and instrument in ("kick", "bass", "snare", "clap"):
                continue
            if in_intro and instrument not in ("kick", "hat", "open_hat"):
                continue
            for pos, vel in hits:
                t = time_at(bar, pos)
                if instrument == "bass":
                    length = 0.45 * period if spec.style in ("house", "offbeat_bass", "techno") else 1.5 * period
                    attack = 0.06 if spec.style == "offbeat_bass" else 0.025
                    note = bass_note(samplerate, length, 55.0 if bar % 4 < 2 else 49.0, attack=attack)
                    add(bass_layer, note, t, vel)
                else:
                    add(out, sounds[instrument], t, vel)
                if instrument == "kick" and pumping:
                    n = int(0.5 * period * samplerate)
                    i = int(round(t * samplerate))
                    j = min(len(side), i + n)
                    if i < j:
                        duck = 1.0 - 0.85 * np.exp(-np.arange(j - i) / (0.12 * period * samplerate))
                        side[i:j] = np.minimum(side[i:j], duck)
        if in_breakdown:
            add(out, pad(samplerate, bpb * period), time_at(bar, 0), 1.0)
    if spec.breakdown is not None and spec.buildup_bars > 0:
        build_rng = np.random.default_rng(spec.seed + 1)  # its own: the rest of the track is as without it
        first = spec.breakdown[0] + spec.breakdown[1] - min(spec.buildup_bars, spec.breakdown[1])
        last = spec.breakdown[0] + spec.breakdown[1]
        start, end = time_at(first, 0), time_at(last, 0)
        add(out, riser(samplerate, end - start, build_rng), start, 1.0)
        for bar in range(first, last):
            for pos in np.arange(0.0, bpb, 0.25 if bar == last - 1 else 0.5):
                t = time_at(bar, float(pos))
                add(out, sounds["snare"], t, 0.2 + 0.6 * (t - start) / (end - start))
    out += bass_layer * side
    noise = rng.standard_normal(len(out)).astype(np.float32) * (10 ** (spec.noise_db / 20))
    out += noise
    peak = float(np.max(np.abs(out))) or 1.0
    out *= 0.8 / peak  # leave headroom, like a mastered track at a sane level
    downbeats = beats[::bpb]
    return Track(spec, out.astype(np.float32), samplerate, beats, downbeats, bpms)


#: The generated set the beat tracking is measured on (tests and ``scripts/bench.py audio``).
FIXTURE_SPECS: tuple[TrackSpec, ...] = (
    TrackSpec("hiphop-84", "hiphop", 84, 14, seed=11),
    TrackSpec("swing-92", "swing", 92, 16, seed=12),
    TrackSpec("waltz-3-4-132", "waltz", 132, 24, beats_per_bar=3, seed=13),
    TrackSpec("house-124", "house", 124, 20, seed=14),
    TrackSpec("offbeat-bass-126", "offbeat_bass", 126, 20, seed=15),
    TrackSpec("broken-132", "broken", 132, 20, seed=16),
    TrackSpec("techno-138", "techno", 138, 22, seed=17),
    TrackSpec("ramp-120-128", "house", 120, 32, end_bpm=128, seed=18),
    TrackSpec("breakdown-drop-128", "house", 128, 28, breakdown=(10, 8), seed=19),
    TrackSpec("dnb-174", "dnb", 174, 28, seed=20),
    TrackSpec("dnb-halftime-172", "dnb_halftime", 172, 28, seed=21),
)

#: A second set with other tempi, seeds and combinations, never used while tuning the BeatClock: the
#: benchmark reports it beside the first, so a tracker fitted to one set shows it on the other.
HELDOUT_SPECS: tuple[TrackSpec, ...] = (
    TrackSpec("hiphop-90", "hiphop", 90, 14, seed=101),
    TrackSpec("swing-100", "swing", 100, 16, seed=102),
    TrackSpec("waltz-3-4-96", "waltz", 96, 20, beats_per_bar=3, seed=103),
    TrackSpec("house-118", "house", 118, 20, seed=104),
    TrackSpec("offbeat-bass-122", "offbeat_bass", 122, 20, seed=105),
    TrackSpec("broken-128", "broken", 128, 20, seed=106),
    TrackSpec("techno-145", "techno", 145, 24, seed=107),
    TrackSpec("ramp-126-120", "house", 126, 32, end_bpm=120, seed=108),
    TrackSpec("breakdown-offbeat-124", "offbeat_bass", 124, 28, breakdown=(8, 8), seed=109),
    TrackSpec("dnb-170", "dnb", 170, 28, seed=110),
    TrackSpec("dnb-178", "dnb", 178, 28, seed=111),
    TrackSpec("pumping-132", "offbeat_bass", 132, 20, seed=112),
    TrackSpec("dnb-halftime-176", "dnb_halftime", 176, 28, seed=115),
)

#: The bundled demo track: 124 BPM, an intro, a groove, a breakdown and a drop, about 46 s.
DEMO_SPEC = TrackSpec("metadj-demo-124", "house", 124, 24, intro_bars=4, breakdown=(12, 4), seed=124)


def crossfade(a: Track, b: Track, start: float, seconds: float) -> Track:
    """A DJ's transition: ``b`` comes in at ``start`` s of ``a`` and they crossfade (equal power) over ``seconds``.

    The beats are ``a``'s until the crossfade's midpoint and ``b``'s after it (the track a listener follows); the
    tempo at each beat likewise. The mix ends where ``b`` ends. Both at the same sample rate.
    """
    if a.samplerate != b.samplerate:
        raise ValueError(f"crossfade: sample rates differ ({a.samplerate} and {b.samplerate})")
    sr = a.samplerate
    i0, n = round(start * sr), round(seconds * sr)
    if not (0 <= i0 and i0 + n <= len(a.samples) and n <= len(b.samples)):
        raise ValueError(f"crossfade: {seconds:g} s from {start:g} s does not fit the tracks")
    out = np.zeros(i0 + len(b.samples), np.float32)
    x = np.linspace(0.0, 1.0, n, dtype=np.float32)
    out[:i0] = a.samples[:i0]
    out[i0 : i0 + n] = a.samples[i0 : i0 + n] * np.cos(0.5 * np.pi * x)
    out[i0:] += b.samples * np.concatenate([np.sin(0.5 * np.pi * x), np.ones(len(b.samples) - n, np.float32)])
    middle = start + seconds / 2
    keep_a, keep_b = a.beats < middle, b.beats + start >= middle
    beats = np.concatenate([a.beats[keep_a], b.beats[keep_b] + start])
    bpms = np.concatenate([a.bpms[keep_a], b.bpms[keep_b]])
    downbeats = np.concatenate([a.downbeats[a.downbeats < middle], b.downbeats[b.downbeats + start >= middle] + start])
    spec = TrackSpec(f"{a.name}>{b.name}", b.spec.style, b.spec.bpm, b.spec.bars, b.spec.beats_per_bar,
                     seed=b.spec.seed)
    return Track(spec, out, sr, beats, downbeats, bpms)


#: DJ transitions the beat tracking is measured on: (from, to, the crossfade's start in s, its length in s).
TRANSITIONS: tuple[tuple[TrackSpec, TrackSpec, float, float], ...] = (
    (TrackSpec("house-124", "house", 124, 24, seed=61), TrackSpec("techno-138", "techno", 138, 24, seed=62), 24.0, 8.0),
    (TrackSpec("techno-132", "techno", 132, 24, seed=63), TrackSpec("house-120", "house", 120, 24, seed=64), 24.0, 8.0),
    (TrackSpec("house-126", "house", 126, 24, seed=65), TrackSpec("offbeat-116", "offbeat_bass", 116, 24, seed=66),
     24.0, 8.0),
)


#: A second set of transitions with other styles, pairs and seeds (10-20 BPM apart, up and down), never used while
#: tuning the tempo-change detector: the benchmark reports it beside the first.
HELDOUT_TRANSITIONS: tuple[tuple[TrackSpec, TrackSpec, float, float], ...] = (
    (TrackSpec("offbeat-122", "offbeat_bass", 122, 24, seed=71), TrackSpec("techno-141", "techno", 141, 28, seed=72),
     24.0, 8.0),
    (TrackSpec("house-130", "house", 130, 24, seed=73), TrackSpec("broken-111", "broken", 111, 24, seed=74), 24.0, 8.0),
    (TrackSpec("hiphop-88", "hiphop", 88, 16, seed=75), TrackSpec("swing-100", "swing", 100, 20, seed=76), 24.0, 8.0),
    (TrackSpec("dnb-174", "dnb", 174, 28, seed=77), TrackSpec("dnb-160", "dnb", 160, 28, seed=78), 24.0, 8.0),
    (TrackSpec("techno-136", "techno", 136, 24, seed=79), TrackSpec("house-125", "house", 125, 24, seed=80), 24.0, 8.0),
    (TrackSpec("house-118", "house", 118, 24, seed=81), TrackSpec("techno-128", "techno", 128, 24, seed=82), 24.0, 8.0),
)

#: A third set to develop on while the held-out set stays unseen: (style, BPM) from and to, crossfades as above.
DEVELOPMENT_TRANSITIONS = tuple(
    (TrackSpec(f"{a}-{x}", a, x, 24, seed=91 + 2 * i), TrackSpec(f"{b}-{y}", b, y, 24, seed=92 + 2 * i), 24.0, 8.0)
    for i, (a, x, b, y) in enumerate((
        ("techno", 128, "broken", 114), ("broken", 118, "house", 132), ("swing", 96, "hiphop", 84),
        ("hiphop", 92, "house", 106), ("dnb", 165, "dnb", 178), ("house", 122, "techno", 134),
        ("offbeat_bass", 128, "house", 116), ("broken", 124, "techno", 138), ("techno", 140, "broken", 126),
        ("swing", 104, "swing", 92), ("house", 126, "swing", 110), ("hiphop", 96, "hiphop", 84))))

def transitions(samplerate: int = SAMPLERATE, *, heldout: bool = False) -> list[tuple[Track, float, float]]:
    """The ``TRANSITIONS`` (or ``HELDOUT_TRANSITIONS``) mixed: each with its crossfade's start and length."""
    return [(crossfade(render(a, samplerate), render(b, samplerate), start, seconds), start, seconds)
            for a, b, start, seconds in (HELDOUT_TRANSITIONS if heldout else TRANSITIONS)]


def fixtures(samplerate: int = SAMPLERATE, *, heldout: bool = False) -> list[Track]:
    return [render(spec, samplerate) for spec in (HELDOUT_SPECS if heldout else FIXTURE_SPECS)]


def write_wav(path: str | Path, samples: np.ndarray, samplerate: int, *, bits: int = 16) -> Path:
    """Write mono PCM (16 or 24 bit) with the standard library's ``wave``."""
    path = Path(path)
    clipped = np.clip(samples, -1.0, 1.0)
    if bits == 16:
        data = (clipped * 32767).astype("<i2").tobytes()
    elif bits == 24:
        ints = (clipped * 8388607).astype("<i4")
        data = ints.view(np.uint8).reshape(-1, 4)[:, :3].tobytes()
    else:
        raise ValueError(f"bits: {bits} is not 16 or 24")
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(bits // 8)
        w.setframerate(samplerate)
        w.writeframes(data)
    return path


def cache_dir() -> Path:
    """Where generated audio is kept: the platform's user cache folder (platformdirs)."""
    import platformdirs

    return platformdirs.user_cache_path("metadj-bridge", appauthor=False)


def demo_track_path(samplerate: int = SAMPLERATE) -> Path:
    """The bundled demo track as a WAV file, generated on first use (about a second) and then reused."""
    path = cache_dir() / f"{DEMO_SPEC.name}-{samplerate}.wav"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        write_wav(tmp, render(DEMO_SPEC, samplerate).samples, samplerate)
        os.replace(tmp, path)
    return path
