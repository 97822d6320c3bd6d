"""The schema of world definition files (TOML), and the checks that tie their parts together.

pydantic validates the shape and reports every problem at once with its field path (msgspec,
lighter, stops at the first); unknown fields are errors everywhere (``extra="forbid"``).
Cross-field rules (a spawn disc inside the bounds, a hotspot name that exists) are checked
after the shape, in ``semantic_problems``, and reported the same way.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from worlds.schema_base import Count, Name, NonNegFloat, PositiveFloat, Strict
from worlds.schema_events import EventsSection, event_problems  # the [events] section (tick step 8)


class WorldSection(Strict):
    name: Name
    bounds: Annotated[list[float], Field(min_length=4, max_length=4)]  # [min_x, min_y, max_x, max_y] metres
    cell_m: PositiveFloat = 10.0  # spatial hash cell size
    tick_rate_hz: Annotated[float, Field(gt=0, le=1000)] = 20.0
    seed: Annotated[int, Field(ge=0, lt=2**63)] = 0
    interaction_radius_m: PositiveFloat = 5.0
    rewind_window_ms: Annotated[float, Field(ge=0, le=5000)] = 200.0
    mode: Literal["pvp", "pve"] = "pvp"


class Rules(Strict):
    """Game rules the validation and apply steps enforce."""

    player_speed_mps: PositiveFloat = 6.0
    speed_tolerance: Annotated[float, Field(ge=0, le=1)] = 0.1  # fraction over top speed still accepted
    melee_reach_m: PositiveFloat = 3.0
    ranged_range_m: PositiveFloat = 40.0
    cast_range_m: PositiveFloat = 25.0
    loot_reach_m: PositiveFloat = 3.0
    trade_reach_m: PositiveFloat = 6.0
    melee_damage: NonNegFloat = 12.0
    ranged_damage: NonNegFloat = 7.0
    cast_damage: NonNegFloat = 15.0
    potion_heal: NonNegFloat = 30.0
    cast_heal: NonNegFloat = 25.0  # a heal spell (CAST with value 1) on an ally
    melee_windup_ms: NonNegFloat = 0.0  # physics of the hit: when it lands after the act
    projectile_speed_mps: PositiveFloat = 80.0  # ranged: lands after distance / speed
    cast_time_ms: NonNegFloat = 0.0
    trade_offer_s: PositiveFloat = 10.0  # an unanswered trade offer lapses after this
    player_hp: PositiveFloat = 100.0
    respawn_s: NonNegFloat = 5.0
    corpse_s: NonNegFloat = 10.0
    future_tolerance_ms: NonNegFloat = 50.0  # client clocks may run this far ahead of ours
    stale_limit_ms: PositiveFloat = 2000.0  # later than this past its round trip: refused, not clamped
    stall_gap_ms: PositiveFloat = 250.0  # a silence this long on a link makes the next burst a stall
    timing_slack_ms: NonNegFloat = 40.0  # a claim later than rtt/2 + 4 x jitter + this is clamped there
    teleport_m: PositiveFloat = 15.0  # a jump this far beyond what speed allows is a teleport
    melee_interval_ms: NonNegFloat = 400.0  # weapon rates: the least time between two swings,
    ranged_interval_ms: NonNegFloat = 500.0  # two shots,
    cast_cooldown_ms: NonNegFloat = 1500.0  # two casts
    max_actions_per_s: PositiveFloat = 12.0  # sustained cap of one client (token bucket)
    action_burst: PositiveFloat = 12.0  # how many actions the bucket holds


class RegionsSection(Strict):
    """How the world is cut into regions (future shards) and when the cut is redrawn."""

    count: Annotated[int, Field(ge=1, le=64)] = 1
    interest_radius_m: PositiveFloat = 30.0  # border zone: neighbours see entities this close
    action_weight: NonNegFloat = 1.0  # load of one action per tick, relative to one entity
    action_window_ticks: Annotated[int, Field(ge=1, le=10_000)] = 20
    rebalance: bool = True
    rebalance_every_ticks: Annotated[int, Field(ge=1)] = 5
    rebalance_trigger: Annotated[float, Field(ge=1.0)] = 1.15  # load ratio (max / mean) that starts a rebalance
    rebalance_sustain_ticks: Annotated[int, Field(ge=1)] = 3  # evaluations in a row above the trigger
    rebalance_min_interval_ticks: Annotated[int, Field(ge=0)] = 40
    rebalance_min_gain: NonNegFloat = 0.05  # a new layout must lower the ratio at least this much
    max_migrations: Annotated[int, Field(ge=1)] = 20_000  # entities moved to another region per rebalance


class ShardsSection(Strict):
    """How many shards the world runs on (``worlds run --shards`` overrides it); each owns a
    contiguous part of the region tree, and the world evolves exactly as on one shard."""

    count: Annotated[int, Field(ge=1, le=64)] = 1
    # Borders follow the load (the [regions] rebalance knobs say when): a new layout is reached
    # over ``rebalance_ticks`` ticks, and no tick hands more than ``max_handoffs_per_tick`` over.
    rebalance: bool = True
    rebalance_ticks: Annotated[int, Field(ge=1, le=10_000)] = 20
    max_handoffs_per_tick: Annotated[int, Field(ge=1)] = 2_000


class Expectations(Strict):
    """Figures a scenario file promises; tests read them and assert them from the summary."""

    balanced_within_ticks: Annotated[int, Field(ge=0)] | None = None
    max_load_ratio: Annotated[float, Field(ge=1.0)] | None = None
    max_rebalances: Annotated[int, Field(ge=0)] | None = None


class Obstacle(Strict):
    """A rectangle of blocked space (walls, water) and/or of what blocks the sight (occluders)."""

    rect: Annotated[list[float], Field(min_length=4, max_length=4)]  # [min_x, min_y, max_x, max_y]
    blocks_movement: bool = True
    blocks_sight: bool = True


CHEAT_KINDS = ("speedhack", "teleport", "aimbot", "rapid_fire", "bot", "timestamp", "dupe", "loot_luck")


class Cheaters(Strict):
    """Players of a population who cheat, and how (the ground truth detection is measured on)."""

    kind: Literal["speedhack", "teleport", "aimbot", "rapid_fire", "bot", "timestamp", "dupe", "loot_luck"]
    population: Name  # which player population they are drawn from
    count: Count
    speed_factor: Annotated[float, Field(gt=1.0, le=20.0)] = 1.3  # speedhack
    teleport_rate_per_s: Annotated[float, Field(gt=0, le=10)] = 0.2  # teleport
    teleport_m: PositiveFloat = 40.0
    accuracy: Annotated[float, Field(gt=0, le=1)] = 0.6  # aimbot: hit rate, nearly blind to difficulty
    reaction_ms: PositiveFloat = 120.0
    reaction_jitter_ms: NonNegFloat = 25.0
    fire_rate_factor: Annotated[float, Field(gt=1.0, le=20.0)] = 2.0  # rapid_fire: times the weapon's rate
    interval_ms: PositiveFloat = 600.0  # bot: its action period
    interval_jitter_ms: NonNegFloat = 15.0
    forge_ms: PositiveFloat = 150.0  # timestamp: claims to have acted this much earlier
    replay_rate: Annotated[float, Field(ge=0, le=1)] = 0.1  # timestamp: share of packets replayed
    dupe_rate: Annotated[float, Field(ge=0, le=1)] = 0.3  # dupe: share of trades tried twice / unheld
    # Humanised variants (the defaults are the blunt cheats above):
    # aimbot: the share of its hit chance that still falls with the shot's difficulty (a
    # smoothed aimbot misses more far away and on fast targets, as humans do).
    difficulty_falloff: Annotated[float, Field(ge=0, le=1)] = 0.15
    forge_share: Annotated[float, Field(gt=0, le=1)] = 1.0  # timestamp: share of its attacks back-dated
    label: Name | None = None  # what reports call this profile (default: its kind)


class CheatSection(Strict):
    """Detection thresholds, each chosen for a target false-positive rate (see the README)."""

    min_shots: Annotated[int, Field(ge=1)] = 25
    # log Bayes factor of difficulty-blind over human aim: ln(1e4), at most 1 in 10,000 honest
    # shooters ever flagged were b measured exactly; the margin to 0.1 % absorbs its errors.
    aim_log_bf: PositiveFloat = 9.2
    # Honest players' skill (share of possible hits they land): normal, clipped at the top.
    skill_mean: Annotated[float, Field(gt=0, lt=1)] = 0.55
    skill_sd: PositiveFloat = 0.12
    skill_max: Annotated[float, Field(gt=0, lt=1)] = 0.95
    min_reactions: Annotated[int, Field(ge=1)] = 8
    reaction_mean_ms: PositiveFloat = 170.0  # mean reaction below this is inhuman...
    reaction_sd_ms: PositiveFloat = 45.0  # ...with a spread below this
    # Target acquisition: the first attack on a new foe, timed from seeing the last one die.
    # Honest players' reaction times: per player a mean drawn from a normal prior, no faster
    # than the floor; per switch that mean +- the spread. A player is flagged when its count
    # of acquisitions faster than ``acquire_fast_ms`` has a binomial tail below
    # ``acquire_tail_p`` for the fastest human (the floor), or when the Bayes factor of its
    # counts under ``acquire_fast_ms`` and ``acquire_quick_ms`` (against the prior), times the
    # aim test's, reaches e^aim_log_bf.
    acquire_fast_ms: PositiveFloat = 150.0
    acquire_quick_ms: PositiveFloat = 190.0
    reaction_prior_ms: PositiveFloat = 260.0
    reaction_prior_sd_ms: PositiveFloat = 35.0
    reaction_floor_ms: PositiveFloat = 180.0
    reaction_spread_ms: PositiveFloat = 60.0
    acquire_tail_p: Annotated[float, Field(gt=0, lt=1)] = 1e-4
    min_intervals: Annotated[int, Field(ge=2)] = 25
    regularity_cv: Annotated[float, Field(gt=0, lt=1)] = 0.25  # coefficient of variation of action intervals
    min_timings: Annotated[int, Field(ge=1)] = 20  # attacks and loots timed before the late share is judged
    excess_delay_ms: PositiveFloat = 70.0  # an attack this much later than its link explains is late
    min_loots: Annotated[int, Field(ge=1)] = 5
    luck_p: Annotated[float, Field(gt=0, lt=1)] = 1e-6  # binomial tail of rare drops
    rare_drop_p: Annotated[float, Field(gt=0, lt=1)] = 0.02
    refusals: Annotated[int, Field(ge=1)] = 3  # impossible actions before a player is flagged
    # An attack within this share of its weapon's interval after it was ready again times the
    # weapon (the player held the trigger; the client's frames and delays add a little), not the
    # player: it is no interval of the player's rhythm.
    gate_share: Annotated[float, Field(ge=0, le=2)] = 0.5
    # The population's baseline: learned this often, from this many players with evidence for a
    # test before that test's threshold comes from their scores, at this false-positive rate
    # (shared among the statistical tests), never below the thresholds above.
    baseline_every_s: PositiveFloat = 1.0
    min_population: Annotated[int, Field(ge=10)] = 100
    false_positive_rate: Annotated[float, Field(gt=0, lt=0.1)] = 0.001


class Hotspot(Strict):
    name: Name
    x: float
    y: float
    radius_m: PositiveFloat = 20.0


class SpawnArea(Strict):
    """Where a population appears: the whole world, a disc, a gaussian around a point or around
    the world's hotspots (``around = "hotspots"``)."""

    shape: Literal["uniform", "disc", "gaussian"] = "uniform"
    x: float | None = None
    y: float | None = None
    radius_m: PositiveFloat | None = None  # disc radius, or gaussian sigma
    around: Literal["point", "hotspots"] = "point"


class Network(Strict):
    """A population's links (``worlds.links``): the true round trip, offset and delays, and
    how well the server has measured them. Every default reproduces the plain link."""

    rtt_ms: Annotated[list[NonNegFloat], Field(min_length=2, max_length=2)] = [20.0, 300.0]  # range, uniform
    jitter_ms: NonNegFloat = 10.0  # standard deviation of one-way delay noise (bounded at 3 sigma)
    clock_offset_ms: NonNegFloat = 500.0  # client clock offsets are drawn from +-this
    stall_rate_per_s: NonNegFloat = 0.0  # chance per second of a stall
    stall_ms: NonNegFloat = 0.0
    update_hz: Annotated[float, Field(gt=0, le=60)] = 10.0  # position updates while not acting
    # Heavy tail: this share of packets is delayed by a Pareto draw (scale ``tail_ms``, shape
    # ``tail_alpha``: tens of ms, now and then hundreds), at most ``tail_max_ms``.
    tail_share: Annotated[float, Field(ge=0, le=1)] = 0.0
    tail_ms: PositiveFloat = 20.0
    tail_alpha: Annotated[float, Field(gt=0.5, le=10)] = 1.5
    tail_max_ms: PositiveFloat = 900.0
    # Congestion bursts: a burst starts with this chance per second, and for ``burst_ms`` every
    # packet waits ``burst_delay_ms`` more in a queue.
    burst_rate_per_s: NonNegFloat = 0.0
    burst_ms: NonNegFloat = 1000.0
    burst_delay_ms: NonNegFloat = 150.0
    # Measured links: the server's round trip and clock offset are the true ones plus a normal
    # error of this standard deviation (bounded at 3 sigma); the client lives on the true link.
    rtt_error_ms: NonNegFloat = 0.0
    offset_error_ms: NonNegFloat = 0.0


class SkillMode(Strict):
    """One mode of a skill mixture: players drawn N(mean, sd), ``weight`` of the population."""

    weight: PositiveFloat
    mean: Annotated[float, Field(gt=0, lt=1)]
    sd: NonNegFloat


class Client(Strict):
    """The human behind an honest client and its program (``worlds.honest``). Every default
    reproduces the project's own client model."""

    # Skill (share of possible hits): the project's N(0.55, 0.12) in [0.15, 0.95] when empty,
    # else a mixture, clipped to [0.01, 0.99].
    skill: list[SkillMode] = []
    # Hit chance of a ranged shot: ``project`` is skill x the detector's own shot difficulty;
    # ``logistic`` is hit_max / (1 + e^-z), z = hit_skill_logit (skill - 0.5)
    # + (hit_mid_m - distance) / hit_width_m - hit_move_logit x (target speed / top speed).
    hit_curve: Literal["project", "logistic"] = "project"
    hit_mid_m: PositiveFloat = 22.0
    hit_width_m: PositiveFloat = 7.0
    hit_skill_logit: NonNegFloat = 4.0
    hit_move_logit: NonNegFloat = 1.2
    hit_max: Annotated[float, Field(gt=0, le=1)] = 0.95
    # ``picked``: attacks are some of the player's actions, with human pauses; ``sustained``:
    # the trigger is held, and the weapon fires as soon as it is ready plus a human/client
    # delay (exponential, mean ``fire_delay_ms``). ``sustained_share`` (when set) makes that
    # share of the population sustained and the rest picked.
    fire: Literal["picked", "sustained"] = "picked"
    sustained_share: Annotated[float, Field(ge=0, le=1)] | None = None
    fire_delay_ms: NonNegFloat = 40.0
    # Fixed-rate client frames: timestamps and sends fall on the client's frame clock, and
    # position updates go out at the network's ``update_hz`` on it, whatever else is sent.
    client_hz: Annotated[float, Field(ge=10, le=60)] | None = None
    # Perception: the client reacts to what it shows, one-way delay plus this interpolation
    # buffer after it happened (reacting to hits, switching to the next foe).
    interp_ms: NonNegFloat = 0.0


class Players(Strict):
    kind: Literal["players"]
    name: Name
    count: Count
    behaviour: Literal["wander", "travel", "fight", "trade", "idle"] = "wander"
    actions_per_s: Annotated[float, Field(ge=0, le=100)] = 2.0
    speed_mps: PositiveFloat | None = None  # defaults to rules.player_speed_mps
    hotspots: list[Name] = []  # for travel: the hotspots visited in turn (all when empty)
    team: Annotated[int, Field(ge=0)] = 0
    gold: Count = 100
    potions: Count = 3
    spawn: SpawnArea = SpawnArea()
    network: Network = Network()
    client: Client = Client()


class Npcs(Strict):
    kind: Literal["npcs"]
    name: Name
    count: Count
    movement: Literal["wander", "static"] = "wander"
    speed_mps: NonNegFloat = 2.0
    leash_m: PositiveFloat = 50.0
    hp: PositiveFloat = 50.0
    gold: Count = 10  # dropped as loot when killed
    respawn: bool = True  # keep the population at count
    container: bool = False  # a chest: its gold can be looted without killing it; it cannot be hurt
    attack_damage: NonNegFloat = 0.0  # hostile NPCs bite players within reach...
    attack_per_s: NonNegFloat = 0.0  # ...this often on average
    attack_reach_m: PositiveFloat = 2.0
    spawn: SpawnArea = SpawnArea()


Population = Annotated[Players | Npcs, Field(discriminator="kind")]


class WorldDef(Strict):
    world: WorldSection
    rules: Rules = Rules()
    regions: RegionsSection = RegionsSection()
    shards: ShardsSection = ShardsSection()
    cheat: CheatSection = CheatSection()
    expect: Expectations = Expectations()
    obstacles: list[Obstacle] = []
    cheaters: list[Cheaters] = []
    hotspots: list[Hotspot] = []
    populations: list[Population] = []
    events: EventsSection | None = None  # world events director; none without the section

    @property
    def bounds(self) -> tuple[float, float, float, float]:
        b = self.world.bounds
        return b[0], b[1], b[2], b[3]

    def players(self) -> list[Players]:
        return [p for p in self.populations if isinstance(p, Players)]

    def npcs(self) -> list[Npcs]:
        return [p for p in self.populations if isinstance(p, Npcs)]


def semantic_problems(d: WorldDef) -> list[tuple[str, str]]:
    """Rules that tie fields together; (field path, reason) for each one broken."""
    out: list[tuple[str, str]] = []
    x0, y0, x1, y1 = d.bounds
    if not (x0 < x1 and y0 < y1):
        out.append(("world.bounds", f"expected [min_x, min_y, max_x, max_y] with min < max, got {d.world.bounds}"))
        return out
    if d.world.cell_m > min(x1 - x0, y1 - y0):
        out.append(("world.cell_m", f"cell of {d.world.cell_m} m is larger than the world ({x1 - x0} x {y1 - y0} m)"))
    cells = ((x1 - x0) / d.world.cell_m) * ((y1 - y0) / d.world.cell_m)
    if cells > 50_000_000:
        out.append(("world.cell_m", f"{d.world.cell_m} m gives {cells:.3g} cells; use a larger cell"))
    names = [h.name for h in d.hotspots]
    for i, h in enumerate(d.hotspots):
        if names.count(h.name) > 1 and names.index(h.name) != i:
            out.append((f"hotspots[{i}].name", f"duplicate hotspot name {h.name!r}"))
        if not (x0 <= h.x <= x1 and y0 <= h.y <= y1):
            out.append((f"hotspots[{i}]", f"({h.x}, {h.y}) lies outside the world bounds"))
    for i, o in enumerate(d.obstacles):
        ox0, oy0, ox1, oy1 = o.rect
        if not (ox0 < ox1 and oy0 < oy1):
            out.append((f"obstacles[{i}].rect", f"expected [min_x, min_y, max_x, max_y] with min < max, got {o.rect}"))
    if d.cheat.acquire_quick_ms <= d.cheat.acquire_fast_ms:
        out.append(("cheat.acquire_quick_ms", f"must exceed acquire_fast_ms ({d.cheat.acquire_fast_ms} ms), "
                                              f"got {d.cheat.acquire_quick_ms}"))
    pop_names = [p.name for p in d.populations]
    players = {p.name: p.count for p in d.populations if isinstance(p, Players)}
    drawn: dict[str, int] = {}
    for i, c in enumerate(d.cheaters):
        if c.population not in players:
            out.append((f"cheaters[{i}].population", f"unknown player population {c.population!r} "
                                                      f"(known: {', '.join(players) or 'none'})"))
            continue
        drawn[c.population] = drawn.get(c.population, 0) + c.count
        if drawn[c.population] > players[c.population]:
            out.append((f"cheaters[{i}].count", f"population {c.population!r} has {players[c.population]} players, "
                                                f"{drawn[c.population]} would cheat"))
    for i, p in enumerate(d.populations):
        path = f"populations[{i}]"
        if pop_names.count(p.name) > 1 and pop_names.index(p.name) != i:
            out.append((f"{path}.name", f"duplicate population name {p.name!r}"))
        s = p.spawn
        if s.shape in ("disc", "gaussian") and s.around == "point":
            if s.x is None or s.y is None or s.radius_m is None:
                out.append((f"{path}.spawn", f"shape {s.shape!r} needs x, y and radius_m"))
            elif not (x0 <= s.x <= x1 and y0 <= s.y <= y1):
                out.append((f"{path}.spawn", f"centre ({s.x}, {s.y}) lies outside the world bounds"))
        if s.around == "hotspots":
            if not d.hotspots:
                out.append((f"{path}.spawn.around", "'hotspots' needs at least one [[hotspots]] entry"))
            if s.shape == "uniform":
                out.append((f"{path}.spawn.shape", "spawning around hotspots needs shape 'disc' or 'gaussian'"))
            if s.radius_m is None:
                out.append((f"{path}.spawn.radius_m", "spawning around hotspots needs radius_m"))
        if isinstance(p, Players):
            lo, hi = p.network.rtt_ms
            if lo > hi:
                out.append((f"{path}.network.rtt_ms", f"expected [low, high] with low <= high, got {p.network.rtt_ms}"))
            for j, h in enumerate(p.hotspots):
                if h not in names:
                    known = ", ".join(names) or "none"
                    out.append((f"{path}.hotspots[{j}]", f"unknown hotspot {h!r} (known: {known})"))
            if p.behaviour == "travel" and not d.hotspots:
                out.append((f"{path}.behaviour", "'travel' needs at least one [[hotspots]] entry"))
            if p.client.fire == "sustained" and p.client.sustained_share is not None:
                out.append((f"{path}.client.sustained_share", "give either fire = 'sustained' or a sustained_share"))
    if d.events is not None:
        out += event_problems(d)
    return out
