"""Everything the bridge sends besides Scope parameters.

- :mod:`.osc_out`: OSC state for displays such as TouchOSC (theme, BPM, beat, Scope state), rate-limited per
  address, latest value wins.
- :mod:`.midi_feedback`: controller feedback over MIDI out (lit pads, LED rings, motor faders).

May import the ground floor (:mod:`metadj_bridge.errors`, :mod:`metadj_bridge.lifecycle`) and, for finding MIDI
ports, :mod:`metadj_bridge.inputs.midi_ports`.
"""
