"""MIDI clock tempo: the pure estimator, compared with Scope's EMA of 0.15, and a real JACK clock sender."""

from __future__ import annotations

import random
import statistics
import threading

import pytest

from metadj_bridge.inputs.midi_clock import (
    PPQN,
    MidiClockConfig,
    MidiClockTempo,
    ema_bpm,
    intervals_of,
)
from tests.jackrig import midi_backend


def clock_times(bpm: float, beats: float, *, jitter: float = 0.0, t0: float = 100.0, seed: int = 1) -> list[float]:
    rng = random.Random(seed)
    period = 60.0 / (bpm * PPQN)
    return [t0 + i * period + rng.uniform(-jitter, jitter) for i in range(int(beats * PPQN))]


def run(times: list[float], clock: MidiClockTempo | None = None) -> tuple[MidiClockTempo, list[float | None]]:
    clock = clock or MidiClockTempo()
    out: list[float | None] = []
    for t in times:
        clock.tick(t)
        out.append(clock.bpm)
    return clock, out


def test_steady_clock_exact() -> None:
    clock, bpms = run(clock_times(120.0, 8))
    assert bpms[0] is None
    assert bpms[10] == pytest.approx(120.0, abs=1e-6)
    assert clock.bpm == pytest.approx(120.0, abs=1e-6)


@pytest.mark.parametrize("bpm", [120.0, 128.0, 174.0])
def test_jittered_clock_is_steadier_than_scope_ema(bpm: float) -> None:
    times = clock_times(bpm, 64, jitter=0.001, seed=int(bpm))
    clock, bpms = run(times)
    settled = [b for b in bpms[4 * PPQN :] if b is not None]
    ema = ema_bpm(intervals_of(times))[4 * PPQN :]
    ours_std = statistics.pstdev(settled)
    ema_std = statistics.pstdev(ema)
    assert ours_std <= 0.1, ours_std
    assert max(abs(b - bpm) for b in settled) <= 0.1
    assert ema_std > 5 * ours_std, (ours_std, ema_std)
    assert clock.tempo_changes == 0


def test_late_ticks_are_outliers() -> None:
    times = clock_times(128.0, 16, jitter=0.0005)
    for i in range(100, len(times), 37):
        times[i] += 0.008  # a USB hiccup delays one tick
    clock, bpms = run(times)
    assert clock.outliers >= 5
    assert all(abs(b - 128.0) < 0.1 for b in bpms[4 * PPQN :] if b is not None)


@pytest.mark.parametrize(
    ("bpm", "lost"), [(90.0, {200}), (128.0, {200}), (128.0, {200, 201, 202}), (174.0, {150, 250, 350})]
)
def test_lost_ticks_move_neither_the_tempo_nor_the_beat(bpm: float, lost: set[int]) -> None:
    """Ticks lost on the way (a missed JACK cycle, a dropped USB or network packet): the ticks after them are a whole
    period late on the line. They are counted further on; before, the window restarted on them as a tempo change
    (up to 13 BPM off at 128 BPM) and the beat position stayed a tick behind."""
    sent = clock_times(bpm, 20, jitter=0.001, seed=int(bpm))
    clock = MidiClockTempo()
    clock.start(0.0)
    clock, bpms = run([t for i, t in enumerate(sent) if i not in lost], clock)
    assert clock.lost_ticks == len(lost)
    assert clock.tempo_changes == 0
    assert max(abs(b - bpm) for b in bpms[4 * PPQN :] if b is not None) <= 0.1
    assert clock.beat() == pytest.approx((len(sent) - 1) / PPQN)


@pytest.mark.parametrize(("bpm", "ratio"), [(150.0, 0.85), (120.0, 0.8), (160.0, 0.7), (128.0, 0.5), (100.0, 1.5)])
def test_a_sudden_tempo_change_is_no_lost_tick(bpm: float, ratio: float) -> None:
    """A tempo that slows or speeds up at once moves the ticks away from the line a little more each tick, passing a
    whole period late on the way: a tempo change, not ticks lost, and the beat position counts every tick."""
    before = clock_times(bpm, 10, jitter=0.002, seed=3)
    period = 60.0 / (bpm * ratio * PPQN)
    rng = random.Random(4)
    after = [before[-1] + (i + 1) * period + rng.uniform(-0.002, 0.002) for i in range(4 * PPQN)]
    clock = MidiClockTempo()
    clock.start(0.0)
    clock, bpms = run(before + after, clock)
    assert clock.lost_ticks == 0
    assert clock.tempo_changes >= 1
    assert abs(bpms[len(before) + 2 * PPQN] - bpm * ratio) < 0.5  # type: ignore[operator]
    assert clock.beat() == pytest.approx((len(before) + len(after) - 1) / PPQN)


@pytest.mark.parametrize("bad", [float("inf"), float("nan")])
def test_a_tick_time_that_is_not_finite_loses_nothing(bad: float) -> None:
    """The estimator is fed arrival times; one that is not a number (a broken clock source) is an outlier like any
    other, never an exception, and the tempo holds."""
    times = clock_times(120.0, 8, jitter=0.0005)
    times[100] = bad
    clock, bpms = run(times)
    assert clock.ticks == len(times)
    assert bpms[-1] == pytest.approx(120.0, abs=0.1)


def test_tempo_change_reconverges_within_a_beat() -> None:
    before = clock_times(120.0, 8, jitter=0.001)
    period = 60.0 / (126.0 * PPQN)
    rng = random.Random(5)
    last = before[-1]
    after = [last + (i + 1) * period + rng.uniform(-0.001, 0.001) for i in range(8 * PPQN)]
    clock, bpms = run(before + after)
    assert clock.tempo_changes >= 1
    # Within one beat of the change the tempo is within 0.5 BPM of the new value, within two beats 0.1.
    after_bpms = bpms[len(before) :]
    assert abs(after_bpms[PPQN] - 126.0) < 0.5  # type: ignore[operator]
    assert all(abs(b - 126.0) < 0.15 for b in after_bpms[2 * PPQN :] if b is not None)


def test_gap_forgets_the_old_tempo() -> None:
    clock, _ = run(clock_times(120.0, 4))
    run(clock_times(90.0, 2, t0=200.0), clock)
    assert clock.bpm == pytest.approx(90.0, abs=1e-6)


def test_a_backlog_of_ticks_after_a_freeze_is_no_tempo() -> None:
    """The bridge frozen for 10 s while a DAW's clock played on: the MIDI system held the ticks and hands 240 of them
    over within 5 ms when the bridge wakes (ALSA's sequencer, CoreMIDI). That is no tempo of 400 BPM: no reading
    comes from it, the song position still counts its ticks, and the real clock after it is 120 BPM again."""
    clock, _ = run(clock_times(120.0, 4))
    burst = [110.0 + i * 5e-3 / 240 for i in range(240)]
    _, burst_bpms = run(burst, clock)
    _, after = run(clock_times(120.0, 2, t0=110.015), clock)
    assert [b for b in burst_bpms if b is not None] == []
    read = [b for b in after if b is not None]
    assert read and all(abs(b - 120.0) < 0.5 for b in read), [round(b, 1) for b in read]
    assert clock.bpm == pytest.approx(120.0, abs=0.01)


def test_start_stop_continue_and_beat_position() -> None:
    clock = MidiClockTempo()
    times = clock_times(120.0, 12)
    period = 60.0 / (120.0 * PPQN)
    for t in times[:24]:
        clock.tick(t)  # clock running before Start: tempo known
    assert clock.bpm == pytest.approx(120.0)
    clock.start(times[24] - 0.001)
    assert clock.beat() is None
    for t in times[24 : 24 + 2 * PPQN + 1]:
        clock.tick(t)
    # First tick after Start is beat 0, so 49 ticks later we are on beat 2.
    assert clock.beat() == pytest.approx(2.0)
    assert clock.beat(times[24 + 2 * PPQN] + period / 2) == pytest.approx(2.0 + 0.5 / PPQN, abs=1e-6)
    # Never more than a tick ahead of the newest tick: a stalled clock does not run the beat away.
    assert clock.beat(times[24 + 2 * PPQN] + period * 12) == pytest.approx(2.0 + 1 / PPQN, abs=1e-6)
    clock.stop(times[73] - 0.001)
    for t in times[73:97]:
        clock.tick(t)  # ticks go on while stopped: the position holds
    reading = clock.reading()
    assert reading is not None
    assert reading.playing is False and reading.beat == pytest.approx(2.0)
    assert reading.bpm == pytest.approx(120.0) and reading.source == "midi_clock"
    clock.continue_(times[97] - 0.001)
    for t in times[97:121]:
        clock.tick(t)
    assert clock.beat() == pytest.approx(3.0)
    assert clock.reading() is not None and clock.reading().playing  # type: ignore[union-attr]
    clock.start(times[121] - 0.001)
    clock.tick(times[121])
    assert clock.beat() == pytest.approx(0.0)


def test_config_rejects_nonsense() -> None:
    with pytest.raises(ValueError, match="window"):
        MidiClockConfig(window=3)
    with pytest.raises(ValueError, match="min_ticks"):
        MidiClockConfig(min_ticks=1)
    with pytest.raises(ValueError, match="lost_confirm"):
        MidiClockConfig(lost_confirm=1)


def test_no_reading_before_enough_ticks() -> None:
    clock = MidiClockTempo()
    assert clock.reading() is None and clock.bpm is None
    clock.tick(1.0)
    assert clock.reading() is None


# ---------------------------------------------------------------------- a real clock sender over JACK


class RecordingClock(MidiClockTempo):
    """The real estimator, also keeping the arrival times so Scope's EMA can be computed on the same ticks."""

    def __init__(self) -> None:
        super().__init__()
        self.arrivals: list[float] = []
        #: The input heard a Start (no reading comes of it: a reading needs ticks).
        self.started = threading.Event()

    def tick(self, t: float) -> None:
        self.arrivals.append(t)
        super().tick(t)

    def start(self, t: float) -> None:
        super().start(t)
        self.started.set()


async def test_jittered_clock_over_jack_feeds_midi_input() -> None:
    import asyncio
    import contextlib
    import os
    import time

    import mido

    from metadj_bridge.inputs.midi import MidiInput
    from tests.helpers import tempo_sink
    from tests.jackrig import JackServer

    bpm, seconds = 128.0, 4.0
    period = 60.0 / (bpm * PPQN)
    previous = os.environ.get("JACK_DEFAULT_SERVER")
    with JackServer(period=256) as server:
        os.environ["JACK_DEFAULT_SERVER"] = server.name
        backend_name = midi_backend()
        backend = mido.Backend(backend_name, load=True)
        sender = backend.open_output("clock", virtual=True, client_name="clock-sender")
        clock = RecordingClock()
        readings: list = []
        stopped = asyncio.Event()
        heard = clock.started  # the input has the port: JACK connects it at a later cycle than open returns

        stop_heard = threading.Event()

        def keep(reading) -> None:  # noqa: ANN001
            readings.append(reading)
            if reading.playing is False:
                stopped.set()
                stop_heard.set()

        midi = MidiInput(["clock-sender:clock"], clock=clock, sink=tempo_sink(keep), backend=backend_name)
        stop = threading.Event()
        late: list[float] = []  # how far each tick really went out from the steady grid

        def send_clock() -> None:
            rng = random.Random(3)
            for _ in range(50):  # Start again until the input hears it (a loaded JACK connects late)
                sender.send(mido.Message("start"))
                if heard.wait(0.1):
                    break
            t0 = time.monotonic() + 0.01
            for i in range(int(seconds / period)):
                due = t0 + i * period + rng.uniform(-0.001, 0.001)
                while (wait := due - time.monotonic()) > 0:
                    if stop.wait(wait):
                        return
                sender.send(mido.Message("clock"))
                late.append(time.monotonic() - (t0 + i * period))
            for _ in range(5):  # Stop again until heard: a loaded machine's JACK can drop an event in a missed cycle
                sender.send(mido.Message("stop"))
                if stop_heard.wait(0.5):
                    break

        thread = threading.Thread(target=send_clock, name="test-midi-clock-sender")
        try:
            await midi.start()
            thread.start()
            await asyncio.to_thread(thread.join, seconds + 5)
            # A loaded machine can hold the last ticks back in the hand-over; Stop is the last message sent.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stopped.wait(), 5.0)
        finally:
            stop.set()
            thread.join(5)
            await midi.aclose()
            sender.close()
            if previous is None:
                os.environ.pop("JACK_DEFAULT_SERVER", None)
            else:
                os.environ["JACK_DEFAULT_SERVER"] = previous
    # Every tick arrives, but for one or two that a loaded machine's JACK (no realtime scheduling here) can drop in
    # a missed cycle: the tempo below must not depend on every tick.
    assert int(seconds / period) - 2 <= clock.ticks <= int(seconds / period)
    settled = [r.bpm for r in readings if r.playing and r.beat is not None and r.beat >= 4.0]
    ema = ema_bpm(intervals_of(clock.arrivals))[4 * PPQN :]
    spread = max(late) - min(late)
    print(f"MIDI clock over JACK at {bpm:g} BPM, sent with {spread * 1e3:.1f} ms spread: ours std "
          f"{statistics.pstdev(settled):.3f} BPM (max error {max(abs(b - bpm) for b in settled):.3f}); "
          f"EMA 0.15 std {statistics.pstdev(ema):.3f} BPM")
    # A busy machine delays the sender thread beyond the intended +-1 ms (the pure tests hold the exact case).
    assert statistics.pstdev(settled) <= (0.1 if spread <= 0.003 else 0.2)
    assert statistics.pstdev(settled) < statistics.pstdev(ema) / 5
    assert abs(statistics.fmean(settled) - bpm) <= 0.1
    # The pure tests hold the +-0.1 BPM bound on exact +-1 ms jitter; here a busy machine adds its own
    # scheduling delays to the sender thread (and JACK rounds arrivals to its 5.8 ms period).
    assert max(abs(b - bpm) for b in settled) <= 0.3
    assert readings[-1].playing is False
    assert readings[-1].beat == pytest.approx((clock.ticks - 1) / PPQN)
