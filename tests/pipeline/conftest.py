"""Fixtures of the pipeline tests: a tiny simulated observation, its sky model, a toy plug-in."""

from __future__ import annotations

import shutil
import sys
import textwrap
from pathlib import Path

import pytest
from tiny_observation import TINY

RECIPES = Path(__file__).resolve().parents[2] / "configs" / "recipes"


TOY_MODULE = '''
"""A toy stage plug-in: scales VISIBILITY, slowly, logging every block it computes."""
import os
import time

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from daskcal.pipeline.registry import StageSpec


class ToyConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    factor: float = Field(2.0, gt=0, description="scale factor")
    delay_s: float = Field(0.0, ge=0, description="sleep per block")
    log_dir: str | None = Field(None, description="write a file per computed block here")


def _block(vis, factor, delay_s, log_dir, block_info=None):
    time.sleep(delay_s)
    if log_dir:
        t0 = block_info[0]["array-location"][0][0]
        with open(os.path.join(log_dir, f"{os.getpid()}-{t0}-{time.time_ns()}"), "w"):
            pass
    return vis * np.float32(factor)


def toy_scale(xds, config):
    vis = xds["VISIBILITY"]
    data = vis.data.map_blocks(_block, config.factor, config.delay_s, config.log_dir,
                               dtype=vis.dtype)
    return xds.assign(VISIBILITY=(vis.dims, data, vis.attrs))


TOY = StageSpec("toy_scale", ToyConfig, toy_scale, "visibility->visibility",
                "scale the visibilities (test plug-in)")
'''


def make_plugin(directory: Path) -> Path:
    """A directory that, on sys.path, provides the entry point ``toy_scale``."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "daskcal_toy_stage.py").write_text(TOY_MODULE)
    info = directory / "daskcal_toy_stage-0.1.dist-info"
    info.mkdir(exist_ok=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: daskcal-toy-stage\n"
                                   "Version: 0.1\n")
    (info / "entry_points.txt").write_text(textwrap.dedent("""\
        [daskcal.stages]
        toy_scale = daskcal_toy_stage:TOY
        """))
    return directory


@pytest.fixture(scope="session")
def tiny_store(tmp_path_factory):
    """(observation store, truth store, sky model file) of :data:`TINY`, written once."""
    from daskcal.sky.bbs import write_bbs
    from daskcal.sky.model import SkyModel
    from daskcal.testing import write_simulation

    root = tmp_path_factory.mktemp("tiny")
    obs, truth = write_simulation(TINY, root / "tiny.zarr")
    import xarray as xr

    tree = xr.open_datatree(truth, engine="zarr")
    sky = root / "sky.txt"
    write_bbs(SkyModel.from_dataset(tree["sky"].to_dataset()), sky)
    return obs, truth, sky


@pytest.fixture
def tiny(tiny_store, tmp_path):
    """A private copy of the tiny observation (tests may touch it)."""
    obs, truth, sky = tiny_store
    dest = tmp_path / "tiny.zarr"
    shutil.copytree(obs, dest)
    return dest


@pytest.fixture
def toy_plugin(tmp_path, monkeypatch):
    """The toy stage plug-in on sys.path, with the registry rescanned (undone after)."""
    import importlib

    from daskcal.pipeline.registry import reload_stages

    path = make_plugin(tmp_path / "plugin")
    monkeypatch.syspath_prepend(str(path))
    importlib.invalidate_caches()
    reload_stages()
    yield path
    sys.modules.pop("daskcal_toy_stage", None)
    reload_stages()
