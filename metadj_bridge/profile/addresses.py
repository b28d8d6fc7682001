"""Network addresses in a profile: the Scope URL, the OSC listen host and the OSC out ``HOST:PORT``.

Each is checked the way the running bridge will use it, so ``check`` refuses what would fail at the show:
the Scope URL goes to ``urllib`` (the bridge's own checks) and to httpx; hosts go to ``getaddrinfo`` and
must be an IP address or a host name.
"""

from __future__ import annotations

import ipaddress
import re
from urllib.parse import urlsplit

from metadj_bridge.profile import fields as f
from metadj_bridge.profile.yamlnodes import YNode

_LABEL = re.compile(r"(?!-)[A-Za-z0-9_-]{1,63}(?<!-)")
#: Paths the bridge adds itself (scope/api.py refuses a URL that already ends in one).
_ADDED_PATHS = ("/api/v1/health", "/health", "/api/v1")
URL_EXAMPLE = "http://127.0.0.1:8000 or https://gpu-box:8000"


def host_problem(host: str) -> str | None:
    """Why ``host`` is neither an IP address nor a host name, or None when it is one of them."""
    try:
        ipaddress.ip_address(host)
    except ValueError:
        pass
    else:
        return None
    if not host:
        return "the host is empty"
    try:
        ascii_host = host.encode("idna").decode("ascii")
    except UnicodeError:
        return "not an IP address or a host name"
    name = ascii_host[:-1] if ascii_host.endswith(".") else ascii_host
    if len(name) > 253 or not all(_LABEL.fullmatch(label) for label in name.split(".")):
        return "not an IP address or a host name (letters, digits, - and . only, such as gpu-box.local)"
    return None


def host(node: YNode, path: str) -> str:
    """A host to listen on or send to: an IP address or a host name."""
    value = f.text(node, path)
    problem = host_problem(value)
    if problem:
        f.fail_value(node, path, f"{problem}; e.g. 127.0.0.1, 0.0.0.0 (every interface) or a host name")
    return value


def host_port(node: YNode, path: str) -> str:
    """``HOST:PORT`` (``[v6]:PORT`` too); returned as the bridge splits it: at the last colon, no brackets."""
    text = f.text(node, path)
    wanted = "expected HOST:PORT such as 127.0.0.1:9001 (port 1-65535)"
    name, sep, port = text.rpartition(":")
    if not sep or not name or not port.isascii() or not port.isdigit() or not 1 <= int(port) <= 65535:
        f.fail_value(node, path, wanted)
    if name.startswith("[") and name.endswith("]"):
        name = name[1:-1]
    problem = host_problem(name)
    if problem:
        f.fail_value(node, path, f"{problem}; {wanted}")
    return f"{name}:{port}"


def scope_url(node: YNode, path: str) -> str:
    """Scope's root URL, checked as the bridge and httpx will read it; returned without a trailing slash."""
    url = f.text(node, path).strip()
    problem = scope_url_problem(url)
    if problem:
        f.fail_value(node, path, problem)
    return url.rstrip("/")


def scope_url_problem(url: str) -> str | None:
    """Why ``url`` cannot be Scope's root URL (as the bridge and httpx will read it), or None when it can; the
    profile's ``scope.url`` and the command line's ``--scope`` are held to the same rule."""
    try:
        parts = urlsplit(url)
    except ValueError as exc:
        hint = " (an IPv6 address goes in brackets: http://[::1]:8000)" if "IPv6" in str(exc) else ""
        return f"not a usable address: {exc}{hint}; e.g. {URL_EXAMPLE}"
    try:
        port = parts.port
    except ValueError:
        if parts.netloc.count(":") > 1 and "[" not in parts.netloc:
            return "an IPv6 address goes in brackets, with the port after them: http://[::1]:8000"
        written = parts.netloc.rpartition(":")[2]
        return f"port {written!r} is not a port number (1-65535)"
    if parts.scheme not in ("http", "https") or not parts.netloc:
        return f"expected an http:// or https:// address such as {URL_EXAMPLE}"
    problem = host_problem(parts.hostname or "")
    if problem:
        return f"{problem}; e.g. {URL_EXAMPLE}"
    if port is not None and not 1 <= port <= 65535:
        return f"port {port} is out of range (1-65535)"
    if parts.netloc.endswith(":"):
        return "a colon without a port; write the port (http://host:8000) or drop the colon"
    route = parts.path.rstrip("/")
    for suffix in _ADDED_PATHS:
        if route.endswith(suffix):
            return (f"ends in {suffix}; give the server's root instead (the bridge adds /health and /api/v1/... "
                    "itself)")
    return _httpx_problem(url)


def _httpx_problem(url: str) -> str | None:
    """httpx refuses some URLs urllib accepts (control characters, odd ports); the bridge talks through httpx."""
    try:
        import httpx
    except ImportError:  # pragma: no cover - a dependency of the package
        return None
    try:
        httpx.URL(url)
    except (httpx.InvalidURL, ValueError, TypeError) as exc:
        return f"not a usable address: {exc}"
    return None
