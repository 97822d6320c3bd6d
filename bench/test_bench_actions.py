"""Actions validated to applied: crafted valid loads on the continent, its per-client rate caps
lifted (``bench.scenes.LOAD_RULES``) (group ``actions``).

Each round submits one tick's load (crafted and the health restored before, untimed) and
steps the simulation. The load must be valid, or the benchmark would time refusals: the test
asserts nearly all of it is applied.
"""

from __future__ import annotations

import pytest

from bench.action_load import ActionLoad
from bench.scenes import unthrottled
from worlds import Simulation


@pytest.fixture(scope="module")
def sim_and_load():
    sim = Simulation(unthrottled(), generate=False)
    for _ in range(5):  # game time passes the longest round trip before the first crafted action
        sim.step()
    return sim, ActionLoad(sim)


@pytest.mark.parametrize("per_tick", [2_500, 25_000, 250_000])
def test_actions(benchmark, sim_and_load, per_tick):
    sim, load = sim_and_load

    def submit():
        load.restore_health()
        sim.submit(load.batch(per_tick))

    reports = []
    benchmark.group = "actions"
    benchmark.extra_info["actions_per_tick"] = per_tick
    benchmark.pedantic(lambda: reports.append(sim.step()), setup=submit, rounds=3 if per_tick > 25_000 else 8,
                       iterations=1)
    applied = sum(r.applied for r in reports)
    submitted = sum(r.submitted for r in reports)
    assert submitted == per_tick * len(reports)
    assert applied >= 0.95 * submitted, reports[-1].refused
