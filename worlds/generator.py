"""Synthetic players: an action stream driven by the behaviours a world file declares.

Each player is simulated as a client: it keeps its own position and heading, moves at most at
its top speed, and sends actions (moves, attacks, casts, loot, trades, potions) at its
population's rate, stamped with its own clock (true time plus a per-player clock offset). The
server receives each action half a round trip later, plus jitter, and later still when the
client stalls; the action waits in the inbox until the tick after it arrives. Every draw is
keyed (seed, tick, player, stream), so a world file and seed give one stream, always.

Behaviours: ``wander`` (random headings), ``travel`` (hotspot to hotspot), ``fight`` (close
in on the nearest enemy and attack it), ``trade`` (go to a hotspot, trade with those there),
``idle`` (stay and only use items now and then).

The human and its client program (skill, hit curve, fire mode, frame clock, perception) are
``worlds.honest``'s; the link (measured and true, per-packet delays) is ``worlds.links``'s;
cheats are ``worlds.cheaters``'s. This module steers and schedules.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from ecs import Rng
from ecs.config import JIT
from systems.actions import ActionBatch, ActionKind
from systems.anomaly_score import shot_difficulty
from systems.apply_actions import TradeOffer
from systems.columns import gather, locate
from systems.components import Health, Inventory, Loot, Player, Position, Velocity
from systems.obstacles import inside_many, obstacle_arrays, segment_blocked
from systems.spatial_index import SpatialIndex
from worlds.cheaters import CheatProfiles
from worlds.honest import HonestClients
from worlds.links import PacketDelays, client_network

BEHAVIOURS = ("wander", "travel", "fight", "trade", "idle")
# Probability of each kind for one action, per behaviour: move, melee, ranged, cast, loot, trade, use.
_MIX = {
    "wander": (0.88, 0.0, 0.0, 0.0, 0.08, 0.0, 0.04),
    "travel": (0.92, 0.0, 0.0, 0.0, 0.05, 0.0, 0.03),
    "fight": (0.35, 0.28, 0.17, 0.1, 0.06, 0.0, 0.04),
    "trade": (0.3, 0.0, 0.0, 0.0, 0.0, 0.66, 0.04),
    "idle": (0.5, 0.0, 0.0, 0.0, 0.0, 0.0, 0.5),
}
_KINDS = np.array([ActionKind.MOVE, ActionKind.MELEE, ActionKind.RANGED, ActionKind.CAST,
                   ActionKind.LOOT, ActionKind.TRADE, ActionKind.USE], np.int8)
(S_ACT, S_KIND, S_OFFSET, S_JITTER, S_TURN, S_HEADING, S_STALL, S_HOTSPOT, S_GOLD, S_NET, S_SKILL, S_REACT, S_BEAT,
 S_HIT) = range(200, 214)
CLIENT_PACE = 0.95  # honest clients move a little under their top speed
ANSWER_PATIENCE_MS = 2000.0  # how long a client that lost its foe waits for the next one to come in reach
__all__ = ["ActionGenerator", "client_network"]  # client_network: worlds.links's, where the runtime looks


class ActionGenerator:
    """Simulated clients for every player of a world; ``generate(tick)`` returns what they sent.

    Honest clients respect the rules (top speed, weapon intervals, walls and sight lines) and
    have a human's spread: skill (hit chance times the difficulty of the shot), reaction time
    (to being hurt, and to the death of the foe they fight: only after it do they attack the
    next one, with a weapon ready by then), irregular timing. Cheaters (the world file's
    ``[[cheaters]]``) are clients of the same populations with one thing changed; ``truth``
    holds, per generated action, whether it was physically impossible, which is what
    prevention is measured against.
    """

    def __init__(self, defn, world, player_ids, population, network: dict, rng: Rng, dt_s: float) -> None:
        self.defn = defn
        self.world = world
        self.rng = rng
        self.dt_s = dt_s
        self.ids = np.asarray(player_ids, np.int64)
        n = self.ids.shape[0]
        pops = defn.players()
        self.pop = np.asarray(population, np.int64)
        self.behaviour = np.array([BEHAVIOURS.index(pops[p].behaviour) for p in self.pop], np.int64)
        self.speed = np.array([pops[p].speed_mps or defn.rules.player_speed_mps for p in self.pop])
        self.rate = np.array([pops[p].actions_per_s for p in self.pop])
        self.team = np.array([pops[p].team for p in self.pop], np.int64)
        net = [pops[p].network for p in self.pop]
        # The client lives on its true link; the server's record holds what it measured.
        self.rtt_ms = network.get("true_rtt_ms", network["rtt_ms"])
        self.clock_offset_ms = network.get("true_clock_offset_ms", network["clock_offset_ms"])
        self.links = PacketDelays(pops, self.pop, self.rtt_ms, rng)
        self.next_seq = np.zeros(n, np.int64)
        self.x, _ = gather(world, self.ids, Position, "x")
        self.y, _ = gather(world, self.ids, Position, "y")
        self.heading = 2 * np.pi * rng.uniform(0, self.ids, S_HEADING)
        self.life_start_ms, _ = gather(world, self.ids, Player, "life_start_ms")
        self.potions, _ = gather(world, self.ids, Inventory, "potions")  # as the client counts them
        self.last_hp, _ = gather(world, self.ids, Health, "hp")
        self.hot_x = np.array([h.x for h in defn.hotspots]) if defn.hotspots else np.zeros(1)
        self.hot_y = np.array([h.y for h in defn.hotspots]) if defn.hotspots else np.zeros(1)
        self.hot_r = np.array([h.radius_m for h in defn.hotspots]) if defn.hotspots else np.ones(1)
        names = [h.name for h in defn.hotspots]
        self.route = [np.array([names.index(h) for h in (pops[p].hotspots or names)], np.int64)
                      for p in range(len(pops))]
        self.leg = (rng.uniform(0, self.ids, S_HOTSPOT) * 1e6).astype(np.int64)
        self.mix = np.array([_MIX[BEHAVIOURS[b]] for b in self.behaviour]).reshape(n, len(_KINDS))
        self.mix_cdf = np.cumsum(self.mix, axis=1)
        r = defn.rules
        self.interval_ms = {ActionKind.MELEE: r.melee_interval_ms, ActionKind.RANGED: r.ranged_interval_ms,
                            ActionKind.CAST: r.cast_cooldown_ms}
        self.last_fired = {k: np.full(n, -1e18) for k in self.interval_ms}  # the client's weapon clocks
        # A human: skill (the share of possible hits it lands) and reaction time, per player.
        self.honest = HonestClients(pops, self.pop, self.ids, rng)
        self.skill = self.honest.skill
        self.react_mean = np.maximum(260.0 + 35.0 * rng.normal(0, self.ids, S_SKILL, 1), 180.0)
        self.react_sd = np.full(n, 60.0)
        self.respond_at = np.full(n, -1e18)
        # The foe a client last attacked, and when: once it dies, the client needs its reaction
        # time to notice and pick the next one, and cannot attack anyone before (``hold_ms``).
        self.engaged = np.zeros(n, np.int64)
        self.engaged_ms = np.full(n, -1e18)
        self.hold_ms = np.full(n, -1e18)
        self.acquire_at = np.full(n, -1e18)
        r_engage = rng.uniform(0, self.ids, S_SKILL, 2)
        self.hunt_m = np.full(n, 3.0 * r.ranged_range_m)  # fighters take on foes they can see nearby
        self.engage_m = np.where(r_engage < 0.5, 0.5 * r.melee_reach_m,
                                 0.2 * r.ranged_range_m + r_engage * 0.6 * r.ranged_range_m)
        self.update_ms = np.array([1000.0 / x.update_hz for x in net])
        self.last_sent_ms = np.full(n, -1e18)
        self.walls, self.occluders = obstacle_arrays(defn)
        self.cheat = CheatProfiles(defn, self.ids, self.pop, rng)
        self.cheat.apply_to(self)

    # -- steering ---------------------------------------------------------------------------
    def _destination(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Per player: a goal point and whether it has one (travel, trade, fight)."""
        n = self.ids.shape[0]
        gx, gy, has = np.zeros(n), np.zeros(n), np.zeros(n, np.bool_)
        routed = (self.behaviour == 1) | (self.behaviour == 3)
        if self.defn.hotspots and routed.any():
            idx = np.flatnonzero(routed)
            h = np.array([self.route[self.pop[i]][self.leg[i] % len(self.route[self.pop[i]])] for i in idx.tolist()],
                         np.int64)
            gx[idx], gy[idx], has[idx] = self.hot_x[h], self.hot_y[h], True
            # Travellers that reached their hotspot go on to the next one.
            arrived = np.hypot(self.x[idx] - gx[idx], self.y[idx] - gy[idx]) < 0.5 * self.hot_r[h]
            arrived &= self.behaviour[idx] == 1
            self.leg[idx[arrived]] += 1
            # Traders stop once inside the market.
            near = np.hypot(self.x[idx] - gx[idx], self.y[idx] - gy[idx]) < 0.6 * self.hot_r[h]
            inside = (self.behaviour[idx] == 3) & near
            has[idx[inside]] = False
        return gx, gy, has

    def generate(self, tick: int, index: SpatialIndex | None) -> tuple[ActionBatch, np.ndarray]:
        """The actions clients sent during tick ``tick``, and the tick each one reaches us.

        ``self.truth`` is set to the (n,) bool ground truth: which of them were impossible.
        """
        rng, dt = self.rng, self.dt_s
        tick_ms = 1000.0 * dt
        ids = self.ids
        n = ids.shape[0]
        self.truth = np.zeros(0, np.bool_)
        if n == 0:
            return ActionBatch.empty(), np.empty(0, np.int64)
        at = locate(self.world, ids)
        dead, _ = gather(self.world, ids, Health, "dead", at=at)
        hp, _ = gather(self.world, ids, Health, "hp", at=at)
        sx, _ = gather(self.world, ids, Position, "x", at=at)
        sy, _ = gather(self.world, ids, Position, "y", at=at)
        life, _ = gather(self.world, ids, Player, "life_start_ms", at=at)
        connected, _ = gather(self.world, ids, Player, "connected", at=at)
        alive = (dead == 0) & (connected != 0)  # a disconnected client sends nothing
        # A dead or just revived client's view snaps to the server's (the respawn point).
        resync = ~alive | (life != self.life_start_ms)
        self.x[resync] = sx[resync]
        self.y[resync] = sy[resync]
        self.life_start_ms = life
        self._lose_foes(tick, alive)
        # Hurt: the client sees it at the end of the tick that hit it, half a round trip later,
        # and answers after its reaction time (not before it has found its next foe).
        hurt = alive & ~resync & (hp < self.last_hp)
        self.last_hp = hp
        react = self.react_mean + self.react_sd * np.clip(rng.normal(tick, ids, S_REACT), -2.5, 2.5)
        seen_ms = tick * tick_ms + 0.5 * self.rtt_ms + self.honest.interp_ms  # on its screen
        answer_ms = np.maximum(seen_ms + np.maximum(react, 60.0), self.hold_ms)
        self.respond_at = np.where(hurt, answer_ms, self.respond_at)

        gx, gy, has_goal = self._destination()
        fighters = np.flatnonzero(alive & (self.behaviour == 2))
        foe = np.full(n, -1, np.int64)
        if index is not None and fighters.size:
            for hunt in np.unique(self.hunt_m[fighters]):  # how far each fighter looks for a foe
                f = fighters[self.hunt_m[fighters] == hunt]
                foe[f] = self._nearest_foe(index, f, float(hunt))
            chase = fighters[foe[fighters] >= 0]
            fx, _ = gather(self.world, foe[chase], Position, "x")
            fy, _ = gather(self.world, foe[chase], Position, "y")
            gx[chase], gy[chase], has_goal[chase] = fx, fy, True
        turn = rng.uniform(tick, ids, S_TURN) < 0.3 * dt
        self.heading = np.where(turn, 2 * np.pi * rng.uniform(tick, ids, S_HEADING), self.heading)
        toward = np.arctan2(gy - self.y, gx - self.x)
        heading = np.where(has_goal, toward, self.heading)
        speed = self.speed * self.pace
        dist_goal = np.hypot(gx - self.x, gy - self.y)
        # Fighters hold at the distance they like to fight from (swordsmen close, archers far).
        hold_m = np.where(self.behaviour == 2, self.engage_m, 0.5 * self.defn.rules.melee_reach_m)
        close = has_goal & (dist_goal < hold_m)
        moving = alive & (self.behaviour != 4) & ~close & ~((self.behaviour == 3) & ~has_goal)
        vx = np.where(moving, speed * np.cos(heading), 0.0)
        vy = np.where(moving, speed * np.sin(heading), 0.0)

        # When in this tick each client acts: at its own pace, on a bot's beat, or in answer.
        # A client on a frame clock sends only on its frames: in a tick without one it waits,
        # and what fell due meanwhile goes out on its next frame (``open_ms``: since when).
        hc = self.honest
        start_ms, end_ms = tick * tick_ms, (tick + 1) * tick_ms
        open_ms = start_ms
        p_act = self.rate * dt
        if hc.any_framed:
            alive = alive & hc.has_frame(start_ms, end_ms)
            open_ms = np.where(hc.framed, hc.window_ms, start_ms)
            p_act = p_act * np.where(hc.framed, np.maximum(hc.frame_ms / tick_ms, 1.0), 1.0)
        frac = rng.uniform(tick, ids, S_OFFSET)
        act = alive & (rng.uniform(tick, ids, S_ACT) < p_act)
        bots = self.bot_interval > 0
        beat = bots & alive & (self.next_beat_ms < (tick + 1) * tick_ms)
        frac = np.where(beat, np.clip((self.next_beat_ms - tick * tick_ms) / tick_ms, 0.0, 0.999), frac)
        act = np.where(bots, beat, act)
        deliberate = act.copy()
        jitter = self.bot_jitter * np.clip(rng.normal(tick, ids, S_BEAT), -3.0, 3.0)
        last = np.maximum(self.next_beat_ms, tick * tick_ms)
        after = np.where(self.bot_interval + jitter >= self.bot_min_beat, last + self.bot_interval + jitter,
                         last + self.bot_min_beat)
        self.next_beat_ms = np.where(beat, after, self.next_beat_ms)
        pending_mask = alive & ~bots & (self.acquire_at > tick * tick_ms - ANSWER_PATIENCE_MS)
        # Sustained fire: the trigger is held, the weapon goes off once ready (plus a delay).
        sustained = np.zeros(n, np.bool_)
        sustained_kind = np.zeros(n, np.int8)
        if hc.any_sustained and index is not None:
            rows = np.flatnonzero(alive & ~bots & hc.sustained & (foe >= 0) & ~pending_mask)
            rows, kd, ready_ms = self._sustained_shots(index, rows, foe, end_ms)
            sustained[rows], sustained_kind[rows] = True, kd
            overdue = ready_ms < open_ms if np.ndim(open_ms) == 0 else ready_ms < open_ms[rows]
            on_beat = np.where(overdue, np.where(hc.framed[rows], 0.0, frac[rows]), (ready_ms - start_ms) / tick_ms)
            frac[rows] = on_beat
            act |= sustained
        answer = alive & ~bots & (self.respond_at >= open_ms) & (self.respond_at < (tick + 1) * tick_ms)
        answer &= foe >= 0
        frac = np.where(answer, (self.respond_at - tick * tick_ms) / tick_ms, frac)
        # The first attack on the next foe: at once with a weapon ready by then, or (a while) as
        # soon as a foe is within its reach; with none ready, it is one of the client's
        # ordinary actions.
        pending = np.flatnonzero(pending_mask)
        weapon = np.zeros(n, np.int8)
        weapon[pending], any_ready = self._acquire_weapon(index, pending, foe[pending])
        self.acquire_at[pending[~any_ready]] = -1e18
        acquire = (weapon != 0) & (self.acquire_at < (tick + 1) * tick_ms)
        on_time = acquire & (self.acquire_at >= open_ms)
        frac = np.where(on_time, (self.acquire_at - tick * tick_ms) / tick_ms, frac)
        answer |= acquire
        act |= answer
        deliberate |= answer
        # Between actions a client keeps sending its position (a heartbeat at its update rate):
        # a silence on the link is then a stall, never a quiet player.
        # On a frame clock, position updates go out at a fixed rate, merged into any action.
        heartbeat = alive & ~act & (tick * tick_ms - self.last_sent_ms >= self.update_ms - tick_ms)
        if hc.any_framed:
            due, when = hc.updates_due(start_ms, end_ms, self.update_ms, alive)
            heartbeat = np.where(hc.framed, due & ~act, heartbeat)
            frac = np.where(hc.framed & heartbeat, (when - start_ms) / tick_ms, frac)
        act |= heartbeat
        event_q = None
        if hc.any_framed:  # timestamps on the frame clock, within the tick
            event_q = hc.on_frames(start_ms, end_ms, start_ms + frac * tick_ms)
            frac = np.where(hc.framed, (event_q - start_ms) / tick_ms, frac)
            hc.window_ms = np.where(hc.framed & hc.has_frame(start_ms, end_ms), end_ms, hc.window_ms)

        x0, y0, x1, y1 = self.defn.bounds
        ex = np.clip(self.x + vx * frac * dt, x0, x1)
        ey = np.clip(self.y + vy * frac * dt, y0, y1)
        nx = np.clip(self.x + vx * dt, x0, x1)
        ny = np.clip(self.y + vy * dt, y0, y1)
        bounced_x = (self.x + vx * dt < x0) | (self.x + vx * dt > x1)
        bounced_y = (self.y + vy * dt < y0) | (self.y + vy * dt > y1)
        self.heading = np.where(bounced_x, np.pi - self.heading, self.heading)
        self.heading = np.where(bounced_y, -self.heading, self.heading)
        if self.walls.shape[0]:  # an honest client does not walk into a wall: it stops and turns
            blocked = np.empty(n, np.bool_)
            inside_many(self.walls, nx, ny, blocked)
            inside_many(self.walls, ex, ey, blocked_e := np.empty(n, np.bool_))
            blocked |= blocked_e
            ex, ey = np.where(blocked, self.x, ex), np.where(blocked, self.y, ey)
            nx, ny = np.where(blocked, self.x, nx), np.where(blocked, self.y, ny)
            self.heading = np.where(blocked, self.heading + np.pi * (0.5 + rng.uniform(tick, ids, S_TURN, 1)),
                                    self.heading)
        self.x, self.y = nx, ny
        self.cheat.teleport(self, tick, ex, ey)

        who = np.flatnonzero(act)
        if who.size == 0:
            return ActionBatch.empty(), np.empty(0, np.int64)
        pick = rng.uniform(tick, ids[who], S_KIND)
        kind = _KINDS[(pick[:, None] >= self.mix_cdf[who]).sum(axis=1).clip(0, 6)]
        attacks = [ActionKind.MELEE, ActionKind.RANGED, ActionKind.CAST]
        kind[(answer | beat)[who] & ~np.isin(kind, attacks)] = ActionKind.RANGED
        held = sustained[who] & ~answer[who]
        kind[held] = sustained_kind[who[held]]
        kind[acquire[who]] = weapon[who[acquire[who]]]
        swords = np.flatnonzero(answer[who] & (kind == ActionKind.MELEE))
        if index is not None and swords.size:  # an answer goes to the gun when the foe is beyond the sword
            w = who[swords]
            fi = index.index_of(np.maximum(foe[w], 0))
            far = np.hypot(index.x[fi] - ex[w], index.y[fi] - ey[w]) > 0.8 * self.defn.rules.melee_reach_m
            kind[swords[far]] = ActionKind.RANGED
        kind[heartbeat[who]] = ActionKind.MOVE
        target = np.zeros(who.size, np.int64)
        value = np.zeros(who.size)
        event_ms = (tick + frac[who]) * tick_ms
        if event_q is not None:
            event_ms = np.where(hc.framed[who], event_q[who], event_ms)
        kind[np.isin(kind, attacks) & (event_ms < self.hold_ms[who] - 1e-6)] = ActionKind.MOVE  # still looking
        if index is not None:
            self._pick_targets(index, who, kind, target, value, foe, ex, ey, tick, acquire[who])
            self._aim(index, who, kind, target, value, ex, ey, event_ms, tick)
        untargeted = (kind != ActionKind.MOVE) & (kind != ActionKind.USE) & (target == 0)
        kind = np.where(untargeted, np.int8(ActionKind.MOVE), kind)
        fired = np.isin(kind, attacks)
        self.respond_at[who[fired]] = -1e18  # answered
        self.acquire_at[who[acquire[who]]] = -1e18  # one try: taken, or blocked (then its next action)
        self.engaged[who[fired]] = target[fired]
        self.engaged_ms[who[fired]] = event_ms[fired]
        if hc.any_sustained:
            shot = who[fired & sustained[who]]
            hc.shot_delay_ms[shot] = hc.next_delay(tick, shot)
        # An honest client drinks only potions it still has, and only when hurt.
        use = np.flatnonzero(kind == ActionKind.USE)
        max_hp, _ = gather(self.world, ids[who[use]], Health, "max_hp")
        drink = (self.potions[who[use]] > 0) & (hp[who[use]] < 0.7 * max_hp)
        kind[use[~drink]] = ActionKind.MOVE
        self.potions[who[use[drink]]] -= 1

        seq = self.next_seq[who] + 1
        self.next_seq[who] = seq
        self.last_sent_ms[who] = event_ms
        recv = self.links.arrival(tick, dt, who, ids[who], event_ms)
        batch = ActionBatch(
            actor=ids[who], seq=seq, client_time_ms=event_ms + self.clock_offset_ms[who], kind=kind,
            target=target, x=ex[who], y=ey[who], value=value, recv_time_ms=recv,
        )
        batch = self.cheat.tamper(self, tick, who, batch)
        self.truth = self.cheat.impossible(self, batch)
        deliver = np.maximum(np.ceil(batch.recv_time_ms / tick_ms).astype(np.int64), tick + 1)
        return batch, deliver

    def _lose_foes(self, tick: int, alive: np.ndarray) -> None:
        """Clients whose foe died see it at the end of that tick, half a round trip later, and
        attack again (the nearest foe) only after their reaction time; bots at once."""
        tick_ms = 1000.0 * self.dt_s
        e = np.flatnonzero(alive & (self.engaged != 0))
        dead, there = gather(self.world, self.engaged[e], Health, "dead")
        died, _ = gather(self.world, self.engaged[e], Health, "died_tick")
        died_end = (died + 1.0) * tick_ms
        lost = there & (dead != 0) & (died_end >= self.engaged_ms[e])
        lost &= self.bot_interval[e] <= 0  # a bot keeps its beat: its program picks the next foe at once
        self.engaged[e[lost | ~there]] = 0
        e, died_end = e[lost], died_end[lost]
        draw = np.clip(self.rng.normal(tick, self.ids[e], S_REACT, 1), -2.5, 2.5)
        react = self.react_mean[e] + self.react_sd[e] * draw
        seen_ms = died_end + 0.5 * self.rtt_ms[e] + self.honest.interp_ms[e]  # on its screen
        self.hold_ms[e] = self.acquire_at[e] = seen_ms + np.maximum(react, 60.0)

    def _acquire_weapon(self, index: SpatialIndex | None, who: np.ndarray,
                        foe: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """For the first attack of clients ``who`` on a new foe (``foe``: their foes' ids, -1
        none): the weapon (an ActionKind, 0 none) ready by ``acquire_at`` whose reach holds
        the foe, the gun first; and whether any weapon is ready by then."""
        n = who.shape[0]
        weapon = np.zeros(n, np.int8)
        any_ready = np.zeros(n, np.bool_)
        dist = np.full(n, np.inf)
        if index is not None and n:
            fi = index.index_of(np.maximum(foe, 0))
            near = np.hypot(index.x[fi] - self.x[who], index.y[fi] - self.y[who])
            dist = np.where((foe >= 0) & (fi >= 0), near, np.inf)
        r = self.defn.rules
        # 0.9 of the reach: still within the 0.95 a first attack is made from after the step.
        for kd, reach in ((ActionKind.MELEE, r.melee_reach_m), (ActionKind.CAST, r.cast_range_m),
                          (ActionKind.RANGED, r.ranged_range_m)):
            clock = self.last_fired[kd][who] + self.interval_ms[kd] / self.fire_factor[who] * 1.02
            ready = clock <= self.acquire_at[who]
            any_ready |= ready
            weapon = np.where(ready & (dist <= 0.9 * reach), np.int8(kd), weapon)
        return weapon, any_ready

    def _sustained_shots(self, index: SpatialIndex, rows: np.ndarray, foe: np.ndarray,
                         end_ms: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Of sustained shooters ``rows``: those whose primary weapon (the sword for who fights
        close, else the gun) is ready before ``end_ms`` with their foe in its reach; returns
        (rows, weapon kind (int8), when it fires (ms))."""
        r = self.defn.rules
        melee = self.engage_m[rows] < r.melee_reach_m
        fi = index.index_of(np.maximum(foe[rows], 0))
        dist = np.hypot(index.x[fi] - self.x[rows], index.y[fi] - self.y[rows])
        ok = (fi >= 0) & (dist <= 0.75 * np.where(melee, r.melee_reach_m, r.ranged_range_m))
        last = np.where(melee, self.last_fired[ActionKind.MELEE][rows], self.last_fired[ActionKind.RANGED][rows])
        wait = np.where(melee, r.melee_interval_ms, r.ranged_interval_ms) / self.fire_factor[rows] * 1.02
        ready_ms = last + wait + self.honest.shot_delay_ms[rows]
        if self.honest.any_framed:  # the shot goes out on a frame: wait for the tick that has it
            ready_ms = np.where(self.honest.framed[rows], self.honest.frame_at_or_after(ready_ms, rows), ready_ms)
        ok &= ready_ms < end_ms
        kd = np.where(melee, np.int8(ActionKind.MELEE), np.int8(ActionKind.RANGED))
        return rows[ok], kd[ok], ready_ms[ok]

    def _aim(self, index, who, kind, target, value, ex, ey, event_ms, tick) -> None:
        """Weapons wait for their interval (an honest clock); shots and sight lines are judged.

        A ranged shot's hit claim: a human lands what its hit curve gives (``worlds.honest``),
        an aimbot its accuracy, falling with difficulty by its ``difficulty_falloff`` only. A
        shot or cast through an occluder is not taken.
        """
        rules = self.defn.rules
        for kd, interval in self.interval_ms.items():
            k = np.flatnonzero((kind == kd) & (target != 0))
            if not k.size:
                continue
            wait = interval / self.fire_factor[who[k]] * 1.02
            ready = event_ms[k] - self.last_fired[kd][who[k]] >= wait
            tx, _ = gather(self.world, target[k], Position, "x")
            ty, _ = gather(self.world, target[k], Position, "y")
            if kd != ActionKind.MELEE and self.occluders.shape[0]:
                ready &= ~np.array([segment_blocked(self.occluders, a, b, c, d)
                                    for a, b, c, d in zip(ex[who[k]], ey[who[k]], tx, ty)], np.bool_)
            target[k[~ready]] = 0
            k = k[ready]
            self.last_fired[kd][who[k]] = event_ms[k]
            if kd == ActionKind.RANGED and k.size:
                vx, _ = gather(self.world, target[k], Velocity, "vx")
                vy, _ = gather(self.world, target[k], Velocity, "vy")
                dist = np.hypot(tx[ready] - ex[who[k]], ty[ready] - ey[who[k]])
                base = shot_difficulty(dist, rules.ranged_range_m, np.hypot(vx, vy), rules.player_speed_mps)
                acc, fall = self.aim_accuracy[who[k]], self.aim_falloff[who[k]]
                human = self.honest.hit_chance(who[k], base, dist, np.hypot(vx, vy) / rules.player_speed_mps)
                p_hit = np.where(acc > 0, acc * ((1.0 - fall) + fall * base), human)
                value[k] = (self.rng.uniform(tick, self.ids[who[k]], S_HIT) < p_hit).astype(np.float64)

    # -- targets ---------------------------------------------------------------------------
    def _nearest(self, index: SpatialIndex, who: np.ndarray, px, py, radius: float, eligible, team_of_point,
                 skip_team: np.ndarray) -> np.ndarray:
        """Id of the nearest eligible entity within ``radius`` of each (px, py), 0 where none.

        ``skip_team``: (len(who),) int64; points of that team are passed over (-1 skips none).
        """
        g = index.grid
        out = np.full(who.size, -1, np.int64)
        self_ix = index.index_of(self.ids[who])
        _nearest_eligible(g.sx, g.sy, g.order, g.cell_start, g.n_cols, g.cell_m, g.origin_x, g.origin_y,
                          np.asarray(px, np.float64), np.asarray(py, np.float64), radius, eligible,
                          team_of_point, skip_team, self_ix, index.ids, out)
        return np.where(out >= 0, index.ids[np.maximum(out, 0)], 0)

    def _team_of_point(self, index: SpatialIndex) -> np.ndarray:
        team, is_player = gather(self.world, index.ids, Player, "team", -1)
        return np.where(is_player, team, -1).astype(np.int64)

    def _nearest_foe(self, index: SpatialIndex, who: np.ndarray, radius: float) -> np.ndarray:
        """Nearest living enemy of each player in ``who``: an NPC, or in PvP another team's player."""
        team = self._team_of_point(index)
        pvp = self.defn.world.mode == "pvp"
        eligible = index.alive & ((team < 0) | pvp)
        out = self._nearest(index, who, self.x[who], self.y[who], radius, eligible, team, self.team[who])
        return np.where(out != 0, out, -1)

    def _pick_targets(self, index, who, kind, target, value, foe, ex, ey, tick, acquiring) -> None:
        """Each action's target. A first attack on a new foe may reach out to 0.95 of the
        weapon's reach (``acquiring``); others keep a margin for lag (0.8)."""
        rules = self.defn.rules
        for kd, reach in ((ActionKind.MELEE, rules.melee_reach_m), (ActionKind.RANGED, rules.ranged_range_m),
                          (ActionKind.CAST, rules.cast_range_m)):
            k = np.flatnonzero(kind == kd)
            f = foe[who[k]]
            ok = f > 0
            fi = index.index_of(np.where(ok, f, 0))
            ok &= fi >= 0
            d = np.hypot(index.x[fi] - ex[who[k]], index.y[fi] - ey[who[k]])
            ok &= d <= np.where(acquiring[k], 0.95, 0.8) * reach
            target[k[ok]] = f[ok]
        k = np.flatnonzero(kind == ActionKind.LOOT)
        if k.size:
            gold, has = gather(self.world, index.ids, Loot, "gold")
            eligible = has & ~index.alive & (gold > 0)
            none = np.full(k.size, -1, np.int64)
            target[k] = self._nearest(index, who[k], ex[who[k]], ey[who[k]], 0.8 * rules.loot_reach_m,
                                      eligible, np.full(index.ids.size, -1, np.int64), none)
        k = np.flatnonzero(kind == ActionKind.TRADE)
        if k.size:
            team = self._team_of_point(index)
            eligible = index.alive & (team >= 0)
            none = np.full(k.size, -1, np.int64)
            target[k] = self._nearest(index, who[k], ex[who[k]], ey[who[k]], 0.8 * rules.trade_reach_m,
                                      eligible, team, none)
            # A client answers an offer made to it (if the offerer is in reach) before making its own.
            # The oldest offer made to it (then the lowest id): not the first row of a table,
            # whose order is the server's business (and differs between one world and shards).
            offers = self.world.query(TradeOffer)
            giver, taker = offers.concat(TradeOffer, "giver"), offers.concat(TradeOffer, "taker")
            if giver.size:
                oldest = np.lexsort((offers.ids(), offers.concat(TradeOffer, "expires_tick")))[::-1]
                first_offer = dict(zip(taker[oldest].tolist(), giver[oldest].tolist()))
                for j, i in zip(k.tolist(), who[k].tolist()):
                    g = first_offer.get(int(self.ids[i]))
                    gi = index.index_of(np.array([g]))[0] if g is not None else -1
                    if gi >= 0 and np.hypot(index.x[gi] - ex[i], index.y[gi] - ey[i]) <= 0.8 * rules.trade_reach_m:
                        target[j] = g
            gold, _ = gather(self.world, self.ids[who[k]], Inventory, "gold")
            want = 1 + np.floor(self.rng.uniform(tick, self.ids[who[k]], S_GOLD) * 5)
            value[k] = np.minimum(want, gold)  # an honest client offers only what it holds


@njit(**JIT)
def _scan_cells(sx, sy, order, lo, hi, qx, qy, r2, eligible, team, skip_team, self_ix, best, best_d2, ids):
    """Best eligible point among sorted positions [lo, hi): returns (best, best_d2). Ties go to
    the lower id (``ids``: (n,) int64 per original point), whatever order the points are in."""
    for b in range(lo, hi):
        o = order[b]
        if not eligible[o] or o == self_ix or (skip_team >= 0 and team[o] == skip_team):
            continue
        d2 = (sx[b] - qx) ** 2 + (sy[b] - qy) ** 2
        if d2 <= r2 and (d2 < best_d2 or (d2 == best_d2 and ids[o] < ids[best])):
            best = o
            best_d2 = d2
    return best, best_d2


@njit(**JIT)
def _nearest_eligible(sx, sy, order, cell_start, n_cols, cell_m, origin_x, origin_y, qx, qy, radius_m,
                      eligible, team, skip_team, self_ix, ids, out):
    """Nearest eligible point within radius of each query, by distance then id.

    Scans rings of cells outward and stops once no unscanned cell can hold a nearer point,
    so a query in a crowd costs a few cells, not the whole radius.
    sx, sy, order, cell_start: a built ``SpatialGrid``'s arrays, read. qx, qy: (q,) float64,
    read. eligible: (n,) bool and team: (n,) int64 per original point, read. skip_team,
    self_ix: (q,) int64, read. out: (q,) int64, written: original point index or -1.
    """
    n_rows = (cell_start.shape[0] - 1) // n_cols
    rings = int(np.ceil(radius_m / cell_m)) + 1  # +1: the grid's cells are a hair wider than cell_m
    inv = 1.0 / cell_m
    r2 = radius_m * radius_m
    for q in range(qx.shape[0]):
        qc = min(max(int((qx[q] - origin_x) * inv), 0), n_cols - 1)
        qr = min(max(int((qy[q] - origin_y) * inv), 0), n_rows - 1)
        best = -1
        best_d2 = np.inf
        for k in range(rings + 1):
            if best >= 0 and best_d2 <= ((k - 1) * cell_m) ** 2:
                break  # every cell of ring k is farther than (k - 1) cells
            for r in range(max(qr - k, 0), min(qr + k, n_rows - 1) + 1):
                c_lo = max(qc - k, 0)
                c_hi = min(qc + k, n_cols - 1)
                if r == qr - k or r == qr + k:  # a full edge row of the ring
                    best, best_d2 = _scan_cells(sx, sy, order, cell_start[r * n_cols + c_lo],
                                                cell_start[r * n_cols + c_hi + 1], qx[q], qy[q], r2, eligible,
                                                team, skip_team[q], self_ix[q], best, best_d2, ids)
                else:  # only the two side cells
                    for c in (qc - k, qc + k):
                        if 0 <= c < n_cols:
                            best, best_d2 = _scan_cells(sx, sy, order, cell_start[r * n_cols + c],
                                                        cell_start[r * n_cols + c + 1], qx[q], qy[q], r2, eligible,
                                                        team, skip_team[q], self_ix[q], best, best_d2, ids)
                if k == 0:
                    break
        out[q] = best
