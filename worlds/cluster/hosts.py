"""Where a sharded world's shards live, and how its coordinator reaches them.

Contract: the coordinator (``ShardedSimulation``) asks a host to run one of ``node.Node``'s
operations on some shards (``each``), all of them at once; the host runs first whatever the
coordinator queued for each of those shards (``later``: deliveries, placements, records that can
wait for the next round trip), in the order queued, then the operation, and answers with its
result per shard; what the queued operations returned waits in ``replies`` (``take_replies``). Arguments and
results are plain values and protocol frames, so a host may keep its shards anywhere:
``LocalHost`` keeps them in this process (the default back-end), ``ray_host.RayHost`` in Ray
actors, one process each. Every round trip is timed: ``rounds_ms`` in all, ``exchange_ms`` what
was not the shards' own work (moving arguments, results and frames between processes).
"""

from __future__ import annotations

import time


class Host:
    """The queue and the bookkeeping every back-end shares."""

    backend = "?"
    shares_allocator = False  # whether the shards draw ids from the coordinator's allocator itself
    parallel = False  # whether the shards of a round trip work at the same time

    def __init__(self, shards: int) -> None:
        self.count = shards
        self._queue: list[list[tuple[str, tuple]]] = [[] for _ in range(shards)]
        self.replies: list[list] = [[] for _ in range(shards)]
        self._after: list[list] = [[] for _ in range(shards)]
        self.last_end = time.perf_counter()  # when the last round trip came back
        self.rounds = 0
        self.rounds_ms = 0.0  # time spent in round trips since ``new_tick``
        self.exchange_ms = 0.0  # of which not the shards' own work: moving the work and the answers

    def new_tick(self) -> tuple[int, float, float]:
        """(round trips, their time, the exchange's share of it) since the last call."""
        done = (self.rounds, self.rounds_ms, self.exchange_ms)
        self.rounds, self.rounds_ms, self.exchange_ms = 0, 0.0, 0.0
        return done

    def later(self, s: int, op: str, *args, after=None) -> None:
        """Queue ``op`` for shard ``s``'s next round trip; ``after(t)`` is called with the
        ``time.perf_counter()`` at which that round trip came back."""
        self._queue[s].append((op, args))
        if after is not None:
            self._after[s].append(after)

    def each(self, op: str | None, args: dict[int, tuple] | None = None) -> dict[int, object]:
        """Run the queue, then ``op`` (None: the queue alone) on the shards of ``args`` (every
        shard, without arguments, when None); their results by shard."""
        targets = args if args is not None else {s: () for s in range(self.count)}
        work = {s: (self._queue[s], a) for s, a in targets.items()}
        after = [f for s in targets for f in self._after[s]]
        for s in targets:
            self._queue[s], self._after[s] = [], []
        t0 = time.perf_counter()
        out = self._run(op, work)
        t1 = time.perf_counter()
        self.rounds += 1
        self.last_end = t1
        wall = (t1 - t0) * 1e3
        self.rounds_ms += wall
        results, work_ms = {}, []
        for s, (replies, result, ms) in out.items():
            self.replies[s].extend(replies)
            results[s] = result
            work_ms.append(ms)
        self.exchange_ms += max(wall - (max(work_ms) if self.parallel else sum(work_ms)), 0.0)
        for f in after:
            f(t1)
        return results

    def all(self, op: str, *args) -> list:
        """``op`` with the same arguments on every shard; results in shard order."""
        got = self.each(op, {s: args for s in range(self.count)})
        return [got[s] for s in range(self.count)]

    def take_replies(self, name: str) -> list:
        """What the queued ``name`` operations returned since last asked, shard by shard."""
        out = []
        for s in range(self.count):
            out += [r for n, r in self.replies[s] if n == name]
            self.replies[s] = [(n, r) for n, r in self.replies[s] if n != name]
        return out

    def _run(self, op, work):  # pragma: no cover - interface
        raise NotImplementedError

    def close(self) -> None:
        pass


def run_on(node, queued: list[tuple[str, tuple]], op: str | None, args: tuple):
    """What a host runs where a shard lives: its queue, then ``op``."""
    t0 = time.perf_counter()
    replies = [(name, getattr(node, name)(*a)) for name, a in queued]
    result = getattr(node, op)(*args) if op is not None else None
    return replies, result, (time.perf_counter() - t0) * 1e3


class LocalHost(Host):
    """The shards in this process, sharing the coordinator's allocator and shard map."""

    backend = "inprocess"
    shares_allocator = True

    def __init__(self, nodes) -> None:
        super().__init__(len(nodes))
        self.nodes = nodes

    @property
    def shards(self):
        return [n.shard for n in self.nodes]

    def processes(self) -> list[dict]:
        """Each shard's process: this one, for all of them."""
        return [process_info()] * self.count

    def _run(self, op, work):
        return {s: run_on(self.nodes[s], queued, op, args) for s, (queued, args) in work.items()}


def process_info() -> dict:
    """This process's pid and resident memory (bytes)."""
    import os

    with open("/proc/self/statm") as f:
        rss_pages = int(f.read().split()[1])
    return {"pid": os.getpid(), "rss_bytes": rss_pages * os.sysconf("SC_PAGE_SIZE")}
