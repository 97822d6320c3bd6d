"""Fixed-timestep clock: ticks are the time; seconds are derived from them."""

from __future__ import annotations

import math

import pytest

from ecs import FixedClock


def test_fixed_timestep_and_advance():
    c = FixedClock(20)
    assert c.tick_rate_hz == 20.0
    assert c.dt_s == 0.05
    assert c.tick == 0 and c.time_s == 0.0
    assert c.advance() == 1
    assert c.advance() == 2
    assert c.tick == 2
    assert c.time_s == pytest.approx(0.1)
    assert FixedClock(10, tick=7).time_s == pytest.approx(0.7)


@pytest.mark.parametrize("rate", [0, -20, float("nan"), float("inf"), -float("inf")])
def test_bad_rate_raises(rate):
    with pytest.raises(ValueError):
        FixedClock(rate)


def test_time_of_is_linear_in_ticks():
    c = FixedClock(30)
    assert c.time_of(0) == 0.0
    assert c.time_of(30) == pytest.approx(1.0)
    assert c.time_of(45) == pytest.approx(1.5)
    c.tick = 45
    assert c.time_s == c.time_of(45)


@pytest.mark.parametrize("rate", [3, 7, 10, 20, 30, 60, 64, 100, 144, 0.5, 33.3])
def test_tick_at_inverts_time_of(rate):
    c = FixedClock(rate)
    for k in range(-50, 20_000):
        start, end = c.time_of(k), c.time_of(k + 1)
        assert c.tick_at(start) == k
        assert c.tick_at((start + end) / 2) == k
        assert c.tick_at(math.nextafter(end, -math.inf)) == k


def test_tick_at_interval_edges():
    c = FixedClock(20)
    assert c.tick_at(0.0) == 0
    assert c.tick_at(0.049) == 0
    assert c.tick_at(0.05) == 1
    assert c.tick_at(-0.001) == -1
    assert c.tick_at(3600.0) == 72_000
    assert isinstance(c.tick_at(1.0), int)
