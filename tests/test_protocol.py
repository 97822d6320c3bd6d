"""The shard protocol: every message survives encode -> decode unchanged, and a frame that is
not a well-formed message is refused by ``decode`` with a ``ProtocolError`` naming the fault."""

import msgspec
import numpy as np
import pytest

from systems.actions import ACTION_FIELDS
from worlds.cluster.protocol import (
    Actions,
    Barrier,
    Column,
    DensityCounts,
    Fields,
    GhostDelta,
    GroupResult,
    HandOff,
    HandOffAck,
    Loan,
    ProtocolError,
    RoutedActions,
    Rows,
    ShardHash,
    column_values,
    decode,
    encode,
    ids_of,
    pack,
    unpack,
)


def rows(n=3, columns=None, ids=None):
    ids = np.arange(1, n + 1, dtype=np.int64) * 0x1_0000_0001 if ids is None else ids
    if columns is None:
        columns = [
            Column("Position", "x", "<f8", pack(np.linspace(-1.5, 2.5, n))),
            Column("Health", "dead", "|u1", pack(np.array([1, 0, 1][:n], np.uint8))),
            Column("Health", "hp", "<f8", pack(np.array([7.0]), np.float64), pack(np.array([n - 1]), np.int32)),
        ]
    return Rows(["Health", "Position"], pack(ids, np.int64), columns)


def actions(n=2, drop=None, short=None):
    cols = {}
    for name, dt in ACTION_FIELDS:
        if name == drop:
            continue
        cols[name] = pack(np.arange(n - (name == short)), dt)
    return Actions(cols, pack(np.arange(n), np.int64))


def group_result(n=2, **lengths):
    sizes = {"actors": n, "seqs": n, "status": n, "effect": n, **lengths}
    return GroupResult(
        5, 1, 0, [rows()], drop=pack(np.array([9]), np.int64),
        actors=pack(np.arange(sizes["actors"]), np.int64), seqs=pack(np.arange(sizes["seqs"]), np.int64),
        status=pack(np.arange(sizes["status"]), np.int16), effect=pack(np.arange(sizes["effect"]) * 0.5, np.float64),
    )


MESSAGES = [
    GhostDelta(12, 0, 3, [rows(), rows(1, [])], drop=pack(np.array([4, -5]), np.int64)),
    GhostDelta(0, 1, 0, []),
    HandOff(7, 2, 1, [rows(2)]),
    HandOffAck(7, 1, 2, pack(np.array([-(2**63), 2**63 - 1]), np.int64)),
    RoutedActions(3, 0, 1, "forward", actions()),
    group_result(),
    ShardHash(99, 4, 2**64 - 1, 10, 2),
    ShardHash(1, 0, 2**64 - 3, 0, 0),
    DensityCounts(20, 3, 0, pack(np.array([0.0, 2.0, 5.0])), pack(np.array([1.0, 0.0, 9.0]))),
    DensityCounts(21, 1, 0, pack(np.array([4.0]))),
    GroupResult(6, 2, 1, [], fields=[Fields("CheatStats", "hurt_ms", "<f8", pack(np.array([7, 9]), np.int64),
                                            pack(np.array([1.5, 2.5])))]),
    Loan(6, 1, 3, [rows(2)]),
    RoutedActions(6, -1, 2, "resolve", actions()),
    Barrier(8, 2, "replicate", sent=5),
    Barrier(8, 2, "hash"),
]


@pytest.mark.parametrize("message", MESSAGES, ids=lambda m: type(m).__name__)
def test_every_message_round_trips_to_an_equal_struct(message):
    frame = encode(message)
    assert isinstance(frame, bytes)
    back = decode(frame)
    assert type(back) is type(message)
    assert back == message
    assert encode(back) == frame


def test_hash_part_near_two_to_the_64_survives_exactly():
    part = 2**64 - 1 - 12345
    back = decode(encode(ShardHash(1, 2, part, 3, 4)))
    assert back.part == part and type(back.part) is int


def test_decoded_rows_give_back_the_values_sent():
    back = decode(encode(HandOff(1, 0, 1, [rows()])))
    r = back.rows[0]
    assert ids_of(r).tolist() == [0x1_0000_0001, 0x2_0000_0002, 0x3_0000_0003]
    x, at = column_values(r, r.columns[0])
    assert at is None and x.tolist() == [-1.5, 0.5, 2.5]
    hp, at = column_values(r, r.columns[2])
    assert at.tolist() == [2] and hp.tolist() == [7.0]


# --------------------------------------------------------------------------- refusals


def refused(message_or_frame, *words):
    frame = message_or_frame if isinstance(message_or_frame, bytes) else encode(message_or_frame)
    with pytest.raises(ProtocolError) as info:
        decode(frame)
    assert isinstance(info.value, ValueError)
    text = str(info.value)
    for w in words:
        assert w in text, text
    return text


def test_random_garbage_is_a_malformed_frame():
    rng = np.random.default_rng(7)
    for size in (0, 1, 5, 64, 300):
        refused(rng.integers(0, 256, size, dtype=np.uint8).tobytes(), "malformed frame", f"({size} bytes)")


def test_a_frame_of_another_msgpack_shape_is_refused():
    refused(msgspec.msgpack.encode({"tick": 1, "src": 0}), "malformed frame")
    refused(msgspec.msgpack.encode(["nosuchtag", 1, 2]), "malformed frame")
    refused(msgspec.msgpack.encode(["hash", 1, 2, "three", 4, 5]), "malformed frame")  # part is not an int
    refused(msgspec.msgpack.encode(["barrier", 1, 2]), "malformed frame")  # no step
    refused(msgspec.msgpack.encode(["ghost", 1, 2, 3, [["Position"], b"", []]]), "malformed frame")  # rows not a list
    refused(encode(Barrier(1, 2, "x"))[:-1], "malformed frame")  # truncated


def test_column_bytes_not_a_multiple_of_its_itemsize():
    bad = Column("Position", "x", "<f8", b"\0" * 20)
    refused(HandOff(1, 0, 1, [rows(columns=[bad])]), "Position.x", "20 bytes", "<f8")


def test_ids_and_positions_must_be_whole_too():
    refused(HandOff(1, 0, 1, [Rows(["Position"], b"\0" * 12, [])]), "rows.ids", "12 bytes")
    bad = Column("Position", "x", "<f8", pack(np.zeros(1)), b"\0" * 6)
    refused(HandOff(1, 0, 1, [rows(columns=[bad])]), "Position.x.at", "6 bytes")
    refused(HandOffAck(1, 0, 1, b"\0" * 9), "HandOffAck.ids", "9 bytes")
    refused(GhostDelta(1, 0, 1, [], drop=b"\0" * 3), "GhostDelta.drop")


def test_column_with_fewer_values_than_rows():
    short = Column("Position", "x", "<f8", pack(np.zeros(2)))
    text = refused(GhostDelta(1, 0, 1, [rows(), rows(columns=[short])]), "GhostDelta.rows[1].Position.x")
    assert "2 values for 3 rows" in text
    # With positions: one value per position.
    partial = Column("Position", "y", "<f8", pack(np.zeros(1)), pack(np.array([0, 2]), np.int32))
    refused(HandOff(1, 0, 1, [rows(columns=[partial])]), "HandOff.rows[0].Position.y", "1 values for 2 rows")


@pytest.mark.parametrize("at", [[3], [-1], [0, 2, 99]])
def test_column_position_out_of_range(at):
    col = Column("Health", "hp", "<f8", pack(np.zeros(len(at))), pack(np.array(at), np.int32))
    refused(GhostDelta(1, 0, 1, [rows(columns=[col])]), "Health.hp", "row position out of 0..2")


@pytest.mark.parametrize("dtype, words", [
    ("<U4", ("is not a scalar number",)), ("|O", ("is not a scalar number",)), ("<M8[s]", ("not a scalar",)),
    ("|V8", ("not a scalar",)), ("(2,)<f8", ("not a scalar",)), ("<c16", ("not a scalar",)),
    ("zz", ("unknown dtype 'zz'",)), ("", ("unknown dtype",)),
])
def test_non_numeric_or_unknown_dtypes(dtype, words):
    col = Column("Player", "team", dtype, b"\0" * 48)
    refused(HandOff(1, 0, 1, [rows(columns=[col])]), "HandOff.rows[0].Player.team", *words)


def test_a_dtype_numpy_cannot_parse_is_a_protocol_error_too():
    refused(HandOff(1, 0, 1, [rows(columns=[Column("Player", "team", "(2,", b"")])]), "unknown dtype")


def test_a_big_endian_column_is_refused_rather_than_misread():
    col = Column("Position", "x", ">f8", np.arange(3, dtype=">f8").tobytes())
    refused(HandOff(1, 0, 1, [rows(columns=[col])]), "big-endian")


def test_a_hash_part_outside_uint64_and_an_unknown_routing_reason_are_refused():
    refused(ShardHash(1, 0, -1, 0, 0), "ShardHash.part")
    routed = RoutedActions(1, 0, 1, "route", actions())
    refused(msgspec.structs.replace(routed, reason="gossip"), "reason")


def test_fields_by_id_must_name_a_wire_dtype_and_one_value_per_id():
    ids = pack(np.array([7, 9]), np.int64)
    refused(GroupResult(1, 0, 1, [], fields=[Fields("CheatStats", "hurt_ms", "<f8", ids, pack(np.ones(3)))]),
            "GroupResult.fields.CheatStats.hurt_ms", "differ in length")
    refused(GroupResult(1, 0, 1, [], fields=[Fields("CheatStats", "hurt_ms", ">f8", ids, pack(np.ones(2)))]),
            "big-endian")
    refused(GroupResult(1, 0, 1, [], fields=[Fields("CheatStats", "hurt_ms", "U4", ids, b"")]), "not a scalar number")


@pytest.mark.parametrize("lengths", [{"actors": 3}, {"seqs": 1}, {"status": 0}, {"effect": 4}])
def test_group_result_lengths_must_agree(lengths):
    refused(group_result(2, **lengths), "GroupResult", "actors, seqs, status and effect differ in length")


def test_density_counts_must_be_whole_floats_of_one_length():
    refused(DensityCounts(4, 1, 0, b"\0" * 12), "DensityCounts.players")
    refused(DensityCounts(4, 1, 0, pack(np.zeros(3)), pack(np.zeros(2))), "DensityCounts", "differ in length")


def test_group_result_status_must_be_whole_int16():
    msg = group_result(2)
    bad = GroupResult(msg.tick, msg.src, msg.dst, msg.rows, msg.drop, msg.actors, msg.seqs, b"\0" * 3, msg.effect)
    refused(bad, "GroupResult.status")


def test_routed_actions_missing_a_column_names_it():
    for name, _ in (ACTION_FIELDS[0], ACTION_FIELDS[-1]):
        text = refused(RoutedActions(1, 0, 1, "route", actions(drop=name)), "RoutedActions.actions", "missing")
        assert repr(name) in text
        assert all(repr(other) not in text for other, _ in ACTION_FIELDS if other != name)


def test_routed_actions_columns_of_different_lengths():
    refused(RoutedActions(1, 0, 1, "route", actions(3, short="kind")), "RoutedActions.actions",
            "columns differ in length")
    ok = actions(3)
    bad_index = Actions(ok.columns, pack(np.arange(2), np.int64))
    refused(RoutedActions(1, 0, 1, "route", bad_index), "columns differ in length")
    torn = dict(ok.columns, seq=ok.columns["seq"][:-1])
    refused(RoutedActions(1, 0, 1, "route", Actions(torn)), "RoutedActions.actions.seq")


# --------------------------------------------------------------------------- pack / unpack


@pytest.mark.parametrize("values", [
    np.array([0, 1, -1, 2**62, -(2**63), 2**63 - 1], np.int64),
    np.array([0.0, -0.0, 1.5, np.inf, -np.inf, np.nan, 5e-324, 1.7976931348623157e308]),
    np.array([True, False, False, True]),
    np.empty(0, np.int64),
])
def test_pack_unpack_round_trip(values):
    data = pack(values)
    assert len(data) == values.size * values.dtype.itemsize
    back = unpack(data, values.dtype)
    assert back.dtype == values.dtype.newbyteorder("<")
    assert np.array_equal(back.view(np.uint8), values.view(np.uint8))  # bit for bit, NaN and -0.0 included


def test_pack_is_little_endian_and_casts():
    assert pack(np.array([1], ">i8")) == (1).to_bytes(8, "little")
    assert pack([1, 2], np.int16) == b"\x01\x00\x02\x00"
    assert unpack(pack(np.arange(0.0, 3.0)[::-1]), "<f8").tolist() == [2.0, 1.0, 0.0]  # non-contiguous in
    with pytest.raises(ProtocolError, match="effect: 7 bytes is not a whole number of <f8 values"):
        unpack(b"\0" * 7, np.float64, "effect")
