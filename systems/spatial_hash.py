"""Tick step 4: cell lists over entity positions, and exact neighbour queries on them.

Ordering, conflict grouping, ghosts and scoring all ask "who is within r of whom". A uniform
grid rebuilt every tick by a counting sort answers that in O(n + cells) with no per-tick
allocation once warm, and keeps the points copied in cell order so the pair loops stream
through memory instead of chasing indices.

Guarantees:
- Queries are exact. The grid only prunes; every reported pair passes the same float test as
  scipy's ``cKDTree`` for p=2: ``dx*dx + dy*dy <= r*r`` in float64, the two squares rounded
  separately (no fused multiply-add) and ``r*r`` rounded once. A sqrt-based test disagrees
  with it on a few percent of points lying at exactly distance r.
- Results are deterministic: the counting sort is stable and every loop runs in a fixed order.
- Points outside the grid's bounds are clamped into the edge cells; clamping never moves two
  cells further apart, so the neighbourhood scans stay complete.

Cells are ``cell_m * (1 + CELL_SLACK)`` wide inside the kernels, not ``cell_m``: the slack
absorbs the rounding of ``(x - origin) / cell`` (at most ~3e-16 per cell coordinate, times up
to 2**26 cells per axis), so two points the float test accepts at ``r <= cell_m`` are never
two cells apart. Cell boundaries therefore sit ``k * cell_m * (1 + 1e-7)`` from the origin.

Cell ids are row-major, ``cell = row * n_cols + col``, so the three cells of the next row
that a cell's forward half-neighbourhood touches are one contiguous run of points. Sorted
coordinates are stored interleaved (``sxy``, (n, 2)): the scatter then touches one cache line
per point instead of two.

``SpatialGrid`` is the per-tick structure (fixed bounds, caller-chosen cell). The one-shot
``neighbor_pairs`` builds its own: a dense grid of radius-sized cells when that is at most
4n + 16 cells, otherwise only the occupied cells, found by sorting cell keys.
"""

from __future__ import annotations

import math
import numbers

import numpy as np
from numba import njit

from ecs.config import JIT

CELL_SLACK = 1e-7
"""Relative widening of every cell (see the module docstring)."""

MAX_AXIS_CELLS = 1 << 26
"""Largest number of cells along one axis; keeps the rounding of cell coordinates below the slack."""

_SPARSE_AXIS_CELLS = 1 << 30
"""Cells per axis on ``neighbor_pairs``' sparse path: keys col * width + row stay below 2**61."""

_SPARSE_SLACK = 1e-5
"""Cell widening on the sparse path, above the ~1e-6 cell rounding error at 2**30 cells per axis."""

_MIN_CELL_M = 1e-150
"""Smallest cell used by ``neighbor_pairs``: below it ``r*r`` is subnormal and loses its relative accuracy."""

_FLOAT_MAX = float(np.finfo(np.float64).max)

_EMPTY_PAIRS = np.empty((0, 2), np.int64)


# --------------------------------------------------------------------------- kernels


@njit(**JIT)
def _cell_coord(v, origin, inv_cell, n):
    """Clamped cell coordinate of one float: floor((v - origin) * inv_cell) in [0, n). NaN maps to 0."""
    q = (v - origin) * inv_cell
    if not q >= 1.0:  # also catches NaN
        return 0
    if q >= n - 1:
        return n - 1
    return int(q)


@njit(**JIT)
def _assign_cells(x, y, origin_x, origin_y, inv_cell, n_cols, n_rows, cell, counts):
    """First half of the counting sort: the cell of every point and the cell histogram.

    x, y: (n,) float64, read. cell: (>= n,) int64, written [:n] with row * n_cols + col.
    counts: (n_cols * n_rows + 2,) int64, overwritten: counts[c + 2] = points in cell c, so that
    a prefix sum turns counts[c + 1] into the start of cell c (see ``_scatter_by_cell``).
    Returns the number of non-finite coordinates (those points land in some cell; the caller
    refuses the input).
    """
    counts[:] = 0
    n_bad = 0
    for i in range(x.shape[0]):
        xi = x[i]
        yi = y[i]
        if not (abs(xi) <= _FLOAT_MAX and abs(yi) <= _FLOAT_MAX):  # NaN or +-inf, quietly
            n_bad += 1
        c = _cell_coord(yi, origin_y, inv_cell, n_rows) * n_cols + _cell_coord(xi, origin_x, inv_cell, n_cols)
        cell[i] = c
        counts[np.uint64(c + 2)] += 1
    return n_bad


@njit(**JIT)
def _scatter_by_cell(x, y, cell, counts, order, sxy):
    """Second half of the counting sort: stable scatter of the points into cell order.

    x, y: (n,) float64 and cell: (>= n,) int64, read. counts: (n_cells + 2,) int64 from
    ``_assign_cells``, rewritten in place so that counts[:n_cells + 1] is cell_start (cell c
    holds sorted positions cell_start[c]:cell_start[c + 1]). order: (>= n,) int64 written [:n]
    with the original index at each sorted position. sxy: (>= 2n,) float64, the flat view of an
    (n, 2) array, written with x, y at each sorted position: interleaved, one cache line per
    random write instead of two, which is most of this kernel's cost on unsorted input.
    Stable: inside a cell, original indices ascend.
    """
    total = 0
    for c in range(counts.shape[0]):
        total += counts[c]
        counts[c] = total
    for i in range(x.shape[0]):
        c = np.uint64(cell[i] + 1)
        p = counts[c]
        counts[c] = p + 1
        order[np.uint64(p)] = i
        sxy[np.uint64(2 * p)] = x[i]
        sxy[np.uint64(2 * p + 1)] = y[i]


@njit(**JIT)
def _pairs_dense(sxy, order, cell_start, n_cols, geom, rings, r2, out):
    """All pairs with dx*dx + dy*dy <= r2 on a dense grid, each once, as original indices i < j.

    sxy: (>= 2n,) float64 flat interleaved coordinates and order: (>= n,) int64, cell-ordered,
    read. cell_start: (n_cells + 1,) int64, read. geom: (4,) float64 as in ``_within_radius``.
    rings: cells scanned each way (ceil(r / cell_m)). out: (capacity, 2) int64, written
    [:min(m, capacity)]. Each point scans only its forward half-neighbourhood (later points of
    its row up to ``rings`` cells right, then the ``rings`` rows below, each one contiguous run),
    so no pair is met twice. Walks points rather than cells, recomputing each point's cell
    exactly as ``_assign_cells`` did: empty cells then cost nothing. Returns m, the true number
    of pairs: if m > capacity the rest were counted, not written, and the caller retries with
    capacity >= m.
    """
    n_rows = (cell_start.shape[0] - 1) // n_cols
    cap = out.shape[0]
    m = 0
    for a in range(cell_start[n_rows * n_cols]):
        xa = sxy[2 * a]
        ya = sxy[2 * a + 1]
        oa = order[a]
        col = _cell_coord(xa, geom[0], geom[2], n_cols)
        row = _cell_coord(ya, geom[1], geom[2], n_rows)
        last_row = min(row + rings, n_rows - 1)
        col_lo = max(col - rings, 0)
        col_hi = min(col + rings, n_cols - 1) + 1
        lo = a + 1
        hi = cell_start[row * n_cols + col + min(rings, n_cols - 1 - col) + 1]
        r = row
        while True:
            if m + (hi - lo) <= cap:  # room for every candidate: write unconditionally
                for b in range(lo, hi):
                    # Unsigned indices let numba drop its negative-index wraparound code,
                    # about a quarter of this loop's time.
                    ub = np.uint64(b)
                    um = np.uint64(m)
                    dx = xa - sxy[2 * ub]
                    dy = ya - sxy[2 * ub + np.uint64(1)]
                    ob = order[ub]
                    out[um, 0] = min(oa, ob)
                    out[um, 1] = max(oa, ob)
                    m += dx * dx + dy * dy <= r2
            else:
                for b in range(lo, hi):
                    dx = xa - sxy[2 * b]
                    dy = ya - sxy[2 * b + 1]
                    if dx * dx + dy * dy <= r2:
                        if m < cap:
                            ob = order[b]
                            out[m, 0] = min(oa, ob)
                            out[m, 1] = max(oa, ob)
                        m += 1
            r += 1
            if r > last_row:
                break
            lo = cell_start[r * n_cols + col_lo]
            hi = cell_start[r * n_cols + col_hi]
    return m


@njit(**JIT)
def _selected_positions(cell, cell_start, order, selected):
    """Sorted positions (ascending) of the ``selected`` points: only their cells are scanned.

    cell: (n,) cell of each original index; selected: (n,) bool by original index; read.
    """
    n_cells = cell_start.shape[0] - 1
    mark = np.zeros(n_cells, np.bool_)
    cells = np.empty(selected.shape[0], np.int64)
    k = 0
    for i in range(selected.shape[0]):
        if selected[i] and not mark[cell[i]]:
            mark[cell[i]] = True
            cells[k] = cell[i]
            k += 1
    cells = np.sort(cells[:k])
    out = np.empty(selected.shape[0], np.int64)
    m = 0
    for c in cells:
        for a in range(cell_start[c], cell_start[c + 1]):
            if selected[order[a]]:
                out[m] = a
                m += 1
    return out[:m]


@njit(**JIT)
def _pairs_selected(sxy, order, cell_start, n_cols, geom, rings, r2, selected, positions, out):
    """Like ``_pairs_dense``, but only pairs whose two points are both ``selected``.

    selected: (n,) bool by original index; positions: (k,) int64 their sorted positions
    (``_selected_positions``); both read. Other arguments as in ``_pairs_dense``; returns the
    true number of pairs (written up to out's capacity).
    """
    n_rows = (cell_start.shape[0] - 1) // n_cols
    cap = out.shape[0]
    m = 0
    for a in positions:
        oa = order[a]
        xa = sxy[2 * a]
        ya = sxy[2 * a + 1]
        col = _cell_coord(xa, geom[0], geom[2], n_cols)
        row = _cell_coord(ya, geom[1], geom[2], n_rows)
        last_row = min(row + rings, n_rows - 1)
        col_lo = max(col - rings, 0)
        col_hi = min(col + rings, n_cols - 1) + 1
        lo = a + 1
        hi = cell_start[row * n_cols + col + min(rings, n_cols - 1 - col) + 1]
        r = row
        while True:
            for b in range(lo, hi):
                ob = order[b]
                if selected[ob]:
                    dx = xa - sxy[2 * b]
                    dy = ya - sxy[2 * b + 1]
                    if dx * dx + dy * dy <= r2:
                        if m < cap:
                            out[m, 0] = min(oa, ob)
                            out[m, 1] = max(oa, ob)
                        m += 1
            r += 1
            if r > last_row:
                break
            lo = cell_start[r * n_cols + col_lo]
            hi = cell_start[r * n_cols + col_hi]
    return m


@njit(**JIT)
def _sort_sparse(x, y, min_x, min_y, inv_half):
    """Cell lists keyed by (col, row) for inputs whose dense grid would be too large.

    x, y: (n,) float64, read. Cell coordinates are floor((x/2 - min_x/2) * inv_half), halved so
    that spans near the float64 limit stay finite; the caller sizes inv_half so each axis has
    at most ~2**30 cells. Returns (order (n,) int64, sxy (2n,) float64 flat interleaved,
    cell_key (u,) int64 ascending, cell_start (u + 1,) int64, width) for the u occupied cells,
    with key = col * width + row and width > every row + 1, so key + width +- 1 are the
    neighbours in the next column. Uses a stable sort: O(n log n), only on the fallback path.
    """
    n = x.shape[0]
    cols = np.empty(n, np.int64)
    rows = np.empty(n, np.int64)
    hx = 0.5 * min_x
    hy = 0.5 * min_y
    max_row = 0
    for i in range(n):
        cols[i] = int((0.5 * x[i] - hx) * inv_half)
        r = int((0.5 * y[i] - hy) * inv_half)
        rows[i] = r
        max_row = max(max_row, r)
    width = max_row + 2
    keys = cols * width + rows
    order = np.argsort(keys, kind="mergesort")
    sxy = np.empty(2 * n, np.float64)
    sorted_keys = np.empty(n, np.int64)
    u = 0
    for p in range(n):
        i = order[p]
        sxy[2 * p] = x[i]
        sxy[2 * p + 1] = y[i]
        sorted_keys[p] = keys[i]
        if p == 0 or sorted_keys[p] != sorted_keys[p - 1]:
            u += 1
    cell_key = np.empty(u, np.int64)
    cell_start = np.empty(u + 1, np.int64)
    u = 0
    for p in range(n):
        if p == 0 or sorted_keys[p] != sorted_keys[p - 1]:
            cell_key[u] = sorted_keys[p]
            cell_start[u] = p
            u += 1
    cell_start[u] = n
    return order, sxy, cell_key, cell_start, width


@njit(**JIT)
def _pairs_sparse(sxy, order, cell_key, cell_start, width, r2, out):
    """``_pairs_dense`` over the occupied cells from ``_sort_sparse`` (cells >= r wide).

    Arrays as returned by ``_sort_sparse``, read; out: (capacity, 2) int64, written. The
    forward half-neighbourhood of cell (col, row) is the rest of its own cell, cell (col, row+1)
    (the next key, if occupied) and cells (col+1, row-1..row+1), which are one run of keys;
    two pointers find that run, moving forward only. Returns m as ``_pairs_dense`` does.
    """
    u_count = cell_key.shape[0]
    cap = out.shape[0]
    m = 0
    p = 0
    q = 0
    for u in range(u_count):
        key = cell_key[u]
        own_end = cell_start[u + 1]
        if u + 1 < u_count and cell_key[u + 1] == key + 1:
            own_end = cell_start[u + 2]
        while p < u_count and cell_key[p] < key + width - 1:
            p += 1
        if q < p:
            q = p
        while q < u_count and cell_key[q] <= key + width + 1:
            q += 1
        for a in range(cell_start[u], cell_start[u + 1]):
            xa = sxy[2 * a]
            ya = sxy[2 * a + 1]
            oa = order[a]
            lo = a + 1
            hi = own_end
            for _ in range(2):
                for b in range(lo, hi):
                    dx = xa - sxy[2 * b]
                    dy = ya - sxy[2 * b + 1]
                    if dx * dx + dy * dy <= r2:
                        if m < cap:
                            ob = order[b]
                            out[m, 0] = min(oa, ob)
                            out[m, 1] = max(oa, ob)
                        m += 1
                lo = cell_start[p]
                hi = cell_start[q]
    return m


@njit(**JIT)
def _within_radius(sxy, order, cell_start, n_cols, geom, px, py, radius_m, exclude):
    """Original indices of the points with dx*dx + dy*dy <= radius_m**2 from (px, py), ascending.

    sxy: (>= 2n,) float64, flat interleaved x, y, and order: (>= n,) int64, both cell-ordered,
    read. cell_start: (n_cells + 1,) int64, read. geom: (4,) float64 origin_x, origin_y,
    1 / effective cell width, cell_m. exclude: an original index left out (the query point
    itself), or -1. Returns (k,) int64.
    """
    n_rows = (cell_start.shape[0] - 1) // n_cols
    r2 = radius_m * radius_m
    rings = max(n_cols, n_rows)
    if radius_m < rings * geom[3]:
        rings = int(math.ceil(radius_m / geom[3]))
    qc = _cell_coord(px, geom[0], geom[2], n_cols)
    qr = _cell_coord(py, geom[1], geom[2], n_rows)
    c0 = max(qc - rings, 0)
    c1 = min(qc + rings, n_cols - 1) + 1
    r0 = max(qr - rings, 0)
    r1 = min(qr + rings, n_rows - 1) + 1
    total = 0
    for r in range(r0, r1):
        total += cell_start[r * n_cols + c1] - cell_start[r * n_cols + c0]
    found = np.empty(total, np.int64)
    k = 0
    for r in range(r0, r1):
        for b in range(cell_start[r * n_cols + c0], cell_start[r * n_cols + c1]):
            dx = sxy[2 * b] - px
            dy = sxy[2 * b + 1] - py
            if dx * dx + dy * dy <= r2 and order[b] != exclude:
                found[k] = order[b]
                k += 1
    return np.sort(found[:k])


@njit(**JIT)
def _knn_insert(best_d2, best_i, count, d2, idx):
    """Insert (d2, idx) into the ascending lists best_d2/best_i of length k holding ``count``.

    Lexicographic on (d2, idx); returns the new count. (k,) float64 / (k,) int64, both written.
    """
    k = best_d2.shape[0]
    if count == k:
        if d2 > best_d2[k - 1] or (d2 == best_d2[k - 1] and idx > best_i[k - 1]):
            return count
        j = k - 1
    else:
        j = count
        count += 1
    while j > 0 and (best_d2[j - 1] > d2 or (best_d2[j - 1] == d2 and best_i[j - 1] > idx)):
        best_d2[j] = best_d2[j - 1]
        best_i[j] = best_i[j - 1]
        j -= 1
    best_d2[j] = d2
    best_i[j] = idx
    return count


@njit(**JIT)
def _knn(sxy, order, cell_start, n_cols, geom, px, py, k, exclude):
    """The k nearest points to (px, py), ordered by squared distance then original index.

    Arrays and geom as in ``_within_radius``, read; exclude: original index left out, or -1.
    Scans rings of cells outward from the query's (clamped) cell. After ring R every unscanned
    point is more than R cells of ``cell_m`` away, so the search stops once the k-th best is
    strictly closer than that (with a 1e-12 relative margin for rounding) or the grid is
    exhausted. Returns (min(k, available),) int64.
    """
    n_rows = (cell_start.shape[0] - 1) // n_cols
    cell_m = geom[3]
    qc = _cell_coord(px, geom[0], geom[2], n_cols)
    qr = _cell_coord(py, geom[1], geom[2], n_rows)
    best_d2 = np.empty(k, np.float64)
    best_i = np.empty(k, np.int64)
    count = 0
    last_ring = max(n_cols, n_rows)
    ring = 0
    while k > 0:
        c0 = max(qc - ring, 0)
        c1 = min(qc + ring, n_cols - 1)
        for r in range(max(qr - ring, 0), min(qr + ring, n_rows - 1) + 1):
            edge_row = r == qr - ring or r == qr + ring
            for side in range(2):
                if edge_row:  # top and bottom of the ring: the whole row span, once
                    if side == 1:
                        break
                    ca = c0
                    cb = c1
                elif side == 0:  # other rows: only the left and right ends
                    if qc - ring < 0:
                        continue
                    ca = cb = qc - ring
                else:
                    if qc + ring > n_cols - 1:
                        continue
                    ca = cb = qc + ring
                for b in range(cell_start[r * n_cols + ca], cell_start[r * n_cols + cb + 1]):
                    ob = order[b]
                    if ob == exclude:
                        continue
                    dx = sxy[2 * b] - px
                    dy = sxy[2 * b + 1] - py
                    count = _knn_insert(best_d2, best_i, count, dx * dx + dy * dy, ob)
        if count == k:
            bound = ring * cell_m
            if best_d2[k - 1] < bound * bound * (1.0 - 1e-12):
                break
        if ring >= last_ring:
            break
        ring += 1
    return best_i[:count].copy()


# --------------------------------------------------------------------------- validation


def _as_radius(radius, name="radius"):
    """A positive float (inf allowed), else ValueError naming what is wrong."""
    if isinstance(radius, (bool, np.bool_)) or not isinstance(radius, numbers.Real):
        raise ValueError(f"{name} must be a real number, got {type(radius).__name__}: {radius!r}")
    r = float(radius)
    if math.isnan(r):
        raise ValueError(f"{name} must be a positive number, got NaN")
    if r <= 0.0:
        raise ValueError(f"{name} must be positive, got {r!r}")
    return r


def _as_count(k, name="k"):
    if isinstance(k, (bool, np.bool_)) or not isinstance(k, numbers.Integral):
        raise ValueError(f"{name} must be an integer, got {type(k).__name__}: {k!r}")
    if k < 0:
        raise ValueError(f"{name} must be >= 0, got {k}")
    return int(k)


def _as_column(v, name):
    a = np.asarray(v)
    if a.dtype.kind not in "biuf":
        raise ValueError(f"{name} must be numeric, got dtype {a.dtype}")
    if a.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {a.shape}")
    return np.ascontiguousarray(a, dtype=np.float64)


def _as_point(v, name):
    if isinstance(v, (bool, np.bool_)) or not isinstance(v, numbers.Real):
        raise ValueError(f"{name} must be a real number, got {type(v).__name__}: {v!r}")
    f = float(v)
    if not math.isfinite(f):
        raise ValueError(f"{name} must be finite, got {f!r}")
    return f


# --------------------------------------------------------------------------- grid


class SpatialGrid:
    """A uniform grid over a fixed region, rebuilt from position columns every tick.

    ``SpatialGrid(cell_m, origin_x, origin_y, n_cols, n_rows)`` covers
    [origin, origin + n * cell_m) on each axis; points outside are clamped into the edge cells
    (queries stay exact, only slower if many points pile up there). After ``rebuild(x, y)``:

    - ``cell``: (n,) int64, the cell of each point (original order), row * n_cols + col.
    - ``cell_start``: (n_cells + 1,) int64; cell c holds sorted positions cell_start[c]:cell_start[c+1].
    - ``order``: (n,) int64, the original index at each sorted position (stable: ascending in a cell).
    - ``sxy``: (n, 2) float64, the coordinates in sorted order; ``sx``, ``sy`` are its columns
      (strided views).

    These are views of buffers reused by the next ``rebuild``; they grow only when n does.
    Queries return original point indices and are exact (see the module docstring for the
    distance test). ``pairs_within(r, copy=False)`` reuses its output buffer too, so a warm
    tick allocates nothing.
    """

    def __init__(self, cell_m, origin_x, origin_y, n_cols, n_rows, capacity=0):
        self.cell_m = _as_radius(cell_m, "cell_m")
        if not math.isfinite(self.cell_m):
            raise ValueError("cell_m must be finite, got inf")
        self.origin_x = _as_point(origin_x, "origin_x")
        self.origin_y = _as_point(origin_y, "origin_y")
        self.n_cols = _as_count(n_cols, "n_cols")
        self.n_rows = _as_count(n_rows, "n_rows")
        for name, v in (("n_cols", self.n_cols), ("n_rows", self.n_rows)):
            if not 1 <= v <= MAX_AXIS_CELLS:
                raise ValueError(f"{name} must be in [1, {MAX_AXIS_CELLS}], got {v}")
        self.n_cells = self.n_cols * self.n_rows
        inv = 1.0 / (self.cell_m * (1.0 + CELL_SLACK))
        self._geom = np.array([self.origin_x, self.origin_y, inv, self.cell_m], np.float64)
        self._counts = np.zeros(self.n_cells + 2, np.int64)
        self._alloc(_as_count(capacity, "capacity"))
        self._pairs = np.empty((0, 2), np.int64)
        self.n = 0
        self._built = False

    def _alloc(self, capacity):
        self._cell = np.empty(capacity, np.int64)
        self._order = np.empty(capacity, np.int64)
        self._sxy = np.empty((capacity, 2), np.float64)
        self._sxy_flat = self._sxy.reshape(-1)

    # -- views of the last build
    @property
    def cell(self):
        return self._cell[: self.n]

    @property
    def order(self):
        return self._order[: self.n]

    @property
    def sxy(self):
        return self._sxy[: self.n]

    @property
    def sx(self):
        return self._sxy[: self.n, 0]

    @property
    def sy(self):
        return self._sxy[: self.n, 1]

    @property
    def cell_start(self):
        return self._counts[: self.n_cells + 1]

    def rebuild(self, x, y):
        """Re-sort the points into cells. x, y: (n,) float (float64 avoids a copy), read only.

        Raises ValueError on mismatched shapes or NaN/inf coordinates (the grid is then
        unusable until the next successful rebuild).
        """
        x = _as_column(x, "x")
        y = _as_column(y, "y")
        if x.shape != y.shape:
            raise ValueError(f"x and y must have the same length, got {x.shape[0]} and {y.shape[0]}")
        n = x.shape[0]
        self._built = False
        if n > self._order.shape[0]:
            self._alloc(max(n, self._order.shape[0] + self._order.shape[0] // 4))
        g = self._geom
        n_bad = _assign_cells(x, y, g[0], g[1], g[2], self.n_cols, self.n_rows, self._cell, self._counts)
        if n_bad:
            raise ValueError(f"positions must be finite: {n_bad} points have NaN or inf coordinates")
        _scatter_by_cell(x, y, self._cell, self._counts, self._order, self._sxy_flat)
        self.n = n
        self._built = True

    def _check_built(self):
        if not self._built:
            raise RuntimeError("SpatialGrid has no valid build: call rebuild(x, y) first")

    def _check_index(self, i):
        i = _as_count(i, "i")
        if i >= self.n:
            raise ValueError(f"i must be a point index in [0, {self.n}), got {i}")
        return i

    def _position_of(self, i):
        """Sorted position of original index i (searches its cell only)."""
        c = self._cell[i]
        lo, hi = self._counts[c], self._counts[c + 1]
        return lo + int(np.flatnonzero(self._order[lo:hi] == i)[0])

    def _rings(self, r):
        """Cells to scan each way for radius r: ceil(r / cell_m), at most the whole grid."""
        rings = max(self.n_cols, self.n_rows)
        return int(math.ceil(r / self.cell_m)) if r < rings * self.cell_m else rings

    def pairs_within(self, radius_m, copy=True):
        """All pairs of points within radius_m (inclusive), each once: (m, 2) int64, i < j per row.

        Radii above cell_m scan ceil(radius_m / cell_m) rings of cells. With copy=False the
        result is a view of a buffer that the next call overwrites (no allocation once warm).
        Row order is deterministic but otherwise unspecified.
        """
        self._check_built()
        r = _as_radius(radius_m, "radius_m")
        if self._pairs.shape[0] == 0:
            self._pairs = np.empty((8 * self.n + 1024, 2), np.int64)
        args = (self._sxy_flat, self._order, self.cell_start, self.n_cols, self._geom, self._rings(r), r * r)
        m = _pairs_dense(*args, self._pairs)
        if m > self._pairs.shape[0]:
            self._pairs = np.empty((m + m // 4 + 1024, 2), np.int64)
            m = _pairs_dense(*args, self._pairs)
        out = self._pairs[:m]
        return out.copy() if copy else out

    def pairs_among(self, selected, radius_m):
        """Pairs of selected points within radius_m (inclusive), each once: (m, 2) int64, i < j.

        selected: (n,) bool by original index. For queries over a few thousand points of
        interest (this tick's action participants) among many: the cost is the selected
        points' cells and neighbourhoods, plus one pass over the mask.
        """
        self._check_built()
        r = _as_radius(radius_m, "radius_m")
        selected = np.ascontiguousarray(selected, np.bool_)
        if selected.shape != (self.n,):
            raise ValueError(f"selected must have shape ({self.n},), got {selected.shape}")
        out = np.empty((4 * int(selected.sum()) + 16, 2), np.int64)
        positions = _selected_positions(self._cell, self.cell_start, self._order, selected)
        args = (self._sxy_flat, self._order, self.cell_start, self.n_cols, self._geom, self._rings(r), r * r, selected,
                positions)
        m = _pairs_selected(*args, out)
        if m > out.shape[0]:
            out = np.empty((m, 2), np.int64)
            m = _pairs_selected(*args, out)
        return out[:m]

    def neighbors_of(self, i, radius_m):
        """Points within radius_m of point i, i itself excluded: (k,) int64 ascending."""
        self._check_built()
        i = self._check_index(i)
        r = _as_radius(radius_m, "radius_m")
        p = self._position_of(i)
        return _within_radius(self._sxy_flat, self._order, self.cell_start, self.n_cols, self._geom,
                              self._sxy[p, 0], self._sxy[p, 1], r, i)

    def neighbors_near(self, px, py, radius_m):
        """Points within radius_m of the arbitrary location (px, py): (k,) int64 ascending."""
        self._check_built()
        px = _as_point(px, "px")
        py = _as_point(py, "py")
        r = _as_radius(radius_m, "radius_m")
        return _within_radius(self._sxy_flat, self._order, self.cell_start, self.n_cols, self._geom,
                              px, py, r, -1)

    def nearest(self, px, py, k):
        """The k points nearest to (px, py): (min(k, n),) int64, by distance then index."""
        self._check_built()
        px = _as_point(px, "px")
        py = _as_point(py, "py")
        k = _as_count(k)
        return _knn(self._sxy_flat, self._order, self.cell_start, self.n_cols, self._geom, px, py, k, -1)

    def nearest_of(self, i, k):
        """The k points nearest to point i, i excluded: (min(k, n - 1),) int64, by distance then index."""
        self._check_built()
        i = self._check_index(i)
        k = _as_count(k)
        p = self._position_of(i)
        return _knn(self._sxy_flat, self._order, self.cell_start, self.n_cols, self._geom,
                    self._sxy[p, 0], self._sxy[p, 1], k, i)


# --------------------------------------------------------------------------- one-shot pairs


def _as_positions(positions):
    try:
        a = np.asarray(positions)
    except (TypeError, ValueError) as e:  # ragged nested sequences
        raise ValueError(f"positions must be an (n, 2) numeric array: {e}") from None
    if a.dtype.kind not in "biuf":
        raise ValueError(f"positions must be numeric, got dtype {a.dtype}")
    if a.ndim != 2 or a.shape[1] != 2:
        raise ValueError(f"positions must have shape (n, 2), got {a.shape}")
    a = a.astype(np.float64, copy=False)
    finite = np.isfinite(a)
    if not finite.all():
        bad = np.flatnonzero(~finite.all(axis=1))
        raise ValueError(f"positions must be finite: {bad.size} rows have NaN or inf, first at row {bad[0]}")
    return a


def neighbor_pairs(positions, radius):
    """All index pairs (i, j), i < j, whose distance is <= radius: (m, 2) int64, any row order.

    positions: (n, 2) float array-like, read. Matches ``cKDTree(positions).query_pairs(radius)``
    exactly as a set, boundary included (where scipy raises on float overflow, coordinates
    beyond ~1e154, this still answers by the same float test). Picks its own grid: cells of
    side ``radius`` when that needs at most 4n + 16 cells, else only the occupied cells, found
    by sorting cell keys (O(n) memory, O(n log n) time), so far-flung points cost neither
    memory nor a coarse grid whose few cells hold everything. The output buffer is sized
    16n + 1024 pairs; a denser answer is counted, then written in a second pass.
    Raises ValueError on a wrong shape, non-numeric or non-finite positions, and a radius that
    is not a positive number.
    """
    pos = _as_positions(positions)
    r = _as_radius(radius)
    n = pos.shape[0]
    if n < 2:
        return _EMPTY_PAIRS.copy()
    r2 = r * r
    if math.isinf(r2):  # every finite pair has dx*dx + dy*dy <= inf
        i, j = np.triu_indices(n, 1)
        return np.stack([i, j], axis=1).astype(np.int64)
    x = np.ascontiguousarray(pos[:, 0])
    y = np.ascontiguousarray(pos[:, 1])
    min_x, max_x = float(x.min()), float(x.max())
    min_y, max_y = float(y.min()), float(y.max())
    cell_m = max(r, _MIN_CELL_M)
    cell_eff = cell_m * (1.0 + CELL_SLACK)
    q_cols = (max_x - min_x) / cell_eff  # inf if the span overflows
    q_rows = (max_y - min_y) / cell_eff
    cap = 16 * n + 1024
    if q_cols < MAX_AXIS_CELLS and q_rows < MAX_AXIS_CELLS and (int(q_cols) + 1) * (int(q_rows) + 1) <= 4 * n + 16:
        grid = SpatialGrid(cell_m, min_x, min_y, int(q_cols) + 1, int(q_rows) + 1, capacity=n)
        grid.rebuild(x, y)
        args = (grid._sxy_flat, grid._order, grid.cell_start, grid.n_cols, grid._geom, 1, r2)
        kernel = _pairs_dense
    else:
        half_span = max(0.5 * max_x - 0.5 * min_x, 0.5 * max_y - 0.5 * min_y)  # finite even at 1e308
        cell_sparse = max(cell_m * (1.0 + _SPARSE_SLACK), half_span / (_SPARSE_AXIS_CELLS / 2))
        order, sxy, cell_key, cell_start, width = _sort_sparse(x, y, min_x, min_y, 2.0 / cell_sparse)
        args = (sxy, order, cell_key, cell_start, width, r2)
        kernel = _pairs_sparse
    out = np.empty((cap, 2), np.int64)
    m = kernel(*args, out)
    if m > cap:
        out = np.empty((m, 2), np.int64)
        kernel(*args, out)
    return out[:m].copy() if 4 * m < out.shape[0] else out[:m]
