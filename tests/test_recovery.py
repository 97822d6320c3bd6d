"""Crash drills: a real ``worlds run --data`` process killed with SIGKILL (mid-journal-write,
mid-snapshot, or at a random moment between and during ticks; on one shard or three) is resumed
to the uninterrupted one-shard run's state hash, and every action it acknowledged before dying
is in the recovered state."""

import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from systems.components import Player
from tests.conftest import ROOT, WORLDS
from worlds import Simulation
from worlds.loader import load_world
from worlds.store import resume
from worlds.store.journal import scan_all
from worlds.stream import StreamReader

WORLD = WORLDS / "battle.toml"
TICKS = 300


@pytest.fixture(scope="module")
def stream(tmp_path_factory):
    """A recorded action stream, and the hash after every tick of the uninterrupted run on it."""
    path = tmp_path_factory.mktemp("stream") / "actions.jsonl"
    out = subprocess.run([sys.executable, "-m", "worlds", "run", str(WORLD), "--ticks", str(TICKS), "--record",
                          str(path), "--json"], capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    sim = Simulation(load_world(WORLD), generate=False)
    with open(path, encoding="utf-8") as f:
        sim.external = StreamReader(f)
    return path, [sim.step().state_hash for _ in range(TICKS)]


def acked_tick(acks) -> int:
    """The tick of the last whole acknowledgement line so far (-1: none)."""
    if not acks.exists():
        return -1
    lines = acks.read_bytes().split(b"\n")[:-1]
    return int(lines[-1].split()[0]) if lines else -1


def killed_run(tmp_path, stream_path, stall: str | None, after_tick: int, seed: int = 0, shards: int = 1):
    """Start the run; SIGKILL it when it stalls at ``stall``, or a few random milliseconds
    (by ``seed``) after it acknowledged tick ``after_tick``: between or inside ticks, while a
    frame is written or fsynced or a snapshot is written behind. Returns (data dir,
    acknowledgements read from the file afterwards)."""
    data, acks, mark = tmp_path / "data", tmp_path / "acks.txt", tmp_path / "stalled"
    env = dict(os.environ)
    if stall:
        env.update(WORLDS_STORE_STALL=stall, WORLDS_STORE_STALL_MARK=str(mark))
    err = open(tmp_path / "stderr.txt", "wb")
    proc = subprocess.Popen([sys.executable, "-m", "worlds", "run", str(WORLD), "--ticks", str(TICKS), "--actions",
                             str(stream_path), "--data", str(data), "--snapshot-every", "20", "--acks", str(acks),
                             "--shards", str(shards), "--json"], cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                            stderr=err)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        if mark.exists() if stall else acked_tick(acks) >= after_tick:
            break
        time.sleep(0.002)
    if not stall:
        time.sleep(np.random.default_rng(seed).uniform(0.0, 0.02))
    proc.send_signal(signal.SIGKILL)
    proc.wait(30)
    err.close()
    assert proc.returncode == -signal.SIGKILL, (tmp_path / "stderr.txt").read_text()
    lines = acks.read_text().split("\n") if acks.exists() else []
    whole = [ln.split() for ln in lines[:-1]]  # the last line may be cut short by the kill
    return data, [(int(t), int(p), int(s), r) for t, p, s, r in whole]


@pytest.mark.slow
@pytest.mark.parametrize("stall, after_tick, seed, shards", [
    ("journal@37", 0, 0, 1), ("snapshot@40", 0, 0, 1), (None, 3, 1, 1), (None, 59, 2, 1), (None, 131, 3, 1),
    (None, 220, 4, 1), (None, 90, 5, 3), ("snapshot@60", 0, 0, 3)])
def test_a_killed_run_resumes_to_the_same_hash_with_every_acknowledged_action(tmp_path, stream, stall, after_tick,
                                                                                seed, shards):
    path, expected = stream
    data, acks = killed_run(tmp_path, path, stall, after_tick, seed, shards)
    assert acks, "the run acknowledged nothing before it was killed"
    run, rec = resume(data)
    last = run.tick - 1  # the last tick the journal holds whole
    assert run.state_hash() == expected[last]
    if stall == "journal@37":
        assert rec.torn is not None and last == 36
    if stall and stall.startswith("snapshot@"):
        at = int(stall.split("@")[1])
        assert rec.resumed_from_tick == at - 20 and not (data / "snapshots" / f"{at:09d}").exists()
    j = scan_all(data / "journal.log")  # (older segments than the oldest kept snapshot are gone)
    journaled = {(int(a), int(s)) for f in j.frames
                 for a, s in zip(np.frombuffer(f.actions["actor"], "<i8"), np.frombuffer(f.actions["seq"], "<i8"))}
    assert max(t for t, *_ in acks) <= last and j.first_tick <= rec.resumed_from_tick
    assert all((p, s) in journaled for t, p, s, _ in acks if t >= j.first_tick)  # nothing acknowledged was lost
    world = run.world  # (a sharded run's: merged from its shards once)
    for _, p, s, result in acks:
        if result == "applied":
            assert world.get(p, Player)["last_seq"] >= s
    more = min(TICKS, run.tick + 15)
    while run.tick < more:
        assert run.step().state_hash == expected[run.tick - 1]
    run.close()
