"""Measuring cheat detection against the ground truth the simulated clients carry.

Prevention is measured per action: every action a client sent that was impossible (see
``worlds.cheaters.CheatProfiles.impossible``) must have been refused. Detection is measured per
player: for each kind of cheat, precision and recall of the flags that speak for it, honest
players flagged (false positives), and the median game time to the first flag.
"""

from __future__ import annotations

import numpy as np

from systems.actions import REFUSAL_NAMES, ActionBatch
from systems.anomaly_score import (FLAG_ACQUIRE, FLAG_AIM, FLAG_ECONOMY, FLAG_EXCESS, FLAG_LUCK, FLAG_MOVE, FLAG_RATE,
                                   FLAG_REACTION, FLAG_REGULAR, FLAG_SPEED, FLAG_TIMING, flag_names)
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
    flags = gather(sim.world, ids, CheatStats, "flags")[0].astype(np.int64)
    flag_tick = gather(sim.world, ids, CheatStats, "flag_tick")[0].astype(np.int64)
    kind = truth.kind if truth.kind is not None else np.zeros(ids.size, np.int64)
    honest = kind == 0
    flagged = flags != 0
    out = {
        "players": int(ids.size),
        "cheaters": int((~honest).sum()),
        "flagged": int(flagged.sum()),
        "false_positives": int((flagged & honest).sum()),
        "false_positive_rate": round(float((flagged & honest).sum() / max(honest.sum(), 1)), 6),
        "impossible_actions": truth.impossible,
        "impossible_refused": truth.impossible - truth.impossible_accepted,
        "impossible_refused_share": round(1.0 - truth.impossible_accepted / truth.impossible, 6) if truth.impossible else 1.0,
        "honest_refused": dict(sorted(truth.honest_refused.items())),
        "kinds": {},
        "flagged_players": [{"player": int(p), "flags": flag_names(int(f)), "tick": int(t)}
                            for p, f, t in zip(ids[flagged], flags[flagged], flag_tick[flagged])],
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
