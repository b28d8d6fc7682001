"""The one error a show profile can raise: :class:`ProfileError`, always with ``file:line:column``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from metadj_bridge.errors import ConfigError, printable

T = TypeVar("T")

#: A message longer than this (a key or a value of thousands of characters echoed back) keeps its start (the
#: file, line and key) and its end (what is wrong) and loses the middle.
MAX_MESSAGE = 1000


def clipped(message: str) -> str:
    if len(message) <= MAX_MESSAGE:
        return message
    return f"{message[:700]} ... {message[-(MAX_MESSAGE - 705):]}"


class ProfileError(ConfigError):
    """A profile that cannot be used as written.

    The message reads ``file:line:column: key.path: value: what is wrong (what is allowed)``; the parts are
    also attributes so an editor integration can jump to the spot. The message never holds a control
    character from the file (see :func:`printable`).
    """

    def __init__(self, message: str, *, file: str = "", line: int = 0, column: int = 0, key_path: str = "") -> None:
        super().__init__(clipped(printable(message)))
        self.file = file
        self.line = line
        self.column = column
        self.key_path = key_path


class Findings:
    """Where a loader puts the ProfileErrors it finds: raised at once (loading), or kept while the loader goes on
    with the next section or entry (``check``, which reports every mistake in a file, not only the first)."""

    def __init__(self, *, keep_going: bool = False) -> None:
        self.keep_going = keep_going
        self.errors: list[ProfileError] = []

    def attempt(self, build: Callable[..., T], *args: Any, default: Any) -> T:
        """``build(*args)``; on a ProfileError, raise it, or keep it and return ``default`` (a stand-in of the
        same kind: the defaults of a section, an empty tuple, or None where the model allows it)."""
        try:
            return build(*args)
        except ProfileError as exc:
            if not self.keep_going:
                raise
            self.errors.append(exc)
            return default
