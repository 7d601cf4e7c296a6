"""The exact text a model sees for a prompt, and where the prompt's words land in it.

``model_text(tokenizer, prompt)`` renders ``[system, user]`` with the tokenizer's chat
template and the generation prompt (the assistant header), so the next token the
model predicts is its answer. Tokenizers without a chat template (or
``framing="plain"``, config ``model.framing``) get the plain format ::

    System: {system}
    User: {user}
    Answer:

whose last line is the answer cue (``model.answer_cue``, default ``Answer:``; a
warning is logged once per process when ``framing="auto"`` falls back to it).
``framing="chat"`` requires the template. The returned string is the complete model
input: it already holds any BOS token (from the template, or prepended in the plain
format when the tokenizer would add one), so it is tokenized with
``add_special_tokens=False`` (see :data:`ENCODE_KWARGS`).

Few-shot examples (``prompt.shots``, :mod:`benchmarks.few_shot`) come before the
prompt: with a chat template as earlier user/assistant turns, in the plain format as
blocks ``User: {example}\nAnswer: Yes`` separated by blank lines.

An empty or missing system message is left out. A template that refuses the system
role (e.g. Gemma's) gets the system text folded into the first user turn, separated
by a blank line.

``find_user_offset`` gives where the user message (the case's own, never an
example's) starts inside the model text, and ``char_spans_to_token_positions`` maps
character spans of the user message (for example ``Prompt.demographic_spans``) to
token indices of the tokenized model text. Those indices count from the first token
of the *unpadded* sequence; in a left-padded batch add the row's number of pad tokens.

No torch import here.
"""

from __future__ import annotations

import logging
import re
from typing import Any, Sequence

from latent_bias_probe.configs.schema import ConfigError

log = logging.getLogger(__name__)

DEFAULT_ANSWER_CUE = "Answer:"
FRAMINGS = ("auto", "chat", "plain")
PLAIN_FORMAT = "System: {system}\nUser: {user}\n{cue}"
ENCODE_KWARGS = {"add_special_tokens": False}  # model texts carry their own special tokens
_SENTINEL = "\u2063LBP-USER-MESSAGE\u2063"

_warned_plain = False
_warned_fold = False


def has_chat_template(tokenizer) -> bool:
    """Whether the tokenizer carries a chat template."""
    return bool(getattr(tokenizer, "chat_template", None))


def _auto_prefix(tokenizer) -> str:
    """The special tokens the tokenizer would put in front of a text (usually BOS), as text."""
    with_special = tokenizer("x").input_ids
    without = tokenizer("x", add_special_tokens=False).input_ids
    n = len(with_special) - len(without)
    if n <= 0 or with_special[n:] != without:
        return ""
    return tokenizer.decode(with_special[:n], skip_special_tokens=False)


def use_chat_template(tokenizer, framing: str = "auto") -> bool:
    """Whether prompts go through the chat template under ``framing`` (auto, chat or plain).

    Raises :class:`configs.schema.ConfigError` for ``chat`` without a template or an
    unknown ``framing``.
    """
    if framing not in FRAMINGS:
        raise ConfigError(f"model.framing: must be one of {', '.join(FRAMINGS)}, got {framing!r}")
    has = has_chat_template(tokenizer)
    if framing == "chat" and not has:
        raise ConfigError("model.framing: 'chat', but the model's tokenizer has no chat template (use auto or plain)")
    return has and framing != "plain"


def _plain(tokenizer, system: str | None, user: str, shots: Sequence[Any], cue: str) -> str:
    blocks = [f"User: {s.user}\n{cue} {s.answer}" for s in shots] + [f"User: {user}\n{cue}"]
    head = f"System: {system}\n" if system else ""
    return _auto_prefix(tokenizer) + head + "\n\n".join(blocks)


def _messages(system: str | None, user: str, shots: Sequence[Any], fold: bool) -> list[dict[str, str]]:
    turns: list[dict[str, str]] = []
    for s in shots:
        turns += [{"role": "user", "content": s.user}, {"role": "assistant", "content": s.answer}]
    turns.append({"role": "user", "content": user})
    if system and fold:
        turns[0] = {"role": "user", "content": f"{system}\n\n{turns[0]['content']}"}
    elif system:
        turns.insert(0, {"role": "system", "content": system})
    return turns


def _render(
    tokenizer, system: str | None, user: str, shots: Sequence[Any] = (), framing: str = "auto",
    answer_cue: str = DEFAULT_ANSWER_CUE,
) -> str:
    global _warned_plain, _warned_fold
    if not use_chat_template(tokenizer, framing):
        if framing == "auto" and not _warned_plain:
            log.warning(
                "the tokenizer has no chat template; using the plain format %r",
                PLAIN_FORMAT.format(system="{system}", user="{user}", cue=answer_cue).replace("\n", "\\n"),
            )
            _warned_plain = True
        return _plain(tokenizer, system, user, shots, answer_cue)
    try:
        return tokenizer.apply_chat_template(_messages(system, user, shots, False), add_generation_prompt=True, tokenize=False)
    except Exception as err:  # jinja2 TemplateError: e.g. "System role not supported"
        if not system:
            raise
        if not _warned_fold:
            log.warning("the chat template refuses a system message (%s); folding it into the user turn", err)
            _warned_fold = True
        return tokenizer.apply_chat_template(_messages(system, user, shots, True), add_generation_prompt=True, tokenize=False)


def prompt_framing(
    tokenizer, system: str | None, framing: str = "auto", answer_cue: str = DEFAULT_ANSWER_CUE, few_shot: int = 0
) -> dict[str, Any]:
    """How prompts are framed for this tokenizer (results.json ``model.prompt_framing``).

    ``{"kind": "chat_template" | "plain", "system": how the system message is placed
    ("system turn", "folded into the user turn", "'System:' line" or "none"),
    "bos": the special-token prefix of every model text ("" when none), "template":
    the model text with the user message shown as ``{user}`` (without examples),
    "framing": the configured choice (auto, chat, plain), "answer_cue": the plain
    format's cue (plain only), "few_shot": the number of solved examples before each
    prompt}``.
    """
    text = _render(tokenizer, system, "{user}", (), framing, answer_cue)
    bos = getattr(tokenizer, "bos_token", None) or ""
    extra: dict[str, Any] = {"framing": framing, "few_shot": int(few_shot)}
    if not use_chat_template(tokenizer, framing):
        kind, placed = "plain", "'System:' line" if system else "none"
        prefix = _auto_prefix(tokenizer)
        extra["answer_cue"] = answer_cue
    else:
        kind = "chat_template"
        prefix = bos if bos and text.startswith(bos) else ""
        if not system:
            placed = "none"
        else:
            try:
                tokenizer.apply_chat_template(
                    [{"role": "system", "content": system}, {"role": "user", "content": "x"}],
                    add_generation_prompt=True, tokenize=False,
                )
                placed = "system turn"
            except Exception:  # the template refuses the system role: _render folded it
                placed = "folded into the user turn"
    return {"kind": kind, "system": placed, "bos": prefix, "template": text, **extra}


def model_text(tokenizer, prompt: Any, framing: str = "auto", answer_cue: str = DEFAULT_ANSWER_CUE) -> str:
    """The exact model input for ``prompt`` (anything with ``.system``, ``.user`` and optionally ``.shots``)."""
    return _render(tokenizer, getattr(prompt, "system", None), prompt.user, getattr(prompt, "shots", ()), framing, answer_cue)


def find_user_offset(
    tokenizer, prompt: Any, text: str | None = None, framing: str = "auto", answer_cue: str = DEFAULT_ANSWER_CUE
) -> int:
    """Where ``prompt.user`` starts inside ``text`` (default: ``model_text(tokenizer, prompt, framing, answer_cue)``).

    Renders the template once more with a sentinel in place of the user message: the
    text before the sentinel is the text before the user message. Falls back to the
    last occurrence of the user message (or of its stripped form, for templates that
    trim, with the offset adjusted so user character indices still map). Raises
    ``ValueError`` when the user message does not appear verbatim.
    """
    user = prompt.user
    if text is None:
        text = model_text(tokenizer, prompt, framing, answer_cue)
    rendered = _render(tokenizer, getattr(prompt, "system", None), _SENTINEL, getattr(prompt, "shots", ()), framing, answer_cue)
    pos = rendered.find(_SENTINEL)
    if pos >= 0 and text[pos : pos + len(user)] == user:
        return pos
    pos = text.rfind(user)
    if pos >= 0:
        return pos
    stripped = user.strip()
    pos = text.rfind(stripped) if stripped else -1
    if pos >= 0:
        return pos - (len(user) - len(user.lstrip()))
    raise ValueError("the user message does not appear verbatim in the model text")


def char_spans_to_token_positions(
    tokenizer, text: str, user_offset: int, spans: Sequence[tuple[int, int]]
) -> list[int]:
    """Token indices (sorted, unique) of ``text`` covering the character ``spans``.

    ``spans`` are ``(start, end)`` character offsets in the user message (end
    exclusive); ``user_offset`` is where the user message starts in ``text``. A token
    belongs to a span when their character ranges overlap. ``text`` is tokenized as
    the model sees it (``add_special_tokens=False``); needs a fast tokenizer. Raises
    ``ValueError`` for an empty span or one that covers no token.
    """
    if not getattr(tokenizer, "is_fast", False):
        raise ValueError("char_spans_to_token_positions needs a fast tokenizer (offsets mapping)")
    enc = tokenizer(text, return_offsets_mapping=True, **ENCODE_KWARGS)
    offsets = enc["offset_mapping"]
    out: set[int] = set()
    for start, end in spans:
        if end <= start:
            raise ValueError(f"empty character span ({start}, {end})")
        a, b = start + user_offset, end + user_offset
        if a < 0 or b > len(text):
            raise ValueError(f"character span ({start}, {end}) lies outside the model text")
        hit = [i for i, (s, e) in enumerate(offsets) if e > s and s < b and e > a]
        if not hit:
            raise ValueError(f"character span ({start}, {end}) covers no token")
        out.update(hit)
    return sorted(out)


def word_token_positions(tokenizer, text: str, words: Sequence[str], start: int = 0) -> list[int]:
    """Token indices (sorted, unique) of ``text`` covering every whole-word occurrence of ``words``.

    For a text whose character spans were not kept (the cache stores texts, not spans):
    ``\\bword\\b`` matches, case-sensitive, starting at character ``start`` or later (see
    :func:`query_starts`: the few-shot examples before it are skipped), mapped to tokens
    as :func:`char_spans_to_token_positions` does. Empty when no word occurs.
    """
    spans = [
        m.span() for w in words if w for m in re.finditer(rf"(?<!\w){re.escape(w)}(?!\w)", text) if m.start() >= start
    ]
    return char_spans_to_token_positions(tokenizer, text, 0, spans) if spans else []


def query_starts(texts: Sequence[str], keys: Sequence[Any]) -> list[int]:
    """Per text, a character offset before which no demographic word of its own prompt lies.

    The texts sharing a key (a case and tier: BASE and its variants) differ only in
    the demographic words of the case's own prompt; the system message and the few-shot
    examples before it are the same. Their longest common prefix, cut back to the start
    of a word, therefore ends at or before the first demographic word and after every
    example. A key with a single text gets 0.
    """
    groups: dict[Any, list[int]] = {}
    for i, key in enumerate(keys):
        groups.setdefault(key, []).append(i)
    out = [0] * len(texts)
    for rows in groups.values():
        if len(rows) < 2:
            continue
        members = [texts[i] for i in rows]
        first, last = min(members), max(members)  # the common prefix of all = that of the extremes
        n = 0
        while n < min(len(first), len(last)) and first[n] == last[n]:
            n += 1
        while n > 0 and (first[n - 1].isalnum() or first[n - 1] == "_"):
            n -= 1
        for i in rows:
            out[i] = n
    return out
