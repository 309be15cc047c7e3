"""Chunk specifications: parsing and resolution to time/frequency chunk lengths."""

from __future__ import annotations

import numpy as np
import pytest

from daskcal import DaskcalError
from daskcal.data.chunking import (
    BYTES_PER_SAMPLE,
    ChunkSpecError,
    parse_chunk_spec,
    resolve_chunks,
)


@pytest.mark.parametrize(("spec", "expected"), [
    (None, None),
    ("64MB", 64_000_000),
    (" 1GiB ", 2**30),
    ("100", 100),
    (64_000_000, 64_000_000),
    (np.int64(5), 5),
    (2.7, 2),
    ("time=10,frequency=4", {"time": 10, "frequency": 4}),
    ("time = 10 , frequency=-1", {"time": 10, "frequency": -1}),
    ("frequency=8", {"frequency": 8}),
    ({"time": 3}, {"time": 3}),
    ({"time": np.int32(3), "frequency": -1}, {"time": 3, "frequency": -1}),
    ({}, {}),
])
def test_parse_accepts(spec, expected):
    assert parse_chunk_spec(spec) == expected


@pytest.mark.parametrize(("spec", "message"), [
    ("lots", "neither a size"),
    ("64 parsecs", "neither a size"),
    ("", "empty"),
    ("time=ten", "'ten' is not an integer"),
    ("time=10,", "'' is not an integer"),
    ("time=0", "must be a positive integer or -1"),
    ("time=-2", "must be a positive integer or -1"),
    ("baseline_id=4", "cannot chunk along 'baseline_id'"),
    ({"polarization": 1}, "cannot chunk along 'polarization'"),
    ({"time": 2.5}, "must be a positive integer"),
    ({"time": True}, "must be a positive integer"),
    (0, "must be positive"),
    (-5, "must be positive"),
    (0.5, "must be positive"),
    (float("nan"), "must be positive"),
    (float("inf"), "must be positive"),
    ("0MB", "must be positive"),
    ("-5MB", "must be positive"),
    (True, "not a size or a count"),
    ([10, 4], "not understood"),
])
def test_parse_refuses(spec, message):
    with pytest.raises(ChunkSpecError, match=message) as info:
        parse_chunk_spec(spec)
    assert isinstance(info.value, DaskcalError) and isinstance(info.value, ValueError)
    assert "\n" not in str(info.value)


def test_resolve_counts_and_whole_axes():
    assert resolve_chunks(None, 100, 351, 64, 4) == {"time": 100, "frequency": 64}
    assert resolve_chunks("time=10,frequency=4", 100, 351, 64, 4) == {"time": 10, "frequency": 4}
    assert resolve_chunks({"time": 500}, 100, 351, 64, 4) == {"time": 100, "frequency": 64}
    assert resolve_chunks({"frequency": -1}, 7, 3, 5, 2) == {"time": 7, "frequency": 5}
    assert resolve_chunks({}, 7, 3, 5, 2) == {"time": 7, "frequency": 5}
    assert resolve_chunks(None, 0, 3, 0, 2) == {"time": 1, "frequency": 1}


def test_resolve_bytes_keeps_whole_channels_when_a_time_step_fits():
    n_bl, n_chan, n_pol = 351, 64, 4
    per_time = n_bl * n_chan * n_pol * BYTES_PER_SAMPLE   # 1_168_128 bytes
    assert resolve_chunks("64MB", 1000, n_bl, n_chan, n_pol) == {
        "time": 64_000_000 // per_time, "frequency": n_chan}
    assert resolve_chunks("64MB", 1000, n_bl, n_chan, n_pol)["time"] == 54
    assert resolve_chunks("64MB", 10, n_bl, n_chan, n_pol) == {"time": 10, "frequency": 64}
    assert resolve_chunks(per_time, 10, n_bl, n_chan, n_pol) == {"time": 1, "frequency": 64}


def test_resolve_bytes_splits_frequency_when_a_time_step_is_too_big():
    n_bl, n_chan, n_pol = 8128, 4096, 4   # 128 antennas
    per_chan = n_bl * n_pol * BYTES_PER_SAMPLE   # 422_656 bytes
    got = resolve_chunks("64MB", 100, n_bl, n_chan, n_pol)
    assert got == {"time": 1, "frequency": 64_000_000 // per_chan} == {"time": 1, "frequency": 151}
    assert resolve_chunks(1, 100, n_bl, n_chan, n_pol) == {"time": 1, "frequency": 1}


def test_resolved_chunks_are_in_range():
    rng = np.random.default_rng(0)
    for _ in range(200):
        n_time, n_bl, n_chan, n_pol = (int(x) for x in rng.integers(1, 300, 4))
        target = int(rng.integers(1, 10**8))
        got = resolve_chunks(target, n_time, n_bl, n_chan, n_pol)
        assert 1 <= got["time"] <= n_time and 1 <= got["frequency"] <= n_chan
        size = got["time"] * n_bl * got["frequency"] * n_pol * BYTES_PER_SAMPLE
        # within the target unless a single sample row is already larger
        assert size <= target or (got["time"] == 1 and got["frequency"] == 1)
