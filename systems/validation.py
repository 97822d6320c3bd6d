"""Tick step 2: refuse what cannot have happened, before it can take effect.

Each action is checked against the actor's server-side record, one actor at a time in
sequence-number order, and refused with a reason code when it is impossible:

- life and link: the actor must be alive and connected; the action must not come from a life
  that has ended (its time precedes the last respawn);
- timing: the client's clock (corrected by the measured offset) may not run ahead of ours
  (``future_timestamp``), nor claim a time older than its round trip and the rewind window
  allow (``forged_timestamp``) unless the link just stalled (a silence of ``stall_gap_ms``
  gives the burst after it that much credit), nor anything absurdly old (``stale_timestamp``).
  What the link explains is half the measured round trip plus four times its measured jitter
  plus ``timing_slack_ms``; the rewind window only bounds how far back an event is placed;
  a sequence number is accepted once, out of order within 64 (``replayed_seq``);
- position: every action carries where the actor was when it acted. The claim must lie in the
  world and outside blocked space, and be reachable at top speed from the last accepted one
  over the time between their client timestamps (``too_fast``; a jump far beyond that is a
  ``teleport``). Judged on client timestamps, which carry no network jitter, an honest player
  on a bad network, even bursting after a stall, is never refused;
- rates: a weapon's interval between swings, shots or casts (``cooldown``), and a token bucket
  on all actions (``rate_limit``);
- targets: present, alive (or, for loot, a corpse, a chest, or hit this tick), within reach
  with a lag allowance, and for ranged attacks and casts, in sight (``not_visible``).

Refusals change no game state: only an accepted action moves the actor's record on (sequence
window, position, weapon clocks, bucket), written back to ``Player``. Every packet, valid or not,
updates what the server knows of the link (``Link``: last arrival, last stall).
"""

from __future__ import annotations

import numpy as np
from numba import njit

from ecs import Phase, System
from ecs.config import JIT
from systems.actions import SPELL_HEAL, TARGETED, ActionBatch, ActionKind, Refusal
from systems.columns import gather, locate, scatter
from systems.components import Health, Link, Loot, Player, Position
from systems.obstacles import inside_any, obstacle_arrays, segment_blocked

# Running record of an actor, read from and written back to Player (in this column order).
RUNNING = ("last_seq", "last_move_ms", "last_x", "last_y", "last_melee_ms", "last_ranged_ms", "last_cast_ms",
           "tokens", "tokens_ms", "last_recv_ms", "gap_ms", "gap_end_ms")
_LINK_FIELDS = ("last_recv_ms", "gap_ms", "gap_end_ms")  # these three live in Link, the rest in Player
_SEQ, _MOVE, _X, _Y, _MELEE, _RANGED, _CAST, _TOKENS, _TOKENS_MS, _RECV, _GAP, _GAP_END = range(len(RUNNING))
# Fixed facts about an actor for this tick.
FIXED = ("rtt_ms", "clock_offset_ms", "speed_mps", "life_start_ms", "jitter_ms")
_RTT, _OFFSET, _SPEED, _LIFE, _JITTER, _DEAD = range(6)
# Rules, in one array for the kernel.
LIMITS = ("future_tolerance_ms", "stale_limit_ms", "rewind_window_ms", "speed_tolerance", "min_x", "min_y", "max_x",
          "max_y", "max_speed_mps", "teleport_m", "stall_gap_ms", "melee_interval_ms", "ranged_interval_ms",
          "cast_cooldown_ms", "max_actions_per_s", "action_burst", "timing_slack_ms")
(_FUTURE, _STALE, _WINDOW, _TOL, _X0, _Y0, _X1, _Y1, _MAXSPEED, _TELEPORT, _STALL, _MELEE_IV, _RANGED_IV, _CAST_IV,
 _RATE, _BURST, _SLACK) = range(len(LIMITS))


@njit(**JIT)
def _seq_fresh(last_seq, window, s):
    """True when sequence number ``s`` was never accepted: above ``last_seq``, or within the
    64 below it with its bit of ``window`` clear."""
    if s > last_seq:
        return True
    back = last_seq - s
    return back < 64 and ((window >> back) & 1) == 0


@njit(**JIT)
def _judge_target(kind, target, x, y, reach_m, rtt_ms, limits, occluders, heal):
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
    if (kind == 3 or (kind == 4 and not heal)) and segment_blocked(occluders, x, y, target[2], target[3]):
        return 19  # NOT_VISIBLE
    return 0


@njit(**JIT)
def _judge_position(x, y, t_ms, run, speed_mps, limits, walls):
    """(refusal code or 0, speed ratio) for the position claim (x, y) at client time t_ms,
    against the running record ``run`` ((12,) float64, read). The ratio is the distance over
    what top speed allows in the time (1.0 = exactly top speed; NaN when not judged)."""
    if not (limits[_X0] <= x <= limits[_X1] and limits[_Y0] <= y <= limits[_Y1]):
        return 7, np.nan  # OUT_OF_BOUNDS
    if inside_any(walls, x, y):
        return 18, np.nan  # BLOCKED
    # Either way round: a late packet is checked against a newer claim.
    dt_s = abs(t_ms - run[_MOVE]) / 1000.0
    dist = np.sqrt((x - run[_X]) ** 2 + (y - run[_Y]) ** 2)
    ratio = dist / (speed_mps * dt_s) if dt_s > 0.0 and dist > 0.0 else 0.0
    allowed = speed_mps * (1.0 + limits[_TOL]) * dt_s + 1e-6
    if dist > allowed:
        return (17 if dist > allowed + limits[_TELEPORT] else 8), ratio  # TELEPORT, TOO_FAST
    return 0, ratio


@njit(**JIT)
def _judge_rate(kind, t_ms, run, limits):
    """Refusal code (0 if none) for the weapon intervals and the action-rate bucket."""
    if kind == 2 and abs(t_ms - run[_MELEE]) < limits[_MELEE_IV]:
        return 20  # COOLDOWN
    if kind == 3 and abs(t_ms - run[_RANGED]) < limits[_RANGED_IV]:
        return 20
    if kind == 4 and abs(t_ms - run[_CAST]) < limits[_CAST_IV]:
        return 20
    tokens = min(limits[_BURST], run[_TOKENS] + max(t_ms - run[_TOKENS_MS], 0.0) * limits[_RATE] / 1000.0)
    if tokens < 1.0:
        return 21  # RATE_LIMIT
    return 0


@njit(**JIT)
def _accept(kind, s, t_ms, recv, x, y, run, window, limits):
    """Move the running record on for an accepted action; returns the new anti-replay window."""
    if s > run[_SEQ]:
        shift = np.int64(s - run[_SEQ])
        window = (window << shift) | 1 if shift < 64 else np.int64(1)
        run[_SEQ] = s
    else:
        window |= np.int64(1) << np.int64(run[_SEQ] - s)
    if t_ms >= run[_MOVE]:  # a late packet does not move the actor back
        run[_MOVE] = t_ms
        run[_X] = x
        run[_Y] = y
    if kind == 2:
        run[_MELEE] = max(run[_MELEE], t_ms)
    elif kind == 3:
        run[_RANGED] = max(run[_RANGED], t_ms)
    elif kind == 4:
        run[_CAST] = max(run[_CAST], t_ms)
    tokens = min(limits[_BURST], run[_TOKENS] + max(t_ms - run[_TOKENS_MS], 0.0) * limits[_RATE] / 1000.0)
    run[_TOKENS] = tokens - 1.0
    run[_TOKENS_MS] = max(run[_TOKENS_MS], t_ms)
    return window


@njit(**JIT)
def _validate(order, actor, fixed, running, window, act, target_state, reach_m, limits, walls, occluders, status,
              event_ms, excess_ms, speed_ratio):
    """Check actions one actor at a time, in sequence-number order.

    order: (n,) int64, read: action indices sorted by (actor, seq). actor: (n,) int64, read.
    fixed: (n, 6) float64, read: the actor's rtt_ms, clock_offset_ms, speed_mps,
        life_start_ms, jitter_ms (measured), dead (1.0 / 0.0), per action.
    running: (n, 12) float64, read and written: the actor's record (``RUNNING``) per action;
        on return, the last action of an actor (in ``order``) holds its final record.
    window: (n,) int64, read and written likewise: the anti-replay bitmap.
    act: (n, 7) float64, read: seq, client_time_ms, kind, x, y, recv_time_ms, value.
    target_state: (n, 5) float64, read (see ``_judge_target``). reach_m: (8,) by kind.
    limits: (len(LIMITS),) float64. walls, occluders: (k, 4) float64 rectangles; all read.
    status: (n,) int16, read and written (only 0 entries are judged).
    event_ms: (n,) float64, written: estimated true event time, clamped to the rewind window.
    excess_ms: (n,) float64, written: how much later than its one-way delay explains the
        action arrived, outside stalls (NaN during a stall); evidence for the anomaly score.
    speed_ratio: (n,) float64, written where the position was judged (see ``_judge_position``).
    """
    n = order.shape[0]
    run = np.empty(running.shape[1], np.float64)
    win = np.int64(0)
    for k in range(n):
        i = order[k]
        if k == 0 or actor[i] != actor[order[k - 1]]:
            run[:] = running[i]
            win = window[i]
        excess_ms[i] = np.nan
        if status[i] == 0:
            rtt = fixed[i, _RTT]
            s = act[i, 0]
            t_ms = act[i, 1] - fixed[i, _OFFSET]  # the client's time on our clock
            kind = int(act[i, 2])
            x = act[i, 3]
            y = act[i, 4]
            recv = act[i, 5]
            heal = kind == 4 and act[i, 6] == 1.0
            excess = recv - t_ms - 0.5 * rtt
            gap = run[_GAP]
            gap_end = run[_GAP_END]
            if recv - run[_RECV] > limits[_STALL]:  # the link was silent: this burst follows a stall
                gap = min(recv - run[_RECV], limits[_STALE])
                gap_end = recv
            # What the stall queued arrives at once when it ends: credit for that burst only.
            credit = gap if recv - gap_end <= limits[_STALL] else 0.0
            if fixed[i, _DEAD] != 0.0 or t_ms < fixed[i, _LIFE]:
                status[i] = 3  # ACTOR_DEAD (or the action belongs to a life that ended)
            elif t_ms > recv + limits[_FUTURE]:
                status[i] = 5  # FUTURE_TIMESTAMP
            elif excess > limits[_STALE]:
                status[i] = 6  # STALE_TIMESTAMP
            elif not _seq_fresh(np.int64(run[_SEQ]), win, np.int64(s)):
                status[i] = 4  # REPLAYED_SEQ: seen before, or older than the window
            elif excess > 4.0 * fixed[i, _JITTER] + limits[_SLACK] + credit:
                status[i] = 22  # FORGED_TIMESTAMP: earlier than the measured link can explain
            else:
                status[i], speed_ratio[i] = _judge_position(x, y, t_ms, run, fixed[i, _SPEED], limits, walls)
                if status[i] == 0:
                    status[i] = _judge_rate(kind, t_ms, run, limits)
                if status[i] == 0 and kind != 1 and kind != 7:
                    status[i] = _judge_target(kind, target_state[i], x, y, reach_m[kind], rtt, limits, occluders, heal)
            if status[i] == 0:
                win = _accept(kind, s, t_ms, recv, x, y, run, win, limits)
                event_ms[i] = max(t_ms, recv - 0.5 * rtt - limits[_WINDOW])
            if credit <= 0.0 and status[i] != 3:
                excess_ms[i] = excess
            # Every packet that arrived tells about the link, valid or not.
            run[_RECV] = max(run[_RECV], recv)
            run[_GAP] = gap
            run[_GAP_END] = gap_end
        running[i] = run
        window[i] = win


class ActionValidation(System):
    """Refuses impossible actions; moves accepted actors' records on."""

    phase = Phase.VALIDATE
    reads = (ActionBatch, Health, Position, Loot)
    writes = (ActionBatch, Player, Link)

    def __init__(self, defn, max_speed_mps: float) -> None:
        r = defn.rules
        x0, y0, x1, y1 = defn.bounds
        values = dict(r.model_dump(), rewind_window_ms=defn.world.rewind_window_ms, min_x=x0, min_y=y0, max_x=x1,
                      max_y=y1, max_speed_mps=max_speed_mps)
        self.limits = np.array([values[k] for k in LIMITS], np.float64)
        self.reach = np.zeros(8, np.float64)
        self.reach[ActionKind.MELEE] = r.melee_reach_m
        self.reach[ActionKind.RANGED] = r.ranged_range_m
        self.reach[ActionKind.CAST] = r.cast_range_m
        self.reach[ActionKind.LOOT] = r.loot_reach_m
        self.reach[ActionKind.TRADE] = r.trade_reach_m
        self.walls, self.occluders = obstacle_arrays(defn)

    def run(self, world, ctx) -> None:
        batch: ActionBatch = world.resources[ActionBatch]
        if batch.n == 0:
            return
        actor, tgt = batch.actor, batch.target
        at = locate(world, actor)
        fixed = np.zeros((batch.n, 6), np.float64)
        present = np.zeros(batch.n, np.bool_)
        for j, f in enumerate(FIXED):
            fixed[:, j], present = gather(world, actor, Player, f, at=at)
        fixed[:, _DEAD], _ = gather(world, actor, Health, "dead", at=at)
        running = np.empty((batch.n, len(RUNNING)), np.float64)
        for j, f in enumerate(RUNNING):
            running[:, j], _ = gather(world, actor, Link if f in _LINK_FIELDS else Player, f, at=at)
        window, _ = gather(world, actor, Player, "seq_window", at=at)
        connected, _ = gather(world, actor, Player, "connected", at=at)
        batch.refuse(~present, Refusal.UNKNOWN_ACTOR)
        batch.refuse(present & (connected == 0), Refusal.DISCONNECTED)
        # An actor targeting itself is never a valid interaction.
        batch.refuse((tgt == actor) & np.isin(batch.kind, [int(k) for k in TARGETED]), Refusal.BAD_TARGET)

        tat = locate(world, tgt)
        tstate = np.zeros((batch.n, 5), np.float64)
        dead, has_health = gather(world, tgt, Health, "dead", at=tat)
        tstate[:, 0], tstate[:, 1] = has_health, dead
        tstate[:, 2], _ = gather(world, tgt, Position, "x", at=tat)
        tstate[:, 3], _ = gather(world, tgt, Position, "y", at=tat)
        _, is_player = gather(world, tgt, Player, "last_seq", at=tat)
        chest, has_loot = gather(world, tgt, Loot, "container", at=tat)
        heals = (batch.kind == ActionKind.CAST) & (batch.value == SPELL_HEAL)
        hits = (batch.status == 0) & np.isin(batch.kind, [2, 3, 4]) & ~heals
        hit = np.isin(tgt, batch.target[hits])
        tstate[:, 4] = is_player * 1.0 + has_loot * 2.0 + (chest != 0) * 4.0 + hit * 8.0

        act = np.empty((batch.n, 7), np.float64)
        act[:, 0] = batch.seq
        act[:, 1] = batch.client_time_ms
        act[:, 2] = batch.kind
        act[:, 3] = batch.x
        act[:, 4] = batch.y
        act[:, 5] = batch.recv_time_ms
        act[:, 6] = batch.value
        order = np.lexsort((batch.seq, actor))
        _validate(order, actor, fixed, running, window, act, tstate, self.reach, self.limits, self.walls,
                  self.occluders, batch.status, batch.event_ms, batch.excess_ms, batch.speed_ratio)

        # Write back each actor's final record: its last action in (actor, seq) order.
        sorted_actor = actor[order]
        last = order[np.r_[sorted_actor[1:] != sorted_actor[:-1], True]]
        last = last[present[last]]
        lat = at.subset(last)
        for j, f in enumerate(RUNNING):
            scatter(world, actor[last], Link if f in _LINK_FIELDS else Player, f, running[last, j], at=lat)
        scatter(world, actor[last], Player, "seq_window", window[last], at=lat)
