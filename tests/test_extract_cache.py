"""extract.cache: the cache.h5 layout (design.md → Contracts → cache.h5), resume,
crash safety under SIGKILL, the reader on foreign files, and shard merging."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import pytest

from latent_bias_probe.extract.cache import (
    FORMAT,
    FORMAT_V1,
    Cache,
    CacheFormatError,
    CacheMergeError,
    CacheMismatch,
    CacheSpec,
    CacheWriter,
    merge_caches,
)

CACHE_PY = Path(__file__).resolve().parents[1] / "extract" / "cache.py"
DOC_ATTRS = {"format", "model", "model_sha256", "dtype", "backend", "config_sha256", "toolkit_version", "n_layers", "d_model"}
PROMPT_DATASETS = {"case_id", "tier", "variant", "race", "gender", "label", "text", "n_tokens"}


# --------------------------------------------------------------------- helpers


def make_spec(**kw) -> CacheSpec:
    base = dict(
        model="tiny-model",
        model_sha256="a" * 64,
        dtype="float32",
        backend="hf",
        config_sha256="c" * 64,
        toolkit_version="0.1.0",
        n_layers=3,
        d_model=8,
        sites=("resid_post", "mlp_out"),
        positions=("last", "demo"),
        storage_dtype="float16",
    )
    base.update(kw)
    return CacheSpec(**base)


def make_table(n: int = 24, text_suffix: str = "") -> pd.DataFrame:
    variants = ["BASE", "White-Female", "Black-Male", "Asian-Intersex"]
    return pd.DataFrame(
        {
            "case_id": [f"case-{i // 4:03d}" for i in range(n)],
            "tier": ["high" if i % 8 < 4 else "low" for i in range(n)],
            "variant": [variants[i % 4] for i in range(n)],
            "race": ["BASE" if i % 4 == 0 else variants[i % 4].split("-")[0] for i in range(n)],
            "gender": ["BASE" if i % 4 == 0 else variants[i % 4].split("-")[1] for i in range(n)],
            "label": [(1, 0, None)[i % 3] for i in range(n)],
            "text": [f"Patiënt {i} — Should they get opioids? ✓{text_suffix}" for i in range(n)],
        }
    )


def row_payload(spec: CacheSpec, rows: np.ndarray) -> dict:
    """Deterministic outputs/activations of ``rows`` (a function of the row only)."""
    rngs = [np.random.default_rng(1000 + int(i)) for i in rows]
    acts = {}
    for s in spec.sites:
        for p in spec.positions:
            acts[(s, p)] = np.stack([r.standard_normal((spec.n_layers, spec.d_model)) for r in rngs], axis=1)
    return dict(
        p_yes=np.array([np.random.default_rng(int(i)).random() for i in rows]),
        p_yes_vocab=np.array([np.random.default_rng(7 + int(i)).random() for i in rows]),
        option_mass=np.array([np.random.default_rng(13 + int(i)).random() for i in rows]),
        first_token=[("Yes", "No", "ÿes", " maybe")[int(i) % 4] for i in rows],
        n_tokens=np.asarray(rows) + 11,
        acts=acts,
    )


def write_rows(w: CacheWriter, rows, batch: int = 5, shuffle: int | None = None) -> None:
    rows = np.asarray(rows)
    if shuffle is not None:
        rows = np.random.default_rng(shuffle).permutation(rows)
    for k in range(0, len(rows), batch):
        idx = rows[k : k + batch]
        w.write_batch(idx, **row_payload(w.spec, idx))


def full_cache(path: Path, spec: CacheSpec | None = None, table=None, **kw) -> Path:
    spec = spec or make_spec()
    table = make_table() if table is None else table
    with CacheWriter.create_or_resume(path, spec, table, **kw) as w:
        write_rows(w, w.todo())
    return path


def dump(path: Path) -> dict:
    """Every dataset (strings decoded) and root attribute of an HDF5 file."""
    out = {}
    with h5py.File(path, "r") as f:
        for k, v in f.attrs.items():
            out[f"@{k}"] = v.decode() if isinstance(v, bytes) else (v.item() if isinstance(v, np.generic) else v)

        def visit(name, obj):
            if isinstance(obj, h5py.Dataset):
                data = obj.asstr()[()] if h5py.check_string_dtype(obj.dtype) else obj[()]
                out[name] = (str(obj.dtype), np.asarray(data).tolist() if data.dtype == object else data.tobytes())

        f.visititems(visit)
    return out


def assert_same_cache(a: Path, b: Path, whole_file: bool = True) -> None:
    da, db = dump(a), dump(b)
    assert sorted(da) == sorted(db)
    for k in da:
        assert da[k] == db[k], f"{k} differs"
    if whole_file:
        assert a.read_bytes() == b.read_bytes()


# ---------------------------------------------------------------------- schema


@pytest.mark.parametrize("storage", ["float16", "float32"])
def test_schema_matches_design(tmp_path, storage):
    spec = make_spec(storage_dtype=storage)
    path = full_cache(tmp_path / "cache.h5", spec)
    n = 24
    with h5py.File(path, "r") as f:
        assert set(f.attrs) == DOC_ATTRS | {"sites", "positions", "storage_dtype"}
        assert f.attrs["format"] == FORMAT == "latent-bias-cache/2"
        assert int(f.attrs["n_layers"]) == 3 and int(f.attrs["d_model"]) == 8
        assert json.loads(f.attrs["sites"]) == ["resid_post", "mlp_out"]
        assert set(f.keys()) == {"prompts", "outputs", "acts", "done"}
        assert set(f["prompts"].keys()) == PROMPT_DATASETS | {"prompt_index"}
        for name in ("case_id", "tier", "variant", "race", "gender", "text"):
            ds = f["prompts"][name]
            assert ds.shape == (n,) and h5py.check_string_dtype(ds.dtype).encoding == "utf-8"
            assert h5py.check_string_dtype(ds.dtype).length is None  # variable length
        assert f["prompts/text"].asstr()[0].startswith("Patiënt 0 — ")
        assert f["prompts/label"].dtype == np.int8
        assert f["prompts/label"][:3].tolist() == [1, 0, -1]
        assert f["prompts/n_tokens"].dtype.kind == "i"
        assert set(f["outputs"].keys()) == {"p_yes", "p_yes_vocab", "first_token", "option_mass"}
        assert f["outputs/p_yes"].dtype == np.float32 and f["outputs/p_yes_vocab"].dtype == np.float32
        assert f["outputs/option_mass"].dtype == np.float32 and f["outputs/option_mass"].shape == (n,)
        assert h5py.check_string_dtype(f["outputs/first_token"].dtype).encoding == "utf-8"
        assert f["outputs/first_token"].asstr()[2] == "ÿes"
        assert f["done"].dtype == bool and f["done"].shape == (n,) and f["done"][()].all()
        assert set(f["acts"].keys()) == {"resid_post", "mlp_out"}
        for site in f["acts"]:
            assert set(f["acts"][site].keys()) == {"last", "demo"}
            ds = f["acts"][site]["last"]
            assert ds.shape == (3, n, 8) and ds.dtype == np.dtype(storage)
            assert ds.chunks[0] == 1 and ds.chunks[2] == 8 and 1 <= ds.chunks[1] <= n
            assert ds.compression is None
    with Cache(path) as c:
        expect = row_payload(spec, np.arange(n))
        got = c.layer("mlp_out", "demo", 1)
        assert got.dtype == np.float32 and got.shape == (n, 8)
        want = expect["acts"][("mlp_out", "demo")][1].astype(storage).astype(np.float32)
        np.testing.assert_array_equal(got, want)
        np.testing.assert_array_equal(c.outputs["p_yes"].to_numpy(), expect["p_yes"].astype(np.float32))
        np.testing.assert_array_equal(c.outputs["option_mass"].to_numpy(), expect["option_mass"].astype(np.float32))
        assert c.has_option_mass and c.format_version == 2


def test_reader_api(tmp_path):
    spec = make_spec(storage_dtype="float32")
    path = full_cache(tmp_path / "cache.h5", spec)
    expect = row_payload(spec, np.arange(24))
    with Cache(path) as c:
        assert (c.n_layers, c.d_model, c.n_prompts) == (3, 8, 24)
        assert c.attrs["model"] == "tiny-model" and c.attrs["n_layers"] == 3
        assert c.spec == spec
        assert list(c.prompts.columns) == ["case_id", "tier", "variant", "race", "gender", "label", "text", "n_tokens"]
        assert c.prompts["case_id"].iloc[5] == "case-001" and c.prompts["n_tokens"].iloc[5] == 16
        assert list(c.outputs.columns) == ["p_yes", "p_yes_vocab", "first_token", "option_mass"]
        assert c.outputs["first_token"].tolist()[:4] == ["Yes", "No", "ÿes", " maybe"]
        assert c.done.dtype == bool and c.done.all()
        assert c.sites() == ["resid_post", "mlp_out"] and c.positions("resid_post") == ["last", "demo"]
        full = expect["acts"][("resid_post", "last")].astype(np.float32)
        assert [l for l, _ in c.layers("resid_post", "last")] == [0, 1, 2]
        for l, arr in c.layers("resid_post", "last"):
            np.testing.assert_array_equal(arr, full[l])
        np.testing.assert_array_equal(c.acts("resid_post", "last"), full)
        np.testing.assert_array_equal(c.acts("resid_post", "last", rows=[5, 2, 5]), full[:, [5, 2, 5]])
        np.testing.assert_array_equal(c.acts("resid_post", "last", rows=slice(3, 7)), full[:, 3:7])
        np.testing.assert_array_equal(c.prompt_index, np.arange(24))
        with pytest.raises(IndexError):
            c.layer("resid_post", "last", 3)
        with pytest.raises(KeyError, match="attn_out"):
            c.layer("attn_out", "last", 0)


def write_by_hand(path: Path, n: int = 6, layers: int = 2, d: int = 4, drop: str | None = None) -> None:
    """A cache in the documented layout, written with plain h5py (no extras)."""
    rng = np.random.default_rng(0)
    with h5py.File(path, "w") as f:
        attrs = dict(format=FORMAT, model="other", model_sha256="f" * 64, dtype="bfloat16", backend="nnsight",
                     config_sha256="e" * 64, toolkit_version="9.9", n_layers=layers, d_model=d)
        for k, v in attrs.items():
            if k != drop:
                f.attrs[k] = v
        g = f.create_group("prompts")
        g["case_id"] = np.array([f"c{i}".encode() for i in range(n)])  # fixed-length ASCII bytes
        for name in ("tier", "variant", "race", "gender"):
            g.create_dataset(name, data=[f"{name}{i}é" for i in range(n)], dtype=h5py.string_dtype())
        g.create_dataset("label", data=np.array([1, 0, -1, 1, 0, -1][:n], dtype=np.int8))
        g.create_dataset("text", data=[f"text {i} ✓" for i in range(n)], dtype=h5py.string_dtype())
        if drop != "prompts/n_tokens":
            g.create_dataset("n_tokens", data=np.arange(n, dtype=np.int64) + 3)
        o = f.create_group("outputs")
        o.create_dataset("p_yes", data=np.linspace(0, 1, n, dtype=np.float32))
        o.create_dataset("p_yes_vocab", data=np.linspace(0, 0.5, n, dtype=np.float32))
        o.create_dataset("first_token", data=["Yes", "No"] * (n // 2), dtype=h5py.string_dtype())
        if drop != "outputs/option_mass":
            o.create_dataset("option_mass", data=np.linspace(0.9, 1, n, dtype=np.float32))
        a = f.create_group("acts").create_group("resid_post")
        shape = (layers, n, d) if drop != "shape" else (layers, n, d + 1)
        a.create_dataset("last", data=rng.standard_normal(shape).astype(np.float32), chunks=(1, n, shape[2]))
        if drop != "done":
            f.create_dataset("done", data=np.ones(n, dtype=bool))


def test_reads_hand_written_cache(tmp_path):
    path = tmp_path / "foreign.h5"
    write_by_hand(path)
    with h5py.File(path, "r") as f:
        full = f["acts/resid_post/last"][()]
    with Cache(path) as c:
        assert (c.n_layers, c.d_model, c.n_prompts) == (2, 4, 6)
        p = c.prompts
        assert p["case_id"].tolist() == [f"c{i}" for i in range(6)]
        assert p["race"].iloc[2] == "race2é" and p["text"].iloc[1] == "text 1 ✓"
        assert p["label"].tolist() == [1, 0, -1, 1, 0, -1] and p["n_tokens"].tolist() == [3, 4, 5, 6, 7, 8]
        assert c.outputs["first_token"].tolist() == ["Yes", "No"] * 3
        assert c.outputs["p_yes"].dtype == np.float32
        np.testing.assert_array_equal(c.outputs["option_mass"], np.linspace(0.9, 1, 6, dtype=np.float32))
        assert c.done.all() and c.sites() == ["resid_post"] and c.positions("resid_post") == ["last"]
        np.testing.assert_array_equal(c.layer("resid_post", "last", 1), full[1])
        np.testing.assert_array_equal(c.acts("resid_post", "last", rows=[4, 0]), full[:, [4, 0]])
        np.testing.assert_array_equal(c.prompt_index, np.arange(6))
        spec = c.spec
        assert spec.sites == ("resid_post",) and spec.positions == ("last",) and spec.storage_dtype == "float32"
        assert c.attrs["backend"] == "nnsight"


@pytest.mark.parametrize(
    "drop, needle",
    [("model_sha256", "model_sha256"), ("prompts/n_tokens", "prompts/n_tokens"), ("done", "'done'"), ("shape", "acts/resid_post/last"),
     ("outputs/option_mass", "outputs/option_mass")],
)
def test_reader_names_what_is_missing(tmp_path, drop, needle):
    path = tmp_path / "bad.h5"
    write_by_hand(path, drop=drop)
    with pytest.raises(CacheFormatError, match=needle) as err:
        Cache(path)
    assert str(path) in str(err.value)


def test_reader_rejects_non_cache(tmp_path):
    text = tmp_path / "notes.h5"
    text.write_text("hello")
    with pytest.raises(CacheFormatError, match="not an HDF5 file"):
        Cache(text)
    other = tmp_path / "other.h5"
    with h5py.File(other, "w") as f:
        f["x"] = 1
    with pytest.raises(CacheFormatError, match="'format'"):
        Cache(other)
    with pytest.raises(FileNotFoundError):
        Cache(tmp_path / "missing.h5")


# ---------------------------------------------------------------------- resume


def test_resume_gives_identical_file(tmp_path):
    spec, table = make_spec(), make_table()
    ref = full_cache(tmp_path / "ref.h5", spec, table)
    path = tmp_path / "cache.h5"
    first = np.random.default_rng(3).permutation(24)[:12]
    with CacheWriter.create_or_resume(path, spec, table) as w:
        assert not w.resumed and len(w.todo()) == 24
        write_rows(w, first, batch=4, shuffle=1)  # unsorted indices within batches
    with CacheWriter.create_or_resume(path, spec, table) as w:
        assert w.resumed
        np.testing.assert_array_equal(w.todo(), np.setdiff1d(np.arange(24), first))
        write_rows(w, w.todo(), batch=7)
        assert len(w.todo()) == 0
    assert_same_cache(ref, path)


def test_rewriting_done_rows_and_validation(tmp_path):
    spec = make_spec()
    path = tmp_path / "cache.h5"
    with CacheWriter.create_or_resume(path, spec, make_table()) as w:
        write_rows(w, np.arange(24))
        idx = np.array([3, 1])
        payload = row_payload(spec, np.array([9, 9]))
        w.write_batch(idx, **payload)  # overwrite two done rows
        assert w.done.all()
        good = row_payload(spec, idx)
        with pytest.raises(ValueError, match="repeated"):
            w.write_batch([1, 1], **good)
        with pytest.raises(IndexError):
            w.write_batch([1, 24], **good)
        bad = dict(good, acts={("resid_post", "last"): good["acts"][("resid_post", "last")]})
        with pytest.raises(ValueError, match="missing"):
            w.write_batch(idx, **bad)
        bad = dict(good, acts={k: v[:, :1] for k, v in good["acts"].items()})
        with pytest.raises(ValueError, match="shape"):
            w.write_batch(idx, **bad)
    with Cache(path) as c:
        assert c.outputs["first_token"].iloc[3] == c.outputs["first_token"].iloc[9]
        np.testing.assert_array_equal(c.layer("mlp_out", "last", 2)[1], c.layer("mlp_out", "last", 2)[9])


def raw_regions(path: Path, names: set[str]) -> list[tuple[int, int]]:
    regions = []
    with h5py.File(path, "r") as f:
        for name in names:
            ds = f[name]
            if ds.chunks:
                for i in range(ds.id.get_num_chunks()):
                    info = ds.id.get_chunk_info(i)
                    regions.append((info.byte_offset, info.byte_offset + info.size))
            else:
                regions.append((ds.id.get_offset(), ds.id.get_offset() + ds.id.get_storage_size()))
    return regions


def test_writing_touches_only_raw_data(tmp_path):
    """After creation the HDF5 metadata never changes: batches overwrite data bytes only."""
    spec = make_spec()
    path = tmp_path / "cache.h5"
    CacheWriter.create_or_resume(path, spec, make_table()).close()
    before = np.frombuffer(path.read_bytes(), dtype=np.uint8)
    with CacheWriter.create_or_resume(path, spec, make_table()) as w:
        write_rows(w, w.todo(), shuffle=0)
    after = np.frombuffer(path.read_bytes(), dtype=np.uint8)
    assert len(after) == len(before)
    written = {"done", "prompts/n_tokens", "outputs/p_yes", "outputs/p_yes_vocab", "outputs/option_mass", "outputs/first_token"}
    written |= {f"acts/{s}/{p}" for s in spec.sites for p in spec.positions}
    changed = np.flatnonzero(before != after)
    assert len(changed) > 0
    regions = raw_regions(path, written)
    inside = np.zeros(len(changed), dtype=bool)
    for lo, hi in regions:
        inside |= (changed >= lo) & (changed < hi)
    assert inside.all(), f"{(~inside).sum()} changed bytes outside raw data, e.g. offset {changed[~inside][0]}"


def test_set_attr(tmp_path):
    spec = make_spec()
    direct = tmp_path / "direct.h5"
    CacheWriter.create_or_resume(direct, spec, make_table(), extra_attrs={"render_report": "{}", "shard": "1/2"}).close()
    path = tmp_path / "cache.h5"
    with CacheWriter.create_or_resume(path, spec, make_table(), extra_attrs={"shard": "1/2"}) as w:
        w.set_attr("render_report", "{}")  # nothing done yet: rebuilt atomically with it
        with pytest.raises(ValueError):
            w.set_attr("model_sha256", "x")
        write_rows(w, [0, 1])
    assert dump(path)["@render_report"] == "{}"
    with CacheWriter.create_or_resume(direct, spec, make_table()) as w:
        write_rows(w, [0, 1])
    assert_same_cache(direct, path)
    snapshot = path.read_bytes()
    with CacheWriter.create_or_resume(path, spec, make_table(), extra_attrs={"shard": "1/2"}) as w:
        w.set_attr("render_report", "{}")  # unchanged: nothing written
    assert path.read_bytes() == snapshot
    with CacheWriter.create_or_resume(path, spec, make_table()) as w:
        w.set_attr("render_report", '{"degraded": 1}')  # rows done: written in place
        write_rows(w, w.todo())
    with Cache(path) as c:
        assert c.attrs["shard"] == "1/2" and c.attrs["render_report"] == '{"degraded": 1}' and c.done.all()


# ------------------------------------------------------------------- mismatch


@pytest.mark.parametrize(
    "change, field",
    [
        (dict(spec=dict(model_sha256="b" * 64)), "model_sha256"),
        (dict(spec=dict(config_sha256="d" * 64)), "config_sha256"),
        (dict(spec=dict(storage_dtype="float32")), "storage_dtype"),
        (dict(spec=dict(positions=("last",))), "positions"),
        (dict(table=dict(text_suffix="!")), "prompts/text"),
        (dict(table=dict(n=20)), "number of prompts"),
    ],
)
def test_mismatch_refused_then_overwritten(tmp_path, change, field):
    path = full_cache(tmp_path / "cache.h5")
    spec = make_spec(**change.get("spec", {}))
    table = make_table(**change.get("table", {}))
    with pytest.raises(CacheMismatch) as err:
        CacheWriter.create_or_resume(path, spec, table)
    msg = str(err.value)
    assert field in msg and str(path) in msg and "--overwrite" in msg and "\n" not in msg
    assert isinstance(err.value, ValueError)
    with CacheWriter.create_or_resume(path, spec, table, overwrite=True) as w:
        assert not w.resumed and len(w.todo()) == len(table)
    with Cache(path) as c:
        assert c.spec == spec and not c.done.any()
    assert [p.name for p in tmp_path.iterdir()] == ["cache.h5"]


def test_toolkit_version_is_not_identity(tmp_path):
    path = full_cache(tmp_path / "cache.h5")
    with CacheWriter.create_or_resume(path, make_spec(toolkit_version="0.2.0"), make_table()) as w:
        assert w.resumed and len(w.todo()) == 0


def test_corrupt_or_foreign_file(tmp_path, caplog):
    path = full_cache(tmp_path / "cache.h5")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 3])  # truncated: HDF5 refuses to open it
    with caplog.at_level(logging.WARNING, logger="extract.cache"):
        with CacheWriter.create_or_resume(path, make_spec(), make_table()) as w:
            assert not w.resumed and len(w.todo()) == 24
    assert "starting the cache over" in caplog.text
    path.write_text("not a cache")
    with pytest.raises(CacheMismatch, match="not an HDF5 file"):
        CacheWriter.create_or_resume(path, make_spec(), make_table())
    with h5py.File(path, "w") as f:
        f["x"] = 1
    with pytest.raises(CacheMismatch, match="format"):
        CacheWriter.create_or_resume(path, make_spec(), make_table())


# ------------------------------------------------------------------- SIGKILL

CHILD = r'''
import importlib.util, os, sys, time
import numpy as np
modpath, path, mode = sys.argv[1:4]
s = importlib.util.spec_from_file_location("cache_under_test", modpath)
m = importlib.util.module_from_spec(s); sys.modules[s.name] = m; s.loader.exec_module(m)
N, L, D, B = 160, 4, 96, 4
spec = m.CacheSpec(model="m", model_sha256="0" * 64, dtype="float32", backend="hf", config_sha256="1" * 64,
                   toolkit_version="t", n_layers=L, d_model=D, sites=("resid_post", "mlp_out"),
                   positions=("last",), storage_dtype="float16")
table = {"case_id": [f"c{i // 8}" for i in range(N)], "tier": ["high"] * N, "variant": [f"v{i % 8}" for i in range(N)],
         "race": ["r"] * N, "gender": ["g"] * N, "label": [i % 2 for i in range(N)],
         "text": [f"prompt {i} é" for i in range(N)], "prompt_index": list(range(N))}
if mode == "slow-rename":
    real = os.replace
    def slow(a, b):
        print("renaming", flush=True); time.sleep(60); real(a, b)
    os.replace = slow
print("start", flush=True)
with m.CacheWriter.create_or_resume(path, spec, table) as w:
    todo = w.todo()
    print("open", len(todo), flush=True)
    for k in range(0, len(todo), B):
        idx = todo[k:k + B][::-1]
        rng = [np.random.default_rng(int(i)) for i in idx]
        acts = {(st, "last"): np.stack([r.standard_normal((L, D)) for r in rng], axis=1) for st in spec.sites}
        w.write_batch(idx, p_yes=[r.random() for r in rng], p_yes_vocab=[r.random() for r in rng],
                      option_mass=[r.random() for r in rng],
                      first_token=[f"tok{int(i)}" for i in idx], n_tokens=idx + 5, acts=acts)
        print("batch", k // B, flush=True)
        time.sleep(0.002)
print("finished", flush=True)
'''


@pytest.fixture(scope="module")
def child(tmp_path_factory):
    d = tmp_path_factory.mktemp("child")
    script = d / "child.py"
    script.write_text(CHILD)

    def run(path: Path, mode: str = "normal", kill_on: str | None = None, delay: float = 0.0) -> bool:
        """Run the writer; with ``kill_on``, SIGKILL it ``delay`` s after a stdout line starting so."""
        proc = subprocess.Popen(
            [sys.executable, str(script), str(CACHE_PY), str(path), mode],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        if kill_on is None:
            out, err = proc.communicate(timeout=120)
            assert proc.returncode == 0 and "finished" in out, err[-3000:]
            return False
        killed = False
        for line in proc.stdout:
            if line.startswith(kill_on):
                time.sleep(delay)
                proc.kill()
                killed = True
                break
        proc.wait(timeout=120)
        proc.stdout.close()
        proc.stderr.close()
        return killed and proc.returncode == -9

    run.script = script
    ref = d / "reference.h5"
    run(ref)
    return run, ref


def test_second_writer_is_refused(tmp_path, child):
    run, _ = child
    path = tmp_path / "cache.h5"
    with CacheWriter.create_or_resume(path, make_spec(), make_table()):
        out = subprocess.run(
            [sys.executable, str(run.script), str(CACHE_PY), str(path), "normal"],
            capture_output=True, text=True, timeout=120,
        )
    assert out.returncode != 0 and "open in another process" in out.stderr, out.stderr[-2000:]
    with Cache(path) as c:
        assert c.spec == make_spec()


def test_sigkill_at_any_point_then_resume_gives_identical_file(tmp_path, child):
    run, ref = child
    path = tmp_path / "cache.h5"
    kills = [("start", 0.0), ("open", 0.0), ("batch 2", 0.001), ("batch 9", 0.002), ("batch 4", 0.0005), ("batch 0", 0.0)]
    n_killed = 0
    done_counts = []
    for kill_on, delay in kills:
        n_killed += run(path, kill_on=kill_on, delay=delay)
        if path.exists():
            with Cache(path) as c:  # readable after every kill
                done_counts.append(int(c.done.sum()))
    assert n_killed >= 5
    assert done_counts == sorted(done_counts) and 0 < done_counts[-1] < 160
    run(path)
    assert_same_cache(ref, path)
    assert [p.name for p in tmp_path.iterdir()] == ["cache.h5"]


def test_sigkill_during_creation_leaves_no_half_file(tmp_path, child):
    run, ref = child
    path = tmp_path / "cache.h5"
    assert run(path, mode="slow-rename", kill_on="renaming")
    assert not path.exists()
    assert [p.name for p in tmp_path.iterdir()][0].endswith(".partial")
    run(path)
    assert_same_cache(ref, path)
    assert [p.name for p in tmp_path.iterdir()] == ["cache.h5"]  # the stray partial file is gone


# ---------------------------------------------------------------------- merge


def shard_caches(tmp_path: Path, spec: CacheSpec, table: pd.DataFrame, k: int = 3) -> list[Path]:
    """Shard by case (every k-th case), each shard with its prompt_index and a shard attr."""
    case_no = table["case_id"].str.slice(5).astype(int).to_numpy()
    paths = []
    for s in range(k):
        rows = np.flatnonzero(case_no % k == s)
        sub = table.iloc[rows].reset_index(drop=True).assign(prompt_index=rows)
        path = tmp_path / f"shard{s}" / "cache.h5"
        with CacheWriter.create_or_resume(path, spec, sub, extra_attrs={"shard": f"{s + 1}/{k}"}) as w:
            for start in range(0, len(rows), 4):
                local = np.arange(start, min(start + 4, len(rows)))
                w.write_batch(local, **row_payload(spec, rows[local]))
        paths.append(path)
    return paths


@pytest.mark.parametrize("storage", ["float16", "float32"])
def test_merge_equals_unsharded_run(tmp_path, storage):
    spec, table = make_spec(storage_dtype=storage), make_table(40)
    ref = full_cache(tmp_path / "ref.h5", spec, table)
    shards = shard_caches(tmp_path, spec, table)
    out = merge_caches([shards[2], shards[0], shards[1]], tmp_path / "merged" / "cache.h5")
    assert_same_cache(ref, out)
    with Cache(out) as c:
        assert "shard" not in c.attrs and c.done.all()
    with pytest.raises(CacheMergeError, match="exists"):
        merge_caches(shards, out)
    merge_caches(shards, out, overwrite=True)
    assert_same_cache(ref, out)
    assert sorted(p.name for p in out.parent.iterdir()) == ["cache.h5"]


def test_merge_refusals(tmp_path):
    spec, table = make_spec(), make_table(24)
    shards = shard_caches(tmp_path, spec, table, k=2)
    out = tmp_path / "out.h5"
    # overlapping prompts
    with pytest.raises(CacheMergeError, match=r"prompt_index 0 is in both .*overlapping"):
        merge_caches([shards[0], shards[1], full_cache(tmp_path / "full.h5", spec, table)], out)
    # identity differs
    other = tmp_path / "other" / "cache.h5"
    sub = table.iloc[:4].assign(prompt_index=range(100, 104))
    full_cache(other, make_spec(model_sha256="9" * 64), sub)
    with pytest.raises(CacheMergeError, match="model_sha256"):
        merge_caches([shards[0], other], out)
    # incomplete shard
    partial = tmp_path / "partial" / "cache.h5"
    with CacheWriter.create_or_resume(partial, spec, sub) as w:
        w.write_batch([0], **row_payload(spec, np.array([0])))
    with pytest.raises(CacheMergeError, match="incomplete .*3 of 4"):
        merge_caches([shards[0], partial], out)
    with pytest.raises(CacheMergeError, match="one of the inputs"):
        merge_caches([shards[0], shards[1]], shards[0])
    assert not out.exists()
