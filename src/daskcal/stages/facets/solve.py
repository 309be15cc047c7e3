"""Direction-dependent solves over facets (DP3 DDECal / Rapthor's two-step scheme), lazily.

Scheme
------
For the directions ``d`` of a :class:`~daskcal.stages.facets.config.FacetPlan`, the
model ``M^d`` is the DFT prediction of the components of facet ``d``
(:func:`daskcal.stages.subtract.predict_directions`, parallel hands only). Each Dask
task holds one (time, frequency) chunk of data and all the directions' models and runs:

1. **fast**: :func:`~daskcal.kernels.solvers._multidir.solve_multidir` jointly over all
   directions, ``config.fast`` (default ``scalar_phase``), direction ``d`` with the
   time interval ``fast.solint_time * k_d`` (``k_d`` from the direction's apparent
   flux) and ``fast.solint_freq`` channels -> gains ``f^d``;
2. **slow** (if ``config.slow``): the same joint solver on the *model corrupted by
   the fast gains*, ``M'^d_pq = f^d_p M^d_pq conj(f^d_q)``, with ``config.slow``
   (default ``diagonal_complex``), intervals ``slow.solint_time * k_d`` and
   ``slow.solint_freq`` -> gains ``s^d``.

Step 2 is how Rapthor solves its slow gains (DDECal with the fast solutions applied to
each direction's model): because the gains are diagonal they commute, and
``s_p (f_p M f_q^H) s_q^H = (s f)_p M (s f)_q^H``, so the product ``g^d = s^d f^d`` is
the direction's total gain and fits the data with all directions at once. Correcting
the *data* per direction instead would need one data copy per direction and cannot
remove the other directions' contributions; corrupting the models is exact and
simplest. A fast gain that could not be solved predicts nothing in step 2.

Intervals nest: ``slow.solint_time`` and ``slow.solint_freq`` are multiples of the fast
ones, and the data are rechunked (lazily) so that a chunk holds whole cells of every
direction of both steps (a multiple of ``slow.solint_time * max k`` integrations and of
``slow.solint_freq`` channels); ``baseline_id`` and ``polarization`` are whole.

Gains datasets
--------------
:func:`solve_facets` returns an ``xarray.DataTree`` with three nodes, each a gains
dataset in the layout of :mod:`daskcal.stages.solve` extended by a ``direction``
dimension: ``GAIN`` / ``GAIN_FLAG`` (gain_time, gain_frequency, antenna_name,
direction, receptor); ``CHI2``, ``CONVERGED`` (gain_time, gain_frequency, direction);
``REF_ANTENNA`` (gain_time, gain_frequency, direction, receptor); per direction
``SOLINT_TIME`` (integrations) and ``APPARENT_FLUX`` (Jy); coordinates as in
:mod:`daskcal.stages.solve` plus ``direction`` (names), ``direction_ra`` and
``direction_dec`` (J2000, radians).

``/fast``
    the fast gains on the grid of the shortest fast interval (a direction with a
    longer interval repeats its value over the cells it covers);
``/slow``
    the slow gains on the grid of the shortest slow interval [if ``config.slow``];
``/total``
    ``s^d f^d`` on the fast grid: what :func:`daskcal.stages.subtract.subtract` and
    facet imaging apply.

Only public Dask APIs are used (``da.blockwise``); nothing is computed.
"""

from __future__ import annotations

import dask.array as da
import numpy as np
import xarray as xr

from daskcal.data.chunking import aligned_chunk
from daskcal.data.model import quantity_value
from daskcal.kernels.solvers._multidir import solve_multidir
from daskcal.stages.facets.config import FacetConfig, FacetError, FacetPlan
from daskcal.stages.solve import (
    antenna_table,
    cell_axis,
    group_variables,
    receptor_labels,
)
from daskcal.stages.subtract import predict_directions

_TIME_ATTRS = {"type": "time", "units": "s", "format": "unix"}
_FREQ_ATTRS = {"type": "spectral_coord", "units": "Hz"}


def _opts(step, ref):
    return {"mode": step.mode, "max_iter": step.max_iter, "inner_iter": step.inner_iter,
            "tolerance": step.tolerance, "damping": step.damping,
            "damping_every": step.damping_every, "ref_antenna": ref,
            "min_unflagged_fraction": step.min_unflagged_fraction}


def _dtype(n_rec: int = 2) -> np.dtype:
    fields = []
    for step in ("fast", "slow"):
        fields += [(f"{step}_gain", np.complex128, (n_rec,)), (f"{step}_flag", np.bool_, (n_rec,)),
                   (f"{step}_chi2", np.float64), (f"{step}_conv", np.bool_),
                   (f"{step}_ref", np.int32, (n_rec,))]
    return np.dtype(fields)


def _dd_block(vis, model, weight, flag, a1, a2, n_ant, fast_t, fast_f, fast_opts, slow_t,
              slow_f, slow_opts, dtype):
    """Fast then slow joint solves of one chunk; output on the fast grid (T, F, dir, ant)."""
    fs = solve_multidir(vis, model, weight, flag, a1, a2, n_ant, fast_t, fast_f, **fast_opts)
    n_dir, n_tf, n_ff = fs.gains.shape[:3]
    out = np.zeros((n_tf, n_ff, n_dir, n_ant), dtype)
    out["fast_gain"] = fs.gains.transpose(1, 2, 0, 3, 4)
    out["fast_flag"] = fs.flags.transpose(1, 2, 0, 3, 4)
    out["fast_chi2"] = fs.chi2.transpose(1, 2, 0)[..., None]
    out["fast_conv"] = fs.converged.transpose(1, 2, 0)[..., None]
    out["fast_ref"] = fs.ref_antenna.transpose(1, 2, 0, 3)[:, :, :, None, :]
    if slow_opts is None:
        out["slow_gain"] = 1.0
        out["slow_chi2"] = np.nan
        out["slow_ref"] = out["fast_ref"]
        out["slow_conv"] = True
        return out
    t_min = int(np.min(fast_t))
    n_time, _, n_chan, _ = vis.shape
    g = np.where(fs.flags, 0.0, fs.gains)  # (dir, n_tf, n_ff, ant, 2)
    g = g[:, np.arange(n_time) // t_min][:, :, np.arange(n_chan) // fast_f]  # (d, t, f, a, 2)
    corrupted = np.empty(model.shape, np.complex128)
    for d in range(n_dir):
        gp = g[d][:, :, a1].transpose(0, 2, 1, 3)  # (t, bl, f, 2)
        gq = g[d][:, :, a2].transpose(0, 2, 1, 3)
        corrupted[d] = model[d] * gp * np.conj(gq)
    ss = solve_multidir(vis, corrupted, weight, flag, a1, a2, n_ant, slow_t, slow_f, **slow_opts)
    r_t = int(np.min(slow_t)) // t_min
    r_f = slow_f // fast_f
    ti = np.arange(n_tf) // r_t
    fi = np.arange(n_ff) // r_f
    out["slow_gain"] = ss.gains[:, ti][:, :, fi].transpose(1, 2, 0, 3, 4)
    out["slow_flag"] = ss.flags[:, ti][:, :, fi].transpose(1, 2, 0, 3, 4)
    out["slow_chi2"] = ss.chi2[:, ti][:, :, fi].transpose(1, 2, 0)[..., None]
    out["slow_conv"] = ss.converged[:, ti][:, :, fi].transpose(1, 2, 0)[..., None]
    out["slow_ref"] = ss.ref_antenna[:, ti][:, :, fi].transpose(1, 2, 0, 3)[:, :, :, None, :]
    return out


def _gains_xds(packed, step: str, xds, t_step, f_step, names, receptors, plan: FacetPlan,
               t_ints, mode, attrs, gain=None, flag=None):
    t_c, t_lo, t_hi = cell_axis(xds["time"].values,
                                quantity_value(xds["time"].attrs.get("integration_time")), t_step)
    f_c, f_lo, f_hi = cell_axis(xds["frequency"].values,
                                quantity_value(xds["frequency"].attrs.get("channel_width")), f_step)
    t_attrs = {**_TIME_ATTRS, "scale": xds["time"].attrs.get("scale", "utc")}
    cell = ("gain_time", "gain_frequency")
    gdims = (*cell, "antenna_name", "direction", "receptor")
    gain = packed[f"{step}_gain"] if gain is None else gain
    flag = packed[f"{step}_flag"] if flag is None else flag
    coords = {
        "gain_time": ("gain_time", t_c, t_attrs),
        "gain_time_lower": ("gain_time", t_lo, t_attrs),
        "gain_time_upper": ("gain_time", t_hi, t_attrs),
        "gain_frequency": ("gain_frequency", f_c, _FREQ_ATTRS),
        "gain_frequency_lower": ("gain_frequency", f_lo, _FREQ_ATTRS),
        "gain_frequency_upper": ("gain_frequency", f_hi, _FREQ_ATTRS),
        "antenna_name": ("antenna_name", np.asarray(names, dtype=str)),
        "direction": ("direction", plan.name.astype(str)),
        "direction_ra": ("direction", plan.ra, {"units": "rad", "frame": "fk5"}),
        "direction_dec": ("direction", plan.dec, {"units": "rad", "frame": "fk5"}),
        "receptor": ("receptor", np.asarray(receptors, dtype=str)),
    }
    # packed is (T, F, dir, ant); GAIN is (T, F, ant, dir, receptor)
    data_vars = {
        "GAIN": (gdims, gain.transpose(0, 1, 3, 2, 4), {"type": "gain", "units": "unitless"}),
        "GAIN_FLAG": (gdims, flag.transpose(0, 1, 3, 2, 4), {"type": "flag"}),
        "CHI2": ((*cell, "direction"), packed[f"{step}_chi2"][..., 0],
                 {"description": "reduced chi-squared of the joint model"}),
        "CONVERGED": ((*cell, "direction"), packed[f"{step}_conv"][..., 0]),
        "REF_ANTENNA": ((*cell, "direction", "receptor"), packed[f"{step}_ref"][:, :, :, 0, :],
                        {"description": "index into antenna_name of the phase reference, "
                                        "-1: none"}),
        "SOLINT_TIME": ("direction", np.asarray(t_ints, np.int64), {"units": "integrations"}),
        "APPARENT_FLUX": ("direction", plan.apparent_flux_jy, {"units": "Jy"}),
    }
    return xr.Dataset(data_vars=data_vars, coords=coords, attrs={
        "type": "gain", "mode": mode, "step": step,
        "jones_convention": "V_pq = sum_d G^d_p M^d_pq G^d_q^H",
        "solint_time": int(t_step), "solint_freq": int(f_step), **attrs})


def solve_facets(xds: xr.Dataset, plan: FacetPlan, phase_centre_rad,
                 config: FacetConfig | None = None) -> xr.DataTree:
    """Solve direction-dependent gains of the plan's directions jointly, lazily.

    Parameters
    ----------
    xds : xarray.Dataset
        A visibility partition with the data group ``config.data_group`` (parallel
        hands are used), numpy- or dask-backed.
    plan : FacetPlan
        Directions, interval factors and the facet-assigned sky model
        (:func:`daskcal.stages.facets.plan_facets`).
    phase_centre_rad : array, shape (2,)
        (RA, Dec) of the phase centre of ``UVW``, radians.
    config : FacetConfig, optional

    Returns
    -------
    xarray.DataTree
        Nodes ``fast``, ``slow`` (if configured) and ``total`` (module notes), backed
        by dask arrays; root attributes hold the config. Nothing is computed.

    Raises
    ------
    FacetError
        For an unknown reference antenna, or slow intervals that do not nest the fast
        ones once clipped to the observation length (intervals longer than the
        observation are clipped to it; fast intervals that then stop being multiples of
        the shortest all become the shortest).
    """
    config = config or FacetConfig()
    data_name, flag_name, weight_name = group_variables(xds, config.data_group)
    receptors = receptor_labels(xds)
    pols = [str(p) for p in xds["polarization"].values]
    hands = [pols.index(receptors[0] * 2), pols.index(receptors[1] * 2)]
    a1, a2, names = antenna_table(xds)
    n_ant = len(names)
    ref = 0
    if config.ref_antenna is not None:
        if config.ref_antenna not in names:
            raise FacetError(f"reference antenna {config.ref_antenna!r} is not one of {names}")
        ref = names.index(config.ref_antenna)
    n_time, n_chan = xds.sizes["time"], xds.sizes["frequency"]
    k = np.asarray(plan.solint_factor, np.int64)
    fast, slow = config.fast, config.slow
    fast_t = np.minimum(fast.solint_time * k, n_time)
    fast_f = min(fast.solint_freq, n_chan)
    if np.any(fast_t % fast_t.min()):
        fast_t = np.full_like(fast_t, fast_t.min())
    slow_t = slow_f = None
    if slow is not None:
        slow_t = np.minimum(slow.solint_time * k, n_time)
        slow_f = min(slow.solint_freq, n_chan)
        if (np.any(slow_t % slow_t.min()) or slow_t.min() % fast_t.min()
                or slow_f % fast_f):
            raise FacetError(f"the slow intervals {slow_t.tolist()} x {slow_f} do not nest the "
                             f"fast ones {fast_t.tolist()} x {fast_f} on {n_time} x {n_chan} "
                             "samples; choose intervals that divide the observation")
    t_span = int(np.lcm.reduce(np.concatenate([fast_t, slow_t if slow_t is not None else []])
                               .astype(np.int64)))
    f_span = slow_f or fast_f

    arrays = []
    for name in (data_name, weight_name, flag_name):
        arr = xds[name].data
        arr = arr if isinstance(arr, da.Array) else da.from_array(arr, chunks=-1)
        arrays.append(arr[..., hands])
    tchunk = aligned_chunk(arrays[0].chunks[0], min(t_span, n_time))
    fchunk = aligned_chunk(arrays[0].chunks[2], f_span)
    arrays = [a.rechunk({0: tchunk, 1: -1, 2: fchunk, 3: -1}) for a in arrays]
    vis, weight, flag = arrays
    model = predict_directions(xds, plan.sky, plan.name, phase_centre_rad,
                               polarization=[pols[h] for h in hands],
                               time_chunks=vis.chunks[0], freq_chunks=vis.chunks[2],
                               dtype=np.complex64).rechunk({0: -1})

    dtype = _dtype()
    t_min = int(fast_t.min())
    packed = da.blockwise(
        _dd_block, "TFda",
        vis, "TbFc", model, "dTbFc", weight, "TbFc", flag, "TbFc",
        a1, None, a2, None, n_ant, None, fast_t, None, fast_f, None, _opts(fast, ref), None,
        slow_t, None, slow_f, None, None if slow is None else _opts(slow, ref), None,
        dtype, None,
        new_axes={"a": n_ant},
        adjust_chunks={"T": lambda n: -(-n // t_min), "F": lambda n: -(-n // fast_f)},
        concatenate=True, dtype=dtype, meta=np.empty((0, 0, 0, 0), dtype))

    attrs = {"ref_antenna": config.ref_antenna if config.ref_antenna is not None else names[ref],
             "data": data_name}
    nodes = {"fast": _gains_xds(packed, "fast", xds, t_min, fast_f, names, receptors, plan,
                                fast_t, fast.mode, attrs)}
    total_gain, total_flag = packed["fast_gain"], packed["fast_flag"]
    if slow is not None:
        r_t = int(slow_t.min()) // t_min
        r_f = slow_f // fast_f
        nodes["slow"] = _gains_xds(packed[::r_t, ::r_f], "slow", xds, int(slow_t.min()), slow_f,
                                   names, receptors, plan, slow_t, slow.mode, attrs)
        total_gain = packed["fast_gain"] * packed["slow_gain"]
        total_flag = packed["fast_flag"] | packed["slow_flag"]
    total_mode = "diagonal_complex" if slow is not None else fast.mode
    if slow is not None and fast.mode.startswith("scalar") and slow.mode.startswith("scalar"):
        total_mode = "scalar_complex"
    nodes["total"] = _gains_xds(packed, "slow" if slow is not None else "fast", xds, t_min,
                                fast_f, names, receptors, plan, fast_t, total_mode, attrs,
                                gain=total_gain, flag=total_flag)
    nodes["total"].attrs["step"] = "total"
    root = xr.Dataset(attrs={"type": "dd_gains", "config": config.model_dump(mode="json"),
                             "phase_centre_rad": [float(x) for x in
                                                  np.asarray(phase_centre_rad).reshape(2)]})
    tree = xr.DataTree(dataset=root)
    for key, node in nodes.items():
        tree[key] = xr.DataTree(dataset=node)
    return tree


__all__ = ["cell_axis", "solve_facets"]
