"""The frame stamp, and the emulator's pictures that carry it.

The stamp: draw then read, refusals, and survival through a real VP8 encode/decode round trip. The
pictures: a real chunk loop (on a fast clock) is sent each kind of change a text-mode pipeline reads, and
the frames it makes are drawn and compared; keys the pipeline ignores change only the stamp. An end-to-end
test over real WebRTC reads the stamps of received frames and finds the message's chunk in them.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from fractions import Fraction
from itertools import pairwise
from typing import Any

import av
import httpx
import numpy as np
import pytest
from aiortc.codecs.vpx import Vp8Decoder, vp8_depayload
from aiortc.jitterbuffer import JitterFrame

from metadj_bridge.emulator import ScopeEmulator, catalogue
from metadj_bridge.emulator.encoder import ScopeVp8Encoder
from metadj_bridge.emulator.pipeline import SessionPipeline
from metadj_bridge.emulator.records import EventRecords
from metadj_bridge.emulator.render import PROGRESS_HEIGHT, STRIP_HEIGHT, FrameRenderer, FrameSpec
from metadj_bridge.emulator.stamp import CELL, COLS, MAGIC, ROWS, draw_stamp, params_digest, read_stamp, settled_stamps
from tests.helpers import wait_for
from tests.test_emulator import TEXT_OFFER, ClientPeer, EmulatorFactory, applied_for, http, load, peers

__all__ = ["http", "peers"]  # fixtures shared with test_emulator


def _busy(height: int, width: int, seed: int = 7) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(height, width, 3), dtype=np.uint8)


def test_digest_is_canonical_and_32_bit() -> None:
    one = params_digest({"b": 1, "a": [1, 2], "c": {"y": 0.5, "x": "p"}})
    two = params_digest({"c": {"x": "p", "y": 0.5}, "a": [1, 2], "b": 1})
    assert one == two
    assert 0 <= one < 2**32
    assert params_digest({"b": 2, "a": [1, 2], "c": {"y": 0.5, "x": "p"}}) != one
    # sha1('{"a":1}')[:4] big-endian, worked out independently of the module's own code path
    assert params_digest({"a": 1}) == 0x9F89_C740


@pytest.mark.parametrize("frame", [np.full((64, 160, 3), 90, dtype=np.uint8), _busy(48, 200)])
def test_draw_then_read(frame: np.ndarray) -> None:
    for chunk, digest in [(0, 0), (1, 0xFFFFFFFF), (123_456, 0x1234_5678), (2**24 + 5, 0xDEAD_BEEF)]:
        draw_stamp(frame, chunk, digest)
        assert read_stamp(frame) == (chunk % 2**24, digest)


def test_stamp_stays_in_its_corner() -> None:
    frame = np.full((64, 200, 3), 77, dtype=np.uint8)
    draw_stamp(frame, 9, 0xABCDEF01)
    assert (frame[32:, :, :] == 77).all() and (frame[:, 128:, :] == 77).all()
    assert set(np.unique(frame[:32, :128])) <= {0, 255}


def test_too_small_frame_reads_none_and_refuses_drawing() -> None:
    assert read_stamp(np.zeros((31, 128, 3), dtype=np.uint8)) is None
    assert read_stamp(np.zeros((32, 127, 3), dtype=np.uint8)) is None
    with pytest.raises(ValueError, match="at least 128x32"):
        draw_stamp(np.zeros((32, 100, 3), dtype=np.uint8), 1, 2)


def test_wrong_magic_reads_none() -> None:
    frame = _busy(64, 160)
    draw_stamp(frame, 5, 6)
    frame[:8, :8] = 255 - frame[:8, :8]  # flip the first bit of the magic byte
    assert read_stamp(frame) is None
    assert read_stamp(np.zeros((64, 160, 3), dtype=np.uint8)) is None  # all black: magic 0x00
    assert read_stamp(np.full((64, 160, 3), 255, dtype=np.uint8)) is None  # all white: magic 0xFF
    assert MAGIC == 0xA5


def _vp8_round_trip(frames: list[np.ndarray], width: int, height: int) -> list[np.ndarray]:
    """Encode with libvpx at 5 Mbit/s and decode again, as a WebRTC hop would."""
    encoder = av.CodecContext.create("libvpx", "w")
    encoder.width, encoder.height, encoder.pix_fmt = width, height, "yuv420p"
    encoder.bit_rate = 5_000_000
    encoder.time_base = Fraction(1, 30)
    encoder.framerate = Fraction(30, 1)
    decoder = av.CodecContext.create("vp8", "r")
    out: list[np.ndarray] = []
    packets = []
    for pts, rgb in enumerate(frames):
        frame = av.VideoFrame.from_ndarray(rgb, format="rgb24").reformat(format="yuv420p")
        frame.pts = pts
        packets.extend(encoder.encode(frame))
    packets.extend(encoder.encode(None))
    for packet in packets:
        out.extend(f.to_ndarray(format="rgb24") for f in decoder.decode(packet))
    return out


@pytest.mark.parametrize(("width", "height"), [(320, 192), (512, 512)])
def test_stamp_survives_vp8(width: int, height: int) -> None:
    sent = []
    for index in range(6):
        rgb = _busy(height, width, seed=index)
        draw_stamp(rgb, 1000 + index, params_digest({"prompt": f"p{index}", "seed": index}))
        sent.append(rgb)
    received = _vp8_round_trip(sent, width, height)
    assert len(received) == len(sent)
    for index, rgb in enumerate(received):
        assert read_stamp(rgb) == (1000 + index, params_digest({"prompt": f"p{index}", "seed": index}))


def _aiortc_vp8_round_trip(frames: list[np.ndarray]) -> list[np.ndarray]:
    """Through aiortc's own VP8 encoder and decoder (what a WebRTC hop from Scope or the emulator uses)."""
    encoder, decoder = ScopeVp8Encoder(), Vp8Decoder()
    out: list[np.ndarray] = []
    for index, rgb in enumerate(frames):
        frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
        frame.pts, frame.time_base = index * 4500, Fraction(1, 90_000)
        payloads, timestamp = encoder.encode(frame)
        data = b"".join(vp8_depayload(payload) for payload in payloads)
        decoded = decoder.decode(JitterFrame(data, timestamp))
        out.extend(f.to_ndarray(format="rgb24") for f in decoded if isinstance(f, av.VideoFrame))
    return out


def test_stamps_through_aiortcs_vp8_settle_and_never_run_ahead() -> None:
    """A flat picture with four frames per chunk and a new digest from chunk 3 (a case where libvpx's
    denoiser keeps part of the old stamp for two frames): every frame still carries a stamp, a wrong
    reading is only ever an earlier chunk, and each chunk's true stamp is read on frames in a row."""
    truth = [(chunk, params_digest({"s": 42 if chunk < 3 else 7})) for chunk in range(8) for _ in range(4)]
    sent = []
    for chunk, digest in truth:
        rgb = np.full((144, 256, 3), 128, dtype=np.uint8)
        draw_stamp(rgb, chunk, digest)
        sent.append(rgb)
    read = [read_stamp(rgb) for rgb in _aiortc_vp8_round_trip(sent)]
    assert len(read) == len(truth) and None not in read
    assert all(got is not None and got[0] <= want[0] for got, want in zip(read, truth, strict=True))
    settled = settled_stamps(read)
    assert [stamp for i, stamp in enumerate(settled) if i == 0 or stamp != settled[i - 1]] == list(dict.fromkeys(truth))
    assert settled_stamps([(1, 2), None, None, (3, 4), (3, 4), (3, 4), (5, 6)]) == [(3, 4), (3, 4)]


# ---- the emulator's pictures: each kind of change shows, keys the pipeline ignores do not ------------------

INITIAL = {"input_mode": "text", "prompts": [{"text": "neon city", "weight": 1.0}], "base_seed": 42}
W, H = 320, 192
#: The picture area: everything but the stamp (top left) and the strip (bottom).
PICTURE = np.ones((H, W), dtype=bool)
PICTURE[: ROWS * CELL, : COLS * CELL] = False
PICTURE[H - STRIP_HEIGHT :] = False


def picture_change(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a.astype(np.int16) - b.astype(np.int16))[PICTURE].mean())


async def chunks_around(message: dict[str, Any], *, pipeline_id: str = "longlive", start: int = 4,
                        initial: dict[str, Any] | None = None) -> tuple[dict[int, list[np.ndarray]], int]:
    """Run a real chunk loop (fast clock), send ``message`` after ``start`` chunks; the drawn frames by chunk,
    and the chunk the emulator's records say the message was applied in."""
    records = EventRecords(50)
    pipeline = SessionPipeline("s", dict(initial or INITIAL), size=(W, H), facts=catalogue.PIPELINES[pipeline_id],
                               chunk_frames=3, fps=300.0, records=records, emulator_id="t")
    specs: list[FrameSpec] = []

    async def drain() -> None:
        while True:
            item = pipeline.next_output()
            if item is None:
                pipeline.changed.clear()
                await pipeline.changed.wait()
            else:
                specs.append(item)

    tasks = [asyncio.create_task(pipeline.run()), asyncio.create_task(drain())]
    try:
        await wait_for(lambda: pipeline.chunk_index >= start, 5, "the first chunks", interval=0.002)
        pipeline.receive(message)
        await wait_for(lambda: records.applied, 5, "the message applied", interval=0.002)
        chunk = records.applied[-1]["chunk"]
        await wait_for(lambda: pipeline.chunk_index >= chunk + 4, 5, "4 chunks more", interval=0.002)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    renderer = FrameRenderer()
    frames: dict[int, list[np.ndarray]] = {}
    for spec in specs:
        frames.setdefault(spec.chunk_index, []).append(renderer.render(spec))
    return frames, chunk


def boundary(frames: dict[int, list[np.ndarray]], chunk: int) -> float:
    """Picture change from the last frame of ``chunk - 1`` to the first of ``chunk``."""
    return picture_change(frames[chunk - 1][-1], frames[chunk][0])


def steady(frames: dict[int, list[np.ndarray]], before: int) -> float:
    """The largest frame-to-frame change while nothing changes (every pair before chunk ``before``)."""
    seq = [image for chunk in sorted(frames) if 0 < chunk < before for image in frames[chunk]]
    return max(picture_change(a, b) for a, b in pairwise(seq))


CHANGES: dict[str, dict[str, Any]] = {
    "prompt blend": {"prompts": [{"text": "neon city", "weight": 0.4}, {"text": "forest at dawn", "weight": 0.6}]},
    "new prompt": {"prompts": [{"text": "forest at dawn", "weight": 1.0}]},
    "transition": {"transition": {"target_prompts": [{"text": "forest at dawn", "weight": 1.0}], "num_steps": 2}},
    "seed step": {"base_seed": 43},
    "denoising preset": {"denoising_step_list": [1000, 250]},
    "cache reset": {"reset_cache": True},
}


@pytest.mark.parametrize("kind", list(CHANGES))
async def test_each_kind_of_change_shows_clearly_above_the_steady_motion(kind: str) -> None:
    frames, chunk = await chunks_around(CHANGES[kind])
    calm = steady(frames, chunk)
    assert 0 < calm < 15  # something always moves, a little
    assert boundary(frames, chunk) > 2.5 * calm, (kind, boundary(frames, chunk), calm)
    # Every frame carries its chunk and the digest of what that chunk used.
    digests = {}
    for c, images in frames.items():
        (stamp,) = {read_stamp(image) for image in images}
        assert stamp is not None and stamp[0] == c
        digests[c] = stamp[1]
    assert digests[chunk] != digests[chunk - 1]
    # A one-shot counts for the chunk that consumed it only; anything else stays in the state.
    assert (digests[chunk + 1] == digests[chunk - 1]) == (kind == "cache reset")
    after, later = boundary(frames, chunk + 1), boundary(frames, chunk + 2)
    if kind == "transition":  # a transition goes on changing, chunk by chunk, for its num_steps (2)
        assert after > 2.5 * calm and later < 2 * calm
    else:  # the others change once, then the picture moves as before
        assert max(after, later) < 2 * calm


async def test_the_kinds_of_change_look_different() -> None:
    """A reset flashes white; a seed keeps the prompt's colours; a new prompt brings others; a denoising preset
    changes the picture by rows (its scanline texture); a transition shows its progress bar."""
    looks = {}
    for kind in CHANGES:
        frames, chunk = await chunks_around(CHANGES[kind])
        looks[kind] = (frames[chunk - 1][-1].astype(np.int16), frames[chunk][0].astype(np.int16))
    before, flash = looks["cache reset"]
    assert flash[PICTURE].mean() > 230 and before[PICTURE].mean() < 200

    def colour_shift(kind: str) -> float:
        a, b = looks[kind]
        return float(np.abs(a[PICTURE].mean(axis=0) - b[PICTURE].mean(axis=0)).max())

    assert colour_shift("new prompt") > 2 * colour_shift("seed step")
    assert colour_shift("denoising preset") < 8

    def row_contrast(kind: str) -> float:
        """How unevenly the change falls on rows: the 75th over the 25th percentile of per-row change."""
        a, b = looks[kind]
        rows = np.abs(a - b)[ROWS * CELL : H - STRIP_HEIGHT].mean(axis=(1, 2))
        low, high = np.percentile(rows, [25, 75])
        return float(high / max(low, 1.0))

    assert row_contrast("denoising preset") > 4 and row_contrast("new prompt") < 3 and row_contrast("seed step") < 3
    progress = looks["transition"][1][H - STRIP_HEIGHT - PROGRESS_HEIGHT : H - STRIP_HEIGHT]
    assert progress[:, : W // 2 - 2].min() == 255 and progress[:, W // 2 + 2 :].max() == 0  # step 1 of 2


@pytest.mark.parametrize(("pipeline_id", "message"), [
    ("longlive", {"noise_scale": 0.9}),  # text mode: defaults.py forces it to None
    ("longlive", {"noise_controller": False}),
    ("longlive", {"kv_cache_attention_bias": 0.3}),  # krea reads it; longlive does not
])
async def test_keys_the_pipeline_ignores_in_its_mode_change_only_the_stamp(pipeline_id: str,
                                                                             message: dict[str, Any]) -> None:
    key = next(iter(message))
    assert catalogue.PIPELINES[pipeline_id].ignored("text", {key}) == [key]
    frames, chunk = await chunks_around(message, pipeline_id=pipeline_id)
    quiet, _ = await chunks_around({"unread_marker": 1}, pipeline_id=pipeline_id)
    for c in (chunk, chunk + 1):
        for with_key, without in zip(frames[c], quiet[c], strict=True):
            assert np.array_equal(with_key[PICTURE], without[PICTURE])
            assert read_stamp(with_key) != read_stamp(without)  # the digest says what was sent
    assert boundary(frames, chunk) < 1.5 * steady(frames, chunk)


# ---- end to end: stamps read from frames received over real WebRTC -------------------------------------------


async def test_received_frames_show_the_chunk_each_message_was_applied_in(
    make_emulator: EmulatorFactory, http: httpx.AsyncClient, peers: Callable[..., ClientPeer]
) -> None:
    emu = await make_emulator(chunk_frames=4, fps=20.0)
    await load(http, emu)
    peer = peers()
    session_id = await peer.connect(http, emu.url, TEXT_OFFER)
    await peer.frames_after(6, wait_s=15)

    async def send_and_see(message: dict[str, Any]) -> tuple[int, list[tuple[int, int]]]:
        """Send ``message``; its applied chunk and the settled stamps of the frames received until two chunks later."""
        known = len(await applied_for(http, emu, session_id))
        peer.send(message)
        entry = (await wait_for(lambda: _nth_applied(http, emu, session_id, known), 10, "the message applied"))
        chunk = entry["chunk"]
        await wait_for(lambda: any(s and s[0] > chunk + 1 for s in map(read_stamp, _images(peer)[-3:])), 10,
                       "frames of later chunks")
        stamps = [read_stamp(image) for image in _images(peer)]
        assert None not in stamps  # every frame, through VP8
        return chunk, settled_stamps(stamps)

    chunk, stamps = await send_and_see({"base_seed": 7})
    changed = next(now for before, now in pairwise(stamps) if now[1] != before[1])
    assert changed[0] == chunk  # the first frame showing the message is from the chunk it was applied in
    applied = (await http.get(emu.url + "/_emulator/metrics")).json()["parameters"]
    assert applied["base_seed"] == 7 and changed[1] == params_digest(applied)
    # A one-shot is in the digest of the one chunk that consumed it, then the state is as before.
    reset_chunk, stamps = await send_and_see({"reset_cache": True})
    digests = {c: d for c, d in stamps}
    assert digests[reset_chunk] == params_digest({**applied, "reset_cache": True})
    before = [d for c, d in stamps if c < reset_chunk][-1]  # the reset empties the output queue: maybe not c - 1
    assert before == digests[reset_chunk + 1] == params_digest(applied)


def _images(peer: ClientPeer) -> list[np.ndarray]:
    return [image for _, image in peer.frames]


async def _nth_applied(http: httpx.AsyncClient, emu: ScopeEmulator, session_id: str, n: int) -> dict[str, Any] | None:
    entries = await applied_for(http, emu, session_id)
    return entries[n] if len(entries) > n else None
