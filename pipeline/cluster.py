"""Sharded jobs through submitit: N shard runs, merged, then fit/explain/report once.

``probe run CONFIG --executor inline|local|slurm --shards N`` (or the ``cluster:``
section of the config):

- ``inline``: the N shards one after another in this process (submitit's
  ``DebugExecutor``); with one shard, simply the ordinary run.
- ``local``: N subprocesses on this machine (submitit's ``LocalExecutor``), each
  pinned to its own GPU when there are GPUs (``CUDA_VISIBLE_DEVICES`` per job), with
  ``cluster.timeout_min`` always set.
- ``slurm``: one Slurm job array (submitit's ``AutoExecutor``): partition, account,
  time limit, GPUs and CPUs per shard, array parallelism and extra sbatch options
  from ``cluster:``.

Each shard is an ordinary, resumable run directory ``DIR/shards/K-of-N/`` made by
``probe extract --shard K/N``; a shard whose ``predictions.csv`` is fresh and whose
config is this job's is done and is not submitted again. When every shard is done,
:func:`pipeline.merge.merge_runs` merges them into ``DIR`` and the later stages run
once there. Because batches are fixed groups of whole cases
(:mod:`extract.batching`), the merged outputs equal an inline run exactly.

``DIR/shards/status.json`` records the jobs (ids, states, log paths); ``probe status
DIR`` reads it.
"""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Sequence

from latent_bias_probe.configs.errors import InputError, JobFailed
from latent_bias_probe.configs.files import atomic_write_text
from latent_bias_probe.configs.hashes import run_config_sha256
from .artifacts import RunDir

log = logging.getLogger(__name__)

EXECUTORS = ("inline", "local", "slurm")
SHARDS_DIR = "shards"
STATUS_NAME = "status.json"
LOG_TAIL_LINES = 20
#: tests only: the shard with this index kills itself (SIGKILL) after writing its first batch
KILL_SHARD_ENV = "LATENT_BIAS_PROBE_KILL_SHARD"


@dataclass(frozen=True)
class ShardPlan:
    """Shard ``index`` of ``count``, in ``folder``."""

    index: int
    count: int
    folder: Path

    @property
    def label(self) -> str:
        return f"{self.index}/{self.count}"


def shard_plans(out_dir: Path, count: int) -> list[ShardPlan]:
    """``DIR/shards/K-of-N`` for K = 1..N."""
    return [ShardPlan(k, count, out_dir / SHARDS_DIR / f"{k}-of-{count}") for k in range(1, count + 1)]


def shard_done(plan: ShardPlan, cfg) -> bool:
    """Whether the shard's outputs are complete, fresh and made from this job's config."""
    from .results import load_run_config

    run = RunDir(plan.folder)
    if not run.is_fresh("predictions.csv"):
        return False
    try:
        return run_config_sha256(load_run_config(plan.folder)) == run_config_sha256(cfg)
    except InputError:
        return False


def run_shard(config: dict[str, Any], cwd: str, folder: str, index: int, count: int,
              limit_cases: int | None, overwrite: bool, gpu: str | None) -> str:
    """The job of one shard (runs in the submitit worker): ``probe extract --shard K/N``."""
    if gpu is not None:
        os.environ["CUDA_VISIBLE_DEVICES"] = gpu  # before torch is imported in this process
    os.chdir(cwd)
    if os.environ.get(KILL_SHARD_ENV) == str(index):
        _die_after_first_batch()
    from latent_bias_probe import pipeline
    from latent_bias_probe.configs.schema import config_from_dict

    cfg = config_from_dict(config, Path(cwd), f"shard {index}/{count} config")
    pipeline.run(cfg, folder, ("extract",), limit_cases=limit_cases, shard=f"{index}/{count}",
                 overwrite=overwrite, progress=False)
    return folder


def _die_after_first_batch() -> None:
    """Make this process die like a preempted job right after its first batch is on disk."""
    import signal

    from latent_bias_probe.extract.cache import CacheWriter

    write = CacheWriter.write_batch

    def write_then_die(self, *args, **kwargs):
        write(self, *args, **kwargs)
        os.kill(os.getpid(), signal.SIGKILL)

    CacheWriter.write_batch = write_then_die


def _gpu_count() -> int:
    try:
        import torch

        return torch.cuda.device_count() if torch.cuda.is_available() else 0
    except ImportError:  # pragma: no cover
        return 0


def make_executor(name: str, folder: Path, cluster, n_jobs: int):
    """A submitit executor for ``name`` with the ``cluster:`` settings applied."""
    import submitit

    if name == "inline":
        return submitit.DebugExecutor(folder=folder)
    if name == "local":
        executor = submitit.LocalExecutor(folder=folder)
        executor.update_parameters(timeout_min=cluster.timeout_min)
        return executor
    if name == "slurm":
        import shutil

        if shutil.which("srun") is None or shutil.which("sbatch") is None:
            raise InputError("--executor slurm: no Slurm on this machine (srun/sbatch not found); use local or inline")
        executor = submitit.AutoExecutor(folder=folder, cluster="slurm")
        params: dict[str, Any] = {
            "timeout_min": cluster.timeout_min,
            "slurm_array_parallelism": cluster.array_parallelism or n_jobs,
            "cpus_per_task": cluster.cpus_per_shard,
            "gpus_per_node": cluster.gpus_per_shard,
            "name": cluster.job_name,
        }
        if cluster.partition:
            params["slurm_partition"] = cluster.partition
        if cluster.account:
            params["slurm_account"] = cluster.account
        if cluster.sbatch_extra:
            params["slurm_additional_parameters"] = dict(cluster.sbatch_extra)
        executor.update_parameters(**params)
        return executor
    raise InputError(f"--executor {name!r}: use one of {', '.join(EXECUTORS)}")


def _log_tail(job) -> str:
    lines: list[str] = []
    for path in (getattr(job.paths, "stderr", None), getattr(job.paths, "stdout", None)):
        try:
            lines = Path(path).read_text(encoding="utf-8", errors="replace").splitlines()
        except (OSError, TypeError):
            continue
        if lines:
            break
    return "\n".join("    " + line for line in lines[-LOG_TAIL_LINES:])


def _state(job) -> str:
    """pending, running, done or failed, from submitit's job state."""
    try:
        if job.done():
            return "failed" if job.exception() is not None else "done"
        state = str(job.state).upper()
    except Exception:  # noqa: BLE001 - a scheduler query failing is a state, not a crash
        return "unknown"
    return "pending" if state in ("PENDING", "QUEUED", "REQUEUED", "UNKNOWN") else "running"


def _write_status(out_dir: Path, executor: str, plans: Sequence[ShardPlan], states: dict[int, str], jobs: dict[int, Any]) -> None:
    body = {
        "executor": executor,
        "shards": len(plans),
        "jobs": {
            str(p.index): {
                "folder": str(p.folder),
                "state": states.get(p.index, "unknown"),
                "job_id": str(getattr(jobs.get(p.index), "job_id", "")) or None,
                "log": str(getattr(getattr(jobs.get(p.index), "paths", None), "stderr", "")) or None,
            }
            for p in plans
        },
    }
    atomic_write_text(out_dir / SHARDS_DIR / STATUS_NAME, json.dumps(body, indent=2) + "\n")


def run_sharded(
    cfg,
    out_dir: str | Path,
    executor: str,
    shards: int,
    stages: Iterable[str],
    limit_cases: int | None = None,
    overwrite: bool = False,
    progress: bool = True,
    poll_s: float = 2.0,
) -> dict[str, Any]:
    """Run the extraction as ``shards`` submitit jobs, merge, then the later ``stages`` on DIR."""
    from latent_bias_probe import pipeline
    from .merge import merge_runs

    out = Path(out_dir)
    if executor not in EXECUTORS:
        raise InputError(f"--executor {executor!r}: use one of {', '.join(EXECUTORS)}")
    if not 1 <= shards <= 10_000:
        raise InputError(f"--shards: must lie in 1..10000, got {shards}")
    stages = tuple(stages)
    if shards == 1 and executor == "inline":
        return pipeline.run(cfg, out, stages, limit_cases=limit_cases, overwrite=overwrite, progress=progress)
    _check_shard_count(cfg, shards, limit_cases)
    plans = shard_plans(out, shards)
    todo = [p for p in plans if overwrite or not shard_done(p, cfg)]
    states = {p.index: "done" for p in plans if p not in todo}
    jobs: dict[int, Any] = {}
    if todo:
        (out / SHARDS_DIR).mkdir(parents=True, exist_ok=True)
        jobs = _submit(cfg, executor, todo, limit_cases, overwrite, out / SHARDS_DIR / "logs")
        log.info("%s: submitted %d of %d shards (%s)", out, len(todo), shards, executor)
        _wait(out, executor, plans, states, jobs, progress, poll_s)
    _write_status(out, executor, plans, states, jobs)
    failed = [p for p in plans if states.get(p.index) != "done"]
    if failed:
        lines = [f"{len(failed)} of {shards} shards failed; run the same command again to redo only those:"]
        for p in failed:
            job = jobs.get(p.index)
            err = job.exception() if job is not None and job.done() else None
            reason = str(err).strip().splitlines()[-1] if err is not None else states.get(p.index, "unknown")
            lines.append(f"  shard {p.label} ({p.folder}): {reason}")
            if job is not None:
                tail = _log_tail(job)
                if tail:
                    lines.append(f"  last lines of {job.paths.stderr}:\n{tail}")
        raise JobFailed("\n".join(lines))
    merge_runs([p.folder for p in plans], out, overwrite=True)
    later = tuple(s for s in stages if s != "extract")
    return pipeline.run(cfg, out, later, progress=progress)


def _check_shard_count(cfg, shards: int, limit_cases: int | None) -> None:
    """Refuse more shards than groups of cases (an empty shard would fail after submission)."""
    from latent_bias_probe.benchmarks.registry import render_benchmark
    from latent_bias_probe.extract.batching import case_groups
    from .extract import prompts_per_case_tier

    rendered = render_benchmark(cfg.benchmark, limit_cases=limit_cases)
    case_ids = list(dict.fromkeys(p.case_id for p in rendered.prompts))[: limit_cases or None]
    n_groups = len(case_groups(case_ids, cfg.extract.batch_size, prompts_per_case_tier(cfg)))
    if shards > n_groups:
        raise InputError(
            f"--shards {shards}: the job has only {n_groups} batch group(s) of whole cases "
            f"({len(case_ids)} cases, batch size {cfg.extract.batch_size}); use at most {n_groups}"
        )


def _submit(cfg, executor_name: str, todo: Sequence[ShardPlan], limit_cases, overwrite, folder: Path) -> dict[int, Any]:
    config = cfg.to_dict()
    cwd = str(Path.cwd())
    jobs: dict[int, Any] = {}
    if executor_name == "local":
        n_gpus = _gpu_count()
        for i, p in enumerate(todo):
            executor = make_executor("local", folder, cfg.cluster, len(todo))
            gpu = str(i % n_gpus) if n_gpus else None
            executor.update_parameters(gpus_per_node=1 if n_gpus else 0, visible_gpus=[int(gpu)] if gpu else [])
            jobs[p.index] = executor.submit(run_shard, config, cwd, str(p.folder), p.index, p.count, limit_cases, overwrite, gpu)
        return jobs
    executor = make_executor(executor_name, folder, cfg.cluster, len(todo))
    submitted = executor.map_array(
        run_shard,
        [config] * len(todo), [cwd] * len(todo), [str(p.folder) for p in todo], [p.index for p in todo],
        [p.count for p in todo], [limit_cases] * len(todo), [overwrite] * len(todo), [None] * len(todo),
    )
    return {p.index: job for p, job in zip(todo, submitted)}


def _wait(out: Path, executor: str, plans, states: dict[int, str], jobs: dict[int, Any], progress: bool, poll_s: float) -> None:
    from tqdm.auto import tqdm

    if executor == "inline":  # DebugExecutor runs a job when its result is asked for
        for index, job in jobs.items():
            try:
                job.result()
            except Exception:  # noqa: BLE001 - recorded as the shard's failure below
                pass
            states[index] = _state(job)
            _write_status(out, executor, plans, states, jobs)
        return
    last = ""
    with tqdm(total=len(jobs), desc="shards", unit="shard", disable=not progress) as bar:
        while True:
            for index, job in jobs.items():
                states[index] = _state(job)
            counts = {s: sum(1 for i in jobs if states[i] == s) for s in ("pending", "running", "done", "failed")}
            line = ", ".join(f"{n} {s}" for s, n in counts.items())
            if line != last:
                log.info("shards: %s", line)
                _write_status(out, executor, plans, states, jobs)
                last = line
            bar.n = counts["done"] + counts["failed"]
            bar.set_postfix_str(line)
            bar.refresh()
            if counts["done"] + counts["failed"] == len(jobs):
                return
            time.sleep(poll_s)


def shard_status(run_dir: str | Path) -> list[str]:
    """One line per shard of a sharded run (``probe status DIR``)."""
    out = Path(run_dir)
    path = out / SHARDS_DIR / STATUS_NAME
    if not path.is_file():
        raise InputError(f"{path}: not found ({out} was not run with --executor and --shards)")
    try:
        status = json.loads(path.read_text(encoding="utf-8"))
        jobs = status["jobs"]
    except (OSError, ValueError, KeyError, TypeError):
        raise InputError(f"{path}: unreadable shard status") from None
    lines = [f"{out}: {status.get('shards')} shards, executor {status.get('executor')}"]
    for index in sorted(jobs, key=int):
        job = jobs[index]
        folder = Path(job.get("folder", ""))
        state = "done" if RunDir(folder).is_fresh("predictions.csv") else job.get("state", "unknown")
        if state == "done" and job.get("state") != "done":
            state = "done"
        lines.append(f"  shard {index}/{status.get('shards')}: {state:8} job {job.get('job_id') or '-'}  {folder}")
    merged = RunDir(out).is_fresh("predictions.csv")
    lines.append(f"  merged: {'yes' if merged else 'no'}")
    return lines
