"""Conflict groups across shards: one order for the tick, each group resolved in one place.

The order is found once over every action, with the code one world runs, from the positions of
the entities the actions name as their owners hold them. Each group then goes to the owner of
its lowest actor id (a rule that does not depend on where a border runs), which borrows the
rows it lacks for the tick, applies the group, and sends what it wrote into others' entities to
their owners, with the outcome of their actions. Deaths, and the hurt of players hit from
across a border, are told to every shard. A mixin of ``ShardedSimulation``.
"""

from __future__ import annotations

import numpy as np

from systems.action_order import ActionOrderIndex
from systems.actions import ActionBatch
from systems.apply_actions import ActionEffects
from worlds.cluster.points import PointSet
from worlds.cluster.protocol import Fields, GroupResult, encode, pack, routed


class GroupResolution:
    def _named_by_owner(self, batch: ActionBatch) -> dict[int, np.ndarray]:
        """The entities the tick's actions name, by owner (whose positions order them)."""
        named = np.unique(np.concatenate([batch.actor, batch.target]))
        owner = self.owner_of(named)
        return {s: named[owner == s] for s in self.shard_range}

    def _order(self, batch: ActionBatch, ctx, results: dict) -> ActionOrderIndex:
        """The tick's order, found once over every action, from the positions of the entities
        they name as their owners hold them now."""
        found = [results[s]["positions"] for s in self.shard_range]
        points = PointSet(*(np.concatenate([f[k] for f in found]) for k in range(3)))
        return self._orderer.order(batch, points, ctx)

    def _resolved(self, tick: int, batch: ActionBatch, own, results: dict) -> tuple[ActionEffects, list]:
        """Apply happened on each shard for the groups it resolves (set up below, before it
        ran); collect the results, send them to the owners, and give each shard back its own
        actions with their outcomes. Also returns the ids the results freed."""
        effect = np.zeros(batch.n)
        looted = np.zeros(batch.n, np.bool_)
        killed, totals = [], dict(claims_won=0, claims_lost=0, trades_done=0, offers_made=0)
        for s in self.shard_range:
            r = results[s]
            sub_idx = self._resolving[s]
            if sub_idx.size and "resolved" in r:
                status, eff, loot, kill, tot = r["resolved"]
                batch.status[sub_idx] = status
                effect[sub_idx] = eff
                looted[sub_idx] = loot
                killed.append(kill)
                for k in totals:
                    totals[k] += tot[k]
            self._send_results(tick, s, *r["changes"])
        freed = self._deliver_results()
        for (idx, sub), s in zip(own, self.shard_range):
            sub.status[:] = batch.status[idx]
            self.host.later(s, "outcomes", sub.status.copy(), effect[idx], looted[idx])
        killed_all = np.unique(np.concatenate(killed)) if killed else np.empty(0, np.int64)
        return ActionEffects(effect, killed_all, looted_rare=looted, **totals), freed

    def _send_results(self, tick: int, s: int, changed, gone: np.ndarray) -> None:
        """A resolver's writes into entities others own go to their owners, field by field,
        and the copies it removed, to be despawned there."""
        by_owner: dict[int, list] = {}
        for ids, c, f, values in changed:
            owners = self.owner_of(ids)
            for o in np.unique(owners).tolist():
                sel = owners == o
                by_owner.setdefault(o, []).append(_fields(ids[sel], c, f, values[sel]))
        for o, parts in by_owner.items():
            self.transport.send(o, GroupResult(tick, s, o, [], fields=parts))
        if gone.size:
            owners = self.owner_of(gone)
            for o in np.unique(owners).tolist():
                self.transport.send(o, GroupResult(tick, s, o, [], drop=pack(gone[owners == o], np.int64)))

    def _deliver_results(self) -> list:
        """Owners take the results sent to them now (new field values, and the copies removed
        elsewhere despawned), so that what they free is freed at this step's sync point."""
        waiting = {d: (self.transport.take(d),) for d in self.shard_range if self.transport.pending(d)}
        got = self.host.each("deliver", waiting) if waiting else {}
        return [e for d in sorted(got) for e in got[d]]

    def _before_apply(self, tick: int, batch: ActionBatch, order: ActionOrderIndex) -> None:
        """Give each group to the owner of its lowest actor id, with the rows it touches."""
        live = (order.group >= 0) & (batch.status == 0) & (batch.kind != 1)
        resolver = np.full(batch.n, -1, np.int64)
        if live.any():
            labels, inv = np.unique(order.group[live], return_inverse=True)
            lowest = np.full(labels.shape[0], np.iinfo(np.int64).max)
            np.minimum.at(lowest, inv, batch.actor[live])
            resolver[live] = self.owner_of(lowest)[inv]
        rank = np.empty(batch.n, np.int64)
        rank[order.perm] = np.arange(batch.n)
        self._resolving = []
        touched = {}
        for s in self.shard_range:
            sub_idx = np.flatnonzero(resolver == s)
            sub_idx = sub_idx[np.argsort(rank[sub_idx], kind="stable")]
            self._resolving.append(sub_idx)
            t = np.unique(np.concatenate([batch.actor[sub_idx], batch.target[sub_idx][batch.target[sub_idx] != 0]]))
            if t.size:
                touched[s] = (t,)
        lacking = self.host.each("lacking", touched) if touched else {}
        wanted: dict[int, dict[int, np.ndarray]] = {}
        for s in sorted(lacking):
            owners = self.owner_of(lacking[s])
            for o in np.unique(owners).tolist():
                wanted.setdefault(o, {})[s] = lacking[s][owners == o]
        loans = self.host.each("loans", {o: (tick, w) for o, w in wanted.items()}) if wanted else {}
        for o in sorted(loans):
            for s, frame, count in loans[o]:
                self.transport.post(s, frame)
                self.stats.borrowed += count
        self._deliver_later()
        for s in self.shard_range:
            sub_idx = self._resolving[s]
            frame = self.transport.count(encode(routed(tick, -1, s, "resolve", batch, sub_idx)))
            self.host.later(s, "resolve", frame, order.group[sub_idx], order.effect_ms[sub_idx])
            actor, target = batch.actor[sub_idx], batch.target[sub_idx]
            self.stats.cross_shard_actions += int((self.owner_of(actor) != s).sum()
                                                  + (self.owner_of(target[target != 0]) != s).sum())

    # -- what every shard must hear ---------------------------------------------------------------
    def _tell_deaths(self, results: dict) -> None:
        """Every shard learns the step's deaths: all that resolvers found, or (for steps every
        shard computes for what it holds) those of the dead's owners."""
        found = {s: results[s]["deaths"] for s in self.shard_range if results[s].get("deaths") is not None}
        if not any(f[0].size for f in found.values()) and all(f[2] for f in found.values()):
            return
        parts = [found[s] for s in sorted(found)]
        ids = np.concatenate([f[0] for f in parts]) if parts else np.empty(0, np.int64)
        ticks = np.concatenate([f[1] for f in parts]) if parts else np.empty(0, np.int64)
        for s in sorted(found):
            self.host.later(s, "deaths", ids, ticks)

    def _tell_hurt(self, tick: int, results: dict) -> None:
        """A player hurt this tick notes when it will see it. The shard that scored the hit
        writes it where the victim stands; a victim owned elsewhere is told (bites need no
        telling: the victim's owner computes those itself)."""
        for s in self.shard_range:
            if "hurt" not in results[s]:
                continue
            ids, seen_ms = results[s]["hurt"]
            owners = self.owner_of(ids)
            for o in np.unique(owners[owners != s]).tolist():
                mine = ids[owners == o]
                part = _fields(mine, "CheatStats", "hurt_ms", np.full(mine.size, seen_ms))
                self.transport.send(o, GroupResult(tick, s, o, [], fields=[part]))
        self._deliver_later()


def _fields(ids: np.ndarray, component: str, field: str, values: np.ndarray) -> Fields:
    return Fields(component, field, values.dtype.newbyteorder("<").str, pack(ids, np.int64), pack(values))
