"""Cheat prevention and detection measured against the simulated clients' ground truth.

The bars asserted here hold over several seeds. Statistical detection of the subtle kinds
(aimbot, bot) is measured and reported but does not yet reach recall 0.9 in 60 s: see the
README's cheat section and the open issue.
"""

import pytest

from tests.conftest import WORLDS
from worlds import Simulation
from worlds.cheat_report import cheat_summary

MOVEMENT_OR_TIMING = {"too_fast", "teleport", "blocked", "out_of_bounds", "future_timestamp", "stale_timestamp",
                      "forged_timestamp", "replayed_seq", "rate_limit", "cooldown", "malformed"}


@pytest.mark.slow
@pytest.mark.parametrize("seed", [1, 2])
def test_impossible_refused_honest_untouched_and_refusal_backed_kinds_caught(seed):
    sim = Simulation.from_file(WORLDS / "cheat_small.toml", seed=seed, hash_every=0)
    for _ in range(600):  # 30 game seconds
        sim.step()
    c = cheat_summary(sim)
    assert c["cheaters"] == 20 and c["impossible_actions"] > 1000
    assert c["impossible_refused_share"] == 1.0  # every impossible action refused before effect
    assert not MOVEMENT_OR_TIMING & set(c["honest_refused"])  # bad links, stalls and all
    assert c["false_positive_rate"] <= 0.001
    for kind in ("speedhack", "teleport", "rapid_fire", "timestamp", "dupe"):
        k = c["kinds"][kind]
        assert k["recall"] == 1.0 and k["precision"] == 1.0, (kind, k)
        assert k["median_detect_s"] <= 10.0
    flagged = {f["player"]: f["flags"] for f in c["flagged_players"]}
    assert all(flags for flags in flagged.values())  # every flag carries the features that raised it
