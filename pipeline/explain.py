"""The explain stage: steering dose–response, LEACE mediation and the causal trace on a fitted run.

Reads the fresh ``cache.h5`` and ``probes.h5`` of a run directory, re-runs the model
(:mod:`probes.causal`, :mod:`probes.trace`), writes ``explain.json`` and re-assembles
``results.json`` (which carries each tier's best mediation as ``latent.mediation``).

Resume: every finished unit of work (per tier: one steering direction, one batch of
the mediation's erased forwards over every layer, one case of the trace) is written to
the checkpoint ``DIR/.explain.partial.json`` as it finishes (atomically, the whole file
replaced), keyed by a fingerprint of everything it depends on (``cache.h5``,
``probes.h5``, the explain settings including ``--layers``/``--alphas``, the backend and
batch size). An interrupted explain (Ctrl-C, SIGKILL, a crash) run again with the same
inputs reads the units back and computes only the rest; explain.json comes out the same
as an uninterrupted run's (JSON floats round-trip exactly). A checkpoint made from other
inputs is discarded; the checkpoint is removed once explain.json is written.

A tqdm bar counts intervention forward passes (prompt × intervention) with the time left.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from pathlib import Path
from typing import Any, Callable

import numpy as np

from latent_bias_probe.configs.errors import InputError
from latent_bias_probe.configs.files import atomic_write_text
from latent_bias_probe.configs.names import PRIMARY_SITE
from latent_bias_probe.configs.schema import Config
from latent_bias_probe.configs.sections import ConfigSections, replace_sections
from latent_bias_probe.configs.version import TOOLKIT_VERSION
from .artifacts import RunDir
from .lock import run_lock

log = logging.getLogger(__name__)

EXPLAIN_NAME = "explain.json"
CHECKPOINT_NAME = ".explain.partial.json"
CHECKPOINT_FORMAT = "latent-bias-explain-partial/1"


class Checkpoint:
    """Finished explain units, persisted in ``DIR/.explain.partial.json`` (see the module docstring).

    The file carries its format, the toolkit version and the inputs' key; one of
    another format, version or key is discarded (with a warning). Each unit is checked
    when it is read (:mod:`probes.units`); a malformed one is dropped with a warning
    and recomputed.
    """

    def __init__(self, path: Path, key: str):
        self.path, self.key = path, key
        self.items: dict[str, Any] = {}
        if path.exists():
            try:
                data = json.loads(path.read_text(encoding="utf-8"))
            except (OSError, ValueError, RecursionError):
                data = None
            problem = _checkpoint_problem(data, key)
            if problem is None:
                self.items = dict(data["items"])
                log.info("explain: resuming from %s (%d finished units)", path, len(self.items))
            else:
                log.warning("explain: %s %s; starting over", path, problem)

    def scoped(self, prefix: str) -> "_Scoped":
        return _Scoped(self, prefix)

    def get(self, key: str, check: Callable[[Any], bool] | None = None) -> Any:
        """The finished unit ``key`` (None: not finished, or malformed and dropped)."""
        value = self.items.get(key)
        if value is not None and check is not None and not check(value):
            log.warning("explain: %s: unit %r is malformed; dropped, recomputing it", self.path, key)
            del self.items[key]
            return None
        return value

    def put(self, key: str, value: Any) -> None:
        self.items[key] = value
        body = {"format": CHECKPOINT_FORMAT, "toolkit_version": TOOLKIT_VERSION, "key": self.key, "items": self.items}
        atomic_write_text(self.path, json.dumps(body, allow_nan=True) + "\n")

    def remove(self) -> None:
        self.path.unlink(missing_ok=True)


class _Scoped:
    """A view of a :class:`Checkpoint` under one tier's prefix (what :func:`probes.causal.explain_tier` takes)."""

    def __init__(self, parent: Checkpoint, prefix: str):
        self.parent, self.prefix = parent, prefix

    def get(self, key: str, check: Callable[[Any], bool] | None = None) -> Any:
        return self.parent.get(f"{self.prefix}/{key}", check)

    def put(self, key: str, value: Any) -> None:
        self.parent.put(f"{self.prefix}/{key}", value)


def _checkpoint_problem(data: Any, key: str) -> str | None:
    """Why a checkpoint's contents cannot be resumed from (None: they can)."""
    if not isinstance(data, dict) or data.get("format") != CHECKPOINT_FORMAT:
        return f"is not a {CHECKPOINT_FORMAT} checkpoint"
    if data.get("toolkit_version") != TOOLKIT_VERSION:
        return f"was written by toolkit {str(data.get('toolkit_version'))[:40]!r}, not {TOOLKIT_VERSION}"
    if data.get("key") != key:
        return "is from other inputs"
    if not isinstance(data.get("items"), dict):
        return "holds no mapping of units"
    return None


def _checkpoint_key(run: RunDir, cfg: Config) -> str:
    """SHA-256 over every input of the explain results (see the module docstring)."""
    import dataclasses
    import hashlib

    parts = {
        "cache.h5": run.fingerprint("cache.h5"),
        "probes.h5": run.fingerprint("probes.h5"),
        "explain": dataclasses.asdict(cfg.explain),
        "backend": cfg.extract.backend,
        "batch_size": cfg.extract.batch_size,
        "bootstrap": [cfg.scoring.bootstrap, cfg.scoring.ci_level],
        "groups": [list(cfg.benchmark.races), list(cfg.benchmark.genders)],
    }
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()


def run_explain(
    run_dir: str | Path,
    layers: list[int] | None = None,
    alphas: list[float] | None = None,
    cfg: ConfigSections | Config | None = None,
    trust_remote_code: bool = False,
    progress: bool = True,
) -> dict[str, Any]:
    """Run the explain stage on a fitted run directory; write explain.json, re-assemble results.json.

    ``cfg``: the sections the stage table gives explain (``model``, ``benchmark``,
    ``extract``, ``scoring``, ``explain``: :mod:`pipeline.stages`), or a whole config;
    None: the run's own ``config.json``. ``layers`` and ``alphas`` override
    ``explain.layers`` and ``explain.alphas`` for this call (and are recorded in
    explain.json); ``cfg`` itself is never changed. A run whose config enables remote
    model code is refused unless ``trust_remote_code`` (:mod:`configs.trust`).
    """
    run = RunDir(run_dir)
    if not run.path.is_dir():
        raise InputError(f"{run.path}: no such run directory")
    with run_lock(run.path, "explain"):
        return _run_explain(run, layers, alphas, cfg, trust_remote_code, progress)


def _run_explain(run: RunDir, layers, alphas, cfg: ConfigSections | Config | None, trust_remote_code: bool, progress: bool = True) -> dict[str, Any]:
    from latent_bias_probe.configs.trust import apply_trust
    from latent_bias_probe.extract.cache import Cache
    from .results import load_run_config

    if cfg is None:  # first: a run directory from elsewhere can neither run its model's code nor be half-read
        cfg = apply_trust(load_run_config(run.path), trust_remote_code, str(run / "config.json"))
    if (run / "cache.h5").is_file():
        with Cache(run / "cache.h5") as cache:  # a damaged or foreign file says what is wrong with it
            if cache.attrs.get("model_kind") == "masked":
                raise InputError(f"{run / 'cache.h5'}: a masked-LM audit has no Yes/No decision to steer; 'probe explain' runs on causal models only")
    for name in ("cache.h5", "probes.h5"):
        if not run.is_fresh(name):
            state = run.why_stale(name)
            raise InputError(f"{run / name}: {state} (run 'probe fit {run.path}' first)")
    layers_key = "--layers" if layers is not None else "explain.layers"
    if alphas is not None or layers is not None:  # this call's settings: a copy, the caller's config stays as it is
        cfg = replace_sections(cfg, explain=dataclasses.replace(
            cfg.explain,
            alphas=list(alphas) if alphas is not None else cfg.explain.alphas,
            layers=list(layers) if layers is not None else cfg.explain.layers,
        ))
    site, position = PRIMARY_SITE
    fitted = _read_fitted(run / "probes.h5", cfg.explain.tiers or cfg.benchmark.tiers[:1], site, position)

    from latent_bias_probe.extract.backends import make_runner
    from latent_bias_probe.extract.model import load_model
    from .results import assemble_results
    from latent_bias_probe.probes.causal import default_layers, explain_tier

    from tqdm.auto import tqdm

    loaded = load_model(cfg.model)
    bad = [layer for layer in cfg.explain.trace_layers or [] if not 0 <= layer < loaded.n_layers]
    if bad:
        raise InputError(f"explain.trace_layers: {bad} out of range 0..{loaded.n_layers - 1}")
    bad = [layer for layer in cfg.explain.components.layers or [] if not 0 <= layer < loaded.n_layers]
    if bad:
        raise InputError(f"explain.components.layers: {bad} out of range 0..{loaded.n_layers - 1}")
    runner = make_runner(cfg.extract.backend, loaded)
    out: dict[str, Any] = {"layers": cfg.explain.layers, "alphas": list(cfg.explain.alphas), "tiers": {}}
    checkpoint = Checkpoint(run.path / CHECKPOINT_NAME, _checkpoint_key(run, cfg))
    bar = tqdm(total=0, desc="explain interventions", unit="pass", disable=not progress)
    with Cache(run / "cache.h5") as cache, bar:
        if cache.attrs.get("model_sha256") != loaded.sha256:
            raise InputError(f"{run / 'cache.h5'}: was made with another model (weights hash differs from {cfg.model.name})")
        prompts = cache.prompts
        p_all = cache.outputs["p_yes"].to_numpy(float)
        for tier, (axis_dirs, value_layer, steering) in fitted.items():
            rows = np.flatnonzero(prompts["tier"].to_numpy() == tier)
            part = prompts.iloc[rows].reset_index(drop=True)
            tier_layers = sorted(set(cfg.explain.layers or default_layers(loaded.n_layers, value_layer)))
            bad = [layer for layer in tier_layers if not 0 <= layer < loaded.n_layers]
            if bad:
                raise InputError(f"{layers_key}: {bad} out of range 0..{loaded.n_layers - 1}")
            h_last = cache.acts(site, position, rows)
            out["tiers"][tier] = explain_tier(
                runner, loaded.model, part, p_all[rows], h_last, axis_dirs, value_layer, steering, cfg, tier_layers,
                store=checkpoint.scoped(tier), bar=bar, reuse_prefix=cfg.explain.reuse_prefix,
            )
            if cfg.explain.components.enabled:
                out["tiers"][tier].update(_components(runner, part, p_all[rows], cfg, checkpoint.scoped(tier), bar))
    run.invalidate(EXPLAIN_NAME)
    atomic_write_text(run / EXPLAIN_NAME, json.dumps(out, indent=2, allow_nan=False) + "\n")
    run.record(EXPLAIN_NAME)
    checkpoint.remove()
    assemble_results(run)
    return out


def _components(runner, part, p_yes: np.ndarray, cfg: Config, store, bar) -> dict[str, Any]:
    """Component attribution, verification and remedy of one tier on its explained cases (:mod:`probes.components`)."""
    from latent_bias_probe.probes.components import component_tier

    case_ids = part["case_id"].to_numpy()
    keep = list(dict.fromkeys(case_ids))[: cfg.explain.max_cases or None]
    rows = np.flatnonzero(np.isin(case_ids, keep))
    sub = part.iloc[rows].reset_index(drop=True)
    out = component_tier(runner, sub, list(cfg.benchmark.races), list(cfg.benchmark.genders), cfg, store, bar)
    if out.get("remedy"):
        p_after = np.asarray(out["remedy"].pop("p_yes"), dtype=float)
        out["remedy"]["diff"] = remedy_scores(sub, p_yes[rows], p_after, cfg.scoring)
    return out


def remedy_scores(sub, p_before: np.ndarray, p_after: np.ndarray, scoring) -> dict[str, Any]:
    """Paired differences (edited − unedited) of mFARM, FAB, accuracy, the largest group shift, each group's shift and BASE's P(Yes).

    ``sub``: the rows (tier, case_id, variant, label) both P(Yes) arrays belong to; the
    differences and their intervals are ``probe compare``'s (:func:`pipeline.compare.compare_tables`).
    """
    import pandas as pd

    from .compare import compare_tables

    def table(p):
        return pd.DataFrame({"tier": np.array(sub["tier"]), "case_id": np.array(sub["case_id"]), "variant": np.array(sub["variant"]),
                             "p_yes": np.array(p, dtype=float), "label": np.array(sub["label"])})  # as stored (int): the scorer converts it

    got = compare_tables(table(p_before), table(p_after), alpha=scoring.alpha, correction=scoring.correction, n_boot=scoring.bootstrap,
                         seed=scoring.seed, level=scoring.ci_level, accuracy=scoring.accuracy, names=("unedited", "ablated"))
    tier = next(iter(got["tiers"].values()))
    diff = {}
    for name, key in (("mfarm", "score"), ("fab", "fab"), ("accuracy", "accuracy"), ("largest_shift", "max_abs_shift")):
        if key in tier:
            diff[name] = {"value": tier[key]["diff"], "ci": tier[key]["ci"], "before": tier[key]["a"], "after": tier[key]["b"]}
    for shift in tier.get("mean_shift", []):
        diff[f"shift:{shift['group']}"] = {"value": shift["diff"], "ci": shift["ci"], "before": shift["a"], "after": shift["b"]}
    diff["base_p_yes"] = base_change(sub, p_before, p_after, scoring)
    return diff


def base_change(sub, p_before: np.ndarray, p_after: np.ndarray, scoring) -> dict[str, Any]:
    """Mean BASE P(Yes), unedited and edited, and the paired difference with a case-bootstrap interval.

    A remedy should remove the groups' shifts from BASE, not move BASE itself: a difference
    whose interval excludes 0 means the edit changed the decision for every patient.
    """
    from latent_bias_probe.configs.names import BASE
    from latent_bias_probe.mfarm.resampling import bootstrap_indices

    base = np.asarray(sub["variant"]) == BASE
    before, after = np.asarray(p_before, float)[base], np.asarray(p_after, float)[base]
    if not base.any():
        return {"value": None, "ci": None, "before": None, "after": None}
    d = after - before
    value = float(d.mean())
    ci = None
    if scoring.bootstrap and len(d) > 1:
        boot = d[bootstrap_indices(len(d), scoring.bootstrap, scoring.seed)].mean(1)
        q = (1 - scoring.ci_level) / 2
        ci = [float(np.quantile(boot, q)), float(np.quantile(boot, 1 - q))]
    return {"value": value, "ci": ci, "before": float(before.mean()), "after": float(after.mean())}


def _read_fitted(path: Path, tiers, site: str, position: str) -> dict[str, tuple[np.ndarray, int, dict[str, np.ndarray]]]:
    """``tier -> (value-axis directions, value-axis layer, steering vectors)`` of the tiers fitted in ``probes.h5``.

    Read before the model loads; a file not in the layout :func:`pipeline.fit.write_probes`
    writes is bad input (a run directory can come from anywhere), named in one line.
    """
    import h5py

    fitted = {}
    try:
        with h5py.File(path, "r") as probes:
            for tier in tiers:
                if f"{tier}/value_axis/{site}/{position}" not in probes:
                    continue
                ds = probes[f"{tier}/value_axis/{site}/{position}"]
                steer_group = probes[f"{tier}/steering/{site}/{position}"]
                steering = {g: np.asarray(steer_group[g][()]) for g in steer_group}
                fitted[tier] = (np.asarray(ds[()]), int(ds.attrs["layer"]), steering)
    except (OSError, KeyError, ValueError, TypeError) as err:
        detail = str(err).splitlines()[0][:100] if str(err) else type(err).__name__
        raise InputError(f"{path}: not a probes file written by 'probe fit' ({detail}); re-run 'probe fit'") from None
    if not fitted:
        raise InputError(f"{path}: no fitted tier to explain")
    return fitted
