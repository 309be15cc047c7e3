"""Real observations that PyPI packages ship, fetched once into a cache and verified.

The registries are the only network this project may use, so real data come
from wheels that carry them: the VLA NGC5921 tutorial UVFITS inside
``casadata`` and the ATCA, MWA and VLA files inside ``pyuvdata==3.1.3``
(newer pyuvdata wheels ship no data). Each wheel is downloaded with
``pip download --no-deps``, its SHA-256 checked, and only the members asked
for are extracted.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from daskcal import DaskcalError


@dataclass(frozen=True)
class Wheel:
    """A pinned wheel that carries data files."""

    requirement: str
    filename: str
    sha256: str


CASADATA = Wheel(
    "casadata==2025.9.22",
    "casadata-2025.9.22-py3-none-any.whl",
    "9e2a35120c09c2f6cda24e6d293089972ea9ddeeac3d24671501de21bf8b1bf6",
)
PYUVDATA_313 = Wheel(
    "pyuvdata==3.1.3",
    "pyuvdata-3.1.3-cp311-cp311-manylinux_2_17_x86_64.manylinux2014_x86_64.whl",
    "4b3b10ff1ae26e10cc66e29b360ba389058c21ce84372e8ababf8f2b12ab892e",
)

#: Named real data sets: (wheel, member path or directory prefix inside the wheel).
DATASETS: dict[str, tuple[Wheel, str]] = {
    # VLA: 27 antennas, 63 channels, RR/LL; fields 1331+305 (3C286), 1445+099, N5921_2
    "ngc5921_uvfits": (CASADATA, "casadata/__data__/demo/NGC5921.fits"),
    # MWA 128T Phase I, a small MS written by cotter
    "mwa_small_ms": (PYUVDATA_313, "pyuvdata/data/1102865728_small.ms"),
    # VLA, one source, one spectral window, 4 pols (from a real EVLA test observation)
    "vla_day2_ms": (PYUVDATA_313, "pyuvdata/data/day2_TDEM0003_10s_norx_1src_1spw.ms"),
    "vla_day2_uvfits": (PYUVDATA_313, "pyuvdata/data/day2_TDEM0003_10s_norx_1src_1spw.uvfits"),
    # ATCA 1934-638 observation in Miriad format
    "atca_miriad": (PYUVDATA_313, "pyuvdata/data/atca_miriad"),
    # MWA, UVFITS
    "mwa_uvfits": (PYUVDATA_313, "pyuvdata/data/1133866760.uvfits"),
}


class RealDataError(DaskcalError, RuntimeError):
    """A real data set could not be fetched or did not verify."""


def default_cache_dir() -> Path:
    """``$DASKCAL_DATA_CACHE`` or ``~/.cache/daskcal/data``."""
    env = os.environ.get("DASKCAL_DATA_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "daskcal" / "data"


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def fetch_wheel(wheel: Wheel, cache_dir: Path | None = None) -> Path:
    """Download (once) and verify a pinned wheel; return its path in the cache."""
    cache = (cache_dir or default_cache_dir()) / "wheels"
    cache.mkdir(parents=True, exist_ok=True)
    target = cache / wheel.filename
    if target.exists() and _sha256(target) == wheel.sha256:
        return target
    with tempfile.TemporaryDirectory(dir=cache) as tmp:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet",
               "--disable-pip-version-check", "-d", tmp, wheel.requirement]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        got = Path(tmp) / wheel.filename
        if proc.returncode != 0 or not got.exists():
            raise RealDataError(
                f"{wheel.requirement}: pip download failed: "
                f"{(proc.stderr or proc.stdout).strip().splitlines()[-1:]}")
        digest = _sha256(got)
        if digest != wheel.sha256:
            raise RealDataError(f"{got.name}: SHA-256 {digest} does not match {wheel.sha256}")
        os.replace(got, target)
    return target


def fetch_dataset(name: str, cache_dir: Path | None = None) -> Path:
    """Path of a named real data set (a file or a directory), extracted once into the cache.

    Parameters
    ----------
    name : str
        A key of :data:`DATASETS`.
    cache_dir : Path, optional
        Defaults to :func:`default_cache_dir`.
    """
    if name not in DATASETS:
        raise RealDataError(f"unknown data set {name!r}; known: {', '.join(sorted(DATASETS))}")
    wheel, member = DATASETS[name]
    cache = cache_dir or default_cache_dir()
    out_root = cache / "extracted" / wheel.filename.split("-")[0]
    target = out_root / member
    done = target.parent / (target.name + ".complete")
    if done.exists() and target.exists():
        return target
    whl = fetch_wheel(wheel, cache)
    out_root.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out_root) as tmp, zipfile.ZipFile(whl) as zf:
        members = [m for m in zf.namelist() if m == member or m.startswith(member.rstrip("/") + "/")]
        if not members:
            raise RealDataError(f"{whl.name}: holds no {member!r}")
        for m in members:
            zf.extract(m, tmp)
        if target.exists():
            shutil.rmtree(target) if target.is_dir() else target.unlink()
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(Path(tmp) / member, target)
    done.touch()
    return target


def copy_dataset(name: str, dest_dir: Path, cache_dir: Path | None = None) -> Path:
    """A private copy of a data set in ``dest_dir`` (tests may modify it)."""
    src = fetch_dataset(name, cache_dir)
    dest = Path(dest_dir) / src.name
    if src.is_dir():
        shutil.copytree(src, dest)
    else:
        shutil.copy2(src, dest)
    return dest
