"""Entity rows between a shard's world and the protocol: whole rows for hand-offs and new
ghosts, changed fields only for the ghosts a neighbour already holds.

``encode_rows`` reads the rows of some entities, grouped by table, as ``protocol.Rows``;
``write_rows`` puts rows into another world, adopting the entities it does not hold yet (with
the same 64-bit ids) and overwriting the fields of those it does. ``ShardEncoder`` remembers
the values a shard last sent of each entity, and sends each destination only the fields and
rows that differ since (a float compares by its bits: -0.0 and a NaN payload are changes too).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import numpy as np

from ecs import Component, World
from systems.components import Ghost
from worlds.cluster.protocol import Column, ProtocolError, Rows, column_values, ids_of, pack


def catalog(components: Iterable[Component]) -> dict[str, Component]:
    """Components by name, for decoding rows of tables a world has not built yet."""
    return {c.name: c for c in components}


def _grouped(world: World, ids: np.ndarray) -> list[tuple[int, np.ndarray, np.ndarray]]:
    """(table, ids, rows) of each table holding some of ``ids`` (every id must be alive)."""
    ids = np.asarray(ids, np.int64)
    table, row = world.locate_many(ids)
    if (table < 0).any():
        raise KeyError(f"entity {int(ids[table < 0][0]):#x} is not alive here")
    out = []
    for t in np.unique(table).tolist():
        sel = np.flatnonzero(table == t)
        out.append((t, ids[sel], row[sel]))
    return out


def _fields(table, skip: frozenset[str]) -> list[tuple[Component, str]]:
    return [(c, f) for c in table.components if c.name not in skip for f in c.fields]


def encode_rows(world: World, ids: np.ndarray, skip: Iterable[Component] = (Ghost,)) -> list[Rows]:
    """Whole rows (every field of every component but ``skip``) of ``ids``, by table."""
    names = frozenset(c.name for c in skip)
    return [_whole(world.tables[t], names, tids, rows) for t, tids, rows in _grouped(world, ids)]


def _whole(table, skip: frozenset[str], ids: np.ndarray, rows: np.ndarray) -> Rows:
    """The whole rows ``rows`` of one table (entities ``ids``), ``skip``'s components left out."""
    cols = [Column(c.name, f, table.column(c, f).dtype.str, pack(table.column(c, f)[rows]))
            for c, f in _fields(table, skip)]
    return Rows(sorted(c.name for c in table.components if c.name not in skip), pack(ids), cols)


def _values(rows: Rows, comps: Mapping[str, Component], new: np.ndarray) -> dict[Component, dict]:
    """Field values of the rows at positions ``new`` (entities the world does not hold yet),
    for ``World.adopt``: every field must be given for each of them (a delta's columns may
    carry a new entity beside changed fields of known ones, through ``at``)."""
    values: dict[Component, dict] = {}
    for col in rows.columns:
        v, at = column_values(rows, col)
        if at is None:
            picked = v[new]
        else:
            where = np.full(ids_of(rows).shape[0], -1, np.int64)
            where[at] = np.arange(at.shape[0])
            if (where[new] < 0).any():
                raise ProtocolError(f"{col.component}.{col.field}: a new entity needs its whole row")
            picked = v[where[new]]
        values.setdefault(comps[col.component], {})[col.field] = picked
    missing = [f"{c}.{f}" for c in rows.archetype for f in comps[c].fields
               if f not in values.get(comps[c], {})]
    if missing and new.size:
        raise ProtocolError(f"a new entity needs its whole row; missing {missing[:3]}")
    return values


def write_rows(world: World, rows_list: Iterable[Rows], comps: Mapping[str, Component],
               extra: Mapping[Component, Mapping[str, object]] | None = None) -> np.ndarray:
    """Put rows into ``world``; returns the ids it adopted. New entities are adopted with their
    archetype plus the components of ``extra`` (a ghost's ``Ghost`` tag); known ones have the
    given fields overwritten in place."""
    extra = dict(extra or {})
    adopted = []
    for rows in rows_list:
        unknown = [c for c in rows.archetype if c not in comps]
        if unknown:
            raise ProtocolError(f"rows of unknown components {unknown}")
        ids = ids_of(rows)
        table, row = world.locate_many(ids)
        want = frozenset(rows.archetype) | {c.name for c in extra}
        moved = [t for t in np.unique(table[table >= 0]).tolist() if world.tables[t].key != want]
        if moved:  # the entity gained or lost a component on its owner: placed again, whole
            again = np.isin(table, moved)
            _values(rows, comps, np.flatnonzero(again))  # refuses a partial row before anything moves
            world.hand_off_many(ids[again])
            table, row = world.locate_many(ids)
        new = np.flatnonzero(table < 0)
        if new.size:
            archetype = tuple(comps[c] for c in rows.archetype) + tuple(extra)
            values = _values(rows, comps, new)
            for c, v in extra.items():
                values[c] = {f: np.full(new.size, x) for f, x in v.items()}
            world.adopt(ids[new], archetype, values)
            adopted.append(ids[new])
        old = np.flatnonzero(table >= 0)
        if old.size == 0:
            continue
        held = np.unique(table[old]).tolist()
        if len(held) == 1 and old.size == ids.shape[0]:  # the usual case: known rows of one table
            target = world.tables[held[0]]
            for col in rows.columns:
                v, at = column_values(rows, col)
                target.column(comps[col.component], col.field)[row if at is None else row[at]] = v
            continue
        for col in rows.columns:
            v, at = column_values(rows, col)
            pos = np.arange(ids.shape[0]) if at is None else at
            keep = table[pos] >= 0
            pos, v = pos[keep], v[keep]
            comp = comps[col.component]
            for t in np.unique(table[pos]).tolist():
                sel = table[pos] == t
                world.tables[t].column(comp, col.field)[row[pos[sel]]] = v[sel]
    return np.concatenate(adopted) if adopted else np.empty(0, np.int64)


class ShardEncoder:
    """What a shard's neighbours last received of its entities, to send each only what changed.

    ``deltas(world, interest, components)``: for each destination ``d``, rows for the ids of
    ``interest[d]`` (sorted, distinct; whole rows for entities new to it or whose archetype changed; otherwise
    the fields of ``components``, all when None, whose values changed), and the ids it held that
    are no longer in its interest (to drop). Every refresh goes to all destinations at once, so
    what each holds of an entity is what was last sent to any of them: values are compared once,
    over the union of the interests, and each destination takes its rows of the result. They
    are compared a block at a time (a component's fields of one dtype, as the table keeps them),
    by bits: -0.0 and a NaN payload are changes too.
    """

    def __init__(self, destinations: Iterable[int], skip: Iterable[Component] = (Ghost,)) -> None:
        self._skip = frozenset(c.name for c in skip)
        # archetype -> (sorted ids, {(component, dtype): (fields, values (k, m))}), over the union
        self._sent: dict[frozenset[str], tuple[np.ndarray, dict]] = {}
        self.holds: dict[int, np.ndarray] = {d: np.empty(0, np.int64) for d in destinations}
        self.changed: dict[int, int] = dict.fromkeys(self.holds, 0)  # rows held there that the last delta changed

    def forget(self, d: int, ids: np.ndarray) -> None:
        """The next delta to ``d`` of those ids is whole rows again."""
        self.holds[d] = np.setdiff1d(self.holds[d], ids)

    def deltas(self, world: World, interest: Mapping[int, np.ndarray],
               components: Iterable[Component] | None = None) -> dict[int, tuple[list[Rows], np.ndarray]]:
        only = None if components is None else frozenset(c.name for c in components)
        want = {}
        for d in self.holds:
            ids = np.asarray(interest.get(d, ()), np.int64)
            want[d] = ids[world.locate_many(ids)[0] >= 0] if ids.size else ids  # died or left since drawn
        union = np.unique(np.concatenate(list(want.values()))) if want else np.empty(0, np.int64)
        out: dict[int, list[Rows]] = {d: [] for d in want}
        changed = dict.fromkeys(want, 0)
        sent_now = {}
        for t, tids, rows in _grouped(world, union):  # (ids sorted: they come from a sorted union)
            table = world.tables[t]
            key = frozenset(c.name for c in table.components) - self._skip
            prev_ids, prev = self._sent.get(key, (np.empty(0, np.int64), {}))
            same = prev_ids.shape == tids.shape and np.array_equal(prev_ids, tids)  # the usual case
            if same:
                pos, known = slice(None), np.ones(tids.shape[0], np.bool_)
            else:
                pos = np.searchsorted(prev_ids, tids).clip(0, max(prev_ids.shape[0] - 1, 0))
                known = prev_ids[pos] == tids if prev_ids.size else np.zeros(tids.shape[0], np.bool_)
            any_known, any_fresh = bool(known.any()), not bool(known.all())
            # Each destination's rows here, and which of them it holds as this archetype already.
            mine = {}
            for d, w in want.items():
                at = np.searchsorted(tids, w).clip(0, tids.shape[0] - 1)
                at = at[tids[at] == w]
                if at.size:
                    mine[d] = (at, known[at] & _among(tids[at], self.holds[d]))
            moved, now = [], {}  # moved: (component, fields, values, changed (k, m)) of blocks that changed
            for c, fields, block in _blocks(table, self._skip):
                bkey = (c.name, block.dtype.str)
                compare = only is None or c.name in only
                if not compare and not any_fresh:  # carried over, not read
                    now[bkey] = prev[bkey] if same else (fields, prev[bkey][1][:, pos])
                    continue
                cur = block[:, rows]
                if any_known:
                    old = prev[bkey][1] if same else prev[bkey][1][:, pos]
                    if compare:
                        diff = _bits(cur) != _bits(old)
                        diff[:, ~known] = False  # new here: whole rows, below
                        if diff.any():
                            moved.append((c, fields, cur, diff))
                    else:
                        cur[:, known] = old[:, known]
                now[bkey] = (fields, cur)
            sent_now[key] = (tids, now)
            archetype = sorted(key)
            for d, (at, held) in mine.items():
                if moved and held.any():
                    rows_d = at[held]
                    cols, touched = [], np.zeros(rows_d.shape[0], np.bool_)
                    for c, fields, cur, diff in moved:
                        sub = diff[:, rows_d]
                        for j in np.flatnonzero(sub.any(axis=1)).tolist():
                            if sub[j].all():
                                cols.append(Column(c.name, fields[j], cur.dtype.str, pack(cur[j, rows_d])))
                                touched[:] = True
                            else:
                                hit = np.flatnonzero(sub[j])
                                cols.append(Column(c.name, fields[j], cur.dtype.str, pack(cur[j, rows_d[hit]]),
                                                   pack(hit, np.int32)))
                                touched[hit] = True
                    if cols:  # rows with nothing changed are left out of the message
                        changed[d] += int(touched.sum())
                        out[d].append(_only(archetype, tids[rows_d], cols, touched))
                fresh = at[~held]
                if fresh.size:
                    out[d].append(_whole(table, self._skip, tids[fresh], rows[fresh]))
        self._sent = sent_now
        result = {}
        for d, w in want.items():
            result[d] = (out[d], np.setdiff1d(self.holds[d], w))
            self.holds[d] = w
        self.changed = changed
        return result


class DeltaEncoder(ShardEncoder):
    """A ``ShardEncoder`` with one destination: ``delta(world, ids, components)`` gives its
    rows and drops, ``held()`` what it holds."""

    def __init__(self, skip: Iterable[Component] = (Ghost,)) -> None:
        super().__init__((0,), skip)

    @property
    def empty(self) -> bool:
        return not self.holds[0].size

    def held(self) -> np.ndarray:
        return self.holds[0]

    def forget(self, ids: np.ndarray) -> None:
        super().forget(0, ids)

    def delta(self, world: World, ids: np.ndarray,
              components: Iterable[Component] | None = None) -> tuple[list[Rows], np.ndarray]:
        return self.deltas(world, {0: np.unique(np.asarray(ids, np.int64))}, components)[0]


def _among(ids: np.ndarray, sorted_ids: np.ndarray) -> np.ndarray:
    """(n,) bool: each of ``ids`` is in ``sorted_ids`` (sorted, distinct)."""
    if sorted_ids.size == 0:
        return np.zeros(ids.shape[0], np.bool_)
    at = np.searchsorted(sorted_ids, ids).clip(0, sorted_ids.shape[0] - 1)
    return sorted_ids[at] == ids


def _blocks(table, skip: frozenset[str]) -> list[tuple[Component, tuple[str, ...], np.ndarray]]:
    """(component, fields, (k, capacity) block) of each block of the table, derived once per
    layout; ``skip``'s components left out."""
    return table.plan(("delta_blocks", skip), lambda t: [
        (c, fields, t.block(c, fields[0])[0]) for c in t.components if c.name not in skip
        for fields in _by_dtype(c)])


def _by_dtype(c: Component) -> list[tuple[str, ...]]:
    groups: dict[str, list[str]] = {}
    for f in c.fields:
        groups.setdefault(c.dtype[f].str, []).append(f)
    return [tuple(v) for v in groups.values()]


def _bits(v: np.ndarray) -> np.ndarray:
    """Floats as their bit patterns (so -0.0 differs from 0.0 and a NaN equals itself)."""
    return v.view(f"u{v.dtype.itemsize}") if v.dtype.kind == "f" else v


def _only(archetype: list[str], ids: np.ndarray, cols: list[Column], touched: np.ndarray) -> Rows:
    """Rows restricted to the ``touched`` positions (columns' ``at`` renumbered)."""
    if touched.all():
        return Rows(archetype, pack(ids), cols)
    keep = np.flatnonzero(touched)
    renum = np.full(ids.shape[0], -1, np.int64)
    renum[keep] = np.arange(keep.size)
    out = []
    for col in cols:
        at = np.arange(ids.shape[0]) if not col.at else np.frombuffer(col.at, "<i4")
        new_at = renum[at]
        whole = new_at.size == keep.size
        out.append(Column(col.component, col.field, col.dtype, col.data, b"" if whole else pack(new_at, np.int32)))
    return Rows(archetype, pack(ids[keep]), out)
