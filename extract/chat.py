"""The exact text a model sees for a prompt, and where the prompt's words land in it.

``model_text(tokenizer, prompt)`` renders ``[system, user]`` with the tokenizer's chat
template and the generation prompt (the assistant header), so the next token the
model predicts is its answer. Tokenizers without a chat template get the plain
format ::

    System: {system}
    User: {user}
    Assistant:

(a warning is logged once per process). The returned string is the complete model
input: it already holds any BOS token (from the template, or prepended in the plain
format when the tokenizer would add one), so it is tokenized with
``add_special_tokens=False`` (see :data:`ENCODE_KWARGS`).

An empty or missing system message is left out. A template that refuses the system
role (e.g. Gemma's) gets the system text folded into the user turn, separated by a
blank line.

``find_user_offset`` gives where the user message starts inside the model text, and
``char_spans_to_token_positions`` maps character spans of the user message (for
example ``Prompt.demographic_spans``) to token indices of the tokenized model text.
Those indices count from the first token of the *unpadded* sequence; in a
left-padded batch add the row's number of pad tokens.

No torch import here.
"""

from __future__ import annotations

import logging
from typing import Any, Sequence

log = logging.getLogger(__name__)

PLAIN_FORMAT = "System: {system}\nUser: {user}\nAssistant:"
PLAIN_FORMAT_NO_SYSTEM = "User: {user}\nAssistant:"
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


def _render(tokenizer, system: str | None, user: str) -> str:
    global _warned_plain, _warned_fold
    if not has_chat_template(tokenizer):
        if not _warned_plain:
            log.warning(
                "the tokenizer has no chat template; using the plain format %r", PLAIN_FORMAT.replace("\n", "\\n")
            )
            _warned_plain = True
        body = PLAIN_FORMAT.format(system=system, user=user) if system else PLAIN_FORMAT_NO_SYSTEM.format(user=user)
        return _auto_prefix(tokenizer) + body
    messages = [{"role": "user", "content": user}]
    if system:
        messages.insert(0, {"role": "system", "content": system})
    try:
        return tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    except Exception as err:  # jinja2 TemplateError: e.g. "System role not supported"
        if not system:
            raise
        if not _warned_fold:
            log.warning("the chat template refuses a system message (%s); folding it into the user turn", err)
            _warned_fold = True
        folded = [{"role": "user", "content": f"{system}\n\n{user}"}]
        return tokenizer.apply_chat_template(folded, add_generation_prompt=True, tokenize=False)


def prompt_framing(tokenizer, system: str | None) -> dict[str, Any]:
    """How prompts are framed for this tokenizer (results.json ``model.prompt_framing``).

    ``{"kind": "chat_template" | "plain", "system": how the system message is placed
    ("system turn", "folded into the user turn", "'System:' line" or "none"),
    "bos": the special-token prefix of every model text ("" when none), "template":
    the model text with the user message shown as ``{user}``}``.
    """
    text = _render(tokenizer, system, "{user}")
    bos = getattr(tokenizer, "bos_token", None) or ""
    if not has_chat_template(tokenizer):
        kind, placed = "plain", "'System:' line" if system else "none"
        prefix = _auto_prefix(tokenizer)
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
    return {"kind": kind, "system": placed, "bos": prefix, "template": text}


def model_text(tokenizer, prompt: Any) -> str:
    """The exact model input for ``prompt`` (anything with ``.system`` and ``.user``)."""
    return _render(tokenizer, getattr(prompt, "system", None), prompt.user)


def find_user_offset(tokenizer, prompt: Any, text: str | None = None) -> int:
    """Where ``prompt.user`` starts inside ``text`` (default: ``model_text(tokenizer, prompt)``).

    Renders the template once more with a sentinel in place of the user message: the
    text before the sentinel is the text before the user message. Falls back to the
    last occurrence of the user message (or of its stripped form, for templates that
    trim, with the offset adjusted so user character indices still map). Raises
    ``ValueError`` when the user message does not appear verbatim.
    """
    user = prompt.user
    if text is None:
        text = model_text(tokenizer, prompt)
    rendered = _render(tokenizer, getattr(prompt, "system", None), _SENTINEL)
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


def word_token_positions(tokenizer, text: str, words: Sequence[str]) -> list[int]:
    """Token indices (sorted, unique) of ``text`` covering every whole-word occurrence of ``words``.

    For a text whose character spans were not kept (the cache stores texts, not spans):
    ``\\bword\\b`` matches, case-sensitive, mapped to tokens as
    :func:`char_spans_to_token_positions` does. Empty when no word occurs.
    """
    import re

    spans = [m.span() for w in words if w for m in re.finditer(rf"(?<!\w){re.escape(w)}(?!\w)", text)]
    return char_spans_to_token_positions(tokenizer, text, 0, spans) if spans else []
