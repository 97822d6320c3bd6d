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
from systems.anomaly_score import HitVictims
from systems.apply_actions import ActionEffects
from systems.components import CheatStats, Ghost, Position
from systems.lifecycle import Deaths
from worlds.cluster.points import PointSet
from worlds.cluster.protocol import GroupResult, pack, unpack
from worlds.cluster.rows import encode_rows, write_rows


class GroupResolution:
    def _order(self, tick: int, batch: ActionBatch, ctx) -> ActionOrderIndex:
        """The tick's order, found once over every action, from the positions of the entities
        they name as their owners hold them now."""
        named = np.unique(np.concatenate([batch.actor, batch.target]))
        owner = self.owner_of(named)
        ids, xs, ys = [], [], []
        for s, sh in enumerate(self.shards):
            mine = named[owner == s]
            table, row = sh.world.locate_many(mine)
            for t in np.unique(table[table >= 0]).tolist():
                held = sh.world.tables[t]
                if held.has(Position) and not held.has(Ghost):
                    sel = table == t
                    ids.append(mine[sel])
                    xs.append(held.column(Position, "x")[row[sel]])
                    ys.append(held.column(Position, "y")[row[sel]])
        points = PointSet(_joined(ids, np.int64), _joined(xs, np.float64), _joined(ys, np.float64))
        return self._orderer.order(batch, points, ctx)

    def _resolved(self, tick: int, batch: ActionBatch, own, order: ActionOrderIndex) -> ActionEffects:
        """Apply happened on each shard for the groups it resolves (set up below, before it
        ran); collect the results, send them to the owners, and give each shard back its own
        actions with their outcomes."""
        effect = np.zeros(batch.n)
        looted = np.zeros(batch.n, np.bool_)
        killed, totals = [], dict(claims_won=0, claims_lost=0, trades_done=0, offers_made=0)
        for s, sh in enumerate(self.shards):
            sub_idx = self._resolving[s]
            res = sh.world.resources.get(ActionEffects)
            if sub_idx.size and res is not None:
                sub = sh.world.resources[ActionBatch]
                batch.status[sub_idx] = sub.status
                effect[sub_idx] = res.effect
                looted[sub_idx] = res.looted_rare
                killed.append(res.killed)
                for k in totals:
                    totals[k] += getattr(res, k)
            changed, gone = sh.changes()
            self._send_results(tick, s, changed, gone)
        self._deliver_results()
        for (idx, sub), sh in zip(own, self.shards):
            sub.status[:] = batch.status[idx]
            sh.world.resources[ActionBatch] = sub
            sh.world.resources[ActionEffects] = ActionEffects(effect[idx], np.empty(0, np.int64),
                                                              looted_rare=looted[idx])
        killed_all = np.unique(np.concatenate(killed)) if killed else np.empty(0, np.int64)
        return ActionEffects(effect, killed_all, looted_rare=looted, **totals)

    def _send_results(self, tick: int, s: int, changed, gone: np.ndarray) -> None:
        """A resolver's writes into entities others own go to their owners, field by field,
        and the copies it removed, to be despawned there."""
        by_owner: dict[int, list] = {}
        for ids, c, f, values in changed:
            owners = self.owner_of(ids)
            for o in np.unique(owners).tolist():
                sel = owners == o
                by_owner.setdefault(o, []).append((ids[sel], c, f, values[sel]))
        for o, parts in by_owner.items():
            self.transport.send(o, GroupResult(tick, s, o, _field_rows(parts, self.catalog, self.shards[o].world)))
        if gone.size:
            owners = self.owner_of(gone)
            for o in np.unique(owners).tolist():
                self.transport.send(o, GroupResult(tick, s, o, [], drop=pack(gone[owners == o], np.int64)))

    def _deliver_results(self) -> None:
        """Owners take the results sent to them: new field values, and the copies removed
        elsewhere (an offer settled, a mob buried) despawned."""
        for d, sh in enumerate(self.shards):
            for m in self.transport.receive(d):
                if isinstance(m, GroupResult):
                    write_rows(sh.world, m.rows, self.catalog)
                    for e in unpack(m.drop, np.int64).tolist():
                        if sh.world.is_alive(e):
                            sh.world.despawn(e)

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
        for s, sh in enumerate(self.shards):
            sub_idx = np.flatnonzero(resolver == s)
            sub_idx = sub_idx[np.argsort(rank[sub_idx], kind="stable")]
            self._resolving.append(sub_idx)
            sub = batch.take(sub_idx)
            touched = np.unique(np.concatenate([sub.actor, sub.target[sub.target != 0]]))
            if touched.size:
                lacking = touched[sh.world.locate_many(touched)[0] < 0]
                owners = self.owner_of(lacking)
                for o in np.unique(owners).tolist():
                    ids = lacking[owners == o]
                    ids = ids[self.shards[o].world.locate_many(ids)[0] >= 0]
                    if ids.size:
                        sh.lend(encode_rows(self.shards[o].world, ids), o, self.catalog)
                        self.stats.borrowed += int(ids.size)
            sh.world.resources[ActionBatch] = sub
            sh.world.resources[ActionOrderIndex] = ActionOrderIndex(
                np.arange(sub.n), order.group[sub_idx], order.effect_ms[sub_idx])
            self.stats.cross_shard_actions += int((self.owner_of(sub.actor) != s).sum()
                                                  + (self.owner_of(sub.target[sub.target != 0]) != s).sum())

    # -- what every shard must hear ---------------------------------------------------------------
    def _tell_deaths(self, before, authoritative: bool) -> None:
        """Every shard learns the step's deaths: all that resolvers found, or (for steps every
        shard computes for what it holds) those of the dead's owners."""
        found = []
        for sh, d0 in zip(self.shards, before):
            d = sh.world.resources.get(Deaths)
            if d is None or d0 is None:
                continue
            new = _new_deaths(d0, d)
            if not authoritative and new[0].size:
                table, _ = sh.world.locate_many(new[0])
                mine = np.array([t >= 0 and not sh.world.tables[t].has(Ghost) for t in table.tolist()], np.bool_)
                new = (new[0][mine], new[1][mine])
            found.append(new)
        if not any(f[0].size for f in found) and all(
                (sh.world.resources.get(Deaths) is None or d0 is None
                 or np.array_equal(sh.world.resources[Deaths].ids, d0[0])) for sh, d0 in zip(self.shards, before)):
            return
        ids = np.concatenate([f[0] for f in found]) if found else np.empty(0, np.int64)
        ticks = np.concatenate([f[1] for f in found]) if found else np.empty(0, np.int64)
        for sh, d0 in zip(self.shards, before):
            d = sh.world.resources.get(Deaths)
            if d is None or d0 is None:
                continue
            d.ids, d.tick = d0
            for t in np.unique(ticks).tolist():
                d.record(np.unique(ids[ticks == t]), t)

    def _tell_hurt(self, tick: int) -> None:
        """A player hurt this tick notes when it will see it. The shard that scored the hit
        writes it where the victim stands; a victim owned elsewhere is told (bites need no
        telling: the victim's owner computes those itself)."""
        for s, sh in enumerate(self.shards):
            hurt = sh.world.resources.get(HitVictims)
            if hurt is None or hurt.ids.size == 0:
                continue
            ids = np.unique(hurt.ids)
            owners = self.owner_of(ids)
            for o in np.unique(owners[owners != s]).tolist():
                mine = ids[owners == o]
                parts = [(mine, CheatStats, "hurt_ms", np.full(mine.size, hurt.seen_ms))]
                self.transport.send(o, GroupResult(tick, s, o, _field_rows(parts, self.catalog, self.shards[o].world)))
        for d, sh in enumerate(self.shards):
            for m in self.transport.receive(d):
                write_rows(sh.world, m.rows, self.catalog)


def _field_rows(parts, comps, world) -> list:
    """Rows messages for (ids, component, field, values) parts: one per field, addressed to
    rows the owner holds (the archetype is the owner's)."""
    from worlds.cluster.protocol import Column, Rows

    out = []
    for ids, c, f, values in parts:
        table, _ = world.locate_many(ids)
        for t in np.unique(table[table >= 0]).tolist():
            if not world.tables[t].has(c):  # a victim without the field (an NPC has no stats)
                continue
            sel = table == t
            arche = sorted(x.name for x in world.tables[t].components)
            out.append(Rows(arche, pack(ids[sel], np.int64), [Column(c.name, f, values.dtype.str, pack(values[sel]))]))
    return out


def _deaths_copy(world):
    d = world.resources.get(Deaths)
    return None if d is None else (d.ids.copy(), d.tick.copy())


def _new_deaths(before, deaths: Deaths) -> tuple[np.ndarray, np.ndarray]:
    ids0, t0 = before
    key0 = set(zip(ids0.tolist(), t0.tolist()))
    new = [(i, t) for i, t in zip(deaths.ids.tolist(), deaths.tick.tolist()) if (i, t) not in key0]
    return (np.array([i for i, _ in new], np.int64), np.array([t for _, t in new], np.int64))


def _joined(parts: list[np.ndarray], dtype) -> np.ndarray:
    return np.concatenate(parts) if parts else np.empty(0, dtype)
