"""daskcal.pipeline: recipes, typed configs (JSON schema), the step runner, provenance.

A *recipe* (YAML under ``configs/recipes/``, :mod:`daskcal.pipeline.recipe`) is an
ordered list of steps, each a registered stage (:mod:`daskcal.pipeline.registry`)
with its typed config; :func:`recipe_schema` is its JSON schema;
:func:`run_recipe` executes it step by step on a Dask client, writing each step's
output resumably (:mod:`daskcal.pipeline.checkpoint`) and recording provenance
(:mod:`daskcal.pipeline.provenance`).

>>> from daskcal.pipeline import run_recipe                       # doctest: +SKIP
>>> run_recipe("configs/recipes/preprocess.yaml", {"target": "obs.zarr"}, "run1")

Names load lazily; importing this package imports no stage.
"""

from __future__ import annotations

from daskcal._lazy import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(__name__, {
    # recipes
    "Recipe": "recipe", "RecipeError": "recipe", "Step": "recipe", "load_recipe": "recipe",
    "validate_recipe": "recipe", "apply_overrides": "recipe", "write_defaulted": "recipe",
    # schema
    "recipe_schema": "schema",
    # registry
    "StageSpec": "registry", "StageContext": "registry", "ConfigRule": "registry",
    "StageError": "registry", "get_stage": "registry", "register_stage": "registry",
    "available_stages": "registry", "reload_stages": "registry",
    "ENTRY_POINT_GROUP": "registry",
    # running
    "run_recipe": "runner", "RunResult": "runner", "RunError": "runner",
    "parse_inputs": "runner",
    # provenance and checkpoints
    "path_fingerprint": "provenance", "package_versions": "provenance",
    "read_provenance": "provenance", "StepStore": "checkpoint",
})
