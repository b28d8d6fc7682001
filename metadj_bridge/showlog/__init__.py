"""Show logs: what a show sent to Scope, kept, read back and used again.

- :mod:`.log`: ``ShowLog`` writes every parameter message and show event to a JSONL file from a writer thread.
- :mod:`.reading`: ``read_show_log`` reads one back, typed once, whatever the file holds (one error naming its line).
- :mod:`.folding`: events of one kind that come too close together fold into one entry with a count (pure).
- :mod:`.export`: ``metadj-bridge export-timeline``, a show log as a Scope workflow file with its timeline (pure).
- :mod:`.replay`: ``metadj-bridge replay``, a show log sent to Scope again with its original timing.

May import the ground floor, :mod:`metadj_bridge.scope` (the sender and session a replay drives),
:mod:`metadj_bridge.video` (a video-mode replay's input) and :mod:`metadj_bridge.profile`; a replay without a
Scope URL also starts the built-in :mod:`metadj_bridge.emulator` (imported when used).
"""
