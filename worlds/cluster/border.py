"""The barrier between two ticks of a sharded world: hand-offs, routing, ghosts.

Entities that now stand in another shard's rectangle are handed over in two phases (the new
owner takes the whole row, then the old one lets go and the routing table changes), at most
``max_handoffs_per_tick`` a tick; each action goes to its actor's owner, and a shard that no
longer holds an actor forwards the action; each shard's interest in its neighbours (their
entities within the interest radius of its rectangle, and what its actions name) is drawn,
and owners send those ghosts' changes as deltas. A mixin of ``ShardedSimulation``: it decides,
the shards' nodes (``node.Node``) do.
"""

from __future__ import annotations

import numpy as np

from systems.actions import ActionBatch
from worlds.cluster.protocol import decode, routed, unpack


class BorderExchange:
    def _hand_over(self, tick: int) -> np.ndarray:
        """Two-phase transfer of every entity that now belongs to another shard (the balancer
        first moves the borders a step); returns the shards' loads before."""
        n = len(self.shard_range)
        leaving = self.host.all("leaving")
        loads = np.array([load for _, load in leaving], float)
        self.balancer.evaluate(tick, loads, self._placed)
        self.balancer.step()
        parts = [np.column_stack([m[:, 0], np.full(m.shape[0], s), m[:, 1]]) for s, (m, _) in enumerate(leaving)]
        moves = np.concatenate(parts).astype(np.int64) if parts else np.empty((0, 3), np.int64)
        if moves.shape[0] > self.max_handoffs:  # a border that moved far: the rest go next tick
            moves = moves[np.argsort(moves[:, 0], kind="stable")[: self.max_handoffs]]
            self.stats.handoffs_deferred += 1
        if self.balancer.moving:
            self.stats.rebalance_moves += int(moves.shape[0])
        split = self.map.layout.split.copy()
        out = {}
        for s in range(n):
            by_dest = {}
            for d in range(n):
                ids = moves[(moves[:, 1] == s) & (moves[:, 2] == d), 0]
                if ids.size:
                    by_dest[d] = ids
                    self.stats.handoffs += int(ids.size)
            out[s] = (tick, split, by_dest)
        sent = self.host.each("hand_out", out)
        for s in range(n):
            for d, frame in sent[s]:
                self.transport.post(d, frame)
        offers = {d: (tick, self.transport.take(d)) for d in range(n) if self.transport.pending(d)}
        if not offers:
            return loads
        acks = self.host.each("hand_in", offers)
        for d in sorted(acks):
            for src, frame in acks[d]:
                self.transport.post(src, frame)
        for s in range(n):
            frames = self.transport.take(s)
            for f in frames:
                ack = decode(f)
                self._set_owner(unpack(ack.ids, np.int64), ack.src)
            if frames:
                self.host.later(s, "hand_done", frames)
        return loads

    def _route(self, tick: int, batch: ActionBatch) -> list[tuple[np.ndarray, ActionBatch]]:
        """Each action to the owner of its actor, as protocol bytes. A shard that does not
        hold an actor it was sent (the routing it was given is older than a hand-off) forwards
        the action to the owner it knows: an action is never dropped on the way."""
        n = len(self.shard_range)
        owner = (self.router or self.owner_of)(batch.actor)
        everything = np.arange(batch.n)
        for s in range(n):
            idx = everything[owner == s]
            if idx.size:
                self.transport.send(s, routed(tick, -1, s, "route", batch, idx))
        held: list[list[np.ndarray]] = [[] for _ in range(n)]
        for _ in range(n + 1):
            waiting = {s: (self.transport.take(s),) for s in range(n) if self.transport.pending(s)}
            if not waiting:
                break
            got = self.host.each("route_in", waiting)
            for s in sorted(got):
                for idx, owned in got[s]:
                    actor = batch.actor[idx]
                    now = self.owner_of(actor)
                    here = owned | ~self._alive_anywhere(actor)
                    held[s].append(idx[here])
                    for d in np.unique(now[~here]).tolist():
                        fwd = idx[~here][now[~here] == d]
                        self.transport.send(d, routed(tick, s, d, "forward", batch, fwd))
                        self.stats.forwarded += int(fwd.size)
        else:
            raise RuntimeError(f"tick {tick}: actions still forwarded after {n} hops")
        own = []
        for s in range(n):
            idx = np.sort(np.concatenate(held[s])) if held[s] else np.empty(0, np.int64)
            own.append((idx, batch.take(idx)))
        return own

    def _ghosts_at_start(self, tick: int, own) -> None:
        """Interest drawn anew; ghosts hear of what changed since they last heard (the
        components in ``self.stale``: the tick's late steps, and the API between ticks).

        Who sees what: each shard's owned entities within the interest radius of another
        shard, the entities another shard's actions name, (from shard 0) the world's entities
        without a position, which every shard holds, and (for shard 0's event director) every
        player and event mob."""
        named = [np.unique(np.concatenate([sub.actor, sub.target])) for _, sub in own]
        named_owner = [self.owner_of(ids) for ids in named]
        comps = _names(self.stale)
        args = {s: (tick, {d: named[d][named_owner[d] == s] for d in self.shard_range if d != s}, comps, 1)
                for s in self.shard_range}
        self._post_deltas(self.host.each("interest", args), lag=1)
        self.stale.clear()

    def _refresh(self, tick: int, comps, lag: int = 0) -> None:
        """Owners send their ghosts' changes (of ``comps``; everything when None), and new
        ghosts whole. ``lag``: 0 for a refresh before a step that reads what changed in the
        same tick, 1 at a tick's start (what nothing read since the change), for the stats."""
        names = None if comps is None else _names(comps)
        self._post_deltas(self.host.each("deltas", {s: (tick, names, lag) for s in self.shard_range}), lag)

    def _post_deltas(self, got: dict, lag: int) -> None:
        """Send the deltas; each changed row is shown on its ghost at the destination's next
        round trip: the sync lag, from the round trip that changed it (the last one, or for
        changes at a tick's start, the end of the tick before)."""
        since = self.host.last_end if lag == 0 else self._tick_end
        rows = [0] * len(self.shard_range)
        for s in self.shard_range:
            for dst, frame, changed in got[s]:
                self.stats.lag_rows[lag] += changed
                rows[dst] += changed
                self.transport.post(dst, frame)
        self._deliver_later(None if since is None else
                            {d: (lambda t, n=n: self.stats.lag_ms.append(((t - since) * 1e3, n))) for d, n in
                             enumerate(rows) if n})

    def _deliver_later(self, after: dict | None = None) -> None:
        """What waits for each shard is taken at its next round trip."""
        for d in self.shard_range:
            if self.transport.pending(d):
                self.host.later(d, "deliver", self.transport.take(d), after=(after or {}).get(d))


def _names(comps) -> list[str]:
    return sorted(c.name for c in comps)
