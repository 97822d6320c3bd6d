"""Tick step 4 (after the spatial hash): the world cut into regions, who is in which, and where
each action must go.

Regions are the leaves of a k-d tree over the world rectangle: every internal node splits its
rectangle along one axis at one coordinate, so the regions tile the world and a point belongs
to exactly one (half-open: a point on a split goes to the upper side). The tree's shape (how
many regions under each node, which axis) is fixed when the world starts; rebalancing moves
only the split coordinates, to where each side carries its share of the load: one per entity
plus ``action_weight`` per action of the recent window. That makes every layout comparable
with every other, which gives two things:

- a migration cap: between the old and the new layout, splits move along a straight line, and
  the step is cut short (bisection) where it would hand more than ``max_migrations`` entities
  to another region; the rest follows at the next rebalance;
- hysteresis: a rebalance starts only after the load ratio (most loaded region over the mean)
  stayed above ``rebalance_trigger`` for ``rebalance_sustain_ticks`` evaluations, no sooner
  than ``rebalance_min_interval_ticks`` after the last one, and only when the new layout
  improves the ratio by at least ``rebalance_min_gain``; load hovering at the trigger does not
  flap the layout.

Per entity, the ``RegionCell`` component says its region, whether it lies in a border zone (within
``interest_radius_m`` of another region: what a neighbouring shard must see as a ghost), and
whether it crossed into another region this tick. It is bookkeeping of the layout, so it is
kept out of the state hash. Each action is routed to a bit mask of regions: the actor's, the
target's, and every region its reach touches.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from ecs import Component, Phase, System
from ecs.config import JIT
from ecs.rng import mix64
from systems.actions import ActionBatch, ActionKind
from systems.columns import gather
from systems.components import Ghost, Position

MAX_REGIONS = 64  # routes are uint64 bit masks
# A rebalance of more points than this finds its new layout on a fixed sample: the entities whose
# id hashes into one 2**SAMPLE_BITS-th, and every 2**SAMPLE_BITS-th action of the window, each
# weighing that much more. The layout it finds is as good to within a few per cent, and the
# rebalance tick costs a few milliseconds at 100k entities instead of some fifty.
SAMPLE_ABOVE = 20_000
SAMPLE_BITS = 4

RegionCell = Component(
    "RegionCell",
    [("region", "i4"), ("border", "u1"), ("crossed", "u1")],
    defaults={"region": -1},
    hashed=False,
)


# --------------------------------------------------------------------------- kernels


@njit(**JIT)
def sampled(ids, bits, out):
    """ids: (n,) int64, read; out: (n,) bool, written: whether each id's hash falls in the
    fixed sample (its top ``bits`` bits all zero): the same entities whatever the row order."""
    for i in range(ids.shape[0]):
        out[i] = (mix64(np.uint64(ids[i])) >> np.uint64(64 - bits)) == 0


@njit(**JIT)
def _leaf_of(axis, split, left, right, leaf_region, x, y):
    """Region of one point: descend from the root. Tree arrays: (nodes,), read."""
    node = 0
    while left[node] >= 0:
        c = x if axis[node] == 0 else y
        node = left[node] if c < split[node] else right[node]
    return leaf_region[node]


@njit(**JIT)
def _assign(axis, split, left, right, leaf_region, x, y, out):
    """out: (n,) int32, written: the region of each point (x, y: (n,) float64, read)."""
    for i in range(x.shape[0]):
        out[i] = _leaf_of(axis, split, left, right, leaf_region, x[i], y[i])


@njit(**JIT)
def _update_cells(axis, split, left, right, leaf_region, rects, world, radius_m, x, y, region, border, crossed,
                  counts):
    """Assign regions to one table's rows and mark border zones and crossings.

    x, y: (n,) float64, read. region: (n,) int32, read (last tick's) and written. border,
    crossed: (n,) uint8, written. rects: (R, 4) float64 region rectangles, read; world: (4,)
    float64 world rectangle, read. counts: (R,) int64, incremented per region. Returns the
    number of crossings.
    """
    crossings = 0
    for i in range(x.shape[0]):
        r = region[i]
        # Most entities are still inside last tick's rectangle: four compares, no descent.
        inside = r >= 0
        if inside:
            inside = (rects[r, 0] <= x[i]) & (x[i] < rects[r, 2]) & (rects[r, 1] <= y[i]) & (y[i] < rects[r, 3])
        if not inside:
            r = _leaf_of(axis, split, left, right, leaf_region, x[i], y[i])
            if region[i] >= 0 and region[i] != r:
                crossed[i] = 1
                crossings += 1
            else:
                crossed[i] = 0
            region[i] = r
        else:
            crossed[i] = 0
        counts[r] += 1
        # Near an edge of its region that is not the world's edge, a neighbour must see it.
        # (Bitwise, not short-circuit: a quarter of entities are near a border, so branches on
        # it mispredict; four compares are cheaper.)
        near = ((rects[r, 0] > world[0]) & (x[i] - rects[r, 0] <= radius_m)) \
            | ((rects[r, 2] < world[2]) & (rects[r, 2] - x[i] <= radius_m)) \
            | ((rects[r, 1] > world[1]) & (y[i] - rects[r, 1] <= radius_m)) \
            | ((rects[r, 3] < world[3]) & (rects[r, 3] - y[i] <= radius_m))
        border[i] = np.uint8(near)
    return crossings


@njit(**JIT)
def _weighted_cut(c, w, frac, lo, hi):
    """The coordinate that leaves ``frac`` of the weight of points ``c`` (with weights ``w``,
    both (n,) float64, read) below it, halfway between the two points around the cut.

    Linear time: a 4096-bin histogram finds the bin holding the cut, and only that bin's
    points are sorted.
    """
    n = c.shape[0]
    if n == 0:
        return lo + frac * (hi - lo)
    bins = 4096
    cmin = c.min()
    cmax = c.max()
    if cmax <= cmin:
        return cmin
    scale = bins / (cmax - cmin)
    hist = np.zeros(bins + 1, np.float64)
    for i in range(n):
        hist[min(int((c[i] - cmin) * scale), bins - 1)] += w[i]
    target = frac * hist.sum()
    acc = 0.0
    b = 0
    while b < bins - 1 and acc + hist[b] < target:
        acc += hist[b]
        b += 1
    inside = np.empty(n, np.float64)
    wts = np.empty(n, np.float64)
    m = 0
    above = np.inf
    for i in range(n):
        k = min(int((c[i] - cmin) * scale), bins - 1)
        if k == b:
            inside[m] = c[i]
            wts[m] = w[i]
            m += 1
        elif k > b and c[i] < above:
            above = c[i]
    order = np.argsort(inside[:m], kind="mergesort")
    for j in range(m):
        acc += wts[order[j]]
        if acc >= target:
            below = inside[order[j]]
            nxt = inside[order[j + 1]] if j + 1 < m else above
            if nxt == np.inf:
                nxt = hi
            return 0.5 * (below + nxt) if nxt > below else below
    return cmax


@njit(**JIT)
def _route(rects, x, y, reach_m, own, other, out):
    """Bit mask of the regions each action reaches.

    x, y, reach_m: (n,) float64 actor position and reach, read. own, other: (n,) int32 actor's
    and target's region (-1 none), read. out: (n,) uint64, written.
    """
    for i in range(x.shape[0]):
        m = np.uint64(0)
        if own[i] >= 0:
            m |= np.uint64(1) << np.uint64(own[i])
        if other[i] >= 0:
            m |= np.uint64(1) << np.uint64(other[i])
        if reach_m[i] > 0.0:
            r2 = reach_m[i] * reach_m[i]
            for k in range(rects.shape[0]):
                dx = max(rects[k, 0] - x[i], 0.0, x[i] - rects[k, 2])
                dy = max(rects[k, 1] - y[i], 0.0, y[i] - rects[k, 3])
                if dx * dx + dy * dy <= r2:
                    m |= np.uint64(1) << np.uint64(k)
        out[i] = m


# --------------------------------------------------------------------------- layout


class RegionLayout:
    """A k-d tree of ``count`` leaves over ``bounds``. Node arrays have 2 * count - 1 entries:
    ``axis`` (0 x, 1 y), ``split`` coordinate, ``left``/``right`` children (-1 on leaves),
    ``share`` (regions under the left child), ``leaf_region`` (region id of a leaf, else -1)."""

    def __init__(self, bounds: tuple[float, float, float, float], count: int) -> None:
        if not 1 <= count <= MAX_REGIONS:
            raise ValueError(f"region count must be in 1..{MAX_REGIONS}, got {count}")
        self.bounds = tuple(float(b) for b in bounds)
        self.count = count
        nodes = 2 * count - 1
        self.axis = np.zeros(nodes, np.int64)
        self.split = np.zeros(nodes, np.float64)
        self.left = np.full(nodes, -1, np.int64)
        self.right = np.full(nodes, -1, np.int64)
        self.leaf_count = np.zeros(nodes, np.int64)
        self.leaf_region = np.full(nodes, -1, np.int64)
        self._next = 0
        self._region = 0
        self._grow(self.bounds, count)
        self.rects = self._rects()

    def _grow(self, rect, count) -> int:
        node = self._next
        self._next += 1
        self.leaf_count[node] = count
        if count == 1:
            self.leaf_region[node] = self._region
            self._region += 1
            return node
        x0, y0, x1, y1 = rect
        ax = 0 if (x1 - x0) >= (y1 - y0) else 1
        nl = count // 2
        lo, hi = (x0, x1) if ax == 0 else (y0, y1)
        s = lo + (hi - lo) * nl / count  # even split until loads are known
        self.axis[node], self.split[node] = ax, s
        lrect = (x0, y0, s, y1) if ax == 0 else (x0, y0, x1, s)
        rrect = (s, y0, x1, y1) if ax == 0 else (x0, s, x1, y1)
        self.left[node] = self._grow(lrect, nl)
        self.right[node] = self._grow(rrect, count - nl)
        return node

    def _rects(self, split: np.ndarray | None = None) -> np.ndarray:
        split = self.split if split is None else split
        rects = np.zeros((self.count, 4), np.float64)
        stack = [(0, self.bounds)]
        while stack:
            node, (x0, y0, x1, y1) = stack.pop()
            if self.left[node] < 0:
                rects[self.leaf_region[node]] = (x0, y0, x1, y1)
                continue
            s = split[node]
            if self.axis[node] == 0:
                stack += [(self.left[node], (x0, y0, s, y1)), (self.right[node], (s, y0, x1, y1))]
            else:
                stack += [(self.left[node], (x0, y0, x1, s)), (self.right[node], (x0, s, x1, y1))]
        return rects

    def set_split(self, split: np.ndarray) -> None:
        self.split = np.asarray(split, np.float64).copy()
        self.rects = self._rects()

    def assign(self, x: np.ndarray, y: np.ndarray, split: np.ndarray | None = None) -> np.ndarray:
        """(n,) int32 region of each point, under this layout or the given split coordinates."""
        out = np.empty(x.shape[0], np.int32)
        _assign(self.axis, self.split if split is None else split, self.left, self.right, self.leaf_region,
                np.ascontiguousarray(x, np.float64), np.ascontiguousarray(y, np.float64), out)
        return out

    def balanced_split(self, x: np.ndarray, y: np.ndarray, w: np.ndarray) -> np.ndarray:
        """Split coordinates that give each region an equal share of the weight of the points.

        Each node splits its points at the weighted quantile matching the share of regions on
        its left, halfway between the two points around it so no point lies on the split.
        """
        split = self.split.copy()
        stack = [(0, np.arange(x.shape[0]), self.bounds)]
        while stack:
            node, idx, (x0, y0, x1, y1) = stack.pop()
            if self.left[node] < 0:
                continue
            ax = self.axis[node]
            lo, hi = (x0, x1) if ax == 0 else (y0, y1)
            c = (x if ax == 0 else y)[idx]
            frac = self.leaf_count[self.left[node]] / self.leaf_count[node]
            s = split[node]
            if idx.size:
                s = _weighted_cut(np.ascontiguousarray(c), np.ascontiguousarray(w[idx]), frac, lo, hi)
            # Keep every region a real rectangle.
            eps = 1e-6 * (hi - lo)
            s = min(max(s, lo + eps), hi - eps)
            split[node] = s
            left_mask = c < s
            if ax == 0:
                lrect, rrect = (x0, y0, s, y1), (s, y0, x1, y1)
            else:
                lrect, rrect = (x0, y0, x1, s), (x0, s, x1, y1)
            stack.append((self.left[node], idx[left_mask], lrect))
            stack.append((self.right[node], idx[~left_mask], rrect))
        return split


# --------------------------------------------------------------------------- resources and system


class RegionStats:
    """Running figures of the partition, for telemetry and the summary."""

    def __init__(self, count: int) -> None:
        self.count = count
        self.loads = np.zeros(count)
        self.entities = np.zeros(count, np.int64)
        self.load_ratio = 1.0
        self.crossings_tick = 0
        self.crossings_total = 0
        self.rebalances = 0
        self.migrations_total = 0
        self.migrations_last = 0
        self.rebalance_ticks: list[int] = []
        self.border_entities = 0

    def summary(self) -> dict:
        return {
            "count": self.count,
            "load_ratio": round(float(self.load_ratio), 4),
            "loads": [round(float(v), 2) for v in self.loads],
            "entities": self.entities.tolist(),
            "border_entities": int(self.border_entities),
            "crossings": int(self.crossings_total),
            "rebalances": int(self.rebalances),
            "migrations": int(self.migrations_total),
            "rebalance_ticks": list(self.rebalance_ticks),
        }


class ActionRoutes:
    """``mask``: (n,) uint64, bit r set when the action must reach region r; ``cross``: (n,) bool,
    the action reaches more than one region."""

    def __init__(self, mask: np.ndarray) -> None:
        self.mask = mask
        self.cross = (mask & (mask - np.uint64(1))) != 0


class Regions(System):
    phase = Phase.SPATIAL
    reads = (Position, ActionBatch)
    writes = (RegionCell, RegionLayout, RegionStats, ActionRoutes)
    reads_others = ()  # the regions of what it holds
    after = ("SpatialHash",)

    def __init__(self, world, defn) -> None:
        cfg = defn.regions
        self.cfg = cfg
        self.layout = RegionLayout(defn.bounds, cfg.count)
        self.stats = RegionStats(cfg.count)
        self._cells = world.query(RegionCell, Position, without=(Ghost,))  # a shard counts what it owns
        self._world_rect = np.asarray(defn.bounds, np.float64)
        # The recent window of accepted actions: positions (for a new layout) and per-region counts.
        self._recent_xy: list[tuple[np.ndarray, np.ndarray]] = []
        self._recent_counts: list[np.ndarray] = []
        self._counts = np.zeros(cfg.count, np.int64)
        self._above = 0
        self._last_rebalance = -(10**9)
        r = defn.rules
        self._reach = np.zeros(8)
        self._reach[ActionKind.MELEE] = r.melee_reach_m
        self._reach[ActionKind.RANGED] = r.ranged_range_m
        self._reach[ActionKind.CAST] = r.cast_range_m
        self._reach[ActionKind.LOOT] = r.loot_reach_m
        self._reach[ActionKind.TRADE] = r.trade_reach_m
        world.resources[RegionLayout] = self.layout
        world.resources[RegionStats] = self.stats
        # Load the rebalance's kernels now, not on the tick of the first rebalance.
        one = np.zeros(1)
        self.layout.balanced_split(one, one, np.ones(1))
        sampled(np.ones(1, np.int64), SAMPLE_BITS, np.empty(1, np.bool_))

    # -- the tick -------------------------------------------------------------------------
    def run(self, world, ctx) -> None:
        batch: ActionBatch = world.resources[ActionBatch]
        stats = self.stats
        stats.crossings_tick = self._update(world)
        stats.crossings_total += stats.crossings_tick
        stats.migrations_last = 0
        own = self._route(world, batch)
        live = batch.status == 0
        self._recent_xy.append((batch.x[live].copy(), batch.y[live].copy()))
        self._recent_counts.append(np.bincount(own[live & (own >= 0)], minlength=self.layout.count))
        del self._recent_xy[: -self.cfg.action_window_ticks]
        del self._recent_counts[: -self.cfg.action_window_ticks]
        if ctx.tick % self.cfg.rebalance_every_ticks == 0:
            self._evaluate(world, ctx)

    def _update(self, world) -> int:
        """Regions, border flags and crossings of every entity; entity counts per region."""
        lay, total, border = self.layout, 0, 0
        self._counts[:] = 0
        for t in self._cells:
            cell = t.columns(RegionCell)
            total += _update_cells(lay.axis, lay.split, lay.left, lay.right, lay.leaf_region, lay.rects,
                                   self._world_rect, self.cfg.interest_radius_m, t.column(Position, "x"),
                                   t.column(Position, "y"), cell.region, cell.border, cell.crossed, self._counts)
            border += int(np.count_nonzero(cell.border))
        self.stats.border_entities = border
        self.stats.entities = self._counts.copy()
        return total

    def _loads(self) -> np.ndarray:
        """One per entity plus ``action_weight`` per action per tick of the recent window."""
        actions = np.sum(self._recent_counts, axis=0) / max(len(self._recent_counts), 1)
        return self._counts + self.cfg.action_weight * actions

    def _evaluate(self, world, ctx) -> None:
        cfg, stats = self.cfg, self.stats
        stats.loads = self._loads()
        stats.load_ratio = _ratio(stats.loads)
        self._above = self._above + 1 if stats.load_ratio > cfg.rebalance_trigger else 0
        if self.layout.count == 1 or not cfg.rebalance or self._above < cfg.rebalance_sustain_ticks:
            return
        if ctx.tick - self._last_rebalance < cfg.rebalance_min_interval_ticks:
            return
        if self._rebalance(world):
            self._last_rebalance = ctx.tick
            self._above = 0
            stats.rebalances += 1
            stats.rebalance_ticks.append(ctx.tick)
            # Re-assign under the new layout; a layout change is a migration, not a crossing
            # (and the entities whose region changed are exactly the migrations).
            moved = self._update(world)
            stats.migrations_last = moved
            stats.migrations_total += moved
            for t in self._cells:
                t.column(RegionCell, "crossed")[:] = 0
            stats.loads = self._loads()
            stats.load_ratio = _ratio(stats.loads)

    def _rebalance(self, world) -> bool:
        """Move the splits toward balance, within the migration cap. True if anything moved."""
        cfg, lay, stats = self.cfg, self.layout, self.stats
        tables = [t for t in self._cells.tables() if t.n]
        ex = np.concatenate([t.column(Position, "x") for t in tables]) if tables else np.empty(0)
        ey = np.concatenate([t.column(Position, "y") for t in tables]) if tables else np.empty(0)
        ax = np.concatenate([a for a, _ in self._recent_xy]) if self._recent_xy else np.empty(0)
        ay = np.concatenate([b for _, b in self._recent_xy]) if self._recent_xy else np.empty(0)
        scale = 1.0
        if ex.shape[0] + ax.shape[0] > SAMPLE_ABOVE:
            keep = np.empty(ex.shape[0], np.bool_)
            sampled(np.concatenate([t.ids for t in tables]), SAMPLE_BITS, keep)
            ex, ey = ex[keep], ey[keep]
            ax, ay = ax[:: 1 << SAMPLE_BITS], ay[:: 1 << SAMPLE_BITS]
            scale = float(1 << SAMPLE_BITS)
        x, y = np.concatenate([ex, ax]), np.concatenate([ey, ay])
        w = np.full(x.shape[0], scale * cfg.action_weight / max(len(self._recent_xy), 1))
        w[: ex.shape[0]] = scale
        target = lay.balanced_split(x, y, w)
        now = lay.assign(x, y)
        ratio = _ratio(np.bincount(now, weights=w, minlength=lay.count))
        if _ratio(np.bincount(lay.assign(x, y, target), weights=w, minlength=lay.count)) > ratio - cfg.rebalance_min_gain:
            return False  # not worth moving anyone
        now_e = now[: ex.shape[0]]
        step = 1.0

        def moving(split) -> float:  # entities a layout hands to another region (estimated on a sample)
            return scale * int((lay.assign(ex, ey, split) != now_e).sum())

        if moving(target) > cfg.max_migrations:
            lo, hi = 0.0, 1.0  # the largest step along the straight line that stays under the cap
            for _ in range(10):
                mid = 0.5 * (lo + hi)
                lo, hi = (mid, hi) if moving(lay.split + mid * (target - lay.split)) <= cfg.max_migrations else (lo, mid)
            step = lo
        new_split = lay.split + step * (target - lay.split)
        if moving(new_split) == 0:
            return False
        lay.set_split(new_split)
        # The window's action counts, re-counted under the new layout.
        self._recent_counts = [np.bincount(lay.assign(a, b), minlength=lay.count) for a, b in self._recent_xy]
        return True

    def _route(self, world, batch: ActionBatch) -> np.ndarray:
        """Store each action's region mask; return the actor's region per action (-1 unknown)."""
        own, _ = gather(world, batch.actor, RegionCell, "region", -1)
        other, _ = gather(world, batch.target, RegionCell, "region", -1)
        own = own.astype(np.int32)
        # Refused actions go nowhere but their actor's region (which answers the client).
        reach = np.where(batch.status == 0, self._reach[batch.kind.clip(0, 7)], 0.0)
        mask = np.empty(batch.n, np.uint64)
        _route(self.layout.rects, batch.x, batch.y, reach, own, np.where(batch.status == 0, other, -1).astype(np.int32),
               mask)
        world.resources[ActionRoutes] = ActionRoutes(mask)
        return own


def _ratio(loads: np.ndarray) -> float:
    """Most loaded region over the mean (1.0 is perfect balance)."""
    mean = loads.sum() / loads.shape[0]
    return float(loads.max() / mean) if mean > 0 else 1.0
