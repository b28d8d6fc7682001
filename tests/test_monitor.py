"""`monitor` and `learn`: what a performer sees while moving controls (OSC over real loopback UDP)."""

from __future__ import annotations

import asyncio
import io
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from pythonosc.osc_message_builder import OscMessageBuilder

from metadj_bridge.errors import ConfigError
from metadj_bridge.signals import Signal, Trigger
from metadj_bridge.soundcheck.learn import Learner, insert_into_profile
from metadj_bridge.soundcheck.monitor import MonitorPrinter
from tests.helpers import free_port


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
    for value in (0.6, 0.9, 0.05):  # its range is watched for a moment
        knob.set(Signal("midi.cc.1.74", value, 0.0))
    clock.now = 2.0
    knob.tick()
    assert knob.done.is_set()
    assert knob.learned.snippet("filter") == (
        "filter:\n  source: midi.cc.1.74\n"
        "  transforms: [{range: {in: [0.050, 0.900], out: [0, 1]}}]\n"
        "  target: noise_scale\n"
    )


def test_insert_into_profile_keeps_comments_and_refuses_duplicates(tmp_path: Path) -> None:
    profile = tmp_path / "club.yaml"
    profile.write_text("# my club night\nscope:\n  url: http://127.0.0.1:8000  # the GPU box\n", encoding="utf-8")
    insert_into_profile(profile, "filter", "filter:\n  source: midi.cc.1.74\n  target: noise_scale\n")
    insert_into_profile(profile, "kick_pad", "kick_pad:\n  trigger: midi.note.10.36\n  target: theme.next\n")
    text = profile.read_text(encoding="utf-8")
    assert "# my club night" in text and "# the GPU box" in text
    data = yaml.safe_load(text)
    assert data["mappings"]["filter"] == {"source": "midi.cc.1.74", "target": "noise_scale"}
    assert data["mappings"]["kick_pad"]["trigger"] == "midi.note.10.36"
    with pytest.raises(ConfigError, match="mappings.filter already exists"):
        insert_into_profile(profile, "filter", "filter:\n  source: midi.cc.1.75\n  target: noise_scale\n")
    broken = tmp_path / "broken.yaml"
    broken.write_text("scope: [unclosed\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="is not valid YAML"):
        insert_into_profile(broken, "x", "x:\n  trigger: a\n  target: theme.next\n")


async def _run_cli(*args: str, send: list[tuple[float, str, float]], port: int) -> subprocess.CompletedProcess[str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "metadj_bridge", *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    await asyncio.sleep(2.0)  # the command starts and binds
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        for delay, address, value in send:
            await asyncio.sleep(delay)
            builder = OscMessageBuilder(address)
            builder.add_arg(value)
            sock.sendto(builder.build().dgram, ("127.0.0.1", port))
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode is not None
    return subprocess.CompletedProcess(args, proc.returncode, out.decode(), err.decode())


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
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines()[-1].startswith("error: no control moved")
