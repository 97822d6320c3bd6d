"""Replication: for each owned positioned entity, the shard that holds it now and the other
shards within whose interest radius it stands, held to a brute-force check."""

import types

import numpy as np
import pytest

from ecs import World
from systems.components import Ghost, Health, Position, Velocity
from systems.regions import RegionLayout
from systems.replication import MAX_SHARDS, Replication, ReplicationPlan, _near
from worlds.cluster.shardmap import ShardMap

BOUNDS = (0.0, 0.0, 1000.0, 600.0)


def brute_mask(rects, x, y, home, radius_m):
    """(n,) uint64: bit s iff the point is within radius of rects[s] (inside it too) and s is
    not ``home``, the shard that owns the points."""
    out = np.zeros(x.size, np.uint64)
    for i in range(x.size):
        m = 0
        for s, (x0, y0, x1, y1) in enumerate(rects.tolist()):
            dx = max(x0 - x[i], 0.0, x[i] - x1)
            dy = max(y0 - y[i], 0.0, y[i] - y1)
            if s != home and dx * dx + dy * dy <= radius_m * radius_m:
                m |= 1 << s
        out[i] = m
    return out


def shard_world(seed, n=120, ghosts=6):
    """Owned entities in two tables, ghosts (excluded from the plan) and one with no position."""
    rng = np.random.default_rng(seed)
    w = World()
    x0, y0, x1, y1 = BOUNDS

    def at(k):
        return {Position: {"x": rng.uniform(x0, x1, k), "y": rng.uniform(y0, y1, k)}}

    half = n // 2
    owned = [w.spawn_batch((Position,), half, at(half)), w.spawn_batch((Position, Velocity), n - half, at(n - half))]
    ghost = w.spawn_batch((Position, Ghost), ghosts, {**at(ghosts), Ghost: {"owner": 1}})
    w.spawn((Health,))
    return w, np.concatenate(owned), ghost


def xy(world, ids):
    x = np.array([world.get(e, Position)["x"] for e in ids.tolist()])
    y = np.array([world.get(e, Position)["y"] for e in ids.tolist()])
    return x, y


def check_plan(world, plan, sm, radius_m, owned, home=0):
    assert isinstance(plan, ReplicationPlan)
    assert plan.ids.dtype == np.int64 and plan.dest.dtype == np.int64 and plan.near.dtype == np.uint64
    assert sorted(plan.ids.tolist()) == sorted(owned.tolist())
    x, y = xy(world, plan.ids)
    assert np.array_equal(plan.dest, sm.shard_of(x, y))
    assert np.array_equal(plan.near, brute_mask(sm.rects, x, y, home, radius_m))
    return x, y


@pytest.mark.parametrize("count, shards, radius_m", [(1, 1, 50.0), (4, 2, 30.0), (9, 4, 80.0), (16, 7, 25.0)])
def test_plan_matches_the_shard_map_and_a_brute_force_interest_check(count, shards, radius_m):
    world, owned, ghost = shard_world(seed=count)
    sm = ShardMap(RegionLayout(BOUNDS, count), shards)
    rep = Replication(world, 0, sm, radius_m)
    plan = rep.plan(world)
    check_plan(world, plan, sm, radius_m, owned)
    assert not np.isin(ghost, plan.ids).any()
    if shards > 1:
        assert (plan.near != 0).any() and (plan.near == 0).any()  # the case is not trivial
        assert len(set(plan.dest.tolist())) > 1
    for s in range(shards):
        assert sorted(plan.leaving(s).tolist()) == sorted(plan.ids[plan.dest != s].tolist())
        seen = [e for e, m in zip(plan.ids.tolist(), plan.near.tolist()) if (int(m) >> s) & 1]
        assert plan.seen_by(s).tolist() == seen
        if s == 0:
            assert plan.seen_by(s).size == 0  # never its own owner
        else:  # one waiting to be handed to s is a ghost there meanwhile
            assert np.isin(plan.ids[plan.dest == s], plan.seen_by(s)).all()


def test_leaving_and_seen_by_pick_the_right_entities():
    world = World()
    sm = ShardMap(RegionLayout(BOUNDS, 2), 2)  # split at x = 500: shard 0 left, shard 1 right
    assert sm.rects.tolist() == [[0.0, 0.0, 500.0, 600.0], [500.0, 0.0, 1000.0, 600.0]]
    xs = [100.0, 495.0, 500.0, 504.0, 900.0, 499.999]
    ids = [world.spawn((Position,), {Position: {"x": x, "y": 300.0}}) for x in xs]
    plan = Replication(world, 0, sm, 5.0).plan(world)
    by_id = dict(zip(plan.ids.tolist(), zip(plan.dest.tolist(), plan.near.tolist())))
    assert [by_id[e] for e in ids] == [(0, 0), (0, 2), (1, 2), (1, 2), (1, 2), (0, 2)]
    assert sorted(plan.leaving(0).tolist()) == sorted([ids[2], ids[3], ids[4]])
    assert sorted(plan.leaving(1).tolist()) == sorted([ids[0], ids[1], ids[5]])
    assert sorted(plan.seen_by(1).tolist()) == sorted([ids[1], ids[2], ids[3], ids[4], ids[5]])
    assert plan.seen_by(0).size == 0


def test_plan_follows_new_entities_moves_and_a_rebalance():
    world = World()
    layout = RegionLayout(BOUNDS, 4)
    sm = ShardMap(layout, 2)
    rep = Replication(world, 1, sm, 40.0)  # built before any entity exists; owns as shard 1
    plan = rep.plan(world)
    assert plan.ids.size == plan.dest.size == plan.near.size == 0
    assert plan.leaving(1).size == 0 and plan.seen_by(0).size == 0
    rng = np.random.default_rng(3)
    ids = world.spawn_batch((Position, Health), 50, {Position: {"x": rng.uniform(0, 1000, 50),
                                                                "y": rng.uniform(0, 600, 50)}})
    check_plan(world, rep.plan(world), sm, 40.0, ids, home=1)
    world.set(int(ids[0]), Position, x=999.0)
    world.set(int(ids[1]), Position, x=1.0)
    plan = rep.plan(world)
    check_plan(world, plan, sm, 40.0, ids, home=1)
    dest = dict(zip(plan.ids.tolist(), plan.dest.tolist()))
    assert (dest[int(ids[0])], dest[int(ids[1])]) == (1, 0)
    before = sm.rects.copy()
    layout.set_split(layout.balanced_split(rng.uniform(700, 1000, 200), rng.uniform(0, 600, 200), np.ones(200)))
    assert not np.array_equal(sm.rects, before)
    check_plan(world, rep.plan(world), sm, 40.0, ids, home=1)
    rep.run(world, None)
    assert np.array_equal(world.resources[ReplicationPlan].ids, rep.plan(world).ids)


def test_more_shards_than_a_mask_holds_are_refused():
    with pytest.raises(ValueError, match=f"at most {MAX_SHARDS} shards, got 65"):
        Replication(World(), 0, types.SimpleNamespace(shards=65), 10.0)


@pytest.mark.kernel
@pytest.mark.parametrize("count", [1, 3, 64])
def test_near_kernel_matches_the_reference(count):
    rng = np.random.default_rng(count)
    sm = ShardMap(RegionLayout(BOUNDS, count), count)
    rects = np.ascontiguousarray(sm.rects)
    # Random points, points on every rectangle's corners and just outside the world.
    x = np.concatenate([rng.uniform(-50, 1050, 40), rects[:, 0], rects[:, 2], [-20.0, 1010.0]])
    y = np.concatenate([rng.uniform(-50, 650, 40), rects[:, 1], rects[:, 3], [300.0, -5.0]])
    for radius_m in (0.0, 12.0, 150.0):
        out = np.full(x.size, 12345, np.uint64)
        for home in (count - 1, 0):  # home 0 last: the top bit can show below
            _near(x, y, home, rects, radius_m, out)
            assert np.array_equal(out, brute_mask(rects, x, y, home, radius_m))
    if count == 64:  # the top bit of the mask is reached
        assert (out >> np.uint64(63)).any()
