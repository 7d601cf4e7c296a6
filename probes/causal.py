"""Causal tests of mfarm-spec.md B3: steering dose–response and LEACE mediation.

For each explained tier, on the first ``explain.max_cases`` cases:

- Dose–response: at layer ℓ (the value-axis layer ℓ*), add α·σ_ℓ·û to every
  position of the BASE prompts, for û the value axis v̂_ℓ and each group's unit
  steering vector δ̂_{ℓ,g}, over the α grid; report mean P(Yes) per α, the OLS
  slope of logit(P(Yes)) on α, and Spearman(α, mean P(Yes)). σ_ℓ = median ‖h_ℓ‖
  over the tier's BASE prompts at the decision position.
- Mediation: at each layer ℓ, fit LEACE (EleutherAI ``concept-erasure``, streaming
  ``LeaceFitter``) for race×gender on all positions of the demographic prompts,
  re-run every prompt with the eraser applied at ℓ, and report
  D = mean_{i,g} |p_{i,g} − p_{i,BASE}| before and after, the mediated fraction
  1 − D_after/D_before, and the same for erasing as many random directions.

Functions here take a runner, the model and arrays and return values; the explain
stage (:mod:`pipeline.explain`) reads the run directory and writes ``explain.json``.
"""

from __future__ import annotations

import logging
import time
from typing import Any, Sequence

import numpy as np

from configs.names import BASE
from configs.schema import Config

log = logging.getLogger(__name__)


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(np.asarray(p, dtype=float), 1e-6, 1 - 1e-6)
    return np.log(p) - np.log1p(-p)


def disparity(case_ids: Sequence[str], variants: Sequence[str], p_yes: Sequence[float]) -> float:
    """D = mean over cases i and groups g of |p_{i,g} − p_{i,BASE}|."""
    base = {c: p for c, v, p in zip(case_ids, variants, p_yes) if v == BASE}
    diffs = [abs(p - base[c]) for c, v, p in zip(case_ids, variants, p_yes) if v != BASE]
    return float(np.mean(diffs)) if diffs else 0.0


def mediated_fraction(before: float, after: float) -> float | None:
    """1 − D_after / D_before (None when there is no disparity to explain)."""
    return None if before <= 0 else float(1.0 - after / before)


def default_layers(n_layers: int, value_layer: int) -> list[int]:
    """Every fourth layer plus the value-axis layer."""
    return sorted(set(range(0, n_layers, 4)) | {value_layer})


def _score(runner, texts: list[str], batch_size: int) -> np.ndarray:
    out = np.empty(len(texts))
    order = np.argsort(-runner.token_lengths(texts), kind="stable")
    for start in range(0, len(texts), batch_size):
        idx = order[start : start + batch_size]
        out[idx] = runner.forward([texts[i] for i in idx]).p_yes
    return out


def dose_response(runner, model, texts, layer, direction, sigma, alphas, batch_size, p_unsteered=None) -> dict[str, Any]:
    """Mean P(Yes) of ``texts`` when α·σ·û is added at ``layer``, for each α.

    ``p_unsteered`` (P(Yes) of ``texts`` without intervention) is reused for α = 0.
    """
    from scipy.stats import spearmanr

    from probes.interventions import steer

    means, logits = [], []
    for alpha in alphas:
        if alpha == 0 and p_unsteered is not None:
            p = np.asarray(p_unsteered, dtype=float)
        else:
            with steer(model, layer, direction, alpha * sigma):
                p = _score(runner, texts, batch_size)
        means.append(float(p.mean()))
        logits.append(float(_logit(p).mean()))
    a = np.asarray(alphas, dtype=float)
    slope = float(np.polyfit(a, logits, 1)[0]) if len(set(alphas)) > 1 else None
    rho = spearmanr(a, means).statistic if len(set(means)) > 1 else float("nan")
    return {
        "layer": int(layer),
        "alphas": [float(x) for x in alphas],
        "p_yes_mean": means,
        "logit_mean": logits,
        "logit_slope": slope,
        "spearman": None if not np.isfinite(rho) else float(rho),
    }


def fit_erasers(runner, model, texts, concept, layers, batch_size, seed):
    """Stream all positions of ``texts`` through LEACE fitters at ``layers``.

    ``concept`` holds one class index per text (race×gender); every real token of
    a text carries its class. Returns {layer: (leace eraser, random-control eraser)}.
    """
    import torch
    from concept_erasure import LeaceFitter

    from probes.interventions import RandomSubspaceEraser, capture_positions

    n_classes = int(max(concept)) + 1
    d = runner.d_model
    fitters = {layer: LeaceFitter(d, n_classes, dtype=torch.float64) for layer in layers}
    for start in range(0, len(texts), batch_size):
        chunk = texts[start : start + batch_size]
        mask = runner.encode(chunk)["attention_mask"].bool().cpu()
        store: dict[int, torch.Tensor] = {}
        with capture_positions(model, layers, store):
            runner.forward(chunk)
        z = torch.nn.functional.one_hot(torch.as_tensor(concept[start : start + batch_size]), n_classes)
        z_tok = z[:, None, :].expand(-1, mask.shape[1], -1)[mask]
        for layer in layers:
            fitters[layer].update(store[layer][mask].double(), z_tok.double())
    erasers = {}
    for layer in layers:
        leace = fitters[layer].eraser
        leace32 = type(leace)(leace.proj_left.float(), leace.proj_right.float(), None if leace.bias is None else leace.bias.float())
        rank = int(torch.linalg.matrix_rank(leace.proj_left.float() @ leace.proj_right.float()))
        control = RandomSubspaceEraser(d, rank, fitters[layer].mean_x.float(), seed=seed + layer)
        erasers[layer] = (leace32, control, rank)
    return erasers


def explain_tier(runner, model, prompts, p_yes, h_last, axis_dirs, value_layer, steering, cfg: Config, layers) -> dict[str, Any]:
    """Dose–response and mediation for one tier (see the module docstring)."""
    from probes.interventions import erase

    ec, bs = cfg.explain, cfg.extract.batch_size
    case_ids = prompts["case_id"].to_numpy()
    keep = list(dict.fromkeys(case_ids))[: ec.max_cases] if ec.max_cases else list(dict.fromkeys(case_ids))
    rows = np.flatnonzero(np.isin(case_ids, keep))
    sub = prompts.iloc[rows].reset_index(drop=True)
    texts = sub["text"].tolist()
    variants = sub["variant"].to_numpy()
    is_base = variants == BASE
    base_texts = [t for t, b in zip(texts, is_base) if b]
    p_base = p_yes[rows][is_base]
    all_base = (prompts["variant"] == BASE).to_numpy()
    sigma = np.median(np.linalg.norm(h_last[:, all_base], axis=-1), axis=1)  # (n_layers,)

    start = time.perf_counter()
    directions = {"value_axis": axis_dirs[value_layer]}
    directions.update({f"steer:{g}": steering[g][value_layer] for g in steering})
    dose = {
        name: dose_response(runner, model, base_texts, value_layer, u, float(sigma[value_layer]), ec.alphas, bs, p_base)
        for name, u in directions.items()
        if np.linalg.norm(u) > 0
    }
    log.info("explain: dose-response for %d directions in %.1f s", len(dose), time.perf_counter() - start)

    start = time.perf_counter()
    groups = sorted(set(variants[~is_base]))
    concept = np.array([groups.index(v) for v in variants[~is_base]])
    demo_texts = [t for t, b in zip(texts, is_base) if not b]
    erasers = fit_erasers(runner, model, demo_texts, concept, layers, bs, ec.seed)
    before = disparity(sub["case_id"], variants, p_yes[rows])
    mediation = []
    for layer in layers:
        leace, control, rank = erasers[layer]
        with erase(model, layer, leace):
            p_leace = _score(runner, texts, bs)
        with erase(model, layer, control):
            p_rand = _score(runner, texts, bs)
        after, after_rand = disparity(sub["case_id"], variants, p_leace), disparity(sub["case_id"], variants, p_rand)
        mediation.append(
            {
                "layer": int(layer),
                "rank": rank,
                "disparity_before": before,
                "disparity_after": after,
                "mediated_fraction": mediated_fraction(before, after),
                "random_disparity_after": after_rand,
                "random_control_fraction": mediated_fraction(before, after_rand),
            }
        )
    log.info("explain: mediation at %d layers in %.1f s", len(layers), time.perf_counter() - start)
    return {"n_cases": len(keep), "value_axis_layer": int(value_layer), "sigma": sigma.tolist(), "dose_response": dose, "mediation": mediation}


def best_mediation(mediation: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The layer with the highest mediated fraction (the results.json summary)."""
    scored = [m for m in mediation if m["mediated_fraction"] is not None]
    if not scored:
        return mediation[0] if mediation else None
    m = max(scored, key=lambda m: m["mediated_fraction"])
    keys = ("layer", "disparity_before", "disparity_after", "mediated_fraction", "random_control_fraction")
    return {k: m[k] for k in keys}
