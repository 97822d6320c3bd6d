"""Recorded action streams: one JSON object per line, read and written with msgspec.

A record is what a client sent plus when the server took it in::

    {"tick": 12, "player": 4294967297, "seq": 3, "kind": "melee", "client_time_ms": 612.5,
     "recv_time_ms": 640.1, "target": 4294967300, "x": 10.5, "y": -3.0, "value": 0.0}

``tick`` is the tick that ingested the action; ``target`` is 0 or absent for none; ``x``, ``y``
(the client's position claim) and ``value`` (trade gold) default to 0; ``recv_time_ms``
defaults to the start of ``tick``. ``--record`` writes every action of a run this way, and
``--actions`` replays such a file to the same state hash, tick by tick. A malformed line is
refused with its line number and reason; the others go on.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator
from typing import IO

import msgspec
import numpy as np

from systems.actions import KIND_NAMES, ActionBatch


class ActionRecord(msgspec.Struct, forbid_unknown_fields=True):
    tick: int
    player: int
    seq: int
    kind: str
    client_time_ms: float
    recv_time_ms: float | None = None
    target: int = 0
    x: float = 0.0
    y: float = 0.0
    value: float = 0.0


_decoder = msgspec.json.Decoder(ActionRecord)
_encoder = msgspec.json.Encoder()
_NAMES_BY_KIND = {v: k for k, v in KIND_NAMES.items()}


class StreamReader:
    """Reads a stream file; ``batch_for(tick, dt_ms)`` gives that tick's actions as columns.

    ``errors`` collects ``(line number, reason)`` for each line that was refused.
    """

    def __init__(self, lines: Iterator[str] | IO[str]) -> None:
        self.errors: list[tuple[int, str]] = []
        self._by_tick: dict[int, list[ActionRecord]] = defaultdict(list)
        for no, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                rec = _decoder.decode(line)
            except msgspec.ValidationError as e:
                self.errors.append((no, str(e)))
                continue
            except msgspec.DecodeError as e:
                self.errors.append((no, f"not valid JSON: {e}"))
                continue
            reason = _check(rec)
            if reason:
                self.errors.append((no, reason))
                continue
            self._by_tick[rec.tick].append(rec)
        self.last_tick = max(self._by_tick, default=-1)

    def batch_for(self, tick: int, dt_ms: float) -> ActionBatch:
        recs = self._by_tick.pop(tick, [])
        if not recs:
            return ActionBatch.empty()
        start = tick * dt_ms
        return ActionBatch(
            actor=np.array([r.player for r in recs], np.int64),
            seq=np.array([r.seq for r in recs], np.int64),
            client_time_ms=np.array([r.client_time_ms for r in recs]),
            kind=np.array([KIND_NAMES[r.kind] for r in recs], np.int8),
            target=np.array([r.target for r in recs], np.int64),
            x=np.array([r.x for r in recs]),
            y=np.array([r.y for r in recs]),
            value=np.array([r.value for r in recs]),
            recv_time_ms=np.array([start if r.recv_time_ms is None else r.recv_time_ms for r in recs]),
        )


def _check(rec: ActionRecord) -> str | None:
    if rec.tick < 0:
        return f"tick: expected an integer >= 0, got {rec.tick}"
    if rec.kind not in KIND_NAMES:
        return f"kind: expected one of {sorted(KIND_NAMES)}, got {rec.kind!r}"
    if not -(2**63) <= rec.player < 2**63 or rec.player == 0:
        return f"player: expected a non-zero 64-bit entity id, got {rec.player}"
    if not -(2**63) <= rec.target < 2**63:
        return f"target: expected a 64-bit entity id or 0, got {rec.target}"
    if rec.seq < 0:
        return f"seq: expected an integer >= 0, got {rec.seq}"
    for name in ("client_time_ms", "x", "y", "value"):
        v = getattr(rec, name)
        if v != v or v in (float("inf"), float("-inf")):
            return f"{name}: expected a finite number, got {v}"
    return None


def write_batch(out: IO[str], tick: int, batch: ActionBatch) -> None:
    """Append one line per action of ``batch`` (ingested at ``tick``) to ``out``."""
    cols = [batch.actor.tolist(), batch.seq.tolist(), batch.kind.tolist(), batch.client_time_ms.tolist(),
            batch.recv_time_ms.tolist(), batch.target.tolist(), batch.x.tolist(), batch.y.tolist(),
            batch.value.tolist()]
    for actor, seq, kind, ct, rt, tgt, x, y, v in zip(*cols):
        rec = ActionRecord(tick=tick, player=actor, seq=seq, kind=_NAMES_BY_KIND.get(kind, str(kind)),
                           client_time_ms=ct, recv_time_ms=rt, target=tgt, x=x, y=y, value=v)
        out.write(_encoder.encode(rec).decode())
        out.write("\n")
