"""What the anomaly score's kernels share: flag bits, the layout of a ``CheatStats`` row as
they read it, the bits saying what changed of a row in a tick, and the refusal classes.

Numba freezes a global from another module into a kernel when it compiles it, and its cache
keys a kernel on its own file only: the package's cached kernels are dropped at import when
this file or the components' fields changed since they were compiled (``_drop_stale_kernels``).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

from systems.columns import block_fields
from systems.components import CheatStats, Npc, Player

FLAG_MOVE, FLAG_TIMING, FLAG_RATE, FLAG_ECONOMY, FLAG_SPEED, FLAG_AIM, FLAG_REACTION, FLAG_REGULAR, \
    FLAG_EXCESS, FLAG_LUCK, FLAG_ACQUIRE = (1 << k for k in range(11))
FLAG_NAMES = {FLAG_MOVE: "movement_refusals", FLAG_TIMING: "timing_refusals", FLAG_RATE: "rate_refusals",
              FLAG_ECONOMY: "economy_refusals", FLAG_SPEED: "speed_cusum", FLAG_AIM: "aim_difficulty",
              FLAG_REACTION: "reaction_time", FLAG_REGULAR: "timing_regularity", FLAG_EXCESS: "timestamp_excess",
              FLAG_LUCK: "loot_luck", FLAG_ACQUIRE: "acquisition_time"}
SPEED_CUSUM_K = 1.0  # reference ratio of the CUSUM: honest clients stay under top speed
SPEED_CUSUM_H = 2.0  # decision level
# A back-dater's contested actions are nearly all late; an honest player's only when its
# network has a bad moment (a heavy tail of delays, a congested spell): a few in a hundred.
LATE_SHARE = 0.5
MIN_REPEAT_INTERVALS = 10  # the repeat test's tail needs no more: 9 of 9 repeats is ~4e-8 for a human
# Difficulty bins of the aim test: shots are binned by the server's base chance b of the shot
# (``shot_difficulty``, a coordinate of difficulty, not a truth) and each bin's hits are weighed
# against the population's hit rate in it.
AIM_BINS = 8

# What changed of a player's statistics in a tick: the tests whose evidence did not change are
# not run again (a tail test whose count of extremes stayed put only grows less significant).
(TOUCHED, AIM_CHANGED, REPEATS_CHANGED, LOOT_CHANGED, ACQ_CHANGED, REFUSED, SPEED_CHANGED, RHYTHM_CHANGED,
 EXCESS_CHANGED, REACT_CHANGED) = (1 << k for k in range(10))
ALL_CHANGED = (1 << 10) - 1
EVIDENCE = ALL_CHANGED & ~TOUCHED
SWITCHED = 1 << 10  # not evidence: the player turned on another foe this tick (see ``_fold``)

FIELDS = CheatStats.fields
# Every field but last_target is float64: in a table they form one block, in this order.
STAT_FIELDS = tuple((CheatStats, f) for f in FIELDS if f != "last_target")
assert all(CheatStats.dtype[f] == np.float64 for _, f in STAT_FIELDS)
_NAMES = [f for _, f in STAT_FIELDS]
# Positions in that block, by name.
(SHOTS, HITS, SHOTS_B, HITS_B, REACT_N, REACT_SUM, REACT_SQ, HURT_MS, ACQ_N, ACQ_FAST, ACQ_QUICK, LAST_MELEE,
 LAST_RANGED, LAST_CAST, INT_N, INT_SUM, INT_SQ, LAST_T_MS, PREV_INT, REPEATS, GATE_N, GATE_SUM, GATE_SQ, GATE_CU,
 GATE_QU, GATE_SPAN, EXCESS_N, EXCESS_LATE, LOOTS, RARES, R_MOVE, R_TIMING, R_RATE, R_ECONOMY, ECON_N,
 SPEED_CUSUM, FLAGS, FLAG_TICK) = (
    _NAMES.index(name) for name in (
        "shots", "hits", "shots0", "hits0", "react_n", "react_sum", "react_sq", "hurt_ms", "acq_n", "acq_fast",
        "acq_quick", "last_melee_ms", "last_ranged_ms", "last_cast_ms", "int_n", "int_sum", "int_sq", "last_t_ms",
        "prev_int", "repeats", "gate_n", "gate_sum", "gate_sq", "gate_cu", "gate_qu", "gate_span", "excess_n",
        "excess_late", "loots", "rares", "r_move", "r_timing", "r_rate", "r_economy", "econ_n", "speed_cusum", "flags",
        "flag_tick"))
assert _NAMES[SHOTS_B:SHOTS_B + AIM_BINS] == [f"shots{k}" for k in range(AIM_BINS)]
assert _NAMES[HITS_B:HITS_B + AIM_BINS] == [f"hits{k}" for k in range(AIM_BINS)]
assert LAST_RANGED == LAST_MELEE + 1 and LAST_CAST == LAST_MELEE + 2  # a weapon's clock by kind
# What the kernels read of the actors' Player records, and of a new foe's top speed.
PLAYER_F8 = block_fields(Player, np.float64)
OFFSET, RTT, SPEED = (PLAYER_F8.index(f) for f in ("clock_offset_ms", "rtt_ms", "speed_mps"))
TOP_SPEED = ((Player, "speed_mps"), (Npc, "speed_mps"))
# Refusal code -> class: 1 movement, 2 timing, 3 rate, 4 economy, 5 target (no evidence by itself).
REFUSAL_CLASS = np.zeros(32, np.int64)
for _code in (7, 8, 17, 18):
    REFUSAL_CLASS[_code] = 1
for _code in (4, 5, 6, 22):
    REFUSAL_CLASS[_code] = 2
for _code in (20, 21):
    REFUSAL_CLASS[_code] = 3
REFUSAL_CLASS[12] = 4
for _code in (9, 10, 11, 13, 14, 15, 19, 23):  # the target was wrong; the client still acted then
    REFUSAL_CLASS[_code] = 5


def flag_names(flags: int) -> list[str]:
    return [name for bit, name in FLAG_NAMES.items() if flags & bit]

# The world file's ``[cheat]`` section as the kernels read it (``thresholds``): these scalars,
# then the acquisition model.
(TH_REFUSALS, TH_MIN_SHOTS, TH_AIM, TH_MIN_REACT, TH_REACT_MEAN, TH_REACT_SD, TH_MIN_INT, TH_CV, TH_MIN_TIMINGS,
 TH_EXCESS_MS, TH_MIN_LOOTS, TH_LUCK_P, TH_SKILL_MEAN, TH_SKILL_SD, TH_SKILL_MAX, TH_ACQ_FAST_MS, TH_FLOOR_FAST,
 TH_ACQ_TAIL_P, TH_ACQ_QUICK_MS, TH_GATE_SHARE, TH_FP_RATE) = range(21)
TH_SCALARS = 21

# What the kernels read of the population's baseline (``PopulationBaseline.scalars``): the
# thresholds the population's own scores call for, each oriented so that a larger score is more
# suspicious, the chance of a repeated interval between deliberate actions, the share of
# fast acquisitions the fastest honest players have, and the population's reference spread at
# the gate (a coefficient of variation; 0: none yet) with the kurtosis and skewness there, and
# the chance that an honest trade or potion is refused (a race: the purse changed meanwhile)
# with the tail that count is judged at.
(B_AIM, B_JOINT, B_REPEAT_P, B_REPEAT, B_CV, B_ACQ, B_GATED, B_ACQ_P, B_GATE_CV, B_GATE_KURT, B_GATE_SKEW, B_ECON_P,
 B_ECON) = range(13)
BASE_SCALARS = 13
# The statistical tests whose thresholds come from the population, as ``population_scores``
# gives their scores (columns), by name.
SCORED_TESTS = ("aim_difficulty", "aim_and_acquisition", "rhythm_repeats", "rhythm_spread", "acquisition_time",
                "rhythm_at_the_gate")
# A player's attacks at the gate are judged on how long after the weapon was ready they came
# only when that is this long on average: nearer the gate, the client's frames set it.
GATE_MIN_MS = 50.0
# Nor when they average more than this share of the gate's width: a human whose delays straddle
# the gate's edge has only its near side counted there, which is narrower than its spread.
GATE_INNER = 0.6
MIN_GATED = 10  # attacks at the gate before their spread is judged
GATE_REF_N = 15  # attacks at the gate a player needs to count in the population's reference spread
GATE_MIN_REFERENCE = 25  # players the reference needs (or a quarter of [cheat] min_population, if more)


def _drop_stale_kernels() -> None:
    """Delete the package's cached kernels if they were compiled against another layout."""
    cache = Path(__file__).parent / "__pycache__"
    stamp = hashlib.sha256(Path(__file__).read_bytes() + repr((FIELDS, PLAYER_F8)).encode()).hexdigest()
    mark = cache / "layout.stamp"
    try:
        if mark.read_text() == stamp:
            return
    except OSError:
        pass
    try:
        for f in (*cache.glob("*.nbi"), *cache.glob("*.nbc")):
            f.unlink(missing_ok=True)
        cache.mkdir(exist_ok=True)
        mark.write_text(stamp)
    except OSError:  # a read-only install: numba then cannot cache here either
        pass


_drop_stale_kernels()
