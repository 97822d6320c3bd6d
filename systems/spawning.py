"""Where new entities appear: points drawn from a population's spawn area.

Draws are keyed (seed, tick, key, stream), so the same population spawns the same way on any
machine; ``key`` is whatever identifies the newcomer (its index in the population at start,
the id of the entity it replaces later).
"""

from __future__ import annotations

import numpy as np

from ecs import Rng

STREAM_SPAWN = 101


def spawn_points(defn, area, keys: np.ndarray, tick: int, rng: Rng, stream: int) -> tuple[np.ndarray, np.ndarray]:
    """(x, y) float64 arrays, one point per key, inside the world bounds.

    ``area`` is a ``worlds.schema.SpawnArea``; ``defn`` the world definition (bounds, hotspots).
    """
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
