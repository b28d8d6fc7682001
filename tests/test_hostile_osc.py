"""Hostile OSC from the network (issue 12): real UDP packets on loopback into the bridge's OSC input.

Each hostile packet is refused with one rate-limited line naming the sender, and the input goes on delivering;
an absurd tempo is refused and the beat grid keeps moving; 20,000 invented addresses keep the signal board at its
cap with the drops counted; and a fuzz test shows the wire reader gives only the project's own errors.
"""

from __future__ import annotations

import asyncio
import logging
import math
import socket
import struct
import time
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from metadj_bridge.errors import MetaDJError
from metadj_bridge.inputs.osc import OscInput
from metadj_bridge.inputs.osc_decode import OscDecoder, parse_datagram
from metadj_bridge.inputs.osc_wire import MAX_ELEMENTS, MAX_STRING_CHARS
from metadj_bridge.inputs.tempo_sources import TempoArbiter
from metadj_bridge.run.tempo_hub import TempoHub
from metadj_bridge.signals import MAX_BPM, MIN_BPM, Signal, SignalBoard, TempoReading
from metadj_bridge.status.server import prometheus_text
from tests.helpers import wait_for

OPACITY = "/composition/layers/1/video/opacity"


# --------------------------------------------------------------------------------------------- packets by hand


def osc_string(text: str | bytes) -> bytes:
    raw = text.encode() if isinstance(text, str) else text
    return raw + b"\x00" * (4 - len(raw) % 4)


def message(address: str | bytes, tags: str = "", payload: bytes = b"") -> bytes:
    """An OSC message built byte by byte, so that it can be as wrong as a test needs."""
    return osc_string(address) + osc_string("," + tags) + payload


def bundle(*elements: bytes, timetag: int = 1) -> bytes:
    return b"#bundle\x00" + struct.pack(">Q", timetag) + b"".join(struct.pack(">i", len(e)) + e for e in elements)


def nested_bundle(depth: int) -> bytes:
    packet = message(OPACITY, "f", struct.pack(">f", 0.5))
    for _ in range(depth):
        packet = bundle(packet)
    return packet


def good(value: float = 0.5) -> bytes:
    return message(OPACITY, "f", struct.pack(">f", value))


#: (name, packet, what the refusal says)
HOSTILE = [
    ("60,000 unknown type tags", message("/x", "x" * 60_000), "60000 type tags"),
    ("60,000 float tags without data", message("/x", "f" * 60_000), "60000 type tags"),
    ("30,000 open arrays", message("/x", "[" * 30_000 + "]" * 30_000), "60000 type tags"),
    ("arrays 20 deep", message("/x", "[" * 20 + "]" * 20), "nested more than"),
    ("an unknown type tag", message("/x", "fq", struct.pack(">f", 1.0)), "unknown type tag 'q'"),
    ("bundles 3,000 deep", nested_bundle(3000), "nested more than"),
    ("a bundle of 200 messages", bundle(*[good() for _ in range(200)]), f"more than {MAX_ELEMENTS}"),
    ("a blob claiming 2 GB", message("/x", "b", struct.pack(">i", 2**31 - 1) + b"abcd"), "does not fit"),
    ("a 600-character address", message("/" + "a" * 600, "f", struct.pack(">f", 1.0)), "longer than 512"),
    ("an address with an escape sequence", message("/\x1b[2J\x1b[31mred", "i", b"\x00" * 4), "control characters"),
    ("a 5,000-character string", message("/x", "s", osc_string("s" * 5000)), f"longer than {MAX_STRING_CHARS}"),
    ("a string that is not UTF-8", message("/x", "s", osc_string(b"\xff\xfe")), "not UTF-8"),
    ("2,000 arguments in two messages", bundle(message("/a", "T" * 1000), message("/b", "T" * 1000),
                                                message("/c", "T" * 100)), "more than 2048 arguments"),
    ("a truncated float", b"/bad\x00\x00\x00\x00,f\x00\x00", "past the end"),
    ("no type tags", message("/x")[:-4] + b"junk", "type tags"),
]


# --------------------------------------------------------------------------------------------- UDP


class Sender:
    """A UDP socket on loopback that knows its own ``ip:port`` (how the bridge names it)."""

    def __init__(self, port: int) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.target = ("127.0.0.1", port)
        self.name = f"127.0.0.1:{self.sock.getsockname()[1]}"

    def send(self, packet: bytes) -> None:
        self.sock.sendto(packet, self.target)


@pytest.fixture
async def osc_input() -> AsyncIterator[Callable[..., Any]]:
    opened: list[OscInput] = []
    senders: list[Sender] = []

    async def make(board: SignalBoard | None = None, **kwargs: Any) -> tuple[OscInput, SignalBoard, Sender]:
        board = board if board is not None else SignalBoard()
        osc_in = OscInput("127.0.0.1", 0, sink=board, **kwargs)
        await osc_in.start()
        opened.append(osc_in)
        senders.append(Sender(osc_in.port))
        return osc_in, board, senders[-1]

    yield make
    for osc_in in opened:
        await osc_in.aclose()
    for sender in senders:
        sender.sock.close()


def problem_lines(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.levelno >= logging.WARNING]


@pytest.mark.parametrize(("name", "packet", "reason"), HOSTILE, ids=[h[0] for h in HOSTILE])
async def test_each_hostile_packet_is_one_line_and_the_input_goes_on(
    osc_input: Callable[..., Any], caplog: pytest.LogCaptureFixture, name: str, packet: bytes, reason: str
) -> None:
    assert len(packet) <= 65_507, "must fit one UDP datagram"
    osc_in, board, sender = await osc_input()
    with caplog.at_level(logging.DEBUG):  # every logger, python-osc's and the root logger's included
        for _ in range(10):
            sender.send(packet)
        await wait_for(lambda: osc_in.counters.received == 10, 5.0, "ten hostile packets")
        sender.send(good(0.75))
        await wait_for(lambda: board.get("osc." + OPACITY) == 0.75, 5.0, "a good packet after the hostile ones")
    lines = problem_lines(caplog)
    assert 1 <= len(lines) <= 2, [r.getMessage()[:200] for r in lines]
    text = lines[0].getMessage()
    assert sender.name in text and reason in text, text
    assert len(text) < 600
    assert all(r.exc_info is None for r in caplog.records), "no traceback for a packet"
    assert not [r for r in caplog.records if not r.name.startswith("metadj_bridge")], "python-osc logged"
    assert osc_in.counters.malformed + osc_in.counters.bad_args == 10


async def test_numbers_that_are_not_finite_never_reach_the_board(
    osc_input: Callable[..., Any], caplog: pytest.LogCaptureFixture
) -> None:
    osc_in, board, sender = await osc_input()
    with caplog.at_level(logging.WARNING):
        for value in (math.nan, math.inf, -math.inf):
            sender.send(message(OPACITY, "d", struct.pack(">d", value)))  # a preset address
            sender.send(message("/my/fader", "f", struct.pack(">f", value)))  # an address no preset knows
        sender.send(good(0.25))
        await wait_for(lambda: board.get("osc." + OPACITY) == 0.25, 5.0, "the good value")
    assert osc_in.counters.bad_args == 6
    assert "osc./my/fader" not in board.values
    assert all(math.isfinite(v) for v in board.values.values())
    lines = problem_lines(caplog)
    assert len(lines) == 1 and sender.name in lines[0].getMessage() and "finite" in lines[0].getMessage()


# --------------------------------------------------------------------------------------------- tempo


def tempo_packet(bpm: float) -> bytes:
    return message("/live/song/get/tempo", "d", struct.pack(">d", bpm))


async def test_an_absurd_tempo_is_refused_and_the_grid_moves_on(
    osc_input: Callable[..., Any], caplog: pytest.LogCaptureFixture
) -> None:
    board = SignalBoard()
    hub = TempoHub(board)
    osc_in, _, sender = await osc_input(board, presets=("ableton",))
    sender.send(tempo_packet(120.0))
    await wait_for(lambda: hub.arbiter.source == "osc", 5.0, "the OSC tempo steering")
    with caplog.at_level(logging.WARNING):
        for bpm in (1e30, math.nan, math.inf, 5.0, 1500.0, -120.0):
            sender.send(tempo_packet(bpm))
        await wait_for(lambda: osc_in.counters.bad_args == 6, 5.0, "six refused tempos")
    lines = problem_lines(caplog)
    assert len(lines) == 1, [r.getMessage() for r in lines]
    assert sender.name in lines[0].getMessage() and "1e+30 BPM is outside 20-999" in lines[0].getMessage()

    now = time.monotonic()
    a, b = hub.arbiter.state(now), hub.arbiter.state(now + 0.5)
    assert a.bpm == pytest.approx(120.0) and b.beat - a.beat == pytest.approx(1.0, abs=1e-6)  # 120 BPM: a beat

    sender.send(tempo_packet(140.0))  # a later good tempo is followed
    await wait_for(lambda: hub.arbiter.state(time.monotonic()).bpm > 121.0, 5.0, "the new tempo ramping in")
    later = time.monotonic() + 2.9  # within the OSC tempo's freshness, after the ramp
    end, end2 = hub.arbiter.state(later), hub.arbiter.state(later + 0.03)
    assert end.bpm == pytest.approx(140.0)
    assert end2.beat - end.beat == pytest.approx(0.07, abs=1e-3)
    assert 0.0 <= end.phase < 1.0 and end.phase != end2.phase


def test_the_arbiter_refuses_readings_outside_the_range(caplog: pytest.LogCaptureFixture) -> None:
    arb = TempoArbiter()
    arb.update(TempoReading("link", 120.0, 0.0, beat=0.0))
    with caplog.at_level(logging.WARNING):
        for reading in (TempoReading("link", 1e30, 0.1, beat=0.2), TempoReading("link", 120.0, 0.2, beat=1e30),
                        TempoReading("midi_clock", MAX_BPM + 1, 0.2), TempoReading("audio", MIN_BPM - 1, 0.2),
                        TempoReading("link", math.nan, 0.3, beat=0.6)):
            arb.update(reading)
    state = arb.state(0.25)
    assert state.bpm == pytest.approx(120.0) and state.beat == pytest.approx(0.5)
    lines = problem_lines(caplog)
    assert len(lines) == 1 and "link: 1e+30 BPM is outside 20-999" in lines[0].getMessage()


# --------------------------------------------------------------------------------------------- memory


def address_bundles(count: int, per_bundle: int = 50) -> Iterator[bytes]:
    for start in range(0, count, per_bundle):
        yield bundle(*[message(f"/invented/{i}", "f", struct.pack(">f", 1.0))
                       for i in range(start, min(count, start + per_bundle))])


async def test_twenty_thousand_addresses_keep_the_board_at_its_cap(
    osc_input: Callable[..., Any], caplog: pytest.LogCaptureFixture
) -> None:
    board = SignalBoard()
    board.keep(["osc." + OPACITY])
    osc_in, _, sender = await osc_input(board)
    sender.send(good(0.5))
    await wait_for(lambda: board.get("osc." + OPACITY) == 0.5, 5.0, "the profile's address")
    packets = list(address_bundles(20_000))
    with caplog.at_level(logging.WARNING):
        for i, packet in enumerate(packets):
            sender.send(packet)
            if i % 20 == 0:
                await asyncio.sleep(0.005)  # a steady sender, not a burst the kernel drops
        await wait_for(lambda: osc_in.counters.received == 1 + len(packets), 10.0, "every bundle")
    delivered = osc_in.counters.dispatched - 1
    assert delivered == 20_000
    assert len(board.values) == board.max_values
    assert board.dropped == 20_000 + 1 - board.max_values
    assert board.get("osc." + OPACITY) == 0.5  # what the profile reads is never pushed out
    assert "osc./invented/19999" in board.values and "osc./invented/0" not in board.values
    assert len(osc_in.decoder._cache) <= 4096
    lines = problem_lines(caplog)
    assert 1 <= len(lines) <= 2 and "signal values dropped" in lines[0].getMessage()
    metrics = prometheus_text({"show": {"signals_dropped": board.dropped}})
    assert f"metadj_signals_dropped_total {board.dropped}" in metrics


def test_the_board_pushes_out_only_names_nobody_reads(caplog: pytest.LogCaptureFixture) -> None:
    board = SignalBoard(max_values=4)
    board.keep(["osc./kept"])
    with caplog.at_level(logging.WARNING):
        for name in ("osc./kept", "audio.energy", "tempo.bpm", "osc./a", "osc./b", "osc./c"):
            board.set(Signal(name, 1.0, 0.0))
    assert set(board.values) == {"osc./kept", "audio.energy", "tempo.bpm", "osc./c"} and board.dropped == 2
    board.keep(["osc./c"])  # another profile took over: what it reads is kept now
    board.set(Signal("osc./d", 1.0, 0.0))
    assert set(board.values) == {"audio.energy", "tempo.bpm", "osc./c", "osc./d"} and board.dropped == 3
    lines = problem_lines(caplog)
    assert len(lines) == 1 and "'osc./b' pushed out 'osc./a'" in lines[0].getMessage()


# --------------------------------------------------------------------------------------------- fuzz

_TAGS = st.text(alphabet="ihfdsSbrmtcTFNI[]xq,", max_size=40)
_ADDRESSES = st.one_of(st.text(max_size=40).map(lambda s: "/" + s), st.sampled_from(
    ["/live/song/get/tempo", "/live/song/get/beat", OPACITY, "/composition/tempocontroller/tempo",
     "/live/clip/get/playing_status", "/composition/columns/1/connect"]))


@st.composite
def wrong_messages(draw: st.DrawFn) -> bytes:
    """Structured but wrong: a real address and type tags, a payload that may or may not match them."""
    address = draw(_ADDRESSES).encode("utf-8", "surrogatepass")
    packet = osc_string(address) + osc_string("," + draw(_TAGS)) + draw(st.binary(max_size=64))
    cut = draw(st.integers(0, len(packet)))
    return packet[:cut] if draw(st.booleans()) else packet


@st.composite
def wrong_bundles(draw: st.DrawFn) -> bytes:
    elements = draw(st.lists(st.one_of(wrong_messages(), st.binary(max_size=24)), max_size=5))
    sizes = [draw(st.one_of(st.just(len(e)), st.integers(-8, 80))) for e in elements]
    body = b"".join(struct.pack(">i", size) + e for size, e in zip(sizes, elements, strict=True))
    return b"#bundle\x00" + draw(st.binary(min_size=0, max_size=8)) + body


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(st.binary(max_size=200), wrong_messages(), wrong_bundles()))
def test_fuzz_only_our_own_errors_come_out(packet: bytes) -> None:
    decoder = OscDecoder()
    try:
        messages = parse_datagram(packet, wall_now=time.time())
    except MetaDJError:
        return
    for msg in messages:
        event = decoder.decode(msg.address, msg.args, 1.0)
        assert all(math.isfinite(s.value) for s in event.signals)
        if event.tempo is not None:
            assert MIN_BPM <= event.tempo.bpm <= MAX_BPM
