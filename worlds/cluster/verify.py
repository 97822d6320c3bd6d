"""Desync detection: where a sharded world first differs from the same world on one shard.

``Verifier`` steps a one-shard reference beside a sharded world, feeding it the very actions
the sharded world sealed, and compares the state hashes after every tick; at the first
mismatch it compares the two worlds entity by entity and names the first difference: tick,
owning shard, entity id, component and field, both values. ``HashFile`` does the same against
a file of ``TICK HASH`` lines written by an earlier run (``worlds run --hashes``), which can
only name the tick.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ecs import World
from worlds.runtime import Simulation


def first_difference(expected: World, got: World, owner_of=None) -> dict | None:
    """The first (by entity id, then component and field name) hashed value that differs
    between two worlds, an entity present in one only included; None when they agree."""
    def rows(world):
        out = {}
        for t in world.tables:
            if not t.n:
                continue
            for c in t.components:
                if not c.hashed:
                    continue
                for f in c.fields:
                    col = t.column(c, f)
                    for e, v in zip(t.ids.tolist(), col.tolist()):
                        out[(e, c.name, f)] = v
        return out

    a, b = rows(expected), rows(got)
    keys = sorted(set(a) | set(b))
    for key in keys:
        va, vb = a.get(key), b.get(key)
        same = va == vb or (isinstance(va, float) and isinstance(vb, float) and np.isnan(va) and np.isnan(vb))
        if not same:
            e, comp, field = key
            shard = None if owner_of is None else int(owner_of(np.array([e]))[0])
            return {"entity": e, "shard": shard, "component": comp, "field": field, "expected": va, "got": vb}
    return None


class Verifier:
    """Runs ``Simulation(defn, seed, generate=False)`` beside ``sim`` (a ShardedSimulation):
    call ``check(report)`` after each ``sim.step()``; returns the first divergence (and keeps
    it in ``desync``), or None."""

    def __init__(self, sim) -> None:
        self.sim = sim
        self.reference = Simulation(sim.defn, seed=sim.seed, generate=False, hash_every=1)
        self.desync: dict | None = None
        sim.sealed_hook = self._feed

    def _feed(self, batch) -> None:
        self.reference.submit(batch.take(np.arange(batch.n)))

    def check(self, report) -> dict | None:
        ref = self.reference.step()
        if self.desync is None and ref.state_hash != self.sim.state_hash():
            found = first_difference(self.reference.world, self.sim.world, self.sim.owner_of) or {}
            self.desync = {"tick": report.tick, **found}
        return self.desync


class HashFile:
    """Checks a run's hashes against a ``TICK HASH`` file: the first tick that differs."""

    def __init__(self, path: str | Path) -> None:
        self.expected: dict[int, str] = {}
        for no, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), start=1):
            if not line.strip():
                continue
            parts = line.split()
            if len(parts) != 2 or not parts[0].isdigit():
                raise ValueError(f"{Path(path).name}:{no}: expected 'TICK HASH', got {line.strip()!r}")
            self.expected[int(parts[0])] = parts[1]
        self.desync: dict | None = None

    def check(self, tick: int, state_hash: str | None) -> dict | None:
        want = self.expected.get(tick)
        if self.desync is None and want is not None and state_hash is not None and want != state_hash:
            self.desync = {"tick": tick, "expected_hash": want, "got_hash": state_hash}
        return self.desync
