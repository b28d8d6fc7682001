"""Pipeline loading as Scope 0.2.4 does it, including its awkward status answers.

``POST /api/v1/pipeline/load`` answers at once and the load runs in the background, so clients poll
``GET /api/v1/pipeline/status``. Behaviours a client must survive are imitated on purpose
(``scope-api.md`` §2, §12, §13; ``server/pipeline_manager.py``):

- the stale-status race: for ``stale_seconds`` after a load POST for something new, polls still
  show the *old* state (e.g. ``loaded`` with the previous ``pipeline_id``);
- ``loading`` shows ``pipeline_id: null`` and a ``loading_stage``;
- a failed load shows ``status: "error"`` exactly once, with ``error: null``; that poll resets the
  state to ``not_loaded``. The reason is only in the log, in Scope's words ("Failed to load pipeline
  longliv: Invalid pipeline ID: longliv. If this error persists, ...") followed by the generic
  "Some pipelines failed to load";
- ``load_params`` is the first entry's params as sent (null when none were sent), kept after a
  failure; ``loaded_lora_adapters`` is null unless a loaded pipeline holds LoRAs;
- ids the server does not register fail ("Invalid pipeline ID: x"), and on a CPU-only server the GPU
  pipelines fail with what a real one raises ("No module named 'flash_attn'");
- weight-free pipelines load at once; GPU ones take ``load_seconds``.

Loads are identical (and reused without reloading) when the keys, pipeline ids and load params
match, with ``{}`` and ``null`` counting as equal.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from metadj_bridge.emulator import catalogue
from metadj_bridge.emulator.config import Faults
from metadj_bridge.emulator.records import emulator_log
from metadj_bridge.lifecycle import cancel_and_wait

logger = logging.getLogger(__name__)

LOADING_STAGE = "Initializing pipeline..."
#: The reason the ``fail_load`` fault switch gives (worded so that "failed to load: ..." quotes it).
FAULT_REASON = "the emulator's pipeline failed to load: emulated failure (fail_load fault switch)"


@dataclass(frozen=True)
class LoadEntry:
    """One pipeline instance to load. ``key`` is the id sessions name in ``pipeline_ids``."""

    key: str
    pipeline_id: str
    #: As sent; None when the request had no load params.
    load_params: dict[str, Any] | None = field(default=None)

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
        facts = catalogue.facts(entry.pipeline_id)
        default_w, default_h = facts.default_size if facts else (512, 512)
        params = entry.load_params or {}
        width, height = params.get("width", default_w), params.get("height", default_h)
        if not (isinstance(width, int) and isinstance(height, int) and width >= 16 and height >= 16):
            return default_w, default_h
        # Encoders need even sizes; Scope's pipelines round to multiples of 8 or 16 anyway.
        return width - width % 2, height - height % 2


class PipelineLoader:
    """The load state machine behind the load and status endpoints; one per emulator."""

    def __init__(self, faults: Faults, load_seconds: float, emulator_id: str, *, cpu_only: bool = False) -> None:
        self._faults = faults
        self._load_seconds = load_seconds
        self._cpu_only = cpu_only
        #: The first entry's load params of the latest load, as sent (Scope's ``_load_params``).
        self._reported_params: dict[str, Any] | None = None
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
        load_params = self._reported_params
        if not load_params and loaded:
            load_params = loaded.entries[0].load_params or {}
        info: dict[str, Any] = {
            "status": status,
            "pipeline_id": loaded.entries[0].key if loaded else None,
            "load_params": load_params,
            "loaded_lora_adapters": _lora_adapters(loaded),
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
        try:
            # Until the background task really starts, polls still describe the old state.
            await asyncio.sleep(self._faults.stale_seconds)
            self._log.info("Loading %d pipeline(s): %s", len(entries), [(e.key, e.pipeline_id) for e in entries])
            self._reported_params = entries[0].load_params
            if self._loaded is not None:
                self._log.info("Unloading pipeline: %s", self._loaded.entries[0].key)
            self._loaded = None
            self._status = "loading"
            failed = [entry for entry in entries if not await self._load_one(entry)]
            if failed:
                self._status = "error"
                self._log.error("Some pipelines failed to load")
                return
            self._loaded = LoadedPipelines(entries)
            self._status = "loaded"
            self._log.info("All %d pipeline(s) loaded successfully", len(entries))
        except asyncio.CancelledError:
            raise
        except Exception:
            self._status = "error"
            self._log.exception("Pipeline '%s' failed to load: unexpected emulator error", entries[0].key)
        finally:
            if self._pending == entries:
                self._pending = None

    async def _load_one(self, entry: LoadEntry) -> bool:
        """One pipeline: at once when weight-free, ``load_seconds`` for a GPU one; False (logged) on failure."""
        self._log.info("Loading pipeline: %s (registry: %s)", entry.key, entry.pipeline_id)
        self._log.info("Initial load params: %s", entry.load_params or {})
        facts = catalogue.facts(entry.pipeline_id)
        reason = catalogue.load_error(entry.pipeline_id, self._cpu_only)
        if reason is None:
            delay = (self._load_seconds if facts is not None and facts.gpu else 0.0) + self._faults.slow_load
            if delay:
                await asyncio.sleep(delay)
            if self._faults.fail_load:
                reason = FAULT_REASON
        if reason is not None:
            self._log.error("Failed to load pipeline %s: %s. If this error persists, consider removing the models "
                            "directory '%s' and re-downloading models.", entry.key, reason, catalogue.MODELS_DIR)
            self._log.error("Failed to load pipeline: %s", entry.key)
            return False
        self._log.info("Pipeline %s loaded successfully", entry.key)
        return True


def _lora_adapters(loaded: LoadedPipelines | None) -> list[dict[str, Any]] | None:
    """LoRAs of the loaded pipelines that support them, by path, as Scope lists them; None when there are none."""
    adapters: list[dict[str, Any]] = []
    for entry in loaded.entries if loaded else ():
        schema_ok = entry.pipeline_id in catalogue.PIPELINES and catalogue.schema(entry.pipeline_id)["supports_lora"]
        loras = (entry.load_params or {}).get("loras")
        if not schema_ok or not isinstance(loras, list):
            continue
        for lora in loras:
            path = lora.get("path") if isinstance(lora, dict) else None
            if isinstance(path, str) and all(a["path"] != path for a in adapters):
                adapters.append({"path": path, "scale": lora.get("scale", 1.0)})
    return adapters or None


def _same(a: Sequence[LoadEntry], b: Sequence[LoadEntry]) -> bool:
    return len(a) == len(b) and all(x.same_as(y) for x, y in zip(a, b, strict=True))


def entries_from_ids(pipeline_ids: Sequence[str], load_params: Mapping[str, Any] | None) -> list[LoadEntry]:
    """The shorthand ``pipeline_ids`` form: the same load params for every id; the key is the id."""
    return [LoadEntry(pid, pid, None if load_params is None else dict(load_params)) for pid in pipeline_ids]
