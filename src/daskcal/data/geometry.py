"""Interferometer geometry: ITRF and local frames, Earth rotation, UVW, direction cosines.

Conventions (used throughout daskcal)
-------------------------------------
* Positions are geocentric ITRF cartesian coordinates, metres.
* Times are unix seconds in the UTC scale (as in :mod:`daskcal.data.model`).
* **UVW** are J2000 baseline coordinates in metres, ``uvw = X(antenna1) - X(antenna2)``
  projected on the (u, v, w) axes of the phase centre: ``w`` towards the phase centre,
  ``v`` towards the north celestial pole (of J2000), ``u`` towards the east. This is the
  convention of the Measurement Sets we have checked (CASA ``importuvfits``, MWA
  ``cotter``) and of the RIME (``u_pq = u_p - u_q``); with it a source at direction
  cosines ``(l, m, n)`` contributes ``S exp(+2 pi i (u l + v m + w (n - 1)) f / c)``
  (the sign CASA's ``ft`` predicts with these UVW).
* **How UVW are computed.** The ITRF baseline is rotated into the GCRS with the IAU
  2006/2000A celestial-to-terrestrial matrix (ERFA ``c2t06a``: polar motion, Earth
  rotation angle from UT1, CIO-based precession-nutation), then into the mean equator
  and equinox of J2000 with the ERFA frame bias (``bp06``), and projected on the (u, v,
  w) axes of the phase centre. With ``aberration=True`` (the default) the ``w`` axis
  points at the phase centre *as seen from the moving Earth* (annual aberration, up to
  20.5 arcsec), which is where the wavefront comes from and what correlators and CASA
  track; the axes are otherwise those of J2000. We do **not** use the classical
  ``(H, delta)`` formula with the apparent hour angle: it yields UVW in the frame of
  date, rotated from J2000 by precession (about 0.3 degrees in 2024, i.e. 5 m on a 1 km
  baseline). Diurnal aberration (0.3 arcsec), light deflection and refraction are
  neglected.
* **Hour angles** (:func:`hour_angle_declination`) are *apparent* and CIO/TIO based:
  the angle between the local meridian of the ITRS and the direction of the source of
  date (precessed, nutated, optionally aberrated), not a J2000 hour angle.
* Direction cosines ``(l, m, n)`` of a source relative to a phase centre: ``l`` towards
  increasing RA (east), ``m`` towards the north, ``n = sqrt(1 - l^2 - m^2)``.

Earth orientation (UT1-UTC, polar motion) comes from astropy's bundled IERS tables,
with downloads switched off inside the functions that need them (never at import).
"""

from __future__ import annotations

import numpy as np

from daskcal import DaskcalError

#: Speed of light in vacuum, m/s.
C_M_S: float = 299_792_458.0


class GeometryError(DaskcalError, ValueError):
    """Geometry inputs that make no sense (shapes, times outside the IERS tables)."""


# ----------------------------------------------------------------------------- frames


def geodetic_to_itrf(lon_deg, lat_deg, height_m) -> np.ndarray:
    """Geodetic (WGS84) longitude, latitude and height to geocentric ITRF positions.

    Parameters
    ----------
    lon_deg, lat_deg : float or array, shape (n,)
        East longitude and geodetic latitude, degrees.
    height_m : float or array, shape (n,)
        Height above the WGS84 ellipsoid, metres.

    Returns
    -------
    ndarray, shape (n, 3) (or (3,) for scalar input)
        ITRF x, y, z, metres.
    """
    import astropy.units as u
    from astropy.coordinates import EarthLocation

    loc = EarthLocation.from_geodetic(np.asarray(lon_deg) * u.deg, np.asarray(lat_deg) * u.deg,
                                      np.asarray(height_m) * u.m, ellipsoid="WGS84")
    return np.stack([loc.x.to_value(u.m), loc.y.to_value(u.m), loc.z.to_value(u.m)], axis=-1)


def itrf_to_geodetic(xyz_m) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Geocentric ITRF positions (..., 3) in metres to WGS84 (lon_deg, lat_deg, height_m)."""
    import astropy.units as u
    from astropy.coordinates import EarthLocation

    xyz = np.asarray(xyz_m, dtype=np.float64)
    loc = EarthLocation.from_geocentric(xyz[..., 0], xyz[..., 1], xyz[..., 2], unit=u.m)
    geo = loc.to_geodetic("WGS84")
    return geo.lon.to_value(u.deg), geo.lat.to_value(u.deg), geo.height.to_value(u.m)


def enu_matrix(lon_rad: float, lat_rad: float) -> np.ndarray:
    """Rotation from ITRF offsets to local (east, north, up) at a geodetic position.

    Returns
    -------
    ndarray, shape (3, 3)
        Rows are the east, north and up unit vectors in ITRF: ``enu = R @ dxyz``.
    """
    sl, cl = np.sin(lon_rad), np.cos(lon_rad)
    sp, cp = np.sin(lat_rad), np.cos(lat_rad)
    return np.array([[-sl, cl, 0.0], [-sp * cl, -sp * sl, cp], [cp * cl, cp * sl, sp]])


def itrf_to_enu(xyz_m, ref_xyz_m) -> np.ndarray:
    """ITRF positions (n, 3) to local east/north/up offsets (n, 3) about ``ref_xyz_m`` (3,)."""
    ref = np.asarray(ref_xyz_m, dtype=np.float64)
    lon, lat, _ = itrf_to_geodetic(ref)
    return (np.asarray(xyz_m, dtype=np.float64) - ref) @ enu_matrix(np.radians(lon),
                                                                    np.radians(lat)).T


def enu_to_itrf(enu_m, ref_xyz_m) -> np.ndarray:
    """Local east/north/up offsets (n, 3) about ``ref_xyz_m`` (3,) to ITRF positions (n, 3)."""
    ref = np.asarray(ref_xyz_m, dtype=np.float64)
    lon, lat, _ = itrf_to_geodetic(ref)
    return np.asarray(enu_m, dtype=np.float64) @ enu_matrix(np.radians(lon), np.radians(lat)) + ref


# ----------------------------------------------------------------------------- time


def _astropy_time(time_s):
    """astropy ``Time`` (UTC) of unix seconds, with IERS downloads switched off."""
    from astropy.time import Time
    from astropy.utils import iers

    iers.conf.auto_download = False
    t = np.atleast_1d(np.asarray(time_s, dtype=np.float64))
    day = np.floor(t / 86400.0)
    return Time(day + 40587.0, (t - day * 86400.0) / 86400.0, format="mjd", scale="utc")


def _earth_orientation(t):
    """(tt, ut1, xp_rad, yp_rad) of an astropy Time array, from the bundled IERS table.

    Raises :class:`GeometryError` for times outside the table (astropy would otherwise
    extrapolate silently when downloads are off).
    """
    from astropy.utils import iers

    table = iers.earth_orientation_table.get()
    dut1, status_ut1 = table.ut1_utc(t, return_status=True)
    xp, yp, status_pm = table.pm_xy(t, return_status=True)
    if np.any(np.asarray(status_ut1) < 0) or np.any(np.asarray(status_pm) < 0):
        mjd = np.asarray(table["MJD"].value)
        raise GeometryError(
            f"times MJD {np.min(t.mjd):.1f} .. {np.max(t.mjd):.1f} (UTC) are outside the bundled "
            f"IERS tables (MJD {mjd[0]:.0f} .. {mjd[-1]:.0f}); downloads are off")
    t = t.copy()
    t.delta_ut1_utc = dut1
    return t.tt, t.ut1, xp.to_value("rad"), yp.to_value("rad")


def celestial_to_terrestrial(time_s) -> np.ndarray:
    """Rotation matrices from J2000 (FK5 mean equator and equinox) to ITRF.

    ``x_itrf = R[t] @ x_j2000``; the transpose takes ITRF vectors to J2000. Includes
    the frame bias, IAU 2006/2000A precession-nutation, Earth rotation (UT1) and
    polar motion from astropy's bundled IERS table.

    Parameters
    ----------
    time_s : array, shape (n_time,)
        Unix seconds, UTC.

    Returns
    -------
    ndarray, shape (n_time, 3, 3)
    """
    import erfa

    tt, ut1, xp, yp = _earth_orientation(_astropy_time(time_s))
    c2t = erfa.c2t06a(tt.jd1, tt.jd2, ut1.jd1, ut1.jd2, xp, yp)  # GCRS -> ITRS
    rb, _, _ = erfa.bp06(2451545.0, 0.0)  # frame bias: x_j2000 = rb @ x_gcrs
    return np.einsum("nij,kj->nik", c2t, rb)  # c2t @ rb.T


def local_sidereal_time(time_s, lon_rad: float, kind: str = "apparent") -> np.ndarray:
    """Local sidereal time (radians in [0, 2 pi)) at east longitude ``lon_rad``.

    ``kind`` is ``"apparent"`` (Greenwich apparent sidereal time, IAU 2006/2000A, plus
    longitude) or ``"mean"``. Offline: uses the bundled IERS UT1-UTC.
    """
    if kind not in ("apparent", "mean"):
        raise GeometryError(f"sidereal time kind {kind!r} is not 'apparent' or 'mean'")
    import astropy.units as u

    t = _astropy_time(time_s)
    _earth_orientation(t)  # range check with a clear message
    return t.sidereal_time(kind, longitude=float(lon_rad) * u.rad).to_value(u.rad)


# ----------------------------------------------------------------------------- directions


def radec_to_unit(ra_rad, dec_rad) -> np.ndarray:
    """Unit vectors (..., 3) of directions (RA, Dec) in radians."""
    ra, dec = np.asarray(ra_rad, dtype=np.float64), np.asarray(dec_rad, dtype=np.float64)
    cd = np.cos(dec)
    return np.stack([cd * np.cos(ra), cd * np.sin(ra), np.sin(dec)], axis=-1)


def unit_to_radec(vec) -> tuple[np.ndarray, np.ndarray]:
    """(RA in [0, 2 pi), Dec) in radians of vectors (..., 3)."""
    v = np.asarray(vec, dtype=np.float64)
    v = v / np.linalg.norm(v, axis=-1, keepdims=True)
    return np.mod(np.arctan2(v[..., 1], v[..., 0]), 2 * np.pi), np.arcsin(np.clip(v[..., 2], -1, 1))


def uvw_axes(ra_rad, dec_rad) -> np.ndarray:
    """The (u, v, w) unit vectors of a phase centre, in its equatorial frame.

    Returns
    -------
    ndarray, shape (..., 3, 3)
        Rows u (east), v (north), w (towards the direction).
    """
    ra, dec = np.asarray(ra_rad, dtype=np.float64), np.asarray(dec_rad, dtype=np.float64)
    sa, ca, sd, cd = np.sin(ra), np.cos(ra), np.sin(dec), np.cos(dec)
    zero = np.zeros_like(sa)
    u = np.stack([-sa, ca, zero], axis=-1)
    v = np.stack([-sd * ca, -sd * sa, cd], axis=-1)
    w = np.stack([cd * ca, cd * sa, sd], axis=-1)
    return np.stack([u, v, w], axis=-2)


def aberrated_direction(time_s, ra_rad, dec_rad) -> tuple[np.ndarray, np.ndarray]:
    """Apply annual aberration to J2000 directions as seen from the geocentre.

    Parameters
    ----------
    time_s : array, shape (n_time,)
        Unix seconds, UTC.
    ra_rad, dec_rad : float or array, shape (n_dir,)
        J2000 direction(s), radians.

    Returns
    -------
    ra, dec : ndarray, shape (n_time, n_dir)
        Aberrated directions in the J2000 axes, radians (light deflection neglected).
    """
    import erfa

    t = _astropy_time(time_s).tdb
    pvh, pvb = erfa.epv00(t.jd1, t.jd2)  # Earth heliocentric / barycentric, au and au/day
    vel = pvb["v"] * (erfa.DAU / erfa.DAYSEC / erfa.CMPS)  # units of c, shape (n_time, 3)
    bm1 = np.sqrt(1.0 - np.sum(vel**2, axis=-1))
    sun_dist_au = np.linalg.norm(pvh["p"], axis=-1)
    s = np.atleast_2d(radec_to_unit(ra_rad, dec_rad))  # (n_dir, 3)
    n_t, n_d = vel.shape[0], s.shape[0]
    p = erfa.ab(np.broadcast_to(s[None], (n_t, n_d, 3)), np.broadcast_to(vel[:, None], (n_t, n_d, 3)),
                np.broadcast_to(sun_dist_au[:, None], (n_t, n_d)),
                np.broadcast_to(bm1[:, None], (n_t, n_d)))
    return unit_to_radec(p)


def lmn_of(ra_rad, dec_rad, ra0_rad: float, dec0_rad: float) -> np.ndarray:
    """Direction cosines of directions relative to a phase centre.

    Parameters
    ----------
    ra_rad, dec_rad : array, shape (n,)
        Directions, radians.
    ra0_rad, dec0_rad : float
        Phase centre, radians (same frame).

    Returns
    -------
    ndarray, shape (n, 3)
        ``l`` (east), ``m`` (north), ``n`` (towards the phase centre; negative for
        directions more than 90 degrees away).
    """
    axes = uvw_axes(ra0_rad, dec0_rad)
    return np.atleast_2d(radec_to_unit(ra_rad, dec_rad)) @ axes.T


def radec_of_lm(l, m, ra0_rad: float, dec0_rad: float) -> tuple[np.ndarray, np.ndarray]:
    """Inverse of :func:`lmn_of` for ``l^2 + m^2 <= 1`` (``n >= 0``); radians in and out."""
    l, m = np.asarray(l, dtype=np.float64), np.asarray(m, dtype=np.float64)
    n = np.sqrt(np.clip(1.0 - l * l - m * m, 0.0, None))
    vec = np.stack([l, m, n], axis=-1) @ uvw_axes(ra0_rad, dec0_rad)
    return unit_to_radec(vec)


def angular_separation(ra1, dec1, ra2, dec2) -> np.ndarray:
    """Great-circle distance in radians (Vincenty formula; broadcasting)."""
    dra = np.asarray(ra2) - np.asarray(ra1)
    s1, c1, s2, c2 = np.sin(dec1), np.cos(dec1), np.sin(dec2), np.cos(dec2)
    num = np.hypot(c2 * np.sin(dra), c1 * s2 - s1 * c2 * np.cos(dra))
    return np.arctan2(num, s1 * s2 + c1 * c2 * np.cos(dra))


# ----------------------------------------------------------------------------- uvw


def antenna_uvw(time_s, antenna_itrf_m, phase_centre_rad, *, aberration: bool = True) -> np.ndarray:
    """Per-antenna UVW: positions (relative to their mean) projected on the uvw axes.

    Parameters
    ----------
    time_s : array, shape (n_time,)
        Unix seconds, UTC.
    antenna_itrf_m : array, shape (n_ant, 3)
        Geocentric ITRF positions, metres.
    phase_centre_rad : array, shape (2,)
        J2000 (RA, Dec) of the phase centre, radians.
    aberration : bool
        Point ``w`` at the aberrated phase centre (see the module notes).

    Returns
    -------
    ndarray, shape (n_time, n_ant, 3), float64
        ``uvw_p``; baseline ``(p, q)`` has ``uvw_p - uvw_q``.
    """
    time_s = np.atleast_1d(np.asarray(time_s, dtype=np.float64))
    pos = np.asarray(antenna_itrf_m, dtype=np.float64)
    if pos.ndim != 2 or pos.shape[1] != 3:
        raise GeometryError(f"antenna positions have shape {pos.shape}, expected (n_ant, 3)")
    pc = np.asarray(phase_centre_rad, dtype=np.float64).reshape(-1)
    if pc.size != 2:
        raise GeometryError(f"phase centre has {pc.size} values, expected (ra, dec)")
    if time_s.size == 0:
        return np.zeros((0, pos.shape[0], 3))
    rot = celestial_to_terrestrial(time_s)  # (n_time, 3, 3): itrf = rot @ j2000
    if aberration:
        ra, dec = aberrated_direction(time_s, pc[0], pc[1])
        axes = uvw_axes(ra[:, 0], dec[:, 0])  # (n_time, 3, 3)
    else:
        axes = np.broadcast_to(uvw_axes(pc[0], pc[1]), (time_s.size, 3, 3))
    rel = pos - pos.mean(axis=0)  # keep magnitudes small; differences are unchanged
    # uvw_p[t] = axes[t] @ rot[t].T @ rel_p
    proj = np.einsum("tij,tkj->tik", axes, rot)  # axes @ rot.T, (n_time, 3, 3)
    return np.einsum("tij,pj->tpi", proj, rel)


def baseline_uvw(time_s, antenna_itrf_m, antenna1, antenna2, phase_centre_rad, *,
                 aberration: bool = True) -> np.ndarray:
    """J2000 UVW of baselines, ``X(antenna1) - X(antenna2)`` (see the module notes).

    Parameters
    ----------
    time_s : array, shape (n_time,)
        Unix seconds, UTC (the centroids of the integrations).
    antenna_itrf_m : array, shape (n_ant, 3)
        Geocentric ITRF positions, metres.
    antenna1, antenna2 : array of int, shape (n_bl,)
        Antenna indices of the baselines.
    phase_centre_rad : array, shape (2,)
        J2000 (RA, Dec), radians.
    aberration : bool
        Point ``w`` at the aberrated phase centre.

    Returns
    -------
    ndarray, shape (n_time, n_bl, 3), float64, metres.
    """
    a1, a2 = np.asarray(antenna1, dtype=np.intp), np.asarray(antenna2, dtype=np.intp)
    if a1.shape != a2.shape or a1.ndim != 1:
        raise GeometryError("antenna1 and antenna2 must be 1-d arrays of the same length")
    n_ant = np.asarray(antenna_itrf_m).shape[0]
    if a1.size and (min(a1.min(), a2.min()) < 0 or max(a1.max(), a2.max()) >= n_ant):
        raise GeometryError(f"antenna indices outside 0..{n_ant - 1}")
    ant = antenna_uvw(time_s, antenna_itrf_m, phase_centre_rad, aberration=aberration)
    return ant[:, a1, :] - ant[:, a2, :]


def hour_angle_declination(time_s, ra_rad, dec_rad, site_itrf_m, *,
                           aberration: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Apparent local hour angle and declination of date of J2000 directions.

    Parameters
    ----------
    time_s : array, shape (n_time,)
    ra_rad, dec_rad : float or array, shape (n_dir,)
        J2000 directions.
    site_itrf_m : array, shape (3,)
        Observer position (its ITRS longitude defines the local meridian).

    Returns
    -------
    ha, dec : ndarray, shape (n_time, n_dir), radians
        Hour angle in (-pi, pi], west positive; declination relative to the ITRS pole.
    """
    time_s = np.atleast_1d(np.asarray(time_s, dtype=np.float64))
    if aberration:
        ra, dec = aberrated_direction(time_s, ra_rad, dec_rad)
        s = radec_to_unit(ra, dec)  # (n_time, n_dir, 3)
    else:
        s = np.broadcast_to(np.atleast_2d(radec_to_unit(ra_rad, dec_rad))[None],
                            (time_s.size, np.size(ra_rad), 3))
    rot = celestial_to_terrestrial(time_s)
    s_itrf = np.einsum("tij,tdj->tdi", rot, s)
    site = np.asarray(site_itrf_m, dtype=np.float64)
    lon = np.arctan2(site[1], site[0])
    ha = lon - np.arctan2(s_itrf[..., 1], s_itrf[..., 0])
    ha = np.mod(ha + np.pi, 2 * np.pi) - np.pi
    return ha, np.arcsin(np.clip(s_itrf[..., 2], -1.0, 1.0))


def elevation_azimuth(time_s, ra_rad, dec_rad, site_itrf_m, *,
                      aberration: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Geometric elevation and azimuth (north through east) of J2000 directions.

    No refraction, diurnal aberration or parallax; good to about an arcsecond, which is
    plenty for beams and horizons.

    Returns
    -------
    el, az : ndarray, shape (n_time, n_dir), radians
    """
    time_s = np.atleast_1d(np.asarray(time_s, dtype=np.float64))
    if aberration:
        ra, dec = aberrated_direction(time_s, ra_rad, dec_rad)
        s = radec_to_unit(ra, dec)
    else:
        s = np.broadcast_to(np.atleast_2d(radec_to_unit(ra_rad, dec_rad))[None],
                            (time_s.size, np.size(ra_rad), 3))
    rot = celestial_to_terrestrial(time_s)
    site = np.asarray(site_itrf_m, dtype=np.float64)
    lon, lat, _ = itrf_to_geodetic(site)
    enu = enu_matrix(np.radians(lon), np.radians(lat))
    local = np.einsum("ij,tjk,tdk->tdi", enu, rot, s)
    el = np.arcsin(np.clip(local[..., 2], -1.0, 1.0))
    az = np.mod(np.arctan2(local[..., 0], local[..., 1]), 2 * np.pi)
    return el, az
