"""Batch-invariant attention: each sequence attends over its own tokens only.

Registered with transformers as ``attn_implementation="batch_invariant"``
(:func:`register`; ``load_model`` calls it). For batch item ``b`` whose real tokens are
the positions ``I_b`` (with left padding, the last ``n_b``)::

    out_b[I_b] = softmax(q_b k_b^T * scaling (+ softcap) + M_b[I_b, I_b]) v_b      out_b[not I_b] = 0

where ``q_b, k_b, v_b`` are the query/key/value rows at ``I_b`` and ``M_b`` is the mask
transformers built for the layer (causal, sliding window, ...), restricted to those rows
and columns. Every product then has the shape it has when the prompt runs alone, so the
result does not depend on how long the other prompts of the batch are: with ``sdpa`` or
``eager`` a padded prompt's softmax and its ``P @ V`` sum run over the padded length,
which regroups the float additions (round-off, ~1e-7). That round-off is harmless in
float32 but int8 amplifies it: a value moved across a rounding boundary flips an int8
code, and over 30 layers SmolLM2-135M's int8 P(Yes) moved by up to 0.065 with its
batch-mates. With this attention and :class:`extract.precision.Int8Linear`'s exact
per-row products, an int8 prompt's hidden states are bitwise the same alone and in any
batch (on the embedded default and in the tests); in float32 the remaining float GEMMs
may still regroup with the batch's shape (on SmolLM2-135M here they did not).

``ModelConfig.attn_implementation: null`` uses it for ``quantization: int8`` (see
:func:`default_attn_implementation`); any run can ask for it explicitly. It serves the
``hf`` and ``nnsight`` backends (both run the Hugging Face modules); the TransformerLens
bridge computes attention itself, so ``transformer_lens`` runs are not bitwise
batch-invariant. Cost: one small attention per sequence instead of one batched call
(about +10 % of a float32 forward on SmolLM2-135M, batches of 8, one CPU thread).

Models whose attention has learned sinks (``module.sinks``) are refused, since this
function would silently drop them.
"""

from __future__ import annotations

import torch

NAME = "batch_invariant"


def repeat_kv(x: torch.Tensor, n_rep: int) -> torch.Tensor:
    """(B, H_kv, T, d) -> (B, H_kv * n_rep, T, d): each key/value head repeated for its query heads."""
    if n_rep == 1:
        return x
    b, h, t, d = x.shape
    return x[:, :, None].expand(b, h, n_rep, t, d).reshape(b, h * n_rep, t, d)


def _real_positions(mask: torch.Tensor | None, b: int, length: int) -> torch.Tensor | None:
    """Indices of item ``b``'s real tokens (key columns any query may see); ``None``: all of them."""
    if mask is None:
        return None
    allowed = mask[b, 0] if mask.dtype == torch.bool else mask[b, 0] == 0
    cols = allowed.any(dim=0).nonzero().squeeze(1)
    return None if cols.numel() == length else cols


def batch_invariant_attention(
    module: torch.nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    scaling: float,
    dropout: float = 0.0,
    softcap: float | None = None,
    **kwargs,
) -> tuple[torch.Tensor, None]:
    """Attention computed per sequence over its own tokens (the module docstring's formula).

    ``query`` (B, H, T, d); ``key``/``value`` (B, H_kv, T, d); ``attention_mask`` the 4-D
    (B, 1, T, T) mask transformers built (float: 0 allowed, or bool: True allowed) or
    ``None`` (no padding: causal). Returns (B, T, H, d) and no attention weights.
    """
    if getattr(module, "sinks", None) is not None:
        raise NotImplementedError("attn_implementation 'batch_invariant' does not support attention sinks; use eager")
    if query.shape[2] != key.shape[2]:
        raise NotImplementedError("attn_implementation 'batch_invariant' runs whole prompts (no KV cache)")
    n_rep = int(getattr(module, "num_key_value_groups", query.shape[1] // key.shape[1]))
    key, value = repeat_kv(key, n_rep), repeat_kv(value, n_rep)
    batch, heads, length, _ = query.shape
    out = query.new_zeros(batch, length, heads, value.shape[-1])
    for b in range(batch):
        idx = _real_positions(attention_mask, b, length)
        q, k, v = query[b], key[b], value[b]
        if idx is not None:
            q, k, v = q[:, idx], k[:, idx], v[:, idx]
        q, k, v = q.contiguous(), k.contiguous(), v.contiguous()
        n = q.shape[1]
        weights = torch.matmul(q, k.transpose(1, 2)) * scaling  # (H, n, n)
        if softcap:
            weights = torch.tanh(weights / softcap) * softcap
        lowest = torch.finfo(weights.dtype).min
        if attention_mask is None:
            weights = weights + torch.full((n, n), lowest, dtype=weights.dtype, device=weights.device).triu(1)
        else:
            m = attention_mask[b, 0]
            if idx is not None:
                m = m[idx][:, idx]
            weights = weights.masked_fill(~m, lowest) if m.dtype == torch.bool else weights + m
        weights = torch.softmax(weights, dim=-1, dtype=torch.float32).to(q.dtype)
        rows = torch.matmul(weights, v).transpose(0, 1)  # (n, H, d)
        if idx is None:
            out[b] = rows
        else:
            out[b, idx] = rows
    return out, None


def register() -> None:
    """Make ``attn_implementation="batch_invariant"`` known to transformers (idempotent)."""
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface, eager_mask

    AttentionInterface.register(NAME, batch_invariant_attention)
    AttentionMaskInterface.register(NAME, eager_mask)  # always a 4-D float mask, never skipped


def default_attn_implementation(attn_implementation: str | None, quantization: str) -> str | None:
    """The attention a model loads with: the configured one, else ``batch_invariant`` for int8.

    ``None`` leaves the choice to transformers (``sdpa`` where supported).
    """
    if attn_implementation is not None:
        return attn_implementation
    return NAME if quantization == "int8" else None
