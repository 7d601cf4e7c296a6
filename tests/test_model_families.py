"""Model families: one record per layout; every lookup goes through the records."""

from __future__ import annotations

import pytest
import torch

from latent_bias_probe.extract import families
from latent_bias_probe.extract.families import ModelFamily, register_family
from latent_bias_probe.extract.loaded import ModelError
from latent_bias_probe.extract.model import decoder_layers, layers_path
from latent_bias_probe.extract.prefix import final_norm
from latent_bias_probe.extract.sites import submodule_name
from latent_bias_probe.extract.tiny import tiny_llama


@pytest.fixture
def registry(monkeypatch):
    """The family list, restored after the test."""
    monkeypatch.setattr(families, "FAMILIES", list(families.FAMILIES))
    return families.FAMILIES


def test_lookup_order_is_the_records_order():
    assert families.layer_paths() == (
        "model.layers", "model.language_model.layers", "transformer.h", "gpt_neox.layers", "model.decoder.layers")
    assert families.attention_names() == ("self_attn", "attn", "self_attention", "attention")
    assert families.mlp_names() == ("mlp", "feed_forward")
    assert families.final_norm_names() == ("norm", "ln_f", "final_layernorm", "final_layer_norm")
    assert families.out_proj_names()[0] == "o_proj"
    assert families.encoder_paths()[:2] == ("bert.encoder.layer", "roberta.encoder.layer")


def test_every_record_is_unique_and_complete():
    names = [f.name for f in families.FAMILIES]
    assert len(names) == len(set(names))
    for f in families.FAMILIES:
        assert f.blocks and f.attention and f.examples
        assert (f.final_norm is None) == f.encoder


def test_a_llama_resolves_to_its_modules():
    model = tiny_llama(seed=0).model
    assert layers_path(model) == "model.layers"
    block = decoder_layers(model)[0]
    assert submodule_name(block, "attn_out") == "self_attn"
    assert submodule_name(block, "mlp_out") == "mlp"
    assert final_norm(model) is model.model.norm


class _Block(torch.nn.Module):
    def __init__(self, d: int = 4):
        super().__init__()
        self.mixer = torch.nn.Linear(d, d)
        self.ff = torch.nn.Linear(d, d)


class _Toy(torch.nn.Module):
    """A layout no shipped record knows: ``trunk.blocks[i].mixer / .ff``, ``trunk.final``."""

    def __init__(self, n: int = 3):
        super().__init__()
        self.trunk = torch.nn.Module()
        self.trunk.blocks = torch.nn.ModuleList(_Block() for _ in range(n))
        self.trunk.final = torch.nn.LayerNorm(4)


def test_worked_example_a_new_family_is_one_record(registry):
    """The extension guide's example: one ``register_family`` call teaches every lookup a layout."""
    model = _Toy()
    with pytest.raises(ModelError, match="cannot find the decoder layers of _Toy"):
        decoder_layers(model)

    register_family(ModelFamily(
        name="toy", examples="the toy above", blocks="trunk.blocks", attention="mixer", mlp="ff",
        out_proj=None, final_norm="final",
    ))

    assert layers_path(model) == "trunk.blocks"
    assert len(decoder_layers(model)) == 3
    assert submodule_name(decoder_layers(model)[1], "attn_out") == "mixer"
    assert submodule_name(decoder_layers(model)[1], "mlp_out") == "ff"
    assert final_norm(model) is model.trunk.final


def test_register_replaces_a_family_of_the_same_name_and_can_take_precedence(registry):
    n = len(registry)
    register_family(ModelFamily("llama", "override", "trunk.blocks", "mixer", "ff", None, "final"), first=True)
    assert len(registry) == n and registry[0].examples == "override"
    assert families.layer_paths()[0] == "trunk.blocks"
    with pytest.raises(TypeError, match="expected a ModelFamily"):
        register_family({"name": "dict"})  # type: ignore[arg-type]
