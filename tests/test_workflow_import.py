"""Export writes a workflow Scope 0.2.4 imports: Scope's import rules, ported rule by rule, applied to the file.

The port (first half of this file) follows, in order: (daydreamlive/scope at v0.2.4, commit 68b0f956)

- ``frontend/src/components/WorkflowImportDialog.tsx`` ``handleFileSelect``: JSON, ``format``, ``metadata.name``,
  a non-empty ``pipelines`` list; then the server's resolution, and ``loadWorkflowDirect`` when every dependency
  is "ok" with no warnings (otherwise a review step whose Load button stays disabled while anything is missing).
  Any exception on the way ends in the toast "Validation failed".
- ``src/scope/core/workflows/resolve.py`` (``POST /api/v1/workflow/resolve``, ``src/scope/server/app.py``):
  ``WorkflowRequest`` (pydantic, ``extra="ignore"``; ``pipelines`` folded into ``nodes``; each with
  ``node_type_id``/``pipeline_id``, ``source.type`` in builtin/pypi/git/local, ``loras`` of ``filename``), then
  ``resolve_workflow`` (a built-in pipeline must be registered; ``min_scope_version`` against the installed one).
- ``frontend/src/lib/workflowSettings.ts``: ``workflowToSettings`` (the main pipeline is the one with role
  "main", else the first; ``params`` and ``loras`` are read as an object and a list; PARAM_MAPPINGS keeps a value
  only of the expected type), ``workflowTimelineToPrompts`` and ``workflowToPromptState``.

A JavaScript TypeError (reading a field of ``undefined``) is a refusal here too, with the same toast.
"""

from __future__ import annotations

import json
import os
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from metadj_bridge.cli import main
from metadj_bridge.parameters import KNOWN_PIPELINES
from metadj_bridge.showlog.export import build_workflow
from metadj_bridge.showlog.log import ShowLog, read_show_log, show_log_header

#: ``WorkflowPipelineSource.type`` (resolve.py).
SOURCE_TYPES = ("builtin", "pypi", "git", "local")
#: workflowSettings.ts PARAM_MAPPINGS: param -> (setting, JS typeof expected or None, allowed values or None).
PARAM_MAPPINGS: dict[str, tuple[str, str | None, tuple[Any, ...] | None]] = {
    "quantization": ("quantization", None, None),
    "denoising_step_list": ("denoisingSteps", None, None),
    "noise_scale": ("noiseScale", "number", None),
    "noise_controller": ("noiseController", "boolean", None),
    "manage_cache": ("manageCache", "boolean", None),
    "kv_cache_attention_bias": ("kvCacheAttentionBias", "number", None),
    "vace_enabled": ("vaceEnabled", "boolean", None),
    "vace_context_scale": ("vaceContextScale", "number", None),
    "vace_use_input_video": ("vaceUseInputVideo", "boolean", None),
    "input_mode": ("inputMode", "string", ("text", "video")),
}
KNOWN_PARAMS = {"height", "width", *PARAM_MAPPINGS}


class ImportRefused(Exception):
    """Scope would not load the file: the toast it shows, and why."""


@dataclass
class Imported:
    """What Scope's perform mode would load from the file."""

    settings: dict[str, Any]
    timeline: list[dict[str, Any]]
    prompt_state: dict[str, Any] | None
    #: Params the importer drops silently (a value of the wrong type).
    dropped: list[str] = field(default_factory=list)
    #: The server's resolution items and warnings.
    items: list[dict[str, Any]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def typeof(value: Any) -> str:
    """JavaScript's ``typeof`` for a value parsed from JSON."""
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    return "undefined" if value is None else "object"


def truthy(value: Any) -> bool:
    """JavaScript's truthiness for a value parsed from JSON (an empty object or list is true there)."""
    return not (value is None or value is False or value == "" or (typeof(value) == "number" and value == 0))


def _type_error(what: str) -> ImportRefused:
    return ImportRefused(f"Validation failed: TypeError: {what}")


# ------------------------------------------------------------------------------------------------ the server


def _optional_str(value: Any, where: str, *, min_length: int = 0, max_length: int | None = None) -> None:
    if value is None:
        return
    if not isinstance(value, str) or len(value) < min_length or (max_length is not None and len(value) > max_length):
        raise ImportRefused(f"Validation failed: HTTP 422: {where} must be a string"
                            f"{f' of at least {min_length} character(s)' if min_length else ''}")


def validate_request(data: Any) -> list[dict[str, Any]]:
    """resolve.py ``WorkflowRequest``: the nodes the server reads (HTTP 422 when they do not validate)."""
    if not isinstance(data, Mapping):
        raise ImportRefused("Validation failed: HTTP 422: the body is not an object")
    legacy = data.get("pipelines")
    nodes = list(legacy) + list(data.get("nodes") or []) if legacy else data.get("nodes", [])
    if not isinstance(nodes, list) or len(nodes) > 150:
        raise ImportRefused("Validation failed: HTTP 422: nodes must be a list of at most 150")
    out = []
    for i, node in enumerate(nodes):
        where = f"nodes[{i}]"
        if not isinstance(node, Mapping):
            raise ImportRefused(f"Validation failed: HTTP 422: {where} is not an object")
        node_id = node.get("node_type_id", node.get("pipeline_id"))
        if not isinstance(node_id, str) or not node_id:
            raise ImportRefused(f"Validation failed: HTTP 422: {where}.node_type_id/pipeline_id missing or empty")
        source = node.get("source")
        if not isinstance(source, Mapping) or source.get("type") not in SOURCE_TYPES:
            raise ImportRefused(f"Validation failed: HTTP 422: {where}.source.type must be one of {SOURCE_TYPES}")
        _optional_str(source.get("plugin_name"), f"{where}.source.plugin_name", min_length=1)
        _optional_str(source.get("plugin_version"), f"{where}.source.plugin_version")
        _optional_str(source.get("package_spec"), f"{where}.source.package_spec")
        loras = node.get("loras", [])
        if not isinstance(loras, list) or len(loras) > 100:
            raise ImportRefused(f"Validation failed: HTTP 422: {where}.loras must be a list of at most 100")
        for j, lora in enumerate(loras):
            if not isinstance(lora, Mapping):
                raise ImportRefused(f"Validation failed: HTTP 422: {where}.loras[{j}] is not an object")
            if not isinstance(lora.get("filename"), str) or len(lora["filename"]) > 255:
                raise ImportRefused(f"Validation failed: HTTP 422: {where}.loras[{j}].filename must be a string")
            provenance = lora.get("provenance")
            if provenance is not None and not (isinstance(provenance, Mapping)
                                               and isinstance(provenance.get("source"), str)):
                raise ImportRefused(f"Validation failed: HTTP 422: {where}.loras[{j}].provenance.source missing")
        out.append({"node_type_id": node_id, "source": dict(source), "loras": loras})
    _optional_str(data.get("min_scope_version"), "min_scope_version")
    return out


def _version(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in text.split(".") if part.isdigit())


def resolve(data: Any, registered: set[str], lora_files: Collection[str] = (),
            scope_version: str = "0.2.4") -> tuple[list[dict[str, Any]], list[str]]:
    """resolve.py ``resolve_workflow`` for built-in pipelines: (items, warnings). ``registered``: the pipeline ids
    the server has; ``lora_files``: the LoRA files in its lora folder (a plugin source counts as missing: no
    plugin is installed)."""
    items: list[dict[str, Any]] = []
    warnings: list[str] = []
    for node in validate_request(data):
        name = node["node_type_id"]
        if node["source"]["type"] == "builtin":
            items.append({"kind": "pipeline", "name": name, "status": "ok" if name in registered else "missing"})
        else:
            items.append({"kind": "plugin", "name": node["source"].get("plugin_name") or name, "status": "missing"})
        items.extend({"kind": "lora", "name": lora["filename"],
                      "status": "ok" if lora["filename"] in lora_files else "missing"} for lora in node["loras"])
    wanted = data.get("min_scope_version")
    if wanted and _version(scope_version) < _version(wanted):
        warnings.append(f"This workflow requires Scope >= {wanted} (installed: {scope_version})")
    return items, warnings


# ------------------------------------------------------------------------------------------------ the browser


def _params_of(pipeline: Any) -> Mapping[str, Any]:
    params = pipeline.get("params") if isinstance(pipeline, Mapping) else None
    if not isinstance(params, Mapping):
        raise _type_error("Cannot convert undefined or null to object (params)")
    return params


def workflow_to_settings(workflow: Mapping[str, Any], dropped: list[str]) -> dict[str, Any]:
    """workflowSettings.ts ``workflowToSettings``."""
    pipelines = workflow["pipelines"]
    has_roles = any(isinstance(p, Mapping) and truthy(p.get("role")) for p in pipelines)
    main = next((p for p in pipelines if isinstance(p, Mapping) and p.get("role") == "main"), pipelines[0]) \
        if has_roles else pipelines[0]
    params = _params_of(main)
    settings: dict[str, Any] = {"pipelineId": main.get("pipeline_id")}
    if typeof(params.get("height")) == "number" and typeof(params.get("width")) == "number":
        settings["resolution"] = {"height": params["height"], "width": params["width"]}
    for param, (setting, kind, allowed) in PARAM_MAPPINGS.items():
        if param not in params:
            continue
        value = params[param]
        if (kind and typeof(value) != kind) or (allowed and value not in allowed):
            dropped.append(param)
            continue
        settings[setting] = value
    loras = main.get("loras")
    if not isinstance(loras, list):
        raise _type_error("Cannot read properties of undefined (reading 'length') (loras)")
    if loras:
        settings["loras"] = [{"path": lora["filename"], "scale": lora.get("weight")} for lora in loras]
    overrides = {k: v for k, v in params.items() if k not in KNOWN_PARAMS}
    if overrides:
        settings["schemaFieldOverrides"] = overrides
    for role in ("preprocessor", "postprocessor"):
        for p in pipelines if has_roles else []:
            if isinstance(p, Mapping) and p.get("role") == role:
                _params_of(p)
    return settings


def _prompt_items(prompts: Any) -> list[dict[str, Any]]:
    if not isinstance(prompts, list):
        raise _type_error("Cannot read properties of undefined (reading 'length') (prompts)")
    return [{"text": p.get("text"), "weight": p.get("weight")} if isinstance(p, Mapping) else {} for p in prompts]


def workflow_timeline_to_prompts(timeline: Any) -> list[dict[str, Any]]:
    """workflowSettings.ts ``workflowTimelineToPrompts``."""
    if not truthy(timeline):
        return []
    entries = timeline.get("entries") if isinstance(timeline, Mapping) else None
    if not isinstance(entries, list):
        raise _type_error("Cannot read properties of undefined (reading 'length') (timeline.entries)")
    out = []
    for entry in entries:
        if not isinstance(entry, Mapping):
            raise _type_error("Cannot read properties of undefined (timeline entry)")
        prompts = _prompt_items(entry.get("prompts"))
        out.append({"text": prompts[0]["text"] if prompts else "", "startTime": entry.get("start_time"),
                    "endTime": entry.get("end_time"), "prompts": prompts or None,
                    "transitionSteps": entry.get("transition_steps"),
                    "temporalInterpolationMethod": entry.get("temporal_interpolation_method")})
    return out


def workflow_to_prompt_state(workflow: Mapping[str, Any]) -> dict[str, Any] | None:
    """workflowSettings.ts ``workflowToPromptState``."""
    steps = workflow.get("transition_steps")
    method, temporal = workflow.get("interpolation_method"), workflow.get("temporal_interpolation_method")
    base = {"interpolationMethod": method if method is not None else "linear",  # JS ??
            "transitionSteps": steps if typeof(steps) == "number" else 4,
            "temporalInterpolationMethod": temporal if temporal is not None else "slerp"}
    timeline = workflow.get("timeline")
    entries = timeline.get("entries") if isinstance(timeline, Mapping) else None
    first = entries[0] if isinstance(entries, list) and entries else None
    if first is not None and _prompt_items(first.get("prompts")):
        return {**base, "promptItems": _prompt_items(first["prompts"])}
    top = workflow.get("prompts")
    if truthy(top) and _prompt_items(top):
        return {**base, "promptItems": _prompt_items(top)}
    return None


def scope_import(text: str, registered: set[str], lora_files: Collection[str] = (),
                 scope_version: str = "0.2.4") -> Imported:
    """Import ``text`` as Scope 0.2.4's "Import workflow" does; raises ImportRefused with Scope's toast."""
    try:
        parsed = json.loads(text)
    except json.JSONDecodeError:
        raise ImportRefused("Invalid JSON file") from None
    if not isinstance(parsed, Mapping) or parsed.get("format") != "scope-workflow":
        raise ImportRefused('Not a Scope workflow file: Expected format: "scope-workflow"')
    metadata = parsed.get("metadata")
    pipelines = parsed.get("pipelines")
    if (not truthy(metadata) or not isinstance(metadata, Mapping) or not isinstance(metadata.get("name"), str)
            or not isinstance(pipelines, list) or not pipelines):
        raise ImportRefused("Malformed workflow file: Missing required fields: metadata or pipelines")
    items, warnings = resolve(parsed, registered, lora_files, scope_version)
    if any(item["status"] != "ok" for item in items):
        raise ImportRefused(f"Review: the Load button stays disabled while dependencies are missing: {items}")
    dropped: list[str] = []
    settings = workflow_to_settings(parsed, dropped)
    timeline = workflow_timeline_to_prompts(parsed.get("timeline"))
    return Imported(settings, timeline, workflow_to_prompt_state(parsed), dropped, items, warnings)


# ================================================================================================ the tests

FIXTURES = Path(__file__).parent / "fixtures" / "timeline"
#: What a CPU-only Scope 0.2.4 registers (its weight-free pipelines), and a GPU one's built-ins besides.
CPU_PIPELINES = {"passthrough", "gray", "controller-viz", "rife", "scribble", "optical-flow"}
GPU_PIPELINES = CPU_PIPELINES | set(KNOWN_PIPELINES)


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def write_show(path: Path, *, pipeline: str = "longlive", input_mode: str = "text") -> None:
    """Neon city; a theme switch at 10 s (8 slerp steps) to a forest/neon blend; desert at 20 s; the end at 30 s."""
    clock = FakeClock()
    header = show_log_header(
        profile="show.yaml", pipeline=pipeline, width=512, height=288, input_mode=input_mode,
        initial={"prompts": [{"text": "neon city", "weight": 1.0}], "noise_scale": 0.55, "manage_cache": True,
                 "spatial_interpolation_method": "slerp", "bpm": 124.0},
        denoising_step_list=[1000, 500, 250],
    )
    show = ShowLog(path, header, clock=clock)
    show.record({"noise_scale": 0.8, "noise_controller": False}, 4.0)
    show.record({"transition": {"target_prompts": [{"text": "forest", "weight": 0.5},
                                                   {"text": "neon city", "weight": 0.5}],
                                "num_steps": 8, "temporal_interpolation_method": "slerp"}}, 10.0)
    show.record({"prompts": [{"text": "desert", "weight": 1.0}], "reset_cache": True}, 20.0)
    clock.now = 30.0
    show.close()


def exported(tmp_path: Path, **show: Any) -> str:
    log = tmp_path / "show.jsonl"
    write_show(log, **show)
    out = tmp_path / "show.scope-workflow.json"
    assert main(["export-timeline", str(log), "-o", str(out)]) == 0
    return out.read_text(encoding="utf-8")


@pytest.mark.parametrize("name", ["starter-mythical-creature", "local-passthrough"])
def test_the_port_accepts_scopes_own_workflows(name: str) -> None:
    """The ported rules are no stricter than Scope: its own starter workflows import."""
    text = (FIXTURES / f"{name}.scope-workflow.json").read_text(encoding="utf-8")
    loras = {lora["filename"] for p in json.loads(text)["pipelines"] for lora in p["loras"]}
    imported = scope_import(text, GPU_PIPELINES, loras)
    assert imported.settings["pipelineId"] in GPU_PIPELINES
    assert imported.dropped == []


def test_the_exported_show_imports_with_its_settings_and_timeline(tmp_path: Path) -> None:
    imported = scope_import(exported(tmp_path), GPU_PIPELINES)
    assert imported.items == [{"kind": "pipeline", "name": "longlive", "status": "ok"}] and imported.warnings == []
    assert imported.dropped == []
    settings = imported.settings
    assert settings["pipelineId"] == "longlive"
    assert settings["resolution"] == {"height": 288, "width": 512}
    assert settings["inputMode"] == "text" and settings["vaceEnabled"] is False
    assert settings["denoisingSteps"] == [1000, 500, 250]
    # The values the show started with (noise_controller was first set at 4 s).
    assert (settings["noiseScale"], settings["manageCache"], settings["noiseController"]) == (0.55, True, False)
    assert "schemaFieldOverrides" not in settings  # nothing the pipeline would not know (bpm is the show's own)
    timeline = imported.timeline
    assert [(e["startTime"], e["endTime"]) for e in timeline] == [(0, 10), (10, 20), (20, 30)]
    assert [e["text"] for e in timeline] == ["neon city", "forest", "desert"]
    assert timeline[1]["prompts"] == [{"text": "forest", "weight": 50.0}, {"text": "neon city", "weight": 50.0}]
    assert (timeline[1]["transitionSteps"], timeline[1]["temporalInterpolationMethod"]) == (8, "slerp")
    assert timeline[0]["transitionSteps"] is None
    state = imported.prompt_state
    assert state is not None and state["promptItems"] == [{"text": "neon city", "weight": 100.0}]
    assert (state["interpolationMethod"], state["transitionSteps"]) == ("slerp", 8)


def test_a_video_mode_show_imports_in_video_mode_on_a_cpu_scope(tmp_path: Path) -> None:
    imported = scope_import(exported(tmp_path, pipeline="passthrough", input_mode="video"), CPU_PIPELINES)
    assert imported.settings["pipelineId"] == "passthrough" and imported.settings["inputMode"] == "video"
    assert imported.items == [{"kind": "pipeline", "name": "passthrough", "status": "ok"}]


def test_the_metadata_scope_shows_on_import(tmp_path: Path) -> None:
    """The review step shows ``metadata.name``, ``scope_version`` and the date of ``created_at``."""
    log = tmp_path / "friday.jsonl"
    write_show(log)
    workflow = build_workflow(read_show_log(log), exported_at=datetime(2026, 11, 24, 21, 0, tzinfo=UTC))
    assert workflow["metadata"] == {"name": "friday", "created_at": "2026-11-24T21:00:00.000Z",
                                    "scope_version": "0.2.4"}
    assert workflow["format_version"] == "1.0" and workflow["pipelines"][0]["role"] == "main"
    entries = workflow["timeline"]["entries"]
    assert all(e["end_time"] > e["start_time"] for e in entries)
    assert all(a["end_time"] == b["start_time"] for a, b in zip(entries, entries[1:], strict=False))


def _mutations() -> list[tuple[str, Any, str]]:
    def without(*path: str) -> Any:
        def change(w: dict[str, Any]) -> None:
            target: Any = w
            for key in path[:-1]:
                target = target[int(key)] if isinstance(target, list) else target[key]
            del target[path[-1]]
        return change

    def setting(value: Any, *path: str) -> Any:
        def change(w: dict[str, Any]) -> None:
            target: Any = w
            for key in path[:-1]:
                target = target[int(key)] if isinstance(target, list) else target[key]
            target[path[-1]] = value
        return change

    old_timeline = {"prompts": [{"startTime": 0, "endTime": 10, "prompts": [{"text": "x", "weight": 100}]}],
                    "settings": {"pipelineId": "longlive"}, "version": "2.0"}
    return [
        ("the old version 2.0 timeline", lambda w: (w.clear(), w.update(old_timeline)), "Not a Scope workflow"),
        ("another format", setting("scope-timeline", "format"), "Not a Scope workflow"),
        ("no metadata name", without("metadata", "name"), "Malformed workflow file"),
        ("no pipelines", setting([], "pipelines"), "Malformed workflow file"),
        ("no pipeline source", without("pipelines", "0", "source"), "HTTP 422"),
        ("an unknown source type", setting({"type": "cloud"}, "pipelines", "0", "source"), "HTTP 422"),
        ("no loras list", without("pipelines", "0", "loras"), "TypeError"),
        ("no params", without("pipelines", "0", "params"), "TypeError"),
        ("entries without prompts", without("timeline", "entries", "0", "prompts"), "TypeError"),
        ("a timeline without entries", setting({}, "timeline"), "TypeError"),
        ("a pipeline the server lacks", setting("longliv", "pipelines", "0", "pipeline_id"), "Load button"),
    ]


@pytest.mark.parametrize(("what", "change", "toast"), _mutations(), ids=[m[0] for m in _mutations()])
def test_the_port_refuses_what_scope_refuses(tmp_path: Path, what: str, change: Any, toast: str) -> None:
    """Each ported rule can fail: the exported file, broken in one way, is refused with Scope's own toast."""
    workflow = json.loads(exported(tmp_path))
    scope_import(json.dumps(workflow), GPU_PIPELINES)  # as exported: imports
    change(workflow)
    with pytest.raises(ImportRefused, match=toast):
        scope_import(json.dumps(workflow), GPU_PIPELINES)


def test_a_mistyped_setting_would_be_dropped_on_import(tmp_path: Path) -> None:
    workflow = json.loads(exported(tmp_path))
    workflow["pipelines"][0]["params"]["noise_scale"] = "0.55"
    assert scope_import(json.dumps(workflow), GPU_PIPELINES).dropped == ["noise_scale"]


REAL_SCOPE = os.environ.get("METADJ_TEST_SCOPE")


@pytest.mark.skipif(not REAL_SCOPE, reason="needs a real Scope: set METADJ_TEST_SCOPE=URL (its POST "
                    "/api/v1/workflow/resolve is the server half of the import; the emulator has none)")
async def test_a_real_scope_resolves_the_exported_workflow_as_the_port_does(tmp_path: Path) -> None:
    assert REAL_SCOPE is not None
    async with httpx.AsyncClient(base_url=REAL_SCOPE.rstrip("/"), timeout=30) as http:
        schemas = (await http.get("/api/v1/pipelines/schemas")).json()["pipelines"]
        pipeline = "passthrough" if "passthrough" in schemas else next(iter(schemas))
        workflow = json.loads(exported(tmp_path, pipeline=pipeline, input_mode="video"))
        plan = (await http.post("/api/v1/workflow/resolve", json=workflow)).json()
        assert plan == {"can_apply": True, "warnings": [],
                        "items": [{"kind": "pipeline", "name": pipeline, "status": "ok", "detail": None,
                                   "action": None, "can_auto_resolve": False}]}
        assert scope_import(json.dumps(workflow), set(schemas)).items == [
            {k: plan["items"][0][k] for k in ("kind", "name", "status")}]
        # Where the port refuses, the server does too.
        workflow["pipelines"][0]["pipeline_id"] = "longliv"
        missing = (await http.post("/api/v1/workflow/resolve", json=workflow)).json()
        assert missing["can_apply"] is False and missing["items"][0]["status"] == "missing"
        workflow["pipelines"][0]["source"] = {"type": "cloud"}
        assert (await http.post("/api/v1/workflow/resolve", json=workflow)).status_code == 422
