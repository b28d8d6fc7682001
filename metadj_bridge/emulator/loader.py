"""Pipeline loading as Scope 0.2.4 does it, including its awkward status answers.

``POST /api/v1/pipeline/load`` answers at once and the load runs in the background, so clients poll
``GET /api/v1/pipeline/status``. Three behaviours a client must survive are imitated on purpose
(``scope-api.md`` §2, §12):

- the stale-status race: for ``stale_seconds`` after a load POST for something new, polls still
  show the *old* state (e.g. ``loaded`` with the previous ``pipeline_id``);
- ``loading`` shows ``pipeline_id: null`` and a ``loading_stage``;
- a failed load shows ``status: "error"`` exactly once, with ``error: null``; that poll resets the
  state to ``not_loaded``. The reason is only in the log.

Loads are identical (and reused without reloading) when the keys, pipeline ids and load params
match, with ``{}`` and ``null`` counting as equal.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from metadj_bridge.emulator.config import Faults
from metadj_bridge.emulator.records import emulator_log
from metadj_bridge.lifecycle import cancel_and_wait
from metadj_bridge.parameters import pipeline_info

logger = logging.getLogger(__name__)

LOADING_STAGE = "Initializing pipeline..."


@dataclass(frozen=True)
class LoadEntry:
    """One pipeline instance to load. ``key`` is the id sessions name in ``pipeline_ids``."""

    key: str
    pipeline_id: str
    load_params: dict[str, Any] = field(default_factory=dict)

    def same_as(self, other: LoadEntry) -> bool:
        return (self.key, self.pipeline_id, self.load_params or {}) == (
            other.key,
            other.pipeline_id,
            other.load_params or {},
        )


@dataclass(frozen=True)
class LoadedPipelines:
    """What is loaded, in load order (preprocessors first, the main pipeline last)."""

    entries: tuple[LoadEntry, ...]

    @property
    def keys(self) -> list[str]:
        return [e.key for e in self.entries]

    def find(self, name: str) -> LoadEntry | None:
        """The entry a session's ``pipeline_ids`` item refers to (by key, or by pipeline id)."""
        for entry in self.entries:
            if name in (entry.key, entry.pipeline_id):
                return entry
        return None

    @staticmethod
    def frame_size(entry: LoadEntry) -> tuple[int, int]:
        """(width, height): from load_params, else the pipeline's default size."""
        default_w, default_h = pipeline_info(entry.pipeline_id).default_size
        params = entry.load_params or {}
        width, height = params.get("width", default_w), params.get("height", default_h)
        if not (isinstance(width, int) and isinstance(height, int) and width >= 16 and height >= 16):
            return default_w, default_h
        # Encoders need even sizes; Scope's pipelines round to multiples of 8 or 16 anyway.
        return width - width % 2, height - height % 2


class PipelineLoader:
    """The load state machine behind the load and status endpoints; one per emulator."""

    def __init__(self, faults: Faults, load_seconds: float, emulator_id: str) -> None:
        self._faults = faults
        self._load_seconds = load_seconds
        self._log = emulator_log(logger, emulator_id)
        self._status = "not_loaded"
        self._loaded: LoadedPipelines | None = None
        self._pending: tuple[LoadEntry, ...] | None = None
        self._task: asyncio.Task[None] | None = None

    @property
    def loaded(self) -> LoadedPipelines | None:
        """The loaded pipelines, or None unless the status is ``loaded``."""
        return self._loaded if self._status == "loaded" else None

    def request(self, entries: Sequence[LoadEntry]) -> None:
        """Start loading ``entries`` in the background unless they are loaded or loading already."""
        wanted = tuple(entries)
        if self._status == "loaded" and self._loaded is not None and _same(self._loaded.entries, wanted):
            self._log.info("Pipeline %s already loaded with matching parameters", wanted[0].key)
            return
        if self._pending is not None and _same(self._pending, wanted):
            self._log.info("Pipeline %s is already loading; reusing that load", wanted[0].key)
            return
        self._cancel_task()
        self._pending = wanted
        self._task = asyncio.create_task(self._load(wanted), name=f"emulator-load-{wanted[0].key}")

    def status_info(self) -> dict[str, Any]:
        """The status answer; reading an ``error`` resets the state, as Scope does."""
        status = self._status
        loaded = self._loaded if status == "loaded" else None
        info: dict[str, Any] = {
            "status": status,
            "pipeline_id": loaded.entries[0].key if loaded else None,
            "load_params": loaded.entries[0].load_params if loaded else None,
            "loaded_lora_adapters": [],
            "error": None,
            "loading_stage": LOADING_STAGE if status == "loading" else None,
            "produces_video": True,
            "produces_audio": False,
        }
        if status == "error":
            self._status = "not_loaded"
        return info

    def unload(self) -> None:
        """Forget everything (server restart): no pipeline, no load in progress."""
        self._cancel_task()
        self._pending = None
        self._loaded = None
        self._status = "not_loaded"

    async def aclose(self) -> None:
        task = self._task
        self.unload()
        await cancel_and_wait(task)

    def _cancel_task(self) -> None:
        if self._task is not None and not self._task.done():
            self._task.cancel()
        self._task = None

    async def _load(self, entries: tuple[LoadEntry, ...]) -> None:
        name = entries[0].key
        try:
            # Until the background task really starts, polls still describe the old state.
            await asyncio.sleep(self._faults.stale_seconds)
            if self._loaded is not None:
                self._log.info("Unloading pipeline: %s", self._loaded.entries[0].key)
            self._loaded = None
            self._status = "loading"
            self._log.info("Loading pipeline: %s", name)
            await asyncio.sleep(self._load_seconds + self._faults.slow_load)
            if self._faults.fail_load:
                self._status = "error"
                self._log.error("Pipeline '%s' failed to load: emulated failure (fail_load fault switch)", name)
                return
            self._loaded = LoadedPipelines(entries)
            self._status = "loaded"
            self._log.info("Pipeline %s loaded successfully", name)
        except asyncio.CancelledError:
            raise
        except Exception:
            self._status = "error"
            self._log.exception("Pipeline '%s' failed to load: unexpected emulator error", name)
        finally:
            if self._pending == entries:
                self._pending = None


def _same(a: Sequence[LoadEntry], b: Sequence[LoadEntry]) -> bool:
    return len(a) == len(b) and all(x.same_as(y) for x, y in zip(a, b, strict=True))


def entries_from_ids(pipeline_ids: Sequence[str], load_params: Mapping[str, Any] | None) -> list[LoadEntry]:
    """The shorthand ``pipeline_ids`` form: the same load params for every id; the key is the id."""
    return [LoadEntry(pid, pid, dict(load_params or {})) for pid in pipeline_ids]
