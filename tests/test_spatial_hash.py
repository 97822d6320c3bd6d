"""Spatial hash: neighbor_pairs equals scipy's cKDTree.query_pairs as a set on any input, and
the grid's queries equal the naive references in tests/reference.py.

Tests marked ``kernel`` keep to <= 300 points so they also run quickly with NUMBA_DISABLE_JIT=1.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scipy.spatial import cKDTree

from systems.spatial_hash import SpatialGrid, _pairs_dense, _pairs_sparse, _sort_sparse, neighbor_pairs
from tests.reference import naive_knn, naive_pairs, naive_within

SETTINGS = settings(
    max_examples=200,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)


def as_set(pairs):
    """Rows of an (m, 2) array as a set of tuples, after checking the contract's shape and order."""
    assert pairs.dtype == np.int64 and pairs.ndim == 2 and pairs.shape[1] == 2
    assert np.all(pairs[:, 0] < pairs[:, 1])
    out = set(map(tuple, pairs.tolist()))
    assert len(out) == pairs.shape[0], "a pair was reported twice"
    return out


def scipy_pairs(pos, radius):
    return cKDTree(np.asarray(pos, np.float64).reshape(-1, 2)).query_pairs(radius)


def assert_matches_scipy(pos, radius):
    pos = np.asarray(pos, np.float64).reshape(-1, 2)
    assert as_set(neighbor_pairs(pos, radius)) == scipy_pairs(pos, radius)


# --------------------------------------------------------------------------- strategies

COORD = st.floats(-1e6, 1e6, allow_nan=False, allow_infinity=False)


@st.composite
def point_sets(draw, max_n=40):
    """(n, 2) float64 positions: free floats, a few points repeated, a lattice, or a tight
    cluster far from the origin (where subtraction loses the low bits)."""
    kind = draw(st.sampled_from(["free", "duplicates", "lattice", "far_cluster"]))
    n = draw(st.integers(0, max_n))
    if kind == "free":
        pts = draw(st.lists(st.tuples(COORD, COORD), min_size=n, max_size=n))
    elif kind == "duplicates":
        pool = draw(st.lists(st.tuples(COORD, COORD), min_size=1, max_size=4))
        pts = draw(st.lists(st.sampled_from(pool), min_size=n, max_size=n))
    elif kind == "lattice":  # many exact ties: 3-4-5 triangles, equal spacings
        step = draw(st.sampled_from([0.1, 0.5, 1.0, 3.0]))
        ij = draw(st.lists(st.tuples(st.integers(-6, 6), st.integers(-6, 6)), min_size=n, max_size=n))
        pts = [(i * step, j * step) for i, j in ij]
    else:
        cx, cy = draw(COORD), draw(COORD)
        off = st.floats(-2.0, 2.0, allow_nan=False)
        pts = [(cx + dx, cy + dy) for dx, dy in draw(st.lists(st.tuples(off, off), min_size=n, max_size=n))]
    return np.array(pts, np.float64).reshape(-1, 2)


@st.composite
def cases(draw, max_n=40):
    """A point set and a radius; half the time the radius is an exact distance in the set,
    nudged by at most one ulp, so the inclusive boundary and its rounding get exercised."""
    pos = draw(point_sets(max_n))
    radius = draw(st.floats(1e-3, 1e3))
    if pos.shape[0] >= 2 and draw(st.booleans()):
        i = draw(st.integers(0, pos.shape[0] - 1))
        j = draw(st.integers(0, pos.shape[0] - 1))
        dx, dy = pos[i, 0] - pos[j, 0], pos[i, 1] - pos[j, 1]
        d = math.sqrt(dx * dx + dy * dy)
        d = draw(st.sampled_from([d, math.nextafter(d, 0.0), math.nextafter(d, math.inf)]))
        if d > 0.0:
            radius = d
    return pos, radius


# --------------------------------------------------------------------------- neighbor_pairs vs scipy


@pytest.mark.kernel
@SETTINGS
@given(cases())
def test_neighbor_pairs_equals_ckdtree(case):
    pos, radius = case
    assert_matches_scipy(pos, radius)


@pytest.mark.kernel
@SETTINGS
@given(cases(max_n=25))
def test_neighbor_pairs_equals_naive_reference(case):
    pos, radius = case
    assert as_set(neighbor_pairs(pos, radius)) == naive_pairs(pos[:, 0], pos[:, 1], radius)


@SETTINGS
@given(
    st.lists(st.tuples(st.floats(-1e300, 1e300), st.floats(-1e300, 1e300)), min_size=2, max_size=30),
    st.floats(1e-300, 1e300),
)
def test_neighbor_pairs_huge_and_tiny_scales(pts, radius):
    """Spans that overflow a dense grid (and float64 subtraction): scipy where it answers,
    the naive float test where scipy refuses with its overflow error."""
    pos = np.array(pts, np.float64)
    got = as_set(neighbor_pairs(pos, radius))
    assert got == naive_pairs(pos[:, 0], pos[:, 1], radius)
    try:
        expected = scipy_pairs(pos, radius)
    except ValueError as e:
        assert "overflow" in str(e)
    else:
        assert got == expected


@pytest.mark.kernel
@pytest.mark.parametrize(
    ("a", "b", "radius"),
    [
        ((0.0, 0.0), (3.0, 4.0), 5.0),  # exactly on the boundary: included
        ((0.0, 0.0), (0.1, 0.2), math.sqrt(0.05)),  # 0.1**2 + 0.2**2 rounds above 0.05
        ((0.0, 0.0), (3.0, 4.0), math.nextafter(5.0, 0.0)),
        # sqrt(dx*dx + dy*dy) <= r accepts these; the squared test (scipy's) does not
        ((2.502, 7.944), (2.745191, 6.450234), 1.5134327620469301),
        ((2.585, 0.282), (0.971494, 0.313701), 1.6138173891233791),
        ((-9.764, -6.152), (-10.263685, -7.462712), 1.402729855021629),
        # a fused multiply-add would reject these; scipy rounds each square and accepts
        ((-7.746, 2.532), (-7.18435, 0.704618), 1.9117467657678933),
        ((-3.872, 6.656), (-4.850824, 5.737709), 1.3421455895904142),
        ((-5.269, -0.699), (-2.393871, -3.369937), 3.9243179311327467),
    ],
)
def test_boundary_rounding_matches_scipy(a, b, radius):
    assert_matches_scipy([a, b], radius)


@pytest.mark.kernel
def test_boundary_rounding_many_seeded_cases():
    """Two points at a computed distance d, radius d and its neighbour floats, 300 times."""
    rng = np.random.default_rng(11)
    for _ in range(100):
        a = rng.uniform(-50, 50, 2)
        ang = rng.uniform(0, 2 * np.pi)
        b = a + rng.uniform(0.01, 20) * np.array([np.cos(ang), np.sin(ang)])
        dx, dy = a - b
        d = math.sqrt(dx * dx + dy * dy)
        for radius in (math.nextafter(d, 0.0), d, math.nextafter(d, math.inf)):
            assert_matches_scipy([a, b], radius)


@pytest.mark.kernel
@pytest.mark.parametrize("n", [0, 1])
def test_fewer_than_two_points_give_empty_int64(n):
    out = neighbor_pairs(np.zeros((n, 2)), 1.0)
    assert out.shape == (0, 2) and out.dtype == np.int64


@pytest.mark.kernel
def test_all_duplicates_pair_with_each_other():
    pos = np.tile([[1.5, -2.5]], (40, 1))
    out = neighbor_pairs(pos, 1e-9)
    assert as_set(out) == {(i, j) for i in range(40) for j in range(i + 1, 40)}
    assert_matches_scipy(pos, 1e-9)


@pytest.mark.kernel
def test_negative_coordinates_and_clusters():
    rng = np.random.default_rng(2)
    centers = rng.uniform(-500, -100, (4, 2))
    pos = centers[rng.integers(0, 4, 300)] + rng.normal(size=(300, 2)) * 2.0
    for radius in (0.3, 1.0, 4.0):
        assert_matches_scipy(pos, radius)


@pytest.mark.kernel
def test_sparse_path_far_outliers():
    """A tight cluster plus far outliers: the dense grid would need ~1e18 cells."""
    rng = np.random.default_rng(3)
    pos = np.vstack([rng.normal(size=(200, 2)), [[1e9, -1e9], [-1e9, 1e9], [1e9 + 0.5, -1e9]]])
    for radius in (0.05, 0.6, 2.0):
        assert_matches_scipy(pos, radius)


@pytest.mark.kernel
def test_radius_larger_than_the_whole_set_and_infinite():
    rng = np.random.default_rng(4)
    pos = rng.uniform(-1, 1, (30, 2))
    every_pair = {(i, j) for i in range(30) for j in range(i + 1, 30)}
    assert as_set(neighbor_pairs(pos, 10.0)) == every_pair
    assert as_set(neighbor_pairs(pos, 1e200)) == every_pair  # r*r overflows to inf
    assert as_set(neighbor_pairs(pos, math.inf)) == scipy_pairs(pos, math.inf) == every_pair


@pytest.mark.kernel
def test_tiny_radius_below_subnormal_squares():
    """r*r underflows: points 1e-170 apart have dx*dx == 0 <= r*r and pair, as in scipy."""
    pos = np.array([[0.0, 0.0], [1e-170, 0.0], [0.0, 1e-100], [1e-170, 1e-170]])
    for radius in (1e-200, 1e-160, 1e-100):
        assert_matches_scipy(pos, radius)


@pytest.mark.kernel
def test_accepts_ints_lists_and_float32():
    pts = [[0, 0], [3, 4], [6, 8], [100, 100]]
    assert as_set(neighbor_pairs(pts, 5)) == {(0, 1), (1, 2)}
    assert as_set(neighbor_pairs(np.array(pts, np.int32), 5.0)) == {(0, 1), (1, 2)}
    assert as_set(neighbor_pairs(np.array(pts, np.float32), np.float32(5.0))) == {(0, 1), (1, 2)}


def test_large_clustered_input_equals_ckdtree():
    """100k points, 80 % in 20 gaussian hotspots (the benchmark's shape), compared in bulk."""
    rng = np.random.default_rng(5)
    n = 100_000
    centers = rng.uniform(100, 900, (20, 2))
    hot = centers[rng.integers(0, 20, 80_000)] + rng.normal(size=(80_000, 2)) * 22.5
    pos = np.vstack([hot, rng.uniform(0, 1000, (n - 80_000, 2))])
    got = neighbor_pairs(pos, 3.0)
    expected = cKDTree(pos).query_pairs(3.0, output_type="ndarray")
    assert got.shape == expected.shape
    key = lambda p: np.sort(p[:, 0].astype(np.int64) * n + p[:, 1])  # noqa: E731
    assert np.array_equal(key(got), key(expected))
    assert np.all(got[:, 0] < got[:, 1])


# --------------------------------------------------------------------------- input validation


@pytest.mark.parametrize(
    ("positions", "message"),
    [
        (np.zeros((5, 3)), r"shape \(n, 2\), got \(5, 3\)"),
        (np.zeros(4), r"shape \(n, 2\), got \(4,\)"),
        (np.zeros((2, 2, 2)), r"shape \(n, 2\), got \(2, 2, 2\)"),
        (np.array([[0.0, 1.0], [np.nan, 2.0]]), r"finite: 1 rows have NaN or inf, first at row 1"),
        (np.array([[np.inf, 1.0], [0.0, -np.inf]]), r"finite: 2 rows have NaN or inf, first at row 0"),
        ([["a", "b"], ["c", "d"]], r"numeric, got dtype <U1"),
        (np.array([[1 + 2j, 0]]), r"numeric, got dtype complex128"),
        (np.array([[object(), 1]], dtype=object), r"numeric, got dtype object"),
        ([[1.0, 2.0], [3.0]], r"\(n, 2\) numeric array"),
    ],
)
def test_bad_positions_raise_value_error(positions, message):
    with pytest.raises(ValueError, match=message):
        neighbor_pairs(positions, 1.0)


@pytest.mark.parametrize(
    ("radius", "message"),
    [
        (0.0, r"radius must be positive, got 0\.0"),
        (-1, r"radius must be positive, got -1\.0"),
        (math.nan, r"radius must be a positive number, got NaN"),
        ("1.0", r"radius must be a real number, got str"),
        (None, r"radius must be a real number, got NoneType"),
        (True, r"radius must be a real number, got bool"),
        (np.array([1.0]), r"radius must be a real number, got ndarray"),
    ],
)
def test_bad_radius_raises_value_error(radius, message):
    with pytest.raises(ValueError, match=message):
        neighbor_pairs(np.zeros((3, 2)), radius)


# --------------------------------------------------------------------------- grid


def small_world(rng, n, spread=4.0):
    """(n,) x, y around a 10 x 10 grid of 1 m cells at (-5, -5); some points fall outside it."""
    return rng.normal(size=n) * spread, rng.normal(size=n) * spread


@pytest.mark.kernel
def test_rebuild_sorts_points_by_cell_stably():
    rng = np.random.default_rng(6)
    x, y = small_world(rng, 300)
    g = SpatialGrid(1.0, -5.0, -5.0, 10, 10)
    g.rebuild(x, y)
    assert g.cell_start.shape == (101,) and g.cell_start[0] == 0 and g.cell_start[-1] == 300
    assert np.array_equal(np.sort(g.order), np.arange(300))
    assert np.array_equal(g.sx, x[g.order]) and np.array_equal(g.sy, y[g.order])
    for c in range(100):
        members = g.order[g.cell_start[c] : g.cell_start[c + 1]]
        assert np.all(g.cell[members] == c)
        assert np.all(np.diff(members) > 0), "stable: original order kept inside a cell"
    col = np.clip(np.floor((x + 5.0) / 1.0), 0, 9)
    row = np.clip(np.floor((y + 5.0) / 1.0), 0, 9)
    assert np.array_equal(g.cell, (row * 10 + col).astype(np.int64)), "clamped row-major cells"


@pytest.mark.kernel
@pytest.mark.parametrize("radius", [0.3, 1.0, 1.7, 3.2])  # <= cell, and 2 and 4 rings
def test_grid_pairs_within_matches_reference(radius):
    rng = np.random.default_rng(7)
    x, y = small_world(rng, 250)
    g = SpatialGrid(1.0, -5.0, -5.0, 10, 10)
    g.rebuild(x, y)
    assert as_set(g.pairs_within(radius)) == naive_pairs(x, y, radius)


@pytest.mark.kernel
def test_grid_queries_match_reference():
    rng = np.random.default_rng(8)
    x, y = small_world(rng, 200)
    g = SpatialGrid(1.0, -5.0, -5.0, 10, 10)
    g.rebuild(x, y)
    for t in range(40):
        radius = float(rng.choice([0.2, 0.8, 1.0, 2.5, 7.0]))
        px, py = rng.normal(size=2) * 6.0  # inside and outside the grid
        assert np.array_equal(g.neighbors_near(px, py, radius), naive_within(x, y, px, py, radius))
        i = int(rng.integers(200))
        assert np.array_equal(g.neighbors_of(i, radius), naive_within(x, y, x[i], y[i], radius, exclude=i))
        k = int(rng.integers(0, 25))
        assert np.array_equal(g.nearest(px, py, k), naive_knn(x, y, px, py, k))
        assert np.array_equal(g.nearest_of(i, k), naive_knn(x, y, x[i], y[i], k, exclude=i))


@pytest.mark.kernel
def test_queries_far_outside_the_grid():
    rng = np.random.default_rng(9)
    x, y = small_world(rng, 100)
    x[:3] = [1e4, 1e4 + 0.5, -3e4]  # clamped into edge cells
    y[1] = y[0]
    g = SpatialGrid(1.0, -5.0, -5.0, 10, 10)
    g.rebuild(x, y)
    for px, py in [(1e4, y[0]), (-1e5, 0.0), (0.0, 1e5)]:
        assert np.array_equal(g.neighbors_near(px, py, 1.0), naive_within(x, y, px, py, 1.0))
        assert np.array_equal(g.nearest(px, py, 5), naive_knn(x, y, px, py, 5))
    assert np.array_equal(g.neighbors_of(0, 1.0), [1])
    assert as_set(g.pairs_within(1.0)) == naive_pairs(x, y, 1.0)


@pytest.mark.kernel
def test_knn_ties_break_by_index_and_k_beyond_n():
    # a lattice: many points at equal distances from the centre point 12
    ij = np.array([(i, j) for j in range(5) for i in range(5)], np.float64)
    x, y = ij[:, 0], ij[:, 1]
    g = SpatialGrid(1.0, 0.0, 0.0, 5, 5)
    g.rebuild(x, y)
    assert np.array_equal(g.nearest_of(12, 4), [7, 11, 13, 17])
    assert np.array_equal(g.nearest(2.0, 2.0, 5), [12, 7, 11, 13, 17])
    assert np.array_equal(g.nearest_of(12, 100), naive_knn(x, y, 2.0, 2.0, 100, exclude=12))
    assert g.nearest_of(12, 100).shape == (24,)
    assert g.nearest(0.0, 0.0, 0).shape == (0,)


@pytest.mark.kernel
@SETTINGS
@given(point_sets(max_n=30), st.floats(0.05, 4.0), st.integers(0, 8), COORD, COORD)
def test_grid_queries_property(pos, radius, k, px, py):
    """Any point set on a fixed grid (most of a large spread lands clamped in edge cells)."""
    x, y = pos[:, 0], pos[:, 1]
    g = SpatialGrid(1.0, -4.0, -4.0, 8, 8)
    g.rebuild(x, y)
    assert as_set(g.pairs_within(radius)) == naive_pairs(x, y, radius)
    for qx, qy in [(px, py), (px * 1e-6, py * 1e-6)]:
        assert np.array_equal(g.neighbors_near(qx, qy, radius), naive_within(x, y, qx, qy, radius))
        assert np.array_equal(g.nearest(qx, qy, k), naive_knn(x, y, qx, qy, k))
    if x.shape[0]:
        assert np.array_equal(g.neighbors_of(0, radius), naive_within(x, y, x[0], y[0], radius, exclude=0))
        assert np.array_equal(g.nearest_of(0, k), naive_knn(x, y, x[0], y[0], k, exclude=0))


@pytest.mark.kernel
def test_rebuild_reuses_buffers_and_stays_correct():
    rng = np.random.default_rng(10)
    g = SpatialGrid(1.0, -5.0, -5.0, 10, 10)
    x, y = small_world(rng, 200)
    g.rebuild(x, y)
    order_buf, sxy_buf = g.order, g.sxy
    pairs_buf = g.pairs_within(1.0, copy=False)
    for n in (200, 150, 0, 120):  # same and smaller n: no new buffers
        x, y = small_world(rng, n)
        g.rebuild(x, y)
        assert np.shares_memory(g.order, order_buf) or n == 0
        assert np.shares_memory(g.sxy, sxy_buf) or n == 0
        got = g.pairs_within(1.0, copy=False)
        assert np.shares_memory(got, pairs_buf) or got.size == 0
        assert as_set(got) == naive_pairs(x, y, 1.0)
        i = max(n - 1, 0)
        if n:
            assert np.array_equal(g.nearest_of(i, 3), naive_knn(x, y, x[i], y[i], 3, exclude=i))
    x, y = small_world(rng, 260)  # n grows: buffers grow, results still right
    g.rebuild(x, y)
    assert g.order.shape == (260,)
    assert as_set(g.pairs_within(1.0)) == naive_pairs(x, y, 1.0)


@pytest.mark.kernel
def test_pairs_within_grows_its_buffer_when_pairs_outnumber_it():
    # 100 coincident points: 4950 pairs against a first buffer of 8n + 1024
    g = SpatialGrid(1.0, 0.0, 0.0, 4, 4)
    x = np.full(100, 1.5)
    g.rebuild(x, x.copy())
    out = g.pairs_within(0.5)
    assert out.shape == (4950, 2)
    assert as_set(out) == {(i, j) for i in range(100) for j in range(i + 1, 100)}


@pytest.mark.kernel
def test_pair_kernels_report_overflow_and_fill_a_prefix():
    """jax-md style: a too-small output is filled, the true count returned, nothing raised."""
    rng = np.random.default_rng(12)
    x, y = rng.uniform(0, 3, 60), rng.uniform(0, 3, 60)
    expected = naive_pairs(x, y, 1.0)
    g = SpatialGrid(1.0, 0.0, 0.0, 3, 3)
    g.rebuild(x, y)
    small = np.full((10, 2), -1, np.int64)
    m = _pairs_dense(g._sxy_flat, g._order, g.cell_start, 3, g._geom, 1, 1.0, small)
    assert m == len(expected) > 10
    assert as_set(small) <= expected
    order, sxy, key, start, width = _sort_sparse(x, y, 0.0, 0.0, 2.0 / 1.5)
    small[:] = -1
    m = _pairs_sparse(sxy, order, key, start, width, 1.0, small)
    assert m == len(expected)
    assert as_set(small) <= expected


@pytest.mark.kernel
def test_rebuild_refuses_non_finite_and_queries_then_refuse():
    g = SpatialGrid(1.0, 0.0, 0.0, 4, 4)
    with pytest.raises(RuntimeError, match="call rebuild"):
        g.pairs_within(1.0)
    g.rebuild(np.array([0.5, 1.5]), np.array([0.5, 0.5]))
    with pytest.raises(ValueError, match="finite: 2 points have NaN or inf"):
        g.rebuild(np.array([0.5, np.nan, np.inf]), np.array([0.5, 0.5, 1.0]))
    with pytest.raises(RuntimeError, match="call rebuild"):
        g.neighbors_near(0.0, 0.0, 1.0)
    g.rebuild(np.array([0.5, 1.5]), np.array([0.5, 0.5]))
    assert as_set(g.pairs_within(1.0)) == {(0, 1)}


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: SpatialGrid(0.0, 0, 0, 4, 4), r"cell_m must be positive"),
        (lambda: SpatialGrid(math.inf, 0, 0, 4, 4), r"cell_m must be finite"),
        (lambda: SpatialGrid(1.0, math.nan, 0, 4, 4), r"origin_x must be finite"),
        (lambda: SpatialGrid(1.0, 0, 0, 0, 4), r"n_cols must be in \[1, "),
        (lambda: SpatialGrid(1.0, 0, 0, 4, 2.5), r"n_rows must be an integer"),
    ],
)
def test_grid_constructor_validation(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def test_grid_query_validation():
    g = SpatialGrid(1.0, 0.0, 0.0, 4, 4)
    g.rebuild(np.array([0.5, 1.5]), np.array([0.5, 0.5]))
    with pytest.raises(ValueError, match="same length"):
        g.rebuild(np.zeros(3), np.zeros(2))
    with pytest.raises(ValueError, match="x must be 1-D"):
        g.rebuild(np.zeros((3, 2)), np.zeros(3))
    with pytest.raises(ValueError, match=r"i must be a point index in \[0, 2\), got 2"):
        g.neighbors_of(2, 1.0)
    with pytest.raises(ValueError, match="radius_m must be positive"):
        g.neighbors_near(0.0, 0.0, 0.0)
    with pytest.raises(ValueError, match="px must be finite"):
        g.nearest(math.nan, 0.0, 1)
    with pytest.raises(ValueError, match="k must be >= 0"):
        g.nearest(0.0, 0.0, -1)
