"""Build-ups (``audio.buildup``, ``audio.tension``) and drops after them, heard in generated music.

The music goes through the bridge's own path (a WAV-array source, the analyzer's worker thread, ``deliver`` into
a SignalBoard), synthesised with its bars known exactly: a breakdown whose last bars build up to the drop with a
noise riser that grows louder and brighter and a snare roll that gets denser (``synth.TrackSpec.buildup_bars``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import pytest

from metadj_bridge.inputs import synth
from metadj_bridge.inputs.analysis_config import hop_size_for
from metadj_bridge.inputs.buildup import BuildupTracker
from metadj_bridge.signals import Trigger
from tests.helpers import hear

SR = synth.SAMPLERATE
HOP_S = hop_size_for(SR) / SR
EVENTS = ("audio.breakdown", "audio.buildup", "audio.drop")


@dataclass
class Heard:
    events: list[Trigger] = field(default_factory=list)
    #: (time, audio.tension on the board) after every delivery.
    tension: list[tuple[float, float]] = field(default_factory=list)

    def kinds(self) -> list[str]:
        return [e.name for e in self.events]

    def event(self, name: str) -> Trigger:
        return next(e for e in self.events if e.name == name)

    def tension_between(self, start: float, end: float) -> list[float]:
        return [value for at, value in self.tension if start <= at < end]


async def listen(samples: np.ndarray) -> Heard:
    return Heard(*await hear(samples, SR, EVENTS, "audio.tension"))


BUILDUPS = [
    synth.TrackSpec("house-buildup-4", "house", 128, 28, breakdown=(10, 8), buildup_bars=4, seed=19),
    synth.TrackSpec("house-buildup-2", "house", 128, 28, breakdown=(10, 8), buildup_bars=2, seed=19),
    synth.TrackSpec("techno-buildup-4", "techno", 132, 28, breakdown=(8, 8), buildup_bars=4, seed=23),
    synth.TrackSpec("offbeat-buildup-2", "offbeat_bass", 124, 24, breakdown=(8, 6), buildup_bars=2, seed=29),
]


@pytest.mark.parametrize("spec", BUILDUPS, ids=lambda s: s.name)
async def test_a_build_up_is_heard_in_the_breakdown_and_the_drop_after_its_snare_roll(spec: synth.TrackSpec) -> None:
    track = synth.render(spec)
    heard = await listen(track.samples)
    assert heard.kinds() == ["audio.breakdown", "audio.buildup", "audio.drop"]
    assert spec.breakdown is not None
    first, bars = spec.breakdown
    build_from = track.downbeats[first + bars - spec.buildup_bars]
    kick_back = track.downbeats[first + bars]
    beat, bar = 60.0 / spec.bpm, 60.0 / spec.bpm * spec.beats_per_bar
    buildup, drop = heard.event("audio.buildup"), heard.event("audio.drop")
    # The build-up once the rise has held a second, within its first bar and a half; never before it began.
    assert build_from + 1.0 <= buildup.t <= build_from + 1.5 * bar
    # The roll's loudest snare hits over the riser are no drop: the drop is the kick back, within a beat.
    assert kick_back <= drop.t <= kick_back + beat
    # Tension: 0 before the build-up, up from the moment it is heard, growing towards the drop, 0 after it.
    assert set(heard.tension_between(0.0, buildup.t)) == {0.0}
    during = heard.tension_between(buildup.t + HOP_S, drop.t)
    assert during and min(during) >= 0.2 and during == sorted(during)
    assert during[-1] > during[0]
    assert set(heard.tension_between(drop.t + 2 * HOP_S, math.inf)) == {0.0}


async def test_a_breakdown_without_a_build_up_has_no_tension() -> None:
    spec = synth.TrackSpec("house-no-build", "house", 128, 28, breakdown=(10, 8), seed=19)
    heard = await listen(synth.render(spec).samples)
    assert heard.kinds() == ["audio.breakdown", "audio.drop"]
    assert {value for _, value in heard.tension} == {0.0}


async def test_the_same_build_up_at_any_level() -> None:
    track = synth.render(BUILDUPS[0])
    loud, quiet = await listen(track.samples), await listen(track.samples * np.float32(0.1))
    assert quiet.kinds() == loud.kinds() == ["audio.breakdown", "audio.buildup", "audio.drop"]
    assert [e.t for e in quiet.events] == pytest.approx([e.t for e in loud.events], abs=2 * HOP_S)


async def test_music_turned_down_12db_in_the_breakdown_still_gives_its_drop() -> None:
    """The DJ pulls the fader down in the breakdown: the kick comes back 12 dB quieter and is still the drop."""
    spec = synth.TrackSpec("house-no-build", "house", 128, 28, breakdown=(10, 8), seed=19)
    track = synth.render(spec)
    edited = track.samples.copy()
    edited[round(track.downbeats[14] * SR):] *= np.float32(10 ** (-12 / 20))
    heard = await listen(edited)
    assert heard.kinds() == ["audio.breakdown", "audio.drop"]
    kick_back = track.downbeats[18]
    assert kick_back <= heard.event("audio.drop").t <= kick_back + 60.0 / spec.bpm


def test_the_tracker_refuses_a_bad_hop_and_ignores_bad_numbers() -> None:
    with pytest.raises(ValueError, match="hop duration"):
        BuildupTracker(0.0)
    tracker = BuildupTracker(HOP_S)
    for i in range(400):
        assert tracker.process(i * HOP_S, math.nan, math.inf, False, True) == ()
    assert tracker.tension == 0.0 and not tracker.building
