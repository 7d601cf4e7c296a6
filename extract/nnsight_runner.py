"""The nnsight backend: an nnsight model over the loaded Hugging Face model.

``NNsightRunner(loaded)`` wraps ``loaded.model`` with
``nnsight.TransformersModel(loaded.model, tokenizer=loaded.tokenizer,
task="text-generation")`` (nnsight 0.8; ``LanguageModel`` is its deprecated alias)
and runs the same left-padded batches as :class:`extract.hf_runner.HFRunner` (same
tokenisation, same ``position_ids``) in one trace::

    with model.trace(input_ids=..., attention_mask=..., position_ids=...,
                     use_cache=False, logits_to_keep=1):
        for l in range(n_layers):
            model.model.layers[l].self_attn.output   # attn_out   (when asked)
            model.model.layers[l].mlp.output         # mlp_out    (when asked)
            model.model.layers[l].output             # resid_post
        model.output.logits[:, -1]                   # P(Yes), option mass

Each activation is reduced to its positions inside the trace
(``extract.sites.CapturePlan.record``: the last row, or the mean of the demographic
rows) and only those ``(B, d_model)`` vectors leave it; full activations are never
kept. The last-position logits leave it too and are scored by
``BaseRunner.forward`` (P(Yes), P(Yes) over the vocabulary, option mass) exactly as
for the other backends. The envoy paths come from the model (``model.layers`` / ``transformer.h``
...; ``self_attn`` / ``attn`` ...). nnsight serves module outputs in execution order,
so within a block we read attention, then MLP, then the block output (models with
a parallel attention/MLP block may need another order).

The wrapper is built once per model and reused. nnsight instruments the module
tree in place (it swaps each module's ``forward`` for a dispatcher that runs the
original when no trace is active); it adds no torch hooks of its own, and a plain
Hugging Face forward is unchanged. Importing nnsight applies nnsight's global torch
patches, so it is imported only when this backend is chosen. No network access:
the pre-loaded module and tokenizer are adopted as they are.
"""

from __future__ import annotations

import logging

import torch

from .hf_runner import BaseRunner
from .model import LoadedModel, ModelError, layers_path
from .sites import CapturePlan, first_tensor, submodule_name

log = logging.getLogger(__name__)

_NNSIGHT_ATTR = "_latent_bias_nnsight_model"


def nnsight_model(loaded: LoadedModel):
    """The nnsight model over ``loaded.model`` (built on first use, then reused)."""
    model = loaded.model
    wrapped = model.__dict__.get(_NNSIGHT_ATTR)  # plain attribute: not a registered submodule
    if wrapped is not None:
        return wrapped
    # nnsight configures the tokenizer it adopts (pad token, left padding for causal
    # models); ours already pads on the left with a pad token, so nothing changes
    if loaded.tokenizer.padding_side != "left" or loaded.tokenizer.pad_token is None:
        raise RuntimeError("the tokenizer must pad on the left with a pad token (extract.model.prepare_tokenizer)")
    from nnsight import TransformersModel

    try:
        wrapped = TransformersModel(model, tokenizer=loaded.tokenizer, task="text-generation")
    except Exception as err:  # a module tree nnsight cannot wrap
        raise ModelError(
            f"extract.backend: nnsight cannot wrap {type(model).__name__} (model {loaded.name!r}): "
            f"{type(err).__name__}: {str(err).strip()[:200]}; use hf"
        ) from err
    model.__dict__[_NNSIGHT_ATTR] = wrapped
    log.info("nnsight model over %s", loaded.name)
    return wrapped


class NNsightRunner(BaseRunner):
    """Runs a :class:`LoadedModel` through an nnsight trace."""

    backend = "nnsight"

    def __init__(self, loaded: LoadedModel):
        super().__init__(loaded)
        self.nn_model = nnsight_model(loaded)
        path = layers_path(self.model)
        envoy = self.nn_model
        for part in path.split("."):
            envoy = getattr(envoy, part)
        self._layer_envoys = [envoy[i] for i in range(self.n_layers)]
        first_layer = self._layer_envoys[0]._module
        self._sub_names = {}
        for site in ("attn_out", "mlp_out"):
            try:
                self._sub_names[site] = submodule_name(first_layer, site)
            except ValueError:
                pass  # reported when the site is asked for

    def _sub_envoy(self, layer: int, site: str):
        name = self._sub_names.get(site)
        if name is None:
            raise ValueError(f"{type(self._layer_envoys[layer]._module).__name__} has no module for site {site!r}")
        return getattr(self._layer_envoys[layer], name)

    def _run(self, batch: dict[str, torch.Tensor], plan: CapturePlan | None) -> torch.Tensor:
        if plan is not None:  # fail before tracing
            for site in plan.sites:
                if site != "resid_post":
                    self._sub_envoy(0, site)
        kwargs = self._model_kwargs(batch)
        sites = plan.sites if plan is not None else ()
        box: dict[str, torch.Tensor] = {}
        with self.nn_model.trace(**kwargs):
            for layer in range(self.n_layers if plan is not None else 0):
                if "attn_out" in sites:
                    plan.record("attn_out", layer, first_tensor(self._sub_envoy(layer, "attn_out").output))
                if "mlp_out" in sites:
                    plan.record("mlp_out", layer, first_tensor(self._sub_envoy(layer, "mlp_out").output))
                if "resid_post" in sites:
                    plan.record("resid_post", layer, first_tensor(self._layer_envoys[layer].output))
            box["logits"] = self.nn_model.output.logits[:, -1, :].detach().clone()
        return box["logits"]
