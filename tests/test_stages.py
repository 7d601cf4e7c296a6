"""The stage table: declared over the artifact registry, run in order, each stage given only its sections."""

from __future__ import annotations

import copy
import dataclasses
import json
from types import SimpleNamespace

import pytest

from conftest import write_config
from latent_bias_probe import pipeline
from latent_bias_probe.configs.errors import InputError
from latent_bias_probe.configs.schema import Config, ExplainConfig, load_config
from latent_bias_probe.configs.sections import ConfigSections, replace_sections
from latent_bias_probe.pipeline import stages
from latent_bias_probe.pipeline.artifacts import ARTIFACTS, RunDir
from latent_bias_probe.pipeline.stages import STAGE_TABLE, Stage, register_stage, stage_config, table_problems


def test_every_artifact_a_stage_names_is_declared_and_made_earlier():
    assert table_problems() == []
    made: set[str] = set()
    for stage in STAGE_TABLE.values():
        for name in stage.inputs + stage.optional + stage.outputs:
            assert name in ARTIFACTS, (stage.name, name)
        assert set(stage.inputs) <= made, f"{stage.name} reads {set(stage.inputs) - made} before any stage makes it"
        assert {a.path for a in ARTIFACTS.values() if a.producer == stage.name} == set(stage.outputs)
        made |= set(stage.outputs)
    assert made == set(ARTIFACTS)
    assert pipeline.STAGES == tuple(STAGE_TABLE) == ("extract", "score", "fit", "explain", "report")


def test_the_stage_that_reads_no_artifact_takes_the_config():
    starters = [s for s in STAGE_TABLE.values() if not s.inputs]
    assert [s.name for s in starters] == ["extract"] and starters[0].sections is None and starters[0].whole_config


def _noop(call):
    return None


def test_table_problems_names_what_is_wrong():
    table = {
        "late": Stage("late", inputs=("probes.h5",), outputs=(), sections=None, function=_noop),
        **STAGE_TABLE,
        "odd": Stage("odd", inputs=("notes.txt",), outputs=("results.json",), sections=("nonsense",), function=_noop),
    }
    problems = "\n".join(table_problems(table))
    assert "stage 'late': reads 'probes.h5', which no earlier stage makes" in problems
    assert "stage 'late': given the whole config, without saying why" in problems
    assert "stage 'odd': inputs names 'notes.txt', not a declared artifact" in problems
    assert "stage 'odd': outputs 'results.json', whose producer is 'score'" in problems
    assert "stage 'odd': sections names 'nonsense', not a config section" in problems
    short = {k: v for k, v in STAGE_TABLE.items() if k != "report"}
    assert table_problems(short) == ["artifact 'report.html': its producer 'report' is not a stage"]


def test_register_stage_refuses_a_stage_the_table_cannot_hold(monkeypatch):
    monkeypatch.setattr(stages, "STAGE_TABLE", dict(STAGE_TABLE))
    with pytest.raises(ValueError, match="already in the table"):
        register_stage(STAGE_TABLE["fit"])
    with pytest.raises(ValueError, match="reads 'results.json', which no earlier stage makes"):
        register_stage(Stage("early", inputs=("results.json",), outputs=(), sections=(), function=_noop), before="score")
    with pytest.raises(ValueError, match="no stage 'nope'"):
        register_stage(Stage("x", inputs=(), outputs=(), sections=(), function=_noop), before="nope")
    assert list(stages.STAGE_TABLE) == list(STAGE_TABLE)


def test_a_stage_is_given_only_the_sections_its_record_names():
    cfg = Config()
    for stage in STAGE_TABLE.values():
        given = stage_config(stage, cfg)
        if stage.sections is None:
            assert given is cfg
        else:
            assert isinstance(given, ConfigSections) and given.names == stage.sections
    fit = stage_config(STAGE_TABLE["fit"], cfg)
    assert fit.probes is cfg.probes and fit.scoring is cfg.scoring
    with pytest.raises(AttributeError, match="config section 'model' was not given to this stage"):
        fit.model
    with pytest.raises(dataclasses.FrozenInstanceError):
        fit.probes = None
    changed = replace_sections(fit, probes=dataclasses.replace(cfg.probes, seed=3))
    assert changed.probes.seed == 3 and fit.probes.seed == 0 and cfg.probes.seed == 0
    assert copy.deepcopy(fit) == fit and fit.to_dict() == {"probes": cfg.to_dict()["probes"], "scoring": cfg.to_dict()["scoring"]}


def test_run_stage_takes_the_stages_that_read_a_run_directory(tmp_path):
    with pytest.raises(InputError, match=r"run_stage takes score, fit, explain or report \(extract needs a config: use run\)"):
        pipeline.run_stage("extract", tmp_path)
    with pytest.raises(InputError, match="stages: unknown"):
        pipeline.run(Config(), tmp_path / "run", stages=("extract", "audit"))


def _recording(order: list[str], name: str, function):
    def wrapped(call):
        order.append(name)
        return function(call)
    return wrapped


def test_a_planted_stage_runs_in_table_order_with_its_sections(tmp_path, tiny_model_dir, monkeypatch):
    """A stage registered before ``report`` runs after ``score`` and before ``report``, given only ``scoring``."""
    order: list[str] = []
    monkeypatch.setattr(stages, "STAGE_TABLE", {  # restored after the test
        name: dataclasses.replace(stage, function=_recording(order, name, stage.function)) for name, stage in STAGE_TABLE.items()
    })
    seen = {}

    def audit(call):
        run = RunDir(call.run_dir)
        seen.update(results_fresh=run.is_fresh("results.json"), report=run.exists("report.html"), config=call.config)

    register_stage(Stage("audit", inputs=("results.json",), outputs=(), sections=("scoring",),
                         function=_recording(order, "audit", audit)), before="report")
    assert list(stages.STAGE_TABLE) == ["extract", "score", "fit", "explain", "audit", "report"]

    cfg = load_config(write_config(tmp_path / "c.yaml", tiny_model_dir, benchmark={"n_cases": 3, "tiers": ["low"]}))
    before = copy.deepcopy(cfg)
    results = pipeline.run(cfg, tmp_path / "run", stages=("report", "audit", "extract"), progress=False)
    assert order == ["extract", "score", "audit", "report"]  # table order; score always runs
    assert seen["results_fresh"] and not seen["report"]
    assert isinstance(seen["config"], ConfigSections) and seen["config"].names == ("scoring",)
    assert seen["config"].scoring == cfg.scoring
    assert results == json.loads((tmp_path / "run" / "results.json").read_text())
    assert cfg == before

    order.clear()
    pipeline.run(cfg, tmp_path / "run", stages=("report",), progress=False)  # a stage not asked for does not run
    assert order == ["score", "report"]
    assert "audit" not in STAGE_TABLE  # registered in the test's copy only


def test_run_explain_leaves_its_callers_config_as_it_was(tmp_path, monkeypatch):
    """``--layers``/``--alphas`` change a copy: the config handed in compares equal to a deep copy taken before."""
    from latent_bias_probe.extract import backends, model
    from latent_bias_probe.pipeline import explain

    class Planted(Exception):
        pass

    used = {}

    def key(run, cfg):
        used["cfg"] = cfg
        raise Planted

    monkeypatch.setattr(RunDir, "is_fresh", lambda self, name: True)
    monkeypatch.setattr(explain, "_read_fitted", lambda *a: {})
    monkeypatch.setattr(model, "load_model", lambda m: SimpleNamespace(n_layers=4))
    monkeypatch.setattr(backends, "make_runner", lambda backend, loaded: None)
    monkeypatch.setattr(explain, "_checkpoint_key", key)
    for cfg in (Config(explain=ExplainConfig(layers=[2], alphas=[-1.0, 1.0])),
                stage_config(STAGE_TABLE["explain"], Config(explain=ExplainConfig(layers=[2], alphas=[-1.0, 1.0])))):
        before = copy.deepcopy(cfg)
        with pytest.raises(Planted):
            explain.run_explain(tmp_path, layers=[0, 3], alphas=[-2.0, 0.0, 2.0], cfg=cfg, progress=False)
        assert cfg == before and cfg.explain.layers == [2] and cfg.explain.alphas == [-1.0, 1.0]
        assert used["cfg"].explain.layers == [0, 3] and used["cfg"].explain.alphas == [-2.0, 0.0, 2.0]
        assert type(used["cfg"]) is type(cfg)
