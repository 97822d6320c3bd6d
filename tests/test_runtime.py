"""The server-loop API on scripted actions: what is applied, what is refused and why."""

import gc

import numpy as np
import pytest

from systems.actions import ActionBatch
from systems.apply_actions import TradeOffer
from systems.components import CheatStats, Health, Inventory, Link, Loot, Npc, Player, Position
from systems.lifecycle import Deaths
from tests.conftest import WORLDS
from worlds import Simulation, parse_world

# Tiny worlds: cheap enough to run again with the JIT off, so coverage sees the kernels.
pytestmark = pytest.mark.kernel

DUEL = WORLDS / "duel.toml"


def duel(**kw) -> Simulation:
    return Simulation.from_file(DUEL, generate=False, **kw)


def people(sim):
    alice, bob = (int(e) for e in sim.player_ids)
    wolf = int(sim.world.query(Npc).ids()[0])
    return alice, bob, wolf


def act(sim, who, seq, kind, t_ms=None, **fields):
    """A record as a client sends it, from where the server last saw the actor."""
    p = sim.world.get(who, Player)
    rec = {"player": who, "seq": seq, "kind": kind,
           "client_time_ms": sim.tick * 50.0 if t_ms is None else t_ms,
           "x": p["last_x"], "y": p["last_y"]}
    rec.update(fields)
    return rec


def step_with(sim, *records):
    assert sim.submit(list(records)) == []
    return sim.step()


def test_melee_hit_lands_and_is_reported():
    sim = duel()
    alice, bob, _ = people(sim)
    r = step_with(sim, act(sim, alice, 1, "melee", target=bob))
    assert (r.submitted, r.applied, r.refused) == (1, 1, {})
    assert sim.world.get(bob, Health)["hp"] == 70.0
    assert r.action_to_effect_ms.shape == (1,) and r.action_to_effect_ms[0] >= 0


def test_replayed_and_reordered_sequence_numbers():
    sim = duel()
    alice, bob, _ = people(sim)
    step_with(sim, act(sim, alice, 5, "move"))
    r = step_with(sim, act(sim, alice, 5, "move"), act(sim, alice, 3, "move"), act(sim, alice, 3, "move"))
    # 5 again is a replay; 3 arrives late but was never seen: accepted once, then a replay.
    assert r.refused == {"replayed_seq": 2}
    assert r.applied == 1
    step_with(sim, act(sim, alice, 200, "move"))
    r = step_with(sim, act(sim, alice, 100, "move"))  # 100 behind the newest: outside the window
    assert r.refused == {"replayed_seq": 1}


def test_too_fast_and_out_of_bounds_moves_change_nothing():
    sim = duel()
    alice, bob, _ = people(sim)
    before = sim.world.get(alice, Position)
    sim.step()
    r = step_with(sim, act(sim, alice, 1, "move", t_ms=60.0, x=before["x"] + 3.0, y=before["y"]),
                  act(sim, alice, 2, "move", t_ms=70.0, x=-5.0, y=before["y"]),
                  act(sim, alice, 4, "move", t_ms=80.0, x=before["x"] + 30.0, y=before["y"]))
    assert r.refused == {"too_fast": 1, "out_of_bounds": 1, "teleport": 1}
    assert sim.world.get(alice, Position) == before
    # A legal step: 6 m/s for 100 ms is 0.6 m.
    r = step_with(sim, act(sim, alice, 3, "move", t_ms=100.0, x=before["x"] + 0.5, y=before["y"]))
    assert r.applied == 1
    sim.step()
    assert sim.world.get(alice, Position)["x"] == pytest.approx(before["x"] + 0.5)


def test_timestamps_outside_what_the_link_allows_are_refused():
    sim = duel()
    alice, bob, _ = people(sim)
    for _ in range(60):
        sim.step()
    now = sim.tick * 50.0
    r = step_with(sim, act(sim, alice, 1, "move", t_ms=now + 500.0), act(sim, alice, 2, "move", t_ms=now - 2500.0))
    assert r.refused == {"future_timestamp": 1, "stale_timestamp": 1}


def test_unknown_and_malformed_actions():
    sim = duel()
    alice, bob, wolf = people(sim)
    errors = sim.submit([{"player": alice, "seq": 1, "kind": "dance", "client_time_ms": 0.0},
                         {"player": alice, "seq": 1, "client_time_ms": 0.0}])
    assert [i for i, _ in errors] == [0, 1]
    assert "kind" in errors[0][1] and "kind" in errors[1][1]
    r = step_with(sim, act(sim, alice, 1, "melee", target=12345), {"player": 999, "seq": 1, "kind": "move",
                                                                    "client_time_ms": 0.0})
    assert r.refused == {"unknown_target": 1, "unknown_actor": 1}
    nan_batch = ActionBatch(actor=[alice], seq=[2], client_time_ms=[np.nan], kind=[1], target=[0], x=[50.0],
                            y=[50.0], value=[0.0], recv_time_ms=[50.0])
    sim.submit(nan_batch)
    assert sim.step().refused == {"malformed": 1}
    r = step_with(sim, act(sim, alice, 3, "melee", target=alice), act(sim, alice, 4, "trade", target=wolf, value=1))
    assert r.refused == {"bad_target": 2}


def test_kill_then_the_dead_act_no_more_and_respawn_later():
    sim = duel()
    alice, bob, _ = people(sim)
    r = None
    for s in range(1, 5):
        for _ in range(8):  # the sword's interval is 400 ms
            sim.step()
        r = step_with(sim, act(sim, alice, s, "melee", target=bob))
    assert r.killed == [bob]
    assert sim.world.get(bob, Health)["dead"] == 1
    deaths = sim.world.resources[Deaths]  # who died when, for those who react to a death
    assert deaths.ids.tolist() == [bob] and deaths.tick.tolist() == [sim.world.get(bob, Health)["died_tick"]]
    for _ in range(8):
        sim.step()
    r = step_with(sim, act(sim, bob, 1, "melee", target=alice), act(sim, alice, 5, "melee", target=bob))
    assert r.refused == {"actor_dead": 1, "target_dead": 1}
    assert sim.world.get(alice, Health)["hp"] == 100.0
    for _ in range(20):  # respawn_s = 1 s after the kill
        sim.step()
    h = sim.world.get(bob, Health)
    assert (h["dead"], h["hp"]) == (0, 100.0)


def test_earlier_compensated_hit_wins_a_mutual_kill():
    sim = duel()
    alice, bob, _ = people(sim)
    sim.world.set(alice, Health, hp=30.0)
    sim.world.set(bob, Health, hp=30.0)
    t = sim.tick * 50.0
    r = step_with(sim, act(sim, bob, 1, "melee", t_ms=t + 2.0, target=alice),
                  act(sim, alice, 1, "melee", t_ms=t + 1.0, target=bob))
    assert r.killed == [bob]
    assert r.refusals == [(bob, 1, "actor_dead")]
    assert sim.world.get(alice, Health)["hp"] == 30.0


def test_loot_is_a_first_claim_and_gold_is_conserved():
    sim = duel()
    alice, bob, wolf = people(sim)
    gold = lambda: sim.world.get(alice, Inventory)["gold"] + sim.world.get(bob, Inventory)["gold"]  # noqa: E731
    total = gold() + sim.world.get(wolf, Loot)["gold"]
    r = step_with(sim, act(sim, alice, 1, "loot", target=wolf))
    assert r.refused == {"target_not_dead": 1}
    r = step_with(sim, act(sim, alice, 2, "melee", target=wolf))
    assert r.killed == [wolf]
    r = step_with(sim, act(sim, alice, 3, "loot", target=wolf), act(sim, bob, 1, "loot", target=wolf))
    assert r.applied == 1 and r.refused == {"claim_lost": 1}
    assert gold() + sim.world.get(wolf, Loot)["gold"] == total
    assert sim.world.get(wolf, Loot)["gold"] == 0
    for _ in range(25):  # corpse_s = 1 s, and the wolf does not respawn
        sim.step()
    assert not sim.world.is_alive(wolf)
    assert gold() == total


def offers(sim):
    q = sim.world.query(TradeOffer)
    return sorted(zip(q.concat(TradeOffer, "giver").tolist(), q.concat(TradeOffer, "taker").tolist(),
                      q.concat(TradeOffer, "gold").tolist()))


def purses(sim, *who):
    return [sim.world.get(e, Inventory)["gold"] for e in who]


def test_trade_is_an_offer_then_an_acceptance_that_swaps_both_purses():
    sim = duel()
    alice, bob, _ = people(sim)
    r = step_with(sim, act(sim, alice, 1, "trade", target=bob, value=10), act(sim, bob, 1, "trade", target=alice, value=100))
    assert r.refused == {"not_held": 1}  # bob holds 5: his offer of 100 is refused at once
    assert purses(sim, alice, bob) == [50, 5]  # an offer moves nothing
    assert offers(sim) == [(alice, bob, 10)]
    r = step_with(sim, act(sim, bob, 2, "trade", target=alice, value=3))
    assert r.applied == 1
    assert purses(sim, alice, bob) == [43, 12]
    assert offers(sim) == []


def test_same_tick_offers_between_two_players_form_one_trade():
    sim = duel()
    alice, bob, _ = people(sim)
    t = sim.tick * 50.0
    r = step_with(sim, act(sim, bob, 1, "trade", t_ms=t + 3, target=alice, value=5),
                  act(sim, alice, 1, "trade", t_ms=t + 1, target=bob, value=20))
    assert r.applied == 2
    assert purses(sim, alice, bob) == [35, 20]
    assert offers(sim) == []


def test_trade_with_a_spent_offer_moves_nothing():
    sim = duel()
    alice, bob, wolf = people(sim)
    step_with(sim, act(sim, bob, 1, "trade", target=alice, value=5))
    step_with(sim, act(sim, bob, 2, "trade", target=alice, value=5))  # replaces his own offer
    assert offers(sim) == [(bob, alice, 5)]
    sim.world.set(bob, Inventory, gold=2)  # spent elsewhere meanwhile
    r = step_with(sim, act(sim, alice, 1, "trade", target=bob, value=10))
    assert r.refused == {"offer_lapsed": 1}  # alice holds her 10: bob's side lapsed, no claim of hers
    assert sim.world.get(alice, CheatStats)["r_economy"] == 0.0
    assert purses(sim, alice, bob) == [50, 2]
    assert offers(sim) == []


def test_disconnect_mid_trade_leaves_it_never_started_and_offers_lapse():
    sim = duel()
    alice, bob, _ = people(sim)
    step_with(sim, act(sim, alice, 1, "trade", target=bob, value=10))
    sim.disconnect(alice)
    assert offers(sim) == []
    step_with(sim, act(sim, bob, 1, "trade", target=alice, value=1))
    assert purses(sim, alice, bob) == [50, 5]
    assert offers(sim) == [(bob, alice, 1)]  # bob's is only an offer now
    for _ in range(int(10 / 0.05) + 1):  # trade_offer_s = 10 s
        sim.step()
    assert offers(sim) == []


def test_potions_heal_only_when_held():
    sim = duel()
    alice, bob, _ = people(sim)
    step_with(sim, act(sim, bob, 1, "melee", target=alice))
    r = step_with(sim, act(sim, alice, 1, "use"), act(sim, bob, 2, "use"), act(sim, alice, 2, "use"))
    assert r.refused == {"not_held": 2}
    assert sim.world.get(alice, Health)["hp"] == 100.0
    assert sim.world.get(alice, Inventory)["potions"] == 0


def test_refused_actions_leave_the_game_state_untouched():
    """Only the evidence against the sender (CheatStats) and the link's arrivals record it."""
    quiet, busy = duel(), duel()
    alice, bob, _ = people(busy)
    for s in range(1, 30):
        bad = [act(busy, alice, s, "move", x=1e6, y=0.0), act(busy, alice, s, "melee", x=1e6, y=0.0, target=bob),
               act(busy, bob, s, "melee", target=12345)]
        r = step_with(busy, *bad)
        quiet.step()
        assert r.applied == 0
        assert busy.world.state_hash(exclude=[CheatStats, Link]) == quiet.world.state_hash(exclude=[CheatStats, Link])
    assert busy.world.get(alice, CheatStats)["r_move"] == 58
    assert quiet.world.get(alice, CheatStats)["r_move"] == 0


def test_pve_world_refuses_player_combat():
    d = parse_world({
        "world": {"name": "pve", "bounds": [0, 0, 20, 20], "mode": "pve"},
        "populations": [{"kind": "players", "name": "p", "count": 2,
                         "spawn": {"shape": "disc", "x": 10, "y": 10, "radius_m": 0.5},
                         "network": {"rtt_ms": [50, 50], "clock_offset_ms": 0}}],
    })
    sim = Simulation(d, generate=False)
    a, b = (int(e) for e in sim.player_ids)
    r = step_with(sim, act(sim, a, 1, "melee", target=b))
    assert r.refused == {"bad_target": 1}


def test_a_tick_runs_without_the_garbage_collector_and_gives_it_back():
    sim = Simulation(parse_world({"world": {"name": "gc", "bounds": [0, 0, 50, 50]}}), generate=False)
    assert gc.isenabled()
    sim.step()
    assert gc.isenabled()
    gc.disable()  # a caller that manages the collector itself keeps it as it was
    try:
        sim.step()
        assert not gc.isenabled()
    finally:
        gc.enable()


def test_deaths_keep_each_ones_latest_death_for_as_long_as_asked():
    deaths = Deaths()
    deaths.keep(10)
    deaths.record(np.array([9, 4]), 100)
    deaths.record(np.array([], np.int64), 105)
    deaths.record(np.array([4, 2]), 108)  # 4 died again (a respawned player)
    assert deaths.ids.tolist() == [2, 4, 9] and deaths.tick.tolist() == [108, 108, 100]
    deaths.record(np.array([], np.int64), 111)  # 9's death is now 11 ticks old
    assert deaths.ids.tolist() == [2, 4] and deaths.tick.tolist() == [108, 108]
    deaths.keep(5)  # a reader asking less changes nothing
    assert deaths.keep_ticks == 10
