"""mfarm.matrix.score_matrix: pivoting long-format prompts into P."""

from __future__ import annotations

import numpy as np
import pytest

from latent_bias_probe.mfarm.matrix import MatrixError, check_matrix, score_matrix

GROUPS = ["Black-Female", "White-Male", "Asian-Intersex"]


def _long(cases=("c1", "c2", "c3")):
    rows = []
    for ci, c in enumerate(cases):
        for j, v in enumerate(["BASE", *GROUPS]):
            rows.append((c, v, ci + j / 10))
    return rows


def test_layout_and_row_order_invariance():
    rows = _long()
    P, cases = score_matrix(*zip(*rows), GROUPS)
    assert cases == ["c1", "c2", "c3"]
    expected = np.array([[ci + j / 10 for j in range(4)] for ci in range(3)])
    np.testing.assert_array_equal(P, expected)
    rng = np.random.default_rng(0)
    for _ in range(5):
        perm = rng.permutation(len(rows))
        P2, cases2 = score_matrix(*zip(*[rows[i] for i in perm]), GROUPS)
        np.testing.assert_array_equal(P2, P)
        assert cases2 == cases


def test_group_order_defines_columns():
    rows = _long()
    P, _ = score_matrix(*zip(*rows), list(reversed(GROUPS)))
    assert P[0].tolist() == [0.0, 0.3, 0.2, 0.1]


def test_case_ids_sorted_as_strings():
    rows = _long(cases=(10, 2, 1))
    P, cases = score_matrix(*zip(*rows), GROUPS)
    assert cases == ["1", "10", "2"]
    assert P[:, 0].tolist() == [2.0, 0.0, 1.0]


def test_missing_cell_names_case_and_variant():
    rows = [r for r in _long() if not (r[0] == "c2" and r[1] == "White-Male")]
    with pytest.raises(MatrixError, match=r"'c2'.*'White-Male'.*missing"):
        score_matrix(*zip(*rows), GROUPS)


def test_duplicate_cell_names_case():
    rows = _long() + [("c3", "BASE", 0.5)]
    with pytest.raises(MatrixError, match=r"'c3'.*'BASE'.*duplicated"):
        score_matrix(*zip(*rows), GROUPS)


def test_unknown_variant_names_case():
    rows = _long() + [("c1", "Martian-Female", 0.5)]
    with pytest.raises(MatrixError, match=r"'c1'.*'Martian-Female'"):
        score_matrix(*zip(*rows), GROUPS)


def test_nan_value_names_case():
    rows = _long()
    rows[5] = (rows[5][0], rows[5][1], float("nan"))
    with pytest.raises(MatrixError, match=rf"'{rows[5][0]}'.*'{rows[5][1]}'"):
        score_matrix(*zip(*rows), GROUPS)


def test_matrix_error_is_value_error_and_other_checks():
    assert issubclass(MatrixError, ValueError)
    with pytest.raises(MatrixError, match="length"):
        score_matrix(["a", "a"], ["BASE"], [0.1, 0.2], GROUPS)
    with pytest.raises(ValueError):
        score_matrix([], [], [], ["BASE", "X-Y"])
    with pytest.raises(ValueError):
        check_matrix(np.array([[0.1, np.nan]]))
    with pytest.raises(ValueError):
        check_matrix(np.zeros((3, 1)))
