"""Is the music coming in too quietly? One warning that says how quiet and what to turn up.

An input far below full scale (a line input with its gain down, a loopback at low system volume) leaves the
energy and band meters near zero, so the picture hardly moves, and the beat tracking hears less: on the
development set's 137 non-classical excerpts played 30 and 40 dB down (about -50 and -60 dBFS), beat F fell from
0.784 to 0.769 and 0.753 and the tempo was right at the first beat on 55.5% and 51.8% instead of 61.3%. Nothing
on stage says why; this watch does.

Per hop, the RMS the extractor measured, averaged per second over the hops that are not silent (under
SILENT_RMS: a stopped player, a muted channel, a lost device, which other warnings cover). When the loudest second
of the last WINDOW_S (with at least MIN_SOUND_S of sound in it) is under the quiet level, one warning. The loudest
second, so that a quiet intro or breakdown in a set played at a good level is not taken for a gain turned down.

The quiet level is QUIET_BELOW_DB under the RMS the meters read as full (``AnalysisConfig.energy_max``, -16.5 dBFS
by default: quiet under -36.5 dBFS) or, with ``auto_gain``, AUTO_BELOW_DB under the follower's floor, where the
meters stop following the level (-40 dBFS by default: quiet under -46 dBFS). When the loudest second is RECOVER_DB
above it again, one line says so, and the next quiet spell warns again (at most once every REPEAT_S).
"""

from __future__ import annotations

import logging
import math
from collections import deque

__all__ = ["LevelWatch"]

log = logging.getLogger(__name__)
_PROBLEM = {"problem": "audio input quiet"}  # the status shows problem() while it lasts, not the log line

WINDOW_S = 30.0
MIN_SOUND_S = 5.0
SILENT_RMS = 1e-4  # -80 dBFS
QUIET_BELOW_DB = 20.0
AUTO_BELOW_DB = 6.0
RECOVER_DB = 6.0
REPEAT_S = 60.0
_BLOCK_S = 1.0


def dbfs(rms: float) -> float:
    return 20.0 * math.log10(max(rms, 1e-12))


class LevelWatch:
    """``hop(t, rms)`` once per hop (the worker thread); ``problem()`` while the input is quiet, for the status."""

    def __init__(self, hop_s: float, full_rms: float, *, auto_gain: bool = False) -> None:
        """``full_rms``: the RMS the meters read as 1 (``energy_max``), or with ``auto_gain`` the follower's floor."""
        self.quiet_rms = full_rms * 10.0 ** (-(AUTO_BELOW_DB if auto_gain else QUIET_BELOW_DB) / 20.0)
        self._fix = ("set analysis: {auto_gain: true} in the profile, or turn its gain up" if not auto_gain
                     else "turn its gain up (or the volume of what feeds it)")
        self._per_block = max(1, int(round(_BLOCK_S / hop_s)))
        self._hop_s = hop_s
        self._blocks: deque[tuple[float, int]] = deque(maxlen=int(round(WINDOW_S / _BLOCK_S)))
        self._power = 0.0
        self._sounding = 0
        self._hops = 0
        self.quiet = False
        self.level_dbfs: float | None = None
        self._warned_at = -math.inf

    def hop(self, t: float, rms: float) -> None:
        if rms >= SILENT_RMS:
            self._power += rms * rms
            self._sounding += 1
        self._hops += 1
        if self._hops < self._per_block:
            return
        self._blocks.append((self._power, self._sounding))
        self._power, self._sounding, self._hops = 0.0, 0, 0
        self._judge(t)

    def _judge(self, t: float) -> None:
        if sum(n for _, n in self._blocks) * self._hop_s < MIN_SOUND_S:
            return
        seconds = [math.sqrt(p / n) for p, n in self._blocks if n * 2 >= self._per_block]  # half of it sounding
        if not seconds:
            return
        loudest = max(seconds)
        self.level_dbfs = dbfs(loudest)
        if loudest < self.quiet_rms and not self.quiet:
            self.quiet = True
            if t - self._warned_at >= REPEAT_S:
                self._warned_at = t
                log.warning("the audio input is quiet: its loudest second in the last %g s was %.0f dBFS, so the "
                            "meters read it near zero and the beat is harder to hear; %s", WINDOW_S,
                            self.level_dbfs, self._fix, extra=_PROBLEM)
        elif loudest >= self.quiet_rms * 10.0 ** (RECOVER_DB / 20.0) and self.quiet:
            self.quiet = False
            log.info("the audio input is at %.0f dBFS again", self.level_dbfs)

    def problem(self) -> str | None:
        if not self.quiet or self.level_dbfs is None:
            return None
        return f"the audio input is quiet ({self.level_dbfs:.0f} dBFS): {self._fix}"
