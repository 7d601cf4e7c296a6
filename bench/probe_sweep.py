"""Benchmark: batched torch probe sweep vs a per-layer scikit-learn loop.

Builds a synthetic activation set (``probes.synthetic``: cases × 13 variants,
race planted from one layer on), probes race on the non-BASE prompts, and times

  (a) a plain loop: for each layer and fold, ``StandardScaler`` +
      ``LogisticRegression(max_iter=1000)`` on the true labels and on the same
      permuted labels ``probe_sweep`` uses (its selectivity control);
  (b) ``probes.probe_sweep`` on the same folds.

It prints each method's wall-clock and CPU seconds, their ratios, and the
largest per-layer |accuracy difference| and |control-accuracy difference|. By
default both run on one thread (``--threads``), which is also the fairest
setting on a shared machine: wall time then tracks CPU time.

    python bench/probe_sweep.py            # 30 layers × 125 cases (1,500 probed prompts) × 576
    python bench/probe_sweep.py --quick    # 8 layers × 40 cases × 128
    python bench/probe_sweep.py --acts real.npz   # activations saved from a model run

``--acts`` takes an ``.npz`` with ``h`` (n_layers, N, d), ``case_ids``,
``variants`` and ``race`` (per prompt; BASE prompts are dropped).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from latent_bias_probe.probes.linear_probe import probe_sweep, probe_targets  # noqa: E402
from latent_bias_probe.probes.synthetic import make_synthetic_activations  # noqa: E402

logger = logging.getLogger("bench.probe_sweep")


def sklearn_loop(h, y, fold, targets, n_folds, R, threads=None):
    """Per-layer, per-fold scikit-learn fits; returns (accuracy, control) per layer."""
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler
    from threadpoolctl import threadpool_limits

    L = h.shape[0]
    acc = np.zeros(L)
    ctrl = np.zeros(L)
    with threadpool_limits(threads), warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        for ell in range(L):
            correct = np.zeros(len(y), bool)
            correct_c = np.zeros(len(y), bool)
            for f in range(n_folds):
                tr, te = fold != f, fold == f
                scaler = StandardScaler().fit(h[ell][tr])
                xtr, xte = scaler.transform(h[ell][tr]), scaler.transform(h[ell][te])
                for r in range(R):
                    clf = LogisticRegression(max_iter=1000).fit(xtr, targets[f * R + r][tr])
                    ok = clf.predict(xte) == y[te]
                    (correct if r == 0 else correct_c)[te] = ok
            acc[ell], ctrl[ell] = correct.mean(), correct_c.mean()
    return acc, ctrl


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="small problem (8 layers × 40 cases × 128 dims)")
    ap.add_argument("--layers", type=int, default=None)
    ap.add_argument("--cases", type=int, default=None, help="cases (each gives 12 probed prompts)")
    ap.add_argument("--dim", type=int, default=None)
    ap.add_argument("--race-layer", type=int, default=None, help="first layer with the race signal")
    ap.add_argument("--race-strength", type=float, default=4.0)
    ap.add_argument("--case-scale", type=float, default=40.0,
                    help="size of the case-identity component (40: as hard for the sklearn loop as "
                         "real SmolLM2-135M activations; 3: well-conditioned)")
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--no-selectivity", action="store_true", help="true-label probes only")
    ap.add_argument("--threads", type=int, default=1,
                    help="threads for both methods (torch intra-op; BLAS/OpenMP for sklearn); "
                         "0: each library's default")
    ap.add_argument("--skip-sklearn", action="store_true")
    ap.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    ap.add_argument("--tol", type=float, default=None, help="probe_sweep tol (default: its own)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--acts", type=Path, default=None, help="probe saved activations instead (.npz)")
    ap.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    L = args.layers or (8 if args.quick else 30)
    n_cases = args.cases or (40 if args.quick else 125)
    d = args.dim or (128 if args.quick else 576)
    race_layer = args.race_layer if args.race_layer is not None else L // 3
    R = 1 if args.no_selectivity else 2

    t0 = time.perf_counter()
    if args.acts is not None:
        saved = np.load(args.acts)
        demo = saved["variants"].astype(str) != "BASE"
        h = np.ascontiguousarray(saved["h"][:, demo], dtype=np.float32)
        labels = saved["race"].astype(str)[demo]
        groups = saved["case_ids"].astype(str)[demo]
        L, d = h.shape[0], h.shape[2]
        n_cases = len(np.unique(groups))
        race_layer = -1
        logger.info("data: %s, %d layers × %d prompts × %d dims", args.acts, L, h.shape[1], d)
    else:
        data = make_synthetic_activations(
            n_cases=n_cases, n_layers=L, d=d, race_from_layer=race_layer,
            race_strength=args.race_strength, case_scale=args.case_scale, seed=args.seed,
        )
        demo = ~data.is_base
        h = np.ascontiguousarray(data.h[:, demo])
        labels = data.race[demo]
        groups = data.case_ids[demo]
        logger.info("data: %d layers × %d prompts × %d dims (race from layer %d), built in %.1fs",
                    L, h.shape[1], d, race_layer, time.perf_counter() - t0)
    classes, y = np.unique(labels, return_inverse=True)

    import torch

    t0, c0 = time.perf_counter(), time.process_time()
    threads = args.threads or None
    extra = {} if args.tol is None else {"tol": args.tol}
    sweep = probe_sweep(h, labels, groups, n_folds=args.folds, seed=args.seed,
                        selectivity=R == 2, dtype=args.dtype, threads=threads, **extra)
    t_torch, c_torch = time.perf_counter() - t0, time.process_time() - c0
    n_threads = threads or torch.get_num_threads()
    logger.info("probe_sweep (torch, %d threads): %.2fs wall, %.2fs CPU", n_threads, t_torch, c_torch)

    out = {
        "layers": L, "prompts": int(h.shape[1]), "dim": d, "cases": n_cases, "folds": args.folds,
        "classes": len(classes), "selectivity": R == 2, "race_from_layer": race_layer,
        "torch_seconds": round(t_torch, 3), "torch_cpu_seconds": round(c_torch, 3), "threads": n_threads,
        "accuracy": np.round(sweep.accuracy, 4).tolist(),
        "selectivity_per_layer": np.round(sweep.selectivity, 4).tolist(),
    }
    if not args.skip_sklearn:
        fold, targets, _ = probe_targets(y, groups, args.folds, args.seed, R == 2)
        t0, c0 = time.perf_counter(), time.process_time()
        acc_sk, ctrl_sk = sklearn_loop(h, y, fold, targets, args.folds, R, threads)
        t_sk, c_sk = time.perf_counter() - t0, time.process_time() - c0
        logger.info("sklearn loop: %.2fs wall, %.2fs CPU", t_sk, c_sk)
        dacc = float(np.abs(acc_sk - sweep.accuracy).max())
        out.update({
            "sklearn_seconds": round(t_sk, 3),
            "sklearn_cpu_seconds": round(c_sk, 3),
            "speed_ratio": round(t_sk / t_torch, 2),
            "cpu_time_ratio": round(c_sk / c_torch, 2),
            "max_abs_accuracy_diff": dacc,
            "sklearn_accuracy": np.round(acc_sk, 4).tolist(),
        })
        if R == 2:
            out["max_abs_control_accuracy_diff"] = float(np.abs(ctrl_sk - sweep.control_accuracy).max())
    for key, val in out.items():
        sys.stdout.write(f"{key}: {val}\n")
    if args.json:
        args.json.write_text(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
