"""The TransformerLens backend: a ``TransformerBridge`` over the loaded Hugging Face model.

``TLRunner(loaded)`` wraps ``loaded.model`` in a TransformerLens 4.x
``TransformerBridge`` and runs the same left-padded batches as
:class:`extract.hf_runner.HFRunner` (same tokenisation, same ``position_ids``), via
``bridge.run_with_hooks(input_ids, fwd_hooks=..., attention_mask=..., position_ids=...,
logits_to_keep=1, use_cache=False)``: one forward gives the logits at the last
position (P(Yes) and the option mass, scored by ``BaseRunner.forward`` exactly as
for the other backends) and the activations, each reduced to its positions inside the
hook (``extract.sites.CapturePlan``), so no full cache is materialised.

Booting: ``transformer_lens.model_bridge.sources.build_bridge_from_module(model,
architecture, hf_config=model.config, tokenizer=None)``, TransformerLens's public
builder for a bridge around a pre-loaded module (exported from
``transformer_lens.model_bridge.sources``; the architecture comes from
``determine_architecture_from_hf_config``). It takes the same steps as
``TransformerBridge.boot_transformers(name, hf_model=model, tokenizer=tok)``
(config translation, architecture adapter, ``prepare_model``, ``TransformersDriver``),
without the two side effects that make ``boot_transformers`` unsuitable here:
it re-creates the tokenizer with ``AutoTokenizer.from_pretrained(tokenizer.name_or_path,
add_bos_token=True)`` (a disk or hub lookup; a ``KeyError`` for a tokenizer built in
memory, such as ``extract.tiny``'s), and it switches the *shared* model to eager
attention. The builder makes no network or disk access, leaves the tokenizer alone
(we tokenize ourselves and pass ``input_ids``), leaves the config's attention
implementation alone, and processes no weights (no LayerNorm
folding or centering: ``enable_compatibility_mode`` is never called), so the
activations are the raw model's. (The bridge's own attention components recompute
attention step by step to fire their hooks, so a TransformerLens forward differs
from the Hugging Face one by float round-off, ~1e-6.)

The bridge replaces the model's submodules *in place* (``model.model.layers[i]``
becomes a ``BlockBridge`` around the original block, ``self_attn`` an attention
bridge, ...). The Hugging Face forward of that model then runs through the bridge
components: same results (to ~1e-6), at the bridge's speed, so an
:class:`~extract.hf_runner.HFRunner` on the same ``LoadedModel`` keeps working. The
bridge is built once per model and reused.

Hook points (TransformerLens 4.3 canonical names; aliases in brackets):

- ``resid_post``: ``blocks.{l}.hook_out`` (``blocks.{l}.hook_resid_post``)
- ``attn_out``:   ``blocks.{l}.attn.hook_out`` (``blocks.{l}.hook_attn_out``)
- ``mlp_out``:    ``blocks.{l}.mlp.hook_out`` (``blocks.{l}.hook_mlp_out``)

Hooks: ``run_with_hooks`` adds our hook functions at ``context_level + 1`` and on
exit removes exactly those handles (TL 4.3 ``_remove_temporary_hook``); we never
call ``reset_hooks`` / ``remove_all_hook_fns``, which would remove everyone's hooks
(TransformerLens #1636). At its first forward the bridge wires its own idempotent
capture pre-hooks on each block's norms (``BlockBridge._maybe_wire_capture_hooks``);
those belong to the bridge and stay.

Left padding (TransformerLens #1609: the bridge ignored the attention mask when
deriving position ids): TL 4.3 derives ``position_ids`` from the mask itself, and
we pass ``position_ids`` explicitly anyway (the bridge forwards extra keyword
arguments to the Hugging Face model), so the fix does not depend on the bridge.
"""

from __future__ import annotations

import logging

import torch

from .hf_runner import BaseRunner
from .model import LoadedModel, ModelError
from .sites import CapturePlan

log = logging.getLogger(__name__)

#: TransformerLens 4.3 hook point of each site, for block ``l``.
TL_HOOKS = {
    "resid_post": "blocks.{l}.hook_out",
    "attn_out": "blocks.{l}.attn.hook_out",
    "mlp_out": "blocks.{l}.mlp.hook_out",
}
_BRIDGE_ATTR = "_latent_bias_tl_bridge"


def tl_bridge(loaded: LoadedModel):
    """The ``TransformerBridge`` over ``loaded.model`` (built on first use, then reused).

    :class:`~extract.model.ModelError` (exit 2) when TransformerLens cannot bridge the
    model's architecture.
    """
    model = loaded.model
    bridge = model.__dict__.get(_BRIDGE_ATTR)  # plain attribute: not a registered submodule
    if bridge is not None:
        return bridge
    from transformer_lens.model_bridge.sources import build_bridge_from_module
    from transformer_lens.model_bridge.sources._hf_format import determine_architecture_from_hf_config

    architecture = type(model).__name__
    try:
        architecture = determine_architecture_from_hf_config(model.config)
        bridge = build_bridge_from_module(
            model,
            architecture,
            hf_config=model.config,
            tokenizer=None,
            model_name=loaded.name,
        )
    except Exception as err:  # an architecture TransformerLens has no adapter for, or cannot map
        raise ModelError(
            f"extract.backend: transformer_lens cannot bridge {architecture} (model {loaded.name!r}): "
            f"{type(err).__name__}: {str(err).strip().splitlines()[0][:200] if str(err).strip() else ''}; use hf or nnsight"
        ) from err
    bridge.eval()
    model.__dict__[_BRIDGE_ATTR] = bridge
    log.info("TransformerLens bridge over %s (%s)", loaded.name, architecture)
    return bridge


class TLRunner(BaseRunner):
    """Runs a :class:`LoadedModel` through a TransformerLens ``TransformerBridge``."""

    backend = "transformer_lens"

    def __init__(self, loaded: LoadedModel):
        super().__init__(loaded)
        self.bridge = tl_bridge(loaded)
        n_blocks = len(self.bridge.blocks)
        if n_blocks != self.n_layers:
            raise RuntimeError(f"the TransformerLens bridge has {n_blocks} blocks, the model {self.n_layers}")

    def _run(self, batch: dict[str, torch.Tensor], plan: CapturePlan | None) -> torch.Tensor:
        fwd_hooks = []
        if plan is not None:
            for layer in range(self.n_layers):
                for site in plan.sites:
                    fwd_hooks.append((TL_HOOKS[site].format(l=layer), _tl_hook(plan, site, layer)))
        kwargs = self._model_kwargs(batch)
        input_ids = kwargs.pop("input_ids")
        logits = self.bridge.run_with_hooks(input_ids, fwd_hooks=fwd_hooks, return_type="logits", **kwargs)
        return logits[:, -1, :]


def _tl_hook(plan: CapturePlan, site: str, layer: int):
    def hook(activation, hook):
        plan.record(site, layer, activation)
        return None  # read only

    return hook
