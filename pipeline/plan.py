"""``probe plan CONFIG``: the size of a job before it is submitted.

Renders the benchmark, tokenises every prompt and counts, per tier and in all:
prompts, tokens, the activation bytes ``cache.h5`` will hold per site/position at
the storage dtype, and the prompts of each shard. With a warm-up it times a few
real batches on the configured device and estimates the extraction time (tokens /
measured tokens per second, plus the batch check: ``extract.batch_check`` prompts re-run
alone, timed from one of them) and the explain stage's forward passes and time, so a
user can size a job and a Slurm time limit. A masked-LM audit (``model.kind: masked``
or a ``*ForMaskedLM`` folder) is sized by :mod:`pipeline.masked_plan` instead.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from .masked_plan import MaskedPlan, format_masked_plan, make_masked_plan

log = logging.getLogger(__name__)

STORAGE_BYTES = {"float16": 2, "float32": 4}


@dataclass
class Plan:
    """What :func:`make_plan` measured and estimated."""

    n_cases: int
    prompts_by_tier: dict[str, int]
    tokens_by_tier: dict[str, int]
    n_layers: int
    d_model: int
    bytes_by_site: dict[str, int]
    shard_prompts: list[int]
    device: str
    tokens_per_s: float | None = None
    extract_s: float | None = None  # the batches and the batch check
    batch_check_prompts: int = 0
    batch_check_s: float | None = None  # its prompts re-run alone (part of extract_s)
    explain_passes: int = 0
    explain_blocks: float = 1.0  # decoder-block evaluations per pass and layer (below 1 with prefix reuse)
    explain_s: float | None = None
    notes: list[str] = field(default_factory=list)
    few_shot: int = 0  # solved examples before each prompt (benchmark.few_shot)
    few_shot_tokens_by_tier: dict[str, int] = field(default_factory=dict)  # their share of tokens_by_tier

    @property
    def n_prompts(self) -> int:
        return sum(self.prompts_by_tier.values())

    @property
    def n_tokens(self) -> int:
        return sum(self.tokens_by_tier.values())


def explain_passes(cfg: Any, n_layers: int, value_layer: int | None = None) -> int:
    """Prompt forward passes of the explain stage at the config's settings (per the code in probes.causal)."""
    return explain_cost(cfg, n_layers, value_layer)[0]


def explain_cost(cfg: Any, n_layers: int, value_layer: int | None = None, kept: float = 1.0) -> tuple[int, float]:
    """``(prompt forward passes, decoder-block evaluations / (passes × n_layers))`` of the explain stage.

    Passes count every intervention as a forward of one prompt (the dose–response, the
    LEACE fitting pass, the pooled, random-control and per-position erasures, the
    causal trace's captures and patches). The block fraction is 1 for full re-runs and
    below 1 with ``explain.reuse_prefix``: an intervention at layer ℓ then runs blocks
    ℓ+1..L−1 only, after one prefix pass per batch (:mod:`extract.prefix`); the
    mediation's erased runs continue from its fitting pass for the fraction ``kept`` of
    the prompts whose prefixes fit ``explain.prefix_memory_gb`` (the rest re-run theirs).
    """
    from latent_bias_probe.probes.causal import default_layers
    from latent_bias_probe.probes.trace import TRACE_KINDS

    ec, L = cfg.explain, n_layers
    k = len(cfg.benchmark.races) * len(cfg.benchmark.genders) + 1
    cases = ec.max_cases or cfg.benchmark.n_cases or 30
    vl = value_layer if value_layer is not None else L // 2
    layers = sorted(set(ec.layers or default_layers(L, vl)))
    steered = sum(1 for a in ec.alphas if a != 0)
    erasures = 2 + (4 if ec.position_erasure else 0)
    nr, ng = len(cfg.benchmark.races), len(cfg.benchmark.genders)
    pairs = ((nr - 1) * ng + nr * (ng - 1)) * min(ec.trace_cases, cases)
    tl = sorted(set(ec.trace_layers if ec.trace_layers is not None else range(L)))
    passes = {
        "dose": k * steered * cases,  # value axis + every group direction, BASE prompts
        "fit": k * cases,  # one capture of every prompt up to the deepest mediation layer
        "mediation": erasures * len(layers) * k * cases,
        "trace": pairs * (2 + len(TRACE_KINDS) * len(tl)),
    }
    passes["components"] = component_passes(cfg, cases)
    full = sum(passes.values()) * L
    if not ec.reuse_prefix:
        blocks = full
    else:
        top = max(layers) + 1
        blocks = (cases * (vl + 1) + passes["dose"] * (L - vl - 1)
                  + passes["fit"] * top + (1 - min(1.0, max(0.0, kept))) * k * cases * top
                  + erasures * k * cases * sum(L - x - 1 for x in layers)
                  + pairs * (2 * L + len(TRACE_KINDS) * sum(L - x - 1 for x in tl))
                  + passes["components"] * L)  # the component passes run the whole model
    n = sum(passes.values()) * len(ec.tiers or cfg.benchmark.tiers[:1])
    return n, (blocks / full if full else 1.0)


def component_passes(cfg: Any, cases: int) -> int:
    """Prompt passes of the component stage of one tier (:mod:`probes.components`), the patching at its most.

    Attribution: a forward per demographic variant, and a backward (counted as two passes)
    per target; verification: the attention pass of the verified cases' demographic prompts,
    and per aligned pair a source capture, the target and one patched target per component
    (``top_k + random + saturated_max`` at most); remedy: the BASE means and every prompt.
    """
    co = cfg.explain.components
    if not co.enabled:
        return 0
    nr, ng = len(cfg.benchmark.races), len(cfg.benchmark.genders)
    demo, targets, pairs = nr * ng, nr + ng - 1, (nr - 1) * ng + nr * (ng - 1)
    attributed = min(co.cases or cases, cases)
    verified = min(co.verify_cases, attributed)
    n = attributed * (demo + 2 * targets)
    if verified:
        n += verified * (demo + pairs * (2 + co.top_k + co.random + co.saturated_max))
        n += cases * (demo + 2) if co.remedy else 0
    return n


def kept_fraction(cfg: Any, n_layers: int, d_model: int, mean_tokens: float) -> float:
    """The share of a tier's mediation prefixes that fit ``explain.prefix_memory_gb`` (every position, every mediation layer)."""
    from latent_bias_probe.probes.causal import default_layers

    ec = cfg.explain
    k = len(cfg.benchmark.races) * len(cfg.benchmark.genders) + 1
    cases = ec.max_cases or cfg.benchmark.n_cases or 30
    n_med = len(set(ec.layers or default_layers(n_layers, n_layers // 2)))
    per_prompt = mean_tokens * d_model * n_med * (2 if cfg.model.dtype in ("bfloat16", "float16") else 4)
    total = k * cases * per_prompt
    return 1.0 if total <= 0 else min(1.0, ec.prefix_memory_gb * 2**30 / total)


def make_plan(cfg: Any, shards: int = 1, limit_cases: int | None = None, warmup: int = 8) -> Plan | MaskedPlan:
    """Count (and, with ``warmup`` > 0, time) the job of ``cfg`` on this machine.

    A masked LM gets the masked-LM audit's plan (:mod:`pipeline.masked_plan`); a causal
    model with a ``masked:`` section gets a warning that the section is ignored.
    """
    from latent_bias_probe.extract.masked import model_kind
    from .extract import warn_masked_section_ignored

    if model_kind(cfg.model) == "masked":
        return make_masked_plan(cfg, shards, limit_cases, warmup)
    warn_masked_section_ignored(cfg)
    return _make_causal_plan(cfg, shards, limit_cases, warmup)


def _make_causal_plan(cfg: Any, shards: int, limit_cases: int | None, warmup: int) -> Plan:
    from latent_bias_probe.benchmarks.registry import render_benchmark
    from latent_bias_probe.extract.backends import make_runner
    from latent_bias_probe.extract.batch_check import sample_indices
    from latent_bias_probe.extract.batching import case_groups, plan_batches, shard_cases
    from latent_bias_probe.extract.chat import model_text
    from latent_bias_probe.extract.model import load_model
    from .extract import prompts_per_case_tier

    rendered = render_benchmark(cfg.benchmark, limit_cases=limit_cases)
    cases = list(dict.fromkeys(p.case_id for p in rendered.prompts))[: limit_cases or None]
    keep = set(cases)
    prompts = [p for p in rendered.prompts if p.case_id in keep]
    loaded = load_model(cfg.model)
    framing, cue = cfg.model.framing, cfg.model.answer_cue
    texts = [model_text(loaded.tokenizer, p, framing, cue) for p in prompts]
    runner = make_runner(cfg.extract.backend, loaded)
    lengths = np.asarray(runner.token_lengths(texts))
    tiers = [p.tier for p in prompts]
    prompts_by_tier = {t: tiers.count(t) for t in dict.fromkeys(tiers)}
    tokens_by_tier = {t: int(lengths[[x == t for x in tiers]].sum()) for t in prompts_by_tier}
    shot_tokens: dict[str, int] = {}
    if cfg.benchmark.few_shot:  # the examples' tokens: each text against the same prompt without them
        bare = np.asarray(runner.token_lengths([model_text(loaded.tokenizer, replace(p, shots=()), framing, cue) for p in prompts]))
        shot_tokens = {t: int((lengths - bare)[[x == t for x in tiers]].sum()) for t in prompts_by_tier}
    per_act = loaded.n_layers * len(prompts) * loaded.d_model * STORAGE_BYTES[cfg.extract.storage_dtype]
    bytes_by_site = {f"{s}/{pos}": per_act for s in cfg.extract.sites for pos in cfg.extract.positions}
    k = prompts_per_case_tier(cfg)
    groups = case_groups(cases, cfg.extract.batch_size, k)
    shard_prompts = []
    for i in range(1, shards + 1):
        mine = shard_cases(groups, i, shards)
        shard_prompts.append(sum(1 for p in prompts if p.case_id in mine))
    plan = Plan(
        n_cases=len(cases), prompts_by_tier=prompts_by_tier, tokens_by_tier=tokens_by_tier,
        n_layers=loaded.n_layers, d_model=loaded.d_model, bytes_by_site=bytes_by_site,
        shard_prompts=shard_prompts, device=str(getattr(loaded, "device", "cpu")),
        few_shot=int(cfg.benchmark.few_shot), few_shot_tokens_by_tier=shot_tokens,
    )
    mean_tokens = float(lengths.mean()) if len(lengths) else 0.0
    kept = kept_fraction(cfg, loaded.n_layers, loaded.d_model, mean_tokens)
    plan.explain_passes, plan.explain_blocks = explain_cost(cfg, loaded.n_layers, kept=kept)
    if warmup > 0:
        batches = plan_batches([p.case_id for p in prompts], tiers, cfg.extract.batch_size, k)
        runner.forward([texts[i] for i in batches[0]], capture=True, sites=tuple(cfg.extract.sites), positions=("last",))
        timed, tokens, start = 0, 0, time.perf_counter()
        for b in batches:
            if timed >= warmup:
                break
            runner.forward([texts[i] for i in b], capture=True, sites=tuple(cfg.extract.sites), positions=("last",))
            timed += len(b)
            tokens += int(lengths[b].sum())
        seconds = time.perf_counter() - start
        plan.tokens_per_s = tokens / seconds if seconds > 0 else None
        check = sample_indices(lengths, cfg.extract.batch_check) if cfg.extract.batch_check else np.zeros(0, int)
        plan.batch_check_prompts = int(check.size)
        if check.size:  # one prompt alone, timed, stands for the sample's alone speed
            one = int(check[len(check) // 2])
            start = time.perf_counter()
            runner.forward([texts[one]])
            alone_s_per_token = (time.perf_counter() - start) / max(1, int(lengths[one]))
            plan.batch_check_s = alone_s_per_token * float(lengths[check].sum())
        if plan.tokens_per_s:
            plan.extract_s = plan.n_tokens / plan.tokens_per_s + (plan.batch_check_s or 0.0)
            plan.explain_s = plan.explain_passes * plan.explain_blocks * mean_tokens / plan.tokens_per_s
        plan.notes.append(f"speed from {timed} warm-up prompts ({tokens} tokens) after one untimed batch")
    return plan


def _bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{int(n)} B"
        n /= 1024
    return f"{n:.1f} TiB"  # pragma: no cover


def _duration(s: float | None) -> str:
    if s is None:
        return "-"
    m, sec = divmod(int(round(s)), 60)
    h, m = divmod(m, 60)
    return f"{h} h {m:02d} min" if h else f"{m} min {sec:02d} s"


def format_plan(plan: Plan | MaskedPlan) -> list[str]:
    """The lines ``probe plan`` prints."""
    if isinstance(plan, MaskedPlan):
        return format_masked_plan(plan, _duration, _bytes)
    lines = [f"cases {plan.n_cases}, prompts {plan.n_prompts}, tokens {plan.n_tokens:,}; model {plan.n_layers} layers x d_model {plan.d_model} on {plan.device}"]
    for tier, n in plan.prompts_by_tier.items():
        shots = plan.few_shot_tokens_by_tier.get(tier)
        lines.append(f"  tier {tier}: {n} prompts, {plan.tokens_by_tier[tier]:,} tokens"
                     + (f" ({shots:,} of them in the {plan.few_shot} few-shot example{'s' if plan.few_shot != 1 else ''})" if shots is not None else ""))
    total = sum(plan.bytes_by_site.values())
    for key, n in plan.bytes_by_site.items():
        lines.append(f"  cache acts/{key}: {_bytes(n)}")
    lines.append(f"  cache activations in all: {_bytes(total)}")
    if len(plan.shard_prompts) > 1:
        lines.append(f"  shards: {len(plan.shard_prompts)}, prompts per shard {min(plan.shard_prompts)}..{max(plan.shard_prompts)}")
    if plan.tokens_per_s:
        lines.append(f"speed: {plan.tokens_per_s:,.0f} tokens/s on {plan.device}")
        per_shard = plan.extract_s * max(plan.shard_prompts) / max(1, plan.n_prompts) if plan.extract_s else None
        check = (f" (of which {_duration(plan.batch_check_s)} for the batch check: {plan.batch_check_prompts} prompts re-run alone)"
                 if plan.batch_check_s else "")
        lines.append(f"estimated extraction: {_duration(plan.extract_s)} in one job{check}" + (
            f", {_duration(per_shard)} for the largest of {len(plan.shard_prompts)} shards" if len(plan.shard_prompts) > 1 else ""))
        lines.append(f"estimated explain: {plan.explain_passes:,} prompt forward passes, {_duration(plan.explain_s)}"
                     + (f" (prefix reuse: {plan.explain_blocks:.0%} of their decoder blocks run)" if plan.explain_blocks < 1 else ""))
    else:
        lines.append(f"explain: {plan.explain_passes:,} prompt forward passes (no speed measured: --warmup 0)")
    lines.extend(f"note: {n}" for n in plan.notes)
    return lines
