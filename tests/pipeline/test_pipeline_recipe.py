"""Recipes: loading, one-line validation errors, overrides, defaults, the JSON schema."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from daskcal.cli import main
from daskcal.pipeline.recipe import RecipeError, apply_overrides, load_recipe, validate_recipe
from daskcal.pipeline.schema import recipe_schema

# the recipes (from this file: workers unpickle test functions by module name, and
# another tests/ directory has a conftest of its own)
RECIPES = Path(__file__).resolve().parents[2] / "configs" / "recipes"


def _recipe(steps, **extra):
    return {"name": "r", "inputs": {"target": "obs"}, "steps": steps, **extra}


def _write(tmp_path, data, name="r.yaml"):
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.mark.parametrize("name", ["preprocess", "calibrate-di"])
def test_shipped_recipes_validate(name):
    recipe = load_recipe(RECIPES / f"{name}.yaml")
    assert recipe.name == name
    assert [s.index for s in recipe.steps] == list(range(len(recipe.steps)))
    assert recipe.products


def test_every_problem_on_one_line_with_key_paths(tmp_path):
    path = _write(tmp_path, _recipe([
        {"name": "flag", "stage": "flag", "input": "target",
         "config": {"rfi": {"rho": 0.5}, "bogus": 1}},
        {"name": "avg", "stage": "average", "input": "nowhere", "config": {"time_factor": 0}},
        {"name": "x", "stage": "no_such_stage", "input": "avg"},
    ]))
    with pytest.raises(RecipeError) as info:
        load_recipe(path)
    msg = str(info.value)
    assert "\n" not in msg
    assert msg.startswith(f"{path}: ")
    for part in ("steps.flag.config.rfi.rho:", "steps.flag.config.bogus:",
                 "steps.avg.config.time_factor:", "steps.avg.input: 'nowhere'",
                 "steps.x.stage: unknown stage 'no_such_stage'"):
        assert part in msg


def test_structural_errors_name_their_keys(tmp_path):
    path = _write(tmp_path, {"name": "r", "steps": [{"name": "a", "stage": "flag"}],
                             "extra": 1})
    msg = str(pytest.raises(RecipeError, load_recipe, path).value)
    assert "inputs: Field required" in msg
    assert "steps[0].input: Field required" in msg
    assert "extra: Extra inputs are not permitted" in msg


def test_wiring_of_gains(tmp_path):
    steps = [{"name": "solve", "stage": "solve", "input": "target"},
             {"name": "apply", "stage": "apply", "input": "target"},
             {"name": "apply2", "stage": "apply", "input": "solve", "gains": "target"},
             {"name": "avg", "stage": "average", "input": "target", "gains": "solve"}]
    msg = str(pytest.raises(RecipeError, validate_recipe, _recipe(steps), "r.yaml").value)
    assert "steps.apply.gains: required by stage 'apply'" in msg
    assert "steps.apply2.input: step 'solve' produces gains" in msg
    assert ("steps.apply2.gains: 'target' is neither a gains input nor an earlier step "
            "producing gains") in msg
    assert "steps.avg.gains: stage 'average' (visibility->visibility) takes no gains" in msg


def test_demix_enabled_requires_sources():
    def demix(config):
        return _recipe([{"name": "dm", "stage": "demix", "input": "target", "config": config}])

    for config in ({}, {"enabled": True}):
        msg = str(pytest.raises(RecipeError, validate_recipe, demix(config), "d.yaml").value)
        assert msg == "d.yaml: steps.dm.config.sources: required when enabled is true"
    validate_recipe(demix({"enabled": False}))
    ok = validate_recipe(demix({"sources": ["CasA"]}))
    assert ok.steps[0].config.sources == ["CasA"]


def test_schema_has_configs_rules_and_is_json():
    schema = recipe_schema()
    json.dumps(schema)
    assert schema["required"] == ["name", "inputs", "steps"]
    step = schema["$defs"]["Step"]
    by_stage = {c["if"]["properties"]["stage"]["const"]: c["then"] for c in step["allOf"]}
    assert {"flag", "average", "solve", "apply", "demix", "predict", "preflag"} <= set(by_stage)
    demix = by_stage["demix"]["properties"]["config"]["allOf"]
    assert demix[0] == {"$ref": "#/$defs/DemixConfig"}
    assert demix[1] == {"if": {"properties": {"enabled": {"const": True}}},
                        "then": {"required": ["sources"]}}
    assert by_stage["apply"]["required"] == ["gains"]
    avg = schema["$defs"]["AverageConfig"]["properties"]["time_factor"]
    assert avg["default"] == 1 and avg["minimum"] == 1
    assert "sky_model" in schema["$defs"]["PredictStepConfig"]["required"]


def test_schema_of_a_recipe_describes_its_steps():
    recipe = load_recipe(RECIPES / "calibrate-di.yaml")
    schema = recipe_schema(recipe)
    prefix = schema["properties"]["steps"]["prefixItems"]
    assert [p["properties"]["stage"]["const"] for p in prefix] == \
        ["flag", "predict", "average", "solve", "apply"]
    assert prefix[2]["properties"]["config"]["default"]["time_factor"] == 2


def test_overrides_precedence(tmp_path):
    path = _write(tmp_path, _recipe([
        {"name": "avg", "stage": "average", "input": "target", "config": {"time_factor": 2}},
    ]))
    assert load_recipe(path).step("avg").config.time_factor == 2          # file over default
    assert load_recipe(path).step("avg").config.freq_factor == 1          # default
    over = load_recipe(path, ["avg.time_factor=4", "avg.config.freq_factor=2", "site=threads"])
    assert over.step("avg").config.time_factor == 4                       # command line
    assert over.step("avg").config.freq_factor == 2
    assert over.model.site == "threads"
    with pytest.raises(RecipeError, match="no step named 'nope'"):
        load_recipe(path, ["nope.x=1"])
    with pytest.raises(RecipeError, match="expected STEP.KEY=VALUE"):
        apply_overrides({}, ["novalue"])


def test_config_writes_full_defaults_that_reload(tmp_path, capsys):
    out = tmp_path / "full.yaml"
    assert main(["config", str(RECIPES / "preprocess.yaml"), "-o", str(out),
                 "--set", "flag.rfi.base_threshold=9"]) == 0
    data = yaml.safe_load(out.read_text())
    flag = data["steps"][0]["config"]
    assert flag["rfi"]["base_threshold"] == 9
    assert flag["mad"] == {"enabled": False, "threshold": 6.0, "per": "baseline"}
    again = load_recipe(out)
    assert again.defaulted() == data


def test_cli_schema_and_one_line_errors(tmp_path, capsys):
    assert main(["schema", str(RECIPES / "preprocess.yaml")]) == 0
    schema = json.loads(capsys.readouterr().out)
    assert schema["title"] == "daskcal recipe preprocess"
    bad = _write(tmp_path, _recipe([{"name": "a", "stage": "average", "input": "target",
                                     "config": {"time_factor": -1}}]))
    assert main(["config", str(bad)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0
    assert err == (f"daskcal config: error: {bad}: steps.a.config.time_factor: "
                   "Input should be greater than or equal to 1")
