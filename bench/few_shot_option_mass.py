"""Benchmark: option mass, accuracy and mFARM of a model over the number of few-shot examples.

For each ``k`` in ``--ks`` it runs ``probe run CONFIG --no-fit --no-explain --no-report``
(extract + score, in-process via ``pipeline.run``) with ``model.name`` = ``--model``
and ``benchmark.few_shot`` = k on the first ``--limit-cases`` cases, into
``OUT/<model>-k<k>`` (an existing complete run there is resumed, i.e. reused), and
prints one row per k and tier: the median option mass (next-token probability on
Yes ∪ No), whether it passes the decision gate (``scoring.min_option_mass``),
accuracy, and mFARM with its case-bootstrap interval::

    flock /work/heavy.lock python bench/few_shot_option_mass.py --model gemma3-270m --ks 0,1,2,4 --limit-cases 8
    python bench/few_shot_option_mass.py --model smollm2-135m-instruct --ks 0,2 --json smollm2.json

``--set KEY=VALUE`` adds config overrides (e.g. ``extract.threads=1``, or fewer
variants: ``benchmark.races=[White,Black]``). The table of measured figures, and the
command that made it, is in ``docs/few-shot.md``.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from latent_bias_probe.configs.schema import load_config  # noqa: E402

logger = logging.getLogger("bench.few_shot_option_mass")

ROOT = Path(__file__).resolve().parents[1]
STAGES = ("extract", "score")


def measure(config: Path, model: str, k: int, limit_cases: int | None, out: Path, overrides: list[str]) -> dict[str, Any]:
    """Run extract + score for one k; return ``{"k", "seconds", "tiers": {tier: row}}``."""
    from latent_bias_probe import pipeline

    # explain does not run here; its layer lists (the demo's fit SmolLM2's 30 layers) are unset so any model loads
    fixed = [f"model.name={model}", f"benchmark.few_shot={k}", "explain.layers=null", "explain.trace_layers=null"]
    cfg = load_config(config, [*fixed, *overrides])
    start = time.perf_counter()
    results = pipeline.run(cfg, out, STAGES, limit_cases=limit_cases, progress=False)
    seconds = time.perf_counter() - start
    tiers = {}
    for tier, t in results["tiers"].items():
        ci = (t.get("ci") or {}).get("score") or [None, None]
        tiers[tier] = {
            "n_cases": t.get("n_cases"),
            "option_mass": (t.get("option_mass") or {}).get("median"),
            "decision": t.get("decision"),
            "accuracy": t.get("accuracy"),
            "mfarm": (t.get("mfarm") or {}).get("score"),
            "mfarm_lo": ci[0],
            "mfarm_hi": ci[1],
        }
    framing = (results.get("model") or {}).get("prompt_framing") or {}
    return {"model": model, "k": k, "seconds": seconds, "framing": framing.get("kind"), "tiers": tiers}


def _f(v: Any, digits: int = 3) -> str:
    return "-" if v is None else f"{v:.{digits}f}"


def table(rows: list[dict[str, Any]]) -> str:
    """A Markdown table: model, k, tier, cases, median option mass, decision, accuracy, mFARM [95% interval]."""
    lines = ["| model | k | tier | cases | median option mass | decision | accuracy | mFARM [95% CI] |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        for tier, t in r["tiers"].items():
            decision = {True: "yes", False: "**no**"}.get(t["decision"], "-")
            lines.append(
                f"| {r['model']} | {r['k']} | {tier} | {t['n_cases']} | {_f(t['option_mass'])} | {decision} | "
                f"{_f(t['accuracy'], 2)} | {_f(t['mfarm'])} [{_f(t['mfarm_lo'], 2)}, {_f(t['mfarm_hi'], 2)}] |"
            )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Parse the arguments, run every k, print the table."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", type=Path, default=ROOT / "configs" / "ed_triage_demo.yaml")
    ap.add_argument("--model", default="gemma3-270m")
    ap.add_argument("--ks", default="0,1,2,4", help="comma-separated numbers of examples")
    ap.add_argument("--limit-cases", type=int, default=None)
    ap.add_argument("--out", type=Path, default=ROOT / "runs" / "few_shot_bench")
    ap.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    ap.add_argument("--json", type=Path, default=None, help="also write the rows as JSON")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    logger.setLevel(logging.INFO)
    rows = []
    for k in (int(x) for x in args.ks.split(",")):
        out = args.out / f"{args.model}-k{k}"
        logger.info("%s, k = %d: running into %s", args.model, k, out)
        rows.append(measure(args.config, args.model, k, args.limit_cases, out, args.overrides))
        logger.info("%s, k = %d: %.0f s\n%s", args.model, k, rows[-1]["seconds"], table(rows[-1:]))
        if args.json:  # after every k, so an interrupted run keeps what it measured
            args.json.write_text(json.dumps(rows, indent=2) + "\n")
    print(table(rows))
    for r in rows:
        print(f"{r['model']} k={r['k']}: {r['seconds']:.0f} s ({r['framing']} framing)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
