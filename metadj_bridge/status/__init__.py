"""The performer's status: what the running bridge is doing, on a terminal and over HTTP.

- :mod:`.model`: ``BridgeStatus.snapshot()``, one plain JSON-able picture of the running bridge, and the recent
  warnings it shows.
- :mod:`.view`: the terminal view (a rich panel, or log lines when not a terminal); pure rendering, one polling
  loop.
- :mod:`.server`: ``GET /status`` (JSON) and ``GET /metrics`` (Prometheus text) for dashboards.

The views read only the snapshot (plain data); the model reads the running bridge's parts
(:mod:`metadj_bridge.run`, :mod:`metadj_bridge.scope`, :mod:`metadj_bridge.video`, :mod:`metadj_bridge.inputs`),
imported for type checking only where it can.
"""
