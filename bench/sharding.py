"""The continent on 1, 2, 4 and 8 in-process shards: tick time, replication's share of it,
bytes between shards per tick, and whether every tick's hash is the one-shard hash.

The simulations are stepped in turns, one tick each per round, so all of them see the same
spells of this noisy machine; ratios are taken round by round against the one-shard tick.
"""

from __future__ import annotations

import numpy as np

from bench.scenes import continent
from bench.timing import Spread, progress
from worlds.cluster import open_world


def sharded_continent(ticks: int, warmup: int, counts: tuple[int, ...] = (1, 2, 4, 8)) -> dict:
    progress(f"sharded continent: {counts} shards, {warmup} warm-up + {ticks} ticks each")
    defn = continent()
    sims = {n: open_world(defn, n) for n in counts}
    tick_ms = {n: [] for n in counts}
    share = {n: [] for n in counts}
    sent = {n: [] for n in counts}
    same = True
    for k in range(warmup + ticks):
        reports = {n: sim.step() for n, sim in sims.items()}
        same &= len({r.state_hash for r in reports.values()}) == 1
        if k < warmup:
            continue
        for n, r in reports.items():
            tick_ms[n].append(r.tick_ms)
            if n > 1:
                st = sims[n].stats
                share[n].append(st.replication_share[-1])
                sent[n].append(st.bytes_per_tick[-1])
    base = np.asarray(tick_ms[counts[0]])
    out = {"entities": sims[counts[0]].entity_count, "same_hashes": bool(same), "shards": {}}
    for n in counts:
        ms = np.asarray(tick_ms[n])
        out["shards"][str(n)] = {
            "tick_ms": Spread.of(ms).as_dict(),
            "over_one_shard": float(np.median(ms / base)),
            "replication_share": float(np.median(share[n])) if share[n] else 0.0,
            "bytes_per_tick": {"p50": float(np.percentile(sent[n], 50)), "p99": float(np.percentile(sent[n], 99))}
            if sent[n] else {"p50": 0.0, "p99": 0.0},
        }
    return out
