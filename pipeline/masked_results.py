"""``masked.json``: reading a masked-LM audit back and its section of results.json."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from latent_bias_probe.configs.schema import Config

MASKED_NAME = "masked.json"
MASKED_FORMAT = "latent-bias-masked/1"

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
