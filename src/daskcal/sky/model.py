"""Sky models: point and Gaussian components with log-polynomial spectra, as plain arrays.

A :class:`SkyModel` is a frozen dataclass of numpy arrays, one entry per component.
It knows how to evaluate its spectra and to round-trip through an ``xarray.Dataset``
(the form stored beside simulations); text formats (BBS/makesourcedb) are added by
later issues on top of the same arrays.

Spectral model
--------------
With ``log_si`` true (the default, BBS ``LogarithmicSI=true``)::

    S(f) = S0 * (f / f0) ** (a0 + a1 log10(f / f0) + a2 log10(f / f0)**2 + ...)

and with ``log_si`` false, the ordinary polynomial of BBS::

    S(f) = S0 + a0 (f / f0 - 1) + a1 (f / f0 - 1)**2 + ...

Both are evaluated on Stokes I; the same relative spectrum ``S(f) / S0`` scales Q, U
and V (no rotation measure).

Shapes
------
Gaussian sizes are FWHM in radians of the major and minor axes; the position angle
of the major axis is measured from north through east, radians. Point components
have ``major == minor == 0``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields

import numpy as np
import xarray as xr

from daskcal import DaskcalError


class SkyModelError(DaskcalError, ValueError):
    """A sky model with inconsistent or impossible values."""


def _f64(x, n, name, ndim=1, width=None):
    a = np.asarray(x, dtype=np.float64)
    if ndim == 1:
        a = np.broadcast_to(a, (n,)).copy() if a.ndim == 0 else a
        if a.shape != (n,):
            raise SkyModelError(f"sky model: {name} has shape {a.shape}, expected ({n},)")
    elif a.ndim != 2 or a.shape[0] != n or (width is not None and a.shape[1] != width):
        raise SkyModelError(f"sky model: {name} has shape {a.shape}, expected ({n}, "
                            f"{width if width is not None else 'n_terms'})")
    if not np.all(np.isfinite(a)):
        raise SkyModelError(f"sky model: {name} has non-finite values")
    return a


@dataclass(frozen=True, eq=False)
class SkyModel:
    """Components of a sky model, as arrays of length ``n_source``.

    Parameters
    ----------
    name : ndarray of str, shape (n_source,)
        Component names (unique).
    ra, dec : ndarray, shape (n_source,)
        J2000 position, radians.
    stokes : ndarray, shape (n_source, 4)
        Stokes I, Q, U, V flux density at ``ref_freq``, Jy (integrated, for Gaussians).
    ref_freq : ndarray, shape (n_source,)
        Reference frequency ``f0`` of the spectrum, Hz.
    spectral_index : ndarray, shape (n_source, n_terms)
        Spectral coefficients ``a0, a1, ...`` (``n_terms`` may be 0).
    log_si : ndarray of bool, shape (n_source,)
        Logarithmic (true) or ordinary polynomial (false) spectrum.
    major, minor : ndarray, shape (n_source,)
        Gaussian FWHM of the major and minor axes, radians (0 for points).
    position_angle : ndarray, shape (n_source,)
        Position angle of the major axis, north through east, radians.
    patch : ndarray of str, shape (n_source,)
        Patch (direction group) of each component; ``""`` for none.
    """

    name: np.ndarray
    ra: np.ndarray
    dec: np.ndarray
    stokes: np.ndarray
    ref_freq: np.ndarray
    spectral_index: np.ndarray
    log_si: np.ndarray
    major: np.ndarray
    minor: np.ndarray
    position_angle: np.ndarray
    patch: np.ndarray

    def __post_init__(self):
        name = np.asarray(self.name, dtype=str).reshape(-1)
        n = name.size
        if len(set(name.tolist())) != n:
            raise SkyModelError("sky model: component names are not unique")
        stokes = _f64(self.stokes, n, "stokes", ndim=2, width=4)
        si = np.asarray(self.spectral_index, dtype=np.float64)
        if si.ndim == 1 and si.size == n:
            si = si[:, None]
        if si.size == 0:
            si = np.zeros((n, si.shape[-1] if si.ndim == 2 else 0))
        si = _f64(si, n, "spectral_index", ndim=2)
        ref = _f64(self.ref_freq, n, "ref_freq")
        if np.any(ref <= 0):
            raise SkyModelError("sky model: ref_freq must be positive")
        major, minor = _f64(self.major, n, "major"), _f64(self.minor, n, "minor")
        if np.any(major < 0) or np.any(minor < 0) or np.any(minor > major * (1 + 1e-12)):
            raise SkyModelError("sky model: need 0 <= minor <= major for Gaussian sizes")
        dec = _f64(self.dec, n, "dec")
        if np.any(np.abs(dec) > np.pi / 2 + 1e-12):
            raise SkyModelError("sky model: |dec| must not exceed pi/2")
        patch = np.broadcast_to(np.asarray(self.patch, dtype=str), (n,)).copy()
        log_si = np.broadcast_to(np.asarray(self.log_si, dtype=bool), (n,)).copy()
        values = {"name": name, "ra": np.mod(_f64(self.ra, n, "ra"), 2 * np.pi), "dec": dec,
                  "stokes": stokes, "ref_freq": ref, "spectral_index": si, "log_si": log_si,
                  "major": major, "minor": minor,
                  "position_angle": _f64(self.position_angle, n, "position_angle"),
                  "patch": patch}
        for key, val in values.items():
            val.setflags(write=False)
            object.__setattr__(self, key, val)

    # ------------------------------------------------------------------ construction

    @classmethod
    def from_components(
        cls,
        *,
        name: Sequence[str],
        ra,
        dec,
        stokes_i,
        ref_freq,
        stokes_q=0.0,
        stokes_u=0.0,
        stokes_v=0.0,
        spectral_index=(),
        log_si=True,
        major=0.0,
        minor=0.0,
        position_angle=0.0,
        patch="",
    ) -> SkyModel:
        """Build from per-component values (scalars broadcast); angles in radians.

        ``spectral_index`` is ``(n_source, n_terms)``, or one coefficient list for all.
        """
        n = len(name)
        stokes = np.stack([np.broadcast_to(np.asarray(x, dtype=np.float64), (n,))
                           for x in (stokes_i, stokes_q, stokes_u, stokes_v)], axis=1)
        si = np.asarray(spectral_index, dtype=np.float64)
        if si.ndim <= 1:
            si = np.broadcast_to(si.reshape(1, -1), (n, si.size)).copy()
        return cls(name=np.asarray(name, dtype=str), ra=ra, dec=dec, stokes=stokes,
                   ref_freq=ref_freq, spectral_index=si, log_si=log_si, major=major, minor=minor,
                   position_angle=position_angle, patch=patch)

    @classmethod
    def empty(cls) -> SkyModel:
        """A sky model with no components."""
        z = np.zeros(0)
        return cls(name=np.zeros(0, dtype=str), ra=z, dec=z, stokes=np.zeros((0, 4)),
                   ref_freq=z, spectral_index=np.zeros((0, 0)), log_si=np.zeros(0, bool),
                   major=z, minor=z, position_angle=z, patch=np.zeros(0, dtype=str))

    @classmethod
    def concatenate(cls, models: Sequence[SkyModel]) -> SkyModel:
        """Join sky models (spectral terms are zero-padded to the longest)."""
        models = [m for m in models if m.n_source]
        if not models:
            return cls.empty()
        n_terms = max(m.spectral_index.shape[1] for m in models)
        si = np.concatenate([np.pad(m.spectral_index, ((0, 0), (0, n_terms - m.spectral_index.shape[1])))
                             for m in models])
        cat = {f.name: np.concatenate([getattr(m, f.name) for m in models])
               for f in fields(cls) if f.name != "spectral_index"}
        return cls(spectral_index=si, **cat)

    def select(self, index) -> SkyModel:
        """The components picked by a boolean mask or an index array."""
        return SkyModel(**{f.name: getattr(self, f.name)[index] for f in fields(self)})

    # ------------------------------------------------------------------ properties

    @property
    def n_source(self) -> int:
        """Number of components."""
        return int(self.name.size)

    def __len__(self) -> int:
        return self.n_source

    @property
    def is_gaussian(self) -> np.ndarray:
        """Boolean mask of the Gaussian components, shape (n_source,)."""
        return self.major > 0

    @property
    def shape_params(self) -> np.ndarray:
        """``(major, minor, position_angle)`` per component, shape (n_source, 3), radians."""
        return np.stack([self.major, self.minor, self.position_angle], axis=1)

    def spectrum(self, frequency_hz) -> np.ndarray:
        """Spectral scaling ``S(f) / S0`` of each component (from Stokes I).

        Parameters
        ----------
        frequency_hz : array, shape (n_chan,)

        Returns
        -------
        ndarray, shape (n_source, n_chan)
        """
        f = np.asarray(frequency_hz, dtype=np.float64).reshape(1, -1)
        ratio = f / self.ref_freq[:, None]
        x = np.where(self.log_si[:, None], np.log10(ratio), ratio - 1.0)
        poly = np.zeros_like(x)
        for k in range(self.spectral_index.shape[1] - 1, -1, -1):  # Horner
            poly = poly * x + self.spectral_index[:, k:k + 1]
        logarithmic = np.power(10.0, poly * x)
        i0 = np.where(self.stokes[:, 0] != 0, self.stokes[:, 0], 1.0)
        ordinary = 1.0 + poly * x / i0[:, None]
        return np.where(self.log_si[:, None], logarithmic, ordinary)

    def flux(self, frequency_hz) -> np.ndarray:
        """Stokes I, Q, U, V of each component at each frequency.

        Parameters
        ----------
        frequency_hz : array, shape (n_chan,)

        Returns
        -------
        ndarray, shape (n_source, n_chan, 4), Jy
        """
        return self.stokes[:, None, :] * self.spectrum(frequency_hz)[:, :, None]

    def lmn(self, ra0_rad: float, dec0_rad: float) -> np.ndarray:
        """Direction cosines relative to a phase centre, shape (n_source, 3)."""
        from daskcal.data.geometry import lmn_of

        if self.n_source == 0:
            return np.zeros((0, 3))
        return lmn_of(self.ra, self.dec, ra0_rad, dec0_rad)

    # ------------------------------------------------------------------ xarray

    def to_dataset(self) -> xr.Dataset:
        """The sky model as an ``xarray.Dataset`` with dimension ``source``."""
        rad = {"units": "rad"}
        return xr.Dataset(
            data_vars={
                "RA": ("source", self.ra, {**rad, "frame": "fk5", "equinox": "j2000.0"}),
                "DEC": ("source", self.dec, {**rad, "frame": "fk5", "equinox": "j2000.0"}),
                "STOKES": (("source", "stokes"), self.stokes, {"units": "Jy"}),
                "REF_FREQ": ("source", self.ref_freq, {"units": "Hz"}),
                "SPECTRAL_INDEX": (("source", "spectral_term"), self.spectral_index),
                "LOG_SI": ("source", self.log_si),
                "MAJOR": ("source", self.major, {**rad, "description": "FWHM"}),
                "MINOR": ("source", self.minor, {**rad, "description": "FWHM"}),
                "POSITION_ANGLE": ("source", self.position_angle,
                                   {**rad, "description": "north through east"}),
            },
            coords={"source": ("source", self.name), "patch": ("source", self.patch),
                    "stokes": ("stokes", np.array(["I", "Q", "U", "V"]))},
            attrs={"type": "sky_model"},
        )

    @classmethod
    def from_dataset(cls, xds: xr.Dataset) -> SkyModel:
        """Inverse of :meth:`to_dataset`."""
        return cls(name=xds["source"].values, ra=xds["RA"].values, dec=xds["DEC"].values,
                   stokes=xds["STOKES"].values, ref_freq=xds["REF_FREQ"].values,
                   spectral_index=xds["SPECTRAL_INDEX"].values, log_si=xds["LOG_SI"].values,
                   major=xds["MAJOR"].values, minor=xds["MINOR"].values,
                   position_angle=xds["POSITION_ANGLE"].values, patch=xds["patch"].values)
