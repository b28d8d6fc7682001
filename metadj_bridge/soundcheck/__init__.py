"""The sound check before a show: hear what the bridge hears, see what the controllers send.

- :mod:`.listen`: ``metadj-bridge listen`` (meters, beats and BPM from a file, a device or the demo track) and
  ``metadj-bridge devices`` (audio inputs, MIDI ports).
- :mod:`.monitor`: ``metadj-bridge monitor``, every incoming MIDI and OSC signal under its mapping name.
- :mod:`.learn`: ``metadj-bridge learn``, move a control and get its YAML mapping.

May import the ground floor, :mod:`metadj_bridge.inputs` (mostly when a command runs, so ``--help`` stays
light) and :mod:`metadj_bridge.profile`.
"""
