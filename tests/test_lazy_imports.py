"""Start-up cost: importing settings and entry points does not import what they do not use."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest


def _loaded_after(code: str, modules: tuple[str, ...]) -> list[str]:
    """Which of ``modules`` a fresh interpreter has imported after running ``code``."""
    probe = (f"{code}\nimport json, sys\n"
             f"print(json.dumps([m for m in {list(modules)!r} if m in sys.modules]))")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                         check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_imaging_settings_import_no_stage_machinery():
    """The imaging steps' settings (what a recipe validates) load without the DD solvers,
    cubes (astropy), the gridders and deconvolvers (numba, scipy) or a FITS writer."""
    heavy = ("daskcal.stages.facets.solve", "daskcal.kernels.solvers",
             "daskcal.stages.imaging.cube", "daskcal.stages.imaging.stage",
             "daskcal.stages.imaging.facet_image", "daskcal.stages.imaging.snapshots",
             "daskcal.kernels.deconvolution", "astropy.io.fits", "numba", "scipy.optimize",
             "dask.array", "distributed")
    code = ("import daskcal.data, daskcal.pipeline.imagingsteps, daskcal.stages.imaging\n"
            "from daskcal.pipeline.imagingsteps import ImageStepConfig\n"
            "ImageStepConfig(npix=64, cell_arcsec=1.0, primary_beam={'model': 'lofar_hba'})")
    assert _loaded_after(code, heavy) == []


def test_numpy_compute_does_not_import_distributed():
    """Without a client (distributed not imported), computing a collection does not
    import distributed to look for one."""
    code = ("import dask, dask.array as da\n"
            "from daskcal._compute import compute\n"
            "with dask.config.set(scheduler='threads'):\n"
            "    (s,) = compute(da.arange(10, chunks=3).sum())\n"
            "assert s == 45\n"
            "(s, t) = compute(da.ones(4, chunks=2).sum(), 2)\n"
            "assert (s, t) == (4, 2)")
    assert _loaded_after(code, ("distributed",)) == []


def test_local_scheduler_defers_to_dask_once_distributed_is_loaded():
    import dask
    import dask.array as da

    from daskcal._compute import local_scheduler

    x = da.ones(4, chunks=2)
    if "distributed" in sys.modules:
        assert local_scheduler(x) is None
    else:
        assert local_scheduler(x) is dask.threaded.get
        with dask.config.set(scheduler="sync"):
            assert local_scheduler(x) is dask.local.get_sync
        with dask.config.set(scheduler="distributed"):
            assert local_scheduler(x) is None


@pytest.mark.parametrize("package", ["daskcal.stages.imaging", "daskcal.stages.facets"])
def test_lazy_exports_resolve(package):
    import importlib

    mod = importlib.import_module(package)
    for name in mod.__all__:
        assert getattr(mod, name) is not None, name


def test_names_shared_by_a_submodule_are_the_functions():
    """``mosaic`` and ``primary_beam`` are submodules and functions: the package's are the
    functions, whichever was imported first."""
    import importlib

    import daskcal.stages.imaging as im

    mosaic_module = importlib.import_module("daskcal.stages.imaging.mosaic")
    beam_module = importlib.import_module("daskcal.stages.imaging.primary_beam")
    assert im.mosaic is mosaic_module.mosaic
    assert im.primary_beam is beam_module.primary_beam


def test_settings_classes_are_the_stage_modules_own():
    from daskcal.stages.imaging import config, cube, facet_image, snapshots

    assert cube.CubeConfig is config.CubeConfig
    assert facet_image.FacetImageConfig is config.FacetImageConfig
    assert snapshots.SnapshotConfig is config.SnapshotConfig
