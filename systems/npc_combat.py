"""Tick step 6 (after the players' actions): hostile NPCs bite the players next to them.

Each living NPC with an attack bites, with a keyed chance of ``attack_per_s * dt`` per tick,
the nearest living player within its reach (ties by index): damage adds up like any other
(no overkill: a bite takes at most what is left), and a player brought to 0 dies. The players
bitten are published as ``NpcHits`` so the anomaly score can time their reactions. It reads the
spatial index of the tick, as every system that looks at neighbours does.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from ecs import Phase, System
from ecs.config import JIT
from ecs.rng import key_uniform
from systems.columns import locate, scatter
from systems.components import Health, Npc, Player
from systems.lifecycle import Deaths
from systems.spatial_index import SpatialIndex

STREAM_BITE = 41


class NpcHits:
    """``victims``: (k,) int64 ids of the players bitten this tick; ``damage``: total dealt."""

    def __init__(self, victims: np.ndarray, damage: float) -> None:
        self.victims = victims
        self.damage = damage


@njit(**JIT)
def _bite(pairs, biter, x, y, npc_ids, damage, chance, reach, seed, tick, target_hp, out_victim):
    """Choose, for each biting NPC, its nearest player in reach (the lower id on a tie), and
    apply the bites in NPC order (the result does not depend on that order: a bite takes what
    health is left).

    pairs: (m, 2) int64 index pairs (NPC, player) within the largest reach, read. biter: (n,)
    bool per index point, read. x, y: (n,) float64; npc_ids: (n,) int64; damage, chance, reach:
    (n,) float64 per index point (NPC columns), read. target_hp: (n,) float64, read and written
    for players. out_victim: (n,) int64, written: the player each NPC bit (-1 none).
    Returns the total damage dealt.
    """
    n = x.shape[0]
    best = np.full(n, -1, np.int64)
    best_d2 = np.full(n, np.inf)
    for k in range(pairs.shape[0]):
        a = pairs[k, 0]
        b = pairs[k, 1]
        if biter[b] and not biter[a]:
            a, b = b, a
        if not biter[a] or biter[b]:
            continue
        d2 = (x[a] - x[b]) ** 2 + (y[a] - y[b]) ** 2
        # Ties go to the lower id, not the lower index: the index's order is the tables' row
        # order, which differs between one world and its shards.
        if d2 <= reach[a] * reach[a] and (d2 < best_d2[a] or (d2 == best_d2[a] and npc_ids[b] < npc_ids[best[a]])):
            best[a] = b
            best_d2[a] = d2
    dealt = 0.0
    for a in range(n):
        out_victim[a] = -1
        if best[a] < 0 or key_uniform(seed, tick, npc_ids[a], STREAM_BITE, 0) >= chance[a]:
            continue
        p = best[a]
        if target_hp[p] <= 0.0:
            continue
        bite = min(damage[a], target_hp[p])
        target_hp[p] -= bite
        dealt += bite
        out_victim[a] = p
    return dealt


class NpcCombat(System):
    phase = Phase.APPLY
    reads = (SpatialIndex, Npc, Player)
    writes = (Health, NpcHits, Deaths)
    # The biters and their prey: who bites whom is a matter of distance (positions from the
    # index); a bite's effect is the prey's own health, read where the prey is owned.
    reads_others = (Npc, Player)
    after = ("ApplyActions",)

    def __init__(self, world) -> None:
        self._npcs = world.query(Npc)

    def run(self, world, ctx) -> None:
        index: SpatialIndex = world.resources[SpatialIndex]
        world.resources[NpcHits] = NpcHits(np.empty(0, np.int64), 0.0)
        if not any((t.column(Npc, "attack_per_s") > 0).any() for t in self._npcs):
            return
        damage, is_npc = index.column(Npc, "attack_damage")
        rate, _ = index.column(Npc, "attack_per_s")
        reach, _ = index.column(Npc, "attack_reach_m")
        hp, _ = index.column(Health, "hp")
        _, is_player = index.column(Player, "team")
        biter = is_npc & index.alive & (rate > 0) & (damage > 0)
        prey = is_player & index.alive
        if not biter.any() or not prey.any():
            return
        pairs = index.grid.pairs_among(biter | prey, float(reach[biter].max()))
        victim = np.empty(index.ids.shape[0], np.int64)
        hp = hp.astype(np.float64)
        dealt = _bite(pairs, biter, index.x, index.y, index.ids, damage, rate * ctx.dt_s, reach,
                      np.uint64(ctx.rng.seed), ctx.tick, hp, victim)
        bitten = np.unique(victim[victim >= 0])
        if bitten.size:
            ids = index.ids[bitten]
            bat = locate(world, ids)
            scatter(world, ids, Health, "hp", hp[bitten], at=bat)
            dead = hp[bitten] <= 0.0
            scatter(world, ids[dead], Health, "dead", np.ones(int(dead.sum())), at=bat.subset(dead))
            scatter(world, ids[dead], Health, "died_tick", np.full(int(dead.sum()), ctx.tick), at=bat.subset(dead))
            deaths = world.resources.get(Deaths)
            if deaths is not None:
                deaths.record(ids[dead], ctx.tick)
        world.resources[NpcHits] = NpcHits(index.ids[bitten], float(dealt))
