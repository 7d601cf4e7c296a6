"""Statistics of a masked-LM audit over plain arrays: group differences and the corpus comparison.

Scores come in a matrix ``X`` of shape (n_templates, n_groups): one value per template
t and race x gender group g, e.g. the Kurita et al. (2019) association

    A[t, g] = log p_tgt[t, g] - log p_prior[t, g],

where p_tgt = P(target words of g at their masked positions | the attribute present) and
p_prior = the same with the attribute masked too (:func:`kurita_association`); or the
pseudo-log-likelihood of g's sentence; or the raw log p_tgt (no prior correction).

**Group differences** (:func:`group_differences`). Within a category c (its templates
T_c), a group's difference from the template's mean over groups is

    D[t, g] = X[t, g] - (1/G) sum_g' X[t, g'],        t in T_c,

(paired within a template, so what all groups share in a template cancels), and per
(c, g): ``difference`` = mean_t D[t, g]; ``ci`` = percentile bootstrap interval of that
mean, resampling the templates of c with replacement (``n_boot`` resamples, ``seed``);
``p_value`` = two-sided one-sample t-test over the templates of D[., g] against the
``margin`` m >= 0 in the observed direction (a minimum-effect test: t = (|mean D| - m) / se,
p = 2 P(T_{n-1} > t), capped at 1; p = 1 when |mean D| <= m; m = 0 is the ordinary
t-test against 0), so a difference counts only when it is credibly larger than m nats;
``effect_size`` = Cohen's d_z = mean(D) / sd(D) (ddof 1); ``p_adjusted`` and
``significant``: every (c, g) test of one analysis corrected together (statsmodels
``multipletests``, ``correction``; ``none``: the raw p <= alpha). Per category also the
Friedman test over groups (templates as blocks), the omnibus "do the groups differ".

**Corpus comparison** (:func:`corpus_log_odds`, :func:`compare_with_corpus`). From
co-occurrence counts n[g, c] among n_group[g] sentences mentioning g, the corpus's
log-odds of category c for group g (a 0.5 continuity correction) is

    L[g, c] = log((n[g, c] + 0.5) / (n_group[g] - n[g, c] + 0.5)),

centred over groups like D: C[g, c] = L[g, c] - mean_g' L[g', c] (groups with no
sentence are left out of the mean and get NaN). A significant model finding (c, g)
is "consistent with the corpus" when sign(difference) = sign(C[g, c]) and "contradicts
the corpus" when the signs differ (no label when C is NaN or 0); ``size_ratio`` =
|difference| / |C[g, c]| compares magnitudes (both are differences of log ratios).
"""

from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

import numpy as np

from .resampling import _interval, bootstrap_indices
from .stats import friedman_test, quiet, reject

CONSISTENT = "consistent with the corpus"
CONTRADICTS = "contradicts the corpus"
NO_EVIDENCE = "no corpus evidence"


def kurita_association(log_p_target: np.ndarray, log_p_prior: np.ndarray) -> np.ndarray:
    """A = log(p_tgt / p_prior) = log p_tgt - log p_prior, elementwise."""
    return np.asarray(log_p_target, dtype=float) - np.asarray(log_p_prior, dtype=float)


def _num(v: float) -> float | None:
    return float(v) if v is not None and math.isfinite(v) else None


def adjusted_p(p: np.ndarray, correction: str) -> np.ndarray:
    """Corrected p-values (statsmodels ``multipletests``; ``none``: unchanged); NaN counts as 1."""
    p = np.where(np.isfinite(p), np.clip(p, 0.0, 1.0), 1.0)
    if p.size == 0 or correction.lower() == "none":
        return p
    from statsmodels.stats.multitest import multipletests

    with quiet():
        return np.asarray(multipletests(p, alpha=0.05, method=correction)[1], dtype=float)


def _t_test(d: np.ndarray, margin: float = 0.0) -> tuple[float, float]:
    """(p, d_z): the two-sided minimum-effect t-test of ``d`` beyond ``margin`` (module docstring), Cohen's d_z."""
    from scipy import stats as st

    d = d[np.isfinite(d)]
    if len(d) < 2:
        return math.nan, math.nan
    sd = float(np.std(d, ddof=1))
    mean = float(np.mean(d))
    excess = abs(mean) - margin
    if sd <= 1e-12 * max(1.0, abs(mean)):
        p = 0.0 if excess > 1e-12 else 1.0
        return p, (0.0 if abs(mean) <= 1e-12 else math.copysign(math.inf, mean))
    if excess <= 0:
        return 1.0, mean / sd
    t = excess / (sd / math.sqrt(len(d)))
    with quiet():
        p = float(min(1.0, 2.0 * st.t.sf(t, len(d) - 1)))
    return p, mean / sd


def group_differences(
    X: np.ndarray,
    categories: Sequence[str],
    groups: Sequence[str],
    *,
    alpha: float = 0.05,
    correction: str = "holm",
    n_boot: int = 1000,
    seed: int = 0,
    level: float = 0.95,
    margin: float = 0.0,
) -> dict[str, Any]:
    """Per category and group: mean score, difference, bootstrap interval, test, effect size (module docstring).

    ``X``: (n_templates, n_groups); ``categories``: the category of each template (row).
    Returns ``{"alpha", "correction", "n_significant", "categories": {c: {"n_templates",
    "friedman": {"statistic", "p_value"}, "groups": {g: {...}}}}}``.
    """
    X = np.asarray(X, dtype=float)
    cats = np.asarray(list(categories), dtype=object)
    if X.ndim != 2 or X.shape != (len(cats), len(groups)):
        raise ValueError(f"X: expected shape ({len(cats)}, {len(groups)}), got {X.shape}")
    out: dict[str, Any] = {}
    cells: list[tuple[str, str, float]] = []
    for k, c in enumerate(dict.fromkeys(cats.tolist())):
        rows = X[cats == c]
        D = rows - rows.mean(axis=1, keepdims=True)
        n = len(rows)
        idx = bootstrap_indices(n, n_boot, [seed, k]) if n_boot else None
        stat, fp = friedman_test(rows.T) if n >= 2 else (math.nan, math.nan)
        entry: dict[str, Any] = {"n_templates": n, "friedman": {"statistic": _num(stat), "p_value": _num(fp)}, "groups": {}}
        for j, g in enumerate(groups):
            d = D[:, j]
            p, dz = _t_test(d, margin)
            ci = _interval(d[idx].mean(axis=1), level) if idx is not None and n else None
            entry["groups"][g] = {
                "mean_score": _num(float(rows[:, j].mean())) if n else None,
                "difference": _num(float(d.mean())) if n else None,
                "ci": ci,
                "p_value": _num(p),
                "effect_size": _num(dz),
            }
            cells.append((c, g, p))
        out[c] = entry
    p = np.array([x[2] for x in cells], dtype=float)
    rej = reject(p, alpha, correction) if len(p) else np.zeros(0, dtype=bool)
    adj = adjusted_p(p, correction)
    for (c, g, _), r, a in zip(cells, rej, adj):
        out[c]["groups"][g]["p_adjusted"] = float(a)
        out[c]["groups"][g]["significant"] = bool(r)
    return {"alpha": float(alpha), "correction": correction, "margin": float(margin), "n_significant": int(rej.sum()),
            "categories": out}


def corpus_log_odds(n: np.ndarray, n_group: np.ndarray) -> np.ndarray:
    """C[g, c]: the corpus's centred log-odds of category c for group g (module docstring); NaN for unseen groups."""
    n = np.asarray(n, dtype=float)
    ng = np.asarray(n_group, dtype=float)[:, None]
    L = np.log((n + 0.5) / (ng - n + 0.5))
    seen = (ng[:, 0] > 0)
    L[~seen] = np.nan
    if not seen.any():
        return L
    return L - np.nanmean(L[seen], axis=0, keepdims=True)


def compare_with_corpus(
    stats: Mapping[str, Any], corpus_centred: np.ndarray, groups: Sequence[str], categories: Sequence[str]
) -> dict[str, Any]:
    """Label every significant finding of ``stats`` (:func:`group_differences`) against the corpus (module docstring).

    ``corpus_centred``: (n_groups, n_categories), rows in ``groups`` order, columns in
    ``categories`` order (a category the corpus did not count is NaN).
    Returns ``{"findings": [{category, group, difference, corpus, label, size_ratio}],
    "n_findings", "n_consistent", "n_contradicts", "share_consistent", "share_contradicts"}``
    (shares over the findings the corpus has evidence for; None when there are none).
    """
    C = np.asarray(corpus_centred, dtype=float)
    findings = []
    for c, entry in stats["categories"].items():
        for g, cell in entry["groups"].items():
            if not cell.get("significant"):
                continue
            diff = cell["difference"]
            corpus = C[list(groups).index(g), list(categories).index(c)] if c in categories else math.nan
            if not math.isfinite(corpus) or corpus == 0 or diff is None or diff == 0:
                label, ratio = NO_EVIDENCE, None
            else:
                label = CONSISTENT if (diff > 0) == (corpus > 0) else CONTRADICTS
                ratio = abs(diff) / abs(corpus)
            findings.append({"category": c, "group": g, "difference": diff, "corpus": _num(corpus), "label": label,
                             "size_ratio": _num(ratio) if ratio is not None else None})
    n_cons = sum(f["label"] == CONSISTENT for f in findings)
    n_contra = sum(f["label"] == CONTRADICTS for f in findings)
    judged = n_cons + n_contra
    return {
        "findings": findings,
        "n_findings": len(findings),
        "n_consistent": n_cons,
        "n_contradicts": n_contra,
        "share_consistent": n_cons / judged if judged else None,
        "share_contradicts": n_contra / judged if judged else None,
    }
