"""The JSON every web route and the live WebSocket send: strict JSON, whatever the state holds.

Python's ``json.dumps`` writes a float that is not finite as ``NaN`` or ``Infinity``, which is not JSON: a page's
``JSON.parse`` throws on the whole message, and the live view stops updating. Here such a number becomes ``null``
(what a browser's own ``JSON.stringify`` makes of it), and a value JSON has no form for (a path, an enum) its ``str``.
"""

from __future__ import annotations

import json
import math
from typing import Any

__all__ = ["dumps"]


def dumps(value: Any, *, compact: bool = False) -> str:
    """``value`` as strict JSON text; ``compact`` leaves out the spaces after ``,`` and ``:``."""
    separators = (",", ":") if compact else None
    try:
        return json.dumps(value, default=str, allow_nan=False, separators=separators)
    except ValueError:  # a non-finite number somewhere (rare): only then is the value walked and copied
        return json.dumps(_finite(value), default=str, allow_nan=False, separators=separators)


def _finite(value: Any) -> Any:
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {_key(k): _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


def _key(key: Any) -> Any:
    """A key stays a key: JSON's keys are text, so a non-finite float one is written as its name."""
    return str(key) if isinstance(key, float) and not math.isfinite(key) else key
