"""Tick step 1: seal the actions received since the last tick and refuse malformed ones.

The server loop (or the record reader) has already turned wire records into columns; what is
left to catch here is what columns can still hold: an unknown kind, a non-finite time or
coordinate, a negative sequence number. Those get ``malformed`` and take no further part.
"""

from __future__ import annotations

import numpy as np

from ecs import Phase, System
from systems.actions import ActionBatch, ActionKind, Refusal


class Ingest(System):
    phase = Phase.INGEST
    reads = ()
    writes = (ActionBatch,)
    reads_others = ()

    def run(self, world, ctx) -> None:
        b: ActionBatch = world.resources[ActionBatch]
        bad = (b.kind < ActionKind.MOVE) | (b.kind > ActionKind.USE) | (b.seq < 0) | (b.actor == 0)
        bad |= ~np.isfinite(b.client_time_ms) | ~np.isfinite(b.recv_time_ms) | ~np.isfinite(b.value)
        bad |= ~(np.isfinite(b.x) & np.isfinite(b.y))
        b.refuse(bad, Refusal.MALFORMED)
        ctx.stats["actions_submitted"] = b.n
