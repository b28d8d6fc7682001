"""``metadj-bridge doctor``: is everything ready for the show, and what to do about what is not.

- :mod:`.checks`: ``Finding`` and the Scope checks (health, the pipelines it offers, the pipeline and why a load
  failed, VACE); the parts that only judge values are pure.
- :mod:`.video`: a short real session in the show's own input mode with its own source, its video and pause state.
- :mod:`.ice`: the ICE/TURN servers Scope hands out, probed from here (STUN packets built and parsed purely).
- :mod:`.report`: the checks of this machine (profile, audio input, MIDI, virtual camera), the whole run, and
  the printed or JSON report.

May import the ground floor, :mod:`metadj_bridge.scope`, :mod:`metadj_bridge.profile`, :mod:`metadj_bridge.video`,
the device listings of :mod:`metadj_bridge.inputs`, :mod:`metadj_bridge.run.plan` (to check what ``run``
would use) and ``run.parts.first_camera`` (the camera a video-mode ``run`` picks). Everything but
:mod:`.checks` and :mod:`.ice` is imported when a check runs.
"""
