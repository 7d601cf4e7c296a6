"""How far P(Yes) moves when only the batch changes, per precision.

Scores the same ED-triage prompts in batches of --batch-size (the reference) and
again alone, with two torch threads and with one, and prints the largest change
against the reference beside the mean within-case spread of P(Yes) (the SD across a
case's 13 variants, the signal mFARM tests). A change well below that spread is
harmless; one of the same size means group differences drown in round-off. With
float32 among the precisions it then prints each other precision's agreement with
float32 on the same prompts (Pearson r and the largest |difference|).

    .venv/bin/python bench/batch_noise.py [--n-cases 8] [--tier high] [--precisions float32 bfloat16 int8 int8-sdpa]

``int8-sdpa`` is int8 with transformers' padded attention instead of the batch-invariant
one int8 loads with by default: the difference is the round-off int8 amplifies.
``bf16-bi`` is bfloat16 with the batch-invariant attention (bfloat16's float GEMMs may
still depend on the batch's shape).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from latent_bias_probe.benchmarks.registry import render_benchmark  # noqa: E402
from latent_bias_probe.configs.schema import load_config  # noqa: E402
from latent_bias_probe.extract.chat import model_text  # noqa: E402
from latent_bias_probe.extract.hf_runner import HFRunner, score_prompts  # noqa: E402
from latent_bias_probe.extract.model import load_model  # noqa: E402

PRECISIONS = {
    "float32": [],
    "bfloat16": ["model.dtype=bfloat16"],
    "int8": ["model.quantization=int8"],  # loads with attn_implementation batch_invariant (extract.attention)
    "int8-sdpa": ["model.quantization=int8", "model.attn_implementation=sdpa"],  # the attention int8 had before
    "bf16-bi": ["model.dtype=bfloat16", "model.attn_implementation=batch_invariant"],
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--config", default=str(ROOT / "configs" / "ed_triage_demo.yaml"))
    ap.add_argument("--n-cases", type=int, default=8)
    ap.add_argument("--tier", default="high")
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--precisions", nargs="+", default=list(PRECISIONS), choices=list(PRECISIONS))
    args = ap.parse_args()

    base = [f"benchmark.n_cases={args.n_cases}", f"benchmark.tiers=[{args.tier}]"]
    prompts = render_benchmark(load_config(args.config, base).benchmark).prompts
    n_variants = 1 + len(load_config(args.config).benchmark.races) * len(load_config(args.config).benchmark.genders)
    threads = torch.get_num_threads()
    print(f"{len(prompts)} prompts ({args.tier} tier), reference: batches of {args.batch_size}, {threads} threads")
    print(f"{'precision':>9}  {'within-case SD':>14}  {'alone':>9}  {'1 thread':>9}  {'alone, 1 thread':>15}", flush=True)
    refs: dict[str, np.ndarray] = {}
    for name in args.precisions:
        loaded = load_model(load_config(args.config, PRECISIONS[name]).model)
        texts = [model_text(loaded.tokenizer, p) for p in prompts]
        runner = HFRunner(loaded)
        p = {}
        for n_threads in (threads, 1):
            torch.set_num_threads(n_threads)
            for bs in (args.batch_size, 1):
                p[(n_threads, bs)] = score_prompts(runner, texts, batch_size=bs, progress=False)["p_yes"]
        torch.set_num_threads(threads)
        ref = refs[name] = p[(threads, args.batch_size)]
        spread = np.mean([np.std(ref[i : i + n_variants]) for i in range(0, len(ref), n_variants)])

        def worst(key: tuple[int, int]) -> str:
            return f"{np.abs(p[key] - ref).max():.1e}"

        print(f"{name:>9}  {spread:14.4f}  {worst((threads, 1)):>9}  {worst((1, args.batch_size)):>9}  {worst((1, 1)):>15}", flush=True)
    if "float32" in refs:
        print(f"{'precision':>9}  {'r vs float32':>12}  {'max |diff|':>10}  {'mean |diff|':>11}")
        for name, ref in refs.items():
            if name != "float32":
                d = np.abs(ref - refs["float32"])
                r = np.corrcoef(ref, refs["float32"])[0, 1]
                print(f"{name:>9}  {r:12.4f}  {d.max():10.4f}  {d.mean():11.4f}")


if __name__ == "__main__":
    main()
