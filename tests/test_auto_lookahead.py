"""Automatic beat alignment (issue 14 item 6): the bridge's measure of its delay to the picture, and quantize's
``lookahead_ms: auto`` using it.

The arithmetic of the estimate on known samples; the pacer's predicted boundaries; ``auto`` parsed, the default,
bad values refused with file:line; the emulator's ``delay_ms`` really delaying what it receives (messages reach
it no sooner than the delay after they were sent, and the SCTP round trip the bridge measures holds it); and
end to end, the lookahead a quantize uses in a running show derived from that measure: larger with a far server.
Timings are only bounded from below (a delay cannot make anything faster); figures are in ``bench.py align``.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest

from metadj_bridge.emulator.cli import add_arguments, config_from_args
from metadj_bridge.emulator.config import EmulatorConfig
from metadj_bridge.emulator.server import ScopeEmulator
from metadj_bridge.errors import ConfigError
from metadj_bridge.mapping.engine import MappingEngine
from metadj_bridge.mapping.transforms import QuantizeStage
from metadj_bridge.profile import load_profile
from metadj_bridge.profile.model import Mapping, PromptSpec, Quantize, ShowProfile, Target, Theme, TriggerSource
from metadj_bridge.run.parts import open_latency
from metadj_bridge.run.show import ShowRunner
from metadj_bridge.scope.latency import PRIOR_RTT, DelayModel, ShowLatency, sctp_rtt
from metadj_bridge.scope.pacing import SendPacer
from metadj_bridge.scope.sender import PacerConfig, ParameterSender
from metadj_bridge.scope.session import ScopeSession, SessionConfig
from metadj_bridge.signals import TempoState, Trigger
from metadj_bridge.status.model import BridgeStatus
from tests.conftest import SMALL
from tests.helpers import wait_for

# ------------------------------------------------------------------ the estimate's arithmetic


def test_the_estimate_adds_the_median_of_each_part() -> None:
    model = DelayModel(video_delay=0.1)
    for rtt in (0.15, 0.16, 0.14, 3.0):  # one slow SACK moves nothing
        model.rtt.add(rtt)
    for chunk in (0.6, 0.6, 0.61):
        model.chunk.add(chunk)
    model.output.add(0.02)
    # Sent 0.01 s after the change; the boundary that takes it comes 0.5 s after the send.
    model.sent(10.01, 10.0, 10.51, 0.15)
    model.sent(20.0, 20.0, 20.45, 0.15)
    model.sent(30.03, 30.0, 30.55, 0.15)
    estimate = model.estimate(prior_chunk=0.8)
    assert estimate.measured
    assert estimate.rtt == pytest.approx(0.155)
    assert estimate.chunk == pytest.approx(0.6)
    assert estimate.send_wait == pytest.approx(0.01)
    assert estimate.take_wait == pytest.approx(0.5 - 0.15)
    assert estimate.output == pytest.approx(0.02)
    assert estimate.total == pytest.approx(0.01 + 0.155 + 0.35 + 0.6 + 0.02)
    assert estimate.as_dict()["total"] == pytest.approx(estimate.total, abs=1e-4)


def test_before_any_measurement_the_estimate_is_the_prior() -> None:
    estimate = DelayModel(video_delay=0.1, output_prior=0.015).estimate(prior_chunk=0.8)
    assert not estimate.measured
    assert (estimate.rtt, estimate.chunk, estimate.output, estimate.send_wait) == (PRIOR_RTT, 0.8, 0.015, 0.0)
    assert estimate.take_wait == pytest.approx(0.1 + 0.4)  # the frames' way back and half a chunk on average
    model = DelayModel()
    model.sent(5.0, 4.0, None, 0.1)  # no boundary known yet: only the send wait is learned
    assert model.estimate(0.8).send_wait == pytest.approx(1.0)
    assert not model.estimate(0.8).measured


def test_the_pacer_predicts_the_next_chunk_boundary() -> None:
    pacer = SendPacer(PacerConfig(chunk_frames=4))
    assert pacer.next_boundary(0.0, 0.0) is None  # nothing seen yet
    for i in range(10):  # 20 fps: boundaries at 0.0, 0.2, 0.4 (frames 0, 4, 8)
        pacer.on_frame(i * 0.05)
    assert pacer.next_boundary(0.45, 0.45) == pytest.approx(0.6)
    assert pacer.next_boundary(0.6, 0.45) == pytest.approx(0.6)
    assert pacer.next_boundary(1.01, 0.45) == pytest.approx(1.2)
    assert pacer.next_boundary(0.1, 0.45) == pytest.approx(0.4)  # never before the latest boundary seen


class OpenChannel:
    """aiortc's data channel as the sender sees it, always open."""

    readyState = "open"
    bufferedAmount = 0

    def __init__(self) -> None:
        self.sent: list[str] = []

    def send(self, data: str) -> None:
        self.sent.append(data)


def test_the_show_side_learns_send_and_take_waits_and_skips_repeats() -> None:
    clock = [100.0]
    sender = ParameterSender(pacer=PacerConfig(chunk_frames=4), clock=lambda: clock[0])
    logged: list[float] = []
    sender.on_sent = lambda message, now: logged.append(now)
    latency = ShowLatency(sender, lambda: None)
    sender.attach(OpenChannel(), {})
    for i in range(9):  # 20 fps: chunk boundaries at 99.6, 99.8, 100.0 as frames arrive here
        sender.on_frame(99.6 + i * 0.05)
    latency(100.0)
    sender.update(noise_scale=0.5)
    clock[0] = 100.03
    latency(100.03)  # the change is seen waiting from here
    clock[0] = 100.05
    assert sender.send_now() is not None
    # Sent at 100.05; back here no sooner than 100.2 (the 50 ms prior round trip, 0.1 s for the frames): taken
    # at the boundary of 100.2, the next after 100.0 (4 frames at 20 fps).
    assert latency.model.send_wait.get() == pytest.approx(0.02)
    assert latency.model.take_wait.get() == pytest.approx(100.2 - 100.05 - PRIOR_RTT)
    clock[0] = 100.3
    assert sender.send_now() is not None  # the repeat of noise_scale: no change waited for it
    assert len(latency.model.send_wait) == 1
    assert logged == [100.05, 100.3]  # the listener set before is still told


def test_sctp_rtt_reads_aiortcs_smoothed_round_trip() -> None:
    class Sctp:
        _srtt: Any = None

    class Pc:
        sctp = Sctp()

    assert sctp_rtt(None) is None
    assert sctp_rtt(Pc()) is None  # no SACK yet
    Pc.sctp._srtt = 0.25
    assert sctp_rtt(Pc()) == 0.25


# ------------------------------------------------------------------ lookahead_ms: auto in a profile


def _quantize_of(tmp_path: Path, quantize: str) -> Quantize:
    path = tmp_path / "show.yaml"
    path.write_text("themes:\n  neon: {prompts: [neon city]}\nmappings:\n  q:\n    trigger: tempo.beat\n"
                    f"    transforms: [{{quantize: {quantize}}}]\n    target: action.seed_step\n")
    (mapping,) = load_profile(path).mappings
    (transform,) = mapping.transforms
    assert isinstance(transform, Quantize)
    return transform


@pytest.mark.parametrize(("written", "to", "lookahead"), [
    ("bar", "bar", None),
    ("{to: bar}", "bar", None),
    ("{to: beat, lookahead_ms: auto}", "beat", None),
    ("{to: bar, lookahead_ms: 0}", "bar", 0.0),
    ("{to: bar, lookahead_ms: 120}", "bar", 120.0),
])
def test_lookahead_is_auto_unless_a_number_is_given(tmp_path: Path, written: str, to: str,
                                                    lookahead: float | None) -> None:
    quantize = _quantize_of(tmp_path, written)
    assert (quantize.to, quantize.lookahead_ms) == (to, lookahead)


@pytest.mark.parametrize(("written", "says"), [
    ("{to: bar, lookahead_ms: soon}", "auto"),
    ("{to: bar, lookahead_ms: -5}", "lookahead_ms"),
    ("{to: bar, lookahead_ms: 20000}", "lookahead_ms"),
    ("{to: bar, lookahead_ms: [1]}", "lookahead_ms"),
])
def test_a_bad_lookahead_is_refused_with_file_and_line(tmp_path: Path, written: str, says: str) -> None:
    with pytest.raises(ConfigError, match=says) as caught:
        _quantize_of(tmp_path, written)
    assert f"{tmp_path / 'show.yaml'}:6" in str(caught.value)


def _tempo(now: float, bpm: float = 120.0) -> TempoState:
    beat = now * bpm / 60.0
    return TempoState(bpm, beat, beat % 1.0, beat % 4, 4, "link", True)


def test_auto_takes_the_latency_the_engine_is_given_and_a_number_wins() -> None:
    auto = QuantizeStage(Quantize("bar"))
    fixed = QuantizeStage(Quantize("bar", 0.0))
    assert auto.lookahead_s == 0.0  # no show has said anything: the engine alone has no picture to be late for
    auto.auto_s = fixed.auto_s = 0.5
    assert (auto.lookahead_s, fixed.lookahead_s) == (0.5, 0.0)
    auto.push(1.0, 0.1, _tempo(0.1))  # 120 BPM: the next bar is at 2.0 s
    assert auto.due == pytest.approx(1.5)
    profile = ShowProfile(path="/shows/q.yaml", name="q", themes=(Theme("neon", (PromptSpec("neon city"),)),),
                          mappings=(Mapping("q", TriggerSource("midi.note.1.36"), (Quantize("bar"),),
                                            Target("action", "seed_step")),))
    engine = MappingEngine(profile)
    engine.set_latency(0.7)
    engine.step({}, [Trigger("midi.note.1.36", 0.1, {"velocity": 1.0})], 0.1, _tempo(0.1))
    assert "base_seed" not in engine.step({}, [], 1.29, _tempo(1.29)).parameters
    assert "base_seed" in engine.step({}, [], 1.31, _tempo(1.31)).parameters  # 2.0 - 0.7


def test_the_emulator_delay_option() -> None:
    import argparse

    parser = argparse.ArgumentParser()
    add_arguments(parser)
    assert config_from_args(parser.parse_args(["--delay-ms", "150"])).delay_ms == 150.0
    with pytest.raises(ConfigError, match="delay"):
        config_from_args(parser.parse_args(["--delay-ms", "-1"]))
    with pytest.raises(ConfigError, match="delay"):
        EmulatorConfig(delay_ms=float("nan"))


def test_run_passes_the_delay_to_its_built_in_emulator() -> None:
    from metadj_bridge.cli import build_parser
    from metadj_bridge.run.plan import RunOptions, make_plan

    show = ShowProfile(path="/shows/q.yaml", name="q", themes=(Theme("neon", (PromptSpec("neon city"),)),))
    args = build_parser().parse_args(["run", "--emulator-delay-ms", "150"])
    assert make_plan(RunOptions.from_args(args), show).emulator_delay_ms == 150.0
    assert make_plan(RunOptions(), show).emulator_delay_ms == 0.0
    with pytest.raises(ConfigError, match="--emulator-delay-ms"):
        make_plan(RunOptions(emulator_delay_ms=-5.0), show)


# ------------------------------------------------------------------ over real WebRTC


def _session(url: str, sender: ParameterSender) -> ScopeSession:
    return ScopeSession(SessionConfig(url=url, pipeline_ids=["longlive"], load_params=dict(SMALL), prompts="neon",
                                      ice_servers=[], no_frame_timeout=5.0), sender)


async def test_the_emulator_receives_late_and_the_bridge_measures_the_round_trip(make_emulator: Any) -> None:
    emulator: ScopeEmulator = await make_emulator(delay_ms=300)
    sender = ParameterSender(pacer=PacerConfig(chunk_frames=4))
    sent: list[tuple[float, float]] = []
    sender.on_sent = lambda message, now: sent.append((now, message.get("noise_scale", -1.0)))
    session = _session(emulator.url, sender)
    await session.start()
    try:
        await session.wait_streaming(timeout=20)
        for value in (0.11, 0.22, 0.33):
            sender.update(noise_scale=value)
            await wait_for(lambda v=value: any(m.get("noise_scale") == v for m in
                                               (e["message"] for e in emulator._records.received)), 10, "the message")
        await wait_for(lambda: sctp_rtt(session.connection.pc) is not None, 10, "a SACK")
        rtt = sctp_rtt(session.connection.pc)
    finally:
        await session.aclose()
    assert rtt is not None and rtt > 0.2
    arrivals = {e["message"].get("noise_scale"): e["t"] for e in emulator._records.received}
    for at, value in sent:
        if value in arrivals:
            assert arrivals[value] - at >= 0.29  # nothing reaches the server before the delay has passed


async def _auto_lookahead_in_a_show(make_emulator: Any, delay_ms: float) -> tuple[float, float]:
    """(lookahead a quantise used, the show's delay estimate) after a few changes against the emulator."""
    emulator: ScopeEmulator = await make_emulator(delay_ms=delay_ms)
    profile = ShowProfile(path="/shows/q.yaml", name="q", themes=(Theme("neon", (PromptSpec("neon city"),)),),
                          mappings=(Mapping("q", TriggerSource("midi.note.1.36"), (Quantize("bar"),),
                                            Target("action", "seed_step")),))
    sender = ParameterSender(pacer=PacerConfig(chunk_frames=4))
    show = ShowRunner(profile, sender, tempo=_tempo)
    sender.update(show.initial_parameters())
    session = _session(emulator.url, sender)
    latency: ShowLatency = open_latency(sender, session, None)
    show.latency = latency
    await session.start()
    try:
        await session.wait_streaming(timeout=20)
        for _ in range(4):  # a few seed steps (sent at once: one message each) to measure with
            sender.action(reset_cache=True)
            show.step()
            await asyncio.sleep(0.4)
            show.step()
        await wait_for(lambda: sctp_rtt(session.connection.pc) is not None, 10, "a SACK")
        await asyncio.sleep(0.3)
        # A quantised hit, then steps until it is let through: released at its bar minus the lookahead used.
        now = time.monotonic()
        show.step(now)
        show.board.fire(Trigger("midi.note.1.36", now, {"velocity": 1.0}))
        show.step(now)
        estimate = latency.estimate
        assert estimate is not None
        seed = sender.state.desired.get("base_seed")
        released = None
        for k in range(1, 4000):
            t = now + k * 0.001
            show.step(t)
            if sender.state.desired.get("base_seed") != seed:
                released = t
                break
        status = BridgeStatus(session)
        status.latency = latency
        shown = status.snapshot()["sender"]["delay_to_picture"]  # what /status shows
        assert shown["total"] == pytest.approx(latency.estimate.total, abs=1e-3) and shown["rtt"] > 0
    finally:
        await session.aclose()
    assert released is not None
    bar = 2.0 * (int((released + estimate.total) / 2.0 + 0.5))  # 120 BPM from 0: a bar every 2 s
    return bar - released, estimate.total


async def test_auto_lookahead_is_the_measured_delay_and_grows_with_the_round_trip(make_emulator: Any) -> None:
    near_used, near_estimate = await _auto_lookahead_in_a_show(make_emulator, 0.0)
    far_used, far_estimate = await _auto_lookahead_in_a_show(make_emulator, 300.0)
    assert near_used == pytest.approx(near_estimate, abs=0.003)  # the step grid is 1 ms
    assert far_used == pytest.approx(far_estimate, abs=0.003)
    assert far_used > near_used
