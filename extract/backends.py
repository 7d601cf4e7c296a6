"""Choose the forward runner for ``extract.backend``.

``make_runner(backend, loaded)`` constructs the class that
``configs.names.BACKEND_RUNNERS`` registers for ``backend``; every runner satisfies
:class:`extract.runner.Runner` (``backend``, ``n_layers``, ``d_model``,
``n_tokens(text)``, ``token_lengths(texts)`` and ``forward(texts, capture=False,
sites=("resid_post",), positions=("last",), demographic_positions=None) ->
extract.hf_runner.BatchOutput``). The shipped backends:

- ``"hf"``: plain PyTorch forward hooks (:class:`extract.hf_runner.HFRunner`);
- ``"transformer_lens"``: a TransformerLens ``TransformerBridge`` over the same model
  (:class:`extract.tl_runner.TLRunner`);
- ``"nnsight"``: an nnsight trace over the same model
  (:class:`extract.nnsight_runner.NNsightRunner`).

A runner's module is imported only when its backend is chosen (TransformerLens and
nnsight are heavy). Both wrap ``loaded.model`` in place (see their modules); the
Hugging Face forward stays the same.
"""

from __future__ import annotations

import importlib

from latent_bias_probe.configs.errors import InputError
from latent_bias_probe.configs.names import BACKEND_RUNNERS, BACKENDS

from .loaded import LoadedModel
from .runner import Runner

__all__ = ["BACKENDS", "BACKEND_RUNNERS", "Runner", "make_runner", "runner_class"]


def runner_class(backend: str) -> type:
    """The runner class registered for ``backend``: the class itself, or its ``module:Class`` imported now."""
    target = BACKEND_RUNNERS.get(backend)
    if target is None:
        raise InputError(f"extract.backend: unknown backend {backend!r} (expected one of {', '.join(BACKEND_RUNNERS)})")
    if isinstance(target, type):  # registered at run time as the class itself
        return target
    module, _, name = str(target).partition(":")
    try:
        return getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError) as err:
        raise InputError(f"extract.backend: {backend!r} is registered as {target!r}, which cannot be imported: {err}") from None


def make_runner(backend: str, loaded: LoadedModel) -> Runner:
    """The runner for ``backend``; :class:`configs.errors.InputError` for an unknown one."""
    runner = runner_class(backend)(loaded)
    if not isinstance(runner, Runner):
        raise TypeError(f"extract.backend {backend!r}: {type(runner).__name__} does not implement extract.runner.Runner")
    return runner
