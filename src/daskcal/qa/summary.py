"""Lazy QA summaries of a step: small reductions built on the step's own graph.

Each function returns an :class:`xarray.Dataset` of dask-backed reductions (a few
hundred kB at most, whatever the size of the data): the runner computes them in the
same ``dask.compute`` as the step's writes, so the data are read once. Plot axes are
decimated to at most :data:`MAX_PLOT_TIMES` x :data:`MAX_PLOT_CHANNELS` cells.

Summary datasets
----------------
visibilities (:func:`visibility_summary`)
    ``FLAG_FRACTION`` (scalar), ``FLAG_BASELINE`` (baseline_id), ``FLAG_TIME_FREQ``
    (plot_time, plot_frequency), ``AMP_TIME``/``PHASE_TIME`` (plot_time, polarization),
    ``AMP_FREQ``/``PHASE_FREQ`` (plot_frequency, polarization), ``UVW`` (uv_time,
    baseline_id, uvw_label); attributes ``n_samples``, ``data_bytes``, ``vis_var``.
gains (:func:`gains_summary`)
    ``AMP``/``PHASE`` (phase relative to the reference antenna) and ``FLAG``
    (plot_time, plot_frequency, antenna_name, receptor), ``CHI2``, ``CONVERGED``
    (gain_time, gain_frequency) where the solver gives them, ``FLAGGED_SOLUTIONS``,
    ``AMP_SCATTER`` (scalars).
A-team (:func:`ateam_summary`)
    ``ATEAM_FLUX`` (source): mean over baselines of the amplitude of the data
    phased up to each source (a scalar-averaged fringe, Jy), robust to gain phases.
"""

from __future__ import annotations

from collections.abc import Sequence

import dask.array as da
import numpy as np
import xarray as xr

#: Most time cells in a plot summary.
MAX_PLOT_TIMES = 200
#: Most frequency cells in a plot summary.
MAX_PLOT_CHANNELS = 128
#: Most integrations in the uv-coverage summary.
MAX_UV_TIMES = 48
_C_M_S = 299792458.0
_KEEP_COORDS = ("time", "frequency", "polarization", "baseline_id", "uvw_label",
                "baseline_antenna1_name", "baseline_antenna2_name")


def _factor(n: int, limit: int) -> int:
    return max(1, -(-n // limit))


def display_variable(xds: xr.Dataset) -> str:
    """The visibilities a step's plots show: corrected if present, else the base data."""
    return "VISIBILITY_CORRECTED" if "VISIBILITY_CORRECTED" in xds else "VISIBILITY"


def _slim(xds: xr.Dataset) -> xr.Dataset:
    drop = [c for c in xds.coords if c not in _KEEP_COORDS]
    return xds.drop_vars(drop)


def _coarsen_mean(x: xr.DataArray, dims: dict[str, int]) -> xr.DataArray:
    dims = {d: k for d, k in dims.items() if d in x.dims and k > 1}
    if not dims:
        return x
    out = x.coarsen(dims, boundary="pad").mean()
    return out


def visibility_summary(xds: xr.Dataset) -> xr.Dataset:
    """Flag, amplitude, phase and uv summaries of a visibility partition (lazy).

    Parameters
    ----------
    xds : xarray.Dataset
        A visibility partition (dims time, baseline_id, frequency, polarization).

    Returns
    -------
    xarray.Dataset
        See the module notes; nothing is computed.
    """
    xds = _slim(xds)
    var = display_variable(xds)
    n_t, n_f = xds.sizes["time"], xds.sizes["frequency"]
    kt, kf = _factor(n_t, MAX_PLOT_TIMES), _factor(n_f, MAX_PLOT_CHANNELS)
    flag = xds["FLAG"]
    vis = xds[var]
    # the unflagged finite samples, and sums that need no NaN skipping: a sum skipping
    # NaN (xarray's default) adds a zeros_like task per chunk, a full-size array with
    # no inputs, which the distributed scheduler queues as a root task: the data
    # chunks it meets wait for it in memory (see tests/pipeline/test_out_of_core.py)
    use = ~flag & np.isfinite(vis)
    good = use.astype(np.float32)
    amp = xr.where(use, np.abs(vis), np.float32(0))
    cvis = xr.where(use, vis, np.complex64(0))

    def per(dims: tuple[str, ...]) -> tuple[xr.DataArray, xr.DataArray]:
        n = good.sum(dims, skipna=False)
        a = amp.sum(dims, skipna=False) / n.where(n > 0)
        c = cvis.sum(dims, skipna=False)
        p = np.arctan2(c.imag, c.real)
        return a, xr.where(n > 0, p, np.nan)

    amp_t, ph_t = per(("baseline_id", "frequency"))
    amp_f, ph_f = per(("time", "baseline_id"))
    flag_tf = flag.astype(np.float32).mean(("baseline_id", "polarization"))
    uv_k = _factor(n_t, MAX_UV_TIMES)
    uvw = xds["UVW"].isel(time=slice(None, None, uv_k)).rename(time="uv_time")
    out = xr.Dataset({
        "FLAG_FRACTION": flag.astype(np.float32).mean(),
        "FLAG_BASELINE": flag.astype(np.float32).mean(("time", "frequency", "polarization")),
        "FLAG_TIME_FREQ": _coarsen_mean(flag_tf, {"time": kt, "frequency": kf}),
        "AMP_TIME": _coarsen_mean(amp_t, {"time": kt}),
        "PHASE_TIME": ph_t.isel(time=slice(None, None, kt)),
        "AMP_FREQ": _coarsen_mean(amp_f, {"frequency": kf}),
        "PHASE_FREQ": ph_f.isel(frequency=slice(None, None, kf)),
        "UVW": uvw.drop_vars([c for c in uvw.coords if "uv_time" in uvw[c].dims]),
    })
    # plot axes: the coarsened time/frequency are renamed so that they do not clash
    # with the decimated phase axes
    out["PHASE_TIME"] = out["PHASE_TIME"].rename(time="phase_time")
    out["PHASE_FREQ"] = out["PHASE_FREQ"].rename(frequency="phase_frequency")
    nbytes = int(sum(v.nbytes for v in xds.data_vars.values()))
    out.attrs = {"vis_var": var, "n_samples": int(vis.size), "data_bytes": nbytes,
                 "n_time": n_t, "n_chan": n_f, "n_baseline": xds.sizes["baseline_id"]}
    return out


def flag_only_summary(xds: xr.Dataset) -> xr.Dataset:
    """``FLAG_FRACTION`` and ``FLAG_BASELINE`` of a partition (the 'before' of a step)."""
    xds = _slim(xds)
    flag = xds["FLAG"].astype(np.float32)
    out = xr.Dataset({"FLAG_FRACTION": flag.mean(),
                      "FLAG_BASELINE": flag.mean(("time", "frequency", "polarization"))})
    out.attrs = {"n_samples": int(xds["FLAG"].size),
                 "data_bytes": int(sum(v.nbytes for v in xds.data_vars.values()))}
    return out


def antenna_flag_fraction(summary: xr.Dataset) -> xr.DataArray:
    """Per-antenna flagged fraction (mean over its baselines) from ``FLAG_BASELINE``."""
    fb = np.asarray(summary["FLAG_BASELINE"].values, dtype=np.float64)
    a1 = np.asarray(summary["baseline_antenna1_name"].values).astype(str)
    a2 = np.asarray(summary["baseline_antenna2_name"].values).astype(str)
    names = sorted(set(a1) | set(a2))
    vals = [float(np.mean(fb[(a1 == n) | (a2 == n)])) for n in names]
    return xr.DataArray(np.array(vals), dims="antenna_name",
                        coords={"antenna_name": np.array(names)})


def _diagonal(g: xr.DataArray) -> xr.DataArray:
    if "receptor2" not in g.dims:
        return g
    return xr.concat([g.isel(receptor=i, receptor2=i) for i in range(g.sizes["receptor"])],
                     dim="receptor").drop_vars("receptor2", errors="ignore")


def gains_summary(gains: xr.Dataset) -> xr.Dataset:
    """Amplitude, reference-relative phase, flags and solver diagnostics of gains (lazy).

    Parameters
    ----------
    gains : xarray.Dataset
        A gains dataset (``GAIN``, ``GAIN_FLAG``; ``CHI2``, ``CONVERGED`` optional).

    Returns
    -------
    xarray.Dataset
        See the module notes; nothing is computed.
    """
    g = _diagonal(gains["GAIN"])
    f = _diagonal(gains["GAIN_FLAG"])
    names = [str(n) for n in gains["antenna_name"].values]
    ref_name = str(gains.attrs.get("ref_antenna") or names[0])
    ref = names.index(ref_name) if ref_name in names else 0
    kt = _factor(gains.sizes["gain_time"], MAX_PLOT_TIMES)
    kf = _factor(gains.sizes["gain_frequency"], MAX_PLOT_CHANNELS)
    sel = {"gain_time": slice(None, None, kt), "gain_frequency": slice(None, None, kf)}
    # one |G| array serves the plots and the scatter (the phase needs no division by
    # the reference's amplitude): identical expressions built twice trip dask's
    # blockwise fusion when computed together
    amp_all = np.abs(g)
    gd, fd = g.isel(sel), f.isel(sel)
    rel = gd * np.conj(gd.isel(antenna_name=ref))
    amp = amp_all.where(~f)
    mean = amp.mean("antenna_name")
    scatter = (amp.std("antenna_name") / mean.where(mean > 0)).mean()  # no 0/0 warnings
    extra = [c for c in g.coords if c not in g.dims]
    plot = {"gain_time": "plot_time", "gain_frequency": "plot_frequency"}

    def slim(x: xr.DataArray) -> xr.DataArray:
        return x.drop_vars(extra, errors="ignore").rename(plot)

    out = xr.Dataset({
        "AMP": slim(amp_all.isel(sel)),
        "PHASE": slim(np.arctan2(rel.imag, rel.real)),
        "FLAG": slim(fd),
        "FLAGGED_SOLUTIONS": f.astype(np.float32).mean(),
        "AMP_SCATTER": scatter,
    })
    for name in ("CHI2", "CONVERGED"):
        if name in gains:
            out[name] = gains[name].reset_coords(drop=True)
    out.attrs = {"ref_antenna": ref_name, "mode": str(gains.attrs.get("mode", "")),
                 "n_solutions": int(f.size)}
    return out


def ateam_summary(xds: xr.Dataset, sources: Sequence[str], phase_centre_rad: np.ndarray,
                  epoch: float) -> xr.Dataset:
    """Apparent flux of A-team sources in a visibility partition (lazy).

    For each source: the data (parallel hands, unflagged) are phase-rotated to the
    source, averaged per baseline over time and frequency, and the mean over baselines
    of the amplitude is taken (Jy; a source that is present gives about its apparent
    flux times the time/bandwidth decorrelation, absent sources the noise level).

    Parameters
    ----------
    xds : xarray.Dataset
        A visibility partition.
    sources : sequence of str
        Names of :func:`daskcal.sky.ateam.ateam_sky_model`.
    phase_centre_rad : array, shape (2,)
        (RA, Dec) of the phase centre, radians.
    epoch : float
        Decimal year of the observation.

    Returns
    -------
    xarray.Dataset
        ``ATEAM_FLUX`` (source), dask-backed.
    """
    from daskcal.data.geometry import lmn_of
    from daskcal.sky.ateam import ateam_sky_model

    sky = ateam_sky_model(list(sources), epoch=epoch)
    pols = [str(p) for p in xds["polarization"].values]
    par = [i for i, p in enumerate(pols) if len(p) == 2 and p[0] == p[1]] or [0]
    vis = xds["VISIBILITY"].data[..., par]
    good = ~xds["FLAG"].data[..., par]
    uvw = xds["UVW"].data
    freq = np.asarray(xds["frequency"].values, np.float64)
    fd = da.from_array(freq, chunks=(vis.chunks[2],))
    fluxes = []
    for name in sources:
        patch = np.asarray(sky.patch).astype(str) == name
        sel = patch if patch.any() else np.ones(len(sky.ra), bool)
        w = np.asarray(sky.stokes)[sel, 0] if np.asarray(sky.stokes).ndim == 2 else None
        w = w if w is not None and w.sum() > 0 else np.ones(sel.sum())
        ra = float(np.average(np.asarray(sky.ra)[sel], weights=w))
        dec = float(np.average(np.asarray(sky.dec)[sel], weights=w))
        lmn = lmn_of(np.array([ra]), np.array([dec]), *map(float, phase_centre_rad))[0]
        delay = uvw[..., 0] * lmn[0] + uvw[..., 1] * lmn[1] + uvw[..., 2] * (lmn[2] - 1)
        phasor = da.exp(-2j * np.pi * delay[:, :, None] * fd[None, None, :] / _C_M_S)
        rot = vis * phasor[..., None].astype(np.complex64)
        num = da.where(good, rot, 0).sum(axis=(0, 2, 3))
        den = good.sum(axis=(0, 2, 3))
        per_bl = da.absolute(num) / da.maximum(den, 1)
        fluxes.append(da.where(den > 0, per_bl, np.nan))
    stack = da.stack(fluxes)
    flux = da.nanmean(stack, axis=1) if stack.shape[1] else da.zeros(len(sources))
    return xr.Dataset({"ATEAM_FLUX": (("source",), flux, {"units": "Jy"})},
                      coords={"source": np.array(list(sources), dtype=str)})


__all__ = ["MAX_PLOT_CHANNELS", "MAX_PLOT_TIMES", "MAX_UV_TIMES", "antenna_flag_fraction",
           "ateam_summary", "display_variable", "flag_only_summary", "gains_summary",
           "visibility_summary"]
