"""The ``daskcal`` command: happy paths and every kind of bad input."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from daskcal.cli import main
from daskcal.testing.factories import (
    misbehaved_ms_without_data,
    misbehaved_not_an_ms,
    misbehaved_truncated_zarr,
)


@pytest.fixture(scope="module")
def small_zarr(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("cli") / "sim.zarr"
    status = main(["simulate", str(out), "--array", "vla", "--target-size", "2MB",
                   "--seed", "3", "--no-progress"])
    assert status == 0
    return out


def _one_line_error(capsys, status, *needles):
    err = capsys.readouterr().err.strip()
    assert status == 2, err
    assert "Traceback" not in err
    assert len(err.splitlines()) == 1, err
    for needle in needles:
        assert needle in err, err
    return err


def test_simulate_info_convert_roundtrip(small_zarr, tmp_path, capsys):
    import daskcal.data as dd

    assert main(["info", str(small_zarr), "--json", "--no-progress"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["antennas"]["count"] == 27
    assert summary["baselines"]["count"] == 27 * 26 // 2
    assert summary["polarizations"] == ["RR", "RL", "LR", "LL"]
    assert summary["flagged_fraction"] >= 0.0

    ms = tmp_path / "sim.ms"
    back = tmp_path / "back.zarr"
    assert main(["convert", str(small_zarr), str(ms), "--no-progress"]) == 0
    assert main(["convert", str(ms), str(back), "--no-progress"]) == 0
    a = dd.open_zarr(small_zarr)
    b = dd.open_zarr(back)
    (na, xa), = dd.iter_partitions(a)
    (nb, xb), = dd.iter_partitions(b)
    np.testing.assert_array_equal(xa.VISIBILITY.values, xb.VISIBILITY.values)
    np.testing.assert_array_equal(xa.FLAG.values, xb.FLAG.values)
    np.testing.assert_array_equal(xa.UVW.values, xb.UVW.values)
    assert main(["info", str(ms), "--no-progress"]) == 0
    text = capsys.readouterr().out
    assert "antennas      27" in text
    assert "RR, RL, LR, LL" in text


def test_missing_path(tmp_path, capsys):
    status = main(["info", str(tmp_path / "nope.ms")])
    _one_line_error(capsys, status, "nope.ms", "no such file")


def test_directory_that_is_not_an_ms(tmp_path, capsys):
    status = main(["info", str(misbehaved_not_an_ms(tmp_path))])
    _one_line_error(capsys, status, "notms.ms")


def test_ms_without_data_column(tmp_path, capsys):
    status = main(["info", str(misbehaved_ms_without_data(tmp_path))])
    _one_line_error(capsys, status, "nodata.ms", "DATA")


def test_truncated_zarr_store(small_zarr, tmp_path, capsys):
    bad = misbehaved_truncated_zarr(small_zarr, tmp_path)
    status = main(["info", str(bad)])
    _one_line_error(capsys, status, "truncated.zarr")
    status = main(["convert", str(bad), str(tmp_path / "out.ms")])
    _one_line_error(capsys, status, "truncated.zarr")
    assert not (tmp_path / "out.ms").exists()


def test_corrupt_chunk_fails_without_half_written_output(small_zarr, tmp_path, capsys):
    import shutil

    bad = tmp_path / "corrupt.zarr"
    shutil.copytree(small_zarr, bad)
    chunk = sorted(p for p in next(bad.rglob("VISIBILITY")).rglob("*")
                   if p.is_file() and p.name != "zarr.json")[0]
    chunk.write_bytes(b"garbage" * 10)
    status = main(["convert", str(bad), str(tmp_path / "out.ms")])
    _one_line_error(capsys, status, "corrupt.zarr", "nothing was written")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["corrupt.zarr"]


def test_nonsense_chunk_size(small_zarr, capsys):
    status = main(["info", str(small_zarr), "--chunks", "lots"])
    _one_line_error(capsys, status, "lots")
    status = main(["info", str(small_zarr), "--chunks", "time=-5"])
    _one_line_error(capsys, status, "time")


def test_existing_output_refused_and_nothing_half_written(small_zarr, tmp_path, capsys):
    out = tmp_path / "out.ms"
    out.mkdir()
    status = main(["convert", str(small_zarr), str(out)])
    _one_line_error(capsys, status, "out.ms")
    # a failed conversion leaves no output and no temporaries behind
    missing = tmp_path / "missing.zarr"
    target = tmp_path / "never.ms"
    status = main(["convert", str(missing), str(target)])
    _one_line_error(capsys, status, "missing.zarr")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.ms"]


def test_unknown_output_format(small_zarr, tmp_path, capsys):
    status = main(["convert", str(small_zarr), str(tmp_path / "x.h5")])
    _one_line_error(capsys, status, "x.h5")


def test_bad_simulation_setting(tmp_path, capsys):
    status = main(["simulate", str(tmp_path / "s.zarr"), "--set", "n_chan=-3"])
    _one_line_error(capsys, status)
    assert not (tmp_path / "s.zarr").exists()


def test_subprocess_exit_status_and_no_traceback(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "daskcal.cli", "info", str(tmp_path / "x.ms")],
                          capture_output=True, text=True)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert proc.stderr.strip().count("\n") == 0
