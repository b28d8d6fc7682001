"""A breakdown heard in the low band: the kicks and the bass gone, while the BeatClock's flywheel keeps time (issue 15).

Two followers of the low band's flux (``HopFeatures.beat_low``), over about a second and about 8 s. A breakdown is the
first under BREAKDOWN_RATIO of the second, outside the hops the caller holds it off for (the first BREAKDOWN_AFTER_S of
music, the seconds after another beat was followed in one).

In a breakdown the slow follower still falls towards what is heard, but not under BREAKDOWN_HOLD of what it was when
the breakdown began. Without that floor a breakdown as long as a DJ's (16-32 bars) became the new normal after about
half a minute: on a generated house track with a 32-bar breakdown (62 s of pads and hats) the flywheel let go after
31 s, and the model, hearing only the hats (off the beat, in house), put the beats half a beat off until a second
after the drop. With it the breakdown lasts until the kick comes back (a drop, or a build-up's snare roll), or until
another beat is followed, or the music stops; a bar without bass in a reggae or rock song still ends with it.
``lasted`` tells the caller how long the one that just ended was (``tempo.BREAKDOWN_RESEAT_S``).

Pure: one low-band value per hop in, the state out.
"""

from __future__ import annotations

#: A breakdown: the low band's flux over about a second under BREAKDOWN_RATIO of its mean over about 8 s (and not in
#: the first BREAKDOWN_AFTER_S of music).
BREAKDOWN_RATIO = 0.4
BREAKDOWN_AFTER_S = 4.0
#: In a breakdown the 8 s mean stays at least this share of what it was when the breakdown began.
BREAKDOWN_HOLD = 0.1


class BreakdownWatch:
    """Feed ``hop(index, low)`` once per hop; ``active`` is True in a breakdown."""

    def __init__(self, hop_s: float) -> None:
        self.hop_s = hop_s
        self._recent_alpha = hop_s / 1.0
        self._long_alpha = hop_s / 8.0
        self.recent = 0.0
        self.long = 1e-9
        self._before = 1e-9
        self._began = 0
        self._hop = 0
        self.active = False
        #: The hop from which a breakdown can be heard (not in the first seconds of music, nor just after a new beat).
        self.not_before = int(BREAKDOWN_AFTER_S / hop_s) + 1

    def hop(self, index: int, low: float) -> None:
        """The low band's flux of hop ``index`` (the caller's count)."""
        self._hop = index
        self.recent += self._recent_alpha * (low - self.recent)
        self.long += self._long_alpha * (low - self.long)
        if self.active:  # however long it lasts, it is not the new normal
            self.long = max(self.long, BREAKDOWN_HOLD * self._before)
        else:
            self._before, self._began = self.long, index
        self.active = self.recent < BREAKDOWN_RATIO * self.long and index >= self.not_before

    def hold_off(self, until: int) -> None:
        """No breakdown before hop ``until`` (the music begins: its first seconds are not one)."""
        self.not_before = max(self.not_before, until)

    def restart(self) -> None:
        """A new start after a silence: its low band is learnt afresh (and the breakdown it ends has lasted nothing:
        the next song is no drop of the last one's)."""
        self.recent = self.long = self._before = 0.0
        self._began = self._hop

    def new_normal(self, until: int) -> None:
        """Another beat was followed in the breakdown: the low band heard now is the new normal, and no breakdown is
        heard before hop ``until`` (the old track's bass is still fading from the mean)."""
        self.long = self.recent
        self.active = False
        self.not_before = until

    def lasted(self) -> float:
        """Seconds since the breakdown (or the one that just ended) began."""
        return (self._hop - self._began) * self.hop_s
