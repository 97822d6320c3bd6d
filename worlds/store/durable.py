"""A run that survives a crash: its data directory, the journaled, snapshotted tick loop, and
recovery.

A data directory holds ``run.json`` (how the run was started: world, seed, input source,
cadence, fsync policy), ``world.toml`` (a copy of the world file, so a resume needs nothing
else), the journal (``journal.log`` and its closed segments) and ``snapshots/``.
``DurableRun`` wraps a ``Simulation``: each sealed batch is journaled before its tick runs,
each report says which tick is durable, and every K ticks the state is copied between two
ticks and written by a background thread (the tick goes on while the files are written and
fsynced). ``resume`` loads the newest good snapshot, replays the journal (checking the hashes
it recorded, every tenth tick), cuts a torn tail off, and hands back a ``DurableRun`` that
goes on appending.
"""

from __future__ import annotations

import pickle
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import msgspec

from worlds.loader import WorldFileError, load_world
from worlds.store import snapshots
from worlds.store.files import StoreError, digest, write_atomic
from worlds.store import journal as segments
from worlds.store.journal import (CLIENT_EVERY, FSYNC_POLICIES, FileJournal, Header, batch_of_frame, frame_of, scan_all,
                                  truncate)
from worlds.store.players import RecordWriter
from worlds.store.state import StateError, capture, client_state, load_client_state, restore

RUN_VERSION = 1
KEEP_SNAPSHOTS = 3
CHECK_EVERY = 10  # a replay checks the journal's hash of every tenth tick (and of the last)


class RunInfo(msgspec.Struct):
    version: int
    world: str
    world_digest: str
    seed: int
    generate: bool
    actions: str | None
    snapshot_every: int
    fsync: str
    records: str | None = None  # the player records' SQLite database
    records_every_s: float = 10.0
    shards: int = 1


@dataclass
class DataDir:
    path: Path
    info: RunInfo

    @property
    def journal(self) -> Path:
        return self.path / "journal.log"

    @property
    def world_file(self) -> Path:
        return self.path / "world.toml"

    def header(self, start_tick: int = 0) -> Header:
        return Header(1, self.info.world, self.info.world_digest, self.info.seed, start_tick)

    @classmethod
    def create(cls, path: Path, world_file: Path, seed: int, generate: bool, actions: str | None,
               snapshot_every: int, fsync: str, records: str | None = None, records_every_s: float = 10.0,
               shards: int = 1) -> DataDir:
        """A new data directory for a run of ``world_file``; refuses one that holds a run."""
        path = Path(path)
        if (path / "run.json").exists():
            raise StoreError(f"{path}: already holds a run (worlds resume it, or choose another directory)")
        if path.exists() and not path.is_dir():
            raise StoreError(f"{path}: not a directory")
        if fsync not in FSYNC_POLICIES:
            raise StoreError(f"--fsync {fsync!r}: expected one of {', '.join(FSYNC_POLICIES)}")
        if snapshot_every < 1:
            raise StoreError(f"--snapshot-every {snapshot_every}: must be at least 1")
        defn = load_world(world_file)
        text = Path(world_file).read_bytes()
        path.mkdir(parents=True, exist_ok=True)
        write_atomic(path / "world.toml", text)
        info = RunInfo(RUN_VERSION, defn.world.name, digest(text), int(seed), generate,
                       None if actions is None else str(Path(actions).resolve()), snapshot_every, fsync,
                       None if records is None else str(Path(records).resolve()), records_every_s, shards)
        write_atomic(path / "run.json", msgspec.json.encode(info))
        return cls(path, info)

    @classmethod
    def open(cls, path: Path) -> DataDir:
        """An existing data directory; ``StoreError`` (one line) when it is not one."""
        path = Path(path)
        if not path.is_dir():
            raise StoreError(f"{path}: no such data directory")
        try:
            info = msgspec.json.decode((path / "run.json").read_bytes(), type=RunInfo)
        except FileNotFoundError:
            raise StoreError(f"{path}: not a data directory (no run.json)") from None
        except (msgspec.DecodeError, msgspec.ValidationError) as e:
            raise StoreError(f"{path}/run.json: not a run description ({e})") from None
        if info.version != RUN_VERSION:
            raise StoreError(f"{path}/run.json: version {info.version}, this build reads {RUN_VERSION}")
        out = cls(path, info)
        try:
            text = out.world_file.read_bytes()
        except OSError as e:
            raise StoreError(f"{out.world_file}: cannot read: {e.strerror or e}") from None
        if digest(text) != info.world_digest:
            raise StoreError(f"{out.world_file}: digest {digest(text)}, run.json says {info.world_digest} "
                             "(the world file was changed)")
        return out

    def world(self):
        try:
            return load_world(self.world_file)
        except WorldFileError as e:
            raise StoreError(e.problems[0]) from None


class DurableRun:
    """``sim`` with its ticks journaled and its state snapshotted (``Simulation``'s API:
    attributes not defined here are the simulation's)."""

    def __init__(self, sim, data: DataDir, fsync: str | None = None, first_snapshot: bool = True,
                 prev_hash: str = "") -> None:
        self.sim = sim
        self.data = data
        self.every = data.info.snapshot_every
        self.journal = FileJournal(data.journal, data.header(sim.tick), fsync or data.info.fsync)
        self._last_hash = prev_hash
        self._writer: threading.Thread | None = None
        self._failed: BaseException | None = None
        self.snapshot_stats: list[dict] = []
        self.last_extra_ms = 0.0
        self._out_of_band: list[tuple[str, int]] = []
        info = data.info
        self.records = None if info.records is None else RecordWriter(sim, Path(info.records), info.records_every_s)
        sim.journal = self
        if first_snapshot:
            self.snapshot(wait=True)

    def __getattr__(self, name):
        return getattr(self.sim, name)

    # -- the journal ----------------------------------------------------------------------------
    def record(self, tick: int, batch, out_of_band, truth) -> None:
        self._out_of_band = list(out_of_band)
        clients = b""
        if self.sim.generator is not None and tick % CLIENT_EVERY == 0:
            clients = client_state(self.sim, truth)
        self.journal.append(frame_of(tick, batch, out_of_band, self._last_hash, clients))

    def step(self, wall_start: float | None = None):
        """One tick; ``last_extra_ms``: what durability added after it (waiting for the
        frame's fsync, copying a snapshot's state), beside the frame written inside it."""
        report = self.sim.step(wall_start)
        t0 = time.perf_counter()
        self.journal.wait_durable(report.tick)
        report.durable_tick = self.journal.durable_tick
        self._last_hash = report.state_hash or ""
        if self.sim.tick % self.every == 0:
            self.snapshot()
        if self.records is not None:
            self.records.after_tick(report, self._out_of_band)
        self.last_extra_ms = (time.perf_counter() - t0) * 1000.0
        return report

    # -- snapshots ------------------------------------------------------------------------------
    def snapshot(self, wait: bool = False) -> None:
        """Copy the state now; write it in the background (``wait``: before returning)."""
        self._join()
        self.journal.rotate(self.sim.tick)  # the frames from here on in a segment of their own
        t0 = time.perf_counter()
        state = capture(self.sim)
        copy_ms = (time.perf_counter() - t0) * 1000.0
        info = self.data.info

        def write() -> None:
            try:
                t1 = time.perf_counter()
                snap = snapshots.write(self.data.path, state, info.world, info.world_digest, info.seed)
                snapshots.prune(self.data.path, KEEP_SNAPSHOTS)
                kept = snapshots.listing(self.data.path)
                if kept:
                    segments.prune(self.data.journal, int(kept[0].name))
                self.snapshot_stats.append({"tick": state.tick, "copy_ms": round(copy_ms, 3),
                                            "write_ms": round((time.perf_counter() - t1) * 1000.0, 3),
                                            "bytes": snapshots.size_of(snap), "entities": state.entities})
            except BaseException as e:  # reported on the next snapshot or at close
                self._failed = e

        self._writer = threading.Thread(target=write, name="snapshot-writer", daemon=True)
        self._writer.start()
        if wait:
            self._join()

    def _join(self) -> None:
        if self._writer is not None:
            self._writer.join()
            self._writer = None
        if self._failed is not None:
            e, self._failed = self._failed, None
            raise StoreError(f"{self.data.path}/snapshots: a snapshot could not be written: {e}")

    def close(self) -> None:
        self._join()
        self.journal.close()
        self.sim.journal = None
        if self.records is not None:  # everyone's record as the run ends (durable now)
            self.records.flush()
            self.records.close()

    def store_summary(self) -> dict:
        s = self.snapshot_stats
        rec = self.records
        return {"data": str(self.data.path), "fsync": self.journal.policy, "snapshot_every": self.every,
                "records": None if rec is None else {"db": str(rec.path), "flushes": rec.flushes, "rows": rec.rows},
                "journal_bytes": self.journal.bytes_written, "fsyncs": self.journal.fsyncs,
                "snapshots": len(s), "snapshot_copy_ms_max": max((x["copy_ms"] for x in s), default=0.0),
                "snapshot_write_ms_max": max((x["write_ms"] for x in s), default=0.0),
                "snapshot_bytes": s[-1]["bytes"] if s else 0}


# --------------------------------------------------------------------------- recovery


@dataclass
class Recovery:
    resumed_from_tick: int
    replayed_ticks: int
    recovery_ms: float
    torn: dict | None = None  # {"offset", "reason"} of a torn last frame that was dropped
    snapshots_skipped: list[dict] = field(default_factory=list)  # damaged ones passed over

    def summary(self) -> dict:
        return {"resumed_from_tick": self.resumed_from_tick, "replayed_ticks": self.replayed_ticks,
                "recovery_ms": round(self.recovery_ms, 3), "torn_frame": self.torn,
                "snapshots_skipped": self.snapshots_skipped}


def build(data: DataDir):
    """A fresh simulation of the run's world, seed, shard count and input source (not yet
    stepped)."""
    from worlds.cluster import open_world

    info = data.info
    sim = open_world(data.world(), shards=info.shards, seed=info.seed, generate=info.generate)
    if info.actions is not None:
        from worlds.stream import StreamReader

        try:
            with open(info.actions, encoding="utf-8") as f:
                sim.external = StreamReader(f)
        except OSError as e:
            raise StoreError(f"{info.actions}: cannot read the run's action stream: {e.strerror or e}") from None
    return sim


def resume(path: Path, fsync: str | None = None) -> tuple[DurableRun, Recovery]:
    """The run in ``path``, recovered to the end of its journal, journaling again."""
    t0 = time.perf_counter()
    data = DataDir.open(path)
    info = data.info
    j = scan_all(data.journal)
    if j.header is not None and (j.header.world_digest != info.world_digest or j.header.seed != info.seed):
        raise StoreError(f"{data.journal}: offset 0: the journal of world {j.header.world} (digest "
                         f"{j.header.world_digest}, seed {j.header.seed}), not of this run's (digest "
                         f"{info.world_digest}, seed {info.seed})")
    end = (j.last_tick + 1) if j.frames else (j.header.start_tick if j.header else 0)
    skipped, state, snap = [], None, None
    for snap in reversed(snapshots.listing(data.path)):
        try:
            state = snapshots.load(snap, info.world_digest, info.seed)
        except StoreError as e:
            skipped.append({"snapshot": snap.name, "reason": str(e)})
            continue
        if state.tick > end:
            raise StoreError(f"{data.journal}: ends at tick {end}, before snapshot {snap.name}: frames were lost")
        if j.first_tick is not None and state.tick < j.first_tick:
            skipped.append({"snapshot": snap.name, "reason": "older than the journal"})
            state = None
            continue
        break
    if state is None:
        why = "; ".join(s["reason"] for s in skipped) or "none was written"
        raise StoreError(f"{data.path}/snapshots: no usable snapshot ({why})")
    sim = build(data)
    try:
        restore(sim, state)
    except StateError as e:
        raise StoreError(f"{snap}: {e}") from None
    frames = [f for f in j.frames if f.tick >= state.tick]
    by_tick = {f.tick: f for f in frames}
    sim.replay = lambda tick: batch_of_frame(by_tick[tick]) if tick in by_tick else None
    # The clients sit out the ticks before their last checkpoint (all of them, when nothing of
    # theirs is kept between ticks: a recorded stream, or none): the journal has their batches.
    if sim.generator is None:
        pause_until = frames[-1].tick if frames else -1
    else:
        pause_until = max((f.tick for f in frames if f.clients), default=-1)
    prev_hash = ""
    sim.hash_every = 0  # hashed where checked: every CHECK_EVERY-th replayed tick, and the last
    last = frames[-1].tick if frames else -1
    for f in frames:
        if f.prev_hash and f.tick > state.tick and prev_hash and f.prev_hash != prev_hash:
            raise StoreError(f"{data.journal}: replaying tick {f.tick - 1} gave hash {prev_hash}, the journal "
                             f"says {f.prev_hash}: the replay diverged")
        for kind, player in f.out_of_band:
            (sim.disconnect if kind == "disconnect" else sim.reconnect)(player)
        sim.out_of_band.clear()
        sim.clients_paused = f.tick <= pause_until
        if f.tick == pause_until and sim.generator is not None:
            load_client_state(sim, f.tick, pickle.loads(f.clients))
        sim.step()
        checked = f.tick == last or (f.tick + 1) % CHECK_EVERY == 0 and (f.tick + 1) in by_tick
        prev_hash = sim.state_hash() if checked else ""
    sim.hash_every = 1
    sim.clients_paused = False
    sim.replay = None
    torn = None
    if j.torn_at is not None:
        torn = {"offset": j.torn_at, "reason": j.torn_reason}
        truncate(data.journal, j.end)
    run = DurableRun(sim, data, fsync=fsync, first_snapshot=False, prev_hash=prev_hash)
    if run.records is not None:  # the recovered world wins: every record rewritten from it
        run.records.flush()
    return run, Recovery(state.tick, len(frames), (time.perf_counter() - t0) * 1000.0, torn, skipped)


def inspect(path: Path) -> dict:
    """What a data directory holds: the run, its snapshots (tick, size, entities, health) and
    its journal's extent and health."""
    data = DataDir.open(path)
    info = data.info
    snaps = []
    for snap in snapshots.listing(data.path):
        entry = {"tick": int(snap.name), "bytes": snapshots.size_of(snap)}
        try:
            m = snapshots.manifest_of(snap)
            entry["entities"] = m.entities
            snapshots.load(snap, info.world_digest, info.seed)
            entry["health"] = "ok"
        except StoreError as e:
            entry["health"] = str(e)
        snaps.append(entry)
    journal: dict = {"file": str(data.journal)}
    try:
        j = scan_all(data.journal)
        journal.update(segments=len(segments.segments(data.journal)), first_tick=j.first_tick,
                       last_tick=j.last_tick, frames=len(j.frames), bytes=j.size,
                       health="ok" if j.torn_at is None
                       else f"torn last frame at offset {j.torn_at} ({j.torn_reason})")
    except StoreError as e:
        journal["health"] = str(e)
    return {"data": str(data.path), "world": info.world, "seed": info.seed, "fsync": info.fsync,
            "snapshot_every": info.snapshot_every, "snapshots": snaps, "journal": journal}
