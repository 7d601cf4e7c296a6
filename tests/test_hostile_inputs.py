"""Hostile inputs at the command line: what a user types or receives.

Every refusal exits 2 with exactly one ``error:`` line that names the key, option or
path at fault (no traceback, no "internal error"), and changes nothing outside the
output folder (the whole ``tmp_path`` tree is snapshotted before and after: names,
sizes, mtimes). Covered: ``--set`` overrides, predictions CSVs for ``probe score``,
run directories and caches from elsewhere (including a model folder whose code must
not run), shard merges, impossible output paths, the run-directory lock, SIGINT /
SIGKILL during extract, and malformed options. Config *files* have their own suite
(tests/test_hostile_config.py).

One fitted run is built per module (3 cases, one tier, 5 variants) and copied by the
tests that need one; only the interruption and concurrency tests run the model again.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest

from conftest import ROOT, run_probe, write_config

# --------------------------------------------------------------------------- helpers


def tree(root: Path, skip: tuple[Path, ...] = ()) -> dict[str, object]:
    """Every entry under ``root`` except ``skip`` (and what is under them).

    Files: (size, mtime_ns, mode); folders: their name only (a folder's mtime changes
    whenever the output folder is created inside it, which is allowed).
    """
    skipped = {Path(p) for p in skip}
    out: dict[str, object] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        here = Path(dirpath)
        dirnames[:] = [n for n in dirnames if here / n not in skipped]
        for n in dirnames:
            out[str((here / n).relative_to(root)) + "/"] = "dir"
        for n in filenames:
            p = here / n
            if p in skipped:
                continue
            st = p.lstat()
            out[str(p.relative_to(root))] = (st.st_size, st.st_mtime_ns, st.st_mode)
    return out


class Unchanged:
    """``with Unchanged(tmp_path, out): ...``: nothing outside ``out`` changes in the block."""

    def __init__(self, root: Path, *skip: Path):
        self.root, self.skip = root, tuple(skip)

    def __enter__(self) -> "Unchanged":
        self.before = tree(self.root, self.skip)
        return self

    def __exit__(self, exc_type, *_: object) -> None:
        if exc_type is not None:
            return
        after = tree(self.root, self.skip)
        added = sorted(set(after) - set(self.before))
        removed = sorted(set(self.before) - set(after))
        changed = sorted(k for k in set(after) & set(self.before) if after[k] != self.before[k])
        assert not (added or removed or changed), f"outside the output: added {added}, removed {removed}, changed {changed}"


def _progress_line(line: str) -> bool:
    return "%|" in line or "it/s]" in line or "s/it]" in line


def assert_refused(res: subprocess.CompletedProcess, *needles: str, code: int = 2) -> str:
    """Exit ``code``, exactly one ``error:`` line holding every needle, no traceback, nothing else but logs."""
    err = res.stderr
    assert res.returncode == code, f"exit {res.returncode}\n--- stdout\n{res.stdout}\n--- stderr\n{err}"
    assert "Traceback" not in err and "internal error" not in err, err
    lines = [line for line in err.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("error:")]
    assert len(errors) == 1, err
    stray = [l for l in lines if not l.startswith(("error:", "INFO ", "WARNING ", "DEBUG ")) and not _progress_line(l)]
    assert not stray, err
    for needle in needles:
        assert needle in errors[0], (needle, errors[0])
    return errors[0]


def probe(*args: object, cwd: Path) -> subprocess.CompletedProcess:
    """``probe ARGS`` in a subprocess, started in ``cwd`` (so relative outputs land in tmp_path)."""
    return run_probe(*map(str, args), cwd=cwd, timeout=300)


def _env(**extra: str) -> dict[str, str]:
    base = {"PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", "PYTHONDONTWRITEBYTECODE": "1"}
    return {**os.environ, **base, **extra}


#: a 3-case, one-tier job with 5 variants per case (15 prompts; batches of one case each)
SMALL = dict(
    benchmark={"n_cases": 3, "tiers": ["high"], "races": ["White", "Black"], "genders": ["Male", "Female"]},
    extract={"batch_size": 8, "batch_check": 0},
    explain={"max_cases": 2, "alphas": [0.0, 1.0], "layers": [1]},
)
N_PROMPTS = 15


def small_config(path: Path, model_dir: Path, **sections) -> Path:
    merged = {k: dict(v) for k, v in SMALL.items()}
    for key, value in sections.items():
        merged.setdefault(key, {}).update(value) if isinstance(value, dict) else merged.__setitem__(key, value)
    return write_config(path, model_dir, **merged)


@pytest.fixture(scope="module")
def fitted(tmp_path_factory, tiny_model_dir) -> tuple[Path, Path]:
    """(config, run directory) of one extracted and fitted run (no explain, no report)."""
    base = tmp_path_factory.mktemp("fitted")
    cfg = small_config(base / "small.yaml", tiny_model_dir)
    run = base / "run"
    res = probe("run", cfg, "--out", run, "--no-explain", "--no-report", "--no-progress", cwd=base)
    assert res.returncode == 0, res.stderr
    for name in ("cache.h5", "probes.h5", "predictions.csv", "results.json", "config.json"):
        assert (run / name).is_file(), name
    return cfg, run


@pytest.fixture
def copy_run(fitted, tmp_path):
    """A fresh copy of the fitted run under tmp_path."""

    def make(name: str = "run") -> Path:
        dest = tmp_path / name
        shutil.copytree(fitted[1], dest)
        return dest

    return make


def reseal(run_dir: Path) -> None:
    """Re-record every artifact's fingerprint and inputs in artifacts.json, as a forger would."""
    from latent_bias_probe.pipeline.artifacts import ARTIFACTS, MANIFEST, RunDir

    run = RunDir(run_dir)
    manifest = run.manifest
    for name in ARTIFACTS:  # declared in dependency order
        if name in manifest:
            run.forget()
            manifest[name]["sha256"] = run.fingerprint(name)
            manifest[name]["inputs"] = {k: run.fingerprint(k) for k in manifest[name].get("inputs") or {}}
            run._write_manifest()
    assert (run_dir / MANIFEST).is_file()


def edit_config_json(run_dir: Path, edit) -> None:
    path = run_dir / "config.json"
    data = json.loads(path.read_text())
    edit(data)
    path.write_text(json.dumps(data, indent=2))


def set_h5(path: Path, fn) -> None:
    with h5py.File(path, "r+") as f:
        fn(f)


def make_shard(run_dir: Path, dest: Path, shard: str | None) -> Path:
    """A shard run directory: a copy of ``run_dir`` whose cache says ``--shard shard``."""
    shutil.copytree(run_dir, dest)
    if shard is not None:
        set_h5(dest / "cache.h5", lambda f: f.attrs.__setitem__("shard", shard))
    return dest


# --------------------------------------------------------------------------- 1. --set overrides


@pytest.mark.parametrize(
    "command, assignment, needles",
    [
        ("run", "model.trust_remote_code=true", ["model.trust_remote_code", "--trust-remote-code"]),
        ("extract", "model.trust_remote_code=true", ["model.trust_remote_code", "--trust-remote-code"]),
        ("run", "name=..", ["name", "'..'"]),
        ("run", "name=../escaped", ["name", "../escaped"]),
        ("run", "name=a/b", ["name", "a/b"]),
        ("run", "name={tmp}/absolute", ["name", "absolute"]),
        ("extract", "extract.batch_size=many", ["extract.batch_size", "many"]),
        ("run", "model.bogus=1", ["model.bogus", "unknown key"]),
    ],
)
def test_set_override_is_refused(tmp_path, tiny_model_dir, command, assignment, needles):
    cfg = small_config(tmp_path / "c.yaml", tiny_model_dir)
    assignment = assignment.replace("{tmp}", str(tmp_path))
    args = [command, cfg, "--set", assignment, "--no-progress"]
    if command == "extract":
        args += ["--out", tmp_path / "out"]
    with Unchanged(tmp_path):  # no runs/, no runs/../escaped, no out/, nothing at the absolute path
        res = probe(*args, cwd=tmp_path)
    assert_refused(res, "c.yaml", *needles)
    assert not (tmp_path / "escaped").exists() and not (tmp_path / "absolute").exists()


# --------------------------------------------------------------------------- 2. predictions CSVs

VARIANTS = [("BASE", "BASE"), ("White", "Male"), ("Black", "Male"), ("White", "Female"), ("Black", "Female")]


def pred_csv(n_cases: int = 3, header: str = "case_id,tier,variant,race,gender,label,p_yes") -> str:
    rows = [header]
    for i in range(n_cases):
        for j, (race, gender) in enumerate(VARIANTS):
            variant = "BASE" if race == "BASE" else f"{race}-{gender}"
            rows.append(f"c{i},high,{variant},{race},{gender},{i % 2},{0.3 + 0.1 * j:.2f}")
    return "\n".join(rows) + "\n"


GOOD = pred_csv()


def _drop_col(text: str, col: str) -> str:
    lines = [line.split(",") for line in text.splitlines()]
    k = lines[0].index(col)
    return "\n".join(",".join(c for i, c in enumerate(line) if i != k) for line in lines) + "\n"


BAD_PREDICTIONS = [
    ("no-p_yes", _drop_col(GOOD, "p_yes").encode(), ["missing column 'p_yes'"]),
    ("p_yes>1", GOOD.replace("c1,high,White-Male,White,Male,1,0.40", "c1,high,White-Male,White,Male,1,1.5").encode(), ["p_yes", "'1.5'", "line 8"]),
    ("p_yes-nan", GOOD.replace(",0.40\n", ",nan\n", 1).encode(), ["p_yes", "'nan'"]),
    ("p_yes-text", GOOD.replace(",0.40\n", ",likely\n", 1).encode(), ["p_yes", "'likely'"]),
    ("duplicate-row", (GOOD + "c0,high,White-Male,White,Male,0,0.4\n").encode(), ["c0", "White-Male"]),
    ("missing-BASE", "\n".join(l for l in GOOD.splitlines() if not l.startswith("c2,high,BASE")).encode() + b"\n", ["c2", "BASE"]),
    ("empty-file", b"", ["not a readable CSV"]),
    ("binary", bytes(range(256)) * 8, ["not a readable CSV"]),
    ("latin-1", GOOD.replace("White", "Caf\u00e9").encode("latin-1"), ["not a readable CSV"]),
    ("unclosed-quote", (GOOD + 'c9,high,"BASE,BASE,BASE,1,0.5\n').encode(), ["not a readable CSV"]),
    ("label", GOOD.replace(",1,0.40", ",maybe,0.40", 1).encode(), ["label", "'maybe'"]),
    ("only-BASE", "\n".join(l for l in GOOD.splitlines() if ",BASE," in l or l.startswith("case_id")).encode() + b"\n", ["no demographic"]),
]


@pytest.mark.parametrize("label, content, needles", BAD_PREDICTIONS, ids=[b[0] for b in BAD_PREDICTIONS])
def test_bad_predictions_csv(tmp_path, label, content, needles):
    path = tmp_path / "pred.csv"
    path.write_bytes(content)
    with Unchanged(tmp_path):
        res = probe("score", path, "--bootstrap", "0", cwd=tmp_path)
    assert_refused(res, str(path), *needles)
    assert res.stdout == ""


@pytest.mark.parametrize(
    "args, needles",
    [
        (["--correction", "bogus"], ["--correction", "bogus"]),
        (["--alpha", "2"], ["--alpha", "2"]),
        (["--alpha", "nan"], ["--alpha"]),
        (["--bootstrap", "-1"], ["--bootstrap", "-1"]),
    ],
)
def test_bad_score_options(tmp_path, args, needles):
    path = tmp_path / "pred.csv"
    path.write_text(GOOD)
    with Unchanged(tmp_path):
        res = probe("score", path, *args, cwd=tmp_path)
    assert_refused(res, *needles)


def test_score_on_a_directory_or_missing_file(tmp_path):
    (tmp_path / "pred.csv").mkdir()
    with Unchanged(tmp_path):
        assert_refused(probe("score", tmp_path / "pred.csv", cwd=tmp_path), "pred.csv", "directory")
        assert_refused(probe("score", tmp_path / "nope.csv", cwd=tmp_path), "nope.csv", "not found")


def test_score_bootstrap_zero_works(tmp_path):
    path = tmp_path / "pred.csv"
    path.write_text(GOOD)
    with Unchanged(tmp_path):
        res = probe("score", path, "--bootstrap", "0", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    tiers = json.loads(res.stdout)["tiers"]
    assert list(tiers) == ["high"] and tiers["high"]["n_cases"] == 3
    assert "Traceback" not in res.stderr


# --------------------------------------------------------------------------- 3. run directories from elsewhere

EVIL_CODE = {
    "configuration_evil": '''
import pathlib
pathlib.Path({marker!r}).write_text("the model folder's code ran")
from transformers import LlamaConfig


class EvilConfig(LlamaConfig):
    model_type = "llama"
''',
    "modeling_evil": '''
import pathlib
pathlib.Path({marker!r}).write_text("the model folder's code ran")
from transformers import LlamaForCausalLM
from .configuration_evil import EvilConfig


class EvilForCausalLM(LlamaForCausalLM):
    config_class = EvilConfig
''',
}


@pytest.fixture
def evil_model(tmp_path, tiny_model_dir, monkeypatch) -> tuple[Path, Path]:
    """(model folder, marker): a copy of the tiny model whose config.json maps to local code that writes ``marker``."""
    folder = tmp_path / "evil-model"
    shutil.copytree(tiny_model_dir, folder)
    marker = tmp_path / "CODE_RAN"
    for module, code in EVIL_CODE.items():
        (folder / f"{module}.py").write_text(code.format(marker=str(marker)))
    config = json.loads((folder / "config.json").read_text())
    config["auto_map"] = {"AutoConfig": "configuration_evil.EvilConfig", "AutoModelForCausalLM": "modeling_evil.EvilForCausalLM"}
    (folder / "config.json").write_text(json.dumps(config, indent=2))
    monkeypatch.setenv("HF_MODULES_CACHE", str(tmp_path / "hf-modules"))  # where transformers would copy the code
    return folder, marker


def test_evil_model_code_runs_when_trusted(evil_model, tmp_path):
    """The control for the two tests below: transformers does import the folder's code when trusted."""
    folder, marker = evil_model
    code = f"from transformers import AutoConfig; AutoConfig.from_pretrained({str(folder)!r}, trust_remote_code=True)"
    res = subprocess.run([sys.executable, "-c", code], env=_env(), cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    assert marker.is_file()


def test_explain_refuses_trust_remote_code_from_config_json(copy_run, evil_model, tmp_path):
    folder, marker = evil_model
    run = copy_run()

    def trust(data):
        data["model"]["name"] = str(folder)
        data["model"]["trust_remote_code"] = True

    edit_config_json(run, trust)
    reseal(run)  # a consistent forged run directory: every artifact fresh
    with Unchanged(tmp_path):
        res = probe("explain", run, cwd=tmp_path)
    assert_refused(res, "config.json", "model.trust_remote_code", "--trust-remote-code")
    assert not marker.exists()


@pytest.mark.parametrize("command", ["extract", "run"])
def test_yaml_trust_remote_code_is_refused(evil_model, tmp_path, command):
    folder, marker = evil_model
    cfg = small_config(tmp_path / "evil.yaml", folder, model={"trust_remote_code": True})
    with Unchanged(tmp_path):
        res = probe(command, cfg, "--out", tmp_path / "out", "--no-progress", cwd=tmp_path)
    assert_refused(res, "evil.yaml", "model.trust_remote_code", "--trust-remote-code")
    assert not marker.exists()


def _garbage(path: Path) -> None:
    path.write_bytes(b"not HDF5 at all\n" * 50)


def _no_steering(path: Path) -> None:
    with h5py.File(path, "r+") as f:
        del f["high/steering"]


@pytest.mark.parametrize("spoil", [_garbage, _no_steering], ids=["garbage", "no-steering"])
def test_explain_on_forged_probes(copy_run, tmp_path, spoil):
    """A probes.h5 that is not what 'probe fit' writes, in a run whose manifest vouches for it."""
    run = copy_run()
    spoil(run / "probes.h5")
    reseal(run)
    with Unchanged(tmp_path):
        res = probe("explain", run, cwd=tmp_path)
    assert_refused(res, str(run / "probes.h5"), "probe fit")


def test_report_on_forged_probes(copy_run, tmp_path):
    run = copy_run()
    _garbage(run / "probes.h5")
    (run / "results.json").unlink()
    reseal(run)
    with Unchanged(tmp_path, run):
        res = probe("report", run, cwd=tmp_path)
    assert_refused(res, str(run / "probes.h5"))


BAD_CONFIG_JSON = [
    ("not-json", "{model: tiny", ["config.json", "not valid JSON"]),
    ("list", "[1, 2]", ["config.json", "JSON object"]),
    ("unknown-key", None, ["config.json", "bogus"]),
]


@pytest.mark.parametrize("command", ["explain", "fit"])
@pytest.mark.parametrize("label, text, needles", BAD_CONFIG_JSON, ids=[b[0] for b in BAD_CONFIG_JSON])
def test_bad_config_json_in_run_dir(copy_run, tmp_path, command, label, text, needles):
    run = copy_run()
    if label == "unknown-key":
        edit_config_json(run, lambda d: d["model"].__setitem__("bogus", 1))
    else:
        (run / "config.json").write_text(text)
    with Unchanged(tmp_path):
        res = probe(command, run, cwd=tmp_path)
    assert_refused(res, str(run / "config.json"), *needles)


@pytest.mark.parametrize("command, missing", [("fit", "cache.h5"), ("explain", "cache.h5"), ("explain", "probes.h5")])
def test_missing_artifact(copy_run, tmp_path, command, missing):
    run = copy_run()
    (run / missing).unlink()
    with Unchanged(tmp_path):
        res = probe(command, run, cwd=tmp_path)
    assert_refused(res, str(run / missing))


def test_report_on_an_empty_or_missing_folder(tmp_path):
    (tmp_path / "empty").mkdir()
    with Unchanged(tmp_path):
        assert_refused(probe("report", tmp_path / "empty", cwd=tmp_path), "empty", "results.json")
        assert_refused(probe("report", tmp_path / "nowhere", cwd=tmp_path), "nowhere")
    assert list((tmp_path / "empty").iterdir()) == []


def test_validate_a_folder_that_is_not_a_run(tmp_path):
    folder = tmp_path / "notarun"
    folder.mkdir()
    (folder / "notes.txt").write_text("hello")
    with Unchanged(tmp_path):
        assert_refused(probe("validate", folder, cwd=tmp_path), str(folder), "artifacts.json")
        assert_refused(probe("validate", tmp_path / "nowhere", cwd=tmp_path), "nowhere")


def test_validate_a_fresh_run_passes(copy_run, tmp_path):
    run = copy_run()
    with Unchanged(tmp_path):
        res = probe("validate", run, cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert f"{run}: valid" in res.stdout


def _edit_score(data):
    tier = next(iter(data["tiers"].values()))
    tier["mfarm"]["F_MD"] = 0.123


def _break_schema(data):
    next(iter(data["tiers"].values()))["n_cases"] = "three"


@pytest.mark.parametrize(
    "label, edit, resealed, needles",
    [
        ("number", _edit_score, False, ["results.json", "stale", "changed"]),
        ("garbage", None, False, ["results.json", "stale"]),
        ("schema", _break_schema, True, ["results.json", "n_cases"]),
    ],
)
def test_validate_hand_edited_results(copy_run, tmp_path, label, edit, resealed, needles):
    run = copy_run()
    path = run / "results.json"
    if edit is None:
        path.write_text("{ not json")
    else:
        data = json.loads(path.read_text())
        edit(data)
        path.write_text(json.dumps(data, indent=2))
    if resealed:
        reseal(run)
    with Unchanged(tmp_path):
        res = probe("validate", run, cwd=tmp_path)
    assert_refused(res, str(run), *needles)


# --------------------------------------------------------------------------- 4. caches


def _truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 3])


def _not_hdf5(path: Path) -> None:
    path.write_bytes(b"this is not an HDF5 file\n" * 100)


def _foreign(path: Path) -> None:
    path.unlink()
    with h5py.File(path, "w") as f:
        f.create_dataset("random", data=np.random.default_rng(0).normal(size=(10, 4)))


BAD_CACHES = {
    "truncated": (_truncate, ["damaged"]),
    "not-hdf5": (_not_hdf5, ["not an HDF5 file"]),
    "foreign-hdf5": (_foreign, ["missing root attribute 'format'"]),
}


@pytest.mark.parametrize("command", ["fit", "explain", "merge"])
@pytest.mark.parametrize("kind", list(BAD_CACHES))
def test_bad_cache(copy_run, fitted, tmp_path, command, kind):
    spoil, needles = BAD_CACHES[kind]
    run = copy_run("s1")
    if command == "merge":
        set_h5(run / "cache.h5", lambda f: f.attrs.__setitem__("shard", "1/2"))
        make_shard(fitted[1], tmp_path / "s2", "2/2")
    spoil(run / "cache.h5")
    out = tmp_path / "merged"
    args = ["merge", run, tmp_path / "s2", "--out", out] if command == "merge" else [command, run]
    with Unchanged(tmp_path):
        res = probe(*args, cwd=tmp_path)
    assert_refused(res, str(run / "cache.h5"), *needles)
    assert not out.exists()


@pytest.mark.parametrize("kind", ["foreign-hdf5"])
def test_bad_cache_alone_in_a_folder(copy_run, tmp_path, kind):
    """A cache.h5 received on its own (no manifest, no config.json): fit says what is wrong with it."""
    spoil, needles = BAD_CACHES[kind]
    folder = tmp_path / "received"
    folder.mkdir()
    shutil.copy(copy_run() / "cache.h5", folder / "cache.h5")
    spoil(folder / "cache.h5")
    with Unchanged(tmp_path):
        res = probe("fit", folder, cwd=tmp_path)
    assert_refused(res, str(folder / "cache.h5"), *needles)


def _unfinish(run: Path) -> None:
    """As a killed extract leaves it: some rows not done, cache.h5 not in the manifest."""
    set_h5(run / "cache.h5", lambda f: f["done"].__setitem__(slice(0, 4), False))
    manifest = json.loads((run / "artifacts.json").read_text())
    manifest["artifacts"].pop("cache.h5")
    (run / "artifacts.json").write_text(json.dumps(manifest))


def test_unfinished_cache_given_to_fit(copy_run, tmp_path):
    run = copy_run()
    _unfinish(run)
    with Unchanged(tmp_path, run / "artifacts.json"):
        res = probe("fit", run, cwd=tmp_path)
    assert_refused(res, str(run / "cache.h5"), "4 prompts unfinished")


def test_unfinished_shard_given_to_merge(copy_run, fitted, tmp_path):
    run = copy_run("s1")
    set_h5(run / "cache.h5", lambda f: f.attrs.__setitem__("shard", "1/2"))
    _unfinish(run)
    make_shard(fitted[1], tmp_path / "s2", "2/2")
    with Unchanged(tmp_path, tmp_path / "merged"):
        res = probe("merge", run, tmp_path / "s2", "--out", tmp_path / "merged", cwd=tmp_path)
    assert_refused(res, str(run / "cache.h5"), "unfinished")
    assert not (tmp_path / "merged").exists()


# --------------------------------------------------------------------------- 5. shards


@pytest.mark.parametrize(
    "shards, needles",
    [
        (["1/3", "3/3"], ["2/3 missing"]),
        (["1/3"], ["at least two"]),
        (["1/2", "1/2"], ["1/2 given twice"]),
        (["1/2", "2/3"], ["2/3", "2 shards"]),
        (["1/2", None], ["not a shard"]),
        (["2/2", "1/2", "same"], ["given twice"]),
    ],
)
def test_bad_shard_set(fitted, tmp_path, shards, needles):
    dirs = []
    for i, shard in enumerate(shards):
        dirs.append(dirs[0] if shard == "same" else make_shard(fitted[1], tmp_path / f"s{i}", shard))
    out = tmp_path / "merged"
    with Unchanged(tmp_path):
        res = probe("merge", *dirs, "--out", out, cwd=tmp_path)
    assert_refused(res, *needles)
    assert not out.exists()


def test_merge_into_one_of_its_inputs(fitted, tmp_path):
    a, b = make_shard(fitted[1], tmp_path / "a", "1/2"), make_shard(fitted[1], tmp_path / "b", "2/2")
    with Unchanged(tmp_path):
        res = probe("merge", a, b, "--out", a, cwd=tmp_path)
    assert_refused(res, str(a))


def test_merge_of_a_shard_being_written(fitted, tmp_path):
    """Another process has a shard's cache open for writing (HDF5 lock): exit 2, not an internal error."""
    a, b = make_shard(fitted[1], tmp_path / "a", "1/2"), make_shard(fitted[1], tmp_path / "b", "2/2")
    with h5py.File(a / "cache.h5", "r+"):
        with Unchanged(tmp_path):
            res = probe("merge", a, b, "--out", tmp_path / "merged", cwd=tmp_path)
    assert_refused(res, str(a / "cache.h5"), "another process")


# --------------------------------------------------------------------------- 6. paths


@pytest.mark.parametrize(
    "command, label, out, needles",
    [
        ("extract", "under-a-file", "{tmp}/afile/run", ["afile"]),
        ("run", "under-a-file", "{tmp}/afile/run", ["afile"]),
        ("extract", "proc", "/proc/lbp-no-such/run", ["/proc/lbp-no-such"]),
        ("extract", "name-too-long", "{tmp}/new/" + "x" * 300, ["xxxxx"]),
        ("extract", "onto-a-file", "{tmp}/afile", ["--out", "afile"]),
    ],
)
def test_impossible_out(fitted, tmp_path, command, label, out, needles):
    (tmp_path / "afile").write_text("precious")
    out = out.replace("{tmp}", str(tmp_path))
    with Unchanged(tmp_path):  # in particular: {tmp}/new is not left behind
        res = probe(command, fitted[0], "--out", out, "--no-progress", cwd=tmp_path)
    assert_refused(res, *needles)
    assert (tmp_path / "afile").read_text() == "precious"


def test_default_out_under_a_file(fitted, tmp_path):
    (tmp_path / "runs").write_text("not a folder")
    with Unchanged(tmp_path):
        res = probe("run", fitted[0], "--no-progress", cwd=tmp_path)
    assert_refused(res, "runs")


def test_merge_out_impossible(fitted, tmp_path):
    a, b = make_shard(fitted[1], tmp_path / "a", "1/2"), make_shard(fitted[1], tmp_path / "b", "2/2")
    (tmp_path / "afile").write_text("precious")
    with Unchanged(tmp_path):
        assert_refused(probe("merge", a, b, "--out", tmp_path / "afile", cwd=tmp_path), "afile")
        assert_refused(probe("merge", a, b, "--out", tmp_path / "afile" / "m", cwd=tmp_path), "afile")


# --------------------------------------------------------------------------- 7. concurrency


def _write_lock(run: Path, pid: int, host: str) -> None:
    (run / ".lock").write_text(json.dumps({"pid": pid, "host": host, "stage": "extract", "since": time.time()}))


@pytest.fixture
def live_pid():
    proc = subprocess.Popen(["sleep", "30"])
    yield proc.pid
    proc.kill()
    proc.wait()


@pytest.mark.parametrize("command", ["fit", "explain", "merge-out"])
def test_live_lock_is_refused(copy_run, fitted, tmp_path, live_pid, command):
    run = copy_run()
    _write_lock(run, live_pid, socket.gethostname())
    if command == "merge-out":
        a, b = make_shard(fitted[1], tmp_path / "a", "1/2"), make_shard(fitted[1], tmp_path / "b", "2/2")
        for name in list(os.listdir(run)):
            if name != ".lock":
                (run / name).unlink()
        args = ["merge", a, b, "--out", run]
    else:
        args = [command, run]
    with Unchanged(tmp_path):  # the run directory included: the holder owns it
        res = probe(*args, cwd=tmp_path)
    assert_refused(res, str(run), f"process {live_pid}", socket.gethostname())


def test_lock_of_another_host_is_refused(copy_run, tmp_path):
    run = copy_run()
    _write_lock(run, 4242, "some-other-node.example")
    with Unchanged(tmp_path):
        res = probe("fit", run, cwd=tmp_path)
    assert_refused(res, str(run), "some-other-node.example", ".lock")


def test_unreadable_lock_is_refused(copy_run, tmp_path):
    run = copy_run()
    (run / ".lock").write_bytes(b"\x00garbage")
    with Unchanged(tmp_path):
        res = probe("fit", run, cwd=tmp_path)
    assert_refused(res, str(run / ".lock"))


def test_stale_lock_is_taken_over(copy_run, tmp_path):
    run = copy_run()
    dead = subprocess.Popen(["true"])
    dead.wait()
    _write_lock(run, dead.pid, socket.gethostname())
    with Unchanged(tmp_path, run):
        res = probe("report", run, cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert f"taking over the lock of process {dead.pid}" in res.stderr
    assert "Traceback" not in res.stderr
    assert (run / "report.html").is_file() and not (run / ".lock").exists()


def test_two_extracts_on_one_out(fitted, tmp_path):
    cfg, reference = fitted
    out = tmp_path / "out"
    cmd = [sys.executable, "-c", "from latent_bias_probe.cli import main; main()", "extract", str(cfg), "--out", str(out), "--no-progress"]
    with Unchanged(tmp_path, out):
        procs = [subprocess.Popen(cmd, cwd=tmp_path, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
        streams = [p.communicate(timeout=300) for p in procs]
    results = [(p.returncode, stdout, stderr) for p, (stdout, stderr) in zip(procs, streams)]
    codes = sorted(r[0] for r in results)
    for rc, _, err in results:
        assert "Traceback" not in err and "internal error" not in err, err
        if rc == 2:
            assert_refused(subprocess.CompletedProcess([], rc, "", err), str(out), "in use by process")
    assert codes == [0, 2], results  # the run directory is locked before the model loads: the second is refused
    assert (out / "predictions.csv").read_bytes() == (reference / "predictions.csv").read_bytes()
    assert not (out / ".lock").exists()


# --------------------------------------------------------------------------- 8. interruption

HOOK = '''
import os, sys, time
from latent_bias_probe.extract import cache as cache

_write = cache.CacheWriter.write_batch


def write_batch(self, *args, **kwargs):
    result = _write(self, *args, **kwargs)
    print("HOOK: batch written", file=sys.stderr, flush=True)
    time.sleep(60)  # the test signals the process here, between two batches
    return result


cache.CacheWriter.write_batch = write_batch
'''


def _done(path: Path) -> int:
    with h5py.File(path, "r", locking=False) as f:
        return int(f["done"][()].sum())


def _default_sigint() -> None:
    """In the child: SIGINT back to its default, so Python turns it into KeyboardInterrupt.

    A suite started in the background of a non-interactive shell (``nohup make test &``)
    inherits SIGINT ignored, and Python keeps an ignored SIGINT ignored.
    """
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _signal_after_first_batch(proc: subprocess.Popen, sig: int, result: dict) -> None:
    seen = []
    try:
        for line in proc.stderr:
            seen.append(line)
            if line.startswith("HOOK: batch written"):
                proc.send_signal(sig)
                break
        stdout, rest = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    result["interrupted"] = subprocess.CompletedProcess(proc.args, proc.returncode, stdout, "".join(seen) + rest)
    result["hooked"] = any(line.startswith("HOOK") for line in seen)


@pytest.fixture(scope="module")
def interrupted(fitted, tmp_path_factory) -> dict[str, dict]:
    """Two extracts of the fitted config into two folders, started at once; each is sent its
    signal (SIGINT, SIGKILL) right after its first batch is on disk, its folder's state is
    recorded, then the same command is run again in both folders at once.

    ``{signal name: {"interrupted", "done", "lock", "predictions", "rerun", "unchanged"}}``.
    """
    import threading

    cfg = fitted[0]
    base = tmp_path_factory.mktemp("interrupted")
    hook_dir = base / "hook"
    hook_dir.mkdir()
    (hook_dir / "slow_batches.py").write_text(HOOK)
    env = _env(PYTHONPATH=f"{hook_dir}{os.pathsep}{ROOT}")
    outs = {name: base / name.lower() for name in ("SIGINT", "SIGKILL")}
    before = tree(base, (hook_dir, *outs.values()))
    results: dict[str, dict] = {name: {} for name in outs}

    def in_parallel(target, *args) -> None:
        threads = [threading.Thread(target=target, args=(name, *args)) for name in outs]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=900)  # generous: under a loaded parallel suite the first batch can take minutes

    def interrupt(name: str) -> None:
        cmd = [sys.executable, "-c", "import slow_batches, cli; cli.main()", "extract", str(cfg), "--out", str(outs[name]), "--no-progress"]
        proc = subprocess.Popen(cmd, cwd=base, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                preexec_fn=_default_sigint)
        _signal_after_first_batch(proc, getattr(signal, name), results[name])
        out = outs[name]
        results[name].update(
            done=_done(out / "cache.h5") if (out / "cache.h5").is_file() else -1,
            lock=(out / ".lock").exists(), predictions=(out / "predictions.csv").exists(),
        )

    def rerun(name: str) -> None:
        results[name]["rerun"] = probe("extract", cfg, "--out", outs[name], "--no-progress", cwd=base)

    in_parallel(interrupt)
    in_parallel(rerun)
    for name, result in results.items():
        assert result.get("hooked"), (name, result.get("interrupted"))
        result["out"] = outs[name]
        result["unchanged"] = tree(base, (hook_dir, *outs.values())) == before  # nothing beside the outputs
    return results


def test_sigint_during_extract_then_resume(fitted, interrupted):
    state = interrupted["SIGINT"]
    res = state["interrupted"]
    assert res.returncode == 130, res.stderr
    assert "Traceback" not in res.stderr
    assert "resume" in res.stderr.splitlines()[-1]
    assert 0 < state["done"] < N_PROMPTS  # some work kept
    assert not state["lock"] and not state["predictions"]  # the lock released, no partial predictions
    rerun = state["rerun"]
    assert rerun.returncode == 0, rerun.stderr
    assert "resuming" in rerun.stderr
    assert (state["out"] / "predictions.csv").read_bytes() == (fitted[1] / "predictions.csv").read_bytes()
    assert state["unchanged"]


def test_sigkill_during_extract_then_rerun(fitted, interrupted):
    state = interrupted["SIGKILL"]
    assert state["interrupted"].returncode == -signal.SIGKILL
    assert 0 < state["done"] < N_PROMPTS
    assert state["lock"]  # left by the killed process: the re-run takes it over
    rerun = state["rerun"]
    assert rerun.returncode == 0, rerun.stderr
    assert "taking over the lock" in rerun.stderr and "Traceback" not in rerun.stderr
    assert (state["out"] / "predictions.csv").read_bytes() == (fitted[1] / "predictions.csv").read_bytes()
    assert state["unchanged"]


# --------------------------------------------------------------------------- 9. options


@pytest.mark.parametrize(
    "args, needles",
    [
        (["--alphas", "nan"], ["--alphas", "'nan'"]),
        (["--alphas", ""], ["--alphas", "at least one"]),
        (["--alphas", "1,,x"], ["--alphas", "'1,,x'"]),
        (["--layers", "-1"], ["--layers", "'-1'"]),
        (["--layers", "1,x"], ["--layers", "'1,x'"]),
    ],
)
def test_bad_explain_options(copy_run, tmp_path, args, needles):
    run = copy_run()
    with Unchanged(tmp_path):  # the run directory included: nothing is done
        res = probe("explain", run, *args, cwd=tmp_path)
    assert_refused(res, *needles)


@pytest.mark.parametrize(
    "command, args, needles",
    [
        ("run", ["--limit-cases", "0"], ["--limit-cases"]),
        ("run", ["--limit-cases", "1"], ["--limit-cases 1", "--no-fit"]),
        ("run", ["--limit-cases", "x"], ["--limit-cases", "'x'"]),
        ("extract", ["--shard", "3/2"], ["--shard", "'3/2'"]),
        ("extract", ["--shard", "x"], ["--shard", "'x'"]),
        ("run", ["--shard", "1/0"], ["--shard", "'1/0'"]),
        ("extract", ["--bogus-option"], ["--bogus-option"]),
    ],
)
def test_bad_run_options(fitted, tmp_path, command, args, needles):
    out = tmp_path / "out"
    with Unchanged(tmp_path):
        res = probe(command, fitted[0], "--out", out, "--no-progress", *args, cwd=tmp_path)
    assert_refused(res, *needles)
    assert not out.exists()


def test_limit_cases_1_without_fit_runs(fitted, tmp_path):
    out = tmp_path / "out"
    with Unchanged(tmp_path, out):
        res = probe("run", fitted[0], "--out", out, "--limit-cases", "1", "--no-fit", "--no-report", "--no-progress", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    results = json.loads((out / "results.json").read_text())
    assert results["tiers"]["high"]["n_cases"] == 1
    assert not (out / "probes.h5").exists()
