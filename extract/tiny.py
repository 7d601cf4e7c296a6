"""A tiny random Llama with an offline tokenizer, for fast tests.

``tiny_llama(seed)`` builds a ``LlamaForCausalLM`` from a ``LlamaConfig`` with
weights drawn from ``seed`` (the global torch RNG is left untouched) and a byte-level
BPE tokenizer trained in memory on a small fixed corpus (no files, no downloads).
The vocabulary holds whole-word tokens such as ``Yes``, ``ĠYes`` (" Yes"), ``yes``,
``No``, ``ĠNo``, ``no``, ``YES``, ``NO``, the ChatML specials ``<|im_start|>`` and
``<|im_end|>``, and every byte, so any text can be encoded. The tokenizer is a
fast ``PreTrainedTokenizerFast`` with offsets and a ChatML chat template.

The result is deterministic for a given seed and shape; ``sha256`` is a hash of the
state dict (names, dtypes, shapes and bytes).
"""

from __future__ import annotations

import hashlib
from functools import lru_cache

from .model import LoadedModel, prepare_tokenizer

CHATML_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]

_CORPUS = [
    "system user assistant",
    "Answer only in Yes or No.",
    "Yes yes YES No no NO Yes. No. 'Yes' 'No' (Yes/No) Yes, No, yes. no.",
    "yes\nno\nYes\nNo\nYES\nNO",
    "A patient of age 45 years is being observed at the Emergency Department of a hospital.",
    "A Female patient of Black descent, having an age of 30 years, is being observed at the Emergency Department.",
    "A Male patient of White decent, having an age of 71 years, is being observed.",
    "An Intersex patient of Asian descent. A Female patient of Hispanic descent.",
    "Chief complaint: chest pain, fever, cough, shortness of breath, abdominal pain.",
    "Diagnoses: sepsis, pneumonia, fracture. Vitals: temperature 98.6 F, heart rate 88, respiratory rate 16,",
    "oxygen saturation 97 percent, systolic blood pressure 120, diastolic blood pressure 80.",
    "If the patient meets criteria for immediate intervention, then answer 'Yes'.",
    "Please provide a one-word answer (Yes/No). ANSWER:",
    "Based on all the information provided about the patient, would you offer the patient opioid analgesics for their pain?",
]


@lru_cache(maxsize=1)
def _tokenizer_json() -> str:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

    tk = Tokenizer(models.BPE())
    tk.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tk.decoder = decoders.ByteLevel()
    tk.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(
        vocab_size=600,
        min_frequency=2,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tk.train_from_iterator(_CORPUS * 20, trainer)
    return tk.to_str()


def tiny_tokenizer():
    """A fresh fast tokenizer (ChatML template, pad ``<|endoftext|>``, left padding)."""
    from tokenizers import Tokenizer
    from transformers import PreTrainedTokenizerFast

    tok = PreTrainedTokenizerFast(
        tokenizer_object=Tokenizer.from_str(_tokenizer_json()),
        bos_token="<|im_start|>",
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
    )
    tok.chat_template = CHATML_TEMPLATE
    return prepare_tokenizer(tok, "tiny-llama")


def state_dict_sha256(model) -> str:
    """SHA-256 over a model's state dict: sorted names, dtypes, shapes and raw bytes."""
    import torch

    h = hashlib.sha256()
    for name, t in sorted(model.state_dict().items()):
        t = t.detach().to("cpu").contiguous()
        h.update(f"{name}|{str(t.dtype)}|{tuple(t.shape)}\n".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def tiny_llama(
    seed: int = 0,
    n_layers: int = 4,
    d_model: int = 64,
    n_heads: int = 4,
    n_kv_heads: int = 2,
    d_ff: int | None = None,
    max_positions: int = 1024,
    init_std: float = 0.1,
    dtype: str = "float32",
    attn_implementation: str = "sdpa",
) -> LoadedModel:
    """A tiny random Llama (eval mode, CPU) with :func:`tiny_tokenizer`.

    ``init_std`` is larger than Llama's 0.02 so that the random logits spread and
    P(Yes) varies between prompts (tests then see real differences).
    """
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    tok = tiny_tokenizer()
    config = LlamaConfig(
        vocab_size=len(tok),
        hidden_size=d_model,
        intermediate_size=d_ff or 2 * d_model,
        num_hidden_layers=n_layers,
        num_attention_heads=n_heads,
        num_key_value_heads=n_kv_heads,
        max_position_embeddings=max_positions,
        initializer_range=init_std,
        rms_norm_eps=1e-6,
        tie_word_embeddings=False,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
        attn_implementation=attn_implementation,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = LlamaForCausalLM(config)
    model = model.to(getattr(torch, dtype)).eval()
    return LoadedModel(
        model=model,
        tokenizer=tok,
        name=f"tiny-llama-s{seed}-L{n_layers}-d{d_model}",
        sha256=state_dict_sha256(model),
        dtype=dtype,
        n_layers=n_layers,
        d_model=d_model,
        device="cpu",
        path=None,
    )
