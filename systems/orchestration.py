"""Tick step 8 (second half): the event director spawns, scales and retires world events by
the player density, relieves crowds and keeps sparse places alive.

Every ``events.every_ticks`` ticks the director

1. counts, for each live event, its standing mobs and its participants: the living, connected
   players within ``radius_m`` of its centre who are not idle, i.e. who made a deliberate
   (non-move) action or walked ``idle_move_m`` within ``idle_s`` (PvE: all of them; PvP: the
   largest team among them, since rival teams fight each other as much as the event);
2. judges each event: an announced one becomes active (its mobs appear), an active one is
   completed when its mobs are all dead, failed when nobody took part for ``abandon_s``,
   expired at its deadline; ended events and their remaining mobs are despawned;
3. rescales live events whose difficulty moved by at least ``difficulty_step`` (mob hp follows,
   the mob count never does: a crowd makes an event harder, not bigger);
4. plans new events, most urgent first: *ambient* events in populated cells about to go without
   one for ``ambient_interval_s``; *pull* events in under-filled cells beside a crowded or
   spiking cell (they draw players out; nothing new is ever centred in a crowded or spiking
   cell); *crowd* events in cells that have had enough players and no event nearby for
   ``crowd_sustain_s`` (a crowd passing through is not one to serve). Each is bounded by
   the cell and world mob budgets (planned mobs count from the announcement), a per-cell
   cooldown, a per-cell event cap, ``max_spawns_per_run`` and ``max_mobs_per_run``.

Events are entities with a ``WorldEvent`` component (no Position); their mobs are NPCs of the
runtime's NPC archetype plus ``EventMember``. Which cells were served, their cooldowns, the
events, the per-type tallies, each player's activity: all components, so the state hash covers
every decision and a replay repeats it. Dead mobs are despawned by the director before the
lifecycle step would take their corpses (it would otherwise look their negative ``Npc.kind``
up among the world file's populations); ``EventStats`` (a resource) only keeps figures for
the summary.

Randomness: type choice and tie-breaks are keyed (seed, tick, cell, STREAM_EVENT_*); mob
placement is keyed by the event's id.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from ecs import Component, Phase, System
from ecs.config import JIT
from ecs.rng import key_uniform
from systems.actions import ActionBatch, ActionKind
from systems.components import Health, Loot, Npc, Player, Position, Velocity
from systems.density import DensityCell, DensityCount, DensityField, DensityGrid
from systems.regions import RegionLayout

STREAM_EVENT_TYPE = 61
STREAM_EVENT_ORDER = 62
STREAM_EVENT_MOBS = 63

_MOVE = int(ActionKind.MOVE)
ROLES = ("crowd", "pull", "ambient")  # role codes; the names a world file's types use
ANNOUNCED, ACTIVE = 0, 1
CROWD, PULL, AMBIENT = 0, 1, 2
KEEP, ACTIVATE, COMPLETED, FAILED, EXPIRED = 0, 1, 2, 3, 4
OUTCOMES = ("completed", "failed", "expired")

DirectorCell = Component(
    "DirectorCell",
    [
        ("cooldown_until", "i8"),  # nothing new is centred here before this tick
        ("last_served", "i8"),  # last run it had an event near, or a crowd, or became populated
        ("wanted_since", "i8"),  # since when it has had enough players for a crowd event and none (-1: not)
        ("populated", "u1"),  # populated at the last run
    ],
    defaults={"last_served": -1, "wanted_since": -1},
)

WorldEvent = Component(
    "WorldEvent",
    [
        ("type", "i4"),  # index into events.types
        ("role", "i4"),  # CROWD, PULL, AMBIENT
        ("phase", "i4"),  # ANNOUNCED, ACTIVE (ended events are despawned)
        ("cell", "i4"),  # density cell of its centre
        ("source_cell", "i4"),  # pull events: the crowded cell they draw from (-1 otherwise)
        ("x", "f8"),
        ("y", "f8"),
        ("radius_m", "f8"),
        ("difficulty", "f8"),  # mob hp multiplier
        ("participants", "i4"),
        ("level", "f8"),  # mean level of the participants
        ("mobs", "i4"),  # size in entities: reserved against the budgets from the announcement
        ("alive", "i4"),  # mobs standing at the last run
        ("spawned_tick", "i8"),
        ("active_tick", "i8"),
        ("deadline_tick", "i8"),
        ("empty_since", "i8"),  # first run without participants (-1: it has some)
    ],
    defaults={"source_cell": -1, "empty_since": -1},
)

# When a player last did something: a deliberate (non-move) accepted action, or walking at
# least ``idle_move_m`` (path length, sampled at each director run, from where it was at the
# last run). Clients keep sending position updates while their player stands idle, so the time
# of the last accepted action says nothing about idling. One entity per player (no Position),
# kept by the director: logical state, in the hash.
Activity = Component("Activity", [("player", "i8"), ("last_active_ms", "f8"), ("x", "f8"), ("y", "f8"),
                                  ("walked_m", "f8")])

# A mob of an event: which event, and its hp at difficulty 1 (hp follows the event's difficulty).
EventMember = Component("EventMember", [("event", "i8"), ("base_hp", "f8")])

# Per event type, what the director did with it over the run (logical state: hashed, replayed).
EventTally = Component(
    "EventTally",
    [("type", "i4"), ("spawned", "i8"), ("completed", "i8"), ("failed", "i8"), ("expired", "i8"),
     ("mobs_spawned", "i8"), ("max_participants", "i8"), ("max_difficulty", "f8")],
)

# Rows of the (_NCELL, C) float64 cell matrix ``_plan`` works on (one row per field: contiguous).
(C_FAST, C_NPCS, C_CROWDED, C_SPIKING, C_CX, C_CY, C_PX, C_PY, C_PN, C_COOLDOWN, C_SERVED_AT, C_WANTED,
 C_POPULATED, C_RESERVED, C_EVENTS, C_SERVED, C_PULLS) = range(17)
_NCELL = 17
# Columns of the (T, _NTYPE) float64 type matrix.
(T_ROLES, T_WEIGHT, T_MOBS, T_MIN_PLAYERS, T_MAX_ACTIVE, T_ACTIVE, T_BASE, T_PER_PARTICIPANT, T_LEVEL_EXP,
 T_MAX_DIFFICULTY) = range(10)
_NTYPE = 10
# Entries of the knob vector.
(K_TICK, K_EVERY, K_AMBIENT, K_COOLDOWN, K_COMFORT, K_PULL_FILL, K_RINGS, K_PULLS, K_CELL_BUDGET,
 K_WORLD_BUDGET, K_WORLD_RESERVED, K_MAX_MOBS, K_CELL_EVENTS, K_POPULATED, K_SERVE_M, K_CROWD_MIN, K_NCOLS,
 K_NROWS, K_CELL_M, K_X0, K_Y0, K_X1, K_Y1, K_SUSTAIN) = range(24)
_NKNOB = 24
# Columns of the (S, _NPLAN) float64 plan rows ``_plan`` writes (S = max_spawns_per_run).
P_CELL, P_ROLE, P_TYPE, P_SOURCE, P_X, P_Y = range(6)
_NPLAN = 6
# Entries of the (4,) float64 figures ``_plan`` updates (maxima over the run, in ticks).
F_UNSERVED, F_LAG, F_CELL_MOBS, F_CELL_EVENTS = range(4)
# Columns of the (E, _NEV) float64 event matrix ``_judge`` reads.
E_PHASE, E_ACTIVE_TICK, E_DEADLINE, E_ALIVE, E_PARTICIPANTS, E_EMPTY_SINCE = range(6)
_NEV = 6


# --------------------------------------------------------------------------- kernels


@njit(**JIT)
def _mark_active(sorted_players, order, player, actor, status, kind, last_active_ms, now_ms):
    """Stamp ``now_ms`` on the activity record of the actor of each accepted deliberate (not
    MOVE) action; returns how many such actors had no record.

    sorted_players: (m,) int64 the records' players sorted, order: (m,) int64 the record row of
    each, player: (m,) int64 the records' player column; all read. actor: (k,) int64, status:
    (k,) int16, kind: (k,) int8, the tick's actions, read. last_active_ms: (m,) float64,
    written where found.
    """
    missing = 0
    m = sorted_players.shape[0]
    for i in range(actor.shape[0]):
        if status[i] != 0 or kind[i] == _MOVE:
            continue
        j = np.searchsorted(sorted_players, actor[i])
        if j < m and player[order[j]] == actor[i]:
            last_active_ms[order[j]] = now_ms
        else:
            missing += 1
    return missing


@njit(**JIT)
def _player_rows(floats, state, team, ids, rows, act_player, act, knobs, out):
    """One table's players as columns of ``out`` (4, n) float64: x, y, team, level; level is
    -1 for a player who is not active (dead, disconnected, or idle: neither a deliberate
    action nor ``knobs[2]`` metres walked for ``knobs[1]`` ms). Adds each player's walk since
    the last run to its activity record, stamping it active (``knobs[0]``, now) once it has
    walked far enough. Level is ``max_hp / knobs[3]`` (player_hp): players have no level of
    their own yet, and a stronger avatar is a higher one.

    floats: x, y, max_hp (n,) float64; state: dead, connected (n,) uint8; team: (n,) int32;
    ids: (n,) int64; rows: (n,) int64 each player's record (-1: none yet: a newcomer, active);
    act_player: (m,) int64 the records' players; all read. act: x, y, walked_m,
    last_active_ms (m,) float64 record columns, read and written. Returns -1, touching
    nothing, when a record is not its player's (the caller's mapping is stale), else 0.
    """
    x, y, max_hp = floats
    dead, connected = state
    ax, ay, walked, last = act
    now_ms, idle_ms, move_m, base_hp = knobs[0], knobs[1], knobs[2], knobs[3]
    for i in range(x.shape[0]):
        if rows[i] >= 0 and act_player[rows[i]] != ids[i]:
            return -1
    for i in range(x.shape[0]):
        out[0, i] = x[i]
        out[1, i] = y[i]
        out[2, i] = team[i]
        r = rows[i]
        since = now_ms
        if r >= 0:
            walked[r] += np.sqrt((x[i] - ax[r]) ** 2 + (y[i] - ay[r]) ** 2)
            ax[r] = x[i]
            ay[r] = y[i]
            if walked[r] >= move_m:
                last[r] = now_ms
                walked[r] = 0.0
            since = last[r]
        active = dead[i] == 0 and connected[i] != 0 and now_ms - since <= idle_ms
        out[3, i] = max_hp[i] / base_hp if active else -1.0
    return 0


@njit(**JIT)
def _bucket(px, py, geom, cell_start, order, sums):
    """Counting sort of points by density cell.

    px, py: (n,) float64, read. geom: (5,) float64 as ``systems.density``, read. cell_start:
    (C + 1,) int64, written: points of cell c are order[cell_start[c]:cell_start[c + 1]].
    order: (n,) int64, written. sums: (3, C) float64, written: sum of x, sum of y, count.
    """
    n_cols, n_rows = int(geom[3]), int(geom[4])
    n_cells = cell_start.shape[0] - 1
    cell_start[:] = 0
    sums[:, :] = 0.0
    cells = np.empty(px.shape[0], np.int64)
    for i in range(px.shape[0]):
        qx = (px[i] - geom[0]) * geom[2]
        qy = (py[i] - geom[1]) * geom[2]
        col = 0 if not qx >= 1.0 else min(int(qx), n_cols - 1)
        row = 0 if not qy >= 1.0 else min(int(qy), n_rows - 1)
        c = row * n_cols + col
        cells[i] = c
        cell_start[c + 1] += 1
        sums[0, c] += px[i]
        sums[1, c] += py[i]
        sums[2, c] += 1.0
    for c in range(n_cells):
        cell_start[c + 1] += cell_start[c]
    fill = cell_start[:-1].copy()
    for i in range(px.shape[0]):
        order[fill[cells[i]]] = i
        fill[cells[i]] += 1


@njit(**JIT)
def _participants(ev_x, ev_y, ev_r, players, cell_start, order, geom, pvp, out):
    """Active players within each event's radius, and their mean level.

    ev_x, ev_y, ev_r: (E,) float64 centres and radii, read. players: (4, n) float64 rows x, y,
    team, level (< 0: not active), read. cell_start, order: the ``_bucket`` of the players,
    read. pvp: count only the largest team (ties: the higher total level, then the lower team
    number). out: (E, 2) float64, written: participants, mean level (0 when none).
    """
    n_cols, n_rows = int(geom[3]), int(geom[4])
    cell_m = 1.0 / geom[2]
    max_team = 0
    for i in range(players.shape[1]):
        if players[2, i] > max_team:
            max_team = int(players[2, i])
    counts = np.zeros(max_team + 1, np.int64)
    levels = np.zeros(max_team + 1, np.float64)
    for e in range(ev_x.shape[0]):
        ex, ey, r = ev_x[e], ev_y[e], ev_r[e]
        r2 = r * r
        c0 = max(int(np.floor((ex - r - geom[0]) / cell_m)), 0)
        c1 = min(int(np.floor((ex + r - geom[0]) / cell_m)), n_cols - 1)
        r0 = max(int(np.floor((ey - r - geom[1]) / cell_m)), 0)
        r1 = min(int(np.floor((ey + r - geom[1]) / cell_m)), n_rows - 1)
        counts[:] = 0
        levels[:] = 0.0
        for row in range(r0, r1 + 1):
            for col in range(c0, c1 + 1):
                c = row * n_cols + col
                for k in range(cell_start[c], cell_start[c + 1]):
                    i = order[k]
                    if players[3, i] < 0.0:
                        continue
                    dx = players[0, i] - ex
                    dy = players[1, i] - ey
                    if dx * dx + dy * dy <= r2:
                        t = max(int(players[2, i]), 0)
                        counts[t] += 1
                        levels[t] += players[3, i]
        n = 0
        lv = 0.0
        if pvp:
            for t in range(max_team + 1):
                if counts[t] > n or (counts[t] == n and n > 0 and levels[t] > lv):
                    n = counts[t]
                    lv = levels[t]
        else:
            for t in range(max_team + 1):
                n += counts[t]
                lv += levels[t]
        out[e, 0] = n
        out[e, 1] = lv / n if n > 0 else 0.0


@njit(**JIT)
def _difficulty(base, per_participant, level_exponent, max_difficulty, participants, level):
    """Difficulty of one event for ``participants`` of mean ``level`` (see
    ``worlds.schema_events.EventType``); ``base`` when nobody takes part."""
    if participants <= 0:
        return base
    d = base * (1.0 + per_participant * (participants - 1)) * max(level, 1e-9) ** level_exponent
    return min(d, max_difficulty)


@njit(**JIT)
def _difficulties(ev_type, part, types, old, step, out):
    """New difficulty of each event, kept at ``old`` unless it moved by at least ``step``
    (relative): hysteresis, so a participant coming and going does not rescale the mobs.

    ev_type: (E,) int32; part: (E, 2) float64 participants, level; types: (T, _NTYPE) float64;
    old: (E,) float64 (<= 0: new, always set); all read. out: (E,) float64, written.
    """
    for e in range(ev_type.shape[0]):
        t = ev_type[e]
        d = _difficulty(types[t, T_BASE], types[t, T_PER_PARTICIPANT], types[t, T_LEVEL_EXP],
                        types[t, T_MAX_DIFFICULTY], part[e, 0], part[e, 1])
        out[e] = d if old[e] <= 0.0 or abs(d - old[e]) >= step * old[e] else old[e]


@njit(**JIT)
def _judge(ev, tick, abandon_ticks, out):
    """Each event's outcome this run.

    ev: (E, _NEV) float64, read; E_EMPTY_SINCE written (the run since which it has had no
    participant; -1 while it has some). abandon_ticks: (E,) int64, read. out: (E,) int64,
    written: KEEP, ACTIVATE, COMPLETED, FAILED or EXPIRED.
    """
    for e in range(ev.shape[0]):
        if ev[e, E_PARTICIPANTS] > 0:
            ev[e, E_EMPTY_SINCE] = -1.0
        elif ev[e, E_EMPTY_SINCE] < 0:
            ev[e, E_EMPTY_SINCE] = tick
        out[e] = KEEP
        if ev[e, E_PHASE] == ANNOUNCED:
            if tick >= ev[e, E_ACTIVE_TICK]:
                out[e] = ACTIVATE
        elif ev[e, E_ALIVE] <= 0:
            out[e] = COMPLETED
        elif tick >= ev[e, E_DEADLINE]:
            out[e] = EXPIRED
        elif ev[e, E_EMPTY_SINCE] >= 0 and tick - ev[e, E_EMPTY_SINCE] >= abandon_ticks[e]:
            out[e] = FAILED


@njit(**JIT)
def _mark_served(cells, x, y, knobs, tick):
    """Count one more event near every cell whose centre is within the serve radius of (x, y):
    C_SERVED += 1, C_SERVED_AT = tick, C_WANTED = -1 (it no longer waits for one)."""
    n_cols, n_rows = int(knobs[K_NCOLS]), int(knobs[K_NROWS])
    cell_m = knobs[K_CELL_M]
    r = knobs[K_SERVE_M]
    c0 = max(int(np.floor((x - r - knobs[K_X0]) / cell_m)), 0)
    c1 = min(int(np.floor((x + r - knobs[K_X0]) / cell_m)), n_cols - 1)
    r0 = max(int(np.floor((y - r - knobs[K_Y0]) / cell_m)), 0)
    r1 = min(int(np.floor((y + r - knobs[K_Y0]) / cell_m)), n_rows - 1)
    for row in range(r0, r1 + 1):
        for col in range(c0, c1 + 1):
            c = row * n_cols + col
            dx = cells[C_CX, c] - x
            dy = cells[C_CY, c] - y
            if dx * dx + dy * dy <= r * r:
                cells[C_SERVED, c] += 1.0
                cells[C_SERVED_AT, c] = tick
                cells[C_WANTED, c] = -1.0


@njit(**JIT)
def _load_cells(cell, density, flags, state, cells):
    """Copy the cells' components into the cell matrix, by each row's cell.

    cell: (m,) int32, read. density: 2 (m,) float64 columns fast, npcs_avg; flags: 3 (m,)
    uint8 columns crowded, spiking, populated; state: 3 (m,) int64 columns cooldown_until,
    last_served, wanted_since; all read. cells: (_NCELL, C) float64, those rows written.
    """
    fast, npcs = density
    crowded, spiking, populated = flags
    cooldown, served_at, wanted = state
    for r in range(cell.shape[0]):
        c = cell[r]
        cells[C_FAST, c] = fast[r]
        cells[C_NPCS, c] = npcs[r]
        cells[C_CROWDED, c] = crowded[r]
        cells[C_SPIKING, c] = spiking[r]
        cells[C_POPULATED, c] = populated[r]
        cells[C_COOLDOWN, c] = cooldown[r]
        cells[C_SERVED_AT, c] = served_at[r]
        cells[C_WANTED, c] = wanted[r]


@njit(**JIT)
def _store_cells(cell, cells, populated, state):
    """The director's part of the cell matrix back into the ``DirectorCell`` columns.

    cell: (m,) int32, cells: (_NCELL, C) float64, read. populated: (m,) uint8 and state: 3
    (m,) int64 columns cooldown_until, last_served, wanted_since, written.
    """
    cooldown, served_at, wanted = state
    for r in range(cell.shape[0]):
        c = cell[r]
        populated[r] = np.uint8(cells[C_POPULATED, c])
        cooldown[r] = np.int64(cells[C_COOLDOWN, c])
        served_at[r] = np.int64(cells[C_SERVED_AT, c])
        wanted[r] = np.int64(cells[C_WANTED, c])


@njit(**JIT)
def _occupy(cells, ev_cell, ev_source, ev_x, ev_y, reserve, knobs):
    """What the live events take of the cells: mobs reserved and events centred in their
    cell, pulls drawn from their source cell, service around their centre.

    ev_cell, ev_source: (E,) int32; ev_x, ev_y: (E,) float64; reserve: (E,) float64 mobs each
    holds against the budgets (planned while announced, standing once active); all read.
    cells: (_NCELL, C) float64, C_RESERVED, C_EVENTS, C_PULLS, C_SERVED (reset here),
    C_SERVED_AT and C_WANTED written.
    """
    cells[C_RESERVED, :] = 0.0
    cells[C_EVENTS, :] = 0.0
    cells[C_PULLS, :] = 0.0
    cells[C_SERVED, :] = 0.0
    for e in range(ev_cell.shape[0]):
        cells[C_RESERVED, ev_cell[e]] += reserve[e]
        cells[C_EVENTS, ev_cell[e]] += 1.0
        if ev_source[e] >= 0:
            cells[C_PULLS, ev_source[e]] += 1.0
        _mark_served(cells, ev_x[e], ev_y[e], knobs, knobs[K_TICK])


@njit(**JIT)
def _fits(types, t, role, fast, room_cell, room_world, room_run):
    """Whether type t may make a new event of ``role`` in a cell of ``fast`` players, with
    that many mobs still allowed in the cell, the world and this run."""
    if (int(types[t, T_ROLES]) >> role) & 1 == 0 or types[t, T_ACTIVE] >= types[t, T_MAX_ACTIVE]:
        return False
    if role == CROWD and fast < types[t, T_MIN_PLAYERS]:
        return False
    m = types[t, T_MOBS]
    return m <= room_cell and m <= room_world and m <= room_run


@njit(**JIT)
def _pick_type(types, role, fast, room_cell, room_world, room_run, seed, tick, cell):
    """A type for a new event of ``role`` in ``cell``, drawn by weight among those that fit
    (keyed: seed, tick, cell, STREAM_EVENT_TYPE, role); -1 if none fits."""
    total = 0.0
    for t in range(types.shape[0]):
        if _fits(types, t, role, fast, room_cell, room_world, room_run):
            total += types[t, T_WEIGHT]
    if total <= 0.0:
        return -1
    u = key_uniform(seed, tick, cell, STREAM_EVENT_TYPE, role) * total
    last = -1
    for t in range(types.shape[0]):
        if _fits(types, t, role, fast, room_cell, room_world, room_run):
            last = t
            u -= types[t, T_WEIGHT]
            if u < 0.0:
                return t
    return last


@njit(**JIT)
def _open(cells, c, knobs):
    """Whether a new event may be centred in cell c at all: off cooldown, under its event cap,
    and neither crowded nor spiking (nothing new is ever put into a crowd)."""
    return (cells[C_COOLDOWN, c] <= knobs[K_TICK] and cells[C_EVENTS, c] < knobs[K_CELL_EVENTS]
            and cells[C_CROWDED, c] == 0 and cells[C_SPIKING, c] == 0)


@njit(**JIT)
def _place(cells, types, knobs, seed, c, role, source, room, out, k):
    """Try to plan an event of ``role`` in cell c; on success fill plan row k and book it
    (type count, budgets, cooldown, service). room: (2,) float64 mobs still allowed in the
    world and in this run, read and written. Returns k + 1 when planned, else k."""
    tick = knobs[K_TICK]
    t = _pick_type(types, role, cells[C_FAST, c], knobs[K_CELL_BUDGET] - cells[C_RESERVED, c], room[0], room[1],
                   seed, np.int64(tick), c)
    if t < 0:
        return k
    if role != PULL and cells[C_PN, c] > 0:  # where the players are
        x = cells[C_PX, c] / cells[C_PN, c]
        y = cells[C_PY, c] / cells[C_PN, c]
    else:
        x = cells[C_CX, c]
        y = cells[C_CY, c]
    x = min(max(x, knobs[K_X0]), knobs[K_X1])
    y = min(max(y, knobs[K_Y0]), knobs[K_Y1])
    mobs = types[t, T_MOBS]
    out[k, P_CELL] = c
    out[k, P_ROLE] = role
    out[k, P_TYPE] = t
    out[k, P_SOURCE] = source
    out[k, P_X] = x
    out[k, P_Y] = y
    types[t, T_ACTIVE] += 1
    room[0] -= mobs
    room[1] -= mobs
    cells[C_RESERVED, c] += mobs
    cells[C_EVENTS, c] += 1
    cells[C_COOLDOWN, c] = tick + knobs[K_COOLDOWN]
    if source >= 0:
        cells[C_PULLS, source] += 1
    _mark_served(cells, x, y, knobs, tick)
    return k + 1


@njit(**JIT)
def _ranked(keys, seed, tick, cells_idx):
    """Indices of ``keys`` (m,) float64 in descending order; ties in a keyed-random order (not
    by cell number, which would favour one corner of the map)."""
    m = keys.shape[0]
    jitter = np.empty(m, np.float64)
    for i in range(m):
        jitter[i] = key_uniform(seed, tick, cells_idx[i], STREAM_EVENT_ORDER, 0)
    first = np.argsort(jitter, kind="mergesort")
    second = np.argsort(-keys[first], kind="mergesort")
    return first[second]


@njit(**JIT)
def _fast_density(cells, which):
    """(m,) float64: the fast-smoothed density of the cells ``which`` ((m,) int64), read."""
    out = np.empty(which.shape[0], np.float64)
    for i in range(which.shape[0]):
        out[i] = cells[C_FAST, which[i]]
    return out


@njit(**JIT)
def _plan(cells, types, knobs, seed, out, figures):
    """Decide the new events of one director run.

    cells: (_NCELL, C) float64, read; C_COOLDOWN, C_SERVED_AT, C_WANTED, C_POPULATED,
    C_RESERVED, C_EVENTS, C_SERVED and C_PULLS written. types: (T, _NTYPE) float64, T_ACTIVE
    written. knobs: (_NKNOB,) float64, read. out: (S, _NPLAN) float64, rows [0, k) written.
    figures: (4,) float64, maxima updated: longest unserved wait and follow lag (ticks), most
    mobs and most events centred in one cell. Returns k, the number of events planned.
    """
    n = cells.shape[1]
    tick = knobs[K_TICK]
    itick = np.int64(tick)
    room = np.array([knobs[K_WORLD_BUDGET] - knobs[K_WORLD_RESERVED], knobs[K_MAX_MOBS]])
    k = 0
    # Who is populated, who has waited how long, who wants a crowd event.
    for c in range(n):
        pop = cells[C_FAST, c] >= knobs[K_POPULATED]
        if pop and cells[C_POPULATED, c] == 0:
            cells[C_SERVED_AT, c] = tick  # the clock starts when somebody is there to see
        cells[C_POPULATED, c] = 1.0 if pop else 0.0
        busy = cells[C_CROWDED, c] != 0 or cells[C_SPIKING, c] != 0
        if busy:  # a crowd is not a dead place either
            cells[C_SERVED_AT, c] = tick
        wants = cells[C_FAST, c] >= knobs[K_CROWD_MIN] and cells[C_SERVED, c] == 0 and not busy
        if not wants:
            cells[C_WANTED, c] = -1.0
        elif cells[C_WANTED, c] < 0:
            cells[C_WANTED, c] = tick
    lag_from = cells[C_WANTED].copy()
    # 1. Ambient: populated cells that would otherwise pass the interval before the next run.
    due = np.empty(n, np.int64)
    m = 0
    for c in range(n):
        if (cells[C_POPULATED, c] != 0 and cells[C_SERVED, c] == 0
                and tick + knobs[K_EVERY] - cells[C_SERVED_AT, c] >= knobs[K_AMBIENT]):
            due[m] = c
            m += 1
    due = due[:m]
    wait = np.empty(m, np.float64)
    for i in range(m):
        wait[i] = tick - cells[C_SERVED_AT, due[i]]
    for i in _ranked(wait, seed, itick, due):
        if k >= out.shape[0]:
            break
        c = due[i]
        if cells[C_SERVED, c] == 0 and _open(cells, c, knobs):
            k = _place(cells, types, knobs, seed, c, AMBIENT, -1, room, out, k)
    # 2. Pull: beside each crowded or spiking cell, the emptiest open cell of the nearest ring.
    src = np.empty(n, np.int64)
    m = 0
    for c in range(n):
        if (cells[C_CROWDED, c] != 0 or cells[C_SPIKING, c] != 0) and cells[C_PULLS, c] < knobs[K_PULLS]:
            src[m] = c
            m += 1
    src = src[:m]
    dens = _fast_density(cells, src)
    n_cols, n_rows = int(knobs[K_NCOLS]), int(knobs[K_NROWS])
    rings = int(knobs[K_RINGS])
    under = knobs[K_COMFORT] * knobs[K_PULL_FILL]
    for i in _ranked(dens, seed, itick, src):
        s = src[i]
        scol, srow = s % n_cols, s // n_cols
        while k < out.shape[0] and cells[C_PULLS, s] < knobs[K_PULLS]:
            best = -1
            best_score = np.inf
            for row in range(max(srow - rings, 0), min(srow + rings, n_rows - 1) + 1):
                for col in range(max(scol - rings, 0), min(scol + rings, n_cols - 1) + 1):
                    c = row * n_cols + col
                    if c == s or cells[C_SERVED, c] != 0 or cells[C_FAST, c] >= under or not _open(cells, c, knobs):
                        continue
                    ring = max(abs(row - srow), abs(col - scol))
                    score = ring + cells[C_FAST, c] / knobs[K_COMFORT] \
                        + 1e-3 * key_uniform(seed, itick, c, STREAM_EVENT_ORDER, 1 + s)
                    if score < best_score:
                        best = c
                        best_score = score
            if best < 0:
                break
            before = k
            k = _place(cells, types, knobs, seed, best, PULL, s, room, out, k)
            if k == before:
                break
    # 3. Crowd: cells that have had enough players and no event near for long enough, densest first.
    want = np.empty(n, np.int64)
    m = 0
    for c in range(n):
        if cells[C_WANTED, c] >= 0 and tick - cells[C_WANTED, c] >= knobs[K_SUSTAIN]:  # not mere passers-by
            want[m] = c
            m += 1
    want = want[:m]
    dens = _fast_density(cells, want)
    for i in _ranked(dens, seed, itick, want):
        if k >= out.shape[0]:
            break
        c = want[i]
        if cells[C_SERVED, c] == 0 and _open(cells, c, knobs):
            k = _place(cells, types, knobs, seed, c, CROWD, -1, room, out, k)
    # Figures: waits of populated cells, lags of cells whose crowd got its event, occupation.
    for c in range(n):
        if cells[C_POPULATED, c] != 0:
            figures[F_UNSERVED] = max(figures[F_UNSERVED], tick - cells[C_SERVED_AT, c])
        if lag_from[c] >= 0 and cells[C_SERVED, c] > 0:
            figures[F_LAG] = max(figures[F_LAG], tick - lag_from[c])
        figures[F_CELL_MOBS] = max(figures[F_CELL_MOBS], cells[C_RESERVED, c])
        figures[F_CELL_EVENTS] = max(figures[F_CELL_EVENTS], cells[C_EVENTS, c])
    return k


@njit(**JIT)
def _disc_points(seed, tick, key, n, cx, cy, radius_m, bounds, out_x, out_y):
    """n points uniform in a disc, keyed (seed, tick, key, STREAM_EVENT_MOBS, j), clamped into
    bounds ((4,) float64). out_x, out_y: (n,) float64, written."""
    for j in range(n):
        rad = radius_m * np.sqrt(key_uniform(seed, tick, key, STREAM_EVENT_MOBS, 2 * j))
        ang = 2.0 * np.pi * key_uniform(seed, tick, key, STREAM_EVENT_MOBS, 2 * j + 1)
        out_x[j] = min(max(cx + rad * np.cos(ang), bounds[0]), bounds[2])
        out_y[j] = min(max(cy + rad * np.sin(ang), bounds[1]), bounds[3])


@njit(**JIT)
def _rescale_members(member_event, hp, max_hp, base_hp, dead, ev_ids, factor, difficulty):
    """Scale the hp of the mobs of events whose difficulty changed.

    member_event: (m,) int64, read. hp, max_hp: (m,) float64, written. base_hp: (m,) float64,
    dead: (m,) uint8, read. ev_ids: (E,) int64 sorted, factor, difficulty: (E,) float64, read
    (factor 1: unchanged). A standing mob keeps its share of hp; a dead one stays dead.
    """
    for i in range(member_event.shape[0]):
        e = np.searchsorted(ev_ids, member_event[i])
        if e >= ev_ids.shape[0] or ev_ids[e] != member_event[i] or factor[e] == 1.0 or dead[i] != 0:
            continue
        max_hp[i] = base_hp[i] * difficulty[e]
        hp[i] = min(hp[i] * factor[e], max_hp[i])


# --------------------------------------------------------------------------- figures


class EventStats:
    """What the director did, for the summary and the tests (not logical state: the decisions
    themselves live in components). ``spawn_log``: (tick, type, role, cell, mobs, difficulty)
    of each spawned event; ``end_log``: (tick, type, outcome, cell); ``figures``: maxima over
    the run (see ``F_*``), in ticks."""

    LOG_CAP = 10_000

    def __init__(self, defn) -> None:
        cfg = defn.events
        self.type_names = [t.name for t in cfg.types]
        self.dt_s = 1.0 / defn.world.tick_rate_hz
        self.cfg = cfg
        self.mode = defn.world.mode
        self.spawn_log: list[tuple[int, int, int, int, int, float]] = []
        self.end_log: list[tuple[int, int, str, int]] = []
        self.figures = np.zeros(4, np.float64)
        self.max_world_mobs = 0
        self.rescaled_up = 0
        self.rescaled_down = 0
        self.runs = 0

    def log(self, entries: list, rows: list) -> None:
        entries.extend(rows)
        del entries[: -self.LOG_CAP]


# --------------------------------------------------------------------------- system


class EventDirector(System):
    phase = Phase.ORCHESTRATE
    reads = (DensityCell, DensityGrid, Position, Player, Health, Npc, ActionBatch)
    writes = (DirectorCell, WorldEvent, EventMember, EventTally, EventStats, Health, Activity)
    after = ("DensityCount", "DensityField")
    # One director for the world. On a sharded world it runs on the shard that owns the world's
    # entities without a position (its events, cells, tallies, activity records), reading copies
    # of every player and mob; the others' directors stand by.
    directs = True

    def __init__(self, world, defn, npc_archetype, build: bool = True) -> None:
        """``npc_archetype``: the components of an NPC; mobs get those plus ``EventMember``.
        With ``build``, spawns one ``EventTally`` entity per event type and one ``Activity``
        record per player (call while building the world, after the players); a shard builds
        none (the world's are dealt to the shards)."""
        cfg = defn.events
        self.cfg = cfg
        self.defn = defn
        self.grid: DensityGrid = world.resources[DensityGrid]
        self.mob_archetype = (*npc_archetype, EventMember)
        self.stats = EventStats(defn)
        world.resources[EventStats] = self.stats
        dt = 1.0 / defn.world.tick_rate_hz
        self.every = cfg.every_ticks

        def ticks(s: float) -> int:
            return int(round(s / dt))

        self.corpse_ticks = ticks(defn.rules.corpse_s)
        self.bury_every = self.every if self.corpse_ticks > self.every else 1
        self._player_knobs = np.array([0.0, cfg.idle_s * 1000.0, cfg.idle_move_m, defn.rules.player_hp])
        self._player_buf = np.zeros((4, 0), np.float64)
        self.pvp = defn.world.mode == "pvp"
        types = cfg.types
        self.t_announce = np.array([ticks(t.announce_s) for t in types], np.int64)
        self.t_duration = np.array([max(ticks(t.duration_s), 1) for t in types], np.int64)
        self.t_abandon = np.array([max(ticks(t.abandon_s), 1) for t in types], np.int64)
        self.t_radius = np.array([t.radius_m for t in types], np.float64)
        self.types = np.zeros((len(types), _NTYPE), np.float64)
        for i, t in enumerate(types):
            self.types[i, T_ROLES] = sum(1 << ROLES.index(r) for r in set(t.roles))
            self.types[i, T_WEIGHT] = t.weight
            self.types[i, T_MOBS] = t.mobs
            self.types[i, T_MIN_PLAYERS] = t.min_players
            self.types[i, T_MAX_ACTIVE] = t.max_active
            self.types[i, T_BASE] = t.difficulty
            self.types[i, T_PER_PARTICIPANT] = t.per_participant
            self.types[i, T_LEVEL_EXP] = t.level_exponent
            self.types[i, T_MAX_DIFFICULTY] = t.max_difficulty
        crowd_min = [t.min_players for t in types if "crowd" in t.roles]
        g = self.grid
        x0, y0, x1, y1 = defn.bounds
        self.bounds = np.array([x0, y0, x1, y1], np.float64)
        kn = self.knobs = np.zeros(_NKNOB, np.float64)
        kn[K_EVERY] = self.every
        kn[K_AMBIENT] = ticks(cfg.ambient_interval_s)
        kn[K_COOLDOWN] = ticks(cfg.cooldown_s)
        kn[K_COMFORT] = cfg.comfort_players
        kn[K_PULL_FILL] = cfg.pull_fill
        kn[K_RINGS] = cfg.pull_rings
        kn[K_PULLS] = cfg.pulls_per_crowd
        kn[K_CELL_BUDGET] = cfg.cell_budget
        kn[K_WORLD_BUDGET] = cfg.world_budget
        kn[K_MAX_MOBS] = cfg.max_mobs_per_run
        kn[K_CELL_EVENTS] = cfg.cell_max_events
        kn[K_POPULATED] = cfg.populated_players
        kn[K_SERVE_M] = cfg.serve_m
        # A crowd event needs a populated cell with as many players as the least demanding type.
        kn[K_CROWD_MIN] = max(min(crowd_min), cfg.populated_players) if crowd_min else np.inf
        kn[K_SUSTAIN] = ticks(cfg.crowd_sustain_s)
        kn[K_NCOLS], kn[K_NROWS], kn[K_CELL_M] = g.n_cols, g.n_rows, g.cell_m
        kn[K_X0], kn[K_Y0], kn[K_X1], kn[K_Y1] = x0, y0, x1, y1
        self.cells = np.zeros((_NCELL, g.count), np.float64)
        self.cells[C_CX], self.cells[C_CY] = g.centres()
        self.plan = np.zeros((cfg.max_spawns_per_run, _NPLAN), np.float64)
        self.cell_start = np.zeros(g.count + 1, np.int64)
        self.sums = self.cells[C_PX:C_PN + 1]  # the players' bucket sums land in the cell matrix
        self._cells = world.query(DensityCell, DirectorCell)
        self._events = world.query(WorldEvent)
        self._members = world.query(EventMember, Health)
        self._players = world.query(Player, Position, Health)
        self._tallies = world.query(EventTally)
        self._activity = world.query(Activity)
        self._activity_table = None  # the one table of Activity records (see ``_note_actions``)
        self._activity_key: tuple | None = None
        self._activity_rows = np.empty(0, np.int64)
        self._lookup_key: tuple | None = None
        self._lookup: tuple = ()
        self._now_ms = 0.0
        if build:
            world.spawn_batch((EventTally,), len(types), {EventTally: {"type": np.arange(len(types), dtype=np.int32)}})
            ids = self._players.ids()
            world.spawn_batch((Activity,), ids.shape[0], {Activity: {  # everyone starts active
                "player": ids, "last_active_ms": 0.0, "x": self._players.concat(Position, "x"),
                "y": self._players.concat(Position, "y")}})
        self._activity_table = world.tables[world.table_for((Activity,))[0]]

    # -- every tick -----------------------------------------------------------------------
    def run(self, world, ctx) -> None:
        if not self.directs:
            return
        self._note_actions(world, ctx)
        if ctx.tick % self.bury_every == 0:
            self._bury_dead(world, ctx.tick)
        if ctx.tick % self.every == 0:
            self._direct(world, ctx)

    def _bury_dead(self, world, tick: int) -> None:
        """Despawn the dead mobs whose corpses the lifecycle step would collect before this runs
        again (it would look their negative ``Npc.kind`` up among the file's populations).

        Lifecycle collects a corpse at the first tick >= died_tick + corpse_ticks, before this
        step; running every ``bury_every`` ticks (1 when corpses last no longer than a
        director period), this buries those with died_tick + corpse_ticks <= tick + bury_every.
        """
        for t in self._members:
            h = t.columns(Health)
            gone = np.flatnonzero((h.dead != 0) & (h.died_tick + self.corpse_ticks <= tick + self.bury_every))
            for e in t.ids[gone].tolist():
                world.commands.despawn(e)

    def _note_actions(self, world, ctx) -> None:
        """Players whose deliberate (non-move) action was accepted this tick are active now."""
        batch = world.resources.get(ActionBatch)
        if batch is None or batch.n == 0:
            return
        t = self._activity_table
        if t is None or t.n == 0:
            return
        key = (id(t), t.n, t.capacity)
        for attempt in range(2):
            if self._lookup_key != key or attempt:  # rebuilt when the records changed shape, or missed
                player = t.column(Activity, "player")
                order = np.argsort(player, kind="stable")
                self._lookup = (np.ascontiguousarray(player[order]), order, player,
                                t.column(Activity, "last_active_ms"))
                self._lookup_key = key
            sorted_players, order, player, last = self._lookup
            if not _mark_active(sorted_players, order, player, batch.actor, batch.status, batch.kind, last,
                                ctx.time_ms):
                break

    # -- every K ticks --------------------------------------------------------------------
    def _direct(self, world, ctx) -> None:
        tick = ctx.tick
        stats = self.stats
        stats.runs += 1
        seed = np.uint64(ctx.rng.seed)
        self._now_ms = ctx.time_ms
        players, order = self._player_view(world, ctx)
        ev = self._event_view()
        ids = ev["ids"]
        n_ev = ids.shape[0]

        # 1. Mobs standing and participants of every live event.
        alive = self._alive_mobs(ids)
        part = np.zeros((n_ev, 2), np.float64)
        _participants(ev["x"], ev["y"], ev["radius_m"], players, self.cell_start, order, self.grid.geom, self.pvp,
                      part)

        # 2. Lifecycle.
        judged = np.empty((n_ev, _NEV), np.float64)
        judged[:, E_PHASE] = ev["phase"]
        judged[:, E_ACTIVE_TICK] = ev["active_tick"]
        judged[:, E_DEADLINE] = ev["deadline_tick"]
        judged[:, E_ALIVE] = alive
        judged[:, E_PARTICIPANTS] = part[:, 0]
        judged[:, E_EMPTY_SINCE] = ev["empty_since"]
        outcome = np.zeros(n_ev, np.int64)
        _judge(judged, tick, self.t_abandon[ev["type"]], outcome)
        ended = outcome >= COMPLETED
        live = ~ended

        # 3. Difficulty, with hysteresis; the mobs' hp follows (active events only).
        new_d = np.empty(n_ev, np.float64)
        _difficulties(ev["type"], part, self.types, ev["difficulty"], self.cfg.difficulty_step, new_d)
        old = np.where(ev["difficulty"] > 0.0, ev["difficulty"], 1.0)
        factor = np.where((ev["phase"] == ACTIVE) & live, new_d / old, 1.0)
        stats.rescaled_up += int(np.count_nonzero(factor > 1.0))
        stats.rescaled_down += int(np.count_nonzero(factor < 1.0))

        # 4. Plan new events over the cells, given what stays live.
        kn = self.knobs
        kn[K_TICK] = tick
        reserve = np.where((ev["phase"] == ANNOUNCED) | (outcome == ACTIVATE), ev["mobs"], alive).astype(np.float64)
        self._fill_cells(ev, live, reserve)
        types = self.types.copy()
        types[:, T_ACTIVE] = np.bincount(ev["type"][live], minlength=types.shape[0])
        kn[K_WORLD_RESERVED] = float(reserve[live].sum())
        k = _plan(self.cells, types, kn, seed, self.plan, stats.figures)
        plan = self.plan[:k]
        planned = float(self.types[plan[:, P_TYPE].astype(np.int64), T_MOBS].sum())
        stats.max_world_mobs = max(stats.max_world_mobs, int(kn[K_WORLD_RESERVED] + planned))

        # 5. Write back: live events, ended events, cells, new events and mobs.
        self._write_events(world, ctx, ev, part, judged, outcome, new_d, factor)
        self._write_cells()
        self._spawn_events(world, ctx, plan, players, order)

    # -- views ----------------------------------------------------------------------------
    def _player_view(self, world, ctx) -> tuple[np.ndarray, np.ndarray]:
        """(4, n) float64 x, y, team, level of every player in id order (see ``_player_rows``;
        not row order: the sums over them are then the same on any layout), bucketed by
        density cell (``self.cell_start``; centroid sums into the cell matrix); and the bucket
        order. Updates the players' ``Activity`` records."""
        q = self._players
        ids = q.ids()
        sort = np.argsort(ids, kind="stable")
        ids = np.ascontiguousarray(ids[sort])
        n = ids.shape[0]
        if self._player_buf.shape[1] != n:
            self._player_buf = np.zeros((4, n), np.float64)
        players = self._player_buf
        self._player_knobs[0] = ctx.time_ms

        def col(c, f):
            return np.ascontiguousarray(q.concat(c, f)[sort])

        floats = (col(Position, "x"), col(Position, "y"), col(Health, "max_hp"))
        state = (col(Health, "dead"), col(Player, "connected"))
        team = col(Player, "team")
        a = self._activity_table.columns(Activity)
        act = (a.x, a.y, a.walked_m, a.last_active_ms)
        for stale in (False, True):  # a stale mapping is found before anything is written
            rows = self._activity_of(world, ids, floats[0], floats[1], rebuild=stale)
            if _player_rows(floats, state, team, ids, rows, a.player, act, self._player_knobs, players) >= 0:
                break
        order = np.empty(n, np.int64)
        _bucket(players[0], players[1], self.grid.geom, self.cell_start, order, self.sums)
        return players, order

    def _activity_of(self, world, ids: np.ndarray, x: np.ndarray, y: np.ndarray, rebuild: bool = False) -> np.ndarray:
        """(n,) row of each player's ``Activity`` (-1: none yet); ``ids`` the players, ``x``,
        ``y`` where they stand. Players that appeared get a record (through the command buffer:
        from the next run), records of players gone are dropped. The mapping is kept while the
        player and activity tables keep their shape (``_player_rows`` checks it and asks for a
        ``rebuild`` if players were swapped)."""
        tables = self._activity.tables()
        key = (world.structure_version, tuple(t.n for t in self._players.tables()), tuple(t.n for t in tables))
        if not rebuild and key == self._activity_key and self._activity_rows.shape[0] == ids.shape[0]:
            return self._activity_rows
        rows = np.full(ids.shape[0], -1, np.int64)
        for t in tables:
            player = t.column(Activity, "player")
            order = np.argsort(player, kind="stable")
            pos = np.searchsorted(player, ids, sorter=order).clip(0, max(t.n - 1, 0))
            hit = (player[order[pos]] == ids) if t.n else np.zeros(ids.shape[0], np.bool_)
            rows[hit] = order[pos[hit]]
            gone = ~np.isin(player, ids)
            for e in t.ids[gone].tolist():
                world.commands.despawn(e)
        new = np.flatnonzero(rows < 0)
        if new.size:
            world.commands.spawn_batch((Activity,), new.size, {Activity: {
                "player": ids[new], "last_active_ms": self._now_ms, "x": x[new], "y": y[new]}})
        self._activity_key = key
        self._activity_rows = rows
        return rows

    _EVENT_FIELDS = ("type", "phase", "cell", "source_cell", "x", "y", "radius_m", "difficulty", "mobs",
                     "active_tick", "deadline_tick", "empty_since")

    def _event_view(self) -> dict[str, np.ndarray]:
        """The live events' fields the director reads, in id order (not row order: the same on
        any layout)."""
        ids = self._events.ids()
        sort = np.argsort(ids, kind="stable")
        out = {"ids": np.asarray(ids, np.int64)[sort]}
        for f in self._EVENT_FIELDS:
            out[f] = self._events.concat(WorldEvent, f)[sort]
        return out

    def _alive_mobs(self, ev_ids: np.ndarray) -> np.ndarray:
        """(E,) int64 standing mobs of each event (events in id order)."""
        which = self._members.concat(EventMember, "event")
        dead = self._members.concat(Health, "dead")
        if ev_ids.size == 0 or which.size == 0:
            return np.zeros(ev_ids.size, np.int64)
        e = np.searchsorted(ev_ids, which).clip(0, ev_ids.size - 1)
        ok = (ev_ids[e] == which) & (dead == 0)
        return np.bincount(e[ok], minlength=ev_ids.size).astype(np.int64)

    def _fill_cells(self, ev, live, reserve) -> None:
        """Cell matrix for ``_plan``: density, player centroids, director state, and what the
        live events occupy."""
        cells = self.cells
        for t in self._cells:
            d, r = t.columns(DensityCell), t.columns(DirectorCell)
            _load_cells(d.cell, (d.fast, d.npcs_avg), (d.crowded, d.spiking, r.populated),
                        (r.cooldown_until, r.last_served, r.wanted_since), cells)
        idx = np.flatnonzero(live)
        _occupy(cells, ev["cell"][idx], ev["source_cell"][idx], ev["x"][idx], ev["y"][idx], reserve[idx], self.knobs)

    def _write_cells(self) -> None:
        for t in self._cells:
            r = t.columns(DirectorCell)
            _store_cells(t.column(DensityCell, "cell"), self.cells, r.populated,
                         (r.cooldown_until, r.last_served, r.wanted_since))

    def _tally(self) -> tuple:
        """(table, row of each type) of the EventTally entities."""
        for t in self._tallies:
            rows = np.empty(self.types.shape[0], np.int64)
            rows[t.column(EventTally, "type")] = np.arange(t.n)
            return t, rows
        raise RuntimeError("the EventTally entities are gone")

    # -- writes ---------------------------------------------------------------------------
    def _write_events(self, world, ctx, ev, part, judged, outcome, new_d, factor) -> None:
        ids = ev["ids"]
        if ids.size == 0:
            return
        if (factor != 1.0).any():
            for t in self._members:
                m, h = t.columns(EventMember), t.columns(Health)
                _rescale_members(m.event, h.hp, h.max_hp, m.base_hp, h.dead, ids, factor, new_d)
        for t in self._events:
            pos = np.searchsorted(ids, t.ids)
            w = t.columns(WorldEvent)
            w.participants[:] = part[pos, 0]
            w.level[:] = part[pos, 1]
            w.alive[:] = judged[pos, E_ALIVE]
            w.empty_since[:] = judged[pos, E_EMPTY_SINCE]
            w.difficulty[:] = new_d[pos]
        tal, row = self._tally()
        np.maximum.at(tal.column(EventTally, "max_participants"), row[ev["type"]], part[:, 0].astype(np.int64))
        np.maximum.at(tal.column(EventTally, "max_difficulty"), row[ev["type"]], new_d)
        # Announced events whose time has come: their mobs appear.
        for i in np.flatnonzero(outcome == ACTIVATE).tolist():
            e = int(ids[i])
            world.set(e, WorldEvent, phase=ACTIVE, alive=int(ev["mobs"][i]))
            self._spawn_mobs(world, ctx, e, int(ev["type"][i]), float(ev["x"][i]), float(ev["y"][i]),
                             float(new_d[i]), int(ev["mobs"][i]))
        # Ended events: despawn them and whatever of them still stands (corpses keep their time).
        gone = np.flatnonzero(outcome >= COMPLETED)
        if gone.size:
            for t in self._members:
                stand = np.isin(t.column(EventMember, "event"), ids[gone]) & (t.column(Health, "dead") == 0)
                for m in t.ids[stand].tolist():
                    world.commands.despawn(m)
            rows = []
            for i in gone.tolist():
                ty, out = int(ev["type"][i]), OUTCOMES[int(outcome[i]) - COMPLETED]
                world.commands.despawn(int(ids[i]))
                tal.column(EventTally, out)[row[ty]] += 1
                rows.append((ctx.tick, ty, out, int(ev["cell"][i])))
            self.stats.log(self.stats.end_log, rows)

    def _spawn_events(self, world, ctx, plan, players, order) -> None:
        if plan.shape[0] == 0:
            return
        tick = ctx.tick
        ty = plan[:, P_TYPE].astype(np.int32)
        part = np.zeros((plan.shape[0], 2), np.float64)
        _participants(np.ascontiguousarray(plan[:, P_X]), np.ascontiguousarray(plan[:, P_Y]), self.t_radius[ty],
                      players, self.cell_start, order, self.grid.geom, self.pvp, part)
        diff = np.empty(plan.shape[0], np.float64)
        _difficulties(ty, part, self.types, np.zeros(plan.shape[0]), 0.0, diff)
        tal, row = self._tally()
        rows = []
        for j in range(plan.shape[0]):
            k = int(ty[j])
            t = self.cfg.types[k]
            announce = int(self.t_announce[k])
            phase = ANNOUNCED if announce > 0 else ACTIVE
            x, y, d = float(plan[j, P_X]), float(plan[j, P_Y]), float(diff[j])
            e = world.commands.spawn((WorldEvent,), {WorldEvent: {
                "type": k, "role": int(plan[j, P_ROLE]), "phase": phase, "cell": int(plan[j, P_CELL]),
                "source_cell": int(plan[j, P_SOURCE]), "x": x, "y": y, "radius_m": t.radius_m, "difficulty": d,
                "participants": int(part[j, 0]), "level": part[j, 1], "mobs": t.mobs,
                "alive": t.mobs if phase == ACTIVE else 0, "spawned_tick": tick, "active_tick": tick + announce,
                "deadline_tick": tick + announce + int(self.t_duration[k]),
                "empty_since": -1 if part[j, 0] > 0 else tick,
            }})
            if phase == ACTIVE:
                self._spawn_mobs(world, ctx, e, k, x, y, d, t.mobs)
            r = row[k]
            tal.column(EventTally, "spawned")[r] += 1
            tal.column(EventTally, "mobs_spawned")[r] += t.mobs
            tal.column(EventTally, "max_participants")[r] = max(tal.column(EventTally, "max_participants")[r],
                                                                 int(part[j, 0]))
            tal.column(EventTally, "max_difficulty")[r] = max(tal.column(EventTally, "max_difficulty")[r], d)
            rows.append((tick, k, int(plan[j, P_ROLE]), int(plan[j, P_CELL]), t.mobs, round(d, 4)))
        self.stats.log(self.stats.spawn_log, rows)

    def _spawn_mobs(self, world, ctx, event: int, type_index: int, x: float, y: float, difficulty: float,
                    n: int) -> None:
        t = self.cfg.types[type_index]
        mx = np.empty(n, np.float64)
        my = np.empty(n, np.float64)
        _disc_points(np.uint64(ctx.rng.seed), ctx.tick, np.int64(event), n, x, y, 0.5 * t.radius_m, self.bounds,
                     mx, my)
        hp = t.mob_hp * difficulty
        world.commands.spawn_batch(self.mob_archetype, n, {
            Position: {"x": mx, "y": my},
            Velocity: {},
            Health: {"hp": hp, "max_hp": hp, "dead": 0, "died_tick": -1},
            # Leashed to the event's centre: mobs stay within half its radius, in its cell's budget.
            Npc: {"home_x": x, "home_y": y, "leash_m": 0.5 * t.radius_m, "speed_mps": t.mob_speed_mps,
                  "kind": -1 - type_index},  # negative: no population of the world file
            Loot: {"gold": t.mob_gold, "container": 0},
            EventMember: {"event": event, "base_hp": t.mob_hp},
        })


def event_systems(world, defn, npc_archetype, build: bool = True) -> list[System]:
    """The density count and field and the event director for a world, or none when it has no
    ``[events]`` section. With ``build``, builds the cell, tally and activity entities (call it
    while building the world); a shard's systems build none.

    ``npc_archetype``: the components of an NPC (``worlds.runtime.NPC_ARCHETYPE``); event mobs
    get those plus ``EventMember``.
    """
    if getattr(defn, "events", None) is None:
        return []
    field = DensityField(world, defn, extra=(DirectorCell,), build=build)
    return [DensityCount(world, defn, field.grid), field, EventDirector(world, defn, npc_archetype, build=build)]


# --------------------------------------------------------------------------- summary


def _pct(values: np.ndarray) -> dict[str, float]:
    if values.size == 0:
        return {"p50": 0.0, "p90": 0.0, "p99": 0.0, "max": 0.0}
    p50, p90, p99 = np.percentile(values, [50, 90, 99])
    return {"p50": round(float(p50), 3), "p90": round(float(p90), 3), "p99": round(float(p99), 3),
            "max": round(float(values.max()), 3)}


def events_summary(world) -> dict | None:
    """The ``events`` section of the ``worlds`` JSON summary (None: the world has no director).

    Totals and ``by_type``: spawned, active (live: announced or active), completed, failed,
    expired, mobs spawned, most participants and highest difficulty; ``by_role``: events
    spawned per role; ``budget``: the cell and world budgets beside the most mobs ever planned
    or standing in one cell and in the world, and the most events centred in one cell;
    ``max_unserved_s``: the longest a populated cell went without an event near (crowds
    excepted); ``max_follow_lag_s``: the longest a cell that had gathered a crowd waited for
    its event; ``density``: per region of the layout, percentiles of its cells' players
    (short-term average), their total and the cell count; ``spikes``, ``crowds``: (tick, cell)
    of each flag that rose (first 200); ``live``: the first 200 live events by id, with
    participants and difficulty at the last run; ``spawns``: the last 500 (tick, type, role,
    cell, mobs, difficulty).
    """
    stats: EventStats | None = world.resources.get(EventStats)
    if stats is None:
        return None
    grid: DensityGrid = world.resources[DensityGrid]
    cfg = stats.cfg
    dt = stats.dt_s
    names = stats.type_names
    by_type = {n: {"spawned": 0, "active": 0, "completed": 0, "failed": 0, "expired": 0, "mobs_spawned": 0,
                   "max_participants": 0, "max_difficulty": 0.0} for n in names}
    for t in world.query(EventTally):
        c = t.columns(EventTally)
        for r, ty in enumerate(c.type.tolist()):
            row = by_type[names[ty]]
            for f in ("spawned", "completed", "failed", "expired", "mobs_spawned", "max_participants"):
                row[f] = int(c[f][r])
            row["max_difficulty"] = round(float(c.max_difficulty[r]), 4)
    ev = world.query(WorldEvent)
    ids = ev.ids()
    sort = np.argsort(ids, kind="stable")
    cols = {k: ev.concat(WorldEvent, k)[sort] for k in ("type", "role", "phase", "cell", "x", "y", "participants",
                                                         "difficulty", "mobs", "alive", "spawned_tick")}
    for ty in cols["type"].tolist():
        by_type[names[ty]]["active"] += 1
    totals = {k: sum(v[k] for v in by_type.values()) for k in ("spawned", "active", "completed", "failed", "expired")}
    by_role = dict.fromkeys(ROLES, 0)
    for _, _, role, *_ in stats.spawn_log:
        by_role[ROLES[role]] += 1
    live = [{"type": names[int(cols["type"][i])], "role": ROLES[int(cols["role"][i])],
             "phase": "announced" if cols["phase"][i] == ANNOUNCED else "active", "cell": int(cols["cell"][i]),
             "x": round(float(cols["x"][i]), 2), "y": round(float(cols["y"][i]), 2),
             "participants": int(cols["participants"][i]), "difficulty": round(float(cols["difficulty"][i]), 4),
             "mobs": int(cols["mobs"][i]), "alive": int(cols["alive"][i]), "spawned_tick": int(cols["spawned_tick"][i])}
            for i in range(min(ids.size, 200))]
    # Density per region: cells grouped by the region that holds their centre (reporting only).
    cells = world.query(DensityCell)
    fast = np.zeros(grid.count)
    fast[cells.concat(DensityCell, "cell")] = cells.concat(DensityCell, "fast")
    layout = world.resources.get(RegionLayout)
    cx, cy = grid.centres()
    region = layout.assign(cx, cy) if layout is not None else np.zeros(grid.count, np.int32)
    density = {}
    for r in range(layout.count if layout is not None else 1):
        v = fast[region == r]
        density[str(r)] = {**_pct(v), "players": round(float(v.sum()), 1), "cells": int(v.size)}
    f = stats.figures
    members = world.query(EventMember, Health)
    return {
        **totals,
        "by_type": by_type,
        "by_role": by_role,
        "mode": stats.mode,
        "runs": stats.runs,
        "mobs": int(members.count()),
        "mobs_alive": int(np.count_nonzero(members.concat(Health, "dead") == 0)),
        "budget": {"cell": cfg.cell_budget, "world": cfg.world_budget, "max_cell_mobs": int(f[F_CELL_MOBS]),
                   "max_world_mobs": int(stats.max_world_mobs), "cell_max_events": cfg.cell_max_events,
                   "max_cell_events": int(f[F_CELL_EVENTS])},
        "ambient_interval_s": cfg.ambient_interval_s,
        "max_unserved_s": round(float(f[F_UNSERVED]) * dt, 3),
        "max_follow_lag_s": round(float(f[F_LAG]) * dt, 3),
        "rescaled": {"up": stats.rescaled_up, "down": stats.rescaled_down},
        "spikes": [list(s) for s in grid.spike_onsets[:200]],
        "spike_detect_ticks_max": max(grid.spike_detect_ticks, default=0),
        "crowds": [list(s) for s in grid.crowd_onsets[:200]],
        "density_cell_m": grid.cell_m,
        "density": density,
        "live": live,
        "spawns": [list(s) for s in stats.spawn_log[-500:]],
    }
