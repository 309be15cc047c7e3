"""Corruption building blocks: gains, screens, beam, noise and RFI."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pytest

from daskcal.data.geometry import C_M_S, geodetic_to_itrf
from daskcal.testing.corruptions import (
    GainModel,
    TecScreen,
    apply_gains,
    beam_voltage,
    noise_sigma,
    thermal_noise,
)
from daskcal.testing.rfi import RFIPlan

T0 = dt.datetime(2024, 3, 20, 19, tzinfo=dt.UTC).timestamp()


def test_gain_model_is_smooth_and_sized():
    model = GainModel.draw(8, seed=1, t_ref_s=T0, f_ref_hz=120e6, amplitude_rms=0.1,
                           phase_rms_rad=0.5, time_scale_s=1800.0, freq_scale_hz=10e6)
    times = T0 + np.arange(0, 7200, 10.0)
    freqs = 120e6 + np.arange(64) * 195312.5
    g = model.evaluate(times, freqs)
    assert g.shape == (720, 64, 8, 2) and g.dtype == np.complex64
    log_amp = np.log(np.abs(g))
    assert 0.05 < log_amp.std() < 0.2
    # smooth: 10 s steps change the gain by much less than its spread
    assert np.abs(np.diff(g, axis=0)).max() < 0.05 * np.abs(g).max()
    # evaluation on a sub-grid gives the same numbers
    assert np.array_equal(model.evaluate(times[5:9], freqs[3:7]), g[5:9, 3:7])
    other = GainModel.draw(8, seed=2, t_ref_s=T0, f_ref_hz=120e6).evaluate(times[:2], freqs[:2])
    assert not np.allclose(other, g[:2, :2])


def test_apply_gains_is_gp_v_conj_gq():
    rng = np.random.default_rng(0)
    vis = (rng.normal(size=(2, 3, 4, 4)) + 1j * rng.normal(size=(2, 3, 4, 4))).astype(np.complex64)
    gains = (rng.normal(size=(2, 4, 5, 2)) + 1j * rng.normal(size=(2, 4, 5, 2))).astype(np.complex64)
    a1, a2 = np.array([0, 1, 4]), np.array([2, 3, 4])
    out = apply_gains(vis, gains, a1, a2, ([0, 0, 1, 1], [0, 1, 0, 1]))
    t, b, f = 1, 2, 3
    gp, gq = np.diag(gains[t, f, a1[b]]), np.diag(gains[t, f, a2[b]])
    expected = gp @ vis[t, b, f].reshape(2, 2) @ gq.conj().T
    np.testing.assert_allclose(out[t, b, f].reshape(2, 2), expected, rtol=1e-5)


def test_tec_screen_statistics_and_structure():
    screen = TecScreen.draw(seed=3, t_ref_s=T0, tec_rms_tecu=0.2, outer_scale_m=50e3,
                            inner_scale_m=1e3, speed_m_s=100.0)
    rng = np.random.default_rng(0)
    en = rng.uniform(-100e3, 100e3, (400, 2))
    tec = screen.tec([T0], en, np.array([[0.0, 0.0, 1.0]]))[0, :, 0]
    assert tec.std() == pytest.approx(0.2, rel=0.35)
    # close stations see nearly the same TEC, distant ones do not
    near = screen.tec([T0], [[0, 0], [200, 0]], np.array([[0.0, 0.0, 1.0]]))[0, :, 0]
    assert abs(near[0] - near[1]) < 0.02
    # the screen drifts: same place, later time, different TEC; pierce points separate sources
    lmn = np.array([[0.0, 0.0, 1.0], [0.1, 0.0, np.sqrt(0.99)]])
    both = screen.tec([T0, T0 + 600], [[0, 0]], lmn)
    assert abs(both[0, 0, 0] - both[1, 0, 0]) > 1e-3 and abs(both[0, 0, 0] - both[0, 0, 1]) > 1e-3


def test_beam_main_lobe_sidelobes_and_horizon():
    site = geodetic_to_itrf(6.87, 52.915, 49.3)
    pointing = np.radians([123.4, 48.2])
    freq = np.array([150e6])
    theta = 1.02 * C_M_S / (150e6 * 30.75)
    # sources on the half-power circle, far away, and at the pointing
    ra = pointing[0] + np.array([0.0, theta / 2 / np.cos(pointing[1]), 1.0])
    dec = np.full(3, pointing[1])
    e = beam_voltage([T0], freq, ra, dec, pointing, [30.75], site, sidelobe_level=0.0,
                     elevation_exponent=0.0)[0, 0, :, 0]
    assert e[0] == pytest.approx(1.0) and e[1] ** 2 == pytest.approx(0.5, rel=1e-3)
    assert e[2] < 1e-6
    floor = beam_voltage([T0], freq, ra, dec, pointing, [30.75], site, sidelobe_level=1e-3)
    assert floor[0, 0, 2, 0] ** 2 == pytest.approx(1e-3, rel=0.5)
    # a source at the south celestial pole never rises in the Netherlands
    below = beam_voltage([T0], freq, [0.0], [-np.pi / 2 + 0.01], pointing, [30.75], site)
    assert below.max() == 0.0


def test_noise_is_slab_reproducible():
    sigma = np.array([1.0, 2.0, 3.0])
    full = thermal_noise(5, np.arange(4), np.arange(6), sigma, 2)
    part = thermal_noise(5, np.arange(2, 4), np.arange(3, 5), sigma, 2)
    assert np.array_equal(part, full[2:4, :, 3:5])
    assert not np.array_equal(thermal_noise(6, np.arange(4), np.arange(6), sigma, 2), full)
    np.testing.assert_allclose(noise_sigma([100.0, 400.0], [0, 0], [0, 1], 1e6, 2.0),
                               [100.0 / 2000.0, 200.0 / 2000.0])


def test_rfi_plan_blocks_and_counts():
    plan = RFIPlan.draw(seed=1, n_time=50, n_bl=20, n_chan=32, n_lines=2, line_width_chan=2,
                        line_strength=10, n_bursts=2, burst_steps=3, burst_band_fraction=0.5,
                        burst_strength=4, spike_probability=0.01, spike_strength=30)
    sigma = np.linspace(1, 2, 20)
    full = plan.block(np.arange(50), np.arange(32), sigma, 4)
    part = plan.block(np.arange(10, 23), np.arange(7, 20), sigma, 4)
    assert np.array_equal(part, full[10:23, :, 7:20])
    mask = full != 0
    assert mask.all(axis=(0, 1, 3)).sum() >= 2  # persistent lines, >= 2 channels wide
    n_spikes = plan.spikes.shape[0]
    assert 0.5 * 0.01 * 50 * 20 * 32 < n_spikes < 1.5 * 0.01 * 50 * 20 * 32
    t, b, c = plan.spikes[0, :3].astype(int)
    assert np.abs(full[t, b, c]).min() >= 30 * sigma[b] * (1 - 1e-6)
    assert np.all(mask == mask[..., :1])  # all correlations of a sample together
