"""The predict stage: lazy, chunked, and equal to the single-chunk kernel."""

from __future__ import annotations

import dask
import dask.array as da
import numpy as np
import pytest

from daskcal.data.schema import check_visibility_xds
from daskcal.kernels import dft
from daskcal.sky.model import SkyModel
from daskcal.stages.predict import PredictConfig, dft_predict, predict


def _raise_if_computed(*args, **kwargs):
    raise AssertionError("the graph was computed")


NO_COMPUTE = {"scheduler": _raise_if_computed}


@pytest.fixture
def arrays():
    rng = np.random.default_rng(7)
    n_time, n_bl, n_chan, n_src, n_ant = 7, 10, 11, 4, 5
    lm = rng.uniform(-0.05, 0.05, (n_src, 2))
    return dict(
        uvw=rng.normal(0, 1000.0, (n_time, n_bl, 3)),
        freq=np.linspace(130e6, 160e6, n_chan),
        lmn=np.concatenate([lm, np.sqrt(1 - (lm**2).sum(1, keepdims=True))], 1),
        coh=rng.normal(size=(n_src, n_chan, 4)) + 1j * rng.normal(size=(n_src, n_chan, 4)),
        shape=np.array([[1e-3, 5e-4, 0.3], [0, 0, 0], [2e-3, 2e-3, 0.0], [0, 0, 0]]),
        jones=rng.normal(size=(n_time, n_ant, n_src, n_chan, 2))
        + 1j * rng.normal(size=(n_time, n_ant, n_src, n_chan, 2)),
        a1=rng.integers(0, n_ant, n_bl), a2=rng.integers(0, n_ant, n_bl))


@pytest.mark.parametrize("with_jones", [False, True])
def test_chunked_equals_single_chunk_numpy(arrays, with_jones):
    a = arrays
    extra = (a["jones"], a["a1"], a["a2"]) if with_jones else ()
    ref = dft.dft_predict(a["uvw"], a["freq"], a["lmn"], a["coh"], a["shape"], *extra)
    with dask.config.set(NO_COMPUTE):
        lazy = dft_predict(da.from_array(a["uvw"], chunks=(3, 4, 3)),
                           da.from_array(a["freq"], chunks=4), a["lmn"], a["coh"], a["shape"],
                           *[da.from_array(x) if x.ndim == 5 else x for x in extra])
    assert lazy.chunks == ((3, 3, 1), (10,), (4, 4, 3), (4,))
    got = lazy.compute(scheduler="sync")
    # the channel recurrence restarts at each chunk: equal to complex64 precision
    np.testing.assert_allclose(got, ref, rtol=0, atol=1e-6 * np.abs(ref).max())


def test_predict_adds_model_lazily_and_matches_reference():
    from daskcal.data.model import make_visibility_xds

    rng = np.random.default_rng(3)
    n_time, n_ant, n_chan = 4, 5, 6
    a1, a2 = np.triu_indices(n_ant, 1)
    uvw = rng.normal(0, 500.0, (n_time, a1.size, 3))
    freq = np.linspace(140e6, 150e6, n_chan)
    vis = da.zeros((n_time, a1.size, n_chan, 2), dtype=np.complex64, chunks=(2, -1, 3, -1))
    xds = make_visibility_xds(
        time_s=1.7e9 + np.arange(n_time), frequency_hz=freq, polarization=["RR", "LL"],
        antenna_names=[f"a{k}" for k in range(n_ant)], antenna1=a1, antenna2=a2,
        visibility=vis, uvw_m=da.from_array(uvw, chunks=(2, -1, -1)), integration_time_s=1.0,
        channel_width_hz=freq[1] - freq[0])
    ra0, dec0 = 1.0, 0.5
    sky = SkyModel.from_components(name=["a", "b"], ra=[ra0, ra0 + 0.01], dec=[dec0, dec0 - 0.02],
                                   stokes_i=[2.0, 1.0], stokes_v=[0.1, 0.0], ref_freq=145e6,
                                   spectral_index=[[-0.8], [0.5]], major=[0.0, 1e-3],
                                   minor=[0.0, 5e-4], position_angle=[0.0, 1.0])
    with dask.config.set(NO_COMPUTE):
        out = predict(xds, sky, [ra0, dec0], config=PredictConfig(precision="double"))
    assert "VISIBILITY_MODEL" in out and "model" in out.attrs["data_groups"]
    assert out["VISIBILITY_MODEL"].chunks == ((2, 2), (10,), (3, 3), (2,))
    assert check_visibility_xds(out) == []
    coh = dft.stokes_to_coherency(sky.flux(freq), ["RR", "LL"])
    ref = dft.dft_predict(uvw, freq, sky.lmn(ra0, dec0), coh, sky.shape_params,
                          out_dtype=np.complex128)
    got = out["VISIBILITY_MODEL"].values
    assert got.dtype == np.complex128
    np.testing.assert_allclose(got, ref, rtol=0, atol=1e-10 * np.abs(ref).max())
    # RR - LL = 2 V of the point source at the phase centre (the Gaussian has no V)
    expected = 2 * 0.1 * (freq / 145e6) ** -0.8
    np.testing.assert_allclose(got[..., 0] - got[..., 1], np.broadcast_to(expected, got.shape[:3]),
                               rtol=1e-10)


def test_predict_of_an_empty_sky_is_zero(arrays):
    a = arrays
    lazy = dft_predict(da.from_array(a["uvw"], chunks=(3, -1, -1)), a["freq"], np.zeros((0, 3)),
                       np.zeros((0, a["freq"].size, 4), complex))
    assert not lazy.compute(scheduler="sync").any()


def test_bad_arguments(arrays):
    a = arrays
    with pytest.raises(ValueError, match="antenna1"):
        dft_predict(a["uvw"], a["freq"], a["lmn"], a["coh"], jones=a["jones"])
    with pytest.raises(ValueError, match="coherency"):
        dft_predict(a["uvw"], a["freq"], a["lmn"], a["coh"][..., 0])
    with pytest.raises(ValueError, match="receptors"):
        dft_predict(a["uvw"], a["freq"], a["lmn"], a["coh"][..., :3])
    with pytest.raises(ValueError):
        PredictConfig(precision="half")
