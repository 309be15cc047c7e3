"""One-line messages of pydantic validation errors in site profiles.

``"sites/x.yaml: slurm.cores: must be >= 1; slurm.walltime: must be a SLURM time ..."``:
every problem of a profile on one line, each under its dotted field.
"""

from __future__ import annotations

from pydantic import ValidationError


def _where(loc: tuple) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _message(err: dict) -> str:
    kind, ctx = err["type"], err.get("ctx") or {}
    if kind == "greater_than_equal":
        return f"must be >= {ctx['ge']}"
    if kind == "greater_than":
        return f"must be > {ctx['gt']}"
    if kind == "less_than_equal":
        return f"must be <= {ctx['le']}"
    if kind == "extra_forbidden":
        return "unknown field"
    if kind == "missing":
        return "required"
    if kind == "literal_error":
        return f"must be one of {ctx.get('expected', '')}"
    if kind in ("int_type", "int_parsing", "int_from_float"):
        return "must be an integer"
    if kind == "string_too_short":
        return "must not be empty"
    if kind == "value_error":
        return str(ctx.get("error", err["msg"]))
    return err["msg"][:1].lower() + err["msg"][1:]


def format_validation_error(exc: ValidationError, source: str) -> str:
    """All problems of a profile as one line: ``"src: a.b: problem; c: problem"``.

    Parameters
    ----------
    exc : pydantic.ValidationError
        The error raised while validating a :class:`SiteProfile`.
    source : str
        The file (or other origin) named at the start of the line.

    Returns
    -------
    str
        One line, without newlines.
    """
    parts = []
    for err in exc.errors():
        where, message = _where(err["loc"]), _message(err)
        if message.startswith("@"):  # problems across fields, each tagged with its field
            for tagged in message[1:].split("; @"):
                field, _, text = tagged.partition(": ")
                parts.append(f"{where}.{field}: {text}" if where else f"{field}: {text}")
            continue
        parts.append(f"{where}: {message}" if where else message)
    parts = [" ".join(part.split()) for part in parts]
    return f"{source}: " + "; ".join(parts)
