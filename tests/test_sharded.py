"""A world on N shards evolves exactly as on one: hashes, owners, hand-offs, routing, desyncs.

Every scenario runs the built-in client simulation on one shard and on several, and compares
the state hash after every tick; the sharded scenarios (``tests/worlds/shard_*.toml``) put
the action on borders and corners. The one-shard world is ``Simulation`` itself.
"""

import json
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from systems.components import Borrowed, Health, Inventory, Loot, Player, Position
from systems.npc_combat import NpcHits
from systems.orchestration import events_summary
from tests.conftest import ROOT, WORLDS
from worlds import Simulation
from worlds.cluster import open_world
from worlds.cluster.sharded import ShardedSimulation
from worlds.cluster.verify import Verifier
from worlds.loader import load_world, parse_world

EVENT_WORLDS = sorted(p.name for p in WORLDS.glob("events_*.toml"))
SCENARIOS = sorted(p.name for p in WORLDS.glob("*.toml") if p.name not in EVENT_WORLDS)


def hashes(sim, ticks: int) -> list[str]:
    return [sim.step().state_hash for _ in range(ticks)]


def totals(world) -> tuple[int, int]:
    inv, loot = world.query(Inventory), world.query(Loot)
    return (int(inv.concat(Inventory, "gold").sum()) + int(loot.concat(Loot, "gold").sum()),
            int(inv.concat(Inventory, "potions").sum()))


@pytest.mark.slow
@pytest.mark.parametrize("name", [*SCENARIOS, "arena.toml"])
def test_every_scenario_hashes_the_same_after_every_tick_on_1_2_4_8_shards(name):
    path = WORLDS / name if name != "arena.toml" else ROOT / "worlds" / "defs" / name
    defn = load_world(path)
    ticks = 24
    one = hashes(Simulation(defn, seed=9), ticks)
    for n in (2, 4, 8):
        assert hashes(ShardedSimulation(defn, n, seed=9), ticks) == one, f"{name} on {n} shards"


# Ticks each world of events needs to spawn, rescale, end and bury what the test is about.
EVENT_TICKS = {"events_spike.toml": 70, "events_migration.toml": 100, "events_sparse.toml": 90,
               "events_shard_hunt.toml": 100}


@pytest.mark.slow
@pytest.mark.parametrize("name", EVENT_WORLDS)
def test_world_events_are_directed_on_shards_as_on_one(name):
    defn = load_world(WORLDS / name)
    ticks = EVENT_TICKS.get(name, 30)
    one = Simulation(defn, seed=9)
    expected = hashes(one, ticks)
    summary = events_summary(one.world)
    assert summary["spawned"] > 0
    for n in (2, 4, 8):
        sim = ShardedSimulation(defn, n, seed=9)
        assert hashes(sim, ticks) == expected, f"{name} on {n} shards"
        assert events_summary(sim.world) == summary, f"{name} on {n} shards"
    if name == "events_shard_hunt.toml":  # mobs spawned by one shard, killed and buried on others
        assert summary["completed"] >= 3 and sim.stats.handoffs > 0


def test_every_entity_is_owned_by_exactly_one_shard_at_every_tick():
    defn = load_world(WORLDS / "shard_crowd.toml")
    one = Simulation(defn, seed=3)
    sim = ShardedSimulation(defn, 4, seed=3)
    for _ in range(40):
        one.step()
        sim.step()
        owned = sim.owned_by()
        every = np.concatenate(owned)
        assert np.unique(every).size == every.size  # nobody owned twice
        assert set(every.tolist()) == {int(e) for t in one.world.tables for e in t.ids}  # nobody lost
        for s, ids in enumerate(owned):
            assert (sim.owner_of(ids) == s).all()  # the routing table agrees with the rows
    assert sim.stats.handoffs > 0  # the crowd crossed borders


def test_a_handed_off_entity_keeps_its_id_and_every_component_row():
    defn = load_world(WORLDS / "shard_crowd.toml")
    one = Simulation(defn, seed=4)
    sim = ShardedSimulation(defn, 4, seed=4)
    start = {int(e): int(s) for s, ids in enumerate(sim.owned_by()) for e in ids}
    moved = set()
    for _ in range(60):
        one.step()
        sim.step()
        moved |= {int(e) for s, ids in enumerate(sim.owned_by()) for e in ids if start.get(int(e), s) != s}
    assert moved
    view = sim.world
    for e in sorted(moved)[:20]:
        for c in one.world.components_of(e):
            if c.hashed:
                assert view.get(e, c) == one.world.get(e, c), (e, c)  # CheatStats, Link and all


def loot(view, who: int, event_ms: float, target: int) -> dict:
    """What an honest client sends to loot: its clock at the event, from where it stands."""
    p = view.get(who, Player)
    return {"player": who, "seq": 1, "kind": "loot", "client_time_ms": event_ms + p["clock_offset_ms"],
            "recv_time_ms": event_ms + p["rtt_ms"] / 2, "target": target, "x": p["last_x"], "y": p["last_y"]}


def test_fifty_players_loot_the_chest_at_a_four_shard_corner_one_winner_as_on_one_shard():
    results = []
    for shards in (1, 4):
        sim = open_world(load_world(WORLDS / "shard_corner_chest.toml"), shards, generate=False)
        view = sim.world
        chest = int(view.query(Loot).ids()[0])
        if shards > 1:  # the rushers stand on all four shards
            assert len(set(sim.owner_of(sim.player_ids).tolist())) == 4
        rng = np.random.default_rng(7)
        t = sim.tick * 50.0 - 120.0
        recs = [loot(view, int(p), float(e), chest) for p, e in zip(sim.player_ids, t + rng.uniform(0, 40, 50))]
        rng.shuffle(recs)
        assert sim.submit(recs) == []
        r = sim.step()
        view = sim.world
        gold = {int(p): view.get(int(p), Inventory)["gold"] for p in sim.player_ids}
        winners = [p for p, g in gold.items() if g]
        assert r.applied == 1 and r.refused == {"claim_lost": 49} and len(winners) == 1
        assert gold[winners[0]] == 100 and view.get(chest, Loot)["gold"] == 0
        results.append((winners[0], r.state_hash))
    assert results[0] == results[1]


def test_gold_and_potions_are_conserved_by_trades_across_shards():
    defn = load_world(WORLDS / "shard_crowd.toml")
    sim = ShardedSimulation(defn, 4, seed=5)
    before = totals(sim.world)
    done = 0
    for _ in range(60):
        r = sim.step()
        done += r.conflicts.get("trades_done", 0)
        assert totals(sim.world) == before
    assert done > 0 and sim.stats.cross_shard_actions > 0


def test_no_damage_lost_when_fighters_and_boars_strike_across_the_border():
    defn = load_world(WORLDS / "shard_border_battle.toml")
    one, sim = Simulation(defn, seed=6), ShardedSimulation(defn, 2, seed=6)
    bitten = dealt = 0
    for _ in range(40):
        a, b = one.step(), sim.step()
        assert a.state_hash == b.state_hash
        assert a.conflicts["damage_dealt"] == b.conflicts["damage_dealt"]
        assert a.killed == b.killed
        bitten += sum(sh.world.resources[NpcHits].victims.size for sh in sim.shards)
        dealt += b.conflicts["damage_dealt"]
    assert bitten > 0 and dealt > 0
    lag = sim.summary()["sync_lag_ticks"]
    assert sim.stats.lag_rows[0] > 0 and lag["p50"] == 0 and lag["p99"] <= 1  # ghosts kept up within the tick


def test_a_player_disconnecting_mid_hand_off_ends_up_owned_once_and_disconnected():
    defn = load_world(WORLDS / "shard_crowd.toml")
    sim = ShardedSimulation(defn, 4, seed=8)
    one = Simulation(defn, seed=8)
    walkers = sim.player_ids[:150]
    owner = sim.owner_of(walkers)
    for _ in range(80):  # until a walker stands beyond its owner's border: it moves at the barrier
        one.step()
        sim.step()
        view = sim.world
        x = np.array([view.get(int(p), Position)["x"] for p in walkers])
        y = np.array([view.get(int(p), Position)["y"] for p in walkers])
        crossing = np.flatnonzero(sim.map.shard_of(x, y) != sim.owner_of(walkers))
        if crossing.size:
            break
    assert crossing.size
    p = int(walkers[crossing[0]])
    sim.disconnect(p)
    one.disconnect(p)
    assert sim.state_hash() == one.state_hash()
    for _ in range(3):
        assert sim.step().state_hash == one.step().state_hash
    holders = [s for s, ids in enumerate(sim.owned_by()) if p in set(ids.tolist())]
    assert holders == [int(sim.owner_of(np.array([p]))[0])] and holders[0] != owner[crossing[0]]
    assert sim.world.get(p, Player)["connected"] == 0
    sim.reconnect(p)
    one.reconnect(p)
    assert sim.step().state_hash == one.step().state_hash


def test_an_action_sent_to_an_owner_the_actor_has_left_is_forwarded_not_dropped():
    defn = load_world(WORLDS / "shard_crowd.toml")
    one, sim = Simulation(defn, seed=2), ShardedSimulation(defn, 4, seed=2)
    real = sim.owner_of
    stale = {int(e) for e in sim.player_ids[:40]}

    def routed_by_an_old_table(ids):  # the router's view only: every shard knows better
        out = real(ids).copy()
        wrong = np.isin(np.asarray(ids, np.int64), list(stale))
        out[wrong] = (out[wrong] + 1) % 4
        return out

    sim.router = routed_by_an_old_table  # the front end's table is old; the shards know better
    for _ in range(10):
        a, b = one.step(), sim.step()
        assert a.state_hash == b.state_hash and a.applied == b.applied and a.submitted == b.submitted
    assert sim.stats.forwarded > 0


def test_the_desync_detector_names_the_tick_shard_entity_and_field_of_a_planted_fault():
    defn = load_world(WORLDS / "shard_border_battle.toml")
    sim = ShardedSimulation(defn, 2, seed=1)
    check = Verifier(sim)
    victim = int(sim.owned_by()[1][0])
    telemetry = next(s for s in sim.shards[1].schedule.systems if s.name == "Telemetry")
    plain = telemetry.run

    def faulty(world, ctx):  # a test-only fault: one field of one entity on one shard
        plain(world, ctx)
        if ctx.tick == 7:
            t, r = world.registry.locate(victim)
            world.tables[t].column(Health, "max_hp")[r] += 1.0

    telemetry.run = faulty
    found = None
    for _ in range(10):
        found = check.check(sim.step())
        if found:
            break
    assert found == {"tick": 7, "entity": victim, "shard": 1, "component": "Health", "field": "max_hp",
                     "expected": found["expected"], "got": found["expected"] + 1.0}


@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**16), size=st.integers(40, 200), players=st.integers(2, 40),
       npcs=st.integers(0, 60), regions=st.integers(1, 8), shards=st.integers(2, 8),
       behaviour=st.sampled_from(["wander", "travel", "fight", "trade"]))
def test_small_random_worlds_are_transparent_on_random_shard_counts(seed, size, players, npcs, regions, shards,
                                                                     behaviour):
    data = {
        "world": {"name": "random", "bounds": [0.0, 0.0, float(size), float(size)], "cell_m": 5.0, "seed": seed},
        "regions": {"count": regions},
        "hotspots": [{"name": "a", "x": size * 0.3, "y": size * 0.5, "radius_m": 8.0},
                     {"name": "b", "x": size * 0.7, "y": size * 0.5, "radius_m": 8.0}],
        "populations": [
            {"kind": "players", "name": "p", "count": players, "behaviour": behaviour, "team": 1, "gold": 20,
             "spawn": {"shape": "disc", "x": size / 2, "y": size / 2, "radius_m": size / 3}},
            {"kind": "players", "name": "q", "count": players, "behaviour": behaviour, "team": 2,
             "spawn": {"shape": "disc", "x": size / 2, "y": size / 2, "radius_m": size / 3}},
            {"kind": "npcs", "name": "n", "count": npcs, "attack_damage": 3.0, "attack_per_s": 1.0,
             "attack_reach_m": 2.0, "hp": 20.0, "speed_mps": 2.0, "leash_m": 15.0,
             "spawn": {"shape": "disc", "x": size / 2, "y": size / 2, "radius_m": size / 3}},
        ],
    }
    defn = parse_world(data)
    assert hashes(ShardedSimulation(defn, shards), 15) == hashes(Simulation(defn), 15)


def test_worlds_run_shards_8_writes_the_hashes_of_one_shard_and_finds_no_desync(tmp_path):
    world = WORLDS / "shard_corner_chest.toml"
    h1, h8 = tmp_path / "one.txt", tmp_path / "eight.txt"

    def run(*args):
        out = subprocess.run([sys.executable, "-m", "worlds", "run", str(world), "--ticks", "12", "--json", *args],
                             capture_output=True, text=True, cwd=ROOT, check=True)
        return json.loads(out.stdout)

    one = run("--shards", "1", "--hashes", str(h1))
    eight = run("--shards", "8", "--hashes", str(h8), "--verify")
    lines = h8.read_text().splitlines()
    assert len(lines) == 12 and lines[0].startswith("0 ") and h1.read_text() == h8.read_text()
    assert eight["state_hash"] == one["state_hash"]
    s = eight["shards"]
    assert s["count"] == 8 and s["desync"] is None and len(s["per_shard"]) == 8
    assert sum(p["owned"] for p in s["per_shard"]) == one["shards"]["per_shard"][0]["owned"]
    assert s["bytes_per_tick"]["p50"] > 0
    checked = run("--shards", "2", "--verify", str(h1))
    assert checked["shards"]["desync"] is None
    h1.write_text(h1.read_text().replace(lines[5].split()[1], "0" * 16))
    assert run("--shards", "2", "--verify", str(h1))["shards"]["desync"]["tick"] == 5


def test_worlds_run_shards_8_runs_a_world_of_events_as_one_shard_does(tmp_path):
    def run(*args) -> dict:
        out = subprocess.run([sys.executable, "-m", "worlds", "run", str(WORLDS / "events_shard_hunt.toml"),
                              "--ticks", "30", "--seed", "4", "--json", *args], capture_output=True, text=True,
                             cwd=ROOT)
        assert out.returncode == 0, out.stderr
        return json.loads(out.stdout)

    h1, h8 = tmp_path / "one.txt", tmp_path / "eight.txt"
    one = run("--shards", "1", "--hashes", str(h1))
    eight = run("--shards", "8", "--hashes", str(h8), "--verify")
    assert h8.read_text() == h1.read_text() and len(h1.read_text().splitlines()) == 30
    assert eight["shards"]["count"] == 8 and eight["shards"]["desync"] is None
    assert eight["events"] == one["events"] and one["events"]["spawned"] > 0


def test_borders_follow_the_load_mid_battle_a_capped_few_hand_offs_a_tick():
    defn = load_world(WORLDS / "shard_rebalance.toml")
    one, sim = Simulation(defn, seed=3), open_world(defn, seed=3)  # the file says 2 shards
    assert isinstance(sim, ShardedSimulation) and len(sim.shards) == 2
    loads0 = [ids.size for ids in sim.owned_by()]
    before, per_tick = 0, []
    for _ in range(80):
        assert one.step().state_hash == sim.step().state_hash
        per_tick.append(sim.stats.handoffs - before)
        before = sim.stats.handoffs
        every = np.concatenate(sim.owned_by())
        assert np.unique(every).size == every.size == sum(t.n for t in one.world.tables)
    loads = [ids.size for ids in sim.owned_by()]
    assert sim.balancer.moves >= 1 and sim.stats.rebalance_moves > 0
    assert max(per_tick) <= defn.shards.max_handoffs_per_tick and sim.stats.handoffs_deferred >= 1
    assert max(loads) / np.mean(loads) < max(loads0) / np.mean(loads0)  # the borders moved to the load


def test_a_group_reaching_beyond_the_ghosts_is_resolved_with_borrowed_rows_as_on_one_shard():
    import tomllib

    data = tomllib.loads((WORLDS / "shard_border_battle.toml").read_text())
    data["regions"]["interest_radius_m"] = 0.5  # ghosts barely past the border: shots reach farther
    data["populations"] = [p for p in data["populations"] if p["kind"] == "players"]
    defn = parse_world(data)
    one, sim = Simulation(defn, seed=2), ShardedSimulation(defn, 2, seed=2)
    for _ in range(30):
        a, b = one.step(), sim.step()
        assert a.state_hash == b.state_hash and a.killed == b.killed
    assert sim.stats.borrowed > 0  # resolvers lent rows they held no ghost of
    assert all(not any(t.has(Borrowed) and t.n for t in sh.world.tables) for sh in sim.shards)  # given back


def test_the_population_baseline_is_learned_from_every_shard_as_from_one_world():
    """Shards score the players they own against one baseline learned from all of them: the
    same thresholds, hit rates and hashes as on one world, the thresholds the population's."""
    import tomllib

    from worlds.cheat_report import baseline_of

    data = tomllib.loads((WORLDS / "aimbot_small.toml").read_text())
    data.setdefault("cheat", {}).update(baseline_every_s=0.5, min_population=10, min_shots=3, min_intervals=5)
    defn = parse_world(data)
    one, many = Simulation(defn, seed=5, hash_every=0), ShardedSimulation(defn, 3, seed=5, hash_every=0)
    for _ in range(100):
        one.step(), many.step()
    assert one.state_hash() == many.state_hash()
    mine, theirs = baseline_of(one), baseline_of(many)
    # Learned from tick 89's statistics over the ticks up to 98; tick 99's is being learned.
    assert mine.tick == theirs.tick == 89 and mine.report == theirs.report
    assert all(np.array_equal(baseline_of(many).scalars, sh.world.resources[type(mine)].scalars) for sh in many.shards)
    assert any(t["threshold"] > t["prior"] for t in mine.report.values() if t["prior"] is not None), mine.report
