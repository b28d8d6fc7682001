"""Keeping Scope's queue clear for the drop, so its cache reset shows within one chunk of the kick.

Scope takes one message per chunk, first in first out, and says nothing of when its chunks begin. A message
that went a moment after a chunk began waits in its queue for a whole chunk; a drop's reset sent behind it
then comes a chunk late (measured on a real Scope 0.2.4: the reset 0.8 s after the drop with 0.6 s chunks,
behind the intensity change sent a moment before). Changes and repeats can wait; a drop cannot, and a drop
lands on a downbeat. So during a breakdown (``audio.section`` at 0) the sender sends nothing but actions
from one chunk before each downbeat until just after it (``ParameterSender.keep_clear``): whatever changed
meanwhile goes with the reset, or after the downbeat when no drop came.

Which beat is the downbeat comes from the breakdown itself when it can: a breakdown begins on a phrase
boundary, so the beat after its last kick is a downbeat, and the drop comes whole bars later
(``anchor``). That holds where a beat tracker's bar is a beat or two off (its tempo is used, not its bar).
Without an anchor, the beat grid's own bar. The span reaches one beat either side of the downbeat, for a
last kick that was not the bar's last beat (a fill), and never more than three quarters of a bar, so a
breakdown still sends its changes once a bar.
"""

from __future__ import annotations

import math

from metadj_bridge.profile.mapping_model import TriggerSource
from metadj_bridge.profile.model import ShowProfile
from metadj_bridge.signals import TempoState

__all__ = ["NO_SPAN", "clear_span", "reacts_to_drop"]

#: The span that keeps nothing back.
NO_SPAN = (math.inf, math.inf)
#: Beats either side of the downbeat that a drop may land on.
SLACK_BEATS = 1.0
#: The share of a bar the span may take.
MAX_SHARE = 0.75
#: Added to the chunk and the round trip: Scope may take the message a little after the chunk we count.
MARGIN_S = 0.05
#: The section signal is below this in a breakdown (it is 0 or 1).
BREAKDOWN_BELOW = 0.5


def reacts_to_drop(profile: ShowProfile) -> bool:
    """Whether a mapping of ``profile`` fires on ``audio.drop`` (only then is the queue kept clear for it)."""
    return any(m.enabled and isinstance(m.source, TriggerSource) and m.source.name == "audio.drop"
               for m in profile.mappings)


def clear_span(now: float, state: TempoState | None, section: float | None, *, chunk_s: float,
               rtt: float, anchor: float | None = None) -> tuple[float, float]:
    """The span (clock times) around the downbeat now coming or just gone in which only actions are sent.

    ``NO_SPAN`` outside a breakdown, without a beat grid, or while the music is stopped. ``chunk_s`` is the
    believed chunk period, ``rtt`` the round trip to Scope, ``anchor`` the breakdown's last kick (clock time).
    """
    if state is None or not state.playing or section is None or section >= BREAKDOWN_BELOW:
        return NO_SPAN
    if not (state.bpm > 0 and math.isfinite(state.bpm) and state.beats_per_bar >= 1 and math.isfinite(chunk_s)):
        return NO_SPAN
    beat = 60.0 / state.bpm
    bar = beat * state.beats_per_bar
    before = SLACK_BEATS * beat + chunk_s + rtt + MARGIN_S
    after = SLACK_BEATS * beat
    limit = MAX_SHARE * bar
    before = min(before, limit)
    after = min(after, limit - before)
    if anchor is not None and math.isfinite(anchor) and anchor <= now:
        first = anchor + beat  # the downbeat the kick left off at
        downbeat = first + max(0, math.ceil((now - first) / bar)) * bar
    else:
        downbeat = now + (state.beats_per_bar - state.bar_position) * beat
    if now < downbeat - bar + after:  # still just after the downbeat gone by
        downbeat -= bar
    return downbeat - before, downbeat + after
