"""Tick step 6: carry out the accepted actions, in the computed order, by explicit merge rules.

The entities touched by this tick's actions are gathered into batch-local arrays, one kernel
walks the actions in the order of step 5, and the results are scattered back. Each field is
written under the merge policy its component declares (``systems.conflict_merge``):

- health is additive: every hit and heal counts, none is lost; an entity at 0 is dead and acts
  no more in this tick. Hits that take effect at exactly the same time are simultaneous: all
  of them land before anyone dies of them, so an exact tie in a duel is a trade of blows;
- loot is a first claim: the first claimant in order takes the whole purse, every later one is
  refused ``claim_lost``; a corpse (or a chest) is only lootable once it is one;
- gold and potions are additive and conserved: a trade is an offer (a ``TradeOffer`` entity,
  until accepted or expired) and an acceptance, the other side's trade toward the offerer,
  which swaps both purses at once if both still hold them, and nothing otherwise (the
  acceptor is refused ``offer_lapsed`` when the offerer spent its side meanwhile: a race
  between honest players, no claim the acceptor could not back).
"""

from __future__ import annotations

import numpy as np
from numba import njit

from ecs import Component, Phase, Rng, System
from ecs.config import JIT
from systems.action_order import ActionOrderIndex
from systems.actions import SPELL_HEAL, ActionBatch, ActionKind, Refusal
from systems.columns import Distinct, SlotMarks, gather_fields, has_component, scatter, scatter_fields
from systems.components import Health, Inventory, Loot, Player
from systems.conflict_merge import ADDITIVE, FIRST_CLAIM, merge_value, policy_of
from systems.lifecycle import Deaths

# A pending trade offer is an entity of its own: logical state, hashed, replicated like any other.
TradeOffer = Component("TradeOffer", [("giver", "i8"), ("taker", "i8"), ("gold", "i8"), ("expires_tick", "i8")])

_ENTITY_FIELDS = ((Health, "hp"), (Health, "max_hp"), (Health, "dead"), (Inventory, "gold"),
                  (Inventory, "potions"), (Loot, "gold"), (Inventory, "rares"), (Loot, "container"), (Player, "team"))
_HP, _MAX_HP, _DEAD, _GOLD, _POTIONS, _LOOT, _RARES, _CONTAINER, _TEAM = range(9)
_WRITTEN = 7  # the fields above this index are only read
STREAM_RARE = 31
assert policy_of(Health, "hp") == ADDITIVE and policy_of(Loot, "gold") == FIRST_CLAIM
assert policy_of(Inventory, "gold") == ADDITIVE and policy_of(Inventory, "potions") == ADDITIVE


@njit(**JIT)
def _commit_deaths(pending, n_pending, ent):
    for j in range(n_pending):
        ent[pending[j], _DEAD] = 1.0
    return 0


@njit(**JIT)
def _find_offer(giver, taker, off_giver, off_taker, off_alive, n_off):
    for j in range(n_off):
        if off_alive[j] and off_giver[j] == giver and off_taker[j] == taker:
            return j
    return -1


@njit(**JIT)
def _apply(perm, effect_ms, kind, actor_ix, target_ix, value, is_player, rules, ent, offers, status, effect, rare):
    """Apply actions in ``perm`` order to the touched entities.

    perm: (n,) int64 order, read. effect_ms: (n,) float64, read: equal times are simultaneous.
    kind: (n,) int8; actor_ix, target_ix: (n,) int64 rows of ``ent`` (-1 none); value: (n,)
    float64 (trade gold, spell); is_player: (m,) bool per touched entity; all read.
    rules: (8,) float64: [0] pvp flag, [1] heal per potion, [2], [3], [4] damage of melee, ranged
    and cast (their kind codes), [5] heal per heal spell, [6] offer lifetime in ticks, [7] the
    current tick; read.
    ent: (m, 9) float64 touched entities' fields (see ``_ENTITY_FIELDS``), read and written.
    rare: (m,) bool per touched entity, read: whether its corpse holds a rare item.
    offers: (k, 5) int64 giver row, taker row, gold, expires_tick, alive; rows past the live
    ones are free space for new offers; read and written. Returns the number of offer rows used.
    status: (n,) int16, read and written. effect: (n,) float64, written: hp removed or healed,
    gold looted or swapped by each action (0 when refused or when only an offer was made); a
    ranged shot the client reports as a miss (value 0) is accepted and does nothing.
    """
    n_off = 0
    while n_off < offers.shape[0] and offers[n_off, 4] >= 0:
        n_off += 1
    pending = np.empty(perm.shape[0], np.int64)
    n_pending = 0
    now = -np.inf
    claimed = np.zeros(ent.shape[0], np.bool_)
    pvp = rules[0] != 0.0
    for k in range(perm.shape[0]):
        i = perm[k]
        effect[i] = 0.0
        if status[i] != 0 or kind[i] == 1:
            continue
        if effect_ms[i] != now:  # a new instant: the deaths of the last one take hold
            n_pending = _commit_deaths(pending, n_pending, ent)
            now = effect_ms[i]
        a = actor_ix[i]
        t = target_ix[i]
        if ent[a, _DEAD] != 0.0:
            status[i] = 3  # ACTOR_DEAD: killed earlier this tick
            continue
        kd = kind[i]
        if kd == 4 and value[i] == SPELL_HEAL:
            if ent[t, _DEAD] != 0.0:
                status[i] = 10  # TARGET_DEAD
            elif not is_player[t] or (pvp and ent[t, _TEAM] != ent[a, _TEAM]):
                status[i] = 13  # BAD_TARGET: heals are for allies
            else:
                gain = min(rules[5], ent[t, _MAX_HP] - ent[t, _HP])
                ent[t, _HP], _ = merge_value(ADDITIVE, ent[t, _HP], gain, False)
                effect[i] = gain
        elif kd == 3 and value[i] < 0.5:
            pass  # a missed shot: accepted, harmless
        elif kd == 2 or kd == 3 or kd == 4:
            if ent[t, _DEAD] != 0.0:
                status[i] = 10  # TARGET_DEAD
            elif ent[t, _CONTAINER] != 0.0 or (not pvp and is_player[t]):
                status[i] = 13  # BAD_TARGET: a chest, or a player in a PvE world
            else:
                dmg = min(rules[kd], ent[t, _HP])
                ent[t, _HP], _ = merge_value(ADDITIVE, ent[t, _HP], -dmg, False)
                effect[i] = dmg
                if ent[t, _HP] <= 0.0:
                    pending[n_pending] = t
                    n_pending += 1
        elif kd == 7:  # USE a potion
            if ent[a, _POTIONS] < 1.0:
                status[i] = 12  # NOT_HELD
            else:
                ent[a, _POTIONS] -= 1.0
                gain = min(rules[1], ent[a, _MAX_HP] - ent[a, _HP])
                ent[a, _HP], _ = merge_value(ADDITIVE, ent[a, _HP], gain, False)
                effect[i] = gain
        elif kd == 5:  # LOOT: the first claim in order takes the purse
            if ent[t, _DEAD] == 0.0 and ent[t, _CONTAINER] == 0.0:
                status[i] = 15  # TARGET_NOT_DEAD (the hits expected this tick did not kill it)
            elif ent[t, _LOOT] <= 0.0 or claimed[t]:
                status[i] = 14  # CLAIM_LOST
            else:
                purse, _ = merge_value(FIRST_CLAIM, 0.0, ent[t, _LOOT], claimed[t])
                claimed[t] = True
                ent[a, _GOLD] += purse
                ent[t, _LOOT] = 0.0
                effect[i] = purse
                if rare[t] and ent[t, _CONTAINER] == 0.0:
                    ent[a, _RARES] += 1.0  # the corpse's rare item goes with the purse
        elif kd == 6:  # TRADE: accept the other side's offer, or make one
            gold = np.floor(value[i])
            j = _find_offer(t, a, offers[:, 0], offers[:, 1], offers[:, 4], n_off)
            if ent[t, _DEAD] != 0.0:
                status[i] = 10
            elif gold < 0.0 or ent[a, _GOLD] < gold:
                status[i] = 12  # NOT_HELD
            elif j >= 0:
                theirs = float(offers[j, 2])
                offers[j, 4] = 0  # consumed, whatever happens
                if ent[t, _GOLD] < theirs:
                    status[i] = 23  # OFFER_LAPSED: the offerer spent it meanwhile; nothing moves
                else:
                    ent[a, _GOLD] += theirs - gold
                    ent[t, _GOLD] += gold - theirs
                    effect[i] = gold + theirs
            else:
                mine = _find_offer(a, t, offers[:, 0], offers[:, 1], offers[:, 4], n_off)
                if mine >= 0:
                    offers[mine, 4] = 0  # a new offer replaces the old one
                if n_off < offers.shape[0]:
                    offers[n_off, 0] = a
                    offers[n_off, 1] = t
                    offers[n_off, 2] = np.int64(gold)
                    offers[n_off, 3] = np.int64(rules[7] + rules[6])
                    offers[n_off, 4] = 1
                    n_off += 1
    _commit_deaths(pending, n_pending, ent)
    return n_off


def rare_drops(seed: int, corpses: np.ndarray, p: float) -> np.ndarray:
    """Whether each corpse holds a rare item: a draw keyed by the corpse alone, fixed at birth.

    Keyed so that anyone who knows the seed could know it in advance: that is the leak a
    loot-luck cheat exploits, and what the anomaly score's luck test catches.
    """
    return Rng(seed).uniform(0, corpses, STREAM_RARE) < p


class ActionEffects:
    """What the apply step did: ``effect`` (n,) float64 per action, ``killed`` entity ids, and
    the claims won and lost this tick."""

    def __init__(self, effect: np.ndarray, killed: np.ndarray, claims_won: int = 0, claims_lost: int = 0,
                 trades_done: int = 0, offers_made: int = 0, looted_rare: np.ndarray | None = None) -> None:
        self.effect = effect
        self.looted_rare = np.zeros(effect.shape[0], np.bool_) if looted_rare is None else looted_rare
        self.killed = killed
        self.claims_won = claims_won
        self.claims_lost = claims_lost
        self.trades_done = trades_done
        self.offers_made = offers_made


class ApplyActions(System):
    phase = Phase.APPLY
    reads = (ActionBatch, ActionOrderIndex, Player)
    writes = (ActionBatch, Health, Inventory, Loot, TradeOffer, ActionEffects, Deaths)
    reads_others = (Health, Inventory, Loot, Player, TradeOffer)  # everyone a group touches

    def __init__(self, world, defn) -> None:
        self.defn = defn
        self._offers = world.query(TradeOffer)
        self._marks = SlotMarks()

    def _pending_offers(self, world, tick: int) -> tuple[np.ndarray, np.ndarray]:
        """(ids, (k, 4) giver, taker, gold, expires_tick) of live offers; expired ones despawn."""
        ids = self._offers.ids()
        cols = np.stack([self._offers.concat(TradeOffer, f) for f in ("giver", "taker", "gold", "expires_tick")],
                        axis=1).reshape(-1, 4)
        expired = cols[:, 3] < tick
        for e in ids[expired].tolist():
            world.commands.despawn(e)
        return ids[~expired], cols[~expired]

    def run(self, world, ctx) -> None:
        batch: ActionBatch = world.resources[ActionBatch]
        order: ActionOrderIndex = world.resources[ActionOrderIndex]
        offer_ids, offers = self._pending_offers(world, ctx.tick)
        live = (batch.status == 0) & (batch.kind != ActionKind.MOVE)
        if not live.any():
            world.resources[ActionEffects] = ActionEffects(np.zeros(batch.n), np.empty(0, np.int64))
            return
        has_target = live & (batch.kind != ActionKind.USE)
        # Every entity this tick's actions and pending offers touch, each read once.
        ids = np.concatenate([np.where(live, batch.actor, 0), np.where(has_target, batch.target, 0),
                              offers[:, 0], offers[:, 1]])
        touched = Distinct(world, ids, self._marks)
        at, m = touched.at, touched.n
        # Row m is nobody: an entity that left the world since validation (its actions are refused).
        ent = np.zeros((m + 1, len(_ENTITY_FIELDS)), np.float64)
        ent[:m] = gather_fields(world, at, _ENTITY_FIELDS)
        is_player = np.zeros(m + 1, np.bool_)
        is_player[:m] = has_component(world, at, Player)
        was_dead = ent[:m, _DEAD].copy()
        n = batch.n
        rows = np.where(touched.inverse >= 0, touched.inverse, m)
        actor_ix, target_ix, offer_rows = rows[:n], rows[n : 2 * n], rows[2 * n :].reshape(2, -1)
        batch.refuse(live & (actor_ix == m), Refusal.UNKNOWN_ACTOR)
        batch.refuse(has_target & (target_ix == m), Refusal.UNKNOWN_TARGET)
        rules = self.defn.rules
        params = np.zeros(8, np.float64)
        params[0] = 1.0 if self.defn.world.mode == "pvp" else 0.0
        params[1] = rules.potion_heal
        params[ActionKind.MELEE] = rules.melee_damage
        params[ActionKind.RANGED] = rules.ranged_damage
        params[ActionKind.CAST] = rules.cast_damage
        params[5] = rules.cast_heal
        params[6] = round(rules.trade_offer_s / ctx.dt_s)
        params[7] = ctx.tick
        n_trades = int((live & (batch.kind == ActionKind.TRADE)).sum())
        table = np.full((offers.shape[0] + n_trades, 5), -1, np.int64)
        table[: offers.shape[0], 0] = offer_rows[0]
        table[: offers.shape[0], 1] = offer_rows[1]
        table[: offers.shape[0], 2:4] = offers[:, 2:4]
        table[: offers.shape[0], 4] = 1
        effect = np.zeros(batch.n, np.float64)
        rare = np.append(rare_drops(ctx.rng.seed, touched.ids, self.defn.cheat.rare_drop_p), False)
        used = _apply(order.perm, order.effect_ms, batch.kind, actor_ix, target_ix, batch.value, is_player, params,
                      ent, table, batch.status, effect, rare)
        scatter_fields(world, at, _ENTITY_FIELDS[:_WRITTEN], ent[:m, :_WRITTEN])
        killed = np.sort(touched.ids[(ent[:m, _DEAD] != 0) & (was_dead == 0)])
        scatter(world, killed, Health, "died_tick", np.full(killed.shape[0], ctx.tick))
        deaths = world.resources.get(Deaths)
        if deaths is not None:
            deaths.record(killed, ctx.tick)
        self._settle_offers(world, offer_ids, table, used, touched.ids)
        loots = batch.kind == ActionKind.LOOT
        trades = batch.kind == ActionKind.TRADE
        world.resources[ActionEffects] = ActionEffects(
            effect, killed,
            claims_won=int((loots & live & (batch.status == 0)).sum()),
            claims_lost=int((loots & (batch.status == 14)).sum()),
            trades_done=int((trades & (effect > 0)).sum()),
            offers_made=int(used - offer_ids.shape[0]),
            looted_rare=loots & (batch.status == 0) & rare[np.maximum(target_ix, 0)] & (ent[np.maximum(target_ix, 0), _CONTAINER] == 0),
        )

    def _settle_offers(self, world, offer_ids: np.ndarray, table: np.ndarray, used: int, touched: np.ndarray) -> None:
        k = offer_ids.shape[0]
        for e in offer_ids[table[:k, 4] == 0].tolist():
            world.commands.despawn(e)
        new = table[k:used]
        new = new[new[:, 4] == 1]
        if new.shape[0]:  # keyed by who offers to whom: ids independent of where they were decided
            giver, taker = touched[new[:, 0]], touched[new[:, 1]]
            world.commands.spawn_keyed((TradeOffer,), np.stack([giver, taker], axis=1), {TradeOffer: {
                "giver": giver, "taker": taker, "gold": new[:, 2], "expires_tick": new[:, 3]}})
