"""daskcal: radio-interferometer calibration and imaging as Dask graphs.

Importing :mod:`daskcal` has no side effects beyond adding a logging
``NullHandler``; subpackages (``daskcal.data``, ``daskcal.testing``, ...) load on
first attribute access.
"""

from __future__ import annotations

import importlib
import logging
from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("daskcal")
except PackageNotFoundError:  # pragma: no cover - running from a source tree
    __version__ = "0.0.0+unknown"

logging.getLogger(__name__).addHandler(logging.NullHandler())


class DaskcalWarning(UserWarning):
    """Base class of the warnings daskcal emits."""


class DaskcalError(Exception):
    """Base class of daskcal's errors about user input.

    The message is a single line naming the offending file (where there is one)
    and the problem; the command line prints it without a traceback.
    """


_SUBPACKAGES = {
    "data", "sky", "kernels", "stages", "pipeline", "qa", "cluster", "archive", "testing",
    "survey",
}


def __getattr__(name: str):
    if name in _SUBPACKAGES:
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["DaskcalError", "DaskcalWarning", "__version__"]
