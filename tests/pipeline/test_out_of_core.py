"""Out of core (issue #6): a recipe on more data than the cluster's workers can hold.

The lofar-calibrator recipe (demix disabled) runs on a ``LocalCluster`` of 2 workers made
from daskcal's ``local`` site profile, each limited to :data:`MEMORY_LIMIT`, with the
distributed defaults (spill at 60-70 %, pause at 80 %, the nanny kills a worker at 95 %
of its limit), on a simulated observation :data:`RATIO` times the workers' total memory.
The run must complete with no worker lost, every output complete, the peak resident
memory of every worker below the limit, and results that agree with independent
references: a numpy average of the flagged data and the simulator's injected gains.

The peak is each worker's ``VmHWM`` (Linux), read here at the end; provenance records
the same quantity after each step (:func:`daskcal.pipeline.provenance.peak_memory`; it
used ``ru_maxrss`` before, which Linux carries over from the process that spawned the
worker, so every worker reported the test process's size). With ``-s`` the fixture
prints the run's size, times and peaks.

Sizes: 512 MiB is the smallest limit at which this works at all, as a worker process
holds about 0.27 GiB once it has imported daskcal's stages and loaded the flagger's
numba kernels (at 384 MiB the workers sit above the pause threshold and never resume).
The ratio is 1.25 by default (the data cannot all be in the workers at once; 1.3 GB,
5 minutes on two cores, peaks 383 and 387 MiB, no pause; hence opt-in with
``DASKCAL_OUT_OF_CORE=1``). The issue's 4x is ``DASKCAL_OUT_OF_CORE_RATIO=4`` (4.3 GB:
the recipe in 14-24 minutes on two shared cores, 15-25 minutes with the simulation;
peak worker memory 434 and 443 MiB; workers paused for a fraction of a second now and
then from the average step on, never lost), and ``bench/out_of_core.py`` measures the
16 GB / 2 x 2 GiB case.

The 4x case stalled before (both workers paused at 410-445 MiB for good in the flag
step). Two causes, both fixed in :mod:`daskcal.pipeline.execute`: ``dask.order``
deferred every region write of the flag step to the end, so that the input chunks piled
up (1.2 GB held and spilled after 4 minutes, no region written), and the results kept to
the end of a step (region markers, QA chunks) made each worker keep the record of
nearly every task of the step (14 000 per worker), unmanaged memory that grew past
the pause threshold. Steps now run in region order and release their results as they
come; a step whose workers stay paused for memory fails with one line
(``tests/pipeline/test_paused_workers.py``).
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
import pytest

# the recipes (from this file: workers unpickle test functions by module name, and
# another tests/ directory has a conftest of its own)
RECIPES = Path(__file__).resolve().parents[2] / "configs" / "recipes"


pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(os.environ.get("DASKCAL_OUT_OF_CORE") != "1",
                       reason="opt-in (5 min on 2 cores): "
                              "DASKCAL_OUT_OF_CORE=1 pytest tests/pipeline/test_out_of_core.py"),
]

#: Workers of the cluster (1 thread each).
N_WORKERS = 2
#: Memory limit of each worker.
MEMORY_LIMIT = "512MiB"
#: Size of the observation (VISIBILITY + FLAG + WEIGHT) over the workers' total memory.
RATIO = float(os.environ.get("DASKCAL_OUT_OF_CORE_RATIO", "1.25"))
#: Recipe settings: the flagger's per-task budget and time windows sized for small workers
#: (a window of all baselines is what a flagging task's inputs span).
OVERRIDES = ["demix.enabled=false", "flag.rfi.memory_per_task=32MB",
             "flag.rfi.time_window=256", "flag.rfi.time_overlap=32"]


def _config(size_bytes: float) -> dict:
    # 10 Jy: with the default gains a brighter source makes the flagger flag most of
    # the band (see the report of issue #6); 10 s integrations keep the SNR per solution
    return {"name": "ooc", "lofar": {"n_core": 12, "n_remote": 6, "split_core": False},
            "n_chan": 16, "integration_s": 10.0, "target_size": str(int(size_bytes)),
            "sky": {"preset": "none", "components": [
                {"name": "cal", "ra_deg": 123.4, "dec_deg": 48.2, "flux_jy": 10.0}]},
            "noise": {"enabled": True}, "rfi": {"enabled": True}, "seed": 11,
            "chunks": "16MB"}


@pytest.fixture(scope="module")
def ooc_run(tmp_path_factory):
    """Simulate, start the cluster, run the recipe; what the scheduler saw meanwhile."""
    import yaml
    from dask.utils import parse_bytes
    from distributed import Client

    from daskcal.cluster import site_from_dict
    from daskcal.data.zarr_store import write_zarr
    from daskcal.pipeline.runner import run_recipe
    from daskcal.sky.bbs import write_bbs
    from daskcal.sky.model import SkyModel
    from daskcal.testing import simulate_observation

    root = tmp_path_factory.mktemp("out-of-core")
    limit = parse_bytes(MEMORY_LIMIT)
    obs, truth = simulate_observation(_config(RATIO * N_WORKERS * limit))
    xds = obs["ooc_0"].to_dataset(inherit=False)
    nbytes = sum(xds[v].nbytes for v in ("VISIBILITY", "FLAG", "WEIGHT"))
    obs_path = write_zarr(obs, root / "obs.zarr")  # chunk by chunk, threads
    sky = root / "sky.txt"
    write_bbs(SkyModel.from_dataset(truth["sky"].to_dataset()), sky)

    site = site_from_dict({"kind": "local", "local": {
        "n_workers": N_WORKERS, "threads_per_worker": 1, "memory_limit": MEMORY_LIMIT,
        "local_directory": str(root / "scratch"), "dashboard_address": ":0"}})
    lines: list[str] = []
    with site.cluster() as cluster, Client(cluster) as client:
        client.wait_for_workers(N_WORKERS, timeout=120)
        before = sorted(client.scheduler_info()["workers"])
        profile = root / "cluster.yaml"
        profile.write_text(yaml.safe_dump({"kind": "address", "address": {
            "scheduler": cluster.scheduler_address}}))
        since = time.time()
        result = run_recipe(RECIPES / "lofar-calibrator.yaml", {"calibrator": obs_path},
                            root / "run", site=str(profile),
                            overrides=[f"predict.sky_model={sky}", *OVERRIDES],
                            progress=False, echo=lines.append)
        events = [m for t, m in client.get_events("all") if t >= since and isinstance(m, dict)
                  and m.get("action") in ("remove-worker", "add-worker")]
        after = sorted(client.scheduler_info()["workers"])
        hwm = client.run(_peak_rss)
    prov = result.provenance
    print(f"\nout of core: {nbytes / 1e9:.2f} GB on {N_WORKERS} x {MEMORY_LIMIT} "
          f"(ratio {RATIO}); recipe {prov['started']} -> {prov['finished']}; peak "
          + ", ".join(f"{v / 2**20:.0f} MiB" for v in hwm.values())
          + f"; workers removed or added: {len(events)}")
    return {"result": result, "truth": truth, "obs": obs_path, "nbytes": nbytes,
            "limit": limit, "events": events, "workers": (before, after), "lines": lines,
            "peak": hwm}


def _peak_rss() -> int:
    """``VmHWM`` of this (worker) process, bytes."""
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmHWM:"))


def test_the_data_do_not_fit_the_workers(ooc_run):
    assert ooc_run["nbytes"] >= 0.99 * RATIO * N_WORKERS * ooc_run["limit"]
    assert ooc_run["nbytes"] > N_WORKERS * ooc_run["limit"]


def test_no_worker_was_killed_or_restarted(ooc_run):
    before, after = ooc_run["workers"]
    assert ooc_run["events"] == []
    assert before == after and len(before) == N_WORKERS


@pytest.mark.skipif(not os.path.exists("/proc/self/status"), reason="VmHWM is Linux's")
def test_peak_worker_memory_is_below_the_limit(ooc_run):
    peak, limit = ooc_run["peak"], ooc_run["limit"]
    assert sorted(peak) == ooc_run["workers"][1]
    # the high-water mark of each worker process since it started; the data passed
    # through them: well above the ~0.25 GiB of a worker that only imported daskcal
    assert all(0.5 * limit < v < limit for v in peak.values()), peak
    # provenance records each worker's high-water mark after every computing step: below
    # the limit and never above the final one
    steps = [r for r in ooc_run["result"].provenance["steps"] if r["stage"] != "h5parm"]
    for rec in steps:
        rec_peak = rec["peak_worker_memory_bytes"]
        assert sorted(rec_peak) == sorted(peak), rec["name"]
        assert all(rec_peak[w] <= peak[w] < limit for w in peak), (rec["name"], rec_peak)


def test_every_output_is_complete(ooc_run):
    from daskcal.data.h5parm import read_h5parm
    from daskcal.data.open import open_observation
    from daskcal.data.zarr_store import check_zarr_store

    result = ooc_run["result"]
    prov = result.provenance
    assert prov["status"] == "complete"
    for rec in prov["steps"]:
        assert rec["status"] == "ran", rec["name"]
        if rec["stage"] == "h5parm":
            continue
        regions = rec["regions"]
        assert regions["written"] == regions["total"] > 0 and regions["skipped"] == 0
        assert check_zarr_store(result.run_dir / rec["output"]) == [], rec["name"]
    (h5,) = prov["products"]["h5parm"]
    gains = read_h5parm(result.run_dir / h5)
    n_time = open_observation(ooc_run["obs"])["ooc_0"].sizes["time"]
    assert gains.sizes["gain_time"] == -(-n_time // 2)


def _numpy_average(vis, flag, weight, k):
    """DP3's rule, by hand: weighted mean of the unflagged inputs over k integrations."""
    n = vis.shape[0] // k
    v = vis[:n * k].reshape(n, k, *vis.shape[1:])
    f = flag[:n * k].reshape(n, k, *flag.shape[1:])
    w = weight[:n * k].reshape(n, k, *weight.shape[1:]).astype(np.float64)
    wu = np.where(f, 0.0, w)
    all_flagged = f.all(axis=1)
    w_used = np.where(all_flagged[:, None], w, wu)
    w_sum = w_used.sum(axis=1)
    mean = (v * w_used).sum(axis=1) / np.where(w_sum > 0, w_sum, 1.0)
    return mean, all_flagged, w_sum


def test_averaged_data_match_a_numpy_average_of_the_flagged_data(ooc_run):
    from daskcal.data.open import open_observation

    result = ooc_run["result"]
    flagged = open_observation(result.outputs["flag"])["ooc_0"]
    averaged = open_observation(result.outputs["average"])["ooc_0"]
    last = (flagged.sizes["time"] - 80) // 2  # the last 40 whole bins
    for start in (0, last // 2, last):  # start, middle and end of the observation
        sl = slice(2 * start, 2 * start + 80)
        vis = flagged["VISIBILITY"][sl].values
        flag = flagged["FLAG"][sl].values
        weight = flagged["WEIGHT"][sl].values
        mean, all_flagged, w_sum = _numpy_average(vis, flag, weight, 2)
        out = slice(start, start + 40)
        np.testing.assert_array_equal(averaged["FLAG"][out].values, all_flagged)
        np.testing.assert_allclose(averaged["WEIGHT"][out].values, w_sum, rtol=1e-6)
        np.testing.assert_allclose(averaged["VISIBILITY"][out].values, mean,
                                   rtol=1e-5, atol=1e-5 * np.abs(mean).max())
    # the flagger found the injected RFI: the simulator's mask is a subset of the flags
    rfi = ooc_run["truth"]["rfi"]["RFI_MASK"][:200].values
    assert np.mean(flagged["FLAG"][:200].values[rfi]) > 0.95
    assert np.mean(flagged["FLAG"][:200].values) < 0.5


def test_smoothed_gains_match_the_injected_gains(ooc_run):
    from daskcal.data.zarr_store import open_zarr

    result = ooc_run["result"]
    gains = open_zarr(result.outputs["smooth"], validate=False)["ooc_0"].to_dataset()
    n = 100  # solution intervals compared at the start of the observation
    truth = ooc_run["truth"]["gains"]["GAIN"].sel(antenna_name=gains["antenna_name"].values)
    true = truth[:2 * n].values
    true = 0.5 * (true[0::2] + true[1::2])          # the recipe averages pairs
    solved = gains["GAIN"][:n].values
    ok = ~gains["GAIN_FLAG"][:n].values

    def referenced(g):
        return g * np.exp(-1j * np.angle(g[:, :, :1, :]))

    err = np.abs(referenced(solved) - referenced(true))[ok]
    assert ok.mean() > 0.8
    assert np.median(err) < 0.03 and np.percentile(err, 99) < 0.1
