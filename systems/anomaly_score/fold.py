"""The fold: one tick's actions into their actors' ``CheatStats``, in each actor's client-time
order. What each test later weighs is counted here (see the package's docstring); the tests of
moves run here too, as the fold leaves each actor, while its row is in cache."""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from ecs.config import JIT
from systems.actions import SEEN_VX, SEEN_VY, SEEN_X, SEEN_Y, SPELL_HEAL
from systems.anomaly_score.acquisition import ACQUIRE_READY_MS, ACQUIRE_WINDOW_MS
from systems.anomaly_score.aim import _shot_chance, difficulty_bin
from systems.anomaly_score.layout import (AIM_CHANGED, EXCESS_CHANGED, EXCESS_LATE, EXCESS_N, FLAG_SPEED, FLAG_TICK,
                                          FLAGS, GATE_CU, GATE_N, GATE_QU, GATE_SPAN, GATE_SQ, GATE_SUM, HITS, HITS_B,
                                          HURT_MS, INT_N, INT_SQ, INT_SUM, LAST_CAST, LAST_MELEE, LAST_RANGED,
                                          LAST_T_MS, LOOT_CHANGED, LOOTS, MIN_REPEAT_INTERVALS, OFFSET, PREV_INT,
                                          ECON_N, R_ECONOMY, R_MOVE, R_RATE, R_TIMING, RARES, REACT_CHANGED, REACT_N,
                                          REACT_SQ, REACT_SUM, REFUSED, REPEATS, REPEATS_CHANGED, RHYTHM_CHANGED, RTT,
                                          SHOTS, SHOTS_B, SPEED_CHANGED, SPEED_CUSUM, SPEED_CUSUM_H, SPEED_CUSUM_K,
                                          SWITCHED, TH_ACQ_FAST_MS, TH_ACQ_QUICK_MS, TH_EXCESS_MS, TH_GATE_SHARE,
                                          TOUCHED)


@njit(**JIT)
def _fold(order, grouped, owner, kind, status, value, client_ms, target, x, y, effect, rare, excess, speed_ratio,
          seen, run, last_target, dead_ids, dead_tick, tick_ms, refusal_class, interval_ms, range_m, speed_ref, stats,
          th, tick, dirty, hurt, pending):
    """Fold one tick's actions into the per-player statistics, in each actor's client-time order.

    order: (n,) int64 every action once, each actor's in client-time order (``owner_walk``);
    grouped: whether ``order`` holds each actor's actions together: then, as it leaves an
    actor, the fold runs the tests of every move (speed, delay) on its row while it is in
    cache, and ``_judge`` has only the others left (``tick``: the flags' tick);
    owner: (n,) int64 each action's actor's row in ``run``, ``last_target``, ``stats`` and
    ``dirty`` (-1: not scored). kind, status, value, client_ms, target, x, y, excess,
    speed_ratio: the batch's columns; effect, rare: ``ActionEffects.effect`` and
    ``looted_rare``; seen: (n, SEEN_FIELDS) each target as validation saw it
    (``ActionBatch.targets_seen``; velocity read for ranged attacks); run: (rows,
    len(PLAYER_F8)) the actors' Player float64 block; dead_ids, dead_tick: ``Deaths``;
    tick_ms: the tick's length; refusal_class: (32,) int64; interval_ms: (8,) weapon interval
    by kind; range_m, speed_ref: the shot model's range and reference speed; th: from
    ``thresholds``; all read.
    last_target: (rows,) int64 and stats: (rows, len(STAT_FIELDS)) float64 (CheatStats, or
    gathered copies of its rows), read and written. dirty: (rows,) int64, 0 on entry for every
    row, written: what changed of each row (``TOUCHED``, ``AIM_CHANGED``, ...), for ``_judge``.
    hurt: (n,) bool, written: the accepted attacks that did harm.
    pending: (n, 2) int64 scratch, written: the first attacks on a new foe that are target
    acquisitions if that foe was surely in reach all along (``_acquired`` decides), as (action,
    bin: 0 fast, 1 quick, 2 neither).

    Returns (the rows touched, in order of first touch; how many acquisitions are pending).
    """
    touched = np.empty(order.shape[0], np.int64)
    m = 0
    q = 0
    n = order.shape[0]
    left = -1
    for k in range(n + 1):
        r = owner[order[k]] if k < n else -1
        if grouped and left >= 0 and r != left:  # the last of this actor's actions: judge its moves
            d = dirty[left]
            f = 0
            if (d & SPEED_CHANGED) and stats[left, SPEED_CUSUM] > SPEED_CUSUM_H:
                f |= FLAG_SPEED
            dirty[left] = d & ~SPEED_CHANGED
            if f != 0:
                if stats[left, FLAG_TICK] < 0.0:
                    stats[left, FLAG_TICK] = tick
                stats[left, FLAGS] = float(int(stats[left, FLAGS]) | f)
        left = r  # the actor of the action before
        if k == n:
            break
        i = order[k]
        kd = kind[i]
        st = status[i]
        attack = 2 <= kd <= 4 and not (kd == 4 and value[i] == SPELL_HEAL)
        hurt[i] = attack and st == 0 and effect[i] > 0.0
        if r < 0:
            continue
        if dirty[r] == 0:
            touched[m] = r
            m += 1
        dirty[r] |= TOUCHED
        if kd == 6 or kd == 7:
            stats[r, ECON_N] += 1.0
        if st != 0:
            c = refusal_class[st]
            if 1 <= c <= 4:
                dirty[r] |= REFUSED
            if c == 1:
                stats[r, R_MOVE] += 1.0
            elif c == 2:
                stats[r, R_TIMING] += 1.0
            elif c == 3:
                stats[r, R_RATE] += 1.0
            elif c == 4:
                stats[r, R_ECONOMY] += 1.0
        if not np.isnan(speed_ratio[i]):
            stats[r, SPEED_CUSUM] = max(0.0, stats[r, SPEED_CUSUM] + speed_ratio[i] - SPEED_CUSUM_K)
            dirty[r] |= SPEED_CHANGED
        if kd == 1:  # a move is scored on its speed alone (a back-dated move wins nothing)
            continue
        t = client_ms[i] - run[r, OFFSET]  # the client's time on our clock
        rtt = run[r, RTT]
        # The rhythm of deliberate actions (moves are the client's heartbeat), refused or not
        # when only the target was wrong: a bot firing at nothing still keeps its beat.
        # An attack soon after its weapon allowed (within ``gate_share`` of its interval) times the
        # weapon and the client's frames, not the player: it is no interval of the rhythm (how long
        # after the weapon was ready it came is counted instead).
        gated = attack and t - stats[r, LAST_MELEE + kd - 2] < interval_ms[kd] * (1.0 + th[TH_GATE_SHARE])
        if gated:
            if st == 0 or refusal_class[st] == 5:
                after = t - stats[r, LAST_MELEE + kd - 2] - interval_ms[kd]  # how long after it was ready
                if after >= 0.0:
                    stats[r, GATE_N] += 1.0
                    stats[r, GATE_SUM] += after
                    sq = after * after
                    stats[r, GATE_SQ] += sq
                    stats[r, GATE_CU] += sq * after
                    stats[r, GATE_QU] += sq * sq
                    stats[r, GATE_SPAN] += interval_ms[kd] * th[TH_GATE_SHARE]
                    dirty[r] |= RHYTHM_CHANGED
        if (st == 0 or refusal_class[st] == 5) and not gated:
            if stats[r, LAST_T_MS] > -1e17:
                dt = t - stats[r, LAST_T_MS]
                if 0.0 < dt < 5000.0:  # pauses are not rhythm
                    stats[r, INT_N] += 1.0
                    dirty[r] |= RHYTHM_CHANGED
                    stats[r, INT_SUM] += dt
                    stats[r, INT_SQ] += dt * dt
                    # The same interval as the last one (within 5 %), or two or three times it,
                    # or a half or a third (beats skipped): rare for people, a bot's clock.
                    prev = stats[r, PREV_INT]
                    if prev > 0.0:
                        for mult in (1.0, 2.0, 0.5, 3.0, 1.0 / 3.0):
                            if abs(dt - mult * prev) <= 0.05 * mult * prev:
                                stats[r, REPEATS] += 1.0
                                dirty[r] |= REPEATS_CHANGED
                                break
                    if stats[r, INT_N] == MIN_REPEAT_INTERVALS:  # the repeat test may run from now on
                        dirty[r] |= REPEATS_CHANGED
                    stats[r, PREV_INT] = dt
        if st == 0 or refusal_class[st] == 5:
            stats[r, LAST_T_MS] = max(t, stats[r, LAST_T_MS])
        if attack and (st == 0 or st == 10):  # a foe that died before the attack landed is a foe
            foe = target[i]
            clock = LAST_MELEE + kd - 2
            if foe != last_target[r]:
                # The first attack of the tick on another foe than the one it started with,
                # which died since our last attack on it: a reaction, timed from when the
                # client saw the death, if the weapon was ready (or nearly) by then (and, as
                # ``_acquired`` checks, the new foe in reach: else the attack would time the
                # weapon or the approach, not the eyes).
                if (dirty[r] & SWITCHED) == 0 and dead_ids.shape[0] > 0:
                    j = np.searchsorted(dead_ids, last_target[r])
                    last = max(stats[r, LAST_MELEE], stats[r, LAST_RANGED], stats[r, LAST_CAST])
                    if j < dead_ids.shape[0] and dead_ids[j] == last_target[r] and \
                            (dead_tick[j] + 1.0) * tick_ms >= last:
                        seen_ms = (dead_tick[j] + 1.0) * tick_ms + 0.5 * rtt
                        reaction = t - seen_ms
                        ready = stats[r, clock] + interval_ms[kd] <= seen_ms + ACQUIRE_READY_MS
                        if ready and 0.0 < reaction < ACQUIRE_WINDOW_MS:
                            pending[q, 0] = i
                            pending[q, 1] = 0 if reaction < th[TH_ACQ_FAST_MS] else (
                                1 if reaction < th[TH_ACQ_QUICK_MS] else 2)
                            q += 1
                dirty[r] |= SWITCHED
                last_target[r] = foe
            stats[r, clock] = max(stats[r, clock], t)
        if st != 0:
            continue
        if not np.isnan(excess[i]):
            stats[r, EXCESS_N] += 1.0
            dirty[r] |= EXCESS_CHANGED
            if excess[i] > th[TH_EXCESS_MS]:
                stats[r, EXCESS_LATE] += 1.0
        if kd == 2 or kd == 3 or kd == 4:
            if stats[r, HURT_MS] > -1e17:
                # An attack sent before the client could see the hit is no answer to it.
                reaction = t - stats[r, HURT_MS] - 0.5 * rtt
                if reaction > 0.0:
                    if reaction < 2000.0:
                        stats[r, REACT_N] += 1.0
                        dirty[r] |= REACT_CHANGED
                        stats[r, REACT_SUM] += reaction
                        stats[r, REACT_SQ] += reaction * reaction
                    stats[r, HURT_MS] = -1e18
        if kd == 3:
            # Where the shot was aimed, as validation saw the target: its base chance (``_shot_chance``).
            dist = math.sqrt((seen[i, SEEN_X] - x[i]) ** 2 + (seen[i, SEEN_Y] - y[i]) ** 2)  # (hypot is slower)
            b = _shot_chance(dist, range_m, math.sqrt(seen[i, SEEN_VX] ** 2 + seen[i, SEEN_VY] ** 2), speed_ref)
            b = min(max(b, 1e-3), 1.0)
            stats[r, SHOTS] += 1.0
            at = difficulty_bin(b)
            stats[r, SHOTS_B + at] += 1.0
            if value[i] >= 0.5:  # a claimed hit
                stats[r, HITS] += 1.0
                stats[r, HITS_B + at] += 1.0
            dirty[r] |= AIM_CHANGED
        if kd == 5 and effect[i] > 0.0:
            stats[r, LOOTS] += 1.0
            stats[r, RARES] += 1.0 if rare[i] else 0.0
            dirty[r] |= LOOT_CHANGED
    return touched[:m], q
