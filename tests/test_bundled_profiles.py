"""The bundled show profiles (``metadj_bridge/bundled/profiles/``): they load, ``metadj-bridge check`` accepts
them, and each one does what its header promises (no controller for the default show, the MIDImix's real factory
layout, ...)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from metadj_bridge.bundled import PROFILES_DIR
from metadj_bridge.inputs.osc_presets import ABLETON, RESOLUME
from metadj_bridge.profile import load_profile
from metadj_bridge.profile.model import (
    Envelope,
    Lfo,
    Range,
    ShowProfile,
    SignalSource,
    Smooth,
    TriggerSource,
)

ROOT = Path(__file__).resolve().parent.parent
MAPPINGS = PROFILES_DIR
BUNDLED = sorted(MAPPINGS.rglob("*.yaml"))

# The Akai MIDImix factory layout, all on MIDI channel 1, as Ableton Live's MIDI_Mix remote script and the
# Zynthian MIDImix driver define it (sources cited in controllers/midimix.yaml).
MIDIMIX_KNOB_ROWS = (
    (16, 20, 24, 28, 46, 50, 54, 58),
    (17, 21, 25, 29, 47, 51, 55, 59),
    (18, 22, 26, 30, 48, 52, 56, 60),
)
MIDIMIX_FADERS = (19, 23, 27, 31, 49, 53, 57, 61)
MIDIMIX_MASTER = 62
MIDIMIX_MUTE = (1, 4, 7, 10, 13, 16, 19, 22)
MIDIMIX_SOLO_SHIFTED = (2, 5, 8, 11, 14, 17, 20, 23)
MIDIMIX_REC_ARM = (3, 6, 9, 12, 15, 18, 21, 24)
MIDIMIX_BANK_LEFT, MIDIMIX_BANK_RIGHT, MIDIMIX_SOLO = 25, 26, 27
MIDIMIX_CCS = {*(cc for row in MIDIMIX_KNOB_ROWS for cc in row), *MIDIMIX_FADERS, MIDIMIX_MASTER}
MIDIMIX_NOTES = {*MIDIMIX_MUTE, *MIDIMIX_SOLO_SHIFTED, *MIDIMIX_REC_ARM, MIDIMIX_BANK_LEFT, MIDIMIX_BANK_RIGHT,
                 MIDIMIX_SOLO}
MIDIMIX_PROFILES = ("controllers/midimix.yaml", "midimix-show.yaml")


def load(name: str) -> ShowProfile:
    return load_profile(MAPPINGS / name)


def input_names(p: ShowProfile) -> list[str]:
    """Every signal and trigger name the profile's mappings and switches read."""
    names: list[str] = []
    for m in p.mappings:
        if isinstance(m.source, (SignalSource, TriggerSource)):
            names.append(m.source.name)
        elif isinstance(m.source, Envelope):
            names.append(m.source.trigger)
    names += [s.trigger for s in p.switches]
    return names


def theme_set_triggers(p: ShowProfile) -> dict[str, set[str]]:
    """Theme name -> the trigger names of the mappings that go to it with theme.set."""
    out: dict[str, set[str]] = {}
    for m in p.mappings:
        if m.target.kind == "theme" and m.target.name == "set" and isinstance(m.source, TriggerSource):
            out.setdefault(str(m.target.argument[0]), set()).add(m.source.name)
    return out


def test_the_bundled_set_is_there() -> None:
    found = {str(path.relative_to(MAPPINGS)) for path in BUNDLED}
    assert {"default.yaml", "avatar.yaml", "controllers/midimix.yaml", "midimix-show.yaml", "resolume.yaml",
            "ableton.yaml"} <= found


@pytest.mark.parametrize("path", BUNDLED, ids=lambda p: str(p.relative_to(MAPPINGS)))
def test_every_bundled_profile_loads(path: Path) -> None:
    p = load_profile(path)
    assert p.themes, "a profile with no theme has no picture"
    assert all(theme.prompts and all(prompt.text.strip() for prompt in theme.prompts) for theme in p.themes)
    assert p.name and p.name != path.stem, "each bundled profile names itself for the status line"


def test_check_accepts_every_bundled_profile() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "metadj_bridge", "check", *map(str, BUNDLED)],
        capture_output=True, text=True, timeout=60, cwd=ROOT, check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("ok  ") == len(BUNDLED), result.stdout


def test_default_profile_plays_the_music_alone() -> None:
    p = load("default.yaml")
    assert p.inputs.midi.devices == () and p.inputs.midi.virtual is None
    assert p.inputs.osc.port is None
    assert not p.inputs.tempo.link
    assert p.inputs.audio.source == "demo", "`metadj-bridge run` with no arguments must work with nothing plugged in"
    assert all(name.startswith(("audio.", "tempo.")) for name in input_names(p))
    assert 3 <= len(p.themes) <= 5
    assert all(len(theme.prompts) >= 3 for theme in p.themes)
    assert p.cycle is not None and p.cycle.every_bars == 16 and p.cycle.prompt_every_bars == 4
    # The seed's defaults.
    s = p.scope
    assert (s.url, s.pipeline, s.aspect, s.resolution, s.input_mode) == (None, "longlive", "16:9", None, "text")
    assert s.denoising == (1000, 750, 500, 250)
    assert (p.transitions.theme_steps, p.transitions.prompt_steps, p.transitions.method) == (8, 3, "slerp")


def test_default_profile_moves_what_a_text_mode_pipeline_reads() -> None:
    """Energy to the intense variant (smoothed), bars to seed steps, the drop to a reset."""
    p = load("default.yaml")
    assert p.scope.input_mode == "text"
    energy = [m for m in p.mappings if isinstance(m.source, SignalSource) and m.source.name == "audio.energy"]
    assert [m.target.kind for m in energy] == ["prompt_intensity"]
    assert any(isinstance(t, Smooth) for t in energy[0].transforms)
    assert all(t.intense for t in p.themes), "every theme needs an intense variant for the energy to show"
    by_action = {m.target.name: m.source for m in p.mappings if m.target.kind == "action"}
    assert {"seed_step", "reset_cache"} <= set(by_action)
    assert isinstance(by_action["seed_step"], TriggerSource) and by_action["seed_step"].name == "tempo.bar"
    assert isinstance(by_action["reset_cache"], TriggerSource) and by_action["reset_cache"].name == "audio.drop"
    assert not [m for m in p.mappings if m.target.name in ("noise_scale", "pulse_noise")]


@pytest.mark.parametrize("name", ["default.yaml", "ableton.yaml", "resolume.yaml", "controllers/midimix.yaml",
                                  "midimix-show.yaml"])
def test_text_mode_profiles_react_with_what_the_pipeline_reads(name: str) -> None:
    """Every bundled text-mode profile passes ``check --strict`` (no key the pipeline ignores), drives the
    intensity blend from the music, and has an intense variant for every theme that can be played."""
    p = load(name)
    assert p.scope.input_mode == "text"
    proc = subprocess.run([sys.executable, "-m", "metadj_bridge", "check", "--strict", str(MAPPINGS / name)],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and not proc.stderr, proc.stderr
    music = [m for m in p.mappings if isinstance(m.source, SignalSource) and m.source.name == "audio.energy"]
    assert music and all(m.target.kind == "prompt_intensity" for m in music)
    assert all(t.intense or all(pr.intense for pr in t.prompts) for t in p.themes)
    assert {m.target.name for m in p.mappings if m.target.kind == "action"} & {"accent", "seed_step"}


def test_avatar_is_video_to_video_at_the_seed_size() -> None:
    p = load("avatar.yaml")
    assert p.scope.input_mode == "video"
    assert p.scope.resolution == (320, 576)
    assert p.scope.parameters.get("noise_controller") is False, "the music, not Scope's motion estimate, sets the noise"
    noise = [m for m in p.mappings if m.target.kind == "parameter" and m.target.name == "noise_scale"]
    assert noise, "noise_scale is what the music moves in video mode"
    # Gentle: the music never pushes the noise far, and the pulse is small.
    for m in noise:
        ranges = [t for t in m.transforms if isinstance(t, Range)]
        assert ranges and all(0.3 <= min(r.out_lo, r.out_hi) and max(r.out_lo, r.out_hi) <= 0.7 for r in ranges)
    assert p.pulse.amount <= 0.15


@pytest.mark.parametrize("name", MIDIMIX_PROFILES)
def test_midimix_profiles_use_the_factory_layout(name: str) -> None:
    p = load(name)
    midi = p.inputs.midi
    assert any("MIDI Mix" in d for d in midi.devices) and midi.feedback is not None and "MIDI Mix" in midi.feedback
    names = input_names(p)
    ccs = [n for n in names if n.startswith("midi.cc.")]
    notes = [n for n in names if n.startswith("midi.note.")]
    assert ccs and notes
    assert all(n.split(".")[2] == "1" for n in ccs + notes), "the MIDImix sends everything on channel 1"
    assert {int(n.split(".")[3]) for n in ccs} <= MIDIMIX_CCS
    assert {int(n.split(".")[3]) for n in notes} <= MIDIMIX_NOTES
    assert not [n for n in names if n.startswith("midi.") and not n.startswith(("midi.cc.", "midi.note."))]


def test_midimix_faders_drive_parameters_and_knobs_drive_prompts() -> None:
    p = load("controllers/midimix.yaml")
    by_cc = {int(m.source.name.split(".")[3]): m for m in p.mappings
             if isinstance(m.source, SignalSource) and m.source.name.startswith("midi.cc.1.")}
    fader_targets = {by_cc[cc].target.kind for cc in (*MIDIMIX_FADERS, MIDIMIX_MASTER) if cc in by_cc}
    knob_targets = {by_cc[cc].target.kind for row in MIDIMIX_KNOB_ROWS for cc in row if cc in by_cc}
    assert fader_targets == {"parameter", "prompt_intensity"}
    assert knob_targets == {"prompt_mix", "prompt_weight"}
    assert {by_cc[cc].target.name for cc in MIDIMIX_FADERS + (MIDIMIX_MASTER,) if cc in by_cc} >= {
        "intensity", "denoising_steps", "vace_context_scale", "base_seed"}


@pytest.mark.parametrize("name", MIDIMIX_PROFILES)
def test_midimix_theme_buttons_light_their_own_pad(name: str) -> None:
    p = load(name)
    sets = theme_set_triggers(p)
    padded = [t for t in p.themes if t.pad is not None]
    assert len(padded) >= 4
    for theme in padded:
        assert theme.pad is not None
        kind, channel, number = theme.pad
        assert (kind, channel) == ("note", 1) and number in MIDIMIX_MUTE, f"{theme.name}: pad on a Mute button"
        assert sets.get(theme.name) == {f"midi.note.1.{number}"}, f"{theme.name}: its Mute button picks it"
    pads = [t.pad for t in padded]
    assert len(set(pads)) == len(pads), "one pad per theme"


def test_midimix_has_a_panic_button() -> None:
    p = load("controllers/midimix.yaml")
    panic = [m for m in p.mappings if m.target.kind == "action" and m.target.name == "panic"]
    assert [m.source.name for m in panic if isinstance(m.source, TriggerSource)] == [f"midi.note.1.{MIDIMIX_SOLO}"]


def test_midimix_show_extends_the_controller_and_adds_themes() -> None:
    base = load("controllers/midimix.yaml")
    show = load("midimix-show.yaml")
    assert str(MAPPINGS / "controllers" / "midimix.yaml") in show.extends
    base_names = [t.name for t in base.themes]
    show_names = [t.name for t in show.themes]
    assert show_names[: len(base_names)] == base_names and len(show_names) > len(base_names)
    assert {m.name for m in base.mappings} < {m.name for m in show.mappings}
    assert show.inputs.midi.devices == base.inputs.midi.devices


def test_resolume_listens_where_resolume_sends() -> None:
    p = load("resolume.yaml")
    assert p.inputs.osc.port == RESOLUME.default_port == 7001
    assert p.inputs.osc.presets == ("resolume",)
    osc = [n for n in input_names(p) if n.startswith("osc.")]
    assert osc and all(n.startswith("osc./composition/") for n in osc)
    assert set(theme_set_triggers(p)) == {t.name for t in p.themes}, "a Resolume column for every theme"


def test_ableton_follows_link_and_abletonosc() -> None:
    p = load("ableton.yaml")
    assert p.inputs.tempo.link and not p.inputs.tempo.link_may_set_tempo
    assert p.inputs.tempo.prefer[0] == "link"
    assert p.inputs.osc.port == ABLETON.default_port == 11001
    assert p.inputs.osc.presets == ("ableton",)
    osc = [n for n in input_names(p) if n.startswith("osc.")]
    assert osc and all(n.startswith("osc./live/") for n in osc)
    assert any(isinstance(m.source, Lfo) for m in p.mappings)


@pytest.mark.parametrize("name", [p.relative_to(MAPPINGS).with_suffix("").as_posix() for p in BUNDLED])
def test_a_copy_of_each_bundled_profile_loads_where_it_lands(name: str, tmp_path: Path) -> None:
    """README: `profiles --copy midimix-show my-show.yaml`, then `check my-show.yaml`. The copy must load in the
    folder it was copied to: the bundled profiles it extends (controllers/midimix.yaml) come along beside it."""
    result = subprocess.run([sys.executable, "-m", "metadj_bridge", "profiles", "--copy", name, "my-show.yaml"],
                            capture_output=True, text=True, timeout=60, cwd=tmp_path, check=False)
    assert result.returncode == 0, result.stderr
    copy = load_profile(tmp_path / "my-show.yaml")
    assert [t.name for t in copy.themes] == [t.name for t in load_profile(MAPPINGS / f"{name}.yaml").themes]


def test_a_second_copy_keeps_the_controller_layout_already_there(tmp_path: Path) -> None:
    """A performer's edited controllers/midimix.yaml is never overwritten by copying another show beside it;
    `--copy NAME folder/` puts the copy into that folder."""
    from metadj_bridge.bundled import copy_bases, copy_profile

    first = copy_profile("midimix-show", str(tmp_path / "shows") + "/")
    assert first == tmp_path / "shows" / "midimix-show.yaml"
    copied, kept = copy_bases("midimix-show", first)
    assert copied == [tmp_path / "shows" / "controllers" / "midimix.yaml"] and not kept
    copied[0].write_text(copied[0].read_text(encoding="utf-8") + "\n# mine\n", encoding="utf-8")
    second = copy_profile("midimix-show", str(tmp_path / "shows" / "other.yaml"))
    assert copy_bases("midimix-show", second) == ([], copied)
    assert copied[0].read_text(encoding="utf-8").endswith("# mine\n")
    assert load_profile(second).themes
