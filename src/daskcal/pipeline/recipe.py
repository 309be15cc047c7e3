"""Recipes: an ordered list of steps, each a registered stage with its typed config.

A recipe is a YAML file (see ``configs/recipes/``)::

    name: preprocess
    description: flag and average
    site: local                 # site profile (daskcal.cluster), or "threads"
    chunks: null                # chunking of the inputs (null: as stored)
    inputs:
      target: the observation to preprocess      # name: description
    steps:
      - name: flag              # unique, [A-Za-z][A-Za-z0-9_-]*
        stage: flag             # a registered stage (daskcal.pipeline.registry)
        input: target           # an input or an earlier step (visibilities)
        config: {rfi: {enabled: true}}
      - name: average
        stage: average
        input: flag
        config: {time_factor: 2}
    products: [average]         # steps whose outputs are the run's products

A ``gains+visibility->visibility`` step also names ``gains:`` (an earlier
``visibility->gains`` step). Settings take precedence as defaults < file < command
line (``--set STEP.KEY=VALUE``, ``--set site=NAME``); every problem is reported at
once on one line naming the file and the key path
(``recipe.yaml: steps.average.config.time_factor: Input should be ...``).
"""

from __future__ import annotations

import copy
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from daskcal import DaskcalError
from daskcal.pipeline.registry import StageError, StageSpec, get_stage

_NAME = r"^[A-Za-z][A-Za-z0-9_-]*$"
_TOP_LEVEL_SETTABLE = ("name", "description", "site", "chunks", "products")


class RecipeError(DaskcalError, ValueError):
    """A recipe that cannot be loaded or does not validate (one line)."""


class SelectModel(BaseModel):
    """Which partitions of its input a step processes (all given criteria must hold)."""

    model_config = ConfigDict(extra="forbid")

    fields: list[str] | None = Field(None, min_length=1, description="Field (source) "
                                     "names, as in the observation.")
    partitions: list[str] | None = Field(None, min_length=1, description="Partition names.")

    def matches(self, partition: str, field_name: str | None) -> bool:
        """Whether a partition (with its first field's name) is selected."""
        if self.partitions is not None and partition not in self.partitions:
            return False
        return self.fields is None or field_name in self.fields


class StepModel(BaseModel):
    """One step of a recipe."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=_NAME, description="Unique step name; the output is "
                      "steps/NN-NAME.zarr in the run directory.")
    stage: str = Field(description="Registered stage name (daskcal.pipeline.registry).")
    input: str = Field(description="Visibilities to process: a recipe input or an earlier "
                       "step's output.")
    gains: str | None = Field(None, description="Gains to use (an earlier step producing "
                              "gains); only for gains+visibility->... stages.")
    image: str | None = Field(None, description="Image to use (an earlier step producing "
                              "images); only for image+visibility->... stages.")
    select: SelectModel | None = Field(None, description="Restrict the step to some "
                                       "partitions of its input (others are left out of "
                                       "its output).")
    config: dict[str, Any] = Field(default_factory=dict, description="The stage's settings.")


class InputModel(BaseModel):
    """A named observation the recipe reads (its path is given when running)."""

    model_config = ConfigDict(extra="forbid")

    description: str = Field("", description="What the observation is.")
    kind: Literal["visibility", "gains"] = Field("visibility", description="What the input "
                                                 "holds: an observation, or gains (e.g. a "
                                                 "calibrator run's products/smooth.zarr).")


class RecipeModel(BaseModel):
    """The recipe file, before the step configs are validated by their stages."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=_NAME, description="Recipe name.")
    description: str = Field("", description="What the recipe does.")
    site: str = Field("local", description="Site profile name or file (daskcal.cluster); "
                      "'threads': no cluster, Dask's threaded scheduler in this process.")
    chunks: str | int | dict[str, int] | None = Field(
        None, description="Chunking of the input observations (daskcal.data.chunking); "
        "null: as stored.")
    inputs: dict[str, InputModel] = Field(min_length=1, description="Named input "
                                          "observations, e.g. calibrator and target.")
    steps: list[StepModel] = Field(min_length=1, description="The steps, in order.")
    products: list[str] = Field(default_factory=list, description="Steps whose outputs are "
                                "the run's products (default: the last step).")


@dataclass(frozen=True)
class Step:
    """A validated step: its recipe entry, stage and config model instance."""

    index: int
    name: str
    stage: StageSpec
    input: str
    gains: str | None
    config: BaseModel
    image: str | None = None
    select: SelectModel | None = None

    @property
    def output_name(self) -> str:
        """Directory name of the output store: ``NN-name.zarr``."""
        return f"{self.index + 1:02d}-{self.name}.zarr"


@dataclass(frozen=True)
class Recipe:
    """A loaded and validated recipe.

    Attributes
    ----------
    model : RecipeModel
        The recipe as written (with overrides applied).
    steps : tuple of Step
        The steps with their validated configs.
    source : str
        The file it came from (for messages).
    """

    model: RecipeModel
    steps: tuple[Step, ...]
    source: str

    @property
    def name(self) -> str:
        """The recipe's name."""
        return self.model.name

    @property
    def products(self) -> list[str]:
        """The steps whose outputs are products (default: the last step)."""
        return list(self.model.products) or [self.steps[-1].name]

    def step(self, name: str) -> Step:
        """The step called ``name``."""
        for s in self.steps:
            if s.name == name:
                return s
        raise RecipeError(f"{self.source}: no step named {name!r}")

    def defaulted(self) -> dict[str, Any]:
        """The recipe with every setting written out (defaults filled in), as plain data."""
        data = self.model.model_dump(mode="json")
        data["inputs"] = {k: v["description"] if v["kind"] == "visibility" else v
                          for k, v in data["inputs"].items()}
        for entry, step in zip(data["steps"], self.steps, strict=True):
            entry["config"] = step.config.model_dump(mode="json")
            for key in ("gains", "image", "select"):
                if entry[key] is None:
                    del entry[key]
        data["products"] = self.products
        return data


# --------------------------------------------------------------------------- loading


def read_recipe_file(path: str | os.PathLike) -> dict[str, Any]:
    """The parsed YAML of a recipe file (a mapping); a :class:`RecipeError` otherwise."""
    import yaml

    path = Path(path)
    if not path.is_file():
        raise RecipeError(f"{path}: no such recipe file")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise RecipeError(f"{path}: not valid YAML ({' '.join(str(exc).split())})") from None
    if not isinstance(data, dict):
        raise RecipeError(f"{path}: a recipe must be a mapping at the top level")
    return data


def parse_override(item: str) -> tuple[list[str], Any]:
    """``"flag.rfi.enabled=false"`` -> ``(["flag", "rfi", "enabled"], False)`` (YAML value)."""
    import yaml

    key, sep, text = item.partition("=")
    parts = [p for p in key.strip().split(".")]
    if not sep or not key.strip() or any(not p for p in parts):
        raise RecipeError(f"--set {item!r}: expected STEP.KEY=VALUE or a top-level KEY=VALUE")
    try:
        value = yaml.safe_load(text) if text.strip() else text
    except yaml.YAMLError:
        value = text
    return parts, value


def apply_overrides(data: Mapping[str, Any], overrides: Iterable[str],
                    source: str = "<recipe>") -> dict[str, Any]:
    """A copy of the recipe data with ``--set`` overrides applied (command line wins).

    ``STEP.KEY[.SUBKEY...]=VALUE`` sets ``KEY`` in the config of step ``STEP``
    (``STEP.config.KEY`` is accepted too, and ``STEP.input``/``STEP.gains``/``STEP.image``
    set the step's wiring); ``site=``, ``chunks=``, ``name=``, ``description=`` and
    ``products=`` set top-level fields.
    """
    out = copy.deepcopy(dict(data))
    steps = out.get("steps") if isinstance(out.get("steps"), list) else []
    for item in overrides:
        parts, value = parse_override(item)
        if len(parts) == 1 and parts[0] in _TOP_LEVEL_SETTABLE:
            out[parts[0]] = value
            continue
        matches = [s for s in steps if isinstance(s, dict) and s.get("name") == parts[0]]
        if not matches:
            names = [s.get("name") for s in steps if isinstance(s, dict)]
            raise RecipeError(f"{source}: --set {item!r}: no step named {parts[0]!r} "
                              f"(steps: {', '.join(map(str, names))})")
        if len(parts) < 2:
            raise RecipeError(f"{source}: --set {item!r}: name a key of step {parts[0]!r}")
        step = matches[0]
        rest = parts[1:]
        if rest[0] in ("input", "gains", "image", "stage", "select") and len(rest) == 1:
            step[rest[0]] = value
            continue
        if rest[0] == "config" and len(rest) > 1:
            rest = rest[1:]
        tree = step.setdefault("config", {})
        if not isinstance(tree, dict):
            raise RecipeError(f"{source}: steps.{parts[0]}.config: must be a mapping")
        for part in rest[:-1]:
            nxt = tree.setdefault(part, {})
            if not isinstance(nxt, dict):
                raise RecipeError(f"{source}: --set {item!r}: "
                                  f"steps.{parts[0]}.config.{part} is not a mapping")
            tree = nxt
        tree[rest[-1]] = value
    return out


def _loc(loc: Iterable[Any]) -> str:
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


def _errors(exc: ValidationError, prefix: str) -> list[str]:
    out = []
    for err in exc.errors():
        loc = [p for p in err["loc"] if not (isinstance(p, str) and "[" in p and "]" in p)]
        where = ".".join(filter(None, [prefix, _loc(loc)]))
        msg = " ".join(str(err["msg"]).split())
        if msg.startswith("Value error, "):
            msg = msg[len("Value error, "):]
        out.append(f"{where}: {msg}" if where else msg)
    return out


def _normalise_inputs(data: dict[str, Any]) -> None:
    """Accept ``inputs`` as a list of names or ``{name: description}`` too."""
    inputs = data.get("inputs")
    if isinstance(inputs, list):
        data["inputs"] = {str(k): {} for k in inputs}
    elif isinstance(inputs, dict):
        data["inputs"] = {k: {"description": v} if isinstance(v, str) else ({} if v is None else v)
                          for k, v in inputs.items()}


def _resolve_files(config: BaseModel, file_fields: Iterable[str], source: str) -> BaseModel:
    """Relative file paths that do not exist from the working directory but do from the
    recipe file's directory are made absolute (recipes can ship their sky models)."""
    base = Path(source).parent
    update = {}
    for key in file_fields:
        value = getattr(config, key, None)
        if (isinstance(value, str) and value and not Path(value).is_absolute()
                and not Path(value).exists() and (base / value).exists()):
            update[key] = str((base / value).resolve())
    return config.model_copy(update=update) if update else config


def validate_recipe(data: Mapping[str, Any], source: str = "<recipe>") -> Recipe:
    """Validate recipe data (file content with overrides applied) into a :class:`Recipe`.

    Raises
    ------
    RecipeError
        Every problem on one line: ``"SOURCE: key.path: problem; key.path: problem"``.
    """
    data = copy.deepcopy(dict(data))
    _normalise_inputs(data)
    try:
        model = RecipeModel.model_validate(data)
    except ValidationError as exc:
        raise RecipeError(f"{source}: " + "; ".join(_errors(exc, ""))) from None

    problems: list[str] = []
    steps: list[Step] = []
    seen: dict[str, Step | None] = dict.fromkeys(model.inputs)
    gain_inputs = {k for k, v in model.inputs.items() if v.kind == "gains"}
    for i, entry in enumerate(model.steps):
        where = f"steps.{entry.name}"
        if entry.name in seen:
            problems.append(f"{where}.name: {entry.name!r} is already an input or a step")
        try:
            spec = get_stage(entry.stage)
        except StageError as exc:
            problems.append(f"{where}.stage: {exc}")
            seen[entry.name] = None
            continue
        config = None
        for rule in spec.rules:
            for key in rule.missing(entry.config, spec.config_model):
                problems.append(f"{where}.config.{key}: {rule.describe()}")
        try:
            config = spec.config_model.model_validate(entry.config)
        except ValidationError as exc:
            problems += _errors(exc, f"{where}.config")
        else:
            config = _resolve_files(config, spec.file_fields, source)
        src_step = seen.get(entry.input)
        if entry.input not in seen:
            problems.append(f"{where}.input: {entry.input!r} is neither an input nor an "
                            "earlier step")
        elif src_step is not None and src_step.stage.produces_product:
            problems.append(f"{where}.input: step {entry.input!r} writes product files, "
                            "which no step can read")
        elif entry.input in gain_inputs:
            if not spec.gains_input:
                problems.append(f"{where}.input: input {entry.input!r} holds gains; stage "
                                f"{spec.name!r} ({spec.kind}) reads visibilities")
        elif spec.gains_input:
            if src_step is None or not src_step.stage.produces_gains:
                problems.append(f"{where}.input: stage {spec.name!r} ({spec.kind}) needs "
                                "an earlier step producing gains")
        elif src_step is not None and src_step.stage.produces_gains:
            problems.append(f"{where}.input: step {entry.input!r} produces gains, not "
                            "visibilities")
        elif src_step is not None and src_step.stage.produces_image:
            problems.append(f"{where}.input: step {entry.input!r} produces images, not "
                            "visibilities (name it with image:)")
        if spec.needs_image:
            src = seen.get(entry.image) if entry.image else None
            if entry.image is None:
                problems.append(f"{where}.image: required by stage {spec.name!r} "
                                f"({spec.kind})")
            elif src is None or not src.stage.produces_image:
                problems.append(f"{where}.image: {entry.image!r} is not an earlier step "
                                "producing images")
        elif entry.image is not None:
            problems.append(f"{where}.image: stage {spec.name!r} ({spec.kind}) takes no image")
        if entry.select is not None and spec.gains_input:
            problems.append(f"{where}.select: stage {spec.name!r} ({spec.kind}) reads gains, "
                            "whose partitions follow its input step")
        if spec.needs_gains:
            src = seen.get(entry.gains) if entry.gains else None
            if entry.gains is None:
                problems.append(f"{where}.gains: required by stage {spec.name!r} "
                                f"({spec.kind})")
            elif entry.gains not in gain_inputs and (src is None
                                                     or not src.stage.produces_gains):
                problems.append(f"{where}.gains: {entry.gains!r} is neither a gains input "
                                "nor an earlier step producing gains")
        elif entry.gains is not None:
            problems.append(f"{where}.gains: stage {spec.name!r} ({spec.kind}) takes no gains")
        step = Step(i, entry.name, spec, entry.input, entry.gains, config, entry.image,
                    entry.select) if config is not None else None
        seen.setdefault(entry.name, step)
        if step is not None:
            steps.append(step)
    names = [s.name for s in model.steps]
    for product in model.products:
        if product not in names:
            problems.append(f"products: {product!r} is not a step")
    if problems:
        raise RecipeError(f"{source}: " + "; ".join(problems))
    return Recipe(model, tuple(steps), source)


def load_recipe(path: str | os.PathLike, overrides: Iterable[str] = ()) -> Recipe:
    """Read, override and validate a recipe file.

    Parameters
    ----------
    path : str or path-like
        The YAML file.
    overrides : iterable of str
        ``--set`` items (``STEP.KEY=VALUE``), applied over the file.

    Returns
    -------
    Recipe

    Raises
    ------
    RecipeError
        On any problem (one line naming the file and every key path).
    """
    source = os.fspath(path)
    data = apply_overrides(read_recipe_file(path), overrides, source)
    return validate_recipe(data, source)


def write_defaulted(recipe: Recipe, path: str | os.PathLike | None = None) -> str:
    """The recipe with every default written out, as YAML (also written to ``path``)."""
    import yaml

    text = (f"# {recipe.name}: every setting written out (generated from {recipe.source})\n"
            + yaml.safe_dump(recipe.defaulted(), sort_keys=False, default_flow_style=False))
    if path is not None:
        Path(path).write_text(text)
    return text


__all__ = ["InputModel", "Recipe", "RecipeError", "RecipeModel", "SelectModel", "Step",
           "StepModel",
           "apply_overrides", "load_recipe", "parse_override", "read_recipe_file",
           "validate_recipe", "write_defaulted"]
