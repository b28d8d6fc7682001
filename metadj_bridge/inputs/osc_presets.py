"""The OSC address spaces that DJ and VJ software really sends, as data tables.

Each :class:`OscAddress` says what one address (an OSC pattern, wildcards allowed) means: whether it is a
continuous value (``signal``), an event (``trigger``) or a tempo (``tempo``), which argument carries the
value, and the value's range when the software documents one. ``docs/osc.md`` lists the same addresses for
performers, with where they come from.

Sources: Resolume Arena 7's OSC (resolume.com/support/en/osc; addresses as shown by Shortcuts > Edit OSC;
the tempo controller's 0..1 range maps to 20..500 BPM in Arena 7, 2..500 in Resolume 4), and AbletonOSC
(github.com/ideoforms/AbletonOSC README: Live listens on 11000 and replies on 11001; getters reply with
the object's indices first, then the value).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Kind = Literal["signal", "trigger", "tempo", "beat", "transport"]


@dataclass(frozen=True, slots=True)
class OscAddress:
    """One address (pattern) of a preset."""

    pattern: str
    kind: Kind
    meaning: str
    #: Range of the value argument, when known; used for the normalised 0..1 value.
    range: tuple[float, float] | None = None
    #: How many leading arguments are indices (AbletonOSC getters send track, clip, then the value). They are
    #: appended to the name (``osc./live/clip/get/playing_status/0/2``) and the value is the argument after them.
    index_args: int = 0
    #: For ``tempo``: the value is normalised 0..1 and maps linearly onto this BPM range (Resolume).
    bpm_range: tuple[float, float] | None = None


@dataclass(frozen=True, slots=True)
class OscPreset:
    name: str
    description: str
    #: The port the software sends to by default (what to type in its OSC output settings).
    default_port: int
    addresses: tuple[OscAddress, ...]


RESOLUME_BPM_RANGE = (20.0, 500.0)

RESOLUME = OscPreset(
    name="resolume",
    description="Resolume Arena / Avenue 7: Preferences > OSC > OSC Output enabled, 'Output all OSC messages'",
    default_port=7001,
    addresses=(
        OscAddress(
            "/composition/tempocontroller/tempo",
            "tempo",
            "composition BPM, normalised: 0..1 is 20..500 BPM",
            range=(0.0, 1.0),
            bpm_range=RESOLUME_BPM_RANGE,
        ),
        OscAddress("/composition/tempocontroller/resync", "trigger", "tempo resync pressed (beat 1 of the bar)"),
        OscAddress("/composition/tempocontroller/tempotap", "trigger", "tap tempo pressed"),
        OscAddress("/composition/layers/*/video/opacity", "signal", "layer opacity", range=(0.0, 1.0)),
        OscAddress("/composition/layers/*/master", "signal", "layer master fader", range=(0.0, 1.0)),
        OscAddress("/composition/layers/*/clips/*/connect", "trigger", "clip launched (1 = press, 0 = release)"),
        OscAddress("/composition/layers/*/clips/*/transport/position", "signal", "clip playhead", range=(0.0, 1.0)),
        OscAddress("/composition/columns/*/connect", "trigger", "column launched (1 = press, 0 = release)"),
        OscAddress("/composition/selectedclip/connect", "trigger", "selected clip launched"),
        OscAddress(
            "/composition/selectedclip/transport/position", "signal", "selected clip playhead", range=(0.0, 1.0)
        ),
        OscAddress("/composition/master", "signal", "composition master fader", range=(0.0, 1.0)),
        OscAddress("/composition/video/opacity", "signal", "composition opacity", range=(0.0, 1.0)),
        OscAddress("/composition/crossfader/phase", "signal", "crossfader position", range=(0.0, 1.0)),
    ),
)

ABLETON = OscPreset(
    name="ableton",
    description="Ableton Live 11+ with the AbletonOSC remote script (replies on port 11001)",
    default_port=11001,
    addresses=(
        OscAddress("/live/song/get/tempo", "tempo", "song tempo in BPM", range=(20.0, 999.0)),
        OscAddress("/live/song/get/beat", "beat", "beat number, sent on every beat after /live/song/start_listen/beat"),
        OscAddress("/live/song/beat", "beat", "beat number (older AbletonOSC)"),
        OscAddress("/live/song/get/is_playing", "transport", "transport playing (1) or stopped (0)", range=(0.0, 1.0)),
        OscAddress("/live/song/get/current_song_time", "signal", "song position in beats"),
        OscAddress("/live/song/get/signature_numerator", "signal", "beats per bar"),
        OscAddress("/live/clip/get/playing_status", "signal",
                   "track, clip, status: playing state of one clip", index_args=2),
        OscAddress("/live/clip/get/is_playing", "signal", "track, clip, is_playing", range=(0.0, 1.0), index_args=2),
        OscAddress("/live/clip/get/playing_position", "signal", "track, clip, position in beats", index_args=2),
        OscAddress("/live/track/get/playing_slot_index", "signal",
                   "track, slot: the clip slot playing on a track (-1 none)", index_args=1),
        OscAddress("/live/track/get/fired_slot_index", "signal", "track, slot: the clip slot just fired", index_args=1),
        OscAddress("/live/track/get/volume", "signal", "track, volume", range=(0.0, 1.0), index_args=1),
        OscAddress("/live/track/get/output_meter_level", "signal", "track, level", range=(0.0, 1.0), index_args=1),
        OscAddress("/live/startup", "trigger", "AbletonOSC started"),
    ),
)

PRESETS: dict[str, OscPreset] = {p.name: p for p in (RESOLUME, ABLETON)}


def get_preset(name: str) -> OscPreset:
    try:
        return PRESETS[name]
    except KeyError:
        raise ValueError(f"unknown OSC preset {name!r} (known: {', '.join(sorted(PRESETS))})") from None
