"""The barrier between two ticks of a sharded world: hand-offs, routing, ghosts.

Entities that now stand in another shard's rectangle are handed over in two phases (the new
owner takes the whole row, then the old one lets go and the routing table changes), at most
``max_handoffs_per_tick`` a tick; each action goes to its actor's owner, and a shard that no
longer holds an actor forwards the action; each shard's interest in its neighbours (their
entities within the interest radius of its rectangle, and what its actions name) is drawn,
and owners send those ghosts' changes as deltas. A mixin of ``ShardedSimulation``.
"""

from __future__ import annotations

import numpy as np

from systems.actions import ACTION_FIELDS, ActionBatch
from systems.components import Ghost
from systems.replication import ReplicationPlan
from worlds.cluster.protocol import Actions, HandOff, HandOffAck, RoutedActions, pack, unpack
from worlds.cluster.rows import encode_rows, write_rows

class BorderExchange:
    def _hand_over(self, tick: int) -> None:
        """Two-phase transfer of every entity that now belongs to another shard."""
        moves = []  # (id, from, to) of every entity that belongs elsewhere now
        for s, sh in enumerate(self.shards):
            plan = sh.world.resources.get(ReplicationPlan)
            if plan is not None:
                away = plan.dest != s
                moves.append(np.stack([plan.ids[away], np.full(int(away.sum()), s), plan.dest[away]], axis=1))
            unplaced = sh.unplaced_owned()
            if s != 0 and unplaced.size:
                moves.append(np.stack([unplaced, np.full(unplaced.size, s), np.zeros(unplaced.size, np.int64)], axis=1))
        moves = np.concatenate(moves) if moves else np.empty((0, 3), np.int64)
        if moves.shape[0] > self.max_handoffs:  # a border that moved far: the rest go next tick
            moves = moves[np.argsort(moves[:, 0], kind="stable")[: self.max_handoffs]]
            self.stats.handoffs_deferred += 1
        if self.balancer.moving:
            self.stats.rebalance_moves += int(moves.shape[0])
        for s in range(len(self.shards)):
            for d in range(len(self.shards)):
                ids = moves[(moves[:, 1] == s) & (moves[:, 2] == d), 0]
                if ids.size:
                    self.transport.send(d, HandOff(tick, s, d, encode_rows(self.shards[s].world, ids)))
                    self.stats.handoffs += int(ids.size)
        offers = [self.transport.receive(d) for d in range(len(self.shards))]
        for d, sh in enumerate(self.shards):
            for m in offers[d]:
                ids = np.concatenate([unpack(r.ids, np.int64) for r in m.rows])
                sh.drop_copies(ids)  # a ghost copy gives way to the owned row
                write_rows(sh.world, m.rows, self.catalog)
                self.transport.send(m.src, HandOffAck(tick, d, m.src, pack(ids, np.int64)))
        for s, sh in enumerate(self.shards):
            for ack in self.transport.receive(s):
                ids = unpack(ack.ids, np.int64)
                sh.world.hand_off_many(ids)  # its ghosts elsewhere are dropped by the next delta
                self._set_owner(ids, ack.src)

    def _route(self, tick: int, batch: ActionBatch) -> list[tuple[np.ndarray, ActionBatch]]:
        """Each action to the owner of its actor, as protocol bytes. A shard that does not
        hold an actor it was sent (the routing it was given is older than a hand-off) forwards
        the action to the owner it knows: an action is never dropped on the way."""
        owner = (self.router or self.owner_of)(batch.actor)
        everything = np.arange(batch.n)
        for s in range(len(self.shards)):
            idx = everything[owner == s]
            if idx.size:
                self.transport.send(s, RoutedActions(tick, -1, s, "route", _actions(batch, idx)))
        held: list[list[np.ndarray]] = [[] for _ in self.shards]
        for _ in range(len(self.shards) + 1):
            moving = False
            for s, sh in enumerate(self.shards):
                for m in self.transport.receive(s):
                    idx = unpack(m.actions.index, np.int64)
                    actor = unpack(m.actions.columns["actor"], np.int64)
                    now = self.owner_of(actor)
                    table, _ = sh.world.locate_many(actor)
                    owned = np.array([t >= 0 and not sh.world.tables[t].has(Ghost) for t in table.tolist()], np.bool_)
                    here = owned | ~self._alive_anywhere(actor)
                    held[s].append(idx[here])
                    for d in np.unique(now[~here]).tolist():
                        fwd = idx[~here][now[~here] == d]
                        self.transport.send(d, RoutedActions(tick, s, d, "forward", _actions(batch, fwd)))
                        self.stats.forwarded += int(fwd.size)
                        moving = True
            if not moving:
                break
        else:
            raise RuntimeError(f"tick {tick}: actions still forwarded after {len(self.shards)} hops")
        own = []
        for s in range(len(self.shards)):
            idx = np.sort(np.concatenate(held[s])) if held[s] else np.empty(0, np.int64)
            own.append((idx, batch.take(idx)))
        return own

    def _ghosts_at_start(self, tick: int, own) -> None:
        """Interest drawn anew; ghosts hear of what changed since they last heard (the
        components in ``self.stale``: the tick's late steps, and the API between ticks)."""
        self._draw_interest(tick, own)
        self._refresh(tick, tuple(sorted(self.stale, key=lambda c: c.name)), lag=1)
        self.stale.clear()

    def _draw_interest(self, tick: int, own) -> None:
        """Who sees what: each shard's owned entities within the interest radius of another
        shard, the entities another shard's actions name, (from shard 0) the world's
        entities without a position, which every shard holds, and (for shard 0's event
        director) every player and event mob."""
        named = [np.unique(np.concatenate([sub.actor, sub.target])) for _, sub in own]
        named_owner = [self.owner_of(ids) for ids in named]
        for s, sh in enumerate(self.shards):
            plan = sh.replication.plan(sh.world)
            for d in sh.neighbours:
                want = [plan.seen_by(d), named[d][named_owner[d] == s]]
                if s == 0:
                    want.append(sh.unplaced_owned())
                if d == 0:
                    want.append(self._watched(sh))
                sh.interest[d] = np.unique(np.concatenate(want))

    def _add_interest(self, placed: list[np.ndarray]) -> bool:
        """Entities that appeared or jumped this tick (``placed``, per shard: newcomers and the
        revived) join the interest of the shards near where they now stand. True if any did."""
        added = False
        for s, sh in enumerate(self.shards):
            if placed[s].size == 0:
                continue
            plan = sh.replication.plan_of(sh.world, placed[s])
            for d in sh.neighbours:
                seen = plan.seen_by(d)
                if d == 0:
                    seen = np.union1d(seen, self._watched(sh, placed[s]))
                if seen.size:
                    sh.interest[d] = np.union1d(sh.interest[d], seen)
                    added = True
        return added

    def _refresh(self, tick: int, comps, lag: int = 0) -> None:
        """Owners send their ghosts' changes (of ``comps``; everything when None), and new
        ghosts whole. ``lag``: 0 for a refresh before a step that reads what changed in the
        same tick, 1 at a tick's start (what nothing read since the change), for the stats."""
        for sh in self.shards:
            for delta, changed in sh.ghost_deltas(tick, comps):
                self.stats.lag_rows[lag] += changed
                self.transport.send(delta.dst, delta)
        for d, sh in enumerate(self.shards):
            sh.receive_ghosts(self.transport.receive(d), self.catalog)


def _actions(batch: ActionBatch, idx: np.ndarray) -> Actions:
    return Actions({name: pack(getattr(batch, name)[idx], dtype) for name, dtype in ACTION_FIELDS},
                   pack(idx, np.int64))


