"""`probe plan`'s explain estimate: passes and decoder blocks at the shipped explain defaults, counted by hand."""

from __future__ import annotations

from dataclasses import replace

import pytest

from latent_bias_probe.configs.schema import ComponentsConfig, Config, ExplainConfig
from latent_bias_probe.pipeline.plan import explain_cost, kept_fraction


def _cfg(**explain) -> Config:
    cfg = Config()
    benchmark = replace(cfg.benchmark, races=["White", "Black", "Hispanic", "Asian"], genders=["Female", "Male", "Intersex"])
    return replace(cfg, benchmark=benchmark, explain=ExplainConfig(**explain))


def test_passes_at_the_shipped_defaults():
    # 13 variants x 30 cases; 6 non-zero strengths x 13 directions on the 30 BASE prompts;
    # one fitting capture per prompt; 2 erasures at 9 layers (0, 4, ..., 28 and 22);
    # the trace: 17 pairs per case x 4 cases, 2 captures + 2 kinds x 30 layers each
    # components: attribution of 30 cases (12 forwards + 6 targets' backwards as 2 passes each);
    # verification on 8 cases (12 attention passes; 17 pairs x (source, target, 20 + 10 + 10 patched));
    # remedy: 30 BASE means + 390 prompts
    n, _ = explain_cost(_cfg(), 30, value_layer=22)
    assert n == 2340 + 390 + 7020 + 68 * 62 + 30 * 24 + 8 * (12 + 17 * 42) + 30 * 14
    n_off, _ = explain_cost(_cfg(components=ComponentsConfig(enabled=False)), 30, value_layer=22)
    assert n_off == 2340 + 390 + 7020 + 68 * 62


def test_full_reruns_run_every_block_and_kept_prefixes_save_the_mediations_prefix_pass():
    n_full, full = explain_cost(_cfg(reuse_prefix=False), 30, value_layer=22)
    assert full == 1.0
    _, kept = explain_cost(_cfg(), 30, value_layer=22, kept=1.0)
    _, rerun = explain_cost(_cfg(), 30, value_layer=22, kept=0.0)
    assert rerun - kept == pytest.approx(390 * 29 / (n_full * 30))  # one capture of blocks 0..28 per prompt
    _, kept_without = explain_cost(_cfg(components=ComponentsConfig(enabled=False)), 30, value_layer=22, kept=1.0)
    assert 1 / kept_without > 2.0  # the shipped defaults at the demo's value-axis layer (the component passes run whole)
    assert kept_without < kept < 1.0


def test_kept_fraction_is_the_memory_budget_over_the_prefix_bytes():
    # 390 prompts x 226 tokens x d 576 x 9 mediation layers (every 4th + 15) x 4 bytes = 1.83 GB
    total = 390 * 226 * 576 * 9 * 4
    assert kept_fraction(_cfg(), 30, 576, 226.0) == 1.0  # 4 GiB
    assert kept_fraction(_cfg(prefix_memory_gb=1.0), 30, 576, 226.0) == pytest.approx(2**30 / total)
    assert kept_fraction(_cfg(prefix_memory_gb=0.0), 30, 576, 226.0) == 0.0
