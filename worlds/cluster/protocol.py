"""The typed messages shards exchange, and their one encoding: msgpack bytes via msgspec.

Every message between shards is one of the ``Message`` structs below, encoded by ``encode``
and read back by ``decode``. The in-process back-end sends exactly these bytes, as the
distributed one will, so a test of one is a test of the other. Numeric columns travel as raw
little-endian bytes beside their dtype (``Column``): a ghost delta of 10k rows is one buffer
per field, not 10k msgpack numbers. ``decode`` checks every length against its dtype and row
count and raises ``ProtocolError`` with one line naming the message and field at fault; a bad
frame never reaches a world.
"""

from __future__ import annotations

from typing import Union

import msgspec
import numpy as np


class ProtocolError(ValueError):
    """A frame that is not a well-formed message of this protocol."""


class Column(msgspec.Struct, array_like=True, frozen=True):
    """Values of one component field for some rows of a ``Rows``.

    ``at``: int32 positions into ``Rows.ids`` of the rows this column carries, empty for all
    of them; ``data``: the values, ``dtype`` (a numpy dtype string such as ``<f8``) each.
    """

    component: str
    field: str
    dtype: str
    data: bytes
    at: bytes = b""


class Rows(msgspec.Struct, array_like=True, frozen=True):
    """Entities of one archetype (the component names of their table, sorted), by id, with
    whole rows or only the fields that changed (a delta)."""

    archetype: list[str]
    ids: bytes  # int64
    columns: list[Column]


class Actions(msgspec.Struct, array_like=True, frozen=True):
    """Action records as columns (``systems.actions.ACTION_FIELDS``: name -> raw bytes), and
    each one's place in the tick's sealed batch (``index``, int64), which orders them."""

    columns: dict[str, bytes]
    index: bytes = b""


class GhostDelta(msgspec.Struct, tag="ghost", array_like=True, frozen=True):
    """An owner's entities as ``dst`` must see them at the start of ``tick``: new ghosts and
    changed fields of known ones (``rows``), and ghosts that left the interest zone (``drop``)."""

    tick: int
    src: int
    dst: int
    rows: list[Rows]
    drop: bytes = b""  # int64 ids


class HandOff(msgspec.Struct, tag="handoff", array_like=True, frozen=True):
    """Phase one of a transfer: the old owner sends the whole row of every component."""

    tick: int
    src: int
    dst: int
    rows: list[Rows]


class HandOffAck(msgspec.Struct, tag="handoff_ack", array_like=True, frozen=True):
    """Phase two: the new owner holds the entities (``ids``); the old owner may drop them."""

    tick: int
    src: int
    dst: int
    ids: bytes  # int64


class RoutedActions(msgspec.Struct, tag="actions", array_like=True, frozen=True):
    """Actions for the shard that owns what they touch (``reason``: ``route`` for a client's
    actions, ``forward`` for ones that reached an owner the entity had already left)."""

    tick: int
    src: int
    dst: int
    reason: str
    actions: Actions


class Fields(msgspec.Struct, array_like=True, frozen=True):
    """New values of one component field for some entities, by id (``ids`` int64, ``data``
    ``dtype`` each): the sender need not know the archetype the receiver holds them in; rows
    of tables without ``component`` (an NPC has no cheat statistics) are left alone."""

    component: str
    field: str
    dtype: str
    ids: bytes
    data: bytes


class GroupResult(msgspec.Struct, tag="group_result", array_like=True, frozen=True):
    """What the shard that resolved a conflict group did to entities owned by ``dst``:
    their new field values (``rows`` by archetype, ``fields`` by id), the copies it removed
    (``drop``: an offer settled there), and the outcome of ``dst``'s actions in the group
    (``seqs`` of ``actors`` with ``status`` and ``effect``)."""

    tick: int
    src: int
    dst: int
    rows: list[Rows]
    drop: bytes = b""  # int64
    actors: bytes = b""  # int64
    seqs: bytes = b""  # int64
    status: bytes = b""  # int16
    effect: bytes = b""  # float64
    fields: list[Fields] = []


class Loan(msgspec.Struct, tag="loan", array_like=True, frozen=True):
    """An owner's whole rows lent to the shard resolving a conflict group that touches them,
    for this tick only (``Borrowed``)."""

    tick: int
    src: int
    dst: int
    rows: list[Rows]


class ShardHash(msgspec.Struct, tag="hash", array_like=True, frozen=True):
    """A shard's part of the state hash after ``tick`` (parts add up modulo 2**64)."""

    tick: int
    shard: int
    part: int
    owned: int
    ghosts: int


class DensityCounts(msgspec.Struct, tag="density", array_like=True, frozen=True):
    """A shard's raw density counts of ``tick`` for the shard that folds them in: living,
    connected players per cell, and (on the ticks NPCs are counted) living NPCs, float64
    each; ``npcs`` empty when not counted."""

    tick: int
    src: int
    dst: int
    players: bytes
    npcs: bytes = b""


class PlayerEvidence(msgspec.Struct, tag="evidence", array_like=True, frozen=True):
    """A shard's scored players at the end of learning tick ``tick``, for the shard that learns
    the population's baseline: their ids (int64, ascending) and CheatStats rows (float64,
    ``fields`` per row)."""

    tick: int
    src: int
    dst: int
    ids: bytes
    stats: bytes
    fields: int


class Baseline(msgspec.Struct, tag="baseline", array_like=True, frozen=True):
    """The population's baseline learned at the end of ``tick`` (``PopulationBaseline``): its
    scalars and hit rate per difficulty bin (float64 each) and its report."""

    tick: int
    src: int
    dst: int
    scalars: bytes
    hit_rate: bytes
    report: dict[str, dict[str, float | int | list[float] | None]]


class Barrier(msgspec.Struct, tag="barrier", array_like=True, frozen=True):
    """A shard reached ``step`` of ``tick`` and sent everything that step owes."""

    tick: int
    shard: int
    step: str
    sent: int = 0  # messages sent to each destination in this step, for the receiver to count


Message = Union[GhostDelta, HandOff, HandOffAck, RoutedActions, GroupResult, Loan, ShardHash, DensityCounts,
               PlayerEvidence, Baseline, Barrier]
ROUTE_REASONS = ("route", "forward", "resolve", "direct")
_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(Message)


def encode(message: Message) -> bytes:
    return _encoder.encode(message)


def decode(frame: bytes) -> Message:
    """The message in ``frame``; ``ProtocolError`` naming what is wrong otherwise."""
    try:
        message = _decoder.decode(frame)
    except (msgspec.DecodeError, msgspec.ValidationError) as e:
        raise ProtocolError(f"malformed frame ({len(frame)} bytes): {e}") from None
    _check(message)
    return message


def routed(tick: int, src: int, dst: int, reason: str, batch, idx: np.ndarray) -> RoutedActions:
    """Actions ``idx`` of ``batch`` (a ``systems.actions.ActionBatch``) for shard ``dst``, with
    their places in the batch."""
    from systems.actions import ACTION_FIELDS

    return RoutedActions(tick, src, dst, reason, Actions(
        {name: pack(getattr(batch, name)[idx], dtype) for name, dtype in ACTION_FIELDS}, pack(idx, np.int64)))


# --------------------------------------------------------------------------- numpy <-> bytes


def pack(values: np.ndarray, dtype=None) -> bytes:
    """Raw little-endian bytes of a 1-d array (cast to ``dtype`` when given)."""
    arr = np.asarray(values if dtype is None else np.asarray(values, dtype))
    return np.ascontiguousarray(arr, arr.dtype.newbyteorder("<")).tobytes()


def unpack(data: bytes, dtype, what: str = "column") -> np.ndarray:
    """The array in ``data`` (read-only view); ``ProtocolError`` if its length is not whole."""
    dt = np.dtype(dtype).newbyteorder("<")
    if len(data) % dt.itemsize:
        raise ProtocolError(f"{what}: {len(data)} bytes is not a whole number of {dt.str} values")
    return np.frombuffer(data, dt)


def ids_of(rows: Rows) -> np.ndarray:
    return unpack(rows.ids, np.int64, "rows.ids")


def column_values(rows: Rows, column: Column) -> tuple[np.ndarray, np.ndarray | None]:
    """(values, positions into ``rows.ids`` or None for all rows) of one column."""
    values = unpack(column.data, column.dtype, f"{column.component}.{column.field}")
    at = unpack(column.at, np.int32, f"{column.component}.{column.field}.at") if column.at else None
    return values, at


def _wire_dtype(dtype: str, where: str) -> np.dtype:
    """The numpy dtype a column names: a little-endian scalar number, or ``ProtocolError``."""
    try:
        dt = np.dtype(dtype)
    except (TypeError, ValueError, SyntaxError):
        raise ProtocolError(f"{where}: unknown dtype {dtype!r}") from None
    if dt.kind not in "biuf" or dt.shape != ():
        raise ProtocolError(f"{where}: dtype {dtype!r} is not a scalar number")
    if dt.byteorder == ">" or (dt.byteorder == "=" and np.little_endian is False):
        raise ProtocolError(f"{where}: dtype {dtype!r} is big-endian; the wire is little-endian")
    return dt


def _check(message: Message) -> None:
    """Lengths and dtypes agree, so a decoded message can be applied without further checks."""
    name = type(message).__name__
    for i, rows in enumerate(getattr(message, "rows", ()) or ()):
        n = ids_of(rows).shape[0]
        for col in rows.columns:
            where = f"{name}.rows[{i}].{col.component}.{col.field}"
            _wire_dtype(col.dtype, where)
            values, at = column_values(rows, col)
            want = n if at is None else at.shape[0]
            if values.shape[0] != want:
                raise ProtocolError(f"{where}: {values.shape[0]} values for {want} rows")
            if at is not None and at.size and (at.min() < 0 or at.max() >= n):
                raise ProtocolError(f"{where}: row position out of 0..{n - 1}")
    for field in ("drop", "ids", "actors", "seqs"):
        data = getattr(message, field, None)
        if isinstance(data, bytes):
            unpack(data, np.int64, f"{name}.{field}")
    if isinstance(message, GroupResult):
        for f in message.fields:
            where = f"{name}.fields.{f.component}.{f.field}"
            dt = _wire_dtype(f.dtype, where)
            if unpack(f.ids, np.int64, where).shape[0] != unpack(f.data, dt, where).shape[0]:
                raise ProtocolError(f"{where}: ids and values differ in length")
        sizes = {len(message.actors) // 8, len(message.seqs) // 8, len(message.status) // 2,
                 len(message.effect) // 8}
        unpack(message.status, np.int16, f"{name}.status")
        unpack(message.effect, np.float64, f"{name}.effect")
        if len(sizes) != 1:
            raise ProtocolError(f"{name}: actors, seqs, status and effect differ in length")
    if isinstance(message, DensityCounts):
        n = unpack(message.players, np.float64, f"{name}.players").shape[0]
        if message.npcs and unpack(message.npcs, np.float64, f"{name}.npcs").shape[0] != n:
            raise ProtocolError(f"{name}: players and npcs differ in length")
    if isinstance(message, PlayerEvidence):
        n = unpack(message.ids, np.int64, f"{name}.ids").shape[0]
        if message.fields <= 0 or unpack(message.stats, np.float64, f"{name}.stats").shape[0] != n * message.fields:
            raise ProtocolError(f"{name}: stats is not {n} rows of {message.fields} fields")
    if isinstance(message, Baseline):
        unpack(message.scalars, np.float64, f"{name}.scalars")
        unpack(message.hit_rate, np.float64, f"{name}.hit_rate")
    if isinstance(message, ShardHash) and not 0 <= message.part < 2**64:
        raise ProtocolError(f"{name}.part: {message.part} is not a uint64")
    if isinstance(message, RoutedActions) and message.reason not in ROUTE_REASONS:
        raise ProtocolError(f"{name}.reason: expected one of {ROUTE_REASONS}, got {message.reason!r}")
    if isinstance(message, RoutedActions):
        from systems.actions import ACTION_FIELDS

        cols = message.actions.columns
        missing = [f for f, _ in ACTION_FIELDS if f not in cols]
        if missing:
            raise ProtocolError(f"{name}.actions: missing columns {missing}")
        lengths = {unpack(cols[f], dt, f"{name}.actions.{f}").shape[0] for f, dt in ACTION_FIELDS}
        if message.actions.index:
            lengths.add(unpack(message.actions.index, np.int64, f"{name}.actions.index").shape[0])
        if len(lengths) != 1:
            raise ProtocolError(f"{name}.actions: columns differ in length")
