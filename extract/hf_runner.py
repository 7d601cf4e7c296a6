"""The plain Hugging Face forward runner, and what every runner shares.

``HFRunner(loaded).forward(texts)`` runs one left-padded batch of model texts (see
``extract.chat.model_text``) and returns a :class:`BatchOutput`. Logits are computed
at the last position only. With ``capture=True`` it also returns activations at the
requested sites and positions (``extract.sites``): ``acts[(site, position)]`` is a
float32 array ``(n_layers, B, d_model)``; ``resid_post`` is a shortcut for
``acts[("resid_post", "last")]``. Entry ``l`` of ``resid_post`` equals Hugging
Face's ``output_hidden_states[l + 1]`` at that token for ``l < n_layers - 1``; the
last entry is the last block's output *before* the final norm (HF's last hidden
state is after it). P(Yes) and the activations come from the same forward pass.
``BatchOutput.option_mass`` is the next-token probability on the Yes ids plus the
No ids, from the same logits as P(Yes) (``extract.scoring.score_logits``): how
much of the model's answer the renormalised P(Yes) speaks for.

Every runner (:class:`HFRunner`; ``extract.tl_runner.TLRunner``;
``extract.nnsight_runner.NNsightRunner``) derives from :class:`BaseRunner` and so
shares the tokenisation (``ENCODE_KWARGS``, left padding, mask-derived position
ids), the Yes/No vocabulary, the validation of sites/positions and the output
assembly (P(Yes), P(Yes) over the vocabulary and the option mass, all from the
backend's last-position logits by :func:`extract.scoring.score_logits`): their model
inputs are identical, only the way activations (and logits) are read differs.

Batch invariance: in transformers 5.x a plain ``forward`` does not derive position
ids from the attention mask (it uses ``arange``), so under left padding every row
would be shifted by its pad count. Rotary models are nearly insensitive to that
(relative positions), but absolute-position models are not, so the runners always
pass ``position_ids = clamp(cumsum(mask) - 1, 0)``. A prompt's P(Yes) alone and in
a padded batch then agree to float32 round-off (~1e-6).

``score_prompts(runner, texts, batch_size)`` scores a whole list: identical texts are
computed once, prompts run longest first (little padding), results come back in the
input order.

Hooks: ``HFRunner.forward(capture=True)`` registers forward hooks on the decoder
blocks (and their attention / MLP modules for ``attn_out`` / ``mlp_out``) for that
call and removes exactly those afterwards (also on error); hooks registered by
anyone else are left alone. The modules are looked up at each call, so the runner
also works on a model another backend has wrapped (a TransformerLens bridge
replaces the blocks in place).
"""

from __future__ import annotations

import inspect
import logging
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np
import torch

from .chat import ENCODE_KWARGS
from .model import LoadedModel, decoder_layers
from .scoring import score_logits, yes_no_ids
from .sites import CapturePlan, first_tensor, normalize_positions, normalize_sites, submodule_name

log = logging.getLogger(__name__)


@dataclass
class BatchOutput:
    """What one forward pass yields, one entry per text."""

    p_yes: np.ndarray  # float64 (B,)
    p_yes_vocab: np.ndarray  # float64 (B,)
    first_token: list[str]  # decoded argmax token (not stripped)
    first_token_id: np.ndarray  # int64 (B,)
    n_tokens: np.ndarray  # int64 (B,), without padding
    option_mass: np.ndarray  # float64 (B,): Σ softmax over the Yes ids ∪ No ids, in [0, 1]
    resid_post: np.ndarray | None = None  # float32 (n_layers, B, d_model) at the last token
    acts: dict[tuple[str, str], np.ndarray] = field(default_factory=dict)  # (site, position) -> (n_layers, B, d)


class BaseRunner:
    """Tokenisation, validation and output assembly shared by every backend.

    Subclasses set ``backend`` and implement ``_run(batch, plan) -> logits (B, V)``
    at the last position, calling ``plan.record(site, layer, hidden)`` for every
    captured activation when ``plan`` is not ``None``.
    """

    backend = "base"

    def __init__(self, loaded: LoadedModel):
        self.loaded = loaded
        self.model = loaded.model
        self.tokenizer = loaded.tokenizer
        self.device = torch.device(loaded.device)
        self.n_layers = int(loaded.n_layers)
        self.d_model = int(loaded.d_model)
        yes, no = yes_no_ids(self.tokenizer)
        vocab = self._logit_width()
        kept_yes = [i for i in yes if i < vocab]
        kept_no = [i for i in no if i < vocab]
        if (kept_yes, kept_no) != (yes, no):
            log.warning("yes/no ids beyond the model's %d logits are ignored", vocab)
        self.yes_ids, self.no_ids = kept_yes, kept_no
        # the class's forward: an instance may carry a wrapper (nnsight patches ``forward``)
        params = inspect.signature(type(self.model).forward).parameters
        self._keep_kw = next((k for k in ("logits_to_keep", "num_logits_to_keep") if k in params), None)
        self._pass_positions = "position_ids" in params

    def _logit_width(self) -> int:
        cfg = self.model.config
        text_cfg = cfg.get_text_config() if hasattr(cfg, "get_text_config") else cfg
        out = self.model.get_output_embeddings()
        width = getattr(getattr(out, "weight", None), "shape", None)
        if width is not None and len(width) == 2:
            return int(width[0])
        return int(text_cfg.vocab_size)

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

    def _model_kwargs(self, batch: dict[str, torch.Tensor]) -> dict[str, Any]:
        """The model's keyword arguments: the batch, no KV cache, logits at the last position."""
        kwargs: dict[str, Any] = dict(batch, use_cache=False)
        if self._keep_kw is not None:
            kwargs[self._keep_kw] = 1
        return kwargs

    # ------------------------------------------------------------- forward

    def forward(
        self,
        texts: Sequence[str],
        capture: bool = False,
        sites: Sequence[str] = ("resid_post",),
        positions: Sequence[str] = ("last",),
        demographic_positions: Sequence[Sequence[int]] | None = None,
    ) -> BatchOutput:
        """Run one batch: P(Yes) and the option mass, and with ``capture=True`` the activations.

        ``sites`` ⊆ ``extract.sites.SITES``, ``positions`` ⊆ ``extract.sites.POSITIONS``;
        ``"demographic"`` needs ``demographic_positions``: one non-empty list of token
        indices (into the unpadded tokens) per text. ``ValueError`` on a bad request,
        raised before the model runs.
        """
        texts = list(texts)
        if not texts:
            raise ValueError("forward needs at least one text")
        if capture:
            normalize_sites(sites)
            normalize_positions(positions)
        batch = self.encode(texts)
        plan = None
        if capture:
            plan = CapturePlan.build(sites, positions, demographic_positions, batch["attention_mask"], self.n_layers)
        with torch.inference_mode():
            logits = self._run(batch, plan)
        p_yes, p_vocab, mass, first = score_logits(logits, self.yes_ids, self.no_ids)
        first_ids = first.cpu().numpy().astype(np.int64)
        acts = plan.acts() if plan is not None else {}
        return BatchOutput(
            p_yes=p_yes.cpu().numpy().astype(np.float64),
            p_yes_vocab=p_vocab.cpu().numpy().astype(np.float64),
            first_token=[self.tokenizer.decode([int(t)]) for t in first_ids],
            first_token_id=first_ids,
            n_tokens=batch["attention_mask"].sum(-1).cpu().numpy().astype(np.int64),
            option_mass=mass.cpu().numpy().astype(np.float64),
            resid_post=acts.get(("resid_post", "last")),
            acts=acts,
        )

    def _run(self, batch: dict[str, torch.Tensor], plan: CapturePlan | None) -> torch.Tensor:
        raise NotImplementedError


class HFRunner(BaseRunner):
    """Runs a :class:`LoadedModel` with plain Hugging Face forward passes and torch hooks."""

    backend = "hf"

    def __init__(self, loaded: LoadedModel):
        super().__init__(loaded)
        self.layers = decoder_layers(self.model)

    def _run(self, batch: dict[str, torch.Tensor], plan: CapturePlan | None) -> torch.Tensor:
        handles = []
        try:
            if plan is not None:
                layers = decoder_layers(self.model)  # looked up now: a bridge may have replaced them
                for i, layer in enumerate(layers):
                    for site in plan.sites:
                        module = layer if site == "resid_post" else getattr(layer, submodule_name(layer, site))
                        handles.append(module.register_forward_hook(_hook(plan, site, i)))
            out = self.model(**self._model_kwargs(batch))
        finally:
            for h in handles:
                h.remove()
        return out.logits[:, -1, :]


def _hook(plan: CapturePlan, site: str, layer: int):
    def hook(module, inputs, output):
        plan.record(site, layer, first_tensor(output))

    return hook


def score_prompts(
    runner: BaseRunner,
    texts: Sequence[str],
    batch_size: int = 8,
    progress: bool = True,
    capture: bool = False,
) -> dict[str, np.ndarray]:
    """Score ``texts``; returns arrays in input order.

    Keys: ``p_yes``, ``p_yes_vocab`` (float64), ``first_token`` (object array of str),
    ``first_token_id``, ``n_tokens`` (int64), and with ``capture=True`` ``resid_post``
    ``(n_layers, N, d_model)`` float32 (at the last token). Identical texts run once;
    batches are formed longest first; a tqdm bar shows progress unless ``progress=False``.
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
