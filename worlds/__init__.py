"""World runtime: world files and their loader, the simulation a server loop steps, the CLI."""

from worlds.loader import WorldFileError, load_world, parse_world
from worlds.runtime import Simulation, TickReport

__all__ = ["Simulation", "TickReport", "WorldFileError", "load_world", "parse_world"]
