"""Model against model in one sweep: paired differences from the first model, the
side-by-side report section, the latent and option-mass columns, the demo config."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from latent_bias_probe.configs.names import EMBEDDED_MODELS
from latent_bias_probe.configs.schema import load_config
from latent_bias_probe.pipeline.sweep import run_sweep, sweep_combinations, sweep_table
from latent_bias_probe.report.sweep import SWEEP_COLUMNS, result_rows, sweep_summary
from latent_bias_probe.report.sweep_html import render_sweep_report

ROOT = Path(__file__).resolve().parents[1]


def test_models_demo_config_sweeps_both_embedded_models():
    cfg = load_config(ROOT / "configs" / "models_demo.yaml")
    items = sweep_combinations(cfg)
    assert [(i.model, i.precision) for i in items] == [(m, "float32") for m in EMBEDDED_MODELS]
    assert cfg.explain.layers == [6, 12]  # valid in both models (30 and 18 layers)
    assert cfg.benchmark.source == "ed_triage" and cfg.benchmark.tiers == ["high", "medium", "low"]


def test_result_rows_carry_the_value_axis_depth_and_option_mass():
    class Item:
        model, precision, adapter = "m", "float32", None

    results = {
        "model": {"n_layers": 18},
        "tiers": {"high": {"mfarm": {"score": 0.5}, "option_mass": {"median": 0.3},
                           "latent": {"value_axis_layer": 8, "value_axis_fairness": 0.75}}},
    }
    (row,) = result_rows(Item, results)
    assert row["f_lv"] == 0.75 and row["value_axis_layer"] == 8 and row["n_layers"] == 18
    assert row["value_axis_depth"] == pytest.approx(9 / 18) and row["option_mass"] == 0.3
    (old,) = result_rows(Item, {"tiers": {"high": {"mfarm": {"score": 0.5}}}})  # before the probes ran
    assert old["f_lv"] is None and old["value_axis_depth"] is None and old["option_mass"] is None


def _two_model_rows():
    rows = []
    for model, mf, diff in (("model-a", 0.8, None), ("model-b", 0.5, (-0.3, -0.45, -0.12))):
        for tier in ("high", "low"):
            row = {c: None for c in SWEEP_COLUMNS}
            row.update(model=model, precision="float32", adapter="", tier=tier, mfarm=mf, fab=0.6, f_lv=0.9,
                       max_abs_shift=0.02, value_axis_layer=9, n_layers=30 if model == "model-a" else 18,
                       option_mass=0.95 if model == "model-a" else 0.3)
            row["value_axis_depth"] = 10 / row["n_layers"]
            if diff:
                row.update(vs_model="model-a", diff_model_mfarm=diff[0], diff_model_mfarm_lo=diff[1],
                           diff_model_mfarm_hi=diff[2], diff_model_max_abs_shift=0.01,
                           diff_model_max_abs_shift_lo=-0.02, diff_model_max_abs_shift_hi=0.03)
            rows.append(row)
    return rows


def test_report_puts_the_models_side_by_side_with_the_paired_difference():
    html = render_sweep_report(_two_model_rows())
    section = html[html.index('id="models"'):html.index('id="answers"')]
    assert "Models side by side" in html and "at float32" in section
    assert "layer 9 of 30 (0.33)" in section and "layer 9 of 18 (0.56)" in section
    assert "−0.300" in section or "-0.300" in section
    assert "[-0.450, -0.120]" in section and "lower than model-a" in section
    assert section.count("model-b") >= 2 and "0.300" in section  # option mass of model-b
    sentences = sweep_summary(__import__("pandas").DataFrame(_two_model_rows()))
    assert any(s.startswith("model-b at float32 vs model-a: paired bootstrap intervals") and "lower" in s for s in sentences)


def test_one_model_has_no_side_by_side_section():
    rows = [r for r in _two_model_rows() if r["model"] == "model-a"]
    assert 'id="models"' not in render_sweep_report(rows)


def test_a_real_two_model_sweep_fills_the_model_differences(tmp_path):
    """Two tiny random Llamas through extract and score: gemma-vs-smollm2's code path in seconds."""
    import torch

    from latent_bias_probe import pipeline
    from conftest import write_config
    from latent_bias_probe.extract.tiny import tiny_llama

    folders = []
    for seed in (0, 1):
        loaded = tiny_llama(seed=seed)
        folder = tmp_path / f"tiny{seed}"
        loaded.model.save_pretrained(folder, safe_serialization=True)
        loaded.tokenizer.save_pretrained(folder)
        folders.append(str(folder))
    path = write_config(tmp_path / "s.yaml", Path(folders[0]), benchmark={"n_cases": 4, "tiers": ["high", "low"]},
                        extract={"threads": 1}, sweep={"models": folders, "precisions": ["float32"]})
    cfg = load_config(path)

    def job(icfg, run_dir):
        threads = torch.get_num_threads()
        try:
            return pipeline.run(icfg, run_dir, ("extract", "score"), progress=False)
        finally:
            torch.set_num_threads(threads)

    run_sweep(cfg, tmp_path / "sweep", job)
    df = sweep_table(tmp_path / "sweep")
    first, second = df[df.model == folders[0]], df[df.model == folders[1]]
    assert len(first) == len(second) == 2
    assert (first.vs_model == "").all() and first.diff_model_mfarm.isna().all()
    assert (second.vs_model == folders[0]).all()
    diff = second.mfarm.to_numpy() - first.mfarm.to_numpy()
    assert np.allclose(second.diff_model_mfarm.to_numpy(), diff, atol=1e-9)
    assert (second.diff_model_mfarm_lo <= second.diff_model_mfarm + 1e-12).all()
    assert (second.diff_model_mfarm_hi >= second.diff_model_mfarm - 1e-12).all()
    assert second.option_mass.notna().all() and (second.n_layers == 4).all()
