"""Shared paths for the tests. Each test builds its own world; nothing global is kept."""

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
WORLDS = Path(__file__).resolve().parent / "worlds"


@pytest.fixture
def worlds_dir() -> Path:
    return WORLDS
