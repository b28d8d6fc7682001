"""Reactions a real text-mode pipeline shows (issue 14, item 1): a theme's intense variant blended in by
``prompt.intensity``, beat accents on that blend, seed steps, and the profile format that carries them."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from metadj_bridge.mapping.engine import MappingEngine
from metadj_bridge.profile import load_profile
from metadj_bridge.profile.errors import ProfileError
from metadj_bridge.profile.model import (
    AccentSettings,
    PromptSpec,
    ShowProfile,
    Target,
    Theme,
)
from tests.test_engine import Driver, show, sig, trig

NIGHT = Theme("night", (PromptSpec("city at night"), PromptSpec("harbour", intense="harbour in a storm")),
              intense="city on fire")
PLAIN = Theme("plain", (PromptSpec("a quiet field"),))
INTENSITY = Target("prompt_intensity", "intensity")


def weights(prompts: list[dict]) -> dict[str, float]:
    return {p["text"]: p["weight"] for p in prompts}


def engine(*mappings, **kw) -> Driver:
    kw.setdefault("themes", (NIGHT, PLAIN))
    profile: ShowProfile = show(*mappings, **kw)
    return Driver(MappingEngine(profile, seed=1), tempo_bpm=120.0)


def test_intensity_blends_the_focus_prompt_towards_its_intense_variant() -> None:
    d = engine(sig("midi.cc.1.1", INTENSITY), trig("midi.note.1.1", Target("prompt", "next")),
               trig("midi.note.1.2", Target("theme", "next")))
    assert weights(d.step({"midi.cc.1.1": 0.0}).parameters["prompts"]) == {"city at night": 1.0}
    assert weights(d.step({"midi.cc.1.1": 0.25}).parameters["prompts"]) == {"city at night": 0.75,
                                                                           "city on fire": 0.25}
    out = d.step({"midi.cc.1.1": 1.0})
    assert weights(out.parameters["prompts"]) == {"city on fire": 1.0}
    # The second prompt has its own variant, and the intense one always comes last (after the calm base).
    out = d.step({"midi.cc.1.1": 0.4}, "midi.note.1.1")
    assert out.parameters["prompts"] == [{"text": "harbour", "weight": 0.6}, {"text": "harbour in a storm",
                                                                             "weight": 0.4}]
    assert out.actions["transition"]["target_prompts"] == out.parameters["prompts"]
    # A theme without a variant ignores the intensity.
    out = d.step({"midi.cc.1.1": 0.4}, "midi.note.1.2")
    assert weights(out.parameters["prompts"]) == {"a quiet field": 1.0}


def test_an_accent_jumps_the_intensity_as_far_as_the_music_is_loud_and_falls_back() -> None:
    d = engine(sig("midi.cc.1.1", INTENSITY), trig("tempo.beat", Target("action", "accent")),
               accent=AccentSettings(amount=0.3, decay=0.2))
    base = d.step({"midi.cc.1.1": 0.5}).parameters["prompts"]
    assert weights(base)["city on fire"] == 0.5
    hit = weights(d.step({"midi.cc.1.1": 0.5}, "tempo.beat").parameters["prompts"])["city on fire"]
    assert hit == pytest.approx(0.5 + 0.3 * 0.5, abs=0.02)
    later = [weights(d.step({"midi.cc.1.1": 0.5}, dt=0.1).parameters["prompts"])["city on fire"] for _ in range(10)]
    assert later == sorted(later, reverse=True) and later[0] < hit and later[-1] == 0.5
    # A quiet passage: a small accent.
    d.step({"midi.cc.1.1": 0.1}, dt=1.0)
    quiet = weights(d.step({"midi.cc.1.1": 0.1}, "tempo.beat").parameters["prompts"])["city on fire"]
    assert quiet == pytest.approx(0.1 + 0.3 * 0.1, abs=0.02)
    # Without an intensity mapping the accent jumps by its whole amount.
    alone = engine(trig("tempo.beat", Target("action", "accent")), accent=AccentSettings(amount=0.3, decay=0.2))
    assert weights(alone.step({}, "tempo.beat").parameters["prompts"])["city on fire"] == pytest.approx(0.3, abs=0.02)


def test_accents_and_seed_steps_rest_while_calm() -> None:
    d = engine(trig("tempo.bar", Target("action", "seed_step")), trig("midi.note.1.9", Target("action", "panic")),
               trig("tempo.beat", Target("action", "accent")))
    assert "base_seed" not in d.step().parameters
    assert d.step({}, "tempo.bar").parameters["base_seed"] == 43
    assert d.step({}, "tempo.bar").parameters["base_seed"] == 44
    calm = d.step({}, "midi.note.1.9", "tempo.bar", "tempo.beat")
    assert weights(calm.parameters["prompts"]) == {"city at night": 1.0}
    d.step({}, "midi.note.1.9")
    assert d.step({}, "tempo.bar").parameters["base_seed"] == 45


def test_seed_steps_count_from_the_themes_seed() -> None:
    seeded = Theme("seeded", (PromptSpec("a"),), parameters={"base_seed": 1000})
    d = engine(trig("tempo.bar", Target("action", "seed_step")), themes=(seeded,))
    assert d.step().parameters["base_seed"] == 1000
    assert d.step({}, "tempo.bar").parameters["base_seed"] == 1001


def write(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "show.yaml"
    path.write_text(textwrap.dedent(body), encoding="utf-8")
    return path


def test_the_profile_format_carries_variants_and_accents(tmp_path: Path) -> None:
    path = write(tmp_path, """\
        themes:
          night:
            intense: city on fire
            prompts:
              - city at night
              - {text: harbour, intense: harbour in a storm, weight: 2}
        accent: {amount: 0.4, decay: 0.5}
        mappings:
          loud: {source: audio.energy, target: prompt.intensity}
          kick: {trigger: audio.beat, target: action.accent}
          bar: {trigger: tempo.bar, target: action.seed_step}
          drop: {trigger: audio.drop, target: action.reset_cache}
        """)
    p = load_profile(path)
    night = p.theme("night")
    assert night.intense == "city on fire" and night.intense_of(0) == "city on fire"
    assert night.intense_of(1) == "harbour in a storm" and night.prompts[1].weight == 2
    assert (p.accent.amount, p.accent.decay) == (0.4, 0.5)
    assert [m.target.kind for m in p.mappings] == ["prompt_intensity", "action", "action", "action"]


@pytest.mark.parametrize(("body", "line", "words"), [
    ("themes: {a: {prompts: [x]}}\nmappings:\n  m: {source: audio.energy, target: prompt.intensity}\n",
     3, "no theme has an intense variant"),
    ("themes: {a: {prompts: [x], intense: y}}\nmappings:\n  m: {trigger: audio.beat, target: prompt.intensity}\n",
     3, "takes a continuous value"),
    ("themes: {a: {intense: [1, 2], prompts: [x]}}\n", 1, "themes.a.intense"),
    ("themes: {a: {prompts: [{text: x, intense: " + "y" * 2100 + "}]}}\n", 1, "characters"),
    ("themes: {a: {prompts: [x]}}\naccent: {amount: 2}\n", 2, "accent.amount"),
    ("themes: {a: {prompts: [x]}}\naccent: {decay: 0}\n", 2, "accent.decay"),
])
def test_mistakes_name_the_place(tmp_path: Path, body: str, line: int, words: str) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(body, encoding="utf-8")
    with pytest.raises(ProfileError) as caught:
        load_profile(path)
    message = str(caught.value)
    assert f"bad.yaml:{line}:" in message and words in message, message


def test_check_suggests_the_intensity_for_noise_in_text_mode(tmp_path: Path) -> None:
    path = write(tmp_path, """\
        scope: {pipeline: longlive, input_mode: text}
        themes: {a: {prompts: [x], intense: y}}
        mappings:
          loud: {source: audio.energy, target: noise_scale}
          ok: {source: audio.low, target: prompt.intensity}
        """)
    proc = subprocess.run([sys.executable, "-m", "metadj_bridge", "check", "--strict", str(path)],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1
    assert f"{path}:4:" in proc.stderr and "prompt.intensity" in proc.stderr
    assert ":5:" not in proc.stderr

