"""What a web client can make aiohttp log, as rate-limited lines: a show's log must not fill with a stranger's
garbage. Also the one rule for which hosts count as this machine only (:func:`is_loopback`, and for a request's
``Host`` header :func:`names_this_machine`)."""

from __future__ import annotations

import ipaddress
import logging
import sys
from typing import Any
from urllib.parse import urlsplit

from aiohttp.http_exceptions import HttpProcessingError

from metadj_bridge.errors import RateLimitedWarning

log = logging.getLogger(__name__)


class RequestProblems(logging.Logger):
    """aiohttp's per-connection logger for the web server: what a client can cause is one rate-limited line.

    aiohttp logs a traceback for every malformed request (a garbage request line, headers too large, an invalid
    method). Here each becomes a count in one rate-limited WARNING naming the peer and what was wrong. An error
    in our own handlers keeps its traceback the first time, then is counted the same way; aiohttp's debug lines
    (a client that went away) stay debug lines, without tracebacks.
    """

    def __init__(self) -> None:
        super().__init__(f"{__name__}.requests")
        self.parent = log  # anything else aiohttp says goes through the module's logger as usual
        self.malformed = RateLimitedWarning(log, "web server: malformed HTTP requests")
        self.errors = RateLimitedWarning(log, "web server: request errors")

    def exception(self, msg: object, *args: object, exc_info: Any = True, **kwargs: Any) -> None:
        self._problem(msg, args, exc_info, logging.ERROR)

    def debug(self, msg: object, *args: object, exc_info: Any = None, **kwargs: Any) -> None:
        self._problem(msg, args, exc_info, logging.DEBUG)

    def _problem(self, msg: object, args: tuple[object, ...], exc_info: Any, level: int) -> None:
        exc = exc_info if isinstance(exc_info, BaseException) else sys.exc_info()[1] if exc_info else None
        try:
            text = str(msg) % args if args else str(msg)
        except (TypeError, ValueError):
            text = str(msg)
        if isinstance(exc, HttpProcessingError):  # the peer sent something that is not a request we read
            text = text.replace("Error handling request from", "request from")
            self.malformed.note(f"{text}: {_one_line(exc.message or type(exc).__name__)}")
        elif exc is None or level < logging.ERROR:
            log.debug("%s", text)
        elif self.errors.logged == 0:
            log.error("web server: %s", text, exc_info=exc)
            self.errors.logged += 1
            self.errors.mark()
        else:
            self.errors.note(f"{text}: {type(exc).__name__}: {_one_line(str(exc))}")


def _one_line(text: str, limit: int = 200) -> str:
    """What a peer's garbage made of an error message, on one line of bounded length."""
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def names_this_machine(host_header: str) -> bool:
    """Whether a request's ``Host`` (``localhost:8765``, ``[::1]:8765``) names this machine only: ``localhost`` and
    the names under it (RFC 6761 keeps them on the loopback) or a loopback address. Any other name reached a loopback
    port through a DNS answer someone else controls: a page of another site, rebinding its own name to 127.0.0.1."""
    try:
        name = (urlsplit("//" + host_header).hostname or "").rstrip(".")
    except ValueError:  # a bracket that does not close: no name at all
        return False
    return name == "localhost" or name.endswith(".localhost") or is_loopback(name)
