"""The gridding stage: lazy, chunked, and equal to the single-chunk kernels."""

from __future__ import annotations

import dask
import dask.array as da
import numpy as np
import pytest

from daskcal.data.model import make_visibility_xds
from daskcal.data.schema import check_visibility_xds
from daskcal.kernels import gridding as k
from daskcal.stages.gridding import (
    GriddingConfig,
    dirty_image,
    make_dirty_image,
    max_baseline_m,
    plan_gridding,
    predict_model,
    predict_vis,
)


def _raise_if_computed(*args, **kwargs):
    raise AssertionError("the graph was computed")


NO_COMPUTE = {"scheduler": _raise_if_computed}
NPIX = 128
PIX = np.radians(2.0) / NPIX


@pytest.fixture(scope="module")
def arrays():
    """(time, baseline, ...) arrays: 8 times x 66 baselines (to 20 km) x 6 channels."""
    rng = np.random.default_rng(4)
    n_ant, n_time, n_chan = 12, 8, 6
    pos = rng.uniform(-1.0, 1.0, (n_ant, 3)) * np.array([10e3, 10e3, 100.0])
    a1, a2 = np.triu_indices(n_ant, 1)
    ha = np.linspace(-1.0, 1.0, n_time) * np.pi / 12
    b = pos[a2] - pos[a1]
    dec = np.radians(40.0)
    u = np.sin(ha)[:, None] * b[:, 0] + np.cos(ha)[:, None] * b[:, 1]
    v = (-np.sin(dec) * np.cos(ha)[:, None] * b[:, 0] + np.sin(dec) * np.sin(ha)[:, None]
         * b[:, 1] + np.cos(dec) * b[:, 2])
    w = (np.cos(dec) * np.cos(ha)[:, None] * b[:, 0] - np.cos(dec) * np.sin(ha)[:, None]
         * b[:, 1] + np.sin(dec) * b[:, 2])
    uvw = np.stack([u, v, w], -1)
    shape = (n_time, a1.size, n_chan)
    vis = (rng.normal(size=shape) + 1j * rng.normal(size=shape)).astype(np.complex64)
    weight = rng.uniform(0.5, 1.5, shape)
    flag = rng.random(shape) < 0.05
    uvw[3, 7] = np.nan  # a missing row
    flag[3, 7] = True
    freq = np.linspace(140e6, 160e6, n_chan)
    return dict(uvw=uvw, freq=freq, vis=vis, weight=weight, flag=flag, pos=pos, a1=a1, a2=a2)


def _plan(a, method, eps=1e-4, **kw):
    w_max = np.nanmax(np.abs(a["uvw"][..., 2])) * a["freq"].max() / 299_792_458.0
    return k.make_plan(NPIX, NPIX, PIX, PIX, eps, w_min=0.0, w_max=w_max, method=method,
                       double_accum=True, **kw)


def _rows(a):
    nf = a["freq"].size
    return (a["uvw"].reshape(-1, 3), a["freq"], a["vis"].reshape(-1, nf),
            a["weight"].reshape(-1, nf), a["flag"].reshape(-1, nf))


@pytest.mark.parametrize("method", ["wstack", "wproject"])
@pytest.mark.parametrize("reduce", ["grid", "image"])
def test_chunked_dirty_image_equals_single_chunk(arrays, method, reduce):
    a = arrays
    plan = _plan(a, method)
    ref = k.dirty_image(*_rows(a), plan=plan)
    with dask.config.set(NO_COMPUTE):
        img = dirty_image(da.from_array(a["uvw"], chunks=(3, 40, 3)),
                          da.from_array(a["freq"], chunks=4),
                          da.from_array(a["vis"], chunks=(3, 40, 4)),
                          da.from_array(a["weight"], chunks=(2, 66, 6)),
                          da.from_array(a["flag"], chunks=(3, 40, 4)),
                          plan=plan, reduce=reduce, split_every=2)
    assert img.shape == (NPIX, NPIX) and img.chunks == ((NPIX,), (NPIX,))
    got = img.compute(scheduler="sync")
    # only the order of the float additions differs
    np.testing.assert_allclose(got, ref, rtol=0, atol=1e-6 * np.abs(ref).max())


@pytest.mark.parametrize("method", ["wstack", "wproject"])
def test_chunked_predict_equals_single_chunk(arrays, method):
    a = arrays
    plan = _plan(a, method, eps=1e-6)
    rng = np.random.default_rng(1)
    model = np.zeros((NPIX, NPIX))
    model[rng.integers(0, NPIX, 10), rng.integers(0, NPIX, 10)] = 1.0
    u, f, _, w, fl = _rows(a)
    ref = k.predict_vis(model, u, f, weight=w, flag=fl, plan=plan).reshape(a["vis"].shape)
    with dask.config.set(NO_COMPUTE):
        vis = predict_vis(da.from_array(model), da.from_array(a["uvw"], chunks=(3, 40, 3)),
                          da.from_array(a["freq"], chunks=4), a["weight"], a["flag"],
                          plan=plan)
    assert vis.chunks == ((3, 3, 2), (40, 26), (4, 2))
    got = vis.compute(scheduler="sync")
    assert got.dtype == plan.vis_dtype
    # the channel phase recurrence restarts at each frequency chunk: equal to rounding
    np.testing.assert_allclose(got, ref, rtol=0, atol=1e-12 * np.abs(ref).max())


def _dataset(a, chunked=True):
    vis = np.stack([a["vis"], 0.5 * a["vis"], 0 * a["vis"], 1.5 * a["vis"]], axis=3)
    flag = np.repeat(a["flag"][..., None], 4, axis=3)
    weight = np.repeat(a["weight"][..., None], 4, axis=3).astype(np.float32)
    n_time = vis.shape[0]
    args = dict(visibility=vis, uvw_m=a["uvw"], flag=flag, weight=weight)
    if chunked:
        args = {key: da.from_array(x, chunks=(3,) + x.shape[1:2] + (4,) * (x.ndim > 2)
                                   + x.shape[3:])
                for key, x in args.items()}
    return make_visibility_xds(
        time_s=1.7e9 + np.arange(n_time), frequency_hz=a["freq"],
        polarization=["XX", "XY", "YX", "YY"],
        antenna_names=[f"a{i}" for i in range(a["pos"].shape[0])], antenna1=a["a1"],
        antenna2=a["a2"], integration_time_s=1.0,
        channel_width_hz=a["freq"][1] - a["freq"][0], **args)


def test_make_dirty_image_of_a_dataset(arrays):
    a = arrays
    xds = _dataset(a)
    cfg = GriddingConfig(npix_x=NPIX, npix_y=NPIX, pixsize_x_rad=PIX, pixsize_y_rad=PIX,
                         epsilon=1e-5, double_accum=True)
    bound = 30e3
    with dask.config.set(NO_COMPUTE):
        img = make_dirty_image(xds, cfg, max_w_m=bound)
    assert img.dims == ("l", "m") and img.attrs["accuracy_estimate"] <= 1e-5
    # Stokes I = (XX + YY) / 2 with weight 4 wx wy / (wx + wy) = 2 w for equal weights
    plan = plan_gridding(cfg, a["freq"], bound, a["vis"].size)
    u, f, _, w, fl = _rows(a)
    u = u * np.array([-1.0, -1.0, 1.0])  # the data model (the MS's) is ducc0's with u, v negated
    ref = k.dirty_image(u, f, (a["vis"] * 1.25).reshape(u.shape[0], -1), 2 * w, fl, plan=plan)
    # WEIGHT is float32 in the data model: equal to its rounding
    np.testing.assert_allclose(img.values, ref, rtol=0, atol=1e-5 * np.abs(ref).max())
    np.testing.assert_allclose(img["l"].values[NPIX // 2], 0.0)


def test_predict_model_adds_a_data_group(arrays):
    a = arrays
    xds = _dataset(a)
    cfg = GriddingConfig(npix_x=NPIX, npix_y=NPIX, pixsize_x_rad=PIX, pixsize_y_rad=PIX,
                         epsilon=1e-4)
    model = np.zeros((NPIX, NPIX))
    model[60, 70] = 2.0
    with dask.config.set(NO_COMPUTE):
        out = predict_model(xds, model, cfg, max_w_m=30e3)
    assert "VISIBILITY_MODEL" in out and "model" in out.attrs["data_groups"]
    assert check_visibility_xds(out) == []
    got = out["VISIBILITY_MODEL"].values
    assert np.all(got[..., 1:3] == 0)
    np.testing.assert_array_equal(got[..., 0], got[..., 3])
    assert np.all(got[3, 7] == 0)  # the missing row
    # flagged samples with finite uvw are predicted: |V| of a 2 Jy point ~ 2 / n
    assert np.allclose(np.abs(got[0, 0, :, 0]), 2.0, rtol=1e-3)


def test_lazy_uvw_needs_a_w_bound_and_bad_arguments(arrays):
    a = arrays
    xds = _dataset(a)
    cfg = GriddingConfig(npix_x=NPIX, npix_y=NPIX, pixsize_x_rad=PIX, pixsize_y_rad=PIX)
    with pytest.raises(ValueError, match="max_w_m"):
        make_dirty_image(xds, cfg)
    with pytest.raises(ValueError, match="correlation"):
        make_dirty_image(xds, cfg.model_copy(update={"correlation": "RR"}), max_w_m=1e3)
    with pytest.raises(ValueError, match="reduce"):
        dirty_image(a["uvw"], a["freq"], a["vis"], plan=_plan(a, "wstack"), reduce="sum")
    # numpy-backed UVW: the bound comes from the data
    img = make_dirty_image(_dataset(a, chunked=False), cfg)
    assert img.shape == (NPIX, NPIX)


def test_max_baseline_bounds_w(arrays):
    from daskcal.data.model import make_antenna_xds

    a = arrays
    ant = make_antenna_xds([f"a{i}" for i in range(a["pos"].shape[0])], a["pos"], 30.0,
                           telescope_name="test")
    assert max_baseline_m(ant) >= np.nanmax(np.abs(a["uvw"][..., 2]))


def test_data_model_convention_images_a_dft_source_where_it_is(arrays):
    """A source predicted by the DFT kernel (the data model's convention), far enough off
    centre that the w term matters, images at its pixel, and predict_model reproduces it."""
    from daskcal.kernels.dft import dft_predict

    a = arrays
    xds = _dataset(a, chunked=False)
    uvw = np.nan_to_num(a["uvw"])
    ix, iy = 90, 30  # pixel of the source (axis 0 = l, axis 1 = m)
    l0, m0 = (ix - NPIX // 2) * PIX, (iy - NPIX // 2) * PIX
    lmn = np.array([[l0, m0, np.sqrt(1 - l0 ** 2 - m0 ** 2)]])
    coh = np.zeros((1, a["freq"].size, 4), complex)
    coh[:, :, 0] = coh[:, :, 3] = 1.0  # unpolarised 1 Jy: XX = YY = 1
    vis = dft_predict(uvw, a["freq"], lmn, coh, out_dtype=np.complex128)
    xds["VISIBILITY"] = xds.VISIBILITY.copy(data=vis.astype(np.complex64))
    xds["FLAG"] = xds.FLAG.copy(data=np.zeros(xds.FLAG.shape, bool))
    xds["UVW"] = xds.UVW.copy(data=uvw)
    cfg = GriddingConfig(npix_x=NPIX, npix_y=NPIX, pixsize_x_rad=PIX, pixsize_y_rad=PIX,
                         epsilon=1e-5, divide_by_n=False)
    img = make_dirty_image(xds, cfg, max_w_m=30e3).values
    assert np.unravel_index(np.argmax(img), img.shape) == (ix, iy)
    wsum = 2 * xds.WEIGHT.values[..., 0].sum()  # Stokes I weights
    np.testing.assert_allclose(img[ix, iy] / wsum, 1.0, rtol=1e-3)
    model = np.zeros((NPIX, NPIX))
    model[ix, iy] = 1.0
    pred = predict_model(xds, model, cfg, max_w_m=30e3)["VISIBILITY_MODEL"].values
    np.testing.assert_allclose(pred[..., 0], vis[..., 0], atol=1e-4)
