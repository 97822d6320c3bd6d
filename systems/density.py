"""Tick step 8 (first half): the density field the event director reads.

The world is cut into coarse square cells (``events.cell_m``, fixed when the world starts, so
the field does not depend on how regions or shards are laid out). Every ``density_every_ticks``
the living, connected players of each cell are counted, and the counts feed two exponential
averages per cell: a short one (``fast``, half-life ``fast_half_life_s``) that a sudden crowd
moves within a few ticks, and a long one (``slow``) that is the baseline. Their difference is
the cell's trend (players): > 0 rising, < 0 falling. Counting (``DensityCount``, over the rows a
world owns) and folding (``DensityField``) are two steps, so that a sharded world can add its
shards' counts up in between. Living NPCs (event mobs included) are
counted every ``npc_every_ticks`` into a long average of their own: they drift slowly, and a
hundred thousand of them cost more to count than everything else here.

The update walks every cell's columns in row order, once: at 50 m cells on the 4 km continent
that is 6,400 cells, ~0.07 ms with cold caches. (Smoothing only the cells players are in or
left recently was tried: the scattered accesses cost more than the sequential pass they save,
at least until a map has many times more cells than players.)

Two flags per cell carry hysteresis, so a density hovering at a threshold does not flap them:
``crowded`` rises at ``fast >= comfort_players`` and falls below ``comfort * (1 - hysteresis)``;
``spiking`` rises at ``trend >= spike_players`` and falls below ``spike_players * (1 - hysteresis)``.

Each cell is an entity with a ``DensityCell`` component (no Position: it is not in the spatial
index), so the field is logical state: in the state hash, replayed exactly, the same on any
region layout. ``DensityGrid`` (a resource) holds the geometry, the scratch counts and the
onsets seen, for reporting; nothing the director decides comes from it but the geometry.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from ecs import Component, Phase, System
from ecs.config import JIT
from systems.components import Ghost, Health, Npc, Player, Position

DensityCell = Component(
    "DensityCell",
    [
        ("cell", "i4"),  # col + row * n_cols in the coarse grid
        ("players", "f8"),  # living, connected players at the last update
        ("npcs", "f8"),  # living NPCs (event mobs included) at the last update
        ("fast", "f8"),  # players, short-term average: what crowding and budgets are judged on
        ("slow", "f8"),  # players, long-term average: the baseline a spike rises from
        ("npcs_avg", "f8"),  # npcs, long-term average
        ("trend", "f8"),  # fast - slow (players): > 0 rising, < 0 falling
        ("crowded", "u1"),
        ("spiking", "u1"),
        ("rise_tick", "i8"),  # first tick the raw count stood spike_players above slow (-1: not now)
        ("primed", "u1"),  # the averages have been started from a first count
    ],
    defaults={"cell": -1, "rise_tick": -1},
)

# Entries of the knob vector ``_smooth`` reads.
(KN_ALPHA_FAST, KN_ALPHA_SLOW, KN_COMFORT, KN_CROWD_EXIT, KN_SPIKE, KN_SPIKE_EXIT, KN_ALPHA_NPCS, KN_TICK,
 KN_WITH_NPCS) = range(9)


@njit(**JIT)
def _cell_of(x, y, origin_x, origin_y, inv_cell, n_cols, n_rows):
    """Row-major cell of one point; points outside the grid (or NaN) are clamped to the edge."""
    qx = (x - origin_x) * inv_cell
    qy = (y - origin_y) * inv_cell
    col = 0 if not qx >= 1.0 else min(int(qx), n_cols - 1)
    row = 0 if not qy >= 1.0 else min(int(qy), n_rows - 1)
    return row * n_cols + col


@njit(**JIT)
def _count_players(x, y, dead, connected, geom, counts):
    """Add each living, connected player to its cell.

    x, y: (n,) float64; dead, connected: (n,) uint8; all read. geom: (5,) float64 origin_x,
    origin_y, 1 / cell_m, n_cols, n_rows, read. counts: (C,) float64, incremented.
    """
    n_cols, n_rows = int(geom[3]), int(geom[4])
    for i in range(x.shape[0]):
        if dead[i] == 0 and connected[i] != 0:
            counts[_cell_of(x[i], y[i], geom[0], geom[1], geom[2], n_cols, n_rows)] += 1.0


@njit(**JIT)
def _count_alive(x, y, dead, geom, counts):
    """Add each living entity to its cell. x, y: (n,) float64, dead: (n,) uint8, read; geom as
    ``_count_players``; counts: (C,) float64, incremented."""
    n_cols, n_rows = int(geom[3]), int(geom[4])
    for i in range(x.shape[0]):
        if dead[i] == 0:
            counts[_cell_of(x[i], y[i], geom[0], geom[1], geom[2], n_cols, n_rows)] += 1.0


@njit(**JIT)
def _smooth(cell, raw, state, flags, rise_tick, knobs, onsets):
    """Fold one count into each cell's averages and flags.

    cell: (m,) int32 cell of each row, read. raw: (2, C) float64 players and NPCs counted by
    cell, read. state: 6 (m,) float64 columns players, npcs, fast, slow, npcs_avg, trend, read
    and written (npcs and npcs_avg only when ``knobs[KN_WITH_NPCS]``). flags: 3 (m,) uint8
    columns crowded, spiking, primed, read and written. rise_tick: (m,) int64, read and
    written: set at the first update where the raw count stands ``spike`` above the slow
    average (or at the onset itself), so the caller can tell how many ticks the averages took
    to flag it; the caller resets it after reading. knobs: (9,) float64 (``KN_*``), read.
    onsets: (C, 2) uint8, set to 1 where a cell's spiking (column 0) or crowded (column 1)
    flag rose (the caller clears them). Returns how many rose.
    """
    players, npcs, fast, slow, npcs_avg, trend = state
    crowded, spiking, primed = flags
    a_fast, a_slow, a_npcs = knobs[KN_ALPHA_FAST], knobs[KN_ALPHA_SLOW], knobs[KN_ALPHA_NPCS]
    comfort, crowd_exit = knobs[KN_COMFORT], knobs[KN_CROWD_EXIT]
    spike, spike_exit = knobs[KN_SPIKE], knobs[KN_SPIKE_EXIT]
    tick = np.int64(knobs[KN_TICK])
    with_npcs = knobs[KN_WITH_NPCS] != 0.0
    found = 0
    for r in range(cell.shape[0]):
        c = cell[r]
        p = raw[0, c]
        players[r] = p
        if with_npcs:
            npcs[r] = raw[1, c]
        if primed[r] == 0:  # first count: start the averages there, no false spike
            fast[r] = p
            slow[r] = p
            npcs_avg[r] = npcs[r]
            primed[r] = 1
        else:
            fast[r] += a_fast * (p - fast[r])
            slow[r] += a_slow * (p - slow[r])
            if with_npcs:
                npcs_avg[r] += a_npcs * (npcs[r] - npcs_avg[r])
        f = fast[r]
        trend[r] = f - slow[r]
        if crowded[r] == 0 and f >= comfort:
            crowded[r] = 1
            onsets[c, 1] = 1
            found += 1
        elif crowded[r] != 0 and f < crowd_exit:
            crowded[r] = 0
        if spiking[r] == 0 and trend[r] >= spike:
            spiking[r] = 1
            onsets[c, 0] = 1
            found += 1
            if rise_tick[r] < 0:  # the raw count and the averages rose in the same update
                rise_tick[r] = tick
        elif spiking[r] != 0 and trend[r] < spike_exit:
            spiking[r] = 0
        # When did the raw count (not yet the averages) first stand a spike above the baseline?
        if spiking[r] == 0 and p - slow[r] >= spike:
            if rise_tick[r] < 0:
                rise_tick[r] = tick
        elif spiking[r] == 0:
            rise_tick[r] = -1
    return found


class DensityGrid:
    """The coarse grid's geometry, scratch counts, and what the field saw (for the summary).

    ``geom``: (5,) float64 origin_x, origin_y, 1 / cell_m, n_cols, n_rows. ``raw``: (2, C)
    players and NPCs at the last count. ``spike_onsets``, ``crowd_onsets``: (tick, cell) of
    each flag that rose; ``spike_detect_ticks``: for each spike onset, ticks from the raw
    count's rise to the flag.
    """

    def __init__(self, bounds: tuple[float, float, float, float], cell_m: float) -> None:
        self.bounds = tuple(float(b) for b in bounds)
        self.cell_m = float(cell_m)
        # As ``worlds.schema_events.grid_shape`` (which checks the count when the file is read).
        x0, y0, x1, y1 = self.bounds
        self.n_cols = max(1, math.ceil((x1 - x0) / self.cell_m))
        self.n_rows = max(1, math.ceil((y1 - y0) / self.cell_m))
        self.count = self.n_cols * self.n_rows
        self.geom = np.array([self.bounds[0], self.bounds[1], 1.0 / self.cell_m, self.n_cols, self.n_rows],
                             np.float64)
        self.raw = np.zeros((2, self.count), np.float64)
        self.onsets = np.zeros((self.count, 2), np.uint8)
        self.spike_onsets: list[tuple[int, int]] = []
        self.crowd_onsets: list[tuple[int, int]] = []
        self.spike_detect_ticks: list[int] = []
        self.updated_tick = -1

    def cell_of(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """(n,) int64 cell of each point (clamped into the grid)."""
        x = np.asarray(x, np.float64)
        y = np.asarray(y, np.float64)
        col = np.clip(np.floor((x - self.bounds[0]) / self.cell_m), 0, self.n_cols - 1)
        row = np.clip(np.floor((y - self.bounds[1]) / self.cell_m), 0, self.n_rows - 1)
        return (row * self.n_cols + col).astype(np.int64)

    def centres(self) -> tuple[np.ndarray, np.ndarray]:
        """(C,) float64 x and y of every cell's centre, clamped into the world."""
        c = np.arange(self.count)
        x = self.bounds[0] + (c % self.n_cols + 0.5) * self.cell_m
        y = self.bounds[1] + (c // self.n_cols + 0.5) * self.cell_m
        return np.minimum(x, self.bounds[2]), np.minimum(y, self.bounds[3])


def spawn_cells(world, grid: DensityGrid, extra: tuple[Component, ...] = ()) -> np.ndarray:
    """One entity per cell with ``DensityCell`` (and ``extra`` components), in cell order.

    Called when the world is built, outside any tick (the world is not locked)."""
    return world.spawn_batch((DensityCell, *extra), grid.count,
                             {DensityCell: {"cell": np.arange(grid.count, dtype=np.int32)}})


class DensityCount(System):
    """The raw counts of each cell, every ``density_every_ticks`` (NPCs every
    ``npc_every_ticks``), over the rows this world owns: copies of another shard's entities
    are theirs to count. A sharded world adds its shards' counts up (whole numbers: in any
    order, the same sum) before the field folds them in."""

    phase = Phase.ORCHESTRATE
    reads = (Position, Player, Npc, Health)
    writes = (DensityGrid,)
    reads_others = ()

    def __init__(self, world, defn, grid: DensityGrid) -> None:
        self.cfg = defn.events
        self.grid = grid
        self._players = world.query(Player, Position, Health, without=(Ghost,))
        self._npcs = world.query(Npc, Position, Health, without=(Ghost,))
        self._player_cache: dict[int, tuple] = {}

    def counts(self, tick: int) -> tuple[bool, bool]:
        """Which rows of ``raw`` (players, NPCs) are counted at ``tick``."""
        if tick % self.cfg.density_every_ticks:
            return False, False
        return True, tick % self.cfg.npc_every_ticks == 0

    def run(self, world, ctx) -> None:
        players, npcs = self.counts(ctx.tick)
        g = self.grid
        if players:  # players (who make spikes) at the field's cadence, NPCs (who drift) at their own
            g.raw[0] = 0.0
            for t in self._players:
                _count_players(*self._player_columns(t), g.geom, g.raw[0])
        if npcs:
            g.raw[1] = 0.0
            for t in self._npcs:
                _count_alive(t.column(Position, "x"), t.column(Position, "y"), t.column(Health, "dead"), g.geom,
                             g.raw[1])

    def _player_columns(self, t) -> tuple:
        """x, y, dead, connected of one player table, kept while the table keeps its size and
        capacity (players come and go rarely, ticks are many)."""
        key = (id(t), t.n, t.capacity)
        cols = self._player_cache.get(id(t))
        if cols is None or cols[0] != key:
            cols = (key, (t.column(Position, "x"), t.column(Position, "y"), t.column(Health, "dead"),
                          t.column(Player, "connected")))
            self._player_cache[id(t)] = cols
        return cols[1]


class DensityField(System):
    """Folds the counts ``DensityCount`` took into each cell's averages and flags."""

    phase = Phase.ORCHESTRATE
    reads = (DensityGrid,)
    writes = (DensityCell, DensityGrid)
    reads_others = ()
    after = ("DensityCount",)

    def __init__(self, world, defn, extra: tuple[Component, ...] = (), build: bool = True) -> None:
        """Build the grid and (with ``build``) its cell entities; ``extra``: components the
        cells also carry (the director's ``DirectorCell``). A shard builds no cells: the
        world's are dealt to the shards with its other entities."""
        cfg = defn.events
        self.cfg = cfg
        self.grid = DensityGrid(defn.bounds, cfg.cell_m)
        if build:
            spawn_cells(world, self.grid, extra)
        world.resources[DensityGrid] = self.grid
        self._cells = world.query(DensityCell)
        self._cached_key: tuple | None = None
        self._cached: tuple = ()
        dt_s = 1.0 / defn.world.tick_rate_hz
        step_s = cfg.density_every_ticks * dt_s
        h = cfg.hysteresis
        npc_step_s = np.lcm(cfg.npc_every_ticks, cfg.density_every_ticks) * dt_s
        self.knobs = np.zeros(9, np.float64)  # KN_*
        self.knobs[:7] = [1.0 - 0.5 ** (step_s / cfg.fast_half_life_s), 1.0 - 0.5 ** (step_s / cfg.slow_half_life_s),
                          cfg.comfort_players, cfg.comfort_players * (1.0 - h), cfg.spike_players,
                          cfg.spike_players * (1.0 - h), 1.0 - 0.5 ** (npc_step_s / cfg.slow_half_life_s)]

    def run(self, world, ctx) -> None:
        if ctx.tick % self.cfg.density_every_ticks:
            return
        g = self.grid
        self.knobs[KN_TICK] = ctx.tick
        self.knobs[KN_WITH_NPCS] = 1.0 if ctx.tick % self.cfg.npc_every_ticks == 0 else 0.0
        for t in self._cells:
            cell, state, flags, rise = self._columns(t)
            if _smooth(cell, g.raw, state, flags, rise, self.knobs, g.onsets):
                self._note_onsets(ctx.tick, t.columns(DensityCell))
        g.updated_tick = ctx.tick

    def _columns(self, t) -> tuple:
        """The DensityCell columns ``_smooth`` takes, kept while the table keeps its size and
        capacity (so its arrays are the same ones): the cells never come or go, and looking
        eleven columns up every tick costs a good part of smoothing them."""
        key = (id(t), t.n, t.capacity)
        if self._cached_key != key:
            d = t.columns(DensityCell)
            self._cached = (d.cell, (d.players, d.npcs, d.fast, d.slow, d.npcs_avg, d.trend),
                            (d.crowded, d.spiking, d.primed), d.rise_tick)
            self._cached_key = key
        return self._cached

    def _note_onsets(self, tick: int, d) -> None:
        g = self.grid
        for c in np.flatnonzero(g.onsets[:, 1]).tolist():
            g.crowd_onsets.append((tick, c))
        spiked = np.flatnonzero(g.onsets[:, 0])
        g.onsets[:] = 0
        if spiked.size:
            row_of = np.empty(g.count, np.int64)
            row_of[d.cell] = np.arange(d.cell.shape[0])
            for c in spiked.tolist():
                g.spike_onsets.append((tick, c))
                g.spike_detect_ticks.append(tick - int(d.rise_tick[row_of[c]]))
                d.rise_tick[row_of[c]] = -1
