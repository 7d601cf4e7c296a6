"""The plain Hugging Face forward runner: P(Yes) and, on request, the residual stream.

``HFRunner(loaded).forward(texts)`` runs one left-padded batch of model texts (see
``extract.chat.model_text``) and returns a :class:`BatchOutput`. Logits are computed
at the last position only. With ``capture=True`` it also returns ``resid_post``: the
output of every decoder block at the last prompt token, shape
``(n_layers, B, d_model)`` float32. Entry ``l`` equals Hugging Face's
``output_hidden_states[l + 1]`` at that token for ``l < n_layers - 1``; the last entry
is the last block's output *before* the final norm (HF's last hidden state is after
it).

Batch invariance: in transformers 5.x a plain ``forward`` does not derive position
ids from the attention mask (it uses ``arange``), so under left padding every row
would be shifted by its pad count. Rotary models are nearly insensitive to that
(relative positions), but absolute-position models are not, so the runner always
passes ``position_ids = clamp(cumsum(mask) - 1, 0)``. A prompt's P(Yes) alone and in
a padded batch then agree to float32 round-off (~1e-6).

``score_prompts(runner, texts, batch_size)`` scores a whole list: identical texts are
computed once, prompts run longest first (little padding), results come back in the
input order.

Hooks: ``forward(capture=True)`` registers one forward hook per decoder block for
that call and removes exactly those afterwards (also on error); hooks registered by
anyone else are left alone.
"""

from __future__ import annotations

import inspect
import logging
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import torch

from extract.chat import ENCODE_KWARGS
from extract.model import LoadedModel, decoder_layers
from extract.scoring import p_yes_from_logits, yes_no_ids

log = logging.getLogger(__name__)


@dataclass
class BatchOutput:
    """What one forward pass yields, one entry per text."""

    p_yes: np.ndarray  # float64 (B,)
    p_yes_vocab: np.ndarray  # float64 (B,)
    first_token: list[str]  # decoded argmax token (not stripped)
    first_token_id: np.ndarray  # int64 (B,)
    n_tokens: np.ndarray  # int64 (B,), without padding
    resid_post: np.ndarray | None = None  # float32 (n_layers, B, d_model) at the last token


class HFRunner:
    """Runs a :class:`LoadedModel` with plain Hugging Face forward passes."""

    backend = "hf"

    def __init__(self, loaded: LoadedModel):
        self.loaded = loaded
        self.model = loaded.model
        self.tokenizer = loaded.tokenizer
        self.device = torch.device(loaded.device)
        self.layers = decoder_layers(self.model)
        self.n_layers = len(self.layers)
        self.d_model = loaded.d_model
        yes, no = yes_no_ids(self.tokenizer)
        vocab = self._logit_width()
        kept_yes = [i for i in yes if i < vocab]
        kept_no = [i for i in no if i < vocab]
        if (kept_yes, kept_no) != (yes, no):
            log.warning("yes/no ids beyond the model's %d logits are ignored", vocab)
        self.yes_ids, self.no_ids = kept_yes, kept_no
        params = inspect.signature(self.model.forward).parameters
        self._keep_kw = next((k for k in ("logits_to_keep", "num_logits_to_keep") if k in params), None)
        self._pass_positions = "position_ids" in params

    def _logit_width(self) -> int:
        out = self.model.get_output_embeddings()
        if out is not None and getattr(out, "out_features", None):
            return int(out.out_features)
        return int(self.model.config.get_text_config().vocab_size)

    # ------------------------------------------------------------- tokenization

    def n_tokens(self, text: str) -> int:
        """Number of tokens of one model text (as the model sees it)."""
        return len(self.tokenizer(text, **ENCODE_KWARGS)["input_ids"])

    def token_lengths(self, texts: Sequence[str]) -> np.ndarray:
        """Token counts of many texts (one batched tokenizer call)."""
        if not texts:
            return np.zeros(0, dtype=np.int64)
        ids = self.tokenizer(list(texts), **ENCODE_KWARGS)["input_ids"]
        return np.array([len(x) for x in ids], dtype=np.int64)

    def encode(self, texts: Sequence[str]) -> dict[str, torch.Tensor]:
        """Left-padded ``input_ids``, ``attention_mask`` and mask-derived ``position_ids``."""
        enc = self.tokenizer(list(texts), return_tensors="pt", padding=True, **ENCODE_KWARGS)
        mask = enc["attention_mask"]
        if self.tokenizer.padding_side != "left" and not bool(mask[:, -1].all()):
            raise RuntimeError("the tokenizer must pad on the left (padding_side='left')")
        batch = {"input_ids": enc["input_ids"].to(self.device), "attention_mask": mask.to(self.device)}
        if self._pass_positions:
            batch["position_ids"] = (mask.cumsum(-1) - 1).clamp(min=0).to(self.device)
        return batch

    # ------------------------------------------------------------- forward

    def forward(self, texts: Sequence[str], capture: bool = False) -> BatchOutput:
        """Run one batch; ``capture=True`` adds ``resid_post`` at the last token."""
        texts = list(texts)
        if not texts:
            raise ValueError("forward needs at least one text")
        batch = self.encode(texts)
        captured: dict[int, torch.Tensor] = {}
        handles = []
        try:
            if capture:
                for i, layer in enumerate(self.layers):
                    handles.append(layer.register_forward_hook(self._make_hook(i, captured)))
            kwargs: dict[str, Any] = dict(batch, use_cache=False)
            if self._keep_kw is not None:
                kwargs[self._keep_kw] = 1
            with torch.inference_mode():
                out = self.model(**kwargs)
        finally:
            for h in handles:
                h.remove()
        logits = out.logits[:, -1, :]
        p_yes, p_vocab, first = p_yes_from_logits(logits, self.yes_ids, self.no_ids)
        first_ids = first.cpu().numpy().astype(np.int64)
        resid = None
        if capture:
            missing = [i for i in range(self.n_layers) if i not in captured]
            if missing:
                raise RuntimeError(f"decoder layers {missing} produced no output during the forward pass")
            resid = torch.stack([captured[i] for i in range(self.n_layers)]).numpy()
        return BatchOutput(
            p_yes=p_yes.cpu().numpy().astype(np.float64),
            p_yes_vocab=p_vocab.cpu().numpy().astype(np.float64),
            first_token=[self.tokenizer.decode([int(t)]) for t in first_ids],
            first_token_id=first_ids,
            n_tokens=batch["attention_mask"].sum(-1).cpu().numpy().astype(np.int64),
            resid_post=resid,
        )

    @staticmethod
    def _make_hook(index: int, store: dict[int, torch.Tensor]):
        def hook(module, inputs, output):
            hidden = output[0] if isinstance(output, (tuple, list)) else output
            store[index] = hidden[:, -1, :].detach().to(device="cpu", dtype=torch.float32).clone()

        return hook


def score_prompts(
    runner: HFRunner,
    texts: Sequence[str],
    batch_size: int = 8,
    progress: bool = True,
    capture: bool = False,
) -> dict[str, np.ndarray]:
    """Score ``texts``; returns arrays in input order.

    Keys: ``p_yes``, ``p_yes_vocab`` (float64), ``first_token`` (object array of str),
    ``first_token_id``, ``n_tokens`` (int64), and with ``capture=True`` ``resid_post``
    ``(n_layers, N, d_model)`` float32. Identical texts run once; batches are formed
    longest first; a tqdm bar shows progress unless ``progress=False``.
    """
    from tqdm.auto import tqdm

    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    texts = list(texts)
    unique = list(dict.fromkeys(texts))
    where = {t: i for i, t in enumerate(unique)}
    inverse = np.array([where[t] for t in texts], dtype=np.int64)
    m = len(unique)
    p_yes = np.zeros(m, dtype=np.float64)
    p_vocab = np.zeros(m, dtype=np.float64)
    first_id = np.zeros(m, dtype=np.int64)
    n_tok = np.zeros(m, dtype=np.int64)
    first_tok = np.empty(m, dtype=object)
    resid = np.zeros((runner.n_layers, m, runner.d_model), dtype=np.float32) if capture else None
    order = np.argsort(-runner.token_lengths(unique), kind="stable")
    with torch.inference_mode(), tqdm(total=m, desc="prompts", unit="prompt", disable=not progress) as bar:
        for start in range(0, m, batch_size):
            idx = order[start : start + batch_size]
            out = runner.forward([unique[i] for i in idx], capture=capture)
            p_yes[idx] = out.p_yes
            p_vocab[idx] = out.p_yes_vocab
            first_id[idx] = out.first_token_id
            n_tok[idx] = out.n_tokens
            for j, i in enumerate(idx):
                first_tok[i] = out.first_token[j]
            if resid is not None:
                resid[:, idx, :] = out.resid_post
            bar.update(len(idx))
    result = {
        "p_yes": p_yes[inverse],
        "p_yes_vocab": p_vocab[inverse],
        "first_token": first_tok[inverse],
        "first_token_id": first_id[inverse],
        "n_tokens": n_tok[inverse],
    }
    if resid is not None:
        result["resid_post"] = resid[:, inverse, :]
    return result
