"""Entity rows between a shard's world and the protocol: whole rows for hand-offs and new
ghosts, changed fields only for the ghosts a neighbour already holds.

``encode_rows`` reads the rows of some entities, grouped by table, as ``protocol.Rows``;
``write_rows`` puts rows into another world, adopting the entities it does not hold yet (with
the same 64-bit ids) and overwriting the fields of those it does. ``DeltaEncoder`` remembers,
per destination, the values it last sent of each entity, and sends only the fields and rows
that differ since (a float compares by its bits: -0.0 and a NaN payload are changes too).
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
    out = []
    for t, tids, rows in _grouped(world, ids):
        table = world.tables[t]
        cols = [Column(c.name, f, table.column(c, f).dtype.str, pack(table.column(c, f)[rows]))
                for c, f in _fields(table, names)]
        out.append(Rows(sorted(c.name for c in table.components if c.name not in names), pack(tids), cols))
    return out


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
            for e in ids[again].tolist():
                world.hand_off(e)
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


class DeltaEncoder:
    """What one destination last received of each entity, to send it only what changed.

    ``delta(world, ids, components)``: rows for ``ids`` (whole rows for entities new to the
    destination or whose archetype changed; otherwise the fields of ``components``, all when
    None, whose values changed) and the ids it held that are no longer in ``ids`` (to drop).
    ``forget`` makes the next delta of those ids whole rows again. Values are compared a
    block at a time (a component's fields of one dtype, as the table keeps them), by bits.
    """

    def __init__(self, skip: Iterable[Component] = (Ghost,)) -> None:
        self._skip = frozenset(c.name for c in skip)
        # archetype -> (sorted ids, {(component, dtype): (fields, values) with values (k, m)})
        self._sent: dict[frozenset[str], tuple[np.ndarray, dict]] = {}
        self.changed = 0

    @property
    def empty(self) -> bool:
        """Whether the destination holds nothing of ours."""
        return not any(ids.size for ids, _ in self._sent.values())

    def held(self) -> np.ndarray:
        parts = [ids for ids, _ in self._sent.values()]
        return np.sort(np.concatenate(parts)) if parts else np.empty(0, np.int64)

    def forget(self, ids: np.ndarray) -> None:
        ids = np.asarray(ids, np.int64)
        for key, (sent, blocks) in list(self._sent.items()):
            keep = ~np.isin(sent, ids)
            self._sent[key] = (sent[keep], {b: (f, v[:, keep]) for b, (f, v) in blocks.items()})

    def delta(self, world: World, ids: np.ndarray,
              components: Iterable[Component] | None = None) -> tuple[list[Rows], np.ndarray]:
        ids = np.asarray(ids, np.int64)
        only = None if components is None else frozenset(c.name for c in components)
        before = self.held()
        self.changed = 0  # rows already held there that this delta changes
        out, sent_now = [], {}
        for t, tids, rows in _grouped(world, ids):
            table = world.tables[t]
            key = frozenset(c.name for c in table.components) - self._skip
            order = np.argsort(tids)
            tids, rows = tids[order], rows[order]
            prev_ids, prev = self._sent.get(key, (np.empty(0, np.int64), {}))
            same = prev_ids.shape == tids.shape and np.array_equal(prev_ids, tids)  # the usual case
            if same:
                pos, known = slice(None), np.ones(tids.shape[0], np.bool_)
            else:
                pos = np.searchsorted(prev_ids, tids).clip(0, max(prev_ids.shape[0] - 1, 0))
                known = prev_ids[pos] == tids if prev_ids.size else np.zeros(tids.shape[0], np.bool_)
            any_known, any_fresh = bool(known.any()), not bool(known.all())
            cols, now = [], {}
            for c, fields, block in _blocks(table, self._skip):
                bkey = (c.name, block.dtype.str)
                compare = only is None or c.name in only
                if not compare and not any_fresh:  # carried over, not read
                    now[bkey] = prev[bkey] if same else (fields, prev[bkey][1][:, pos])
                    continue
                cur = block[:, rows]
                if any_known:
                    old = prev[bkey][1][:, pos]
                    if compare:
                        diff = _bits(cur) != _bits(old)
                    else:
                        cur[:, known] = old[:, known]
                        diff = np.zeros(cur.shape, np.bool_)
                    diff[:, ~known] = True
                else:
                    diff = np.ones(cur.shape, np.bool_)
                now[bkey] = (fields, cur)
                for j in np.flatnonzero(diff.any(axis=1)).tolist():
                    changed = diff[j]
                    if changed.all():
                        cols.append(Column(c.name, fields[j], cur.dtype.str, pack(cur[j])))
                    else:
                        at = np.flatnonzero(changed)
                        cols.append(Column(c.name, fields[j], cur.dtype.str, pack(cur[j, at]), pack(at, np.int32)))
            sent_now[key] = (tids, now)
            if cols:
                # Rows with nothing changed are left out of the message.
                touched = np.zeros(tids.shape[0], np.bool_)
                for col in cols:
                    touched[np.arange(tids.shape[0]) if not col.at else np.frombuffer(col.at, "<i4")] = True
                self.changed += int((touched & known).sum())
                out.append(_only(sorted(key), tids, cols, touched))
        self._sent = sent_now
        drop = np.setdiff1d(before, ids)
        return out, drop


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
