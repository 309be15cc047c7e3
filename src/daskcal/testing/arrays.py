"""Synthetic array layouts: a LOFAR-HBA-like array and a VLA-like Y.

Both are *like* the real instruments (site, station names, sizes, layout style) but
the positions are synthetic: deterministic functions of the arguments and ``seed``,
not survey coordinates. Positions are built as local east/north/up offsets about the
real site and converted to ITRF with astropy's ``EarthLocation.from_geodetic``.

LOFAR HBA
    Reference: the superterp centre near CS002 (52.9151 N, 6.8698 E, 49 m). The six
    superterp stations (CS002-CS007) have their twelve HBA "ears" on a 130 m ring; the
    other core stations are scattered in an annulus from 0.35 to 1.9 km (centres at
    least 200 m apart), each split in two ears 130 m apart (``CS001HBA0``,
    ``CS001HBA1``, 30.75 m). Remote stations
    (``RS106HBA``, 41.05 m) at 3.5-60 km and international stations (``DE601HBA``,
    56.5 m) at their approximate real towns, 250-1100 km away. SEFD per station at
    150 MHz (van Haarlem et al. 2013, A&A 556, A2, roughly): 3000 Jy per core ear,
    1500 Jy remote, 750 Jy international.
VLA
    Site 34.0784 N, 107.6184 W, 2124 m. Three arms at azimuths 355, 115 and 235 degrees
    with nine 25 m antennas each at ``r_n = L ((n + 0.5) / 9.5) ** 1.716``; the arm
    length ``L`` sets the configuration: A 21 km, B 6.4 km, C 1.95 km, D 0.6 km (maximum
    baselines about 36, 11, 3.4 and 1.0 km). The ``seed`` chooses which of ea01-ea28 is
    out of the array and which antenna sits on which pad. SEFD 420 Jy (L band).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import xarray as xr

from daskcal import DaskcalError
from daskcal.data.geometry import enu_matrix, geodetic_to_itrf, itrf_to_geodetic


class LayoutError(DaskcalError, ValueError):
    """An array layout request that cannot be met."""


@dataclass(frozen=True, eq=False)
class ArrayLayout:
    """Antenna positions and properties of an array.

    Attributes
    ----------
    telescope_name : str
    names : ndarray of str, shape (n_ant,)
        Antenna (station) names.
    station_names : ndarray of str, shape (n_ant,)
        Pad / field names.
    itrf_m : ndarray, shape (n_ant, 3)
        Geocentric ITRF positions, metres.
    diameter_m : ndarray, shape (n_ant,)
        Dish or station diameter, metres.
    sefd_jy : ndarray, shape (n_ant,)
        System equivalent flux density per polarisation, Jy.
    feed : {"linear", "circular"}
    reference_itrf_m : ndarray, shape (3,)
        The array reference position (site centre).
    """

    telescope_name: str
    names: np.ndarray
    station_names: np.ndarray
    itrf_m: np.ndarray
    diameter_m: np.ndarray
    sefd_jy: np.ndarray
    feed: Literal["linear", "circular"]
    reference_itrf_m: np.ndarray

    @property
    def n_ant(self) -> int:
        """Number of antennas."""
        return int(self.names.size)

    @property
    def polarization_type(self) -> tuple[str, str]:
        """Receptor names: ``("X", "Y")`` or ``("R", "L")``."""
        return ("X", "Y") if self.feed == "linear" else ("R", "L")

    def enu_m(self) -> np.ndarray:
        """East/north/up offsets from the reference position, shape (n_ant, 3), metres."""
        lon, lat, _ = itrf_to_geodetic(self.reference_itrf_m)
        rot = enu_matrix(np.radians(lon), np.radians(lat))
        return (self.itrf_m - self.reference_itrf_m) @ rot.T

    def baseline_lengths_m(self) -> np.ndarray:
        """Lengths of all baselines ``p < q`` (row-major order), metres."""
        a1, a2 = np.triu_indices(self.n_ant, k=1)
        return np.linalg.norm(self.itrf_m[a1] - self.itrf_m[a2], axis=1)

    def select(self, index) -> ArrayLayout:
        """The antennas picked by a boolean mask or index array."""
        return ArrayLayout(self.telescope_name, self.names[index], self.station_names[index],
                           self.itrf_m[index], self.diameter_m[index], self.sefd_jy[index],
                           self.feed, self.reference_itrf_m)

    def to_antenna_xds(self) -> xr.Dataset:
        """The antenna dataset of the data model (:func:`daskcal.data.model.make_antenna_xds`)."""
        from daskcal.data.model import make_antenna_xds

        xds = make_antenna_xds(self.names, self.itrf_m, self.diameter_m,
                               telescope_name=self.telescope_name,
                               station_names=self.station_names,
                               polarization_type=self.polarization_type)
        xds["SEFD"] = ("antenna_name", self.sefd_jy, {"units": "Jy", "type": "quantity"})
        return xds


def _to_itrf(enu_m: np.ndarray, lon_deg: float, lat_deg: float, h_m: float) -> np.ndarray:
    """Local offsets about a geodetic site to ITRF, exactly via geodetic coordinates."""
    ref = geodetic_to_itrf(lon_deg, lat_deg, h_m)
    # first order: rotate the offsets; then snap each antenna onto the local
    # ellipsoidal height of its offset (curvature matters for 50+ km stations)
    approx = enu_m @ enu_matrix(np.radians(lon_deg), np.radians(lat_deg)) + ref
    lon, lat, _ = itrf_to_geodetic(approx)
    return geodetic_to_itrf(lon, lat, h_m + enu_m[:, 2])


# --------------------------------------------------------------------------- LOFAR

LOFAR_SITE = (6.869838, 52.915123, 49.3)  # lon deg, lat deg, height m (near CS002)

#: Core stations: the superterp first, then the rest of the core.
LOFAR_CORE = ("CS002", "CS003", "CS004", "CS005", "CS006", "CS007", "CS001", "CS011", "CS013",
              "CS017", "CS021", "CS024", "CS026", "CS028", "CS030", "CS031", "CS032", "CS101",
              "CS103", "CS201", "CS301", "CS302", "CS401", "CS501")
#: Remote stations: (name, distance km, azimuth deg), nearest first (synthetic positions).
LOFAR_REMOTE = (("RS503", 3.5, 235.0), ("RS305", 5.5, 95.0), ("RS406", 6.5, 185.0),
                ("RS205", 7.5, 10.0), ("RS306", 8.0, 100.0), ("RS106", 8.5, 262.0),
                ("RS407", 11.0, 190.0), ("RS307", 14.5, 105.0), ("RS508", 22.0, 250.0),
                ("RS208", 30.0, 25.0), ("RS409", 32.0, 200.0), ("RS310", 45.0, 95.0),
                ("RS509", 55.0, 255.0), ("RS210", 60.0, 40.0))
#: International stations: (name, lon deg, lat deg, height m), near their real towns.
LOFAR_INTERNATIONAL = (("DE601", 6.883, 50.525, 350.0), ("DE605", 6.424, 50.897, 150.0),
                       ("DE609", 9.970, 53.700, 80.0), ("DE603", 11.711, 50.979, 350.0),
                       ("DE602", 11.287, 48.501, 500.0), ("DE604", 13.016, 52.438, 80.0),
                       ("FR606", 2.193, 47.376, 200.0), ("UK608", -1.434, 51.144, 180.0),
                       ("SE607", 11.930, 57.399, 60.0), ("PL610", 17.074, 52.276, 120.0),
                       ("PL612", 20.586, 53.593, 200.0), ("PL611", 20.490, 49.965, 350.0),
                       ("IE613", -7.922, 53.095, 100.0), ("LV614", 21.855, 57.554, 50.0))


def lofar_hba_layout(
    n_core: int = 24,
    n_remote: int = 14,
    n_international: int = 0,
    *,
    split_core: bool = True,
    seed: int = 0,
) -> ArrayLayout:
    """A LOFAR-HBA-like layout (see the module notes).

    Parameters
    ----------
    n_core : int
        Core stations, 0-24 (the first six are the superterp); each gives two HBA ears
        when ``split_core``.
    n_remote : int
        Remote stations, 0-14, nearest first.
    n_international : int
        International stations, 0-14.
    split_core : bool
        Core stations as two ears (``CS001HBA0``/``CS001HBA1``, 30.75 m) or one
        joined station (``CS001HBA``, 43.5 m).
    seed : int
        Seed of the scattered core positions, ear orientations and remote jitter.

    Returns
    -------
    ArrayLayout
        Antennas ordered core, remote, international; linear feeds.
    """
    for name, val, hi in (("n_core", n_core, len(LOFAR_CORE)), ("n_remote", n_remote, 14),
                          ("n_international", n_international, 14)):
        if not 0 <= val <= hi:
            raise LayoutError(f"{name}={val} is outside 0..{hi}")
    if n_core + n_remote + n_international < 2:
        raise LayoutError("a LOFAR layout needs at least two stations")
    rng = np.random.default_rng(np.random.SeedSequence([seed, 0x10FA]))
    lon0, lat0, h0 = LOFAR_SITE
    # core: the superterp's 12 ears on a 130 m ring (consecutive ears = one station),
    # then station centres rejection-sampled in an annulus, ears 130 m apart
    ring = np.radians(np.arange(12) * 30.0 + 15.0)
    superterp = np.stack([130.0 * np.sin(ring), 130.0 * np.cos(ring)], axis=1).reshape(6, 2, 2)
    centres: list[tuple[float, float]] = [tuple(x) for x in superterp.mean(axis=1)]
    while len(centres) < len(LOFAR_CORE):
        r = np.sqrt(rng.uniform(350.0**2, 1900.0**2))
        a = rng.uniform(0, 2 * np.pi)
        cand = (r * np.sin(a), r * np.cos(a))
        if all(np.hypot(cand[0] - x, cand[1] - y) >= 200.0 for x, y in centres):
            centres.append(cand)
    ear_angle = rng.uniform(0, np.pi, len(LOFAR_CORE))
    remote_jitter = rng.normal(0.0, 0.03, (len(LOFAR_REMOTE), 2))
    names, enu, diam, sefd = [], [], [], []
    for k in range(n_core):
        e, n = centres[k]
        if split_core:
            if k < 6:
                ears = superterp[k]
            else:
                de, dn = 65.0 * np.sin(ear_angle[k]), 65.0 * np.cos(ear_angle[k])
                ears = np.array([(e - de, n - dn), (e + de, n + dn)])
            for ear, (ee, nn) in zip(("HBA0", "HBA1"), ears, strict=True):
                names.append(LOFAR_CORE[k] + ear)
                enu.append((ee, nn, 0.0))
                diam.append(30.75)
                sefd.append(3000.0)
        else:
            names.append(LOFAR_CORE[k] + "HBA")
            enu.append((e, n, 0.0))
            diam.append(43.5)
            sefd.append(1500.0)
    for k in range(n_remote):
        name, dist_km, az = LOFAR_REMOTE[k]
        d = dist_km * 1e3 * (1.0 + remote_jitter[k, 0])
        a = np.radians(az) + remote_jitter[k, 1]
        names.append(name + "HBA")
        enu.append((d * np.sin(a), d * np.cos(a), 0.0))
        diam.append(41.05)
        sefd.append(1500.0)
    stations = [n[:5] for n in names]
    xyz = [_to_itrf(np.asarray(enu, dtype=np.float64).reshape(-1, 3), lon0, lat0, h0)]
    for k in range(n_international):
        name, lon, lat, h = LOFAR_INTERNATIONAL[k]
        names.append(name + "HBA")
        stations.append(name)
        diam.append(56.5)
        sefd.append(750.0)
        xyz.append(geodetic_to_itrf(lon, lat, h).reshape(1, 3))
    return ArrayLayout("LOFAR", np.array(names), np.array(stations), np.concatenate(xyz),
                       np.array(diam), np.array(sefd), "linear",
                       geodetic_to_itrf(lon0, lat0, h0))


# --------------------------------------------------------------------------- VLA

VLA_SITE = (-107.6184, 34.0784, 2124.0)
#: Arm length (km) of each configuration.
VLA_ARM_KM = {"A": 21.0, "B": 6.4, "C": 1.95, "D": 0.6}
_VLA_ARMS = (("N", 355.0), ("E", 115.0), ("W", 235.0))


def vla_layout(configuration: Literal["A", "B", "C", "D"] = "D", *, seed: int = 0) -> ArrayLayout:
    """A VLA-like Y of 27 antennas of 25 m (see the module notes).

    Parameters
    ----------
    configuration : {"A", "B", "C", "D"}
        Sets the arm length (:data:`VLA_ARM_KM`).
    seed : int
        Chooses the antenna out of the array and the antenna-to-pad assignment.

    Returns
    -------
    ArrayLayout
        Antennas ``eaNN`` in increasing number; pads ``N01..N09, E01.., W01..``;
        circular feeds.
    """
    if configuration not in VLA_ARM_KM:
        raise LayoutError(f"VLA configuration {configuration!r} is not one of A, B, C, D")
    arm_m = VLA_ARM_KM[configuration] * 1e3
    rng = np.random.default_rng(np.random.SeedSequence([seed, 0x0F1A]))
    numbers = np.sort(rng.permutation(np.arange(1, 29))[:27])
    pads, enu = [], []
    for arm, az in _VLA_ARMS:
        for n in range(1, 10):
            r = arm_m * ((n + 0.5) / 9.5) ** 1.716
            pads.append(f"{arm}{n:02d}")
            enu.append((r * np.sin(np.radians(az)), r * np.cos(np.radians(az)), 0.0))
    order = rng.permutation(27)  # antenna k sits on pad order[k]
    lon0, lat0, h0 = VLA_SITE
    xyz = _to_itrf(np.asarray(enu)[order], lon0, lat0, h0)
    return ArrayLayout("VLA", np.array([f"ea{k:02d}" for k in numbers]),
                       np.asarray(pads)[order], xyz, np.full(27, 25.0), np.full(27, 420.0),
                       "circular", geodetic_to_itrf(lon0, lat0, h0))


def make_layout(kind: Literal["lofar", "vla"], **kwargs) -> ArrayLayout:
    """Dispatch to :func:`lofar_hba_layout` or :func:`vla_layout`."""
    if kind == "lofar":
        return lofar_hba_layout(**kwargs)
    if kind == "vla":
        return vla_layout(**kwargs)
    raise LayoutError(f"array kind {kind!r} is not 'lofar' or 'vla'")
