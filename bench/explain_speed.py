"""The explain stage's interventions: full re-runs against prefix reuse, in one run.

Renders one tier of a config's benchmark (the first --max-cases cases, default the
config's ``explain.max_cases``), scores it once (P(Yes) and the decision-position
activations, as the extraction would), takes the value axis as a seeded random unit
direction per layer and the steering vectors as each group's mean difference from BASE
(the directions' values do not change the cost), and runs
:func:`probes.causal.explain_tier` twice on the same prompts, interventions and layers:
with ``reuse_prefix=False`` (every intervention re-runs the whole model, as before
prefix reuse) and ``reuse_prefix=True``. Prints both wall times, the speed-up, prompt
forward passes per second and the largest difference between the two results.
``--trace-cases`` and ``--position-erasure`` add the causal trace and per-position
erasure to both runs (off by default: the interventions explain ran before them).

    .venv/bin/python bench/explain_speed.py [--config configs/ed_triage_demo.yaml] [--tier high]
        [--max-cases 30] [--layers default|8,16,24] [--alphas default|-4,0,4] [--trace-cases 0]
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.registry import render_benchmark  # noqa: E402
from configs.schema import ExplainConfig, load_config  # noqa: E402
from extract.backends import make_runner  # noqa: E402
from extract.chat import model_text  # noqa: E402
from extract.hf_runner import score_prompts  # noqa: E402
from extract.model import load_model  # noqa: E402
from probes.causal import default_layers, explain_tier  # noqa: E402
from probes.steering import SteeringVectors  # noqa: E402


def _flat(x, out):
    if isinstance(x, dict):
        for k in sorted(x):
            _flat(x[k], out)
    elif isinstance(x, list):
        for v in x:
            _flat(v, out)
    elif isinstance(x, float):
        out.append(x)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", default=str(ROOT / "configs" / "ed_triage_demo.yaml"))
    ap.add_argument("--tier", default="high")
    ap.add_argument("--max-cases", type=int, default=None, help="default: the shipped explain.max_cases")
    ap.add_argument("--layers", default="default", help="'default' (every fourth + the value-axis layer) or a list")
    ap.add_argument("--alphas", default="default", help="'default' (the shipped grid) or a list")
    ap.add_argument("--value-layer", type=int, default=None, help="default: n_layers // 2")
    ap.add_argument("--trace-cases", type=int, default=0)
    ap.add_argument("--position-erasure", action="store_true")
    ap.add_argument("--backend", default="hf")
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")

    shipped = ExplainConfig()
    cfg = load_config(args.config, [f"benchmark.tiers=[{args.tier}]", f"extract.backend={args.backend}"])
    cfg.explain = ExplainConfig(
        max_cases=args.max_cases or shipped.max_cases,
        alphas=shipped.alphas if args.alphas == "default" else [float(a) for a in args.alphas.split(",")],
        trace_cases=args.trace_cases,
        position_erasure=args.position_erasure,
    )
    n_cases = cfg.explain.max_cases
    prompts = [p for p in render_benchmark(cfg.benchmark).prompts if p.tier == args.tier]
    keep = list(dict.fromkeys(p.case_id for p in prompts))[:n_cases]
    prompts = [p for p in prompts if p.case_id in set(keep)]
    loaded = load_model(cfg.model)
    runner = make_runner(cfg.extract.backend, loaded)
    texts = [model_text(loaded.tokenizer, p) for p in prompts]
    import pandas as pd

    table = pd.DataFrame({"case_id": [p.case_id for p in prompts], "variant": [p.variant for p in prompts],
                          "race": [p.race for p in prompts], "gender": [p.gender for p in prompts], "text": texts})
    start = time.perf_counter()
    scored = score_prompts(runner, texts, cfg.extract.batch_size, progress=False, capture=True)
    score_s = time.perf_counter() - start
    h = scored["resid_post"]
    value_layer = args.value_layer if args.value_layer is not None else loaded.n_layers // 2
    layers = default_layers(loaded.n_layers, value_layer) if args.layers == "default" else [int(x) for x in args.layers.split(",")]
    rng = np.random.default_rng(0)
    axis = rng.normal(size=(loaded.n_layers, loaded.d_model))
    axis /= np.linalg.norm(axis, axis=1, keepdims=True)
    sv = SteeringVectors.fit(h, table["variant"].to_numpy())
    steering = {g: sv.vectors[:, j] for j, g in enumerate(sv.groups)}
    print(f"{loaded.name}: {loaded.n_layers} layers, {len(keep)} cases x {len(prompts) // max(1, len(keep))} variants = "
          f"{len(prompts)} prompts ({args.tier} tier, {int(np.mean(scored['n_tokens']))} tokens on average); "
          f"value-axis layer {value_layer}, mediation layers {layers}, alphas {cfg.explain.alphas}; "
          f"one scoring pass {score_s:.1f} s ({len(prompts) / score_s:.2f} prompts/s)")
    results, seconds = {}, {}
    for reuse in (False, True):
        start = time.perf_counter()
        results[reuse] = explain_tier(runner, loaded.model, table, scored["p_yes"], h, axis, value_layer, steering, cfg, layers,
                                      reuse_prefix=reuse)
        seconds[reuse] = time.perf_counter() - start
    a, b = np.array(_flat(results[False], [])), np.array(_flat(results[True], []))
    diff = float(np.nanmax(np.abs(a - b))) if a.shape == b.shape else float("nan")
    full, fast = seconds[False], seconds[True]
    print(f"full re-runs:  {full:8.1f} s")
    print(f"prefix reuse:  {fast:8.1f} s")
    print(f"speed-up:      {full / fast:8.2f}x   (largest |difference| between the two explain results: {diff:.2g})")


if __name__ == "__main__":
    main()
