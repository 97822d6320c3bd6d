"""Measuring cheat detection against the ground truth the simulated clients carry.

Prevention is measured per action: every action a client sent that was impossible (see
``worlds.cheaters.CheatProfiles.impossible``) must have been refused. Detection is measured per
player: for each kind of cheat, precision and recall of the flags that speak for it, honest
players flagged (false positives), and the median game time to the first flag. Each flagged
player is reported ``certain`` (refused impossible actions behind a flag) or ``suspect``
(statistics only, for review), with the features behind each flag.
"""

from __future__ import annotations

import numpy as np

from systems.actions import REFUSAL_NAMES, ActionBatch
from systems.anomaly_score import (FLAG_ACQUIRE, FLAG_AIM, FLAG_ECONOMY, FLAG_EXCESS, FLAG_LUCK, FLAG_MOVE, FLAG_RATE,
                                   FLAG_REACTION, FLAG_REGULAR, FLAG_SPEED, FLAG_TIMING, SCORED_TESTS, STAT_FIELDS,
                                   PopulationBaseline, flag_names, population_scores, thresholds)
from systems.columns import gather
from systems.components import CheatStats
from worlds.cheaters import KIND_CODE

# The flags that speak for each kind of cheat.
KIND_FLAGS = {
    "speedhack": FLAG_MOVE | FLAG_SPEED,
    "teleport": FLAG_MOVE,
    "aimbot": FLAG_AIM | FLAG_REACTION | FLAG_ACQUIRE,
    "rapid_fire": FLAG_RATE,
    "bot": FLAG_REGULAR,
    "timestamp": FLAG_TIMING | FLAG_EXCESS,
    "dupe": FLAG_ECONOMY | FLAG_TIMING,
    "loot_luck": FLAG_LUCK,
}


# Flags backed by refused impossible actions are certain; the statistical ones are suspect
# (for review): a player is reported at the level of the most certain flag it carries.
CERTAIN = FLAG_MOVE | FLAG_TIMING | FLAG_RATE | FLAG_ECONOMY
# What each flag rests on: the CheatStats fields (features) reported beside it.
EVIDENCE = {
    FLAG_MOVE: ("r_move",), FLAG_TIMING: ("r_timing",), FLAG_RATE: ("r_rate",), FLAG_ECONOMY: ("r_economy",),
    FLAG_SPEED: ("speed_cusum",), FLAG_AIM: ("shots", "hits"), FLAG_REACTION: ("react_n", "react_sum"),
    FLAG_ACQUIRE: ("acq_n", "acq_fast", "acq_quick"),
    FLAG_REGULAR: ("int_n", "int_sum", "int_sq", "repeats", "gate_n", "gate_sum"),
    FLAG_EXCESS: ("excess_n", "excess_late"), FLAG_LUCK: ("loots", "rares"),
}


def flag_level(flags: int) -> str | None:
    """``certain`` (refused impossible actions behind it), ``suspect`` (statistics), or None."""
    if flags & CERTAIN:
        return "certain"
    return "suspect" if flags else None


def baseline_of(sim) -> PopulationBaseline:
    """The population's baseline a run judges by (on a sharded world, every shard's is the same)."""
    if hasattr(sim, "resource"):  # a sharded world: shard 0's (every shard's is the same)
        return sim.resource(PopulationBaseline)
    return sim.world.resources[PopulationBaseline]


# The population-scored tests behind each statistical flag (``SCORED_TESTS``).
SCORES = {FLAG_AIM: ("aim_difficulty", "aim_and_acquisition"),
          FLAG_ACQUIRE: ("acquisition_time", "aim_and_acquisition"),
          FLAG_REGULAR: ("rhythm_repeats", "rhythm_spread", "rhythm_at_the_gate")}


def evidence(world, player: int, flags: int, baseline: PopulationBaseline, th: np.ndarray) -> dict[str, dict]:
    """Per raised flag, the features behind it, a derived figure where one reads better (mean
    reaction ms, the interval CV, the late share) and, for the statistical flags, the score of
    each test behind it with the threshold the population's baseline now sets."""
    st = world.get(player, CheatStats)
    row = np.array([[st[f] for _, f in STAT_FIELDS]], np.float64)
    scores = dict(zip(SCORED_TESTS, population_scores(row, th, baseline.scalars, baseline.table)[0]))
    out = {}
    for bit, fields in EVIDENCE.items():
        if not flags & bit:
            continue
        e: dict = {f: round(float(st[f]), 4) for f in fields}
        if bit in SCORES:
            e["scores"] = {t: round(float(scores[t]), 3) for t in SCORES[bit] if not np.isnan(scores[t])}
            e["thresholds"] = {t: baseline.report.get(t, {}).get("threshold") for t in e["scores"]}
        if bit == FLAG_REACTION and st["react_n"]:
            e["mean_ms"] = round(float(st["react_sum"] / st["react_n"]), 2)
        elif bit == FLAG_REGULAR and st["int_n"] > 1:
            mean = st["int_sum"] / st["int_n"]
            var = max(st["int_sq"] / st["int_n"] - mean * mean, 0.0)
            e["cv"] = round(float(np.sqrt(var) / mean), 4) if mean > 0 else 0.0
        elif bit == FLAG_EXCESS and st["excess_n"]:
            e["late_share"] = round(float(st["excess_late"] / st["excess_n"]), 4)
        out[flag_names(bit)[0]] = e
    return out


class GroundTruth:
    """Counts, over a run, impossible actions and what became of them, and honest refusals."""

    def __init__(self, generator) -> None:
        self.kind = None if generator is None else generator.cheat.kind
        self.ids = None if generator is None else generator.ids
        self.impossible = 0
        self.impossible_accepted = 0
        self.honest_refused: dict[str, int] = {}

    def record(self, batch: ActionBatch, truth: np.ndarray) -> None:
        if self.kind is None or batch.n == 0:
            return
        self.impossible += int(truth.sum())
        self.impossible_accepted += int((truth & (batch.status == 0)).sum())
        row = np.searchsorted(self.ids, batch.actor).clip(0, self.ids.size - 1)
        honest = (self.ids[row] == batch.actor) & (self.kind[row] == 0) & (batch.status != 0)
        codes, counts = np.unique(batch.status[honest], return_counts=True)
        for c, k in zip(codes.tolist(), counts.tolist()):
            name = REFUSAL_NAMES[c]
            self.honest_refused[name] = self.honest_refused.get(name, 0) + k


def cheat_summary(sim) -> dict:
    """The ``cheat`` section of the run summary."""
    truth: GroundTruth = sim.truth
    ids = sim.player_ids
    world = sim.world  # (a sharded world's: merged once)
    flags = gather(world, ids, CheatStats, "flags")[0].astype(np.int64)
    flag_tick = gather(world, ids, CheatStats, "flag_tick")[0].astype(np.int64)
    kind = truth.kind if truth.kind is not None else np.zeros(ids.size, np.int64)
    honest = kind == 0
    flagged = flags != 0
    baseline = baseline_of(sim)
    th = thresholds(sim.defn.cheat)
    out = {
        "players": int(ids.size),
        "cheaters": int((~honest).sum()),
        "flagged": int(flagged.sum()),
        "false_positives": int((flagged & honest).sum()),
        "false_positive_rate": round(float((flagged & honest).sum() / max(honest.sum(), 1)), 6),
        "impossible_actions": truth.impossible,
        "impossible_refused": truth.impossible - truth.impossible_accepted,
        "impossible_refused_share": (round(1.0 - truth.impossible_accepted / truth.impossible, 6)
                                     if truth.impossible else 1.0),
        "honest_refused": dict(sorted(truth.honest_refused.items())),
        "kinds": {},
        "certain": int(((flags & CERTAIN) != 0).sum()),
        "suspect": int((flagged & ((flags & CERTAIN) == 0)).sum()),
        "flagged_players": [{"player": int(p), "flags": flag_names(int(f)), "tick": int(t), "level": flag_level(int(f)),
                             "evidence": evidence(world, int(p), int(f), baseline, th)}
                            for p, f, t in zip(ids[flagged], flags[flagged], flag_tick[flagged])],
        # The statistical tests as the population's baseline last had them: thresholds, how
        # many players were scored, their score percentiles.
        "baseline_tick": baseline.tick,
        "tests": baseline.report,
    }
    dt = sim.clock.dt_s
    for name, code in KIND_CODE.items():
        mine = kind == code
        if not mine.any():
            continue
        speaks = (flags & KIND_FLAGS[name]) != 0
        tp = int((speaks & mine).sum())
        fp = int((speaks & honest).sum())
        ticks = flag_tick[mine & flagged]
        out["kinds"][name] = {
            "cheaters": int(mine.sum()),
            "detected": tp,
            "recall": round(tp / int(mine.sum()), 4),
            "precision": round(tp / (tp + fp), 4) if tp + fp else 1.0,
            "false_positives": fp,
            "median_detect_s": round(float(np.median(ticks)) * dt, 2) if ticks.size else None,
        }
    return out
