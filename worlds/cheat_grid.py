"""The cheat-detection evaluation grid: honest models x cheater profiles x seeds.

Contract: ``worlds/defs/grid/grid.toml`` names a base world (every cheater profile in it, each a
``[[cheaters]]`` entry with a ``label``), the honest models (files beside it whose ``[client]``
and ``[network]`` tables are laid over every player population's), the seeds and the
checkpoints (game seconds). ``run_grid`` plays one cell per (model, seed) with the built-in
client simulation and returns, per cell: honest players, false positives (honest players
flagged, any flag) at each checkpoint and by flag, honest refusals by reason, and per profile
the recall at each checkpoint (a cheater counts once a flag that speaks for its kind, as
``worlds.cheat_report.KIND_FLAGS`` says, is raised) and the median time to detect; each cell
is checked against the grid's bars. The grid measures; it asserts nothing.

    python -m worlds cheat-grid [--quick] [--json] [--seeds 1,2] [--seconds 60,120,300] [--models a,b]
"""

from __future__ import annotations

import copy
import json
import sys
import time
import tomllib
from pathlib import Path
from typing import Annotated

import numpy as np
from pydantic import Field, ValidationError

from systems.anomaly_score import flag_names
from systems.columns import gather
from systems.components import CheatStats
from worlds.cheat_report import KIND_FLAGS
from worlds.cheaters import KIND_CODE
from worlds.loader import WorldFileError, parse_world
from worlds.schema_base import Name, PositiveFloat, Strict

GRID_DIR = Path(__file__).parent / "defs" / "grid"
Seconds = Annotated[list[PositiveFloat], Field(min_length=1)]
Seeds = Annotated[list[Annotated[int, Field(ge=0)]], Field(min_length=1)]


class QuickGrid(Strict):
    scale: Annotated[float, Field(gt=0, le=1)] = 0.25
    min_cheaters: Annotated[int, Field(ge=1)] = 2
    seeds: Seeds = [1]
    seconds: Seconds = [60.0]


class Bars(Strict):
    at_s: PositiveFloat = 60.0
    false_positive_rate: Annotated[float, Field(ge=0, le=1)] = 0.001
    recall: Annotated[float, Field(ge=0, le=1)] = 0.9
    profiles: list[Name] = []
    refusals: list[str] = []


class GridFile(Strict):
    base: str
    models: Annotated[list[Name], Field(min_length=1)]
    seeds: Seeds = [1, 2]
    seconds: Seconds = [60.0, 120.0, 300.0]
    quick: QuickGrid = QuickGrid()
    bars: Bars = Bars()


class ModelInfo(Strict):
    about: str = ""


class ModelFile(Strict):
    """An honest model: tables laid over every player population (validated in the world)."""

    model: ModelInfo = ModelInfo()
    client: dict = {}
    network: dict = {}


def _read_toml(path: Path) -> dict:
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as e:
        raise WorldFileError(path.name, [f"{path.name}: cannot read file: {e.strerror or e}"]) from None
    except tomllib.TOMLDecodeError as e:
        raise WorldFileError(path.name, [f"{path.name}: invalid TOML: {e}"]) from None


def _validated(cls, data: dict, name: str):
    try:
        return cls.model_validate(data)
    except ValidationError as e:
        lines = [f"{name}: {'.'.join(map(str, err['loc']))}: {err['msg']}" for err in e.errors()]
        raise WorldFileError(name, lines) from None


def load_grid(directory: Path = GRID_DIR) -> tuple[GridFile, dict, dict[str, ModelFile]]:
    """The grid file, its base world's raw TOML data and its models by name."""
    directory = Path(directory)
    grid = _validated(GridFile, _read_toml(directory / "grid.toml"), "grid.toml")
    base = _read_toml(directory / grid.base)
    models = {m: _validated(ModelFile, _read_toml(directory / f"{m}.toml"), f"{m}.toml") for m in grid.models}
    return grid, base, models


def compose(base: dict, model: ModelFile, name: str, scale: float = 1.0, min_cheaters: int = 1):
    """The world of one honest model: ``base`` with the model's tables over every player
    population's, populations scaled by ``scale`` (each profile keeps ``min_cheaters``)."""
    data = copy.deepcopy(base)
    for pop in data.get("populations", []):
        if pop.get("kind") == "players":
            for section in ("client", "network"):
                over = getattr(model, section)
                if over:
                    pop[section] = {**pop.get(section, {}), **over}
        if scale != 1.0:
            pop["count"] = max(1, round(pop.get("count", 0) * scale))
    if scale != 1.0:
        counts = {p["name"]: p["count"] for p in data.get("populations", [])}
        drawn: dict[str, int] = {}
        for c in data.get("cheaters", []):
            want = max(min_cheaters, round(c["count"] * scale))
            room = counts.get(c["population"], 0) - drawn.get(c["population"], 0)
            c["count"] = max(0, min(want, room))
            drawn[c["population"]] = drawn.get(c["population"], 0) + c["count"]
    data["world"]["name"] = f"{data['world']['name']}-{name}"[:64]
    return parse_world(data, f"{name}.toml")


def _key(s: float) -> str:
    return f"{s:g}"


def run_cell(defn, seed: int, seconds: list[float], bars: Bars, model: str = "", progress=None) -> dict:
    """Play one cell to the last checkpoint and measure it (see the module docstring)."""
    from worlds.runtime import Simulation

    t0 = time.perf_counter()
    sim = Simulation(defn, seed=seed, hash_every=0)
    hz = sim.clock.tick_rate_hz
    checks = sorted({round(s * hz): s for s in seconds}.items())
    ticks = checks[-1][0]
    ids = sim.player_ids
    cheat = sim.generator.cheat
    honest = cheat.kind == 0
    rows = np.flatnonzero(~honest)
    kind_name = {code: name for name, code in KIND_CODE.items()}
    speaks = np.array([KIND_FLAGS[kind_name[int(k)]] for k in cheat.kind[rows]], np.int64)
    found = np.full(rows.size, -1, np.int64)  # the tick after which each cheater's kind was flagged
    at: dict[str, dict] = {}
    for t in range(ticks):
        sim.step()
        todo = np.flatnonzero(found < 0)
        if todo.size:
            f = gather(sim.world, ids[rows[todo]], CheatStats, "flags")[0].astype(np.int64)
            found[todo[(f & speaks[todo]) != 0]] = t + 1
        for tick, s in checks:
            if tick == t + 1:
                flags = gather(sim.world, ids[honest], CheatStats, "flags")[0].astype(np.int64)
                by_flag: dict[str, int] = {}
                for f in flags[flags != 0].tolist():
                    for name in flag_names(int(f)):
                        by_flag[name] = by_flag.get(name, 0) + 1
                n_fp = int(np.count_nonzero(flags))
                at[_key(s)] = {"count": n_fp, "rate": round(n_fp / max(int(honest.sum()), 1), 6),
                               "by_flag": dict(sorted(by_flag.items()))}
        if progress is not None:
            progress(t + 1, ticks)
    refused = dict(sorted(sim.truth.honest_refused.items()))
    profiles = []
    for e, c in enumerate(defn.cheaters):
        mine = cheat.entry[rows] == e
        n = int(mine.sum())
        when = found[mine]
        detected = when[when >= 0] / hz
        profiles.append({
            "label": c.label or c.kind, "kind": c.kind, "population": c.population, "count": n,
            "recall": {_key(s): round(float(np.count_nonzero((when >= 0) & (when <= tick))) / n, 4) if n else None
                       for tick, s in checks},
            "detected": int(detected.size),
            "median_detect_s": round(float(np.median(detected)), 2) if detected.size else None,
        })
    cell = {
        "model": model, "seed": seed, "seconds": checks[-1][1], "ticks": ticks,
        "players": int(ids.size), "honest": int(honest.sum()), "cheaters": int(rows.size),
        "false_positives": at,
        "honest_refused": refused,
        "honest_refused_movement_timing": {k: v for k, v in refused.items() if k in bars.refusals},
        "impossible_actions": sim.truth.impossible,
        "impossible_refused": sim.truth.impossible - sim.truth.impossible_accepted,
        "profiles": profiles,
        "wall_s": round(time.perf_counter() - t0, 2),
    }
    cell["bars"] = check_bars(cell, bars)
    return cell


def check_bars(cell: dict, bars: Bars) -> dict:
    """Which of the grid's bars a cell fails (a bar whose checkpoint was not reached is
    reported unchecked)."""
    failures, unchecked = [], []
    at = _key(bars.at_s)
    fp = cell["false_positives"].get(at)
    if fp is None:
        unchecked.append(f"false positives at {at} s")
    elif fp["rate"] > bars.false_positive_rate:
        failures.append(f"false positives {fp['count']} ({100 * fp['rate']:.2f} %) at {at} s > "
                        f"{100 * bars.false_positive_rate:g} %")
    mt = cell["honest_refused_movement_timing"]
    if mt:
        failures.append("honest refusals: " + ", ".join(f"{k} {v}" for k, v in mt.items()))
    for p in cell["profiles"]:
        if p["label"] not in bars.profiles or not p["count"]:
            continue
        r = p["recall"].get(at)
        if r is None:
            unchecked.append(f"{p['label']} recall at {at} s")
        elif r < bars.recall:
            failures.append(f"{p['label']} recall {r:.2f} at {at} s < {bars.recall:g}")
    return {"passed": not failures, "failures": failures, "unchecked": unchecked}


def run_grid(quick: bool = False, seeds: list[int] | None = None, seconds: list[float] | None = None,
             models: list[str] | None = None, directory: Path = GRID_DIR, progress: bool = False) -> dict:
    """Every cell of the grid (``quick``: the small one); returns the JSON-ready result."""
    grid, base, model_files = load_grid(directory)
    q = grid.quick
    seeds = seeds or (q.seeds if quick else grid.seeds)
    seconds = sorted(seconds or (q.seconds if quick else grid.seconds))
    names = models or grid.models
    unknown = [m for m in names if m not in model_files]
    if unknown:
        raise WorldFileError("grid.toml", [f"grid.toml: unknown model(s) {', '.join(unknown)} "
                                           f"(known: {', '.join(model_files)})"])
    cells = []
    for name in names:
        defn = compose(base, model_files[name], name, q.scale if quick else 1.0, q.min_cheaters if quick else 1)
        for seed in seeds:
            bar = None
            if progress:
                def bar(t, total, name=name, seed=seed):
                    if t % 200 == 0 or t == total:
                        print(f"\r  {name} seed {seed}: {t}/{total} ticks", end="" if t < total else "\n",
                              file=sys.stderr, flush=True)
            cells.append(run_cell(defn, seed, seconds, grid.bars, name, bar))
    return {
        "quick": quick, "models": {m: model_files[m].model.about for m in names}, "seeds": seeds,
        "seconds": seconds, "bars": grid.bars.model_dump(),
        "cells": cells, "passed": all(c["bars"]["passed"] for c in cells),
        "wall_s": round(sum(c["wall_s"] for c in cells), 2),
    }


def _pct(rate: float) -> str:
    return f"{100 * rate:.2f} %"


def format_table(result: dict) -> str:
    """The grid as a human-readable table: a block per cell, then one line per cell."""
    secs = [_key(s) for s in result["seconds"]]
    bars = result["bars"]
    out = [f"cheat grid{' (quick)' if result['quick'] else ''}: {len(result['models'])} honest model(s) x "
           f"{len(result['seeds'])} seed(s), checkpoints {', '.join(secs)} s; bars at {bars['at_s']:g} s: "
           f"FP <= {100 * bars['false_positive_rate']:g} %, no honest movement/timing refusals, "
           f"recall >= {bars['recall']:g} for {', '.join(bars['profiles'])}"]
    for name, about in result["models"].items():
        out.append(f"  {name}: {about}")
    for c in result["cells"]:
        out.append("")
        out.append(f"== {c['model']} / seed {c['seed']}: {c['players']} players ({c['honest']} honest, "
                   f"{c['cheaters']} cheaters), {c['ticks']} ticks, {c['wall_s']:.1f} s wall")
        fps = "  ".join(f"{s} s {v['count']} ({_pct(v['rate'])})" for s, v in c["false_positives"].items())
        out.append(f"  honest flagged: {fps}")
        last = c["false_positives"][secs[-1]]
        if last["by_flag"]:
            out.append(f"    by flag at {secs[-1]} s: " + ", ".join(f"{k} {v}" for k, v in last["by_flag"].items()))
        refused = ", ".join(f"{k} {v}" for k, v in c["honest_refused"].items()) or "none"
        out.append(f"  honest refused: {refused}")
        mt = c["honest_refused_movement_timing"]
        out.append(f"    for movement or timing: {', '.join(f'{k} {v}' for k, v in mt.items()) or 'none'}")
        head = f"  {'profile':<22}{'kind':<11}{'n':>4}" + "".join(f"{'r@' + s:>8}" for s in secs)
        out.append(head + f"{'median s':>10}  bar")
        for p in c["profiles"]:
            rec = "".join(f"{'-' if p['recall'][s] is None else format(p['recall'][s], '.2f'):>8}" for s in secs)
            med = "-" if p["median_detect_s"] is None else f"{p['median_detect_s']:.1f}"
            held = p["label"] in bars["profiles"]
            r = p["recall"].get(_key(bars["at_s"]))
            mark = ("ok" if r is not None and r >= bars["recall"] else "FAIL") if held else "(reported)"
            out.append(f"  {p['label']:<22}{p['kind']:<11}{p['count']:>4}{rec}{med:>10}  {mark}")
        out.append(f"  bars: {'pass' if c['bars']['passed'] else 'FAIL: ' + '; '.join(c['bars']['failures'])}")
    out.append("")
    out.append(f"{'model':<24}{'seed':>5}{'FP@' + _key(bars['at_s']):>10}{'mov/tim':>9}  failing")
    for c in result["cells"]:
        fp = c["false_positives"].get(_key(bars["at_s"]))
        mt = sum(c["honest_refused_movement_timing"].values())
        failing = [p["label"] for p in c["profiles"] if p["label"] in bars["profiles"]
                   and (p["recall"].get(_key(bars["at_s"])) or 0.0) < bars["recall"]]
        fps = "-" if fp is None else _pct(fp["rate"])
        out.append(f"{c['model']:<24}{c['seed']:>5}{fps:>10}{mt:>9}  {', '.join(failing) or '-'}")
    out.append(f"all bars {'pass' if result['passed'] else 'NOT met'}; {result['wall_s']:.0f} s of cells")
    return "\n".join(out)


def _numbers(text: str, kind):
    return [kind(x) for x in text.split(",") if x.strip()]


def main(args) -> int:
    """The ``cheat-grid`` subcommand (``args`` from ``worlds.cli``)."""
    try:
        seeds = _numbers(args.seeds, int) if args.seeds else None
        seconds = _numbers(args.seconds, float) if args.seconds else None
    except ValueError:
        print("--seeds and --seconds take comma-separated numbers", file=sys.stderr)
        return 2
    if (seeds and min(seeds) < 0) or (seconds and min(seconds) <= 0):
        print("--seeds must be >= 0 and --seconds > 0", file=sys.stderr)
        return 2
    models = [m.strip() for m in args.models.split(",") if m.strip()] if args.models else None
    try:
        result = run_grid(quick=args.quick, seeds=seeds, seconds=seconds, models=models,
                          directory=Path(args.dir) if args.dir else GRID_DIR, progress=not args.json)
    except WorldFileError as e:
        for line in e.problems:
            print(line, file=sys.stderr)
        return 2
    print(json.dumps(result) if args.json else format_table(result))
    return 0
