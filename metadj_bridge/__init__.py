"""metadj-bridge: plays the visuals of a DJ set through Daydream Scope."""

__version__ = "0.1.0"
