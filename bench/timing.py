"""How figures are timed and summarised: interleaved rounds, median with min and max.

This machine is shared (two cores, other test runs): a single timing says little, and two
timings taken minutes apart say less. So every comparison runs all its variants in each round,
one after the other in a rotating order, and a ratio is taken within a round (both sides saw
the same machine load) before the median over rounds is taken. The garbage collector runs
before each timed call and is off during it, as ``timeit`` does.
"""

from __future__ import annotations

import gc
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Spread:
    """Median, min and max of some samples (ms, or whatever unit they came in)."""

    median: float
    min: float
    max: float
    n: int

    @classmethod
    def of(cls, samples: Sequence[float]) -> Spread:
        a = np.asarray(samples, np.float64)
        if a.size == 0:
            return cls(float("nan"), float("nan"), float("nan"), 0)
        return cls(float(np.median(a)), float(a.min()), float(a.max()), int(a.size))

    def as_dict(self, digits: int = 4) -> dict:
        return {"median": round(self.median, digits), "min": round(self.min, digits),
                "max": round(self.max, digits), "n": self.n}


def timed_ms(fn: Callable[[], object]) -> tuple[float, object]:
    """(milliseconds, result) of one call, collected garbage first and the collector off."""
    gc.collect()
    gc.disable()
    try:
        t0 = time.perf_counter()
        out = fn()
        t1 = time.perf_counter()
    finally:
        gc.enable()
    return (t1 - t0) * 1e3, out


def interleaved(variants: Mapping[str, object], rounds: int) -> dict[str, list[float]]:
    """Run ``prepare()`` (untimed) and ``step()`` (timed) of every variant once per round, the
    starting variant rotating each round. Returns each variant's ms per round, in round order."""
    names = list(variants)
    out: dict[str, list[float]] = {name: [] for name in names}
    for r in range(rounds):
        for k in range(len(names)):
            name = names[(r + k) % len(names)]
            v = variants[name]
            v.prepare()
            ms, _ = timed_ms(v.step)
            out[name].append(ms)
    return out


def ratio(numerator: Sequence[float], denominator: Sequence[float]) -> Spread:
    """Round-by-round ratios of two series timed in the same rounds."""
    return Spread.of([a / b for a, b in zip(numerator, denominator)])


_START = time.perf_counter()


def progress(message: str) -> None:
    """A progress line on stderr (stdout is kept for the report, or its one JSON object)."""
    print(f"[bench {time.perf_counter() - _START:6.1f}s] {message}", file=sys.stderr, flush=True)
