"""Sharded worlds: one world split across shards that evolves exactly as it does on one.

Contract:
- ``open_world(defn, shards)`` gives the server loop's API (``submit``, ``step`` returning a
  ``TickReport``, ``state_hash``, ``disconnect``/``reconnect``) for any shard count; one shard
  is ``worlds.runtime.Simulation`` itself, more are a ``ShardedSimulation`` of that many, its
  shards in this process (``backend="inprocess"``) or each in a Ray actor (``backend="ray"``,
  ``ray_address`` to join a cluster), on the same protocol.
- Transparency: for the same world file, seed and action stream, the state hash after every
  tick is the same on any number of shards (``verify.Verifier`` checks it as it runs and names
  the first diverging tick, shard, entity and field).
- Authority: every entity is owned by exactly one shard at every tick (the shard whose part of
  the region tree holds it; shard 0 for entities without a position); other shards hold
  read-only ghosts of it; a border crossing is a two-phase hand-off at the tick barrier with
  the same 64-bit id; an action goes to its actor's owner and is forwarded, never dropped.
- Protocol: everything shards tell each other is a typed message of ``protocol`` encoded to
  msgpack bytes and moved by a ``transport.Transport``; the in-process back-end moves the same
  bytes a distributed one will. Ghost deltas carry only the rows and fields that changed.
"""

from __future__ import annotations

from worlds.runtime import Simulation


def open_world(defn, shards: int | None = None, **kw):
    """The world of ``defn`` on ``shards`` shards (default: the file's ``[shards] count``)."""
    from worlds.cluster.sharded import ShardedSimulation, ShardingError

    n = defn.shards.count if shards is None else int(shards)
    if n <= 1:
        if kw.pop("backend", "inprocess") != "inprocess":
            raise ShardingError("the ray back-end runs a world on 2 or more shards (--shards N)")
        kw.pop("ray_address", None)
        return Simulation(defn, **kw)

    return ShardedSimulation(defn, n, **kw)


__all__ = ["open_world"]
