"""The per-tick spatial index other systems query: every positioned entity, exact answers."""

import numpy as np
import pytest

from systems.spatial_index import SpatialIndex
from tests.conftest import WORLDS
from worlds import Simulation


@pytest.mark.kernel
def test_index_holds_every_entity_and_answers_radius_queries_exactly():
    sim = Simulation.from_file(WORLDS / "village.toml")
    sim.step()
    index = sim.world.resources[SpatialIndex]
    assert index.ids.shape[0] == sim.world.entity_count
    assert np.array_equal(np.sort(index.ids), np.sort(np.concatenate([t.ids for t in sim.world.tables])))
    px, py, r = 3.0, -4.0, 12.0
    got = index.query_point(px, py, r)
    want = np.flatnonzero((index.x - px) ** 2 + (index.y - py) ** 2 <= r * r)
    assert np.array_equal(np.sort(got), want)
    some = index.ids[[0, 5, 17]]
    assert np.array_equal(index.index_of(some), [0, 5, 17])
    assert index.index_of(np.array([12345]))[0] == -1
    assert index.position_of(int(index.ids[5])) == (index.x[5], index.y[5])
    assert np.isnan(index.position_of(12345)[0])


def test_index_of_survives_rows_moving_after_the_rebuild():
    sim = Simulation.from_file(WORLDS / "village.toml")
    sim.step()
    index = sim.world.resources[SpatialIndex]
    ids = index.ids.copy()
    victim = int(ids[3])
    sim.world.despawn(victim)  # swap-removes: the last row of its table moves into its place
    found = index.index_of(ids)
    assert found[3] == -1
    keep = np.arange(ids.size) != 3
    assert np.array_equal(found[keep], np.flatnonzero(keep))
