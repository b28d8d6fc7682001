"""How a failed request to Scope becomes a :class:`~metadj_bridge.errors.ScopeError` a performer can act on.

httpx says *what* broke (a refused connection, a timeout, a TLS alert, a broken HTTP exchange); these messages
say what that means and what to try: Scope not running, a typo in the host name, http against an https server
or the reverse, a certificate that is not trusted, a URL that is not a Scope server's root.
"""

from __future__ import annotations

import socket
import ssl
from typing import Any

import httpx

from metadj_bridge.errors import (
    ScopeConnectionError,
    ScopeError,
    ScopeNotFoundError,
    ScopeNotScopeError,
    ScopeTLSError,
)

__all__ = ["detail", "exception_chain", "not_found", "not_json", "request_failed", "safe_json"]


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
        if url.startswith("http://"):
            return ScopeNotScopeError(
                f"{where}: the server broke the HTTP exchange ({exc}); is it an https server? "
                f"try {url.replace('http://', 'https://', 1)}"
            )
        return ScopeConnectionError(f"{where}: connection broke ({exc})")
    if _is_tls_failure(exc):
        return ScopeTLSError(_tls_message(where, exc))
    return ScopeConnectionError(f"{where}: {type(exc).__name__}: {exc}")


def not_found(where: str) -> ScopeNotFoundError:
    return ScopeNotFoundError(
        f"{where}: 404 Not Found; the server has no such endpoint. Check that the URL is the Scope "
        "server's root (e.g. http://host:8000) and that it runs Scope 0.2 or newer"
    )


def not_json(where: str, response: httpx.Response, server: str) -> ScopeNotScopeError:
    ctype = response.headers.get("content-type", "unknown")
    return ScopeNotScopeError(
        f"{where}: expected JSON, got {ctype}; the server at {server} is not a Scope server "
        "(or a proxy in front of it answers instead)"
    )


def safe_json(response: httpx.Response) -> Any:
    """The answer's JSON, or None when it is not JSON."""
    try:
        return response.json()
    except ValueError:
        return None


def detail(response: httpx.Response) -> str:
    """What the server said about a refusal: FastAPI's ``detail``, else the start of the body."""
    data = safe_json(response)
    if isinstance(data, dict) and "detail" in data:
        return str(data["detail"])[:300]
    text = response.text.strip().replace("\n", " ")
    return text[:200] or response.reason_phrase


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
    return f"{where}: cannot connect ({exc or type(exc).__name__}); is Scope running and the URL right?"
