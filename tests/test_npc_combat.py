"""Hostile NPCs bite the players beside them; the bites count as hurt for reaction timing."""

import pytest

from systems.components import CheatStats, Health
from systems.lifecycle import Deaths
from systems.npc_combat import NpcHits
from worlds import Simulation, parse_world


@pytest.mark.kernel
def test_hostile_npcs_bite_players_in_reach_only():
    d = parse_world({
        "world": {"name": "w", "bounds": [0, 0, 60, 60], "cell_m": 5, "seed": 2},
        "populations": [
            {"kind": "players", "name": "near", "count": 1, "spawn": {"shape": "disc", "x": 10, "y": 10, "radius_m": 0.01}},
            {"kind": "players", "name": "far", "count": 1, "spawn": {"shape": "disc", "x": 50, "y": 50, "radius_m": 0.01}},
            {"kind": "npcs", "name": "wolf", "count": 1, "movement": "static", "attack_damage": 7.0,
             "attack_per_s": 20.0, "attack_reach_m": 2.0, "spawn": {"shape": "disc", "x": 11, "y": 10, "radius_m": 0.01}},
        ],
    })
    sim = Simulation(d, generate=False)
    near, far = (int(e) for e in sim.player_ids)
    bitten = 0
    for _ in range(10):
        sim.step()
        hits = sim.world.resources[NpcHits]
        assert set(hits.victims.tolist()) <= {near}
        bitten += hits.victims.size
    assert bitten >= 5  # 20 bites a second, a chance each tick
    assert sim.world.get(near, Health)["hp"] == 100.0 - 7.0 * bitten
    assert sim.world.get(far, Health)["hp"] == 100.0
    assert sim.world.get(near, CheatStats)["hurt_ms"] > 0
    for _ in range(20):  # 100 hp at 7 a bite: dead within a second
        sim.step()
    h = sim.world.get(near, Health)
    deaths = sim.world.resources[Deaths]
    assert h["dead"] == 1 and deaths.ids.tolist() == [near] and deaths.tick.tolist() == [h["died_tick"]]
