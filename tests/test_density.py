"""The density field: counts per coarse cell, short and long averages, trend, and flags that
rise within a few ticks of a spike and do not flap when the density hovers at a threshold."""

import numpy as np
import pytest

from systems.components import Player
from systems.density import DensityCell, DensityField, DensityGrid, _count_alive, _count_players, _smooth
from tests.conftest import WORLDS
from worlds import Simulation, load_world, parse_world
from worlds.schema_events import grid_shape

def knob_vector(alpha_fast=0.5, alpha_slow=0.05, comfort=10.0, spike=6.0, hysteresis=0.2, alpha_npcs=0.1, tick=0,
                with_npcs=True):
    return np.array([alpha_fast, alpha_slow, comfort, comfort * (1 - hysteresis), spike, spike * (1 - hysteresis),
                     alpha_npcs, tick, float(with_npcs)], np.float64)


def naive_field(counts, alpha_fast=0.5, alpha_slow=0.05, comfort=10.0, spike=6.0, hysteresis=0.2):
    """The rules of ``_smooth`` for one cell over a sequence of counts, one update per count:
    (fast, slow, crowded, spiking, onsets of spiking) after each update."""
    out, fast, slow, crowded, spiking = [], None, None, False, False
    for p in counts:
        if fast is None:
            fast = slow = float(p)
        else:
            fast += alpha_fast * (p - fast)
            slow += alpha_slow * (p - slow)
        rose = False
        if not crowded and fast >= comfort:
            crowded = True
        elif crowded and fast < comfort * (1 - hysteresis):
            crowded = False
        if not spiking and fast - slow >= spike:
            spiking = rose = True
        elif spiking and fast - slow < spike * (1 - hysteresis):
            spiking = False
        out.append((fast, slow, crowded, spiking, rose))
    return out


def one_cell_run(counts, **knobs):
    """Run ``_smooth`` over one cell of a 1-cell grid; the same tuples as ``naive_field``, plus
    the rise ticks noted at each onset."""
    state = tuple(np.zeros(1) for _ in range(6))
    flags = tuple(np.zeros(1, np.uint8) for _ in range(3))
    rise = np.full(1, -1, np.int64)
    onsets = np.zeros((1, 2), np.uint8)
    raw = np.zeros((2, 1))
    out, rises = [], []
    for tick, p in enumerate(counts):
        raw[0, 0] = p
        found = _smooth(np.zeros(1, np.int32), raw, state, flags, rise, knob_vector(tick=tick, **knobs), onsets)
        assert found == int(onsets.sum())
        out.append((state[2][0], state[3][0], bool(flags[0][0]), bool(flags[1][0]), bool(onsets[0, 0])))
        if onsets[0, 0]:
            rises.append((tick, int(rise[0])))
            rise[0] = -1
        onsets[:] = 0
    return out, rises


@pytest.mark.kernel
def test_counts_per_cell_match_a_histogram():
    rng = np.random.default_rng(3)
    g = DensityGrid((-50.0, 0.0, 150.0, 95.0), 20.0)
    assert (g.n_cols, g.n_rows) == (10, 5) == grid_shape(g.bounds, g.cell_m)
    x = rng.uniform(-80, 180, 400)  # some outside: clamped into the edge cells
    y = rng.uniform(-20, 120, 400)
    x[:3] = [np.nan, 150.0, -50.0]
    dead = (rng.uniform(size=400) < 0.2).astype(np.uint8)
    connected = (rng.uniform(size=400) < 0.9).astype(np.uint8)
    cell = g.cell_of(np.nan_to_num(x, nan=-1e9), y)
    counts = np.zeros(g.count)
    _count_alive(x, y, dead, g.geom, counts)
    assert np.array_equal(counts, np.bincount(cell[dead == 0], minlength=g.count))
    counts[:] = 0
    _count_players(x, y, dead, connected, g.geom, counts)
    assert np.array_equal(counts, np.bincount(cell[(dead == 0) & (connected == 1)], minlength=g.count))
    cx, cy = g.centres()
    assert np.array_equal(g.cell_of(cx, cy), np.arange(g.count))
    assert cx.max() <= 150.0 and cy.max() <= 95.0  # the last row is cut by the world's edge


@pytest.mark.kernel
def test_averages_and_flags_follow_the_rules_without_false_spikes():
    rng = np.random.default_rng(5)
    counts = np.concatenate([np.full(5, 20.0), rng.integers(0, 25, 60).astype(float)])
    got, _ = one_cell_run(counts)
    want = naive_field(counts)
    for g, w in zip(got, want):
        assert g[0] == pytest.approx(w[0]) and g[1] == pytest.approx(w[1])
        assert g[2:] == w[2:]
    assert not got[0][3]  # a cell that starts full is primed there: no spike at the first count


@pytest.mark.kernel
def test_a_spike_is_flagged_within_a_few_ticks_and_its_latency_is_measured():
    counts = [2.0] * 10 + [40.0] * 10
    got, rises = one_cell_run(counts)
    onset = next(t for t, row in enumerate(got) if row[4])
    assert onset - 10 <= 2  # fast half-life of one tick: flagged within two
    assert rises == [(onset, 10)]  # the raw count stood a spike above the baseline at tick 10


@pytest.mark.kernel
def test_density_hovering_at_comfort_does_not_flap():
    # Around the comfort of 10 by +-1: the crowded flag rises once and stays (exit is at 8).
    counts = [12.0] * 3 + [9.0, 11.0] * 20
    got, _ = one_cell_run(counts, alpha_fast=0.9)
    flags = [row[2] for row in got]
    assert flags[0] and all(flags)
    # Without hysteresis the same counts flip it again and again.
    flips = np.count_nonzero(np.diff([row[2] for row in one_cell_run(counts, alpha_fast=0.9, hysteresis=0.0)[0]]))
    assert flips >= 20


def events_world(**events) -> dict:
    cfg = {"every_ticks": 4, "cell_m": 25.0, "comfort_players": 8.0, "types": [{"name": "boss", "roles": ["crowd"]}]}
    cfg.update(events)
    return {
        "world": {"name": "d", "bounds": [0, 0, 100, 100], "cell_m": 5, "seed": 4},
        "populations": [
            {"kind": "players", "name": "p", "count": 12, "behaviour": "idle", "actions_per_s": 0,
             "spawn": {"shape": "disc", "x": 30, "y": 30, "radius_m": 4}},
            {"kind": "npcs", "name": "n", "count": 30, "speed_mps": 0.5,
             "spawn": {"shape": "disc", "x": 80, "y": 80, "radius_m": 5}},
        ],
        "events": cfg,
    }


@pytest.mark.kernel
def test_field_counts_the_world_and_is_logical_state():
    sim = Simulation(parse_world(events_world()), generate=False)
    grid = sim.world.resources[DensityGrid]
    cells = sim.world.query(DensityCell)
    assert cells.count() == grid.count == 16
    sim.step()
    players = cells.concat(DensityCell, "players")
    npcs = cells.concat(DensityCell, "npcs")
    cell = cells.concat(DensityCell, "cell")
    assert players.sum() == 12 and players[cell == grid.cell_of([30.0], [30.0])[0]].sum() == 12
    assert npcs.sum() == 30 and npcs[cell == grid.cell_of([80.0], [80.0])[0]].sum() == 30
    fast = cells.concat(DensityCell, "fast")
    assert np.array_equal(fast, players)  # primed at the first count
    assert cells.concat(DensityCell, "crowded").sum() == 1
    # A disconnected player leaves the count; NPCs are counted every npc_every_ticks only.
    sim.disconnect(int(sim.player_ids[0]))
    sim.step()
    assert cells.concat(DensityCell, "players").sum() == 11
    # The field is in the state hash: change it and the hash changes.
    before = sim.world.state_hash()
    row = int(np.flatnonzero(cells.concat(DensityCell, "players"))[0])
    cells.tables()[0].column(DensityCell, "slow")[row] += 1.0
    assert sim.world.state_hash() != before


@pytest.mark.kernel
def test_field_cadence_and_onsets_are_reported():
    d = parse_world(events_world(density_every_ticks=2, every_ticks=4, comfort_players=5.0, spike_players=3.0,
                                 fast_half_life_s=0.05))
    sim = Simulation(d, generate=False)
    grid = sim.world.resources[DensityGrid]
    for _ in range(5):
        sim.step()
    assert grid.updated_tick == 4  # ticks 0, 2, 4
    assert grid.crowd_onsets == [(0, int(grid.cell_of([30.0], [30.0])[0]))]
    # Twelve more players appear in an empty cell: a spike there, flagged with its latency.
    far = sim.player_ids[:12]
    for e in far.tolist():
        sim.world.set(e, Player, last_x=70.0, last_y=20.0)
    for _ in range(6):
        sim.step()
    spike_cell = int(grid.cell_of([70.0], [20.0])[0])
    assert [c for _, c in grid.spike_onsets] == [spike_cell]
    assert grid.spike_detect_ticks and max(grid.spike_detect_ticks) <= 2


def test_density_field_alone_builds_its_own_cells():
    d = load_world(WORLDS / "events_pve.toml")
    sim = Simulation(parse_world({k: v for k, v in d.model_dump().items() if k != "events"}), generate=False)
    field = DensityField(sim.world, d)
    assert sim.world.query(DensityCell).count() == field.grid.count == 36
