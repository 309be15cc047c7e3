"""SURVEY.yaml: many observations x one recipe over several sites, and its pydantic model.

A survey file names the recipe, the sites (each a site profile plus how many
observations it runs at once, where staged data goes and how fast data reaches it),
the observations (their inputs and the site holding their data), where products
return and where the survey's state lives::

    recipe: ../recipes/preprocess.yaml     # relative paths: to this file's directory
    overrides: [average.time_factor=2]     # --set items of the recipe
    output: /archive/survey-2026           # products return to OUTPUT/OBS/
    database: null                         # default sqlite:///OUTPUT/survey.db
    retries: {max_attempts: 3, backoff_s: 30}
    site_failure_threshold: 3              # failures in a row that disable a site
    sites:
      amsterdam:
        profile: ../sites/local.yaml       # a profile file, or an inline profile mapping
        capacity: 2                        # observations run at once
        data_root: /data/amsterdam         # staged inputs and run directories go here
        bandwidth: 200MB                   # staging speed into the site, per second
    observations:
      - name: L123456
        inputs: {target: /data/amsterdam/L123456.zarr}
        location: amsterdam                # the site holding the data (empty: nowhere)

:func:`load_survey` reads and validates a file and reports every problem on one line
naming the file; :func:`survey_schema` is the JSON schema (every field described).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from daskcal import DaskcalError
from daskcal.cluster._errors import format_validation_error

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
_DB_SCHEMES = ("sqlite://", "postgresql://", "postgres://")


class SurveyError(DaskcalError, ValueError):
    """A survey file that cannot be loaded or does not validate (one line)."""


def _check_name(value: str) -> str:
    if not _NAME.match(value):
        raise ValueError(f"{value!r} is not a name of letters, digits, '.', '_' and '-'")
    return value


def parse_bandwidth(value: str | float | int) -> float:
    """A staging bandwidth (``"100MB"``, ``"1GiB"``, or bytes as a number) in bytes per second.

    Parameters
    ----------
    value : str or float
        A size per second as dask's ``parse_bytes`` reads it, or bytes per second.

    Returns
    -------
    float
        Bytes per second (> 0).

    Raises
    ------
    ValueError
        If ``value`` is not a positive size.
    """
    from dask.utils import parse_bytes

    if isinstance(value, int | float):
        n = float(value)
    else:
        text = str(value).strip().removesuffix("/s")
        try:
            n = float(parse_bytes(text))
        except (ValueError, TypeError):
            raise ValueError(f"{value!r} is not a bandwidth like '100MB' (per second)") from None
    if n <= 0:
        raise ValueError("must be a positive bandwidth")
    return n


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SiteEntry(_Model):
    """One site of the survey: a Dask cluster and the storage next to it."""

    profile: str | dict[str, Any] = Field(
        ..., description="site profile: a YAML file (relative to the survey file) or the "
        "profile itself as a mapping (kind local/slurm/kubernetes/address)")
    capacity: int = Field(1, ge=1, description="observations run on this site at once")
    data_root: str = Field(
        ..., min_length=1, description="directory on the site's file system receiving staged "
        "inputs (DATA_ROOT/staged/OBS) and run directories (DATA_ROOT/runs/OBS)")
    bandwidth: str | float = Field(
        "100MB", description="estimated staging speed into this site, per second, like "
        "'100MB' or '1GiB' (or bytes per second as a number)")

    @field_validator("bandwidth")
    @classmethod
    def _bandwidth(cls, value: str | float) -> str | float:
        parse_bandwidth(value)
        return value


class ObservationEntry(_Model):
    """One observation: the recipe's inputs and where they are."""

    name: str = Field(..., description="unique name (the products go to OUTPUT/NAME)")
    inputs: dict[str, str] = Field(
        ..., min_length=1, description="path of each of the recipe's inputs, like "
        "{calibrator: cal.zarr, target: target.zarr} (relative to the survey file)")
    location: str | None = Field(
        None, description="the site holding these inputs (no staging there); empty: no site "
        "holds them, they are staged wherever the observation runs")

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        return _check_name(value)


class RetryConfig(_Model):
    """Retries of failed observations."""

    max_attempts: int = Field(3, ge=1, description="attempts per observation before it is "
                              "marked failed")
    backoff_s: float = Field(30.0, ge=0, description="wait before the first retry, seconds; "
                             "doubled after each further failure")


class SurveyConfig(_Model):
    """A survey: one recipe over many observations, on several sites."""

    model_config = ConfigDict(extra="forbid", title="daskcal survey")

    recipe: str = Field(..., min_length=1, description="the recipe file (relative to the "
                        "survey file)")
    overrides: list[str] = Field(default_factory=list, description="--set items of the "
                                 "recipe, STEP.KEY=VALUE")
    output: str = Field(..., min_length=1, description="directory receiving each "
                        "observation's products, weblog and provenance (OUTPUT/OBS/)")
    database: str | None = Field(
        None, description="the survey's state: 'sqlite:///PATH' or 'postgresql://...' "
        "(needs psycopg); empty: sqlite:///OUTPUT/survey.db")
    retries: RetryConfig = Field(default_factory=RetryConfig, description="retries of failed "
                                 "observations")
    site_failure_threshold: int = Field(
        3, ge=1, description="failed runs in a row after which a site is disabled and its "
        "waiting observations placed elsewhere")
    sites: dict[str, SiteEntry] = Field(..., min_length=1, description="the sites by name")
    observations: list[ObservationEntry] = Field(..., min_length=1,
                                                 description="the observations")

    @field_validator("database")
    @classmethod
    def _database(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(_DB_SCHEMES):
            raise ValueError(f"{value!r} is not a database URL like 'sqlite:///survey.db' or "
                             "'postgresql://host/db'")
        return value

    @field_validator("sites")
    @classmethod
    def _site_names(cls, value: dict[str, SiteEntry]) -> dict[str, SiteEntry]:
        for name in value:
            _check_name(name)
        return value

    @model_validator(mode="after")
    def _consistent(self) -> SurveyConfig:
        problems = []
        seen: set[str] = set()
        for i, obs in enumerate(self.observations):
            if obs.name in seen:
                problems.append(f"@observations[{i}].name: {obs.name!r} given twice")
            seen.add(obs.name)
            if obs.location is not None and obs.location not in self.sites:
                problems.append(f"@observations[{i}].location: {obs.location!r} is not one of "
                                f"the sites ({', '.join(self.sites)})")
        if problems:
            raise ValueError("; ".join(problems))
        return self


@dataclass(frozen=True)
class Survey:
    """A validated survey with every path resolved.

    Attributes
    ----------
    config : SurveyConfig
        The validated file.
    source : pathlib.Path
        The survey file (absolute).
    recipe : pathlib.Path
        The recipe file (absolute).
    output : pathlib.Path
        The output directory (absolute).
    database : str
        The database URL (the default filled in).
    """

    config: SurveyConfig
    source: Path
    recipe: Path
    output: Path
    database: str

    def path(self, value: str | os.PathLike[str]) -> Path:
        """``value`` relative to the survey file's directory, made absolute."""
        p = Path(os.path.expandvars(os.path.expanduser(os.fspath(value))))
        return Path(os.path.normpath(p if p.is_absolute() else self.source.parent / p))

    def inputs(self, name: str) -> dict[str, Path]:
        """The absolute input paths of observation ``name``."""
        obs = next(o for o in self.config.observations if o.name == name)
        return {k: self.path(v) for k, v in obs.inputs.items()}

    def data_root(self, site: str) -> Path:
        """The absolute data root of ``site``."""
        return self.path(self.config.sites[site].data_root)

    def bandwidth(self, site: str) -> float:
        """The staging bandwidth estimate of ``site``, bytes per second."""
        return parse_bandwidth(self.config.sites[site].bandwidth)


def survey_schema() -> dict[str, Any]:
    """The JSON schema of a survey file (every property has a ``description``)."""
    return SurveyConfig.model_json_schema()


def survey_from_dict(data: Any, source: str | os.PathLike[str] = "survey.yaml",
                     *, check_paths: bool = True) -> Survey:
    """Validate a survey given as a mapping.

    Parameters
    ----------
    data : mapping
        The parsed YAML document.
    source : path-like
        The file it came from: named in errors; relative paths are relative to its directory.
    check_paths : bool
        Also check that the recipe loads, that every observation gives exactly the recipe's
        inputs, that they exist, and that site profile files load.

    Returns
    -------
    Survey

    Raises
    ------
    SurveyError
        Every problem on one line starting with ``source``.
    """
    src = Path(source).absolute()
    if not isinstance(data, dict):
        raise SurveyError(f"{source}: a survey must be a mapping, not {type(data).__name__}")
    try:
        cfg = SurveyConfig.model_validate(data)
    except ValidationError as exc:
        raise SurveyError(format_validation_error(exc, str(source))) from None
    probe = Survey(cfg, src, src, src, "")
    output = probe.path(cfg.output)
    database = cfg.database or f"sqlite:///{output / 'survey.db'}"
    survey = Survey(cfg, src, probe.path(cfg.recipe), output, database)
    if check_paths:
        _check_paths(survey, str(source))
    return survey


def _check_paths(survey: Survey, source: str) -> None:
    from daskcal.cluster.profile import profile_from_dict
    from daskcal.pipeline.recipe import load_recipe

    try:
        recipe = load_recipe(survey.recipe, survey.config.overrides)
    except DaskcalError as exc:
        raise SurveyError(f"{source}: recipe: {exc}") from None
    wanted = list(recipe.model.inputs)
    problems = []
    for name, entry in survey.config.sites.items():
        try:
            if isinstance(entry.profile, dict):
                profile_from_dict({"name": name, **entry.profile}, f"sites.{name}.profile")
            else:
                site_profile(survey, name)
        except DaskcalError as exc:
            problems.append(f"sites.{name}.profile: {exc}")
    for i, obs in enumerate(survey.config.observations):
        where = f"observations[{i}] ({obs.name})"
        missing = [k for k in wanted if k not in obs.inputs]
        unknown = [k for k in obs.inputs if k not in wanted]
        if missing:
            problems.append(f"{where}: input {missing[0]!r} of the recipe not given")
        if unknown:
            problems.append(f"{where}: input {unknown[0]!r} is not one of the recipe's "
                            f"({', '.join(wanted)})")
        for key, path in survey.inputs(obs.name).items():
            if not path.exists():
                problems.append(f"{where}: input {key!r}: no such file or directory {path}")
    if problems:
        raise SurveyError(f"{source}: " + "; ".join(problems))


def site_profile(survey: Survey, name: str) -> Any:
    """The validated :class:`~daskcal.cluster.SiteProfile` of survey site ``name``.

    The profile is named after the survey's site (its own ``name`` is replaced).
    """
    from daskcal.cluster.profile import load_profile, profile_from_dict

    entry = survey.config.sites[name]
    if isinstance(entry.profile, dict):
        return profile_from_dict({**entry.profile, "name": name}, f"sites.{name}.profile")
    profile = load_profile(survey.path(entry.profile))
    return profile.model_copy(update={"name": name})


def load_survey(path: str | os.PathLike[str], *, check_paths: bool = True) -> Survey:
    """Read and validate a survey file (YAML).

    Parameters
    ----------
    path : path-like
        The SURVEY.yaml file.
    check_paths : bool
        See :func:`survey_from_dict`.

    Returns
    -------
    Survey

    Raises
    ------
    SurveyError
        If the file is missing, not YAML or invalid: one line naming it and every problem.
    """

    from daskcal._files import read_yaml

    source = os.fspath(path)
    data = read_yaml(path, "survey file", SurveyError)
    return survey_from_dict(data, source, check_paths=check_paths)


__all__ = ["ObservationEntry", "RetryConfig", "SiteEntry", "Survey", "SurveyConfig",
           "SurveyError", "load_survey", "parse_bandwidth", "site_profile", "survey_from_dict",
           "survey_schema"]
