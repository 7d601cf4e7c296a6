"""The typed run directory: freshness, invalidation, results.json schema, probe validate."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import run_probe, write_config
from latent_bias_probe.pipeline.artifacts import ARTIFACTS, MANIFEST, RunDir


# --------------------------------------------------------------------------- RunDir on plain files


def _fake_cache_fingerprint(monkeypatch):
    """cache.h5 fingerprints as plain file hashes, so these tests need no HDF5 file."""
    from latent_bias_probe.pipeline import artifacts

    real = artifacts.RunDir._compute_fingerprint

    def fp(self, key):
        if key == "cache.h5":
            path = self.path / key
            return artifacts.file_sha256(path) if path.is_file() else None
        return real(self, key)

    monkeypatch.setattr(artifacts.RunDir, "_compute_fingerprint", fp)


@pytest.fixture
def run(tmp_path, monkeypatch):
    from latent_bias_probe.configs.schema import Config
    from latent_bias_probe.pipeline.results import save_run_config

    _fake_cache_fingerprint(monkeypatch)
    r = RunDir(tmp_path / "run")
    r.path.mkdir()
    save_run_config(r, Config())
    (r / "cache.h5").write_text("cache v1")
    r.record("cache.h5")
    (r / "predictions.csv").write_text("p v1")
    r.record("predictions.csv")
    (r / "probes.h5").write_text("probes v1")
    r.record("probes.h5")
    return r


def test_every_artifact_declared_once_with_known_inputs():
    for name, art in ARTIFACTS.items():
        assert art.path == name
        for key in art.inputs + art.optional:
            assert key.startswith("config:") or key in ("masked:templates", "masked:corpus") or key in ARTIFACTS, (name, key)
    assert {a.producer for a in ARTIFACTS.values()} <= {"extract", "score", "fit", "explain", "report"}


def test_recorded_artifacts_are_fresh_until_an_input_changes(run):
    assert all(run.is_fresh(n) for n in ("config.json", "cache.h5", "predictions.csv", "probes.h5"))
    (run / "cache.h5").write_text("cache v2")  # e.g. --overwrite rebuilt it
    fresh = RunDir(run.path)
    assert not fresh.is_fresh("cache.h5") and fresh.why_stale("cache.h5") == "changed since it was written"
    fresh.record("cache.h5")
    assert fresh.is_fresh("cache.h5")
    assert not fresh.is_fresh("predictions.csv") and fresh.why_stale("predictions.csv") == "made from another cache.h5"
    assert not fresh.is_fresh("probes.h5")
    assert sorted(fresh.prune()) == ["predictions.csv", "probes.h5"]
    assert not (run / "probes.h5").exists() and "probes.h5" not in json.loads((run / MANIFEST).read_text())["artifacts"]


def test_a_config_section_change_invalidates_only_its_dependants(run):
    from latent_bias_probe.configs.schema import Config, ProbesConfig
    from latent_bias_probe.pipeline.results import save_run_config

    cfg = Config(probes=ProbesConfig(seed=5))
    save_run_config(run, cfg)
    assert run.is_fresh("cache.h5") and run.is_fresh("predictions.csv")
    assert not run.is_fresh("probes.h5") and run.why_stale("probes.h5") == "made from another config:probes"


def test_an_edited_file_is_stale_and_unlisted_files_are_not_fresh(run):
    (run / "probes.h5").write_text("hand edited")
    assert not RunDir(run.path).is_fresh("probes.h5")
    (run / "explain.json").write_text("{}")  # never recorded
    assert RunDir(run.path).why_stale("explain.json") == f"not recorded in {MANIFEST}"


def test_a_corrupt_manifest_makes_everything_stale(run):
    (run / MANIFEST).write_text("{not json")
    assert RunDir(run.path).stale() == ["config.json", "cache.h5", "predictions.csv", "probes.h5"]


def test_record_refuses_an_artifact_whose_required_input_is_stale(run):
    (run / "cache.h5").write_text("cache v2")
    r = RunDir(run.path)
    (run / "explain.json").write_text("{}")
    with pytest.raises(RuntimeError, match="cache.h5 is not fresh"):
        r.record("explain.json")


def test_adopting_a_foreign_cache(tmp_path, monkeypatch):
    _fake_cache_fingerprint(monkeypatch)
    r = RunDir(tmp_path)
    (r / "cache.h5").write_text("made by another tool")
    assert not r.is_fresh("cache.h5")
    r.adopt("cache.h5")
    assert r.is_fresh("cache.h5") and r.manifest["cache.h5"]["producer"] == "adopted"
    with pytest.raises(KeyError):
        r / "notes.txt"


# --------------------------------------------------------------------------- schema


def _results(tmp_path, tiny_model_dir, **sections):
    from latent_bias_probe import pipeline

    cfg = write_config(tmp_path / "c.yaml", tiny_model_dir, benchmark={"n_cases": 3, "tiers": ["low"]}, **sections)
    return pipeline.run(cfg, tmp_path / "run", ("extract", "score", "fit"), progress=False)


def test_results_schema_accepts_a_real_run_and_refuses_broken_ones(tmp_path, tiny_model_dir):
    from latent_bias_probe.pipeline.results import ResultsSchemaError, validate_results

    results = _results(tmp_path, tiny_model_dir)
    validate_results(results)
    for mutate, where in [
        (lambda r: r["tiers"]["low"]["mfarm"].__setitem__("score", 1.5), "tiers/low/mfarm/score"),
        (lambda r: r["tiers"]["low"]["mfarm"].pop("mean_difference"), "tiers/low/mfarm"),
        (lambda r: r["tiers"]["low"].pop("mfarm_full"), "tiers/low"),  # latent without its full scores
        (lambda r: r.pop("run_config_sha256"), "(top level)"),
        (lambda r: r["tiers"]["low"].__setitem__("surprise", 1), "tiers/low"),
        (lambda r: r.__setitem__("tiers", {}), "tiers"),
    ]:
        broken = json.loads(json.dumps(results))
        mutate(broken)
        with pytest.raises(ResultsSchemaError) as err:
            validate_results(broken, "r.json")
        assert str(err.value).startswith(f"r.json: {where}"), str(err.value)


# --------------------------------------------------------------------------- stale artifacts in real runs


def _tiers(run_dir: Path) -> dict:
    return json.loads((run_dir / "results.json").read_text())["tiers"]


def test_overwrite_no_fit_shows_nothing_of_the_earlier_run(tmp_path, tiny_config):
    out = tmp_path / "run"
    first = run_probe("run", str(tiny_config), "--out", str(out), "--no-progress")
    assert first.returncode == 0, first.stderr
    assert "latent" in _tiers(out)["high"] and (out / "explain.json").is_file()
    old_report = (out / "report.html").read_text()

    again = run_probe(
        "run", str(tiny_config), "--out", str(out), "--no-progress", "--overwrite", "--no-fit",
        "--set", "benchmark.seed=8",
    )
    assert again.returncode == 0, again.stderr
    for tier in _tiers(out).values():
        assert not {"latent", "mfarm_full", "fab_full"} & set(tier)
    assert not (out / "probes.h5").exists() and not (out / "explain.json").exists()
    report = (out / "report.html").read_text()
    assert report != old_report and "probe fit" in report  # the latent section says which stage to run
    assert run_probe("validate", str(out)).returncode == 0


def test_a_config_change_between_runs_drops_what_it_invalidates(tmp_path, tiny_config):
    out = tmp_path / "run"
    assert run_probe("run", str(tiny_config), "--out", str(out), "--no-progress", "--no-explain").returncode == 0
    before = _tiers(out)
    res = run_probe("run", str(tiny_config), "--out", str(out), "--no-progress", "--no-fit", "--set", "scoring.alpha=0.2")
    assert res.returncode == 0, res.stderr
    assert "(0 computed now)" in res.stderr  # the cache was reused
    after = _tiers(out)
    assert json.loads((out / "results.json").read_text())["config"]["scoring"]["alpha"] == 0.2
    assert all("latent" not in t for t in after.values())  # F_LV depends on alpha: not carried over
    assert not (out / "probes.h5").exists()
    assert after["high"]["diagnostics"]["omnibus"]["alpha"] == 0.2 != before["high"]["diagnostics"]["omnibus"]["alpha"]


def test_validate_names_a_hand_edited_artifact(tmp_path, tiny_config):
    out = tmp_path / "run"
    assert run_probe("run", str(tiny_config), "--out", str(out), "--no-progress").returncode == 0
    explain = json.loads((out / "explain.json").read_text())
    explain["tiers"]["high"]["mediation"][0]["mediated_fraction"] = 0.99
    (out / "explain.json").write_text(json.dumps(explain))
    res = run_probe("validate", str(out))
    assert res.returncode == 2 and "explain.json is stale: changed since it was written" in res.stderr
    assert "explain.json" in res.stdout and "STALE" in res.stdout
    rep = run_probe("report", str(out))
    assert rep.returncode == 0, rep.stderr
    assert not (out / "explain.json").exists()
    assert "mediation" not in _tiers(out)["high"]["latent"]
    assert run_probe("validate", str(out)).returncode == 0


def test_validate_refuses_a_folder_that_is_not_a_run(tmp_path):
    (tmp_path / "results.json").write_text("{}")
    res = run_probe("validate", str(tmp_path))
    assert res.returncode == 2 and MANIFEST in res.stderr and "Traceback" not in res.stderr
