"""The JSON schema of recipes, generated from the stages' typed configs.

:func:`recipe_schema` returns a JSON schema (draft 2020-12) whose ``steps`` items
select the config schema of their ``stage`` with ``if``/``then`` clauses; each
config schema is the stage's pydantic model's (defaults, constraints, required
properties, descriptions), plus the stage's :class:`~daskcal.pipeline.registry.ConfigRule`
dependencies as further ``if``/``then`` clauses (e.g. a ``demix`` step with
``enabled: true`` requires ``sources``), and ``gains`` is required where the stage
takes gains. Given a recipe, the schema also describes that recipe's own steps
(``prefixItems``, with the recipe's settings as defaults) for the portal's form.
"""

from __future__ import annotations

from typing import Any

from pydantic.json_schema import models_json_schema

from daskcal.pipeline.recipe import InputModel, Recipe, RecipeModel, SelectModel, StepModel
from daskcal.pipeline.registry import StageSpec, available_stages

SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"


def _field_schema(model, name: str) -> dict[str, Any]:
    props = model.model_json_schema()["properties"]
    return props[name]


def _select_schema() -> dict[str, Any]:
    """The ``select`` property, inlined (no ``$defs`` of its own)."""
    sel = SelectModel.model_json_schema()
    return {"anyOf": [{"type": "object", "additionalProperties": False,
                       "properties": sel["properties"], "title": "Select",
                       "description": sel.get("description", "")}, {"type": "null"}],
            "default": None, "description": _field_schema(StepModel, "select")
            .get("description", "")}


def _step_schema(stages: dict[str, StageSpec], refs: dict[str, str]) -> dict[str, Any]:
    clauses = []
    for name, spec in stages.items():
        config: dict[str, Any] = {"$ref": refs[name]}
        rules = [rule.json_schema(spec.config_model) for rule in spec.rules]
        if rules:
            config = {"allOf": [config, *rules]}
        then: dict[str, Any] = {"properties": {"config": config}}
        required = [k for k, need in (("gains", spec.needs_gains),
                                      ("image", spec.needs_image)) if need]
        forbidden = [{"required": [k]} for k, need in (("gains", spec.needs_gains),
                                                       ("image", spec.needs_image)) if not need]
        if required:
            then["required"] = required
        if forbidden:
            then["not"] = {"anyOf": forbidden}
        clauses.append({"if": {"properties": {"stage": {"const": name}}, "required": ["stage"]},
                        "then": then})
    props = {k: _field_schema(StepModel, k) for k in ("name", "input", "gains", "image")}
    props["select"] = _select_schema()
    props["stage"] = {"enum": list(stages), "description": _field_schema(StepModel, "stage")
                      .get("description", ""), "title": "Stage"}
    props["config"] = {"type": "object", "default": {},
                       "description": "The stage's settings."}
    return {
        "type": "object",
        "title": "Step",
        "description": StepModel.__doc__.strip(),
        "required": ["name", "stage", "input"],
        "additionalProperties": False,
        "properties": props,
        "allOf": clauses,
    }


def recipe_schema(recipe: Recipe | None = None) -> dict[str, Any]:
    """The JSON schema of recipe files (all registered stages).

    Parameters
    ----------
    recipe : Recipe, optional
        Also describe this recipe's steps, in order, with its settings as defaults.

    Returns
    -------
    dict
        A JSON schema (draft 2020-12), JSON-serialisable.
    """
    stages = available_stages()
    models = {spec.config_model for spec in stages.values()}
    keyed = [(m, "validation") for m in sorted(models, key=lambda m: m.__qualname__)]
    refs_by_model, top = models_json_schema(keyed, ref_template="#/$defs/{model}")
    defs = dict(top.get("$defs", {}))
    refs = {name: refs_by_model[(spec.config_model, "validation")]["$ref"]
            for name, spec in stages.items()}
    defs["Step"] = _step_schema(stages, refs)
    defs["Input"] = InputModel.model_json_schema()
    base = RecipeModel.model_json_schema()["properties"]
    props: dict[str, Any] = {
        "name": base["name"],
        "description": base["description"],
        "site": base["site"],
        "chunks": base["chunks"],
        "inputs": {"type": "object", "minProperties": 1, "title": "Inputs",
                   "description": base["inputs"].get("description", ""),
                   "additionalProperties": {"anyOf": [{"type": "string"},
                                                      {"$ref": "#/$defs/Input"}]}},
        "steps": {"type": "array", "minItems": 1, "title": "Steps",
                  "description": base["steps"].get("description", ""),
                  "items": {"$ref": "#/$defs/Step"}},
        "products": base["products"],
    }
    schema: dict[str, Any] = {
        "$schema": SCHEMA_DIALECT,
        "title": "daskcal recipe",
        "description": "An ordered list of steps, each a stage with its config "
                       "(daskcal.pipeline.recipe).",
        "type": "object",
        "required": ["name", "inputs", "steps"],
        "additionalProperties": False,
        "properties": props,
        "$defs": defs,
    }
    if recipe is not None:
        schema["title"] = f"daskcal recipe {recipe.name}"
        if recipe.model.description:
            schema["description"] = recipe.model.description
        prefix = []
        for entry, step in zip(recipe.defaulted()["steps"], recipe.steps, strict=True):
            item = {"$ref": "#/$defs/Step",
                    "title": f"{step.name} ({step.stage.name})",
                    "description": step.stage.description,
                    "properties": {"name": {"const": step.name},
                                   "stage": {"const": step.stage.name},
                                   "config": {"default": entry["config"]}}}
            prefix.append(item)
        props["steps"] = {**props["steps"], "prefixItems": prefix}
    return schema


__all__ = ["SCHEMA_DIALECT", "recipe_schema"]
