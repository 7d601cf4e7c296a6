"""A tiny random BERT masked LM with a local WordPiece vocabulary, and planted biases, for tests.

``tiny_bert(seed)`` builds a ``BertForMaskedLM`` from a ``BertConfig`` (weights drawn
from ``seed``; the global torch RNG is left untouched; output embeddings untied from the
input embeddings) and an uncased ``BertTokenizerFast`` whose vocabulary holds every
word of the shipped clinical templates, the default race and gender words, and the
letters as ``x``/``##x`` pieces (so any text tokenizes; unknown words split into
letters, which gives multi-piece targets).

Planting (deterministic weight edits, no training):

- :func:`plant_association`: makes ``target`` (a vocabulary word) more likely whenever
  one of ``attributes`` is in the sentence. One hidden dimension k is reserved: it is
  zeroed in every weight that reads or writes it, except a private path ``attribute
  embedding[k] = s`` → value/output projections of every attention block copy k to k
  (attention averages it into every position, the [MASK]ed target's too) → the head
  transform copies k to k → ``decoder[target, k] = beta``. With the attribute masked
  (the prior) the path carries nothing, so only the association log(p_tgt/p_prior) of
  ``target`` rises, and only in sentences with those attributes.
- :func:`plant_frequency`: adds ``gamma`` to the output bias of a word: more likely in
  every context (a frequency-only effect, which the prior correction removes).

``python -m extract.tiny_masked DIR [--plant]`` saves a tiny model (optionally with the
demo plant: "black" with the behaviour attributes) as a local model folder.
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path
from typing import Sequence

from latent_bias_probe.configs.names import DEFAULT_GENDERS, DEFAULT_RACES
from .model import LoadedModel
from .tiny import state_dict_sha256

SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


def _vocab(extra: Sequence[str] = ()) -> list[str]:
    from latent_bias_probe.benchmarks.templates import load_templates

    words: list[str] = []
    texts = [w.lower() for w in (*DEFAULT_RACES, *DEFAULT_GENDERS, *extra)]
    for t in load_templates("clinical").templates:
        texts += [t.text.replace("[TARGET]", " ").replace("[ATTRIBUTE]", " "), t.attribute]
    texts += ["woman man women men caucasian latino patients notes the a of and with was is"]
    for text in texts:
        words += re.findall(r"[a-z0-9]+|[^\sa-z0-9]", text.lower())
    letters = [chr(c) for c in range(ord("a"), ord("z") + 1)] + [str(i) for i in range(10)]
    pieces = letters + ["##" + c for c in letters] + list(".,;:!?'\"()-/")
    return SPECIALS + list(dict.fromkeys(pieces + words))


def tiny_bert_tokenizer(extra_words: Sequence[str] = ()):
    """An uncased fast WordPiece tokenizer over :func:`_vocab` (in memory; nothing is downloaded)."""
    from transformers import BertTokenizerFast

    vocab = {w: i for i, w in enumerate(_vocab(extra_words))}
    tok = BertTokenizerFast(vocab=vocab, do_lower_case=True)
    tok.padding_side = "right"
    return tok


def tiny_bert(seed: int = 0, n_layers: int = 2, d_model: int = 32, n_heads: int = 2, init_std: float = 0.1,
              extra_words: Sequence[str] = ()) -> LoadedModel:
    """A tiny random ``BertForMaskedLM`` (eval mode, CPU) with :func:`tiny_bert_tokenizer`."""
    import torch
    from transformers import BertConfig, BertForMaskedLM

    tok = tiny_bert_tokenizer(extra_words)
    config = BertConfig(
        vocab_size=len(tok), hidden_size=d_model, num_hidden_layers=n_layers, num_attention_heads=n_heads,
        intermediate_size=2 * d_model, max_position_embeddings=128, initializer_range=init_std,
        tie_word_embeddings=False, pad_token_id=tok.pad_token_id, attn_implementation="eager",
        hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = BertForMaskedLM(config)
    model.eval()
    return _loaded(model, tok, f"tiny-bert-s{seed}-L{n_layers}-d{d_model}")


def _loaded(model, tok, name: str) -> LoadedModel:
    return LoadedModel(model=model, tokenizer=tok, name=name, sha256=state_dict_sha256(model), dtype="float32",
                       n_layers=model.config.num_hidden_layers, d_model=model.config.hidden_size, device="cpu")


def _word_id(tok, word: str) -> int:
    ids = tok(word, add_special_tokens=False)["input_ids"]
    if len(ids) != 1:
        raise ValueError(f"{word!r} is not one token of the tiny vocabulary ({tok.convert_ids_to_tokens(ids)})")
    return ids[0]


def plant_association(loaded: LoadedModel, target: str, attributes: Sequence[str], strength: float = 4.0,
                      beta: float = 6.0, dim: int = 0) -> LoadedModel:
    """``loaded`` with ``target`` made more likely in sentences holding one of ``attributes`` (module docstring)."""
    import torch

    m, tok, k = loaded.model, loaded.tokenizer, dim
    t_id = _word_id(tok, target)
    a_ids = [_word_id(tok, a) for a in attributes]
    bert = m.bert
    with torch.no_grad():
        emb = bert.embeddings
        for table in (emb.word_embeddings, emb.position_embeddings, emb.token_type_embeddings):
            table.weight[:, k] = 0.0
        emb.word_embeddings.weight[a_ids, k] = strength

        def private(linear, copy: bool) -> None:
            linear.weight[k, :] = 0.0
            linear.weight[:, k] = 0.0
            if copy:
                linear.weight[k, k] = 1.0
            if linear.bias is not None:
                linear.bias[k] = 0.0

        for layer in bert.encoder.layer:
            att = layer.attention
            for lin in (att.self.query, att.self.key):
                lin.weight[:, k] = 0.0
            private(att.self.value, True)
            private(att.output.dense, True)
            layer.intermediate.dense.weight[:, k] = 0.0
            layer.output.dense.weight[k, :] = 0.0
            layer.output.dense.bias[k] = 0.0
        head = m.cls.predictions
        private(head.transform.dense, True)
        head.decoder.weight[:, k] = 0.0
        head.decoder.weight[t_id, k] = beta
    return _loaded(m, tok, f"{loaded.name}+assoc({target})")


def plant_frequency(loaded: LoadedModel, word: str, gamma: float = 3.0) -> LoadedModel:
    """``loaded`` with ``gamma`` added to the output bias of ``word`` (more likely everywhere)."""
    import torch

    with torch.no_grad():
        loaded.model.cls.predictions.decoder.bias[_word_id(loaded.tokenizer, word)] += gamma
    return _loaded(loaded.model, loaded.tokenizer, f"{loaded.name}+freq({word})")


def save(loaded: LoadedModel, folder: str | Path) -> Path:
    """Save model (safetensors) and tokenizer as a local model folder."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    loaded.model.save_pretrained(folder, safe_serialization=True)
    loaded.tokenizer.save_pretrained(folder)
    return folder


def main(argv: Sequence[str] | None = None) -> None:
    """``python -m extract.tiny_masked DIR [--plant] [--seed S]``."""
    from latent_bias_probe.benchmarks.templates import load_templates

    ap = argparse.ArgumentParser(description="save a tiny random BERT masked LM as a local model folder")
    ap.add_argument("folder")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--plant", action="store_true", help="plant 'black' with the behaviour attributes")
    args = ap.parse_args(argv)
    loaded = tiny_bert(args.seed)
    if args.plant:
        words = load_templates("clinical").attribute_words()["behaviour"]
        loaded = plant_association(loaded, "black", words)
    print(save(loaded, args.folder))


if __name__ == "__main__":
    main()
