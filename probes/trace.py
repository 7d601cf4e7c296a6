"""Causal trace by activation patching: where between the demographic words and the decision a gap is carried.

For a case i and a pair of its variants that differ in one attribute (a *source* s and
a *target* t: another race within the same gender against the first race, or another
gender within the same race against the first gender), run the target with block ℓ's
output replaced, at the positions of one kind, by the source's:

- ``demographic``: the race and gender word tokens;
- ``after``: every position after the last demographic token (the decision included).

With p_t, p_s the unpatched P(Yes) and p̃ the patched one, the gap closed is

    F = Σ_i σ_i (p̃_i − p_{t,i}) / Σ_i |p_{s,i} − p_{t,i}|,   σ_i = sign(p_{s,i} − p_{t,i}),

summed over cases (a ratio of sums: stable when single gaps are tiny), per pair of
groups, layer and position kind, with a percentile interval from resampling cases; and
pooled over every pair of an attribute (the report's layer × position heat map). F = 1:
the positions carry the whole gap at that layer; 0: none of it. Patching both kinds
(every position from the first demographic token) gives F = 1, since the tokens
before it are the same in both variants.

Alignment: a pair is patched only when both variants have the same number of tokens
and the demographic tokens at the same indices (a race word of one token against one
of two does not align); the others are counted (``n_unaligned``) and left out.
Source and target run in separate batches of equal padded width, so an aligned pair's
positions agree after left padding.
"""

from __future__ import annotations

import logging
from typing import Any, Sequence

import numpy as np

log = logging.getLogger(__name__)

#: the positions patched (see the module docstring)
TRACE_KINDS = ("demographic", "after")


def plan_pairs(prompts, races: Sequence[str], genders: Sequence[str], cases: Sequence[str]) -> list[dict[str, Any]]:
    """Source/target rows of ``prompts`` (columns case_id, race, gender) for every traced pair of every case in ``cases``."""
    where = {(c, r, g): i for i, (c, r, g) in enumerate(zip(prompts["case_id"], prompts["race"], prompts["gender"]))}
    out = []
    for case in cases:
        combos = [("race", (r, g), (races[0], g)) for g in genders for r in races[1:]]
        combos += [("gender", (r, g), (r, genders[0])) for r in races for g in genders[1:]]
        for attribute, (rs, gs), (rt, gt) in combos:
            src, tgt = where.get((case, rs, gs)), where.get((case, rt, gt))
            if src is None or tgt is None:
                continue
            out.append({"case": str(case), "attribute": attribute, "source": f"{rs}-{gs}", "target": f"{rt}-{gt}", "src": src, "tgt": tgt})
    return out


def trace_passes(pairs: Sequence[dict], layers: Sequence[int], n_layers: int) -> int:
    """Prompt forward passes of the trace (two captures and one patched run per layer and kind, per pair)."""
    return len(pairs) * (2 + len(TRACE_KINDS) * len(layers))


def _aligned(kinds_s: dict, kinds_t: dict) -> bool:
    return kinds_s["decision"] == kinds_t["decision"] and kinds_s["demographic"] == kinds_t["demographic"]


def _trace_case(iv, texts, pairs, kinds, layers, batch_size) -> dict[str, Any]:
    """Patched P(Yes) of one case's aligned pairs: ``{pair key: {p_target, p_source, patched: {kind: [per layer]}}}``."""
    from .causal import kind_mask
    from .interventions import patch_fn

    last = iv.runner.n_layers - 1
    cap = sorted(set(layers) | {last})
    out: dict[str, Any] = {}
    ok = [p for p in pairs if _aligned(kinds[p["src"]], kinds[p["tgt"]])]
    for p in pairs:
        if p not in ok:
            out[f"{p['source']}>{p['target']}"] = {"aligned": False}
    for start in range(0, len(ok), batch_size):
        chunk = ok[start : start + batch_size]
        tgt = [texts[p["tgt"]] for p in chunk]
        src = [texts[p["src"]] for p in chunk]
        ts, ss = iv.capture(tgt, cap), iv.capture(src, cap)
        p_t = iv.prefix_runner.suffix(ts, last)
        p_s = iv.prefix_runner.suffix(ss, last)
        masks = {k: kind_mask([kinds[p["tgt"]] for p in chunk], k, ts.attention_mask) for k in TRACE_KINDS}
        patched = {k: np.empty((len(layers), len(chunk))) for k in TRACE_KINDS}
        for li, layer in enumerate(layers):
            for k in TRACE_KINDS:
                fn = patch_fn(ss.hidden[layer], masks[k])
                patched[k][li] = iv.run(tgt, ts if iv.reuse else None, layer, fn)
        for j, p in enumerate(chunk):
            out[f"{p['source']}>{p['target']}"] = {
                "aligned": True,
                "p_target": float(p_t[j]),
                "p_source": float(p_s[j]),
                "patched": {k: patched[k][:, j].tolist() for k in TRACE_KINDS},
            }
        del ts, ss
    return out


def gap_closed(num: np.ndarray, den: np.ndarray, n_boot: int, ci_level: float, seed: int) -> dict[str, Any]:
    """F = Σ σ_i num_i / Σ |den_i| over cases i (σ_i = sign den_i), with a case-bootstrap percentile interval.

    ``num``: (n_cases, n_layers) patched − target; ``den``: (n_cases,) source − target.
    """
    sign = np.sign(den)
    total = np.abs(den).sum()
    frac = (sign[:, None] * num).sum(0) / total if total > 0 else np.full(num.shape[1], np.nan)
    lo = hi = [None] * num.shape[1]
    if n_boot and len(den) > 1 and total > 0:
        rng = np.random.default_rng(seed)
        idx = rng.integers(0, len(den), size=(n_boot, len(den)))
        tot = np.abs(den)[idx].sum(1)  # (B,)
        keep = tot > 0
        boot = (sign[idx][:, :, None] * num[idx]).sum(1)[keep] / tot[keep][:, None]
        q = (1 - ci_level) / 2
        lo, hi = np.quantile(boot, q, axis=0).tolist(), np.quantile(boot, 1 - q, axis=0).tolist()
    clean = [None if not np.isfinite(v) else float(v) for v in frac]
    return {"fraction": clean, "lo": lo, "hi": hi}


def causal_trace(iv, prompts, texts, p_yes, pairs, kinds, layers, batch_size, store, bar, n_boot, ci_level, seed) -> dict[str, Any]:
    """The trace of one tier (see the module docstring); one unit of ``store`` per case."""
    cases = list(dict.fromkeys(p["case"] for p in pairs))
    per_case = {}
    for case in cases:
        mine = [p for p in pairs if p["case"] == case]
        done = store.get(f"trace/{case}")
        if done is None:
            done = _trace_case(iv, texts, mine, kinds, layers, batch_size)
            store.put(f"trace/{case}", done)
        per_case[case] = done
        if bar is not None:
            bar.update(len(mine) * (2 + len(TRACE_KINDS) * len(layers)))
    return summarize_trace(per_case, pairs, layers, n_boot, ci_level, seed)


def summarize_trace(per_case: dict[str, dict], pairs, layers, n_boot: int, ci_level: float, seed: int) -> dict[str, Any]:
    """Gap closed per pair of groups and pooled per attribute, per position kind and layer."""
    types = list(dict.fromkeys((p["attribute"], p["source"], p["target"]) for p in pairs))
    rows: dict[tuple, list] = {t: [] for t in types}
    unaligned: dict[tuple, int] = {t: 0 for t in types}
    for p in pairs:
        entry = per_case[p["case"]][f"{p['source']}>{p['target']}"]
        t = (p["attribute"], p["source"], p["target"])
        if entry["aligned"]:
            rows[t].append((p["case"], entry))
        else:
            unaligned[t] += 1

    def block(items) -> dict[str, Any]:
        if not items:
            return {"n_cases": 0}
        # pool by case (a resample keeps a case's pairs together)
        cases = list(dict.fromkeys(c for c, _ in items))
        den = np.zeros(len(cases))
        num = {k: np.zeros((len(cases), len(layers))) for k in TRACE_KINDS}
        for c, e in items:
            i = cases.index(c)
            gap = e["p_source"] - e["p_target"]
            s = np.sign(gap)
            den[i] += abs(gap)
            for k in TRACE_KINDS:
                num[k][i] += s * (np.asarray(e["patched"][k]) - e["p_target"])
        res = {"n_cases": len(cases), "mean_abs_gap": float(np.mean([abs(e["p_source"] - e["p_target"]) for _, e in items]))}
        # num is sign-aligned per pair and den holds |gaps| (sign 1 in gap_closed): F = Σ num / Σ den
        for k in TRACE_KINDS:
            res[k] = gap_closed(num[k], den, n_boot, ci_level, seed)
        return res

    out_pairs = []
    for t in types:
        entry = {"attribute": t[0], "source": t[1], "target": t[2], "n_unaligned": unaligned[t], **block(rows[t])}
        out_pairs.append(entry)
    pooled = {}
    for attribute in dict.fromkeys(t[0] for t in types):
        items = [x for t in types if t[0] == attribute for x in rows[t]]
        pooled[attribute] = {"n_unaligned": sum(unaligned[t] for t in types if t[0] == attribute), **block(items)}
    return {"layers": [int(x) for x in layers], "kinds": list(TRACE_KINDS), "pairs": out_pairs, "pooled": pooled}
