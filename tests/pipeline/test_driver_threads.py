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
