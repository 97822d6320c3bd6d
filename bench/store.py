"""Durable state on the continent: what journaling adds to the tick (fsync every tick, and
off), the snapshot's cost in the tick (copying the state) and behind it (writing it; and the same
write alone, as work rather than wall time shared with the tick), its size,
journal bytes per tick, and the time to recover a run of N journaled ticks.

The three runs (no journal, journal with fsync off, fsync every tick) are stepped in turns, so
they see the same spells of this noisy machine; ratios are taken tick by tick against the run
without a journal. The durable runs' tick is ``tick_ms`` (the frame is written inside it) plus
what came after it (waiting for the fsync, copying a snapshot).
"""

from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

from bench.scenes import CONTINENT, continent
from bench.timing import Spread, progress
from worlds import Simulation
from worlds.store import DataDir, DurableRun, resume, snapshots
from worlds.store.state import capture

def durable_continent(ticks: int, warmup: int, snapshot_every: int, recover_ticks: int) -> dict:
    progress(f"durable continent: {warmup} warm-up + {ticks} ticks, a snapshot every {snapshot_every}; "
             f"recovery of {recover_ticks} ticks")
    tmp = Path(tempfile.mkdtemp(prefix="bench-store-"))
    try:
        world = CONTINENT
        plain = Simulation(continent())
        runs = {}
        for policy in ("off", "tick"):
            data = DataDir.create(tmp / policy, world, seed=plain.seed, generate=True, actions=None,
                                  snapshot_every=snapshot_every, fsync=policy)
            runs[policy] = DurableRun(Simulation(data.world(), seed=plain.seed), data)
        ms = {"plain": [], "off": [], "tick": []}
        for k in range(warmup + ticks):
            r = plain.step()
            if k >= warmup:
                ms["plain"].append(r.tick_ms)
            for policy, run in runs.items():
                r = run.step()
                if k >= warmup:
                    ms[policy].append(r.tick_ms + run.last_extra_ms)
        out = {"entities": plain.entity_count, "ticks": ticks, "snapshot_every": snapshot_every}
        base = np.asarray(ms["plain"])
        for name, values in ms.items():
            v = np.asarray(values)
            out[name] = {"tick_ms": Spread.of(v).as_dict(), "over_plain": float(np.median(v / base)),
                         "largest_over_median": float(v.max() / np.median(v))}
        tick_run = runs["tick"]
        snaps = [s for s in tick_run.snapshot_stats if s["tick"] > 0]
        out["snapshot"] = {"bytes": snaps[-1]["bytes"] if snaps else 0,
                           "copy_ms": Spread.of(np.array([s["copy_ms"] for s in snaps])).as_dict() if snaps else {},
                           "write_ms": Spread.of(np.array([s["write_ms"] for s in snaps])).as_dict() if snaps else {}}
        out["journal_bytes_per_tick"] = tick_run.journal.bytes_written / (warmup + ticks)
        # The writer's work alone (behind the tick it shares the cores, so its wall time is longer).
        alone = []
        for k in range(3):
            state = capture(tick_run.sim)
            t0 = time.perf_counter()
            snapshots.write(tmp / f"alone{k}", state, "continent", "-", 0)
            alone.append((time.perf_counter() - t0) * 1000.0)
        out["snapshot"]["write_alone_ms"] = Spread.of(np.array(alone)).as_dict()
        for run in runs.values():
            run.close()
        out["recovery"] = _recovery(tmp, world, recover_ticks)
        return out
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _recovery(tmp: Path, world: Path, n: int) -> dict:
    """A run of ``n`` journaled ticks after its only snapshot (tick 0), recovered from scratch."""
    data = DataDir.create(tmp / "recover", world, seed=1, generate=True, actions=None, snapshot_every=10**9,
                          fsync="off")
    run = DurableRun(Simulation(data.world(), seed=1), data)
    for _ in range(n):
        run.step()
    expected = run.state_hash()
    run.close()
    t0 = time.perf_counter()
    again, rec = resume(data.path)
    wall_ms = (time.perf_counter() - t0) * 1000.0
    same = again.state_hash() == expected
    again.close()
    return {"ticks": rec.replayed_ticks, "recovery_ms": round(rec.recovery_ms, 1), "wall_ms": round(wall_ms, 1),
            "same_hash": bool(same)}
