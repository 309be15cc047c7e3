"""daskcal.data.uvfits: our own lazy UVFITS reader.

Synthetic files (written byte by byte here, so every convention is under
test: two-part DATE with PZERO, TAI, conjugated rows, missing samples,
negative weights, several IFs and sources, 2048-form baselines) check the
reader exactly; real files are checked against pyuvdata's reader and
against physics (uvw geometry, calibrator flux ratios).
"""

from __future__ import annotations

import warnings
from pathlib import Path

import dask
import numpy as np
import pytest

from daskcal import DaskcalError
from daskcal.data.schema import check_observation
from daskcal.data.uvfits import UVFITSError, read_uvfits

C = 299_792_458.0
SEC = 1.0 / 86400.0


# --------------------------------------------------------------------------------------------
# a synthetic UVFITS writer (raw bytes: nothing of the reader is reused)
# --------------------------------------------------------------------------------------------

ANT_NUMBERS = [1, 2, 3, 5]
ANT_XYZ = np.array([
    [-1601185.4, -5041977.5, 3554875.9],
    [-1601225.2, -5041980.4, 3554855.7],
    [-1601114.3, -5042023.2, 3554844.9],
    [-1600951.6, -5042125.9, 3554773.0],
])
SOURCES = {1: ("CAL", -157.5, 30.0), 2: ("TARGET", 10.0, -20.0)}
IF_FREQ = [0.0, 8e6]
CH_WIDTH = [1e6, -1e6]  # the second IF is lower sideband
N_CHAN, CRPIX, CRVAL = 5, 3.0, 1.4e9
STOKES_FILE = ["RR", "LL", "RL", "LR"]  # CRVAL -1, CDELT -1
DAY0, FRAC0, STEP = 2459001.0, 0.25, 1.0 / 2048.0  # integration 42.1875 s, exact in float32
TAI_UTC = 37.0  # leap seconds in 2020


def _value(row: int, i_if: int, chan: int, pol: int) -> tuple[float, float]:
    re = 1000.0 * row + 100.0 * i_if + 10.0 * chan + pol
    return re, -0.5 * re


def _table_rows(n_ant_big: bool = False):
    """(integration, source id, antenna number 1, antenna number 2) of each row."""
    numbers = [300, 301, 302, 305] if n_ant_big else ANT_NUMBERS
    pairs = [(numbers[i], numbers[j]) for i in range(4) for j in range(i + 1, 4)]
    rows = []
    for k in range(5):
        src = 1 if k < 2 else 2
        for a1, a2 in pairs:
            if k == 4 and (a1, a2) == (numbers[0], numbers[3]):
                continue  # a missing sample
            if k == 3 and (a1, a2) == (numbers[1], numbers[2]):
                a1, a2 = a2, a1  # stored the other way round: conjugated
            rows.append((k, src, a1, a2))
    return rows, numbers


def write_uvfits(path: Path, *, antenna_params: bool = False, big_numbers: bool = False,
                 timsys: str = "TAI", array_centre: bool = False, truncate: int = 0,
                 stokes_crval: float = -1.0, with_an: bool = True) -> dict:
    """Write a small multi-source, two-IF UVFITS file; return what it holds."""
    from astropy.io import fits

    rows, numbers = _table_rows(big_numbers)
    g = len(rows)
    ptypes = ["UU", "VV", "WW", "DATE", "DATE"]
    ptypes += ["ANTENNA1", "ANTENNA2", "SUBARRAY"] if antenna_params else ["BASELINE"]
    ptypes += ["FREQSEL", "SOURCE", "INTTIM"]
    pzero = {3: DAY0 - 1.0}  # first DATE: PZERO + raw whole days
    shape = (1, 1, 2, N_CHAN, 4, 3)
    dtype = np.dtype([("par", ">f4", (len(ptypes),)), ("data", ">f4", shape)])
    groups = np.zeros(g, dtype=dtype)
    pos = dict(zip(numbers, ANT_XYZ, strict=True))
    truth = {"rows": rows, "numbers": numbers, "uvw_s": [], "date_frac": []}
    for r, (k, src, a1, a2) in enumerate(rows):
        uvw_s = np.float32((pos[a1] - pos[a2]) / C)  # any vector will do; stored as float32
        frac = np.float32(FRAC0 + k * STEP + (1.0 / 65536.0 if (k, r % 6) == (1, 2) else 0.0))
        par = [*uvw_s, 1.0, frac]
        if antenna_params:
            par += [a1, a2, 1.0]
        elif a1 > 255 or a2 > 255:
            par += [a1 * 2048 + a2 + 65536]
        else:
            par += [256 * a1 + a2]
        par += [1.0, src, 42.1875]
        groups["par"][r] = par
        truth["uvw_s"].append(uvw_s.astype(np.float64))
        truth["date_frac"].append(float(frac))
        for i_if in range(2):
            for c in range(N_CHAN):
                for p in range(4):
                    re, im = _value(r, i_if, c, p)
                    w = -2.0 if (r == 7 and p == 1) else 1.0 + r % 3
                    groups["data"][r, 0, 0, i_if, c, p] = (re, im, w)

    hdr = fits.Header()
    hdr["SIMPLE"] = True
    hdr["BITPIX"] = -32
    hdr["NAXIS"] = 7
    for k, n in enumerate([0, 3, 4, N_CHAN, 2, 1, 1], start=1):
        hdr[f"NAXIS{k}"] = n
    hdr["EXTEND"] = True
    hdr["BLOCKED"] = True
    hdr["GROUPS"] = True
    hdr["PCOUNT"] = len(ptypes)
    hdr["GCOUNT"] = g
    hdr["OBJECT"] = "MULTI"
    hdr["TELESCOP"] = "VLA"
    hdr["BUNIT"] = "JY"
    hdr["SPECSYS"] = "TOPOCENT"
    axes = [("COMPLEX", 1.0, 1.0, 1.0), ("STOKES", stokes_crval, -1.0, 1.0),
            ("FREQ", CRVAL, 1e6, CRPIX), ("IF", 1.0, 1.0, 1.0), ("RA", 0.0, 1.0, 1.0),
            ("DEC", 0.0, 1.0, 1.0)]
    for k, (ctype, crval, cdelt, crpix) in enumerate(axes, start=2):
        hdr[f"CTYPE{k}"], hdr[f"CRVAL{k}"] = ctype, crval
        hdr[f"CDELT{k}"], hdr[f"CRPIX{k}"] = cdelt, crpix
    for i, ptype in enumerate(ptypes, start=1):
        hdr[f"PTYPE{i}"], hdr[f"PSCAL{i}"] = ptype, 1.0
        hdr[f"PZERO{i}"] = pzero.get(i - 1, 0.0)
    raw = groups.tobytes()
    with open(path, "wb") as f:
        f.write(hdr.tostring().encode("ascii"))
        f.write(raw + b"\0" * (-len(raw) % 2880))

    centre = ANT_XYZ.mean(axis=0) if array_centre else np.zeros(3)
    stab = ANT_XYZ - centre
    if array_centre:  # AIPS convention: offsets in the frame rotated to the array's meridian
        lon = np.arctan2(centre[1], centre[0])
        c_, s_ = np.cos(-lon), np.sin(-lon)
        stab = np.stack([c_ * stab[:, 0] - s_ * stab[:, 1], s_ * stab[:, 0] + c_ * stab[:, 1],
                         stab[:, 2]], axis=1)
    an = fits.BinTableHDU.from_columns([
        fits.Column("ANNAME", "8A", array=[f"A{n}" for n in numbers]),
        fits.Column("STABXYZ", "3D", array=stab),
        fits.Column("NOSTA", "1J", array=numbers),
        fits.Column("MNTSTA", "1J", array=[0] * 4),
        fits.Column("POLTYA", "1A", array=["R"] * 4),
        fits.Column("POLTYB", "1A", array=["L"] * 4),
    ], name="AIPS AN")
    an.header.update({"EXTVER": 1, "ARRAYX": centre[0], "ARRAYY": centre[1],
                      "ARRAYZ": centre[2], "FRAME": "ITRF", "TIMSYS": timsys, "ARRNAM": "VLA"})
    su = fits.BinTableHDU.from_columns([
        fits.Column("ID. NO.", "1J", array=list(SOURCES)),
        fits.Column("SOURCE", "16A", array=[v[0] for v in SOURCES.values()]),
        fits.Column("RAEPO", "1D", array=[v[1] for v in SOURCES.values()]),
        fits.Column("DECEPO", "1D", array=[v[2] for v in SOURCES.values()]),
        fits.Column("EPOCH", "1D", array=[2000.0, 2000.0]),
    ], name="AIPS SU")
    fq = fits.BinTableHDU.from_columns([
        fits.Column("FRQSEL", "1J", array=[1]),
        fits.Column("IF FREQ", "2D", array=[IF_FREQ]),
        fits.Column("CH WIDTH", "2E", array=[CH_WIDTH]),
        fits.Column("TOTAL BANDWIDTH", "2E", array=[[5e6, 5e6]]),
        fits.Column("SIDEBAND", "2J", array=[[1, -1]]),
    ], name="AIPS FQ")
    for table in ([an] if with_an else []) + [su, fq]:
        fits.append(path, table.data, table.header)
    if truncate:
        with open(path, "r+b") as f:
            f.truncate(truncate)
    truth["groups"] = groups
    return truth


@pytest.fixture
def synthetic(tmp_path):
    def make(**kw):
        path = tmp_path / "synth.uvfits"
        return path, write_uvfits(path, **kw)

    return make


# --------------------------------------------------------------------------------------------
# synthetic files: exact expectations
# --------------------------------------------------------------------------------------------

def _partition(obs, field, spw):
    for node in obs.children.values():
        ds = node.to_dataset(inherit=False)
        if str(ds.field_name.values[0]) == field and ds.frequency.attrs["spectral_window_name"] == spw:
            return node, ds
    raise AssertionError(f"no partition {field}/{spw}")


@pytest.mark.parametrize("variant", [{}, {"antenna_params": True}, {"big_numbers": True},
                                     {"array_centre": True}])
def test_synthetic_file_is_read_exactly(synthetic, variant):
    path, truth = synthetic(**variant)
    obs = read_uvfits(path, chunks="time=2,frequency=2")
    assert check_observation(obs) == []
    assert len(obs.children) == 4  # 2 sources x 2 IFs
    numbers = truth["numbers"]
    names = [f"A{n}" for n in numbers]
    for field, src in (("CAL", 1), ("TARGET", 2)):
        for i_if, spw in enumerate(("spw_0", "spw_1")):
            node, ds = _partition(obs, field, spw)
            ds = ds.compute()
            assert list(ds.polarization.values) == ["RR", "RL", "LR", "LL"]
            freq = CRVAL + IF_FREQ[i_if] + (np.arange(N_CHAN) + 1 - CRPIX) * CH_WIDTH[i_if]
            np.testing.assert_allclose(ds.frequency.values, freq, rtol=0, atol=1e-6)
            ks = sorted({k for k, s, _, _ in truth["rows"] if s == src})
            t_utc = ((DAY0 - 2440587.5) + FRAC0 + np.array(ks) * STEP) * 86400.0 - TAI_UTC
            np.testing.assert_allclose(ds.time.values, t_utc, rtol=0, atol=1e-6)
            assert ds.sizes["baseline_id"] == 6
            assert list(ds.baseline_antenna1_name.values) == [names[i] for i in (0, 0, 0, 1, 1, 2)]
            assert list(ds.baseline_antenna2_name.values) == [names[i] for i in (1, 2, 3, 2, 3, 3)]
            bl_of = {(names[a], names[b]): j for j, (a, b) in
                     enumerate([(0, 1), (0, 2), (0, 3), (1, 2), (1, 3), (2, 3)])}
            seen = np.zeros((len(ks), 6), bool)
            for r, (k, s, a1, a2) in enumerate(truth["rows"]):
                if s != src:
                    continue
                n1, n2 = f"A{a1}", f"A{a2}"
                conj = numbers.index(a1) > numbers.index(a2)
                ti, bi = ks.index(k), bl_of[tuple(sorted((n1, n2), key=names.index))]
                seen[ti, bi] = True
                file_pol = {"RR": 0, "LL": 1, "RL": 2, "LR": 3}
                for p, corr in enumerate(["RR", "RL", "LR", "LL"]):
                    src_corr = {"RL": "LR", "LR": "RL"}.get(corr, corr) if conj else corr
                    re, im = _value(r, i_if, np.arange(N_CHAN), file_pol[src_corr])
                    want = re + 1j * (-im if conj else im)
                    np.testing.assert_array_equal(ds.VISIBILITY.values[ti, bi, :, p], want)
                    w = -2.0 if (r == 7 and file_pol[src_corr] == 1) else 1.0 + r % 3
                    assert np.all(ds.WEIGHT.values[ti, bi, :, p] == abs(w))
                    assert np.all(ds.FLAG.values[ti, bi, :, p] == (w <= 0))
                uvw = truth["uvw_s"][r] * C * (-1.0 if conj else 1.0)
                np.testing.assert_allclose(ds.UVW.values[ti, bi], uvw, rtol=0, atol=1e-9)
                t_row = ((DAY0 - 2440587.5) + truth["date_frac"][r]) * 86400.0 - TAI_UTC
                assert abs(ds.TIME_CENTROID.values[ti, bi] - t_row) < 1e-6
                assert ds.EFFECTIVE_INTEGRATION_TIME.values[ti, bi] == 42.1875
            missing = ~seen  # present on the grid, flagged, zero weight, NaN metadata
            assert missing.sum() == (1 if field == "TARGET" else 0)
            assert np.all(ds.FLAG.values[missing]) and np.all(ds.WEIGHT.values[missing] == 0)
            assert np.all(ds.VISIBILITY.values[missing] == 0)
            assert np.all(np.isnan(ds.UVW.values[missing]))
            ra, dec = node["field_and_source_base_xds"].to_dataset().FIELD_PHASE_CENTER_DIRECTION.values[0]
            assert np.isclose(ra, np.deg2rad(SOURCES[src][1] % 360.0), atol=1e-12)
            assert np.isclose(dec, np.deg2rad(SOURCES[src][2]), atol=1e-12)
    ant = obs.children[next(iter(obs.children))]["antenna_xds"].to_dataset()
    assert list(ant.antenna_name.values) == names
    np.testing.assert_allclose(ant.ANTENNA_POSITION.values, ANT_XYZ, rtol=0, atol=1e-6)
    scans = {str(ds.field_name.values[0]): ds.attrs["partition_info"]["scan_name"]
             for _, ds in ((k, n.to_dataset(inherit=False)) for k, n in obs.children.items())}
    assert scans == {"CAL": ["1"], "TARGET": ["2"]}


def test_timsys_utc_is_taken_as_is(synthetic):
    path, _ = synthetic(timsys="UTC")
    ds = _partition(read_uvfits(path), "CAL", "spw_0")[1]
    assert ds.time.values[0] == ((DAY0 - 2440587.5) + FRAC0) * 86400.0


def test_chunks_bound_the_task_size_and_give_the_same_data(synthetic):
    path, _ = synthetic()
    whole = read_uvfits(path, chunks=None)
    small = read_uvfits(path, chunks="time=1,frequency=2")
    for name in whole.children:
        a, b = (o[name].to_dataset(inherit=False) for o in (whole, small))
        assert b.VISIBILITY.data.chunks[0] == (1,) * b.sizes["time"]
        assert b.VISIBILITY.data.chunks[2] == (2, 2, 1)
        assert a.VISIBILITY.data.npartitions == 1
        for var in ("VISIBILITY", "FLAG", "WEIGHT", "UVW", "TIME_CENTROID"):
            np.testing.assert_array_equal(a[var].values, b[var].values)


def _raise_if_computed(*args, **kwargs):
    raise AssertionError("the graph was computed while it was being built")


def _lazy_read_checks(path) -> None:
    with dask.config.set(scheduler=_raise_if_computed):
        obs = read_uvfits(path, chunks="1MB")
        assert check_observation(obs) == []
        ds = obs[next(iter(obs.children))].to_dataset(inherit=False)
        vis = ds.VISIBILITY.data
        assert hasattr(vis, "dask") and hasattr(ds.FLAG.data, "dask")
        # every task's block (VISIBILITY + FLAG + WEIGHT: 13 bytes a sample) fits the chunk
        assert max(int(np.prod(c)) for c in _block_shapes(vis)) * 13 <= 1_000_000
    assert np.isfinite(np.abs(ds.VISIBILITY.values)).all()  # and it does compute


def test_reading_builds_a_graph_without_computing(synthetic):
    path, _ = synthetic()
    _lazy_read_checks(path)


@pytest.mark.realdata
def test_reading_real_data_builds_a_graph_without_computing(realdata):
    _lazy_read_checks(realdata("ngc5921_uvfits"))


def _block_shapes(arr):
    import itertools

    return [tuple(s) for s in itertools.product(*arr.chunks)]


# --------------------------------------------------------------------------------------------
# errors: one line, naming the file
# --------------------------------------------------------------------------------------------

def _one_line_about(exc_info, name: str) -> None:
    msg = str(exc_info.value)
    assert "\n" not in msg and msg.startswith(f"{name}:"), msg
    assert isinstance(exc_info.value, DaskcalError)


def test_missing_file(tmp_path):
    with pytest.raises(UVFITSError, match="no such file") as err:
        read_uvfits(tmp_path / "x.fits")
    _one_line_about(err, "x.fits")


def test_not_fits(tmp_path):
    path = tmp_path / "x.fits"
    path.write_text("this is not FITS\n" * 300)
    with pytest.raises(UVFITSError, match="not a FITS file") as err:
        read_uvfits(path)
    _one_line_about(err, "x.fits")


def test_image_is_not_random_groups(tmp_path):
    from astropy.io import fits

    path = tmp_path / "x.fits"
    fits.PrimaryHDU(np.zeros((4, 4), np.float32)).writeto(path)
    with pytest.raises(UVFITSError, match="not a random-groups UVFITS file") as err:
        read_uvfits(path)
    _one_line_about(err, "x.fits")


def test_truncated(tmp_path):
    path = tmp_path / "x.fits"
    write_uvfits(path, truncate=2880 * 3)
    with pytest.raises(UVFITSError, match=r"truncated \(expected \d+ bytes of data, found \d+\)") as err:
        read_uvfits(path)
    _one_line_about(err, "x.fits")


@pytest.mark.parametrize(("kw", "match"), [
    ({"with_an": False}, "no AIPS AN"),
    ({"stokes_crval": -9.0}, "unsupported Stokes code -9"),
    ({"timsys": "GPS"}, "time system 'GPS' is not supported"),
])
def test_inconsistent_files(tmp_path, kw, match):
    path = tmp_path / "x.fits"
    write_uvfits(path, **kw)
    with pytest.raises(UVFITSError, match=match) as err:
        read_uvfits(path)
    _one_line_about(err, "x.fits")


def test_unknown_antenna_number(tmp_path):
    from astropy.io import fits

    path = tmp_path / "x.fits"
    write_uvfits(path)
    with fits.open(path, mode="update") as hdul:
        hdul["AIPS AN"].data["NOSTA"][3] = 9  # antenna 5 is no longer listed
    with pytest.raises(UVFITSError, match=r"antenna numbers \[5\]") as err:
        read_uvfits(path)
    _one_line_about(err, "x.fits")


# --------------------------------------------------------------------------------------------
# real files against pyuvdata
# --------------------------------------------------------------------------------------------

REAL = ["ngc5921_uvfits", "vla_day2_uvfits", "mwa_uvfits"]
AIPS_POL = {-1: "RR", -2: "LL", -3: "RL", -4: "LR", -5: "XX", -6: "YY", -7: "XY", -8: "YX"}


def _pyuvdata(path):
    pytest.importorskip("pyuvdata")
    from pyuvdata import UVData

    from daskcal.data.uvdata_import import astropy_sites_offline

    with warnings.catch_warnings(), astropy_sites_offline():
        warnings.simplefilter("ignore")  # pyuvdata's own remarks about the files
        return UVData.from_file(str(path), file_type="uvfits")


def _tai_minus_utc(path) -> float:
    """Seconds to subtract from pyuvdata's times (it does not apply the AN table's TIMSYS)."""
    from astropy.io import fits

    hdr = fits.getheader(path, "AIPS AN")
    return float(hdr.get("IATUTC", 0.0)) if str(hdr.get("TIMSYS", "UTC")).strip() == "TAI" else 0.0


@pytest.mark.realdata
@pytest.mark.parametrize("name", REAL)
def test_real_file_matches_pyuvdata(realdata, name):
    path = realdata(name)
    uvd = _pyuvdata(path)
    obs = read_uvfits(path).compute()
    assert check_observation(obs) == []
    offset = _tai_minus_utc(path)

    # antennas and sources
    tel = uvd.telescope
    node0 = obs[next(iter(obs.children))]
    ant = node0["antenna_xds"].to_dataset()
    assert list(ant.antenna_name.values) == list(tel.antenna_names)
    itrf = tel.antenna_positions + np.array([tel.location.x.value, tel.location.y.value,
                                             tel.location.z.value])
    np.testing.assert_allclose(ant.ANTENNA_POSITION.values, itrf, rtol=0, atol=1e-3)  # m
    fields = {}
    for node in obs.children.values():
        fx = node["field_and_source_base_xds"].to_dataset()
        fields[str(fx.field_name.values[0])] = fx.FIELD_PHASE_CENTER_DIRECTION.values[0]
    assert sorted(fields) == sorted(str(c["cat_name"]) for c in uvd.phase_center_catalog.values())
    for cat in uvd.phase_center_catalog.values():
        ra, dec = fields[str(cat["cat_name"])]
        assert abs((ra - cat["cat_lon"] + np.pi) % (2 * np.pi) - np.pi) < 1e-9  # rad
        assert abs(dec - cat["cat_lat"]) < 1e-9

    # scattered samples: (row, channel, polarization)
    parts = {}
    for node in obs.children.values():
        ds = node.to_dataset(inherit=False)
        key = (str(ds.field_name.values[0]), ds.frequency.attrs["spectral_window_name"])
        parts[key] = ds
    rng = np.random.default_rng(5921)
    rows = rng.choice(uvd.Nblts, size=min(300, uvd.Nblts), replace=False)
    names = dict(zip(tel.antenna_numbers.tolist(), tel.antenna_names, strict=True))
    pols = [AIPS_POL[p] for p in uvd.polarization_array]
    for row in rows:
        field = str(uvd.phase_center_catalog[uvd.phase_center_id_array[row]]["cat_name"])
        spw_index = int(uvd.flex_spw_id_array[0])
        ds = parts[(field, f"spw_{spw_index}")]
        n1, n2 = names[uvd.ant_1_array[row]], names[uvd.ant_2_array[row]]
        a1n, a2n = ds.baseline_antenna1_name.values, ds.baseline_antenna2_name.values
        hit = np.flatnonzero((a1n == n1) & (a2n == n2))
        swapped = hit.size == 0
        if swapped:
            hit = np.flatnonzero((a1n == n2) & (a2n == n1))
        b = int(hit[0])
        t_row = (uvd.time_array[row] - 2440587.5) * 86400.0 - offset
        ti = np.flatnonzero(np.abs(ds.TIME_CENTROID.values[:, b] - t_row) < 2e-4)
        assert ti.size == 1, (row, n1, n2)
        ti = int(ti[0])
        assert abs(ds.time.values[ti] - t_row) < 0.6 * float(ds.time.attrs["integration_time"]["data"])
        # pyuvdata: uvw = antenna2 - antenna1 and conjugated visibilities; we keep the file's
        sign = 1.0 if swapped else -1.0
        np.testing.assert_allclose(ds.UVW.values[ti, b], sign * uvd.uvw_array[row], rtol=0, atol=1e-6)
        if "INTTIM" in _ptypes(path):  # otherwise pyuvdata guesses from time differences
            assert ds.EFFECTIVE_INTEGRATION_TIME.values[ti, b] == pytest.approx(
                uvd.integration_time[row], rel=1e-6)
        chans = rng.choice(uvd.Nfreqs, size=min(8, uvd.Nfreqs), replace=False)
        np.testing.assert_allclose(ds.frequency.values[chans], uvd.freq_array[chans], rtol=0, atol=1.0)
        for p, pol in enumerate(pols):
            ours = {"RL": "LR", "LR": "RL", "XY": "YX", "YX": "XY"}.get(pol, pol) if swapped else pol
            q = list(ds.polarization.values).index(ours)
            theirs = uvd.data_array[row, chans, p]
            want = theirs if swapped else np.conj(theirs)
            got = ds.VISIBILITY.values[ti, b, chans, q]
            if n1 == n2 and pol[0] == pol[1]:  # pyuvdata zeroes Im of parallel-hand autos
                np.testing.assert_array_equal(got.real, want.real)
                assert np.all(np.abs(got.imag) <= 1e-6 * np.abs(got.real) + 1e-30)
            else:
                np.testing.assert_array_equal(got, want)
            np.testing.assert_array_equal(ds.FLAG.values[ti, b, chans, q], uvd.flag_array[row, chans, p])
            np.testing.assert_array_equal(ds.WEIGHT.values[ti, b, chans, q], uvd.nsample_array[row, chans, p])


def _ptypes(path) -> list[str]:
    from astropy.io import fits

    hdr = fits.getheader(path, 0)
    return [str(hdr[f"PTYPE{i}"]).strip() for i in range(1, hdr["PCOUNT"] + 1)]


@pytest.mark.realdata
def test_pyuvdata_written_file_with_reversed_baselines(realdata, tmp_path):
    """Another writer (pyuvdata: ANTENNA1/2 params, DATE with PZERO), rows stored ant1 > ant2."""
    uvd = _pyuvdata(realdata("vla_day2_uvfits"))
    ref = read_uvfits(realdata("vla_day2_uvfits")).compute()
    uvd.conjugate_bls("ant2<ant1")
    out = tmp_path / "reversed.uvfits"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        uvd.write_uvfits(str(out))
    got = read_uvfits(out).compute()
    a = ref[next(iter(ref.children))].to_dataset(inherit=False)
    b = got[next(iter(got.children))].to_dataset(inherit=False)
    assert list(a.polarization.values) == list(b.polarization.values) == ["RR", "RL", "LR", "LL"]
    np.testing.assert_array_equal(a.baseline_antenna1_name.values, b.baseline_antenna1_name.values)
    np.testing.assert_allclose(a.TIME_CENTROID.values, b.TIME_CENTROID.values, rtol=0, atol=1e-3)
    np.testing.assert_array_equal(a.FLAG.values, b.FLAG.values)
    np.testing.assert_allclose(a.VISIBILITY.values, b.VISIBILITY.values, rtol=1e-6, atol=0)
    np.testing.assert_allclose(a.UVW.values, b.UVW.values, rtol=0, atol=1e-3)  # m, float32 params
    pos = [o[next(iter(o.children))]["antenna_xds"].to_dataset() for o in (ref, got)]
    assert list(pos[0].antenna_name.values) == list(pos[1].antenna_name.values)
    np.testing.assert_allclose(pos[0].ANTENNA_POSITION.values, pos[1].ANTENNA_POSITION.values,
                               rtol=0, atol=1e-3)


# --------------------------------------------------------------------------------------------
# physics on NGC5921
# --------------------------------------------------------------------------------------------

@pytest.mark.realdata
def test_ngc5921_contents_and_calibration_state(realdata):
    """The file holds raw (BUNIT 'UNCALIB') data whose calibrator ratio is right.

    3C286 (1331+305) is 14.76 Jy at 1.41 GHz and 1445+099 was bootstrapped to
    2.52 Jy in the CASA NGC5921 tutorial: the raw amplitudes are ~10x smaller
    than Jy but their ratio (5.86) holds to a few per cent.
    """
    path = realdata("ngc5921_uvfits")
    obs = read_uvfits(path)
    from astropy.io import fits

    assert fits.getheader(path)["BUNIT"].strip() == "UNCALIB"
    amp = {}
    for node in obs.children.values():
        ds = node.to_dataset(inherit=False)
        cross = (ds.antenna1 != ds.antenna2).values
        vis = ds.VISIBILITY.values[:, cross, 5:58]  # edge channels are noisy
        ok = ~ds.FLAG.values[:, cross, 5:58]
        amp[str(ds.field_name.values[0])] = float(np.abs(vis[ok]).mean())
        assert ds.sizes["frequency"] == 63 and list(ds.polarization.values) == ["RR", "LL"]
        assert ds.frequency.attrs["observer"] == "LSRK"
    assert sorted(amp) == ["1331+30500002_0", "1445+09900002_0", "N5921_2"]
    assert 0.5 < amp["1331+30500002_0"] < 3.0  # raw correlator units, not ~15 Jy
    assert amp["1331+30500002_0"] / amp["1445+09900002_0"] == pytest.approx(14.76 / 2.52, rel=0.1)
    assert amp["N5921_2"] < 0.05 * amp["1331+30500002_0"]  # the target field: mostly noise
    used = set()
    for node in obs.children.values():
        ds = node.to_dataset(inherit=False)
        used |= set(ds.baseline_antenna1_name.values) | set(ds.baseline_antenna2_name.values)
    assert len(used) == 27 and "VLA:OUT" not in used
    ant = obs[next(iter(obs.children))]["antenna_xds"].to_dataset()
    assert ant.sizes["antenna_name"] == 28
    n_times = sum(n.to_dataset(inherit=False).sizes["time"] for n in obs.children.values())
    assert n_times == 60


@pytest.mark.realdata
def test_ngc5921_uvw_follow_from_antenna_positions(realdata):
    """UVW = projected (antenna1 - antenna2) ITRF baselines (the MS/UVFITS sign), in metres.

    Checks positions, phase centres, units and sign at once. The times are in
    TAI in the file (AN ``TIMSYS = 'TAI'``); with our UTC times the best-fitting
    epoch of the uvw lies inside the 30 s integration before each time stamp,
    where treating the file's times as UTC would put it 35-50 s earlier.
    """
    from astropy.coordinates import EarthLocation
    from astropy.time import Time

    obs = read_uvfits(realdata("ngc5921_uvfits"))
    for node in obs.children.values():
        ds = node.to_dataset(inherit=False)
        pos = node["antenna_xds"].to_dataset().ANTENNA_POSITION.values
        ra, dec = node["field_and_source_base_xds"].to_dataset().FIELD_PHASE_CENTER_DIRECTION.values[0]
        axes = np.array([
            [-np.sin(ra), np.cos(ra), 0.0],
            [-np.sin(dec) * np.cos(ra), -np.sin(dec) * np.sin(ra), np.cos(dec)],
            [np.cos(dec) * np.cos(ra), np.cos(dec) * np.sin(ra), np.sin(dec)]])
        a1, a2 = ds.antenna1.values, ds.antenna2.values
        ti = 5
        uvw = ds.UVW.values[ti]
        ok = np.isfinite(uvw[:, 0]) & (a1 != a2)
        loc = EarthLocation.from_geocentric(*pos.T, unit="m")
        shifts = np.arange(-60.0, 61.0, 1.0)
        rms = []
        for dt in shifts:
            gcrs = loc.get_gcrs_posvel(Time(ds.time.values[ti] + dt, format="unix"))[0]
            xyz = gcrs.xyz.to_value("m").T
            model = (xyz[a1[ok]] - xyz[a2[ok]]) @ axes.T
            rms.append(np.sqrt(np.mean((model - uvw[ok]) ** 2)))
        best = int(np.argmin(rms))
        assert rms[best] < 0.05  # m, for baselines up to 1 km
        assert -30.0 < shifts[best] < 0.0


@pytest.mark.realdata
def test_mwa_and_vla_headers(realdata):
    """Facts of the two pyuvdata test files: MWA rotated-ECEF antennas, VLA centroids."""
    mwa = read_uvfits(realdata("mwa_uvfits"))
    ds = mwa[next(iter(mwa.children))].to_dataset(inherit=False)
    assert ds.sizes["baseline_id"] == 105 * 106 // 2 and ds.sizes["time"] == 1
    assert list(ds.polarization.values) == ["XX", "XY", "YX", "YY"]
    assert bool(ds.FLAG.values.all())  # every sample of this excerpt is flagged (weights < 0)
    ant = mwa[next(iter(mwa.children))]["antenna_xds"].to_dataset()
    radius = np.linalg.norm(ant.ANTENNA_POSITION.values, axis=1)
    assert np.all(np.abs(radius - 6.374e6) < 1e4)  # on the Earth's surface
    vla = read_uvfits(realdata("vla_day2_uvfits"))
    ds = vla[next(iter(vla.children))].to_dataset(inherit=False)
    # casacore writes each row's TIME_CENTROID: 15 distinct DATEs, but 9 integrations of 10 s
    assert ds.sizes["time"] == 9
    assert ds.time.attrs["integration_time"]["data"] == pytest.approx(10.0, abs=0.01)
    assert np.isnan(ds.UVW.values).any()  # 17 samples are missing from the file
