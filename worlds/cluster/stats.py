"""The ``shards`` section of a sharded run's summary, counted as the run goes."""

from __future__ import annotations

import numpy as np


class ShardStats:
    """The ``shards`` section of the run summary."""

    def __init__(self, shards: int) -> None:
        self.count = shards
        self.handoffs = 0
        self.forwarded = 0
        self.borrowed = 0
        self.handoffs_deferred = 0  # ticks whose hand-offs hit the cap (the rest went later)
        self.cross_shard_actions = 0
        self.bytes_per_tick: list[int] = []
        self.exchange_ms: list[float] = []  # the tick's time in round trips to the shards
        self.rounds: list[int] = []
        self.replication_share: list[float] = []  # of each tick's time, what was not the systems
        self.lag_rows = [0, 0]  # changed ghost rows shown within the tick / at the next one
        self.lag_ms: list[tuple[float, int]] = []  # (ms from the change to its ghosts, rows) per delivery
        self.rebalance_moves = 0
        self.desync = None

    def record_tick(self, sent: int, tick_ms: float, systems_ms: float, exchange_ms: float = 0.0,
                    rounds: int = 0) -> None:
        self.bytes_per_tick.append(sent)
        self.exchange_ms.append(exchange_ms)
        self.rounds.append(rounds)
        self.replication_share.append(max(tick_ms - systems_ms, 0.0) / tick_ms if tick_ms > 0 else 0.0)

    def _lag(self) -> dict:
        """Percentiles of the ticks from an owner's change to its ghosts showing it, over every
        changed ghost row sent."""
        zero, one = self.lag_rows
        total = zero + one
        if total == 0:
            return {"p50": 0, "p99": 0}
        return {"p50": 0 if zero / total >= 0.5 else 1, "p99": 0 if zero / total >= 0.99 else 1}

    def _lag_ms(self) -> dict:
        """Percentiles of the ms from an owner's change to its ghosts showing it, over every
        changed ghost row sent."""
        if not self.lag_ms:
            return {"p50": 0.0, "p99": 0.0}
        ms = np.array([m for m, _ in self.lag_ms])
        rows = np.array([n for _, n in self.lag_ms], float)
        order = np.argsort(ms)
        cum = np.cumsum(rows[order]) / rows.sum()
        pick = [ms[order][min(int(np.searchsorted(cum, q)), ms.size - 1)] for q in (0.5, 0.99)]
        return {"p50": round(float(pick[0]), 3), "p99": round(float(pick[1]), 3)}

    def summary(self, sim) -> dict:
        b = np.asarray(self.bytes_per_tick or [0])
        ex = np.asarray(self.exchange_ms[1:] or [0.0])  # the first tick compiles
        per = []
        for s, ((_, owned, ghosts), proc) in enumerate(zip(sim.host.all("counts"), sim.host.processes())):
            per.append({"shard": s, "owned": owned, "ghosts": ghosts,
                        "rss_mb": round(proc["rss_bytes"] / 2**20, 1), "pid": proc["pid"]})
        return {
            "count": self.count, "backend": sim.host.backend, "per_shard": per, "handoffs": self.handoffs,
            "forwarded": self.forwarded,
            "cross_shard_actions": self.cross_shard_actions, "borrowed": self.borrowed,
            "bytes_per_tick": {"p50": float(np.percentile(b, 50)), "p99": float(np.percentile(b, 99))},
            "replication_share_p50": round(float(np.median(self.replication_share or [0.0])), 4),
            "sync_lag_ticks": self._lag(), "sync_lag_ms": self._lag_ms(),
            "exchange_ms": {"p50": round(float(np.percentile(ex, 50)), 3),
                            "p99": round(float(np.percentile(ex, 99)), 3)},
            "round_trips_per_tick": round(float(np.mean(self.rounds or [0])), 2),
            "rebalance_moves": self.rebalance_moves, "rebalances": sim.balancer.moves,
            "handoffs_deferred": self.handoffs_deferred, "desync": self.desync,
        }
