"""The transfer stage: exact interpolation, flags, laziness, and calibrator -> target end to end."""

from __future__ import annotations

import dask
import numpy as np
import pytest
import xarray as xr

from daskcal.data.model import iter_partitions
from daskcal.stages.apply import apply
from daskcal.stages.smooth import SmoothConfig, smooth
from daskcal.stages.solve import SolveConfig, solve
from daskcal.stages.transfer import TransferConfig, TransferError, interpolate_gains, transfer
from daskcal.testing import SimulationConfig, simulate_observation

DIMS = ("gain_time", "gain_frequency", "antenna_name", "receptor")


def _raise_on_compute(*args, **kwargs):
    raise AssertionError("the graph was computed while it was being built")


def synthetic(n_ant=4, seed=0):
    """Calibrator gains on an irregular grid; phases vary little between cells (no wraps)."""
    rng = np.random.default_rng(seed)
    t = np.array([100.0, 130.0, 190.0])
    f = np.array([1.0e8, 1.1e8, 1.15e8, 1.3e8, 1.32e8])
    shape = (t.size, f.size, n_ant, 2)
    amp = rng.uniform(0.8, 1.2, shape)
    phase = rng.uniform(-1, 1, (1, 1, n_ant, 2)) + rng.uniform(-0.5, 0.5, shape)
    return t, f, amp * np.exp(1j * phase)


def nested_interp(t, f, g, new_t, new_f, ref=0):
    """The expected result, straight from np.interp: referenced, frequency then time."""
    z = g[:, :, ref]
    g = g * (np.conj(z) / abs(z))[:, :, None]
    amp, ph = np.abs(g), np.angle(g)
    out = np.empty((new_t.size, new_f.size) + g.shape[2:], complex)
    for a in range(g.shape[2]):
        for r in range(g.shape[3]):
            af = np.array([np.interp(new_f, f, amp[i, :, a, r]) for i in range(t.size)])
            pf = np.array([np.interp(new_f, f, ph[i, :, a, r]) for i in range(t.size)])
            at = np.array([np.interp(new_t, t, af[:, k]) for k in range(new_f.size)]).T
            pt = np.array([np.interp(new_t, t, pf[:, k]) for k in range(new_f.size)]).T
            out[:, :, a, r] = at * np.exp(1j * pt)
    return out


NEW_T = np.array([90.0, 100.0, 110.0, 160.0, 189.0, 250.0])   # before, inside, after
NEW_F = np.array([0.95e8, 1.0e8, 1.05e8, 1.2e8, 1.31e8, 1.4e8])


def test_interpolation_equals_numpy_interp():
    t, f, g = synthetic()
    out, flags = interpolate_gains(g, np.zeros(g.shape, bool), t, f, NEW_T, NEW_F, ref=1)
    np.testing.assert_allclose(out, nested_interp(t, f, g, NEW_T, NEW_F, ref=1),
                               rtol=1e-12, atol=1e-14)
    assert not flags.any()
    # unsorted calibrator axes give the same answer
    out2, _ = interpolate_gains(g[::-1, ::-1], np.zeros(g.shape, bool), t[::-1], f[::-1],
                                NEW_T, NEW_F, ref=1)
    np.testing.assert_allclose(out2, out, rtol=1e-12)


def test_modes():
    t, f, g = synthetic()
    nof = np.zeros(g.shape, bool)
    near, _ = interpolate_gains(g, nof, t, f, NEW_T, NEW_F,
                                config=TransferConfig(time_mode="nearest", freq_mode="nearest"))
    ref = nested_interp(t, f, g, t, f)
    ti = [0, 0, 0, 1, 2, 2]
    fi = [0, 0, 0, 2, 3, 4]  # 1.05e8 is equidistant from 1.0e8 and 1.1e8: the lower one
    np.testing.assert_allclose(near, ref[np.ix_(ti, fi)], rtol=1e-12)
    # one mean bandpass: mean amplitude and circular-mean phase over time
    mean, _ = interpolate_gains(g, nof, t, f, NEW_T, f, config=TransferConfig(time_mode="mean"))
    expect = np.abs(ref).mean(axis=0) * np.exp(1j * np.angle(np.exp(1j * np.angle(ref)).sum(0)))
    np.testing.assert_allclose(mean, np.broadcast_to(expect, mean.shape), rtol=1e-12)


def test_phase_wraps_in_frequency_are_unwrapped():
    f = 1e8 + 1e6 * np.arange(6)
    slope = 2.5  # rad per cell: wraps every other cell
    g = np.ones((1, 6, 2, 2), complex)
    g[:, :, 1] = np.exp(1j * slope * np.arange(6))[None, :, None]
    new_f = 1e8 + 0.5e6 * np.arange(11)
    out, _ = interpolate_gains(g, np.zeros(g.shape, bool), np.array([0.0]), f,
                               np.array([0.0, 50.0]), new_f)
    expect = np.exp(1j * slope * np.arange(11) / 2)[None, :, None]
    np.testing.assert_allclose(out[:, :, 1], np.broadcast_to(expect, out[:, :, 1].shape))


@pytest.mark.parametrize("config", [TransferConfig(), TransferConfig(fill_flagged=True),
                                    TransferConfig(time_mode="nearest", freq_mode="nearest")])
def test_blocks_of_new_times_use_a_window_and_get_the_whole_tables_answer(config, monkeypatch):
    """A block of target times interpolates only the solutions around it (the work of a
    block must not grow with the calibrator table), with the answer of the whole table."""
    import daskcal.stages.transfer as tr

    rng = np.random.default_rng(11)
    n_t, n_ant = 300, 5
    t = np.cumsum(rng.uniform(5.0, 15.0, n_t))
    f = np.array([1.0e8, 1.1e8, 1.15e8, 1.3e8, 1.32e8])
    shape = (n_t, f.size, n_ant, 2)
    drift = rng.uniform(-1.5, 1.5, (1, 1, n_ant, 2)) * np.arange(n_t)[:, None, None, None]
    g = rng.uniform(0.8, 1.2, shape) * np.exp(1j * (drift + rng.uniform(-0.3, 0.3, shape)))
    flag = rng.random(shape) < 0.1
    flag[:, :, 2] = True                    # an antenna flagged throughout
    flag[10:, :, 3] = True                  # one with solutions at the start only
    flag[100:140, :, 4, 1] = True           # a gap longer than a block
    flag[200:, 3, 1] = True                 # a channel lost half way
    g[flag & (rng.random(shape) < 0.5)] = np.nan
    new_t = np.linspace(t[0] - 50.0, t[-1] + 50.0, 1000)
    new_f = np.array([0.95e8, 1.05e8, 1.2e8, 1.31e8, 1.4e8])
    whole, whole_flags = interpolate_gains(g, flag, t, f, new_t, new_f, ref=1, config=config)
    sizes = []
    real = tr._interpolate
    monkeypatch.setattr(tr, "_interpolate", lambda g, *a: sizes.append(len(g)) or real(g, *a))
    for a in range(0, new_t.size, 37):
        part, part_flags = interpolate_gains(g, flag, t, f, new_t[a:a + 37], new_f, ref=1,
                                             config=config)
        np.testing.assert_array_equal(part_flags, whole_flags[a:a + 37])
        ok = ~part_flags
        np.testing.assert_allclose(part[ok], whole[a:a + 37][ok], rtol=1e-10, atol=1e-12)
    # antenna 3's only solutions are at the start, so a block needing them spans back
    # there; without it (and its gap), a block of ~11 solutions reads a few dozen
    flag2, g2 = flag.copy(), g.copy()
    flag2[:, :, 3] = flag2[:, :, 4] = False
    g2[:, :, 3:] = 1.0
    sizes.clear()
    interpolate_gains(g2, flag2, t, f, new_t[480:517], new_f, ref=1, config=config)
    assert sizes == [sizes[0]] and sizes[0] < 40


def test_flags_propagate_or_are_filled():
    t, f, g = synthetic()
    flag = np.zeros(g.shape, bool)
    flag[1, 2, 3, 0] = True          # t=130, f=1.15e8, antenna 3, X
    g_bad = g.copy()
    g_bad[flag] = 1.0
    out, flags = interpolate_gains(g_bad, flag, t, f, NEW_T, NEW_F)
    # nearest cal cell of (160, 1.2e8) is (130 or 190 -> 130 is 30 s, 190 is 30 s: lower)
    assert flags[3, 3, 3, 0] and flags.sum() == 1
    # the flagged cell does not enter the interpolation of its neighbours
    keep = np.ones(f.size, bool)
    keep[2] = False
    filled, fflags = interpolate_gains(g_bad, flag, t, f, NEW_T, NEW_F,
                                       config=TransferConfig(fill_flagged=True))
    assert not fflags.any()
    g_ref = g * (np.conj(g[:, :, 0]) / abs(g[:, :, 0]))[:, :, None]
    amp_t1 = np.interp(NEW_F, f[keep], np.abs(g_ref[1, keep, 3, 0]))
    amp = [np.interp(NEW_F, f, np.abs(g_ref[i, :, 3, 0])) for i in (0, 2)]
    expect = np.array([np.interp(NEW_T, t, [amp[0][k], amp_t1[k], amp[1][k]])
                       for k in range(NEW_F.size)]).T
    np.testing.assert_allclose(np.abs(filled[:, :, 3, 0]), expect, rtol=1e-12)
    # a reference flagged in a cell flags every antenna there
    flag2 = np.zeros(g.shape, bool)
    flag2[:, :, 0, 1] = True
    _, flags2 = interpolate_gains(g, flag2, t, f, NEW_T, NEW_F)
    assert flags2[..., 1].all() and not flags2[..., 0].any()


# ----------------------------------------------------------------------------- end to end

COMMON = {
    "lofar": {"n_core": 4, "n_remote": 2}, "polarizations": ["XX", "YY"], "seed": 11,
    "duration_s": 200.0, "integration_s": 10.0, "freq_start_hz": 1.3e8,
    # bandpass-only gains: no time-variable phase and a time scale far beyond the run
    "gains": {"phase_rms_deg": 0.0, "time_scale_s": 1e9, "amplitude_rms": 0.1,
              "freq_scale_hz": 6e6, "delay_rms_ns": 20.0},
    "chunks": {"time": 10, "frequency": 8},
}


@pytest.fixture(scope="module")
def cal_and_target():
    cal_cfg = SimulationConfig(**COMMON, name="cal", n_chan=16, ra_deg=123.4, dec_deg=48.2,
                               sky={"preset": "none", "components": [{
                                   "name": "3C196", "ra_deg": 123.4, "dec_deg": 48.2,
                                   "flux_jy": 60.0}]})
    tgt_cfg = SimulationConfig(**COMMON, name="tgt", n_chan=24, channel_width_hz=97656.25,
                               ra_deg=150.0, dec_deg=55.0, start_time="2024-03-20T21:00:00",
                               sky={"preset": "random-field", "n_sources": 8})
    out = []
    for cfg in (cal_cfg, tgt_cfg):
        obs, truth = simulate_observation(cfg)
        xds = next(iter_partitions(obs))[1]
        xds, truth_model, truth_gain = dask.compute(
            xds, truth["model"].to_dataset(), truth["gains"].to_dataset())
        out.append((xds, truth_model, truth_gain))
    return out


def truth_as_gains(tg: xr.Dataset, xds: xr.Dataset) -> xr.Dataset:
    t, f = tg["time"].values, tg["frequency"].values
    return xr.Dataset(
        {"GAIN": (DIMS, tg["GAIN"].values.astype(complex)),
         "GAIN_FLAG": (DIMS, np.zeros(tg["GAIN"].shape, bool))},
        coords={"gain_time": t, "gain_time_lower": ("gain_time", t - 5),
                "gain_time_upper": ("gain_time", t + 5), "gain_frequency": f,
                "gain_frequency_lower": ("gain_frequency", f - 1),
                "gain_frequency_upper": ("gain_frequency", f + 1),
                "antenna_name": tg["antenna_name"].values, "receptor": tg["receptor"].values},
        attrs={"mode": "diagonal_complex"})


@pytest.mark.parametrize("smoothed", [False, True])
def test_calibrator_solutions_correct_the_target(cal_and_target, smoothed):
    (cal, cal_truth, _), (tgt, tgt_truth, tgt_gain) = cal_and_target
    gains = solve(cal, cal_truth["VISIBILITY_MODEL"],
                  SolveConfig(solint_time=0, solint_freq=1, max_iter=100, tolerance=1e-8))
    if smoothed:
        gains = smooth(gains, SmoothConfig(method="savgol", window=5, polyorder=2))
    with dask.config.set(scheduler=_raise_on_compute):
        on_target = transfer(gains, tgt, TransferConfig(time_mode="interpolate"))
        corrected = apply(tgt, on_target)
    assert on_target.sizes["gain_time"] == tgt.sizes["time"]
    assert on_target.sizes["gain_frequency"] == tgt.sizes["frequency"]
    on_target = on_target.compute()
    assert not on_target["GAIN_FLAG"].values.any()

    # the gains themselves: the truth, referenced like ours, to a fraction of a per cent
    g_true = tgt_gain["GAIN"].values.astype(complex)
    ref = list(on_target["antenna_name"].values).index(on_target.attrs["ref_antenna"])
    z = g_true[:, :, ref]
    g_true = g_true * (np.conj(z) / abs(z))[:, :, None]
    gain_err = np.sqrt(np.mean(np.abs(on_target["GAIN"].values - g_true) ** 2))
    assert gain_err < 0.01

    # the corrected target data against its true model, beside the true gains' correction
    model = tgt_truth["VISIBILITY_MODEL"].values
    ours = corrected["VISIBILITY_CORRECTED"].values
    ideal = apply(tgt, truth_as_gains(tgt_gain, tgt))["VISIBILITY_CORRECTED"].values
    err = np.sqrt(np.mean(np.abs(ours - model) ** 2))
    err_ideal = np.sqrt(np.mean(np.abs(ideal - model) ** 2))
    # the calibrator's solution noise adds (relative) ~0.3 % of the model: far below noise
    assert err < 1.02 * err_ideal
    # and without transfer the data are far off
    raw = np.sqrt(np.mean(np.abs(tgt["VISIBILITY"].values - model) ** 2))
    assert raw > 1.2 * err_ideal


def test_errors(cal_and_target):
    (cal, cal_truth, _), (tgt, _, _) = cal_and_target
    gains = solve(cal, cal_truth["VISIBILITY_MODEL"], SolveConfig(solint_time=0))
    with pytest.raises(TransferError, match="no calibrator gains for target antennas"):
        transfer(gains.isel(antenna_name=slice(1, None)), tgt)
    with pytest.raises(TransferError, match="receptors"):
        transfer(gains.assign_coords(receptor=["R", "L"]), tgt)
    with pytest.raises(TransferError, match="reference antenna 'XX'"):
        transfer(gains, tgt, TransferConfig(ref_antenna="XX"))
