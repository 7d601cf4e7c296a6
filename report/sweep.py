"""Sweeps: one run per model x precision x adapter, and one table over all of them.

A config with a ``sweep`` section (:class:`configs.schema.SweepConfig`) names models
(empty: ``[model.name]``), precisions and adapters. :func:`sweep_combinations` lists
every combination as a :class:`SweepItem` (models outermost, adapters innermost);
:func:`item_config` turns one into an ordinary job config; :func:`run_sweep` runs
each into ``OUT/<item name>/`` (an ordinary run directory) and writes
``OUT/sweep.csv`` (one row per combination and tier, :data:`SWEEP_COLUMNS`) and
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
                model cache, ``extract.precision.gguf_model_dir``), e.g. a Q8_0 or
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
import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable

from configs.errors import InputError
from configs.schema import Config, SweepConfig
from extract.files import atomic_path, atomic_write_text
from extract.batch_check import noise_above_tolerance
from report.svg import finite

log = logging.getLogger(__name__)

PRECISIONS = ("float32", "bfloat16", "int8", "bnb-8bit", "bnb-4bit", "gguf")
#: precision -> (model.dtype, model.quantization), for the precisions that set only these
PRECISION_SETTINGS = {
    "float32": ("float32", "none"),
    "bfloat16": ("bfloat16", "none"),
    "int8": ("float32", "int8"),
    "bnb-8bit": ("float32", "bnb-8bit"),
    "bnb-4bit": ("float32", "bnb-4bit"),
}
SCORE_KEYS = ("mean_difference", "absolute_deviation", "variance_heterogeneity", "ks_distribution", "correlation_difference")
SWEEP_COLUMNS = [
    "model", "precision", "adapter", "tier", "mfarm", *SCORE_KEYS,
    "mfarm_full", "accuracy", "fab", "fab_full", "n_cases", "max_abs_shift", "batch_noise",
]
#: columns a sweep.csv written by an older version may lack (read as missing)
OPTIONAL_COLUMNS = ("max_abs_shift", "batch_noise")
CSV_NAME = "sweep.csv"
PLAN_NAME = "sweep.json"
TIER_ORDER = ("high", "medium", "low")
EPS = 0.005  # differences of mFARM below this are reported as "unchanged"


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


def _slug(text: str) -> str:
    """A filesystem-safe name: the last path component, only ``[A-Za-z0-9._-]``, no ``__``."""
    last = text.rstrip("/\\").replace("\\", "/").split("/")[-1] or text
    slug = re.sub(r"[^A-Za-z0-9._-]+", "-", last)
    slug = re.sub(r"_{2,}", "_", slug).strip(".-_") or "x"
    if len(slug) > 80:
        slug = slug[:72] + "-" + hashlib.sha256(text.encode()).hexdigest()[:7]
    return slug


def _precision_slug(precision: str) -> str:
    if precision.startswith("gguf:"):
        return "gguf-" + _slug(Path(precision[5:]).stem if precision.lower().endswith(".gguf") else precision[5:])
    return _slug(precision)


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


def _check_precision(p: str) -> None:
    if p not in PRECISIONS and not (p.startswith("gguf:") and len(p) > 5):
        raise SweepError(f"sweep.precisions: unknown precision {p!r} (allowed: {', '.join(PRECISIONS)}, gguf:<file>)")


def sweep_combinations(cfg: Config) -> list[SweepItem]:
    """Every model x precision x adapter of ``cfg.sweep`` (models outermost), uniquely named.

    Names are ``<model>__<precision>__<adapter>`` from the last path component of each
    (``none`` without adapter; ``gguf-<file stem>`` for ``gguf:<file>``), restricted
    to ``[A-Za-z0-9._-]``; components that would collide get a short hash. Pure: no
    file is read (see :func:`check_sweep`).
    """
    sweep = cfg.sweep or SweepConfig()
    models = _dedupe(list(sweep.models) or [cfg.model.name], "models")
    precisions = _dedupe(list(sweep.precisions), "precisions")
    adapters = _dedupe(list(sweep.adapters), "adapters")
    if not precisions:
        raise SweepError("sweep.precisions: must not be empty")
    if not adapters:
        raise SweepError("sweep.adapters: must not be empty (use [null] for no adapter)")
    for p in precisions:
        _check_precision(p)
    model_slug = _unique_slugs(models, _slug)
    prec_slug = _unique_slugs(precisions, _precision_slug)
    adapter_slug = _unique_slugs([a for a in adapters if a is not None], _slug)
    if any(a is not None and adapter_slug[a].lower() == "none" for a in adapters):
        adapter_slug = {a: f"{s}-{hashlib.sha256(a.encode()).hexdigest()[:6]}" if s.lower() == "none" else s for a, s in adapter_slug.items()}
    from extract.model import EMBEDDED_NAME

    for m in models:
        if m == EMBEDDED_NAME and "float32" in precisions and "gguf" in precisions:
            log.warning(
                "sweep: for the embedded %s, 'gguf' and 'float32' are the same run (its weights are a Q4_1 GGUF "
                "dequantized to float32)", EMBEDDED_NAME,
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
    from extract.model import EMBEDDED_NAME

    if model == EMBEDDED_NAME:
        return EMBEDDED_NAME
    folder = Path(model).expanduser()
    if folder.is_dir():
        files = sorted(folder.glob("*.gguf"))
        if len(files) == 1:
            from extract.precision import gguf_model_dir

            return str(gguf_model_dir(files[0], model_cfg))
        if len(files) > 1:
            raise SweepError(
                f"sweep: precision 'gguf' for {model!r}: the folder holds {len(files)} GGUF files; use gguf:<file>"
            )
    raise SweepError(
        f"sweep: precision 'gguf' needs a GGUF model (the embedded {EMBEDDED_NAME} or a folder with one *.gguf "
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
    new = copy.deepcopy(cfg)
    new.sweep = None
    new.name = f"{cfg.name}__{item.name}"
    m = new.model
    m.name = item.model
    if item.model != cfg.model.name:
        m.revision = None
    p = item.precision
    _check_precision(p)
    if p in PRECISION_SETTINGS:
        m.dtype, m.quantization = PRECISION_SETTINGS[p]
    else:
        m.dtype, m.quantization = "float32", "none"
        if p == "gguf":
            m.name = _gguf_of_model(item.model, m)
        else:
            from extract.precision import gguf_model_dir

            m.name = str(gguf_model_dir(Path(p[5:]).expanduser().resolve(), m))
    m.adapter = None if item.adapter is None else str(Path(item.adapter).expanduser().resolve())
    return new


def check_sweep(cfg: Config) -> list[tuple[SweepItem, Config]]:
    """Plan the sweep and check every combination can run here (``InputError`` otherwise)."""
    from extract.precision import check_model_options

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


def is_complete(run_dir: str | Path, icfg: Config) -> bool:
    """Whether ``run_dir/results.json`` was made from ``icfg`` and has every configured tier.

    A tier the renderer dropped (``benchmark.dropped_tiers``: every case rendered the
    same) counts as done.
    """
    results = _read_results(Path(run_dir))
    if results is None or results.get("config_sha256") != icfg.sha256():
        return False
    dropped = (results.get("benchmark") or {}).get("dropped_tiers") or {}
    return set(icfg.benchmark.tiers) - set(dropped) <= set(results.get("tiers") or {})


def result_rows(item: SweepItem, results: dict[str, Any]) -> list[dict[str, Any]]:
    """The ``sweep.csv`` rows (one per tier) of one combination's ``results.json``."""
    rows = []
    tiers = results.get("tiers") or {}
    order = [t for t in TIER_ORDER if t in tiers] + sorted(set(tiers) - set(TIER_ORDER))
    for tier in order:
        t = tiers[tier] or {}
        m = t.get("mfarm") or {}
        row: dict[str, Any] = {
            "model": item.model,
            "precision": item.precision,
            "adapter": item.adapter or "",
            "tier": tier,
            "mfarm": finite(m.get("score")),
        }
        row.update({k: finite(m.get(k)) for k in SCORE_KEYS})
        row.update({k: finite(t.get(k)) for k in ("mfarm_full", "accuracy", "fab", "fab_full")})
        n = t.get("n_cases")
        row["n_cases"] = int(n) if isinstance(n, (int, float)) and not isinstance(n, bool) else None
        row["max_abs_shift"] = max_abs_shift(t)
        row["batch_noise"] = finite((results.get("batch_invariance") or {}).get("max_abs_diff"))
        rows.append(row)
    return rows


def max_abs_shift(tier: dict[str, Any]) -> float | None:
    """The largest |mean shift of P(Yes)| of any group from BASE in a tier's diagnostics.

    An effect size, unlike mFARM, which counts *significant* differences: a change
    that adds noise can raise mFARM while the shifts stay as large.
    """
    shifts = ((tier.get("diagnostics") or {}).get("group_shifts")) or []
    values = [finite(g.get("mean_shift")) for g in shifts if isinstance(g, dict)]
    values = [abs(v) for v in values if v is not None]
    return max(values) if values else None


def write_sweep_csv(rows: list[dict[str, Any]], path: str | Path) -> Path:
    """Write the rows with :data:`SWEEP_COLUMNS` atomically (missing values empty)."""
    import pandas as pd

    df = pd.DataFrame(rows, columns=SWEEP_COLUMNS)
    df["n_cases"] = df["n_cases"].astype("Int64")
    with atomic_path(path) as tmp:
        df.to_csv(tmp, index=False, float_format="%.10g")
    return Path(path)


def run_sweep(
    cfg: Config,
    out_dir: str | Path,
    run_one: Callable[[Config, Path], Any],
    rerun: bool = False,
) -> Path:
    """Run every combination into ``out_dir/<item name>/``; return ``out_dir/sweep.csv``.

    ``run_one(item_cfg, run_dir)`` runs one ordinary job (the ``probe run`` body) and
    must leave ``run_dir/results.json``. Combinations already complete (see
    :func:`is_complete`) are skipped unless ``rerun``. Errors propagate: a failed
    combination stops the sweep, and running it again resumes.
    """
    out_dir = Path(out_dir)
    planned = check_sweep(cfg)
    out_dir.mkdir(parents=True, exist_ok=True)
    plan = {
        "config": cfg.to_dict(),
        "config_sha256": cfg.sha256(),
        "items": [asdict(item) | {"config_sha256": icfg.sha256()} for item, icfg in planned],
    }
    atomic_write_text(out_dir / PLAN_NAME, json.dumps(plan, indent=2) + "\n")
    csv_path = out_dir / CSV_NAME
    rows: list[dict[str, Any]] = []
    for i, (item, icfg) in enumerate(planned, 1):
        run_dir = out_dir / item.name
        if not rerun and is_complete(run_dir, icfg):
            log.info("sweep %d/%d %s: complete, skipped", i, len(planned), item.name)
        else:
            log.info("sweep %d/%d %s: running into %s", i, len(planned), item.name, run_dir)
            run_dir.mkdir(parents=True, exist_ok=True)
            run_one(icfg, run_dir)
        results = _read_results(run_dir)
        if results is None:
            raise RuntimeError(f"sweep item {item.name}: {run_dir / 'results.json'} missing or unreadable after the run")
        rows.extend(result_rows(item, results))
        write_sweep_csv(rows, csv_path)
    log.info("sweep: %d combinations -> %s", len(planned), csv_path)
    return csv_path


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
    text_cols = ["model", "precision", "adapter", "tier"]
    try:
        df = pd.read_csv(path, dtype={c: str for c in text_cols}, keep_default_na=False, na_values={c: [""] for c in SWEEP_COLUMNS if c not in text_cols})
    except (ValueError, pd.errors.ParserError) as err:
        raise SweepError(f"{path}: not a sweep table ({type(err).__name__})") from None
    for c in OPTIONAL_COLUMNS:
        if c not in df.columns:
            df[c] = math.nan
    missing = [c for c in SWEEP_COLUMNS if c not in df.columns]
    if missing:
        raise SweepError(f"{path}: missing columns {', '.join(missing)}")
    for c in SWEEP_COLUMNS:
        if c in text_cols:
            df[c] = df[c].astype(str)
        elif c == "n_cases":
            df[c] = pd.to_numeric(df[c], errors="coerce").astype("Int64")
        else:
            df[c] = pd.to_numeric(df[c], errors="coerce").astype(float)
    return df[SWEEP_COLUMNS]


def _fmt(v: float) -> str:
    return "n/a" if v is None or not math.isfinite(v) else f"{v:.3f}"


def _signed(v: float) -> str:
    return "n/a" if v is None or not math.isfinite(v) else f"{v:+.3f}"


def _label(model: str, precision: str | None = None, adapter: str | None = None) -> str:
    parts = [model]
    if precision is not None:
        parts.append(f"at {precision}")
    if adapter is not None:
        parts.append(f"with adapter {_slug(adapter)}" if adapter else "without adapter")
    return " ".join(parts)


def _tier_key(t: str) -> tuple[int, str]:
    return (TIER_ORDER.index(t) if t in TIER_ORDER else len(TIER_ORDER), t)


def sweep_summary(df) -> list[str]:
    """Plain sentences about a sweep table (:func:`sweep_table`).

    1. Context: per model, precision and adapter, whether mFARM drops as context is
       reduced (high -> medium -> low).
    2. Precision: per model, adapter and precision other than float32, the change of
       mFARM against float32 at each tier.
    3. Adapters: per model, precision and adapter, the change against no adapter.

    After a comparison in which mFARM rises at some tier while the largest group
    shift (``max_abs_shift``) does not shrink there, a caveat says so. A combination
    whose P(Yes) moved more than :data:`extract.batch_check.TOLERANCE` between its
    batched and alone runs (``batch_noise``) gets a sentence saying so.

    Differences below 0.005 are called unchanged.
    """
    out: list[str] = []
    if df is None or len(df) == 0:
        return ["The sweep table is empty."]
    df = df.copy()
    df["adapter"] = df["adapter"].fillna("").astype(str)
    score = {(r.model, r.precision, r.adapter, r.tier): float(r.mfarm) for r in df.itertuples()}
    shift_col = df["max_abs_shift"] if "max_abs_shift" in df else [math.nan] * len(df)
    shift = {
        (r.model, r.precision, r.adapter, r.tier): float(v) if v is not None else math.nan
        for r, v in zip(df.itertuples(), shift_col)
    }
    combos = list(dict.fromkeys((r.model, r.precision, r.adapter) for r in df.itertuples()))

    for model, prec, adapter in combos:
        tiers = sorted({t for (m, p, a, t) in score if (m, p, a) == (model, prec, adapter) and t in TIER_ORDER}, key=_tier_key)
        vals = [score[(model, prec, adapter, t)] for t in tiers]
        if len(tiers) < 2 or not all(math.isfinite(v) for v in vals):
            continue
        steps = [b - a for a, b in zip(vals, vals[1:])]
        total = vals[-1] - vals[0]
        trail = " -> ".join(f"{t} {_fmt(v)}" for t, v in zip(tiers, vals))
        if all(abs(s) < EPS for s in steps) and abs(total) < EPS:
            verdict = "mFARM does not change as context is reduced"
        elif all(s <= EPS for s in steps) and total <= -EPS:
            verdict = "mFARM drops as context is reduced"
        elif all(s >= -EPS for s in steps) and total >= EPS:
            verdict = "mFARM does not drop but rises as context is reduced"
        else:
            end = "ending lower" if total <= -EPS else "ending higher" if total >= EPS else "ending where it started"
            verdict = f"mFARM changes non-monotonically as context is reduced, {end}"
        out.append(f"{_label(model, prec, adapter)}: {verdict} ({trail}; {tiers[-1]} - {tiers[0]} = {_signed(total)}).")

    noise_col = df["batch_noise"] if "batch_noise" in df else [math.nan] * len(df)
    noise: dict[tuple, float] = {}  # one value per combination, repeated on its tier rows
    for r, v in zip(df.itertuples(), noise_col):
        f = finite(v)
        if f is not None:
            key = (r.model, r.precision, r.adapter)
            noise[key] = max(noise.get(key, f), f)
    for combo in combos:
        worst = noise.get(combo)
        if noise_above_tolerance({"max_abs_diff": worst}):
            out.append(
                f"{_label(*combo)}: P(Yes) moves by up to {worst:.2g} when only the batch a prompt runs in changes "
                f"(batch_check.json): numerical noise of the precision, so group shifts of that size are not meaningful."
            )

    def compare(ref_of: Callable[[tuple], tuple | None], what: Callable[[tuple], str]) -> None:
        for combo in combos:
            ref = ref_of(combo)
            if ref is None or ref not in combos:
                continue
            tiers = sorted(
                {t for (m, p, a, t) in score if (m, p, a) == combo and (ref + (t,)) in score}, key=_tier_key
            )
            diffs = [(t, score[combo + (t,)] - score[ref + (t,)]) for t in tiers]
            diffs = [(t, d) for t, d in diffs if math.isfinite(d)]
            if not diffs:
                continue
            if all(abs(d) < EPS for _, d in diffs):
                change = "leaves mFARM unchanged (|difference| < 0.005 at every tier: " + ", ".join(
                    f"{_signed(d)} at {t}" for t, d in diffs) + ")"
            else:
                change = "changes mFARM by " + ", ".join(f"{_signed(d)} at {t}" for t, d in diffs)
                mean_abs = sum(abs(d) for _, d in diffs) / len(diffs)
                change += f" (mean |difference| {mean_abs:.3f})"
            out.append(f"{what(combo)} {change}.")
            masked = [
                (t, shift[ref + (t,)], shift[combo + (t,)]) for t, d in diffs
                if d >= EPS and math.isfinite(shift.get(combo + (t,), math.nan))
                and math.isfinite(shift.get(ref + (t,), math.nan)) and shift[combo + (t,)] >= shift[ref + (t,)] - EPS
            ]
            if masked:
                out.append(
                    f"{what(combo)}: where mFARM rises, the largest group shift does not shrink ("
                    + ", ".join(f"{t} {_fmt(a)} -> {_fmt(b)}" for t, a, b in masked)
                    + "): the differences became less significant, not smaller - a noisier model can look fairer "
                    "by mFARM."
                )

    compare(
        lambda c: None if c[1] == "float32" else (c[0], "float32", c[2]),
        lambda c: f"{_label(c[0], adapter=c[2])}: {c[1]} vs float32",
    )
    compare(
        lambda c: None if c[2] == "" else (c[0], c[1], ""),
        lambda c: f"{_label(c[0], precision=c[1])}: adapter {_slug(c[2])} vs no adapter",
    )
    return out
