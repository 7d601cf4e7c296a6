"""The extract stage of a masked-LM audit (``model.kind: masked``), and its results section.

Extraction (:func:`run_masked_extract`, called by :mod:`pipeline.extract` when the model
is a masked LM): the template set is rendered for BASE (no target words) and every race
x gender group, the model scores every sentence (:mod:`extract.masked`), and

- ``cache.h5`` gets one row per sentence in the usual layout: ``case_id`` = template id,
  ``tier`` = ``masked``, ``variant``/``race``/``gender`` as in the causal benchmarks,
  ``p_yes`` = P(attribute | sentence) (the geometric mean over the attribute's pieces,
  with the attribute masked), ``first_token`` = the top prediction at the attribute,
  ``acts/resid_post/last`` = the hidden states at the target's last piece, so ``probe
  fit`` runs the race/gender probes on encoders unchanged;
- ``predictions.csv`` follows from the cache as always (Part A/C then score P(attribute));
- ``masked.json`` holds the per-template scores (log p_tgt, log p_prior, PLL) and, with
  ``masked.corpus``, the corpus's co-occurrence counts.

:func:`masked_results` turns ``masked.json`` into ``results.json``'s ``masked`` section
(statistics of :mod:`mfarm.association` with ``config:scoring``).
"""

from __future__ import annotations

import json
import logging
import math
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from latent_bias_probe.configs.errors import InputError
from latent_bias_probe.configs.files import atomic_write_text
from latent_bias_probe.configs.names import BASE, MASKED_TIER
from latent_bias_probe.configs.schema import Config, MaskedConfig
from .artifacts import RunDir

log = logging.getLogger(__name__)

MASKED_NAME = "masked.json"
MASKED_FORMAT = "latent-bias-masked/1"
#: analyses of the ``masked`` section: results key -> masked.json matrix (the association is derived)
ANALYSES = ("association", "log_p_target", "pll")


def masked_options(cfg: Config) -> MaskedConfig:
    """The run's ``masked`` section (the defaults when the config has none)."""
    return cfg.masked if cfg.masked is not None else MaskedConfig()


def _rows(cfg: Config, limit: int | None):
    """(template set, groups [(name, race, gender)], sentence rows [(template, variant, race, gender, Sentence)])."""
    from latent_bias_probe.benchmarks.templates import group_name, load_templates, render_sentence, target_words

    mk = masked_options(cfg)
    templates = load_templates(mk.templates).select(mk.categories, mk.n_templates)
    if limit is not None:
        templates = type(templates)(templates.name, templates.templates[:limit], templates.descriptions, templates.source)
    if len(templates.templates) < 2:
        raise InputError(f"masked: need at least 2 templates, got {len(templates.templates)} (masked.n_templates, --limit-cases)")
    b = cfg.benchmark
    groups = [(group_name(r, g), r, g) for r in b.races for g in b.genders]
    rows = []
    for t in templates.templates:
        rows.append((t, BASE, BASE, BASE, render_sentence(t, None)))
        for name, r, g in groups:
            rows.append((t, name, r, g, render_sentence(t, target_words(r, g, mk.target_format))))
    return templates, groups, rows


def run_masked_extract(cfg: Config, run: RunDir, limit_cases: int | None, shard, overwrite: bool, start: float):
    """Score the templates with the masked model; write cache.h5, predictions.csv and masked.json (module docstring)."""
    from latent_bias_probe.configs.hashes import extraction_sha256
    from latent_bias_probe.configs.schema import check_against_model
    from latent_bias_probe.configs.version import TOOLKIT_VERSION
    from latent_bias_probe.extract.cache import CacheSpec, CacheWriter
    from latent_bias_probe.extract.masked import MaskedScorer, load_masked_model
    from latent_bias_probe.extract.provenance import environment
    from .extract import ExtractResult, write_predictions
    from .results import save_run_config

    if shard is not None:
        raise InputError("--shard: a masked-LM audit runs unsharded (it is small: templates x groups)")
    mk = masked_options(cfg)
    templates, groups, rows = _rows(cfg, limit_cases)
    log.info("masked: %d templates x %d groups (+ BASE) = %d sentences", len(templates.templates), len(groups), len(rows))
    corpus = None
    if mk.corpus is not None:  # before the model loads: a bad corpus fails fast
        from latent_bias_probe.benchmarks.corpus import count_corpus

        counts = count_corpus(mk.corpus, mk.corpus_column, cfg.benchmark.races, cfg.benchmark.genders, templates.attribute_words())
        corpus = {"source": counts.source, "groups": counts.groups, "categories": counts.categories, "n": counts.n.tolist(),
                  "n_group": counts.n_group.tolist(), "n_sentences": counts.n_sentences, "n_documents": counts.n_documents}
    table = pd.DataFrame({
        "case_id": [t.id for t, *_ in rows], "tier": MASKED_TIER, "variant": [v for _, v, *_ in rows],
        "race": [r for _, _, r, _, _ in rows], "gender": [g for _, _, _, g, _ in rows], "label": -1,
        "text": [s.text for *_, s in rows],
    })
    table["prompt_index"] = np.arange(len(rows))
    if not overwrite and _complete(run, cfg, table):
        log.info("masked: %s already holds this audit (same model weights, config and sentences); nothing to compute", run.path)
        save_run_config(run, cfg)  # later stages read this run's other settings (scoring, probes)
        return ExtractResult(run / "cache.h5", run / "predictions.csv", len(rows), 0, time.perf_counter() - start)
    loaded = load_masked_model(cfg.model)
    check_against_model(cfg, loaded.n_layers)
    positions = tuple(cfg.extract.positions)
    spec = CacheSpec(
        model=loaded.name, model_sha256=loaded.sha256, dtype=loaded.dtype, backend="hf",
        config_sha256=extraction_sha256(cfg), toolkit_version=TOOLKIT_VERSION, n_layers=loaded.n_layers,
        d_model=loaded.d_model, sites=("resid_post",), positions=positions, storage_dtype=cfg.extract.storage_dtype,
    )
    if tuple(cfg.extract.sites) != ("resid_post",):
        log.warning("masked: only resid_post is cached for a masked model (extract.sites %s ignored)", cfg.extract.sites)
    extra = {"model_kind": "masked", "render_report": json.dumps({}), "provenance": json.dumps(environment(loaded.device, loaded.model))}
    run.invalidate("cache.h5")
    run.invalidate(MASKED_NAME)
    scorer = MaskedScorer(loaded, batch_size=max(cfg.extract.batch_size, 1))
    with CacheWriter.create_or_resume(run / "cache.h5", spec, table, overwrite=overwrite, extra_attrs=extra) as writer:
        save_run_config(run, cfg)
        encoded = [scorer.encode(s.text, s.target, s.attribute) for *_, s in rows]
        t0 = time.perf_counter()
        scores = scorer.score(encoded, pll=mk.pll)
        acts = scorer.activations(encoded, positions)
        log.info("masked: scored %d sentences in %.1f s", len(rows), time.perf_counter() - t0)
        p_attr = np.exp([s.log_p_attribute for s in scores])
        writer.write_batch(
            np.arange(len(rows)), p_yes=p_attr, p_yes_vocab=p_attr, first_token=[s.top_attribute_token for s in scores],
            n_tokens=[s.n_tokens for s in scores], acts={("resid_post", p): acts[p] for p in positions},
        )
    run.forget("cache.h5")
    run.record("cache.h5")
    predictions = write_predictions(run)
    _write_masked_json(run, cfg, templates, groups, rows, scores, corpus)
    run.prune()
    return ExtractResult(run / "cache.h5", predictions, len(rows), len(rows), time.perf_counter() - start)


def _complete(run: RunDir, cfg: Config, table: pd.DataFrame) -> bool:
    """Whether the run directory already holds this audit: fresh artifacts from the same weights, config and sentences."""
    from latent_bias_probe.configs.hashes import extraction_sha256
    from latent_bias_probe.extract.cache import Cache
    from latent_bias_probe.extract.model import _resolve_hf, _safetensors_files, cache_root, weights_sha256

    if not all(run.is_fresh(n) for n in ("cache.h5", "predictions.csv", MASKED_NAME)):
        return False
    try:
        with Cache(run / "cache.h5") as cache:
            attrs, prompts, done = cache.attrs, cache.prompts, cache.done
        folder = _resolve_hf(cfg.model)
        sha = weights_sha256(_safetensors_files(folder, cfg.model.name), cache_root(cfg.model))
    except (InputError, OSError):
        return False
    return bool(
        attrs.get("config_sha256") == extraction_sha256(cfg) and attrs.get("model_sha256") == sha and done.all()
        and prompts["text"].tolist() == table["text"].tolist() and prompts["variant"].tolist() == table["variant"].tolist()
    )


def _write_masked_json(run: RunDir, cfg: Config, templates, groups, rows, scores, corpus) -> None:
    mk = masked_options(cfg)
    ids = [t.id for t in templates.templates]
    names = [n for n, _, _ in groups]
    where = {(t.id, v): k for k, (t, v, *_) in enumerate(rows)}

    def matrix(attr: str) -> list[list[float | None]]:
        out = []
        for tid in ids:
            vals = [getattr(scores[where[(tid, g)]], attr) for g in names]
            out.append([float(v) if math.isfinite(v) else None for v in vals])
        return out

    data = {
        "format": MASKED_FORMAT,
        "templates": {"name": templates.name, "source": templates.source, "counts": templates.counts(),
                      "descriptions": {c: templates.descriptions.get(c, "") for c in templates.categories}},
        "target_format": mk.target_format,
        "groups": names,
        "ids": ids,
        "categories": [t.category for t in templates.templates],
        "attributes": [t.attribute for t in templates.templates],
        "log_p_target": matrix("log_p_target"),
        "log_p_prior": matrix("log_p_prior"),
        "log_p_attribute": matrix("log_p_attribute"),
        "log_p_attribute_base": [float(scores[where[(tid, BASE)]].log_p_attribute) for tid in ids],
        "pll": matrix("pll") if mk.pll else None,
        "corpus": corpus,
        "example": rows[1][4].text if len(rows) > 1 else None,
    }
    atomic_write_text(run / MASKED_NAME, json.dumps(data, indent=1, allow_nan=False) + "\n")
    run.record(MASKED_NAME)


def read_masked(path: Path) -> dict[str, Any] | None:
    """``masked.json`` when it is a file of this format, else None."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and data.get("format") == MASKED_FORMAT else None


def masked_results(data: dict[str, Any], cfg: Config) -> dict[str, Any]:
    """The ``masked`` section of results.json from ``masked.json`` (statistics: :mod:`mfarm.association`)."""
    from latent_bias_probe.mfarm.association import compare_with_corpus, corpus_log_odds, group_differences, kurita_association

    s = cfg.scoring
    groups, cats = data["groups"], data["categories"]

    def arr(key: str) -> np.ndarray:
        return np.array([[math.nan if v is None else v for v in row] for row in data[key]], dtype=float)

    mats = {"association": kurita_association(arr("log_p_target"), arr("log_p_prior")), "log_p_target": arr("log_p_target")}
    if data.get("pll") is not None:
        mats["pll"] = arr("pll")
    opts = dict(alpha=s.alpha, correction=s.correction, n_boot=s.bootstrap, seed=s.seed, level=s.ci_level,
                margin=s.association_margin)
    analyses = {key: group_differences(X, cats, groups, **opts) for key, X in mats.items()}
    out: dict[str, Any] = {
        "templates": data["templates"],
        "n_templates": len(data["ids"]),
        "groups": groups,
        "target_format": data["target_format"],
        "example": data.get("example"),
        "margin": s.association_margin,
        "analyses": analyses,
        "corpus": None,
    }
    corpus = data.get("corpus")
    if corpus:
        C = corpus_log_odds(np.array(corpus["n"], dtype=float), np.array(corpus["n_group"], dtype=float))
        rows = [corpus["groups"].index(g) if g in corpus["groups"] else None for g in groups]
        Cg = np.array([C[i] if i is not None else np.full(C.shape[1], np.nan) for i in rows])
        comparison = compare_with_corpus(analyses["association"], Cg, groups, corpus["categories"])
        out["corpus"] = {
            "source": corpus["source"], "n_documents": corpus["n_documents"], "n_sentences": corpus["n_sentences"],
            "n_group": dict(zip(corpus["groups"], corpus["n_group"])),
            "log_odds": {g: {c: (None if not math.isfinite(v) else float(v)) for c, v in zip(corpus["categories"], Cg[j])}
                         for j, g in enumerate(groups)},
            **comparison,
        }
    return out
