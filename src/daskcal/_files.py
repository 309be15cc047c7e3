"""Small helpers shared by the configuration readers and the process-level locks."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from daskcal import DaskcalError


def read_yaml(path: str | os.PathLike, what: str,
              error: type[DaskcalError] = DaskcalError) -> Any:
    """The parsed YAML of a file; one-line ``error`` naming the file otherwise.

    Parameters
    ----------
    path : path-like
    what : str
        What the file is, for the messages (``"survey file"``, ``"site profile"``).
    error : type
        The exception raised (a :class:`~daskcal.DaskcalError` subclass).
    """
    import yaml

    source = os.fspath(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise error(f"{source}: no such {what}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise error(f"{source}: cannot read: {exc}") from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}: " if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise error(f"{source}: not valid YAML: {where}{' '.join(problem.split())}") from None


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` exists on this machine."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


__all__ = ["pid_alive", "read_yaml"]
