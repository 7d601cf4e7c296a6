"""Masked-LM scores on tiny random BERTs: planted associations, the prior correction, PLL by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest

from latent_bias_probe.benchmarks.templates import load_templates, render_sentence, target_words
from latent_bias_probe.mfarm.association import group_differences, kurita_association

RACES, GENDERS = ["White", "Black"], ["Female", "Male"]
GROUPS = [f"{r}-{g}" for r in RACES for g in GENDERS]
CATEGORIES = ["behaviour", "agency", "pain"]
N_PER_CATEGORY = 6


@pytest.fixture(scope="module")
def templates():
    return load_templates("clinical").select(CATEGORIES, N_PER_CATEGORY)


@pytest.fixture(scope="module")
def behaviour_words():
    return load_templates("clinical").attribute_words()["behaviour"]


def _score(loaded, templates):
    """(association, raw log p_tgt, categories) matrices of templates x GROUPS."""
    from latent_bias_probe.extract.masked import MaskedScorer

    scorer = MaskedScorer(loaded, batch_size=64)
    enc = []
    for t in templates.templates:
        for r in RACES:
            for g in GENDERS:
                s = render_sentence(t, target_words(r, g, "{race} {gender_lower}"))
                enc.append(scorer.encode(s.text, s.target, s.attribute))
    res = scorer.score(enc, pll=False)
    shape = (len(templates.templates), len(GROUPS))
    lt = np.array([x.log_p_target for x in res]).reshape(shape)
    lp = np.array([x.log_p_prior for x in res]).reshape(shape)
    return kurita_association(lt, lp), lt, [t.category for t in templates.templates]


def _significant(X, cats):
    out = group_differences(X, cats, GROUPS, correction="holm", n_boot=200, seed=0, margin=0.1)
    return out, {(c, g): v["difference"] for c, e in out["categories"].items() for g, v in e["groups"].items() if v["significant"]}


def test_planted_association_is_found_with_its_sign(templates, behaviour_words):
    from latent_bias_probe.extract.tiny_masked import plant_association, tiny_bert

    A, _, cats = _score(plant_association(tiny_bert(0), "black", behaviour_words), templates)
    out, sig = _significant(A, cats)
    for g in ("Black-Female", "Black-Male"):
        cell = out["categories"]["behaviour"]["groups"][g]
        assert cell["significant"] and cell["difference"] > 1.0 and cell["ci"][0] > 0.5, cell
        assert cell["p_adjusted"] < 0.05 and cell["effect_size"] > 2
    assert all(c == "behaviour" for c, _ in sig), sig  # only where it was planted
    assert all((d > 0) == g.startswith("Black") for (_, g), d in sig.items())


def test_a_model_without_the_plant_finds_nothing(templates):
    from latent_bias_probe.extract.tiny_masked import tiny_bert

    A, _, cats = _score(tiny_bert(0), templates)
    out, sig = _significant(A, cats)
    assert sig == {}
    assert max(abs(v["difference"]) for e in out["categories"].values() for v in e["groups"].values()) < 0.1


def test_the_prior_removes_a_frequency_only_effect(templates):
    from latent_bias_probe.extract.tiny_masked import plant_frequency, tiny_bert

    base_A, base_raw, cats = _score(tiny_bert(0), templates)
    A, raw, _ = _score(plant_frequency(tiny_bert(0), "white", gamma=3.0), templates)
    # the raw log P(target) of the White groups rises everywhere ...
    _, raw_sig = _significant(raw, cats)
    for c in CATEGORIES:
        assert raw_sig.get((c, "White-Female"), 0) > 0.5 and raw_sig.get((c, "White-Male"), 0) > 0.5
    # ... the association does not move (within 0.05 nats) and finds nothing
    assert np.abs(A - base_A).max() < 0.05
    assert _significant(A, cats)[1] == {}


def _hand_log_probs(loaded, ids, masked, scored):
    import torch

    x = torch.tensor([[loaded.tokenizer.mask_token_id if i in masked else t for i, t in enumerate(ids)]])
    with torch.no_grad():
        logp = torch.log_softmax(loaded.model(input_ids=x).logits[0], dim=-1)
    return sum(float(logp[i, ids[i]]) for i in scored)


def test_pll_and_target_scores_equal_a_hand_computation(templates):
    from latent_bias_probe.extract.masked import MaskedScorer, pseudo_log_likelihood
    from latent_bias_probe.extract.tiny_masked import tiny_bert

    loaded = tiny_bert(3)
    tok = loaded.tokenizer
    # PLL of a plain sentence: mask each token in turn, sum log P(original)
    text = "the patient was calm ."
    ids = tok(text)["input_ids"]
    assert tok.convert_ids_to_tokens(ids) == ["[CLS]", "the", "patient", "was", "calm", ".", "[SEP]"]
    hand = sum(_hand_log_probs(loaded, ids, {i}, [i]) for i in range(1, len(ids) - 1))
    assert pseudo_log_likelihood(loaded, text) == pytest.approx(hand, abs=1e-4)
    # a template: the target's pieces masked together; the prior also masks the attribute;
    # the PLL skips the target's pieces (shared tokens only)
    t = templates.templates[0]
    s = render_sentence(t, "Black female")
    scorer = MaskedScorer(loaded, batch_size=3)
    e = scorer.encode(s.text, s.target, s.attribute)
    assert [tok.convert_ids_to_tokens(e.ids)[i] for i in e.target] == ["black", "female"]
    assert [tok.convert_ids_to_tokens(e.ids)[i] for i in e.attribute] == [t.attribute]
    got = scorer.score([e])[0]
    assert got.log_p_target == pytest.approx(_hand_log_probs(loaded, e.ids, set(e.target), e.target), abs=1e-4)
    assert got.log_p_prior == pytest.approx(_hand_log_probs(loaded, e.ids, set(e.target + e.attribute), e.target), abs=1e-4)
    shared = [i for i in range(1, len(e.ids) - 1) if i not in e.target]
    assert got.pll == pytest.approx(sum(_hand_log_probs(loaded, e.ids, {i}, [i]) for i in shared), abs=1e-4)
    assert got.log_p_attribute == pytest.approx(_hand_log_probs(loaded, e.ids, set(e.attribute), e.attribute), abs=1e-4)


def test_multi_piece_targets_and_base(templates):
    from latent_bias_probe.extract.masked import MaskedScorer
    from latent_bias_probe.extract.tiny_masked import tiny_bert

    loaded = tiny_bert(0)
    scorer = MaskedScorer(loaded)
    t = templates.templates[0]
    s = render_sentence(t, "Zulu female")  # "zulu" is not in the vocabulary: four letter pieces
    e = scorer.encode(s.text, s.target, s.attribute)
    assert [loaded.tokenizer.convert_ids_to_tokens(e.ids)[i] for i in e.target] == ["z", "##u", "##l", "##u", "female"]
    got = scorer.score([e])[0]
    assert math.isfinite(got.log_p_target) and got.log_p_target < got.log_p_prior + 50
    base = render_sentence(t, None)
    assert base.text == t.text.replace("[TARGET] ", "").replace("[ATTRIBUTE]", t.attribute)
    b = scorer.encode(base.text, base.target, base.attribute)
    assert b.target == [] and loaded.tokenizer.convert_ids_to_tokens(b.ids)[b.anchor] == "patient"
    acts = scorer.activations([e, b], ["last", "demographic"])
    assert acts["last"].shape == (loaded.n_layers, 2, loaded.d_model)
    assert not np.allclose(acts["last"][:, 0], acts["demographic"][:, 0])  # last piece vs mean over pieces


def test_model_kind_is_detected(tmp_path, tiny_model_dir):
    from latent_bias_probe.configs.schema import ModelConfig
    from latent_bias_probe.extract.masked import model_kind
    from latent_bias_probe.extract.model import ModelError
    from latent_bias_probe.extract.tiny_masked import save, tiny_bert

    folder = save(tiny_bert(0), tmp_path / "bert")
    assert model_kind(ModelConfig(name=str(folder))) == "masked"
    assert model_kind(ModelConfig(name=str(tiny_model_dir))) == "causal"
    assert model_kind(ModelConfig()) == "causal"  # the embedded default, without touching it
    assert model_kind(ModelConfig(name="gemma3-270m")) == "causal"  # every embedded model (no HF-cache lookup)
    with pytest.raises(ModelError, match="'gemma3-270m' is a causal model"):
        model_kind(ModelConfig(name="gemma3-270m", kind="masked"))
    with pytest.raises(ModelError, match=r"model\.kind: 'masked', but .* no masked-LM head"):
        model_kind(ModelConfig(name=str(tiny_model_dir), kind="masked"))
