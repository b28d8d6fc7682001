"""The project's exception tree.

Every error a performer can act on derives from ``MetaDJError`` and carries a message that says what
happened, the value involved and what to do. The CLI prints ``error: <message>`` and exits with one of the
``EXIT_*`` codes below.

    MetaDJError
     ├── ConfigError                 bad command-line value, URL or setting
     ├── VideoError                  a video output or input that cannot work here
     │    ├── VideoOutputError       no virtual camera backend, a recording file that cannot be written
     │    └── VideoInputError        a webcam that is missing or busy, a video file that cannot be read
     └── ScopeError                  anything between the bridge and a Scope server
          ├── ScopeConnectionError   cannot reach the server (down, DNS, refused, timeout)  [transient]
          ├── ScopeTLSError          the TLS handshake failed (certificate, https to an http port)
          ├── ScopeNotFoundError     the URL answers, but the path is wrong (404)
          ├── ScopeNotScopeError     something answers that is not a Scope server
          ├── ScopeHTTPError         Scope answered with an unexpected status
          ├── ScopeBadAnswerError    a redirect loop, a broken exchange, a corrupt or endless body, a data-channel
          │                          message that cannot be read  [transient]
          ├── PipelineLoadError      Scope could not load the pipeline
          │    └── PipelineLoadTimeout   the load did not finish in time
          ├── ScopeSessionError      the WebRTC session could not be set up or was lost
          └── ParameterError         a parameter value the pipeline would not accept

The rest of this module is how errors reach the performer without harm: ``RateLimitedWarning`` keeps a flood of bad
input (a broken OSC sender, a failing listener at 86 Hz) from filling the disk, ``LibraryLogLimiter`` does the same
for the libraries' own warnings (aiortc's line per frame it cannot decode), ``printable`` keeps text from
outside (a profile's device name, a file name) from echoing control characters into a log or a terminal, ``reason``
gives an error's own words for one line, ``redact_text`` / ``RedactingFilter`` keep credentials and tokens in
URLs out of every log and error line, and ``open_regular`` opens a file someone named without hanging on a FIFO or a
device (``NotRegularFile`` says what the path is instead).
"""

from __future__ import annotations

import logging
import os
import re
import stat
import threading
import time
from collections import OrderedDict
from collections.abc import Callable

#: Exit codes, for a supervisor (systemd's ``RestartPreventExitStatus=``, a script): what happened, and whether
#: starting again can help. 78 and 70 are the BSD ``sysexits.h`` codes for the same cases.
EXIT_OK = 0
EXIT_FAILURE = 1  # the show could not go on, or a check found problems: starting again may help
EXIT_USAGE = 2  # the command line itself is wrong (argparse)
EXIT_SOFTWARE = 70  # a bug in the bridge
EXIT_CONFIG = 78  # the profile, a setting or a missing extra: it cannot work until someone changes it
EXIT_CODES = {EXIT_OK: "done", EXIT_FAILURE: "failed", EXIT_USAGE: "usage", EXIT_SOFTWARE: "bug",
              EXIT_CONFIG: "configuration"}


class MetaDJError(Exception):
    """Root of every error metadj-bridge raises on purpose."""


class ConfigError(MetaDJError):
    """A setting, flag or URL that cannot be used as given."""


class VideoError(MetaDJError):
    """A video output or input that cannot work here."""


class VideoOutputError(VideoError):
    """A video output cannot be used (no virtual camera backend, an unwritable recording path)."""


class VideoInputError(VideoError):
    """A video input cannot be used (a missing or busy webcam, an unreadable video file)."""


class ScopeError(MetaDJError):
    """Something went wrong talking to a Scope server."""

    #: Whether trying again later may succeed (server starting, network blip).
    transient: bool = False


class ScopeConnectionError(ScopeError):
    """The server could not be reached at all."""

    transient = True


class ScopeTLSError(ScopeError):
    """The TLS handshake with the server failed."""


class ScopeNotFoundError(ScopeError):
    """The server answered 404: the URL or path is wrong."""


class ScopeNotScopeError(ScopeError):
    """The server answered, but it is not a Scope server."""


class ScopeHTTPError(ScopeError):
    """Scope answered with a status the bridge did not expect."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status
        # 5xx and 429 are worth retrying; 4xx are not.
        self.transient = status is None or status >= 500 or status == 429


class ScopeBadAnswerError(ScopeError):
    """Scope, or a proxy in front of it, answered with something that cannot be used: a redirect loop, a body that
    cannot be decoded or never ends, a data-channel message aiortc cannot read (dropped; the session goes on). Worth
    retrying: a proxy or a booting server often heals."""

    transient = True


class PipelineLoadError(ScopeError):
    """Scope reported that the pipeline failed to load."""

    transient = True


class PipelineLoadTimeout(PipelineLoadError):
    """The pipeline did not finish loading in time."""


class ScopeSessionError(ScopeError):
    """The WebRTC session could not be established or was lost."""

    transient = True


class ParameterError(MetaDJError, ValueError):
    """A parameter value that Scope's pipeline would not accept."""


class ClosedError(MetaDJError, RuntimeError):
    """A closed part was asked to start again: make a new one."""


# ------------------------------------------------------------------------------------------ outside text

#: Characters that join emoji and scripts; format characters, but harmless on a terminal.
_HARMLESS_FORMAT = frozenset("\u200c\u200d")


class NotRegularFile(Exception):
    """A path that names no regular file; ``kind`` says what it is ("a folder", "a named pipe (FIFO)" ...). Internal:
    callers turn it into their own error, worded for what they expected to read."""

    def __init__(self, kind: str) -> None:
        super().__init__(kind)
        self.kind = kind


def _check_regular(mode: int) -> None:
    if stat.S_ISREG(mode):
        return
    raise NotRegularFile("a folder" if stat.S_ISDIR(mode) else "a named pipe (FIFO)" if stat.S_ISFIFO(mode)
                         else "a device" if stat.S_ISCHR(mode) or stat.S_ISBLK(mode)
                         else "a socket" if stat.S_ISSOCK(mode) else "not a regular file")


def open_regular(path: str | os.PathLike[str]) -> int:
    """A descriptor open for reading on ``path``, once ``stat`` says it is a regular file: opened without blocking (a
    FIFO would hold the reader for ever, a device might never end) and checked again with ``fstat``, in case it was
    swapped between the two. Raises NotRegularFile, or OSError / ValueError (a NUL in the name) as ``os`` does."""
    _check_regular(os.stat(path).st_mode)
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0)
                 | getattr(os, "O_CLOEXEC", 0))
    try:
        _check_regular(os.fstat(fd).st_mode)
    except BaseException:
        os.close(fd)
        raise
    return fd


def printable(text: str) -> str:
    """``text`` safe for one log or terminal line: control characters (NUL, ESC, CR, LF, C1 codes), line and
    paragraph separators and invisible format characters (bidi overrides, BOM) become ``\\x1b``-style escapes.

    Text from outside (a profile's key or string, YAML's ``"\\e[31m"``, a device name) can hold any of these;
    echoed raw, they would recolour the terminal, move the cursor or split one line into several.
    """
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() or c in _HARMLESS_FORMAT else repr(c)[1:-1] for c in text)


def reason(exc: BaseException) -> str:
    """What went wrong, for one error line: an OS error's own words (``No space left on device``), else the
    exception's text (a name too long for IDNA, an embedded NUL), else its type."""
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc) or type(exc).__name__


# ------------------------------------------------------------------------------------------ rate limiting

class RateLimitedWarning:
    """Counts problems; logs the first at once (``what: reason``), then at most one WARNING per ``interval`` with the
    count (``what: 40 in the last 10 s; last: reason``).

    ``level`` makes it a rate-limited line of another level (INFO for comings and goings a client can flood)."""

    def __init__(self, log: logging.Logger, what: str, interval: float = 10.0,
                 clock: Callable[[], float] = time.monotonic, *, level: int = logging.WARNING) -> None:
        self._log = log
        self._what = what
        self._level = level
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
        if self._last_log is None:  # the first: what it was, nothing to count yet
            self._log.log(self._level, "%s: %s", self._what, reason)
            self._last_log = now
            self._count = 0
            self.logged += 1
        elif now - self._last_log >= self.interval:
            self._log.log(self._level, "%s: %d in the last %.0f s; last: %s", self._what, self._count,
                          self.interval, reason)
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


class LibraryLogLimiter(logging.Filter):
    """Rate-limits the warnings of libraries that log once per packet or frame, as ``RateLimitedWarning`` does for the
    bridge's own: aiortc says "failed to decode VP8 frame" for every frame a broken or hostile server sends, 30 lines
    a second for as long as the show runs. The first line of each kind (logger and message template) passes at once,
    then at most one per ``interval`` seconds, saying how many like it were held back meanwhile. Lines below WARNING
    (``-vv``) and the bridge's own pass untouched.

    One instance goes on every handler (the CLI's), so each record is decided once; it is thread-safe (aiortc's
    decoder logs from its own thread)."""

    #: Kinds of line remembered; a library that logs changing text (a traceback) cannot grow this without end.
    MAX_KINDS = 256

    def __init__(self, libraries: tuple[str, ...] = ("aiortc", "aioice", "av"), interval: float = 10.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__()
        self.libraries = libraries
        self.interval = interval
        self._clock = clock
        self._lock = threading.Lock()
        self._kinds: OrderedDict[tuple[str, str], list[float]] = OrderedDict()  # kind -> [last shown, held back]
        self._decided: tuple[logging.LogRecord, bool] | None = None  # the record the handlers are going through

    def filter(self, record: logging.LogRecord) -> bool:
        with self._lock:
            if self._decided is not None and self._decided[0] is record:
                return self._decided[1]
            shown = self._decide(record)
            self._decided = (record, shown)
            return shown

    def _decide(self, record: logging.LogRecord) -> bool:
        name = record.name
        if record.levelno < logging.WARNING or not any(name == lib or name.startswith(f"{lib}.")
                                                       for lib in self.libraries):
            return True
        key, now = (name, str(record.msg)), self._clock()
        kind = self._kinds.get(key)
        if kind is not None and now - kind[0] < self.interval:
            kind[1] += 1
            return False
        held = int(kind[1]) if kind is not None else 0
        self._kinds[key] = [now, 0]
        self._kinds.move_to_end(key)
        while len(self._kinds) > self.MAX_KINDS:
            self._kinds.popitem(last=False)
        if held:
            record.msg = f"{record.getMessage()} ({held} more like this in the last {self.interval:g} s)"
            record.args = None
        return True


# ------------------------------------------------------------------------------------------ redaction

#: user:password@ in a URL; the password may itself hold "@", so the user part runs to the authority's last "@".
_CREDENTIALS = re.compile(r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]*://)(?P<userinfo>[^/?#\s]*)@")
#: ``key=value`` where the key starts a query, a fragment, a parameter or a word; the value may be quoted, and
#: a ":" or "." right after it belongs to the sentence ("...?token=abc: no answer").
_PAIR = re.compile(
    r"(?P<key>(?:^|(?<=[?&#;\s,(\[{'\"]))[A-Za-z0-9_.~-]+=)(?P<quote>['\"]?)"
    r"(?P<value>[^&#\s'\";,)\]}]*[^&#\s'\";,)\]}:.])"
)
#: A key that names a secret when it contains one of these ...
_SECRET_WORDS = ("token", "secret", "passw", "pwd", "auth", "credential", "apikey", "accesskey", "privatekey", "jwt")
#: ... or when one of its parts (split at - _ . ~) is one of these.
_SECRET_PARTS = frozenset({"key", "sig", "signature", "pass", "bearer", "session_key"})


def is_secret_key(key: str) -> bool:
    """Whether a ``key=`` names a secret: ``token``, ``x_token``, ``api-key``, ``auth_token``, ``X-Amz-Signature``,
    ``client_secret``, ``password``, ``sig``..., written as one rule on the key's words, not a list of cases."""
    low = key.lower()
    if any(word in low for word in _SECRET_WORDS):
        return True
    return any(part in _SECRET_PARTS for part in re.split(r"[-_.~]", low))


def _redact_pair(match: re.Match[str]) -> str:
    if not is_secret_key(match.group("key")[:-1]):
        return match.group(0)
    return f"{match.group('key')}{match.group('quote')}***"


def redact_text(text: str) -> str:
    """``text`` with URL credentials and secret values replaced by ``***`` (for logs and error lines).

    Covers ``user:pass@host`` (a password with ``@`` too) and every ``key=value`` whose key names a secret
    (:func:`is_secret_key`), in a query, a fragment (``#token=``) or free text.
    """
    if "://" not in text and "=" not in text:
        return text
    text = _CREDENTIALS.sub(lambda m: f"{m.group('scheme')}***@", text)
    return _PAIR.sub(_redact_pair, text)


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
