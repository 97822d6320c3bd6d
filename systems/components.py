"""Component schemas shared by the systems. Declared once; tables are built from them.

Units are in field names where they are not obvious: metres, seconds, milliseconds.
"""

from ecs import Component, tag

Position = Component("Position", [("x", "f8"), ("y", "f8")], row_major=True)
Velocity = Component("Velocity", [("vx", "f8"), ("vy", "f8")], row_major=True)

# hp is additive under merge (damage and heals from one tick all count); dead is set once.
Health = Component(
    "Health",
    [("hp", "f8"), ("max_hp", "f8"), ("dead", "u1"), ("died_tick", "i8")],
    defaults={"hp": 100.0, "max_hp": 100.0, "died_tick": -1},
    merge={"hp": "additive", "dead": "max"},
)

# What the server knows of a connected player: the highest sequence number it accepted and a
# 64-wide window of the ones below (packets may arrive out of order, never twice), where and
# when (client clock) its last accepted position claim put it, and its measured network figures.
Player = Component(
    "Player",
    [
        ("last_seq", "i8"),
        ("seq_window", "i8"),  # bit k set: sequence number last_seq - k was accepted (anti-replay)
        ("last_move_ms", "f8"),
        ("last_x", "f8"),
        ("last_y", "f8"),
        ("rtt_ms", "f8"),
        ("jitter_ms", "f8"),
        ("clock_offset_ms", "f8"),
        ("speed_mps", "f8"),
        ("life_start_ms", "f8"),  # game time of the last (re)spawn; older actions are void
        ("team", "i4"),
        ("population", "i4"),  # index among the world file's player populations
        ("connected", "u1"),  # 0 while the client is gone: its avatar stays, its actions are refused
        # Weapon and rate bookkeeping on the client's clock: last swing, shot, cast; the token
        # bucket of the action-rate cap.
        ("last_melee_ms", "f8"),
        ("last_ranged_ms", "f8"),
        ("last_cast_ms", "f8"),
        ("tokens", "f8"),
        ("tokens_ms", "f8"),
    ],
    defaults={"last_seq": -1, "last_move_ms": -1.0e18, "connected": 1, "last_melee_ms": -1.0e18,
              "last_ranged_ms": -1.0e18, "last_cast_ms": -1.0e18, "tokens": 1.0e9, "tokens_ms": -1.0e18},
    row_major=True,
)

# The player's link as the server sees it: when its last packet arrived (valid or not: arrivals
# are facts about the connection, not game state) and the last stall, the silence before a burst.
Link = Component("Link", [("last_recv_ms", "f8"), ("gap_ms", "f8"), ("gap_end_ms", "f8")],
                 row_major=True,
                 defaults={"last_recv_ms": -1.0e18})

Inventory = Component(
    "Inventory",
    [("gold", "i8"), ("potions", "i8"), ("rares", "i8")],  # rares: rare items found in loot
    merge={"gold": "additive", "potions": "additive", "rares": "additive"},
)

# NPC wandering: a home it stays near, a heading it keeps for a while, and its pace.
Npc = Component(
    "Npc",
    [("home_x", "f8"), ("home_y", "f8"), ("leash_m", "f8"), ("speed_mps", "f8"), ("kind", "i4"),
     ("attack_damage", "f8"), ("attack_per_s", "f8"), ("attack_reach_m", "f8")],
)
# A purse: dropped by a killed NPC (lootable once it is a corpse), or a chest's (container = 1,
# lootable at any time). Looting is a first claim.
Loot = Component("Loot", [("gold", "i8"), ("container", "u1")], merge={"gold": "first_claim"})

Static = tag("Static")

# Held by the read-only copies a shard keeps of entities other shards own (``owner``: the shard
# that does): layout bookkeeping, out of the state hash. Systems that create or destroy
# entities for reasons found in rows leave copies alone: their owner does it.
Ghost = Component("Ghost", [("owner", "i4")], hashed=False)
# A copy lent to a shard for one tick only (the rows a conflict group it resolves touches,
# from beyond its interest zone): kept apart from the ghosts, dropped when the tick ends.
Borrowed = Component("Borrowed", [("_", "u1")], hashed=False)  # entities that never move (props, chests)

# Streaming evidence about one player, updated by the anomaly score each tick (see that system).
# A row is read and written whole for the tick's actors, so what every action touches comes
# first, then what attacks touch, then shots, then the rare: most actions touch one or two
# cache lines of it.
CheatStats = Component(
    "CheatStats",
    [
        ("flags", "f8"), ("flag_tick", "f8"),  # flag bits and tick: float64, one block
        ("speed_cusum", "f8"),
        # attacks and loots timed, and those among them later than the link explains by excess_delay_ms
        ("excess_n", "f8"), ("excess_late", "f8"),
        ("last_t_ms", "f8"), ("prev_int", "f8"), ("int_n", "f8"), ("int_sum", "f8"), ("int_sq", "f8"),
        ("repeats", "f8"),
        # attacks soon after their weapon was ready again (left out of the intervals above): how
        # long after, in ms (count, sum, and sums of squares, cubes and fourth powers: the
        # population's kurtosis there sets how far a spread measured on a few attacks may stray),
        # and the sum of the gates' widths (gate_share x the weapon's interval)
        ("gate_n", "f8"), ("gate_sum", "f8"), ("gate_sq", "f8"), ("gate_cu", "f8"), ("gate_qu", "f8"),
        ("gate_span", "f8"),
        ("hurt_ms", "f8"), ("react_n", "f8"), ("react_sum", "f8"), ("react_sq", "f8"),
        # Target acquisition: the client's own weapon clocks (last swing, shot, cast, counting
        # those at a foe that died meanwhile); first attacks on a new foe timed from seeing the
        # last one die (acq_n), those faster than the world file's two cuts (acq_fast, then
        # acq_quick).
        ("last_melee_ms", "f8"), ("last_ranged_ms", "f8"), ("last_cast_ms", "f8"),
        ("acq_n", "f8"), ("acq_fast", "f8"), ("acq_quick", "f8"),
        # shots, hits: judged ranged shots and the hits among them; shots<k>, hits<k>: the same
        # for the shots of the k-th difficulty bin of the aim test (the anomaly score's
        # AIM_BINS), which weighs them against the population's hit rate in that bin.
        ("shots", "f8"), ("hits", "f8"), *[(f"shots{k}", "f8") for k in range(8)],
        *[(f"hits{k}", "f8") for k in range(8)],
        ("loots", "f8"), ("rares", "f8"),
        ("r_move", "f8"), ("r_timing", "f8"), ("r_rate", "f8"), ("r_economy", "f8"),
        ("econ_n", "f8"),  # trades and potions used, refused or not: what economy refusals are out of
        ("last_target", "i8"),  # the foe of the last attack (an id: all 64 bits, so read apart)
    ],
    defaults={"hurt_ms": -1.0e18, "last_t_ms": -1.0e18, "last_melee_ms": -1.0e18, "last_ranged_ms": -1.0e18,
              "last_cast_ms": -1.0e18, "flag_tick": -1},
    row_major=True,  # read and written whole, for the tick's actors only
)
