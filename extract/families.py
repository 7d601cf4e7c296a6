"""What the toolkit knows about a model family: one record per family.

A *family* is a way Hugging Face lays out a transformer: where the block list lives,
what a block calls its attention and MLP modules, what the attention's output
projection and the final norm are called. Hooks, prefix reuse, component
attribution and the masked-LM audit all look modules up through these records, so
supporting a new layout is one :class:`ModelFamily` entry in :data:`FAMILIES`.

Lookups try the families in order and take the first name that resolves on the
model at hand, so a model whose layout matches an existing record needs no entry.
How a block's *kind* is told apart (Gemma's sliding and full attention layers) is
read from the model's own ``config.layer_types``, not from a record.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ModelFamily:
    """Where one family of architectures keeps its modules (dotted attribute paths)."""

    name: str  # the family, e.g. "llama"
    examples: str  # architectures laid out this way, for the docs
    blocks: str  # the block list, from the model: "model.layers"
    attention: str  # a block's attention module: "self_attn"
    mlp: str | None  # a block's MLP module: "mlp"; None where the MLP is not one module (OPT)
    out_proj: str | None  # the attention's output projection: "o_proj" (its input, split by head, is a head's output)
    final_norm: str | None  # the final norm, beside the block list: "norm"; None for encoders
    encoder: bool = False  # a bidirectional encoder (masked-LM audits) rather than a decoder


#: The known families, tried in this order (:func:`register_family` adds one).
FAMILIES: list[ModelFamily] = [
    ModelFamily("llama", "Llama, Mistral, Qwen 2/3, SmolLM2, Gemma 1-3 (text)", "model.layers", "self_attn", "mlp", "o_proj", "norm"),
    ModelFamily("gemma3-multimodal", "Gemma 3 with its vision tower", "model.language_model.layers", "self_attn", "mlp", "o_proj", "norm"),
    ModelFamily("llama4", "Llama 4", "model.language_model.layers", "self_attn", "feed_forward", "o_proj", "norm"),
    ModelFamily("gpt2", "GPT-2", "transformer.h", "attn", "mlp", "c_proj", "ln_f"),
    ModelFamily("falcon", "Falcon", "transformer.h", "self_attention", "mlp", "dense", "ln_f"),
    ModelFamily("phi", "Phi-1/2", "model.layers", "self_attn", "mlp", "dense", "final_layernorm"),
    ModelFamily("gpt-neox", "GPT-NeoX, Pythia", "gpt_neox.layers", "attention", "mlp", "dense", "final_layer_norm"),
    ModelFamily("opt", "OPT", "model.decoder.layers", "self_attn", None, "out_proj", "final_layer_norm"),
    ModelFamily("bert", "BERT", "bert.encoder.layer", "attention", "intermediate", None, None, encoder=True),
    ModelFamily("roberta", "RoBERTa", "roberta.encoder.layer", "attention", "intermediate", None, None, encoder=True),
    ModelFamily("deberta", "DeBERTa", "deberta.encoder.layer", "attention", "intermediate", None, None, encoder=True),
    ModelFamily("distilbert", "DistilBERT", "distilbert.transformer.layer", "attention", "ffn", "out_lin", None, encoder=True),
    ModelFamily("electra", "ELECTRA", "electra.encoder.layer", "attention", "intermediate", None, None, encoder=True),
    ModelFamily("xlm-roberta", "XLM-RoBERTa", "xlm_roberta.encoder.layer", "attention", "intermediate", None, None, encoder=True),
    ModelFamily("modernbert", "ModernBERT", "model.layers", "attn", "mlp", "Wo", None, encoder=True),
    ModelFamily("encoder", "a bare encoder (BertModel-like)", "encoder.layer", "attention", "intermediate", None, None, encoder=True),
]


def register_family(family: ModelFamily, *, first: bool = False) -> ModelFamily:
    """Add ``family`` to the lookup (last, or ``first`` to take precedence); returns it.

    A family of the same name is replaced. Lookups read :data:`FAMILIES` each time, so
    the new layout is seen by every later hook, patch and prefix run."""
    if not isinstance(family, ModelFamily):
        raise TypeError(f"register_family: expected a ModelFamily, got {type(family).__name__}")
    FAMILIES[:] = [f for f in FAMILIES if f.name != family.name]
    FAMILIES.insert(0 if first else len(FAMILIES), family)
    return family


def _unique(values) -> tuple[str, ...]:
    return tuple(dict.fromkeys(v for v in values if v))


def decoder_families() -> tuple[ModelFamily, ...]:
    """The decoder (causal LM) families, in lookup order."""
    return tuple(f for f in FAMILIES if not f.encoder)


def layer_paths() -> tuple[str, ...]:
    """Where decoder block lists live, in lookup order."""
    return _unique(f.blocks for f in decoder_families())


def encoder_paths() -> tuple[str, ...]:
    """Where encoder block lists live, in lookup order."""
    return _unique(f.blocks for f in FAMILIES if f.encoder)


def attention_names() -> tuple[str, ...]:
    """A decoder block's attention module names, in lookup order."""
    return _unique(f.attention for f in decoder_families())


def mlp_names() -> tuple[str, ...]:
    """A decoder block's MLP module names, in lookup order."""
    return _unique(f.mlp for f in decoder_families())


def final_norm_names() -> tuple[str, ...]:
    """The final norm's names (beside the decoder block list), in lookup order."""
    return _unique(f.final_norm for f in decoder_families())


def out_proj_names() -> tuple[str, ...]:
    """The attention output projection's names, in lookup order."""
    return _unique(f.out_proj for f in decoder_families())
