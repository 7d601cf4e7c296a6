"""Hostile run directories: output folders that are not the toolkit's, artifacts edited behind its
back, and whatever a run directory may hold (issue 25, first half).

Three groups, each a refusal (exit 2, one ``error:`` line naming the path, no traceback)
or a recomputation, never a silent use of what was edited:

- output folders: a folder is written only if it is new, empty, or the toolkit's own;
  pruning deletes only what the manifest records as written by the toolkit;
- freshness: an edited cache.h5, config.json, sweep.csv, a changed template file or
  corpus, a malformed explain checkpoint unit; a re-indented explain.json is kept; a
  cache from another tool is adopted by ``probe fit``;
- no traceback: manifests of any shape, a full disk while writing cache.h5 or
  report.html (and the resume after it), a folder where a file is to be written.

One small run (3 cases, one tier, with explain and report) is built per module and
copied by each test; the CLI is called in-process (``cli.main``) to keep the file fast.
"""

from __future__ import annotations

import errno
import json
import logging
import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest
import yaml

from conftest import write_config

SMALL = dict(
    benchmark={"n_cases": 3, "tiers": ["high"], "races": ["White", "Black"], "genders": ["Male", "Female"]},
    extract={"batch_size": 8, "batch_check": 0},
    scoring={"bootstrap": 20, "permutations": 0},
    probes={"bootstrap": 0, "n_folds": 2},
    explain={"max_cases": 2, "alphas": [0.0, 1.0], "layers": [1], "trace_cases": 1, "trace_layers": [1]},
)


def small_config(path: Path, model_dir: Path, **sections) -> Path:
    merged = {k: dict(v) for k, v in SMALL.items()}
    for key, value in sections.items():
        merged.setdefault(key, {}).update(value) if isinstance(value, dict) else merged.__setitem__(key, value)
    return write_config(path, model_dir, **merged)


def probe(capsys, *args: object) -> tuple[int, str]:
    """``probe ARGS`` in this process: (exit code, stderr)."""
    from latent_bias_probe import cli

    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_:
        cli.main.main(args=[str(a) for a in args], prog_name="probe")
    err = capsys.readouterr().err
    code = exit_.value.code if isinstance(exit_.value.code, int) else (0 if exit_.value.code is None else 1)
    return code, err


def refused(code: int, err: str, *needles: str) -> str:
    """Exit 2 with one ``error:`` line holding every needle, and no traceback."""
    assert code == 2, err
    assert "Traceback" not in err and "internal error" not in err, err
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, err
    for needle in needles:
        assert needle in errors[0], (needle, errors[0])
    return errors[0]


def files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def base(tmp_path_factory, tiny_model_dir) -> tuple[Path, Path]:
    """(config, run directory) of one complete run: extract, score, fit, explain, report."""
    from latent_bias_probe import pipeline

    tmp = tmp_path_factory.mktemp("rundir")
    cfg = small_config(tmp / "small.yaml", tiny_model_dir)
    pipeline.run(str(cfg), tmp / "run", progress=False)
    for name in ("cache.h5", "probes.h5", "explain.json", "results.json", "report.html"):
        assert (tmp / "run" / name).is_file(), name
    return cfg, tmp / "run"


@pytest.fixture
def run(base, tmp_path) -> Path:
    """A private copy of the module's run directory."""
    shutil.copytree(base[1], tmp_path / "run")
    return tmp_path / "run"


# =========================================================================== output folders


def _user_folder(path: Path) -> Path:
    path.mkdir()
    (path / "results.json").write_text('{"my": 1}\n')
    (path / "report.html").write_text("<html>mine</html>\n")
    (path / "predictions.csv").write_text("my,own\n1,2\n")
    return path


@pytest.mark.parametrize("how", ["plain", "overwrite", "symlink", "home"])
def test_run_refuses_a_folder_that_is_not_a_run_directory(base, tmp_path, capsys, how):
    cfg = base[0]
    if how == "home":  # what `--out ~` expands to: a folder of dotfiles and documents
        user = tmp_path / "home"
        user.mkdir()
        (user / ".bashrc").write_text("export A=1\n")
        (user / "results.json").write_text('{"thesis": true}\n')
    else:
        user = _user_folder(tmp_path / "u")
    before = files(user)
    out = user
    if how == "symlink":
        out = tmp_path / "link"
        out.symlink_to(user)
    extra = ["--overwrite"] if how == "overwrite" else []
    code, err = probe(capsys, "run", cfg, "--out", out, "--no-progress", *extra)
    refused(code, err, str(out), "not a run directory")
    assert files(user) == before


def test_extract_refuses_a_user_folder_too(base, tmp_path, capsys):
    user = _user_folder(tmp_path / "u")
    before = files(user)
    refused(*probe(capsys, "extract", base[0], "--out", user, "--overwrite", "--no-progress"), str(user))
    assert files(user) == before


@pytest.mark.parametrize("command", ["run", "extract"])
def test_an_empty_out_is_refused(base, tmp_path, capsys, monkeypatch, command):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "results.json").write_text('{"my": 1}\n')
    before = files(tmp_path)
    refused(*probe(capsys, command, base[0], "--out", "", "--no-progress"), "--out ''")
    assert files(tmp_path) == before


def test_prune_deletes_only_what_the_manifest_records(run, capsys):
    from latent_bias_probe.pipeline.artifacts import RunDir

    # a user's explain.json in a run directory: the manifest does not list it
    manifest = json.loads((run / "artifacts.json").read_text())
    del manifest["artifacts"]["explain.json"]
    (run / "artifacts.json").write_text(json.dumps(manifest))
    (run / "explain.json").write_text('{"mine": true}\n')
    assert "explain.json" not in RunDir(run).prune()  # results.json and report.html were made from the toolkit's
    code, err = probe(capsys, "report", run)
    assert code == 0, err
    assert (run / "explain.json").read_text() == '{"mine": true}\n'
    assert "removed stale" not in err
    # what the toolkit recorded and is now stale is still removed
    (run / "probes.h5").write_bytes(b"edited")
    assert "probes.h5" in RunDir(run).prune() and not (run / "probes.h5").exists()


def _sweep_config(tmp: Path, model_dir: Path) -> Path:
    return small_config(tmp / "sweep.yaml", model_dir, sweep={"precisions": ["float32"]})


def test_a_sweep_refuses_a_user_folder(base, tmp_path, tiny_model_dir):
    from latent_bias_probe.configs.errors import InputError
    from latent_bias_probe.configs.schema import load_config
    from latent_bias_probe.pipeline.sweep import run_sweep

    user = _user_folder(tmp_path / "u")
    (user / "sweep.csv").write_text("my,table\n")
    before = files(user)
    with pytest.raises(InputError, match="not a sweep directory"):
        run_sweep(load_config(_sweep_config(tmp_path, tiny_model_dir)), user, lambda c, d: None)
    assert files(user) == before


# =========================================================================== freshness


def test_an_edited_cache_is_refused_and_recomputed_with_overwrite(base, run, capsys):
    with h5py.File(run / "cache.h5", "r+") as f:
        original = f["outputs/p_yes"][()].copy()
        f["outputs/p_yes"][0] = 0.999
    predictions = (run / "predictions.csv").read_bytes()
    args = ("run", base[0], "--out", run, "--no-progress", "--no-explain", "--no-report")
    refused(*probe(capsys, *args), str(run / "cache.h5"), "--overwrite")
    assert (run / "predictions.csv").read_bytes() == predictions
    refused(*probe(capsys, "validate", run), "cache.h5")
    code, err = probe(capsys, *args, "--overwrite")
    assert code == 0, err
    with h5py.File(run / "cache.h5", "r") as f:
        np.testing.assert_array_equal(f["outputs/p_yes"][()], original)
    assert (run / "predictions.csv").read_bytes() == predictions


def test_a_hand_edited_config_json_drives_no_stage(run, capsys):
    config = json.loads((run / "config.json").read_text())
    config["scoring"]["alpha"] = 0.2
    (run / "config.json").write_text(json.dumps(config, indent=2))
    results = (run / "results.json").read_bytes()
    for command in ("report", "fit"):
        refused(*probe(capsys, command, run), str(run / "config.json"))
    assert (run / "probes.h5").is_file() and (run / "explain.json").is_file()
    assert (run / "results.json").read_bytes() == results


def test_report_keeps_a_reindented_explain_json(run, capsys):
    explain = json.loads((run / "explain.json").read_text())
    (run / "explain.json").write_text(json.dumps(explain, indent=7, sort_keys=True))
    (run / "report.html").unlink()
    code, err = probe(capsys, "report", run)
    assert code == 0, err
    assert json.loads((run / "explain.json").read_text()) == explain
    assert "mediation" in json.loads((run / "results.json").read_text())["tiers"]["high"]["latent"]
    assert probe(capsys, "validate", run)[0] == 0


def test_probe_fit_adopts_a_cache_from_another_tool(run, tmp_path, capsys):
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    shutil.copy(run / "cache.h5", foreign / "cache.h5")  # no manifest, no predictions.csv, no config.json
    code, err = probe(capsys, "fit", foreign)
    assert code == 0, err
    results = json.loads((foreign / "results.json").read_text())
    assert "latent" in results["tiers"]["high"]
    with h5py.File(foreign / "cache.h5", "r") as f:
        p_yes = f["outputs/p_yes"][()]
    derived = np.loadtxt(foreign / "predictions.csv", delimiter=",", skiprows=1, usecols=6, dtype=float)
    np.testing.assert_allclose(derived, p_yes, rtol=1e-7)


def _checkpoint(run: Path, items, version=None) -> Path:
    from latent_bias_probe.configs.version import TOOLKIT_VERSION
    from latent_bias_probe.pipeline.artifacts import RunDir
    from latent_bias_probe.pipeline.explain import CHECKPOINT_FORMAT, CHECKPOINT_NAME, _checkpoint_key
    from latent_bias_probe.pipeline.results import load_run_config

    key = _checkpoint_key(RunDir(run), load_run_config(run))
    body = {"format": CHECKPOINT_FORMAT, "toolkit_version": version or TOOLKIT_VERSION, "key": key, "items": items}
    (run / CHECKPOINT_NAME).write_text(json.dumps(body))
    return run / CHECKPOINT_NAME


@pytest.mark.parametrize("items, version", [
    ({"high/dose/value_axis": "garbage",
      "high/dose/steer:Black-Female": {"layer": 1, "alphas": [0.0, 1.0], "p_yes_mean": [0.5], "logit_mean": [0.0, 0.0],
                                       "logit_slope": None, "spearman": None},  # one α short
      "high/mediation/0": {"leace": [[1.0]]}, "high/mediation/ranks": {"1": "three"}, "high/trace/0": 42}, None),
    ([1, 2, 3], None),  # not a mapping of units
    ({"high/dose/value_axis": "garbage"}, "0.0.1-other"),  # another toolkit version
], ids=["malformed units", "items a list", "another version"])
def test_a_malformed_explain_checkpoint_is_dropped_and_recomputed(base, run, capsys, caplog, items, version):
    reference = json.loads((base[1] / "explain.json").read_text())
    (run / "explain.json").unlink()
    _checkpoint(run, items, version)
    with caplog.at_level(logging.WARNING):
        code, err = probe(capsys, "explain", run)
    assert code == 0, err
    assert json.loads((run / "explain.json").read_text()) == reference
    assert any("malformed" in r.message or "starting over" in r.message for r in caplog.records)
    assert not (run / ".explain.partial.json").exists()
    assert probe(capsys, "validate", run)[0] == 0


def test_sweep_directories_have_a_manifest_and_an_edited_sweep_csv_is_refused(base, tmp_path, tiny_model_dir, capsys):
    from latent_bias_probe.configs.schema import load_config
    from latent_bias_probe.pipeline.report import write_sweep_report
    from latent_bias_probe.pipeline.sweep import run_sweep

    def run_one(item_cfg, run_dir):  # the combination's run: the module's run, made for it
        shutil.copytree(base[1], run_dir, dirs_exist_ok=True)

    out = tmp_path / "sweep"
    run_sweep(load_config(_sweep_config(tmp_path, tiny_model_dir)), out, run_one)
    write_sweep_report(out)
    code, err = probe(capsys, "validate", out)
    assert code == 0, err
    table = (out / "sweep.csv").read_text()
    (out / "sweep.csv").write_text(table.replace("high", "low", 1))
    html = (out / "sweep.html").read_bytes()
    refused(*probe(capsys, "report", out), str(out / "sweep.csv"), "changed")
    assert (out / "sweep.html").read_bytes() == html
    refused(*probe(capsys, "validate", out), "sweep.csv")


# --------------------------------------------------------------------------- masked-LM inputs

TEMPLATES = {
    "format": "latent-bias-templates/1", "name": "mini",
    "categories": {"behaviour": "conduct", "pain": "pain"},
    "templates": [
        {"id": "b1", "category": "behaviour", "attribute": "combative", "text": "The [TARGET] patient was [ATTRIBUTE] today."},
        {"id": "b2", "category": "behaviour", "attribute": "agitated", "text": "Notes call the [TARGET] patient [ATTRIBUTE]."},
        {"id": "p1", "category": "pain", "attribute": "severe", "text": "The [TARGET] patient reports [ATTRIBUTE] pain."},
        {"id": "p2", "category": "pain", "attribute": "mild", "text": "The [TARGET] patient has [ATTRIBUTE] pain."},
    ],
}


@pytest.fixture(scope="module")
def masked_base(tmp_path_factory):
    from latent_bias_probe.extract.tiny_masked import save, tiny_bert

    tmp = tmp_path_factory.mktemp("masked")
    return save(tiny_bert(0), tmp / "model")


def test_masked_json_follows_the_template_file_and_every_corpus_file(masked_base, tmp_path):
    from latent_bias_probe import pipeline

    templates = tmp_path / "mini.yaml"
    templates.write_text(yaml.safe_dump(TEMPLATES))
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "a.txt").write_text("The black female patient was combative. The white male patient has mild pain.\n")
    cfg = tmp_path / "masked.yaml"
    cfg.write_text(yaml.safe_dump({
        "name": "m", "model": {"name": str(masked_base)},
        "benchmark": {"races": ["White", "Black"], "genders": ["Female", "Male"]},
        "masked": {"templates": str(templates), "corpus": str(corpus)},
        "scoring": {"bootstrap": 0, "permutations": 0},
    }))
    out = tmp_path / "run"
    first = pipeline.run(str(cfg), out, ("extract", "score"), progress=False)["masked"]
    assert first["corpus"]["n_documents"] == 1
    (corpus / "b.txt").write_text("The black male patient was agitated.\n")  # a corpus file added
    second = pipeline.run(str(cfg), out, ("extract", "score"), progress=False)["masked"]
    assert second["corpus"]["n_documents"] == 2
    moved = json.loads(json.dumps(TEMPLATES))
    moved["templates"][1]["category"] = "pain"  # b2 moves between categories
    templates.write_text(yaml.safe_dump(moved))
    pipeline.run(str(cfg), out, ("extract", "score"), progress=False)
    masked = json.loads((out / "masked.json").read_text())
    assert dict(zip(masked["ids"], masked["categories"]))["b2"] == "pain"
    assert pipeline.RunDir(out).is_fresh("masked.json")


# =========================================================================== no traceback

def _bad_input(key):
    """The run's own manifest with one more input, ``key``, on results.json (whose fingerprint still matches)."""
    def edit(manifest):
        manifest["artifacts"]["results.json"]["inputs"][key] = "0" * 64
        return manifest
    return edit


def _inputs_as_list(manifest):
    entry = manifest["artifacts"]["results.json"]
    entry["inputs"] = sorted(entry["inputs"])
    return manifest


SHAPES = {
    "list": lambda m: [],
    "null": lambda m: None,
    "number": lambda m: 42,
    "path input": _bad_input("../../etc/passwd"),
    "unknown config section": _bad_input("config:nosuch"),
    "inputs as a list": _inputs_as_list,
}


def _spoil_manifest(run: Path, shape: str) -> None:
    manifest = json.loads((run / "artifacts.json").read_text())
    (run / "artifacts.json").write_text(json.dumps(SHAPES[shape](manifest)))


@pytest.mark.parametrize("shape", list(SHAPES))
def test_a_manifest_of_any_shape_is_named_not_a_traceback(run, capsys, shape):
    _spoil_manifest(run, shape)
    refused(*probe(capsys, "validate", run), str(run))
    code, err = probe(capsys, "report", run)
    assert code in (0, 2) and "Traceback" not in err and "internal error" not in err, err


@pytest.mark.parametrize("shape", ["list", "inputs as a list"])
def test_run_goes_on_over_a_malformed_manifest(base, run, capsys, shape):
    _spoil_manifest(run, shape)
    code, err = probe(capsys, "run", base[0], "--out", run, "--no-progress", "--no-explain", "--no-report")
    assert code == 0, err
    assert json.loads((run / "artifacts.json").read_text())["format"] == "latent-bias-artifacts/1"
    assert (run / "results.json").is_file()


def test_a_full_disk_while_writing_the_cache_is_named_and_the_run_resumes(base, tmp_path, capsys, monkeypatch):
    from latent_bias_probe.extract.cache import CacheWriter

    real = CacheWriter.write_batch
    calls = []

    def full_after_one(self, *args, **kwargs):
        calls.append(1)
        if len(calls) > 1:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(self, *args, **kwargs)

    out = tmp_path / "run"
    monkeypatch.setattr(CacheWriter, "write_batch", full_after_one)
    refused(*probe(capsys, "extract", base[0], "--out", out, "--no-progress"), str(out / "cache.h5"), "No space left")
    monkeypatch.setattr(CacheWriter, "write_batch", real)
    code, err = probe(capsys, "extract", base[0], "--out", out, "--no-progress")
    assert code == 0, err
    assert (out / "predictions.csv").read_bytes() == (base[1] / "predictions.csv").read_bytes()


def test_a_full_disk_while_writing_the_report_is_named_and_the_report_resumes(run, capsys, monkeypatch):
    real = Path.write_text

    def full(self, *args, **kwargs):
        if self.name.startswith(".report.html."):
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(self, *args, **kwargs)

    (run / "report.html").unlink()
    monkeypatch.setattr(Path, "write_text", full)
    error = refused(*probe(capsys, "report", run), str(run / "report.html"), "No space left")
    assert ".tmp" not in error
    assert not list(run.glob(".report.html.*"))
    monkeypatch.setattr(Path, "write_text", real)
    code, err = probe(capsys, "report", run)
    assert code == 0, err
    assert probe(capsys, "validate", run)[0] == 0


def test_a_folder_in_place_of_results_json_is_named(run, capsys):
    (run / "results.json").unlink()
    (run / "results.json").mkdir()
    error = refused(*probe(capsys, "report", run), str(run / "results.json"))
    assert ".tmp" not in error


def test_a_folder_in_place_of_the_explain_checkpoint_is_named(run, capsys):
    (run / "explain.json").unlink()
    (run / ".explain.partial.json").mkdir()
    error = refused(*probe(capsys, "explain", run), str(run / ".explain.partial.json"))
    assert ".tmp" not in error
