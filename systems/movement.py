"""Tick step 3: integrate movement.

Players move by the positions their validated MOVE actions claim (the validation step has
already written the last accepted one into ``Player.last_x/last_y``); their velocity is the
displacement over the tick, for dead reckoning. NPCs wander: each keeps a heading, turns with
a small keyed-random chance each tick, heads home when past its leash, and bounces off the
world's edges. The random draws are keyed by (seed, tick, entity), so an NPC moves the same
whichever table row, thread or shard holds it.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from ecs import Phase, System
from ecs.config import JIT
from ecs.rng import key_uniform
from systems.components import Health, Npc, Player, Position, Velocity

STREAM_WANDER = 11
TURN_CHANCE_PER_S = 0.5


@njit(**JIT)
def _follow_player_moves(last_x, last_y, x, y, vx, vy, dt_s):
    """All (n,) float64. Reads last_x/last_y; writes x, y and the velocity that got there."""
    for i in range(x.shape[0]):
        vx[i] = (last_x[i] - x[i]) / dt_s
        vy[i] = (last_y[i] - y[i]) / dt_s
        x[i] = last_x[i]
        y[i] = last_y[i]


@njit(**JIT)
def _wander(ids, x, y, vx, vy, home_x, home_y, leash_m, speed_mps, dead, seed, tick, dt_s, bounds):
    """Move NPCs one tick. ids (n,) int64 and NPC columns (n,) read; x, y, vx, vy written.

    bounds: (4,) float64 min_x, min_y, max_x, max_y.
    """
    turn_p = TURN_CHANCE_PER_S * dt_s
    for i in range(ids.shape[0]):
        if dead[i] != 0 or speed_mps[i] <= 0.0:
            vx[i] = 0.0
            vy[i] = 0.0
            continue
        dx = home_x[i] - x[i]
        dy = home_y[i] - y[i]
        far = dx * dx + dy * dy > leash_m[i] * leash_m[i]
        if far:
            norm = np.sqrt(dx * dx + dy * dy)
            vx[i] = speed_mps[i] * dx / norm
            vy[i] = speed_mps[i] * dy / norm
        elif (vx[i] == 0.0 and vy[i] == 0.0) or key_uniform(seed, tick, ids[i], STREAM_WANDER, 0) < turn_p:
            angle = 2.0 * np.pi * key_uniform(seed, tick, ids[i], STREAM_WANDER, 1)
            vx[i] = speed_mps[i] * np.cos(angle)
            vy[i] = speed_mps[i] * np.sin(angle)
        nx = x[i] + vx[i] * dt_s
        ny = y[i] + vy[i] * dt_s
        if nx < bounds[0] or nx > bounds[2]:
            vx[i] = -vx[i]
            nx = min(max(nx, bounds[0]), bounds[2])
        if ny < bounds[1] or ny > bounds[3]:
            vy[i] = -vy[i]
            ny = min(max(ny, bounds[1]), bounds[3])
        x[i] = nx
        y[i] = ny


class Movement(System):
    phase = Phase.MOVE
    reads = (Player, Npc, Health)
    writes = (Position, Velocity)
    reads_others = ()  # each entity's own rows only

    def __init__(self, world) -> None:
        self._players = world.query(Player, Position, Velocity)
        self._npcs = world.query(Npc, Position, Velocity, Health)

    def run(self, world, ctx) -> None:
        dt = ctx.dt_s
        for t in self._players:
            p, pos, vel = t.columns(Player), t.columns(Position), t.columns(Velocity)
            _follow_player_moves(p.last_x, p.last_y, pos.x, pos.y, vel.vx, vel.vy, dt)
        bounds = np.asarray(ctx.bounds, np.float64)
        seed = np.uint64(ctx.rng.seed)
        for t in self._npcs:
            npc, pos, vel = t.columns(Npc), t.columns(Position), t.columns(Velocity)
            _wander(t.ids, pos.x, pos.y, vel.vx, vel.vy, npc.home_x, npc.home_y, npc.leash_m,
                    npc.speed_mps, t.column(Health, "dead"), seed, ctx.tick, dt, bounds)
