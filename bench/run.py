"""The benchmark report, in one process: ``python bench/run.py [--quick] [--json]``.

One process so that every comparison runs its baselines next to ours on the same machine
state (see ``bench/timing.py``). Prints the Markdown table (or, with ``--json``, exactly one
JSON object) on stdout; progress goes to stderr. Always writes ``bench/out/report.json``,
``report.md``, ``scaling.png`` and ``systems.png``. ``--quick`` (under three minutes on two
cores) runs fewer rounds, sizes and seconds; what it leaves out is reported as not run.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

# Run as a script (``make bench``): put the repository root first so ``bench``, ``ecs``,
# ``systems`` and ``worlds`` import from this checkout.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import figures, report, sharding, store  # noqa: E402
from bench.timing import progress  # noqa: E402

OUT = Path(__file__).resolve().parent / "out"

PLANS = {
    "quick": {
        "tick": {"ticks": 30, "warmup": 10},
        "state_hash": {"rounds": 20, "warmup": 5},
        "sharded": {"ticks": 10, "warmup": 3, "counts": (1, 2, 4)},
        "store": {"ticks": 30, "warmup": 5, "snapshot_every": 10, "recover_ticks": 200},
        "mgp": {"sizes": (10_000, 100_000), "rounds": {10_000: 7, 100_000: 5}, "esper_sizes": (10_000,)},
        "actions": {"levels": (2_500, 25_000, 250_000), "rounds": 3, "warmup": 1},
        "scaling": {"players": (1_000, 2_500, 5_000, 10_000), "ticks": 8, "warmup": 4},
        "realtime_s": 10,
        "tick_1m": None,
    },
    "full": {
        "tick": {"ticks": 100, "warmup": 20},
        "state_hash": {"rounds": 50, "warmup": 5},
        "sharded": {"ticks": 30, "warmup": 5, "counts": (1, 2, 4, 8)},
        "store": {"ticks": 100, "warmup": 10, "snapshot_every": 20, "recover_ticks": 1000},
        "mgp": {"sizes": (10_000, 100_000, 1_000_000), "rounds": {10_000: 15, 100_000: 9, 1_000_000: 5},
                "esper_sizes": (10_000, 100_000)},
        "actions": {"levels": (2_500, 25_000, 250_000), "rounds": 10, "warmup": 2},
        "scaling": {"players": (1_000, 2_500, 5_000, 10_000), "ticks": 30, "warmup": 10},
        "realtime_s": 60,
        "tick_1m": {"ticks": 30, "warmup": 10},
    },
}


def _machine() -> dict:
    model = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            model = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    import esper
    import numba
    import numpy
    import scipy

    return {"machine": model, "cores": os.cpu_count(), "python": platform.python_version(),
            "numpy": numpy.__version__, "numba": numba.__version__, "scipy": scipy.__version__,
            "esper": esper.version}


def measure(plan: dict) -> dict:
    r: dict = {"skipped": {}}
    esper_sizes = plan["mgp"]["esper_sizes"]
    not_esper = [n for n in plan["mgp"]["sizes"] if n not in esper_sizes]
    if not_esper:
        r["skipped"]["esper"] = (f"esper move+grid+pairs is not run at {', '.join(f'{n:,}' for n in not_esper)} "
                                 "points in this mode (pure Python: about 2 s per round at 100k, 30 s at 1M)")
    r["tick"] = figures.continent_tick(**plan["tick"])
    r["state_hash"] = figures.state_hash(**plan["state_hash"])
    r["sharded"] = sharding.sharded_continent(**plan["sharded"])
    r["store"] = store.durable_continent(**plan["store"])
    r["mgp"] = figures.mgp(**plan["mgp"])
    r["actions"] = figures.actions(**plan["actions"])
    r["scaling"] = figures.scaling(**plan["scaling"])
    if plan["tick_1m"]:
        r["tick_1m"] = figures.tick_1m(**plan["tick_1m"])
    else:
        r["tick_1m"] = None
        r["skipped"]["tick_1m"] = "the 1M-entity tick runs in the full run only (it takes about a minute)"
    r["realtime"] = figures.realtime(plan["realtime_s"])
    r["first_tick"] = figures.first_tick()
    return r


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench/run.py", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer rounds, sizes and seconds (< 3 min)")
    parser.add_argument("--json", action="store_true", help="print the report as one JSON object")
    args = parser.parse_args(argv)
    mode = "quick" if args.quick else "full"
    started = time.perf_counter()
    progress(f"{mode} run")
    results = measure(PLANS[mode])
    head = report.headline(results)
    bars = report.judge(head, results)
    meta = {
        "command": "python bench/run.py" + (" --quick" if args.quick else "") + (" --json" if args.json else ""),
        "mode": mode, "when": time.strftime("%Y-%m-%d %H:%M %Z"),
        "duration_s": round(time.perf_counter() - started, 1), **_machine(),
    }
    OUT.mkdir(parents=True, exist_ok=True)
    charts = report.charts(results, OUT)
    doc = {**head, "bars": bars, "meta": meta, "charts": [str(p.relative_to(OUT.parent.parent)) for p in charts],
           **results}
    md = report.markdown(results, head, bars, meta)
    (OUT / "report.json").write_text(json.dumps(doc, indent=1) + "\n", encoding="utf-8")
    (OUT / "report.md").write_text(md, encoding="utf-8")
    progress(f"done in {meta['duration_s']:.0f} s; wrote {OUT}/report.json, report.md, "
             + ", ".join(p.name for p in charts))
    print(json.dumps(doc) if args.json else md, end="\n" if args.json else "")
    return 0


if __name__ == "__main__":
    sys.exit(main())
