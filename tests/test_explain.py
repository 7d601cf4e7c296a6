"""Interventions (steering, LEACE erasure, random control) and the explain stage."""

from __future__ import annotations

import contextlib
import json

import numpy as np
import pytest
import torch

from conftest import run_probe, write_config
from latent_bias_probe.extract.backends import make_runner
from latent_bias_probe.extract.chat import model_text
from latent_bias_probe.extract.model import decoder_layers
from latent_bias_probe.extract.tiny import tiny_llama
from latent_bias_probe.probes.causal import disparity, fit_erasers, mediated_fraction
from latent_bias_probe.probes.interventions import erase, steer

RACES = ["White", "Black"]
GENDERS = ["Female", "Male"]


@pytest.fixture(scope="module")
def tiny():
    return tiny_llama(seed=3)


def _texts(loaded, n_cases=6):
    from latent_bias_probe.benchmarks.ed_generator import generate_ed_cases
    from latent_bias_probe.benchmarks.render import render

    rendered = render(generate_ed_cases(n_cases, seed=1), ["low"], RACES, GENDERS)
    prompts = rendered.prompts
    return prompts, [model_text(loaded.tokenizer, p) for p in prompts]


@pytest.mark.parametrize("backend", ["hf", "nnsight", "transformer_lens"])
def test_alpha_zero_changes_nothing_and_hooks_are_removed(tiny, backend):
    runner = make_runner(backend, tiny)
    _, texts = _texts(tiny, 2)
    layer = decoder_layers(tiny.model)[1]
    seen = []
    user = layer.register_forward_hook(lambda m, i, o: seen.append(1))
    try:
        before_hooks = dict(layer._forward_hooks)
        p0 = runner.forward(texts[:5]).p_yes
        u = np.random.default_rng(0).normal(size=tiny.d_model)
        with steer(tiny.model, 1, u, 0.0):
            p_zero = runner.forward(texts[:5]).p_yes
        with steer(tiny.model, 1, u, 20.0):
            p_big = runner.forward(texts[:5]).p_yes
        assert dict(layer._forward_hooks) == before_hooks  # ours removed, the user's kept
        np.testing.assert_array_equal(p0, p_zero)
        assert np.abs(p_big - p0).max() > 1e-3
        assert seen  # the user's hook still fired
    finally:
        user.remove()


def _yes_direction(loaded, runner, texts, layer):
    """Unit direction whose addition at ``layer`` (every position) raises logit P(Yes) most."""
    from latent_bias_probe.extract.scoring import yes_no_ids

    yes, no = yes_no_ids(loaded.tokenizer)
    v = torch.zeros(loaded.d_model, requires_grad=True)

    def add(m, i, o):
        return (o[0] + v,) + tuple(o[1:]) if isinstance(o, tuple) else o + v

    handle = decoder_layers(loaded.model)[layer].register_forward_hook(add)
    try:
        batch = runner.encode(texts)
        logits = loaded.model(**batch).logits[:, -1, :]
        score = (torch.logsumexp(logits[:, yes], -1) - torch.logsumexp(logits[:, no], -1)).sum()
        score.backward()
    finally:
        handle.remove()
    g = v.grad.detach().numpy()
    return g / np.linalg.norm(g)


@contextlib.contextmanager
def planted_effect(loaded, layer, direction, strength, token_ids):
    """At ``layer``'s output, add strength·direction to every position of rows that
    contain any of ``token_ids`` (the planted demographic effect)."""
    state = {}
    u = torch.as_tensor(direction, dtype=torch.float32)

    def remember(module, args, kwargs):
        ids = kwargs.get("input_ids", args[0] if args else None)
        state["rows"] = torch.isin(ids, torch.as_tensor(token_ids)).any(-1)

    def add(m, i, o):
        h = o[0] if isinstance(o, tuple) else o
        h = h + strength * state["rows"][:, None, None].to(h.dtype) * u
        return (h,) + tuple(o[1:]) if isinstance(o, tuple) else h

    handles = [
        loaded.model.register_forward_pre_hook(remember, with_kwargs=True),
        decoder_layers(loaded.model)[layer].register_forward_hook(add),
    ]
    try:
        yield
    finally:
        for h in handles:
            h.remove()


def test_erasing_a_planted_demographic_effect_removes_it(tiny):
    runner = make_runner("hf", tiny)
    prompts, texts = _texts(tiny, 6)
    case_ids = [p.case_id for p in prompts]
    variants = [p.variant for p in prompts]
    u = _yes_direction(tiny, runner, texts[:4], 1)
    black = tiny.tokenizer(" Black", add_special_tokens=False)["input_ids"]
    with planted_effect(tiny, 1, u, 8.0, black):
        p = runner.forward(texts).p_yes
        d_before = disparity(case_ids, variants, p)
        demo = [i for i, v in enumerate(variants) if v != "BASE"]
        groups = sorted({variants[i] for i in demo})
        concept = np.array([groups.index(variants[i]) for i in demo])
        (leace, control, rank), = fit_erasers(runner, tiny.model, [texts[i] for i in demo], concept, [2], 8, 0).values()
        with erase(tiny.model, 2, leace):
            d_leace = disparity(case_ids, variants, runner.forward(texts).p_yes)
        with erase(tiny.model, 2, control):
            d_rand = disparity(case_ids, variants, runner.forward(texts).p_yes)
    assert rank == len(groups) - 1
    assert d_before > 0.05  # the plant moves P(Yes) for Black-* prompts
    assert mediated_fraction(d_before, d_leace) > 0.7
    assert mediated_fraction(d_before, d_rand) < 0.3


def test_disparity_and_fraction_known_answers():
    cases = ["a", "a", "a", "b", "b", "b"]
    variants = ["BASE", "X-F", "Y-F", "BASE", "X-F", "Y-F"]
    p = [0.5, 0.7, 0.4, 0.2, 0.2, 0.5]
    assert disparity(cases, variants, p) == pytest.approx((0.2 + 0.1 + 0.0 + 0.3) / 4)
    assert mediated_fraction(0.2, 0.05) == pytest.approx(0.75)
    assert mediated_fraction(0.0, 0.0) is None


def test_probe_explain_end_to_end(tmp_path, tiny_model_dir):
    cfg = write_config(
        tmp_path / "e.yaml", tiny_model_dir,
        benchmark={"n_cases": 4, "tiers": ["low"]},
        explain={"max_cases": 3, "alphas": [-4.0, 0.0, 4.0], "layers": [1, 3]},
    )
    out = tmp_path / "run"
    res = run_probe("run", str(cfg), "--out", str(out), "--no-progress")
    assert res.returncode == 0, res.stderr
    res = run_probe("explain", str(out))
    assert res.returncode == 0, res.stderr
    explain = json.loads((out / "explain.json").read_text())
    tier = explain["tiers"]["low"]
    assert tier["n_cases"] == 3
    assert set(tier["dose_response"]) >= {"value_axis", "steer:Black-Female"}
    va = tier["dose_response"]["value_axis"]
    assert va["alphas"] == [-4.0, 0.0, 4.0] and len(va["p_yes_mean"]) == 3
    assert [m["layer"] for m in tier["mediation"]] == [1, 3]
    med = json.loads((out / "results.json").read_text())["tiers"]["low"]["latent"]["mediation"]
    assert set(med) == {"layer", "disparity_before", "disparity_after", "mediated_fraction", "random_control_fraction"}
    bad = run_probe("explain", str(out), "--layers", "1,99")
    assert bad.returncode == 2 and "--layers" in bad.stderr
