"""Linear-probe decodability of a label at every layer (spec B3).

At each layer ℓ a multinomial logistic-regression probe (scikit-learn's
``LogisticRegression(C=1/l2)`` objective on ``StandardScaler`` features, see
:mod:`probes.softmax_regression`) is trained and scored with K folds grouped by
case (:func:`probes.folds.group_folds`). Every prompt is predicted exactly once,
by the probe that did not see its case, and

    accuracy_ℓ   = (1/N) Σ_i 1[ŷ_ℓ(i) = y_i]                  (pooled held-out accuracy)
    control_ℓ    = the same, for a probe trained on the training fold's labels
                   randomly permuted among its rows, scored against the true labels
    selectivity_ℓ = accuracy_ℓ − control_ℓ
    chance       = max_c (1/N) #{i : y_i = c}               (majority-class rate)

The 95 % interval is a percentile bootstrap over CASES, not prompts: the prompts
of a case are correlated (they share everything but the demographic words), so
cases are resampled with replacement and accuracy is recomputed as
Σ correct / Σ prompts over the resampled cases.

All layers, folds and the control probes are fitted together in one batched
torch optimisation; the results match a per-layer scikit-learn loop with the
same folds (see ``bench/probe_sweep.py``).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from .errors import ProbeInputError
from .folds import group_folds

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ProbeSweep:
    """Per-layer probe results; arrays have one entry per layer."""

    accuracy: np.ndarray  # (n_layers,) pooled held-out accuracy
    ci_low: np.ndarray  # (n_layers,) 2.5 % bootstrap percentile (cases resampled)
    ci_high: np.ndarray  # (n_layers,) 97.5 % bootstrap percentile
    control_accuracy: np.ndarray  # (n_layers,) accuracy of the permuted-label probe; NaN if not run
    selectivity: np.ndarray  # (n_layers,) accuracy − control_accuracy; NaN if not run
    chance: float  # majority-class rate over all prompts
    classes: tuple  # class labels, in the probes' class order
    n_folds: int
    converged: np.ndarray  # (n_layers,) bool, every probe of the layer reached tol

    @property
    def n_layers(self) -> int:
        return len(self.accuracy)

    @property
    def best_layer(self) -> int:
        """The layer with the highest accuracy (earliest on ties)."""
        return int(np.argmax(self.accuracy))

    def to_dict(self) -> dict:
        """Plain JSON-able data (lists of floats)."""
        return {
            "accuracy": self.accuracy.tolist(),
            "ci_low": _none_if_nan(self.ci_low),  # None throughout with n_boot = 0
            "ci_high": _none_if_nan(self.ci_high),
            "control_accuracy": self.control_accuracy.tolist(),
            "selectivity": self.selectivity.tolist(),
            "chance": float(self.chance),
            "classes": [c.item() if hasattr(c, "item") else c for c in self.classes],
            "n_folds": self.n_folds,
            "converged": self.converged.tolist(),
        }


def _none_if_nan(a: np.ndarray) -> list[float | None]:
    return [float(v) if np.isfinite(v) else None for v in np.asarray(a, dtype=float)]


def probe_sweep(
    h,
    labels,
    groups,
    n_folds: int = 5,
    seed: int = 0,
    n_boot: int = 1000,
    l2: float = 1.0,
    max_iter: int = 1000,
    tol: float = 3e-5,
    selectivity: bool = True,
    layer_batch: int | None = None,
    dtype: str = "float32",
    threads: int | None = None,
) -> ProbeSweep:
    """Fit and score a linear probe for ``labels`` at every layer of ``h``.

    Parameters
    ----------
    h : array (n_layers, N, d)
        Activations of the prompts to probe (typically the non-BASE ones).
    labels : array (N,)
        Class of each prompt (any sortable values; at least two classes).
    groups : array (N,)
        Case id of each prompt; folds never split a case.
    n_folds, seed
        Folds from :func:`probes.folds.group_folds`; ``seed`` also drives the
        label permutations and the bootstrap.
    n_boot
        Bootstrap resamples of cases for the 95 % interval (0: no interval, NaN).
    l2
        λ = 1/C of scikit-learn's ``LogisticRegression``.
    max_iter, tol
        L-BFGS limits. ``tol`` bounds ‖∇‖_∞ of the mean loss as scikit-learn's
        does; the default 3e-5 puts the held-out predictions as close to the
        exact optimum as scikit-learn's default 1e-4 does (see
        :func:`probes.softmax_regression.fit_softmax_problems`).
    selectivity
        Also fit the permuted-label control probes (doubles the work).
    layer_batch
        Fit this many layers at a time (bounds memory to one float copy of
        ``layer_batch`` layers); None: all at once.
    dtype
        "float32" (default, fast) or "float64".
    threads
        torch intra-op threads for the fit (restored afterwards); None: leave
        torch's setting, except 1 thread for few prompts (4N ≤ d, fitted in
        row-space coordinates), whose small products run 5-10x slower on two
        threads of a busy machine. On a busy machine 1 thread is often fastest.
    """
    import torch

    shape = getattr(h, "shape", None)
    if shape is None or len(shape) != 3:
        raise ProbeInputError(f"h: expected an array of shape (n_layers, N, d), got {shape}")
    L, N, d = (int(x) for x in shape)
    labels = np.asarray(labels)
    groups = np.asarray(groups)
    if labels.shape != (N,) or groups.shape != (N,):
        raise ProbeInputError(
            f"labels and groups: expected shape ({N},), got {labels.shape} and {groups.shape}"
        )
    classes, y = np.unique(labels, return_inverse=True)
    C = len(classes)
    if C < 2:
        raise ProbeInputError(f"labels: need at least two classes, got {classes.tolist()}")
    if dtype not in ("float32", "float64"):
        raise ProbeInputError(f"dtype: expected 'float32' or 'float64', got {dtype!r}")
    tdtype = torch.float32 if dtype == "float32" else torch.float64

    fold, targets, rng = probe_targets(y, groups, n_folds, seed, selectivity)
    R = 2 if selectivity else 1

    step = L if not layer_batch else max(1, int(layer_batch))
    if threads is None and 4 * N <= d:
        threads = 1  # few prompts: small products, where a second thread only adds synchronisation
    saved_threads = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(int(threads))
    try:
        correct, correct_ctrl, converged = _fit_layers(
            h, y, fold, targets, C, R, step, tdtype, l2=l2, tol=tol, max_iter=max_iter
        )
    finally:
        torch.set_num_threads(saved_threads)

    accuracy = correct.mean(1)
    control = correct_ctrl.mean(1) if selectivity else np.full(L, np.nan)
    ci_low, ci_high = _case_bootstrap_ci(correct, groups, n_boot, rng)
    chance = float(np.bincount(y).max() / N)
    return ProbeSweep(
        accuracy=accuracy,
        ci_low=ci_low,
        ci_high=ci_high,
        control_accuracy=control,
        selectivity=accuracy - control,
        chance=chance,
        classes=tuple(classes.tolist()),
        n_folds=n_folds,
        converged=converged,
    )


def _fit_layers(h, y, fold, targets, C, R, step, tdtype, *, l2, tol, max_iter):
    """Held-out correctness (L, N) of the probes and controls, ``step`` layers at a time."""
    import torch

    from .softmax_regression import fit_softmax_problems, standardise_layers

    L, N = h.shape[0], h.shape[1]
    correct = np.zeros((L, N), dtype=bool)
    correct_ctrl = np.zeros((L, N), dtype=bool)
    converged = np.zeros(L, dtype=bool)
    rows = np.arange(N)
    for lo in range(0, L, step):
        hi = min(L, lo + step)
        X = standardise_layers(h[lo:hi], tdtype)
        fit = fit_softmax_problems(X, targets, C, l2=l2, tol=tol, max_iter=max_iter)
        with torch.no_grad():
            Z = fit.decision_function(X)  # (Lb, N, J, C)
        pred = Z.argmax(-1).numpy()  # (Lb, N, J)
        correct[lo:hi] = pred[:, rows, fold * R] == y
        if R == 2:
            correct_ctrl[lo:hi] = pred[:, rows, fold * R + 1] == y
        converged[lo:hi] = fit.converged.all(1)
        logger.info(
            "probe sweep: layers %d-%d fitted (%d probes each, iterations %s)",
            lo, hi - 1, targets.shape[0], fit.n_iter.tolist(),
        )
        del X, Z

    return correct, correct_ctrl, converged


def probe_targets(
    y: np.ndarray, groups: np.ndarray, n_folds: int, seed: int, selectivity: bool = True
) -> tuple[np.ndarray, np.ndarray, np.random.Generator]:
    """The folds and per-problem training labels of :func:`probe_sweep`.

    ``y`` holds class indices. Returns ``fold`` (N,), ``targets`` (n_folds·R, N)
    and the random generator (to continue with); row ``f·R`` of ``targets`` is
    fold f's probe (true labels on its training rows, −1 elsewhere) and, when
    ``selectivity``, row ``f·R + 1`` its control (the same training labels
    permuted among the training rows by ``numpy.random.default_rng(seed)``,
    fold by fold). A per-layer reference loop reproduces the sweep from these.
    """
    N = len(y)
    fold = group_folds(groups, n_folds, seed)
    rng = np.random.default_rng(seed)
    R = 2 if selectivity else 1
    targets = np.full((n_folds * R, N), -1, dtype=np.int64)
    for f in range(n_folds):
        tr = np.flatnonzero(fold != f)
        targets[f * R, tr] = y[tr]
        if selectivity:
            targets[f * R + 1, tr] = y[tr][rng.permutation(len(tr))]
    return fold, targets, rng


def _case_bootstrap_ci(
    correct: np.ndarray, groups: np.ndarray, n_boot: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """95 % percentile interval of pooled accuracy, resampling cases with replacement."""
    L = correct.shape[0]
    if n_boot <= 0:
        return np.full(L, np.nan), np.full(L, np.nan)
    _, case = np.unique(groups, return_inverse=True)
    n_cases = case.max() + 1
    per_case = np.zeros((L, n_cases))
    np.add.at(per_case.T, case, correct.T.astype(float))
    size = np.bincount(case, minlength=n_cases).astype(float)
    draws = rng.integers(0, n_cases, size=(n_boot, n_cases))
    counts = np.zeros((n_boot, n_cases))
    np.add.at(counts, (np.repeat(np.arange(n_boot), n_cases), draws.ravel()), 1.0)
    boot = (per_case @ counts.T) / (counts @ size)  # (L, n_boot)
    lo, hi = np.percentile(boot, [2.5, 97.5], axis=1)
    return lo, hi
