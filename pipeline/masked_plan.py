"""``probe plan CONFIG`` for a masked-LM audit: its size before it runs.

A masked-LM audit does not render the benchmark's cases: it scores templates x
groups (+ BASE) sentences (:mod:`pipeline.masked`). The plan counts them per
category, tokenises every sentence with the model's tokenizer, counts the forward
passes of one input row each that :class:`extract.masked.MaskedScorer` makes (the
target, the prior, the attribute, its top prediction, the activations, and with
``masked.pll`` one pass per scored token of the pseudo-log-likelihood), the bytes of
the cached activations, and the corpus to be counted; with a warm-up it times the
scorer on a few sentences and estimates the extraction time.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

STORAGE_BYTES = {"float16": 2, "float32": 4}


@dataclass
class MaskedPlan:
    """What :func:`make_masked_plan` counted and estimated."""

    templates_by_category: dict[str, int]
    n_groups: int
    n_sentences: int
    n_tokens: int
    passes: dict[str, int]  # forward passes (one input row each) by purpose
    n_layers: int
    d_model: int
    bytes_by_position: dict[str, int]
    device: str
    corpus: str | None = None
    passes_per_s: float | None = None
    extract_s: float | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def n_templates(self) -> int:
        return sum(self.templates_by_category.values())

    @property
    def n_passes(self) -> int:
        return sum(self.passes.values())


def sentence_passes(encoded: Any, pll: bool) -> dict[str, int]:
    """Forward passes :class:`extract.masked.MaskedScorer` makes for one encoded sentence, by purpose."""
    has_target = bool(encoded.target)
    scored = sum(1 for i, s in enumerate(encoded.special) if not s and i not in encoded.target)
    return {
        "target": int(has_target), "prior": int(has_target), "attribute": 1, "top prediction": 1, "activations": 1,
        "pll": scored if pll and has_target else 0,
    }


def corpus_size(path: str) -> str:
    """``"<path>: N .txt files, X MiB"`` or ``"<path>: X MiB"`` (a CSV file)."""
    p = Path(path)
    if p.is_dir():
        files = [f for f in p.rglob("*.txt") if f.is_file()]
        size = sum(f.stat().st_size for f in files)
        return f"{path}: {len(files)} .txt files, {size / 2**20:.1f} MiB (streamed)"
    return f"{path}: {p.stat().st_size / 2**20:.1f} MiB (streamed)"


def make_masked_plan(cfg: Any, shards: int = 1, limit_cases: int | None = None, warmup: int = 8) -> MaskedPlan:
    """Count (and, with ``warmup`` > 0, time) the masked-LM audit of ``cfg`` on this machine."""
    from latent_bias_probe.extract.masked import MaskedScorer, load_masked_model
    from .masked import audit_rows, masked_options

    mk = masked_options(cfg)
    templates, groups, rows = audit_rows(cfg, limit_cases)
    loaded = load_masked_model(cfg.model)
    scorer = MaskedScorer(loaded, batch_size=max(cfg.extract.batch_size, 1))
    encoded = [scorer.encode(s.text, s.target, s.attribute) for *_, s in rows]
    passes: dict[str, int] = {}
    for e in encoded:
        for key, n in sentence_passes(e, mk.pll).items():
            passes[key] = passes.get(key, 0) + n
    per_act = loaded.n_layers * len(rows) * loaded.d_model * STORAGE_BYTES[cfg.extract.storage_dtype]
    plan = MaskedPlan(
        templates_by_category=templates.counts(), n_groups=len(groups), n_sentences=len(rows),
        n_tokens=sum(len(e.ids) for e in encoded), passes=passes, n_layers=loaded.n_layers, d_model=loaded.d_model,
        bytes_by_position={f"resid_post/{p}": per_act for p in cfg.extract.positions}, device=str(loaded.device),
        corpus=corpus_size(mk.corpus) if mk.corpus else None,
    )
    if shards > 1:
        plan.notes.append(f"--shards {shards}: a masked-LM audit runs unsharded (templates x groups is small)")
    if warmup > 0:
        sample = encoded[: max(1, min(warmup, len(encoded)))]
        positions = tuple(cfg.extract.positions)
        scorer.activations(sample[:1], positions)  # untimed: the first pass pays for allocation
        start = time.perf_counter()
        scorer.score(sample, pll=mk.pll)
        scorer.activations(sample, positions)
        seconds = time.perf_counter() - start
        timed = sum(sum(sentence_passes(e, mk.pll).values()) for e in sample)
        plan.passes_per_s = timed / seconds if seconds > 0 else None
        if plan.passes_per_s:
            plan.extract_s = plan.n_passes / plan.passes_per_s
        plan.notes.append(f"speed from {len(sample)} warm-up sentences ({timed} forward passes) after one untimed pass")
    return plan


def format_masked_plan(plan: MaskedPlan, duration, size) -> list[str]:
    """The lines ``probe plan`` prints for a masked-LM audit (``duration``, ``size``: the plan's formatters)."""
    cats = ", ".join(f"{c} {n}" for c, n in plan.templates_by_category.items())
    lines = [
        f"masked-LM audit: templates {plan.n_templates} ({cats}) x {plan.n_groups} groups + BASE = {plan.n_sentences} sentences, "
        f"tokens {plan.n_tokens:,}; model {plan.n_layers} layers x d_model {plan.d_model} on {plan.device}",
        f"  forward passes: {plan.n_passes:,} (" + ", ".join(f"{k} {n:,}" for k, n in plan.passes.items() if n) + ")",
    ]
    for key, n in plan.bytes_by_position.items():
        lines.append(f"  cache acts/{key}: {size(n)}")
    if plan.corpus:
        lines.append(f"  corpus {plan.corpus}")
    if plan.passes_per_s:
        lines.append(f"speed: {plan.passes_per_s:,.0f} forward passes/s on {plan.device}")
        lines.append(f"estimated extraction: {duration(plan.extract_s)} in one job")
    else:
        lines.append("no speed measured (--warmup 0)")
    lines.extend(f"note: {n}" for n in plan.notes)
    return lines
