"""What the feature extractor costs per hop: microseconds and the share of one CPU core, on music-like input.

A measuring tool (a test keeps the per-hop cost in view with it), not part of the running bridge.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np

from metadj_bridge.inputs.analysis import FeatureExtractor
from metadj_bridge.inputs.beat_activation import OnsetActivation

__all__ = ["measure_cost"]


def measure_cost(seconds: float = 10.0, samplerate: int = 44100) -> dict[str, float]:
    """Time ``process`` per hop on synthetic music-like input (noise + tone + clicks).

    Returns median, p95 and mean microseconds per hop, the hop rate, the share of one CPU core that the
    median implies at that rate, and ``activation_median_us``: the beat activation alone on the same hops (its
    own, longer FFT: the largest part). The first half second is a warm-up and not counted. Input changes every
    hop, as music does, so no cache flatters the figures.
    """
    extractor = FeatureExtractor(samplerate)
    hop = extractor.hop_size
    count = max(2, int(seconds * samplerate) // hop)
    rng = np.random.default_rng(1234)
    n = count * hop
    tt = np.arange(n) / samplerate
    signal = 0.05 * rng.standard_normal(n) + 0.1 * np.sin(2 * np.pi * 220.0 * tt)
    click_every = int(0.5 * samplerate)
    burst = 0.5 * rng.standard_normal(256) * np.exp(-np.arange(256) / 40.0)
    for start in range(0, n - 256, click_every):
        signal[start : start + 256] += burst
    samples = signal.astype(np.float32)
    frames = [samples[i * hop : (i + 1) * hop] for i in range(count)]
    warmup = min(count - 1, int(0.5 * samplerate) // hop)

    def per_hop_us(step: Callable[[np.ndarray], object]) -> np.ndarray:
        clock = time.perf_counter_ns
        times = np.empty(count, dtype=np.float64)
        for i, frame in enumerate(frames):
            start = clock()
            step(frame)
            times[i] = clock() - start
        return times[warmup:] / 1000.0

    whole = per_hop_us(extractor.process)
    activation = OnsetActivation(samplerate, hop)
    activation_only = per_hop_us(activation.process)

    median = float(np.median(whole))
    hop_rate = samplerate / hop
    return {
        "median_us": median,
        "p95_us": float(np.percentile(whole, 95)),
        "mean_us": float(whole.mean()),
        "activation_median_us": float(np.median(activation_only)),
        "hops": float(whole.size),
        "hop_size": float(hop),
        "hop_rate_hz": hop_rate,
        "core_percent": median * hop_rate / 1e4,
    }
