"""AIPS tables and header conventions of UVFITS files (AIPS Memo 117), for :mod:`daskcal.data.uvfits`.

Everything here is small metadata read eagerly with :mod:`astropy.io.fits`:
the antenna (``AIPS AN``), source (``AIPS SU``) and frequency (``AIPS FQ``)
tables, the Stokes axis codes and the time system of the ``DATE`` parameters.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from daskcal import DaskcalError

#: Speed of light, m/s (UVFITS ``UU``/``VV``/``WW`` are light travel times in seconds).
C_M_PER_S = 299_792_458.0
#: Julian date of the unix epoch (1970-01-01T00:00:00 UTC).
JD_UNIX_EPOCH = 2440587.5
SECONDS_PER_DAY = 86400.0

#: AIPS Stokes codes of the ``STOKES`` axis.
AIPS_STOKES: dict[int, str] = {
    1: "I", 2: "Q", 3: "U", 4: "V",
    -1: "RR", -2: "LL", -3: "RL", -4: "LR",
    -5: "XX", -6: "YY", -7: "XY", -8: "YX",
}
#: The order partitions use: parallel hands outside, cross hands inside (MS convention).
CANONICAL_POL_ORDER: tuple[str, ...] = (
    "RR", "RL", "LR", "LL", "XX", "XY", "YX", "YY", "I", "Q", "U", "V")
#: Correlation of the swapped baseline: V_qp^{ab} = conj(V_pq^{ba}).
SWAPPED_POL: dict[str, str] = {"RL": "LR", "LR": "RL", "XY": "YX", "YX": "XY"}

#: AIPS ``MNTSTA`` codes.
AIPS_MOUNTS: dict[int, str] = {
    0: "ALT-AZ", 1: "EQUATORIAL", 2: "ORBITING", 3: "X-Y",
    4: "ALT-AZ+NASMYTH-R", 5: "ALT-AZ+NASMYTH-L", 6: "BIZARRE",
}

#: Dish diameters (m) used when the AN table has no ``DIAMETER`` column.
KNOWN_DISH_DIAMETER_M: dict[str, float] = {
    "VLA": 25.0, "EVLA": 25.0, "VLBA": 25.0, "ATCA": 22.0, "GMRT": 45.0,
    "WSRT": 25.0, "MEERKAT": 13.5,
}

#: ``SPECSYS`` values -> xradio frequency frames.
SPECSYS_FRAMES: dict[str, str] = {
    "TOPOCENT": "TOPO", "TOPO": "TOPO", "LSRK": "LSRK", "LSRD": "LSRD",
    "BARYCENT": "BARY", "BARY": "BARY", "GEOCENTR": "GEO", "GEO": "GEO",
    "GALACTOC": "GALACTO", "LOCALGRP": "LGROUP", "CMBDIPOL": "CMB", "SOURCE": "REST",
}


class UVFITSError(DaskcalError, ValueError):
    """A UVFITS file that cannot be read (the message names the file)."""


@dataclass(frozen=True)
class AntennaTable:
    """Antennas of the ``AIPS AN`` table.

    ``positions_itrf_m`` has shape (n_ant, 3); ``numbers`` are the antenna
    numbers (``NOSTA``) that baselines refer to.
    """

    names: np.ndarray
    numbers: np.ndarray
    positions_itrf_m: np.ndarray
    diameters_m: np.ndarray
    mount: str
    polarization_type: tuple[str, str] | None
    telescope_name: str
    time_system: str
    frame: str


@dataclass(frozen=True)
class SourceTable:
    """Sources: ``ids`` (the ``SOURCE`` parameter's values), names, J2000 RA/Dec in radians."""

    ids: np.ndarray
    names: list[str]
    ra_rad: np.ndarray
    dec_rad: np.ndarray
    frame: str


@dataclass(frozen=True)
class FrequencyTable:
    """Frequency setups: for each ``FREQSEL`` id, per-IF offsets and channel widths (Hz)."""

    freqsel: np.ndarray
    if_freq_hz: np.ndarray
    ch_width_hz: np.ndarray


def clean_string(value) -> str:
    """A FITS string cell as text: cut at the first NUL, stripped."""
    if isinstance(value, bytes):
        value = value.decode("ascii", errors="replace")
    return str(value).split("\x00", 1)[0].strip()


def _columns(hdu) -> dict[str, str]:
    return {name.strip().upper(): name for name in hdu.columns.names}


def _column(hdu, cols: dict[str, str], key: str, name: str, *, required: bool = True):
    if key not in cols:
        if required:
            raise UVFITSError(f"{name}: {hdu.name} table has no {key!r} column")
        return None
    return np.asarray(hdu.data[cols[key]])


def find_table(hdul, extname: str, version: int = 1):
    """The HDU named ``extname`` (``EXTVER`` ``version`` if several), or None."""
    found = [h for h in hdul[1:] if h.name.strip().upper() == extname]
    for hdu in found:
        if int(hdu.header.get("EXTVER", 1)) == version:
            return hdu
    return found[0] if found else None


def _rotate_z(xyz: np.ndarray, angle_rad: float) -> np.ndarray:
    c, s = np.cos(angle_rad), np.sin(angle_rad)
    x, y, z = xyz[:, 0], xyz[:, 1], xyz[:, 2]
    return np.stack([c * x - s * y, s * x + c * y, z], axis=1)


def read_antenna_table(hdul, name: str, telescope_hint: str, stokes: Sequence[str]) -> AntennaTable:
    """Read the ``AIPS AN`` table.

    Positions become geocentric ITRF (metres): with ``ARRAYX/Y/Z`` = 0 (the
    casacore and VLBI convention) ``STABXYZ`` already are; otherwise
    ``STABXYZ`` are offsets from the array centre in the frame rotated about
    the z axis so that x passes through the array's meridian (AIPS' VLA
    convention, also written by pyuvdata), and are rotated back by the array
    longitude. ``XYZHAND = 'LEFT'`` flips y first.
    """
    hdu = find_table(hdul, "AIPS AN")
    if hdu is None:
        raise UVFITSError(f"{name}: no AIPS AN (antenna) table")
    hdr, cols = hdu.header, _columns(hdu)
    frame = str(hdr.get("FRAME", "ITRF")).strip().upper() or "ITRF"
    if frame not in ("ITRF", "GEOCENTRIC") and set(frame) != {"?"}:
        raise UVFITSError(f"{name}: antenna frame {frame!r} is not supported (only ITRF)")
    raw_names = _column(hdu, cols, "ANNAME", name)
    xyz = np.asarray(_column(hdu, cols, "STABXYZ", name), dtype=np.float64).reshape(-1, 3)
    numbers = _column(hdu, cols, "NOSTA", name, required=False)
    n_ant = xyz.shape[0]
    numbers = (np.arange(1, n_ant + 1) if numbers is None
               else np.asarray(numbers, dtype=np.int64).reshape(n_ant))
    if np.unique(numbers).size != n_ant:
        raise UVFITSError(f"{name}: AIPS AN table repeats antenna numbers (NOSTA)")
    names = [clean_string(v) or str(n) for v, n in zip(raw_names, numbers, strict=True)]
    if len(set(names)) != n_ant:  # make names unique: baselines are labelled by name
        names = [f"{v}_{n}" for v, n in zip(names, numbers, strict=True)]

    if str(hdr.get("XYZHAND", "RIGHT")).strip().upper() == "LEFT":
        xyz = xyz * np.array([1.0, -1.0, 1.0])
    centre = np.array([float(hdr.get(k, 0.0)) for k in ("ARRAYX", "ARRAYY", "ARRAYZ")])
    if np.all(np.abs(centre) < 1.0):
        itrf = xyz
    else:
        itrf = centre + _rotate_z(xyz, np.arctan2(centre[1], centre[0]))

    telescope = telescope_hint or clean_string(hdr.get("ARRNAM", "")) or "unknown"
    diam = _column(hdu, cols, "DIAMETER", name, required=False)
    if diam is not None and np.all(np.asarray(diam, dtype=float) > 0):
        diameters = np.asarray(diam, dtype=np.float64).reshape(n_ant)
    else:
        diameters = np.full(n_ant, KNOWN_DISH_DIAMETER_M.get(telescope.upper(), np.nan))
    mnt = _column(hdu, cols, "MNTSTA", name, required=False)
    mount = "ALT-AZ"
    if mnt is not None and n_ant:
        codes, counts = np.unique(np.asarray(mnt, dtype=np.int64), return_counts=True)
        mount = AIPS_MOUNTS.get(int(codes[np.argmax(counts)]), "ALT-AZ")

    pol_type = None
    a = _column(hdu, cols, "POLTYA", name, required=False)
    b = _column(hdu, cols, "POLTYB", name, required=False)
    if a is not None and b is not None and n_ant:
        pa, pb = clean_string(a[0]).upper(), clean_string(b[0]).upper()
        if pa in ("R", "L", "X", "Y") and pb in ("R", "L", "X", "Y"):
            pol_type = (pa, pb)
    if pol_type is None:
        hands = {c for s in stokes for c in s if c in "RLXY"}
        pol_type = ("R", "L") if hands & {"R", "L"} else ("X", "Y")

    timsys = str(hdr.get("TIMESYS", hdr.get("TIMSYS", "UTC"))).strip().upper() or "UTC"
    return AntennaTable(
        names=np.asarray(names, dtype=str), numbers=numbers, positions_itrf_m=itrf,
        diameters_m=diameters, mount=mount, polarization_type=pol_type,
        telescope_name=telescope, time_system=timsys, frame="ITRF")


def _to_j2000(ra_deg: np.ndarray, dec_deg: np.ndarray, epoch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean positions at ``epoch`` (years; 2000 or 1950) as FK5 J2000 radians."""
    ra = np.deg2rad(np.mod(np.asarray(ra_deg, dtype=np.float64), 360.0))
    dec = np.deg2rad(np.asarray(dec_deg, dtype=np.float64))
    b1950 = np.isclose(np.asarray(epoch, dtype=np.float64), 1950.0)
    if np.any(b1950):
        import astropy.units as u
        from astropy.coordinates import FK4, FK5, SkyCoord

        sky = SkyCoord(ra[b1950] * u.rad, dec[b1950] * u.rad, frame=FK4(equinox="B1950"))
        j2000 = sky.transform_to(FK5(equinox="J2000"))
        ra[b1950] = j2000.ra.rad
        dec[b1950] = j2000.dec.rad
    return ra, dec


def read_source_table(hdul, name: str, header) -> SourceTable:
    """Sources from ``AIPS SU``, or the single source the primary header describes.

    Positions are ``RAEPO``/``DECEPO`` (mean, at ``EPOCH``), converted to FK5
    J2000 when the epoch is 1950; ``RAAPP``/``DECAPP`` only if there are no
    mean positions. Without an SU table the source is ``OBJECT`` at the
    ``RA``/``DEC`` axes' reference values.
    """
    hdu = find_table(hdul, "AIPS SU")
    if hdu is None:
        ra_deg = dec_deg = 0.0
        for k in range(2, int(header.get("NAXIS", 0)) + 1):
            ctype = str(header.get(f"CTYPE{k}", "")).strip().upper()
            if ctype.startswith("RA"):
                ra_deg = float(header.get(f"CRVAL{k}", 0.0))
            elif ctype.startswith("DEC"):
                dec_deg = float(header.get(f"CRVAL{k}", 0.0))
        epoch = float(header.get("EPOCH", header.get("EQUINOX", 2000.0)))
        ra, dec = _to_j2000(np.array([ra_deg]), np.array([dec_deg]), np.array([epoch]))
        obj = clean_string(header.get("OBJECT", "")) or "field_0"
        return SourceTable(np.array([1]), [obj], ra, dec, "fk5")
    cols = _columns(hdu)
    ids = np.asarray(_column(hdu, cols, "ID. NO.", name), dtype=np.int64).reshape(-1)
    names = [clean_string(v) for v in _column(hdu, cols, "SOURCE", name)]
    if "RAEPO" in cols and "DECEPO" in cols:
        ra_deg, dec_deg = _column(hdu, cols, "RAEPO", name), _column(hdu, cols, "DECEPO", name)
        epoch = _column(hdu, cols, "EPOCH", name, required=False)
        epoch = np.full(ids.size, 2000.0) if epoch is None else epoch
    else:
        ra_deg, dec_deg = _column(hdu, cols, "RAAPP", name), _column(hdu, cols, "DECAPP", name)
        epoch = np.full(ids.size, 2000.0)
    ra, dec = _to_j2000(ra_deg, dec_deg, epoch)
    qual = _column(hdu, cols, "QUAL", name, required=False)
    if len(set(names)) != len(names):  # same name, several qualifiers: keep fields distinct
        q = np.zeros(ids.size, np.int64) if qual is None else np.asarray(qual, np.int64)
        names = [f"{n}_{i}" if names.count(n) > 1 else n
                 for n, i in zip(names, q if np.unique(q).size == q.size else ids, strict=True)]
    return SourceTable(ids, names, ra, dec, "fk5")


def read_frequency_table(hdul, name: str, n_if: int, cdelt_hz: float) -> FrequencyTable:
    """IF offsets and channel widths per ``FREQSEL`` id, shapes (n_fq, n_if).

    Without an ``AIPS FQ`` table a single IF is assumed, at the ``FREQ``
    axis with channel width ``CDELT``.
    """
    hdu = find_table(hdul, "AIPS FQ")
    if hdu is None:
        if n_if != 1:
            raise UVFITSError(f"{name}: {n_if} IFs but no AIPS FQ table to place them")
        return FrequencyTable(np.array([1]), np.zeros((1, 1)), np.full((1, 1), cdelt_hz))
    cols = _columns(hdu)
    freqsel = np.asarray(_column(hdu, cols, "FRQSEL", name), dtype=np.int64).reshape(-1)
    n_fq = freqsel.size
    try:
        if_freq = np.asarray(_column(hdu, cols, "IF FREQ", name), np.float64).reshape(n_fq, n_if)
        width = np.asarray(_column(hdu, cols, "CH WIDTH", name), np.float64).reshape(n_fq, n_if)
    except ValueError:
        raise UVFITSError(
            f"{name}: AIPS FQ table does not describe the {n_if} IF(s) of the data") from None
    return FrequencyTable(freqsel, if_freq, width)


def stokes_axis(codes: np.ndarray, name: str) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Correlation names in canonical order, the permutation into it, and the swap map.

    Returns
    -------
    names : list of str
        E.g. ``["RR", "RL", "LR", "LL"]``.
    order : ndarray of int, shape (n_pol,)
        ``data[..., order]`` puts the file's Stokes axis in ``names`` order.
    swap : ndarray of int, shape (n_pol,)
        For a conjugated (antenna-swapped) baseline, ``vals[..., swap]``
        exchanges the cross hands (RL <-> LR, XY <-> YX).
    """
    file_names = []
    for code in np.rint(codes).astype(int):
        if code not in AIPS_STOKES:
            raise UVFITSError(f"{name}: unsupported Stokes code {code} on the STOKES axis")
        file_names.append(AIPS_STOKES[code])
    if len(set(file_names)) != len(file_names):
        raise UVFITSError(f"{name}: STOKES axis repeats a correlation ({', '.join(file_names)})")
    names = sorted(file_names, key=CANONICAL_POL_ORDER.index)
    order = np.array([file_names.index(p) for p in names], dtype=np.int64)
    swap = np.array([names.index(SWAPPED_POL.get(p, p)) if SWAPPED_POL.get(p, p) in names
                     else i for i, p in enumerate(names)], dtype=np.int64)
    return names, order, swap


def dates_to_unix(day_parts: Sequence[np.ndarray | float], time_system: str, name: str) -> np.ndarray:
    """Julian dates given as a sum of parts -> unix seconds (UTC).

    Parameters
    ----------
    day_parts : sequence of float or ndarray of float64, shape (n_row,)
        Parts whose sum is the Julian date, days: the ``PZERO`` offsets and the
        scaled values ``PSCAL * raw`` of every ``DATE`` parameter, kept apart
        so that no precision is lost (each part is split into whole and
        fractional days before summing).
    time_system : str
        ``TIMSYS``/``TIMESYS`` of the AN table: ``UTC`` (also assumed when
        blank), ``IAT``/``TAI`` or ``TT``; TAI and TT are converted to UTC
        with astropy's built-in leap-second table.
    name : str
        File name for error messages.

    Returns
    -------
    ndarray of float64, shape (n_row,)
        Unix seconds, UTC.
    """
    parts = np.broadcast_arrays(*[np.asarray(p, dtype=np.float64) for p in day_parts])
    whole = np.zeros(parts[0].shape)
    frac = np.zeros(parts[0].shape)
    for part in parts:
        w = np.floor(part)
        whole += w
        frac += part - w
    carry = np.floor(frac)
    jd1, jd2 = whole + carry, frac - carry
    scale = {"UTC": "utc", "IAT": "tai", "TAI": "tai", "TT": "tt", "TDT": "tt"}.get(time_system)
    if scale is None:
        raise UVFITSError(f"{name}: time system {time_system!r} is not supported "
                          "(UTC, IAT/TAI or TT)")
    if scale != "utc" and jd1.size:
        from astropy.time import Time

        utc = Time(jd1, jd2, format="jd", scale=scale).utc
        jd1, jd2 = utc.jd1, utc.jd2
    return ((jd1 - JD_UNIX_EPOCH) + jd2) * SECONDS_PER_DAY
