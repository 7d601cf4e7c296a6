"""The extract stage: render the benchmark, run the model, stream outputs and
activations into ``DIR/cache.h5``, then write ``DIR/predictions.csv`` and
``DIR/batch_check.json`` (the P(Yes) of a sample of prompts re-run alone against
their batched values: :mod:`extract.batch_check`).

Re-running on the same directory resumes from the cache's ``done`` mask; a cache
made from another model, benchmark or extraction setting is refused unless
``overwrite`` is set. ``config.json`` is written only once the cache has been
accepted (created, resumed or replaced), so a refused run changes nothing.
"""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import numpy as np
import pandas as pd

from latent_bias_probe.configs.errors import InputError
from latent_bias_probe.configs.schema import Config
from latent_bias_probe.configs.files import atomic_path, atomic_write_text
from latent_bias_probe.configs.hashes import extraction_sha256
from latent_bias_probe.extract.batching import plan_batches
from latent_bias_probe.configs.version import TOOLKIT_VERSION
from .artifacts import RunDir
from .lock import run_lock

if TYPE_CHECKING:
    from latent_bias_probe.benchmarks.types import Prompt

log = logging.getLogger(__name__)

#: predictions.csv columns (design.md). ``option_mass`` (next-token probability on Yes ∪ No)
#: comes last, so readers that index the older columns by position keep working; it is
#: empty for a cache that has none (format 1). ``probe score`` does not need it.
PREDICTION_COLUMNS = [
    "case_id", "tier", "variant", "race", "gender", "label", "p_yes", "p_yes_vocab", "first_token", "option_mass",
]


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


def select_cases(
    case_ids: list[str], limit_cases: int | None, shard: Shard | None, batch_size: int = 8, prompts_per_case_tier: int = 13
) -> set[str]:
    """The cases to run: the first ``limit_cases`` in benchmark order; of those, a shard's groups.

    A shard takes whole groups of cases (:mod:`extract.batching`), chosen from the
    sorted case ids, so its batches are exactly the inline run's.
    """
    from latent_bias_probe.extract.batching import case_groups, shard_cases

    ordered = list(dict.fromkeys(case_ids))
    if limit_cases is not None:
        ordered = ordered[:limit_cases]
    if shard is not None:
        return shard_cases(case_groups(ordered, batch_size, prompts_per_case_tier), shard.index, shard.count)
    return set(ordered)


def prompts_per_case_tier(cfg: Config) -> int:
    """BASE plus every race × gender variant."""
    return len(cfg.benchmark.races) * len(cfg.benchmark.genders) + 1


def run_extract(
    cfg: Config,
    out_dir: str | Path,
    limit_cases: int | None = None,
    shard: Shard | None = None,
    overwrite: bool = False,
    progress: bool = True,
) -> ExtractResult:
    """Run the extract stage into ``out_dir`` (see the module docstring).

    The run directory is created and locked first, so an impossible ``out_dir`` (under
    a file, a name too long, an unwritable place) or a directory in use by another
    process is refused before the benchmark renders and the model loads. Nothing is
    written into it before then; if the stage fails before the cache exists, the
    folders it created (the run directory and any missing parents) are removed again.
    """
    start = time.perf_counter()
    if limit_cases is not None and limit_cases < 1:
        raise InputError(f"--limit-cases: must be >= 1, got {limit_cases}")
    out = Path(out_dir)
    created = create_run_dir(out)
    try:
        with run_lock(out, "extract"):
            return _run_extract(cfg, RunDir(out), limit_cases, shard, overwrite, progress, start)
    except BaseException:
        remove_empty_dirs(created)
        raise


def create_run_dir(path: Path) -> list[Path]:
    """Create ``path`` and its missing parents; return the folders created, deepest first.

    Errors name the path (an ``OSError`` with its filename), so the CLI reports them
    as bad input.
    """
    missing: list[Path] = []
    here = Path(path)
    while not here.exists() and not here.is_symlink():
        missing.append(here)
        if here.parent == here:
            break
        here = here.parent
    try:
        path.mkdir(parents=True, exist_ok=True)
    except BaseException:
        remove_empty_dirs(missing)
        raise
    return missing


def remove_empty_dirs(folders: Sequence[Path]) -> None:
    """Remove ``folders`` (deepest first) while they are empty folders: undo :func:`create_run_dir`."""
    for folder in folders:
        try:
            folder.rmdir()  # only succeeds on an empty folder
        except OSError:
            if os.path.lexists(folder):  # not empty: keep it, and so its parents
                break
            # never made (the failed mkdir of a name too long, say): go on with its parents


def _run_extract(cfg, run: RunDir, limit_cases, shard, overwrite, progress, start) -> ExtractResult:
    from latent_bias_probe.benchmarks.registry import render_benchmark
    from latent_bias_probe.extract.backends import make_runner
    from latent_bias_probe.extract.cache import CacheSpec, CacheWriter
    from latent_bias_probe.extract.chat import char_spans_to_token_positions, find_user_offset, model_text
    from latent_bias_probe.extract.model import load_model
    from latent_bias_probe.configs.schema import check_against_model
    from .results import save_run_config
    from latent_bias_probe.extract.masked import model_kind

    if model_kind(cfg.model) == "masked":  # a masked-LM audit: templates instead of the benchmark's cases
        from .masked import run_masked_extract

        return run_masked_extract(cfg, run, limit_cases, shard, overwrite, start)
    rendered = render_benchmark(cfg.benchmark, limit_cases=limit_cases)
    k = prompts_per_case_tier(cfg)
    keep = select_cases([p.case_id for p in rendered.prompts], limit_cases, shard, cfg.extract.batch_size, k)
    indexed = [(i, p) for i, p in enumerate(rendered.prompts) if p.case_id in keep]
    if not indexed:
        raise InputError("benchmark: no prompts to run (check benchmark.n_cases, --limit-cases and --shard)")
    prompts = [p for _, p in indexed]
    log.info("benchmark %s: %d cases, %d prompts", cfg.benchmark.source, len(keep), len(prompts))

    loaded = load_model(cfg.model)
    check_against_model(cfg, loaded.n_layers)  # layer indices of later stages, before any forward pass
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
        config_sha256=extraction_sha256(cfg),  # the cache contract's name for the extraction hash
        toolkit_version=TOOLKIT_VERSION,
        n_layers=loaded.n_layers,
        d_model=loaded.d_model,
        sites=tuple(cfg.extract.sites),
        positions=positions,
        storage_dtype=cfg.extract.storage_dtype,
    )
    cache_path = run / "cache.h5"
    runner = make_runner(cfg.extract.backend, loaded)
    from latent_bias_probe.extract.provenance import environment

    from latent_bias_probe.extract.chat import prompt_framing
    from latent_bias_probe.extract.scoring import answer_tokens

    extra = {
        "render_report": json.dumps(rendered.report()),
        "provenance": json.dumps(environment(loaded.device, loaded.model)),
        "prompt_framing": json.dumps(prompt_framing(loaded.tokenizer, cfg.benchmark.system_message or None)),
        "answer_tokens": json.dumps(answer_tokens(loaded.tokenizer, runner.yes_ids, runner.no_ids)),
    }
    if shard is not None:
        extra["shard"] = f"{shard.index}/{shard.count}"
    run.invalidate("cache.h5")  # the caller holds the run lock
    with CacheWriter.create_or_resume(cache_path, spec, table, overwrite=overwrite, extra_attrs=extra) as writer:
        save_run_config(run, cfg)  # the cache was accepted: from here on this is the run's config
        todo = writer.todo()
        if len(todo) < len(prompts):
            log.info("resuming: %d of %d prompts already in %s", len(prompts) - len(todo), len(prompts), cache_path)
        batches = plan_batches(table["case_id"], table["tier"], cfg.extract.batch_size, k)
        _run_batches(runner, writer, texts, batches, spec, demographic, progress)
    run.forget("cache.h5")
    run.record("cache.h5")
    predictions_path = write_predictions(run)
    _check_batches(runner, texts, run, cfg.extract.batch_size, cfg.extract.batch_check)
    run.prune()
    return ExtractResult(cache_path, predictions_path, len(prompts), len(todo), time.perf_counter() - start)


def _check_batches(runner, texts, run: RunDir, batch_size: int, n: int) -> None:
    """Re-run ``n`` prompts alone and record how far their P(Yes) is from the batched one."""
    from latent_bias_probe.extract.batch_check import CHECK_NAME, check_batch_invariance
    from latent_bias_probe.extract.cache import Cache

    run.invalidate(CHECK_NAME)
    if n == 0 or batch_size == 1:  # nothing to compare: every prompt already ran alone
        (run / CHECK_NAME).unlink(missing_ok=True)
        return
    with Cache(run / "cache.h5") as cache:
        batched = cache.outputs["p_yes"].to_numpy()
    check = check_batch_invariance(runner, texts, batched, batch_size, n)
    atomic_write_text(run / CHECK_NAME, json.dumps(check.to_dict(), indent=2) + "\n")
    run.record(CHECK_NAME)
    say = log.info if check.within_tolerance else log.warning
    say(
        "batch check: P(Yes) of %d prompts run alone vs in batches of %d: max |diff| %.2g, mean %.2g%s",
        len(check.indices), batch_size, check.max_abs_diff, check.mean_abs_diff,
        "" if check.within_tolerance else " (numerical noise of this precision: smaller group shifts are not meaningful)",
    )


def _run_batches(runner, writer, texts, batches, spec, demographic, progress) -> None:
    """Forward every batch with an unfinished prompt (longest first), writing each as it completes.

    ``batches`` come from :func:`extract.batching.plan_batches`: a batch is always
    recomputed whole, so a prompt's batch-mates never depend on where a run resumed.
    ``demographic`` holds, per prompt, the token positions of its race and gender
    words (``None`` unless the ``demographic`` position is cached).
    """
    from tqdm.auto import tqdm

    done = ~np.isin(np.arange(len(texts)), writer.todo())
    pending = [b for b in batches if not done[b].all()]
    if not pending:
        return
    longest = [max(runner.n_tokens(texts[i]) for i in b) for b in pending]
    order = np.argsort(-np.asarray(longest), kind="stable")
    with tqdm(total=sum(len(b) for b in pending), desc="prompts", unit="prompt", disable=not progress) as bar:
        for j in order:
            idx = pending[j]
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
                option_mass=out.option_mass,
            )
            bar.update(len(idx))


def write_predictions(run: RunDir) -> Path:
    """Write ``predictions.csv`` (design.md contract) from the run's complete cache, atomically.

    Columns :data:`PREDICTION_COLUMNS`; ``option_mass`` is written empty where the cache
    has none (a format 1 cache, or rows merged from one).
    """
    from latent_bias_probe.extract.cache import Cache

    cache_path, out_path = run / "cache.h5", run / "predictions.csv"
    with Cache(cache_path) as cache:
        if not cache.done.all():
            raise InputError(f"{cache_path}: {int((~cache.done).sum())} prompts unfinished, cannot write predictions")
        df = pd.concat([cache.prompts, cache.outputs], axis=1)
    df["label"] = df["label"].map(lambda v: "" if int(v) < 0 else str(int(v)))
    run.invalidate("predictions.csv")
    with atomic_path(out_path) as tmp:
        df[PREDICTION_COLUMNS].to_csv(tmp, index=False, float_format="%.8g")
    run.record("predictions.csv")
    return out_path
