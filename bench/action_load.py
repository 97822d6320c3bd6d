"""A valid action load of any size for a ``Simulation``: what validation accepts, in bulk.

The built-in client simulation sends what its players would (~800 actions a tick on the
continent). To measure how many actions per second the validate -> order -> apply path takes,
the load must be far larger and still valid, or the figure would be how fast we refuse. So the
actions are crafted from the server's own record of each player, as an honest client would
send them: consecutive sequence numbers; client times increasing through the tick (the
server-clock event time plus the player's clock offset) and received half a round trip later;
every action claiming a position reachable at 90 % of top speed from the previous one; melee
and ranged attacks on living entities within reach, a ranged shot claiming a hit about as often
as a human's would (``HIT_SHARE``). Damage per target per tick is kept below
its hp and ``restore_health`` (the harness, between ticks, untimed) heals everyone, so every
tick carries the same load and nothing dies.

Fifty actions per player per tick exceed any honest client's rate: run the load on a world
whose per-client caps are lifted (``bench.scenes.unthrottled``). The crafted moves do not
route around walls: on a world with obstacles, expect ``blocked`` and ``not_visible``.
"""

from __future__ import annotations

import numpy as np
from scipy.spatial import cKDTree

from systems.actions import ActionBatch, ActionKind
from systems.columns import gather
from systems.components import Health, Player
from systems.spatial_index import SpatialIndex

KIND_SHARES = {ActionKind.MOVE: 0.5, ActionKind.MELEE: 0.3, ActionKind.RANGED: 0.2}
CLIENT_PACE = 0.9  # fraction of top speed the crafted moves use
REACH_USE = 0.8  # attack targets within this fraction of the reach (the actor moves a little)
CANDIDATES = 9  # nearest entities considered as targets (the first is usually the actor)
HIT_SHARE = 0.35  # ranged shots claimed as hits: about a human's rate (skill ~0.55 x base chance ~0.6)


class ActionLoad:
    def __init__(self, sim, seed: int = 11) -> None:
        self.sim = sim
        self.rng = np.random.default_rng(seed)
        rules = sim.defn.rules
        self.melee_m = REACH_USE * rules.melee_reach_m
        self.ranged_m = REACH_USE * rules.ranged_range_m
        self.damage = {ActionKind.MELEE: rules.melee_damage, ActionKind.RANGED: rules.ranged_damage}
        self._health = sim.world.query(Health)

    def restore_health(self) -> None:
        for t in self._health:
            h = t.columns(Health)
            h.hp[:] = h.max_hp

    def _slots(self, n_actions: int) -> np.ndarray:
        """(P,) actions per player: n_actions spread evenly, the extra ones rotating by tick."""
        p = self.sim.player_ids.shape[0]
        per = np.full(p, n_actions // p, np.int64)
        extra = (self.sim.tick * n_actions + np.arange(n_actions % p)) % p
        per[extra] += 1
        return per

    def _targets(self, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Per player: candidate target ids (P, CANDIDATES) nearest first (0 padded) and how many
        lie within melee and within ranged reach."""
        index: SpatialIndex = self.sim.world.resources[SpatialIndex]
        tree = cKDTree(np.stack([index.x, index.y], axis=1))
        dist, at = tree.query(np.stack([x, y], axis=1), k=CANDIDATES, distance_upper_bound=self.ranged_m)
        found = at < index.ids.shape[0]
        at = np.where(found, at, 0)
        ids = index.ids[at]
        ok = found & index.alive[at] & (ids != self.sim.player_ids[:, None])
        first = np.argsort(~ok, axis=1, kind="stable")  # valid candidates first, still nearest first
        ok = np.take_along_axis(ok, first, axis=1)
        ids = np.where(ok, np.take_along_axis(ids, first, axis=1), 0)
        dist = np.take_along_axis(dist, first, axis=1)
        return ids, (ok & (dist <= self.melee_m)).sum(axis=1), ok.sum(axis=1)

    def batch(self, n_actions: int) -> ActionBatch:
        """``n_actions`` valid actions for the tick the simulation runs next."""
        sim, world, rng = self.sim, self.sim.world, self.rng
        ids = sim.player_ids
        state = {f: gather(world, ids, Player, f)[0] for f in
                 ("last_seq", "last_move_ms", "last_x", "last_y", "rtt_ms", "clock_offset_ms", "speed_mps")}
        per = self._slots(n_actions)
        p, k = ids.shape[0], int(per.max())
        used = np.arange(k)[None, :] < per[:, None]  # (P, k) slots holding an action
        dt_ms = sim.clock.dt_s * 1000.0
        # Received through the tick before the one that ingests them; acted half a round trip earlier.
        recv = (sim.tick - 1) * dt_ms + (np.arange(k)[None, :] + 1) / (per[:, None] + 1) * dt_ms
        event = recv - 0.5 * state["rtt_ms"][:, None]

        u = rng.random((p, k))
        kind = np.where(u < KIND_SHARES[ActionKind.MOVE], ActionKind.MOVE,
                        np.where(u < 1.0 - KIND_SHARES[ActionKind.RANGED], ActionKind.MELEE, ActionKind.RANGED))
        cand, n_melee, n_ranged = self._targets(state["last_x"], state["last_y"])
        kind = np.where((kind == ActionKind.MELEE) & (n_melee[:, None] == 0), ActionKind.RANGED, kind)
        kind = np.where((kind == ActionKind.RANGED) & (n_ranged[:, None] == 0), ActionKind.MOVE, kind)
        moves = used & (kind == ActionKind.MOVE)
        reach = np.where(kind == ActionKind.MELEE, n_melee[:, None], n_ranged[:, None])
        pick = np.minimum((rng.random((p, k)) * np.maximum(reach, 1)).astype(np.int64), CANDIDATES - 1)
        target = np.where(used & ~moves, np.take_along_axis(cand, pick, axis=1), 0)
        kind = np.where(self._over_damage(target, kind), ActionKind.MOVE, kind)  # a move that stays put
        target = np.where(kind == ActionKind.MOVE, 0, target)

        # Positions: each move goes 90 % of top speed times the time since the previous action.
        x0, y0, x1, y1 = sim.defn.bounds
        heading = rng.uniform(0.0, 2.0 * np.pi, p)
        cx, cy = state["last_x"].copy(), state["last_y"].copy()
        t_prev = state["last_move_ms"].copy()
        xs, ys = np.empty((p, k)), np.empty((p, k))
        for j in range(k):
            step = CLIENT_PACE * state["speed_mps"] * np.clip(event[:, j] - t_prev, 0.0, dt_ms) / 1000.0
            step = np.where(moves[:, j], step, 0.0)
            cx = np.clip(cx + step * np.cos(heading), x0, x1)
            cy = np.clip(cy + step * np.sin(heading), y0, y1)
            xs[:, j], ys[:, j] = cx, cy
            t_prev = np.where(used[:, j], event[:, j], t_prev)

        hit = np.where((kind == ActionKind.RANGED) & (rng.random((p, k)) < HIT_SHARE), 1.0, 0.0)
        seq = state["last_seq"][:, None] + 1 + np.arange(k)[None, :]
        # In the order the packets arrive: by receive time, players interleaved at random (not in
        # the order of their rows, which would hand validation its records as a sequential scan).
        arrive = np.lexsort((rng.random((p, k))[used], recv[used]))
        actor = np.broadcast_to(ids[:, None], (p, k))
        return ActionBatch(
            actor=actor[used][arrive], seq=seq[used][arrive], kind=kind[used][arrive].astype(np.int8),
            target=target[used][arrive], client_time_ms=(event + state["clock_offset_ms"][:, None])[used][arrive],
            recv_time_ms=recv[used][arrive], x=xs[used][arrive], y=ys[used][arrive], value=hit[used][arrive],
        )

    def _over_damage(self, target: np.ndarray, kind: np.ndarray) -> np.ndarray:
        """(P, k) bool: attacks that would bring their target's hp this tick to 0 or below."""
        flat_t, flat_k = target.reshape(-1), kind.reshape(-1)
        dmg = np.where(flat_k == ActionKind.MELEE, self.damage[ActionKind.MELEE], self.damage[ActionKind.RANGED])
        dmg = np.where(flat_t != 0, dmg, 0.0)
        order = np.argsort(flat_t, kind="stable")
        st, sd = flat_t[order], dmg[order]
        total = np.cumsum(sd)
        group_start = np.r_[True, st[1:] != st[:-1]]
        before = np.maximum.accumulate(np.where(group_start, total - sd, 0.0))
        hp, _ = gather(self.sim.world, st, Health, "hp")
        over = np.zeros(flat_t.shape[0], np.bool_)
        over[order] = (st != 0) & (total - before >= hp)
        return over.reshape(target.shape)
