"""Why Scope could not load a pipeline, in Scope's own words, with advice that fits the cause (scope-api.md §1-2).

Scope's pipeline status never carries the error text (``error`` is always null); its log does. A failed load
logs three lines, the specific one first and the generic one last::

    ERROR - Failed to load pipeline longlive: No module named 'flash_attn'. If this error persists, consider ...
    ERROR - Failed to load pipeline: longlive
    ERROR - Some pipelines failed to load

The specific line is the one worth quoting. The advice follows its cause: a missing Python module or an unknown
pipeline id has nothing to do with model downloads or GPU memory.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING

from metadj_bridge.errors import PipelineLoadError

if TYPE_CHECKING:
    from metadj_bridge.scope.api import ScopeClient

#: The longest quote of Scope's log in one error message.
_MAX_QUOTE = 300
#: Scope's own generic suffix on every failed load, whatever the cause.
_SCOPE_SUFFIX = re.compile(r"\.?\s*If this error persists, consider removing the models directory.*$")
#: The log level and logger prefix of Scope's log lines: ``2026-... - scope.server.pipeline_manager - ERROR - ``.
_PREFIX = re.compile(r"^.*? - (?:ERROR|WARNING|CRITICAL) - ")

#: (pattern in the cause, advice). The first match wins; no match gives the general advice.
_ADVICE: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"Invalid pipeline ID", re.I),
     "this Scope server has no such pipeline: check the pipeline id (GET /api/v1/pipelines/schemas lists them)"),
    (re.compile(r"No module named", re.I),
     "Scope's installation lacks a Python module this pipeline needs (some need a CUDA GPU, e.g. flash_attn): "
     "install it where Scope runs, or pick another pipeline"),
    (re.compile(r"out of memory|CUDA error|CUBLAS", re.I),
     "the pipeline does not fit in the GPU's memory: try quantization fp8_e4m3fn or a smaller resolution, and "
     "close other GPU programs"),
    (re.compile(r"Name or service not known|urlopen error|getaddrinfo|Temporary failure in name resolution", re.I),
     "the pipeline tried to download its model and the Scope machine has no internet access: download the "
     "model there once (POST /api/v1/models/download) or give it network access"),
    (re.compile(r"No such file or directory|\.safetensors|\.pth|\.pt\b|\.ckpt|\.pkl\b|weights\b.*\bnot found", re.I),
     "the model weights are missing: download them (GET /api/v1/models/status?pipeline_id=..., "
     "POST /api/v1/models/download)"),
)

#: Causes that no wait cures: the server lacks the pipeline or the code to run it.
_PERMANENT = re.compile(r"Invalid pipeline ID|No module named", re.I)

GENERAL_ADVICE = "check Scope's log, that the model is downloaded, and that the GPU has enough memory"


async def log_offset(client: ScopeClient) -> int:
    """Where Scope's log ends now (its byte offset); 0 when unknown. Taken before a load, so that the failure is
    looked for only in what the server writes after it, never in an older line (or in another server's log file:
    two Scopes sharing one home folder both serve the newest file)."""
    data = await client.get_json_or_none("/api/v1/logs/tail", params={"lines": 1})
    offset = data.get("offset") if isinstance(data, Mapping) else None
    return offset if isinstance(offset, int) and not isinstance(offset, bool) and offset > 0 else 0


async def log_lines_since(client: ScopeClient, offset: int) -> list[str]:
    """Scope's log lines written after ``offset`` (its last 50 lines when the offset is 0). Best effort."""
    params = {"lines": 50, "since_offset": offset} if offset > 0 else {"lines": 50}
    data = await client.get_json_or_none("/api/v1/logs/tail", params=params)
    lines = data.get("lines") if isinstance(data, Mapping) else None
    return [str(x) for x in lines] if isinstance(lines, list) else []


def specific_line(lines: Iterable[str], pipeline_id: str) -> str | None:
    """The line of Scope's log that says why ``pipeline_id`` failed to load, without Scope's generic suffix.

    Prefers ``Failed to load pipeline <id>: <cause>`` (the newest); then any error line naming the pipeline
    with a cause; the generic "Some pipelines failed to load" only when nothing better is there.
    """
    texts = [str(x).strip() for x in lines]
    specific = f"failed to load pipeline {pipeline_id}:".lower()
    generic: str | None = None
    named: str | None = None
    for line in reversed(texts):
        low = line.lower()
        if specific in low:
            return _clean(line)
        if named is None and pipeline_id.lower() in low and ("error" in low or "fail" in low) and ":" in line:
            if not low.rstrip().endswith(f"failed to load pipeline: {pipeline_id}".lower()):
                named = line
        if generic is None and ("error" in low or "fail" in low) and "pipeline" in low:
            generic = line
    chosen = named or generic
    return _clean(chosen) if chosen is not None else None


def _clean(line: str) -> str:
    text = _SCOPE_SUFFIX.sub("", _PREFIX.sub("", line, count=1)).strip()
    if len(text) <= _MAX_QUOTE:
        return text
    # Cut at a word's end, marked: RIFE's line (~450 characters) ended "instructions.. P" when cut mid-word.
    cut = text[:_MAX_QUOTE]
    space = cut.rfind(" ")
    return (cut[:space] if space > _MAX_QUOTE // 2 else cut).rstrip(" .,;:") + " ..."


def cause_of(line: str, pipeline_id: str) -> str:
    """What comes after ``Failed to load pipeline <id>:`` (the whole line when it has another shape)."""
    marker = f"failed to load pipeline {pipeline_id}:"
    at = line.lower().find(marker)
    return line[at + len(marker):].strip() if at >= 0 else line


def advice_for(cause: str) -> str:
    """What to do about a failed load, by its cause."""
    for pattern, advice in _ADVICE:
        if pattern.search(cause):
            return advice
    return GENERAL_ADVICE


def load_failure_message(pipeline_id: str, lines: Iterable[str] | None, log_url: str) -> str:
    """The one-sentence error for a failed load: the cause quoted from Scope's log, then what to do."""
    line = specific_line(lines or (), pipeline_id)
    if line is None:
        return f"Scope could not load pipeline {pipeline_id!r}. Check Scope's log ({log_url}); {GENERAL_ADVICE}"
    advice = advice_for(cause_of(line, pipeline_id))
    if advice is GENERAL_ADVICE:
        advice = f"check Scope's log ({log_url}), that the model is downloaded, and that the GPU has enough memory"
    return f"Scope could not load pipeline {pipeline_id!r} (Scope's log: {line}); {advice}"


def load_failure(pipeline_id: str, lines: Iterable[str] | None, log_url: str) -> PipelineLoadError:
    """The error for a failed load. A cause that waiting cannot cure (an unknown pipeline id, a Python module
    missing from Scope's installation) is not transient: at start-up the run ends with it instead of retrying."""
    kept = list(lines or ())
    error = PipelineLoadError(load_failure_message(pipeline_id, kept, log_url))
    line = specific_line(kept, pipeline_id)
    if line is not None and _PERMANENT.search(cause_of(line, pipeline_id)):
        error.transient = False
    return error
