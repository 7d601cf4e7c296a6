"""The toolkit's shared vocabulary: every name that more than one package uses.

One definition each, imported everywhere else (a test checks that no other module
defines them again). Nothing here imports anything but the standard library.
"""

from __future__ import annotations

#: the variant without demographic words (column 0 of the spec's matrix P)
BASE = "BASE"
#: the default race and gender words of the variants (docs/methods/metrics.md, section The score matrix)
DEFAULT_RACES = ("White", "Black", "Hispanic", "Asian")
DEFAULT_GENDERS = ("Female", "Male", "Intersex")
#: context tiers, richest first (docs/methods/benchmarks.md, section Context tiers)
TIERS = ("high", "medium", "low")
#: benchmark tasks
TASKS = ("ed_triage", "opioid", "qpain")
#: hook sites cached per layer (resid_post = the residual stream after each block)
SITES = ("resid_post", "attn_out", "mlp_out")
#: token positions cached per site
POSITIONS = ("last", "demographic")
#: (site, position) that F_LV, the value axis and mFARM (full) are defined on (spec Part B)
PRIMARY_SITE = ("resid_post", "last")
#: the five output-level scores of spec Part A, in the spec's order
SCORE_KEYS = (
    "mean_difference",
    "absolute_deviation",
    "variance_heterogeneity",
    "ks_distribution",
    "correlation_difference",
)
#: short names of the five scores (tables, figures)
SCORE_SHORT = {
    "mean_difference": "F_MD",
    "absolute_deviation": "F_AD",
    "variance_heterogeneity": "F_VH",
    "ks_distribution": "F_KS",
    "correlation_difference": "F_CD",
}
#: model compute dtypes
DTYPES = ("float32", "bfloat16", "float16")
#: weight quantizations
QUANTIZATIONS = ("none", "int8", "bnb-8bit", "bnb-4bit")
#: sweep precisions (``gguf:FILE`` is also accepted)
PRECISIONS = ("float32", "bfloat16", "int8", "bnb-8bit", "bnb-4bit", "gguf")
#: the models shipped inside PyPI packages (``model.name``; extract.model.EMBEDDED), the default first
EMBEDDED_MODELS = ("smollm2-135m-instruct", "gemma3-270m")
#: The extraction backends: ``extract.backend`` -> the runner class that implements it,
#: as ``module:Class`` (imported only when chosen; the protocol is extract.runner.Runner).
#: Adding a backend is one entry here (or, from outside the package, the class itself:
#: ``BACKEND_RUNNERS["mine"] = MyRunner`` before the config is loaded).
BACKEND_RUNNERS: dict[str, "str | type"] = {
    "hf": "latent_bias_probe.extract.hf_runner:HFRunner",
    "transformer_lens": "latent_bias_probe.extract.tl_runner:TLRunner",
    "nnsight": "latent_bias_probe.extract.nnsight_runner:NNsightRunner",
}
#: the backend names, in registry order
BACKENDS = tuple(BACKEND_RUNNERS)
#: activation storage dtypes in cache.h5
STORAGE_DTYPES = ("float16", "float32")
#: probe targets of spec B3
PROBE_TARGETS = ("race", "gender", "race_gender")


def tier_order(tiers) -> list[str]:
    """``tiers`` (any iterable, duplicates allowed) in the canonical order, unknown ones last, sorted."""
    seen = set(tiers)
    return [t for t in TIERS if t in seen] + sorted(seen - set(TIERS))

#: results.json ``warnings`` entries about the value axis (F_LV, mFARM full) start with this
VALUE_AXIS_WARNING = "value axis:"

#: model kinds (``model.kind``): decoders answering Yes/No, or encoders with a masked-LM head
MODEL_KINDS = ("causal", "masked")
#: the tier name of a masked-LM audit's rows in cache.h5, predictions.csv and results.json
MASKED_TIER = "masked"
#: the slots of a masked-LM template (the demographic target and the attribute word)
TARGET_SLOT = "[TARGET]"
ATTRIBUTE_SLOT = "[ATTRIBUTE]"
