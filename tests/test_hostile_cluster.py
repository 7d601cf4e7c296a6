"""Hostile but realistic use of locks, sharded runs, sweeps, corpora, compare and plan.

Each case failed before its fix (issue 25): a lock held by a zombie or holding any
shape of JSON, a one-shard cluster run, a refused Slurm submission, ``probe status``
on moved, missing, corrupt shards or a malformed ``status.json``, shards with
different settings, one model folder spelled several ways, a corpus read whole,
``probe compare`` dropping tiers silently, a ``masked:`` section ignored silently, and
``probe plan`` or a run on a masked or headless BERT. Refusals exit 2 with one
``error:`` line naming the file or key; nothing prints a traceback.

One sharded run (``--executor local``, one shard) and one plain extraction are built
per module; the other cases use the functions in-process where the CLI adds nothing.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import socket
import stat
import subprocess
import time
import tracemalloc
from pathlib import Path

import pytest
import yaml

from conftest import run_probe, write_config

SECTIONS = dict(benchmark={"n_cases": 4, "seed": 7, "tiers": ["high", "low"]}, extract={"batch_size": 4, "batch_check": 0, "threads": 1})
RACES, GENDERS = ["White", "Black"], ["Female", "Male"]


def one_error_line(res: subprocess.CompletedProcess, *needles: str) -> str:
    """The single ``error:`` line of a refusal (exit 2, no traceback), holding every needle."""
    assert res.returncode == 2, (res.returncode, res.stderr[-2000:])
    assert "Traceback" not in res.stderr and "internal error" not in res.stderr, res.stderr[-2000:]
    errors = [line for line in res.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, res.stderr[-2000:]
    for needle in needles:
        assert needle in errors[0], (needle, errors[0])
    return errors[0]


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def runs(tmp_path_factory, tiny_model_dir):
    """``root/local1``: ``probe run --executor local`` with the default one shard (made from ``root``
    with a relative --out); ``root/plain``: ``probe extract`` of the same job whose config also has
    a ``masked:`` section (ignored for a causal model)."""
    root = tmp_path_factory.mktemp("hostile_cluster")
    cfg = write_config(root / "c.yaml", tiny_model_dir, **SECTIONS)
    masked_cfg = write_config(root / "cm.yaml", tiny_model_dir, masked={"n_templates": 2}, **SECTIONS)
    local = run_probe("run", str(cfg), "--out", "local1", "--executor", "local", "--no-fit", "--no-report", "--no-progress", cwd=root)
    plain = run_probe("extract", str(masked_cfg), "--out", "plain", "--no-progress", cwd=root)
    return root, cfg, local, plain


@pytest.fixture(scope="module")
def bert_dirs(tmp_path_factory):
    """A tiny random BERT with its masked-LM head, and the same encoder saved without one (BertModel)."""
    from transformers import BertModel

    from latent_bias_probe.extract.tiny_masked import save, tiny_bert

    root = tmp_path_factory.mktemp("bert")
    loaded = tiny_bert(0)
    with_head = save(loaded, root / "bert_mlm")
    headless = root / "bert_base"
    BertModel(loaded.model.config).save_pretrained(headless, safe_serialization=True)
    loaded.tokenizer.save_pretrained(headless)
    return with_head, headless


def _masked_config(path: Path, model_dir: Path, **masked) -> Path:
    data = {
        "name": "masked_tiny", "seed": 0, "model": {"name": str(model_dir)},
        "benchmark": {"races": RACES, "genders": GENDERS},
        "masked": {"categories": ["behaviour", "agency"], "n_templates": 2, **masked},
        "extract": {"batch_size": 16}, "scoring": {"bootstrap": 20, "permutations": 0},
    }
    path.write_text(yaml.safe_dump(data))
    return path


# --------------------------------------------------------------------------- locks


def _zombie() -> subprocess.Popen:
    """A child that has exited and is not reaped (its pid answers os.kill(pid, 0))."""
    if not Path("/proc/self/stat").exists():
        pytest.skip("zombie detection reads /proc (Linux)")
    proc = subprocess.Popen(["true"])
    for _ in range(200):
        state = Path(f"/proc/{proc.pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        if state == "Z":
            os.kill(proc.pid, 0)  # the case at hand: a zombie still looks alive to kill(0)
            return proc
        time.sleep(0.02)
    proc.wait()
    pytest.skip("the child did not become a zombie")


def _write_lock(folder: Path, body) -> Path:
    path = folder / ".lock"
    path.write_text(body if isinstance(body, str) else json.dumps(body))
    return path


def test_a_lock_held_by_a_zombie_is_taken_over(tmp_path, caplog):
    from latent_bias_probe.pipeline.lock import run_lock

    proc = _zombie()
    try:
        _write_lock(tmp_path, {"pid": proc.pid, "host": socket.gethostname(), "stage": "extract", "since": 0})
        with caplog.at_level(logging.WARNING, logger="pipeline.lock"):
            with run_lock(tmp_path, "fit"):
                assert json.loads((tmp_path / ".lock").read_text())["pid"] == os.getpid()
        assert f"taking over the lock of process {proc.pid}" in caplog.text
        assert not (tmp_path / ".lock").exists()
    finally:
        proc.wait()


def test_a_killed_run_restarted_at_once_takes_over_its_zombie_lock(tmp_path):
    proc = _zombie()
    try:
        run = tmp_path / "run"
        run.mkdir()
        _write_lock(run, {"pid": proc.pid, "host": socket.gethostname(), "stage": "extract", "since": 0})
        res = run_probe("fit", str(run), cwd=tmp_path)
    finally:
        proc.wait()
    assert f"taking over the lock of process {proc.pid}" in res.stderr
    one_error_line(res, "cache.h5")  # past the lock: the empty folder has no cache to fit
    assert "in use by" not in res.stderr


@pytest.mark.parametrize(
    "holder, why",
    [
        ({"pid": 10**30}, "not a process id"),  # OverflowError in os.kill before
        ({"pid": 2**63}, "not a process id"),
        ({"pid": -1}, "not a process id"),  # kill(-1, 0) signals every process we may: "alive"
        ({"pid": 0}, "not a process id"),  # our own process group: "alive"
        ({"pid": "123"}, "not a process id"),
        ({"pid": True}, "not a process id"),
        ({"pid": 1.5}, "not a process id"),
        ({"pid": None}, "not a process id"),
        ({"pid": [1]}, "not a process id"),
        ({"pid": {"x": 1}}, "not a process id"),
        ({"pid": "OWN"}, "this process"),
        ({"pid": 4242, "host": None}, "not a host name"),
        ({"pid": 4242, "host": 7}, "not a host name"),
        ({"pid": 4242, "host": "node\nerror: forged"}, "not a host name"),
    ],
)
def test_a_lock_that_names_no_process_is_taken_over_with_a_warning(tmp_path, caplog, holder, why):
    from latent_bias_probe.pipeline.lock import run_lock

    body = {"host": socket.gethostname(), "stage": "extract", "since": 0, **holder}
    if body["pid"] == "OWN":
        body["pid"] = os.getpid()
    _write_lock(tmp_path, body)
    with caplog.at_level(logging.WARNING, logger="pipeline.lock"):
        with run_lock(tmp_path, "fit"):
            pass
    assert "taking over an invalid lock" in caplog.text and why in caplog.text
    assert not (tmp_path / ".lock").exists()


@pytest.mark.parametrize("content", ["[]", "null", "42", '"text"', "[" * 100_000 + "]" * 100_000, "{" * 50_000, "\x00\xff"])
def test_a_lock_file_that_is_no_json_object_is_refused_in_one_line(tmp_path, content):
    from latent_bias_probe.pipeline.lock import RunLocked, run_lock

    path = tmp_path / ".lock"
    path.write_bytes(content.encode("utf-8", "surrogateescape") if content != "\x00\xff" else b"\x00\xff")
    with pytest.raises(RunLocked) as err:
        with run_lock(tmp_path, "fit"):
            pass
    message = str(err.value)
    assert str(path) in message and "\n" not in message
    assert path.exists()  # never deleted: it might be another tool's


def test_a_lock_that_is_a_folder_or_a_fifo_is_refused_without_hanging(tmp_path):
    from latent_bias_probe.pipeline.lock import RunLocked, run_lock

    folder = tmp_path / "a"
    (folder / ".lock").mkdir(parents=True)
    with pytest.raises(RunLocked, match="unreadable"):
        with run_lock(folder, "fit"):
            pass
    fifo = tmp_path / "b"
    fifo.mkdir()
    os.mkfifo(fifo / ".lock")
    res = run_probe("fit", str(fifo), cwd=tmp_path, timeout=60)  # reading a FIFO blocked forever before
    one_error_line(res, str(fifo / ".lock"), "unreadable")


def test_a_lock_that_is_a_dangling_symlink_creates_nothing_where_it_points(tmp_path):
    from latent_bias_probe.pipeline.lock import RunLocked, run_lock

    run, elsewhere = tmp_path / "run", tmp_path / "elsewhere.json"
    run.mkdir()
    (run / ".lock").symlink_to(elsewhere)
    with pytest.raises(RunLocked, match="unreadable"):
        with run_lock(run, "fit"):
            pass
    assert not elsewhere.exists() and (run / ".lock").is_symlink()


# --------------------------------------------------------------------------- cluster runs


def test_local_executor_with_one_shard_completes_and_equals_the_plain_run(runs):
    root, _, local, plain = runs
    assert local.returncode == 0, local.stderr[-3000:]  # was: exit 2 "merge: give at least two shard run directories"
    assert plain.returncode == 0, plain.stderr[-3000:]
    assert (root / "local1" / "predictions.csv").read_bytes() == (root / "plain" / "predictions.csv").read_bytes()
    assert (root / "local1" / "results.json").is_file()
    assert sorted(p.name for p in (root / "local1" / "shards").iterdir()) == ["1-of-1", "logs", "status.json"]


def test_merge_takes_the_one_shard_of_a_one_shard_job(runs, tmp_path):
    root = runs[0]
    res = run_probe("merge", str(root / "local1" / "shards" / "1-of-1"), "--out", str(tmp_path / "m"), cwd=tmp_path)
    assert res.returncode == 0, res.stderr[-2000:]
    assert (tmp_path / "m" / "predictions.csv").read_bytes() == (root / "plain" / "predictions.csv").read_bytes()


def _fake_slurm(folder: Path, sbatch_exit: int) -> dict[str, str]:
    folder.mkdir()
    (folder / "sbatch").write_text(f'#!/bin/sh\necho "sbatch: error: Invalid account or account/partition combination" >&2\nexit {sbatch_exit}\n')
    (folder / "srun").write_text("#!/bin/sh\nexit 0\n")
    for name in ("sbatch", "srun"):
        (folder / name).chmod((folder / name).stat().st_mode | stat.S_IEXEC)
    return {"PATH": f"{folder}{os.pathsep}{os.environ['PATH']}"}


@pytest.mark.parametrize("existing", [False, True])
def test_a_refused_slurm_submission_leaves_no_shards_folder(runs, tmp_path, existing):
    cfg = runs[1]
    env = _fake_slurm(tmp_path / "bin", 1)
    out = tmp_path / "run"
    if existing:
        out.mkdir()
    res = run_probe("run", str(cfg), "--out", str(out), "--executor", "slurm", "--no-progress", cwd=tmp_path, env=env)
    one_error_line(res, "slurm", "Invalid account")
    assert out.exists() == existing and not (out / "shards").exists()


def test_slurm_without_slurm_leaves_no_folder(runs, tmp_path):
    cfg = runs[1]
    env = {"PATH": os.path.dirname(os.__file__)}  # no sbatch or srun on it
    res = run_probe("run", str(cfg), "--out", str(tmp_path / "run"), "--executor", "slurm", "--shards", "2", "--no-progress",
                    cwd=tmp_path, env=env)
    one_error_line(res, "no Slurm")
    assert not (tmp_path / "run").exists()


def test_status_finds_the_shards_from_any_folder(runs, tmp_path):
    root = runs[0]
    res = run_probe("status", str(root / "local1"), cwd=tmp_path)  # the run was made from root with --out local1
    assert res.returncode == 0, res.stderr
    line = next(x for x in res.stdout.splitlines() if "shard 1/1" in x)
    assert ": done" in line and line.endswith(str(root / "local1" / "shards" / "1-of-1"))
    assert "merged: yes" in res.stdout


def _copy_run(runs, dest: Path) -> Path:
    shutil.copytree(runs[0] / "local1", dest)
    return dest


def test_status_reports_a_missing_shard(runs, tmp_path):
    from latent_bias_probe.pipeline.cluster import shard_status

    run = _copy_run(runs, tmp_path / "r")
    shutil.rmtree(run / "shards" / "1-of-1")
    lines = shard_status(run)
    assert "shard 1/1: missing" in lines[1]  # was "done", from the recorded state


@pytest.mark.parametrize("damage", ["predictions", "cache", "manifest"])
def test_status_reports_a_corrupt_shard(runs, tmp_path, damage):
    from latent_bias_probe.pipeline.cluster import shard_status

    run = _copy_run(runs, tmp_path / "r")
    shard = run / "shards" / "1-of-1"
    if damage == "predictions":
        with open(shard / "predictions.csv", "a") as f:
            f.write("x\n")
    elif damage == "cache":
        with open(shard / "cache.h5", "r+b") as f:
            f.truncate(1000)
    else:
        (shard / "artifacts.json").write_text("[1, 2")
    lines = shard_status(run)
    assert "shard 1/1: corrupt (predictions.csv:" in lines[1], lines
    assert lines[-1] == "  merged: yes"


@pytest.mark.parametrize(
    "content, code",
    [
        ("[]", 2), ("null", 2), ("42", 2), ('"x"', 2), ("{", 2), ("[" * 100_000, 2), ("\x00\xff", 2),
        ('{"shards": "3"}', 2), ('{"shards": 0}', 2), ('{"shards": 1e9}', 2), ('{"shards": true}', 2),
        ('{"shards": 1, "jobs": []}', 0), ('{"shards": 1, "jobs": {"a": 1, "1": 5}}', 0),
        ('{"shards": 1, "jobs": {"1": {"state": [1], "job_id": {"x": 1}, "folder": 3}}}', 0),
        ('{"shards": 2, "executor": ["x"], "jobs": {"1": {"state": "done"}, "2": {"state": "done"}}}', 0),
        ("DIR", 2),
    ],
)
def test_a_malformed_status_file_gives_no_traceback(runs, tmp_path, content, code):
    from latent_bias_probe.configs.errors import InputError
    from latent_bias_probe.pipeline.cluster import shard_status

    run = _copy_run(runs, tmp_path / "r")
    path = run / "shards" / "status.json"
    path.unlink()
    if content == "DIR":
        path.mkdir()
    else:
        path.write_bytes(content.encode() if content != "\x00\xff" else b"\x00\xff")
    if code == 2:
        with pytest.raises(InputError) as err:
            shard_status(run)
        assert str(path) in str(err.value) and "\n" not in str(err.value)
        return
    lines = shard_status(run)
    assert "shard 1/" in lines[1] and lines[-1] == "  merged: yes"
    if '"2": {"state": "done"}' in content:
        assert "shard 2/2: missing" in lines[2]  # recorded done, but no folder


def test_merge_refuses_shards_with_different_settings(tmp_path, tiny_model_dir):
    from latent_bias_probe import pipeline

    base = write_config(tmp_path / "a.yaml", tiny_model_dir, **SECTIONS)
    other = write_config(tmp_path / "b.yaml", tiny_model_dir, scoring={"bootstrap": 50, "permutations": 0, "alpha": 0.1}, **SECTIONS)
    pipeline.run(str(base), tmp_path / "s1", ("extract",), shard="1/2", progress=False)
    pipeline.run(str(other), tmp_path / "s2", ("extract",), shard="2/2", progress=False)
    res = run_probe("merge", str(tmp_path / "s1"), str(tmp_path / "s2"), "--out", str(tmp_path / "m"), cwd=tmp_path)
    one_error_line(res, "scoring.alpha", "0.1", "0.05", str(tmp_path / "s2" / "config.json"))
    assert not (tmp_path / "m").exists()


@pytest.mark.parametrize(
    "changes, refused",
    [
        ({"probes": {"n_folds": 3}}, "probes.n_folds"),
        ({"benchmark": {"races": ["White", "Black"]}}, "benchmark.races"),
        ({"explain": {"alphas": [-1.0, 0.0, 1.0]}}, "explain.alphas"),
        ({"extract": {"threads": 2}, "cluster": {"partition": "gpu"}, "model": {"device": "cpu"}}, None),  # where it ran
    ],
)
def test_shard_settings_must_agree_except_where_they_ran(tmp_path, tiny_model_dir, changes, refused):
    from latent_bias_probe.configs.errors import InputError
    from latent_bias_probe.configs.schema import config_from_dict
    from latent_bias_probe.pipeline.merge import same_settings
    from latent_bias_probe.pipeline.results import save_run_config

    base = {"model": {"name": str(tiny_model_dir)}, "benchmark": {"n_cases": 4}}
    other = json.loads(json.dumps(base))
    for section, values in changes.items():
        other.setdefault(section, {}).update(values)
    dirs = [tmp_path / "s1", tmp_path / "s2"]
    for d, data in zip(dirs, (base, other)):
        d.mkdir()
        save_run_config(d, config_from_dict(data, tmp_path))
    if refused is None:
        assert same_settings(dirs).model.device == "auto"  # the first shard's
        return
    with pytest.raises(InputError, match=refused.replace(".", r"\.")):
        same_settings(dirs)


# --------------------------------------------------------------------------- sweeps, corpora, compare


def test_one_model_folder_spelled_four_ways_is_one_sweep_model(tmp_path, tiny_model_dir, monkeypatch, caplog):
    from latent_bias_probe.configs.schema import config_from_dict
    from latent_bias_probe.pipeline.sweep import sweep_combinations

    link = tmp_path / "link"
    link.symlink_to(tiny_model_dir, target_is_directory=True)
    monkeypatch.chdir(tiny_model_dir.parent)
    spellings = [f"./{tiny_model_dir.name}", str(tiny_model_dir), str(tiny_model_dir) + "/", str(link)]
    cfg = config_from_dict({"model": {"name": spellings[0]}, "sweep": {"models": spellings, "precisions": ["float32"]}}, tmp_path)
    with caplog.at_level(logging.WARNING, logger="pipeline.sweep"):
        items = sweep_combinations(cfg)
    assert [i.model for i in items] == [spellings[0]]
    assert all(s in caplog.text for s in spellings[1:]) and "same folder" in caplog.text


def test_other_models_stay_apart(tmp_path, tiny_model_dir, monkeypatch):
    from latent_bias_probe.configs.schema import config_from_dict
    from latent_bias_probe.pipeline.sweep import sweep_combinations

    twin = tmp_path / "twin"
    shutil.copytree(tiny_model_dir, twin)  # equal files, another folder: the user's call
    cfg = config_from_dict({"sweep": {"models": [str(tiny_model_dir), str(twin), "HuggingFaceTB/SmolLM2-135M-Instruct"]}}, tmp_path)
    assert len(sweep_combinations(cfg)) == 3


CORPUS_TEXT = (
    "The black female patient was combative overnight.  A black male patient was agitated!\n\n"
    "The white woman was calm?   The white male patient was independent\nand engaged. The Black man reports pain.\n"
    "\n   \n\nA latina lady was hostile. Plain sentence without a group\n" * 3
)


@pytest.mark.parametrize("chunk", [1, 2, 3, 7, 17, 64, 10_000])
def test_a_streamed_corpus_counts_what_the_whole_text_counts(tmp_path, monkeypatch, chunk):
    from latent_bias_probe import benchmarks
    import latent_bias_probe.benchmarks.corpus
    from latent_bias_probe.benchmarks.corpus import count_cooccurrence, count_corpus

    monkeypatch.setattr(benchmarks.corpus, "CHUNK_CHARS", chunk, raising=False)

    words = {"behaviour": ["combative", "agitated", "hostile"], "agency": ["independent", "engaged"], "pain": ["pain"]}
    folder = tmp_path / "corpus"
    folder.mkdir()
    (folder / "a.txt").write_text(CORPUS_TEXT, encoding="utf-8")
    (folder / "b.txt").write_text(CORPUS_TEXT[::-1][:200] + CORPUS_TEXT, encoding="utf-8")
    whole = count_cooccurrence([CORPUS_TEXT, CORPUS_TEXT[::-1][:200] + CORPUS_TEXT], ["White", "Black", "Hispanic"], ["Female", "Male"], words)
    streamed = count_corpus(folder, None, ["White", "Black", "Hispanic"], ["Female", "Male"], words)
    assert streamed.n.tolist() == whole.n.tolist() and streamed.n_group.tolist() == whole.n_group.tolist()
    assert (streamed.n_sentences, streamed.n_documents) == (whole.n_sentences, whole.n_documents) == (whole.n_sentences, 2)
    assert whole.n.sum() > 0
    csv_path = tmp_path / "notes.csv"
    import csv as csv_module

    with open(csv_path, "w", newline="", encoding="utf-8") as f:
        csv_module.writer(f).writerows([["text"], [CORPUS_TEXT], [CORPUS_TEXT[::-1][:200] + CORPUS_TEXT]])
    from_csv = count_corpus(csv_path, None, ["White", "Black", "Hispanic"], ["Female", "Male"], words)
    assert from_csv.n.tolist() == whole.n.tolist() and from_csv.n_sentences == whole.n_sentences


def test_a_large_corpus_file_is_never_read_whole(tmp_path, monkeypatch):
    from latent_bias_probe import benchmarks
    import latent_bias_probe.benchmarks.corpus
    from latent_bias_probe.benchmarks.corpus import count_corpus

    monkeypatch.setattr(benchmarks.corpus, "CHUNK_CHARS", 1 << 16, raising=False)  # pieces of 64 Ki characters

    folder = tmp_path / "corpus"
    folder.mkdir()
    line = "The black female patient was combative overnight. The white man was calm and independent. " * 50 + "\n"
    with open(folder / "big.txt", "w", encoding="utf-8") as f:
        for _ in range(400):
            f.write(line)
    size = (folder / "big.txt").stat().st_size
    assert size > 1_800_000
    tracemalloc.start()
    try:
        counts = count_corpus(folder, None, ["White", "Black"], ["Female", "Male"], {"behaviour": ["combative"], "agency": ["independent"]})
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert counts.n_sentences == 400 * 100 and counts.n_documents == 1
    assert counts.n[2].tolist() == [400 * 50, 0] and counts.n[1].tolist() == [0, 400 * 50]  # Black-Female, White-Male
    assert peak < size / 3, f"peak {peak / 1e6:.2f} MB for a {size / 1e6:.1f} MB file"  # read whole: several times the file


def test_compare_says_which_tiers_it_dropped(runs, tmp_path):
    import pandas as pd

    root = runs[0]
    both = root / "plain" / "predictions.csv"
    df = pd.read_csv(both)
    high = tmp_path / "high.csv"
    df[df["tier"] == "high"].to_csv(high, index=False)
    res = run_probe("compare", str(both), str(high), "--bootstrap", "20", cwd=tmp_path)
    assert res.returncode == 0, res.stderr[-2000:]
    out = json.loads(res.stdout)
    assert list(out["tiers"]) == ["high"] and out["dropped_tiers"] == {"a": ["low"], "b": []}
    warning = [x for x in res.stderr.splitlines() if x.startswith("WARNING")]
    assert len(warning) == 1 and "low" in warning[0] and str(both) in warning[0]
    low = tmp_path / "low.csv"
    df[df["tier"] == "low"].to_csv(low, index=False)
    one_error_line(run_probe("compare", str(high), str(low), "--bootstrap", "20", cwd=tmp_path), "share no tier")


# --------------------------------------------------------------------------- masked sections, plan, headless BERT


def test_a_masked_section_on_a_causal_model_warns(runs):
    plain = runs[3]
    assert plain.returncode == 0, plain.stderr[-2000:]
    warnings = [x for x in plain.stderr.splitlines() if "masked: section ignored" in x]
    assert len(warnings) == 1 and "causal model" in warnings[0]


def test_plan_sizes_a_masked_audit_and_counts_its_forward_passes(tmp_path, bert_dirs):
    from latent_bias_probe import pipeline
    from latent_bias_probe.configs.schema import load_config
    from latent_bias_probe.extract.masked import MaskedScorer
    from latent_bias_probe.pipeline.plan import format_plan, make_plan

    cfg_path = _masked_config(tmp_path / "m.yaml", bert_dirs[0])
    cfg = load_config(cfg_path)
    plan = make_plan(cfg, shards=2, warmup=3)
    lines = format_plan(plan)
    assert lines[0].startswith("masked-LM audit: templates 4 (behaviour 2, agency 2) x 4 groups + BASE = 20 sentences")
    assert "forward passes/s" in "\n".join(lines) and "estimated extraction" in "\n".join(lines)
    assert any("runs unsharded" in x for x in lines)
    rows = []
    forward = MaskedScorer._forward

    def counting(self, batch, hidden=False):
        rows.append(len(batch))
        return forward(self, batch, hidden)

    MaskedScorer._forward = counting
    try:
        pipeline.run(cfg, tmp_path / "run", ("extract",), progress=False)
    finally:
        MaskedScorer._forward = forward
    assert plan.n_passes == sum(rows) > 0  # the plan counts exactly the rows the audit runs
    res = run_probe("plan", str(cfg_path), "--warmup", "0", cwd=tmp_path)
    assert res.returncode == 0, res.stderr[-2000:]  # was: "cannot find the decoder layers of BertLMHeadModel"
    assert "20 sentences" in res.stdout and f"forward passes: {plan.n_passes:,}" in res.stdout


def test_a_bert_without_a_masked_lm_head_is_named_in_one_line(tmp_path, bert_dirs):
    headless = bert_dirs[1]
    cfg = _masked_config(tmp_path / "m.yaml", headless)
    for command in (["plan", str(cfg), "--warmup", "0"], ["extract", str(cfg), "--out", str(tmp_path / "r"), "--no-progress"]):
        res = run_probe(*command, cwd=tmp_path)
        one_error_line(res, str(headless), "masked-LM head", "ForMaskedLM")
    assert not (tmp_path / "r").exists()


def test_an_encoder_forced_causal_is_refused(bert_dirs):
    from latent_bias_probe.configs.schema import ModelConfig
    from latent_bias_probe.extract.masked import model_kind
    from latent_bias_probe.extract.model import ModelError

    for folder in bert_dirs:
        with pytest.raises(ModelError, match=r"model\.kind: 'causal', but .* holds an encoder \(bert"):
            model_kind(ModelConfig(name=str(folder), kind="causal"))
    assert model_kind(ModelConfig(name=str(bert_dirs[0]))) == "masked"


def test_a_masked_audit_is_not_submitted_as_shards(tmp_path, bert_dirs):
    cfg = _masked_config(tmp_path / "m.yaml", bert_dirs[0])
    res = run_probe("run", str(cfg), "--out", str(tmp_path / "r"), "--executor", "local", "--no-progress", cwd=tmp_path)
    one_error_line(res, "masked LM", "without --executor")  # was: every shard job failed after submission (exit 1)
    assert not (tmp_path / "r").exists()
