"""Field types and the strict base model shared by every world-file schema module."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

PositiveFloat = Annotated[float, Field(gt=0)]
NonNegFloat = Annotated[float, Field(ge=0)]
Count = Annotated[int, Field(ge=0)]
Name = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_\-]+$")]


class Strict(BaseModel):
    """Unknown fields are errors; values are frozen once validated."""

    model_config = ConfigDict(extra="forbid", strict=False, frozen=True)
