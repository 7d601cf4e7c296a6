"""Bootstrap of the mFARM scores: a Python loop over ``output_scores`` against the batched engine.

Simulates one tier (default 153 cases x 13 columns: per case a base logit, per group a
fixed shift, per prompt noise, P = expit(sum), rounded to 3 decimals so that ties
occur as they do in real P(Yes)), draws --n-boot case resamples, scores every
resample once with ``output_scores`` in a loop and once with ``batched_output_scores``,
and prints both times (wall clock and process CPU; on a shared machine the CPU
time is the steadier figure) and the largest |difference| over all resamples and all
six scores (the five Part A scores and mFARM).  One run, no warm-up beyond a single
small call of each path.

    .venv/bin/python bench/bootstrap_speed.py [--n-boot 1000] [--n-cases 153] [--k 13] [--seed 0]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
from scipy.special import expit

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from latent_bias_probe.mfarm.output_scores import SCORE_KEYS, batched_output_scores, output_scores  # noqa: E402
from latent_bias_probe.mfarm.resampling import bootstrap_indices  # noqa: E402


def simulate(n: int, k: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    shifts = np.r_[0.0, rng.normal(0.0, 0.15, k - 1)]
    shifts[min(3, k - 1)] += 0.4  # one clearly shifted group, so the gated tests run
    logits = rng.normal(0.0, 1.5, (n, 1)) + shifts[None, :] + rng.normal(0.0, 0.3, (n, k))
    return np.round(expit(logits), 3)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n-boot", type=int, default=1000)
    ap.add_argument("--n-cases", type=int, default=153)
    ap.add_argument("--k", type=int, default=13, help="columns: BASE + groups")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--alpha", type=float, default=0.05)
    ap.add_argument("--correction", default="holm")
    args = ap.parse_args()

    P = simulate(args.n_cases, args.k, args.seed)
    idx = bootstrap_indices(args.n_cases, args.n_boot, args.seed)
    Ps = P[idx]
    keys = (*SCORE_KEYS, "score")
    output_scores(P, args.alpha, args.correction)  # imports and one-off caches
    batched_output_scores(P[None], args.alpha, args.correction)

    t0, c0 = time.perf_counter(), time.process_time()
    loop = [output_scores(Ps[b], args.alpha, args.correction) for b in range(args.n_boot)]
    t_loop, c_loop = time.perf_counter() - t0, time.process_time() - c0
    t0, c0 = time.perf_counter(), time.process_time()
    batched = batched_output_scores(Ps, args.alpha, args.correction)
    t_batched, c_batched = time.perf_counter() - t0, time.process_time() - c0

    worst = {key: float(np.max(np.abs(np.array([r[key] for r in loop]) - batched[key]))) for key in keys}
    print(f"{args.n_boot} resamples of a {args.n_cases} x {args.k} matrix ({args.correction}, alpha {args.alpha})")
    per = 1000 / max(args.n_boot, 1)
    print(f"loop    {t_loop:8.2f} s wall, {c_loop:8.2f} s CPU   ({per * t_loop:.1f} ms per resample, wall)")
    print(f"batched {t_batched:8.2f} s wall, {c_batched:8.2f} s CPU   ({per * t_batched:.2f} ms per resample, wall)")
    print(f"speed-up {t_loop / t_batched:.1f}x wall, {c_loop / c_batched:.1f}x CPU")
    print(f"max |loop - batched| over all scores: {max(worst.values()):.3g}")
    for key in keys:
        share = float(np.mean(batched[key] < 1.0))
        print(f"  {key:24s} max diff {worst[key]:.3g}   resamples scored < 1: {share:.0%}")


if __name__ == "__main__":
    main()
