"""Deaths and rebirths: what happens to those the apply step killed (tick step 3, before movement).

A killed NPC stays as a lootable corpse for ``rules.corpse_s``, then is despawned and, when
its population asks for it, replaced by a newcomer in the population's spawn area (a new id:
the old handle stays dead). A killed player is revived after ``rules.respawn_s`` with full
health at a point of its spawn area; actions it sent before its revival are void (validation
compares their event time with ``Player.life_start_ms``). All changes go through the command
buffer or plain column writes: nothing moves tables mid-system.
"""

from __future__ import annotations

import numpy as np

from ecs import Phase, System
from systems.components import Ghost, Health, Inventory, Link, Loot, Npc, Player, Position, Velocity
from systems.spawning import spawn_points
from systems.validation import clock_error_ms

STREAM_RESPAWN = 7


class Deaths:
    """Who died lately, and in which tick: told by the systems that kill (the apply step, NPC
    combat) as they kill, read by those that react to a death (the anomaly score times target
    acquisitions from it). A small sorted list, so a reader looks a death up in cache instead
    of probing the dead entity's row, and a reader need not care whether the corpse is still
    there.

    ``ids`` (k,) int64 ascending, ``tick`` (k,) int64 the tick of each one's latest death.
    A death is kept for ``keep_ticks`` ticks, as long as its longest-waiting reader asks
    (``keep``). A derived record: rebuilt from ``Health`` (dead, died_tick) it is the same for
    every entity still dead.
    """

    __slots__ = ("ids", "tick", "keep_ticks")

    def __init__(self) -> None:
        self.ids = np.empty(0, np.int64)
        self.tick = np.empty(0, np.int64)
        self.keep_ticks = 0

    def keep(self, ticks: int) -> None:
        """Keep every death at least ``ticks`` ticks."""
        self.keep_ticks = max(self.keep_ticks, int(ticks))

    def record(self, ids: np.ndarray, tick: int) -> None:
        """``ids`` died in ``tick``; deaths older than the horizon are forgotten."""
        ids = np.asarray(ids, np.int64).reshape(-1)
        recent = self.tick >= tick - self.keep_ticks
        if ids.size == 0 and recent.all():
            return
        every = np.concatenate([self.ids[recent], ids])
        when = np.concatenate([self.tick[recent], np.full(ids.shape[0], tick, np.int64)])
        order = np.lexsort((when, every))
        every, when = every[order], when[order]
        latest = np.append(every[1:] != every[:-1], True)  # an id that died twice: its latest death
        self.ids, self.tick = every[latest], when[latest]


class Revived:
    """``ids``: (k,) int64 the players revived this tick (they stand somewhere new)."""

    def __init__(self, ids: np.ndarray) -> None:
        self.ids = ids


class Lifecycle(System):
    # Before movement: a revived player or a newcomer NPC is then in place for the spatial
    # hash and the regions of this very tick.
    phase = Phase.MOVE
    reads = (Npc,)
    writes = (Health, Player, Link, Position, Velocity, Loot, Inventory, Revived)
    reads_others = ()  # each entity's own rows only
    before = ("Movement",)

    def __init__(self, world, defn, npc_archetype, population_of_npc_kind) -> None:
        self._defn = defn
        self._npc_archetype = npc_archetype  # components a replacement NPC gets
        self._npc_pops = population_of_npc_kind  # Npc.kind -> schema Npcs
        self._dead_npcs = world.query(Npc, Health, without=(Ghost,))  # a copy's owner buries it
        self._players = world.query(Player, Health, Position)
        self._player_pops = {i: p for i, p in enumerate(defn.players())}

    def run(self, world, ctx) -> None:
        rules = self._defn.rules
        corpse_ticks = int(round(rules.corpse_s / ctx.dt_s))
        respawn_ticks = int(round(rules.respawn_s / ctx.dt_s))
        for t in self._dead_npcs:
            h = t.columns(Health)
            gone = np.flatnonzero((h.dead != 0) & (h.died_tick + corpse_ticks <= ctx.tick))
            if gone.size == 0:
                continue
            ids = t.ids[gone].copy()
            kinds = t.column(Npc, "kind")[gone].copy()
            order = np.argsort(ids)  # by id: the same on any layout of rows
            ids, kinds = ids[order], kinds[order]
            for e in ids.tolist():
                world.commands.despawn(e)
            for k in np.unique(kinds).tolist():
                pop = self._npc_pops.get(k)  # NPCs of other systems (event mobs) are theirs to replace
                if pop is not None and pop.respawn:
                    self._replace_npcs(world, ctx, pop, k, ids[kinds == k])
        revived = []
        for t in self._players:
            h = t.columns(Health)
            back = np.flatnonzero((h.dead != 0) & (h.died_tick + respawn_ticks <= ctx.tick))
            if back.size == 0:
                continue
            revived.append(t.ids[back].copy())
            p = t.columns(Player)
            for b in np.unique(p.population[back]).tolist():
                rows = back[p.population[back] == b]
                x, y = spawn_points(self._defn, self._player_pops[b].spawn, t.ids[rows], ctx.tick, ctx.rng, STREAM_RESPAWN)
                t.column(Position, "x")[rows] = x
                t.column(Position, "y")[rows] = y
                p.last_x[rows] = x
                p.last_y[rows] = y
            h.hp[back] = h.max_hp[back]
            h.dead[back] = 0
            h.died_tick[back] = -1
            p.life_start_ms[back] = ctx.time_ms
            p.last_move_ms[back] = ctx.time_ms - clock_error_ms(p.jitter_ms[back], self._defn.rules.timing_slack_ms)
            if t.has(Link):
                t.column(Link, "last_recv_ms")[back] = ctx.time_ms  # a dead client's silence is no stall
        world.resources[Revived] = Revived(np.concatenate(revived) if revived else np.empty(0, np.int64))

    def _replace_npcs(self, world, ctx, pop, kind: int, dead_ids: np.ndarray) -> None:
        x, y = spawn_points(self._defn, pop.spawn, dead_ids, ctx.tick, ctx.rng, STREAM_RESPAWN + 1)
        # Each newcomer is keyed by the corpse it replaces: its id does not depend on row order.
        world.commands.spawn_keyed(self._npc_archetype, dead_ids, npc_values(pop, kind, x, y))


def npc_values(pop, kind: int, x: np.ndarray, y: np.ndarray) -> dict:
    """Initial component values of NPCs of population ``pop`` placed at (x, y)."""
    return {
        Position: {"x": x, "y": y},
        Velocity: {},
        Health: {"hp": pop.hp, "max_hp": pop.hp, "dead": 0, "died_tick": -1},
        Npc: {"home_x": x, "home_y": y, "leash_m": pop.leash_m,
              "speed_mps": pop.speed_mps if pop.movement == "wander" else 0.0, "kind": kind,
              "attack_damage": pop.attack_damage, "attack_per_s": pop.attack_per_s,
              "attack_reach_m": pop.attack_reach_m},
        Loot: {"gold": pop.gold, "container": int(pop.container)},
    }
