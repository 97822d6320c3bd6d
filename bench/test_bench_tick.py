"""Whole ticks of shipped and scaled worlds (groups ``tick`` and ``scaling``), and the state
hash a tick ends with (group ``hash``).

Each benchmark round is one ``Simulation.step()``, the built-in client simulation included
(``bench/run.py`` separates the two with ``TickReport.tick_ms``); the simulation is built and
warmed outside the timed body.
"""

from __future__ import annotations

import pytest

from bench.scenes import continent, with_players
from worlds import Simulation


def _warm(sim: Simulation, ticks: int = 5) -> Simulation:
    for _ in range(ticks):
        sim.step()
    return sim


def test_tick_continent(benchmark):
    sim = _warm(Simulation(continent()))
    benchmark.group = "tick"
    reports = []
    benchmark.pedantic(lambda: reports.append(sim.step()), rounds=20, iterations=1)
    assert all(r.applied > 0 for r in reports)
    benchmark.extra_info["tick_ms_median"] = sorted(r.tick_ms for r in reports)[len(reports) // 2]


def test_state_hash_continent(benchmark):
    sim = _warm(Simulation(continent(), hash_every=0))
    sim.world.state_hash()  # loads (or compiles) the kernels
    benchmark.group = "hash"
    hashes = []

    def tick() -> None:  # before each round, untimed: the hash is timed on the memory a tick leaves
        sim.step()

    benchmark.pedantic(lambda: hashes.append(sim.world.state_hash()), setup=tick, rounds=20, iterations=1)
    assert sim.world.entity_count >= 100_000 and len(hashes) >= 1 and all(0 <= h < 1 << 64 for h in hashes)


@pytest.mark.parametrize("players", [1000, 2500, 5000])
def test_tick_scaling(benchmark, players):
    sim = _warm(Simulation(with_players(players)))
    benchmark.group = "scaling"
    reports = []
    benchmark.pedantic(lambda: reports.append(sim.step()), rounds=10, iterations=1)
    assert sim.world.entity_count >= 21 * players
    benchmark.extra_info["tick_ms_median"] = sorted(r.tick_ms for r in reports)[len(reports) // 2]
