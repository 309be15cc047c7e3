"""Facet calibration: calibrator selection, DD solves against simulated TEC screens, laziness,
dask == numpy, zarr and H5parm export."""

from __future__ import annotations

import dataclasses

import dask
import numpy as np
import pytest

from daskcal.data.chunking import chunk_data_vars
from daskcal.data.geometry import angular_separation
from daskcal.data.h5parm import read_h5parm
from daskcal.kernels.solvers._multidir import solve_multidir
from daskcal.sky.model import SkyModel
from daskcal.stages.facets import (
    DDSolveStep,
    FacetConfig,
    FacetError,
    plan_facets,
    read_dd_gains,
    solint_factors,
    solve_facets,
    write_dd_gains,
    write_dd_h5parm,
)
from daskcal.stages.subtract import predict_directions
from daskcal.testing import SimulationConfig, simulate_observation
from daskcal.testing.corruptions import TEC_PHASE_RAD_HZ

RA0, DEC0 = 123.4, 48.2
PC = np.radians([RA0, DEC0])
#: (east offset deg, north offset deg, flux Jy) of the calibrators; each has a companion
CALIBRATORS = [(0.0, 0.0, 6.0), (1.2, 0.6, 5.0), (-1.0, 1.0, 4.0), (0.5, -1.3, 4.0),
               (-1.3, -0.8, 3.0)]
CONFIG = FacetConfig(flux_threshold_jy=2.0, min_separation_deg=0.3, field_size_deg=5.0)


def _raise_on_compute(*args, **kwargs):
    raise AssertionError("the graph was computed while it was being built")


def simulation_config(**over) -> SimulationConfig:
    """16 stations, 5 bright patches + faint field, TEC screens, no DI gains, 24 x 16 samples."""
    comps = []
    for k, (dx, dy, s) in enumerate(CALIBRATORS):
        ra, dec = RA0 + dx / np.cos(np.radians(DEC0)), DEC0 + dy
        comps += [{"name": f"cal{k}", "ra_deg": ra, "dec_deg": dec, "flux_jy": s, "patch": f"P{k}"},
                  {"name": f"cal{k}b", "ra_deg": ra + 0.05, "dec_deg": dec - 0.04,
                   "flux_jy": 0.1 * s, "patch": f"P{k}"}]
    cfg = {"lofar": {"n_core": 8, "n_remote": 8, "split_core": False}, "ra_deg": RA0,
           "dec_deg": DEC0, "duration_s": 240, "integration_s": 10, "n_chan": 16,
           "sky": {"preset": "random-field", "n_sources": 8, "field_radius_deg": 1.8,
                   "flux_min_jy": 0.05, "flux_max_jy": 0.3, "components": comps},
           "gains": {"enabled": False},
           "screens": {"enabled": True, "tec_rms_tecu": 0.05, "inner_scale_km": 5.0,
                       "speed_m_s": 10.0},
           "noise": {"enabled": True, "sefd_jy": 1500.0},
           "chunks": {"time": 8, "frequency": 8}, "seed": 1}
    cfg.update(over)
    return SimulationConfig.model_validate(cfg)


@pytest.fixture(scope="module")
def sim():
    """(numpy-backed partition, truth, catalogue without patches, plan)."""
    obs, truth = simulate_observation(simulation_config())
    name = next(iter(obs.children))
    xds = obs[name].to_dataset(inherit=False).compute()
    truth = truth.compute()
    sky = SkyModel.from_dataset(truth["sky"].to_dataset())
    catalogue = dataclasses.replace(sky, patch=np.full(sky.n_source, ""))
    plan = plan_facets(catalogue, PC, CONFIG, freq_hz=float(xds["frequency"].mean()))
    return xds, truth, sky, plan


@pytest.fixture(scope="module")
def solved(sim):
    xds, _, _, plan = sim
    tree = solve_facets(chunk_data_vars(xds, {"time": 8, "frequency": 8}), plan, PC, CONFIG)
    return tree.compute()


def test_plan_selects_the_bright_patches(sim):
    _, _, sky, plan = sim
    assert plan.n_dir == len(CALIBRATORS)
    cal = sky.select(np.char.startswith(sky.name.astype(str), "cal")
                     & ~np.char.endswith(sky.name.astype(str), "b"))
    # each calibrator is within arcminutes of one direction, and inside that facet
    for i in range(cal.n_source):
        sep = angular_separation(plan.ra, plan.dec, cal.ra[i], cal.dec[i])
        k = int(np.argmin(sep))
        assert sep[k] < np.radians(0.1)
        assert plan.facets.contains(k, cal.ra[i], cal.dec[i])
    assert np.all(np.diff(plan.apparent_flux_jy) <= 0)
    assert plan.solint_factor[0] == 1 and np.all(np.diff(plan.solint_factor) >= 0)
    # every component is in a facet
    assert set(plan.sky.patch.tolist()) <= set(plan.name.tolist())


def test_apparent_flux_uses_the_beam(sim):
    _, _, sky, _ = sim
    catalogue = dataclasses.replace(sky, patch=np.full(sky.n_source, ""))
    narrow = CONFIG.model_copy(update={"beam_fwhm_deg": 1.5})
    plan = plan_facets(catalogue, PC, narrow, freq_hz=1.2e8)
    # the beam halves the flux 0.75 deg out: only the central calibrator stays above 2 Jy
    assert plan.n_dir < len(CALIBRATORS)
    assert angular_separation(plan.ra[0], plan.dec[0], *PC) < np.radians(0.1)
    with pytest.raises(FacetError, match="threshold"):
        plan_facets(catalogue, PC, CONFIG.model_copy(update={"flux_threshold_jy": 1e3}))


def test_solint_factors_scale_with_flux():
    np.testing.assert_array_equal(solint_factors([8.0, 8.0, 5.7, 4.0, 1.0]), [1, 1, 2, 4, 4])
    np.testing.assert_array_equal(solint_factors([8.0, 1.0], max_factor=64), [1, 64])
    np.testing.assert_array_equal(solint_factors([8.0, 1.0], enabled=False), [1, 1])


def test_config_needs_nested_intervals():
    with pytest.raises(ValueError, match="multiple"):
        FacetConfig(fast=DDSolveStep(solint_time=2), slow=DDSolveStep(solint_time=3))


def _truth_phases(sim, gains):
    """True per-direction phases (T, F, ant, dir) on the gains grid, from the TEC truth."""
    xds, truth, sky, plan = sim
    tec = truth["screens"]["TEC"].values  # (time, ant, source)
    sources = [str(s) for s in truth["screens"]["source"].values]
    t_cell = np.searchsorted(gains["gain_time_upper"].values, xds["time"].values)
    freq = gains["gain_frequency"].values
    out = []
    for d in range(plan.n_dir):
        sep = angular_separation(plan.ra[d], plan.dec[d], sky.ra, sky.dec)
        brightest = max(np.flatnonzero(sep < np.radians(0.2)), key=lambda i: sky.stokes[i, 0])
        phase = TEC_PHASE_RAD_HZ * tec[:, :, sources.index(sky.name[brightest])][:, None, :] \
            / freq[None, :, None]  # (time, F, ant)
        out.append(np.stack([phase[t_cell == i].mean(axis=0)
                             for i in range(gains.sizes["gain_time"])]))
    return np.stack(out, axis=-1)


def test_dd_phases_match_the_truth_screens(sim, solved):
    total = solved["total"].to_dataset()
    assert total["GAIN"].dims == ("gain_time", "gain_frequency", "antenna_name", "direction",
                                  "receptor")
    assert not total["GAIN_FLAG"].values.any()
    truth = _truth_phases(sim, total)
    solved_phase = np.angle(total["GAIN"].values[..., 0])  # (T, F, ant, dir)
    # remove each direction's reference-antenna degeneracy
    diff = (solved_phase - solved_phase[:, :, :1]) - (truth - truth[:, :, :1])
    diff = np.angle(np.exp(1j * diff))[:, :, 1:]
    rms = np.sqrt(np.mean(diff**2, axis=(0, 1, 2)))
    spread = np.std(truth - truth[:, :, :1], axis=(0, 1, 2))
    print("phase rms per direction (rad):", np.round(rms, 3), "truth spread:", np.round(spread, 2))
    assert np.all(spread > 0.5)  # the screens matter
    assert np.all(rms < 0.1)


def test_gains_layout_and_intervals(sim, solved):
    _, _, _, plan = sim
    fast, slow, total = (solved[k].to_dataset() for k in ("fast", "slow", "total"))
    assert fast.sizes["gain_time"] == 24 and fast.sizes["gain_frequency"] == 4
    assert slow.sizes["gain_time"] == 6 and slow.sizes["gain_frequency"] == 2
    np.testing.assert_array_equal(fast["SOLINT_TIME"].values, plan.solint_factor)
    np.testing.assert_array_equal(slow["SOLINT_TIME"].values, 4 * plan.solint_factor)
    # a direction with a longer interval repeats its value over the cells it covers
    k = int(np.argmax(plan.solint_factor))
    g = fast["GAIN"].values[:, :, :, k]
    n = int(plan.solint_factor[k])
    np.testing.assert_array_equal(g[: n * (24 // n)].reshape(24 // n, n, *g.shape[1:]),
                                  np.repeat(g[::n][:, None], n, axis=1)[: 24 // n])
    # total = fast x slow (slow expanded to the fast grid)
    sl = slow["GAIN"].values[np.arange(24) // 4][:, np.arange(4) // 2]
    np.testing.assert_allclose(total["GAIN"].values, fast["GAIN"].values * sl, rtol=1e-12)
    np.testing.assert_array_equal(total["direction_ra"].values, plan.ra)
    # the reference antenna has real positive gains
    assert np.allclose(np.angle(total["GAIN"].values[:, :, 0]), 0.0, atol=1e-9)


def test_graph_building_does_not_compute(sim):
    xds, _, _, plan = sim
    lazy = chunk_data_vars(xds, {"time": 8, "frequency": 8})
    with dask.config.set(scheduler=_raise_on_compute):
        tree = solve_facets(lazy, plan, PC, CONFIG)
    assert tree["total"]["GAIN"].chunks is not None


def test_dask_result_equals_the_numpy_kernel(sim):
    """The chunked solve equals solve_multidir (from unit gains, the phase-only start) on
    whole numpy arrays of each chunk's span."""
    xds, _, _, plan = sim
    config = CONFIG.model_copy(update={"slow": None, "scale_solint_with_flux": False})
    plan = dataclasses.replace(plan, solint_factor=np.ones(plan.n_dir, np.int64))
    tree = solve_facets(chunk_data_vars(xds, {"time": 8, "frequency": 8}), plan, PC, config)
    got = tree["fast"]["GAIN"].values.transpose(3, 0, 1, 2, 4)  # (dir, T, F, ant, rec)
    model = predict_directions(xds, plan.sky, plan.name, PC, polarization=["XX", "YY"],
                               dtype=np.complex64).compute()
    hands = [0, 3]
    a1 = xds["antenna1"].values.astype(np.int64)
    a2 = xds["antenna2"].values.astype(np.int64)
    step = config.fast
    want = []
    for t0 in range(0, 24, 8):  # the kernel on the whole array, chunk span by chunk span
        sl = slice(t0, t0 + 8)
        sol = solve_multidir(
            xds["VISIBILITY"].values[sl][..., hands], model[:, sl],
            xds["WEIGHT"].values[sl][..., hands], xds["FLAG"].values[sl][..., hands], a1, a2,
            16, 1, step.solint_freq, mode=step.mode, max_iter=step.max_iter,
            inner_iter=step.inner_iter, tolerance=step.tolerance, damping=step.damping,
            damping_every=step.damping_every, ref_antenna=0,
            initial_gains=_unit_start(plan.n_dir, 8, 16 // step.solint_freq))
        want.append(sol.gains)
    want = np.concatenate(want, axis=1)
    # frequency chunks of 8 channels = 2 cells each: the kernel on whole bands iterates
    # all cells together, so agreement is to the solver tolerance
    np.testing.assert_allclose(got, want, atol=1e-3)
    # and exactly for identical chunks
    whole = solve_facets(xds, plan, PC, config)["fast"]["GAIN"].values
    one = solve_multidir(xds["VISIBILITY"].values[..., hands], model,
                         xds["WEIGHT"].values[..., hands], xds["FLAG"].values[..., hands],
                         a1, a2, 16, 1, step.solint_freq, mode=step.mode,
                         max_iter=step.max_iter, inner_iter=step.inner_iter,
                         tolerance=step.tolerance, damping=step.damping,
                         damping_every=step.damping_every, ref_antenna=0,
                         initial_gains=_unit_start(plan.n_dir, 24, 16 // step.solint_freq))
    np.testing.assert_allclose(whole.transpose(3, 0, 1, 2, 4), one.gains, rtol=1e-6, atol=1e-6)


def _unit_start(n_dir, n_t, n_f, n_ant=16):
    """The facet solve's start of a phase-only mode (``start="auto"``): all gains 1."""
    return np.ones((n_dir, n_t, n_f, n_ant, 2), np.complex128)


def test_zarr_and_h5parm_export(sim, solved, tmp_path):
    xds, _, _, plan = sim
    path = write_dd_gains(solved, tmp_path / "dd.zarr")
    back = read_dd_gains(path)
    for node in ("fast", "slow", "total"):
        np.testing.assert_array_equal(back[node]["GAIN"].values, solved[node]["GAIN"].values)
        assert back[node]["direction"].values.tolist() == plan.name.tolist()
    total = solved["total"].to_dataset()
    h5 = write_dd_h5parm(total, tmp_path / "dd.h5")
    import h5py

    with h5py.File(h5, "r") as f:
        st = f["sol000/phase000"]
        assert st["val"].attrs["AXES"].decode() == "time,freq,ant,dir,pol"
        assert st["val"].shape == (24, 4, 16, plan.n_dir, 2)
        assert [d.decode() for d in st["dir"][()]] == plan.name.tolist()
        src = f["sol000/source"][()]
        np.testing.assert_allclose(src["dir"][:, 0], plan.ra.astype(np.float32))
    for k, name in enumerate(plan.name):
        one = read_h5parm(h5, direction=str(name))
        np.testing.assert_allclose(one["GAIN"].values, total["GAIN"].values[:, :, :, k],
                                   rtol=1e-12, atol=1e-12)


def test_model_flux_scale_against_a_real_least_squares():
    """The weighted scale fit equals numpy's lstsq on the real-stacked system, recovers
    known scales exactly, ignores flagged / non-finite samples and bounds its output."""
    from daskcal.stages.facets.solve import model_flux_scale

    rng = np.random.default_rng(4)
    shape = (3, 5, 4, 2)
    pred = rng.normal(size=(3, *shape)) + 1j * rng.normal(size=(3, *shape))
    vis = rng.normal(size=shape) + 1j * rng.normal(size=shape)
    weight = rng.uniform(0.5, 2.0, shape)
    flag = rng.uniform(size=shape) < 0.1
    vis[0, 0, 0, 0] = np.nan  # unused, as a flagged sample
    got = model_flux_scale(vis, pred, weight, flag)
    use = ~flag & np.isfinite(vis)
    sw = np.sqrt(weight[use])
    design = np.concatenate([(pred[:, use].real * sw).T, (pred[:, use].imag * sw).T])
    rhs = np.concatenate([vis[use].real * sw, vis[use].imag * sw])
    want = np.linalg.lstsq(design, rhs, rcond=None)[0]
    np.testing.assert_allclose(got, np.maximum(want, 0.0), rtol=1e-10, atol=1e-12)
    truth = np.array([1.3, 0.7, 2.0])
    exact = np.einsum("d...,d->...", pred, truth)
    np.testing.assert_allclose(model_flux_scale(exact, pred, weight, flag), truth, rtol=1e-10)
    # a direction that predicts nothing keeps 1; one with no flux behind it gets 0
    pred[2] = 0.0
    np.testing.assert_allclose(model_flux_scale(-pred[0], pred, weight, flag), [0.0, 0.0, 1.0],
                               atol=1e-12)


def test_model_scale_recovers_a_faint_model(sim):
    """A model 20 % too faint: the fitted scale puts the flux back (about 1.25), and the
    phases still follow the screens; without the fit the scale is 1."""
    xds, _, _, plan = sim
    faint = dataclasses.replace(plan, sky=dataclasses.replace(plan.sky,
                                                              stokes=0.8 * plan.sky.stokes))
    config = CONFIG.model_copy(update={"slow": None, "model_scale_iter": 6})
    tree = solve_facets(chunk_data_vars(xds, {"time": 8, "frequency": 8}), faint, PC,
                        config).compute()
    total = tree["total"].to_dataset()
    scale = total["MODEL_SCALE"].values  # (T, F, dir)
    assert scale.shape == (24, 4, plan.n_dir)
    print("fitted scales:", np.round(np.median(scale, axis=(0, 1)), 3))
    np.testing.assert_allclose(np.median(scale, axis=(0, 1)), 1.25, rtol=0.03)
    truth = _truth_phases(sim, total)
    solved = np.angle(total["GAIN"].values[..., 0])
    diff = np.angle(np.exp(1j * ((solved - solved[:, :, :1]) - (truth - truth[:, :, :1]))))
    assert np.sqrt(np.mean(diff[:, :, 1:] ** 2)) < 0.1
    np.testing.assert_allclose(np.abs(total["GAIN"].values), 1.0, rtol=1e-12)
    plain = solve_facets(xds, faint, PC, config.model_copy(update={"model_scale_iter": 0}))
    np.testing.assert_array_equal(plain["total"]["MODEL_SCALE"].values, 1.0)


def test_cold_start_is_still_available(sim):
    """``start="cold"`` is solve_multidir's own start (the default before 'auto')."""
    xds, _, _, plan = sim
    fast = DDSolveStep(start="cold")
    config = CONFIG.model_copy(update={"slow": None, "scale_solint_with_flux": False,
                                       "fast": fast})
    plan = dataclasses.replace(plan, solint_factor=np.ones(plan.n_dir, np.int64))
    got = solve_facets(xds, plan, PC, config)["fast"]["GAIN"].values.transpose(3, 0, 1, 2, 4)
    model = predict_directions(xds, plan.sky, plan.name, PC, polarization=["XX", "YY"],
                               dtype=np.complex64).compute()
    hands = [0, 3]
    want = solve_multidir(xds["VISIBILITY"].values[..., hands], model,
                          xds["WEIGHT"].values[..., hands], xds["FLAG"].values[..., hands],
                          xds["antenna1"].values.astype(np.int64),
                          xds["antenna2"].values.astype(np.int64), 16, 1, fast.solint_freq,
                          mode=fast.mode, max_iter=fast.max_iter, inner_iter=fast.inner_iter,
                          tolerance=fast.tolerance, damping=fast.damping,
                          damping_every=fast.damping_every, ref_antenna=0).gains
    want = want / np.abs(want)  # phase-only gains are returned with unit modulus
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)
