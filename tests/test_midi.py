"""MIDI: pure decoding, then real ports through a private JACK server (dummy driver).

How the JACK routing works here: python-rtmidi's JACK API makes one JACK client per mido port. A virtual
output opened with ``client_name="x"`` is the JACK port ``x:<name>`` and shows up in the *input* list; opening
an input by that name makes rtmidi connect the two ports in JACK (no jack.Client.connect needed). A virtual
input of ours shows up in the *output* list, and a test sender opening it by name connects the same way.
rtmidi connects to the server named by ``JACK_DEFAULT_SERVER``, which the ``midi_jack`` fixture sets.
Every port is closed before that server stops (libjack, see tests/jackrig.py).
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import statistics
import time
from collections.abc import Iterator
from typing import Any

import mido
import pytest

from metadj_bridge.errors import ConfigError
from metadj_bridge.inputs.midi import MidiInput
from metadj_bridge.inputs.midi_decode import (
    Cc14Pair,
    MidiControlConfig,
    MidiDecoder,
    RelativeEncoder,
    RelativeMode,
)
from metadj_bridge.inputs.midi_ports import device_key, list_midi_ports, port_matcher
from metadj_bridge.outputs.midi_feedback import MidiOutput
from metadj_bridge.signals import Signal, SignalBoard, Trigger
from tests.helpers import wait_for
from tests.jackrig import midi_backend

JACK_BACKEND = midi_backend()
_ids = itertools.count()


# ---------------------------------------------------------------------- pure decoding


def test_notes_give_trigger_and_held_signal() -> None:
    d = MidiDecoder()
    on = d.decode(mido.Message("note_on", channel=9, note=36, velocity=127), 1.0)
    assert on == [Trigger("midi.note.10.36", 1.0, {"velocity": 1.0}), Signal("midi.note.10.36", 1.0, 1.0)]
    assert d.decode(mido.Message("note_off", channel=9, note=36), 2.0) == [Signal("midi.note.10.36", 0.0, 2.0)]
    released = d.decode(mido.Message("note_on", channel=9, note=36, velocity=0), 3.0)
    assert released == [Signal("midi.note.10.36", 0.0, 3.0)]


def test_cc_pitchbend_program_aftertouch() -> None:
    d = MidiDecoder()
    assert d.decode(mido.Message("control_change", channel=0, control=74, value=127), 1.0) == [
        Signal("midi.cc.1.74", 1.0, 1.0)
    ]
    assert d.decode(mido.Message("pitchwheel", channel=1, pitch=0), 1.0) == [
        Signal("midi.pitchbend.2", pytest.approx(0.5, abs=1e-4), 1.0)
    ]
    assert d.decode(mido.Message("pitchwheel", channel=1, pitch=-8192), 1.0)[0].value == 0.0  # type: ignore[union-attr]
    assert d.decode(mido.Message("pitchwheel", channel=1, pitch=8191), 1.0)[0].value == 1.0  # type: ignore[union-attr]
    assert d.decode(mido.Message("program_change", channel=15, program=5), 1.0) == [
        Trigger("midi.program.16", 1.0, {"program": 5})
    ]
    assert d.decode(mido.Message("aftertouch", channel=2, value=127), 1.0) == [Signal("midi.aftertouch.3", 1.0, 1.0)]
    assert d.decode(mido.Message("polytouch", channel=2, note=60, value=0), 1.0) == [
        Signal("midi.polytouch.3.60", 0.0, 1.0)
    ]


def test_14bit_pair() -> None:
    d = MidiDecoder(MidiControlConfig(cc14=[Cc14Pair(channel=1, msb=1)]))
    assert d.decode(mido.Message("control_change", control=1, value=64), 1.0)[0].value == pytest.approx(8192 / 16383)  # type: ignore[union-attr]
    out = d.decode(mido.Message("control_change", control=33, value=1), 1.0)
    assert out == [Signal("midi.cc.1.1", (64 * 128 + 1) / 16383, 1.0)]
    top = d.decode(mido.Message("control_change", control=1, value=127), 1.0)[0]
    assert top.value == pytest.approx(127 * 128 / 16383)  # type: ignore[union-attr]
    assert d.decode(mido.Message("control_change", control=33, value=127), 1.0)[0].value == 1.0  # type: ignore[union-attr]
    # Unpaired channels stay 7-bit.
    assert d.decode(mido.Message("control_change", channel=1, control=33, value=127), 1.0) == [
        Signal("midi.cc.2.33", 1.0, 1.0)
    ]


@pytest.mark.parametrize(
    ("mode", "up", "down"),
    [
        (RelativeMode.TWOS_COMPLEMENT, [1, 3], [127, 125]),
        (RelativeMode.OFFSET64, [65, 67], [63, 61]),
        (RelativeMode.SIGN_MAGNITUDE, [1, 3], [65, 67]),
    ],
)
def test_relative_encoders(mode: RelativeMode, up: list[int], down: list[int]) -> None:
    enc = RelativeEncoder(channel=1, cc=20, mode=mode, step=0.01, initial=0.5)
    d = MidiDecoder(MidiControlConfig(relative=[enc]))
    values = [d.decode(mido.Message("control_change", control=20, value=v), 1.0)[0].value for v in up + down]  # type: ignore[union-attr]
    assert values == pytest.approx([0.51, 0.54, 0.53, 0.50])
    for _ in range(100):
        out = d.decode(mido.Message("control_change", control=20, value=up[1]), 1.0)
    assert out[0].value == 1.0  # type: ignore[union-attr]  # clamped


def test_ignored_messages_and_raw_bytes() -> None:
    d = MidiDecoder()
    for message in (
        mido.Message("sysex", data=[0x7E, 0x7F, 0x06, 0x01]),
        mido.Message("clock"),
        mido.Message("start"),
        mido.Message("active_sensing"),
        mido.Message("songpos", pos=10),
    ):
        assert d.decode(message, 1.0) == []
    assert d.decode_bytes([0xF4], 1.0) == []  # undefined status byte
    assert d.decode_bytes([0xB0, 200, 1], 1.0) == []  # data byte out of range
    assert d.decode_bytes(b"\xb0\x07\x7f", 2.0) == [Signal("midi.cc.1.7", 1.0, 2.0)]
    assert d.ignored == 7


def test_config_errors_name_the_value() -> None:
    with pytest.raises(ValueError, match="130 is not a MIDI CC number"):
        RelativeEncoder(channel=1, cc=130)
    with pytest.raises(ValueError, match="channel 17"):
        Cc14Pair(channel=17, msb=1)
    with pytest.raises(ValueError, match="MSB controller 40"):
        Cc14Pair(channel=1, msb=40)
    with pytest.raises(ValueError, match="configured twice"):
        MidiControlConfig(cc14=[Cc14Pair(1, 1)], relative=[RelativeEncoder(1, 33)])
    with pytest.raises(ValueError, match="not a MIDI channel"):
        RelativeEncoder(channel=0, cc=1, mode="offset64")  # type: ignore[arg-type]
    assert RelativeEncoder(channel=1, cc=1, mode="offset64").mode is RelativeMode.OFFSET64  # type: ignore[arg-type]


def test_decoded_midi_on_the_signal_board() -> None:
    board = SignalBoard()
    fired: list[Trigger] = []
    board.on_trigger(fired.append)
    for event in MidiDecoder().decode(mido.Message("note_on", note=36, velocity=127), 4.0):
        if isinstance(event, Signal):
            board.set(event)
        else:
            board.fire(event)
    assert board.get("midi.note.1.36") == 1.0
    assert fired == [Trigger("midi.note.1.36", 4.0, {"velocity": 1.0})]
    assert board.take_triggers() == fired and board.take_triggers() == []
    assert board.last_control.startswith("midi.note.1.36")


def test_device_key_ignores_alsa_numbers() -> None:
    assert device_key("Launchpad X:Launchpad X MIDI 1 20:0") == device_key("Launchpad X:Launchpad X MIDI 1 24:0")
    assert device_key("snd:ctrl") == "snd:ctrl"


def test_port_patterns() -> None:
    assert port_matcher("launch")("Launchpad X:Launchpad X MIDI 1")
    assert not port_matcher("launch")("DDJ-400")
    assert port_matcher("re:^ddj-.*1$")("DDJ-400 MIDI 1")
    with pytest.raises(ConfigError, match="not a regular expression"):
        port_matcher("re:(")


# ---------------------------------------------------------------------- JACK far end


@pytest.fixture(scope="module")
def midi_jack() -> Iterator[Any]:
    """A private JACK server for this module; rtmidi's JACK API finds it through JACK_DEFAULT_SERVER."""
    from tests.jackrig import jack_for_midi

    with jack_for_midi():
        yield mido.Backend(JACK_BACKEND, load=True)


class Sender:
    """A virtual output port (a controller stand-in) named ``<client>:<port>`` in the input list."""

    def __init__(self, backend: Any, port: str = "ctrl", client: str | None = None) -> None:
        self.backend = backend
        self.client = client or f"sender{next(_ids)}"
        self.port_name = port
        self.name = f"{self.client}:{port}"
        self.port: Any = None
        self.open()

    def open(self) -> None:
        self.port = self.backend.open_output(self.port_name, virtual=True, client_name=self.client)

    def close(self) -> None:
        if self.port is not None:
            self.port.close()
            self.port = None

    def send(self, *messages: Any) -> None:
        for message in messages:
            self.port.send(message)


async def send_until(sender: Sender, message: Any, arrived: Any, what: str, limit: float = 2.0) -> None:
    """Send once, and again every 0.2 s until it shows: a non-realtime jackd on a saturated machine can drop
    an event before rtmidi sees it (never after, which is what the tests are about)."""
    deadline = time.monotonic() + limit
    while True:
        sender.send(message)
        try:
            await wait_for(arrived, min(0.2, max(0.0, deadline - time.monotonic())), what)
            return
        except AssertionError:
            if time.monotonic() > deadline:
                raise


class Collector:
    def __init__(self) -> None:
        self.events: list[Any] = []
        self.arrived: list[float] = []
        self.tempos: list[Any] = []

    # An input sink: MIDI delivers signals and triggers here.
    def set(self, event: Any) -> None:
        self.events.append(event)
        self.arrived.append(time.monotonic())

    fire = set

    def tempo(self, reading: Any) -> None:
        self.tempos.append(reading)

    def last(self, name: str, kind: type = Signal) -> Any:
        for event in reversed(self.events):
            if event.name == name and isinstance(event, kind):
                return event
        return None


async def test_decoded_signals_arrive_over_jack(midi_jack: Any) -> None:
    sender = Sender(midi_jack)
    got = Collector()
    controls = MidiControlConfig(
        cc14=[Cc14Pair(1, 7)],
        relative=[
            RelativeEncoder(1, 20, RelativeMode.TWOS_COMPLEMENT, step=0.1),
            RelativeEncoder(1, 21, RelativeMode.OFFSET64, step=0.1),
            RelativeEncoder(1, 22, RelativeMode.SIGN_MAGNITUDE, step=0.1, initial=1.0),
        ],
    )
    midi = MidiInput([sender.name], sink=got, controls=controls, backend=JACK_BACKEND)
    try:
        await midi.start()
        assert midi.port_names == [sender.name]
        cc = mido.Message
        sender.send(
            cc("sysex", data=[0x7E, 0x7F, 0x06, 0x01]),
            cc("note_on", channel=0, note=36, velocity=100),
            cc("control_change", channel=1, control=74, value=127),
            cc("control_change", channel=0, control=7, value=100),
            cc("control_change", channel=0, control=39, value=50),
            cc("control_change", channel=0, control=20, value=2),
            cc("control_change", channel=0, control=21, value=67),
            cc("control_change", channel=0, control=22, value=65),
            cc("pitchwheel", channel=0, pitch=4096),
            cc("program_change", channel=3, program=9),
            cc("aftertouch", channel=0, value=64),
            cc("polytouch", channel=0, note=40, value=127),
            cc("active_sensing"),
            cc("note_off", channel=0, note=36),
        )
        await wait_for(lambda: got.last("midi.polytouch.1.40"), 2.0, "the last message")
        trig = got.last("midi.note.1.36", Trigger)
        assert trig.data == {"velocity": pytest.approx(100 / 127)}
        assert got.last("midi.note.1.36").value == 0.0
        assert got.last("midi.cc.2.74").value == 1.0
        assert got.last("midi.cc.1.7").value == pytest.approx((100 * 128 + 50) / 16383)
        assert got.last("midi.cc.1.20").value == pytest.approx(0.2)
        assert got.last("midi.cc.1.21").value == pytest.approx(0.3)
        assert got.last("midi.cc.1.22").value == pytest.approx(0.9)
        assert got.last("midi.pitchbend.1").value == pytest.approx((4096 + 8192) / 16383)
        assert got.last("midi.program.4", Trigger).data == {"program": 9}
        assert got.last("midi.aftertouch.1").value == pytest.approx(64 / 127)
        assert all(e.t <= a for e, a in zip(got.events, got.arrived, strict=True))
        # SysEx and active sensing give nothing: rtmidi drops them before they cost a hand-off.
        assert {e.name for e in got.events} == {
            "midi.note.1.36", "midi.cc.2.74", "midi.cc.1.7", "midi.cc.1.20", "midi.cc.1.21", "midi.cc.1.22",
            "midi.pitchbend.1", "midi.program.4", "midi.aftertouch.1", "midi.polytouch.1.40",
        }
        assert midi.received == 12
    finally:
        await midi.aclose()
        await midi.aclose()
        sender.close()
    with pytest.raises(RuntimeError, match="closed"):
        await midi.start()


async def test_virtual_input_and_several_patterns(midi_jack: Any) -> None:
    a, b = Sender(midi_jack, "deck"), Sender(midi_jack, "deck")
    got = Collector()
    name = f"metadj-in-{next(_ids)}"
    midi = MidiInput([a.name, f"re:^{b.client}:"], virtual_name=name, sink=got, backend=JACK_BACKEND)
    daw: Any = None
    try:
        await midi.start()
        assert midi.port_names == sorted([a.name, b.name])
        _, outputs = list_midi_ports(JACK_BACKEND)
        virtual = next(n for n in outputs if n.endswith(":" + name))
        daw = midi_jack.open_output(virtual)
        a.send(mido.Message("control_change", control=1, value=127))
        b.send(mido.Message("control_change", control=2, value=127))
        daw.send(mido.Message("control_change", control=3, value=127))
        await wait_for(lambda: all(got.last(f"midi.cc.1.{c}") for c in (1, 2, 3)), 2.0, "a CC from each port")
    finally:
        await midi.aclose()
        if daw is not None:
            daw.close()
        a.close()
        b.close()


async def test_no_match_lists_the_inputs(midi_jack: Any) -> None:
    sender = Sender(midi_jack)
    try:
        expected = r"'nothing-like-this' matches no port; available inputs: .*" + sender.name
        with pytest.raises(ConfigError, match=expected):
            await MidiInput(["nothing-like-this"], backend=JACK_BACKEND).start()
    finally:
        sender.close()
    with pytest.raises(ConfigError, match="pattern or a virtual"):
        MidiInput([])


async def test_hot_plug_reattaches_within_a_second(midi_jack: Any, caplog: pytest.LogCaptureFixture) -> None:
    sender = Sender(midi_jack, "pads", client=f"hotplug{next(_ids)}")
    got = Collector()
    controls = MidiControlConfig(relative=[RelativeEncoder(1, 20, step=0.25)])
    midi = MidiInput([sender.name], sink=got, controls=controls, backend=JACK_BACKEND, poll_interval=0.2)
    caplog.set_level(logging.INFO, logger="metadj_bridge.inputs.midi")
    try:
        await midi.start()
        turn = mido.Message("control_change", control=20, value=1)
        await send_until(sender, turn, lambda: got.last("midi.cc.1.20"), "a turn before unplugging")
        before = got.last("midi.cc.1.20").value
        sender.close()
        await wait_for(lambda: midi.lost_ports == [sender.name], 2.0, "the loss to be seen")
        await asyncio.sleep(0.5)  # stays unplugged for a few polls: still one warning
        sender.open()
        back = time.monotonic()
        await wait_for(lambda: midi.port_names == [sender.name], 1.0, "the port to be reattached")
        reattached = time.monotonic() - back
        # The mapping survived: the encoder carries on from where it was.
        await send_until(sender, turn, lambda: got.last("midi.cc.1.20").value != before, "a turn after replugging")
        assert got.last("midi.cc.1.20").value == before + 0.25
        warnings = [r for r in caplog.records if r.levelno == logging.WARNING and sender.name in r.getMessage()]
        infos = [r for r in caplog.records if r.levelno == logging.INFO and "is back" in r.getMessage()]
        assert len(warnings) == 1 and len(infos) == 1
        assert reattached < 1.0
    finally:
        await midi.aclose()
        sender.close()


async def test_broken_listener_does_not_stop_input(midi_jack: Any, caplog: pytest.LogCaptureFixture) -> None:
    sender = Sender(midi_jack)
    seen: list[Any] = []

    class Broken:
        def set(self, event: Any) -> None:
            seen.append(event)
            raise RuntimeError("listener bug")

        fire = set

        def tempo(self, reading: Any) -> None:
            pass

    midi = MidiInput([sender.name], sink=Broken(), backend=JACK_BACKEND)
    try:
        await midi.start()
        for value in range(5):
            sender.send(mido.Message("note_on", note=value, velocity=1))
            await asyncio.sleep(0.01)
        await wait_for(lambda: len(seen) >= 10, 2.0, "every note despite the failing listener")
        assert sum("MIDI listener errors" in r.getMessage() and r.exc_info is not None for r in caplog.records) == 1
    finally:
        await midi.aclose()
        sender.close()


async def test_cc_latency_and_latest_wins(midi_jack: Any) -> None:
    """CC in to Signal on the loop over JACK (about one period: ~5.8 ms at 256 frames, ~1.4 ms at 64); a burst
    arrives with the last value last."""
    sender = Sender(midi_jack)
    got = Collector()
    midi = MidiInput([sender.name], sink=got, backend=JACK_BACKEND)
    try:
        await midi.start()
        latencies = []
        lost_in_jack = 0
        for i in range(200):
            sent = time.monotonic()
            count, received = len(got.events), midi.received
            sender.send(mido.Message("control_change", control=10, value=i % 128))
            while len(got.events) == count:
                # Not sleep(0): a loop that spins holds the GIL, and rtmidi's JACK thread that needs it then
                # misses JACK cycles (events are lost in the dummy driver's graph).
                await asyncio.sleep(0.0002)
                if time.monotonic() - sent > 0.5:
                    # A non-realtime jackd on a saturated machine can drop an event before rtmidi sees it;
                    # anything that reached our callback must come out.
                    assert midi.received == received, f"CC {i} reached the callback but not the loop"
                    lost_in_jack += 1
                    break
            else:
                latencies.append(got.arrived[-1] - sent)
        assert lost_in_jack <= 2
        latencies.sort()
        median, p95 = statistics.median(latencies), latencies[int(0.95 * len(latencies))]
        print(
            f"CC to signal on the loop: median {median * 1e3:.2f} ms, p95 {p95 * 1e3:.2f} ms "
            f"({lost_in_jack} lost in JACK)"
        )
        assert median < 0.02
        # A burst while the loop is busy: no more than one signal per batch for that control, the last value last.
        got.events.clear()
        # The loop is blocked on purpose while the burst piles up. Paced like a fast controller: a JACK MIDI
        # port holds only about period x 4 bytes per cycle (~20 messages at 64 frames); rtmidi drops the rest.
        for v in range(127):
            sender.send(mido.Message("control_change", control=11, value=v))
            time.sleep(0.0005)  # noqa: ASYNC251
        # The last value goes in a JACK cycle of its own: on a loaded machine the dummy driver's thread can stall
        # while the burst piles up, and rtmidi then drops what a cycle cannot hold, the newest first. Wait (the
        # loop still blocked) until the callbacks stop coming, then send it.
        settled = burst_end = time.monotonic()
        count = midi.received
        while time.monotonic() - settled < 0.03 and time.monotonic() - burst_end < 2.0:
            time.sleep(0.002)  # noqa: ASYNC251
            if midi.received != count:
                settled, count = time.monotonic(), midi.received
        sender.send(mido.Message("control_change", control=11, value=127))
        before = midi.received
        await wait_for(lambda: got.last("midi.cc.1.11") and got.last("midi.cc.1.11").value == 1.0, 1.0,
                       f"the last value (received {midi.received - before}, last {got.last('midi.cc.1.11')})")
        assert len([e for e in got.events if e.name == "midi.cc.1.11"]) <= midi.batches
        assert len([e for e in got.events if e.name == "midi.cc.1.11"]) < 128
    finally:
        await midi.aclose()
        sender.close()


async def test_output_is_rate_limited_latest_wins(midi_jack: Any, caplog: pytest.LogCaptureFixture) -> None:
    received: list[tuple[float, Any]] = []
    name = f"feedback{next(_ids)}"
    receiver = midi_jack.open_input(
        "leds", virtual=True, client_name=name, callback=lambda m: received.append((time.monotonic(), m))
    )
    out = MidiOutput(f"{name}:leds", backend=JACK_BACKEND)
    missing = MidiOutput("no-such-output", backend=JACK_BACKEND)
    try:
        await out.start()
        await missing.start()
        missing.send_cc(1, 1, 0.5)  # ignored: the show goes on
        start = time.monotonic()
        for i in range(1000):
            out.send_cc(1, 16, i / 999)
            if i % 100 == 99:
                await asyncio.sleep(0.01)
        out.send_note(1, 36, 1.0)
        await wait_for(lambda: any(m.type == "note_on" for _, m in received), 2.0, "the pad light")
        await asyncio.sleep(0.2)
        ccs = [(t, m) for t, m in received if m.type == "control_change"]
        span = max(0.1, ccs[-1][0] - start)
        assert ccs[-1][1].value == 127
        assert len(ccs) <= 30 * span + 2, (len(ccs), span)
        assert out.messages_sent == len(received)
        warnings = [r for r in caplog.records if "no-such-output" in r.getMessage()]
        assert len(warnings) == 1 and "available outputs" in warnings[0].getMessage()
    finally:
        await out.aclose()
        await out.aclose()
        await missing.aclose()
        receiver.close()


async def test_output_follows_a_replugged_device(midi_jack: Any, caplog: pytest.LogCaptureFixture) -> None:
    received: list[Any] = []
    name = f"motorfader{next(_ids)}"

    def plug() -> Any:
        return midi_jack.open_input("in", virtual=True, client_name=name, callback=received.append)

    receiver = plug()
    out = MidiOutput(f"{name}:in", backend=JACK_BACKEND, retry_interval=0.2)
    caplog.set_level(logging.INFO, logger="metadj_bridge.outputs.midi_feedback")
    try:
        await out.start()
        out.send_cc(2, 7, 0.5)
        await wait_for(lambda: received, 2.0, "the fader position")
        receiver.close()
        await wait_for(lambda: out.port_name is None, 2.0, "the loss to be seen")
        out.send_cc(2, 7, 1.0)  # moved while unplugged
        receiver = plug()
        received.clear()
        await wait_for(lambda: received, 2.0, "the fader position after replugging")
        assert received[-1] == mido.Message("control_change", channel=1, control=7, value=127)
        assert sum(r.levelno == logging.WARNING for r in caplog.records) == 1
        assert any("feedback is back" in r.getMessage() for r in caplog.records)
    finally:
        await out.aclose()
        receiver.close()


async def test_output_sends_every_value_once_more_after_the_port_settles(midi_jack: Any) -> None:
    """A JACK connection takes effect some periods after it is made, so the first messages to a port just opened can
    be lost: before SETTLE_S, these two, sent the moment the port opened, never arrived (and the replugged fader
    above missed its position once in a CI run). Every value goes out again SETTLE_S after the port opens, and then
    only what changes."""
    from metadj_bridge.outputs import midi_feedback

    received: list[tuple[float, Any]] = []
    name = f"ledring{next(_ids)}"
    receiver = midi_jack.open_input(
        "in", virtual=True, client_name=name, callback=lambda m: received.append((time.monotonic(), m))
    )
    out = MidiOutput(f"{name}:in", backend=JACK_BACKEND)
    try:
        await out.start()
        opened = time.monotonic()
        out.send_cc(3, 21, 0.5)
        out.send_note(3, 40, 1.0)
        wanted = sorted(map(str, [mido.Message("control_change", channel=2, control=21, value=64),
                                  mido.Message("note_on", channel=2, note=40, velocity=127)]))

        def settled() -> list[str]:
            return sorted(str(m) for t, m in received if t - opened >= 0.8 * midi_feedback.SETTLE_S)

        await wait_for(lambda: settled() == wanted, 2.0, f"the values after the port settled (received {received})")
        await asyncio.sleep(2 * midi_feedback.SETTLE_S)
        assert out.messages_sent == 4  # once at the open, once after it settled, and no more
        assert settled() == wanted
    finally:
        await out.aclose()
        receiver.close()


def test_a_stalled_loop_loses_the_oldest_messages_and_says_so(caplog: pytest.LogCaptureFixture) -> None:
    from metadj_bridge.inputs import midi as midi_module

    got = Collector()
    midi = MidiInput(["unused"], sink=got)
    limit = midi_module._QUEUE_LIMIT
    for i in range(limit + 5):  # what rtmidi's thread does while the loop is stuck
        midi._enqueue([0x90, i % 128, 1], float(i), "unused")
    while midi.received < limit:  # a slice of the queue per turn of the loop
        midi._deliver()
    assert midi.received == limit and midi.overflowed == 5
    assert got.events[0].t == 5.0  # the oldest went
    assert sum("5 messages lost" in r.getMessage() for r in caplog.records) == 1


async def test_a_clock_flood_is_taken_a_slice_per_turn_of_the_loop_and_its_losses_are_one_line(
    midi_jack: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """MIDI clock at 10 kHz (a feedback loop, a DAW gone wild): each tick refits the tempo, so a full queue taken in
    one go held the event loop for half a second, again and again, and every round logged its losses."""
    from metadj_bridge.inputs import midi as midi_module

    got = Collector()
    name = f"metadj-in-{next(_ids)}"
    midi = MidiInput(virtual_name=name, sink=got, backend=JACK_BACKEND)
    await midi.start()
    turns = 0

    async def other_work() -> None:  # the sender, the engine, the web page: anything else on the loop
        nonlocal turns
        while True:
            turns += 1
            await asyncio.sleep(0)

    worker = asyncio.get_running_loop().create_task(other_work())
    try:
        flood = 20_000
        for i in range(flood):  # what rtmidi's thread queues while the loop is busy elsewhere
            midi._enqueue([0xF8], 100.0 + i * 1e-4, name)
        turns = 0
        await asyncio.sleep(0)  # one turn of the loop
        assert 0 < midi.received <= midi_module._BATCH
        await wait_for(lambda: midi.received == flood, 60.0, "the whole flood")
        assert turns >= flood // midi_module._BATCH - 1  # other work had its turn between the slices
        assert midi.received <= midi.batches * midi_module._BATCH
        # Ticks 0.1 ms apart are no tempo (midi_clock: a backlog or a flood), not 400 BPM: nothing reaches the grid.
        assert not [reading for reading in got.tempos if reading.bpm > 0]

        limit = midi_module._QUEUE_LIMIT
        with caplog.at_level(logging.WARNING, logger="metadj_bridge.inputs.midi"):
            for _ in range(3):  # a flood the loop cannot keep up with, round after round
                target = midi.received + limit
                for i in range(limit + 5):
                    midi._enqueue([0xB0, 1, i % 128], 200.0 + i * 1e-4, name)
                await wait_for(lambda target=target: midi.received == target, 60.0, "a full queue")
        assert midi.overflowed == 15
        lost = [r.getMessage() for r in caplog.records if "messages lost" in r.getMessage()]
        assert len(lost) == 1, lost
        assert "5 messages lost" in lost[0]
    finally:
        worker.cancel()
        await midi.aclose()


@pytest.mark.skipif(os.path.exists("/dev/snd/seq"), reason="needs a machine whose ALSA has no sequencer")
async def test_a_backend_that_cannot_start_is_a_config_error(caplog: pytest.LogCaptureFixture) -> None:
    alsa = midi_backend("LINUX_ALSA")
    with pytest.raises(ConfigError, match="cannot start.*MIDO_BACKEND"):
        list_midi_ports(alsa)
    with pytest.raises(ConfigError, match="cannot start"):
        await MidiInput(["x"], backend=alsa).start()
    out = MidiOutput("x", backend=alsa)
    await out.start()  # no feedback, but the show goes on
    out.send_cc(1, 1, 1.0)
    await out.aclose()
    assert any("controller feedback is off" in r.getMessage() for r in caplog.records)


async def test_unknown_backend_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="cannot be loaded"):
        await MidiInput(["x"], backend="mido.backends.no_such_backend").start()


async def test_a_controller_plugged_in_after_the_start_is_picked_up(
    midi_jack: Any, caplog: pytest.LogCaptureFixture
) -> None:
    got = Collector()
    midi = MidiInput(["latecomer"], sink=got, backend=JACK_BACKEND, wait_for_ports=True, poll_interval=0.2)
    try:
        await midi.start()  # nothing called "latecomer" yet: the show starts anyway
        assert midi.port_names == []
        warning = next(r.getMessage() for r in caplog.records if r.levelno == logging.WARNING)
        assert "'latecomer' matches no port" in warning and "picks it up when it is plugged in" in warning
        sender = Sender(midi_jack, client="latecomer")
        try:
            await wait_for(lambda: midi.port_names == [sender.name], 5.0, "the late controller attached")
            await send_until(sender, mido.Message("control_change", control=9, value=127),
                             lambda: got.last("midi.cc.1.9"), "the late controller's knob")
        finally:
            sender.close()
    finally:
        await midi.aclose()
    with pytest.raises(ConfigError, match="matches no port"):
        await MidiInput(["latecomer"], backend=JACK_BACKEND).start()  # without waiting: the clear error, as before
