#!/usr/bin/env python3
"""Benchmarks for metadj-bridge.

    python scripts/bench.py scope [--seconds 240 | --quick] [--only WORD] [--seed N]
    python scripts/bench.py align [--seconds 50] [--delay-ms 150]
    python scripts/bench.py audio [--live-seconds 20] [--real DIR] [--real-genres G ...] [--real-limit N]
    python scripts/bench.py control [--messages 10000]
    python scripts/bench.py mapping [--mappings 100] [--seconds 60]

``scope``: flow control in every show, the seed's every-tick 30 Hz sender beside the flow-controlled
ParameterSender in one run, each scenario against its own emulator process (see scripts/bench_scope.py:
a 60 Hz sweep, the default show through ``run``, resets on every beat, a wrong chunk size both ways, a 56 fps
pipeline, isolated knob moves against a send-on-change sender). Messages dropped, the final value's delay
and the lag from a change to the chunk that applies it, in chunks, from the emulator's own log.

``align``: bar-quantised changes at the virtual camera with 0.6 s chunks and a 150 ms added round trip, the
measured ``lookahead_ms: auto`` beside a fixed 0 (scripts/bench_align.py): offset of each change's first camera
frame from its bar, and the bridge's delay estimate beside the true delay.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import logging
import math
import random
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import bench_align  # noqa: E402 - the align section: scripts/bench_align.py
import bench_crossfades  # noqa: E402 - crossfades between real excerpts: scripts/bench_crossfades.py
import bench_realmusic  # noqa: E402 - real music in the audio section: scripts/bench_realmusic.py
import bench_scope  # noqa: E402 - the scope section: scripts/bench_scope.py


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    k = (len(ordered) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


# ----------------------------------------------------------------------------------------------- audio


#: How many times bench_audio_cpu plays its tracks.
CPU_PASSES = 3


def bench_audio_cpu() -> None:
    """CPU per hop of everything the audio worker does: features, onsets and the beat activation, the BeatClock
    (beat HMM, readout, bar), the section and build-up trackers and the quiet-input watch (issue 15's budget: 150 us
    per hop). The tracks are played CPU_PASSES times over and the whole set's mean is also given per pass, with their
    median: this machine's speed drifts by 10-30% over minutes, and the passes show how steady it was during the run."""
    import numpy as np

    from metadj_bridge.inputs import synth
    from metadj_bridge.inputs.analysis import FeatureExtractor
    from metadj_bridge.inputs.buildup import BuildupTracker
    from metadj_bridge.inputs.level_watch import LevelWatch
    from metadj_bridge.inputs.sections import SectionTracker
    from metadj_bridge.inputs.tempo import BeatClock

    tracks = synth.fixtures()[:4]
    feature_us, clock_us, sections_us, total_us = [], [], [], []
    pass_means = []
    for _ in range(CPU_PASSES):
        first = len(total_us)
        for track in tracks:
            fx = FeatureExtractor(track.samplerate)
            hop_s = fx.hop_size / track.samplerate
            clock, sections, buildup = BeatClock(hop_s), SectionTracker(hop_s), BuildupTracker(hop_s)
            level = LevelWatch(hop_s, 0.15)
            hop = fx.hop_size
            x = track.samples
            for i in range(0, len(x) - hop, hop):
                block = x[i : i + hop]
                t0 = time.perf_counter()
                f = fx.process(block)
                level.hop(f.t, f.rms)
                t1 = time.perf_counter()
                clock.process(f)
                t2 = time.perf_counter()
                sections.process(f.t, f.flux_low, f.rms, clock.bpm if clock.locked else 0.0)
                buildup.process(f.t, f.rms, f.centroid_hz, f.onset, sections.section < 0.5)
                t3 = time.perf_counter()
                feature_us.append((t1 - t0) * 1e6)
                clock_us.append((t2 - t1) * 1e6)
                sections_us.append((t3 - t2) * 1e6)
                total_us.append((t3 - t0) * 1e6)
        pass_means.append(float(np.mean(total_us[first:])))
    hop_rate = 44100 / 512
    print(f"CPU per 512-sample hop at 44.1 kHz ({len(total_us)} hops of generated music):")
    for name, values in (("features+activation+level", feature_us), ("BeatClock", clock_us),
                         ("sections+build-ups", sections_us), ("whole set", total_us)):
        arr = np.array(values)
        print(
            f"  {name:<28} median {np.median(arr):6.1f} us  mean {arr.mean():6.1f} us  "
            f"p95 {np.percentile(arr, 95):6.1f} us  = {np.median(arr) * hop_rate / 1e4:.2f}% of one core (median), "
            f"{arr.mean() * hop_rate / 1e4:.2f}% (mean)"
        )
    print(f"  whole set, mean of each pass {', '.join(f'{m:.1f}' for m in pass_means)} us: "
          f"median {np.median(pass_means):.1f} us")


def bench_audio_sections() -> None:
    """Breakdowns, build-ups and drops on the generated tracks, through the analysis path the bridge runs
    (features, the BeatClock, the section and build-up trackers): the delay from the truth, the events where there
    should be none, and the trackers' own CPU per hop."""
    import numpy as np

    from metadj_bridge.inputs import synth
    from metadj_bridge.inputs.analysis import FeatureExtractor
    from metadj_bridge.inputs.buildup import BuildupTracker
    from metadj_bridge.inputs.sections import SectionTracker
    from metadj_bridge.inputs.tempo import BeatClock

    specs = [synth.DEMO_SPEC, *(t.spec for t in synth.fixtures() if t.spec.name != synth.DEMO_SPEC.name),
             synth.TrackSpec("house-buildup-4", "house", 128, 28, breakdown=(10, 8), buildup_bars=4, seed=19),
             synth.TrackSpec("techno-buildup-2", "techno", 132, 28, breakdown=(8, 8), buildup_bars=2, seed=23)]
    cost_us: list[float] = []
    print("Breakdowns, build-ups and drops (generated music, the bridge's analysis path):")
    for spec in specs:
        track = synth.render(spec)
        fx = FeatureExtractor(track.samplerate)
        clock = BeatClock(fx.hop_size / track.samplerate)
        tracker = SectionTracker(fx.hop_size / track.samplerate)
        buildup = BuildupTracker(fx.hop_size / track.samplerate)
        hop, events = fx.hop_size, []
        for i in range(0, len(track.samples) - hop, hop):
            f = fx.process(track.samples[i : i + hop])
            clock.process(f)
            t0 = time.perf_counter()
            events += tracker.process(f.t, f.flux_low, f.rms, clock.bpm if clock.locked else 0.0)
            events += buildup.process(f.t, f.rms, f.centroid_hz, f.onset, tracker.section < 0.5)
            cost_us.append((time.perf_counter() - t0) * 1e6)
        kinds = [e.kind for e in events]
        if spec.breakdown is None:
            print(f"  {spec.name:<24} no breakdown: events {kinds or 'none'}")
            continue
        first, bars = spec.breakdown
        stop, back = float(track.downbeats[first]), float(track.downbeats[first + bars])
        drop = next((e.t for e in events if e.kind == "drop"), None)
        gone = next((e.t for e in events if e.kind == "breakdown"), None)
        build = next((e.t for e in events if e.kind == "buildup"), None)
        built = ""
        if spec.buildup_bars:
            rise = float(track.downbeats[first + bars - spec.buildup_bars])
            built = f", build-up {'missed' if build is None else f'{build - rise:.2f} s after it began'}"
        print(f"  {spec.name:<24} events {kinds}; breakdown "
              f"{'missed' if gone is None else f'{gone - stop:.2f} s after the kick stopped'}{built}, drop "
              f"{'missed' if drop is None else f'{(drop - back) * 1000:+.0f} ms from the kick back'}")
    arr = np.array(cost_us)
    print(f"  section and build-up trackers CPU per hop: median {np.median(arr):.1f} us, "
          f"p99 {np.percentile(arr, 99):.1f} us")


def bench_audio_accuracy() -> None:
    """Beat F-measure (+-70 ms, after 5 s), BPM error (after 8 s), first beat and its tempo, downbeat F: the
    BeatClock on the generated tracks (issue 15's targets: F 0.96, the first beat within 3 s at the right tempo)."""
    import numpy as np

    from metadj_bridge.inputs import synth
    from metadj_bridge.inputs.analysis import FeatureExtractor
    from metadj_bridge.inputs.evaluation import bpm_error, f_measure
    from metadj_bridge.inputs.tempo import BeatClock, TempoConfig

    for title, heldout in (("tuning set", False), ("held-out set", True)):
        print(f"\nBeat tracking, {title} (F-measure +-70 ms after 5 s; BPM error after 8 s, median/max):")
        print(f"  {'track':<24} {'F':>6} {'BPM err':>12} {'first beat':>11} {'BPM@first':>10} {'true':>6} {'DB F':>6}")
        fs, firsts, first_ok, dbs = [], [], [], []
        for track in synth.fixtures(heldout=heldout):
            fx = FeatureExtractor(track.samplerate)
            hop = fx.hop_size
            clock = BeatClock(hop / track.samplerate, TempoConfig(beats_per_bar=track.spec.beats_per_bar))
            events = []
            t_clock: list[float] = []
            b_clock: list[float] = []
            x = track.samples
            for i in range(0, len(x) - hop, hop):
                f = fx.process(x[i : i + hop])
                events.extend(clock.process(f))
                if clock.locked:
                    t_clock.append(f.t)
                    b_clock.append(clock.bpm)
            cf = f_measure(track.beats, np.array([e.t for e in events])).f_measure
            db = f_measure(track.downbeats, np.array([e.t for e in events if e.beat_in_bar == 0])).f_measure
            cm, cx = bpm_error(np.array(t_clock), np.array(b_clock), track.beats, track.bpms)
            first = events[0] if events else None
            after = first.t - track.beats[0] if first else float("nan")
            true = float(track.bpms[min(np.searchsorted(track.beats, first.t - 0.1), len(track.bpms) - 1)]) if first \
                else float("nan")
            fs.append(cf)
            dbs.append(db)
            firsts.append(after)
            first_ok.append(bool(first and abs(first.bpm / true - 1) <= 0.04))
            print(f"  {track.name:<24} {cf:6.3f} {cm:5.2f}/{cx:<6.2f} {after:9.2f} s "
                  f"{first.bpm if first else float('nan'):10.1f} {true:6.1f} {db:6.3f}")
        print(f"  {'mean':<24} {np.mean(fs):6.3f}   (min F {np.min(fs):.3f}); first beat {np.mean(firsts):.2f} s after "
              f"the music starts (max {np.max(firsts):.2f}); tempo right at the first beat "
              f"{sum(first_ok)}/{len(first_ok)}; downbeat F {np.mean(dbs):.3f}")


def bench_audio_metronomes() -> None:
    """Slow metronomes (60-70 BPM: clicks, beeps, wood blocks and kicks, begun at once or after 0.5 s of silence, at
    44.1 and 48 kHz): is the tempo right at the first beat (every other beat at double tempo fits the clicks too),
    and does the first beat come within 3 s of the first click? (issue 15: 60-190 BPM, half/double from the music)"""
    import numpy as np

    from metadj_bridge.inputs.analysis import FeatureExtractor
    from metadj_bridge.inputs.tempo import BeatClock, TempoConfig

    def sound(kind: str, sr: int) -> np.ndarray:
        t = np.arange(int(0.15 * sr)) / sr
        if kind == "click":  # a 20 ms noise burst
            n = int(0.02 * sr)
            return np.random.default_rng(1).standard_normal(n) * np.exp(-np.arange(n) / (0.004 * sr)) * 0.5
        if kind == "beep":  # 30 ms of 1 kHz
            return 0.4 * np.sin(2 * np.pi * 1000.0 * t[: int(0.03 * sr)])
        if kind == "wood":  # a wood block: 800 Hz, 10 ms decay
            return 0.6 * np.sin(2 * np.pi * 800.0 * t) * np.exp(-t / 0.01)
        return 0.8 * np.sin(2 * np.pi * (50 + 100 * np.exp(-t / 0.03)) * t) * np.exp(-t / 0.06)  # a kick

    tempi = (60.0, 61.0, 63.0, 66.0, 70.0)
    print(f"\nSlow metronomes ({', '.join(f'{b:g}' for b in tempi)} BPM; the tempo at the first beat, or its BPM when "
          "wrong; * the first beat more than 3 s after the first click):")
    right = in_time = total = 0
    for sr in (44100, 48000):
        for kind in ("click", "beep", "wood", "kick"):
            for lead in (0.0, 0.5):
                burst = sound(kind, sr).astype(np.float32)
                row = []
                for bpm in tempi:
                    x = np.zeros(int(16.0 * sr), np.float32)
                    for t0 in np.arange(lead, 15.7, 60.0 / bpm):
                        i = int(t0 * sr)
                        x[i : i + len(burst)] += burst[: len(x) - i]
                    fx = FeatureExtractor(sr)
                    hop = fx.hop_size
                    clock = BeatClock(hop / sr, TempoConfig())
                    beats = (e for i in range(0, len(x) - hop, hop) for e in clock.process(fx.process(x[i : i + hop])))
                    first = next(beats, None)
                    ok = first is not None and abs(first.bpm / bpm - 1.0) <= 0.04
                    late = first is None or first.t - lead > 3.0
                    right += ok
                    in_time += not late
                    total += 1
                    shown = "right" if ok else (f"{first.bpm:.1f}" if first else "none")
                    row.append(f"{shown}{'*' if late else ''}")
                print(f"  {sr} Hz {kind:<5} after {lead:.1f} s   " + "  ".join(f"{r:>7}" for r in row))
    print(f"  the tempo right at the first beat on {right}/{total}; the first beat within 3 s of the first click on "
          f"{in_time}/{total}")


def bench_audio_transitions() -> None:
    """DJ transitions (``synth.TRANSITIONS``, ``synth.DEVELOPMENT_TRANSITIONS`` and ``synth.HELDOUT_TRANSITIONS``
    never tuned on: 8 s equal-power crossfades between tracks 10-20 BPM apart): how long after the crossfade's midpoint
    the BeatClock's BPM holds within 2% of the new track's (issue 15's target: 2 s), the beat F-measure from 2 s
    after the midpoint on, and the downbeat F-measure from 4 s after it (the new track's bars)."""
    import numpy as np

    from metadj_bridge.inputs import synth
    from metadj_bridge.inputs.analysis import FeatureExtractor
    from metadj_bridge.inputs.evaluation import f_measure
    from metadj_bridge.inputs.tempo import BeatClock

    sets = (("tuning set", synth.TRANSITIONS), ("development set", synth.DEVELOPMENT_TRANSITIONS),
            ("held-out set", synth.HELDOUT_TRANSITIONS))
    for title, specs in sets:
        print(f"\nDJ transitions, {title} (8 s crossfades; the new tempo held within 2% for 2 s, counted from the "
              "midpoint):")
        delays, fs, bars = [], [], []
        for a, b, start, seconds in specs:
            track = synth.crossfade(synth.render(a), synth.render(b), start, seconds)
            fx = FeatureExtractor(track.samplerate)
            clock = BeatClock(fx.hop_size / track.samplerate)
            hop, beats, ones, bpms = fx.hop_size, [], [], []
            for i in range(0, len(track.samples) - hop, hop):
                f = fx.process(track.samples[i : i + hop])
                for b in clock.process(f):
                    beats.append(b.t)
                    if b.beat_in_bar == 0:
                        ones.append(b.t)
                bpms.append((f.t, clock.bpm))
            middle, target = start + seconds / 2, track.spec.bpm
            times = np.array([t for t, _ in bpms])
            ok = np.array([abs(b - target) / target < 0.02 for _, b in bpms])
            follows = next((t for t, good in zip(times, ok, strict=True) if t >= middle
                            and ok[(times >= t) & (times <= t + 2.0)].all()), None)
            ref = track.beats[track.beats >= middle + 2.0]
            after = f_measure(ref, np.array([b for b in beats if b >= middle + 2.0]), skip=0.0).f_measure
            ref_ones = track.downbeats[track.downbeats >= middle + 4.0]
            bar = f_measure(ref_ones, np.array([t for t in ones if t >= middle + 4.0]), skip=0.0).f_measure
            delays.append(float("inf") if follows is None else follows - middle)
            fs.append(after)
            bars.append(bar)
            print(f"  {track.name:<24} BPM follows "
                  f"{'never' if follows is None else f'{follows - middle:.1f} s after the midpoint'}; "
                  f"F from midpoint + 2 s {after:.3f}, downbeat F from + 4 s {bar:.3f}")
        print(f"  {'all':<24} BPM follows within 2 s on {sum(d <= 2.0 for d in delays)}/{len(delays)} (median "
              f"{np.median(delays):.1f} s, max {max(delays):.1f} s); F from midpoint + 2 s {np.mean(fs):.3f}, "
              f"downbeat F from + 4 s {np.mean(bars):.3f}")


def bench_audio_intros() -> None:
    """Beatless intros: 8 s of noise, pink noise, swelling wind (noise under a slow swell) or a vibrato pad, faded in
    or not, then a generated house, techno or hip-hop beat. The clock must lock within 3 s of sound and so finds a
    "tempo" in the intro; the figures are how long after the beat comes in its tempo wins (the BPM within 4% from
    then on), the beat F-measure from the beat's entry on and the downbeat F-measure from 4 s after it."""
    import numpy as np

    from metadj_bridge.inputs import synth
    from metadj_bridge.inputs.analysis import FeatureExtractor
    from metadj_bridge.inputs.evaluation import f_measure
    from metadj_bridge.inputs.tempo import BeatClock

    sr, intro_s = synth.SAMPLERATE, 8.0
    t = np.arange(int(intro_s * sr)) / sr
    rng = np.random.default_rng(5)
    white = rng.standard_normal(len(t))
    spectrum = np.fft.rfft(rng.standard_normal(len(t)))
    spectrum[1:] /= np.sqrt(np.fft.rfftfreq(len(t), 1 / sr)[1:])
    spectrum[0] = 0.0
    pink = np.fft.irfft(spectrum, len(t))
    intros = {
        "noise": 0.1 * white,
        "pink noise": 0.3 * pink / np.abs(pink).max(),
        "wind": (0.05 + 0.05 * np.sin(2 * np.pi * 0.4 * t)) * rng.standard_normal(len(t)),
        "vibrato pad": 0.08 * sum(np.sin(2 * np.pi * f * t * (1 + 0.003 * np.sin(2 * np.pi * 5.5 * t)))
                                  for f in (220.0, 277.2, 329.6, 440.0)),
    }
    print(f"\nBeatless intros ({intro_s:g} s of each of {', '.join(intros)}, faded in or not, then a generated beat):")
    wins_all, fs_all, dbs_all = [], [], []
    for style, bpm in (("house", 124), ("techno", 132), ("hiphop", 92)):
        track = synth.render(synth.TrackSpec(f"{style}-{bpm}", style, bpm, 16, seed=3))
        wins, fs, dbs = [], [], []
        downbeats = track.downbeats[track.downbeats >= 4.0] + intro_s
        for intro in intros.values():
            for fade in ((t / intro_s) ** 2, 1.0):
                x = np.concatenate([(fade * intro).astype(np.float32), track.samples])
                fx = FeatureExtractor(sr)
                clock = BeatClock(fx.hop_size / sr)
                hop, beats, ones, reads = fx.hop_size, [], [], []
                for i in range(0, len(x) - hop, hop):
                    f = fx.process(x[i : i + hop])
                    for b in clock.process(f):
                        beats.append(b.t)
                        if b.beat_in_bar == 0 and b.t >= intro_s + 4.0:
                            ones.append(b.t)
                    if f.t >= intro_s:
                        reads.append((f.t, abs(clock.bpm / bpm - 1.0) <= 0.04))
                wrong = [t_ for t_, good in reads if not good]
                # inf: still wrong at the track's end
                wins.append(math.inf if not reads[-1][1] else wrong[-1] - intro_s if wrong else 0.0)
                fs.append(f_measure(track.beats + intro_s, np.array([b for b in beats if b >= intro_s]),
                                    skip=0.0).f_measure)
                dbs.append(f_measure(downbeats, np.array(ones), skip=0.0).f_measure)
        wins_all += wins
        fs_all += fs
        dbs_all += dbs
        print(f"  {track.name:<12} tempo wins after {_seconds(float(np.median(wins)))} at the median (max "
              f"{_seconds(max(wins))}, within 4 s on {sum(w <= 4.0 for w in wins)}/{len(wins)}); beat F from the "
              f"entry {np.mean(fs):.3f}, downbeat F from 4 s after it {np.mean(dbs):.3f}")
    print(f"  {'all':<12} tempo wins after {_seconds(float(np.median(wins_all)))} at the median (within 4 s on "
          f"{sum(w <= 4.0 for w in wins_all)}/{len(wins_all)}); beat F from the entry {np.mean(fs_all):.3f}, "
          f"downbeat F from 4 s after it {np.mean(dbs_all):.3f}")


def bench_audio_seams() -> None:
    """The seams of a set, generated: an 8 s crossfade into a track without kick or bass (everything under 250 Hz
    filtered out: its hats, snares, claps and pads are left), and a 3 s pause before a next song without them. Its
    low band never comes in, which alone looks like a breakdown, where the grid holds the old tempo. The figures:
    how long after the crossfade's end or the song's start the BPM reads the new tempo (within 2% from then on, held
    3 s at least), and beat and downbeat F from 6 s after."""
    import numpy as np

    from metadj_bridge.inputs import synth
    from metadj_bridge.inputs.analysis import FeatureExtractor
    from metadj_bridge.inputs.evaluation import f_measure
    from metadj_bridge.inputs.tempo import BeatClock

    def without_bass(track: synth.Track) -> np.ndarray:
        spectrum = np.fft.rfft(track.samples.astype(np.float64))
        spectrum[np.fft.rfftfreq(len(track.samples), 1.0 / track.samplerate) < 250.0] = 0.0
        return np.fft.irfft(spectrum, len(track.samples)).astype(np.float32)

    def play(x: np.ndarray, bpm: float, start: float, beats: np.ndarray,
             downbeats: np.ndarray) -> tuple[float, float, float]:
        fx = FeatureExtractor(synth.SAMPLERATE)
        clock, hop = BeatClock(fx.hop_size / synth.SAMPLERATE), fx.hop_size
        found, ones, times, right = [], [], [], []
        for i in range(0, len(x) - hop, hop):
            f = fx.process(x[i : i + hop])
            for b in clock.process(f):
                found.append(b.t)
                if b.beat_in_bar == 0:
                    ones.append(b.t)
            if f.t >= start:
                times.append(f.t)
                right.append(abs(clock.bpm / bpm - 1.0) <= 0.02)
        wrong = [t for t, good in zip(times, right, strict=True) if not good]
        follows = math.inf if wrong and wrong[-1] > times[-1] - 3.0 else (wrong[-1] - start if wrong else 0.0)
        est = np.array([t for t in found if t >= start + 6.0])
        bar = f_measure(downbeats[downbeats >= start + 6.0], np.array([t for t in ones if t >= start + 6.0]), skip=0.0)
        return follows, f_measure(beats[beats >= start + 6.0], est, skip=0.0).f_measure, bar.f_measure

    print("\nSeams of a set (generated; the new track without kick or bass):")
    cases = []
    for (a, x), (b, y) in ((("house", 124), ("house", 106)), (("offbeat_bass", 126), ("hiphop", 108)),
                           (("techno", 132), ("swing", 112)), (("house", 118), ("broken", 102))):
        old = synth.render(synth.TrackSpec(f"{a}-{x}", a, x, 24, seed=401))
        new = synth.render(synth.TrackSpec(f"{b}-{y}", b, y, 24, seed=402))
        mix = synth.crossfade(old, dataclasses.replace(new, samples=without_bass(new)), 24.0, 8.0)
        cases.append((f"crossfade {old.name} > {new.name}", play(mix.samples, y, 32.0, mix.beats, mix.downbeats)))
    old = synth.render(synth.TrackSpec("house-124", "house", 124, 12, seed=403))
    for b, y, late in (("hiphop", 90, 0.0), ("house", 124, 0.25), ("techno", 150, 0.0), ("swing", 100, 0.0)):
        new = synth.render(synth.TrackSpec(f"{b}-{y}", b, y, 16, seed=404))
        pause = np.zeros(round((3.0 + late * 60.0 / y) * synth.SAMPLERATE), np.float32)
        start = (len(old.samples) + len(pause)) / synth.SAMPLERATE
        what = f"pause > {new.name}" + (f" {late:g} beat late" if late else "")
        cases.append((what, play(np.concatenate([old.samples, pause, without_bass(new)]), y, start, new.beats + start,
                                 new.downbeats + start)))
    for what, (follows, f, bar) in cases:
        print(f"  {what:<42} BPM follows after {_seconds(follows)}; beat F from 6 s on {f:.3f}, downbeat F {bar:.3f}")
    print(f"  {'all':<42} followed on {sum(not math.isinf(c[1][0]) for c in cases)}/{len(cases)}; mean beat F "
          f"{np.mean([c[1][1] for c in cases]):.3f}, downbeat F {np.mean([c[1][2] for c in cases]):.3f}")


def bench_audio_long_breakdowns() -> None:
    """Breakdowns as long as a DJ's (generated: 16 or 32 bars of pads and hats, some ending in a build-up): beat and
    downbeat F in the breakdown and in the 15 s after the drop, and how long the clock heard a breakdown (the flywheel
    holding the beat). The generated tracks of bench_audio_accuracy have 8-bar ones."""
    import numpy as np

    from metadj_bridge.inputs import synth
    from metadj_bridge.inputs.analysis import FeatureExtractor
    from metadj_bridge.inputs.evaluation import f_measure
    from metadj_bridge.inputs.tempo import BeatClock

    print("\nLong breakdowns (generated; F in the breakdown, in the 15 s after the drop):")
    for style, bpm, bars, buildup in (("house", 124, 32, 0), ("techno", 132, 32, 4), ("house", 124, 16, 4),
                                      ("offbeat_bass", 126, 32, 8)):
        track = synth.render(synth.TrackSpec(f"{style}-{bpm}", style, bpm, bars + 24, breakdown=(8, bars),
                                             buildup_bars=buildup, seed=5))
        fx = FeatureExtractor(track.samplerate)
        clock, hop = BeatClock(fx.hop_size / track.samplerate), fx.hop_size
        events, held = [], 0
        for i in range(0, len(track.samples) - hop, hop):
            events += clock.process(fx.process(track.samples[i : i + hop]))
            held += clock.breakdown
        beats = np.array([e.t for e in events])
        ones = np.array([e.t for e in events if e.beat_in_bar == 0])
        bar_s = 4 * 60.0 / bpm
        start, drop = 8 * bar_s, (8 + bars) * bar_s

        def f(truth: np.ndarray, est: np.ndarray, lo: float, hi: float) -> float:
            return f_measure(truth[(truth >= lo) & (truth < hi)], est[(est >= lo) & (est < hi)], skip=0.0).f_measure

        rise, held_s = (f", build-up {buildup} bars" if buildup else ""), held * hop / track.samplerate
        after = drop + 15.0
        print(f"  {track.name:<18} {bars} bars ({drop - start:4.1f} s){rise:<19} held {held_s:4.1f} s; beat F in it "
              f"{f(track.beats, beats, start, drop):.3f}, after the drop {f(track.beats, beats, drop, after):.3f}; "
              f"downbeat F {f(track.downbeats, ones, start, drop):.3f}, {f(track.downbeats, ones, drop, after):.3f}")


def _seconds(value: float) -> str:
    """A delay for the benchmark's lines: "never" when it is infinite."""
    return "never" if math.isinf(value) else f"{value:4.1f} s"


async def bench_audio_live(seconds: float) -> None:
    """Onset to trigger on the live path: a JACK client plays clicks, PortAudio captures, the analyzer runs in
    its thread and the trigger reaches the event loop. Latency = loop time of the trigger - the moment the
    click's first sample happened (its place in the 256-frame period that carried it, so the period wait a
    real interface adds is included)."""
    import shutil

    import numpy as np

    if shutil.which("jackd") is None:
        print("\nlive path: skipped, jackd is not installed (apt-get install jackd2)")
        return
    from metadj_bridge.inputs.analysis_config import hop_size_for
    from metadj_bridge.inputs.analyzer import AudioAnalyzer, AudioUpdate
    from metadj_bridge.inputs.live_audio import LiveInputSource
    from tests.jackrig import JackPlayer, JackServer, portaudio_on

    sr = 44100
    interval = 0.25
    n = int(seconds * sr)
    clicks = np.zeros(n, np.float32)
    rng = np.random.default_rng(3)
    starts = []
    # Clicks at irregular sub-hop offsets so the hop grid does not flatter the figure.
    t = 0.5
    while t < seconds - 0.5:
        i = int(t * sr) + int(rng.integers(0, 512))
        burst = rng.standard_normal(256).astype(np.float32) * np.exp(-np.arange(256) / 40.0).astype(np.float32)
        clicks[i : i + 256] += 0.8 * burst
        starts.append(i)
        t += interval
    received: list[tuple[float, float]] = []  # (loop time, onset audio time)

    def on_update(update: AudioUpdate) -> None:
        now = time.monotonic()
        for onset in update.onsets:
            received.append((now, onset.t))

    with JackServer() as server, portaudio_on(server):
        source = LiveInputSource("system", hop_size=hop_size_for(sr), samplerate=sr)
        analyzer = AudioAnalyzer(source, on_update=on_update)
        await analyzer.start()
        with JackPlayer(server) as player:
            player.connect_to_captures()
            await asyncio.sleep(0.5)
            player.play(clicks)
            await asyncio.to_thread(player.wait, seconds + 10)
            await asyncio.sleep(0.5)
            # A capture period is handed over when it is complete, so a sample happened that many frames
            # before its cycle ran: count from there, as a real interface would (the period wait included).
            played = [player.played_time(i) - player._cycle_of(i).frames / sr for i in starts]
        await analyzer.aclose()
        counters = f"{len(received)} onset triggers, overflows {source.overflows}, dropped samples {source.dropped}"
    # Match each played click to the first trigger that arrived after it (within 150 ms).
    arrivals = sorted(r[0] for r in received)
    latencies = []
    j = 0
    for p in played:
        while j < len(arrivals) and arrivals[j] < p:
            j += 1
        if j < len(arrivals) and arrivals[j] - p < 0.15:
            latencies.append(arrivals[j] - p)
            j += 1
    hop_ms = 512 / sr * 1000
    print("\nLive path (JACK dummy driver, 256-frame period -> PortAudio -> analysis thread -> event loop):")
    if latencies:
        arr = np.array(latencies) * 1000
        print(
            f"  onset to trigger: median {np.median(arr):.1f} ms, p95 {np.percentile(arr, 95):.1f} ms "
            f"({len(arr)} of {len(played)} clicks; target <= one hop + 3 ms = {hop_ms + 3:.1f} ms)"
        )
    else:
        print(f"  no onset triggers matched the {len(played)} clicks")
    print(f"  {counters}")


# ----------------------------------------------------------------------------------------------- control

_SENDER = r"""
import os, socket, sys, time
kind, target, rate, seconds = sys.argv[1], sys.argv[2], float(sys.argv[3]), float(sys.argv[4])
n = int(rate * seconds)
if kind == "osc":
    from pythonosc.osc_message_builder import OscMessageBuilder
    host, port = target.rsplit(":", 1)
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    def send(i):
        b = OscMessageBuilder("/composition/layers/1/video/opacity"); b.add_arg((i % 1000) / 1000.0)
        sock.sendto(b.build().dgram, (host, int(port)))
else:
    import mido
    backend = mido.Backend("mido.backends.rtmidi/UNIX_JACK")
    port = backend.open_output("ctrl", virtual=True, client_name=target)
    print("port", flush=True)
    sys.stdin.readline()  # the receiver has connected
    def send(i):
        port.send(mido.Message("control_change", channel=0, control=74, value=i % 128))
print("ready", flush=True)
start = time.monotonic()
for i in range(n):
    wait = start + i / rate - time.monotonic()
    if wait > 0:
        time.sleep(wait)
    send(i)
"""


def _cpu_percent_while(sender_cmd: list[str], seconds: float, proc: object = None) -> float:
    """This process's CPU (all threads) while a separate process sends at a steady rate, % of one core."""
    import subprocess

    if proc is None:
        proc = subprocess.Popen(sender_cmd, stdout=subprocess.PIPE, text=True)
    assert isinstance(proc, subprocess.Popen) and proc.stdout is not None
    proc.stdout.readline()  # "ready"
    time.sleep(0.5)
    c0, w0 = time.process_time(), time.monotonic()
    time.sleep(seconds)
    c1, w1 = time.process_time(), time.monotonic()
    proc.wait(timeout=seconds + 30)
    return 100 * (c1 - c0) / (w1 - w0)


#: CPU figures are the median of this many rounds, ours and the floor alternated.
CPU_ROUNDS = 5


def _rounds(values: list[float]) -> str:
    return " / ".join(f"{v:.1f}" for v in values)


def _stats(values_s: list[float]) -> str:
    import numpy as np

    arr = np.array(values_s) * 1000
    return (f"median {np.median(arr):.3f} ms  p95 {np.percentile(arr, 95):.3f} ms  max {arr.max():.3f} ms  "
            f"(n={len(arr)})")


def bench_midi_clock() -> None:
    """BPM steadiness from a jittery MIDI clock: our estimator against an EMA of 0.15 (Scope's)."""
    import numpy as np

    from metadj_bridge.inputs.midi_clock import PPQN, MidiClockTempo, ema_bpm

    print("\nMIDI clock steadiness (24 ppqn, uniform +-1 ms jitter, 60 s, std of the BPM after 4 s):")
    print(f"  {'BPM':>5} {'ours std':>9} {'ours mean err':>14} {'EMA 0.15 std':>13} {'EMA mean err':>13}")
    rng = np.random.default_rng(5)
    for bpm in (120.0, 128.0, 174.0):
        period = 60.0 / bpm / 24
        ticks = np.arange(int(60 / period)) * period + rng.uniform(-0.001, 0.001, int(60 / period))
        clock = MidiClockTempo()
        ours: list[float] = []
        for t in ticks:
            clock.tick(float(t))
            bpm_now = clock.bpm
            if t > 4.0 and bpm_now is not None and bpm_now > 0:
                ours.append(bpm_now)
        ema = np.array(ema_bpm(np.diff(ticks), alpha=0.15))
        ema = ema[ticks[1:] > 4.0]
        print(
            f"  {bpm:5.0f} {np.std(ours):9.4f} {abs(np.mean(ours) - bpm):14.4f} {np.std(ema):13.4f} "
            f"{abs(np.mean(ema) - bpm):13.4f}"
        )
    print("  the same clock with one tick in 200 lost on the way (a dropped USB or network packet):")
    for bpm in (120.0, 128.0, 174.0):
        period = 60.0 / bpm / 24
        ticks = np.arange(int(60 / period)) * period + rng.uniform(-0.001, 0.001, int(60 / period))
        clock = MidiClockTempo()
        clock.start(0.0)
        errors = []
        for i, t in enumerate(ticks):
            if i % 200 == 199:
                continue
            clock.tick(float(t))
            if t > 4.0 and clock.bpm is not None:
                errors.append(abs(clock.bpm - bpm))
        beat = clock.beat()
        behind = (len(ticks) - 1) - (beat * PPQN if beat is not None else 0.0)
        print(f"  {bpm:5.0f} BPM: largest error {max(errors):.3f} BPM, {clock.lost_ticks} ticks counted as lost, "
              f"the beat {behind:.0f} ticks behind the sender's at the end")
    # A sudden tempo change passes a whole tick period late on its way: it must be followed, not counted as lost.
    follow, miscounted, cases = [], 0, 0
    for bpm in range(70, 181, 10):
        for ratio in (0.5, 0.6, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95, 0.97, 1.03, 1.05, 1.1, 1.2, 1.33, 1.5, 2.0):
            for jitter in (0.0005, 0.001, 0.002):
                cases += 1
                clock = MidiClockTempo()
                t, after = 1.0, None
                for i in range(500):
                    now = bpm if i < 250 else bpm * ratio
                    t += 60.0 / (now * PPQN)
                    clock.tick(t + rng.uniform(-jitter, jitter))
                    if i >= 250 and after is None and clock.bpm is not None and abs(clock.bpm - now) <= 0.5:
                        after = i - 250
                miscounted += clock.lost_ticks > 0
                follow.append(after if after is not None else 250)
    print(f"  sudden tempo changes ({cases}: 70-180 BPM times 0.5-2, +-0.5-2 ms jitter): within 0.5 BPM after "
          f"{np.median(follow):.0f} ticks at the median (at most {max(follow)}), ticks counted as lost in {miscounted}")


async def bench_osc_control(messages: int) -> None:
    import socket as socket_mod
    import sys as sys_mod
    import threading

    from pythonosc.osc_message_builder import OscMessageBuilder

    from metadj_bridge.inputs.osc import OscInput
    from metadj_bridge.signals import Signal, SignalBoard

    sent: dict[int, float] = {}
    ours: list[float] = []
    bare: list[float] = []
    done = asyncio.Event()

    def on_signal(signal: object) -> None:
        seq = int(round(signal.value * 1e6))
        if seq in sent:
            ours.append(time.monotonic() - sent[seq])
        if len(ours) >= messages:
            done.set()

    class Bare(asyncio.DatagramProtocol):
        def datagram_received(self, data: bytes, addr: object) -> None:
            seq = int.from_bytes(data[-8:], "big")
            if seq in bare_sent:
                bare.append(time.monotonic() - bare_sent[seq])

    class Timing(SignalBoard):
        """The bridge's store, timing each value as it is stored."""

        def set(self, signal: Signal) -> None:
            super().set(signal)
            on_signal(signal)

    bare_sent: dict[int, float] = {}
    osc = OscInput("127.0.0.1", 0, sink=Timing())
    await osc.start()
    loop = asyncio.get_running_loop()
    transport, _ = await loop.create_datagram_endpoint(Bare, local_addr=("127.0.0.1", 0))
    bare_port = transport.get_extra_info("sockname")[1]

    def sender() -> None:
        with socket_mod.socket(socket_mod.AF_INET, socket_mod.SOCK_DGRAM) as sock:
            for i in range(messages):
                b = OscMessageBuilder("/composition/layers/1/video/opacity")
                b.add_arg(i / 1e6, "d")
                dgram = b.build().dgram
                sent[i] = time.monotonic()
                sock.sendto(dgram, ("127.0.0.1", osc.port))
                bare_sent[i] = time.monotonic()
                sock.sendto(i.to_bytes(8, "big"), ("127.0.0.1", bare_port))
                time.sleep(0.0005)  # 2,000 messages/s each way: no queue builds up

    thread = threading.Thread(target=sender, name="osc-bench-sender")
    thread.start()
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(done.wait(), messages / 500 + 30)
    await asyncio.to_thread(thread.join)
    await asyncio.sleep(0.2)
    print("\nOSC in -> signal on the event loop (sender thread in this process, loopback UDP):")
    print(f"  ours (parse, decode, dispatch): {_stats(ours)}")
    print(f"  bare UDP protocol (transport):  {_stats(bare)}")
    import numpy as np

    print(f"  beyond the transport: {1000 * (np.median(ours) - np.median(bare)):.3f} ms median (target <= 1 ms)")
    cmd = [sys_mod.executable, "-c", _SENDER, "osc", f"127.0.0.1:{osc.port}", "1000", "6"]
    # The floor on this machine: a receiver that does nothing with the packets, same sender, same run.
    floor_cmd = [sys_mod.executable, "-c", _SENDER, "osc", f"127.0.0.1:{bare_port}", "1000", "6"]
    cpus, floors = [], []
    for _ in range(CPU_ROUNDS):  # alternated, so that a noisy neighbour hits both alike
        cpus.append(await asyncio.to_thread(_cpu_percent_while, cmd, 5.0))
        floors.append(await asyncio.to_thread(_cpu_percent_while, floor_cmd, 5.0))
    cpu, floor = statistics.median(cpus), statistics.median(floors)
    transport.close()
    await osc.aclose()
    idle_c0, idle_w0 = time.process_time(), time.monotonic()
    await asyncio.sleep(2.0)
    idle = 100 * (time.process_time() - idle_c0) / (time.monotonic() - idle_w0)
    print(f"  CPU at 1,000 messages/s (sender in another process): {cpu:.1f}% of one core, median of {CPU_ROUNDS} "
          f"({_rounds(cpus)}); idle {idle:.1f}% (target <= 5%)")
    print(f"  the same 1,000 packets/s into a bare UDP protocol on the same loop (the floor here): {floor:.1f}% "
          f"({_rounds(floors)})")


async def bench_midi_control(messages: int) -> None:
    import os
    import shutil
    import sys as sys_mod
    import threading

    if shutil.which("jackd") is None:
        print("\nMIDI: skipped, jackd is not installed (apt-get install jackd2)")
        return
    import mido

    from metadj_bridge.inputs.midi import MidiInput
    from metadj_bridge.signals import SignalBoard
    from tests.jackrig import JackServer

    backend_name = "mido.backends.rtmidi/UNIX_JACK"
    with JackServer() as server:
        old = os.environ.get("JACK_DEFAULT_SERVER")
        os.environ["JACK_DEFAULT_SERVER"] = server.name
        try:
            backend = mido.Backend(backend_name)
            ours: list[float] = []
            raw: list[float] = []
            count = {"n": 0}

            send_time: dict[tuple[int, int], float] = {}

            def on_event(event: object) -> None:
                # Note-ons are never merged (continuous CCs are, latest wins), so each one is timed: the note
                # number and velocity together name the message.
                name = getattr(event, "name", "")
                data = getattr(event, "data", None)
                if name.startswith("midi.note.1.") and data:
                    key = (int(name.rsplit(".", 1)[1]), int(round(data["velocity"] * 127)))
                    if key in send_time:
                        ours.append(time.monotonic() - send_time.pop(key))
                        count["n"] += 1

            raw_sent: list[float] = []
            # Controller stand-ins: virtual outputs that our input (and a raw rtmidi input) open by name.
            ctrl = backend.open_output("ctrl", virtual=True, client_name="benchctrl")
            raw_ctrl = backend.open_output("ctrl", virtual=True, client_name="benchraw")
            board = SignalBoard()  # the bridge's store; note-ons are triggers, timed as they arrive on it
            board.on_trigger(on_event)
            midi = MidiInput(["re:^benchctrl:"], sink=board, backend=backend_name)
            await midi.start()
            import rtmidi

            # The transport's own delivery: a bare python-rtmidi client whose callback only takes the time.
            raw_port = rtmidi.MidiIn(rtapi=rtmidi.API_UNIX_JACK, name="benchrawin")
            raw_port.open_port(raw_port.get_ports().index("benchraw:ctrl"))
            raw_port.set_callback(lambda event, data=None: raw.append(time.monotonic() - raw_sent[len(raw)]))
            await asyncio.sleep(0.5)

            def sender() -> None:
                for i in range(messages):
                    note, velocity = i % 128, 1 + (i // 128) % 127
                    send_time[(note, velocity)] = time.monotonic()
                    ctrl.send(mido.Message("note_on", channel=0, note=note, velocity=velocity))
                    raw_sent.append(time.monotonic())
                    raw_ctrl.send(mido.Message("note_on", channel=0, note=note, velocity=velocity))
                    time.sleep(0.0005)

            thread = threading.Thread(target=sender, name="midi-bench-sender")
            thread.start()
            await asyncio.to_thread(thread.join)
            await asyncio.sleep(0.3)
            print("\nMIDI in -> trigger on the event loop "
                  "(note-ons through JACK MIDI, dummy driver, 256-frame period):")
            print(f"  ours (rtmidi thread -> decode -> loop): {_stats(ours)}")
            print(f"  bare rtmidi callback (transport):     {_stats(raw)}")
            import numpy as np

            print(f"  beyond the transport: {1000 * (np.median(ours) - np.median(raw)):.3f} ms median (target <= 1 ms);"
                  f" {len(ours)} of {messages} note-ons timed")
            raw_port.close_port()
            raw_port.delete()
            await midi.aclose()
            ctrl.close()
            raw_ctrl.close()
            import subprocess

            async def ours_cpu() -> float:
                cmd = [sys_mod.executable, "-c", _SENDER, "midi", "benchcpu", "1000", "6"]
                proc = await asyncio.to_thread(subprocess.Popen, cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                               text=True)
                assert proc.stdout is not None and proc.stdin is not None
                proc.stdout.readline()  # "port": its virtual output exists
                quiet = MidiInput(["re:^benchcpu:"], sink=SignalBoard(), backend=backend_name)
                await quiet.start()
                proc.stdin.write("go\n")
                proc.stdin.flush()
                cpu = await asyncio.to_thread(_cpu_percent_while, cmd, 5.0, proc)
                await quiet.aclose()
                return cpu

            async def floor_cpu() -> float:
                # rtmidi's JACK client with a callback that does nothing, same sender.
                floor_cmd = [sys_mod.executable, "-c", _SENDER, "midi", "benchfloor", "1000", "6"]
                floor_proc = await asyncio.to_thread(subprocess.Popen, floor_cmd, stdin=subprocess.PIPE,
                                                     stdout=subprocess.PIPE, text=True)
                assert floor_proc.stdout is not None and floor_proc.stdin is not None
                floor_proc.stdout.readline()
                bare_in = rtmidi.MidiIn(rtapi=rtmidi.API_UNIX_JACK, name="benchfloorin")
                bare_in.open_port(bare_in.get_ports().index("benchfloor:ctrl"))
                bare_in.set_callback(lambda event, data=None: None)
                floor_proc.stdin.write("go\n")
                floor_proc.stdin.flush()
                floor = await asyncio.to_thread(_cpu_percent_while, floor_cmd, 5.0, floor_proc)
                bare_in.close_port()
                bare_in.delete()
                return floor

            cpus, floors = [], []
            for _ in range(CPU_ROUNDS):
                cpus.append(await ours_cpu())
                floors.append(await floor_cpu())
            cpu, floor = statistics.median(cpus), statistics.median(floors)
            print(f"  CPU at 1,000 messages/s (sender in another process): {cpu:.1f}% of one core, "
                  f"median of {CPU_ROUNDS} ({_rounds(cpus)}) (target <= 5%)")
            print(f"  the same into a bare python-rtmidi callback that does nothing (the floor here): {floor:.1f}% "
                  f"({_rounds(floors)})")
        finally:
            if old is None:
                os.environ.pop("JACK_DEFAULT_SERVER", None)
            else:
                os.environ["JACK_DEFAULT_SERVER"] = old


def _worst_packets() -> dict[str, Callable[[int], bytes]]:
    """Hostile OSC packets (issue 12) and a normal one; each kind makes its ``i``-th packet."""
    import struct

    def pad(raw: bytes) -> bytes:
        return raw + b"\x00" * (4 - len(raw) % 4)

    def msg(address: str, tags: str, payload: bytes = b"") -> bytes:
        return pad(address.encode()) + pad(b"," + tags.encode()) + payload

    def bundle(*elements: bytes) -> bytes:
        return b"#bundle\x00" + struct.pack(">Q", 1) + b"".join(struct.pack(">i", len(e)) + e for e in elements)

    opacity = "/composition/layers/1/video/opacity"
    normal = msg(opacity, "f", struct.pack(">f", 0.5))
    deep = normal
    for _ in range(3000):
        deep = bundle(deep)
    kinds: dict[str, Callable[[int], bytes]] = {
        "normal: one float": lambda i: normal,
        "60,000 unknown type tags": lambda i: msg("/x", "x" * 60_000),
        "60,000 float tags, no data": lambda i: msg("/x", "f" * 60_000),
        "30,000-deep arrays": lambda i: msg("/x", "[" * 30_000 + "]" * 30_000),
        "bundles 3,000 deep": lambda i: deep,
        "bundle of 1,000 messages": lambda i: bundle(*[normal] * 1000),
        "bundle of 63 new addresses": lambda i: bundle(
            *[msg(f"/composition/layers/{i}/clips/{j}/transport/position", "f", struct.pack(">f", 0.5))
              for j in range(63)]),
        "64 KB blob": lambda i: msg("/x", "b", struct.pack(">i", 65_000) + b"\x00" * 65_000),
        "1,024 float args": lambda i: msg("/x", "f" * 1024, b"\x00" * 4096),
        "2,048 args in a bundle": lambda i: bundle(msg("/a", "T" * 1024), msg("/b", "T" * 1024)),
    }
    return kinds


def _python_osc_cost(packet: bytes, rounds: int = 3) -> float:
    """Seconds python-osc's parser (what the bridge used before) takes for ``packet``, its log lines switched off."""
    from pythonosc.osc_bundle import OscBundle
    from pythonosc.osc_message import OscMessage

    best = float("inf")
    logging.disable(logging.CRITICAL)  # it logs a WARNING per unknown type tag; writing them is not counted here
    try:
        for _ in range(rounds):
            t0 = time.perf_counter()
            with contextlib.suppress(Exception):
                OscBundle(packet) if OscBundle.dgram_is_bundle(packet) else OscMessage(packet)
            best = min(best, time.perf_counter() - t0)
    finally:
        logging.disable(logging.NOTSET)
    return best


async def bench_osc_worst_packet(per_kind: int = 200) -> None:
    """Event-loop cost of one OSC packet, hostile or normal, sent over real UDP into the bridge's OSC input."""
    import socket as socket_mod

    import numpy as np

    from metadj_bridge.inputs.osc import OscInput
    from metadj_bridge.run.tempo_hub import TempoHub
    from metadj_bridge.signals import SignalBoard

    costs: list[float] = []

    class Timed(OscInput):
        """The bridge's OSC input, timing the synchronous work of each datagram on the event loop."""

        def datagram_received(self, data: bytes, addr: tuple[object, ...]) -> None:
            t0 = time.perf_counter()
            super().datagram_received(data, addr)  # type: ignore[arg-type]
            costs.append(time.perf_counter() - t0)

    kinds = _worst_packets()
    before = {name: _python_osc_cost(make(0)) for name, make in kinds.items()}  # while nothing else runs
    board = SignalBoard()
    TempoHub(board)
    osc = Timed("127.0.0.1", 0, sink=board)
    await osc.start()
    lag = 0.0

    async def heartbeat() -> None:
        nonlocal lag
        while True:
            t0 = time.monotonic()
            await asyncio.sleep(0.005)
            lag = max(lag, time.monotonic() - t0 - 0.005)

    beat = asyncio.get_running_loop().create_task(heartbeat(), name="bench-heartbeat")
    print("\nOSC worst packet: event-loop cost of one packet over real UDP (parse, decode, dispatch into the board;")
    print(f"  {per_kind} packets of each kind, 2 ms apart; python-osc = its parser alone on the same packet, before):")
    print(f"  {'packet':30s} {'bytes':>6s} {'median ms':>10s} {'max ms':>8s} {'python-osc ms':>14s}  outcome")
    with socket_mod.socket(socket_mod.AF_INET, socket_mod.SOCK_DGRAM) as sock:
        for name, make in kinds.items():
            packets = [make(i) for i in range(per_kind)]
            await asyncio.sleep(0.02)
            costs.clear()
            counted = (osc.counters.malformed, osc.counters.dispatched)
            lag = 0.0
            for packet in packets:
                sock.sendto(packet, ("127.0.0.1", osc.port))
                await asyncio.sleep(0.002)
            await asyncio.sleep(0.05)
            malformed = osc.counters.malformed - counted[0]
            outcome = f"refused {malformed}" if malformed else f"{osc.counters.dispatched - counted[1]} messages in"
            arr = np.array(costs) * 1000
            print(f"  {name:30s} {len(packets[0]):6d} {np.median(arr):10.3f} {arr.max():8.3f} "
                  f"{before[name] * 1000:14.1f}  {outcome} (n={len(arr)}, loop lag max {lag * 1000:.1f} ms)")
    beat.cancel()
    await osc.aclose()
    print(f"  board after the run: {len(board.values)} values kept, {board.dropped} dropped (cap {board.max_values})")


async def bench_control(args: argparse.Namespace) -> None:
    bench_midi_clock()
    await bench_osc_worst_packet()
    await bench_osc_control(args.messages)
    await bench_midi_control(args.messages)


async def bench_audio(args: argparse.Namespace) -> None:
    bench_audio_cpu()
    bench_audio_sections()
    bench_audio_accuracy()
    bench_audio_metronomes()
    bench_audio_transitions()
    bench_audio_intros()
    bench_audio_seams()
    bench_audio_long_breakdowns()
    real = (args.real or bench_realmusic.default_out()).expanduser()
    if bench_realmusic.bench_real_music(real, args.real_genres, args.real_limit, args.madmom_python,
                                        per_track=not args.real_summary_only):
        bench_crossfades.bench_crossfades(real, per_track=not args.real_summary_only)
    await bench_audio_live(args.live_seconds)


def _mapping_bench_profile(count: int) -> object:
    """A show profile with ``count`` mappings in a realistic mix (smoothing, curves, ranges, LFOs, envelopes,
    thresholds, quantised triggers, several combine rules) spread over the runtime parameters."""
    from metadj_bridge.profile import model as m

    themes = tuple(
        m.Theme(f"theme{i}", tuple(m.PromptSpec(f"prompt {i}.{j}") for j in range(4)), blend=i % 2 == 1,
                parameters={"noise_scale": 0.4 + 0.1 * i}, pad=("note", 1, 36 + i))
        for i in range(4)
    )
    params = ("noise_scale", "kv_cache_attention_bias", "vace_context_scale", "denoising_steps")
    combines = ("max", "sum", "last")
    mappings = []
    for i in range(count):
        kind = i % 10
        target = m.Target("parameter", params[i % len(params)])
        combine = combines[i % 3]
        if kind in (0, 1, 2):  # audio feature -> range, curve, smoothing
            source: object = m.SignalSource(("audio.energy", "audio.low", "audio.centroid")[kind])
            transforms: tuple = (m.Range(0, 1, 0.2, 0.9), m.Curve("exponential", 3), m.Smooth(0.05, 0.4))
        elif kind == 3:  # a knob with a deadzone and smoothing
            source = m.SignalSource(f"midi.cc.1.{i % 128}")
            transforms = (m.Deadzone(0.02), m.Smooth(0.1, 0.1), m.Scale(0.5, 0.1))
        elif kind == 4:  # LFO
            source = m.Lfo(("sine", "triangle", "saw", "square", "random")[i % 5], 4.0)
            transforms = (m.Range(0, 1, 0.4, 0.6),)
        elif kind == 5:  # envelope on the beat
            source = m.Envelope("audio.beat", 0.0, 1.0, beats=True)
            transforms = (m.Curve("s", 4),)
        elif kind == 6:  # threshold -> quantised pulse
            source = m.SignalSource("audio.high")
            transforms = (m.Threshold(0.7, 0.3), m.Quantize("beat", 80))
            target = m.Target("action", "pulse_noise")
        elif kind == 7:  # a trigger quantised to the bar
            source = m.TriggerSource("audio.onset")
            transforms = (m.Quantize("bar", 120),)
            target = m.Target("prompt", "next")
        elif kind == 8:  # crossfade / weights
            source = m.SignalSource(f"midi.cc.1.{(i + 40) % 128}")
            transforms = (m.Smooth(0.05, 0.05), m.Steps(8) if i % 20 == 8 else m.Clamp(0, 1))
            target = m.Target("prompt_mix") if i % 20 == 8 else m.Target("prompt_weight", argument=(1,))
        else:  # fader with invert and range
            source = m.SignalSource(f"midi.cc.2.{i % 128}")
            transforms = (m.Invert(), m.Range(0, 1, 0.1, 0.8))
        mappings.append(m.Mapping(f"m{i}", source, transforms, target, combine))  # type: ignore[arg-type]
    return m.ShowProfile(path="bench.yaml", name="bench", themes=themes, mappings=tuple(mappings),
                         cycle=m.CycleSettings(every_bars=8, prompt_every_bars=2))


def bench_mapping(args: argparse.Namespace) -> None:
    """MappingEngine.step() at 86 Hz on a generated profile, with changing inputs."""
    import math

    from metadj_bridge.mapping.engine import MappingEngine
    from metadj_bridge.signals import TempoState, Trigger

    profile = _mapping_bench_profile(args.mappings)
    engine = MappingEngine(profile, seed=1)  # type: ignore[arg-type]
    rate = 86.0
    rng = random.Random(2)
    knobs = [f"midi.cc.{ch}.{cc}" for ch in (1, 2) for cc in range(128)]
    times: list[float] = []
    steps = int(args.seconds * rate)
    for i in range(steps):
        now = i / rate
        beat = now * 128 / 60
        tempo = TempoState(128.0, beat, beat % 1, beat % 4, 4, "link", True)
        signals = {
            "audio.energy": 0.5 + 0.5 * math.sin(now * 3),
            "audio.low": rng.random(),
            "audio.centroid": 0.5 + 0.4 * math.sin(now),
            "audio.high": 0.5 + 0.5 * math.sin(now * 7),
        }
        for name in rng.sample(knobs, 3):
            signals[name] = rng.random()
        triggers = []
        if int(beat) != int(beat - 128 / 60 / rate):
            triggers.append(Trigger("audio.beat", now))
        if rng.random() < 0.05:
            triggers.append(Trigger("audio.onset", now, {"velocity": rng.random()}))
        t0 = time.perf_counter()
        engine.step(signals, triggers, now, tempo)
        times.append(time.perf_counter() - t0)
    us = sorted(t * 1e6 for t in times[int(rate):])  # the first second warms up
    median = statistics.median(us)
    p95 = percentile(us, 0.95)
    print(f"MappingEngine.step(): {args.mappings} mappings, {len(profile.themes)} themes, {steps} steps at 86 Hz")  # type: ignore[attr-defined]
    print(f"  median {median:.1f} us, p95 {p95:.1f} us (target <= 200 us median)")
    print(f"  one core at 86 Hz: {median * rate / 1e4:.2f}% (median), {p95 * rate / 1e4:.2f}% (p95)")


async def bench_hot_reload(saves: int = 10) -> None:
    """Save a profile, time until the watcher hands the new version over (target: within 1 s)."""
    import tempfile
    from pathlib import Path

    from metadj_bridge.profile import ProfileWatcher

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "show.yaml"
        text = "themes:\n  neon:\n    prompts: ['{}']\nmappings:\n  e: {{source: audio.energy, target: noise_scale}}\n"
        path.write_text(text.format("start"), encoding="utf-8")
        arrived: asyncio.Queue[tuple[float, str]] = asyncio.Queue()
        watcher = ProfileWatcher(
            str(path), on_change=lambda p: arrived.put_nowait((time.monotonic(), p.themes[0].prompts[0].text)),
            on_error=lambda exc: None, interval=0.25,
        )
        await watcher.start()
        delays = []
        try:
            for i in range(saves):
                await asyncio.sleep(0.3 + 0.05 * (i % 5))  # saves at different points of the poll cycle
                saved = time.monotonic()
                await asyncio.to_thread(path.write_text, text.format(f"edit {i}"), "utf-8")
                t, prompt = await asyncio.wait_for(arrived.get(), 5.0)
                assert prompt == f"edit {i}"
                delays.append(1000 * (t - saved))
        finally:
            await watcher.aclose()
    print(f"Hot reload (ProfileWatcher, 0.25 s poll): save -> new profile handed over, {saves} saves")
    print(f"  median {statistics.median(delays):.0f} ms, max {max(delays):.0f} ms (target <= 1000 ms)")


#: Frame sizes the video benchmark measures, and frames per size.
VIDEO_SIZES = ((1024, 576), (1920, 1080))
VIDEO_FRAMES = 90


def _video_clip(width: int, height: int, count: int) -> tuple[list[object], list[float]]:
    """The emulator's pictures at this size, H264-encoded and decoded again; the decoded frames and decode times."""
    import av

    from metadj_bridge.emulator.render import FrameRenderer, FrameSpec

    renderer = FrameRenderer()
    encoder = av.CodecContext.create("libx264", "w")
    encoder.width, encoder.height, encoder.pix_fmt = width, height, "yuv420p"
    encoder.options = {"preset": "ultrafast", "tune": "zerolatency"}
    decoder = av.CodecContext.create("h264", "r")
    packets = []
    for n in range(count):
        spec = FrameSpec(width, height, (("neon rain over a dancefloor", 1.0),), n, n // 12, noise_scale=0.2)
        frame = av.VideoFrame.from_ndarray(renderer.render(spec), format="rgb24").reformat(format="yuv420p")
        frame.pts = n
        packets += encoder.encode(frame)
    packets += encoder.encode(None)
    decoded: list[object] = []
    times: list[float] = []
    for packet in packets:
        t0 = time.perf_counter()
        out = decoder.decode(packet)
        times.append(time.perf_counter() - t0)
        decoded += out
    return decoded, times


def _video_per_frame(width: int, height: int, frames: list[object]) -> tuple[list[float], list[float]]:
    """Convert (what the clock does with a new frame) into a ``width`` x ``height`` camera, and send, frame by frame."""
    from metadj_bridge.video.convert import FrameFitter, i420_frame
    from metadj_bridge.video.sink import ShownFrame
    from metadj_bridge.video.vcam import VirtualCameraSink

    fitter = FrameFitter(width, height)
    sink = VirtualCameraSink(device=f"bench-{width}-{len(frames)}-{id(frames)}", backend="capture")
    sink.open(width, height, 30)
    convert: list[float] = []
    send: list[float] = []
    for index, frame in enumerate(frames):
        t0 = time.perf_counter()
        shown_frame = i420_frame(fitter.fit(frame), width, height)  # type: ignore[arg-type]
        t1 = time.perf_counter()
        sink.show(ShownFrame(shown_frame, index, time.monotonic(), "live", time.monotonic()))
        t2 = time.perf_counter()
        convert.append(t1 - t0)
        send.append(t2 - t1)
    sink.close()
    return convert, send


async def _video_top_rate(width: int, height: int, frames: list[object], seconds: float) -> tuple[int, int, float]:
    """The clock asked for 1000 fps with a new frame on every tick: (frames shown, new frames, seconds)."""
    import threading

    from metadj_bridge.video.clock import OutputClock
    from metadj_bridge.video.vcam import VirtualCameraSink

    clock = OutputClock(width, height, 1000, [VirtualCameraSink(device=f"bench-top-{width}", backend="capture")],
                        slate_after=60)
    stop = threading.Event()

    def feed() -> None:
        n = 0
        while not stop.wait(0.0005):
            clock.push(frames[n % len(frames)])  # type: ignore[arg-type]
            n += 1

    await clock.start()
    feeder = threading.Thread(target=feed, daemon=True)
    feeder.start()
    await asyncio.sleep(0.5)
    before = clock.stats()
    t0 = time.monotonic()
    await asyncio.sleep(seconds)
    after = clock.stats()
    elapsed = time.monotonic() - t0
    stop.set()
    feeder.join()
    await clock.aclose()
    return after.frames_shown - before.frames_shown, after.live - before.live, elapsed


async def _video_delay(width: int, height: int, frames: list[object], seconds: float) -> tuple[list[float], int]:
    """A 30 fps camera fed Scope-like at ~20 fps: arrival-to-send delays of the new frames, and ticks skipped."""
    from metadj_bridge.video.clock import OutputClock
    from metadj_bridge.video.sink import ShownFrame
    from metadj_bridge.video.vcam import VirtualCameraSink

    delays: list[float] = []

    class TimedCamera(VirtualCameraSink):
        def show(self, shown: ShownFrame) -> None:
            super().show(shown)
            if shown.kind == "live" and shown.arrived is not None:
                delays.append(time.monotonic() - shown.arrived)

    clock = OutputClock(width, height, 30, [TimedCamera(device=f"bench-delay-{width}", backend="capture")])
    await clock.start()
    rng = random.Random(7)
    deadline = time.monotonic() + seconds
    n = 0
    while time.monotonic() < deadline:
        clock.push(frames[n % len(frames)])  # type: ignore[arg-type]
        n += 1
        await asyncio.sleep(0.05 * rng.uniform(0.8, 1.2))  # Scope's frames do not follow the camera's clock
    await clock.aclose()
    return delays, clock.stats().skipped_ticks


def bench_video(args: argparse.Namespace) -> None:
    """Decode, convert and camera-send cost per frame; the clock's top rate on one core; the added delay; the cost
    per frame of ndi:, syphon: and spout: (or why one is not available here)."""
    import os

    from metadj_bridge.video.capture import register_capture_backend

    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})  # one core for everything below
    register_capture_backend("capture", keep_pixels=2)

    def ms(values: list[float], q: float = 0.5) -> float:
        return percentile(values, q) * 1000

    print(f"video: per frame, median of {VIDEO_FRAMES}, one core (camera = pyvirtualcam's Camera + capture backend)")
    clips: dict[tuple[int, int], list[object]] = {}
    for width, height in VIDEO_SIZES:
        frames, decode = _video_clip(width, height, VIDEO_FRAMES)
        clips[(width, height)] = frames
        convert, send = _video_per_frame(width, height, frames)
        after = [c + s for c, s in zip(convert, send, strict=True)]
        print(f"  {width}x{height}: decode {ms(decode):.2f} ms  convert {ms(convert):.2f} ms  "
              f"camera send {ms(send):.2f} ms  -> after decode {ms(after):.2f} ms (p95 {ms(after, 0.95):.2f});"
              f" with decode one core keeps up with {1000 / (ms(decode) + ms(after)):.0f} fps")
    convert, send = _video_per_frame(1920, 1080, clips[(1024, 576)])
    print(f"  1024x576 scaled into a 1920x1080 camera: convert {ms(convert):.2f} ms  camera send {ms(send):.2f} ms")

    print(f"video: highest sustained clock rate ({args.seconds:g} s, asked for 1000 fps, a new frame on every tick)")
    for (width, height), frames in clips.items():
        shown, live, elapsed = asyncio.run(_video_top_rate(width, height, frames, args.seconds))
        print(f"  {width}x{height}: {shown / elapsed:.0f} fps ({live / elapsed:.0f} of them new frames)")

    print("video: added delay from arrival (push) to camera send, 30 fps camera, frames at ~20 fps for "
          f"{args.seconds:g} s")
    for (width, height), frames in clips.items():
        delays, skipped = asyncio.run(_video_delay(width, height, frames, args.seconds))
        print(f"  {width}x{height}: median {ms(delays):.1f} ms  p95 {ms(delays, 0.95):.1f} ms  (one period is 33.3 ms;"
              f" {len(delays)} frames, {skipped} ticks skipped)")

    print("video: named outputs, per frame at 30 fps (show = the clock thread's cost; NDI's compress and send run "
          "in the sink's own thread, a receiver in this process connected)")
    for width, height in VIDEO_SIZES:
        for line in _video_named_outputs(width, height, clips[(width, height)]):
            print(f"  {width}x{height} {line}")

    # The whole daemon with three screens, each on an emulator process of its own (scripts/bench_screens.py).
    print("video: the whole daemon driving three screens at 1024x576 (target: under 60% of one core, 350 MB)")
    done = subprocess.run([sys.executable, str(Path(__file__).with_name("bench_screens.py")), "--screens", "3",
                           "--size", "1024x576", "--seconds", str(max(20.0, args.seconds))],
                          capture_output=True, text=True, check=False)
    print("\n".join("  " + line for line in (done.stdout or done.stderr).strip().splitlines()))


def _ndi_bench_receiver(source: str) -> Callable[[], None]:
    """A cyndilib receiver of ``source`` on loopback, polled on a thread so that NDI really compresses and sends.
    Returns what stops it."""
    import threading

    from cyndilib.finder import Finder
    from cyndilib.receiver import Receiver
    from cyndilib.video_frame import VideoFrameSync

    finder = Finder()
    finder.open()
    deadline = time.monotonic() + 10
    found = None
    while found is None and time.monotonic() < deadline:
        finder.wait_for_sources(0)  # cyndilib keeps the GIL while NDI waits: poll instead
        time.sleep(0.05)
        found = next((s for s in finder.iter_sources() if s.stream_name == source), None)
    finder.close()
    if found is None:
        raise RuntimeError(f"NDI source {source} not found on loopback")
    receiver = Receiver()
    receiver.frame_sync.set_video_frame(VideoFrameSync())
    receiver.connect_to(found)

    stop = threading.Event()

    def poll() -> None:
        while not stop.wait(0.003):
            receiver.frame_sync.capture_video()
        receiver.disconnect()

    thread = threading.Thread(target=poll, name="bench-ndi-receiver", daemon=True)
    thread.start()

    def stop_receiver() -> None:
        stop.set()
        thread.join()

    return stop_receiver


def _video_named_outputs(width: int, height: int, frames: list[object]) -> list[str]:
    """ndi:, syphon: and spout: fed the clip's frames at 30 fps: a line each with its cost, or why it is not here."""
    import json
    import os
    import tempfile

    from metadj_bridge.errors import VideoOutputError
    from metadj_bridge.video.convert import FrameFitter, i420_frame
    from metadj_bridge.video.ndi import NdiSink
    from metadj_bridge.video.sink import ShownFrame
    from metadj_bridge.video.texture_sharing import SpoutSink, SyphonSink, bgra

    if "NDI_CONFIG_DIR" not in os.environ:  # NDI on loopback only: the benchmark advertises nothing on the LAN
        import atexit
        import shutil

        folder = tempfile.mkdtemp(prefix="metadj-bench-ndi-")
        atexit.register(shutil.rmtree, folder, ignore_errors=True)
        Path(folder, "ndi-config.v1.json").write_text(json.dumps({"ndi": {
            "networks": {"ips": "127.0.0.1", "discovery": ""}, "adapters": {"allowed": ["127.0.0.1"]},
            "multicast": {"send": {"enable": False}, "recv": {"enable": False}}}}), encoding="utf-8")
        os.environ["NDI_CONFIG_DIR"] = folder
    fitter = FrameFitter(width, height)
    shown = [ShownFrame(i420_frame(fitter.fit(f), width, height), i, 0.0, "live", 0.0)  # type: ignore[arg-type]
             for i, f in enumerate(frames)]
    lines = []
    for sink in (NdiSink(f"metadj-bench-{os.getpid()}-{width}"), SyphonSink("metadj-bench"), SpoutSink("metadj-bench")):
        try:
            sink.open(width, height, 30)
        except VideoOutputError as exc:
            part = ""
            if not isinstance(sink, NdiSink):  # the share itself needs its OS; the conversion before it runs anywhere
                convert = []
                for frame in shown:
                    t0 = time.perf_counter()
                    bgra(frame)
                    convert.append(time.perf_counter() - t0)
                part = f" (its I420 -> BGRA conversion, measured here: {percentile(convert, 0.5) * 1000:.2f} ms)"
            lines.append(f"{sink.name.split(':')[0]}: not available here: {exc}{part}")
            continue
        stop_receiver = _ndi_bench_receiver(sink.source_name) if isinstance(sink, NdiSink) else None
        if isinstance(sink, NdiSink):
            deadline = time.monotonic() + 10
            while sink.connections() == 0 and time.monotonic() < deadline:
                time.sleep(0.02)
        costs: list[float] = []
        start = time.monotonic()
        for n, frame in enumerate(shown):
            t0 = time.perf_counter()
            sink.show(frame)
            costs.append(time.perf_counter() - t0)
            time.sleep(max(0.0, start + (n + 1) / 30 - time.monotonic()))
        time.sleep(0.2)
        extra = ""
        if isinstance(sink, NdiSink):
            send = sink.send_ms()
            extra = (f"  NDI compress+send {send:.2f} ms (sender thread), {sink.sent} sent, {sink.dropped} replaced "
                     f"while sending, {sink.connections()} receiver(s)") if send is not None else "  nothing sent"
        sink.close()
        if stop_receiver is not None:
            stop_receiver()
            # NDI's Linux runtime leaves an empty marker file per source name; this name is this run's alone
            Path(tempfile.gettempdir(), f"NTK_SEND_{sink.name.split(':', 1)[1]}").unlink(missing_ok=True)
        lines.append(f"{sink.name.split(':')[0]}: show {percentile(costs, 0.5) * 1000:.2f} ms "
                     f"(p95 {percentile(costs, 0.95) * 1000:.2f}){extra}")
    return lines


def bench_daemon(args: argparse.Namespace) -> None:
    """The whole daemon on the standard show (scripts/soak.py): CPU and RSS of the bridge's process."""
    import soak  # scripts/soak.py, beside this file

    print(f"daemon: the standard show for {args.seconds:g} s (demo track analysis, MIDI and OSC at 30 messages/s, "
          "the sender, 1024x576 at 30 fps to a stand-in camera; the emulator in its own process)")
    with soak.standard_show() as bridge:
        samples = [soak.sample(bridge.pid)]
        end = samples[0].t + args.seconds
        while time.monotonic() < end and bridge.poll() is None:
            time.sleep(10.0)
            samples.append(soak.sample(bridge.pid))
        exited = bridge.poll()
    if exited is not None:
        print(f"  the bridge exited with status {exited}")
        return
    cpu = [100 * (b.cpu_s - a.cpu_s) / (b.t - a.t) for a, b in zip(samples, samples[1:], strict=False)]
    rss = [s.rss_mb for s in samples]
    own = [s.own_mb for s in samples]
    print(f"  CPU: median {statistics.median(cpu):.1f}% of one core, max {max(cpu):.1f}% over {len(cpu)} 10-s "
          "windows (target <= 35%)")
    print(f"  RSS: median {statistics.median(rss):.0f} MB, max {max(rss):.0f} MB, of which JACK's shared memory "
          f"segment (MIDI through JACK) {samples[-1].shm_mb:.0f} MB; "
          f"the bridge's own: median {statistics.median(own):.0f} MB, max {max(own):.0f} MB (target <= 250 MB)")
    print(f"  RSS growth {soak.slope_per_hour(samples, 'rss_mb'):+.1f} MB/h (target <= 10 MB/h; scripts/soak.py runs "
          "an hour)")
    print(f"  open file descriptors: {samples[0].fds} -> {samples[-1].fds}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="bench", required=True)
    scope = sub.add_parser("scope", help="flow control in every show: the seed's 30 Hz sender vs ParameterSender")
    bench_scope.add_arguments(scope)
    align = sub.add_parser("align", help="bar-quantised changes at the virtual camera: lookahead auto vs 0")
    bench_align.add_arguments(align)
    audio = sub.add_parser("audio", help="audio analysis cost, beat accuracy, live onset latency")
    audio.add_argument("--live-seconds", type=float, default=20.0)
    audio.add_argument(
        "--real", type=Path, default=None, metavar="DIR",
        help="the real-music development set (scripts/devset.py; default $METADJ_DEVSET or "
        "~/.cache/metadj-bridge/devset; the section is skipped if it is absent)",
    )
    bench_realmusic.add_arguments(audio, positional=False)
    control = sub.add_parser("control", help="MIDI and OSC in -> signal latency, CPU, MIDI clock steadiness")
    control.add_argument("--messages", type=int, default=10000)
    mapping = sub.add_parser(
        "mapping", help="MappingEngine.step() cost on a generated 100-mapping profile at 86 Hz; hot reload delay"
    )
    mapping.add_argument("--mappings", type=int, default=100)
    mapping.add_argument("--seconds", type=float, default=60.0)
    video = sub.add_parser(
        "video", help="virtual webcam: decode, convert and camera send per frame; top clock rate; added delay; "
        "NDI, Syphon and Spout per frame"
    )
    video.add_argument("--seconds", type=float, default=3.0)
    daemon = sub.add_parser("daemon", help="whole-daemon CPU and RSS on the standard show (default 5 minutes)")
    daemon.add_argument("--seconds", type=float, default=300.0)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    if args.bench == "scope":
        asyncio.run(bench_scope.bench_scope(args))
    elif args.bench == "align":
        asyncio.run(bench_align.bench_align(args))
    elif args.bench == "audio":
        asyncio.run(bench_audio(args))
    elif args.bench == "control":
        from metadj_bridge.run import eventloop

        print(f"event loop: {eventloop.loop_name()} (as metadj-bridge runs)")
        eventloop.run(bench_control(args))
    elif args.bench == "daemon":
        bench_daemon(args)
    elif args.bench == "mapping":
        bench_mapping(args)
        asyncio.run(bench_hot_reload())
    elif args.bench == "video":
        bench_video(args)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
