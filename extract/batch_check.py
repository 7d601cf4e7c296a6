"""Does a prompt's P(Yes) depend on the batch it ran in? Measured on every run.

The toolkit promises that P(Yes) is the same alone or in a left-padded batch
(docs/guides/scaling.md; docs/reference/run-directory.md, section batch_check.json). In
float32 that holds to round-off (about 1e-6 on the embedded model). At reduced
precision it need not: a bfloat16 or int8 forward rounds its intermediates coarsely,
so the last-bit differences that another batch shape causes (other kernel blocking,
other padding) flip some of those roundings, and the flips grow through the layers.
On SmolLM2-135M, P(Yes) computed alone differs from the batch-of-8 value by up to
0.05 in bfloat16 and 0.11 in int8 (``bench/batch_noise.py``), a few times the spread
across a case's demographic variants that mFARM tests.

:func:`check_batch_invariance` re-scores a fixed sample of prompts one at a time and
compares with the P(Yes) the batched extraction stored::

    diff_i = |p_alone(i) - p_batched(i)|,   max_abs_diff = max_i diff_i,  mean_abs_diff = mean_i diff_i

The extract stage (:mod:`pipeline.extract`) writes the result to ``DIR/batch_check.json``;
``results.json`` carries it as ``batch_invariance``, and the report and the sweep
warn when ``max_abs_diff`` exceeds :data:`TOLERANCE`: group shifts smaller than that
are within the model's numerical noise.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from typing import Any, Sequence

import numpy as np


log = logging.getLogger(__name__)

CHECK_NAME = "batch_check.json"
TOLERANCE = 1e-4  # the batch-invariance bound for float32 (docs/reference/run-directory.md, section batch_check.json)


@dataclass(frozen=True)
class BatchCheck:
    """P(Yes) of a sample of prompts run alone against their batched values."""

    batch_size: int  # the batch size of the extraction being checked
    indices: list[int]  # the prompts re-scored alone (rows of the cache)
    max_abs_diff: float
    mean_abs_diff: float

    @property
    def within_tolerance(self) -> bool:
        """Whether every sampled prompt agrees to :data:`TOLERANCE`."""
        return self.max_abs_diff <= TOLERANCE

    def to_dict(self) -> dict[str, Any]:
        """The JSON form (``batch_check.json``, ``results.json`` ``batch_invariance``)."""
        return asdict(self) | {"n_prompts": len(self.indices), "tolerance": TOLERANCE}


def sample_indices(lengths: Sequence[int], n: int) -> np.ndarray:
    """Up to ``n`` prompt indices spread evenly over the prompts sorted longest first.

    Longest first is the extraction order, so the sample covers batches with little
    padding (long prompts) and with much (short ones). Ties keep their input order.
    """
    order = np.argsort(-np.asarray(lengths), kind="stable")
    if n >= len(order):
        return np.sort(order)
    picks = np.unique(np.linspace(0, len(order) - 1, n).round().astype(np.int64))
    return np.sort(order[picks])


def check_batch_invariance(runner: Any, texts: Sequence[str], batched_p_yes: np.ndarray, batch_size: int, n: int) -> BatchCheck:
    """Re-score ``n`` prompts alone with ``runner`` and compare with ``batched_p_yes``.

    ``texts`` and ``batched_p_yes`` are aligned (one entry per prompt of the cache).
    """
    idx = sample_indices(runner.token_lengths(list(texts)), n)
    alone = np.array([float(runner.forward([texts[i]]).p_yes[0]) for i in idx])
    diff = np.abs(alone - np.asarray(batched_p_yes, dtype=np.float64)[idx])
    return BatchCheck(
        batch_size=int(batch_size),
        indices=[int(i) for i in idx],
        max_abs_diff=float(diff.max()) if diff.size else 0.0,
        mean_abs_diff=float(diff.mean()) if diff.size else 0.0,
    )


def noise_above_tolerance(check: Any) -> bool:
    """Whether a check's JSON form (``batch_check.json``, ``batch_invariance``) exceeds its tolerance.

    ``False`` for a missing or malformed record: no evidence of noise is no warning.
    """
    if not isinstance(check, dict):
        return False
    try:
        worst, tolerance = float(check["max_abs_diff"]), float(check.get("tolerance", TOLERANCE))
    except (KeyError, TypeError, ValueError):
        return False
    return worst > tolerance  # NaN compares False
