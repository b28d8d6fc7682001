"""YAML show profiles: loading with ``file:line:column`` errors, and hot reload.

    profile = load_profile("mappings/club.yaml")      # a ShowProfile, or ProfileError
    watcher = ProfileWatcher(path, on_change, on_error); await watcher.start(); ...; await watcher.aclose()
"""

from __future__ import annotations

from metadj_bridge.profile.errors import ProfileError
from metadj_bridge.profile.loader import load_profile
from metadj_bridge.profile.watch import ProfileWatcher

__all__ = ["ProfileError", "ProfileWatcher", "load_profile"]
