"""The solar-snapshots recipe: calibrator beam -> Sun beam, one image per second per subband."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from daskcal.pipeline.runner import run_recipe

# the recipes (from this file: workers unpickle test functions by module name, and
# another tests/ directory has a conftest of its own)
RECIPES = Path(__file__).resolve().parents[2] / "configs" / "recipes"

#: Two simultaneous beams of 14 core stations, 12 x 1 s, 8 channels (2 subbands of 4),
#: the same station gains (same seed), no beam.
_COMMON = {"lofar": {"n_core": 14, "n_remote": 0, "split_core": False},
           "duration_s": 12.0, "integration_s": 1.0, "n_chan": 8,
           "start_time": "2024-03-20T12:00:00", "chunks": {"time": 4, "frequency": 8},
           "gains": {"amplitude_rms": 0.1, "phase_rms_deg": 40.0, "time_scale_s": 30.0},
           "noise": {"enabled": True}, "seed": 5}
CAL = {**_COMMON, "name": "cal", "ra_deg": 123.4, "dec_deg": 48.2,
       "sky": {"preset": "none", "components": [
           {"name": "cal", "ra_deg": 123.4, "dec_deg": 48.2, "flux_jy": 200.0}]}}
#: The quiet Sun: a 20 arcmin Gaussian of 2000 Jy at the pointing (March equinox, noon).
SUN = {**_COMMON, "name": "sun", "field_name": "Sun", "ra_deg": 0.0, "dec_deg": 0.0,
       "sky": {"preset": "none", "components": [
           {"name": "sun", "ra_deg": 0.0, "dec_deg": 0.0, "flux_jy": 2000.0,
            "major_arcsec": 1200.0, "minor_arcsec": 1200.0}]}}


@pytest.fixture(scope="module")
def solar_run(tmp_path_factory):
    from daskcal.sky.bbs import write_bbs
    from daskcal.sky.model import SkyModel
    from daskcal.testing import write_simulation

    root = tmp_path_factory.mktemp("solar")
    cal, cal_truth = write_simulation(CAL, root / "cal.zarr")
    sun, sun_truth = write_simulation(SUN, root / "sun.zarr")
    sky = root / "cal.skymodel"
    write_bbs(SkyModel.from_dataset(xr.open_datatree(cal_truth, engine="zarr")["sky"]
                                    .to_dataset()), sky)
    result = run_recipe(RECIPES / "solar-snapshots.yaml", {"calibrator": cal, "sun": sun},
                        root / "run", site="threads", overrides=[f"predict.sky_model={sky}"],
                        progress=False, echo=lambda _: None)
    return result, sun, sun_truth


def _truth_snapshots(sun, sun_truth, config):
    """The same snapshots of the Sun's uncorrupted visibilities (the simulator's model)."""
    from daskcal.data.open import open_observation
    from daskcal.stages.imaging.snapshots import SnapshotConfig, snapshot_images

    obs = open_observation(sun)
    (name,) = [k for k in obs.children if obs[k].attrs.get("type") == "visibility"]
    model = xr.open_datatree(sun_truth, engine="zarr")["model"].to_dataset()
    node = obs[name].copy()
    xds = node.to_dataset(inherit=False)
    node.dataset = xds.assign(VISIBILITY=(xds["VISIBILITY"].dims,
                                          model["VISIBILITY_MODEL"].data))
    cfg = SnapshotConfig.model_validate({**config, "data_group": "base"})
    return snapshot_images(node, cfg).compute()


def test_one_image_per_second_per_subband_like_the_true_sun(solar_run):
    result, sun, sun_truth = solar_run
    assert result.provenance["status"] == "complete"
    rec = result.step_record("snapshots")
    tree = xr.open_datatree(result.outputs["snapshots"], engine="zarr")
    (part,) = [k for k in tree.children if "DIRTY" in tree[k].data_vars]
    snaps = tree[part].to_dataset()
    assert snaps["DIRTY"].dims == ("time", "subband", "l", "m")
    assert snaps.sizes["time"] == 12 and snaps.sizes["subband"] == 2
    assert rec["regions"]["total"] >= 3      # written in regions along time, resumable
    truth = _truth_snapshots(sun, sun_truth, rec["config"])
    got, want = snaps["DIRTY"].values, truth["DIRTY"].values
    # the calibrator's gains, interpolated onto the Sun beam, undo the corruption: each
    # snapshot matches the true Sun's to a few per cent of its peak (noise ~0.1 %)
    err = np.abs(got - want).max(axis=(2, 3)) / np.abs(want).max(axis=(2, 3))
    assert err.max() < 0.03
    n = snaps.sizes["l"]
    peak = np.unravel_index(np.argmax(got[5, 1]), got[5, 1].shape)
    assert abs(peak[0] - n // 2) <= 1 and abs(peak[1] - n // 2) <= 1
    # the Sun beam was not flagged
    from daskcal.data.open import open_observation

    applied = open_observation(result.outputs["apply"])
    flags = np.concatenate([applied[k]["FLAG"].values.ravel() for k in applied.children
                            if applied[k].attrs.get("type") == "visibility"])
    assert flags.mean() == 0.0
