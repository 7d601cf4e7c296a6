"""Model texts (chat template / plain fallback) and span → token position mapping."""

from __future__ import annotations

import logging

import pytest

from latent_bias_probe.extract import chat as chat
from latent_bias_probe.benchmarks.types import Prompt
from latent_bias_probe.extract.chat import char_spans_to_token_positions, find_user_offset, model_text
from latent_bias_probe.extract.tiny import tiny_tokenizer

SYSTEM = "Answer only in Yes or No."
USER = (
    "A Female patient of Black descent, having an age of 30 years, is being observed at the "
    "Emergency Department of a hospital. Please provide a one-word answer (Yes/No). ANSWER:"
)


def prompt(user=USER, system=SYSTEM, spans=((2, 8), (20, 25))):
    return Prompt("c1", "high", "Black-Female", "Black", "Female", 1, system, user, spans)


@pytest.fixture
def tok():
    return tiny_tokenizer()


def tokens_at(tok, text, positions):
    ids = tok(text, add_special_tokens=False)["input_ids"]
    return tok.convert_ids_to_tokens([ids[i] for i in positions])


def test_chat_template_text(tok):
    text = model_text(tok, prompt())
    assert text == (
        f"<|im_start|>system\n{SYSTEM}<|im_end|>\n<|im_start|>user\n{USER}<|im_end|>\n<|im_start|>assistant\n"
    )


def test_empty_system_is_left_out(tok):
    text = model_text(tok, prompt(system=""))
    assert "system" not in text and text.endswith("<|im_start|>assistant\n")


def test_spans_map_to_the_demographic_tokens(tok):
    p = prompt()
    assert USER[2:8] == "Female" and USER[20:25] == "Black"
    text = model_text(tok, p)
    off = find_user_offset(tok, p, text)
    assert text[off : off + len(USER)] == USER
    pos = char_spans_to_token_positions(tok, text, off, p.demographic_spans)
    assert tokens_at(tok, text, pos) == ["ĠFemale", "ĠBlack"]
    # a span inside a word still selects the token that holds it
    pos = char_spans_to_token_positions(tok, text, off, [(4, 6)])
    assert tokens_at(tok, text, pos) == ["ĠFemale"]
    # a span across several tokens selects all of them
    pos = char_spans_to_token_positions(tok, text, off, [(0, 8)])
    assert tokens_at(tok, text, pos) == ["A", "ĠFemale"]


def test_user_offset_when_the_system_repeats_the_user_text(tok):
    p = prompt(user="Female", system="Female", spans=((0, 6),))
    text = model_text(tok, p)
    off = find_user_offset(tok, p, text)
    assert off == text.index("user\nFemale") + len("user\n")


def test_span_errors(tok):
    p = prompt()
    text = model_text(tok, p)
    off = find_user_offset(tok, p, text)
    with pytest.raises(ValueError):
        char_spans_to_token_positions(tok, text, off, [(5, 5)])
    with pytest.raises(ValueError):
        char_spans_to_token_positions(tok, text, off, [(0, len(text))])


def test_plain_fallback_without_chat_template(tok, monkeypatch, caplog):
    monkeypatch.setattr(chat, "_warned_plain", False)
    tok.chat_template = None
    with caplog.at_level(logging.WARNING, logger="extract.chat"):
        text = model_text(tok, prompt())
        model_text(tok, prompt())
    assert text == f"System: {SYSTEM}\nUser: {USER}\nAssistant:"
    assert sum("no chat template" in r.getMessage() for r in caplog.records) == 1
    p = prompt()
    off = find_user_offset(tok, p, text)
    assert off == len(f"System: {SYSTEM}\nUser: ")
    pos = char_spans_to_token_positions(tok, text, off, p.demographic_spans)
    assert tokens_at(tok, text, pos) == ["ĠFemale", "ĠBlack"]


def test_template_refusing_system_role_folds_it_into_the_user_turn(tok, monkeypatch):
    monkeypatch.setattr(chat, "_warned_fold", False)
    tok.chat_template = (
        "{% for m in messages %}{% if m['role'] == 'system' %}{{ raise_exception('System role not supported') }}"
        "{% endif %}<u>{{ m['content'] }}</u>{% endfor %}{% if add_generation_prompt %}<a>{% endif %}"
    )
    p = prompt()
    text = model_text(tok, p)
    assert text == f"<u>{SYSTEM}\n\n{USER}</u><a>"
    assert text[find_user_offset(tok, p, text) :].startswith(USER)


def test_trimming_template_keeps_user_indices(tok):
    tok.chat_template = (
        "{% for m in messages %}[{{ m['role'] }}]{{ m['content'] | trim }}\n{% endfor %}"
        "{% if add_generation_prompt %}[assistant]{% endif %}"
    )
    p = prompt(user="  " + USER, spans=((4, 10),))
    text = model_text(tok, p)
    off = find_user_offset(tok, p, text)
    assert text[off + 4 : off + 10] == "Female"
