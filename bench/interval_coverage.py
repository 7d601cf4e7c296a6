"""How often the case-bootstrap intervals cover their target, on simulated tiers.

Draws tiers from a known population (``mfarm.simulation.TierPopulation``: per case
a base logit and a label, per group a fixed logit shift, per prompt noise) and, for
each of R repetitions, computes the percentile intervals ``score_intervals`` gives
(the same code as results.json's ``ci``).  Targets:

- group mean shifts and accuracy: their population values (closed form);
- mFARM and its five scores: their *expected value at this number of cases*,
  estimated as the mean point score over M independent tiers of that size (they
  count significant tests, so the population value has no meaning apart from n).

Prints one row per (scenario, n): coverage of each quantity, and the mean interval
width of mFARM.  Scenarios: ``null`` (no group shift), ``planted`` (one group
shifted by -0.5 logits, the others by small fixed amounts).

    .venv/bin/python bench/interval_coverage.py [--reps 200] [--n-boot 500]
        [--cases 30 60 153] [--expect-tiers 400] [--level 0.95] [--seed 0]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from latent_bias_probe.configs.names import SCORE_KEYS  # noqa: E402
from latent_bias_probe.mfarm.output_scores import output_scores  # noqa: E402
from latent_bias_probe.mfarm.resampling import mean_shift_intervals, score_intervals  # noqa: E402
from latent_bias_probe.mfarm.simulation import TierPopulation  # noqa: E402

GROUPS = 12  # 4 races x 3 genders
SCENARIOS = {
    "null": TierPopulation.of([0.0] * GROUPS),
    "planted": TierPopulation.of([-0.5] + [0.1, -0.1, 0.05, -0.05, 0.0] * 2 + [0.08]),
}
SCORES = (*SCORE_KEYS, "score")


def _covers(ci: list[float] | None, target: float) -> bool:
    return ci is not None and ci[0] <= target <= ci[1]


def expected_scores(pop: TierPopulation, n: int, tiers: int, rng: np.random.Generator) -> dict[str, float]:
    """Mean point value of each mFARM score over ``tiers`` independent tiers of n cases."""
    sums = dict.fromkeys(SCORES, 0.0)
    for _ in range(tiers):
        P, _ = pop.draw(rng, n)
        got = output_scores(P)
        for key in SCORES:
            sums[key] += got[key]
    return {key: v / tiers for key, v in sums.items()}


def coverage_row(pop: TierPopulation, n: int, args: argparse.Namespace, rng: np.random.Generator) -> dict[str, float]:
    """Coverage of every interval over ``args.reps`` repetitions at n cases."""
    expect = expected_scores(pop, n, args.expect_tiers, rng)
    shifts, acc = pop.mean_shifts(), pop.accuracy()
    hits = dict.fromkeys((*SCORES, "accuracy", "mean_shift"), 0.0)
    width = 0.0
    for rep in range(args.reps):
        P, Y = pop.draw(rng, n)
        ci = score_intervals(P, Y, n_boot=args.n_boot, seed=rep, level=args.level)
        for key in SCORES:
            hits[key] += _covers(ci[key], expect[key])
        hits["accuracy"] += _covers(ci["accuracy"], acc)
        group = mean_shift_intervals(P, args.n_boot, rep, args.level)
        hits["mean_shift"] += np.mean([_covers(c, t) for c, t in zip(group, shifts)])
        width += ci["score"][1] - ci["score"][0]
    row = {key: v / args.reps for key, v in hits.items()}
    row["expected_mfarm"] = expect["score"]
    row["mfarm_width"] = width / args.reps
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--reps", type=int, default=200)
    ap.add_argument("--n-boot", type=int, default=500)
    ap.add_argument("--cases", type=int, nargs="+", default=[30, 60, 153])
    ap.add_argument("--expect-tiers", type=int, default=400, help="tiers averaged for the expected score")
    ap.add_argument("--level", type=float, default=0.95)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    rng = np.random.default_rng(args.seed)
    short = {"mean_difference": "F_MD", "absolute_deviation": "F_AD", "variance_heterogeneity": "F_VH",
             "ks_distribution": "F_KS", "correlation_difference": "F_CD", "score": "mFARM"}
    cols = [*SCORES, "accuracy", "mean_shift"]
    print(f"coverage of {args.level:.0%} percentile intervals, {args.reps} repetitions, {args.n_boot} resamples")
    print("scenario  n    E[mFARM]  width  " + "  ".join(f"{short.get(c, c):>10}" for c in cols) + "  seconds")
    for name, pop in SCENARIOS.items():
        for n in args.cases:
            start = time.perf_counter()
            row = coverage_row(pop, n, args, rng)
            print(
                f"{name:<9} {n:<4} {row['expected_mfarm']:8.3f}  {row['mfarm_width']:5.3f}  "
                + "  ".join(f"{row[c]:10.3f}" for c in cols)
                + f"  {time.perf_counter() - start:7.1f}",
                flush=True,
            )


if __name__ == "__main__":
    main()
