"""Generate the reference pages that must follow the code: the configuration keys and results.json.

Two pages are written from the code, never by hand:

- ``docs/reference/configuration.md`` from the dataclasses of ``configs/schema.py``
  (every key, its type and default) and :data:`CONFIG_MEANINGS` below (what it means);
- ``docs/reference/results-json.md`` from ``pipeline/schemas/results.schema.json``
  (every field, its type, whether it is required) and, where the schema has no
  ``description``, :data:`RESULTS_MEANINGS` below.

Run ``python docs/gen_reference.py`` from the repository root to rewrite both pages;
``tests/test_docs.py`` fails when a committed page differs from what this script writes,
and when a schema key has no meaning here (or a meaning names a key the schema lacks).
As an mkdocs hook (``hooks:`` in ``mkdocs.yml``) it renders both pages fresh at every build.
"""

from __future__ import annotations

import dataclasses
import json
import sys
import types
import typing
from pathlib import Path
from typing import Any, Literal, Union, get_args, get_origin

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from latent_bias_probe.configs import schema  # noqa: E402  (the repository root is put on sys.path first)

CONFIG_PAGE = "reference/configuration.md"
RESULTS_PAGE = "reference/results-json.md"
SCHEMA_FILE = ROOT / "pipeline" / "schemas" / "results.schema.json"

#: What each configuration key means, by dotted path (every key of configs/schema.py).
CONFIG_MEANINGS: dict[str, str] = {
    "name": "Run name: one folder name (no `/`, `\\`, `..`, control characters), at most 100 characters. `probe run` writes to `runs/<name>` unless `--out` is given.",
    "seed": "Recorded in the outputs (`seeds.config`).",
    "model": "Which model runs, and how.",
    "model.name": "`smollm2-135m-instruct` (the embedded default), `gemma3-270m` (the second embedded model), a Hugging Face id already in the local Hugging Face cache, or a local folder with safetensors weights.",
    "model.dtype": "Floating-point type the model runs in. Reduced precision changes the scores (see [Measured figures](../measured.md)).",
    "model.device": "`auto` (CUDA when available, else the CPU), `cpu`, `cuda` or `cuda:N`. A device the machine lacks exits 2.",
    "model.device_map": "For a model larger than one GPU: `auto`, `balanced`, `balanced_low_0`, `sequential` or an explicit map `{module: device}` (accelerate). Inputs go to the embeddings' device; hooks and interventions follow each layer's device.",
    "model.attn_implementation": "`eager`, `sdpa`, `flash_attention_2` (needs `flash-attn`) or `batch_invariant` (each prompt attends over its own tokens only, so its activations do not depend on its batch-mates' lengths). Null: `batch_invariant` for `quantization: int8`, else the transformers default.",
    "model.trust_remote_code": "Allow custom model code from the model folder. Refused in a YAML file, a `--set` or a saved `config.json`: only `--trust-remote-code` on the command line turns it on.",
    "model.revision": "Hugging Face revision of the model.",
    "model.cache_dir": "Where converted copies of the embedded models are kept (default `$XDG_CACHE_HOME/latent-bias-probe/models`).",
    "model.quantization": "`int8` (dynamic int8 linear layers, CPU), `bnb-8bit` or `bnb-4bit` (bitsandbytes, CUDA only).",
    "model.adapter": "A PEFT LoRA folder applied to the model.",
    "model.kind": "`causal` (a Yes/No decoder), `masked` (an encoder with a masked-LM head: the [masked-LM audit](../guides/masked.md)), or `auto`: masked when the model's `config.json` names a `*ForMaskedLM` architecture.",
    "benchmark": "Which cases are rendered, and how.",
    "benchmark.source": "`ed_triage` and `opioid` (built-in seeded generators), `mimic_ed_demo` (a MIMIC-IV-ED triage table, by default the open demo in `data/`), `qpain` (a Q-Pain folder, by default `data/q-pain`), `csv` (your cases) or `mimic` (the published benchmarks rebuilt from your MIMIC-IV copy).",
    "benchmark.task": "For `csv` and `mimic`: `ed_triage`, `opioid` (or, for `csv`, `qpain`).",
    "benchmark.path": "Source file or folder for `mimic_ed_demo`, `qpain` and `csv`. Relative paths are tried against the working folder, the config's folder, then the project root.",
    "benchmark.data_dir": "For `mimic`: the MIMIC-IV root folder (`hosp/`, `icu/`, `ed/`, `note/`).",
    "benchmark.split": "For `mimic`: which split of the rebuilt benchmark to run.",
    "benchmark.mimic": "The numeric choices of the MIMIC-IV builders ([MIMIC benchmarks](../methods/mimic.md)).",
    "benchmark.mimic.seed": "Seed of the race balancing, label balancing and split.",
    "benchmark.mimic.balance_race": "Undersample every race to the size of the smallest.",
    "benchmark.mimic.balance_labels": "Opioid: as many YES as NO cases.",
    "benchmark.mimic.split_fractions": "Train, validation and test shares.",
    "benchmark.mimic.max_diagnoses": "ED: the stay's diagnoses with `seq_num` up to this are listed (`seq_num < 5` for 4).",
    "benchmark.mimic.max_icd_codes": "Opioid: admissions with fewer ICD codes than this are kept.",
    "benchmark.n_cases": "Number of cases. Generators make this many (60 when null); file sources keep every case when null, else a label-stratified, seeded sample.",
    "benchmark.seed": "Generator and sampling seed.",
    "benchmark.tiers": "Context tiers to render (`high`, `medium`, `low`).",
    "benchmark.races": "Race words of the variants: at least 2; no `-`, `/`, `\\`, surrounding spaces, or `BASE`.",
    "benchmark.genders": "Gender words of the variants (the same rules).",
    "benchmark.descent_word": "`descent`, or `decent` as the published prompts spell it.",
    "benchmark.system_message": "The system message of every prompt.",
    "benchmark.duplicates": "`collapse`: cases that render to the same prompt at a tier count once, with their majority label (unknown on a tie), and a tier where every case renders the same is dropped. `keep`: every case is rendered as it is, as the published protocol does (duplicates are still counted in results.json).",
    "extract": "Model inference.",
    "extract.batch_size": "Prompts per forward pass, 1..4096. Batches are fixed groups of whole cases (cases sorted by id, ⌊batch_size / variants⌋ cases per group, at least one; one tier per batch), so a prompt's batch-mates do not depend on sharding or resuming.",
    "extract.backend": "a backend registered in `configs.names.BACKEND_RUNNERS`: `hf` (PyTorch forward hooks on the Hugging Face model, fastest), `transformer_lens` (TransformerBridge) or `nnsight` (LanguageModel). All give the same activations.",
    "extract.sites": "Activation sites to store: `resid_post` (the block's output), `attn_out`, `mlp_out`.",
    "extract.positions": "Positions to store: `last` (the decision position) and `demographic` (mean over the race and gender word tokens; the word \"patient\" on BASE).",
    "extract.storage_dtype": "Type of the activations in cache.h5.",
    "extract.threads": "Torch intra-op CPU threads (null: torch's default).",
    "extract.batch_check": "Prompts re-run alone after the extraction to measure how much P(Yes) depends on the batch (`batch_check.json`); 0 turns it off.",
    "scoring": "mFARM scoring ([Metrics](../methods/metrics.md)).",
    "scoring.alpha": "Significance level of every test.",
    "scoring.correction": "Multiple-testing correction: any statsmodels `multipletests` method (`holm`, `bonferroni`, `fdr_bh`, …) or `none` (p ≤ α).",
    "scoring.accuracy": "`threshold` (share of prompts whose P(Yes) > 0.5 matches the label) or `l1` (1 − mean \\|label − P(Yes)\\|).",
    "scoring.bootstrap": "Case resamples for every interval, 0..100000 (0: no intervals, null in the outputs).",
    "scoring.seed": "Bootstrap and permutation seed.",
    "scoring.ci_level": "Level of every percentile interval.",
    "scoring.equivalence_margin": "TOST margin δ for a group's mean shift of P(Yes) from BASE.",
    "scoring.permutations": "Within-case permutations of the variant labels for the null distribution; 0 turns it off.",
    "scoring.option_mass_threshold": "Warn when the median next-token probability on Yes ∪ No is below this.",
    "scoring.association_margin": "Masked-LM audits: a group difference counts only when credibly beyond this many nats.",
    "probes": "Linear probes, steering vectors and the value axis ([Probes and the value axis](../methods/probes.md)).",
    "probes.n_folds": "Cross-validation folds, grouped by case.",
    "probes.bootstrap": "Case resamples for the probe-accuracy intervals (0: none).",
    "probes.seed": "Fold and permutation seed.",
    "probes.value_axis_target": "`model` (the model's own BASE decision, P(Yes) ≥ 0.5) or `label` (the benchmark label).",
    "probes.value_axis_layer": "Fix the value-axis layer ℓ* instead of taking the layer of best held-out AUROC.",
    "explain": "Causal explanations ([Explain](../methods/explain.md)).",
    "explain.tiers": "Tiers to explain (null: the first benchmark tier).",
    "explain.layers": "Mediation layers (null: every fourth layer plus ℓ*).",
    "explain.alphas": "Steering strengths, in units of σ_ℓ (the median residual norm of the BASE prompts at the layer).",
    "explain.max_cases": "Cases used for interventions, each re-running the model (null: all).",
    "explain.seed": "Seed of the mediation's random-direction control and of the causal trace's bootstrap.",
    "explain.position_erasure": "Also erase with LEACE fitted per position kind (demographic words, later positions, decision position, and all three); triples the mediation's passes.",
    "explain.trace_cases": "Cases of the causal trace (the first of `max_cases`); 0 turns it off.",
    "explain.trace_layers": "Layers the trace patches (null: every layer).",
    "benchmark.few_shot": "Solved examples before every prompt (0..64): other cases of the benchmark at the same tier, rendered as BASE, labels balanced, drawn with `benchmark.seed` per case and tier (the same for all 13 variants, every shard and resume) ([Few-shot framing](../few-shot.md)).",
    "model.framing": "`auto`: the tokenizer's chat template when it has one, else the plain format; `chat`: require the template; `plain`: `System: …` / `User: …` / the answer cue even when there is a template.",
    "model.answer_cue": "The plain format's last line, after which the model answers (few-shot examples end in `<answer_cue> Yes`).",
    "scoring.min_option_mass": "The decision gate: a tier whose median Yes+No next-token mass is below it is marked `decision: false` in results.json, the report, the terminal table and sweep.csv; its scores are not the model's fairness.",
    "explain.components": "Component attribution, its verification by activation patching, and the remedy ([Components](../components.md)).",
    "explain.components.enabled": "Run component attribution, verification and remedy.",
    "explain.components.cases": "Cases attributed (null: every explained case).",
    "explain.components.layers": "Layers attributed (null: every layer).",
    "explain.components.top_k": "Components per attribute verified by activation patching.",
    "explain.components.random": "Random control components patched beside the top ones.",
    "explain.components.verify_cases": "Cases the verification patches (0: none, and no remedy).",
    "explain.components.saturation": "Heads whose decision-position attention on one token reaches this weight are patched too (the AtP* check).",
    "explain.components.saturated_max": "At most this many saturated heads are patched.",
    "explain.components.remedy": "Re-score the tier with the verified top components ablated.",
    "explain.components.remedy_max": "At most this many verified components that carry the gap (positive patched share) are edited in the remedy.",
    "explain.components.remedy_method": "How the remedy edits them: `mean` (replaced by the mean over BASE at the component's position kind) or `erase` (their race × gender subspace, fitted by LEACE on the demographic prompts, set to BASE's).",
    "explain.reuse_prefix": "Run the blocks below an intervention once per batch (`false`: a full re-run per intervention; the same numbers).",
    "explain.prefix_memory_gb": "Memory (GiB) for the prefixes the mediation keeps from its fitting pass for its erased runs; batches beyond it re-run their prefix (the same numbers).",
    "cluster": "Sharded extraction through submitit ([Scaling up](../guides/scaling.md)).",
    "cluster.executor": "Where shard jobs run: `inline` (in this process), `local` (subprocesses, one GPU each) or `slurm` (a job array). `--executor` overrides it.",
    "cluster.shards": "How many shard jobs (`--shards` overrides it).",
    "cluster.timeout_min": "Every shard job's time limit in minutes (local and Slurm; always set).",
    "cluster.partition": "Slurm partition.",
    "cluster.account": "Slurm account.",
    "cluster.gpus_per_shard": "GPUs per Slurm shard job.",
    "cluster.cpus_per_shard": "CPUs per Slurm shard job.",
    "cluster.array_parallelism": "At most this many shards at once (Slurm `--array=…%N`; null: all).",
    "cluster.job_name": "Slurm job name.",
    "cluster.sbatch_extra": "More sbatch options, e.g. `{qos: high, constraint: a100}`.",
    "cluster.poll_s": "Seconds between the driver's checks of the jobs.",
    "sweep": "A grid of runs: every model × precision × adapter, each into its own subfolder, with `sweep.csv` and `sweep.html`.",
    "sweep.models": "Models of the grid (empty: `[model.name]`).",
    "sweep.precisions": "Precisions: `float32`, `bfloat16`, `float16`, `int8`, `bnb-8bit`, `bnb-4bit`, `gguf`.",
    "sweep.adapters": "PEFT LoRA folders; null means no adapter.",
    "sweep.reference": "The precision each model's combinations are compared against (null: the first listed).",
    "masked": "A masked-LM audit ([Masked-LM audits](../guides/masked.md)); null: the defaults, when the model is a masked LM.",
    "masked.templates": "`clinical` (the 72 shipped templates) or a `.yaml`/`.yml`/`.csv` file.",
    "masked.categories": "A subset of the template categories (null: all).",
    "masked.n_templates": "The first N templates of each category (null: all).",
    "masked.target_format": "How a race × gender group fills `[TARGET]`: `{race}`, `{gender}`, `{race_lower}`, `{gender_lower}`.",
    "masked.pll": "Also the pseudo-log-likelihood of every group's sentence (CrowS-Pairs style).",
    "masked.corpus": "A folder of `.txt` files or a `.csv` file for the corpus comparison (\"inherited or amplified\").",
    "masked.corpus_column": "The CSV column holding the text (null: `text`).",
}

#: Meanings of results.json fields the JSON Schema does not describe itself (by generated path).
RESULTS_MEANINGS: dict[str, str] = {
    "toolkit_version": "Version of the toolkit that wrote the file.",
    "config": "The resolved configuration of the run ([Configuration](configuration.md)).",
    "seeds": "Every seed of the run by section (`config`, `benchmark`, `scoring`, `probes`, …).",
    "model": "What model ran.",
    "model.name": "`model.name` of the config.",
    "model.sha256": "SHA-256 of the weights (for an embedded model: of its GGUF file).",
    "model.dtype": "Precision the model ran in.",
    "model.backend": "`extract.backend` of the extraction.",
    "model.prompt_framing.kind": "`chat_template` or `plain`.",
    "model.prompt_framing.system": "Where the system message went.",
    "model.prompt_framing.bos": "The beginning-of-sequence prefix.",
    "model.prompt_framing.template": "The model text with `{user}` in place of the user message.",
    "model.answer_tokens.yes_ids": "Vocabulary ids whose text is \"yes\" (stripped, lower-cased).",
    "model.answer_tokens.yes_tokens": "Their texts.",
    "model.answer_tokens.no_ids": "Vocabulary ids whose text is \"no\".",
    "model.answer_tokens.no_tokens": "Their texts.",
    "benchmark": "What the renderer made of the benchmark.",
    "benchmark.source": "`benchmark.source` of the config.",
    "benchmark.degraded_fields": "Per tier, the case fields that tier needs but some cases lack, and how many cases lack them.",
    "benchmark.collapsed_duplicates": "Per tier, how many cases rendered to a prompt another case already had.",
    "benchmark.dropped_tiers": "Tiers dropped because every case rendered the same there.",
    "batch_invariance": "The batch check (`batch_check.json`): prompts re-run alone against their batched P(Yes); null when off.",
    "batch_invariance.batch_size": "`extract.batch_size` of the extraction.",
    "batch_invariance.indices": "Row indices of the prompts re-run.",
    "batch_invariance.max_abs_diff": "Largest \\|ΔP(Yes)\\| alone vs batched.",
    "batch_invariance.mean_abs_diff": "Mean \\|ΔP(Yes)\\|.",
    "batch_invariance.n_prompts": "Prompts re-run.",
    "batch_invariance.tolerance": "The bound above which the report warns (1e-4).",
    "tiers": "Every score per context tier (see `$defs.tier`).",
    "tiers.*": "One tier, by its name (`high`, `medium`, `low`; `masked` for a masked-LM audit).",
    "masked.corpus.findings[]": "One finding.",
    "benchmark.few_shot.k": "Solved examples before every prompt.",
    "benchmark.few_shot.seed": "The seed of the draw (`benchmark.seed`).",
    "benchmark.few_shot.examples": "Per tier, per case: the case ids of its examples (the same for all 13 variants).",
    "$defs.tier.decision_gate": "The decision gate's inputs.",
    "$defs.tier.decision_gate.median_option_mass": "The tier's median Yes+No next-token mass.",
    "$defs.tier.decision_gate.min_option_mass": "The gate's threshold (`scoring.min_option_mass`).",
    "provenance.device": "Device of the extraction.",
    "provenance.gpu": "GPU name, when there was one.",
    "provenance.libraries": "Python, CUDA and library versions.",
    "provenance.lock_differs.*": "One library not at its locked version.",
    "provenance.lock_differs.*.installed": "The version installed (null: not installed).",
    "provenance.lock_differs.*.locked": "The version the lock pins (null: not in the lock).",
    "masked.templates": "The template set: name, source, per-category counts and descriptions.",
    "masked.templates.name": "Template set name.",
    "masked.templates.source": "File it came from.",
    "masked.templates.counts": "Templates per category.",
    "masked.templates.descriptions": "One line per category.",
    "masked.n_templates": "Templates audited.",
    "masked.groups": "The race × gender groups.",
    "masked.target_format": "`masked.target_format` of the config.",
    "masked.example": "One rendered sentence, for the reader.",
    "masked.margin": "`scoring.association_margin`.",
    "masked.analyses": "The three analyses ([Masked-LM audits](../guides/masked.md)).",
    "masked.analyses.association": "Log-probability bias log(p_tgt / p_prior).",
    "masked.analyses.log_p_target": "log p_tgt alone (no prior).",
    "masked.analyses.pll": "Pseudo-log-likelihood.",
    "masked.corpus": "The corpus comparison; null without `masked.corpus`.",
    "masked.corpus.source": "The corpus path.",
    "masked.corpus.n_documents": "Documents read.",
    "masked.corpus.n_sentences": "Sentences counted.",
    "masked.corpus.n_group": "Sentences naming each group.",
    "masked.corpus.log_odds": "Centred log-odds per category and group.",
    "masked.corpus.findings": "Every significant association compared with the corpus.",
    "masked.corpus.n_findings": "Number of findings.",
    "masked.corpus.n_consistent": "Findings in the corpus's direction.",
    "masked.corpus.n_contradicts": "Findings against it.",
    "masked.corpus.share_consistent": "n_consistent / n_findings.",
    "masked.corpus.share_contradicts": "n_contradicts / n_findings.",
    "$defs.tier": "One tier's scores.",
    "$defs.tier.n_cases": "Cases scored (after collapsing duplicates).",
    "$defs.tier.n_prompts": "Prompts scored.",
    "$defs.tier.accuracy": "Accuracy over the labelled prompts ([Metrics](../methods/metrics.md#accuracy)); null when none is labelled.",
    "$defs.tier.n_unlabelled": "Prompts without a label, left out of accuracy.",
    "$defs.tier.mfarm": "The five output-level scores and mFARM.",
    "$defs.tier.mfarm.mean_difference": "F_MD.",
    "$defs.tier.mfarm.absolute_deviation": "F_AD.",
    "$defs.tier.mfarm.variance_heterogeneity": "F_VH.",
    "$defs.tier.mfarm.ks_distribution": "F_KS.",
    "$defs.tier.mfarm.correlation_difference": "F_CD.",
    "$defs.tier.mfarm.score": "mFARM: the geometric mean of the five.",
    "$defs.tier.fab": "FAB: harmonic mean of mFARM and accuracy.",
    "$defs.tier.mfarm_full": "After fit: geometric mean of the five and F_LV.",
    "$defs.tier.fab_full": "After fit: harmonic mean of mFARM full and accuracy.",
    "$defs.tier.diagnostics": "Beside the scores, not part of them.",
    "$defs.tier.diagnostics.omnibus": "The omnibus tests (Friedman, Levene) with statistics, p-values and Kendall's W.",
    "$defs.tier.diagnostics.ibd": "Intersectional residual share.",
    "$defs.tier.diagnostics.group_shifts": "Per group: mean shift of P(Yes) from BASE with its interval, and the flip rate.",
    "$defs.tier.latent": "After fit: the latent side (see `$defs.latent`).",
    "$defs.tier.equivalence": "Per group: the TOST verdict of its mean shift against `scoring.equivalence_margin`.",
    "$defs.tier.detectable_shift": "The smallest mean group shift a paired t-test would detect with 80 % power.",
    "$defs.tier.null": "The permutation null: per score the observed value, p-value, null median and 5th percentile.",
    "$defs.tier.option_mass": "Median next-token probability on Yes ∪ No, overall and per variant, and the Friedman test across variants.",
    "$defs.tier.warnings[]": "One warning.",
    "$defs.probe_curve": "One probe target's curve over layers.",
    "$defs.probe_curve.accuracy": "Held-out accuracy per layer.",
    "$defs.probe_curve.selectivity": "Accuracy minus the accuracy of the same probe on permuted labels, per layer.",
    "$defs.latent": "The latent side of a tier ([Probes and the value axis](../methods/probes.md)).",
    "$defs.latent.value_axis_layer": "ℓ*.",
    "$defs.latent.value_axis_auroc": "Held-out AUROC of the value axis at ℓ*.",
    "$defs.latent.value_axis_fairness": "F_LV.",
    "$defs.latent.value_axis_target": "`model` or `label`.",
    "$defs.latent.value_axis_auroc_by_layer": "Held-out AUROC per layer.",
    "$defs.latent.value_axis_spearman_by_layer": "Spearman ρ between the projection and logit P(Yes), per layer.",
    "$defs.latent.probes": "Probe curves by target (`race`, `gender`, `race_gender`).",
    "$defs.latent.probes.*": "One target's curve.",
    "$defs.latent.steering": "Steering vectors: per group and layer, norm and cosine with the value axis.",
    "$defs.latent.other_sites": "The same for the other cached sites and positions.",
    "$defs.latent.mediation": "After explain: the LEACE mediation at ℓ*; null before.",
    "$defs.latent.mediation.layer": "Layer erased.",
    "$defs.latent.mediation.disparity_before": "D before erasure.",
    "$defs.latent.mediation.disparity_after": "D after erasure.",
    "$defs.latent.mediation.mediated_fraction": "1 − D_after / D_before.",
    "$defs.latent.mediation.random_control_fraction": "The same for as many random directions.",
    "$defs.masked_cell": "One category × group cell of a masked-LM analysis.",
    "$defs.masked_cell.mean_score": "The group's mean score over the category's templates.",
    "$defs.masked_cell.difference": "Its mean difference from the template's mean over groups.",
    "$defs.masked_cell.ci": "Bootstrap interval over templates.",
    "$defs.masked_cell.p_value": "t-test beyond the margin.",
    "$defs.masked_cell.p_adjusted": "After correction over all cells.",
    "$defs.masked_cell.significant": "Whether the adjusted p-value is at most α.",
    "$defs.masked_cell.effect_size": "Cohen's d_z.",
    "$defs.masked_analysis": "One masked-LM analysis.",
    "$defs.masked_analysis.alpha": "Significance level.",
    "$defs.masked_analysis.correction": "Correction method.",
    "$defs.masked_analysis.margin": "Margin in nats.",
    "$defs.masked_analysis.n_significant": "Significant cells.",
    "$defs.masked_analysis.categories": "Per category.",
    "$defs.masked_analysis.categories.*": "One category.",
    "$defs.masked_analysis.categories.*.groups.*": "One group's cell.",
    "$defs.masked_analysis.categories.*.n_templates": "Templates in the category.",
    "$defs.masked_analysis.categories.*.friedman": "Friedman test over templates × groups.",
    "$defs.masked_analysis.categories.*.friedman.statistic": "χ² statistic.",
    "$defs.masked_analysis.categories.*.friedman.p_value": "Its p-value.",
    "$defs.masked_analysis.categories.*.groups": "Per group, a `$defs.masked_cell`.",
    "$defs.masked_finding": "One significant association against the corpus.",
    "$defs.masked_finding.category": "Template category.",
    "$defs.masked_finding.group": "Group.",
    "$defs.masked_finding.difference": "The model's association difference.",
    "$defs.masked_finding.corpus": "The corpus's centred log-odds.",
    "$defs.masked_finding.label": "`consistent with the corpus` or `contradicts the corpus`.",
    "$defs.masked_finding.size_ratio": "Model difference over corpus log-odds.",
}


# --------------------------------------------------------------------------- configuration


def _type_text(tp: Any) -> str:
    origin = get_origin(tp)
    if origin is Literal:
        return " \\| ".join(f"`{a}`" if a is not None else "null" for a in get_args(tp))
    if origin in (Union, types.UnionType):
        return " \\| ".join(_type_text(a) for a in get_args(tp))
    if origin is list:
        return f"list of {_type_text(get_args(tp)[0])}"
    if origin is dict:
        key, value = get_args(tp)
        return f"mapping {_type_text(key)} → {_type_text(value)}"
    if tp is type(None):
        return "null"
    if dataclasses.is_dataclass(tp):
        return "section"
    return {"str": "string", "int": "integer", "float": "number", "bool": "boolean"}.get(tp.__name__, tp.__name__)


def _default_text(field: dataclasses.Field) -> str:
    if field.default is not dataclasses.MISSING:
        value = field.default
    elif field.default_factory is not dataclasses.MISSING:  # type: ignore[misc]
        value = field.default_factory()  # type: ignore[misc]
    else:
        return "required"
    if dataclasses.is_dataclass(value):
        return "(section)"
    return f"`{json.dumps(value, ensure_ascii=False)}`"


def _section(tp: Any) -> type | None:
    if dataclasses.is_dataclass(tp):
        return tp
    for arm in get_args(tp):
        if dataclasses.is_dataclass(arm):
            return arm
    return None


def config_rows(cls: type = schema.Config, prefix: str = "") -> list[tuple[str, str, str, type | None]]:
    """(dotted key, type, default, section class or None) of every key of the schema, in order."""
    hints = typing.get_type_hints(cls)
    rows = []
    for field in dataclasses.fields(cls):
        key = prefix + field.name
        tp = hints[field.name]
        section = _section(tp)
        kind = "section" + (" or null" if section is not None and type(None) in get_args(tp) else "") if section else _type_text(tp)
        rows.append((key, kind, _default_text(field), section))
        if section is not None:
            rows += config_rows(section, key + ".")
    return rows


def check_config_meanings() -> None:
    """Every schema key has a meaning, and every meaning belongs to a schema key."""
    keys = [key for key, *_ in config_rows()]
    missing = [k for k in keys if k not in CONFIG_MEANINGS]
    extra = [k for k in CONFIG_MEANINGS if k not in keys]
    if missing or extra:
        raise ValueError(f"docs/gen_reference.py CONFIG_MEANINGS: missing {missing}, not in the schema {extra}")


def config_reference() -> str:
    """The configuration reference page (Markdown)."""
    check_config_meanings()
    lines = [
        "# Configuration reference",
        "",
        "<!-- Generated by docs/gen_reference.py from configs/schema.py: do not edit by hand. -->",
        "",
        "A config is a YAML mapping. Every key is optional (`benchmark.source` defaults to `ed_triage`);",
        "unknown keys, wrong types, out-of-range values and missing files are refused with exit code 2",
        "and one line naming the file, the dotted key and the value, before any model work.",
        "`--set key.path=value` overrides any key (the value is parsed as YAML). Types: `|` separates",
        "the accepted alternatives; a section is a nested mapping.",
        "",
    ]
    top = [row for row in config_rows() if "." not in row[0]]
    scalars = [row for row in top if row[3] is None]
    lines += ["## Top level", "", "| key | type | default | meaning |", "|---|---|---|---|"]
    lines += [f"| `{k}` | {t} | {d} | {CONFIG_MEANINGS[k]} |" for k, t, d, _ in scalars]
    for key, kind, _, section in top:
        if section is None:
            continue
        lines += ["", f"## `{key}`", "", f"{CONFIG_MEANINGS[key]} ({kind}.)", ""]
        lines += ["| key | type | default | meaning |", "|---|---|---|---|"]
        for k, t, d, sub in config_rows(section, key + "."):
            lines.append(f"| `{k}` | {t} | {d} | {CONFIG_MEANINGS[k]} |")
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------- results.json


def _json_type(node: dict) -> str:
    if "$ref" in node:
        name = node["$ref"].rsplit("/", 1)[-1]
        return f"[`{name}`](#defs-{name.replace('_', '-')})"
    if "enum" in node:
        return " \\| ".join(f"`{v}`" for v in node["enum"])
    for key in ("anyOf", "oneOf"):
        if key in node:
            return " \\| ".join(_json_type(arm) for arm in node[key])
    tp = node.get("type", "any")
    return " \\| ".join(tp) if isinstance(tp, list) else tp


def _json_rows(node: dict, path: str, required: bool, out: list[tuple[str, str, bool, str]]) -> None:
    meaning = node.get("description") or RESULTS_MEANINGS.get(path, "")
    out.append((path, _json_type(node), required, meaning))
    arms = [node] + [arm for k in ("anyOf", "oneOf") for arm in node.get(k, []) if isinstance(arm, dict)]
    for arm in arms:
        req = set(arm.get("required", []))
        for name, child in arm.get("properties", {}).items():
            _json_rows(child, f"{path}.{name}" if path else name, name in req, out)
        extra = arm.get("additionalProperties")
        if isinstance(extra, dict) and (extra.get("properties") or "$ref" in extra):
            _json_rows(arm["additionalProperties"], f"{path}.*", False, out)
        items = arm.get("items")
        if isinstance(items, dict) and (items.get("properties") or "$ref" in items):
            _json_rows(items, f"{path}[]", False, out)
        elif path + "[]" in RESULTS_MEANINGS and isinstance(items, dict):
            _json_rows(items, f"{path}[]", False, out)


def results_rows(schema_data: dict) -> list[tuple[str, str, bool, str]]:
    """(path, type, required, meaning) of every documented field of the results.json schema."""
    out: list[tuple[str, str, bool, str]] = []
    _json_rows(schema_data, "", True, out)
    for name, node in schema_data.get("$defs", {}).items():
        _json_rows(node, f"$defs.{name}", True, out)
    return out


def results_reference() -> str:
    """The results.json reference page (Markdown)."""
    data = json.loads(SCHEMA_FILE.read_text(encoding="utf-8"))
    rows = results_rows(data)
    unknown = [k for k in RESULTS_MEANINGS if k not in {r[0] for r in rows}]
    if unknown:
        raise ValueError(f"docs/gen_reference.py RESULTS_MEANINGS: not in the schema {unknown}")
    lines = [
        "# results.json reference",
        "",
        "<!-- Generated by docs/gen_reference.py from pipeline/schemas/results.schema.json: do not edit by hand. -->",
        "",
        f"{data.get('description', '')} Every `results.json` is validated against the JSON Schema",
        "`pipeline/schemas/results.schema.json` before it is written, and `probe validate DIR` checks it again.",
        "The schema changes only additively. `*` stands for any key (a tier name, a group, a category);",
        "`[]` for the items of a list; \"req.\" marks keys that must be present when their parent is.",
        "",
    ]
    current = None
    for path, tp, required, meaning in rows:
        head = "top level" if not path.startswith("$defs.") else path.split(".")[1]
        if head != current:
            current = head
            title = "Top level" if head == "top level" else f"`$defs.{head}`"
            anchor = "" if head == "top level" else f" {{#defs-{head.replace('_', '-')}}}"
            lines += ["", f"## {title}{anchor}", "", "| field | type | req. | meaning |", "|---|---|---|---|"]
        if not path:
            continue
        lines.append(f"| `{path}` | {tp} | {'yes' if required else ''} | {meaning} |")
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------- outputs

PAGES = {CONFIG_PAGE: config_reference, RESULTS_PAGE: results_reference}


def on_page_markdown(markdown: str, page: Any, **_: Any) -> str:
    """mkdocs hook: render the generated pages from the code at every build."""
    make = PAGES.get(page.file.src_uri)
    return make() if make else markdown


def write_pages(docs_dir: Path = ROOT / "docs") -> list[Path]:
    """Write every generated page; return their paths."""
    written = []
    for rel, make in PAGES.items():
        path = docs_dir / rel
        path.write_text(make(), encoding="utf-8")
        written.append(path)
    return written


if __name__ == "__main__":
    for written_path in write_pages():
        print(written_path.relative_to(ROOT))
