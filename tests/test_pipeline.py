"""The whole extract → score pipeline on a tiny model, through the real CLI."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import pytest

from conftest import ROOT, run_probe, write_config
from latent_bias_probe.extract.cache import Cache

PRED_COLUMNS = ["case_id", "tier", "variant", "race", "gender", "label", "p_yes", "p_yes_vocab", "first_token", "option_mass"]
SCORE_KEYS = {"mean_difference", "absolute_deviation", "variance_heterogeneity", "ks_distribution", "correlation_difference", "score"}


def _datasets(path: Path) -> dict[str, np.ndarray]:
    out = {}
    with h5py.File(path, "r") as f:
        f.visititems(lambda name, obj: out.__setitem__(name, obj[()]) if isinstance(obj, h5py.Dataset) else None)
    return out


def assert_same_cache(a: Path, b: Path) -> None:
    da, db = _datasets(a), _datasets(b)
    assert sorted(da) == sorted(db)
    for name in da:
        np.testing.assert_array_equal(da[name], db[name], err_msg=name)


def test_run_writes_every_output_per_contract(tmp_path, tiny_config):
    out = tmp_path / "run"
    res = run_probe("run", str(tiny_config), "--out", str(out), "--no-progress")
    assert res.returncode == 0, res.stderr
    for name in ("cache.h5", "predictions.csv", "results.json", "config.json"):
        assert (out / name).is_file(), name
    assert not [p for p in out.iterdir() if p.name.startswith(".")], "temporary files left behind"

    pred = pd.read_csv(out / "predictions.csv", keep_default_na=False)
    assert list(pred.columns) == PRED_COLUMNS
    assert len(pred) == 4 * 2 * 13
    base = pred[pred.variant == "BASE"]
    assert (base.race == "BASE").all() and (base.gender == "BASE").all()
    assert set(pred.label.astype(str)) <= {"0", "1"}
    assert pred.p_yes.between(0, 1).all()
    assert pred.option_mass.between(0, 1).all() and (pred.option_mass >= pred.p_yes_vocab - 1e-6).all()

    results = json.loads((out / "results.json").read_text())
    assert set(results["tiers"]) == {"high", "low"}
    for tier in results["tiers"].values():
        assert tier["n_cases"] == 4 and tier["n_prompts"] == 52
        assert set(tier["mfarm"]) == SCORE_KEYS
        assert 0 <= tier["accuracy"] <= 1
        assert tier["fab"] is not None
    assert results["model"]["sha256"] and len(results["model"]["sha256"]) == 64
    assert results["config"]["benchmark"]["seed"] == 7

    # probe score on the predictions gives the same Part A/C numbers
    score = run_probe("score", str(out / "predictions.csv"), "--bootstrap", "50")
    assert score.returncode == 0, score.stderr
    printed = json.loads(score.stdout)["tiers"]
    for tier in ("high", "low"):
        assert printed[tier]["mfarm"] == results["tiers"][tier]["mfarm"]
        assert printed[tier]["accuracy"] == results["tiers"][tier]["accuracy"]


def test_cache_schema_of_a_real_run(tmp_path, tiny_model_dir):
    cfg = write_config(
        tmp_path / "c.yaml", tiny_model_dir,
        extract={"sites": ["resid_post", "attn_out", "mlp_out"], "positions": ["last", "demographic"], "storage_dtype": "float16"},
    )
    out = tmp_path / "run"
    res = run_probe("extract", str(cfg), "--out", str(out), "--no-progress")
    assert res.returncode == 0, res.stderr
    with h5py.File(out / "cache.h5", "r") as f:
        for key in ("model", "model_sha256", "dtype", "backend", "config_sha256", "toolkit_version", "n_layers", "d_model"):
            assert key in f.attrs, key
        assert f.attrs["format"] == "latent-bias-cache/2"
        assert f["outputs/option_mass"].dtype == np.float32 and np.isfinite(f["outputs/option_mass"][()]).all()
        n = len(f["prompts/case_id"])
        assert n == 4 * 2 * 13
        assert f["prompts/label"].dtype == np.int8
        assert f["outputs/p_yes"].dtype == np.float32
        assert f["done"].dtype == bool and f["done"][()].all()
        for site in ("resid_post", "attn_out", "mlp_out"):
            for pos in ("last", "demographic"):
                ds = f[f"acts/{site}/{pos}"]
                assert ds.shape == (4, n, 64) and ds.dtype == np.float16
                assert ds.chunks[0] == 1 and ds.chunks[2] == 64
        texts = [t.decode() if isinstance(t, bytes) else t for t in f["prompts/text"][:2]]
        assert texts[0].endswith("assistant\n")  # the exact model input after the chat template
    with Cache(out / "cache.h5") as cache:
        assert cache.layer("resid_post", "demographic", 3).shape == (n, 64)
        assert not np.allclose(cache.layer("resid_post", "demographic", 3), cache.layer("resid_post", "last", 3))


def test_rerun_resumes_and_mismatch_is_refused(tmp_path, tiny_config):
    out = tmp_path / "run"
    first = run_probe("extract", str(tiny_config), "--out", str(out), "--no-progress")
    assert first.returncode == 0, first.stderr
    before = (out / "predictions.csv").read_text()
    again = run_probe("extract", str(tiny_config), "--out", str(out), "--no-progress")
    assert again.returncode == 0, again.stderr
    assert "(0 computed now)" in again.stderr
    assert (out / "predictions.csv").read_text() == before

    other = run_probe("extract", str(tiny_config), "--out", str(out), "--set", "benchmark.seed=8", "--no-progress")
    assert other.returncode == 2
    assert "--overwrite" in other.stderr and "Traceback" not in other.stderr
    assert (out / "predictions.csv").read_text() == before

    replaced = run_probe("extract", str(tiny_config), "--out", str(out), "--set", "benchmark.seed=8", "--overwrite", "--no-progress")
    assert replaced.returncode == 0, replaced.stderr


def test_same_config_gives_the_same_numbers(tmp_path, tiny_config):
    """Two fresh runs of one config (extract, scores, probes, value axis) agree exactly."""
    runs = []
    for name in ("a", "b"):
        out = tmp_path / name
        res = run_probe("run", str(tiny_config), "--out", str(out), "--no-explain", "--no-report", "--no-progress")
        assert res.returncode == 0, res.stderr
        runs.append(out)
    a, b = (json.loads((out / "results.json").read_text()) for out in runs)
    assert a["tiers"] == b["tiers"]
    assert a["tiers"]["high"]["latent"]["value_axis_layer"] is not None  # the latent stage ran
    assert (runs[0] / "predictions.csv").read_text() == (runs[1] / "predictions.csv").read_text()
    assert a["config"]["seed"] == b["config"]["seed"] and a["config"]["scoring"]["seed"] == 0


def test_batch_size_does_not_change_results(tmp_path, tiny_config):
    outs = []
    for bs in (1, 7):
        out = tmp_path / f"bs{bs}"
        res = run_probe("extract", str(tiny_config), "--out", str(out), "--set", f"extract.batch_size={bs}", "--no-progress")
        assert res.returncode == 0, res.stderr
        outs.append(out)
    with Cache(outs[0] / "cache.h5") as a, Cache(outs[1] / "cache.h5") as b:
        np.testing.assert_allclose(a.outputs.p_yes, b.outputs.p_yes, atol=1e-5)
        np.testing.assert_allclose(a.acts("resid_post", "last"), b.acts("resid_post", "last"), rtol=1e-3, atol=1e-4)


def test_shards_merge_to_the_unsharded_run(tmp_path, tiny_config):
    full = tmp_path / "full"
    assert run_probe("extract", str(tiny_config), "--out", str(full), "--no-progress").returncode == 0
    shard_dirs = []
    for k in (1, 2, 3):
        d = tmp_path / f"shard{k}"
        res = run_probe("extract", str(tiny_config), "--out", str(d), "--shard", f"{k}/3", "--no-progress")
        assert res.returncode == 0, res.stderr
        shard_dirs.append(d)
    with Cache(shard_dirs[0] / "cache.h5") as c:
        assert c.prompts.case_id.nunique() == 2  # cases 1 and 4 of 4
    merged = tmp_path / "merged"
    res = run_probe("merge", *map(str, shard_dirs), "--out", str(merged))
    assert res.returncode == 0, res.stderr
    # equal up to float round-off: shards batch prompts differently (batch invariance < 1e-4)
    with Cache(full / "cache.h5") as a, Cache(merged / "cache.h5") as b:
        pd.testing.assert_frame_equal(a.prompts, b.prompts)
        np.testing.assert_allclose(a.outputs.p_yes, b.outputs.p_yes, atol=1e-5)
        np.testing.assert_allclose(a.acts("resid_post", "last"), b.acts("resid_post", "last"), rtol=1e-3, atol=1e-4)
    pa, pb = pd.read_csv(full / "predictions.csv"), pd.read_csv(merged / "predictions.csv")
    floats = ["p_yes", "p_yes_vocab", "option_mass"]
    pd.testing.assert_frame_equal(pa.drop(columns=floats), pb.drop(columns=floats))
    np.testing.assert_allclose(pa.p_yes, pb.p_yes, atol=1e-5)
    np.testing.assert_allclose(pa.option_mass, pb.option_mass, atol=1e-5)


def _done_count(path: Path) -> int:
    try:
        with h5py.File(path, "r", locking=False) as f:
            return int(f["done"][()].sum())
    except (OSError, KeyError):
        return -1


def test_sigkill_at_any_point_then_rerun_gives_the_same_cache(tmp_path, tiny_model_dir):
    cfg = write_config(tmp_path / "k.yaml", tiny_model_dir, benchmark={"n_cases": 6, "tiers": ["high"]}, extract={"batch_size": 1})
    reference = tmp_path / "reference"
    assert run_probe("extract", str(cfg), "--out", str(reference), "--no-progress").returncode == 0
    n = 6 * 13

    out = tmp_path / "killed"
    env = dict(os.environ, PYTHONPATH=str(ROOT), HF_HUB_OFFLINE="1")
    cmd = [sys.executable, "-c", "from latent_bias_probe.cli import main; main()", "extract", str(cfg), "--out", str(out), "--no-progress"]
    kills = 0
    for target in (0, 5, 30, 60):  # kill once at least `target` prompts are done
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.time() + 120
        while proc.poll() is None and time.time() < deadline:
            if target == 0 or _done_count(out / "cache.h5") >= target:
                break
            time.sleep(0.005)
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            kills += 1
        proc.wait()
    assert kills >= 3
    assert 0 <= _done_count(out / "cache.h5") < n or kills < 4
    res = run_probe("extract", str(cfg), "--out", str(out), "--no-progress")
    assert res.returncode == 0, res.stderr
    assert_same_cache(reference / "cache.h5", out / "cache.h5")
    assert (reference / "predictions.csv").read_text() == (out / "predictions.csv").read_text()
