"""The stage registry: stage name -> (config model, function, kind).

A recipe step names a stage; the runner looks it up here. The built-in stages
(:mod:`daskcal.pipeline.builtin`) are always present; further stages come from
Python entry points of the group ``daskcal.stages`` (each entry point names a
:class:`StageSpec`), or from :func:`register_stage` at run time.

Kinds of stage
--------------
``"visibility->visibility"``
    ``function(xds, config, context) -> xds``: one visibility partition in, one out,
    called once per partition.
``"visibility->gains"``
    ``function(xds, config, context) -> gains_xds``: a gains dataset per partition.
``"gains+visibility->visibility"``
    ``function(xds, gains_xds, config, context) -> xds``.
``"gains->gains"``
    ``function(gains_xds, config, context) -> gains_xds``: the step's ``input`` is an
    earlier step producing gains (smoothing, re-referencing).
``"gains+visibility->gains"``
    ``function(xds, gains_xds, config, context) -> gains_xds``: gains mapped onto a
    visibility partition (calibrator -> target transfer).
``"gains->product"``
    ``function(gains_xds, config, context) -> list of paths``: writes export files
    (H5parm ...) into ``context.output_dir`` (``RUN_DIR/products``); the step's output
    is those files, not a zarr store.
``"visibility->image"``
    ``function(xds, config, context) -> image_xds``: an image dataset (``RESTORED``,
    ``MODEL`` ... with dims ``(l, m)``, see :func:`daskcal.stages.imaging.image`).
``"gains+visibility->image"``
    ``function(xds, gains_xds, config, context) -> image_xds`` (e.g. facet imaging with
    direction-dependent gains).
``"image+visibility->visibility"``
    ``function(xds, image_xds, config, context) -> xds``: the step names an earlier
    image step with ``image:`` (e.g. predict the model image for self-calibration).
``"image+visibility->gains"``
    ``function(xds, image_xds, config, context) -> gains_xds`` (e.g. direction-dependent
    solves against the components of a model image).
``"image+gains+visibility->image"``
    ``function(xds, gains_xds, image_xds, config, context) -> image_xds`` (facet imaging
    with DD gains and the sky model of an earlier image).

Functions build lazy graphs and never compute: the runner decides when to execute.
The exception are stages producing images: deconvolution is iterative, so they
compute (one residual per major cycle) and return in-memory images, which the runner
writes as ``steps/NN-name.zarr`` and exports as FITS and thumbnails.
``context`` (a :class:`StageContext`) gives the partition name and its node (with the
antenna and field datasets); a function that has no ``context`` parameter is called
without it.

Adding a stage (template)
-------------------------
In your package, ``mypkg/stages.py``::

    from pydantic import BaseModel, ConfigDict, Field
    from daskcal.pipeline.registry import StageSpec

    class ScaleConfig(BaseModel):
        '''Settings of the ``scale`` stage (shown as a form by the portal).'''
        model_config = ConfigDict(extra="forbid")
        factor: float = Field(1.0, gt=0, description="multiply the visibilities by this")

    def scale(xds, config: ScaleConfig):
        '''Lazily scale VISIBILITY; never call .compute() here.'''
        return xds.assign(VISIBILITY=xds["VISIBILITY"] * config.factor)

    SCALE = StageSpec(name="scale", config_model=ScaleConfig, function=scale,
                      kind="visibility->visibility", description="scale the data")

and in its ``pyproject.toml``::

    [project.entry-points."daskcal.stages"]
    scale = "mypkg.stages:SCALE"

The entry point's name must equal ``StageSpec.name``. Dependencies between config
fields that JSON schema should know about are :class:`ConfigRule` s (``rules=``);
config fields holding file paths whose content matters (sky models) are listed in
``file_fields`` so that the runner fingerprints the files.
"""

from __future__ import annotations

import inspect
import logging
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, get_args

import xarray as xr
from pydantic import BaseModel

from daskcal import DaskcalError, DaskcalWarning

log = logging.getLogger(__name__)

#: The entry-point group of stages.
ENTRY_POINT_GROUP = "daskcal.stages"

StageKind = Literal["visibility->visibility", "visibility->gains",
                    "gains+visibility->visibility", "gains->gains",
                    "gains+visibility->gains", "gains->product", "visibility->image",
                    "gains+visibility->image", "image+visibility->visibility",
                    "image+visibility->gains", "image+gains+visibility->image"]
#: The kinds of stage, in the order of :data:`StageKind`.
STAGE_KINDS: tuple[str, ...] = get_args(StageKind)


class StageError(DaskcalError, KeyError):
    """An unknown stage or an invalid stage registration."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


@dataclass(frozen=True)
class ConfigRule:
    """A dependency between config fields: when ``when`` holds, ``require`` must be given.

    Exported into the JSON schema as ``if``/``then`` and checked on the settings as
    written (file and command line), before defaults are filled in. A key of ``when``
    that is absent counts with the model's default, as JSON schema's ``properties``
    does when the default equals the ``when`` value.

    Parameters
    ----------
    when : mapping of str to JSON value
        Field values (top-level fields of the config) that trigger the rule.
    require : tuple of str
        Fields that must then be written explicitly.
    """

    when: Mapping[str, Any]
    require: tuple[str, ...]

    def triggered(self, raw: Mapping[str, Any], model: type[BaseModel]) -> bool:
        """Whether ``raw`` (settings as written) meets ``when``."""
        for key, value in self.when.items():
            if key in raw:
                if raw[key] != value:
                    return False
            else:
                fld = model.model_fields.get(key)
                if fld is None or fld.is_required() or fld.get_default(
                        call_default_factory=True) != value:
                    return False
        return True

    def missing(self, raw: Mapping[str, Any], model: type[BaseModel]) -> list[str]:
        """The required fields absent from ``raw`` (empty if the rule is not triggered)."""
        if not self.triggered(raw, model):
            return []
        return [k for k in self.require if k not in raw]

    def json_schema(self, model: type[BaseModel]) -> dict[str, Any]:
        """The rule as a JSON-schema ``if``/``then`` clause."""
        props = {k: {"const": v} for k, v in self.when.items()}
        must = []
        for key, value in self.when.items():
            fld = model.model_fields.get(key)
            if fld is None or fld.is_required() or fld.get_default(
                    call_default_factory=True) != value:
                must.append(key)
        cond: dict[str, Any] = {"properties": props}
        if must:
            cond["required"] = must
        return {"if": cond, "then": {"required": list(self.require)}}

    def describe(self) -> str:
        """One-line English text of the rule."""
        cond = " and ".join(f"{k} is {_json_text(v)}" for k, v in self.when.items())
        return f"required when {cond}"


def _json_text(value: Any) -> str:
    import json

    return json.dumps(value)


@dataclass(frozen=True)
class StageContext:
    """What a stage function may need beyond the dataset and its config.

    Attributes
    ----------
    step : str
        The recipe step's name.
    partition : str
        The partition's name in the observation.
    node : xarray.DataTree
        The partition's node (its ``antenna_xds`` and ``field_and_source_base_xds``
        children hold antenna positions and phase centres). For stages whose input is
        gains, the node of the visibilities those gains were solved from.
    output_dir : pathlib.Path or None
        Where ``"gains->product"`` stages write their files (``RUN_DIR/products``);
        None for other kinds.
    """

    step: str
    partition: str
    node: xr.DataTree
    output_dir: Path | None = None


@dataclass(frozen=True)
class StageSpec:
    """A stage as recipes see it.

    Parameters
    ----------
    name : str
        The name recipes use (``stage: NAME``).
    config_model : type of pydantic.BaseModel
        The stage's settings; its JSON schema becomes part of the recipe schema.
    function : callable
        Builds the lazy result (see the module notes for the signature of each kind).
    kind : StageKind
        One of :data:`STAGE_KINDS` (see the module notes).
    description : str
        One line for listings and forms.
    rules : tuple of ConfigRule
        Dependencies between config fields.
    file_fields : tuple of str
        Config fields that name files whose content enters the step's fingerprint.
    """

    name: str
    config_model: type[BaseModel]
    function: Callable[..., Any]
    kind: StageKind
    description: str = ""
    rules: tuple[ConfigRule, ...] = ()
    file_fields: tuple[str, ...] = ()
    _takes_context: bool = field(default=False, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.kind not in STAGE_KINDS:
            raise StageError(f"stage {self.name!r}: kind {self.kind!r} is not one of "
                             f"{list(STAGE_KINDS)}")
        if not (isinstance(self.config_model, type) and issubclass(self.config_model, BaseModel)):
            raise StageError(f"stage {self.name!r}: config_model must be a pydantic model class")
        try:
            takes = "context" in inspect.signature(self.function).parameters
        except (TypeError, ValueError):
            takes = False
        object.__setattr__(self, "_takes_context", takes)

    @property
    def produces_gains(self) -> bool:
        """Whether the stage's output is a gains dataset."""
        return self.kind in ("visibility->gains", "gains->gains", "gains+visibility->gains",
                             "image+visibility->gains")

    @property
    def produces_image(self) -> bool:
        """Whether the stage's output is an image dataset (in memory, computed)."""
        return self.kind.endswith("->image")

    @property
    def needs_gains(self) -> bool:
        """Whether the stage takes a gains dataset (``gains:``) besides the visibilities."""
        return self.kind in ("gains+visibility->visibility", "gains+visibility->gains",
                             "gains+visibility->image", "image+gains+visibility->image")

    @property
    def needs_image(self) -> bool:
        """Whether the stage takes an image dataset (``image:``) besides the visibilities."""
        return self.kind.startswith("image+")

    @property
    def gains_input(self) -> bool:
        """Whether the step's ``input`` is gains (an earlier step producing gains)."""
        return self.kind in ("gains->gains", "gains->product")

    @property
    def produces_product(self) -> bool:
        """Whether the stage writes product files instead of a zarr store."""
        return self.kind == "gains->product"

    def __call__(self, xds: xr.Dataset, config: BaseModel, context: StageContext,
                 gains: xr.Dataset | None = None, image: xr.Dataset | None = None) -> Any:
        """Call the stage function with the arguments of its kind.

        For stages whose input is gains, ``xds`` is the gains dataset. The order is
        ``(xds, [gains], [image], config)``.
        """
        args: tuple = ((xds,) + ((gains,) if self.needs_gains else ())
                       + ((image,) if self.needs_image else ()) + (config,))
        if self._takes_context:
            return self.function(*args, context=context)
        return self.function(*args)


_REGISTRY: dict[str, StageSpec] = {}
_LOADED = False


def _load() -> dict[str, StageSpec]:
    global _LOADED
    if _LOADED:
        return _REGISTRY
    from importlib.metadata import entry_points

    from daskcal.pipeline.builtin import BUILTIN_STAGES

    for spec in BUILTIN_STAGES:
        _REGISTRY.setdefault(spec.name, spec)
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        try:
            spec = ep.load()
            if callable(spec) and not isinstance(spec, StageSpec):
                spec = spec()
            if not isinstance(spec, StageSpec):
                raise TypeError(f"{ep.value} is a {type(spec).__name__}, not a StageSpec")
            if spec.name != ep.name:
                raise TypeError(f"entry point {ep.name!r} names a stage called {spec.name!r}")
        except Exception as exc:  # a broken plug-in must not stop the others
            warnings.warn(f"stage entry point {ep.name!r} ({ep.value}) not loaded: "
                          f"{type(exc).__name__}: {exc}", DaskcalWarning, stacklevel=3)
            continue
        known = _REGISTRY.get(spec.name)
        if known is not None and known is not spec:
            if known.function is spec.function and known.config_model is spec.config_model:
                continue
            warnings.warn(f"stage entry point {ep.name!r} ({ep.value}) ignored: a stage of "
                          "that name is already registered", DaskcalWarning, stacklevel=3)
            continue
        _REGISTRY[spec.name] = spec
    _LOADED = True
    return _REGISTRY


def reload_stages() -> None:
    """Forget the registry; the next look-up rescans built-ins and entry points."""
    global _LOADED
    _REGISTRY.clear()
    _LOADED = False


def register_stage(spec: StageSpec, *, replace: bool = False) -> StageSpec:
    """Add a stage at run time (for notebooks and tests; packages use entry points).

    Parameters
    ----------
    spec : StageSpec
    replace : bool
        Replace a stage of the same name; otherwise that is an error.

    Returns
    -------
    StageSpec
        ``spec``.
    """
    reg = _load()
    if spec.name in reg and not replace and reg[spec.name] is not spec:
        raise StageError(f"stage {spec.name!r} is already registered")
    reg[spec.name] = spec
    return spec


def get_stage(name: str) -> StageSpec:
    """The registered stage ``name``.

    Raises
    ------
    StageError
        If there is none (the message lists the known stages).
    """
    reg = _load()
    if name not in reg:
        raise StageError(f"unknown stage {name!r} (known: {', '.join(sorted(reg))})")
    return reg[name]


def available_stages() -> dict[str, StageSpec]:
    """Every registered stage, by name (a copy)."""
    return dict(sorted(_load().items()))


__all__ = ["ENTRY_POINT_GROUP", "STAGE_KINDS", "ConfigRule", "StageContext", "StageError",
           "StageKind", "StageSpec", "available_stages", "get_stage", "register_stage",
           "reload_stages"]
