"""P(Yes) from logits and the Yes/No vocabulary scan (mfarm-spec.md, "P(Yes)")."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from latent_bias_probe.extract.scoring import decoded_vocabulary, p_yes_from_logits, yes_no_ids
from latent_bias_probe.extract.tiny import tiny_tokenizer


def brute_force(tokenizer):
    yes, no = [], []
    for i in range(len(tokenizer)):
        s = tokenizer.decode([i]).strip().lower()
        if s == "yes":
            yes.append(i)
        elif s == "no":
            no.append(i)
    return yes, no


def reference(z: np.ndarray, yes, no):
    z = z.astype(np.float64)
    e = np.exp(z - z.max())
    return e[yes].sum() / (e[yes].sum() + e[no].sum()), e[yes].sum() / e.sum(), int(np.argmax(z))


def test_known_answer():
    # ids 0,1 = yes; 2 = no; 3,4 = others
    logits = torch.tensor(
        [
            [0.0, 0.0, 0.0, 0.0, 0.0],  # uniform: p_yes 2/3, vocab 2/5
            [math.log(3.0), -math.inf, 0.0, 5.0, -1.0],  # p_yes 3/4
            [1.0, 2.0, 3.0, 4.0, 5.0],
        ]
    )
    p, pv, first = p_yes_from_logits(logits, [0, 1], [2])
    assert p.dtype == torch.float32 and pv.dtype == torch.float32 and first.dtype == torch.int64
    assert p[0].item() == pytest.approx(2 / 3, abs=1e-7)
    assert pv[0].item() == pytest.approx(2 / 5, abs=1e-7)
    assert p[1].item() == pytest.approx(3 / 4, abs=1e-7)
    assert first.tolist() == [0, 3, 4]
    for row in range(3):
        ref = reference(logits[row].numpy(), [0, 1], [2])
        assert p[row].item() == pytest.approx(ref[0], abs=1e-6)
        assert pv[row].item() == pytest.approx(ref[1], abs=1e-6)


def test_random_against_float64_reference():
    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(16, 50, generator=gen) * 4
    yes, no = [3, 7, 11], [1, 20]
    p, pv, first = p_yes_from_logits(logits, yes, no)
    for row in range(16):
        ref = reference(logits[row].numpy(), yes, no)
        assert p[row].item() == pytest.approx(ref[0], abs=1e-6)
        assert pv[row].item() == pytest.approx(ref[1], abs=1e-6)
        assert first[row].item() == ref[2]


def test_extreme_logits_are_finite():
    logits = torch.tensor(
        [
            [1e4, -1e4, 0.0, 0.0],  # certain yes
            [-1e4, 1e4, 0.0, 0.0],  # certain no
            [1e30, 1e30, -1e30, 0.0],  # huge but equal
            [-1e4, -1e4, 1e4, 0.0],  # yes/no both negligible in the vocabulary
            [3.4e38, -3.4e38, 0.0, 0.0],  # float32 extremes
        ]
    )
    p, pv, _ = p_yes_from_logits(logits, [0], [1])
    assert torch.isfinite(p).all() and torch.isfinite(pv).all()
    assert p[0].item() == 1.0 and p[1].item() == 0.0
    assert p[2].item() == pytest.approx(0.5)
    assert p[3].item() == pytest.approx(0.5)
    assert pv[3].item() == 0.0
    assert p[4].item() == 1.0
    assert ((p >= 0) & (p <= 1)).all() and ((pv >= 0) & (pv <= 1)).all()


def test_bfloat16_input_is_upcast():
    logits32 = torch.tensor([[2.0, 1.0, 0.5, -1.0, 30.0], [0.1, 0.2, 0.3, 0.4, 0.5]])
    logits16 = logits32.to(torch.bfloat16)
    p16, pv16, f16 = p_yes_from_logits(logits16, [0, 1], [2, 3])
    assert p16.dtype == torch.float32
    # same answer as float32 on the bfloat16-rounded values
    p32, pv32, f32 = p_yes_from_logits(logits16.to(torch.float32), [0, 1], [2, 3])
    assert torch.equal(p16, p32) and torch.equal(pv16, pv32) and torch.equal(f16, f32)
    # a bfloat16 softmax would lose the tiny vocabulary mass; float32 keeps it
    assert pv16[0].item() > 0 and torch.isfinite(pv16).all()


def test_bad_arguments():
    with pytest.raises(ValueError):
        p_yes_from_logits(torch.zeros(5), [0], [1])
    with pytest.raises(ValueError):
        p_yes_from_logits(torch.zeros(1, 5), [], [1])
    with pytest.raises(ValueError):
        p_yes_from_logits(torch.zeros(1, 5), [0, 1], [1])


def test_yes_no_ids_equal_brute_force_on_tiny_tokenizer():
    tok = tiny_tokenizer()
    yes, no = yes_no_ids(tok)
    assert (yes, no) == brute_force(tok)
    assert decoded_vocabulary(tok) == [tok.decode([i]) for i in range(len(tok))]
    tokens = set(tok.convert_ids_to_tokens(yes + no))
    assert {"Yes", "ĠYes", "No", "ĠNo", "no", "Ġno"} <= tokens
    # sorted, disjoint
    assert yes == sorted(yes) and no == sorted(no) and not set(yes) & set(no)


def test_yes_no_ids_cached_and_refreshed_when_tokens_are_added():
    tok = tiny_tokenizer()
    first = yes_no_ids(tok)
    assert yes_no_ids(tok) == first
    assert "nO" not in tok.get_vocab()
    tok.add_tokens(["nO"])
    yes, no = yes_no_ids(tok)
    assert tok.convert_tokens_to_ids("nO") in no
    assert (yes, no) == brute_force(tok)
