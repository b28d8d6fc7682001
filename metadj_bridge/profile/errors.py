"""The one error a show profile can raise: :class:`ProfileError`, always with ``file:line:column``."""

from __future__ import annotations

from metadj_bridge.errors import ConfigError


class ProfileError(ConfigError):
    """A profile that cannot be used as written.

    The message reads ``file:line:column: key.path: value: what is wrong (what is allowed)``; the parts are
    also attributes so an editor integration can jump to the spot.
    """

    def __init__(self, message: str, *, file: str = "", line: int = 0, column: int = 0, key_path: str = "") -> None:
        super().__init__(message)
        self.file = file
        self.line = line
        self.column = column
        self.key_path = key_path
