"""The richer honest simulation, the humanised cheats and the cheat grid command.

The keys change what they say and nothing else: a world that spells every new key out at its
default generates the same stream as one that leaves them out. No detection bar is asserted
here: the grid measures the detector, it does not judge it (see the README's cheat grid).
"""

import hashlib
import json
import subprocess
import sys

import numpy as np
import pytest

from systems.actions import ActionKind
from systems.columns import gather
from systems.components import Player
from tests.conftest import ROOT
from worlds.cheat_grid import ModelFile, compose, format_table, load_grid, run_grid
from worlds.cheaters import KIND_CODE
from worlds.honest import HonestClients
from worlds.links import PacketDelays
from worlds.loader import WorldFileError, parse_world
from worlds.runtime import Simulation
from worlds.schema import Network, Players

FIELDS = ("actor", "seq", "client_time_ms", "kind", "target", "x", "y", "value", "recv_time_ms")


def grid_world(client=None, network=None, scale=0.1, cheaters=None, spell=None):
    """The grid's base world at ``scale`` with ``client``/``network`` over every player
    population (``cheaters``: keys laid over every ``[[cheaters]]`` entry; ``spell``: keys
    given to the entries that leave them out)."""
    _, base, _ = load_grid()
    for c in base["cheaters"]:
        c.update(cheaters or {})
        for k, v in (spell or {}).items():
            c.setdefault(k, v)
    return compose(base, ModelFile(client=client or {}, network=network or {}), "test", scale, 2)


def played(defn, ticks, seed=1):
    """Run ``ticks`` ticks; returns the sim and every generated batch's columns, concatenated."""
    sim = Simulation(defn, seed=seed, hash_every=0)
    gen, out = sim.generator, []
    generate = gen.generate

    def recording(tick, index):
        batch, due = generate(tick, index)
        out.append({f: getattr(batch, f).copy() for f in FIELDS})
        return batch, due

    gen.generate = recording
    for _ in range(ticks):
        sim.step()
    return sim, {f: np.concatenate([b[f] for b in out]) for f in FIELDS}


def digest(sent: dict) -> str:
    h = hashlib.sha256()
    for f in FIELDS:
        h.update(np.ascontiguousarray(sent[f]).tobytes())
    return h.hexdigest()


def test_every_new_key_at_its_default_generates_the_same_stream():
    spelled = grid_world(
        client={"skill": [], "hit_curve": "project", "fire": "picked", "fire_delay_ms": 40.0, "interp_ms": 0.0},
        network={"tail_share": 0.0, "burst_rate_per_s": 0.0, "rtt_error_ms": 0.0, "offset_error_ms": 0.0},
        spell={"difficulty_falloff": 0.15, "forge_share": 1.0, "interval_jitter_ms": 15.0})
    plain = grid_world()
    a, sent_a = played(plain, 200)
    b, sent_b = played(spelled, 200)
    assert sent_a["actor"].size > 5000
    assert digest(sent_a) == digest(sent_b)
    assert a.state_hash() == b.state_hash()
    # Without a measurement error the server's record holds the true link.
    rtt, _ = gather(a.world, a.player_ids, Player, "rtt_ms")
    assert np.array_equal(rtt, a.generator.rtt_ms)


def test_a_skill_mixture_spreads_as_declared():
    modes = [{"weight": 0.8, "mean": 0.5, "sd": 0.1}, {"weight": 0.2, "mean": 0.8, "sd": 0.03}]
    sim = Simulation(grid_world(client={"skill": modes}, scale=1.0), seed=3, hash_every=0)
    skill = sim.generator.skill
    assert skill.size == 1800 and skill.min() >= 0.01 and skill.max() <= 0.99
    high = skill > 0.7  # the skilled mode, and a few of the common one's tail
    assert 0.19 <= high.mean() <= 0.25
    assert abs(np.mean(skill[skill > 0.72]) - 0.8) < 0.02 and abs(np.std(skill[skill > 0.72]) - 0.03) < 0.01
    assert abs(np.median(skill[~high]) - 0.5) < 0.02
    plain = Simulation(grid_world(scale=1.0), seed=3, hash_every=0).generator.skill
    assert plain.min() >= 0.15 and plain.max() <= 0.95 and abs(plain.mean() - 0.55) < 0.01


def test_the_logistic_hit_curve_is_not_the_projects():
    pops = [Players(kind="players", name="p", count=3, client={"hit_curve": "logistic", "hit_mid_m": 20.0,
                                                                "hit_width_m": 5.0, "hit_max": 0.9})]
    hc = HonestClients(pops, np.zeros(3, np.int64), np.arange(3, dtype=np.int64) + 1, _rng())
    hc.skill[:] = [0.5, 0.5, 0.9]
    rows = np.arange(3)
    p = hc.hit_chance(rows, np.full(3, 0.5), np.array([20.0, 35.0, 20.0]), np.zeros(3))
    assert p[0] == pytest.approx(0.45)  # half of hit_max at the midpoint, whatever the project's base says
    assert p[1] < 0.05 and p[2] > 0.7  # steep with distance, higher with skill
    project = HonestClients([Players(kind="players", name="p", count=3)], np.zeros(3, np.int64),
                            np.arange(3, dtype=np.int64) + 1, _rng())
    assert np.array_equal(project.hit_chance(rows, np.full(3, 0.5), np.full(3, 20.0), np.zeros(3)),
                          project.skill * 0.5)


def _rng():
    from ecs import Rng

    return Rng(5)


def _primary_intervals(sim, sent, mask):
    """Per honest fighter in ``mask`` (generator rows): intervals between its attacks with its
    primary weapon (the sword for who fights close, else the gun), pooled; and that weapon's
    least interval."""
    gen = sim.generator
    rules = sim.defn.rules
    row = np.searchsorted(gen.ids, sent["actor"])
    melee = gen.engage_m < rules.melee_reach_m
    out = []
    for r in np.flatnonzero(mask).tolist():
        k = ActionKind.MELEE if melee[r] else ActionKind.RANGED
        t = np.sort(sent["client_time_ms"][(row == r) & (sent["kind"] == k)])
        out.append(np.diff(t) / (rules.melee_interval_ms if melee[r] else rules.ranged_interval_ms))
    return np.concatenate(out)


def test_sustained_fire_shoots_at_the_weapons_rate_and_picked_fire_does_not():
    sim, sent = played(grid_world(client={"sustained_share": 0.5, "fire_delay_ms": 20.0}, scale=0.2), 600)
    gen = sim.generator
    fighters = (gen.behaviour == 2) & (gen.cheat.kind == 0)
    assert 0.35 < gen.honest.sustained[fighters].mean() < 0.65
    held = _primary_intervals(sim, sent, fighters & gen.honest.sustained)
    picked = _primary_intervals(sim, sent, fighters & ~gen.honest.sustained)
    assert held.size > 500 and picked.size > 200
    at_rate = lambda x: np.mean((x >= 1.0) & (x < 1.25))  # noqa: E731  within a quarter interval of the rate
    assert held.min() >= 1.0 and picked.min() >= 1.0  # never faster than the weapon
    assert at_rate(held) > 0.45 and at_rate(held) > 2 * at_rate(picked)


def test_client_frames_quantise_timestamps_and_send_updates_at_a_fixed_rate():
    sim, sent = played(grid_world(client={"client_hz": 30.0}, scale=0.1), 200)
    gen = sim.generator
    hc = gen.honest
    row = np.searchsorted(gen.ids, sent["actor"])
    honest = gen.cheat.kind[row] == 0
    t = sent["client_time_ms"][honest] - gen.clock_offset_ms[row[honest]]  # the client's own clock, without offset
    frames = (t - hc.frame_phase_ms[row[honest]]) / hc.frame_ms[row[honest]]
    assert hc.framed.all() and np.allclose(frames, np.round(frames), atol=1e-6)
    # Idlers send little but their position: at the network's 10 Hz, on the 30 Hz frame clock.
    idle = np.flatnonzero((gen.behaviour == 4) & (gen.cheat.kind == 0))
    gaps = np.concatenate([np.diff(np.sort(sent["client_time_ms"][row == r])) for r in idle.tolist()])
    assert np.median(gaps) == pytest.approx(100.0, abs=1e-6)
    # 10 Hz frames on 20 Hz ticks: every other tick has no frame, and nothing is lost for it.
    slow, sent_slow = played(grid_world(client={"client_hz": 10.0}, scale=0.1), 200)
    g = slow.generator
    row = np.searchsorted(g.ids, sent_slow["actor"])
    keep = g.cheat.kind[row] != KIND_CODE["timestamp"]  # back-dating is off the clock
    t = sent_slow["client_time_ms"][keep] - g.clock_offset_ms[row[keep]]
    frames = (t - g.honest.frame_phase_ms[row[keep]]) / 100.0
    assert np.allclose(frames, np.round(frames), atol=1e-6)
    assert sent_slow["actor"].size > 0.7 * sent["actor"].size


def test_measured_links_have_the_declared_error_and_the_client_lives_on_the_true_one():
    sim = Simulation(grid_world(network={"rtt_error_ms": 10.0, "offset_error_ms": 15.0}, scale=0.5), seed=2,
                     hash_every=0)
    gen = sim.generator
    rtt, _ = gather(sim.world, sim.player_ids, Player, "rtt_ms")
    off, _ = gather(sim.world, sim.player_ids, Player, "clock_offset_ms")
    e_rtt, e_off = rtt - gen.rtt_ms, off - gen.clock_offset_ms
    assert np.count_nonzero(e_rtt) == e_rtt.size
    assert 8.0 < e_rtt.std() < 12.0 and 12.0 < e_off.std() < 18.0
    assert np.abs(e_off).max() <= 45.0 + 1e-9 and abs(e_off.mean()) < 2.0
    plain = Simulation(grid_world(scale=0.5), seed=2, hash_every=0)
    assert np.array_equal(plain.generator.rtt_ms, gen.rtt_ms)  # the true link is the same draw


def test_heavy_tails_and_bursts_delay_the_declared_share_of_packets():
    def delays(**net):
        pops = [Players(kind="players", name="p", count=4000, network=Network(rtt_ms=[100.0, 100.0], jitter_ms=0.0,
                                                                              **net))]
        ids = np.arange(4000, dtype=np.int64) + 1
        links = PacketDelays(pops, np.zeros(4000, np.int64), np.full(4000, 100.0), _rng())
        rows = np.arange(4000)
        return np.concatenate([links.arrival(t, 0.05, rows, ids, np.full(4000, 50.0 * t)) - 50.0 * t - 50.0
                               for t in range(40)])

    assert np.array_equal(delays(), np.zeros(160_000))
    tail = delays(tail_share=0.05, tail_ms=20.0, tail_alpha=1.5, tail_max_ms=900.0)
    assert 0.045 < np.mean(tail > 0) < 0.055 and tail[tail > 0].min() >= 20.0 and tail.max() <= 900.0
    assert np.mean(tail[tail > 0] > 100.0) > 0.05  # hundreds of ms now and then
    burst = delays(burst_rate_per_s=0.5, burst_ms=1000.0, burst_delay_ms=150.0)
    assert set(np.unique(burst).tolist()) == {0.0, 150.0}
    assert 0.1 < np.mean(burst > 0) < 0.5  # a burst holds every packet of its second


def test_humanised_cheats_forge_now_and_then_and_a_wide_bot_jitter_keeps_its_beat():
    defn = grid_world(cheaters={"forge_share": 0.25, "interval_jitter_ms": 250.0, "count": 30}, scale=0.2)
    sim, sent = played(defn, 400)
    gen = sim.generator
    row = np.searchsorted(gen.ids, sent["actor"])
    # Back-dated attacks: client time earlier than the true event by forge_ms, a quarter of them.
    forgers = gen.cheat.is_("timestamp")[row] & np.isin(sent["kind"], [2, 3, 4, 5])
    lead = sent["recv_time_ms"] - (sent["client_time_ms"] - gen.clock_offset_ms[row])
    back = forgers & (lead > 0.5 * gen.rtt_ms[row] + 75.0)  # honest: at most 3 x 12 ms of jitter (or a stall)
    assert forgers.sum() > 100 and 0.15 < back.sum() / forgers.sum() < 0.35
    # A bot's beat with a 250 ms jitter: spread wide, never shorter than a fifth of its 600 ms.
    bots = gen.cheat.kind == KIND_CODE["bot"]
    seen = [gen.next_beat_ms[bots].copy()]
    for _ in range(400):
        sim.step()
        seen.append(gen.next_beat_ms[bots].copy())
    beats = np.diff(np.array(seen), axis=0)
    beats = beats[beats > 0]
    assert beats.size > 200 and beats.min() >= 120.0 - 1e-9
    assert 180.0 < np.std(beats[beats < 1500.0]) < 320.0


def test_aimbot_difficulty_falloff_is_a_key_and_the_schema_refuses_contradictions():
    data = {"world": {"name": "w", "bounds": [0, 0, 100, 100]},
            "populations": [{"kind": "players", "name": "p", "count": 10,
                             "client": {"fire": "sustained", "sustained_share": 0.5}}]}
    with pytest.raises(WorldFileError, match="sustained_share"):
        parse_world(data)
    data["populations"][0]["client"] = {"client_hz": 5.0}
    with pytest.raises(WorldFileError, match="client_hz"):
        parse_world(data)
    data["populations"][0]["client"] = {"skill": [{"weight": 1.0, "mean": 1.2, "sd": 0.1}]}
    with pytest.raises(WorldFileError, match="skill"):
        parse_world(data)
    data["populations"][0]["client"] = {}
    data["cheaters"] = [{"kind": "aimbot", "population": "p", "count": 1, "difficulty_falloff": 0.5,
                         "label": "aimbot_human"}]
    assert parse_world(data).cheaters[0].difficulty_falloff == 0.5


def test_the_grid_runs_every_cell_and_reports_what_it_promised():
    result = run_grid(quick=True, seconds=[5, 10], models=["project", "plausible_bad_networks"])
    assert [c["model"] for c in result["cells"]] == ["project", "plausible_bad_networks"]
    labels = {"speedhack", "teleport", "rapid_fire", "aimbot", "bot", "timestamp", "dupe", "speedhack_x1_15",
              "aimbot_human", "bot_jittered", "timestamp_occasional"}
    for c in result["cells"]:
        assert c["ticks"] == 200 and c["honest"] + c["cheaters"] == c["players"]
        assert set(c["false_positives"]) == {"5", "10"}
        assert {p["label"] for p in c["profiles"]} == labels and all(p["count"] >= 2 for p in c["profiles"])
        assert all(set(p["recall"]) == {"5", "10"} for p in c["profiles"])
        assert all(p["recall"]["5"] <= p["recall"]["10"] for p in c["profiles"])
        assert set(c["bars"]) == {"passed", "failures", "unchecked"} and c["bars"]["unchecked"]  # 60 s not reached
    table = format_table(result)
    assert "== project / seed 1" in table and "timestamp_occasional" in table and "r@10" in table


@pytest.mark.slow
def test_the_cheat_grid_command_prints_one_json_object():
    """(The quick grid's bars are held in tests/test_cheat_detection.py.)"""
    proc = subprocess.run([sys.executable, "-m", "worlds", "cheat-grid", "--quick", "--json", "--seconds", "10",
                           "--models", "project,bad_networks"], capture_output=True, text=True, cwd=ROOT, check=True,
                          timeout=300)
    lines = proc.stdout.strip().splitlines()
    assert len(lines) == 1, proc.stdout
    out = json.loads(lines[0])
    assert {"quick", "models", "seeds", "seconds", "bars", "cells", "passed", "wall_s"} <= out.keys()
    assert out["quick"] and out["seconds"] == [10.0] and out["seeds"] == [1]
    assert list(out["models"]) == ["project", "bad_networks"]
    for c in out["cells"]:
        assert {"model", "seed", "players", "honest", "cheaters", "false_positives", "honest_refused",
                "honest_refused_movement_timing", "profiles", "bars"} <= c.keys()
        assert 300 <= c["players"] <= 600 and c["false_positives"]["10"]["rate"] >= 0.0
        for p in c["profiles"]:
            assert {"label", "kind", "count", "recall", "median_detect_s", "detected"} <= p.keys()
    bad = subprocess.run([sys.executable, "-m", "worlds", "cheat-grid", "--quick", "--models", "nope"],
                         capture_output=True, text=True, cwd=ROOT)
    assert bad.returncode == 2 and "unknown model" in bad.stderr
