"""Where new entities appear: points drawn from a population's spawn area.

Draws are keyed (seed, tick, key, stream), so the same population spawns the same way on any
machine; ``key`` is whatever identifies the newcomer (its index in the population at start,
the id of the entity it replaces later).
"""

from __future__ import annotations

import numpy as np

from ecs import Rng
from systems.obstacles import inside_many, obstacle_arrays

STREAM_SPAWN = 101


def spawn_points(defn, area, keys: np.ndarray, tick: int, rng: Rng, stream: int) -> tuple[np.ndarray, np.ndarray]:
    """(x, y) float64 arrays, one point per key, inside the world bounds and outside walls.

    ``area`` is a ``worlds.schema.SpawnArea``; ``defn`` the world definition (bounds, hotspots,
    obstacles). A point that falls in a wall is drawn again (keyed: another stream), a few
    times; one still inside then is pushed out through the wall's nearest edge.
    """
    x, y = _draw(defn, area, keys, tick, rng, stream)
    walls, _ = obstacle_arrays(defn)
    if not walls.shape[0]:
        return x, y
    inside = np.empty(x.shape[0], np.bool_)
    for attempt in range(1, 9):
        inside_many(walls, x, y, inside)
        if not inside.any():
            return x, y
        rx, ry = _draw(defn, area, keys[inside], tick, rng, stream + 1000 * attempt)
        x[inside], y[inside] = rx, ry
    inside_many(walls, x, y, inside)
    for i in np.flatnonzero(inside).tolist():
        x[i], y[i] = _push_out(walls, x[i], y[i], defn.bounds)
    return x, y


def _push_out(walls: np.ndarray, x: float, y: float, bounds) -> tuple[float, float]:
    for w in walls:
        if w[0] <= x <= w[2] and w[1] <= y <= w[3]:
            moves = [(w[0] - 1e-3, y), (w[2] + 1e-3, y), (x, w[1] - 1e-3), (x, w[3] + 1e-3)]
            moves = [(a, b) for a, b in moves if bounds[0] <= a <= bounds[2] and bounds[1] <= b <= bounds[3]]
            x, y = min(moves, key=lambda p: abs(p[0] - x) + abs(p[1] - y))
    return x, y


def _draw(defn, area, keys: np.ndarray, tick: int, rng: Rng, stream: int) -> tuple[np.ndarray, np.ndarray]:
    keys = np.asarray(keys, np.int64)
    n = keys.shape[0]
    x0, y0, x1, y1 = defn.bounds
    s = STREAM_SPAWN + 8 * stream
    u1, u2 = rng.uniform(tick, keys, s), rng.uniform(tick, keys, s + 1)
    if area.shape == "uniform":
        return x0 + u1 * (x1 - x0), y0 + u2 * (y1 - y0)
    if area.around == "hotspots":
        pick = (rng.uniform(tick, keys, s + 2) * len(defn.hotspots)).astype(np.int64)
        cx = np.array([h.x for h in defn.hotspots])[pick]
        cy = np.array([h.y for h in defn.hotspots])[pick]
    else:
        cx, cy = np.full(n, area.x), np.full(n, area.y)
    r = area.radius_m
    if area.shape == "disc":
        rad = r * np.sqrt(u1)
        ang = 2 * np.pi * u2
        x, y = cx + rad * np.cos(ang), cy + rad * np.sin(ang)
    else:  # gaussian, sigma = radius_m
        x = cx + r * rng.normal(tick, keys, s + 3)
        y = cy + r * rng.normal(tick, keys, s + 4)
    return np.clip(x, x0, x1), np.clip(y, y0, y1)
