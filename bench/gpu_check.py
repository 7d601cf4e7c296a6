"""GPU check: CUDA against CPU P(Yes), reduced-precision batch noise, extraction throughput.

Run on a CUDA machine (``python bench/gpu_check.py --prompts 256``); prints one table:

1. P(Yes) parity: the same prompts through the same model in float32 on ``cuda``
   and on ``cpu`` (max |ΔP(Yes)|, target < 1e-4).
2. Batch noise at float16 and bfloat16 on the GPU: each sampled prompt alone
   against its batch of ``--batch-size`` (max / mean |ΔP(Yes)|).
3. Throughput (tokens/s, one run, methods interleaved per batch so that load changes
   hit all alike): our extractor (hf backend, activations of every layer at the last
   position), a plain Hugging Face loop computing full logits, and TransformerLens
   ``run_with_cache`` caching every ``hook_resid_post``.
4. Component attribution on the GPU (``--component-cases``, default 4; 0 skips it): the
   explain stage's attribution, verification of the top 5 components and 2 random controls
   on 1 case, and the remedy, on ``cuda`` and on ``cpu`` in float32: the wall time of each
   and the largest difference of the estimated and the patched shares (target < 1e-3).

Default model: the embedded SmolLM2-135M-Instruct (``--model`` for a local folder).
Exits 2 with a message when CUDA is not available.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def _prompts(n: int, model_name: str):
    from latent_bias_probe.benchmarks.registry import render_benchmark
    from latent_bias_probe.configs.schema import BenchmarkConfig, Config, ModelConfig
    from latent_bias_probe.extract.model import load_model

    cfg = Config(model=ModelConfig(name=model_name), benchmark=BenchmarkConfig(n_cases=max(1, n // 39 + 1)))
    rendered = render_benchmark(cfg.benchmark)
    return cfg, rendered.prompts[:n], load_model


def _p_yes(cfg, prompts, device: str, dtype: str, batch_size: int) -> tuple[np.ndarray, list[str]]:
    from latent_bias_probe.extract.chat import model_text
    from latent_bias_probe.extract.hf_runner import HFRunner
    from latent_bias_probe.extract.model import load_model

    loaded = load_model(replace(cfg.model, dtype=dtype), device=device)
    texts = [model_text(loaded.tokenizer, p) for p in prompts]
    runner = HFRunner(loaded)
    out = np.empty(len(texts))
    for start in range(0, len(texts), batch_size):
        out[start : start + batch_size] = runner.forward(texts[start : start + batch_size]).p_yes
    return out, texts, runner


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--prompts", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--noise-sample", type=int, default=64)
    parser.add_argument("--component-cases", type=int, default=4)
    args = parser.parse_args(argv)

    import torch

    if not torch.cuda.is_available():
        print("gpu_check: CUDA is not available on this machine", file=sys.stderr)
        return 2
    cfg, prompts, _ = _prompts(args.prompts, args.model)
    print(f"GPU: {torch.cuda.get_device_name(0)}, torch {torch.__version__}, CUDA {torch.version.cuda}; {len(prompts)} prompts")

    cuda32, texts, _ = _p_yes(cfg, prompts, "cuda", "float32", args.batch_size)
    cpu32, _, _ = _p_yes(cfg, prompts, "cpu", "float32", args.batch_size)
    print(f"| float32 cuda vs cpu | max |dP(Yes)| {np.abs(cuda32 - cpu32).max():.2e} | mean {np.abs(cuda32 - cpu32).mean():.2e} |")

    for dtype in ("float16", "bfloat16"):
        batched, texts, runner = _p_yes(cfg, prompts, "cuda", dtype, args.batch_size)
        idx = np.linspace(0, len(texts) - 1, min(args.noise_sample, len(texts))).astype(int)
        alone = np.array([runner.forward([texts[i]]).p_yes[0] for i in idx])
        d = np.abs(alone - batched[idx])
        print(f"| {dtype} batch noise (alone vs batch {args.batch_size}) | max {d.max():.3g} | mean {d.mean():.3g} |")

    from latent_bias_probe.extract.hf_runner import HFRunner
    from latent_bias_probe.extract.model import load_model

    loaded = load_model(replace(cfg.model, dtype="float32"), device="cuda")
    runner = HFRunner(loaded)
    from latent_bias_probe.extract.tl_runner import TLRunner

    tl = TLRunner(loaded)
    hooks = [f"blocks.{i}.hook_resid_post" for i in range(loaded.n_layers)]
    times = {"ours": 0.0, "hf_full_logits": 0.0, "tl_run_with_cache": 0.0}
    tokens = 0
    for start in range(0, len(texts), args.batch_size):
        chunk = texts[start : start + args.batch_size]
        enc = runner.encode(chunk)
        tokens += int(enc["attention_mask"].sum())
        for name in times:
            torch.cuda.synchronize()
            t0 = time.perf_counter()
            with torch.no_grad():
                if name == "ours":
                    runner.forward(chunk, capture=True, sites=("resid_post",), positions=("last",))
                elif name == "hf_full_logits":
                    loaded.model(**{k: v.to("cuda") for k, v in enc.items()})
                else:
                    batch = tl.encode(chunk)
                    ids = batch.pop("input_ids")
                    _, cache = tl.bridge.run_with_cache(ids, use_cache=False, names_filter=lambda n: n in hooks, **batch)
                    del cache
            torch.cuda.synchronize()
            times[name] += time.perf_counter() - t0
    for name, seconds in times.items():
        print(f"| throughput {name} | {tokens / seconds:,.0f} tokens/s | {times['tl_run_with_cache'] / seconds:.2f}x TransformerLens |")
    if args.component_cases:
        for line in component_check(args.model, args.component_cases, ("cuda", "cpu")):
            print(line)
    return 0


def component_check(model_name: str, n_cases: int, devices: tuple[str, str]) -> list[str]:
    """Component attribution, verification and remedy of ``n_cases`` high-tier cases on two devices: times and differences."""
    from latent_bias_probe.configs.schema import BenchmarkConfig, ComponentsConfig, Config, ExplainConfig, ModelConfig
    from latent_bias_probe.extract.backends import make_runner
    from latent_bias_probe.extract.model import load_model
    from latent_bias_probe.probes.causal import MemoryStore
    from latent_bias_probe.probes.components import component_tier

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from component_speed import tier_table

    components = ComponentsConfig(top_k=5, random=2, saturated_max=2, verify_cases=1)
    cfg = Config(model=ModelConfig(name=model_name, dtype="float32"), benchmark=BenchmarkConfig(n_cases=max(2, n_cases), tiers=["high"]),
                 explain=ExplainConfig(max_cases=max(2, n_cases), components=components))
    results, seconds = {}, {}
    for device in devices:
        loaded = load_model(cfg.model, device=device)
        runner = make_runner("hf", loaded)
        table = tier_table(cfg, "high", loaded)
        start = time.perf_counter()
        results[device] = component_tier(runner, table, list(cfg.benchmark.races), list(cfg.benchmark.genders), cfg, MemoryStore())
        seconds[device] = time.perf_counter() - start
    a, b = (results[d] for d in devices)

    def shares(out, key):
        return {(c["layer"], c["kind"], c["head"], c["position"], c["attribute"], c["pair"]): c[key]
                for c in out["components"] if c.get(key) is not None}

    lines = [f"| components, {n_cases} cases: {d} | {seconds[d]:.1f} s |" for d in devices]
    for key in ("share", "patched_share"):
        x, y = shares(a, key), shares(b, key)
        common = sorted(set(x) & set(y))
        gap = max((abs(x[k] - y[k]) for k in common), default=float("nan"))
        lines.append(f"| components {key}, {devices[0]} vs {devices[1]} | max |diff| {gap:.2e} over {len(common)} "
                     f"(only on one: {len(set(x) ^ set(y))}) |")
    ra, rb = a.get("remedy"), b.get("remedy")
    if ra and rb:
        d = np.abs(np.asarray(ra["p_yes"]) - np.asarray(rb["p_yes"])).max()
        lines.append(f"| remedy P(Yes), {devices[0]} vs {devices[1]} | max |diff| {d:.2e} |")
    return lines


if __name__ == "__main__":
    raise SystemExit(main())
