"""Sweeps: one run per model x precision x adapter, and one table over all of them.

A config with a ``sweep`` section (:class:`configs.schema.SweepConfig`) names models
(empty: ``[model.name]``), precisions and adapters. :func:`sweep_combinations` lists
every combination as a :class:`SweepItem` (models outermost, adapters innermost);
:func:`item_config` turns one into an ordinary job config; :func:`run_sweep` runs
each into ``OUT/<item name>/`` (an ordinary run directory) and writes
``OUT/sweep.csv`` (one row per combination and tier, :func:`~latent_bias_probe.report.sweep.sweep_columns`) and
``OUT/sweep.json`` (the sweep's config and its items).

Precisions (what :func:`item_config` sets in ``model``):

==============  =========================================================================
``float32``     ``dtype: float32``
``bfloat16``    ``dtype: bfloat16`` (weights and activations in bfloat16)
``int8``        ``dtype: float32, quantization: int8``: int8 linear layers on the CPU
                (``extract.precision.Int8Linear``; the output head stays float)
``bnb-8bit``    ``quantization: bnb-8bit``: bitsandbytes LLM.int8(), CUDA only
``bnb-4bit``    ``quantization: bnb-4bit``: bitsandbytes NF4, CUDA only
``gguf``        the model's own GGUF quantization, dequantized to float32. Only for a
                GGUF model: the embedded default (whose only weights are a Q4_1 GGUF,
                so its ``gguf`` *is* its ``float32``: both run the Q4_1 weights
                dequantized to float32 - see below) or a local folder holding exactly
                one ``*.gguf`` file. Any other model is refused.
``gguf:FILE``   the GGUF file ``FILE`` dequantized to float32 (converted once into the
                model cache, ``extract.model.gguf_model_dir``), e.g. a Q8_0 or
                Q4_K_M file of the sweep's model. The row's ``model`` stays the listed
                model; that ``FILE`` holds a quantization of it is up to the user.
==============  =========================================================================

The embedded default (SmolLM2-135M-Instruct) ships only as a Q4_1 GGUF, so for it
``float32`` means "the Q4_1 weights dequantized, computed in float32", ``bfloat16``
and ``int8`` start from those weights, and ``gguf`` is the same run as ``float32``
(a warning says so when both are listed). Comparing against the unquantized
original needs the original safetensors model (a Hugging Face id or folder).

Resuming: :func:`run_sweep` *skips* a combination whose run directory already holds
a ``results.json`` made from the same item config (equal ``config_sha256``) with
every configured tier; other combinations are handed to ``run_one``, which resumes
from the run directory's ``cache.h5`` (the ``probe run`` body does). ``rerun=True``
hands every combination to ``run_one``. ``sweep.csv`` is rewritten atomically after
each combination, so it always shows the finished ones.

Before anything runs, every combination is checked (quantization available here,
adapter folder is a LoRA, GGUF file exists), so a ``bnb-*`` precision on a machine
without CUDA fails at once with an ``InputError``, not after hours of other runs.
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import math
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Callable, Iterable

from latent_bias_probe.configs.errors import InputError
from latent_bias_probe.configs.schema import Config, SweepConfig
from latent_bias_probe.configs.files import atomic_path, atomic_write_text
from latent_bias_probe.configs.hashes import run_config_sha256
from latent_bias_probe.configs.names import PRECISIONS
from .artifacts import SweepDir
from .lock import run_lock
from latent_bias_probe.report.sweep import INT_COLUMNS, MODEL_DIFF_COLUMNS, optional_columns, result_rows, slug, sweep_columns

log = logging.getLogger(__name__)

#: precision -> (model.dtype, model.quantization), for the precisions that set only these
PRECISION_SETTINGS = {
    "float32": ("float32", "none"),
    "bfloat16": ("bfloat16", "none"),
    "int8": ("float32", "int8"),
    "bnb-8bit": ("float32", "bnb-8bit"),
    "bnb-4bit": ("float32", "bnb-4bit"),
}
CSV_NAME = "sweep.csv"
PLAN_NAME = "sweep.json"


class SweepError(InputError, ValueError):
    """A sweep that cannot be planned or read; the message names the value at fault."""


@dataclass(frozen=True)
class SweepItem:
    """One combination of a sweep; ``name`` is its run directory's name (unique, filesystem-safe)."""

    model: str
    precision: str
    adapter: str | None
    name: str


# --------------------------------------------------------------------------- planning


def _precision_slug(precision: str) -> str:
    if precision.startswith("gguf:"):
        return "gguf-" + slug(Path(precision[5:]).stem if precision.lower().endswith(".gguf") else precision[5:])
    return slug(precision)


def _unique_slugs(values: list[str], slugger: Callable[[str], str]) -> dict[str, str]:
    """Slug every distinct value; values whose slugs collide get a short hash appended."""
    slugs = {v: slugger(v) for v in dict.fromkeys(values)}
    counts: dict[str, int] = {}
    for s in slugs.values():
        counts[s.lower()] = counts.get(s.lower(), 0) + 1  # case-insensitive filesystems
    return {v: (s if counts[s.lower()] == 1 else f"{s}-{hashlib.sha256(v.encode()).hexdigest()[:6]}") for v, s in slugs.items()}


def _dedupe(values: list, what: str) -> list:
    out = list(dict.fromkeys(values))
    if len(out) < len(values):
        log.warning("sweep.%s: duplicate entries ignored (%s)", what, values)
    return out


def _folder_key(value: str) -> str:
    """The real path of a local folder (symlinks, ``..``, a trailing slash resolved), else ``value`` itself."""
    import os

    try:
        path = Path(value).expanduser()
        return os.path.realpath(path) if path.is_dir() else value
    except (OSError, RuntimeError, ValueError):
        return value


def _dedupe_folders(values: list, what: str) -> list:
    """``values`` without a second spelling of one local folder (relative, absolute, trailing slash, symlink).

    The first spelling is kept; a warning names the others, which would otherwise run
    the same model again under another name.
    """
    kept: dict[str, Any] = {}
    for v in values:
        key = _folder_key(v) if isinstance(v, str) else v
        if key in kept:
            if v != kept[key]:
                log.warning("sweep.%s: %r and %r are the same folder (%s); it runs once, as %r", what, kept[key], v, key, kept[key])
            continue
        kept[key] = v
    return list(kept.values())


def _check_precision(p: str) -> None:
    if p not in PRECISIONS and not (p.startswith("gguf:") and len(p) > 5):
        raise SweepError(f"sweep.precisions: unknown precision {p!r} (allowed: {', '.join(PRECISIONS)}, gguf:<file>)")


def sweep_combinations(cfg: Config) -> list[SweepItem]:
    """Every model x precision x adapter of ``cfg.sweep`` (models outermost), uniquely named.

    Names are ``<model>__<precision>__<adapter>`` from the last path component of each
    (``none`` without adapter; ``gguf-<file stem>`` for ``gguf:<file>``), restricted
    to ``[A-Za-z0-9._-]``; components that would collide get a short hash. Spellings
    of one local folder (relative, absolute, trailing slash, a symlink) count as one
    model or adapter (the first spelling is kept); beyond resolving those paths, no
    file is read (see :func:`check_sweep`).
    """
    sweep = cfg.sweep or SweepConfig()
    models = _dedupe_folders(_dedupe(list(sweep.models) or [cfg.model.name], "models"), "models")
    precisions = _dedupe(list(sweep.precisions), "precisions")
    adapters = _dedupe_folders(_dedupe(list(sweep.adapters), "adapters"), "adapters")
    if not precisions:
        raise SweepError("sweep.precisions: must not be empty")
    if not adapters:
        raise SweepError("sweep.adapters: must not be empty (use [null] for no adapter)")
    for p in precisions:
        _check_precision(p)
    model_slug = _unique_slugs(models, slug)
    prec_slug = _unique_slugs(precisions, _precision_slug)
    adapter_slug = _unique_slugs([a for a in adapters if a is not None], slug)
    if any(a is not None and adapter_slug[a].lower() == "none" for a in adapters):
        adapter_slug = {a: f"{s}-{hashlib.sha256(a.encode()).hexdigest()[:6]}" if s.lower() == "none" else s for a, s in adapter_slug.items()}
    from latent_bias_probe.extract.model import EMBEDDED

    for m in models:
        if m in EMBEDDED and "float32" in precisions and "gguf" in precisions:
            log.warning(
                "sweep: for the embedded %s, 'gguf' and 'float32' are the same run (its weights are a GGUF "
                "dequantized to float32)", m,
            )
    items = []
    for m in models:
        for p in precisions:
            for a in adapters:
                name = "__".join((model_slug[m], prec_slug[p], "none" if a is None else adapter_slug[a]))
                items.append(SweepItem(model=m, precision=p, adapter=a, name=name))
    return items


def _gguf_of_model(model: str, model_cfg) -> str | None:
    """For precision ``gguf``: the model name to load (the embedded name or a converted folder)."""
    from latent_bias_probe.extract.model import EMBEDDED

    if model in EMBEDDED:
        return model
    folder = Path(model).expanduser()
    if folder.is_dir():
        files = sorted(folder.glob("*.gguf"))
        if len(files) == 1:
            from latent_bias_probe.extract.model import gguf_model_dir

            return str(gguf_model_dir(files[0], model_cfg))
        if len(files) > 1:
            raise SweepError(
                f"sweep: precision 'gguf' for {model!r}: the folder holds {len(files)} GGUF files; use gguf:<file>"
            )
    raise SweepError(
        f"sweep: precision 'gguf' needs a GGUF model (an embedded one: {', '.join(EMBEDDED)}; or a folder with one *.gguf "
        f"file), got {model!r}; use gguf:<file> for a GGUF file of it"
    )


def item_config(cfg: Config, item: SweepItem) -> Config:
    """The ordinary job config of one combination: ``model`` set, ``sweep`` removed.

    ``model.name``, ``dtype``, ``quantization`` and ``adapter`` (an absolute path) are
    set from the item; ``revision`` is kept only for the config's own model; the job
    ``name`` becomes ``<name>__<item name>``. For ``gguf``/``gguf:<file>`` a GGUF
    other than the embedded default is dequantized into the model cache on the
    first call (about half a minute for a small model), and ``model.name`` is that
    folder.
    """
    p = item.precision
    _check_precision(p)
    base = copy.deepcopy(cfg)  # no list or mapping shared with the sweep's config
    m = replace(base.model, name=item.model, revision=cfg.model.revision if item.model == cfg.model.name else None)
    if p in PRECISION_SETTINGS:
        dtype, quantization = PRECISION_SETTINGS[p]
        m = replace(m, dtype=dtype, quantization=quantization)
    else:
        m = replace(m, dtype="float32", quantization="none")
        if p == "gguf":
            m = replace(m, name=_gguf_of_model(item.model, m))
        else:
            from latent_bias_probe.extract.model import gguf_model_dir

            m = replace(m, name=str(gguf_model_dir(Path(p[5:]).expanduser().resolve(), m)))
    m = replace(m, adapter=None if item.adapter is None else str(Path(item.adapter).expanduser().resolve()))
    return replace(base, sweep=None, name=f"{cfg.name}__{item.name}", model=m)


def check_sweep(cfg: Config) -> list[tuple[SweepItem, Config]]:
    """Plan the sweep and check every combination can run here (``InputError`` otherwise)."""
    from latent_bias_probe.extract.precision import check_model_options

    planned = []
    for item in sweep_combinations(cfg):
        icfg = item_config(cfg, item)
        try:
            check_model_options(icfg.model)
        except InputError as err:
            raise SweepError(f"sweep item {item.name}: {err}") from None
        planned.append((item, icfg))
    return planned


# --------------------------------------------------------------------------- running


def _read_results(run_dir: Path) -> dict[str, Any] | None:
    path = run_dir / "results.json"
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


#: the artifact each later stage of ``probe run`` leaves (a combination is complete when they are fresh)
STAGE_OUTPUTS = {"fit": "probes.h5", "explain": "explain.json", "report": "report.html"}


def is_complete(run_dir: str | Path, icfg: Config, stages: Iterable[str] = ()) -> bool:
    """Whether ``run_dir/results.json`` is fresh, was made from ``icfg`` and has every configured tier,
    and each of ``stages`` has left its fresh artifact (:data:`STAGE_OUTPUTS`).

    A tier the renderer dropped (``benchmark.dropped_tiers``: every case rendered the
    same) counts as done; a masked-LM audit has no explain stage. A combination stopped
    during explain (results.json written, explain.json not) is therefore not complete.
    """
    from .artifacts import RunDir

    run = RunDir(run_dir)
    if not run.is_fresh("results.json"):
        return False
    results = _read_results(Path(run_dir))
    if results is None or results.get("run_config_sha256") != run_config_sha256(icfg):
        return False
    dropped = (results.get("benchmark") or {}).get("dropped_tiers") or {}
    if not set(icfg.benchmark.tiers) - set(dropped) <= set(results.get("tiers") or {}):
        return False
    masked = run.exists("masked.json")
    needed = [STAGE_OUTPUTS[s] for s in stages if s in STAGE_OUTPUTS and not (masked and s == "explain")]
    return all(run.is_fresh(name) for name in needed)


def write_sweep_csv(rows: list[dict[str, Any]], path: str | Path) -> Path:
    """Write the rows with :func:`~latent_bias_probe.report.sweep.sweep_columns` atomically (missing values empty)."""
    import pandas as pd

    df = pd.DataFrame(rows, columns=sweep_columns())
    for c in INT_COLUMNS:
        df[c] = pd.to_numeric(df[c], errors="coerce").astype("Int64")
    with atomic_path(path) as tmp:
        df.to_csv(tmp, index=False, float_format="%.10g")
    return Path(path)


def run_sweep(
    cfg: Config,
    out_dir: str | Path,
    run_one: Callable[[Config, Path], Any],
    rerun: bool = False,
    stages: Iterable[str] = (),
) -> Path:
    """Run every combination into ``out_dir/<item name>/``; return ``out_dir/sweep.csv``.

    ``run_one(item_cfg, run_dir)`` runs one ordinary job (the ``probe run`` body) and
    must leave ``run_dir/results.json``. Combinations already complete (see
    :func:`is_complete`; ``stages``: the stages ``run_one`` runs) are skipped unless ``rerun``. Errors propagate: a failed
    combination stops the sweep, and running it again resumes.
    """
    from .outdir import check_output_dir

    out_dir = Path(out_dir)
    check_output_dir(out_dir, "sweep")
    planned = check_sweep(cfg)
    out_dir.mkdir(parents=True, exist_ok=True)
    with run_lock(out_dir, "sweep"):
        return _run_sweep(cfg, SweepDir(out_dir), planned, run_one, rerun, stages)


def _run_sweep(cfg: Config, sweep: SweepDir, planned, run_one, rerun: bool, stages) -> Path:
    out_dir = sweep.path
    plan = {
        "config": cfg.to_dict(),
        "run_config_sha256": run_config_sha256(cfg),
        "items": [asdict(item) | {"run_config_sha256": run_config_sha256(icfg)} for item, icfg in planned],
    }
    sweep.invalidate(PLAN_NAME)
    atomic_write_text(out_dir / PLAN_NAME, json.dumps(plan, indent=2) + "\n")
    sweep.record(PLAN_NAME)
    sweep.prune()  # a sweep.csv of another plan, a sweep.html of another sweep.csv
    csv_path = out_dir / CSV_NAME
    rows: list[dict[str, Any]] = []
    done: list[SweepItem] = []
    for i, (item, icfg) in enumerate(planned, 1):
        run_dir = out_dir / item.name
        if not rerun and is_complete(run_dir, icfg, stages):
            log.info("sweep %d/%d %s: complete, skipped", i, len(planned), item.name)
        else:
            log.info("sweep %d/%d %s: running into %s", i, len(planned), item.name, run_dir)
            run_dir.mkdir(parents=True, exist_ok=True)
            run_one(icfg, run_dir)
        results = _read_results(run_dir)
        if results is None:
            raise RuntimeError(f"sweep item {item.name}: {run_dir / 'results.json'} missing or unreadable after the run")
        rows.extend(result_rows(item, results))
        done.append(item)
        _write_recorded_csv(sweep, rows, done)
    add_reference_differences(cfg, planned, out_dir, rows)
    add_model_differences(planned, out_dir, rows, cfg)
    _write_recorded_csv(sweep, rows, done)
    sweep.prune()
    log.info("sweep: %d combinations -> %s", len(planned), csv_path)
    return csv_path


def _write_recorded_csv(sweep: SweepDir, rows: list[dict[str, Any]], items: list[SweepItem]) -> None:
    """Write ``sweep.csv`` and record it with the plan and the ``results.json`` of ``items`` as its inputs."""
    sweep.invalidate(CSV_NAME)
    write_sweep_csv(rows, sweep / CSV_NAME)
    inputs = {f"item:{item.name}": sweep.fingerprint(f"item:{item.name}") for item in items}
    sweep.record(CSV_NAME, {k: v for k, v in inputs.items() if v is not None})


def reference_items(cfg: Config, planned: list[tuple[SweepItem, Config]]) -> dict[str, SweepItem]:
    """model -> its reference combination: ``sweep.reference`` precision (default the first listed), first adapter."""
    wanted = (cfg.sweep.reference if cfg.sweep else None) or None
    refs: dict[str, SweepItem] = {}
    for item, _ in planned:
        if item.model in refs:
            continue
        if wanted is None or item.precision == wanted:
            refs[item.model] = item
    return refs


def add_reference_differences(cfg: Config, planned: list[tuple[SweepItem, Config]], out_dir: Path, rows: list[dict[str, Any]]) -> None:
    """Fill the ``reference`` and ``diff_*`` columns: paired bootstrap differences against each model's reference run."""
    from .compare import compare_tables
    from .score import read_predictions

    refs = reference_items(cfg, planned)
    s = cfg.scoring
    tables: dict[str, Any] = {}

    def table(item: SweepItem):
        if item.name not in tables:
            tables[item.name] = read_predictions(out_dir / item.name / "predictions.csv")
        return tables[item.name]

    for item, _ in planned:
        ref = refs.get(item.model)
        if ref is None or ref == item or not s.bootstrap:
            continue
        try:
            result = compare_tables(
                table(ref), table(item), s.alpha, s.correction, s.bootstrap, s.seed, s.ci_level, s.accuracy,
                names=(ref.name, item.name),
            )
        except InputError as err:
            log.warning("sweep: %s vs %s not compared: %s", item.name, ref.name, err)
            continue
        label = f"{ref.precision}" + (f" + {slug(ref.adapter)}" if ref.adapter else "")
        _fill_differences(rows, item, result, "reference", label, ("diff_mfarm", "diff_max_abs_shift"))


def _fill_differences(rows: list[dict[str, Any]], item: SweepItem, result: dict[str, Any], label_column: str, label: str,
                      columns: tuple[str, str]) -> None:
    """Write one comparison's mFARM and largest-shift differences (with ``_lo``/``_hi``) into ``item``'s rows."""
    for row in rows:
        if (row["model"], row["precision"], row["adapter"]) != (item.model, item.precision, item.adapter or ""):
            continue
        tier = result["tiers"].get(row["tier"])
        if tier is None:
            continue
        row[label_column] = label
        for column, entry in zip(columns, (tier["score"], tier["max_abs_shift"])):
            lo, hi = (entry.get("ci") or [None, None])[:2]
            row[column], row[f"{column}_lo"], row[f"{column}_hi"] = entry["diff"], lo, hi


def add_model_differences(planned: list[tuple[SweepItem, Config]], out_dir: Path, rows: list[dict[str, Any]], cfg: Config) -> None:
    """Fill ``vs_model`` and ``diff_model_*``: each model against the sweep's first model.

    At every precision and adapter both ran, the paired bootstrap difference (this
    model minus the first; :func:`pipeline.compare.compare_tables`, the same cases
    resampled on both sides) of mFARM and of the largest group shift. Nothing with
    a single model or without ``scoring.bootstrap``.
    """
    from .compare import compare_tables
    from .score import read_predictions

    models = list(dict.fromkeys(item.model for item, _ in planned))
    s = cfg.scoring
    if len(models) < 2 or not s.bootstrap:
        return
    first = {(item.precision, item.adapter): item for item, _ in planned if item.model == models[0]}
    for item, _ in planned:
        ref = first.get((item.precision, item.adapter))
        if item.model == models[0] or ref is None:
            continue
        try:
            result = compare_tables(
                read_predictions(out_dir / ref.name / "predictions.csv"),
                read_predictions(out_dir / item.name / "predictions.csv"),
                s.alpha, s.correction, s.bootstrap, s.seed, s.ci_level, s.accuracy, names=(ref.name, item.name),
            )
        except InputError as err:
            log.warning("sweep: %s vs %s not compared: %s", item.name, ref.name, err)
            continue
        _fill_differences(rows, item, result, "vs_model", ref.model, MODEL_DIFF_COLUMNS)


# --------------------------------------------------------------------------- reading


def sweep_table(out_dir: str | Path):
    """``sweep.csv`` of a sweep directory (or the CSV itself) as a DataFrame.

    ``model``, ``precision``, ``adapter`` (``""`` = none) and ``tier`` are strings,
    the scores floats (NaN where missing), ``n_cases`` a nullable integer.
    """
    import pandas as pd

    path = Path(out_dir)
    if path.is_dir():
        path = path / CSV_NAME
    if not path.is_file():
        raise SweepError(f"{path}: not found (is {out_dir} a sweep directory?)")
    text_cols = ["model", "precision", "adapter", "tier", "reference", "vs_model"]
    columns = sweep_columns()
    try:
        df = pd.read_csv(path, dtype={c: str for c in text_cols}, keep_default_na=False, na_values={c: [""] for c in columns if c not in text_cols})
    except (ValueError, pd.errors.ParserError) as err:
        raise SweepError(f"{path}: not a sweep table ({type(err).__name__})") from None
    for c in optional_columns():
        if c not in df.columns:
            df[c] = "" if c in text_cols else math.nan
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise SweepError(f"{path}: missing columns {', '.join(missing)}")
    for c in columns:
        if c in text_cols:
            df[c] = df[c].astype(str)
        elif c in INT_COLUMNS:
            df[c] = pd.to_numeric(df[c], errors="coerce").astype("Int64")
        else:
            df[c] = pd.to_numeric(df[c], errors="coerce").astype(float)
    return df[columns]


