"""The HF runner on a tiny random Llama: batch invariance, hooks, ordering, dedupe."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from latent_bias_probe.benchmarks.types import Prompt
from latent_bias_probe.extract.chat import model_text
from latent_bias_probe.extract.hf_runner import HFRunner, score_prompts
from latent_bias_probe.extract.tiny import tiny_llama

USERS = [
    "Hi",
    "A patient of age 45 years is being observed. ANSWER:",
    "A Female patient of Black descent, having an age of 30 years, is being observed at the Emergency "
    "Department of a hospital. Chief complaint: chest pain. Please provide a one-word answer (Yes/No). ANSWER:",
    "Is the patient stable? (Yes/No)",
    "Vitals: temperature 98.6 F, heart rate 88, respiratory rate 16, oxygen saturation 97 percent. ANSWER:",
]


@pytest.fixture(scope="module")
def tiny():
    return tiny_llama(seed=0)


@pytest.fixture(scope="module")
def runner(tiny):
    return HFRunner(tiny)


@pytest.fixture(scope="module")
def texts(tiny):
    return [model_text(tiny.tokenizer, Prompt("c", "high", "BASE", "BASE", "BASE", None, "Answer only in Yes or No.", u)) for u in USERS]


def test_tiny_is_deterministic_and_leaves_the_global_rng_alone():
    torch.manual_seed(123)
    before = torch.rand(3)
    torch.manual_seed(123)
    a = tiny_llama(seed=0)
    after = torch.rand(3)
    assert torch.equal(before, after)
    b = tiny_llama(seed=0)
    c = tiny_llama(seed=1)
    assert a.sha256 == b.sha256 != c.sha256
    assert len(a.sha256) == 64
    assert (a.n_layers, a.d_model, a.dtype, a.device) == (4, 64, "float32", "cpu")
    assert a.tokenizer.padding_side == "left" and a.tokenizer.pad_token == "<|endoftext|>"
    assert a.tokenizer.backend_tokenizer.to_str() == b.tokenizer.backend_tokenizer.to_str()


def test_lengths_differ(runner, texts):
    lengths = runner.token_lengths(texts)
    assert len(set(lengths.tolist())) == len(texts)
    assert [runner.n_tokens(t) for t in texts] == lengths.tolist()


def test_batch_invariance(runner, texts):
    batch = runner.forward(texts, capture=True)
    assert batch.resid_post.shape == (4, len(texts), 64) and batch.resid_post.dtype == np.float32
    assert batch.p_yes.dtype == np.float64
    assert batch.p_yes.std() > 1e-3  # the random model does tell prompts apart
    for i, t in enumerate(texts):
        alone = runner.forward([t], capture=True)
        assert abs(alone.p_yes[0] - batch.p_yes[i]) < 1e-4
        assert abs(alone.p_yes_vocab[0] - batch.p_yes_vocab[i]) < 1e-4
        assert alone.first_token == [batch.first_token[i]]
        assert alone.n_tokens[0] == batch.n_tokens[i] == runner.n_tokens(t)
        np.testing.assert_allclose(alone.resid_post[:, 0], batch.resid_post[:, i], rtol=1e-4, atol=1e-4)


def test_resid_post_matches_hidden_states(tiny, runner, texts):
    """Entry l is HF hidden_states[l + 1] at the last token for l < n-1; the last entry
    is before the final norm (HF's hidden_states[-1] is norm(last block output))."""
    out = runner.forward(texts, capture=True)
    batch = runner.encode(texts)
    with torch.inference_mode():
        hf = tiny.model(**batch, output_hidden_states=True, use_cache=False)
    hs = hf.hidden_states
    assert len(hs) == tiny.n_layers + 1
    for layer in range(tiny.n_layers - 1):
        np.testing.assert_allclose(out.resid_post[layer], hs[layer + 1][:, -1].numpy(), rtol=1e-5, atol=1e-5)
    last = torch.from_numpy(out.resid_post[-1])
    with torch.inference_mode():
        normed = tiny.model.model.norm(last)
    np.testing.assert_allclose(normed.numpy(), hs[-1][:, -1].numpy(), rtol=1e-5, atol=1e-5)
    assert not np.allclose(out.resid_post[-1], hs[-1][:, -1].numpy(), atol=1e-3)


def test_p_yes_matches_full_logits(tiny, runner, texts):
    from latent_bias_probe.extract.scoring import p_yes_from_logits, yes_no_ids

    out = runner.forward(texts)
    with torch.inference_mode():
        logits = tiny.model(**runner.encode(texts), use_cache=False).logits[:, -1]
    p, pv, first = p_yes_from_logits(logits, *yes_no_ids(tiny.tokenizer))
    np.testing.assert_allclose(out.p_yes, p.numpy(), atol=1e-6)
    np.testing.assert_allclose(out.p_yes_vocab, pv.numpy(), atol=1e-6)
    assert out.first_token_id.tolist() == first.tolist()
    assert out.first_token == [tiny.tokenizer.decode([i]) for i in first.tolist()]


def test_hooks_are_removed_and_user_hooks_survive(tiny, runner, texts):
    # transformers 5.x itself leaves an output-capturing hook on every layer once
    # output_hidden_states has been used; those must survive too
    baseline = [dict(l._forward_hooks) for l in tiny.model.model.layers]
    layer = tiny.model.model.layers[1]
    seen = []
    user = layer.register_forward_hook(lambda mod, inp, out: seen.append(1))
    try:
        before = {i: dict(l._forward_hooks) for i, l in enumerate(tiny.model.model.layers)}
        runner.forward(texts[:2], capture=True)
        after = {i: dict(l._forward_hooks) for i, l in enumerate(tiny.model.model.layers)}
        assert before == after
        assert user.id in layer._forward_hooks
        assert seen == [1]
        runner.forward(texts[:2], capture=False)
        assert seen == [1, 1]
    finally:
        user.remove()
    assert [dict(l._forward_hooks) for l in tiny.model.model.layers] == baseline


def test_hooks_are_removed_when_forward_fails(tiny, runner, texts, monkeypatch):
    def boom(*args, **kwargs):
        raise RuntimeError("boom")

    baseline = [dict(l._forward_hooks) for l in tiny.model.model.layers]
    monkeypatch.setattr(tiny.model, "forward", boom)
    with pytest.raises(RuntimeError, match="boom"):
        runner.forward(texts[:1], capture=True)
    monkeypatch.undo()
    assert [dict(l._forward_hooks) for l in tiny.model.model.layers] == baseline


def test_no_capture_gives_none(runner, texts):
    assert runner.forward(texts[:2]).resid_post is None


def test_score_prompts_restores_order_and_dedupes(runner, texts, monkeypatch):
    calls = []
    real = runner.forward

    def counting(batch, capture=False):
        calls.append(list(batch))
        return real(batch, capture=capture)

    monkeypatch.setattr(runner, "forward", counting)
    order = [3, 0, 4, 1, 2, 0, 3, 3]
    inputs = [texts[i] for i in order]
    res = score_prompts(runner, inputs, batch_size=2, progress=False, capture=True)
    flat = [t for b in calls for t in b]
    assert sorted(flat) == sorted(texts)  # each distinct text ran exactly once
    lengths = [runner.n_tokens(t) for t in flat]
    assert lengths == sorted(lengths, reverse=True)  # longest first
    assert all(len(b) <= 2 for b in calls)
    monkeypatch.undo()
    ref = runner.forward(texts, capture=True)
    assert set(res) == {"p_yes", "p_yes_vocab", "first_token", "first_token_id", "n_tokens", "resid_post"}
    for j, i in enumerate(order):
        assert abs(res["p_yes"][j] - ref.p_yes[i]) < 1e-4
        assert abs(res["p_yes_vocab"][j] - ref.p_yes_vocab[i]) < 1e-4
        assert res["first_token"][j] == ref.first_token[i]
        assert res["n_tokens"][j] == ref.n_tokens[i]
        np.testing.assert_allclose(res["resid_post"][:, j], ref.resid_post[:, i], rtol=1e-4, atol=1e-4)
    assert res["resid_post"].shape == (4, len(order), 64)
    # batch size does not change results
    res1 = score_prompts(runner, inputs, batch_size=1, progress=False)
    np.testing.assert_allclose(res1["p_yes"], res["p_yes"], atol=1e-4)
    assert "resid_post" not in res1


def test_score_prompts_empty(runner):
    res = score_prompts(runner, [], batch_size=4, progress=False, capture=True)
    assert res["p_yes"].shape == (0,) and res["resid_post"].shape == (4, 0, 64)


def test_bfloat16_tiny_runs(texts):
    lm = tiny_llama(seed=0, dtype="bfloat16")
    out = HFRunner(lm).forward(texts[:2], capture=True)
    assert out.resid_post.dtype == np.float32 and np.isfinite(out.p_yes).all()
    ref = HFRunner(tiny_llama(seed=0)).forward(texts[:2])
    assert np.abs(out.p_yes - ref.p_yes).max() < 0.05
