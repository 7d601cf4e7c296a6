"""Sharded jobs (submitit), fixed batches, devices and the planner, on the tiny model."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import h5py
import numpy as np
import pytest

from conftest import run_probe, write_config

SECTIONS = dict(benchmark={"n_cases": 4, "seed": 7, "tiers": ["high", "low"]}, extract={"batch_size": 4, "batch_check": 0, "threads": 1})


def _datasets(path: Path) -> dict[str, np.ndarray]:
    out = {}
    with h5py.File(path, "r") as f:
        f.visititems(lambda name, obj: out.__setitem__(name, obj[()]) if isinstance(obj, h5py.Dataset) else None)
    return out


# --------------------------------------------------------------------------- batches


def test_batches_are_fixed_groups_of_whole_cases():
    from latent_bias_probe.extract.batching import case_groups, plan_batches, shard_cases

    cases = ["c3", "c1", "c2", "c10"]
    rows_case = [c for c in cases for _ in range(2) for _ in range(3)]  # 2 tiers x 3 prompts
    rows_tier = [t for _ in cases for t in ("high", "low") for _ in range(3)]
    assert case_groups(cases, batch_size=6, prompts_per_case_tier=3) == [["c1", "c10"], ["c2", "c3"]]
    batches = plan_batches(rows_case, rows_tier, batch_size=6, prompts_per_case_tier=3)
    assert sorted(len(b) for b in batches) == [6, 6, 6, 6]
    for b in batches:
        assert len({rows_tier[i] for i in b}) == 1  # one tier per batch
        assert {rows_case[i] for i in b} in ({"c1", "c10"}, {"c2", "c3"})
    # a case's prompts larger than the batch: near-equal chunks of that case only
    small = plan_batches(["a"] * 13, ["high"] * 13, batch_size=8, prompts_per_case_tier=13)
    assert [len(b) for b in small] == [7, 6]
    groups = case_groups(cases, 3, 3)
    assert shard_cases(groups, 1, 2) | shard_cases(groups, 2, 2) == set(cases)
    assert not shard_cases(groups, 1, 2) & shard_cases(groups, 2, 2)


# --------------------------------------------------------------------------- inline = local = debug


@pytest.fixture(scope="module")
def sharded_runs(tmp_path_factory, tiny_model_dir):
    root = tmp_path_factory.mktemp("cluster")
    cfg = write_config(root / "c.yaml", tiny_model_dir, **SECTIONS)
    runs = {}
    for name, args in {
        "plain": [],
        "local3": ["--executor", "local", "--shards", "3"],
        "debug3": ["--executor", "inline", "--shards", "3"],
    }.items():
        out = root / name
        res = run_probe("run", str(cfg), "--out", str(out), "--no-explain", "--no-report", "--no-progress", *args)
        assert res.returncode == 0, res.stderr
        runs[name] = out
    return cfg, runs


def test_local_and_debug_shards_equal_the_inline_run(sharded_runs):
    _, runs = sharded_runs
    plain = (runs["plain"] / "predictions.csv").read_bytes()
    reference = _datasets(runs["plain"] / "cache.h5")
    for name in ("local3", "debug3"):
        assert (runs[name] / "predictions.csv").read_bytes() == plain, name
        merged = _datasets(runs[name] / "cache.h5")
        assert sorted(merged) == sorted(reference)
        for key in reference:
            if key.startswith(("outputs/", "acts/", "prompts/", "done")):
                np.testing.assert_array_equal(merged[key], reference[key], err_msg=f"{name}: {key}")
        assert sorted(p.name for p in (runs[name] / "shards").iterdir() if p.is_dir() and p.name != "logs") == ["1-of-3", "2-of-3", "3-of-3"]
    a = json.loads((runs["plain"] / "results.json").read_text())["tiers"]
    b = json.loads((runs["local3"] / "results.json").read_text())["tiers"]
    assert a == b  # every score, the latent ones included


def test_status_prints_every_shard(sharded_runs):
    _, runs = sharded_runs
    res = run_probe("status", str(runs["local3"]))
    assert res.returncode == 0, res.stderr
    assert res.stdout.count(": done") == 3 and "merged: yes" in res.stdout
    missing = run_probe("status", str(runs["plain"]))
    assert missing.returncode == 2 and "status.json" in missing.stderr


def test_a_killed_shard_is_reported_and_only_it_is_redone(tmp_path, tiny_model_dir):
    cfg = write_config(tmp_path / "c.yaml", tiny_model_dir, **SECTIONS)
    out = tmp_path / "run"
    env = {"LATENT_BIAS_PROBE_KILL_SHARD": "2"}
    first = run_probe("run", str(cfg), "--out", str(out), "--executor", "local", "--shards", "3", "--no-fit", "--no-report",
                      "--no-progress", env=env)
    assert first.returncode == 1 and "Traceback" not in first.stderr
    assert "1 of 3 shards failed" in first.stderr and "shard 2/3" in first.stderr
    assert not (out / "cache.h5").exists()  # merge refused an incomplete set
    done = {k: (out / "shards" / f"{k}-of-3" / "predictions.csv").stat().st_mtime_ns for k in (1, 3)}
    with h5py.File(out / "shards" / "2-of-3" / "cache.h5", "r") as f:
        assert 0 < f["done"][()].sum() < len(f["done"])  # killed mid-run, after its first batch
    merge = run_probe("merge", str(out / "shards" / "1-of-3"), str(out / "shards" / "3-of-3"), "--out", str(tmp_path / "m"))
    assert merge.returncode == 2 and "2/3 missing" in merge.stderr

    again = run_probe("run", str(cfg), "--out", str(out), "--executor", "local", "--shards", "3", "--no-fit", "--no-report", "--no-progress")
    assert again.returncode == 0, again.stderr
    assert "submitted 1 of 3 shards" in again.stderr
    assert {k: (out / "shards" / f"{k}-of-3" / "predictions.csv").stat().st_mtime_ns for k in (1, 3)} == done
    plain = tmp_path / "plain"
    assert run_probe("extract", str(cfg), "--out", str(plain), "--no-progress").returncode == 0
    assert (out / "predictions.csv").read_bytes() == (plain / "predictions.csv").read_bytes()


def test_more_shards_than_case_groups_is_refused(tmp_path, tiny_model_dir):
    cfg = write_config(tmp_path / "c.yaml", tiny_model_dir, **SECTIONS)
    res = run_probe("run", str(cfg), "--out", str(tmp_path / "r"), "--executor", "local", "--shards", "5", "--no-progress")
    assert res.returncode == 2 and "--shards 5" in res.stderr and "at most 4" in res.stderr
    assert not (tmp_path / "r").exists()


# --------------------------------------------------------------------------- Slurm submission with a fake sbatch


def test_slurm_job_array_matches_the_cluster_settings(tmp_path, monkeypatch):
    from latent_bias_probe.configs.schema import config_from_dict
    from latent_bias_probe.pipeline.cluster import _submit, shard_plans

    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    record = tmp_path / "sbatch_calls"
    fake = bin_dir / "sbatch"
    fake.write_text(f'#!/bin/sh\nfor a in "$@"; do last="$a"; done\ncp "$last" {record}.sh\necho "$@" > {record}.args\necho "Submitted batch job 4242"\n')
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    srun = bin_dir / "srun"  # submitit checks that srun exists
    srun.write_text("#!/bin/sh\nexit 0\n")
    srun.chmod(srun.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    cfg = config_from_dict({"cluster": {
        "executor": "slurm", "shards": 3, "partition": "gpu-a100", "account": "audit", "timeout_min": 90,
        "gpus_per_shard": 1, "cpus_per_shard": 8, "array_parallelism": 2, "sbatch_extra": {"qos": "high", "constraint": "a100"},
    }}, tmp_path)
    jobs = _submit(cfg, "slurm", shard_plans(tmp_path / "run", 3), None, False, tmp_path / "logs")
    assert sorted(jobs) == [1, 2, 3] and {str(j.job_id) for j in jobs.values()} == {"4242_0", "4242_1", "4242_2"}
    script = Path(f"{record}.sh").read_text()
    lines = {line.split()[1].split("=")[0]: line.split()[1] for line in script.splitlines() if line.startswith("#SBATCH")}
    assert lines["--array"] == "--array=0-2%2"
    assert lines["--partition"] == "--partition=gpu-a100"
    assert lines["--account"] == "--account=audit"
    assert lines["--time"] == "--time=90"
    assert lines["--gpus-per-node"] == "--gpus-per-node=1"
    assert lines["--cpus-per-task"] == "--cpus-per-task=8"
    assert lines["--qos"] == "--qos=high" and lines["--constraint"] == "--constraint=a100"
    assert lines["--job-name"] == "--job-name=latent-bias-probe"


# --------------------------------------------------------------------------- settings the machine cannot honour


@pytest.mark.parametrize(
    "override, key",
    [
        ("cluster.shards=0", "cluster.shards"),
        ("cluster.executor=ray", "cluster.executor"),
        ("cluster.timeout_min=0", "cluster.timeout_min"),
        ("cluster.sbatch_extra={'bad key': x}", "cluster.sbatch_extra"),
        ("cluster.gpus_per_shard=-1", "cluster.gpus_per_shard"),
        ("model.device=gpu", "model.device"),
        ("model.device_map=everywhere", "model.device_map"),
        ("model.device_map={'model.layers.0': tpu}", "model.device_map"),
        ("model.attn_implementation=fast", "model.attn_implementation"),
        ("model.dtype=float8", "model.dtype"),
    ],
)
def test_bad_cluster_and_device_settings_exit_2_naming_the_key(tmp_path, tiny_model_dir, override, key):
    cfg = write_config(tmp_path / "c.yaml", tiny_model_dir, **SECTIONS)
    res = run_probe("run", str(cfg), "--out", str(tmp_path / "r"), "--set", override, "--no-progress")
    assert res.returncode == 2, res.stderr
    assert key in res.stderr and "Traceback" not in res.stderr
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize("override", ["model.device=cuda", "model.device=cuda:3", "model.device_map={'model.layers.0': 0}"])
def test_a_gpu_placement_without_gpus_exits_2(tmp_path, tiny_model_dir, override):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")  # the message is for machines without it
    cfg = write_config(tmp_path / "c.yaml", tiny_model_dir, **SECTIONS)
    res = run_probe("extract", str(cfg), "--out", str(tmp_path / "r"), "--set", override, "--no-progress")
    assert res.returncode == 2 and "Traceback" not in res.stderr
    assert ("model.device" in res.stderr) and "GPU" in res.stderr or "CUDA" in res.stderr
    assert not (tmp_path / "r").exists()


def test_device_map_auto_on_the_cpu_gives_the_plain_load_s_p_yes(tiny_model_dir):
    from latent_bias_probe.configs.schema import ModelConfig
    from latent_bias_probe.extract.hf_runner import HFRunner
    from latent_bias_probe.extract.model import load_model

    texts = ["<|im_start|>user\nIs the sky blue?<|im_end|>\n<|im_start|>assistant\n", "Hello there, yes or no?"]
    plain = load_model(ModelConfig(name=str(tiny_model_dir), device="cpu"))
    mapped = load_model(ModelConfig(name=str(tiny_model_dir), device_map="auto"))
    assert mapped.device == "cpu"  # accelerate placed every module on the only device there is
    a = HFRunner(plain).forward(texts).p_yes
    b = HFRunner(mapped).forward(texts).p_yes
    np.testing.assert_allclose(a, b, atol=1e-6)
    explicit = load_model(ModelConfig(name=str(tiny_model_dir), device_map={"": "cpu"}))
    np.testing.assert_allclose(HFRunner(explicit).forward(texts).p_yes, a, atol=1e-6)


@pytest.mark.parametrize("attn", ["eager", "sdpa"])
def test_batch_and_padding_invariance_for_each_attention(tiny_model_dir, attn):
    from latent_bias_probe.configs.schema import ModelConfig
    from latent_bias_probe.extract.hf_runner import HFRunner
    from latent_bias_probe.extract.model import load_model

    runner = HFRunner(load_model(ModelConfig(name=str(tiny_model_dir), attn_implementation=attn)))
    texts = ["short one", "a considerably longer prompt that needs more tokens than the first", "mid length prompt here"]
    batched = runner.forward(texts).p_yes
    alone = np.array([runner.forward([t]).p_yes[0] for t in texts])
    np.testing.assert_allclose(batched, alone, atol=1e-5)


def test_provenance_is_recorded(sharded_runs):
    _, runs = sharded_runs
    results = json.loads((runs["plain"] / "results.json").read_text())
    prov = results["provenance"]
    assert prov["device"] == "cpu" and prov["libraries"]["torch"] and "python" in prov
    with h5py.File(runs["plain"] / "cache.h5", "r") as f:
        assert json.loads(f.attrs["provenance"])["device"] == "cpu"


# --------------------------------------------------------------------------- plan


def test_plan_counts_prompts_bytes_and_estimates_time(tmp_path, tiny_model_dir):
    cfg = write_config(tmp_path / "c.yaml", tiny_model_dir, **SECTIONS)
    res = run_probe("plan", str(cfg), "--shards", "2", "--warmup", "4", "--set", "extract.batch_check=6")
    assert res.returncode == 0, res.stderr
    out = res.stdout
    assert "cases 4, prompts 104" in out  # 4 cases x 2 tiers x 13 variants
    assert "4 layers x d_model 64" in out
    assert "acts/resid_post/last: 104.0 KiB" in out  # 4 x 104 x 64 x 4 bytes
    assert "shards: 2, prompts per shard 52..52" in out
    assert "tokens/s" in out and "estimated extraction" in out and "estimated explain" in out
    assert "for the batch check: 6 prompts re-run alone" in out
    assert not (tmp_path / "runs").exists()
