"""Tick step 2: refuse what cannot have happened, before it can take effect.

Each action is checked against the actor's server-side record, one actor at a time in
sequence-number order, and refused with a reason code when it is impossible:

- life and link: the actor must be alive and connected; the action must not come from a life
  that has ended (its time precedes the last respawn);
- timing: the client's clock (corrected by the measured offset) may not run ahead of ours
  (``future_timestamp``), nor claim anything absurdly old (``stale_timestamp``). A claim older
  than its link explains is late, not forged: the action stands, but its event is placed no
  earlier than the link explains (half the measured round trip plus four times its measured
  jitter plus ``timing_slack_ms``, plus, for the burst that ends a silence of
  ``stall_gap_ms``, that silence, for actions made during it), so a back-dated claim wins
  nothing, and how late it was is evidence for the anomaly score (``excess_ms``); a network
  with a heavy tail of delays costs an honest player nothing. What no delay explains is
  refused: a client's clock does not run backwards, so a newer sequence number may not carry
  a time before the newest accepted one's by more than the link's error
  (``forged_timestamp``); the rewind window bounds how far back any event is placed; a
  sequence number is accepted once, out of order within 64 (``replayed_seq``);
- position: every action carries where the actor was when it acted. The claim must lie in the
  world and outside blocked space, and be reachable at top speed from the last accepted one
  over the time between their client timestamps (``too_fast``; a jump far beyond that is a
  ``teleport``). Judged on client timestamps, which carry no network jitter, an honest player
  on a bad network, even bursting after a stall, is never refused;
- rates: a weapon's interval between swings, shots or casts (``cooldown``), and a token bucket
  on deliberate actions (``rate_limit``); position updates, which clients send at their own
  fixed rate (10-60 Hz), are bounded by the speed check instead (a flood of them is the
  connection's rate cap's to stop);
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
from systems.actions import (LOOT, SEEN_CONTAINER, SEEN_DEAD, SEEN_X, SEEN_Y, SPELL_HEAL, TARGETED, ActionBatch,
                             by_kind, read_targets)
from systems.columns import (Distinct, SlotMarks, block_fields, gather, gather_fields, has_component, owner_walk,
                             scatter, scatter_fields, sole_table)
from systems.components import Health, Link, Loot, Player, Position, Velocity
from systems.obstacles import inside_any, obstacle_arrays, segment_blocked



# An actor's record is read and written where it lives: the float64 and int64 blocks of Player
# and the float64 block of Link, each seen as (rows, fields), plus Health.dead and
# Player.connected; the kernel indexes them by these positions.
_PLAYER_F8 = block_fields(Player, np.float64)
_PLAYER_I8 = block_fields(Player, np.int64)
_LINK_F8 = block_fields(Link, np.float64)
(_MOVE, _X, _Y, _RTT, _JITTER, _OFFSET, _SPEED, _LIFE, _MELEE, _RANGED, _CAST, _TOKENS, _TOKENS_MS) = (
    _PLAYER_F8.index(f) for f in ("last_move_ms", "last_x", "last_y", "rtt_ms", "jitter_ms", "clock_offset_ms",
                                  "speed_mps", "life_start_ms", "last_melee_ms", "last_ranged_ms", "last_cast_ms",
                                  "tokens", "tokens_ms"))
_SEQ, _SEQ_WINDOW = (_PLAYER_I8.index(f) for f in ("last_seq", "seq_window"))
_RECV, _GAP, _GAP_END = (_LINK_F8.index(f) for f in ("last_recv_ms", "gap_ms", "gap_end_ms"))
# Rules, in one tuple for the kernel.
LIMITS = ("future_tolerance_ms", "stale_limit_ms", "rewind_window_ms", "speed_tolerance", "min_x", "min_y", "max_x",
          "max_y", "max_speed_mps", "teleport_m", "stall_gap_ms", "melee_interval_ms", "ranged_interval_ms",
          "cast_cooldown_ms", "max_actions_per_s", "action_burst", "timing_slack_ms")
(_FUTURE, _STALE, _WINDOW, _TOL, _X0, _Y0, _X1, _Y1, _MAXSPEED, _TELEPORT, _STALL, _MELEE_IV, _RANGED_IV, _CAST_IV,
 _RATE, _BURST, _SLACK) = range(len(LIMITS))


# The per-action checks are inlined into the kernel and take scalars (the limits as a tuple): an
# array handed to a helper costs a reference-count pair per action, more than the checks.
@njit(inline="always", **JIT)
def _seq_fresh(last_seq, window, s):
    """True when sequence number ``s`` was never accepted: above ``last_seq``, or within the
    64 below it with its bit of ``window`` clear."""
    if s > last_seq:
        return True
    back = last_seq - s
    return back < 64 and ((window >> back) & 1) == 0


@njit(inline="always", **JIT)
def _judge_target(kind, what, dead, tx, ty, x, y, reach_m, rtt_ms, limits):
    """Refusal code (0 if none) for a targeted action from (x, y) on a target at (tx, ty);
    ``what``: bits 1 player, 2 has loot, 4 a chest, 8 hit by an action of this tick (so it
    may die before the loot takes effect), 16 has Health. Sight is judged by the caller."""
    if (what & 16) == 0:
        return 9  # UNKNOWN_TARGET
    if kind == 5 and (what & 2) == 0:
        return 13  # BAD_TARGET: nothing to loot
    if kind == 5 and dead == 0.0 and (what & 12) == 0:
        return 15  # TARGET_NOT_DEAD: alive, not a chest, and nobody is hitting it this tick
    if kind != 5 and dead != 0.0:
        return 10  # TARGET_DEAD
    if kind == 6 and (what & 1) == 0:
        return 13  # BAD_TARGET: trade with a non-player
    # Lag allowance: the target may have moved while the action travelled.
    allow = reach_m * (1.0 + limits[_TOL]) + limits[_MAXSPEED] * (rtt_ms + limits[_WINDOW]) / 1000.0
    if np.sqrt((tx - x) ** 2 + (ty - y) ** 2) > allow:
        return 11  # OUT_OF_REACH
    return 0


def clock_error_ms(jitter_ms, timing_slack_ms: float):
    """How far the server's reading of a client's clock may be off (four times the link's
    measured jitter plus the slack): a time the server stamps on a client's record (a spawn,
    a respawn) is placed this much earlier, so that the client's first move after it, on the
    client's clock, is not judged on less time than it had."""
    return 4.0 * np.asarray(jitter_ms, np.float64) + timing_slack_ms


@njit(inline="always", **JIT)
def _judge_speed(x, y, t_ms, last_ms, last_x, last_y, speed_mps, limits):
    """(refusal code or 0, speed ratio) for the position claim (x, y) at client time t_ms
    against the last accepted one (last_x, last_y at last_ms). The ratio is the distance over
    what top speed allows in the time (1.0 = exactly top speed)."""
    # Either way round: a late packet is checked against a newer claim.
    dt_s = abs(t_ms - last_ms) / 1000.0
    dist = np.sqrt((x - last_x) ** 2 + (y - last_y) ** 2)
    ratio = dist / (speed_mps * dt_s) if dt_s > 0.0 and dist > 0.0 else 0.0
    allowed = speed_mps * (1.0 + limits[_TOL]) * dt_s + 1e-6
    if dist > allowed:
        return (17 if dist > allowed + limits[_TELEPORT] else 8), ratio  # TELEPORT, TOO_FAST
    return 0, ratio


@njit(inline="always", **JIT)
def _tokens(t_ms, tokens, tokens_ms, limits):
    """The action-rate bucket refilled up to client time t_ms."""
    return min(limits[_BURST], tokens + max(t_ms - tokens_ms, 0.0) * limits[_RATE] / 1000.0)


@njit(inline="always", **JIT)
def _judge_rate(kind, t_ms, last_melee, last_ranged, last_cast, tokens, tokens_ms, limits):
    """Refusal code (0 if none) for the weapon intervals and the action-rate bucket."""
    if kind == 2 and abs(t_ms - last_melee) < limits[_MELEE_IV]:
        return 20  # COOLDOWN
    if kind == 3 and abs(t_ms - last_ranged) < limits[_RANGED_IV]:
        return 20
    if kind == 4 and abs(t_ms - last_cast) < limits[_CAST_IV]:
        return 20
    if _tokens(t_ms, tokens, tokens_ms, limits) < 1.0:
        return 21  # RATE_LIMIT
    return 0


@njit(inline="always", **JIT)
def _hits(kind, value):
    """Whether an action of this kind and value hurts its target (melee, ranged, a bolt)."""
    return 2 <= kind <= 4 and not (kind == 4 and value == SPELL_HEAL)


@njit(**JIT)
def _validate(order, owner, actor, target, seq, client_ms, kind, x, y, recv_ms, value, targeted, run, seqs, link, dead,
              connected, t_table, t_row, t_state, t_what, slot_base, marks, reach_m, limits, walls, occluders, status,
              event_ms, excess_ms, speed_ratio):
    """Check actions one actor at a time, in sequence-number order.

    order: (n,) int64 action indices in the order to judge them: each actor's in sequence-number
    order (``owner_walk``); owner: (n,) int64 the row of each action's actor in the record
    arrays below, -1 when it is not a live player here (``unknown_actor``).
    actor, target, seq: (n,) int64; client_ms, x, y, recv_ms, value: (n,) float64; kind: (n,)
    int8, read. targeted: (8,) bool by kind, read.
    run: (rows, len(_PLAYER_F8)) float64, seqs: (rows, len(_PLAYER_I8)) int64 and link:
    (rows, len(_LINK_F8)) float64 (Player's and Link's blocks, or gathered copies in the same
    layout), read and written: measured link figures (read), and the record accepted actions
    move on (position, weapon clocks, rate bucket, sequence window) and arrivals (Link).
    dead, connected: (rows,) uint8, read.
    t_table, t_row: (n,) where each action's target lives (``locate_many``, -1 none); t_state:
    (n, 4) float64 its dead, x, y, Loot.container (``read_targets``); t_what: (tables,) int64
    per table, bits 1 Player, 2 Loot, 16 Health; slot_base: (tables,) int64 each table's first
    row in ``marks`` (int64 scratch, -1 everywhere on entry and on return; empty when the batch
    has no loot); all read.
    reach_m: (8,) by kind. limits: tuple in ``LIMITS`` order. walls, occluders: (k, 4) float64
    rectangles; all read.
    status: (n,) int16, read and written (only 0 entries are judged).
    event_ms: (n,) float64, written: estimated true event time, clamped to the rewind window.
    excess_ms: (n,) float64, written: how much later than its one-way delay explains the
        action arrived, outside stalls (NaN during a stall); evidence for the anomaly score.
    speed_ratio: (n,) float64, written where the position was judged (see ``_judge_speed``).
    """
    n = order.shape[0]
    # The targets this tick's attacks hit: a corpse-to-be may be looted in the same tick (only
    # loot asks, so only a batch with loot marks them).
    for i in range(n if marks.shape[0] else 0):
        if t_table[i] >= 0 and owner[i] >= 0 and status[i] == 0 and _hits(kind[i], value[i]):
            marks[slot_base[t_table[i]] + t_row[i]] = 1
    for k in range(n):
        i = order[k]
        r = owner[i]
        excess_ms[i] = np.nan
        if r < 0:
            if status[i] == 0:
                status[i] = 2  # UNKNOWN_ACTOR: not a live player here
            continue
        if status[i] == 0 and connected[r] == 0:
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
        heal = kd == 4 and value[i] == SPELL_HEAL
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
        code = 0
        if dead[r] != 0 or t_ms < run[r, _LIFE]:
            code = 3  # ACTOR_DEAD (or the action belongs to a life that ended)
        elif t_ms > recv + limits[_FUTURE]:
            code = 5  # FUTURE_TIMESTAMP
        elif excess > limits[_STALE]:
            code = 6  # STALE_TIMESTAMP
        elif not _seq_fresh(last_seq, seqs[r, _SEQ_WINDOW], s):
            code = 4  # REPLAYED_SEQ: seen before, or older than the window
        elif s > last_seq and t_ms < run[r, _TOKENS_MS] - link_err:
            code = 22  # FORGED_TIMESTAMP: a newer action dated before an older one
        elif not (limits[_X0] <= x[i] <= limits[_X1] and limits[_Y0] <= y[i] <= limits[_Y1]):
            code = 7  # OUT_OF_BOUNDS
        elif walls.shape[0] > 0 and inside_any(walls, x[i], y[i]):
            code = 18  # BLOCKED
        else:
            code, speed_ratio[i] = _judge_speed(x[i], y[i], t_ms, run[r, _MOVE], run[r, _X], run[r, _Y],
                                                run[r, _SPEED], limits)
            if code == 0 and kd != 1:  # position updates are bounded by speed, not by the bucket
                code = _judge_rate(kd, t_ms, run[r, _MELEE], run[r, _RANGED], run[r, _CAST], run[r, _TOKENS],
                                   run[r, _TOKENS_MS], limits)
            if code == 0 and kd != 1 and kd != 7:
                tt = t_table[i]
                if tt < 0:
                    code = 9  # UNKNOWN_TARGET
                else:
                    what = t_what[tt] | (4 if t_state[i, SEEN_CONTAINER] != 0.0 else 0) | (
                        8 if kd == 5 and marks[slot_base[tt] + t_row[i]] >= 0 else 0)
                    tx, ty = t_state[i, SEEN_X], t_state[i, SEEN_Y]
                    code = _judge_target(kd, what, t_state[i, SEEN_DEAD], tx, ty, x[i], y[i], reach_m[kd], rtt, limits)
                    if code == 0 and (kd == 3 or (kd == 4 and not heal)) and occluders.shape[0] > 0 and \
                            segment_blocked(occluders, x[i], y[i], tx, ty):
                        code = 19  # NOT_VISIBLE
        status[i] = code
        if code == 0:
            # Accepted: the actor's record moves on (sequence window, position, weapon clock, bucket).
            if s > last_seq:
                shift = np.int64(s - last_seq)
                seqs[r, _SEQ_WINDOW] = (seqs[r, _SEQ_WINDOW] << shift) | 1 if shift < 64 else np.int64(1)
                seqs[r, _SEQ] = s
            else:
                seqs[r, _SEQ_WINDOW] |= np.int64(1) << np.int64(last_seq - s)
            if t_ms >= run[r, _MOVE]:  # a late packet does not move the actor back
                run[r, _MOVE] = t_ms
                run[r, _X] = x[i]
                run[r, _Y] = y[i]
            if 2 <= kd <= 4:
                clock = _MELEE if kd == 2 else (_RANGED if kd == 3 else _CAST)
                run[r, clock] = max(run[r, clock], t_ms)
            run[r, _TOKENS] = _tokens(t_ms, run[r, _TOKENS], run[r, _TOKENS_MS], limits) - (0.0 if kd == 1 else 1.0)
            run[r, _TOKENS_MS] = max(run[r, _TOKENS_MS], t_ms)
            # Placed no earlier than the link explains (a late claim is clamped there: it wins
            # no contest by being back-dated) nor than the rewind window allows.
            event_ms[i] = max(t_ms, recv - 0.5 * rtt - link_err - credit, recv - 0.5 * rtt - limits[_WINDOW])
        if credit <= 0.0 and code != 3:
            excess_ms[i] = excess
        # Every packet that arrived tells about the link, valid or not.
        link[r, _RECV] = max(link[r, _RECV], recv)
        link[r, _GAP] = gap
        link[r, _GAP_END] = gap_end
    for i in range(n if marks.shape[0] else 0):
        if t_table[i] >= 0:
            marks[slot_base[t_table[i]] + t_row[i]] = -1


class ActionValidation(System):
    """Refuses impossible actions; moves accepted actors' records on."""

    phase = Phase.VALIDATE
    reads = (ActionBatch, Health, Position, Velocity, Loot)
    writes = (ActionBatch, Player, Link)

    def __init__(self, defn, max_speed_mps: float) -> None:
        r = defn.rules
        x0, y0, x1, y1 = defn.bounds
        values = dict(r.model_dump(), rewind_window_ms=defn.world.rewind_window_ms, min_x=x0, min_y=y0, max_x=x1,
                      max_y=y1, max_speed_mps=max_speed_mps)
        self.limits = tuple(float(values[k]) for k in LIMITS)
        self.reach = by_kind(melee=r.melee_reach_m, ranged=r.ranged_range_m, cast=r.cast_range_m,
                             loot=r.loot_reach_m, trade=r.trade_reach_m)
        self.walls, self.occluders = obstacle_arrays(defn)
        self.targeted = np.zeros(8, np.bool_)
        self._marks = SlotMarks()
        self._no_marks = np.empty(0, np.int64)
        self._t_what = (-1, np.empty(0, np.int64))
        self.targeted[[int(k) for k in TARGETED]] = True

    def run(self, world, ctx) -> None:
        batch: ActionBatch = world.resources[ActionBatch]
        if batch.n == 0:
            return
        # Each actor's record is read and written where it lives when all of them live in one
        # table (the usual case): indexed by row. Else through gathered copies in the same layout.
        a_table, a_row = batch.where(world, "actor")
        sole = int(sole_table(a_table))
        record = self._blocks(world.tables[sole]) if sole >= 0 else None
        if record is not None:
            owner = a_row  # -1 where the actor is not alive here
            rows = world.tables[sole].capacity
            actors = None
        else:
            actors = Distinct(world, batch.actor, self._marks)
            is_player = has_component(world, actors.at, Player)
            owner = np.where(actors.inverse >= 0, np.where(is_player, np.arange(actors.n), -1)[actors.inverse], -1)
            record = self._gather(world, actors.ids, actors.at)
            rows = actors.n

        # Each target's state, read where it lives: what it is, where, and whether it is dead.
        t_table, t_row = batch.where(world, "target")
        t_state = batch.targets_seen = read_targets(world, batch)
        if self._t_what[0] != world.structure_version:  # what each table holds, as bits
            self._t_what = (world.structure_version, np.array(
                [(1 if t.has(Player) else 0) | (2 if t.has(Loot) else 0) | (16 if t.has(Health) else 0)
                 for t in world.tables], np.int64))
        t_what = self._t_what[1]
        slot_base, marks = self._no_marks, self._no_marks
        if (batch.kind == LOOT).any():  # marks for the targets this tick's attacks hit
            slot_base = np.cumsum([0] + [t.n for t in world.tables], dtype=np.int64)
            marks = self._marks.clear_for(int(slot_base[-1]))

        order, grouped = owner_walk(owner, batch.seq, rows)
        batch.walk = (owner, order) if grouped and actors is None else None
        _validate(order, owner, batch.actor, batch.target, batch.seq, batch.client_time_ms, batch.kind, batch.x,
                  batch.y, batch.recv_time_ms, batch.value, self.targeted, *record, t_table, t_row, t_state, t_what,
                  slot_base, marks, self.reach, self.limits, self.walls, self.occluders, batch.status,
                  batch.event_ms, batch.excess_ms, batch.speed_ratio)
        if actors is not None:  # write each player's final record back
            self._scatter(world, actors.ids[is_player], actors.at.subset(is_player), [g[is_player] for g in record])

    @staticmethod
    def _blocks(table) -> tuple[np.ndarray, ...] | None:
        """A table's actor record in place: (run, seqs, link, dead, connected) as ``_validate``
        reads them ((rows, fields) views of the blocks, whole columns); None when the table's
        entities are not players. Derived once per layout of the table."""
        return table.plan("validation_record", lambda t: (
            t.block(Player, _PLAYER_F8[0])[0].T, t.block(Player, _PLAYER_I8[0])[0].T, t.block(Link, _LINK_F8[0])[0].T,
            t.full_column(Health, "dead"), t.full_column(Player, "connected"))
            if all(t.has(c) for c in (Player, Link, Health)) else None)

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
