"""The one place where numba JIT options are set for every kernel."""

from __future__ import annotations

import numba

#: Options for every ``@numba.njit`` kernel: compiled code is cached on disk
#: (``cache=True``) and releases the GIL so Dask threads run kernels in parallel.
JIT_OPTIONS: dict = {"nogil": True, "cache": True, "error_model": "numpy"}


def njit(*args, **overrides):
    """``numba.njit`` with :data:`JIT_OPTIONS` (keyword overrides allowed)."""
    opts = {**JIT_OPTIONS, **overrides}
    if args and callable(args[0]):
        return numba.njit(**opts)(args[0])
    return numba.njit(*args, **opts)
