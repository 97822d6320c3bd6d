"""Shards in Ray actors: each shard a process of its own, on this machine or across a Ray cluster.

Contract: ``RayHost`` is a ``hosts.Host`` whose shards live in Ray actors (``ShardProcess``,
one ``node.Node`` each). A round trip is one remote call per shard, all awaited together; what
crosses is plain values and protocol frames, exactly what the in-process host passes, so a world
evolves the same on either (the same state hash after every tick). Without an address
``start_ray`` starts a local Ray kept on the loopback interface (``_node_ip_address``
127.0.0.1, no dashboard, ``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0``, without which Ray swaps
127.0.0.1 for another interface's address); with one it joins that cluster, and the shards are
spread over its nodes. Ray is an optional dependency (``pip install -e ".[ray]"``); a missing
one is one clear error. A shard that fails raises ``ShardFailed`` naming the shard and why.
"""

from __future__ import annotations

import os

from worlds.cluster.hosts import Host, process_info, run_on


class ShardFailed(RuntimeError):
    """A shard's process raised, or died."""


def _ray():
    # Read when Ray is imported: without it Ray swaps 127.0.0.1 for another interface's address.
    os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
    try:
        import ray
    except ImportError:  # pragma: no cover - depends on the install
        raise ShardFailed('the ray back-end needs Ray: pip install -e ".[ray]"') from None
    return ray


def start_ray(address: str | None = None, num_cpus: int | None = None) -> bool:
    """Join Ray at ``address``, or start one on this machine on loopback. True if this call
    started or joined it (and ``stop_ray`` should end it), False if it was running already."""
    ray = _ray()
    if ray.is_initialized():
        return False
    quiet = dict(log_to_driver=False, logging_level="WARNING", configure_logging=True)
    if address:
        ray.init(address=address, **quiet)
    else:
        ray.init(_node_ip_address="127.0.0.1", include_dashboard=False, num_cpus=num_cpus or os.cpu_count(),
                 **quiet)
    return True


def stop_ray() -> None:
    ray = _ray()
    if ray.is_initialized():
        ray.shutdown()


class ShardProcess:
    """One shard in a process of its own: its ``Node`` with a replica of the shard map and of
    the world-wide allocator."""

    def __init__(self, index: int, shards: int, defn, allocator, halo_m: float, max_speed_mps: float,
                 seed: int) -> None:
        from systems.regions import RegionLayout
        from worlds.cluster.node import Node
        from worlds.cluster.shardmap import ShardMap

        shard_map = ShardMap(RegionLayout(defn.bounds, max(defn.regions.count, shards)), shards)
        self.node = Node(index, shards, defn, allocator, shard_map, halo_m, max_speed_mps, seed)

    def run(self, queued, op, args):
        return run_on(self.node, queued, op, args)


    def process(self) -> dict:
        """Its pid and resident memory (bytes)."""
        return process_info()


class RayHost(Host):
    backend = "ray"
    shares_allocator = False
    parallel = True

    def __init__(self, shards: int, defn, allocator, halo_m: float, max_speed_mps: float, seed: int,
                 address: str | None = None) -> None:
        super().__init__(shards)
        ray = _ray()
        self.started = start_ray(address)
        actor = ray.remote(ShardProcess).options(num_cpus=0, max_concurrency=1, scheduling_strategy="SPREAD")
        self.actors = [actor.remote(i, shards, defn, allocator, halo_m, max_speed_mps, seed) for i in range(shards)]
        self._get([a.process.remote() for a in self.actors], range(shards))  # up (or the reason it is not)

    def _get(self, refs, shards):
        ray = _ray()
        try:
            return ray.get(list(refs))
        except ray.exceptions.RayTaskError as e:
            s = next((s for s, r in zip(shards, refs) if _failed(ray, r)), "?")
            raise ShardFailed(f"shard {s}: {type(e.cause).__name__}: {e.cause}") from e.cause
        except ray.exceptions.RayActorError as e:
            raise ShardFailed(f"a shard's process died: {e}") from None

    def _run(self, op, work):
        shards = list(work)
        refs = [self.actors[s].run.remote(queued, op, args) for s, (queued, args) in work.items()]
        return dict(zip(shards, self._get(refs, shards)))

    def processes(self) -> list[dict]:
        """Each shard's pid and resident memory."""
        got = self.each("process")
        return [got[s] for s in range(self.count)]

    def close(self) -> None:
        ray = _ray()
        for a in self.actors:
            ray.kill(a)
        self.actors = []
        if self.started:
            stop_ray()


def _failed(ray, ref) -> bool:
    try:
        ray.get(ref, timeout=0)
    except ray.exceptions.RayError:
        return True
    except Exception:  # noqa: BLE001 - not ready, or another failure: not this one's
        return False
    return False
