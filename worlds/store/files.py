"""Files that survive a crash: written whole or not at all, and checked when read back.

``write_atomic`` writes a temporary file beside the target, fsyncs it, renames it over the
target and fsyncs the directory (POSIX rename is atomic: a reader sees the old file or the new
one, never half of one). ``digest`` is the xxh3-64 of bytes, as 16 hex digits.
"""

from __future__ import annotations

import os
from pathlib import Path

import xxhash


class StoreError(ValueError):
    """A data directory, snapshot or journal that cannot be used (one line: which file, where,
    and why)."""


def digest(data: bytes | memoryview) -> str:
    return xxhash.xxh3_64_hexdigest(data)


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_atomic(path: Path, data: bytes, sync: bool = True) -> None:
    """``path`` holds ``data`` (the old contents until the rename, whatever happens)."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        if sync:
            f.flush()
            os.fsync(f.fileno())
    os.replace(tmp, path)
    if sync:
        fsync_dir(path.parent)
