"""Frame drawing for the emulator: pictures that visibly follow the parameters the pipeline reads.

A performer rehearsing a mapping has to *see* each parameter take effect, and tests have to tell
the changes apart from the decoded video, so each kind of change has its own look:

- a prompt is a colour pair and a pattern (from a stable hash of the text); weights blend those pictures;
- a transition cross-fades them chunk by chunk, with a progress bar above the strip;
- a ``base_seed`` step keeps the prompt's colours but changes the composition (pattern kind and offset);
- ``denoising_step_list`` sets a texture level: dark scanlines, coarser with fewer steps and stronger for
  higher timesteps (less refined), so any change to the list shows;
- a cache reset flashes white and restarts the motion;
- grain shows ``noise_scale`` only where the pipeline reads it (video mode; text mode forces it to None);
- in video mode the input frame is the picture, with grain, flash and strip on top (no seed composition or
  texture, so the input stays recognisable); a filter's frame is its input (in grey for gray) and the stamp.

Something moves on every frame (a slow scroll and a sweeping bar), a strip at the bottom prints the
prompt and the key values, and every frame large enough (128 x 32 pixels) carries ``stamp.draw_stamp``'s
machine-readable stamp in its top-left corner, drawn last so neither the picture nor the strip covers it.

The machine this runs on has two cores shared with the encoder and the client's decoder, so the
drawing is cheap by construction: each prompt's pattern is built once per size and seed variant (twice
as wide as the frame, so scrolling is a slice rather than a copy), blends are uint16 integer arithmetic,
the noise is one precomputed field sampled at a moving offset, and the text strip is drawn by Pillow
only when its text changes (once per chunk). No clocks, sockets or asyncio here.
"""

from __future__ import annotations

import colorsys
import fractions
import hashlib
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, replace

import av
import numpy as np
from PIL import Image, ImageDraw, ImageFont

from metadj_bridge.emulator.stamp import CELL, COLS, ROWS, draw_stamp

#: RTP video clock, as aiortc's VideoStreamTrack uses.
VIDEO_CLOCK_RATE = 90_000
VIDEO_TIME_BASE = fractions.Fraction(1, VIDEO_CLOCK_RATE)

#: Height of the information strip, in pixels; frames lower than this get no strip.
STRIP_HEIGHT = 14
#: Patterns kept per renderer (one per prompt text, seed variant and size).
PATTERN_CACHE_SIZE = 32
#: Pixels the picture scrolls per frame, and the width of the sweeping bar (fractions of the width).
SCROLL_PER_FRAME = 1
BAR_FRACTION = 0.02
#: Scope's ``base_seed`` when none is sent (also what a pipeline that does not read it shows).
DEFAULT_SEED = 42
#: Compositions per prompt: a seed picks one (``base_seed % SEED_VARIANTS``); neighbouring seeds always differ.
SEED_VARIANTS = 8
#: Darkening of the texture's scanlines, out of 256: the least (timesteps near 0) and the extra at timestep 1000.
TEXTURE_BASE_ALPHA = 64
TEXTURE_SPAN_ALPHA = 112
#: Height of the transition progress bar drawn just above the strip.
PROGRESS_HEIGHT = 4
#: Strongest noise blend, out of 256, reached at noise_scale 1.0 (the picture stays recognisable).
MAX_NOISE_ALPHA = 200
#: The same over an input frame (video mode), kept lower so the input stays recognisable at the default 0.7.
MAX_INPUT_NOISE_ALPHA = 128

_PATTERN_KINDS = ("stripes", "checker", "rings", "gradient")


@dataclass(frozen=True)
class ControllerState:
    """What controller-viz draws: the cursor (accumulated mouse deltas) and the keys held."""

    cursor: tuple[float, float]
    buttons: frozenset[str] = frozenset()


@dataclass(frozen=True)
class FrameSpec:
    """Everything one output frame shows; built by the chunk loop, drawn when the track sends it.

    Drawing is deferred to the moment of sending so that frames nobody reads cost nothing.
    """

    width: int
    height: int
    #: (text, weight) with weights summing to 1; empty shows the "no prompt" picture.
    prompts: tuple[tuple[str, float], ...]
    #: Running frame number of the session: drives the motion.
    frame_number: int
    chunk_index: int
    #: None where the pipeline ignores it (text mode): no grain, and the strip does not mention it.
    noise_scale: float | None = 0.0
    #: 0..1 brightness of the cache-reset flash on this frame.
    flash: float = 0.0
    base_seed: int = DEFAULT_SEED
    #: None where the pipeline does not read it: no texture.
    denoising_steps: tuple[int, ...] | None = None
    #: (step, of) while a prompt transition is in progress.
    transition: tuple[int, int] | None = None
    paused: bool = False
    #: Set for controller-viz, which draws only this (no prompt picture, no strip).
    controller: ControllerState | None = None
    #: Video mode of a generating pipeline: the input frame, drawn with grain, flash and strip on top.
    source: av.VideoFrame | None = None
    #: A filter's output instead: "input" (``source`` as it is) or "gray" (``source`` in grey).
    filter_kind: str = ""
    #: ``params_digest`` of the parameters of the chunk, stamped with ``chunk_index``; None: no stamp.
    digest: int | None = None


def pattern_for(text: str, width: int, height: int, variant: int = 0) -> np.ndarray:
    """The picture of one prompt: (height, 2*width, 3) uint8, periodic with period ``width`` in x.

    The same text always gives the same colours (blake2b of the text, not Python's salted hash),
    so a performer learns which colour means which prompt. ``variant`` (the seed's composition)
    picks the pattern: neighbouring variants always have different pattern kinds. Half of a UTF-16 surrogate pair
    (JSON's ``"\\ud800"`` on the data channel reads as one) is hashed as it came rather than failing the frame.
    """
    digest = hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=16).digest()
    hue = digest[0] / 255.0
    kind = _PATTERN_KINDS[(digest[1] + variant) % len(_PATTERN_KINDS)]
    cycles = 2 + (digest[2] + 2 * (variant // len(_PATTERN_KINDS))) % 5  # repetitions across the frame width
    ycycles = 1 + (digest[3] + variant) % 4
    base = np.array(colorsys.hsv_to_rgb(hue, 0.85, 1.0), dtype=np.float32)
    second = np.array(colorsys.hsv_to_rgb((hue + 0.5) % 1.0, 0.7, 0.45), dtype=np.float32)

    x = np.arange(2 * width, dtype=np.float32)[None, :] / max(width, 1)  # 0..2, period 1
    y = np.arange(height, dtype=np.float32)[:, None] / max(height, 1)
    if kind == "stripes":
        mask = 0.5 + 0.5 * np.sin(2 * np.pi * (cycles * x + ycycles * y))
    elif kind == "checker":
        mask = ((np.floor(cycles * 2 * x) + np.floor(ycycles * 2 * y)) % 2).astype(np.float32)
    elif kind == "rings":
        dx = np.abs((x % 1.0) - 0.5)  # distance on a circle, so the pattern stays periodic
        dy = (y - 0.5) * height / max(width, 1)
        r = np.sqrt(dx * dx + dy * dy)
        mask = 0.5 + 0.5 * np.cos(2 * np.pi * r * (cycles + 2))
    else:  # gradient: a triangle wave across x, shaded by y
        tri = np.abs(((x * cycles) % 1.0) * 2 - 1)
        mask = np.clip(tri * (0.6 + 0.4 * y), 0, 1)
    mask = np.broadcast_to(mask, (height, 2 * width))[..., None]
    image = (base * mask + second * (1 - mask)) * 255.0
    return np.ascontiguousarray(image.astype(np.uint8))


def _blank_pattern(width: int, height: int) -> np.ndarray:
    """The "no prompt" picture: mid grey with a faint grid, so it is clearly not a prompt."""
    image = np.full((height, 2 * width, 3), 96, dtype=np.uint8)
    image[:: max(height // 6, 1), :, :] = 128
    image[:, :: max(width // 8, 1), :] = 128
    return image


class FrameRenderer:
    """Draws ``FrameSpec``s into ``av.VideoFrame``s, caching everything that does not change.

    One renderer per session, used by one task at a time (it may run in a worker thread), so the
    caches need no lock.
    """

    def __init__(self) -> None:
        self._patterns: OrderedDict[tuple[str | None, int, int, int], np.ndarray] = OrderedDict()
        self._noise: dict[tuple[int, int], np.ndarray] = {}
        self._strip_key: tuple[str, int] | None = None
        self._strip: np.ndarray | None = None
        self._font = ImageFont.load_default()

    def render(self, spec: FrameSpec) -> np.ndarray:
        """The frame as an (height, width, 3) uint8 RGB array, stamped when ``spec.digest`` is set."""
        if spec.controller is not None:
            out = draw_controller(spec.width, spec.height, spec.controller)
        elif spec.source is not None and spec.filter_kind:
            out = _filtered(spec.source, spec.filter_kind)
        elif spec.source is not None:
            out = self._over_input(spec, spec.source)
        else:
            out = self._drawn(spec)
        h, w = out.shape[:2]
        if spec.digest is not None and h >= ROWS * CELL and w >= COLS * CELL:
            draw_stamp(out, spec.chunk_index, spec.digest)
        return out

    def _drawn(self, spec: FrameSpec) -> np.ndarray:
        """A generating pipeline's own picture (text mode): prompts, seed, texture, flash, motion and strip."""
        w, h = spec.width, spec.height
        variant = spec.base_seed % SEED_VARIANTS
        shift = (spec.frame_number * SCROLL_PER_FRAME + variant * w // SEED_VARIANTS) % w
        noise_alpha = round(max(0.0, min(1.0, spec.noise_scale or 0.0)) * MAX_NOISE_ALPHA)
        layers = [(self._pattern(text, variant, w, h)[:, shift : shift + w], wt) for text, wt in spec.prompts]
        if not layers:
            layers = [(self._pattern(None, 0, w, h)[:, shift : shift + w], 1.0)]
        if noise_alpha:
            layers.append((self._grain(w, h, spec.frame_number), -1.0))
        out = _mix(layers, noise_alpha)
        _texture(out, spec.denoising_steps)
        out = _flash(out, spec.flash)
        self._draw_bar(out, spec.frame_number)
        if h > STRIP_HEIGHT * 2:
            if spec.transition:
                _draw_progress(out, *spec.transition)
            out[h - STRIP_HEIGHT :] = self._strip_for(spec)
        return out

    def _over_input(self, spec: FrameSpec, source: av.VideoFrame) -> np.ndarray:
        """Video mode: the input picture, grained by ``noise_scale`` (which video mode reads), flash and strip."""
        out = source.to_ndarray(format="rgb24")
        h, w = out.shape[:2]
        alpha = round(max(0.0, min(1.0, spec.noise_scale or 0.0)) * MAX_INPUT_NOISE_ALPHA)
        if alpha:
            out = _mix([(out, 1.0), (self._grain(w, h, spec.frame_number), -1.0)], alpha)
        out = _flash(out, spec.flash)
        if h > STRIP_HEIGHT * 2:
            out[h - STRIP_HEIGHT :] = self._strip_for(replace(spec, width=w, height=h, source=None))
        return out

    def has_patterns(self, spec: FrameSpec) -> bool:
        """True when every picture ``spec`` needs is cached (building one costs 3-50 ms)."""
        if spec.controller is not None or spec.source is not None:
            return True
        texts: list[str | None] = [text for text, _ in spec.prompts] or [None]
        variant = spec.base_seed % SEED_VARIANTS if spec.prompts else 0
        return all((text, variant, spec.width, spec.height) in self._patterns for text in texts)

    def video_frame(self, spec: FrameSpec, pts: int = 0) -> av.VideoFrame:
        """``render`` wrapped as an rgb24 ``av.VideoFrame`` on the 90 kHz clock."""
        return to_video_frame(self.render(spec), pts)

    # ----------------------------------------------------------------------------------------

    def _pattern(self, text: str | None, variant: int, width: int, height: int) -> np.ndarray:
        key = (text, variant, width, height)
        cached = self._patterns.get(key)
        if cached is not None:
            self._patterns.move_to_end(key)
            return cached
        image = _blank_pattern(width, height) if text is None else pattern_for(text, width, height, variant)
        self._patterns[key] = image
        while len(self._patterns) > PATTERN_CACHE_SIZE:
            self._patterns.popitem(last=False)
        return image

    def _grain(self, w: int, h: int, frame_number: int) -> np.ndarray:
        """A (h, w, 1) window of a precomputed noise field, jumping to a new place every frame."""
        field = self._noise.get((w, h))
        if field is None:
            rng = np.random.default_rng(w * 7919 + h)
            field = rng.integers(0, 256, size=(2 * h, 2 * w), dtype=np.uint8)
            self._noise[(w, h)] = field
        oy = (frame_number * 7919) % h
        ox = (frame_number * 104729) % w
        return field[oy : oy + h, ox : ox + w, None]

    @staticmethod
    def _draw_bar(out: np.ndarray, frame_number: int) -> None:
        """A white bar sweeping left to right: consecutive frames always differ."""
        h, w = out.shape[:2]
        bar = max(2, int(w * BAR_FRACTION))
        x0 = (frame_number * max(1, w // 40)) % w
        out[: h - STRIP_HEIGHT if h > STRIP_HEIGHT * 2 else h, x0 : x0 + bar] = 255

    def _strip_for(self, spec: FrameSpec) -> np.ndarray:
        text = strip_text(spec)
        key = (text, spec.width)
        if self._strip_key != key or self._strip is None:
            image = Image.new("L", (spec.width, STRIP_HEIGHT), 0)
            ImageDraw.Draw(image).text((3, 1), text, fill=255, font=self._font)
            grey = np.asarray(image, dtype=np.uint8)
            self._strip = np.repeat(grey[:, :, None], 3, axis=2)
            self._strip_key = key
        return self._strip


def strip_text(spec: FrameSpec) -> str:
    """The one line printed on the frame: prompt first, since that is what a performer checks."""
    if spec.prompts:
        prompt = " + ".join(text if len(spec.prompts) == 1 else f"{text} {wt:.2f}" for text, wt in spec.prompts)
    else:
        prompt = "(no prompt)"
    steps = "-" if spec.denoising_steps is None else str(len(spec.denoising_steps))
    parts = [prompt]
    if spec.noise_scale is not None:
        parts.append(f"noise {spec.noise_scale:.2f}")
    parts += [f"steps {steps}", f"seed {spec.base_seed}", f"chunk {spec.chunk_index}"]
    if spec.transition:
        parts.append(f"transition {spec.transition[0]}/{spec.transition[1]}")
    if spec.paused:
        parts.append("PAUSED")
    return " | ".join(parts)


#: controller-viz's picture (``core/pipelines/controller_viz/pipeline.py``): grey levels out of 255.
_CTRL_BACKGROUND, _CTRL_BORDER, _CTRL_PRESSED = 26, 77, 230
_CTRL_KEYS = (((1, 0), {"KeyW", "ArrowUp"}), ((0, 1), {"KeyA", "ArrowLeft"}), ((1, 1), {"KeyS", "ArrowDown"}),
              ((2, 1), {"KeyD", "ArrowRight"}))


def draw_controller(width: int, height: int, state: ControllerState) -> np.ndarray:
    """controller-viz's frame: four direction keys lower left (filled while held) and a red cursor dot."""
    out = np.full((height, width, 3), _CTRL_BACKGROUND, dtype=np.uint8)
    key, gap, margin, border = 30, 5, 20, 2
    base_y = height - margin - key * 2 - gap
    for (col, row), triggers in _CTRL_KEYS:
        x, y = margin + col * (key + gap), base_y + row * (key + gap)
        if y < 0 or x + key > width:
            continue
        if state.buttons & triggers:
            out[y : y + key, x : x + key] = _CTRL_PRESSED
        else:
            out[y : y + border, x : x + key] = _CTRL_BORDER
            out[y + key - border : y + key, x : x + key] = _CTRL_BORDER
            out[y : y + key, x : x + border] = _CTRL_BORDER
            out[y : y + key, x + key - border : x + key] = _CTRL_BORDER
    dot = 5
    cx, cy = int(state.cursor[0]), int(state.cursor[1])
    out[max(0, cy - dot) : min(height, cy + dot), max(0, cx - dot) : min(width, cx + dot)] = (230, 26, 26)
    return out


def texture_level(steps: tuple[int, ...] | None) -> tuple[int, int]:
    """(scanline band in pixels, darkening out of 256) for a denoising step list; (0, 0) for none.

    Fewer steps give coarser bands (1 px at four or more steps, 8 px at one), higher timesteps
    darker ones, so a change of count or of values shows as a change of texture.
    """
    if not steps:
        return 0, 0
    band = 2 ** max(0, 4 - len(steps))
    mean = sum(max(0, min(1000, t)) for t in steps) / len(steps)
    return band, TEXTURE_BASE_ALPHA + round(TEXTURE_SPAN_ALPHA * mean / 1000)


def _texture(out: np.ndarray, steps: tuple[int, ...] | None) -> None:
    """Darken every other band of rows, in place: the denoising texture."""
    band, alpha = texture_level(steps)
    if not band:
        return
    rows = (np.arange(out.shape[0]) // band) % 2 == 1
    work = out[rows].astype(np.uint16)
    work *= np.uint16(256 - alpha)
    work >>= 8
    out[rows] = work.astype(np.uint8)


def _draw_progress(out: np.ndarray, step: int, of: int) -> None:
    """A transition's progress: a bar just above the strip, white for the part done, black for the rest."""
    h, w = out.shape[:2]
    top = h - STRIP_HEIGHT - PROGRESS_HEIGHT
    done = round(w * min(1.0, step / max(of, 1)))
    out[top : top + PROGRESS_HEIGHT, :done] = 255
    out[top : top + PROGRESS_HEIGHT, done:] = 0


def _filtered(source: av.VideoFrame, kind: str) -> np.ndarray:
    """A filter's frame: the input as it is, or in grey (the gray pipeline), as a fresh RGB array."""
    if kind == "gray":
        grey = source.to_ndarray(format="gray")
        return np.repeat(grey[:, :, None], 3, axis=2)
    return np.array(source.to_ndarray(format="rgb24"))


def _flash(out: np.ndarray, flash: float) -> np.ndarray:
    """Brighten towards white by ``flash`` (0..1): the cache-reset flash."""
    if flash <= 0:
        return out
    alpha = np.uint16(min(256, round(flash * 256)))
    work = out.astype(np.uint16)
    work += ((255 - work) * alpha) >> 8
    return work.astype(np.uint8)


def to_video_frame(image: np.ndarray, pts: int = 0) -> av.VideoFrame:
    """An rgb24 frame with ``pts`` on the 90 kHz clock aiortc's encoders expect."""
    frame = av.VideoFrame.from_ndarray(image, format="rgb24")
    frame.pts = pts
    frame.time_base = VIDEO_TIME_BASE
    return frame


def _mix(layers: Sequence[tuple[np.ndarray, float]], noise_alpha: int) -> np.ndarray:
    """Weighted sum of uint8 layers in one uint16 accumulator.

    Prompt layers carry their weight; the noise layer (weight -1) takes ``noise_alpha`` of 256 and
    the prompts share the rest, so blending and noise cost one pass each.
    """
    prompt_layers = [(img, wt) for img, wt in layers if wt >= 0]
    weights = _integer_weights([wt for _, wt in prompt_layers], 256 - noise_alpha)
    parts = [(img, wt) for (img, _), wt in zip(prompt_layers, weights, strict=True) if wt > 0]
    parts += [(img, noise_alpha) for img, wt in layers if wt < 0]
    if len(parts) == 1 and parts[0][1] == 256:
        return np.ascontiguousarray(parts[0][0])
    first, rest = parts[0], parts[1:]
    acc = first[0].astype(np.uint16)
    if acc.shape[2] == 1:
        acc = np.repeat(acc, 3, axis=2)
    acc *= np.uint16(first[1])
    for img, wt in rest:
        acc += img * np.uint16(wt)
    acc >>= 8
    return acc.astype(np.uint8)


def _integer_weights(weights: Sequence[float], total_units: int = 256) -> list[int]:
    """Weights as integers summing to ``total_units``; all-zero weights count as equal."""
    clean = [max(0.0, float(w)) for w in weights]
    total = sum(clean)
    if total <= 0:
        clean = [1.0] * len(clean)
        total = float(len(clean))
    scaled = [int(w / total * total_units) for w in clean]
    # Give the rounding remainder to the heaviest prompt so the sum is exact.
    heaviest = max(range(len(scaled)), key=lambda i: clean[i])
    scaled[heaviest] += total_units - sum(scaled)
    return scaled
