"""A backend that cannot handle a model's architecture refuses it with an input error (exit 2)."""

from __future__ import annotations

import pytest

from latent_bias_probe.configs.errors import InputError
from latent_bias_probe.extract.model import ModelError
from latent_bias_probe.extract.tiny import tiny_llama


def test_transformer_lens_refuses_an_architecture_it_cannot_bridge(monkeypatch):
    import transformer_lens.model_bridge.sources as sources

    from latent_bias_probe.extract.tl_runner import TLRunner

    def unsupported(*args, **kwargs):
        raise ValueError("Unsupported architecture: LlamaForCausalLM\nmore text")

    monkeypatch.setattr(sources, "build_bridge_from_module", unsupported)
    with pytest.raises(ModelError) as err:
        TLRunner(tiny_llama(seed=0))
    assert str(err.value) == (
        "extract.backend: transformer_lens cannot bridge LlamaForCausalLM (model 'tiny-llama-s0-L4-d64'): "
        "ValueError: Unsupported architecture: LlamaForCausalLM; use hf or nnsight"
    )
    assert isinstance(err.value, InputError)


def test_nnsight_refuses_a_model_it_cannot_wrap(monkeypatch):
    import nnsight

    from latent_bias_probe.extract.nnsight_runner import NNsightRunner

    def cannot(*args, **kwargs):
        raise TypeError("no envoy for this module tree")

    monkeypatch.setattr(nnsight, "TransformersModel", cannot)
    with pytest.raises(ModelError, match=r"^extract.backend: nnsight cannot wrap LlamaForCausalLM \(model 'tiny-llama-s0-L4-d64'\): "
                                         r"TypeError: no envoy for this module tree; use hf$"):
        NNsightRunner(tiny_llama(seed=0))
