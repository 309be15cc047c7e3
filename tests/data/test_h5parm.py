"""H5parm export: LoSoTo reads what we write, and our reader round-trips it."""

from __future__ import annotations

import h5py
import numpy as np
import pytest
import xarray as xr

from daskcal.data.h5parm import H5parmError, read_h5parm, write_h5parm
from daskcal.data.model import MJD_UNIX_OFFSET_S, make_antenna_xds

MODES = ["diagonal_complex", "diagonal_phase", "scalar_complex", "scalar_phase", "full_jones"]


def make_gains(mode="diagonal_complex", n_time=3, n_freq=5, n_ant=4, seed=0):
    """A gains dataset as solve makes it, with a few flagged cells."""
    rng = np.random.default_rng(seed)
    full = mode == "full_jones"
    shape = (n_time, n_freq, n_ant, 2) + ((2,) if full else ())
    amp = np.ones(shape) if mode.endswith("phase") else rng.uniform(0.5, 2.0, shape)
    g = amp * np.exp(1j * rng.uniform(-np.pi, np.pi, shape))
    if mode.startswith("scalar"):
        g[..., 1] = g[..., 0]
    flag = np.zeros(shape, bool)
    flag[1, 2, 3] = True
    g[flag] = 1.0
    t = 1.71e9 + 20.0 * np.arange(n_time) + 10.0
    f = 1.2e8 + 2e5 * np.arange(n_freq)
    dims = ("gain_time", "gain_frequency", "antenna_name", "receptor") + \
        (("receptor2",) if full else ())
    coords = {"gain_time": t, "gain_time_lower": ("gain_time", t - 10.0),
              "gain_time_upper": ("gain_time", t + 10.0), "gain_frequency": f,
              "gain_frequency_lower": ("gain_frequency", f - 1e5),
              "gain_frequency_upper": ("gain_frequency", f + 1e5),
              "antenna_name": [f"CS{i:03d}HBA0" for i in range(n_ant)], "receptor": ["X", "Y"]}
    if full:
        coords["receptor2"] = ["X", "Y"]
    return xr.Dataset({"GAIN": (dims, g), "GAIN_FLAG": (dims, flag)}, coords=coords,
                      attrs={"type": "gain", "mode": mode, "ref_antenna": "CS000HBA0"})


@pytest.mark.parametrize("mode", MODES)
def test_round_trip(tmp_path, mode):
    gains = make_gains(mode)
    path = write_h5parm(gains, tmp_path / "sol.h5")
    back = read_h5parm(path)
    assert back.attrs["mode"] == mode
    assert back["GAIN"].dims == gains["GAIN"].dims
    np.testing.assert_allclose(back["GAIN"].values, gains["GAIN"].values, rtol=1e-12)
    np.testing.assert_array_equal(back["GAIN_FLAG"].values, gains["GAIN_FLAG"].values)
    for name in ("gain_time", "gain_time_lower", "gain_time_upper", "gain_frequency",
                 "gain_frequency_lower", "gain_frequency_upper"):
        np.testing.assert_allclose(back[name].values, gains[name].values, rtol=0, atol=1e-6)
    assert list(back["antenna_name"].values) == list(gains["antenna_name"].values)
    with h5py.File(path, "r") as h5:  # only standard names inside a soltab
        assert set(h5["sol000/phase000"]) <= {"val", "weight", "time", "freq", "ant", "dir", "pol"}
        assert h5["sol000/phase000/val"].attrs["AXES"] in (b"time,freq,ant,dir,pol",
                                                          b"time,freq,ant,dir")


def test_dask_backed_gains_are_written(tmp_path):
    gains = make_gains().chunk({"gain_time": 1})
    back = read_h5parm(write_h5parm(gains, tmp_path / "sol.h5"))
    np.testing.assert_allclose(back["GAIN"].values, gains["GAIN"].values)


# PyTables' own deprecation noise when LoSoTo opens files
LOSOTO_WARNINGS = pytest.mark.filterwarnings("ignore::DeprecationWarning:tables",
                                             "ignore::tables.FlavorWarning")


@LOSOTO_WARNINGS
@pytest.mark.parametrize("mode", ["diagonal_complex", "scalar_phase", "full_jones"])
def test_losoto_reads_what_we_write(tmp_path, mode):
    h5parm_mod = pytest.importorskip("losoto.h5parm")
    gains = make_gains(mode)
    names = list(gains["antenna_name"].values)
    pos = 3.8e6 + np.arange(12.0).reshape(4, 3)
    ant_xds = make_antenna_xds(names, pos, 30.0, telescope_name="LOFAR")
    path = write_h5parm(gains, tmp_path / "sol.h5", antenna_xds=ant_xds,
                        direction_rad=(2.15, 0.84), direction_name="3C196")
    H = h5parm_mod.h5parm(str(path))
    try:
        ss = H.getSolset("sol000")
        assert set(ss.getSoltabNames()) == (
            {"phase000"} if mode.endswith("phase") else {"amplitude000", "phase000"})
        ant = ss.getAnt()
        assert list(ant) == names
        np.testing.assert_allclose(ant[names[2]], pos[2], rtol=1e-7)
        sou = ss.getSou()
        np.testing.assert_allclose(sou["3C196"], [2.15, 0.84], rtol=1e-6)

        st = ss.getSoltab("phase000")
        assert st.getType() == "phase"
        vals, axes = st.getValues()
        weights = st.getValues(weight=True, retAxesVals=False)
        g = gains["GAIN"].values
        flag = gains["GAIN_FLAG"].values
        if mode == "full_jones":
            g, flag = g.reshape(g.shape[:3] + (4,)), flag.reshape(flag.shape[:3] + (4,))
            pols = ["XX", "XY", "YX", "YY"]
        else:
            pols = ["XX", "YY"]
        if mode.startswith("scalar"):
            assert st.getAxesNames() == ["time", "freq", "ant", "dir"]
            g, flag = g[..., 0], flag.any(axis=-1)
        else:
            assert st.getAxesNames() == ["time", "freq", "ant", "dir", "pol"]
            assert list(axes["pol"]) == pols
        np.testing.assert_allclose(axes["time"], gains["gain_time"].values + MJD_UNIX_OFFSET_S)
        np.testing.assert_allclose(axes["freq"], gains["gain_frequency"].values)
        assert list(axes["ant"]) == names
        assert list(axes["dir"]) == ["3C196"]
        np.testing.assert_allclose(vals[:, :, :, 0], np.angle(g), rtol=1e-12)
        np.testing.assert_array_equal(weights[:, :, :, 0] == 0, flag)
        if not mode.endswith("phase"):
            amp, _ = ss.getSoltab("amplitude000").getValues()
            np.testing.assert_allclose(amp[:, :, :, 0], np.abs(g), rtol=1e-12)
    finally:
        H.close()


@LOSOTO_WARNINGS
def test_losoto_written_file_is_read(tmp_path):
    """A file made by LoSoTo itself (axis order pol,ant,freq,time; no edges) reads back."""
    h5parm_mod = pytest.importorskip("losoto.h5parm")
    path = tmp_path / "losoto.h5"
    t = 5.0e9 + 8.0 * np.arange(3)
    f = 1.3e8 + 1e6 * np.arange(4)
    ants = ["RS106HBA", "RS205HBA"]
    rng = np.random.default_rng(3)
    ph = rng.uniform(-3, 3, (2, 2, 4, 3))
    w = np.ones_like(ph)
    w[1, 0, 2, 1] = 0
    H = h5parm_mod.h5parm(str(path), readonly=False)
    ss = H.makeSolset("sol000")
    ss.makeSoltab("phase", "phase000", axesNames=["pol", "ant", "freq", "time"],
                  axesVals=[["XX", "YY"], ants, f, t], vals=ph, weights=w)
    H.close()
    back = read_h5parm(path)
    assert back.attrs["mode"] == "diagonal_phase"
    np.testing.assert_allclose(np.angle(back["GAIN"].values), ph.transpose(3, 2, 1, 0),
                               atol=1e-12)
    assert back["GAIN_FLAG"].values[1, 2, 0, 1]
    assert back["GAIN_FLAG"].values.sum() == 1
    np.testing.assert_allclose(back["gain_time"].values + MJD_UNIX_OFFSET_S, t)
    np.testing.assert_allclose(back["gain_time_upper"].values[:2],
                               back["gain_time_lower"].values[1:])


def test_errors(tmp_path):
    gains = make_gains()
    path = write_h5parm(gains, tmp_path / "sol.h5")
    with pytest.raises(H5parmError, match="exists"):
        write_h5parm(gains, path)
    write_h5parm(gains, path, overwrite=True)
    with pytest.raises(H5parmError, match="solset name"):
        write_h5parm(gains, path, solset="sol 1")
    with pytest.raises(H5parmError, match="no solution set 'sol001'"):
        read_h5parm(path, solset="sol001")
    with pytest.raises(H5parmError, match="no such H5parm file"):
        read_h5parm(tmp_path / "missing.h5")
    bad = tmp_path / "bad.h5"
    bad.write_text("not hdf5")
    with pytest.raises(H5parmError, match="not an HDF5 file") as err:
        read_h5parm(bad)
    assert "\n" not in str(err.value)
    with pytest.raises(H5parmError, match="GAIN"):
        write_h5parm(gains.drop_vars("GAIN_FLAG"), tmp_path / "x.h5")
