"""Show profiles: YAML files to the typed model, and every mistake as one ProfileError at file:line:column."""

from __future__ import annotations

import io
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from metadj_bridge.bundled import bundled_profile
from metadj_bridge.errors import ConfigError
from metadj_bridge.profile import ProfileError, load_profile
from metadj_bridge.profile.check import run_check
from metadj_bridge.profile.loader import check_profile
from metadj_bridge.profile.model import (
    Clamp,
    Curve,
    Deadzone,
    Envelope,
    Invert,
    Lfo,
    Quantize,
    Range,
    Scale,
    SignalSource,
    Smooth,
    Steps,
    Target,
    Threshold,
    TriggerSource,
)

PROFILES = Path(__file__).parent / "fixtures" / "profiles"
GOOD = PROFILES / "good"
BROKEN = PROFILES / "broken"
BROKEN_FILES = sorted(BROKEN.glob("*.yaml"))
EXPECT = re.compile(r'# expect: (\d+) "(.*)"')


def expectation(path: Path) -> tuple[int, str]:
    first = path.read_bytes().split(b"\n", 1)[0].decode("ascii")
    match = EXPECT.fullmatch(first)
    assert match is not None, f"{path.name}: the first line must be # expect: LINE \"fragment\""
    return int(match.group(1)), match.group(2)


def test_there_are_enough_broken_fixtures() -> None:
    assert len(BROKEN_FILES) >= 40


@pytest.mark.parametrize("path", BROKEN_FILES, ids=lambda p: p.stem)
def test_broken_profile_names_file_line_and_mistake(path: Path) -> None:
    line, fragment = expectation(path)
    with pytest.raises(ProfileError) as caught:
        load_profile(path)
    error = caught.value
    message = str(error)
    assert path.name in message
    assert f":{line}:" in message, message
    assert fragment in message, message
    assert "Traceback" not in message and "\n" not in message
    assert error.line == line and os.path.basename(error.file) in message
    assert message.startswith(f"{error.file}:{error.line}:{error.column}: ")


def test_error_in_a_base_names_the_base_file_and_its_line() -> None:
    with pytest.raises(ProfileError) as caught:
        load_profile(BROKEN / "bases" / "child_of_broken_base.yaml")
    error = caught.value
    assert error.file.endswith(os.path.join("bases", "broken_base.yaml"))
    assert (error.line, error.column) == (4, 17)
    assert error.key_path == "mappings.bad.source"
    assert "midi.cc.1.200: 200 is not a MIDI CC number (0-127)" in str(error)


def test_profile_error_is_a_config_error_with_its_parts() -> None:
    with pytest.raises(ConfigError) as caught:
        load_profile(BROKEN / "cc_out_of_range.yaml")
    error = caught.value
    assert isinstance(error, ProfileError)
    assert (error.line, error.column, error.key_path) == (5, 20, "mappings.filter.source")
    assert str(error) == (
        f"{error.file}:5:20: mappings.filter.source: midi.cc.1.130: 130 is not a MIDI CC number (0-127)"
    )


def test_a_missing_profile_is_a_profile_error(tmp_path: Path) -> None:
    with pytest.raises(ProfileError, match="no such file"):
        load_profile(tmp_path / "nope.yaml")
    with pytest.raises(ProfileError, match="is a folder"):
        load_profile(tmp_path)


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "metadj_bridge", *args], check=False, capture_output=True, text=True,
                          timeout=60)


def test_check_command_reports_each_file() -> None:
    broken = [BROKEN / "cc_out_of_range.yaml", BROKEN / "tabs.yaml", BROKEN / "circular_a.yaml"]
    proc = cli("check", str(GOOD / "full.yaml"), *map(str, broken))
    assert proc.returncode == 1
    assert proc.stdout.splitlines() == [f"ok  {GOOD / 'full.yaml'} (2 themes, 15 mappings)"]
    # full.yaml is good, with one warning: its LFO drives kv_cache_attention_bias, which longlive ignores.
    warning, *errors = proc.stderr.splitlines()
    assert warning.startswith(f"warning: {GOOD / 'full.yaml'}:63:116: kv_cache_attention_bias does nothing on longlive")
    assert len(errors) == 3 and all(line.startswith("error: ") for line in errors)
    for path, line in zip(broken, errors, strict=True):
        assert path.name in line
    assert "Traceback" not in proc.stderr


def test_check_exits_0_when_all_are_good() -> None:
    out, err = io.StringIO(), io.StringIO()
    assert run_check([str(GOOD / "full.yaml"), str(GOOD / "child.yaml")], out, err) == 0
    assert out.getvalue().splitlines()[1] == f"ok  {GOOD / 'child.yaml'} (3 themes, 3 mappings)"
    # Nothing but a warning for each mapping on a key longlive ignores in the profile's input mode.
    assert [line.split(" does nothing")[0] for line in err.getvalue().splitlines()] == [
        f"warning: {GOOD / 'full.yaml'}:63:116: kv_cache_attention_bias",
        f"warning: {GOOD / 'controllers' / 'midimix.yaml'}:11:40: noise_scale",
    ]


# ------------------------------------------------------------------------------------------------ good profiles


def test_full_profile_field_by_field() -> None:
    p = load_profile(GOOD / "full.yaml")
    where = f"{GOOD / 'full.yaml'}"
    assert p.path == str(GOOD / "full.yaml") and p.name == "Club night" and p.extends == ()
    s = p.scope
    assert (s.url, s.pipeline, s.aspect, s.resolution) == ("http://gpu-box:8000", "longlive", "9:16", None)
    assert (s.denoising, s.input_mode, s.interpolation) == ((1000, 500, 250), "video", "linear")
    assert (s.min_send_interval, s.max_send_interval, s.parameters) == (0.05, 1.5, {"kv_cache_attention_bias": 0.3})
    assert s.where == f"{where}:4:3"
    audio, midi, osc, tempo = p.inputs.audio, p.inputs.midi, p.inputs.osc, p.inputs.tempo
    assert (audio.source, audio.path, audio.gain, audio.normalise) == ("file", str(GOOD / "set.wav"), 1.5, False)
    assert (midi.devices, midi.virtual, midi.feedback, midi.clock) == (
        ("MIDImix", "re:^APC"), "metadj-bridge", "MIDImix", False)
    assert [(e.channel, e.cc, e.mode, e.step) for e in midi.encoders] == [(2, 16, "offset64", 0.01)]
    assert [(c.channel, c.msb) for c in midi.cc14] == [(1, 1)]
    assert (osc.port, osc.host, osc.presets, osc.out) == (9000, "0.0.0.0", ("resolume", "ableton"), "127.0.0.1:9001")
    assert (tempo.link, tempo.link_may_set_tempo, tempo.prefer, tempo.beats_per_bar) == (
        True, True, ("midi_clock", "audio"), 3)
    neon, ocean = p.themes
    assert neon.name == "neon" and neon.blend and neon.parameters == {"noise_scale": 0.6}
    assert neon.pad == ("note", 1, 36)
    assert [(q.text, q.weight) for q in neon.prompts] == [
        ("neon city at night, rain on glass", 1.0), ("a tunnel of neon light", 0.5)]
    assert neon.prompts[1].where == f"{where}:27:9"
    assert [q.text for q in ocean.prompts] == ["deep ocean", "coral reef", "jellyfish"]
    assert not ocean.blend and ocean.pad == ("cc", 1, 64)
    assert p.start_theme == "ocean"
    assert (p.transitions.theme_steps, p.transitions.prompt_steps, p.transitions.method) == (6, 2, "linear")
    assert p.cycle is not None
    assert (p.cycle.every_bars, p.cycle.order, p.cycle.themes, p.cycle.prompt_every_bars) == (
        8, "random", ("neon", "ocean"), 4)
    assert (p.pulse.amount, p.pulse.decay, p.panic.parameters) == (0.3, 0.5, {"noise_scale": 0.2})

    m = {mapping.name: mapping for mapping in p.mappings}
    assert list(m)[:3] == ["energy_to_noise", "beat_pulse", "loud_reset"]
    energy = m["energy_to_noise"]
    assert energy.source == SignalSource("audio.energy", 0.1, where=f"{where}:41:13")
    assert [type(t) for t in energy.transforms] == [
        Range, Curve, Curve, Smooth, Smooth, Deadzone, Deadzone, Invert, Clamp, Steps, Scale]
    r, c1, c2, s1, s2, d1, d2, _, cl, st_, sc = energy.transforms
    assert (r.in_lo, r.in_hi, r.out_lo, r.out_hi, r.clamp) == (0, 1, 0.3, 0.9, False)
    assert (c1.shape, c2.shape, c2.amount) == ("exponential", "s", 4)
    assert (s1.attack, s1.release, s2.attack, s2.release) == (0.2, 0.2, 0.05, 0.4)
    assert (d1.width, d1.centre, d2.width, d2.centre) == (0.02, 0.0, 0.1, 0.5)
    assert (cl.lo, cl.hi, st_.count, sc.factor, sc.offset) == (0.1, 0.9, 4, 2, -0.5)
    assert energy.target == Target("parameter", "noise_scale", where=f"{where}:55:13") and energy.combine == "max"
    assert isinstance(m["beat_pulse"].source, TriggerSource)
    assert m["beat_pulse"].transforms[0] == Quantize("bar", 80.0, where=m["beat_pulse"].transforms[0].where)
    assert m["beat_pulse"].target.kind == "action" and m["beat_pulse"].target.name == "pulse_noise"
    reset = m["loud_reset"]
    assert [type(t) for t in reset.transforms] == [Threshold, Quantize] and not reset.enabled
    assert reset.transforms[0] == Threshold(0.8, 0.5, where=reset.transforms[0].where)
    wobble = m["wobble"].source
    assert isinstance(wobble, Lfo) and (wobble.shape, wobble.period_beats, wobble.phase) == ("triangle", 4, 0.25)
    hit = m["hit"].source
    assert isinstance(hit, Envelope)
    assert (hit.trigger, hit.attack, hit.decay, hit.beats) == ("midi.note.1.36", 0, 1, True)
    targets = {name: (mapping.target.kind, mapping.target.name, mapping.target.argument) for name, mapping in m.items()}
    assert targets["crossfade"] == ("prompt_mix", "mix", (0, 1))
    assert targets["crossfade_far"] == ("prompt_mix", "mix", (0, 2))
    assert targets["weight_two"] == ("prompt_weight", "weight", (1,))
    assert targets["steps"] == ("parameter", "denoising_steps", ())
    assert targets["pick"] == ("prompt", "select", ())
    assert targets["next_prompt"] == ("prompt", "next", ())
    assert targets["next_theme"] == ("theme", "next", ())
    assert targets["go_neon"] == ("theme", "set", ("neon",))
    assert targets["panic_button"] == ("action", "panic", ())
    assert targets["other_show"] == ("profile", "", (str(GOOD / "ambient.yaml"),))
    assert m["steps"].source == SignalSource("osc./composition/master", where=m["steps"].source.where)
    assert [(w.trigger, w.path, w.program) for w in p.switches] == [
        ("midi.program.1", str(GOOD / "ambient.yaml"), 2),
        ("osc./metadj/profile/ambient", str(GOOD / "ambient.yaml"), None),
    ]


def test_extends_merges_sections_by_key_and_entries_by_name() -> None:
    p = load_profile(GOOD / "child.yaml")
    base = GOOD / "controllers" / "midimix.yaml"
    assert p.name == "child" and p.extends == (str(base),)
    # scope: the child's resolution replaces the base's aspect; parameters merge key by key.
    assert (p.scope.aspect, p.scope.resolution, p.scope.denoising) == (None, (512, 512), (1000, 250))
    assert p.scope.parameters == {"noise_scale": 0.5, "kv_cache_attention_bias": 0.4}
    assert (p.inputs.midi.devices, p.inputs.midi.virtual, p.inputs.midi.clock) == (("MIDImix",), "bridge-in", False)
    assert p.inputs.osc.port == 9000 and p.inputs.osc.where.startswith(f"{base}:")
    # themes and mappings: base order kept, same name replaced, new ones appended.
    assert [t.name for t in p.themes] == ["base_theme", "shared", "own"]
    assert p.theme("shared").prompts[0].text == "new prompt"
    assert [m.name for m in p.mappings] == ["knob", "shared", "own"]
    shared = p.mappings[1]
    assert shared.target.name == "vace_context_scale" and shared.where.startswith(f"{GOOD / 'child.yaml'}:")
    assert p.mappings[0].where.startswith(f"{base}:")
    # switches append; each path resolves relative to the file it was written in.
    ambient = str(GOOD / "ambient.yaml")
    assert [(s.program, s.path) for s in p.switches] == [(1, ambient), (2, ambient)]


def write(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.write_text(text, encoding="utf-8")
    return path


def test_defaults_and_shorthands(tmp_path: Path) -> None:
    path = write(tmp_path, "tiny.yaml", "themes:\n  calm:\n    prompts: one prompt\n"
                 "inputs:\n  audio: \"file:music/set.wav\"\n  midi: {devices: APC40}\n")
    p = load_profile(str(path))
    assert p.name == "tiny" and p.start_theme is None and p.cycle is None and p.mappings == ()
    assert p.themes[0].prompts[0].text == "one prompt"
    assert p.scope.aspect == "16:9" and p.scope.denoising == (1000, 750, 500, 250)
    assert p.inputs.audio.source == "file" and p.inputs.audio.path == str(tmp_path / "music" / "set.wav")
    assert p.inputs.midi.devices == ("APC40",)


def test_partly_given_settings_keep_the_model_defaults(tmp_path: Path) -> None:
    path = write(tmp_path, "partial.yaml", """\
themes: {a: {prompts: [x]}}
scope: {sender: {max_interval: 1}}
mappings:
  m:
    source: audio.energy
    transforms: [{smooth: {attack: 0.05}}, {deadzone: {centre: 0.5}}, {clamp: {hi: 0.5}}, smooth, range]
    target: noise_scale
  t:
    source: audio.low
    transforms: [{threshold: {on: 0.9}}]
    target: prompt.next
""")
    p = load_profile(path)
    assert (p.scope.min_send_interval, p.scope.max_send_interval) == (1 / 30, 1.0)
    smooth, deadzone, clamp, bare_smooth, bare_range = p.mappings[0].transforms
    assert (smooth.attack, smooth.release) == (0.05, 0.1)
    assert (deadzone.width, deadzone.centre) == (0.02, 0.5)
    assert (clamp.lo, clamp.hi) == (0.0, 0.5)
    assert (bare_smooth.attack, bare_range.in_hi, bare_range.clamp) == (0.1, 1.0, True)
    threshold = p.mappings[1].transforms[0]
    assert (threshold.on, threshold.off) == (0.9, 0.4)


def test_anchors_and_merge_keys(tmp_path: Path) -> None:
    path = write(tmp_path, "anchors.yaml",
                 "themes:\n  a: &t {prompts: [x], blend: true}\n  b:\n    <<: *t\n    blend: false\n")
    a, b = load_profile(path).themes
    assert a.blend and not b.blend and b.prompts[0].text == "x"


def test_diamond_extends_is_not_a_cycle(tmp_path: Path) -> None:
    write(tmp_path, "root.yaml", "themes:\n  r: {prompts: [root]}\n")
    write(tmp_path, "left.yaml", "extends: root.yaml\nthemes:\n  l: {prompts: [left]}\n")
    write(tmp_path, "right.yaml", "extends: root.yaml\nthemes:\n  r: {prompts: [right]}\n")
    top = write(tmp_path, "top.yaml", "extends: [left.yaml, right.yaml]\n")
    p = load_profile(top)
    assert [(t.name, t.prompts[0].text) for t in p.themes] == [("r", "right"), ("l", "left")]
    assert p.extends == tuple(str(tmp_path / n) for n in ("root.yaml", "left.yaml", "right.yaml"))


# ------------------------------------------------------------------------------------------------ fuzzing


def assert_only_profile_errors(path: Path) -> None:
    try:
        load_profile(path)
    except ProfileError as exc:
        assert str(exc).startswith(str(path))
        assert "Traceback" not in str(exc)


FUZZ = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-300, 70000), st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12), st.sampled_from(["audio.energy", "midi.cc.1.19", "noise_scale", "theme.set:neon", "demo",
                                           "prompt.mix.0.1", "osc./x", "action.panic", "16:9", "beat", "invert"]),
)
keys = st.one_of(st.text(max_size=8), st.sampled_from(
    ["themes", "mappings", "scope", "inputs", "prompts", "source", "target", "transforms", "range", "in", "out",
     "midi", "osc", "audio", "tempo", "cycle", "switches", "extends", "resolution", "denoising", "threshold",
     "trigger", "lfo", "envelope", "pad", "parameters", "start_theme", "neon"]))
documents = st.recursive(
    scalars, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(keys, inner, max_size=5), max_leaves=25
)


@FUZZ
@given(doc=documents)
def test_fuzz_random_documents(tmp_path: Path, doc: Any) -> None:
    path = tmp_path / "fuzz.yaml"
    path.write_text(yaml.safe_dump(doc), encoding="utf-8")
    assert_only_profile_errors(path)


@FUZZ
@given(data=st.binary(max_size=300))
def test_fuzz_random_bytes(tmp_path: Path, data: bytes) -> None:
    path = tmp_path / "bytes.yaml"
    path.write_bytes(data)
    assert_only_profile_errors(path)


FULL = yaml.safe_load((GOOD / "full.yaml").read_text(encoding="utf-8"))


def leaf_paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix]
    if isinstance(value, dict):
        for k, v in value.items():
            out += leaf_paths(v, (*prefix, k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            out += leaf_paths(v, (*prefix, i))
    return out


FULL_PATHS = leaf_paths(FULL)[1:]


@FUZZ
@given(edits=st.lists(st.tuples(st.sampled_from(FULL_PATHS), documents), min_size=1, max_size=3))
def test_fuzz_mutated_full_profile(tmp_path: Path, edits: list[tuple[tuple[Any, ...], Any]]) -> None:
    """The good profile with a few values replaced by random ones: a clean error or a good profile."""
    import copy

    doc = copy.deepcopy(FULL)
    for where, value in edits:
        node = doc
        try:
            for step in where[:-1]:
                node = node[step]
            node[where[-1]] = value
        except (KeyError, IndexError, TypeError):
            continue
    shutil.copy(GOOD / "ambient.yaml", tmp_path / "ambient.yaml")
    path = tmp_path / "mutated.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
    assert_only_profile_errors(path)


def test_a_billion_laughs_is_refused_quickly(tmp_path: Path) -> None:
    anchors = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    anchors += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 9)]
    text = "themes:\n  n:\n    prompts: [x]\n    parameters:\n      modulations:\n"
    text += "".join(f"        {line}\n" for line in anchors)
    path = write(tmp_path, "laughs.yaml", text)
    with pytest.raises(ProfileError, match="once aliases are expanded") as caught:
        load_profile(path)
    assert caught.value.line == 6


def test_the_video_section(tmp_path: Path) -> None:
    (tmp_path / "face.png").write_bytes(b"\x89PNG")
    path = tmp_path / "avatar.yaml"
    path.write_text(
        "themes: {a: {prompts: [x]}}\n"
        "video:\n"
        "  outputs: [vcam, preview, 'record:sets/night.mkv', vcam]\n"
        "  size: [1280, 720]\n"
        "  fps: 60\n"
        "  slate_after: 2\n"
        "  source: file:clips/dancer.mp4\n"
        "  ref_images: face.png\n",
        encoding="utf-8",
    )
    video = load_profile(path).video
    assert video.outputs == ("vcam", "preview", f"record:{tmp_path / 'sets' / 'night.mkv'}")
    assert (video.size, video.fps, video.slate_after) == ((1280, 720), 60.0, 2.0)
    assert video.source == f"file:{tmp_path / 'clips' / 'dancer.mp4'}"
    assert video.ref_images == (str(tmp_path / "face.png"),)
    assert load_profile(bundled_profile("default")).video.outputs == ("vcam",)


def test_yaml_1_1_traps_get_a_hint_with_the_text_as_written(tmp_path: Path) -> None:
    path = write(tmp_path, "traps.yaml", "name: no\nscope:\n  aspect: 16:9\n  parameters: {base_seed: 0755}\n"
                 "themes:\n  no:\n    prompts: [on]\n  calm: {prompts: [x]}\nstart_theme: off\n"
                 "pulse: {amount: yes}\n")
    _, errors = check_profile(str(path))
    found = {e.key_path: str(e).split(": ", 2)[2] for e in errors}
    assert found == {
        "name": 'no was read as false (YAML 1.1 reads yes/no/on/off as true/false); write "no" in quotes',
        "scope.aspect": '16:9 was read as the number 969 (YAML 1.1 reads a:b as base 60); write "16:9" in quotes',
        "scope.parameters.base_seed": "0755 was read as the number 493 (YAML 1.1 reads a leading 0 as base 8); "
                                      "write 755 without the leading 0, or 493 if you meant base 8",
        "themes.no.prompts[0]": 'on was read as true (YAML 1.1 reads yes/no/on/off as true/false); '
                                'write "on" in quotes',
        "start_theme": 'off was read as false (YAML 1.1 reads yes/no/on/off as true/false); write "off" in quotes',
        "pulse.amount": "yes: expected a number >= 0 and <= 1, got true/false; yes was read as true (YAML 1.1 reads "
                        "yes/no/on/off as true/false)",
    }, [str(e) for e in errors]
    assert str(next(e for e in errors if e.key_path == "scope.aspect")).startswith(f"{path}:3:11: ")
    # Quoted, each one is what it says; a key is always the text as written (a theme named no); true stays true.
    fixed = write(tmp_path, "fixed.yaml", "name: 'no'\nscope:\n  aspect: \"16:9\"\n  parameters: {base_seed: 755}\n"
                  "themes:\n  no:\n    prompts: ['on']\n  calm: {prompts: [x]}\nstart_theme: 'no'\n"
                  "pulse: {amount: 1}\n")
    profile = load_profile(str(fixed))
    assert (profile.name, profile.scope.aspect, profile.start_theme) == ("no", "16:9", "no")
    assert profile.scope.parameters["base_seed"] == 755 and profile.themes[0].prompts[0].text == "on"


def test_check_lists_at_most_fifty_errors_a_file(tmp_path: Path) -> None:
    themes = "".join(f"  t{i}:\n    prompts: [a]\n    colour: red\n" for i in range(70))
    path = write(tmp_path, "many.yaml", "themes:\n" + themes)
    err = io.StringIO()
    assert run_check([str(path)], io.StringIO(), err) == 1
    lines = err.getvalue().splitlines()
    assert len(lines) == 51 and all(line.startswith(f"error: {path}:") for line in lines)
    assert "themes.t49.colour: unknown key" in lines[49] and lines[50] == f"error: {path}: ... and 20 more (fix " \
        "these and check again)"
