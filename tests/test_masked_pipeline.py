"""`probe run` on a masked LM: results.json's masked section, the corpus verdicts, the cache under `probe fit`, the report."""

from __future__ import annotations

import json
import shutil

import pytest
import yaml

from conftest import ROOT, run_probe

RACES, GENDERS = ["White", "Black"], ["Female", "Male"]


def _corpus(folder):
    """Notes in which Black patients co-occur with behaviour words far more often than White ones."""
    folder.mkdir()
    for i in range(6):
        (folder / f"note{i}.txt").write_text(
            "The black female patient was combative overnight. A black male patient was agitated at triage.\n\n"
            "The white female patient was independent. The white male patient was calm and engaged. "
            "The black man reports severe pain.\n", encoding="utf-8")
    (folder / "other.txt").write_text("The white woman was hostile.\n", encoding="utf-8")
    return folder


def _config(tmp, model_dir, **masked):
    data = {
        "name": "masked_tiny", "seed": 0,
        "model": {"name": str(model_dir)},
        "benchmark": {"races": RACES, "genders": GENDERS},
        "masked": {"categories": ["behaviour", "agency", "pain"], "n_templates": 5, **masked},
        "extract": {"batch_size": 64},
        "scoring": {"bootstrap": 100, "permutations": 0},
        "probes": {"bootstrap": 0, "n_folds": 2},
    }
    path = tmp / "masked.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.fixture(scope="module")
def masked_run(tmp_path_factory):
    from latent_bias_probe import pipeline
    from latent_bias_probe.benchmarks.templates import load_templates
    from latent_bias_probe.extract.tiny_masked import plant_association, save, tiny_bert

    tmp = tmp_path_factory.mktemp("masked")
    words = load_templates("clinical").attribute_words()["behaviour"]
    model_dir = save(plant_association(tiny_bert(0), "black", words), tmp / "model")
    cfg = _config(tmp, model_dir, corpus=str(_corpus(tmp / "corpus")))
    results = pipeline.run(str(cfg), tmp / "run", progress=False)
    return tmp, results


def test_results_hold_the_masked_audit(masked_run):
    from latent_bias_probe.pipeline.results import validate_results
    from latent_bias_probe.pipeline.validate import validate_run

    tmp, results = masked_run
    validate_results(results)
    problems, lines = validate_run(tmp / "run")  # what `probe validate DIR` checks
    assert problems == [] and any(line.startswith("masked.json") and "fresh" in line for line in lines), lines
    on_disk = json.loads((tmp / "run" / "results.json").read_text())
    assert on_disk["masked"] == json.loads(json.dumps(results["masked"]))
    m = results["masked"]
    assert m["n_templates"] == 15 and m["templates"]["counts"] == {"behaviour": 5, "agency": 5, "pain": 5}
    assert m["groups"] == ["White-Female", "White-Male", "Black-Female", "Black-Male"]
    assert m["example"] == "The White female patient was combative during the examination."
    assoc = m["analyses"]["association"]
    for g in ("Black-Female", "Black-Male"):
        cell = assoc["categories"]["behaviour"]["groups"][g]
        assert cell["significant"] and cell["difference"] > 1 and cell["ci"][0] > 0
    assert not any(v["significant"] for c in ("agency", "pain") for v in assoc["categories"][c]["groups"].values())
    assert set(m["analyses"]) == {"association", "log_p_target", "pll"}
    pll = m["analyses"]["pll"]["categories"]["pain"]["groups"]
    assert all(v["mean_score"] < 0 for v in pll.values())  # sums of log-probabilities
    # the corpus: Black groups with behaviour words -> the model's findings are consistent with it
    corpus = m["corpus"]
    assert corpus["n_documents"] == 7 and corpus["n_findings"] == 4
    labels = {(f["category"], f["group"]): f["label"] for f in corpus["findings"]}
    assert labels[("behaviour", "Black-Female")] == "consistent with the corpus"
    assert corpus["share_consistent"] == 1.0 and corpus["share_contradicts"] == 0.0
    # Part A/C on P(attribute) in the "masked" tier, with the latent probes of probe fit
    tier = results["tiers"]["masked"]
    assert tier["n_cases"] == 15 and tier["accuracy"] is None
    assert len(tier["latent"]["probes"]["race"]["accuracy"]) == 2  # per encoder layer


def test_a_rerun_computes_nothing(masked_run, tmp_path):
    from latent_bias_probe import pipeline

    tmp, results = masked_run
    again = tmp_path / "again"
    shutil.copytree(tmp / "run", again)
    before = (again / "masked.json").stat().st_mtime_ns, (again / "cache.h5").stat().st_mtime_ns
    cfg = _config(tmp_path, tmp / "model", corpus=str(tmp / "corpus"))
    rerun = pipeline.run(str(cfg), again, stages=("extract", "score"), progress=False)
    assert ((again / "masked.json").stat().st_mtime_ns, (again / "cache.h5").stat().st_mtime_ns) == before
    assert rerun["masked"] == results["masked"]


def test_the_masked_cache_passes_probe_fit(masked_run, tmp_path):
    from latent_bias_probe import pipeline
    from latent_bias_probe.extract.cache import FORMAT, Cache

    tmp, _ = masked_run
    with Cache(tmp / "run" / "cache.h5") as cache:
        assert cache.attrs["format"] == FORMAT and cache.attrs["model_kind"] == "masked"
        assert set(cache.prompts["tier"]) == {"masked"} and len(cache.prompts) == 15 * 5
        assert cache.acts("resid_post", "last").shape == (2, 75, 32)
        assert cache.positions("resid_post") == ["last"]
    # `probe fit` on a copy of the run directory, without its probes.h5
    fresh = tmp_path / "fit_only"
    shutil.copytree(tmp / "run", fresh)
    (fresh / "probes.h5").unlink()
    pipeline.run_stage("fit", fresh)  # what `probe fit DIR` runs
    results = json.loads((fresh / "results.json").read_text())
    race = results["tiers"]["masked"]["latent"]["probes"]["race"]
    assert len(race["accuracy"]) == 2 and all(0 <= a <= 1 for a in race["accuracy"])
    # the target position holds the race word itself: decodable well above chance (0.5, two races)
    assert race["chance"] == pytest.approx(0.5) and max(race["accuracy"]) >= 0.85
    assert pipeline.RunDir(fresh).is_fresh("probes.h5")


def test_report_has_the_masked_section(masked_run):
    tmp, _ = masked_run
    html = (tmp / "run" / "report.html").read_text()
    for text in ('<section id="masked">', "Log-probability bias (prior-corrected)", "Significant associations",
                 "Inherited or amplified: the corpus", "consistent with the corpus", "Pseudo-log-likelihood"):
        assert text in html, text
    from test_report_browser import check_page, find_browser, screenshot

    browser = find_browser()
    if browser is None:
        pytest.skip("no headless browser for the screenshot")
    found = check_page(browser, tmp / "run" / "report.html")
    assert found["problems"] == [], found["problems"]
    shot = screenshot(browser, tmp / "run" / "report.html", ROOT / "test-artifacts" / "masked_report.png", found["height"])
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("masked, where", [
    ({"templates": "nowhere.yaml"}, "masked.templates: file not found"),
    ({"templates": "x.txt"}, "masked.templates: expected 'clinical' or a .yaml"),
    ({"target_format": "{race}"}, "masked.target_format: needs a race slot and a gender slot"),
    ({"target_format": "{race} {sex}"}, "masked.target_format: only {race}"),
    ({"n_templates": 1}, "masked.n_templates: must lie in 2.."),
    ({"corpus_column": "text"}, "masked.corpus_column: only for a .csv"),
    ({"corpus": "no/such/folder"}, "masked.corpus: file or folder not found"),
    ({"pll": "yes"}, "masked.pll: expected bool"),
    ({"colour": 1}, "masked.colour: unknown key"),
])
def test_bad_masked_configs_name_the_key(tmp_path, masked, where):
    from latent_bias_probe.configs.schema import ConfigError, load_config

    path = _config(tmp_path, tmp_path, **masked)
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert where in str(err.value) and str(path) in str(err.value) and "\n" not in str(err.value)


def test_cli_exits_2_on_a_masked_kind_without_an_mlm_head(tmp_path, tiny_model_dir):
    data = yaml.safe_load(_config(tmp_path, tiny_model_dir).read_text())
    data["model"]["kind"] = "masked"
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(data))
    res = run_probe("run", str(path), "--out", str(tmp_path / "out"))
    assert res.returncode == 2, res.stderr[-1000:]
    last = res.stderr.strip().splitlines()[-1]
    assert "model.kind: 'masked'" in last and "no masked-LM head" in last
    assert not (tmp_path / "out").exists()  # nothing written for a refused run
