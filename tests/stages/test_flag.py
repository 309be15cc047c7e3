"""The flag stage on simulated observations against the simulator's RFI truth."""

from __future__ import annotations

import dask
import numpy as np
import pytest

from daskcal.data.model import iter_partitions
from daskcal.stages.flag import FlagConfig, RFIConfig, flag, flag_summary
from daskcal.testing import SimulationConfig, simulate_observation


def _raise_on_compute(*args, **kwargs):
    raise AssertionError("computed while building the graph")


def _simulate(rfi: bool, sky: dict, seed: int = 3, **extra):
    cfg = SimulationConfig.model_validate({
        "array": "lofar", "lofar": {"n_core": 4, "n_remote": 2}, "duration_s": 600,
        "integration_s": 2, "n_chan": 64, "seed": seed, "sky": sky,
        "rfi": {"enabled": rfi, "n_lines": 2, "n_bursts": 1, "burst_duration_s": 6,
                "burst_strength": 4.0, "spike_probability": 1e-3, "spike_strength": 30.0},
        **extra,
    })
    obs, truth = simulate_observation(cfg)
    (_, xds), = iter_partitions(obs)
    return xds, truth


@pytest.fixture(scope="module")
def rfi_obs():
    return _simulate(True, {"preset": "random-field", "n_sources": 5})


NO_AUTO = {"preflag": {"autocorrelations": False}}


def test_recall_and_false_positives_against_truth(rfi_obs):
    xds, truth = rfi_obs
    out = flag(xds, FlagConfig.model_validate(NO_AUTO))
    f, mask, amp, sigma = dask.compute(out.FLAG.data, truth["rfi"]["RFI_MASK"].data,
                                       truth["rfi"]["RFI_AMPLITUDE"].data,
                                       truth["noise"]["NOISE_SIGMA"].data)
    strong = mask & (amp > 3 * sigma[None, :, None, None])
    assert 0.005 < mask.mean() < 0.05  # a realistic RFI occupancy
    recall = f[strong].mean()
    fpr = f[~mask].mean()
    assert recall >= 0.95, recall
    assert fpr <= 0.01, fpr


def test_clean_observation_with_bright_source_is_left_alone():
    sky = {"preset": "none", "components": [
        {"name": "bright", "ra_deg": 123.5, "dec_deg": 48.3, "flux_jy": 100.0}]}
    xds, _ = _simulate(False, sky, seed=5)
    out = flag(xds, FlagConfig.model_validate(NO_AUTO))
    frac = float(out.FLAG.mean())
    assert frac <= 0.01, frac


def test_graph_building_does_not_compute(rfi_obs):
    xds, _ = rfi_obs
    with dask.config.set(scheduler=_raise_on_compute):
        out = flag(xds, FlagConfig(rfi=RFIConfig(time_window=128, time_overlap=32)))
        flag_summary(xds, out)
    assert out.FLAG.data.chunks == xds.VISIBILITY.data.chunks


def test_baseline_grouping_does_not_change_flags(rfi_obs):
    xds, _ = rfi_obs
    small = flag(xds, FlagConfig(rfi=RFIConfig(memory_per_task="1MB")))
    large = flag(xds, FlagConfig(rfi=RFIConfig(memory_per_task="1GB")))
    np.testing.assert_array_equal(small.FLAG.values, large.FLAG.values)


def test_time_windows_agree_with_whole_planes(rfi_obs):
    xds, truth = rfi_obs
    whole = flag(xds, FlagConfig()).FLAG.values
    windowed = flag(xds, FlagConfig(rfi=RFIConfig(time_window=100, time_overlap=32))).FLAG.values
    assert (whole != windowed).mean() < 1e-3


def test_skip_fields_keeps_the_target_unflagged(rfi_obs):
    xds, _ = rfi_obs
    sun = xds.assign_coords(field_name=("time", np.full(xds.sizes["time"], "Sun")))
    vis = sun.VISIBILITY.values.copy()
    vis[3, 4, 5, 0] = np.nan
    sun["VISIBILITY"] = sun.VISIBILITY.copy(data=vis)
    cfg = FlagConfig.model_validate({"skip_fields": ["Su*"],
                                     "preflag": {"autocorrelations": True,
                                                 "amplitude_max": 1e-3}})
    out = flag(sun, cfg)
    f = out.FLAG.values
    auto = (sun.baseline_antenna1_name.values == sun.baseline_antenna2_name.values)
    assert f[:, auto].all()  # data-blind selections still apply
    assert f[3, 4, 5, 0]  # NaN still flagged
    assert f[:, ~auto].sum() == 1  # no RFI flagging or clipping of the Sun itself


def test_mad_flagger_finds_outliers():
    sky = {"preset": "none"}
    xds, _ = _simulate(False, sky, seed=7)
    vis = xds.VISIBILITY.values.copy()
    rng = np.random.default_rng(0)
    idx = tuple(rng.integers(0, n, 50) for n in vis.shape)
    sigma = np.std(vis[:, 1].real)
    vis[idx] += 40 * sigma
    xds = xds.copy()
    xds["VISIBILITY"] = xds.VISIBILITY.copy(data=vis)
    cfg = FlagConfig.model_validate({"rfi": {"enabled": False}, "mad": {"enabled": True},
                                     "preflag": {"autocorrelations": False}})
    f = flag(xds, cfg).FLAG.values
    assert f[idx].all()
    assert f.mean() < 0.002


def test_summary_reports_before_and_after(rfi_obs):
    xds, _ = rfi_obs
    out = flag(xds, FlagConfig())
    s = flag_summary(xds, out).compute()
    assert list(s.state.values) == ["before", "after"]
    before, after = s.FLAGGED_FRACTION.values
    assert after > before
    np.testing.assert_allclose(after, out.FLAG.values.mean())
    assert s.FLAGGED_FRACTION_ANTENNA.sizes["antenna_name"] > 0


def test_config_schema_and_validation():
    schema = FlagConfig.model_json_schema()
    assert {"preflag", "rfi", "mad", "skip_fields"} <= set(schema["properties"])
    with pytest.raises(ValueError):
        RFIConfig(memory_per_task="lots")
    with pytest.raises(ValueError):
        RFIConfig(sensitivity_steps=[])
