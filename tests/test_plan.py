"""Settling `run`'s settings: flag > profile > default (pure)."""

from __future__ import annotations

import argparse
import dataclasses

import pytest

from metadj_bridge.bundled import bundled_profile
from metadj_bridge.cli import build_parser
from metadj_bridge.errors import ConfigError
from metadj_bridge.profile.model import (
    AudioSettings,
    CycleSettings,
    EncoderSettings,
    InputSettings,
    MidiSettings,
    OscSettings,
    PromptSpec,
    ScopeSettings,
    ShowProfile,
    TempoSettings,
    Theme,
)
from metadj_bridge.run.plan import RunOptions, make_plan


def profile(**changes: object) -> ShowProfile:
    base = ShowProfile(
        path="/shows/club.yaml",
        name="club",
        scope=ScopeSettings(url="http://gpu-box:8000", pipeline="krea-realtime-video", aspect=None,
                            resolution=(512, 512), denoising=(1000, 500, 250), min_send_interval=0.05,
                            max_send_interval=1.5),
        inputs=InputSettings(
            audio=AudioSettings(source="file", path="/shows/set.wav", gain=2.0, normalise=False),
            midi=MidiSettings(devices=("MIDImix",), feedback="MIDImix",
                              encoders=(EncoderSettings(channel=1, cc=16, mode="offset64", step=0.02),)),
            osc=OscSettings(port=7001, presets=("resolume",), out="127.0.0.1:9001"),
            tempo=TempoSettings(link=True),
        ),
        themes=(Theme("neon", (PromptSpec("neon city"),)), Theme("ocean", (PromptSpec("deep ocean"),))),
        cycle=CycleSettings(every_bars=16),
    )
    return dataclasses.replace(base, **changes)  # type: ignore[arg-type]


def options(*argv: str) -> RunOptions:
    args = build_parser().parse_args(["run", *argv])
    assert isinstance(args, argparse.Namespace)
    return RunOptions.from_args(args)


def test_the_profile_decides_when_no_flag_is_given() -> None:
    plan = make_plan(options(), profile())
    assert plan.scope_url == "http://gpu-box:8000"
    assert plan.pipeline == "krea-realtime-video"
    assert (plan.width, plan.height) == (512, 512)
    assert plan.denoising == (1000, 500, 250)
    assert (plan.min_send_interval, plan.max_send_interval) == (0.05, 1.5)
    audio = (plan.audio, plan.audio_path, plan.audio_gain, plan.audio_normalise)
    assert audio == ("file", "/shows/set.wav", 2.0, False)
    assert plan.midi == ("MIDImix",) and plan.midi_feedback == "MIDImix"
    assert plan.midi_controls.relative[0].cc == 16 and plan.midi_controls.relative[0].step == 0.02
    assert plan.osc_port == 7001 and plan.osc_presets == ("resolume",) and plan.osc_out == "127.0.0.1:9001"
    assert plan.link is True and plan.watch is True


def test_flags_win_over_the_profile() -> None:
    plan = make_plan(
        options("--scope", "http://127.0.0.1:8000/", "--pipeline", "longlive", "--aspect", "9:16", "--denoise", "fast",
                "--min-send-interval", "0.1", "--no-audio", "--midi", "nano", "--osc-port", "9000", "--no-watch"),
        profile(),
    )
    assert plan.scope_url == "http://127.0.0.1:8000"
    assert plan.pipeline == "longlive"
    assert (plan.width, plan.height) == (480, 832)
    assert plan.denoising == (1000, 250)
    assert plan.min_send_interval == 0.1 and plan.max_send_interval == 1.5
    assert plan.audio == "none"
    assert plan.midi == ("nano",)
    assert plan.osc_port == 9000
    assert plan.watch is False


def test_prompt_flags_replace_the_themes_and_cycle_sets_the_bars() -> None:
    plan = make_plan(options("--prompt", "red desert", "--prompt", "blue ice", "--cycle", "8"), profile())
    assert [t.prompts[0].text for t in plan.profile.themes] == ["red desert", "blue ice"]
    assert plan.profile.cycle is not None and plan.profile.cycle.every_bars == 8
    single = make_plan(options("--prompt", "only this"), profile())
    assert len(single.profile.themes) == 1 and single.profile.cycle is None


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (("--duration", "-3"), "--duration -3: must be more than 0"),
        (("--min-send-interval", "3"), "minimum 3 s must be > 0 and <= the maximum 1.5 s"),
        (("--osc-out", "nowhere"), "expected HOST:PORT"),
        (("--cycle", "0"), "--cycle 0: must be 1-10000 bars"),
        # Held to the profile's cycle.every_bars: a cycle that long never turns over in a show.
        (("--cycle", "99999999999999999999"), "--cycle 99999999999999999999: must be 1-10000 bars"),
        # Held to the profile's scope.sender bounds: a change could wait that long when Scope seems slow.
        (("--max-send-interval", "1e300"), "the maximum 1e\\+300 s at most 3600 s"),
        (("--min-send-interval", "61", "--max-send-interval", "100"), "the minimum 61 s may be at most 60 s"),
    ],
)
def test_impossible_settings_are_clear_errors(argv: tuple[str, ...], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        make_plan(options(*argv), profile())


def test_the_bundled_default_profile_is_found() -> None:
    path = bundled_profile("default")
    assert path.name == "default.yaml" and path.is_file()
    with pytest.raises(ConfigError, match="no bundled profile 'nope'"):
        bundled_profile("nope")


def test_environment_variables_sit_between_flags_and_the_profile() -> None:
    env = {"METADJ_SCOPE": "http://gpu-box:9000", "METADJ_OUTPUT": "preview", "METADJ_OSC_PORT": "7100",
           "METADJ_LINK": "yes", "METADJ_MIDI": "MIDImix, nano"}
    args = build_parser().parse_args(["run"])
    plan = make_plan(RunOptions.from_args(args, env), profile())
    assert plan.scope_url == "http://gpu-box:9000"
    assert plan.video_outputs == ("preview",)
    assert plan.osc_port == 7100 and plan.link is True and plan.midi == ("MIDImix", "nano")
    flagged = build_parser().parse_args(["run", "--scope", "http://127.0.0.1:8000", "--midi", "apc"])
    plan = make_plan(RunOptions.from_args(flagged, env), profile())
    assert plan.scope_url == "http://127.0.0.1:8000" and plan.midi == ("apc",)
    with pytest.raises(ConfigError, match="METADJ_OSC_PORT='seven'"):
        RunOptions.from_args(args, {"METADJ_OSC_PORT": "seven"})
    with pytest.raises(ConfigError, match="METADJ_LINK='maybe'"):
        RunOptions.from_args(args, {"METADJ_LINK": "maybe"})
    # Empty text is refused as on the command line (an empty METADJ_OUTPUT would have meant no video at all); an
    # empty list or flag still means none.
    for variable in ("METADJ_OUTPUT", "METADJ_SCOPE", "METADJ_SHOW_LOG", "METADJ_HTTP_TOKEN"):
        with pytest.raises(ConfigError, match=f"{variable}=' ': must not be empty"):
            RunOptions.from_args(args, {variable: " "})
    assert RunOptions.from_args(args, {"METADJ_MIDI": "", "METADJ_LINK": ""}).link is False


def test_rehearsal_uses_the_emulator_the_demo_track_and_the_preview() -> None:
    plan = make_plan(options("--rehearse"), profile())
    assert plan.scope_url is None and plan.audio == "demo" and plan.video_outputs == ("preview",)
    assert plan.profile.themes[0].name == "neon"  # the show itself is the profile's
    with pytest.raises(ConfigError, match="leave out --scope"):
        make_plan(options("--rehearse", "--scope", "http://127.0.0.1:8000"), profile())
