"""One running bridge (``metadj-bridge run``): the wiring of every other room.

- ``plan.py``: flags, ``METADJ_*`` settings and the show profile settled into one run plan.
- ``bridge.py``: the parts opened on one ``AsyncExitStack`` (closed in reverse order whatever fails) and run as
  named tasks of one ``TaskGroup``, each restarted on its own when it fails.
- ``parts.py``: how each part opens (audio, controls, avatar, video, the show log).
- ``tempo_hub.py``: every tempo reading in, one beat grid out; the one place that counts beats.
- ``show.py``: the show runner, the asyncio edge around the mapping engine (profile switches and hot reload).
- ``scenes.py``: the show runner's scene commands (save, recall, the scenes kept in the profile file).
- ``eventloop.py``: uvloop where it is installed, asyncio's own loop elsewhere.

May import every room below it; nothing imports it but the CLI and the status model's type hints.
"""
