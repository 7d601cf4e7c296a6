"""Backend parity on both real embedded models (SmolLM2-135M-Instruct, a Llama; and
Gemma 3 270M: sandwich norms, scaled and tied embeddings, sliding-window and global
attention layers) and real prompts.

One module-scoped fixture per model loads it once per backend (each backend wraps its
own copy; loads read the converted cache, ~1-3 s) and runs six rendered ED-triage
prompts (BASE and demographic variants, two context tiers: different lengths, so
the batch is left-padded) through each backend once.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from latent_bias_probe.benchmarks.registry import render_benchmark
from latent_bias_probe.configs.names import EMBEDDED_MODELS
from latent_bias_probe.configs.schema import BenchmarkConfig, ModelConfig
from latent_bias_probe.extract.backends import BACKENDS, make_runner
from latent_bias_probe.extract.chat import char_spans_to_token_positions, find_user_offset, model_text
from latent_bias_probe.extract.model import load_model

pytestmark = pytest.mark.slow

SITES = ("resid_post", "attn_out", "mlp_out")
POSITIONS = ("last", "demographic")


def rel(a, b, axis=-1):
    """Relative difference per vector (max over vectors)."""
    return float((np.linalg.norm(a - b, axis=axis) / np.maximum(np.linalg.norm(b, axis=axis), 1e-12)).max())


@pytest.fixture(scope="module", params=EMBEDDED_MODELS)
def real(request):
    rendered = render_benchmark(BenchmarkConfig(n_cases=1, tiers=["high", "low"]))
    prompts = rendered.prompts
    picked = [prompts[i] for i in (0, 1, 6, 13, 18, 25)]  # BASE and variants of both tiers
    assert {p.variant == "BASE" for p in picked} == {True, False}
    runners = {b: make_runner(b, load_model(ModelConfig(name=request.param))) for b in BACKENDS}
    tok = runners["hf"].tokenizer
    texts, positions = [], []
    for p in picked:
        text = model_text(tok, p)
        texts.append(text)
        positions.append(char_spans_to_token_positions(tok, text, find_user_offset(tok, p, text), p.demographic_spans))
    outs = {
        b: r.forward(texts, capture=True, sites=SITES, positions=POSITIONS, demographic_positions=positions)
        for b, r in runners.items()
    }
    # plain Hugging Face output_hidden_states, each text alone (the hf runner's model is unwrapped)
    model = runners["hf"].model
    last, demo, p_ref = [], [], []
    for text, pos in zip(texts, positions):
        enc = tok(text, return_tensors="pt", add_special_tokens=False)
        with torch.no_grad():
            out = model(**enc, output_hidden_states=True, use_cache=False)
        last.append(torch.stack([h[0, -1] for h in out.hidden_states]).numpy())
        demo.append(torch.stack([h[0, pos].mean(0) for h in out.hidden_states]).numpy())
        z = out.logits[0, -1].double()
        r = runners["hf"]
        p_ref.append(torch.sigmoid(torch.logsumexp(z[r.yes_ids], 0) - torch.logsumexp(z[r.no_ids], 0)).item())
    ref = {"last": np.stack(last, 1), "demographic": np.stack(demo, 1), "p_yes": np.array(p_ref)}
    return runners, texts, positions, outs, ref


def test_batch_is_left_padded(real):
    _, _, _, outs, _ = real
    n = outs["hf"].n_tokens
    assert n.min() < n.max() - 20


def test_resid_post_and_p_yes_parity(real):
    _, _, _, outs, ref = real
    hf = outs["hf"]
    assert np.abs(hf.p_yes - ref["p_yes"]).max() < 1e-4
    for backend, out in outs.items():
        assert np.abs(out.p_yes - hf.p_yes).max() < 1e-4, backend
        assert out.first_token == hf.first_token, backend
        for key, arr in hf.acts.items():
            assert rel(out.acts[key], arr) < 1e-3, (backend, key)


def test_equal_to_output_hidden_states(real):
    runners, _, _, outs, ref = real
    n_layers = runners["hf"].n_layers
    for backend, out in outs.items():
        for pos in POSITIONS:
            got = out.acts[("resid_post", pos)]
            assert got.shape == (n_layers, 6, runners["hf"].d_model)
            assert rel(got[:-1], ref[pos][1:-1]) < 1e-3, (backend, pos)


def test_sublayer_outputs_sum_to_the_residual(real):
    runners, _, _, outs, ref = real
    layers = runners["hf"].model.model.layers
    sandwich = hasattr(layers[0], "post_feedforward_layernorm")  # Gemma 2/3: a norm after each sublayer
    for backend, out in outs.items():
        # with sandwich norms the sublayers add norm(output); a per-token norm commutes
        # with picking the last token, not with the mean over the demographic tokens
        for pos in ("last",) if sandwich else POSITIONS:
            resid = out.acts[("resid_post", pos)]
            before = np.concatenate([ref[pos][:1], resid[:-1]])
            attn, mlp = out.acts[("attn_out", pos)], out.acts[("mlp_out", pos)]
            if sandwich:
                with torch.no_grad():
                    attn = np.stack([layer.post_attention_layernorm(torch.from_numpy(a)).numpy() for layer, a in zip(layers, attn)])
                    mlp = np.stack([layer.post_feedforward_layernorm(torch.from_numpy(m)).numpy() for layer, m in zip(layers, mlp)])
            assert rel(before + attn + mlp, resid) < 1e-4, (backend, pos)


def test_padding_invariance(real):
    runners, texts, positions, outs, _ = real
    shortest = int(np.argmin(outs["hf"].n_tokens))  # the most padded row
    for backend, runner in runners.items():
        alone = runner.forward([texts[shortest]], capture=True, sites=SITES, positions=POSITIONS,
                               demographic_positions=[positions[shortest]])
        assert abs(alone.p_yes[0] - outs[backend].p_yes[shortest]) < 1e-4, backend
        for key, arr in alone.acts.items():
            assert rel(arr[:, 0], outs[backend].acts[key][:, shortest]) < 1e-3, (backend, key)

