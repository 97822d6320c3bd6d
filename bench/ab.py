"""A/B two checkouts in lockstep: a bench load stepped by two processes in turns, one round each
(the order swapping every round), so that both see the same spells of a noisy machine. Single
runs of ``bench/run.py`` drift by 30-50 % within minutes on a shared VM; in lockstep, two
processes of the same code usually differ by up to ~10 % (where their memory landed), and in a
bad spell by up to ~30 %: repeat a comparison, and trust only differences beyond that.

    python bench/ab.py OTHER_CHECKOUT [--rounds 30] [--load actions|continent]

OTHER_CHECKOUT is another tree of this project (``git worktree add /tmp/base REV``); each side
imports its own code. The ``actions`` load (the default) is the "actions" figure's: per side,
the medians of the cheat checks (validation + anomaly score) at 2,500 actions per tick and of
the action path (ingest to applied) at each level. The ``continent`` load is the continent
tick's (its built-in clients): the whole tick and the cheat checks.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import numpy as np

LEVELS = (2_500, 25_000, 250_000)
HERE = Path(__file__).resolve().parent.parent
COLUMNS = {"actions": (f"checks at {LEVELS[0]:,}", *(f"path at {n:,}" for n in LEVELS)),
           "continent": ("tick", "checks")}


def worker(load: str) -> None:
    """One side: a round per line on stdin; prints what ``COLUMNS[load]`` names, in ms."""
    sys.path.insert(0, str(Path.cwd()))
    from bench.action_load import ActionLoad
    from bench.figures import ACTION_PATH, CHEAT_CHECKS
    from bench.scenes import continent, unthrottled
    from worlds.runtime import Simulation

    if load == "continent":
        sim = Simulation(continent())
        for _ in range(20):
            sim.step()
        print("ready", flush=True)
        for _ in sys.stdin:
            rep = sim.step()
            print(f"{rep.tick_ms:.4f} {sum(rep.system_ms.get(k, 0.0) for k in CHEAT_CHECKS):.4f}", flush=True)
        return
    sim = Simulation(unthrottled(), generate=False)
    load = ActionLoad(sim)
    for _ in range(5):
        sim.step()
    print("ready", flush=True)
    for _ in sys.stdin:
        out = []
        for n in LEVELS:
            load.restore_health()
            sim.submit(load.batch(n))
            ms = sim.step().system_ms
            if n == LEVELS[0]:
                out.append(sum(ms.get(k, 0.0) for k in CHEAT_CHECKS))
            out.append(sum(ms.get(k, 0.0) for k in ACTION_PATH))
        print(" ".join(f"{v:.4f}" for v in out), flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench/ab.py", description=__doc__.splitlines()[0])
    parser.add_argument("other", type=Path, help="the other checkout")
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--load", choices=tuple(COLUMNS), default="actions")
    args = parser.parse_args(argv)
    sides = [HERE, args.other.resolve()]
    procs = [subprocess.Popen([sys.executable, str(HERE / "bench" / "ab.py"), "--worker", args.load], cwd=side,
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True) for side in sides]
    for p in procs:
        if not p.stdout.readline().startswith("ready"):
            raise SystemExit("a side did not start")
    rows: list[list[list[float]]] = [[], []]
    for r in range(args.warmup + args.rounds):
        for k in ((0, 1) if r % 2 == 0 else (1, 0)):
            procs[k].stdin.write("go\n")
            procs[k].stdin.flush()
            values = [float(v) for v in procs[k].stdout.readline().split()]
            if r >= args.warmup:
                rows[k].append(values)
    for p in procs:
        p.stdin.close()
        p.wait()
    print(f"lockstep A/B, {args.load} load, {args.rounds} rounds, medians in ms")
    print("| side | " + " | ".join(COLUMNS[args.load]) + " |")
    print("|---|" + "---|" * len(COLUMNS[args.load]))
    for side, values in zip(sides, rows):
        med = np.median(np.array(values), axis=0)
        print(f"| {side} | " + " | ".join(f"{v:.3f}" for v in med) + " |")
    return 0


if __name__ == "__main__":
    if sys.argv[1:2] == ["--worker"]:
        worker(sys.argv[2])
    else:
        raise SystemExit(main())
