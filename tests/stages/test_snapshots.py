"""Snapshot series: per-interval images against image() and a direct DFT, laziness, graph size."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import dask
import numpy as np
import pytest
import xarray as xr

from daskcal.stages.imaging import image
from daskcal.stages.imaging.snapshots import SnapshotConfig, snapshot_images

sys.path.insert(0, str(Path(__file__).parent))
from test_image import SOURCES, fit_peak, sim_config, true_pixels

C_M_S = 299_792_458.0
BASE = dict(npix=64, cell_arcsec=20.0, interval_s=240.0, chan_per_subband=2)


@pytest.fixture(scope="module")
def node():
    from daskcal.testing import simulate_observation

    obs, _ = simulate_observation(sim_config())  # 15 x 120 s, 4 channels, chunks (8, 2)
    return obs[next(iter(obs.children))]


def _raise_if_computed(*args, **kwargs):
    raise RuntimeError("the graph was computed while it was being built")


def _view(node, **isel):
    tree = {"/": node.to_dataset(inherit=False).isel(**isel)}
    for name, child in node.children.items():
        tree[name] = child.to_dataset(inherit=False)
    return xr.DataTree.from_dict(tree)


def snapshot_layer_tasks(arr) -> int:
    layers = arr.__dask_graph__().layers
    return sum(len(lay) for name, lay in layers.items() if name.startswith("snapshot-image"))


@pytest.fixture(scope="module")
def snaps(node):
    with dask.config.set(scheduler=_raise_if_computed):  # building computes nothing
        ds = snapshot_images(node, {**BASE, "weighting": "briggs"})
    return ds, ds.compute()


def test_lazy_and_graph_size(node, snaps):
    ds, _ = snaps
    assert ds.sizes == {"time": 8, "subband": 2, "l": 64, "m": 64}  # 15 = 7 x 2 + 1
    assert ds.DIRTY.chunks[:2] == ((1,) * 8, (1, 1))
    assert snapshot_layer_tasks(ds.DIRTY.data) == 8 * 2
    with dask.config.set(scheduler=_raise_if_computed):
        finer = snapshot_images(node, {**BASE, "interval_s": 120.0, "chan_per_subband": 1})
    assert snapshot_layer_tasks(finer.DIRTY.data) == 15 * 4
    np.testing.assert_allclose(ds.time_end - ds.time_start, [240.0] * 7 + [120.0])


def test_each_snapshot_is_image_of_its_data(node, snaps):
    """Every (interval, subband) equals image()'s dirty image of that data alone."""
    _, out = snaps
    for it in range(8):
        for sb in range(2):
            view = _view(node, time=slice(2 * it, 2 * it + 2),
                         frequency=slice(2 * sb, 2 * sb + 2))
            ref = image(view, dict(npix=64, cell_arcsec=20.0, niter=0, weighting="briggs"),
                        backend="numpy")
            got = out.DIRTY.values[it, sb]
            scale = np.abs(ref.DIRTY.values).max()
            assert np.abs(got - ref.DIRTY.values).max() < 1e-4 * scale, (it, sb)
            assert out.SUM_WEIGHTS.values[it, sb] == pytest.approx(ref.attrs["sum_weights"],
                                                                   rel=1e-4)
            assert out.time.values[it] == pytest.approx(view["time"].values.mean())


def test_direct_dft(node):
    """Natural-weighted snapshot against a direct (numpy) Fourier sum of its samples."""
    cfg = dict(npix=32, cell_arcsec=40.0, interval_s=120.0, chan_per_subband=1,
               weighting="natural")
    out = snapshot_images(node, cfg).DIRTY.isel(time=5, subband=3).values
    vx = node.to_dataset(inherit=False).isel(time=5, frequency=3)
    vis = 0.5 * (vx.VISIBILITY.sel(polarization="RR") + vx.VISIBILITY.sel(polarization="LL"))
    vis = np.asarray(vis.values, dtype=np.complex128)
    uvw = np.asarray(vx.UVW.values) * float(vx.frequency) / C_M_S  # wavelengths
    cell = math.radians(40.0 / 3600)
    lm = (np.arange(32) - 16) * cell
    l, m = np.meshgrid(lm, lm, indexing="ij")
    n1 = np.sqrt(1 - l * l - m * m) - 1
    ph = -2j * np.pi * (uvw[:, 0, None, None] * l + uvw[:, 1, None, None] * m
                       + uvw[:, 2, None, None] * n1)
    ref = (vis[:, None, None] * np.exp(ph)).real.mean(axis=0)  # equal weights
    np.testing.assert_allclose(out, ref, rtol=0, atol=1e-4 * np.abs(ref).max())


def test_clean_and_restore(node):
    cfg = {**BASE, "interval_s": 600.0, "chan_per_subband": 4, "npix": 128,
           "cell_arcsec": 10.0, "niter": 2000, "auto_threshold": None, "threshold_jy": 1e-3,
           "dtype": "float64", "weighting": "natural"}
    out = snapshot_images(node, cfg).isel(time=0, subband=0).compute()
    beam = (float(out.BEAM_MAJOR), float(out.BEAM_MINOR), float(out.BEAM_PA))
    assert all(np.isfinite(beam)) and out.N_ITER > 0
    assert out.MODEL.sum().item() == pytest.approx(sum(s[2] for s in SOURCES), rel=0.02)
    for x, y, (_, _, s) in zip(*true_pixels(), SOURCES, strict=True):
        fx, fy, amp = fit_peak(out.RESTORED.values, int(round(x)), int(round(y)), beam,
                               out.attrs["cell_rad"])
        assert amp == pytest.approx(s, rel=0.02) and abs(fx - x) < 0.2 and abs(fy - y) < 0.2
    # the minor cycle is image-plane: RESIDUAL = DIRTY - MODEL * PSF, the PSF being the
    # w-corrected response to a point at the phase centre: the dirty image of unit
    # visibilities, twice the size (natural weights do not depend on the image size)
    from daskcal.kernels.deconvolution import PsfConvolver

    view = _view(node, time=slice(0, 5))
    nat = dict(cell_arcsec=10.0, niter=0, weighting="natural")
    ref = image(view, dict(nat, npix=128), backend="numpy")
    ones = view.copy()
    ones["VISIBILITY"] = xr.ones_like(view["VISIBILITY"])
    psf = image(ones, dict(nat, npix=256), backend="numpy").DIRTY.values
    expect = ref.DIRTY.values - PsfConvolver(psf)(out.MODEL.values)
    np.testing.assert_allclose(out.RESIDUAL.values, expect, rtol=0, atol=1e-4)
    assert np.abs(out.RESIDUAL.values).max() < 0.01  # slow Hogbom tail at the sidelobes


def test_flagged_interval_is_nan_and_zarr_write(node, tmp_path):
    vx = node.to_dataset(inherit=False)
    vx["FLAG"] = vx.FLAG | (vx.time <= vx.time[1])
    tree = {"/": vx, **{k: c.to_dataset(inherit=False) for k, c in node.children.items()}}
    flagged = xr.DataTree.from_dict(tree)
    ds = snapshot_images(flagged, BASE)
    with dask.config.set(scheduler=_raise_if_computed):
        delayed = ds.to_zarr(tmp_path / "snap.zarr", compute=False, consolidated=False)
    delayed.compute()
    back = xr.open_zarr(tmp_path / "snap.zarr", consolidated=False)
    assert np.isnan(back.DIRTY.values[0]).all() and back.SUM_WEIGHTS.values[0].tolist() == [0, 0]
    assert np.isfinite(back.DIRTY.values[1:]).all()


def test_config():
    with pytest.raises(ValueError, match="exactly one"):
        SnapshotConfig(npix=64)
    with pytest.raises(ValueError, match="extra"):
        SnapshotConfig(npix=64, cell_arcsec=1.0, intervals=3)
    assert SnapshotConfig(npix=64, cell_arcsec=1.0, niter=5).products[-1] == "RESTORED"
