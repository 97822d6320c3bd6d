"""Tick step 2: refuse what cannot have happened, before it can take effect.

An action is checked against the actor's server-side record: alive, a sequence number it has
not used, a timestamp its measured clock offset and round trip allow, a move no faster than
its top speed over the client-clock time since its last accepted position (every action
carries the actor's position when it acted, not only moves), a target that exists
and is within reach. Moves are judged on the client's own timestamps, which carry no network
jitter, so an honest player on a bad network is not refused; lateness beyond the rewind window
is clamped (the event time is moved up), and only a timestamp too far off to be an honest
delay is refused. Accepted sequence numbers and positions are written back to ``Player``.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from ecs import Phase, System
from ecs.config import JIT
from systems.actions import SPELL_HEAL, TARGETED, ActionBatch, ActionKind, Refusal
from systems.columns import gather, locate, scatter
from systems.components import Health, Loot, Player, Position

_FUTURE, _STALE, _WINDOW, _TOL, _X0, _Y0, _X1, _Y1, _MAXSPEED = range(9)
_REACH_COLS = 8  # reach per ActionKind, indexed by kind


@njit(**JIT)
def _seq_fresh(last_seq, window, s):
    """True when sequence number ``s`` was never accepted: above ``last_seq``, or within the
    64 below it with its bit of ``window`` clear."""
    if s > last_seq:
        return True
    back = last_seq - s
    return back < 64 and ((window >> back) & 1) == 0


@njit(**JIT)
def _judge_target(kind, target, x, y, reach_m, rtt_ms, limits):
    """Refusal code (0 if none) for a targeted action from (x, y). target: (5,) float64 row of
    ``target_state`` (has Health, dead, x, y, flags: 1 player, 2 has loot, 4 a chest, 8 hit
    by an action of this tick, so it may die before the loot takes effect)."""
    flags = int(target[4])
    if target[0] == 0.0:
        return 9  # UNKNOWN_TARGET
    if kind == 5 and (flags & 2) == 0:
        return 13  # BAD_TARGET: nothing to loot
    if kind == 5 and target[1] == 0.0 and (flags & 12) == 0:
        return 15  # TARGET_NOT_DEAD: alive, not a chest, and nobody is hitting it this tick
    if kind != 5 and target[1] != 0.0:
        return 10  # TARGET_DEAD
    if kind == 6 and (flags & 1) == 0:
        return 13  # BAD_TARGET: trade with a non-player
    # Lag allowance: the target may have moved while the action travelled.
    allow = reach_m * (1.0 + limits[_TOL]) + limits[_MAXSPEED] * (rtt_ms + limits[_WINDOW]) / 1000.0
    if np.sqrt((target[2] - x) ** 2 + (target[3] - y) ** 2) > allow:
        return 11  # OUT_OF_REACH
    return 0


@njit(**JIT)
def _validate(order, actor, actor_state, seq_window, act, target_state, reach_m, limits, status, event_ms, out_state,
              out_window):
    """Check actions one actor at a time, in sequence-number order.

    order: (n,) int64, read: action indices sorted by (actor, seq).
    actor_state: (n, 9) float64, read, the actor's record per action: last_seq, last_move_ms,
        last_x, last_y, rtt_ms, clock_offset_ms, speed_mps, life_start_ms, dead (1.0 / 0.0).
    actor: (n,) int64, read. act: (n, 7) float64, read: (unused), seq, client_time_ms, kind,
        x, y, recv_time_ms.
    target_state: (n, 5) float64, read: has Health, dead, x, y, flags (see ``_judge_target``).
    seq_window: (n,) int64, read: the actor's anti-replay bitmap per action.
    reach_m: (8,) float64 by kind, read. limits: (9,) float64, read (see module constants).
    status: (n,) int16, read and written (only 0 entries are judged).
    event_ms: (n,) float64, written: estimated true event time, clamped to the window.
    out_state: (n, 4) float64, written: the actor's running last_seq, last_move_ms, last_x,
        last_y after each action (the last action of an actor holds its final record).
    out_window: (n,) int64, written: the running anti-replay bitmap, likewise.
    """
    n = order.shape[0]
    prev_actor = 0
    seq = np.int64(0)
    window = np.int64(0)
    move_ms = 0.0
    px = 0.0
    py = 0.0
    for k in range(n):
        i = order[k]
        a = actor[i]
        if k == 0 or a != prev_actor:
            prev_actor = a
            seq = np.int64(actor_state[i, 0])
            window = seq_window[i]
            move_ms = actor_state[i, 1]
            px = actor_state[i, 2]
            py = actor_state[i, 3]
        if status[i] == 0:
            rtt = actor_state[i, 4]
            s = np.int64(act[i, 1])
            t_ms = act[i, 2] - actor_state[i, 5]  # the client's time on our clock
            recv = act[i, 6]
            x = act[i, 4]
            y = act[i, 5]
            kind = int(act[i, 3])
            if actor_state[i, 8] != 0.0 or t_ms < actor_state[i, 7]:
                status[i] = 3  # ACTOR_DEAD (or the action belongs to a life that ended)
            elif t_ms > recv + limits[_FUTURE]:
                status[i] = 5  # FUTURE_TIMESTAMP
            elif recv - t_ms - 0.5 * rtt > limits[_STALE]:
                status[i] = 6  # STALE_TIMESTAMP
            elif not _seq_fresh(seq, window, s):
                status[i] = 4  # REPLAYED_SEQ: seen before, or older than the window
            elif not (limits[_X0] <= x <= limits[_X1] and limits[_Y0] <= y <= limits[_Y1]):
                status[i] = 7  # OUT_OF_BOUNDS
            elif np.sqrt((x - px) ** 2 + (y - py) ** 2) > actor_state[i, 6] * (1.0 + limits[_TOL]) * abs(t_ms - move_ms) / 1000.0 + 1e-6:
                # Every action carries the actor's position when it acted: it must be reachable
                # at top speed from the last accepted one over the client-clock time between
                # them (either way round: a late packet is checked against a newer claim).
                status[i] = 8  # TOO_FAST
            elif kind != 1 and kind != 7:  # the targeted kinds
                status[i] = _judge_target(kind, target_state[i], x, y, reach_m[kind], rtt, limits)
            if status[i] == 0:
                # Accepted: only now does the action consume its sequence number and move the actor.
                if s > seq:
                    window = (window << (s - seq)) | 1 if s - seq < 64 else np.int64(1)
                    seq = s
                else:
                    window |= np.int64(1) << (seq - s)
                if t_ms >= move_ms:  # a late packet does not move the actor back
                    move_ms = t_ms
                    px = x
                    py = y
                event_ms[i] = max(t_ms, recv - 0.5 * rtt - limits[_WINDOW])  # clamped to the rewind window
        out_state[i, 0] = seq
        out_window[i] = window
        out_state[i, 1] = move_ms
        out_state[i, 2] = px
        out_state[i, 3] = py


class ActionValidation(System):
    """Refuses impossible actions; records accepted sequence numbers and move positions."""

    phase = Phase.VALIDATE
    reads = (ActionBatch, Health, Position, Loot)
    writes = (ActionBatch, Player)

    def run(self, world, ctx) -> None:
        batch: ActionBatch = world.resources[ActionBatch]
        if batch.n == 0:
            return
        rules = ctx.defn.rules
        actor = batch.actor
        state = np.zeros((batch.n, 9), np.float64)
        fields = ("last_seq", "last_move_ms", "last_x", "last_y", "rtt_ms", "clock_offset_ms", "speed_mps", "life_start_ms")
        present = None
        at = locate(world, actor)
        for j, f in enumerate(fields):
            col, present = gather(world, actor, Player, f, at=at)
            state[:, j] = col
        batch.refuse(~present, Refusal.UNKNOWN_ACTOR)
        state[:, 8], _ = gather(world, actor, Health, "dead", at=at)
        connected, _ = gather(world, actor, Player, "connected", at=at)
        batch.refuse(present & (connected == 0), Refusal.DISCONNECTED)

        tgt = batch.target
        tstate = np.zeros((batch.n, 5), np.float64)
        tat = locate(world, tgt)
        dead, has_health = gather(world, tgt, Health, "dead", at=tat)
        tstate[:, 0] = has_health
        tstate[:, 1] = dead
        tstate[:, 2], _ = gather(world, tgt, Position, "x", at=tat)
        tstate[:, 3], _ = gather(world, tgt, Position, "y", at=tat)
        _, is_player = gather(world, tgt, Player, "last_seq", at=tat)
        chest, has_loot = gather(world, tgt, Loot, "container", at=tat)
        hits = (batch.status == 0) & np.isin(batch.kind, [int(ActionKind.MELEE), int(ActionKind.RANGED), int(ActionKind.CAST)])
        hits &= ~((batch.kind == ActionKind.CAST) & (batch.value == SPELL_HEAL))
        hit = np.isin(tgt, batch.target[hits])
        tstate[:, 4] = is_player * 1.0 + has_loot * 2.0 + (chest != 0) * 4.0 + hit * 8.0
        # An actor targeting itself is never a valid interaction.
        batch.refuse((tgt == actor) & np.isin(batch.kind, [int(k) for k in TARGETED]), Refusal.BAD_TARGET)

        act = np.empty((batch.n, 7), np.float64)
        act[:, 0] = 0.0
        act[:, 1] = batch.seq
        act[:, 2] = batch.client_time_ms
        act[:, 3] = batch.kind
        act[:, 4] = batch.x
        act[:, 5] = batch.y
        act[:, 6] = batch.recv_time_ms
        reach = np.zeros(8, np.float64)
        reach[ActionKind.MELEE] = rules.melee_reach_m
        reach[ActionKind.RANGED] = rules.ranged_range_m
        reach[ActionKind.CAST] = rules.cast_range_m
        reach[ActionKind.LOOT] = rules.loot_reach_m
        reach[ActionKind.TRADE] = rules.trade_reach_m
        x0, y0, x1, y1 = ctx.bounds
        limits = np.array(
            [rules.future_tolerance_ms, rules.stale_limit_ms, ctx.defn.world.rewind_window_ms,
             rules.speed_tolerance, x0, y0, x1, y1, ctx.max_speed_mps],
            np.float64,
        )
        order = np.lexsort((batch.seq, actor))
        out_state = np.empty((batch.n, 4), np.float64)
        window, _ = gather(world, actor, Player, "seq_window", at=at)
        out_window = np.empty(batch.n, np.int64)
        _validate(order, actor, state, window, act, tstate, reach, limits, batch.status, batch.event_ms, out_state,
                  out_window)

        # Write back each actor's final record: its last action in (actor, seq) order.
        sorted_actor = actor[order]
        last = order[np.r_[sorted_actor[1:] != sorted_actor[:-1], True]]
        last = last[present[last]]
        lat = (at[0][last], at[1][last])
        for j, f in enumerate(("last_seq", "last_move_ms", "last_x", "last_y")):
            scatter(world, actor[last], Player, f, out_state[last, j], at=lat)
        scatter(world, actor[last], Player, "seq_window", out_window[last], at=lat)
