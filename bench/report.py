"""Turning measured figures into the report: headline keys, the bars, Markdown, charts.

Nothing is measured here. ``headline`` picks the figures the issue names (flat JSON keys),
``judge`` compares them with the bars and says PASS or MISS (or n/a, with the reason, when a
figure was not measured), ``markdown`` writes the table and ``charts`` the two PNGs.
"""

from __future__ import annotations

from pathlib import Path

SCENE = "100k clustered"  # where the move + grid + pairs bars are judged


def _get(d: dict | None, *path, default=None):
    for key in path:
        if not isinstance(d, dict) or key not in d:
            return default
        d = d[key]
    return d


def _ratio(a, b):
    return a / b if a is not None and b else None


def _sum(*values):
    return None if any(v is None for v in values) else float(sum(values))


def headline(r: dict) -> dict:
    """The flat keys of the JSON report (None where a figure was not measured)."""
    scene = _get(r, "mgp", SCENE) or {}
    ms = scene.get("ms", {})
    rt = r.get("realtime") or {}
    top = _get(r, "actions", str(max(map(int, r["actions"])))) if r.get("actions") else None
    low = _get(r, "actions", str(min(map(int, r["actions"])))) if r.get("actions") else None
    ft = r.get("first_tick") or {}
    return {
        "tick_100k_ms": _get(r, "tick", "tick_ms", "median"),
        "state_hash_100k_ms": _get(r, "state_hash", "ms", "median"),
        "sharded_4_over_1": _get(r, "sharded", "shards", "4", "over_one_shard"),
        "sharded_same_hashes": _get(r, "sharded", "same_hashes"),
        "journal_tick_over_plain": _get(r, "store", "tick", "over_plain"),
        "snapshot_tick_max_over_median": _get(r, "store", "tick", "largest_over_median"),
        "snapshot_work_ms": _sum(_get(r, "store", "snapshot", "copy_ms", "max"),
                                 _get(r, "store", "snapshot", "write_alone_ms", "median")),
        "recovery_1000_s": None if _get(r, "store", "recovery", "wall_ms") is None
        else _get(r, "store", "recovery", "wall_ms") / 1000.0 * 1000 / max(_get(r, "store", "recovery", "ticks"), 1),
        "ours_mgp_100k_clustered_ms": _get(ms, "ours", "median"),
        "bare_numba_mgp_100k_clustered_ms": _get(ms, "bare", "median"),
        "numpy_mgp_100k_clustered_ms": _get(ms, "numpy", "median"),
        "ckdtree_pairs_100k_clustered_ms": _get(ms, "ckdtree", "median"),
        "esper_mgp_100k_clustered_ms": _get(ms, "esper", "median"),
        "ours_over_bare_100k_clustered": _get(scene, "ratios", "ours_over_bare", "median"),
        "ckdtree_over_ours_100k_clustered": _get(scene, "ratios", "ckdtree_over_ours", "median"),
        "esper_over_ours_100k_clustered": _get(scene, "ratios", "esper_over_ours", "median"),
        "actions_per_s": _get(top, "actions_per_s_path", "median"),
        "actions_per_s_25k": _get(r, "actions", "25000", "actions_per_s_path", "median"),
        "cheat_checks_2500_ms": _get(low, "cheat_checks_ms", "median"),
        "actions_per_s_whole_tick": _get(top, "actions_per_s_tick", "median"),
        "actions_accepted_share": _get(top, "accepted_share"),
        "tick_1m_ms": _get(r, "tick_1m", "tick_ms", "median"),
        "tick_100k_max_over_median": _ratio(_get(r, "tick", "tick_ms", "max"), _get(r, "tick", "tick_ms", "median")),
        "tick_1m_max_over_median": _ratio(_get(r, "tick_1m", "tick_ms", "max"), _get(r, "tick_1m", "tick_ms", "median")),
        "realtime_p99_action_to_effect_ms": _get(rt, "with_clients", "action_to_effect_ms", "p99"),
        "cpu_utilisation_peak": _get(rt, "with_clients", "cpu_utilisation_peak"),
        "realtime_server_only_p99_action_to_effect_ms": _get(rt, "server_only", "action_to_effect_ms", "p99"),
        "cpu_utilisation_peak_server_only": _get(rt, "server_only", "cpu_utilisation_peak"),
        "first_tick_s_cached": _get(ft, "warm", "first_tick_s"),
        "first_tick_s_cold": _get(ft, "cold", "first_tick_s"),
        "scaling_ms_per_1k_players": _get(r, "scaling", "fit_ms_per_1k_players"),
    }


def judge(h: dict, r: dict) -> dict:
    """Each bar: what was measured, the target, and PASS (True), MISS (False) or None (n/a)."""
    skipped = r.get("skipped", {})
    interval = _get(r, "realtime", "tick_interval_ms", default=50.0)
    esper_x = (h["esper_mgp_100k_clustered_ms"] / h["tick_100k_ms"]
               if h["esper_mgp_100k_clustered_ms"] and h["tick_100k_ms"] else None)

    def bar(label, value, target, ok, unit="", why=None):
        return {"label": label, "measured": None if value is None else round(value, 4), "unit": unit,
                "target": target, "pass": None if value is None else bool(ok(value)),
                "note": why if value is None else None}

    return {
        "tick_100k": bar("continent tick (5k players, 100k NPCs), median", h["tick_100k_ms"], "<= 10 ms",
                         lambda v: v <= 10, "ms"),
        "state_hash_100k": bar("state hash at 100k entities (continent, after each tick), median",
                               h["state_hash_100k_ms"], "<= 1 ms", lambda v: v <= 1.0, "ms"),
        "sharded_4_over_1": bar("continent tick on 4 in-process shards / on 1 (median of round ratios)",
                                h["sharded_4_over_1"], "<= 1.25x", lambda v: v <= 1.25, "x"),
        "sharded_same_hashes": bar("continent: every tick's hash on 2, 4 (8) shards is the one-shard hash",
                                   None if h["sharded_same_hashes"] is None else float(h["sharded_same_hashes"]),
                                   "= 1", lambda v: v == 1.0),
        "journal_tick": bar("continent tick with the journal (fsync every tick) / without (median of tick ratios)",
                            h["journal_tick_over_plain"], "<= 1.10x", lambda v: v <= 1.10, "x"),
        "snapshot_spike": bar("largest continent tick with the journal and a snapshot every K ticks / median",
                              h["snapshot_tick_max_over_median"], "<= 2x", lambda v: v <= 2.0, "x"),
        "snapshot_work": bar("continent snapshot: copy in the tick (max) + writing it, alone (median)",
                             h["snapshot_work_ms"], "<= 100 ms", lambda v: v <= 100, "ms"),
        "recovery_1000": bar("recovery of 1,000 journaled continent ticks (scaled from the measured run)",
                             h["recovery_1000_s"], "<= 10 s", lambda v: v <= 10, "s"),
        "esper_mgp_over_tick": bar("esper move+grid+pairs at 100k clustered / our full tick", esper_x, ">= 50x",
                                   lambda v: v >= 50, "x", skipped.get("esper")),
        "ours_vs_bare": bar("our move+grid+pairs / bare numba kernel, 100k clustered (median of round ratios)",
                            h["ours_over_bare_100k_clustered"], "<= 1.25x", lambda v: v <= 1.25, "x"),
        "ours_vs_ckdtree": bar("cKDTree build+query_pairs (pairs only) / our full move+grid+pairs, 100k clustered",
                               h["ckdtree_over_ours_100k_clustered"], ">= 5x", lambda v: v >= 5, "x"),
        "actions_per_s": bar("actions/s validated to applied (Ingest+Validation+Order+Apply), 250k per tick",
                             h["actions_per_s"], ">= 1,000,000", lambda v: v >= 1e6, "/s"),
        "actions_per_s_25k": bar("actions/s validated to applied, 25k per tick", h["actions_per_s_25k"],
                                 ">= 1,000,000", lambda v: v >= 1e6, "/s"),
        "cheat_checks_2500": bar("validation + anomaly score, 2,500 actions per tick, 5k players, median",
                                 h["cheat_checks_2500_ms"], "<= 1 ms", lambda v: v <= 1.0, "ms"),
        "tick_1m": bar("full tick at ~1M entities (5k players, 1M NPCs), median", h["tick_1m_ms"], "<= 100 ms",
                       lambda v: v <= 100, "ms", skipped.get("tick_1m")),
        "tick_100k_spike": bar("largest continent tick (rebalances included) / median", h["tick_100k_max_over_median"],
                               "<= 2x", lambda v: v <= 2.0, "x"),
        "tick_1m_spike": bar("largest ~1M-entity tick (rebalances included) / median", h["tick_1m_max_over_median"],
                             "<= 2x", lambda v: v <= 2.0, "x", skipped.get("tick_1m")),
        "realtime_p99": bar("realtime 20 Hz p99 action-to-effect (run_world, client simulation in process)",
                            h["realtime_p99_action_to_effect_ms"], f"<= {interval + 5:g} ms",
                            lambda v: v <= interval + 5, "ms"),
        "cpu_peak": bar("CPU utilisation peak, 5k players at 20 Hz (run_world, client simulation in process)",
                        h["cpu_utilisation_peak"], "< 0.70 of one core", lambda v: v < 0.70, "core"),
        "realtime_p99_server_only": bar("realtime 20 Hz p99 action-to-effect, server only (same actions replayed)",
                                        h["realtime_server_only_p99_action_to_effect_ms"], f"<= {interval + 5:g} ms",
                                        lambda v: v <= interval + 5, "ms"),
        "cpu_peak_server_only": bar("CPU utilisation peak, server only (same actions replayed)",
                                    h["cpu_utilisation_peak_server_only"], "< 0.70 of one core",
                                    lambda v: v < 0.70, "core"),
        "first_tick_cached": bar("first tick of a fresh process, warm numba cache", h["first_tick_s_cached"],
                                 "<= 1 s", lambda v: v <= 1.0, "s", _get(r, "first_tick", "error")),
    }


# --------------------------------------------------------------------------- Markdown


def _n(v, digits=2) -> str:
    if v is None:
        return "n/a"
    if abs(v) >= 1e5:
        return f"{v:,.0f}"
    return f"{v:.{digits}f}" if abs(v) < 100 else f"{v:,.0f}" if abs(v) >= 1000 else f"{v:.1f}"


def _spread(s: dict | None, unit: str = "", digits: int = 2) -> str:
    if not s:
        return "n/a"
    return f"{_n(s['median'], digits)}{unit} [{_n(s['min'], digits)}–{_n(s['max'], digits)}]"


def _verdict(b: dict) -> str:
    return "n/a" if b["pass"] is None else ("PASS" if b["pass"] else "**MISS**")


def markdown(r: dict, h: dict, bars: dict, meta: dict) -> str:
    out = [f"Made by `{meta['command']}` on {meta['machine']} ({meta['cores']} cores), {meta['when']}; "
           f"{meta['mode']} run, {meta['duration_s']:.0f} s. Figures are median [min–max] over rounds; "
           "ratios are taken round by round (both sides timed in the same round) and their median reported.",
           "", "### Bars", "", "| bar | measured | target | result |", "|---|---|---|---|"]
    for b in bars.values():
        v = "n/a" if b["measured"] is None else f"{_n(b['measured'])} {b['unit']}".strip()
        out.append(f"| {b['label']} | {v}{' (' + b['note'] + ')' if b['note'] else ''} | {b['target']} | "
                   f"{_verdict(b)} |")

    t, m1 = r.get("tick"), r.get("tick_1m")
    if t:
        out += ["", f"### Continent tick ({t['players']:,} players, {t['entities']:,} entities, "
                    f"~{t['actions_per_tick']:.0f} actions/tick from the built-in client simulation, "
                    f"{t['tick_ms']['n']} ticks after warm-up)", "",
                f"Tick: {_spread(t['tick_ms'], ' ms')}, of which outside the systems (sealing the batch, "
                f"bookkeeping) {_spread(t['tick_outside_systems_ms'], ' ms')}. A step's cost outside the tick "
                f"(client simulation, state hash): {_spread(t['outside_tick_ms'], ' ms')}. Actions accepted: "
                f"{100 * (t['accepted_share'] or 0):.1f} %.", ""]
        extra = " ~1M entities: median ms [min–max] |" if m1 else ""
        out += ["| system | continent: median ms [min–max] |" + extra, "|---|---|" + ("---|" if m1 else "")]
        for name, s in t["system_ms"].items():
            other = f" {_spread(_get(m1, 'system_ms', name), digits=3)} |" if m1 else ""
            out.append(f"| {name} | {_spread(s, digits=3)} |{other}")
        out.append(f"| **tick** | {_spread(t['tick_ms'])} |" + (f" {_spread(m1['tick_ms'])} |" if m1 else ""))

    sh = r.get("state_hash")
    if sh:
        out += ["", f"State hash of the continent ({sh['entities']:,} entities, {sh['cells']:,} hashed cells), "
                    f"timed alone after each of {sh['ms']['n']} ticks: {_spread(sh['ms'], ' ms', 3)}."]

    sd = r.get("sharded")
    if sd:
        out += ["", f"### Continent on in-process shards ({sd['entities']:,} entities; every tick's hash the same on "
                    f"all: {'yes' if sd['same_hashes'] else 'NO'})", "",
                "| shards | tick ms | / one shard | replication share | bytes per tick p50 / p99 |",
                "|---|---|---|---|---|"]
        for n, v in sd["shards"].items():
            b = v["bytes_per_tick"]
            out.append(f"| {n} | {_spread(v['tick_ms'])} | {v['over_one_shard']:.2f}x | {v['replication_share']:.0%} "
                       f"| {b['p50']:,.0f} / {b['p99']:,.0f} |")

    st = r.get("store")
    if st:
        snap, rec = st["snapshot"], st["recovery"]
        out += ["", f"### Durable continent ({st['entities']:,} entities, a snapshot every {st['snapshot_every']} "
                    "ticks)", "",
                "| run | tick ms | / no journal | largest / median |", "|---|---|---|---|"]
        for name, label in (("plain", "no journal"), ("off", "journal, fsync off"), ("tick", "journal, fsync tick")):
            v = st[name]
            out.append(f"| {label} | {_spread(v['tick_ms'])} | {v['over_plain']:.2f}x "
                       f"| {v['largest_over_median']:.2f}x |")
        out += ["", f"Snapshot: {snap['bytes']:,} bytes; copy in the tick {_spread(snap.get('copy_ms'), ' ms')}, "
                    f"written behind it in {_spread(snap.get('write_ms'), ' ms')} (alone: "
                    f"{_spread(snap.get('write_alone_ms'), ' ms')}). Journal: "
                    f"{st['journal_bytes_per_tick']:,.0f} bytes per tick. Recovery of {rec['ticks']} journaled ticks: "
                    f"{rec['wall_ms'] / 1000:.1f} s (same hash: {'yes' if rec['same_hash'] else 'NO'})."]

    out += ["", "### Full tick at ~1M entities", ""]
    if m1:
        out.append(f"{m1['players']:,} players + {m1['entities'] - m1['players']:,} NPCs on a "
                   f"{m1['bounds'][2]:,.0f} m square (the continent's densities, ten times its area), built-in "
                   f"client simulation: tick {_spread(m1['tick_ms'], ' ms')} over {m1['tick_ms']['n']} ticks; "
                   "per system in the table above.")
    else:
        out.append(f"Not measured: {r.get('skipped', {}).get('tick_1m', 'not run')}.")

    if r.get("mgp"):
        out += ["", "### Move + grid + pairs (ms per step)", "",
                "Ours: ECS World + Schedule (move System, SpatialGrid rebuild, pairs_within). cKDTree: build + "
                "query_pairs only (its move is untimed). Scenes keep their density as n grows (~18 neighbours "
                "within 10 m clustered, ~2 uniform).", "",
                "| scene | pairs | ours | bare numba | numpy | cKDTree (pairs only) | esper | ours/bare | "
                "cKDTree/ours | numpy/ours | esper/ours |", "|---|---|---|---|---|---|---|---|---|---|---|"]
        for label, s in r["mgp"].items():
            ms, ra = s["ms"], s["ratios"]
            agree = "" if s["pairs_agree"] else " (pair counts DIFFER)"
            out.append(
                f"| {label} | {s['pairs']:,}{agree} | {_spread(ms['ours'])} | {_spread(ms['bare'])} | "
                f"{_spread(ms['numpy'])} | {_spread(ms['ckdtree'])} | {_spread(ms.get('esper'))} | "
                f"{_spread(ra['ours_over_bare'], '×')} | {_spread(ra['ckdtree_over_ours'], '×', 1)} | "
                f"{_spread(ra['numpy_over_ours'], '×', 1)} | {_spread(ra.get('esper_over_ours'), '×', 0)} |")

    if r.get("actions"):
        out += ["", "### Actions validated to applied (continent, crafted valid load, no client simulation)", "",
                "| actions/tick | Ingest+Validation+Order+Apply ms | Validation+AnomalyScore ms | whole tick ms | "
                "actions/s (path) | actions/s (whole tick) | accepted |", "|---|---|---|---|---|---|---|"]
        for a in r["actions"].values():
            out.append(f"| {a['actions_per_tick']:,} | {_spread(a['path_ms'])} | {_spread(a.get('cheat_checks_ms'))} | "
                       f"{_spread(a['tick_ms'])} | "
                       f"{_n(a['actions_per_s_path']['median'])} | {_n(a['actions_per_s_tick']['median'])} | "
                       f"{100 * (a['accepted_share'] or 0):.2f} % |")

    sc = r.get("scaling")
    if sc:
        out += ["", "### Scaling (continent map, NPCs 20 per player, built-in client simulation)", "",
                "| players | entities | tick ms | ms per 1k players |", "|---|---|---|---|"]
        for p in sc["points"]:
            out.append(f"| {p['players']:,} | {p['entities']:,} | {_spread(p['tick_ms'])} | "
                       f"{_n(p['ms_per_1k_players'])} |")
        out.append(f"\nLinear fit: {_n(sc['fit_ms_per_1k_players'])} ms per 1k players + "
                   f"{_n(sc['fit_intercept_ms'])} ms; largest deviation of a median from the fit "
                   f"{100 * sc['fit_max_deviation']:.0f} %.")

    rt = r.get("realtime")
    if rt:
        out += ["", f"### Realtime at {1000 / rt['tick_interval_ms']:g} Hz (continent)", "",
                "| run | ticks | wall s | action-to-effect p50 / p99 ms | tick p50 / p99 ms | overruns | "
                "CPU mean / peak (1 s windows) |", "|---|---|---|---|---|---|---|"]
        for label, key in (("run_world, client simulation in process", "with_clients"),
                           ("server only, same actions replayed", "server_only")):
            x = rt[key]
            a2e, tick = x["action_to_effect_ms"], x["tick_ms"]
            out.append(f"| {label} | {x['ticks']} | {x['wall_s']:.1f} | {_n(a2e['p50'])} / {_n(a2e['p99'])} | "
                       f"{_n(tick['p50'])} / {_n(tick['p99'])} | {x['tick_overruns']} | "
                       f"{x['cpu_utilisation_mean']:.2f} / {x['cpu_utilisation_peak']:.2f} |")
        same = rt["server_only"].get("same_state_as_with_clients")
        out.append(f"\nThe replayed run {'reached' if same else 'did NOT reach'} the same state hash.")

    ft = r.get("first_tick")
    if ft and "error" in ft:
        out += ["", f"### First tick of a fresh process: not measured ({ft['error']})"]
    elif ft:
        out += ["", "### First tick of a fresh process (arena)", "",
                "| numba cache | import s | build s | first tick s | first 3 ticks s |", "|---|---|---|---|---|"]
        for k in ("cold", "warm"):
            x = ft[k]
            out.append(f"| {k} | {x['import_s']:.2f} | {x['build_s']:.2f} | {x['first_tick_s']:.3f} | "
                       f"{x['first_3_ticks_s']:.3f} |")

    if r.get("skipped"):
        out += ["", "Not run: " + "; ".join(r["skipped"].values()) + "."]
    return "\n".join(out) + "\n"


# --------------------------------------------------------------------------- charts


def charts(r: dict, out_dir: Path) -> list[Path]:
    """scaling.png (tick ms against players) and systems.png (per-system split of the tick)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    written = []
    sc = r.get("scaling")
    if sc:
        pts = sc["points"]
        p = np.array([x["players"] for x in pts])
        med = np.array([x["tick_ms"]["median"] for x in pts])
        lo = med - np.array([x["tick_ms"]["min"] for x in pts])
        hi = np.array([x["tick_ms"]["max"] for x in pts]) - med
        fig, ax = plt.subplots(figsize=(7, 4.5), dpi=120)
        ax.errorbar(p, med, yerr=[lo, hi], fmt="o", capsize=4, label="tick ms (median, min–max)")
        xs = np.linspace(0, p.max() * 1.05, 50)
        ax.plot(xs, sc["fit_ms_per_1k_players"] * xs / 1000 + sc["fit_intercept_ms"], "--",
                label=f"fit: {sc['fit_ms_per_1k_players']:.2f} ms per 1k players + {sc['fit_intercept_ms']:.2f} ms")
        ax.axhline(50, color="grey", lw=0.8, ls=":", label="20 Hz budget (50 ms)")
        ax.set_xlabel("players (NPCs: 20 per player)")
        ax.set_ylabel("tick ms")
        ax.set_title("Continent tick against players")
        ax.set_xlim(0, p.max() * 1.05)
        ax.set_ylim(0, max(55, float((med + hi).max()) * 1.1))
        ax.grid(alpha=0.3)
        ax.legend(loc="upper left", fontsize=8)
        fig.tight_layout()
        path = out_dir / "scaling.png"
        fig.savefig(path)
        plt.close(fig)
        written.append(path)

    series = [(f"continent ({r['tick']['entities'] // 1000}k entities)", r["tick"])] if r.get("tick") else []
    if r.get("tick_1m"):
        series.append((f"1M ({r['tick_1m']['entities'] / 1e6:.2f}M entities)", r["tick_1m"]))
    if series:
        names = list(series[0][1]["system_ms"])
        fig, ax = plt.subplots(figsize=(8, 4.5), dpi=120)
        y = np.arange(len(names))
        height = 0.8 / len(series)
        for k, (label, t) in enumerate(series):
            v = [t["system_ms"].get(n, {"median": 0.0})["median"] for n in names]
            bars = ax.barh(y + k * height - 0.4 + height / 2, v, height, label=f"{label}: tick "
                           f"{t['tick_ms']['median']:.1f} ms")
            ax.bar_label(bars, fmt="%.2f", fontsize=7, padding=2)
        ax.set_yticks(y, names)
        ax.invert_yaxis()
        ax.set_xlabel("median ms per tick")
        ax.set_title("Where the tick goes, per system")
        ax.grid(axis="x", alpha=0.3)
        ax.legend(loc="lower right", fontsize=8)
        fig.tight_layout()
        path = out_dir / "systems.png"
        fig.savefig(path)
        plt.close(fig)
        written.append(path)
    return written
