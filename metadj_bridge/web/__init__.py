"""The bridge's one web server: the control page and its files (``static/``), the live picture (MJPEG), the status
for dashboards (``/status``, ``/metrics``), a WebSocket with the live state and the control API (docs/web.md);
OSCQuery discovery lives here too.

It may import the ground floor, ``status`` (the Prometheus text), ``video`` (the preview's frames), ``profile`` and
``inputs`` (OSCQuery reads the OSC preset tables and the decoder's rules);
it never imports ``run``: the running bridge hands it a snapshot function and a control object (``run/control.py``)
that it calls through their methods.
"""
