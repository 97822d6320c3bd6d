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
from systems.spatial_index import SpatialIndex

STREAM_TIEBREAK = 23
_DAMAGE_KINDS = (ActionKind.MELEE, ActionKind.RANGED, ActionKind.CAST)


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


def physical_delay_ms(batch: ActionBatch, distance_m: np.ndarray, rules, actor_speed_mps: np.ndarray) -> np.ndarray:
    """How long after the act each action takes effect, by the physics of its kind."""
    delay = np.zeros(batch.n)
    kind = batch.kind
    delay[kind == ActionKind.MELEE] = rules.melee_windup_ms
    ranged = kind == ActionKind.RANGED
    delay[ranged] = 1000.0 * distance_m[ranged] / rules.projectile_speed_mps
    delay[kind == ActionKind.CAST] = rules.cast_time_ms
    loot = kind == ActionKind.LOOT
    delay[loot] = 1000.0 * distance_m[loot] / np.maximum(actor_speed_mps[loot], 1e-6)
    return delay


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
    hits = live & np.isin(batch.kind, [int(k) for k in _DAMAGE_KINDS])
    dependent = live & (batch.kind == ActionKind.LOOT)
    heals = live & (batch.kind == ActionKind.CAST) & (batch.value == SPELL_HEAL)
    _after_hits(target_node, hits & ~heals, dependent | heals, group, effect, max(n_nodes, 1))
    cycles = _mutual_trades(batch, live)
    keys = np.empty(n, np.uint64)
    _tiebreak_keys(np.uint64(seed), tick, batch.actor, keys)
    perm = np.lexsort((batch.seq, keys, effect, np.where(live, group, np.iinfo(np.int64).max))).astype(np.int64)
    groups, sizes = np.unique(group[live], return_counts=True)
    return ActionOrderIndex(perm, group, effect, int(groups.size), int(sizes.max()) if sizes.size else 0, cycles)


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

    def run(self, world, ctx) -> None:
        batch: ActionBatch = world.resources[ActionBatch]
        index: SpatialIndex = world.resources[SpatialIndex]
        live = batch.status == 0
        actor_node = index.index_of(batch.actor)
        target_node = np.where(live & (batch.target != 0), index.index_of(batch.target), -1)
        live &= actor_node >= 0
        tx = np.where(target_node >= 0, index.x[np.maximum(target_node, 0)], batch.x)
        ty = np.where(target_node >= 0, index.y[np.maximum(target_node, 0)], batch.y)
        distance = np.hypot(tx - batch.x, ty - batch.y)
        speed = np.full(batch.n, ctx.max_speed_mps)
        effect = np.where(np.isnan(batch.event_ms), np.inf, batch.event_ms) + physical_delay_ms(
            batch, distance, self.rules, speed)
        selected = np.zeros(index.ids.shape[0], np.bool_)
        selected[actor_node[live]] = True
        selected[target_node[live & (target_node >= 0)]] = True
        near = index.grid.pairs_among(selected, self.radius_m) if selected.any() else np.empty((0, 2), np.int64)
        if not live.all():
            batch.status[(batch.status == 0) & ~live] = 2  # UNKNOWN_ACTOR: not in the world any more
        order = order_actions(ctx.rng.seed, ctx.tick, batch, effect, actor_node, target_node, index.ids.shape[0], near)
        world.resources[ActionOrderIndex] = order
        ctx.stats["conflict_groups"] = order.n_groups
        ctx.stats["largest_group"] = order.largest_group
        ctx.stats["cycles_broken"] = order.cycles_broken
