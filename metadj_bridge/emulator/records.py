"""What the emulator saw and did, kept for tests and for the log endpoints.

Tests ask "was the last message applied, and in which chunk?", so every data-channel message is
recorded when it arrives (``received``), when it is dropped by the full queue (``dropped``) and when
the chunk loop merges it (``applied``). Times are ``time.monotonic()``: on Linux that clock is shared
by every process, so a test can compare them with its own. All lists are bounded.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from dataclasses import dataclass
from typing import Any


@dataclass
class Counters:
    """Totals over the server's life (a restart fault does not reset them)."""

    messages_received: int = 0
    messages_applied: int = 0
    messages_dropped: int = 0
    frames_sent: int = 0
    sessions: int = 0


class EventRecords:
    """Bounded lists behind ``GET /_emulator/log`` plus the counters of ``/api/v1/session/metrics``."""

    def __init__(self, limit: int) -> None:
        self.counters = Counters()
        self.offers: deque[dict[str, Any]] = deque(maxlen=limit)
        self.received: deque[dict[str, Any]] = deque(maxlen=limit)
        self.applied: deque[dict[str, Any]] = deque(maxlen=limit)
        self.dropped: deque[dict[str, Any]] = deque(maxlen=limit)

    def offer(self, session_id: str, initial_parameters: dict[str, Any]) -> None:
        """An accepted offer: its ``initialParameters`` as sent, plus ``sessionId``."""
        self.counters.sessions += 1
        self.offers.append({**initial_parameters, "sessionId": session_id})

    def message_received(self, session_id: str, index: int, message: Any, *, dropped: bool) -> None:
        """Record an arriving message; ``dropped`` when the full queue refused it."""
        entry = {"session_id": session_id, "index": index, "t": time.monotonic(), "message": message}
        self.counters.messages_received += 1
        self.received.append(entry)
        if dropped:
            self.counters.messages_dropped += 1
            self.dropped.append(entry)

    def message_applied(self, session_id: str, chunk: int, message: Any) -> None:
        self.counters.messages_applied += 1
        self.applied.append({"session_id": session_id, "chunk": chunk, "t": time.monotonic(), "message": message})

    def frame_sent(self) -> None:
        self.counters.frames_sent += 1

    def snapshot(self) -> dict[str, list[dict[str, Any]]]:
        return {
            "offers": list(self.offers),
            "received": list(self.received),
            "applied": list(self.applied),
            "dropped": list(self.dropped),
        }


EmulatorLog = logging.LoggerAdapter[logging.Logger]


def emulator_log(module_logger: logging.Logger, emulator_id: str) -> EmulatorLog:
    """``module_logger`` tagged with the emulator it speaks for, so ``LogTail`` can tell emulators apart."""
    return logging.LoggerAdapter(module_logger, {"emulator_id": emulator_id})


class LogTail(logging.Handler):
    """The emulator's own log lines, numbered, for ``GET /api/v1/logs/tail``.

    Scope puts the reason of a failed load only in its log file (its status ``error`` is always
    null), so clients read it here. Attached to the emulator package logger only while this
    emulator runs; records carrying another emulator's ``emulator_id`` are skipped, so two
    emulators in one test process keep separate tails.
    """

    def __init__(self, emulator_id: str, limit: int) -> None:
        super().__init__(level=logging.DEBUG)
        self.emulator_id = emulator_id
        self.lines: deque[str] = deque(maxlen=limit)
        #: Lines written so far; the number of the next line.
        self.offset = 0
        self.setFormatter(logging.Formatter("%(asctime)s - %(name)s - %(levelname)s - %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        owner = getattr(record, "emulator_id", None)
        if owner is not None and owner != self.emulator_id:
            return
        try:
            line = self.format(record)
        except Exception:  # a bad format string must not break the server
            line = f"{record.levelname} {record.msg!r}"
        self.lines.append(line)
        self.offset += 1

    def tail(self, lines: int, since_offset: int | None = None) -> dict[str, Any]:
        """The last ``lines`` lines (or those after ``since_offset``) and the current offset."""
        available = list(self.lines)
        if since_offset is not None:
            first_kept = self.offset - len(available)
            available = available[max(0, since_offset - first_kept) :]
        return {"lines": available[-lines:] if lines > 0 else [], "offset": self.offset}


#: The emulator's package logger, where :class:`LogTail` listens.
PACKAGE_LOGGER = "metadj_bridge.emulator"


class _BelowWarningOf(logging.Filter):
    """Keeps one logger's lines below WARNING (and its children's) off a handler."""

    def __init__(self, name: str) -> None:
        super().__init__()
        self.prefix = name

    def filter(self, record: logging.LogRecord) -> bool:
        name = record.name
        return record.levelno >= logging.WARNING or not (name == self.prefix or name.startswith(f"{self.prefix}."))


def hide_chatter_from_terminal() -> None:
    """For a command that runs the emulator in its process (``run``, ``replay`` without -v): it is a stand-in, so its
    own INFO lines stay off the terminal (the root logger's handlers). They are still logged, at INFO whatever the
    terminal's level: :class:`LogTail` serves them as Scope serves its log file, and the bridge reads the parameter
    messages Scope dropped and the pauses it did not send there. (Setting the package logger to WARNING, as before,
    left the tail without them.)"""
    logging.getLogger(PACKAGE_LOGGER).setLevel(logging.INFO)
    hide = _BelowWarningOf(PACKAGE_LOGGER)
    for handler in logging.getLogger().handlers:
        handler.addFilter(hide)
