"""Measurement Set subtables and table plumbing shared by :mod:`.ms` and :mod:`.ms_write`.

Everything here is eager and small: subtables (ANTENNA, FIELD, SPECTRAL_WINDOW,
...) are read whole with plain casacore, and the writers build them whole.
Main-table data never passes through this module.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from daskcal import DaskcalError
from daskcal.data.model import STOKES_CODES, STOKES_NAMES

#: MEAS_FREQ_REF codes of the spectral window table (casacore MFrequency::Types).
FREQ_FRAMES: dict[int, str] = {
    0: "REST", 1: "LSRK", 2: "LSRD", 3: "BARY", 4: "GEO", 5: "TOPO",
    6: "GALACTO", 7: "LGROUP", 8: "CMB", 64: "Undefined",
}
FREQ_FRAME_CODES: dict[str, int] = {v: k for k, v in FREQ_FRAMES.items()}

#: Direction references of casacore MEASINFO <-> xradio/astropy frame names.
_DIR_TO_FRAME = {"J2000": "fk5", "ICRS": "icrs", "B1950": "fk4", "GALACTIC": "galactic"}
_FRAME_TO_DIR = {v: k for k, v in _DIR_TO_FRAME.items()}

#: The Measurement Set subtables read_ms needs.
REQUIRED_SUBTABLES = ("ANTENNA", "DATA_DESCRIPTION", "FIELD", "POLARIZATION", "SPECTRAL_WINDOW")
#: The main-table columns read_ms needs.
REQUIRED_COLUMNS = ("TIME", "ANTENNA1", "ANTENNA2", "FIELD_ID", "DATA_DESC_ID", "FLAG")

_LOCKS: dict[str, threading.Lock] = {}
_LOCKS_GUARD = threading.Lock()


class MeasurementSetError(DaskcalError, ValueError):
    """A Measurement Set cannot be read or written as asked (one-line message naming it)."""


class MeasurementSetNotFoundError(MeasurementSetError, FileNotFoundError):
    """A Measurement Set path does not exist."""


def process_lock(path: str | Path) -> threading.Lock:
    """A lock shared by all threads of this process writing to ``path``."""
    key = str(Path(path).resolve())
    with _LOCKS_GUARD:
        return _LOCKS.setdefault(key, threading.Lock())


def dir_to_frame(ref: str) -> str:
    """casacore direction reference (``"J2000"``) -> frame name (``"fk5"``)."""
    return _DIR_TO_FRAME.get(ref.upper(), ref.lower())


def frame_to_dir(frame: str) -> str:
    """Frame name (``"fk5"``) -> casacore direction reference (``"J2000"``)."""
    return _FRAME_TO_DIR.get(frame.lower(), frame.upper())


@contextlib.contextmanager
def open_table(path: str | Path, name: str, *, readonly: bool = True) -> Iterator[Any]:
    """Open a casacore table, turning casacore errors into :class:`MeasurementSetError`.

    ``name`` is the MS path used in messages.
    """
    from casacore.tables import table

    try:
        t = table(str(path), ack=False, readonly=readonly)
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise MeasurementSetError(f"{name}: cannot open table {Path(path).name}: {first}") from None
    # dask-ms opens tables with user locking; casacore shares one table object per
    # process, so an explicit lock is needed whenever dask-ms has this table open.
    t.lock(write=not readonly)
    try:
        yield t
    finally:
        t.unlock()
        t.close()


def check_ms(path: str | Path, data_column: str | None = None) -> Path:
    """Check that ``path`` is a readable Measurement Set; return it resolved.

    Raises
    ------
    MeasurementSetNotFoundError
        ``path`` does not exist.
    MeasurementSetError
        ``path`` is not a Measurement Set, lacks a required subtable or column,
        or lacks ``data_column``.
    """
    p = Path(path).expanduser()
    if not p.exists():
        raise MeasurementSetNotFoundError(f"{path}: no such file or directory")
    if not p.is_dir() or not (p / "table.dat").is_file():
        raise MeasurementSetError(f"{path}: is not a Measurement Set (no table.dat)")
    with open_table(p, str(path)) as t:
        keywords = set(t.keywordnames())
        columns = set(t.colnames())
    missing = [s for s in REQUIRED_SUBTABLES if s not in keywords or not (p / s).is_dir()]
    if missing:
        raise MeasurementSetError(
            f"{path}: is not a Measurement Set (no {', '.join(missing)} subtable)")
    missing = [c for c in REQUIRED_COLUMNS if c not in columns]
    if missing:
        raise MeasurementSetError(f"{path}: is not a Measurement Set (no {', '.join(missing)} column)")
    if data_column is not None and data_column not in columns:
        raise MeasurementSetError(f"{path}: has no {data_column} column")
    return p.resolve()


def _strings(t: Any, col: str, n: int) -> list[str]:
    if col not in t.colnames() or n == 0:
        return [""] * n
    return [str(s) for s in t.getcol(col)]


def _cells(t: Any, col: str) -> list[np.ndarray | None]:
    """Per-row array cells of a (possibly variable-shaped) column; None where undefined."""
    if col not in t.colnames():
        return [None] * t.nrows()
    return [np.asarray(t.getcell(col, r)) if t.iscelldefined(col, r) else None
            for r in range(t.nrows())]


def _ref(t: Any, col: str, default: str) -> str:
    info = t.getcolkeywords(col).get("MEASINFO", {}) if col in t.colnames() else {}
    return str(info.get("Ref", default))


@dataclass
class MSMetadata:
    """The subtables of a Measurement Set, as plain numpy/python values."""

    ant_names: list[str]
    ant_stations: list[str]
    ant_mounts: list[str]
    ant_positions: np.ndarray  # (n_ant, 3) ITRF m
    ant_diameters: np.ndarray  # (n_ant,) m
    feed_pol_types: dict[int, tuple[str, str]]  # antenna id -> receptor types
    feed_angles: dict[int, np.ndarray]  # antenna id -> (2,) rad
    field_names: list[str]
    field_phase_dirs: np.ndarray  # (n_field, 2) rad, polynomial term 0
    field_frame: str
    field_source_names: list[str]
    spw_freqs: list[np.ndarray]  # per spw (n_chan,) Hz
    spw_widths: list[np.ndarray]
    spw_names: list[str]
    spw_frames: list[str]
    pol_corr_types: list[np.ndarray]  # per polarization row (n_corr,) codes
    ddid_spw: np.ndarray
    ddid_pol: np.ndarray
    obs_observer: list[str]
    obs_project: list[str]
    obs_telescope: list[str]
    uvw_frame: str

    def unique_antenna_names(self) -> list[str]:
        """ANTENNA::NAME, made unique (``<name>_<id>``) if the MS repeats names."""
        names = [n or f"ant_{i}" for i, n in enumerate(self.ant_names)]
        if len(set(names)) < len(names):
            names = [f"{n}_{i}" for i, n in enumerate(names)]
        return names

    def corr_names(self, pol_id: int, name: str) -> list[str]:
        """Correlation names of a POLARIZATION row (``["XX", "XY", ...]``)."""
        out = []
        for code in self.pol_corr_types[pol_id]:
            if int(code) not in STOKES_NAMES:
                raise MeasurementSetError(
                    f"{name}: POLARIZATION row {pol_id} has unsupported correlation type {int(code)}")
            out.append(STOKES_NAMES[int(code)])
        return out


def read_metadata(ms: Path, name: str) -> MSMetadata:
    """Read the subtables of a Measurement Set (eager; they are small)."""
    with open_table(ms / "ANTENNA", name) as t:
        n = t.nrows()
        positions = t.getcol("POSITION").reshape(n, 3) if n else np.zeros((0, 3))
        diam = t.getcol("DISH_DIAMETER") if n else np.zeros(0)
        ant = (_strings(t, "NAME", n), _strings(t, "STATION", n), _strings(t, "MOUNT", n))
    pol_types: dict[int, tuple[str, str]] = {}
    angles: dict[int, np.ndarray] = {}
    if (ms / "FEED").is_dir():
        with open_table(ms / "FEED", name) as t:
            if t.nrows():
                ids = t.getcol("ANTENNA_ID")
                types = _cells(t, "POLARIZATION_TYPE")
                angs = _cells(t, "RECEPTOR_ANGLE")
                for r in range(t.nrows()):
                    a = int(ids[r])
                    if a in pol_types or types[r] is None or np.size(types[r]) != 2:
                        continue
                    pol_types[a] = (str(types[r][0]), str(types[r][1]))
                    if angs[r] is not None and np.size(angs[r]) == 2:
                        angles[a] = np.asarray(angs[r], dtype=np.float64)
    with open_table(ms / "FIELD", name) as t:
        n = t.nrows()
        fnames = _strings(t, "NAME", n)
        fnames = [s or f"field_{i}" for i, s in enumerate(fnames)]
        if len(set(fnames)) < len(fnames):
            fnames = [f"{s}_{i}" for i, s in enumerate(fnames)]
        dirs = np.array([c[0] if c is not None else (np.nan, np.nan)
                         for c in _cells(t, "PHASE_DIR")], dtype=np.float64).reshape(n, 2)
        frame = dir_to_frame(_ref(t, "PHASE_DIR", "J2000"))
        source_ids = t.getcol("SOURCE_ID") if n else np.zeros(0, int)
    source_names = list(fnames)
    if (ms / "SOURCE").is_dir():
        with open_table(ms / "SOURCE", name) as t:
            if t.nrows() and "NAME" in t.colnames():
                lookup = dict(zip(t.getcol("SOURCE_ID").tolist(), _strings(t, "NAME", t.nrows()),
                                  strict=True))
                source_names = [lookup.get(int(s)) or f for s, f in zip(source_ids, fnames,
                                                                        strict=True)]
    with open_table(ms / "SPECTRAL_WINDOW", name) as t:
        n = t.nrows()
        freqs = [c if c is not None else np.zeros(0) for c in _cells(t, "CHAN_FREQ")]
        widths = [c if c is not None else np.zeros(0) for c in _cells(t, "CHAN_WIDTH")]
        snames = [s or f"spw_{i}" for i, s in enumerate(_strings(t, "NAME", n))]
        codes = t.getcol("MEAS_FREQ_REF") if n and "MEAS_FREQ_REF" in t.colnames() else [5] * n
        frames = [FREQ_FRAMES.get(int(c), "TOPO") for c in codes]
    with open_table(ms / "POLARIZATION", name) as t:
        corr = [c if c is not None else np.zeros(0, int) for c in _cells(t, "CORR_TYPE")]
    with open_table(ms / "DATA_DESCRIPTION", name) as t:
        ddid_spw = t.getcol("SPECTRAL_WINDOW_ID") if t.nrows() else np.zeros(0, int)
        ddid_pol = t.getcol("POLARIZATION_ID") if t.nrows() else np.zeros(0, int)
    observer, project, telescope = [""], [""], [""]
    if (ms / "OBSERVATION").is_dir():
        with open_table(ms / "OBSERVATION", name) as t:
            if t.nrows():
                n = t.nrows()
                observer = _strings(t, "OBSERVER", n)
                project = _strings(t, "PROJECT", n)
                telescope = _strings(t, "TELESCOPE_NAME", n)
    with open_table(ms, name) as t:
        uvw_frame = dir_to_frame(_ref(t, "UVW", "J2000"))
    return MSMetadata(
        ant_names=ant[0], ant_stations=ant[1], ant_mounts=ant[2], ant_positions=positions,
        ant_diameters=np.asarray(diam, dtype=np.float64), feed_pol_types=pol_types,
        feed_angles=angles, field_names=fnames, field_phase_dirs=dirs, field_frame=frame,
        field_source_names=source_names, spw_freqs=freqs, spw_widths=widths, spw_names=snames,
        spw_frames=frames, pol_corr_types=corr, ddid_spw=np.asarray(ddid_spw),
        ddid_pol=np.asarray(ddid_pol), obs_observer=observer, obs_project=project,
        obs_telescope=telescope, uvw_frame=uvw_frame,
    )


def regular_chunks(n: int, size: int) -> tuple[int, ...]:
    """Chunk lengths of ``n`` items in pieces of ``size`` (the last one shorter)."""
    size = max(1, min(size, n))
    return (size,) * (n // size) + ((n % size,) if n % size else ())


def split_chunks(chunks: tuple[int, ...], most: int) -> tuple[int, ...]:
    """Split each chunk into near-equal pieces of at most ``most``; drop empty chunks."""
    out: list[int] = []
    for c in chunks:
        if c <= 0:
            continue
        k = -(-c // max(1, most))
        out += [c // k + (1 if i < c % k else 0) for i in range(k)]
    return tuple(out)


def receptor_types(corr_names: list[str]) -> tuple[str, str]:
    """Receptor types implied by correlation names (linear unless circular)."""
    return ("R", "L") if any(c[0] in "RL" for c in corr_names if len(c) == 2) else ("X", "Y")


def corr_product(corr_names: list[str]) -> np.ndarray:
    """``CORR_PRODUCT`` (n_corr, 2) receptor indices of each correlation."""
    out = np.zeros((len(corr_names), 2), dtype=np.int32)
    for k, c in enumerate(corr_names):
        if len(c) == 2:
            out[k] = [0 if c[0] in "XR" else 1, 0 if c[1] in "XR" else 1]
    return out


def corr_codes(corr_names: list[str], name: str) -> np.ndarray:
    """``CORR_TYPE`` codes of correlation names."""
    try:
        return np.array([STOKES_CODES[str(c)] for c in corr_names], dtype=np.int32)
    except KeyError as exc:
        raise MeasurementSetError(f"{name}: unknown polarization {exc.args[0]!r}") from None


# -- creating a new Measurement Set --------------------------------------------------------

#: Main-table array columns of complex visibilities a new MS may carry.
DATA_COLUMNS = ("DATA", "CORRECTED_DATA", "MODEL_DATA")


def _tile_shape(n_pol: int, n_chan: int, itemsize: int, tile_bytes: int = 1 << 20) -> np.ndarray:
    """``DEFAULTTILESHAPE`` (corr, chan, row) of about ``tile_bytes`` per tile."""
    n_chan_tile = max(1, min(n_chan, 256))
    n_row = max(1, tile_bytes // max(1, n_pol * n_chan_tile * itemsize))
    return np.array([max(n_pol, 1), n_chan_tile, n_row], dtype=np.int32)


def data_column_desc(column: str, value_type: str = "complex") -> dict[str, Any]:
    """casacore column description of a (row, chan, corr) data column, tiled storage."""
    from casacore.tables import makearrcoldesc

    value = {"complex": 0j, "dcomplex": 0j, "float": 0.0, "boolean": False}[value_type]
    return makearrcoldesc(column, value, ndim=2, valuetype=value_type,
                          datamanagertype="TiledShapeStMan", datamanagergroup=f"Tiled_{column}",
                          comment=f"{column} column")


def tiled_dminfo(columns: dict[str, str], n_pol: int, n_chan: int) -> dict[str, Any]:
    """Data-manager info placing each (row, chan, corr) column in its own TiledShapeStMan.

    ``columns`` maps column name -> casacore value type.
    """
    size = {"complex": 8, "dcomplex": 16, "float": 4, "boolean": 1}
    return {
        f"*{k + 1}": {
            "TYPE": "TiledShapeStMan", "NAME": f"Tiled_{col}", "COLUMNS": [col],
            "SPEC": {"DEFAULTTILESHAPE": _tile_shape(n_pol, n_chan, size[vt])},
        }
        for k, (col, vt) in enumerate(columns.items())
    }


def add_data_column(ms: Path, name: str, column: str, n_pol: int, n_chan: int) -> None:
    """Add a tiled (row, chan, corr) data column to an existing MS (value type of DATA)."""
    from casacore.tables import maketabdesc

    with open_table(ms, name, readonly=False) as t:
        vt = "complex"
        if "DATA" in t.colnames():
            vt = str(t.getcoldesc("DATA").get("valueType", "complex"))
        t.addcols(maketabdesc([data_column_desc(column, vt)]),
                  tiled_dminfo({column: vt}, n_pol, n_chan)["*1"])


def create_ms(path: Path, name: str, n_rows: int, data_columns: list[str], n_pol: int,
              n_chan: int, uvw_frame: str) -> None:
    """Create an MS with all required subtables (empty) and ``n_rows`` main-table rows.

    The visibility columns (``data_columns``, ``FLAG``, ``WEIGHT_SPECTRUM``) use
    tiled storage with tiles fitted to the largest (n_pol, n_chan) cell.
    """
    from casacore.tables import default_ms, default_ms_subtable, maketabdesc, table

    descs = [data_column_desc(c) for c in data_columns]
    descs.append(data_column_desc("WEIGHT_SPECTRUM", "float"))
    kinds = {c: "complex" for c in data_columns} | {"WEIGHT_SPECTRUM": "float", "FLAG": "boolean"}
    dminfo = tiled_dminfo(kinds, n_pol, n_chan)
    try:
        t = default_ms(str(path), maketabdesc(descs), dminfo)
    except RuntimeError as exc:
        raise MeasurementSetError(f"{name}: cannot create Measurement Set: {exc}") from None
    try:
        t.addrows(n_rows)
        kw = t.getcolkeywords("UVW")
        kw["MEASINFO"] = {"type": "uvw", "Ref": frame_to_dir(uvw_frame)}
        t.putcolkeywords("UVW", kw)
        default_ms_subtable("SOURCE", str(path / "SOURCE")).close()
        t.putkeyword("SOURCE", "Table: " + str(path / "SOURCE"))
        t.putkeyword("MS_VERSION", np.float32(2.0))
    finally:
        t.close()
    with table(str(path), ack=False):  # checks the result opens
        pass


def _fill(path: Path, sub: str, n: int, columns: dict[str, Any],
          cells: dict[str, list[np.ndarray]] | None = None,
          keywords: dict[str, dict[str, Any]] | None = None) -> None:
    """Append ``n`` rows to a subtable: whole columns, per-row cells, column keywords."""
    from casacore.tables import table

    with table(str(path / sub), ack=False, readonly=False) as t:
        t.addrows(n)
        for col, val in columns.items():
            if n:
                t.putcol(col, val)
        for col, vals in (cells or {}).items():
            for r, val in enumerate(vals):
                t.putcell(col, r, val)
        for col, kw in (keywords or {}).items():
            old = t.getcolkeywords(col)
            old.update(kw)
            t.putcolkeywords(col, old)


@dataclass
class NewMSTables:
    """The subtable contents of a new MS (one entry per row)."""

    ant_names: list[str]
    ant_stations: list[str]
    ant_mounts: list[str]
    ant_positions: np.ndarray  # (n_ant, 3)
    ant_diameters: np.ndarray  # (n_ant,)
    ant_pol_types: np.ndarray  # (n_ant, 2) str
    ant_angles: np.ndarray  # (n_ant, 2)
    field_names: list[str]
    field_dirs: np.ndarray  # (n_field, 2)
    field_frame: str
    field_source_ids: list[int]
    source_names: list[str]
    source_dirs: np.ndarray  # (n_source, 2)
    spw_freqs: list[np.ndarray]
    spw_widths: list[float]
    spw_names: list[str]
    spw_frames: list[str]
    spw_ref_freqs: list[float]
    pol_corrs: list[list[str]]
    ddid_spw: list[int]
    ddid_pol: list[int]
    obs_observer: list[str]
    obs_project: list[str]
    obs_telescope: list[str]
    obs_time_range: list[tuple[float, float]]  # MJD s
    processor_type: str
    processor_sub_type: str
    t0_mjd: float
    history: str


def write_subtables(path: Path, name: str, tabs: NewMSTables) -> None:
    """Fill the subtables of a new MS (created by :func:`create_ms`)."""
    n_ant = len(tabs.ant_names)
    direction = lambda ref: {"MEASINFO": {"type": "direction", "Ref": ref}}  # noqa: E731
    _fill(path, "ANTENNA", n_ant, {
        "NAME": tabs.ant_names, "STATION": tabs.ant_stations, "MOUNT": tabs.ant_mounts,
        "TYPE": ["GROUND-BASED"] * n_ant, "POSITION": tabs.ant_positions,
        "OFFSET": np.zeros((n_ant, 3)), "DISH_DIAMETER": tabs.ant_diameters,
        "FLAG_ROW": np.zeros(n_ant, bool)})
    eye = np.tile(np.eye(2, dtype=np.complex64), (n_ant, 1, 1))
    _fill(path, "FEED", n_ant, {
        "ANTENNA_ID": np.arange(n_ant, dtype=np.int32), "FEED_ID": np.zeros(n_ant, np.int32),
        "SPECTRAL_WINDOW_ID": np.full(n_ant, -1, np.int32), "BEAM_ID": np.full(n_ant, -1, np.int32),
        "TIME": np.full(n_ant, tabs.t0_mjd), "INTERVAL": np.zeros(n_ant),
        "NUM_RECEPTORS": np.full(n_ant, 2, np.int32), "POSITION": np.zeros((n_ant, 3)),
        "BEAM_OFFSET": np.zeros((n_ant, 2, 2)), "POL_RESPONSE": eye,
        "RECEPTOR_ANGLE": tabs.ant_angles,
    }, cells={"POLARIZATION_TYPE": [list(p) for p in tabs.ant_pol_types]})
    n_field = len(tabs.field_names)
    ref = frame_to_dir(tabs.field_frame)
    dirs = tabs.field_dirs.reshape(n_field, 1, 2)
    _fill(path, "FIELD", n_field, {
        "NAME": tabs.field_names, "CODE": [""] * n_field, "TIME": np.full(n_field, tabs.t0_mjd),
        "NUM_POLY": np.zeros(n_field, np.int32), "PHASE_DIR": dirs, "DELAY_DIR": dirs,
        "REFERENCE_DIR": dirs, "SOURCE_ID": np.asarray(tabs.field_source_ids, np.int32),
        "FLAG_ROW": np.zeros(n_field, bool),
    }, keywords={c: direction(ref) for c in ("PHASE_DIR", "DELAY_DIR", "REFERENCE_DIR")})
    n_src = len(tabs.source_names)
    _fill(path, "SOURCE", n_src, {
        "SOURCE_ID": np.arange(n_src, dtype=np.int32), "NAME": tabs.source_names,
        "DIRECTION": tabs.source_dirs.reshape(n_src, 2), "TIME": np.full(n_src, tabs.t0_mjd),
        "INTERVAL": np.full(n_src, np.finfo(np.float64).max),
        "SPECTRAL_WINDOW_ID": np.full(n_src, -1, np.int32), "NUM_LINES": np.zeros(n_src, np.int32),
        "CALIBRATION_GROUP": np.full(n_src, -1, np.int32), "CODE": [""] * n_src,
        "PROPER_MOTION": np.zeros((n_src, 2)),
    }, keywords={"DIRECTION": direction(ref)})
    n_spw = len(tabs.spw_names)
    widths = [np.full(f.size, w) for f, w in zip(tabs.spw_freqs, tabs.spw_widths, strict=True)]
    _fill(path, "SPECTRAL_WINDOW", n_spw, {
        "NAME": tabs.spw_names, "NUM_CHAN": np.array([f.size for f in tabs.spw_freqs], np.int32),
        "MEAS_FREQ_REF": np.array([FREQ_FRAME_CODES.get(f, 5) for f in tabs.spw_frames], np.int32),
        "REF_FREQUENCY": np.asarray(tabs.spw_ref_freqs, np.float64),
        "TOTAL_BANDWIDTH": np.array([np.abs(w).sum() for w in widths]),
        "NET_SIDEBAND": np.ones(n_spw, np.int32), "FREQ_GROUP": np.zeros(n_spw, np.int32),
        "FREQ_GROUP_NAME": [""] * n_spw, "IF_CONV_CHAIN": np.zeros(n_spw, np.int32),
        "FLAG_ROW": np.zeros(n_spw, bool),
    }, cells={"CHAN_FREQ": tabs.spw_freqs, "CHAN_WIDTH": widths,
              "EFFECTIVE_BW": [np.abs(w) for w in widths], "RESOLUTION": [np.abs(w) for w in widths]})
    n_pol = len(tabs.pol_corrs)
    _fill(path, "POLARIZATION", n_pol, {
        "NUM_CORR": np.array([len(c) for c in tabs.pol_corrs], np.int32),
        "FLAG_ROW": np.zeros(n_pol, bool),
    }, cells={"CORR_TYPE": [corr_codes(c, name) for c in tabs.pol_corrs],
              "CORR_PRODUCT": [corr_product(c) for c in tabs.pol_corrs]})
    n_dd = len(tabs.ddid_spw)
    _fill(path, "DATA_DESCRIPTION", n_dd, {
        "SPECTRAL_WINDOW_ID": np.asarray(tabs.ddid_spw, np.int32),
        "POLARIZATION_ID": np.asarray(tabs.ddid_pol, np.int32), "FLAG_ROW": np.zeros(n_dd, bool)})
    n_obs = len(tabs.obs_observer)
    _fill(path, "OBSERVATION", n_obs, {
        "TELESCOPE_NAME": tabs.obs_telescope, "OBSERVER": tabs.obs_observer,
        "PROJECT": tabs.obs_project, "TIME_RANGE": np.asarray(tabs.obs_time_range).reshape(n_obs, 2),
        "RELEASE_DATE": np.zeros(n_obs), "SCHEDULE_TYPE": [""] * n_obs,
        "FLAG_ROW": np.zeros(n_obs, bool),
    }, cells={"LOG": [[""]] * n_obs, "SCHEDULE": [[""]] * n_obs})
    _fill(path, "PROCESSOR", 1, {
        "TYPE": [tabs.processor_type], "SUB_TYPE": [tabs.processor_sub_type],
        "TYPE_ID": np.zeros(1, np.int32), "MODE_ID": np.zeros(1, np.int32),
        "FLAG_ROW": np.zeros(1, bool)})
    from daskcal import __version__

    _fill(path, "HISTORY", 1, {
        "TIME": np.array([tabs.t0_mjd]), "OBSERVATION_ID": np.zeros(1, np.int32),
        "MESSAGE": [tabs.history], "PRIORITY": ["NORMAL"], "ORIGIN": ["daskcal.data.ms_write"],
        "OBJECT_ID": np.zeros(1, np.int32), "APPLICATION": [f"daskcal {__version__}"],
    }, cells={"CLI_COMMAND": [[""]], "APP_PARAMS": [[""]]})
