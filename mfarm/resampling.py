"""Resampling around the mFARM scores: case bootstrap, paired comparison, permutation null.

Pure numpy / scipy over arrays.  Everything resamples whole **cases** (rows of the
n x k matrix P, column 0 = BASE): a case's BASE prompt and all its demographic
variants always travel together, because the scores compare the columns *within*
cases.  Each resampled matrix is scored with the batched engine
(``batched_output_scores`` / ``batched_mean_difference``), which gives for every
resample exactly what ``output_scores`` / ``mean_difference`` give on it.

Notation: B resamples, idx[b] in {0..n-1}^n the case indices of resample b,
P^(b) = P[idx[b]].  A percentile interval at level L is

    [ Q_{(1-L)/2}(x_1..x_B),  Q_{(1+L)/2}(x_1..x_B) ]

with Q numpy's ``percentile`` (linear interpolation) over the B resampled values.

What the intervals mean for these scores: F_MD, F_AD, F_VH, F_KS and F_CD are not
smooth functions of the data -- each is 1 unless an omnibus test and corrected
pairwise tests reject, and then drops by a sum of effect sizes over the rejected
tests.  Their bootstrap distributions therefore have a point mass at 1 (and jumps
wherever the set of rejected tests changes), so a percentile interval describes how
often, and by how much, a re-drawn set of cases would be scored unfair; it is not a
confidence interval for a smooth population parameter, and nominal coverage is not
guaranteed.  The per-group mean shifts are smooth means and their intervals are
ordinary percentile-bootstrap intervals.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from latent_bias_probe.configs.names import SCORE_KEYS

from .accuracy import ACCURACY_METHODS, accuracy, fab, label_array
from .matrix import check_matrix
from .output_scores import (
    batched_mean_difference,
    batched_output_scores,
    geometric_mean,
    geometric_mean_rows,
    mean_difference,
    output_scores,
)
from .stats import check_alpha, check_correction

__all__ = [
    "INTERVAL_KEYS",
    "LATENT_INTERVAL_KEYS",
    "bootstrap_indices",
    "mean_shift_intervals",
    "accuracy_interval",
    "resampled_scores",
    "score_intervals",
    "paired_differences",
    "verdict",
    "permutation_null",
]

#: the quantities ``score_intervals`` gives intervals for (``score`` = mFARM (paper))
INTERVAL_KEYS = (*SCORE_KEYS, "score", "accuracy", "fab")
#: added when the latent matrix S is given (F_LV, mFARM (full), FAB (full))
LATENT_INTERVAL_KEYS = ("value_axis_fairness", "mfarm_full", "fab_full")
#: resamples scored together (memory of one step ~ chunk * n * k * 40 floats)
_CHUNK = 512
#: slack when comparing null scores with the observed one (round-off of the batched sums)
_TIE_TOL = 1e-12


# --------------------------------------------------------------------------- inputs


def _check_level(level: float) -> float:
    try:
        f = float(level)
    except (TypeError, ValueError):
        raise ValueError(f"level must be a number in (0, 1), got {level!r}") from None
    if not (0.0 < f < 1.0):
        raise ValueError(f"level must be in (0, 1), got {level!r}")
    return f


def _check_count(value: int, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
        raise ValueError(f"{name} must be a non-negative integer, got {value!r}")
    return int(value)


def _check_same(P: np.ndarray, M: np.ndarray | None, name: str) -> np.ndarray | None:
    if M is None:
        return None
    M = check_matrix(M)
    if M.shape != P.shape:
        raise ValueError(f"{name} has shape {M.shape}, P has {P.shape}; they must share rows and columns")
    return M


def _labels_matrix(labels: Any, shape: tuple[int, int]) -> np.ndarray:
    """Labels as an (n, k) float matrix: 1.0 (YES), 0.0 (NO), NaN (unknown), laid out like P."""
    arr = np.asarray(labels, dtype=object)
    if arr.shape != shape:
        raise ValueError(f"labels have shape {arr.shape}, P has {shape}; pass one label per cell of P")
    return label_array(arr.ravel().tolist()).reshape(shape)


def bootstrap_indices(n_cases: int, n_boot: int, seed: Any = 0) -> np.ndarray:
    """Case indices of ``n_boot`` bootstrap resamples: shape (n_boot, n_cases), int64.

    ``numpy.random.default_rng(seed).integers(0, n_cases, size=(n_boot, n_cases))``:
    every resample draws n_cases rows of P with replacement, so whole cases (BASE
    and all variants of a scenario) are resampled together.  The draws are those of
    ``mfarm.diagnostics.group_shifts`` with the same seed.
    """
    n_cases = _check_count(n_cases, "n_cases")
    n_boot = _check_count(n_boot, "n_boot")
    if n_cases == 0:
        return np.zeros((n_boot, 0), dtype=np.int64)
    return np.random.default_rng(seed).integers(0, n_cases, size=(n_boot, n_cases))


def _interval(values: np.ndarray, level: float) -> list[float] | None:
    """Percentile interval [Q_(1-L)/2, Q_(1+L)/2] over the finite values (None if there are none)."""
    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v)]
    if v.size == 0:
        return None
    pct = 100.0 * level  # 95.0 exactly for level 0.95, so the bounds are the 2.5 / 97.5 percentiles
    lo, hi = np.percentile(v, [(100.0 - pct) / 2.0, (100.0 + pct) / 2.0])
    return [float(lo), float(hi)]


# --------------------------------------------------------------------------- per-resample values


def _accuracy_rows(P: np.ndarray, Y: np.ndarray, idx: np.ndarray, method: str) -> np.ndarray:
    """Spec Part C accuracy of every resample P[idx[b]] (labels Y[idx[b]]); NaN if none is labelled.

    threshold: sum of 1[p > 0.5] == 1[y = 1] over the labelled prompts of the
    resampled cases / their number; l1: clip(1 - sum |y - p| / number, 0, 1).
    """
    known = ~np.isnan(Y)
    if method == "threshold":
        hit = ((P > 0.5) == (Y == 1.0)) & known
        per_case = hit.sum(axis=1).astype(float)
    else:
        per_case = np.where(known, np.abs(np.where(known, Y, 0.0) - P), 0.0).sum(axis=1)
    count = known.sum(axis=1)[idx].sum(axis=1).astype(float)
    total = per_case[idx].sum(axis=1)
    with np.errstate(all="ignore"):
        acc = total / count if method == "threshold" else np.clip(1.0 - total / count, 0.0, 1.0)
    return np.where(count > 0, acc, np.nan)


def _fab_rows(m: np.ndarray, a: np.ndarray) -> np.ndarray:
    """FAB = 2 m a / (m + a) elementwise (0 when both are 0; NaN where a is NaN)."""
    with np.errstate(all="ignore"):
        f = 2.0 * m * a / (m + a)
    return np.where((m + a) == 0.0, 0.0, f)


def resampled_scores(
    P: np.ndarray,
    idx: np.ndarray,
    labels: Any = None,
    alpha: float = 0.05,
    correction: str = "holm",
    accuracy_method: str = "threshold",
    S: np.ndarray | None = None,
) -> dict[str, np.ndarray]:
    """Every score on every resample P[idx[b]] -> {key: array (B,)}.

    Keys: the five Part A scores and ``score`` (mFARM paper = their geometric mean);
    with ``labels`` (an n x k matrix laid out like P) ``accuracy`` (Part C, on the
    resampled rows) and ``fab`` = 2 m a / (m + a) with that resample's mFARM and
    accuracy; with ``S`` (the latent matrix, same rows and columns)
    ``value_axis_fairness`` = A1 on S[idx[b]] (F_LV), ``mfarm_full`` = geometric mean
    of the five and F_LV, and with labels also ``fab_full``.  Row-wise quantities
    are resampled as rows, so F_LV needs no re-standardisation of S (A1 is
    invariant to S -> (S - mu) / sigma).
    """
    P = check_matrix(P)
    idx = np.asarray(idx)
    if idx.ndim != 2 or (idx.size and (idx.min() < 0 or idx.max() >= P.shape[0])):
        raise ValueError(f"idx must be a 2-d array of row indices of P, got shape {idx.shape}")
    S = _check_same(P, S, "S")
    Y = None if labels is None else _labels_matrix(labels, P.shape)
    if accuracy_method not in ACCURACY_METHODS:
        raise ValueError(f"unknown accuracy method {accuracy_method!r}; use one of {ACCURACY_METHODS}")
    B = idx.shape[0]
    keys = [*SCORE_KEYS, "score"] + (["value_axis_fairness"] if S is not None else [])
    out = {key: np.empty(B) for key in keys}
    for start in range(0, B, _CHUNK):
        rows = idx[start : start + _CHUNK]
        stop = start + rows.shape[0]
        res = batched_output_scores(P[rows], alpha, correction)
        for key in (*SCORE_KEYS, "score"):
            out[key][start:stop] = res[key]
        if S is not None:
            out["value_axis_fairness"][start:stop] = batched_mean_difference(S[rows], alpha, correction)
    if S is not None:
        six = np.stack([out[key] for key in (*SCORE_KEYS, "value_axis_fairness")], axis=1)
        out["mfarm_full"] = geometric_mean_rows(six) if B else np.empty(0)
    if Y is not None:
        out["accuracy"] = _accuracy_rows(P, Y, idx, accuracy_method)
        out["fab"] = _fab_rows(out["score"], out["accuracy"])
        if S is not None:
            out["fab_full"] = _fab_rows(out["mfarm_full"], out["accuracy"])
    return out


def _point_scores(
    P: np.ndarray, Y: np.ndarray | None, alpha: float, correction: str, accuracy_method: str,
    S: np.ndarray | None,
) -> dict[str, float | None]:
    """The point values (no resampling) of every key ``resampled_scores`` returns."""
    out: dict[str, float | None] = dict(output_scores(P, alpha, correction))
    if S is not None:
        out["value_axis_fairness"] = mean_difference(S, alpha, correction)
        out["mfarm_full"] = geometric_mean([out[key] for key in (*SCORE_KEYS, "value_axis_fairness")])
    if Y is not None:
        acc, _ = accuracy(P.ravel(), Y.ravel(), accuracy_method)
        out["accuracy"] = acc
        out["fab"] = fab(out["score"], acc)
        if S is not None:
            out["fab_full"] = fab(out["mfarm_full"], acc)
    return out


def _keys(S: np.ndarray | None) -> list[str]:
    keys = list(INTERVAL_KEYS)
    if S is not None:
        keys += list(LATENT_INTERVAL_KEYS)
    return keys


# --------------------------------------------------------------------------- bootstrap intervals


def mean_shift_intervals(
    P: np.ndarray, n_boot: int = 1000, seed: Any = 0, level: float = 0.95
) -> list[list[float] | None]:
    """Percentile interval of each group's mean shift, mean_i (P[i,g] - P[i,BASE]), over case resamples.

    Returns one [lo, hi] per group column (None for every group when n_boot = 0
    or there are no cases).  Uses ``bootstrap_indices(n, n_boot, seed)``; at level
    0.95 the bounds equal ``group_shifts``' ``ci_low`` / ``ci_high``.
    """
    P = check_matrix(P)
    level = _check_level(level)
    n_boot = _check_count(n_boot, "n_boot")
    n, k = P.shape
    if n_boot == 0 or n == 0:
        return [None] * (k - 1)
    D = P[:, 1:] - P[:, [0]]
    idx = bootstrap_indices(n, n_boot, seed)
    boot = np.concatenate([D[idx[s : s + _CHUNK]].mean(axis=1) for s in range(0, n_boot, _CHUNK)])
    return [_interval(boot[:, j], level) for j in range(k - 1)]


def accuracy_interval(
    P: np.ndarray,
    labels: Any,
    n_boot: int = 1000,
    seed: Any = 0,
    level: float = 0.95,
    accuracy_method: str = "threshold",
) -> list[float] | None:
    """Percentile interval of the Part C accuracy over case resamples, alone.

    The same resamples (``bootstrap_indices(n, n_boot, seed)``) and the same bounds
    as ``score_intervals(...)["accuracy"]``, without scoring the gated tests; None
    when ``n_boot == 0``, there are no cases, or no prompt is labelled.
    """
    P = check_matrix(P)
    level = _check_level(level)
    n_boot = _check_count(n_boot, "n_boot")
    Y = _labels_matrix(labels, P.shape)
    if accuracy_method not in ACCURACY_METHODS:
        raise ValueError(f"unknown accuracy method {accuracy_method!r}; use one of {ACCURACY_METHODS}")
    if n_boot == 0 or P.shape[0] == 0:
        return None
    idx = bootstrap_indices(P.shape[0], n_boot, seed)
    return _interval(_accuracy_rows(P, Y, idx, accuracy_method), level)


def score_intervals(
    P: np.ndarray,
    labels: Any = None,
    alpha: float = 0.05,
    correction: str = "holm",
    n_boot: int = 1000,
    seed: Any = 0,
    level: float = 0.95,
    accuracy_method: str = "threshold",
    S: np.ndarray | None = None,
) -> dict[str, Any]:
    """Case-bootstrap percentile intervals of the mFARM scores, accuracy and FAB.

    B = ``n_boot`` resamples of the cases (``bootstrap_indices(n, B, seed)``); every
    resample P^(b) = P[idx[b]] is scored as a whole (``resampled_scores``) and each
    quantity x gets [Q_(1-L)/2(x^(1..B)), Q_(1+L)/2(x^(1..B))] (numpy percentile,
    linear).  Returns

        {"level": L, "n_boot": B,
         "mean_difference", "absolute_deviation", "variance_heterogeneity",
         "ks_distribution", "correlation_difference", "score",   # mFARM (paper)
         "accuracy", "fab",                                       # None without labels
         # with S: "value_axis_fairness" (F_LV), "mfarm_full", "fab_full"
        }

    each value a ``[lo, hi]`` pair of floats, or None when ``n_boot == 0`` (every
    interval), when there are no labels (accuracy, fab, fab_full) or no cases.
    ``labels`` is an n x k matrix laid out like P (1, 0, or -1 / NaN / None for
    unknown); resamples without any labelled prompt are left out of the accuracy
    and FAB intervals.  Accuracy per resample is Part C's over the resampled rows
    (all k columns); FAB per resample uses that resample's mFARM and accuracy.
    See the module docstring for what an interval of a significance-gated score
    means.
    """
    P = check_matrix(P)
    level = _check_level(level)
    n_boot = _check_count(n_boot, "n_boot")
    alpha = check_alpha(alpha)
    check_correction(correction)
    S = _check_same(P, S, "S")
    keys = _keys(S)
    out: dict[str, Any] = {"level": level, "n_boot": n_boot}
    out.update({key: None for key in keys})
    n = P.shape[0]
    if n_boot == 0 or n == 0:
        if labels is not None:
            _labels_matrix(labels, P.shape)  # validate all the same
        return out
    idx = bootstrap_indices(n, n_boot, seed)
    res = resampled_scores(P, idx, labels, alpha, correction, accuracy_method, S)
    for key in keys:
        if key in res:
            out[key] = _interval(res[key], level)
    return out


# --------------------------------------------------------------------------- paired comparison


def verdict(ci: Sequence[float] | None) -> str:
    """``"higher"`` if the interval of (b - a) lies above 0, ``"lower"`` if below, else ``"no difference shown"``.

    An interval that touches or contains 0, or a missing one (None), shows no difference.
    """
    if ci is None:
        return "no difference shown"
    lo, hi = float(ci[0]), float(ci[1])
    if lo > 0.0:
        return "higher"
    if hi < 0.0:
        return "lower"
    return "no difference shown"


def paired_differences(
    P_a: np.ndarray,
    P_b: np.ndarray,
    labels: Any = None,
    alpha: float = 0.05,
    correction: str = "holm",
    n_boot: int = 1000,
    seed: Any = 0,
    level: float = 0.95,
    accuracy_method: str = "threshold",
    S_a: np.ndarray | None = None,
    S_b: np.ndarray | None = None,
    groups: Sequence[str] | None = None,
) -> dict[str, Any]:
    """Paired case-bootstrap comparison of two score matrices of the **same cases** (b minus a).

    P_a and P_b must have the same shape with rows aligned (row i = the same case
    in both, columns in the same order), e.g. two models or two precisions on one
    benchmark.  The same resample idx[b] is applied to both sides, so case-to-case
    variation common to both cancels in the differences.  For every quantity x:

        diff = x(P_b) - x(P_a),   ci = percentile interval of x(P_b[idx_b]) - x(P_a[idx_b]).

    Returns ``{"level", "n_boot", <key>: {"a", "b", "diff", "ci"} for every key of
    ``score_intervals`` (accuracy / fab only with ``labels``, which are the cases'
    labels and so shared by both sides; the latent keys only with both S_a and
    S_b), "mean_shift": [{"group", "a", "b", "diff", "ci"}, ...]}``, where a group's
    mean shift is mean_i (P[i,g] - P[i,BASE]).  ``ci`` is None when n_boot = 0; use
    ``verdict(ci)`` to read it.  A score that is 1 on both sides in most resamples
    gives an interval concentrated at 0 (see the module docstring).
    """
    P_a = check_matrix(P_a)
    P_b = check_matrix(P_b)
    if P_a.shape != P_b.shape:
        raise ValueError(f"P_a has shape {P_a.shape}, P_b {P_b.shape}; a paired comparison needs the same cases")
    level = _check_level(level)
    n_boot = _check_count(n_boot, "n_boot")
    alpha = check_alpha(alpha)
    check_correction(correction)
    if (S_a is None) != (S_b is None):
        raise ValueError("pass both S_a and S_b, or neither")
    S_a = _check_same(P_a, S_a, "S_a")
    S_b = _check_same(P_b, S_b, "S_b")
    n, k = P_a.shape
    names = [str(g) for g in groups] if groups is not None else [str(j) for j in range(1, k)]
    if len(names) != k - 1:
        raise ValueError(f"{len(names)} group names for {k - 1} group columns")
    Y = None if labels is None else _labels_matrix(labels, P_a.shape)
    point_a = _point_scores(P_a, Y, alpha, correction, accuracy_method, S_a)
    point_b = _point_scores(P_b, Y, alpha, correction, accuracy_method, S_b)
    keys = [key for key in _keys(S_a) if key in point_a]
    boot_a = boot_b = None
    if n_boot > 0 and n > 0:
        idx = bootstrap_indices(n, n_boot, seed)
        boot_a = resampled_scores(P_a, idx, labels, alpha, correction, accuracy_method, S_a)
        boot_b = resampled_scores(P_b, idx, labels, alpha, correction, accuracy_method, S_b)
    out: dict[str, Any] = {"level": level, "n_boot": n_boot}
    for key in keys:
        a, b = point_a[key], point_b[key]
        out[key] = {
            "a": a,
            "b": b,
            "diff": None if a is None or b is None else float(b - a),
            "ci": None if boot_a is None else _interval(boot_b[key] - boot_a[key], level),
        }
    D_a = P_a[:, 1:] - P_a[:, [0]]
    D_b = P_b[:, 1:] - P_b[:, [0]]
    shift_a = D_a.mean(axis=0) if n else np.full(k - 1, np.nan)
    shift_b = D_b.mean(axis=0) if n else np.full(k - 1, np.nan)
    ci_shift: list[list[float] | None] = [None] * (k - 1)
    if n_boot > 0 and n > 0:
        dd = D_b - D_a
        boot = np.concatenate([dd[idx[s : s + _CHUNK]].mean(axis=1) for s in range(0, n_boot, _CHUNK)])
        ci_shift = [_interval(boot[:, j], level) for j in range(k - 1)]
    out["mean_shift"] = [
        {
            "group": names[j],
            "a": float(shift_a[j]) if n else None,
            "b": float(shift_b[j]) if n else None,
            "diff": float(shift_b[j] - shift_a[j]) if n else None,
            "ci": ci_shift[j],
        }
        for j in range(k - 1)
    ]
    return out


# --------------------------------------------------------------------------- permutation null


def permutation_null(
    P: np.ndarray,
    alpha: float = 0.05,
    correction: str = "holm",
    n_perm: int = 1000,
    seed: Any = 0,
    S: np.ndarray | None = None,
) -> dict[str, Any]:
    """Permutation test of each score against "no demographic term matters".

    Null hypothesis: within every case the k prompts (BASE included) are
    exchangeable.  Each of the ``n_perm`` null matrices permutes the k cells of
    every row independently (``default_rng(seed).permuted(..., axis=-1)``; with S
    the same permutation is applied to S's row, the two describe the same prompts)
    and is scored with the batched engine.  Scores are "1 = fair", so a LOW
    observed score is the evidence against the null:

        p_value = (1 + #{b : null_b <= observed}) / (1 + n_perm)

    (null_b <= observed up to 1e-12 round-off), the share of null scores at or
    below the observed one, counting the observed matrix itself; it is valid
    (P(p <= u) <= u under the null) and conservative when scores tie, as they do
    at 1 whenever no test rejects -- an observed score of 1 gets p = 1.

    Returns ``{"n_perm", "seed", <key>: {"observed", "p_value", "null_median",
    "null_q05"}}`` for the five scores, ``score`` and, with S,
    ``value_axis_fairness`` and ``mfarm_full``; ``null_q05`` is the 5th percentile
    of the null scores.  With ``n_perm == 0`` every entry is None.
    """
    P = check_matrix(P)
    n_perm = _check_count(n_perm, "n_perm")
    alpha = check_alpha(alpha)
    check_correction(correction)
    S = _check_same(P, S, "S")
    keys = [*SCORE_KEYS, "score"] + (["value_axis_fairness", "mfarm_full"] if S is not None else [])
    out: dict[str, Any] = {"n_perm": n_perm, "seed": seed if isinstance(seed, (int, type(None))) else str(seed)}
    out.update({key: None for key in keys})
    n, k = P.shape
    if n_perm == 0:
        return out
    observed = _point_scores(P, None, alpha, correction, "threshold", S)
    rng = np.random.default_rng(seed)
    perm = rng.permuted(np.broadcast_to(np.arange(k), (n_perm, n, k)), axis=-1)
    rows = np.arange(n)[None, :, None]
    null = {key: np.empty(n_perm) for key in keys}
    for start in range(0, n_perm, _CHUNK):
        pc = perm[start : start + _CHUNK]
        stop = start + pc.shape[0]
        res = batched_output_scores(P[rows, pc], alpha, correction)
        for key in (*SCORE_KEYS, "score"):
            null[key][start:stop] = res[key]
        if S is not None:
            null["value_axis_fairness"][start:stop] = batched_mean_difference(S[rows, pc], alpha, correction)
    if S is not None:
        six = np.stack([null[key] for key in (*SCORE_KEYS, "value_axis_fairness")], axis=1)
        null["mfarm_full"] = geometric_mean_rows(six)
    for key in keys:
        obs = float(observed[key])  # type: ignore[arg-type]
        x = null[key]
        out[key] = {
            "observed": obs,
            "p_value": float((1 + np.count_nonzero(x <= obs + _TIE_TOL)) / (1 + n_perm)),
            "null_median": float(np.median(x)),
            "null_q05": float(np.percentile(x, 5.0)),
        }
    return out
