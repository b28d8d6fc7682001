"""The breakdown watch: the low band gone, however long, and back."""

from __future__ import annotations

import numpy as np
import pytest

from metadj_bridge.inputs.breakdown import BREAKDOWN_AFTER_S, BREAKDOWN_HOLD, BreakdownWatch

HOP_S = 512 / 44100


def _play(watch: BreakdownWatch, lows: np.ndarray, first: int = 0) -> np.ndarray:
    states = []
    for k, low in enumerate(lows):
        watch.hop(first + k, float(low))
        states.append(watch.active)
    return np.array(states)


def _hops(seconds: float) -> int:
    return round(seconds / HOP_S)


def test_a_breakdown_as_long_as_a_djs_lasts_until_the_kick_is_back() -> None:
    """16 s of kicks (a flux of 1 on every 43rd hop: 120 BPM), then 64 s with next to nothing in the low band (pads and
    hats: 1% of it), then the kicks again. The breakdown begins within a second and a half, holds for all 64 s (the
    8 s mean would have sunk to the breakdown's own level after half a minute), and ends within a beat of the kick's
    return; it lasted the 64 s."""
    kicks = np.zeros(_hops(16.0))
    kicks[::43] = 1.0
    quiet = np.full(_hops(64.0), 0.01 / 43)
    watch = BreakdownWatch(HOP_S)
    before = _play(watch, kicks)
    assert not before[_hops(BREAKDOWN_AFTER_S) + 1 :].any()
    level = watch.long
    during = _play(watch, quiet, len(kicks))
    began = int(np.argmax(during))
    assert during[began:].all() and began * HOP_S < 1.5
    assert watch.long >= 0.8 * BREAKDOWN_HOLD * level  # the mean fell no further than the floor
    first = len(kicks) + len(quiet)
    for k, low in enumerate(kicks[: _hops(2.0)]):
        watch.hop(first + k, float(low))
        if not watch.active:  # the hop it ends: how long it lasted (read there by the BeatClock)
            assert k * HOP_S < 0.5
            assert watch.lasted() == pytest.approx(64.0 - began * HOP_S + k * HOP_S, abs=0.05)
            break
    assert not _play(watch, kicks[: _hops(2.0)], first + _hops(2.0)).any()


def test_a_breakdown_is_held_off_and_made_the_new_normal_when_asked() -> None:
    """No breakdown before the hop the caller holds it off to (the first seconds of music); and once another beat is
    followed in one, the low band heard then is the new normal."""
    kicks = np.zeros(_hops(10.0))
    kicks[::43] = 1.0
    watch = BreakdownWatch(HOP_S)
    _play(watch, kicks)
    watch.hold_off(len(kicks) + _hops(3.0))
    quiet = np.full(_hops(6.0), 0.01 / 43)
    during = _play(watch, quiet, len(kicks))
    assert not during[: _hops(3.0) - 1].any() and during[_hops(3.0) + 1 :].all()
    watch.new_normal(len(kicks) + len(quiet))
    assert not watch.active
    assert not _play(watch, quiet, len(kicks) + len(quiet)).any()  # the same level is no breakdown any more


def test_a_new_start_learns_its_low_band_afresh() -> None:
    """After ``restart`` (music back after a silence) a song without bass is not one long breakdown of the last one."""
    kicks = np.zeros(_hops(10.0))
    kicks[::43] = 1.0
    watch = BreakdownWatch(HOP_S)
    _play(watch, kicks)
    quiet = np.full(_hops(5.0), 0.01 / 43)
    assert _play(watch, quiet, len(kicks))[-1]  # the pause: a breakdown of the last song
    watch.restart()
    watch.hop(len(kicks) + len(quiet), 0.01 / 43)
    assert watch.lasted() < 0.1  # a new start is no drop after a long breakdown (the clock takes no held phase)
    assert not _play(watch, np.full(_hops(10.0), 0.01 / 43), len(kicks) + len(quiet) + 1).any()
