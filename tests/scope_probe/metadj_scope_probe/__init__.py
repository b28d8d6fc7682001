"""metadj-probe: a Scope pipeline that shows what Scope's own pipeline path hands a pipeline.

It runs on a CPU in text mode (and video mode), makes 12-frame chunks of a plain picture with the frame stamp of
metadj-bridge's emulator in the top-left corner, paces itself like a GPU Wan pipeline (about 20 fps), and writes
every chunk's parameters to a JSON-lines file. See README.md beside this package.

This ``__init__`` imports nothing: ``stamp`` and ``record`` need numpy only, so metadj-bridge's tests can use them
without Scope; ``plugin``, ``schema`` and ``pipeline`` need Scope and are imported by Scope alone.
"""

__version__ = "0.1.0"
