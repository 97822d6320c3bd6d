"""Player records in SQLite: each account's persistent state, what a login service reads.

One row per account (``accounts``) and its player's state (``players``): where it stands, its
hit points, its inventory, and the lifetime statistics the anomaly score keeps (counts and sums,
as JSON; not the run's clock readings, which mean nothing in another run). An account is its
population's name and its place in it (``rangers:17``): the same player in every run of the
world file. The database is in WAL mode with ``synchronous=FULL``: a committed flush survives a
crash of the process or the machine.

A durable run writes the records through, in one transaction per flush (a flush is one tick's
state of every player it covers, so no two rows of it come from different ticks), on the tick a
player leaves and every ``every_s`` seconds of game time, in a background thread, and only for
ticks whose journal frame is durable: the database is never ahead of the world. Which one wins
after a crash between them: a resumed run's world (snapshot and journal are the authority; the
resume writes every record anew from the recovered state); a new run of the world reads the
records when its players join (the database is then the only memory of them).
"""

from __future__ import annotations

import json
import queue
import sqlite3
import threading
from pathlib import Path

import numpy as np

from systems.components import CheatStats, Health, Inventory, Player, Position

# What of CheatStats lasts beyond a run: accumulators, not clock readings or last targets.
LIFETIME = tuple(f for f in CheatStats.fields if f not in (
    "flag_tick", "last_t_ms", "prev_int", "hurt_ms", "last_melee_ms", "last_ranged_ms", "last_cast_ms",
    "last_target"))
_COLUMNS = ("x", "y", "hp", "max_hp", "gold", "potions", "rares")
_SCHEMA = """
CREATE TABLE IF NOT EXISTS accounts (account TEXT PRIMARY KEY, world TEXT NOT NULL, created_tick INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS players (
    account TEXT PRIMARY KEY REFERENCES accounts(account), tick INTEGER NOT NULL,
    x REAL NOT NULL, y REAL NOT NULL, hp REAL NOT NULL, max_hp REAL NOT NULL,
    gold INTEGER NOT NULL, potions INTEGER NOT NULL, rares INTEGER NOT NULL, stats TEXT NOT NULL);
"""


def accounts_of(sim) -> list[str]:
    """The account of each of ``sim.player_ids``: population name and place in it."""
    names = []
    for pop in sim.defn.players():
        names.extend(f"{pop.name}:{i}" for i in range(pop.count))
    return names


def connect(path: Path) -> sqlite3.Connection:
    db = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=FULL")
    db.executescript(_SCHEMA)
    return db


def capture(sim, ids: np.ndarray) -> dict:
    """The record fields of the live ones among ``ids``, now, as arrays (cheap: the rows are
    built behind the tick, by ``rows_of``)."""
    w = sim.world
    ids = np.asarray(ids, np.int64)
    table, row = w.locate_many(ids)
    out: dict = {"tick": sim.tick - 1, "ids": [], "cols": {c: [] for c in _COLUMNS}, "stats": []}
    for t in np.unique(table[table >= 0]).tolist():
        held = w.tables[t]
        if not (held.has(Player) and held.has(Inventory) and held.has(CheatStats)):
            continue
        r = row[table == t]
        out["ids"].append(ids[table == t])
        for c, (comp, f) in zip(_COLUMNS, ((Position, "x"), (Position, "y"), (Health, "hp"), (Health, "max_hp"),
                                           (Inventory, "gold"), (Inventory, "potions"), (Inventory, "rares"))):
            out["cols"][c].append(held.column(comp, f)[r].copy())
        out["stats"].append(np.stack([held.column(CheatStats, f)[r] for f in LIFETIME], axis=1))
    return out


def rows_of(snap: dict, account: dict[int, str]) -> list[tuple]:
    """(account, tick, x, y, hp, max_hp, gold, potions, rares, stats) rows of a ``capture``."""
    if not snap["ids"]:
        return []
    ids = np.concatenate(snap["ids"]).tolist()
    cols = [np.concatenate(snap["cols"][c]).tolist() for c in _COLUMNS]
    stats = np.concatenate(snap["stats"]).tolist()
    tick = snap["tick"]
    return [(account.get(e, f"player:{e}"), tick, *(col[i] for col in cols), json.dumps(dict(zip(LIFETIME, st))))
            for i, (e, st) in enumerate(zip(ids, stats))]


def write(db: sqlite3.Connection, world: str, rows: list[tuple]) -> None:
    """One transaction: every row or none."""
    db.execute("BEGIN IMMEDIATE")
    try:
        db.executemany("INSERT OR IGNORE INTO accounts VALUES (?, ?, ?)", [(r[0], world, r[1]) for r in rows])
        db.executemany(f"INSERT OR REPLACE INTO players VALUES ({', '.join('?' * 10)})", rows)
        db.execute("COMMIT")
    except BaseException:
        db.execute("ROLLBACK")
        raise


def read(path: Path) -> dict[str, dict]:
    """Every player record by account."""
    db = connect(path)
    try:
        cur = db.execute(f"SELECT account, tick, {', '.join(_COLUMNS)}, stats FROM players")
        return {r[0]: {"tick": r[1], **dict(zip(_COLUMNS, r[2:9])), "stats": json.loads(r[9])} for r in cur}
    finally:
        db.close()


def join(sim, path: Path) -> int:
    """Players whose account has a record take it up (call before the first tick; one world or
    a sharded one, whose owners take the values); returns how many did."""
    records = read(path)
    if not records:
        return 0
    sharded = hasattr(sim, "shards")
    n = 0
    for e, a in zip(sim.player_ids.tolist(), accounts_of(sim)):
        r = records.get(a)
        if r is None:
            continue
        w = sim.shards[int(sim.owner_of(np.array([e]))[0])].world if sharded else sim.world
        w.set(e, Position, x=r["x"], y=r["y"])
        w.set(e, Player, last_x=r["x"], last_y=r["y"])
        w.set(e, Health, hp=r["hp"], max_hp=r["max_hp"], dead=0 if r["hp"] > 0 else 1)
        w.set(e, Inventory, gold=r["gold"], potions=r["potions"], rares=r["rares"])
        w.set(e, CheatStats, **{f: v for f, v in r["stats"].items() if f in LIFETIME})
        n += 1
    if not n:
        return 0
    from worlds.runtime import index_world

    if sharded:  # the ghosts hear of it, the shards' indexes and the clients' view are drawn again
        sim.stale |= {Position, Player, Health, Inventory}
        for sh in sim.shards:
            sh.index_now()
        if sim.generator is not None:
            sim._refresh_view(first=True)
    else:
        index_world(sim.world, sim.schedule)
    gen = sim.generator
    if gen is not None:  # the clients start from where their players stand now
        from systems.columns import gather

        gen.x, _ = gather(gen.world, gen.ids, Position, "x")
        gen.y, _ = gather(gen.world, gen.ids, Position, "y")
        gen.potions, _ = gather(gen.world, gen.ids, Inventory, "potions")
        gen.last_hp, _ = gather(gen.world, gen.ids, Health, "hp")
    return n


class RecordWriter:
    """Writes player records through for a durable run, behind the tick (one thread, in order)."""

    def __init__(self, sim, path: Path, every_s: float) -> None:
        self.sim = sim
        self.path = Path(path)
        self.every = max(1, int(round(every_s / sim.clock.dt_s)))
        self.accounts = accounts_of(sim)
        self._account = dict(zip(sim.player_ids.tolist(), self.accounts))
        self._queue: queue.Queue = queue.Queue()
        self._error: BaseException | None = None
        self._left: set[int] = set()
        self._due = False
        self.flushes = 0
        self.rows = 0
        self._thread = threading.Thread(target=self._run, name="player-records", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        db = connect(self.path)
        try:
            while True:
                snap = self._queue.get()
                if snap is None:
                    return
                try:
                    write(db, self.sim.defn.world.name, rows_of(snap, self._account))
                except BaseException as e:  # reported by the next flush or at close
                    self._error = e
        finally:
            db.close()

    def after_tick(self, report, out_of_band: list[tuple[str, int]]) -> None:
        """Note who left in the tick and whether the cadence is due; flush what is due once
        the tick is durable."""
        self._left.update(p for kind, p in out_of_band if kind == "disconnect")
        if report.tick % self.every == self.every - 1:
            self._due = True
        durable = report.durable_tick is None or report.durable_tick >= report.tick
        if durable and (self._due or self._left):
            ids = self.sim.player_ids if self._due else np.array(sorted(self._left), np.int64)
            self.flush(ids)
            self._due = False
            self._left.clear()

    def flush(self, ids: np.ndarray | None = None) -> None:
        if self._error is not None:
            e, self._error = self._error, None
            raise RuntimeError(f"{self.path}: player records could not be written: {e}")
        snap = capture(self.sim, self.sim.player_ids if ids is None else ids)
        self._queue.put(snap)
        self.flushes += 1
        self.rows += sum(a.shape[0] for a in snap["ids"])

    def close(self) -> None:
        self._queue.put(None)
        self._thread.join()
        if self._error is not None:
            e, self._error = self._error, None
            raise RuntimeError(f"{self.path}: player records could not be written: {e}")
