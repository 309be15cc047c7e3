"""The built-in stages of recipes: thin adapters over :mod:`daskcal.stages`.

Each adapter takes what the runner gives (a partition dataset, its validated config
and a :class:`~daskcal.pipeline.registry.StageContext`) and calls the stage. Stages
whose library function takes more than a config (a sky model, a phase centre,
antenna positions) get those from the config (files) or the partition's metadata.
Importing this module imports the stage modules (and numba): the registry imports
it only when a stage is first looked up.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

import numpy as np
import xarray as xr
from pydantic import BaseModel, ConfigDict, Field

from daskcal import DaskcalError
from daskcal.data.model import ANTENNA_NODE, field_xds_of
from daskcal.pipeline.imagestep import partition_field
from daskcal.pipeline.imagingsteps import CUBE, FACET_IMAGE, FACET_SOLVE, IMAGE, SNAPSHOTS
from daskcal.pipeline.registry import ConfigRule, StageContext, StageSpec
from daskcal.stages.apply import ApplyConfig, apply
from daskcal.stages.average import AverageConfig, average
from daskcal.stages.demix import DemixConfig, demix
from daskcal.stages.flag import FlagConfig, flag
from daskcal.stages.predict import PredictConfig, predict
from daskcal.stages.preflag import PreflagConfig, preflag
from daskcal.stages.smooth import SmoothConfig, smooth
from daskcal.stages.solve import SolveConfig, solve
from daskcal.stages.transfer import TransferConfig, transfer


class PredictStepConfig(PredictConfig):
    """Settings of the ``predict`` step: the stage's settings and the sky model file."""

    sky_model: str = Field(description="Sky model file (makesourcedb/BBS text format), "
                           "relative to the working directory.")


class H5parmConfig(BaseModel):
    """Settings of the ``h5parm`` product step (LoSoTo/DP3 solution file)."""

    model_config = ConfigDict(extra="forbid")

    filename: str = Field("{step}-{partition}.h5", description="File name in "
                          "RUN_DIR/products; {step} and {partition} are replaced.")
    solset: str = Field("sol000", pattern=r"^[A-Za-z0-9_-]+$",
                        description="Solution set name (LoSoTo: sol000).")
    direction_name: str | None = Field(None, description="Name of the solutions' direction "
                                       "(default: the field name, else 'pointing').")


def phase_centre(context: StageContext) -> np.ndarray:
    """J2000 (RA, Dec) of the partition's phase centre, radians (its first field)."""
    try:
        fxds = field_xds_of(context.node)
        pc = np.asarray(fxds["FIELD_PHASE_CENTER_DIRECTION"].values, dtype=np.float64)
    except KeyError as exc:
        raise DaskcalError(f"step {context.step}: partition {context.partition} has no "
                           "phase centre (FIELD_PHASE_CENTER_DIRECTION)") from exc
    return pc.reshape(-1, 2)[0]


def _geometry(context: StageContext) -> dict:
    """Antenna positions and phase centre of the partition, for elevation selections."""
    if ANTENNA_NODE not in context.node.children:
        return {}
    ant = context.node[ANTENNA_NODE].to_dataset(inherit=False)
    try:
        centre = phase_centre(context)
    except DaskcalError:
        return {}
    return {"antenna_itrf_m": np.asarray(ant["ANTENNA_POSITION"].values),
            "phase_centre_rad": centre}


def _flag(xds: xr.Dataset, config: FlagConfig, context: StageContext) -> xr.Dataset:
    return flag(xds, config, **_geometry(context))


def _preflag(xds: xr.Dataset, config: PreflagConfig, context: StageContext) -> xr.Dataset:
    return preflag(xds, config, **_geometry(context))


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


def _smooth(gains: xr.Dataset, config: SmoothConfig) -> xr.Dataset:
    return smooth(gains, config)


def _transfer(xds: xr.Dataset, gains: xr.Dataset, config: TransferConfig) -> xr.Dataset:
    return transfer(gains, xds, config)


class PredictImageConfig(BaseModel):
    """Settings of the ``predict_image`` step: degrid a CLEAN model image (self-calibration)."""

    model_config = ConfigDict(extra="forbid")

    data_group: str = Field("model", description="Name of the data group the model "
                            "visibilities are added as (solve's model_data_group).")
    output: str = Field("VISIBILITY_MODEL", description="Name of the model variable.")
    epsilon: float = Field(1e-5, ge=1e-12, lt=0.1, description="Degridding accuracy.")
    method: Literal["wstack", "wproject"] = Field("wstack", description="w-term handling.")


def _predict_image(xds: xr.Dataset, image_xds: xr.Dataset, config: PredictImageConfig,
                   context: StageContext) -> xr.Dataset:
    """Model visibilities of the image's MODEL (Jy/pixel) at its own phase centre."""
    from daskcal.stages.gridding import GriddingConfig, max_baseline_m, predict_model

    centre = np.asarray(image_xds.attrs["phase_centre_rad"], dtype=np.float64)
    if not np.allclose(centre, phase_centre(context), rtol=0, atol=1e-9):
        raise DaskcalError(f"step {context.step}: the model image's phase centre differs "
                           f"from partition {context.partition}'s")
    model = np.asarray(image_xds["MODEL"].values, dtype=np.float64)
    cell = float(image_xds.attrs["cell_rad"])
    grid = GriddingConfig(npix_x=model.shape[0], npix_y=model.shape[1], pixsize_x_rad=cell,
                          pixsize_y_rad=cell, epsilon=config.epsilon, method=config.method,
                          divide_by_n=False, correlation=str(image_xds.attrs.get(
                              "correlation", "I")))
    max_w = (max_baseline_m(context.node[ANTENNA_NODE].to_dataset(inherit=False))
             if ANTENNA_NODE in context.node.children else None)
    return predict_model(xds, model, grid, max_w_m=max_w, output=config.output,
                         data_group=config.data_group)


def _h5parm(gains: xr.Dataset, config: H5parmConfig, context: StageContext) -> list[Path]:
    """Write the partition's gains as an H5parm into ``context.output_dir`` (atomically)."""
    from daskcal.data.h5parm import write_h5parm

    if context.output_dir is None:
        raise DaskcalError(f"step {context.step}: no product directory given")
    name = config.filename.format(step=context.step, partition=context.partition)
    path = Path(context.output_dir) / name
    path.parent.mkdir(parents=True, exist_ok=True)
    ant = (context.node[ANTENNA_NODE].to_dataset(inherit=False)
           if ANTENNA_NODE in context.node.children else None)
    try:
        direction = tuple(phase_centre(context))
    except DaskcalError:
        direction = None
    tmp = path.with_name(f".{path.name}.partial")
    tmp.unlink(missing_ok=True)
    write_h5parm(gains, tmp, solset=config.solset, antenna_xds=ant, direction_rad=direction,
                 direction_name=config.direction_name or partition_field(context.node)
                 or "pointing")
    os.replace(tmp, path)
    return [path]


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

SMOOTH = StageSpec("smooth", SmoothConfig, _smooth, "gains->gains",
                   "smooth gain solutions along frequency (flag-aware, with outliers)")
TRANSFER = StageSpec("transfer", TransferConfig, _transfer, "gains+visibility->gains",
                     "interpolate (calibrator) gains onto a visibility partition's grid")
H5PARM = StageSpec("h5parm", H5parmConfig, _h5parm, "gains->product",
                   "export gains as H5parm (LoSoTo/DP3) files in RUN_DIR/products")

PREDICT_IMAGE = StageSpec("predict_image", PredictImageConfig, _predict_image,
                          "image+visibility->visibility",
                          "model visibilities of a CLEAN model image (self-calibration)")

#: The stages every daskcal installation has.
BUILTIN_STAGES: tuple[StageSpec, ...] = (FLAG, PREFLAG, AVERAGE, PREDICT, DEMIX, SOLVE, APPLY,
                                         SMOOTH, TRANSFER, H5PARM, IMAGE, PREDICT_IMAGE,
                                         FACET_SOLVE, FACET_IMAGE, CUBE, SNAPSHOTS)

__all__ = ["APPLY", "AVERAGE", "BUILTIN_STAGES", "DEMIX", "FACET_IMAGE", "FACET_SOLVE", "FLAG",
           "H5PARM", "IMAGE", "PREDICT",
           "PREDICT_IMAGE", "PREFLAG", "SMOOTH", "SOLVE", "TRANSFER", "H5parmConfig",
           "PredictImageConfig", "PredictStepConfig", "phase_centre"]
