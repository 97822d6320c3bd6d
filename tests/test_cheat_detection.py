"""Cheat prevention and detection measured against the simulated clients' ground truth.

The bars asserted here hold over several seeds. Bots are caught by the regularity of their
beat, even when they fire at nothing, or by how steadily they fire a little after their
weapon is ready. Aimbots are caught within 60 s by how fast they switch
to the next foe when theirs dies (some 25 such switches a minute in a battle), with the aim
test's evidence (where their hits land; too slow on its own: some 2-5.5 nats a minute
against the 9.2 a false-positive rate of 1e-4 needs) multiplied in.
"""

import numpy as np
import pytest

from systems.components import CheatStats
from tests.conftest import WORLDS
from worlds import Simulation
from worlds.cheat_grid import run_grid
from worlds.cheat_report import cheat_summary
from worlds.cheaters import KIND_CODE

MOVEMENT_OR_TIMING = {"too_fast", "teleport", "blocked", "out_of_bounds", "future_timestamp", "stale_timestamp",
                      "forged_timestamp", "replayed_seq", "rate_limit", "cooldown", "malformed"}


def played(world: str, seed: int, seconds: int) -> Simulation:
    """A scenario world played for ``seconds`` game seconds by its simulated clients."""
    sim = Simulation.from_file(WORLDS / world, seed=seed, hash_every=0)
    for _ in range(round(seconds * sim.defn.world.tick_rate_hz)):
        sim.step()
    return sim


@pytest.mark.slow
@pytest.mark.parametrize("seed", [1, 2])
def test_impossible_refused_honest_untouched_and_refusal_backed_kinds_caught(seed):
    sim = played("cheat_small.toml", seed, 50)
    c = cheat_summary(sim)
    assert c["cheaters"] == 20 and c["impossible_actions"] > 1000
    assert c["impossible_refused_share"] == 1.0  # every impossible action refused before effect
    assert not MOVEMENT_OR_TIMING & set(c["honest_refused"])  # bad links, stalls and all
    assert c["false_positive_rate"] <= 0.001
    for kind in ("speedhack", "teleport", "rapid_fire", "timestamp", "dupe"):
        k = c["kinds"][kind]
        assert k["recall"] == 1.0 and k["precision"] == 1.0, (kind, k)
        assert k["median_detect_s"] <= 10.0
    assert c["kinds"]["aimbot"]["false_positives"] == 0  # no honest player flagged for aim or reaction
    bots = c["kinds"]["bot"]
    # A bot whose beat falls within half an interval of its weapon's is judged by how long after
    # the weapon was ready it fires, against the population's spread there: in these 50 s, the
    # population has not yet shown it for every bot.
    assert bots["recall"] >= 0.6 and bots["precision"] == 1.0, bots
    flagged = {f["player"]: f["flags"] for f in c["flagged_players"]}
    assert all(flags for flags in flagged.values())  # every flag carries the features that raised it
    assert all(set(f["evidence"]) == set(f["flags"]) and all(f["evidence"].values()) for f in c["flagged_players"])
    assert c["certain"] + c["suspect"] == c["flagged"] and c["certain"] > 0 and c["suspect"] > 0
    level = {f["player"]: f["level"] for f in c["flagged_players"]}
    for kind, want in (("speedhack", "certain"), ("teleport", "certain"), ("rapid_fire", "certain"), ("bot", None)):
        mine = [int(p) for p in sim.player_ids[sim.truth.kind == KIND_CODE[kind]]]
        got = {level.get(p) for p in mine}
        assert got == {want} if want else got - {None} <= {"certain", "suspect"}, (kind, got)
    bots = [level[int(p)] for p in sim.player_ids[sim.truth.kind == KIND_CODE["bot"]] if int(p) in level]
    assert "suspect" in bots  # a bot that breaks no rule is only suspected, on its rhythm


@pytest.mark.slow
@pytest.mark.parametrize("seed", [1, 2])
def test_aimbots_caught_within_a_minute_and_honest_shooters_spared(seed):
    sim = played("aimbot_small.toml", seed, 60)
    c = cheat_summary(sim)
    k = c["kinds"]["aimbot"]
    assert k["cheaters"] == 10 and k["recall"] >= 0.9 and k["precision"] == 1.0 and c["false_positives"] == 0, k
    aimbots = {int(p) for p in sim.player_ids[sim.truth.kind == KIND_CODE["aimbot"]]}
    caught = [f for f in c["flagged_players"] if f["player"] in aimbots]
    features = {"aim_difficulty", "reaction_time", "acquisition_time"}
    assert len(caught) == k["detected"] and all(features & set(f["flags"]) for f in caught)
    assert sum("acquisition_time" in f["flags"] for f in caught) >= 8, caught


def test_switching_to_the_next_foe_takes_a_human_its_reaction_time_and_an_aimbot_less():
    """Simulated clients turn on their next foe only once they have seen the last one die and
    reacted; the server times those switches. Honest players' are rarely under 150 ms (a
    human's 260 +- 60), aimbots' nearly always (120 +- 25)."""
    sim = played("aimbot_small.toml", 3, 20)
    ids, kind = sim.player_ids, sim.truth.kind
    n, fast = (np.array([sim.world.get(int(p), CheatStats)[f] for p in ids]) for f in ("acq_n", "acq_fast"))
    honest, aimbots = kind == 0, kind == KIND_CODE["aimbot"]
    assert n[honest].sum() > 1000 and n[aimbots].sum() > 30
    assert fast[honest].sum() / n[honest].sum() < 0.1
    assert fast[aimbots].sum() / n[aimbots].sum() > 0.7


@pytest.mark.slow
@pytest.mark.parametrize("seed", [3, 4])
def test_honest_players_on_heavy_tailed_links_are_never_refused_for_timing_nor_flagged(seed):
    """Clients written apart from the built-in simulation, through the server-loop API: each
    sends an update at 10 Hz from where it stands; a few packets are delayed tens to hundreds
    of milliseconds more (Wi-Fi, a congested hop), and now and then a whole second of them sits
    in a congested queue. Their clocks are honest: a late packet is late, not forged."""
    from systems.components import Player

    sim = Simulation.from_file(WORLDS / "battle.toml", seed=seed, generate=False, hash_every=0)
    rng = np.random.default_rng(seed)
    ids = [int(e) for e in sim.player_ids]
    link = {e: sim.world.get(e, Player) for e in ids}
    dt = 1000.0 / sim.defn.world.tick_rate_hz
    queue: dict[int, list[dict]] = {}
    congested_until = {e: -1.0 for e in ids}
    refused: dict[str, int] = {}
    for tick in range(400):
        for seq, e in ((tick // 2 + 1, e) for e in ids if tick % 2 == 0):
            p = link[e]
            sent = tick * dt + rng.uniform(0.0, dt)
            if rng.uniform() < 0.003:
                congested_until[e] = sent + 1000.0
            extra = 150.0 if sent < congested_until[e] else 0.0
            if rng.uniform() < 0.05:
                extra += 20.0 * (rng.pareto(1.5) + 1.0)  # heavy tail: tens of ms, sometimes hundreds
            arrive = sent + p["rtt_ms"] / 2 + abs(rng.normal(0.0, p["jitter_ms"])) + min(extra, 900.0)
            due = int(np.ceil(arrive / dt))
            queue.setdefault(due, []).append({
                "player": e, "seq": seq, "kind": "move", "client_time_ms": sent + p["clock_offset_ms"],
                "recv_time_ms": arrive, "x": p["last_x"], "y": p["last_y"]})
        assert sim.submit(queue.pop(sim.tick, [])) == []
        for reason, n in sim.step().refused.items():
            refused[reason] = refused.get(reason, 0) + n
    assert not MOVEMENT_OR_TIMING & set(refused), refused
    flags = sim.world.query(CheatStats).concat(CheatStats, "flags")
    assert int(np.count_nonzero(flags)) == 0


@pytest.mark.slow
def test_the_grid_meets_the_bars_on_every_honest_model_in_its_first_minute():
    """Issue 18's bars on the grid's first minute (``worlds/defs/grid/``, seed 1, at full scale:
    a smaller world fights less, and aimbots are caught by how they switch foes as theirs die):
    on every honest model, the project's clients, the plausible ones the detector was not
    written against, and both on bad networks, at most 0.1 % of the honest players flagged, no
    honest refusal for movement or timing, and recall 0.9 for every blunt cheat."""
    result = run_grid(seeds=[1], seconds=[60])
    assert len(result["cells"]) == 4
    for cell in result["cells"]:
        assert cell["bars"]["passed"] and not cell["bars"]["unchecked"], (cell["model"], cell["bars"]["failures"])
        assert cell["honest"] >= 1500 and not cell["honest_refused_movement_timing"]
