"""Queries: which tables hold all of some components (and none of others).

A query hands kernels the tables themselves, so each kernel runs over contiguous columns with
no gather. The match is on the table's component set, so it is the same whichever component
is rarest; the list of matching tables is cached and refreshed only when a new table appears.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import numpy as np

from ecs.component import Component
from ecs.table import Table

if TYPE_CHECKING:
    from ecs.world import World


class Query:
    def __init__(self, world: World, with_: tuple[Component, ...], without: tuple[Component, ...] = ()) -> None:
        if not with_:
            raise ValueError("a query needs at least one component")
        self._world = world
        self.with_ = with_
        self.without = without
        self._seen_version = -1
        self._tables: list[Table] = []

    def tables(self) -> list[Table]:
        """Every matching table, empty ones included, in creation order (deterministic)."""
        w = self._world
        if self._seen_version != w.structure_version:
            need = {c.name for c in self.with_}
            avoid = {c.name for c in self.without}
            self._tables = [t for t in w.tables if need <= t.key and not (avoid & t.key)]
            self._seen_version = w.structure_version
        return self._tables

    def __iter__(self) -> Iterator[Table]:
        """The matching tables that hold at least one entity."""
        return (t for t in self.tables() if t.n)

    def count(self) -> int:
        return sum(t.n for t in self.tables())

    def ids(self) -> np.ndarray:
        return self.concat(None, None)

    def concat(self, component: Component | None, field: str | None) -> np.ndarray:
        """One field across all matching tables: a view when one table matches, else a copy."""
        parts = [t.ids if component is None else t.column(component, field) for t in self.tables()]
        if len(parts) == 1:
            return parts[0]
        if not parts:
            dtype = np.int64 if component is None else component.dtype[field]
            return np.empty(0, dtype)
        return np.concatenate(parts)
