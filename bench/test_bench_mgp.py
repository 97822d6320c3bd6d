"""Move + grid + pairs: every variant finds the same pairs, then each is timed (group ``mgp``).

Run with ``pytest bench -p no:cacheprovider --benchmark-enable``; without ``--benchmark-enable``
(the project's default) each benchmark body runs once, as a smoke test.
"""

from __future__ import annotations

import numpy as np
import pytest

from bench.baselines import VARIANTS
from bench.ours import EcsMgp
from bench.scenes import make_scene

ALL = {"ours": EcsMgp, **VARIANTS}


@pytest.mark.parametrize("kind", ["uniform", "clustered"])
def test_all_variants_find_the_same_pairs(kind):
    scene = make_scene(2000, kind, seed=3)
    variants = {name: cls(scene) for name, cls in ALL.items()}
    try:
        for _ in range(3):  # the moves must agree too: compare after a few steps, bounces included
            counts = set()
            for v in variants.values():
                v.prepare()
                counts.add(v.step())
            assert len(counts) == 1
        expected = variants["ours"].pairs()
        assert expected.shape[0] > 1000
        for name, v in variants.items():
            assert np.array_equal(v.pairs(), expected), name
    finally:
        for v in variants.values():
            v.close()


@pytest.fixture(scope="module", params=[10_000, 100_000], ids=lambda n: f"{n // 1000}k")
def clustered(request):
    return make_scene(request.param, "clustered")


@pytest.mark.parametrize("name", list(ALL))
def test_mgp(benchmark, clustered, name):
    if name == "esper" and clustered.n > 10_000:
        pytest.skip("esper: seconds per round at 100k; bench/run.py measures it in the full run")
    v = ALL[name](clustered)
    v.prepare()
    v.step()  # warm: compile, size buffers
    benchmark.group = "mgp"
    benchmark.extra_info["pairs_only"] = name == "ckdtree"
    try:
        # prepare() is the untimed part of a round (cKDTree's move); step() is what is timed.
        benchmark.pedantic(v.step, setup=v.prepare, rounds=5 if name == "esper" else 15, iterations=1)
    finally:
        v.close()
