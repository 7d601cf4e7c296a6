"""Precisions and adapters on the tiny model: int8 layers, bitsandbytes without CUDA, LoRA."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from latent_bias_probe.benchmarks.types import Prompt
from latent_bias_probe.configs.errors import InputError
from latent_bias_probe.configs.schema import ModelConfig
from latent_bias_probe.extract.chat import model_text
from latent_bias_probe.extract.hf_runner import HFRunner
from latent_bias_probe.extract.model import load_model
from latent_bias_probe.extract.precision import Int8Linear, PrecisionError, check_model_options

USERS = [
    "A patient of age 45 years is being observed. ANSWER:",
    "A Female patient of Black descent, having an age of 30 years, is being observed at the Emergency "
    "Department of a hospital. Chief complaint: chest pain. Please provide a one-word answer (Yes/No). ANSWER:",
    "Is the patient stable? (Yes/No)",
    "Vitals: temperature 98.6 F, heart rate 88, respiratory rate 16, oxygen saturation 97 percent. ANSWER:",
]


def _texts(tokenizer):
    return [model_text(tokenizer, Prompt("c", "high", "BASE", "BASE", "BASE", None, "Answer only in Yes or No.", u)) for u in USERS]


def _forward(loaded):
    return HFRunner(loaded).forward(_texts(loaded.tokenizer), capture=True)


@pytest.fixture(scope="module")
def base(tiny_model_dir):
    loaded = load_model(ModelConfig(name=str(tiny_model_dir)))
    return loaded, _forward(loaded)


@pytest.fixture(scope="module")
def int8(tiny_model_dir):
    loaded = load_model(ModelConfig(name=str(tiny_model_dir), quantization="int8"))
    return loaded, _forward(loaded)


# --------------------------------------------------------------------------- int8


def test_int8_replaces_every_decoder_linear_with_an_int8_module(int8):
    loaded, _ = int8
    model = loaded.model
    linears = [n for n, m in model.named_modules() if isinstance(m, torch.nn.Linear)]
    assert linears == ["lm_head"]  # only the output head stays float
    quantized = {n: m for n, m in model.named_modules() if isinstance(m, Int8Linear)}
    assert len(quantized) == 4 * 7  # q, k, v, o, gate, up, down per layer
    for m in quantized.values():
        assert m.weight_int8.dtype == torch.int8 and m.weight_scale.dtype == torch.float32
        assert int(m.weight_int8.abs().max()) == 127  # per-channel absmax scaling uses the full range
        assert "weight" not in dict(m.named_parameters())  # no float copy of the weight kept
    assert loaded.dtype == "int8"


def test_int8_p_yes_is_close_to_float32_but_not_equal(base, int8):
    p32, p8 = base[1].p_yes, int8[1].p_yes
    diff = np.abs(p8 - p32)
    assert 0 < diff.max() < 0.1
    assert np.all((p8 > 0) & (p8 < 1))


def test_int8_forward_hooks_still_capture_resid_post(base, int8):
    r32, r8 = base[1].resid_post, int8[1].resid_post
    assert r8.shape == r32.shape == (4, len(USERS), 64)
    assert np.isfinite(r8).all()
    rel = np.linalg.norm(r8 - r32) / np.linalg.norm(r32)
    assert 0 < rel < 0.1


def test_int8_linear_matches_its_dequantized_weight_and_handles_outliers():
    torch.manual_seed(0)
    lin = torch.nn.Linear(64, 32)
    x = torch.randn(3, 5, 64)
    x[0, 1, 3], x[2, 4, 10] = 50.0, -20.0  # outliers
    before = x.clone()
    with torch.no_grad():
        ref = lin(x)
        with_outliers = Int8Linear.from_linear(lin, threshold=6.0)(x)
        without = Int8Linear.from_linear(lin, threshold=0.0)(x)
    assert torch.equal(x, before)  # the input is not modified
    assert with_outliers.shape == ref.shape and with_outliers.dtype == ref.dtype
    err_with = (with_outliers - ref).abs().max().item()
    err_without = (without - ref).abs().max().item()
    assert 0 < err_with < 0.05 and err_with < err_without / 3


def test_int8_layers_do_not_mix_the_prompts_of_a_batch(int8):
    """Each token is quantized on its own and attends over its own tokens: alone and batched agree.

    (The residual stream bitwise, tests/test_attention_batch_invariant.py; P(Yes) to the float
    output head's round-off. With padded attention, round-off flipped int8 roundings on
    SmolLM2-135M and moved P(Yes) by up to 0.065: extract.batch_check measures it on every run.)
    """
    loaded, out = int8
    runner = HFRunner(loaded)
    texts = _texts(loaded.tokenizer)
    alone = np.array([runner.forward([t]).p_yes[0] for t in texts])
    np.testing.assert_allclose(alone, out.p_yes, atol=1e-6)


def test_int8_with_bfloat16_runs(tiny_model_dir):
    loaded = load_model(ModelConfig(name=str(tiny_model_dir), dtype="bfloat16", quantization="int8"))
    out = HFRunner(loaded).forward(_texts(loaded.tokenizer)[:2])
    assert np.isfinite(out.p_yes).all()


# --------------------------------------------------------------------------- bitsandbytes


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error on a machine without CUDA")
@pytest.mark.parametrize("precision", ["bnb-8bit", "bnb-4bit"])
def test_bnb_without_cuda_is_a_clear_input_error(tiny_model_dir, precision):
    with pytest.raises(InputError) as err:
        load_model(ModelConfig(name=str(tiny_model_dir), quantization=precision))
    msg = str(err.value)
    assert precision in msg and "CUDA" in msg and "\n" not in msg
    with pytest.raises(PrecisionError):
        check_model_options(ModelConfig(quantization=precision))


def test_bnb_error_comes_through_the_cli(tmp_path, tiny_model_dir):
    if torch.cuda.is_available():
        pytest.skip("checks the error on a machine without CUDA")
    from conftest import run_probe, write_config

    cfg = write_config(tmp_path / "c.yaml", tiny_model_dir, model={"name": str(tiny_model_dir), "quantization": "bnb-4bit"})
    res = run_probe("extract", str(cfg), "--out", str(tmp_path / "run"), "--no-progress")
    assert res.returncode == 2, res.stderr
    assert "bnb-4bit" in res.stderr and "CUDA" in res.stderr and "Traceback" not in res.stderr


# --------------------------------------------------------------------------- adapters


@pytest.fixture(scope="module")
def lora_dir(tiny_model_dir, tmp_path_factory):
    """A tiny LoRA (r=4 on q_proj and v_proj, non-zero B) saved with safetensors."""
    pytest.importorskip("peft")
    from peft import LoraConfig, get_peft_model

    base = load_model(ModelConfig(name=str(tiny_model_dir)))
    config = LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
    torch.manual_seed(0)
    peft_model = get_peft_model(base.model, config)
    folder = tmp_path_factory.mktemp("lora")
    peft_model.save_pretrained(str(folder), safe_serialization=True)
    return folder


def test_adapter_changes_p_yes(base, tiny_model_dir, lora_dir):
    loaded = load_model(ModelConfig(name=str(tiny_model_dir), adapter=str(lora_dir)))
    out = _forward(loaded)
    assert np.abs(out.p_yes - base[1].p_yes).max() > 1e-3
    assert out.resid_post.shape == base[1].resid_post.shape
    assert loaded.name.endswith("+" + lora_dir.name)
    assert loaded.sha256 != base[0].sha256 and len(loaded.sha256) == 64
    # merged: a plain model again, no PEFT wrappers left
    assert not any("lora" in n.lower() for n, _ in loaded.model.named_modules())
    again = _forward(load_model(ModelConfig(name=str(tiny_model_dir), adapter=str(lora_dir))))
    np.testing.assert_array_equal(again.p_yes, out.p_yes)


def test_adapter_then_int8(tiny_model_dir, lora_dir):
    plain = _forward(load_model(ModelConfig(name=str(tiny_model_dir), adapter=str(lora_dir))))
    loaded = load_model(ModelConfig(name=str(tiny_model_dir), adapter=str(lora_dir), quantization="int8"))
    assert any(isinstance(m, Int8Linear) for m in loaded.model.modules())
    out = _forward(loaded)
    assert 0 < np.abs(out.p_yes - plain.p_yes).max() < 0.1


def test_bad_adapters_are_input_errors(tmp_path, tiny_model_dir, lora_dir):
    name = str(tiny_model_dir)
    with pytest.raises(InputError, match="adapter directory not found"):
        load_model(ModelConfig(name=name, adapter=str(tmp_path / "missing")))
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(InputError, match="not a PEFT adapter"):
        load_model(ModelConfig(name=name, adapter=str(empty)))
    other = tmp_path / "prefix"
    other.mkdir()
    (other / "adapter_config.json").write_text(json.dumps({"peft_type": "PREFIX_TUNING"}))
    (other / "adapter_model.safetensors").write_bytes((lora_dir / "adapter_model.safetensors").read_bytes())
    with pytest.raises(InputError, match="not LoRA"):
        load_model(ModelConfig(name=name, adapter=str(other)))
    pickled = tmp_path / "pickled"
    pickled.mkdir()
    (pickled / "adapter_config.json").write_text((lora_dir / "adapter_config.json").read_text())
    (pickled / "adapter_model.bin").write_bytes(b"not read")
    with pytest.raises(InputError, match="pickle"):
        load_model(ModelConfig(name=name, adapter=str(pickled)))
    # a LoRA for modules the model does not have
    wrong = tmp_path / "wrong"
    wrong.mkdir()
    meta = json.loads((lora_dir / "adapter_config.json").read_text())
    meta["target_modules"] = ["no_such_proj"]
    (wrong / "adapter_config.json").write_text(json.dumps(meta))
    (wrong / "adapter_model.safetensors").write_bytes((lora_dir / "adapter_model.safetensors").read_bytes())
    with pytest.raises(InputError, match="cannot apply"):
        load_model(ModelConfig(name=name, adapter=str(wrong)))


# --------------------------------------------------------------------------- the real default model


@pytest.mark.slow
def test_int8_on_the_embedded_model_moves_p_yes_a_little():
    from latent_bias_probe.benchmarks.registry import render_benchmark
    from latent_bias_probe.configs.schema import BenchmarkConfig

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        prompts = render_benchmark(BenchmarkConfig(source="ed_triage", n_cases=1, seed=42, tiers=["high", "low"])).prompts
        chosen = [prompts[0], prompts[5], prompts[13], prompts[20]]
        outs = {}
        for q in ("none", "int8"):
            loaded = load_model(ModelConfig(quantization=q))
            outs[q] = HFRunner(loaded).forward([model_text(loaded.tokenizer, p) for p in chosen], capture=True)
    finally:
        torch.set_num_threads(threads)
    diff = np.abs(outs["int8"].p_yes - outs["none"].p_yes)
    assert 0 < diff.max() < 0.1
    rel = np.linalg.norm(outs["int8"].resid_post - outs["none"].resid_post) / np.linalg.norm(outs["none"].resid_post)
    assert 0 < rel < 0.2


def test_adapter_with_missing_layers_is_an_input_error(tmp_path, tiny_model_dir, lora_dir):
    from safetensors.torch import load_file, save_file

    partial = tmp_path / "partial"
    partial.mkdir()
    (partial / "adapter_config.json").write_text((lora_dir / "adapter_config.json").read_text())
    tensors = load_file(str(lora_dir / "adapter_model.safetensors"))
    save_file({k: v for k, v in tensors.items() if ".layers.0." in k}, str(partial / "adapter_model.safetensors"))
    with pytest.raises(InputError, match="missing adapter keys"):
        load_model(ModelConfig(name=str(tiny_model_dir), adapter=str(partial)))
