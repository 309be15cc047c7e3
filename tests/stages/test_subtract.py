"""The subtract stage: DD vs DI subtraction on simulated TEC screens, direction subsets,
laziness, dask == numpy."""

from __future__ import annotations

import dataclasses

import dask
import numpy as np
import pytest

from daskcal.data.chunking import chunk_data_vars
from daskcal.kernels.phase_shift import phase_shift
from daskcal.sky.model import SkyModel
from daskcal.stages.facets import FacetConfig, plan_facets, solve_facets
from daskcal.stages.predict import predict
from daskcal.stages.solve import SolveConfig, solve
from daskcal.stages.subtract import (
    SubtractConfig,
    SubtractError,
    corrupt_direction,
    predict_directions,
    subtract,
)
from daskcal.testing import SimulationConfig, simulate_observation

RA0, DEC0 = 123.4, 48.2
PC = np.radians([RA0, DEC0])
CALIBRATORS = [(0.0, 0.0, 6.0), (1.2, 0.6, 5.0), (-1.0, 1.0, 4.0), (0.5, -1.3, 4.0),
               (-1.3, -0.8, 3.0)]
CONFIG = FacetConfig(flux_threshold_jy=2.0, min_separation_deg=0.3, field_size_deg=5.0)
CHUNKS = {"time": 8, "frequency": 8}


def _raise_on_compute(*args, **kwargs):
    raise AssertionError("the graph was computed while it was being built")


@pytest.fixture(scope="module")
def sim():
    """(partition, truth with /directions, plan, DD gains, DI gains) of a TEC-screen field."""
    comps = []
    for k, (dx, dy, s) in enumerate(CALIBRATORS):
        ra, dec = RA0 + dx / np.cos(np.radians(DEC0)), DEC0 + dy
        comps += [{"name": f"cal{k}", "ra_deg": ra, "dec_deg": dec, "flux_jy": s, "patch": f"P{k}"},
                  {"name": f"cal{k}b", "ra_deg": ra + 0.05, "dec_deg": dec - 0.04,
                   "flux_jy": 0.1 * s, "patch": f"P{k}"}]
    cfg = SimulationConfig.model_validate({
        "lofar": {"n_core": 8, "n_remote": 8, "split_core": False}, "ra_deg": RA0,
        "dec_deg": DEC0, "duration_s": 240, "integration_s": 10, "n_chan": 16,
        "sky": {"preset": "random-field", "n_sources": 8, "field_radius_deg": 1.8,
                "flux_min_jy": 0.05, "flux_max_jy": 0.3, "components": comps},
        "gains": {"enabled": False},
        "screens": {"enabled": True, "tec_rms_tecu": 0.05, "inner_scale_km": 5.0,
                    "speed_m_s": 10.0},
        "noise": {"enabled": True, "sefd_jy": 1500.0}, "chunks": CHUNKS, "seed": 1})
    obs, truth = simulate_observation(cfg, direction_truth=True)
    xds = obs[next(iter(obs.children))].to_dataset(inherit=False).compute()
    truth = truth.compute()
    sky = SkyModel.from_dataset(truth["sky"].to_dataset())
    catalogue = dataclasses.replace(sky, patch=np.full(sky.n_source, ""))
    plan = plan_facets(catalogue, PC, CONFIG, freq_hz=float(xds["frequency"].mean()))
    lazy = chunk_data_vars(xds, CHUNKS)
    dd = solve_facets(lazy, plan, PC, CONFIG)["total"].to_dataset().compute()
    di = solve(predict(lazy, plan.sky, PC),
               config=SolveConfig(mode="diagonal_complex", solint_time=1,
                                  solint_freq=4)).compute()
    return xds, truth, sky, plan, dd, di


def _power(xds, residual, ra, dec):
    """Coherent residual power towards (ra, dec): mean over baselines of |<R>_{t,f}|^2, Jy^2."""
    shifted, _ = phase_shift(np.asarray(residual, np.complex128), xds["UVW"].values,
                             xds["frequency"].values, PC, (ra, dec))
    cross = xds["antenna1"].values != xds["antenna2"].values
    return float(np.mean(np.abs(shifted[:, cross][..., [0, 3]].mean(axis=(0, 2))) ** 2))


def test_dd_subtraction_beats_di_by_ten(sim):
    xds, _, _, plan, dd, di = sim
    lazy = chunk_data_vars(xds, CHUNKS)
    r_dd = subtract(lazy, plan.sky, dd, PC)["VISIBILITY_RESIDUAL"].values
    r_di = subtract(lazy, plan.sky, di, PC)["VISIBILITY_RESIDUAL"].values
    ratios = []
    for d in range(plan.n_dir):
        p_dd = _power(xds, r_dd, plan.ra[d], plan.dec[d])
        p_di = _power(xds, r_di, plan.ra[d], plan.dec[d])
        ratios.append(p_di / p_dd)
    print("residual power DI / DD per direction:", np.round(ratios, 1))
    assert np.all(np.array(ratios) >= 10)
    # the DD residual is close to the thermal noise (sigma^2 per real part x 2)
    sigma2 = 2 * np.mean(1.0 / xds["WEIGHT"].values[..., 0])
    assert np.mean(np.abs(r_dd[..., [0, 3]]) ** 2) < 1.3 * sigma2


def test_subtracting_all_other_facets_leaves_the_facet(sim):
    """FACTOR's subtract step: everything outside facet d removed leaves d's true signal."""
    xds, truth, sky, plan, dd, _ = sim
    d = 1
    name = str(plan.name[d])
    out = subtract(chunk_data_vars(xds, CHUNKS), plan.sky, dd, PC, exclude=[name])
    residual = out["VISIBILITY_RESIDUAL"].values
    directions = truth["directions"]["VISIBILITY_CORRUPTED"]
    patch_of = dict(zip(sky.name.tolist(), np.where(sky.patch == "", sky.name, sky.patch).tolist(),
                        strict=True))
    members = {patch_of[s] for s in plan.sky.name[plan.sky.patch == name].tolist()}
    facet_truth = directions.sel(patch=sorted(members)).sum("patch").values
    err = _power(xds, residual - facet_truth, plan.ra[d], plan.dec[d])
    signal = _power(xds, facet_truth, plan.ra[d], plan.dec[d])
    assert err < 1e-2 * signal


def test_direction_selection_and_in_place(sim):
    xds, _, _, plan, dd, _ = sim
    names = [str(n) for n in plan.name]
    a = subtract(xds, plan.sky, dd, PC, directions=names[:2])["VISIBILITY_RESIDUAL"].values
    b = subtract(xds, plan.sky, dd, PC, exclude=names[2:])["VISIBILITY_RESIDUAL"].values
    np.testing.assert_array_equal(a, b)
    inplace = subtract(xds, plan.sky, dd, PC, directions=names[:2],
                       config=SubtractConfig(in_place=True))
    np.testing.assert_array_equal(inplace["VISIBILITY"].values, a)
    assert "residual" not in inplace.attrs["data_groups"]
    none = subtract(xds, plan.sky, dd, PC, directions=[])
    np.testing.assert_array_equal(none["VISIBILITY_RESIDUAL"].values, xds["VISIBILITY"].values)
    with pytest.raises(SubtractError, match="not among"):
        subtract(xds, plan.sky, dd, PC, directions=["nowhere"])


def test_dask_equals_numpy_and_is_lazy(sim):
    xds, _, _, plan, dd, _ = sim
    lazy = chunk_data_vars(xds, CHUNKS)
    with dask.config.set(scheduler=_raise_on_compute):
        out = subtract(lazy, plan.sky, dd, PC)
    got = out["VISIBILITY_RESIDUAL"].values
    # numpy: whole-array prediction and corruption, direction by direction
    models = predict_directions(xds, plan.sky, plan.name, PC, dtype=np.complex128).compute()
    want = xds["VISIBILITY"].values.astype(np.complex128)
    t_idx = np.arange(xds.sizes["time"])
    f_idx = np.arange(xds.sizes["frequency"]) // 4
    gains = dd["GAIN"].transpose("gain_time", "gain_frequency", "antenna_name", "direction",
                                 "receptor").values
    flags = dd["GAIN_FLAG"].transpose(*dd["GAIN"].dims).values
    for d in range(plan.n_dir):
        want -= corrupt_direction(models[d], gains[:, :, :, d], flags[:, :, :, d],
                                  xds["antenna1"].values, xds["antenna2"].values, t_idx, f_idx,
                                  ([0, 0, 1, 1], [0, 1, 0, 1]))
    np.testing.assert_allclose(got, want, atol=2e-4 * np.abs(want).max())
