"""How shards' messages travel: a transport moves encoded frames between numbered shards.

A shard hands ``send`` a typed message; the transport encodes it (``protocol.encode``), counts
its bytes for the tick, and delivers the frame; ``receive`` decodes what reached a shard, in the
order it was sent (per sender; senders in shard order). The in-process back-end keeps frames in
per-destination queues in this process; the distributed back-end moves the same bytes between
processes, so what is counted and decoded here is exactly what would cross a wire.
"""

from __future__ import annotations

from collections import defaultdict

from worlds.cluster.protocol import Message, decode, encode


class Transport:
    """The interface; ``InProcessTransport`` is the default back-end."""

    def __init__(self, shards: int) -> None:
        self.shards = shards
        self.bytes_tick = 0  # bytes sent since ``new_tick``
        self.messages_tick = 0
        self.bytes_total = 0

    def new_tick(self) -> int:
        """Start counting a new tick; returns the bytes the last one sent."""
        sent, self.bytes_tick, self.messages_tick = self.bytes_tick, 0, 0
        return sent

    def send(self, dst: int, message: Message) -> int:
        return self.post(dst, encode(message))

    def post(self, dst: int, frame: bytes) -> int:
        """Send a frame a shard encoded."""
        if not 0 <= dst < self.shards:
            raise ValueError(f"no shard {dst} (shards 0..{self.shards - 1})")
        self.count(frame)
        self._deliver(dst, frame)
        return len(frame)

    def count(self, frame: bytes) -> bytes:
        """Count a frame that travels with a call instead of through a queue."""
        self.bytes_tick += len(frame)
        self.bytes_total += len(frame)
        self.messages_tick += 1
        return frame

    def receive(self, shard: int) -> list[Message]:
        return [decode(f) for f in self._take(shard)]

    def take(self, shard: int) -> list[bytes]:
        """The frames waiting for ``shard``, undecoded (the shard decodes them)."""
        return self._take(shard)

    def _deliver(self, dst: int, frame: bytes) -> None:  # pragma: no cover - interface
        raise NotImplementedError

    def _take(self, shard: int) -> list[bytes]:  # pragma: no cover - interface
        raise NotImplementedError


class InProcessTransport(Transport):
    """Frames wait in a queue per destination shard until it receives them."""

    def __init__(self, shards: int) -> None:
        super().__init__(shards)
        self._queues: dict[int, list[bytes]] = defaultdict(list)

    def _deliver(self, dst: int, frame: bytes) -> None:
        self._queues[dst].append(frame)

    def _take(self, shard: int) -> list[bytes]:
        frames, self._queues[shard] = self._queues[shard], []
        return frames

    def pending(self, shard: int) -> int:
        return len(self._queues[shard])
