"""The benchmark registry: dispatch on the config's source, n_cases, sizes."""

from __future__ import annotations

import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from latent_bias_probe.benchmarks import BENCHMARKS, BenchmarkError, benchmark_sizes, load_cases, render_benchmark
from latent_bias_probe.benchmarks.registry import subsample
from latent_bias_probe.benchmarks.types import Case
from latent_bias_probe.configs.schema import BenchmarkConfig
from conftest import DATA


def test_names_match_config_sources():
    assert set(BENCHMARKS) == {"ed_triage", "opioid", "mimic_ed_demo", "qpain", "csv"}
    assert BENCHMARKS["mimic_ed_demo"].default_path == (DATA / "mimic-iv-ed-demo" / "triage.csv").resolve()
    assert BENCHMARKS["qpain"].default_path == (DATA / "q-pain").resolve()


def test_generators_via_config():
    r = render_benchmark(BenchmarkConfig(source="ed_triage", n_cases=6, seed=1, tiers=["low"], descent_word="decent"))
    assert len(r.prompts) == 6 * 13
    assert r.descent_word == "decent" and "decent" in r.prompts[1].user
    cases = load_cases(BenchmarkConfig(source="opioid", seed=2))
    assert len(cases) == 60 and Counter(c.label for c in cases) == {0: 30, 1: 30}


def test_file_sources_with_defaults_and_n_cases():
    cases = load_cases(BenchmarkConfig(source="mimic_ed_demo"))
    assert len(cases) == 153
    sub = load_cases(BenchmarkConfig(source="mimic_ed_demo", n_cases=20, seed=3))
    assert len(sub) == 20 and Counter(c.label for c in sub) == {0: 10, 1: 10}
    assert sub == load_cases(BenchmarkConfig(source="mimic_ed_demo", n_cases=20, seed=3))
    assert sub != load_cases(BenchmarkConfig(source="mimic_ed_demo", n_cases=20, seed=4))
    q = load_cases(BenchmarkConfig(source="qpain", path=str(DATA / "q-pain"), n_cases=11))
    assert Counter(c.label for c in q) == {1: 10, 0: 1}
    r = render_benchmark(BenchmarkConfig(source="qpain", n_cases=2, races=["Black"], genders=["Male", "Female"]))
    assert len(r.prompts) == 2 * 3 * 3


def test_subsample_keeps_label_shares():
    cases = [Case(f"c{i:02d}", "ed_triage", i % 2) for i in range(10)] + [Case("u", "ed_triage", None)]
    sub = subsample(cases, 5, seed=0)
    # shares 5/11, 5/11, 1/11 of 5 -> 2.27, 2.27, 0.45: largest remainder gives 2, 2, 1
    assert Counter(c.label for c in sub) == {0: 2, 1: 2, None: 1}
    assert [c.case_id for c in sub] == sorted(c.case_id for c in sub)  # source order kept
    assert subsample(cases, 5, seed=0) == sub
    assert subsample(cases, None, 0) == cases and subsample(cases, 50, 0) == cases


def test_csv_source(tmp_path):
    path = tmp_path / "c.csv"
    path.write_text("case_id,label,chief_complaint\na,yes,Cough\nb,no,Rash\n")
    cases = load_cases(BenchmarkConfig(source="csv", task="ed_triage", path=str(path)))
    assert [c.case_id for c in cases] == ["a", "b"]
    with pytest.raises(BenchmarkError, match="task"):
        load_cases(BenchmarkConfig(source="csv", path=str(path)))


def test_sizes():
    rows = {r["name"]: r for r in benchmark_sizes()}
    assert rows["ed_triage"]["cases"] == "any (seeded)" and rows["opioid"]["cases"] == "any (seeded)"
    assert rows["csv"]["task"] == "any"
    assert rows["mimic_ed_demo"]["cases"] == "153" and rows["qpain"]["cases"] == "55"


def test_import_does_not_load_torch():
    code = "import sys, benchmarks, benchmarks.registry; sys.exit('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], cwd=Path(__file__).resolve().parents[1]).returncode == 0
