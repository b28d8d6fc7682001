"""What a Scope server offers: its pipelines and the input modes each supports (``scope-api.md`` §3).

The bridge reads ``GET /api/v1/pipelines/schemas`` before it loads anything, so a profile that cannot play on
this server (a pipeline the server does not have, a text show on a video-only pipeline) is refused up front
with one line naming what the server offers, instead of loading, connecting and then waiting for frames that
never come. An older server without the endpoint gives ``None``; the caller then falls back to the bridge's own
table (:data:`metadj_bridge.parameters.KNOWN_PIPELINES`).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from metadj_bridge.errors import ConfigError, RateLimitedWarning, ScopeError, ScopeNotFoundError, printable
from metadj_bridge.parameters import KNOWN_PIPELINES

if TYPE_CHECKING:
    from metadj_bridge.scope.api import ScopeClient

log = logging.getLogger(__name__)

#: Schema keys (in ``config_schema.properties`` or at the top level) that may say how many frames a chunk has.
_CHUNK_KEYS = ("chunk_frames", "num_frame_per_block", "frames_per_chunk")
#: The most pipelines named in one refusal line; the rest are counted.
_MAX_LISTED = 12
#: The longest chunk a schema is believed about: ten seconds at 24 fps (Scope's own pipelines make 1 to 12
#: frames a chunk). A schema that says more is a broken plugin or not Scope, and believing it would hold every
#: parameter message back for as many chunks' time.
MAX_OFFERED_CHUNK = 240
_unbelieved = RateLimitedWarning(log, "Scope's pipeline schemas: chunk sizes not believed (the bridge's own are "
                                 "kept)", interval=600.0)


@dataclass(frozen=True)
class OfferedPipeline:
    """One pipeline as the server describes it."""

    pipeline_id: str
    #: Input modes it supports, e.g. ("text",), ("video",), ("text", "video").
    modes: tuple[str, ...]
    default_mode: str | None
    #: Frames per generated chunk when the schema says, else None.
    chunk_frames: int | None
    #: The raw schema entry the server gave.
    schema: Mapping[str, Any] = field(repr=False)


@dataclass(frozen=True)
class ServerOffer:
    """Every pipeline a server offers, by id."""

    pipelines: Mapping[str, OfferedPipeline]

    def get(self, pipeline_id: str) -> OfferedPipeline | None:
        return self.pipelines.get(pipeline_id)

    def summary(self) -> str:
        """The offer in a few words: ``passthrough (video), longlive (text, video)``."""
        if not self.pipelines:
            return "no pipelines at all"
        items = [f"{p.pipeline_id} ({', '.join(p.modes) or 'no modes'})" for p in self.pipelines.values()]
        more = len(items) - _MAX_LISTED
        return ", ".join(items[:_MAX_LISTED]) + (f" and {more} more" if more > 0 else "")


def parse_offer(data: Any) -> ServerOffer:
    """The offer from the body of ``GET /api/v1/pipelines/schemas`` (``{"pipelines": {id: entry}}``).

    Entries that are not objects are skipped; an entry without ``supported_modes`` counts as offering both modes
    (nothing to refuse on).
    """
    entries = data.get("pipelines") if isinstance(data, Mapping) else None
    if not isinstance(entries, Mapping):
        return ServerOffer({})
    out: dict[str, OfferedPipeline] = {}
    for key, entry in entries.items():
        if isinstance(entry, Mapping):
            out[str(key)] = _pipeline(str(key), entry)
    return ServerOffer(out)


def _pipeline(pipeline_id: str, entry: Mapping[str, Any]) -> OfferedPipeline:
    raw_modes = entry.get("supported_modes")
    if isinstance(raw_modes, (list, tuple)) and raw_modes:
        modes = tuple(str(m) for m in raw_modes)
    else:
        modes = ("text", "video")
    default = entry.get("default_mode")
    return OfferedPipeline(
        pipeline_id=pipeline_id,
        modes=modes,
        default_mode=str(default) if isinstance(default, str) else None,
        chunk_frames=_chunk_frames(pipeline_id, entry),
        schema=entry,
    )


def _chunk_frames(pipeline_id: str, entry: Mapping[str, Any]) -> int | None:
    config = entry.get("config_schema")
    props = config.get("properties") if isinstance(config, Mapping) else None
    for key in _CHUNK_KEYS:
        value = entry.get(key)
        if value is None and isinstance(props, Mapping) and isinstance(props.get(key), Mapping):
            value = props[key].get("default")
        if isinstance(value, int) and not isinstance(value, bool):
            if 0 < value <= MAX_OFFERED_CHUNK:
                return value
            shown = str(value) if abs(value) < 10**12 else f"a number of {len(str(abs(value)))} digits"
            _unbelieved.note(f"{printable(pipeline_id[:100])}: {key} {shown} (a chunk is 1 to {MAX_OFFERED_CHUNK} "
                             "frames)")
    return None


async def read_offer(api: ScopeClient) -> ServerOffer | None:
    """The server's offer; None when it has no schemas endpoint (404: an older server) or lists no pipeline at all
    (a Scope always has its built-in ones: an answer without any cannot tell what the server plays).

    Other failures (server down, not Scope) raise the client's ``ScopeError`` as every other call does.
    """
    try:
        entries = await api.pipeline_schemas()
    except ScopeNotFoundError:
        return None
    offer = parse_offer({"pipelines": entries})
    return offer if offer.pipelines else None


def check_pipeline(offer: ServerOffer | None, pipeline_id: str, mode: str) -> None:
    """Refuse, in one line, a pipeline the server does not offer or a mode the pipeline does not support.

    Does nothing when ``offer`` is None (an older server: the caller falls back to the bridge's own table).
    """
    if offer is None:
        return
    found = offer.get(pipeline_id)
    if found is None:
        raise ConfigError(
            f"pipeline {pipeline_id!r} is not offered by this Scope server; it offers: {offer.summary()}. "
            "Pick one of those in the profile or with --pipeline"
        )
    if mode not in found.modes:
        raise ConfigError(
            f"pipeline {pipeline_id!r} supports only {' and '.join(found.modes)} input, not {mode} mode; "
            f"this Scope server offers: {offer.summary()}. "
            f"Pick a pipeline with {mode} mode, or use {found.modes[0]} input"
        )


async def read_offer_or_none(api: ScopeClient) -> ServerOffer | None:
    """The offer, or None when the server does not give a usable one (no endpoint, a refusal, a strange answer).

    An unreachable server still raises (``ScopeConnectionError``, transient): the attempt is retried.
    """
    try:
        return await read_offer(api)
    except ScopeError as exc:
        if exc.transient:
            raise
        log.debug("pipeline schemas unavailable (%s); checking against the bridge's own table", exc)
        return None


def check_session(offer: ServerOffer | None, pipeline_ids: Sequence[str], mode: str) -> None:
    """Refuse, in one line, a session whose pipelines the server does not offer or cannot play in ``mode``.

    Every pipeline of a chain is checked. Without an offer (an older server) the bridge's own table
    (:data:`~metadj_bridge.parameters.KNOWN_PIPELINES`) refuses what it knows cannot play, e.g. a text show on
    passthrough; a pipeline it does not know is let through.
    """
    for pipeline_id in pipeline_ids:
        if offer is not None:
            check_pipeline(offer, pipeline_id, mode)
            continue
        known = KNOWN_PIPELINES.get(pipeline_id)
        if known is not None and mode not in known.modes:
            raise ConfigError(
                f"pipeline {pipeline_id!r} supports only {' and '.join(known.modes)} input, not {mode} mode "
                "(the bridge's own table; this Scope server does not list its pipelines). "
                f"Pick a pipeline with {mode} mode, or use {known.modes[0]} input"
            )
