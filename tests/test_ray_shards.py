"""Shards in Ray actors: real Ray (started on loopback by the tests), real processes.

The ray back-end must be indistinguishable from the in-process one: the same state hash after
every tick, on a world whose battle crosses shard borders and whose borders rebalance. Kept few
and short: Ray takes seconds to start and each shard is a process of its own.
"""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

if importlib.util.find_spec("ray") is None:  # (not importorskip: Ray must be imported by ray_host, on loopback)
    pytest.skip('the ray back-end is not installed (pip install -e ".[ray]")', allow_module_level=True)

from worlds.cluster.ray_host import ShardFailed, _ray, start_ray, stop_ray  # noqa: E402
from worlds.cluster.sharded import ShardedSimulation  # noqa: E402
from worlds.loader import load_world  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
WORLD = ROOT / "tests" / "worlds" / "shard_border_battle.toml"


def test_the_command_runs_shards_on_ray_and_prints_the_in_process_hash():
    # (first: before this module starts a Ray of its own)
    def run(*extra):
        out = subprocess.run([sys.executable, "-m", "worlds", "run", str(WORLD), "--ticks", "30", "--shards", "3",
                              "--json", *extra], capture_output=True, text=True, cwd=ROOT, timeout=300)
        assert out.returncode == 0, out.stderr
        return json.loads(out.stdout)

    here, there = run(), run("--backend", "ray")
    assert there["state_hash"] == here["state_hash"]
    assert there["shards"]["backend"] == "ray" and here["shards"]["backend"] == "inprocess"
    assert len({s["pid"] for s in there["shards"]["per_shard"]}) == 3


@pytest.fixture(scope="module")
def local_ray():
    start_ray(num_cpus=2)
    node = _ray().nodes()[0]
    assert node["NodeManagerAddress"] == "127.0.0.1"  # stayed on loopback
    yield
    stop_ray()


def test_four_shards_on_ray_hash_as_four_in_process_after_every_tick(local_ray):
    defn = load_world(WORLD)
    here = ShardedSimulation(defn, 4, seed=1)
    there = ShardedSimulation(defn, 4, seed=1, backend="ray")
    try:
        pids = {p["pid"] for p in there.host.processes()}
        assert len(pids) == 4 and os.getpid() not in pids  # a process per shard
        for _ in range(100):  # the borders start to move at tick 80
            a, b = here.step(), there.step()
            assert (b.tick, b.state_hash, b.applied, b.refused, b.killed) == (a.tick, a.state_hash, a.applied,
                                                                              a.refused, a.killed)
        summary = there.summary()
        assert summary["rebalances"] >= 1 and summary["handoffs"] > 0 and summary["cross_shard_actions"] > 0
        assert summary["backend"] == "ray" and summary["exchange_ms"]["p50"] > 0
        assert summary["sync_lag_ms"]["p99"] >= summary["sync_lag_ms"]["p50"] > 0
        assert all(s["rss_mb"] > 50 for s in summary["per_shard"])
        assert there.entity_count == here.entity_count
    finally:
        there.close()


def test_a_shard_whose_process_dies_is_named_not_hidden(local_ray):
    sim = ShardedSimulation(load_world(WORLD), 2, seed=1, backend="ray")
    try:
        sim.step()
        os.kill(sim.host.processes()[1]["pid"], signal.SIGKILL)
        with pytest.raises(ShardFailed, match="process died"):
            for _ in range(5):
                sim.step()
    finally:
        sim.close()


@pytest.mark.parametrize("args, says", [
    (["--shards", "1", "--backend", "ray"], "2 or more shards"),
    (["--shards", "2", "--backend", "ray", "--data", "d"], "--data with --backend ray"),
    (["--shards", "2", "--ray-address", "127.0.0.1:6379"], "--ray-address needs --backend ray"),
])
def test_the_command_refuses_what_the_ray_back_end_cannot_do_in_one_line(args, says, tmp_path):
    out = subprocess.run([sys.executable, "-m", "worlds", "run", str(WORLD), "--ticks", "1", *args],
                         capture_output=True, text=True, cwd=tmp_path, timeout=120,
                         env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert out.returncode == 2
    assert says in out.stderr and "Traceback" not in out.stderr
