"""The job configuration: typed sections, defaults, and validation at the boundary.

A config is a YAML mapping with the sections below. Every key is optional except
``benchmark.source``; unknown keys, wrong types and missing files are refused with a
:class:`ConfigError` naming the file, the dotted key path and the offending value.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Union, get_args, get_origin

import yaml

from configs.errors import InputError


SITES = ("resid_post", "attn_out", "mlp_out")
POSITIONS = ("last", "demographic")


class ConfigError(InputError, ValueError):
    """A configuration value is invalid; the message names file, key and value."""


@dataclass
class ModelConfig:
    """Which model to run and how."""

    name: str = "smollm2-135m-instruct"  # the embedded default, a Hugging Face id, or a local directory
    dtype: Literal["float32", "bfloat16"] = "float32"
    trust_remote_code: bool = False
    revision: str | None = None
    cache_dir: str | None = None  # where converted copies of the embedded model live
    quantization: Literal["none", "int8", "bnb-8bit", "bnb-4bit"] = "none"
    adapter: str | None = None  # a PEFT LoRA directory applied to the model


@dataclass
class MimicOptions:
    """The numeric choices of the MIMIC-IV benchmark builders (mimic-benchmarks.md)."""

    seed: int = 42
    balance_race: bool = True
    balance_labels: bool = True  # opioid: equal YES and NO
    split_fractions: list[float] = field(default_factory=lambda: [0.8, 0.05, 0.15])
    max_diagnoses: int = 4  # ED: diagnoses with seq_num < 5
    max_icd_codes: int = 15  # opioid: keep admissions with fewer ICD codes than this


@dataclass
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
    tiers: list[str] = field(default_factory=lambda: ["high", "medium", "low"])
    races: list[str] = field(default_factory=lambda: ["White", "Black", "Hispanic", "Asian"])
    genders: list[str] = field(default_factory=lambda: ["Female", "Male", "Intersex"])
    descent_word: Literal["descent", "decent"] = "descent"
    system_message: str = "Answer only in Yes or No."
    # collapse: cases that render identically at a tier count once (a tier where all
    # do is dropped); keep: render every case as it is (the published protocol)
    duplicates: Literal["collapse", "keep"] = "collapse"


@dataclass
class ExtractConfig:
    """Model inference."""

    batch_size: int = 8
    backend: Literal["hf", "transformer_lens", "nnsight"] = "hf"
    sites: list[str] = field(default_factory=lambda: ["resid_post"])
    positions: list[str] = field(default_factory=lambda: ["last"])
    storage_dtype: Literal["float32", "float16"] = "float32"
    threads: int | None = None  # torch intra-op threads; None: torch's default
    batch_check: int = 24  # prompts re-run alone to measure batch dependence (batch_check.json); 0: off


@dataclass
class ProbesConfig:
    """Linear probes, steering vectors and the value axis (mfarm-spec.md Part B)."""

    n_folds: int = 5
    bootstrap: int = 1000
    seed: int = 0
    value_axis_target: Literal["model", "label"] = "model"
    value_axis_layer: int | None = None  # None: the layer with the best held-out AUROC


@dataclass
class ScoringConfig:
    """mFARM scoring (mfarm-spec.md Parts A and C)."""

    alpha: float = 0.05
    correction: str = "holm"
    accuracy: Literal["threshold", "l1"] = "threshold"
    bootstrap: int = 1000
    seed: int = 0


@dataclass
class ExplainConfig:
    """Causal explanations (mfarm-spec.md B3): steering dose-response and LEACE mediation."""

    tiers: list[str] | None = None  # None: the first benchmark tier
    layers: list[int] | None = None  # None: every fourth layer plus the value-axis layer
    alphas: list[float] = field(default_factory=lambda: [-8.0, -4.0, -2.0, 0.0, 2.0, 4.0, 8.0])
    max_cases: int | None = 30  # cases used for interventions (each re-runs the model); None: all
    seed: int = 0


@dataclass
class SweepConfig:
    """A grid of runs: every model x precision x adapter combination."""

    models: list[str] = field(default_factory=list)  # default: [model.name]
    precisions: list[str] = field(default_factory=lambda: ["float32"])
    adapters: list[str | None] = field(default_factory=lambda: [None])  # PEFT LoRA directories; null = none


@dataclass
class Config:
    """A whole job."""

    name: str = "job"
    seed: int = 0
    model: ModelConfig = field(default_factory=ModelConfig)
    benchmark: BenchmarkConfig = field(default_factory=BenchmarkConfig)
    extract: ExtractConfig = field(default_factory=ExtractConfig)
    scoring: ScoringConfig = field(default_factory=ScoringConfig)
    probes: ProbesConfig = field(default_factory=ProbesConfig)
    explain: ExplainConfig = field(default_factory=ExplainConfig)
    sweep: SweepConfig | None = None

    def to_dict(self) -> dict[str, Any]:
        """The config as plain JSON-able data (what results.json records)."""
        return dataclasses.asdict(self)

    def sha256(self) -> str:
        """A stable hash of the config, for provenance and cache identity."""
        blob = json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(blob.encode()).hexdigest()


def _type_name(tp: Any) -> str:
    origin = get_origin(tp)
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in get_args(tp))
    if origin in (Union, types.UnionType):
        return " or ".join(_type_name(a) for a in get_args(tp))
    if origin is list:
        return f"list of {_type_name(get_args(tp)[0])}"
    if tp is type(None):
        return "null"
    return getattr(tp, "__name__", str(tp))


def _coerce(value: Any, tp: Any, where: str) -> Any:
    """Check ``value`` against the annotation ``tp``; return it (ints widen to float)."""
    origin = get_origin(tp)
    if origin in (Union, types.UnionType):
        for arm in get_args(tp):
            try:
                return _coerce(value, arm, where)
            except ConfigError:
                continue
        raise ConfigError(f"{where}: expected {_type_name(tp)}, got {value!r}")
    if origin is Literal:
        if value in get_args(tp):
            return value
        raise ConfigError(f"{where}: expected {_type_name(tp)}, got {value!r}")
    if origin is list:
        if not isinstance(value, list):
            raise ConfigError(f"{where}: expected {_type_name(tp)}, got {value!r}")
        (item,) = get_args(tp)
        return [_coerce(v, item, f"{where}[{i}]") for i, v in enumerate(value)]
    if tp is type(None):
        if value is None:
            return None
        raise ConfigError(f"{where}: expected null, got {value!r}")
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
            return float(value)
    elif tp is str:
        if isinstance(value, str):
            return value
    else:  # pragma: no cover - schema error, not user error
        raise TypeError(f"unsupported annotation {tp!r}")
    raise ConfigError(f"{where}: expected {_type_name(tp)}, got {value!r}")


def _build(cls: type, data: Any, where: str) -> Any:
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{where or 'config'}: expected a mapping, got {data!r}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    for key in data:
        if key not in names:
            path = f"{where}.{key}" if where else str(key)
            raise ConfigError(f"{path}: unknown key (allowed: {', '.join(sorted(names))})")
    kwargs = {}
    for name in names:
        if name in data:
            path = f"{where}.{name}" if where else name
            kwargs[name] = _coerce(data[name], hints[name], path)
    return cls(**kwargs)


def _check_values(cfg: Config, base_dir: Path) -> None:
    """Checks beyond types: ranges, non-empty lists, files that must exist."""
    b = cfg.benchmark
    if cfg.extract.batch_size < 1:
        raise ConfigError(f"extract.batch_size: must be >= 1, got {cfg.extract.batch_size}")
    if cfg.extract.batch_check < 0:
        raise ConfigError(f"extract.batch_check: must be >= 0, got {cfg.extract.batch_check}")
    if cfg.extract.threads is not None and cfg.extract.threads < 1:
        raise ConfigError(f"extract.threads: must be >= 1, got {cfg.extract.threads}")
    for key, allowed in (("sites", SITES), ("positions", POSITIONS)):
        values = getattr(cfg.extract, key)
        if not values or len(set(values)) != len(values):
            raise ConfigError(f"extract.{key}: must be a non-empty list without duplicates, got {values!r}")
        for v in values:
            if v not in allowed:
                raise ConfigError(f"extract.{key}: unknown {key[:-1]} {v!r} (allowed: {', '.join(allowed)})")
    if "resid_post" not in cfg.extract.sites:
        raise ConfigError(f"extract.sites: must include 'resid_post', got {cfg.extract.sites!r}")
    if "last" not in cfg.extract.positions:
        raise ConfigError(f"extract.positions: must include 'last', got {cfg.extract.positions!r}")
    if cfg.sweep is not None:
        allowed = ("float32", "bfloat16", "int8", "bnb-8bit", "bnb-4bit", "gguf")
        if not cfg.sweep.precisions:
            raise ConfigError("sweep.precisions: must not be empty")
        for p in cfg.sweep.precisions:
            if p not in allowed and not p.startswith("gguf:"):
                raise ConfigError(f"sweep.precisions: unknown precision {p!r} (allowed: {', '.join(allowed)}, gguf:<file>)")
        if not cfg.sweep.adapters:
            raise ConfigError("sweep.adapters: must not be empty (use [null] for no adapter)")
    if cfg.explain.max_cases is not None and cfg.explain.max_cases < 2:
        raise ConfigError(f"explain.max_cases: must be >= 2, got {cfg.explain.max_cases}")
    if not cfg.explain.alphas:
        raise ConfigError("explain.alphas: must not be empty")
    if cfg.probes.n_folds < 2:
        raise ConfigError(f"probes.n_folds: must be >= 2, got {cfg.probes.n_folds}")
    if cfg.probes.bootstrap < 0:
        raise ConfigError(f"probes.bootstrap: must be >= 0, got {cfg.probes.bootstrap}")
    if b.n_cases is not None and b.n_cases < 1:
        raise ConfigError(f"benchmark.n_cases: must be >= 1, got {b.n_cases}")
    if not 0 < cfg.scoring.alpha < 1:
        raise ConfigError(f"scoring.alpha: must lie in (0, 1), got {cfg.scoring.alpha}")
    if cfg.scoring.bootstrap < 0:
        raise ConfigError(f"scoring.bootstrap: must be >= 0, got {cfg.scoring.bootstrap}")
    _check_correction(cfg.scoring.correction, "scoring.correction")
    for key in ("tiers", "races", "genders"):
        values = getattr(b, key)
        if not values:
            raise ConfigError(f"benchmark.{key}: must not be empty")
        if len(set(values)) != len(values):
            raise ConfigError(f"benchmark.{key}: duplicate entries in {values!r}")
    for tier in b.tiers:
        if tier not in ("high", "medium", "low"):
            raise ConfigError(f"benchmark.tiers: unknown tier {tier!r} (allowed: high, medium, low)")
    if len(b.races) * len(b.genders) < 2:
        raise ConfigError("benchmark.races: races x genders must give at least 2 variants")
    for key in ("races", "genders"):
        for v in getattr(b, key):
            if not v or "-" in v or v.upper() == "BASE":
                raise ConfigError(f"benchmark.{key}: invalid name {v!r} (no '-', not BASE)")
    if b.source in ("mimic_ed_demo", "qpain", "csv"):
        if b.path is None:
            raise ConfigError(f"benchmark.path: required for source {b.source!r}")
        path = Path(b.path)
        if not path.is_absolute():
            path = (base_dir / path).resolve()
        if not path.exists():
            raise ConfigError(f"benchmark.path: file not found: {b.path!r} (resolved to {path})")
        b.path = str(path)
    name = cfg.model.name
    if name.startswith((".", "/", "~")) or "\\" in name:
        folder = Path(name).expanduser()
        if not folder.is_absolute():
            folder = (Path.cwd() / folder).resolve()
        if not folder.is_dir():
            raise ConfigError(f"model.name: model directory not found: {name!r}")
    if b.source == "mimic":
        if b.task not in ("ed_triage", "opioid"):
            raise ConfigError(f"benchmark.task: source 'mimic' needs task ed_triage or opioid, got {b.task!r}")
        if b.data_dir is None:
            raise ConfigError("benchmark.data_dir: required for source 'mimic' (the MIMIC-IV root folder)")
        data_dir = Path(b.data_dir).expanduser()
        if not data_dir.is_absolute():
            data_dir = (base_dir / data_dir).resolve()
        if not data_dir.is_dir():
            raise ConfigError(f"benchmark.data_dir: folder not found: {b.data_dir!r}")
        b.data_dir = str(data_dir)
        fr = b.mimic.split_fractions
        if len(fr) != 3 or any(f < 0 for f in fr) or abs(sum(fr) - 1) > 1e-6:
            raise ConfigError(f"benchmark.mimic.split_fractions: need three non-negative fractions summing to 1, got {fr!r}")
    if b.source == "csv" and b.task is None:
        raise ConfigError("benchmark.task: required for source 'csv' (ed_triage, opioid or qpain)")


def _check_correction(method: str, where: str) -> None:
    from mfarm.stats import check_correction

    try:
        check_correction(method)
    except ValueError:
        raise ConfigError(f"{where}: unknown correction method {method!r} (use none, holm, bonferroni, fdr_bh, ...)") from None


def set_dotted(data: dict[str, Any], assignment: str) -> None:
    """Apply one ``key.path=value`` override (the value is parsed as YAML)."""
    if "=" not in assignment:
        raise ConfigError(f"--set {assignment!r}: expected key=value")
    key, raw = assignment.split("=", 1)
    parts = key.strip().split(".")
    if not all(parts):
        raise ConfigError(f"--set {assignment!r}: empty key path")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    node = data
    for part in parts[:-1]:
        child = node.get(part)
        if child is None:
            child = node[part] = {}
        if not isinstance(child, dict):
            raise ConfigError(f"--set {assignment!r}: {part} is not a section")
        node = child
    node[parts[-1]] = value


def config_from_dict(data: dict[str, Any], base_dir: Path, source: str = "config") -> Config:
    """Validate a mapping into a :class:`Config`; errors are prefixed with ``source``."""
    try:
        cfg = _build(Config, data, "")
        _check_values(cfg, base_dir)
    except ConfigError as err:
        raise ConfigError(f"{source}: {err}") from None
    return cfg


def load_config(path: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> Config:
    """Read, override and validate a YAML config.

    Relative data paths are resolved against the config file's folder, then the
    current directory.
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: config file not found")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" (line {mark.line + 1})" if mark else ""
        raise ConfigError(f"{path}: not valid YAML{where}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level")
    for assignment in overrides:
        try:
            set_dotted(data, assignment)
        except ConfigError as err:
            raise ConfigError(f"{path}: {err}") from None
    base_dir = _data_base_dir(path, data)
    return config_from_dict(data, base_dir, str(path))


def _data_base_dir(path: Path, data: dict[str, Any]) -> Path:
    """The folder relative data paths are resolved against.

    Paths in the shipped configs are written relative to the project root (the
    parent of ``configs/``); other configs resolve against the current directory
    when the path exists there, else against the config's own folder.
    """
    bench = data.get("benchmark") if isinstance(data.get("benchmark"), dict) else {}
    rel = bench.get("path") if isinstance(bench, dict) else None
    candidates = [Path.cwd(), path.resolve().parent, path.resolve().parent.parent]
    if isinstance(rel, str):
        for c in candidates:
            if (c / rel).exists():
                return c
    return Path.cwd()
