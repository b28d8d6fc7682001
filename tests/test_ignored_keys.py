"""Mappings on keys the profile's pipeline ignores in its mode: ``check`` and ``run`` say so (issue 14, item 3).

Real profile files, ``check`` as a real subprocess, the server's schemas from the emulator (which serves Scope
0.2.4's own dump) over real HTTP, and ``run`` in-process against the emulator over real WebRTC.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import io
import logging
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from metadj_bridge.emulator import catalogue
from metadj_bridge.errors import EXIT_CONFIG
from metadj_bridge.parameters import BUILTIN_SPECS, PIPELINE_READS, SERVER_SIDE_KEYS
from metadj_bridge.profile import load_profile
from metadj_bridge.profile.ignored import CATALOGUE, SCHEMA, IgnoredKeyLog, ignored_keys, schema_reads
from metadj_bridge.run.bridge import run_bridge
from metadj_bridge.run.plan import RunOptions
from metadj_bridge.scope.api import ScopeClient
from metadj_bridge.scope.offer import read_offer
from tests.helpers import free_port, wait_for

WORKS = ("what works instead: prompt.intensity (a theme's intense variant), denoising_steps, "
         "prompt.weight.N or prompt.mix")
BEAT_WORKS = ("what works instead: action.accent (a beat accent on prompt.intensity), action.seed_step, "
              "an envelope on denoising_steps")


def show(tmp_path: Path, scope: str, extra: str = "", name: str = "show.yaml") -> Path:
    """A profile on ``scope`` with a fader on noise_scale, a beat pulse, and targets that never warn."""
    text = (
        f"scope: {{{scope}}}\n"
        "themes: {neon: {prompts: [neon city at night, a tunnel of neon light]}}\n"
        "mappings:\n"
        "  energy:\n"
        "    source: audio.energy\n"
        "    target: noise_scale\n"
        "  kick: {trigger: audio.beat, target: action.pulse_noise}\n"
        "  mix: {source: midi.cc.1.19, target: prompt.mix}\n"
        "  steps: {source: midi.cc.1.20, target: denoising_steps}\n"
        "  seed: {source: midi.cc.1.21, target: base_seed}\n"
        "  hold: {source: midi.cc.1.22, target: paused}\n"
        "  drop: {trigger: midi.note.1.36, target: action.reset_cache}\n"
        "  next: {trigger: tempo.bar, target: theme.next}\n"
        + extra
    )
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def noise_lines(path: Path, pipeline: str = "longlive", mode: str = "text", why: str = "Scope sets it to None there",
                works: str = WORKS, beat_works: str = BEAT_WORKS) -> list[str]:
    """The two warnings of ``show()``: the fader at 6:13 and the beat pulse (its target on line 7)."""
    col = "  kick: {trigger: audio.beat, target: action.pulse_noise}".index("action.") + 1
    return [
        f"{path}:6:13: noise_scale does nothing on {pipeline} in {mode} mode ({why}); {works}",
        f"{path}:7:{col}: action.pulse_noise moves noise_scale, which does nothing on {pipeline} in {mode} mode "
        f"({why}); {beat_works}",
    ]


def check(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "metadj_bridge", "check", *args], capture_output=True, text=True,
                          timeout=60, check=False)


async def check_async(*args: str) -> tuple[int, str, str]:
    """``check`` as a subprocess that leaves this event loop free (an in-process emulator has to answer it)."""
    proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "metadj_bridge", "check", *args,
                                                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


# ------------------------------------------------------------------------------------------------ one source of facts


def test_the_servers_schemas_and_the_catalogue_agree_on_every_built_in_pipeline() -> None:
    """Scope 0.2.4's own schema dump, read by the schema rules, says what the catalogue (from Scope's code) says."""
    keys = set(BUILTIN_SPECS) - SERVER_SIDE_KEYS
    entries = catalogue.pipeline_schemas()["pipelines"]
    assert set(entries) == set(PIPELINE_READS)
    for pid, entry in entries.items():
        for mode in ("text", "video"):
            from_schema, from_code = schema_reads(entry, mode), PIPELINE_READS[pid].get(mode)
            assert (from_schema is None) == (from_code is None), (pid, mode)
            if from_schema is not None and from_code is not None:
                assert from_schema & keys == from_code & keys, (pid, mode, sorted((from_schema ^ from_code) & keys))
        assert catalogue.PIPELINES[pid].reads is PIPELINE_READS[pid]  # the emulator imitates the same table
    longlive = PIPELINE_READS["longlive"]
    assert "noise_scale" not in longlive["text"] and "noise_scale" in longlive["video"]


# ------------------------------------------------------------------------------------------------ check


def test_check_warns_with_the_place_the_pipeline_the_mode_and_what_works(tmp_path: Path) -> None:
    path = show(tmp_path, "pipeline: longlive, input_mode: text")
    proc = check(str(path))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == [f"ok  {path} (1 themes, 8 mappings)"]
    assert proc.stderr.splitlines() == [f"warning: {line}" for line in noise_lines(path)]


def test_check_strict_makes_each_warning_an_error(tmp_path: Path) -> None:
    bad = show(tmp_path, "pipeline: longlive, input_mode: text")
    good = show(tmp_path, "pipeline: krea-realtime-video, input_mode: text", name="good.yaml").read_text("utf-8")
    fine = tmp_path / "fine.yaml"
    fine.write_text(good.replace("target: noise_scale", "target: kv_cache_attention_bias")
                    .replace("action.pulse_noise", "action.reset_cache"), encoding="utf-8")
    proc = check("--strict", str(bad), str(fine))
    assert proc.returncode == 1
    assert proc.stdout.splitlines() == [f"ok  {fine} (1 themes, 8 mappings)"]  # krea reads the KV bias
    assert proc.stderr.splitlines() == [f"error: {line}" for line in noise_lines(bad)]
    assert check("--strict", str(fine)).returncode == 0


def test_video_mode_keeps_noise_scale(tmp_path: Path) -> None:
    clip = tmp_path / "clip.mp4"
    clip.write_bytes(b"")
    path = show(tmp_path, "pipeline: longlive, input_mode: video", f"video: {{source: 'file:{clip}'}}\n")
    assert ignored_keys(load_profile(path), "longlive", "video") == []


def test_keys_only_one_pipeline_reads_and_keys_none_reads(tmp_path: Path) -> None:
    extra = ("  bias: {source: midi.cc.1.23, target: kv_cache_attention_bias}\n"
             "  blend: {source: midi.cc.1.24, target: prompt_interpolation_method}\n"
             "  off: {source: midi.cc.1.25, target: noise_controller, enabled: false}\n")
    profile = load_profile(show(tmp_path, "pipeline: longlive, input_mode: text", extra))
    found = {item.key: item for item in ignored_keys(profile, "longlive", "text")}
    assert set(found) == {"noise_scale", "kv_cache_attention_bias", "prompt_interpolation_method"}
    assert "only krea-realtime-video implements it" in str(found["kv_cache_attention_bias"])
    assert found["prompt_interpolation_method"].works[0] == "spatial_interpolation_method"
    assert {i.key for i in ignored_keys(profile, "krea-realtime-video", "text")} == {
        "noise_scale", "prompt_interpolation_method"}
    # A video filter reads no runtime key at all; a pipeline the bridge does not know is not judged without its schema.
    on_gray = ignored_keys(profile, "gray", "video")
    assert {i.key for i in on_gray} == {"noise_scale", "kv_cache_attention_bias", "prompt_interpolation_method",
                                        "denoising_step_list", "base_seed"}
    assert str(on_gray[0]).endswith("; gray reads no runtime key in video mode")
    assert ignored_keys(profile, "my-plugin", "text") == []


def test_run_warns_once_per_key_and_place(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    profile = load_profile(show(tmp_path, "pipeline: longlive, input_mode: text"))
    said = IgnoredKeyLog(profile, "longlive", "text", logging.getLogger("metadj_bridge.test_ignored"))
    with caplog.at_level(logging.WARNING, logger="metadj_bridge.test_ignored"):
        said.report(None)
        said.report(None)  # a reconnection reads the offer again
    assert [r.getMessage() for r in caplog.records] == noise_lines(Path(profile.path))


# ------------------------------------------------------------------------------------------------ the server's word


async def test_the_servers_schema_decides_when_it_answers(make_emulator: Any, tmp_path: Path) -> None:
    emulator = await make_emulator()
    async with ScopeClient(emulator.url) as client:
        offer = await read_offer(client)
    assert offer is not None
    entry = offer.pipelines["longlive"].schema
    profile = load_profile(show(tmp_path, "pipeline: longlive, input_mode: text"))
    from_server = ignored_keys(profile, "longlive", "text", entry)
    assert [i.source for i in from_server] == [SCHEMA, SCHEMA]
    assert [str(i) for i in from_server] == noise_lines(
        Path(profile.path), why="Scope sets it to None there, says the server's schema")
    assert [i.source for i in ignored_keys(profile, "longlive", "text")] == [CATALOGUE, CATALOGUE]
    # A server whose longlive takes noise_scale in text mode too (a newer Scope) is believed over the catalogue.
    newer = copy.deepcopy(dict(entry))
    newer["config_schema"]["properties"]["noise_scale"]["ui"]["modes"] = ["text", "video"]
    assert ignored_keys(profile, "longlive", "text", newer) == []


async def test_check_asks_the_server_with_scope(make_emulator: Any, tmp_path: Path) -> None:
    emulator = await make_emulator()
    path = show(tmp_path, "pipeline: longlive, input_mode: text")
    code, out, err = await check_async("--scope", emulator.url, str(path))
    assert code == 0 and out.splitlines() == [f"ok  {path} (1 themes, 8 mappings)"]
    assert err.splitlines() == [f"warning: {line}" for line in noise_lines(
        path, why="Scope sets it to None there, says the server's schema")]


def test_check_falls_back_to_the_catalogue_when_the_server_does_not_answer(tmp_path: Path) -> None:
    path = show(tmp_path, "pipeline: longlive, input_mode: text")
    proc = check("--scope", f"http://127.0.0.1:{free_port()}", str(path))
    assert proc.returncode == 0, proc.stderr
    note, *warnings = proc.stderr.splitlines()
    assert note.startswith("note: ") and note.endswith("; checking against the bridge's catalogue instead")
    assert warnings == [f"warning: {line}" for line in noise_lines(path)]
    typo = check("--scope", "gpu-box:8000", str(path))  # a URL that cannot be one is the performer's to fix
    assert typo.returncode == EXIT_CONFIG and typo.stderr.startswith("error: Scope URL 'gpu-box:8000'"), typo.stderr


async def test_run_warns_at_start_from_the_servers_schema(make_emulator: Any, tmp_path: Path,
                                                          caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="metadj_bridge")
    emulator = await make_emulator()
    path = show(tmp_path, f"url: {emulator.url}, pipeline: longlive, input_mode: text, resolution: [256, 144], "
                "denoising: fast", "inputs: {audio: none}\n")
    options = RunOptions(profile=str(path), duration=60, output="none", show_log="none", watch=False)
    bridge = asyncio.create_task(run_bridge(options, status_stream=io.StringIO()))

    def warnings() -> list[str]:
        said = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
        return [message for message in said if "does nothing" in message]

    try:
        await wait_for(warnings, 20, "the ignored-key warnings")
        await wait_for(lambda: any("streaming" in r.getMessage() for r in caplog.records), 20, "streaming")
    finally:
        bridge.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await bridge
    assert warnings() == noise_lines(path, why="Scope sets it to None there, says the server's schema")


async def test_check_with_scope_refuses_a_pipeline_that_server_does_not_offer(make_emulator: Any,
                                                                              tmp_path: Path) -> None:
    """README: `check --strict --scope URL my-show.yaml`. A CPU-only Scope does not offer longlive, and gray takes
    only video: `run` refuses both before loading, so `check --scope` must not answer ok (strict or not)."""
    emulator = await make_emulator(cpu_only=True)
    longlive = show(tmp_path, "pipeline: longlive, input_mode: text", name="longlive.yaml")
    code, out, err = await check_async("--scope", emulator.url, str(longlive))
    assert code == 1 and out == "", out
    assert err.startswith(f"error: {longlive}:1:8: scope.pipeline: 'longlive' is not offered by that Scope server"), err
    assert "controller-viz (text)" in err
    gray = show(tmp_path, "pipeline: gray, input_mode: text", name="gray.yaml")
    code, out, err = await check_async("--strict", "--scope", emulator.url, str(gray))
    assert code == 1 and err.splitlines() == [f"error: {gray}:1:8: scope.input_mode: 'gray' takes only video input "
                                              "on that Scope server, not text mode (run would refuse it)"], err
    viz = show(tmp_path, "pipeline: controller-viz, input_mode: text", name="viz.yaml")
    code, out, err = await check_async("--scope", emulator.url, str(viz))
    assert code == 0 and out.startswith(f"ok  {viz}"), err
