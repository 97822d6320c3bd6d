"""Tick step 10: what the tick did, in numbers the server loop and the summary read."""

from __future__ import annotations

import numpy as np

from ecs import Phase, System
from systems.actions import ActionBatch


class Telemetry(System):
    phase = Phase.MEASURE
    reads = (ActionBatch,)
    writes = ()
    reads_others = ()

    def run(self, world, ctx) -> None:
        b: ActionBatch = world.resources[ActionBatch]
        ctx.stats["actions_applied"] = int(np.count_nonzero(b.status == 0))
        ctx.stats["actions_refused"] = b.refusal_counts()
        ctx.stats["entities"] = world.entity_count
