"""Few-shot framing: the solved examples shown before each prompt (``benchmark.few_shot``).

A base model asked "...? ANSWER:" rarely continues with Yes or No; shown ``k`` solved
examples first, it learns the answer format (lm-evaluation-harness's ``num_fewshot``).
The examples of a case at a tier are

- other cases of the same benchmark, rendered at the same tier as BASE (no race or
  gender words), each with its label as the answer ("Yes" / "No");
- never the case itself, nor a case whose BASE rendering at that tier is the case's
  own (a duplicate would show the answer), nor two examples with the same text;
- balanced: ``k // 2`` of each label, the odd one's label drawn at random;
- drawn by a random generator seeded from ``(seed, tier, case id)`` alone, from the
  full benchmark's labelled cases in case-id order, so every variant of a case, every
  shard, every resumed run and every ``--limit-cases`` prefix sees the same examples.

Pure Python: no model, no tokenizer.
"""

from __future__ import annotations

import random
from dataclasses import replace
from typing import Iterable, Sequence

from .errors import BenchmarkError
from .render import render_case
from .types import BASE, Case, Prompt, Shot

#: the answer shown after an example, by label
ANSWERS = {1: "Yes", 0: "No"}


def example_pool(
    cases: Iterable[Case], tier: str, descent_word: str = "descent"
) -> dict[str, list[Shot]]:
    """Every labelled case rendered as BASE at ``tier``, by answer, each list sorted by case id."""
    pool: dict[str, list[Shot]] = {"Yes": [], "No": []}
    for case in sorted(cases, key=lambda c: c.case_id):
        if case.label not in ANSWERS:
            continue
        user = render_case(case, tier, BASE, BASE, descent_word).user
        pool[ANSWERS[case.label]].append(Shot(case_id=case.case_id, user=user, answer=ANSWERS[case.label]))
    return pool


def _pick(rng: random.Random, items: Sequence[Shot], n: int, case_id: str, banned: set[str]) -> list[Shot]:
    """``n`` items drawn without replacement, skipping the case itself and texts in ``banned`` (updated)."""
    chosen: list[Shot] = []
    tried: set[int] = set()
    while len(chosen) < n and len(tried) < len(items):
        j = rng.randrange(len(items))
        if j in tried:
            continue
        tried.add(j)
        shot = items[j]
        if shot.case_id == case_id or shot.user in banned:
            continue
        chosen.append(shot)
        banned.add(shot.user)
    return chosen


def draw_examples(
    pool: dict[str, list[Shot]], case_id: str, own_text: str, tier: str, k: int, seed: int
) -> tuple[Shot, ...]:
    """The ``k`` examples of case ``case_id`` at ``tier`` (see the module docstring).

    ``own_text`` is the case's BASE rendering at ``tier``: an example with the same
    text is skipped. Raises :class:`BenchmarkError` when the pool holds too few
    examples of a label.
    """
    if k <= 0:
        return ()
    rng = random.Random(f"few-shot:{seed}:{tier}:{case_id}")
    need = {"Yes": k // 2, "No": k // 2}
    if k % 2:
        need[rng.choice(("Yes", "No"))] += 1
    banned = {own_text}
    chosen: list[Shot] = []
    for answer in ("Yes", "No"):
        got = _pick(rng, pool.get(answer, []), need[answer], case_id, banned)
        if len(got) < need[answer]:
            raise BenchmarkError(
                f"benchmark.few_shot: {k} examples need {need[answer]} answered {answer!r} for case {case_id} at tier "
                f"{tier}, but the benchmark has only {len(got)} other distinct such cases; lower few_shot"
            )
        chosen.extend(got)
    rng.shuffle(chosen)
    return tuple(chosen)


def attach_examples(
    prompts: Sequence[Prompt], pool_cases: Sequence[Case], k: int, seed: int, descent_word: str = "descent"
) -> list[Prompt]:
    """``prompts`` with the examples of their case and tier in ``shots``.

    ``pool_cases`` are the benchmark's cases the examples come from (all of them, not
    only the rendered ones, so a ``--limit-cases`` run sees the full run's examples).
    """
    if k <= 0:
        return list(prompts)
    by_id = {c.case_id: c for c in pool_cases}
    pools: dict[str, dict[str, list[Shot]]] = {}
    drawn: dict[tuple[str, str], tuple[Shot, ...]] = {}
    out = []
    for p in prompts:
        key = (p.case_id, p.tier)
        if key not in drawn:
            if p.tier not in pools:
                pools[p.tier] = example_pool(pool_cases, p.tier, descent_word)
            case = by_id.get(p.case_id)
            own = render_case(case, p.tier, BASE, BASE, descent_word).user if case is not None else ""
            drawn[key] = draw_examples(pools[p.tier], p.case_id, own, p.tier, k, seed)
        out.append(replace(p, shots=drawn[key]))
    return out
