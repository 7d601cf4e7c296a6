"""The batch-invariance check: sampling, planted batch dependence, the files it writes."""

from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pytest

from latent_bias_probe.extract.batch_check import CHECK_NAME, TOLERANCE, BatchCheck, check_batch_invariance, sample_indices


class StubRunner:
    """P(Yes) of text ``"t{i}"`` alone is ``alone[i]``; token length is ``lengths[i]``."""

    def __init__(self, alone, lengths):
        self.alone, self.lengths, self.calls = list(alone), list(lengths), []

    def token_lengths(self, texts):
        return np.array([self.lengths[int(t[1:])] for t in texts])

    def forward(self, texts):
        assert len(texts) == 1, "the check runs every prompt alone"
        self.calls.append(texts[0])
        return SimpleNamespace(p_yes=np.array([self.alone[int(texts[0][1:])]]))


def test_sample_spreads_over_the_length_order():
    lengths = [5, 50, 10, 40, 20, 30]  # longest first: 1, 3, 5, 4, 2, 0
    assert sample_indices(lengths, 3).tolist() == [0, 1, 5]  # positions 0, 2.5→2, 5 of that order
    assert sample_indices(lengths, 2).tolist() == [0, 1]  # the longest and the shortest
    assert sample_indices(lengths, 10).tolist() == [0, 1, 2, 3, 4, 5]  # all when n >= N
    assert sample_indices([7, 7, 7, 7], 2).tolist() == [0, 3]  # ties keep input order


def test_planted_batch_dependence_is_measured_exactly():
    n = 8
    alone = np.linspace(0.3, 0.7, n)
    batched = alone.copy()
    batched[[0, 7]] += [0.02, -0.04]  # two prompts came out differently in their batches
    runner = StubRunner(alone, lengths=range(n))
    texts = [f"t{i}" for i in range(n)]
    check = check_batch_invariance(runner, texts, batched, batch_size=4, n=n)
    assert check.indices == list(range(n)) and sorted(runner.calls) == sorted(texts)
    assert check.max_abs_diff == pytest.approx(0.04)
    assert check.mean_abs_diff == pytest.approx(0.06 / n)
    assert not check.within_tolerance

    quiet = check_batch_invariance(StubRunner(alone, range(n)), texts, alone + 1e-7, batch_size=4, n=3)
    assert len(quiet.indices) == 3 and quiet.within_tolerance
    assert quiet.max_abs_diff == pytest.approx(1e-7, rel=1e-3)


def test_json_form_of_a_check():
    check = BatchCheck(batch_size=8, indices=[1, 5], max_abs_diff=0.11, mean_abs_diff=0.03)
    assert check.to_dict() == {
        "batch_size": 8, "indices": [1, 5], "max_abs_diff": 0.11, "mean_abs_diff": 0.03,
        "n_prompts": 2, "tolerance": TOLERANCE,
    }
    assert CHECK_NAME == "batch_check.json"


def test_real_run_records_the_check_in_results(tmp_path, tiny_config):
    from conftest import run_probe

    out = tmp_path / "run"
    res = run_probe("run", str(tiny_config), "--out", str(out), "--no-fit", "--no-report", "--no-progress")
    assert res.returncode == 0, res.stderr
    check = json.loads((out / CHECK_NAME).read_text())
    results = json.loads((out / "results.json").read_text())
    assert results["batch_invariance"] == check
    assert check["batch_size"] == 4 and check["n_prompts"] == 24  # the tiny config batches 4
    assert check["max_abs_diff"] < TOLERANCE  # float32: batching changes P(Yes) only by round-off
    assert max(check["indices"]) < 4 * 2 * 13  # rows of the cache (4 cases x 2 tiers x 13)

    again = run_probe("run", str(tiny_config), "--out", str(out), "--no-fit", "--no-report", "--no-progress",
                      "--set", "extract.batch_size=1")
    assert again.returncode == 0, again.stderr
    assert not (out / CHECK_NAME).exists()  # every prompt ran alone: nothing to compare
    assert json.loads((out / "results.json").read_text())["batch_invariance"] is None


def test_noise_above_tolerance_reads_the_json_form():
    from latent_bias_probe.extract.batch_check import noise_above_tolerance

    assert noise_above_tolerance({"max_abs_diff": 0.11, "tolerance": 1e-4})
    assert noise_above_tolerance({"max_abs_diff": 2e-4})  # the default tolerance
    assert not noise_above_tolerance({"max_abs_diff": 5e-6, "tolerance": 1e-4})
    assert not noise_above_tolerance({"max_abs_diff": 0.5, "tolerance": 1.0})
    for bad in (None, {}, {"max_abs_diff": None}, {"max_abs_diff": "x"}, {"max_abs_diff": float("nan")}, [0.1]):
        assert not noise_above_tolerance(bad)
