"""The numba kernel of :func:`daskcal.kernels.beams.array_factor`.

Apart, so that importing :mod:`daskcal.kernels.beams` (its constants are the defaults of
the primary-beam settings) does not import numba.
"""

from __future__ import annotations

import math

from daskcal.kernels._jit import njit


@njit
def array_factor_kernel(dirs, s0, pos, k, out):
    """``out[i] = 1/n_pos sum_j exp(i k (dirs[i] - s0) . pos[j])``."""
    n_dir, n_pos = dirs.shape[0], pos.shape[0]
    for i in range(n_dir):
        dx = dirs[i, 0] - s0[0]
        dy = dirs[i, 1] - s0[1]
        dz = dirs[i, 2] - s0[2]
        re = 0.0
        im = 0.0
        for j in range(n_pos):
            ph = k * (dx * pos[j, 0] + dy * pos[j, 1] + dz * pos[j, 2])
            re += math.cos(ph)
            im += math.sin(ph)
        out[i] = complex(re, im) / n_pos
    return out
