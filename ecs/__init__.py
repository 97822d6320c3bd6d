"""Entity-Component-System core: ids, component tables, queries, commands, schedule, clock, RNG."""

from ecs.clock import FixedClock
from ecs.commands import CommandBuffer
from ecs.component import Component, tag
from ecs.ids import NULL_ID, EntityRegistry, id_generation, id_index, id_shard, make_id
from ecs.query import Query
from ecs.rng import Rng
from ecs.schedule import Phase, Schedule, ScheduleError, System
from ecs.table import Table
from ecs.world import StructureLockedError, World

__all__ = [
    "NULL_ID",
    "CommandBuffer",
    "Component",
    "EntityRegistry",
    "FixedClock",
    "Phase",
    "Query",
    "Rng",
    "Schedule",
    "ScheduleError",
    "StructureLockedError",
    "System",
    "Table",
    "World",
    "id_generation",
    "id_index",
    "id_shard",
    "make_id",
    "tag",
]
