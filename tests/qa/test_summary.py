"""Lazy QA summaries against a slow numpy reference: values, dims, coordinates, attributes.

Every summary is computed as ``(result,) = dask.compute(summary(...))`` and compared,
variable by variable, with a dataset built here from the input's numpy arrays by plain
loops (no xarray reductions), so that a reimplementation of :mod:`daskcal.qa.summary`
must give the same numbers on the same axes.
"""

from __future__ import annotations

import itertools
import math

import dask
import dask.array as da
import numpy as np
import pytest
import xarray as xr

from daskcal.data.geometry import lmn_of
from daskcal.qa.summary import (
    MAX_PLOT_CHANNELS,
    MAX_PLOT_TIMES,
    MAX_UV_TIMES,
    ateam_summary,
    display_variable,
    flag_only_summary,
    gains_summary,
    visibility_summary,
)
from daskcal.sky.ateam import ATEAM

C_M_S = 299792458.0
POLS = ("XX", "XY", "YX", "YY")
VIS_DIMS = ("time", "baseline_id", "frequency", "polarization")
STATIONS = ("CS001", "CS002", "CS003", "CS004", "RS106", "RS205")
#: (n_time, n_baseline, n_channel, chunks along (time, baseline_id, frequency))
SMALL = (23, 12, 10, (7, 5, 3))
#: long enough that kt, kf and uv_k are > 1 and do not divide the lengths
LONG = (457, 3, 260, (100, 2, 64))
#: a phase centre about a degree from Cas A, which the synthetic data contain (Jy)
PHASE_CENTRE = np.array([ATEAM["CasA"]["ra"] + math.radians(2.0),
                         ATEAM["CasA"]["dec"] - math.radians(0.5)])
CASA_JY = 50.0
EPOCH = 2024.3



# ----------------------------------------------------------------------------- inputs


def _visibilities(shape=SMALL, *, seed=0, corrected=False, dask_backed=True,
                  all_flagged=False) -> xr.Dataset:
    """A synthetic visibility partition with flags, NaN samples and Cas A in it.

    Parameters
    ----------
    shape : tuple
        ``(n_time, n_baseline, n_channel, chunks)``, see :data:`SMALL`.
    seed : int
        Random seed.
    corrected : bool
        Add a ``VISIBILITY_CORRECTED`` (different from ``VISIBILITY``).
    dask_backed : bool
        Wrap the data variables as dask arrays with ``chunks`` (else numpy).
    all_flagged : bool
        Flag every sample.

    Returns
    -------
    xarray.Dataset
        Baseline 1, times 3, 4, 5, 11 and channels 6, 7, 8 fully flagged, 15 % of
        the rest flagged at random (with 10x larger values), a few unflagged NaN in
        baselines 0 and 5 (if there is one).
    """
    n_t, n_b, n_f, chunks = shape
    rng = np.random.default_rng(seed)
    time = 4.9e9 + np.cumsum(8.0 + rng.random(n_t))  # irregular: coarse means are not samples
    freq = 1.2e8 + np.arange(n_f) * 1.953125e5 + rng.random(n_f) * 1e3
    uvw = rng.normal(0.0, 400.0, (n_t, n_b, 3))
    noise = rng.normal(size=(2, n_t, n_b, n_f, 4))
    vis = (0.7 + 0.4j) + 2.0 * (noise[0] + 1j * noise[1])
    lmn = lmn_of(np.array([ATEAM["CasA"]["ra"]]), np.array([ATEAM["CasA"]["dec"]]),
                 *PHASE_CENTRE)[0]
    delay = uvw @ np.array([lmn[0], lmn[1], lmn[2] - 1.0])
    vis[..., [0, 3]] += (CASA_JY * np.exp(2j * np.pi * delay[:, :, None] * freq / C_M_S))[..., None]
    flag = rng.random(vis.shape) < 0.15
    idx = tuple(rng.integers(0, n, 8) for n in vis.shape)
    idx[1][:] = np.where(idx[1] % 2 & (n_b > 5), 5, 0)  # NaN in baselines 0 (and 5) only
    vis[idx] = np.nan
    flag[idx] = False  # unflagged NaN: only np.isfinite keeps them out
    flag[:, 1] = True
    flag[[t for t in (3, 4, 5, 11) if t < n_t]] = True
    flag[:, :, [f for f in (6, 7, 8) if f < n_f]] = True
    if all_flagged:
        flag[:] = True
    vis[flag] *= 10.0  # a summary that used flagged data would be far off
    data = {"VISIBILITY": vis.astype(np.complex64), "FLAG": flag, "UVW": uvw}
    if corrected:
        data["VISIBILITY_CORRECTED"] = (vis * (0.5 - 0.25j)
                                        + rng.normal(size=vis.shape)).astype(np.complex64)
    pairs = list(itertools.combinations(STATIONS, 2))[:n_b]
    xds = xr.Dataset(
        {name: (("time", "baseline_id", "uvw_label") if name == "UVW" else VIS_DIMS,
                da.from_array(arr, chunks=chunks[:2] + (3,) if name == "UVW" else chunks + (4,))
                if dask_backed else arr)
         for name, arr in data.items()},
        coords={"time": time, "baseline_id": np.arange(n_b) * 3 + 1, "frequency": freq,
                "polarization": list(POLS), "uvw_label": ["u", "v", "w"],
                "baseline_antenna1_name": ("baseline_id", [a for a, _ in pairs]),
                "baseline_antenna2_name": ("baseline_id", [b for _, b in pairs]),
                # not plot material: _slim drops them
                "baseline_length": ("baseline_id", np.linalg.norm(uvw[0], axis=1)),
                "scan_number": ("time", np.arange(n_t) // 5)})
    if not all_flagged:
        use = ~flag & np.isfinite(vis)
        assert (~use).any() and use.any() and (flag & np.isfinite(vis)).any()
        assert (np.isnan(vis) & ~flag).any()
    return xds


def _gains(n_time=19, n_chan=7, *, full=True, seed=1, chunks=(6, 3), solver=True,
           dask_backed=True) -> xr.Dataset:
    """A synthetic gains dataset as the solve stage writes it (random flags).

    Parameters
    ----------
    n_time, n_chan : int
        Solution cells.
    full : bool
        Full-Jones (``receptor``, ``receptor2``) rather than diagonal gains.
    seed : int
        Random seed.
    chunks : tuple
        Chunks along ``gain_time``, ``gain_frequency``.
    solver : bool
        Include ``CHI2`` and ``CONVERGED``.
    dask_backed : bool
        Dask arrays (else numpy).

    Returns
    -------
    xarray.Dataset
        Antenna 2 of 6 the reference; antenna 4 flagged in every cell, cell (0, 0)
        flagged on every antenna.
    """
    rng = np.random.default_rng(seed)
    n_ant = 6
    names = [f"ANT{i}" for i in range(n_ant)]
    shape = (n_time, n_chan, n_ant, 2) + ((2,) if full else ())
    dims = ("gain_time", "gain_frequency", "antenna_name", "receptor") + \
        (("receptor2",) if full else ())
    gain = (1.0 + 0.3 * rng.normal(size=shape)) * np.exp(1j * rng.uniform(-np.pi, np.pi, shape))
    flag = rng.random(shape) < 0.1
    flag[:, :, 4] = True
    flag[0, 0] = True
    gain[flag] *= 7.0  # the scatter must leave these out (the plots do not)
    t = 4.9e9 + np.cumsum(60.0 + rng.random(n_time))
    f = 1.2e8 + np.arange(n_chan) * 2e6
    coords = {"gain_time": t, "gain_time_lower": ("gain_time", t - 30.0),
              "gain_time_upper": ("gain_time", t + 30.0), "gain_frequency": f,
              "gain_frequency_lower": ("gain_frequency", f - 1e6),
              "antenna_name": names, "receptor": ["X", "Y"]}
    if full:
        coords["receptor2"] = ["X", "Y"]

    def wrap(arr):
        if not dask_backed:
            return arr
        return da.from_array(arr, chunks=chunks + arr.shape[2:])

    data = {"GAIN": (dims, wrap(gain)), "GAIN_FLAG": (dims, wrap(flag))}
    if solver:
        data["CHI2"] = (("gain_time", "gain_frequency"), wrap(1.0 + rng.random((n_time, n_chan))))
        data["CONVERGED"] = (("gain_time", "gain_frequency"),
                             wrap(rng.random((n_time, n_chan)) < 0.8))
    return xr.Dataset(data, coords=coords,
                      attrs={"ref_antenna": "ANT2", "mode": "full_jones" if full else
                             "diagonal_complex", "type": "gain"})


# ----------------------------------------------------------------------------- reference


def _computed(lazy) -> xr.Dataset:
    """The in-memory dataset of a summary (one threaded ``dask.compute``)."""
    (out,) = dask.compute(lazy, scheduler="threads")
    assert isinstance(out, xr.Dataset)
    return out.load()


def _factor(n: int, limit: int) -> int:
    """The decimation factor that leaves at most ``limit`` cells of ``n``."""
    return max(1, math.ceil(n / limit))


def _nanmean(x, axis=None):
    """Mean of the finite values (NaN where there are none), without warnings."""
    x = np.asarray(x, dtype=np.float64)
    ok = np.isfinite(x)
    n = ok.sum(axis)
    s = np.where(ok, x, 0.0).sum(axis)
    return np.where(n > 0, s / np.maximum(n, 1), np.nan)


def _coarsen(x, coord, k: int, axis: int):
    """Cells of ``k`` samples along ``axis``, the last one the remainder.

    Returns
    -------
    values, coord : ndarray
        The nan-mean of the values of each cell, the mean of its coordinates.
    """
    n = x.shape[axis]
    starts = range(0, n, k)
    vals = [_nanmean(np.take(x, np.arange(s, min(s + k, n)), axis=axis), axis=axis)
            for s in starts]
    return np.stack(vals, axis=axis), np.array([np.mean(coord[s:s + k]) for s in starts])


def _per_cell(vis, use, axes):
    """Mean amplitude and phase of the sum of the used samples, per remaining index."""
    v = np.moveaxis(vis.astype(np.complex128), axes, range(len(axes)))
    u = np.moveaxis(use, axes, range(len(axes)))
    amp = np.full(v.shape[len(axes):], np.nan)
    phase = np.full(v.shape[len(axes):], np.nan)
    for i in np.ndindex(*amp.shape):
        sel = v[(Ellipsis, *i)][u[(Ellipsis, *i)]]
        if sel.size:
            amp[i] = np.abs(sel).mean()
            phase[i] = np.angle(sel.sum())
    return amp, phase


def _reference_visibility(xds: xr.Dataset) -> xr.Dataset:
    """The visibility summary of ``xds``, by numpy loops."""
    var = "VISIBILITY_CORRECTED" if "VISIBILITY_CORRECTED" in xds else "VISIBILITY"
    vis = np.asarray(xds[var].values)
    flag = np.asarray(xds["FLAG"].values)
    uvw = np.asarray(xds["UVW"].values)
    t = np.asarray(xds["time"].values)
    f = np.asarray(xds["frequency"].values)
    n_t, n_b, n_f, n_p = vis.shape
    kt, kf, uv_k = (_factor(n_t, MAX_PLOT_TIMES), _factor(n_f, MAX_PLOT_CHANNELS),
                    _factor(n_t, MAX_UV_TIMES))
    use = ~flag & np.isfinite(vis)
    flags = flag.astype(np.float64)
    amp_t, ph_t = _per_cell(vis, use, (1, 2))  # (time, polarization)
    amp_f, ph_f = _per_cell(vis, use, (0, 1))  # (frequency, polarization)
    flag_tf, tc = _coarsen(flags.mean(axis=(1, 3)), t, kt, 0)
    flag_tf, fc = _coarsen(flag_tf, f, kf, 1)
    amp_t, _ = _coarsen(amp_t, t, kt, 0)
    amp_f, _ = _coarsen(amp_f, f, kf, 0)
    ph_t, td = ph_t[::kt], t[::kt]
    ph_f, fd = ph_f[::kf], f[::kf]
    f32 = np.float32
    keep = ("baseline_id", "baseline_antenna1_name", "baseline_antenna2_name")
    out = xr.Dataset(
        {"FLAG_FRACTION": ((), f32(flags.mean())),
         "FLAG_BASELINE": (("baseline_id",), flags.mean(axis=(0, 2, 3)).astype(f32)),
         "FLAG_TIME_FREQ": (("time", "frequency"), flag_tf.astype(f32)),
         "AMP_TIME": (("time", "polarization"), amp_t.astype(f32)),
         "PHASE_TIME": (("phase_time", "polarization"), ph_t.astype(f32)),
         "AMP_FREQ": (("frequency", "polarization"), amp_f.astype(f32)),
         "PHASE_FREQ": (("phase_frequency", "polarization"), ph_f.astype(f32)),
         "UVW": (("uv_time", "baseline_id", "uvw_label"), uvw[::uv_k])},
        coords={"time": tc, "frequency": fc, "phase_time": td, "phase_frequency": fd,
                "polarization": list(POLS), "uvw_label": ["u", "v", "w"],
                **{c: ("baseline_id", np.asarray(xds[c].values)) for c in keep}})
    n_bytes = sum(np.asarray(xds[v].values).nbytes for v in xds.data_vars)
    out.attrs = {"vis_var": var, "n_samples": vis.size, "data_bytes": n_bytes,
                 "n_time": n_t, "n_chan": n_f, "n_baseline": n_b}
    return out


def _reference_flag_only(xds: xr.Dataset) -> xr.Dataset:
    """The flag-only summary of ``xds``, by numpy."""
    flags = np.asarray(xds["FLAG"].values).astype(np.float64)
    keep = ("baseline_id", "baseline_antenna1_name", "baseline_antenna2_name")
    out = xr.Dataset(
        {"FLAG_FRACTION": ((), np.float32(flags.mean())),
         "FLAG_BASELINE": (("baseline_id",), flags.mean(axis=(0, 2, 3)).astype(np.float32))},
        coords={c: ("baseline_id", np.asarray(xds[c].values)) for c in keep})
    out.attrs = {"n_samples": flags.size,
                 "data_bytes": sum(np.asarray(xds[v].values).nbytes for v in xds.data_vars)}
    return out


def _reference_ateam(xds: xr.Dataset, sources, phase_centre) -> xr.Dataset:
    """Mean over baselines of |sum of the unflagged XX, YY data phased to a source| / count.

    A baseline with no unflagged sample, or an unflagged NaN, does not count.
    """
    vis = np.asarray(xds["VISIBILITY"].values)[..., [0, 3]]
    good = ~np.asarray(xds["FLAG"].values)[..., [0, 3]]
    uvw = np.asarray(xds["UVW"].values)
    freq = np.asarray(xds["frequency"].values)
    flux = []
    for name in sources:
        l, m, n = lmn_of(np.array([ATEAM[name]["ra"]]), np.array([ATEAM[name]["dec"]]),
                         *phase_centre)[0]
        per_bl = []
        for b in range(vis.shape[1]):
            delay = uvw[:, b, 0] * l + uvw[:, b, 1] * m + uvw[:, b, 2] * (n - 1.0)
            phasor = np.exp(-2j * np.pi * delay[:, None] * freq[None, :] / C_M_S)
            rot = vis[:, b] * phasor.astype(np.complex64)[..., None]
            sel = rot[good[:, b]].astype(np.complex128)
            per_bl.append(abs(sel.sum()) / sel.size if sel.size else np.nan)
        flux.append(_nanmean(per_bl))
    return xr.Dataset({"ATEAM_FLUX": (("source",), np.array(flux), {"units": "Jy"})},
                      coords={"source": list(sources)})


def _reference_gains(gains: xr.Dataset) -> xr.Dataset:
    """The gains summary of ``gains``, by numpy loops."""
    g = np.asarray(gains["GAIN"].values)
    f = np.asarray(gains["GAIN_FLAG"].values)
    full = "receptor2" in gains["GAIN"].dims
    if full:  # the diagonal, receptor last
        g = np.stack([g[..., i, i] for i in range(g.shape[-1])], axis=-1)
        f = np.stack([f[..., i, i] for i in range(f.shape[-1])], axis=-1)
    names = [str(n) for n in gains["antenna_name"].values]
    ref = names.index(gains.attrs["ref_antenna"])
    n_t, n_f, n_a, n_r = g.shape
    kt, kf = _factor(n_t, MAX_PLOT_TIMES), _factor(n_f, MAX_PLOT_CHANNELS)
    gd, fd = g[::kt, ::kf], f[::kt, ::kf]
    phase = np.empty(gd.shape)
    for a in range(n_a):
        phase[:, :, a] = np.angle(gd[:, :, a] * np.conj(gd[:, :, ref]))
    ratios = []
    for i in np.ndindex(n_t, n_f, n_r):
        amp = np.abs(g[i[0], i[1], :, i[2]])[~f[i[0], i[1], :, i[2]]]
        if amp.size and amp.mean() > 0:
            ratios.append(amp.std() / amp.mean())
    dims = ("plot_time", "plot_frequency", "antenna_name", "receptor")
    if full:  # xr.concat over receptor puts it first
        order = (3, 0, 1, 2)
        dims = tuple(dims[i] for i in order)
    else:
        order = (0, 1, 2, 3)
    cell = ("gain_time", "gain_frequency")
    data = {"AMP": (dims, np.abs(gd).transpose(order)),
            "PHASE": (dims, phase.transpose(order)),
            "FLAG": (dims, fd.transpose(order)),
            "FLAGGED_SOLUTIONS": ((), np.float32(f.mean())),
            "AMP_SCATTER": ((), np.mean(ratios) if ratios else np.nan)}
    for name in ("CHI2", "CONVERGED"):
        if name in gains:
            data[name] = (cell, np.asarray(gains[name].values))
    t = np.asarray(gains["gain_time"].values)
    fr = np.asarray(gains["gain_frequency"].values)
    out = xr.Dataset(data, coords={"plot_time": t[::kt], "plot_frequency": fr[::kf],
                                   "antenna_name": names, "receptor": ["X", "Y"],
                                   "gain_time": t, "gain_frequency": fr})
    if not any(name in gains for name in ("CHI2", "CONVERGED")):
        out = out.drop_vars(["gain_time", "gain_frequency"])
    out.attrs = {"ref_antenna": names[ref], "mode": gains.attrs["mode"], "n_solutions": f.size}
    return out


def _assert_matches(result: xr.Dataset, expected: xr.Dataset, *, rtol=1e-5, phase_atol=1e-5):
    """Same variables, dims, dtypes, coordinates and attributes; values within tolerance.

    Phases (variables named ``PHASE*``) are compared modulo 2 pi with ``phase_atol``;
    NaN must sit at the same places everywhere.
    """
    assert sorted(result.data_vars) == sorted(expected.data_vars)
    assert sorted(result.coords) == sorted(expected.coords)
    assert dict(result.sizes) == dict(expected.sizes)
    for name, want in expected.coords.items():
        got = result[name]
        assert got.dims == want.dims, name
        if want.dtype.kind == "f":
            np.testing.assert_allclose(got.values, want.values, rtol=1e-13, err_msg=name)
        else:
            assert got.dtype.kind == want.dtype.kind, name
            np.testing.assert_array_equal(got.values, want.values, err_msg=name)
    for name, want in expected.data_vars.items():
        got = result[name]
        assert got.dims == want.dims, name
        assert got.dtype == want.dtype, (name, got.dtype, want.dtype)
        assert got.attrs == want.attrs, name
        a, b = np.asarray(got.values), np.asarray(want.values)
        if want.dtype.kind == "b":
            np.testing.assert_array_equal(a, b, err_msg=name)
        elif name.startswith("PHASE"):
            np.testing.assert_array_equal(np.isnan(a), np.isnan(b), err_msg=name)
            ok = np.isfinite(b)
            d = np.angle(np.exp(1j * (a[ok].astype(np.float64) - b[ok])))
            assert np.all(np.abs(d) <= phase_atol), (name, np.abs(d).max())
        else:
            np.testing.assert_allclose(a, b, rtol=rtol, atol=0, equal_nan=True, err_msg=name)
    assert result.attrs == expected.attrs


# ----------------------------------------------------------------------------- visibilities


@pytest.mark.parametrize("shape", [SMALL, LONG], ids=["small", "decimated"])
def test_visibility_summary_matches_numpy_reference(shape):
    xds = _visibilities(shape)
    lazy = visibility_summary(xds)
    assert dask.is_dask_collection(lazy)
    out = _computed(lazy)
    ref = _reference_visibility(xds)
    _assert_matches(out, ref)
    n_t, _, n_f, _ = shape
    kt, kf = _factor(n_t, MAX_PLOT_TIMES), _factor(n_f, MAX_PLOT_CHANNELS)
    uv_k = _factor(n_t, MAX_UV_TIMES)
    if shape is LONG:  # the remainder cells are exercised
        assert kt > 1 and kf > 1 and uv_k > 1
        assert n_t % kt and n_f % kf and n_t % uv_k
    assert out.sizes["uv_time"] == len(range(0, n_t, uv_k))
    assert "scan_number" not in out.coords and "baseline_length" not in out.coords
    # the fully flagged baseline, times and channels
    assert out["FLAG_BASELINE"].sel(baseline_id=4).item() == 1.0
    assert np.isnan(out["PHASE_TIME"].sel(phase_time=xds["time"].values[3])).all()
    flags = np.asarray(xds["FLAG"].values)
    assert out["FLAG_FRACTION"].item() == pytest.approx(flags.mean(), rel=1e-6)
    assert 0.0 < out["FLAG_FRACTION"].item() < 1.0


def test_flag_only_summary_matches_numpy_reference():
    xds = _visibilities(SMALL, seed=3)
    lazy = flag_only_summary(xds)
    assert dask.is_dask_collection(lazy)
    out = _computed(lazy)
    _assert_matches(out, _reference_flag_only(xds))
    # the same numbers as the full summary
    full = _computed(visibility_summary(xds))
    for name in ("FLAG_FRACTION", "FLAG_BASELINE"):
        np.testing.assert_allclose(out[name].values, full[name].values, rtol=1e-6)


def test_display_variable_and_corrected_summary():
    base = _visibilities(SMALL, seed=4)
    xds = _visibilities(SMALL, seed=4, corrected=True)
    assert display_variable(base) == "VISIBILITY"
    assert display_variable(xds) == "VISIBILITY_CORRECTED"
    out = _computed(visibility_summary(xds))
    assert out.attrs["vis_var"] == "VISIBILITY_CORRECTED"
    _assert_matches(out, _reference_visibility(xds))
    other = _computed(visibility_summary(base))
    assert other.attrs["vis_var"] == "VISIBILITY"
    assert out.attrs["data_bytes"] > other.attrs["data_bytes"]
    assert not np.allclose(out["AMP_TIME"].values, other["AMP_TIME"].values, equal_nan=True)
    # the A-team summary reads the base data whatever is present
    ateam = _computed(ateam_summary(xds, ["CasA"], PHASE_CENTRE, EPOCH))
    _assert_matches(ateam, _reference_ateam(base, ["CasA"], PHASE_CENTRE))


def test_all_flagged_partition_gives_nan_amplitudes():
    xds = _visibilities(SMALL, seed=5, all_flagged=True)
    out = _computed(visibility_summary(xds))
    _assert_matches(out, _reference_visibility(xds))
    assert out["FLAG_FRACTION"].item() == 1.0
    assert np.all(out["FLAG_BASELINE"].values == 1.0)
    assert np.all(out["FLAG_TIME_FREQ"].values == 1.0)
    for name in ("AMP_TIME", "PHASE_TIME", "AMP_FREQ", "PHASE_FREQ"):
        assert np.isnan(out[name].values).all(), name
    assert np.isfinite(out["UVW"].values).all()
    before = _computed(flag_only_summary(xds))
    assert before["FLAG_FRACTION"].item() == 1.0
    ateam = _computed(ateam_summary(xds, ["CasA", "CygA"], PHASE_CENTRE, EPOCH))
    assert np.isnan(ateam["ATEAM_FLUX"].values).all()


@pytest.mark.parametrize("summary", [visibility_summary, flag_only_summary])
def test_numpy_backed_partition(summary):
    xds = _visibilities(SMALL, seed=6, dask_backed=False)
    reference = {visibility_summary: _reference_visibility,
                 flag_only_summary: _reference_flag_only}[summary]
    _assert_matches(_computed(summary(xds)), reference(xds))


# ----------------------------------------------------------------------------- A-team


@pytest.mark.parametrize("shape", [SMALL, LONG], ids=["small", "long"])
def test_ateam_summary_matches_numpy_reference(shape):
    sources = ["CygA", "CasA", "VirA"]
    xds = _visibilities(shape, seed=7)
    lazy = ateam_summary(xds, sources, PHASE_CENTRE, EPOCH)
    assert dask.is_dask_collection(lazy)
    out = _computed(lazy)
    _assert_matches(out, _reference_ateam(xds, sources, PHASE_CENTRE))
    flux = out["ATEAM_FLUX"].sel(source="CasA").item()
    assert flux == pytest.approx(CASA_JY, rel=0.05)  # the source in the data, phased up
    assert out["ATEAM_FLUX"].sel(source="CygA").item() < 0.1 * CASA_JY


def test_ateam_summary_of_numpy_backed_partition():
    xds = _visibilities(SMALL, seed=8, dask_backed=False)
    out = _computed(ateam_summary(xds, ["CasA"], PHASE_CENTRE, EPOCH))
    _assert_matches(out, _reference_ateam(xds, ["CasA"], PHASE_CENTRE))


# ----------------------------------------------------------------------------- gains




@pytest.mark.parametrize(("kwargs", "decimated"), [
    pytest.param({"full": True, "n_time": 205, "n_chan": 9, "chunks": (50, 4)}, True,
                 id="full-jones-decimated"),
    pytest.param({"full": False, "n_time": 203, "solver": False, "chunks": (64, 5)}, True,
                 id="diagonal-no-solver-decimated"),
    pytest.param({"full": True, "dask_backed": False}, False, id="full-jones-numpy"),
    pytest.param({"full": False, "dask_backed": False}, False, id="diagonal-numpy"),
    pytest.param({"full": True}, False, id="full-jones"),
    pytest.param({"full": False}, False, id="diagonal"),
])
def test_gains_summary_matches_numpy_reference(kwargs, decimated):
    gains = _gains(**kwargs)
    lazy = gains_summary(gains)
    if kwargs.get("dask_backed", True):
        assert dask.is_dask_collection(lazy)
    out = _computed(lazy)
    _assert_matches(out, _reference_gains(gains), rtol=1e-12, phase_atol=1e-12)
    n_t = gains.sizes["gain_time"]
    assert (out.sizes["plot_time"] < n_t) == decimated
    if decimated:
        assert n_t % _factor(n_t, MAX_PLOT_TIMES)
    # the reference antenna's phase is zero, its flags are in FLAG, the scatter is finite
    assert np.all(np.abs(out["PHASE"].sel(antenna_name="ANT2").values) < 1e-12)
    assert out["FLAG"].sel(antenna_name="ANT4").values.all()
    assert np.isfinite(out["AMP_SCATTER"].item())
    assert out.attrs["ref_antenna"] == "ANT2"


def test_summaries_are_one_task_per_block():
    """A summary adds one task per data block to its input's graph (the partial sums),
    and the sums are combined where it is computed: no reduction tree of tasks."""
    xds = _visibilities(SMALL, seed=11)
    vis = xds["VISIBILITY"].data
    n_blocks = math.prod(vis.numblocks)
    inputs = set()
    for name in ("VISIBILITY", "FLAG", "UVW"):
        inputs |= set(dict(xds[name].data.__dask_graph__()))
    for lazy in (visibility_summary(xds), flag_only_summary(xds),
                 ateam_summary(xds, ["CasA"], PHASE_CENTRE, EPOCH)):
        keys = set(dict(lazy.__dask_graph__()))
        assert len(lazy.__dask_keys__()) == n_blocks
        assert len(keys - inputs) == n_blocks, type(lazy)
