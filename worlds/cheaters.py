"""Cheating clients, as the world file declares them, and the ground truth they leave.

A cheater is a simulated client of an ordinary population with one thing changed:

- ``speedhack``: moves at ``speed_factor`` times its top speed;
- ``teleport``: now and then jumps ``teleport_m`` in a random direction;
- ``aimbot``: lands ``accuracy`` of its shots almost whatever their difficulty (only
  ``difficulty_falloff`` of it falls with difficulty: a smoothed, humanised aimbot has more),
  and answers a hit, or turns on its next foe once its last one died, after ``reaction_ms``
  (+- ``reaction_jitter_ms``) from when the news reached the client (no interpolation buffer:
  it reads the state, not the screen);
- ``rapid_fire``: fires ``fire_rate_factor`` times faster than its weapon allows;
- ``bot``: acts on a fixed beat of ``interval_ms`` (+- ``interval_jitter_ms``, a normal bounded
  at 3 sigma; no beat shorter than a fifth of the interval), walking to the nearest prey when
  nothing is in reach;
- ``timestamp``: back-dates ``forge_share`` of its attacks and loots by ``forge_ms`` to win
  contests, and replays some packets (``replay_rate``);
- ``dupe``: tries to duplicate gold: replays trades and offers gold it does not hold
  (``dupe_rate``);
- ``loot_luck``: knows which corpses hold rare items (a leaked seed) and loots only those.

``impossible`` marks, for each generated action, whether it could not have happened given
what the server knows (its record of the player and the rules): that is what "100 % of
impossible actions refused" is measured against; honest clients never produce one.
"""

from __future__ import annotations

import numpy as np

from ecs import Rng
from systems.actions import ActionBatch, ActionKind
from systems.apply_actions import rare_drops
from systems.columns import gather, locate
from systems.components import Inventory, Player
from worlds.schema import CHEAT_KINDS

S_CHEAT, S_TELEPORT, S_REPLAY, S_DUPE, S_FORGE = range(300, 305)
KIND_CODE = {name: k + 1 for k, name in enumerate(CHEAT_KINDS)}  # 0 is honest
BOT_HUNT_M = 1000.0  # a farming bot goes looking for prey across the map


class CheatProfiles:
    """Per player: which cheat (``kind``, 0 honest) and its parameters."""

    def __init__(self, defn, ids: np.ndarray, population: np.ndarray, rng: Rng) -> None:
        self.defn = defn
        self.rng = rng
        n = ids.shape[0]
        self.kind = np.zeros(n, np.int64)
        self.entry = np.full(n, -1, np.int64)
        names = [p.name for p in defn.players()]
        rank = rng.uniform(0, ids, S_CHEAT)
        for e, c in enumerate(defn.cheaters):
            pool = np.flatnonzero((population == names.index(c.population)) & (self.kind == 0))
            chosen = pool[np.argsort(rank[pool], kind="stable")[: c.count]]
            self.kind[chosen] = KIND_CODE[c.kind]
            self.entry[chosen] = e

    def param(self, name: str, default: float) -> np.ndarray:
        """(n,) float64: the parameter of each cheater's entry, ``default`` for the others."""
        out = np.full(self.kind.shape[0], float(default))
        for e, c in enumerate(self.defn.cheaters):
            out[self.entry == e] = getattr(c, name)
        return out

    def is_(self, kind: str) -> np.ndarray:
        return self.kind == KIND_CODE[kind]

    def apply_to(self, gen) -> None:
        """Set the client traits cheats change on the generator ``gen``."""
        from worlds.generator import CLIENT_PACE

        gen.pace = np.where(self.is_("speedhack"), self.param("speed_factor", 1.0), CLIENT_PACE)
        rapid = self.is_("rapid_fire")
        gen.fire_factor = np.where(rapid, self.param("fire_rate_factor", 1.0), 1.0)
        aim = self.is_("aimbot")
        # Shooters: a rapid-fire client pulls the trigger as fast as its hack allows, an aimbot
        # user prefers the gun. Mix order: move, melee, ranged, cast, loot, trade, use.
        shooter = np.cumsum([0.15, 0.05, 0.75, 0.05, 0.0, 0.0, 0.0])
        gen.mix_cdf[rapid | aim] = shooter
        rate_cap = 1000.0 / self.defn.rules.ranged_interval_ms
        gen.rate = np.where(rapid, np.maximum(gen.rate, 1.2 * gen.fire_factor * rate_cap), gen.rate)
        gen.rate = np.where(aim, np.maximum(gen.rate, 1.5 * rate_cap), gen.rate)
        gen.aim_accuracy = np.where(aim, self.param("accuracy", 0.0), 0.0)
        gen.aim_falloff = np.where(aim, self.param("difficulty_falloff", 0.15), 0.15)
        gen.react_mean = np.where(aim, self.param("reaction_ms", 0.0), gen.react_mean)
        gen.react_sd = np.where(aim, self.param("reaction_jitter_ms", 0.0), gen.react_sd)
        # An aimbot reads the freshest state the client holds, not what its screen shows.
        gen.honest.interp_ms = np.where(aim, 0.0, gen.honest.interp_ms)
        bot = self.is_("bot")
        gen.behaviour = np.where(bot, 2, gen.behaviour)  # a farming bot: fights whatever is near, on a beat,
        gen.hunt_m = np.where(bot, BOT_HUNT_M, gen.hunt_m)  # and walks to the nearest prey when none is
        gen.bot_interval = np.where(bot, self.param("interval_ms", 0.0), 0.0)
        gen.bot_jitter = np.where(bot, self.param("interval_jitter_ms", 0.0), 0.0)
        gen.bot_min_beat = 0.2 * gen.bot_interval  # a wide jitter does not make the beat run backwards
        gen.next_beat_ms = gen.bot_interval * self.rng.uniform(0, gen.ids, S_CHEAT, 1)

    def teleport(self, gen, tick: int, ex: np.ndarray, ey: np.ndarray) -> None:
        """Teleporters jump: their client position and this tick's claims move at once."""
        who = np.flatnonzero(self.is_("teleport"))
        if not who.size:
            return
        jump = self.rng.uniform(tick, gen.ids[who], S_TELEPORT) < self.param("teleport_rate_per_s", 0.0)[who] * gen.dt_s
        who = who[jump]
        angle = 2 * np.pi * self.rng.uniform(tick, gen.ids[who], S_TELEPORT, 1)
        dist = self.param("teleport_m", 0.0)[who]
        x0, y0, x1, y1 = self.defn.bounds
        for arr, d in ((gen.x, np.cos(angle)), (ex, np.cos(angle))):
            arr[who] = np.clip(arr[who] + dist * d, x0, x1)
        for arr, d in ((gen.y, np.sin(angle)), (ey, np.sin(angle))):
            arr[who] = np.clip(arr[who] + dist * d, y0, y1)

    def tamper(self, gen, tick: int, who: np.ndarray, batch: ActionBatch) -> ActionBatch:
        """Back-dated timestamps, replayed packets, unheld offers, lucky loot only."""
        actor = who  # generator row of each action's actor
        forgers = self.is_("timestamp")[actor]
        contest = np.isin(batch.kind, [ActionKind.MELEE, ActionKind.RANGED, ActionKind.CAST, ActionKind.LOOT])
        forged = forgers & contest
        share = self.param("forge_share", 1.0)[actor]
        if forged.any() and (share[forged] < 1.0).any():  # now and then only
            forged &= self.rng.uniform(tick, batch.actor, S_FORGE) < share
        batch.client_time_ms[forged] -= self.param("forge_ms", 0.0)[actor][forged]
        self.forged = forged  # which rows were back-dated (``impossible`` reads it)
        dupers = self.is_("dupe")[actor]
        trades = dupers & (batch.kind == ActionKind.TRADE)
        if trades.any():
            gold, _ = gather(gen.world, batch.actor[trades], Inventory, "gold")
            inflate = self.rng.uniform(tick, batch.actor[trades], S_DUPE) < self.param("dupe_rate", 0.0)[actor][trades]
            batch.value[np.flatnonzero(trades)[inflate]] = gold[inflate] + 10.0
        lucky = self.is_("loot_luck")[actor] & (batch.kind == ActionKind.LOOT)
        if lucky.any():
            keep = rare_drops(self.rng.seed, batch.target[lucky], self.defn.cheat.rare_drop_p)
            batch.kind[np.flatnonzero(lucky)[~keep]] = ActionKind.MOVE
        rate = np.where(forgers, self.param("replay_rate", 0.0)[actor], 0.0)
        rate = np.where(dupers & (batch.kind == ActionKind.TRADE), self.param("dupe_rate", 0.0)[actor], rate)
        again = np.flatnonzero(self.rng.uniform(tick, batch.actor, S_REPLAY) < rate)
        if not again.size:
            return batch
        self.forged = np.concatenate([forged, forged[again]])
        copy = batch.take(again)
        copy.recv_time_ms = copy.recv_time_ms + 5.0  # the same packet, sent once more
        return ActionBatch.concat([batch, copy])

    def impossible(self, gen, batch: ActionBatch) -> np.ndarray:
        """(n,) bool ground truth: actions that could not have happened, by the server's record.

        A position claim farther from the record than top speed allows over the time since it;
        a weapon used within its interval of the recorded last use; a replayed packet; gold
        offered but not held.
        """
        n = batch.n
        if n == 0:
            return np.zeros(0, np.bool_)
        rules = self.defn.rules
        at = locate(gen.world, batch.actor)
        rec = {f: gather(gen.world, batch.actor, Player, f, at=at)[0]
               for f in ("last_x", "last_y", "last_move_ms", "clock_offset_ms", "speed_mps", "last_melee_ms",
                         "last_ranged_ms", "last_cast_ms", "jitter_ms")}
        t_ms = batch.client_time_ms - rec["clock_offset_ms"]
        row = np.searchsorted(gen.ids, batch.actor)
        forged = getattr(self, "forged", None)
        if forged is None or forged.shape[0] != n:
            forged = self.is_("timestamp")[row] & np.isin(batch.kind, [2, 3, 4, 5])
        true_t = t_ms + np.where(forged, self.param("forge_ms", 0.0)[row], 0.0)
        far = np.hypot(batch.x - rec["last_x"], batch.y - rec["last_y"])
        allowed = rec["speed_mps"] * (1.0 + rules.speed_tolerance) * np.abs(true_t - rec["last_move_ms"]) / 1000.0
        out = far > allowed + 1e-6
        for kd, last, interval in ((2, "last_melee_ms", rules.melee_interval_ms),
                                   (3, "last_ranged_ms", rules.ranged_interval_ms),
                                   (4, "last_cast_ms", rules.cast_cooldown_ms)):
            out |= (batch.kind == kd) & (np.abs(true_t - rec[last]) < interval)
        # (Back-dating is not impossible: a late claim is clamped to what the link explains, and
        # the anomaly score's timing evidence finds the player who keeps doing it.)
        seen: set[tuple[int, int]] = set()
        for i, key in enumerate(zip(batch.actor.tolist(), batch.seq.tolist())):
            if key in seen:
                out[i] = True  # a replay
            seen.add(key)
        trades = batch.kind == ActionKind.TRADE
        if trades.any():
            gold, _ = gather(gen.world, batch.actor[trades], Inventory, "gold")
            out[np.flatnonzero(trades)[batch.value[trades] > gold]] = True
        return out
