"""The supriya-midi backend (MIDI on Python 3.13+) against real JACK ports, on every Python the tests run on.

The controller and the device that gets feedback are virtual ports of python-rtmidi's mido JACK backend (the
backend tested in test_midi.py) where it is installed; the bridge's side uses ours, so each test also shows that
the two RtMidi bindings meet in one JACK graph. No LD_PRELOAD is needed: the backend loads the system's libjack
into the global symbol scope before supriya-midi's extension (module docstring of mido_supriya); the last tests
show what happens without that, and that nothing a port can do to the backend ends the process.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from importlib.util import find_spec
from typing import Any

import mido
import pytest

from metadj_bridge.errors import ConfigError
from metadj_bridge.inputs import mido_supriya
from metadj_bridge.inputs.midi import MidiInput
from metadj_bridge.inputs.midi_ports import RawInput, list_midi_ports, mido_backend
from metadj_bridge.outputs.midi_feedback import MidiOutput
from tests.helpers import wait_for
from tests.jackrig import JackServer
from tests.test_midi import JACK_BACKEND, Collector, Sender, send_until

# Not importorskip: importing supriya_midi before the backend does binds it to the wheel's libjack for good.
if find_spec("supriya_midi") is None:
    pytest.skip("supriya-midi is not installed (the test extra has it)", allow_module_level=True)

OURS = f"{mido_supriya.NAME}/UNIX_JACK"
_ids = itertools.count()


@pytest.fixture(scope="module")
def jack() -> Iterator[JackServer]:
    """A private JACK server for this module, found through JACK_DEFAULT_SERVER by both RtMidi bindings."""
    from tests.jackrig import jack_for_midi

    with jack_for_midi() as server:
        yield server


@pytest.fixture(scope="module")
def jack_server(jack: JackServer) -> str:
    return jack.name


@pytest.fixture()
def controller_backend(jack_server: str) -> Any:
    """python-rtmidi's JACK backend for the far end; ours where python-rtmidi is not installed (3.13+)."""
    return mido.Backend(JACK_BACKEND if find_spec("rtmidi") else OURS, load=True)


def test_the_default_backend_is_ours_only_where_python_rtmidi_has_no_wheel(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MIDO_BACKEND", raising=False)
    expected = mido_supriya.NAME if sys.version_info >= (3, 13) else "mido.backends.rtmidi"
    assert mido_backend(None).name == expected
    monkeypatch.setenv("MIDO_BACKEND", OURS)
    assert mido_backend(None).module is mido_supriya


def test_an_api_that_is_not_compiled_in_is_named() -> None:
    with pytest.raises(ValueError, match="'NO_SUCH_API' is not available here; supriya-midi has .*UNIX_JACK"):
        mido_supriya.api_number("NO_SUCH_API")


async def test_cc_notes_and_clock_reach_the_bridge(controller_backend: Any) -> None:
    sender = Sender(controller_backend)
    got = Collector()
    midi = MidiInput([sender.name], sink=got, backend=OURS)
    try:
        await midi.start()
        assert midi.port_names == [sender.name]
        assert isinstance(midi._ports[sender.name], RawInput)  # the raw path: bytes, no mido objects
        assert isinstance(midi._ports[sender.name]._in, mido_supriya.Client)
        await send_until(sender, mido.Message("control_change", channel=2, control=74, value=127),
                         lambda: got.last("midi.cc.3.74"), "a CC")
        assert got.last("midi.cc.3.74").value == 1.0
        await send_until(sender, mido.Message("note_on", note=36, velocity=127),
                         lambda: got.last("midi.note.1.36"), "a pad")
        sender.send(mido.Message("start"))
        for _ in range(48):  # two beats of clock at 120 BPM, paced like a DJ mixer sends it
            sender.send(mido.Message("clock"))
            await asyncio.sleep(0.02)
        await wait_for(lambda: midi.clock.ticks >= 40, 2.0, f"the clock ticks (got {midi.clock.ticks})")
        assert midi.clock.playing
    finally:
        await midi.aclose()
        sender.close()
    assert midi.port_names == []


async def test_a_virtual_input_receives_from_a_daw(controller_backend: Any) -> None:
    client = f"bridge{next(_ids)}"
    got = Collector()
    midi = MidiInput(virtual_name="from-daw", sink=got, backend=OURS, client_name=client)
    try:
        await midi.start()
        # The virtual input is the JACK port <client>:from-daw (JACK renames a client whose name is taken).
        names = await asyncio.to_thread(controller_backend.get_output_names)
        daw_side = next(n for n in names if n.endswith(":from-daw"))
        daw = controller_backend.open_output(daw_side)
        try:
            await send_until(daw, mido.Message("control_change", control=1, value=64),
                             lambda: got.last("midi.cc.1.1"), "the DAW's CC")
        finally:
            daw.close()
    finally:
        await midi.aclose()


async def test_a_controller_unplugged_and_plugged_in_again(
    controller_backend: Any, caplog: pytest.LogCaptureFixture
) -> None:
    sender = Sender(controller_backend)
    got = Collector()
    midi = MidiInput([sender.name], sink=got, backend=OURS, poll_interval=0.1, wait_for_ports=True)
    caplog.set_level(logging.INFO, logger="metadj_bridge.inputs.midi")
    try:
        await midi.start()
        await send_until(sender, mido.Message("control_change", control=20, value=10),
                         lambda: got.last("midi.cc.1.20"), "a knob before unplugging")
        sender.close()
        await wait_for(lambda: midi.lost_ports == [sender.name], 2.0, "the loss to be seen")
        assert midi.port_names == [] and midi.problems()
        sender.open()
        await wait_for(lambda: midi.port_names == [sender.name], 2.0, "the port to be reattached")
        await send_until(sender, mido.Message("control_change", control=20, value=127),
                         lambda: got.last("midi.cc.1.20").value == 1.0, "a knob after replugging")
        assert midi.lost_ports == [] and midi.problems() == []
        assert sum("is back" in r.getMessage() for r in caplog.records) == 1
    finally:
        await midi.aclose()
        sender.close()


async def test_feedback_reaches_the_controller_and_follows_a_replug(controller_backend: Any) -> None:
    received: list[Any] = []
    name = f"leds{next(_ids)}"

    def plug() -> Any:
        return controller_backend.open_input("in", virtual=True, client_name=name, callback=received.append)

    device = plug()
    out = MidiOutput(f"{name}:in", backend=OURS, retry_interval=0.2)
    try:
        await out.start()
        assert out.port_name == f"{name}:in"
        out.send_note(1, 36, 1.0)
        out.send_cc(2, 7, 0.5)
        await wait_for(lambda: len(received) >= 2, 2.0, "the pad light and the fader")
        assert mido.Message("note_on", note=36, velocity=127) in received
        assert mido.Message("control_change", channel=1, control=7, value=64) in received
        device.close()
        await wait_for(lambda: out.port_name is None, 2.0, "the loss to be seen")
        out.send_cc(2, 7, 1.0)  # moved while unplugged
        received.clear()
        device = plug()
        await wait_for(lambda: mido.Message("control_change", channel=1, control=7, value=127) in received, 2.0,
                       "the fader position after replugging")
    finally:
        await out.aclose()
        device.close()


async def test_feedback_that_fails_on_a_stalled_jack_server_warns_once_and_comes_back(
    jack: JackServer, controller_backend: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """A real send failure: with the server stopped nothing drains the port's buffer, and RtMidi 6 gives up on a
    send after a second. Each failure closes the port and opens it again; the log says so once, then counts.
    (Closing a port of a stopped server waits for it with the GIL held: the test's own loop stands still too.)"""
    caplog.set_level(logging.DEBUG, logger="metadj_bridge.outputs.midi_feedback")
    received: list[Any] = []
    name = f"stalled{next(_ids)}"
    device = controller_backend.open_input("in", virtual=True, client_name=name, callback=received.append)
    out = MidiOutput(f"{name}:in", backend=OURS, retry_interval=0.2)
    try:
        await out.start()
        for attempt in range(8):  # a loaded machine may flush only after the server woke: that try fails nothing
            if out.send_failures >= 3:
                break
            with jack.stalled(3.0) as waker:
                for channel, number in itertools.product(range(1, 17), range(128)):
                    # 4096 changed values: more than the port's buffer holds (about 2300 messages)
                    out.send_cc(channel, number, attempt % 2)
                    out.send_note(channel, number, attempt % 2)
                await wait_for(lambda: waker.poll() is not None, 15.0, "the server running again")  # noqa: B023
            await wait_for(lambda: out.port_name is not None, 5.0, "the port open again")
        assert out.send_failures >= 3
        # A loaded machine's JACK may still be draining what the stall held back, or drop the first message after
        # it: the value is sent again (alternating, as only changes are sent) until one arrives.
        after = [mido.Message("control_change", control=0, value=v) for v in (64, 76)]
        values = itertools.cycle((0.5, 0.6))

        def arrived() -> bool:
            if any(m in received for m in after):
                return True
            out.send_cc(1, 0, next(values))
            return False

        await wait_for(arrived, 30.0, "a value after the failures", interval=0.5)
    finally:
        await out.aclose()
        device.close()
    records = [r for r in caplog.records if r.name == "metadj_bridge.outputs.midi_feedback"]
    failed = [r.getMessage() for r in records if r.levelno == logging.WARNING]
    assert failed and "sendMessage" in failed[0] and f"{name}:in" in failed[0], failed
    assert all(" in the last " in line for line in failed[1:]), failed  # later failures only counted
    assert len(failed) < out.send_failures
    opened = [r for r in records if r.levelno == logging.INFO and " open" in r.getMessage()]
    assert len(opened) <= len(failed) + 1  # a reopen after a failure that was only counted is no INFO line either


async def test_mido_ports_of_our_backend(controller_backend: Any) -> None:
    """The plain mido API (what ``listen``/``learn`` and other tools may use): list, receive, send."""
    ours = mido.Backend(OURS, load=True)
    sender = Sender(controller_backend)
    port = ours.open_input(sender.name)
    try:
        assert sender.name in ours.get_input_names()
        await send_until(sender, mido.Message("pitchwheel", pitch=100), lambda: port.poll(), "a polled message")
        inputs, outputs = list_midi_ports(OURS)
        assert sender.name in inputs and isinstance(outputs, list)
    finally:
        port.close()
        sender.close()
    assert port.closed
    with pytest.raises(OSError, match="unknown MIDI input"):
        ours.open_input("no-such-port:anywhere")


_PROBE = textwrap.dedent("""
    import mido, sys
    from metadj_bridge.inputs import midi_ports
    be = mido.Backend(sys.argv[1], load=True)
    for what, call in [
        ("list", be.get_input_names),
        ("virtual", lambda: be.open_input("v", virtual=True, client_name="probe")),
        ("open", lambda: be.open_output("nobody:nothing")),
    ]:
        try:
            print(what, "ok", call(), flush=True)
        except OSError as exc:
            print(what, "OSError", exc, flush=True)
    try:
        midi_ports.list_midi_ports(sys.argv[1])
    except Exception as exc:
        print("config", type(exc).__name__, flush=True)
    print("still running", flush=True)
""")


def _probe(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", _PROBE, OURS], capture_output=True, text=True, timeout=60,
                          env={**os.environ, "JACK_NO_START_SERVER": "1", **env})


def test_no_jack_server_is_an_error_not_an_abort() -> None:
    """rtmidi2 aborts the process here ('terminate called after throwing an instance of RtMidiError')."""
    proc = _probe({"JACK_DEFAULT_SERVER": f"metadj-no-such-server-{os.getpid()}"})
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert [line.split()[:2] for line in lines[:3]] == [["list", "OSError"], ["virtual", "OSError"],
                                                        ["open", "OSError"]]
    assert "JACK server not running" in lines[0]
    assert lines[3:] == ["config ConfigError", "still running"]


def test_the_wheels_own_libjack_cannot_reach_the_systems_server(jack_server: str) -> None:
    """Why the backend loads the system's libjack first: with the wheel's copy alone the running server is
    unreachable ('JACK protocol mismatch'), which is an error, never a crash; with the system's it works."""
    bundled = _probe({"JACK_DEFAULT_SERVER": jack_server, "METADJ_BUNDLED_LIBJACK": "1"})
    assert bundled.returncode == 0, bundled.stderr
    assert bundled.stdout.splitlines()[0].startswith("list OSError")
    system = _probe({"JACK_DEFAULT_SERVER": jack_server})
    assert system.returncode == 0, system.stderr
    assert system.stdout.splitlines()[:2] == ["list ok []", "virtual ok <open input 'v' (supriya-midi/UNIX_JACK)>"]


async def test_a_backend_that_cannot_start_is_a_config_error_for_the_bridge(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JACK_DEFAULT_SERVER", f"metadj-no-such-server-{os.getpid()}")
    monkeypatch.setenv("JACK_NO_START_SERVER", "1")
    with pytest.raises(ConfigError, match="cannot start.*JACK server not running.*mido_supriya/UNIX_JACK"):
        await MidiInput(["x"], backend=OURS).start()
    with pytest.raises(ConfigError, match="cannot start"):
        list_midi_ports(OURS)
    quiet = MidiInput(["x"], backend=OURS, wait_for_ports=True)
    await quiet.start()  # on stage: the show goes on without MIDI
    assert quiet.port_names == [] and quiet.problems() == []
    await quiet.aclose()
    out = MidiOutput("x", backend=OURS)
    await out.start()  # no feedback, the show goes on
    out.send_cc(1, 1, 1.0)
    assert out.port_name is None
    await out.aclose()
