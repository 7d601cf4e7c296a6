"""Backends: one registry entry each (configs.names.BACKEND_RUNNERS), one protocol (extract.runner.Runner)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from conftest import write_config
from latent_bias_probe.configs import names
from latent_bias_probe.configs.errors import InputError
from latent_bias_probe.configs.schema import ConfigError, load_config
from latent_bias_probe.extract.backends import make_runner, runner_class
from latent_bias_probe.extract.hf_runner import BaseRunner, HFRunner
from latent_bias_probe.extract.runner import Runner
from latent_bias_probe.extract.tiny import tiny_llama


class LogitLensRunner(BaseRunner):
    """The backend guide's worked example: a plain forward with ``output_hidden_states``.

    Captures ``resid_post`` from the model's own hidden-state outputs instead of hooks;
    every other site is refused before the model runs."""

    backend = "logit_lens"

    def _run(self, batch, plan):
        if plan is not None and set(plan.sites) != {"resid_post"}:
            raise ValueError(f"the logit_lens backend captures resid_post only, not {sorted(plan.sites)}")
        out = self.model(**self._model_kwargs(batch), output_hidden_states=plan is not None)
        if plan is not None:
            for layer, hidden in enumerate(out.hidden_states[1:]):
                plan.record("resid_post", layer, hidden)
        return out.logits[:, -1, :]


class NotARunner:
    """Constructed from a model, but with no forward."""

    def __init__(self, loaded):
        self.loaded = loaded


@pytest.fixture
def registered(monkeypatch):
    """The worked example registered: one entry."""
    monkeypatch.setitem(names.BACKEND_RUNNERS, "logit_lens", f"{__name__}:LogitLensRunner")


def test_shipped_backends_are_registered_runners():
    assert names.BACKENDS == ("hf", "transformer_lens", "nnsight")
    assert runner_class("hf") is HFRunner
    assert isinstance(make_runner("hf", tiny_llama(seed=0)), Runner)


def test_worked_example_a_backend_is_one_entry(registered, tmp_path, tiny_model_dir):
    cfg = load_config(write_config(tmp_path / "c.yaml", tiny_model_dir, extract={"backend": "logit_lens"}))
    assert cfg.extract.backend == "logit_lens"
    loaded = tiny_llama(seed=0)
    mine, hf = make_runner("logit_lens", loaded), make_runner("hf", loaded)
    texts = ["Is the patient stable? Answer Yes or No.", "Admit?"]
    a = mine.forward(texts, capture=True)
    b = hf.forward(texts, capture=True)
    np.testing.assert_allclose(a.p_yes, b.p_yes, rtol=0, atol=1e-6)
    # the last hidden state of a Llama is normed; the hook sees the block output before the norm
    np.testing.assert_allclose(a.resid_post[:-1], b.resid_post[:-1], rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="resid_post only"):
        mine.forward(texts, capture=True, sites=("attn_out",))


def test_unknown_backend_is_refused_naming_the_key(tmp_path, tiny_model_dir):
    with pytest.raises(ConfigError, match=r"extract\.backend: expected one of 'hf', 'transformer_lens', 'nnsight', got 'jax'"):
        load_config(write_config(tmp_path / "c.yaml", tiny_model_dir, extract={"backend": "jax"}))
    with pytest.raises(InputError, match="unknown backend 'jax'"):
        make_runner("jax", tiny_llama(seed=0))


def test_a_broken_registration_is_named(monkeypatch):
    monkeypatch.setitem(names.BACKEND_RUNNERS, "broken", "no_such_module_here:Runner")
    with pytest.raises(InputError, match="'broken' is registered as 'no_such_module_here:Runner', which cannot be imported"):
        runner_class("broken")
    monkeypatch.setitem(names.BACKEND_RUNNERS, "not_a_runner", f"{__name__}:NotARunner")
    with pytest.raises(TypeError, match="does not implement extract.runner.Runner"):
        make_runner("not_a_runner", tiny_llama(seed=0))
    assert torch.is_grad_enabled()
