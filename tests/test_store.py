"""Durable state through its API and command line, on real files: a snapshot restored into a
fresh world goes on exactly as the original; a resumed run reaches the uninterrupted run's
hashes; damage is found, named and survived where it can be, refused where it cannot."""

import json
import subprocess
import sys

import numpy as np
import pytest

from systems.components import Player
from tests.conftest import ROOT, WORLDS
from worlds import Simulation
from worlds.loader import load_world
from worlds.store import DataDir, DurableRun, StoreError, inspect, resume
from worlds.store.journal import scan
from worlds.store.state import capture, restore

# Worlds whose state lives in more than tables: events (density, director), the partition's
# history (regions_spike), cheaters of the client simulation, trade offers, rebalancing.
STATEFUL = ["events_spike.toml", "events_shard_hunt.toml", "regions_spike.toml", "cheat_small.toml",
            "chest_rush.toml", "shard_rebalance.toml", "walls.toml"]


def reference(name: str, ticks: int, seed: int = 5) -> list[str]:
    sim = Simulation(load_world(WORLDS / name), seed=seed)
    return [sim.step().state_hash for _ in range(ticks)]


def durable(tmp_path, name: str, ticks: int, every: int = 10, fsync: str = "tick", seed: int = 5):
    data = DataDir.create(tmp_path / "data", WORLDS / name, seed=seed, generate=True, actions=None,
                          snapshot_every=every, fsync=fsync)
    run = DurableRun(Simulation(data.world(), seed=seed), data)
    reports = [run.step() for _ in range(ticks)]
    run.close()
    return data, reports


@pytest.mark.parametrize("name", STATEFUL)
def test_a_snapshot_restored_into_a_fresh_world_goes_on_exactly_as_the_original(name):
    defn = load_world(WORLDS / name)
    a = Simulation(defn, seed=5)
    for _ in range(23):
        a.step()
    b = Simulation(defn, seed=5)
    restore(b, capture(a))
    assert b.state_hash() == a.state_hash() and b.tick == a.tick
    assert [b.step().state_hash for _ in range(25)] == [a.step().state_hash for _ in range(25)]


def test_a_resumed_run_has_the_uninterrupted_hash_at_every_later_tick(tmp_path):
    ref = reference("events_spike.toml", 60)
    data, reports = durable(tmp_path, "events_spike.toml", 37)
    assert [r.state_hash for r in reports] == ref[:37]
    assert all(r.durable_tick == r.tick for r in reports)  # fsync tick: durable before the report
    run, rec = resume(data.path)
    assert (rec.resumed_from_tick, rec.replayed_ticks, rec.torn) == (30, 7, None)
    assert run.tick == 37 and run.state_hash() == ref[36]
    assert [run.step().state_hash for _ in range(23)] == ref[37:]
    run.close()
    run, rec = resume(data.path)  # and again, from the snapshot the resumed run took at its end
    assert (rec.resumed_from_tick, rec.replayed_ticks, run.state_hash()) == (60, 0, ref[59])
    run.close()


def test_disconnects_between_ticks_are_journaled_and_replayed(tmp_path):
    defn = load_world(WORLDS / "battle.toml")
    ref = Simulation(defn, seed=5)
    data = DataDir.create(tmp_path / "d", WORLDS / "battle.toml", 5, True, None, 8, "tick")
    run = DurableRun(Simulation(defn, seed=5), data)
    p = [int(e) for e in ref.player_ids[:3]]
    for k in range(20):
        for sim in (ref, run):
            if k == 3:
                sim.disconnect(p[0])
                sim.disconnect(p[1])
            if k == 11:
                sim.reconnect(p[0])
        assert run.step().state_hash == ref.step().state_hash
    run.close()
    again, rec = resume(data.path)
    assert rec.resumed_from_tick == 16 and again.state_hash() == ref.state_hash()
    assert again.world.get(p[1], Player)["connected"] == 0 and again.world.get(p[0], Player)["connected"] == 1
    again.close()


def test_fsync_policies_say_which_tick_is_durable(tmp_path):
    _, off = durable(tmp_path / "off", "duel.toml", 5, fsync="off")
    assert [r.durable_tick for r in off] == [0, 1, 2, 3, 4]
    _, interval = durable(tmp_path / "iv", "duel.toml", 5, fsync="interval")
    assert all(r.durable_tick <= r.tick for r in interval) and interval[0].durable_tick in (-1, 0)
    assert Simulation(load_world(WORLDS / "duel.toml")).step().durable_tick is None  # no journal


def test_a_torn_last_frame_is_dropped_and_reported_with_its_offset(tmp_path):
    ref = reference("battle.toml", 25)
    data, _ = durable(tmp_path, "battle.toml", 25)
    whole = data.journal.stat().st_size
    last = scan(data.journal)
    cut = last.end - 7  # the process died seven bytes short of the last frame's end
    with open(data.journal, "r+b") as f:
        f.truncate(cut)
    start = scan(data.journal).end
    run, rec = resume(data.path)
    assert rec.torn["offset"] == start and "cut" in rec.torn["reason"] and start < cut < whole
    assert run.tick == 24 and run.state_hash() == ref[23]  # tick 24's frame was never whole
    assert [run.step().state_hash] == ref[24:25]  # and the journal goes on from there
    run.close()
    assert scan(data.journal).last_tick == 24 and scan(data.journal).torn_at is None


def test_a_damaged_snapshot_falls_back_to_the_previous_one_with_a_longer_replay(tmp_path):
    ref = reference("battle.toml", 25)
    data, _ = durable(tmp_path, "battle.toml", 25)
    newest = sorted((data.path / "snapshots").iterdir())[-1]
    victim = sorted(newest.glob("t*.npy"))[1]
    raw = bytearray(victim.read_bytes())
    raw[len(raw) // 2] ^= 0x40
    victim.write_bytes(bytes(raw))
    run, rec = resume(data.path)
    assert rec.resumed_from_tick == 10 and rec.replayed_ticks == 15 and run.state_hash() == ref[24]
    assert rec.snapshots_skipped[0]["snapshot"] == newest.name and victim.name in rec.snapshots_skipped[0]["reason"]
    run.close()
    health = [s["health"] for s in inspect(data.path)["snapshots"]]
    assert health[:2] == ["ok", "ok"] and victim.name in health[2]


def worlds(*args, cwd=ROOT):
    return subprocess.run([sys.executable, "-m", "worlds", *map(str, args)], capture_output=True, text=True, cwd=cwd)


def test_a_flipped_byte_mid_journal_is_refused_naming_file_offset_and_reason(tmp_path):
    from worlds.store.journal import segments

    data, _ = durable(tmp_path, "duel.toml", 12, every=100)
    frames = scan(data.journal)
    raw = bytearray(data.journal.read_bytes())
    at = frames.end - len(raw) // 3  # inside a frame with frames after it
    raw[at] ^= 0x01
    data.journal.write_bytes(bytes(raw))
    with pytest.raises(StoreError) as info:
        resume(data.path)
    msg = str(info.value)
    assert str(data.journal) in msg and "offset" in msg and "checksum" in msg and len(segments(data.journal)) == 1
    out = worlds("resume", data.path)
    assert out.returncode == 2 and len(out.stderr.strip().splitlines()) == 1 and "checksum" in out.stderr
    ins = worlds("inspect", data.path, "--json")
    assert ins.returncode == 1 and "checksum" in json.loads(ins.stdout)["journal"]["health"]


def test_a_journal_of_another_world_or_seed_is_refused(tmp_path):
    mine, _ = durable(tmp_path / "a", "duel.toml", 4)
    other, _ = durable(tmp_path / "b", "duel.toml", 4, seed=6)
    mine.journal.write_bytes(other.journal.read_bytes())
    with pytest.raises(StoreError, match=r"journal\.log: offset 0: the journal of world duel .*seed 6"):
        resume(mine.path)


def test_bad_data_directories_exit_2_with_one_line(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    for args, words in ((("resume", tmp_path / "nowhere"), "no such data directory"),
                        (("resume", empty), "no run.json"), (("inspect", empty), "no run.json")):
        out = worlds(*args)
        assert out.returncode == 2 and len(out.stderr.strip().splitlines()) == 1 and words in out.stderr
    data, _ = durable(tmp_path, "duel.toml", 3)
    for snap in (data.path / "snapshots").iterdir():
        for f in snap.iterdir():
            f.unlink()
        snap.rmdir()
    out = worlds("resume", data.path)
    assert out.returncode == 2 and "no usable snapshot" in out.stderr and len(out.stderr.strip().splitlines()) == 1
    again = worlds("run", WORLDS / "duel.toml", "--ticks", "2", "--data", data.path)
    assert again.returncode == 2 and "already holds a run" in again.stderr


def test_worlds_run_data_then_resume_until_reaches_the_uninterrupted_hash(tmp_path):
    d = tmp_path / "data"
    first = worlds("run", WORLDS / "chest_rush.toml", "--ticks", "30", "--seed", "3", "--data", d,
                   "--snapshot-every", "12", "--json")
    assert first.returncode == 0, first.stderr
    assert json.loads(first.stdout)["store"]["snapshots"] == 3  # ticks 0, 12, 24
    out = worlds("resume", d, "--until", "45", "--json")
    assert out.returncode == 0, out.stderr
    s = json.loads(out.stdout)
    assert (s["resumed_from_tick"], s["replayed_ticks"], s["tick"]) == (24, 6, 45) and s["recovery_ms"] > 0
    whole = json.loads(worlds("run", WORLDS / "chest_rush.toml", "--ticks", "45", "--seed", "3", "--json").stdout)
    assert s["state_hash"] == whole["state_hash"]
    listing = json.loads(worlds("inspect", d, "--json").stdout)
    # the journal is cut at each snapshot, and what is older than the oldest kept one is gone
    assert (listing["journal"]["first_tick"], listing["journal"]["last_tick"], listing["journal"]["segments"]) == (
        12, 44, 3)
    assert [s["tick"] for s in listing["snapshots"]] == [12, 24, 36] and np.all([s["entities"] > 0
                                                                             for s in listing["snapshots"]])


def test_the_commands_in_process_resume_with_acks_and_hashes_and_inspect_readably(tmp_path, capsys):
    from worlds.cli import main

    d, acks, hashes = tmp_path / "d", tmp_path / "acks.txt", tmp_path / "h.txt"
    assert main(["run", str(WORLDS / "duel.toml"), "--ticks", "6", "--data", str(d), "--snapshot-every", "4",
                 "--acks", str(acks), "--fsync", "interval", "--json"]) == 0
    first = acks.read_text().splitlines()
    assert first and all(len(line.split()) == 4 for line in first)
    capsys.readouterr()
    assert main(["resume", str(d), "--until", "9", "--acks", str(acks), "--hashes", str(hashes)]) == 0
    assert "resumed duel from tick 4, replayed 2 ticks" in capsys.readouterr().out
    assert [int(line.split()[0]) for line in hashes.read_text().splitlines()] == [6, 7, 8]
    assert max(int(line.split()[0]) for line in acks.read_text().splitlines()) == 8
    assert main(["inspect", str(d)]) == 0
    out = capsys.readouterr().out
    assert "journal ticks 0..8" in out and out.count(" ok") == 4


def test_a_replay_takes_the_clients_up_at_their_last_checkpoint_and_goes_on_as_the_original(tmp_path):
    from worlds.store.journal import CLIENT_EVERY

    ticks = CLIENT_EVERY + 14
    ref = Simulation(load_world(WORLDS / "cheat_small.toml"), seed=5)
    expected = [ref.step().state_hash for _ in range(ticks + 20)]
    data, _ = durable(tmp_path, "cheat_small.toml", ticks, every=10**6)  # one snapshot: tick 0
    assert [f.tick for f in scan(data.journal).frames if f.clients] == [0, CLIENT_EVERY]
    run, rec = resume(data.path)
    assert (rec.resumed_from_tick, rec.replayed_ticks) == (0, ticks) and run.state_hash() == expected[ticks - 1]
    assert [run.step().state_hash for _ in range(20)] == expected[ticks:]
    assert run.truth.impossible == ref.truth.impossible > 0 and run.truth.honest_refused == ref.truth.honest_refused
    run.close()


def test_a_sharded_run_is_snapshotted_as_one_cut_and_resumes_to_the_one_shard_hash(tmp_path):
    from worlds.cluster.sharded import ShardedSimulation
    from worlds.store.snapshots import listing, manifest_of

    name = "events_shard_hunt.toml"  # events (the director's shard), hand-offs, ghosts, kills across borders
    ref = reference(name, 50, seed=5)
    data = DataDir.create(tmp_path / "d", WORLDS / name, seed=5, generate=True, actions=None, snapshot_every=15,
                          fsync="tick", shards=4)
    run = DurableRun(ShardedSimulation(data.world(), 4, seed=5), data)
    assert [run.step().state_hash for _ in range(35)] == ref[:35]
    run.close()
    newest = listing(data.path)[-1]
    assert newest.name == "000000030" and len(manifest_of(newest).parts) == 5  # the id space and four shards
    again, rec = resume(data.path)
    assert isinstance(again.sim, ShardedSimulation) and (rec.resumed_from_tick, rec.replayed_ticks) == (30, 5)
    assert [again.step().state_hash for _ in range(15)] == ref[35:]
    again.close()
    from worlds.store.state import StateError

    with pytest.raises(StateError, match="the snapshot is of 4 shards; this run is one world"):
        restore(Simulation(data.world(), seed=5), capture(again.sim))


def test_a_replay_that_does_not_reach_the_hash_the_journal_recorded_is_refused(tmp_path):
    import msgspec

    from worlds.store.journal import pack

    data, _ = durable(tmp_path, "battle.toml", 25, every=1000)
    j = scan(data.journal)
    frames = [msgspec.structs.replace(f, prev_hash="0" * 16) if f.tick == 20 else f for f in j.frames]
    data.journal.write_bytes(pack(j.header) + b"".join(pack(f) for f in frames))
    with pytest.raises(StoreError, match=r"replaying tick 19 gave hash [0-9a-f]{16}, the journal says 0{16}"):
        resume(data.path)
    assert "status" not in j.frames[3].actions and "actor" in j.frames[3].actions  # outputs are not journaled


def test_the_journal_is_cut_at_snapshots_and_a_missing_middle_segment_is_a_gap(tmp_path):
    from worlds.store.journal import segments

    data, _ = durable(tmp_path, "duel.toml", 47, every=10)  # snapshots 0, 10, ..., 40: 20, 30, 40 kept
    parts = segments(data.journal)
    assert [p.name for p in parts] == ["journal-000000020.log", "journal-000000030.log", "journal.log"]
    parts[1].unlink()
    with pytest.raises(StoreError, match=r"journal\.log: starts at tick 40, after tick 29: a gap"):
        resume(data.path)
