"""Explain at audit scale: prefix reuse equals full re-runs, resume after SIGKILL, the causal trace finds a planted path."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

from conftest import IMPORT_ROOT, ROOT, write_config
from latent_bias_probe.extract.backends import make_runner
from latent_bias_probe.extract.chat import model_text
from latent_bias_probe.extract.model import decoder_layers
from latent_bias_probe.extract.tiny import tiny_llama
from latent_bias_probe.probes.causal import Interventions, MemoryStore, fit_erasers, position_kinds
from latent_bias_probe.probes.interventions import RandomSubspaceEraser, erase_fn, steer_fn
from latent_bias_probe.probes.trace import causal_trace, plan_pairs

RACES = ["White", "Black"]
GENDERS = ["Female", "Male"]


@pytest.fixture(scope="module")
def tiny():
    return tiny_llama(seed=3)


def _prompts(loaded, n_cases):
    import pandas as pd

    from latent_bias_probe.benchmarks.ed_generator import generate_ed_cases
    from latent_bias_probe.benchmarks.render import render

    prompts = render(generate_ed_cases(n_cases, seed=1), ["low"], RACES, GENDERS).prompts
    return pd.DataFrame(
        {
            "case_id": [p.case_id for p in prompts],
            "variant": [p.variant for p in prompts],
            "race": [p.race for p in prompts],
            "gender": [p.gender for p in prompts],
            "text": [model_text(loaded.tokenizer, p) for p in prompts],
        }
    )


@pytest.mark.parametrize("backend", ["hf", "nnsight", "transformer_lens"])
def test_prefix_reuse_equals_full_rerun_for_steering_and_erasure(tiny, backend):
    runner = make_runner(backend, tiny)
    table = _prompts(tiny, 2)
    texts = table["text"].tolist()[:6]
    demo = [t for t, v in zip(table["text"], table["variant"]) if v != "BASE"]
    concept = np.array([i % 4 for i in range(len(demo))])
    layers = [0, 2, 3]  # first, middle, last
    erasers = fit_erasers(runner, tiny.model, demo, concept, layers, 8, 0)
    u = np.random.default_rng(1).normal(size=tiny.d_model)
    reuse, full = Interventions(runner, tiny.model, reuse=True), Interventions(runner, tiny.model, reuse=False)
    state = reuse.prepare(texts, layers)
    assert full.prepare(texts, layers) is None
    for layer in layers:
        leace, control, rank = erasers[layer]
        assert rank == 3
        for edit in (steer_fn(u, 6.0), steer_fn(u, -3.0), erase_fn(leace), erase_fn(control)):
            a = reuse.run(texts, state, layer, edit)
            b = full.run(texts, None, layer, edit)
            assert np.abs(a - b).max() < 1e-5, (backend, layer)
        steered = reuse.run(texts, state, layer, steer_fn(u, 6.0))
        assert np.abs(steered - reuse.run(texts, state, layer)).max() > 1e-3  # the edit does something


@pytest.fixture(scope="module")
def tiny_gemma(tmp_path_factory):
    """A tiny random Gemma 3: window-3 sliding attention at layers 0-2 and 4, full attention at layer 3."""
    import transformers

    from latent_bias_probe.configs.schema import ModelConfig
    from latent_bias_probe.extract.model import load_model

    tok = tiny_llama(seed=3).tokenizer
    torch.manual_seed(0)
    cfg = transformers.Gemma3TextConfig(
        vocab_size=len(tok), hidden_size=64, intermediate_size=128, num_hidden_layers=5, num_attention_heads=4,
        num_key_value_heads=2, head_dim=16, sliding_window=3, max_position_embeddings=512,
        layer_types=["sliding_attention"] * 3 + ["full_attention", "sliding_attention"],
        pad_token_id=tok.pad_token_id, bos_token_id=tok.pad_token_id, eos_token_id=tok.pad_token_id,
    )
    folder = tmp_path_factory.mktemp("tiny-gemma")
    transformers.Gemma3ForCausalLM(cfg).save_pretrained(folder, safe_serialization=True)
    tok.save_pretrained(folder)
    return load_model(ModelConfig(name=str(folder)))


def test_last_token_forwards_over_the_kv_cache_equal_full_forwards(tiny_gemma):
    """Llama and Gemma (sliding-window and full-attention caches): the unedited last token over the cached
    first T-1 equals the full forward, and an edit at the last position equals the same edit in a full forward."""
    from latent_bias_probe.extract.components import ComponentEdit, edit_components
    from latent_bias_probe.extract.last_token import LastTokenRunner

    for loaded in (tiny_llama(seed=3), tiny_gemma):  # a fresh Llama: a TransformerLens bridge rewires the shared one
        runner = make_runner("hf", loaded)
        texts = _prompts(loaded, 1)["text"].tolist()[:5]  # left-padded: different lengths
        full = runner.forward(texts).p_yes
        last = LastTokenRunner(runner)
        state = last.prepare(texts)
        assert last.check(state, full) < 1e-5 and last.check(state, full) < 1e-5  # the cache copy is left as it was
        width = runner.encode(texts)["attention_mask"].shape[1]
        where = torch.zeros(len(texts), width, dtype=torch.bool)
        where[:, -1] = True
        value = torch.randn(len(texts), width, loaded.model.config.hidden_size, generator=torch.Generator().manual_seed(1))
        with edit_components(loaded.model, [ComponentEdit(1, "mlp", None, where, value)]):
            edited_full = runner.forward(texts).p_yes
        with edit_components(loaded.model, [ComponentEdit(1, "mlp", None, where[:, -1:], value[:, -1:])]):
            edited_last = last.run(state)
        assert np.abs(edited_full - full).max() > 1e-3 and np.abs(edited_full - edited_last).max() < 1e-5


def test_prefix_reuse_on_gemma_passes_each_block_kind_its_own_mask_and_rotary(tiny_gemma):
    """Gemma's sliding-window and full-attention blocks get different arguments: reuse must keep both."""
    from latent_bias_probe.extract.prefix import Prefix, PrefixRunner, block_kinds

    runner = make_runner("hf", tiny_gemma)
    texts = _prompts(tiny_gemma, 1)["text"].tolist()[:4]
    prefix = PrefixRunner(runner)
    assert block_kinds(tiny_gemma.model, 5) == ["sliding_attention"] * 3 + ["full_attention", "sliding_attention"]
    for layer in (0, 2, 3):  # below the full-attention block (its arguments recorded above the stop), at it, above
        assert prefix.check(texts, layer) < 1e-5, layer
    state = prefix.prefix(texts, [0])
    assert set(state.kwargs) == {"sliding_attention", "full_attention"}
    one_kind = {k: state.kwargs["sliding_attention"] for k in state.kwargs}  # what a single recorded kind would do
    wrong = Prefix(state.hidden, {k: state.args["sliding_attention"] for k in state.args}, one_kind, state.kinds, state.attention_mask)
    assert np.abs(prefix.suffix(wrong, 0) - prefix.suffix(state, 0)).max() > 1e-4


def test_alpha_zero_and_empty_edits_change_nothing(tiny):
    runner = make_runner("hf", tiny)
    texts = _prompts(tiny, 1)["text"].tolist()[:5]
    iv = Interventions(runner, tiny.model, reuse=True)
    state = iv.prepare(texts, [1])
    plain = iv.run(texts, state, 1)
    full = runner.forward(texts).p_yes
    assert np.abs(plain - full).max() < 1e-6
    u = np.random.default_rng(0).normal(size=tiny.d_model)
    np.testing.assert_array_equal(iv.run(texts, state, 1, steer_fn(u, 0.0)), plain)
    empty = RandomSubspaceEraser(tiny.d_model, 0, torch.zeros(tiny.d_model))
    np.testing.assert_array_equal(iv.run(texts, state, 1, erase_fn(empty)), plain)
    nowhere = torch.zeros(state.attention_mask.shape, dtype=torch.bool)
    np.testing.assert_array_equal(iv.run(texts, state, 1, erase_fn(RandomSubspaceEraser(tiny.d_model, 8, torch.zeros(tiny.d_model)), nowhere)), plain)
    with pytest.raises(ValueError, match="zero"):
        steer_fn(np.zeros(tiny.d_model), 1.0)


def _grad_direction(loaded, runner, texts, layer, where):
    """Unit direction whose addition at ``layer``'s output, at the ``(B, T)`` positions ``where``, raises logit P(Yes) most."""
    from latent_bias_probe.extract.scoring import yes_no_ids

    yes, no = yes_no_ids(loaded.tokenizer)
    v = torch.zeros(loaded.d_model, requires_grad=True)
    batch = runner.encode(texts)
    w = where[..., None].float()

    def add(m, i, o):
        h = o[0] if isinstance(o, tuple) else o
        h = h + w * v
        return (h,) + tuple(o[1:]) if isinstance(o, tuple) else h

    handle = decoder_layers(loaded.model)[layer].register_forward_hook(add)
    try:
        logits = loaded.model(**batch).logits[:, -1, :]
        (torch.logsumexp(logits[:, yes], -1) - torch.logsumexp(logits[:, no], -1)).sum().backward()
    finally:
        handle.remove()
    g = v.grad.detach()
    return g / g.norm()


def _detector(x_on: torch.Tensor, x_off: torch.Tensor, direction: torch.Tensor | None = None):
    """(e, θ, width): a unit direction and threshold with ⟨x, e⟩ > θ on every ``x_on`` row and < θ on every ``x_off`` row."""
    e = x_on.mean(0) - x_off.mean(0) if direction is None else direction
    e = e / e.norm()
    on, off = x_on @ e, x_off @ e
    assert on.min() > off.max()  # the detector separates them
    return e, float(on.min() + off.max()) / 2, float(on.min() - off.max()) / 20


def _mlp_input(loaded, runner, texts, layer):
    mlp = decoder_layers(loaded.model)[layer].mlp
    seen = {}
    grab = mlp.register_forward_hook(lambda m, i, o: seen.__setitem__("x", i[0].detach()))
    try:
        with torch.no_grad():
            loaded.model(**runner.encode(texts))
    finally:
        grab.remove()
    return seen["x"]


def _gated(e, theta, width, out_dir, strength):
    def edit(module, inputs, output):
        gate = torch.sigmoid((inputs[0] @ e - theta) / width)[..., None]
        return output + strength * gate * out_dir

    return edit


@contextlib.contextmanager
def planted_path(loaded, runner, texts, strength=1.0):
    """Edit two MLPs so that "Black" lowers P(Yes) along a known path (a two-neuron circuit).

    MLP 1 writes a flag f where its input reads the race word "Black" (a detector
    ⟨x, e₁⟩ > θ₁, a sigmoid gate, like one added neuron); attention in block 2 carries
    a little of it to the later positions; MLP 2 reads it at the decision position
    (⟨x, e₂⟩ > θ₂) and writes −strength·u, u the direction that raises P(Yes) most
    there. Both edits are functions of the MLP's input only. Detectors and thresholds
    are set from ``texts``: the effect sits at the race word up to block 1 and at the
    later positions from block 2 on.
    """
    black = loaded.tokenizer(" Black", add_special_tokens=False)["input_ids"]
    batch = runner.encode(texts)
    real = batch["attention_mask"].bool()
    is_black = torch.isin(batch["input_ids"], torch.as_tensor(black)) & real
    x1 = _mlp_input(loaded, runner, texts, 1)
    e1, t1, w1 = _detector(x1[is_black], x1[real & ~is_black])
    flag = torch.nn.functional.normalize(torch.randn(loaded.d_model, generator=torch.Generator().manual_seed(5)), dim=0)
    blocks = decoder_layers(loaded.model)
    black_row = is_black.any(-1)
    x2_off = _mlp_input(loaded, runner, texts, 2)[:, -1, :]
    handles = [blocks[1].mlp.register_forward_hook(_gated(e1, t1, w1, flag, 40.0))]
    try:
        x2_on = _mlp_input(loaded, runner, texts, 2)[:, -1, :]
        # MLP 2 reads the flag (what MLP 1 added there), orthogonal to every unplanted state of these
        # texts, so the race information attention carries anyway does not open it
        centred = x2_off - x2_off.mean(0)
        basis = torch.linalg.svd(centred, full_matrices=False).Vh[: torch.linalg.matrix_rank(centred)]
        added = (x2_on - x2_off)[black_row].mean(0)
        e2, t2, w2 = _detector(x2_on[black_row], torch.cat([x2_off, x2_on[~black_row]]), added - basis.T @ (basis @ added))
        last = torch.zeros(real.shape, dtype=torch.bool)
        last[:, -1] = True
        u = _grad_direction(loaded, runner, texts, 2, last)
        handles.append(blocks[2].mlp.register_forward_hook(_gated(e2, t2, w2, -u, 40.0 * strength)))
        yield
    finally:
        for h in handles:
            h.remove()


def _short_prompts(n_cases):
    """Short prompts (24 tokens): the random tiny model's diffuse attention still carries a word's effect."""
    import pandas as pd

    rows = []
    for age in [30, 45, 71, 88, 52, 19][:n_cases]:
        for race in RACES:
            for gender in GENDERS:
                text = f"<|im_start|>user\nA {gender} patient of {race} descent, age {age}. Yes or No?<|im_end|>\n<|im_start|>assistant\n"
                rows.append({"case_id": f"c{age}", "variant": f"{race}-{gender}", "race": race, "gender": gender, "text": text})
    return pd.DataFrame(rows)


def _trace(tiny, table, layers):
    runner = make_runner("hf", tiny)
    texts = table["text"].tolist()
    cases = list(dict.fromkeys(table["case_id"]))
    pairs = plan_pairs(table, RACES, GENDERS, cases)
    kinds = position_kinds(runner, texts, RACES, GENDERS)
    iv = Interventions(runner, tiny.model, reuse=True)
    return causal_trace(iv, table, texts, None, pairs, kinds, layers, 8, MemoryStore(), None, 200, 0.9, 0)


def test_causal_trace_puts_a_planted_effect_at_its_layer_and_positions(tiny):
    table = _short_prompts(4)
    layers = list(range(tiny.n_layers))
    runner = make_runner("hf", tiny)
    clean = _trace(tiny, table, layers)
    with planted_path(tiny, runner, table["text"].tolist()):
        planted = _trace(tiny, table, layers)
    race, clean_race = planted["pooled"]["race"], clean["pooled"]["race"]
    assert race["n_cases"] == 4 and race["n_unaligned"] == 0
    assert race["mean_abs_gap"] > 0.2  # the plant moves P(Yes) of Black-* variants
    assert clean_race["mean_abs_gap"] < 0.1 * race["mean_abs_gap"]  # without it, no gap beyond noise
    demo, after = race["demographic"]["fraction"], race["after"]["fraction"]
    # below and at the planted MLP the race words carry the gap, the later positions do not yet
    assert demo[0] > 0.8 and demo[1] > 0.8
    assert after[0] < 0.2 and after[1] < 0.2
    # at the last layer only the later positions (the decision) matter
    assert after[3] > 0.95 and abs(demo[3]) < 0.05
    assert race["demographic"]["lo"][1] <= demo[1] <= race["demographic"]["hi"][1]
    # block 2's MLP reads the flag at the decision position: from there on only the later positions count
    assert after[2] > 0.95 and abs(demo[2]) < 0.05
    # gender pairs differ in no planted word: their gaps stay small
    assert planted["pooled"]["gender"]["mean_abs_gap"] < 0.1 * race["mean_abs_gap"]
    assert {p["source"] for p in planted["pairs"] if p["attribute"] == "race"} == {"Black-Female", "Black-Male"}


def _checkpoint_items(path):
    try:
        return len(json.loads(path.read_text())["items"])
    except (OSError, ValueError, KeyError):
        return 0


def test_sigkill_during_explain_then_rerun_gives_the_same_explain_json(tmp_path, tiny_model_dir, caplog):
    cfg = write_config(
        tmp_path / "k.yaml", tiny_model_dir,
        benchmark={"n_cases": 4, "tiers": ["low"]},
        explain={"max_cases": 3, "alphas": [-4.0, 0.0, 4.0], "layers": [1, 3], "trace_cases": 2,
                 "position_erasure": True},
    )
    from latent_bias_probe import pipeline
    from latent_bias_probe.pipeline.explain import run_explain

    run = tmp_path / "run"
    pipeline.run(str(cfg), run, stages=("extract", "score", "fit"), progress=False)
    reference = tmp_path / "reference"
    shutil.copytree(run, reference)
    run_explain(reference, progress=False)

    env = dict(os.environ, PYTHONPATH=str(IMPORT_ROOT), HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
    proc = subprocess.Popen([sys.executable, "-c", "from latent_bias_probe.cli import main; main()", "explain", str(run)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    partial = run / ".explain.partial.json"
    deadline = time.time() + 300
    while proc.poll() is None and time.time() < deadline and _checkpoint_items(partial) < 3:
        time.sleep(0.005)
    assert proc.poll() is None, "explain finished before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    left = _checkpoint_items(partial)
    assert left >= 3 and not (run / "explain.json").exists()
    with caplog.at_level(logging.INFO, logger="latent_bias_probe.pipeline.explain"):
        run_explain(run, progress=False)
    assert any("resuming" in r.getMessage() for r in caplog.records)
    assert (run / "explain.json").read_text() == (reference / "explain.json").read_text()
    assert not partial.exists()
    tier = json.loads((run / "explain.json").read_text())["tiers"]["low"]
    assert tier["trace"]["layers"] == [0, 1, 2, 3] and set(tier["trace"]["pooled"]) == {"race", "gender"}
    assert set(tier["mediation"][0]["by_position"]) == {"demographic", "later", "decision", "by_kind"}


def _flat_numbers(x, out):
    if isinstance(x, dict):
        for k in sorted(x):
            _flat_numbers(x[k], out)
    elif isinstance(x, list):
        for v in x:
            _flat_numbers(v, out)
    elif isinstance(x, float):
        out.append(x)
    return out


def test_the_mediation_continues_from_its_fitting_pass_with_the_same_numbers(tiny, monkeypatch):
    """The fitting pass's captures serve as the erased runs' prefixes: same explain result, one pass fewer per prompt."""
    from latent_bias_probe.probes import causal as causal
    from latent_bias_probe.configs.schema import Config, ExplainConfig, ExtractConfig
    from latent_bias_probe.extract.hf_runner import score_prompts
    from latent_bias_probe.probes.steering import SteeringVectors

    made = []

    class Counting(causal.Interventions):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            made.append(self)

    monkeypatch.setattr(causal, "Interventions", Counting)
    runner = make_runner("hf", tiny)
    table = _prompts(tiny, 3)
    scored = score_prompts(runner, table["text"].tolist(), 4, progress=False, capture=True)
    h = scored["resid_post"]
    axis = np.random.default_rng(0).normal(size=(tiny.n_layers, tiny.d_model))
    sv = SteeringVectors.fit(h, table["variant"].to_numpy())
    steering = {g: sv.vectors[:, j] for j, g in enumerate(sv.groups)}
    results, passes = {}, {}
    for name, reuse, memory in (("kept", True, 4.0), ("re-run", True, 0.0), ("full", False, 4.0)):
        cfg = Config(extract=ExtractConfig(batch_size=4),
                     explain=ExplainConfig(max_cases=3, alphas=[-4.0, 0.0, 4.0], trace_cases=1, trace_layers=[1, 3],
                                           position_erasure=True, prefix_memory_gb=memory))
        results[name] = causal.explain_tier(runner, tiny.model, table, scored["p_yes"], h, axis, 2, steering, cfg, [0, 2, 3],
                                            reuse_prefix=reuse, races=RACES, genders=GENDERS)
        passes[name] = made[-1].passes
    kept, rerun, full = (np.array(_flat_numbers(results[k], [])) for k in ("kept", "re-run", "full"))
    assert np.array_equal(kept, rerun)  # the kept prefix is bitwise the one a re-run computes
    assert kept.shape == full.shape and np.nanmax(np.abs(kept - full)) < 1e-5
    # the kept run captures each prompt once; the re-run captures the prompts to fit (not a batch of
    # BASE prompts only), then again every prompt to continue from
    variants = table["variant"].to_numpy()
    base_only = sum(len(idx) for idx in causal.length_batches(runner, table["text"].tolist(), 4) if (variants[idx] == "BASE").all())
    assert passes["re-run"] - passes["kept"] == len(table) - base_only
    # full re-runs have neither the mediation's nor the dose-response's prefix passes (one per BASE prompt)
    assert passes["full"] == passes["re-run"] - len(table) - (variants == "BASE").sum()
    assert results["kept"]["mediation"][0]["rank"] == 3


def test_the_reuse_check_runs_the_longest_and_shortest_prompt_and_falls_back_when_they_differ(tiny, caplog):
    runner = make_runner("hf", tiny)
    texts = _prompts(tiny, 2)["text"].tolist()[:8]
    lengths = runner.token_lengths(texts)
    assert lengths.max() > lengths.min()  # the check sees a padded batch
    iv = Interventions(runner, tiny.model, reuse=True)
    seen = []
    check = iv.prefix_runner.check
    iv.prefix_runner.check = lambda t, layer: seen.append(list(t)) or check(t, layer)
    iv.verify(texts, 1)
    assert iv.reuse and seen[0] == [texts[i] for i in sorted({int(lengths.argmax()), int(lengths.argmin())})]
    iv.prefix_runner.norm = torch.nn.Identity()  # a head the suffix does not reproduce
    with caplog.at_level(logging.WARNING, logger="latent_bias_probe.probes.causal"):
        iv.verify(texts, 2)
    assert not iv.reuse and any("using full re-runs" in r.getMessage() for r in caplog.records)
    iv.verify(texts, 3)  # no more checks once off
    assert len(seen) == 2
