"""The extract stage: render the benchmark, run the model, stream outputs and
activations into ``DIR/cache.h5``, then write ``DIR/predictions.csv`` and
``DIR/batch_check.json`` (the P(Yes) of a sample of prompts re-run alone against
their batched values: :mod:`extract.batch_check`).

Re-running on the same directory resumes from the cache's ``done`` mask; a cache
made from another model, benchmark or extraction setting is refused unless
``overwrite`` is set.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import numpy as np
import pandas as pd

from configs.errors import InputError
from configs.schema import Config
from configs.version import TOOLKIT_VERSION
from extract.files import atomic_path

if TYPE_CHECKING:
    from benchmarks.types import Prompt

log = logging.getLogger(__name__)

PREDICTION_COLUMNS = ["case_id", "tier", "variant", "race", "gender", "label", "p_yes", "p_yes_vocab", "first_token"]


@dataclass(frozen=True)
class Shard:
    """Process every ``count``-th case starting at case number ``index`` (1-based K of K/N)."""

    index: int
    count: int

    @classmethod
    def parse(cls, text: str) -> "Shard":
        """Parse ``K/N`` (1 ≤ K ≤ N)."""
        try:
            k, n = (int(x) for x in text.split("/"))
        except ValueError:
            raise InputError(f"--shard {text!r}: expected K/N, e.g. 1/4") from None
        if not 1 <= k <= n:
            raise InputError(f"--shard {text!r}: need 1 <= K <= N")
        return cls(k, n)


@dataclass(frozen=True)
class ExtractResult:
    """What the extract stage produced."""

    cache_path: Path
    predictions_path: Path
    n_prompts: int
    n_computed: int
    seconds: float


def cache_identity(cfg: Config) -> str:
    """SHA-256 over the config sections that determine the cache's contents.

    Batch size, thread count and the batch check are left out on purpose: in float32
    results do not depend on them beyond round-off (at reduced precision they can,
    and ``batch_check.json`` says by how much). So are ``--limit-cases`` and
    ``--shard``: they select prompts, which the cache compares one by one, and shards
    of one job must share an identity to be merged.
    """
    ident = {
        "model": cfg.model.__dict__ | {"cache_dir": None},
        "benchmark": cfg.benchmark.__dict__,
        "extract": {k: v for k, v in cfg.extract.__dict__.items() if k not in ("batch_size", "threads", "batch_check")},
    }
    blob = json.dumps(ident, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()


def prompt_table(prompts: Sequence[Prompt], texts: Sequence[str]) -> pd.DataFrame:
    """The cache's prompt columns: ``case_id, tier, variant, race, gender, label`` (-1: unknown), ``text``."""
    return pd.DataFrame(
        {
            "case_id": [p.case_id for p in prompts],
            "tier": [p.tier for p in prompts],
            "variant": [p.variant for p in prompts],
            "race": [p.race for p in prompts],
            "gender": [p.gender for p in prompts],
            "label": [(-1 if p.label is None else int(p.label)) for p in prompts],
            "text": list(texts),
        }
    )


def select_cases(case_ids: list[str], limit_cases: int | None, shard: Shard | None) -> set[str]:
    """The cases to run: the first ``limit_cases`` in benchmark order, then every N-th for a shard."""
    ordered = list(dict.fromkeys(case_ids))
    if limit_cases is not None:
        ordered = ordered[:limit_cases]
    if shard is not None:
        ordered = ordered[shard.index - 1 :: shard.count]
    return set(ordered)


def run_extract(
    cfg: Config,
    out_dir: str | Path,
    limit_cases: int | None = None,
    shard: Shard | None = None,
    overwrite: bool = False,
    progress: bool = True,
) -> ExtractResult:
    """Run the extract stage into ``out_dir`` (see the module docstring)."""
    from benchmarks.registry import render_benchmark
    from extract.backends import make_runner
    from extract.cache import CacheSpec, CacheWriter
    from extract.chat import char_spans_to_token_positions, find_user_offset, model_text
    from extract.model import load_model

    start = time.perf_counter()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    if limit_cases is not None and limit_cases < 1:
        raise InputError(f"--limit-cases: must be >= 1, got {limit_cases}")

    rendered = render_benchmark(cfg.benchmark)
    keep = select_cases([p.case_id for p in rendered.prompts], limit_cases, shard)
    indexed = [(i, p) for i, p in enumerate(rendered.prompts) if p.case_id in keep]
    if not indexed:
        raise InputError("benchmark: no prompts to run (check benchmark.n_cases, --limit-cases and --shard)")
    prompts = [p for _, p in indexed]
    log.info("benchmark %s: %d cases, %d prompts", cfg.benchmark.source, len(keep), len(prompts))

    loaded = load_model(cfg.model)
    texts = [model_text(loaded.tokenizer, p) for p in prompts]
    positions = tuple(cfg.extract.positions)
    demographic = None
    if "demographic" in positions:
        demographic = [
            char_spans_to_token_positions(loaded.tokenizer, t, find_user_offset(loaded.tokenizer, p, t), p.demographic_spans)
            for p, t in zip(prompts, texts)
        ]
    table = prompt_table(prompts, texts)
    table["prompt_index"] = [i for i, _ in indexed]
    spec = CacheSpec(
        model=loaded.name,
        model_sha256=loaded.sha256,
        dtype=loaded.dtype,
        backend=cfg.extract.backend,
        config_sha256=cache_identity(cfg),
        toolkit_version=TOOLKIT_VERSION,
        n_layers=loaded.n_layers,
        d_model=loaded.d_model,
        sites=tuple(cfg.extract.sites),
        positions=positions,
        storage_dtype=cfg.extract.storage_dtype,
    )
    cache_path = out_dir / "cache.h5"
    runner = make_runner(cfg.extract.backend, loaded)
    extra = {"render_report": json.dumps(rendered.report())}
    if shard is not None:
        extra["shard"] = f"{shard.index}/{shard.count}"
    with CacheWriter.create_or_resume(cache_path, spec, table, overwrite=overwrite, extra_attrs=extra) as writer:
        todo = writer.todo()
        if len(todo) < len(prompts):
            log.info("resuming: %d of %d prompts already in %s", len(prompts) - len(todo), len(prompts), cache_path)
        _run_batches(runner, writer, texts, todo, cfg.extract.batch_size, spec, demographic, progress)
    predictions_path = write_predictions(cache_path, out_dir / "predictions.csv")
    _check_batches(runner, texts, cache_path, out_dir, cfg.extract.batch_size, cfg.extract.batch_check)
    return ExtractResult(cache_path, predictions_path, len(prompts), len(todo), time.perf_counter() - start)


def _check_batches(runner, texts, cache_path: Path, out_dir: Path, batch_size: int, n: int) -> None:
    """Re-run ``n`` prompts alone and record how far their P(Yes) is from the batched one."""
    from extract.batch_check import check_batch_invariance, write_check
    from extract.cache import Cache

    if n == 0 or batch_size == 1:  # nothing to compare: every prompt already ran alone
        write_check(out_dir, None)
        return
    with Cache(cache_path) as cache:
        batched = cache.outputs["p_yes"].to_numpy()
    check = check_batch_invariance(runner, texts, batched, batch_size, n)
    write_check(out_dir, check)
    say = log.info if check.within_tolerance else log.warning
    say(
        "batch check: P(Yes) of %d prompts run alone vs in batches of %d: max |diff| %.2g, mean %.2g%s",
        len(check.indices), batch_size, check.max_abs_diff, check.mean_abs_diff,
        "" if check.within_tolerance else " (numerical noise of this precision: smaller group shifts are not meaningful)",
    )


def _run_batches(runner, writer, texts, todo, batch_size, spec, demographic, progress) -> None:
    """Forward the unfinished prompts longest first, writing each batch as it completes.

    ``demographic`` holds, per prompt, the token positions of its race and gender
    words (``None`` unless the ``demographic`` position is cached).
    """
    from tqdm.auto import tqdm

    if len(todo) == 0:
        return
    lengths = np.array([runner.n_tokens(texts[i]) for i in todo])
    order = todo[np.argsort(-lengths, kind="stable")]
    with tqdm(total=len(order), desc="prompts", unit="prompt", disable=not progress) as bar:
        for start in range(0, len(order), batch_size):
            idx = order[start : start + batch_size]
            out = runner.forward(
                [texts[i] for i in idx],
                capture=True,
                sites=spec.sites,
                positions=spec.positions,
                demographic_positions=None if demographic is None else [demographic[i] for i in idx],
            )
            writer.write_batch(
                idx,
                p_yes=out.p_yes,
                p_yes_vocab=out.p_yes_vocab,
                first_token=out.first_token,
                n_tokens=out.n_tokens,
                acts=out.acts,
            )
            bar.update(len(idx))


def write_predictions(cache_path: Path, out_path: Path) -> Path:
    """Write ``predictions.csv`` (design.md contract) from a complete cache, atomically."""
    from extract.cache import Cache

    with Cache(cache_path) as cache:
        if not cache.done.all():
            raise RuntimeError(f"{cache_path}: cache incomplete, cannot write predictions")
        df = pd.concat([cache.prompts, cache.outputs], axis=1)
    df["label"] = df["label"].map(lambda v: "" if int(v) < 0 else str(int(v)))
    with atomic_path(out_path) as tmp:
        df[PREDICTION_COLUMNS].to_csv(tmp, index=False, float_format="%.8g")
    return out_path
