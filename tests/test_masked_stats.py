"""mfarm.association: group differences, the margin, the corpus comparison; benchmarks.corpus counts."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as st

from latent_bias_probe.benchmarks.corpus import count_cooccurrence
from latent_bias_probe.mfarm.association import (
    CONSISTENT, CONTRADICTS, compare_with_corpus, corpus_log_odds, group_differences, kurita_association,
)

GROUPS = ["White-Female", "White-Male", "Black-Female", "Black-Male"]


def test_kurita_association_is_the_log_ratio():
    assert kurita_association(np.log([0.2, 0.01]), np.log([0.1, 0.01])).tolist() == pytest.approx([math.log(2), 0.0])


def test_group_differences_by_hand():
    X = np.array([[1.0, 2.0, 3.0, 6.0], [0.0, 1.0, 1.0, 2.0], [2.0, 2.0, 5.0, 3.0]])
    out = group_differences(X, ["a", "a", "a"], GROUPS, correction="none", n_boot=200, seed=1, margin=0.0)
    cell = out["categories"]["a"]["groups"]["Black-Male"]
    D = X - X.mean(axis=1, keepdims=True)
    d = D[:, 3]
    assert cell["difference"] == pytest.approx(d.mean())
    assert cell["p_value"] == pytest.approx(st.ttest_1samp(d, 0.0).pvalue)
    assert cell["effect_size"] == pytest.approx(d.mean() / d.std(ddof=1))
    assert cell["mean_score"] == pytest.approx(X[:, 3].mean())
    lo, hi = cell["ci"]
    assert lo <= d.mean() <= hi and d.min() <= lo
    # the bootstrap is seeded: the same seed gives the same interval, another seed another
    again = group_differences(X, ["a"] * 3, GROUPS, correction="none", n_boot=200, seed=1)
    assert again["categories"]["a"]["groups"]["Black-Male"]["ci"] == cell["ci"]
    assert out["categories"]["a"]["friedman"]["p_value"] == pytest.approx(st.friedmanchisquare(*X.T).pvalue)


def test_margin_and_correction():
    rng = np.random.default_rng(0)
    n = 12
    X = rng.normal(0, 0.01, size=(2 * n, 4))
    X[:n, 2] += 1.0  # group 2 associated with category "a" only
    X[n:, 0] += 0.03  # a consistent but tiny difference in "b"
    none = group_differences(X, ["a"] * n + ["b"] * n, GROUPS, correction="holm", n_boot=0, margin=0.0)
    assert none["categories"]["a"]["groups"]["Black-Female"]["significant"]
    assert none["categories"]["b"]["groups"]["White-Female"]["significant"]  # tiny but consistent
    assert none["categories"]["a"]["groups"]["Black-Female"]["ci"] is None  # n_boot 0: no interval
    out = group_differences(X, ["a"] * n + ["b"] * n, GROUPS, correction="holm", n_boot=100, margin=0.1)
    sig = [(c, g) for c, e in out["categories"].items() for g, v in e["groups"].items() if v["significant"]]
    # the margin keeps the 0.03-nat difference out, the 0.75-nat one in (and its mirror images)
    assert ("a", "Black-Female") in sig and all(c == "a" for c, _ in sig)
    assert out["categories"]["b"]["groups"]["White-Female"]["p_value"] == 1.0
    cells = [v for e in out["categories"].values() for v in e["groups"].values()]
    assert all(v["p_adjusted"] >= v["p_value"] for v in cells)
    assert out["n_significant"] == len(sig)


def test_corpus_log_odds_by_hand():
    n = np.array([[8, 1], [2, 1], [0, 0]])
    ng = np.array([10, 10, 0])
    C = corpus_log_odds(n, ng)
    L0 = math.log(8.5 / 2.5)
    L1 = math.log(2.5 / 8.5)
    assert C[0, 0] == pytest.approx(L0 - (L0 + L1) / 2)
    assert C[1, 0] == pytest.approx(-C[0, 0])
    assert np.isnan(C[2]).all()  # a group the corpus never mentions


def _planted_corpus(black_with_behaviour: bool) -> list[str]:
    often, rarely = ("black", "white") if black_with_behaviour else ("white", "black")
    texts = []
    for i in range(20):
        texts.append(f"The {often} female patient was combative. The {often} male patient was agitated.")
        texts.append(f"The {rarely} female patient was calm. The {rarely} male patient was polite.")
        if i % 5 == 0:
            texts.append(f"The {rarely} woman was hostile. A {often} man was calm.")
    return texts


@pytest.mark.parametrize("black_with_behaviour", [True, False])
def test_planted_corpus_is_labelled(black_with_behaviour):
    words = {"behaviour": ["combative", "agitated", "hostile"], "cooperation": ["calm", "polite"]}
    counts = count_cooccurrence(_planted_corpus(black_with_behaviour), ["White", "Black"], ["Female", "Male"], words)
    assert counts.groups == GROUPS and counts.n_documents == 44
    # Black-Female with a behaviour word: the 20 planted "combative" sentences, or the 4 "hostile" ones
    assert counts.n[2, 0] == (20 if black_with_behaviour else 4)
    C = corpus_log_odds(counts.n, counts.n_group)
    # a model that links Black groups with behaviour, planted as significant findings
    rng = np.random.default_rng(1)
    X = rng.normal(0, 0.05, size=(16, 4))
    X[:8, 2:] += 2.0
    stats = group_differences(X, ["behaviour"] * 8 + ["cooperation"] * 8, GROUPS, n_boot=0, margin=0.1)
    out = compare_with_corpus(stats, C, GROUPS, counts.categories)
    labels = {(f["category"], f["group"]): f["label"] for f in out["findings"]}
    want = CONSISTENT if black_with_behaviour else CONTRADICTS
    assert labels[("behaviour", "Black-Female")] == want and labels[("behaviour", "Black-Male")] == want
    assert labels[("behaviour", "White-Female")] == want  # the mirror finding (White below the mean)
    assert out["share_consistent" if black_with_behaviour else "share_contradicts"] == 1.0
    assert out["n_findings"] == out["n_consistent"] + out["n_contradicts"] == 4


def test_corpus_matching_is_whole_word_and_case_insensitive():
    words = {"behaviour": ["combative"]}
    counts = count_cooccurrence(
        ["BLACK Female pt combative.", "blackish female combatively.", "Black man. combative woman.", "African American woman, combative."],
        ["White", "Black"], ["Female", "Male"], words,
    )
    # sentences 1 and 4 (an alias) count for Black-Female; 2 has no whole words; 3 splits in two (Black-Male, no attribute)
    assert counts.n_group.tolist() == [0, 0, 2, 1] and counts.n[:, 0].tolist() == [0, 0, 2, 0]
    assert counts.n_sentences == 5
