"""Reading a show log back (the format is in :mod:`.log`): ``read_show_log`` gives a typed :class:`ShowRecording`.

A show log may come from anywhere (a file someone sent, a damaged disk, a log edited by hand), and ``replay`` and
``export-timeline`` act on what it says. So it is typed here, once, and whatever the file holds the only error that
comes out is one :class:`ShowLogError` line naming ``file:line``:

- only a regular file is opened (a FIFO would block the command for ever, a device might never end), without
  blocking, and checked again once open;
- the file is read a line at a time, at most :data:`MAX_LINE_BYTES` of a line (a line of gigabytes, or a file
  with no line end at all, would cost that much memory before anything could refuse it), text that is not UTF-8
  read as replacement characters;
- a time is a number of seconds from 0 to a year (``Infinity`` or ``1e400`` would make a replay wait for ever and
  an export write a timeline no one can import), a picture side is 1 to 4096 pixels;
- the values an error line quotes are shortened and escaped: a line of megabytes, or one holding terminal
  escapes, is quoted in a few dozen characters.

A cut-off last line (a crash mid-write) is tolerated: the show did not end cleanly, and it is read up to there.
"""

from __future__ import annotations

import json
import logging
import os
import reprlib
import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from metadj_bridge.errors import MetaDJError, NotRegularFile, open_regular, printable

__all__ = ["FORMAT_VERSION", "SentMessage", "ShowEvent", "ShowHeader", "ShowLogError", "ShowRecording",
           "read_show_log"]

log = logging.getLogger(__name__)

#: The ``version`` in the header this code writes and reads.
FORMAT_VERSION = 1
#: The latest time a show log may give an entry: a year of seconds.
MAX_SECONDS = 366 * 24 * 3600.0
#: The widest and tallest picture a header may give (a profile allows at most 2048).
MAX_SIDE = 4096
#: The longest line read. A show writes lines of a few KB at most (a header with every parameter, prompts of at
#: most 2000 characters); 1 MiB leaves room for hundreds of those.
MAX_LINE_BYTES = 1024 * 1024


class ShowLogError(MetaDJError):
    """A show log that cannot be read: the message names the file and line (escaped: it is one line)."""

    def __init__(self, message: str) -> None:
        super().__init__(printable(message))


@dataclass(frozen=True)
class ShowHeader:
    started: str
    profile: str | None
    pipeline: str
    width: int
    height: int
    input_mode: str
    initial: dict[str, Any]
    denoising_step_list: list[int] | None = None
    #: Any other header fields, as written.
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class SentMessage:
    t: float
    wall: str | None
    message: dict[str, Any]


@dataclass(frozen=True)
class ShowEvent:
    t: float
    text: str
    #: How many events of its kind this entry stands for (they came too close together; this is the latest).
    count: int = 1


@dataclass
class ShowRecording:
    """A show log as read back."""

    path: Path
    header: ShowHeader
    sent: list[SentMessage]
    events: list[ShowEvent]
    #: Seconds from the start to the end marker (a finished show) or to the last entry (a crashed one).
    duration: float
    #: The show did not end cleanly: no end marker, or a last line cut short.
    truncated: bool


_HEADER_KEYS = {"type", "version", "started", "profile", "pipeline", "width", "height", "input_mode", "initial",
                "denoising_step_list"}


def _shown(value: Any) -> str:
    """A value from the file for an error line: at most a few dozen characters."""
    return reprlib.repr(value)


def _open(p: Path) -> BinaryIO:
    """The show log open for reading, once it is known to be a regular file (``errors.open_regular``)."""
    try:
        return os.fdopen(open_regular(p), "rb")
    except NotRegularFile as exc:
        if exc.kind == "a folder":
            raise ShowLogError(f"{p}: is a folder, not a show log") from None
        raise ShowLogError(f"{p}: {exc.kind}, not a show log; give the .jsonl file a show wrote") from None
    except OSError as exc:
        raise ShowLogError(f"{p}: cannot read the show log ({exc.strerror or exc})") from None
    except ValueError as exc:  # a NUL byte in the name
        raise ShowLogError(f"{p}: not a usable file name ({exc})") from None


def _lines(p: Path) -> Iterator[tuple[int, str]]:
    """(line number, text) of every line that is not blank; lines end at ``\\n`` only, as the log writes them."""
    with _open(p) as f:
        lineno = 0
        while True:
            try:
                raw = f.readline(MAX_LINE_BYTES + 1)
            except OSError as exc:
                raise ShowLogError(f"{p}: cannot read the show log ({exc.strerror or exc})") from None
            if not raw:
                return
            lineno += 1
            if len(raw) > MAX_LINE_BYTES and not raw.endswith(b"\n"):
                raise ShowLogError(f"{p}:{lineno}: a line longer than {MAX_LINE_BYTES // 1024} KB (a show writes a "
                                   "few KB a line): not a show log, or a damaged one")
            if raw.strip():
                yield lineno, raw.decode("utf-8", errors="replace")


def _decode(line: str, where: str) -> tuple[Any, ShowLogError | None]:
    """The line's JSON, or the error it makes (a JSON error may be a crash's cut-off last line: the caller decides)."""
    try:
        return json.loads(line), None
    except json.JSONDecodeError as exc:
        return None, ShowLogError(f"{where}: not JSON ({exc.msg} at column {exc.colno})")
    except RecursionError:
        raise ShowLogError(f"{where}: not JSON (nested too deeply to read)") from None
    except ValueError:  # Python refuses to read an integer of more digits than this
        raise ShowLogError(f"{where}: not JSON (a number of more than {sys.get_int_max_str_digits()} digits)") from None


def read_show_log(path: str | os.PathLike[str]) -> ShowRecording:
    """Read a show log. A cut-off last line (a crash mid-write) is tolerated; anything else wrong raises
    ``ShowLogError`` naming ``file:line``."""
    p = Path(path)
    header: ShowHeader | None = None
    sent: list[SentMessage] = []
    events: list[ShowEvent] = []
    end: float | None = None
    last_t = 0.0
    cut: tuple[str, ShowLogError] | None = None  # a line that is not JSON: an error unless it is the last
    for lineno, line in _lines(p):
        if cut is not None:
            raise cut[1]
        where = f"{p}:{lineno}"
        entry, problem = _decode(line, where)
        if problem is not None:
            cut = (where, problem)
            continue
        if not isinstance(entry, dict):
            raise ShowLogError(f"{where}: expected a JSON object, got {type(entry).__name__}")
        kind = entry.get("type")
        if header is None:
            if kind != "header":
                raise ShowLogError(f"{where}: a show log starts with a header line, found type {_shown(kind)}")
            header = _header(entry, where)
            continue
        if kind == "sent":
            message = entry.get("message")
            if not isinstance(message, dict):
                raise ShowLogError(f"{where}: 'message' must be an object, got {_shown(message)}")
            wall = entry.get("wall")
            t = _time(entry, where)
            sent.append(SentMessage(t, wall if isinstance(wall, str) else None, message))
        elif kind == "event":
            t, count = _time(entry, where), entry.get("count", 1)
            count = count if isinstance(count, int) and not isinstance(count, bool) and count > 1 else 1
            events.append(ShowEvent(t, str(entry.get("text", "")), count))
        elif kind == "end":
            t = end = _time(entry, where)
        elif kind == "header":
            raise ShowLogError(f"{where}: a second header (two shows in one file?)")
        else:
            log.debug("%s: skipping an entry of unknown type %s", where, _shown(kind))
            continue
        last_t = max(last_t, t)
    if cut is not None:
        if header is None:
            raise cut[1]
        log.warning("%s: the last line is cut short (the show did not end cleanly); read up to it", printable(cut[0]))
    if header is None:
        raise ShowLogError(f"{p}: empty file, not a show log")
    sent.sort(key=lambda s: s.t)
    events.sort(key=lambda e: e.t)
    duration = end if end is not None else last_t
    return ShowRecording(p, header, sent, events, duration, cut is not None or end is None)


def _time(entry: Mapping[str, Any], where: str) -> float:
    t = entry.get("t")
    # Compared before any conversion: an integer of 400 digits is no float, Infinity is no time to wait for.
    if isinstance(t, bool) or not isinstance(t, (int, float)) or not 0 <= t <= MAX_SECONDS:
        raise ShowLogError(f"{where}: 't' must be a number of seconds from 0 to {MAX_SECONDS:.0f} (a year), "
                           f"got {_shown(t)}")
    return float(t)


def _header(entry: Mapping[str, Any], where: str) -> ShowHeader:
    version = entry.get("version")
    if not isinstance(version, int) or isinstance(version, bool):
        raise ShowLogError(f"{where}: header 'version' must be a whole number, got {_shown(version)}")
    if version > FORMAT_VERSION:
        raise ShowLogError(
            f"{where}: show log version {_shown(version)} was written by a newer metadj-bridge (this one reads "
            f"version {FORMAT_VERSION}); upgrade to read it"
        )
    pipeline = entry.get("pipeline")
    if not isinstance(pipeline, str) or not pipeline:
        raise ShowLogError(f"{where}: header 'pipeline' must be a pipeline id, got {_shown(pipeline)}")
    size = []
    for key in ("width", "height"):
        value = entry.get(key)
        if isinstance(value, bool) or not isinstance(value, int) or not 0 < value <= MAX_SIDE:
            raise ShowLogError(f"{where}: header '{key}' must be a whole number of pixels from 1 to {MAX_SIDE}, "
                               f"got {_shown(value)}")
        size.append(value)
    initial = entry.get("initial", {})
    if not isinstance(initial, dict):
        raise ShowLogError(f"{where}: header 'initial' must be an object of parameters, got {_shown(initial)}")
    input_mode = entry.get("input_mode", "text")
    if input_mode not in ("text", "video"):
        raise ShowLogError(f"{where}: header 'input_mode' must be 'text' or 'video', got {_shown(input_mode)}")
    steps = entry.get("denoising_step_list")
    if steps is not None and not (isinstance(steps, list) and all(isinstance(s, int) for s in steps)):
        raise ShowLogError(f"{where}: header 'denoising_step_list' must be a list of timesteps, got {_shown(steps)}")
    profile = entry.get("profile")
    return ShowHeader(
        started=str(entry.get("started", "")),
        profile=profile if isinstance(profile, str) else None,
        pipeline=pipeline,
        width=size[0],
        height=size[1],
        input_mode=input_mode,
        initial=initial,
        denoising_step_list=steps,
        extra={k: v for k, v in entry.items() if k not in _HEADER_KEYS},
    )
