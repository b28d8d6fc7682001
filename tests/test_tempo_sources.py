"""The tempo arbiter (pure: readings and times in, one beat grid out) and the Ableton Link source."""

from __future__ import annotations

import asyncio
import itertools
import logging
import math
import sys
import time
from types import SimpleNamespace

import pytest

from metadj_bridge.errors import ConfigError
from metadj_bridge.inputs.analyzer import AudioUpdate, audio_reading
from metadj_bridge.inputs.tempo_link import LinkSource, load_aalink
from metadj_bridge.inputs.tempo_sources import ArbiterConfig, TempoArbiter
from metadj_bridge.signals import TempoReading
from tests.helpers import tempo_sink

DT = 0.01


def line(source: str, bpm: float, t: float, beat0: float = 0.0, *, bpb: int | None = None, playing: bool = True):
    """A reading from an ideal source whose beat is ``beat0`` at t=0."""
    return TempoReading(source, bpm, t, beat0 + t * bpm / 60.0, bpb, playing)


def run(arbiter: TempoArbiter, t0: float, t1: float, feeds):
    """Feed readings every 50 ms from each ``feeds`` callable (t -> reading or None); sample state every 10 ms."""
    states = []
    n = int(round((t1 - t0) / DT))
    for i in range(n + 1):
        t = t0 + i * DT
        if i % 5 == 0:
            for feed in feeds:
                r = feed(t)
                if r is not None:
                    arbiter.update(r)
        states.append((t, arbiter.state(t)))
    return states


def max_steps(states):
    """Largest change of the beat advance between consecutive 10 ms samples (a jump shows up here as
    its own size; a smooth tempo change as a tiny value), and the largest step of the reported BPM."""
    beat_err = bpm_step = 0.0
    advances = [b.beat - a.beat for (_, a), (_, b) in zip(states, states[1:], strict=False)]
    for da, db in zip(advances, advances[1:], strict=False):
        beat_err = max(beat_err, abs(db - da))
    for (_, a), (_, b) in zip(states, states[1:], strict=False):
        bpm_step = max(bpm_step, abs(b.bpm - a.bpm))
    return beat_err, bpm_step


# ---------------------------------------------------------------------- priority and freshness


def test_highest_priority_live_source_wins():
    arb = TempoArbiter()
    arb.update(line("audio", 120, 1.0))
    assert arb.state(1.0).source == "audio"
    arb.update(line("osc", 121, 1.0))
    assert arb.state(1.0).source == "osc"
    arb.update(line("midi_clock", 122, 1.0))
    assert arb.state(1.0).source == "midi_clock"
    arb.update(line("link", 123, 1.0))
    assert arb.state(1.0).source == "link"
    # A lower source speaking up changes nothing.
    arb.update(line("audio", 124, 1.05))
    assert arb.state(1.05).source == "link"


def test_freshness_per_source_and_configurable():
    arb = TempoArbiter()
    arb.update(line("audio", 120, 0.0))
    arb.update(line("osc", 125, 0.0))
    arb.update(line("link", 130, 0.0))
    assert arb.state(0.4).source == "link"
    assert arb.state(0.6).source == "osc"  # Link stale after 0.5 s, OSC holds for 3 s
    assert arb.state(2.5).source == "osc"
    assert arb.state(3.1).source is None  # audio went stale at 2.0 s too
    st = arb.state(3.2)
    assert not st.playing and st.bpm > 0  # the grid runs on at the last tempo

    arb = TempoArbiter(ArbiterConfig(freshness={"link": 2.0}))
    arb.update(line("link", 130, 0.0))
    arb.update(line("audio", 120, 0.0))
    arb.update(line("audio", 120, 1.5))
    assert arb.state(1.5).source == "link"
    assert arb.state(2.1).source == "audio"


def test_stopped_source_yields_and_returns():
    arb = TempoArbiter()
    feeds = [lambda t: line("audio", 120, t), lambda t: line("midi_clock", 120, t, playing=not 2.0 <= t < 4.0)]
    states = run(arb, 0.0, 6.0, feeds)
    by_t = {round(t, 2): s.source for t, s in states}
    assert by_t[1.0] == "midi_clock" and by_t[3.0] == "audio" and by_t[5.0] == "midi_clock"


def test_before_any_reading_and_quantize_without_tempo():
    arb = TempoArbiter()
    st = arb.state(5.0)
    assert st.source is None and st.bpm == 0 and not st.playing
    assert arb.quantize(5.0, "bar", 0.2) == 5.0
    assert arb.next_beat_time(5.0) == 5.0


def test_config_rejects_bad_values():
    with pytest.raises(ConfigError, match="unknown source 'ableton'"):
        ArbiterConfig(freshness={"ableton": 1.0})
    with pytest.raises(ConfigError, match="must be > 0"):
        ArbiterConfig(freshness={"link": 0.0})
    with pytest.raises(ConfigError, match="max_bpm_step_per_beat"):
        ArbiterConfig(max_bpm_step_per_beat=0)


# ---------------------------------------------------------------------- glitch-free switching


def test_switch_up_keeps_phase_continuous_and_slews_bpm(caplog):
    """Audio at 120 BPM; MIDI clock appears at 128 BPM, 0.3 beats off the audio grid."""
    arb = TempoArbiter(ArbiterConfig(phase_slew_beats=2.0, max_bpm_step_per_beat=4.0))
    feeds = [lambda t: line("audio", 120, t), lambda t: line("midi_clock", 128, t, 0.3) if t >= 2.0 else None]
    with caplog.at_level(logging.INFO, logger="metadj_bridge.inputs.tempo_sources"):
        states = run(arb, 0.0, 8.0, feeds)
    switches = [r.getMessage() for r in caplog.records if r.getMessage().startswith("tempo source")]
    assert switches == ["tempo source: none -> audio (120.0 BPM)", "tempo source: audio -> midi_clock (128.0 BPM)"]
    beat_err, bpm_step = max_steps(states)
    # No jump: consecutive 10 ms samples advance by what the tempo says, within a thousandth of a beat.
    assert beat_err < 1e-3
    # The BPM glides: no 10 ms step larger than 0.2 BPM (120 -> 128 is spread over seconds).
    assert bpm_step < 0.2
    at = dict((round(t, 2), s) for t, s in states)
    assert at[2.0].bpm == pytest.approx(120, abs=1e-6)
    # Afterwards the output is on the MIDI grid: same phase, same tempo.
    end = at[8.0]
    midi_beat = 0.3 + 8.0 * 128 / 60
    assert end.bpm == pytest.approx(128, abs=1e-6)
    assert (end.beat - midi_beat + 0.5) % 1.0 - 0.5 == pytest.approx(0, abs=1e-6)
    # Beat positions only ever move forward.
    assert all(b.beat > a.beat for (_, a), (_, b) in zip(states, states[1:], strict=False))


def test_switch_down_when_link_goes_away():
    arb = TempoArbiter()
    feeds = [lambda t: line("audio", 124, t, 0.45), lambda t: line("link", 128, t, bpb=4) if t < 3.0 else None]
    states = run(arb, 0.0, 9.0, feeds)
    by_t = dict((round(t, 2), s) for t, s in states)
    assert by_t[3.4].source == "link" and by_t[3.6].source == "audio"
    beat_err, bpm_step = max_steps(states)
    # Smooth: the 0.45 beat between the grids is made up over one beat; a jump would show here as its own size.
    assert beat_err < 2e-3 and bpm_step < 0.2
    end = by_t[9.0]
    assert end.bpm == pytest.approx(124, abs=1e-6)
    assert (end.beat - (0.45 + 9.0 * 124 / 60) + 0.5) % 1.0 - 0.5 == pytest.approx(0, abs=1e-6)


def test_tempo_only_source_keeps_phase_and_glides():
    """OSC gives no beat position: the output keeps its own phase and only the tempo moves."""
    arb = TempoArbiter()
    feeds = [
        lambda t: line("audio", 120, t) if t < 1.0 else None,
        lambda t: TempoReading("osc", 126.0, t) if t >= 1.0 else None,
    ]
    states = run(arb, 0.0, 6.0, feeds)
    beat_err, bpm_step = max_steps(states)
    assert beat_err < 1e-3 and bpm_step < 0.2
    assert states[-1][1].source == "osc" and states[-1][1].bpm == pytest.approx(126, abs=1e-6)


def test_bpm_change_of_the_active_source_is_slewed():
    arb = TempoArbiter(ArbiterConfig(max_bpm_step_per_beat=2.0))
    anchor = 2.0 * 120 / 60  # beat at t=2, where the tempo changes to 140 without a beat jump

    def link(t):
        if t < 2.0:
            return line("link", 120, t)
        return TempoReading("link", 140.0, t, anchor + (t - 2.0) * 140 / 60)

    states = run(arb, 0.0, 10.0, [link])
    beat_err, _ = max_steps(states)
    assert beat_err < 1e-3
    # 20 BPM at no more than 2 BPM per beat: 10 beats (about 4.6 s), and never more than 2 BPM per beat.
    at = dict((round(t, 2), s) for t, s in states)
    assert at[3.4].bpm == pytest.approx(120 + 20 * 1.4 / 5.0, abs=0.1)
    for (ta, a), (tb, b) in zip(states, states[1:], strict=False):
        assert b.bpm - a.bpm <= 2.0 * (tb - ta) * a.bpm / 60 + 1e-9
    assert at[10.0].bpm == pytest.approx(140, abs=1e-6)


def test_bar_position_follows_the_source_downbeat():
    arb = TempoArbiter()
    feeds = [lambda t: line("link", 120, t, 1.0, bpb=3)]
    states = run(arb, 0.0, 4.0, feeds)
    st = states[-1][1]
    assert st.beats_per_bar == 3
    assert st.bar_position == pytest.approx((1.0 + 4.0 * 2) % 3, abs=1e-6)


def test_real_midi_clock_estimator_takes_over_from_audio_and_hands_back_on_stop():
    """Jittered MIDI clock ticks (+-1 ms) through the project's MIDI clock estimator, audio underneath."""
    import random

    from metadj_bridge.inputs.midi_clock import PPQN, MidiClockTempo

    rng = random.Random(7)
    clock = MidiClockTempo()
    arb = TempoArbiter()
    tick_s = 60.0 / (126.0 * PPQN)
    next_tick, started, stopped = 1.0, False, False
    states = []
    for i in range(int(10.0 / DT) + 1):
        t = i * DT
        if i % 5 == 0:
            arb.update(line("audio", 120, t, 0.2))
        while next_tick <= t:
            if not started:
                clock.start(next_tick)
                started = True
            if next_tick >= 6.0 and not stopped:
                clock.stop(next_tick)
                stopped = True
            clock.tick(next_tick + rng.uniform(-0.001, 0.001))
            r = clock.reading()
            if r is not None:
                arb.update(r)
            next_tick += tick_s
        states.append((t, arb.state(t)))
    at = {round(t, 2): s for t, s in states}
    assert at[0.5].source == "audio" and at[3.0].source == "midi_clock" and at[7.0].source == "audio"
    assert at[5.5].bpm == pytest.approx(126, abs=0.1)
    beat_err, bpm_step = max_steps(states)
    assert beat_err < 2e-3 and bpm_step < 0.2
    assert at[10.0].bpm == pytest.approx(120, abs=1e-6)


# ---------------------------------------------------------------------- beats and quantising


def steady(bpm=120.0, bpb=4):
    arb = TempoArbiter()
    arb.update(line("link", bpm, 0.0, bpb=bpb))
    return arb


def test_quantize_to_beat_and_bar_with_lookahead():
    arb = steady()  # beats every 0.5 s from t=0, bars every 2 s
    assert arb.quantize(0.1, "beat", 0.0) == pytest.approx(0.5)
    assert arb.quantize(0.1, "beat", 0.2) == pytest.approx(0.3)  # sent 0.2 s early, lands on 0.5
    assert arb.quantize(0.1, "beat", 0.6) == pytest.approx(0.4)  # 0.5 is too close: lands on 1.0
    assert arb.quantize(0.1, "bar", 0.25) == pytest.approx(1.75)
    assert arb.quantize(1.9, "bar", 0.25) == pytest.approx(3.75)
    assert arb.quantize(0.3, "beat", 0.2) == pytest.approx(0.3)  # exactly on time: send now
    with pytest.raises(ValueError):
        arb.quantize(0.0, "phrase", 0.1)


def test_beat_times_for_triggers():
    arb = steady(128.0)
    period = 60 / 128
    assert arb.next_beat_time(0.1) == pytest.approx(period)
    beats = arb.beats_between(0.0, 1.0)
    assert [b for b, _ in beats] == [1.0, 2.0]
    assert [t for _, t in beats] == pytest.approx([period, 2 * period])


def test_next_beat_time_during_a_blend_lands_on_the_output_beat():
    arb = TempoArbiter()
    run(arb, 0.0, 2.0, [lambda t: line("audio", 120, t)])
    arb.update(line("link", 130, 2.0, 0.4))
    t = arb.next_beat_time(2.05)
    assert arb.state(t).beat == pytest.approx(round(arb.state(t).beat), abs=1e-6)


# ---------------------------------------------------------------------- audio adapter


def audio_update(**overrides) -> AudioUpdate:
    fields = dict(
        features=SimpleNamespace(t=12.0),
        bpm=126.0,
        confidence=0.9,
        phase=0.25,
        bar_position=2.25,
        locked=True,
        beats=(),
        onsets=(),
        captured_at=1000.0,
        analysed_at=1000.004,
        hops=100,
        merged=1,
    )
    fields.update(overrides)
    return AudioUpdate(**fields)


def test_audio_reading_maps_the_audio_clock_to_monotonic_time():
    r = audio_reading(audio_update(), now=1000.01)
    assert r == TempoReading("audio", 126.0, 1000.0, 2.25, 4, True)
    assert audio_reading(audio_update(captured_at=None), now=1000.01).t == 1000.01
    assert audio_reading(audio_update(locked=False), now=1000.01) is None


def test_audio_bar_wrap_is_not_a_jump():
    """The audio clock reports the beat within the bar; crossing the bar line must not move the output."""
    arb = TempoArbiter()
    states = []
    for i in range(400):
        t = i * DT
        pos = (t * 2.0) % 4
        arb.update(audio_reading(audio_update(bpm=120.0, bar_position=pos, captured_at=t), now=t))
        states.append((t, arb.state(t)))
    beat_err, _ = max_steps(states)
    assert beat_err < 1e-3
    assert math.isclose(states[-1][1].bar_position, (399 * DT * 2) % 4, abs_tol=1e-6)


# ---------------------------------------------------------------------- Ableton Link

NO_AALINK = "aalink (the link extra, pip install \"metadj-bridge[link]\") is not installed"


async def wait_until(predicate, limit: float) -> bool:
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if predicate():
            return True
        await asyncio.sleep(0.05)
    return predicate()


@pytest.fixture
async def peer():
    """Another Link app in this process (a DJ program stand-in), at 120 BPM with 4-beat bars.

    It runs for a few seconds before the bridge joins, as DJ software does: when two Link sessions meet, the
    older one wins, and sessions founded within about 0.5 s of each other are decided by their random ids (a
    one-second head start was seen to lose on a loaded machine).
    """
    aalink = pytest.importorskip("aalink", reason=NO_AALINK)
    link = aalink.Link(120.0)
    link.quantum = 4
    link.enabled = True
    await asyncio.sleep(2.5)
    yield link
    link.enabled = False


async def test_link_follower_sees_the_peers_tempo_and_never_changes_it(peer):
    readings: list[TempoReading] = []
    async with LinkSource(tempo_sink(readings.append), bpm=90.0) as follower:
        if not await wait_until(lambda: follower.num_peers > 0 and peer.num_peers > 0, 5.0):
            pytest.skip("Link peers did not discover each other within 5 s: no multicast on this machine")
        assert await wait_until(lambda: bool(readings), 1.0)
        # Joining adopted the session tempo; it did not push our 90 BPM onto the peer.
        assert peer.tempo == pytest.approx(120.0, abs=1e-6)
        assert readings[-1].bpm == pytest.approx(120.0, abs=1e-3)
        peer.tempo = 133.0
        assert await wait_until(lambda: abs(readings[-1].bpm - 133.0) < 1e-3, 2.0)
        # Same beat grid as the peer, bar included (quantum 4).
        r = follower.reading()
        assert r is not None
        peer_beat = peer.beat
        drift = (peer_beat - r.beat + 2) % 4 - 2
        assert abs(drift) < 0.02
        with pytest.raises(ConfigError, match="follows the Link session"):
            follower.set_tempo(140.0)
        await asyncio.sleep(0.3)
        assert peer.tempo == pytest.approx(133.0, abs=1e-6)
        assert all(x.source == "link" and x.beats_per_bar == 4 and x.playing for x in readings)


async def test_link_source_alone_through_its_interface():
    pytest.importorskip("aalink", reason=NO_AALINK)
    readings: list[TempoReading] = []
    source = LinkSource(tempo_sink(readings.append), bpm=128.0, require_peers=False, rate_hz=20.0)
    await source.start()
    try:
        assert source.enabled
        await asyncio.sleep(0.6)
        assert 8 <= len(readings) <= 16  # about 20 Hz
        first, last = readings[0], readings[-1]
        if source.num_peers == 0:
            assert last.bpm == pytest.approx(128.0, abs=1e-6)
        slope = (last.beat - first.beat) / (last.t - first.t)
        assert slope == pytest.approx(last.bpm / 60.0, rel=0.01)
        assert all(b.t > a.t and b.beat > a.beat for a, b in itertools.pairwise(readings))
    finally:
        await source.aclose()
    await source.aclose()  # twice is harmless
    assert not source.enabled and source.reading() is None
    with pytest.raises(RuntimeError, match="closed"):
        await source.start()


async def test_link_alone_reports_nothing_by_default():
    """Without peers Link is only our own clock: it must not outrank the music."""
    pytest.importorskip("aalink", reason=NO_AALINK)
    readings: list[TempoReading] = []
    async with LinkSource(tempo_sink(readings.append)) as source:
        await asyncio.sleep(0.3)
        if source.num_peers:
            pytest.skip(f"another Link app is on this network ({source.num_peers} peers)")
        assert readings == []


async def test_link_may_lead_only_when_allowed(peer):
    async with LinkSource(allow_tempo_changes=True, require_peers=False) as leader:
        if not await wait_until(lambda: leader.num_peers > 0 and peer.num_peers > 0, 5.0):
            pytest.skip("Link peers did not discover each other within 5 s: no multicast on this machine")
        # Joined: the leader took the older session's timeline first; now it moves it.
        assert await wait_until(lambda: (r := leader.reading()) is not None and abs(r.bpm - 120.0) < 1e-3, 2.0)
        leader.set_tempo(124.0)
        assert await wait_until(lambda: abs(peer.tempo - 124.0) < 1e-3, 2.0)


async def test_link_feeds_the_arbiter_and_a_broken_listener_does_not_stop_it(caplog):
    pytest.importorskip("aalink", reason=NO_AALINK)
    arb = TempoArbiter()
    calls = []

    def listener(r: TempoReading) -> None:
        calls.append(r)
        arb.update(r)
        if len(calls) == 2:
            raise RuntimeError("listener bug")

    async with LinkSource(tempo_sink(listener), bpm=126.0, require_peers=False):
        await asyncio.sleep(0.3)
        assert arb.state(time.monotonic()).source == "link"
    assert len(calls) >= 4
    assert sum("Link reading listener errors" in r.getMessage() and r.exc_info is not None for r in caplog.records) == 1


def test_missing_aalink_says_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "aalink", None)
    with pytest.raises(ConfigError, match=r'pip install "metadj-bridge\[link\]"'):
        load_aalink()


async def test_link_source_rejects_bad_settings(monkeypatch):
    with pytest.raises(ConfigError, match="quantum"):
        LinkSource(beats_per_bar=0)
    monkeypatch.setitem(sys.modules, "aalink", None)
    source = LinkSource()
    with pytest.raises(ConfigError, match="aalink"):
        await source.start()
    await source.aclose()


async def test_link_transport_with_start_stop_sync(peer):
    """With start/stop sync, a stopped Link session yields to the music and takes over when it plays."""
    peer.start_stop_sync_enabled = True
    arb = TempoArbiter()
    async with LinkSource(tempo_sink(arb.update), start_stop_sync=True) as follower:
        if not await wait_until(lambda: follower.num_peers > 0, 5.0):
            pytest.skip("Link peers did not discover each other within 5 s: no multicast on this machine")
        for i in range(4):
            now = time.monotonic()
            arb.update(TempoReading("audio", 121.0, now, i * 0.5))
            await asyncio.sleep(0.1)
        assert follower.latest is not None and not follower.latest.playing
        assert arb.state(time.monotonic()).source == "audio"
        peer.playing = True
        assert await wait_until(lambda: arb.state(time.monotonic()).source == "link", 2.0)
    peer.playing = False


def test_a_profile_can_reorder_or_leave_out_tempo_sources() -> None:
    from metadj_bridge.errors import ConfigError
    from metadj_bridge.inputs.tempo_sources import ArbiterConfig, TempoArbiter
    from metadj_bridge.signals import TempoReading

    arbiter = TempoArbiter(ArbiterConfig(priority=("audio", "osc")))
    arbiter.update(TempoReading("osc", 128.0, 10.0, beat=0.0))
    arbiter.update(TempoReading("audio", 124.0, 10.0, beat=0.0))
    arbiter.update(TempoReading("midi_clock", 130.0, 10.0, beat=0.0))  # not listed: never steers
    assert arbiter.state(10.0).source == "audio"
    only_clock = TempoArbiter(ArbiterConfig(priority=("midi_clock",)))
    only_clock.update(TempoReading("audio", 124.0, 10.0, beat=0.0))
    assert only_clock.state(10.0).source is None
    for bad in ((), ("audio", "audio"), ("ableton",)):
        with pytest.raises(ConfigError, match="list each of"):
            ArbiterConfig(priority=bad)


def test_by_default_the_reported_tempo_reaches_a_far_new_tempo_with_the_beats():
    """A DJ's next track (or an octave corrected): 152 -> 77 BPM. The reported tempo glides over the beats' blend (one
    beat of the new tempo) in a straight line, instead of seconds through tempi nobody plays."""
    arb = TempoArbiter()
    change = 3.0

    def audio(t):
        if t < change:
            return line("audio", 152, t)
        return TempoReading("audio", 77.0, t, change * 152 / 60 + (t - change) * 77 / 60)

    states = run(arb, 0.0, 6.0, [audio])
    at = dict((round(t, 2), s) for t, s in states)
    blend_end = change + 60.0 / 77.0
    assert at[round(change - 0.01, 2)].bpm == pytest.approx(152, abs=1e-6)
    assert at[round(blend_end + 0.02, 2)].bpm == pytest.approx(77, abs=1e-6)
    middle = at[round(change + 0.5 * 60.0 / 77.0, 2)].bpm
    assert 100 < middle < 130  # half way through the blend, half way between the tempi
    gliding = [s.bpm for t, s in states if change <= t <= blend_end + 0.02]
    assert all(b <= a + 1e-9 for a, b in zip(gliding, gliding[1:], strict=False))
    beat_err, _ = max_steps(states)
    assert beat_err < 2e-2  # the beats stay continuous: no jump of their own size
