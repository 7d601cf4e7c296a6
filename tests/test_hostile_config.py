"""Hostile configs: whatever a user types is refused with a one-line ConfigError naming
the file, the key path and the value, before any model work; large generated
benchmarks are made only as far as ``--limit-cases`` needs. No test loads a model."""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from latent_bias_probe.benchmarks import ed_generator, opioid_generator
from latent_bias_probe.benchmarks.errors import BenchmarkError
from latent_bias_probe.benchmarks.registry import load_cases, render_benchmark
from latent_bias_probe.configs.errors import InputError
from latent_bias_probe.configs.schema import (
    MAX_CONFIG_BYTES,
    BenchmarkConfig,
    ConfigError,
    check_against_model,
    config_from_dict,
    load_config,
)

BASE_YAML = "benchmark: {source: ed_triage, n_cases: 4}\n"


def _write(tmp_path: Path, text: str | bytes, name: str = "hostile.yaml") -> Path:
    path = tmp_path / name
    if isinstance(text, str):
        path.write_text(text, encoding="utf-8")
    else:
        path.write_bytes(text)
    return path


def _refused(path: Path, overrides: list[str] | None = None) -> str:
    with pytest.raises(ConfigError) as info:
        load_config(path, overrides or [])
    message = str(info.value)
    assert isinstance(info.value, InputError)  # the CLI's exit-2 family
    assert "\n" not in message, message  # the CLI prints one line
    assert str(path) in message, message
    return message


# --------------------------------------------------------------------------- values in the file

VALUE_CASES = [
    # run name: one folder under runs/
    ("name: /etc/passwd", "name", "'/etc/passwd'"),
    ("name: ../escape", "name", "'../escape'"),
    ("name: a/b", "name", "'a/b'"),
    ("name: 'a\\b'", "name", "'a\\\\b'"),
    ("name: '..'", "name", "'..'"),
    ("name: '.'", "name", "'.'"),
    ("name: ''", "name", "''"),
    ("name: '   '", "name", "'   '"),
    ('name: "run\\x07"', "name", "'run\\x07'"),
    ('name: "two\\nlines"', "name", "'two\\nlines'"),
    ("name: " + "x" * 101, "name", "101"),
    # races and genders
    ("benchmark: {source: ed_triage, races: [White]}", "benchmark.races", "['White']"),
    ("benchmark: {source: ed_triage, genders: [Female]}", "benchmark.genders", "['Female']"),
    ("benchmark: {source: ed_triage, races: []}", "benchmark.races", "must not be empty"),
    ("benchmark: {source: ed_triage, races: [' White', Black]}", "benchmark.races", "' White'"),
    ("benchmark: {source: ed_triage, races: ['Black ', White]}", "benchmark.races", "'Black '"),
    ("benchmark: {source: ed_triage, races: ['', Black]}", "benchmark.races", "''"),
    ("benchmark: {source: ed_triage, races: [White/Other, Black]}", "benchmark.races", "'White/Other'"),
    ("benchmark: {source: ed_triage, races: [Non-Hispanic, Black]}", "benchmark.races", "'Non-Hispanic'"),
    ("benchmark: {source: ed_triage, genders: [Fe-male, Male]}", "benchmark.genders", "'Fe-male'"),
    ("benchmark: {source: ed_triage, races: [base, Black]}", "benchmark.races", "'base'"),
    ("benchmark: {source: ed_triage, genders: [BASE, Male]}", "benchmark.genders", "'BASE'"),
    ('benchmark: {source: ed_triage, races: ["Wh\\tite", Black]}', "benchmark.races", "'Wh\\tite'"),
    ("benchmark: {source: ed_triage, races: [White, Black, White]}", "benchmark.races", "duplicate"),
    ("benchmark: {source: ed_triage, races: [White, white]}", "benchmark.races", "'white'"),
    ("benchmark: {source: ed_triage, races: [White, 3]}", "benchmark.races[1]", "3"),
    ("benchmark: {source: ed_triage, genders: [Female, " + "M" * 101 + "]}", "benchmark.genders", "longer than 100"),
    # tiers
    ("benchmark: {source: ed_triage, tiers: []}", "benchmark.tiers", "must not be empty"),
    ("benchmark: {source: ed_triage, tiers: [high, ultra]}", "benchmark.tiers", "'ultra'"),
    ("benchmark: {source: ed_triage, tiers: [low, low]}", "benchmark.tiers", "['low', 'low']"),
    ("benchmark: {source: ed_triage, tiers: [high]}\nexplain: {tiers: [low]}", "explain.tiers", "'low'"),
    ("explain: {tiers: []}", "explain.tiers", "must not be empty"),
    ("explain: {tiers: [high, high]}", "explain.tiers", "['high', 'high']"),
    # counts: each just outside its range
    ("extract: {batch_size: 0}", "extract.batch_size", "got 0"),
    ("extract: {batch_size: 4097}", "extract.batch_size", "got 4097"),
    ("extract: {threads: 0}", "extract.threads", "got 0"),
    ("extract: {threads: 1025}", "extract.threads", "got 1025"),
    ("extract: {batch_check: -1}", "extract.batch_check", "got -1"),
    ("extract: {batch_check: 100001}", "extract.batch_check", "got 100001"),
    ("probes: {n_folds: 1}", "probes.n_folds", "got 1"),
    ("probes: {n_folds: 101}", "probes.n_folds", "got 101"),
    ("probes: {bootstrap: -1}", "probes.bootstrap", "got -1"),
    ("probes: {bootstrap: 100001}", "probes.bootstrap", "got 100001"),
    ("scoring: {bootstrap: -5}", "scoring.bootstrap", "got -5"),
    ("scoring: {bootstrap: 100001}", "scoring.bootstrap", "got 100001"),
    ("explain: {max_cases: 0}", "explain.max_cases", "got 0"),
    ("explain: {max_cases: 100001}", "explain.max_cases", "got 100001"),
    ("benchmark: {source: ed_triage, n_cases: 0}", "benchmark.n_cases", "got 0"),
    ("benchmark: {source: ed_triage, n_cases: 1000001}", "benchmark.n_cases", "got 1000001"),
    ("benchmark: {source: ed_triage, n_cases: 1.0e+9}", "benchmark.n_cases", "1000000000.0"),
    ("benchmark: {source: ed_triage, n_cases: 2000000}", "benchmark.n_cases", "got 2000000"),
    ("probes: {value_axis_layer: -1}", "probes.value_axis_layer", "got -1"),
    ("explain: {layers: [4, -2]}", "explain.layers[1]", "got -2"),
    ("explain: {layers: []}", "explain.layers", "must not be empty"),
    ("explain: {layers: [4, 4]}", "explain.layers", "[4, 4]"),
    ("explain: {alphas: [-1.0, .nan]}", "explain.alphas[1]", "nan"),
    ("explain: {alphas: [.inf]}", "explain.alphas[0]", "inf"),
    ("explain: {alphas: [-.inf, 0.0]}", "explain.alphas[0]", "-inf"),
    ("explain: {alphas: []}", "explain.alphas", "must not be empty"),
    ("explain: {alphas: [1.0e+6]}", "explain.alphas[0]", "1000000.0"),
    ("explain: {alphas: [1e3]}", "explain.alphas[0]", "'1e3' (YAML reads this as text"),
    ("explain: {trace_cases: -1}", "explain.trace_cases", "got -1"),
    ("explain: {trace_layers: []}", "explain.trace_layers", "must not be empty"),
    ("explain: {trace_layers: [1, 1]}", "explain.trace_layers", "[1, 1]"),
    ("explain: {trace_layers: [0, -3]}", "explain.trace_layers[1]", "got -3"),
    ("explain: {position_erasure: 3}", "explain.position_erasure", "3"),
    ("scoring: {alpha: .nan}", "scoring.alpha", "nan"),
    ("seed: -1", "seed", "got -1"),
    ("probes: {seed: 4294967296}", "probes.seed", "4294967296"),
    ("benchmark: {source: ed_triage, mimic: {split_fractions: [.nan, 0.5, 0.5]}}", "benchmark.mimic.split_fractions", "nan"),
    ("benchmark: {source: ed_triage, mimic: {max_icd_codes: 1}}", "benchmark.mimic.max_icd_codes", "got 1"),
    # types, strings and paths
    ("extract: {batch_size: true}", "extract.batch_size", "True"),
    ("extract: {batch_size: 2.5}", "extract.batch_size", "2.5"),
    ("seed: 2001-01-01", "seed", "datetime.date(2001, 1, 1)"),
    ("model: {name: ''}", "model.name", "''"),
    ("model: {name: ~no_such_user_hostile/model}", "model.name", "~no_such_user_hostile/model"),
    ('model: {adapter: "lora\\x00dir"}', "model.adapter", "'lora\\x00dir'"),
    ("model: {name: ./" + "d" * 5000 + "}", "model.name", "characters"),
    ('benchmark: {source: ed_triage, system_message: "Answer\\x00"}', "benchmark.system_message", "'Answer\\x00'"),
    ("benchmark: {source: csv, task: ed_triage, path: " + "p" * 300 + ".csv}", "benchmark.path", "ppp"),
    ("sweep: {precisions: [int8, int8]}", "sweep.precisions", "'int8'"),
    ("sweep: {models: [a, a]}", "sweep.models", "'a'"),
    ("sweep: {adapters: []}", "sweep.adapters", "must not be empty"),
    ("bogus_section: 1", "bogus_section", "unknown key"),
    ("extract: {batch_size: 2, bogus: 1}", "extract.bogus", "unknown key"),
    ('"na\\x00me": x', "'na\\x00me'", "unknown key"),
]


@pytest.mark.parametrize("text, key, needle", VALUE_CASES, ids=[f"{i:02d}-{c[1]}" for i, c in enumerate(VALUE_CASES)])
def test_bad_value_names_file_key_and_value(tmp_path, text, key, needle):
    path = _write(tmp_path, (BASE_YAML if "benchmark:" not in text else "") + text + "\n")
    message = _refused(path)
    assert key in message, message
    assert needle in message, message


# --------------------------------------------------------------------------- the file itself


FILE_CASES = [
    ("latin1", "name: caf\xe9\n".encode("latin-1"), ["must be UTF-8", "0xe9", "line 1"]),
    ("utf16", "name: x\n".encode("utf-16"), ["must be UTF-8"]),
    ("deep-brackets", b"benchmark: " + b"[" * 100_000, ["nested too deeply"]),
    ("deep-closed", b"benchmark: " + b"[" * 600 + b"]" * 600, ["nested too deeply"]),
    ("deep-mappings", b"benchmark: " + b"{a: " * 40 + b"1" + b"}" * 40, ["benchmark", "nested more than 32 levels"]),
    ("self-alias", b"benchmark: &b\n  mimic: *b\n", ["benchmark.mimic", "nested more than"]),
    ("alias-bomb", b"a: &a [1,2,3,4,5,6,7,8,9,10]\nb: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a,*a]\nc: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b,*b]\n"
     b"d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c,*c]\ne: [*d,*d,*d,*d,*d,*d,*d,*d,*d,*d]\n", ["more than 100000 values"]),
    ("top-list", b"- benchmark\n- extract\n", ["mapping", "top level", "a list"]),
    ("top-scalar", b"42\n", ["mapping", "top level", "42"]),
    ("top-zero", b"0\n", ["mapping", "top level"]),
    ("top-text", b"just some words\n", ["mapping", "top level", "'just some words'"]),
    ("syntax", b"benchmark:\n  source: ed_triage\n tiers: [high\n", ["not valid YAML", "line 3"]),
    ("unclosed", b"benchmark: [unclosed\n", ["not valid YAML", "line"]),
    ("tab-indent", b"benchmark:\n\tsource: ed_triage\n", ["not valid YAML", "line 2"]),
    ("duplicate-key", b"extract: {batch_size: 2}\nextract: {batch_size: 3}\n", ["duplicate key 'extract'", "line 2"]),
    ("duplicate-nested", b"extract:\n  batch_size: 2\n  batch_size: 3\n", ["duplicate key 'batch_size'", "line 3"]),
    ("nul-byte", b"name: a\x00b\n", ["not valid YAML", "#x0000"]),
    ("python-tag", b"name: !!python/object/apply:os.system ['echo hi']\n", ["not valid YAML", "python/object"]),
    ("undefined-alias", b"name: *nothing\n", ["not valid YAML", "undefined alias"]),
    ("huge-int", b"seed: " + b"9" * 5000 + b"\n", ["not valid YAML"]),
    ("bad-date", b"seed: 2001-13-45\n", ["not valid YAML", "month"]),
    ("too-big", b"# " + b"x" * MAX_CONFIG_BYTES + b"\n", ["larger than 1048576 bytes"]),
]


@pytest.mark.parametrize("label, data, needles", FILE_CASES, ids=[c[0] for c in FILE_CASES])
def test_bad_file_is_refused_with_one_line(tmp_path, label, data, needles):
    message = _refused(_write(tmp_path, data))
    for needle in needles:
        assert needle in message, message


def test_not_a_file(tmp_path):
    assert "not found" in _refused(tmp_path / "missing.yaml")
    folder = tmp_path / "folder.yaml"
    folder.mkdir()
    assert "folder" in _refused(folder)
    with pytest.raises(ConfigError, match="not a regular file"):
        load_config("/dev/null")
    with pytest.raises(ConfigError, match="unreadable") as info:
        load_config(tmp_path / "nul\x00name.yaml")
    assert "\x00" not in str(info.value)


# --------------------------------------------------------------------------- --set


SET_CASES = [
    ("novalue", "--set 'novalue'", "KEY=VALUE"),
    ("=3", "--set '=3'", "empty key path"),
    ("extract..batch_size=3", "extract..batch_size", "empty key path"),
    ("nosuch=1", "nosuch", "unknown key"),
    ("nosuch.deeper=1", "nosuch", "unknown key"),
    ("extract.nope=1", "extract.nope", "unknown key"),
    ("extract.batch_size.deeper=1", "extract.batch_size", "not a section"),
    ("benchmark.races.0=White", "benchmark.races", "not a section"),
    ("extract.batch_size=" + "[" * 100_000, "extract.batch_size", "nested too deeply"),
    ("extract.batch_size=" + "[" * 40 + "]" * 40, "extract.batch_size", "nested more than 32"),
    ("seed=" + "9" * 5000, "seed=", "not valid YAML"),
    ("extract.batch_size=-3", "extract.batch_size", "got -3"),
    ("name=../../tmp/x", "name", "'../../tmp/x'"),
    ("benchmark.races=[White]", "benchmark.races", "at least 2"),
]


@pytest.mark.parametrize("assignment, key, needle", SET_CASES, ids=[f"{i:02d}" for i in range(len(SET_CASES))])
def test_bad_override_is_refused(tmp_path, assignment, key, needle):
    message = _refused(_write(tmp_path, BASE_YAML), [assignment])
    assert key in message, message
    assert needle in message, message


def test_set_into_a_scalar_of_the_file(tmp_path):
    path = _write(tmp_path, BASE_YAML + "extract: 5\n")
    message = _refused(path, ["extract.batch_size=2"])
    assert "extract" in message and "not a mapping" in message


def test_config_from_dict_refuses_deep_data_without_recursion():
    data: dict = {}
    node = data
    for _ in range(10_000):
        node["mimic"] = {}
        node = node["mimic"]
    with pytest.raises(ConfigError, match="source.yaml: mimic.mimic: nested more than 32"):
        config_from_dict(data, Path.cwd(), "source.yaml")
    with pytest.raises(ConfigError, match="source.yaml: expected a mapping"):
        config_from_dict([1, 2], Path.cwd(), "source.yaml")  # type: ignore[arg-type]


# --------------------------------------------------------------------------- valid edge values


@pytest.mark.parametrize(
    "text, check",
    [
        ("probes: {bootstrap: 0}\nscoring: {bootstrap: 0}", lambda c: c.probes.bootstrap == 0 == c.scoring.bootstrap),
        ("extract: {batch_check: 0}", lambda c: c.extract.batch_check == 0),
        ("extract: {batch_size: 4096, threads: 1024, batch_check: 100000}", lambda c: c.extract.threads == 1024),
        ("extract: {threads: null}", lambda c: c.extract.threads is None),
        ("probes: {n_folds: 100, bootstrap: 100000, value_axis_layer: 0}", lambda c: c.probes.value_axis_layer == 0),
        ("explain: {max_cases: null, layers: [0, 10000], alphas: [-1000, 0, 1000]}", lambda c: c.explain.alphas[0] == -1000.0),
        ("explain: {tiers: [low, high]}", lambda c: c.explain.tiers == ["low", "high"]),
        ("name: Übung_2024 (v2)", lambda c: c.name == "Übung_2024 (v2)"),
        ("name: ..hidden-but-not-a-parent", lambda c: c.name.startswith("..")),
        ("seed: 4294967295", lambda c: c.seed == 2**32 - 1),
        ("extract: {<<: {batch_size: 2, batch_check: 0}, batch_size: 3}", lambda c: c.extract.batch_size == 3 and c.extract.batch_check == 0),
    ],
)
def test_valid_edge_values_load(tmp_path, text, check):
    cfg = load_config(_write(tmp_path, BASE_YAML + text + "\n"))
    assert check(cfg)


def test_valid_file_variants_load(tmp_path):
    assert load_config(_write(tmp_path, b"\xef\xbb\xbfname: bom\n" + BASE_YAML.encode(), "bom.yaml")).name == "bom"
    assert load_config(_write(tmp_path, b"name: crlf\r\n" + BASE_YAML.encode().replace(b"\n", b"\r\n"), "crlf.yaml")).name == "crlf"
    assert load_config(_write(tmp_path, b"", "empty.yaml")).name == "job"
    big = load_config(_write(tmp_path, BASE_YAML, "n.yaml"), ["benchmark.n_cases=1000000"])
    assert big.benchmark.n_cases == 1_000_000


def test_run_name_limits_typed_and_saved(tmp_path):
    # typed: 100 characters; a saved config.json (a sweep item's name is <name>__<combination>): 255 bytes
    assert load_config(_write(tmp_path, BASE_YAML + "name: " + "n" * 100 + "\n")).name == "n" * 100
    assert config_from_dict({"name": "n" * 200}, Path.cwd(), "config.json").name == "n" * 200
    with pytest.raises(ConfigError, match="config.json: name: at most 255 bytes"):
        config_from_dict({"name": "é" * 128}, Path.cwd(), "config.json")


def test_check_against_model(tmp_path):
    cfg = load_config(_write(tmp_path, BASE_YAML + "probes: {value_axis_layer: 5}\nexplain: {layers: [0, 5]}\n"))
    check_against_model(cfg, 6)
    with pytest.raises(ConfigError, match=r"x.yaml: probes.value_axis_layer: must lie in 0..4 .*has 5 layers.*got 5"):
        check_against_model(cfg, 5, source="x.yaml")
    cfg = replace(cfg, probes=replace(cfg.probes, value_axis_layer=None))
    with pytest.raises(ConfigError, match=r"^explain.layers: \[5\] out of range 0..4"):
        check_against_model(cfg, 5)
    cfg = replace(cfg, explain=replace(cfg.explain, layers=None))
    check_against_model(cfg, 1)
    with pytest.raises(ValueError):
        check_against_model(cfg, 0)


# --------------------------------------------------------------------------- bootstrap 0 downstream


def test_bootstrap_zero_group_shifts_and_tier_scores_are_json_safe():
    from latent_bias_probe.mfarm.diagnostics import group_shifts
    from latent_bias_probe.mfarm.tier import score_tier

    rng = np.random.default_rng(0)
    P = rng.random((12, 3))
    rows = group_shifts(P, ["A-F", "A-M"], n_boot=0)
    assert all(r["ci_low"] is None and r["ci_high"] is None and r["mean_shift"] is not None for r in rows)
    with pytest.raises(ValueError):
        group_shifts(P, ["A-F", "A-M"], n_boot=-1)
    variants = ["BASE", "A-F", "A-M"]
    case_ids = [f"c{i}" for i in range(12) for _ in variants]
    out = score_tier(case_ids, variants * 12, P.ravel(), [1] * 36, ["A-F", "A-M"], n_boot=0)
    json.dumps(out, allow_nan=False)


def test_bootstrap_zero_probe_sweep_is_json_safe():
    from latent_bias_probe.probes.linear_probe import probe_sweep

    rng = np.random.default_rng(0)
    h = rng.normal(size=(2, 40, 8)).astype("float32")
    sweep = probe_sweep(h, np.array([0, 1] * 20), np.repeat(np.arange(10), 4), n_folds=2, n_boot=0, threads=1)
    d = sweep.to_dict()
    assert d["ci_low"] == [None, None] and d["ci_high"] == [None, None]
    json.dumps(d, allow_nan=False)


# --------------------------------------------------------------------------- lazy --limit-cases


def _first_cases(rendered, n):
    keep = list(dict.fromkeys(p.case_id for p in rendered.prompts))[:n]
    return [p for p in rendered.prompts if p.case_id in keep]


@pytest.mark.parametrize("source", ["ed_triage", "opioid"])
@pytest.mark.parametrize("duplicates, tiers", [("keep", ["high", "medium", "low"]), ("collapse", ["high"])])
def test_limit_is_a_prefix_of_the_full_rendering(source, duplicates, tiers):
    cfg = BenchmarkConfig(source=source, n_cases=24, seed=5, tiers=tiers, duplicates=duplicates)
    full = render_benchmark(cfg)
    limited = render_benchmark(cfg, limit_cases=3)
    assert len({p.case_id for p in limited.prompts}) == 3
    assert limited.prompts == _first_cases(full, 3)
    assert load_cases(cfg, limit_cases=3) == load_cases(cfg)[:3]
    assert load_cases(cfg, limit_cases=1000) == load_cases(cfg)


@pytest.mark.parametrize("module, generate", [(ed_generator, "generate_ed_cases"), (opioid_generator, "generate_opioid_cases")])
def test_streamed_generation_is_prefix_stable_and_balanced(monkeypatch, module, generate):
    monkeypatch.setattr(module, "EAGER_MAX_CASES", 10)  # 41 cases: the streamed regime
    gen = getattr(module, generate)
    full = gen(41, 3)
    assert Counter(c.label for c in full) == {1: 20, 0: 21}
    assert [c.case_id for c in full[:2]] == [full[0].case_id[:3] + "0001", full[0].case_id[:3] + "0002"]
    for k in (1, 7, 40, 41, 100):
        assert gen(41, 3, limit=k) == full[:k]
    assert gen(41, 4) != full
    cfg = BenchmarkConfig(source="ed_triage" if module is ed_generator else "opioid", n_cases=41, seed=3, duplicates="keep")
    assert render_benchmark(cfg, limit_cases=3).prompts == _first_cases(render_benchmark(cfg), 3)


def test_a_million_generated_cases_are_not_made_for_a_limit(monkeypatch):
    draws = []
    real_draw = ed_generator._draw
    monkeypatch.setattr(ed_generator, "_draw", lambda rng, pres: draws.append(1) or real_draw(rng, pres))
    cfg = BenchmarkConfig(source="ed_triage", n_cases=1_000_000, seed=42)
    rendered = render_benchmark(cfg, limit_cases=3)
    assert [c.case_id for c in load_cases(cfg, limit_cases=3)] == ["ed-0001", "ed-0002", "ed-0003"]
    assert len({p.case_id for p in rendered.prompts}) <= 3
    assert len(draws) < 500  # a few draws per case, not a million
    assert len(opioid_generator.generate_opioid_cases(1_000_000, 42, limit=2)) == 2


def test_limit_on_a_file_source():
    from conftest import DATA

    cfg = BenchmarkConfig(source="qpain", path=str(DATA / "q-pain"), n_cases=11, seed=2)
    assert load_cases(cfg, limit_cases=4) == load_cases(cfg)[:4]


@pytest.mark.parametrize("bad", [0, -1, True, 2.5, "3"])
def test_bad_limit_is_refused(bad):
    with pytest.raises(BenchmarkError, match="--limit-cases"):
        render_benchmark(BenchmarkConfig(source="ed_triage", n_cases=4), limit_cases=bad)
