"""The simulated clients' links: true round trips and offsets, what the server measured of
them, and when each packet arrives.

Contract: ``client_network`` gives, per player, the link the server has measured (``rtt_ms``,
``clock_offset_ms``, ``jitter_ms``: what goes into the ``Player`` record) and the true link the
client lives on (``true_rtt_ms``, ``true_clock_offset_ms``); without a measurement error
(``Network.rtt_error_ms``, ``offset_error_ms``) the two are the same arrays' values.
``PacketDelays.arrival`` gives each sent packet's arrival time: half the true round trip, plus
bounded normal jitter, plus (when declared) a Pareto tail for a share of packets and a queue
during congestion bursts, and no earlier than a stalled link releases it. Every draw is keyed
(seed, tick, player, stream), on streams of its own, so a default link draws exactly what it
always drew.
"""

from __future__ import annotations

import numpy as np

from ecs import Rng

S_NET = 209  # the generator's stream of link draws (its numbering: worlds.generator)
S_JITTER = 203
S_STALL = 206
S_TAIL, S_TAIL_SIZE, S_BURST, S_LINK_ERROR = range(230, 234)


def _per_player(pops, population: np.ndarray, field: str) -> np.ndarray:
    """(n,) float64: the population's ``network.<field>`` for each player."""
    values = np.array([float(getattr(p.network, field)) for p in pops] or [0.0])
    return values[np.asarray(population, np.int64)] if len(pops) else np.zeros(len(population))


def client_network(defn, player_ids: np.ndarray, population: np.ndarray, rng: Rng) -> dict[str, np.ndarray]:
    """Each player's round trip and clock offset, drawn from its population's network section.

    Part of the world, not of the generator: a replayed stream meets the same measured links.
    Returns (n,) float64 arrays: ``rtt_ms``, ``clock_offset_ms``, ``jitter_ms`` (measured, the
    server's), ``true_rtt_ms``, ``true_clock_offset_ms`` (the client's).
    """
    pops = defn.players()
    ids = np.asarray(player_ids, np.int64)
    net = [pops[p].network for p in np.asarray(population).tolist()]
    lo = np.array([x.rtt_ms[0] for x in net])
    hi = np.array([x.rtt_ms[1] for x in net])
    off = np.array([x.clock_offset_ms for x in net])
    rtt = lo + rng.uniform(0, ids, S_NET) * (hi - lo)
    offset = (2 * rng.uniform(0, ids, S_NET, 1) - 1) * off
    out = {"rtt_ms": rtt, "clock_offset_ms": offset, "jitter_ms": np.array([x.jitter_ms for x in net]),
           "true_rtt_ms": rtt, "true_clock_offset_ms": offset}
    rtt_err = np.array([x.rtt_error_ms for x in net])
    off_err = np.array([x.offset_error_ms for x in net])
    if ids.size and (rtt_err.any() or off_err.any()):
        e_rtt = np.clip(rng.normal(0, ids, S_LINK_ERROR), -3.0, 3.0)
        e_off = np.clip(rng.normal(0, ids, S_LINK_ERROR, 1), -3.0, 3.0)
        out["rtt_ms"] = np.where(rtt_err > 0, np.maximum(rtt + rtt_err * e_rtt, 1.0), rtt)
        out["clock_offset_ms"] = np.where(off_err > 0, offset + off_err * e_off, offset)
    return out


class PacketDelays:
    """When each packet a client sends reaches the server (per-player link state inside).

    ``true_rtt_ms``: (n,) float64, the true round trips; ``pops``/``population`` give each
    player's ``Network`` section.
    """

    def __init__(self, pops, population: np.ndarray, true_rtt_ms: np.ndarray, rng: Rng) -> None:
        self.rng = rng
        self.rtt_ms = true_rtt_ms
        n = true_rtt_ms.shape[0]
        field = lambda name: _per_player(pops, population, name)  # noqa: E731
        self.jitter_ms = field("jitter_ms")
        self.stall_rate = field("stall_rate_per_s")
        self.stall_ms = field("stall_ms")
        self.stall_until_ms = np.full(n, -1.0)
        self.tail_share = field("tail_share")
        self.tail_ms = field("tail_ms")
        self.tail_alpha = field("tail_alpha")
        self.tail_max_ms = field("tail_max_ms")
        self.burst_rate = field("burst_rate_per_s")
        self.burst_ms = field("burst_ms")
        self.burst_delay_ms = field("burst_delay_ms")
        self.burst_until_ms = np.full(n, -1.0)
        self.tails = bool(self.tail_share.any())
        self.bursts = bool(self.burst_rate.any())

    def arrival(self, tick: int, dt_s: float, who: np.ndarray, ids: np.ndarray, sent_ms: np.ndarray) -> np.ndarray:
        """(len(who),) float64: game time each packet sent at ``sent_ms`` by rows ``who``
        (their ids ``ids``) reaches the server. Advances the stall and burst state."""
        rng = self.rng
        noise = self.jitter_ms[who] * np.clip(rng.normal(tick, ids, S_JITTER), -3.0, 3.0)
        one_way = 0.5 * self.rtt_ms[who]
        recv = sent_ms + np.maximum(one_way + noise, 0.5 * one_way)
        if self.tails:
            hit = rng.uniform(tick, ids, S_TAIL) < self.tail_share[who]
            pareto = self.tail_ms[who] * (1.0 - rng.uniform(tick, ids, S_TAIL_SIZE)) ** (-1.0 / self.tail_alpha[who])
            recv = recv + np.where(hit, np.minimum(pareto, self.tail_max_ms[who]), 0.0)
        if self.bursts:
            start = rng.uniform(tick, ids, S_BURST) < self.burst_rate[who] * dt_s
            until = self.burst_until_ms[who]
            until = np.where(start & (until < sent_ms), sent_ms + self.burst_ms[who], until)
            self.burst_until_ms[who] = until
            recv = recv + np.where(until > sent_ms, self.burst_delay_ms[who], 0.0)
        # Stalls: the link freezes and releases everything at once when it recovers.
        stall_start = rng.uniform(tick, ids, S_STALL) < self.stall_rate[who] * dt_s
        until = self.stall_until_ms[who]
        until = np.where(stall_start & (until < sent_ms), sent_ms + self.stall_ms[who], until)
        self.stall_until_ms[who] = until
        return np.where(until > sent_ms, np.maximum(recv, until + one_way), recv)
