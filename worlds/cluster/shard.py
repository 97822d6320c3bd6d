"""One shard of a sharded world: a world holding the entities it owns and ghost copies of its
neighbours' border entities, the same schedule one world runs, and its side of replication.

Ghosts are read-only. The shard's systems read them like any entity (so movement, NPC combat
and the cheat checks see across the border exactly what one world would), and whatever they
write into a ghost is put back once the step is over (``snapshot`` / ``restore``): a copy
changes only when its owner says so (``receive_ghosts``). The one exception is the step that
resolves conflict groups, whose writes into others' entities are the group's results: those
are collected (``changes``) and sent to the owners instead.
"""

from __future__ import annotations

import numpy as np

from ecs import Component, Schedule, World
from ecs.hashing import hash_tables
from ecs.ids import EntityRegistry
from systems.components import Borrowed, CheatStats, Ghost, Link
from systems.regions import RegionCell
from systems.replication import Replication
from worlds.cluster.events import stand_by
from worlds.cluster.protocol import GhostDelta, Rows, pack, unpack
from worlds.cluster.rows import ShardEncoder, catalog, write_rows
from worlds.runtime import NPC_ARCHETYPE, PLAYER_ARCHETYPE, index_world, tick_systems


GHOST_SKIPS = (Ghost, Borrowed, RegionCell, CheatStats, Link)


class Shard:
    def __init__(self, index: int, shards: int, defn, allocator: EntityRegistry, shard_map, halo_m: float,
                 max_speed_mps: float) -> None:
        self.index = index
        self.world = World(shard=allocator.shard)
        self.world.registry.share_space(allocator)
        self.world.copy_component = Ghost
        # The layout of regions is the sharded world's to redraw, for all shards at once.
        local = defn.model_copy(update={"regions": defn.regions.model_copy(update={"rebalance": False})})
        systems = tick_systems(self.world, local, max_speed_mps, build=False)
        self.replication = Replication(self.world, index, shard_map, halo_m)
        self.schedule = Schedule([*systems, self.replication])
        stand_by(self)
        # A ghost is sent without what only its owner reads: the layout's bookkeeping (its region
        # cell), a player's cheat statistics and link record.
        self.neighbours = [d for d in range(shards) if d != index]
        self.encoder = ShardEncoder(self.neighbours, skip=GHOST_SKIPS)
        # What each neighbour sees of this shard: sorted, distinct ids (drawn at the barrier).
        self.interest: dict[int, np.ndarray] = {d: np.empty(0, np.int64) for d in self.neighbours}
        self._snap: list[tuple[np.ndarray, dict]] = []

    def index_now(self) -> None:
        index_world(self.world, self.schedule)

    # -- what the shard holds ----------------------------------------------------------------
    def owned_tables(self):
        return [t for t in self.world.tables if not t.has(Ghost) and t.n]

    def copy_tables(self):
        return [t for t in self.world.tables if t.has(Ghost) and t.n]

    def owned_ids(self) -> np.ndarray:
        parts = [t.ids for t in self.owned_tables()]
        return np.concatenate(parts) if parts else np.empty(0, np.int64)

    def unplaced_owned(self) -> np.ndarray:
        """Owned entities without a position (the world's, not a place's)."""
        parts = [t.ids for t in self.owned_tables() if not any(c.name == "Position" for c in t.components)]
        return np.concatenate(parts) if parts else np.empty(0, np.int64)

    def hash_part(self) -> int:
        """This shard's part of the state hash: its owned rows (parts add up modulo 2**64)."""
        return hash_tables(self.owned_tables())

    def counts(self) -> tuple[int, int]:
        owned = sum(t.n for t in self.owned_tables())
        return owned, sum(t.n for t in self.copy_tables())

    # -- ghosts --------------------------------------------------------------------------------
    def ghost_deltas(self, tick: int, components: tuple[Component, ...] | None = None) -> list[tuple[GhostDelta, int]]:
        """The neighbours' deltas (those with something in them), each with how many rows it
        holds already that this one changes."""
        out = []
        for d, (rows, drop) in self.encoder.deltas(self.world, self.interest, components).items():
            if rows or drop.size:
                out.append((GhostDelta(tick, self.index, d, rows, pack(drop, np.int64)), self.encoder.changed[d]))
        return out

    def receive_ghosts(self, deltas: list[GhostDelta], catalog: dict[str, Component]) -> None:
        """Drops first (an entity that changed owner is dropped by the old one and sent whole
        by the new one), then new and changed rows."""
        drops = [unpack(d.drop, np.int64, "GhostDelta.drop") for d in deltas if d.drop]
        if drops:
            self.drop_copies(np.unique(np.concatenate(drops)))
        for d in deltas:
            if d.rows:
                write_rows(self.world, d.rows, catalog, extra={Ghost: {"owner": d.src}})

    def lend(self, rows: list[Rows], owner: int, catalog: dict[str, Component]) -> None:
        """Borrow ``owner``'s rows for this tick's conflict groups (see ``Borrowed``)."""
        write_rows(self.world, rows, catalog, extra={Ghost: {"owner": owner}, Borrowed: {}})

    def return_borrowed(self) -> None:
        for t in [t for t in self.world.tables if t.has(Borrowed) and t.n]:
            self.world.hand_off_many(t.ids.copy())

    def drop_copies(self, ids: np.ndarray) -> None:
        """Remove the copies among ``ids`` (distinct); owned rows and ids not held stay as they are."""
        table, _ = self.world.locate_many(ids)
        copy = np.zeros(ids.shape[0], np.bool_)
        for t in np.unique(table[table >= 0]).tolist():
            if self.world.tables[t].has(Ghost):
                copy |= table == t
        self.world.hand_off_many(ids[copy])

    # -- a step's writes into copies --------------------------------------------------------------
    def snapshot(self, components: tuple[Component, ...]) -> None:
        """Remember the copies' values of ``components`` before a step runs."""
        self._snap = []
        for t in self.copy_tables():
            fields = {(c, f): t.column(c, f).copy() for c in t.components if c in components for f in c.fields}
            if fields:
                self._snap.append((t.ids.copy(), fields))

    def changes(self) -> tuple[list[tuple[np.ndarray, Component, str, np.ndarray]], np.ndarray]:
        """What the step wrote into copies: (ids, component, field, new values) per changed
        field, and the copies it removed."""
        out, gone = [], []
        for ids, fields in self._snap:
            table, row = self.world.locate_many(ids)
            here = table >= 0
            gone.append(ids[~here])
            for (c, f), old in fields.items():
                for t in np.unique(table[here]).tolist():
                    sel = np.flatnonzero(table == t)
                    now = self.world.tables[t].column(c, f)[row[sel]]
                    diff = _bits(now) != _bits(old[sel])
                    if diff.any():
                        out.append((ids[sel][diff], c, f, now[diff].copy()))
        return out, (np.concatenate(gone) if gone else np.empty(0, np.int64))

    def restore(self) -> None:
        """Put the copies back as they were before the step."""
        for ids, fields in self._snap:
            table, row = self.world.locate_many(ids)
            for t in np.unique(table[table >= 0]).tolist():
                sel = np.flatnonzero(table == t)
                for (c, f), old in fields.items():
                    self.world.tables[t].column(c, f)[row[sel]] = old[sel]
        self._snap = []


def shard_catalog(shard: Shard, more=()) -> dict[str, Component]:
    """Every component a row may carry, by name: what the world holds (``more``: a template
    world's), and what the shard's systems may spawn."""
    from systems.apply_actions import TradeOffer

    declared = (c for s in shard.schedule.systems for c in (*s.reads, *s.writes) if hasattr(c, "fields"))
    return catalog([*PLAYER_ARCHETYPE, *NPC_ARCHETYPE, TradeOffer, Ghost, Borrowed, *declared, *more])


def _bits(v: np.ndarray) -> np.ndarray:
    return v.view(np.uint64) if v.dtype.itemsize == 8 else v
