"""The ``worlds`` command as a user runs it: JSON summary, record and replay, bad streams."""

import json
import subprocess
import sys

import pytest

from tests.conftest import ROOT, WORLDS
from worlds.cli import main

VILLAGE = str(WORLDS / "village.toml")
KEYS = {"ticks", "entities", "players", "actions_submitted", "actions_applied", "actions_refused",
        "actions_per_second", "tick_ms", "action_to_effect_ms", "state_hash"}


def run_json(*args: str) -> dict:
    proc = subprocess.run([sys.executable, "-m", "worlds", "run", *args, "--json"], capture_output=True, text=True,
                          cwd=ROOT, check=True)
    lines = proc.stdout.strip().splitlines()
    assert len(lines) == 1, proc.stdout
    return json.loads(lines[0])


def test_json_summary_is_one_object_with_the_promised_fields(tmp_path):
    out = run_json(VILLAGE, "--ticks", "30", "--record", str(tmp_path / "s.jsonl"))
    assert KEYS <= out.keys()
    assert out["ticks"] == 30 and out["players"] == 115 and out["entities"] == 415
    assert out["actions_submitted"] == out["actions_applied"] + sum(out["actions_refused"].values())
    assert set(out["tick_ms"]) == {"p50", "p99", "max"} and set(out["action_to_effect_ms"]) == {"p50", "p99"}
    assert 0 < out["tick_ms"]["p50"] <= out["tick_ms"]["p99"] <= out["tick_ms"]["max"]
    assert int(out["state_hash"], 16) >= 0 and len(out["state_hash"]) == 16
    replay = run_json(VILLAGE, "--ticks", "30", "--actions", str(tmp_path / "s.jsonl"))
    assert replay["state_hash"] == out["state_hash"]
    assert replay["actions_applied"] == out["actions_applied"]


def test_seed_option_changes_the_world():
    a = run_json(VILLAGE, "--ticks", "3", "--seed", "5")
    b = run_json(VILLAGE, "--ticks", "3", "--seed", "6")
    assert a["state_hash"] != b["state_hash"] and a["seed"] == 5


def test_malformed_stream_lines_are_refused_with_line_numbers_and_the_run_goes_on(tmp_path, capsys):
    good = tmp_path / "good.jsonl"
    assert main(["run", VILLAGE, "--ticks", "10", "--record", str(good), "--json"]) == 0
    recorded = json.loads(capsys.readouterr().out)
    lines = good.read_text().splitlines()
    bad = tmp_path / "bad.jsonl"
    bad.write_text("\n".join([
        "{not json",
        '{"tick": 1, "player": 5, "seq": 1, "kind": "fly", "client_time_ms": 1.0}',
        '{"tick": 1, "player": 5, "seq": -2, "kind": "move", "client_time_ms": 1.0}',
        '{"tick": 1, "player": 5, "kind": "move", "client_time_ms": 1.0}',
        '{"tick": 1, "player": 5, "seq": 1, "kind": "move", "client_time_ms": 1.0, "colour": 3}',
        '{"tick": -1, "player": 5, "seq": 1, "kind": "move", "client_time_ms": 1.0}',
        '{"tick": 1, "player": 0, "seq": 1, "kind": "move", "client_time_ms": 1.0}',
        '{"tick": 1, "player": 5, "seq": 1, "kind": "move", "client_time_ms": 1.0, "x": NaN}',
        '{"tick": 1, "player": 5, "seq": 1, "kind": "move", "client_time_ms": 1e400}',
        "",
        *lines,
    ]) + "\n")
    assert main(["run", VILLAGE, "--ticks", "10", "--actions", str(bad), "--json"]) == 0
    cap = capsys.readouterr()
    out = json.loads(cap.out)
    errs = cap.err.strip().splitlines()
    assert [e.split(":")[1] for e in errs] == [str(n) for n in range(1, 10)]
    assert "kind" in errs[1] and "seq" in errs[2] and "seq" in errs[3] and "colour" in errs[4]
    assert [e["line"] for e in out["stream_errors"]] == list(range(1, 10))
    assert out["actions_refused"]["malformed"] == 9
    assert out["state_hash"] == recorded["state_hash"]


def test_readable_summary_and_missing_stream(tmp_path, capsys):
    assert main(["run", VILLAGE, "--ticks", "3"]) == 0
    text = capsys.readouterr().out
    assert "state hash" in text and "actions:" in text
    assert main(["run", VILLAGE, "--ticks", "3", "--actions", str(tmp_path / "none.jsonl")]) == 2
    assert "cannot read" in capsys.readouterr().err


def test_negative_ticks_is_a_usage_error():
    with pytest.raises(SystemExit) as e:
        main(["run", VILLAGE, "--ticks", "-1"])
    assert e.value.code == 2


def test_realtime_mode_paces_ticks(capsys):
    assert main(["run", VILLAGE, "--ticks", "6", "--realtime", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["realtime"] is True
    assert out["wall_s"] >= 5 / 20  # six ticks at 20 Hz cannot finish before the fifth is due
