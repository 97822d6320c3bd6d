"""The write-ahead journal: one frame per tick, appended before the tick runs.

A journal is a header frame (which world file, by digest, and seed it belongs to) and then one
frame per tick, in tick order, each holding that tick's sealed input batch and the inputs that
arrived out of band before it (disconnects, reconnects), the state hash the tick before it
ended with (so a replay checks itself as it goes), and every ``CLIENT_EVERY`` ticks a
checkpoint of the built-in client simulation (so a replay need not run the clients through
every tick: only from the last checkpoint). On disk a frame is

    length (u32 LE) | xxh3-64 of the body (u64 LE) | body (msgpack, ``Header`` or ``Frame``)

``FileJournal`` appends frames to one file and makes them durable by the fsync policy:
``tick`` (each frame is fsynced before its tick's actions may be acknowledged: the fsync runs
while the tick computes), ``interval`` (every ``interval_ms``, in the background) or ``off``
(the OS writes when it likes). ``scan`` reads a journal back: a torn last frame (the process
died mid-write) is dropped and reported with its byte offset; a bad frame with good ones after
it, a gap in the ticks, or a header of another world is refused with the file, offset and
reason. The journal is cut into segments at snapshots (``journal.log`` the active one,
``journal-START.log`` the closed ones), and a segment older than every kept snapshot is
deleted: the journal does not grow without end. ``Journal`` is the interface a shared log
(Redis Streams, for shards on several machines) implements too.
"""

from __future__ import annotations

import os
import struct
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import msgspec
import numpy as np
import xxhash

from systems.actions import ACTION_FIELDS, ActionBatch
from worlds.store.faults import stall
from worlds.store.files import StoreError, fsync_dir

VERSION = 1
CLIENT_EVERY = 50
_HEAD = struct.Struct("<IQ")
FSYNC_POLICIES = ("tick", "interval", "off")
_datasync = getattr(os, "fdatasync", os.fsync)
STALLS = bool(os.environ.get("WORLDS_STORE_STALL"))  # crash drills only (``worlds.store.faults``)


class Header(msgspec.Struct, tag="header", array_like=True, frozen=True):
    version: int
    world: str  # the world file's name
    world_digest: str
    seed: int
    start_tick: int


class Frame(msgspec.Struct, tag="frame", array_like=True, frozen=True):
    tick: int
    actions: dict[str, bytes]  # ACTION_FIELDS name -> raw little-endian column (outputs left unset: absent)
    out_of_band: list[tuple[str, int]] = []  # ("disconnect" | "reconnect", player), in call order
    prev_hash: str = ""  # state hash after tick - 1 ("" when not hashed)
    clients: bytes = b""  # a checkpoint of the built-in client simulation (``state.client_state``), pickled


_decoder = msgspec.msgpack.Decoder(Header | Frame)
_encoder = msgspec.msgpack.Encoder()


# Columns the tick fills in (validation's outputs): journaled only when a batch arrives with
# them already set; a frame without them gives them their unset values back.
_OUTPUTS = {"status": 0.0, "event_ms": np.nan, "excess_ms": np.nan, "speed_ratio": np.nan}
_REQUIRED = tuple(name for name, _ in ACTION_FIELDS if name not in _OUTPUTS)


def frame_of(tick: int, batch: ActionBatch, out_of_band: list[tuple[str, int]], prev_hash: str,
             clients: bytes = b"") -> Frame:
    cols = {}
    for name, dt in ACTION_FIELDS:
        col = getattr(batch, name)
        unset = _OUTPUTS.get(name)
        if unset is not None and (np.all(np.isnan(col)) if unset != unset else not np.any(col)):
            continue
        cols[name] = np.ascontiguousarray(col, np.dtype(dt).newbyteorder("<")).tobytes()
    return Frame(tick, cols, list(out_of_band), prev_hash or "", clients)


def batch_of_frame(frame: Frame) -> ActionBatch:
    n = len(frame.actions["actor"]) // 8
    return ActionBatch(**{name: np.frombuffer(frame.actions[name], np.dtype(dt).newbyteorder("<")).copy()
                          if name in frame.actions else np.full(n, _OUTPUTS[name], dt) for name, dt in ACTION_FIELDS})


def pack(message: Header | Frame) -> bytes:
    body = _encoder.encode(message)
    return _HEAD.pack(len(body), xxhash.xxh3_64_intdigest(body)) + body


class Journal:
    """Where a world's frames go. ``append`` returns once the frame is written (not yet
    durable); ``durable_tick`` is the last tick whose frame is durable under the policy."""

    durable_tick: int = -1

    def append(self, frame: Frame) -> None:
        raise NotImplementedError

    def wait_durable(self, tick: int) -> None:
        """Block until the frame of ``tick`` is durable (under policy ``tick``)."""

    def close(self) -> None:
        """Flush, make durable, release."""


class FileJournal(Journal):
    def __init__(self, path: Path, header: Header | None = None, fsync: str = "tick",
                 interval_ms: float = 100.0) -> None:
        """Open ``path`` for appending (writing ``header`` first when the file is new)."""
        if fsync not in FSYNC_POLICIES:
            raise StoreError(f"fsync policy {fsync!r}: expected one of {', '.join(FSYNC_POLICIES)}")
        self.path = Path(path)
        self.policy = fsync
        self.interval_s = interval_ms / 1000.0
        self._header = header
        self._open(header)

    def _open(self, header: Header | None) -> None:
        new = not self.path.exists() or self.path.stat().st_size == 0
        self.start_tick = header.start_tick if new and header is not None else _start_of(self.path)
        self.frames_here = 0  # frames appended to this segment by this journal
        self._f = open(self.path, "ab", buffering=0)
        self._fd = self._f.fileno()
        self._written_tick = -1
        self.durable_tick = -1
        self._syncer: threading.Thread | None = None
        self._lock = threading.Lock()
        self.bytes_written = 0
        self.fsyncs = 0
        self._last_sync = time.monotonic()
        if new and header is not None:
            self._write(pack(header))
            os.fsync(self._fd)
            fsync_dir(self.path.parent)  # the file's name is durable too

    def rotate(self, start_tick: int) -> None:
        """Close this segment (as ``journal-START.log`` beside it) and go on in a new one whose
        frames start at ``start_tick``: at a snapshot, so that a segment older than every kept
        snapshot can go (``prune``)."""
        if self.frames_here == 0:
            return
        self._join()
        os.fsync(self._fd)
        self.durable_tick = self._written_tick
        self._f.close()
        os.replace(self.path, self.path.with_name(f"journal-{self.start_tick:09d}.log"))
        fsync_dir(self.path.parent)
        header = self._header if self._header is not None else Header(VERSION, "", "", 0, start_tick)
        self._open(msgspec.structs.replace(header, start_tick=start_tick))

    def _write(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            n = os.write(self._fd, view)
            view = view[n:]
        self.bytes_written += len(data)

    def append(self, frame: Frame) -> None:
        self._join()
        data = pack(frame)
        if STALLS:
            self._write(data[: len(data) // 2])
            stall("journal", frame.tick)
            data = data[len(data) // 2:]
        self._write(data)
        self.frames_here += 1
        self._written_tick = frame.tick
        if self.policy == "off":
            self.durable_tick = frame.tick
        elif self.policy == "tick":
            self._sync_behind(frame.tick)
        elif time.monotonic() - self._last_sync >= self.interval_s:
            self._sync_behind(frame.tick)

    def _sync_behind(self, tick: int) -> None:
        """fsync in a thread (it releases the GIL: the tick computes meanwhile)."""
        def run() -> None:
            _datasync(self._fd)  # the appended bytes and the size that reaches them
            with self._lock:
                self.durable_tick = max(self.durable_tick, tick)
                self.fsyncs += 1
        self._last_sync = time.monotonic()
        self._syncer = threading.Thread(target=run, name="journal-fsync", daemon=True)
        self._syncer.start()

    def _join(self) -> None:
        if self._syncer is not None:
            self._syncer.join()
            self._syncer = None

    def wait_durable(self, tick: int) -> None:
        if self.policy == "tick":
            self._join()

    def close(self) -> None:
        self._join()
        if not self._f.closed:
            if self.policy != "off":
                os.fsync(self._fd)
                self.durable_tick = self._written_tick
            self._f.close()


@dataclass
class Scan:
    """What a journal file holds: its header, its good frames, and where it ends."""

    path: Path
    header: Header | None = None
    frames: list[Frame] = field(default_factory=list)
    end: int = 0  # byte offset after the last good frame
    torn_at: int | None = None  # offset of a torn last frame, dropped
    torn_reason: str = ""
    size: int = 0

    @property
    def first_tick(self) -> int | None:
        return self.frames[0].tick if self.frames else None

    @property
    def last_tick(self) -> int | None:
        return self.frames[-1].tick if self.frames else None


def scan(path: Path) -> Scan:
    """Read every frame of a journal; ``StoreError`` for damage no crash explains."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as e:
        raise StoreError(f"{path}: cannot read the journal: {e.strerror or e}") from None
    out = Scan(path, size=len(data))
    pos = 0
    while pos < len(data):
        start = pos
        if len(data) - pos < _HEAD.size:
            out.torn_at, out.torn_reason = start, f"{len(data) - pos} bytes, shorter than a frame head"
            break
        length, check = _HEAD.unpack_from(data, pos)
        body = data[pos + _HEAD.size: pos + _HEAD.size + length]
        if len(body) < length:
            out.torn_at, out.torn_reason = start, f"frame of {length} bytes cut at {len(body)}"
            break
        pos += _HEAD.size + length
        if xxhash.xxh3_64_intdigest(body) != check:
            if pos >= len(data):  # the last frame, half written when the process died
                out.torn_at, out.torn_reason = start, "checksum of the last frame does not match"
                break
            raise StoreError(f"{path}: offset {start}: frame checksum does not match, and frames follow "
                             "(a damaged journal, not a torn write)")
        try:
            message = _decoder.decode(body)
        except (msgspec.DecodeError, msgspec.ValidationError) as e:
            raise StoreError(f"{path}: offset {start}: not a journal frame ({e})") from None
        if isinstance(message, Header):
            if out.header is not None or start != 0:
                raise StoreError(f"{path}: offset {start}: a second header")
            if message.version != VERSION:
                raise StoreError(f"{path}: offset 0: journal version {message.version}, this build reads {VERSION}")
            out.header = message
        else:
            if out.header is None:
                raise StoreError(f"{path}: offset {start}: a frame before the header")
            expect = out.header.start_tick if not out.frames else out.frames[-1].tick + 1
            if message.tick != expect:
                raise StoreError(f"{path}: offset {start}: frame of tick {message.tick} where tick {expect} "
                                 "was due (a gap or a repeat)")
            missing = [name for name in _REQUIRED if name not in message.actions]
            if missing:
                raise StoreError(f"{path}: offset {start}: frame of tick {message.tick} lacks columns {missing}")
            out.frames.append(message)
        out.end = pos
    if out.header is None and out.torn_at is None:
        raise StoreError(f"{path}: empty journal (no header)")
    return out


def _start_of(path: Path) -> int:
    """The first tick of a journal segment, from its header."""
    with open(path, "rb") as f:
        head = f.read(_HEAD.size)
        if len(head) < _HEAD.size:
            return 0
        length, _ = _HEAD.unpack(head)
        try:
            message = _decoder.decode(f.read(length))
        except (msgspec.DecodeError, msgspec.ValidationError):
            return 0
    return message.start_tick if isinstance(message, Header) else 0


def segments(active: Path) -> list[Path]:
    """A journal's closed segments, oldest first, then the active file."""
    active = Path(active)
    closed = sorted(active.parent.glob("journal-*.log"))
    return [*closed, active] if active.exists() else closed


def scan_all(active: Path) -> Scan:
    """Every segment of a journal read as one: their frames in tick order (``StoreError`` for a
    gap between segments, a segment of another world, or a closed one cut short); the torn
    tail, end and size are the active segment's."""
    parts = segments(active)
    if not parts:
        raise StoreError(f"{active}: no journal")
    out = Scan(Path(active))
    for seg in parts:
        s = scan(seg)
        if seg != Path(active) and s.torn_at is not None:
            raise StoreError(f"{seg}: offset {s.torn_at}: a closed segment cut short ({s.torn_reason})")
        if out.header is None:
            out.header = s.header
        elif s.header is not None and (s.header.world_digest, s.header.seed) != (out.header.world_digest,
                                                                                out.header.seed):
            raise StoreError(f"{seg}: offset 0: a segment of another world or seed")
        if out.frames and s.frames and s.frames[0].tick != out.frames[-1].tick + 1:
            raise StoreError(f"{seg}: starts at tick {s.frames[0].tick}, after tick {out.frames[-1].tick}: a gap")
        out.frames.extend(s.frames)
        out.size += s.size
        if seg == Path(active):
            out.end, out.torn_at, out.torn_reason = s.end, s.torn_at, s.torn_reason
    return out


def prune(active: Path, before_tick: int) -> None:
    """Delete the closed segments that hold only frames before ``before_tick``."""
    parts = segments(active)
    starts = [_start_of(p) for p in parts]
    for seg, nxt in zip(parts[:-1], starts[1:]):
        if nxt <= before_tick:
            seg.unlink(missing_ok=True)


def truncate(path: Path, end: int) -> None:
    """Cut a torn tail off (before appending after it)."""
    with open(path, "r+b") as f:
        f.truncate(end)
        f.flush()
        os.fsync(f.fileno())
