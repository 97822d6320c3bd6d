"""Blocked space and occluders: rectangles the world file declares.

Validation asks two questions of them: is a claimed position inside blocked space, and does
the line from an attacker to its target cross something that blocks the sight. Both are
kernels over a (k, 4) array of rectangles; the client simulation asks the same ones so that
honest clients neither walk into walls nor shoot through them.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from ecs.config import JIT


def obstacle_arrays(defn) -> tuple[np.ndarray, np.ndarray]:
    """(walls (k, 4), occluders (j, 4)) float64 rectangles [min_x, min_y, max_x, max_y]."""
    walls = [o.rect for o in defn.obstacles if o.blocks_movement]
    sight = [o.rect for o in defn.obstacles if o.blocks_sight]
    return np.array(walls, np.float64).reshape(-1, 4), np.array(sight, np.float64).reshape(-1, 4)


@njit(**JIT)
def inside_any(rects, x, y):
    """True when (x, y) lies inside one of ``rects`` ((k, 4) float64, read), edges included."""
    for k in range(rects.shape[0]):
        if rects[k, 0] <= x <= rects[k, 2] and rects[k, 1] <= y <= rects[k, 3]:
            return True
    return False


@njit(**JIT)
def segment_blocked(rects, x0, y0, x1, y1):
    """True when the segment (x0, y0)-(x1, y1) crosses one of ``rects`` (slab clipping)."""
    dx = x1 - x0
    dy = y1 - y0
    for k in range(rects.shape[0]):
        t0 = 0.0
        t1 = 1.0
        ok = True
        for axis in range(2):
            p = x0 if axis == 0 else y0
            d = dx if axis == 0 else dy
            lo = rects[k, 0] if axis == 0 else rects[k, 1]
            hi = rects[k, 2] if axis == 0 else rects[k, 3]
            if d == 0.0:
                if p < lo or p > hi:
                    ok = False
                    break
            else:
                a = (lo - p) / d
                b = (hi - p) / d
                if a > b:
                    a, b = b, a
                t0 = max(t0, a)
                t1 = min(t1, b)
                if t0 > t1:
                    ok = False
                    break
        if ok:
            return True
    return False


@njit(**JIT)
def inside_many(rects, x, y, out):
    """out: (n,) bool, written: ``inside_any`` for each point of x, y ((n,) float64, read)."""
    for i in range(x.shape[0]):
        out[i] = inside_any(rects, x[i], y[i])
