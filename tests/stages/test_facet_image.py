"""Facet imaging: DD-corrected, phase-shifted facet data against a direct DFT, facet images
against the injected sources (truth gains and solved gains), DI-only images, laziness."""

from __future__ import annotations

import dataclasses
import math

import dask
import dask.array as da
import numpy as np
import pytest
import xarray as xr
from scipy import optimize

from daskcal.data.chunking import chunk_data_vars
from daskcal.data.geometry import baseline_uvw, lmn_of
from daskcal.data.schema import check_visibility_xds
from daskcal.sky.facets import make_facets
from daskcal.sky.model import SkyModel
from daskcal.stages.facets import DDSolveStep, FacetConfig, plan_facets, solve_facets
from daskcal.stages.imaging.facet_image import (
    FacetImageConfig,
    FacetImageError,
    facet_pixel_mask,
    facet_visibilities,
    image_facets,
)
from daskcal.testing import simulate_observation
from daskcal.testing.corruptions import TEC_PHASE_RAD_HZ

RA0, DEC0 = 123.4, 48.2
PC = np.radians([RA0, DEC0])
#: (east offset deg, north offset deg, flux Jy): one source per facet
SOURCES = [(0.6, 0.5, 5.0), (-0.7, 0.4, 4.0), (0.1, -0.7, 3.0), (-0.6, -0.5, 2.0)]
#: offsets (east, north arcmin) of the facet directions from their sources: the sources
#: then sit at known sub-pixel positions off the facet image centres
OFFSETS_ARCMIN = [(3.3, -2.1), (-2.6, 1.7), (1.2, 3.1), (-2.9, -1.3)]
NAMES = [f"P{k}" for k in range(len(SOURCES))]
INTEGRATION_S, CHANNEL_HZ = 10.0, 2e6
C_M_S = 299_792_458.0
IMAGE = dict(cell_arcsec=40.0, niter=600, auto_threshold=3.0, weighting="briggs", robust=0.0)


def _raise_on_compute(*args, **kwargs):
    raise AssertionError("the graph was computed while it was being built")


def sim_config(tec_rms_tecu: float = 0.08) -> dict:
    """24 core stations, 48 x 10 s, 6 x 2 MHz, four point sources behind TEC screens."""
    comps = [{"name": f"s{k}", "ra_deg": RA0 + dx / math.cos(math.radians(DEC0)),
              "dec_deg": DEC0 + dy, "flux_jy": s, "spectral_index": [0.0],
              "ref_freq_hz": 135e6, "patch": NAMES[k]}
             for k, (dx, dy, s) in enumerate(SOURCES)]
    return {"lofar": {"n_core": 24, "n_remote": 0, "split_core": False}, "ra_deg": RA0,
            "dec_deg": DEC0, "duration_s": 480, "integration_s": INTEGRATION_S, "n_chan": 6,
            "freq_start_hz": 130e6, "channel_width_hz": CHANNEL_HZ, "aberration": False,
            "sky": {"preset": "none", "components": comps}, "gains": {"enabled": False},
            "screens": {"enabled": True, "tec_rms_tecu": tec_rms_tecu, "inner_scale_km": 2.0,
                        "speed_m_s": 20.0},
            "noise": {"enabled": True, "sefd_jy": 300.0},
            "chunks": {"time": 16, "frequency": 3}, "seed": 3}


def truth_gains(node, tec, ra, dec) -> xr.Dataset:
    """The injected DD gains exp(i TEC_PHASE_RAD_HZ TEC / f), one cell per sample, in the
    layout of solve_facets (direction ``k`` = source ``k``)."""
    times, freq = node["time"].values, node["frequency"].values
    g = np.exp(1j * TEC_PHASE_RAD_HZ * tec[:, None, :, :] / freq[None, :, None, None])
    g = np.repeat(g[..., None], 2, axis=-1)  # (time, chan, ant, dir, receptor)
    dims = ("gain_time", "gain_frequency", "antenna_name", "direction", "receptor")
    return xr.Dataset(
        {"GAIN": (dims, g), "GAIN_FLAG": (dims, np.zeros(g.shape, bool))},
        coords={"gain_time": times,
                "gain_time_lower": ("gain_time", times - INTEGRATION_S / 2),
                "gain_time_upper": ("gain_time", times + INTEGRATION_S / 2),
                "gain_frequency": freq,
                "gain_frequency_lower": ("gain_frequency", freq - CHANNEL_HZ / 2),
                "gain_frequency_upper": ("gain_frequency", freq + CHANNEL_HZ / 2),
                "antenna_name": node["antenna_xds"]["antenna_name"].values,
                "direction": NAMES, "direction_ra": ("direction", ra),
                "direction_dec": ("direction", dec), "receptor": ["X", "Y"]})


@pytest.fixture(scope="module")
def sim():
    """Lazy node, numpy node, truth, sky, facets about offset directions, truth gains."""
    obs, truth = simulate_observation(sim_config(), direction_truth=True)
    lazy = obs[next(iter(obs.children))]
    node = lazy.compute()
    truth = truth.compute()
    sky = SkyModel.from_dataset(truth["sky"].to_dataset())
    off = np.radians(np.array(OFFSETS_ARCMIN) / 60.0)
    ra = sky.ra + off[:, 0] / np.cos(sky.dec)
    dec = sky.dec + off[:, 1]
    facets = make_facets(NAMES, ra, dec, PC, math.radians(2.4))
    gains = truth_gains(node, truth["screens"]["TEC"].values, ra, dec)
    return {"lazy": lazy, "node": node, "truth": truth, "sky": sky, "facets": facets,
            "gains": gains}


def fit_peak(img, i, j, beam, cell, half=3):
    """Sub-pixel Gaussian fit (restoring-beam shape) about pixel (i, j): (x, y, amplitude)."""
    bmaj, bmin, bpa = beam
    ii, jj = np.mgrid[i - half:i + half + 1, j - half:j + half + 1]
    y = img[ii, jj].ravel()

    def g(p):
        l, m = (ii - p[0]) * cell, (jj - p[1]) * cell
        a = l * math.sin(bpa) + m * math.cos(bpa)
        b = l * math.cos(bpa) - m * math.sin(bpa)
        return (p[2] * np.exp(-4 * math.log(2) * ((a / bmaj) ** 2 + (b / bmin) ** 2))).ravel()

    return optimize.least_squares(lambda p: g(p) - y, [i, j, img[i, j]]).x


def source_pixel(img, ra, dec):
    """True (x, y) pixel position of a direction in an image (axis 0 l, centre npix // 2)."""
    lmn = lmn_of(np.atleast_1d(ra), np.atleast_1d(dec), *img.attrs["phase_centre_rad"])[0]
    npix = img.sizes["l"]
    return lmn[0] / img.cell_rad + npix // 2, lmn[1] / img.cell_rad + npix // 2


def measure(img, ra, dec):
    """(dx, dy, peak) of the Gaussian fit at a source's true position, pixels and Jy/beam."""
    x, y = source_pixel(img, ra, dec)
    fx, fy, amp = fit_peak(img.RESTORED.values, int(round(x)), int(round(y)),
                           (img.bmaj_rad, img.bmin_rad, img.bpa_rad), img.cell_rad)
    return fx - x, fy - y, amp


# ----------------------------------------------------------------------------- (a)


def test_facet_visibilities_equal_a_dft_at_the_facet_centre(sim):
    """One DD-corrupted source (noise-free truth): corrected and shifted = S exp(-2 pi i ...)."""
    node, truth, sky, gains = sim["node"], sim["truth"], sim["sky"], sim["gains"]
    k = 1
    one = truth["directions"]["VISIBILITY_CORRUPTED"].sel(patch=NAMES[k]).values
    vis_xds = node.to_dataset(inherit=False).assign(VISIBILITY=(
        node["VISIBILITY"].dims, one, node["VISIBILITY"].attrs))
    single = node.copy()
    single.dataset = vis_xds
    out = facet_visibilities(single, gains, NAMES[k])
    centre = np.array([gains["direction_ra"].values[k], gains["direction_dec"].values[k]])
    fx = out["field_and_source_base_xds"]["FIELD_PHASE_CENTER_DIRECTION"].values
    np.testing.assert_allclose(fx, centre[None, :], rtol=0, atol=0)
    # UVW against an independent computation at the new centre
    a1, a2 = node["antenna1"].values, node["antenna2"].values
    itrf = node["antenna_xds"]["ANTENNA_POSITION"].values
    uvw = baseline_uvw(node["time"].values, itrf, a1, a2, centre, aberration=False)
    np.testing.assert_allclose(out["UVW"].values, uvw, rtol=0, atol=1e-6)
    # the direct DFT of the true source about the facet centre
    lmn = lmn_of(sky.ra[k:k + 1], sky.dec[k:k + 1], *centre)[0]
    freq = node["frequency"].values
    phase = 2j * np.pi * (uvw @ (lmn - [0, 0, 1]))[:, :, None] * freq / C_M_S
    want = sky.stokes[k, 0] * np.exp(phase)
    got = out["VISIBILITY"].values
    pols = [str(p) for p in node["polarization"].values]
    assert pols == ["XX", "XY", "YX", "YY"]
    for c in (0, 3):
        err = np.abs(got[..., c] - want) / sky.stokes[k, 0]
        print(f"{pols[c]}: largest relative error {err.max():.2e}")
        assert err.max() < 1e-5
    assert np.abs(got[..., [1, 2]]).max() < 1e-6 * sky.stokes[k, 0]
    # phase-only gains: weights and flags unchanged; one data group, schema-valid
    np.testing.assert_allclose(out["WEIGHT"].values, node["WEIGHT"].values, rtol=1e-6)
    assert not out["FLAG"].values.any()
    vis = out.to_dataset(inherit=False)
    assert list(vis.attrs["data_groups"]) == ["base"] and check_visibility_xds(vis) == []
    assert vis["VISIBILITY"].dtype == np.complex64
    assert vis.attrs["facet"]["name"] == NAMES[k]


def test_flags_and_weights_follow_the_gains(sim):
    """Flagged gains flag (and zero) their samples; amplitudes scale the weights."""
    node, gains = sim["node"], sim["gains"]
    k, bad_ant, loud_ant, amp = 2, 3, 5, 1.5
    g = gains.copy(deep=True)
    g["GAIN_FLAG"][10:20, :, bad_ant, k, 0] = True  # receptor X of one antenna, 10 times
    g["GAIN"][:, :, loud_ant, k, :] *= amp
    out = facet_visibilities(node, g, k)
    plain = facet_visibilities(node, gains, k)
    a1, a2 = node["antenna1"].values, node["antenna2"].values
    flag = out["FLAG"].values
    pols = [str(p) for p in node["polarization"].values]
    for c, p in enumerate(pols):  # X of bad_ant: correlations X* on a1, *X on a2
        want = np.zeros(flag.shape[:3], bool)
        if p[0] == "X":
            want[10:20, a1 == bad_ant] = True
        if p[1] == "X":
            want[10:20, a2 == bad_ant] = True
        np.testing.assert_array_equal(flag[..., c], want)
    assert np.all(out["VISIBILITY"].values[flag] == 0)
    loud = (a1 == loud_ant) ^ (a2 == loud_ant)
    w_ratio = out["WEIGHT"].values / plain["WEIGHT"].values
    np.testing.assert_allclose(w_ratio[:, loud], amp**2, rtol=1e-6)
    np.testing.assert_allclose(w_ratio[:, ~loud], 1.0, rtol=1e-6)
    v_ratio = out["VISIBILITY"].values[:, loud][~flag[:, loud]] / \
        plain["VISIBILITY"].values[:, loud][~flag[:, loud]]
    np.testing.assert_allclose(v_ratio, 1 / amp, rtol=1e-5)
    with pytest.raises(FacetImageError, match="not among"):
        facet_visibilities(node, gains, "nope")
    with pytest.raises(FacetImageError, match="centre_rad"):
        facet_visibilities(node, None)
    with pytest.raises(FacetImageError, match="needs their dd_gains"):
        facet_visibilities(node, None, centre_rad=[0.0, 0.0], sky=sim["sky"])


def test_model_scale_scales_the_subtracted_directions(sim):
    """Gains with a MODEL_SCALE per direction: the other directions' models are scaled by it
    when subtracted, the facet's own data are not (the scale corrects the model)."""
    node, sky, gains = sim["node"], sim["sky"], sim["gains"]
    k = 0
    full = facet_visibilities(node, gains, NAMES[k], sky=sky)["VISIBILITY"].values
    half = dataclasses.replace(sky, stokes=0.5 * sky.stokes)
    scale = np.full((gains.sizes["gain_time"], gains.sizes["gain_frequency"],
                     gains.sizes["direction"]), 2.0)
    scale[..., k] = 7.0  # the facet's own scale must not matter
    scaled = gains.assign(MODEL_SCALE=(("gain_time", "gain_frequency", "direction"), scale))
    got = facet_visibilities(node, scaled, NAMES[k], sky=half)["VISIBILITY"].values
    np.testing.assert_allclose(got, full, rtol=0, atol=1e-4 * sky.stokes[:, 0].max())
    unscaled = facet_visibilities(node, gains, NAMES[k], sky=half)["VISIBILITY"].values
    assert np.abs(unscaled - full).max() > 0.1  # (the test can tell)


# ----------------------------------------------------------------------------- (b)


@pytest.fixture(scope="module")
def dd_images(sim):
    config = FacetImageConfig(**IMAGE)
    return image_facets(sim["node"], sim["gains"], sim["facets"], config, sky=sim["sky"],
                        backend="numpy")


def test_truth_gains_recover_flux_and_position(sim, dd_images):
    sky, facets = sim["sky"], sim["facets"]
    di = image_facets(sim["node"], None, facets, FacetImageConfig(**IMAGE), backend="numpy")
    for k, (img, plain) in enumerate(zip(dd_images, di, strict=True)):
        assert img.attrs["facet_name"] == NAMES[k] and img.attrs["dd_corrected"]
        np.testing.assert_allclose(img.attrs["phase_centre_rad"], [facets.ra[k], facets.dec[k]])
        dx, dy, peak = measure(img, sky.ra[k], sky.dec[k])
        flux = sky.stokes[k, 0]
        print(f"{NAMES[k]}: DD peak/flux {peak / flux:.4f} offset ({dx:+.3f}, {dy:+.3f}) px; "
              f"npix {img.sizes['l']}", end="; ")
        assert abs(dx) < 0.1 and abs(dy) < 0.1
        assert peak == pytest.approx(flux, rel=0.02)
        # without DD correction the phases smear the source: a much lower peak
        x, y = (int(round(v)) for v in source_pixel(plain, sky.ra[k], sky.dec[k]))
        di_peak = plain.RESTORED.values[x - 2:x + 3, y - 2:y + 3].max()
        print(f"DI peak/flux {di_peak / flux:.3f}")
        assert di_peak < 0.95 * peak
        assert not plain.attrs["dd_corrected"]
    ratios = [plain.RESTORED.values.max() / sky.stokes[k, 0] for k, plain in enumerate(di)]
    assert np.mean(ratios) < 0.85


def test_images_carry_what_a_mosaic_needs(sim, dd_images):
    """Images cover their facets; the pixel masks follow the nearest-direction rule."""
    facets = sim["facets"]
    for k, img in enumerate(dd_images):
        for key in ("phase_centre_rad", "cell_rad", "facet_name", "facet_polygon_rad",
                    "facet_tangent_rad", "bmaj_rad"):
            assert key in img.attrs
        assert img.cell_rad == pytest.approx(math.radians(40 / 3600))
        poly = np.asarray(img.attrs["facet_polygon_rad"])
        np.testing.assert_allclose(poly, facets.polygons_radec()[k])
        lmn = lmn_of(poly[:, 0], poly[:, 1], *img.attrs["phase_centre_rad"])
        half = img.sizes["l"] // 2 * img.cell_rad
        assert np.abs(lmn[:, :2]).max() < half / 1.1  # covered with the default padding 1.2
        mask = facet_pixel_mask(img)
        assert 0.2 < mask.mean() < 0.9
        l2, m2 = np.meshgrid(img["l"].values, img["m"].values, indexing="ij")
        from daskcal.data.geometry import radec_of_lm

        ra, dec = radec_of_lm(l2.ravel(), m2.ravel(), *img.attrs["phase_centre_rad"])
        field = lmn_of(ra, dec, *PC)
        in_field = (np.abs(field[:, 0]) <= facets.width_rad / 2) & \
            (np.abs(field[:, 1]) <= facets.height_rad / 2)
        nearest = facets.facet_of(ra, dec) == k
        # away from the edges (half a pixel) the mask is "in the field and nearest to k"
        lm = field[:, :2]
        c = facets.centres_lm
        d = np.sort(np.linalg.norm(lm[:, None] - c[None], axis=-1), axis=1)
        clear = (d[:, 1] - d[:, 0] > img.cell_rad) & \
            (np.abs(np.abs(lm) - facets.width_rad / 2).min(axis=1) > img.cell_rad)
        np.testing.assert_array_equal(mask.ravel()[clear], (in_field & nearest)[clear])


def test_dask_backend_masked_polygon_centre(sim, dd_images):
    """The default (dask) backend, a facet-polygon clean mask and polygon-centred images."""
    sky, k = sim["sky"], 2
    config = FacetImageConfig(**IMAGE, mask_to_facet=True, centre="polygon")
    img = image_facets(sim["node"], sim["gains"], sim["facets"], config, sky=sky,
                       names=[NAMES[k]])[0]
    assert img.attrs["facet_index"] == k
    assert not np.allclose(img.attrs["phase_centre_rad"], dd_images[k].attrs["phase_centre_rad"])
    dx, dy, peak = measure(img, sky.ra[k], sky.dec[k])
    assert abs(dx) < 0.1 and abs(dy) < 0.1
    assert peak == pytest.approx(sky.stokes[k, 0], rel=0.02)
    mask = facet_pixel_mask(img)
    assert np.all(img.MODEL.values[~mask] == 0) and img.MODEL.values[mask].sum() > 0


# ----------------------------------------------------------------------------- solved gains


def test_solved_gains_recover_flux_and_position(sim):
    """solve_facets on the data, then facet images centred on the polygons."""
    node, sky = sim["node"], sim["sky"]
    catalogue = dataclasses.replace(sky, patch=np.full(sky.n_source, ""))
    config = FacetConfig(flux_threshold_jy=1.0, min_separation_deg=0.3, field_size_deg=2.4,
                         fast=DDSolveStep(solint_time=1, solint_freq=2), slow=None,
                         scale_solint_with_flux=False)
    plan = plan_facets(catalogue, PC, config, freq_hz=135e6)
    assert plan.n_dir == len(SOURCES)
    xds = chunk_data_vars(node.to_dataset(inherit=False), {"time": 16, "frequency": 6})
    tree = solve_facets(xds, plan, PC, config).compute()
    images = image_facets(node, tree, plan.facets,
                          FacetImageConfig(**IMAGE, centre="polygon"), sky=plan.sky,
                          backend="numpy")
    for img, name, ra, dec in zip(images, plan.name, plan.ra, plan.dec, strict=True):
        k = int(np.argmin(np.hypot(sky.ra - ra, sky.dec - dec)))
        dx, dy, peak = measure(img, sky.ra[k], sky.dec[k])
        print(f"{name}: solved peak/flux {peak / sky.stokes[k, 0]:.4f}, offset "
              f"({dx:+.3f}, {dy:+.3f}) px")
        x, y = source_pixel(img, sky.ra[k], sky.dec[k])
        assert max(abs(x - img.sizes["l"] // 2), abs(y - img.sizes["m"] // 2)) > 2  # off-centre
        assert abs(dx) < 0.1 and abs(dy) < 0.1
        assert peak == pytest.approx(sky.stokes[k, 0], rel=0.03)


# ----------------------------------------------------------------------------- (c)


def test_graph_building_does_not_compute(sim):
    lazy, gains, sky, facets = sim["lazy"], sim["gains"], sim["sky"], sim["facets"]
    plan_cfg = FacetConfig(flux_threshold_jy=1.0, field_size_deg=2.4, slow=None)
    catalogue = dataclasses.replace(sky, patch=np.full(sky.n_source, ""))
    plan = plan_facets(catalogue, PC, plan_cfg, freq_hz=135e6)
    with dask.config.set(scheduler=_raise_on_compute):
        out = facet_visibilities(lazy, gains, "P0", sky=sky)
        tree = solve_facets(lazy.to_dataset(inherit=False), plan, PC, plan_cfg)
        solved = facet_visibilities(lazy, tree, 0, sky=plan.sky)
        plain = facet_visibilities(lazy, None, centre_rad=[facets.ra[0], facets.dec[0]])
    for node in (out, solved, plain):
        for var in ("VISIBILITY", "FLAG", "WEIGHT", "UVW"):
            assert isinstance(node[var].data, da.Array)
    assert out["VISIBILITY"].chunks[0] == lazy["VISIBILITY"].chunks[0]
    assert out.attrs["facet"]["subtracted_directions"] == ["P1", "P2", "P3"]


def test_config_validation():
    with pytest.raises(ValueError, match="cell_arcsec"):
        FacetImageConfig(fov_deg=2.0)
    with pytest.raises(ValueError, match="even"):
        FacetImageConfig(cell_arcsec=10, npix=101)
    with pytest.raises(ValueError):
        FacetImageConfig(cell_arcsec=10, unknown=1)
    cfg = FacetImageConfig(cell_arcsec=10, weighting="natural").image_config(128)
    assert cfg.npix == 128 and cfg.weighting == "natural" and cfg.data_group == "base"
