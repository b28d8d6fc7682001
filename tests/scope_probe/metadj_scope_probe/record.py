"""What the probe records and draws, in numpy and the standard library only (so tests can use it without Scope).

The log is a JSON-lines file: ``$METADJ_PROBE_LOG``, else ``<temp dir>/metadj-probe/chunks.jsonl`` (the temp dir
of the Scope server's process). Lines are appended, never rewritten; each pipeline load adds a ``load`` line,
then each ``__call__`` adds a ``chunk`` line::

    {"type": "load", "instance": "3f2a9c1e", "t": wall time, "pid": 1234, "size": [w, h], "chunk_frames": 12,
     "fps": 20.0, "load_params": {...}}
    {"type": "chunk", "instance": "3f2a9c1e", "chunk": 17, "t": wall time the call began, "t_out": wall time the
     frames were handed back, "mode": "text", "reset": false, "digest": 2882400018, "frames": 12,
     "received": {...}, "used": {...}, "ignored": ["noise_scale"], "inputs": {"video": "12 x 1x192x320x3 uint8"},
     "transition_step": [1, 3]}

- ``received``: every keyword argument Scope passed to ``__call__``, JSON-safe (tuples and sets become lists,
  other objects their ``str``), except tensors and lists of tensors (the input video, described in ``inputs``)
  and the ``*_timestamps`` that go with them.
- ``used``: what a Wan pipeline (longlive) acts on in that mode, as Scope's ``defaults.py`` decides it: in text
  mode ``noise_scale`` and ``noise_controller`` are dropped (unless ``_modulated_noise_scale``, set by Scope's
  modulation engine); a missing ``denoising_step_list`` gets the schema default. ``ignored`` names what was dropped.
  The stamp's digest is ``params_digest(used)``, so a frame tells which chunk line it came from.
- ``transition_step``: ``[step, num_steps]`` while a prompt transition runs (None otherwise). The probe imitates a
  Wan pipeline's blender: a transition takes ``num_steps`` calls, and the probe's ``state["_transition_active"]``
  tells Scope's PipelineProcessor to keep passing ``transition`` until the last step, as it does for longlive.
  Scope never rewrites ``prompts`` to the transition's target: a pipeline keeps the target itself.
- Reset / cache init: a pipeline never sees ``reset_cache``. Scope's PipelineProcessor pops it from the message and
  passes ``init_cache=True`` on the next call (also on a session's first call); every other call gets
  ``init_cache=False``. Scope's tempo sync can also set ``init_cache=True`` on beat boundaries
  (``beat_cache_reset_rate``, with a random ``base_seed``). ``reset`` is that ``init_cache``, as received.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import tempfile
import threading
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy

from .stamp import draw_stamp

#: Frames per chunk, in text and video mode: a Wan pipeline's 3 latent frames x 4 (Scope's longlive, krea...).
CHUNK_FRAMES = 12
#: The denoising steps a Wan pipeline uses when none are sent (longlive's schema default).
DEFAULT_STEPS = (1000, 750, 500, 250)
#: The environment variable naming the log file (read by the Scope server's process).
LOG_ENV = "METADJ_PROBE_LOG"
#: The environment variable setting the probe's pace in frames per second (default 20, a GPU Wan pipeline's).
FPS_ENV = "METADJ_PROBE_FPS"
#: The environment variable that overrides the load's frame size, as WxH (e.g. 320x192, for a slow CPU).
SIZE_ENV = "METADJ_PROBE_SIZE"
#: Keys a Wan pipeline ignores in text mode (``apply_mode_defaults_to_state`` in Scope's ``defaults.py``).
TEXT_MODE_IGNORES = ("noise_scale", "noise_controller")
#: Beat state that Scope's tempo sync injects into every call (``pipeline_processor._apply_tempo_sync``).
BEAT_STATE_KEYS = ("bpm", "beat_phase", "bar_position", "beat_count", "is_playing")


def default_log_path(environ: Mapping[str, str] | None = None) -> Path:
    """Where the probe writes: ``$METADJ_PROBE_LOG``, else ``<temp dir>/metadj-probe/chunks.jsonl``."""
    env = os.environ if environ is None else environ
    given = env.get(LOG_ENV, "").strip()
    return Path(given) if given else Path(tempfile.gettempdir()) / "metadj-probe" / "chunks.jsonl"


def _is_tensor(value: Any) -> bool:
    return hasattr(value, "shape") and hasattr(value, "dtype") and not isinstance(value, (str, bytes))


def _describe(value: Any) -> str:
    """A short description of a tensor or a list of tensors: ``12 x 1x192x320x3 uint8``."""
    items = value if isinstance(value, (list, tuple)) else [value]
    first = items[0] if items else None
    shape = "x".join(str(int(n)) for n in getattr(first, "shape", ()))
    dtype = str(getattr(first, "dtype", "")).replace("torch.", "")
    return f"{len(items)} x {shape} {dtype}".strip()


def json_safe(value: Any) -> Any:
    """``value`` as plain JSON data: mappings, lists, strings, finite numbers, booleans, None; else its ``str``."""
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, Mapping):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if isinstance(value, (set, frozenset)):
        return sorted((json_safe(v) for v in value), key=str)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return json_safe(dataclasses.asdict(value))
    if hasattr(value, "model_dump"):
        return json_safe(value.model_dump())
    if hasattr(value, "item") and getattr(value, "ndim", 1) == 0:  # a numpy or torch scalar
        return json_safe(value.item())
    return str(value)


def split_kwargs(kwargs: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, str]]:
    """``(received, inputs)``: the JSON-safe parameters, and a description of the tensors left out."""
    received: dict[str, Any] = {}
    inputs: dict[str, str] = {}
    for key, value in kwargs.items():
        tensors = _is_tensor(value) or (
            isinstance(value, (list, tuple)) and bool(value) and all(_is_tensor(v) for v in value))
        if tensors:
            inputs[key] = _describe(value)
        elif key.endswith("_timestamps"):
            inputs[key] = f"{len(value)} timestamps" if isinstance(value, (list, tuple)) else str(value)
        else:
            received[key] = json_safe(value)
    return received, inputs


def input_mode(kwargs: Mapping[str, Any]) -> str:
    """Scope's ``resolve_input_mode``: video when a ``video`` input came with the call, else text."""
    return "video" if kwargs.get("video") is not None else "text"


def used_parameters(
    received: Mapping[str, Any], mode: str, default_steps: Sequence[int] = DEFAULT_STEPS
) -> tuple[dict[str, Any], list[str]]:
    """``(used, ignored)``: what a Wan pipeline acts on in ``mode`` (Scope's ``defaults.py``), and what it drops."""
    used = dict(received)
    ignored: list[str] = []
    if mode == "text" and not received.get("_modulated_noise_scale"):
        for key in TEXT_MODE_IGNORES:
            if key in used:
                del used[key]
                ignored.append(key)
    if "denoising_step_list" not in used and default_steps:
        used["denoising_step_list"] = list(default_steps)
    return used, ignored


def _resize_nearest(frames: numpy.ndarray, height: int, width: int) -> numpy.ndarray:
    """(T, h, w, C) -> (T, height, width, 3) by nearest neighbour: cheap and good enough for a probe."""
    rows = (numpy.arange(height) * frames.shape[1] // height).clip(0, frames.shape[1] - 1)
    cols = (numpy.arange(width) * frames.shape[2] // width).clip(0, frames.shape[2] - 1)
    return frames[:, rows][:, :, cols][..., :3]


def paint(
    chunk: int, digest: int, height: int, width: int, frames: int = CHUNK_FRAMES, source: numpy.ndarray | None = None
) -> numpy.ndarray:
    """One chunk's frames, (frames, height, width, 3) uint8: a plain picture, a moving bar, the stamp.

    The picture is one colour taken from ``digest`` (so any change of the used parameters shows), or in video mode
    the input frames; a grey bar walks along the bottom so consecutive frames differ; the stamp carries
    ``(chunk, digest)`` in the top-left corner.
    """
    out = numpy.empty((frames, height, width, 3), numpy.uint8)
    if source is not None and len(source):
        picked = source[numpy.linspace(0, len(source) - 1, frames).round().astype(int)]
        out[:] = _resize_nearest(picked, height, width)
    else:
        out[:] = [48 + ((digest >> shift) & 0xFF) * 160 // 255 for shift in (16, 8, 0)]
    bar = max(4, width // 40)
    for i in range(frames):
        x = ((chunk * frames + i) * bar) % max(1, width - bar)
        out[i, height - height // 8:, x:x + bar] = 128
        draw_stamp(out[i], chunk, digest)
    return out


class ChunkLog:
    """Appends JSON lines to the probe's log file; thread-safe, one short open-append-close per line."""

    def __init__(self, path: str | os.PathLike[str] | None = None) -> None:
        self.path = Path(path) if path is not None else default_log_path()
        self._lock = threading.Lock()

    def write(self, entry: Mapping[str, Any]) -> None:
        line = json.dumps(json_safe(entry), separators=(",", ":"), sort_keys=True)
        with self._lock:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self.path.open("a", encoding="utf-8") as handle:
                handle.write(line + "\n")


def read_log(path: str | os.PathLike[str] | None = None, *, since: float = 0.0) -> list[dict[str, Any]]:
    """The log's entries with ``t >= since`` (wall time), in file order; a torn last line is skipped."""
    target = Path(path) if path is not None else default_log_path()
    if not target.exists():
        return []
    entries = []
    for line in target.read_text(encoding="utf-8").splitlines():
        try:
            entry = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(entry, dict) and float(entry.get("t", 0.0)) >= since:
            entries.append(entry)
    return entries


def chunks_of(entries: Iterable[Mapping[str, Any]], instance: str | None = None) -> list[Mapping[str, Any]]:
    """The ``chunk`` entries (of one pipeline instance, when given), in order."""
    return [e for e in entries if e.get("type") == "chunk" and (instance is None or e.get("instance") == instance)]
