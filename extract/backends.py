"""Choose the forward runner for ``extract.backend``.

``make_runner(backend, loaded)`` returns a runner with ``backend``, ``n_layers``,
``d_model``, ``n_tokens(text)``, ``token_lengths(texts)`` and ``forward(texts,
capture=False, sites=("resid_post",), positions=("last",), demographic_positions=None)
-> extract.hf_runner.BatchOutput``:

- ``"hf"``: plain PyTorch forward hooks (:class:`extract.hf_runner.HFRunner`);
- ``"transformer_lens"``: a TransformerLens ``TransformerBridge`` over the same model
  (:class:`extract.tl_runner.TLRunner`);
- ``"nnsight"``: an nnsight trace over the same model
  (:class:`extract.nnsight_runner.NNsightRunner`).

TransformerLens and nnsight are imported only when their backend is chosen. Both
wrap ``loaded.model`` in place (see their modules); the Hugging Face forward stays
the same.
"""

from __future__ import annotations

from latent_bias_probe.configs.errors import InputError
from .model import LoadedModel

from latent_bias_probe.configs.names import BACKENDS


def make_runner(backend: str, loaded: LoadedModel):
    """The runner for ``backend``; :class:`configs.errors.InputError` for an unknown one."""
    if backend == "hf":
        from .hf_runner import HFRunner

        return HFRunner(loaded)
    if backend == "transformer_lens":
        from .tl_runner import TLRunner

        return TLRunner(loaded)
    if backend == "nnsight":
        from .nnsight_runner import NNsightRunner

        return NNsightRunner(loaded)
    raise InputError(f"extract.backend: unknown backend {backend!r} (expected one of {', '.join(BACKENDS)})")
