"""The population's baseline on a sharded world: learned once, from every shard's players.

The anomaly score of each shard scores the players it owns, but the baseline it judges them by
(``systems.anomaly_score.population``) is the whole population's. At the end of a learning
tick every shard sends its scored players' statistics to shard 0 (``PlayerEvidence``), which
learns the baseline from all of them in id order over the ticks that follow, exactly as one
world would, and sends it to every other shard (``Baseline``) on the tick it is put in force.
No shard learns on its own.
"""

from __future__ import annotations

import numpy as np

from systems.anomaly_score import AnomalyScore, PopulationBaseline, scored_rows
from systems.anomaly_score.layout import STAT_FIELDS
from worlds.cluster.protocol import Baseline, PlayerEvidence, pack, unpack

LEARNER = 0  # the shard that learns the baseline


def scorer(shard) -> AnomalyScore | None:
    return next((s for s in shard.schedule.systems if isinstance(s, AnomalyScore)), None)


class PopulationLearning:
    def _stop_learning_alone(self) -> None:
        """Shards' anomaly scores judge by the baseline they are sent (``_learn_population``)."""
        for sh in self.shards:
            s = scorer(sh)
            if s is not None:
                s.learns = False

    def _learn_population(self, tick: int) -> None:
        """After the anomaly score of each tick: shard 0 goes on learning the baseline and,
        when it is done, tells the others; on a learning tick it begins the next from every
        shard's players."""
        learner = scorer(self.shards[LEARNER])
        if learner is None:
            return
        if learner.advance_learning(self.shards[LEARNER].world):
            self._send_baseline()
        if not learner.learning(tick):
            return
        fields = len(STAT_FIELDS)
        for s, sh in enumerate(self.shards):
            if s != LEARNER:
                ids, stats = scored_rows(sh.world)
                self.transport.send(LEARNER, PlayerEvidence(tick, s, LEARNER, pack(ids), pack(stats.ravel()), fields))
        own_ids, own_stats = scored_rows(self.shards[LEARNER].world)
        ids, stats = [own_ids], [own_stats]
        for m in self.transport.receive(LEARNER):
            ids.append(unpack(m.ids, np.int64, "PlayerEvidence.ids"))
            stats.append(unpack(m.stats, np.float64, "PlayerEvidence.stats").reshape(-1, m.fields))
        every, rows = np.concatenate(ids), np.concatenate(stats)
        world = self.shards[LEARNER].world
        learner.start_learning(world, rows[np.argsort(every, kind="stable")], tick)
        if world.resources[PopulationBaseline].job is None:  # learned at once
            self._send_baseline()

    def _send_baseline(self) -> None:
        base: PopulationBaseline = self.shards[LEARNER].world.resources[PopulationBaseline]
        for s in range(len(self.shards)):
            if s != LEARNER:
                self.transport.send(s, Baseline(base.tick, LEARNER, s, pack(base.scalars), pack(base.hit_rate),
                                                base.report))
        for s, sh in enumerate(self.shards):
            if s == LEARNER:
                continue
            for m in self.transport.receive(s):
                sh.world.resources[PopulationBaseline].adopt(unpack(m.scalars, np.float64, "Baseline.scalars"),
                                                             unpack(m.hit_rate, np.float64, "Baseline.hit_rate"),
                                                             m.tick, m.report)
