"""How a failed request to Scope becomes a :class:`~metadj_bridge.errors.ScopeError` a performer can act on.

httpx says *what* broke (a refused connection, a timeout, a TLS alert, a broken HTTP exchange, a redirect loop,
a corrupt body); these messages say what that means and what to try: Scope not running, a typo in the host name,
http against an https server or the reverse, a certificate that is not trusted, a URL that is not a Scope
server's root, a proxy in front of Scope that misbehaves.

It also holds the one place an answer is read: :func:`read_capped` stops at a size limit, so an endless or huge
body costs at most that much memory, and the whole exchange runs under a deadline (:func:`deadline_passed` is
its error), so a server that trickles its answer a byte at a time cannot hold the bridge.
"""

from __future__ import annotations

import asyncio
import json
import logging
import reprlib
import socket
import ssl
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import httpx

from metadj_bridge.errors import (
    MetaDJError,
    ScopeBadAnswerError,
    ScopeConnectionError,
    ScopeError,
    ScopeNotFoundError,
    ScopeNotScopeError,
    ScopeTLSError,
)
from metadj_bridge.errors import printable as escaped

__all__ = [
    "Reply",
    "answer_failed",
    "deadline_passed",
    "detail",
    "exception_chain",
    "exception_reason",
    "exchange",
    "ice_entries",
    "not_found",
    "not_json",
    "preview",
    "printable",
    "read_capped",
    "request_failed",
    "safe_json",
    "text_of",
    "text_or_none",
]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Reply:
    """One answer from Scope, read whole (up to the size limit): what the client's methods look at."""

    status_code: int
    headers: httpx.Headers
    content: bytes
    reason_phrase: str = ""

    @property
    def text(self) -> str:
        charset = "utf-8"
        ctype = self.headers.get("content-type", "")
        if "charset=" in ctype:
            charset = ctype.split("charset=", 1)[1].split(";")[0].strip().strip('"') or charset
        try:
            return self.content.decode(charset, errors="replace")
        except LookupError:  # a charset Python does not know
            return self.content.decode("utf-8", errors="replace")

    def json(self) -> Any:
        """The body as JSON; ValueError when it is not JSON (too deeply nested counts as not JSON)."""
        try:
            return json.loads(self.content)
        except RecursionError:
            raise ValueError("JSON nested too deeply") from None


async def exchange(
    http: httpx.AsyncClient, method: str, url: str, *, server: str, deadline: float, max_body: int, **kwargs: Any
) -> Reply:
    """One request to ``url`` (Scope at ``server``, for messages), its answer read whole: within ``deadline``
    seconds all told, at most ``max_body`` bytes. Every way it can fail becomes a ScopeError."""
    where = f"{method} {_redact_url(url)}"
    try:
        async with asyncio.timeout(deadline):
            async with http.stream(method, url, **kwargs) as response:
                content = await read_capped(response, max_body, where)
                return Reply(response.status_code, response.headers, content, response.reason_phrase)
    except TimeoutError as exc:
        raise deadline_passed(where, deadline) from exc
    except ScopeError:
        raise
    except httpx.TransportError as exc:
        read_timeout = http.timeout.read
        raise request_failed(where, server, exc, read_timeout) from exc
    except Exception as exc:  # a redirect loop, a corrupt body, a bad URL: whatever the server made httpx raise
        raise answer_failed(where, server, exc) from exc


async def read_capped(response: httpx.Response, cap: int, where: str) -> bytes:
    """The whole (decoded) body, or :class:`ScopeBadAnswerError` as soon as it passes ``cap`` bytes."""
    declared = response.headers.get("content-length", "")
    if declared.isdecimal() and int(declared) > cap:
        raise too_large(where, cap, f"it announces {int(declared)} bytes")
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.aiter_bytes():
        size += len(chunk)
        if size > cap:
            raise too_large(where, cap, "it kept coming")
        chunks.append(chunk)
    return b"".join(chunks)


def too_large(where: str, cap: int, how: str) -> ScopeBadAnswerError:
    return ScopeBadAnswerError(
        f"{where}: the answer is larger than {_size(cap)} ({how}), more than any Scope answer; stopped "
        "reading. Is a proxy or another server answering instead of Scope?"
    )


def _size(count: int) -> str:
    return f"{count / 1_048_576:g} MB" if count >= 1_048_576 else f"{count} bytes"


def deadline_passed(where: str, deadline: float) -> ScopeConnectionError:
    """The error for an exchange that did not finish within its overall ``deadline``."""
    return ScopeConnectionError(
        f"{where}: no complete answer within {deadline:g} s (the server answers too slowly or stalls half-way); "
        "Scope may be overloaded, or a proxy or network in front of it stuck"
    )


def answer_failed(where: str, url: str, exc: BaseException) -> ScopeError:
    """The error for an exchange that broke for any other reason than a transport failure: a redirect loop, a body
    that cannot be decoded, a URL httpx cannot use, or anything else httpx raises."""
    if isinstance(exc, httpx.TooManyRedirects):
        return ScopeBadAnswerError(
            f"{where}: the server answered with a redirect loop (too many redirects); check the URL (http:// or "
            "https://, the path) and any proxy or login page in front of Scope"
        )
    if isinstance(exc, httpx.DecodingError):
        return ScopeBadAnswerError(
            f"{where}: the server sent a body that cannot be decoded (corrupt gzip or other compression: "
            f"{exception_reason(exc)}); a proxy in front of Scope may be broken"
        )
    if isinstance(exc, httpx.InvalidURL | httpx.UnsupportedProtocol | UnicodeError | ValueError):
        return ScopeBadAnswerError(
            f"{where}: the request could not be made ({exception_reason(exc)}); check the URL {url}, and where the "
            "server redirects to"
        )
    log.debug("unexpected failure talking to Scope", exc_info=exc)
    return ScopeBadAnswerError(f"{where}: the HTTP exchange failed ({exception_reason(exc)})")


def exception_reason(exc: BaseException) -> str:
    """``exc`` as words that are never empty: its message, else its type (``TimeoutError`` has no message)."""
    text = str(exc).strip()
    name = type(exc).__name__
    if isinstance(exc, TimeoutError) and not text:
        return "no answer in time (TimeoutError)"
    if not text:
        return f"{name} (no details given)"
    return text if isinstance(exc, MetaDJError) else f"{name}: {text}"


def request_failed(where: str, url: str, exc: httpx.TransportError, read_timeout: float | None) -> ScopeError:
    """The error for a request to ``url`` (``where``: method and address, for the message) that got no answer."""
    if isinstance(exc, httpx.ConnectError):
        if _is_tls_failure(exc):
            return ScopeTLSError(_tls_message(where, exc))
        return ScopeConnectionError(_connect_message(where, exc))
    if isinstance(exc, httpx.TimeoutException):
        return ScopeConnectionError(
            f"{where}: no answer within {read_timeout:g} s; the server is overloaded, "
            "asleep or unreachable (check the URL and that Scope is running)"
        )
    if isinstance(exc, httpx.RemoteProtocolError | httpx.LocalProtocolError):
        # A proxy that breaks, a server killed half-way, or http:// to an https port: worth retrying.
        hint = f"; if it is an https server, try {_https(url)}" if url.startswith("http://") else ""
        return ScopeBadAnswerError(
            f"{where}: the server broke the HTTP exchange ({exception_reason(exc)}); a proxy in front of Scope may "
            f"be broken, or Scope stopped half-way{hint}"
        )
    if _is_tls_failure(exc):
        return ScopeTLSError(_tls_message(where, exc))
    return ScopeConnectionError(f"{where}: {exception_reason(exc)}")


def _https(url: str) -> str:
    return _redact_url(url.replace("http://", "https://", 1))


def _redact_url(url: str) -> str:
    from metadj_bridge.scope.urls import redact_url

    return redact_url(url)


def not_found(where: str) -> ScopeNotFoundError:
    return ScopeNotFoundError(
        f"{where}: 404 Not Found; the server has no such endpoint. Check that the URL is the Scope "
        "server's root (e.g. http://host:8000) and that it runs Scope 0.2 or newer"
    )


def not_json(where: str, response: Reply, server: str, exc: ValueError | None = None) -> ScopeNotScopeError:
    ctype = printable(response.headers.get("content-type", "unknown")[:100])
    got = f"JSON that cannot be read ({exc})" if "json" in ctype.lower() and exc is not None else ctype
    return ScopeNotScopeError(
        f"{where}: expected JSON, got {got}; the server at {server} is not a Scope server "
        "(or a proxy in front of it answers instead)"
    )


def safe_json(response: Reply) -> Any:
    """The answer's JSON, or None when it is not JSON."""
    try:
        return response.json()
    except ValueError:
        return None


def detail(response: Reply) -> str:
    """What the server said about a refusal: FastAPI's ``detail``, else the start of the body."""
    data = safe_json(response)
    if isinstance(data, dict) and "detail" in data:
        return printable(str(data["detail"])[:300])
    text = printable(response.text[:400].strip())
    return text[:200] or printable(response.reason_phrase) or f"HTTP {response.status_code}"


def preview(data: Any) -> str:
    """The start of a JSON answer for an error line, however big or odd it is."""
    return printable(reprlib.repr(data))[:120]


def printable(text: str) -> str:
    """``text`` for one log or error line: newlines become spaces, other control characters (terminal escape
    sequences a server could send) escapes (``errors.printable``)."""
    return escaped(text.replace("\r\n", " ").replace("\n", " "))


def exception_chain(exc: BaseException) -> list[BaseException]:
    """``exc`` and everything it was raised from (``__cause__`` or ``__context__``), outermost first."""
    chain: list[BaseException] = []
    cur: BaseException | None = exc
    while cur is not None and cur not in chain:
        chain.append(cur)
        cur = cur.__cause__ or cur.__context__
    return chain


def _is_tls_failure(exc: BaseException) -> bool:
    if any(isinstance(c, ssl.SSLError) for c in exception_chain(exc)):
        return True
    text = str(exc)
    return "SSL" in text or "CERTIFICATE" in text.upper() or "TLS" in text


def _tls_message(where: str, exc: BaseException) -> str:
    text = str(exc)
    if "WRONG_VERSION_NUMBER" in text.upper() or "wrong version number" in text:
        hint = "the server does not speak TLS on this port; use http:// instead of https://"
    elif "CERTIFICATE_VERIFY_FAILED" in text.upper() or "certificate verify failed" in text:
        hint = "its certificate is not trusted (self-signed or expired); fix the certificate or the URL"
    else:
        hint = "check the URL's scheme and the server's certificate"
    return f"{where}: TLS failed: {text}; {hint}"


def _connect_message(where: str, exc: BaseException) -> str:
    chain = exception_chain(exc)
    if any(isinstance(c, socket.gaierror) for c in chain):
        return f"{where}: the host name does not resolve ({exc}); check the URL for typos"
    if any(isinstance(c, ConnectionRefusedError) for c in chain):
        return f"{where}: connection refused; Scope is not running on that host and port (yet?)"
    return f"{where}: cannot connect ({exception_reason(exc)}); is Scope running and the URL right?"


# ------------------------------------------------------------------ answers typed at the boundary


def text_or_none(value: Any) -> str | None:
    return None if value is None else text_of(value)


def text_of(value: Any) -> str:
    """A value from the server as one short printable text."""
    return printable(str(value)[:300])


def ice_entries(servers: list[Any]) -> list[dict[str, Any]]:
    """The ICE server entries with ``urls`` as text or a list of texts, and only text credentials (anything else
    from the server would break the offer)."""
    clean = []
    for entry in servers:
        urls = entry.get("urls") if isinstance(entry, Mapping) else None
        listed = isinstance(urls, list) and all(isinstance(u, str) for u in urls)
        if urls and (isinstance(urls, str) or listed):
            secrets = {k: entry[k] for k in ("username", "credential") if isinstance(entry.get(k), str)}
            clean.append({"urls": urls, **secrets})
    return clean
