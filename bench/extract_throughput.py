"""Benchmark: extraction throughput (tokens/s) against plain and library baselines.

Renders ED-triage prompts (``benchmarks.registry.render_benchmark`` with the default
benchmark config; the first ``--n-prompts``), turns them into model texts
(``extract.chat.model_text``) for the embedded default model (SmolLM2-135M-Instruct,
``extract.model.load_model(ModelConfig())``), and times, on the *same* left-padded,
length-sorted batches (so every method sees the same tokens and padding):

  (a) hf-full-logits   a plain Hugging Face loop: ``model(**batch)`` with logits at
                       every position (P(Yes) read from the last one), no activations;
  (b) tl-run-with-cache TransformerLens ``bridge.run_with_cache(...)`` without a names
                       filter (every hook point, full sequences, all logits);
  (c) nnsight-save-all nnsight trace saving every layer's full output and the logits;
  (d) extractor[...]   our runner (``extract.backends.make_runner``): P(Yes) and
                       ``resid_post`` at ``last`` for every layer from one forward,
                       written to an HDF5 cache with ``extract.cache.CacheWriter``
                       (creation, every ``write_batch`` and close are timed).

Each method runs on its own copy of the model (TransformerLens and nnsight wrap a
model in place) and gets one untimed warm-up batch. The timed pass is
*interleaved*: each batch runs through every method (in a rotating order) before
the next batch, so load changes on a shared machine hit all methods alike; a
method's time is the sum over its batches (plus, for (d), creating and closing the
cache). With ``--repeats R`` there are R such passes and the fastest counts. tokens/s counts real (unpadded) prompt tokens. The
table also shows each method's largest |P(Yes) - P(Yes) of (a)| as a sanity check.

    python bench/extract_throughput.py                        # 96 prompts, batch 8
    python bench/extract_throughput.py --n-prompts 32 --batch-size 16 --json out.json
    python bench/extract_throughput.py --extractor-backends hf,transformer_lens,nnsight
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

logger = logging.getLogger("bench.extract_throughput")

BASELINES = ("hf-full-logits", "tl-run-with-cache", "nnsight-save-all")


def render_texts(n_prompts: int, tokenizer) -> tuple[list[str], "object"]:
    """The first ``n_prompts`` ED-triage model texts, and the prompts table for the cache."""
    from latent_bias_probe.benchmarks.registry import render_benchmark
    from latent_bias_probe.configs.schema import BenchmarkConfig
    from latent_bias_probe.extract.chat import model_text
    from latent_bias_probe.pipeline.extract import prompt_table

    prompts = render_benchmark(BenchmarkConfig(source="ed_triage")).prompts[:n_prompts]
    texts = [model_text(tokenizer, p) for p in prompts]
    return texts, prompt_table(prompts, texts)


def make_batches(lengths: np.ndarray, batch_size: int) -> list[np.ndarray]:
    """Prompt indices, longest first, cut into batches."""
    order = np.argsort(-lengths, kind="stable")
    return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]


# --------------------------------------------------------------------------- methods
# Each factory does its (untimed) setup and returns a Method: start() before a pass,
# step(idx) per batch (returns P(Yes) of those prompts), finish() after the pass.


class Method:
    def __init__(self, step: Callable, start: Callable | None = None, finish: Callable | None = None):
        self.step = step
        self.start = start or (lambda: None)
        self.finish = finish or (lambda: None)


def hf_full_logits(loaded, texts, yes_no) -> Method:
    import torch

    from latent_bias_probe.extract.hf_runner import HFRunner
    from latent_bias_probe.extract.scoring import p_yes_from_logits

    runner = HFRunner(loaded)  # only for its encode(): the same inputs as every method

    def step(idx):
        with torch.inference_mode():
            batch = runner.encode([texts[i] for i in idx])
            logits = loaded.model(**batch, use_cache=False).logits  # (B, T, V): every position
            return p_yes_from_logits(logits[:, -1, :], *yes_no)[0].cpu().numpy()

    return Method(step)


def tl_run_with_cache(loaded, texts, yes_no) -> Method:
    import torch

    from latent_bias_probe.extract.scoring import p_yes_from_logits
    from latent_bias_probe.extract.tl_runner import TLRunner

    runner = TLRunner(loaded)
    bridge = runner.bridge

    def step(idx):
        with torch.inference_mode():
            batch = runner.encode([texts[i] for i in idx])
            ids = batch.pop("input_ids")
            logits, cache = bridge.run_with_cache(ids, use_cache=False, **batch)
            p = p_yes_from_logits(logits[:, -1, :], *yes_no)[0].cpu().numpy()
            del cache
            return p

    return Method(step)


def nnsight_save_all(loaded, texts, yes_no) -> Method:
    import torch

    from latent_bias_probe.extract.nnsight_runner import NNsightRunner
    from latent_bias_probe.extract.scoring import p_yes_from_logits

    runner = NNsightRunner(loaded)
    nn_model, layers = runner.nn_model, runner._layer_envoys

    def step(idx):
        with torch.inference_mode():
            batch = runner.encode([texts[i] for i in idx])
            saved = []
            with nn_model.trace(**batch, use_cache=False):
                for layer in layers:
                    saved.append(layer.output.save())
                logits = nn_model.output.logits.save()
            p = p_yes_from_logits(logits[:, -1, :], *yes_no)[0].cpu().numpy()
            del saved
            return p

    return Method(step)


def extractor(backend: str, cache_dir: Path, table) -> Callable:
    def factory(loaded, texts, yes_no) -> Method:
        from latent_bias_probe.extract.backends import make_runner
        from latent_bias_probe.extract.cache import CacheSpec, CacheWriter

        runner = make_runner(backend, loaded)
        spec = CacheSpec(
            model=loaded.name,
            model_sha256=loaded.sha256,
            dtype=loaded.dtype,
            backend=backend,
            config_sha256="bench",
            toolkit_version="bench",
            n_layers=loaded.n_layers,
            d_model=loaded.d_model,
            sites=("resid_post",),
            positions=("last",),
            storage_dtype="float32",
        )
        state: dict = {"n": 0}

        def start():
            state["n"] += 1
            state["path"] = cache_dir / f"cache-{backend}-{state['n']}.h5"
            state["writer"] = CacheWriter.create_or_resume(state["path"], spec, table, overwrite=True)

        def step(idx):
            out = runner.forward([texts[i] for i in idx], capture=True)
            state["writer"].write_batch(
                idx,
                p_yes=out.p_yes,
                p_yes_vocab=out.p_yes_vocab,
                first_token=out.first_token,
                n_tokens=out.n_tokens,
                acts={("resid_post", "last"): out.resid_post},
            )
            return out.p_yes

        def finish():
            state.pop("writer").close()
            state.pop("path").unlink(missing_ok=True)

        return Method(step, start, finish)

    return factory


# --------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n-prompts", type=int, default=96)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--dtype", choices=("float32", "bfloat16"), default="float32")
    ap.add_argument("--device", default="cpu", help="cpu, cuda or auto")
    ap.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    ap.add_argument("--repeats", type=int, default=1, help="rounds; the fastest round of each method counts")
    ap.add_argument(
        "--methods",
        default=",".join(BASELINES) + ",extractor",
        help="comma list of " + ", ".join(BASELINES) + ", extractor",
    )
    ap.add_argument(
        "--extractor-backends", default="hf", help="comma list of hf, transformer_lens, nnsight for (d)"
    )
    ap.add_argument("--json", dest="json_out", default=None, help="write the results as JSON here")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    for noisy in ("transformers", "httpx", "h5py"):
        logging.getLogger(noisy).setLevel(logging.WARNING)

    import torch

    from latent_bias_probe.configs.schema import ModelConfig
    from latent_bias_probe.extract.model import load_model

    if args.threads:
        torch.set_num_threads(args.threads)
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    unknown = [m for m in methods if m not in BASELINES + ("extractor",)]
    if unknown:
        ap.error(f"--methods: unknown {unknown}")
    cfg = ModelConfig(dtype=args.dtype)

    first = load_model(cfg, device=args.device)
    texts, table = render_texts(args.n_prompts, first.tokenizer)
    from latent_bias_probe.extract.hf_runner import HFRunner

    probe = HFRunner(first)
    yes_no = (probe.yes_ids, probe.no_ids)
    lengths = probe.token_lengths(texts)
    batches = make_batches(lengths, args.batch_size)
    n_real = int(lengths.sum())
    n_padded = int(sum(len(b) * lengths[b].max() for b in batches))
    logger.info(
        "%d prompts, %d tokens (%d with padding), %d batches of <= %d, dtype %s, device %s, %d torch threads",
        len(texts), n_real, n_padded, len(batches), args.batch_size, args.dtype, first.device, torch.get_num_threads(),
    )

    tmp = Path(tempfile.mkdtemp(prefix="extract-bench-"))
    factories: dict[str, Callable] = {}
    labels = {"hf-full-logits": "(a) hf full logits", "tl-run-with-cache": "(b) TL run_with_cache",
              "nnsight-save-all": "(c) nnsight save all"}
    if "hf-full-logits" in methods:
        factories[labels["hf-full-logits"]] = hf_full_logits
    if "tl-run-with-cache" in methods:
        factories[labels["tl-run-with-cache"]] = tl_run_with_cache
    if "nnsight-save-all" in methods:
        factories[labels["nnsight-save-all"]] = nnsight_save_all
    if "extractor" in methods:
        for backend in [b.strip() for b in args.extractor_backends.split(",") if b.strip()]:
            factories[f"(d) extractor [{backend}]"] = extractor(backend, tmp, table)

    methods_by_name: dict[str, Method] = {}
    for name, factory in factories.items():
        loaded = first if name.startswith("(a)") or name == "(d) extractor [hf]" else load_model(cfg, device=args.device)
        method = factory(loaded, texts, yes_no)
        method.start()
        method.step(batches[0])  # warm-up (first-call costs, lazy wiring), untimed
        method.finish()
        methods_by_name[name] = method

    # Interleaved: every batch runs through every method before the next batch (in a
    # rotating order), so load changes on a shared machine hit all methods alike.
    names = list(methods_by_name)
    seconds: dict[str, list[float]] = {name: [] for name in names}
    p_yes: dict[str, np.ndarray] = {name: np.zeros(len(texts)) for name in names}
    load_before = os.getloadavg()
    for r in range(args.repeats):
        spent = dict.fromkeys(names, 0.0)
        for name in names:
            t0 = time.perf_counter()
            methods_by_name[name].start()
            spent[name] += time.perf_counter() - t0
        for k, idx in enumerate(batches):
            for j in range(len(names)):
                name = names[(k + j) % len(names)]
                t0 = time.perf_counter()
                p_yes[name][idx] = methods_by_name[name].step(idx)
                spent[name] += time.perf_counter() - t0
        for name in names:
            t0 = time.perf_counter()
            methods_by_name[name].finish()
            spent[name] += time.perf_counter() - t0
            seconds[name].append(spent[name])
            logger.info("round %d  %-34s %8.2f s", r + 1, name, spent[name])
    load_after = os.getloadavg()

    ref_name = labels["hf-full-logits"]
    ref_s = min(seconds[ref_name]) if ref_name in seconds else None
    rows = []
    for name in names:
        s = min(seconds[name])
        rows.append(
            {
                "method": name,
                "seconds": s,
                "tokens_per_s": n_real / s,
                "ratio_vs_a": (ref_s / s) if ref_s else None,
                "max_abs_dp_yes_vs_a": float(np.abs(p_yes[name] - p_yes[ref_name]).max()) if ref_s else None,
                "all_seconds": seconds[name],
            }
        )
    header = f"{'method':<30}{'seconds':>10}{'tokens/s':>11}{'vs (a)':>9}{'max|dP| vs (a)':>16}"
    lines = [header, "-" * len(header)]
    for row in rows:
        ratio = f"{row['ratio_vs_a']:.2f}x" if row["ratio_vs_a"] else "-"
        dp = f"{row['max_abs_dp_yes_vs_a']:.1e}" if row["max_abs_dp_yes_vs_a"] is not None else "-"
        lines.append(f"{row['method']:<30}{row['seconds']:>10.2f}{row['tokens_per_s']:>11.0f}{ratio:>9}{dp:>16}")
    lines.append(
        f"{len(texts)} prompts, {n_real} tokens, batch {args.batch_size}, {args.dtype}, {first.device}, "
        f"{torch.get_num_threads()} threads; load average {load_before[0]:.2f} before, {load_after[0]:.2f} after"
    )
    print("\n".join(lines))
    if args.json_out:
        result = {
            "n_prompts": len(texts),
            "n_tokens": n_real,
            "n_tokens_padded": n_padded,
            "batch_size": args.batch_size,
            "dtype": args.dtype,
            "device": first.device,
            "torch_threads": torch.get_num_threads(),
            "repeats": args.repeats,
            "load_average_before": load_before,
            "load_average_after": load_after,
            "rows": rows,
        }
        Path(args.json_out).write_text(json.dumps(result, indent=1), encoding="utf-8")
    try:
        tmp.rmdir()
    except OSError:
        pass
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
