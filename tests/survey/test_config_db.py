"""The survey file (validation, one-line errors, schema), the database and the command line."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys

import pytest
import yaml

from daskcal.survey.config import SurveyError, load_survey, survey_schema
from daskcal.survey.db import (
    Database,
    DatabaseError,
    acquire_driver,
    release_driver,
    sync_observations,
)


@pytest.fixture
def valid(write_survey, observation, tmp_path, site_entry):
    """A valid survey file with two sites and two observations."""
    return write_survey(
        {"a": site_entry("tcp://127.0.0.2:8786", tmp_path / "a"),
         "b": site_entry("tcp://127.0.0.3:8786", tmp_path / "b", capacity=2)},
        [{"name": "o1", "inputs": {"target": str(observation("s1"))}, "location": "a"},
         {"name": "o2", "inputs": {"target": str(observation("s2"))}}])


def test_valid_survey_resolves_paths_and_defaults(valid, tmp_path):
    survey = load_survey(valid)
    assert survey.database == f"sqlite:///{tmp_path / 'out' / 'survey.db'}"
    assert survey.output == tmp_path / "out"
    assert survey.data_root("b") == tmp_path / "b"
    assert survey.bandwidth("a") == 100e6
    assert survey.config.sites["b"].capacity == 2
    assert survey.config.retries.max_attempts == 3


def test_relative_paths_are_relative_to_the_survey_file(tmp_path, observation):
    (tmp_path / "sub").mkdir()
    os.symlink(observation("s1"), tmp_path / "sub" / "obs.zarr")
    (tmp_path / "sub" / "site.yaml").write_text(yaml.safe_dump(
        {"kind": "address", "address": {"scheduler": "tcp://127.0.0.2:1"}}))
    path = tmp_path / "sub" / "survey.yaml"
    path.write_text(yaml.safe_dump({
        "recipe": os.path.relpath(os.path.join(os.path.dirname(__file__), "recipe.yaml"),
                                  path.parent),
        "output": "out", "sites": {"x": {"profile": "site.yaml", "data_root": "x"}},
        "observations": [{"name": "o", "inputs": {"target": "obs.zarr"}, "location": "x"}]}))
    survey = load_survey(path)
    assert survey.output == tmp_path / "sub" / "out"
    assert survey.inputs("o") == {"target": tmp_path / "sub" / "obs.zarr"}
    assert survey.data_root("x") == tmp_path / "sub" / "x"


def test_every_problem_on_one_line(write_survey, tmp_path, site_entry):
    path = write_survey(
        {"a": {**site_entry("tcp://127.0.0.2:1", tmp_path / "a"), "capacity": 0,
               "bandwidth": "fast"}},
        [{"name": "o1", "inputs": {"target": "x.zarr"}, "location": "nowhere"},
         {"name": "o1", "inputs": {"target": "y.zarr"}, "colour": "red"}],
        database="mysql://db")
    with pytest.raises(SurveyError) as info:
        load_survey(path)
    message = str(info.value)
    assert "\n" not in message and message.startswith(str(path))
    for part in ("database: 'mysql://db' is not a database URL", "sites.a.capacity: must be >= 1",
                 "sites.a.bandwidth: 'fast' is not a bandwidth",
                 "observations[1].colour: unknown field"):
        assert part in message, message


def test_cross_field_and_path_problems(write_survey, tmp_path, site_entry, observation):
    sites = {"a": site_entry("tcp://127.0.0.2:1", tmp_path / "a")}
    path = write_survey(sites, [
        {"name": "o1", "inputs": {"target": "x.zarr"}, "location": "nowhere"},
        {"name": "o1", "inputs": {"target": "y.zarr"}}])
    message = str(pytest.raises(SurveyError, load_survey, path).value)
    assert "observations[0].location: 'nowhere' is not one of the sites (a)" in message
    assert "observations[1].name: 'o1' given twice" in message
    path = write_survey(sites, [
        {"name": "o1", "inputs": {"calibrator": str(observation("s1"))}},
        {"name": "o2", "inputs": {"target": str(tmp_path / "missing.zarr")}}])
    message = str(pytest.raises(SurveyError, load_survey, path).value)
    assert "observations[0] (o1): input 'target' of the recipe not given" in message
    assert "input 'calibrator' is not one of the recipe's (target)" in message
    assert f"observations[1] (o2): input 'target': no such file or directory " \
           f"{tmp_path / 'missing.zarr'}" in message


def test_schema_describes_every_field():
    schema = survey_schema()
    assert schema["title"] == "daskcal survey"
    assert schema["additionalProperties"] is False
    for name, prop in schema["properties"].items():
        assert prop.get("description"), name
    for model in ("SiteEntry", "ObservationEntry", "RetryConfig"):
        for name, prop in schema["$defs"][model]["properties"].items():
            assert prop.get("description"), (model, name)
    json.dumps(schema)


def test_example_survey_validates():
    from pathlib import Path

    example = Path(__file__).resolve().parents[2] / "configs" / "surveys" / "example.yaml"
    survey = load_survey(example, check_paths=False)
    kinds = {}
    from daskcal.survey.config import site_profile

    for name in survey.config.sites:
        kinds[name] = site_profile(survey, name).kind
    assert sorted(kinds.values()) == ["local", "local", "slurm"]


def test_database_transactions_roll_back(tmp_path):
    db = Database(f"sqlite:///{tmp_path / 'db' / 'survey.db'}")
    sync_observations(db, [{"name": "o1", "inputs": {"target": "x"}, "location": None,
                            "nbytes": 10}], ["a"])
    with pytest.raises(RuntimeError), db.transaction() as tx:
        tx.execute("UPDATE observations SET state = 'running' WHERE name = 'o1'")
        raise RuntimeError("killed half way")
    assert db.observations()[0]["state"] == "pending"
    # a second sync adds nothing twice
    assert sync_observations(db, [{"name": "o1", "inputs": {}, "location": None,
                                   "nbytes": 0}], ["a"]) == []
    db.close()
    # what was committed is in the file, for any other reader
    con = sqlite3.connect(tmp_path / "db" / "survey.db")
    assert con.execute("SELECT name, state, nbytes FROM observations").fetchall() == \
        [("o1", "pending", 10)]
    con.close()


def test_one_live_driver_at_a_time(tmp_path):
    url = f"sqlite:///{tmp_path / 'survey.db'}"
    db = Database(url)
    # a live driver in another process (this test's parent, say) holds the survey
    with db.transaction() as tx:
        tx.execute("INSERT INTO driver (id, owner, host, pid, started_at, heartbeat) "
                   "SELECT 'driver', 'other', host, ?, 0, 0 FROM (SELECT ? AS host) h",
                   (os.getppid(), __import__("socket").gethostname()))
    with pytest.raises(DatabaseError, match=f"another survey driver \\(pid {os.getppid()}"):
        acquire_driver(db, "me")
    # a dead one is taken over
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    with db.transaction() as tx:
        tx.execute("UPDATE driver SET pid = ?", (int(dead.stdout),))
    assert acquire_driver(db, "me")["owner"] == "other"
    release_driver(db, "me")
    assert db.one("SELECT * FROM driver") is None
    db.close()


def test_cli_bad_input_is_one_line_and_exit_2(tmp_path, capsys):
    from daskcal.cli_survey import main

    assert main([str(tmp_path / "nope.yaml")]) == 2
    err = capsys.readouterr().err
    assert err == f"daskcal survey: error: {tmp_path / 'nope.yaml'}: no such survey file\n"
    bad = tmp_path / "bad.yaml"
    bad.write_text("recipe: [unclosed\n")
    assert main([str(bad)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "not valid YAML: line" in err


def test_cli_parser_can_be_added_to_daskcal(tmp_path):
    import argparse

    from daskcal.cli_survey import add_parser, cmd_survey

    parser = argparse.ArgumentParser(prog="daskcal")
    add_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["survey", str(tmp_path / "s.yaml"), "--status", "--retry-failed"])
    assert args.func is cmd_survey and args.status and args.retry_failed
