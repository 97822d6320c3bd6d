"""The shard map: every shard owns whole regions forming one rectangle, the shards' rectangles
tile the world, and a point's shard is the one whose rectangle holds it."""

import numpy as np
import pytest

from systems.regions import RegionLayout
from worlds.cluster.shardmap import ShardMap

BOUNDS = (-100.0, 50.0, 900.0, 450.0)  # wider than tall, off the origin


def area(r):
    return (r[..., 2] - r[..., 0]) * (r[..., 3] - r[..., 1])


def overlap(a, b):
    w = min(a[2], b[2]) - max(a[0], b[0])
    h = min(a[3], b[3]) - max(a[1], b[1])
    return max(w, 0.0) * max(h, 0.0)


def layouts(count):
    """The layout as built (even splits) and after a rebalance toward a clustered crowd."""
    even = RegionLayout(BOUNDS, count)
    moved = RegionLayout(BOUNDS, count)
    rng = np.random.default_rng(count)
    x = np.concatenate([rng.normal(600.0, 40.0, 400), rng.uniform(-100.0, 900.0, 100)]).clip(-99.0, 899.0)
    y = np.concatenate([rng.normal(120.0, 30.0, 400), rng.uniform(50.0, 450.0, 100)]).clip(51.0, 449.0)
    moved.set_split(moved.balanced_split(x, y, np.ones(x.size)))
    return [even, moved]


def points(rects, rng, n=600):
    """Random points of the world, and every region's lower-left corner (on a split: the
    half-open rule decides)."""
    x0, y0, x1, y1 = BOUNDS
    px = np.concatenate([rng.uniform(x0, x1, n), rects[:, 0], rects[:, 0], 0.5 * (rects[:, 0] + rects[:, 2])])
    py = np.concatenate([rng.uniform(y0, y1, n), rects[:, 1], 0.5 * (rects[:, 1] + rects[:, 3]), rects[:, 1]])
    return px, py


def containing(rects, x, y):
    """(n,) shard whose half-open rectangle holds each point; -1 if none, -2 if several."""
    inside = ((rects[None, :, 0] <= x[:, None]) & (x[:, None] < rects[None, :, 2])
              & (rects[None, :, 1] <= y[:, None]) & (y[:, None] < rects[None, :, 3]))
    found = inside.argmax(axis=1)
    return np.where(inside.sum(axis=1) == 1, found, np.where(inside.any(axis=1), -2, -1))


@pytest.mark.parametrize("count", range(1, 17))
def test_shards_own_whole_regions_that_form_their_rectangle(count):
    for layout in layouts(count):
        region_area = area(layout.rects)
        world_area = area(np.asarray(BOUNDS))
        assert region_area.sum() == pytest.approx(world_area, rel=1e-12)
        for shards in range(1, count + 1):
            sm = ShardMap(layout, shards)
            owner = sm.region_shard
            assert owner.shape == (count,) and owner.min() >= 0 and owner.max() < shards
            assert np.array_equal(np.unique(owner), np.arange(shards))  # every shard has a region
            rects = sm.rects
            assert rects.shape == (shards, 4)
            for s in range(shards):
                mine = layout.rects[owner == s]
                assert region_area[owner == s].sum() == pytest.approx(area(rects[s]), rel=1e-12)
                assert (mine[:, 0] >= rects[s, 0]).all() and (mine[:, 2] <= rects[s, 2]).all()
                assert (mine[:, 1] >= rects[s, 1]).all() and (mine[:, 3] <= rects[s, 3]).all()
            assert area(rects).sum() == pytest.approx(world_area, rel=1e-12)
            assert rects[:, 0].min() == BOUNDS[0] and rects[:, 1].min() == BOUNDS[1]
            assert rects[:, 2].max() == BOUNDS[2] and rects[:, 3].max() == BOUNDS[3]
            for s in range(shards):
                for t in range(s + 1, shards):
                    assert overlap(rects[s], rects[t]) == 0.0, (s, t)


@pytest.mark.parametrize("count", range(1, 17))
def test_shard_of_is_the_rectangle_holding_the_point(count):
    rng = np.random.default_rng(100 + count)
    for layout in layouts(count):
        x, y = points(layout.rects, rng)
        region = layout.assign(x, y)
        for shards in range(1, count + 1):
            sm = ShardMap(layout, shards)
            got = sm.shard_of(x, y)
            assert got.dtype == np.int64
            assert np.array_equal(got, containing(sm.rects, x, y))
            assert np.array_equal(got, sm.region_shard[region])


def test_the_assignment_depends_only_on_the_counts():
    for count in (5, 11, 16):
        even, moved = layouts(count)
        for shards in range(1, count + 1):
            assert np.array_equal(ShardMap(even, shards).region_shard, ShardMap(moved, shards).region_shard)
            assert not np.array_equal(ShardMap(even, shards).rects, ShardMap(moved, shards).rects) or shards == 1


def test_shards_are_dealt_in_proportion_to_regions():
    sm = ShardMap(RegionLayout(BOUNDS, 16), 4)
    assert np.bincount(sm.region_shard).tolist() == [4, 4, 4, 4]
    sm = ShardMap(RegionLayout(BOUNDS, 16), 16)
    assert sorted(sm.region_shard.tolist()) == list(range(16))


@pytest.mark.parametrize("count, shards", [(1, 2), (3, 4), (16, 17), (4, 0), (4, -1)])
def test_shard_counts_out_of_range_are_refused(count, shards):
    with pytest.raises(ValueError, match=f"{shards} shards need at least as many regions; the layout has {count}"):
        ShardMap(RegionLayout(BOUNDS, count), shards)


def brute_near(rects, x, y, radius_m):
    out = np.zeros((x.size, rects.shape[0]), bool)
    for i in range(x.size):
        for s, (x0, y0, x1, y1) in enumerate(rects.tolist()):
            dx = max(x0 - x[i], 0.0, x[i] - x1)
            dy = max(y0 - y[i], 0.0, y[i] - y1)
            out[i, s] = dx * dx + dy * dy <= radius_m * radius_m
    return out


@pytest.mark.parametrize("count, shards", [(1, 1), (2, 2), (7, 3), (12, 5), (16, 16)])
def test_near_matches_a_brute_force_distance_to_each_rectangle(count, shards):
    rng = np.random.default_rng(count * 31 + shards)
    for layout in layouts(count):
        sm = ShardMap(layout, shards)
        x, y = points(layout.rects, rng, 300)
        x = np.concatenate([x, rng.uniform(-300.0, 1100.0, 100)])  # outside the world too
        y = np.concatenate([y, rng.uniform(-150.0, 650.0, 100)])
        for radius_m in (0.0, 7.5, 60.0, 5000.0):
            got = sm.near(x, y, radius_m)
            assert got.shape == (x.size, shards)
            assert np.array_equal(got, brute_near(sm.rects, x, y, radius_m))
            assert got.all() == (radius_m == 5000.0) or shards == 1
        inside = sm.near(x[:300], y[:300], 0.0)
        assert inside[np.arange(300), sm.shard_of(x[:300], y[:300])].all()  # its own shard included
