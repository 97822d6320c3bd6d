"""Component schemas: a name, a numpy dtype of named fields, defaults and merge policies.

A component is declared once, as data, and every table that holds it stores one contiguous
column per field (struct of arrays). The merge policy of each field says how simultaneous
writes to it from one tick's actions combine (see the conflict-merge system); it is part of
the schema so that every place that applies actions agrees on it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence

import numpy as np

MERGE_POLICIES = ("last_writer", "additive", "min", "max", "first_claim")


def stable_hash64(text: str) -> int:
    """A process-independent 64-bit hash of a string (Python's ``hash`` is salted per run)."""
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "little")


class Component:
    """A component type. Instances are compared by identity and hashed by name.

    >>> Position = Component("Position", [("x", "f8"), ("y", "f8")])
    """

    __slots__ = ("name", "dtype", "fields", "defaults", "merge", "salts", "hashed", "row_major", "_hash")

    def __init__(
        self,
        name: str,
        fields: np.dtype | Sequence[tuple[str, str | np.dtype]],
        defaults: Mapping[str, object] | None = None,
        merge: Mapping[str, str] | None = None,
        hashed: bool = True,
        row_major: bool = False,
    ) -> None:
        """``hashed=False`` keeps a component out of the state hash: for bookkeeping derived from
        the logical state that depends on how the world is laid out (which region or shard holds
        an entity), which must not make one layout's hash differ from another's.

        ``row_major=True`` stores an entity's fields side by side (its columns are strided
        views): for wide per-entity records that are read and written whole for a few
        entities at a time, such as the anomaly score's statistics."""
        dtype = np.dtype(fields) if not isinstance(fields, np.dtype) else fields
        if not dtype.names:  # no fields at all: its holders would be invisible to the state hash
            raise TypeError(f"component {name}: dtype must have named fields (use tag() for a marker)")
        for f in dtype.names:
            if dtype[f].shape != () or dtype[f].kind not in "biuf":
                raise TypeError(f"component {name}.{f}: fields must be scalar bool, int or float")
        self.name = name
        self.dtype = dtype
        self.fields: tuple[str, ...] = dtype.names
        defaults = dict(defaults or {})
        unknown = set(defaults) - set(self.fields)
        if unknown:
            raise ValueError(f"component {name}: defaults for unknown fields {sorted(unknown)}")
        self.defaults = {f: dtype[f].type(defaults.get(f, 0)) for f in self.fields}
        merge = dict(merge or {})
        for f, policy in merge.items():
            if f not in self.fields:
                raise ValueError(f"component {name}: merge policy for unknown field {f!r}")
            if policy not in MERGE_POLICIES:
                raise ValueError(f"component {name}.{f}: unknown merge policy {policy!r}")
        self.merge = {f: merge.get(f, "last_writer") for f in self.fields}
        self.salts = {f: stable_hash64(f"{name}.{f}") for f in self.fields}
        self.hashed = hashed
        self.row_major = row_major
        self._hash = hash(("Component", name))  # looked up in dicts all tick long: computed once

    def __repr__(self) -> str:
        return f"Component({self.name})"

    def __hash__(self) -> int:
        return self._hash

    def __lt__(self, other: Component) -> bool:
        return self.name < other.name


def tag(name: str) -> Component:
    """A component with no data of its own, used to mark entities (e.g. ``Player``)."""
    return Component(name, [("_", "u1")])
