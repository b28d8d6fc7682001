"""Scope message builders and parameter checks (pure)."""

from __future__ import annotations

import pytest

from metadj_bridge import parameters
from metadj_bridge.errors import ParameterError
from metadj_bridge.parameters import ParameterSchema
from metadj_bridge.scope import protocol
from metadj_bridge.scope.protocol import build_initial_parameters


def test_initial_parameters_always_carry_pipeline_ids_and_paused_false() -> None:
    params = build_initial_parameters(
        ["longlive"],
        input_mode="text",
        prompts="neon rain",
        denoising_step_list=[1000, 750, 500, 250],
        state={"paused": True, "noise_scale": 0.4, "reset_cache": True, "height": 320},
    )
    assert params["pipeline_ids"] == ["longlive"]
    assert params["input_mode"] == "text"
    assert params["prompts"] == [{"text": "neon rain", "weight": 1.0}]
    assert params["denoising_step_list"] == [1000, 750, 500, 250]
    assert params["manage_cache"] is True
    # A rebuilt session never starts paused, never repeats a one-shot and never sends load keys.
    assert params["paused"] is False
    assert "reset_cache" not in params and "height" not in params
    assert params["noise_scale"] == 0.4


def test_initial_parameters_prefer_last_state_prompts() -> None:
    params = build_initial_parameters(
        ["longlive"],
        input_mode="text",
        prompts="default",
        denoising_step_list=None,
        state={"prompts": [{"text": "forest", "weight": 0.5}]},
    )
    assert params["prompts"] == [{"text": "forest", "weight": 0.5}]
    assert "denoising_step_list" not in params


def test_initial_parameters_refuse_missing_pipeline() -> None:
    with pytest.raises(ParameterError, match="pipeline_ids"):
        build_initial_parameters([], input_mode="text", prompts="x", denoising_step_list=None)


def test_legacy_rejection_is_recognised_from_fastapi_422() -> None:
    body = {"detail": [{"type": "missing", "loc": ["body", "pipeline_id"], "msg": "Field required"}]}
    assert protocol.is_legacy_load_rejection(422, body)
    assert not protocol.is_legacy_load_rejection(
        400, {"detail": "Either 'pipelines' or 'pipeline_ids' must be provided"}
    )
    assert not protocol.is_legacy_load_rejection(422, {"detail": [{"loc": ["body", "prompts"]}]})


def test_load_bodies() -> None:
    assert protocol.load_body(["longlive"], {"width": 1024}) == {
        "pipeline_ids": ["longlive"],
        "load_params": {"width": 1024},
    }
    assert protocol.legacy_load_body(["longlive"], None) == {"pipeline_id": "longlive", "load_params": {}}


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("height", 576, "load parameter"),
        ("width", 1024, "load parameter"),
        ("pipeline_ids", ["x"], "only takes effect when a session starts"),
        ("noise_scale", 1.5, "outside the allowed range"),
        ("noise_scale", "loud", "not a number"),
        ("noise_scale", float("nan"), "not a number"),
        ("kv_cache_attention_bias", 0.0, "outside the allowed range"),
        ("denoising_step_list", [250, 1000], "descending"),
        ("denoising_step_list", [1000, 1200], "between 0 and 1000"),
        ("reset_cache", 1, "true or false"),
        ("noise_scal", 0.5, "did you mean 'noise_scale'"),
        ("base_seed", -1, "outside the allowed range"),
        ("transition", {"target_prompts": ["a"], "steps": 3}, "unknown field"),
        ("prompts", [{"text": "a", "weight": -1}], "not a number >= 0"),
    ],
)
def test_schema_rejects_bad_values(key: str, value: object, message: str) -> None:
    with pytest.raises(ParameterError, match=message):
        ParameterSchema("longlive").check(key, value)


def test_schema_normalises_good_values() -> None:
    schema = ParameterSchema("longlive")
    assert schema.check("noise_scale", 1) == 1.0
    assert schema.check("base_seed", 7.0) == 7
    assert schema.check("prompts", ["a", {"text": "b", "weight": 2}]) == [
        {"text": "a", "weight": 1.0},
        {"text": "b", "weight": 2.0},
    ]
    assert schema.check("transition", {"target_prompts": ["x"], "num_steps": 8}) == {
        "target_prompts": [{"text": "x", "weight": 1.0}],
        "num_steps": 8,
        "temporal_interpolation_method": "linear",
    }


def test_schema_from_server_adds_live_plugin_keys_and_ranges() -> None:
    schemas = {
        "my-plugin": {
            "config_schema": {
                "properties": {
                    "glow": {"type": "number", "minimum": 0, "maximum": 5, "ui": {"is_load_param": False}},
                    "style": {"enum": ["ink", "neon"], "ui": {"is_load_param": False}},
                    "model_size": {"type": "string", "ui": {"is_load_param": True}},
                    "noise_scale": {"anyOf": [{"type": "number", "minimum": 0, "maximum": 0.5}, {"type": "null"}],
                                    "ui": {"is_load_param": False}},
                }
            }
        }
    }
    schema = ParameterSchema.from_server("my-plugin", schemas)
    assert schema.check("glow", 4.5) == 4.5
    with pytest.raises(ParameterError, match="0-5"):
        schema.check("glow", 6)
    assert schema.check("style", "ink") == "ink"
    with pytest.raises(ParameterError, match="'ink', 'neon'"):
        schema.check("style", "oil")
    with pytest.raises(ParameterError, match="not a runtime parameter"):
        schema.check("model_size", "small")
    with pytest.raises(ParameterError, match="outside"):
        schema.check("noise_scale", 0.7)


def test_pipeline_facts() -> None:
    assert parameters.pipeline_info("longlive").chunk_frames == 12
    assert parameters.pipeline_info("streamdiffusionv2").chunk_frames == 4
    assert parameters.pipeline_info("some-plugin").chunk_frames == 12
    assert parameters.ASPECT_PRESETS["16:9"] == (1024, 576)
    assert parameters.ASPECT_PRESETS["9:16"] == (480, 832)
