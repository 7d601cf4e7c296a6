"""Which prompts share a forward pass: fixed groups of whole cases.

A prompt's P(Yes) can depend on its batch-mates (other padding, other kernel
blocking; at reduced precision visibly so). So batches here depend only on the
job, never on how it is split or resumed:

- Cases are sorted by id and cut into **groups** of ``g = max(1, batch_size // k)``
  consecutive cases (``k`` prompts per case and tier: BASE + the variants).
- A **batch** is one group's prompts at one tier, in the job's prompt order. When a
  single case's ``k`` prompts exceed ``batch_size`` (``g = 1``), they are cut into
  ``ceil(k / batch_size)`` chunks of near-equal size.
- A shard ``K/N`` takes every N-th group, starting at the K-th, so it holds whole
  batches; a resumed run recomputes whole unfinished batches.

Hence the batch of every prompt — its batch-mates and their order — is the same
inline, in any shard, and after any interruption, so merged shards equal an inline
run exactly, at every precision. A case's variants differ only in the demographic
words, so their lengths are nearly equal and padding stays low.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np


def group_size(batch_size: int, prompts_per_case_tier: int) -> int:
    """How many whole cases form a group (at least one)."""
    return max(1, int(batch_size) // max(1, int(prompts_per_case_tier)))


def case_groups(case_ids: Sequence[str], batch_size: int, prompts_per_case_tier: int) -> list[list[str]]:
    """The distinct case ids, sorted, cut into groups of :func:`group_size` cases."""
    ordered = sorted(dict.fromkeys(str(c) for c in case_ids))
    g = group_size(batch_size, prompts_per_case_tier)
    return [ordered[i : i + g] for i in range(0, len(ordered), g)]


def shard_cases(groups: list[list[str]], index: int, count: int) -> set[str]:
    """The cases of shard ``index``/``count`` (1-based): every ``count``-th group from the ``index``-th."""
    return {c for group in groups[index - 1 :: count] for c in group}


def plan_batches(
    case_ids: Sequence[str],
    tiers: Sequence[str],
    batch_size: int,
    prompts_per_case_tier: int,
) -> list[np.ndarray]:
    """Row indices of every batch of a job's prompts (rows in the job's prompt order).

    ``case_ids[i]``, ``tiers[i]`` describe row ``i``. Batches are listed group by
    group (sorted case ids), tier by tier in order of first appearance.
    """
    case_ids = np.asarray([str(c) for c in case_ids])
    tiers = np.asarray([str(t) for t in tiers])
    groups = case_groups(case_ids, batch_size, prompts_per_case_tier)
    group_of = {c: gi for gi, group in enumerate(groups) for c in group}
    tier_order = list(dict.fromkeys(tiers.tolist()))
    buckets: dict[tuple[int, int], list[int]] = {}
    for row, (case, tier) in enumerate(zip(case_ids, tiers)):
        buckets.setdefault((group_of[case], tier_order.index(tier)), []).append(row)
    batches: list[np.ndarray] = []
    for key in sorted(buckets):
        rows = buckets[key]
        n_chunks = math.ceil(len(rows) / batch_size)
        for chunk in np.array_split(np.asarray(rows, dtype=np.int64), n_chunks):
            batches.append(chunk)
    return batches
