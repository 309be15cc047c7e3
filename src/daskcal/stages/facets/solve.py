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
   flux) and ``fast.solint_freq`` channels -> gains ``f^d``. Phase-only modes start
   from unit gains (``fast.start="auto"``: the data are DI-calibrated; the solver's
   cold start would give them an amplitude no phase step undoes, and a direction with
   little flux behind its model then swamps the others) and return unit-modulus gains.
   With ``config.model_scale_iter = n > 0`` the fast solve alternates ``n`` times with
   a fit of one real flux scale ``s_d`` per direction's model (per chunk,
   :func:`model_flux_scale`: all directions at once, given the gains), the models being
   scaled before the gains are solved again (from the previous ones). Without it, a
   model fainter than the sky (the CLEAN model of a decorrelated image) has its missing
   flux fitted by the *other* directions' phases (they are free to mimic part of any
   residual), and facet imaging, which subtracts those directions with their gains,
   then removes that flux from the facet's own data: the images keep the model's
   fluxes. The scales are returned as ``MODEL_SCALE``; facet imaging scales the
   subtracted models by them (the data of a facet are never scaled);
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
``REF_ANTENNA`` (gain_time, gain_frequency, direction, receptor); ``MODEL_SCALE``
(gain_time, gain_frequency, direction; 1 where not fitted); per direction
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


_PHASE_MODES = ("scalar_phase", "diagonal_phase")
#: Bounds of a fitted model flux scale (a direction whose model has no flux behind it keeps
#: a tenth of it: a zero model would leave its gains, and so its facet, unsolved).
_SCALE_RANGE = (0.1, 10.0)


def _opts(step, ref):
    start = step.start if step.start != "auto" else (
        "unit" if step.mode in _PHASE_MODES else "cold")
    return {"mode": step.mode, "max_iter": step.max_iter, "inner_iter": step.inner_iter,
            "tolerance": step.tolerance, "damping": step.damping,
            "damping_every": step.damping_every, "ref_antenna": ref,
            "min_unflagged_fraction": step.min_unflagged_fraction, "start": start}


def _solve(vis, model, weight, flag, a1, a2, n_ant, t_int, f_int, opts, g0=None):
    """:func:`solve_multidir` from ``g0`` or as ``opts["start"]`` says ('unit': all gains 1;
    'cold': its cold start); phase-only modes return unit-modulus gains (the solver's guard
    against a diverging direction may scale a visit's gains, an amplitude the mode does
    not have)."""
    opts = dict(opts)
    start = opts.pop("start", "cold")
    if g0 is None and start == "unit":
        n_time, _, n_chan, _ = vis.shape
        t_min = int(np.min(t_int))
        g0 = np.ones((model.shape[0], -(-n_time // t_min), -(-n_chan // f_int), n_ant, 2),
                     np.complex128)
    sol = solve_multidir(vis, model, weight, flag, a1, a2, n_ant, t_int, f_int,
                         initial_gains=g0, **opts)
    if opts["mode"] in _PHASE_MODES:
        amp = np.abs(sol.gains)
        good = np.isfinite(amp) & (amp > 0)
        gains = np.where(good, sol.gains / np.where(good, amp, 1.0), sol.gains)
        sol = sol._replace(gains=gains, flags=sol.flags | ~good)
    return sol


def _corrupt(model, gains, flags, a1, a2, t_min, f_int):
    """``g_p M conj(g_q)`` per direction and sample, complex128 (n_dir, *model.shape[1:]).

    ``gains``, ``flags`` (n_dir, n_t_sol, n_f_sol, n_ant, 2) on the grid of ``t_min``
    integrations x ``f_int`` channels; a flagged gain predicts nothing.
    """
    n_time, _, n_chan, _ = model.shape[1:]
    g = np.where(flags, 0.0, gains)
    g = g[:, np.arange(n_time) // t_min][:, :, np.arange(n_chan) // f_int]  # (d, t, f, a, 2)
    out = np.empty(model.shape, np.complex128)
    for d in range(model.shape[0]):
        gp = g[d][:, :, a1].transpose(0, 2, 1, 3)  # (t, bl, f, 2)
        gq = g[d][:, :, a2].transpose(0, 2, 1, 3)
        out[d] = model[d] * gp * np.conj(gq)
    return out


def model_flux_scale(vis, predictions, weight, flag) -> np.ndarray:
    """Real flux scale per direction that best fits the data with all directions at once.

    Minimises ``sum w |V - sum_d s_d P^d|^2`` over real ``s_d`` (weighted linear least
    squares: ``A s = b``, ``A_dd' = Re sum w conj(P^d) P^d'``, ``b_d = Re sum w conj(P^d) V``).

    Parameters
    ----------
    vis : ndarray, complex, shape (n_time, n_bl, n_chan, n_corr)
        Visibilities, Jy.
    predictions : ndarray, complex, shape (n_dir, n_time, n_bl, n_chan, n_corr)
        Each direction's model corrupted by its gains, Jy.
    weight : ndarray, float, shape of ``vis``
        Inverse noise variance (<= 0: unused).
    flag : ndarray of bool, shape of ``vis``
        True: unused (as are non-finite samples).

    Returns
    -------
    ndarray, float64, shape (n_dir,)
        The scales (unitless); a direction that predicts nothing gets 1, and a negative
        least-squares scale (no flux of that sign behind a model) is set to 0.
    """
    n_dir = predictions.shape[0]
    w = np.where(flag | ~np.isfinite(vis) | ~np.all(np.isfinite(predictions), axis=0), 0.0,
                 np.maximum(np.nan_to_num(weight), 0.0)).ravel()
    v = np.nan_to_num(vis).ravel()
    p = np.nan_to_num(predictions).reshape(n_dir, -1)
    a = np.real((np.conj(p) * w) @ p.T)
    b = np.real((np.conj(p) * w) @ v)
    live = np.diag(a) > 0
    scale = np.ones(n_dir)
    if live.any():
        scale[live] = np.linalg.lstsq(a[np.ix_(live, live)], b[live], rcond=None)[0]
    return np.maximum(scale, 0.0)


def _dtype(n_rec: int = 2) -> np.dtype:
    fields = [("scale", np.float64)]
    for step in ("fast", "slow"):
        fields += [(f"{step}_gain", np.complex128, (n_rec,)), (f"{step}_flag", np.bool_, (n_rec,)),
                   (f"{step}_chi2", np.float64), (f"{step}_conv", np.bool_),
                   (f"{step}_ref", np.int32, (n_rec,))]
    return np.dtype(fields)


def _dd_block(vis, model, weight, flag, a1, a2, n_ant, fast_t, fast_f, fast_opts, slow_t,
              slow_f, slow_opts, scale_iter, dtype):
    """Fast then slow joint solves of one chunk; output on the fast grid (T, F, dir, ant)."""
    t_min = int(np.min(fast_t))
    fs = _solve(vis, model, weight, flag, a1, a2, n_ant, fast_t, fast_f, fast_opts)
    scale = np.ones(model.shape[0])
    base = model
    for _ in range(scale_iter):  # alternate: the model flux scales given the gains, the gains
        pred = _corrupt(model, fs.gains, fs.flags, a1, a2, t_min, fast_f)
        scale = np.clip(scale * model_flux_scale(vis, pred, weight, flag), *_SCALE_RANGE)
        del pred
        model = base * scale[:, None, None, None, None]
        fs = _solve(vis, model, weight, flag, a1, a2, n_ant, fast_t, fast_f, fast_opts,
                    g0=fs.gains)
    n_dir, n_tf, n_ff = fs.gains.shape[:3]
    out = np.zeros((n_tf, n_ff, n_dir, n_ant), dtype)
    out["scale"] = scale[None, None, :, None]
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
    corrupted = _corrupt(model, fs.gains, fs.flags, a1, a2, t_min, fast_f)
    ss = _solve(vis, corrupted, weight, flag, a1, a2, n_ant, slow_t, slow_f, slow_opts)
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
        "MODEL_SCALE": ((*cell, "direction"), packed["scale"][..., 0],
                        {"units": "unitless", "description": "flux scale of each direction's "
                         "model fitted with the gains (1: not fitted)"}),
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
        config.model_scale_iter, None, dtype, None,
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


__all__ = ["cell_axis", "model_flux_scale", "solve_facets"]
