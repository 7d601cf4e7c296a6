"""The batched exhaustive sign-flip Wilcoxon p-values equal scipy's, row by row."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from latent_bias_probe.mfarm.stats import _sign_flip_p_rows, _uses_exhaustive_permutation, wilcoxon_p, wilcoxon_p_rows


@pytest.mark.parametrize("n", [3, 5, 8, 13])
def test_batched_sign_flips_equal_scipy(n):
    rng = np.random.default_rng(n)
    rows = 30 if n < 13 else 6  # scipy's own exhaustive permutation is the slow side at n = 13
    D = np.round(rng.standard_normal((rows, n)) * 3) / 10  # many ties and zeros
    D = D[[np.any(d != 0) and _uses_exhaustive_permutation(d) for d in D]]
    got = _sign_flip_p_rows(D)
    want = np.array([stats.wilcoxon(d, zero_method="wilcox", correction=False).pvalue for d in D])
    np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(wilcoxon_p_rows(D), np.array([wilcoxon_p(d) for d in D]))
