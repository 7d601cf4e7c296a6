"""P(Yes) from next-token logits (docs/methods/metrics.md, section P(Yes)).

Y = every vocabulary id whose decoded text, stripped and lower-cased, is ``yes``;
N likewise for ``no``. From the logits z of the first generated position:

- ``p_yes = Σ_Y exp z / Σ_{Y∪N} exp z`` (computed as ``sigmoid(lse(z_Y) − lse(z_N))``),
- ``p_yes_vocab = Σ_Y softmax(z)`` (``exp(lse(z_Y) − lse(z))``),
- ``option_mass = Σ_{Y∪N} softmax(z)`` (``exp(lse(z_{Y∪N}) − lse(z))``, clipped to at
  most 1 against float round-off): the share of the next-token probability on the
  answer options. ``p_yes`` renormalises over Y∪N, so when ``option_mass`` is small
  the model mostly wants to say something else and ``p_yes`` is not its decision
  (lm-evaluation-harness's discrim_eval refuses P(Yes) below 0.99);
  ``mfarm.option_mass`` summarises it,
- ``first_token`` = argmax z.

Everything is computed in float32 whatever the model's dtype, from one set of
log-sum-exps: :func:`score_logits` returns all four, :func:`p_yes_from_logits` the
historical three.
"""

from __future__ import annotations

import weakref
from typing import NamedTuple, Sequence

import torch

_cache: "weakref.WeakKeyDictionary[object, tuple[int, tuple[list[int], list[int]]]]" = weakref.WeakKeyDictionary()


def decoded_vocabulary(tokenizer) -> list[str]:
    """``tokenizer.decode([i])`` for every id ``0 .. len(tokenizer)-1``.

    Fast tokenizers decode the whole vocabulary in one batched call of the Rust
    backend (about 50 ms for 49k ids); others one id at a time.
    """
    n = len(tokenizer)
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None:
        return backend.decode_batch([[i] for i in range(n)], skip_special_tokens=False)
    return [tokenizer.decode([i]) for i in range(n)]


def yes_no_ids(tokenizer) -> tuple[list[int], list[int]]:
    """(Y, N): the ids whose decoded text, stripped and lower-cased, is ``yes`` / ``no``.

    Scans the whole vocabulary (added tokens included) once per tokenizer; the result
    is cached (and recomputed if tokens are added). Raises ``ValueError`` when either
    set is empty.
    """
    n = len(tokenizer)
    try:
        hit = _cache.get(tokenizer)
    except TypeError:
        hit = None
    if hit is not None and hit[0] == n:
        y, no = hit[1]
        return list(y), list(no)
    yes_ids: list[int] = []
    no_ids: list[int] = []
    for i, s in enumerate(decoded_vocabulary(tokenizer)):
        s = s.strip().lower()
        if s == "yes":
            yes_ids.append(i)
        elif s == "no":
            no_ids.append(i)
    if not yes_ids or not no_ids:
        raise ValueError(f"the tokenizer has no token decoding to yes/no (yes: {yes_ids}, no: {no_ids})")
    try:
        _cache[tokenizer] = (n, (yes_ids, no_ids))
    except TypeError:
        pass
    return list(yes_ids), list(no_ids)


def answer_tokens(tokenizer, yes_ids: Sequence[int], no_ids: Sequence[int]) -> dict[str, list]:
    """The Yes/No id sets with their decoded texts (results.json ``model.answer_tokens``)."""
    decode = lambda ids: [tokenizer.decode([int(i)]) for i in ids]  # noqa: E731
    return {"yes_ids": [int(i) for i in yes_ids], "yes_tokens": decode(yes_ids),
            "no_ids": [int(i) for i in no_ids], "no_tokens": decode(no_ids)}


class LogitScores(NamedTuple):
    """What :func:`score_logits` returns: float32 ``(B,)`` tensors and int64 argmax ids."""

    p_yes: torch.Tensor
    p_yes_vocab: torch.Tensor
    option_mass: torch.Tensor
    first_token_id: torch.Tensor


def score_logits(logits: torch.Tensor, yes_ids: Sequence[int], no_ids: Sequence[int]) -> LogitScores:
    """``(p_yes, p_yes_vocab, option_mass, first_token_id)`` for logits of shape ``(B, V)``.

    ``option_mass = Σ_{Y∪N} softmax(z)`` in ``[0, 1]``. Stable for extreme logits
    (log-sum-exp in float32; bfloat16/float16 inputs are upcast).
    """
    if logits.dim() != 2:
        raise ValueError(f"logits must have shape (B, V), got {tuple(logits.shape)}")
    if len(yes_ids) == 0 or len(no_ids) == 0:
        raise ValueError("yes_ids and no_ids must not be empty")
    if set(yes_ids) & set(no_ids):
        raise ValueError("yes_ids and no_ids overlap")
    z = logits.detach().to(torch.float32)
    y = torch.as_tensor(list(yes_ids), dtype=torch.long, device=z.device)
    n = torch.as_tensor(list(no_ids), dtype=torch.long, device=z.device)
    lse_y = torch.logsumexp(z.index_select(1, y), dim=1)
    lse_n = torch.logsumexp(z.index_select(1, n), dim=1)
    lse_all = torch.logsumexp(z, dim=1)
    p_yes = torch.sigmoid(lse_y - lse_n)  # = exp(lse_y - logaddexp(lse_y, lse_n)), exact near 0 and 1
    p_yes_vocab = torch.exp(lse_y - lse_all)
    option_mass = torch.exp(torch.logaddexp(lse_y, lse_n) - lse_all).clamp(max=1.0)
    first = torch.argmax(z, dim=1)
    return LogitScores(p_yes, p_yes_vocab, option_mass, first)


def p_yes_from_logits(
    logits: torch.Tensor, yes_ids: Sequence[int], no_ids: Sequence[int]
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(p_yes, p_yes_vocab, first_token_id)`` for logits of shape ``(B, V)``.

    Returns float32 tensors of shape ``(B,)`` and an int64 tensor of argmax ids. Stable
    for extreme logits (log-sum-exp in float32; bfloat16/float16 inputs are upcast).
    The same numbers as :func:`score_logits`, without the option mass.
    """
    p_yes, p_yes_vocab, _, first = score_logits(logits, yes_ids, no_ids)
    return p_yes, p_yes_vocab, first
