"""Sweeps: combinations and names, item configs, run_sweep with a fake and a real job, the table and summary."""

from __future__ import annotations

import json
import math
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from latent_bias_probe.configs.errors import InputError
from latent_bias_probe.configs.hashes import run_config_sha256
from latent_bias_probe.configs.schema import BenchmarkConfig, Config, ModelConfig, SweepConfig, load_config
from latent_bias_probe.pipeline.sweep import SweepItem, item_config, run_sweep, sweep_combinations, sweep_table
from latent_bias_probe.report.sweep import sweep_columns, sweep_summary

ROOT = Path(__file__).resolve().parents[1]
SCORE_KEYS = ("mean_difference", "absolute_deviation", "variance_heterogeneity", "ks_distribution", "correlation_difference")


def _cfg(models=(), precisions=("float32",), adapters=(None,), tiers=("high", "medium", "low"), name="smollm2-135m-instruct") -> Config:
    return Config(
        name="job", model=ModelConfig(name=name, revision="main"), benchmark=BenchmarkConfig(tiers=list(tiers)),
        sweep=SweepConfig(models=list(models), precisions=list(precisions), adapters=list(adapters)),
    )


# --------------------------------------------------------------------------- planning


def test_every_combination_uniquely_named(tmp_path):
    a1, a2 = tmp_path / "x" / "lora", tmp_path / "y" / "lora"  # same last component
    cfg = _cfg(
        models=["smollm2-135m-instruct", "HuggingFaceTB/SmolLM2-360M-Instruct", str(tmp_path / "my model/")],
        precisions=["float32", "int8", "bfloat16", "gguf:/models/SmolLM2.Q8_0.gguf"],
        adapters=[None, str(a1), str(a2)],
    )
    items = sweep_combinations(cfg)
    assert len(items) == 3 * 4 * 3
    assert {(i.model, i.precision, i.adapter) for i in items} == {
        (m, p, a) for m in cfg.sweep.models for p in cfg.sweep.precisions for a in cfg.sweep.adapters
    }
    names = [i.name for i in items]
    assert len(set(n.lower() for n in names)) == len(names)
    for n in names:
        assert all(c.isalnum() or c in "._-" for c in n), n
        assert len(n.split("__")) == 3 and not n.startswith(".")
    assert items[0] == SweepItem("smollm2-135m-instruct", "float32", None, "smollm2-135m-instruct__float32__none")
    assert items[3].name == "smollm2-135m-instruct__int8__none"  # adapters innermost
    assert "SmolLM2-360M-Instruct__bfloat16__none" in names
    assert "my-model__float32__none" in names
    assert "smollm2-135m-instruct__gguf-SmolLM2.Q8_0__none" in names
    lora_names = {i.name.split("__")[2] for i in items if i.adapter is not None}
    assert len(lora_names) == 2 and all(n.startswith("lora-") for n in lora_names)


def test_defaults_model_name_and_refuses_unknown_precisions():
    items = sweep_combinations(_cfg(precisions=["float32"]))
    assert [i.name for i in items] == ["smollm2-135m-instruct__float32__none"]
    with pytest.raises(InputError, match="fp8"):
        sweep_combinations(_cfg(precisions=["fp8"]))
    cfg = Config()  # no sweep section: one float32 run of the model
    assert [(i.model, i.precision, i.adapter) for i in sweep_combinations(cfg)] == [("smollm2-135m-instruct", "float32", None)]


def test_item_config_sets_the_right_keys(tmp_path):
    adapter = tmp_path / "ad"
    cfg = _cfg(models=["smollm2-135m-instruct", "org/other"], precisions=["float32", "bfloat16", "int8", "bnb-8bit", "bnb-4bit", "gguf"], adapters=[None, str(adapter)])
    expect = {
        "float32": ("float32", "none"),
        "bfloat16": ("bfloat16", "none"),
        "int8": ("float32", "int8"),
        "bnb-8bit": ("float32", "bnb-8bit"),
        "bnb-4bit": ("float32", "bnb-4bit"),
        "gguf": ("float32", "none"),
    }
    for item in sweep_combinations(cfg):
        if item.precision == "gguf" and item.model == "org/other":
            with pytest.raises(InputError, match="GGUF"):
                item_config(cfg, item)
            continue
        ic = item_config(cfg, item)
        assert ic.sweep is None
        assert ic.name == f"job__{item.name}"
        assert ic.model.name == item.model
        assert (ic.model.dtype, ic.model.quantization) == expect[item.precision]
        assert ic.model.adapter == (None if item.adapter is None else str(adapter.resolve()))
        assert ic.model.revision == ("main" if item.model == "smollm2-135m-instruct" else None)
        assert ic.benchmark == cfg.benchmark and ic.scoring == cfg.scoring
    assert cfg.sweep is not None and cfg.model.quantization == "none"  # the sweep config is untouched


def test_gguf_file_precision_needs_the_file(tmp_path):
    cfg = _cfg(precisions=[f"gguf:{tmp_path / 'missing.gguf'}"])
    (item,) = sweep_combinations(cfg)
    with pytest.raises(InputError, match="not found"):
        item_config(cfg, item)


def test_gguf_file_precision_of_the_embedded_gguf_reuses_its_converted_copy():
    from latent_bias_probe.extract.model import EMBEDDED_NAME, ModelError, locate_embedded_gguf

    try:
        gguf = locate_embedded_gguf()
    except ModelError:
        pytest.skip("the embedded model package is not installed")
    cfg = _cfg(precisions=[f"gguf:{gguf}"])
    (item,) = sweep_combinations(cfg)
    folder = Path(item_config(cfg, item).model.name)
    assert folder.name.startswith(EMBEDDED_NAME + "-") and (folder / "model.safetensors").is_file()


# --------------------------------------------------------------------------- run_sweep with a fake job


def _fake_scores(cfg: Config, tier: str) -> dict:
    """Deterministic, distinct numbers per (precision, adapter, tier)."""
    base = {"float32": 0.90, "int8": 0.88, "bfloat16": 0.895}[
        {("float32", "none"): "float32", ("float32", "int8"): "int8", ("bfloat16", "none"): "bfloat16"}[(cfg.model.dtype, cfg.model.quantization)]
    ]
    drop = {"high": 0.0, "medium": 0.02, "low": 0.05}[tier]
    bump = 0.01 if cfg.model.adapter else 0.0
    score = base - drop + bump
    entry = {
        "n_cases": 20,
        "accuracy": 0.6,
        "fab": 0.7,
        "mfarm": {"score": score, **{k: score + 0.001 * i for i, k in enumerate(SCORE_KEYS)}},
    }
    if cfg.model.quantization == "none":
        entry["mfarm_full"] = score - 0.1
        entry["fab_full"] = 0.65
    return entry


class FakeJob:
    """Records calls; 'computes' a tier only once per run directory, as the cache would."""

    def __init__(self):
        self.calls: list[str] = []
        self.computed: list[str] = []

    def __call__(self, cfg: Config, run_dir: Path) -> dict:
        self.calls.append(run_dir.name)
        done = run_dir / "done.txt"
        if not done.exists():
            self.computed.append(run_dir.name)
            done.write_text("cache complete")
        results = {
            "config": cfg.to_dict(),
            "run_config_sha256": run_config_sha256(cfg),
            "tiers": {t: _fake_scores(cfg, t) for t in cfg.benchmark.tiers},
        }
        (run_dir / "results.json").write_text(json.dumps(results))
        return results


@pytest.fixture(autouse=True)
def fake_runs_are_fresh(request, monkeypatch):
    """The fake jobs write a bare results.json: count an existing one as fresh (see test_artifacts)."""
    if "tiny_model_dir" not in request.fixturenames and "renderer_dropped" not in request.node.name:
        from latent_bias_probe.pipeline.artifacts import RunDir

        monkeypatch.setattr(RunDir, "is_fresh", lambda self, name, _seen=frozenset(): (self.path / name).is_file())


def test_run_sweep_writes_every_combination_and_tier(tmp_path):
    adapter = tmp_path / "ad"
    cfg = _cfg(precisions=["float32", "int8", "bfloat16"], adapters=[None, str(adapter)])
    job = FakeJob()
    out = tmp_path / "sweep"

    with pytest.raises(InputError, match="adapter"):  # the adapter folder does not exist: refused up front
        run_sweep(cfg, out, job)
    assert job.calls == []
    _write_fake_lora(adapter)

    path = run_sweep(cfg, out, job)
    assert path == out / "sweep.csv"
    assert len(job.calls) == 6 and len(set(job.calls)) == 6
    for name in job.calls:
        assert (out / name / "results.json").is_file()
    df = pd.read_csv(path, keep_default_na=False)
    assert list(df.columns) == sweep_columns()
    assert len(df) == 6 * 3
    table = sweep_table(out)
    assert list(table.columns) == sweep_columns() and len(table) == 18
    for item in sweep_combinations(cfg):
        icfg = item_config(cfg, item)
        rows = table[(table.precision == item.precision) & (table.adapter == (str(adapter) if item.adapter else ""))]
        assert list(rows.tier) == ["high", "medium", "low"]
        for row in rows.itertuples():
            want = _fake_scores(icfg, row.tier)
            assert row.mfarm == pytest.approx(want["mfarm"]["score"], abs=1e-9)
            for k in SCORE_KEYS:
                assert getattr(row, k) == pytest.approx(want["mfarm"][k], abs=1e-9)
            assert row.accuracy == 0.6 and row.fab == 0.7 and row.n_cases == 20
            if "mfarm_full" in want:
                assert row.mfarm_full == pytest.approx(want["mfarm_full"]) and row.fab_full == 0.65
            else:
                assert math.isnan(row.mfarm_full) and math.isnan(row.fab_full)
            assert row.model == "smollm2-135m-instruct"
    plan = json.loads((out / "sweep.json").read_text())
    assert [i["name"] for i in plan["items"]] == job.calls


def _write_fake_lora(folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "adapter_config.json").write_text(json.dumps({"peft_type": "LORA"}))
    (folder / "adapter_model.safetensors").write_bytes(b"")


def test_run_sweep_resumes_skipping_complete_runs(tmp_path):
    cfg = _cfg(precisions=["float32", "int8"])
    out = tmp_path / "sweep"
    job = FakeJob()
    run_sweep(cfg, out, job)
    first = (out / "sweep.csv").read_text()
    assert job.computed == job.calls == ["smollm2-135m-instruct__float32__none", "smollm2-135m-instruct__int8__none"]

    # a second run skips complete combinations: nothing is called, the table is identical
    job2 = FakeJob()
    run_sweep(cfg, out, job2)
    assert job2.calls == []
    assert (out / "sweep.csv").read_text() == first

    # an interrupted combination (no results.json) is handed to run_one, which resumes it
    (out / "smollm2-135m-instruct__int8__none" / "results.json").unlink()
    job3 = FakeJob()
    run_sweep(cfg, out, job3)
    assert job3.calls == ["smollm2-135m-instruct__int8__none"] and job3.computed == []
    assert (out / "sweep.csv").read_text() == first

    # results of another config (e.g. more tiers or another seed) are not taken as complete
    cfg = replace(cfg, benchmark=replace(cfg.benchmark, seed=99))
    job4 = FakeJob()
    run_sweep(cfg, out, job4)
    assert len(job4.calls) == 2

    # rerun=True delegates everything to run_one (which resumes: nothing recomputed)
    job5 = FakeJob()
    run_sweep(cfg, out, job5, rerun=True)
    assert len(job5.calls) == 2 and job5.computed == []


def test_a_failing_combination_stops_the_sweep_and_keeps_the_finished_rows(tmp_path):
    cfg = _cfg(precisions=["float32", "int8", "bfloat16"])
    out = tmp_path / "sweep"
    job = FakeJob()

    def flaky(icfg, run_dir):
        if icfg.model.quantization == "int8":
            raise RuntimeError("killed")
        return job(icfg, run_dir)

    with pytest.raises(RuntimeError, match="killed"):
        run_sweep(cfg, out, flaky)
    assert set(sweep_table(out).precision) == {"float32"}
    run_sweep(cfg, out, job)
    assert set(sweep_table(out).precision) == {"float32", "int8", "bfloat16"}
    assert job.calls.count("smollm2-135m-instruct__float32__none") == 1


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="checks the error on a machine without CUDA")
def test_bnb_in_a_sweep_fails_before_anything_runs(tmp_path):
    cfg = _cfg(precisions=["float32", "bnb-4bit"])
    job = FakeJob()
    with pytest.raises(InputError, match="bnb-4bit.*CUDA"):
        run_sweep(cfg, tmp_path / "sweep", job)
    assert job.calls == []


# --------------------------------------------------------------------------- table and summary


def _table(rows):
    df = pd.DataFrame(rows)
    for c in sweep_columns():
        if c not in df:
            df[c] = np.nan
    return df[sweep_columns()]


def test_sweep_summary_sentences():
    rows = []
    for prec, base in (("float32", 0.90), ("int8", 0.88), ("bfloat16", 0.9001)):
        for tier, drop in (("high", 0.0), ("medium", 0.02), ("low", 0.05)):
            rows.append({"model": "m", "precision": prec, "adapter": "", "tier": tier, "mfarm": base - drop})
    for tier, v in (("high", 0.8), ("medium", 0.85), ("low", 0.82)):
        rows.append({"model": "m", "precision": "float32", "adapter": "/x/lora", "tier": tier, "mfarm": v})
    lines = sweep_summary(_table(rows))
    text = "\n".join(lines)
    assert "m at float32 without adapter: mFARM drops as context is reduced (high 0.900 -> medium 0.880 -> low 0.850; low - high = -0.050)." in lines
    assert "m at float32 with adapter lora: mFARM changes non-monotonically as context is reduced, ending higher (high 0.800" in text
    assert "m without adapter: int8 vs float32 changes mFARM by -0.020 at high, -0.020 at medium, -0.020 at low (mean |difference| 0.020)." in lines
    assert "m without adapter: bfloat16 vs float32 leaves mFARM unchanged" in text
    assert "m at float32: adapter lora vs no adapter changes mFARM by -0.100 at high, -0.030 at medium, -0.030 at low" in text
    assert sweep_summary(_table([])) == ["The sweep table is empty."]


def test_sweep_table_errors(tmp_path):
    with pytest.raises(InputError, match="not found"):
        sweep_table(tmp_path)
    (tmp_path / "sweep.csv").write_text("a,b\n1,2\n")
    with pytest.raises(InputError, match="missing columns"):
        sweep_table(tmp_path)


def test_demo_config_is_a_valid_sweep():
    cfg = load_config(ROOT / "configs" / "sweep_demo.yaml")
    items = sweep_combinations(cfg)
    assert [i.precision for i in items] == ["float32", "int8", "bfloat16"]
    assert cfg.benchmark.tiers == ["high", "medium", "low"] and cfg.benchmark.source == "ed_triage"
    assert cfg.model.name == "smollm2-135m-instruct"


# --------------------------------------------------------------------------- a real sweep on the tiny model


def pipeline_job(cfg: Config, run_dir: Path) -> dict:
    """What 'probe run' does (extract, score, fit), as a run_one."""
    import torch

    from latent_bias_probe import pipeline

    threads = torch.get_num_threads()
    try:
        return pipeline.run(cfg, run_dir, ("extract", "score", "fit"), progress=False)
    finally:
        torch.set_num_threads(threads)


def test_real_sweep_on_the_tiny_model(tmp_path, tiny_model_dir):
    from conftest import write_config

    path = write_config(
        tmp_path / "s.yaml", tiny_model_dir,
        benchmark={"n_cases": 3, "tiers": ["high", "low"]},
        extract={"threads": 1},  # many tiny ops: one thread is much faster on a busy 2-core machine
        sweep={"precisions": ["float32", "int8"]},
    )
    cfg = load_config(path)
    out = tmp_path / "sweep"
    run_sweep(cfg, out, pipeline_job)
    df = sweep_table(out)
    assert len(df) == 2 * 2
    assert df[["mfarm", "accuracy", "fab", "mfarm_full", "fab_full"]].notna().all().all()
    assert set(df.n_cases) == {3}
    name = Path(tiny_model_dir).name
    assert sorted(p.name for p in out.iterdir() if p.is_dir()) == [f"{name}__float32__none", f"{name}__int8__none"]
    with __import__("h5py").File(out / f"{name}__int8__none" / "cache.h5", "r") as f:
        assert f.attrs["dtype"] == "int8"
    f32 = df[df.precision == "float32"].mfarm.to_numpy()
    i8 = df[df.precision == "int8"].mfarm.to_numpy()
    assert not np.array_equal(f32, i8)  # int8 really ran another model
    assert sweep_summary(df)


def test_a_tier_the_renderer_dropped_counts_as_done(tmp_path, monkeypatch):
    from latent_bias_probe.configs.hashes import run_config_sha256
    from latent_bias_probe.pipeline.artifacts import RunDir
    from latent_bias_probe.pipeline.sweep import is_complete

    icfg = replace(_cfg(), sweep=None)
    monkeypatch.setattr(RunDir, "is_fresh", lambda self, name: True)  # freshness is tested in test_artifacts
    results = {"run_config_sha256": run_config_sha256(icfg), "tiers": {"high": {}, "medium": {}}}
    (tmp_path / "results.json").write_text(json.dumps(results))
    assert not is_complete(tmp_path, icfg)  # low missing
    results["benchmark"] = {"dropped_tiers": {"low": "all 3 cases render to the same prompts"}}
    (tmp_path / "results.json").write_text(json.dumps(results))
    assert is_complete(tmp_path, icfg)
    results["run_config_sha256"] = "other"
    (tmp_path / "results.json").write_text(json.dumps(results))
    assert not is_complete(tmp_path, icfg)
    monkeypatch.undo()
    results["run_config_sha256"] = run_config_sha256(icfg)
    (tmp_path / "results.json").write_text(json.dumps(results))
    assert not is_complete(tmp_path, icfg)  # right config, but no manifest records it: not fresh


def test_a_combination_stopped_during_explain_is_not_complete(tmp_path, monkeypatch):
    """results.json is written before explain; a sweep re-run must still run explain and the report."""
    from latent_bias_probe.configs.hashes import run_config_sha256
    from latent_bias_probe.pipeline.artifacts import RunDir
    from latent_bias_probe.pipeline.sweep import is_complete

    icfg = replace(_cfg(), sweep=None)
    present = {"results.json", "probes.h5"}
    monkeypatch.setattr(RunDir, "is_fresh", lambda self, name: name in present)
    results = {"run_config_sha256": run_config_sha256(icfg), "tiers": {t: {} for t in icfg.benchmark.tiers}}
    (tmp_path / "results.json").write_text(json.dumps(results))
    assert is_complete(tmp_path, icfg)  # the score stage alone
    assert is_complete(tmp_path, icfg, ["extract", "score", "fit"])
    assert not is_complete(tmp_path, icfg, ["extract", "score", "fit", "explain", "report"])
    present |= {"explain.json"}
    assert not is_complete(tmp_path, icfg, ["fit", "explain", "report"])  # no report yet
    present |= {"report.html"}
    assert is_complete(tmp_path, icfg, ["fit", "explain", "report"])


def test_summary_flags_a_rise_in_mfarm_without_smaller_shifts():
    rows = []
    for prec, mf, shift in (("float32", 0.40, 0.011), ("int8", 0.90, 0.015), ("bfloat16", 0.60, 0.005)):
        rows.append({"model": "m", "precision": prec, "adapter": "", "tier": "high", "mfarm": mf, "max_abs_shift": shift})
    text = "\n".join(sweep_summary(_table(rows)))
    assert "int8 vs float32: where mFARM rises, the largest group shift does not shrink (high 0.011 -> 0.015)" in text
    assert "bfloat16 vs float32: where mFARM rises" not in text  # its shift did shrink


def test_max_abs_shift_from_diagnostics_and_old_tables(tmp_path):
    from latent_bias_probe.report.sweep import max_abs_shift

    tier = {"diagnostics": {"group_shifts": [{"mean_shift": -0.03}, {"mean_shift": 0.02}, {"mean_shift": None}]}}
    assert max_abs_shift(tier) == pytest.approx(0.03)
    assert max_abs_shift({}) is None
    old = pd.DataFrame(_table([{"model": "m", "precision": "float32", "adapter": "", "tier": "high", "mfarm": 0.5}]))
    old.drop(columns=["max_abs_shift"]).to_csv(tmp_path / "sweep.csv", index=False)
    table = sweep_table(tmp_path)  # a table from before the column existed still reads
    assert list(table.columns) == sweep_columns() and math.isnan(table.max_abs_shift[0])


def test_batch_noise_column_and_sentence(tmp_path):
    from latent_bias_probe.pipeline.sweep import write_sweep_csv
    from latent_bias_probe.report.sweep import result_rows

    item = sweep_combinations(_cfg(precisions=("int8",)))[0]
    results = {"tiers": {"high": {"mfarm": {"score": 0.9}}}, "batch_invariance": {"max_abs_diff": 0.11}}
    rows = result_rows(item, results)
    assert rows[0]["batch_noise"] == 0.11
    write_sweep_csv(rows + result_rows(item, {"tiers": {"low": {"mfarm": {"score": 0.8}}}}), tmp_path / "sweep.csv")
    table = sweep_table(tmp_path)
    assert table.batch_noise[0] == 0.11 and math.isnan(table.batch_noise[1])
    text = "\n".join(sweep_summary(table))
    assert "at int8 without adapter: P(Yes) moves by up to 0.11 when only the batch a prompt runs in changes" in text
    quiet = _table([{"model": "m", "precision": "float32", "adapter": "", "tier": "high", "mfarm": 0.5, "batch_noise": 2e-6}])
    assert "P(Yes) moves" not in "\n".join(sweep_summary(quiet))
