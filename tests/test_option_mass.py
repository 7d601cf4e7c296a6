"""Answer validity: the option mass (next-token probability on Yes ∪ No) in the
runners of every backend, in the cache (format 2; format 1 still read and merged),
in predictions.csv, and its summary (``mfarm.option_mass``)."""

from __future__ import annotations

import logging
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import pytest
import torch

from latent_bias_probe.extract.backends import BACKENDS, make_runner
from latent_bias_probe.extract.cache import FORMAT, FORMAT_V1, Cache, CacheMismatch, CacheSpec, CacheWriter, merge_caches
from latent_bias_probe.extract.chat import model_text
from latent_bias_probe.extract.scoring import p_yes_from_logits, score_logits, yes_no_ids
from latent_bias_probe.extract.tiny import tiny_llama
from latent_bias_probe.mfarm.option_mass import option_mass_summary

USERS = [
    "A patient of age 45 years is being observed. Chief complaint: fever.",
    "A Female patient of Black descent, having an age of 30 years, is being observed at the Emergency "
    "Department. Chief complaint: chest pain, shortness of breath. Vitals: heart rate 88.",
    "A Male patient of White decent. Answer 'Yes'.",
    "An Intersex patient of Asian descent, having an age of 71 years. Diagnoses: sepsis, pneumonia, fracture.",
]


class _Prompt:
    system = "Answer only in Yes or No."

    def __init__(self, user: str):
        self.user = user


@pytest.fixture(scope="module")
def reference():
    return tiny_llama(seed=0)  # never wrapped by a backend


@pytest.fixture(scope="module")
def texts(reference):
    return [model_text(reference.tokenizer, _Prompt(u)) for u in USERS]


@pytest.fixture(scope="module")
def outputs(texts):
    # each backend its own copy of the same model: TransformerLens and nnsight wrap it in place
    return {b: make_runner(b, tiny_llama(seed=0)).forward(texts, capture=True) for b in BACKENDS}


# ------------------------------------------------------------------- scoring


def test_score_logits_by_hand():
    logits = torch.tensor([[2.0, 1.0, 0.5, -1.0, 3.0], [0.0, 0.0, 0.0, 0.0, 0.0], [50.0, -40.0, 49.0, 0.0, -80.0]])
    p, pv, mass, first = score_logits(logits, [0, 1], [2])
    soft = torch.softmax(logits.double(), dim=1)
    want_mass = soft[:, [0, 1, 2]].sum(1)
    np.testing.assert_allclose(mass.numpy(), want_mass.numpy(), rtol=1e-6)
    assert mass.dtype == torch.float32 and (mass <= 1).all()
    p3, pv3, first3 = p_yes_from_logits(logits, [0, 1], [2])  # the historical three, unchanged
    torch.testing.assert_close(p, p3, rtol=0, atol=0)
    torch.testing.assert_close(pv, pv3, rtol=0, atol=0)
    torch.testing.assert_close(first, first3, rtol=0, atol=0)
    np.testing.assert_allclose((pv / mass).numpy(), p.numpy(), rtol=1e-5)  # p_yes = Yes part / option mass


def test_score_logits_half_precision_and_saturation():
    logits = torch.tensor([[30.0, 29.0, -30.0, -30.0]], dtype=torch.bfloat16)
    _, _, mass, _ = score_logits(logits, [0], [1])
    assert mass.dtype == torch.float32 and 0.999 < float(mass[0]) <= 1.0


def test_option_mass_equals_softmax_sum_by_hand(reference, texts, outputs):
    """The runner's option mass = Σ softmax over Yes ∪ No of the model's own logits (each text alone)."""
    yes, no = yes_no_ids(reference.tokenizer)
    ids = yes + no
    want = []
    for text in texts:
        enc = reference.tokenizer(text, return_tensors="pt", add_special_tokens=False)
        with torch.no_grad():
            logits = reference.model(**enc, use_cache=False).logits[0, -1].double()
        want.append(float(torch.softmax(logits, dim=0)[ids].sum()))
    out = outputs["hf"]
    assert out.option_mass.dtype == np.float64 and out.option_mass.shape == (len(texts),)
    np.testing.assert_allclose(out.option_mass, want, rtol=0, atol=1e-5)
    assert ((out.option_mass >= out.p_yes_vocab) & (out.option_mass <= 1)).all()


def test_backends_agree_on_option_mass(outputs):
    hf = outputs["hf"].option_mass
    for backend in BACKENDS:
        np.testing.assert_allclose(outputs[backend].option_mass, hf, rtol=0, atol=1e-5, err_msg=backend)


# ------------------------------------------------------------------- cache


def _spec(**kw) -> CacheSpec:
    base = dict(model="m", model_sha256="a" * 64, dtype="float32", backend="hf", config_sha256="c" * 64,
                toolkit_version="0.1.0", n_layers=2, d_model=4)
    base.update(kw)
    return CacheSpec(**base)


def _table(rows) -> pd.DataFrame:
    rows = list(rows)
    return pd.DataFrame({
        "case_id": [f"case-{i // 2}" for i in rows], "tier": ["high"] * len(rows),
        "variant": ["BASE" if i % 2 == 0 else "Black-Male" for i in rows],
        "race": ["BASE" if i % 2 == 0 else "Black" for i in rows],
        "gender": ["BASE" if i % 2 == 0 else "Male" for i in rows],
        "label": [1] * len(rows), "text": [f"prompt {i}" for i in rows], "prompt_index": rows,
    })


def _write(path: Path, rows, option_mass=True) -> Path:
    rows = np.asarray(list(rows))
    spec = _spec()
    with CacheWriter.create_or_resume(path, spec, _table(rows)) as w:
        idx = np.arange(len(rows))
        w.write_batch(
            idx, p_yes=rows / 10, p_yes_vocab=rows / 20, first_token=["Yes"] * len(rows), n_tokens=rows + 3,
            acts={("resid_post", "last"): np.ones((2, len(rows), 4))},
            **({"option_mass": 0.5 + rows / 100} if option_mass else {}),
        )
    return path


def _to_v1(path: Path) -> Path:
    """A format 1 cache: a format 2 one without outputs/option_mass."""
    with h5py.File(path, "r+") as f:
        del f["outputs/option_mass"]
        f.attrs["format"] = FORMAT_V1
    return path


def test_cache_stores_option_mass(tmp_path):
    path = _write(tmp_path / "cache.h5", range(6))
    with Cache(path) as c:
        assert c.attrs["format"] == FORMAT == "latent-bias-cache/2" and c.format_version == 2
        assert c.has_option_mass
        np.testing.assert_array_equal(c.option_mass, (0.5 + np.arange(6) / 100).astype(np.float32))
        np.testing.assert_array_equal(c.outputs["option_mass"], c.option_mass)
    # not given: NaN (unknown)
    path = _write(tmp_path / "none.h5", range(4), option_mass=False)
    with Cache(path) as c:
        assert c.has_option_mass and np.isnan(c.option_mass).all()


def test_v1_cache_is_read(tmp_path):
    path = _to_v1(_write(tmp_path / "cache.h5", range(6)))
    with Cache(path) as c:
        assert c.format_version == 1 and not c.has_option_mass
        out = c.outputs
        assert list(out.columns) == ["p_yes", "p_yes_vocab", "first_token", "option_mass"]
        assert out["option_mass"].dtype == np.float32 and out["option_mass"].isna().all()
        np.testing.assert_allclose(out["p_yes"], np.arange(6) / 10, rtol=1e-6)
        assert c.done.all() and c.layer("resid_post", "last", 1).shape == (6, 4)
        c.fingerprint()


def test_v1_cache_is_not_resumed(tmp_path):
    path = _to_v1(_write(tmp_path / "cache.h5", range(6)))
    with pytest.raises(CacheMismatch, match=r"older format 'latent-bias-cache/1'.*--overwrite"):
        CacheWriter.create_or_resume(path, _spec(), _table(range(6)))
    with CacheWriter.create_or_resume(path, _spec(), _table(range(6)), overwrite=True) as w:
        assert not w.resumed and len(w.todo()) == 6
    with Cache(path) as c:
        assert c.format_version == 2


def test_merge_v2_and_mixed(tmp_path, caplog):
    a = _write(tmp_path / "a.h5", [0, 1, 4, 5])
    b = _write(tmp_path / "b.h5", [2, 3])
    out = merge_caches([b, a], tmp_path / "merged.h5")
    with Cache(out) as c:
        assert c.format_version == 2
        np.testing.assert_array_equal(c.prompt_index, np.arange(6))
        np.testing.assert_allclose(c.option_mass, 0.5 + np.arange(6) / 100, rtol=1e-6)
    _to_v1(b)
    with caplog.at_level(logging.WARNING, logger="extract.cache"):
        out = merge_caches([a, b], tmp_path / "mixed.h5")
    assert "option_mass NaN" in caplog.text and str(b) in caplog.text
    with Cache(out) as c:
        assert c.format_version == 2 and c.has_option_mass
        m = c.option_mass
        assert np.isnan(m[[2, 3]]).all()
        np.testing.assert_allclose(m[[0, 1, 4, 5]], 0.5 + np.array([0, 1, 4, 5]) / 100, rtol=1e-6)


# ------------------------------------------------------------------- predictions.csv


def test_score_accepts_csv_without_option_mass(tmp_path):
    from latent_bias_probe.pipeline.extract import PREDICTION_COLUMNS
    from latent_bias_probe.pipeline.score import read_predictions

    assert PREDICTION_COLUMNS[-2:] == ["first_token", "option_mass"]
    assert PREDICTION_COLUMNS[:9] == ["case_id", "tier", "variant", "race", "gender", "label", "p_yes",
                                      "p_yes_vocab", "first_token"]
    rng = np.random.default_rng(0)
    rows = []
    for case in range(6):
        for race, gender in (("BASE", "BASE"), ("Black", "Male"), ("White", "Female")):
            variant = "BASE" if race == "BASE" else f"{race}-{gender}"
            rows.append(dict(case_id=f"c{case}", tier="high", variant=variant, race=race, gender=gender,
                             label=case % 2, p_yes=rng.random(), p_yes_vocab=0.1, first_token="Yes"))
    old = tmp_path / "old.csv"
    pd.DataFrame(rows).to_csv(old, index=False)
    df = read_predictions(old)
    assert len(df) == 18 and "option_mass" not in df.columns
    new = tmp_path / "new.csv"
    pd.DataFrame(rows).assign(option_mass="").to_csv(new, index=False)  # empty: a format 1 cache's
    df = read_predictions(new)
    assert option_mass_summary(df.case_id, df.variant, df.option_mass) is None


# ------------------------------------------------------------------- summary


def _long(M: np.ndarray, variants: list[str]):
    cases = [f"c{i:02d}" for i in range(M.shape[0]) for _ in variants]
    names = [v for _ in range(M.shape[0]) for v in variants]
    return cases, names, M.reshape(-1)


VARIANTS = ["BASE", "Black-Female", "Black-Male", "White-Female", "White-Male"]


def test_summary_normal_case_has_no_warning():
    rng = np.random.default_rng(1)
    M = np.clip(0.95 + 0.02 * rng.standard_normal((20, 5)), 0, 1)
    s = option_mass_summary(*_long(M, VARIANTS))
    assert set(s) == {"median", "by_variant", "min", "share_below", "warning"}
    assert s["warning"] is None
    assert list(s["by_variant"]) == VARIANTS  # BASE first, then sorted
    assert s["median"] == pytest.approx(np.median(M)) and s["min"] == pytest.approx(M.min())
    assert s["share_below"] == 0.0
    assert all(isinstance(v, float) for v in s["by_variant"].values())


def test_summary_warns_on_low_mass():
    rng = np.random.default_rng(2)
    M = np.clip(0.2 + 0.05 * rng.standard_normal((20, 5)), 0, 1)
    s = option_mass_summary(*_long(M, VARIANTS))
    assert s["warning"] is not None and "below 0.5" in s["warning"]
    assert "not the model's decision" in s["warning"]
    assert s["share_below"] == 1.0
    assert option_mass_summary(*_long(M, VARIANTS), threshold=0.1)["warning"] is None


def test_summary_warns_on_group_difference():
    rng = np.random.default_rng(3)
    M = np.clip(0.9 + 0.03 * rng.standard_normal((20, 5)), 0, 1)
    M[:, 2] -= 0.3  # Black-Male: the model answers Yes/No less readily
    s = option_mass_summary(*_long(M, VARIANTS))
    assert s["median"] >= 0.5
    assert s["warning"] is not None and "differs between variants" in s["warning"]
    assert "Black-Male" in s["warning"] and "Friedman" in s["warning"] and "not the model's decision" in s["warning"]
    assert "below" not in s["warning"].split(":")[0]
    assert s["by_variant"]["Black-Male"] < s["by_variant"]["BASE"] - 0.2


def test_group_difference_needs_both_spread_and_significance():
    rng = np.random.default_rng(4)
    # significant but small: consistent shift of 0.05 < spread 0.1
    M = np.clip(0.9 + 0.005 * rng.standard_normal((30, 5)), 0, 1)
    M[:, 1] -= 0.05
    assert option_mass_summary(*_long(M, VARIANTS))["warning"] is None
    assert option_mass_summary(*_long(M, VARIANTS), spread=0.03)["warning"] is not None
    # large spread of the medians but not significant: three cases, ranks disagree
    M = np.array([[0.9, 0.6, 0.75], [0.6, 0.9, 0.75], [0.95, 0.65, 0.6]])
    s = option_mass_summary(*_long(M, VARIANTS[:3]))
    assert max(s["by_variant"].values()) - min(s["by_variant"].values()) > 0.1
    assert s["warning"] is None


def test_summary_low_and_group_together():
    M = np.full((12, 3), 0.3)
    M[:, 1] = 0.05 + 0.001 * np.arange(12)
    s = option_mass_summary(*_long(M, VARIANTS[:3]))
    assert "below" in s["warning"] and "differs between variants" in s["warning"]


def test_summary_missing_and_bad_input():
    cases, names, m = _long(np.full((4, 3), 0.9), VARIANTS[:3])
    m = m.copy()
    m[5] = np.nan
    assert option_mass_summary(cases, names, m) is None  # a format 1 cache: unknown
    assert option_mass_summary([], [], []) is None
    assert option_mass_summary(cases, names, ["0.9"] * len(cases))["median"] == pytest.approx(0.9)
    with pytest.raises(ValueError, match="differ in length"):
        option_mass_summary(cases, names[:-1], m)
    with pytest.raises(ValueError, match="probability"):
        option_mass_summary(cases, names, np.full(len(cases), 1.5))
    with pytest.raises(ValueError, match="threshold"):
        option_mass_summary(cases, names, np.full(len(cases), 0.5), threshold=0)
    # float32 round-off just above 1 is accepted and clipped
    s = option_mass_summary(cases, names, np.full(len(cases), 1.0000001, dtype=np.float32))
    assert s["median"] == 1.0 and s["warning"] is None
