"""The mapping engine: signals, triggers and time in, with a typed show profile; Scope parameters out.

- :mod:`.engine`: ``MappingEngine.step()`` runs every mapping of the profile once.
- :mod:`.compiled`, :mod:`.targets`: a profile compiled into mapping runtimes and target slots.
- :mod:`.transforms`, :mod:`.sources`: the per-step arithmetic (range, curve, smooth, threshold, quantize...)
  and what a mapping reads besides named signals (beat-synced LFOs, triggered envelopes).
- :mod:`.themes`: the active theme, the focused prompt and the prompt list Scope gets.
- :mod:`.parameters`: values coerced into the pipeline's schema, mappings combined per key.
- :mod:`.scenes`: the lasting state captured as a scene, and a scene recalled at once or morphed over bars.

Pure: no sockets, threads, devices or clocks; time comes in as an argument. Imports the ground floor
(:mod:`metadj_bridge.signals`, :mod:`metadj_bridge.parameters`, :mod:`metadj_bridge.errors`) and
:mod:`metadj_bridge.profile`; never :mod:`metadj_bridge.inputs` or :mod:`metadj_bridge.scope`.
"""
