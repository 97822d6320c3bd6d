"""A test-only stall, to kill a process at a chosen moment of a write (crash drills).

With ``WORLDS_STORE_STALL=journal@T`` a run writes half of tick T's journal frame and stalls;
with ``snapshot@T`` it stalls halfway through writing the snapshot of tick T (its files
written, not yet the manifest or the rename). Either way it first creates the file named by
``WORLDS_STORE_STALL_MARK``, so the drill knows when to send SIGKILL. Unset: nothing happens.
"""

from __future__ import annotations

import os
import time
from pathlib import Path


def stall(point: str, tick: int) -> None:
    if os.environ.get("WORLDS_STORE_STALL") != f"{point}@{tick}":
        return
    mark = os.environ.get("WORLDS_STORE_STALL_MARK")
    if mark:
        Path(mark).touch()
    time.sleep(float(os.environ.get("WORLDS_STORE_STALL_S", "60")))
