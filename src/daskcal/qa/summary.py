"""Lazy QA summaries of a step: small reductions built on the step's own graph.

Each function returns a :class:`~daskcal.qa.lazy.LazySummary`: one task per data block
computes the block's partial sums, and ``dask.compute`` combines them in numpy into an
:class:`xarray.Dataset` (a few hundred kB at most, whatever the size of the data). The
runner computes them in the same computation as the step's writes, so the data are read
once. Plot axes are decimated to at most :data:`MAX_PLOT_TIMES` x
:data:`MAX_PLOT_CHANNELS` cells.

Summary datasets
----------------
visibilities (:func:`visibility_summary`)
    ``FLAG_FRACTION`` (scalar), ``FLAG_BASELINE`` (baseline_id), ``FLAG_TIME_FREQ``
    (time, frequency: coarse cells, the mean of the fine cells and of their
    coordinates), ``AMP_TIME`` (time, polarization: coarse cells), ``PHASE_TIME``
    (phase_time, polarization: every ``kt``-th integration), ``AMP_FREQ`` (frequency,
    polarization: coarse cells), ``PHASE_FREQ`` (phase_frequency, polarization: every
    ``kf``-th channel), ``UVW`` (uv_time, baseline_id, uvw_label: every
    :data:`MAX_UV_TIMES`-th of the time axis, no uv_time coordinate); attributes
    ``n_samples``, ``data_bytes``, ``vis_var``, ``n_time``, ``n_chan``, ``n_baseline``.
gains (:func:`gains_summary`)
    ``AMP``/``PHASE`` (phase relative to the reference antenna; flags not applied) and
    ``FLAG`` (the diagonal's dims with plot_time, plot_frequency: every ``kt``-th
    solution time and ``kf``-th solution channel), ``CHI2``, ``CONVERGED`` (gain_time,
    gain_frequency) where the solver gives them, ``FLAGGED_SOLUTIONS``,
    ``AMP_SCATTER`` (scalars).
A-team (:func:`ateam_summary`)
    ``ATEAM_FLUX`` (source): mean over baselines of the amplitude of the data
    phased up to each source (a scalar-averaged fringe, Jy), robust to gain phases.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

import dask
import dask.array as da
import numpy as np
import xarray as xr

from daskcal.qa.lazy import LazySummary, assemble

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


def _vis_partial(vis: np.ndarray, flag: np.ndarray, uvw: np.ndarray, start: tuple[int, ...],
                 uv_k: int, with_uvw: bool) -> dict[str, Any]:
    """Partial sums of one block (time, baseline, frequency, polarization) of a partition.

    ``start`` is the block's first (time, baseline, frequency, polarization) index;
    ``uvw`` (time, baseline, 3) is kept for the times on the uv summary's grid (every
    ``uv_k``-th) when ``with_uvw`` (the blocks of the first frequency and polarization).
    """
    use = ~flag & np.isfinite(vis)
    amp = np.abs(vis)
    amp[~use] = 0
    cvis = np.where(use, vis, 0)
    out = {"start": start,
           "flag_bl": flag.sum(axis=(0, 2, 3), dtype=np.int64),
           "flag_tf": flag.sum(axis=(1, 3), dtype=np.int64),
           "n_t": use.sum(axis=(1, 2), dtype=np.int64),
           "amp_t": amp.sum(axis=(1, 2), dtype=np.float64),
           "c_t": cvis.sum(axis=(1, 2), dtype=np.complex128),
           "n_f": use.sum(axis=(0, 1), dtype=np.int64),
           "amp_f": amp.sum(axis=(0, 1), dtype=np.float64),
           "c_f": cvis.sum(axis=(0, 1), dtype=np.complex128)}
    if with_uvw:
        rows = start[0] + np.arange(vis.shape[0])
        keep = rows % uv_k == 0
        out["uvw"] = (rows[keep] // uv_k, np.asarray(uvw)[keep])
    return out


def _block_parts(fn: Any, arrays: list[tuple[Any, tuple, int]], **kw: Any) -> list[Any]:
    """``fn(*blocks, start, **kw)`` for every block of the first array, as Delayed.

    Parameters
    ----------
    fn : callable
        Module-level (workers import it).
    arrays : list of (dask array, chunks, lead)
        Each array is rechunked to ``chunks`` (a no-op when equal) and shares its first
        ``lead`` axes with the first array, whose blocks define the grid; its other axes
        must be one chunk.
    **kw
        Further arguments; a callable is called with the block's grid index.

    Returns
    -------
    list of Delayed
        In the grid's C order; ``start`` is the block's first index along every axis of
        the first array.
    """
    from daskcal.qa.lazy import blocks, offsets

    grids = [(blocks(x, chunks), lead) for x, chunks, lead in arrays]
    starts = [offsets(c) for c in arrays[0][1]]
    call = dask.delayed(fn, pure=True)
    parts = []
    for idx in np.ndindex(grids[0][0].shape):
        start = tuple(int(starts[d][i]) for d, i in enumerate(idx))
        ins = [g[idx[:lead] + (0,) * (g.ndim - lead)] for g, lead in grids]
        args = {k: v(idx) if callable(v) else v for k, v in kw.items()}
        parts.append(call(*ins, start, **args))
    return parts


def visibility_summary(xds: xr.Dataset) -> LazySummary:
    """Flag, amplitude, phase and uv summaries of a visibility partition (lazy).

    One task per data block computes its partial sums (:func:`_vis_partial`); they are
    combined in numpy where the summary is computed (see :mod:`daskcal.qa.lazy`).

    Parameters
    ----------
    xds : xarray.Dataset
        A visibility partition (dims time, baseline_id, frequency, polarization).

    Returns
    -------
    LazySummary
        Computes to the dataset of the module notes; nothing is computed here.
    """
    xds = _slim(xds)
    var = display_variable(xds)
    dims = ("time", "baseline_id", "frequency", "polarization")
    vis = _data(xds[var].transpose(*dims))
    flag = _data(xds["FLAG"].transpose(*dims))
    uvw = _data(xds["UVW"].transpose("time", "baseline_id", ...))
    n_t = xds.sizes["time"]
    uv_k = _factor(n_t, MAX_UV_TIMES)
    ch = vis.chunks
    parts = _block_parts(_vis_partial, [(vis, ch, 4), (flag, ch, 4),
                                        (uvw, (ch[0], ch[1], (uvw.shape[2],)), 2)],
                         uv_k=uv_k, with_uvw=lambda idx: idx[2] == 0 and idx[3] == 0)
    nbytes = int(sum(v.nbytes for v in xds.data_vars.values()))
    attrs = {"vis_var": var, "n_samples": int(np.prod(vis.shape)), "data_bytes": nbytes,
             "n_time": n_t, "n_chan": xds.sizes["frequency"],
             "n_baseline": xds.sizes["baseline_id"]}
    coords = xr.Dataset(coords={c: v for c, v in xds.coords.items()})
    return LazySummary(parts, functools.partial(_combine_vis, coords=coords, attrs=attrs,
                                                uv_k=uv_k))


def _data(x: xr.DataArray) -> da.Array:
    """The dask array of ``x`` (numpy data: one chunk)."""
    return x.data if isinstance(x.data, da.Array) else da.from_array(np.asarray(x.values),
                                                                     chunks=-1)


def _on(coords: xr.Dataset, values: np.ndarray, dims: tuple[str, ...]) -> xr.DataArray:
    """``values`` as a DataArray with the coordinates of ``coords`` on ``dims``."""
    keep = {k: v for k, v in coords.coords.items() if set(v.dims) <= set(dims)}
    return xr.DataArray(values, dims=dims, coords=keep)


def _combine_vis(parts: list[dict[str, Any]], coords: xr.Dataset, attrs: dict[str, Any],
                 uv_k: int) -> xr.Dataset:
    """The visibility summary from the blocks' partial sums (see :func:`_vis_partial`)."""
    nt, nb = coords.sizes["time"], coords.sizes["baseline_id"]
    nf, npol = coords.sizes["frequency"], coords.sizes["polarization"]

    def total(name: str, shape: tuple[int, ...], axes: tuple[int, ...], dtype: Any):
        return assemble(shape, [(tuple(p["start"][a] for a in axes), p[name]) for p in parts],
                        dtype)

    flag_bl = total("flag_bl", (nb,), (1,), np.int64)
    flag_tf = total("flag_tf", (nt, nf), (0, 2), np.int64)
    n_samples = nt * nb * nf * npol

    def per(axis: int, dim: str, length: int) -> tuple[xr.DataArray, xr.DataArray]:
        key = "t" if axis == 0 else "f"
        n = total(f"n_{key}", (length, npol), (axis, 3), np.int64)
        a = total(f"amp_{key}", (length, npol), (axis, 3), np.float64)
        c = total(f"c_{key}", (length, npol), (axis, 3), np.complex128)
        with np.errstate(invalid="ignore", divide="ignore"):
            amp = np.where(n > 0, a / n, np.nan).astype(np.float32)
        ph = np.where(n > 0, np.arctan2(c.imag, c.real), np.nan).astype(np.float32)
        return (_on(coords, amp, (dim, "polarization")),
                _on(coords, ph, (dim, "polarization")))

    kt, kf = _factor(nt, MAX_PLOT_TIMES), _factor(nf, MAX_PLOT_CHANNELS)
    amp_t, ph_t = per(0, "time", nt)
    amp_f, ph_f = per(2, "frequency", nf)
    with np.errstate(invalid="ignore", divide="ignore"):
        ftf = (flag_tf / (nb * npol)).astype(np.float32)
        fbl = (flag_bl / (nt * nf * npol)).astype(np.float32)
        frac = np.float32(flag_bl.sum() / n_samples) if n_samples else np.float32(np.nan)
    n_uv = -(-nt // uv_k) if nt else 0
    uvw = np.zeros((n_uv, nb, coords.sizes.get("uvw_label", 3)))
    for p in parts:
        if "uvw" in p:
            rows, block = p["uvw"]
            b0 = p["start"][1]
            uvw[rows, b0:b0 + block.shape[1]] = block
    uvw_da = _on(coords, uvw, ("uv_time", "baseline_id", "uvw_label"))
    out = xr.Dataset({
        "FLAG_FRACTION": xr.DataArray(frac),
        "FLAG_BASELINE": _on(coords, fbl, ("baseline_id",)),
        "FLAG_TIME_FREQ": _coarsen_mean(_on(coords, ftf, ("time", "frequency")),
                                        {"time": kt, "frequency": kf}),
        "AMP_TIME": _coarsen_mean(amp_t, {"time": kt}),
        "PHASE_TIME": ph_t.isel(time=slice(None, None, kt)).rename(time="phase_time"),
        "AMP_FREQ": _coarsen_mean(amp_f, {"frequency": kf}),
        "PHASE_FREQ": ph_f.isel(frequency=slice(None, None, kf)).rename(
            frequency="phase_frequency"),
        "UVW": uvw_da,
    })
    out.attrs = dict(attrs)
    return out


def _flag_partial(flag: np.ndarray, start: tuple[int, ...]) -> dict[str, Any]:
    """Flagged samples per baseline of one (time, baseline, frequency, polarization) block."""
    return {"start": start, "flag_bl": flag.sum(axis=(0, 2, 3), dtype=np.int64)}


def flag_only_summary(xds: xr.Dataset) -> LazySummary:
    """``FLAG_FRACTION`` and ``FLAG_BASELINE`` of a partition (the 'before' of a step)."""
    xds = _slim(xds)
    dims = ("time", "baseline_id", "frequency", "polarization")
    flag = _data(xds["FLAG"].transpose(*dims))
    parts = _block_parts(_flag_partial, [(flag, flag.chunks, 4)])
    attrs = {"n_samples": int(np.prod(flag.shape)),
             "data_bytes": int(sum(v.nbytes for v in xds.data_vars.values()))}
    coords = xr.Dataset(coords={c: v for c, v in xds.coords.items()})
    return LazySummary(parts, functools.partial(_combine_flags, coords=coords, attrs=attrs))


def _combine_flags(parts: list[dict[str, Any]], coords: xr.Dataset,
                   attrs: dict[str, Any]) -> xr.Dataset:
    nb = coords.sizes["baseline_id"]
    per_bl = assemble((nb,), [((p["start"][1],), p["flag_bl"]) for p in parts], np.int64)
    n = attrs["n_samples"]
    rest = n // nb if nb else 0
    with np.errstate(invalid="ignore", divide="ignore"):
        fbl = (per_bl / rest).astype(np.float32)
        frac = np.float32(per_bl.sum() / n) if n else np.float32(np.nan)
    out = xr.Dataset({"FLAG_FRACTION": xr.DataArray(frac),
                      "FLAG_BASELINE": _on(coords, fbl, ("baseline_id",))})
    out.attrs = dict(attrs)
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


def _gains_partial(gain: np.ndarray, flag: np.ndarray, start: tuple[int, ...],
                   dims: tuple[str, ...], kt: int, kf: int, ref: int) -> dict[str, Any]:
    """Plot cells, amplitude scatter and flag counts of one (gain_time, gain_frequency)
    block of gains (every other axis whole; ``dims`` their names)."""
    g = _diagonal(xr.DataArray(gain, dims=dims))
    f = _diagonal(xr.DataArray(flag, dims=dims))
    rows = np.flatnonzero((start[0] + np.arange(gain.shape[0])) % kt == 0)
    cols = np.flatnonzero((start[1] + np.arange(gain.shape[1])) % kf == 0)
    sel = {"gain_time": rows, "gain_frequency": cols}
    amp_all = np.abs(g)
    gd, fd = g.isel(sel), f.isel(sel)
    rel = gd * np.conj(gd.isel(antenna_name=ref))
    amp = amp_all.where(~f)
    mean = amp.mean("antenna_name")
    ratio = np.asarray((amp.std("antenna_name") / mean.where(mean > 0)).values)
    return {"start": (-(-start[0] // kt), -(-start[1] // kf)),
            "AMP": amp_all.isel(sel).values, "PHASE": np.arctan2(rel.imag, rel.real).values,
            "FLAG": fd.values, "ratio_sum": float(np.nansum(ratio)),
            "ratio_n": int(np.count_nonzero(~np.isnan(ratio))),
            "flagged": int(np.count_nonzero(f.values)), "n": int(f.size)}


def _placed(x: xr.DataArray) -> tuple[list[Any], dict[str, Any]]:
    """The blocks of a small array and how :func:`_combine_gains` puts them together."""
    from daskcal.qa.lazy import blocks, offsets

    arr = _data(x)
    grid = blocks(arr)
    starts = [offsets(c) for c in arr.chunks]
    where = [tuple(int(starts[d][i]) for d, i in enumerate(idx)) for idx in np.ndindex(grid.shape)]
    return [grid[idx] for idx in np.ndindex(grid.shape)], {
        "starts": where, "shape": arr.shape, "dtype": arr.dtype, "dims": x.dims,
        "coords": {d: x[d].values for d in x.dims if d in x.indexes}}


def gains_summary(gains: xr.Dataset) -> LazySummary:
    """Amplitude, reference-relative phase, flags and solver diagnostics of gains (lazy).

    One task per (gain_time, gain_frequency) block (:func:`_gains_partial`); ``CHI2``
    and ``CONVERGED`` are gathered block by block; all is put together in numpy where
    the summary is computed.

    Parameters
    ----------
    gains : xarray.Dataset
        A gains dataset (``GAIN``, ``GAIN_FLAG``; ``CHI2``, ``CONVERGED`` optional).

    Returns
    -------
    LazySummary
        Computes to the dataset of the module notes; nothing is computed here.
    """
    lead = ("gain_time", "gain_frequency")
    gain = gains["GAIN"].transpose(*lead, ...)
    flag = gains["GAIN_FLAG"].transpose(*gain.dims)
    names = [str(n) for n in gains["antenna_name"].values]
    ref_name = str(gains.attrs.get("ref_antenna") or names[0])
    ref = names.index(ref_name) if ref_name in names else 0
    kt = _factor(gains.sizes["gain_time"], MAX_PLOT_TIMES)
    kf = _factor(gains.sizes["gain_frequency"], MAX_PLOT_CHANNELS)
    g_d = _data(gain)
    chunks = (g_d.chunks[0], g_d.chunks[1], *((n,) for n in g_d.shape[2:]))
    parts = _block_parts(_gains_partial, [(g_d, chunks, 2), (_data(flag), chunks, 2)],
                         dims=gain.dims, kt=kt, kf=kf, ref=ref)
    # the plots' axes: the diagonal's dims (receptor2 dropped), time and frequency
    # decimated and renamed; index coordinates only
    shape0 = (0, 0, *g_d.shape[2:])  # no data: the diagonal's dims and sizes
    dims = _diagonal(xr.DataArray(np.zeros(shape0), dims=gain.dims)).dims
    coords = {d: gains[d].values for d in dims if d in gains.indexes}
    coords["gain_time"] = coords.get("gain_time", np.arange(gains.sizes["gain_time"]))[::kt]
    coords["gain_frequency"] = coords.get("gain_frequency",
                                          np.arange(gains.sizes["gain_frequency"]))[::kf]
    sizes = {**_diagonal(xr.DataArray(np.zeros(shape0), dims=gain.dims)).sizes,
             "gain_time": g_d.shape[0], "gain_frequency": g_d.shape[1]}
    n_solutions = int(np.prod([sizes[d] for d in dims]))
    layout: dict[str, Any] = {"n_gains": len(parts), "dims": dims, "coords": coords}
    for name in ("CHI2", "CONVERGED"):
        if name in gains:
            more, layout[name] = _placed(gains[name])
            parts += more
    attrs = {"ref_antenna": ref_name, "mode": str(gains.attrs.get("mode", "")),
             "n_solutions": n_solutions}
    return LazySummary(parts, functools.partial(_combine_gains, layout=layout, attrs=attrs))


def _combine_gains(parts: list[Any], layout: dict[str, Any],
                   attrs: dict[str, Any]) -> xr.Dataset:
    n = layout["n_gains"]
    ours, rest = parts[:n], parts[n:]
    dims, coords = layout["dims"], dict(layout["coords"])
    it, jf = dims.index("gain_time"), dims.index("gain_frequency")
    shape = [len(coords[d]) if d in ("gain_time", "gain_frequency") else None for d in dims]
    first = ours[0]["AMP"]
    shape = tuple(s if s is not None else first.shape[k] for k, s in enumerate(shape))

    def plane(name: str, dtype: Any) -> xr.DataArray:
        pieces = []
        for p in ours:
            start = [0] * len(dims)
            start[it], start[jf] = p["start"]
            pieces.append((tuple(start), p[name]))
        values = assemble(shape, pieces, dtype)
        return xr.DataArray(values, dims=dims, coords=coords).rename(
            gain_time="plot_time", gain_frequency="plot_frequency")

    n_ratio = sum(p["ratio_n"] for p in ours)
    total = sum(p["n"] for p in ours)
    out = xr.Dataset({
        "AMP": plane("AMP", first.dtype),
        "PHASE": plane("PHASE", ours[0]["PHASE"].dtype),
        "FLAG": plane("FLAG", bool),
        "FLAGGED_SOLUTIONS": xr.DataArray(np.float32(
            sum(p["flagged"] for p in ours) / total if total else np.nan)),
        "AMP_SCATTER": xr.DataArray(sum(p["ratio_sum"] for p in ours) / n_ratio
                                    if n_ratio else np.nan),
    })
    k = 0
    for name in ("CHI2", "CONVERGED"):
        lay = layout.get(name)
        if lay is None:
            continue
        blocks = rest[k:k + len(lay["starts"])]
        k += len(lay["starts"])
        values = assemble(lay["shape"], list(zip(lay["starts"], blocks, strict=True)),
                          lay["dtype"])
        out[name] = xr.DataArray(values, dims=lay["dims"], coords=lay["coords"])
    out.attrs = dict(attrs)
    return out


def _count_partial(flag: np.ndarray, start: tuple[int, ...]) -> tuple[int, int]:
    return int(np.count_nonzero(flag)), int(flag.size)


def flagged_solutions_summary(flag: xr.DataArray) -> LazySummary:
    """``FLAGGED_SOLUTIONS``: the flagged fraction of a flag array (lazy; one task per
    block)."""
    arr = _data(flag)
    parts = _block_parts(_count_partial, [(arr, arr.chunks, arr.ndim)])
    return LazySummary(parts, _combine_count)


def _combine_count(parts: list[tuple[int, int]]) -> xr.Dataset:
    n = sum(p[1] for p in parts)
    frac = np.float32(sum(p[0] for p in parts) / n) if n else np.float32(np.nan)
    return xr.Dataset({"FLAGGED_SOLUTIONS": xr.DataArray(frac)})


def _ateam_partial(vis: np.ndarray, flag: np.ndarray, uvw: np.ndarray, start: tuple[int, ...],
                   freq: np.ndarray, lmn: np.ndarray, par: list[int]) -> dict[str, Any]:
    """Per source and baseline, the phase-rotated unflagged data summed over one block's
    times, channels and parallel hands; and the number of samples summed."""
    v = vis[..., par]
    good = ~flag[..., par]
    f = freq[start[2]:start[2] + vis.shape[2]]
    num = np.zeros((len(lmn), vis.shape[1]), np.complex128)
    for s, (l_, m_, n_) in enumerate(lmn):
        delay = uvw[..., 0] * l_ + uvw[..., 1] * m_ + uvw[..., 2] * (n_ - 1)
        phasor = np.exp(-2j * np.pi * delay[:, :, None] * f[None, None, :] / _C_M_S)
        rot = v * phasor[..., None].astype(np.complex64)
        num[s] = np.where(good, rot, 0).sum(axis=(0, 2, 3))
    return {"b0": start[1], "num": num, "den": good.sum(axis=(0, 2, 3), dtype=np.int64)}


def ateam_summary(xds: xr.Dataset, sources: Sequence[str], phase_centre_rad: np.ndarray,
                  epoch: float) -> LazySummary:
    """Apparent flux of A-team sources in a visibility partition (lazy).

    For each source: the data (parallel hands, unflagged) are phase-rotated to the
    source, averaged per baseline over time and frequency, and the mean over baselines
    of the amplitude is taken (Jy; a source that is present gives about its apparent
    flux times the time/bandwidth decorrelation, absent sources the noise level).
    One task per data block (:func:`_ateam_partial`).

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
    LazySummary
        Computes to a dataset with ``ATEAM_FLUX`` (source), Jy.
    """
    from daskcal.data.geometry import lmn_of
    from daskcal.sky.ateam import ateam_sky_model

    sky = ateam_sky_model(list(sources), epoch=epoch)
    pols = [str(p) for p in xds["polarization"].values]
    par = [i for i, p in enumerate(pols) if len(p) == 2 and p[0] == p[1]] or [0]
    lmn = []
    for name in sources:
        patch = np.asarray(sky.patch).astype(str) == name
        sel = patch if patch.any() else np.ones(len(sky.ra), bool)
        w = np.asarray(sky.stokes)[sel, 0] if np.asarray(sky.stokes).ndim == 2 else None
        w = w if w is not None and w.sum() > 0 else np.ones(sel.sum())
        ra = float(np.average(np.asarray(sky.ra)[sel], weights=w))
        dec = float(np.average(np.asarray(sky.dec)[sel], weights=w))
        lmn.append(lmn_of(np.array([ra]), np.array([dec]), *map(float, phase_centre_rad))[0])
    dims = ("time", "baseline_id", "frequency", "polarization")
    vis = _data(xds["VISIBILITY"].transpose(*dims))
    flag = _data(xds["FLAG"].transpose(*dims))
    uvw = _data(xds["UVW"].transpose("time", "baseline_id", ...))
    ch = (*vis.chunks[:3], (vis.shape[3],))
    parts = _block_parts(_ateam_partial, [(vis, ch, 4), (flag, ch, 4),
                                          (uvw, (ch[0], ch[1], (uvw.shape[2],)), 2)],
                         freq=np.asarray(xds["frequency"].values, np.float64),
                         lmn=np.asarray(lmn, np.float64).reshape(-1, 3), par=par)
    return LazySummary(parts, functools.partial(
        _combine_ateam, sources=list(sources), n_baseline=vis.shape[1]))


def _combine_ateam(parts: list[dict[str, Any]], sources: list[str],
                   n_baseline: int) -> xr.Dataset:
    num = np.zeros((len(sources), n_baseline), np.complex128)
    den = np.zeros(n_baseline, np.int64)
    for p in parts:
        b = slice(p["b0"], p["b0"] + p["den"].shape[0])
        num[:, b] += p["num"]
        den[b] += p["den"]
    per_bl = np.where(den > 0, np.abs(num) / np.maximum(den, 1), np.nan)
    if n_baseline and (den > 0).any():
        flux = np.nanmean(per_bl, axis=1)
    else:
        flux = np.full(len(sources), np.nan) if n_baseline else np.zeros(len(sources))
    return xr.Dataset({"ATEAM_FLUX": (("source",), flux, {"units": "Jy"})},
                      coords={"source": np.array(list(sources), dtype=str)})


__all__ = ["MAX_PLOT_CHANNELS", "MAX_PLOT_TIMES", "MAX_UV_TIMES", "antenna_flag_fraction",
           "ateam_summary", "display_variable", "flag_only_summary",
           "flagged_solutions_summary", "gains_summary", "visibility_summary"]
