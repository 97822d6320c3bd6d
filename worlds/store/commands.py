"""The command line of durable state: ``worlds run --data``'s glue, ``worlds resume`` and
``worlds inspect``. A bad or foreign data directory exits with status 2 and one line."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

from systems.actions import REFUSAL_NAMES, ActionBatch
from worlds.store.durable import DataDir, DurableRun, inspect, resume
from worlds.store.files import StoreError
from worlds.store.players import join


class Acks:
    """Acknowledgements as a client would get them: ``TICK PLAYER SEQ RESULT`` per action, written
    (and flushed) only once the tick's journal frame is durable."""

    def __init__(self, path: str | None) -> None:
        self._f = open(path, "a", encoding="utf-8") if path else None
        self._pending: list[tuple[int, np.ndarray, np.ndarray, np.ndarray]] = []

    def after(self, sim, report) -> None:
        if self._f is None:
            return
        b: ActionBatch = sim.last_batch
        self._pending.append((report.tick, b.actor.copy(), b.seq.copy(), b.status.copy()))
        self._flush(report.durable_tick if report.durable_tick is not None else report.tick)

    def _flush(self, durable: int) -> None:
        ready = [p for p in self._pending if p[0] <= durable]
        self._pending = [p for p in self._pending if p[0] > durable]
        for tick, actor, seq, status in ready:
            self._f.writelines(f"{tick} {a} {s} {REFUSAL_NAMES.get(int(st), 'applied') if st else 'applied'}\n"
                               for a, s, st in zip(actor.tolist(), seq.tolist(), status.tolist()))
        if ready:
            self._f.flush()

    def close(self, durable_tick: int | None = None) -> None:
        """``durable_tick``: the journal's, once closed (what it made durable last is acknowledged)."""
        if self._f is not None:
            if durable_tick is not None:
                self._flush(durable_tick)
            self._f.close()


def start(args, sim) -> DurableRun:
    """``worlds run FILE --data DIR``: a new data directory, and the run journaled into it, its
    players' records in ``--records`` (default ``DIR/players.db``)."""
    records = args.records or str(Path(args.data) / "players.db")
    data = DataDir.create(Path(args.data), Path(args.file), seed=sim.seed, generate=sim.generator is not None,
                          actions=args.actions, snapshot_every=args.snapshot_every, fsync=args.fsync,
                          records=records, records_every_s=args.records_every,
                          shards=len(sim.shards) if hasattr(sim, "shards") else 1)
    if Path(records).exists():  # returning players take up their records as they join
        joined = join(sim, Path(records))
        if joined:
            print(f"{records}: {joined} returning players took up their records", file=sys.stderr)
    return DurableRun(sim, data)


def resume_command(args) -> int:
    from worlds.cli import run_world

    try:
        run, rec = resume(Path(args.data), fsync=args.fsync)
    except StoreError as e:
        print(e, file=sys.stderr)
        return 2
    if rec.torn is not None:
        print(f"{run.data.journal}: dropped a torn last frame at offset {rec.torn['offset']} ({rec.torn['reason']})",
              file=sys.stderr)
    for s in rec.snapshots_skipped:
        print(f"skipped snapshot {s['snapshot']}: {s['reason']}", file=sys.stderr)
    until = run.tick if args.until is None else args.until
    acks = Acks(args.acks)
    hashes = open(args.hashes, "a", encoding="utf-8") if args.hashes else None

    def on_tick(report) -> None:
        acks.after(run, report)
        if hashes is not None:
            hashes.write(f"{report.tick} {report.state_hash or run.state_hash()}\n")

    try:
        summary = run_world(run, max(until - run.tick, 0), progress=None if not args.json else False,
                            on_tick=on_tick)
    finally:
        run.close()
        acks.close(run.journal.durable_tick)
        if hashes is not None:
            hashes.close()
    summary.update(rec.summary())
    summary["tick"] = run.tick
    summary["store"] = run.store_summary()
    if args.json:
        print(json.dumps(summary))
    else:
        print(f"resumed {summary['world']} from tick {rec.resumed_from_tick}, replayed {rec.replayed_ticks} ticks "
              f"in {rec.recovery_ms:.0f} ms; now at tick {run.tick}, state hash {summary['state_hash']}")
    return 0


def inspect_command(args) -> int:
    try:
        report = inspect(Path(args.data))
    except StoreError as e:
        print(e, file=sys.stderr)
        return 2
    healthy = report["journal"].get("health") == "ok" and all(s["health"] == "ok" for s in report["snapshots"])
    if args.json:
        print(json.dumps(report))
    else:
        print(f"{report['data']}: world {report['world']}, seed {report['seed']}, fsync {report['fsync']}, "
              f"a snapshot every {report['snapshot_every']} ticks")
        for s in report["snapshots"]:
            print(f"  snapshot tick {s['tick']:>9}  {s['bytes']:>12,} bytes  {s.get('entities', '?'):>9} entities  "
                  f"{s['health']}")
        j = report["journal"]
        print(f"  journal ticks {j.get('first_tick')}..{j.get('last_tick')}  {j.get('frames', 0)} frames  "
              f"{j.get('bytes', 0):,} bytes  {j['health']}")
    return 0 if healthy else 1
