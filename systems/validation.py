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
  plus ``timing_slack_ms``; the stall credit covers only actions made during the silence and
  arriving with the burst that ends it; a client's clock does not run backwards, so a newer
  sequence number may not carry a time before the newest accepted one's; the rewind window
  only bounds how far back an event is placed; a sequence number is accepted once, out of
  order within 64 (``replayed_seq``);
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
from systems.actions import SPELL_HEAL, TARGETED, ActionBatch, ActionKind, Refusal, by_kind
from systems.columns import (Distinct, SlotMarks, gather, gather_fields, has_component, owner_order, scatter,
                             scatter_fields)
from systems.components import Health, Link, Loot, Player, Position
from systems.obstacles import inside_any, obstacle_arrays, segment_blocked



def _same_dtype_fields(component, dtype) -> tuple[str, ...]:
    """A component's fields of one dtype, in the order of the table block that holds them."""
    return tuple(f for f in component.fields if component.dtype[f] == np.dtype(dtype))


# An actor's record is read and written where it lives: the float64 and int64 blocks of Player
# and the float64 block of Link, each seen as (rows, fields), plus Health.dead and
# Player.connected; the kernel indexes them by these positions.
_PLAYER_F8 = _same_dtype_fields(Player, np.float64)
_PLAYER_I8 = _same_dtype_fields(Player, np.int64)
_LINK_F8 = _same_dtype_fields(Link, np.float64)
(_MOVE, _X, _Y, _RTT, _JITTER, _OFFSET, _SPEED, _LIFE, _MELEE, _RANGED, _CAST, _TOKENS, _TOKENS_MS) = (
    _PLAYER_F8.index(f) for f in ("last_move_ms", "last_x", "last_y", "rtt_ms", "jitter_ms", "clock_offset_ms",
                                  "speed_mps", "life_start_ms", "last_melee_ms", "last_ranged_ms", "last_cast_ms",
                                  "tokens", "tokens_ms"))
_SEQ, _SEQ_WINDOW = (_PLAYER_I8.index(f) for f in ("last_seq", "seq_window"))
_RECV, _GAP, _GAP_END = (_LINK_F8.index(f) for f in ("last_recv_ms", "gap_ms", "gap_end_ms"))
# Rules, in one array for the kernel.
LIMITS = ("future_tolerance_ms", "stale_limit_ms", "rewind_window_ms", "speed_tolerance", "min_x", "min_y", "max_x",
          "max_y", "max_speed_mps", "teleport_m", "stall_gap_ms", "melee_interval_ms", "ranged_interval_ms",
          "cast_cooldown_ms", "max_actions_per_s", "action_burst", "timing_slack_ms")
(_FUTURE, _STALE, _WINDOW, _TOL, _X0, _Y0, _X1, _Y1, _MAXSPEED, _TELEPORT, _STALL, _MELEE_IV, _RANGED_IV, _CAST_IV,
 _RATE, _BURST, _SLACK) = range(len(LIMITS))


# The per-action checks are inlined into the kernel: a call passing arrays costs more than a check.
@njit(inline="always", **JIT)
def _seq_fresh(last_seq, window, s):
    """True when sequence number ``s`` was never accepted: above ``last_seq``, or within the
    64 below it with its bit of ``window`` clear."""
    if s > last_seq:
        return True
    back = last_seq - s
    return back < 64 and ((window >> back) & 1) == 0


@njit(inline="always", **JIT)
def _judge_target(kind, ts, t, x, y, reach_m, rtt_ms, limits, occluders, heal):
    """Refusal code (0 if none) for a targeted action from (x, y) on row ``t`` of ``ts``, the
    (t, 5) float64 ``target_state`` (has Health, dead, x, y, flags: 1 player, 2 has loot, 4 a
    chest, 8 hit by an action of this tick, so it may die before the loot takes effect).
    Rows are indexed, not sliced: a view per action would cost more than the checks."""
    flags = int(ts[t, 4])
    if ts[t, 0] == 0.0:
        return 9  # UNKNOWN_TARGET
    if kind == 5 and (flags & 2) == 0:
        return 13  # BAD_TARGET: nothing to loot
    if kind == 5 and ts[t, 1] == 0.0 and (flags & 12) == 0:
        return 15  # TARGET_NOT_DEAD: alive, not a chest, and nobody is hitting it this tick
    if kind != 5 and ts[t, 1] != 0.0:
        return 10  # TARGET_DEAD
    if kind == 6 and (flags & 1) == 0:
        return 13  # BAD_TARGET: trade with a non-player
    # Lag allowance: the target may have moved while the action travelled.
    allow = reach_m * (1.0 + limits[_TOL]) + limits[_MAXSPEED] * (rtt_ms + limits[_WINDOW]) / 1000.0
    if np.sqrt((ts[t, 2] - x) ** 2 + (ts[t, 3] - y) ** 2) > allow:
        return 11  # OUT_OF_REACH
    if (kind == 3 or (kind == 4 and not heal)) and segment_blocked(occluders, x, y, ts[t, 2], ts[t, 3]):
        return 19  # NOT_VISIBLE
    return 0


@njit(inline="always", **JIT)
def _judge_position(x, y, t_ms, run, a, speed_mps, limits, walls):
    """(refusal code or 0, speed ratio) for the position claim (x, y) at client time t_ms,
    against the actor's record ``run[a]`` (Player's float64 block, read). The ratio is the
    distance over what top speed allows in the time (1.0 = exactly top speed; NaN when not
    judged)."""
    if not (limits[_X0] <= x <= limits[_X1] and limits[_Y0] <= y <= limits[_Y1]):
        return 7, np.nan  # OUT_OF_BOUNDS
    if inside_any(walls, x, y):
        return 18, np.nan  # BLOCKED
    # Either way round: a late packet is checked against a newer claim.
    dt_s = abs(t_ms - run[a, _MOVE]) / 1000.0
    dist = np.sqrt((x - run[a, _X]) ** 2 + (y - run[a, _Y]) ** 2)
    ratio = dist / (speed_mps * dt_s) if dt_s > 0.0 and dist > 0.0 else 0.0
    allowed = speed_mps * (1.0 + limits[_TOL]) * dt_s + 1e-6
    if dist > allowed:
        return (17 if dist > allowed + limits[_TELEPORT] else 8), ratio  # TELEPORT, TOO_FAST
    return 0, ratio


@njit(inline="always", **JIT)
def _judge_rate(kind, t_ms, run, a, limits):
    """Refusal code (0 if none) for the weapon intervals and the action-rate bucket."""
    if kind == 2 and abs(t_ms - run[a, _MELEE]) < limits[_MELEE_IV]:
        return 20  # COOLDOWN
    if kind == 3 and abs(t_ms - run[a, _RANGED]) < limits[_RANGED_IV]:
        return 20
    if kind == 4 and abs(t_ms - run[a, _CAST]) < limits[_CAST_IV]:
        return 20
    tokens = min(limits[_BURST], run[a, _TOKENS] + max(t_ms - run[a, _TOKENS_MS], 0.0) * limits[_RATE] / 1000.0)
    if tokens < 1.0:
        return 21  # RATE_LIMIT
    return 0


@njit(inline="always", **JIT)
def _accept(kind, s, t_ms, x, y, run, seqs, a, limits):
    """Move the actor's record on for an accepted action: ``run[a]`` (Player's float64 block)
    and ``seqs[a]`` (its int64 block: last sequence number and anti-replay window)."""
    last = seqs[a, _SEQ]
    if s > last:
        shift = np.int64(s - last)
        seqs[a, _SEQ_WINDOW] = (seqs[a, _SEQ_WINDOW] << shift) | 1 if shift < 64 else np.int64(1)
        seqs[a, _SEQ] = s
    else:
        seqs[a, _SEQ_WINDOW] |= np.int64(1) << np.int64(last - s)
    if t_ms >= run[a, _MOVE]:  # a late packet does not move the actor back
        run[a, _MOVE] = t_ms
        run[a, _X] = x
        run[a, _Y] = y
    if kind == 2:
        run[a, _MELEE] = max(run[a, _MELEE], t_ms)
    elif kind == 3:
        run[a, _RANGED] = max(run[a, _RANGED], t_ms)
    elif kind == 4:
        run[a, _CAST] = max(run[a, _CAST], t_ms)
    tokens = min(limits[_BURST], run[a, _TOKENS] + max(t_ms - run[a, _TOKENS_MS], 0.0) * limits[_RATE] / 1000.0)
    run[a, _TOKENS] = tokens - 1.0
    run[a, _TOKENS_MS] = max(run[a, _TOKENS_MS], t_ms)


@njit(**JIT)
def _validate(order, inverse, arow, is_player, actor, target, seq, client_ms, kind, x, y, recv_ms, value, t_row,
              targeted, run, seqs, link, dead, connected, target_state, reach_m, limits, walls, occluders, status,
              event_ms, excess_ms, speed_ratio):
    """Check actions one actor at a time, in sequence-number order.

    order: (n,) int64 action indices in the order to judge them: each actor's in sequence-number
    order (``owner_order``);
    inverse: (n,) int64 the actor of each, -1 none; arow: (u,) int64 each actor's row in the
    record arrays below.
    actor, target, seq: (n,) int64; client_ms, x, y, recv_ms, value: (n,) float64; kind: (n,)
    int8, read. t_row: (n,) int64 row of each action's target in ``target_state`` (-1 none).
    targeted: (8,) bool by kind, read.
    is_player: (u,) bool per actor, read.
    run: (rows, len(_PLAYER_F8)) float64, seqs: (rows, len(_PLAYER_I8)) int64 and link:
    (rows, len(_LINK_F8)) float64 (Player's and Link's blocks, or gathered copies in the same
    layout), read and written: measured link figures (read), and the record accepted actions
    move on (position, weapon clocks, rate bucket, sequence window) and arrivals (Link).
    dead, connected: (rows,) uint8, read.
    target_state: (t, 5) float64, read (see ``_judge_target``). reach_m: (8,) by kind.
    limits: (len(LIMITS),) float64. walls, occluders: (k, 4) float64 rectangles; all read.
    status: (n,) int16, read and written (only 0 entries are judged).
    event_ms: (n,) float64, written: estimated true event time, clamped to the rewind window.
    excess_ms: (n,) float64, written: how much later than its one-way delay explains the
        action arrived, outside stalls (NaN during a stall); evidence for the anomaly score.
    speed_ratio: (n,) float64, written where the position was judged (see ``_judge_position``).
    """
    for k in range(order.shape[0]):
        i = order[k]
        a = inverse[i]
        if a < 0:
            continue
        r = arow[a]
        excess_ms[i] = np.nan
        if status[i] == 0 and not is_player[a]:
            status[i] = 2  # UNKNOWN_ACTOR: not a player
        elif status[i] == 0 and connected[r] == 0:
            status[i] = 16  # DISCONNECTED
        elif status[i] == 0 and targeted[kind[i]] and target[i] == actor[i]:
            status[i] = 13  # BAD_TARGET: an actor targeting itself is never an interaction
        if status[i] != 0:
            continue
        rtt = run[r, _RTT]
        s = seq[i]
        t_ms = client_ms[i] - run[r, _OFFSET]  # the client's time on our clock
        kd = int(kind[i])
        recv = recv_ms[i]
        heal = kd == 4 and value[i] == 1.0
        excess = recv - t_ms - 0.5 * rtt
        gap = link[r, _GAP]
        gap_end = link[r, _GAP_END]
        if recv - link[r, _RECV] > limits[_STALL]:  # the link was silent: this burst follows a stall
            gap = min(recv - link[r, _RECV], limits[_STALE])
            gap_end = recv
        # What the stall queued arrives at once when it ends: credit for that burst only, and
        # only for actions made during the silence, not before it began (gap_end - gap).
        link_err = 4.0 * run[r, _JITTER] + limits[_SLACK]
        made_in_gap = t_ms >= gap_end - gap - 0.5 * rtt - link_err
        # and only for what arrives with the burst (within the link's error of its first
        # packet): a packet made during a stall does not trail in long after the others.
        credit = gap if recv - gap_end <= link_err and made_in_gap else 0.0
        last_seq = seqs[r, _SEQ]
        if dead[r] != 0 or t_ms < run[r, _LIFE]:
            status[i] = 3  # ACTOR_DEAD (or the action belongs to a life that ended)
        elif t_ms > recv + limits[_FUTURE]:
            status[i] = 5  # FUTURE_TIMESTAMP
        elif excess > limits[_STALE]:
            status[i] = 6  # STALE_TIMESTAMP
        elif not _seq_fresh(last_seq, seqs[r, _SEQ_WINDOW], s):
            status[i] = 4  # REPLAYED_SEQ: seen before, or older than the window
        elif excess > link_err + credit:
            status[i] = 22  # FORGED_TIMESTAMP: earlier than the measured link can explain
        elif s > last_seq and t_ms < run[r, _TOKENS_MS] - link_err:
            status[i] = 22  # FORGED_TIMESTAMP: a newer action dated before an older one
        else:
            status[i], speed_ratio[i] = _judge_position(x[i], y[i], t_ms, run, r, run[r, _SPEED], limits, walls)
            if status[i] == 0:
                status[i] = _judge_rate(kd, t_ms, run, r, limits)
            if status[i] == 0 and kd != 1 and kd != 7:
                tr = t_row[i]
                if tr < 0:
                    status[i] = 9  # UNKNOWN_TARGET
                else:
                    status[i] = _judge_target(kd, target_state, tr, x[i], y[i], reach_m[kd], rtt, limits, occluders,
                                              heal)
        if status[i] == 0:
            _accept(kd, s, t_ms, x[i], y[i], run, seqs, r, limits)
            event_ms[i] = max(t_ms, recv - 0.5 * rtt - limits[_WINDOW])
        if credit <= 0.0 and status[i] != 3:
            excess_ms[i] = excess
        # Every packet that arrived tells about the link, valid or not.
        link[r, _RECV] = max(link[r, _RECV], recv)
        link[r, _GAP] = gap
        link[r, _GAP_END] = gap_end


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
        self.reach = by_kind(melee=r.melee_reach_m, ranged=r.ranged_range_m, cast=r.cast_range_m,
                             loot=r.loot_reach_m, trade=r.trade_reach_m)
        self.walls, self.occluders = obstacle_arrays(defn)
        self.targeted = np.zeros(8, np.bool_)
        self._marks = SlotMarks()
        self.targeted[[int(k) for k in TARGETED]] = True

    def run(self, world, ctx) -> None:
        batch: ActionBatch = world.resources[ActionBatch]
        if batch.n == 0:
            return
        # Each actor's record is read and written where it lives when all of them live in one
        # table (the usual case); else through gathered copies in the same layout.
        actors = Distinct(world, batch.actor, self._marks)
        batch.refuse(actors.inverse < 0, Refusal.UNKNOWN_ACTOR)
        at = actors.at
        sole = at.sole_table()
        if sole is not None and all(world.tables[sole[0]].has(c) for c in (Player, Link, Health)):
            record = self._blocks(world.tables[sole[0]])
            arow, is_player = sole[1], np.ones(actors.n, np.bool_)
        else:
            record = None
            is_player = has_component(world, at, Player)
            arow = np.arange(actors.n, dtype=np.int64)
            gathered = self._gather(world, actors.ids, at)

        # Each target's state, read once: what it is, and whether this tick's actions hit it.
        targets = Distinct(world, batch.target, self._marks)
        tat = targets.at
        tstate = np.zeros((targets.n, 5), np.float64)
        tstate[:, 1:4] = gather_fields(world, tat, ((Health, "dead"), (Position, "x"), (Position, "y")))
        tstate[:, 0] = has_component(world, tat, Health)
        chest, has_loot = gather(world, targets.ids, Loot, "container", at=tat)
        kinds = has_component(world, tat, Player) * 1.0 + has_loot * 2.0 + (chest != 0) * 4.0
        heals = (batch.kind == ActionKind.CAST) & (batch.value == SPELL_HEAL)
        hits = (batch.status == 0) & (batch.kind >= ActionKind.MELEE) & (batch.kind <= ActionKind.CAST) & ~heals
        hit = np.zeros(targets.n, np.bool_)
        hit[targets.inverse[hits & (targets.inverse >= 0)]] = True
        tstate[:, 4] = kinds + hit * 8.0

        order = owner_order(actors.inverse, batch.seq, actors.n)
        _validate(order, actors.inverse, arow, is_player, batch.actor, batch.target, batch.seq, batch.client_time_ms,
                  batch.kind, batch.x, batch.y, batch.recv_time_ms, batch.value, targets.inverse, self.targeted,
                  *(record or gathered), tstate, self.reach, self.limits, self.walls, self.occluders, batch.status,
                  batch.event_ms, batch.excess_ms, batch.speed_ratio)
        if record is None:  # write each player's final record back
            self._scatter(world, actors.ids[is_player], at.subset(is_player), [g[is_player] for g in gathered])

    @staticmethod
    def _blocks(table) -> tuple[np.ndarray, ...]:
        """A table's actor record in place: (run, seqs, link, dead, connected) as ``_validate``
        reads them ((rows, fields) views of the blocks, whole columns)."""
        return (table.block(Player, _PLAYER_F8[0])[0].T, table.block(Player, _PLAYER_I8[0])[0].T,
                table.block(Link, _LINK_F8[0])[0].T, table.column(Health, "dead"), table.column(Player, "connected"))

    @staticmethod
    def _gather(world, ids, at) -> list[np.ndarray]:
        """The actors' records (``ids``, located at ``at``) as ``_blocks`` lays them out (zeros
        where a component is missing: such an actor is refused before they are read)."""
        run = np.asfortranarray(gather_fields(world, at, tuple((Player, f) for f in _PLAYER_F8)))
        seqs = np.zeros((ids.shape[0], len(_PLAYER_I8)), np.int64, order="F")
        for k, f in enumerate(_PLAYER_I8):
            seqs[:, k] = gather(world, ids, Player, f, at=at)[0]
        link = np.asfortranarray(gather_fields(world, at, tuple((Link, f) for f in _LINK_F8)))
        dead = gather(world, ids, Health, "dead", at=at)[0]
        connected = gather(world, ids, Player, "connected", at=at)[0]
        return [run, seqs, link, dead, connected]

    @staticmethod
    def _scatter(world, ids, at, gathered) -> None:
        """Write the records ``_gather`` read (and ``_validate`` moved on) back."""
        run, seqs, link = gathered[:3]
        scatter_fields(world, at, tuple((Player, f) for f in _PLAYER_F8), run)
        for k, f in enumerate(_PLAYER_I8):
            scatter(world, ids, Player, f, seqs[:, k], at=at)
        scatter_fields(world, at, tuple((Link, f) for f in _LINK_F8), link)
