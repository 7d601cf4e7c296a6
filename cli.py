"""The ``probe`` command: parses, validates, and calls the stages.

Exit codes: 0 success, 2 bad input (one-line message naming the file, field or
value), 1 internal error. Heavy imports (torch, transformers) happen only inside
the commands that run a model, so ``probe --help`` and ``probe score`` start fast.
"""

from __future__ import annotations

import functools
import json
import logging
import sys
import traceback
from pathlib import Path
from typing import Any, Callable

import click

from latent_bias_probe.configs.errors import InputError, JobFailed
from latent_bias_probe.configs.names import BASE, TIERS
from latent_bias_probe.configs.version import TOOLKIT_VERSION

log = logging.getLogger("probe")


def _setup_logging(verbose: int, quiet: bool) -> None:
    level = logging.WARNING if quiet else (logging.DEBUG if verbose > 1 else logging.INFO)
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    for noisy in ("httpx", "urllib3", "filelock", "huggingface_hub"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def _errors_to_exit_codes(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Turn bad input into exit 2 with one line, anything else into exit 1."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        nan = next((name for name, value in kwargs.items() if isinstance(value, float) and value != value), None)
        if nan is not None:  # click's FloatRange lets nan through every bound
            click.echo(f"error: --{nan.replace('_', '-')} nan: not a number", err=True)
            sys.exit(2)
        try:
            return fn(*args, **kwargs)
        except InputError as err:
            click.echo(f"error: {str(err).splitlines()[0] if str(err) else type(err).__name__}", err=True)
            sys.exit(2)
        except JobFailed as err:
            click.echo(f"error: {err}", err=True)
            sys.exit(1)
        except KeyboardInterrupt:
            click.echo("interrupted: finished work is kept; run the same command again to resume", err=True)
            sys.exit(130)
        except (click.exceptions.Exit, click.ClickException, SystemExit):
            raise
        except OSError as err:
            if err.filename is None:  # not about a path the user gave: an internal error
                traceback.print_exc(file=sys.stderr)
                click.echo(f"internal error: {type(err).__name__}: {err}", err=True)
                sys.exit(1)
            click.echo(f"error: {err.filename}: {err.strerror or err}", err=True)
            sys.exit(2)
        except Exception as err:  # an internal error: show where, exit 1
            traceback.print_exc(file=sys.stderr)
            click.echo(f"internal error: {type(err).__name__}: {err}", err=True)
            sys.exit(1)

    return wrapper


class _ProbeGroup(click.Group):
    """The root command: click's own refusals (an unknown option, a value out of range, a
    folder where a file is wanted) are bad input like every other: one ``error:`` line, exit 2."""

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):  # type: ignore[override]
        prog_name = prog_name or "probe"
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        try:
            rv = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except click.ClickException as err:
            if isinstance(err, getattr(click.exceptions, "NoArgsIsHelpError", ())):  # bare 'probe': the help
                err.show()
                sys.exit(err.exit_code)
            message = " ".join(err.format_message().split()) or type(err).__name__
            ctx = getattr(err, "ctx", None)
            hint = f" (see '{ctx.command_path} --help')" if isinstance(err, click.UsageError) and ctx is not None else ""
            click.echo(f"error: {message}{hint}", err=True)
            sys.exit(err.exit_code)
        except click.exceptions.Abort:  # Ctrl-C outside a command (while parsing, or in a prompt)
            click.echo("interrupted", err=True)
            sys.exit(130)
        sys.exit(rv if type(rv) is int else 0)  # an int only from click's own exits (--help, --version)


@click.group(cls=_ProbeGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("-v", "--verbose", count=True, help="More log output (-vv for debug).")
@click.option("-q", "--quiet", is_flag=True, help="Only warnings and errors.")
@click.version_option(TOOLKIT_VERSION, prog_name="probe")
def main(verbose: int, quiet: bool) -> None:
    """Mechanistic latent-bias probing of clinical language models (mFARM)."""
    _setup_logging(verbose, quiet)


def _load(config: str, overrides: tuple[str, ...], trust_remote_code: bool = False):
    from latent_bias_probe.configs.schema import load_config
    from latent_bias_probe.configs.trust import apply_trust

    return apply_trust(load_config(config, list(overrides)), trust_remote_code, config)


TRUST_HELP = "Let the model folder's own Python code run (transformers trust_remote_code); never taken from a config."


def _common_run_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    options = [
        click.argument("config", type=click.Path(dir_okay=False)),
        click.option("--limit-cases", type=int, default=None, help="Run only the first N cases."),
        click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE", help="Override a config key by dotted path."),
        click.option("--shard", default=None, metavar="K/N", help="Process every N-th case, starting at the K-th."),
        click.option("--overwrite", is_flag=True, help="Replace a cache made with another config or model."),
        click.option("--no-progress", is_flag=True, help="No progress bar."),
        click.option("--trust-remote-code", is_flag=True, help=TRUST_HELP),
    ]
    for option in reversed(options):
        fn = option(fn)
    return fn


def _stages(no_fit: bool, no_explain: bool, no_report: bool) -> tuple[str, ...]:
    skip = {"fit", "explain"} if no_fit else set()
    skip |= {"explain"} if no_explain else set()
    skip |= {"report"} if no_report else set()
    from latent_bias_probe.pipeline import STAGES

    return tuple(s for s in STAGES if s not in skip)


@main.command()
@_common_run_options
@click.option("--out", type=click.Path(file_okay=False), default=None, help="Run directory (default runs/<config name>).")
@click.option("--no-fit", is_flag=True, help="Skip the probes / value axis / F_LV stage (and explain).")
@click.option("--no-explain", is_flag=True, help="Skip the steering / mediation stage.")
@click.option("--no-report", is_flag=True, help="Skip the HTML report.")
@click.option("--executor", type=click.Choice(["inline", "local", "slurm"]), default=None, help="Where shard jobs run (default: cluster.executor).")
@click.option("--shards", type=click.IntRange(1, 10_000), default=None, help="Split the extraction into N shard jobs (default: cluster.shards).")
@_errors_to_exit_codes
def run(config, limit_cases, overrides, shard, overwrite, no_progress, trust_remote_code, out, no_fit, no_explain, no_report, executor, shards):
    """Run the whole pipeline on CONFIG: extract, score, fit, explain, report.

    With a ``sweep:`` section, every model x precision x adapter combination runs
    into its own subdirectory of --out and DIR/sweep.csv collects the scores.
    """
    from latent_bias_probe import pipeline

    cfg = _load(config, overrides, trust_remote_code)
    out_dir = Path(out) if out else Path("runs") / cfg.name
    stages = _stages(no_fit, no_explain, no_report)
    if limit_cases == 1 and "fit" in stages:
        raise InputError("--limit-cases 1: the fit stage needs at least 2 cases (grouped folds); give more, or --no-fit")
    if cfg.sweep is not None:
        from latent_bias_probe.pipeline.report import write_sweep_report
        from latent_bias_probe.pipeline.sweep import run_sweep, sweep_table
        from latent_bias_probe.report.sweep import sweep_summary

        if shard:
            raise InputError("--shard: not supported with a sweep config")
        if limit_cases is not None:
            raise InputError("--limit-cases: not supported with a sweep config; use --set benchmark.n_cases=N")

        def run_one(item_cfg, run_dir):
            return pipeline.run(item_cfg, run_dir, stages, overwrite=overwrite, progress=not no_progress)

        path = run_sweep(cfg, out_dir, run_one, stages=stages)
        for sentence in sweep_summary(sweep_table(out_dir)):
            click.echo(sentence)
        click.echo(f"sweep: {path}")
        if not no_report:
            click.echo(f"sweep report: {write_sweep_report(out_dir)}")
        return
    executor = executor or cfg.cluster.executor
    shards = shards or cfg.cluster.shards
    if shard and (executor != "inline" or shards > 1):
        raise InputError("--shard K/N: runs one shard by hand; it cannot be combined with --executor/--shards")
    if executor != "inline" or shards > 1:
        from latent_bias_probe.pipeline.cluster import run_sharded

        results = run_sharded(
            cfg, out_dir, executor, shards, stages, limit_cases=limit_cases, overwrite=overwrite,
            progress=not no_progress, poll_s=cfg.cluster.poll_s,
        )
    else:
        results = pipeline.run(
            cfg, out_dir, stages, limit_cases=limit_cases, shard=shard, overwrite=overwrite, progress=not no_progress
        )
    click.echo(summary_table_text(results))
    click.echo(f"results: {out_dir / 'results.json'}")


@main.command()
@_common_run_options
@click.option("--out", type=click.Path(file_okay=False), required=True, help="Run directory.")
@_errors_to_exit_codes
def extract(config, limit_cases, overrides, shard, overwrite, no_progress, trust_remote_code, out):
    """Render the benchmark and run the model only: DIR/cache.h5 and DIR/predictions.csv."""
    from latent_bias_probe import pipeline

    cfg = _load(config, overrides, trust_remote_code)
    pipeline.run(cfg, Path(out), ("extract",), limit_cases=limit_cases, shard=shard, overwrite=overwrite, progress=not no_progress)
    click.echo(f"cache: {Path(out) / 'cache.h5'}\npredictions: {Path(out) / 'predictions.csv'}")


@main.command()
@click.argument("run_dir", type=click.Path(file_okay=False))
@_errors_to_exit_codes
def fit(run_dir):
    """Fit probes, steering vectors and the value axis on RUN_DIR/cache.h5; adds F_LV and mFARM (full)."""
    from latent_bias_probe.pipeline.fit import run_fit

    from latent_bias_probe.pipeline.lock import run_lock

    if not Path(run_dir).is_dir():
        raise InputError(f"{run_dir}: no such run directory")
    with run_lock(Path(run_dir), "fit"):
        results = run_fit(Path(run_dir))
    click.echo(summary_table_text(results))
    click.echo(f"probes: {Path(run_dir) / 'probes.h5'}\nresults: {Path(run_dir) / 'results.json'}")


def _number_list(text: str | None, kind: type, option: str) -> list | None:
    if text is None:
        return None
    import math

    try:
        values = [kind(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise InputError(f"{option} {text!r}: expected a comma-separated list of {kind.__name__}s") from None
    if not values:
        raise InputError(f"{option} {text!r}: give at least one value")
    if kind is float and not all(math.isfinite(v) and abs(v) <= 1000 for v in values):
        raise InputError(f"{option} {text!r}: values must be finite numbers within ±1000")
    if kind is int and not all(0 <= v <= 10000 for v in values):
        raise InputError(f"{option} {text!r}: layers must lie in 0..10000")
    return values


@main.command()
@click.argument("run_dir", type=click.Path(file_okay=False))
@click.option("--layers", default=None, metavar="L1,L2,...", help="Layers for mediation (default: every 4th + the value-axis layer).")
@click.option("--alphas", default=None, metavar="A1,A2,...", help="Steering strengths in units of sigma_l.")
@click.option("--trust-remote-code", is_flag=True, help=TRUST_HELP)
@_errors_to_exit_codes
def explain(run_dir, layers, alphas, trust_remote_code):
    """Steering dose-response and LEACE mediation on a fitted RUN_DIR; writes explain.json."""
    from latent_bias_probe.pipeline.explain import run_explain

    if not Path(run_dir).is_dir():
        raise InputError(f"{run_dir}: no such run directory")
    out = run_explain(
        Path(run_dir), _number_list(layers, int, "--layers"), _number_list(alphas, float, "--alphas"),
        trust_remote_code=trust_remote_code,
    )
    for tier, entry in out["tiers"].items():
        for m in entry["mediation"]:
            click.echo(
                f"{tier} layer {m['layer']:>2}: D {m['disparity_before']:.4f} -> {m['disparity_after']:.4f} "
                f"(mediated {_fmt(m['mediated_fraction'])}, random control {_fmt(m['random_control_fraction'])})"
            )
        va = entry["dose_response"].get("value_axis")
        if va:
            click.echo(f"{tier} value axis (layer {va['layer']}): logit slope {_fmt(va['logit_slope'])}, Spearman {_fmt(va['spearman'])}")
    click.echo(f"explain: {Path(run_dir) / 'explain.json'}")


def _fmt(v) -> str:
    return "-" if v is None else f"{v:.3f}"


@main.command()
@click.argument("run_dir", type=click.Path(file_okay=False))
@_errors_to_exit_codes
def report(run_dir):
    """Write the self-contained HTML report RUN_DIR/report.html.

    On a sweep directory (one holding sweep.csv), write RUN_DIR/sweep.html: mFARM and
    FAB against tier and against precision, per model, linking each combination's report.
    """
    from latent_bias_probe.pipeline.report import write_report, write_sweep_report
    from latent_bias_probe.pipeline.sweep import CSV_NAME

    run_dir = Path(run_dir)
    if not (run_dir / "results.json").is_file() and (run_dir / CSV_NAME).is_file():
        click.echo(f"sweep report: {write_sweep_report(run_dir)}")
        return
    click.echo(f"report: {write_report(run_dir)}")


@main.command()
@click.argument("run_dir", type=click.Path(file_okay=False))
@_errors_to_exit_codes
def status(run_dir):
    """Print the shard states of a run made with --executor/--shards."""
    from latent_bias_probe.pipeline.cluster import shard_status

    for line in shard_status(Path(run_dir)):
        click.echo(line)


@main.command()
@click.argument("config", type=click.Path(dir_okay=False))
@click.option("--shards", type=click.IntRange(1, 10_000), default=None, help="Plan for N shard jobs (default: cluster.shards).")
@click.option("--limit-cases", type=click.IntRange(min=1), default=None, help="Plan only the first N cases.")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE", help="Override a config key by dotted path.")
@click.option("--warmup", type=click.IntRange(0, 1000), default=8, show_default=True, help="Prompts timed to estimate the speed (0: no estimate).")
@_errors_to_exit_codes
def plan(config, shards, limit_cases, overrides, warmup):
    """Prompts, tokens, bytes on disk and estimated time of CONFIG, before anything is submitted."""
    from latent_bias_probe.pipeline.plan import format_plan, make_plan

    cfg = _load(config, overrides)
    for line in format_plan(make_plan(cfg, shards or cfg.cluster.shards, limit_cases, warmup)):
        click.echo(line)


@main.command()
@click.argument("run_dir", type=click.Path(file_okay=False))
@_errors_to_exit_codes
def validate(run_dir):
    """Check RUN_DIR: every artifact fresh (made from the current inputs) and results.json against its schema."""
    from latent_bias_probe.pipeline.validate import validate_run

    problems, lines = validate_run(Path(run_dir))
    for line in lines:
        click.echo(line)
    if problems:
        raise InputError(f"{run_dir}: {problems[0]}" + (f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""))
    click.echo(f"{run_dir}: valid")


@main.command()
@click.argument("dirs", nargs=-1, required=True, type=click.Path(file_okay=False))
@click.option("--out", type=click.Path(file_okay=False), required=True, help="Merged run directory.")
@click.option("--overwrite", is_flag=True, help="Replace an existing merged cache.")
@_errors_to_exit_codes
def merge(dirs, out, overwrite):
    """Combine the run directories of shards (--shard K/N) into one run directory."""
    from latent_bias_probe.pipeline.merge import merge_runs

    results = merge_runs(dirs, out, overwrite=overwrite)
    click.echo(summary_table_text(results))
    click.echo(f"merged {len(dirs)} shards -> {out}")


def summary_table_text(results) -> str:
    """The terminal score table of a results mapping."""
    from latent_bias_probe.report.terminal import summary_table

    return summary_table(results["tiers"])


@main.command()
@click.argument("predictions", type=click.Path(dir_okay=False))
@click.option("--alpha", type=click.FloatRange(0, 1, min_open=True, max_open=True), default=0.05, show_default=True)
@click.option("--correction", default="holm", show_default=True, help="Any statsmodels multipletests method, or 'none'.")
@click.option("--accuracy", type=click.Choice(["threshold", "l1"]), default="threshold", show_default=True)
@click.option("--bootstrap", type=click.IntRange(0, 100_000), default=1000, show_default=True, help="Bootstrap resamples for CIs.")
@click.option("--seed", type=click.IntRange(0, 2**32 - 1), default=0, show_default=True)
@click.option("--ci-level", type=click.FloatRange(0.5, 0.999), default=0.95, show_default=True, help="Level of the percentile intervals.")
@click.option("--margin", type=click.FloatRange(1e-6, 0.5), default=0.02, show_default=True, help="TOST equivalence margin for group shifts of P(Yes).")
@click.option("--permutations", type=click.IntRange(0, 100_000), default=200, show_default=True, help="Within-case permutations for the null (0: off).")
@_errors_to_exit_codes
def score(predictions, alpha, correction, accuracy, bootstrap, seed, ci_level, margin, permutations):
    """Print the Part A/C scores of a predictions CSV as JSON."""
    from latent_bias_probe.configs.schema import ConfigError, _check_correction
    from latent_bias_probe.pipeline.score import score_predictions

    try:
        _check_correction(correction, "--correction")
    except ConfigError as err:
        raise InputError(str(err)) from None
    tiers = score_predictions(
        predictions, alpha, correction, accuracy, bootstrap, seed, ci_level=ci_level, margin=margin, permutations=permutations
    )
    click.echo(json.dumps({"tiers": tiers}, indent=2))


@main.command()
@click.argument("a", type=click.Path())
@click.argument("b", type=click.Path())
@click.option("--alpha", type=click.FloatRange(0, 1, min_open=True, max_open=True), default=0.05, show_default=True)
@click.option("--correction", default="holm", show_default=True, help="Any statsmodels multipletests method, or 'none'.")
@click.option("--accuracy", type=click.Choice(["threshold", "l1"]), default="threshold", show_default=True)
@click.option("--bootstrap", type=click.IntRange(1, 100_000), default=1000, show_default=True, help="Paired bootstrap resamples.")
@click.option("--seed", type=click.IntRange(0, 2**32 - 1), default=0, show_default=True)
@click.option("--ci-level", type=click.FloatRange(0.5, 0.999), default=0.95, show_default=True)
@_errors_to_exit_codes
def compare(a, b, alpha, correction, accuracy, bootstrap, seed, ci_level):
    """Paired differences B - A of every score and group shift, per tier, as JSON (runs or predictions CSVs)."""
    from latent_bias_probe.configs.schema import ConfigError, _check_correction
    from latent_bias_probe.pipeline.compare import compare_runs

    try:
        _check_correction(correction, "--correction")
    except ConfigError as err:
        raise InputError(str(err)) from None
    result = compare_runs(a, b, alpha=alpha, correction=correction, n_boot=bootstrap, seed=seed, level=ci_level, accuracy=accuracy)
    click.echo(json.dumps(result, indent=2))


@main.group()
def bench() -> None:
    """The benchmarks: list them, show rendered prompts, build prompt tables."""


@bench.command("list")
@_errors_to_exit_codes
def bench_list():
    """List the benchmarks and their sizes."""
    from latent_bias_probe.benchmarks.registry import benchmark_sizes

    rows = [("name", "task", "cases", "description")]
    for info in benchmark_sizes():
        rows.append((info["name"], info["task"], str(info["cases"]), info["description"]))
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    for r in rows:
        click.echo("  ".join(c.ljust(w) for c, w in zip(r[:3], widths)) + "  " + r[3])


def _bench_config(name: str, n_cases: int | None, seed: int | None, path: str | None):
    from latent_bias_probe.benchmarks.registry import BENCHMARKS
    from latent_bias_probe.configs.schema import config_from_dict

    if name not in BENCHMARKS:
        raise InputError(f"benchmark {name!r}: unknown (known: {', '.join(sorted(BENCHMARKS))})")
    # show/build export every case as it renders, duplicates included (runs collapse them)
    bench_cfg: dict[str, Any] = {"source": name, "duplicates": "keep"}
    if n_cases is not None:
        bench_cfg["n_cases"] = n_cases
    if seed is not None:
        bench_cfg["seed"] = seed
    default_path = getattr(BENCHMARKS[name], "default_path", None)
    if path or default_path:
        bench_cfg["path"] = str(path or default_path)
    return config_from_dict({"benchmark": bench_cfg}, Path.cwd(), f"benchmark {name}")


@bench.command("show")
@click.argument("name")
@click.option("--case", "case_index", type=click.IntRange(min=1), default=1, show_default=True, help="Which case (1-based).")
@click.option("--tier", type=click.Choice(TIERS), default=None, help="One tier (default all).")
@click.option("--variant", default="Black-Female", show_default=True, help="The demographic variant shown beside BASE.")
@click.option("--path", type=click.Path(), default=None, help="Source file or folder, where the benchmark reads one.")
@_errors_to_exit_codes
def bench_show(name, case_index, tier, variant, path):
    """Show a case of benchmark NAME rendered as BASE and one variant."""
    from latent_bias_probe.benchmarks.registry import render_benchmark

    from latent_bias_probe.benchmarks.registry import BENCHMARKS

    is_generator = name in BENCHMARKS and BENCHMARKS[name].generator
    cfg = _bench_config(name, case_index if is_generator else None, None, path)
    rendered = render_benchmark(cfg.benchmark)
    case_ids = list(dict.fromkeys(p.case_id for p in rendered.prompts))
    if case_index > len(case_ids):
        raise InputError(f"--case {case_index}: benchmark {name!r} has {len(case_ids)} cases")
    case_id = case_ids[case_index - 1]
    shown = [
        p for p in rendered.prompts
        if p.case_id == case_id and p.variant in (BASE, variant) and (tier is None or p.tier == tier)
    ]
    if not any(p.variant == variant for p in shown):
        raise InputError(f"--variant {variant!r}: not a variant of this benchmark (e.g. Black-Female)")
    click.echo(f"# {name}: case {case_id} (label {shown[0].label})\n# system: {shown[0].system}")
    for p in shown:
        click.echo(f"\n--- tier {p.tier} | {p.variant} ---\n{p.user}")
    for t, fields in rendered.degraded.items():
        if fields and (tier is None or t == tier):
            click.echo(f"\n# tier {t} degraded: missing {', '.join(fields)}")


MIMIC_BUILDS = {"mimic-ed": "ed_triage", "mimic-opioid": "opioid"}


@bench.command("build")
@click.argument("name")
@click.option("--out", type=click.Path(dir_okay=False), required=True, help="Output prompts.csv.")
@click.option("--n-cases", type=click.IntRange(min=1), default=None, help="Number of cases (default: all / 60 for generators).")
@click.option("--seed", type=int, default=None, help="Generator / sampling seed (MIMIC: the builders' seed).")
@click.option("--path", type=click.Path(), default=None, help="Source file or folder, where the benchmark reads one.")
@click.option("--mimic-dir", type=click.Path(file_okay=False), default=None, help="MIMIC-IV root (hosp/, icu/, ed/, note/) for mimic-ed / mimic-opioid.")
@click.option("--split", type=click.Choice(["train", "validation", "test", "all"]), default="all", show_default=True, help="MIMIC split to write.")
@_errors_to_exit_codes
def bench_build(name, out, n_cases, seed, path, mimic_dir, split):
    """Write the rendered prompts of benchmark NAME to a CSV.

    NAME is a benchmark of 'probe bench list', or mimic-ed / mimic-opioid to rebuild
    the published mFARM benchmarks from a credentialed MIMIC-IV copy.
    """
    import pandas as pd

    from latent_bias_probe.configs.files import atomic_path

    if name in MIMIC_BUILDS:
        df = _build_mimic_table(name, mimic_dir, split, seed)
    else:
        from latent_bias_probe.benchmarks.registry import render_benchmark

        cfg = _bench_config(name, n_cases, seed, path)
        rendered = render_benchmark(cfg.benchmark)
        df = pd.DataFrame(
            {
                "case_id": [p.case_id for p in rendered.prompts],
                "tier": [p.tier for p in rendered.prompts],
                "variant": [p.variant for p in rendered.prompts],
                "race": [p.race for p in rendered.prompts],
                "gender": [p.gender for p in rendered.prompts],
                "label": ["" if p.label is None else str(p.label) for p in rendered.prompts],
                "system": [p.system for p in rendered.prompts],
                "text": [p.user for p in rendered.prompts],
            }
        )
    with atomic_path(out) as tmp:
        df.to_csv(tmp, index=False)
    click.echo(f"{len(df)} prompts from {df['case_id'].nunique()} cases -> {out}")


def _build_mimic_table(name: str, mimic_dir: str | None, split: str, seed: int | None):
    from latent_bias_probe.benchmarks.mimic import build_prompts_table
    from latent_bias_probe.configs.schema import MimicOptions

    if mimic_dir is None:
        raise InputError(f"bench build {name}: --mimic-dir is required (the MIMIC-IV root folder)")
    if not Path(mimic_dir).is_dir():
        raise InputError(f"--mimic-dir {mimic_dir!r}: folder not found")
    options = MimicOptions() if seed is None else MimicOptions(seed=seed)
    return build_prompts_table(MIMIC_BUILDS[name], mimic_dir, split=split, options=options)


if __name__ == "__main__":
    main()
