"""Which components write a group gap: attribution patching, verified by activation patching, and a remedy.

For one explained tier (:func:`component_tier`), on the traced pairs of the first
``explain.components.cases`` cases (:func:`probes.trace.plan_pairs`):

1. **Attribution** (:mod:`probes.attribution`): every variant of a case runs once
   (:func:`extract.components.capture_components`; targets with the gradient of P(Yes),
   one backward per batch of targets), and each aligned pair gets the estimate of
   patching every component (attention output, MLP output, each head) at every layer
   and position kind from source into target. Pooled per attribute and per pair of
   groups as a share of the gap with case-bootstrap intervals.
2. **Verification**: per attribute, the ``top_k`` components of largest |share|, a
   random control set of ``random`` others, and the heads whose attention from the
   decision position is saturated (below) are activation-patched for real on the pairs
   of the first ``verify_cases`` cases (one patched forward of the targets per
   component, from the patched block up: the blocks below it run once per batch). ``patched_share`` is pooled the same way; a component is ``verified``
   when its patched share has the estimate's sign and its interval excludes 0.
   ``component_agreement``: Spearman between estimated and patched shares over the
   patched components, and the top-k overlap (:func:`probes.attribution.agreement`).
3. **What the heads read**: for every verified head, its attention weight from the
   decision position on the demographic tokens (summed over them), mean over the
   demographic prompts of the verified cases with a case-bootstrap interval.
4. **Remedy** (:func:`remedy_choice`): the verified top (and saturated) components whose
   patched share is positive — they carry the gap — at most ``remedy_max``, largest
   patched share first, over both attributes, are edited at their position kind in every
   prompt of the explained cases: ``mean`` replaces them by their mean over the BASE
   prompts at that kind; ``erase`` removes the race × gender subspace from them (a LEACE
   eraser fitted on the demographic prompts, anchored at the BASE mean:
   :func:`group_erasers`). The explain stage re-scores the edited P(Yes) against the
   unedited one with ``probe compare``'s paired case bootstrap (mFARM, FAB, accuracy,
   the largest group shift, each group's shift, and BASE's own P(Yes)).

AtP* (Kramár et al. 2024) in part: the linear estimate can miss a component whose effect
runs through a saturated softmax (a near-zero gradient); here every head whose mean
attention weight from the decision position on one token other than the first reaches
``saturation`` (the demographic prompts of the verified cases, eager attention) is
patched for real at the decision position as well, whatever its estimate (at most
``saturated_max`` per attribute, most saturated first), so it cannot be missed. The
QK fix itself (exact softmax of the pattern changes the patch causes downstream) and
GradDrop are not implemented; the estimates are plain attribution patching.

Every finished unit (one case's attribution, attention, patching; one remedy batch) goes
to ``store`` (resume); the result is the same either way.
"""

from __future__ import annotations

import logging
import time
from typing import Any, Sequence

import numpy as np
import pandas as pd
import torch

from latent_bias_probe.configs.names import BASE
from latent_bias_probe.extract.components import (
    ComponentEdit, capture_components, decision_attention, edit_components, n_heads, padded, unpad,
)
from .attribution import (
    COMPONENT_POSITIONS, KIND_SOURCE, agreement, component_index, is_verified, pair_attribution, pool_shares,
    select_components,
)
from .causal import length_batches, position_kinds
from .interventions import kind_mask
from .trace import plan_pairs

log = logging.getLogger(__name__)


def _aligned(kinds_s: dict, kinds_t: dict) -> bool:
    return kinds_s["decision"] == kinds_t["decision"] and kinds_s["demographic"] == kinds_t["demographic"]


def _key(p: dict) -> str:
    return f"{p['source']}>{p['target']}"


class Features:
    """The flat feature index of ``(layer, component, position kind)`` (the attribution array, flattened)."""

    def __init__(self, layers: Sequence[int], heads: int):
        self.layers, self.heads = list(layers), int(heads)
        self.comps = component_index(heads)

    def __len__(self) -> int:
        return len(self.layers) * len(self.comps) * len(COMPONENT_POSITIONS)

    def unpack(self, f: int) -> tuple[int, str, int | None, str]:
        """``(layer, kind, head, position)`` of feature ``f``."""
        per_layer = len(self.comps) * len(COMPONENT_POSITIONS)
        li, rest = divmod(int(f), per_layer)
        ci, pi = divmod(rest, len(COMPONENT_POSITIONS))
        kind, head = self.comps[ci]
        return self.layers[li], kind, head, COMPONENT_POSITIONS[pi]

    def index(self, layer: int, kind: str, head: int | None, position: str) -> int:
        """Feature index of one component."""
        ci = self.comps.index((kind, head))
        return (self.layers.index(layer) * len(self.comps) + ci) * len(COMPONENT_POSITIONS) + COMPONENT_POSITIONS.index(position)


# ----------------------------------------------------------------------------- attribution


def _rows(batch, layers, b: int, grad: bool) -> dict[str, torch.Tensor]:
    """One row of a :class:`ComponentBatch`, unpadded and stacked over layers: ``(L, n, width)``."""
    m = batch.attention_mask
    out = {
        "z": torch.stack([unpad(batch.z[l], m, b) for l in layers]),
        "m": torch.stack([unpad(batch.mlp[l], m, b) for l in layers]),
    }
    if grad:
        out["gz"] = torch.stack([unpad(batch.grad_z[l], m, b) for l in layers])
        out["gm"] = torch.stack([unpad(batch.grad_mlp[l], m, b) for l in layers])
    return out


def attribute_case(runner, texts, pairs, kinds, layers, heads: int, batch_size: int) -> dict[str, Any]:
    """Attribution estimates of one case's pairs: ``{pair key: {aligned, p_target, p_source, attr}}``.

    ``attr``: ``(layers, 2 + heads, 3)`` nested lists (:func:`probes.attribution.pair_attribution`).
    Targets run with gradients (kept while the case's sources run); sources without.
    """
    out: dict[str, Any] = {_key(p): {"aligned": False} for p in pairs if not _aligned(kinds[p["src"]], kinds[p["tgt"]])}
    ok = [p for p in pairs if _aligned(kinds[p["src"]], kinds[p["tgt"]])]
    targets = list(dict.fromkeys(p["tgt"] for p in ok))
    sources = list(dict.fromkeys(p["src"] for p in ok))
    kept: dict[int, dict] = {}
    p_of: dict[int, float] = {}
    for start in range(0, len(targets), batch_size):
        idx = targets[start : start + batch_size]
        batch = capture_components(runner, [texts[i] for i in idx], layers, grad=True)
        for b, i in enumerate(idx):
            kept[i], p_of[i] = _rows(batch, layers, b, True), float(batch.p_yes[b])
        del batch
    for start in range(0, len(sources), batch_size):
        idx = sources[start : start + batch_size]
        batch = capture_components(runner, [texts[i] for i in idx], layers, grad=False)
        for b, i in enumerate(idx):
            src, p_of[i] = _rows(batch, layers, b, False), float(batch.p_yes[b])
            for p in (q for q in ok if q["src"] == i):
                t = kept[p["tgt"]]
                attr = pair_attribution(src["z"], t["z"], t["gz"], src["m"], t["m"], t["gm"], kinds[p["tgt"]], heads)
                out[_key(p)] = {"aligned": True, "p_target": p_of[p["tgt"]], "p_source": p_of[i], "attr": attr.tolist()}
        del batch
    return out


def _pooled(per_case: dict, pairs: Sequence[dict], field: str) -> dict[tuple, list]:
    """``{(attribute, pair key or "all"): [(case, gap, values)]}`` of the aligned pairs in ``per_case``."""
    groups: dict[tuple, list] = {}
    for p in pairs:
        entry = per_case.get(p["case"], {}).get(_key(p))
        if not entry or not entry.get("aligned") or field not in entry:
            continue
        values = np.asarray(entry[field], dtype=float).reshape(-1)
        item = (p["case"], entry["p_source"] - entry["p_target"], values)
        groups.setdefault((p["attribute"], _key(p)), []).append(item)
        groups.setdefault((p["attribute"], "all"), []).append(item)
    return groups


# ----------------------------------------------------------------------------- verification


def patch_case(runner, texts, pairs, kinds, feats: Features, chosen: dict[str, list[int]], batch_size: int,
               reuse_prefix: bool = True) -> dict[str, Any]:
    """Activation-patched P(Yes) of one case's aligned pairs: ``{pair key: {aligned, p_target, p_source, patched}}``.

    ``patched[j]``: the target's P(Yes) with feature ``chosen[attribute][j]`` taken from the source;
    ``effect[j]``: that minus the unpatched target's.

    A patch in block ℓ cannot change blocks 0..ℓ−1, so with ``reuse_prefix`` the targets'
    blocks below each patched layer run once per batch (:class:`extract.prefix.PrefixRunner`)
    and every patched forward runs only blocks ℓ..L−1 (the same P(Yes) to float32
    round-off; a model whose output is not ``head(norm(h))`` falls back to full forwards).
    A patch at the decision position cannot change any earlier position either, so (also
    with ``reuse_prefix``) the targets' first T−1 tokens run once per batch with the KV
    cache and each such patched forward runs the last token alone
    (:class:`extract.last_token.LastTokenRunner`; checked against the full forward per
    batch, full forwards when it differs).
    """
    from latent_bias_probe.extract.last_token import LastTokenRunner
    from latent_bias_probe.extract.prefix import CHECK_TOL, PrefixRunner

    out: dict[str, Any] = {}
    prefix = PrefixRunner(runner) if reuse_prefix else None
    # a TransformerLens bridge rewires the blocks: the model's own KV cache does not reproduce its forward
    last = LastTokenRunner(runner) if reuse_prefix and getattr(runner, "backend", None) != "transformer_lens" else None
    for attribute, features in chosen.items():
        mine = [p for p in pairs if p["attribute"] == attribute and _aligned(kinds[p["src"]], kinds[p["tgt"]])]
        layers = sorted({feats.unpack(f)[0] for f in features})
        below = sorted({layer - 1 for layer in layers if layer > 0})
        for start in range(0, len(mine), batch_size):
            chunk = mine[start : start + batch_size]
            tgt = [texts[p["tgt"]] for p in chunk]
            src = capture_components(runner, [texts[p["src"]] for p in chunk], layers)
            p_t = runner.forward(tgt).p_yes
            attn = runner.encode(tgt)["attention_mask"].cpu()
            width = attn.shape[1]
            state = None
            if prefix is not None and below:
                state = prefix.prefix(tgt, below)
                gap = float(np.abs(prefix.suffix(state, below[-1]) - p_t).max())
                if gap > CHECK_TOL:
                    log.warning("explain: a truncated forward differs from the full one by %.2g; patching runs full forwards", gap)
                    prefix = state = None
            tail = None
            if last is not None and width > 1 and any(feats.unpack(f)[3] == "decision" for f in features):
                tail = _last_token_state(last, tgt, p_t)
                if tail is None:
                    last = None
            patched = np.empty((len(features), len(chunk)))
            for j, f in enumerate(features):
                layer, kind, head, position = feats.unpack(f)
                rows = [unpad(src.mlp[layer] if kind == "mlp" else src.z[layer], src.attention_mask, b) for b in range(len(chunk))]
                where = kind_mask([kinds[p["tgt"]] for p in chunk], KIND_SOURCE[position], attn)
                value = padded(rows, width)
                if kind == "head":
                    d = value.shape[-1] // feats.heads
                    value = value[..., head * d : (head + 1) * d]
                if tail is not None and position == "decision":  # the last column alone: the one position the forward runs
                    with edit_components(runner.model, [ComponentEdit(layer, kind, head, where[:, -1:], value[:, -1:])]):
                        patched[j] = last.run(tail)
                    continue
                with edit_components(runner.model, [ComponentEdit(layer, kind, head, where, value)]):
                    patched[j] = prefix.suffix(state, layer - 1) if state is not None and layer > 0 else runner.forward(tgt).p_yes
            for b, p in enumerate(chunk):
                out[_key(p)] = {"aligned": True, "p_target": float(p_t[b]), "p_source": float(src.p_yes[b]), "patched": patched[:, b].tolist(),
                                 "effect": (patched[:, b] - p_t[b]).tolist()}
            del src, state, tail
    return out


def _last_token_state(last, texts, p_full: np.ndarray):
    """``last.prepare(texts)`` when its unedited P(Yes) matches ``p_full`` (the full forward's); else None, with a warning."""
    from latent_bias_probe.extract.prefix import CHECK_TOL

    try:
        state = last.prepare(texts)
        gap = last.check(state, p_full)
    except (RuntimeError, TypeError, ValueError, AttributeError, NotImplementedError) as err:
        state, gap = None, f"not run ({type(err).__name__}: {err})"
    if state is not None and gap <= CHECK_TOL:
        return state
    log.warning("explain: a last-token forward over the KV cache differs from the full one by %s; "
                "decision-position patches run as the others", gap if isinstance(gap, str) else f"{gap:.2g}")
    return None


def attention_case(runner, texts, rows: Sequence[int], kinds, layers) -> dict[str, Any]:
    """Decision-position attention of one case's demographic prompts: ``{"peak", "demographic"}`` ``(n, L, H)`` lists."""
    peak, demo = decision_attention(runner, [texts[i] for i in rows], layers, [kinds[i]["demographic"] for i in rows])
    return {"peak": peak.tolist(), "demographic": demo.tolist()}


def _mean_ci(per_case: np.ndarray, n_boot: int, level: float, seed: int) -> tuple[float, list[float] | None]:
    """Mean over cases of ``per_case`` ``(n_cases, …)``, and a case-bootstrap percentile interval."""
    from latent_bias_probe.mfarm.resampling import bootstrap_indices

    mean = per_case.mean(0)
    if not n_boot or per_case.shape[0] < 2:
        return mean, None
    idx = bootstrap_indices(per_case.shape[0], n_boot, seed)
    boot = per_case[idx].mean(1)
    q = (1 - level) / 2
    return mean, [np.quantile(boot, q, axis=0), np.quantile(boot, 1 - q, axis=0)]


def _per_case_units(store, prefix: str, cases, pairs, bar, compute, passes) -> dict:
    """``{case: unit}``: each case's checkpointed unit ``prefix/case``, computed by ``compute(its pairs)``
    when the checkpoint lacks it; the progress bar advances by ``passes(its pairs)``."""
    out = {}
    for case in cases:
        mine = [p for p in pairs if p["case"] == case]
        done = store.get(f"{prefix}/{case}")
        if done is None:
            done = compute(mine)
            store.put(f"{prefix}/{case}", done)
        out[case] = done
        if bar is not None:
            bar.update(passes(mine))
    return out


# ----------------------------------------------------------------------------- remedy


def remedy_choice(components: Sequence[dict[str, Any]], limit: int) -> list[tuple]:
    """The components the remedy edits: ``(layer, kind, head, position)`` keys, at most ``limit``.

    Candidates are the components verified over a whole attribute (``pair: "all"``), selected
    as top or saturated (not the random controls), whose patched share is *positive*: patching
    them moves the target towards the source, so they carry the gap (a negative share works
    against it, and removing it would widen the gap). Largest patched share first; a
    component verified for both attributes counts once.
    """
    ok = [c for c in components if c.get("pair") == "all" and c.get("verified") and c.get("selected") in ("top", "saturated")
          and c.get("patched_share") is not None and c["patched_share"] > 0]
    ok.sort(key=lambda c: -c["patched_share"])
    picked: list[tuple] = []
    for c in ok:
        key = (c["layer"], c["kind"], c["head"], c["position"])
        if key not in picked and len(picked) < limit:
            picked.append(key)
    return picked


def _activations(batch, feats: Features, f: int, b: int, positions: Sequence[int]) -> torch.Tensor:
    """Feature ``f``'s activation of row ``b`` of a :class:`ComponentBatch` at ``positions``: ``(n, width)``."""
    layer, kind, head, _ = feats.unpack(f)
    act = unpad(batch.mlp[layer] if kind == "mlp" else batch.z[layer], batch.attention_mask, b)
    if kind == "head":
        d = act.shape[-1] // feats.heads
        act = act[:, head * d : (head + 1) * d]
    return act[list(positions)]


def _remedy_positions(kinds_i: dict, position: str) -> list[int]:
    """The token indices a remedy edits at ``position`` (on BASE the demographic kind is its stand-in word)."""
    return list(kinds_i[KIND_SOURCE[position]]) or list(kinds_i["decision"])


def base_means(runner, texts, kinds, base_rows: Sequence[int], feats: Features, features: Sequence[int], batch_size: int) -> dict[int, torch.Tensor]:
    """Each feature's mean activation over the BASE prompts at its position kind (a mean of per-prompt means)."""
    layers = sorted({feats.unpack(f)[0] for f in features})
    sums = {f: None for f in features}
    for start in range(0, len(base_rows), batch_size):
        idx = list(base_rows[start : start + batch_size])
        batch = capture_components(runner, [texts[i] for i in idx], layers)
        for b, i in enumerate(idx):
            for f in features:
                v = _activations(batch, feats, f, b, _remedy_positions(kinds[i], feats.unpack(f)[3])).mean(0).double()
                sums[f] = v if sums[f] is None else sums[f] + v
    return {f: (s / len(base_rows)).float() for f, s in sums.items()}


def group_erasers(runner, texts, kinds, rows: Sequence[int], groups: Sequence[int], n_groups: int, feats: Features,
                  features: Sequence[int], means: dict[int, torch.Tensor], batch_size: int) -> dict[int, Any]:
    """Per feature, a LEACE eraser of the race × gender groups, anchored at BASE.

    Fitted (EleutherAI ``concept-erasure``'s ``LeaceFitter``, float64) on the feature's
    activation at every position of its kind in the demographic prompts ``rows`` (class:
    ``groups[j]``, one of ``n_groups``): no linear function of the edited activation tells
    the groups apart. The eraser is x ↦ x − W⁺PW(x − μ) with μ the feature's BASE mean
    (``means``) instead of the fitted mean, so the erased subspace is set to where BASE
    sits in it and a group's shift from BASE through this component goes, while BASE's
    own activation moves only by its deviation from its mean in that subspace.
    """
    from concept_erasure import LeaceEraser, LeaceFitter

    layers = sorted({feats.unpack(f)[0] for f in features})
    fitters: dict[int, Any] = {}
    for start in range(0, len(rows), batch_size):
        idx = list(rows[start : start + batch_size])
        batch = capture_components(runner, [texts[i] for i in idx], layers)
        for b, i in enumerate(idx):
            for f in features:
                x = _activations(batch, feats, f, b, _remedy_positions(kinds[i], feats.unpack(f)[3])).double()
                if f not in fitters:
                    fitters[f] = LeaceFitter(x.shape[-1], n_groups, dtype=torch.float64)
                z = torch.nn.functional.one_hot(torch.full((x.shape[0],), int(groups[start + b])), n_groups).double()
                fitters[f].update(x, z)
    out = {}
    for f, fitter in fitters.items():
        e = fitter.eraser
        out[f] = LeaceEraser(e.proj_left.float(), e.proj_right.float(), means[f].float())
    return out


def remedy_batch(runner, texts, idx, kinds, feats: Features, edits: dict[int, Any]) -> list[float]:
    """P(Yes) of ``texts[idx]`` with every feature in ``edits`` edited at its position kind.

    ``edits[f]``: a tensor (the feature is replaced by it, e.g. its BASE mean) or a callable
    (the feature's activation is mapped through it, e.g. an eraser).
    """
    chunk = [texts[i] for i in idx]
    attn = runner.encode(chunk)["attention_mask"].cpu()
    out = []
    for f, how in edits.items():
        layer, kind, head, position = feats.unpack(f)
        where = kind_mask([kinds[i] for i in idx], KIND_SOURCE[position], attn)
        if isinstance(how, torch.Tensor):
            out.append(ComponentEdit(layer, kind, head, where, value=how))
        else:
            out.append(ComponentEdit(layer, kind, head, where, transform=how))
    with edit_components(runner.model, out):
        return runner.forward(chunk).p_yes.tolist()


# ----------------------------------------------------------------------------- the tier


def _entry(feats: Features, f: int, attribute: str, pair: str, share, lo, hi) -> dict[str, Any]:
    layer, kind, head, position = feats.unpack(f)
    return {"layer": int(layer), "kind": kind, "head": None if head is None else int(head), "position": position,
            "attribute": attribute, "pair": pair, "share": share, "ci": [lo, hi], "patched_share": None, "verified": False}


def component_tier(runner, sub: pd.DataFrame, races, genders, cfg, store, bar=None) -> dict[str, Any]:
    """Attribution, verification, heads' attention and the remedy's edited P(Yes) of one tier (the module docstring).

    ``sub``: the explained cases' prompts (case_id, variant, race, gender, text, tier).
    ``remedy["p_yes"]`` holds the ablated P(Yes) of every row of ``sub``; the explain stage
    re-scores it against the unedited run (:func:`pipeline.explain.remedy_scores`).
    """
    co, bs = cfg.explain.components, cfg.extract.batch_size
    n_boot, level, seed = cfg.scoring.bootstrap, cfg.scoring.ci_level, cfg.explain.seed
    texts = sub["text"].tolist()
    cases = list(dict.fromkeys(sub["case_id"]))[: co.cases or None]
    layers = sorted(set(co.layers if co.layers is not None else range(runner.n_layers)))
    heads = n_heads(runner.model)
    feats = Features(layers, heads)
    kinds = position_kinds(runner, texts, races, genders)
    pairs = plan_pairs(sub, races, genders, cases)
    verify_cases = cases[: co.verify_cases]

    if bar is not None:  # attribution (a pass per variant) and remedy (a pass per prompt); the patching is added once chosen
        bar.total = (bar.total or 0) + sum(len({p["tgt"] for p in pairs if p["case"] == c} | {p["src"] for p in pairs if p["case"] == c}) for c in cases) + len(texts)
        bar.refresh()
    start = time.perf_counter()
    per_case = _per_case_units(
        store, "components/attr", cases, pairs, bar,
        lambda mine: attribute_case(runner, texts, mine, kinds, layers, heads, bs),
        lambda mine: len({p["tgt"] for p in mine} | {p["src"] for p in mine}),
    )
    attr_seconds = time.perf_counter() - start
    log.info("explain: component attribution of %d cases in %.1f s", len(cases), attr_seconds)

    pooled = {key: pool_shares(items, n_boot, level, seed) for key, items in _pooled(per_case, pairs, "attr").items()}
    attributes = [a for a in ("race", "gender") if (a, "all") in pooled]
    top = {a: select_components(pooled[(a, "all")]["share"], co.top_k, co.random, seed) for a in attributes}
    components: list[dict[str, Any]] = []
    for (attribute, pair), res in pooled.items():
        # every component pooled over the attribute; per pair of groups, the selected ones only
        keep = range(len(feats)) if pair == "all" else sorted(set(top[attribute][0]) | set(top[attribute][1]))
        for f in keep:
            components.append(_entry(feats, f, attribute, pair, res["share"][f], res["lo"][f], res["hi"][f]))
    out: dict[str, Any] = {
        "components": components,
        "component_layers": layers,
        "component_heads": heads,
        "component_cases": {"attributed": len(cases), "verified": len(verify_cases)},
    }
    if not verify_cases or not attributes:
        out["component_agreement"] = {"spearman": None, "top_k_overlap": None, "k": 0}
        out["remedy"] = None
        return out

    # heads' decision-position attention on the verified cases (saturation check, and what verified heads read)
    start = time.perf_counter()
    att = {}
    for case in verify_cases:
        rows = [i for i, (c, v) in enumerate(zip(sub["case_id"], sub["variant"])) if c == case and v != BASE]
        done = store.get(f"components/attention/{case}")
        if done is None:
            try:
                done = attention_case(runner, texts, rows, kinds, layers)
            except RuntimeError as err:
                log.warning("explain: no attention weights (%s); the saturation check and the heads' reading are left out", err)
                done = {"peak": None, "demographic": None}
            store.put(f"components/attention/{case}", done)
        att[case] = done
    have_att = all(att[c]["peak"] is not None for c in verify_cases)
    chosen, control, saturated = {}, {}, {}
    for attribute in attributes:
        top[attribute], control[attribute] = top[attribute]
        saturated[attribute] = []
        if have_att and co.saturated_max:
            peak = np.concatenate([np.asarray(att[c]["peak"]) for c in verify_cases]).mean(0)  # (L, H)
            order = np.argsort(-peak, axis=None, kind="stable")
            for flat in order:
                li, h = divmod(int(flat), heads)
                if peak[li, h] < co.saturation or len(saturated[attribute]) >= co.saturated_max:
                    break
                f = feats.index(layers[li], "head", h, "decision")
                if f not in top[attribute] and f not in control[attribute]:
                    saturated[attribute].append(f)
        chosen[attribute] = top[attribute] + control[attribute] + saturated[attribute]
    chosen = {a: f for a, f in chosen.items() if f}  # an attribute without a gap has nothing to patch

    if bar is not None:
        bar.total += sum(len(chosen.get(p["attribute"], [])) for p in pairs if p["case"] in set(verify_cases))
        bar.refresh()
    patched_case = _per_case_units(
        store, "components/patch", verify_cases, pairs, bar,
        lambda mine: patch_case(runner, texts, mine, kinds, feats, chosen, bs, cfg.explain.reuse_prefix),
        lambda mine: sum(len(chosen.get(p["attribute"], [])) for p in mine),
    )
    patch_seconds = time.perf_counter() - start
    log.info("explain: activation patching of %d components on %d cases in %.1f s", sum(map(len, chosen.values())), len(verify_cases), patch_seconds)

    vpairs = [p for p in pairs if p["case"] in set(verify_cases)]
    p_pooled = {}
    for (attribute, pair), items in _pooled(patched_case, vpairs, "effect").items():
        p_pooled[(attribute, pair)] = pool_shares(items, n_boot, level, seed)
    # estimates on the same cases as the patching, for the agreement
    sub_est = {key: pool_shares(items, 0, level, seed) for key, items in _pooled(per_case, vpairs, "attr").items()}
    by_key = {(c["attribute"], c["pair"], feats.index(c["layer"], c["kind"], c["head"], c["position"])): c for c in components}
    for (attribute, pair), res in pooled.items():  # saturated heads patched beside the selection
        for f in saturated[attribute]:
            if (attribute, pair, f) not in by_key:
                entry = _entry(feats, f, attribute, pair, res["share"][f], res["lo"][f], res["hi"][f])
                components.append(entry)
                by_key[(attribute, pair, f)] = entry
    agree = {}
    for attribute in [a for a in attributes if (a, "all") in p_pooled]:
        for pair_key in [k for (a, k) in p_pooled if a == attribute]:
            res = p_pooled[(attribute, pair_key)]
            for j, f in enumerate(chosen[attribute]):
                entry = by_key[(attribute, pair_key, f)]
                entry["patched_share"] = res["share"][j]
                entry["patched_ci"] = [res["lo"][j], res["hi"][j]]
                entry["selected"] = "top" if f in top[attribute] else ("random" if f in control[attribute] else "saturated")
                entry["verified"] = is_verified(entry["share"], res["share"][j], res["lo"][j], res["hi"][j])
        est = [sub_est[(attribute, "all")]["share"][f] for f in chosen[attribute]]
        pat = p_pooled[(attribute, "all")]["share"]
        agree[attribute] = agreement([np.nan if v is None else v for v in est], [np.nan if v is None else v for v in pat], co.top_k)
    done = [a for a in attributes if (a, "all") in p_pooled]
    every_est = [sub_est[(a, "all")]["share"][f] for a in done for f in chosen[a]]
    every_pat = [v for a in done for v in p_pooled[(a, "all")]["share"]]
    total = agreement([np.nan if v is None else v for v in every_est], [np.nan if v is None else v for v in every_pat], co.top_k)
    out["component_agreement"] = {**total, "by_attribute": agree}

    verified = [c for c in components if c["pair"] == "all" and c["verified"] and c.get("selected") in ("top", "saturated")]
    verified.sort(key=lambda c: -abs(c["patched_share"]))
    if have_att:
        out["component_attention"] = _heads_reading(att, verify_cases, verified, layers, n_boot, level, seed)

    if not co.remedy:
        out["remedy"] = None
        return out
    start = time.perf_counter()
    picked = [feats.index(*key) for key in remedy_choice(components, co.remedy_max)]
    if not picked:
        out["remedy"] = None
        return out
    is_base = (sub["variant"] == BASE).to_numpy()
    edits = None
    p_after = np.empty(len(texts))
    for j, idx in enumerate(length_batches(runner, texts, bs)):
        done = store.get(f"components/remedy/{j}")
        if done is None:
            if edits is None:
                edits = base_means(runner, texts, kinds, np.flatnonzero(is_base).tolist(), feats, picked, bs)
                if co.remedy_method == "erase":
                    names = [f"{r}-{g}" for r in races for g in genders]
                    rows = [i for i in range(len(texts)) if not is_base[i] and sub["variant"].iloc[i] in names]
                    groups = [names.index(sub["variant"].iloc[i]) for i in rows]
                    edits = group_erasers(runner, texts, kinds, rows, groups, len(names), feats, picked, edits, bs)
            done = remedy_batch(runner, texts, idx, kinds, feats, edits)
            store.put(f"components/remedy/{j}", done)
        p_after[idx] = done
        if bar is not None:
            bar.update(len(idx))
    out["remedy"] = {
        "components": [{k: v for k, v in _entry(feats, f, "", "", None, None, None).items() if k in ("layer", "kind", "head", "position")} for f in picked],
        "method": co.remedy_method,
        "tier": str(sub["tier"].iloc[0]),
        "n_cases": int(len(set(sub["case_id"]))),
        "p_yes": p_after.tolist(),  # re-scored by the caller (pipeline.explain.remedy_scores), then dropped
    }
    log.info("explain: remedy (%d components ablated, %d prompts) in %.1f s", len(picked), len(texts), time.perf_counter() - start)
    return out


def _heads_reading(att, cases, verified, layers, n_boot, level, seed) -> list[dict[str, Any]]:
    """Decision-position attention on the demographic tokens of every verified head: mean over cases, with an interval."""
    out, seen = [], set()
    per_case = np.stack([np.asarray(att[c]["demographic"]).mean(0) for c in cases])  # (n_cases, L, H)
    mean, ci = _mean_ci(per_case, n_boot, level, seed)
    for c in verified:
        if c["kind"] != "head" or (c["layer"], c["head"]) in seen:
            continue
        seen.add((c["layer"], c["head"]))
        li = layers.index(c["layer"])
        out.append({
            "layer": c["layer"], "head": c["head"], "attribute": c["attribute"],
            "attention_demographic": float(mean[li, c["head"]]),
            "ci": None if ci is None else [float(ci[0][li, c["head"]]), float(ci[1][li, c["head"]])],
        })
    return out
