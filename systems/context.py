"""What every system is told about the tick it runs in (passed as ``ctx``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ecs import Rng


@dataclass
class TickContext:
    tick: int
    dt_s: float
    seed: int
    rng: Rng
    defn: Any  # the validated world definition (worlds.schema.WorldDef)
    max_speed_mps: float = 0.0  # fastest player's top speed: bounds how far a target can move
    stats: dict[str, Any] = field(default_factory=dict)  # what the tick did, filled by systems

    @property
    def time_ms(self) -> float:
        """Game time at the start of this tick, in milliseconds."""
        return self.tick * (1000.0 / self.defn.world.tick_rate_hz)  # as FixedClock.time_ms_of

    @property
    def bounds(self) -> tuple[float, float, float, float]:
        return self.defn.bounds
