"""Precision, quantization and adapters: what happens to a model after it is loaded.

``load_model`` calls :func:`check_model_options` before loading (so a bad option fails
in a second, not after a long load) and :func:`apply_model_options` after it. The
second applies, in this order, ``ModelConfig.adapter`` and then
``ModelConfig.quantization``:

``adapter`` (a PEFT LoRA directory)
    ``adapter_config.json`` with ``peft_type: LORA`` and ``adapter_model.safetensors``
    (pickled ``adapter_model.bin`` is refused, as everywhere in this toolkit). The
    LoRA is loaded with ``peft`` (imported only here) and *merged* into the base
    weights (``merge_and_unload``), so the model stays a plain Hugging Face model:
    the decoder layers, hooks and every backend work unchanged. Merging happens in
    the loaded dtype, before any quantization, so ``int8`` + adapter quantizes the
    fine-tuned weights (deploying the fine-tuned model quantized; QLoRA-style
    "quantized base + float LoRA" is not what this does). A missing folder, a folder
    that is not a LoRA adapter, or an adapter whose modules/shapes do not fit the
    model is an :class:`PrecisionError` (an ``InputError``: exit code 2).

``quantization: int8`` (CPU, no extra package)
    Every ``nn.Linear`` of the decoder (attention q/k/v/o and MLP projections) is
    replaced by :class:`Int8Linear`: int8 weights with one symmetric scale per output
    channel, activations quantized dynamically to int8 with one symmetric scale per
    token, an int8 x int8 -> int32 product (``torch._int_mm``) rescaled to float,
    and LLM.int8()-style outlier decomposition: activation entries with
    ``|x| > 6.0`` (bitsandbytes' default ``llm_int8_threshold``) are left out of the
    int8 product and multiplied in float with the dequantized weight columns.
    Unlike bitsandbytes, the outliers are chosen per entry, not per column of the
    whole batch, and each row adds its own outlier terms in column order, so a row's
    output is bitwise the same in any batch (the int8 product is exact, see
    :func:`_int8_matmul`). This is the CPU counterpart of ``bnb-8bit``. On the embedded SmolLM2-135M
    (16 ED-triage prompts) P(Yes) moved by at most 0.042 (mean 0.017) against
    float32 (0.098 / 0.037 without the outlier path); the residual stream by 6.6 %.
    Speed: on an idle 2-core CPU with AMX the 2,080-prompt demo extracted in 146 s
    against 442 s in float32 (on a busy machine with one thread it was 1.1-1.7x
    float32's time). Batch invariance: int8 amplifies round-off (a value nudged across
    a rounding boundary flips an int8 code), so the float attention's padding-dependent
    round-off once moved SmolLM2-135M's int8 P(Yes) by up to 0.11 with its batch-mates
    (0.065 with per-token scales alone). int8 models therefore load with
    ``attn_implementation: batch_invariant`` unless another is configured
    (:mod:`extract.attention`); with it a prompt's int8 hidden states are bitwise the
    same alone and in any batch (``hf`` and ``nnsight`` backends; the TransformerLens
    bridge computes attention itself).

    The output head (``lm_head``) and the embeddings stay in float, as in the
    bitsandbytes integration of transformers (which skips the output embedding):
    P(Yes) is computed from float logits of int8 hidden states; SmolLM2 ties
    ``lm_head`` to the input embedding, which also stays intact.

    Why not ``torch.ao.quantization.quantize_dynamic``: it still runs in torch 2.13
    (deprecated, with warnings), but it quantizes activations per tensor with a 7-bit
    range (``reduce_range`` on x86); on SmolLM2-135M the massive activations entering
    ``down_proj`` then swamp every other value and P(Yes) moves by up to 0.4-0.6 on a
    p ~ 0.7 scale, i.e. it measures a broken model rather than 8-bit quantization.
    torchao's per-token ``Int8DynamicActivationInt8WeightConfig`` is the maintained
    replacement (about 0.12 max |dP|, no outlier handling) but is a large CUDA-first
    dependency and was slower than float32 on this CPU.

``quantization: bnb-8bit`` / ``bnb-4bit`` (bitsandbytes, CUDA only)
    The float model is moved to the GPU and its decoder ``nn.Linear`` layers are
    replaced by ``bitsandbytes.nn.Linear8bitLt`` (LLM.int8(), threshold 6.0) or
    ``Linear4bit`` (NF4, float32 compute); ``lm_head`` stays in float. Without CUDA,
    or without the ``bitsandbytes`` package, :class:`PrecisionError` says which
    precision and why. (The CUDA path follows bitsandbytes' documented module API;
    the test suite, run without a GPU, checks only the refusal.)

Provenance: the returned :class:`~extract.model.LoadedModel` has ``dtype`` set to the
quantization (``"int8"``, ``"bnb-8bit"``, ``"bnb-4bit"``; ``"bfloat16+int8"`` on a
bfloat16 base) when there is one, so the cache and ``results.json`` record it; with
an adapter, ``name`` becomes ``"<model>+<adapter folder name>"`` and ``sha256`` the
SHA-256 of the manifest
``"<base sha256>  base\\n<adapter weights sha256>  adapter_model.safetensors\\n"``.

``gguf_model_dir(path, model_cfg)`` turns any GGUF file into a float32 safetensors
model folder (dequantized once, cached like the embedded default); the sweep uses
it for the ``gguf:<file>`` precision.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import warnings
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from latent_bias_probe.configs.schema import ModelConfig
from .model import LoadedModel, ModelError

log = logging.getLogger(__name__)

from latent_bias_probe.configs.names import QUANTIZATIONS
INT8_THRESHOLD = 6.0  # LLM.int8() outlier threshold (bitsandbytes' llm_int8_threshold default)
SKIP_MODULES = ("lm_head", "embed_out", "output")  # output heads left in float
ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_WEIGHTS = "adapter_model.safetensors"


class PrecisionError(ModelError):
    """A quantization or adapter cannot be applied; one line naming the option and why.

    A :class:`~extract.model.ModelError`, hence an ``InputError``: the CLI exits 2.
    """


# --------------------------------------------------------------------------- checks


def check_model_options(cfg: ModelConfig) -> None:
    """Fail fast on options that cannot work here (before the model is loaded).

    Checks the quantization name, CUDA and bitsandbytes for ``bnb-*``, and that the
    adapter is a PEFT LoRA folder with safetensors weights.
    """
    q = cfg.quantization
    if q not in QUANTIZATIONS:
        raise PrecisionError(f"model.quantization: expected one of {', '.join(QUANTIZATIONS)}, got {q!r}")
    if q.startswith("bnb-"):
        _check_bnb(q)
    if cfg.adapter is not None:
        adapter_dir(cfg.adapter)


def _check_bnb(q: str) -> None:
    bits = "8-bit (LLM.int8)" if q == "bnb-8bit" else "4-bit (NF4)"
    if not torch.cuda.is_available():
        raise PrecisionError(
            f"precision {q!r}: bitsandbytes {bits} quantization runs only on a CUDA GPU and this machine has none "
            f"(torch {torch.__version__}); use 'int8' for 8-bit quantization on the CPU"
        )
    try:
        import bitsandbytes  # noqa: F401
    except ImportError:
        raise PrecisionError(f"precision {q!r}: needs the package bitsandbytes (pip install bitsandbytes)") from None


def adapter_dir(path: str | Path) -> Path:
    """The resolved folder of a PEFT LoRA adapter; :class:`PrecisionError` if it is not one."""
    folder = Path(path).expanduser()
    if not folder.is_dir():
        raise PrecisionError(f"model.adapter: adapter directory not found: {str(path)!r}")
    folder = folder.resolve()
    cfg_path = folder / ADAPTER_CONFIG
    if not cfg_path.is_file():
        raise PrecisionError(f"model.adapter: {folder} is not a PEFT adapter (no {ADAPTER_CONFIG})")
    try:
        meta = json.loads(cfg_path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise PrecisionError(f"model.adapter: unreadable {cfg_path}: {type(err).__name__}") from None
    peft_type = str(meta.get("peft_type", "")).upper() if isinstance(meta, dict) else ""
    if peft_type != "LORA":
        raise PrecisionError(f"model.adapter: {folder} is a {peft_type or 'unknown'} adapter, not LoRA (peft_type LORA)")
    if not (folder / ADAPTER_WEIGHTS).is_file():
        if (folder / "adapter_model.bin").is_file():
            raise PrecisionError(
                f"model.adapter: {folder} has only pickle weights (adapter_model.bin); this toolkit never unpickles - "
                "re-save the adapter with safe_serialization=True"
            )
        raise PrecisionError(f"model.adapter: {folder} has no {ADAPTER_WEIGHTS}")
    return folder


# --------------------------------------------------------------------------- apply


def apply_model_options(loaded: LoadedModel, cfg: ModelConfig) -> LoadedModel:
    """Apply ``cfg.adapter`` (merged) and then ``cfg.quantization`` to a loaded model."""
    check_model_options(cfg)
    if cfg.adapter is not None:
        loaded = apply_adapter(loaded, cfg.adapter)
    if cfg.quantization == "int8":
        loaded = quantize_int8(loaded)
    elif cfg.quantization in ("bnb-8bit", "bnb-4bit"):
        loaded = quantize_bnb(loaded, cfg.quantization)
    return loaded


def apply_adapter(loaded: LoadedModel, path: str | Path) -> LoadedModel:
    """Merge the PEFT LoRA adapter at ``path`` into ``loaded.model`` (see the module docstring)."""
    from .model import file_sha256

    folder = adapter_dir(path)
    try:
        from peft import PeftModel
    except ImportError:
        raise PrecisionError("model.adapter: needs the package peft (pip install peft)") from None
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            wrapped = PeftModel.from_pretrained(loaded.model, str(folder), is_trainable=False)
        missing = [str(w.message) for w in caught if "missing adapter keys" in str(w.message)]
        if missing:  # some LoRA layers would stay at their initial (no-op) values
            raise ValueError(missing[0][:200])
        model = wrapped.merge_and_unload()
    except Exception as err:  # shape mismatch, unknown target modules, bad or missing weights ...
        text = str(err).strip().splitlines()
        raise PrecisionError(
            f"model.adapter: cannot apply {folder} to {loaded.name!r}: {type(err).__name__}: {text[0] if text else ''}"
        ) from err
    model.eval()
    adapter_sha = file_sha256(folder / ADAPTER_WEIGHTS)
    manifest = f"{loaded.sha256}  base\n{adapter_sha}  {ADAPTER_WEIGHTS}\n"
    log.info("merged LoRA adapter %s into %s", folder, loaded.name)
    return dataclasses.replace(
        loaded,
        model=model,
        name=f"{loaded.name}+{folder.name}",
        sha256=hashlib.sha256(manifest.encode()).hexdigest(),
    )


def _dtype_label(dtype: str, quantization: str) -> str:
    """``LoadedModel.dtype`` of a quantized model: ``int8``, or ``bfloat16+int8`` on a bfloat16 base."""
    return quantization if dtype == "float32" else f"{dtype}+{quantization}"


def _quantizable_linears(model) -> list[tuple[Any, str, Any]]:
    """(parent module, attribute, linear) of every ``nn.Linear`` except the output head."""
    out_head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    found = []
    for name, module in model.named_modules():
        for child_name, child in module.named_children():
            if not isinstance(child, nn.Linear):
                continue
            if child is out_head or child_name in SKIP_MODULES:
                continue
            found.append((module, child_name, child))
    return found


def quantize_int8(loaded: LoadedModel, threshold: float = INT8_THRESHOLD) -> LoadedModel:
    """Replace the decoder's ``nn.Linear`` layers by :class:`Int8Linear` (in place)."""
    if loaded.device != "cpu":
        raise PrecisionError(f"precision 'int8': CPU only (the model is on {loaded.device}); use 'bnb-8bit' on CUDA")
    targets = _quantizable_linears(loaded.model)
    if not targets:
        raise PrecisionError(f"precision 'int8': model {loaded.name!r} has no nn.Linear layers to quantize")
    for parent, attr, linear in targets:
        setattr(parent, attr, Int8Linear.from_linear(linear, threshold))
    log.info("int8: quantized %d linear layers of %s (output head kept in float)", len(targets), loaded.name)
    return dataclasses.replace(loaded, dtype=_dtype_label(loaded.dtype, "int8"))


def quantize_bnb(loaded: LoadedModel, quantization: str) -> LoadedModel:
    """Move the model to CUDA with bitsandbytes 8-bit or 4-bit linear layers."""
    _check_bnb(quantization)
    import bitsandbytes as bnb

    model = loaded.model
    targets = _quantizable_linears(model)
    for parent, attr, linear in targets:
        weight = linear.weight.data.to("cpu", torch.float32)
        has_bias = linear.bias is not None
        if quantization == "bnb-8bit":
            new = bnb.nn.Linear8bitLt(
                linear.in_features, linear.out_features, bias=has_bias, has_fp16_weights=False, threshold=INT8_THRESHOLD
            )
            new.weight = bnb.nn.Int8Params(weight.to(torch.float16), requires_grad=False, has_fp16_weights=False)
        else:
            new = bnb.nn.Linear4bit(
                linear.in_features, linear.out_features, bias=has_bias, compute_dtype=torch.float32, quant_type="nf4"
            )
            new.weight = bnb.nn.Params4bit(weight, requires_grad=False, quant_type="nf4")
        if has_bias:
            new.bias = torch.nn.Parameter(linear.bias.data.to("cpu"), requires_grad=False)
        setattr(parent, attr, new)
    model.to("cuda")  # bitsandbytes quantizes the weights on the move to the GPU
    model.eval()
    log.info("%s: quantized %d linear layers of %s on CUDA", quantization, len(targets), loaded.name)
    return dataclasses.replace(loaded, model=model, dtype=_dtype_label(loaded.dtype, quantization), device="cuda")


# --------------------------------------------------------------------------- int8 module


def _int8_matmul(xq: torch.Tensor, wq_t: torch.Tensor) -> torch.Tensor:
    """int8 (m, k) @ int8 (k, n) -> int32, exactly.

    On CUDA through ``torch._int_mm``. On the CPU that kernel is ~20x slower than a
    float GEMM, so the integers are multiplied as floats instead: every product and
    partial sum is an integer of magnitude <= k * 127^2, represented exactly in
    float32 while that is below 2^24 (k <= 1040) and in float64 beyond, so the result
    is the exact int32 product whatever order the GEMM sums in (and thus the same in
    any batch).
    """
    if xq.is_cuda:
        try:
            return torch._int_mm(xq, wq_t)
        except RuntimeError:  # shape constraints of the fast kernel
            pass
    dtype = torch.float32 if xq.shape[-1] * 127 * 127 < 2**24 else torch.float64
    return torch.matmul(xq.to(dtype), wq_t.to(dtype)).to(torch.int32)


class Int8Linear(nn.Module):
    """A linear layer with int8 weights and dynamic per-token int8 activations.

    ``weight_int8`` (out, in) int8 and ``weight_scale`` (out,) float32 are buffers,
    so ``state_dict`` holds the quantized weights. For an input row ``x`` with its
    outlier entries (``|x| > threshold``) moved to ``x_o``::

        y = (q(x - x_o) @ W_q^T) * s_x * s_w  +  x_o @ (W_q * s_w)^T  +  bias

    where ``q`` rounds to int8 with the row's scale ``s_x = max|x - x_o| / 127`` and
    the product runs in int32. ``threshold <= 0`` turns the outlier path off.
    """

    def __init__(self, in_features: int, out_features: int, bias: bool = True, threshold: float = INT8_THRESHOLD):
        super().__init__()
        self.in_features = int(in_features)
        self.out_features = int(out_features)
        self.threshold = float(threshold)
        self.register_buffer("weight_int8", torch.zeros(out_features, in_features, dtype=torch.int8))
        self.register_buffer("weight_scale", torch.ones(out_features, dtype=torch.float32))
        self.register_buffer("bias", torch.zeros(out_features, dtype=torch.float32) if bias else None)

    @classmethod
    def from_linear(cls, linear: nn.Linear, threshold: float = INT8_THRESHOLD) -> "Int8Linear":
        """Quantize ``linear``'s weight symmetrically per output channel."""
        w = linear.weight.detach().to(torch.float32)
        scale = w.abs().amax(dim=1).clamp(min=1e-12) / 127.0
        new = cls(linear.in_features, linear.out_features, bias=linear.bias is not None, threshold=threshold)
        new.weight_int8.copy_(torch.round(w / scale[:, None]).clamp(-127, 127).to(torch.int8))
        new.weight_scale.copy_(scale)
        if linear.bias is not None:
            new.bias.copy_(linear.bias.detach().to(torch.float32))
        return new.to(linear.weight.device)

    def dequantized_weight(self) -> torch.Tensor:
        """The float32 weight the int8 values stand for, (out, in)."""
        return self.weight_int8.to(torch.float32) * self.weight_scale[:, None]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = x.shape
        x2 = x.reshape(-1, self.in_features).to(torch.float32)
        a = x2.abs()  # our own tensor: may be edited in place (x2 may be a view of x)
        rows = cols = None
        if self.threshold > 0:
            is_out = a > self.threshold
            rows, cols = is_out.nonzero(as_tuple=True)  # row-major: each row's outliers in column order
            if rows.numel():
                a.masked_fill_(is_out, 0.0)  # the row scales leave outliers out
            else:
                rows = cols = None
        s_x = a.amax(dim=1, keepdim=True).clamp_(min=1e-12).div_(127.0)
        xq = torch.div(x2, s_x).round_().clamp_(-127, 127)
        if rows is not None:
            xq[rows, cols] = 0.0
        y = torch.mul(_int8_matmul(xq.to(torch.int8), self.weight_int8.t()), self.weight_scale)  # int32 x float
        y.mul_(s_x)
        if rows is not None:
            # each outlier adds x * (dequantized weight column) to its own row, one after another in
            # column order (index_add_ on the CPU is sequential), so a row's sum is the same in any batch
            w_cols = self.weight_int8.t()[cols].to(torch.float32).mul_(self.weight_scale)
            y.index_add_(0, rows, w_cols.mul_(x2[rows, cols].unsqueeze(1)))
        if self.bias is not None:
            y.add_(self.bias)
        return y.to(x.dtype).reshape(*shape[:-1], self.out_features)

    def extra_repr(self) -> str:
        return (
            f"in_features={self.in_features}, out_features={self.out_features}, "
            f"bias={self.bias is not None}, threshold={self.threshold}"
        )


# --------------------------------------------------------------------------- GGUF


def gguf_model_dir(path: str | Path, model_cfg: ModelConfig | None = None) -> Path:
    """A float32 safetensors model folder dequantized from the GGUF file ``path``.

    Converted once into ``<cache root>/<file stem>-<first 12 hex of its SHA-256>/``
    (the embedded default's own GGUF maps to the embedded cache folder); later calls
    return the folder at once.
    """
    from . import model as m

    gguf = Path(path).expanduser()
    if not gguf.is_file():
        raise PrecisionError(f"precision 'gguf:{path}': GGUF file not found")
    if gguf.suffix.lower() != ".gguf":
        raise PrecisionError(f"precision 'gguf:{path}': not a .gguf file")
    gguf = gguf.resolve()
    model_cfg = model_cfg or ModelConfig()
    root = m.cache_root(model_cfg)
    sha = m.file_sha256(gguf, root)
    try:
        embedded_sha = m.file_sha256(m.locate_embedded_gguf(), root)
    except ModelError:
        embedded_sha = None
    if sha == embedded_sha:
        folder = m.embedded_cache_dir(model_cfg, sha)
    else:
        stem = "".join(c if c.isalnum() or c in "._-" else "-" for c in gguf.stem)
        folder = root / f"{stem}-{sha[:12]}"
    if not m._embedded_files_ok(folder):
        m.convert_gguf(gguf, folder, sha)
    return folder
