"""Where the beat is: a beat-pointer hidden Markov model, filtered forward one hop at a time (issue 15).

The states are every beat interval ``tau`` in whole hops that the tempo range allows (60-190 BPM: 28-86 hops at
44.1 kHz) times every position ``0..tau-1`` inside the beat, one flat vector (3477 states by default). From hop to hop
the position advances by one, which is a shift of the whole vector; at the end of a beat the tempo may change, with
probability ``exp(-LAMBDA |tau_j / tau_i - 1|)``, so it moves in small steps and only on beats. Under every tempo lies a
floor (TEMPO_FLOOR of the prior, added at every normalisation): without it a tempo far from the held one sank to
1e-20-1e-40 of the probability (traced on real crossfades), and when the music moved there (a DJ's next track, the beat
after a beatless intro the clock had locked on) it won only after many seconds of evidence, or never.
The first tenth of every beat is "a beat", weighted ``exp(OBS_K a)`` by the onset activation ``a`` (more lightly
until just after the first beat: OBS_K_FIRST, OBS_K_EARLY). Every 8 hops the autocorrelation of the last 5 s of
activation weighs each tempo too, which settles the tempo of music whose onsets are not all beats (a walking bass,
a strummed guitar). Until the first beat, when the bands are given, that evidence is a learned score instead
(:mod:`~metadj_bridge.inputs.tempo_score`): the autocorrelations of the activation and of every band group at every
metrical relative of each tempo. The activation's autocorrelation's first short peak is the tatum, the fastest
regular pulse (the sixteenths): a beat is at most four of them, so a half-time reading (a 172 BPM drum-and-bass
track's kick and snare alone sound like 86) loses its evidence to the tempo twice as fast, while a ballad with no
pulse faster than its eighths keeps its slow tempo (the learned score reads the tatum as one of its features). A
beat is at least one pulse: a tempo whose beat does not repeat while two beats do weighs less (band_tempo.unpulsed).

A beat is reported in the hop where the most probable state's position wraps past the end of its beat, so at
most one hop after it happened. The first beat waits for the lock: the best tempo has held within 4% for a
second and the tempi around it carry 60% of the probability. From 3 s after the music starts the 60% is enough,
and from 2.5 s a beat whose next one would come after 3 s locks at once (with the 60%, and when the learned
score gives that tempo at least 15%), so the first beat comes within 3 s whenever the tempo is that clear by
then. Without the learned score's say the tempo is right at the first beat less often: cross-validated on the
development set 40.4% of excerpts against 42.5% with it (51.8% against 54.7% without classical).

The online half of the bar-pointer models of Whiteley et al. (2006) and Krebs et al. (2015), on spectral flux.
"""

from __future__ import annotations

import math

import numpy as np

from metadj_bridge.inputs.band_tempo import BandTempo, oldest_first, tatum_lag, unpulsed, within_entry
from metadj_bridge.inputs.beat_activation import FADE_MAX_S
from metadj_bridge.inputs.tempo_score import tempo_score

#: Tempo change at a beat: probability ~ exp(-LAMBDA * |relative change|).
LAMBDA = 300.0
#: The floor under every tempo: at each normalisation (every 8 hops) this share of the prior is added. Measured
#: against none: between 40 pairs of real development excerpts crossfaded 10-20 BPM apart
#: (``scripts/bench_crossfades.py``) the BPM follows after 4.85 s at the median instead of 5.55 s, never on 8
#: instead of 10 (within 2 s on 9 both), beat F after the midpoint 0.727 instead of 0.713; after 8 s of a beatless
#: intro the clock locks on (noise, wind, a vibrato pad; ``scripts/bench.py audio``, 24 cases) and a generated beat,
#: the beat's tempo wins after 5.2 s at the median instead of 6.1 s (a hip-hop beat's after 15.0 s instead of 26.1
#: s, at most 16.9 s instead of never in its 42 s), beat F from its entry 0.898 instead of 0.855. The cost: beat F
#: on the 228 development excerpts 0.652 instead of 0.654 (0.823 instead of 0.826 without classical, in range; 27
#: excerpts move by more than 0.01, 18 of them down), downbeat F cross-validated 0.355 both; generated tracks and
#: transitions unchanged. A floor of 1e-20, 1e-16, 1e-12, 1e-10: beat F 0.654, 0.652, 0.651, 0.650 (non-classical
#: 0.824, 0.825, 0.821, 0.814), after the intros 0.882, 0.893, 0.909, 0.915 (the tempo winning after 5.6, 5.4, 4.5,
#: 4.1 s), the crossfades followed after 4.93, 4.93, 4.47, 4.10 s (never on 10, 10, 9, 9; within 2 s on 9, 9, 8, 7).
TEMPO_FLOOR = 1e-14
#: The share of every beat that counts as "on the beat", as 1 / OBS_BEAT_SHARE of it. Beat F on the development set
#: (December 2026; 0.655): 1/16 or 1/6, 0.643 or 0.639; OBS_K 4 or 9, 0.653 or 0.649; LAMBDA 150 or 600, 0.655 or 0.647.
OBS_BEAT_SHARE = 10.0
#: Beat states are weighted exp(OBS_K * activation); before the first beat exp(OBS_K_FIRST * activation), then rising
#: from OBS_K_EARLY to OBS_K over the OBS_RAMP_S after it. The first second or two of onsets fits beat grids at many
#: tempi, and at full weight they outvoted the tempo evidence (the learned score) with whichever grid they happened to
#: fit, the more so the more the start of the stream stood out (``scripts/bench_realmusic.py``, "the music begun another
#: way": from the stream's first sample, 256 or 448 samples into a hop after digital silence, a 0.2 s fade-in). At full
#: weight the tempo was right at the first beat on 39.0%, 34.6%, 28.9% and 32.0% of the 228 development excerpts; at 1.5
#: throughout on 39.5%, 37.3%, 38.2% and 33.3%, beat F 0.651-0.653 and 0.638 faded in. Tried then: 1.0 or 2.0 throughout
#: (39.6%, 36.4%; at 1.0 a generated held-out track's first beat at double tempo), no rise after the first beat (a
#: generated hip-hop and half-time drum-and-bass track flip octave for a few beats), a rise over 2 or 4 s (downbeat F
#: 0.345, 0.355 against 0.352). Since the entry is capped (ENTRY_S), 1.0 before the first beat and the rise from 1.5
#: (``bench_realmusic.py``): the tempo right at the first beat from the first sample, 256 and 448 samples into a hop,
#: faded in, and at 48 kHz 47.8%, 44.7%, 45.2%, 36.4% and 44.7% instead of 43.4%, 42.1%, 43.4%, 33.8% and 43.0%
#: (non-classical in range from the first sample 70.7% instead of 66.4%); beat F 0.655, 0.651, 0.653, 0.643, 0.651
#: instead of 0.654, 0.651, 0.655, 0.646, 0.652; downbeat F 0.359, 0.365, 0.360, 0.340, 0.344 instead of 0.357, 0.348,
#: 0.343, 0.342, 0.356. On the generated tracks the tempo is right at 12 of 13 first beats as before, the first beat
#: 1.75 s after the music starts at the median instead of 1.50 s. Before the first beat 1.25: 43.9%, 0.75: 45.2% (mean
#: of the first sample and 256 in, against 46.3% at 1.0); LEARNED_GAIN 0.2 or 0.45 with it, the rise from 1.0: no gain.
OBS_K = 6.0
OBS_K_FIRST = 1.0
OBS_K_EARLY = 1.5
OBS_RAMP_S = 4.0
#: Autocorrelation tempo evidence: seconds of activation, every so many hops from 2 s into the music (from its first
#: onset, as the model, which waits for it; counted from the stream's start, the development set's excerpts begun on
#: their one after 2 s of silence had the tempo right at the first beat on 43.9%, not 47.4%), and its exponent; from
#: the first beat a smaller one (the tempo is found by then; the evidence only settles it between octaves, and a
#: lighter hand holds the grid steadier: downbeat F 0.298 to 0.317, cross-validated over ACF_GAIN_BEATING 0-0.3).
ACF_S = 5.0
ACF_EVERY = 8
ACF_GAIN = 0.3
ACF_GAIN_BEATING = 0.15
#: Below this mean square of the activation (an RMS of 0.01) the autocorrelation is only rounding noise, which
#: its normalisation would blow up into tempo evidence (a held tone locked after 10 s without it).
ACF_MIN_POWER = 1e-4
#: The autocorrelation's tempo prior: a log-normal around ACF_PRIOR_BPM, ACF_PRIOR_OCTAVES wide (one sigma).
ACF_PRIOR_BPM = 120.0
ACF_PRIOR_OCTAVES = 1.0
#: The tatum rule: the fastest regular pulse in the activation (the first autocorrelation peak from TATUM_MIN_LAG hops
#: that reaches band_tempo.TATUM_MIN_ACF of the zero lag, read from TATUM_MIN_S of music on) divides a beat at most
#: TATUM_MAX_PER_BEAT times (sixteenths, with room for a hop's rounding). A longer beat, whose sixteenths would be 32nds
#: (a half-time reading), lends its evidence to its double and is weighted TATUM_PENALTY on top of the weakest evidence.
TATUM_MIN_LAG = 5
TATUM_MIN_S = 3.0
TATUM_MAX_PER_BEAT = 4.5
TATUM_PENALTY = 0.3
#: The learned score's evidence before the first beat: (probability relative to the best + floor) ** gain.
LEARNED_FLOOR = 0.05
LEARNED_GAIN = 0.3
#: ... and a tempo whose beat does not repeat while two of its beats do (band_tempo.unpulsed) times this.
UNPULSED_PENALTY = 0.5
#: The lock: the best tempo holds (within LOCK_TOLERANCE) for LOCK_S, the tempi LOCK_WINDOW blocks around it LOCK_MASS.
LOCK_S = 1.0
LOCK_TOLERANCE = 0.04
LOCK_MASS = 0.6
LOCK_WINDOW = 2
#: The first beat comes by this long after the music starts (the activation first above 0.1; issue 15 asks for
#: 3 s, less a margin for the hop and the start): from then on the lock asks only for LOCK_MASS, and before it a
#: beat whose next one would come after it locks at once on the best tempo so far, when that tempo holds
#: LOCK_FIRST_MASS and the activation is rhythmic at all (its autocorrelation at the best interval at least
#: LOCK_FIRST_RHYTHM of its power: a held tone's first onset alone is not). On the development set's 228 excerpts
#: the first beat comes within 3 s on 99.1% instead of 77.2% (when such a beat also needed LOCK_MASS and a share
#: of the learned score's probability, from 2.5 s on); the tempo at it is right on 37.7% instead of 42.5%, but the
#: first beat is both in time and at the right tempo on 36.8% instead of 34.6%, and beat F is unchanged (0.654).
#: Not kept: the rule only from 2.4 s on (96.5% in time, 39.0% right, 37.3% both; LOCK_FIRST_MASS 0.35 or 0.5
#: there, 93% and 91% in time, no more right). Since: a beat whose next one would come after LOCK_LAST_S locks
#: whatever the mass (the best tempo can change from beat to beat until then), and an unrhythmic start locks at
#: LOCK_MASS (a jazz excerpt, 97% sure of its tempo from 2.5 s, beat at 3.15 s).
LOCK_DEADLINE_S = 2.9
LOCK_FIRST_MASS = 0.2
LOCK_FIRST_RHYTHM = 0.02
LOCK_LAST_S = 3.0
#: The music's entry: a stream that begins in the middle of the music (a file, the bridge started mid-song, play
#: pressed after silence) opens with a rise in every band while the first frame fills, the activation at its top
#: for a few hops and several times louder than the beats after it. In the autocorrelations that one onset
#: outweighed the beats' repeat at every tempo, and the prior chose (clicks after such an entry were right at the
#: first beat 1 time in 21). Its first ENTRY_S are heard there at most band_tempo.ENTRY_CAP of the highest other
#: hop; the beats still weigh them in full (a loop's first kick is its first beat). On the development set's 228
#: excerpts, three starts each (the stream's first sample, 256 and 448 samples into a hop), with the tempo score
#: learned again on the same hearing: the tempo right at the first beat on 43.0% instead of 38.3% (non-classical
#: in range 64.1% instead of 58.6%), beat F 0.653 (0.652), downbeat F 0.349 (0.355). Silenced: 44.3%, a generated
#: hip-hop track read at 168 not 84; capped at 0.25: 44.6%, a generated waltz at double; at 1: 40.5%.
ENTRY_S = 0.07
#: ... and a fade-in (the beat bands' sum rising every hop from the music's start, at most
#: beat_activation.FADE_MAX_S: the figures are there) is an entry too, and its hops are not weighed as beats.
#: The BPM the clock reads before its beats have a line of their own (``refined_bpm``): the model's tempo (its
#: blocks' mean around the best, 4-8% off at the first beat on 12 of the development set's 228 excerpts then) and
#: the autocorrelation's peak within REFINE_WIDTH of it, once REFINE_BEATS of its beats are heard, the peak
#: weighed REFINE_SHARE (two noisy readings of one tempo: each was off where the other was right). The tempo right
#: at the first beat from the first sample, 256 and 448 samples into a hop, faded in and at 48 kHz, on average
#: (``bench_realmusic.py``): 46.2% against 44.8% with the peak alone and 45.4% with the model alone (share 0.3, 0.7:
#: 46.3%, 45.8%); beat F unchanged. Only until the line first exists: after a DJ's crossfade the autocorrelation
#: still hears the old track, and two real crossfades were followed a second or more later.
REFINE_WIDTH = 0.05
REFINE_BEATS = 2.0
REFINE_SHARE = 0.5
#: A tempo change called from outside (``move_tempo``): the tempi get a bell this wide (relative, one sigma).
MOVE_WIDTH = 0.02
#: ... and the phase in each is weighed by the activation of the last MOVE_BEATS beats.
MOVE_BEATS = 4.0


class BeatHMM:
    """Feed ``step(activation)`` once per hop; it returns True in the hop where a beat falls."""

    def __init__(self, fps: float, min_bpm: float, max_bpm: float) -> None:
        self.fps = fps
        lo = int(math.floor(60.0 * fps / max_bpm))
        hi = int(math.ceil(60.0 * fps / min_bpm))
        taus = np.arange(max(lo, 2), hi + 1)
        self.taus = taus
        self._starts = np.concatenate([[0], np.cumsum(taus)[:-1]]).astype(int)
        self._ends = self._starts + taus - 1
        n = int(taus.sum())
        self._block = np.repeat(np.arange(len(taus)), taus)
        pos = np.arange(n) - self._starts[self._block]
        self._phase = pos / taus[self._block]
        self._beat_states = np.nonzero(pos < np.maximum(1, taus[self._block] / OBS_BEAT_SHARE))[0]
        ratio = taus[None, :] / taus[:, None]
        transition = np.exp(-LAMBDA * np.abs(ratio - 1.0))
        self._transition = transition / transition.sum(axis=1, keepdims=True)
        init = (1.0 / taus)[self._block]
        self._alpha = init / init.sum()
        self._floor = TEMPO_FLOOR * self._alpha
        self._spare = np.empty(n)
        self._acf_n = int(round(ACF_S * fps))
        self._ring = np.zeros(self._acf_n)
        self._entry = np.zeros(self._acf_n, bool)
        self._ring_pos = 0
        self._nfft = 1 << int(math.ceil(math.log2(2 * self._acf_n)))
        self._bands = BandTempo(self._acf_n, self._nfft)
        self._acf_prior = np.exp(-0.5 * (np.log2(60.0 * fps / taus / ACF_PRIOR_BPM) / ACF_PRIOR_OCTAVES) ** 2)
        self._lock_hops = int(round(LOCK_S * fps))
        self._deadline_hops = int(round(LOCK_DEADLINE_S * fps))
        self._entry_hops = int(round(ENTRY_S * fps))
        self._fade_hops = int(round(FADE_MAX_S * fps))
        #: The learned score's last probabilities per tempo (None until it has been read).
        self._learned_p: np.ndarray | None = None
        #: How rhythmic the activation is, as last read for tempo evidence: its autocorrelation at the best beat
        #: interval relative to its power (0 until read; about 0 for a held tone after its first onset, 0.17 at
        #: the median of the development set's excerpts at their first beat).
        self._rhythm = 0.0
        self._music_start: int | None = None
        #: A fade-in so far (the beat bands' sum has risen every hop since the music started), and that sum.
        self._fading = True
        self._level = 0.0
        self.frames = 0
        self.best_block = 0
        self.locked = False
        self._stable = 0
        self._ref_tau = 0
        self._previous_phase: float | None = None
        self._last_beat_frame = -(10**9)
        self._first_beat_frame = 0
        #: After ``move_tempo`` the autocorrelation still hears the old tempo: it waits until its window has passed.
        self._acf_resume = 0
        #: Hops written into the activation ring (this hop's included, from the moment it is written).
        self._written = 0

    def step(self, a: float, bands: np.ndarray | None = None) -> bool:
        """``bands``: the activation's compressed spectrum this hop (``HopFeatures.beat_bands``), read until the
        first beat for the tempo evidence of every band; without it the summed activation's is used throughout."""
        before_first_beat = self._last_beat_frame < 0
        if self._music_start is None and a > 0.1:
            self._music_start = self.frames
        since = self.frames - self._music_start if self._music_start is not None else -1
        if self._fading and since >= 0:
            level = float(bands.sum()) if bands is not None else 0.0
            self._fading = level > self._level and since < self._fade_hops
            self._level = level
        fading = self._fading and since >= self._entry_hops
        entering = 0 <= since < self._entry_hops or fading
        if bands is not None and before_first_beat:
            self._bands.push(bands, counted=not entering)
        alpha, new = self._alpha, self._spare
        if since < 0:  # no music yet: the model waits for it, with the prior it started with
            new[:] = alpha
        else:
            new[1:] = alpha[:-1]
            new[self._starts] = alpha[self._ends] @ self._transition
        self._ring[self._ring_pos] = a
        self._entry[self._ring_pos] = entering
        self._ring_pos = (self._ring_pos + 1) % self._acf_n
        self._written += 1
        if since % ACF_EVERY == 0 and since > 2 * self.taus[-1] and self.frames >= self._acf_resume:
            if bands is not None and before_first_beat:
                self._weigh_by_learned_score(new)
            else:
                self._weigh_by_autocorrelation(new)
        if before_first_beat:
            k = OBS_K_FIRST
        else:
            beating = (self.frames - self._first_beat_frame) / self.fps
            k = OBS_K if beating >= OBS_RAMP_S else OBS_K_EARLY + (OBS_K - OBS_K_EARLY) * beating / OBS_RAMP_S
        if not fading and since >= 0 and a > 0.0:  # (most hops have none: a weight of 1, left out)
            new[self._beat_states] *= math.exp(k * a)
        if self.frames % 8 == 0:
            total = new.sum()
            if not total > 0.0:  # cannot happen with finite input; start again rather than carry NaN
                new[:] = 1.0 / len(new)
            else:
                new /= total
                new += self._floor
        self._alpha, self._spare = new, alpha
        self.frames += 1
        best = int(new.argmax())
        phase = float(self._phase[best])
        block = int(self._block[best])
        self.best_block = block
        beat = False
        if self._previous_phase is not None and since >= 0:
            if not self.locked:
                self._check_lock(block)
            wrapped = phase < self._previous_phase and phase < 0.5
            if wrapped and not self.locked and self._beat_before_deadline(block):
                self.locked = True
            if wrapped and self.locked and self.frames - self._last_beat_frame >= 0.6 * self.taus[block]:
                beat = True
                if self._last_beat_frame < 0:
                    self._first_beat_frame = self.frames
                self._last_beat_frame = self.frames
        self._previous_phase = phase
        return beat

    def _weigh_by_autocorrelation(self, new: np.ndarray) -> None:
        full = self._acf_of_last(self._acf_n)
        if full[0] < ACF_MIN_POWER * self._acf_n:  # no onsets worth the name (a held tone, a fade): no evidence
            return
        if not self.locked:  # read by the first lock only
            self._rhythm = float(full[self.taus].max() / full[0])
        score = np.maximum(full[self.taus], 0.0)
        tatum, too_long = self._tatum(full), None
        if tatum is not None:  # the tatum rule; a half-time reading's evidence is its double's
            longest = TATUM_MAX_PER_BEAT * tatum
            too_long = self.taus > longest
            halved = (2 * self.taus > longest) & ~too_long
            score[halved] = np.maximum(score[halved], full[2 * self.taus[halved]])
            score[too_long] = 0.0
        score *= self._acf_prior
        top = score.max()
        if top > 0.0:
            weight = (score / top + 0.05) ** (ACF_GAIN if self._last_beat_frame < 0 else ACF_GAIN_BEATING)
            if too_long is not None:
                weight[too_long] *= TATUM_PENALTY
            new *= weight[self._block]

    def _weigh_by_learned_score(self, new: np.ndarray) -> None:
        """Before the first beat: the learned score of :mod:`~metadj_bridge.inputs.tempo_score` from the music so
        far (at most the last ACF_S), its probabilities relative to the best one's as the evidence."""
        inputs = self.learned_inputs()
        if inputs is None:
            return
        score = tempo_score(*inputs[:3], self.taus, self.fps, inputs[3])
        self._rhythm = float(inputs[0][self.taus].max() / inputs[0][0])
        relative = np.exp(score - score.max())
        self._learned_p = relative / relative.sum()
        weight = (relative + LEARNED_FLOOR) ** LEARNED_GAIN
        weight[unpulsed(inputs[0], self.taus)] *= UNPULSED_PENALTY
        new *= weight[self._block]

    def learned_inputs(self) -> tuple[np.ndarray, np.ndarray, int, float | None] | None:
        """What the learned tempo score reads from the hops heard so far: the autocorrelations of the activation
        and of every band group over the music's last ``n`` hops (at most ACF_S), ``n``, and the tatum (from
        TATUM_MIN_S of music on); None before enough music (or with too little in it). The bands are only kept
        until the first beat. ``scripts/train_tempo.py`` computes the same from recorded features."""
        music = self._written - self._music_start if self._music_start is not None else 0
        n = min(music, self._acf_n)
        if n < 2 * self.taus[0]:
            return None
        act = self._acf_of_last(n)
        if act[0] < ACF_MIN_POWER * n:  # no onsets worth the name: no evidence
            return None
        longest = int(self.taus[-1] / TATUM_MAX_PER_BEAT) + 1
        tatum = tatum_lag(act, TATUM_MIN_LAG, longest) if music >= TATUM_MIN_S * self.fps else None
        return act, self._bands.acfs(n), n, tatum

    def _tatum(self, full: np.ndarray) -> float | None:
        """``tatum_lag`` of the window's autocorrelation ``full``, from TATUM_MIN_S of music on; until the music
        fills the window, of the music's own autocorrelation (the silence before it bends the curve)."""
        music = self.frames - self._music_start if self._music_start is not None else 0
        if music < TATUM_MIN_S * self.fps:
            return None
        if music < self._acf_n:
            full = self._acf_of_last(music)
        return tatum_lag(full, TATUM_MIN_LAG, int(self.taus[-1] / TATUM_MAX_PER_BEAT) + 1)

    def _acf_of_last(self, n: int) -> np.ndarray:
        """The autocorrelation (zero lag first) of the activation's last ``n`` hops, their mean removed."""
        part = oldest_first(self._ring, self._ring_pos)[-n:]
        if self._music_start is not None and self.frames - self._music_start < self._acf_n + self._entry_hops:
            part = within_entry(part, oldest_first(self._entry, self._ring_pos)[-n:])  # the entry may be in the window
        spectrum = np.fft.rfft(part - part.mean(), self._nfft)
        return np.fft.irfft(spectrum.real**2 + spectrum.imag**2, self._nfft)

    def _window(self, block: int) -> tuple[int, int]:
        """The blocks within LOCK_WINDOW of ``block``, as a slice's bounds."""
        return max(0, block - LOCK_WINDOW), min(len(self.taus), block + LOCK_WINDOW + 1)

    def _block_mass(self) -> np.ndarray:
        mass = np.add.reduceat(self._alpha, self._starts)
        return mass / max(float(mass.sum()), 1e-300)

    def _check_lock(self, block: int) -> None:
        tau = int(self.taus[block])
        if self._ref_tau and abs(tau / self._ref_tau - 1.0) <= LOCK_TOLERANCE:
            self._stable += 1
        else:
            self._stable, self._ref_tau = 0, tau
        late = self._music_start is not None and self.frames - self._music_start >= self._deadline_hops
        if self._stable < self._lock_hops and not late:
            return
        lo, hi = self._window(block)
        if self._block_mass()[lo:hi].sum() >= LOCK_MASS:
            self.locked = True

    def _beat_before_deadline(self, block: int) -> bool:
        """A beat now whose next one would come after the deadline (or a beat after it), when the activation is
        rhythmic (LOCK_FIRST_RHYTHM) and the tempo has LOCK_FIRST_MASS (any, when the next beat would come after
        LOCK_LAST_S; LOCK_MASS when not rhythmic): lock now, so that the first beat comes before the deadline."""
        if self._music_start is None:
            return False
        if self.frames - self._music_start + self.taus[block] <= self._deadline_hops:
            return False
        lo, hi = self._window(block)
        mass = self._block_mass()[lo:hi].sum()
        if self._rhythm < LOCK_FIRST_RHYTHM:
            return bool(mass >= LOCK_MASS)
        last = self.frames - self._music_start + self.taus[block] > LOCK_LAST_S * self.fps
        return bool(last or mass >= LOCK_FIRST_MASS)

    def move_tempo(self, period: float, beats_ago: np.ndarray | None = None) -> None:
        """A tempo change called from outside (a DJ's transition, :mod:`~metadj_bridge.inputs.tempo_change`): the tempi
        get a narrow bell around ``period`` hops (MOVE_WIDTH), and in each the phase is weighed afresh by the last
        MOVE_BEATS beats of activation as this model weighs every hop (the old phase only knew the old tempo's beats),
        or by ``beats_ago`` (hops ago: a held grid's). The autocorrelation, hearing the old tempo, waits its window."""
        bell = np.exp(-0.5 * (np.log(self.taus / period) / MOVE_WIDTH) ** 2)
        blocks = np.nonzero(bell > 1e-6)[0]
        n = min(self._acf_n, int(round(MOVE_BEATS * period)), self.frames)
        if len(blocks) == 0:
            return
        recent = (oldest_first(self._ring, self._ring_pos)[::-1][:n] if beats_ago is None  # recent[d]: d hops ago
                  else np.bincount(beats_ago[(beats_ago >= 0) & (beats_ago < n)], minlength=n)[:n].astype(float))
        ages = np.arange(n)
        self._alpha[:] = 0.0
        for b in blocks:
            tau = int(self.taus[b])
            on = np.arange(max(1, int(tau / OBS_BEAT_SHARE)))
            # The state now at position p was at (p - d) mod tau d hops ago: on the beat when that is in ``on``.
            where = ((on[:, None] + ages[None, :]) % tau).ravel()
            score = np.bincount(where, np.tile(recent, len(on)), minlength=tau)
            weight = np.exp(OBS_K * (score - score.max()))
            start = self._starts[b]
            self._alpha[start : start + tau] = bell[b] * weight / weight.sum()
        self._alpha /= self._alpha.sum()
        best = int(self._alpha.argmax())
        self.best_block = int(self._block[best])
        self._previous_phase = float(self._phase[best])
        self._stable, self._ref_tau = 0, int(self.taus[self.best_block])
        self._acf_resume = self.frames + self._acf_n

    def tempo_bpm(self) -> float:
        """The best state's tempo, refined by the probability of the tempi beside it (finer than whole hops)."""
        block = self.best_block
        lo, hi = self._window(block)
        mass = self._block_mass()[lo:hi]
        tau = float((mass * self.taus[lo:hi]).sum() / max(float(mass.sum()), 1e-300))
        return 60.0 * self.fps / tau

    def refined_bpm(self) -> float:
        """``tempo_bpm`` weighed with the autocorrelation's highest peak within REFINE_WIDTH of it (between whole
        hops, from the parabola through the peak and its neighbours) over the last ACF_S of music since the last
        ``move_tempo``; the model's own tempo when no peak lies inside that range or before REFINE_BEATS beats."""
        model = self.tempo_bpm()
        tau = 60.0 * self.fps / model
        start = self._music_start if self._music_start is not None else self._written
        heard = min(self._written - max(start, self._acf_resume - self._acf_n), self._acf_n)
        if heard < REFINE_BEATS * tau:
            return model
        acf = self._acf_of_last(heard)[: int(tau * (1 + REFINE_WIDTH)) + 2]
        acf /= heard - np.arange(len(acf))  # each lag's mean product, not its sum: no slope towards lag 0
        lo, hi = int(math.floor(tau * (1 - REFINE_WIDTH))), int(math.ceil(tau * (1 + REFINE_WIDTH)))
        k = lo + int(np.argmax(acf[lo : hi + 1]))
        if not lo < k < hi or acf[k] <= 0.0:
            return model
        y0, y1, y2 = acf[k - 1], acf[k], acf[k + 1]
        den = y0 - 2.0 * y1 + y2
        peak = k + (0.5 * (y0 - y2) / den if den < 0.0 else 0.0)
        return model ** (1.0 - REFINE_SHARE) * (60.0 * self.fps / peak) ** REFINE_SHARE

    def confidence(self) -> float:
        """The probability of the best tempo block (0..1)."""
        return float(self._block_mass().max())

