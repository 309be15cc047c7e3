"""The makesourcedb / BBS sky-model text format: parsing, round trips, errors, LSMTool."""

from __future__ import annotations

import numpy as np
import pytest

from daskcal import DaskcalError
from daskcal.sky.ateam import ateam_sky_model
from daskcal.sky.bbs import (
    BBSFormatError,
    format_bbs,
    format_dec,
    format_ra,
    parse_angle,
    parse_bbs,
    read_bbs,
    read_bbs_patches,
    write_bbs,
)
from daskcal.sky.model import SkyModel

DEG = np.pi / 180
ARCSEC = DEG / 3600


def _hms(h, m, s):
    return (h + m / 60 + s / 3600) * 15 * DEG


def _dms(sign, d, m, s):
    return sign * (d + m / 60 + s / 3600) * DEG


def _random_sky(n=40, seed=1):
    rng = np.random.default_rng(seed)
    ra = rng.uniform(0, 2 * np.pi, n)
    dec = np.arcsin(rng.uniform(-1, 1, n))
    ra[:3] = [0.0, 2 * np.pi - 1e-13, np.pi]  # RA wrap-around
    dec[:4] = [-0.3 * DEG, -1e-9, np.pi / 2, -np.pi / 2]  # negative zero degrees, poles
    major = np.where(rng.random(n) < 0.5, rng.uniform(1, 300, n) * ARCSEC, 0.0)
    minor = major * rng.uniform(0, 1, n)
    return SkyModel.from_components(
        name=[f"src_{k}" for k in range(n)], ra=ra, dec=dec,
        stokes_i=rng.lognormal(0, 2, n) * rng.choice([-1, 1], n, p=[0.1, 0.9]),
        stokes_q=rng.normal(0, 0.1, n), stokes_u=rng.normal(0, 0.1, n), stokes_v=0.0,
        ref_freq=rng.choice([74e6, 1.5e8, 1.4e9], n),
        spectral_index=rng.normal(-0.7, 0.3, (n, 3)), log_si=rng.random(n) < 0.7,
        major=major, minor=minor, position_angle=np.where(major > 0, rng.uniform(-90, 270, n), 0) * DEG,
        patch=rng.choice(["P0", "P1", "CygA", ""], n))


def _assert_same(back, sky, angle_tol=1e-10):
    assert back.name.tolist() == sky.name.tolist()
    assert back.patch.tolist() == sky.patch.tolist()
    dra = np.angle(np.exp(1j * (back.ra - sky.ra)))
    assert np.all(np.abs(dra * np.cos(sky.dec)) < angle_tol)
    np.testing.assert_allclose(back.dec, sky.dec, rtol=0, atol=angle_tol)
    np.testing.assert_array_equal(back.stokes, sky.stokes)
    np.testing.assert_array_equal(back.ref_freq, sky.ref_freq)
    np.testing.assert_array_equal(back.spectral_index, sky.spectral_index)
    np.testing.assert_array_equal(back.log_si, sky.log_si)
    np.testing.assert_allclose(back.shape_params, sky.shape_params, rtol=1e-14, atol=1e-300)


# ----------------------------------------------------------------------------- round trips


def test_round_trip_random_model(tmp_path):
    sky = _random_sky()
    path = write_bbs(sky, tmp_path / "sky.txt")
    back = read_bbs(path)
    _assert_same(back, sky)
    # writing what we read gives the same text (stable formatting)
    assert format_bbs(back, patch_positions=read_bbs_patches(path)) == path.read_text()


def test_round_trip_patch_positions_and_empty_patches(tmp_path):
    sky = ateam_sky_model()
    given = {"CygA": (_hms(19, 59, 28.3), _dms(1, 40, 44, 2.1)), "Empty": (1.0, -0.5)}
    path = write_bbs(sky, tmp_path / "ateam.skymodel", patch_positions=given)
    patches = read_bbs_patches(path)
    assert list(patches) == ["CasA", "CygA", "TauA", "VirA", "Empty"]
    for name, (ra, dec) in given.items():
        assert patches[name] == pytest.approx((ra, dec), abs=1e-10)
    # patches without a given position get the flux-weighted centre of their components
    from daskcal.sky.catalogue import patch_summary

    summary = patch_summary(sky)
    k = summary.name.tolist().index("VirA")
    assert patches["VirA"] == pytest.approx((summary.ra[k], summary.dec[k]), abs=1e-10)
    _assert_same(read_bbs(path), sky)


def test_round_trip_without_patches_and_without_spectral_terms(tmp_path):
    sky = SkyModel.from_components(name=["a", "b c"], ra=[0.1, 0.2], dec=[-0.1, 0.2],
                                   stokes_i=[1.5, 2.0], ref_freq=1.4e9)
    text = format_bbs(sky)
    assert "Patch" not in text.splitlines()[0] and ", [], true," in text
    back, patches = parse_bbs(text)
    assert patches == {} and back.spectral_index.shape == (2, 0)
    _assert_same(back, sky)
    assert parse_bbs(format_bbs(SkyModel.empty()))[0].n_source == 0


def test_sexagesimal_formatting_carries_and_signs():
    assert format_ra(_hms(1, 59, 59.999999999)) == "02:00:00.0000000"
    assert format_ra(2 * np.pi - 1e-14) == "00:00:00.0000000"
    assert format_dec(-0.5 * DEG) == "-00.30.00.000000"
    assert format_dec(-1e-15) == "+00.00.00.000000"
    assert format_dec(_dms(1, 40, 59, 59.9999999)) == "+41.00.00.000000"
    assert format_dec(np.pi / 2) == "+90.00.00.000000"


# ----------------------------------------------------------------------------- angles


@pytest.mark.parametrize("text,kind", [
    ("19:59:28.3", "ra"), ("+40.44.02.1", "dec"), ("-00.30.00", "dec"), ("-0.30.00", "dec"),
    ("12h13m15.9", "ra"), ("40d44m02.1s", "dec"), ("-0d30m", "dec"), ("12.5deg", "dec"),
    ("1rad", "ra"), ("12:13", "ra"), ("12.13.", "dec"), ("5..2.59", "dec"), ("23:59:59.99", "ra"),
    ("-89.59.59.9", "dec"), ("+00.00.00", "dec"), ("00:00:00", "ra"),
])
def test_parse_angle_agrees_with_casacore(text, kind):
    quanta = pytest.importorskip("casacore.quanta")
    expected = quanta.quantity(text).get_value("rad")
    if kind == "ra":
        expected = np.mod(expected, 2 * np.pi)
    assert parse_angle(text, kind) == pytest.approx(expected, abs=1e-13)


def test_parse_angle_plain_numbers_follow_the_chosen_unit():
    assert parse_angle("299.868", "ra") == pytest.approx(299.868 * DEG)
    assert parse_angle("-12.5", "dec") == pytest.approx(-12.5 * DEG)
    assert parse_angle("0.5", "dec", plain_unit="rad") == pytest.approx(0.5)  # makesourcedb
    assert parse_angle("-10deg", "ra") == pytest.approx(350 * DEG)


@pytest.mark.parametrize("text,kind", [
    ("99.99.99", "dec"), ("+91.00.00", "dec"), ("40:44:02", "dec"), ("12h", "dec"),
    ("25:00:00", "ra"), ("12:61:00", "ra"), ("10.00.60", "dec"), ("abc", "ra"), ("", "ra"),
    ("1.2.3.4.5", "dec"), ("12.5parsec", "dec"), ("nan", "dec"), ("1e400", "ra"),
])
def test_parse_angle_rejects(text, kind):
    with pytest.raises(ValueError):
        parse_angle(text, kind)


# ----------------------------------------------------------------------------- real-world files

CALIBRATORS = """\
# LOFAR calibrator models, hand-written in the style of the prefactor/LINC skymodels
# (Name, Type, Patch, Ra, Dec, I, Q, U, V, ReferenceFrequency='1.5e8', SpectralIndex='[]', MajorAxis, MinorAxis, Orientation, LogarithmicSI) = format
# The above line defines the field order and is required.

 , , 3C196, 08:13:36.0, +48.13.03
3C196_1, POINT, 3C196, 08:13:36.056, +48.13.02.581, 34.1, 0.0, 0.0, 0.0, 1.5e8, [-0.826, -0.236, 0.0], , , , true
3C196_2, GAUSSIAN, 3C196, 08:13:35.9, +48.13.04.2, 49.3, 0, 0, 0, , [-0.62,-0.17], 3.2, 1.1, 125.0
\t# an indented comment

, , CygA, 19:59:28.3, +40.44.02.1
CygA_E, GAUSSIAN, CygA, 19:59:33.57, +40.43.39.3, 5445.5, , , , 73.8e6, [-0.69, -0.178], 35.0, 20.0, 111.0
CygA_W, GAUSSIAN, CygA, 19:59:23.14, +40.44.24.9, 5445.5, , , , 73.8e6, [-0.69, -0.178], 20.0, 35.0, -69.0
"3C 48, core", POINT, , 01:37:41.3, +33.09.35.1, 16.2, , , , 1.5e8, [0.5, 0.1], , , , false
neg_zero, POINT, , 00:00:00, -00.30.00, 1.0
"""


def test_parse_calibrator_style_file(tmp_path):
    path = tmp_path / "calibrators.skymodel"
    path.write_text(CALIBRATORS.replace("\n", "\r\n"))  # CRLF as from some editors
    sky = read_bbs(path)
    patches = read_bbs_patches(path)
    assert sky.name.tolist() == ["3C196_1", "3C196_2", "CygA_E", "CygA_W", "3C 48, core", "neg_zero"]
    assert sky.patch.tolist() == ["3C196", "3C196", "CygA", "CygA", "", ""]
    assert patches["3C196"] == pytest.approx((_hms(8, 13, 36.0), _dms(1, 48, 13, 3)), abs=1e-12)
    assert patches["CygA"] == pytest.approx((_hms(19, 59, 28.3), _dms(1, 40, 44, 2.1)), abs=1e-12)
    assert sky.ra[0] == pytest.approx(_hms(8, 13, 36.056), abs=1e-12)
    assert sky.dec[0] == pytest.approx(_dms(1, 48, 13, 2.581), abs=1e-12)
    assert sky.dec[5] == pytest.approx(-0.5 * DEG, abs=1e-15)
    # defaults from the format line (ReferenceFrequency) and builtin ones (Q, U, V = 0)
    np.testing.assert_array_equal(sky.ref_freq, [1.5e8, 1.5e8, 73.8e6, 73.8e6, 1.5e8, 1.5e8])
    np.testing.assert_array_equal(sky.stokes[:, 0], [34.1, 49.3, 5445.5, 5445.5, 16.2, 1.0])
    assert np.all(sky.stokes[:, 1:] == 0)
    # spectral indices padded to the longest; log flag defaults to true
    np.testing.assert_array_equal(sky.spectral_index[0], [-0.826, -0.236, 0.0])
    np.testing.assert_array_equal(sky.spectral_index[1], [-0.62, -0.17, 0.0])
    np.testing.assert_array_equal(sky.spectral_index[5], [0.0, 0.0, 0.0])
    assert sky.log_si.tolist() == [True, True, True, True, False, True]
    # Gaussian shapes: arcsec FWHM, degrees; minor > major swapped and turned by 90 degrees
    np.testing.assert_allclose(sky.major[[1, 2, 3]] / ARCSEC, [3.2, 35.0, 35.0])
    np.testing.assert_allclose(sky.minor[[1, 2, 3]] / ARCSEC, [1.1, 20.0, 20.0])
    np.testing.assert_allclose(sky.position_angle[[1, 2, 3]] / DEG, [125.0, 111.0, 21.0])
    assert list(sky.is_gaussian) == [False, True, True, True, False, False]
    # the spectrum follows BBS: log10 polynomial of (f / f0), or ordinary in (f / f0 - 1)
    f = np.array([120e6, 180e6])
    x = np.log10(f / 1.5e8)
    np.testing.assert_allclose(sky.flux(f)[0, :, 0], 34.1 * (f / 1.5e8) ** (-0.826 - 0.236 * x))
    np.testing.assert_allclose(sky.flux(f)[4, :, 0], 16.2 + 0.5 * (f / 1.5e8 - 1)
                               + 0.1 * (f / 1.5e8 - 1) ** 2)


def test_parse_reordered_optional_columns_and_dp3_features():
    text = """
format = Name, Dec, Ra, Type, I, Orientation, MajorAxis, MinorAxis, Patch, Category, Extra, RefType='J2000', V=fixed'0.5'

, +10.00.00, 01:00:00, , , , , , P
a, -05.00.00, 02:00:00, gaussian, 3.0, , , , P, 2, 17
b, 0.5rad, 30deg
"""
    sky, patches = parse_bbs(text)
    assert patches == {"P": pytest.approx((15 * DEG, 10 * DEG))}
    assert sky.name.tolist() == ["a", "b"] and sky.patch.tolist() == ["P", ""]
    assert sky.ra.tolist() == pytest.approx([30 * DEG, 30 * DEG])
    assert sky.dec.tolist() == pytest.approx([-5 * DEG, 0.5])
    # makesourcedb's builtin defaults: I = 1 Jy; empty Gaussian axes/orientation = 1
    np.testing.assert_array_equal(sky.stokes, [[3.0, 0, 0, 0.5], [1.0, 0, 0, 0.5]])
    assert sky.major[0] == pytest.approx(ARCSEC) and sky.position_angle[0] == pytest.approx(DEG)
    assert sky.ref_freq.tolist() == [150e6, 150e6] and sky.spectral_index.shape == (2, 0)


def test_parse_split_position_columns_and_whitespace_separators():
    text = """# (Name Type rah ram ras decd decm decs I SpectralIndex ReferenceFrequency) = format
x  POINT  12 30 0.0  -0 30 0.0  2.5  [-0.7, -0.1]  1.5e8
y\tPOINT\t1\t2\t3\t4\t5\t6\t1.0\t[]\t1e8
"""
    sky, _ = parse_bbs(text)
    assert sky.ra.tolist() == pytest.approx([_hms(12, 30, 0), _hms(1, 2, 3)])
    assert sky.dec.tolist() == pytest.approx([-0.5 * DEG, _dms(1, 4, 5, 6)])
    np.testing.assert_array_equal(sky.spectral_index, [[-0.7, -0.1], [0.0, 0.0]])


# ----------------------------------------------------------------------------- errors

_FMT = "# (Name, Type, Patch, Ra, Dec, I, ReferenceFrequency, SpectralIndex) = format\n"


@pytest.mark.parametrize("row,message", [
    ("a, POINT, , 01:00:00, 99.99.99, 1", "cannot parse Dec '99.99.99'"),
    ("a, POINT, , 25:00:00, +10.00.00, 1", "cannot parse Ra '25:00:00'"),
    ("a, POINT, , 01:00:00, +10:00:00, 1", "cannot parse Dec '+10:00:00'"),
    ("a, POINT, , 01:00:00, , 1", "Ra and Dec are required"),
    ("a, SHAPELET, , 01:00:00, +10.00.00, 1", "source type 'SHAPELET' is not supported"),
    ("a, POINT, , 01:00:00, +10.00.00, 1x", "cannot parse I '1x'"),
    ("a, POINT, , 01:00:00, +10.00.00, 1, 1e8, [a, b]", "cannot parse SpectralIndex '[a, b]'"),
    ("a, POINT, , 01:00:00, +10.00.00, 1, 1e8, [-0.7", "unbalanced square brackets"),
    ("a, POINT, , 01:00:00, +10.00.00, 1, , [-0.7]", "SpectralIndex needs a positive"),
    ("a, POINT, , 01:00:00, +10.00.00, 1, 1e8, [-0.7], 9", "more values than columns"),
    ("\"a, POINT, , 01:00:00, +10.00.00, 1", "unbalanced quote"),
    (", POINT, , 01:00:00, +10.00.00, 1", "must name a patch"),
    ("b, POINT, , 01:00:00, +10.00.00, 1", "component 'b' is defined twice (first on line 2)"),
    (", , P, 01:00:00, +10.00.00", "patch 'P' is defined twice (first on line 3)"),
])
def test_bad_rows_name_file_and_line(tmp_path, row, message):
    path = tmp_path / "sky.txt"
    path.write_text(_FMT + "b, POINT, , 00:00:00, +00.00.00, 1\n, , P, 01:00:00, +10.00.00\n\n" + row + "\n")
    with pytest.raises(BBSFormatError) as info:
        read_bbs(path)
    text = str(info.value)
    assert text.startswith(f"{path}:5: ") and message in text and "\n" not in text
    assert isinstance(info.value, DaskcalError) and isinstance(info.value, ValueError)


@pytest.mark.parametrize("text,message", [
    ("a, POINT, 01:00:00, +10.00.00\n", ":1: no format line"),
    ("# just a comment\n\nformat = Name, Ra\na, 01:00:00\n", ":3: bad format line: no Dec column"),
    ("format = Type, Ra, Dec\n", ":1: bad format line: no Name column"),
    ("format = Name, Ra, Ra, Dec\n", "column 'ra' appears twice"),
    ("format = Name, Ra, Dec, I=1.0\n", "the value after i= must be quoted"),
    ("format = Name, Ra, Dec, rah\n", "ra cannot be combined with rah"),
    ("format = Name, Ra, Dec, SpectralIndexDegree\n", "SpectralIndexDegree is obsolete"),
    ("format = Name, Ra, Dec, RotationMeasure\na, 0:0:0, +0.0.0, 3\n", ":2: column 'rotationmeasure'"),
    ("format = Name, Ra, Dec, RefType\na, 0:0:0, +0.0.0, B1950\n", ":2: RefType 'B1950'"),
    ("format = Name, Ra, Dec, LogarithmicSI\na, 0:0:0, +0.0.0, maybe\n", ":2: cannot parse Logar"),
])
def test_bad_files(tmp_path, text, message):
    path = tmp_path / "model.sky"
    path.write_text(text)
    with pytest.raises(BBSFormatError, match=None) as info:
        read_bbs(path)
    assert str(info.value).startswith(str(path)) and message in str(info.value)


def test_missing_file_and_unwritable_names(tmp_path):
    with pytest.raises(BBSFormatError, match="no such file"):
        read_bbs(tmp_path / "nope.sky")
    sky = SkyModel.from_components(name=["a,b"], ra=[0.0], dec=[0.0], stokes_i=[1.0], ref_freq=1e8)
    with pytest.raises(BBSFormatError, match=r"out\.sky: cannot write component name 'a,b'"):
        write_bbs(sky, tmp_path / "out.sky")
    sky = SkyModel.from_components(name=["a"], ra=[0.0], dec=[0.0], stokes_i=[1.0], ref_freq=1e8,
                                   patch="p#1")
    with pytest.raises(BBSFormatError, match="cannot write patch name 'p#1'"):
        format_bbs(sky)
    with pytest.raises(ValueError, match="plain_angle_unit"):
        parse_bbs("format = Name, Ra, Dec\n", plain_angle_unit="grad")


# ----------------------------------------------------------------------------- LSMTool


def _lsm_values(model, column):
    return np.asarray(model.getColValues(column))


def test_lsmtool_reads_our_files(tmp_path):
    lsmtool = pytest.importorskip("lsmtool")
    sky = _random_sky(n=30, seed=7)
    sky = sky.select(sky.patch != "")  # LSMTool needs a patch for every source of a patched model
    path = write_bbs(sky, tmp_path / "ours.skymodel")
    model = lsmtool.load(str(path))
    order = [sky.name.tolist().index(n) for n in _lsm_values(model, "Name")]  # grouped by patch
    assert sorted(order) == list(range(sky.n_source))
    sky = sky.select(np.array(order))
    assert _lsm_values(model, "Patch").tolist() == sky.patch.tolist()
    dra = np.angle(np.exp(1j * (np.radians(_lsm_values(model, "Ra")) - sky.ra)))
    assert np.all(np.abs(dra * np.cos(sky.dec)) < 1e-10)
    np.testing.assert_allclose(np.radians(_lsm_values(model, "Dec")), sky.dec, atol=1e-10, rtol=0)
    for column, k in (("I", 0), ("Q", 1), ("U", 2), ("V", 3)):
        np.testing.assert_array_equal(_lsm_values(model, column), sky.stokes[:, k])
    np.testing.assert_array_equal(_lsm_values(model, "ReferenceFrequency"), sky.ref_freq)
    np.testing.assert_array_equal(_lsm_values(model, "SpectralIndex"), sky.spectral_index)
    assert _lsm_values(model, "LogarithmicSI").tolist() == np.where(sky.log_si, "true", "false").tolist()
    assert _lsm_values(model, "Type").tolist() == np.where(sky.is_gaussian, "GAUSSIAN", "POINT").tolist()
    np.testing.assert_allclose(_lsm_values(model, "MajorAxis"), sky.major / ARCSEC, rtol=1e-14)
    np.testing.assert_allclose(_lsm_values(model, "MinorAxis"), sky.minor / ARCSEC, rtol=1e-14)
    np.testing.assert_allclose(_lsm_values(model, "Orientation"), sky.position_angle / DEG, rtol=1e-14)
    ours = read_bbs_patches(path)
    theirs = model.getPatchPositions()
    assert sorted(map(str, theirs)) == sorted(ours)
    for name, (ra, dec) in theirs.items():
        assert np.radians([ra.deg, dec.deg]) == pytest.approx(ours[str(name)], abs=1e-9)


def test_we_read_what_lsmtool_writes(tmp_path):
    lsmtool = pytest.importorskip("lsmtool")
    source = tmp_path / "calibrators.skymodel"
    # LSMTool needs comments in column 0, no quoted names, and (to write) a patch for all
    text = CALIBRATORS.replace('"3C 48, core"', "3C48").replace("\t#", "#")
    source.write_text(text.replace("POINT, , ", "POINT, CygA, "))
    model = lsmtool.load(str(source))
    model.write(str(tmp_path / "lsmtool.skymodel"))
    ours, theirs = read_bbs(source), read_bbs(tmp_path / "lsmtool.skymodel")
    order = [theirs.name.tolist().index(n) for n in ours.name]
    theirs = theirs.select(np.array(order))
    assert theirs.patch.tolist() == ["3C196", "3C196", "CygA", "CygA", "CygA", "CygA"]
    their_patches, our_patches = read_bbs_patches(tmp_path / "lsmtool.skymodel"), read_bbs_patches(source)
    assert sorted(their_patches) == sorted(our_patches)
    for name, position in our_patches.items():
        assert their_patches[name] == pytest.approx(position, abs=1e-6)
    np.testing.assert_array_equal(theirs.log_si, ours.log_si)
    np.testing.assert_array_equal(theirs.ref_freq, ours.ref_freq)
    np.testing.assert_allclose(theirs.spectral_index, ours.spectral_index)
    np.testing.assert_allclose(theirs.ra, ours.ra, atol=1e-7)  # LSMTool writes 0.01 s / 0.1"
    np.testing.assert_allclose(theirs.dec, ours.dec, atol=1e-6)
    np.testing.assert_allclose(theirs.stokes, ours.stokes)
    np.testing.assert_allclose(theirs.shape_params[ours.is_gaussian], ours.shape_params[ours.is_gaussian])
