"""The built-in stages of recipes: thin adapters over :mod:`daskcal.stages`.

Each adapter takes what the runner gives (a partition dataset, its validated config
and a :class:`~daskcal.pipeline.registry.StageContext`) and calls the stage. Stages
whose library function takes more than a config (a sky model, a phase centre,
antenna positions) get those from the config (files) or the partition's metadata.
Importing this module imports the stage modules (and numba): the registry imports
it only when a stage is first looked up.
"""

from __future__ import annotations

import numpy as np
import xarray as xr
from pydantic import Field

from daskcal import DaskcalError
from daskcal.data.model import ANTENNA_NODE, field_xds_of
from daskcal.pipeline.registry import ConfigRule, StageContext, StageSpec
from daskcal.stages.apply import ApplyConfig, apply
from daskcal.stages.average import AverageConfig, average
from daskcal.stages.demix import DemixConfig, demix
from daskcal.stages.flag import FlagConfig, flag
from daskcal.stages.predict import PredictConfig, predict
from daskcal.stages.preflag import PreflagConfig, preflag
from daskcal.stages.solve import SolveConfig, solve


class PredictStepConfig(PredictConfig):
    """Settings of the ``predict`` step: the stage's settings and the sky model file."""

    sky_model: str = Field(description="Sky model file (makesourcedb/BBS text format), "
                           "relative to the working directory.")


def phase_centre(context: StageContext) -> np.ndarray:
    """J2000 (RA, Dec) of the partition's phase centre, radians (its first field)."""
    try:
        fxds = field_xds_of(context.node)
        pc = np.asarray(fxds["FIELD_PHASE_CENTER_DIRECTION"].values, dtype=np.float64)
    except KeyError as exc:
        raise DaskcalError(f"step {context.step}: partition {context.partition} has no "
                           "phase centre (FIELD_PHASE_CENTER_DIRECTION)") from exc
    return pc.reshape(-1, 2)[0]


def _flag(xds: xr.Dataset, config: FlagConfig) -> xr.Dataset:
    return flag(xds, config)


def _preflag(xds: xr.Dataset, config: PreflagConfig) -> xr.Dataset:
    return preflag(xds, config)


def _average(xds: xr.Dataset, config: AverageConfig) -> xr.Dataset:
    return average(xds, config)


def _predict(xds: xr.Dataset, config: PredictStepConfig, context: StageContext) -> xr.Dataset:
    from daskcal.sky.bbs import read_bbs

    sky = read_bbs(config.sky_model)
    base = PredictConfig.model_validate(config.model_dump(exclude={"sky_model"}))
    return predict(xds, sky, phase_centre(context), config=base)


def _demix(xds: xr.Dataset, config: DemixConfig, context: StageContext) -> xr.Dataset:
    if ANTENNA_NODE not in context.node.children:
        raise DaskcalError(f"step {context.step}: partition {context.partition} has no "
                           "antenna positions")
    ant = context.node[ANTENNA_NODE].to_dataset(inherit=False)
    return demix(xds, config, phase_centre_rad=phase_centre(context),
                 antenna_itrf_m=np.asarray(ant["ANTENNA_POSITION"].values),
                 antenna_diameter_m=np.asarray(ant["ANTENNA_DISH_DIAMETER"].values)
                 if "ANTENNA_DISH_DIAMETER" in ant else None)


def _solve(xds: xr.Dataset, config: SolveConfig) -> xr.Dataset:
    return solve(xds, config=config)


def _apply(xds: xr.Dataset, gains: xr.Dataset, config: ApplyConfig) -> xr.Dataset:
    return apply(xds, gains, config)


FLAG = StageSpec("flag", FlagConfig, _flag, "visibility->visibility",
                 "selections, SumThreshold RFI and MAD outlier flagging")
PREFLAG = StageSpec("preflag", PreflagConfig, _preflag, "visibility->visibility",
                    "selection flagging only (baselines, uv range, times, channels)")
AVERAGE = StageSpec("average", AverageConfig, _average, "visibility->visibility",
                    "time and channel averaging")
PREDICT = StageSpec("predict", PredictStepConfig, _predict, "visibility->visibility",
                    "add model visibilities of a sky model file (data group 'model')",
                    file_fields=("sky_model",))
DEMIX = StageSpec("demix", DemixConfig, _demix, "visibility->visibility",
                  "subtract A-team sources",
                  rules=(ConfigRule(when={"enabled": True}, require=("sources",)),))
SOLVE = StageSpec("solve", SolveConfig, _solve, "visibility->gains",
                  "direction-independent gains against a model data group")
APPLY = StageSpec("apply", ApplyConfig, _apply, "gains+visibility->visibility",
                  "correct visibilities with gains (data group 'corrected')")

#: The stages every daskcal installation has.
BUILTIN_STAGES: tuple[StageSpec, ...] = (FLAG, PREFLAG, AVERAGE, PREDICT, DEMIX, SOLVE, APPLY)

__all__ = ["APPLY", "AVERAGE", "BUILTIN_STAGES", "DEMIX", "FLAG", "PREDICT", "PREFLAG",
           "SOLVE", "PredictStepConfig", "phase_centre"]
