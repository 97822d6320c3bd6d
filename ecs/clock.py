"""Fixed-timestep clock: the tick counter is the time; seconds are derived from it.

Game time never comes from the wall clock, so a tick computes the same thing whether it runs
late, early, or on another machine; ``--realtime`` pacing is the server loop's business.
"""

from __future__ import annotations

import math


class FixedClock:
    def __init__(self, tick_rate_hz: float, tick: int = 0) -> None:
        if not (tick_rate_hz > 0 and math.isfinite(tick_rate_hz)):
            raise ValueError(f"tick rate must be a finite number > 0 Hz, got {tick_rate_hz}")
        self.tick_rate_hz = float(tick_rate_hz)
        self.dt_s = 1.0 / self.tick_rate_hz
        self.dt_ms = 1000.0 / self.tick_rate_hz
        self.tick = int(tick)

    @property
    def time_s(self) -> float:
        """Game time at the start of the current tick."""
        return self.tick * self.dt_s

    def time_of(self, tick: int) -> float:
        return tick * self.dt_s

    def time_ms_of(self, tick: int) -> float:
        """Start of ``tick`` in milliseconds (exact for rates that divide 1000)."""
        return tick * self.dt_ms

    def tick_at(self, time_s: float) -> int:
        """The tick whose interval [time_of(tick), time_of(tick + 1)) contains ``time_s``."""
        # time_of rounds (k * dt_s is not exactly k / rate), so ``time_s // dt_s`` can land one tick
        # early, even at time_of(k) itself; step the estimate until it brackets time_s exactly.
        tick = math.floor(time_s * self.tick_rate_hz)
        while self.time_of(tick) > time_s:
            tick -= 1
        while self.time_of(tick + 1) <= time_s:
            tick += 1
        return tick

    def advance(self) -> int:
        self.tick += 1
        return self.tick
