"""Logging that a flood cannot turn into a full disk.

Anything that can fail at input rate (a bad OSC sender, a broken frame or audio listener at 20-86 Hz, a
controller streaming CCs) logs through ``RateLimitedWarning``: the first problem at once, then at most one
line per interval with the count and the last reason.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable


class RateLimitedWarning:
    """Counts problems; logs the first at once, then at most one WARNING per ``interval`` with the count."""

    def __init__(self, log: logging.Logger, what: str, interval: float = 10.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._log = log
        self._what = what
        self.interval = interval
        self._clock = clock
        self._last_log: float | None = None
        self._count = 0
        self._last_reason = ""
        self.logged = 0

    def mark(self) -> None:
        """Something was just logged by other means: start the quiet interval now."""
        self._last_log = self._clock()
        self._count = 0

    def note(self, reason: str) -> None:
        self._count += 1
        self._last_reason = reason
        now = self._clock()
        if self._last_log is None or now - self._last_log >= self.interval:
            self._log.warning("%s: %d in the last %.0f s; last: %s", self._what, self._count,
                              self.interval if self._last_log is not None else 0.0, reason)
            self._last_log = now
            self._count = 0
            self.logged += 1

    def listener_failed(self, listener: object, exc: BaseException) -> None:
        """A listener raised: the first failure with its traceback, later ones counted into ``note``."""
        if self.logged == 0:
            self._log.error("%s: %r failed", self._what, listener, exc_info=exc)
            self.logged += 1
            self.mark()
        else:
            self.note(f"{type(exc).__name__}: {exc}")


# ------------------------------------------------------------------------------------------ redaction

#: user:password@ in a URL, and the values of query parameters that carry secrets.
_CREDENTIALS = re.compile(r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]*://)(?P<userinfo>[^/@\s]+)@")
_SECRET_QUERY = re.compile(
    r"(?P<key>[?&](?:token|access_token|auth|key|api_key|apikey|secret|password|passwd|signature|sig|credential)=)"
    r"(?P<value>[^&#\s'\"]+)",
    re.IGNORECASE,
)


def redact_text(text: str) -> str:
    """``text`` with URL credentials and secret query values replaced by ``***`` (for logs and error lines)."""
    if "://" not in text and "=" not in text:
        return text
    text = _CREDENTIALS.sub(lambda m: f"{m.group('scheme')}***@", text)
    return _SECRET_QUERY.sub(lambda m: f"{m.group('key')}***", text)


class RedactingFilter(logging.Filter):
    """Scrubs credentials and tokens from every record that passes (installed on the handlers by the CLI)."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001 - a broken log call: leave it to logging's own error handling
            return True
        clean = redact_text(message)
        if clean != message:
            record.msg, record.args = clean, None
        return True
