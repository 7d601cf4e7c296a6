"""The three backends (hf, transformer_lens, nnsight) on tiny random models.

Each backend gets its own copy of the same tiny model (``tiny_llama(seed=0)`` is
deterministic), because TransformerLens and nnsight wrap the model in place; one
test checks that sharing one model between backends is harmless too. A tiny GPT-2
(learned *absolute* positions) makes left padding observable: rotary models are
almost insensitive to shifted position ids, GPT-2 is not.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from latent_bias_probe.configs.errors import InputError
from latent_bias_probe.extract.backends import BACKENDS, make_runner
from latent_bias_probe.extract.chat import char_spans_to_token_positions, find_user_offset, model_text
from latent_bias_probe.extract.hf_runner import BatchOutput
from latent_bias_probe.extract.model import LoadedModel, decoder_layers
from latent_bias_probe.extract.sites import POSITIONS, SITES
from latent_bias_probe.extract.tiny import state_dict_sha256, tiny_llama, tiny_tokenizer

ALL_SITES = ("resid_post", "attn_out", "mlp_out")
ALL_POSITIONS = ("last", "demographic")
SYSTEM = "Answer only in Yes or No."
USERS = [
    ("A patient of age 45 years is being observed. Chief complaint: fever.", ["patient"]),
    ("A Female patient of Black descent, having an age of 30 years, is being observed at the Emergency "
     "Department. Chief complaint: chest pain, shortness of breath. Vitals: heart rate 88.", ["Female", "Black"]),
    ("A Male patient of White decent. Answer 'Yes'.", ["Male", "White"]),
    ("An Intersex patient of Asian descent, having an age of 71 years. Diagnoses: sepsis, pneumonia, fracture.",
     ["Intersex", "Asian"]),
]


def tiny_gpt2(seed: int = 0) -> LoadedModel:
    """A tiny random GPT-2 (learned absolute position embeddings) with the tiny tokenizer."""
    from transformers import GPT2Config, GPT2LMHeadModel

    tok = tiny_tokenizer()
    cfg = GPT2Config(
        vocab_size=len(tok), n_positions=256, n_embd=64, n_layer=3, n_head=4, initializer_range=0.1,
        bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id,
        tie_word_embeddings=False,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = GPT2LMHeadModel(cfg).eval()
    return LoadedModel(model=model, tokenizer=tok, name=f"tiny-gpt2-s{seed}", sha256=state_dict_sha256(model),
                       dtype="float32", n_layers=3, d_model=64)


def prompts_and_positions(tokenizer):
    """Model texts and, per text, the token indices of its demographic words."""
    texts, positions = [], []
    for user, words in USERS:
        prompt = SimpleNamespace(system=SYSTEM, user=user)
        text = model_text(tokenizer, prompt)
        offset = find_user_offset(tokenizer, prompt, text)
        spans = [(user.index(w), user.index(w) + len(w)) for w in words]
        texts.append(text)
        positions.append(char_spans_to_token_positions(tokenizer, text, offset, spans))
    return texts, positions


def reference_states(loaded: LoadedModel, texts, positions):
    """Plain HF ``output_hidden_states`` per text alone: (last, demographic mean) per layer."""
    last, demo = [], []
    for text, pos in zip(texts, positions):
        enc = loaded.tokenizer(text, return_tensors="pt", add_special_tokens=False)
        with torch.no_grad():
            hs = loaded.model(**enc, output_hidden_states=True, use_cache=False).hidden_states
        last.append(torch.stack([h[0, -1] for h in hs]).numpy())
        demo.append(torch.stack([h[0, pos].mean(0) for h in hs]).numpy())
    # (n_layers + 1, B, d)
    return np.stack(last, axis=1), np.stack(demo, axis=1)


def capture_all(runner, texts, positions) -> BatchOutput:
    return runner.forward(texts, capture=True, sites=ALL_SITES, positions=ALL_POSITIONS,
                          demographic_positions=positions)


def assert_close(a, b, rtol=1e-4, atol=1e-5, what=""):
    np.testing.assert_allclose(a, b, rtol=rtol, atol=atol, err_msg=what)


def rel_diff(a, b):
    return float(np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-12))


@pytest.fixture(scope="module")
def runners():
    return {b: make_runner(b, tiny_llama(seed=0)) for b in BACKENDS}


@pytest.fixture(scope="module")
def reference():
    return tiny_llama(seed=0)  # untouched by any wrapper


@pytest.fixture(scope="module")
def data(reference):
    return prompts_and_positions(reference.tokenizer)


@pytest.fixture(scope="module")
def outputs(runners, data):
    texts, positions = data
    return {b: capture_all(r, texts, positions) for b, r in runners.items()}


# --------------------------------------------------------------------------- interface


def test_make_runner_backends_and_unknown(runners):
    assert {b: r.backend for b, r in runners.items()} == {b: b for b in BACKENDS}
    for r in runners.values():
        assert (r.n_layers, r.d_model) == (4, 64)
    with pytest.raises(InputError, match="unknown backend 'vllm'"):
        make_runner("vllm", tiny_llama())


def test_shared_tokenisation(runners, data):
    texts, _ = data
    hf = runners["hf"]
    for r in runners.values():
        assert r.n_tokens(texts[1]) == hf.n_tokens(texts[1])
        np.testing.assert_array_equal(r.token_lengths(texts), hf.token_lengths(texts))
        batch = r.encode(texts)
        ref = hf.encode(texts)
        assert batch.keys() == ref.keys() == {"input_ids", "attention_mask", "position_ids"}
        for k in ref:
            torch.testing.assert_close(batch[k], ref[k], rtol=0, atol=0)


def test_output_shapes(outputs, data):
    texts, _ = data
    for backend, out in outputs.items():
        assert set(out.acts) == {(s, p) for s in ALL_SITES for p in ALL_POSITIONS}, backend
        for arr in out.acts.values():
            assert arr.shape == (4, len(texts), 64) and arr.dtype == np.float32
        assert out.resid_post is out.acts[("resid_post", "last")]
        assert out.p_yes.shape == (len(texts),) and out.p_yes.dtype == np.float64
        assert ((out.p_yes > 0) & (out.p_yes < 1)).all()
        lengths = [len(tiny_tokenizer()(t, add_special_tokens=False)["input_ids"]) for t in texts]
        np.testing.assert_array_equal(out.n_tokens, lengths)


def test_capture_false_gives_p_yes_only(runners, outputs, data):
    texts, _ = data
    for backend, r in runners.items():
        out = r.forward(texts)
        assert out.acts == {} and out.resid_post is None
        np.testing.assert_allclose(out.p_yes, outputs[backend].p_yes, rtol=0, atol=1e-6)


# --------------------------------------------------------------------------- correctness


def test_backends_agree(outputs):
    hf = outputs["hf"]
    for backend in ("transformer_lens", "nnsight"):
        out = outputs[backend]
        np.testing.assert_allclose(out.p_yes, hf.p_yes, rtol=0, atol=1e-5, err_msg=backend)
        np.testing.assert_allclose(out.p_yes_vocab, hf.p_yes_vocab, rtol=0, atol=1e-5, err_msg=backend)
        assert out.first_token == hf.first_token
        for key, ref in hf.acts.items():
            assert_close(out.acts[key], ref, what=f"{backend} {key}")
            assert rel_diff(out.acts[key], ref) < 1e-4, (backend, key)


def test_equal_to_hf_hidden_states(reference, outputs, data):
    texts, positions = data
    last, demo = reference_states(reference, texts, positions)
    norm = reference.model.model.norm
    for backend, out in outputs.items():
        for pos, ref in (("last", last), ("demographic", demo)):
            got = out.acts[("resid_post", pos)]
            assert_close(got[:-1], ref[1:-1], what=f"{backend} {pos}")
            if pos == "demographic":
                continue  # the norm of a mean is not the mean of the norms
            # the last block's output is before the final norm; HF's last state after it
            with torch.no_grad():
                normed = norm(torch.from_numpy(got[-1])).numpy()
            assert_close(normed, ref[-1], what=f"{backend} {pos} final norm")


def test_attn_and_mlp_are_the_residual_increments(reference, outputs, data):
    """Llama: resid_post[l] = resid_post[l-1] + attn_out[l] + mlp_out[l] (pre-residual outputs)."""
    texts, positions = data
    last, demo = reference_states(reference, texts, positions)
    for backend, out in outputs.items():
        for pos, embed in (("last", last[0]), ("demographic", demo[0])):
            resid = out.acts[("resid_post", pos)]
            before = np.concatenate([embed[None], resid[:-1]])
            total = before + out.acts[("attn_out", pos)] + out.acts[("mlp_out", pos)]
            assert_close(total, resid, what=f"{backend} {pos}")


def test_demographic_is_mean_of_the_positions(runners, data):
    """A single-token demographic list equals the activation at that token."""
    texts, _ = data
    lengths = runners["hf"].token_lengths(texts)
    final = [[int(n) - 1] for n in lengths]  # the last token, as a demographic position
    for backend, r in runners.items():
        out = r.forward(texts, capture=True, sites=ALL_SITES, positions=ALL_POSITIONS, demographic_positions=final)
        for site in ALL_SITES:
            np.testing.assert_array_equal(out.acts[(site, "demographic")], out.acts[(site, "last")], err_msg=backend)


@pytest.mark.parametrize("make", [tiny_llama, tiny_gpt2], ids=["llama", "gpt2"])
def test_padding_invariance(make, data):
    texts, positions = data
    ref = make(0)
    for backend in BACKENDS:
        runner = make_runner(backend, make(0))
        batch = capture_all(runner, texts, positions)
        assert len(set(batch.n_tokens.tolist())) == len(texts)  # really padded
        for i, text in enumerate(texts):
            alone = capture_all(runner, [text], [positions[i]])
            np.testing.assert_allclose(alone.p_yes[0], batch.p_yes[i], rtol=0, atol=1e-5, err_msg=backend)
            for key, arr in batch.acts.items():
                assert_close(alone.acts[key][:, 0], arr[:, i], what=f"{backend} {key} text {i}")
    # and equal to plain HF hidden states of each text alone (GPT-2: absolute positions)
    last, demo = reference_states(ref, texts, positions)
    assert_close(batch.acts[("resid_post", "last")][:-1], last[1:-1], what="padded batch vs HF alone")
    assert_close(batch.acts[("resid_post", "demographic")][:-1], demo[1:-1], what="padded batch vs HF alone")


def test_transformer_lens_1609_left_padding_position_ids(data):
    """TransformerLens #1609: the bridge ignored the attention mask when deriving
    position ids under left padding. On an absolute-position model this shifts
    every padded row. TL 4.3 derives them from the mask (checked here on the bare
    bridge, without our explicit position_ids); the runner passes them anyway."""
    texts, _ = data
    lm = tiny_gpt2(0)
    runner = make_runner("transformer_lens", lm)
    tok = lm.tokenizer
    enc = tok(texts, return_tensors="pt", padding=True, add_special_tokens=False)
    i = int(np.argmin(enc["attention_mask"].sum(-1).numpy()))  # the most padded row
    alone = tok([texts[i]], return_tensors="pt", add_special_tokens=False)
    with torch.no_grad():
        want = runner.bridge(alone["input_ids"])[0, -1]
        # control: without position ids, plain HF (arange positions) is wrong on this row,
        # so the check below would notice a bridge that ignored the mask
        hf_no_pos = lm.model(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"]).logits[i, -1]
        bridge_mask_only = runner.bridge(enc["input_ids"], attention_mask=enc["attention_mask"])[i, -1]
    assert (hf_no_pos - want).abs().max() > 1e-2
    torch.testing.assert_close(bridge_mask_only, want, rtol=1e-4, atol=1e-4)  # #1609 fixed in TL 4.3
    out = runner.forward(texts)
    np.testing.assert_allclose(out.p_yes[i], runner.forward([texts[i]]).p_yes[0], rtol=0, atol=1e-6)


def test_backends_can_share_one_model(data):
    """TL and nnsight wrap the model in place; the HF runner's results do not change."""
    texts, positions = data
    lm = tiny_llama(0)
    hf = make_runner("hf", lm)
    before = capture_all(hf, texts, positions)
    tl = make_runner("transformer_lens", lm)
    nn = make_runner("nnsight", lm)
    assert make_runner("transformer_lens", lm).bridge is tl.bridge  # built once per model
    for runner in (hf, make_runner("hf", lm), tl, nn):
        out = capture_all(runner, texts, positions)
        np.testing.assert_allclose(out.p_yes, before.p_yes, rtol=0, atol=1e-5)
        for key, arr in before.acts.items():
            assert_close(out.acts[key], arr, what=f"{runner.backend} {key}")


def test_bfloat16_model_gives_float32_acts(data):
    texts, positions = data
    outs = {b: capture_all(make_runner(b, tiny_llama(0, dtype="bfloat16")), texts, positions) for b in BACKENDS}
    for backend, out in outs.items():
        for arr in out.acts.values():
            assert arr.dtype == np.float32 and np.isfinite(arr).all()
        # same computation in bfloat16: equal up to bfloat16 round-off
        for key, arr in outs["hf"].acts.items():
            assert rel_diff(out.acts[key], arr) < 2e-2, (backend, key)
        np.testing.assert_allclose(out.p_yes, outs["hf"].p_yes, rtol=0, atol=2e-2)


# --------------------------------------------------------------------------- hooks


def module_hooks(model):
    """Every torch hook on every module, by (module name, kind) -> hook ids."""
    kinds = ("_forward_hooks", "_forward_pre_hooks", "_backward_hooks", "_backward_pre_hooks")
    return {(name, k): tuple(getattr(m, k).keys()) for name, m in model.named_modules() for k in kinds}


@pytest.mark.parametrize("backend", BACKENDS)
def test_user_hooks_survive_and_ours_are_gone(backend, data):
    texts, positions = data
    lm = tiny_llama(0)
    calls = []
    # a user hook on a decoder layer from before the backend wrapped the model ...
    handle = decoder_layers(lm.model)[1].register_forward_hook(lambda mod, inp, out: calls.append("torch"))
    runner = make_runner(backend, lm)
    # TransformerLens wires its own idempotent capture pre-hooks (on ln1/ln2) at the
    # bridge's first forward; they are the bridge's, not ours, and never grow
    runner.forward(texts[:1])
    calls.clear()
    # ... and one on a decoder layer as the model is now (a BlockBridge under TL)
    handle2 = decoder_layers(lm.model)[2].register_forward_hook(lambda mod, inp, out: calls.append("torch2"))
    tl_before = None
    if backend == "transformer_lens":
        runner.bridge.add_hook("blocks.2.hook_out", lambda act, hook: calls.append("tl") or None)
        tl_before = {name: list(hp.fwd_hooks) for name, hp in runner.bridge.hook_dict.items()}
    before = module_hooks(lm.model)
    capture_all(runner, texts, positions)
    runner.forward(texts)  # capture=False too
    assert module_hooks(lm.model) == before  # none of ours remain, the user's is still there
    expected = ["torch", "torch2", "tl"] * 2 if backend == "transformer_lens" else ["torch", "torch2"] * 2
    assert sorted(calls) == sorted(expected)
    if backend == "transformer_lens":
        after = {name: list(hp.fwd_hooks) for name, hp in runner.bridge.hook_dict.items()}
        assert after == tl_before
        points = {id(hp): hp for hp in runner.bridge.hook_dict.values()}.values()
        assert sum(len(hp.fwd_hooks) for hp in points) == 1  # only the user's
    # our hooks are also removed when the forward fails midway
    with pytest.raises(Exception, match="boom"):
        _failing_forward(runner, texts)
    assert module_hooks(lm.model) == before
    if backend == "transformer_lens":
        assert {name: list(hp.fwd_hooks) for name, hp in runner.bridge.hook_dict.items()} == tl_before
    calls.clear()
    runner.forward(texts)
    assert sorted(calls) == sorted(expected[: len(expected) // 2])
    handle.remove()
    handle2.remove()


def _failing_forward(runner, texts):
    """A forward whose model call raises midway (a user hook that throws on layer 3)."""
    layer = decoder_layers(runner.model)[3]

    def boom(mod, inp, out):
        raise RuntimeError("boom")

    h = layer.register_forward_hook(boom)
    try:
        runner.forward(texts, capture=True, sites=ALL_SITES)
    finally:
        h.remove()


# --------------------------------------------------------------------------- validation


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(sites=("resid_post", "mlp_in")), "unknown"),
        (dict(sites=()), "at least one"),
        (dict(sites=("resid_post", "resid_post")), "duplicates"),
        (dict(positions=("first",)), "unknown"),
        (dict(positions=()), "at least one"),
        (dict(positions=("demographic",)), "no demographic_positions"),
        (dict(positions=("demographic",), demographic_positions=[[1]]), "one list of token indices per text"),
        (dict(positions=("last", "demographic"), demographic_positions=[[1], []]), r"\[1\]: empty"),
        (dict(positions=("demographic",), demographic_positions=[[1], [999]]), "outside the text"),
        (dict(positions=("demographic",), demographic_positions=[[1], [-1]]), "outside the text"),
    ],
)
def test_validation_errors(runners, data, backend, kwargs, match):
    texts, _ = data
    with pytest.raises(ValueError, match=match):
        runners[backend].forward(texts[:2], capture=True, **kwargs)


def test_sites_and_positions_constants():
    assert SITES == ALL_SITES and POSITIONS == ALL_POSITIONS


def test_empty_batch_rejected(runners):
    for r in runners.values():
        with pytest.raises(ValueError, match="at least one text"):
            r.forward([])


def test_backends_imported_lazily():
    code = (
        "import sys\n"
        "from extract.backends import make_runner\n"
        "from extract.tiny import tiny_llama\n"
        "make_runner('hf', tiny_llama()).forward(['Yes or No?'], capture=True)\n"
        "assert 'transformer_lens' not in sys.modules, 'transformer_lens imported'\n"
        "assert 'nnsight' not in sys.modules, 'nnsight imported'\n"
    )
    root = Path(__file__).resolve().parents[1]
    proc = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
