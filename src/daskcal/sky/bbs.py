"""The makesourcedb / BBS sky-model text format of the LOFAR tools (DP3, LSMTool, Rapthor).

Reading follows DP3's ``makesourcedb`` parser (``parmdb/SkymodelToSourceDB.cc``); what
we write is read by both ``makesourcedb`` and LSMTool.

Rules supported
---------------
* **Format line**, before the first data line: ``format = <fields>`` or
  ``# ( <fields> ) = format`` (case-insensitive). The first one found wins.
  ``<fields>`` lists column names (case-insensitive; letters, digits, ``_``, ``:``)
  in any order, each followed by its separator (normally ``,``; any other
  non-name character works, whitespace too). ``Name='value'`` (single or double
  quotes) gives a default used when a row leaves the value empty;
  ``Name=fixed'value'`` a value that rows do not contain at all. An empty name or
  ``dummy`` skips a column.
* **Columns**: ``Name`` (required), ``Type`` (``POINT`` (default) or ``GAUSSIAN``),
  ``Patch``, ``Ra``, ``Dec`` (or DP3's ``rah``/``rad``, ``ram``, ``ras``, ``dech``/
  ``decd``, ``decm``, ``decs`` parts), ``I`` (default 1 Jy, as makesourcedb),
  ``Q``, ``U``, ``V`` (default 0), ``ReferenceFrequency`` (Hz), ``SpectralIndex``
  (``[a0, a1, ...]``, a single number, or ``[]``), ``LogarithmicSI`` (true/false,
  yes/no, 1/0; default true), ``MajorAxis``, ``MinorAxis`` (FWHM, arcsec) and
  ``Orientation`` (degrees, north through east; all three default to 1 for a
  Gaussian with empty values, as makesourcedb). ``Category``,
  ``OrientationIsAbsolute`` (we always read the orientation as north through east)
  and ``RefType`` (only ``J2000``) are accepted; polarisation-by-RM and shapelet
  columns are refused when a row fills them; unknown columns are ignored.
* **Rows**: values are split at the separators, except inside quotes or square
  brackets; values are trimmed and unquoted. Missing trailing values are empty.
  Blank lines and lines whose first non-blank character is ``#`` are comments.
* **Patch lines**: a row with an empty ``Name`` defines the patch named in its
  ``Patch`` column, with its direction from ``Ra``/``Dec`` (``, , CygA,
  19:59:28.3, +40.44.02.1``). Components may name patches without a patch line.
* **Angles**: ``hh:mm:ss.s`` (hours; also ``hh:mm``, ``12h30m5s``), ``dd.mm.ss.s``
  (degrees; note the dots; also ``12d30m5s``), a number with a unit (``12.5deg``,
  ``0.2rad``, ``30arcmin``, ``10arcsec``), or a plain number in
  ``plain_angle_unit`` (degrees, as LSMTool; ``makesourcedb`` reads radians). The sign
  is taken from the text, so ``-00.30.00`` is -0.5 degrees. Minutes and seconds must
  be below 60, hours below 24, |Dec| at most 90 degrees; colons (hours) are refused
  in Dec, as in ``makesourcedb``.

Differences from makesourcedb: duplicate component or patch names and values beyond
the last column are errors (makesourcedb warns or ignores them); a component without
spectral index or ReferenceFrequency gets 150 MHz (its spectrum is flat anyway);
``MinorAxis > MajorAxis`` is swapped, turning the orientation by 90 degrees.

Writing produces a ``FORMAT = ...`` line, a patch line per patch (before all
components) and one line per component with every value explicit: positions to
1e-7 s of time and 1e-6 arcsec (better than 1e-10 rad), numbers with ``repr`` (exact).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from daskcal.sky.model import SkyModel, SkyModelError

_DEG = np.pi / 180.0
_ARCSEC = _DEG / 3600.0
_DEFAULT_REF_FREQ_HZ = 150e6


class BBSFormatError(SkyModelError):
    """A sky-model file that cannot be read or a sky model that cannot be written."""


# ----------------------------------------------------------------------------- angles

_FLOAT = r"(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?"
_DOTS = re.compile(r"([+-]?)(\d*)\.(\d*)\.(\d*(?:\.\d*)?)")
_COLONS = re.compile(r"([+-]?)(\d*):(\d*(?:\.\d*)?)(?::(\d*(?:\.\d*)?))?")
_LETTERS = re.compile(r"([+-]?)(\d+(?:\.\d*)?)([dh])(?:(\d+(?:\.\d*)?)(?:m(?:(\d+(?:\.\d*)?)s?)?)?)?",
                      re.IGNORECASE)
_WITH_UNIT = re.compile(rf"([+-]?{_FLOAT})\s*(deg|rad|arcmin|arcsec)?", re.IGNORECASE)
_NUMBER = re.compile(rf"[+-]?{_FLOAT}")
_UNIT_RAD = {"deg": _DEG, "rad": 1.0, "arcmin": _DEG / 60, "arcsec": _ARCSEC}


def _sexagesimal(sign: str, whole: str, minutes: str | None, seconds: str | None) -> float:
    m = float(minutes) if minutes else 0.0
    s = float(seconds) if seconds else 0.0
    if m >= 60 or s >= 60:
        raise ValueError("minutes and seconds must be below 60")
    value = (float(whole) if whole else 0.0) + m / 60 + s / 3600
    return -value if sign == "-" else value


def parse_angle(text: str, kind: str, plain_unit: str = "deg") -> float:
    """Parse an RA or Dec as written in sky-model files (see the module notes).

    Parameters
    ----------
    text : str
        The value, e.g. ``"19:59:28.3"``, ``"+40.44.02.1"``, ``"-00.30.00"``, ``"12.5deg"``.
    kind : {"ra", "dec"}
        RA results are wrapped into [0, 2 pi); Dec must lie within [-pi/2, pi/2].
    plain_unit : {"deg", "rad"}
        Unit of a number written without one.

    Returns
    -------
    float
        The angle, radians.

    Raises
    ------
    ValueError
        If the text is not an angle of that kind.
    """
    s = text.strip()
    hours = False
    if m := _DOTS.fullmatch(s):
        deg = _sexagesimal(m[1], m[2], m[3], m[4])
    elif m := _COLONS.fullmatch(s):
        if not (m[2] or m[3] or m[4]):
            raise ValueError("empty")
        deg, hours = _sexagesimal(m[1], m[2], m[3], m[4]), True
    elif m := _LETTERS.fullmatch(s):
        deg, hours = _sexagesimal(m[1], m[2], m[4], m[5]), m[3].lower() == "h"
    elif m := _WITH_UNIT.fullmatch(s):
        unit = (m[2] or plain_unit).lower()
        if unit not in _UNIT_RAD:
            raise ValueError(f"unknown unit {unit!r}")
        deg = float(m[1]) * _UNIT_RAD[unit] / _DEG
    else:
        raise ValueError("not an angle")
    if hours:
        if kind == "dec":
            raise ValueError("hours (':' or 'h') cannot be used in a declination")
        if abs(deg) >= 24:
            raise ValueError("hours must be below 24")
        deg *= 15.0
    if kind == "dec":
        if abs(deg) > 90:
            raise ValueError("|Dec| exceeds 90 degrees")
        return deg * _DEG
    if not np.isfinite(deg) or abs(deg) > 360:
        raise ValueError("|RA| exceeds 360 degrees")
    return float(np.mod(deg * _DEG, 2 * np.pi))


def format_ra(ra_rad: float) -> str:
    """``hh:mm:ss.sssssss`` of an RA in radians (to 1e-7 s of time)."""
    ticks = round(float(np.mod(ra_rad, 2 * np.pi)) * 12 / np.pi * 3600 * 10**7) % (24 * 3600 * 10**7)
    secs, frac = divmod(ticks, 10**7)
    h, rest = divmod(secs, 3600)
    return f"{h:02d}:{rest // 60:02d}:{rest % 60:02d}.{frac:07d}"


def format_dec(dec_rad: float) -> str:
    """``+dd.mm.ss.ssssss`` of a Dec in radians (to 1e-6 arcsec; sign always written)."""
    ticks = round(abs(float(dec_rad)) / _ARCSEC * 10**6)
    sign = "-" if dec_rad < 0 and ticks else "+"
    secs, frac = divmod(ticks, 10**6)
    d, rest = divmod(secs, 3600)
    return f"{sign}{d:02d}.{rest // 60:02d}.{rest % 60:02d}.{frac:06d}"


# ----------------------------------------------------------------------------- format line

_KNOWN = {
    "name", "type", "patch", "ra", "dec", "i", "q", "u", "v", "referencefrequency",
    "spectralindex", "logarithmicsi", "majoraxis", "minoraxis", "orientation",
    "orientationisabsolute", "category", "reftype",
    "rah", "rad", "ram", "ras", "dech", "decd", "decm", "decs",
}
_UNSUPPORTED = {"rotationmeasure", "polarizationangle", "polarizedfraction",
                "referencewavelength", "ishapelet", "qshapelet", "ushapelet", "vshapelet"}
_FMT_COMMENT = re.compile(r"\s*#\s*\((.*)\)\s*=\s*format\s*", re.IGNORECASE)
_FMT_PLAIN = re.compile(r"\s*format\s*=(.*)", re.IGNORECASE)
_NAME_CHAR = re.compile(r"[A-Za-z0-9_]")


@dataclass(frozen=True)
class _Field:
    key: str  # lower-case column name ("" for a skipped column)
    sep: str  # separator after this column
    value: str | None  # default (or fixed) value
    fixed: bool


def _parse_format(fmt: str) -> list[_Field]:
    """DP3's ``getFormat``: names, ``='default'`` / ``=fixed'value'``, separators."""
    fields: list[_Field] = []
    i, end = 0, len(fmt.rstrip())
    while i < end and fmt[i] in " \t":
        i += 1
    while i < end:
        st = i
        while i < end and (_NAME_CHAR.match(fmt[i]) or (fmt[i] == ":" and i > st)):
            i += 1
        key = fmt[st:i].lower()
        while i < end and fmt[i] in " \t":
            i += 1
        value, fixed = None, False
        if i < end and fmt[i] == "=":
            i += 1
            while i < end and fmt[i] in " \t":
                i += 1
            if fmt[i:i + 5].lower() == "fixed":
                fixed, i = True, i + 5
            if i >= end or fmt[i] not in "'\"":
                raise ValueError(f"the value after {key or '='}= must be quoted")
            close = fmt.find(fmt[i], i + 1)
            if close < 0:
                raise ValueError(f"no closing quote after {key}=")
            value, i = fmt[i + 1:close], close + 1
            while i < end and fmt[i] in " \t":
                i += 1
        sep = " " if i < end or not fields else fields[-1].sep  # last column: as before
        if i < end and not _NAME_CHAR.match(fmt[i]):
            sep, i = fmt[i], i + 1
            if sep in "'\"":
                raise ValueError("a quote is used as separator (a value is missing its quotes)")
            while i < end and fmt[i] in " \t":
                i += 1
        if key == "spectralindexdegree":
            raise ValueError("SpectralIndexDegree is obsolete; use SpectralIndex=[a0, a1, ...]")
        if key in _UNSUPPORTED and fixed and value:
            raise ValueError(f"column {key!r} is not supported")
        fields.append(_Field("" if key == "dummy" else key, sep, value, fixed))
    keys = [f.key for f in fields if f.key]
    dup = sorted({k for k in keys if keys.count(k) > 1})
    if dup:
        raise ValueError(f"column {dup[0]!r} appears twice")
    if "name" not in keys:
        raise ValueError("no Name column")
    for axis, parts in (("ra", ("rah", "rad", "ram", "ras")), ("dec", ("dech", "decd", "decm", "decs"))):
        if axis in keys and any(p in keys for p in parts):
            raise ValueError(f"{axis} cannot be combined with {'/'.join(parts)}")
        if axis not in keys and not any(p in keys for p in parts):
            raise ValueError(f"no {axis.capitalize()} column")
    return fields


def _find_format(lines: list[str]) -> tuple[str | None, int | None]:
    """(format string, its line) or (None, first data line or None)."""
    for lineno, line in enumerate(lines, start=1):
        stripped = line.strip()
        if not stripped:
            continue
        if stripped.startswith("#"):
            if m := _FMT_COMMENT.fullmatch(line):
                return m[1], lineno
            continue
        if m := _FMT_PLAIN.fullmatch(line):
            return m[1], lineno
        return None, lineno
    return None, None


# ----------------------------------------------------------------------------- rows


def _next_value(line: str, sep: str, st: int, end: int) -> int:
    """Position of the next separator, ignoring quoted and bracketed parts (DP3 ``nextValue``)."""
    depth = 0
    while st < end:
        c = line[st]
        if c in "'\"":
            close = line.find(c, st + 1)
            if close < 0:
                raise ValueError("unbalanced quote")
            st = close
        elif c == "[":
            depth += 1
        elif c == "]":
            if depth == 0:
                raise ValueError("unbalanced square brackets")
            depth -= 1
        elif depth == 0 and (c == sep or (sep == " " and c == "\t")):
            return st
        st += 1
    if depth:
        raise ValueError("unbalanced square brackets")
    return end


def _unquote(value: str) -> str:
    if len(value) > 1 and value[0] == value[-1] and value[0] in "'\"":
        return value[1:-1]
    return value


def _split_row(line: str, fields: list[_Field]) -> dict[str, str]:
    values: dict[str, str] = {}
    st, end = 0, len(line)
    while st < end and line[st] in " \t":
        st += 1
    for field in fields:
        value = ""
        if field.fixed:
            value = field.value or ""
        elif st < end:
            pos = _next_value(line, field.sep, st, end)
            value = line[st:pos].rstrip(" \t")
            st = pos + 1
            while st < end and line[st] in " \t":
                st += 1
        value = _unquote(value)
        if not value and field.value is not None:
            value = _unquote(field.value)
        if field.key:
            values[field.key] = value
    if line[st:end].strip(" \t,"):
        raise ValueError(f"more values than columns in the format line: {line[st:end].strip()!r}")
    return values


def _number(values: dict[str, str], key: str, default: float, label: str) -> float:
    text = values.get(key, "")
    if not text:
        return default
    if not _NUMBER.fullmatch(text) or not np.isfinite(float(text)):
        raise ValueError(f"cannot parse {label} {text!r}")
    return float(text)


_TRUE, _FALSE = {"true", "t", "yes", "y", "1"}, {"false", "f", "no", "n", "0"}


def _bool(values: dict[str, str], key: str, default: bool, label: str) -> bool:
    text = values.get(key, "").lower()
    if not text:
        return default
    if text in _TRUE or text in _FALSE:
        return text in _TRUE
    raise ValueError(f"cannot parse {label} {values[key]!r}")


def _spectral_index(text: str) -> list[float]:
    body = text.strip()
    if body.startswith("[") and body.endswith("]"):
        body = body[1:-1]
    terms = [t.strip() for t in body.split(",")] if body.strip() else []
    if not all(_NUMBER.fullmatch(t) and np.isfinite(float(t)) for t in terms):
        raise ValueError(f"cannot parse SpectralIndex {text!r}")
    return [float(t) for t in terms]


def _position(values: dict[str, str], axis: str, plain_unit: str) -> float | None:
    """Ra or Dec (radians) of a row, from its own column or DP3's split columns; None if empty."""
    label = axis.capitalize()
    if axis in values:
        text = values[axis]
        if not text:
            return None
        try:
            return parse_angle(text, axis, plain_unit)
        except ValueError as exc:
            raise ValueError(f"cannot parse {label} {text!r} ({exc})") from None
    if axis == "ra":
        first = "rah" if "rah" in values else "rad"
    else:
        first = "dech" if "dech" in values else "decd"
    parts = [values.get(first, ""), values.get(axis + "m", ""), values.get(axis + "s", "")]
    if not any(parts):
        return None
    text = f"{parts[0] or '0'}{'h' if first.endswith('h') else 'd'}{parts[1] or '0'}m{parts[2] or '0'}"
    try:
        return parse_angle(text, axis, plain_unit)
    except ValueError as exc:
        raise ValueError(f"cannot parse {label} from {'/'.join(parts)!r} ({exc})") from None


def _component(values: dict[str, str], plain_unit: str) -> dict:
    """One component row as plain values (radians, Jy, Hz)."""
    kind = values.get("type", "").lower() or "point"
    if kind not in ("point", "gaussian"):
        raise ValueError(f"source type {values['type']!r} is not supported (POINT or GAUSSIAN)")
    ref_type = values.get("reftype", "")
    if ref_type and ref_type.upper() != "J2000":
        raise ValueError(f"RefType {ref_type!r} is not supported (only J2000)")
    for key in _UNSUPPORTED:
        if values.get(key):
            raise ValueError(f"column {key!r} is not supported")
    ra, dec = _position(values, "ra", plain_unit), _position(values, "dec", plain_unit)
    if ra is None or dec is None:
        raise ValueError("Ra and Dec are required")
    si = _spectral_index(values.get("spectralindex", ""))
    ref = _number(values, "referencefrequency", 0.0, "ReferenceFrequency")
    if ref < 0 or (si and ref == 0):
        raise ValueError("SpectralIndex needs a positive ReferenceFrequency" if si
                         else f"cannot use ReferenceFrequency {values['referencefrequency']!r}")
    row = {
        "ra": ra, "dec": dec, "spectral_index": si,
        "ref_freq": ref if ref > 0 else _DEFAULT_REF_FREQ_HZ,
        "stokes": [_number(values, s, 1.0 if s == "i" else 0.0, s.upper()) for s in "iquv"],
        "log_si": _bool(values, "logarithmicsi", True, "LogarithmicSI"),
        "major": 0.0, "minor": 0.0, "position_angle": 0.0, "patch": values.get("patch", ""),
    }
    _bool(values, "orientationisabsolute", False, "OrientationIsAbsolute")
    if kind == "gaussian":
        major = _number(values, "majoraxis", 1.0, "MajorAxis")
        minor = _number(values, "minoraxis", 1.0, "MinorAxis")
        pa = _number(values, "orientation", 1.0, "Orientation")
        if major < 0 or minor < 0:
            raise ValueError("MajorAxis and MinorAxis must not be negative")
        if minor > major:
            major, minor, pa = minor, major, pa + 90.0
        row.update(major=major * _ARCSEC, minor=minor * _ARCSEC, position_angle=pa * _DEG)
    return row


# ----------------------------------------------------------------------------- reading


def parse_bbs(text: str, *, source: str = "<string>",
              plain_angle_unit: str = "deg") -> tuple[SkyModel, dict[str, tuple[float, float]]]:
    """Parse sky-model text in the makesourcedb / BBS format.

    Parameters
    ----------
    text : str
        The file's contents.
    source : str
        Name used in error messages (the file name).
    plain_angle_unit : {"deg", "rad"}
        Unit of an Ra or Dec written as a plain number: degrees (LSMTool) or radians
        (``makesourcedb``).

    Returns
    -------
    sky : SkyModel
        The components, in file order.
    patch_positions : dict of str to (float, float)
        (RA, Dec) in radians of each patch line with a position, in file order.

    Raises
    ------
    BBSFormatError
        One line naming ``source``, the line number and the problem.
    """
    if plain_angle_unit not in ("deg", "rad"):
        raise ValueError(f"plain_angle_unit must be 'deg' or 'rad', not {plain_angle_unit!r}")
    lines = text.splitlines()
    fmt, where = _find_format(lines)
    if fmt is None:
        where = f"{source}:{where}" if where else source
        raise BBSFormatError(f"{where}: no format line ('format = Name, Type, Ra, Dec, ...' or "
                             "'# (Name, Type, Ra, Dec, ...) = format') before the first source")
    try:
        fields = _parse_format(fmt)
    except ValueError as exc:
        raise BBSFormatError(f"{source}:{where}: bad format line: {exc}") from None
    rows: list[dict] = []
    names: dict[str, int] = {}
    patches: dict[str, tuple[float, float]] = {}
    patch_lines: dict[str, int] = {}
    for lineno, line in enumerate(lines, start=1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#") or _FMT_PLAIN.fullmatch(line):
            continue
        try:
            values = _split_row(line.rstrip("\r"), fields)
            name = values["name"]
            if not name:
                patch = values.get("patch", "")
                if not patch:
                    raise ValueError("a line with an empty Name must name a patch")
                if patch in patch_lines:
                    raise ValueError(f"patch {patch!r} is defined twice (first on line "
                                     f"{patch_lines[patch]})")
                patch_lines[patch] = lineno
                ra, dec = _position(values, "ra", plain_angle_unit), _position(
                    values, "dec", plain_angle_unit)
                if ra is not None and dec is not None:
                    patches[patch] = (ra, dec)
                continue
            if name in names:
                raise ValueError(f"component {name!r} is defined twice (first on line {names[name]})")
            names[name] = lineno
            rows.append({"name": name, **_component(values, plain_angle_unit)})
        except ValueError as exc:
            raise BBSFormatError(f"{source}:{lineno}: {exc}") from None
    if not rows:
        return SkyModel.empty(), patches
    n_terms = max(len(r["spectral_index"]) for r in rows)
    for r in rows:
        r["spectral_index"] = r["spectral_index"] + [0.0] * (n_terms - len(r["spectral_index"]))
    columns = {key: np.array([r[key] for r in rows]) for key in rows[0]}
    columns["spectral_index"] = columns["spectral_index"].reshape(len(rows), n_terms)
    return SkyModel(**columns), patches  # rows are validated: cannot raise


def _read_text(path) -> str:
    try:
        return Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise BBSFormatError(f"{path}: no such file") from None
    except UnicodeDecodeError:
        raise BBSFormatError(f"{path}: not a text file (not UTF-8)") from None
    except OSError as exc:
        raise BBSFormatError(f"{path}: cannot read ({exc.strerror})") from None


def read_bbs(path, *, plain_angle_unit: str = "deg") -> SkyModel:
    """Read a makesourcedb / BBS sky-model file (see the module notes for the rules).

    Parameters
    ----------
    path : str or path-like
        The text file.
    plain_angle_unit : {"deg", "rad"}
        Unit of an Ra or Dec written as a plain number.

    Returns
    -------
    SkyModel
        One entry per component line, in file order; ``patch`` from the Patch column.
    """
    return parse_bbs(_read_text(path), source=str(path), plain_angle_unit=plain_angle_unit)[0]


def read_bbs_patches(path, *, plain_angle_unit: str = "deg") -> dict[str, tuple[float, float]]:
    """The patch directions ``{patch: (ra_rad, dec_rad)}`` of a sky-model file's patch lines."""
    return parse_bbs(_read_text(path), source=str(path), plain_angle_unit=plain_angle_unit)[1]


# ----------------------------------------------------------------------------- writing

_BAD_NAME = re.compile(r"[,'\"\[\]#\n\r]")
_COLUMNS = ("Name", "Type", "Patch", "Ra", "Dec", "I", "Q", "U", "V", "ReferenceFrequency",
            "SpectralIndex='[]'", "LogarithmicSI", "MajorAxis", "MinorAxis", "Orientation")


def _check_name(name: str, what: str, where: str) -> None:
    if not name or name != name.strip() or _BAD_NAME.search(name):
        raise BBSFormatError(f"{where}: cannot write {what} {name!r} (empty, padded, or "
                             "containing one of , ' \" [ ] #)")


def _num(x: float) -> str:
    return repr(float(x))


def format_bbs(sky: SkyModel, *, patch_positions: Mapping[str, tuple[float, float]] | None = None,
               source: str = "<string>") -> str:
    """The text of a makesourcedb / BBS sky-model file.

    Parameters
    ----------
    sky : SkyModel
        Components to write (all values are written explicitly).
    patch_positions : mapping of str to (float, float), optional
        (RA, Dec) in radians of patches; patches of ``sky`` not given here get their
        flux-weighted centre (:func:`daskcal.sky.catalogue.patch_summary`). Patches given
        here without components are written too.
    source : str
        Name used in error messages (the file name).

    Returns
    -------
    str
        ``FORMAT = ...`` line, patch lines, then one line per component in ``sky`` order.
    """
    from daskcal.sky.catalogue import patch_summary

    given = dict(patch_positions or {})
    used = [p for p in dict.fromkeys(sky.patch.tolist()) if p]
    with_patch = bool(used or given)
    columns = [c for c in _COLUMNS if with_patch or c != "Patch"]
    out = [f"FORMAT = {', '.join(columns)}", "",
           "# sky model written by daskcal; Ra hh:mm:ss, Dec dd.mm.ss (J2000), fluxes in Jy,",
           "# ReferenceFrequency in Hz, MajorAxis/MinorAxis FWHM in arcsec, Orientation in deg", ""]
    if with_patch:
        missing = [p for p in used if p not in given]
        if missing:
            summary = patch_summary(sky.select(np.isin(sky.patch, missing)))
            given.update({str(p): (float(r), float(d))
                          for p, r, d in zip(summary.name, summary.ra, summary.dec, strict=True)})
        for patch in dict.fromkeys(used + list(given)):
            _check_name(patch, "patch name", source)
            ra, dec = given[patch]
            out.append(f", , {patch}, {format_ra(ra)}, {format_dec(dec)}")
        out.append("")
    for k in range(sky.n_source):
        name = str(sky.name[k])
        _check_name(name, "component name", source)
        gaussian = sky.major[k] > 0
        si = ", ".join(_num(a) for a in sky.spectral_index[k])
        values = [name, "GAUSSIAN" if gaussian else "POINT"]
        if with_patch:
            values.append(str(sky.patch[k]))
        values += [format_ra(sky.ra[k]), format_dec(sky.dec[k]), *map(_num, sky.stokes[k]),
                   _num(sky.ref_freq[k]), f"[{si}]", "true" if sky.log_si[k] else "false",
                   _num(sky.major[k] / _ARCSEC), _num(sky.minor[k] / _ARCSEC),
                   _num(sky.position_angle[k] / _DEG)]
        out.append(", ".join(values))
    return "\n".join(out) + "\n"


def write_bbs(sky: SkyModel, path, *,
              patch_positions: Mapping[str, tuple[float, float]] | None = None) -> Path:
    """Write a sky model as a makesourcedb / BBS text file (read by DP3 and LSMTool).

    Parameters
    ----------
    sky : SkyModel
        Components to write.
    path : str or path-like
        Output file (overwritten).
    patch_positions : mapping of str to (float, float), optional
        Patch directions (RA, Dec) in radians; see :func:`format_bbs`.

    Returns
    -------
    pathlib.Path
        The file written.
    """
    path = Path(path)
    text = format_bbs(sky, patch_positions=patch_positions, source=str(path))
    try:
        path.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise BBSFormatError(f"{path}: cannot write ({exc.strerror})") from None
    return path
