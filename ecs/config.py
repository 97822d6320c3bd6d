"""Numba flags in one place, so every kernel compiles the same way.

Kernels import ``JIT`` (and ``JIT_PARALLEL`` where a ``prange`` pays) instead of spelling
their own flags: changing ``fastmath`` or threading for the whole engine is one edit here.
``fastmath`` stays off: reassociation would make float results depend on the compiler, and
the state hash must not.
"""

from __future__ import annotations

JIT = dict(cache=True, nogil=True, fastmath=False)
JIT_PARALLEL = dict(cache=True, nogil=True, fastmath=False, parallel=True)
