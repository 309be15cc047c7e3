"""Threads of the in-memory imager: the cluster's, capped by this machine's cores."""

from __future__ import annotations

import os

import dask

from daskcal.pipeline.imagingsteps import driver_threads


def test_without_a_client_dask_num_workers_capped_by_the_cores():
    with dask.config.set(num_workers=1):
        assert driver_threads() == 1
    with dask.config.set(num_workers=10_000):
        assert driver_threads() == (os.cpu_count() or 1)


def test_with_a_client_its_worker_threads():
    from distributed import Client, LocalCluster

    with LocalCluster(n_workers=1, threads_per_worker=1, processes=False,
                      dashboard_address=None) as cluster, Client(cluster):
        assert driver_threads() == 1


def test_auto_backend_from_the_imagers_memory_not_the_data_variables():
    """``auto`` counts the samples of the imaged product (128 bytes each), so that extra
    data variables (model, corrected columns) do not push a partition out of memory."""
    import numpy as np
    import xarray as xr

    from daskcal.pipeline.imagingsteps import (
        IN_MEMORY_BYTES_PER_SAMPLE,
        choose_backend,
        in_memory_bytes,
    )

    shape = (100, 50, 8, 4)
    dims = ("time", "baseline_id", "frequency", "polarization")
    xds = xr.Dataset({v: (dims, np.zeros(shape, np.complex64))
                      for v in ("VISIBILITY", "CORRECTED", "MODEL")})
    n = 100 * 50 * 8
    assert in_memory_bytes(xds) == n * IN_MEMORY_BYTES_PER_SAMPLE
    mb = n * IN_MEMORY_BYTES_PER_SAMPLE / 1e6
    assert choose_backend(xds, "auto", mb) == "numpy"
    assert choose_backend(xds, "auto", 0.99 * mb) == "dask"
    assert choose_backend(xds, "dask", 1e9) == "dask"
    more = xds.assign(EXTRA=xds["VISIBILITY"])
    assert choose_backend(more, "auto", mb) == "numpy"
