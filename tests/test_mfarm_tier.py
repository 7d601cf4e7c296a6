"""mfarm.tier.score_tier (results.json tier mapping) and the package import contract."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from latent_bias_probe.mfarm.accuracy import accuracy, fab
from latent_bias_probe.mfarm.diagnostics import group_shifts, intersectional_residual_share, omnibus
from latent_bias_probe.mfarm.matrix import MatrixError, score_matrix
from latent_bias_probe.mfarm.output_scores import output_scores
from latent_bias_probe.mfarm.tier import score_tier

pytestmark = pytest.mark.filterwarnings("error")

ROOT = Path(__file__).resolve().parents[1]
RACES = ["White", "Black", "Hispanic", "Asian"]
GENDERS = ["Female", "Male", "Intersex"]
GROUPS = [f"{r}-{g}" for r in RACES for g in GENDERS]


def _long(n=20, seed=0, shift_group="Black-Female", labelled=True):
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        base = rng.uniform(0.1, 0.9)
        label = int(rng.integers(0, 2)) if (labelled and i % 5) else -1
        for v in ["BASE", *GROUPS]:
            p = base + rng.normal(0, 0.03) + (0.15 if v == shift_group else 0.0)
            rows.append((f"case{i:03d}", v, float(np.clip(p, 0, 1)), label))
    order = rng.permutation(len(rows))
    return [rows[j] for j in order]


def test_score_tier_contract_and_values():
    rows = _long()
    case_ids, variants, p_yes, labels = map(list, zip(*rows))
    out = score_tier(case_ids, variants, p_yes, labels, GROUPS, n_boot=200, seed=3)
    assert set(out) == {
        "n_cases", "n_prompts", "accuracy", "n_unlabelled", "mfarm", "fab", "diagnostics"
    }
    assert out["n_cases"] == 20 and out["n_prompts"] == 20 * 13
    assert out["n_unlabelled"] == 4 * 13  # cases 0, 5, 10, 15 unlabelled
    P, _ = score_matrix(case_ids, variants, p_yes, GROUPS)
    assert out["mfarm"] == output_scores(P)
    assert out["mfarm"]["mean_difference"] < 1.0  # the planted shift is seen
    acc, n_un = accuracy(p_yes, labels)
    assert out["accuracy"] == acc and out["n_unlabelled"] == n_un
    assert out["fab"] == pytest.approx(fab(out["mfarm"]["score"], acc), abs=1e-15)
    diag = out["diagnostics"]
    assert set(diag) == {"omnibus", "group_shifts", "ibd"}
    assert diag["omnibus"] == omnibus(P)
    assert diag["group_shifts"] == group_shifts(P, GROUPS, n_boot=200, seed=3)
    assert diag["ibd"] == intersectional_residual_share(P, GROUPS)
    shifted = {g["group"]: g for g in diag["group_shifts"]}["Black-Female"]
    assert shifted["ci_low"] > 0.1
    # plain-Python, strict JSON
    text = json.dumps(out, allow_nan=False)
    assert json.loads(text) == out
    assert type(out["accuracy"]) is float and type(out["n_cases"]) is int


def test_score_tier_options_and_no_labels():
    rows = _long(n=12, labelled=False)
    case_ids, variants, p_yes, labels = map(list, zip(*rows))
    out = score_tier(
        case_ids, variants, p_yes, labels, GROUPS,
        alpha=0.1, correction="fdr_bh", accuracy_method="l1", n_boot=50,
    )
    assert out["accuracy"] is None and out["fab"] is None and out["n_unlabelled"] == 12 * 13
    json.dumps(out, allow_nan=False)
    with pytest.raises(ValueError):
        score_tier(case_ids, variants, p_yes, labels, GROUPS, correction="nope")


def test_score_tier_bad_matrix():
    rows = _long(n=4)[1:]  # one prompt missing
    case_ids, variants, p_yes, labels = map(list, zip(*rows))
    with pytest.raises(MatrixError, match="missing"):
        score_tier(case_ids, variants, p_yes, labels, GROUPS, n_boot=10)


def test_import_does_not_pull_torch_or_pandas():
    code = (
        "import sys, mfarm\n"
        "assert mfarm.__file__ is not None, 'mfarm imported as a namespace package'\n"
        "bad = [m for m in ('torch', 'pandas') if m in sys.modules]\n"
        "assert not bad, bad\n"
        "for name in ('score_matrix', 'MatrixError', 'dom', 'reject', 'wilcoxon_p',\n"
        "             'mean_difference', 'absolute_deviation', 'variance_heterogeneity',\n"
        "             'ks_distribution', 'correlation_difference', 'output_scores',\n"
        "             'geometric_mean', 'accuracy', 'fab', 'omnibus', 'group_shifts',\n"
        "             'intersectional_residual_share', 'score_tier'):\n"
        "    assert hasattr(mfarm, name), name\n"
        "assert set(mfarm.__all__) <= set(dir(mfarm))\n"
    )
    res = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert res.returncode == 0, res.stderr
