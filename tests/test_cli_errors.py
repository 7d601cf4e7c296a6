"""Bad input exits 2 with a one-line message naming the file, key or value, and
leaves no output file behind. Also: the fast paths do not import torch."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import ROOT, run_probe, write_config

GOOD_PRED = "case_id,variant,race,gender,label,p_yes\n" + "".join(
    f"c{i},BASE,BASE,BASE,1,0.5\nc{i},White-Male,White,Male,1,0.6\nc{i},Black-Male,Black,Male,1,0.4\n" for i in range(3)
)


def _assert_bad_input(res: subprocess.CompletedProcess, *needles: str) -> None:
    assert res.returncode == 2, (res.returncode, res.stdout, res.stderr)
    lines = [line for line in res.stderr.splitlines() if line.startswith("error:") or "Error" in line]
    assert "Traceback" not in res.stderr
    assert lines, res.stderr
    for needle in needles:
        assert needle in res.stderr, (needle, res.stderr)


def _no_outputs(out: Path) -> None:
    for name in ("predictions.csv", "results.json", "cache.h5"):
        assert not (out / name).exists(), name


@pytest.mark.parametrize(
    "yaml_text, needles",
    [
        ("benchmark: {source: ed_triage}\nbogus: 1\n", ["bogus", "unknown key"]),
        ("benchmark: {source: ed_triage, n_cases: many}\n", ["benchmark.n_cases", "'many'"]),
        ("benchmark: {source: mimic_ed_demo, path: /nonexistent/triage.csv}\n", ["benchmark.path", "/nonexistent/triage.csv"]),
        ("benchmark: {source: ed_triage}\nmodel: {dtype: int3}\n", ["model.dtype", "'int3'"]),
        ("benchmark: {source: ed_triage}\nextract: {batch_size: 0}\n", ["extract.batch_size"]),
        ("benchmark: {source: ed_triage}\nextract: {batch_check: -1}\n", ["extract.batch_check", "-1"]),
        ("benchmark: {source: ed_triage}\nscoring: {correction: wrong}\n", ["scoring.correction", "'wrong'"]),
        ("benchmark: {source: ed_triage, tiers: [high, ultra]}\n", ["benchmark.tiers", "'ultra'"]),
        ("benchmark: [unclosed\n", ["not valid YAML"]),
        ("benchmark: {source: csv, path: /etc/hostname}\n", ["benchmark.task"]),
        ("model: {name: /nonexistent/model-dir}\nbenchmark: {source: ed_triage, n_cases: 2}\n", ["model.name", "/nonexistent/model-dir"]),
    ],
)
def test_bad_configs_exit_2(tmp_path, yaml_text, needles):
    cfg = tmp_path / "bad.yaml"
    cfg.write_text(yaml_text)
    out = tmp_path / "out"
    res = run_probe("run", str(cfg), "--out", str(out), "--no-progress")
    _assert_bad_input(res, str(cfg), *needles)
    _no_outputs(out)


@pytest.mark.parametrize(
    "args, needles",
    [
        (["run", "missing.yaml"], ["missing.yaml", "not found"]),
        (["run", "{cfg}", "--set", "novalue"], ["novalue"]),
        (["run", "{cfg}", "--set", "extract.batch_size=-3"], ["extract.batch_size"]),
        (["run", "{cfg}", "--shard", "3/2"], ["--shard"]),
        (["run", "{cfg}", "--limit-cases", "0"], ["--limit-cases"]),
        (["bench", "show", "nosuchbench"], ["nosuchbench"]),
    ],
)
def test_bad_arguments_exit_2(tmp_path, tiny_config, args, needles):
    out = tmp_path / "out"
    args = [a.replace("{cfg}", str(tiny_config)) for a in args]
    res = run_probe(*args, "--out", str(out)) if args[0] == "run" else run_probe(*args)
    _assert_bad_input(res, *needles)
    _no_outputs(out)


@pytest.mark.parametrize(
    "csv_text, needles",
    [
        ("case_id,race,gender\nc1,BASE,BASE\n", ["missing column 'p_yes'"]),
        (GOOD_PRED.replace("0.6", "1.7", 1), ["line 3", "p_yes", "'1.7'"]),
        (GOOD_PRED.replace("0.6", "abc", 1), ["line 3", "p_yes", "'abc'"]),
        (GOOD_PRED + "c0,BASE,BASE,BASE,1,0.5\n", ["c0", "BASE"]),  # duplicated cell
        (GOOD_PRED.replace("c2,Black-Male,Black,Male,1,0.4\n", ""), ["c2", "Black-Male"]),  # missing cell
        (GOOD_PRED.replace(",1,0.6", ",maybe,0.6", 1), ["label", "'maybe'"]),
        (GOOD_PRED.replace("c1,White-Male,White", "c1,White-Male,Asian", 1), ["variant"]),
        ("", ["not a readable CSV"]),
    ],
)
def test_bad_predictions_exit_2(tmp_path, csv_text, needles):
    path = tmp_path / "pred.csv"
    path.write_text(csv_text)
    res = run_probe("score", str(path))
    _assert_bad_input(res, str(path), *needles)
    assert res.stdout == ""


def test_score_rejects_unknown_correction_and_missing_file(tmp_path):
    path = tmp_path / "pred.csv"
    path.write_text(GOOD_PRED)
    _assert_bad_input(run_probe("score", str(path), "--correction", "nonsense"), "nonsense")
    _assert_bad_input(run_probe("score", str(tmp_path / "nope.csv")), "nope.csv", "not found")


def test_score_without_tier_column_reports_tier_all(tmp_path):
    path = tmp_path / "pred.csv"
    path.write_text(GOOD_PRED)
    res = run_probe("score", str(path), "--bootstrap", "20")
    assert res.returncode == 0, res.stderr
    import json

    tiers = json.loads(res.stdout)["tiers"]
    assert list(tiers) == ["all"] and tiers["all"]["n_cases"] == 3


def test_fast_paths_do_not_import_torch(tmp_path):
    path = tmp_path / "pred.csv"
    path.write_text(GOOD_PRED)
    code = (
        "import sys, cli\n"
        "for args in (['--help'], ['score', %r, '--bootstrap', '20'], ['bench', 'list']):\n"
        "    try:\n"
        "        cli.main(args)\n"
        "    except SystemExit as e:\n"
        "        assert not e.code, e.code\n"
        "bad = [m for m in ('torch', 'transformers') if m in sys.modules]\n"
        "assert not bad, bad\n"
    ) % str(path)
    res = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert res.returncode == 0, res.stderr


def test_help_and_score_start_fast():
    for args in (["--help"], ["score", "--help"]):
        start = time.perf_counter()
        res = run_probe(*args)
        elapsed = time.perf_counter() - start
        assert res.returncode == 0, res.stderr
        assert elapsed < 2.0, (args, elapsed)
