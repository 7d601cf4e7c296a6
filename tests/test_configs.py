"""The config schema: shipped configs validate; overrides and errors name the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from latent_bias_probe.configs.schema import ConfigError, load_config

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


@pytest.mark.parametrize("name", sorted(p.name for p in CONFIGS.glob("*.yaml") if "full" not in p.name))
def test_shipped_configs_validate(name):
    cfg = load_config(CONFIGS / name)
    assert cfg.name == name.removesuffix(".yaml")
    if cfg.benchmark.path:
        assert Path(cfg.benchmark.path).exists()


@pytest.mark.parametrize("name", ["mimic_ed_full.yaml", "mimic_opioid_full.yaml"])
def test_mimic_configs_need_a_data_dir(name, tmp_path):
    with pytest.raises(ConfigError, match="benchmark.data_dir"):
        load_config(CONFIGS / name)
    cfg = load_config(CONFIGS / name, [f"benchmark.data_dir={tmp_path}"])
    assert cfg.benchmark.source == "mimic" and cfg.benchmark.data_dir == str(tmp_path)


def test_overrides_by_dotted_path_and_identity_hash():
    base = load_config(CONFIGS / "ed_triage_demo.yaml")
    cfg = load_config(CONFIGS / "ed_triage_demo.yaml", ["extract.batch_size=3", "scoring.alpha=0.01", "benchmark.races=[White, Black]"])
    assert cfg.extract.batch_size == 3 and cfg.scoring.alpha == 0.01 and cfg.benchmark.races == ["White", "Black"]
    from latent_bias_probe.configs.hashes import run_config_sha256

    assert run_config_sha256(base) != run_config_sha256(cfg)
    assert run_config_sha256(base) == run_config_sha256(load_config(CONFIGS / "ed_triage_demo.yaml"))


def test_batch_size_does_not_change_cache_identity():
    from latent_bias_probe.configs.hashes import extraction_sha256 as cache_identity

    a = load_config(CONFIGS / "ed_triage_demo.yaml")
    b = load_config(CONFIGS / "ed_triage_demo.yaml", ["extract.batch_size=1"])
    c = load_config(CONFIGS / "ed_triage_demo.yaml", ["benchmark.seed=1"])
    assert cache_identity(a) == cache_identity(b) != cache_identity(c)


@pytest.mark.parametrize(
    "override, message",
    [
        ("model.name=3", "model.name: expected str"),
        ("benchmark.genders=[]", "benchmark.genders: must not be empty"),
        ("benchmark.races=[White, White]", "duplicate"),
        ("benchmark.races=[Non-Hispanic]", "invalid name"),
        ("scoring.alpha=1.5", "scoring.alpha"),
        ("extract.positions=[first]", "extract.positions"),
        ("sweep.precisions=[int4]", "sweep.precisions"),
        ("probes.n_folds=1", "probes.n_folds"),
    ],
)
def test_invalid_values_name_the_key(override, message):
    with pytest.raises(ConfigError, match=message):
        load_config(CONFIGS / "ed_triage_demo.yaml", [override])


def test_a_loaded_config_cannot_be_assigned_to():
    """Configs are frozen: a change is another object (dataclasses.replace), the loaded one stays as it is."""
    import dataclasses

    from latent_bias_probe.configs.hashes import extraction_sha256, run_config_sha256, section_sha256

    cfg = load_config(CONFIGS / "ed_triage_demo.yaml")
    for target, name in ((cfg, "name"), (cfg, "probes"), (cfg.probes, "seed"), (cfg.explain.components, "top_k"), (cfg.benchmark.mimic, "seed")):
        with pytest.raises(dataclasses.FrozenInstanceError):
            setattr(target, name, getattr(target, name))
    changed = dataclasses.replace(cfg, probes=dataclasses.replace(cfg.probes, seed=9))
    assert cfg.probes.seed == 0 and changed.probes.seed == 9
    assert section_sha256(changed, "probes") != section_sha256(cfg, "probes")
    assert section_sha256(changed, "scoring") == section_sha256(cfg, "scoring")
    assert extraction_sha256(changed) == extraction_sha256(cfg) and run_config_sha256(changed) != run_config_sha256(cfg)


def test_the_cache_identity_of_the_default_config_is_unchanged():
    """The extraction hash of the defaults, as caches made before record it (a change would refuse to resume them)."""
    from latent_bias_probe.configs.hashes import extraction_sha256
    from latent_bias_probe.configs.schema import Config

    assert extraction_sha256(Config()) == "74552d8321699276bb1f6da299d239962ed464c81cac7ecccea55a87a9633d5c"
