"""Probes on few prompts (4N ≤ d): row-space coordinates, their cost and their agreement with the full solver."""

from __future__ import annotations

import time

import numpy as np
import pytest
import torch

from latent_bias_probe.probes.linear_probe import probe_sweep, probe_targets
from latent_bias_probe.probes.softmax_regression import fit_softmax_problems, standardise_layers


@pytest.fixture(autouse=True)
def one_thread():
    saved = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny products: a second thread only adds synchronisation
    yield
    torch.set_num_threads(saved)


def _separable(n_cases=4, n_var=12, d=256, n_layers=3, seed=0):
    """A 4-case tier in miniature: large case offsets, small variant shifts, features of very unequal scale.

    48 prompts in 256 dimensions: every labelling is linearly separable.
    """
    rng = np.random.default_rng(seed)
    case = rng.normal(size=(n_layers, n_cases, 1, d)) * 5.0
    variant = rng.normal(size=(n_layers, 1, n_var, d)) * 0.5
    noise = 0.05 * rng.normal(size=(n_layers, n_cases, n_var, d))
    h = (case + variant + noise) * np.exp(2.0 * rng.normal(size=d))
    y = np.tile(np.arange(n_var), n_cases)
    groups = np.repeat(np.arange(n_cases), n_var)
    return h.reshape(n_layers, n_cases * n_var, d).astype(np.float32), y, groups


def _non_separable(n=40, d=192, rank=3, n_classes=3, n_layers=2, seed=1):
    """Rank-3 activations with random labels: 40 prompts that no hyperplane separates."""
    rng = np.random.default_rng(seed)
    z = rng.normal(size=(n_layers, n, rank))
    mix = rng.normal(size=(n_layers, rank, d))
    h = np.einsum("lnk,lkd->lnd", z, mix) + rng.normal(size=(n_layers, 1, d))
    y = rng.integers(0, n_classes, size=n)
    groups = np.arange(n) // 4
    return h, y, groups


def _problems(h, y, groups, dtype):
    fold, targets, _ = probe_targets(y, groups, 4, 0, True)
    return standardise_layers(h, dtype), targets, fold


def test_small_separable_problems_converge_in_few_iterations_and_quickly():
    h, y, groups = _separable()
    X, targets, _ = _problems(h, y, groups, torch.float32)
    start = time.perf_counter()
    fit = fit_softmax_problems(X, targets, 12)
    seconds = time.perf_counter() - start
    full = fit_softmax_problems(X, targets, 12, reduce_rows=False)
    assert fit.converged.all() and full.converged.all()
    # Row-space coordinates with the exact per-problem preconditioner: about half the
    # iterations of the full-dimensional solver (95-108 on this fixture), each far cheaper.
    assert fit.n_iter.max() <= 70, fit.n_iter
    assert full.n_iter.min() >= 85, full.n_iter
    assert seconds < 5.0, seconds


def test_small_separable_problems_reach_the_exact_optimum():
    h, y, groups = _separable(n_layers=1)
    X64, targets, fold = _problems(h, y, groups, torch.float64)
    exact = fit_softmax_problems(X64, targets, 12, tol=1e-6, max_iter=5000, reduce_rows=False)
    X32 = standardise_layers(h, torch.float32)
    fit = fit_softmax_problems(X32, targets, 12)
    rows = np.arange(len(y))
    pred = fit.decision_function(X32).argmax(-1).numpy()[:, rows, fold * 2]
    pred_exact = exact.decision_function(X64).argmax(-1).numpy()[:, rows, fold * 2]
    assert (pred == pred_exact).mean() >= 0.99
    scale = float(exact.coef.abs().max())
    assert float((fit.coef.double() - exact.coef).abs().max()) <= 2e-3 * scale


def test_row_space_and_full_solver_agree_on_non_separable_data():
    h, y, groups = _non_separable(n_layers=1)
    X, targets, _ = _problems(h, y, groups, torch.float64)
    reduced = fit_softmax_problems(X, targets, 3, tol=1e-7, reduce_rows=True)
    full = fit_softmax_problems(X, targets, 3, tol=1e-7, reduce_rows=False)
    assert reduced.converged.all() and full.converged.all()
    # non-separable: the training loss stays far from 0 (checked on the first problem)
    Z = full.decision_function(X)[0, :, 0]  # (N, C)
    train = targets[0] >= 0
    loss = torch.nn.functional.cross_entropy(Z[train], torch.as_tensor(targets[0][train]))
    assert float(loss) > 0.5
    np.testing.assert_allclose(reduced.coef.numpy(), full.coef.numpy(), atol=1e-4 * float(full.coef.abs().max()))
    np.testing.assert_allclose(reduced.intercept.numpy(), full.intercept.numpy(), atol=1e-5)
    np.testing.assert_allclose(
        reduced.decision_function(X).numpy(), full.decision_function(X).numpy(), atol=1e-5
    )


def test_row_space_solver_matches_sklearn_on_non_separable_data():
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    h, y, groups = _non_separable(n_layers=1)
    X, targets, _ = _problems(h, y, groups, torch.float64)
    fit = fit_softmax_problems(X, targets, 3, tol=1e-8)
    for j in (0, 1):
        train = targets[j] >= 0
        x = StandardScaler().fit_transform(X[0].numpy()[train])
        clf = LogisticRegression(tol=1e-10, max_iter=10000).fit(x, targets[j][train])
        np.testing.assert_allclose(fit.coef[0, j].numpy(), clf.coef_, atol=1e-4)
        np.testing.assert_allclose(fit.intercept[0, j].numpy(), clf.intercept_, atol=1e-4)


def test_normal_size_fits_keep_the_full_solver():
    # 4N > d: the default path is the full-dimensional solver, bit for bit.
    rng = np.random.default_rng(2)
    h = rng.normal(size=(2, 80, 32)).astype(np.float32)
    y = rng.integers(0, 3, size=80)
    X, targets, _ = _problems(h, y, np.arange(80) // 4, torch.float32)
    default = fit_softmax_problems(X, targets, 3)
    full = fit_softmax_problems(X, targets, 3, reduce_rows=False)
    assert torch.equal(default.coef, full.coef) and torch.equal(default.intercept, full.intercept)
    np.testing.assert_array_equal(default.n_iter, full.n_iter)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_probe_sweep_on_few_cases_gives_the_full_solvers_accuracy(dtype):
    h, y, groups = _non_separable(n_layers=1)
    sweep = probe_sweep(h, y, groups, n_folds=4, n_boot=0, dtype=dtype, tol=1e-6)
    X, targets, fold = _problems(h, y, groups, torch.float64)
    full = fit_softmax_problems(X, targets, 3, tol=1e-7, reduce_rows=False)
    rows = np.arange(len(y))
    pred = full.decision_function(X).argmax(-1).numpy()
    np.testing.assert_allclose(sweep.accuracy, (pred[:, rows, fold * 2] == y).mean(1))
    np.testing.assert_allclose(sweep.control_accuracy, (pred[:, rows, fold * 2 + 1] == y).mean(1))
