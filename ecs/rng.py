"""Counter-based random numbers keyed by (seed, tick, entity, stream).

No generator state is carried from one draw to the next: a draw is a hash of its key, so the
value an entity gets does not depend on iteration order, thread count or which shard runs it.
The mixer is splitmix64's finaliser applied once per key part (each part through its own odd
constant), which passes the usual avalanche tests and costs a few nanoseconds a draw.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from ecs.config import JIT

_C1 = np.uint64(0xBF58476D1CE4E5B9)
_C2 = np.uint64(0x94D049BB133111EB)
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_K_TICK = np.uint64(0xD6E8FEB86659FD93)
_K_ENTITY = np.uint64(0xA0761D6478BD642F)
_K_STREAM = np.uint64(0xE7037ED1A0B428DB)
_K_COUNTER = np.uint64(0x8EBC6AF09C88C6E3)
_S30 = np.uint64(30)
_S27 = np.uint64(27)
_S31 = np.uint64(31)
_S11 = np.uint64(11)
_INV53 = 1.0 / 9007199254740992.0


@njit(**JIT)
def mix64(x):
    """splitmix64 finaliser: a bijection on uint64 with full avalanche."""
    x = np.uint64(x)
    x = (x ^ (x >> _S30)) * _C1
    x = (x ^ (x >> _S27)) * _C2
    return x ^ (x >> _S31)


@njit(**JIT)
def key_u64(seed, tick, entity, stream, counter):
    """The uint64 drawn for one key; every argument is an integer (entity may be negative)."""
    h = mix64(np.uint64(seed) + _GOLDEN)
    h = mix64(h ^ (np.uint64(tick) * _K_TICK))
    h = mix64(h ^ (np.uint64(entity) * _K_ENTITY))
    h = mix64(h ^ (np.uint64(stream) * _K_STREAM))
    return mix64(h ^ (np.uint64(counter) * _K_COUNTER))


@njit(**JIT)
def key_uniform(seed, tick, entity, stream, counter):
    """A float64 in [0, 1) with 53 random bits, for one key."""
    return np.float64(key_u64(seed, tick, entity, stream, counter) >> _S11) * _INV53


@njit(**JIT)
def _uniform_many(seed, tick, entities, stream, counter, out):
    """entities: (n,) int64, read; out: (n,) float64, written with one draw per entity."""
    for i in range(entities.shape[0]):
        out[i] = key_uniform(seed, tick, entities[i], stream, counter)


@njit(**JIT)
def _normal_many(seed, tick, entities, stream, counter, out):
    """Box-Muller over two keyed draws; out: (n,) float64 standard normals, written."""
    for i in range(entities.shape[0]):
        u1 = key_uniform(seed, tick, entities[i], stream, 2 * counter)
        u2 = key_uniform(seed, tick, entities[i], stream, 2 * counter + 1)
        out[i] = np.sqrt(-2.0 * np.log(1.0 - u1)) * np.cos(2.0 * np.pi * u2)


class Rng:
    """Keyed draws for one world seed. ``stream`` separates unrelated uses of randomness."""

    def __init__(self, seed: int) -> None:
        self.seed = int(seed) & 0xFFFFFFFFFFFFFFFF

    def uniform(self, tick: int, entities: np.ndarray, stream: int, counter: int = 0) -> np.ndarray:
        entities = np.ascontiguousarray(entities, np.int64)
        out = np.empty(entities.shape[0], np.float64)
        _uniform_many(np.uint64(self.seed), tick, entities, stream, counter, out)
        return out

    def normal(self, tick: int, entities: np.ndarray, stream: int, counter: int = 0) -> np.ndarray:
        entities = np.ascontiguousarray(entities, np.int64)
        out = np.empty(entities.shape[0], np.float64)
        _normal_many(np.uint64(self.seed), tick, entities, stream, counter, out)
        return out

    def scalar(self, tick: int, entity: int, stream: int, counter: int = 0) -> float:
        # np.int64: the ids of shards >= 0x8000 are negative, and np.uint64 refuses a negative int
        # when the kernels run as plain Python (NUMBA_DISABLE_JIT).
        return float(key_uniform(np.uint64(self.seed), tick, np.int64(entity), stream, counter))
