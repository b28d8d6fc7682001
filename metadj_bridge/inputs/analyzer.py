"""Audio to signals: a worker thread runs the analysis, the event loop gets the results.

    source (file or device) ──► worker thread: FeatureExtractor ─► BeatClock ──► call_soon_threadsafe
                                                                               └─► event loop: SignalBoard

The worker never touches the loop except through ``call_soon_threadsafe``. Continuous values follow the
"latest wins" rule: if the loop is busy, newer hops replace older ones and only one delivery is pending
at a time, but no beat, onset, drop or breakdown is ever lost, they are carried along with the latest values.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from metadj_bridge.errors import RateLimitedWarning
from metadj_bridge.inputs.analysis import FeatureExtractor, HopFeatures
from metadj_bridge.inputs.analysis_config import AnalysisConfig
from metadj_bridge.inputs.audio_tap import AudioTap
from metadj_bridge.inputs.buildup import BuildupTracker
from metadj_bridge.inputs.level_watch import LevelWatch
from metadj_bridge.inputs.sections import SectionEvent, SectionTracker
from metadj_bridge.inputs.tempo import BeatClock, BeatEvent, TempoConfig
from metadj_bridge.signals import AUDIO_SIGNALS, InputSink, Signal, TempoReading, Trigger

log = logging.getLogger(__name__)


class BlockSource(Protocol):
    """What ``inputs.audio`` sources offer (see its module docstring)."""

    samplerate: int
    hop_size: int

    def start(self) -> None: ...
    def read(self, timeout: float | None = None) -> Any: ...
    def close(self) -> None: ...


@dataclass(frozen=True, slots=True)
class Onset:
    t: float
    strength: float


@dataclass(frozen=True, slots=True)
class AudioUpdate:
    """The newest analysis state plus every beat and onset since the previous delivery."""

    features: HopFeatures
    bpm: float
    confidence: float
    phase: float
    bar_position: float
    locked: bool
    beats: tuple[BeatEvent, ...]
    onsets: tuple[Onset, ...]
    #: time.monotonic() when the newest block's audio arrived (PortAudio callback, or a file's due time).
    captured_at: float | None
    #: time.monotonic() when the worker finished analysing it.
    analysed_at: float
    #: Hops analysed so far and hops merged into this delivery.
    hops: int
    merged: int
    #: 1.0 in a full section, 0.0 in a breakdown (``inputs.sections``), and every drop, breakdown and build-up
    #: since the previous delivery.
    section: float = 1.0
    sections: tuple[SectionEvent, ...] = ()
    #: How far a build-up has risen, 0..1 (``inputs.buildup``; 0 outside one).
    tension: float = 0.0
    #: The bar the grid counts (``BeatClock.beats_per_bar``: the configured one, or the metre it hears).
    beats_per_bar: int = 4


class AudioAnalyzer:
    """Owns the worker thread for one audio source. ``start()`` on the loop, ``aclose()`` when done."""

    def __init__(
        self,
        source: BlockSource,
        *,
        analysis: AnalysisConfig | None = None,
        tempo: TempoConfig | None = None,
        on_update: Callable[[AudioUpdate], None] | None = None,
    ) -> None:
        self.source = source
        self._configs = (analysis, tempo)
        self._fresh_analysis()
        if self.extractor.hop_size != source.hop_size:
            raise ValueError(
                f"source hop {source.hop_size} does not match the analysis hop {self.extractor.hop_size} "
                f"at {source.samplerate} Hz"
            )
        self.on_update = on_update
        #: Every block read, as it is heard (a recording subscribes to put the music beside the video).
        self.tap = AudioTap(source.samplerate, source.hop_size)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._latest: AudioUpdate | None = None
        self._beats: list[BeatEvent] = []
        self._onsets: list[Onset] = []
        self._sections: list[SectionEvent] = []
        self._merged = 0
        self._scheduled = False
        self._hops = 0
        self.finished: asyncio.Future[None] | None = None
        self.error: BaseException | None = None
        self._listener_warning = RateLimitedWarning(log, "audio update listener errors")
        self._fault_warning = RateLimitedWarning(log, "audio analysis faults (it started afresh each time)")
        config = analysis or AnalysisConfig()
        self.level = LevelWatch(source.hop_size / source.samplerate,
                                config.auto_gain_floor if config.auto_gain else config.energy_max,
                                auto_gain=config.auto_gain)

    def _fresh_analysis(self) -> None:
        """The analysis from its first hop: features, beat clock, sections and build-up."""
        analysis, tempo = self._configs
        hop_s = self.source.hop_size / self.source.samplerate
        self.extractor = FeatureExtractor(self.source.samplerate, analysis)
        self.clock = BeatClock(hop_s, tempo)
        self.sections = SectionTracker(hop_s)
        self.buildup = BuildupTracker(hop_s)

    async def start(self) -> None:
        if self._thread is not None:
            return
        self._loop = asyncio.get_running_loop()
        self.finished = self._loop.create_future()
        await asyncio.to_thread(self.source.start)
        self._thread = threading.Thread(target=self._work, name="audio-analysis", daemon=True)
        self._thread.start()

    def problems(self) -> list[str]:
        """The source's own (a live input that is lost), for the performer's status."""
        problems = getattr(self.source, "problems", None)
        found = list(problems()) if callable(problems) else []
        quiet = self.level.problem()
        return found + [quiet] if quiet else found

    async def aclose(self) -> None:
        """Stop the worker and close the source; safe to call twice."""
        self._stop.set()
        await asyncio.to_thread(self.source.close)
        thread, self._thread = self._thread, None
        if thread is not None:
            await asyncio.to_thread(thread.join, 5.0)
        if self.finished is not None and not self.finished.done():
            self.finished.set_result(None)

    # ---------------------------------------------------------------- worker thread

    def _work(self) -> None:
        try:
            while not self._stop.is_set():
                try:
                    block = self.source.read(timeout=0.5)
                except TimeoutError:
                    continue
                if block is None:
                    break
                self.tap.publish(block)
                try:
                    self._analyse(block)
                except Exception as exc:  # a fault in the analysis itself: it starts afresh, the show goes on
                    self._fault_warning.listener_failed(self._analyse, exc)
                    self._fresh_analysis()
        except BaseException as exc:  # reported on the loop; the thread must not die silently
            self.error = exc
            log.error("audio analysis stopped: %s", exc, exc_info=True)
        finally:
            self._flush_final()

    def _analyse(self, block: Any) -> None:
        features = self.extractor.process(block.samples)
        self.level.hop(features.t, features.rms)
        beats = self.clock.process(features)
        self._hops += 1
        t = features.t
        sections = self.sections.process(t, features.flux_low, features.rms,
                                         self.clock.bpm if self.clock.locked else 0.0)
        sections += self.buildup.process(t, features.rms, features.centroid_hz, features.onset,
                                         self.sections.section < 0.5)
        update = AudioUpdate(
            features=features,
            bpm=self.clock.bpm,
            confidence=self.clock.confidence,
            phase=self.clock.phase(t),
            bar_position=self.clock.bar_position(t),
            locked=self.clock.locked,
            beats=(),
            onsets=(),
            captured_at=getattr(block, "captured_at", None),
            analysed_at=time.monotonic(),
            hops=self._hops,
            merged=0,
            section=self.sections.section,
            tension=self.buildup.tension,
            beats_per_bar=self.clock.beats_per_bar,
        )
        with self._lock:
            self._latest = update
            self._beats.extend(beats)
            self._sections.extend(sections)
            if features.onset:
                onset_t = features.onset_t if features.onset_t is not None else t
                self._onsets.append(Onset(onset_t, features.onset_strength))
            self._merged += 1
            if self._scheduled:
                return
            self._scheduled = True
        assert self._loop is not None
        try:
            self._loop.call_soon_threadsafe(self._deliver)
        except RuntimeError:  # the loop is closed: nobody is listening any more
            self._stop.set()

    def _flush_final(self) -> None:
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(self._finish)

    # ---------------------------------------------------------------- event loop

    def _take(self) -> AudioUpdate | None:
        with self._lock:
            self._scheduled = False
            latest = self._latest
            if latest is None:
                return None
            update = dataclasses.replace(
                latest, beats=tuple(self._beats), onsets=tuple(self._onsets), merged=self._merged,
                sections=tuple(self._sections),
            )
            self._latest = None
            self._beats.clear()
            self._onsets.clear()
            self._sections.clear()
            self._merged = 0
            return update

    def _deliver(self) -> None:
        update = self._take()
        if update is not None and self.on_update is not None:
            try:
                self.on_update(update)
            except Exception as exc:  # up to 86 times a second: one traceback, then a count
                self._listener_warning.listener_failed(self.on_update, exc)

    def _finish(self) -> None:
        self._deliver()
        if self.finished is not None and not self.finished.done():
            if self.error is not None:
                self.finished.set_exception(self.error)
            else:
                self.finished.set_result(None)


def audio_values(update: AudioUpdate) -> dict[str, float]:
    """One update's continuous values under their signal names (``signals.AUDIO_SIGNALS``, in that order)."""
    f = update.features
    values = (f.energy, f.centroid, f.flatness_norm, f.low, f.mid, f.high, update.bpm, update.phase, update.section,
              update.tension)
    return {name: float(value) for name, value in zip(AUDIO_SIGNALS, values, strict=True)}


def deliver(update: AudioUpdate, sink: InputSink) -> None:
    """Hand one update to ``sink`` in the mapping vocabulary (design.md): values, onsets, beats, drops and
    breakdowns, and the beat tracker's grid as a tempo reading once it has locked."""
    t = update.features.t
    for name, value in audio_values(update).items():
        sink.set(Signal(name, value, t))
    events: list[tuple[float, Trigger]] = [
        (o.t, Trigger("audio.onset", o.t, {"strength": o.strength})) for o in update.onsets
    ]
    events += [
        (b.t, Trigger("audio.beat", b.t,
                      {"bpm": b.bpm, "confidence": b.confidence, "index": b.index, "beat_in_bar": b.beat_in_bar}))
        for b in update.beats
    ]
    events += [(s.t, Trigger(f"audio.{s.kind}", s.t, {"seconds": s.seconds})) for s in update.sections]
    for _, trigger in sorted(events, key=lambda e: e[0]):
        sink.fire(trigger)
    reading = audio_reading(update, time.monotonic(), update.beats_per_bar)
    if reading is not None:
        sink.tempo(reading)


def audio_reading(update: AudioUpdate, now: float, beats_per_bar: int = 4) -> TempoReading | None:
    """The audio BeatClock's grid as a reading on the monotonic clock, or None before it locks.

    ``update.features.t`` (seconds of audio) is the end of the newest hop, whose audio arrived at
    ``update.captured_at`` (monotonic); without a capture time, ``now`` stands in for it. The beat is the
    position in the bar; the arbiter unwraps it across bars.
    """
    if not update.locked or not (update.bpm > 0):
        return None
    t = update.captured_at if update.captured_at is not None else now
    return TempoReading(
        source="audio",
        bpm=float(update.bpm),
        t=t,
        beat=float(update.bar_position),
        beats_per_bar=beats_per_bar,
        playing=True,
    )
