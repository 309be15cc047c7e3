"""Predict model visibilities of a sky model, lazily, over a partition's chunks.

:func:`dft_predict` is the Dask twin of :func:`daskcal.kernels.dft.dft_predict` (same
name and argument order): it maps the kernel over the (time, frequency) chunks of
``uvw`` and ``frequency`` with :func:`dask.array.blockwise`. :func:`predict` does the
same for a visibility dataset and a :class:`~daskcal.sky.model.SkyModel`, adding a
``VISIBILITY_MODEL`` variable and a ``"model"`` data group. Nothing is computed.
"""

from __future__ import annotations

from typing import Literal

import dask.array as da
import numpy as np
import xarray as xr
from pydantic import BaseModel, ConfigDict, Field

from daskcal.data.model import add_data_group
from daskcal.kernels import dft as _dft
from daskcal.sky.model import SkyModel


class PredictConfig(BaseModel):
    """Configuration of the ``predict`` stage."""

    model_config = ConfigDict(extra="forbid")

    output: str = Field("VISIBILITY_MODEL", description="Name of the variable that receives "
                        "the model visibilities.")
    data_group: str = Field("model", description="Name of the data group added for the "
                            "model visibilities.")
    precision: Literal["single", "double"] = Field(
        "single", description="Output precision: single (complex64, the schema's) or double "
        "(complex128).")


def _as_dask(x, chunks=None):
    arr = x if isinstance(x, da.Array) else da.from_array(np.asarray(x), chunks=-1)
    return arr if chunks is None else arr.rechunk(chunks)


def _block(uvw, frequency, lmn, coherency, shape_params, jones, antenna1, antenna2, ra, rb,
           out_dtype):
    return _dft.dft_predict(uvw, frequency, lmn, coherency, shape_params, jones, antenna1,
                            antenna2, (ra, rb), out_dtype=out_dtype)


def dft_predict(
    uvw,
    frequency,
    lmn,
    coherency,
    shape_params=None,
    jones=None,
    antenna1=None,
    antenna2=None,
    receptors=None,
    *,
    out_dtype=np.complex64,
) -> da.Array:
    """Lazy DFT prediction over chunks (see :func:`daskcal.kernels.dft.dft_predict`).

    Parameters
    ----------
    uvw : dask or numpy array, shape (n_time, n_bl, 3)
        Chunked along time (the baseline and uvw axes are made whole).
    frequency : dask or numpy array, shape (n_chan,)
        Chunked along frequency.
    lmn : array, shape (n_src, 3)
    coherency : array, shape (n_src, n_chan, n_corr), complex
        Rechunked to follow ``frequency``; sources and correlations whole.
    shape_params : array, shape (n_src, 3), optional
    jones : array, shape (n_time, n_ant, n_src, n_chan, 2), complex, optional
        Rechunked to follow ``uvw`` in time and ``frequency`` in frequency.
    antenna1, antenna2 : array of int, shape (n_bl,), optional
    receptors : tuple of two int arrays, shape (n_corr,), optional
    out_dtype : numpy dtype
        complex64 or complex128.

    Returns
    -------
    dask.array.Array, shape (n_time, n_bl, n_chan, n_corr)
        Chunks: time chunks of ``uvw`` x whole baselines x frequency chunks x whole
        correlations.
    """
    uvw = _as_dask(uvw)
    uvw = uvw.rechunk({1: -1, 2: -1})
    frequency = _as_dask(frequency)
    n_src = np.shape(lmn)[0]
    n_corr = np.shape(coherency)[2] if np.ndim(coherency) == 3 else None
    if n_corr is None:
        raise ValueError(f"coherency must be (n_src, n_chan, n_corr), got shape {np.shape(coherency)}")
    if receptors is None:
        default = {4: ([0, 0, 1, 1], [0, 1, 0, 1]), 2: ([0, 1], [0, 1]), 1: ([0], [0])}
        if n_corr not in default:
            raise ValueError(f"n_corr={n_corr}: pass receptors for this correlation layout")
        receptors = default[n_corr]
    ra, rb = (np.asarray(r, dtype=np.int64) for r in receptors)
    lmn_d = _as_dask(lmn, {0: -1, 1: -1})
    coh = _as_dask(coherency).rechunk({0: -1, 1: frequency.chunks[0], 2: -1})
    shp = _as_dask(np.zeros((n_src, 3)) if shape_params is None else shape_params, -1)
    args = [uvw, "tbx", frequency, "f", lmn_d, "sy", coh, "sfc", shp, "sz"]
    if jones is not None:
        if antenna1 is None or antenna2 is None:
            raise ValueError("jones needs antenna1 and antenna2")
        jd = _as_dask(jones).rechunk({0: uvw.chunks[0], 1: -1, 2: -1, 3: frequency.chunks[0],
                                      4: -1})
        args += [jd, "tasfr", _as_dask(antenna1, -1), "b", _as_dask(antenna2, -1), "b"]
    else:
        args += [None, None, None, None, None, None]
    return da.blockwise(
        _block, "tbfc", *args, ra, None, rb, None, np.dtype(out_dtype).type, None,
        new_axes={"c": n_corr}, concatenate=True, dtype=np.dtype(out_dtype),
        meta=np.empty((0, 0, 0, 0), dtype=out_dtype))


def predict(
    vis_xds: xr.Dataset,
    sky: SkyModel,
    phase_centre_rad,
    *,
    jones=None,
    config: PredictConfig | None = None,
) -> xr.Dataset:
    """Add the model visibilities of ``sky`` to a visibility partition, lazily.

    Parameters
    ----------
    vis_xds : xarray.Dataset
        A visibility partition (``UVW``, ``frequency``, ``polarization``, ``antenna1``,
        ``antenna2``), numpy- or dask-backed.
    sky : SkyModel
    phase_centre_rad : array, shape (2,)
        J2000 (RA, Dec) of the phase centre of ``UVW``, radians.
    jones : array, shape (n_time, n_ant, n_src, n_chan, 2), optional
        Diagonal direction-dependent Jones terms (``J_p B J_q^H``).
    config : PredictConfig, optional

    Returns
    -------
    xarray.Dataset
        ``vis_xds`` plus ``config.output`` (dims time, baseline_id, frequency,
        polarization) and the data group ``config.data_group``.
    """
    config = config or PredictConfig()
    pols = [str(p) for p in vis_xds["polarization"].values]
    receptors = _dft.correlation_receptors(pols)
    pc = np.asarray(phase_centre_rad, dtype=np.float64).reshape(2)
    freq = vis_xds["frequency"].values
    fchunks = vis_xds.chunks.get("frequency") if vis_xds.chunks else None
    freq_d = da.from_array(freq, chunks=fchunks or -1)
    uvw = vis_xds["UVW"].data
    if not isinstance(uvw, da.Array):
        tchunks = vis_xds.chunks.get("time") if vis_xds.chunks else None
        uvw = da.from_array(uvw, chunks=(tchunks or -1, -1, -1))
    coherency = freq_d.map_blocks(_coherency_block, sky, pols, new_axis=[0, 2],
                                  chunks=((sky.n_source,), freq_d.chunks[0], (len(pols),)),
                                  dtype=np.complex128)
    a1 = np.asarray(vis_xds["antenna1"].values)
    a2 = np.asarray(vis_xds["antenna2"].values)
    model = dft_predict(uvw, freq_d, sky.lmn(pc[0], pc[1]), coherency, sky.shape_params, jones,
                        a1 if jones is not None else None, a2 if jones is not None else None,
                        receptors,
                        out_dtype=np.complex64 if config.precision == "single" else np.complex128)
    return add_data_group(vis_xds, config.data_group, config.output, data=model,
                          description=f"DFT prediction of {sky.n_source} components")


def _coherency_block(freq, sky, pols):
    return _dft.stokes_to_coherency(sky.flux(freq), pols)


__all__ = ["PredictConfig", "dft_predict", "predict"]
