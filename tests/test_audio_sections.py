"""Breakdowns and drops (``audio.breakdown``, ``audio.drop``, ``audio.section``) heard in generated music.

Every track goes through the bridge's own path: a WAV-array source, the analyzer's worker thread (feature
extractor, BeatClock, section tracker) and ``deliver`` into a SignalBoard on the event loop. The music is
synthesised with its bars known exactly (``inputs.synth``), and changed with real audio edits (a bar's low band
removed, the level scaled, silence spliced in), never with stand-ins for our code.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from metadj_bridge.inputs import synth
from metadj_bridge.inputs.analysis_config import AnalysisConfig, hop_size_for
from metadj_bridge.inputs.sections import SectionTracker
from metadj_bridge.signals import AUDIO_SIGNALS, AUDIO_TRIGGERS, Trigger
from tests.helpers import hear

SR = synth.SAMPLERATE
HOP_S = hop_size_for(SR) / SR
SECTION_EVENTS = ("audio.breakdown", "audio.drop")


@dataclass
class Heard:
    #: The breakdown and drop triggers, in order.
    events: list[Trigger]
    #: (time, audio.section on the board) after every delivery.
    section: list[tuple[float, float]]

    def kinds(self) -> list[str]:
        return [e.name for e in self.events]

    def section_before(self, t: float) -> float:
        """The section signal on the board after the last delivery of audio before ``t``."""
        return [value for at, value in self.section if at < t][-1]

    def section_after(self, t: float) -> float:
        """The section signal on the board after the delivery that carried the audio at ``t``."""
        return next(value for at, value in self.section if at >= t)


async def listen(samples: np.ndarray, analysis: AnalysisConfig | None = None) -> Heard:
    """Play ``samples`` through the bridge's analysis path as fast as it goes; what reached the board."""
    return Heard(*await hear(samples, SR, SECTION_EVENTS, "audio.section", analysis))


@pytest.fixture(scope="module")
def demo() -> synth.Track:
    return synth.render(synth.DEMO_SPEC)


@pytest.fixture(scope="module")
def demo_heard(demo: synth.Track) -> Heard:
    """The demo track as the bridge hears it at its own level (analysed once for the tests that compare)."""
    return asyncio.run(listen(demo.samples))


BREAKDOWN_SPECS = [
    synth.DEMO_SPEC,
    next(s for s in synth.FIXTURE_SPECS if s.name == "breakdown-drop-128"),
    next(s for s in synth.HELDOUT_SPECS if s.name == "breakdown-offbeat-124"),  # quiet kicks under a loud bass
    synth.TrackSpec("two-bar-breakdown-dnb-174", "dnb", 174, 16, breakdown=(8, 2), seed=31),
]


@pytest.mark.parametrize("spec", BREAKDOWN_SPECS, ids=lambda s: s.name)
async def test_a_breakdown_then_the_drop_on_the_kick_back(spec: synth.TrackSpec) -> None:
    track = synth.render(spec)
    heard = await listen(track.samples)
    assert heard.kinds() == ["audio.breakdown", "audio.drop"]
    breakdown, drop = heard.events
    assert spec.breakdown is not None
    first, bars = spec.breakdown
    kick_stops, kick_back = track.downbeats[first], track.downbeats[first + bars]
    beat, bar = 60.0 / spec.bpm, 60.0 / spec.bpm * spec.beats_per_bar
    # The drop lands with the first kick back (the hop it arrives in), well inside one beat.
    assert kick_back <= drop.t <= kick_back + beat
    # The breakdown: a missing kick or a fill is not one, but two bars without a kick are.
    assert kick_stops + bar < breakdown.t <= kick_stops + 2 * bar
    # The drop says how long the music went without a kick: from the last kick (a beat or so before the
    # breakdown's first bar) to the kick back.
    assert drop.data["seconds"] == pytest.approx(kick_back - kick_stops + beat, abs=beat)
    assert breakdown.data["seconds"] >= bar
    # The section signal: full before, 0 during the breakdown, full again from the drop.
    assert heard.section[0][1] == 1.0
    assert heard.section_before(breakdown.t) == 1.0
    assert heard.section_after(breakdown.t) == 0.0
    assert heard.section_before(drop.t) == 0.0
    assert heard.section_after(drop.t) == 1.0
    assert heard.section[-1][1] == 1.0


NO_BREAKDOWN = ["hiphop-84", "waltz-3-4-132", "offbeat-bass-126", "broken-132", "techno-138", "dnb-174",
                "pumping-132"]


@pytest.mark.parametrize("name", NO_BREAKDOWN)
async def test_music_without_a_breakdown_gives_no_section_events(name: str) -> None:
    spec = next(s for s in (*synth.FIXTURE_SPECS, *synth.HELDOUT_SPECS) if s.name == name)
    heard = await listen(synth.render(spec).samples)
    assert heard.events == []
    assert {value for _, value in heard.section} == {1.0}


@pytest.mark.parametrize(
    "spec",
    [
        synth.TrackSpec("fill-house-124", "house", 124, 14, breakdown=(8, 1), seed=41),
        synth.TrackSpec("fill-hiphop-90", "hiphop", 90, 12, breakdown=(6, 1), seed=42),
        synth.TrackSpec("fill-dnb-170", "dnb", 170, 16, breakdown=(8, 1), seed=43),
    ],
    ids=lambda s: s.name,
)
async def test_one_bar_without_a_kick_is_a_fill_not_a_breakdown(spec: synth.TrackSpec) -> None:
    heard = await listen(synth.render(spec).samples)
    assert heard.events == []


async def test_a_bar_with_its_low_band_cut_changes_nothing(demo: synth.Track, demo_heard: Heard) -> None:
    """A DJ's low-cut over one bar of the groove (the kick and bass gone for a bar): still the same sections."""
    cut = demo.samples.copy()
    start, end = (round(demo.downbeats[bar] * SR) for bar in (8, 9))
    spectrum = np.fft.rfft(cut[start:end])
    spectrum[np.fft.rfftfreq(end - start, 1 / SR) < 300.0] = 0.0
    cut[start:end] = np.fft.irfft(spectrum, end - start)
    edited = await listen(cut)
    assert edited.kinds() == demo_heard.kinds() == ["audio.breakdown", "audio.drop"]
    assert [e.t for e in edited.events] == pytest.approx([e.t for e in demo_heard.events], abs=2 * HOP_S)


async def test_an_intro_without_a_kick_is_the_start_not_a_breakdown() -> None:
    """Four bars of pads and hats, then the kick: the first kick of a track is no drop."""
    track = synth.render(synth.TrackSpec("pad-intro-124", "house", 124, 12, breakdown=(0, 4), seed=44))
    heard = await listen(track.samples)
    assert heard.events == []
    assert {value for _, value in heard.section} == {1.0}


async def test_silence_is_not_a_breakdown_and_music_after_it_is_no_drop(demo: synth.Track) -> None:
    """Seconds of silence, then the groove; the groove stops dead for 8 s, then another track starts."""
    house = synth.render(synth.TrackSpec("house-122", "house", 122, 12, seed=45)).samples
    silence = np.zeros(8 * SR, np.float32)
    groove = demo.samples[round(demo.downbeats[5] * SR):round(demo.downbeats[11] * SR)]
    heard = await listen(np.concatenate([silence[: 4 * SR], groove, silence, house]))
    assert heard.events == []
    assert {value for _, value in heard.section} == {1.0}


@pytest.mark.parametrize(
    ("gain", "analysis"),
    [(0.1, None), (0.1, AnalysisConfig(auto_gain=True))],
    ids=["quiet", "quiet-auto-gain"],
)
async def test_the_same_sections_at_any_level(
    demo: synth.Track, demo_heard: Heard, gain: float, analysis: AnalysisConfig | None
) -> None:
    """The track 20 dB down, read at the bridge's fixed scale or with the input's auto gain: the same events."""
    other = await listen(demo.samples * np.float32(gain), analysis)
    assert other.kinds() == demo_heard.kinds() == ["audio.breakdown", "audio.drop"]
    assert [e.t for e in other.events] == pytest.approx([e.t for e in demo_heard.events], abs=HOP_S)


async def test_a_lone_kick_in_the_breakdown_does_not_steal_the_drop(demo: synth.Track) -> None:
    """One kick two bars before the drop reads as a drop when it lands; the real drop is still reported."""
    edited = demo.samples.copy()
    kick = synth.kick(SR, np.random.default_rng(3))
    start = round(demo.downbeats[14] * SR)
    edited[start:start + len(kick)] += 0.5 * kick
    heard = await listen(edited)
    assert heard.kinds() == ["audio.breakdown", "audio.drop", "audio.drop"]
    beat = 60.0 / synth.DEMO_SPEC.bpm
    assert demo.downbeats[14] <= heard.events[1].t <= demo.downbeats[14] + beat
    assert demo.downbeats[16] <= heard.events[2].t <= demo.downbeats[16] + beat
    # The section signal went full at the lone kick and stayed there: no flapping.
    assert heard.section_after(heard.events[1].t) == 1.0
    assert {value for at, value in heard.section if at >= heard.events[1].t} == {1.0}


async def test_a_fader_pulled_down_9db_is_no_breakdown() -> None:
    track = synth.render(synth.TrackSpec("house-126", "house", 126, 20, seed=46))
    quieter = track.samples.copy()
    quieter[round(track.downbeats[8] * SR):] *= np.float32(10 ** (-9 / 20))
    heard = await listen(quieter)
    assert heard.events == []


async def test_a_looping_demo_gives_one_breakdown_and_one_drop_per_pass(demo: synth.Track) -> None:
    """The bridge loops the demo track: the seam between passes is neither a breakdown nor a drop."""
    heard = await listen(np.concatenate([demo.samples, demo.samples]))
    assert heard.kinds() == ["audio.breakdown", "audio.drop"] * 2
    once = demo.duration
    assert heard.events[3].t - heard.events[1].t == pytest.approx(once, abs=2 * HOP_S)


def test_the_tracker_refuses_a_bad_hop_duration_and_ignores_bad_numbers() -> None:
    with pytest.raises(ValueError, match="hop duration"):
        SectionTracker(0.0)
    tracker = SectionTracker(HOP_S)
    for i in range(2000):  # a broken source: NaN and infinite features are read as silence
        assert tracker.process(i * HOP_S, float("nan"), float("inf"), float("nan")) == ()
    assert tracker.section == 1.0 and not tracker.armed


def test_a_profile_naming_the_section_events_passes_check(tmp_path: Path) -> None:
    assert {"audio.drop", "audio.breakdown"} <= set(AUDIO_TRIGGERS) and "audio.section" in AUDIO_SIGNALS
    profile = tmp_path / "sections.yaml"
    profile.write_text(
        "themes:\n"
        "  nebula: {prompts: [a slow nebula]}\n"
        "mappings:\n"
        "  drop_reset:\n"
        "    trigger: audio.drop\n"
        "    target: action.reset_cache\n"
        "  breakdown_seed:\n"
        "    trigger: audio.breakdown\n"
        "    target: action.seed_step\n"
        "  section_steps:\n"
        "    source: audio.section\n"
        "    transforms:\n"
        "      - range: {in: [0, 1], out: [0.5, 1.0]}\n"
        "    target: denoising_steps\n",
        encoding="utf-8",
    )
    proc = subprocess.run([sys.executable, "-m", "metadj_bridge", "check", str(profile)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    # A misspelt name is refused with the file:line and the known names.
    profile.write_text(profile.read_text(encoding="utf-8").replace("audio.drop", "audio.drops"), encoding="utf-8")
    proc = subprocess.run([sys.executable, "-m", "metadj_bridge", "check", str(profile)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0
    assert "sections.yaml:5" in proc.stdout + proc.stderr and "audio.drop" in proc.stdout + proc.stderr
