"""The tabulated ES kernels equal freshly designed ones, and cover the planner."""

from __future__ import annotations

import numpy as np
import pytest

from daskcal.kernels.gridding._es_table import ES_TABLE
from daskcal.kernels.gridding.es_kernel import SUPPORTS, design_es_kernel, make_es_kernel
from daskcal.kernels.gridding.es_table import planner_sigmas


def test_table_covers_every_kernel_the_planner_designs():
    want = {(w, s) for s in planner_sigmas() for w in SUPPORTS}
    assert set(ES_TABLE) == want


@pytest.mark.parametrize("key", [(2, 1.2), (5, 1.3), (8, 1.75), (11, 2.0), (16, 2.3),
                                 (7, 3.45), (13, 1.1)])
def test_table_entries_equal_a_fresh_design(key):
    beta, degree, error = ES_TABLE[key]
    fresh = design_es_kernel(*key)
    assert beta == pytest.approx(fresh.beta, rel=1e-12)
    assert degree == fresh.degree
    assert error == pytest.approx(fresh.error, rel=1e-9)
    looked_up = make_es_kernel(*key)
    np.testing.assert_allclose(looked_up.coeffs, fresh.coeffs, rtol=0, atol=1e-13)
    assert looked_up.error == error and looked_up.sigma == key[1]


def test_an_untabulated_factor_is_designed_on_the_spot():
    assert (6, 1.37) not in ES_TABLE
    k = make_es_kernel(6, 1.37)
    fresh = design_es_kernel(6, 1.37)
    assert k.beta == fresh.beta and k.error == fresh.error
    # and its accuracy lies between its tabulated neighbours'
    assert make_es_kernel(6, 1.3).error > k.error > make_es_kernel(6, 1.4).error
