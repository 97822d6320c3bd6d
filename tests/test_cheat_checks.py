"""Each refusal rule of validation, tried on a scripted world: refused with its reason,
counted, and nothing in the game state changed."""

import numpy as np
import pytest

from systems.actions import ActionBatch, read_targets
from systems.components import CheatStats, Health, Link, Loot, Npc, Player, Position, Static, Velocity
from tests.conftest import WORLDS
from worlds import Simulation, parse_world

pytestmark = pytest.mark.kernel


def world():
    sim = Simulation.from_file(WORLDS / "walls.toml", generate=False)
    west, east, south = (int(e) for e in sim.player_ids)
    return sim, west, east, south


def rec(sim, who, seq, kind, t_ms, **fields):
    p = sim.world.get(who, Player)
    r = {"player": who, "seq": seq, "kind": kind, "client_time_ms": t_ms, "recv_time_ms": t_ms + 30.0,
         "x": p["last_x"], "y": p["last_y"], "value": 1.0}
    r.update(fields)
    return r


def run(sim, *records):
    assert sim.submit(list(records)) == []
    return sim.step()


def skip(sim, ticks):
    for _ in range(ticks):
        sim.step()


def test_walking_into_a_wall_or_a_pond_is_blocked():
    sim, west, _, south = world()
    skip(sim, 10)
    before = sim.world.get(west, Position)
    t = sim.tick * 50.0
    r = run(sim, rec(sim, west, 1, "move", t - 20, x=49.0, y=50.0), rec(sim, south, 1, "move", t - 20, x=20.0, y=19.0))
    assert r.refused == {"blocked": 2}
    assert sim.world.get(west, Position) == before


def test_shooting_through_a_wall_is_not_visible_but_around_it_is():
    sim, west, east, south = world()
    skip(sim, 10)
    t = sim.tick * 50.0
    r = run(sim, rec(sim, west, 1, "ranged", t - 20, target=east), rec(sim, west, 2, "ranged", t - 10, target=south))
    # The refused shot was never fired, so the next one 10 ms later is not too soon.
    assert r.refused == {"not_visible": 1} and r.applied == 1
    assert sim.world.get(south, Health)["hp"] < 100.0 and sim.world.get(east, Health)["hp"] == 100.0


def test_weapon_intervals_and_the_rate_bucket():
    sim, west, east, south = world()
    skip(sim, 40)
    t = sim.tick * 50.0
    shots = [rec(sim, west, k + 1, "ranged", t - 400 + 100 * k, target=south) for k in range(3)]
    r = run(sim, *shots)
    assert r.applied == 1 and r.refused == {"cooldown": 2}  # 100 ms apart: one in five hundred
    skip(sim, 40)
    t = sim.tick * 50.0
    moves = [rec(sim, west, 10 + k, "move", t - 300 + 40 * k) for k in range(7)]
    r = run(sim, *moves)
    assert r.applied == 7 and r.refused == {}  # position updates at 25 Hz: bounded by speed, not the bucket
    skip(sim, 40)
    t = sim.tick * 50.0
    uses = [rec(sim, west, 20 + k, "use", t - 300 + 40 * k) for k in range(7)]
    r = run(sim, *uses)
    assert r.refused.get("rate_limit") == 3  # the bucket holds four


def test_refusals_are_evidence_not_effects():
    sim, west, east, south = world()
    skip(sim, 10)
    t = sim.tick * 50.0
    r = run(sim, rec(sim, west, 1, "move", t - 20, x=49.0, y=50.0), rec(sim, west, 2, "move", t - 10, x=90.0, y=50.0))
    assert r.refused == {"blocked": 1, "teleport": 1}
    quiet, *_ = world()
    skip(quiet, 11)
    assert sim.world.state_hash(exclude=[CheatStats, Link]) == quiet.world.state_hash(exclude=[CheatStats, Link])
    assert sim.world.get(west, CheatStats)["r_move"] == 2


def test_packets_arriving_out_of_order_are_judged_in_sequence_order():
    """A burst of moves arrives scrambled: judged in sequence order, each one a step from the
    one before, none is refused; replaying one is."""
    sim, west, _, _ = world()
    skip(sim, 40)
    t = sim.tick * 50.0 - 400.0
    p = sim.world.get(west, Player)
    steps = [rec(sim, west, k + 1, "move", t + 10.0 * k, x=p["last_x"] + 0.02 * (k + 1), y=p["last_y"])
             for k in range(4)]
    r = run(sim, steps[3], steps[1], steps[0], steps[2])
    assert r.refused == {} and r.applied == 4
    assert sim.world.get(west, Position)["x"] == pytest.approx(p["last_x"] + 0.08)
    assert run(sim, steps[2]).refused == {"replayed_seq": 1}


def test_a_newer_action_dated_before_an_older_one_is_forged():
    """A client's clock does not run backwards: sequence number 2 claiming a time 200 ms before
    number 1 is a back-dated action, even when its arrival alone looks in time."""
    sim, west, _, _ = world()
    skip(sim, 40)
    t = sim.tick * 50.0
    r = run(sim, rec(sim, west, 1, "move", t - 20), rec(sim, west, 2, "move", t - 220, recv_time_ms=t - 190))
    assert r.refused == {"forged_timestamp": 1} and r.applied == 1
    assert sim.world.get(west, Player)["last_seq"] == 1


def test_evidence_is_the_same_whether_the_actors_share_a_table_or_not():
    """The anomaly score works in place on the table's CheatStats block when every actor of the
    tick lives in one table, on gathered copies otherwise: the evidence comes out the same."""
    seen = []
    for split in (False, True):
        sim, west, east, south = world()
        if split:  # east now lives in a table of its own
            sim.world.add_component(east, Static)
            sim.world.apply_commands()
        skip(sim, 10)
        t = sim.tick * 50.0
        r = run(sim, rec(sim, west, 1, "move", t - 20, x=49.0, y=50.0),
                rec(sim, west, 2, "ranged", t - 10, target=south), rec(sim, east, 1, "move", t - 20, x=5.0, y=5.0))
        assert r.refused == {"blocked": 1, "teleport": 1} and r.applied == 1
        seen.append({p: sim.world.get(p, CheatStats) for p in (west, east)})
    assert seen[0] == seen[1]
    assert seen[0][west]["r_move"] == 1 and seen[0][west]["shots"] == 1 and seen[0][east]["r_move"] == 1


def test_a_batch_locates_its_entities_once_until_a_row_leaves_a_table():
    """``ActionBatch.where``: the same answer for every step that asks, found again after a
    despawn moved rows (or an entity left)."""
    sim, west, east, south = world()
    w = sim.world
    ids = np.array([west, east, south, 0], np.int64)
    batch = ActionBatch(actor=ids, seq=np.zeros(4, np.int64), client_time_ms=np.zeros(4), kind=np.ones(4, np.int8),
                        target=ids[::-1].copy(), x=np.zeros(4), y=np.zeros(4), value=np.zeros(4),
                        recv_time_ms=np.zeros(4))
    first = batch.where(w, "actor")
    assert batch.where(w, "actor")[1] is first[1]  # found once
    assert first[0][3] == -1 and (first[0][:3] >= 0).all()
    stranger = w.spawn((Position,), {Position: {"x": 1.0, "y": 1.0}})  # in a table no actor lives in
    w.despawn(stranger)
    assert batch.where(w, "actor")[1] is first[1]  # rows left only a table the batch does not name
    w.despawn(west)  # the last row of its table moves into its place
    table, row = batch.where(w, "actor")
    assert table[0] == -1 and row[0] == -1
    assert [w.registry.locate(int(e)) for e in ids[1:3]] == list(zip(table[1:3].tolist(), row[1:3].tolist()))


def test_targets_are_seen_as_they_stand_where_they_live():
    """``read_targets``: each action's target's dead, x, y from whichever table holds it, its
    velocity for ranged attacks only and Loot.container for loot only; zeros for no target."""
    sim = Simulation(parse_world({
        "world": {"name": "w", "bounds": [0, 0, 60, 60]},
        "populations": [
            {"kind": "players", "name": "p", "count": 2, "spawn": {"shape": "disc", "x": 10, "y": 10, "radius_m": 5}},
            {"kind": "npcs", "name": "wolf", "count": 1, "spawn": {"shape": "disc", "x": 20, "y": 20, "radius_m": 5}},
            {"kind": "npcs", "name": "chest", "count": 1, "movement": "static", "container": True, "gold": 5,
             "respawn": False, "spawn": {"shape": "disc", "x": 30, "y": 30, "radius_m": 0.01}},
        ],
    }), generate=False)
    w = sim.world
    me, you = (int(e) for e in sim.player_ids)
    wolf, chest = (int(e) for e in w.query(Npc).ids())
    assert w.get(chest, Loot)["container"] == 1
    w.set(wolf, Velocity, vx=1.5, vy=-2.0)
    w.set(you, Velocity, vx=0.5, vy=0.25)
    w.set(wolf, Health, dead=1)
    kinds = np.array([3, 2, 5, 3, 3, 3], np.int8)  # ranged, melee, loot, ranged, ranged, ranged at nothing
    targets = np.array([wolf, wolf, chest, chest, you, 0], np.int64)
    n = targets.size
    batch = ActionBatch(actor=np.full(n, me, np.int64), seq=np.arange(n, dtype=np.int64), client_time_ms=np.zeros(n),
                        kind=kinds, target=targets, x=np.zeros(n), y=np.zeros(n), value=np.zeros(n),
                        recv_time_ms=np.zeros(n))
    at = {e: (w.get(e, Position)["x"], w.get(e, Position)["y"]) for e in (wolf, chest, you)}
    assert read_targets(w, batch).tolist() == [
        [1.0, *at[wolf], 0.0, 1.5, -2.0], [1.0, *at[wolf], 0.0, 0.0, 0.0], [0.0, *at[chest], 1.0, 0.0, 0.0],
        [0.0, *at[chest], 0.0, 0.0, 0.0], [0.0, *at[you], 0.0, 0.5, 0.25], [0.0] * 6]
