"""The human behind an honest simulated client, and its client program, as a population's
``[client]`` table declares them (``worlds.schema.Client``).

Contract: ``HonestClients`` holds per-player (n,) arrays drawn once from the world file and the
seed: skill (the project's normal, or a mixture), the hit-chance curve's parameters, the fire
mode (picked or sustained) with its per-shot delay, the client's frame clock and its
perception delay. Its methods are vectorised over players (no per-player Python loop) and,
for a population that declares nothing, give bit for bit what the project's client model
always gave: the new draws are on streams of their own (220-229), and the old ones are made
exactly as before.
"""

from __future__ import annotations

import numpy as np

from ecs import Rng

S_SKILL = 210  # the generator's stream of a human's traits (its numbering: worlds.generator)
S_MODE, S_FIRE_MODE, S_FIRE_DELAY, S_FRAME = range(220, 224)


def _field(pops, population: np.ndarray, name: str) -> np.ndarray:
    """(n,) float64: the population's ``client.<name>`` for each player (None as NaN)."""
    values = np.array([np.nan if getattr(p.client, name) is None else float(getattr(p.client, name)) for p in pops]
                      or [0.0])
    return values[np.asarray(population, np.int64)]


def draw_skill(pops, population: np.ndarray, ids: np.ndarray, rng: Rng) -> np.ndarray:
    """(n,) float64 skill per player: N(0.55, 0.12) in [0.15, 0.95] for a population without a
    ``skill`` mixture; else a mode picked by weight, N(mean, sd) within it, in [0.01, 0.99]."""
    z = rng.normal(0, ids, S_SKILL)
    skill = np.clip(0.55 + 0.12 * z, 0.15, 0.95)
    pick = None
    for k, p in enumerate(pops):
        if not p.client.skill:
            continue
        mine = np.flatnonzero(population == k)
        if not mine.size:
            continue
        if pick is None:
            pick = rng.uniform(0, ids, S_MODE)
        w = np.array([m.weight for m in p.client.skill])
        cdf = np.cumsum(w) / w.sum()
        mode = np.minimum(np.searchsorted(cdf, pick[mine], side="right"), len(w) - 1)
        mean = np.array([m.mean for m in p.client.skill])[mode]
        sd = np.array([m.sd for m in p.client.skill])[mode]
        skill[mine] = np.clip(mean + sd * z[mine], 0.01, 0.99)
    return skill


class HonestClients:
    """Per player: how its human aims and fires, its client's frame clock and perception delay.

    ``pops``: the world's player populations; ``population``: (n,) int64 index into them.
    """

    def __init__(self, pops, population: np.ndarray, ids: np.ndarray, rng: Rng) -> None:
        self.rng = rng
        self.ids = ids
        n = ids.shape[0]
        population = np.asarray(population, np.int64)
        self.skill = draw_skill(pops, population, ids, rng)
        logistic = np.array([p.client.hit_curve == "logistic" for p in pops] or [False])
        self.logistic = logistic[population] if n else np.zeros(0, np.bool_)
        self.hit_mid_m = _field(pops, population, "hit_mid_m")
        self.hit_width_m = _field(pops, population, "hit_width_m")
        self.hit_skill_logit = _field(pops, population, "hit_skill_logit")
        self.hit_move_logit = _field(pops, population, "hit_move_logit")
        self.hit_max = _field(pops, population, "hit_max")
        share = np.array([(1.0 if p.client.fire == "sustained" else 0.0) if p.client.sustained_share is None
                          else p.client.sustained_share for p in pops] or [0.0])[population]
        self.sustained = (rng.uniform(0, ids, S_FIRE_MODE) < share) if share.any() else np.zeros(n, np.bool_)
        self.fire_delay_ms = _field(pops, population, "fire_delay_ms")
        self.shot_delay_ms = self.next_delay(0, np.arange(n))
        hz = _field(pops, population, "client_hz")
        self.framed = ~np.isnan(hz)
        self.frame_ms = np.where(self.framed, 1000.0 / np.where(self.framed, hz, 1.0), 0.0)
        self.frame_phase_ms = self.frame_ms * rng.uniform(0, ids, S_FRAME) if self.framed.any() else np.zeros(n)
        self.next_update_ms = np.full(n, -1e18)
        self.window_ms = np.zeros(n)  # events from here on are still to be sent (the last framed tick's end)
        self.interp_ms = _field(pops, population, "interp_ms")
        self.any_sustained = bool(self.sustained.any())
        self.any_framed = bool(self.framed.any())

    # -- aim ---------------------------------------------------------------------------------
    def hit_chance(self, rows: np.ndarray, project_base: np.ndarray, dist_m: np.ndarray,
                   target_speed_ratio: np.ndarray) -> np.ndarray:
        """(k,) float64: an honest shooter's chance to hit, for shots by rows ``rows``:
        skill x ``project_base`` (the detector's shot difficulty) on the project curve, else
        the population's logistic curve of distance, skill and target speed."""
        project = self.skill[rows] * project_base
        lg = self.logistic[rows]
        if not lg.any():
            return project
        z = (self.hit_skill_logit[rows] * (self.skill[rows] - 0.5)
             + (self.hit_mid_m[rows] - dist_m) / self.hit_width_m[rows]
             - self.hit_move_logit[rows] * np.clip(target_speed_ratio, 0.0, 1.0))
        return np.where(lg, self.hit_max[rows] / (1.0 + np.exp(-z)), project)

    # -- sustained fire ------------------------------------------------------------------------
    def next_delay(self, tick: int, rows: np.ndarray) -> np.ndarray:
        """(k,) float64: the human/client delay of the next sustained shot of rows ``rows``."""
        u = self.rng.uniform(tick, self.ids[rows], S_FIRE_DELAY)
        return -self.fire_delay_ms[rows] * np.log1p(-u)

    # -- frames --------------------------------------------------------------------------------
    def frame_at_or_after(self, t_ms: np.ndarray, rows: np.ndarray | None = None) -> np.ndarray:
        """Each framed client's first frame boundary at or after ``t_ms`` (for all players, or
        for rows ``rows``: then ``t_ms`` is (len(rows),))."""
        rows = slice(None) if rows is None else rows
        f = np.where(self.framed[rows], self.frame_ms[rows], 1.0)
        return self.frame_phase_ms[rows] + np.ceil((t_ms - self.frame_phase_ms[rows]) / f - 1e-9) * f

    def frame_at_or_before(self, t_ms: np.ndarray) -> np.ndarray:
        """(n,) float64: each framed client's last frame boundary at or before ``t_ms``."""
        f = np.where(self.framed, self.frame_ms, 1.0)
        return self.frame_phase_ms + np.floor((t_ms - self.frame_phase_ms) / f + 1e-9) * f

    def has_frame(self, start_ms: float, end_ms: float) -> np.ndarray:
        """(n,) bool: framed clients with a frame boundary in [start_ms, end_ms); True for the
        others (their sends are not on a clock)."""
        return ~self.framed | (self.frame_at_or_after(np.full(self.framed.shape[0], start_ms)) < end_ms)

    def on_frames(self, start_ms: float, end_ms: float, event_ms: np.ndarray) -> np.ndarray:
        """(n,) float64: event times moved onto the client's frame clock within the tick
        [start_ms, end_ms) (the next frame, or the last one when the next is past the tick);
        unchanged for unframed clients. Only meaningful where ``has_frame``."""
        t = np.maximum(event_ms, start_ms)
        up = self.frame_at_or_after(t)
        q = np.where(up < end_ms, up, self.frame_at_or_before(np.minimum(t, end_ms - 1e-6)))
        q = np.clip(q, start_ms, np.nextafter(end_ms, -np.inf))
        return np.where(self.framed, q, event_ms)

    def updates_due(self, start_ms: float, end_ms: float, period_ms: np.ndarray,
                    alive: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Fixed-rate position updates of framed clients: (due, when) per player, (n,) bool and
        (n,) float64; the update clock advances past the tick for those due. A client back
        from death or a silence starts its clock again at the tick."""
        self.next_update_ms = np.where(alive & (self.next_update_ms < start_ms - period_ms), start_ms,
                                       self.next_update_ms)
        due = self.framed & alive & (self.next_update_ms < end_ms)
        when = self.next_update_ms.copy()
        steps = np.ceil((end_ms - self.next_update_ms) / period_ms)
        self.next_update_ms = np.where(due, self.next_update_ms + np.maximum(steps, 1.0) * period_ms,
                                       self.next_update_ms)
        return due, when
