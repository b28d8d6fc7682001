"""The ICE servers a session gives aiortc: the entries Scope (or the profile) lists, without the URLs aiortc
cannot read.

aiortc parses every ``stun:``/``turn:`` URL of every entry when a peer connection gets its first transceiver, and one
it cannot read (``foo:bar``, ``stun:``, ``stun:host:port?`` with a port that is no number) raises ValueError: the
whole attempt fails, and every attempt after it, for as long as Scope hands the URL out. Here such a URL is left
out, the performer is told once (rate-limited) which one, and the session goes on with the others (on one machine
or a LAN it needs none).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from aiortc import RTCIceServer

try:  # the parser aiortc itself applies to these URLs (aiortc 1.9-1.16); without it every URL is passed on
    from aiortc.rtcicetransport import parse_stun_turn_uri
except ImportError:  # pragma: no cover - a later aiortc that moved it
    def parse_stun_turn_uri(uri: str) -> dict[str, Any]:
        return {}

from metadj_bridge.errors import RateLimitedWarning, printable

__all__ = ["usable_ice_servers"]


def usable_ice_servers(entries: Iterable[Mapping[str, Any]], warning: RateLimitedWarning) -> list[RTCIceServer]:
    """``entries`` (``{"urls", "username", "credential"}``) as aiortc's servers, each URL it cannot read left out
    (and an entry left with none); what was left out goes to ``warning``."""
    servers: list[RTCIceServer] = []
    skipped: list[str] = []
    for entry in entries:
        urls = entry["urls"]
        listed = [urls] if isinstance(urls, str) else list(urls)
        usable = []
        for url in listed:
            try:
                parse_stun_turn_uri(url)
            except ValueError:
                skipped.append(url)
            else:
                usable.append(url)
        if usable:
            servers.append(RTCIceServer(urls=usable if len(usable) > 1 else usable[0], username=entry.get("username"),
                                        credential=entry.get("credential")))
    if skipped:
        shown = ", ".join(printable(repr(url[:100])) for url in skipped[:5])
        more = f" and {len(skipped) - 5} more" if len(skipped) > 5 else ""
        warning.note(f"{shown}{more} (the session goes on with the {len(servers)} other server(s))")
    return servers
