"""The event director: spawns, scales and retires world events by player density, relieves
crowds, keeps sparse places alive, within its budgets, deterministically.

Scenario tests run the world files in tests/worlds/events_*.toml and assert the figures the
file promises ([events] and [events.expect]) from the run's summary, and where they can, check
those figures against what the test itself sees of the world."""

import json
import math

import numpy as np
import pytest
from pydantic import ValidationError

from systems.components import Health, Npc, Player, Position
from systems.density import DensityCell, DensityGrid
from systems.orchestration import (
    ACTIVATE,
    AMBIENT,
    ANNOUNCED,
    C_COOLDOWN,
    C_CROWDED,
    C_CX,
    C_CY,
    C_EVENTS,
    C_FAST,
    C_PN,
    C_POPULATED,
    C_PX,
    C_PY,
    C_RESERVED,
    C_SERVED,
    C_SERVED_AT,
    C_WANTED,
    COMPLETED,
    CROWD,
    E_EMPTY_SINCE,
    EXPIRED,
    FAILED,
    K_AMBIENT,
    K_CELL_BUDGET,
    K_CELL_EVENTS,
    K_CELL_M,
    K_COMFORT,
    K_COOLDOWN,
    K_CROWD_MIN,
    K_EVERY,
    K_MAX_MOBS,
    K_NCOLS,
    K_NROWS,
    K_POPULATED,
    K_PULL_FILL,
    K_PULLS,
    K_RINGS,
    K_SERVE_M,
    K_SUSTAIN,
    K_TICK,
    K_WORLD_BUDGET,
    K_WORLD_RESERVED,
    K_X1,
    K_Y1,
    KEEP,
    P_CELL,
    P_ROLE,
    P_SOURCE,
    P_TYPE,
    PULL,
    ROLES,
    T_BASE,
    T_LEVEL_EXP,
    T_MAX_ACTIVE,
    T_MAX_DIFFICULTY,
    T_MIN_PLAYERS,
    T_MOBS,
    T_PER_PARTICIPANT,
    T_ROLES,
    T_WEIGHT,
    _NCELL,
    _NKNOB,
    _NPLAN,
    _NTYPE,
    Activity,
    EventMember,
    EventStats,
    WorldEvent,
    _bucket,
    _difficulties,
    _disc_points,
    _judge,
    _participants,
    _plan,
    _rescale_members,
    event_systems,
    events_summary,
)
from tests.conftest import WORLDS
from worlds import Simulation, WorldFileError, load_world, parse_world
from worlds.cli import main
from worlds.runtime import PLAYER_ARCHETYPE
from worlds.schema_events import Role, event_problems

SPIKE, SPARSE, MIGRATION = WORLDS / "events_spike.toml", WORLDS / "events_sparse.toml", WORLDS / "events_migration.toml"


def live_events(sim) -> dict[str, np.ndarray]:
    q = sim.world.query(WorldEvent)
    return {f: q.concat(WorldEvent, f) for f in ("type", "role", "phase", "cell", "x", "y", "participants",
                                                  "difficulty", "mobs")}


def cell_rect(grid: DensityGrid, c: int) -> tuple[float, float, float, float]:
    col, row = c % grid.n_cols, c // grid.n_cols
    x0, y0 = grid.bounds[0] + col * grid.cell_m, grid.bounds[1] + row * grid.cell_m
    return x0, y0, x0 + grid.cell_m, y0 + grid.cell_m


def ring(grid: DensityGrid, a: int, b: int) -> int:
    return max(abs(a % grid.n_cols - b % grid.n_cols), abs(a // grid.n_cols - b // grid.n_cols))


# --------------------------------------------------------------------------- scenarios


def test_spike_of_two_thousand_players_is_bounded_made_harder_and_relieved():
    sim = Simulation.from_file(SPIKE)
    cfg, expect = sim.defn.events, sim.defn.events.expect
    grid = sim.world.resources[DensityGrid]
    plaza = sim.defn.hotspots[0]
    pc = int(grid.cell_of([plaza.x], [plaza.y])[0])
    x0, y0, x1, y1 = cell_rect(grid, pc)
    mobs = sim.world.query(EventMember, Position, Health)
    most_inside = most_taking_part = 0
    for tick in range(200):
        sim.step()
        if tick % cfg.every_ticks == 0:
            # Event mobs standing inside the spike's cell, and who takes part in what is there.
            x, y = mobs.concat(Position, "x"), mobs.concat(Position, "y")
            inside = (x >= x0) & (x < x1) & (y >= y0) & (y < y1) & (mobs.concat(Health, "dead") == 0)
            most_inside = max(most_inside, int(inside.sum()))
            ev = live_events(sim)
            most_taking_part = max([most_taking_part, *ev["participants"][ev["cell"] == pc].tolist()])
    s = events_summary(sim.world)
    assert sim.player_ids.size == 2040
    # Budgets: per cell (planned or standing, and counted in place), per world.
    assert s["budget"]["max_cell_mobs"] <= s["budget"]["cell"] == cfg.cell_budget
    assert s["budget"]["max_world_mobs"] <= s["budget"]["world"] == cfg.world_budget
    assert 0 < most_inside <= cfg.cell_budget
    # The spike is recognised within a few ticks of the raw rise.
    assert pc in [c for _, c in s["spikes"]]
    assert s["spike_detect_ticks_max"] <= expect.spike_detect_ticks
    onset = min(t for t, c in s["spikes"] + s["crowds"] if c == pc)
    # From then on, nothing new is centred in it.
    assert [sp for sp in s["spawns"] if sp[3] == pc and sp[0] > onset + expect.stop_within_ticks] == []
    # What is there got harder as the crowd piled in; its size did not grow.
    there = [e for e in s["live"] if e["cell"] == pc]
    assert there and sum(e["mobs"] for e in there) <= cfg.cell_budget
    assert most_taking_part >= 1900  # nearly all of the 2,000 (those who stand idle long enough drop out)
    assert max(e["difficulty"] for e in there) >= expect.min_difficulty_in_spike
    assert s["rescaled"]["up"] > 0
    # Pull events opened beside the crowds, in under-filled cells within the allowed rings.
    crowds: dict[int, int] = {}
    for t, c in s["spikes"] + s["crowds"]:
        crowds[c] = min(t, crowds.get(c, t))
    pulls = [sp for sp in s["spawns"] if sp[2] == PULL]
    assert len(pulls) == s["by_role"]["pull"] >= expect.min_pull_events
    for tick, _, _, cell, _, _ in pulls:
        assert any(ring(grid, cell, c) <= cfg.pull_rings and t <= tick for c, t in crowds.items()), (tick, cell)
    assert s["by_type"]["bloom"]["spawned"] == len(pulls)
    # The summary's density percentiles see the spike in the region that holds the plaza.
    assert max(r["max"] for r in s["density"].values()) >= 2000
    assert sum(r["cells"] for r in s["density"].values()) == grid.count


def served_tracker(sim, ticks: int) -> tuple[float, dict[int, int]]:
    """Step ``sim`` and watch, at every director run, each populated cell: the longest it went
    without a live event within the serve radius of its centre (its clock starts when it
    becomes populated; crowded cells excepted). Returns (seconds, spawns per cell)."""
    cfg = sim.defn.events
    grid = sim.world.resources[DensityGrid]
    cx, cy = grid.centres()
    cells = sim.world.query(DensityCell)
    last: dict[int, int] = {}
    worst = 0
    for tick in range(ticks):
        sim.step()
        if tick % cfg.every_ticks:
            continue
        fast = np.zeros(grid.count)
        fast[cells.concat(DensityCell, "cell")] = cells.concat(DensityCell, "fast")
        ev = live_events(sim)
        served = np.zeros(grid.count, np.bool_)
        for x, y in zip(ev["x"], ev["y"]):
            served |= (cx - x) ** 2 + (cy - y) ** 2 <= cfg.serve_m**2
        for c in np.flatnonzero(fast >= cfg.populated_players).tolist():
            if c not in last or served[c]:
                last[c] = tick
            worst = max(worst, tick - last[c])
        for c in list(last):
            if fast[c] < cfg.populated_players:
                del last[c]
    per_cell: dict[int, int] = {}
    for _, _, _, c, _, _ in sim.world.resources[EventStats].spawn_log:
        per_cell[c] = per_cell.get(c, 0) + 1
    return worst * sim.clock.dt_s, per_cell


def test_almost_empty_world_gets_ambient_events_in_time_and_no_flood():
    sim = Simulation.from_file(SPARSE)
    cfg = sim.defn.events
    ticks = 400
    worst_s, per_cell = served_tracker(sim, ticks)
    s = events_summary(sim.world)
    assert s["max_unserved_s"] == pytest.approx(worst_s)  # the summary says what the test saw
    assert 0 < worst_s <= cfg.expect.max_unserved_s <= cfg.ambient_interval_s
    # Every populated cell got its events: the north and south groups' cells and the hermits'.
    grid = sim.world.resources[DensityGrid]
    q = sim.world.query(Player, Position)
    hermits = q.concat(Player, "population") == 2  # they never move
    hermit_cells = grid.cell_of(q.concat(Position, "x")[hermits], q.concat(Position, "y")[hermits])
    assert set(hermit_cells.tolist()) <= set(per_cell)
    # No flood: ambient only, at most cell_max_events at once, no more than the interval allows.
    assert s["by_role"] == {"crowd": 0, "pull": 0, "ambient": s["spawned"]}
    assert s["budget"]["max_cell_events"] <= cfg.cell_max_events
    run_s = ticks * sim.clock.dt_s
    assert max(per_cell.values()) <= math.floor(run_s / (cfg.ambient_interval_s - cfg.every_ticks * sim.clock.dt_s)) + 1
    assert s["budget"]["max_world_mobs"] <= 2 * len(per_cell)
    assert s["expired"] + s["active"] == s["spawned"]


def test_events_follow_a_migrating_crowd_with_bounded_lag():
    sim = Simulation.from_file(MIGRATION)
    cfg, dt = sim.defn.events, sim.clock.dt_s
    players = sim.world.query(Player, Position)
    reach = cfg.serve_m + cfg.cell_m * math.sqrt(0.5)  # a served cell's event, seen from inside the cell
    gap = longest = 0
    crowd_x = []
    for tick in range(300):
        sim.step()
        if tick % cfg.every_ticks:
            continue
        px, py = players.concat(Position, "x").mean(), players.concat(Position, "y").mean()
        crowd_x.append(px)
        ev = live_events(sim)
        near = ev["x"].size and np.hypot(ev["x"] - px, ev["y"] - py).min() <= reach
        gap = 0 if near else gap + cfg.every_ticks
        longest = max(longest, gap)
    s = events_summary(sim.world)
    assert crowd_x[-1] - crowd_x[0] > 350  # it did migrate
    assert s["max_follow_lag_s"] <= cfg.expect.max_follow_lag_s
    assert longest * dt <= cfg.expect.max_follow_lag_s + cfg.crowd_sustain_s  # and the test sees it too
    # Events went east with the crowd, one cell after the other...
    cells = [sp[3] for sp in s["spawns"]]
    cols = [c % sim.world.resources[DensityGrid].n_cols for c in cells]
    assert len(cells) >= 6 and cols == sorted(cols) and len(set(cols)) == len(cols)
    # ...and those left behind were retired, not left to pile up.
    assert s["failed"] >= s["spawned"] - 3 and s["active"] <= 3
    assert s["budget"]["max_world_mobs"] <= 3 * sim.defn.events.types[0].mobs


@pytest.mark.parametrize(("mode", "expected"), [("pve", 50), ("pvp", 30)])
def test_difficulty_scales_with_the_right_participants(mode, expected):
    sim = Simulation.from_file(WORLDS / f"events_{mode}.toml")
    cfg = sim.defn.events
    kind = cfg.types[0]
    seen = []
    for tick in range(60):
        sim.step()
        if tick % cfg.every_ticks == 0 and tick * sim.clock.dt_s >= cfg.idle_s + 0.5:
            ev = live_events(sim)
            assert ev["participants"].tolist() == [expected]
            seen.append(float(ev["difficulty"][0]))
    assert seen and all(d == pytest.approx(kind.difficulty * (1 + kind.per_participant * (expected - 1)))
                        for d in seen)
    s = events_summary(sim.world)
    assert s["mode"] == mode and s["spawned"] == 1
    assert s["live"][0]["participants"] == expected
    # Mobs carry the difficulty in their hp.
    hp = sim.world.query(EventMember, Health).concat(Health, "max_hp")
    assert hp.size == kind.mobs and np.allclose(hp, kind.mob_hp * seen[-1])


def test_same_file_and_seed_give_the_same_events_and_hash():
    def run(seed=None):
        sim = Simulation.from_file(WORLDS / "events_pvp.toml", seed=seed)
        hashes = [sim.step().state_hash for _ in range(40)]
        return hashes, events_summary(sim.world)["spawns"]

    (a, sa), (b, sb) = run(), run()
    assert a == b and sa == sb and sa
    c, _ = run(seed=99)
    assert c != a


# --------------------------------------------------------------------------- small worlds (kernels run here too)


def hunt_world(corpse_s: float = 1.0, **events) -> dict:
    cfg = {"every_ticks": 4, "cell_m": 50.0, "cooldown_s": 0.5, "idle_s": 5.0, "cell_budget": 6, "world_budget": 12,
           "ambient_interval_s": 60.0,
           "types": [{"name": "rats", "roles": ["crowd"], "mobs": 3, "mob_hp": 5.0, "mob_speed_mps": 0.0,
                      "radius_m": 12.0, "announce_s": 0.0, "min_players": 3.0}]}
    cfg.update(events)
    return {
        "world": {"name": "hunt", "bounds": [0, 0, 100, 100], "cell_m": 5, "seed": 8, "mode": "pve"},
        "rules": {"corpse_s": corpse_s, "respawn_s": 1.0},
        "populations": [
            {"kind": "players", "name": "hunters", "count": 6, "behaviour": "fight", "actions_per_s": 8.0,
             "spawn": {"shape": "disc", "x": 25, "y": 25, "radius_m": 3}},
            {"kind": "npcs", "name": "deer", "count": 2, "respawn": True, "hp": 1000.0,
             "spawn": {"shape": "disc", "x": 90, "y": 90, "radius_m": 3}},
        ],
        "events": cfg,
    }


@pytest.mark.kernel
@pytest.mark.parametrize("corpse_s", [0.0, 1.0])
def test_hunters_complete_events_and_dead_mobs_are_buried_before_the_lifecycle(corpse_s):
    sim = Simulation(parse_world(hunt_world(corpse_s)))
    director = next(s for s in sim.schedule.systems if s.name == "EventDirector")
    assert director.bury_every == (1 if corpse_s == 0.0 else 4)
    corpse_ticks = round(corpse_s / sim.clock.dt_s)
    members = sim.world.query(EventMember, Health)
    for _ in range(80):
        sim.step()  # the lifecycle would fail on a mob's kind if it ever saw one of their corpses
        h = members.concat(Health, "dead"), members.concat(Health, "died_tick")
        assert not ((h[0] != 0) & (h[1] + corpse_ticks <= sim.tick)).any()
    s = events_summary(sim.world)
    assert s["completed"] >= 2 and s["by_type"]["rats"]["completed"] == s["completed"]
    assert s["spawned"] == s["completed"] + s["failed"] + s["expired"] + s["active"]
    assert sim.world.query(Npc).count() >= 2  # the deer were never taken for event mobs


@pytest.mark.kernel
def test_a_deliberate_action_makes_an_idle_player_take_part_and_records_follow_players():
    d = parse_world({
        "world": {"name": "afk", "bounds": [0, 0, 60, 60], "cell_m": 5, "seed": 2, "mode": "pve"},
        "populations": [{"kind": "players", "name": "p", "count": 4, "behaviour": "idle",
                         "network": {"clock_offset_ms": 0.0},
                         "spawn": {"shape": "disc", "x": 20, "y": 20, "radius_m": 2}}],
        "events": {"every_ticks": 2, "cell_m": 30.0, "idle_s": 0.5, "ambient_interval_s": 60.0,
                   "types": [{"name": "e", "roles": ["crowd"], "mobs": 1, "min_players": 2.0, "radius_m": 10.0,
                              "announce_s": 0.0, "abandon_s": 60.0}]},
    })
    sim = Simulation(d, generate=False)
    for _ in range(16):
        sim.step()
    assert live_events(sim)["participants"].tolist() == [0]  # idle past idle_s
    who = int(sim.player_ids[1])
    p = sim.world.get(who, Player)
    sim.submit([{"player": who, "seq": 1, "kind": "use", "client_time_ms": sim.tick * 50.0,
                 "x": p["last_x"], "y": p["last_y"]}])
    assert sim.step().applied == 1
    sim.step()
    assert live_events(sim)["participants"].tolist() == [1]
    # A player that joins gets an activity record; one that leaves loses it.
    acts = sim.world.query(Activity)
    assert acts.count() == 4
    hp = d.rules.player_hp
    newcomer = sim.world.spawn_batch(PLAYER_ARCHETYPE, 1, {Position: {"x": 21.0, "y": 20.0},
                                                           Player: {"last_x": 21.0, "last_y": 20.0},
                                                           Health: {"hp": hp, "max_hp": hp}})
    sim.world.despawn(int(sim.player_ids[0]))
    for _ in range(4):
        sim.step()
    players = set(acts.concat(Activity, "player").tolist())
    assert acts.count() == 4 and int(newcomer[0]) in players and int(sim.player_ids[0]) not in players
    assert live_events(sim)["participants"].tolist() == [2]  # the newcomer is new, hence active


@pytest.mark.kernel
def test_without_an_events_section_there_is_no_director():
    sim = Simulation.from_file(WORLDS / "duel.toml", generate=False)
    assert event_systems(sim.world, sim.defn, ()) == []
    assert events_summary(sim.world) is None
    assert not any(s.name in ("DensityField", "EventDirector") for s in sim.schedule.systems)


# --------------------------------------------------------------------------- kernels against references


def naive_participants(ex, ey, er, players, pvp):
    out = []
    for x, y, r in zip(ex, ey, er):
        d2 = (players[0] - x) ** 2 + (players[1] - y) ** 2
        near = (d2 <= r * r) & (players[3] >= 0)
        teams = players[2][near].astype(int)
        if not near.any():
            out.append((0, 0.0))
        elif not pvp:
            out.append((int(near.sum()), float(players[3][near].mean())))
        else:
            best = max(set(teams.tolist()), key=lambda t: (np.sum(teams == t), players[3][near][teams == t].sum(), -t))
            sel = near.copy()
            sel[near] = teams == best
            out.append((int(sel.sum()), float(players[3][sel].mean())))
    return out


@pytest.mark.kernel
@pytest.mark.parametrize("pvp", [False, True])
def test_participants_match_a_naive_count(pvp):
    rng = np.random.default_rng(11 + pvp)
    grid = DensityGrid((0.0, 0.0, 100.0, 80.0), 15.0)
    n = 300
    players = np.zeros((4, n))
    players[0], players[1] = rng.uniform(-5, 105, n), rng.uniform(-5, 85, n)
    players[2] = rng.integers(0, 4, n)
    players[3] = np.where(rng.uniform(size=n) < 0.8, rng.choice([1.0, 1.5, 2.0], n), -1.0)
    start, order, sums = np.zeros(grid.count + 1, np.int64), np.empty(n, np.int64), np.zeros((3, grid.count))
    _bucket(players[0], players[1], grid.geom, start, order, sums)
    cell = grid.cell_of(players[0], players[1])
    assert np.array_equal(np.diff(start), np.bincount(cell, minlength=grid.count))
    assert np.array_equal(order, np.argsort(cell, kind="stable"))  # stable: by cell, then index
    assert np.allclose(sums[0], np.bincount(cell, players[0], grid.count))
    ex, ey, er = rng.uniform(0, 100, 25), rng.uniform(0, 80, 25), rng.uniform(1, 40, 25)
    out = np.zeros((25, 2))
    _participants(ex, ey, er, players, start, order, grid.geom, pvp, out)
    want = naive_participants(ex, ey, er, players, pvp)
    assert out[:, 0].tolist() == [w[0] for w in want]
    assert np.allclose(out[:, 1], [w[1] for w in want])


@pytest.mark.kernel
def test_difficulty_formula_cap_and_hysteresis():
    types = np.zeros((2, _NTYPE))
    types[:, T_BASE], types[:, T_PER_PARTICIPANT], types[:, T_LEVEL_EXP], types[:, T_MAX_DIFFICULTY] = \
        [2.0, 1.0], [0.1, 0.5], [1.0, 2.0], [10.0, 3.0]
    ev_type = np.array([0, 0, 0, 1, 1], np.int32)
    part = np.array([[0, 0.0], [11, 1.0], [11, 2.0], [3, 1.0], [2, 0.5]])
    out = np.empty(5)
    _difficulties(ev_type, part, types, np.zeros(5), 0.0, out)
    assert out.tolist() == pytest.approx([2.0, 4.0, 8.0, 2.0, 0.375])
    old = np.array([2.0, 3.8, 10.0, 2.0, 0.5])
    _difficulties(ev_type, part, types, old, 0.1, out)
    assert out.tolist() == pytest.approx([2.0, 3.8, 8.0, 2.0, 0.375])  # 4.0 is within 10 % of 3.8
    _difficulties(np.array([0], np.int32), np.array([[1000, 3.0]]), types, np.zeros(1), 0.0, out[:1])
    assert out[0] == 10.0  # capped


@pytest.mark.kernel
def test_judge_decides_each_outcome():
    #                 phase      active deadline alive part empty
    ev = np.array([[ANNOUNCED, 11, 100, 0, 0, -1],   # announced, not yet
                   [ANNOUNCED, 5, 100, 0, 0, -1],    # its time has come
                   [1, 0, 100, 0, 4, -1],            # all mobs dead
                   [1, 0, 8, 3, 4, -1],              # past its deadline
                   [1, 0, 100, 3, 0, 2],             # nobody for 8 ticks (abandon 5)
                   [1, 0, 100, 3, 0, 6],             # nobody for 4 ticks: not yet
                   [1, 0, 100, 3, 0, -1],            # nobody since now
                   [1, 0, 100, 3, 2, 5]], np.float64)  # somebody came back
    out = np.zeros(8, np.int64)
    _judge(ev, 10, np.full(8, 5, np.int64), out)
    assert out.tolist() == [KEEP, ACTIVATE, COMPLETED, EXPIRED, FAILED, KEEP, KEEP, KEEP]
    assert ev[:, E_EMPTY_SINCE].tolist() == [10, 10, -1, -1, 2, 6, 10, -1]


def plan_inputs(n_cols=5, n_rows=5, cell_m=10.0, **over):
    """A small grid and two types (crowd 4 mobs from 3 players, pull/ambient 2 mobs) for ``_plan``."""
    c = n_cols * n_rows
    cells = np.zeros((_NCELL, c))
    idx = np.arange(c)
    cells[C_CX], cells[C_CY] = (idx % n_cols + 0.5) * cell_m, (idx // n_cols + 0.5) * cell_m
    cells[C_WANTED] = -1
    types = np.zeros((2, _NTYPE))
    types[0, [T_ROLES, T_WEIGHT, T_MOBS, T_MIN_PLAYERS, T_MAX_ACTIVE]] = [1 << CROWD, 1.0, 4, 3, 100]
    types[1, [T_ROLES, T_WEIGHT, T_MOBS, T_MIN_PLAYERS, T_MAX_ACTIVE]] = [(1 << PULL) | (1 << AMBIENT), 1.0, 2, 0, 100]
    kn = np.zeros(_NKNOB)
    kn[[K_TICK, K_EVERY, K_AMBIENT, K_COOLDOWN, K_COMFORT, K_PULL_FILL, K_RINGS, K_PULLS, K_CELL_BUDGET,
        K_WORLD_BUDGET, K_WORLD_RESERVED, K_MAX_MOBS, K_CELL_EVENTS, K_POPULATED, K_SERVE_M, K_CROWD_MIN, K_NCOLS,
        K_NROWS, K_CELL_M, K_X1, K_Y1, K_SUSTAIN]] = [100, 5, 50, 20, 10, 0.5, 1, 2, 8, 100, 0, 100, 1, 0.5, 1.0, 3,
                                                      n_cols, n_rows, cell_m, n_cols * cell_m, n_rows * cell_m, 0]
    for key, value in over.items():
        kn[globals()[key]] = value
    return cells, types, kn


def run_plan(cells, types, kn, slots=8, seed=1):
    out = np.zeros((slots, _NPLAN))
    figures = np.zeros(4)
    k = _plan(cells, types, kn, np.uint64(seed), out, figures)
    return out[:k], figures


@pytest.mark.kernel
def test_plan_keeps_out_of_crowds_pulls_beside_them_and_respects_every_budget():
    cells, types, kn = plan_inputs()
    crowd = 12  # the centre cell: crowded
    cells[C_FAST, crowd], cells[C_CROWDED, crowd] = 30.0, 1
    cells[C_FAST, 13] = 7.0  # a neighbour too full to pull to (>= comfort * pull_fill)
    cells[C_FAST, [3, 21]] = 5.0  # two cells with enough players for a crowd event
    cells[C_PX, 3], cells[C_PY, 3], cells[C_PN, 3] = 5 * 36.0, 5 * 4.0, 5
    plan, fig = run_plan(cells.copy(), types.copy(), kn.copy())
    roles = plan[:, P_ROLE].astype(int).tolist()
    assert crowd not in plan[:, P_CELL].astype(int).tolist()
    pulls = plan[plan[:, P_ROLE] == PULL]
    assert len(pulls) == 2 and (pulls[:, P_SOURCE] == crowd).all()
    assert all(max(abs(c % 5 - 2), abs(c // 5 - 2)) == 1 and c != 13 for c in pulls[:, P_CELL].astype(int))
    # Crowd events where enough players are, beside the crowd too (13), never in it.
    assert roles.count(CROWD) == 3 and sorted(plan[plan[:, P_ROLE] == CROWD, P_CELL].astype(int)) == [3, 13, 21]
    assert plan[roles.index(CROWD), P_CELL] == 13  # densest first
    at3 = plan[plan[:, P_CELL] == 3][0]
    assert (at3[4], at3[5]) == (36.0, 4.0)  # a crowd event goes where the players are
    assert fig[2] <= kn[K_CELL_BUDGET]
    # Budgets: a world, then a run, with room for one crowd event only.
    for key, value, want in (("K_WORLD_BUDGET", 4, 1), ("K_MAX_MOBS", 5, 1), ("K_MAX_MOBS", 3, 0)):
        c2, t2, k2 = plan_inputs(**{key: value})
        c2[C_FAST, [3, 21]] = 5.0
        plan2, _ = run_plan(c2, t2, k2)
        assert len(plan2) == want and types[plan2[:, P_TYPE].astype(int), T_MOBS].sum() <= value
    # A cell on cooldown, at its event cap, or without budget left gets nothing.
    c3, t3, k3 = plan_inputs()
    c3[C_FAST, [3, 8, 21]] = 5.0
    c3[C_COOLDOWN, 3] = 101
    c3[C_EVENTS, 8], c3[C_SERVED, 8] = 1, 0
    c3[C_RESERVED, 21] = 6
    plan3, _ = run_plan(c3, t3, k3)
    assert len(plan3) == 0
    # Passers-by: a cell must have wanted its event for crowd_sustain ticks.
    c4, t4, k4 = plan_inputs(K_SUSTAIN=10)
    c4[C_FAST, 3] = 5.0
    assert len(run_plan(c4, t4, k4)[0]) == 0 and c4[C_WANTED, 3] == 100
    k4[K_TICK] = 110
    assert run_plan(c4, t4, k4)[0][:, P_CELL].tolist() == [3]


@pytest.mark.kernel
def test_plan_seeds_waiting_cells_with_ambient_events_and_reports_waits():
    cells, types, kn = plan_inputs(K_CROWD_MIN=np.inf)
    cells[C_FAST, [0, 4, 24]] = 1.0
    cells[C_POPULATED, [0, 4, 24]] = 1
    cells[C_SERVED_AT, [0, 4, 24]] = [40, 55, 60]  # waited 60, 45, 40 ticks of 50 allowed
    plan, fig = run_plan(cells, types, kn, slots=1)
    assert plan[:, P_CELL].tolist() == [0] and plan[0, P_ROLE] == AMBIENT  # the longest wait first
    assert fig[0] == 45  # cell 0 is served now; cell 4 has waited 45 ticks
    plan, _ = run_plan(cells, types, kn, slots=4)
    assert plan[:, P_CELL].tolist() == [4]  # due: 45 + the 5 ticks to the next run >= 50; cell 24 is not
    again = plan_inputs(K_CROWD_MIN=np.inf)
    again[0][C_FAST, 7] = 1.0  # just populated: its clock starts now
    assert len(run_plan(*again)[0]) == 0 and again[0][C_SERVED_AT, 7] == 100


@pytest.mark.kernel
def test_plan_is_deterministic_and_ties_do_not_favour_low_cells():
    firsts = set()
    for seed in range(12):
        cells, types, kn = plan_inputs()
        cells[C_FAST, [2, 10, 14, 22]] = 5.0
        plan, _ = run_plan(cells, types, kn, slots=1, seed=seed)
        again = run_plan(*plan_inputs(), slots=1, seed=seed)
        firsts.add(int(plan[0, P_CELL]))
        c2, t2, k2 = plan_inputs()
        c2[C_FAST, [2, 10, 14, 22]] = 5.0
        assert np.array_equal(run_plan(c2, t2, k2, slots=1, seed=seed)[0], plan)
        assert len(again[0]) == 0
    assert len(firsts) >= 2


@pytest.mark.kernel
def test_mob_points_and_rescaling():
    x, y = np.empty(50), np.empty(50)
    bounds = np.array([0.0, 0.0, 100.0, 100.0])
    _disc_points(np.uint64(3), 7, 12345, 50, 98.0, 50.0, 10.0, bounds, x, y)
    assert (x <= 100.0).all() and (np.hypot(x - 98.0, y - 50.0) <= 10.0 + 1e-9).all() and (x == 100.0).any()
    x2, y2 = np.empty(50), np.empty(50)
    _disc_points(np.uint64(3), 7, 12345, 50, 98.0, 50.0, 10.0, bounds, x2, y2)
    assert np.array_equal(x, x2) and np.array_equal(y, y2)
    member = np.array([5, 9, 5, 7], np.int64)
    hp, max_hp = np.array([50.0, 10.0, 100.0, 30.0]), np.array([100.0, 10.0, 100.0, 30.0])
    dead = np.array([0, 0, 0, 1], np.uint8)
    _rescale_members(member, hp, max_hp, np.full(4, 50.0), dead, np.array([5, 7, 9], np.int64),
                     np.array([1.5, 2.0, 1.0]), np.array([3.0, 1.2, 0.2]))
    assert hp.tolist() == [75.0, 10.0, 150.0, 30.0] and max_hp.tolist() == [150.0, 10.0, 150.0, 30.0]


# --------------------------------------------------------------------------- schema and command


def test_schema_checks_the_events_section():
    base = {"world": {"name": "w", "bounds": [0, 0, 100, 100]}}
    good = parse_world({**base, "events": {"types": [{"name": "a", "roles": ["crowd", "pull"]}]}})
    assert good.events.serve_m == good.events.cell_m and event_problems(good) == []
    assert set(Role.__args__) == set(ROLES)
    with pytest.raises(Exception) as e:
        parse_world({**base, "events": {"types": [{"name": "a", "roles": ["boss"], "colour": 1}]}}, "x.toml")
    text = str(e.value)
    assert "events.types[0].roles[0]" in text and "events.types[0].colour" in text
    with pytest.raises(ValidationError):
        load_world(SPARSE).events.model_validate({"types": []})
    with pytest.raises(WorldFileError) as e:  # the loader reports every cross-field problem, with its path
        parse_world({**base, "world": {**base["world"], "bounds": [0, 0, 1e6, 1e6], "cell_m": 1000.0}, "events": {
            "cell_m": 10.0, "cell_budget": 10, "world_budget": 5, "fast_half_life_s": 5.0, "slow_half_life_s": 5.0,
            "types": [{"name": "a", "roles": ["crowd"], "mobs": 11}, {"name": "a", "roles": ["pull", "pull"],
                                                                      "difficulty": 3.0, "max_difficulty": 2.0}]}}, "x.toml")
    paths = [line.split(": ")[1] for line in e.value.problems]
    assert paths == ["events.cell_m", "events.slow_half_life_s", "events.world_budget", "events.types[0].mobs",
                     "events.types[1].name", "events.types[1].roles", "events.types[1].max_difficulty"]
    assert event_problems(load_world(WORLDS / "village.toml")) == []
    for f in WORLDS.glob("events_*.toml"):
        assert event_problems(load_world(f)) == [], f


def test_worlds_command_summary_has_an_events_section(capsys):
    assert main(["run", str(WORLDS / "events_pvp.toml"), "--ticks", "30", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    ev = out["events"]
    for key in ("spawned", "active", "completed", "failed", "expired", "by_type", "density", "budget"):
        assert key in ev
    assert set(ev["by_type"]["champion"]) >= {"spawned", "active", "completed", "failed", "expired"}
    assert ev["spawned"] == 1 and ev["active"] == 1
    assert set(ev["density"]["0"]) >= {"p50", "p90", "p99", "max"}
    assert main(["run", str(WORLDS / "duel.toml"), "--ticks", "2", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["events"] is None
