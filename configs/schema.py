"""The job configuration: typed sections, defaults, and validation at the boundary.

A config is a YAML mapping with the sections below. Every key is optional except
``benchmark.source``; unknown keys, wrong types, out-of-range values and missing
files are refused with a :class:`ConfigError` whose one-line message names the file,
the dotted key path and the offending value, before any model work. What needs the
model (its depth) is checked by :func:`check_against_model` once it is known.

The file itself must be UTF-8 YAML of at most :data:`MAX_CONFIG_BYTES`, a mapping at
the top level, without duplicate keys and nested at most :data:`MAX_DEPTH` levels.

Every section is a frozen dataclass: a loaded config cannot be changed in place
(assigning to a field raises :class:`dataclasses.FrozenInstanceError`). A changed
config is another object, made with :func:`dataclasses.replace`, so a function handed a
config never alters its caller's.
"""

from __future__ import annotations

import dataclasses
import re
import math
import stat
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Union, get_args, get_origin

import yaml

from .errors import InputError
from .resources import shipped_config
from .names import BACKEND_RUNNERS, BASE, DEFAULT_GENDERS, DEFAULT_RACES, POSITIONS, PRECISIONS, SITES, TIERS

#: the largest config file read (bytes)
MAX_CONFIG_BYTES = 1 << 20
#: the deepest nesting of mappings and lists accepted (the schema needs 4)
MAX_DEPTH = 32
#: the most values (scalars, lists, mappings) a config may hold, aliases counted each time
MAX_VALUES = 100_000
#: a run name as typed (``runs/<name>``), a race or gender word: at most this many characters
MAX_NAME_CHARS = 100
#: a run name in a saved config.json (a sweep item's is ``<name>__<combination>``):
#: at most one folder name's worth of UTF-8 bytes
MAX_RUN_NAME_BYTES = 255
#: seeds are 0 .. 2**32 - 1 (what numpy, pandas and torch all accept)
MAX_SEED = 2**32 - 1
#: the largest layer index accepted before the model is known (see check_against_model)
MAX_LAYER = 10_000
#: the largest |steering strength| in units of sigma
MAX_ALPHA = 1000.0
#: the longest system message (characters)
MAX_SYSTEM_CHARS = 10_000
#: the most solved examples before a prompt (benchmark.few_shot)
MAX_FEW_SHOT = 64
#: the longest plain-format answer cue (characters)
MAX_CUE_CHARS = 200
#: the longest path, model id or revision (characters)
MAX_PATH_CHARS = 4096


class ConfigError(InputError, ValueError):
    """A configuration value is invalid; the message names file, key and value."""


@dataclass(frozen=True)
class ModelConfig:
    """Which model to run and how."""

    name: str = "smollm2-135m-instruct"  # the embedded default, a Hugging Face id, or a local directory
    dtype: Literal["float32", "bfloat16", "float16"] = "float32"
    # auto: CUDA when available, else the CPU; cpu; cuda; cuda:N
    device: str = "auto"
    # null: the whole model on ``device``; auto / balanced: spread over the GPUs by accelerate;
    # or an explicit map of module names to devices ({"model.layers.0": 0, ..., "lm_head": "cpu"})
    device_map: str | dict[str, str | int] | None = None
    attn_implementation: Literal["eager", "sdpa", "flash_attention_2", "batch_invariant"] | None = None  # null: batch_invariant for int8, else transformers' default
    trust_remote_code: bool = False
    revision: str | None = None
    cache_dir: str | None = None  # where converted copies of the embedded model live
    quantization: Literal["none", "int8", "bnb-8bit", "bnb-4bit"] = "none"
    adapter: str | None = None  # a PEFT LoRA directory applied to the model
    # auto: from the model's config.json (an architecture ending in ForMaskedLM is masked)
    kind: Literal["auto", "causal", "masked"] = "auto"
    # auto: the tokenizer's chat template when it has one, else the plain format;
    # chat: require the template; plain: "System: ...\nUser: ...\n<answer_cue>" even if there is one
    framing: Literal["auto", "chat", "plain"] = "auto"
    answer_cue: str = "Answer:"  # the plain format's last line, after which the model answers


@dataclass(frozen=True)
class MimicOptions:
    """The numeric choices of the MIMIC-IV benchmark builders (docs/methods/mimic.md)."""

    seed: int = 42
    balance_race: bool = True
    balance_labels: bool = True  # opioid: equal YES and NO
    split_fractions: list[float] = field(default_factory=lambda: [0.8, 0.05, 0.15])
    max_diagnoses: int = 4  # ED: diagnoses with seq_num < 5
    max_icd_codes: int = 15  # opioid: keep admissions with fewer ICD codes than this


@dataclass(frozen=True)
class BenchmarkConfig:
    """Which cases to render, and how."""

    source: Literal["ed_triage", "opioid", "mimic_ed_demo", "qpain", "csv", "mimic"] = "ed_triage"
    task: Literal["ed_triage", "opioid", "qpain"] | None = None  # for sources csv and mimic
    path: str | None = None  # file or folder, for mimic_ed_demo, qpain and csv
    data_dir: str | None = None  # for source mimic: the MIMIC-IV root (hosp/, icu/, ed/, note/)
    split: Literal["train", "validation", "test", "all"] = "test"  # for source mimic
    mimic: MimicOptions = field(default_factory=MimicOptions)
    n_cases: int | None = None  # None: every case the source has
    seed: int = 42
    tiers: list[str] = field(default_factory=lambda: list(TIERS))
    races: list[str] = field(default_factory=lambda: list(DEFAULT_RACES))
    genders: list[str] = field(default_factory=lambda: list(DEFAULT_GENDERS))
    descent_word: Literal["descent", "decent"] = "descent"
    system_message: str = "Answer only in Yes or No."
    # collapse: cases that render identically at a tier count once (a tier where all
    # do is dropped); keep: render every case as it is (the published protocol)
    duplicates: Literal["collapse", "keep"] = "collapse"
    # solved examples (other cases, rendered as BASE, labels balanced, drawn with ``seed``)
    # shown before every prompt; 0: none (benchmarks.few_shot)
    few_shot: int = 0


@dataclass(frozen=True)
class ExtractConfig:
    """Model inference."""

    batch_size: int = 8
    backend: str = "hf"  # a key of configs.names.BACKEND_RUNNERS
    sites: list[str] = field(default_factory=lambda: ["resid_post"])
    positions: list[str] = field(default_factory=lambda: ["last"])
    storage_dtype: Literal["float32", "float16"] = "float32"
    threads: int | None = None  # torch intra-op threads; None: torch's default
    batch_check: int = 24  # prompts re-run alone to measure batch dependence (batch_check.json); 0: off


@dataclass(frozen=True)
class ProbesConfig:
    """Linear probes, steering vectors and the value axis (Part B: docs/methods/probes.md)."""

    n_folds: int = 5
    bootstrap: int = 1000  # resamples of cases for the probe-accuracy CIs; 0: no CI (null in the outputs)
    seed: int = 0
    value_axis_target: Literal["model", "label"] = "model"
    value_axis_layer: int | None = None  # None: the layer with the best held-out AUROC


@dataclass(frozen=True)
class ScoringConfig:
    """mFARM scoring (Parts A and C: docs/methods/metrics.md)."""

    alpha: float = 0.05
    correction: str = "holm"
    accuracy: Literal["threshold", "l1"] = "threshold"
    bootstrap: int = 1000  # resamples of cases for every interval; 0: no intervals (null in the outputs)
    seed: int = 0
    ci_level: float = 0.95  # percentile intervals at this level
    # TOST margin for a group's mean shift of P(Yes) from BASE (docs/methods/metrics.md, section Equivalence)
    equivalence_margin: float = 0.02
    permutations: int = 200  # within-case permutations of the variant labels for the null; 0: off
    option_mass_threshold: float = 0.5  # warn when the median next-token mass on Yes/No is below this
    # decision gate: a tier whose median option mass is below this is marked decision: false
    # (its renormalised P(Yes), and so its mFARM, is not the model's decision)
    min_option_mass: float = 0.5
    # masked-LM audits: a group difference counts only beyond this many nats (log-probability units)
    association_margin: float = 0.1


@dataclass(frozen=True)
class ComponentsConfig:
    """Component attribution (attribution patching), its verification and the remedy (docs/components.md)."""

    enabled: bool = True
    cases: int | None = None  # cases attributed (the first of explain.max_cases); None: every explained case
    layers: list[int] | None = None  # layers attributed; None: every layer
    top_k: int = 20  # components verified by activation patching, per attribute
    random: int = 10  # random control components patched beside them, per attribute
    verify_cases: int = 8  # cases the verification patches (the first attributed ones); 0: no verification (and no remedy)
    saturation: float = 0.95  # a head whose decision-position attention reaches this weight is also patched (AtP* check)
    saturated_max: int = 10  # at most this many such heads per attribute
    remedy: bool = True  # re-run the explained cases with the verified top components ablated and re-score
    remedy_max: int = 5  # at most this many verified components that carry the gap are edited (largest patched share first)
    remedy_method: Literal["mean", "erase"] = "mean"  # mean: replaced by its mean over BASE prompts at the same position kind; erase: its race x gender subspace (LEACE) set to BASE's


@dataclass(frozen=True)
class ExplainConfig:
    """Causal explanations (B3: docs/methods/explain.md): steering dose-response and LEACE mediation."""

    tiers: list[str] | None = None  # None: the first benchmark tier
    layers: list[int] | None = None  # None: every fourth layer plus the value-axis layer
    alphas: list[float] = field(default_factory=lambda: [-8.0, -4.0, -2.0, 0.0, 2.0, 4.0, 8.0])
    max_cases: int | None = 30  # cases used for interventions (each re-runs the model); None: all
    seed: int = 0
    position_erasure: bool = False  # also erase with LEACE fitted per position kind (demographic words, later, decision); 3x the mediation's passes
    trace_cases: int = 4  # cases of the causal trace by activation patching (the first of max_cases); 0: off
    trace_layers: list[int] | None = None  # layers the trace patches; None: every layer
    reuse_prefix: bool = True  # run the blocks below an intervention once per batch (false: full re-runs)
    prefix_memory_gb: float = 4.0  # prefixes the mediation keeps from its fitting pass for the erased runs (GiB; beyond: re-run)
    components: ComponentsConfig = field(default_factory=ComponentsConfig)


@dataclass(frozen=True)
class ClusterConfig:
    """Sharded extraction through submitit (``probe run --executor --shards``)."""

    executor: Literal["inline", "local", "slurm"] = "inline"
    shards: int = 1
    timeout_min: int = 240  # every shard job's time limit (local and Slurm)
    partition: str | None = None  # Slurm partition
    account: str | None = None  # Slurm account
    gpus_per_shard: int = 0
    cpus_per_shard: int = 4
    array_parallelism: int | None = None  # at most this many shards at once (null: all)
    job_name: str = "latent-bias-probe"
    sbatch_extra: dict[str, str] = field(default_factory=dict)  # more sbatch options, e.g. {qos: high, constraint: a100}
    poll_s: float = 5.0  # how often the driver checks the jobs


@dataclass(frozen=True)
class SweepConfig:
    """A grid of runs: every model x precision x adapter combination."""

    models: list[str] = field(default_factory=list)  # default: [model.name]
    precisions: list[str] = field(default_factory=lambda: ["float32"])
    adapters: list[str | None] = field(default_factory=lambda: [None])  # PEFT LoRA directories; null = none
    reference: str | None = None  # the precision paired differences are taken against (default: the first listed)


@dataclass(frozen=True)
class MaskedConfig:
    """A masked-LM audit (``model.kind: masked``): templates, target words, PLL, corpus."""

    templates: str = "clinical"  # the shipped set, or a .yaml/.yml/.csv file (benchmarks/templates.py)
    categories: list[str] | None = None  # None: every category of the set
    n_templates: int | None = None  # None: all (the first N per category otherwise)
    # how a race x gender group fills [TARGET]: {race}, {gender}, {race_lower}, {gender_lower}
    target_format: str = "{race} {gender_lower}"
    pll: bool = True  # pseudo-log-likelihood of every group's sentence (CrowS-Pairs style)
    corpus: str | None = None  # a folder of .txt files or a .csv file, for the corpus comparison
    corpus_column: str | None = None  # the CSV column holding the text (default: "text")


@dataclass(frozen=True)
class Config:
    """A whole job (frozen, like every section: change one with :func:`dataclasses.replace`)."""

    name: str = "job"
    seed: int = 0
    model: ModelConfig = field(default_factory=ModelConfig)
    benchmark: BenchmarkConfig = field(default_factory=BenchmarkConfig)
    extract: ExtractConfig = field(default_factory=ExtractConfig)
    scoring: ScoringConfig = field(default_factory=ScoringConfig)
    probes: ProbesConfig = field(default_factory=ProbesConfig)
    explain: ExplainConfig = field(default_factory=ExplainConfig)
    cluster: ClusterConfig = field(default_factory=ClusterConfig)
    sweep: SweepConfig | None = None
    masked: MaskedConfig | None = None  # None: the defaults, when the model is a masked LM

    def to_dict(self) -> dict[str, Any]:
        """The config as plain JSON-able data (what results.json records)."""
        return dataclasses.asdict(self)


# --------------------------------------------------------------------------- messages


def _show(value: Any, limit: int = 120) -> str:
    """``repr(value)`` on one line, cut to about ``limit`` characters."""
    try:
        text = repr(value)
    except RecursionError:  # pragma: no cover - structures are depth-checked first
        return f"<{type(value).__name__}>"
    if len(text) > limit:
        text = f"{text[:limit]}... ({len(text)} characters)"
    return text


def _one_line(text: str, limit: int = 200) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[:limit] + "..."


def _key_text(key: Any) -> str:
    """A mapping key for a key path: as it is when printable text, else its repr."""
    if isinstance(key, str) and key.isprintable() and key.strip() == key and key:
        return key if len(key) <= 60 else _show(key, 60)
    return _show(key, 60)


def _type_name(tp: Any) -> str:
    origin = get_origin(tp)
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in get_args(tp))
    if origin in (Union, types.UnionType):
        return " or ".join(_type_name(a) for a in get_args(tp))
    if origin is list:
        return f"list of {_type_name(get_args(tp)[0])}"
    if origin is dict:
        return f"a mapping of {_type_name(get_args(tp)[0])} to {_type_name(get_args(tp)[1])}"
    if tp is type(None):
        return "null"
    if dataclasses.is_dataclass(tp):
        return "a mapping"
    return getattr(tp, "__name__", str(tp))


# --------------------------------------------------------------------------- types


def _coerce(value: Any, tp: Any, where: str) -> Any:
    """Check ``value`` against the annotation ``tp``; return it (ints widen to float)."""
    origin = get_origin(tp)
    if origin in (Union, types.UnionType):
        if value is None and type(None) in get_args(tp):
            return None  # an optional section given as null stays off
        section = _section_type(tp)
        if section is not None and isinstance(value, dict):  # an optional section: keep its keys' own messages
            return _build(section, value, where)
        for arm in get_args(tp):
            try:
                return _coerce(value, arm, where)
            except ConfigError:
                continue
        raise ConfigError(f"{where}: expected {_type_name(tp)}, got {_show(value)}")
    if origin is Literal:
        if isinstance(value, (str, int, float, bool, type(None))) and value in get_args(tp):
            return value
        raise ConfigError(f"{where}: expected {_type_name(tp)}, got {_show(value)}")
    if origin is list:
        if not isinstance(value, list):
            raise ConfigError(f"{where}: expected {_type_name(tp)}, got {_show(value)}")
        (item,) = get_args(tp)
        return [_coerce(v, item, f"{where}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected {_type_name(tp)}, got {_show(value)}")
        key_tp, value_tp = get_args(tp)
        return {_coerce(k, key_tp, f"{where} key"): _coerce(v, value_tp, f"{where}.{k}") for k, v in value.items()}
    if tp is type(None):
        if value is None:
            return None
        raise ConfigError(f"{where}: expected null, got {_show(value)}")
    if dataclasses.is_dataclass(tp):
        return _build(tp, value, where)
    if tp is bool:
        if isinstance(value, bool):
            return value
    elif tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            try:
                return float(value)
            except OverflowError:
                raise ConfigError(f"{where}: number too large, got {_show(value)}") from None
    elif tp is str:
        if isinstance(value, str):
            return value
    else:  # pragma: no cover - schema error, not user error
        raise TypeError(f"unsupported annotation {tp!r}")
    hint = ""
    if tp in (int, float) and isinstance(value, str):
        try:
            float(value)
            hint = " (YAML reads this as text: drop the quotes; write exponents with a dot and a sign, e.g. 1.0e+6)"
        except ValueError:
            pass
    raise ConfigError(f"{where}: expected {_type_name(tp)}, got {_show(value)}{hint}")


def _build(cls: type, data: Any, where: str) -> Any:
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{where or 'config'}: expected a mapping, got {_show(data)}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    for key in data:
        if key not in names:
            path = f"{where}.{_key_text(key)}" if where else _key_text(key)
            raise ConfigError(f"{path}: unknown key (allowed: {', '.join(sorted(names))})")
    kwargs = {}
    for name in names:
        if name in data:
            path = f"{where}.{name}" if where else name
            kwargs[name] = _coerce(data[name], hints[name], path)
    return cls(**kwargs)


def _section_type(tp: Any) -> type | None:
    """The dataclass an annotation holds (``SweepConfig | None`` -> SweepConfig), else None."""
    if dataclasses.is_dataclass(tp):
        return tp
    if get_origin(tp) in (Union, types.UnionType):
        for arm in get_args(tp):
            if dataclasses.is_dataclass(arm):
                return arm
    return None


def _check_structure(data: Any, where: str = "") -> None:
    """Refuse data nested deeper than MAX_DEPTH or holding more than MAX_VALUES values.

    Iterative, so that neither a deep structure nor one that contains itself (YAML
    aliases can build both) exhausts the stack; ``where`` prefixes the key path.
    """
    stack: list[tuple[Any, int, str]] = [(data, 0, where)]
    seen = 0
    while stack:
        value, depth, path = stack.pop()
        seen += 1
        if seen > MAX_VALUES:
            raise ConfigError(f"{where + ': ' if where else ''}more than {MAX_VALUES} values (a config holds a few dozen; YAML aliases?)")
        if isinstance(value, (dict, list)):
            if depth >= MAX_DEPTH:
                raise ConfigError(f"{path or 'config'}: nested more than {MAX_DEPTH} levels deep (a config needs 4)")
            if isinstance(value, dict):
                for k, v in value.items():
                    child = path if depth >= 2 else (f"{path}.{_key_text(k)}" if path else _key_text(k))
                    stack.append((v, depth + 1, child))
            else:
                stack.extend((v, depth + 1, path) for v in value)


# --------------------------------------------------------------------------- values


def _printable(text: str, allow: str = "") -> bool:
    return all(ch.isprintable() or ch in allow for ch in text)


def _check_components(co: "ComponentsConfig") -> None:
    """``explain.components``: counts in range, the saturation a weight in (0, 1]."""
    _int_range("explain.components.cases", co.cases, 2, 100_000, null="every explained case")
    _check_layer_list("explain.components.layers", co.layers, "every layer")
    _int_range("explain.components.top_k", co.top_k, 1, 10_000)
    _int_range("explain.components.random", co.random, 0, 10_000)
    _int_range("explain.components.verify_cases", co.verify_cases, 0, 100_000)
    _int_range("explain.components.saturated_max", co.saturated_max, 0, 10_000)
    _int_range("explain.components.remedy_max", co.remedy_max, 1, 10_000)
    if not (math.isfinite(co.saturation) and 0 < co.saturation <= 1):
        raise ConfigError(f"explain.components.saturation: must be a number in (0, 1], got {_show(co.saturation)}")


def _int_range(where: str, value: int | None, lo: int, hi: int, *, null: str | None = None) -> None:
    """``lo <= value <= hi`` (``null``: what None means, when None is allowed)."""
    if value is None:
        if null is None:  # pragma: no cover - the type check admits None only where allowed
            raise ConfigError(f"{where}: must not be null")
        return
    if not lo <= value <= hi:
        extra = f" or null ({null})" if null else ""
        raise ConfigError(f"{where}: must lie in {lo}..{hi}{extra}, got {_show(value)}")


def _check_run_name(where: str, name: str) -> None:
    """A run name is one folder name under ``runs/``: no path, nothing hidden."""
    if not name.strip():
        raise ConfigError(f"{where}: must not be empty or blank, got {name!r}")
    if len(name.encode("utf-8", "surrogatepass")) > MAX_RUN_NAME_BYTES:
        raise ConfigError(f"{where}: at most {MAX_RUN_NAME_BYTES} bytes (one folder name), got {_show(name)}")
    if not _printable(name):
        raise ConfigError(f"{where}: contains a control or non-printable character: {_show(name)}")
    if name != name.strip():
        raise ConfigError(f"{where}: has leading or trailing spaces: {name!r}")
    if "/" in name or "\\" in name:
        raise ConfigError(f"{where}: a run name is one folder name under runs/, not a path (no '/' or '\\'), got {name!r}")
    if name in (".", ".."):
        raise ConfigError(f"{where}: {name!r} is not a run name (it names a folder relative to runs/)")


def _check_word(word: str) -> str | None:
    """Why ``word`` cannot be a race or gender word of the variants (None: it can)."""
    if not word.strip():
        return "empty or blank"
    if len(word) > MAX_NAME_CHARS:
        return f"longer than {MAX_NAME_CHARS} characters"
    if not _printable(word):
        return "contains a control or non-printable character"
    if word != word.strip():
        return "has leading or trailing spaces"
    if "-" in word:
        return "contains '-', which separates race and gender in variant names such as 'White-Female'"
    if "/" in word or "\\" in word:
        return "contains '/' or '\\', which would nest the variant's datasets and files"
    if word.upper() == BASE:
        return f"{BASE!r} names the variant without demographic words"
    return None


def _check_text(where: str, value: str | None) -> None:
    """A path, model id or revision: printable, not blank, of a sane length."""
    if value is None:
        return
    if not value.strip():
        raise ConfigError(f"{where}: must not be empty or blank, got {value!r}")
    if len(value) > MAX_PATH_CHARS:
        raise ConfigError(f"{where}: at most {MAX_PATH_CHARS} characters, got {len(value)}: {_show(value)}")
    if not _printable(value):
        raise ConfigError(f"{where}: contains a control or non-printable character: {_show(value)}")


def _exists(path: Path, where: str, raw: str, kind: str = "any") -> bool:
    """``path`` exists (as a folder for ``kind="dir"``); OS errors become ConfigError."""
    try:
        return path.is_dir() if kind == "dir" else path.exists()
    except (OSError, ValueError) as err:
        raise ConfigError(f"{where}: cannot check {raw!r}: {_one_line(getattr(err, 'strerror', None) or err)}") from None


def _resolve(raw: str, base: Path, where: str) -> Path:
    """``raw`` with ``~`` expanded, absolute against ``base``; errors become ConfigError."""
    try:
        path = Path(raw).expanduser()
        return path if path.is_absolute() else (base / path).resolve()
    except (OSError, RuntimeError, ValueError) as err:
        raise ConfigError(f"{where}: cannot resolve {raw!r}: {_one_line(err)}") from None


def _unique_list(where: str, values: list[Any], what: str) -> None:
    if not values:
        raise ConfigError(f"{where}: must not be empty")
    dupes = sorted({repr(v) for v in values if values.count(v) > 1})
    if dupes:
        raise ConfigError(f"{where}: duplicate entries in {_show(values)} ({what} {', '.join(dupes)} more than once)")


def _check_values(cfg: Config, base_dir: Path) -> Config:
    """Checks beyond types: ranges, names, non-empty lists, files that must exist.

    Returns the config with its data paths resolved (``benchmark.path``,
    ``benchmark.data_dir``, ``masked.templates``, ``masked.corpus``): another object;
    the config given is left as it is.
    """
    b, x, pr, sc, ex = cfg.benchmark, cfg.extract, cfg.probes, cfg.scoring, cfg.explain
    _check_run_name("name", cfg.name)
    for where, seed in (
        ("seed", cfg.seed), ("benchmark.seed", b.seed), ("benchmark.mimic.seed", b.mimic.seed),
        ("probes.seed", pr.seed), ("scoring.seed", sc.seed), ("explain.seed", ex.seed),
    ):
        _int_range(where, seed, 0, MAX_SEED)

    # model
    m = cfg.model
    _check_text("model.name", m.name)
    _check_text("model.revision", m.revision)
    _check_text("model.cache_dir", m.cache_dir)
    _check_text("model.adapter", m.adapter)
    cue = m.answer_cue
    if not cue.strip() or cue != cue.strip() or len(cue) > MAX_CUE_CHARS or not _printable(cue):
        raise ConfigError(
            f"model.answer_cue: must be printable text of 1..{MAX_CUE_CHARS} characters without leading or trailing "
            f"spaces, got {_show(cue)}"
        )
    if m.name.startswith((".", "/", "~")) or "\\" in m.name:
        folder = _resolve(m.name, Path.cwd(), "model.name")
        if not _exists(folder, "model.name", m.name, "dir"):
            raise ConfigError(f"model.name: model directory not found: {m.name!r}")

    if not re.fullmatch(r"auto|cpu|cuda(:\d{1,3})?", m.device):
        raise ConfigError(f"model.device: expected auto, cpu, cuda or cuda:N, got {_show(m.device)}")
    if isinstance(m.device_map, str) and m.device_map not in ("auto", "balanced", "balanced_low_0", "sequential"):
        raise ConfigError(f"model.device_map: expected auto, balanced, balanced_low_0, sequential or a mapping, got {_show(m.device_map)}")
    if isinstance(m.device_map, dict):
        if not m.device_map:
            raise ConfigError("model.device_map: an explicit map must not be empty")
        for module, dev in m.device_map.items():
            ok = (isinstance(dev, int) and 0 <= dev < 1024) or (isinstance(dev, str) and re.fullmatch(r"cpu|disk|cuda(:\d{1,3})?|\d{1,3}", dev))
            if not ok:
                raise ConfigError(f"model.device_map.{module}: expected a GPU index, cuda:N, cpu or disk, got {_show(dev)}")

    # cluster
    c = cfg.cluster
    _int_range("cluster.shards", c.shards, 1, 10_000)
    _int_range("cluster.timeout_min", c.timeout_min, 1, 60 * 24 * 30)
    _int_range("cluster.gpus_per_shard", c.gpus_per_shard, 0, 64)
    _int_range("cluster.cpus_per_shard", c.cpus_per_shard, 1, 1024)
    _int_range("cluster.array_parallelism", c.array_parallelism, 1, 10_000, null="every shard at once")
    if not (0.1 <= c.poll_s <= 3600) or c.poll_s != c.poll_s:
        raise ConfigError(f"cluster.poll_s: must lie in 0.1..3600 seconds, got {_show(c.poll_s)}")
    for key in ("partition", "account", "job_name"):
        _check_text(f"cluster.{key}", getattr(c, key))
    for key, value in c.sbatch_extra.items():
        if not re.fullmatch(r"[a-z][a-z0-9_-]{0,40}", key) or any(ch in value for ch in "\n\r\0"):
            raise ConfigError(f"cluster.sbatch_extra.{key}: expected an sbatch option name and a one-line value, got {_show(value)}")

    # extract
    _int_range("extract.batch_size", x.batch_size, 1, 4096)
    _int_range("extract.threads", x.threads, 1, 1024, null="torch's default")
    _int_range("extract.batch_check", x.batch_check, 0, 100_000)
    for key, allowed in (("sites", SITES), ("positions", POSITIONS)):
        values = getattr(x, key)
        if not values or len(set(values)) != len(values):
            raise ConfigError(f"extract.{key}: must be a non-empty list without duplicates, got {_show(values)}")
        for v in values:
            if v not in allowed:
                raise ConfigError(f"extract.{key}: unknown {key[:-1]} {_show(v)} (allowed: {', '.join(allowed)})")
    if "resid_post" not in x.sites:
        raise ConfigError(f"extract.sites: must include 'resid_post', got {x.sites!r}")
    if "last" not in x.positions:
        raise ConfigError(f"extract.positions: must include 'last', got {x.positions!r}")

    # sweep
    if cfg.sweep is not None:
        sw = cfg.sweep
        for i, name in enumerate(sw.models):
            _check_text(f"sweep.models[{i}]", name)
        if sw.models:
            _unique_list("sweep.models", sw.models, "model")
        if not sw.precisions:
            raise ConfigError("sweep.precisions: must not be empty")
        for p in sw.precisions:
            if p not in PRECISIONS and not (p.startswith("gguf:") and len(p) > 5):
                raise ConfigError(f"sweep.precisions: unknown precision {_show(p)} (allowed: {', '.join(PRECISIONS)}, gguf:<file>)")
            _check_text("sweep.precisions", p)
        _unique_list("sweep.precisions", sw.precisions, "precision")
        if sw.reference is not None and sw.reference not in sw.precisions:
            raise ConfigError(f"sweep.reference: {_show(sw.reference)} is not one of sweep.precisions {_show(sw.precisions)}")
        if not sw.adapters:
            raise ConfigError("sweep.adapters: must not be empty (use [null] for no adapter)")
        for i, a in enumerate(sw.adapters):
            _check_text(f"sweep.adapters[{i}]", a)
        _unique_list("sweep.adapters", sw.adapters, "adapter")

    # probes and scoring
    _int_range("probes.n_folds", pr.n_folds, 2, 100)
    _int_range("probes.bootstrap", pr.bootstrap, 0, 100_000)
    _int_range("probes.value_axis_layer", pr.value_axis_layer, 0, MAX_LAYER, null="the best held-out layer")
    if not (math.isfinite(sc.alpha) and 0 < sc.alpha < 1):
        raise ConfigError(f"scoring.alpha: must lie in (0, 1), got {_show(sc.alpha)}")
    _int_range("scoring.bootstrap", sc.bootstrap, 0, 100_000)
    _int_range("scoring.permutations", sc.permutations, 0, 100_000)
    for key, lo, hi in (("ci_level", 0.5, 0.999), ("equivalence_margin", 1e-6, 0.5), ("option_mass_threshold", 0.0, 1.0), ("min_option_mass", 0.0, 1.0),
                        ("association_margin", 0.0, 100.0)):
        value = getattr(sc, key)
        if not (lo <= value <= hi):  # NaN fails too
            raise ConfigError(f"scoring.{key}: must lie in {lo}..{hi}, got {_show(value)}")
    _check_text("scoring.correction", sc.correction)
    _check_correction(sc.correction, "scoring.correction")

    # benchmark
    _int_range("benchmark.n_cases", b.n_cases, 1, 1_000_000, null="every case of the source")
    _int_range("benchmark.few_shot", b.few_shot, 0, MAX_FEW_SHOT)
    if not _printable(b.system_message, "\n\t"):
        raise ConfigError(f"benchmark.system_message: contains a control character: {_show(b.system_message)}")
    if len(b.system_message) > MAX_SYSTEM_CHARS:
        raise ConfigError(f"benchmark.system_message: at most {MAX_SYSTEM_CHARS} characters, got {len(b.system_message)}")
    if not b.tiers:
        raise ConfigError("benchmark.tiers: must not be empty")
    for tier in b.tiers:
        if tier not in TIERS:
            raise ConfigError(f"benchmark.tiers: unknown tier {_show(tier)} (allowed: {', '.join(TIERS)})")
    if len(set(b.tiers)) != len(b.tiers):
        raise ConfigError(f"benchmark.tiers: duplicate entries in {b.tiers!r}")
    for key, what in (("races", "race"), ("genders", "gender")):
        values = getattr(b, key)
        if not values:
            raise ConfigError(f"benchmark.{key}: must not be empty")
        for v in values:
            why = _check_word(v)
            if why:
                raise ConfigError(f"benchmark.{key}: invalid name {_show(v)} ({why})")
        if len({v.casefold() for v in values}) != len(values):
            raise ConfigError(f"benchmark.{key}: duplicate entries in {_show(values)} (compared ignoring case)")
        if len(values) < 2:
            raise ConfigError(
                f"benchmark.{key}: need at least 2 {what}s, got {_show(values)} (the {what} probe needs two classes, "
                f"and the scores compare BASE with at least 2 race x gender groups)"
            )
    _check_text("benchmark.path", b.path)
    _check_text("benchmark.data_dir", b.data_dir)
    mo = b.mimic
    fr = mo.split_fractions
    if len(fr) != 3 or not all(math.isfinite(f) and f >= 0 for f in fr) or abs(sum(fr) - 1) > 1e-6:
        raise ConfigError(f"benchmark.mimic.split_fractions: need three non-negative fractions summing to 1, got {_show(fr)}")
    _int_range("benchmark.mimic.max_diagnoses", mo.max_diagnoses, 1, 100)
    _int_range("benchmark.mimic.max_icd_codes", mo.max_icd_codes, 2, 100_000)
    if b.source in ("mimic_ed_demo", "qpain", "csv"):
        if b.path is None:
            raise ConfigError(f"benchmark.path: required for source {b.source!r}")
        path = _resolve(b.path, base_dir, "benchmark.path")
        if not _exists(path, "benchmark.path", b.path):
            raise ConfigError(f"benchmark.path: file not found: {b.path!r} (resolved to {path})")
        b = dataclasses.replace(b, path=str(path))
    if b.source == "mimic":
        if b.task not in ("ed_triage", "opioid"):
            raise ConfigError(f"benchmark.task: source 'mimic' needs task ed_triage or opioid, got {b.task!r}")
        if b.data_dir is None:
            raise ConfigError("benchmark.data_dir: required for source 'mimic' (the MIMIC-IV root folder)")
        data_dir = _resolve(b.data_dir, base_dir, "benchmark.data_dir")
        if not _exists(data_dir, "benchmark.data_dir", b.data_dir, "dir"):
            raise ConfigError(f"benchmark.data_dir: folder not found: {b.data_dir!r}")
        b = dataclasses.replace(b, data_dir=str(data_dir))
    if b.source == "csv" and b.task is None:
        raise ConfigError("benchmark.task: required for source 'csv' (ed_triage, opioid or qpain)")

    # explain
    if ex.tiers is not None:
        if not ex.tiers:
            raise ConfigError("explain.tiers: must not be empty (null: the first benchmark tier)")
        for tier in ex.tiers:
            if tier not in b.tiers:
                raise ConfigError(f"explain.tiers: {_show(tier)} is not one of benchmark.tiers ({', '.join(b.tiers)})")
        if len(set(ex.tiers)) != len(ex.tiers):
            raise ConfigError(f"explain.tiers: duplicate entries in {ex.tiers!r}")
    _check_layer_list("explain.layers", ex.layers, "every fourth layer plus the value-axis layer")
    if not ex.alphas:
        raise ConfigError("explain.alphas: must not be empty")
    for i, a in enumerate(ex.alphas):
        if not (math.isfinite(a) and abs(a) <= MAX_ALPHA):
            raise ConfigError(f"explain.alphas[{i}]: must be a finite number in -{MAX_ALPHA:g}..{MAX_ALPHA:g}, got {_show(a)}")
    _int_range("explain.max_cases", ex.max_cases, 2, 100_000, null="every case")
    _int_range("explain.trace_cases", ex.trace_cases, 0, 100_000)
    _check_layer_list("explain.trace_layers", ex.trace_layers, "every layer")
    if not (math.isfinite(ex.prefix_memory_gb) and 0 <= ex.prefix_memory_gb <= 1e6):
        raise ConfigError(f"explain.prefix_memory_gb: must be a number in 0..1e6 (GiB), got {_show(ex.prefix_memory_gb)}")
    _check_components(ex.components)

    masked = None if cfg.masked is None else _check_masked(cfg.masked, base_dir)
    if cfg.extract.backend not in BACKEND_RUNNERS:
        raise ConfigError(f"extract.backend: expected one of {', '.join(repr(b) for b in BACKEND_RUNNERS)}, got {_show(cfg.extract.backend)}")
    if cfg.model.kind == "masked" and cfg.extract.backend != "hf":
        raise ConfigError(f"extract.backend: a masked model runs with the 'hf' backend only, got {cfg.extract.backend!r}")
    if cfg.model.kind == "masked" and cfg.model.attn_implementation == "batch_invariant":
        raise ConfigError("model.attn_implementation: 'batch_invariant' is for causal models (masked models attend both ways)")
    return dataclasses.replace(cfg, benchmark=b, masked=masked)


def _check_layer_list(key: str, layers: list[int] | None, null_means: str) -> None:
    """``layers`` is null or a non-empty list of distinct layer indices in 0..MAX_LAYER."""
    if layers is None:
        return
    if not layers:
        raise ConfigError(f"{key}: must not be empty (null: {null_means})")
    for i, layer in enumerate(layers):
        _int_range(f"{key}[{i}]", layer, 0, MAX_LAYER)
    if len(set(layers)) != len(layers):
        raise ConfigError(f"{key}: duplicate entries in {_show(layers)}")


def _check_masked(mk: "MaskedConfig", base_dir: Path) -> "MaskedConfig":
    """The ``masked`` section: the template file exists, the target format has a slot, the corpus exists.

    Returns the section with the template file and the corpus resolved to absolute paths.
    """
    _check_text("masked.templates", mk.templates)
    if mk.templates != "clinical":
        if not mk.templates.lower().endswith((".yaml", ".yml", ".csv")):
            raise ConfigError(f"masked.templates: expected 'clinical' or a .yaml, .yml or .csv file, got {_show(mk.templates)}")
        path = _resolve(mk.templates, base_dir, "masked.templates")
        if not path.is_file():
            path = _resolve(mk.templates, Path.cwd(), "masked.templates")
        if not _exists(path, "masked.templates", mk.templates) or path.is_dir():
            raise ConfigError(f"masked.templates: file not found: {mk.templates!r} (resolved to {path})")
        mk = dataclasses.replace(mk, templates=str(path))
    if mk.categories is not None:
        _unique_list("masked.categories", mk.categories, "category")
    _int_range("masked.n_templates", mk.n_templates, 2, 1_000_000, null="every template")
    fmt = mk.target_format
    if not fmt.strip() or not _printable(fmt) or len(fmt) > MAX_NAME_CHARS:
        raise ConfigError(f"masked.target_format: expected one printable line of at most {MAX_NAME_CHARS} characters, got {_show(fmt)}")
    slots = set(re.findall(r"\{(\w*)\}", fmt))
    allowed = {"race", "gender", "race_lower", "gender_lower"}
    if slots - allowed or re.sub(r"\{\w*\}", "", fmt).count("{") or re.sub(r"\{\w*\}", "", fmt).count("}"):
        raise ConfigError(f"masked.target_format: only {{race}}, {{gender}}, {{race_lower}}, {{gender_lower}} may appear, got {_show(fmt)}")
    if not slots & {"race", "race_lower"} or not slots & {"gender", "gender_lower"}:
        raise ConfigError(f"masked.target_format: needs a race slot and a gender slot (e.g. '{{race}} {{gender_lower}}'), got {_show(fmt)}")
    _check_text("masked.corpus", mk.corpus)
    _check_text("masked.corpus_column", mk.corpus_column)
    if mk.corpus is not None:
        path = _resolve(mk.corpus, base_dir, "masked.corpus")
        if not _exists(path, "masked.corpus", mk.corpus):
            path = _resolve(mk.corpus, Path.cwd(), "masked.corpus")
        if not _exists(path, "masked.corpus", mk.corpus):
            raise ConfigError(f"masked.corpus: file or folder not found: {mk.corpus!r} (resolved to {path})")
        if not path.is_dir() and not mk.corpus.lower().endswith(".csv"):
            raise ConfigError(f"masked.corpus: expected a folder of .txt files or a .csv file, got {_show(mk.corpus)}")
        mk = dataclasses.replace(mk, corpus=str(path))
    if mk.corpus_column is not None and (mk.corpus is None or not mk.corpus.lower().endswith(".csv")):
        raise ConfigError("masked.corpus_column: only for a .csv masked.corpus")
    return mk


def check_against_model(cfg: Config, n_layers: int, *, source: str | None = None) -> None:
    """Refuse layer indices the model does not have (``n_layers`` blocks: 0 .. n_layers - 1).

    Checks ``probes.value_axis_layer`` and ``explain.layers``; call it once the
    model's depth is known (before extraction). ``source`` (e.g. the config file)
    prefixes the message as :func:`load_config` does.
    """
    if isinstance(n_layers, bool) or not isinstance(n_layers, int) or n_layers < 1:
        raise ValueError(f"n_layers: expected a positive int, got {n_layers!r}")
    prefix = f"{source}: " if source else ""
    model = f"the model {cfg.model.name!r} has {n_layers} layer{'s' if n_layers != 1 else ''}"
    layer = cfg.probes.value_axis_layer
    if layer is not None and not 0 <= layer < n_layers:
        raise ConfigError(f"{prefix}probes.value_axis_layer: must lie in 0..{n_layers - 1} ({model}), got {layer}")
    for key in ("layers", "trace_layers"):
        bad = [v for v in getattr(cfg.explain, key) or [] if not 0 <= v < n_layers]
        if bad:
            raise ConfigError(f"{prefix}explain.{key}: {_show(bad)} out of range 0..{n_layers - 1} ({model})")


def _check_correction(method: str, where: str) -> None:
    from .corrections import check_correction

    try:
        check_correction(method)
    except ValueError:
        raise ConfigError(f"{where}: unknown correction method {_show(method)} (use none, holm, bonferroni, fdr_bh, ...)") from None


# --------------------------------------------------------------------------- YAML


class _ConfigLoader(yaml.SafeLoader):
    """PyYAML's safe loader, refusing a key given twice in one mapping."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        if isinstance(node, yaml.MappingNode):
            seen: set[Any] = set()
            for key_node, _ in node.value:
                if not isinstance(key_node, yaml.ScalarNode) or key_node.tag == "tag:yaml.org,2002:merge":
                    continue
                key = self.construct_object(key_node, deep=False)
                try:
                    dup = key in seen
                except TypeError:
                    continue
                if dup:
                    raise yaml.constructor.ConstructorError(
                        "while constructing a mapping", node.start_mark, f"duplicate key {_show(key, 60)}", key_node.start_mark
                    )
                seen.add(key)
        return super().construct_mapping(node, deep=deep)


def _parse_yaml(text: str, where: str) -> Any:
    """``text`` parsed as YAML; any failure is a one-line ConfigError prefixed with ``where``."""
    try:
        return yaml.load(text, Loader=_ConfigLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.MarkedYAMLError as err:
        mark = err.problem_mark or err.context_mark
        at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = err.problem or err.context or "syntax error"
        raise ConfigError(f"{where}: not valid YAML{at}: {_one_line(problem)}") from None
    except yaml.reader.ReaderError as err:  # a character YAML does not allow
        char = err.character if isinstance(err.character, int) else ord(str(err.character)[:1] or "\0")
        line = text[: err.position].count("\n") + 1
        raise ConfigError(
            f"{where}: not valid YAML at line {line}: character #x{char:04x} is not allowed (no control characters)"
        ) from None
    except yaml.YAMLError as err:
        raise ConfigError(f"{where}: not valid YAML: {_one_line(err)}") from None
    except RecursionError:
        raise ConfigError(f"{where}: not a usable config: nested too deeply (a config needs 4 levels)") from None
    except (ValueError, TypeError, OverflowError) as err:  # a scalar PyYAML cannot build (huge int, bad date)
        raise ConfigError(f"{where}: not valid YAML: {_one_line(err)}") from None


def _read_config_text(path: Path) -> str:
    """The config file's text: a regular UTF-8 file of at most MAX_CONFIG_BYTES."""
    where = _file_name(path)
    try:
        st = path.stat()
    except FileNotFoundError:
        raise ConfigError(f"{where}: config file not found") from None
    except (OSError, ValueError) as err:
        raise ConfigError(f"{where}: config file not found or unreadable: {_one_line(getattr(err, 'strerror', None) or err)}") from None
    if stat.S_ISDIR(st.st_mode):
        raise ConfigError(f"{where}: is a folder, not a config file")
    if not stat.S_ISREG(st.st_mode):
        raise ConfigError(f"{where}: not a regular file")
    too_big = f"{where}: config file larger than {MAX_CONFIG_BYTES} bytes (1 MiB); a config needs a few hundred"
    if st.st_size > MAX_CONFIG_BYTES:
        raise ConfigError(f"{too_big}, got {st.st_size}")
    try:
        with path.open("rb") as fh:
            raw = fh.read(MAX_CONFIG_BYTES + 1)
    except OSError as err:
        raise ConfigError(f"{where}: cannot read the config file: {_one_line(err.strerror or err)}") from None
    if len(raw) > MAX_CONFIG_BYTES:
        raise ConfigError(too_big)
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        line = raw[: err.start].count(b"\n") + 1
        raise ConfigError(
            f"{where}: not UTF-8 text (byte 0x{raw[err.start]:02x} at line {line}, offset {err.start}); "
            "the config file must be UTF-8"
        ) from None


def _file_name(path: Path) -> str:
    """``path`` for a message: as given, or its repr when it holds control characters."""
    text = str(path)
    return text if text.isprintable() else repr(text)


def _kind(value: Any) -> str:
    if isinstance(value, list):
        return "a list"
    if isinstance(value, str):
        return f"the text {_show(value, 60)}"
    return f"{type(value).__name__} {_show(value, 60)}"


# --------------------------------------------------------------------------- entry points


def set_dotted(data: dict[str, Any], assignment: str) -> None:
    """Apply one ``key.path=value`` override (the value is parsed as YAML).

    The key path must name a key of the schema (``extract.batch_size``); a value that
    is not valid YAML is taken as the text itself.
    """
    shown = _show(assignment, 100)
    if not isinstance(assignment, str) or "=" not in assignment:
        raise ConfigError(f"--set {shown}: expected KEY=VALUE, e.g. extract.batch_size=4")
    key, raw = assignment.split("=", 1)
    parts = [p.strip() for p in key.strip().split(".")]
    if not all(parts):
        raise ConfigError(f"--set {shown}: empty key path (expected KEY=VALUE, e.g. extract.batch_size=4)")
    cls: type = Config
    for i, part in enumerate(parts):
        hints = typing.get_type_hints(cls)
        names = [f.name for f in dataclasses.fields(cls)]
        here = ".".join(_key_text(p) for p in parts[: i + 1])
        if part not in names:
            raise ConfigError(f"--set {shown}: unknown key {_one_line(here, 100)} (allowed: {', '.join(sorted(names))})")
        if i < len(parts) - 1:
            section = _section_type(hints[part])
            if section is None:
                raise ConfigError(f"--set {shown}: {here} is not a section (it takes {_type_name(hints[part])})")
            cls = section
    try:
        value = yaml.load(raw, Loader=_ConfigLoader) if raw.strip() else ""  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError:
        value = raw
    except RecursionError:
        raise ConfigError(f"--set {shown}: the value is nested too deeply") from None
    except (ValueError, TypeError, OverflowError) as err:
        raise ConfigError(f"--set {shown}: the value is not valid YAML: {_one_line(err)}") from None
    _check_structure(value, ".".join(parts))
    node = data
    for i, part in enumerate(parts[:-1]):
        child = node.get(part)
        if child is None:
            child = node[part] = {}
        if not isinstance(child, dict):
            raise ConfigError(f"--set {shown}: {'.'.join(parts[: i + 1])} in the config is not a mapping, got {_show(child, 60)}")
        node = child
    node[parts[-1]] = value


def config_from_dict(data: dict[str, Any], base_dir: Path, source: str = "config") -> Config:
    """Validate a mapping into a :class:`Config`; errors are prefixed with ``source``."""
    try:
        if not isinstance(data, dict):
            raise ConfigError(f"expected a mapping of sections at the top level, got {_kind(data)}")
        _check_structure(data)
        cfg = _check_values(_build(Config, data, ""), base_dir)
    except ConfigError as err:
        raise ConfigError(f"{source}: {err}") from None
    return cfg


def load_config(path: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> Config:
    """Read, override and validate a YAML config.

    ``path`` may also name a shipped config (``ed_triage_demo``, see
    :func:`~latent_bias_probe.configs.resources.shipped_config_names`) when no such
    file exists. Relative data paths are resolved against the config file's folder,
    then the current directory. Every failure is a :class:`ConfigError` naming the file.
    """
    path = Path(path)
    shipped = shipped_config(str(path)) if not path.exists() else None
    if shipped is not None:  # a shipped config named without its folder: `probe run ed_triage_demo`
        path = shipped
    where = _file_name(path)
    data = _parse_yaml(_read_config_text(path), where)
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected a mapping of sections at the top level, got {_kind(data)}")
    try:
        _check_structure(data)
        for assignment in overrides:
            set_dotted(data, assignment)
    except ConfigError as err:
        raise ConfigError(f"{where}: {err}") from None
    base_dir = _data_base_dir(path, data)
    cfg = config_from_dict(data, base_dir, where)
    if len(cfg.name) > MAX_NAME_CHARS:  # saved configs may hold longer derived names (sweep items)
        raise ConfigError(f"{where}: name: at most {MAX_NAME_CHARS} characters, got {len(cfg.name)}: {_show(cfg.name)}")
    return cfg


def _data_base_dir(path: Path, data: dict[str, Any]) -> Path:
    """The folder relative data paths are resolved against.

    Paths in the shipped configs are written relative to the project root (the
    parent of ``configs/``); other configs resolve against the current directory
    when the path exists there, else against the config's own folder.
    """
    bench = data.get("benchmark") if isinstance(data.get("benchmark"), dict) else {}
    masked = data.get("masked") if isinstance(data.get("masked"), dict) else {}
    rels = [bench.get("path"), masked.get("corpus"), masked.get("templates")]  # the first one given decides
    rel = next((r for r in rels if isinstance(r, str) and r and r != "clinical"), None)
    try:
        candidates = [Path.cwd(), path.resolve().parent, path.resolve().parent.parent]
        if isinstance(rel, str) and rel and len(rel) <= MAX_PATH_CHARS:
            for c in candidates:
                if (c / rel).exists():
                    return c
    except (OSError, RuntimeError, ValueError):
        pass  # the path is checked, with a message, by _check_values
    return Path.cwd()
