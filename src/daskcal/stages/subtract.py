"""The ``subtract`` stage: remove directions, corrupted by their DD gains, from the data, lazily.

For the selected directions ``D``::

    RESIDUAL_pq = V_pq - sum_{d in D} g^d_p M^d_pq conj(g^d_q)

(per parallel/cross hand ``(a, b)``: ``g^d_pa M^d_pq,ab conj(g^d_qb)``), where ``M^d`` is
the DFT prediction of the components of direction ``d`` (the sky-model patch named
``d``; :func:`predict_directions`) and ``g^d`` the gains of the solution cell holding
each sample (:func:`daskcal.stages.apply.cell_index`). Gains without a ``direction``
dimension (direction-independent gains from :func:`daskcal.stages.solve.solve`) apply
to every direction. A direction whose gain is flagged for either antenna of a
baseline is not subtracted there (the joint solver predicts nothing there either).

Selecting directions: ``directions`` names the ones to subtract, or ``exclude`` the
ones to keep (FACTOR's "subtract everything outside the facet" is
``exclude=[facet]``). The result goes to a new variable and data group
(``VISIBILITY_RESIDUAL`` / ``"residual"``) or, with ``in_place``, replaces the data
group's own variable. Chunks: the data keep their (time, frequency) chunks;
``baseline_id`` and ``polarization`` are made whole; each task receives the (small)
gain table.
"""

from __future__ import annotations

from collections.abc import Sequence

import dask.array as da
import numpy as np
import xarray as xr
from pydantic import BaseModel, ConfigDict, Field

from daskcal.data.model import VIS_DIMS, add_data_group
from daskcal.kernels import dft as _dft
from daskcal.sky.model import SkyModel
from daskcal.stages.apply import cell_index
from daskcal.stages.predict import dft_predict
from daskcal.stages.solve import SolveError, antenna_table, group_variables


class SubtractConfig(BaseModel):
    """Settings of the ``subtract`` stage."""

    model_config = ConfigDict(extra="forbid")

    data_group: str = Field("base", description="Data group to subtract from.")
    output: str = Field("VISIBILITY_RESIDUAL", description="Variable of the result.")
    output_data_group: str = Field("residual", description="Data group of the result.")
    in_place: bool = Field(False, description="Replace the data group's visibilities instead "
                           "of adding a new variable.")


class SubtractError(SolveError):
    """Gains, directions or sky models that do not fit the data."""


def _as_dask(arr, chunks):
    out = arr if isinstance(arr, da.Array) else da.from_array(np.asarray(arr), chunks=-1)
    return out.rechunk(chunks)


def _coherency_block(freq, sky, pols):
    return _dft.stokes_to_coherency(sky.flux(freq), pols)


def predict_directions(xds: xr.Dataset, sky: SkyModel, directions: Sequence[str],
                       phase_centre_rad, *, polarization: Sequence[str] | None = None,
                       time_chunks=None, freq_chunks=None, dtype=np.complex64) -> da.Array:
    """Model visibilities of each direction (sky-model patch), stacked, lazily.

    Parameters
    ----------
    xds : xarray.Dataset
        A visibility partition (``UVW``, ``frequency``).
    sky : SkyModel
        Components, with ``patch`` naming their direction.
    directions : sequence of str, length n_dir
        Patch names; a name without components predicts zeros.
    phase_centre_rad : array, shape (2,)
        (RA, Dec) of the phase centre of ``UVW``, radians.
    polarization : sequence of str, optional
        Correlations to predict (default: those of ``xds``).
    time_chunks, freq_chunks : tuple of int, optional
        Chunks along time and frequency (default: those of ``UVW`` / the dataset).
    dtype : numpy dtype
        complex64 or complex128.

    Returns
    -------
    dask.array.Array, shape (n_dir, n_time, n_bl, n_chan, n_corr)
        Jy; chunked ``(1, time_chunks, whole, freq_chunks, whole)``.
    """
    pols = [str(p) for p in (polarization if polarization is not None
                             else xds["polarization"].values)]
    receptors = _dft.correlation_receptors(pols)
    pc = np.asarray(phase_centre_rad, dtype=np.float64).reshape(2)
    uvw = xds["UVW"].data
    if time_chunks is None:
        time_chunks = uvw.chunks[0] if isinstance(uvw, da.Array) else -1
    if freq_chunks is None:
        fc = xds.chunks.get("frequency") if xds.chunks else None
        freq_chunks = fc if fc else -1
    uvw = _as_dask(uvw, (time_chunks, -1, -1))
    freq = da.from_array(np.asarray(xds["frequency"].values, np.float64), chunks=freq_chunks)
    shape = (uvw.shape[0], uvw.shape[1], freq.shape[0], len(pols))
    parts = []
    for name in directions:
        sub = sky.select(sky.patch == str(name))
        if sub.n_source == 0:
            parts.append(da.zeros(shape, dtype=dtype, chunks=(uvw.chunks[0], -1, freq.chunks[0],
                                                             -1)))
            continue
        coh = freq.map_blocks(_coherency_block, sub, pols, new_axis=[0, 2],
                              chunks=((sub.n_source,), freq.chunks[0], (len(pols),)),
                              dtype=np.complex128, meta=np.empty((0, 0, 0), np.complex128))
        parts.append(dft_predict(uvw, freq, sub.lmn(pc[0], pc[1]), coh, sub.shape_params,
                                 receptors=receptors, out_dtype=dtype))
    return da.stack(parts)


def corrupt_direction(model: np.ndarray, gains: np.ndarray, gain_flags: np.ndarray,
                      antenna1: np.ndarray, antenna2: np.ndarray, t_idx: np.ndarray,
                      f_idx: np.ndarray, receptors) -> np.ndarray:
    """``g_pa M_pq,ab conj(g_qb)`` of one direction on one block (numpy).

    Parameters
    ----------
    model : ndarray, complex, shape (n_time, n_bl, n_chan, n_corr)
    gains : ndarray, complex, shape (n_tc, n_fc, n_ant, 2)
    gain_flags : ndarray of bool, shape of ``gains``
        Flagged gains predict nothing (factor 0).
    antenna1, antenna2 : ndarray of int, shape (n_bl,)
        Indices into the gains' antenna axis.
    t_idx, f_idx : ndarray of int, shape (n_time,), (n_chan,)
        Solution cell of each time and channel.
    receptors : tuple of two int arrays, shape (n_corr,)

    Returns
    -------
    ndarray, complex, shape of ``model``
    """
    g = np.where(gain_flags, 0.0, gains)
    ra, rb = (np.asarray(r) for r in receptors)
    out = np.empty(model.shape, np.result_type(model.dtype, np.complex64))
    for i in range(model.shape[0]):  # one time step at a time: small temporaries
        gi = g[t_idx[i]][f_idx]  # (chan, ant, 2)
        gp = gi[:, antenna1][..., ra]  # (chan, bl, corr)
        gq = gi[:, antenna2][..., rb]
        out[i] = model[i] * np.transpose(gp * np.conj(gq), (1, 0, 2))
    return out


def _subtract_block(vis, models, t_idx, f_idx, gains, gflags, a1, a2, ra, rb):
    out = np.array(vis, copy=True)
    for d in range(models.shape[0]):
        out -= corrupt_direction(models[d], gains[:, :, :, d], gflags[:, :, :, d], a1, a2,
                                 t_idx, f_idx, (ra, rb)).astype(out.dtype)
    return out


def subtract(xds: xr.Dataset, sky: SkyModel, gains: xr.Dataset, phase_centre_rad, *,
             directions: Sequence[str] | None = None, exclude: Sequence[str] = (),
             config: SubtractConfig | None = None) -> xr.Dataset:
    """Subtract directions corrupted by their gains from a visibility partition, lazily.

    Parameters
    ----------
    xds : xarray.Dataset
        A visibility partition.
    sky : SkyModel
        Components with ``patch`` set to their direction (e.g. ``FacetPlan.sky``).
    gains : xarray.Dataset
        ``GAIN`` and ``GAIN_FLAG`` (gain_time, gain_frequency, antenna_name, direction,
        receptor) with cell edges, as made by :func:`daskcal.stages.facets.solve_facets`
        (its ``total`` node); or direction-independent gains without ``direction``
        (then every direction uses them and ``directions`` default to the sky's patches).
    phase_centre_rad : array, shape (2,)
        (RA, Dec) of the phase centre of ``UVW``, radians.
    directions : sequence of str, optional
        Directions to subtract (default: all of ``gains``).
    exclude : sequence of str
        Directions not to subtract.
    config : SubtractConfig, optional

    Returns
    -------
    xarray.Dataset
        ``xds`` with the residual visibilities (module notes). Nothing is computed.
    """
    config = config or SubtractConfig()
    data_name, flag_name, weight_name = group_variables(xds, config.data_group)
    receptors = _dft.correlation_receptors([str(p) for p in xds["polarization"].values])
    dd = "direction" in gains["GAIN"].dims
    gdims = ("gain_time", "gain_frequency", "antenna_name", "direction", "receptor")
    if "receptor2" in gains["GAIN"].dims:
        raise SubtractError("full-Jones gains are not supported by subtract")
    if dd:
        available = [str(d) for d in gains["direction"].values]
    else:
        available = list(dict.fromkeys(np.where(sky.patch == "", sky.name, sky.patch).tolist()))
    chosen = list(available if directions is None else [str(d) for d in directions])
    unknown = sorted(set(chosen) - set(available))
    if unknown:
        raise SubtractError(f"directions {unknown} are not among {available}")
    chosen = [d for d in chosen if d not in set(map(str, exclude))]
    if dd:
        g = gains["GAIN"].sel(direction=chosen).transpose(*gdims)
        gf = gains["GAIN_FLAG"].sel(direction=chosen).transpose(*gdims)
    else:
        g = gains["GAIN"].transpose(*gdims[:3], "receptor").expand_dims(
            direction=len(chosen), axis=3)
        gf = gains["GAIN_FLAG"].transpose(*gdims[:3], "receptor").expand_dims(
            direction=len(chosen), axis=3)
    if sky.n_source and np.any(sky.patch == ""):
        import dataclasses

        sky = dataclasses.replace(sky, patch=np.where(sky.patch == "", sky.name, sky.patch))

    a1, a2, names = antenna_table(xds)
    lookup = {str(n): i for i, n in enumerate(gains["antenna_name"].values)}
    missing = sorted({names[i] for i in np.concatenate([a1, a2]).tolist()} - set(lookup))
    if missing:
        raise SubtractError(f"no gains for antennas {missing}")
    to_gain = np.array([lookup.get(n, 0) for n in names], np.int64)
    ga1, ga2 = to_gain[a1], to_gain[a2]
    t_idx = cell_index(xds["time"].values, gains["gain_time_lower"].values,
                       gains["gain_time_upper"].values)
    f_idx = cell_index(xds["frequency"].values, gains["gain_frequency_lower"].values,
                       gains["gain_frequency_upper"].values)

    vis = xds[data_name].data
    vis = _as_dask(vis, {1: -1, 3: -1}) if isinstance(vis, da.Array) else \
        da.from_array(vis, chunks=-1)
    if chosen:
        models = predict_directions(xds, sky, chosen, phase_centre_rad,
                                    time_chunks=vis.chunks[0], freq_chunks=vis.chunks[2],
                                    dtype=vis.dtype).rechunk({0: -1})
        gain_arr = da.asarray(g.data).rechunk(-1)
        gflag_arr = da.asarray(gf.data).rechunk(-1)
        t_d = da.from_array(t_idx, chunks=(vis.chunks[0],))
        f_d = da.from_array(f_idx, chunks=(vis.chunks[2],))
        residual = da.blockwise(
            _subtract_block, "tbfc", vis, "tbfc", models, "dtbfc", t_d, "t", f_d, "f",
            gain_arr, "TFadr", gflag_arr, "TFadr", ga1, None, ga2, None,
            receptors[0], None, receptors[1], None, concatenate=True, dtype=vis.dtype,
            meta=np.empty((0, 0, 0, 0), vis.dtype))
    else:
        residual = vis
    description = f"{data_name} minus directions {chosen}"
    if config.in_place:
        out = xds.copy()
        out[data_name] = (VIS_DIMS, residual, xds[data_name].attrs)
        return out
    return add_data_group(xds, config.output_data_group, config.output, data=residual,
                          flag=flag_name, weight=weight_name, description=description)


__all__ = ["SubtractConfig", "SubtractError", "corrupt_direction", "predict_directions",
           "subtract"]
