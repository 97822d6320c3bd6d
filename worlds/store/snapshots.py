"""Snapshots: a world's state at the start of a tick, as files that are whole or absent.

``DIR/snapshots/TICK/`` holds one ``.npy`` per table column block and per table's ids, for each
part of the world (one world: one part; a sharded world: its id space, then each shard, all at
the same tick: a barrier-consistent cut) (numpy's
own format: a memcpy to write, nothing to install; Arrow IPC would add pyarrow for the same
bytes), ``state.pkl`` for the small plain-data rest (``worlds.store.state``), and
``manifest.json``: tick, world file digest, seed, schema version, and each file's size and
xxh3-64. A snapshot is written into ``.tmp-TICK`` (every file fsynced, then the directory),
renamed into place and the parent fsynced: a crash leaves the old set of snapshots or the new
one. ``load`` checks every file against the manifest before it reads a byte of state, and
``newest_good`` falls back to an older snapshot when the newest is damaged.
"""

from __future__ import annotations

import io
import os
import pickle
import shutil
from pathlib import Path

import msgspec
import numpy as np

from worlds.store.faults import stall
from worlds.store.files import StoreError, digest, fsync_dir
from worlds.store.state import PartState, TableState, WorldState

VERSION = 2


class FileEntry(msgspec.Struct):
    bytes: int
    digest: str


class TableEntry(msgspec.Struct):
    components: list[str]
    n: int
    capacity: int
    ids: str
    blocks: dict[str, str]


class PartEntry(msgspec.Struct):
    tables: list[TableEntry]
    slots: str


class Manifest(msgspec.Struct):
    version: int
    tick: int
    world: str
    world_digest: str
    seed: int
    entities: int
    parts: list[PartEntry]  # one world; or the id space, then each shard
    state: str
    files: dict[str, FileEntry]


def _npy(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, np.ascontiguousarray(arr), allow_pickle=False)
    return buf.getvalue()


def write(root: Path, state: WorldState, world: str, world_digest: str, seed: int) -> Path:
    """Write ``state`` as ``root/snapshots/TICK`` atomically; returns its directory."""
    base = Path(root) / "snapshots"
    base.mkdir(parents=True, exist_ok=True)
    name = f"{state.tick:09d}"
    tmp = base / f".tmp-{name}"
    final = base / name
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    files: dict[str, FileEntry] = {}

    def put(fname: str, data: bytes) -> str:
        with open(tmp / fname, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        files[fname] = FileEntry(len(data), digest(data))
        return fname

    parts = []
    for p, part in enumerate(state.parts):
        pre = f"p{p}." if len(state.parts) > 1 else ""
        tables = []
        for i, t in enumerate(part.tables):
            blocks = {key: put(f"{pre}t{i}.b{j}.npy", _npy(b)) for j, (key, b) in enumerate(sorted(t.blocks.items()))}
            tables.append(TableEntry(t.components, t.n, t.capacity, put(f"{pre}t{i}.ids.npy", _npy(t.ids)), blocks))
        parts.append(PartEntry(tables, put(f"{pre}slots.npy", _npy(part.slots))))
    stall("snapshot", state.tick)
    put("state.pkl", pickle.dumps(state.extra, protocol=5))
    manifest = Manifest(VERSION, state.tick, world, world_digest, seed, state.entities, parts, "state.pkl", files)
    with open(tmp / "manifest.json", "wb") as f:
        f.write(msgspec.json.encode(manifest))
        f.flush()
        os.fsync(f.fileno())
    fsync_dir(tmp)
    if final.exists():  # the same tick again (a resumed run): the new one replaces it
        shutil.rmtree(final)
    os.replace(tmp, final)
    fsync_dir(base)
    return final


def listing(root: Path) -> list[Path]:
    """Snapshot directories, oldest first (temporaries of an interrupted write left out)."""
    base = Path(root) / "snapshots"
    if not base.is_dir():
        return []
    return sorted(p for p in base.iterdir() if p.is_dir() and p.name.isdigit())


def manifest_of(snap: Path) -> Manifest:
    try:
        return msgspec.json.decode((snap / "manifest.json").read_bytes(), type=Manifest)
    except OSError as e:
        raise StoreError(f"{snap}/manifest.json: cannot read: {e.strerror or e}") from None
    except (msgspec.DecodeError, msgspec.ValidationError) as e:
        raise StoreError(f"{snap}/manifest.json: not a snapshot manifest ({e})") from None


def load(snap: Path, world_digest: str, seed: int) -> WorldState:
    """The state in ``snap``, every file checked first; ``StoreError`` naming the file at fault."""
    m = manifest_of(snap)
    if m.version != VERSION:
        raise StoreError(f"{snap}/manifest.json: snapshot version {m.version}, this build reads {VERSION}")
    if m.world_digest != world_digest or m.seed != seed:
        raise StoreError(f"{snap}/manifest.json: taken of world {m.world} (digest {m.world_digest}, seed {m.seed}), "
                         f"not of this one (digest {world_digest}, seed {seed})")
    data: dict[str, bytes] = {}
    for fname, entry in m.files.items():
        try:
            raw = (snap / fname).read_bytes()
        except OSError as e:
            raise StoreError(f"{snap}/{fname}: cannot read: {e.strerror or e}") from None
        if len(raw) != entry.bytes or digest(raw) != entry.digest:
            raise StoreError(f"{snap}/{fname}: {len(raw)} bytes with checksum {digest(raw)}, the manifest says "
                             f"{entry.bytes} bytes with {entry.digest}")
        data[fname] = raw

    def arr(fname: str) -> np.ndarray:
        return np.load(io.BytesIO(data[fname]), allow_pickle=False)

    parts = [PartState([TableState(t.components, t.n, t.capacity, arr(t.ids), {k: arr(f) for k, f in t.blocks.items()})
                        for t in p.tables], arr(p.slots)) for p in m.parts]
    return WorldState(m.tick, parts, pickle.loads(data[m.state]))


def size_of(snap: Path) -> int:
    return sum(p.stat().st_size for p in snap.iterdir() if p.is_file())


def prune(root: Path, keep: int) -> None:
    """Keep the newest ``keep`` snapshots."""
    for old in listing(root)[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
