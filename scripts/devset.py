#!/usr/bin/env python3
"""Build the real-music development set for the beat tracker (issue 15): GTZAN excerpts with beat annotations.

    python scripts/devset.py --gtzan SRC --annotations SRC [--out DIR] [--genres blues rock ...] [--limit N]
    python scripts/devset.py --manifest scripts/devset_sources.tsv --repos DIR [--clone] [--out DIR] [...]

Two public sources, each given as a local folder, a local git directory (bare or not, e.g. what a mirror
or ``git clone --bare`` produced) or a git URL (cloned with ``git clone --depth 1`` into ``OUT/_sources``):

- ``--gtzan``: the GTZAN genre excerpts, files named ``<genre>.<nnnnn>.au`` or ``.wav`` anywhere in the
  tree (``genres/blues/blues.00000.au``, ``blues/blues.00000.wav``, ``data/blues.00000.wav`` ...). The
  audio must be the real files, not Git LFS pointers.
- ``--annotations``: the ``gtzan_tempo_beat`` set (``beats/gtzan_<genre>_<nnnnn>.beats``: one beat a line,
  ``time<TAB>beat-in-bar``, the beat in the bar counted from 1 = downbeat; ``tempo/*.bpm`` optional).

Or, with ``--manifest``, file by file: each excerpt is a file at a commit of a public git repository (the
tab-separated ``scripts/devset_sources.tsv``: name, ``owner/name``, commit, path; its ``annotations`` row pins
the annotations to a commit), read with ``git cat-file`` at that commit, so that files deleted since are found
too. ``--repos DIR`` holds full clones of those repositories (``OWNER+NAME``, ``OWNER/NAME`` or ``NAME``, bare
or not); ``--clone`` clones the missing ones there (``git clone --bare``, whole history).

Only the development genres are used: blues, classical, country, jazz, metal, reggae and rock. Disco,
hip-hop and pop are held out for judging and are refused here.

Written to ``--out`` (default ``$METADJ_DEVSET``, else ``~/.cache/metadj-bridge/devset``), outside the
repository; nothing fetched is ever committed:

- ``<genre>/<genre>.<nnnnn>.wav``: 44.1 kHz (the daemon's rate) mono 16-bit PCM;
- ``<genre>/<genre>.<nnnnn>.json``: beats (s), their beat-in-bar (1 = downbeat, as annotated), the
  downbeats, the annotated whole-excerpt BPM when there is one, the duration and where it came from;
- ``index.json``: every excerpt, the sources (path or URL, and commit) and the settings.

Annotations past the end of the audio are dropped (some copies of GTZAN hold shortened excerpts). Existing
outputs are kept, so running it again only adds what is missing. Pure standard library and numpy: the
``.au`` and ``.wav`` readers and the resampler (a Kaiser-windowed sinc, :func:`resample`) are here.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import shutil
import subprocess
import sys
import wave
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

DEV_GENRES = ("blues", "classical", "country", "jazz", "metal", "reggae", "rock")
#: Held out for judging: never read, converted or scored here.
HELD_OUT_GENRES = ("disco", "hiphop", "pop")
TARGET_SR = 44100
INDEX_NAME = "index.json"
FORMAT_VERSION = 1

_AUDIO_RE = re.compile(r"(?:^|/)(?P<genre>[a-z]+)\.(?P<num>\d{5})\.(?P<ext>au|wav)$")
_BEATS_RE = re.compile(r"(?:^|/)gtzan_(?P<genre>[a-z]+)_(?P<num>\d{5})\.beats$")
_TEMPO_RE = re.compile(r"(?:^|/)gtzan_(?P<genre>[a-z]+)_(?P<num>\d{5})\.bpm$")
_LFS_MAGIC = b"version https://git-lfs.github.com/spec/"


class DevsetError(Exception):
    """A problem with a source or a file, with a message that says what to do."""


def default_out() -> Path:
    env = os.environ.get("METADJ_DEVSET")
    if env:
        return Path(env).expanduser()
    return Path.home() / ".cache" / "metadj-bridge" / "devset"


# ----------------------------------------------------------------------------------------------- audio in


@dataclass
class Audio:
    samples: np.ndarray  # float32, mono, -1..1
    samplerate: int


# Sun/NeXT .au encodings: code -> (bytes per sample, numpy big-endian dtype, full scale)
_AU_ENCODINGS: dict[int, tuple[int, str, float]] = {
    2: (1, ">i1", 128.0),
    3: (2, ">i2", 32768.0),
    5: (4, ">i4", 2147483648.0),
    6: (4, ">f4", 1.0),
    7: (8, ">f8", 1.0),
}


def read_au(data: bytes) -> Audio:
    """A Sun/NeXT ``.au`` file (GTZAN's format): a big-endian header ``.snd``, data offset, data size,
    encoding, sample rate, channels, then the samples. Linear PCM (8/16/32-bit) and float; channels are
    averaged to mono."""
    if data.startswith(_LFS_MAGIC):
        raise DevsetError("a Git LFS pointer, not audio")
    if len(data) < 24 or data[:4] != b".snd":
        raise DevsetError("not a .au file (no '.snd' magic)")
    offset, size, encoding, samplerate, channels = (int.from_bytes(data[i : i + 4], "big") for i in range(4, 24, 4))
    if encoding not in _AU_ENCODINGS:
        raise DevsetError(f".au encoding {encoding} is not supported (only linear PCM 8/16/32-bit and float)")
    if channels < 1 or samplerate < 1 or offset < 24 or offset > len(data):
        raise DevsetError(f"bad .au header (offset {offset}, rate {samplerate}, channels {channels})")
    width, dtype, scale = _AU_ENCODINGS[encoding]
    end = len(data) if size == 0xFFFFFFFF else min(len(data), offset + size)
    frame = width * channels
    n = (end - offset) // frame
    raw = np.frombuffer(data, dtype=dtype, count=n * channels, offset=offset)
    x = raw.astype(np.float64).reshape(n, channels).mean(axis=1) / scale
    return Audio(x.astype(np.float32), samplerate)


def read_wav(data: bytes) -> Audio:
    """A PCM ``.wav`` (8/16/24/32-bit integer) through the standard library; channels averaged to mono."""
    import io

    if data.startswith(_LFS_MAGIC):
        raise DevsetError("a Git LFS pointer, not audio")
    try:
        with wave.open(io.BytesIO(data)) as w:
            channels, width, samplerate, n = w.getnchannels(), w.getsampwidth(), w.getframerate(), w.getnframes()
            raw = w.readframes(n)
    except (wave.Error, EOFError) as exc:
        raise DevsetError(f"not a PCM .wav file ({exc})") from exc
    n = len(raw) // (width * channels)
    if width == 1:
        x = (np.frombuffer(raw, np.uint8, count=n * channels).astype(np.float64) - 128.0) / 128.0
    elif width == 2:
        x = np.frombuffer(raw, "<i2", count=n * channels).astype(np.float64) / 32768.0
    elif width == 3:
        b = np.frombuffer(raw, np.uint8, count=n * channels * 3).reshape(-1, 3).astype(np.int32)
        v = b[:, 0] | (b[:, 1] << 8) | (b[:, 2] << 16)
        x = np.where(v >= 1 << 23, v - (1 << 24), v).astype(np.float64) / float(1 << 23)
    elif width == 4:
        x = np.frombuffer(raw, "<i4", count=n * channels).astype(np.float64) / 2147483648.0
    else:
        raise DevsetError(f".wav sample width {width} bytes is not supported")
    return Audio(x.reshape(n, channels).mean(axis=1).astype(np.float32), samplerate)


def read_audio(name: str, data: bytes) -> Audio:
    return read_au(data) if name.lower().endswith(".au") else read_wav(data)


def write_wav(path: Path, samples: np.ndarray, samplerate: int) -> None:
    """Mono 16-bit PCM, clipped to full scale; written to a temporary name and renamed, so an interrupted
    run never leaves a half file that a later run would skip."""
    pcm = np.clip(np.round(np.asarray(samples, np.float64) * 32767.0), -32768, 32767).astype("<i2")
    tmp = path.with_name(path.name + ".part")
    with wave.open(str(tmp), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(samplerate)
        w.writeframes(pcm.tobytes())
    tmp.replace(path)


# ----------------------------------------------------------------------------------------------- resampling


def _kaiser(d: np.ndarray, half_width: float, beta: float) -> np.ndarray:
    r = np.clip(d / half_width, -1.0, 1.0)
    return np.asarray(np.i0(beta * np.sqrt(1.0 - r * r)) / np.i0(beta))


def resample(
    x: np.ndarray, sr_in: int, sr_out: int, *, zero_crossings: int = 16, rolloff: float = 0.945, beta: float = 8.6
) -> np.ndarray:
    """Band-limited resampling by a Kaiser-windowed sinc (the classic method of Smith's "Digital Audio
    Resampling"; the same idea as resampy and libsamplerate's sinc modes, in plain numpy).

    Each output sample ``n`` sits at input position ``p = n * sr_in / sr_out`` (exact integer arithmetic)
    and is ``sum_k x[k] * c * sinc(c * (p - k)) * kaiser(p - k)``, with the cut-off ``c = rolloff *
    min(1, sr_out / sr_in)`` (in cycles per input sample x 2) so that nothing above the lower of the two
    Nyquist frequencies is kept, and ``zero_crossings`` sinc lobes each side (stretched when downsampling).
    ``beta`` 8.6 gives window side lobes near -80 dB. For rational ratios (all audio rates) the filter is
    tabulated once per phase. Output length ``ceil(len(x) * sr_out / sr_in)``; edges are zero-padded.
    """
    x = np.asarray(x, np.float64)
    if sr_in <= 0 or sr_out <= 0:
        raise ValueError(f"sample rates must be > 0 (got {sr_in} -> {sr_out})")
    if sr_in == sr_out or len(x) == 0:
        return x.astype(np.float32)
    g = math.gcd(sr_in, sr_out)
    up, down = sr_out // g, sr_in // g  # output n -> input position n * down / up
    cutoff = rolloff * min(1.0, up / down)
    half = zero_crossings / min(1.0, up / down)  # window half-width, in input samples
    width = int(math.ceil(half))
    k = np.arange(-width + 1, width + 1)  # taps relative to floor(p)
    n_out = -(-len(x) * up // down)
    xpad = np.concatenate([np.zeros(width), x, np.zeros(width + 1)])

    def taps(frac: np.ndarray) -> np.ndarray:
        d = frac[:, None] - k[None, :]  # p - (i0 + k)
        return cutoff * np.sinc(cutoff * d) * _kaiser(d, half, beta)

    table = taps(np.arange(up) / up) if up <= 4096 else None
    out = np.empty(n_out, np.float64)
    chunk = max(1, (1 << 20) // len(k))
    for start in range(0, n_out, chunk):
        n = np.arange(start, min(n_out, start + chunk), dtype=np.int64)
        pos = n * down
        i0, phase = pos // up, pos % up
        h = table[phase] if table is not None else taps(phase / up)
        idx = (i0 + width)[:, None] + k[None, :]
        out[start : start + len(n)] = np.einsum("ij,ij->i", xpad[idx], h)
    return out.astype(np.float32)


# ----------------------------------------------------------------------------------------------- annotations


@dataclass
class Annotation:
    beats: list[float]
    #: Beat in bar per beat, 1 = downbeat (as in gtzan_tempo_beat); None when the file has times only.
    beat_in_bar: list[int] | None

    @property
    def downbeats(self) -> list[float]:
        if self.beat_in_bar is None:
            return []
        return [t for t, b in zip(self.beats, self.beat_in_bar, strict=True) if b == 1]


def parse_beats(text: str) -> Annotation:
    """A ``.beats`` file: ``time [beat-in-bar]`` per line, whitespace-separated; blank lines and ``#``
    comments ignored. Beat-in-bar is kept only when every line has one."""
    times: list[float] = []
    positions: list[int | None] = []
    for lineno, line in enumerate(text.splitlines(), 1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        parts = line.split()
        try:
            times.append(float(parts[0]))
            positions.append(int(round(float(parts[1]))) if len(parts) > 1 else None)
        except ValueError as exc:
            raise DevsetError(f"line {lineno}: expected 'time [beat-in-bar]', got {line!r}") from exc
    if any(b - a <= 0 for a, b in zip(times, times[1:], strict=False)):
        raise DevsetError("beat times are not strictly increasing")
    if positions and all(p is not None for p in positions):
        return Annotation(times, [int(p) for p in positions if p is not None])
    return Annotation(times, None)


def parse_bpm(text: str) -> float | None:
    try:
        value = float(text.split()[0])
    except (ValueError, IndexError):
        return None
    return value if value > 0 else None


# ----------------------------------------------------------------------------------------------- sources


def _git(args: Sequence[str], *, cwd: Path | None = None, binary: bool = False) -> bytes:
    if shutil.which("git") is None:
        raise DevsetError("git is not installed, and a git source needs it (or give a plain folder instead)")
    proc = subprocess.run(["git", *args], cwd=cwd, capture_output=True)
    if proc.returncode != 0:
        raise DevsetError(f"git {' '.join(args)} failed: {proc.stderr.decode(errors='replace').strip()}")
    return proc.stdout


def _is_url(spec: str) -> bool:
    return bool(re.match(r"^[a-z][a-z0-9+.-]*://", spec)) or bool(re.match(r"^[\w.-]+@[\w.-]+:", spec))


def _is_bare_git(path: Path) -> bool:
    return (path / "HEAD").is_file() and (path / "objects").is_dir() and (path / "refs").is_dir()


@dataclass
class Source:
    """A tree of files: a folder, or the HEAD commit of a bare git directory."""

    spec: str
    root: Path
    git_dir: Path | None = None
    commit: str | None = None
    _blobs: dict[str, str] = field(default_factory=dict)

    @classmethod
    def open(cls, spec: str, clone_into: Path) -> Source:
        if _is_url(spec):
            name = re.sub(r"[^A-Za-z0-9_.-]+", "+", spec.split("://", 1)[-1].rstrip("/")).strip("+")
            dest = clone_into / name
            if not dest.exists():
                dest.parent.mkdir(parents=True, exist_ok=True)
                print(f"cloning {spec} -> {dest}", flush=True)
                _git(["clone", "--depth", "1", spec, str(dest)])
            return cls._local(spec, dest)
        path = Path(spec).expanduser()
        if not path.exists():
            raise DevsetError(f"{spec}: no such folder (give a folder, a git directory or a git URL)")
        return cls._local(spec, path)

    @classmethod
    def _local(cls, spec: str, path: Path) -> Source:
        if _is_bare_git(path):
            commit = _git(["--git-dir", str(path), "rev-parse", "HEAD"]).decode().strip()
            src = cls(spec, path, git_dir=path, commit=commit)
            listing = _git(["--git-dir", str(path), "ls-tree", "-r", "-z", "HEAD"]).split(b"\0")
            for entry in listing:
                if not entry:
                    continue
                meta, name = entry.split(b"\t", 1)
                _mode, kind, sha = meta.split()
                if kind == b"blob":
                    src._blobs[name.decode()] = sha.decode()
            return src
        worktree_commit: str | None = None
        if (path / ".git").exists() and shutil.which("git"):
            try:
                worktree_commit = _git(["-C", str(path), "rev-parse", "HEAD"]).decode().strip()
            except DevsetError:
                worktree_commit = None
        return cls(spec, path, commit=worktree_commit)

    def files(self) -> Iterable[str]:
        if self.git_dir is not None:
            yield from self._blobs
            return
        for p in self.root.rglob("*"):
            if ".git" in p.parts or not p.is_file():
                continue
            yield p.relative_to(self.root).as_posix()

    def read(self, name: str) -> bytes:
        if self.git_dir is not None:
            return _git(["--git-dir", str(self.git_dir), "cat-file", "blob", self._blobs[name]])
        return (self.root / name).read_bytes()

    def describe(self) -> dict[str, str | None]:
        return {"source": self.spec, "path": str(self.root), "commit": self.commit}


def find_excerpts(source: Source, genres: Sequence[str]) -> dict[str, str]:
    """``<genre>.<nnnnn>`` -> path of its audio in the source (``.au`` preferred over ``.wav``)."""
    found: dict[str, str] = {}
    for name in source.files():
        m = _AUDIO_RE.search(name)
        if not m or m["genre"] not in genres:
            continue
        key = f"{m['genre']}.{m['num']}"
        if key not in found or (m["ext"] == "au" and not found[key].endswith(".au")):
            found[key] = name
    return dict(sorted(found.items()))


def find_annotations(source: Source, genres: Sequence[str]) -> tuple[dict[str, str], dict[str, str]]:
    beats: dict[str, str] = {}
    tempi: dict[str, str] = {}
    for name in source.files():
        for regex, into in ((_BEATS_RE, beats), (_TEMPO_RE, tempi)):
            m = regex.search(name)
            if m and m["genre"] in genres:
                into[f"{m['genre']}.{m['num']}"] = name
    return beats, tempi


# ----------------------------------------------------------------------------------------------- build


def check_genres(genres: Sequence[str]) -> list[str]:
    bad = [g for g in genres if g in HELD_OUT_GENRES]
    if bad:
        raise DevsetError(f"{', '.join(bad)}: held out for judging, never part of the development set")
    unknown = [g for g in genres if g not in DEV_GENRES]
    if unknown:
        raise DevsetError(f"unknown genre(s) {', '.join(unknown)}; the development genres are {', '.join(DEV_GENRES)}")
    return list(dict.fromkeys(genres))


def convert_one(key: str, gtzan: Source, audio_name: str, annotation: Annotation, bpm: float | None, out: Path,
                meta: Mapping[str, object]) -> dict[str, Any]:
    genre = key.split(".")[0]
    folder = out / genre
    folder.mkdir(parents=True, exist_ok=True)
    wav_path, json_path = folder / f"{key}.wav", folder / f"{key}.json"
    if wav_path.exists() and json_path.exists():
        try:
            return dict(json.loads(json_path.read_text()))
        except (OSError, ValueError):
            pass  # damaged: convert again
    try:
        audio = read_audio(audio_name, gtzan.read(audio_name))
    except DevsetError as exc:
        hint = " (fetch the LFS content with 'git lfs pull', or use another copy)" if "LFS" in str(exc) else ""
        raise DevsetError(f"{audio_name}: {exc}{hint}") from exc
    samples = resample(audio.samples, audio.samplerate, TARGET_SR)
    duration = len(samples) / TARGET_SR
    keep = [i for i, t in enumerate(annotation.beats) if t <= duration]
    beats = [annotation.beats[i] for i in keep]
    bib = [annotation.beat_in_bar[i] for i in keep] if annotation.beat_in_bar is not None else None
    record: dict[str, Any] = {
        "name": key,
        "genre": genre,
        "wav": f"{genre}/{key}.wav",
        "samplerate": TARGET_SR,
        "duration": round(duration, 4),
        "source_samplerate": audio.samplerate,
        "source_file": audio_name,
        "beats": beats,
        "beat_in_bar": bib,
        "downbeats": Annotation(beats, bib).downbeats,
        "annotated_beats_total": len(annotation.beats),
        "bpm": bpm,
        **meta,
    }
    write_wav(wav_path, samples, TARGET_SR)
    tmp = json_path.with_name(json_path.name + ".part")
    tmp.write_text(json.dumps(record, indent=1))
    tmp.replace(json_path)
    return record


def write_index(out: Path, records: Sequence[Mapping[str, Any]], gtzan: Mapping[str, Any],
                annotations: Mapping[str, Any]) -> Path:
    """Write ``index.json``: the excerpts converted now plus those an earlier run left in ``out``."""
    entries: list[dict[str, Any]] = [
        {k: r[k] for k in ("name", "genre", "wav", "duration", "bpm")} | {"json": f"{r['genre']}/{r['name']}.json"}
        for r in records
    ]
    # Keep excerpts an earlier run converted (another --limit or --genres) in the index.
    old_path = out / INDEX_NAME
    if old_path.exists():
        try:
            old = json.loads(old_path.read_text())
            have = {e["name"] for e in entries}
            for e in old.get("excerpts", []):
                if e["name"] not in have and (out / e["wav"]).exists() and e.get("genre") in DEV_GENRES:
                    entries.append(e)
        except (OSError, ValueError, KeyError, TypeError):
            pass
    entries.sort(key=lambda e: str(e["name"]))
    index = {
        "version": FORMAT_VERSION,
        "samplerate": TARGET_SR,
        "genres": sorted({str(e["genre"]) for e in entries}),
        "gtzan": dict(gtzan),
        "annotations": dict(annotations),
        "excerpts": entries,
    }
    tmp = old_path.with_name(INDEX_NAME + ".part")
    tmp.write_text(json.dumps(index, indent=1))
    tmp.replace(old_path)
    return old_path


def build(gtzan_spec: str, annotations_spec: str, out: Path, genres: Sequence[str], limit: int | None = None) -> int:
    genres = check_genres(genres)
    out.mkdir(parents=True, exist_ok=True)
    gtzan = Source.open(gtzan_spec, out / "_sources")
    notes = Source.open(annotations_spec, out / "_sources")
    excerpts = find_excerpts(gtzan, genres)
    if not excerpts:
        raise DevsetError(
            f"{gtzan_spec}: no GTZAN excerpt of {', '.join(genres)} found (looked for files named "
            "<genre>.<nnnnn>.au or .wav, e.g. genres/blues/blues.00000.au)"
        )
    beats, tempi = find_annotations(notes, genres)
    if not beats:
        raise DevsetError(
            f"{annotations_spec}: no beat annotation found (looked for beats/gtzan_<genre>_<nnnnn>.beats, "
            "the layout of the gtzan_tempo_beat set)"
        )
    if limit is not None:
        per_genre: dict[str, int] = {}
        kept: dict[str, str] = {}
        for key, name in excerpts.items():
            g = key.split(".")[0]
            if per_genre.get(g, 0) < limit:
                per_genre[g] = per_genre.get(g, 0) + 1
                kept[key] = name
        excerpts = kept
    meta = {"gtzan_commit": gtzan.commit, "annotations_commit": notes.commit}
    records: list[dict[str, Any]] = []
    missing: list[str] = []
    failed: list[str] = []
    for key, audio_name in excerpts.items():
        if key not in beats:
            missing.append(key)
            continue
        try:
            annotation = parse_beats(notes.read(beats[key]).decode("utf-8", errors="replace"))
        except DevsetError as exc:
            failed.append(f"{beats[key]}: {exc}")
            continue
        bpm = parse_bpm(notes.read(tempi[key]).decode(errors="replace")) if key in tempi else None
        try:
            record = convert_one(key, gtzan, audio_name, annotation, bpm, out, meta)
        except DevsetError as exc:
            failed.append(str(exc))
            continue
        records.append(record)
        print(f"  {key}: {record['duration']:.1f} s, {len(record['beats'])} beats", flush=True)
    old_path = write_index(out, records, gtzan.describe(), notes.describe())
    print(f"{len(records)} excerpts in {out} (index: {old_path})")
    if missing:
        print(f"{len(missing)} excerpts without annotations, skipped: {', '.join(missing)}")
    for message in failed:
        print(f"failed: {message}", file=sys.stderr)
    return 1 if failed and not records else 0


# ----------------------------------------------------------------------------------------------- manifest

MANIFEST_HEADER = ("name", "repo", "commit", "path")
#: The manifest row that pins the annotations: the whole tree of that repository at that commit.
ANNOTATIONS_ROW = "annotations"
DEFAULT_CLONE_FROM = "https://github.com"
_NAME_RE = re.compile(r"^(?P<genre>[a-z]+)\.(?P<num>\d{5})$")
_REPO_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*/[A-Za-z0-9_.-]+$")
_COMMIT_RE = re.compile(r"^[0-9a-f]{40}$")


@dataclass(frozen=True)
class ManifestRow:
    """Where one excerpt comes from: a file at a commit of a public git repository (``owner/name``)."""

    name: str
    repo: str
    commit: str
    path: str


def read_manifest(path: Path) -> tuple[list[ManifestRow], ManifestRow | None]:
    """The excerpt rows and the annotations row of a manifest: a tab-separated file with the header
    ``name repo commit path``; blank lines and lines starting with ``#`` are ignored. A row of a held-out
    genre makes the whole manifest refused, as ``--genres`` does."""
    rows: list[ManifestRow] = []
    notes: ManifestRow | None = None
    header_seen = False
    try:
        text = path.read_text()
    except OSError as exc:
        raise DevsetError(f"{path}: cannot read the manifest ({exc.strerror})") from exc
    for lineno, line in enumerate(text.splitlines(), 1):
        if not line.strip() or line.startswith("#"):
            continue
        fields = tuple(f.strip() for f in line.split("\t"))
        if not header_seen:
            if fields != MANIFEST_HEADER:
                raise DevsetError(f"{path}: the first line must be the header {' '.join(MANIFEST_HEADER)!r} "
                                  "(tab-separated)")
            header_seen = True
            continue
        if len(fields) != len(MANIFEST_HEADER) or not all(fields):
            raise DevsetError(f"{path}, line {lineno}: expected 4 tab-separated fields, got {line!r}")
        row = ManifestRow(*fields)
        if not _REPO_RE.match(row.repo):
            raise DevsetError(f"{path}, line {lineno}: {row.repo!r} is not a repository name 'owner/name'")
        if not _COMMIT_RE.match(row.commit):
            raise DevsetError(f"{path}, line {lineno}: {row.commit!r} is not a full 40-digit commit id")
        if row.name == ANNOTATIONS_ROW:
            notes = row
            continue
        m = _NAME_RE.match(row.name)
        if not m:
            raise DevsetError(f"{path}, line {lineno}: {row.name!r} is not an excerpt name '<genre>.<nnnnn>'")
        if m["genre"] in HELD_OUT_GENRES:
            raise DevsetError(f"{path}, line {lineno}: {row.name} is of a genre held out for judging, never "
                              "part of the development set")
        check_genres([m["genre"]])
        rows.append(row)
    if not header_seen:
        raise DevsetError(f"{path}: empty manifest")
    names = [r.name for r in rows]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise DevsetError(f"{path}: listed more than once: {', '.join(twice)}")
    return rows, notes


def _git_dir_in(path: Path) -> Path | None:
    """The git directory at ``path``: itself when bare, else its ``.git``; the fetch tool's mirrors keep
    it in ``repo/`` or ``repo/.git``."""
    for candidate in (path, path / ".git", path / "repo", path / "repo" / ".git"):
        if (candidate / "HEAD").is_file() and (candidate / "objects").is_dir():
            return candidate
    return None


def find_repo(repos: Path, repo: str) -> Path | None:
    """A local git directory of ``owner/name`` under ``repos``: ``owner+name`` (the fetch tool's mirrors
    and ``--clone``), ``owner/name`` or ``name`` (what ``git clone URL`` in ``repos`` makes)."""
    owner, name = repo.split("/", 1)
    for folder in (repos / f"{owner}+{name}", repos / owner / name, repos / name):
        found = _git_dir_in(folder) if folder.is_dir() else None
        if found is not None:
            return found
    return None


def clone_repo(repos: Path, repo: str, clone_from: str) -> Path:
    """A full (bare) clone of ``owner/name`` into ``repos/owner+name``: every commit, since some of the
    listed files exist only in a repository's history."""
    dest = repos / repo.replace("/", "+")
    url = f"{clone_from.rstrip('/')}/{repo}"
    repos.mkdir(parents=True, exist_ok=True)
    print(f"cloning {url} -> {dest}", flush=True)
    _git(["clone", "--quiet", "--bare", url, str(dest)])
    return dest


def open_repos(names: Iterable[str], repos: Path, clone: bool, clone_from: str) -> dict[str, Path]:
    found: dict[str, Path] = {}
    missing: list[str] = []
    for repo in sorted(set(names)):
        git_dir = find_repo(repos, repo)
        if git_dir is None and clone:
            git_dir = clone_repo(repos, repo, clone_from)
        if git_dir is None:
            missing.append(repo)
        else:
            found[repo] = git_dir
    if missing:
        raise DevsetError(f"no git directory under {repos} for {', '.join(missing)} (looked for OWNER+NAME, "
                          "OWNER/NAME and NAME); clone them there with 'git clone' (a full clone, not --depth 1) "
                          "or pass --clone")
    return found


def source_at(repo: str, git_dir: Path, commit: str, paths: Iterable[str] | None = None) -> Source:
    """A :class:`Source` reading ``git_dir`` at ``commit``: the listed paths, or the whole tree."""
    src = Source(repo, git_dir, git_dir=git_dir, commit=commit)
    if paths is not None:
        src._blobs.update({p: f"{commit}:{p}" for p in paths})
        return src
    for entry in _git(["--git-dir", str(git_dir), "ls-tree", "-r", "-z", commit]).split(b"\0"):
        if entry:
            meta, name = entry.split(b"\t", 1)
            if meta.split()[1] == b"blob":
                src._blobs[name.decode()] = f"{commit}:{name.decode()}"
    return src


def build_from_manifest(manifest: Path, repos: Path, out: Path, genres: Sequence[str], limit: int | None = None,
                        annotations_spec: str | None = None, clone: bool = False,
                        clone_from: str = DEFAULT_CLONE_FROM) -> int:
    """Convert every excerpt the manifest lists, each read with ``git cat-file`` at its commit (so a file
    deleted since is found as well), with the annotations of the manifest's ``annotations`` row (or of
    ``annotations_spec``, read as in :func:`build`). Same outputs as :func:`build`."""
    genres = check_genres(genres)
    rows, notes_row = read_manifest(manifest)
    rows = [r for r in rows if r.name.split(".")[0] in genres]
    if limit is not None:
        per_genre: dict[str, int] = {}
        kept: list[ManifestRow] = []
        for row in rows:
            g = row.name.split(".")[0]
            if per_genre.get(g, 0) < limit:
                per_genre[g] = per_genre.get(g, 0) + 1
                kept.append(row)
        rows = kept
    if annotations_spec is None and notes_row is None:
        raise DevsetError(f"{manifest}: no '{ANNOTATIONS_ROW}' row; give --annotations SRC")
    wanted = [r.repo for r in rows] + ([notes_row.repo] if annotations_spec is None and notes_row else [])
    git_dirs = open_repos(wanted, repos, clone, clone_from)
    out.mkdir(parents=True, exist_ok=True)
    if annotations_spec is not None:
        notes = Source.open(annotations_spec, out / "_sources")
    else:
        assert notes_row is not None
        notes = source_at(notes_row.repo, git_dirs[notes_row.repo], notes_row.commit)
    beats, tempi = find_annotations(notes, genres)
    records: list[dict[str, Any]] = []
    failed: list[str] = []
    for row in rows:
        if row.name not in beats:
            failed.append(f"{row.name}: no annotation in {notes.spec}")
            continue
        try:
            annotation = parse_beats(notes.read(beats[row.name]).decode("utf-8", errors="replace"))
            bpm = parse_bpm(notes.read(tempi[row.name]).decode(errors="replace")) if row.name in tempi else None
            audio = source_at(row.repo, git_dirs[row.repo], row.commit, [row.path])
            meta = {"gtzan_commit": row.commit, "annotations_commit": notes.commit}
            record = convert_one(row.name, audio, row.path, annotation, bpm, out, meta)
        except DevsetError as exc:
            failed.append(f"{row.name} ({row.repo} {row.commit[:10]}:{row.path}): {exc}")
            continue
        records.append(record)
        print(f"  {row.name}: {record['duration']:.1f} s, {len(record['beats'])} beats", flush=True)
    gtzan = {"source": str(manifest), "path": str(repos), "commit": None,
             "repositories": {repo: str(path) for repo, path in sorted(git_dirs.items())}}
    index_path = write_index(out, records, gtzan, notes.describe())
    print(f"{len(records)} excerpts in {out} (index: {index_path})")
    for message in failed:
        print(f"failed: {message}", file=sys.stderr)
    return 1 if failed else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Build the real-music development set (GTZAN excerpts + gtzan_tempo_beat annotations).",
        epilog="Each SRC is a folder, a git directory or a git URL. Example: python scripts/devset.py "
        "--gtzan https://github.com/OWNER/gtzan-copy --annotations "
        "https://github.com/TempoBeatDownbeat/gtzan_tempo_beat. Or, file by file from a manifest: "
        "python scripts/devset.py --manifest scripts/devset_sources.tsv --repos DIR [--clone]",
    )
    parser.add_argument("--gtzan", metavar="SRC", help="GTZAN audio: <genre>.<nnnnn>.au/.wav files")
    parser.add_argument("--annotations", metavar="SRC", help="gtzan_tempo_beat: beats/*.beats (with --manifest: "
                        "instead of the manifest's annotations row)")
    parser.add_argument("--manifest", type=Path, default=None, help="instead of --gtzan: a list of excerpts, each "
                        "a file at a commit of a git repository (scripts/devset_sources.tsv)")
    parser.add_argument("--repos", type=Path, default=None, help="with --manifest: the folder holding the git "
                        "directories of the manifest's repositories (OWNER+NAME, OWNER/NAME or NAME)")
    parser.add_argument("--clone", action="store_true", help="with --manifest: clone the repositories missing "
                        "from --repos (full bare clones into --repos/OWNER+NAME)")
    parser.add_argument("--clone-from", default=DEFAULT_CLONE_FROM, metavar="BASE",
                        help=f"where --clone finds OWNER/NAME (default {DEFAULT_CLONE_FROM})")
    parser.add_argument("--out", type=Path, default=None, help="output folder (default $METADJ_DEVSET or "
                        "~/.cache/metadj-bridge/devset)")
    parser.add_argument("--genres", nargs="+", default=list(DEV_GENRES), metavar="GENRE",
                        help=f"subset of {' '.join(DEV_GENRES)}")
    parser.add_argument("--limit", type=int, default=None, help="at most N excerpts per genre")
    args = parser.parse_args(argv)
    out = (args.out or default_out()).expanduser()
    if args.manifest is None and (args.gtzan is None or args.annotations is None):
        parser.error("give --gtzan SRC --annotations SRC, or --manifest FILE --repos DIR")
    if args.manifest is not None and (args.gtzan is not None or args.repos is None):
        parser.error("--manifest takes --repos DIR (and no --gtzan)")
    try:
        if args.manifest is not None:
            return build_from_manifest(args.manifest, args.repos.expanduser(), out, args.genres, args.limit,
                                       args.annotations, args.clone, args.clone_from)
        return build(args.gtzan, args.annotations, out, args.genres, args.limit)
    except DevsetError as exc:
        print(f"devset: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
