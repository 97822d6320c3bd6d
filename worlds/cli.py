"""The ``worlds`` command: run a world file and summarise what happened.

    python -m worlds run FILE [--ticks N] [--seed S] [--realtime] [--json]
                              [--actions STREAM.jsonl] [--record STREAM.jsonl]
                              [--shards N [--backend inprocess|ray] [--ray-address ADDR]]
                              [--hashes FILE] [--verify [HASHES]]
                              [--data DIR [--snapshot-every K] [--fsync tick|interval|off] [--acks FILE]]
    python -m worlds resume DIR [--until N] [--json] [--fsync P] [--acks FILE] [--hashes FILE]
    python -m worlds inspect DIR [--json]
    python -m worlds cheat-grid [--quick] [--json] [--seeds 1,2] [--seconds 60,120,300] [--models a,b]

Without ``--realtime`` ticks run back to back, as fast as they go; with it they are paced at
the world's tick rate, as a server would run them. ``--json`` prints exactly one JSON object
on stdout (the summary); the progress bar and any refused stream lines go to stderr.
``--shards N`` splits the world across N shards (it evolves exactly as on one); ``--hashes``
writes ``TICK HASH`` per tick; ``--verify`` steps a one-shard reference beside the run (or, given
a hashes file, compares with it) and reports the first divergence in the summary's ``shards``.
``--backend ray`` keeps each shard in a Ray actor, a process of its own (``worlds.cluster.ray_host``).
``--data DIR`` makes the run durable (``worlds.store``): journaled, snapshotted, resumable.
``cheat-grid`` measures cheat detection over honest models x cheater profiles x seeds
(``worlds.cheat_grid``).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
from tqdm import tqdm

from systems.orchestration import events_summary
from worlds.cheat_report import cheat_summary
from worlds.cluster import open_world
from worlds.loader import WorldFileError, load_world
from worlds.runtime import Simulation


_REFERENCE = "<reference>"  # --verify without a file: a one-shard reference run beside


def _percentiles(values: np.ndarray) -> dict[str, float]:
    if values.size == 0:
        return {"p50": 0.0, "p99": 0.0, "max": 0.0}
    p50, p99 = np.percentile(values, [50, 99])
    return {"p50": round(float(p50), 3), "p99": round(float(p99), 3), "max": round(float(values.max()), 3)}


def run_world(sim: Simulation, ticks: int, realtime: bool = False, progress: bool | None = None,
              on_tick=None) -> dict:
    """Step ``sim`` (a world on any number of shards) for ``ticks`` ticks and return the summary
    dict the command prints; ``on_tick(report)`` is called after each tick."""
    tick_ms, a2e = [], []
    refused: dict[str, int] = {}
    submitted = applied = 0
    per_system: dict[str, list[float]] = {}
    conflicts: dict[str, int] = {}
    first_tick_ms = None
    dt = sim.clock.dt_s
    t_begin = time.perf_counter()
    overruns = 0
    bar = tqdm(total=ticks, unit="tick", disable=(None if progress is None else not progress), file=sys.stderr,
               leave=False)
    for k in range(ticks):
        due = t_begin + k * dt
        if realtime:
            wait = due - time.perf_counter()
            if wait > 0:
                time.sleep(wait)
            elif k:
                overruns += 1
        report = sim.step(wall_start=due if realtime else None)
        if on_tick is not None:
            on_tick(report)
        if first_tick_ms is None:
            first_tick_ms = report.tick_ms
        tick_ms.append(report.tick_ms)
        a2e.append(report.action_to_effect_ms)
        submitted += report.submitted
        applied += report.applied
        for reason, count in report.refused.items():
            refused[reason] = refused.get(reason, 0) + count
        for key, v in report.conflicts.items():
            conflicts[key] = max(conflicts.get(key, 0), v) if key == "largest_group" else conflicts.get(key, 0) + v
        for name, ms in report.system_ms.items():
            per_system.setdefault(name, []).append(ms)
        bar.update(1)
    bar.close()
    wall_s = time.perf_counter() - t_begin
    ticks_arr = np.asarray(tick_ms)
    steady = ticks_arr[1:] if ticks_arr.size > 1 else ticks_arr  # the first tick compiles
    busy_s = float(steady.sum()) / 1000.0
    a2e_all = np.concatenate(a2e) if a2e else np.empty(0)
    return {
        "world": sim.defn.world.name,
        "seed": sim.seed,
        "ticks": ticks,
        "tick_rate_hz": sim.clock.tick_rate_hz,
        "entities": sim.entity_count,
        "players": int(sim.player_ids.shape[0]),
        "actions_submitted": submitted,
        "actions_applied": applied,
        "actions_refused": dict(sorted(refused.items())),
        "actions_per_second": round(submitted / busy_s, 1) if busy_s > 0 else 0.0,
        "tick_ms": _percentiles(steady),
        "first_tick_ms": round(first_tick_ms or 0.0, 3),
        "system_ms_p50": {k: round(float(np.median(v[1:] or v)), 4) for k, v in per_system.items()},
        "action_to_effect_ms": {k: v for k, v in _percentiles(a2e_all).items() if k != "max"},
        "realtime": realtime,
        "tick_overruns": overruns,
        "wall_s": round(wall_s, 3),
        "state_hash": sim.state_hash(),
        "regions": sim.regions.summary(),
        "events": events_summary(sim.world),  # None when the world has no [events] section
        "conflicts": conflicts,
        "cheat": cheat_summary(sim),
        "shards": shards_summary(sim),
    }


def shards_summary(sim) -> dict:
    """The ``shards`` section: a sharded world's own figures, or one shard's."""
    if hasattr(sim, "summary"):
        return sim.summary()
    return {"count": 1, "per_shard": [{"shard": 0, "owned": sim.world.entity_count, "ghosts": 0}], "handoffs": 0,
            "forwarded": 0, "cross_shard_actions": 0, "borrowed": 0, "bytes_per_tick": {"p50": 0.0, "p99": 0.0},
            "sync_lag_ticks": {"p50": 0, "p99": 0}, "rebalance_moves": 0, "desync": None, "backend": "inprocess"}


def _print_readable(summary: dict) -> None:
    t, a = summary["tick_ms"], summary["action_to_effect_ms"]
    print(f"world {summary['world']} (seed {summary['seed']}): {summary['ticks']} ticks at "
          f"{summary['tick_rate_hz']:g} Hz, {summary['entities']} entities, {summary['players']} players")
    print(f"actions: {summary['actions_submitted']} submitted, {summary['actions_applied']} applied, "
          f"{sum(summary['actions_refused'].values())} refused, {summary['actions_per_second']:.0f} actions/s")
    for reason, count in summary["actions_refused"].items():
        print(f"  refused {reason}: {count}")
    print(f"tick ms: p50 {t['p50']}  p99 {t['p99']}  max {t['max']}   (first tick {summary['first_tick_ms']} ms)")
    print(f"action to effect ms: p50 {a['p50']}  p99 {a['p99']}")
    for name, ms in summary["system_ms_p50"].items():
        print(f"  {name:<20} {ms:8.3f} ms")
    print(f"state hash {summary['state_hash']}")


def _run(args: argparse.Namespace) -> int:
    try:
        defn = load_world(args.file)
    except WorldFileError as e:
        for line in e.problems:
            print(line, file=sys.stderr)
        return 2
    from worlds.cluster.ray_host import ShardFailed
    from worlds.cluster.sharded import ShardingError
    from worlds.cluster.verify import HashFile, Verifier

    try:
        ray = {"backend": "ray", "ray_address": args.ray_address} if args.backend == "ray" else {}
        sim = open_world(defn, shards=args.shards, seed=args.seed, generate=args.actions is None,
                         hash_every=args.hash_every, **ray)
        check = None
        if args.verify == _REFERENCE:
            check = Verifier(sim)
        elif args.verify is not None:
            check = HashFile(args.verify)
    except ShardingError as e:
        print(f"{Path(args.file).name}: {e}", file=sys.stderr)
        return 2
    except ShardFailed as e:
        print(f"{Path(args.file).name}: {e}", file=sys.stderr)
        return 1
    except (OSError, ValueError) as e:
        print(f"{args.verify}: {e}", file=sys.stderr)
        return 2
    durable = acks = None
    if args.data is not None:
        from worlds.store import StoreError
        from worlds.store.commands import Acks, start

        try:
            durable = start(args, sim)
        except (StoreError, OSError) as e:
            print(f"{args.data}: {e}" if isinstance(e, OSError) else e, file=sys.stderr)
            return 2
        acks = Acks(args.acks)
    stream_errors: list[dict] = []
    if args.actions is not None:
        from worlds.stream import StreamReader

        try:
            with open(args.actions, encoding="utf-8") as f:
                reader = StreamReader(f)
        except OSError as e:
            print(f"{args.actions}: cannot read: {e.strerror or e}", file=sys.stderr)
            return 2
        for no, reason in reader.errors:
            print(f"{Path(args.actions).name}:{no}: {reason}", file=sys.stderr)
            stream_errors.append({"line": no, "reason": reason})
        sim.external = reader
    record = open(args.record, "w", encoding="utf-8") if args.record else None
    hashes = open(args.hashes, "w", encoding="utf-8") if args.hashes else None
    sim.recorder = record
    desync = None

    def on_tick(report) -> None:
        nonlocal desync
        if acks is not None:
            acks.after(sim, report)
        h = report.state_hash or (sim.state_hash() if hashes is not None or isinstance(check, HashFile) else None)
        if hashes is not None:
            hashes.write(f"{report.tick} {h}\n")
        if isinstance(check, HashFile):
            desync = check.check(report.tick, h)
        elif check is not None:
            desync = check.check(report)

    try:
        summary = run_world(durable or sim, args.ticks, realtime=args.realtime,
                            progress=None if not args.json else False, on_tick=on_tick)
    except ShardFailed as e:
        print(f"{Path(args.file).name}: {e}", file=sys.stderr)
        return 1
    finally:
        for f in (record, hashes, durable):
            if f is not None:
                f.close()
        if hasattr(sim, "close"):
            sim.close()
        if acks is not None:
            acks.close(durable.journal.durable_tick)
    summary["shards"]["desync"] = desync
    if durable is not None:
        summary["store"] = durable.store_summary()
    if stream_errors:
        summary["stream_errors"] = stream_errors
        summary["actions_refused"]["malformed"] = summary["actions_refused"].get("malformed", 0) + len(stream_errors)
    if args.json:
        print(json.dumps(summary))
    else:
        _print_readable(summary)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="worlds", description="Run MMO world definition files.")
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run a world file for some ticks and print a summary")
    run.add_argument("file", help="world definition file (TOML)")
    run.add_argument("--ticks", type=int, default=100, help="ticks to run (default 100)")
    run.add_argument("--seed", type=int, default=None, help="override the file's seed")
    run.add_argument("--realtime", action="store_true", help="pace ticks at the world's tick rate")
    run.add_argument("--json", action="store_true", help="print the summary as one JSON object")
    run.add_argument("--actions", metavar="STREAM", help="take player actions from a recorded JSONL stream")
    run.add_argument("--record", metavar="STREAM", help="write every action of the run to a JSONL stream")
    run.add_argument("--hash-every", type=int, default=1, metavar="N",
                     help="state hash every N ticks (0: only at the end); default 1")
    run.add_argument("--shards", type=int, default=None, metavar="N",
                     help="run on N shards (default: the file's [shards] count)")
    run.add_argument("--backend", choices=("inprocess", "ray"), default="inprocess",
                     help="where the shards run: this process (default), or each in a Ray actor")
    run.add_argument("--ray-address", metavar="ADDR", default=None,
                     help="with --backend ray: join this Ray cluster (default: start one on this machine)")
    run.add_argument("--hashes", metavar="FILE", help="write 'TICK HASH' after every tick")
    run.add_argument("--verify", nargs="?", const=_REFERENCE, default=None, metavar="HASHES",
                     help="check every tick against a one-shard reference run beside it, or a hashes file")
    run.add_argument("--data", metavar="DIR", help="make the run durable: journal and snapshots in DIR (new)")
    run.add_argument("--snapshot-every", type=int, default=100, metavar="K", help="snapshot every K ticks (100)")
    run.add_argument("--fsync", choices=("tick", "interval", "off"), default="tick",
                     help="when journal frames reach the disk (default: every tick, before its acks)")
    run.add_argument("--acks", metavar="FILE", help="append 'TICK PLAYER SEQ RESULT' per action once durable")
    run.add_argument("--records", metavar="DB", help="player records in this SQLite file (default DIR/players.db)")
    run.add_argument("--records-every", type=float, default=10.0, metavar="S",
                     help="write every player's record each S game seconds, besides on leave (10)")
    resume = sub.add_parser("resume", help="recover a durable run from its data directory and go on")
    resume.add_argument("data", metavar="DIR")
    resume.add_argument("--until", type=int, default=None, metavar="N", help="go on to tick N (default: recover only)")
    resume.add_argument("--json", action="store_true", help="print the summary as one JSON object")
    resume.add_argument("--fsync", choices=("tick", "interval", "off"), default=None, help="override the run's policy")
    resume.add_argument("--acks", metavar="FILE", help="append 'TICK PLAYER SEQ RESULT' per action once durable")
    resume.add_argument("--hashes", metavar="FILE", help="append 'TICK HASH' after every tick")
    insp = sub.add_parser("inspect", help="list a data directory's snapshots and its journal's extent and health")
    insp.add_argument("data", metavar="DIR")
    insp.add_argument("--json", action="store_true", help="print the listing as one JSON object")
    check = sub.add_parser("check", help="validate world files and report every problem")
    check.add_argument("files", nargs="+")
    grid = sub.add_parser("cheat-grid", help="cheat detection over honest models x cheater profiles x seeds")
    grid.add_argument("--quick", action="store_true", help="the small grid (few hundred players, 60 s, one seed)")
    grid.add_argument("--json", action="store_true", help="print the grid as one JSON object")
    grid.add_argument("--seeds", metavar="S,S", help="seeds (default: the grid file's)")
    grid.add_argument("--seconds", metavar="T,T", help="checkpoints in game seconds; the run lasts the longest")
    grid.add_argument("--models", metavar="M,M", help="only these honest models")
    grid.add_argument("--dir", metavar="DIR", help="the grid's directory (default worlds/defs/grid)")
    args = parser.parse_args(argv)
    if args.command == "cheat-grid":
        from worlds.cheat_grid import main as grid_main

        return grid_main(args)
    if args.command == "check":
        status = 0
        for f in args.files:
            try:
                load_world(f)
                print(f"{Path(f).name}: ok")
            except WorldFileError as e:
                status = 2
                for line in e.problems:
                    print(line, file=sys.stderr)
        return status
    if args.command in ("resume", "inspect"):
        from worlds.store.commands import inspect_command, resume_command

        return resume_command(args) if args.command == "resume" else inspect_command(args)
    if args.ticks < 0:
        parser.error("--ticks must be >= 0")
    if args.shards is not None and not 1 <= args.shards <= 64:
        parser.error("--shards must be in 1..64")
    if args.backend == "ray" and args.data is not None:
        parser.error("--data with --backend ray: durable shards in Ray actors are not built yet")
    if args.ray_address is not None and args.backend != "ray":
        parser.error("--ray-address needs --backend ray")
    return _run(args)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
