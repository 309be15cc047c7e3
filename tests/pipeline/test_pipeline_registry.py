"""The stage registry: built-ins, run-time registration and entry-point plug-ins."""

from __future__ import annotations

import pytest
import yaml
from pydantic import BaseModel

from daskcal.pipeline.recipe import load_recipe
from daskcal.pipeline.registry import (
    StageError,
    StageSpec,
    available_stages,
    get_stage,
    register_stage,
    reload_stages,
)


def test_builtins_and_their_kinds():
    stages = available_stages()
    kinds = {name: spec.kind for name, spec in stages.items()}
    assert kinds["flag"] == kinds["average"] == kinds["predict"] == "visibility->visibility"
    assert kinds["solve"] == "visibility->gains"
    assert kinds["apply"] == "gains+visibility->visibility"
    assert get_stage("demix").rules


def test_unknown_stage_lists_known():
    with pytest.raises(StageError, match=r"unknown stage 'x' \(known: .*average"):
        get_stage("x")


def test_register_and_refuse_duplicates():
    class Cfg(BaseModel):
        pass

    spec = StageSpec("noop_test", Cfg, lambda xds, config: xds, "visibility->visibility")
    try:
        register_stage(spec)
        assert get_stage("noop_test") is spec
        with pytest.raises(StageError, match="already registered"):
            register_stage(StageSpec("noop_test", Cfg, lambda x, c: x, "visibility->visibility"))
        with pytest.raises(StageError, match="kind"):
            StageSpec("bad", Cfg, lambda x, c: x, "visibility->spectrum")
    finally:
        reload_stages()


def test_entry_point_plugin(toy_plugin, tmp_path):
    spec = get_stage("toy_scale")
    assert spec.kind == "visibility->visibility"
    recipe = tmp_path / "toy.yaml"
    recipe.write_text(yaml.safe_dump({
        "name": "toy", "inputs": ["target"],
        "steps": [{"name": "scale", "stage": "toy_scale", "input": "target",
                   "config": {"factor": 3}}]}))
    assert load_recipe(recipe).step("scale").config.factor == 3
    from daskcal.pipeline.schema import recipe_schema

    assert "ToyConfig" in recipe_schema()["$defs"]


def test_broken_entry_point_warns(tmp_path, monkeypatch):
    import importlib

    from daskcal import DaskcalWarning

    info = tmp_path / "broken-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: broken\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[daskcal.stages]\nbroken = no_such_module:X\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    importlib.invalidate_caches()
    reload_stages()
    try:
        with pytest.warns(DaskcalWarning, match="'broken'.*not loaded"):
            stages = available_stages()
        assert "broken" not in stages and "flag" in stages
    finally:
        reload_stages()
