"""World files: the shipped ones load; every bad one is refused with one line per problem."""

import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT, WORLDS
from worlds import WorldFileError, load_world, parse_world

BAD = sorted((WORLDS / "bad").glob("*.toml"))


def expected_lines(path: Path) -> list[str]:
    return [line[len("# expect: "):] for line in path.read_text().splitlines() if line.startswith("# expect: ")]


def test_there_are_at_least_ten_kinds_of_bad_file():
    assert len(BAD) >= 10


@pytest.mark.parametrize("path", BAD, ids=lambda p: p.stem)
def test_bad_world_file_names_file_field_and_reason(path):
    with pytest.raises(WorldFileError) as err:
        load_world(path)
    problems = err.value.problems
    for want in expected_lines(path):
        assert any(line.startswith(want) for line in problems), (want, problems)
    assert all(line.startswith(f"{path.name}: ") for line in problems)
    assert len(problems) == len(expected_lines(path))


@pytest.mark.parametrize("path", sorted((ROOT / "worlds" / "defs").glob("*.toml")) + sorted(WORLDS.glob("*.toml")),
                         ids=lambda p: p.stem)
def test_shipped_and_scenario_worlds_are_valid(path):
    d = load_world(path)
    assert d.world.name


def test_command_exits_non_zero_with_one_line_per_problem_and_no_traceback():
    path = WORLDS / "bad" / "several_problems.toml"
    proc = subprocess.run([sys.executable, "-m", "worlds", "run", str(path), "--ticks", "1"],
                          capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines() == expected_lines(path)
    assert proc.stdout == ""


def test_check_subcommand_reports_ok_and_problems():
    good = ROOT / "worlds" / "defs" / "arena.toml"
    bad = WORLDS / "bad" / "negative_count.toml"
    proc = subprocess.run([sys.executable, "-m", "worlds", "check", str(good), str(bad)],
                          capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 2
    assert "arena.toml: ok" in proc.stdout
    assert expected_lines(bad)[0] in proc.stderr


def test_missing_file_is_a_clear_error():
    with pytest.raises(WorldFileError, match=r"nope\.toml: cannot read file"):
        load_world(WORLDS / "nope.toml")


def test_non_utf8_file(tmp_path):
    p = tmp_path / "latin.toml"
    p.write_bytes(b"[world]\nname = \"caf\xe9\"\n")
    with pytest.raises(WorldFileError, match="latin.toml: not UTF-8"):
        load_world(p)


def test_parse_world_from_data_and_defaults():
    d = parse_world({"world": {"name": "w", "bounds": [0, 0, 50, 50]}})
    assert d.world.tick_rate_hz == 20.0
    assert d.rules.melee_reach_m > 0
    assert d.players() == [] and d.npcs() == []


@pytest.mark.parametrize(
    "data, want",
    [
        ({"world": {"name": "w", "bounds": [0, 0, 50, 50], "cell_m": 80}}, "world.cell_m: cell of 80.0 m is larger"),
        ({"world": {"name": "w", "bounds": [0, 0, 1e6, 1e6], "cell_m": 0.1}}, "world.cell_m: 0.1 m gives"),
        ({"world": {"name": "w", "bounds": [0, 0, 50, 50]}, "hotspots": [{"name": "h", "x": 99, "y": 1}]},
         "hotspots[0]: (99.0, 1.0) lies outside"),
        ({"world": {"name": "w", "bounds": [0, 0, 50, 50]},
          "hotspots": [{"name": "h", "x": 1, "y": 1}, {"name": "h", "x": 2, "y": 2}]},
         "hotspots[1].name: duplicate hotspot name 'h'"),
        ({"world": {"name": "w", "bounds": [0, 0, 50, 50]},
          "populations": [{"kind": "players", "name": "p", "count": 1, "behaviour": "travel"}]},
         "populations[0].behaviour: 'travel' needs at least one [[hotspots]] entry"),
        ({"world": {"name": "w", "bounds": [0, 0, 50, 50]},
          "populations": [{"kind": "npcs", "name": "p", "count": 1, "spawn": {"shape": "uniform", "around": "hotspots"}}]},
         "populations[0].spawn.around: 'hotspots' needs at least one"),
        ({"world": {"name": "w", "bounds": [0, 0, 50, 50]}, "hotspots": [{"name": "h", "x": 1, "y": 1}],
          "populations": [{"kind": "npcs", "name": "p", "count": 1, "spawn": {"shape": "uniform", "around": "hotspots"}}]},
         "populations[0].spawn.shape: spawning around hotspots needs shape"),
        ({"world": {"name": "w", "bounds": [0, 0, 50, 50]}, "populations": [{"name": "p", "count": 1}]},
         "populations[0]: 'kind' must be 'players' or 'npcs'"),
        ({"world": {"name": "w", "bounds": [0, 0, 50, 50], "mode": "pvx"}}, "world.mode: expected one of 'pvp' or 'pve'"),
        ({"world": {"name": "w", "bounds": [0, 0, 50, 50, 60]}}, "world.bounds: expected at most 4 items, got 5"),
        ({"world": {"name": "w w", "bounds": [0, 0, 50, 50]}}, "world.name: string should match pattern"),
    ],
)
def test_semantic_and_shape_rules(data, want):
    with pytest.raises(WorldFileError) as err:
        parse_world(data, "t.toml")
    assert any(line.startswith(f"t.toml: {want}") for line in err.value.problems), err.value.problems
