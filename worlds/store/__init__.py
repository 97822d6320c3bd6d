"""Durable state: a world that survives a crash with the same state hash, and loses no
acknowledged action.

Contract:

- A run with a data directory journals each tick's sealed input batch, and the inputs that came
  out of band before it (disconnects, reconnects), *before* the tick runs; ``TickReport.
  durable_tick`` is the last tick whose frame is durable under the fsync policy (``tick``: every
  frame, fsynced while its tick computes; ``interval``; ``off``), and only actions of ticks up
  to it may be acknowledged.
- Every K ticks the whole state (component tables, id space, and the few resources and client
  simulation arrays that shape later ticks) is snapshotted atomically, written off the tick's
  path; three are kept.
- ``resume`` rebuilds the world from the newest good snapshot (a damaged one falls back to the
  previous, with a longer replay) and replays the journal to its end (the built-in clients
  sit out the ticks before their last checkpoint in it), checking the hashes it
  recorded; a torn last frame is dropped and reported with its offset; a damaged frame in the
  middle, or a journal or snapshot of another world file or seed, is refused with one line
  naming the file, offset and reason. A resumed run then goes on exactly as an uninterrupted
  one would: the same state hash at every later tick.
- A sharded world's snapshot is one barrier-consistent cut: the id space, then every shard at
  the same tick, and what their coordinator keeps between ticks.
- Player records (``players``) live in SQLite, written through behind the tick, never ahead
  of the durable world.

``state.pkl`` in a snapshot is a pickle (of plain data: arrays, numbers, lists): a data
directory is the server's own, to be trusted like its code. Its checksum is verified first.
"""

from worlds.store.durable import DataDir, DurableRun, Recovery, inspect, resume
from worlds.store.files import StoreError

__all__ = ["DataDir", "DurableRun", "Recovery", "StoreError", "inspect", "resume"]
