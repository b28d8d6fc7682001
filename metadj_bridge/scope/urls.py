"""The Scope URL: checked once (:func:`normalise_url`), joined with each endpoint's path (:func:`endpoint`), and
shown in logs without its secrets (:func:`redact_url`). A session's id, which the server chose, goes into a path
only as a plain token (:func:`session_path`).

A Scope URL may sit behind a proxy that wants a token in the query (``https://gpu.example/scope?token=...``):
paths are joined onto the URL's path and the query goes with every request; the fragment never leaves this
machine. Logs and error lines show the URL without user:password, secret query values, bare query values and
the fragment.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlencode, urlsplit, urlunsplit

import httpx

from metadj_bridge.errors import ConfigError, ScopeBadAnswerError, printable, redact_text

__all__ = ["endpoint", "normalise_url", "redact_url", "session_path"]

#: What a session id may be: Scope's are uuid4 text; letters, digits and ``-._~`` (RFC 3986's unreserved
#: characters), at most 128 of them.
SESSION_ID = re.compile(r"[A-Za-z0-9._~-]{1,128}")


def normalise_url(url: str) -> str:
    """Check a Scope URL and return it without a trailing slash on its path (a query and fragment are kept).

    Scope's health endpoint sits at the root (``/health``), every other endpoint under ``/api/v1``;
    a URL that already ends in ``/api/v1`` or ``/health`` is the seed's classic mistake.
    """
    raw = url.strip()
    if not raw:
        raise ConfigError("Scope URL is empty; use e.g. http://127.0.0.1:8000")
    if "://" not in raw:
        raise ConfigError(f"Scope URL {raw!r} has no scheme; did you mean http://{raw} ?")
    try:
        parts = urlsplit(raw)
        httpx.URL(raw)  # what httpx would refuse to request (a bad IPv6 address, a host that is not a name)
    except (ValueError, UnicodeError, httpx.InvalidURL) as exc:
        raise ConfigError(f"Scope URL {redact_url(raw)!r} cannot be used: {exc}") from None
    if parts.scheme not in ("http", "https"):
        raise ConfigError(f"Scope URL {raw!r}: scheme {parts.scheme!r} is not http or https")
    if not parts.hostname:
        raise ConfigError(f"Scope URL {raw!r} has no host name")
    try:
        _ = parts.port  # raises for a port that is not a number
    except ValueError:
        raise ConfigError(f"Scope URL {redact_url(raw)!r} has an invalid port") from None
    path = parts.path.rstrip("/")
    for suffix in ("/api/v1/health", "/health", "/api/v1"):
        if path.endswith(suffix):
            root = urlunsplit((parts.scheme, parts.netloc, path[: -len(suffix)], parts.query, parts.fragment))
            raise ConfigError(
                f"Scope URL {redact_url(raw)!r} ends in {suffix!r}; give the server's root instead: "
                f"{redact_url(root)} (the bridge adds /health and /api/v1/... itself)"
            )
    return urlunsplit((parts.scheme, parts.netloc, path, parts.query, parts.fragment))


def endpoint(url: str, path: str, params: Mapping[str, Any] | None = None) -> str:
    """``path`` on the Scope server at ``url``: joined onto the URL's path, the URL's query kept (``params`` after
    it), the fragment left out (it never goes to a server)."""
    parts = urlsplit(url)
    query = parts.query
    if params:
        extra = urlencode(params)
        query = f"{query}&{extra}" if query else extra
    return urlunsplit((parts.scheme, parts.netloc, parts.path.rstrip("/") + path, query, ""))


def redact_url(url: str) -> str:
    """The URL for logs: no user:password, no secret query values (token=, api-key=, ...), no bare query
    value and no fragment."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return redact_text(url)
    query = "&".join(p if "=" in p else "***" for p in parts.query.split("&")) if parts.query else ""
    fragment = "***" if parts.fragment and "=" not in parts.fragment else parts.fragment
    return redact_text(urlunsplit((parts.scheme, parts.netloc, parts.path, query, fragment)))


def session_path(session_id: object) -> str:
    """``/api/v1/webrtc/offer/{session_id}``, for an id that is a plain token; else a ScopeBadAnswerError.

    The id comes from the server's answer to the offer. Put into a path as it is, ``../../pipeline/load`` would
    send the bridge's PATCH and DELETE to another endpoint, ``x?y=`` would cut the URL's token off, ``..`` would
    name the parent: a server (or a proxy in front of it) must not steer the bridge's requests that way.
    """
    if not isinstance(session_id, str) or not SESSION_ID.fullmatch(session_id) or not session_id.strip("."):
        shown = printable(repr(session_id)[:80]) + ("..." if len(repr(session_id)) > 80 else "")
        raise ScopeBadAnswerError(
            f"the WebRTC offer's answer names session {shown}, which is not a session id (at most 128 letters, "
            "digits and -._~; not only dots)"
        )
    return f"/api/v1/webrtc/offer/{session_id}"
