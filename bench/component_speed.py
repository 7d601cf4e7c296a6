"""Component attribution of one tier, timed beside activation patching of the same components.

Renders one tier of a config's benchmark (the first --max-cases cases, default the shipped
``explain.max_cases``), scores it once (P(Yes)), and runs
:func:`probes.components.component_tier` with the shipped ``explain.components`` defaults
(unless an option says otherwise): attribution of every attention output, MLP output and
head at every layer and position kind on every traced pair, activation patching of the top
components and a random control on the first ``--verify-cases`` cases, the heads' reading,
and the mean-ablation remedy re-scored against the unedited P(Yes)
(:func:`pipeline.explain.remedy_scores`). Prints:

- the attribution's wall time and its prompt passes (forward per variant, backward per target);
- the verification's wall time per patched forward, and from it the time activation patching
  would take for *every* attributed component on every aligned pair (the cost attribution
  patching replaces), extrapolated at that measured rate;
- the top components per attribute (estimated share with interval, patched share with
  interval, verified), the agreement, the heads' reading and the remedy's paired differences.

    .venv/bin/python bench/component_speed.py [--config configs/ed_triage_demo.yaml] [--tier high]
        [--max-cases 30] [--verify-cases 8] [--top-k 20] [--backend hf] [--device cpu] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from latent_bias_probe.benchmarks.registry import render_benchmark  # noqa: E402
from latent_bias_probe.configs.schema import ComponentsConfig, ExplainConfig, load_config  # noqa: E402
from latent_bias_probe.extract.backends import make_runner  # noqa: E402
from latent_bias_probe.extract.chat import model_text  # noqa: E402
from latent_bias_probe.extract.hf_runner import score_prompts  # noqa: E402
from latent_bias_probe.extract.model import load_model  # noqa: E402
from latent_bias_probe.pipeline.explain import remedy_scores  # noqa: E402
from latent_bias_probe.probes.causal import MemoryStore  # noqa: E402
from latent_bias_probe.probes.components import component_tier  # noqa: E402


class TimedStore(MemoryStore):
    """A store that notes when each unit finished."""

    def __init__(self):
        super().__init__()
        self.when: dict[str, float] = {}

    def put(self, key, value):
        super().put(key, value)
        self.when[key] = time.perf_counter()


def tier_table(cfg, tier: str, loaded):
    """The explained cases' prompts of one tier (the first ``cfg.explain.max_cases``), as the explain stage tables them."""
    import pandas as pd

    prompts = [p for p in render_benchmark(cfg.benchmark).prompts if p.tier == tier]
    keep = set(list(dict.fromkeys(p.case_id for p in prompts))[: cfg.explain.max_cases])
    prompts = [p for p in prompts if p.case_id in keep]
    return pd.DataFrame({"case_id": [p.case_id for p in prompts], "variant": [p.variant for p in prompts],
                         "race": [p.race for p in prompts], "gender": [p.gender for p in prompts],
                         "text": [model_text(loaded.tokenizer, p) for p in prompts],
                         "label": np.array([p.label for p in prompts], dtype=np.int8), "tier": tier})


def _label(c) -> str:
    what = f"head {c['layer']}.{c['head']}" if c["kind"] == "head" else f"{c['kind']} {c['layer']}"
    return f"{what} @ {c['position']}"


def _ci(ci) -> str:
    return "" if not ci or ci[0] is None else f"[{ci[0]:+.3f}, {ci[1]:+.3f}]"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", default=str(ROOT / "configs" / "ed_triage_demo.yaml"))
    ap.add_argument("--tier", default="high")
    ap.add_argument("--max-cases", type=int, default=None, help="default: the shipped explain.max_cases")
    ap.add_argument("--verify-cases", type=int, default=None, help="default: the shipped explain.components.verify_cases")
    ap.add_argument("--top-k", type=int, default=None, help="default: the shipped explain.components.top_k")
    ap.add_argument("--backend", default="hf")
    ap.add_argument("--remedy-method", default=None, choices=["mean", "erase", "both"],
                    help="default: the shipped explain.components.remedy_method; both: each, on the same verification")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    ap.add_argument("--device", default="cpu", help="torch device of the model (cuda on a GPU machine)")
    ap.add_argument("--json", default=None, help="also write the component results here")
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)

    shipped = ExplainConfig()
    max_cases = args.max_cases or shipped.max_cases
    cfg = load_config(args.config, [f"benchmark.tiers=[{args.tier}]", f"extract.backend={args.backend}",
                                    f"benchmark.n_cases={max(max_cases, 2)}"])  # enough cases for the explained ones
    co = replace(
        ComponentsConfig(),
        verify_cases=ComponentsConfig().verify_cases if args.verify_cases is None else args.verify_cases,
        top_k=ComponentsConfig().top_k if args.top_k is None else args.top_k,
    )
    methods = ["mean", "erase"] if args.remedy_method == "both" else [args.remedy_method or co.remedy_method]
    cfg = replace(cfg, explain=ExplainConfig(max_cases=max_cases, components=replace(co, remedy_method=methods[0])))
    loaded = load_model(cfg.model, device=args.device)
    runner = make_runner(cfg.extract.backend, loaded)
    table = tier_table(cfg, args.tier, loaded)
    prompts, keep = table["text"].tolist(), list(dict.fromkeys(table["case_id"]))
    start = time.perf_counter()
    p_yes = score_prompts(runner, prompts, cfg.extract.batch_size, progress=False)["p_yes"]
    score_s = time.perf_counter() - start
    print(f"{loaded.name} ({args.backend}): {loaded.n_layers} layers, {len(keep)} cases x {len(prompts) // max(1, len(keep))} "
          f"variants = {len(prompts)} prompts ({args.tier} tier); one scoring pass {score_s:.1f} s "
          f"({len(prompts) / score_s:.2f} prompts/s)", flush=True)

    store = TimedStore()
    t0 = time.perf_counter()
    out = component_tier(runner, table, list(cfg.benchmark.races), list(cfg.benchmark.genders), cfg, store)
    total = time.perf_counter() - t0

    def last(prefix):
        times = [t for k, t in store.when.items() if k.startswith(prefix)]
        return max(times) if times else None

    t_attr = last("components/attr/") - t0
    t_att = last("components/attention/")
    t_patch = last("components/patch/")
    n_variants = len(prompts) // len(keep)
    heads, layers = out["component_heads"], out["component_layers"]
    n_feats = len(layers) * (2 + heads) * 3
    aligned = sum(1 for k, v in store.items.items() if k.startswith("components/attr/") for e in v.values() if e.get("aligned"))
    print(f"attribution: {t_attr:.1f} s for {len(keep)} cases ({aligned} aligned pairs, {n_feats} components each: "
          f"{len(layers)} layers x (attention, MLP, {heads} heads) x 3 position kinds); "
          f"{len(keep) * n_variants} prompt forwards, backward on the targets")
    if t_patch is not None:
        patched = sum(len(e["patched"]) for k, v in store.items.items() if k.startswith("components/patch/") for e in v.values())
        per = (t_patch - (t_att or t0)) / max(1, patched)
        print(f"verification: {t_patch - (t_att or t0):.1f} s for {patched} patched forwards ({per:.3f} s each) "
              f"on {out['component_cases']['verified']} cases")
        depth = (len(layers) + 1) / (2 * len(layers))  # blocks a patched forward runs, on average over every layer
        full = (score_s / len(prompts)) * depth * n_feats * aligned
        print(f"activation patching every attributed component on every aligned pair: {n_feats} x {aligned} = "
              f"{n_feats * aligned:,} patched forwards, about {full / 3600:.1f} h at the scoring pass's rate per prompt "
              f"x {depth:.2f} of the blocks ({full / max(t_attr, 1e-9):.0f}x the attribution)")
    print(f"component stage in all: {total:.1f} s")
    agree = out["component_agreement"]
    print(f"agreement (estimate vs patching, verified cases): Spearman {agree.get('spearman')}, "
          f"top-{agree.get('k')} overlap {agree.get('top_k_overlap')}; by attribute {agree.get('by_attribute')}")
    for attribute in ("race", "gender"):
        pooled = [c for c in out["components"] if c["attribute"] == attribute and c["pair"] == "all" and c["share"] is not None]
        pooled.sort(key=lambda c: -abs(c["share"]))
        print(f"top {attribute} components (share of the gap, {cfg.scoring.ci_level:.0%} interval; patched share):")
        for c in pooled[:10]:
            patched = "" if c["patched_share"] is None else f"  patched {c['patched_share']:+.3f} {_ci(c.get('patched_ci'))}"
            print(f"  {_label(c):28s} {c['share']:+.3f} {_ci(c['ci'])}{patched}{'  VERIFIED' if c['verified'] else ''}")
    for h in out.get("component_attention") or []:
        print(f"head {h['layer']}.{h['head']} ({h['attribute']}): attention from the decision on the demographic words "
              f"{h['attention_demographic']:.3f} {_ci(h['ci'])}")
    t_remedy = last("components/remedy/")
    if t_remedy is not None:
        print(f"remedy ({methods[0]}): {t_remedy - (t_patch or t0):.1f} s")
    outs = {methods[0]: out}
    for method in methods[1:]:  # the same attribution and patching; only the remedy runs again
        again = TimedStore()
        again.items = {k: v for k, v in store.items.items() if not k.startswith("components/remedy/")}
        other = replace(cfg, explain=replace(cfg.explain, components=replace(cfg.explain.components, remedy_method=method)))
        t1 = time.perf_counter()
        outs[method] = component_tier(runner, table, list(cfg.benchmark.races), list(cfg.benchmark.genders), other, again)
        print(f"remedy ({method}): {time.perf_counter() - t1:.1f} s")
    for method, result in outs.items():
        remedy = result.get("remedy")
        if not remedy:
            print(f"remedy ({method}): no verified component carries the gap")
            continue
        p_after = np.asarray(remedy.pop("p_yes"))
        remedy["diff"] = remedy_scores(table, p_yes, p_after, cfg.scoring)
        print(f"remedy ({remedy['method']}: {', '.join(_label(c) for c in remedy['components'])}) on {remedy['n_cases']} cases:")
        for k, v in remedy["diff"].items():
            if v.get("value") is None:
                continue
            print(f"  {k:24s} {v['before']:+.4f} -> {v['after']:+.4f}  diff {v['value']:+.4f} {_ci(v['ci'])}")
    out["remedies"] = {m: r.get("remedy") for m, r in outs.items()}
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1, allow_nan=True) + "\n")


if __name__ == "__main__":
    main()
