"""NPCs wander inside the world and near home; players go where their accepted claims put them."""

import numpy as np
import pytest

from systems.components import Npc, Position, Velocity
from worlds import Simulation, parse_world


def wolves(count=200, leash=15.0, speed=4.0, movement="wander"):
    return parse_world({
        "world": {"name": "w", "bounds": [-50, -50, 50, 50], "cell_m": 5, "seed": 3},
        "populations": [{"kind": "npcs", "name": "wolves", "count": count, "speed_mps": speed, "leash_m": leash,
                         "movement": movement, "spawn": {"shape": "uniform"}}],
    })


@pytest.mark.kernel
def test_npcs_stay_in_bounds_and_near_home():
    sim = Simulation(wolves(count=60), generate=False)
    moved = 0.0
    start = sim.world.query(Npc).concat(Position, "x").copy()
    for _ in range(100):
        sim.step()
        q = sim.world.query(Npc)
        x, y = q.concat(Position, "x"), q.concat(Position, "y")
        hx, hy = q.concat(Npc, "home_x"), q.concat(Npc, "home_y")
        assert (x >= -50).all() and (x <= 50).all() and (y >= -50).all() and (y <= 50).all()
        # Past the leash an NPC turns home; it can overshoot by at most a tick of travel.
        assert (np.hypot(x - hx, y - hy) <= 15.0 + 4.0 * 0.05 + 1e-9).all()
    moved = np.abs(sim.world.query(Npc).concat(Position, "x") - start).sum()
    assert moved > 0


def test_npc_speed_is_their_declared_speed():
    sim = Simulation(wolves(leash=1000.0), generate=False)
    sim.step()
    q = sim.world.query(Npc)
    speed = np.hypot(q.concat(Velocity, "vx"), q.concat(Velocity, "vy"))
    assert speed == pytest.approx(np.full(200, 4.0))


def test_static_npcs_do_not_move():
    sim = Simulation(wolves(movement="static"), generate=False)
    before = sim.world.query(Npc).concat(Position, "x").copy()
    for _ in range(10):
        sim.step()
    assert (sim.world.query(Npc).concat(Position, "x") == before).all()
