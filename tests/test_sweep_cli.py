"""`probe run` on a sweep config: one run directory per combination and sweep.csv."""

from __future__ import annotations

import pandas as pd

from conftest import run_probe, write_config


def test_sweep_runs_every_combination_and_resumes(tmp_path, tiny_model_dir):
    cfg = write_config(
        tmp_path / "s.yaml", tiny_model_dir,
        benchmark={"n_cases": 3, "tiers": ["high", "low"]},
        extract={"batch_size": 4, "threads": 1},
        sweep={"precisions": ["float32", "int8"], "adapters": [None]},
    )
    out = tmp_path / "sweep"
    res = run_probe("run", str(cfg), "--out", str(out), "--no-explain", "--no-report", "--no-progress")
    assert res.returncode == 0, res.stderr
    df = pd.read_csv(out / "sweep.csv")
    assert sorted(set(df.precision)) == ["float32", "int8"]
    assert len(df) == 2 * 2  # precisions x tiers
    assert df.mfarm.between(0, 1).all() and df.mfarm_full.notna().all()
    dirs = sorted(p.name for p in out.iterdir() if p.is_dir())
    assert len(dirs) == 2 and all((out / d / "results.json").is_file() for d in dirs)
    assert not (out / "sweep.html").exists()
    again = run_probe("run", str(cfg), "--out", str(out), "--no-explain", "--no-progress")
    assert again.returncode == 0, again.stderr
    # the report is asked for now, so each combination runs on, but only its report is new
    assert again.stderr.count("complete, skipped") == 0
    assert again.stderr.count("(0 computed now)") == 2 and again.stderr.count("is fresh (same cache and settings), kept") == 2
    assert all((out / d / "report.html").is_file() for d in dirs)
    pd.testing.assert_frame_equal(df, pd.read_csv(out / "sweep.csv"))
    third = run_probe("run", str(cfg), "--out", str(out), "--no-explain", "--no-progress")
    assert third.returncode == 0 and third.stderr.count("complete, skipped") == 2, third.stderr
    html = (out / "sweep.html").read_text()
    assert html.count("<svg") == 4 and "int8 vs float32" in html
