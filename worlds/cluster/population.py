"""The population's baseline on a sharded world: learned once, from every shard's players.

The anomaly score of each shard scores the players it owns, but the baseline it judges them by
(``systems.anomaly_score.population``) is the whole population's. At the end of a learning
tick every shard sends its scored players' statistics to shard 0 (``PlayerEvidence``), which
learns the baseline from all of them in id order over the ticks that follow, exactly as one
world would, and sends it to every other shard (``Baseline``) on the tick it is put in force.
No shard learns on its own.
"""

from __future__ import annotations

from systems.anomaly_score import AnomalyScore

LEARNER = 0  # the shard that learns the baseline


def scorer(shard) -> AnomalyScore | None:
    return next((s for s in shard.schedule.systems if isinstance(s, AnomalyScore)), None)


class PopulationLearning:
    def _learn_population(self, tick: int) -> None:
        """After the anomaly score of a learning tick (shard 0 went on with the baseline it is
        learning in that step, and sent it when done): every shard's scored players go to
        shard 0, which begins the next baseline from all of them."""
        learner = scorer(self.prototype)
        if learner is None or not learner.learning(tick):
            return
        for s, frames in enumerate(self.host.all("evidence", tick)):
            for dst, frame in frames:
                self.transport.post(dst, frame)
        got = self.host.each("learn", {LEARNER: (tick, self.transport.take(LEARNER))})
        for dst, frame in got[LEARNER]:
            self.transport.post(dst, frame)
        self._deliver_later()
