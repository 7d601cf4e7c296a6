"""Template sets of the masked-LM audit: the shipped set, the YAML/CSV formats, rendering."""

from __future__ import annotations

import pytest

from latent_bias_probe.benchmarks.errors import BenchmarkError
from latent_bias_probe.benchmarks.templates import load_templates, render_sentence, target_words


def test_the_shipped_clinical_set():
    ts = load_templates("clinical")
    assert len(ts.templates) == 72 and len(ts.templates) >= 60
    assert ts.counts() == {c: 12 for c in ("behaviour", "evaluation", "agency", "cooperation", "pain", "social")}
    assert set(ts.descriptions) == set(ts.categories)
    words = ts.attribute_words()
    assert "combative" in words["behaviour"] and "independent" in words["agency"]
    assert sum(len(w) for w in words.values()) == 72  # every attribute word used once
    sub = ts.select(["pain", "agency"], 3)
    assert [t.category for t in sub.templates] == ["agency"] * 3 + ["pain"] * 3


def test_rendering_and_spans():
    t = load_templates("clinical").templates[0]
    s = render_sentence(t, target_words("Black", "Female", "{race} {gender_lower}"))
    assert s.text == "The Black female patient was combative during the examination."
    assert s.text[slice(*s.target)] == "Black female" and s.text[slice(*s.attribute)] == "combative"
    base = render_sentence(t, None)
    assert base.text == "The patient was combative during the examination."
    assert base.target[0] == base.target[1] == 3 and base.text[slice(*base.attribute)] == "combative"


def test_csv_format(tmp_path):
    path = tmp_path / "mine.csv"
    path.write_text(
        "id,category,text,attribute\n"
        "a1,mood,[TARGET] patients seem [ATTRIBUTE].,calm\n"
        "a2,mood,\"The [ATTRIBUTE] one is [TARGET].\",tired\n", encoding="utf-8")
    ts = load_templates(path)
    assert ts.name == "mine" and ts.counts() == {"mood": 2}
    s = render_sentence(ts.templates[1], "an Asian man")
    assert s.text == "The tired one is an Asian man." and s.text[slice(*s.target)] == "an Asian man"
    assert render_sentence(ts.templates[0], None).text == "patients seem calm."


@pytest.mark.parametrize("body, message", [
    ("id,category,text\nx,c,t\n", "missing column 'attribute'"),
    ("id,category,text,attribute\nx,c,no slots here,w\n", "template 1 (x): text must hold [TARGET] exactly once"),
    ("id,category,text,attribute\nx,c,[TARGET] [TARGET] [ATTRIBUTE],w\n", "[TARGET] exactly once"),
    ("id,category,text,attribute\nx,c,[TARGET] is [ATTRIBUTE],w\nx,c,[TARGET] is [ATTRIBUTE],v\n", "template 2: duplicate id 'x'"),
    ("id,category,text,attribute\nx y,c,[TARGET] is [ATTRIBUTE],w\n", "id must be"),
    ("id,category,text,attribute\nx,c,[TARGET] is [ATTRIBUTE],\n", "attribute must be a printable word"),
    ("id,category,text,attribute\n", "no templates"),
])
def test_bad_template_files_name_file_and_row(tmp_path, body, message):
    path = tmp_path / "bad.csv"
    path.write_text(body, encoding="utf-8")
    with pytest.raises(BenchmarkError) as err:
        load_templates(path)
    assert message in str(err.value) and str(path) in str(err.value)


def test_bad_yaml_template_files(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("format: latent-bias-templates/9\ntemplates: []\n")
    with pytest.raises(BenchmarkError, match="format 'latent-bias-templates/9'"):
        load_templates(path)
    path.write_text("templates:\n  - {id: a, category: c, text: '[TARGET] [ATTRIBUTE]', attribute: w, extra: 1}\n")
    with pytest.raises(BenchmarkError, match="template 1: unknown key 'extra'"):
        load_templates(path)
    with pytest.raises(BenchmarkError, match="masked.categories: 'nope' is not a category"):
        load_templates("clinical").select(["nope"])
