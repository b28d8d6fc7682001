"""YAML show profiles: the typed model, loading with ``file:line:column`` errors, and hot reload.

    profile = load_profile("mappings/club.yaml")      # a ShowProfile, or ProfileError
    watcher = ProfileWatcher(path, on_change, on_error); await watcher.start(); ...; await watcher.aclose()

- :mod:`.model`: ``ShowProfile`` and its parts, frozen dataclasses; nothing deeper reads raw YAML.
- :mod:`.loader`, :mod:`.yamlnodes`, :mod:`.fields`, :mod:`.sections`, :mod:`.themes`, :mod:`.mappings`,
  :mod:`.names`, :mod:`.video`, :mod:`.addresses`: YAML in, a checked model out, every mistake named by file,
  line and column; whatever a file holds or is, the only exception out is ``ProfileError``.
- :mod:`.check`: ``metadj-bridge check`` (every mistake, and the profiles switches lead to).
  :mod:`.ignored`: mappings on keys the profile's pipeline ignores in its mode (warnings for check and run).
  :mod:`.watch`: hot reload (``ProfileWatcher``), which survives any bad save. :mod:`.options`: the command
  lines' option types, checked as the profile's values are.

Pure apart from reading files. Imports the ground floor (:mod:`metadj_bridge.signals`,
:mod:`metadj_bridge.parameters`, :mod:`metadj_bridge.errors`, :mod:`metadj_bridge.lifecycle`), and the names of
the OSC presets from the pure :mod:`metadj_bridge.inputs.osc_presets` (and, lazily, httpx to read the Scope URL as
the bridge will, and :mod:`metadj_bridge.inputs.audio_file` for ``check`` to read the start-up audio file's
header, and :mod:`metadj_bridge.run.screens` for ``check`` to apply run's own rule on screens); never
:mod:`metadj_bridge.scope` or :mod:`metadj_bridge.mapping`.
"""

from __future__ import annotations

from metadj_bridge.profile.errors import ProfileError
from metadj_bridge.profile.loader import load_profile
from metadj_bridge.profile.watch import ProfileWatcher

__all__ = ["ProfileError", "ProfileWatcher", "load_profile"]
