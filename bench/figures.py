"""Each figure of the report, measured: one function per figure, returning plain dicts.

The report (``bench/run.py``) decides sizes, rounds and durations; these functions only
measure. Worlds come from ``bench.scenes``; what ticks spend is read from ``TickReport``
(``tick_ms`` covers the schedule and excludes the client simulation, ``system_ms`` splits it).
"""

from __future__ import annotations

import gc
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence

import numpy as np

from bench.action_load import ActionLoad
from bench.baselines import VARIANTS
from bench.ours import EcsMgp
from bench.scenes import ARENA, ROOT, continent, make_scene, spread, unthrottled, with_players
from bench.timing import Spread, interleaved, progress, ratio
from systems.actions import ActionBatch
from worlds import Simulation
from worlds.cli import run_world

ACTION_PATH = ("Ingest", "ActionValidation", "ActionOrder", "ApplyActions")
"""The systems an action goes through from ingest to applied (``report.system_ms`` keys)."""
CHEAT_CHECKS = ("ActionValidation", "AnomalyScore")
"""Cheat prevention and detection: refusing the impossible, scoring the improbable."""


# --------------------------------------------------------------------------- move + grid + pairs


def mgp(sizes: Sequence[int], rounds: dict[int, int], esper_sizes: Sequence[int]) -> dict[str, dict]:
    """Ours against every baseline on uniform and clustered scenes, interleaved round by round."""
    out = {}
    for n in sizes:
        for kind in ("uniform", "clustered"):
            scene = make_scene(n, kind)
            progress(f"mgp {scene.label}: setting up")
            variants = {"ours": EcsMgp(scene)}
            for name, cls in VARIANTS.items():
                if name != "esper" or n in esper_sizes:
                    variants[name] = cls(scene)
            counts = {}
            for name, v in variants.items():  # warm-up: compiles, sizes buffers
                v.prepare()
                counts[name] = v.step()
            progress(f"mgp {scene.label}: {rounds[n]} rounds of {', '.join(variants)}")
            ms = interleaved(variants, rounds[n])
            for v in variants.values():
                v.close()
            m = counts["ours"]
            ratios = {"ours_over_bare": ratio(ms["ours"], ms["bare"]),
                      "ckdtree_over_ours": ratio(ms["ckdtree"], ms["ours"]),
                      "numpy_over_ours": ratio(ms["numpy"], ms["ours"])}
            if "esper" in ms:
                ratios["esper_over_ours"] = ratio(ms["esper"], ms["ours"])
            out[scene.label] = {
                "n": n, "kind": kind, "side_m": round(scene.side_m, 1), "radius_m": scene.radius_m,
                "pairs": m, "mean_neighbours": round(2 * m / n, 2), "rounds": rounds[n],
                "pairs_agree": len(set(counts.values())) == 1,
                "ms": {name: Spread.of(v).as_dict() for name, v in ms.items()},
                "ratios": {k: r.as_dict(3) for k, r in ratios.items()},
            }
    return out


# --------------------------------------------------------------------------- ticks


def _tick_summary(reports: list, walls_ms: list[float]) -> dict:
    names = list(reports[0].system_ms)
    ticks = [r.tick_ms for r in reports]
    submitted = sum(r.submitted for r in reports)
    return {
        "tick_ms": Spread.of(ticks).as_dict(),
        "system_ms": {k: Spread.of([r.system_ms.get(k, 0.0) for r in reports]).as_dict() for k in names},
        "tick_outside_systems_ms": Spread.of([r.tick_ms - sum(r.system_ms.values()) for r in reports]).as_dict(),
        # What a step costs beyond the tick: the built-in client simulation, the state hash, the report.
        "outside_tick_ms": Spread.of([w - t for w, t in zip(walls_ms, ticks)]).as_dict(),
        "actions_per_tick": float(np.median([r.submitted for r in reports])),
        "accepted_share": round(sum(r.applied for r in reports) / submitted, 4) if submitted else None,
    }


def run_ticks(sims: dict[str, Simulation], ticks: int, warmup: int) -> dict[str, dict]:
    """Step every simulation ``warmup`` ticks, then ``ticks`` more, one of each per round."""
    reports: dict[str, list] = {k: [] for k in sims}
    walls: dict[str, list[float]] = {k: [] for k in sims}
    for k in range(warmup + ticks):
        for name, sim in sims.items():
            t0 = time.perf_counter()
            r = sim.step()
            if k >= warmup:
                walls[name].append((time.perf_counter() - t0) * 1e3)
                reports[name].append(r)
    return {name: {"entities": sims[name].world.entity_count, "players": int(sims[name].player_ids.shape[0]),
                   **_tick_summary(reports[name], walls[name])} for name in sims}


def continent_tick(ticks: int, warmup: int) -> dict:
    """The shipped continent (5k players, 100k NPCs) with its built-in client simulation."""
    progress(f"continent tick: {warmup} warm-up + {ticks} ticks")
    return run_ticks({"continent": Simulation(continent())}, ticks, warmup)["continent"]


def state_hash(rounds: int, warmup: int) -> dict:
    """``World.state_hash`` of the continent (5k players, 100k NPCs), timed alone right after
    each of ``rounds`` ticks, as a server hashing every tick runs it: on the memory the tick
    leaves. The simulation is told not to hash, so its ticks do not warm the tables for it; the
    garbage is collected before the tick (not between the tick and the hash, which would be
    another cache state) and the collector is off through both."""
    progress(f"state hash: continent, {warmup} warm-up ticks + {rounds} hashes, one after each tick")
    sim = Simulation(continent(), hash_every=0)
    for _ in range(warmup):
        sim.step()
    sim.world.state_hash()  # loads (or compiles) the kernels
    ms = []
    for _ in range(rounds):
        gc.collect()
        gc.disable()
        try:
            sim.step()
            t0 = time.perf_counter()
            sim.world.state_hash()
            ms.append((time.perf_counter() - t0) * 1e3)
        finally:
            gc.enable()
    cells = sum(t.n * sum(len(c.fields) for c in t.components if c.hashed) for t in sim.world.tables)
    return {"entities": sim.world.entity_count, "cells": cells, "ms": Spread.of(ms).as_dict()}


def tick_1m(ticks: int, warmup: int, players: int = 5000, npcs: int = 1_000_000) -> dict:
    """5k players and 1M NPCs on a continent ten times the area (same densities)."""
    progress(f"1M tick: building {players} players + {npcs} NPCs")
    sim = Simulation(spread(players, npcs))
    progress(f"1M tick: {warmup} warm-up + {ticks} ticks")
    out = run_ticks({"1m": sim}, ticks, warmup)["1m"]
    out["bounds"] = list(sim.defn.bounds)
    return out


def scaling(players: Sequence[int], ticks: int, warmup: int) -> dict:
    """Tick time at several player counts (NPCs 20 per player) on the continent's 4 km map."""
    progress(f"scaling: building worlds of {', '.join(map(str, players))} players")
    sims = {str(p): Simulation(with_players(p)) for p in players}
    progress(f"scaling: {warmup} warm-up + {ticks} ticks each, interleaved")
    res = run_ticks(sims, ticks, warmup)
    points = [{"players": p, **res[str(p)]} for p in players]
    k = np.array([p / 1000 for p in players])
    med = np.array([pt["tick_ms"]["median"] for pt in points])
    slope, intercept = np.polyfit(k, med, 1)
    fit = slope * k + intercept
    for pt, m in zip(points, med):
        pt["ms_per_1k_players"] = round(float(m / (pt["players"] / 1000)), 4)
    return {
        "points": points,
        "fit_ms_per_1k_players": round(float(slope), 4),
        "fit_intercept_ms": round(float(intercept), 4),
        "fit_max_deviation": round(float(np.max(np.abs(med - fit) / fit)), 4),
    }


# --------------------------------------------------------------------------- actions


def actions(levels: Sequence[int], rounds: int, warmup: int) -> dict:
    """Validated-to-applied throughput: crafted valid loads on the continent (no client
    simulation; per-client rate caps lifted, see ``bench.scenes.LOAD_RULES``), the levels
    interleaved round by round."""
    progress(f"actions: {', '.join(map(str, levels))} per tick, {warmup} warm-up + {rounds} rounds")
    sim = Simulation(unthrottled(), generate=False)
    load = ActionLoad(sim)
    for _ in range(5):  # game time passes the longest round trip before the first crafted action
        sim.step()
    path = {n: [] for n in levels}
    checks = {n: [] for n in levels}
    tick = {n: [] for n in levels}
    applied = {n: 0 for n in levels}
    submitted = {n: 0 for n in levels}
    refused: dict[int, dict[str, int]] = {n: {} for n in levels}
    for r in range(warmup + rounds):
        for n in levels:
            load.restore_health()
            sim.submit(load.batch(n))
            rep = sim.step()
            if r < warmup:
                continue
            path[n].append(sum(rep.system_ms.get(k, 0.0) for k in ACTION_PATH))
            checks[n].append(sum(rep.system_ms.get(k, 0.0) for k in CHEAT_CHECKS))
            tick[n].append(rep.tick_ms)
            applied[n] += rep.applied
            submitted[n] += rep.submitted
            for reason, c in rep.refused.items():
                refused[n][reason] = refused[n].get(reason, 0) + c
    out = {}
    for n in levels:
        out[str(n)] = {
            "actions_per_tick": n,
            "path_ms": Spread.of(path[n]).as_dict(),
            "cheat_checks_ms": Spread.of(checks[n]).as_dict(),
            "tick_ms": Spread.of(tick[n]).as_dict(),
            "actions_per_s_path": Spread.of([n / (ms / 1e3) for ms in path[n]]).as_dict(0),
            "actions_per_s_tick": Spread.of([n / (ms / 1e3) for ms in tick[n]]).as_dict(0),
            "accepted_share": round(applied[n] / submitted[n], 4) if submitted[n] else None,
            "refused": refused[n],
        }
    return out


# --------------------------------------------------------------------------- realtime


class _Replay:
    """Hands a simulation, tick by tick, the actions another run's client simulation produced
    (``Simulation.external``): the same load with the clients' cost left out of the process."""

    def __init__(self, recorded: list[tuple[ActionBatch, np.ndarray]]) -> None:
        batch = ActionBatch.concat([b for b, _ in recorded])
        due = np.concatenate([d for _, d in recorded]) if recorded else np.empty(0, np.int64)
        self._by_tick = {int(t): batch.take(np.flatnonzero(due == t)) for t in np.unique(due)}

    def batch_for(self, tick: int, dt_ms: float) -> ActionBatch:
        return self._by_tick.pop(tick, ActionBatch.empty())


def _paced(sim: Simulation, ticks: int, window_ticks: int) -> dict:
    """``run_world(realtime=True)`` with the process's CPU time sampled at every step."""
    samples: list[tuple[float, float]] = []
    step = sim.step

    def sampled_step(*args, **kw):
        samples.append((time.perf_counter(), time.process_time()))
        return step(*args, **kw)

    sim.step = sampled_step
    try:
        summary = run_world(sim, ticks, realtime=True, progress=False)
    finally:
        del sim.step
    samples.append((time.perf_counter(), time.process_time()))
    wall = np.array([s[0] for s in samples])
    cpu = np.array([s[1] for s in samples])
    edges = list(range(0, len(samples) - 1, window_ticks))
    if len(edges) > 1 and len(samples) - 1 - edges[-1] < window_ticks // 2:
        edges.pop()  # a short last window joins the one before it
    edges.append(len(samples) - 1)
    windows = np.diff(cpu[edges]) / np.diff(wall[edges])
    return {
        "ticks": ticks,
        "wall_s": round(float(wall[-1] - wall[0]), 3),
        "action_to_effect_ms": summary["action_to_effect_ms"],
        "tick_ms": summary["tick_ms"],
        "tick_overruns": summary["tick_overruns"],
        "actions_submitted": summary["actions_submitted"],
        "cpu_utilisation_mean": round(float((cpu[-1] - cpu[0]) / (wall[-1] - wall[0])), 4),
        "cpu_utilisation_peak": round(float(windows.max()), 4),
        "cpu_window_s": window_ticks / sim.clock.tick_rate_hz,
        "state_hash": summary["state_hash"],
    }


def realtime(seconds: float) -> dict:
    """The continent paced at its tick rate: action-to-effect latency, overruns, CPU.

    Run twice on the same action stream: first as ``run_world`` runs it, the built-in client
    simulation in the process (its actions are recorded); then the server alone, the recorded
    actions replayed, which is what a server process with remote clients would carry.
    """
    defn = continent()
    ticks = int(round(seconds * defn.world.tick_rate_hz))
    window = int(round(defn.world.tick_rate_hz))  # one-second windows for the peak
    sim = Simulation(defn)
    recorded: list[tuple[ActionBatch, np.ndarray]] = []
    generate = sim.generator.generate

    def recording(tick, index):
        batch, due = generate(tick, index)
        recorded.append((batch, due))
        return batch, due

    sim.generator.generate = recording
    progress(f"realtime: {ticks} ticks at {defn.world.tick_rate_hz:g} Hz with the client simulation in process")
    with_clients = _paced(sim, ticks, window)
    replay_sim = Simulation(defn, generate=False)
    replay_sim.external = _Replay(recorded)
    progress(f"realtime: {ticks} ticks, server only (the same actions replayed)")
    server_only = _paced(replay_sim, ticks, window)
    server_only["same_state_as_with_clients"] = server_only["state_hash"] == with_clients["state_hash"]
    return {"tick_interval_ms": 1000.0 / defn.world.tick_rate_hz, "with_clients": with_clients,
            "server_only": server_only}


# --------------------------------------------------------------------------- first tick

_FIRST_TICK = """
import json, time
t0 = time.perf_counter()
from worlds import Simulation
t1 = time.perf_counter()
sim = Simulation.from_file({world!r})
t2 = time.perf_counter()
sim.step()
t3 = time.perf_counter()
sim.step(); sim.step()
t4 = time.perf_counter()
print(json.dumps({{"import_s": t1 - t0, "build_s": t2 - t1, "first_tick_s": t3 - t2, "first_3_ticks_s": t4 - t2}}))
"""


def first_tick() -> dict:
    """Fresh processes load the arena and step it: the first tick's time, and the first three
    (actions reach the server from the second tick on, so their kernels compile then).

    Both processes share a numba cache in a fresh temporary directory (``NUMBA_CACHE_DIR``;
    without it the cache lives in ``__pycache__`` next to the modules): the first process
    finds it empty (cold) and fills it, the second finds it full (warm).
    """
    code = _FIRST_TICK.format(world=str(ARENA))
    out = {}
    with tempfile.TemporaryDirectory(prefix="bench-numba-cache-") as cache:
        env = {**os.environ, "NUMBA_CACHE_DIR": cache}
        for label in ("cold", "warm"):
            progress(f"first tick: fresh process, {label} numba cache")
            for attempt in range(2):  # the tree may be mid-edit by others: one retry
                done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True,
                                      text=True)
                if done.returncode == 0:
                    break
                time.sleep(15 * (1 - attempt))
            if done.returncode != 0:  # reported, not raised: the rest of the report stands
                tail = (done.stderr.strip().splitlines() or ["no output"])[-1]
                progress(f"first tick: the {label} process failed: {tail}")
                return {"error": f"the {label} process failed: {tail}"}
            out[label] = {k: round(v, 4) for k, v in json.loads(done.stdout.strip().splitlines()[-1]).items()}
    return out
