"""Few-shot framing (benchmark.few_shot), model.framing / model.answer_cue, and the decision gate
(scoring.min_option_mass), on the renderer, the tiny tokenizer and the tiny model."""

from __future__ import annotations

import json
import re
from collections import Counter
from dataclasses import replace
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import pytest

from latent_bias_probe.benchmarks.few_shot import attach_examples
from latent_bias_probe.benchmarks.registry import load_cases, render_benchmark
from latent_bias_probe.benchmarks.render import render_case
from latent_bias_probe.benchmarks.types import BASE
from conftest import write_config
from latent_bias_probe.configs.schema import BenchmarkConfig, ConfigError, load_config
from latent_bias_probe.extract.cache import Cache
from latent_bias_probe.extract.chat import (
    char_spans_to_token_positions, find_user_offset, model_text, prompt_framing, query_starts, word_token_positions,
)
from latent_bias_probe.extract.tiny import tiny_tokenizer
from latent_bias_probe.pipeline.artifacts import RunDir
from latent_bias_probe.pipeline.extract import Shard, run_extract
from latent_bias_probe.pipeline.results import assemble_results, validate_results
from latent_bias_probe.pipeline.scoring import score_table
from latent_bias_probe.report.sweep import result_rows
from latent_bias_probe.report.terminal import summary_table

RACES = ["White", "Black", "Hispanic", "Asian"]
GENDERS = ["Female", "Male", "Intersex"]
WORDS = RACES + GENDERS


def bench(**kw) -> BenchmarkConfig:
    base = {"source": "ed_triage", "n_cases": 20, "seed": 42, "tiers": ["high", "medium", "low"], "few_shot": 4}
    return BenchmarkConfig(**{**base, **kw})


def blocks(prompts):
    """{(case, tier): [prompts of its 13 variants]}"""
    out: dict = {}
    for p in prompts:
        out.setdefault((p.case_id, p.tier), []).append(p)
    return out


@pytest.fixture(scope="module")
def rendered():
    return render_benchmark(bench())


@pytest.fixture(scope="module")
def tok():
    return tiny_tokenizer()


# ------------------------------------------------------------------ the draw


def test_examples_are_other_balanced_base_cases_with_their_labels(rendered):
    cases = {c.case_id: c for c in load_cases(bench())}
    labels = {k: c.label for k, c in cases.items()}
    for (case_id, tier), ps in blocks(rendered.prompts).items():
        own = next(p for p in ps if p.variant == BASE).user
        shots = ps[0].shots
        assert len(shots) == 4
        assert all(s.case_id != case_id for s in shots)  # never the case itself
        assert all(s.user != own for s in shots)  # nor a case that renders as it does
        assert len({s.user for s in shots}) == 4  # nor one example twice
        assert Counter(s.answer for s in shots) == {"Yes": 2, "No": 2}  # balanced
        assert all(s.answer == {1: "Yes", 0: "No"}[labels[s.case_id]] for s in shots)
        for s in shots:  # rendered as BASE at the prompt's tier: no demographic word
            assert s.user == render_case(cases[s.case_id], tier, BASE, BASE).user
            opening = s.user.splitlines()[0]
            assert opening.startswith("A patient of age ")
            assert not [w for w in WORDS if re.search(rf"\b{w}\b", opening)], opening


def test_odd_k_is_as_balanced_as_it_can_be():
    prompts = render_benchmark(bench(few_shot=3)).prompts
    counts = Counter(tuple(sorted(Counter(s.answer for s in p.shots).values())) for p in prompts)
    assert set(counts) == {(1, 2)}
    odd = Counter(Counter(s.answer for s in p.shots).most_common(1)[0][0] for p in prompts if p.variant == BASE)
    assert odd["Yes"] > 0 and odd["No"] > 0  # the odd label is drawn, not always the same


def test_examples_identical_across_the_13_variants_and_differ_between_cases(rendered):
    per_case = {}
    for key, ps in blocks(rendered.prompts).items():
        assert len(ps) == 13
        assert len({p.shots for p in ps}) == 1
        per_case[key] = ps[0].shots
    assert len(set(per_case.values())) > len(per_case) // 2  # drawn per case, not one set for all


def test_draw_depends_on_seed_case_and_tier_only(rendered):
    prompts = rendered.prompts
    bare = [replace(p, shots=()) for p in prompts]
    cases = load_cases(bench())
    again = attach_examples(list(reversed(bare)), list(reversed(cases)), 4, 42)  # another order of everything
    assert [p.shots for p in reversed(again)] == [p.shots for p in prompts]
    other = attach_examples(bare, cases, 4, 43)
    assert sum(a.shots != b.shots for a, b in zip(other, prompts)) > len(prompts) // 2
    limited = render_benchmark(bench(), limit_cases=5).prompts  # a --limit-cases prefix: the same examples
    full = {(p.case_id, p.tier, p.variant): p.shots for p in prompts}
    assert limited and all(p.shots == full[(p.case_id, p.tier, p.variant)] for p in limited)


def test_k_zero_renders_as_before():
    with_k = render_benchmark(bench(few_shot=0)).prompts
    assert all(p.shots == () for p in with_k)


def test_too_few_cases_for_k_is_a_one_line_error():
    from latent_bias_probe.benchmarks.errors import BenchmarkError

    with pytest.raises(BenchmarkError, match=r"benchmark\.few_shot: 8 examples need 4") as err:
        render_benchmark(bench(n_cases=6, few_shot=8, tiers=["high"]))
    assert "\n" not in str(err.value)


# ------------------------------------------------------------------ model texts


def _diff_region(a: str, b: str) -> tuple[int, int, int]:
    """(common prefix length, end of the differing part in a, in b)."""
    n = 0
    while n < min(len(a), len(b)) and a[n] == b[n]:
        n += 1
    m = 0
    while m < min(len(a), len(b)) - n and a[-1 - m] == b[-1 - m]:
        m += 1
    return n, len(a) - m, len(b) - m


@pytest.mark.parametrize("framing", ["chat", "plain"])
def test_variant_differs_from_base_only_in_its_own_demographic_words(rendered, tok, framing):
    for (case_id, tier), ps in list(blocks(rendered.prompts).items())[:12]:
        base = next(p for p in ps if p.variant == BASE)
        tb = model_text(tok, base, framing)
        ob = find_user_offset(tok, base, tb, framing)
        for p in ps[1:]:
            tv = model_text(tok, p, framing)
            ov = find_user_offset(tok, p, tv, framing)
            assert ov == ob  # the same system message and examples before the case's own prompt
            assert tv[:ov] == tb[:ob]
            start, end_v, end_b = _diff_region(tv, tb)
            first_line = ov + tv[ov:].index("\n")
            assert ov <= start and end_v <= first_line and end_b <= ob + tb[ob:].index("\n")  # only the opening sentence
            changed = tv[start:end_v]
            assert p.race in changed and p.gender in changed
            # the demographic token positions point at the case's own words, after every example
            pos = char_spans_to_token_positions(tok, tv, ov, p.demographic_spans)
            words = [tok.decode(i).strip() for i in np.asarray(tok(tv, add_special_tokens=False).input_ids)[pos]]
            assert "".join(words) in (p.gender + p.race, p.race + p.gender) or set(words) <= {p.race, p.gender}
            n_before = len(tok(tv[:ov], add_special_tokens=False).input_ids)
            assert min(pos) >= n_before - 1


def test_plain_framing_shows_answer_blocks_and_chat_framing_earlier_turns(rendered, tok):
    p = rendered.prompts[1]
    a, b = p.shots[0], p.shots[1]
    plain = model_text(tok, p, "plain", "Réponse:")
    assert plain.startswith(f"System: {p.system}\nUser: {a.user}\nRéponse: {a.answer}\n\nUser: {b.user}\nRéponse: {b.answer}\n\n")
    assert plain.endswith(f"User: {p.user}\nRéponse:")
    chat = model_text(tok, p, "chat")
    for s in p.shots:
        assert f"<|im_start|>user\n{s.user}<|im_end|>\n<|im_start|>assistant\n{s.answer}<|im_end|>\n" in chat
    assert chat.endswith(f"<|im_start|>user\n{p.user}<|im_end|>\n<|im_start|>assistant\n")
    assert chat.index(p.shots[-1].user) < chat.index(p.user)


def test_prompt_framing_records_the_choice_and_the_cue(tok):
    plain = prompt_framing(tok, "S", "plain", "A:", 2)
    assert plain["kind"] == "plain" and plain["answer_cue"] == "A:" and plain["few_shot"] == 2
    assert plain["template"] == "System: S\nUser: {user}\nA:" and plain["framing"] == "plain"
    chat = prompt_framing(tok, "S", "auto")
    assert chat["kind"] == "chat_template" and "answer_cue" not in chat and chat["few_shot"] == 0


def test_chat_framing_without_a_template_is_refused(tok):
    bare = tiny_tokenizer()
    bare.chat_template = None
    p = render_benchmark(bench(n_cases=6, few_shot=0, tiers=["high"])).prompts[0]
    with pytest.raises(ConfigError, match="model.framing: 'chat'"):
        model_text(bare, p, "chat")
    assert model_text(bare, p, "auto").endswith("\nAnswer:")


def test_base_demographic_position_skips_the_examples(rendered, tok):
    """The explain stage finds words in cached texts: with examples, "patient" of BASE is the case's own."""
    ps = next(ps for (c, t), ps in blocks(rendered.prompts).items()  # a case whose own text names no race elsewhere
              if t == "high" and not any(re.search(rf"\b{w}\b", ps[0].user) for w in WORDS))
    texts = [model_text(tok, p) for p in ps]
    starts = query_starts(texts, [("c", "high")] * len(texts))
    base_text = texts[0]
    off = find_user_offset(tok, ps[0], base_text)
    assert base_text.count("patient") > 3 and off - 2 <= starts[0] <= off + len("A ")
    got = word_token_positions(tok, base_text, ["patient"], starts[0])[:1]
    assert got == char_spans_to_token_positions(tok, base_text, off, ps[0].demographic_spans)
    for p, t, s in zip(ps[1:], texts[1:], starts[1:]):
        want = char_spans_to_token_positions(tok, t, find_user_offset(tok, p, t), p.demographic_spans)
        assert word_token_positions(tok, t, WORDS, s) == want


# ------------------------------------------------------------------ config


@pytest.mark.parametrize("key, value, message", [
    ("benchmark.few_shot", "-1", "benchmark.few_shot: must lie in 0..64, got -1"),
    ("benchmark.few_shot", "65", "benchmark.few_shot: must lie in 0..64, got 65"),
    ("model.framing", "chatty", "model.framing"),
    ("model.answer_cue", "' '", "model.answer_cue: must be printable text"),
    ("scoring.min_option_mass", "1.5", "scoring.min_option_mass: must lie in 0.0..1.0, got 1.5"),
])
def test_config_errors_are_one_line(tmp_path, tiny_model_dir, key, value, message):
    cfg = write_config(tmp_path / "c.yaml", tiny_model_dir)
    with pytest.raises(ConfigError) as err:
        load_config(cfg, [f"{key}={value}"])
    assert message in str(err.value) and "\n" not in str(err.value)


def test_defaults_keep_the_extraction_hash(tmp_path, tiny_model_dir):
    from latent_bias_probe.configs.hashes import extraction_sha256

    cfg = load_config(write_config(tmp_path / "c.yaml", tiny_model_dir))
    same = load_config(write_config(tmp_path / "d.yaml", tiny_model_dir), ["benchmark.few_shot=0", "model.framing=auto"])
    other = load_config(write_config(tmp_path / "e.yaml", tiny_model_dir), ["benchmark.few_shot=1"])
    assert extraction_sha256(cfg) == extraction_sha256(same) != extraction_sha256(other)


# ------------------------------------------------------------------ the pipeline on the tiny model


def _cfg(tmp_path: Path, model_dir: Path, name: str, **over):
    # the low tier: the shortest prompts (the draw and the texts at every tier are tested above without a model)
    sections = {"benchmark": {"n_cases": 5, "tiers": ["low"], "few_shot": 2},
                "extract": {"batch_size": 4, "batch_check": 0}, "scoring": {"bootstrap": 20, "permutations": 0}}
    for k, v in over.items():
        sections.setdefault(k, {}).update(v)
    return load_config(write_config(tmp_path / f"{name}.yaml", model_dir, **sections))


def _rows(path: Path) -> dict:
    with Cache(path) as c:
        df = c.prompts
        ids = c.few_shot_ids
    return {(r.case_id, r.tier, r.variant): (r.text, tuple(i)) for r, i in zip(df.itertuples(), ids)}


def test_cache_records_the_examples_the_same_in_shards_and_resumes(tmp_path, tiny_model_dir):
    cfg = _cfg(tmp_path, tiny_model_dir, "a")
    full = tmp_path / "full"
    run_extract(cfg, full, progress=False)
    rows = _rows(full / "cache.h5")
    expected = {(p.case_id, p.tier, p.variant): tuple(s.case_id for s in p.shots) for p in render_benchmark(cfg.benchmark).prompts}
    assert {k: v[1] for k, v in rows.items()} == expected
    assert all(len(v[1]) == 2 for v in rows.values())
    by_case = {}
    for (case_id, tier, _), (_, ids) in rows.items():
        by_case.setdefault((case_id, tier), set()).add(ids)
    assert all(len(v) == 1 for v in by_case.values())  # one set of examples per case and tier
    for k in (1, 2):  # each shard's prompts: the same texts and examples as the full run's
        d = tmp_path / f"shard{k}"
        run_extract(cfg, d, shard=Shard(k, 2), progress=False)
        part = _rows(d / "cache.h5")
        assert part and all(rows[key] == value for key, value in part.items())
    # resume: un-finish half the rows, as an interrupted run leaves it (the manifest entry is
    # dropped while the cache is written); the re-run accepts the cache and completes it
    with h5py.File(full / "cache.h5", "r+") as f:
        done = f["done"][()]
        done[::2] = False
        f["done"][...] = done
    RunDir(full).invalidate("cache.h5", persist=True)
    again = run_extract(cfg, full, progress=False)
    assert again.n_computed > 0
    assert _rows(full / "cache.h5") == rows
    results = assemble_results(full)
    validate_results(results)
    shots = results["benchmark"]["few_shot"]
    assert shots["k"] == 2 and shots["seed"] == cfg.benchmark.seed
    assert {(t, c): tuple(ids) for t, m in shots["examples"].items() for c, ids in m.items()} == {
        (tier, case): next(iter(v)) for (case, tier), v in by_case.items()
    }
    assert results["model"]["prompt_framing"]["few_shot"] == 2


def test_gate_marks_a_tier_below_the_threshold_in_results_table_and_sweep(tmp_path, tiny_model_dir):
    cfg = _cfg(tmp_path, tiny_model_dir, "g", benchmark={"few_shot": 0}, scoring={"min_option_mass": 1.0})
    out = tmp_path / "gate"
    run_extract(cfg, out, progress=False)
    results = assemble_results(out)
    validate_results(results)
    medians = {}
    for tier, t in results["tiers"].items():
        medians[tier] = t["option_mass"]["median"]
        assert medians[tier] < 1.0  # a random model puts mass elsewhere too
        assert t["decision"] is False
        assert t["decision_gate"] == {"median_option_mass": medians[tier], "min_option_mass": 1.0}
    text = summary_table(results["tiers"])
    head, *lines = text.splitlines()
    assert head.split()[-1] == "decision"
    for tier, m in medians.items():
        row = next(line for line in lines if line.split()[0] == tier)
        assert row.rstrip().endswith(f"NO ({m:.3f})")
        assert any(line.startswith(f"{tier}: no decision: median option mass {m:.3f} < 1") for line in lines)

    class Item:
        model, precision, adapter = "tiny", "float32", None

    assert [r["decision"] for r in result_rows(Item, results)] == [0] * len(medians)
    from latent_bias_probe.report.html import render_report

    page = render_report(results)
    scores = page[page.index('id="scores"'):]
    tier = next(iter(medians))
    assert f"NO ({medians[tier]:.3f})" in scores[: scores.index("Warnings") if "Warnings" in scores else None]


def _predictions(mass: float) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    rows = []
    for c in range(8):
        for v in [BASE, "White-Female", "Black-Female", "White-Male", "Black-Male"]:
            race, gender = (BASE, BASE) if v == BASE else v.split("-")
            rows.append({"case_id": f"c{c}", "tier": "high", "variant": v, "race": race, "gender": gender,
                         "label": c % 2, "p_yes": float(rng.uniform()), "option_mass": mass})
    return pd.DataFrame(rows)


@pytest.mark.parametrize("mass, floor, passed", [(0.2, 0.5, False), (0.8, 0.5, True), (0.5, 0.5, True), (0.2, 0.1, True)])
def test_gate_compares_the_median_with_min_option_mass(mass, floor, passed):
    tier = score_table(_predictions(mass), n_boot=0, min_option_mass=floor)["high"]
    assert tier["decision"] is passed
    assert tier["decision_gate"] == {"median_option_mass": pytest.approx(mass), "min_option_mass": floor}
    row = summary_table({"high": tier}).splitlines()[1]
    assert row.rstrip().endswith("yes" if passed else f"NO ({mass:.3f})")


def test_plan_counts_the_examples_tokens(tmp_path, tiny_model_dir):
    from latent_bias_probe.pipeline.plan import format_plan, make_plan

    plans = {}
    for k in (0, 2):
        cfg = load_config(write_config(tmp_path / f"p{k}.yaml", tiny_model_dir, benchmark={"n_cases": 4, "tiers": ["low"], "few_shot": k}))
        plans[k] = make_plan(cfg, warmup=0)
    assert plans[0].few_shot_tokens_by_tier == {}
    shots = plans[2].few_shot_tokens_by_tier["low"]
    assert shots > 0 and plans[2].tokens_by_tier["low"] - shots == plans[0].tokens_by_tier["low"]
    assert f"({shots:,} of them in the 2 few-shot examples)" in "\n".join(format_plan(plans[2]))
