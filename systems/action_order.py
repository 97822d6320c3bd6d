"""Tick step 5: which actions interact, and in what order they take effect.

Conflict groups. Two accepted actions interact when they touch the same entity (as actor or
target) or when their actors or targets stand within the interaction radius of each other
(the spatial index answers that). The connected components are conflict groups: independent
groups commute, so their relative order is irrelevant (and shards or threads can take them
apart); inside a group the order is everything.

Order inside a group, by:
1. physical effect time: the estimated true event time (client time corrected by the actor's
   clock offset, clamped to the rewind window by validation) plus the physics of the action:
   a projectile's flight (distance / projectile speed), a melee wind-up, a cast time, the walk
   to what is being looted. A far player on a slow link is judged by when it acted, not by
   when its packet came in;
2. causality: an action that needs another's effect comes after it even if it claims an
   earlier time: looting or healing an entity comes after every hit on it in the tick, and
   of two trade offers between the same pair the later one is the acceptance (the pair is a
   cycle, broken by effect time and counted);
3. exact ties: a keyed hash of (seed, tick, actor), fair and blind to player id and arrival.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from ecs import Phase, System
from ecs.config import JIT
from ecs.rng import key_u64
from systems.actions import SPELL_HEAL, ActionBatch, ActionKind
from systems.spatial_hash import neighbor_pairs
from systems.spatial_index import SpatialIndex

STREAM_TIEBREAK = 23


class ActionOrderIndex:
    """The computed order of one tick.

    perm: (n,) int64 action indices in the order they take effect (refused ones last).
    group: (n,) int64 conflict group of each action (-1 for refused ones).
    effect_ms: (n,) float64 when each action takes effect, causality applied.
    """

    def __init__(self, perm, group, effect_ms, n_groups=0, largest_group=0, cycles_broken=0) -> None:
        self.perm = perm
        self.group = group
        self.effect_ms = effect_ms
        self.n_groups = n_groups
        self.largest_group = largest_group
        self.cycles_broken = cycles_broken


@njit(**JIT)
def _tiebreak_keys(seed, tick, actor, out):
    """actor: (n,) int64, read; out: (n,) uint64, written with the fair tie-break key."""
    for i in range(actor.shape[0]):
        out[i] = key_u64(seed, tick, actor[i], STREAM_TIEBREAK, 0)


@njit(**JIT)
def _find(parent, a):
    root = a
    while parent[root] != root:
        root = parent[root]
    while parent[a] != root:  # path compression
        nxt = parent[a]
        parent[a] = root
        a = nxt
    return root


@njit(**JIT)
def _union(parent, a, b):
    ra = _find(parent, a)
    rb = _find(parent, b)
    if ra != rb:  # the smaller root wins: labels do not depend on the order of unions
        if ra < rb:
            parent[rb] = ra
        else:
            parent[ra] = rb


@njit(**JIT)
def _groups(n_nodes, actor_node, target_node, near_pairs, live, out_group):
    """Conflict group of each action: union-find over entity nodes.

    actor_node, target_node: (n,) int64 node of each action's actor / target (-1 none), read.
    near_pairs: (p, 2) int64 nodes within the interaction radius of each other, read.
    live: (n,) bool, read. out_group: (n,) int64, written: the group's root node, -1 if not live.
    """
    parent = np.arange(n_nodes)
    for i in range(actor_node.shape[0]):
        if live[i] and target_node[i] >= 0:
            _union(parent, actor_node[i], target_node[i])
    for k in range(near_pairs.shape[0]):
        _union(parent, near_pairs[k, 0], near_pairs[k, 1])
    for i in range(actor_node.shape[0]):
        out_group[i] = _find(parent, actor_node[i]) if live[i] else -1


@njit(**JIT)
def _after_hits(target_node, is_hit, is_dependent, group, effect_ms, n_nodes):
    """Move loot and heals on an entity after every hit on it in the tick.

    target_node: (n,) int64, read; is_hit, is_dependent: (n,) bool, read; effect_ms: (n,)
    float64, read and written (a dependent takes the time of the last hit if that is later).
    Returns how many actions were moved.
    """
    last_hit = np.full(n_nodes, -np.inf)
    for i in range(target_node.shape[0]):
        if is_hit[i] and target_node[i] >= 0 and effect_ms[i] > last_hit[target_node[i]]:
            last_hit[target_node[i]] = effect_ms[i]
    moved = 0
    for i in range(target_node.shape[0]):
        if is_dependent[i] and target_node[i] >= 0 and last_hit[target_node[i]] > effect_ms[i]:
            effect_ms[i] = last_hit[target_node[i]]
            moved += 1
    return moved


@njit(inline="always", **JIT)  # called per comparison: a call passing arrays costs more
def _before(a, b, effect, key, seq):
    """Whether action a takes effect before b in one group: effect time, fair key, sequence
    number, then batch position (so the order is total)."""
    if effect[a] != effect[b]:
        return effect[a] < effect[b]
    if key[a] != key[b]:
        return key[a] < key[b]
    if seq[a] != seq[b]:
        return seq[a] < seq[b]
    return a < b


@njit(**JIT)
def _insertion(perm, lo, hi, effect, key, seq):
    """Sort ``perm[lo:hi]`` by ``_before`` in place: the usual group holds a few actions."""
    for k in range(lo + 1, hi):
        i = perm[k]
        j = k - 1
        while j >= lo and _before(i, perm[j], effect, key, seq):
            perm[j + 1] = perm[j]
            j -= 1
        perm[j + 1] = i


@njit(**JIT)
def _precedes(a, b, effect, key, seq):
    """``_before`` as a plain call: the merge loops run rarely, and inlining it there too
    would only add compile time."""
    return _before(a, b, effect, key, seq)


@njit(**JIT)
def _sort_run(perm, lo, hi, effect, key, seq, buf):
    """Sort ``perm[lo:hi]`` by ``_before``: a top-down merge sort through ``buf`` (at least
    hi - lo long), insertion sort below 16."""
    if hi - lo <= 16:
        _insertion(perm, lo, hi, effect, key, seq)
        return
    mid = (lo + hi) // 2
    _sort_run(perm, lo, mid, effect, key, seq, buf)
    _sort_run(perm, mid, hi, effect, key, seq, buf)
    if not _precedes(perm[mid], perm[mid - 1], effect, key, seq):
        return  # already in order
    a = lo
    b = mid
    k = 0
    while a < mid or b < hi:
        if b >= hi or (a < mid and not _precedes(perm[b], perm[a], effect, key, seq)):
            buf[k] = perm[a]
            a += 1
        else:
            buf[k] = perm[b]
            b += 1
        k += 1
    for j in range(k):
        perm[lo + j] = buf[j]


@njit(**JIT)
def _fair_order(group, effect, key, seq, n_nodes):
    """(perm, number of groups, largest group): live actions grouped by group label
    (ascending), each group in ``_before`` order (insertion sort up to 16 actions, merge sort
    beyond); refused ones (group -1) last, in batch order.

    group: (n,) int64 in [-1, n_nodes); effect: (n,) float64; key: (n,) uint64; seq: (n,)
    int64; all read.
    """
    n = group.shape[0]
    starts = np.zeros(n_nodes + 1, np.int64)  # group g holds perm[starts[g]:starts[g + 1]]
    for i in range(n):
        if group[i] >= 0:
            starts[group[i] + 1] += 1
    for g in range(n_nodes):
        starts[g + 1] += starts[g]
    fill = starts[:-1].copy()
    tail = starts[n_nodes]
    perm = np.empty(n, np.int64)
    for i in range(n):
        g = group[i]
        if g >= 0:
            perm[fill[g]] = i
            fill[g] += 1
        else:
            perm[tail] = i
            tail += 1
    buf = np.empty(n, np.int64)
    n_groups = 0
    largest = 0
    for g in range(n_nodes):
        lo, hi = starts[g], starts[g + 1]
        if hi > lo:
            n_groups += 1
            largest = max(largest, hi - lo)
            if hi - lo <= 16:
                _insertion(perm, lo, hi, effect, key, seq)
            else:
                _sort_run(perm, lo, hi, effect, key, seq, buf)
    return perm, n_groups, largest


@njit(**JIT)
def _effect_times(kind, event_ms, x, y, live, target_node, node_x, node_y, delays, selected, effect):
    """When each action takes effect: its estimated event time plus the physics of its kind
    (melee wind-up, projectile flight, cast time, the walk to the loot), and mark the live
    actions' actors and targets as ``selected`` for the interaction pairs.

    kind: (n,) int8; event_ms, x, y: (n,) float64 (event NaN: never); live: (n,) bool;
    target_node: (n,) int64 (-1 none); node_x, node_y: (m,) float64 positions by node; all
    read. delays: (4,) float64 melee wind-up ms, projectile m/s, cast ms, walking m/s, read.
    selected: (m,) bool, written where a live action touches the node; effect: (n,) written.
    """
    for i in range(kind.shape[0]):
        t = target_node[i]
        d = 0.0
        if t >= 0:
            d = np.sqrt((node_x[t] - x[i]) ** 2 + (node_y[t] - y[i]) ** 2)
            if live[i]:
                selected[t] = True
        kd = kind[i]
        delay = 0.0
        if kd == 2:
            delay = delays[0]
        elif kd == 3:
            delay = 1000.0 * d / delays[1]
        elif kd == 4:
            delay = delays[2]
        elif kd == 5:
            delay = 1000.0 * d / max(delays[3], 1e-6)
        effect[i] = (np.inf if np.isnan(event_ms[i]) else event_ms[i]) + delay


def order_actions(seed: int, tick: int, batch: ActionBatch, effect_ms: np.ndarray, actor_node: np.ndarray,
                  target_node: np.ndarray, n_nodes: int, near_pairs: np.ndarray) -> ActionOrderIndex:
    """The order of one tick's actions (see the module docstring). Pure: arrays in, order out.

    effect_ms: (n,) physical effect time of each action. actor_node / target_node: (n,) int64
    entity node of actor and target (-1 none); near_pairs: (p, 2) nodes within the interaction
    radius. Refused actions (status != 0) keep no group and go last.
    """
    n = batch.n
    live = batch.status == 0
    effect = np.where(live, effect_ms, np.inf).astype(np.float64)
    group = np.full(n, -1, np.int64)
    if n:
        _groups(max(n_nodes, 1), actor_node, target_node, np.ascontiguousarray(near_pairs, np.int64).reshape(-1, 2),
                live, group)
    hits = live & (batch.kind >= ActionKind.MELEE) & (batch.kind <= ActionKind.CAST)
    dependent = live & (batch.kind == ActionKind.LOOT)
    heals = live & (batch.kind == ActionKind.CAST) & (batch.value == SPELL_HEAL)
    _after_hits(target_node, hits & ~heals, dependent | heals, group, effect, max(n_nodes, 1))
    cycles = _mutual_trades(batch, live)
    keys = np.empty(n, np.uint64)
    _tiebreak_keys(np.uint64(seed), tick, batch.actor, keys)
    perm, n_groups, largest = _fair_order(group, effect, keys, batch.seq, max(n_nodes, 1))
    return ActionOrderIndex(perm, group, effect, int(n_groups), int(largest), cycles)


def _mutual_trades(batch: ActionBatch, live: np.ndarray) -> int:
    """Pairs that offered each other a trade in the same tick: each waits for the other's offer.

    The cycle is broken by effect time (then by the fair order): the earlier one is the offer,
    the later the acceptance. Returns how many such cycles there were.
    """
    t = np.flatnonzero(live & (batch.kind == ActionKind.TRADE))
    if t.size < 2:
        return 0
    pairs = set(zip(batch.actor[t].tolist(), batch.target[t].tolist()))
    return sum(1 for (a, b) in pairs if a < b and (b, a) in pairs)


class ActionOrder(System):
    phase = Phase.ORDER
    reads = (ActionBatch, SpatialIndex)
    writes = (ActionOrderIndex,)

    def __init__(self, defn) -> None:
        self.rules = defn.rules
        self.radius_m = defn.world.interaction_radius_m
        self.delays = np.array([self.rules.melee_windup_ms, self.rules.projectile_speed_mps, self.rules.cast_time_ms,
                                0.0], np.float64)

    def run(self, world, ctx) -> None:
        order = self.order(world.resources[ActionBatch], world.resources[SpatialIndex], ctx)
        world.resources[ActionOrderIndex] = order
        ctx.stats["conflict_groups"] = order.n_groups
        ctx.stats["largest_group"] = order.largest_group
        ctx.stats["cycles_broken"] = order.cycles_broken

    def order(self, batch: ActionBatch, index, ctx) -> ActionOrderIndex:
        """The tick's order from the batch and where its participants stand (``index``: the
        spatial index, or any points with ``ids``, ``x``, ``y`` and ``index_of``, such as the
        participants a sharded world gathers from its shards: the order depends only on the
        participants' positions, not on how they are numbered)."""
        self.delays[3] = ctx.max_speed_mps  # the walk to the loot, at top speed
        live = batch.status == 0
        actor_node = index.index_of(batch.actor)
        target_node = np.where(live & (batch.target != 0), index.index_of(batch.target), -1)
        live &= actor_node >= 0
        selected = np.zeros(index.ids.shape[0], np.bool_)
        selected[actor_node[live]] = True
        effect = np.empty(batch.n, np.float64)
        _effect_times(batch.kind, batch.event_ms, batch.x, batch.y, live, target_node, index.x, index.y,
                      self.delays, selected, effect)
        # The tick's participants, numbered in index order: groups and pairs are found among them.
        nodes = np.flatnonzero(selected)
        number = np.full(index.ids.shape[0] + 1, -1, np.int64)  # the extra slot answers node -1
        number[nodes] = np.arange(nodes.size)
        actor_node, target_node = number[actor_node], number[target_node]
        near = neighbor_pairs(np.stack([index.x[nodes], index.y[nodes]], axis=1), self.radius_m)
        if not live.all():
            batch.status[(batch.status == 0) & ~live] = 2  # UNKNOWN_ACTOR: not in the world any more
        return order_actions(ctx.rng.seed, ctx.tick, batch, effect, actor_node, target_node, nodes.size, near)
