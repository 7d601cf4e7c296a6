"""Causal tests of mfarm-spec.md B3: steering dose–response and LEACE mediation.

For each explained tier, on the first ``explain.max_cases`` cases:

- Dose–response: at layer ℓ (the value-axis layer ℓ*), add α·σ_ℓ·û to every
  position of the BASE prompts, for û the value axis v̂_ℓ and each group's unit
  steering vector δ̂_{ℓ,g}, over the α grid; report mean P(Yes) per α, the OLS
  slope of logit(P(Yes)) on α, and Spearman(α, mean P(Yes)). σ_ℓ = median ‖h_ℓ‖
  over the tier's BASE prompts at the decision position.
- Mediation: at each layer ℓ, fit LEACE (EleutherAI ``concept-erasure``, streaming
  ``LeaceFitter``) for race×gender on all positions of the demographic prompts (one
  capture pass, whose blocks 0..ℓ the erased runs then reuse), re-run every prompt with
  the eraser applied at ℓ, and report
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

from latent_bias_probe.configs.names import BASE
from latent_bias_probe.configs.schema import Config

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
    for idx in length_batches(runner, texts, batch_size):
        out[idx] = runner.forward([texts[i] for i in idx]).p_yes
    return out


def length_batches(runner, texts: Sequence[str], batch_size: int) -> list[np.ndarray]:
    """Indices of ``texts`` in batches of ``batch_size``, longest first (the batches every intervention uses)."""
    order = np.argsort(-runner.token_lengths(list(texts)), kind="stable")
    return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]


class MemoryStore:
    """Finished units of work by key (the explain stage passes a store that persists them: resume)."""

    def __init__(self):
        self.items: dict[str, Any] = {}

    def get(self, key: str) -> Any:
        return self.items.get(key)

    def put(self, key: str, value: Any) -> None:
        self.items[key] = value


class Interventions:
    """Runs edited forwards on one batch: with prefix reuse (:mod:`extract.prefix`) or as full re-runs.

    ``prepare(texts, layers)`` runs blocks 0..max(layers) once (prefix reuse; ``None``
    for full re-runs) and ``run(texts, state, layer, edit)`` returns P(Yes) with block
    ``layer``'s output h replaced by ``edit(h)`` (``None``: unedited). Both give the same
    numbers to float32 round-off. With ``reuse=True`` the first :meth:`verify` compares
    one batch's unedited suffix with the runner's full forward and switches to full
    re-runs (logged) when they differ by more than ``extract.prefix.CHECK_TOL``.
    """

    def __init__(self, runner, model, reuse: bool = True):
        from latent_bias_probe.extract.prefix import PrefixRunner

        self.runner, self.model = runner, model
        self.prefix_runner = PrefixRunner(runner)
        self.reuse = reuse
        self.passes = 0  # prompt forward passes run (prefix and full), for logs and the benchmark
        self._verified: set[int] = set()

    def verify(self, texts: Sequence[str], layer: int) -> None:
        from latent_bias_probe.extract.prefix import CHECK_TOL

        if not self.reuse or layer in self._verified:
            return
        self._verified.add(layer)
        lengths = self.runner.token_lengths(list(texts))
        pick = sorted({int(np.argmax(lengths)), int(np.argmin(lengths))})  # a padded pair when lengths differ
        diff = self.prefix_runner.check([texts[i] for i in pick], layer)
        if not diff <= CHECK_TOL:
            log.warning("explain: prefix reuse differs from the full forward by %.2g at layer %d; using full re-runs", diff, layer)
            self.reuse = False

    def capture(self, texts: Sequence[str], layers: Sequence[int]):
        """Every position of blocks ``layers``' outputs (an :class:`extract.prefix.Prefix`)."""
        self.passes += len(texts)
        return self.prefix_runner.prefix(texts, layers)

    def prepare(self, texts: Sequence[str], layers: Sequence[int]):
        return self.capture(texts, layers) if self.reuse else None

    def run(self, texts: Sequence[str], state, layer: int, edit=None) -> np.ndarray:
        from .interventions import edit_block_output

        self.passes += len(texts)
        if state is not None:
            return self.prefix_runner.suffix(state, layer, edit)
        if edit is None:
            return self.runner.forward(list(texts)).p_yes
        with edit_block_output(self.model, layer, edit):
            return self.runner.forward(list(texts)).p_yes


def _tick(bar, n: int) -> None:
    if bar is not None:
        bar.update(n)


def dose_response(runner, model, texts, layer, direction, sigma, alphas, batch_size, p_unsteered=None, prepared=None) -> dict[str, Any]:
    """Mean P(Yes) of ``texts`` when α·σ·û is added at ``layer``, for each α.

    ``p_unsteered`` (P(Yes) of ``texts`` without intervention) is reused for α = 0.
    ``prepared`` = ``(interventions, [(batch indices, prefix state), ...])`` runs the
    steered forwards on those batches (prefix reuse); without it, full re-runs.
    """
    from .interventions import steer, steer_fn

    means, logits = [], []
    for alpha in alphas:
        if alpha == 0 and p_unsteered is not None:
            p = np.asarray(p_unsteered, dtype=float)
        elif prepared is not None:
            iv, batches = prepared
            p = np.empty(len(texts))
            for idx, state in batches:
                p[idx] = iv.run([texts[i] for i in idx], state, layer, steer_fn(direction, alpha * sigma))
        else:
            with steer(model, layer, direction, alpha * sigma):
                p = _score(runner, texts, batch_size)
        means.append(float(p.mean()))
        logits.append(float(_logit(p).mean()))
    return _dose_summary(layer, alphas, means, logits)


def _dose_summary(layer, alphas, means, logits) -> dict[str, Any]:
    """OLS slope of mean logit P(Yes) on α and Spearman(α, mean P(Yes))."""
    from scipy.stats import spearmanr

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


def _leace32(leace):
    return type(leace)(leace.proj_left.float(), leace.proj_right.float(), None if leace.bias is None else leace.bias.float())


class EraserFitter:
    """Streaming LEACE fits (EleutherAI ``concept-erasure``'s ``LeaceFitter``) at several layers.

    :meth:`update` takes one batch's block outputs ``{layer: (B, T, d)}``, its attention
    mask and one class index per row (race×gender; ``-1`` leaves a row out, e.g. BASE);
    every real token of a row carries the row's class. With ``kind_names`` it also fits,
    per layer and kind, an eraser on that kind's tokens only (``kinds``: one
    ``{kind: token indices}`` per row, :func:`position_kinds`). :meth:`erasers` returns
    ``{layer: (leace eraser, random-control eraser, rank)}`` and ``{layer: {kind: eraser}}``.
    """

    def __init__(self, d: int, n_classes: int, layers: Sequence[int], kind_names: Sequence[str] = ()):
        import torch
        from concept_erasure import LeaceFitter

        self.d, self.n_classes, self.layers, self.kind_names = int(d), int(n_classes), list(layers), tuple(kind_names)
        self.fitters = {layer: LeaceFitter(d, n_classes, dtype=torch.float64) for layer in self.layers}
        self.kind_fitters = {(layer, k): LeaceFitter(d, n_classes, dtype=torch.float64) for layer in self.layers for k in self.kind_names}
        self.seen = {k: 0 for k in self.kind_names}

    def update(self, hidden, attention_mask, concept: Sequence[int], kinds: Sequence[dict] | None = None) -> None:
        """Add one batch (rows with ``concept`` −1 are left out)."""
        import torch

        concept = np.asarray(concept, dtype=np.int64)
        rows = torch.as_tensor(concept >= 0)
        if not bool(rows.any()):
            return
        mask = attention_mask.bool().cpu() & rows[:, None]
        z = torch.nn.functional.one_hot(torch.as_tensor(np.where(concept >= 0, concept, 0)), self.n_classes)
        z_all = z[:, None, :].expand(-1, mask.shape[1], -1)
        kmasks = {k: kind_mask(kinds, k, attention_mask.cpu()) & mask for k in self.kind_names} if self.kind_names else {}
        for layer in self.layers:
            h = hidden[layer].detach().cpu()
            self.fitters[layer].update(h[mask].double(), z_all[mask].double())
            for k, km in kmasks.items():
                if km.any():
                    self.kind_fitters[(layer, k)].update(h[km].double(), z_all[km].double())
        for k, km in kmasks.items():
            self.seen[k] += int(km.sum())

    def erasers(self, seed: int):
        """``({layer: (leace, random control, rank)}, {layer: {kind: leace}})`` (erasers in float32)."""
        import torch

        from .interventions import RandomSubspaceEraser

        out = {}
        for layer in self.layers:
            leace = self.fitters[layer].eraser
            rank = int(torch.linalg.matrix_rank(leace.proj_left.float() @ leace.proj_right.float()))
            control = RandomSubspaceEraser(self.d, rank, self.fitters[layer].mean_x.float(), seed=seed + layer)
            out[layer] = (_leace32(leace), control, rank)
        by_kind = {
            layer: {k: _leace32(self.kind_fitters[(layer, k)].eraser) for k in self.kind_names if self.seen[k] > 1}
            for layer in self.layers
        } if self.kind_names else {}
        return out, by_kind


def fit_erasers(runner, model, texts, concept, layers, batch_size, seed, kinds=None, kind_names=()):
    """Fit :class:`EraserFitter` on every position of ``texts`` (batches of ``batch_size``).

    The block outputs come from the same capture the explain stage uses
    (:meth:`Interventions.capture`). ``concept`` holds one class index per text. Returns
    {layer: (leace eraser, random-control eraser, rank)}; with ``kinds`` also the per-kind
    erasers: ``(erasers, {layer: {kind: eraser}})``.
    """
    iv = Interventions(runner, model)
    fitter = EraserFitter(runner.d_model, int(max(concept)) + 1, layers, kind_names if kinds else ())
    for start in range(0, len(texts), batch_size):
        state = iv.capture(texts[start : start + batch_size], layers)
        fitter.update(state.hidden, state.attention_mask, concept[start : start + batch_size], kinds[start : start + batch_size] if kinds else None)
    erasers, by_kind = fitter.erasers(seed)
    return (erasers, by_kind) if kinds else erasers


def prefix_nbytes(state) -> int:
    """Bytes of the block outputs a prefix state holds."""
    return 0 if state is None else sum(int(h.numel()) * h.element_size() for h in state.hidden.values())


#: position kinds of erasure fitted per kind (spec B3 extension): the race/gender words, the
#: positions after them but before the last, and the decision (last) position
ERASURE_KINDS = ("demographic", "later", "decision")


def position_kinds(runner, texts: Sequence[str], races: Sequence[str], genders: Sequence[str]) -> list[dict[str, list[int]]]:
    """Per text, token indices (unpadded) of each position kind.

    ``demographic``: tokens of the text's race and gender words (whole words; on a BASE
    text, the first "patient", as the extraction's ``demographic`` position);
    ``later``: every token after the last demographic token except the last one;
    ``decision``: the last token; ``after``: ``later`` ∪ ``decision`` (the trace's (b)).
    """
    from latent_bias_probe.extract.chat import word_token_positions

    tok = runner.tokenizer
    out = []
    for text, n in zip(texts, runner.token_lengths(list(texts))):
        demo = word_token_positions(tok, text, [*races, *genders])
        if not demo:
            demo = word_token_positions(tok, text, ["patient"])[:1] or [0]
        n = int(n)
        later = list(range(max(demo) + 1, n - 1))
        out.append({"demographic": demo, "later": later, "decision": [n - 1], "after": later + [n - 1]})
    return out


def kind_mask(kinds: Sequence[dict[str, list[int]]], kind: str, attention_mask):
    """``(B, T)`` bool mask of ``kind``'s tokens in a left-padded batch."""
    import torch

    mask = torch.zeros(attention_mask.shape, dtype=torch.bool)
    width = attention_mask.shape[1]
    lengths = attention_mask.sum(-1).tolist()
    for i, entry in enumerate(kinds):
        pad = width - int(lengths[i])
        idx = [p + pad for p in entry[kind]]
        if idx:
            mask[i, idx] = True
    return mask


def _by_kind_edit(erasers: dict[str, Any], masks: dict[str, Any]):
    """Each kind's eraser at its own positions (the kinds are disjoint)."""
    from .interventions import erase_fn

    fns = [erase_fn(erasers[k], masks[k]) for k in erasers]

    def apply(h):
        for fn in fns:
            h = fn(h)
        return h

    return apply


def work_units(n_dirs: int, n_alphas_steered: int, n_base: int, n_texts: int, n_layers_med: int, n_kinds: int, trace_passes: int) -> int:
    """Prompt forward passes one tier's interventions run (the progress bar's total)."""
    return n_dirs * n_alphas_steered * n_base + n_layers_med * (2 + n_kinds) * n_texts + trace_passes


def _fit_pass(iv, texts, batches, pending, concept, kinds, kind_names, layers, n_classes, ec):
    """The mediation's fitting pass: capture blocks 0..max(layers) of every batch once and fit the erasers.

    The same capture is the prefix the erased runs of a pending batch continue from, so with
    prefix reuse it is kept (up to ``explain.prefix_memory_gb`` in all; the batches beyond
    re-run their prefix later, with bitwise the same result). Returns ``(erasers, per-kind
    erasers, {batch index: kept prefix})``.
    """
    fitter = EraserFitter(iv.runner.d_model, n_classes, layers, kind_names)
    budget = float(ec.prefix_memory_gb) * 2**30
    kept, used = {}, 0
    for j, idx in enumerate(batches):
        if not (concept[idx] >= 0).any() and not (iv.reuse and j in pending and used < budget):
            continue  # nothing to fit and no prefix to keep (a batch of BASE prompts)
        state = iv.capture([texts[i] for i in idx], layers)
        fitter.update(state.hidden, state.attention_mask, concept[idx], [kinds[i] for i in idx] if kinds else None)
        size = prefix_nbytes(state)
        if iv.reuse and j in pending and used + size <= budget:
            kept[j], used = state, used + size
        del state
    if len(kept) < len(pending) and iv.reuse:
        log.info("explain: kept the fitting pass's prefix for %d of %d batches (explain.prefix_memory_gb %g)", len(kept), len(pending), ec.prefix_memory_gb)
    erasers, by_kind = fitter.erasers(ec.seed)
    return erasers, by_kind, kept


def explain_tier(
    runner, model, prompts, p_yes, h_last, axis_dirs, value_layer, steering, cfg: Config, layers,
    store=None, bar=None, reuse_prefix: bool = True, races=None, genders=None,
) -> dict[str, Any]:
    """Dose–response, mediation (pooled and per position kind) and the causal trace for one tier.

    ``store`` keeps every finished unit (one steering direction, one batch of the
    mediation's erased forwards, one case of the trace) and is asked first, so a store
    that persists (the explain stage's checkpoint) makes an interrupted run continue;
    the result is the same either way. ``bar`` (tqdm-like) counts intervention forward
    passes. ``reuse_prefix`` runs each batch's blocks below the intervention once
    (:class:`Interventions`); ``False`` re-runs the whole model per intervention.
    """
    ec, bs = cfg.explain, cfg.extract.batch_size
    store = store if store is not None else MemoryStore()
    races = list(races if races is not None else cfg.benchmark.races)
    genders = list(genders if genders is not None else cfg.benchmark.genders)
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
    iv = Interventions(runner, model, reuse=reuse_prefix)

    directions = {"value_axis": axis_dirs[value_layer]}
    directions.update({f"steer:{g}": steering[g][value_layer] for g in steering})
    directions = {k: u for k, u in directions.items() if np.linalg.norm(u) > 0}
    kind_names = ERASURE_KINDS if ec.position_erasure else ()
    trace_cases = keep[: ec.trace_cases] if ec.trace_cases else []
    trace_layers = sorted(set(ec.trace_layers if ec.trace_layers is not None else range(runner.n_layers)))
    from .trace import plan_pairs, trace_passes

    pairs = plan_pairs(sub, races, genders, trace_cases)
    if bar is not None:
        steered = sum(1 for a in ec.alphas if a != 0)
        bar.total = (bar.total or 0) + work_units(
            len(directions), steered, len(base_texts), len(texts), len(layers), len(kind_names) + (1 if kind_names else 0),
            trace_passes(pairs, trace_layers, runner.n_layers),
        )
        bar.refresh()

    start = time.perf_counter()
    dose: dict[str, Any] = {}
    pending = [k for k in directions if store.get(f"dose/{k}") is None]
    prepared = None
    if pending and base_texts:
        base_batches = length_batches(runner, base_texts, bs)
        iv.verify([base_texts[i] for i in base_batches[0]], value_layer)
        prepared = (iv, [(idx, iv.prepare([base_texts[i] for i in idx], [value_layer])) for idx in base_batches])
    for name, u in directions.items():
        result = store.get(f"dose/{name}")
        if result is None:
            result = dose_response(runner, model, base_texts, value_layer, u, float(sigma[value_layer]), ec.alphas, bs, p_base, prepared)
            store.put(f"dose/{name}", result)
        dose[name] = result
        _tick(bar, sum(1 for a in ec.alphas if a != 0) * len(base_texts))
    del prepared
    log.info("explain: dose-response for %d directions in %.1f s", len(dose), time.perf_counter() - start)

    start = time.perf_counter()
    groups = sorted(set(variants[~is_base]))
    concept = np.array([groups.index(v) if v != BASE else -1 for v in variants])
    kinds = position_kinds(runner, texts, races, genders) if kind_names else None
    batches = length_batches(runner, texts, bs)
    p_med = {name: np.empty((len(layers), len(texts))) for name in ("leace", "random", *kind_names, *(("by_kind",) if kind_names else ()))}
    pending = [j for j in range(len(batches)) if store.get(f"mediation/{j}") is None]
    kept: dict[int, Any] = {}
    if pending:
        iv.verify([texts[i] for i in batches[0]], layers[0])
        erasers, kind_erasers, kept = _fit_pass(iv, texts, batches, set(pending), concept, kinds, kind_names, layers, len(groups), ec)
        ranks = {layer: erasers[layer][2] for layer in layers}
        store.put("mediation/ranks", {str(k): v for k, v in ranks.items()})
    else:
        erasers, kind_erasers = {}, {}
        ranks = {int(k): v for k, v in store.get("mediation/ranks").items()}
    from .interventions import erase_fn

    for j, idx in enumerate(batches):
        done = store.get(f"mediation/{j}")
        if done is None:
            chunk = [texts[i] for i in idx]
            state = kept.pop(j) if iv.reuse and j in kept else iv.prepare(chunk, layers)
            masks = {}
            if kind_names:
                attn = runner.encode(chunk)["attention_mask"]
                masks = {k: kind_mask([kinds[i] for i in idx], k, attn) for k in kind_names}
            done = {name: [] for name in p_med}
            for layer in layers:
                leace, control, _ = erasers[layer]
                done["leace"].append(iv.run(chunk, state, layer, erase_fn(leace)).tolist())
                done["random"].append(iv.run(chunk, state, layer, erase_fn(control)).tolist())
                if kind_names:
                    ke = kind_erasers[layer]
                    for k in kind_names:
                        fn = erase_fn(ke[k], masks[k]) if k in ke else None
                        done[k].append(iv.run(chunk, state, layer, fn).tolist())
                    done["by_kind"].append(iv.run(chunk, state, layer, _by_kind_edit(ke, {k: masks[k] for k in ke})).tolist())
            del state
            store.put(f"mediation/{j}", done)
        for name in p_med:
            p_med[name][:, idx] = np.asarray(done[name])
        _tick(bar, len(idx) * len(layers) * len(p_med))
    cids = sub["case_id"]
    before = disparity(cids, variants, p_yes[rows])
    mediation = []
    for li, layer in enumerate(layers):
        after, after_rand = disparity(cids, variants, p_med["leace"][li]), disparity(cids, variants, p_med["random"][li])
        entry = {
            "layer": int(layer),
            "rank": ranks[layer],
            "disparity_before": before,
            "disparity_after": after,
            "mediated_fraction": mediated_fraction(before, after),
            "random_disparity_after": after_rand,
            "random_control_fraction": mediated_fraction(before, after_rand),
        }
        if kind_names:
            entry["by_position"] = {
                k: mediated_fraction(before, disparity(cids, variants, p_med[k][li])) for k in (*kind_names, "by_kind")
            }
            fractions = {"pooled": entry["mediated_fraction"], **entry["by_position"]}
            scored = {k: v for k, v in fractions.items() if v is not None}
            entry["explains_most"] = max(scored, key=scored.get) if scored else None
        mediation.append(entry)
    log.info("explain: mediation at %d layers in %.1f s", len(layers), time.perf_counter() - start)
    out = {"n_cases": len(keep), "value_axis_layer": int(value_layer), "sigma": sigma.tolist(), "dose_response": dose, "mediation": mediation}

    if pairs:
        from .trace import causal_trace

        start = time.perf_counter()
        out["trace"] = causal_trace(
            iv, sub, texts, p_yes[rows], pairs, position_kinds(runner, texts, races, genders), trace_layers, bs, store, bar,
            cfg.scoring.bootstrap, cfg.scoring.ci_level, ec.seed,
        )
        log.info("explain: causal trace of %d cases at %d layers in %.1f s", len(trace_cases), len(trace_layers), time.perf_counter() - start)
    return out


def best_mediation(mediation: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The layer with the highest mediated fraction (the results.json summary)."""
    scored = [m for m in mediation if m["mediated_fraction"] is not None]
    if not scored:
        return mediation[0] if mediation else None
    m = max(scored, key=lambda m: m["mediated_fraction"])
    keys = ("layer", "disparity_before", "disparity_after", "mediated_fraction", "random_control_fraction")
    return {k: m[k] for k in keys}
