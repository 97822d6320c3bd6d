"""Loading world files: TOML in, a validated ``WorldDef`` out, or every problem in one error.

Each problem is one line, ``FILE: field.path[2].name: reason``, so a designer can fix a file
without reading a traceback.
"""

from __future__ import annotations

import tomllib
import typing
from pathlib import Path

from pydantic import BaseModel, ValidationError

from worlds.schema import WorldDef, semantic_problems

_UNION_TAGS = {"players", "npcs"}


class WorldFileError(ValueError):
    """A world file that cannot be used; ``problems`` holds one line per problem."""

    def __init__(self, path: str, problems: list[str]) -> None:
        self.path = path
        self.problems = problems
        super().__init__("\n".join(problems))


def _path_text(loc: tuple) -> str:
    text = ""
    prev_index = False
    for part in loc:
        if isinstance(part, int):
            text += f"[{part}]"
            prev_index = True
            continue
        if prev_index and part in _UNION_TAGS:  # the discriminator pydantic puts in the path
            prev_index = False
            continue
        text += f".{part}" if text else str(part)
        prev_index = False
    return text or "(top level)"


def _annotation_at(loc: tuple) -> object:
    """The declared type of the field at ``loc`` (best effort; None when unknown)."""
    model: object = WorldDef
    ann: object = None
    for part in loc:
        if isinstance(part, int):
            args = typing.get_args(ann)
            ann = args[0] if args else None
            model = _model_of(ann)
            continue
        if part in _UNION_TAGS and model is None:
            from worlds.schema import Npcs, Players

            model = Players if part == "players" else Npcs
            continue
        if not (isinstance(model, type) and issubclass(model, BaseModel)) or part not in model.model_fields:
            return None
        ann = model.model_fields[part].annotation
        model = _model_of(ann)
    return ann


def _model_of(ann: object) -> object:
    if isinstance(ann, type) and issubclass(ann, BaseModel):
        return ann
    for a in typing.get_args(ann):
        if isinstance(a, type) and issubclass(a, BaseModel):
            return a
    return None


def _kind_words(ann: object) -> str:
    names = {getattr(a, "__name__", "") for a in (ann, *typing.get_args(ann))}
    if "int" in names and "float" not in names:
        return "an integer"
    if "float" in names:
        return "a number"
    return "a value"


def _reason(err: dict) -> str:
    kind = err["type"]
    ctx = err.get("ctx", {})
    got = err.get("input")
    loc = err["loc"]
    bounds = {
        "greater_than_equal": (">=", "ge"),
        "greater_than": (">", "gt"),
        "less_than_equal": ("<=", "le"),
        "less_than": ("<", "lt"),
    }
    if kind in bounds:
        op, key = bounds[kind]
        return f"expected {_kind_words(_annotation_at(loc))} {op} {ctx.get(key):g}, got {got!r}"
    if kind == "missing":
        return "required field is missing"
    if kind == "extra_forbidden":
        return f"unknown field (value {got!r}); check the spelling against the schema"
    if kind == "literal_error":
        return f"expected one of {ctx.get('expected')}, got {got!r}"
    if kind in ("union_tag_invalid", "union_tag_not_found"):
        return f"'kind' must be 'players' or 'npcs', got {ctx.get('tag', got)!r}"
    if kind in ("int_type", "int_parsing", "int_from_float"):
        return f"expected an integer, got {got!r}"
    if kind in ("float_type", "float_parsing"):
        return f"expected a number, got {got!r}"
    if kind == "too_short":
        return f"expected at least {ctx.get('min_length')} items, got {ctx.get('actual_length')}: {got!r}"
    if kind == "too_long":
        return f"expected at most {ctx.get('max_length')} items, got {ctx.get('actual_length')}: {got!r}"
    return f"{err['msg'][0].lower()}{err['msg'][1:]}, got {got!r}"


def parse_world(data: dict, name: str = "<world>") -> WorldDef:
    """Validate already-parsed TOML data; raise ``WorldFileError`` listing every problem."""
    try:
        d = WorldDef.model_validate(data)
    except ValidationError as e:
        lines = [f"{name}: {_path_text(err['loc'])}: {_reason(err)}" for err in e.errors()]
        raise WorldFileError(name, lines) from None
    problems = semantic_problems(d)
    if problems:
        raise WorldFileError(name, [f"{name}: {p}: {r}" for p, r in problems])
    return d


def load_world(path: str | Path) -> WorldDef:
    """Read and validate a world file."""
    p = Path(path)
    name = p.name
    try:
        raw = p.read_bytes()
    except OSError as e:
        raise WorldFileError(name, [f"{name}: cannot read file: {e.strerror or e}"]) from None
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise WorldFileError(name, [f"{name}: not UTF-8 text"]) from None
    except tomllib.TOMLDecodeError as e:
        raise WorldFileError(name, [f"{name}: invalid TOML: {e}"]) from None
    return parse_world(data, name)
