"""The score stage: Part A/C scores of a predictions CSV (``probe score``, ``results.json``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from latent_bias_probe.report.scoring import PredictionsError, score_table, validate_predictions


def read_predictions(path: str | Path) -> pd.DataFrame:
    """Read and validate a predictions CSV (design.md contract).

    Needs ``case_id, race, gender, p_yes``; ``variant`` is derived from race and
    gender when absent; ``label`` (1, 0 or empty) and ``tier`` are optional.
    """
    path = Path(path)
    if not path.is_file():
        raise PredictionsError(f"{path}: file not found")
    try:
        df = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as err:
        raise PredictionsError(f"{path}: not a readable CSV ({str(err).splitlines()[0]})") from None
    return validate_predictions(df, str(path))


def score_predictions(
    path: str | Path,
    alpha: float = 0.05,
    correction: str = "holm",
    accuracy: str = "threshold",
    n_boot: int = 1000,
    seed: int = 0,
    *,
    ci_level: float = 0.95,
    margin: float = 0.02,
    permutations: int = 0,
) -> dict[str, Any]:
    """``{tier: Part A/C mapping}`` of a predictions CSV (what ``probe score`` prints under ``tiers``).

    Every score comes with its case-bootstrap interval (``ci``), every group with a
    TOST verdict (``equivalence``), each tier with its ``detectable_shift``, and with
    ``permutations`` the permutation ``null``.
    """
    df = read_predictions(path)
    return score_table(df, alpha, correction, accuracy, n_boot, seed, source=str(path),
                       ci_level=ci_level, margin=margin, permutations=permutations)
