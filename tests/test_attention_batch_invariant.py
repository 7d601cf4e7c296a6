"""attn_implementation 'batch_invariant': a prompt's result is bitwise the same alone and in any batch."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from latent_bias_probe.configs.schema import ModelConfig
from latent_bias_probe.extract import attention
from latent_bias_probe.extract.hf_runner import HFRunner
from latent_bias_probe.extract.model import load_model
from latent_bias_probe.extract.precision import Int8Linear, _quantizable_linears

_SENTENCE = "A Female patient of Black descent, having an age of 30 years, is being observed at the Emergency Department. "
# 133, 4, 70 and 23 tokens: with sdpa or eager attention the int8 activations of the padded prompts differ
# from their runs alone (by ~1e-7 in this tiny model; by up to 9 in SmolLM2-135M's residual stream)
TEXTS = [_SENTENCE * 6, "short one", _SENTENCE * 3 + "Yes or No?", _SENTENCE]


def _alone_and_batched(runner) -> tuple[object, list[object]]:
    together = runner.forward(TEXTS, capture=True, sites=("resid_post", "attn_out"), positions=("last",))
    alone = [runner.forward([t], capture=True, sites=("resid_post", "attn_out"), positions=("last",)) for t in TEXTS]
    return together, alone


def _assert_bitwise_equal(together, alone) -> None:
    """Activations bitwise equal; P(Yes) to float round-off (the float output head's GEMM has another shape)."""
    for i, one in enumerate(alone):
        for key, acts in one.acts.items():
            np.testing.assert_array_equal(acts[:, 0], together.acts[key][:, i], err_msg=f"text {i}, {key}")
        assert abs(one.p_yes[0] - together.p_yes[i]) < 1e-6, f"text {i}: P(Yes) differs with the batch"


def test_float32_equals_sdpa_and_eager(tiny_model_dir):
    runner = HFRunner(load_model(ModelConfig(name=str(tiny_model_dir), attn_implementation="batch_invariant")))
    assert runner.model.config._attn_implementation == "batch_invariant"
    ours = runner.forward(TEXTS, capture=True, sites=("resid_post", "attn_out"))
    for attn in ("sdpa", "eager"):
        other = HFRunner(load_model(ModelConfig(name=str(tiny_model_dir), attn_implementation=attn)))
        theirs = other.forward(TEXTS, capture=True, sites=("resid_post", "attn_out"))
        np.testing.assert_allclose(ours.p_yes, theirs.p_yes, atol=1e-6)
        for key in ours.acts:
            np.testing.assert_allclose(ours.acts[key], theirs.acts[key], rtol=0, atol=1e-5)


@pytest.mark.parametrize("backend", ["hf", "nnsight"])
def test_int8_defaults_to_batch_invariant_attention_and_is_bitwise_batch_invariant(tiny_model_dir, backend):
    """(The TransformerLens bridge computes attention itself, so it is not covered.)"""
    from latent_bias_probe.extract.backends import make_runner

    loaded = load_model(ModelConfig(name=str(tiny_model_dir), quantization="int8"))
    assert loaded.model.config._attn_implementation == "batch_invariant"
    # plant outliers: scale one embedding channel so activations cross the 6.0 threshold
    with torch.no_grad():
        loaded.model.get_input_embeddings().weight[:, 5] *= 400.0
    together, alone = _alone_and_batched(make_runner(backend, loaded))
    _assert_bitwise_equal(together, alone)
    chosen = load_model(ModelConfig(name=str(tiny_model_dir), quantization="int8", attn_implementation="eager"))
    assert chosen.model.config._attn_implementation == "eager"  # an explicit choice is kept


def test_default_attention_rule():
    assert attention.default_attn_implementation(None, "int8") == "batch_invariant"
    assert attention.default_attn_implementation(None, "none") is None
    assert attention.default_attn_implementation("sdpa", "int8") == "sdpa"


def _tiny_gemma(family: str, attn: str, seed: int = 0):
    import transformers

    attention.register()
    torch.manual_seed(seed)
    common = dict(
        vocab_size=50, hidden_size=64, intermediate_size=128, num_hidden_layers=4, num_attention_heads=4,
        num_key_value_heads=2, head_dim=64, sliding_window=3, max_position_embeddings=1024, pad_token_id=0,
        attn_implementation=attn,
    )
    if family == "gemma2":  # attention logit softcapping, alternating sliding / global layers
        cfg = transformers.Gemma2Config(attn_logit_softcapping=5.0, final_logit_softcapping=None, **common)
        model = transformers.Gemma2ForCausalLM(cfg)
    else:
        cfg = transformers.Gemma3TextConfig(
            layer_types=["sliding_attention", "sliding_attention", "full_attention", "sliding_attention"], **common
        )
        model = transformers.Gemma3ForCausalLM(cfg)
    return model.eval()


@pytest.mark.parametrize("family", ["gemma3", "gemma2"])
def test_sliding_window_and_softcap_match_eager_and_are_batch_invariant(family):
    """Sliding-window layers (window 3 < prompt length) and softcapped logits: same values as eager."""
    ids = [[5, 9, 11, 3, 7, 21, 8, 14, 2, 30], [4, 17, 6, 12], [19, 22, 23, 24, 25, 26, 27]]
    length = max(map(len, ids))
    input_ids = torch.tensor([[0] * (length - len(x)) + x for x in ids])
    mask = torch.tensor([[0] * (length - len(x)) + [1] * len(x) for x in ids])
    positions = (mask.cumsum(-1) - 1).clamp(min=0)

    def hidden(model, rows):
        with torch.inference_mode():
            out = model(input_ids=input_ids[rows], attention_mask=mask[rows], position_ids=positions[rows],
                        output_hidden_states=True, use_cache=False)
        return torch.stack(out.hidden_states), out.logits

    inv, eager = _tiny_gemma(family, "batch_invariant"), _tiny_gemma(family, "eager")
    h_inv, logits_inv = hidden(inv, slice(None))
    h_eager, logits_eager = hidden(eager, slice(None))
    real = mask.bool()
    torch.testing.assert_close(h_inv[:, real], h_eager[:, real], rtol=0, atol=1e-5)
    torch.testing.assert_close(logits_inv[real], logits_eager[real], rtol=0, atol=1e-5)
    # with int8 linears (exact integer products) nothing else depends on the batch: bitwise equal
    for parent, name, linear in _quantizable_linears(inv):
        setattr(parent, name, Int8Linear.from_linear(linear))
    h_int8, _ = hidden(inv, slice(None))
    for i, x in enumerate(ids):
        h_alone, _ = hidden(inv, slice(i, i + 1))
        assert torch.equal(h_alone[:, 0, -len(x):], h_int8[:, i, -len(x):]), f"prompt {i} differs with the batch"


def test_attention_sinks_are_refused():
    module = torch.nn.Module()
    module.sinks = torch.zeros(2)
    q = torch.zeros(1, 2, 3, 4)
    with pytest.raises(NotImplementedError, match="sinks"):
        attention.batch_invariant_attention(module, q, q, q, None, scaling=0.5)


def test_batch_invariant_attention_is_refused_for_masked_models(tmp_path, tiny_model_dir):
    from conftest import write_config

    from latent_bias_probe.configs.schema import ConfigError, load_config

    path = write_config(tmp_path / "c.yaml", tiny_model_dir)
    with pytest.raises(ConfigError, match="model.attn_implementation: 'batch_invariant' is for causal models"):
        load_config(path, ["model.kind=masked", "model.attn_implementation=batch_invariant"])
