"""`monitor` and `learn`: what a performer sees while moving controls (OSC over real loopback UDP)."""

from __future__ import annotations

import asyncio
import io
import itertools
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pythonosc.osc_message_builder import OscMessageBuilder

from metadj_bridge.errors import EXIT_CONFIG
from metadj_bridge.signals import Signal, Trigger
from metadj_bridge.soundcheck.learn import LEARN_MAX_S, LEARN_REST_S, Learner, run_learn
from metadj_bridge.soundcheck.monitor import ControlOptions, MonitorPrinter
from tests.helpers import free_port, wait_for
from tests.jackrig import midi_backend


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_printer_shows_every_trigger_and_only_moving_values() -> None:
    out, clock = io.StringIO(), FakeClock()
    printer = MonitorPrinter(out, clock)
    printer.set(Signal("midi.cc.1.74", 0.5, 0.0))
    printer.set(Signal("midi.cc.1.74", 0.5001, 0.0))  # no visible change: not printed again
    printer.fire(Trigger("midi.note.10.36", 0.0, {"velocity": 0.8}))
    printer.fire(Trigger("midi.note.10.36", 0.0, {"velocity": 0.8}))
    clock.now = 1.0
    printer.set(Signal("midi.cc.1.74", 0.5001, 1.0))  # unchanged, but a while later: printed
    lines = out.getvalue().splitlines()
    assert lines == [
        "signal  midi.cc.1.74  0.500",
        "trigger midi.note.10.36  velocity=0.800",
        "trigger midi.note.10.36  velocity=0.800",
        "signal  midi.cc.1.74  0.500",
    ]


def test_learner_takes_a_pad_at_once_and_a_knob_after_it_travels() -> None:
    clock = FakeClock()
    pad = Learner(clock)
    pad.set(Signal("midi.cc.1.1", 0.50, 0.0))
    pad.fire(Trigger("midi.note.10.36", 0.0, {"velocity": 1.0}))
    assert pad.done.is_set() and pad.learned is not None
    assert pad.learned.snippet("kick_pad") == "kick_pad:\n  trigger: midi.note.10.36\n  target: theme.next\n"
    assert pad.learned.snippet("kick_pad", "action.pulse_noise").endswith("  target: action.pulse_noise\n")

    knob = Learner(clock)
    knob.set(Signal("midi.cc.1.7", 0.40, 0.0))  # a jittery fader that barely moves is not it
    knob.set(Signal("midi.cc.1.7", 0.42, 0.0))
    knob.set(Signal("midi.cc.1.74", 0.10, 0.0))
    knob.set(Signal("midi.cc.1.74", 0.30, 0.0))
    assert knob.learned is not None and knob.learned.source == "midi.cc.1.74" and not knob.done.is_set()
    for value in (0.6, 0.9, 0.05):  # its range is watched while it moves
        knob.set(Signal("midi.cc.1.74", value, 0.0))
    clock.now = 2.0
    knob.tick()
    assert knob.done.is_set()
    assert knob.learned.snippet("filter") == (
        "filter:\n  source: midi.cc.1.74\n"
        "  transforms: [{range: {in: [0.050, 0.900], out: [0, 1]}}]\n"
        "  target: noise_scale\n"
    )
    assert knob.learned.mapping() == {"source": "midi.cc.1.74", "target": "noise_scale",
                                      "transforms": [{"range": {"in": [0.05, 0.9], "out": [0, 1]}}]}


def test_learner_listens_until_the_knob_rests() -> None:
    clock = FakeClock()
    knob = Learner(clock)
    for t, value in [(0.0, 0.0), (0.5, 0.2), (1.0, 0.4), (2.0, 0.5)]:  # a slow start
        clock.now = t
        knob.set(Signal("midi.cc.1.74", value, t))
    clock.now = 2.0 + LEARN_REST_S - 0.1  # a pause shorter than the rest: still listening
    knob.tick()
    assert not knob.done.is_set()
    for t, value in [(3.5, 0.8), (4.0, 1.0)]:
        clock.now = t
        knob.set(Signal("midi.cc.1.74", value, t))
    for step in range(10):  # the last bit flickering is jitter, not a move: it does not hold learning open
        clock.now = 4.0 + step * 0.2
        knob.set(Signal("midi.cc.1.74", 1.0 - (step % 2) / 127, clock.now))
    assert knob.done.is_set() and knob.learned is not None
    assert (knob.learned.low, knob.learned.high) == (0.0, 1.0)

    restless = Learner(clock)  # a control that never rests still ends
    clock.now = 0.0
    restless.set(Signal("midi.cc.1.1", 0.0, 0.0))
    while not restless.done.is_set():
        clock.now += 0.5
        restless.set(Signal("midi.cc.1.1", 0.5 if restless.learned is None or clock.now % 1 else 0.0, clock.now))
        assert clock.now <= LEARN_MAX_S + 0.5
    assert clock.now >= LEARN_MAX_S


async def _run_cli(*args: str, send: list[tuple[float, str, float]], port: int,
                   env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "metadj_bridge", *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env={**os.environ, **(env or {})},
    )
    stderr = proc.stderr
    assert stderr is not None

    async def listening() -> bytes:
        """What the command logged until it listens (OSC bound, the monitor or learner in place): it then asks for a
        control, "move a control" (monitor), "move the control to learn" (learn)."""
        said = b""
        while not said.endswith(b"\n") or not said.splitlines()[-1].startswith(b"move "):
            line = await stderr.readline()
            assert line, f"the command ended before it listened: {said.decode(errors='replace')}"
            said += line
        return said

    try:
        said = await asyncio.wait_for(listening(), 30) if send else b""
    except BaseException:
        proc.kill()
        await proc.wait()
        raise
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        for delay, address, value in send:
            await asyncio.sleep(delay)
            builder = OscMessageBuilder(address)
            builder.add_arg(value)
            sock.sendto(builder.build().dgram, ("127.0.0.1", port))
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode is not None
    return subprocess.CompletedProcess(args, proc.returncode, out.decode(), (said + err).decode())


async def test_monitor_prints_osc_under_its_mapping_names() -> None:
    port = free_port()
    sends = [(0.05, "/composition/layers/1/video/opacity", 0.5), (0.05, "/composition/tempocontroller/resync", 1.0)]
    proc = await _run_cli("monitor", "--no-midi", "--osc-port", str(port), "--duration", "4", send=sends, port=port)
    assert proc.returncode == 0, proc.stderr
    assert "signal  osc./composition/layers/1/video/opacity  0.500" in proc.stdout
    assert "trigger osc./composition/tempocontroller/resync" in proc.stdout


async def test_learn_writes_the_moved_fader_into_a_profile(tmp_path: Path) -> None:
    port = free_port()
    profile = tmp_path / "show.yaml"
    profile.write_text("# show\nthemes:\n  neon:\n    prompts: [neon city at night]\n", encoding="utf-8")
    sweep = [(0.02, "/composition/layers/2/video/opacity", v / 20) for v in range(21)]
    proc = await _run_cli(
        "learn", "--no-midi", "--osc-port", str(port), "--duration", "8", "--name", "layer2", "--write", str(profile),
        send=sweep, port=port,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith(
        "layer2:\n  source: osc./composition/layers/2/video/opacity\n  transforms: [{range: {in: ["
    )
    # What learn writes is a working mapping: the profile still loads, with the new mapping in it.
    from metadj_bridge.profile import load_profile
    from metadj_bridge.profile.model import Range, SignalSource

    learned = {m.name: m for m in load_profile(str(profile)).mappings}["layer2"]
    assert learned.source == SignalSource("osc./composition/layers/2/video/opacity", where=learned.source.where)
    assert learned.target.kind == "parameter" and learned.target.name == "noise_scale"
    assert isinstance(learned.transforms[0], Range) and learned.transforms[0].in_hi >= 0.9


async def test_learn_with_nothing_moving_says_so() -> None:
    port = free_port()
    proc = await _run_cli("learn", "--no-midi", "--osc-port", str(port), "--duration", "1", send=[], port=port)
    assert proc.returncode == EXIT_CONFIG
    assert proc.stderr.strip().splitlines()[-1].startswith("error: no control moved")


# ---------------------------------------------------------------------- MIDI: a real port, and none at all

JACK_BACKEND = midi_backend()
_ids = itertools.count()


@pytest.fixture(scope="module")
def midi_jack() -> Iterator[Any]:
    """A private JACK server for this module; rtmidi's JACK API finds it through JACK_DEFAULT_SERVER."""
    import mido

    from tests.jackrig import jack_for_midi

    with jack_for_midi():
        yield mido.Backend(JACK_BACKEND, load=True)


async def test_learn_hears_a_slow_sweep_with_pauses_to_its_end(
    midi_jack: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A knob swept over ~4 s, resting less than LEARN_REST_S half-way: the whole range is learned."""
    import mido

    monkeypatch.setenv("MIDO_BACKEND", JACK_BACKEND)
    client = f"sweep{next(_ids)}"
    knob = midi_jack.open_output("ctrl", virtual=True, client_name=client)
    out, err = io.StringIO(), io.StringIO()
    try:
        learn = asyncio.create_task(run_learn(ControlOptions(midi=[client], no_osc=True, duration=30), "filter",
                                              out=out, err=err))
        await wait_for(lambda: "move the control" in err.getvalue() or learn.done(), 20, "learn listening")

        async def turn(value: int, times: int = 1) -> None:
            for _ in range(times):  # the ends a few times, apart: a non-realtime jackd may drop an event or a burst
                knob.send(mido.Message("control_change", control=74, value=value))
                if times > 1:
                    await asyncio.sleep(0.03)

        await turn(0, 3)
        for value in range(4, 64, 4):  # up to the middle in ~1.5 s
            await asyncio.sleep(0.1)
            await turn(value)
        await asyncio.sleep(LEARN_REST_S - 0.7)  # a pause, shorter than the rest that ends learning
        for value in range(64, 128, 4):  # on to the top in ~1.5 s
            await asyncio.sleep(0.1)
            await turn(value)
        await turn(127, 3)
        assert await asyncio.wait_for(learn, 30) == 0, err.getvalue()
    finally:
        knob.close()
    snippet = yaml_snippet(out.getvalue())
    assert snippet["source"] == "midi.cc.1.74"
    low, high = snippet["transforms"][0]["range"]["in"]
    assert low <= 0.02 and high >= 0.98, out.getvalue()


def yaml_snippet(text: str) -> dict[str, Any]:
    import yaml

    data = yaml.safe_load(text)
    assert isinstance(data, dict) and len(data) == 1
    return dict(next(iter(data.values())))


#: MIDI that cannot start for real: rtmidi's JACK API with no JACK server by that name (and none started for it).
NO_MIDI = {"MIDO_BACKEND": JACK_BACKEND, "JACK_DEFAULT_SERVER": "metadj-test-no-such-server",
           "JACK_NO_START_SERVER": "1"}


async def test_monitor_goes_on_with_osc_when_midi_cannot_start() -> None:
    port = free_port()
    sends = [(0.05, "/composition/layers/1/video/opacity", 0.5)]
    proc = await _run_cli("monitor", "--osc-port", str(port), "--duration", "4", send=sends, port=port, env=NO_MIDI)
    assert proc.returncode == 0, proc.stderr
    assert "signal  osc./composition/layers/1/video/opacity  0.500" in proc.stdout
    said = [line for line in proc.stderr.splitlines() if line.startswith("MIDI is off")]
    assert len(said) == 1 and "going on with OSC only" in said[0] and "cannot start" in said[0], proc.stderr


async def test_learn_goes_on_with_osc_when_midi_cannot_start() -> None:
    port = free_port()
    sweep = [(0.02, "/composition/layers/2/video/opacity", v / 20) for v in range(21)]
    proc = await _run_cli("learn", "--osc-port", str(port), "--duration", "8", "--name", "layer2",
                          send=sweep, port=port, env=NO_MIDI)
    assert proc.returncode == 0, proc.stderr
    assert yaml_snippet(proc.stdout)["source"] == "osc./composition/layers/2/video/opacity"
    assert "MIDI is off, going on with OSC only" in proc.stderr


async def test_no_midi_and_no_osc_is_an_error() -> None:
    proc = await _run_cli("monitor", "--no-osc", "--duration", "1", send=[], port=free_port(), env=NO_MIDI)
    assert proc.returncode == EXIT_CONFIG
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("error: nothing to listen to: MIDI cannot start (") and "OSC is off" in last
