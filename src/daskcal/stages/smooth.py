"""The ``smooth`` stage: smooth gain solutions along frequency (bandpass-like), lazily.

Per solution time, antenna and receptor (Jones element in full Jones) the spectrum of
gains along ``gain_frequency`` is split into log-amplitude (or amplitude) and phase,
smoothed, and recombined:

1. Phases are made relative to a reference antenna (``G <- G conj(G_ref) / |G_ref|``
   per receptor; by the ``[0, 0]`` element in full Jones). Cells where that antenna is
   flagged count as flagged.
2. Phases are unwrapped along frequency over the unflagged cells.
3. Each part is smoothed with a flag-aware filter over ``window`` cells: ``"savgol"``
   (local least-squares polynomial of degree ``polyorder`` fitted to the unflagged cells
   of the window: the Savitzky-Golay filter where nothing is flagged), ``"gaussian"``
   (local linear fit with Gaussian weights of FWHM ``window`` cells, truncated at 3
   sigma: in the interior the normalised Gaussian convolution, without its bias on
   slopes at the band edges and gaps) or ``"median"`` (running median of the unflagged
   cells of the window; biased on slopes near the edges, best for amplitudes).
4. Outliers: cells whose residual from the smooth curve exceeds ``outlier_sigma``
   times the robust (MAD, at least 1e-4) scatter of the spectrum's residuals, and
   ``outlier_min_deviation``, in log-amplitude or in phase, and that are the largest
   such residual within the window (an outlier drags the curve at its neighbours
   too), are dropped and the spectrum smoothed again
   (``outlier_iterations`` rounds). Dropped cells are flagged.
5. Flagged and rejected cells are filled by linear interpolation of the smoothed values
   of the unflagged cells along frequency (constant beyond the ends).

Every cell gets the smooth value (flagged ones are filled); ``GAIN_FLAG`` keeps the
input flags and the outliers unless ``unflag_filled`` is set, which clears the flags of
every cell that got a value. Spectra without unflagged cells stay flagged with gain 1.
The noise of unflagged interior cells drops by the filter's white-noise gain,
``sqrt(sum h_j^2)`` for weights ``h`` (Savitzky-Golay quadratic over W cells:
``sqrt(3 (3 W^2 - 7) / (4 W (W^2 - 4)))``, 0.51 for W = 9; Gaussian of FWHM w cells:
about ``(2 sqrt(pi) w / 2.355)^-1/2``; median: about ``sqrt(pi / 2W)``).

The cells are assumed equally spaced in frequency (distances are counted in cells).
Chunking: ``gain_time`` keeps its chunks; the other axes are made whole. The solver
diagnostics (``CHI2`` ...) pass through; ``REF_ANTENNA`` is set to the reference used.
"""

from __future__ import annotations

from typing import Literal

import dask.array as da
import numpy as np
import xarray as xr
from pydantic import BaseModel, ConfigDict, Field, model_validator

from daskcal import DaskcalError

_GAIN_DIMS = ("gain_time", "gain_frequency", "antenna_name", "receptor")
_FWHM_TO_SIGMA = 1.0 / (2.0 * np.sqrt(2.0 * np.log(2.0)))
#: Smallest scatter (log-amplitude or radians) outliers are measured against, so that
#: noiseless gains do not turn rounding into outliers.
_SIGMA_FLOOR = 1e-4


class SmoothConfig(BaseModel):
    """Settings of the ``smooth`` stage (LoSoTo's smooth / bandpass smoothing)."""

    model_config = ConfigDict(extra="forbid")

    method: Literal["savgol", "gaussian", "median"] = Field("savgol", description=(
        "Filter along frequency: local polynomial fit (savgol), Gaussian kernel "
        "(gaussian) or running median (median), all ignoring flagged cells."))
    window: int = Field(9, ge=1, description="Filter width in solution cells: window "
                        "length (odd) for savgol and median, FWHM for gaussian.")
    polyorder: int = Field(2, ge=0, le=6, description="Polynomial degree of savgol.")
    amplitude: Literal["log", "linear", "none"] = Field("log", description=(
        "Smooth the amplitudes in log space, linearly, or leave them unsmoothed."))
    phase: bool = Field(True, description="Smooth the (reference-relative, unwrapped) "
                        "phases; otherwise they are kept (re-referenced).")
    ref_antenna: str | None = Field(None, description="Phase reference antenna (default: "
                                    "the gains' ref_antenna attribute, else the first).")
    outlier_sigma: float | None = Field(5.0, gt=0, description="Reject cells further than "
                                        "this many robust sigmas from the smooth curve "
                                        "(None: no rejection).")
    outlier_min_deviation: float = Field(0.02, ge=0, description="An outlier must also "
                                         "be this far from the curve (log-amplitude or "
                                         "radians; 0.02 is 2 per cent or 1.1 degrees), so "
                                         "that structure the filter misses on very precise "
                                         "solutions is not taken for outliers.")
    outlier_iterations: int = Field(3, ge=0, description="Rounds of outlier rejection "
                                    "(each takes the largest outlier within a window).")
    unflag_filled: bool = Field(False, description="Clear the flags of the cells that got "
                                "a smoothed or interpolated value.")

    @model_validator(mode="after")
    def _window(self):
        if self.method in ("savgol", "median") and self.window % 2 == 0:
            raise ValueError(f"window {self.window} must be odd for {self.method}")
        if self.method == "savgol" and self.window <= self.polyorder:
            raise ValueError(f"window {self.window} must exceed polyorder {self.polyorder}")
        return self


class SmoothError(DaskcalError, ValueError):
    """Gains that cannot be smoothed with the given settings."""


# ----------------------------------------------------------------------------- helpers
# (numpy only; shared with daskcal.stages.transfer)


def gain_dims(gains: xr.Dataset) -> tuple[str, ...]:
    """The dims of ``GAIN`` in storage order; raises for anything else."""
    if "GAIN" not in gains or "GAIN_FLAG" not in gains:
        raise SmoothError("the gains dataset has no GAIN or GAIN_FLAG variable")
    full = "receptor2" in gains["GAIN"].dims
    dims = _GAIN_DIMS + (("receptor2",) if full else ())
    if set(gains["GAIN"].dims) != set(dims):
        raise SmoothError(f"GAIN has dims {gains['GAIN'].dims}; expected {dims}")
    return dims


def ref_index(gains: xr.Dataset, name: str | None) -> int:
    """Index into ``antenna_name`` of the reference antenna ``name`` (or the gains' own)."""
    names = [str(n) for n in gains["antenna_name"].values]
    name = name if name is not None else gains.attrs.get("ref_antenna")
    if name is None or name == "":
        return 0
    if name not in names:
        raise SmoothError(f"reference antenna {name!r} is not one of {names}")
    return names.index(name)


def reference(g: np.ndarray, valid: np.ndarray, ref: int) -> tuple[np.ndarray, np.ndarray]:
    """Rotate gains so that the reference antenna's are real and positive.

    Parameters
    ----------
    g : ndarray, shape (n_time, n_freq, n_ant, 2[, 2]), complex
    valid : ndarray of bool, same shape
    ref : int
        Antenna index.

    Returns
    -------
    (g_ref, valid_ref)
        Same shapes; cells where the reference is invalid or zero become invalid.
    """
    z, ok = _reference_of(g, valid, ref)
    az = np.abs(z)
    rot = np.where(ok, np.conj(z) / np.where(az > 0, az, 1.0), 1.0)
    return g * rot, valid & ok


def referenced_valid(g: np.ndarray, valid: np.ndarray, ref: int) -> np.ndarray:
    """The ``valid_ref`` of :func:`reference`, without rotating the gains."""
    return valid & _reference_of(g, valid, ref)[1]


def _reference_of(g: np.ndarray, valid: np.ndarray, ref: int) -> tuple[np.ndarray, np.ndarray]:
    """The reference antenna's gain per cell (broadcastable to ``g``) and where it is
    valid and non-zero."""
    if g.ndim == 5:
        z, zv = g[:, :, ref, 0, 0][:, :, None, None, None], valid[:, :, ref, 0, 0]
        zv = zv[:, :, None, None, None]
    else:
        z, zv = g[:, :, ref, :][:, :, None, :], valid[:, :, ref, :][:, :, None, :]
    return z, zv & (np.abs(z) > 0)


def unwrap_valid(phase: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Unwrap phases along the last axis over the valid samples only.

    Parameters
    ----------
    phase : ndarray, shape (..., n), radians
    valid : ndarray of bool, same shape

    Returns
    -------
    ndarray, same shape: unwrapped at valid samples, NaN elsewhere.
    """
    n = phase.shape[-1]
    idx = np.where(valid, np.arange(n), -1)
    idx = np.maximum.accumulate(idx, axis=-1)
    first = np.argmax(valid, axis=-1)[..., None]
    idx = np.where(idx < 0, first, idx)
    filled = np.take_along_axis(phase, idx, axis=-1)
    return np.where(valid, np.unwrap(filled, axis=-1), np.nan)


def fill_gaps(x: np.ndarray) -> np.ndarray:
    """Replace NaNs along the last axis by linear interpolation (constant beyond the ends).

    Rows without any finite value stay NaN. ``x`` has shape (n_rows, n).
    """
    out = x.copy()
    bad = ~np.isfinite(x)
    rows = np.flatnonzero(bad.any(axis=-1) & ~bad.all(axis=-1))
    pos = np.arange(x.shape[-1])
    for r in rows:
        ok = ~bad[r]
        out[r, bad[r]] = np.interp(pos[bad[r]], pos[ok], x[r, ok])
    return out


def _band(n: int, half: int) -> tuple[np.ndarray, np.ndarray]:
    d = np.arange(n)[None, :] - np.arange(n)[:, None]  # d[i, j] = j - i
    return d, np.abs(d) <= half


def _smooth_rows(x: np.ndarray, w: np.ndarray, cfg: SmoothConfig) -> np.ndarray:
    """Flag-aware smoothing of rows ``x`` (n_rows, n) with 0/1 weights ``w``; NaN: no value."""
    x = np.where(w > 0, x, 0.0)
    n = x.shape[-1]
    if cfg.method == "median":
        half = cfg.window // 2
        xp = np.pad(np.where(w > 0, x, np.nan), ((0, 0), (half, half)),
                    constant_values=np.nan)
        win = np.lib.stride_tricks.sliding_window_view(xp, cfg.window, axis=-1)
        out = np.full(x.shape, np.nan)
        has = np.isfinite(win).any(axis=-1)
        if has.any():
            out[has] = np.nanmedian(win[has], axis=-1)
        return out
    if cfg.method == "gaussian":
        sigma = max(cfg.window * _FWHM_TO_SIGMA, 1e-6)
        half, p = int(np.ceil(3 * sigma)), 1
        d, inside = _band(n, half)
        kernel = np.where(inside, np.exp(-0.5 * (d / sigma) ** 2), 0.0)
    else:  # savgol
        half, p = cfg.window // 2, cfg.polyorder
        d, inside = _band(n, half)
        kernel = inside.astype(np.float64)
    # weighted local polynomial fit of degree p around each cell, value at the centre
    u = np.where(inside, d / max(half, 1), 0.0)
    powers = [kernel * u**k for k in range(2 * p + 1)]
    s = np.stack([w @ m.T for m in powers], axis=-1)                  # (rows, n, 2p+1)
    t = np.stack([(w * x) @ m.T for m in powers[:p + 1]], axis=-1)    # (rows, n, p+1)
    a = np.stack([s[..., i:i + p + 1] for i in range(p + 1)], axis=-2)  # (rows, n, p+1, p+1)
    count = w @ inside.T.astype(np.float64)
    order_ok = count >= p + 1
    coef = np.full(x.shape, np.nan)
    if order_ok.any():
        sol = np.linalg.pinv(a[order_ok], rcond=1e-10) @ t[order_ok][..., None]
        coef[order_ok] = sol[..., 0, 0]
    # too few points for the polynomial: their (kernel-)weighted mean
    low = ~order_ok & (count > 0)
    coef[low] = t[..., 0][low] / s[..., 0][low]
    return coef


def _robust_reject(res: np.ndarray, w: np.ndarray, nsig: float, half: int,
                   min_dev: float) -> np.ndarray:
    """Outlier mask: residuals beyond ``nsig`` MAD sigmas that peak within +-``half`` cells.

    Only the local peaks are taken: an outlier also pulls the smooth curve at its
    neighbours, whose residuals are smaller; they are tested again in the next round.
    """
    r = np.where(w > 0, res, np.nan)
    good = np.isfinite(r).sum(axis=-1) >= 3
    r0 = np.where(good[:, None], r, 0.0)
    med = np.nanmedian(r0, axis=-1)
    sigma = np.maximum(1.4826 * np.nanmedian(np.abs(r0 - med[:, None]), axis=-1), _SIGMA_FLOOR)
    with np.errstate(divide="ignore", invalid="ignore"):
        z = np.abs(r - med[:, None]) / (nsig * sigma[:, None])
    big = np.abs(r - med[:, None]) > min_dev
    z = np.where(np.isfinite(z) & good[:, None] & (w > 0) & big, z, 0.0)
    zp = np.pad(z, ((0, 0), (half, half)))
    peak = np.lib.stride_tricks.sliding_window_view(zp, 2 * half + 1, axis=-1).max(axis=-1)
    return (z > 1) & (z >= peak)


def smooth_spectra(g: np.ndarray, flag: np.ndarray, ref: int,
                   cfg: SmoothConfig) -> tuple[np.ndarray, np.ndarray]:
    """Smooth gains along frequency (numpy; see the module notes).

    Parameters
    ----------
    g : ndarray, shape (n_time, n_freq, n_ant, 2[, 2]), complex
    flag : ndarray of bool, same shape (True: no solution)
    ref : int
        Reference antenna index.
    cfg : SmoothConfig

    Returns
    -------
    (gains, flags)
        Same shapes; gains complex128, reference-relative.
    """
    valid = ~flag & np.isfinite(g)
    g_ref, valid = reference(np.where(np.isfinite(g), g, 1.0).astype(np.complex128), valid, ref)
    # rows: (time, ant, receptor...) x frequency
    perm = (0, *range(2, g.ndim), 1)
    rows = g_ref.transpose(perm).reshape(-1, g.shape[1])
    w = valid.transpose(perm).reshape(-1, g.shape[1]).astype(np.float64)
    amp = np.abs(rows)
    w = np.where(amp > 0, w, 0.0) if cfg.amplitude == "log" else w
    a_in = np.log(np.where(amp > 0, amp, 1.0)) if cfg.amplitude == "log" else amp
    p_in = unwrap_valid(np.angle(rows), w > 0)
    for it in range(cfg.outlier_iterations + 1):
        a_s = _smooth_rows(a_in, w, cfg) if cfg.amplitude != "none" else a_in
        p_s = _smooth_rows(p_in, w, cfg) if cfg.phase else p_in
        if cfg.outlier_sigma is None or it == cfg.outlier_iterations:
            break
        bad = np.zeros(w.shape, bool)
        half = max(cfg.window // 2, 1)
        if cfg.amplitude != "none":
            bad |= _robust_reject(a_in - a_s, w, cfg.outlier_sigma, half,
                                  cfg.outlier_min_deviation)
        if cfg.phase:
            bad |= _robust_reject(np.angle(np.exp(1j * (p_in - p_s))), w, cfg.outlier_sigma,
                                  half, cfg.outlier_min_deviation)
        if not bad.any():
            break
        w = np.where(bad, 0.0, w)
        p_in = unwrap_valid(np.where(np.isfinite(p_in), p_in, 0.0), w > 0)
    # flagged cells: linear interpolation between the smoothed unflagged ones
    a_s = fill_gaps(np.where(w > 0, a_s, np.nan))
    p_s = fill_gaps(np.where(w > 0, p_s, np.nan))
    amp_s = np.exp(a_s) if cfg.amplitude == "log" else a_s
    out = amp_s * np.exp(1j * p_s)
    have = np.isfinite(out)
    out = np.where(have, out, 1.0 + 0j)
    out_flag = ~have if cfg.unflag_filled else (~have | (w == 0))
    shape = tuple(g.shape[i] for i in perm)
    inv = np.argsort(perm)
    return (out.reshape(shape).transpose(inv), out_flag.reshape(shape).transpose(inv))


def _smooth_block(g, flag, ref, cfg, dtype):
    sg, sf = smooth_spectra(g, flag, ref, cfg)
    out = np.empty(g.shape[:3], dtype)
    out["gain"], out["flag"] = sg, sf
    return out


def smooth(gains: xr.Dataset, config: SmoothConfig | None = None) -> xr.Dataset:
    """Smooth gain solutions along frequency, lazily.

    Parameters
    ----------
    gains : xarray.Dataset
        Gains as made by :func:`daskcal.stages.solve.solve` (or read from zarr or
        H5parm): ``GAIN`` complex (gain_time, gain_frequency, antenna_name, receptor
        [, receptor2]) and ``GAIN_FLAG``.
    config : SmoothConfig, optional

    Returns
    -------
    xarray.Dataset
        ``gains`` with ``GAIN`` and ``GAIN_FLAG`` replaced by the smoothed, reference-
        relative gains and their flags (dask-backed), ``REF_ANTENNA`` set to the
        reference and the attribute ``smooth`` (the config). Nothing is computed.

    Raises
    ------
    SmoothError
        For gains without GAIN/GAIN_FLAG or an unknown reference antenna.
    """
    config = config or SmoothConfig()
    dims = gain_dims(gains)
    ref = ref_index(gains, config.ref_antenna)
    full = len(dims) == 5
    arrs = []
    for var in ("GAIN", "GAIN_FLAG"):
        a = gains[var].transpose(*dims).data
        a = a if isinstance(a, da.Array) else da.from_array(a, chunks={0: -1})
        arrs.append(a.rechunk({i: -1 for i in range(1, len(dims))}))
    gshape = (2, 2) if full else (2,)
    dtype = np.dtype([("gain", np.complex128, gshape), ("flag", np.bool_, gshape)])
    idx = "tfa" + "rs"[:len(dims) - 3]
    packed = da.blockwise(_smooth_block, "tfa", arrs[0], idx, arrs[1], idx, ref, None,
                          config, None, dtype, None, concatenate=True, dtype=dtype,
                          meta=np.empty((0, 0, 0), dtype))
    out = gains.copy()
    out["GAIN"] = (dims, packed["gain"], gains["GAIN"].attrs)
    out["GAIN_FLAG"] = (dims, packed["flag"], gains["GAIN_FLAG"].attrs)
    if "REF_ANTENNA" in gains:
        ref_arr = xr.full_like(gains["REF_ANTENNA"], ref)
        out["REF_ANTENNA"] = ref_arr
    out.attrs = {**gains.attrs, "ref_antenna": str(gains["antenna_name"].values[ref]),
                 "smooth": config.model_dump(mode="json")}
    return out


__all__ = ["SmoothConfig", "SmoothError", "fill_gaps", "reference", "referenced_valid", "smooth",
           "smooth_spectra", "unwrap_valid"]
