"""What the benchmarks run on: generated points for move + grid + pairs, and world definitions.

Every variant of a comparison gets the same arrays, so a ratio measures the implementations,
not the inputs. Points are seeded; worlds are derived from ``worlds/defs/continent.toml`` so
that a scaled world is the continent with more of everything, validated by the same schema.

Point scenes keep their density fixed as n grows: the scene at 100k is a 4 km square (the
continent's size) and at other sizes it is the same picture scaled by sqrt(n / 100k), so every
size has the same mean number of neighbours and a time per point compares across sizes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from worlds.loader import load_world, parse_world
from worlds.schema import WorldDef

ROOT = Path(__file__).resolve().parent.parent
CONTINENT = ROOT / "worlds" / "defs" / "continent.toml"
ARENA = ROOT / "worlds" / "defs" / "arena.toml"

BASE_N = 100_000
BASE_SIDE_M = 4000.0
RADIUS_M = 10.0
HOTSPOTS = 20
CLUSTERED_SHARE = 0.8
HOTSPOT_SIGMA_M = 78.0  # at 100k: ~18 neighbours within RADIUS_M on average (clustered)
MAX_SPEED_MPS = 2.0
DT_S = 0.05

CELL_SLACK = 1e-6
"""Baselines' cells are RADIUS_M * (1 + CELL_SLACK) wide, so that the rounding of (x - x0) / cell
never puts two points within the radius two cells apart (see systems/spatial_hash.py)."""


@dataclass
class Scene:
    """n points in a square world, with velocities. x, y, vx, vy: (n,) float64, never written
    by the variants (each copies what it moves)."""

    n: int
    kind: str  # "uniform" or "clustered"
    side_m: float
    radius_m: float
    dt_s: float
    x: np.ndarray
    y: np.ndarray
    vx: np.ndarray
    vy: np.ndarray

    @property
    def bounds(self) -> tuple[float, float, float, float]:
        return 0.0, 0.0, self.side_m, self.side_m

    @property
    def label(self) -> str:
        return f"{size_label(self.n)} {self.kind}"


def size_label(n: int) -> str:
    return f"{n // 1_000_000}M" if n >= 1_000_000 and n % 1_000_000 == 0 else f"{n // 1000}k"


def make_scene(n: int, kind: str, seed: int = 7) -> Scene:
    """Uniform: n points uniform in the square. Clustered: 80 % in 20 gaussian hotspots, the
    rest uniform. Speeds uniform in [0, MAX_SPEED_MPS) with uniform headings."""
    if kind not in ("uniform", "clustered"):
        raise ValueError(f"kind must be 'uniform' or 'clustered', got {kind!r}")
    scale = math.sqrt(n / BASE_N)
    side = BASE_SIDE_M * scale
    rng = np.random.default_rng(seed)
    xy = rng.uniform(0.0, side, (n, 2))
    if kind == "clustered":
        centres = rng.uniform(0.05 * side, 0.95 * side, (HOTSPOTS, 2))
        k = int(CLUSTERED_SHARE * n)
        xy[:k] = centres[rng.integers(0, HOTSPOTS, k)] + rng.normal(0.0, HOTSPOT_SIGMA_M * scale, (k, 2))
        np.clip(xy, 0.0, side, out=xy)
        xy = xy[rng.permutation(n)]  # no variant may profit from the clusters coming first
    speed = rng.uniform(0.0, MAX_SPEED_MPS, n)
    heading = rng.uniform(0.0, 2.0 * np.pi, n)
    return Scene(n, kind, side, RADIUS_M, DT_S, np.ascontiguousarray(xy[:, 0]), np.ascontiguousarray(xy[:, 1]),
                 speed * np.cos(heading), speed * np.sin(heading))


def canonical_pairs(pairs: np.ndarray) -> np.ndarray:
    """(m, 2) int64 pairs as min/max per row, rows sorted: equal arrays mean equal pair sets."""
    p = np.asarray(pairs, np.int64).reshape(-1, 2)
    p = np.stack([p.min(axis=1), p.max(axis=1)], axis=1)
    return p[np.lexsort((p[:, 1], p[:, 0]))]


# --------------------------------------------------------------------------- worlds


def continent() -> WorldDef:
    return load_world(CONTINENT)


def _scaled_populations(data: dict, players: int | None, npcs: int | None) -> None:
    """Scale the player and NPC populations of ``data`` (in place) to the totals given, keeping
    each population's share (largest remainders, so the totals are exact)."""
    for kind, total in (("players", players), ("npcs", npcs)):
        if total is None:
            continue
        pops = [p for p in data["populations"] if p["kind"] == kind]
        base = sum(p["count"] for p in pops)
        exact = [total * p["count"] / base for p in pops]
        counts = [int(math.floor(e)) for e in exact]
        for i in sorted(range(len(pops)), key=lambda i: counts[i] - exact[i])[: total - sum(counts)]:
            counts[i] += 1
        for p, c in zip(pops, counts):
            p["count"] = c


def with_players(players: int, npcs_per_player: int = 20, base: WorldDef | None = None) -> WorldDef:
    """The continent with ``players`` players and ``npcs_per_player`` NPCs each, same 4 km map."""
    data = (base or continent()).model_dump()
    _scaled_populations(data, players, players * npcs_per_player)
    data["world"]["name"] = f"continent_{players}p"
    return parse_world(data, data["world"]["name"])


def spread(players: int, npcs: int, base: WorldDef | None = None) -> WorldDef:
    """The continent with ``npcs`` NPCs on a map whose area grows in proportion to them, so NPC
    density (and the hotspots' crowding) stays the continent's; coordinates, hotspot and spawn
    radii scale by sqrt(npcs / continent's NPCs). Rules (speeds, reaches) are unchanged."""
    b = base or continent()
    data = b.model_dump()
    s = math.sqrt(npcs / sum(p.count for p in b.npcs()))
    data["world"]["bounds"] = [v * s for v in data["world"]["bounds"]]
    for h in data["hotspots"]:
        h["x"], h["y"], h["radius_m"] = h["x"] * s, h["y"] * s, h["radius_m"] * s
    for p in data["populations"]:
        sp = p["spawn"]
        for key in ("x", "y", "radius_m"):
            if sp.get(key) is not None:
                sp[key] *= s
    _scaled_populations(data, players, npcs)
    data["world"]["name"] = f"continent_{players}p_{npcs}n"
    return parse_world(data, data["world"]["name"])


LOAD_RULES = {"max_actions_per_s": 4000.0, "action_burst": 200.0, "melee_interval_ms": 0.0,
              "ranged_interval_ms": 0.0, "cast_cooldown_ms": 0.0}
"""Rules for bulk action loads: the continent caps a client at 12 actions/s and one swing per
400 ms (5,000 players: at most 3,000 valid actions a tick), so 50 actions per player per tick
would be refused as ``rate_limit``/``cooldown``. Lifted well above the heaviest load (1,000/s
per player), the checks still run on every action; they just pass."""


def unthrottled(base: WorldDef | None = None) -> WorldDef:
    """The continent with the per-client rate and weapon caps lifted (``LOAD_RULES``)."""
    data = (base or continent()).model_dump()
    data["rules"].update(LOAD_RULES)
    data["world"]["name"] = "continent_unthrottled"
    return parse_world(data, data["world"]["name"])
