"""Masked language models: kind detection, loading, and the audit's forward passes.

**Kind** (:func:`model_kind`): ``model.kind`` when set; with ``auto`` the model
folder's ``config.json`` decides: an ``architectures`` entry ending in ``ForMaskedLM``
(BERT, RoBERTa, DeBERTa, ... with their MLM head) is ``masked``, anything else (and the
embedded default) ``causal``.

**Loading** (:func:`load_masked_model`): like causal models, offline, from a local
directory or the local Hugging Face cache, safetensors only (``AutoModelForMaskedLM``).
The tokenizer must be fast (offsets locate the slots) and have a mask token; inputs
are padded on the right (absolute position embeddings).

**Scores** of one rendered sentence (:class:`MaskedScorer`; the slots' character spans
come from :func:`benchmarks.templates.render_sentence`, their tokens are those whose
offsets overlap the span). With T the target's word pieces and A the attribute's:

- ``log_p_target`` = sum_{i in T} log P(x_i = t_i | x with all of T masked), the
  attribute present;
- ``log_p_prior`` = the same with all of T and all of A masked (Kurita et al. 2019);
- ``log_p_attribute`` = (1/|A|) sum_{i in A} log P(x_i = a_i | x with A masked), the
  target present (BASE: removed); ``exp`` of it is the row's ``p_yes`` in the cache;
- ``pll`` = sum_{i not in T, not special} log P(x_i | x with only i masked): the
  pseudo-log-likelihood over the tokens every group's sentence shares (CrowS-Pairs,
  Nangia et al. 2020; here the sentences differ only in T).

*Multi-token targets* (e.g. "Black female" = 2 pieces, or a word split into several
pieces): every piece of T is replaced by its own [MASK] at once, so the sentence keeps
its length, and log p_tgt sums the pieces' log-probabilities from that one forward
pass (each piece predicted given the context and the other masks: a product of
per-position marginals, not a chain rule). The prior masks T the same way, so the
number of target pieces, which differs between groups, enters p_tgt and p_prior
alike and cancels from the association.

**Activations** at the target position: the hidden states (embeddings excluded; layer
l = the output of encoder block l, the ``resid_post`` site) at the last piece of T in
the unmasked sentence (``last``) and their mean over T (``demographic``); for BASE
(no target) the first token after where the slot was.
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass
from operator import attrgetter
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from latent_bias_probe.configs.schema import ModelConfig
from .model import (
    EMBEDDED,
    LoadedModel,
    ModelError,
    _offline,
    _one_line,
    _resolve_hf,
    _safetensors_files,
    _torch_dtype,
    cache_root,
    first_attribute_path,
    resolve_device,
    weights_sha256,
)

log = logging.getLogger(__name__)

#: where the encoder blocks live, by family (BERT, RoBERTa, DeBERTa, DistilBERT, ELECTRA, ALBERT has one shared block)
ENCODER_PATHS = ("bert.encoder.layer", "roberta.encoder.layer", "deberta.encoder.layer", "distilbert.transformer.layer",
                 "electra.encoder.layer", "xlm_roberta.encoder.layer", "model.layers", "encoder.layer")


def _architectures(folder: Path) -> list[str]:
    try:
        data = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return []
    arch = data.get("architectures") if isinstance(data, dict) else None
    return [str(a) for a in arch] if isinstance(arch, list) else []


def model_kind(cfg: ModelConfig) -> str:
    """``causal`` or ``masked`` (module docstring); a forced ``masked`` on a model without an MLM head exits 2."""
    if cfg.kind == "causal" or cfg.name in EMBEDDED and cfg.kind == "auto":  # every embedded model is causal
        return "causal"
    if cfg.name in EMBEDDED:
        raise ModelError(f"model.kind: 'masked', but model.name {cfg.name!r} is a causal model")
    folder = _resolve_hf(cfg)
    arch = _architectures(folder)
    masked = any(a.endswith("ForMaskedLM") for a in arch)
    if cfg.kind == "masked" and not masked:
        raise ModelError(
            f"model.kind: 'masked', but {cfg.name!r} has no masked-LM head (config.json architectures: {arch or 'none'}; "
            "need e.g. BertForMaskedLM, RobertaForMaskedLM, DebertaV2ForMaskedLM)"
        )
    return "masked" if masked or cfg.kind == "masked" else "causal"


def encoder_layers(model) -> Any:
    """The ``nn.ModuleList`` of encoder blocks."""
    path = first_attribute_path(model, ENCODER_PATHS)
    if path is None:
        raise ModelError(f"cannot find the encoder layers of {type(model).__name__}")
    return attrgetter(path)(model)


def finish_masked(model, tokenizer, *, name: str, sha256: str, dtype: str, device: str, path: str | None) -> LoadedModel:
    """Eval mode, on ``device``, right padding; checks the tokenizer (fast, with a mask token)."""
    model.eval()
    if device != "cpu":
        model.to(device)
    if tokenizer.mask_token_id is None:
        raise ModelError(f"model {name!r}: the tokenizer has no mask token")
    if not getattr(tokenizer, "is_fast", False):
        raise ModelError(f"model {name!r}: a masked-LM audit needs a fast tokenizer (tokenizer.json) for token offsets")
    tokenizer.padding_side = "right"
    cfg = model.config
    return LoadedModel(model=model, tokenizer=tokenizer, name=name, sha256=sha256, dtype=dtype,
                       n_layers=len(encoder_layers(model)), d_model=int(cfg.hidden_size), device=device, path=path)


def load_masked_model(cfg: ModelConfig, device: str | None = None) -> LoadedModel:
    """Load a masked LM from a local folder or the local HF cache (safetensors only); :class:`ModelError` on failure."""
    from transformers import AutoModelForMaskedLM, AutoTokenizer

    device = resolve_device(cfg, device)
    if cfg.quantization != "none" or cfg.adapter is not None or cfg.device_map is not None:
        raise ModelError("model.quantization, model.adapter, model.device_map: not supported for masked models")
    _offline()
    folder = _resolve_hf(cfg)
    files = _safetensors_files(folder, cfg.name)
    sha = weights_sha256(files, cache_root(cfg))
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(folder), local_files_only=True, trust_remote_code=cfg.trust_remote_code)
    except Exception as err:
        raise ModelError(f"model {cfg.name!r}: cannot load the tokenizer from {folder}: {_one_line(err)}") from err
    if cfg.attn_implementation == "batch_invariant":
        raise ModelError(f"model.attn_implementation: 'batch_invariant' is for causal models; {cfg.name!r} is a masked LM")
    try:
        kwargs = {"attn_implementation": cfg.attn_implementation} if cfg.attn_implementation else {}
        model = AutoModelForMaskedLM.from_pretrained(
            str(folder), dtype=_torch_dtype(cfg.dtype), use_safetensors=True, local_files_only=True,
            trust_remote_code=cfg.trust_remote_code, **kwargs,
        )
    except Exception as err:
        raise ModelError(f"model {cfg.name!r}: cannot load the masked-LM weights from {folder}: {_one_line(err)}") from err
    return finish_masked(model, tokenizer, name=cfg.name, sha256=sha, dtype=cfg.dtype, device=device, path=str(folder))


# --------------------------------------------------------------------------- scoring


@dataclass(frozen=True)
class Encoded:
    """A sentence's token ids and the token indices of its slots."""

    ids: list[int]
    target: list[int]  # token indices of T (empty for BASE)
    attribute: list[int]
    anchor: int  # the token the activations are read at (last of T; BASE: first after the slot)
    special: list[bool]


@dataclass(frozen=True)
class SentenceScores:
    """The scores of one (template, group) sentence; see the module docstring."""

    log_p_target: float
    log_p_prior: float
    log_p_attribute: float
    pll: float
    top_attribute_token: str
    n_tokens: int


def _overlap(offsets: Sequence[tuple[int, int]], span: tuple[int, int], special: Sequence[bool]) -> list[int]:
    a, b = span
    return [i for i, (s, e) in enumerate(offsets) if not special[i] and e > s and s < b and e > a]


class MaskedScorer:
    """Batched masked-LM forward passes for the audit (module docstring)."""

    def __init__(self, loaded: LoadedModel, batch_size: int = 32):
        self.loaded = loaded
        self.tok = loaded.tokenizer
        self.model = loaded.model
        self.batch_size = max(1, int(batch_size))
        self.mask_id = int(self.tok.mask_token_id)
        self.device = loaded.device

    def encode(self, text: str, target: tuple[int, int], attribute: tuple[int, int]) -> Encoded:
        """Token ids of ``text`` and the slots' token indices (from the fast tokenizer's offsets)."""
        enc = self.tok(text, return_offsets_mapping=True, return_special_tokens_mask=True, truncation=True)
        offsets = [tuple(o) for o in enc["offset_mapping"]]
        special = [bool(s) for s in enc["special_tokens_mask"]]
        t = _overlap(offsets, target, special)
        a = _overlap(offsets, attribute, special)
        if not a:
            raise ModelError(f"model {self.loaded.name!r}: the attribute of {text!r} maps to no token")
        if target[1] > target[0] and not t:
            raise ModelError(f"model {self.loaded.name!r}: the target of {text!r} maps to no token")
        if t:
            anchor = t[-1]
        else:
            after = [i for i, (s, e) in enumerate(offsets) if not special[i] and s >= target[0]]
            anchor = after[0] if after else max(i for i in range(len(offsets)) if not special[i])
        return Encoded(list(enc["input_ids"]), t, a, anchor, special)

    def _forward(self, rows: list[list[int]], hidden: bool = False):
        """Log-softmax over the vocabulary (and hidden states) of right-padded ``rows``."""
        import torch

        n = max(len(r) for r in rows)
        pad = self.tok.pad_token_id if self.tok.pad_token_id is not None else 0
        ids = torch.full((len(rows), n), pad, dtype=torch.long)
        mask = torch.zeros((len(rows), n), dtype=torch.long)
        for i, r in enumerate(rows):
            ids[i, : len(r)] = torch.tensor(r)
            mask[i, : len(r)] = 1
        with torch.no_grad():
            out = self.model(input_ids=ids.to(self.device), attention_mask=mask.to(self.device), output_hidden_states=hidden)
        logp = torch.log_softmax(out.logits.float(), dim=-1)
        return logp, (out.hidden_states if hidden else None)

    def _masked_sums(self, jobs: list[tuple[list[int], list[int], list[int]]]) -> list[float]:
        """For each (ids, masked positions, positions scored): sum over scored of log P(original id), in batches."""
        out: list[float] = []
        for start in range(0, len(jobs), self.batch_size):
            part = jobs[start : start + self.batch_size]
            rows = []
            for ids, masked, _ in part:
                r = list(ids)
                for i in masked:
                    r[i] = self.mask_id
                rows.append(r)
            logp, _ = self._forward(rows)
            for k, (ids, _, scored) in enumerate(part):
                out.append(float(sum(logp[k, i, ids[i]].item() for i in scored)))
        return out

    def score(self, encoded: Sequence[Encoded], pll: bool = True) -> list[SentenceScores]:
        """:class:`SentenceScores` of every encoded sentence (BASE sentences get NaN target scores)."""
        jobs_t, jobs_p, jobs_a, jobs_pll, owners = [], [], [], [], []
        for e in encoded:
            if e.target:
                jobs_t.append((e.ids, e.target, e.target))
                jobs_p.append((e.ids, e.target + e.attribute, e.target))
            jobs_a.append((e.ids, e.attribute, e.attribute))
        for k, e in enumerate(encoded):
            if pll and e.target:
                for i in range(len(e.ids)):
                    if not e.special[i] and i not in e.target:
                        jobs_pll.append((e.ids, [i], [i]))
                        owners.append(k)
        lt = iter(self._masked_sums(jobs_t))
        lp = iter(self._masked_sums(jobs_p))
        la = self._masked_sums(jobs_a)
        pll_sums = np.zeros(len(encoded))
        for k, v in zip(owners, self._masked_sums(jobs_pll)):
            pll_sums[k] += v
        tops = self._top_attribute(encoded)
        out = []
        for k, e in enumerate(encoded):
            has = bool(e.target)
            out.append(SentenceScores(
                log_p_target=next(lt) if has else math.nan,
                log_p_prior=next(lp) if has else math.nan,
                log_p_attribute=la[k] / len(e.attribute),
                pll=float(pll_sums[k]) if (pll and has) else math.nan,
                top_attribute_token=tops[k],
                n_tokens=len(e.ids),
            ))
        return out

    def _top_attribute(self, encoded: Sequence[Encoded]) -> list[str]:
        """The most likely token at the first attribute position with the attribute masked."""
        out: list[str] = []
        for start in range(0, len(encoded), self.batch_size):
            part = encoded[start : start + self.batch_size]
            rows = []
            for e in part:
                r = list(e.ids)
                for i in e.attribute:
                    r[i] = self.mask_id
                rows.append(r)
            logp, _ = self._forward(rows)
            for k, e in enumerate(part):
                out.append(self.tok.convert_ids_to_tokens(int(logp[k, e.attribute[0]].argmax())))
        return out

    def activations(self, encoded: Sequence[Encoded], positions: Sequence[str]) -> dict[str, np.ndarray]:
        """``{position: (n_layers, N, d_model)}`` hidden states of the unmasked sentences (module docstring)."""
        L, d = self.loaded.n_layers, self.loaded.d_model
        out = {p: np.zeros((L, len(encoded), d), dtype=np.float32) for p in positions}
        for start in range(0, len(encoded), self.batch_size):
            part = encoded[start : start + self.batch_size]
            _, hs = self._forward([e.ids for e in part], hidden=True)
            h = np.stack([x.float().cpu().numpy() for x in hs[1:]])  # (L, B, n, d): block outputs
            for k, e in enumerate(part):
                span = e.target or [e.anchor]
                if "last" in out:
                    out["last"][:, start + k] = h[:, k, e.anchor]
                if "demographic" in out:
                    out["demographic"][:, start + k] = h[:, k, span].mean(axis=1)
        return out


def pseudo_log_likelihood(loaded: LoadedModel, text: str, skip: Sequence[int] = ()) -> float:
    """PLL of ``text``: sum over non-special tokens i not in ``skip`` of log P(x_i | x with i masked), one row per i."""
    scorer = MaskedScorer(loaded)
    enc = scorer.tok(text, return_special_tokens_mask=True)
    ids, special = list(enc["input_ids"]), enc["special_tokens_mask"]
    jobs = [(ids, [i], [i]) for i in range(len(ids)) if not special[i] and i not in skip]
    return float(sum(scorer._masked_sums(jobs)))
