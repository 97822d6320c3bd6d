"""Player records in SQLite: written through on leave and on a cadence, read when players
join a new run of the world; never ahead of the world, rewritten from it after a crash."""

import os
import signal
import sqlite3
import subprocess
import sys
import time

import numpy as np

from systems.components import CheatStats, Inventory, Position
from tests.conftest import ROOT, WORLDS
from worlds import Simulation
from worlds.loader import load_world
from worlds.store import DataDir, DurableRun, resume
from worlds.store.journal import scan_all
from worlds.store.players import LIFETIME, accounts_of, join, read

WORLD = WORLDS / "village.toml"


def durable(tmp_path, name, db, every_s=10.0, seed=3):
    data = DataDir.create(tmp_path / name, WORLD, seed=seed, generate=True, actions=None, snapshot_every=25,
                          fsync="tick", records=str(db), records_every_s=every_s)
    return DurableRun(Simulation(data.world(), seed=seed), data)


def played(tmp_path, name, db, ticks=40):
    run = durable(tmp_path, name, db)
    for _ in range(ticks):
        run.step()
    run.close()
    return run


def test_each_account_holds_its_own_players_state_as_the_run_ends(tmp_path):
    db = tmp_path / "players.db"
    run = played(tmp_path, "a", db)
    records = read(db)
    w = run.sim.world
    assert sorted(records) == sorted(accounts_of(run.sim)) and len(records) == run.player_ids.shape[0]
    for e, account in zip(run.player_ids.tolist(), accounts_of(run.sim)):
        r = records[account]
        assert r["tick"] == 39
        assert (r["x"], r["y"]) == (w.get(e, Position)["x"], w.get(e, Position)["y"])  # no two rows mixed
        assert r["gold"] == w.get(e, Inventory)["gold"]
        assert r["stats"]["shots"] == w.get(e, CheatStats)["shots"] and set(r["stats"]) == set(LIFETIME)
    assert len({r["gold"] for r in records.values()}) > 1  # gold changed hands: the rows differ
    con = sqlite3.connect(db)
    assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    con.close()


def test_a_new_run_of_the_world_finds_each_returning_players_inventory_where_it_was(tmp_path):
    db = tmp_path / "players.db"
    played(tmp_path, "first", db)
    before = read(db)
    fresh = Simulation(load_world(WORLD), seed=3)
    assert join(fresh, db) == fresh.player_ids.shape[0]
    for e, account in zip(fresh.player_ids.tolist(), accounts_of(fresh)):
        assert fresh.world.get(e, Inventory)["gold"] == before[account]["gold"]
        assert fresh.world.get(e, Position)["x"] == before[account]["x"]
    fresh.step()  # and the world goes on from there (the clients start where their players stand)
    out = subprocess.run([sys.executable, "-m", "worlds", "run", str(WORLD), "--seed", "3", "--ticks", "5", "--data",
                          str(tmp_path / "second"), "--records", str(db), "--json"], capture_output=True, text=True,
                         cwd=ROOT)
    assert out.returncode == 0 and "returning players took up their records" in out.stderr


def test_a_player_leaving_is_written_through_at_once(tmp_path):
    db = tmp_path / "players.db"
    run = durable(tmp_path, "leave", db, every_s=1000.0)
    for _ in range(3):
        run.step()
    leaver = int(run.player_ids[4])
    run.disconnect(leaver)
    run.step()
    run.records.close()  # (waits for the write)
    run.records = None
    run.close()
    records = read(db)
    assert list(records) == [accounts_of(run.sim)[4]] and records[accounts_of(run.sim)[4]]["tick"] == 3


def test_after_a_crash_the_records_are_never_ahead_and_the_resumed_world_rewrites_them(tmp_path):
    data, db = tmp_path / "data", tmp_path / "players.db"
    err = open(tmp_path / "stderr.txt", "wb")
    proc = subprocess.Popen([sys.executable, "-m", "worlds", "run", str(WORLDS / "battle.toml"), "--ticks", "400",
                             "--data", str(data), "--records", str(db), "--records-every", "0.25",
                             "--snapshot-every", "30", "--json"], cwd=ROOT, stdout=subprocess.DEVNULL, stderr=err)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        if db.exists() and read(db) and max(r["tick"] for r in read(db).values()) >= 60:
            break
        time.sleep(0.01)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(30)
    err.close()
    assert proc.returncode == -signal.SIGKILL
    written = max(r["tick"] for r in read(db).values())
    assert written <= scan_all(data / "journal.log").last_tick  # never ahead of the journal
    run, rec = resume(data)
    run.close()
    records = read(db)
    w = run.sim.world
    assert {r["tick"] for r in records.values()} == {run.tick - 1}
    xs = np.array([records[a]["x"] for a in accounts_of(run.sim)])
    assert np.array_equal(xs, np.array([w.get(e, Position)["x"] for e in run.player_ids.tolist()]))
