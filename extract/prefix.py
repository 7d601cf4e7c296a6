"""Prefix reuse: run the decoder blocks below an intervention once, and only the rest per intervention.

An intervention that rewrites the output h_ℓ of block ℓ cannot change blocks 0..ℓ, so
for many interventions at ℓ on the same prompts the result of blocks 0..ℓ is computed
once per batch and kept (every position, in memory for that batch), and each
intervention runs only blocks ℓ+1..L−1, the final norm and the output head:

    prefix:  h_ℓ = (block_ℓ ∘ … ∘ block_0)(embed(x))              once per batch
    suffix:  logits = head(norm((block_{L−1} ∘ … ∘ block_{ℓ+1})(f(h_ℓ))))   per edit f

This is a *truncated forward* through the model's own modules, not a re-implemented
model: :meth:`PrefixRunner.prefix` runs the runner's ordinary Hugging Face forward
with forward pre-hooks recording the arguments the model passes to its blocks (the
causal mask, the rotary ``position_embeddings``, ``position_ids``…), once per *block
kind* (:func:`block_kinds`: the same for every block of a Llama; per
``config.layer_types`` for Gemma, whose sliding-window layers get another mask and
other rotary embeddings than its full-attention layers), and forward hooks on the
requested blocks (recording their outputs); the hook of the deepest requested block
stops the forward once every kind's arguments are known, so nothing above it runs
(on Gemma 3 at least up to its first full-attention block, layer 5). :meth:`PrefixRunner.suffix` then calls the model's remaining block
modules with those recorded arguments, exactly as the model's own loop does, then
its final norm (``norm`` / ``ln_f`` / ``final_layernorm`` beside the block list) and
``get_output_embeddings()`` at the last position, and scores the logits as every
runner does (:func:`extract.scoring.score_logits`).

Backends: the three runners run the same Hugging Face module tree (the
TransformerLens bridge replaces the blocks in place by its ``BlockBridge`` wrappers,
which the suffix then calls; nnsight's instrumented modules run their original
forward outside a trace), so prefix reuse serves all three, and equals each one's
full re-run with the same hook to float32 round-off (tests/test_explain_trace.py, on a
Llama and on a Gemma 3 with sliding-window layers).
A model whose output is not ``head(norm(h))`` (e.g. logit soft-capping) would not
match: :meth:`PrefixRunner.check` compares one batch's un-edited suffix with the
runner's full forward, and :func:`probes.causal.explain_tier` falls back to full
re-runs (with a warning) when they differ by more than ``CHECK_TOL``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np
import torch

from .model import decoder_layers, layers_path
from .scoring import score_logits
from .sites import first_tensor

log = logging.getLogger(__name__)

#: names of the final norm beside the decoder block list, tried in order
FINAL_NORM_NAMES = ("norm", "ln_f", "final_layernorm", "final_layer_norm")
#: the largest |ΔP(Yes)| between a full forward and an un-edited suffix that counts as equal
CHECK_TOL = 1e-4


class _Stop(Exception):
    """Raised by the deepest prefix hook: the blocks above it are not needed."""


@dataclass
class Prefix:
    """The blocks' outputs of one batch at the requested layers, and how to continue from them."""

    hidden: dict[int, torch.Tensor]  # layer -> (B, T, d), every position
    args: dict[Any, tuple]  # block kind -> positional arguments after hidden_states the model passes
    kwargs: dict[Any, dict[str, Any]]  # block kind -> keyword arguments the model passes
    kinds: list[Any]  # the kind of every block (block_kinds)
    attention_mask: torch.Tensor  # (B, T), left-padded

    @property
    def batch_size(self) -> int:
        return int(self.attention_mask.shape[0])

    def block_arguments(self, layer: int) -> tuple[tuple, dict[str, Any]]:
        """The (args, kwargs) the model passes to block ``layer``."""
        kind = self.kinds[layer]
        return self.args[kind], self.kwargs[kind]


def block_kinds(model: torch.nn.Module, n_blocks: int) -> list[Any]:
    """The kind of each decoder block: blocks of one kind get the same arguments from the model.

    ``config.layer_types`` where the model has it (Gemma 2/3: ``sliding_attention`` layers
    get the sliding-window mask and the local rotary embeddings, ``full_attention`` layers
    the global ones), else one kind for every block (Llama, Qwen, Mistral...).
    """
    cfg = model.config
    text = cfg.get_text_config() if hasattr(cfg, "get_text_config") else cfg
    types = getattr(text, "layer_types", None)
    if isinstance(types, (list, tuple)) and len(types) >= n_blocks:
        return list(types[:n_blocks])
    return [None] * n_blocks


def final_norm(model: torch.nn.Module) -> torch.nn.Module:
    """The final norm module beside the decoder block list (``model.norm``, ``transformer.ln_f``…)."""
    parent = model
    for part in layers_path(model).split(".")[:-1]:
        parent = getattr(parent, part)
    for name in FINAL_NORM_NAMES:
        module = getattr(parent, name, None)
        if isinstance(module, torch.nn.Module):
            return module
    raise ValueError(f"{type(model).__name__}: no final norm ({' / '.join(FINAL_NORM_NAMES)}) beside the decoder blocks")


class PrefixRunner:
    """Prefix/suffix forwards over a runner's model (any backend of :mod:`extract.backends`)."""

    def __init__(self, runner):
        self.runner = runner
        self.model = runner.model
        self.norm = final_norm(self.model)
        self.head = self.model.get_output_embeddings()

    def prefix(self, texts: Sequence[str], layers: Sequence[int]) -> Prefix:
        """Run blocks 0..max(layers) on ``texts`` (one left-padded batch); keep each requested block's output."""
        layers = sorted({int(x) for x in layers})
        if not layers:
            raise ValueError("prefix needs at least one layer")
        blocks = decoder_layers(self.model)
        if layers[0] < 0 or layers[-1] >= len(blocks):
            raise ValueError(f"layers {layers} out of range 0..{len(blocks) - 1}")
        batch = self.runner.encode(list(texts))
        kinds = block_kinds(self.model, len(blocks))
        hidden: dict[int, torch.Tensor] = {}
        args: dict[Any, tuple] = {}
        kwargs_by_kind: dict[Any, dict[str, Any]] = {}

        def all_seen() -> bool:
            return len(kwargs_by_kind) == len(set(kinds))

        def make_pre(index: int):
            def pre(module, block_args, block_kwargs):
                if kinds[index] not in kwargs_by_kind:
                    args[kinds[index]], kwargs_by_kind[kinds[index]] = tuple(block_args[1:]), dict(block_kwargs)
                if index > layers[-1] and all_seen():
                    raise _Stop  # this block's arguments were all that was still needed

            return pre

        def make(layer: int):
            def hook(module, inputs, output):
                hidden[layer] = first_tensor(output).detach()
                if layer == layers[-1] and all_seen():
                    raise _Stop

            return hook

        # a block kind first used above the deepest layer (a later full-attention layer) runs
        # the forward on to that block, whose arguments are recorded before it would run
        handles = [block.register_forward_pre_hook(make_pre(i), with_kwargs=True) for i, block in enumerate(blocks)]
        handles += [blocks[layer].register_forward_hook(make(layer)) for layer in layers]
        try:
            with torch.inference_mode():
                self.model(**self.runner._model_kwargs(batch))
        except _Stop:
            pass
        finally:
            for h in handles:
                h.remove()
        missing = [layer for layer in layers if layer not in hidden]
        if missing or not all_seen():
            raise RuntimeError(f"prefix: blocks {missing} did not run")
        return Prefix(hidden, args, kwargs_by_kind, kinds, batch["attention_mask"])

    def suffix(self, state: Prefix, layer: int, edit: Callable[[torch.Tensor], torch.Tensor] | None = None) -> np.ndarray:
        """P(Yes) (float64, (B,)) when block ``layer``'s output is replaced by ``edit(h_layer)``.

        ``edit=None`` leaves it as it is (the un-edited forward).
        """
        blocks = decoder_layers(self.model)
        with torch.inference_mode():
            h = state.hidden[layer]
            if edit is not None:
                h = edit(h)
            for index in range(layer + 1, len(blocks)):
                block_args, block_kwargs = state.block_arguments(index)
                h = first_tensor(blocks[index](h, *block_args, **block_kwargs))
            logits = self.head(self.norm(h[:, -1:, :]))[:, -1, :]
        p_yes, _, _, _ = score_logits(logits, self.runner.yes_ids, self.runner.no_ids)
        return p_yes.cpu().numpy().astype(np.float64)

    def check(self, texts: Sequence[str], layer: int) -> float:
        """max |P(Yes)| difference between the runner's full forward and an un-edited suffix from ``layer``."""
        full = self.runner.forward(list(texts)).p_yes
        part = self.suffix(self.prefix(texts, [layer]), layer)
        return float(np.abs(full - part).max())
