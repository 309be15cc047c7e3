"""Analytic primary beams: Gaussian and Airy dishes, and a LOFAR HBA station model.

All beams here are **power** beams (the attenuation of a source's apparent flux),
normalised to 1 at the pointing, as functions of direction and frequency.

Dishes
------
* Gaussian: ``P(rho) = (1 - s) exp(-4 ln 2 (rho / theta)^2) + s`` with FWHM
  ``theta = k c / (f D)`` (``k`` = ``fwhm_factor``, default 1.02) and an optional floor
  ``s``. This is the convention of the simulator's beam
  (:func:`daskcal.testing.corruptions.beam_voltage`), so that primary-beam correction of
  simulated data is exact.
* Airy (uniformly illuminated circular aperture of diameter ``D``):
  ``P(rho) = (2 J1(x) / x)^2`` with ``x = pi D sin(rho) f / c``; its FWHM is
  ``2 arcsin(1.61634 c / (pi f D)) ~ 1.029 c / (f D)``.

LOFAR HBA station
-----------------
A station of ``n_tile`` tiles, each a 4 x 4 grid of dual dipoles with 1.25 m spacing and
an analogue beamformer, all digitally beamformed towards the same pointing ``s0``. For a
direction ``s`` (unit vector in local east, north, up) the voltage response is::

    V(s) = sqrt(E(s) / E(s0)) * T(s) * A(s)
    T(s) = 1/16     sum_e exp(i k (s - s0) . d_e)      (tile array factor)
    A(s) = 1/n_tile sum_t exp(i k (s - s0) . R_t)      (station array factor)

with ``k = 2 pi f / c``, dipole offsets ``d_e`` within a tile and tile positions ``R_t``
(metres, east/north/up), and the power beam is ``|V|^2`` (1 at the pointing, 0 below the
horizon). The element power ``E`` is the unpolarised (Stokes I) response of two crossed
short horizontal dipoles at height ``h`` above an infinite ground plane::

    E(s) = (1 + cos^2 z) / 2 * sin^2(k h cos z),    cos z = s_up

This is a model (no mutual coupling, no delay quantisation of the tile beamformer, the
station plane taken as the local horizontal), enough for the shape of the main lobe and
the grating lobes; the absolute gain change with elevation is left to flux calibration.

Tile layouts: :func:`generated_hba_layout` makes a realistic one (tiles on a ~5.15 m grid,
24 inside the 30.8 m circle of a core station field, 48 inside the 41 m of a remote
one); real layouts are read with the optional ``lofarantpos`` package
(:func:`lofar_station_layout`).
"""

from __future__ import annotations

import math

import numpy as np

#: Speed of light in vacuum, m/s.
C_M_S: float = 299_792_458.0
#: Dipole spacing within an HBA tile, m.
HBA_DIPOLE_SPACING_M: float = 1.25
#: Half-power argument of the Airy pattern: ``(2 J1(x) / x)^2 = 1/2``.
AIRY_HALF_POWER_X: float = 1.616339948310703
#: Default height of the model HBA dipoles above their ground plane, m.
HBA_ELEMENT_HEIGHT_M: float = 0.3


# ----------------------------------------------------------------------------- dishes


def gaussian_fwhm_rad(freq_hz, diameter_m, fwhm_factor: float = 1.02) -> np.ndarray:
    """Power FWHM ``fwhm_factor * c / (f D)`` in radians (broadcasting ``freq_hz``, ``diameter_m``)."""
    return fwhm_factor * C_M_S / (np.asarray(freq_hz, dtype=np.float64)
                                  * np.asarray(diameter_m, dtype=np.float64))


def gaussian_power(rho_rad, freq_hz, diameter_m, *, fwhm_factor: float = 1.02,
                   floor: float = 0.0) -> np.ndarray:
    """Gaussian power beam ``(1 - floor) exp(-4 ln 2 (rho / theta)^2) + floor``.

    Parameters
    ----------
    rho_rad : array
        Angular distance from the pointing, radians.
    freq_hz : array
        Frequency, Hz (broadcast against ``rho_rad``).
    diameter_m : float or array
        Dish/station diameter, metres (broadcast).
    fwhm_factor : float
        ``k`` in ``theta = k c / (f D)``.
    floor : float
        Far-sidelobe floor ``s`` in [0, 1) (the simulator's ``sidelobe_level``).

    Returns
    -------
    ndarray, the broadcast shape of the inputs, float64
    """
    if not 0.0 <= floor < 1.0:
        raise ValueError(f"floor must be in [0, 1), got {floor}")
    theta = gaussian_fwhm_rad(freq_hz, diameter_m, fwhm_factor)
    rho = np.asarray(rho_rad, dtype=np.float64)
    return (1.0 - floor) * np.exp(-4.0 * math.log(2.0) * (rho / theta) ** 2) + floor


def airy_fwhm_rad(freq_hz, diameter_m) -> np.ndarray:
    """Power FWHM of the Airy pattern, radians (~1.029 c / (f D))."""
    lam = C_M_S / np.asarray(freq_hz, dtype=np.float64)
    return 2.0 * np.arcsin(AIRY_HALF_POWER_X * lam / (np.pi * np.asarray(diameter_m, np.float64)))


def airy_power(rho_rad, freq_hz, diameter_m) -> np.ndarray:
    """Airy power beam ``(2 J1(x) / x)^2``, ``x = pi D sin(rho) f / c``, of a uniform disc.

    Parameters
    ----------
    rho_rad : array
        Angular distance from the pointing, radians.
    freq_hz : array
        Frequency, Hz (broadcast against ``rho_rad``).
    diameter_m : float or array
        Aperture diameter, metres (broadcast).

    Returns
    -------
    ndarray, the broadcast shape of the inputs, float64 (1 at ``rho = 0``)
    """
    from scipy.special import j1

    x = (np.pi * np.asarray(diameter_m, dtype=np.float64) * np.sin(np.asarray(rho_rad, np.float64))
         * np.asarray(freq_hz, dtype=np.float64) / C_M_S)
    small = np.abs(x) < 1e-8
    xs = np.where(small, 1.0, x)
    return np.where(small, 1.0, (2.0 * j1(xs) / xs) ** 2)


# ----------------------------------------------------------------------------- directions


def azel_to_enu(az_rad, el_rad) -> np.ndarray:
    """Unit vectors (..., 3) in local (east, north, up) of azimuths (north through east)
    and elevations, radians."""
    az, el = np.asarray(az_rad, dtype=np.float64), np.asarray(el_rad, dtype=np.float64)
    ce = np.cos(el)
    return np.stack([ce * np.sin(az), ce * np.cos(az), np.sin(el)], axis=-1)


def enu_to_azel(enu) -> tuple[np.ndarray, np.ndarray]:
    """(azimuth in [0, 2 pi), elevation) in radians of vectors (..., 3) in (east, north, up)."""
    v = np.asarray(enu, dtype=np.float64)
    v = v / np.linalg.norm(v, axis=-1, keepdims=True)
    return (np.mod(np.arctan2(v[..., 0], v[..., 1]), 2 * np.pi),
            np.arcsin(np.clip(v[..., 2], -1.0, 1.0)))


# ----------------------------------------------------------------------------- layouts


def hba_tile_offsets(rotation_rad: float = 0.0,
                     spacing_m: float = HBA_DIPOLE_SPACING_M) -> np.ndarray:
    """Offsets of the 16 dipoles of an HBA tile from its centre.

    Parameters
    ----------
    rotation_rad : float
        Angle of the tile's first grid axis counter-clockwise from east (towards north).
    spacing_m : float
        Dipole spacing, metres.

    Returns
    -------
    ndarray, shape (16, 3)
        (east, north, up) offsets, metres; ``up = 0``.
    """
    g = (np.arange(4) - 1.5) * spacing_m
    a, b = (x.ravel() for x in np.meshgrid(g, g, indexing="ij"))
    c, s = math.cos(rotation_rad), math.sin(rotation_rad)
    return np.stack([a * c - b * s, a * s + b * c, np.zeros(16)], axis=1)


def generated_hba_layout(n_tiles: int = 24, *, spacing_m: float = 5.15,
                         rotation_rad: float = 0.0) -> np.ndarray:
    """A realistic HBA station: the ``n_tiles`` grid positions nearest the centre.

    Tiles (5 m wide) sit on a square grid of pitch ``spacing_m`` offset by half a pitch
    from the centre; the nearest ``n_tiles`` grid points are kept (ties broken towards
    the first grid axis, which keeps the layout centred). With the defaults, 24 tiles fill a circle of 30.8 m diameter (a
    core station field) and 48 tiles one of 41 m (a remote station).

    Parameters
    ----------
    n_tiles : int
    spacing_m : float
        Grid pitch, metres.
    rotation_rad : float
        Rotation of the grid, counter-clockwise from east.

    Returns
    -------
    ndarray, shape (n_tiles, 3)
        Tile centres (east, north, up), metres, about the station centre.
    """
    if n_tiles < 1:
        raise ValueError(f"n_tiles must be positive, got {n_tiles}")
    half = int(math.ceil(math.sqrt(n_tiles))) + 1
    g = np.arange(-half, half) + 0.5
    a, b = (x.ravel() for x in np.meshgrid(g, g, indexing="ij"))
    # nearest first; among equally near points those closest to the first axis, so that
    # the kept set stays symmetric about the centre
    order = np.lexsort((np.round(np.mod(np.arctan2(b, a), 2 * np.pi), 9), np.abs(b),
                        np.round(a * a + b * b, 9)))[:n_tiles]
    a, b = a[order] * spacing_m, b[order] * spacing_m
    c, s = math.cos(rotation_rad), math.sin(rotation_rad)
    return np.stack([a * c - b * s, a * s + b * c, np.zeros(n_tiles)], axis=1)


def lofar_station_layout(name: str) -> tuple[np.ndarray, np.ndarray]:
    """Tile positions and dipole offsets of a real LOFAR HBA field (needs ``lofarantpos``).

    Parameters
    ----------
    name : str
        Antenna field, e.g. ``CS002HBA0``, ``CS002HBA1``, ``RS106HBA`` or a joined core
        field ``CS002HBA`` (both halves, whose tiles are rotated differently).

    Returns
    -------
    tile_positions_m : ndarray, shape (n_tile, 3)
        Tile centres in local (east, north, up) about the field centre, metres.
    element_offsets_m : ndarray, shape (n_tile, 16, 3)
        Dipole offsets within each tile in (east, north, up), metres.

    Raises
    ------
    ImportError
        ``lofarantpos`` is not installed.
    KeyError
        Unknown field name.
    """
    from lofarantpos.db import LofarAntennaDatabase

    db = _lofar_db(LofarAntennaDatabase)
    field = name.upper()
    if field not in db.phase_centres:
        raise KeyError(f"{name!r} is not a LOFAR antenna field known to lofarantpos")
    subfields = [field + "0", field + "1"] if (field.startswith("CS") and field.endswith("HBA")) \
        else [field]
    if any(sf not in db.hba_rotations for sf in subfields):
        raise KeyError(f"{name!r} is not an HBA field")
    to_enu = np.asarray(db.pqr_to_localnorth(field), dtype=np.float64)  # pqr -> (e, n, u)
    tiles = np.asarray(db.antenna_pqr(field), dtype=np.float64) @ to_enu.T
    g = (np.arange(4) - 1.5) * HBA_DIPOLE_SPACING_M
    a, b = (x.ravel() for x in np.meshgrid(g, g, indexing="ij"))
    offsets = []
    for sf, n_sf in zip(subfields, np.diff(np.linspace(0, tiles.shape[0], len(subfields) + 1)
                                           .astype(int)), strict=True):
        # the tile grid in PQR is rotated by -rotation (lofarantpos' convention)
        r = float(db.hba_rotations[sf])
        p_axis = np.array([math.cos(r), -math.sin(r), 0.0])
        q_axis = np.array([math.sin(r), math.cos(r), 0.0])
        off = (a[:, None] * p_axis + b[:, None] * q_axis) @ to_enu.T
        offsets.append(np.broadcast_to(off, (n_sf, 16, 3)))
    return tiles, np.concatenate(offsets, axis=0)


_DB: list = []


def _lofar_db(cls):
    if not _DB:
        _DB.append(cls())
    return _DB[0]


# ----------------------------------------------------------------------------- station beam


def dipole_element_power(directions_enu, freq_hz: float, *,
                         height_m: float = HBA_ELEMENT_HEIGHT_M) -> np.ndarray:
    """Unpolarised power of crossed horizontal dipoles over a ground plane (module notes).

    Parameters
    ----------
    directions_enu : array, shape (n, 3)
        Unit vectors (east, north, up).
    freq_hz : float
    height_m : float
        Dipole height above the ground plane, metres.

    Returns
    -------
    ndarray, shape (n,)
        ``(1 + cos^2 z) / 2 sin^2(k h cos z)`` (zero below the horizon), not normalised.
    """
    up = np.asarray(directions_enu, dtype=np.float64)[..., 2]
    k = 2.0 * np.pi * float(freq_hz) / C_M_S
    p = 0.5 * (1.0 + up * up) * np.sin(k * height_m * up) ** 2
    return np.where(up > 0, p, 0.0)


def _unit_rows(x, what: str) -> np.ndarray:
    a = np.ascontiguousarray(np.asarray(x, dtype=np.float64).reshape(-1, 3))
    if not np.all(np.isfinite(a)):
        raise ValueError(f"{what} must be finite")
    norm = np.linalg.norm(a, axis=1)
    if np.any(np.abs(norm - 1.0) > 1e-6):
        raise ValueError(f"{what} must be unit vectors (east, north, up)")
    return a


def array_factor(directions_enu, pointing_enu, positions_m, freq_hz: float) -> np.ndarray:
    """Normalised array factor ``1/N sum_j exp(i k (s - s0) . r_j)``.

    Parameters
    ----------
    directions_enu : array, shape (n, 3)
        Unit vectors (east, north, up).
    pointing_enu : array, shape (3,)
        Unit vector of the beamformer's pointing.
    positions_m : array, shape (n_pos, 3)
        Element positions (east, north, up), metres.
    freq_hz : float

    Returns
    -------
    ndarray, shape (n,), complex128 (1 at the pointing)
    """
    dirs = _unit_rows(directions_enu, "directions")
    s0 = _unit_rows(pointing_enu, "pointing")[0]
    pos = np.ascontiguousarray(np.asarray(positions_m, dtype=np.float64).reshape(-1, 3))
    if pos.shape[0] == 0:
        raise ValueError("positions_m is empty")
    k = 2.0 * np.pi * float(freq_hz) / C_M_S
    from daskcal.kernels._beams_jit import array_factor_kernel  # numba: on first use

    return array_factor_kernel(dirs, s0, pos, k, np.empty(dirs.shape[0], np.complex128))


def hba_station_voltage(directions_enu, pointing_enu, freq_hz, tile_positions_m,
                        element_offsets_m=None, *,
                        element_height_m: float = HBA_ELEMENT_HEIGHT_M) -> np.ndarray:
    """Complex voltage beam ``V(s)`` of an HBA station (module notes), 1 at the pointing.

    Parameters
    ----------
    directions_enu : array, shape (n_dir, 3)
        Unit vectors (east, north, up).
    pointing_enu : array, shape (3,)
        Unit vector of the (tile and station) pointing; must be above the horizon.
    freq_hz : float or array, shape (n_freq,)
    tile_positions_m : array, shape (n_tile, 3)
        Tile centres (east, north, up), metres.
    element_offsets_m : array, shape (n_elem, 3) or (n_tile, n_elem, 3), optional
        Dipole offsets within a tile, the same for all tiles or per tile (default
        :func:`hba_tile_offsets` ``()``), metres.
    element_height_m : float
        Height of the dipoles above the ground plane, metres.

    Returns
    -------
    ndarray, shape (n_dir, n_freq), complex128 (zero below the horizon)

    Notes
    -----
    Tiles sharing the same dipole offsets (one rotation) are grouped:
    ``V = sqrt(E / E0) sum_g (n_g / n_tile) T_g(s) A_g(s)``.
    """
    dirs = _unit_rows(directions_enu, "directions")
    s0 = _unit_rows(pointing_enu, "pointing")
    if s0[0, 2] <= 0:
        raise ValueError("the pointing is below the horizon")
    freqs = np.atleast_1d(np.asarray(freq_hz, dtype=np.float64))
    if np.any(~(freqs > 0)):
        raise ValueError("frequencies must be positive")
    tiles = np.asarray(tile_positions_m, dtype=np.float64).reshape(-1, 3)
    n_tile = tiles.shape[0]
    if n_tile == 0:
        raise ValueError("tile_positions_m is empty")
    offs = np.asarray(hba_tile_offsets() if element_offsets_m is None else element_offsets_m,
                      dtype=np.float64)
    if offs.ndim == 2:
        offs = np.broadcast_to(offs, (n_tile,) + offs.shape)
    if offs.ndim != 3 or offs.shape[0] != n_tile or offs.shape[2] != 3:
        raise ValueError(f"element_offsets_m has shape {offs.shape}, expected (n_elem, 3) or "
                         f"({n_tile}, n_elem, 3)")
    _, group = np.unique(np.round(offs.reshape(n_tile, -1), 9), axis=0, return_inverse=True)
    group = np.ravel(group)
    out = np.zeros((dirs.shape[0], freqs.size), np.complex128)
    for c, f in enumerate(freqs):
        e = dipole_element_power(dirs, f, height_m=element_height_m)
        e0 = dipole_element_power(s0, f, height_m=element_height_m)[0]
        if e0 <= 0:
            raise ValueError(f"the element pattern is zero at the pointing at {f:.6g} Hz")
        for g in np.unique(group):
            sel = np.flatnonzero(group == g)
            tile = array_factor(dirs, s0, offs[sel[0]], f)
            station = array_factor(dirs, s0, tiles[sel], f)
            out[:, c] += (sel.size / n_tile) * tile * station
        out[:, c] *= np.sqrt(e / e0)
    return out


def hba_station_power(directions_enu, pointing_enu, freq_hz, tile_positions_m,
                      element_offsets_m=None, *,
                      element_height_m: float = HBA_ELEMENT_HEIGHT_M) -> np.ndarray:
    """Power beam ``|V(s)|^2`` of an HBA station, shape (n_dir, n_freq), 1 at the pointing.

    Same parameters as :func:`hba_station_voltage`.
    """
    v = hba_station_voltage(directions_enu, pointing_enu, freq_hz, tile_positions_m,
                            element_offsets_m, element_height_m=element_height_m)
    return v.real ** 2 + v.imag ** 2


def hba_station_power_azel(az_rad, el_rad, pointing_az_rad: float, pointing_el_rad: float,
                           freq_hz, tile_positions_m, element_offsets_m=None, *,
                           element_height_m: float = HBA_ELEMENT_HEIGHT_M) -> np.ndarray:
    """:func:`hba_station_power` for directions and pointing given as azimuth (north
    through east) and elevation, radians; ``az_rad, el_rad`` shape (n_dir,)."""
    return hba_station_power(azel_to_enu(az_rad, el_rad),
                             azel_to_enu(pointing_az_rad, pointing_el_rad), freq_hz,
                             tile_positions_m, element_offsets_m,
                             element_height_m=element_height_m)


__all__ = ["AIRY_HALF_POWER_X", "C_M_S", "HBA_DIPOLE_SPACING_M", "HBA_ELEMENT_HEIGHT_M",
           "airy_fwhm_rad", "airy_power", "array_factor", "azel_to_enu",
           "dipole_element_power", "enu_to_azel", "gaussian_fwhm_rad", "gaussian_power",
           "generated_hba_layout", "hba_station_power", "hba_station_power_azel",
           "hba_station_voltage", "hba_tile_offsets", "lofar_station_layout"]
