"""Probe fits on few prompts: row-space coordinates vs the full-dimensional solver, on a run's cache.

For every tier of ``RUN/cache.h5`` and every probe target (race, gender, race × gender)
it fits the probes and their permuted-label controls of ``probe_sweep`` (same folds,
resid_post at the last position, non-BASE prompts) twice — with the full-dimensional
solver (``reduce_rows=False``, the solver before row-space coordinates) and with the
default (row-space coordinates when 4N ≤ d) — and prints iterations, wall and CPU
seconds, and the largest difference of held-out accuracy per layer.

    python bench/probe_small.py runs/try            # e.g. a --limit-cases 4 run
    python bench/probe_small.py runs/try --threads 2
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from latent_bias_probe.configs.names import BASE  # noqa: E402
from latent_bias_probe.extract.cache import Cache  # noqa: E402
from latent_bias_probe.probes.linear_probe import probe_targets  # noqa: E402

logger = logging.getLogger("bench.probe_small")


def _held_out_accuracy(fit, X, y, fold):
    import torch

    with torch.no_grad():
        pred = fit.decision_function(X).argmax(-1).numpy()
    rows = np.arange(len(y))
    return (pred[:, rows, fold * 2] == y).mean(1)


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run", type=Path, help="run directory holding cache.h5")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    import torch

    from latent_bias_probe.probes.softmax_regression import fit_softmax_problems, standardise_layers

    torch.set_num_threads(args.threads)
    out: dict = {"run": str(args.run), "threads": args.threads, "rows": []}
    with Cache(args.run / "cache.h5") as cache:
        prompts = cache.prompts
        for tier in dict.fromkeys(prompts["tier"].tolist()):
            rows = np.flatnonzero(prompts["tier"].to_numpy() == tier)
            part = prompts.iloc[rows].reset_index(drop=True)
            demo = (part["variant"] != BASE).to_numpy()
            h = cache.acts("resid_post", "last", rows)[:, demo]
            groups = part["case_id"].to_numpy()[demo]
            n_folds = min(args.folds, len(set(groups)))
            X = standardise_layers(h, torch.float32)
            for target in ("race", "gender", "variant"):
                classes, y = np.unique(part[target].to_numpy()[demo], return_inverse=True)
                fold, targets, _ = probe_targets(y, groups, n_folds, 0, True)
                row = {"tier": tier, "target": target, "prompts": int(h.shape[1]), "dim": int(h.shape[2])}
                acc = {}
                for name, reduce_rows in (("full", False), ("default", None)):
                    t0, c0 = time.perf_counter(), time.process_time()
                    fit = fit_softmax_problems(X, targets, len(classes), reduce_rows=reduce_rows)
                    row[f"{name}_seconds"] = round(time.perf_counter() - t0, 2)
                    row[f"{name}_cpu_seconds"] = round(time.process_time() - c0, 2)
                    row[f"{name}_max_iter"] = int(fit.n_iter.max())
                    acc[name] = _held_out_accuracy(fit, X, y, fold)
                row["max_abs_accuracy_diff"] = float(np.abs(acc["full"] - acc["default"]).max())
                logger.info(json.dumps(row))
                out["rows"].append(row)
    for key in ("full_seconds", "default_seconds", "full_cpu_seconds", "default_cpu_seconds"):
        out[f"total_{key}"] = round(sum(r[key] for r in out["rows"]), 2)
    logger.info("total: full %.1f s (CPU %.1f s), default %.1f s (CPU %.1f s)", out["total_full_seconds"],
                out["total_full_cpu_seconds"], out["total_default_seconds"], out["total_default_cpu_seconds"])
    if args.json:
        args.json.write_text(json.dumps(out, indent=1))
    return out


if __name__ == "__main__":
    main()
