"""The BeatClock's arbiter: one beat grid out of many tempo sources.

Sources hand in ``TempoReading`` values (Link, MIDI clock, OSC tempo, the audio beat tracker). A source is
*live* while its readings keep arriving (within its freshness window) and it says it is playing; the
highest-priority live source (``SOURCE_PRIORITY``) steers the output.

The output never jumps. Each time the steering grid changes (a switch of source, a tempo change, a source
re-timing its beats) the output blends from where it is, beat position and tempo, onto the new grid with a
cubic Hermite curve: position and tempo are continuous at both ends. The new grid is aligned to the nearest
whole beat of the output (at most half a beat to make up), and the blend lasts ``phase_slew_beats`` beats. The
reported tempo glides over the same blend, in a straight line: the beats and the BPM are on the new grid together,
however far the tempo moved. Measured with the audio tracker's readings hop by hop on the 224 development excerpts
with downbeats (GTZAN; ``tempo.beat`` against the annotated beats, +-70 ms after 5 s), beat F 0.638 against the
tracker's own 0.659; 0.621 with a blend of 2 beats, 0.586 when the blend lasted as long as the tempo's ramp at
4 BPM a beat (an octave corrected from 80 to 160 BPM kept the beats between the two grids for 20 beats). The tempo
hub counts a beat when the output reaches it or the steering grid does (``lead``), whichever comes first: on the 228
excerpts of ``scripts/devset_sources.tsv`` beat F 0.644 against 0.635 when only the output counted (the tracker's
own 0.655), as the tracker's beat that comes early re-times its grid and the output's phase takes a beat to follow. The
show's BPM follows the 40 real crossfades of ``scripts/bench_crossfades.py`` within 2 s of the midpoint on 6
(after 5.3 s at the median, never on 7), against 5 (5.8 s, never on 8) when it glided at most 16 BPM a beat, which
took seconds through tempi nobody played after a jump of an octave or between two tracks, and 4 (6.9 s, never on
12) at 4 BPM a beat; the tracker's own BPM on 8 (4.85 s, never on 7). ``max_bpm_step_per_beat`` still slews a
source's tempo changes when a caller asks for it.
A performer can say where the one is (``pin_downbeat``, the control page's and OSC's ``downbeat``): the bars
then begin on that beat, whatever the source's own bars say, until another source steers or the tempo moves by
more than PIN_RELEASE. A source without beat positions (OSC tempo) only sets the tempo; the output keeps its own
phase. A reading outside 20-999 BPM, or with a beat position beyond ``MAX_BEAT``, is refused (one rate-limited
line): it would otherwise stretch the grid beyond float precision and freeze it.

Pure: readings and times in, state out. No threads or I/O besides log lines; the caller passes ``now``.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field

from metadj_bridge.errors import ConfigError, RateLimitedWarning
from metadj_bridge.signals import SOURCE_PRIORITY, TempoReading, TempoState, tempo_problem

__all__ = ["ArbiterConfig", "TempoArbiter"]

log = logging.getLogger(__name__)

#: Seconds without a reading after which a source stops counting as live.
DEFAULT_FRESHNESS = {"link": 0.5, "midi_clock": 0.5, "osc": 3.0, "audio": 2.0}

#: The performer's one (``TempoArbiter.pin_downbeat``) holds until the steering tempo moves by more than this share
#: (another track; a tracker's readout wanders by a percent or two).
PIN_RELEASE = 0.04


@dataclass
class ArbiterConfig:
    freshness: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_FRESHNESS))
    #: How long a blend onto a new grid lasts, in beats.
    phase_slew_beats: float = 1.0
    #: Largest change of the reported tempo per beat (BPM per beat), gliding over the blend at least; None: it
    #: glides over the blend, with the beats.
    max_bpm_step_per_beat: float | None = None
    #: Bar length until a source says otherwise.
    beats_per_bar: int = 4
    #: A reading that moves the steering grid by less than this (in beats, now) is not a change.
    tolerance_beats: float = 0.01
    #: The sources that may steer, best first (a show profile's ``inputs.tempo.prefer``); others are ignored.
    priority: tuple[str, ...] = SOURCE_PRIORITY

    def __post_init__(self) -> None:
        for name, seconds in self.freshness.items():
            if name not in SOURCE_PRIORITY:
                raise ConfigError(f"tempo freshness: unknown source {name!r} (known: {', '.join(SOURCE_PRIORITY)})")
            if not seconds > 0:
                raise ConfigError(f"tempo freshness for {name}: {seconds} s must be > 0")
        for name in SOURCE_PRIORITY:
            self.freshness.setdefault(name, DEFAULT_FRESHNESS[name])
        unknown = [name for name in self.priority if name not in SOURCE_PRIORITY]
        if unknown or not self.priority or len(set(self.priority)) != len(self.priority):
            raise ConfigError(
                f"tempo sources {list(self.priority)}: "
                f"list each of {', '.join(SOURCE_PRIORITY)} at most once, at least one"
            )
        if not self.phase_slew_beats > 0:
            raise ConfigError(f"phase_slew_beats {self.phase_slew_beats}: must be > 0")
        if self.max_bpm_step_per_beat is not None and not self.max_bpm_step_per_beat > 0:
            raise ConfigError(f"max_bpm_step_per_beat {self.max_bpm_step_per_beat}: must be > 0")
        if not 1 <= self.beats_per_bar <= 16:
            raise ConfigError(f"beats_per_bar {self.beats_per_bar}: must be 1-16")


@dataclass(frozen=True, slots=True)
class _Grid:
    """A straight beat line: beat(t) = beat0 + (t - t0) * bpm / 60."""

    t0: float
    beat0: float
    bpm: float

    def beat(self, t: float) -> float:
        return self.beat0 + (t - self.t0) * self.bpm / 60.0


@dataclass(frozen=True, slots=True)
class _Blend:
    """Output = target(t) + offset + a Hermite tail that starts at (r0, v0) and ends at zero over T."""

    ts: float
    duration: float
    target: _Grid
    #: Whole-beat alignment between the target's beats and the output's.
    offset: float
    r0: float
    v0: float
    #: The reported tempo ramps from bpm0 to the target's over ramp_s (the blend, or max_bpm_step_per_beat's).
    bpm0: float
    ramp_s: float

    def bpm(self, t: float) -> float:
        u = (t - self.ts) / self.ramp_s if self.ramp_s > 0 else 1.0
        if u >= 1.0:
            return self.target.bpm
        return self.bpm0 + (self.target.bpm - self.bpm0) * max(u, 0.0)

    def beat(self, t: float) -> float:
        base = self.target.beat(t) + self.offset
        u = (t - self.ts) / self.duration
        if u >= 1.0:
            return base
        u = max(u, 0.0)
        h00 = 2 * u**3 - 3 * u**2 + 1
        h10 = u**3 - 2 * u**2 + u
        return base + self.r0 * h00 + self.v0 * self.duration * h10

    def rate(self, t: float) -> float:
        """Beats per second."""
        base = self.target.bpm / 60.0
        u = (t - self.ts) / self.duration
        if u >= 1.0:
            return base
        u = max(u, 0.0)
        d00 = (6 * u**2 - 6 * u) / self.duration
        d10 = 3 * u**2 - 4 * u + 1
        return base + self.r0 * d00 + self.v0 * d10


class TempoArbiter:
    """Picks the steering tempo source and gives a continuous beat grid. Feed ``update()``, read ``state()``."""

    def __init__(self, config: ArbiterConfig | None = None) -> None:
        self.config = config or ArbiterConfig()
        self._latest: dict[str, TempoReading] = {}
        self._source: str | None = None
        self._blend: _Blend | None = None
        self._bar_origin = 0.0
        #: The performer's one: an output beat where a bar begins, and the tempo then (None: the source's bars).
        self._pin: tuple[float, float] | None = None
        self._beats_per_bar = self.config.beats_per_bar
        self._t = -math.inf
        self._refused = RateLimitedWarning(log, "tempo readings refused")

    # ------------------------------------------------------------------ input

    def update(self, reading: TempoReading) -> None:
        """Take one reading; its ``t`` is the time it was true (and, for the arbiter, when it arrived)."""
        if reading.source not in SOURCE_PRIORITY:
            raise ValueError(f"tempo reading from unknown source {reading.source!r}")
        problem = tempo_problem(reading.bpm, reading.beat)
        if problem is not None:  # one absurd reading (1e30 BPM) would otherwise freeze the grid until restart
            self._refused.note(f"{reading.source}: {problem}; the beat grid keeps its tempo")
            return
        reading = self._unwrap(reading)
        self._latest[reading.source] = reading
        now = max(reading.t, self._t)
        self._select(now)
        if reading.source == self._source:
            self._follow(reading, now)

    def _unwrap(self, reading: TempoReading) -> TempoReading:
        """Sources that count beats within the bar wrap around; a jump by whole bars is no change."""
        prev = self._latest.get(reading.source)
        if prev is None or prev.beat is None or reading.beat is None:
            return reading
        bpb = reading.beats_per_bar or prev.beats_per_bar
        if not bpb:
            return reading
        predicted = prev.beat + (reading.t - prev.t) * prev.bpm / 60.0
        bars = round((predicted - reading.beat) / bpb)
        if bars == 0:
            return reading
        return TempoReading(
            reading.source, reading.bpm, reading.t, reading.beat + bars * bpb, reading.beats_per_bar, reading.playing
        )

    # ------------------------------------------------------------------ output

    def state(self, now: float) -> TempoState:
        self._select(now)
        self._t = max(self._t, now)
        blend = self._blend
        if blend is None:
            return TempoState(0.0, 0.0, 0.0, 0.0, self._beats_per_bar, None, False)
        beat = blend.beat(now)
        bpb = self._beats_per_bar
        return TempoState(
            bpm=blend.bpm(now),
            beat=beat,
            phase=beat % 1.0,
            bar_position=(beat - self._origin()) % bpb,
            beats_per_bar=bpb,
            source=self._source,
            playing=self._source is not None,
        )

    @property
    def source(self) -> str | None:
        return self._source

    def lead(self, now: float) -> float:
        """How many beats the steering source's grid is ahead of the output at ``now`` (0 when it is not): what the
        output's blend still has to make up after the source moved its beats earlier. Read after ``state(now)``."""
        blend = self._blend
        if blend is None or self._source is None:
            return 0.0
        ahead = blend.target.beat(now) + blend.offset - blend.beat(now)
        return ahead if ahead > 0.0 else 0.0

    def time_at_beat(self, beat: float, now: float) -> float:
        """When the output reaches ``beat``, assuming no new readings; ``now`` if there is no tempo."""
        blend = self._blend
        if blend is None or blend.target.bpm <= 0:
            return now
        t = now + (beat - blend.beat(now)) / max(blend.rate(now), 1e-6)
        for _ in range(20):  # Newton on a monotone, nearly straight curve: a few steps suffice
            rate = max(blend.rate(t), 1e-6)
            step = (beat - blend.beat(t)) / rate
            t += step
            if abs(step) < 1e-7:
                break
        return t

    def next_beat_time(self, now: float) -> float:
        """The time of the first whole beat after ``now``."""
        if self._blend is None:
            return now
        b = self._blend.beat(now)
        return self.time_at_beat(math.floor(b) + 1.0, now)

    def beats_between(self, t0: float, t1: float) -> list[tuple[float, float]]:
        """Whole beats with t0 < time <= t1, as (beat, time) pairs: for firing beat triggers."""
        if self._blend is None or t1 <= t0:
            return []
        first = math.floor(self._blend.beat(t0)) + 1
        last = math.floor(self._blend.beat(t1))
        return [(float(b), self.time_at_beat(float(b), t0)) for b in range(first, last + 1)]

    def quantize(self, now: float, to: str = "beat", lookahead_s: float = 0.0) -> float:
        """When to *send* an action so it lands on the next beat or bar, given ``lookahead_s`` of latency.

        The landing is the first boundary at or after ``now + lookahead_s``; the answer is that boundary
        minus the lookahead, never before ``now``. Without a tempo the answer is ``now``.
        """
        if to not in ("beat", "bar"):
            raise ValueError(f"quantize to {to!r}: must be 'beat' or 'bar'")
        if lookahead_s < 0:
            raise ValueError(f"lookahead {lookahead_s} s: must be >= 0")
        if self._blend is None:
            return now
        self._select(now)
        land = now + lookahead_s
        b = self._blend.beat(land)
        eps = 1e-6
        if to == "beat":
            target = float(math.ceil(b - eps))
        else:
            bpb = self._beats_per_bar
            origin = self._origin()
            target = origin + math.ceil((b - origin - eps) / bpb) * bpb
        return max(now, self.time_at_beat(target, land) - lookahead_s)

    def pin_downbeat(self, now: float) -> bool:
        """A performer says where the one is: the whole beat of the output nearest ``now`` begins a bar, whatever the
        source's bars say, until another source steers or the tempo moves by more than PIN_RELEASE (another track).
        False when there is no grid yet."""
        self._select(now)
        if self._blend is None:
            return False
        self._pin = (float(round(self._blend.beat(now))), self._blend.target.bpm)
        return True

    def _origin(self) -> float:
        return self._pin[0] if self._pin is not None else self._bar_origin

    def _release_pin(self, why: str) -> None:
        if self._pin is not None:
            self._pin = None
            log.info("tempo: the downbeat set by hand is let go (%s); the bars are the source's again", why)

    # ------------------------------------------------------------------ switching

    def _live(self, name: str, now: float) -> bool:
        r = self._latest.get(name)
        return r is not None and r.playing and now - r.t <= self.config.freshness[name]

    def _select(self, now: float) -> None:
        chosen = next((name for name in self.config.priority if self._live(name, now)), None)
        if chosen == self._source:
            return
        old, self._source = self._source, chosen
        if chosen is None:
            bpm = self._blend.target.bpm if self._blend is not None else 0.0
            log.info("tempo source: %s -> none (holding %.1f BPM)", old or "none", bpm)
            return
        reading = self._latest[chosen]
        log.info("tempo source: %s -> %s (%.1f BPM)", old or "none", chosen, reading.bpm)
        self._release_pin(f"{chosen} steers")
        self._follow(reading, max(now, reading.t), force=True)

    def _follow(self, reading: TempoReading, now: float, force: bool = False) -> None:
        """Blend the output onto the grid ``reading`` describes, starting at ``now``."""
        if reading.beats_per_bar:
            self._beats_per_bar = reading.beats_per_bar
        if self._pin is not None and abs(reading.bpm / self._pin[1] - 1.0) > PIN_RELEASE:
            self._release_pin(f"the tempo moved to {reading.bpm:.1f} BPM")
        blend = self._blend
        if blend is None:
            # The very first grid: nothing to be continuous with.
            if reading.beat is None:
                target = _Grid(reading.t, 0.0, reading.bpm)
            else:
                target = _Grid(reading.t, reading.beat, reading.bpm)
                self._bar_origin = 0.0
            self._blend = _Blend(now, 1.0, target, 0.0, 0.0, 0.0, reading.bpm, 0.0)
            self._t = max(self._t, now)
            return
        out_beat = blend.beat(now)
        out_rate = blend.rate(now)
        if reading.beat is None:
            # Tempo only: the target runs through the output's own position.
            target = _Grid(now, out_beat, reading.bpm)
            offset = 0.0
            if not force and abs(reading.bpm - blend.target.bpm) < 1e-3:
                return
        else:
            target = _Grid(reading.t, reading.beat, reading.bpm)
            offset = float(round(out_beat - target.beat(now)))
            if not force and self._same_line(blend, target, offset, now):
                return
            # The new source's downbeats are the truth for the bar (it may move by whole beats).
            self._bar_origin = offset
        r0 = out_beat - (target.beat(now) + offset)
        v0 = out_rate - reading.bpm / 60.0
        bpm0 = blend.bpm(now)
        blend_s = self.config.phase_slew_beats * 60.0 / reading.bpm
        step = self.config.max_bpm_step_per_beat
        ramp_s = blend_s
        if step is not None:
            # beats at the slower end: never too steep; and never faster than the beats move onto the new grid
            ramp_s = max(abs(bpm0 - reading.bpm) / step * 60.0 / min(bpm0, reading.bpm), blend_s)
        self._blend = _Blend(now, blend_s, target, offset, r0, v0, bpm0, ramp_s)
        self._t = max(self._t, now)

    def _same_line(self, blend: _Blend, target: _Grid, offset: float, now: float) -> bool:
        """Does the new grid agree with the one being followed (now and a beat from now)?"""
        if abs(offset - blend.offset) > 0.5:
            return False
        tol = self.config.tolerance_beats
        later = now + 60.0 / target.bpm
        old = blend.target
        return (
            abs(target.beat(now) + offset - old.beat(now) - blend.offset) < tol
            and abs(target.beat(later) + offset - old.beat(later) - blend.offset) < tol
        )
