"""The explain stage's interventions: full re-runs against prefix reuse, in one run.

``--components``: instead, component attribution of one tier timed beside activation
patching of the same components (every option after it goes to ``bench/component_speed.py``).

Renders one tier of a config's benchmark (the first --max-cases cases, default the
config's ``explain.max_cases``), scores it once (P(Yes) and the decision-position
activations, as the extraction would), takes the value axis, its layer ℓ* and the
steering vectors from a fitted run (``--run-dir``: its ``probes.h5``) or else a seeded
random unit direction per layer at ℓ* = n_layers // 2 and each group's mean difference
from BASE (the directions' values do not change the cost; ℓ* does: the dose–response
runs blocks ℓ*+1..L−1), and runs
:func:`probes.causal.explain_tier` on the same prompts, interventions and layers
with ``reuse_prefix=False`` (every intervention re-runs the whole model, as before
prefix reuse) and ``reuse_prefix=True``, in the order full, reuse, reuse, full (``--order
abba``, the default; ``ab``: once each), so that a machine whose speed drifts during the
run favours neither. Prints the mean wall times, the speed-up, prompt
forward passes per second and the largest difference between the two results.
Every explain setting is the shipped default (``configs.schema.ExplainConfig``: the
α grid, every fourth layer and ℓ*, the causal trace of ``trace_cases`` cases at every
layer) unless an option says otherwise.

    .venv/bin/python bench/explain_speed.py [--config configs/ed_triage_demo.yaml] [--tier high]
        [--run-dir runs/ed_triage_demo] [--max-cases 30] [--trace-cases 4] [--layers default|8,16,24]
        [--alphas default|-4,0,4] [--position-erasure]
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from latent_bias_probe.benchmarks.registry import render_benchmark  # noqa: E402
from latent_bias_probe.configs.schema import ExplainConfig, load_config  # noqa: E402
from latent_bias_probe.extract.backends import make_runner  # noqa: E402
from latent_bias_probe.extract.chat import model_text  # noqa: E402
from latent_bias_probe.extract.hf_runner import score_prompts  # noqa: E402
from latent_bias_probe.extract.model import load_model  # noqa: E402
from latent_bias_probe.probes.causal import default_layers, explain_tier  # noqa: E402
from latent_bias_probe.probes.steering import SteeringVectors  # noqa: E402


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
    ap.add_argument("--run-dir", default=None, help="a fitted run: its value axis, layer and steering vectors")
    ap.add_argument("--value-layer", type=int, default=None, help="without --run-dir; default: n_layers // 2")
    ap.add_argument("--trace-cases", type=int, default=None, help="default: the shipped explain.trace_cases")
    ap.add_argument("--position-erasure", action="store_true")
    ap.add_argument("--backend", default="hf")
    ap.add_argument("--order", choices=["abba", "ab"], default="abba", help="abba: each method twice, interleaved (mean times)")
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")

    shipped = ExplainConfig()
    cfg = load_config(args.config, [f"benchmark.tiers=[{args.tier}]", f"extract.backend={args.backend}"])
    n_cases = args.max_cases or shipped.max_cases
    cfg = replace(cfg, explain=ExplainConfig(
        max_cases=n_cases,
        alphas=shipped.alphas if args.alphas == "default" else [float(a) for a in args.alphas.split(",")],
        position_erasure=args.position_erasure,
        trace_cases=min(n_cases, shipped.trace_cases if args.trace_cases is None else args.trace_cases),
    ))
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
    if args.run_dir:
        from latent_bias_probe.configs.names import PRIMARY_SITE
        from latent_bias_probe.pipeline.explain import _read_fitted

        axis, value_layer, steering = _read_fitted(Path(args.run_dir) / "probes.h5", [args.tier], *PRIMARY_SITE)[args.tier]
    else:
        value_layer = args.value_layer if args.value_layer is not None else loaded.n_layers // 2
        axis = np.random.default_rng(0).normal(size=(loaded.n_layers, loaded.d_model))
        axis /= np.linalg.norm(axis, axis=1, keepdims=True)
        sv = SteeringVectors.fit(h, table["variant"].to_numpy())
        steering = {g: sv.vectors[:, j] for j, g in enumerate(sv.groups)}
    layers = default_layers(loaded.n_layers, value_layer) if args.layers == "default" else [int(x) for x in args.layers.split(",")]
    print(f"{loaded.name}: {loaded.n_layers} layers, {len(keep)} cases x {len(prompts) // max(1, len(keep))} variants = "
          f"{len(prompts)} prompts ({args.tier} tier, {int(np.mean(scored['n_tokens']))} tokens on average); "
          f"value-axis layer {value_layer}, mediation layers {layers}, alphas {cfg.explain.alphas}, "
          f"trace of {cfg.explain.trace_cases} case(s) at every layer; "
          f"one scoring pass {score_s:.1f} s ({len(prompts) / score_s:.2f} prompts/s)")
    from latent_bias_probe.probes import causal as causal

    made = []

    class Counting(causal.Interventions):  # keeps the explain's pass counter
        def __init__(self, *a, **k):
            super().__init__(*a, **k)
            made.append(self)

    causal.Interventions = Counting
    # ABBA: full, reuse, reuse, full (--order ab: one of each): a machine whose speed drifts
    # during the run then favours neither method
    order = (False, True, True, False) if args.order == "abba" else (False, True)
    results, seconds, passes = {}, {False: [], True: []}, {}
    for reuse in order:
        start = time.perf_counter()
        out = explain_tier(runner, loaded.model, table, scored["p_yes"], h, axis, value_layer, steering, cfg, layers,
                           reuse_prefix=reuse)
        seconds[reuse].append(time.perf_counter() - start)
        passes[reuse] = made[-1].passes
        results.setdefault(reuse, []).append(np.array(_flat(out, [])))
        print(f"  {'prefix reuse' if reuse else 'full re-runs'}: {seconds[reuse][-1]:.1f} s", flush=True)
    flat = results[False] + results[True]
    same = all(x.shape == flat[0].shape for x in flat)
    diff = max(float(np.nanmax(np.abs(x - flat[0]))) for x in flat) if same else float("nan")
    full, fast = float(np.mean(seconds[False])), float(np.mean(seconds[True]))
    print(f"full re-runs:  {full:8.1f} s  ({passes[False]} prompt passes, {passes[False] / full:.2f} passes/s)")
    print(f"prefix reuse:  {fast:8.1f} s  ({passes[True]} prompt passes incl. prefix passes, {passes[True] / fast:.2f} passes/s)")
    print(f"speed-up:      {full / fast:8.2f}x   (mean of {len(seconds[True])} run(s) each; largest |difference| between the explain results: {diff:.2g})")


if __name__ == "__main__" and "--components" in sys.argv:
    sys.argv.remove("--components")
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from component_speed import main as component_main

    component_main()
    sys.exit(0)
if __name__ == "__main__":
    main()
