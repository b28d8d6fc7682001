"""The band groups' tempo evidence (``inputs/band_tempo.py``): what ``BandTempo`` keeps per hop and sums when read is
every group's rise, hop by hop, over exactly the last hops asked for."""

from __future__ import annotations

import numpy as np
import pytest

from metadj_bridge.inputs.band_tempo import GROUP_EDGES, MIN_POWER, BandTempo, oldest_first, within_entry


def _group_rises(bands: np.ndarray) -> np.ndarray:
    """(groups, hops): each band's rise since the hop before (the first hop's is zero), summed per group, one hop at
    a time."""
    groups = np.searchsorted(np.array(GROUP_EDGES), np.arange(bands.shape[1]), side="right")
    out = np.zeros((len(GROUP_EDGES) + 1, len(bands)))
    for k in range(1, len(bands)):
        rise = np.maximum(bands[k].astype(float) - bands[k - 1].astype(float), 0.0)
        for g in range(out.shape[0]):
            out[g, k] = rise[groups == g].sum()
    return out


@pytest.mark.parametrize("pushes", [1, 5, 40, 41, 42, 97, 250])
def test_the_rises_read_are_the_last_hops_rises_summed_per_group(pushes: int) -> None:
    """Before the ring is full, when it has just filled, and after it has wrapped round several times; hops never
    heard rise by nothing."""
    rng = np.random.default_rng(pushes)
    bands = rng.random((pushes, 81)).astype(np.float32)
    tempo = BandTempo(40, 128)
    for row in bands:
        tempo.push(row)
    expected = _group_rises(bands)
    assert tempo.rises(60).shape == (len(GROUP_EDGES) + 1, 40)  # no more than the ring holds
    for n in (1, 7, 40):
        got = tempo.rises(n)
        want = np.zeros((len(GROUP_EDGES) + 1, n))
        tail = expected[:, -n:]
        want[:, n - tail.shape[1] :] = tail
        assert got.shape == want.shape
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)


def test_few_bands_leave_the_higher_groups_silent() -> None:
    """At a low sample rate the filterbank has fewer bands: the groups above its top are zero, not an error."""
    rng = np.random.default_rng(3)
    bands = rng.random((30, 25)).astype(np.float32)
    tempo = BandTempo(20, 64)
    for row in bands:
        tempo.push(row)
    got = tempo.rises(20)
    assert np.all(got[4:] == 0.0)  # the groups from band 40 up (bands 0-2, 3-7, 8-20 and 21-24 are heard)
    np.testing.assert_allclose(got[:4], _group_rises(bands)[:4, -20:], rtol=1e-12, atol=1e-12)
    acfs = tempo.acfs(20)
    assert np.all(acfs[4:] == 0.0) and np.all(acfs[:4, 0] > MIN_POWER * 20)


def test_the_music_entry_is_capped_in_the_autocorrelations() -> None:
    """Hops pushed as not counted (the music's entry) are held to ENTRY_CAP of the others in what ``acfs`` reads."""
    rng = np.random.default_rng(8)
    bands = np.cumsum(rng.random((60, 81)), axis=0).astype(np.float32)  # every band rises every hop
    bands[10] += 50.0  # a loud entry
    tempo = BandTempo(50, 128)
    for k, row in enumerate(bands):
        tempo.push(row, counted=not 9 <= k <= 11)
    entry = np.zeros(50, bool)
    entry[:2] = True  # hops 10 and 11 of the last 50 (hops 10-59)
    x = within_entry(_group_rises(bands)[:, -50:], entry)
    x = x - x.mean(axis=1, keepdims=True)
    spectrum = np.fft.rfft(x, 128, axis=1)
    want = np.fft.irfft(spectrum.real**2 + spectrum.imag**2, 128, axis=1)
    np.testing.assert_allclose(tempo.acfs(50), want, rtol=1e-9, atol=1e-9)
    uncapped = BandTempo(50, 128)
    for row in bands:
        uncapped.push(row)
    assert uncapped.acfs(50)[0, 0] > 2 * want[0, 0]  # the entry's jump would rule the window


@pytest.mark.parametrize("pos", [0, 1, 6, 7])
def test_a_ring_read_from_its_oldest_value_is_what_np_roll_gives(pos: int) -> None:
    ring = np.arange(7.0)
    np.testing.assert_array_equal(oldest_first(ring, pos), np.roll(ring, -pos))
    rows = np.arange(21.0).reshape(3, 7)
    np.testing.assert_array_equal(oldest_first(rows, pos), np.roll(rows, -pos, axis=1))
