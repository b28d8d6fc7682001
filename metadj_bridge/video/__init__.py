"""Video out (and in, for avatar mode).

Out: the output clock (``clock.py``) shows Scope's frames at a fixed rate on every sink (``sink.py``): the
virtual webcam (``vcam.py``, with ``capture.py``'s in-process backend), a recording (``record.py``) and a local
preview (``preview.py``); ``outputs.py`` builds the sinks a run names, ``convert.py`` fits frames, ``slate.py``
says why there is no picture. In: a webcam or a video file as the outgoing track (``webcam.py``), the cameras
present and how a setting names one (``cameras.py``), and avatar mode's setup with VACE images (``vace.py``).

Imports the ground floor, and ``scope/`` for uploads: never ``inputs/``.
"""
