"""Timing helper shared by the benchmark scripts (run from this folder, which is on sys.path)."""

from __future__ import annotations

import time
from typing import Callable

import numpy as np


def time_ms(fn: Callable[[], object], repeat: int) -> float:
    """Median CPU time of this thread per call, ms, after one warm-up call (OpenCV runs
    single-threaded in the benchmarks), so other processes on a shared machine do not
    inflate the figure."""
    fn()
    samples = []
    for _ in range(repeat):
        t0 = time.thread_time()
        fn()
        samples.append(time.thread_time() - t0)
    return float(np.median(samples) * 1e3)
