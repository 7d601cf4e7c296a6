"""Component attribution: a hand-wired circuit is found, verified and removed; estimates equal patching where patching is linear; backends agree; resume."""

from __future__ import annotations

from dataclasses import replace
from html import unescape

import numpy as np
import pandas as pd
import pytest
import torch

from latent_bias_probe.configs.schema import Config
from latent_bias_probe.extract.backends import make_runner
from latent_bias_probe.extract.components import capture_components
from latent_bias_probe.extract.tiny import tiny_llama
from latent_bias_probe.probes.attribution import agreement, is_verified, pool_shares, select_components
from latent_bias_probe.probes.causal import MemoryStore, position_kinds
from latent_bias_probe.probes.components import Features, attribute_case, component_tier
from latent_bias_probe.probes.trace import plan_pairs

RACES = ["White", "Black"]
GENDERS = ["Female", "Male"]
BIAS, RACE, FLAG, ANSWER = 0, 1, 2, 3  # residual coordinates of the wired circuit
LOW_FREQ = 7  # the head dimension RoPE rotates slowest (its partner is 7 + 8): q·k hardly depends on distance


def _table(n_cases: int = 4) -> pd.DataFrame:
    rows = []
    for age in [30, 45, 71, 88, 52, 19][:n_cases]:
        base = f"<|im_start|>user\nA patient, age {age}. Yes or No?<|im_end|>\n<|im_start|>assistant\n"
        rows.append({"case_id": f"c{age}", "variant": "BASE", "race": "", "gender": "", "text": base})
        for race in RACES:
            for gender in GENDERS:
                text = f"<|im_start|>user\nA {gender} patient of {race} descent, age {age}. Yes or No?<|im_end|>\n<|im_start|>assistant\n"
                rows.append({"case_id": f"c{age}", "variant": f"{race}-{gender}", "race": race, "gender": gender, "text": text})
    table = pd.DataFrame(rows)
    table["tier"], table["label"] = "low", np.int8(1)
    return table


def wired(mlp: bool = True, bias: float = 1.0, answer: float = 3.0, readout: float = 1.0, seed: int = 0):
    """A 3-block tiny Llama whose only writes are a hand-set circuit (every other o_proj and down_proj is zero).

    Embeddings carry a constant ``bias`` coordinate and, on the " Black" tokens, a race
    coordinate. Head 1.0 attends from every position to the race tokens (query reads the
    bias, key the race coordinate, in RoPE's slowest dimension) and copies the race
    coordinate into a flag. With ``mlp`` the MLP of block 2 reads the flag (SiLU gate) and
    writes ``-answer`` on the answer coordinate; without it head 1.0 writes the answer
    coordinate itself (a linear path to the logits). The output head reads only the answer
    coordinate (``readout`` on the Yes ids, ``-readout`` on the No ids).
    """
    loaded = tiny_llama(seed=seed, n_layers=3, d_model=64, n_heads=4, n_kv_heads=4)
    model, tok = loaded.model, loaded.tokenizer
    runner = make_runner("hf", loaded)
    black = tok(" Black", add_special_tokens=False)["input_ids"]
    d_head = 16
    with torch.no_grad():
        emb = model.get_input_embeddings().weight
        emb[:, :8] = 0.0
        emb[:, 8:] *= 0.2
        emb[:, BIAS] = bias
        emb[black, RACE] = 1.0
        for block in model.model.layers:
            block.self_attn.o_proj.weight.zero_()
            block.mlp.down_proj.weight.zero_()
        attn = model.model.layers[1].self_attn
        attn.q_proj.weight[LOW_FREQ].zero_()
        attn.q_proj.weight[LOW_FREQ, BIAS] = 3.0 / bias
        attn.k_proj.weight[LOW_FREQ].zero_()
        attn.k_proj.weight[LOW_FREQ, RACE] = 3.0
        attn.v_proj.weight[0].zero_()
        attn.v_proj.weight[0, RACE] = 1.0
        attn.o_proj.weight[FLAG if mlp else ANSWER, 0] = 1.0 if mlp else -answer / 10
        if mlp:
            m = model.model.layers[2].mlp
            m.gate_proj.weight[0].zero_()
            m.gate_proj.weight[0, FLAG] = 2.0
            m.up_proj.weight[0].zero_()
            m.up_proj.weight[0, BIAS] = 1.0
            m.down_proj.weight[ANSWER, 0] = -answer / 10
        head = model.get_output_embeddings().weight
        head.zero_()
        head[runner.yes_ids, ANSWER] = readout
        head[runner.no_ids, ANSWER] = -readout
    assert d_head * 4 == loaded.d_model
    return loaded


def _cfg(top_k=6, random=4, verify=4, bootstrap=200) -> Config:
    cfg = Config()
    co = replace(cfg.explain.components, top_k=top_k, random=random, verify_cases=verify, remedy_max=3)
    return replace(cfg, scoring=replace(cfg.scoring, bootstrap=bootstrap), extract=replace(cfg.extract, batch_size=8),
                   explain=replace(cfg.explain, components=co))


def _run(loaded, table, cfg, backend="hf", store=None):
    runner = make_runner(backend, loaded)
    return component_tier(runner, table, RACES, GENDERS, cfg, store if store is not None else MemoryStore())


def _p(loaded, table):
    return make_runner("hf", loaded).forward(table["text"].tolist()).p_yes


@pytest.fixture(scope="module")
def planted():
    loaded = wired(mlp=True)
    table = _table(4)
    return loaded, table, _run(loaded, table, _cfg())


def _key(c):
    return (c["layer"], c["kind"], c["head"], c["position"])


def test_the_wired_circuit_makes_a_race_gap_only(planted):
    loaded, table, _ = planted
    p = _p(loaded, table)
    black = table["race"].eq("Black").to_numpy()
    white = table["race"].eq("White").to_numpy()
    assert p[black].max() < 0.3 and np.abs(p[white] - 0.5).max() < 0.02  # the plant lowers P(Yes) for Black only
    assert np.abs(p[~black & ~white] - 0.5).max() < 0.02  # BASE


def test_the_top_verified_components_are_the_planted_mlp_and_head(planted):
    _, _, out = planted
    race = [c for c in out["components"] if c["attribute"] == "race" and c["pair"] == "all"]
    verified = sorted((c for c in race if c["verified"]), key=lambda c: -abs(c["patched_share"]))
    planted_keys = {(2, "mlp", None, "decision"), (1, "head", 0, "decision"), (1, "attn", None, "decision")}
    assert {_key(c) for c in verified} == planted_keys
    for c in verified:  # each link of the serial circuit carries the whole gap when patched alone
        assert 0.9 < c["patched_share"] < 1.1 and c["ci"][0] > 0
    top = sorted(race, key=lambda c: -abs(c["share"] or 0))[:3]
    assert {_key(c) for c in top} == planted_keys  # the estimate ranks them first
    others = [c for c in race if _key(c) not in planted_keys]
    assert max(abs(c["share"] or 0) for c in others) < 1e-6  # nothing else writes
    patched_others = [c for c in others if c["patched_share"] is not None]
    assert patched_others and max(abs(c["patched_share"]) for c in patched_others) < 1e-6
    # no gender gap: nothing to attribute or verify
    assert not any(c["verified"] for c in out["components"] if c["attribute"] == "gender")
    pairs = {c["pair"] for c in out["components"] if c["attribute"] == "race"}
    assert pairs == {"all", "Black-Female>White-Female", "Black-Male>White-Male"}


def test_the_planted_head_reads_the_race_word_at_the_decision(planted):
    _, _, out = planted
    heads = {(h["layer"], h["head"]): h for h in out["component_attention"]}
    assert set(heads) == {(1, 0)}
    h = heads[(1, 0)]
    # on the Black prompts (half the demographic prompts) it puts ~all its weight on " Black"
    assert 0.45 < h["attention_demographic"] < 0.65 and h["ci"][0] <= h["attention_demographic"] <= h["ci"][1]


def test_the_remedy_removes_most_of_the_planted_shift(planted):
    loaded, table, out = planted
    remedy = out["remedy"]
    assert remedy["method"] == "mean" and remedy["tier"] == "low" and len(remedy["components"]) == 3
    from latent_bias_probe.pipeline.explain import remedy_scores

    p = _p(loaded, table)
    diff = remedy_scores(table, p, np.asarray(remedy.pop("p_yes")), _cfg().scoring)
    for group in ("Black-Female", "Black-Male"):
        d = diff[f"shift:{group}"]
        assert d["before"] < -0.2 and abs(d["after"]) < 0.1 * abs(d["before"])  # most of the shift is gone
        assert d["ci"][0] > 0
    for group in ("White-Female", "White-Male"):
        assert abs(diff[f"shift:{group}"]["value"]) < 0.02
    assert diff["largest_shift"]["value"] < -0.2
    assert {"mfarm", "fab", "accuracy", "largest_shift", "base_p_yes"} <= set(diff)
    assert abs(diff["base_p_yes"]["value"]) < 0.01  # the plant does not act on BASE, nor does its removal


def test_erasing_the_groups_subspace_removes_the_planted_shift_and_leaves_base():
    loaded = wired(mlp=True)
    table = _table(4)
    cfg = _cfg()
    cfg = replace(cfg, explain=replace(cfg.explain, components=replace(cfg.explain.components, remedy_method="erase")))
    out = _run(loaded, table, cfg)
    remedy = out["remedy"]
    assert remedy["method"] == "erase" and len(remedy["components"]) == 3
    from latent_bias_probe.pipeline.explain import remedy_scores

    p = _p(loaded, table)
    diff = remedy_scores(table, p, np.asarray(remedy.pop("p_yes")), cfg.scoring)
    for group in ("Black-Female", "Black-Male"):
        d = diff[f"shift:{group}"]
        assert d["before"] < -0.2 and abs(d["after"]) < 0.1 * abs(d["before"]) and d["ci"][0] > 0
    for group in ("White-Female", "White-Male"):
        assert abs(diff[f"shift:{group}"]["after"]) < 0.02
    assert abs(diff["base_p_yes"]["value"]) < 0.01


def test_the_remedy_edits_only_verified_components_that_carry_the_gap():
    from latent_bias_probe.probes.components import remedy_choice

    def c(layer, share, verified=True, selected="top", pair="all", attribute="race"):
        return {"layer": layer, "kind": "mlp", "head": None, "position": "decision", "attribute": attribute, "pair": pair,
                "patched_share": share, "verified": verified, "selected": selected}

    comps = [
        c(1, 0.3), c(2, -0.9),  # a verified component that works against the gap is not removed
        c(3, 0.8, selected="random"),  # a random control is not a finding
        c(4, 0.5, verified=False), c(5, 0.9, pair="Black-Female>White-Female"),
        c(6, 0.6, selected="saturated"), c(1, 0.4, attribute="gender"),  # layer 1 once, at its larger share
        c(7, 0.1), c(8, 0.2),
    ]
    assert remedy_choice(comps, 3) == [(6, "mlp", None, "decision"), (1, "mlp", None, "decision"), (8, "mlp", None, "decision")]
    assert remedy_choice(comps, 10) == [(6, "mlp", None, "decision"), (1, "mlp", None, "decision"), (8, "mlp", None, "decision"),
                                        (7, "mlp", None, "decision")]
    assert remedy_choice([c(2, -0.9)], 5) == []


def test_patching_from_the_patched_block_up_equals_full_forwards(monkeypatch):
    from latent_bias_probe.extract.last_token import LastTokenRunner
    from latent_bias_probe.probes.components import patch_case

    last_runs = []
    run = LastTokenRunner.run
    monkeypatch.setattr(LastTokenRunner, "run", lambda self, state: last_runs.append(1) or run(self, state))

    table = _table(2)
    loaded = tiny_llama(seed=3, n_layers=3)
    runner = make_runner("hf", loaded)
    texts = table["text"].tolist()
    kinds = position_kinds(runner, texts, RACES, GENDERS)
    pairs = plan_pairs(table, RACES, GENDERS, ["c30", "c45"])
    feats = Features([0, 1, 2], 4)
    chosen = {a: [feats.index(layer, kind, head, pos) for layer in (0, 1, 2) for kind, head in (("head", 1), ("mlp", None))
                  for pos in ("demographic", "after", "decision")] for a in ("race", "gender")}
    full, part = [], []
    for case in ("c30", "c45"):  # a case at a time, as the explain stage patches
        mine = [q for q in pairs if q["case"] == case]
        full += list(patch_case(runner, texts, mine, kinds, feats, chosen, 3, reuse_prefix=False).values())
        part += list(patch_case(runner, texts, mine, kinds, feats, chosen, 3, reuse_prefix=True).values())
    assert len(full) == len(part) == 8
    a = np.array([v["patched"] for v in full])
    b = np.array([v["patched"] for v in part])
    assert np.abs(a - np.array([v["p_target"] for v in full])[:, None]).max() > 1e-3  # the patches do something
    assert np.abs(a - b).max() < 1e-5
    # decision-position patches ran the last token alone: 2 features x 2 attributes per batch, plus each batch's check
    assert len(last_runs) >= 2 * 2 * 2


def test_attribution_equals_activation_patching_where_patching_is_linear():
    """Head 1.0 writes the answer directly; a large bias coordinate fixes the final norm's scale and a
    small readout keeps P(Yes) near 0.5, so P(Yes) is linear in every patched component to ~1e-3."""
    loaded = wired(mlp=False, bias=30.0, answer=1.0, readout=0.3)
    table = _table(4)
    cfg = _cfg(top_k=4, random=6)
    out = _run(loaded, table, cfg)
    race = [c for c in out["components"] if c["attribute"] == "race" and c["pair"] != "all" and c["patched_share"] is not None]
    assert len(race) >= 2 * 10
    for c in race:
        assert abs(c["share"] - c["patched_share"]) < 0.02 * max(1.0, abs(c["share"])), c
    big = [c for c in race if abs(c["share"]) > 0.5]
    assert {_key(c) for c in big} == {(1, "head", 0, "decision"), (1, "attn", None, "decision")}
    assert out["component_agreement"]["by_attribute"]["race"]["top_k_overlap"] == 1.0


def _attr(backend, table):
    loaded = tiny_llama(seed=3, n_layers=3)  # a fresh model per backend: TransformerLens rewires it in place
    runner = make_runner(backend, loaded)
    texts = table["text"].tolist()
    kinds = position_kinds(runner, texts, RACES, GENDERS)
    cases = list(dict.fromkeys(table["case_id"]))
    pairs = plan_pairs(table, RACES, GENDERS, cases[:1])
    got = attribute_case(runner, texts, pairs, kinds, [0, 1, 2], 4, 4)
    return {k: np.asarray(v["attr"]) for k, v in got.items() if v["aligned"]}


def test_the_three_backends_agree_on_the_attributions():
    table = _table(1)
    ref = _attr("hf", table)
    assert len(ref) == 4 and all(np.abs(a).max() > 1e-4 for a in ref.values())
    for backend in ("nnsight", "transformer_lens"):
        got = _attr(backend, table)
        assert set(got) == set(ref)
        for k in ref:
            scale = np.abs(ref[k]).max()
            assert np.abs(got[k] - ref[k]).max() < 1e-4 * scale, (backend, k)


def test_capture_components_takes_no_parameter_gradients_and_restores_them():
    loaded = tiny_llama(seed=1, n_layers=2)
    runner = make_runner("hf", loaded)
    batch = capture_components(runner, ["A Female patient of Black descent. Yes or No?"], [0, 1], grad=True)
    assert all(p.grad is None and p.requires_grad for p in loaded.model.parameters())
    assert batch.grad_z[0].abs().sum() > 0 and batch.grad_mlp[1].abs().sum() > 0
    np.testing.assert_allclose(batch.p_yes, runner.forward(["A Female patient of Black descent. Yes or No?"]).p_yes, atol=1e-6)


class _Interrupting(MemoryStore):
    """A store that stops the run (KeyboardInterrupt) at its ``n``-th write."""

    def __init__(self, n):
        super().__init__()
        self.n, self.writes = n, 0

    def put(self, key, value):
        super().put(key, value)
        self.writes += 1
        if self.writes == self.n:
            raise KeyboardInterrupt


def test_an_interrupted_component_run_resumes_to_the_same_result():
    loaded = wired(mlp=True)
    table = _table(3)
    cfg = _cfg(top_k=3, random=2, verify=3, bootstrap=50)
    reference = _run(loaded, table, cfg)
    for stop in (2, 8):  # during the attribution; during the patching (then the remedy runs after the resume)
        store = _Interrupting(stop)
        with pytest.raises(KeyboardInterrupt):
            _run(loaded, table, cfg, store=store)
        store.n = -1
        assert _run(loaded, table, cfg, store=store) == reference, stop


def test_pooling_selection_and_verification_rules():
    items = [("a", 0.2, np.array([0.2, 0.0, -0.1])), ("b", -0.4, np.array([-0.4, 0.1, 0.0])), ("a", 0.2, np.array([0.2, 0.0, 0.0]))]
    got = pool_shares(items, 0, 0.95, 0)
    assert got["n_cases"] == 2 and np.allclose(got["share"], [1.0, -0.125, -0.125])
    top, control = select_components([0.1, None, -0.9, 0.3, 0.0], 2, 5, 0)
    assert top == [2, 3] and sorted(control) == [0, 4]
    assert is_verified(0.5, 0.4, 0.1, 0.7) and not is_verified(0.5, -0.4, -0.7, -0.1) and not is_verified(0.5, 0.4, -0.1, 0.7)
    agree = agreement([0.9, 0.5, 0.1, 0.0], [0.8, 0.6, 0.0, 0.05], 2)
    assert agree == {"spearman": pytest.approx(0.8), "top_k_overlap": 1.0, "k": 2}
    feats = Features([3, 5], 4)
    assert all(feats.index(*feats.unpack(f)) == f for f in range(len(feats)))


@pytest.mark.parametrize("override, message", [
    ("explain.components.top_k=0", "explain.components.top_k: must lie in 1..10000, got 0"),
    ("explain.components.saturation=1.5", "explain.components.saturation: must be a number in (0, 1], got 1.5"),
    ("explain.components.layers=[]", "explain.components.layers: must not be empty (null: every layer)"),
    ("explain.components.remedy_method=median", "explain.components.remedy_method"),
])
def test_bad_component_settings_fail_in_one_line(tmp_path, tiny_model_dir, override, message):
    from conftest import write_config
    from latent_bias_probe.configs.schema import ConfigError, load_config

    path = write_config(tmp_path / "c.yaml", tiny_model_dir)
    with pytest.raises(ConfigError) as err:
        load_config(path, [override])
    assert message in str(err.value) and "\n" not in str(err.value)


def test_the_report_draws_the_components_and_says_what_was_found():
    from latent_bias_probe.report.html import render_report
    from report_fixtures import synthetic_explain, synthetic_results

    explain = synthetic_explain()
    comps = []
    for layer in range(4):
        for kind in ("attn", "mlp"):
            for position in ("demographic", "after", "decision"):
                share = 0.8 if (layer, kind, position) == (2, "mlp", "decision") else 0.01
                comps.append({"layer": layer, "kind": kind, "head": None, "position": position, "attribute": "race", "pair": "all",
                              "share": share, "ci": [share - 0.1, share + 0.1], "patched_share": None, "verified": False})
    lead = comps[[c["layer"] == 2 and c["kind"] == "mlp" and c["position"] == "decision" for c in comps].index(True)]
    lead.update(patched_share=0.9, patched_ci=[0.7, 1.1], verified=True, selected="top")
    head = {"layer": 1, "kind": "head", "head": 3, "position": "decision", "attribute": "race", "pair": "all", "share": 0.5,
            "ci": [0.3, 0.7], "patched_share": 0.6, "patched_ci": [0.4, 0.8], "verified": True, "selected": "top"}
    explain["tiers"]["high"].update({
        "components": comps + [head], "component_layers": [0, 1, 2, 3], "component_heads": 4,
        "component_agreement": {"spearman": 0.81, "top_k_overlap": 0.75, "k": 20},
        "component_attention": [{"layer": 1, "head": 3, "attribute": "race", "attention_demographic": 0.62, "ci": [0.5, 0.7]}],
        "remedy": {"components": [{"layer": 2, "kind": "mlp", "head": None, "position": "decision"}], "method": "mean", "tier": "high",
                   "n_cases": 30, "diff": {"largest_shift": {"value": -0.051, "ci": [-0.06, -0.04], "before": 0.055, "after": 0.004},
                                           "shift:Black-Female": {"value": 0.051, "ci": [0.04, 0.06], "before": -0.055, "after": -0.004}}},
    })
    html = render_report(synthetic_results(), explain)
    section = html[html.index('<section id="explain">'): html.index('<section id="provenance">')]
    assert section.count("Components: race") == 3  # a heat map per position kind
    assert ("The largest verified component of the race gap is MLP 2 at the decision position, which carries 0.90 [0.70, 1.10] "
            "of it when patched alone (2 verified); estimates and activation patching agree with Spearman ρ 0.81") in section
    assert "ablating 1 of them on 30 cases moves the largest group shift by -0.051 [-0.060, -0.040]" in section
    assert "head 1.3 at the decision position" in section and "0.620" in section  # the heads' reading
    assert "shift:Black-Female" in section and "mean-ablating MLP 2 at the decision position" in section
    assert "BASE's P(Yes)" not in section  # no base_p_yes in this remedy: nothing said about it
    assert "mFARM by" not in section and "closer together" not in section  # neither an mFARM change nor a common shift given

    # the groups move together, away from BASE: the largest shift falls, every group's |shift| grows, mFARM falls
    diff = explain["tiers"]["high"]["remedy"]["diff"]
    diff["mfarm"] = {"value": -0.268, "ci": [-0.459, 0.047], "before": 0.812, "after": 0.544}
    diff["shift:White-Female"] = {"value": 0.02, "ci": [0.017, 0.023], "before": -0.0085, "after": 0.0116}
    section = unescape(render_report(synthetic_results(), explain))
    assert "moves the largest group shift by -0.051 [-0.060, -0.040] and mFARM by -0.268 [-0.459, 0.047]." in section
    assert "closer together" not in section  # the groups' mean |shift| fell (0.032 to 0.008): no common shift
    diff["shift:Black-Female"].update(before=-0.005, after=0.012)
    section = unescape(render_report(synthetic_results(), explain))
    assert ("moves the largest group shift by -0.051 [-0.060, -0.040] and mFARM by -0.268 [-0.459, 0.047]; it brings the "
            "groups closer together but moves them all away from BASE (mean |shift| 0.007 before, 0.012 after)") in section
    del diff["mfarm"], diff["shift:White-Female"]
    diff["shift:Black-Female"].update(before=-0.055, after=-0.004)

    remedy = explain["tiers"]["high"]["remedy"]
    remedy["method"] = "erase"
    remedy["diff"]["base_p_yes"] = {"value": -0.2, "ci": [-0.25, -0.15], "before": 0.7, "after": 0.5}
    html = render_report(synthetic_results(), explain)
    section = unescape(html[html.index('<section id="explain">'): html.index('<section id="provenance">')])
    assert ("erasing the race × gender subspace of 1 of them on 30 cases moves the largest group shift by -0.051 [-0.060, -0.040], but it "
            "also moves BASE's P(Yes) by -0.200 [-0.250, -0.150]: the edit changes the decision for every patient") in section


def _patched(backend, table):
    from latent_bias_probe.probes.components import base_means, patch_case, remedy_batch

    loaded = tiny_llama(seed=3, n_layers=3)
    runner = make_runner(backend, loaded)
    texts = table["text"].tolist()
    kinds = position_kinds(runner, texts, RACES, GENDERS)
    pairs = plan_pairs(table, RACES, GENDERS, ["c30"])
    feats = Features([0, 1, 2], 4)
    chosen = {"race": [feats.index(1, "head", 2, "decision"), feats.index(0, "mlp", None, "demographic"), feats.index(2, "attn", None, "after")]}
    effects = np.array([v["effect"] for v in patch_case(runner, texts, pairs, kinds, feats, chosen, 4).values()])
    means = base_means(runner, texts, kinds, [0], feats, chosen["race"], 4)
    return effects, np.array(remedy_batch(runner, texts, list(range(len(texts))), kinds, feats, means))


def test_the_three_backends_agree_on_patching_and_ablation():
    table = _table(1)
    effects, ablated = _patched("hf", table)
    assert np.abs(effects).max() > 1e-3 and np.abs(effects[:, 2]).max() < 1e-6  # nothing after the last layer's "after" positions
    for backend in ("nnsight", "transformer_lens"):
        e, a = _patched(backend, table)
        assert np.abs(e - effects).max() < 1e-5 and np.abs(a - ablated).max() < 1e-5, backend


def test_the_sentence_names_the_lead_component_of_each_attribute():
    from latent_bias_probe.report.html import component_sentence

    def comp(attribute, layer, kind, position, patched, selected="top"):
        return {"layer": layer, "kind": kind, "head": None, "position": position, "attribute": attribute, "pair": "all",
                "share": patched, "ci": [patched - 0.1, patched + 0.1], "patched_share": patched,
                "patched_ci": [patched - 0.05, patched + 0.05], "verified": True, "selected": selected}

    e = {"components": [comp("race", 29, "mlp", "decision", 0.72), comp("race", 26, "mlp", "decision", 0.59),
                        comp("gender", 0, "mlp", "demographic", 0.92), comp("race", 3, "mlp", "after", 2.0, selected="random")],
         "component_agreement": {"spearman": 0.99, "top_k_overlap": 0.95, "k": 20}}
    assert component_sentence(e) == (
        "The largest verified component of the gender gap is MLP 0 at the demographic words, which carries 0.92 [0.87, 0.97] "
        "of it when patched alone (1 verified); of the race gap, MLP 29 at the decision position, which carries 0.72 "
        "[0.67, 0.77] of it when patched alone (2 verified); estimates and activation patching agree with Spearman ρ 0.99 "
        "and top-20 overlap 95%.")  # a random control is never the lead, nor counted
