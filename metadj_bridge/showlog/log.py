"""Show logs: every parameter message a show sent, with its time, in a JSONL file.

A show log lets a set be looked at, re-rendered (``metadj-bridge export-timeline``) or played again
(``metadj-bridge replay``). One JSON object per line::

    {"type": "header", "version": 1, "started": ISO wall time, "profile": path, "pipeline": id,
     "width": w, "height": h, "input_mode": "text", "initial": {initial parameters}, ...}
    {"type": "sent", "t": seconds since start, "wall": ISO wall time, "message": {...}}
    {"type": "event", "t": seconds since start, "text": "theme 2 (neon)"}   (+ "count": n, the latest of n)
    {"type": "end", "t": seconds since start}                      (written by close())

Events of one kind closer than a quarter of a second fold into one entry, the latest with the count of those it
stands for (:mod:`.folding`): a flood of control requests writes a few entries a second, not one per request.

``ShowLog.record(message, t)`` has the signature of ``ParameterSender.on_sent`` and runs on the event loop:
it only encodes and appends a line; a background thread writes the lines about once a second. A full disk or
an unwritable path is logged (rate-limited) and the show goes on without its log. Text that UTF-8 cannot hold
(half of a UTF-16 surrogate pair, as JSON's ``"\\ud800"`` reads) is written as JSON escapes, so its line still
reads back as what was sent. Reading one back (``read_show_log``, a typed :class:`ShowRecording`) is
:mod:`.reading`'s; its names are here too.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import sys
import threading
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

from platformdirs.api import PlatformDirsABC

from metadj_bridge.errors import RateLimitedWarning
from metadj_bridge.showlog.folding import Entry, EventFolder, event_kind
from metadj_bridge.showlog.reading import (
    FORMAT_VERSION,
    SentMessage,
    ShowEvent,
    ShowHeader,
    ShowLogError,
    ShowRecording,
    read_show_log,
)

__all__ = [
    "FORMAT_VERSION",
    "SentMessage",
    "ShowEvent",
    "ShowHeader",
    "ShowLog",
    "ShowLogError",
    "ShowRecording",
    "default_show_log_path",
    "read_show_log",
    "show_log_header",
]

log = logging.getLogger(__name__)

#: Half of a UTF-16 surrogate pair: a str may hold one, a UTF-8 file cannot.
_SURROGATE = re.compile("[\ud800-\udfff]")


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def show_log_header(
    *,
    pipeline: str,
    width: int,
    height: int,
    initial: Mapping[str, Any],
    profile: str | None = None,
    input_mode: str = "text",
    denoising_step_list: list[int] | tuple[int, ...] | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """The header a ``ShowLog`` starts with (``started`` is filled in by the log itself).

    ``initial`` is the parameter state the show started from (``ShowRunner.initial_parameters()``);
    ``denoising_step_list`` the steps of the pipeline load, so a replay and a timeline use the same ones.
    """
    header: dict[str, Any] = {
        "profile": profile,
        "pipeline": pipeline,
        "width": int(width),
        "height": int(height),
        "input_mode": input_mode,
        "initial": dict(initial),
    }
    if denoising_step_list is not None:
        header["denoising_step_list"] = list(denoising_step_list)
    header.update(extra)
    return header


def user_dirs(platform: str = sys.platform) -> PlatformDirsABC:
    """The bridge's per-user folders by platformdirs, for ``platform`` (this machine's by default)."""
    from platformdirs.macos import MacOS
    from platformdirs.unix import Unix
    from platformdirs.windows import Windows

    kind = MacOS if platform == "darwin" else Windows if platform.startswith("win") else Unix
    return kind("metadj-bridge", appauthor=False)


def default_show_log_path(now: datetime | None = None, *, platform: str = sys.platform) -> Path:
    """Where a show log goes by default: the user's state (Linux), logs (macOS) or local data (Windows) folder.

    Linux: ``$XDG_STATE_HOME/metadj-bridge/shows/`` (``~/.local/state/...`` without it); macOS:
    ``~/Library/Logs/metadj-bridge/shows/``; Windows: ``%LOCALAPPDATA%\\metadj-bridge\\shows\\``. The file is
    named after the local date and time the show started: ``show-2026-11-24_21-30-05.jsonl``.
    """
    now = now or datetime.now()
    dirs = user_dirs(platform)
    base = dirs.user_log_path if platform == "darwin" else dirs.user_state_path
    return base / "shows" / f"show-{now:%Y-%m-%d_%H-%M-%S}.jsonl"


def _unused(path: Path) -> Path:
    """``path``, or ``name-2.jsonl``, ``name-3.jsonl``... when a show log is already there: one show per file."""
    try:
        if not path.exists():
            return path
        for n in range(2, 10_000):
            candidate = path.with_name(f"{path.stem}-{n}{path.suffix}")
            if not candidate.exists():
                return candidate
    except (OSError, ValueError):  # a name the system refuses: opening it says so, and the show goes on without
        pass
    return path


class ShowLog:
    """Writes one show's log without ever blocking the event loop.

    An existing file is never appended to or overwritten: the log goes to ``name-2.jsonl`` instead (``path``
    says where it went).

    ``record(message, t)`` is ``ParameterSender.on_sent``: ``t`` is the sender's clock (``time.monotonic``), and
    the log stores it as seconds since the log was opened (durations, for replay), and the time of day (``wall``).
    ``event(text)`` notes a theme change, a profile switch or a reconnect. ``close()`` (or ``await aclose()``)
    writes what is left and an end marker; closing twice is harmless, and lines recorded after closing are ignored.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        header: Mapping[str, Any],
        *,
        flush_interval: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self.path = _unused(Path(path))
        self.flush_interval = flush_interval
        self._clock = clock
        self.t0 = clock()
        self._wall_clock = wall_clock
        self._wall0 = wall_clock()
        self._lines: list[str] = []
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._closed = False
        self._file: IO[str] | None = None
        self._open_failed = False
        self._warning = RateLimitedWarning(log, f"show log {self.path} cannot be written", interval=60.0)
        self._escaped = RateLimitedWarning(log, f"show log {self.path}: entries with text that is not UTF-8, "
                                           "written escaped", interval=60.0)
        #: Lines handed to the file, and lines lost to a full disk or an unwritable path.
        self.lines_written = 0
        self.lines_lost = 0
        self.messages = 0
        self.folder = EventFolder()
        full = {"type": "header", "version": FORMAT_VERSION, "started": _iso(self._wall0), **header}
        full["type"], full["version"] = "header", FORMAT_VERSION
        self._append(full)
        self._thread = threading.Thread(target=self._write_loop, name="show-log-writer", daemon=True)
        self._thread.start()

    # ---------------------------------------------------------------- event loop side

    def record(self, message: Mapping[str, Any], t: float) -> None:
        """One parameter message as sent at ``t`` (the sender's monotonic time)."""
        if self._closed:
            return
        rel = t - self.t0
        self.messages += 1
        # For people: the time of day it was. Not wall0 + rel: the monotonic clock stands still while the computer
        # sleeps (Linux, macOS), so after a closed lid that sum would be behind by the whole sleep.
        wall = self._wall_clock() - (self._clock() - t)
        self._append({"type": "sent", "t": round(rel, 4), "wall": _iso(wall), "message": message})

    def event(self, text: str, t: float | None = None) -> None:
        """Something worth seeing in the log next to the messages: a theme change, a switch, a reconnect. Events of
        one kind closer than :data:`~.folding.FOLD_INTERVAL` fold into one entry (written later, with a count)."""
        if self._closed:
            return
        rel, text = round((self._clock() if t is None else t) - self.t0, 4), str(text)
        with self._lock:
            ready = self.folder.add(rel, text, event_kind(text))
        self._append_events(ready)

    def _append_events(self, entries: list[Entry]) -> None:
        for t, text, count in entries:
            self._append({"type": "event", "t": t, "text": text, **({"count": count} if count > 1 else {})})

    def _append(self, entry: Mapping[str, Any]) -> None:
        try:
            line = json.dumps(entry, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
        except (TypeError, ValueError) as exc:
            self.lines_lost += 1
            self._warning.note(f"an entry could not be encoded ({exc})")
            return
        if not line.isascii() and _SURROGATE.search(line):
            line = json.dumps(entry, separators=(",", ":"), allow_nan=False)  # every character outside ASCII escaped
            self._escaped.note(f"a {entry.get('type')} entry")
        with self._lock:
            self._lines.append(line)

    def close(self) -> None:
        """Write everything recorded, an end marker, and close the file. Blocks until written."""
        if self._closed:
            return
        with self._lock:
            held = self.folder.drain()
        self._append_events(held)
        self._append({"type": "end", "t": round(self._clock() - self.t0, 4)})
        self._closed = True
        self._wake.set()
        self._thread.join()

    async def aclose(self) -> None:
        await asyncio.to_thread(self.close)

    # ---------------------------------------------------------------- writer thread

    def _write_loop(self) -> None:
        try:
            while True:
                stopping = self._wake.wait(self.flush_interval)
                with self._lock:
                    due = self.folder.due(self._clock() - self.t0)
                self._append_events(due)
                self._write_pending()
                if stopping and self._closed:
                    break
        finally:
            if self._file is not None:
                try:
                    self._file.close()
                except OSError as exc:
                    self._warning.note(str(exc))
                self._file = None

    def _write_pending(self) -> None:
        with self._lock:
            lines, self._lines = self._lines, []
        if not lines:
            return
        out = self._open()
        if out is None:
            self.lines_lost += len(lines)
            return
        try:
            out.write("".join(line + "\n" for line in lines))
            out.flush()
            self.lines_written += len(lines)
        except (OSError, ValueError) as exc:  # ValueError: text the file cannot encode, should any get past _append
            self.lines_lost += len(lines)
            self._warning.note(f"{exc}; the show goes on without these {len(lines)} lines")

    def _open(self) -> IO[str] | None:
        if self._file is not None or self._open_failed:
            return self._file
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._file = open(self.path, "a", encoding="utf-8")  # noqa: SIM115 - closed by the writer thread
        except OSError as exc:
            self._open_failed = True
            log.warning("show log %s cannot be written (%s); the show goes on without a log", self.path, exc)
            return None
        log.info("show log: %s", self.path)
        return self._file
